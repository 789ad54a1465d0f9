package sftpd

// The server is tested with real clients on 127.0.0.1: the OpenSSH sftp
// binary (key authentication; Debian package openssh-client) and
// golang.org/x/crypto/ssh + github.com/pkg/sftp as a client for what the
// sftp binary cannot do in batch mode (passwords, forced algorithms,
// dropping the TCP connection at a chosen moment).
//
// Without the OpenSSH binaries the OpenSSH tests skip, except when CI=true,
// where they fail: apt-get install -y openssh-client.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edigw/edigw/gateway/outbox"
	"github.com/edigw/edigw/partners"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

const testPassword = "correct horse battery staple"

// ---- fixtures ----

type acceptCall struct {
	u    Upload
	data []byte
}

// recInbox records Accept calls; err is returned by Accept, block (if set)
// is waited for before returning.
type recInbox struct {
	mu    sync.Mutex
	calls []acceptCall
	err   error
	block chan struct{}
}

func (r *recInbox) Accept(ctx context.Context, u Upload, f *os.File) (Receipt, error) {
	data := u.Data
	if f != nil {
		var err error
		if data, err = io.ReadAll(f); err != nil {
			return Receipt{}, err
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, acceptCall{u, data})
	block, rerr := r.block, r.err
	n := len(r.calls)
	r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return Receipt{}, ctx.Err()
		}
	}
	sum := sha256.Sum256(data)
	return Receipt{MessageID: fmt.Sprintf("file_test%d", n), SHA256: hex.EncodeToString(sum[:])}, rerr
}

func (r *recInbox) get() []acceptCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recInbox) setErr(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t       *testing.T
	root    string // partner profiles (a copy of testdata/partners)
	keys    string // private keys: acme, bolt, rsa
	work    string // the local directory of the sftp client
	tempDir string
	set     atomic.Pointer[partners.Set]
	srv     *Server
	served  chan error
	addr    string
	port    string
	inbox   *recInbox
	out     *outbox.Dir
	logs    *syncBuffer
	rsaKey  *rsa.PrivateKey
}

type envOpts struct {
	keygen  bool     // generate the ed25519 keys with ssh-keygen
	exclude []string // partner folders not to load
	// freshHostKeys lets the server generate its host keys instead of
	// using the shared test set.
	freshHostKeys bool
	config        func(*Config)
}

var hostKeyFixture = sync.OnceValues(func() (map[string][]byte, error) {
	dir, err := os.MkdirTemp("", "sftpd-hostkeys-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, err := loadHostKeys(dir); err != nil {
		return nil, err
	}
	keys := map[string][]byte{}
	for _, name := range []string{hostKeyEd25519, hostKeyRSA} {
		if keys[name], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	return keys, nil
})

var rsaTestKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		t:       t,
		root:    filepath.Join(dir, "partners"),
		keys:    filepath.Join(dir, "clientkeys"),
		work:    filepath.Join(dir, "work"),
		tempDir: filepath.Join(dir, "uploads"),
		inbox:   &recInbox{},
		logs:    &syncBuffer{},
	}
	for _, d := range []string{e.keys, e.work} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.CopyFS(e.root, os.DirFS("testdata/partners")); err != nil {
		t.Fatal(err)
	}
	for _, p := range o.exclude {
		os.RemoveAll(filepath.Join(e.root, p))
	}
	// Client keys and the password hash the profiles refer to.
	acmePub := e.genKey("acme", o.keygen)
	boltPub := e.genKey("bolt", o.keygen)
	rk, err := rsaTestKey()
	if err != nil {
		t.Fatal(err)
	}
	e.rsaKey = rk
	writeKey(t, filepath.Join(e.keys, "rsa"), rk)
	rsaSigner, _ := ssh.NewSignerFromKey(rk)
	rsaPub := ssh.MarshalAuthorizedKey(rsaSigner.PublicKey())
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(e.root)
	for _, ent := range entries {
		p := filepath.Join(e.root, ent.Name())
		os.MkdirAll(filepath.Join(p, "keys"), 0o700)
		os.MkdirAll(filepath.Join(p, "secrets"), 0o700)
		mustWrite(t, filepath.Join(p, "keys", "acme.pub"), acmePub)
		mustWrite(t, filepath.Join(p, "keys", "bolt.pub"), boltPub)
		mustWrite(t, filepath.Join(p, "keys", "rsa.pub"), rsaPub)
		mustWrite(t, filepath.Join(p, "secrets", "acme.bcrypt"), append(hash, '\n'))
	}
	e.reload()

	if !o.freshHostKeys {
		// Generating an RSA-3072 key takes a while: share one set.
		keys, err := hostKeyFixture()
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(dir, "hostkeys"), 0o700)
		for name, data := range keys {
			mustWrite(t, filepath.Join(dir, "hostkeys", name), data)
		}
	}
	e.out, err = outbox.New(filepath.Join(dir, "outbox"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		HostKeyDir:       filepath.Join(dir, "hostkeys"),
		Users:            e.set.Load,
		Inbox:            e.inbox,
		Outbox:           e.out,
		TempDir:          e.tempDir,
		FailDelay:        5 * time.Millisecond,
		BanAfter:         100,
		HandshakeTimeout: 10 * time.Second,
		Logger:           slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if o.config != nil {
		o.config(&cfg)
	}
	e.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	_, e.port, _ = net.SplitHostPort(e.addr)
	e.served = make(chan error, 1)
	go func() { e.served <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-e.served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", e.logs)
		}
	})
	return e
}

func (e *env) reload() {
	e.t.Helper()
	set, err := partners.LoadDir(e.root)
	if err != nil {
		e.t.Fatalf("loading test partners: %v", err)
	}
	e.set.Store(set)
}

