package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/edigw/edigw/internal/testpeers"
	"github.com/edigw/edigw/schedules"
	"github.com/edigw/edigw/spool"
)

// These tests poll real servers on loopback: OpenSSH sshd, vsftpd (plain
// and explicit TLS), versitygw and a directory. Each server's folder is a
// local directory, so the test puts files there and checks what is left.

// poFile is the test 850 with interchange control number n (distinct
// content, distinct ISA13).
func poFile(t *testing.T, n int) []byte {
	t.Helper()
	b, err := os.ReadFile("../mapping/testdata/po-in.edi")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte("000000101"), fmt.Appendf(nil, "%09d", n))
}

// pollGateway opens the spool side of a gateway (no listeners, no workers)
// with the retail test partner polling as pollsYAML says.
func pollGateway(t *testing.T, pollsYAML string) *Gateway {
	t.Helper()
	return pollGatewayWith(t, pollsYAML, "")
}

// pollGatewayWith also sets the partner's outbound push destination (the
// remote settings as YAML lines, "" for a local directory).
func pollGatewayWith(t *testing.T, pollsYAML, pushYAML string) *Gateway {
	t.Helper()
	dir := t.TempDir()
	if pushYAML == "" {
		pushYAML = "  url: \"file://" + filepath.Join(dir, "acks") + "\"\n"
	}
	parts := filepath.Join(dir, "partners")
	maps := filepath.Join(parts, "retail", "maps")
	os.MkdirAll(maps, 0o755)
	m, err := os.ReadFile("../mapping/testdata/po-850-in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.Index(m, []byte("\ntests:")); i >= 0 {
		m = m[:i+1] // its tests belong to the original
	}
	os.WriteFile(filepath.Join(maps, "850.yaml"), m, 0o644)
	os.WriteFile(filepath.Join(parts, "retail", "partner.yaml"), []byte(`id: retail
name: Retail Customer
status: active
x12: {isa: {qualifier: ZZ, id: SUPPLIERX}, gs_id: SUPPLIERX, version: "004010", usage: P}
inbound:
  polls:
`+pollsYAML+`outbound:
  channel: push
`+pushYAML+`
documents:
  - {x12: "850", map: maps/850.yaml, erp: purchase-orders}
`), 0o644)
	cfgFile := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("data_dir: %s\npartners: %s\nschedules: {lease: 5s}\n", filepath.Join(dir, "data"), parts)), 0o644)
	cfg, err := LoadConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	g, err := OpenPolls(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.store.Close() })
	return g
}

// poll returns the gateway's only poll, its remote wrapped so that every
// delete or move first checks that the file is durable in the spool.
func (g *Gateway) poll(t *testing.T) *schedules.Poll {
	t.Helper()
	ps := Polls(g.partners())
	if len(ps) != 1 {
		t.Fatalf("%d polls, want 1", len(ps))
	}
	p := ps[0]
	dial := p.Dial
	p.Dial = func(ctx context.Context) (schedules.Remote, error) {
		r, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		return durableFirst{Remote: r, t: t, g: g}, nil
	}
	return &p
}

// durableFirst fails the test when the poll deletes or moves a remote file
// that is not yet a committed spool record with its bytes readable.
type durableFirst struct {
	schedules.Remote
	t *testing.T
	g *Gateway
}

func (d durableFirst) check(name string) {
	files, _, err := d.g.store.ListFiles(context.Background(), spool.FileFilter{Partner: "retail", Page: spool.Page{Limit: 1000}})
	if err != nil {
		d.t.Errorf("list spool: %v", err)
		return
	}
	for _, f := range files {
		if f.Name == name {
			r, err := d.g.blobs.Open(context.Background(), f.Blob)
			if err != nil {
				d.t.Errorf("%s is removed from the partner's server but its spooled bytes are not readable: %v", name, err)
				return
			}
			r.Close()
			return
		}
	}
	d.t.Errorf("%s is removed from the partner's server before it is in the spool", name)
}

func (d durableFirst) Remove(ctx context.Context, name string) error {
	if !strings.HasSuffix(name, ".done") {
		d.check(name)
	}
	return d.Remote.Remove(ctx, name)
}

func (d durableFirst) Move(ctx context.Context, name, dir string) error {
	d.check(name)
	return d.Remote.Move(ctx, name, dir)
}

