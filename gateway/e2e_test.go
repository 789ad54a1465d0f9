package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/edigw/edigw/gateway/erpsink"
	"github.com/edigw/edigw/internal/testpeers"
	"github.com/edigw/edigw/spool"
)

// These tests run the real thing: the edigw binary (`edigw serve`), the
// OpenSSH sftp client, versitygw as the S3 archive, and an ERP on loopback
// that counts every POST by Idempotency-Key.

var edigwBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edigw-e2e")
	if err != nil {
		panic(err)
	}
	edigwBin = filepath.Join(dir, "edigw")
	if out, err := exec.Command("go", "build", "-o", edigwBin, "../cmd/edigw").CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// need fails in CI and skips elsewhere when a tool is missing.
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required (apt-get install -y openssh-client): %v", tool, err)
		}
		t.Skipf("%s not installed", tool)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// env is one gateway under test with its peers.
type env struct {
	t        *testing.T
	dir      string
	sftpPort int
	httpPort int
	key      string // partner's private key
	sink     *erpsink.Sink
	sinkURL  string
	s3       *s3.Client
	bucket   string
	cmd      *exec.Cmd
	config   string
}

// testTokens are the API tokens of the test gateways, by name.
var testTokens = map[string]string{"ops": "operator-token-0123456789", "watcher": "viewer-token-0123456789", "boss": "admin-token-0123456789"}

const (
	s3Access = "edigw-test-access"
	s3Secret = "edigw-test-secret-1234"
)

var s3script = filepath.Join("..", "scripts", "s3server.sh")

// startS3 starts versitygw on loopback (scripts/s3server.sh installs it).
func startS3(t *testing.T, dir string) (*s3.Client, string) {
	t.Helper()
	port := freePort(t)
	script := s3script
	root := filepath.Join(dir, "s3")
	os.MkdirAll(filepath.Join(root, "archive"), 0o755) // the bucket is a folder
	os.WriteFile(filepath.Join(dir, "s3.port"), []byte(fmt.Sprint(port)), 0o644)
	out, err := exec.Command("bash", script, "start", root, fmt.Sprint(port), s3Access, s3Secret).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("S3 server: %v\n%s", err, out)
		}
		t.Skipf("S3 server unavailable: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("bash", script, "stop", root).Run() })
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion("us-east-1"),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(s3Access, s3Secret, "")))
	if err != nil {
		t.Fatal(err)
	}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true; o.BaseEndpoint = aws.String(endpoint) })
	return c, endpoint
}

func newEnv(t *testing.T) *env { return newEnvWith(t, nil) }

// newEnvWith lets a test change the partner folders before the gateway starts.
func newEnvWith(t *testing.T, edit func(partners string)) *env {
	return newEnvConfig(t, edit, "")
}

