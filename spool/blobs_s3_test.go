package spool_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/edigw/edigw/internal/testpeers"
	"github.com/edigw/edigw/spool"
	"github.com/edigw/edigw/spool/spooltest"
)

const (
	s3BlobAccess    = "edigwspoolkey"
	s3BlobSecret    = "edigwspoolsecret123"
	s3BlobAccessEnv = "EDIGW_TEST_SPOOL_S3_ACCESS"
	s3BlobSecretEnv = "EDIGW_TEST_SPOOL_S3_SECRET"
	s3BlobBucket    = "spool"
)

// s3Env is one versitygw serving the "spool" bucket.
type s3Env struct {
	bucketDir string // the bucket's folder in the posix backend
	endpoint  string
	prefixes  atomic.Int64
}

func startS3(t *testing.T) *s3Env {
	t.Helper()
	dir, endpoint := testpeers.StartVersitygw(t, s3BlobAccess, s3BlobSecret, s3BlobBucket)
	t.Setenv(s3BlobAccessEnv, s3BlobAccess)
	t.Setenv(s3BlobSecretEnv, s3BlobSecret)
	return &s3Env{bucketDir: filepath.Join(dir, s3BlobBucket), endpoint: endpoint}
}

func (e *s3Env) config(prefix string) spool.S3BlobsConfig {
	return spool.S3BlobsConfig{
		Bucket: s3BlobBucket, Prefix: prefix, Endpoint: e.endpoint, PathStyle: true,
		AccessKeyEnv: s3BlobAccessEnv, SecretKeyEnv: s3BlobSecretEnv,
	}
}

// open returns a store under a fresh prefix, and that prefix's folder.
func (e *s3Env) open(t *testing.T) (*spool.S3Blobs, string) {
	t.Helper()
	prefix := fmt.Sprintf("t%d/blobs/", e.prefixes.Add(1))
	b, err := spool.NewS3Blobs(t.Context(), e.config(prefix))
	if err != nil {
		t.Fatal(err)
	}
	return b, filepath.Join(e.bucketDir, filepath.FromSlash(prefix))
}

