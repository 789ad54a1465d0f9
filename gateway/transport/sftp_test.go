package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edigw/edigw/internal/testpeers"
	"github.com/edigw/edigw/partners"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func dialSFTP(t *testing.T, r partners.Remote, o Options) Transport {
	t.Helper()
	tr, err := Dial(context.Background(), r, o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func randomFingerprint(t *testing.T) string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(k)
}

func TestSFTP(t *testing.T) {
	p := testpeers.StartSSHD(t)
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		local := t.TempDir()
		tr := dialSFTP(t, p.Remote(local), Options{Timeout: 10 * time.Second})
		checkTransportContract(t, tr, local)
		if t.Failed() {
			return
		}
		checkTransportMoveRemove(t, tr, local)
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := tr.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})

	t.Run("FullHostKey", func(t *testing.T) {
		local := t.TempDir()
		os.WriteFile(filepath.Join(local, "x.edi"), []byte("x"), 0o644)
		r := p.Remote(local)
		r.HostKey = string(ssh.MarshalAuthorizedKey(p.HostKey))
		if names := listNames(t, dialSFTP(t, r, Options{})); len(names) != 1 || names[0] != "x.edi" {
			t.Fatalf("List = %v", names)
		}
	})

	t.Run("WrongHostKey", func(t *testing.T) {
		r := p.Remote(t.TempDir())
		r.HostKey = randomFingerprint(t)
		_, err := Dial(ctx, r, Options{})
		if err == nil {
			t.Fatal("Dial with a wrong pinned host key succeeded")
		}
		if !strings.Contains(err.Error(), r.HostKey) || !strings.Contains(err.Error(), p.FP) {
			t.Fatalf("error %q does not name the expected %s and the presented %s", err, r.HostKey, p.FP)
		}
	})

	t.Run("KnownHosts", func(t *testing.T) {
		base := t.TempDir()
		local := t.TempDir()
		addr := knownhosts.Normalize(net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)))
		os.WriteFile(filepath.Join(base, "known_hosts"), []byte(knownhosts.Line([]string{addr}, p.HostKey)+"\n"), 0o644)
		r := p.Remote(local)
		r.HostKey = ""
		r.KnownHostsFile = "known_hosts" // relative to BaseDir
		tr := dialSFTP(t, r, Options{BaseDir: base})
		if err := tr.Write(ctx, "k.edi", strings.NewReader("known")); err != nil {
			t.Fatal(err)
		}

		// Another key for the host: a mismatch naming both fingerprints.
		other, _, _ := ed25519.GenerateKey(rand.Reader)
		ok, _ := ssh.NewPublicKey(other)
		os.WriteFile(filepath.Join(base, "known_hosts"), []byte(knownhosts.Line([]string{addr}, ok)+"\n"), 0o644)
		_, err := Dial(ctx, r, Options{BaseDir: base})
		if err == nil || !strings.Contains(err.Error(), ssh.FingerprintSHA256(ok)) || !strings.Contains(err.Error(), p.FP) {
			t.Fatalf("known_hosts mismatch: %v; want both fingerprints", err)
		}

		// The host is not listed at all.
		os.WriteFile(filepath.Join(base, "known_hosts"), []byte(knownhosts.Line([]string{"[example.com]:2222"}, p.HostKey)+"\n"), 0o644)
		_, err = Dial(ctx, r, Options{BaseDir: base})
		if err == nil || !strings.Contains(err.Error(), "not in known_hosts") || !strings.Contains(err.Error(), p.FP) {
			t.Fatalf("unknown host: %v", err)
		}
	})

	t.Run("NoHostKeyConfigured", func(t *testing.T) {
		r := p.Remote(t.TempDir())
		r.HostKey = ""
		if _, err := Dial(ctx, r, Options{}); err == nil || !strings.Contains(err.Error(), "no host key") {
			t.Fatalf("Dial without a host key = %v", err)
		}
	})

	t.Run("WrongPrivateKey", func(t *testing.T) {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		pemText := string(pem.EncodeToMemory(block))
		t.Setenv("EDIGW_TEST_SFTP_KEY", pemText)
		r := p.Remote(t.TempDir())
		r.PrivateKey = partners.SecretRef{Env: "EDIGW_TEST_SFTP_KEY", Field: "test: private_key_env"}
		_, err = Dial(ctx, r, Options{})
		if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("Dial with a wrong private key = %v, want an authentication error", err)
		}
		if strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Fatalf("error leaks the key: %v", err)
		}
		// A password the server does not accept (password auth is off).
		t.Setenv("EDIGW_TEST_SFTP_PW", "not-the-password")
		r.PrivateKey = partners.SecretRef{}
		r.Password = partners.SecretRef{Env: "EDIGW_TEST_SFTP_PW"}
		_, err = Dial(ctx, r, Options{})
		if err == nil || strings.Contains(err.Error(), "not-the-password") {
			t.Fatalf("Dial with a wrong password = %v", err)
		}
	})

	t.Run("MissingSecret", func(t *testing.T) {
		r := p.Remote(t.TempDir())
		r.PrivateKey = partners.SecretRef{File: "keys/none", Field: "partner x: private_key_file"}
		if _, err := Dial(ctx, r, Options{BaseDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "partner x: private_key_file") {
			t.Fatalf("Dial with a missing key file = %v", err)
		}
	})

	t.Run("MissingFolder", func(t *testing.T) {
		tr := dialSFTP(t, p.Remote(filepath.Join(t.TempDir(), "nope")), Options{})
		if _, err := tr.List(ctx); err == nil {
			t.Fatal("List of a missing folder succeeded")
		}
	})
}