// newEnvConfig also adds lines to gateway.yaml.
func newEnvConfig(t *testing.T, edit func(partners string), extraYAML string) *env {
	need(t, "sftp")
	need(t, "ssh-keygen")
	ports := testpeers.Ports(t, 2) // both free at once: they cannot be the same port
	e := &env{t: t, dir: t.TempDir(), sftpPort: ports, httpPort: ports + 1}
	// Partners: the shipped examples plus a test customer that sends 850s
	// and a CSV feed over SFTP, all with this test's key.
	parts := filepath.Join(e.dir, "partners")
	if out, err := exec.Command("cp", "-r", "../deploy/examples/partners", parts).CombinedOutput(); err != nil {
		t.Fatal(string(out))
	}
	e.key = filepath.Join(e.dir, "key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", e.key).CombinedOutput(); err != nil {
		t.Fatal(string(out))
	}
	pub, _ := os.ReadFile(e.key + ".pub")
	acme := filepath.Join(parts, "acme", "keys", "demo_ed25519.pub")
	os.WriteFile(acme, pub, 0o644)
	writeRetail(t, filepath.Join(parts, "retail"), string(pub))
	if edit != nil {
		edit(parts)
	}

	e.sink, _ = erpsink.NewSink("")
	srvLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e.sink}
	go srv.Serve(srvLn)
	t.Cleanup(func() { srv.Close() })
	e.sinkURL = "http://" + srvLn.Addr().String()

	var s3endpoint string
	e.s3, s3endpoint = startS3(t, e.dir)
	e.bucket = "archive"
	os.Setenv("EDIGW_TEST_TOKEN_OPS", testTokens["ops"])
	os.Setenv("EDIGW_TEST_TOKEN_VIEWER", testTokens["watcher"])
	os.Setenv("EDIGW_TEST_TOKEN_ADMIN", testTokens["boss"])
	os.Setenv("EDIGW_TEST_S3_ACCESS", s3Access)
	os.Setenv("EDIGW_TEST_S3_SECRET", s3Secret)

	var eps strings.Builder
	for _, name := range []string{"po-acknowledgements", "ship-notices", "invoices", "purchase-orders", "inventory", "functional-acks"} {
		fmt.Fprintf(&eps, "    - {name: %s, url: %q}\n", name, e.sinkURL+"/"+name)
	}
	e.config = filepath.Join(e.dir, "gateway.yaml")
	cfg := fmt.Sprintf(`data_dir: %s
partners: %s
sftp: {listen: "127.0.0.1:%d"}
http: {listen: "127.0.0.1:%d", tokens: [{name: ops, role: operator, token_env: EDIGW_TEST_TOKEN_OPS}, {name: watcher, role: viewer, token_env: EDIGW_TEST_TOKEN_VIEWER}, {name: boss, role: admin, token_env: EDIGW_TEST_TOKEN_ADMIN}]}
archive:
  kind: s3
  s3: {bucket: archive, prefix: edi, region: us-east-1, endpoint: %q, path_style: true, access_key_env: EDIGW_TEST_S3_ACCESS, secret_key_env: EDIGW_TEST_S3_SECRET}
erp:
  ack_status_endpoint: functional-acks
  endpoints:
%s
workers: {files: 2, documents: 4, poll: 50ms, lease: 2m, node_timeout: 2s, ack_check: 300ms}
schedules: {lease: 3s}
%s`, filepath.Join(e.dir, "data"), parts, e.sftpPort, e.httpPort, s3endpoint, eps.String(), extraYAML)
	os.WriteFile(e.config, []byte(cfg), 0o644)
	e.start()
	return e
}

// writeRetail creates a customer partner that sends 850s and an inventory
// CSV feed over SFTP (maps from mapping/testdata and the 3PL example).
func writeRetail(t *testing.T, dir, pub string) {
	os.MkdirAll(filepath.Join(dir, "maps"), 0o755)
	copyFile(t, "../mapping/testdata/po-850-in.yaml", filepath.Join(dir, "maps", "850.yaml"))
	copyFile(t, "../deploy/examples/partners/northwind-3pl/maps/inventory.yaml", filepath.Join(dir, "maps", "inventory.yaml"))
	for _, f := range []string{"maps/850.yaml", "maps/inventory.yaml"} { // tests: belong to the originals
		p := filepath.Join(dir, f)
		b, _ := os.ReadFile(p)
		if i := bytes.Index(b, []byte("\ntests:")); i >= 0 {
			b = b[:i+1]
		}
		os.WriteFile(p, b, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "partner.yaml"), []byte(fmt.Sprintf(`id: retail
name: Retail Customer
status: active
x12: {isa: {qualifier: ZZ, id: SUPPLIERX}, gs_id: SUPPLIERX, version: "004010", usage: P}
acks: {functional: "997", ta1: on_request}
inbound:
  sftp:
    - user: retail
      public_keys: [%q]
      allowed_networks: ["127.0.0.1/32"]
outbound: {channel: outbox}
documents:
  - {x12: "850", map: maps/850.yaml, erp: purchase-orders}
  - {csv: inventory, match: "inv_*.csv", map: maps/inventory.yaml, erp: inventory}
`, strings.TrimSpace(pub))), 0o644)
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(to, b, 0o644)
}

func (e *env) start() {
	e.t.Helper()
	e.cmd = exec.Command(edigwBin, "serve", "--config", e.config)
	log, _ := os.OpenFile(filepath.Join(e.dir, "serve.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	e.cmd.Stdout, e.cmd.Stderr = log, log
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	cmd := e.cmd
	e.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.sftpPort)); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("edigw serve did not listen:\n%s", e.log())
}

