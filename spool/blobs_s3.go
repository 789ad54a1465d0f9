package spool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/edigw/edigw/internal/durable"
	"github.com/edigw/edigw/internal/s3client"
)

// S3BlobsConfig configures an [S3Blobs] store. The S3 settings mean what
// they mean for the S3 archive (gateway/archive.S3Config).
type S3BlobsConfig struct {
	// Bucket must exist; [S3Blobs.Check] verifies it.
	Bucket string
	// Prefix is prepended to every key ("blobs" and "blobs/" both store
	// under blobs/), so the store can share a bucket. Optional.
	Prefix string
	// Region defaults to "us-east-1" (S3-compatible servers mostly ignore
	// it, but SigV4 signs with it).
	Region string
	// Endpoint is the S3 API base URL of an S3-compatible server, e.g.
	// "http://127.0.0.1:7070". Empty: AWS.
	Endpoint string
	// PathStyle addresses buckets as <endpoint>/<bucket>/<key>; most
	// S3-compatible servers need it.
	PathStyle bool
	// AccessKeyEnv and SecretKeyEnv name the environment variables holding
	// static credentials. Both empty: the SDK's default credential chain.
	AccessKeyEnv string
	SecretKeyEnv string
}

// S3 upload tuning. A body of at least s3BlobPartSize bytes goes up as a
// multipart upload of parts this size, s3BlobConcurrency at a time; smaller
// ones as one PutObject. Put holds at most s3BlobMemMax bytes of a body in
// memory and spools larger bodies to a file in os.TempDir().
const (
	s3BlobPartSize    int64 = 16 << 20
	s3BlobConcurrency       = 4
	s3BlobMemMax            = 8 << 20
)

// S3MetaSHA256 is the user-metadata key (x-amz-meta-sha256) holding a
// blob's hex SHA-256, for tools that look at the bucket.
const S3MetaSHA256 = "sha256"

// S3Blobs is a [Blobs] store in an S3 bucket (AWS or any S3-API server),
// shared by every node that points at it. A blob lives at
// <prefix><ab>/<sha256>, ab being the hash's first byte pair.
//
// Put reads the body once, hashing it, into memory (up to 8 MiB) or a temp
// file, so the address is known before anything is sent: an object already
// at that address with the same size makes Put a no-op, otherwise the bytes
// go straight to their final key, which S3 creates atomically (whole or not
// at all) and durably once it answers 200. A single-request upload carries
// the whole body's SHA-256 (x-amz-checksum-sha256), so the server itself
// refuses bytes that do not hash to their key; a multipart upload (16 MiB
// and up) carries a SHA-256 per part. There are no temporary objects, so a
// crash mid-Put leaves nothing in the bucket (an aborted multipart upload
// may leave parts, which a bucket lifecycle rule
// AbortIncompleteMultipartUpload removes).
//
// Every call is bounded only by its context.
type S3Blobs struct {
	cfg    S3BlobsConfig
	client *s3.Client
	//lint:ignore SA1019 feature/s3/manager is the uploader this project chose (DESIGN.md); transfermanager is v0.x.
	uploader *manager.Uploader
}