// genKey creates the ed25519 client key e.keys/name and returns its public
// half in authorized_keys format.
func (e *env) genKey(name string, keygen bool) []byte {
	e.t.Helper()
	file := filepath.Join(e.keys, name)
	if keygen {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", file).CombinedOutput()
		if err != nil {
			e.t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
		pub, err := os.ReadFile(file + ".pub")
		if err != nil {
			e.t.Fatal(err)
		}
		return pub
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	writeKey(e.t, file, k)
	s, _ := ssh.NewSignerFromKey(k)
	return ssh.MarshalAuthorizedKey(s.PublicKey())
}

func writeKey(t *testing.T, file string, key any) {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, file string, data []byte) {
	t.Helper()
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *env) signer(name string) ssh.Signer {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.keys, name))
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// dial logs in with the Go SSH client.
func (e *env) dial(user string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	return e.dialConfig(&ssh.ClientConfig{User: user, Auth: auth})
}

func (e *env) dialConfig(cfg *ssh.ClientConfig) (*ssh.Client, error) {
	cfg.HostKeyCallback = ssh.InsecureIgnoreHostKey()
	cfg.Timeout = 10 * time.Second
	return ssh.Dial("tcp", e.addr, cfg)
}

func (e *env) sftpClient(user string, auth ...ssh.AuthMethod) *sftp.Client {
	e.t.Helper()
	c, err := e.dial(user, auth...)
	if err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		c.Close()
		e.t.Fatalf("sftp %s: %v", user, err)
	}
	e.t.Cleanup(func() { sc.Close(); c.Close() })
	return sc
}