// spooled returns the partner's polled files in the spool by name, failing
// on a name spooled twice.
func (g *Gateway) spooled(t *testing.T) map[string][]byte {
	t.Helper()
	files, _, err := g.store.ListFiles(t.Context(), spool.FileFilter{Partner: "retail", Page: spool.Page{Limit: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		if f.Channel != "poll" {
			t.Errorf("%s: channel %q, want poll", f.Name, f.Channel)
		}
		if _, dup := out[f.Name]; dup {
			t.Errorf("%s spooled twice", f.Name)
		}
		r, err := g.blobs.Open(t.Context(), f.Blob)
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name], _ = io.ReadAll(r)
		r.Close()
	}
	return out
}

func runPoll(t *testing.T, g *Gateway, p *schedules.Poll) spool.PollRun {
	t.Helper()
	r, err := g.Runner().Run(t.Context(), p, "manual:test")
	if err != nil {
		t.Fatalf("run: %v (%+v)", err, r)
	}
	return r
}

func names(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// pollCase is one server: where its folder is on disk and how the poll
// reaches it.
type pollCase struct {
	folder  string // the polled folder, on disk
	yaml    string // the poll's settings
	after   string // delete, move:<dir> or keep
	prepare func(t *testing.T, folder string)
	waiting []string // matching files prepare adds that are not ready
}

func checkPollCase(t *testing.T, c pollCase) {
	g := pollGateway(t, c.yaml+"      after_fetch: \""+c.after+"\"\n")
	want := map[string][]byte{"a.edi": poFile(t, 201), "b.edi": poFile(t, 202), "c.edi": poFile(t, 203)}
	for n, b := range want {
		os.WriteFile(filepath.Join(c.folder, n), b, 0o644)
	}
	os.WriteFile(filepath.Join(c.folder, "notes.txt"), []byte("not for us"), 0o644)
	if c.prepare != nil {
		c.prepare(t, c.folder)
	}
	p := g.poll(t)

	r := runPoll(t, g, p)
	if r.Status != spool.RunOK || r.Seen != 3+len(c.waiting) || r.Fetched != 3 || r.Failed != 0 || r.Skipped != len(c.waiting) {
		t.Fatalf("first run: %+v, want ok with 3 seen and fetched", r)
	}
	got := g.spooled(t)
	if len(got) != 3 {
		t.Fatalf("spooled %d files, want 3", len(got))
	}
	for n, b := range want {
		if !bytes.Equal(got[n], b) {
			t.Errorf("%s: spooled bytes differ from the partner's file", n)
		}
	}
	left := names(c.folder)
	switch {
	case c.after == "delete":
		if want := append(slices.Clone(c.waiting), "notes.txt"); !slices.Equal(left, want) {
			t.Errorf("after delete the folder holds %v, want %v", left, want)
		}
	case strings.HasPrefix(c.after, "move:"):
		sub := strings.TrimPrefix(c.after, "move:")
		if moved := names(filepath.Join(c.folder, sub)); !slices.Equal(moved, []string{"a.edi", "b.edi", "c.edi"}) {
			t.Errorf("moved to %s: %v", sub, moved)
		}
	case c.after == "keep":
		if !slices.Equal(left, []string{"a.edi", "b.edi", "c.edi", "notes.txt"}) {
			t.Errorf("after keep the folder holds %v", left)
		}
	}

	// The next run finds nothing new: nothing is fetched twice.
	r = runPoll(t, g, p)
	if r.Status != spool.RunOK || r.Fetched != 0 {
		t.Fatalf("second run: %+v, want nothing fetched", r)
	}
	if n := len(g.spooled(t)); n != 3 {
		t.Fatalf("after the second run %d files are spooled, want 3", n)
	}
	runs, err := g.store.ListRuns(t.Context(), spool.RunFilter{Partner: "retail"})
	if err != nil || len(runs) != 2 || runs[1].Fetched != 3 || runs[0].Fetched != 0 || runs[0].EndedAt.IsZero() {
		t.Errorf("run history: %+v, %v", runs, err)
	}
}

func TestPollServers(t *testing.T) {
	t.Run("sftp", func(t *testing.T) {
		p := testpeers.StartSSHD(t)
		folder := filepath.Join(p.Dir, "out")
		os.MkdirAll(folder, 0o755)
		checkPollCase(t, pollCase{folder: folder, after: "delete", yaml: fmt.Sprintf(`    - name: sftp
      url: sftp://%s@127.0.0.1:%d%s
      private_key_file: %s
      host_key: %q
      schedule: "@every 1h"
      pattern: "*.edi"
      stable_for: 0s
`, p.User, p.Port, folder, filepath.Join(p.Dir, "client"), p.FP)})
	})
	t.Run("ftp", func(t *testing.T) {
		dir, port := testpeers.StartVsftpd(t, "")
		checkPollCase(t, pollCase{folder: filepath.Join(dir, "root", "incoming"), after: "move:processed", yaml: fmt.Sprintf(`    - name: ftp
      url: ftp://127.0.0.1:%d/incoming
      username: anonymous
      schedule: "@every 1h"
      pattern: "*.edi"
      stable_for: 0s
`, port)})
	})
	t.Run("ftpes", func(t *testing.T) {
		dir, port := testpeers.StartVsftpd(t, "tls")
		checkPollCase(t, pollCase{folder: filepath.Join(dir, "root", "incoming"), after: "delete", yaml: fmt.Sprintf(`    - name: ftpes
      url: ftpes://127.0.0.1:%d/incoming
      username: anonymous
      ca_file: %s
      schedule: "@every 1h"
      pattern: "*.edi"
      stable_for: 0s
`, port, filepath.Join(dir, "ca.pem"))})
	})
	t.Run("s3", func(t *testing.T) {
		dir, endpoint := testpeers.StartVersitygw(t, "edigwtestkey", "edigwtestsecret123", "partner")
		t.Setenv("EDIGW_TEST_S3_ACCESS", "edigwtestkey")
		t.Setenv("EDIGW_TEST_S3_SECRET", "edigwtestsecret123")
		folder := filepath.Join(dir, "partner", "out")
		os.MkdirAll(folder, 0o755)
		checkPollCase(t, pollCase{folder: folder, after: "keep", yaml: fmt.Sprintf(`    - name: s3
      url: s3://partner/out/
      endpoint: %s
      region: us-east-1
      access_key_env: EDIGW_TEST_S3_ACCESS
      secret_key_env: EDIGW_TEST_S3_SECRET
      schedule: "@every 1h"
      pattern: "*.edi"
`, endpoint)})
	})
	t.Run("dir-with-trigger-files", func(t *testing.T) {
		folder := t.TempDir()
		checkPollCase(t, pollCase{folder: folder, after: "delete", yaml: fmt.Sprintf(`    - name: dir
      url: file://%s
      schedule: "@every 1h"
      pattern: "*.edi"
      trigger_suffix: .done
`, folder), prepare: func(t *testing.T, folder string) {
			for _, n := range []string{"a.edi", "b.edi", "c.edi"} {
				os.WriteFile(filepath.Join(folder, n+".done"), nil, 0o644)
			}
			// Without its trigger file a data file is not complete yet.
			os.WriteFile(filepath.Join(folder, "d.edi"), poFile(t, 204), 0o644)
		}, waiting: []string{"d.edi"}})
	})
}

// A wrong host key is refused before anything is listed, and the run
// record says why.
func TestPollWrongHostKey(t *testing.T) {
	p := testpeers.StartSSHD(t)
	folder := filepath.Join(p.Dir, "out")
	os.MkdirAll(folder, 0o755)
	os.WriteFile(filepath.Join(folder, "a.edi"), poFile(t, 301), 0o644)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewPublicKey(other)
	wrong := ssh.FingerprintSHA256(otherKey)
	g := pollGateway(t, fmt.Sprintf(`    - name: sftp
      url: sftp://%s@127.0.0.1:%d%s
      private_key_file: %s
      host_key: %q
      schedule: "@every 1h"
      after_fetch: delete
`, p.User, p.Port, folder, filepath.Join(p.Dir, "client"), wrong))
	r, err := g.Runner().Run(t.Context(), g.poll(t), "manual:test")
	if err == nil || r.Status != spool.RunFailed {
		t.Fatalf("run with a wrong host key: %+v, %v; want failed", r, err)
	}
	if !strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), p.FP) {
		t.Errorf("error %q does not name the pinned %s and the presented %s", err, wrong, p.FP)
	}
	runs, _ := g.store.ListRuns(t.Context(), spool.RunFilter{Partner: "retail"})
	if len(runs) != 1 || runs[0].Status != spool.RunFailed || len(runs[0].Errors) != 1 || !strings.Contains(runs[0].Errors[0], p.FP) {
		t.Errorf("run record: %+v", runs)
	}
	if len(g.spooled(t)) != 0 || !slices.Equal(names(folder), []string{"a.edi"}) {
		t.Error("a run refused by host key fetched or removed something")
	}
}

