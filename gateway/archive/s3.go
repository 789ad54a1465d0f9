package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/edigw/edigw/internal/durable"
	"github.com/edigw/edigw/internal/s3client"
)

// DefaultPartSize is the default multipart threshold and part size.
const DefaultPartSize int64 = 16 << 20

// MinPartSize is the smallest part size S3 accepts (all parts but the last).
const MinPartSize = manager.MinUploadPartSize

// S3Config configures an [S3] archive.
type S3Config struct {
	// Bucket must exist; [S3.Check] verifies it.
	Bucket string
	// Prefix is prepended (with "/") to every key this archive stores, so
	// several deployments can share one bucket. Optional. Stat and Open take
	// keys without it, as Put does.
	Prefix string
	// Region defaults to "us-east-1" (S3-compatible servers mostly ignore it,
	// but SigV4 signs with it).
	Region string
	// Endpoint is the S3 API base URL for S3-compatible servers, e.g.
	// "http://127.0.0.1:7070" (aws.Config BaseEndpoint). Empty: AWS.
	Endpoint string
	// PathStyle addresses buckets as <endpoint>/<bucket>/<key> rather than
	// <bucket>.<endpoint>/<key>; most S3-compatible servers need it.
	PathStyle bool
	// AccessKeyEnv and SecretKeyEnv name the environment variables holding
	// static credentials (secrets never sit in YAML). Both empty: the SDK's
	// default credential chain (AWS_* env, shared files, IMDS, ...).
	AccessKeyEnv string
	SecretKeyEnv string
	// PartSize is the multipart threshold and part size; default 16 MiB,
	// minimum 5 MiB.
	PartSize int64
	// Concurrency is the number of parts uploaded in parallel; default 4.
	Concurrency int
	// Timeout bounds each operation (Put, Stat, Check, and Open including
	// reading the body); 0 means only the caller's context applies.
	Timeout time.Duration

	// clientOptions are extra s3.Options hooks (tests). A custom
	// *http.Client is deliberately not offered: the SDK refuses one that is
	// not its BuildableClient when AWS_CA_BUNDLE is set.
	clientOptions []func(*s3.Options)
}

// S3 is an archive in an S3 bucket (AWS or any S3-API server).
//
// Put first HEADs the key: an object whose "sha256" metadata equals the
// body's SHA-256 makes Put a no-op (a retry), a different one is
// ErrConflict. This check-then-put is not atomic across concurrent writers
// of the same key; the pipeline's leases make that case a retry of identical
// content. To send the checksum as metadata before the body, Put needs the
// SHA-256 up front: it hashes a seekable body (io.ReadSeeker, e.g. *os.File)
// in a first pass and seeks back; a non-seekable body is first copied to a
// temp file in os.TempDir(). The body is always verified against a declared
// Object.SHA256/Size before anything is sent.
type S3 struct {
	cfg    S3Config
	client *s3.Client
	//lint:ignore SA1019 feature/s3/manager is the uploader this project chose (DESIGN.md); transfermanager is v0.x.
	uploader *manager.Uploader
}