// requireOpenSSH skips (or, with CI=true, fails) the test when the OpenSSH
// client binaries are missing.
func requireOpenSSH(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"sftp", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(bin); err != nil {
			msg := fmt.Sprintf("OpenSSH client binary %q not found (install it: apt-get install -y openssh-client)", bin)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

func (e *env) sftpArgs(user, key, batchFile string) []string {
	return []string{
		"-b", batchFile, "-F", "/dev/null", "-P", e.port, "-i", filepath.Join(e.keys, key),
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "ConnectTimeout=10",
		"-o", "LogLevel=ERROR", user + "@127.0.0.1",
	}
}

func (e *env) batchFile(batch string) string {
	f, err := os.CreateTemp(e.t.TempDir(), "batch")
	if err != nil {
		e.t.Fatal(err)
	}
	f.WriteString(batch + "\n")
	f.Close()
	return f.Name()
}

// runSFTP runs the OpenSSH sftp client in batch mode in e.work.
func (e *env) runSFTP(user, key, batch string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sftp", e.sftpArgs(user, key, e.batchFile(batch))...)
	cmd.Dir = e.work
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *env) local(name string, data []byte) {
	e.t.Helper()
	mustWrite(e.t, filepath.Join(e.work, name), data)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// uploadsInProgress lists the temporary upload files.
func (e *env) uploadsInProgress() []string {
	m, _ := filepath.Glob(filepath.Join(e.tempDir, uploadPrefix+"*"))
	return m
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) assertNoTemp() {
	e.t.Helper()
	waitFor(e.t, "temporary upload files to be removed", func() bool { return len(e.uploadsInProgress()) == 0 })
}

// assertLog checks that a log line contains all substrings, waiting a
// little: the server may log after the client has seen the result.
func (e *env) assertLog(substrings ...string) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(e.logs.String(), "\n") {
			ok := true
			for _, s := range substrings {
				ok = ok && strings.Contains(line, s)
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Errorf("no log line contains all of %q", substrings)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---- OpenSSH client ----

func TestOpenSSHUpload(t *testing.T) {
	requireOpenSSH(t)
	e := newEnv(t, envOpts{keygen: true})
	x12 := []byte("ISA*00*          *00*          *ZZ*ACMEIND        *ZZ*DISTRIB        *260101*1200*U*00401*000000001*0*P*>~\n")
	csv := randomBytes(300 << 10)
	e.local("ship.x12", x12)
	e.local("inv_20260101.csv", csv)
	out, err := e.runSFTP("acme", "acme", "ls -1 /\ncd inbox\nput ship.x12\nput -p inv_20260101.csv\nls -la\npwd")
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	if !strings.Contains(out, "/inbox\n/outbox") && !strings.Contains(out, "inbox\noutbox") {
		t.Errorf("ls / does not show exactly inbox and outbox:\n%s", out)
	}
	calls := e.inbox.get()
	if len(calls) != 2 {
		t.Fatalf("%d Accept calls, want 2", len(calls))
	}
	for i, want := range []struct {
		name string
		data []byte
	}{{"ship.x12", x12}, {"inv_20260101.csv", csv}} {
		c := calls[i]
		if c.u.Name != want.name || !bytes.Equal(c.data, want.data) || c.u.Size != int64(len(want.data)) {
			t.Errorf("call %d: %+v, %d bytes; want %s, %d bytes", i, c.u, len(c.data), want.name, len(want.data))
		}
		if c.u.PartnerID != "acme" || c.u.User != "acme" || c.u.SessionID == "" || !strings.HasPrefix(c.u.RemoteAddr, "127.0.0.1:") {
			t.Errorf("call %d: %+v", i, c.u)
		}
	}
	e.assertNoTemp()
	sum := sha256.Sum256(csv)
	e.assertLog(`"msg":"sftp upload"`, `"partner":"acme"`, `"file":"inv_20260101.csv"`, `"message_id":"file_test2"`, hex.EncodeToString(sum[:]))
	e.assertLog(`"msg":"sftp login"`, `"partner":"acme"`, `"user":"acme"`, `"ip":"127.0.0.1"`, `"method":"publickey/ssh-ed25519"`)
}

func TestOpenSSHAcceptErrorFailsUpload(t *testing.T) {
	requireOpenSSH(t)
	e := newEnv(t, envOpts{keygen: true})
	e.inbox.setErr(errors.New("spool: commit: database is locked (/var/lib/edigw/spool.db)"))
	e.local("ship.x12", []byte("ISA~"))
	out, err := e.runSFTP("acme", "acme", "put ship.x12 /inbox/ship.x12")
	if err == nil {
		t.Fatalf("sftp succeeded although Accept failed:\n%s", out)
	}
	if strings.Contains(out, "spool.db") {
		t.Errorf("internal error text reached the client:\n%s", out)
	}
	if n := len(e.inbox.get()); n != 1 {
		t.Errorf("%d Accept calls, want 1", n)
	}
	e.assertNoTemp()
	e.assertLog(`"msg":"sftp upload not accepted"`, `"partner":"acme"`, "database is locked")
}

func TestOpenSSHKilledMidUpload(t *testing.T) {
	requireOpenSSH(t)
	e := newEnv(t, envOpts{keygen: true})
	e.local("big.csv", randomBytes(16<<20))
	args := append([]string{"-l", "4000"}, e.sftpArgs("acme", "acme", e.batchFile("put big.csv /inbox/big.csv"))...)
	cmd := exec.Command("sftp", args...)
	cmd.Dir = e.work
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // sftp and its ssh child
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, "the upload to start", func() bool {
		for _, f := range e.uploadsInProgress() {
			if st, err := os.Stat(f); err == nil && st.Size() >= 256<<10 {
				return true
			}
		}
		return false
	})
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	e.assertNoTemp()
	if calls := e.inbox.get(); len(calls) != 0 {
		t.Fatalf("a killed upload was accepted: %+v", calls[0].u)
	}
	e.assertLog(`"msg":"sftp upload discarded"`, `"file":"big.csv"`)
}

func TestOpenSSHOutbox(t *testing.T) {
	requireOpenSSH(t)
	e := newEnv(t, envOpts{keygen: true})
	ctx := context.Background()
	for _, f := range []struct{ partner, name, data string }{
		{"acme", "997_000000001.x12", "ack one"},
		{"acme", "997_000000002.x12", "ack two"},
		{"bolt", "999_000000009.x12", "bolt's ack"},
	} {
		if err := e.out.Put(ctx, f.partner, f.name, strings.NewReader(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := e.runSFTP("acme", "acme", "ls -1 outbox\nget outbox/997_000000001.x12 got.x12\nrm outbox/997_000000001.x12\ncd outbox\nget 997_000000002.x12")
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	if !strings.Contains(out, "997_000000001.x12") || !strings.Contains(out, "997_000000002.x12") || strings.Contains(out, "999_000000009") {
		t.Errorf("listing:\n%s", out)
	}
	for name, want := range map[string]string{"got.x12": "ack one", "997_000000002.x12": "ack two"} {
		if b, err := os.ReadFile(filepath.Join(e.work, name)); err != nil || string(b) != want {
			t.Errorf("downloaded %s: %q, %v", name, b, err)
		}
	}
	files, _ := e.out.List(ctx, "acme")
	if len(files) != 1 || files[0].Name != "997_000000002.x12" {
		t.Errorf("acme outbox after rm: %+v", files)
	}
	e.assertLog(`"msg":"sftp download"`, `"partner":"acme"`, `"file":"997_000000001.x12"`)
	e.assertLog(`"msg":"sftp pickup"`, `"partner":"acme"`, `"file":"997_000000001.x12"`)

	// Another partner's outbox is invisible.
	for _, batch := range []string{"get outbox/999_000000009.x12", "rm outbox/999_000000009.x12", "get /outbox/../bolt/999_000000009.x12"} {
		if out, err := e.runSFTP("acme", "acme", batch); err == nil {
			t.Errorf("%q succeeded:\n%s", batch, out)
		}
	}
	if files, _ := e.out.List(ctx, "bolt"); len(files) != 1 {
		t.Errorf("bolt outbox: %+v", files)
	}
	if _, err := os.Stat(filepath.Join(e.work, "999_000000009.x12")); err == nil {
		t.Error("bolt's file was downloaded by acme")
	}
	// bolt sees its own.
	out, err = e.runSFTP("bolt", "bolt", "ls -1 /outbox")
	if err != nil || !strings.Contains(out, "999_000000009.x12") || strings.Contains(out, "997_") {
		t.Errorf("bolt listing: %v\n%s", err, out)
	}
}

func TestOpenSSHRefused(t *testing.T) {
	requireOpenSSH(t)
	e := newEnv(t, envOpts{keygen: true})
	ctx := context.Background()
	if err := e.out.Put(ctx, "acme", "997_000000001.x12", strings.NewReader("ack")); err != nil {
		t.Fatal(err)
	}
	e.local("data.x12", []byte("ISA~"))
	for _, batch := range []string{
		"put data.x12",             // into /
		"put data.x12 ../data.x12", // above / is /
		"cd ..\nput data.x12",      //
		"cd inbox\nput data.x12 ../../data.x12",
		"put data.x12 /inbox/../../tmp/data.x12",
		"put data.x12 /outbox/data.x12",
		"put data.x12 /inbox/sub/data.x12",
		"put data.x12 /inbox/.hidden",
		"get /etc/passwd",
		"get ../../etc/passwd",
		"get /inbox/../../etc/passwd",
		"cd inbox\nget ../../../etc/passwd",
		"ls /etc",
		"cd /etc",
		"ln -s /etc/passwd /inbox/passwd",
		"symlink /outbox/997_000000001.x12 /outbox/link",
		"mkdir /inbox/sub",
		"mkdir /sub",
		"rmdir /inbox",
		"rename /outbox/997_000000001.x12 /outbox/renamed.x12",
		"rename /outbox/997_000000001.x12 /inbox/997.x12",
		"chmod 777 /outbox/997_000000001.x12",
		"chmod 700 /inbox",
		"rm /inbox/data.x12",
		"rm /outbox",
	} {
		out, err := e.runSFTP("acme", "acme", batch)
		if err == nil {
			t.Errorf("%q succeeded:\n%s", batch, out)
		}
	}
	if calls := e.inbox.get(); len(calls) != 0 {
		t.Errorf("Accept called for %+v", calls[0].u)
	}
	if files, _ := e.out.List(ctx, "acme"); len(files) != 1 || files[0].Name != "997_000000001.x12" {
		t.Errorf("outbox changed: %+v", files)
	}
	if _, err := os.Stat(filepath.Join(e.work, "passwd")); err == nil {
		t.Error("/etc/passwd was downloaded")
	}
	e.assertNoTemp()
	e.assertLog(`"msg":"sftp refused"`, `"op":"write"`, `"path":"/data.x12"`)
}

func TestOpenSSHUnknownKey(t *testing.T) {
	requireOpenSSH(t)
	e := newEnv(t, envOpts{keygen: true})
	e.genKey("stranger", true)
	if out, err := e.runSFTP("acme", "stranger", "ls"); err == nil {
		t.Fatalf("login with an unknown key succeeded:\n%s", out)
	}
	if out, err := e.runSFTP("acme", "bolt", "ls"); err == nil { // bolt's key, acme's user
		t.Fatalf("login with another user's key succeeded:\n%s", out)
	}
	if out, err := e.runSFTP("nobody", "acme", "ls"); err == nil {
		t.Fatalf("login as an unknown user succeeded:\n%s", out)
	}
	e.assertLog(`"msg":"sftp login failed"`, `"user":"acme"`, `"reason":"unknown key"`, `"partner":"acme"`)
	e.assertLog(`"msg":"sftp login failed"`, `"user":"nobody"`, `"reason":"unknown user"`)
}

func TestOpenSSHMaxFileSize(t *testing.T) {
	requireOpenSSH(t)
	e := newEnv(t, envOpts{keygen: true, config: func(c *Config) { c.MaxFileSize = 100 << 10 }})
	e.local("ok.csv", randomBytes(100<<10))
	e.local("big.csv", randomBytes(100<<10+1))
	if out, err := e.runSFTP("acme", "acme", "put ok.csv /inbox/"); err != nil {
		t.Fatalf("upload at the limit: %v\n%s", err, out)
	}
	if out, err := e.runSFTP("acme", "acme", "put big.csv /inbox/"); err == nil {
		t.Fatalf("upload over the limit succeeded:\n%s", out)
	}
	calls := e.inbox.get()
	if len(calls) != 1 || calls[0].u.Name != "ok.csv" {
		t.Fatalf("Accept calls: %d", len(calls))
	}
	e.assertNoTemp()
	e.assertLog(`"msg":"sftp upload discarded"`, `"file":"big.csv"`, "file too large")
}

// ---- Go client ----

func TestPasswordAuth(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.sftpClient("acme", ssh.Password(testPassword))
	infos, err := c.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range infos {
		names = append(names, fi.Name())
		if !fi.IsDir() {
			t.Errorf("%s is not a directory", fi.Name())
		}
	}
	if !slices.Equal(names, []string{"inbox", "outbox"}) {
		t.Errorf("/ holds %v", names)
	}
	f, err := c.Create("/inbox/po.x12")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("ISA*po~"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if calls := e.inbox.get(); len(calls) != 1 || string(calls[0].data) != "ISA*po~" || calls[0].u.Name != "po.x12" {
		t.Fatalf("Accept calls %+v", calls)
	}
	e.assertLog(`"msg":"sftp login"`, `"partner":"acme"`, `"method":"password"`)

	for _, tc := range []struct{ user, pw, reason string }{
		{"acme", "wrong", "wrong password"},
		{"acme", "", "wrong password"},
		{"nobody", testPassword, "unknown user"},
		{"bolt", testPassword, "password login not enabled for this user"},
	} {
		if c, err := e.dial(tc.user, ssh.Password(tc.pw)); err == nil {
			c.Close()
			t.Errorf("%s/%q: login succeeded", tc.user, tc.pw)
		}
		e.assertLog(`"msg":"sftp login failed"`, fmt.Sprintf(`"user":%q`, tc.user), fmt.Sprintf(`"reason":%q`, tc.reason))
	}
}

func TestGoClientDropMidUpload(t *testing.T) {
	e := newEnv(t, envOpts{})
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(raw, e.addr, &ssh.ClientConfig{
		User: "acme", Auth: []ssh.AuthMethod{ssh.Password(testPassword)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		t.Fatal(err)
	}
	client, err := sftp.NewClient(ssh.NewClient(sc, chans, reqs))
	if err != nil {
		t.Fatal(err)
	}
	f, err := client.Create("/inbox/partial.x12")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(randomBytes(1 << 20)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the upload to reach the server", func() bool {
		for _, f := range e.uploadsInProgress() {
			if st, err := os.Stat(f); err == nil && st.Size() == 1<<20 {
				return true
			}
		}
		return false
	})
	raw.Close() // the TCP connection dies with the file open
	e.assertNoTemp()
	if calls := e.inbox.get(); len(calls) != 0 {
		t.Fatalf("a partial upload was accepted: %+v", calls[0].u)
	}
	e.assertLog(`"msg":"sftp upload discarded"`, `"file":"partial.x12"`)
}

func TestVirtualFileSystem(t *testing.T) {
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	e.out.Put(ctx, "acme", "997_000000001.x12", strings.NewReader("ack"))
	e.out.Put(ctx, "bolt", "999_000000001.x12", strings.NewReader("bolt"))
	c := e.sftpClient("acme", ssh.Password(testPassword))

	for p, want := range map[string]string{"/inbox/../../..": "/", "inbox/x/..": "/inbox", "/../outbox": "/outbox"} {
		if got, err := c.RealPath(p); err != nil || got != want {
			t.Errorf("RealPath(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
	for _, p := range []string{"/", "/inbox", "/outbox", "/inbox/../outbox"} {
		if fi, err := c.Stat(p); err != nil || !fi.IsDir() {
			t.Errorf("Stat(%s): %v %v", p, fi, err)
		}
	}
	if fi, err := c.Lstat("/outbox/997_000000001.x12"); err != nil || fi.Size() != 3 || fi.IsDir() {
		t.Errorf("Lstat outbox file: %v %v", fi, err)
	}
	for _, p := range []string{"/etc/passwd", "/inbox/../../etc/passwd", "/outbox/999_000000001.x12", "/inbox/x", "/bolt"} {
		if _, err := c.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%s): %v, want not exist", p, err)
		}
		if _, err := c.Open(p); err == nil {
			t.Errorf("Open(%s) succeeded", p)
		}
	}

	// An upload in progress is not visible; harmless setstat on it is
	// accepted, other changes are not.
	f, err := c.Create("/inbox/inv_1.csv")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("a,b\n"))
	if infos, err := c.ReadDir("/inbox"); err != nil || len(infos) != 0 {
		t.Errorf("inbox lists %d entries, %v", len(infos), err)
	}
	if err := f.Chmod(0o640); err != nil {
		t.Errorf("fsetstat mode on the upload: %v", err)
	}
	if err := c.Chtimes("/inbox/inv_1.csv", time.Now(), time.Now()); err != nil {
		t.Errorf("setstat times on the upload: %v", err)
	}
	if err := f.Truncate(1); err == nil {
		t.Error("ftruncate on the upload succeeded")
	}
	if err := c.Chown("/inbox/inv_1.csv", 0, 0); err == nil {
		t.Error("chown on the upload succeeded")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Chtimes("/inbox/inv_1.csv", time.Now(), time.Now()); err != nil {
		t.Errorf("setstat after the upload (WinSCP does that): %v", err)
	}
	if calls := e.inbox.get(); len(calls) != 1 || string(calls[0].data) != "a,b\n" {
		t.Fatalf("Accept calls %+v", calls)
	}

	refused := map[string]func() error{
		"chtimes other":   func() error { return c.Chtimes("/inbox/other.csv", time.Now(), time.Now()) },
		"chmod outbox":    func() error { return c.Chmod("/outbox/997_000000001.x12", 0o777) },
		"truncate outbox": func() error { return c.Truncate("/outbox/997_000000001.x12", 0) },
		"rename":          func() error { return c.Rename("/outbox/997_000000001.x12", "/inbox/x") },
		"posix-rename":    func() error { return c.PosixRename("/outbox/997_000000001.x12", "/outbox/y") },
		"link":            func() error { return c.Link("/outbox/997_000000001.x12", "/outbox/y") },
		"symlink":         func() error { return c.Symlink("/etc/passwd", "/inbox/passwd") },
		"readlink":        func() error { _, err := c.ReadLink("/outbox/997_000000001.x12"); return err },
		"mkdir":           func() error { return c.Mkdir("/inbox/d") },
		"rmdir":           func() error { return c.RemoveDirectory("/outbox") },
		"remove inbox":    func() error { return c.Remove("/inbox") },
		"read inbox":      func() error { _, err := c.Open("/inbox/inv_1.csv"); return err },
		"write root":      func() error { _, err := c.Create("/x"); return err },
		"write outbox":    func() error { _, err := c.Create("/outbox/x"); return err },
		"write escape":    func() error { _, err := c.Create("/inbox/../../../tmp/x"); return err },
		"list etc":        func() error { _, err := c.ReadDir("/etc"); return err },
		"list file":       func() error { _, err := c.ReadDir("/outbox/997_000000001.x12"); return err },
	}
	for name, op := range refused {
		if err := op(); err == nil {
			t.Errorf("%s succeeded", name)
		}
	}
	if files, _ := e.out.List(ctx, "acme"); len(files) != 1 {
		t.Errorf("outbox changed: %+v", files)
	}
	if len(e.inbox.get()) != 1 {
		t.Error("extra Accept calls")
	}
	// Outbox download and pick-up with the Go client.
	rf, err := c.Open("/outbox/997_000000001.x12")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rf)
	rf.Close()
	if string(b) != "ack" {
		t.Errorf("download: %q", b)
	}
	if err := c.Remove("/outbox/997_000000001.x12"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove("/outbox/997_000000001.x12"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second remove: %v", err)
	}
}

func TestResolve(t *testing.T) {
	for p, want := range map[string]kind{
		"/": kRoot, "": kRoot, "..": kRoot, "/../..": kRoot,
		"/inbox": kInbox, "inbox/": kInbox, "/outbox/.": kOutbox,
		"/inbox/a.x12": kInboxFile, "/outbox/a.x12": kOutboxFile, "/x/../inbox/a": kInboxFile,
		"/inbox/../../etc/passwd": kNone, "/etc/passwd": kNone, "/inbox/.hidden": kNone,
		"/inbox/a/b": kNone, "/x": kNone, "/inbox/a\\b": kNone, "/inbox/a\nb": kNone,
	} {
		if got, _ := resolve(p); got != want {
			t.Errorf("resolve(%q) = %d, want %d", p, got, want)
		}
	}
}

func TestBan(t *testing.T) {
	e := newEnv(t, envOpts{config: func(c *Config) {
		c.BanAfter = 3
		c.BanFor = time.Hour
		c.FailWindow = time.Hour
	}})
	// Before: the server greets.
	if banner := readBanner(t, e.addr); !strings.HasPrefix(banner, "SSH-2.0-edigw") {
		t.Fatalf("banner %q", banner)
	}
	for range 3 {
		if c, err := e.dial("acme", ssh.Password("guess")); err == nil {
			c.Close()
			t.Fatal("wrong password accepted")
		}
	}
	// After: the connection is closed before the SSH handshake, even with
	// the right password.
	if banner := readBanner(t, e.addr); banner != "" {
		t.Fatalf("banned address got banner %q", banner)
	}
	if c, err := e.dial("acme", ssh.Password(testPassword)); err == nil {
		c.Close()
		t.Fatal("banned address logged in")
	}
	e.assertLog(`"msg":"sftp address banned"`, `"ip":"127.0.0.1"`)

	// Only keys offered and refused: one failure per connection.
	e2 := newEnv(t, envOpts{config: func(c *Config) { c.BanAfter = 2; c.BanFor = time.Hour }})
	for range 2 {
		if c, err := e2.dial("acme", ssh.PublicKeys(e2.signer("bolt"))); err == nil {
			c.Close()
			t.Fatal("wrong key accepted")
		}
	}
	// (The failure is recorded when the server sees the connection end.)
	waitFor(t, "the ban", func() bool { return readBanner(t, e2.addr) == "" })

	// A client that logs in after offering a wrong key is not counted.
	e3 := newEnv(t, envOpts{config: func(c *Config) { c.BanAfter = 2 }})
	for range 3 {
		c, err := e3.dial("acme", ssh.PublicKeys(e3.signer("bolt"), e3.signer("acme")))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if banner := readBanner(t, e3.addr); banner == "" {
		t.Fatal("banned after successful logins")
	}
}

// readBanner connects and returns the first line the server sends ("" if
// it closes the connection first).
func readBanner(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(c, buf, 8)
	if err != nil && n == 0 {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("no banner and no close within 5s")
		}
		return ""
	}
	return strings.TrimSpace(string(buf[:n]))
}

func TestAllowedNetworks(t *testing.T) {
	e := newEnv(t, envOpts{})
	if c, err := e.dial("far", ssh.PublicKeys(e.signer("acme"))); err == nil {
		c.Close()
		t.Fatal("key login from outside allowed_networks succeeded")
	}
	if c, err := e.dial("far", ssh.Password(testPassword)); err == nil {
		c.Close()
		t.Fatal("password login from outside allowed_networks succeeded")
	}
	e.assertLog(`"msg":"sftp login failed"`, `"user":"far"`, `"partner":"far"`, `"reason":"address not in allowed_networks"`, `"method":"publickey"`)
	e.assertLog(`"msg":"sftp login failed"`, `"user":"far"`, `"reason":"address not in allowed_networks"`, `"method":"password"`)
	// The same key works for a user without the restriction.
	c := e.sftpClient("acme", ssh.PublicKeys(e.signer("acme")))
	if _, err := c.Getwd(); err != nil {
		t.Fatal(err)
	}
}

func TestMaxSessions(t *testing.T) {
	e := newEnv(t, envOpts{})
	var clients []*ssh.Client
	for range 2 { // acme: max_sessions 2
		c, err := e.dial("acme", ssh.Password(testPassword))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	if c, err := e.dial("acme", ssh.PublicKeys(e.signer("acme"))); err == nil {
		c.Close()
		t.Fatal("third concurrent session accepted")
	}
	e.assertLog(`"msg":"sftp login failed"`, `"reason":"too many concurrent sessions"`, `"partner":"acme"`)
	// Other users are not affected.
	if c, err := e.dial("bolt", ssh.PublicKeys(e.signer("bolt"))); err != nil {
		t.Fatalf("bolt: %v", err)
	} else {
		c.Close()
	}
	clients[0].Close()
	waitFor(t, "a session slot", func() bool {
		c, err := e.dial("acme", ssh.Password(testPassword))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	clients[1].Close()
}

func TestLegacyAlgorithms(t *testing.T) {
	rsaAlgs := func(e *env, algs ...string) ssh.AuthMethod {
		s, err := ssh.NewSignerWithAlgorithms(e.signer("rsa").(ssh.AlgorithmSigner), algs)
		if err != nil {
			t.Fatal(err)
		}
		return ssh.PublicKeys(s)
	}
	e := newEnv(t, envOpts{})
	// oldco opted in: an ssh-rsa (SHA-1) signature is accepted.
	if c, err := e.dial("oldco", rsaAlgs(e, ssh.KeyAlgoRSA)); err != nil {
		t.Fatalf("legacy user with ssh-rsa: %v", err)
	} else {
		c.Close()
	}
	e.assertLog(`"msg":"sftp login"`, `"user":"oldco"`, `"method":"publickey/ssh-rsa"`)
	// acme-rsa did not: the same key is accepted with SHA-2 only.
	if c, err := e.dial("acme-rsa", rsaAlgs(e, ssh.KeyAlgoRSA)); err == nil {
		c.Close()
		t.Fatal("ssh-rsa accepted for a user without legacy_algorithms")
	}
	e.assertLog(`"msg":"sftp login failed"`, `"user":"acme-rsa"`, "legacy ssh-rsa")
	for _, alg := range []string{ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512} {
		if c, err := e.dial("acme-rsa", rsaAlgs(e, alg)); err != nil {
			t.Fatalf("acme-rsa with %s: %v", alg, err)
		} else {
			c.Close()
		}
	}

	// Without any legacy user, ssh-rsa is not offered at all.
	e2 := newEnv(t, envOpts{exclude: []string{"oldco"}})
	if c, err := e2.dial("acme-rsa", rsaAlgs(e2, ssh.KeyAlgoRSA)); err == nil {
		c.Close()
		t.Fatal("ssh-rsa accepted with no legacy user")
	}
	if c, err := e2.dial("acme-rsa", rsaAlgs(e2, ssh.KeyAlgoRSASHA512)); err != nil {
		t.Fatal(err)
	} else {
		c.Close()
	}
}

func TestHostKeysAndAlgorithms(t *testing.T) {
	e := newEnv(t, envOpts{freshHostKeys: true})
	dir := e.srv.cfg.HostKeyDir
	for _, name := range []string{hostKeyEd25519, hostKeyRSA, hostKeyEd25519 + ".pub", hostKeyRSA + ".pub"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(name, ".pub") && st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", name, st.Mode().Perm())
		}
	}
	keys := e.srv.HostKeys()
	if len(keys) != 2 || keys[0].Type() != ssh.KeyAlgoED25519 || keys[1].Type() != ssh.KeyAlgoRSA {
		t.Fatalf("host keys %v", keys)
	}
	if ck, ok := keys[1].(ssh.CryptoPublicKey); !ok || ck.CryptoPublicKey().(*rsa.PublicKey).N.BitLen() != 3072 {
		t.Error("RSA host key is not 3072 bits")
	}
	// A second server loads the same keys.
	s2, err := New(Config{HostKeyDir: dir, Users: e.set.Load, Inbox: e.inbox, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range s2.HostKeys() {
		if ssh.FingerprintSHA256(k) != ssh.FingerprintSHA256(keys[i]) {
			t.Errorf("host key %d changed on restart", i)
		}
	}

	auth := []ssh.AuthMethod{ssh.Password(testPassword)}
	try := func(cfg ssh.ClientConfig) (ssh.PublicKey, error) {
		var got ssh.PublicKey
		cfg.User, cfg.Auth = "acme", auth
		cfg.HostKeyCallback = func(_ string, _ net.Addr, k ssh.PublicKey) error { got = k; return nil }
		cfg.Timeout = 10 * time.Second
		c, err := ssh.Dial("tcp", e.addr, &cfg)
		if err == nil {
			c.Close()
		}
		return got, err
	}
	for _, alg := range []string{ssh.KeyAlgoED25519, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256} {
		k, err := try(ssh.ClientConfig{HostKeyAlgorithms: []string{alg}})
		if err != nil {
			t.Errorf("host key algorithm %s: %v", alg, err)
		} else if want := keys[0]; alg != ssh.KeyAlgoED25519 && ssh.FingerprintSHA256(k) != ssh.FingerprintSHA256(keys[1]) ||
			alg == ssh.KeyAlgoED25519 && ssh.FingerprintSHA256(k) != ssh.FingerprintSHA256(want) {
			t.Errorf("host key algorithm %s: unexpected key", alg)
		}
	}
	for name, cfg := range map[string]ssh.ClientConfig{
		"host key ssh-rsa":      {HostKeyAlgorithms: []string{ssh.KeyAlgoRSA}},
		"kex dh-group14-sha1":   {Config: ssh.Config{KeyExchanges: []string{ssh.InsecureKeyExchangeDH14SHA1}}},
		"kex dh-group14-sha256": {Config: ssh.Config{KeyExchanges: []string{ssh.KeyExchangeDH14SHA256}}},
		"cipher aes128-cbc":     {Config: ssh.Config{Ciphers: []string{ssh.InsecureCipherAES128CBC}}},
		"mac hmac-sha1":         {Config: ssh.Config{Ciphers: []string{ssh.CipherAES128CTR}, MACs: []string{ssh.HMACSHA1}}},
	} {
		if _, err := try(cfg); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestTimeouts(t *testing.T) {
	e := newEnv(t, envOpts{config: func(c *Config) {
		c.HandshakeTimeout = 300 * time.Millisecond
		c.IdleTimeout = 300 * time.Millisecond
	}})
	// A client that says nothing is dropped after the handshake timeout.
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(raw); err != nil {
		t.Fatalf("silent client not disconnected: %v", err)
	}

	// An idle session is closed.
	c := e.sftpClient("acme", ssh.Password(testPassword))
	time.Sleep(time.Second)
	if _, err := c.ReadDir("/"); err == nil {
		t.Fatal("idle session still open")
	}

	// A slow commit is not idleness.
	block := make(chan struct{})
	e.inbox.mu.Lock()
	e.inbox.block = block
	e.inbox.mu.Unlock()
	time.AfterFunc(time.Second, func() { close(block) })
	c2 := e.sftpClient("acme", ssh.Password(testPassword))
	f, err := c2.Create("/inbox/slow.x12")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("ISA~"))
	if err := f.Close(); err != nil {
		t.Fatalf("upload with a commit slower than the idle timeout: %v", err)
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, envOpts{})
	idle := e.sftpClient("bolt", ssh.PublicKeys(e.signer("bolt")))
	c := e.sftpClient("acme", ssh.Password(testPassword))
	f, err := c.Create("/inbox/during-shutdown.x12")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("ISA*part1"))

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	select {
	case err := <-e.served:
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve: %v", err)
		}
		e.served <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		t.Error("still accepting connections")
	}
	waitFor(t, "the idle session to be closed", func() bool { _, err := idle.Getwd(); return err != nil })
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a transfer open", err)
	case <-time.After(200 * time.Millisecond):
	}
	f.Write([]byte("*part2~"))
	if err := f.Close(); err != nil {
		t.Fatalf("finishing the upload during shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if calls := e.inbox.get(); len(calls) != 1 || string(calls[0].data) != "ISA*part1*part2~" {
		t.Fatalf("Accept calls %+v", calls)
	}
}

func TestShutdownDeadlineDiscardsUploads(t *testing.T) {
	// In a temporary file, so the test sees the upload start.
	e := newEnv(t, envOpts{config: func(c *Config) { c.MemoryUpload = -1 }})
	c := e.sftpClient("acme", ssh.Password(testPassword))
	f, err := c.Create("/inbox/cut.x12")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("ISA*part1"))
	waitFor(t, "the upload to start", func() bool { return len(e.uploadsInProgress()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	e.assertNoTemp()
	if len(e.inbox.get()) != 0 {
		t.Fatal("cut upload accepted")
	}
}

func TestHotReloadAndDisabledPartner(t *testing.T) {
	e := newEnv(t, envOpts{})
	if c, err := e.dial("gone", ssh.PublicKeys(e.signer("acme"))); err == nil {
		c.Close()
		t.Fatal("disabled partner logged in")
	}
	e.assertLog(`"msg":"sftp login failed"`, `"partner":"gone"`, `"reason":"partner disabled"`)

	c, err := e.dial("bolt", ssh.PublicKeys(e.signer("bolt")))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	os.RemoveAll(filepath.Join(e.root, "bolt"))
	e.reload() // the next login sees the new profiles
	if c, err := e.dial("bolt", ssh.PublicKeys(e.signer("bolt"))); err == nil {
		c.Close()
		t.Fatal("removed user logged in after reload")
	}
}

func TestNewChecksConfig(t *testing.T) {
	users := func() *partners.Set { return nil }
	for name, cfg := range map[string]Config{
		"no users":    {HostKeyDir: t.TempDir(), Inbox: &recInbox{}},
		"no inbox":    {HostKeyDir: t.TempDir(), Users: users},
		"no host key": {Users: users, Inbox: &recInbox{}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	// Leftovers of a crash are removed.
	tmp := t.TempDir()
	mustWrite(t, filepath.Join(tmp, uploadPrefix+"123"), []byte("partial"))
	if _, err := New(Config{HostKeyDir: t.TempDir(), Users: users, Inbox: &recInbox{}, TempDir: tmp}); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(tmp, uploadPrefix+"*")); len(m) != 0 {
		t.Errorf("leftover uploads: %v", m)
	}
}

func TestListenAndServe(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Config{
		Addr:       "127.0.0.1:0",
		HostKeyDir: filepath.Join(dir, "keys"),
		Users:      func() *partners.Set { return nil },
		Inbox:      &recInbox{},
		TempDir:    filepath.Join(dir, "tmp"),
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("ListenAndServe: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return after cancel")
	}
}

func TestOpenFilesLimit(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.sftpClient("acme", ssh.Password(testPassword))
	var files []*sftp.File
	for i := range maxOpenFiles {
		f, err := c.Create(fmt.Sprintf("/inbox/f%d.csv", i))
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
		files = append(files, f)
	}
	if _, err := c.Create("/inbox/one-too-many.csv"); err == nil {
		t.Fatal("open beyond the limit succeeded")
	}
	for _, f := range files {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.inbox.get()); n != maxOpenFiles {
		t.Fatalf("%d accepted", n)
	}
	e.assertNoTemp()
}

// TestUploadMemoryAndSpill: an upload is held in memory up to MemoryUpload,
// whatever order its writes arrive in (the client pipelines them), and goes
// to a temporary file once it grows past that; either way Accept gets
// exactly the bytes sent, once.
func TestUploadMemoryAndSpill(t *testing.T) {
	e := newEnv(t, envOpts{config: func(c *Config) { c.MemoryUpload = 1000 }})
	c := e.sftpClient("acme", ssh.Password(testPassword))
	small := []byte("ISA*00*          *00*          *ZZ*ACME~" + strings.Repeat("REF*XX*1~", 50)) // < 1000 bytes
	big := bytes.Repeat([]byte("0123456789abcdef"), 400)                                          // 6400 bytes
	for _, tc := range []struct {
		name string
		data []byte
	}{{"small.x12", small}, {"big.x12", big}} {
		f, err := c.Create("/inbox/" + tc.name)
		if err != nil {
			t.Fatal(err)
		}
		// Backwards, 300 bytes at a time: each write lands before the last.
		for end := len(tc.data); end > 0; end -= 300 {
			start := max(0, end-300)
			if _, err := f.WriteAt(tc.data[start:end], int64(start)); err != nil {
				t.Fatalf("%s: write at %d: %v", tc.name, start, err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatalf("%s: close: %v", tc.name, err)
		}
	}
	calls := e.inbox.get()
	if len(calls) != 2 {
		t.Fatalf("%d Accept calls, want 2", len(calls))
	}
	for i, want := range [][]byte{small, big} {
		if !bytes.Equal(calls[i].data, want) || calls[i].u.Size != int64(len(want)) {
			t.Errorf("upload %s: Accept got %d bytes (size %d), want the %d sent", calls[i].u.Name, len(calls[i].data), calls[i].u.Size, len(want))
		}
	}
	if calls[0].u.Data == nil || calls[1].u.Data != nil {
		t.Errorf("the small upload was not handed over in memory, or the big one was (%v, %v)", calls[0].u.Data != nil, calls[1].u.Data != nil)
	}
	e.assertNoTemp()
}