// A file the partner is still writing is not fetched until it has stopped
// changing; what is fetched is the whole file.
func TestPollGrowingFile(t *testing.T) {
	p := testpeers.StartSSHD(t)
	folder := filepath.Join(p.Dir, "out")
	os.MkdirAll(folder, 0o755)
	g := pollGateway(t, fmt.Sprintf(`    - name: sftp
      url: sftp://%s@127.0.0.1:%d%s
      private_key_file: %s
      host_key: %q
      schedule: "@every 1h"
      stable_for: 1s
      after_fetch: delete
`, p.User, p.Port, folder, filepath.Join(p.Dir, "client"), p.FP))
	poll := g.poll(t)

	full := poFile(t, 401)
	f, err := os.Create(filepath.Join(folder, "big.edi"))
	if err != nil {
		t.Fatal(err)
	}
	const steps = 12 // one piece every 250ms: 3s of writing
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		defer f.Close()
		for i := range steps {
			f.Write(full[i*len(full)/steps : (i+1)*len(full)/steps])
			time.Sleep(250 * time.Millisecond)
		}
	}()
	var fetchedWhileWriting bool
	for {
		select {
		case <-writing:
		default:
			r := runPoll(t, g, poll)
			if r.Fetched > 0 {
				fetchedWhileWriting = true
			}
			continue
		}
		break
	}
	if fetchedWhileWriting {
		t.Fatal("a file still being written was fetched")
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(g.spooled(t)) == 0 && time.Now().Before(deadline) {
		runPoll(t, g, poll)
	}
	got := g.spooled(t)
	if !bytes.Equal(got["big.edi"], full) {
		t.Fatalf("spooled %d bytes, want the complete %d", len(got["big.edi"]), len(full))
	}
}

