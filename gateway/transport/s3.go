package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/edigw/edigw/partners"
)

func init() {
	dialers["s3"] = newS3
}

// s3Transport is a Transport over the objects directly under
// Bucket/Prefix of an S3 bucket (AWS or an S3-API server at S3Endpoint,
// addressed path-style). "Folders" are key prefixes: List does not descend
// into them and Move copies to Prefix+dir+"/"+name, then deletes the
// original. Write is a single PutObject, which S3 makes visible atomically;
// the body is first spooled to a temporary file (os.TempDir) so that a
// reader that fails stores nothing and the request can be signed.
// Options.Timeout bounds each call (for Open, until the reader is closed).
type s3Transport struct {
	client  *s3.Client
	bucket  string
	prefix  string // "" or ends in "/"
	timeout time.Duration
	remote  string
}

func newS3(ctx context.Context, r partners.Remote, o Options) (Transport, error) {
	t := &s3Transport{bucket: r.URL.Bucket, prefix: r.URL.Prefix, timeout: o.Timeout, remote: r.URL.String()}
	if t.bucket == "" {
		return nil, errors.New("s3 transport: no bucket")
	}
	if t.prefix != "" && !strings.HasSuffix(t.prefix, "/") {
		t.prefix += "/"
	}
	opts := []func(*config.LoadOptions) error{
		// S3-compatible servers often reject the CRC trailers the SDK sends
		// by default; send and check checksums only when required.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if r.Region != "" {
		opts = append(opts, config.WithRegion(r.Region))
	}
	if !r.AccessKey.IsZero() || !r.SecretKey.IsZero() {
		if r.AccessKey.IsZero() || r.SecretKey.IsZero() {
			return nil, fmt.Errorf("%s: set both the access key and the secret key, or neither", t.remote)
		}
		ak, err := r.AccessKey.Resolve(o.BaseDir)
		if err != nil {
			return nil, err
		}
		sk, err := r.SecretKey.Resolve(o.BaseDir)
		if err != nil {
			return nil, err
		}
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: load aws config: %w", t.remote, err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	// No custom *http.Client: the SDK refuses one that is not its
	// BuildableClient when AWS_CA_BUNDLE is set.
	t.client = s3.NewFromConfig(cfg, func(so *s3.Options) {
		if r.S3Endpoint != "" {
			so.BaseEndpoint = aws.String(r.S3Endpoint)
			so.UsePathStyle = true
		}
	})
	return t, nil
}

func (t *s3Transport) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if t.timeout > 0 {
		return context.WithTimeout(ctx, t.timeout)
	}
	return context.WithCancel(ctx)
}

func (t *s3Transport) key(name string) string { return t.prefix + name }

func (t *s3Transport) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %s: %w", t.remote, op, err)
}

func (t *s3Transport) List(ctx context.Context) ([]File, error) {
	ctx, cancel := t.ctx(ctx)
	defer cancel()
	var files []File
	p := s3.NewListObjectsV2Paginator(t.client, &s3.ListObjectsV2Input{
		Bucket:    aws.String(t.bucket),
		Prefix:    aws.String(t.prefix),
		Delimiter: aws.String("/"),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, t.wrap("list", err)
		}
		for _, obj := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(obj.Key), t.prefix)
			if checkName(name) != nil {
				continue // the prefix's own "folder" object
			}
			files = append(files, File{Name: name, Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified)})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

type s3Reader struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (r *s3Reader) Close() error {
	err := r.ReadCloser.Close()
	r.cancel()
	return err
}

func (t *s3Transport) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	ctx, cancel := t.ctx(ctx)
	out, err := t.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(t.key(name))})
	if err != nil {
		cancel()
		return nil, t.wrap("open "+name, err)
	}
	return &s3Reader{ReadCloser: out.Body, cancel: cancel}, nil
}

func (t *s3Transport) Write(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	spool, err := os.CreateTemp("", "edigw-s3-*")
	if err != nil {
		return t.wrap("upload "+name, err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	size, err := io.Copy(spool, r)
	if err != nil {
		return t.wrap("upload "+name+": read", err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return t.wrap("upload "+name, err)
	}
	ctx, cancel := t.ctx(ctx)
	defer cancel()
	_, err = t.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(t.bucket),
		Key:           aws.String(t.key(name)),
		Body:          spool,
		ContentLength: aws.Int64(size),
	})
	return t.wrap("upload "+name, err)
}

// Remove deletes the object; like S3, it does not fail when there is none.
func (t *s3Transport) Remove(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	ctx, cancel := t.ctx(ctx)
	defer cancel()
	_, err := t.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(t.key(name))})
	return t.wrap("delete "+name, err)
}

func (t *s3Transport) Move(ctx context.Context, name, dir string) error {
	if err := checkName(name); err != nil {
		return err
	}
	clean, err := cleanSubdir(dir)
	if err != nil {
		return err
	}
	ctx, cancel := t.ctx(ctx)
	defer cancel()
	src := t.key(name)
	dst := t.prefix + clean + "/" + name
	_, err = t.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket:     aws.String(t.bucket),
		Key:        aws.String(dst),
		CopySource: aws.String(s3EscapePath(t.bucket + "/" + src)),
	})
	if err != nil {
		return t.wrap("move "+name+" to "+clean+": copy", err)
	}
	_, err = t.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(src)})
	return t.wrap("move "+name+" to "+clean+": delete original", err)
}

// s3EscapePath URL-encodes each element of a CopySource "bucket/key".
func s3EscapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

func (t *s3Transport) Close() error { return nil }