// NewS3 builds an S3 archive. It does not contact the server; call Check
// for that.
func NewS3(ctx context.Context, c S3Config) (*S3, error) {
	if c.Bucket == "" {
		return nil, errors.New("archive s3: bucket is required")
	}
	c.Prefix = strings.Trim(c.Prefix, "/")
	if c.Prefix != "" {
		if err := ValidKey(c.Prefix); err != nil {
			return nil, fmt.Errorf("archive s3: prefix: %w", err)
		}
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.PartSize < MinPartSize {
		return nil, fmt.Errorf("archive s3: part size %d is below the S3 minimum %d", c.PartSize, MinPartSize)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}

	client, err := s3client.New(ctx, s3client.Config{Region: c.Region, Endpoint: c.Endpoint, PathStyle: c.PathStyle,
		AccessKeyEnv: c.AccessKeyEnv, SecretKeyEnv: c.SecretKeyEnv}, c.clientOptions...)
	if err != nil {
		return nil, fmt.Errorf("archive s3: %w", err)
	}
	//lint:ignore SA1019 feature/s3/manager is the uploader this project chose (DESIGN.md); transfermanager is v0.x.
	uploader := manager.NewUploader(client, func(u *manager.Uploader) {
		u.PartSize = c.PartSize
		u.Concurrency = c.Concurrency
		// The uploader has its own checksum default (CRC32 on every
		// multipart upload) that ignores the client's setting.
		u.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	return &S3{cfg: c, client: client, uploader: uploader}, nil
}

// Bucket returns the bucket name.
func (a *S3) Bucket() string { return a.cfg.Bucket }

// FullKey returns the S3 object key for an archive key (with Prefix).
func (a *S3) FullKey(key string) string {
	if a.cfg.Prefix == "" {
		return key
	}
	return a.cfg.Prefix + "/" + key
}

func (a *S3) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.cfg.Timeout > 0 {
		return context.WithTimeout(ctx, a.cfg.Timeout)
	}
	return context.WithCancel(ctx)
}

func (a *S3) wrap(op, key string, err error) error {
	return fmt.Errorf("archive s3: %s s3://%s/%s: %w", op, a.cfg.Bucket, a.FullKey(key), err)
}

// Check verifies that the bucket exists and the credentials can reach it
// (HeadBucket), for readiness probes.
func (a *S3) Check(ctx context.Context) error {
	ctx, cancel := a.opCtx(ctx)
	defer cancel()
	if _, err := a.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(a.cfg.Bucket)}); err != nil {
		if isNotFound(err) {
			err = fmt.Errorf("bucket does not exist: %w", err)
		}
		return fmt.Errorf("archive s3: check bucket %s at %s: %w", a.cfg.Bucket, a.endpoint(), err)
	}
	return nil
}

func (a *S3) endpoint() string {
	if a.cfg.Endpoint == "" {
		return "AWS " + a.cfg.Region
	}
	return a.cfg.Endpoint
}

// Put implements [Archive].
func (a *S3) Put(ctx context.Context, o Object) error {
	if err := a.put(ctx, o); err != nil {
		return a.wrap("put", o.Key, err)
	}
	return nil
}

func (a *S3) put(ctx context.Context, o Object) error {
	if err := ValidKey(o.Key); err != nil {
		return err
	}
	want, err := normSHA256(o.SHA256)
	if err != nil {
		return err
	}
	if o.Body == nil {
		return errors.New("nil body")
	}
	ctx, cancel := a.opCtx(ctx)
	defer cancel()

	body, size, sum, cleanup, err := seekableHashed(ctx, o.Body)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := verify(o, want, sum, size); err != nil {
		return err
	}

	// Idempotence / write-once.
	haveSize, haveSum, err := a.stat(ctx, o.Key)
	switch {
	case err == nil:
		if haveSum == sum && haveSize == size {
			return nil
		}
		return fmt.Errorf("%w: stored sha256 %q size %d, new sha256 %s size %d", ErrConflict, haveSum, haveSize, sum, size)
	case errors.Is(err, ErrNotFound):
	default:
		return err
	}

	meta := make(map[string]string, len(o.Metadata)+1)
	for k, v := range o.Metadata {
		meta[strings.ToLower(k)] = v
	}
	meta[MetaSHA256] = sum
	in := &s3.PutObjectInput{
		Bucket:   aws.String(a.cfg.Bucket),
		Key:      aws.String(a.FullKey(o.Key)),
		Body:     body,
		Metadata: meta,
	}
	if o.ContentType != "" {
		in.ContentType = aws.String(o.ContentType)
	}
	//lint:ignore SA1019 feature/s3/manager is the uploader this project chose (DESIGN.md); transfermanager is v0.x.
	if _, err := a.uploader.Upload(ctx, in); err != nil {
		return err
	}
	return nil
}