// The server dies mid-download: nothing half-fetched is spooled, the remote
// file stays, and a later run fetches it whole, once.
func TestPollServerDiesMidDownload(t *testing.T) {
	p := testpeers.StartSSHD(t)
	folder := filepath.Join(p.Dir, "out")
	os.MkdirAll(folder, 0o755)
	big := make([]byte, 48<<20)
	rand.Read(big)
	os.WriteFile(filepath.Join(folder, "big.bin"), big, 0o644)
	g := pollGateway(t, fmt.Sprintf(`    - name: sftp
      url: sftp://%s@127.0.0.1:%d%s
      private_key_file: %s
      host_key: %q
      schedule: "@every 1h"
      stable_for: 0s
      after_fetch: delete
`, p.User, p.Port, folder, filepath.Join(p.Dir, "client"), p.FP))
	poll := g.poll(t)
	runner := g.Runner()
	var once sync.Once
	runner.Sink = func(ctx context.Context, f schedules.Fetched, r io.Reader) (spool.ID, error) {
		// Kill the server once the first 4 MiB have arrived.
		return g.acceptPolled(ctx, f, &killAfter{r: r, n: 4 << 20, kill: func() { once.Do(p.Kill) }})
	}
	r, _ := runner.Run(t.Context(), poll, "manual:test")
	if r.Fetched != 0 || r.Failed != 1 || r.Status == spool.RunOK {
		t.Fatalf("run with the server killed mid-download: %+v", r)
	}
	if n := len(g.spooled(t)); n != 0 {
		t.Fatalf("%d files spooled from a broken download", n)
	}
	if _, err := os.Stat(filepath.Join(folder, "big.bin")); err != nil {
		t.Fatalf("the remote file is gone after a failed download: %v", err)
	}

	p.Start()
	r = runPoll(t, g, poll)
	if r.Fetched != 1 || r.Status != spool.RunOK {
		t.Fatalf("run after the restart: %+v", r)
	}
	if got := g.spooled(t); len(got) != 1 || !bytes.Equal(got["big.bin"], big) {
		t.Fatalf("after the restart: %d files, big.bin %d bytes (want %d, equal)", len(got), len(got["big.bin"]), len(big))
	}
	if _, err := os.Stat(filepath.Join(folder, "big.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the remote file was not deleted after the complete fetch: %v", err)
	}
}

type killAfter struct {
	r    io.Reader
	n    int
	kill func()
}

func (k *killAfter) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if k.n -= n; k.n <= 0 {
		k.kill()
	}
	return n, err
}

// A partner whose server accepts connections and never answers does not
// delay another partner's schedule.
func TestPollUnreachableDoesNotDelayOthers(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it, say nothing
		}
	}()
	folder := t.TempDir()
	g := pollGateway(t, fmt.Sprintf(`    - name: stuck
      url: sftp://edigw@%s/out
      password_env: EDIGW_TEST_NO_PASSWORD
      host_key: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
      schedule: "* * * * * *"
      after_fetch: delete
    - name: dir
      url: file://%s
      schedule: "* * * * * *"
      stable_for: 0s
      after_fetch: delete
`, silent.Addr(), folder))
	t.Setenv("EDIGW_TEST_NO_PASSWORD", "x")
	sched := schedules.NewScheduler(g.Runner())
	sched.Set(Polls(g.partners()))
	sched.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sched.Stop(ctx)
	}()
	for i := range 3 {
		os.WriteFile(filepath.Join(folder, fmt.Sprintf("f%d.edi", i)), poFile(t, 500+i), 0o644)
		deadline := time.Now().Add(5 * time.Second)
		for len(names(folder)) != 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if len(names(folder)) != 0 {
			t.Fatalf("file %d not fetched within 5s while the other partner's server hangs", i)
		}
	}
	stuck, _ := g.store.ListRuns(t.Context(), spool.RunFilter{Partner: "retail", Poll: "stuck"})
	if len(stuck) == 0 || stuck[0].Status != spool.RunRunning {
		t.Errorf("the stuck poll's run: %+v, want one still running (its connect has not timed out)", stuck)
	}
	if n := len(g.spooled(t)); n != 3 {
		t.Errorf("%d files spooled, want 3", n)
	}
}