// raw is a plain client for looking behind the store's back.
func (e *s3Env) raw() *s3.Client {
	return s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(e.endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s3BlobAccess, s3BlobSecret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// files lists the regular files under dir as slash paths relative to it,
// versitygw's own temporary files (".sgwtmp") excluded.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), ".sgwtmp") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func refOf(p []byte) spool.BlobRef {
	s := sha256.Sum256(p)
	return spool.BlobRef{SHA256: hex.EncodeToString(s[:]), Size: int64(len(p))}
}

func TestS3Blobs(t *testing.T) {
	env := startS3(t)

	t.Run("Contract", func(t *testing.T) {
		spooltest.RunBlobs(t, func(t *testing.T) spool.Blobs {
			b, _ := env.open(t)
			return b
		})
	})

	t.Run("Config", func(t *testing.T) {
		ctx := t.Context()
		for name, c := range map[string]spool.S3BlobsConfig{
			"no bucket":        {Endpoint: env.endpoint},
			"half credentials": {Bucket: "b", AccessKeyEnv: s3BlobAccessEnv},
			"unset env":        {Bucket: "b", AccessKeyEnv: "EDIGW_TEST_UNSET_X", SecretKeyEnv: "EDIGW_TEST_UNSET_Y"},
			"dotdot prefix":    {Bucket: "b", Prefix: "a/../b"},
			"empty segment":    {Bucket: "b", Prefix: "a//b"},
		} {
			if _, err := spool.NewS3Blobs(ctx, c); err == nil {
				t.Errorf("%s: NewS3Blobs succeeded", name)
			}
		}
		b, err := spool.NewS3Blobs(ctx, env.config("/x/y/"))
		if err != nil {
			t.Fatal(err)
		}
		if h := refOf(nil).SHA256; b.Key(h) != "x/y/"+h[:2]+"/"+h {
			t.Errorf("Key = %q", b.Key(h))
		}
		if err := b.Check(ctx); err != nil {
			t.Errorf("Check: %v", err)
		}
		c := env.config("")
		c.Bucket = "absent"
		if b, err := spool.NewS3Blobs(ctx, c); err != nil {
			t.Fatal(err)
		} else if err := b.Check(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("Check of a missing bucket: %v", err)
		}
	})

	// Where an object lands, what it carries, and that the server checks
	// the SHA-256 Put sends.
	t.Run("LayoutAndChecksum", func(t *testing.T) {
		b, dir := env.open(t)
		ctx := t.Context()
		content := []byte("ISA*00*          *00*~")
		ref, err := b.Put(ctx, bytes.NewReader(content))
		if err != nil || ref != refOf(content) {
			t.Fatalf("Put = %v, %v", ref, err)
		}
		want := ref.SHA256[:2] + "/" + ref.SHA256
		if got := files(t, dir); len(got) != 1 || got[0] != want {
			t.Errorf("files under the prefix: %q, want [%s]", got, want)
		}
		head, err := env.raw().HeadObject(ctx, &s3.HeadObjectInput{
			Bucket: aws.String(s3BlobBucket), Key: aws.String(b.Key(ref.SHA256)), ChecksumMode: types.ChecksumModeEnabled,
		})
		if err != nil {
			t.Fatal(err)
		}
		digest, _ := hex.DecodeString(ref.SHA256)
		if got := head.Metadata[spool.S3MetaSHA256]; got != ref.SHA256 {
			t.Errorf("x-amz-meta-sha256 = %q (metadata %v)", got, head.Metadata)
		}
		if got := aws.ToString(head.ChecksumSHA256); got != base64.StdEncoding.EncodeToString(digest) {
			t.Errorf("stored checksum sha256 = %q, want %q", got, base64.StdEncoding.EncodeToString(digest))
		}

		// The server refuses a body that does not match its SHA-256.
		other := sha256.Sum256([]byte("other"))
		_, err = env.raw().PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(s3BlobBucket), Key: aws.String(b.Key(hex.EncodeToString(other[:]))),
			Body: bytes.NewReader(content), ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(other[:])),
		})
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "BadDigest" {
			t.Errorf("a body whose x-amz-checksum-sha256 does not match: %v, want BadDigest", err)
		}
		if _, err := b.Stat(ctx, hex.EncodeToString(other[:])); !errors.Is(err, spool.ErrNotFound) {
			t.Errorf("after a rejected upload, Stat: %v", err)
		}
	})

	// 20 MiB goes up as a multipart upload with per-part SHA-256s, spooled
	// through a temp file that Put removes.
	t.Run("Large", func(t *testing.T) {
		b, dir := env.open(t)
		ctx := t.Context()
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp)
		content := randomBytes(t, 20<<20)
		// A plain io.Reader (not seekable), as a network body would be.
		ref, err := b.Put(ctx, struct{ io.Reader }{bytes.NewReader(content)})
		if err != nil || ref != refOf(content) {
			t.Fatalf("Put = %v, %v", ref, err)
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("temp files left: %v", left)
		}
		rc, err := b.Open(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("read %d bytes, %v; want %d bytes", len(got), err, len(content))
		}
		// Two parts (16 + 4 MiB), each checked against its SHA-256.
		head, err := env.raw().HeadObject(ctx, &s3.HeadObjectInput{
			Bucket: aws.String(s3BlobBucket), Key: aws.String(b.Key(ref.SHA256)), ChecksumMode: types.ChecksumModeEnabled,
		})
		if err != nil {
			t.Fatal(err)
		}
		if sum := aws.ToString(head.ChecksumSHA256); head.ChecksumType != types.ChecksumTypeComposite || !strings.HasSuffix(sum, "-2") {
			t.Errorf("stored checksum %q (%s), want a composite SHA-256 of 2 parts", sum, head.ChecksumType)
		}
		if got := head.Metadata[spool.S3MetaSHA256]; got != ref.SHA256 {
			t.Errorf("x-amz-meta-sha256 = %q", got)
		}
		if st, err := b.Stat(ctx, ref.SHA256); err != nil || st != ref {
			t.Errorf("Stat = %v, %v", st, err)
		}
		if got := files(t, dir); len(got) != 1 {
			t.Errorf("files under the prefix: %q, want one", got)
		}
		// Storing it again uploads nothing and changes nothing.
		fi1, _ := os.Stat(filepath.Join(dir, ref.SHA256[:2], ref.SHA256))
		if again, err := b.Put(ctx, bytes.NewReader(content)); err != nil || again != ref {
			t.Fatalf("Put again = %v, %v", again, err)
		}
		fi2, _ := os.Stat(filepath.Join(dir, ref.SHA256[:2], ref.SHA256))
		if fi1 == nil || fi2 == nil || !os.SameFile(fi1, fi2) || !fi1.ModTime().Equal(fi2.ModTime()) {
			t.Errorf("a second Put of stored content rewrote the object")
		}
	})

	t.Run("Corruption", func(t *testing.T) {
		b, dir := env.open(t)
		ctx := t.Context()
		content := randomBytes(t, 300<<10)
		ref, err := b.Put(ctx, bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, ref.SHA256[:2], ref.SHA256)

		// Same size, one bit flipped: caught at the end of the read.
		bad := bytes.Clone(content)
		bad[len(bad)/2] ^= 1
		overwrite(t, path, bad)
		rc, err := b.Open(ctx, ref)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		_, err = io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, spool.ErrCorrupt) {
			t.Errorf("reading a flipped bit: %v, want ErrCorrupt", err)
		}

		// Truncated: caught at Open, and a Put of the content repairs it.
		overwrite(t, path, content[:1000])
		if _, err := b.Open(ctx, ref); !errors.Is(err, spool.ErrCorrupt) {
			t.Errorf("Open of a truncated blob: %v, want ErrCorrupt", err)
		}
		if again, err := b.Put(ctx, bytes.NewReader(content)); err != nil || again != ref {
			t.Fatalf("repairing Put = %v, %v", again, err)
		}
		rc, err = b.Open(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("after repair: %d bytes, %v", len(got), err)
		}

		// A reference with the wrong size is refused, as Local does.
		if _, err := b.Open(ctx, spool.BlobRef{SHA256: ref.SHA256, Size: ref.Size + 1}); !errors.Is(err, spool.ErrCorrupt) {
			t.Errorf("Open with a wrong size: %v, want ErrCorrupt", err)
		}
	})

	t.Run("ConcurrentSameContent", func(t *testing.T) {
		b, dir := env.open(t)
		content := randomBytes(t, 1<<20+3)
		refs := make([]spool.BlobRef, 8)
		errs := make([]error, 8)
		var wg sync.WaitGroup
		for i := range refs {
			wg.Go(func() { refs[i], errs[i] = b.Put(t.Context(), bytes.NewReader(content)) })
		}
		wg.Wait()
		want := refOf(content)
		for i := range refs {
			if errs[i] != nil || refs[i] != want {
				t.Errorf("Put %d = %v, %v; want %v", i, refs[i], errs[i], want)
			}
		}
		if got := files(t, dir); len(got) != 1 || got[0] != want.SHA256[:2]+"/"+want.SHA256 {
			t.Errorf("files under the prefix: %q, want only the blob", got)
		}
		// Nothing else anywhere in the bucket under this store's prefix's
		// parent, temporary or otherwise.
		if got := files(t, filepath.Dir(dir)); len(got) != 1 {
			t.Errorf("files beside the prefix: %q", got)
		}
		if got, err := os.ReadFile(filepath.Join(dir, want.SHA256[:2], want.SHA256)); err != nil || !bytes.Equal(got, content) {
			t.Errorf("stored object: %d bytes, %v", len(got), err)
		}
	})
}

// overwrite replaces a file's bytes in place (keeping versitygw's xattrs).
func overwrite(t *testing.T, path string, p []byte) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, p, 0o644); err != nil {
		t.Fatal(err)
	}
}