// NewS3Blobs builds an S3 blob store. It does not contact the server; call
// Check for that.
func NewS3Blobs(ctx context.Context, c S3BlobsConfig) (*S3Blobs, error) {
	if c.Bucket == "" {
		return nil, errors.New("spool: s3 blobs: bucket is required")
	}
	c.Prefix = strings.Trim(c.Prefix, "/")
	if c.Prefix != "" {
		for seg := range strings.SplitSeq(c.Prefix, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00") {
				return nil, fmt.Errorf("spool: s3 blobs: invalid prefix %q", c.Prefix)
			}
		}
		c.Prefix += "/"
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	client, err := s3client.New(ctx, s3client.Config{Region: c.Region, Endpoint: c.Endpoint, PathStyle: c.PathStyle,
		AccessKeyEnv: c.AccessKeyEnv, SecretKeyEnv: c.SecretKeyEnv})
	if err != nil {
		return nil, fmt.Errorf("spool: s3 blobs: %w", err)
	}
	//lint:ignore SA1019 feature/s3/manager is the uploader this project chose (DESIGN.md); transfermanager is v0.x.
	uploader := manager.NewUploader(client, func(u *manager.Uploader) {
		u.PartSize = s3BlobPartSize
		u.Concurrency = s3BlobConcurrency
		u.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	return &S3Blobs{cfg: c, client: client, uploader: uploader}, nil
}

// Bucket returns the bucket name.
func (b *S3Blobs) Bucket() string { return b.cfg.Bucket }

// Key returns the object key of the blob with this hash.
func (b *S3Blobs) Key(sum string) string { return b.cfg.Prefix + sum[0:2] + "/" + sum }

func (b *S3Blobs) wrap(op, sum string, err error) error {
	if sum == "" {
		return fmt.Errorf("spool: s3 blobs: %s s3://%s/%s: %w", op, b.cfg.Bucket, b.cfg.Prefix, err)
	}
	return fmt.Errorf("spool: s3 blobs: %s s3://%s/%s: %w", op, b.cfg.Bucket, b.Key(sum), err)
}

// Check verifies that the bucket exists and the credentials reach it
// (HeadBucket), for readiness probes.
func (b *S3Blobs) Check(ctx context.Context) error {
	if _, err := b.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b.cfg.Bucket)}); err != nil {
		var nb *types.NoSuchBucket
		if errors.As(err, &nb) || s3NotFound(err) {
			err = fmt.Errorf("bucket does not exist: %w", err)
		}
		return fmt.Errorf("spool: s3 blobs: check bucket %s: %w", b.cfg.Bucket, err)
	}
	return nil
}

// Put implements [Blobs].
func (b *S3Blobs) Put(ctx context.Context, r io.Reader) (BlobRef, error) {
	body, ref, digest, cleanup, err := spoolHashed(ctx, r)
	if err != nil {
		return BlobRef{}, fmt.Errorf("spool: s3 blobs: put: %w", err)
	}
	defer cleanup()

	switch have, err := b.stat(ctx, ref.SHA256); {
	case err == nil && have.Size == ref.Size:
		return ref, nil // stored already
	case err == nil, errors.Is(err, ErrNotFound):
		// Absent, or a wrong size (a damaged or foreign object): write it.
	default:
		return BlobRef{}, b.wrap("put", ref.SHA256, err)
	}

	in := &s3.PutObjectInput{
		Bucket:        aws.String(b.cfg.Bucket),
		Key:           aws.String(b.Key(ref.SHA256)),
		Body:          body,
		ContentLength: aws.Int64(ref.Size),
		ContentType:   aws.String("application/octet-stream"),
		Metadata:      map[string]string{S3MetaSHA256: ref.SHA256},
	}
	if ref.Size < s3BlobPartSize {
		// One request: the server checks the whole body against its key.
		in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(digest))
		_, err = b.client.PutObject(ctx, in)
	} else {
		// Multipart: the SDK sends each part's SHA-256, the server checks
		// each part (a full-object SHA-256 does not exist for multipart).
		in.ChecksumAlgorithm = types.ChecksumAlgorithmSha256
		//lint:ignore SA1019 feature/s3/manager is the uploader this project chose (DESIGN.md); transfermanager is v0.x.
		_, err = b.uploader.Upload(ctx, in)
	}
	if err != nil {
		return BlobRef{}, b.wrap("put", ref.SHA256, err)
	}
	return ref, nil
}