// Acks for a partner whose outbound channel is its own server land there,
// whole, under the naming rule, with no temp file left behind.
func TestAckPushedToServers(t *testing.T) {
	dirPoll := "    - {name: dir, url: \"file://" + t.TempDir() + "\", schedule: \"@every 1h\", after_fetch: delete}\n"
	check := func(t *testing.T, pushYAML, folder string) {
		g := pollGatewayWith(t, dirPoll, pushYAML)
		ack := []byte("ISA*00*          *00*          *ZZ*EDIGW          *ZZ*SUPPLIERX      *261127*1200*U*00401*000000042*0*P*>~TA1*000000101*240315*1200*A*000~IEA*0*000000042~")
		ref, err := g.blobs.Put(t.Context(), bytes.NewReader(ack))
		if err != nil {
			t.Fatal(err)
		}
		p := g.partners().ByID("retail")
		if err := g.deliverAck(t.Context(), p, spool.Ack{Kind: "TA1", Status: "A", Control: "000000042", Blob: ref, At: time.Now()}); err != nil {
			t.Fatalf("push: %v", err)
		}
		if got := names(folder); !slices.Equal(got, []string{"TA1_000000042.x12"}) {
			t.Fatalf("the partner's folder holds %v, want only TA1_000000042.x12", got)
		}
		if b, _ := os.ReadFile(filepath.Join(folder, "TA1_000000042.x12")); !bytes.Equal(b, ack) {
			t.Errorf("pushed bytes differ:\n%s", b)
		}
		// Pushing again (a retried stage) leaves one whole file.
		if err := g.deliverAck(t.Context(), p, spool.Ack{Kind: "TA1", Status: "A", Control: "000000042", Blob: ref, At: time.Now()}); err != nil {
			t.Fatalf("second push: %v", err)
		}
		if got := names(folder); len(got) != 1 {
			t.Errorf("after a second push the folder holds %v", got)
		}
	}
	t.Run("sftp", func(t *testing.T) {
		p := testpeers.StartSSHD(t)
		folder := filepath.Join(p.Dir, "in")
		os.MkdirAll(folder, 0o755)
		check(t, fmt.Sprintf("  url: sftp://%s@127.0.0.1:%d%s\n  private_key_file: %s\n  host_key: %q\n",
			p.User, p.Port, folder, filepath.Join(p.Dir, "client"), p.FP), folder)
	})
	t.Run("ftp", func(t *testing.T) {
		dir, port := testpeers.StartVsftpd(t, "")
		check(t, fmt.Sprintf("  url: ftp://127.0.0.1:%d/incoming\n  username: anonymous\n", port), filepath.Join(dir, "root", "incoming"))
	})
	t.Run("ftpes", func(t *testing.T) {
		dir, port := testpeers.StartVsftpd(t, "tls")
		check(t, fmt.Sprintf("  url: ftpes://127.0.0.1:%d/incoming\n  username: anonymous\n  ca_file: %s\n", port, filepath.Join(dir, "ca.pem")),
			filepath.Join(dir, "root", "incoming"))
	})
	t.Run("s3", func(t *testing.T) {
		dir, endpoint := testpeers.StartVersitygw(t, "edigwtestkey", "edigwtestsecret123", "partner")
		t.Setenv("EDIGW_TEST_S3_ACCESS", "edigwtestkey")
		t.Setenv("EDIGW_TEST_S3_SECRET", "edigwtestsecret123")
		folder := filepath.Join(dir, "partner", "in")
		os.MkdirAll(folder, 0o755)
		check(t, fmt.Sprintf("  url: s3://partner/in/\n  endpoint: %s\n  region: us-east-1\n  access_key_env: EDIGW_TEST_S3_ACCESS\n  secret_key_env: EDIGW_TEST_S3_SECRET\n", endpoint), folder)
	})
}
