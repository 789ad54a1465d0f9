package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestKey(t *testing.T) {
	at := time.Date(2026, 3, 1, 1, 30, 0, 0, time.FixedZone("EST+5", 5*3600)) // 2026-02-28 20:30 UTC
	long := strings.Repeat("a", 300) + ".edi"
	tests := []struct {
		prefix, partner, msg, name, want string
	}{
		{"", "acme", "01HX", "in.edi", "acme/2026/02/28/01HX/in.edi"},
		{"/edi//inbound/", "acme", "01HX", "997.x12", "edi/inbound/acme/2026/02/28/01HX/997.x12"},
		{"", "ACME Corp/EU", "m:1", "PO 123 (copy).edi", "ACME_Corp_EU/2026/02/28/m_1/PO_123__copy_.edi"},
		{"", "..", ".", ".hidden", "_./2026/02/28/_/_hidden"},
		{"../x", "", "", "", "_./x/_/2026/02/28/_/_"},
		{"", "p", "m", "sums.sha256", "p/2026/02/28/m/sums_sha256"},
		{"", "p", "m", "SHA256SUMS", "p/2026/02/28/m/SHA256SUMS_"},
		{"", "p", "m", "sha256sums", "p/2026/02/28/m/sha256sums"},
		{"", "p", "m", "Grüße.csv", "p/2026/02/28/m/Gr____e.csv"},
	}
	for _, tc := range tests {
		got := Key(tc.prefix, tc.partner, at, tc.msg, tc.name)
		if got != tc.want {
			t.Errorf("Key(%q,%q,_,%q,%q) = %q, want %q", tc.prefix, tc.partner, tc.msg, tc.name, got, tc.want)
		}
		if err := ValidKey(got); err != nil {
			t.Errorf("Key produced invalid key: %v", err)
		}
	}
	k1 := Key("", "p", at, "m", long)
	k2 := Key("", "p", at, "m", strings.Repeat("a", 301)+".edi")
	base := k1[strings.LastIndex(k1, "/")+1:]
	if len(base) != maxSegment || !strings.HasSuffix(base, ".edi") || k1 == k2 {
		t.Errorf("long names: %q (%d bytes) vs %q", base, len(base), k2)
	}
}