// spoolHashed reads r to its end, hashing it, into memory or (past
// s3BlobMemMax) a temp file, and returns a seekable copy of it; cleanup
// removes the temp file. The context is checked between reads.
func spoolHashed(ctx context.Context, r io.Reader) (body io.ReadSeeker, ref BlobRef, digest []byte, cleanup func(), err error) {
	cleanup = func() {}
	h := sha256.New()
	src := io.TeeReader(durable.Reader(ctx, r), h)
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(src, s3BlobMemMax+1))
	if err != nil {
		return nil, BlobRef{}, nil, cleanup, fmt.Errorf("read body: %w", err)
	}
	if n <= s3BlobMemMax {
		body = bytes.NewReader(buf.Bytes())
	} else {
		f, err := os.CreateTemp("", "edigw-blob-*")
		if err != nil {
			return nil, BlobRef{}, nil, cleanup, fmt.Errorf("buffer body: %w", err)
		}
		cleanup = func() { f.Close(); os.Remove(f.Name()) }
		if _, err := f.Write(buf.Bytes()); err != nil {
			cleanup()
			return nil, BlobRef{}, nil, func() {}, fmt.Errorf("buffer body: %w", err)
		}
		buf = bytes.Buffer{}
		m, err := io.Copy(f, src)
		if err != nil {
			cleanup()
			return nil, BlobRef{}, nil, func() {}, fmt.Errorf("read body: %w", err)
		}
		n += m
		// A SectionReader is both a ReaderAt and a Seeker: the uploader
		// reads parts from it in parallel without buffering them.
		body = io.NewSectionReader(f, 0, n)
	}
	digest = h.Sum(nil)
	return body, BlobRef{SHA256: hex.EncodeToString(digest), Size: n}, digest, cleanup, nil
}

// Open implements [Blobs]. The body streams from S3 under ctx: canceling it
// fails further reads.
func (b *S3Blobs) Open(ctx context.Context, ref BlobRef) (io.ReadCloser, error) {
	if err := ref.Check(); err != nil {
		return nil, err
	}
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(b.cfg.Bucket),
		Key:    aws.String(b.Key(ref.SHA256)),
	})
	if err != nil {
		if s3NotFound(err) {
			return nil, b.wrap("open", ref.SHA256, fmt.Errorf("%w: %w", ErrNotFound, err))
		}
		return nil, b.wrap("open", ref.SHA256, err)
	}
	if n := aws.ToInt64(out.ContentLength); out.ContentLength != nil && n != ref.Size {
		out.Body.Close()
		return nil, b.wrap("open", ref.SHA256, fmt.Errorf("%d bytes stored, %d expected: %w", n, ref.Size, ErrCorrupt))
	}
	return &s3VerifyReader{rc: out.Body, h: sha256.New(), want: ref.SHA256, size: ref.Size}, nil
}

// s3VerifyReader hashes what it reads and fails at the end on a mismatch
// of hash or length.
type s3VerifyReader struct {
	rc   io.ReadCloser
	h    hash.Hash
	want string
	size int64
	n    int64
}

func (v *s3VerifyReader) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if v.n != v.size {
			return n, fmt.Errorf("spool: blob %s: %d bytes read, %d expected: %w", v.want, v.n, v.size, ErrCorrupt)
		}
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			return n, fmt.Errorf("spool: blob %s: content hashes to %s: %w", v.want, got, ErrCorrupt)
		}
	}
	return n, err
}

func (v *s3VerifyReader) Close() error { return v.rc.Close() }

// Stat implements [Blobs].
func (b *S3Blobs) Stat(ctx context.Context, sum string) (BlobRef, error) {
	if !validSHA256(sum) {
		return BlobRef{}, fmt.Errorf("%w: blob hash %q", ErrInvalid, sum)
	}
	ref, err := b.stat(ctx, sum)
	if err != nil {
		return BlobRef{}, b.wrap("stat", sum, err)
	}
	return ref, nil
}

func (b *S3Blobs) stat(ctx context.Context, sum string) (BlobRef, error) {
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(b.cfg.Bucket),
		Key:    aws.String(b.Key(sum)),
	})
	if err != nil {
		if s3NotFound(err) {
			return BlobRef{}, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return BlobRef{}, err
	}
	return BlobRef{SHA256: sum, Size: aws.ToInt64(out.ContentLength)}, nil
}

// s3NotFound reports whether err says the object is absent. A missing
// bucket is not that (a HEAD cannot tell them apart; Check can).
func s3NotFound(err error) bool {
	var nf *types.NotFound
	var nk *types.NoSuchKey
	var nb *types.NoSuchBucket
	switch {
	case errors.As(err, &nb):
		return false // misconfiguration, not an absent blob
	case errors.As(err, &nf), errors.As(err, &nk):
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}