func (e *env) log() string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "serve.log"))
	return string(b)
}

// sftp runs the OpenSSH client in batch mode as user.
func (e *env) sftp(user string, batch string) (string, error) {
	bf := filepath.Join(e.dir, "batch")
	os.WriteFile(bf, []byte(batch), 0o644)
	out, err := exec.Command("sftp", "-b", bf, "-i", e.key, "-P", fmt.Sprint(e.sftpPort),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
		user+"@127.0.0.1").CombinedOutput()
	return string(out), err
}

// waitDocs waits until the ERP holds n distinct documents.
func (e *env) waitDocs(n int, within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if len(e.sink.Documents()) >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("the ERP has %d documents, want %d\n%s", len(e.sink.Documents()), n, tail(e.log(), 40))
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func jsonEqual(t *testing.T, what string, got []byte, wantFile string, edits ...string) {
	t.Helper()
	want, err := os.ReadFile(wantFile)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(edits); i += 2 {
		want = bytes.ReplaceAll(want, []byte(edits[i]), []byte(edits[i+1]))
	}
	var g, w any
	json.Unmarshal(got, &g)
	json.Unmarshal(want, &w)
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("%s: ERP received\n%s\nwant (%s)\n%s", what, gb, wantFile, wb)
	}
}

func TestEndToEnd(t *testing.T) {
	e := newEnv(t)
	ex := "../deploy/examples/partners/"
	out, err := e.sftp("acme", fmt.Sprintf("cd inbox\nput %s\nput %s\nput %s\n",
		ex+"acme/testdata/855-accepted-with-changes.x12", ex+"acme/testdata/856-two-orders.x12", ex+"acme/testdata/810-invoice.x12"))
	if err != nil {
		t.Fatalf("sftp upload: %v\n%s", err, out)
	}
	out, err = e.sftp("retail", fmt.Sprintf("cd inbox\nput %s\nput %s\n", "../mapping/testdata/po-in.edi", ex+"northwind-3pl/testdata/inv_20260316_0600.csv"))
	if err != nil {
		t.Fatalf("sftp upload: %v\n%s", err, out)
	}
	e.waitDocs(5, 30*time.Second)

	// Each document arrived once, with the expected JSON.
	byType := map[string][]byte{}
	for _, d := range e.sink.Documents() {
		if c := e.sink.Count(d.Key); c != 1 {
			t.Errorf("document %s posted %d times", d.Key, c)
		}
		byType[d.Endpoint] = d.Body
	}
	jsonEqual(t, "855", byType["po-acknowledgements"], ex+"acme/testdata/855-accepted-with-changes.expected.json")
	jsonEqual(t, "856", byType["ship-notices"], ex+"acme/testdata/856-two-orders.expected.json")
	jsonEqual(t, "810", byType["invoices"], ex+"acme/testdata/810-invoice.expected.json")
	jsonEqual(t, "850", byType["purchase-orders"], "../mapping/testdata/po-in.expected.json")
	// the feed's map names the supplier by partner id: here the test customer
	jsonEqual(t, "csv", byType["inventory"], ex+"northwind-3pl/testdata/inv_20260316_0600.expected.json", `"northwind-3pl"`, `"retail"`)

	// The partners download their acknowledgements and pick them up.
	dl := filepath.Join(e.dir, "dl")
	os.MkdirAll(dl, 0o755)
	out, err = e.sftp("acme", "lcd "+dl+"\ncd outbox\nget *\nrm *\nls\n")
	if err != nil {
		t.Fatalf("sftp download: %v\n%s", err, out)
	}
	acks, _ := filepath.Glob(filepath.Join(dl, "999_*.x12"))
	if len(acks) != 3 {
		t.Fatalf("%d 999s downloaded, want 3: %s", len(acks), out)
	}
	for _, a := range acks {
		b, _ := os.ReadFile(a)
		if !bytes.Contains(b, []byte("ST*999*")) || !bytes.Contains(b, []byte("IK5*A")) || !bytes.Contains(b, []byte("*ACMEIND")) {
			t.Errorf("%s is not an accepting 999 to ACMEIND:\n%s", a, b)
		}
	}
	out, _ = e.sftp("retail", "lcd "+dl+"\ncd outbox\nget *\n")
	if b, _ := filepath.Glob(filepath.Join(dl, "997_*.x12")); len(b) != 1 {
		t.Errorf("retail's 997 not downloadable: %s", out)
	}

	// The archive holds raw + ack + JSON per file, readable back with S3.
	deadline := time.Now().Add(20 * time.Second)
	var keys []string
	for time.Now().Before(deadline) {
		keys = e.archived("edi/acme/")
		if len(keys) >= 9 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var raw, ack, doc int
	for _, k := range keys {
		base := filepath.Base(k)
		switch {
		case strings.HasPrefix(base, "raw-"):
			raw++
		case strings.HasPrefix(base, "ack-"):
			ack++
		case strings.HasPrefix(base, "doc-"):
			doc++
		}
	}
	if raw != 3 || ack != 3 || doc != 3 {
		t.Errorf("archive under edi/acme/: %d raw, %d acks, %d JSON; keys %v", raw, ack, doc, keys)
	}
	for _, k := range keys {
		if strings.Contains(k, "raw-856-two-orders.x12") {
			o, err := e.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &e.bucket, Key: &k})
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			b.ReadFrom(o.Body)
			want, _ := os.ReadFile(ex + "acme/testdata/856-two-orders.x12")
			if !bytes.Equal(b.Bytes(), want) || o.Metadata["sha256"] == "" {
				t.Errorf("archived raw file differs or has no sha256 metadata (%v)", o.Metadata)
			}
		}
	}

	// The same file again: recorded as a duplicate, not posted again.
	posts := totalPosts(e.sink)
	if out, err := e.sftp("acme", "cd inbox\nput "+ex+"acme/testdata/856-two-orders.x12\n"); err != nil {
		t.Fatalf("re-upload: %v\n%s", err, out)
	}
	time.Sleep(2 * time.Second)
	if p := totalPosts(e.sink); p != posts {
		t.Errorf("a duplicate file was posted again (%d → %d posts)", posts, p)
	}
	ls, _ := exec.Command(edigwBin, "spool", "ls", "--config", e.config, "--state", "duplicate").CombinedOutput()
	if !strings.Contains(string(ls), "856-two-orders.x12") {
		t.Errorf("duplicate not recorded:\n%s", ls)
	}

	// The same interchange in other bytes (same ISA13, another shipment
	// number) is a duplicate interchange: no document, no 999, and no ack
	// control number taken, so the next file's 999 follows the first three
	// without a gap in our ISA13s.
	last := 0
	for _, a := range acks {
		var n int
		fmt.Sscanf(filepath.Base(a), "999_%d.x12", &n)
		last = max(last, n)
	}
	body, _ := os.ReadFile(ex + "acme/testdata/856-two-orders.x12")
	resent, next := filepath.Join(e.dir, "856-resent.x12"), filepath.Join(e.dir, "856-next.x12")
	os.WriteFile(resent, bytes.Replace(body, []byte("*ASN-260305-0417*"), []byte("*ASN-260305-0418*"), 1), 0o644)
	os.WriteFile(next, bytes.ReplaceAll(bytes.Replace(body, []byte("*ASN-260305-0417*"), []byte("*ASN-260305-0419*"), 1), []byte("000004718"), []byte("000004719")), 0o644)
	if out, err := e.sftp("acme", "cd inbox\nput "+resent+"\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		ls, _ := exec.Command(edigwBin, "spool", "ls", "--config", e.config, "--state", "done").CombinedOutput()
		if strings.Contains(string(ls), "856-resent.x12") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the re-sent interchange's file is not done:\n%s\n%s", ls, tail(e.log(), 20))
		}
	}
	docs := len(e.sink.Documents())
	if out, err := e.sftp("acme", "cd inbox\nput "+next+"\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	e.waitDocs(docs+1, 20*time.Second)
	if got := len(e.sink.Documents()); got != docs+1 {
		t.Errorf("%d new documents at the ERP, want 1 (the re-sent interchange's set is not delivered)", got-docs)
	}
	dl2 := filepath.Join(e.dir, "dl2")
	os.MkdirAll(dl2, 0o755)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, _ = e.sftp("acme", "lcd "+dl2+"\ncd outbox\nget *\n")
		if got, _ := filepath.Glob(filepath.Join(dl2, "999_*.x12")); len(got) > 0 || time.Now().After(deadline) {
			break
		}
	}
	got, _ := filepath.Glob(filepath.Join(dl2, "999_*.x12"))
	if want := filepath.Join(dl2, fmt.Sprintf("999_%09d.x12", last+1)); len(got) != 1 || got[0] != want {
		t.Errorf("999s after the re-sent interchange and the next file: %v, want only %s (after %d)\n%s", got, filepath.Base(want), last, out)
	}
}