// An unreachable server fails within the timeout: a closed port at once, a
// silent one (accepts TCP, never speaks SSH) when the timeout expires.
func TestSFTPUnreachable(t *testing.T) {
	r := partners.Remote{
		URL:      partners.Endpoint{Scheme: partners.SchemeSFTP, Host: "127.0.0.1", Port: testpeers.FreePort(t)},
		Username: "nobody",
		Password: partners.SecretRef{Env: "EDIGW_TEST_SFTP_PW"},
		HostKey:  randomFingerprint(t),
	}
	t.Setenv("EDIGW_TEST_SFTP_PW", "pw")
	if _, err := Dial(context.Background(), r, Options{Timeout: 2 * time.Second}); err == nil ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Dial of a closed port = %v, want connection refused", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	r.URL.Port = l.Addr().(*net.TCPAddr).Port
	const timeout = 500 * time.Millisecond
	start := time.Now()
	_, err = Dial(context.Background(), r, Options{Timeout: timeout})
	if err == nil {
		t.Fatal("Dial of a silent server succeeded")
	}
	if d := time.Since(start); d > timeout+5*time.Second {
		t.Fatalf("Dial of a silent server returned after %s, timeout %s", d, timeout)
	}
	if !strings.Contains(err.Error(), "no answer within") {
		t.Errorf("error %q does not say it timed out", err)
	}

	// A cancelled context stops the handshake too.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, err := Dial(ctx, r, Options{Timeout: time.Minute}); err == nil {
		t.Fatal("Dial with a cancelled context succeeded")
	}
}

// A server that stops answering mid-session: the operation fails once the
// timeout passes without progress, and the transport says why.
func TestSFTPOperationTimeout(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	p := testpeers.StartSSHD(t)
	local := t.TempDir()
	// Long enough for an OpenSSH handshake on a busy machine (1s failed once
	// while fuzzers ran beside the suite), which the same timeout bounds.
	const timeout = 3 * time.Second
	tr := dialSFTP(t, p.Remote(local), Options{Timeout: timeout})
	if _, err := tr.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(p.Dir, "sshd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	sessions := testpeers.Descendants(pid) // the processes serving our connection
	if len(sessions) == 0 {
		t.Fatal("no sshd session process found")
	}
	for _, s := range sessions {
		syscall.Kill(s, syscall.SIGSTOP)
	}
	t.Cleanup(func() {
		for _, s := range sessions {
			syscall.Kill(s, syscall.SIGCONT)
		}
	})
	start := time.Now()
	_, err = tr.List(context.Background())
	if err == nil {
		t.Fatal("List against a frozen server succeeded")
	}
	if d := time.Since(start); d > timeout+5*time.Second {
		t.Fatalf("List returned after %s, timeout %s", d, timeout)
	}
	if !strings.Contains(err.Error(), "no progress for "+timeout.String()) {
		t.Errorf("error %q does not say it timed out", err)
	}
	if _, err := tr.List(context.Background()); err == nil || !strings.Contains(err.Error(), "connection is closed") {
		t.Errorf("List after the timeout = %v, want connection is closed", err)
	}
}