func TestValidKey(t *testing.T) {
	for _, k := range []string{"", "/a", "a/", "a//b", "a/../b", "./a", "a/.tmp-1", `a\b`, "a\x00", strings.Repeat("x", 1025)} {
		if err := ValidKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidKey(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
	if err := ValidKey("a/b-c/d_e.f"); err != nil {
		t.Error(err)
	}
}

func TestDir(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	a, err := NewDir(filepath.Join(root, "archive", "nested"))
	if err != nil {
		t.Fatal(err)
	}
	var _ Archive = a
	key := Key("raw", "acme", time.Now(), "01HXMSG", "in.edi")
	body := []byte("ISA*00*...~IEA*1*000000001~\n")

	if err := a.Put(ctx, Object{Key: key, Body: bytes.NewReader(body), Size: -1, ContentType: "application/edi-x12"}); err != nil {
		t.Fatal(err)
	}
	p, _ := a.Path(key)
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("stored %q, %v", got, err)
	}
	manifest := filepath.Join(filepath.Dir(p), ManifestName)
	if m, err := os.ReadFile(manifest); err != nil || string(m) != sum(body)+"  in.edi\n" {
		t.Fatalf("manifest %q, %v", m, err)
	}
	if _, err := os.Stat(p + SidecarSuffix); err == nil {
		t.Fatal("a sidecar was written")
	}
	sha256sumCheck(t, filepath.Dir(p))
	size, sha, err := a.Stat(ctx, key)
	if err != nil || size != int64(len(body)) || sha != sum(body) {
		t.Fatalf("Stat = %d %s %v", size, sha, err)
	}

	// Idempotent: same content again (declared sha in upper case, known size).
	if err := a.Put(ctx, Object{Key: key, Body: bytes.NewReader(body), Size: int64(len(body)), SHA256: strings.ToUpper(sum(body))}); err != nil {
		t.Fatalf("re-put same content: %v", err)
	}
	// Write-once: different content is a conflict and the original stays.
	err = a.Put(ctx, Object{Key: key, Body: strings.NewReader("other"), Size: -1})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), key) {
		t.Fatalf("different content: %v, want ErrConflict naming the key", err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, body) {
		t.Fatal("conflicting put changed the object")
	}

	// Declared checksum or size wrong: nothing stored.
	k2 := Key("raw", "acme", time.Now(), "01HXMSG", "bad.edi")
	if err := a.Put(ctx, Object{Key: k2, Body: bytes.NewReader(body), Size: -1, SHA256: sum([]byte("x"))}); !errors.Is(err, ErrChecksum) {
		t.Fatalf("bad sha: %v", err)
	}
	if err := a.Put(ctx, Object{Key: k2, Body: bytes.NewReader(body), Size: 3}); !errors.Is(err, ErrChecksum) {
		t.Fatalf("bad size: %v", err)
	}
	if _, _, err := a.Stat(ctx, k2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat after failed put: %v", err)
	}
	if err := a.Put(ctx, Object{Key: "x/../y", Body: bytes.NewReader(body), Size: -1}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("bad key: %v", err)
	}
	for _, k := range []string{"x/y.sha256", "x/SHA256SUMS", "x/a\nb", "x/a\r"} {
		if err := a.Put(ctx, Object{Key: k, Body: bytes.NewReader(body), Size: -1}); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("reserved key %q: %v", k, err)
		}
		if _, _, err := a.Stat(ctx, k); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("Stat reserved key %q: %v", k, err)
		}
	}
	if m, _ := os.ReadFile(manifest); string(m) != sum(body)+"  in.edi\n" {
		t.Fatalf("manifest after retry and failed puts: %q", m)
	}

	// Crash between object and manifest line: Stat recomputes, a re-put
	// appends the line.
	os.Remove(manifest)
	if _, sha, err := a.Stat(ctx, key); err != nil || sha != sum(body) {
		t.Fatalf("Stat without manifest: %s %v", sha, err)
	}
	if err := a.Put(ctx, Object{Key: key, Body: bytes.NewReader(body), Size: -1}); err != nil {
		t.Fatal(err)
	}
	if m, err := os.ReadFile(manifest); err != nil || string(m) != sum(body)+"  in.edi\n" {
		t.Fatalf("manifest not restored: %q, %v", m, err)
	}

	// Concurrent puts of one key with the same content all succeed.
	k3 := Key("", "acme", time.Now(), "01HXMSG2", "ack.997")
	big := randBytes(1<<20, 7)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = a.Put(ctx, Object{Key: k3, Body: bytes.NewReader(big), Size: int64(len(big))})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent put: %v", err)
		}
	}
	rc, err := a.Open(ctx, k3)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, big) {
		t.Fatal("concurrent put: content differs")
	}
	if _, err := a.Open(ctx, "no/such/key"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open missing: %v", err)
	}

	// No temp files left anywhere.
	filepath.WalkDir(a.Root(), func(p string, d os.DirEntry, err error) error {
		if strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temp file left: %s", p)
		}
		return nil
	})
}

// ---- S3 against a real versitygw ----

const (
	testAccess = "edigwtest"
	testSecret = "edigwtestsecret123"
	testBucket = "edi-archive"
)

var (
	installOnce sync.Once
	installErr  error
)

// unavailable fails in CI (the S3 test must run there) and skips elsewhere.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("S3 server unavailable (CI=true): "+format, args...)
	}
	t.Skipf("S3 server unavailable (set CI=true to fail instead): "+format, args...)
}

func script() string { return filepath.Join("..", "..", "scripts", "s3server.sh") }