func totalPosts(s *erpsink.Sink) int {
	n := 0
	for _, st := range s.Stats() {
		n += st.Posts
	}
	return n
}

func (e *env) archived(prefix string) []string {
	out, err := e.s3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: &e.bucket, Prefix: &prefix})
	if err != nil {
		e.t.Logf("list: %v", err)
		return nil
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, *o.Key)
	}
	return keys
}

// SIGKILL in the middle of a batch, restart: every document reaches the
// ERP exactly once.
func TestKillMidBatch(t *testing.T) {
	e := newEnv(t)
	src, _ := os.ReadFile("../mapping/testdata/po-in.edi")
	up := filepath.Join(e.dir, "up")
	os.MkdirAll(up, 0o755)
	const n = 40
	var batch strings.Builder
	batch.WriteString("cd inbox\n")
	for i := 0; i < n; i++ {
		// distinct control numbers, so none is a duplicate
		b := bytes.ReplaceAll(src, []byte("000000101"), []byte(fmt.Sprintf("%09d", 5000+i)))
		b = bytes.ReplaceAll(b, []byte("PO-4501"), []byte(fmt.Sprintf("PO-%d", 5000+i)))
		name := filepath.Join(up, fmt.Sprintf("po-%02d.edi", i))
		os.WriteFile(name, b, 0o644)
		fmt.Fprintf(&batch, "put %s\n", name)
	}
	e.sink.SetFault(erpsink.Fault{Endpoint: "purchase-orders", Status: 503, Count: 15, RetryAfter: 1})
	if out, err := e.sftp("retail", batch.String()); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	// Kill while work is in flight, then start again.
	time.Sleep(300 * time.Millisecond)
	e.cmd.Process.Signal(syscall.SIGKILL)
	e.cmd.Wait()
	e.start()
	e.waitDocs(n, 90*time.Second)
	// Exactly once at the ERP: one stored document per Idempotency-Key. A
	// POST the ERP answered but the killed process had not yet recorded is
	// sent again with the same key (that window cannot be closed without the
	// ERP's help: it is what the key is for); such replays can only be the
	// deliveries in flight at the kill, at most one per document worker.
	replays := 0
	for _, d := range e.sink.Documents() {
		replays += e.sink.Count(d.Key) - 1
	}
	if got := len(e.sink.Documents()); got != n {
		t.Errorf("%d documents, want %d", got, n)
	}
	if replays > 4 {
		t.Errorf("%d replays after one kill; at most the 4 in-flight deliveries may be replayed", replays)
	}
	t.Logf("%d documents, %d replayed after the kill", n, replays)
	// Nothing is stuck: every document reaches done. A stage interrupted by
	// the kill runs again once the restarted gateway (a new node) finds the
	// killed one silent for workers.node_timeout (2 s here), well before its
	// 2-minute leases would have run out.
	var out []byte
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		out, _ = exec.Command(edigwBin, "spool", "ls", "docs", "--config", e.config, "--limit", "100").CombinedOutput()
		if strings.Count(string(out), " done ") == n {
			return
		}
	}
	t.Errorf("not every document is done:\n%s", out)
}