// seekableHashed returns a body the uploader can seek (and so retry and
// split into parts without buffering), its size and hex SHA-256. A seekable
// input is hashed from its current offset and rewound; anything else is
// copied to a temp file, removed by cleanup.
func seekableHashed(ctx context.Context, r io.Reader) (body io.ReadSeeker, size int64, sum string, cleanup func(), err error) {
	cleanup = func() {}
	h := sha256.New()
	if rs, ok := r.(io.ReadSeeker); ok {
		start, err := rs.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, 0, "", cleanup, fmt.Errorf("seek body: %w", err)
		}
		n, err := io.Copy(h, durable.Reader(ctx, rs))
		if err != nil {
			return nil, 0, "", cleanup, fmt.Errorf("read body: %w", err)
		}
		if ra, ok := r.(io.ReaderAt); ok {
			// The uploader reads a ReaderAt at absolute offsets from 0.
			return io.NewSectionReader(ra, start, n), n, hex.EncodeToString(h.Sum(nil)), cleanup, nil
		}
		if _, err := rs.Seek(start, io.SeekStart); err != nil {
			return nil, 0, "", cleanup, fmt.Errorf("rewind body: %w", err)
		}
		return rs, n, hex.EncodeToString(h.Sum(nil)), cleanup, nil
	}
	f, err := os.CreateTemp("", "edigw-archive-*")
	if err != nil {
		return nil, 0, "", cleanup, fmt.Errorf("buffer body: %w", err)
	}
	cleanup = func() { f.Close(); os.Remove(f.Name()) }
	n, err := io.Copy(io.MultiWriter(f, h), durable.Reader(ctx, r))
	if err != nil {
		cleanup()
		return nil, 0, "", func() {}, fmt.Errorf("buffer body: %w", err)
	}
	return io.NewSectionReader(f, 0, n), n, hex.EncodeToString(h.Sum(nil)), cleanup, nil
}

// Stat returns the size and "sha256" metadata of key ("" when absent). A
// missing key is an error wrapping ErrNotFound.
func (a *S3) Stat(ctx context.Context, key string) (size int64, sha string, err error) {
	ctx, cancel := a.opCtx(ctx)
	defer cancel()
	size, sha, err = a.stat(ctx, key)
	if err != nil {
		return 0, "", a.wrap("stat", key, err)
	}
	return size, sha, nil
}

func (a *S3) stat(ctx context.Context, key string) (int64, string, error) {
	if err := ValidKey(key); err != nil {
		return 0, "", err
	}
	out, err := a.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(a.cfg.Bucket),
		Key:    aws.String(a.FullKey(key)),
	})
	if err != nil {
		if isNotFound(err) {
			return 0, "", fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return 0, "", err
	}
	return aws.ToInt64(out.ContentLength), strings.ToLower(metaGet(out.Metadata, MetaSHA256)), nil
}

// Open returns the body of key; the caller closes it. A missing key is an
// error wrapping ErrNotFound. Timeout, if set, covers reading the body too.
func (a *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, a.wrap("open", key, err)
	}
	ctx, cancel := a.opCtx(ctx)
	out, err := a.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(a.cfg.Bucket),
		Key:    aws.String(a.FullKey(key)),
	})
	if err != nil {
		cancel()
		if isNotFound(err) {
			err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return nil, a.wrap("open", key, err)
	}
	return &cancelCloser{ReadCloser: out.Body, cancel: cancel}, nil
}

type cancelCloser struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelCloser) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func metaGet(m map[string]string, k string) string {
	if v, ok := m[k]; ok {
		return v
	}
	for mk, v := range m {
		if strings.EqualFold(mk, k) {
			return v
		}
	}
	return ""
}

func isNotFound(err error) bool {
	var nf *types.NotFound
	var nk *types.NoSuchKey
	var nb *types.NoSuchBucket
	if errors.As(err, &nf) || errors.As(err, &nk) || errors.As(err, &nb) {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}