func runScript(args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{script()}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type versity struct {
	dir      string
	port     int
	endpoint string
}

func (v *versity) start(t *testing.T) {
	t.Helper()
	if out, err := runScript("start", v.dir, fmt.Sprint(v.port), testAccess, testSecret); err != nil {
		unavailable(t, "start versitygw: %v\n%s", err, out)
	}
}

func (v *versity) stop(t *testing.T) {
	t.Helper()
	if out, err := runScript("stop", v.dir); err != nil {
		t.Fatalf("stop versitygw: %v\n%s", err, out)
	}
}

// startVersity installs versitygw once per test binary (GOPATH/bin, reused
// across runs) and starts it on a free loopback port over a temp dir.
func startVersity(t *testing.T) *versity {
	t.Helper()
	installOnce.Do(func() {
		t0 := time.Now()
		out, err := runScript("install")
		if err != nil {
			installErr = fmt.Errorf("%v\n%s", err, out)
			return
		}
		t.Logf("versitygw ready in %s: %s", time.Since(t0).Round(time.Millisecond), strings.TrimSpace(out))
	})
	if installErr != nil {
		unavailable(t, "install versitygw: %v", installErr)
	}
	v := &versity{dir: t.TempDir(), port: freePort(t)}
	v.endpoint = fmt.Sprintf("http://127.0.0.1:%d", v.port)
	v.start(t)
	t.Cleanup(func() { runScript("stop", v.dir) })
	return v
}

// observer is an SDK client independent of the code under test.
func observer(endpoint string) *s3.Client {
	return s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(testAccess, testSecret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// partCounter counts UploadPart calls (multipart uploads).
type partCounter struct{ parts atomic.Int64 }

func (c *partCounter) Load() int64 { return c.parts.Load() }

func (c *partCounter) option(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("countParts",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if _, ok := in.Parameters.(*s3.UploadPartInput); ok {
					c.parts.Add(1)
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

// onlyReader hides Seek/ReadAt so Put takes the temp-file path.
type onlyReader struct{ io.Reader }

func TestS3Versitygw(t *testing.T) {
	v := startVersity(t)
	ctx := context.Background()
	obs := observer(v.endpoint)
	if _, err := obs.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	// The posix backend's buckets are DIR's subdirectories; the script's pid
	// and log files beside them must not show up as buckets.
	if lb, err := obs.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil || len(lb.Buckets) != 1 || aws.ToString(lb.Buckets[0].Name) != testBucket {
		t.Fatalf("ListBuckets = %+v, %v; want just %s", lb, err, testBucket)
	}

	t.Setenv("EDIGW_TEST_S3_ACCESS", testAccess)
	t.Setenv("EDIGW_TEST_S3_SECRET", testSecret)
	ct := &partCounter{}
	cfg := S3Config{
		Bucket:       testBucket,
		Prefix:       "edigw",
		Endpoint:     v.endpoint,
		PathStyle:    true,
		AccessKeyEnv: "EDIGW_TEST_S3_ACCESS",
		SecretKeyEnv: "EDIGW_TEST_S3_SECRET",
		PartSize:     5 << 20,
		Timeout:      time.Minute,
	}
	cfg.clientOptions = append(cfg.clientOptions, ct.option)
	a, err := NewS3(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var _ Archive = a
	if err := a.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	missing := cfg
	missing.Bucket = "no-such-bucket"
	if m, err := NewS3(ctx, missing); err != nil {
		t.Fatal(err)
	} else if err := m.Check(ctx); err == nil || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Fatalf("Check on a missing bucket: %v", err)
	}

	at := time.Date(2026, 5, 4, 23, 59, 0, 0, time.UTC)
	small := []byte("ISA*00*          *00*          *ZZ*ACME~GS*PO~ST*850*0001~SE*2*0001~GE*1*1~IEA*1*000000001~")
	large := randBytes(12<<20+123, 1) // 3 parts of 5 MiB
	stream := randBytes(6<<20+7, 2)   // 2 parts, non-seekable body
	objs := []struct {
		name string
		body []byte
		rd   func([]byte) io.Reader
		size int64
		sha  string
	}{
		{"in.edi", small, func(b []byte) io.Reader { return bytes.NewReader(b) }, int64(len(small)), sum(small)},
		{"large.edi", large, func(b []byte) io.Reader { return bytes.NewReader(b) }, -1, ""},
		{"stream.json", stream, func(b []byte) io.Reader { return onlyReader{bytes.NewReader(b)} }, -1, sum(stream)},
	}
	keys := map[string][]byte{}
	for _, o := range objs {
		key := Key("", "acme", at, "01HXMSG", o.name)
		keys[key] = o.body
		before := ct.Load()
		err := a.Put(ctx, Object{Key: key, Body: o.rd(o.body), Size: o.size, SHA256: o.sha,
			ContentType: "application/octet-stream", Metadata: map[string]string{"partner": "acme"}})
		if err != nil {
			t.Fatalf("Put %s: %v", key, err)
		}
		parts := ct.Load() - before
		wantParts := (int64(len(o.body)) + cfg.PartSize - 1) / cfg.PartSize
		if wantParts == 1 {
			wantParts = 0 // single PutObject
		}
		if parts != wantParts {
			t.Errorf("Put %s (%d bytes): %d UploadPart requests, want %d", o.name, len(o.body), parts, wantParts)
		}
	}

	// List back under the partner prefix with the SDK.
	var listed []string
	p := s3.NewListObjectsV2Paginator(obs, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String("edigw/acme/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListObjectsV2: %v", err)
		}
		for _, o := range page.Contents {
			listed = append(listed, aws.ToString(o.Key))
		}
	}
	var want []string
	for k := range keys {
		want = append(want, "edigw/"+k)
	}
	sort.Strings(want)
	sort.Strings(listed)
	if strings.Join(listed, ",") != strings.Join(want, ",") {
		t.Fatalf("listed %v, want %v", listed, want)
	}

	// Read back: bytes, sha256 metadata (seen by an independent client), helpers.
	for key, body := range keys {
		out, err := obs.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("edigw/" + key)})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: read back %d bytes (%v), want %d equal bytes", key, len(got), err, len(body))
		}
		if out.Metadata["sha256"] != sum(body) || out.Metadata["partner"] != "acme" {
			t.Errorf("%s: metadata %v, want sha256=%s partner=acme", key, out.Metadata, sum(body))
		}
		if aws.ToString(out.ContentType) != "application/octet-stream" {
			t.Errorf("%s: content type %q", key, aws.ToString(out.ContentType))
		}
		size, sha, err := a.Stat(ctx, key)
		if err != nil || size != int64(len(body)) || sha != sum(body) {
			t.Errorf("Stat %s = %d %s %v", key, size, sha, err)
		}
		rc, err := a.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got, _ = io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, body) {
			t.Errorf("Open %s: content differs", key)
		}
	}
	if _, _, err := a.Stat(ctx, "acme/none"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "s3://edi-archive/edigw/acme/none") {
		t.Errorf("Stat missing: %v", err)
	}
	if _, err := a.Open(ctx, "acme/none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open missing: %v", err)
	}

	// Idempotent re-put: no upload, success. Different content: conflict.
	largeKey := Key("", "acme", at, "01HXMSG", "large.edi")
	before := ct.Load()
	if err := a.Put(ctx, Object{Key: largeKey, Body: bytes.NewReader(large), Size: int64(len(large))}); err != nil {
		t.Fatalf("re-put: %v", err)
	}
	if n := ct.Load() - before; n != 0 {
		t.Errorf("re-put uploaded %d parts", n)
	}
	err = a.Put(ctx, Object{Key: largeKey, Body: bytes.NewReader(small), Size: -1})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "s3://edi-archive/edigw/"+largeKey) {
		t.Errorf("conflicting put: %v", err)
	}
	if err := a.Put(ctx, Object{Key: "acme/bad", Body: bytes.NewReader(small), Size: -1, SHA256: sum(large)}); !errors.Is(err, ErrChecksum) {
		t.Errorf("bad checksum: %v", err)
	}

	// Server down: Put fails (the pipeline retries via the spool); back up: it works.
	downKey := Key("", "acme", at, "01HXMSG3", "997.x12")
	v.stop(t)
	short, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = a.Put(short, Object{Key: downKey, Body: bytes.NewReader(small), Size: -1})
	cancel()
	if err == nil || !strings.Contains(err.Error(), "edi-archive") {
		t.Fatalf("Put with server down: %v, want an error naming the bucket", err)
	}
	t.Logf("server down: %v", err)
	if err := a.Check(ctx); err == nil {
		t.Fatal("Check with server down succeeded")
	}
	v.start(t)
	if err := a.Put(ctx, Object{Key: downKey, Body: bytes.NewReader(small), Size: -1}); err != nil {
		t.Fatalf("Put after restart: %v", err)
	}
	if _, sha, err := a.Stat(ctx, downKey); err != nil || sha != sum(small) {
		t.Fatalf("Stat after restart: %s %v", sha, err)
	}
}