// The ERP refuses a document (400): it goes dead with the ERP's answer.
func TestERPRefusesDocument(t *testing.T) {
	e := newEnv(t)
	e.sink.SetFault(erpsink.Fault{Endpoint: "purchase-orders", Status: 400, Match: "PO-4501"})
	if out, err := e.sftp("retail", "cd inbox\nput ../mapping/testdata/po-in.edi\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command(edigwBin, "spool", "ls", "docs", "--config", e.config, "--state", "dead").CombinedOutput()
		if strings.Contains(string(out), "PO-4501") {
			if !strings.Contains(string(out), "HTTP 400") {
				t.Errorf("dead without the ERP's answer:\n%s", out)
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("document not dead:\n%s", tail(e.log(), 20))
}

// S3 down while files flow: documents still reach the ERP, the archive
// catches up when S3 is back.
func TestArchiveCatchesUp(t *testing.T) {
	e := newEnv(t)
	root := filepath.Join(e.dir, "s3")
	port, _ := os.ReadFile(filepath.Join(e.dir, "s3.port"))
	if out, err := exec.Command("bash", s3script, "stop", root).CombinedOutput(); err != nil {
		t.Fatalf("stop S3: %v %s", err, out)
	}
	if out, err := e.sftp("retail", "cd inbox\nput ../mapping/testdata/po-in.edi\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	e.waitDocs(1, 20*time.Second)
	var out []byte
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		out, _ = exec.Command(edigwBin, "spool", "ls", "--config", e.config, "--state", "retrying").CombinedOutput()
		if strings.Contains(string(out), "po-in.edi") {
			break
		}
	}
	if !strings.Contains(string(out), "po-in.edi") || !strings.Contains(string(out), "archive") {
		t.Errorf("with S3 down the file should be retrying its archive:\n%s\n%s", out, tail(e.log(), 10))
	}
	if out, err := exec.Command("bash", s3script, "start", root, string(port), s3Access, s3Secret).CombinedOutput(); err != nil {
		t.Fatalf("restart S3: %v %s", err, out)
	}
	// Retries back off (2 s base): replay makes it due now, as an operator would.
	for _, kind := range []string{"", "docs"} {
		args := []string{"spool", "ls"}
		if kind != "" {
			args = append(args, kind)
		}
		args = append(args, "--config", e.config, "--state", "retrying")
		out, _ := exec.Command(edigwBin, args...).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 0 {
				// A worker may be retrying it at this very moment (then the
				// item is leased and the CLI says so): that is fine too.
				if o, err := exec.Command(edigwBin, "spool", "retry", f[0], "--config", e.config).CombinedOutput(); err != nil {
					t.Logf("retry %s: %v %s", f[0], err, o)
				}
			}
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if keys := e.archived("edi/retail/"); len(keys) >= 3 {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("archive did not catch up: %v\n%s", e.archived("edi/retail/"), tail(e.log(), 20))
}

// A partner whose outbound channel is push gets its acks on its own server
// (here a directory through the file:// transport; the sftp, ftp and s3
// transports are tested against real servers in gateway/transport).
func TestAckPushedToPartnerServer(t *testing.T) {
	remote := t.TempDir()
	e := newEnvWith(t, func(parts string) {
		p := filepath.Join(parts, "retail", "partner.yaml")
		b, _ := os.ReadFile(p)
		b = bytes.Replace(b, []byte("outbound: {channel: outbox}"), []byte("outbound: {channel: push, url: \"file://"+remote+"\"}"), 1)
		os.WriteFile(p, b, 0o644)
	})
	if out, err := e.sftp("retail", "cd inbox\nput ../mapping/testdata/po-in.edi\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	e.waitDocs(1, 20*time.Second)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(remote, "997_*.x12"))
		if len(files) == 1 {
			b, _ := os.ReadFile(files[0])
			if !bytes.Contains(b, []byte("ST*997*")) || !bytes.Contains(b, []byte("AK9*A*1*1*1")) {
				t.Errorf("pushed ack is not an accepting 997:\n%s", b)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(remote, ".*")); len(leftovers) != 0 {
				t.Errorf("temp files left on the partner's server: %v", leftovers)
			}
			return
		}
	}
	t.Fatalf("no 997 pushed to %s\n%s", remote, tail(e.log(), 20))
}

// The gateway is SIGKILLed after a polled file is spooled and before the
// remote copy is deleted: after the restart the file is processed once and
// the remote copy is deleted.
func TestPollKilledBetweenSpoolAndDelete(t *testing.T) {
	peer := testpeers.StartSSHD(t)
	folder := filepath.Join(peer.Dir, "out")
	os.MkdirAll(folder, 0o755)
	po, _ := os.ReadFile("../mapping/testdata/po-in.edi")
	po = bytes.ReplaceAll(po, []byte("000000101"), []byte("000000777"))
	os.WriteFile(filepath.Join(folder, "po.edi"), po, 0o644)
	e := newEnvWith(t, func(parts string) {
		p := filepath.Join(parts, "retail", "partner.yaml")
		b, _ := os.ReadFile(p)
		b = bytes.Replace(b, []byte("outbound: {channel: outbox}"), fmt.Appendf(nil, `  polls:
    - name: supplier-sftp
      url: sftp://%s@127.0.0.1:%d%s
      private_key_file: %s
      host_key: %q
      schedule: "0 0 1 1 *"
      stable_for: 0s
      after_fetch: delete
outbound: {channel: outbox}`, peer.User, peer.Port, folder, filepath.Join(peer.Dir, "client"), peer.FP), 1)
		os.WriteFile(p, b, 0o644)
	})
	runNow := func(fault string) (*exec.Cmd, string, error) {
		cmd := exec.Command(edigwBin, "schedules", "run-now", "retail/supplier-sftp", "--config", e.config)
		cmd.Env = append(os.Environ(), "EDIGW_TEST_FAULT="+fault)
		out, err := cmd.CombinedOutput()
		return cmd, string(out), err
	}
	cmd, out, err := runNow("kill-after-poll-spool")
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); err == nil || !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("run-now with the fault was not SIGKILLed: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(folder, "po.edi")); err != nil {
		t.Fatalf("the remote file is gone although the process died before deleting it: %v", err)
	}
	e.waitDocs(1, 20*time.Second) // the running gateway processes what was spooled

	// The dead run's lease (3s) expires; the next run completes the job.
	time.Sleep(3500 * time.Millisecond)
	if _, out, err := runNow(""); err != nil {
		t.Fatalf("run-now after the crash: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(folder, "po.edi")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the remote file was not deleted by the run after the crash: %v", err)
	}
	time.Sleep(2 * time.Second) // time for a second delivery, if there were one
	if n, docs := totalPosts(e.sink), len(e.sink.Documents()); n != 1 || docs != 1 {
		t.Errorf("the ERP received %d POSTs of %d documents, want 1 of 1", n, docs)
	}
	out2, err := exec.Command(edigwBin, "spool", "ls", "--partner", "retail", "--config", e.config).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if live := strings.Count(string(out2), "po.edi") - strings.Count(string(out2), "duplicate"); live != 1 {
		t.Errorf("want po.edi spooled once (a refetch may be recorded as duplicate):\n%s", out2)
	}
	runs, _ := exec.Command(edigwBin, "schedules", "runs", "--config", e.config).CombinedOutput()
	if !strings.Contains(string(runs), "abandoned") {
		t.Errorf("the killed run is not shown as abandoned:\n%s", runs)
	}
	ls, _ := exec.Command(edigwBin, "schedules", "ls", "--config", e.config).CombinedOutput()
	if !regexp.MustCompile(`retail\s+supplier-sftp\s+sftp://\S+\s+0 0 1 1 \* \(UTC\)\s+\S+\s+\S+\s+ok\s+1`).Match(ls) {
		// The kill came before the poll remembered the file, so the last run
		// fetched it again (recorded as a duplicate, not processed).
		t.Errorf("schedules ls does not show the poll with its last run (ok, 1 fetched):\n%s", ls)
	}
}

// Changing a partner profile changes its schedule without a restart: on a
// change of the folder, or on SIGHUP.
func TestPartnersHotReload(t *testing.T) {
	for _, how := range []string{"file-change", "sighup"} {
		t.Run(how, func(t *testing.T) {
			folder := t.TempDir()
			po, _ := os.ReadFile("../mapping/testdata/po-in.edi")
			po = bytes.ReplaceAll(po, []byte("000000101"), []byte("000000888"))
			os.WriteFile(filepath.Join(folder, "po.txt"), po, 0o644)
			var partnerFile string
			reload := "partners_reload: 300ms\n"
			if how == "sighup" {
				reload = "partners_reload: -1s\n"
			}
			e := newEnvConfig(t, func(parts string) {
				partnerFile = filepath.Join(parts, "retail", "partner.yaml")
				b, _ := os.ReadFile(partnerFile)
				b = bytes.Replace(b, []byte("outbound: {channel: outbox}"), fmt.Appendf(nil, `  polls:
    - name: drop
      url: file://%s
      schedule: "* * * * * *"
      pattern: "*.edi"
      stable_for: 0s
      after_fetch: delete
outbound: {channel: outbox}`, folder), 1)
				os.WriteFile(partnerFile, b, 0o644)
			}, reload)
			gone := func(within time.Duration) bool {
				for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
					if _, err := os.Stat(filepath.Join(folder, "po.txt")); errors.Is(err, os.ErrNotExist) {
						return true
					}
				}
				return false
			}
			if gone(2 * time.Second) {
				t.Fatal("po.txt was fetched although the pattern is *.edi")
			}
			b, _ := os.ReadFile(partnerFile)
			os.WriteFile(partnerFile, bytes.Replace(b, []byte(`pattern: "*.edi"`), []byte(`pattern: "*.txt"`), 1), 0o644)
			if how == "sighup" {
				if gone(2 * time.Second) {
					t.Fatal("the profile was reloaded without SIGHUP although partners_reload is off")
				}
				e.cmd.Process.Signal(syscall.SIGHUP)
			}
			if !gone(10 * time.Second) {
				t.Fatalf("po.txt not fetched after the pattern changed to *.txt (%s)\n%s", how, tail(e.log(), 20))
			}
			e.waitDocs(1, 20*time.Second)
			if !strings.Contains(e.log(), "partner profiles reloaded") {
				t.Errorf("the log does not say the profiles were reloaded")
			}
		})
	}
}

// A file larger than spool.InlineMax is not kept inline but as a blob file
// (the SFTP listener spills it to a temporary file, which becomes the
// blob); it flows like a small one: one document at the ERP with every
// row, and the raw file archived whole.
func TestLargeUploadKeptAsBlob(t *testing.T) {
	e := newEnv(t)
	sample, err := os.ReadFile("../deploy/examples/partners/northwind-3pl/testdata/inv_20260316_0600.csv")
	if err != nil {
		t.Fatal(err)
	}
	header, row, _ := bytes.Cut(sample, []byte("\n"))
	row, _, _ = bytes.Cut(row, []byte("\n"))
	var big bytes.Buffer
	big.Write(header)
	big.WriteByte('\n')
	rows := 0
	for big.Len() <= spool.InlineMax+10<<10 {
		big.Write(bytes.Replace(row, []byte("GL-100245"), fmt.Appendf(nil, "GL-%06d", rows), 1))
		big.WriteByte('\n')
		rows++
	}
	local := filepath.Join(e.dir, "inv_big.csv")
	os.WriteFile(local, big.Bytes(), 0o644)
	if out, err := e.sftp("retail", "cd inbox\nput "+local+"\n"); err != nil {
		t.Fatalf("upload: %v\n%s", err, out)
	}
	e.waitDocs(1, 30*time.Second)
	var doc struct {
		Items []struct{ SKU string }
	}
	if err := json.Unmarshal(e.sink.Documents()[0].Body, &doc); err != nil || len(doc.Items) != rows {
		t.Fatalf("the ERP got %d items (%v), want %d", len(doc.Items), err, rows)
	}
	sum := sha256.Sum256(big.Bytes())
	blob := filepath.Join(e.dir, "data", "blobs", hex.EncodeToString(sum[:1]), hex.EncodeToString(sum[:]))
	if st, err := os.Stat(blob); err != nil || st.Size() != int64(big.Len()) {
		t.Errorf("the upload is not a blob file %s: %v", blob, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var raw []string
		for _, k := range e.archived("edi/retail/") {
			if strings.HasSuffix(k, "/raw-inv_big.csv") {
				raw = append(raw, k)
			}
		}
		if len(raw) == 1 {
			o, err := e.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &e.bucket, Key: &raw[0]})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(o.Body)
			o.Body.Close()
			if !bytes.Equal(got, big.Bytes()) {
				t.Errorf("archived raw file: %d bytes, want the %d uploaded", len(got), big.Len())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("raw file not archived: %v", e.archived("edi/retail/"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
