// Package testpeers starts the real servers tests talk to, on loopback:
// OpenSSH sshd, vsftpd (plain, explicit and implicit TLS) and versitygw (an
// S3-API server), each through its script in scripts/ (which installs the
// server when it is missing and it can). A peer that cannot be started fails
// the test under CI=true and skips it elsewhere. Only tests import it.
package testpeers

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edigw/edigw/partners"
	"golang.org/x/crypto/ssh"
)

// Unavailable fails the test under CI (CI=true), where the peer must run,
// and skips it elsewhere.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (set CI=true to fail instead)", args...)
}

// FreePort returns a loopback port that is free now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Ports returns a loopback port p such that p .. p+n-1 are free now. They
// are taken below the kernel's ephemeral range when it leaves room, so that
// no outgoing connection (a client, a database pool) can take one of them
// between this check and the server's bind, or while a killed server is down.
func Ports(t testing.TB, n int) int {
	t.Helper()
	lo, span := 20000, 30000
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if eph, err := strconv.Atoi(f[0]); err == nil && eph-n-10000 > 1000 {
				lo, span = 10000, eph-n-10000
			}
		}
	}
	for range 50 {
		base := lo + rand.IntN(span)
		var ls []net.Listener
		ok := true
		for i := 0; i < n && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d free consecutive ports", n)
	return 0
}

// script returns the absolute path of scripts/NAME in the repository.
func script(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "scripts", name)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("scripts/%s: no go.mod above the test's directory", name)
		}
		dir = parent
	}
}

// SSHD is a real OpenSSH sshd on loopback (scripts/sshd-peer.sh) with its
// own config, host key and client key in Dir, for the current user.
type SSHD struct {
	Dir     string
	Port    int
	HostKey ssh.PublicKey
	FP      string // SHA256 fingerprint of the host key
	User    string
	t       testing.TB
	script  string
}

// StartSSHD starts a throwaway sshd, stopped at cleanup.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		Unavailable(t, "sshd peer: current user: %v", err)
	}
	p := &SSHD{Dir: t.TempDir(), Port: FreePort(t), User: u.Username, t: t, script: script(t, "sshd-peer.sh")}
	p.Start()
	t.Cleanup(func() {
		if err := exec.Command("bash", p.script, "stop", p.Dir).Run(); err != nil {
			t.Errorf("sshd-peer.sh stop: %v", err)
		}
	})
	return p
}

// Start starts the server (again, after Kill), with the same keys and port.
func (p *SSHD) Start() {
	t := p.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // may apt-get install
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", p.script, "start", p.Dir, strconv.Itoa(p.Port))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		Unavailable(t, "sshd peer: %s start: %v\n%s", p.script, err, stderr.String())
	}
	pub, err := os.ReadFile(filepath.Join(p.Dir, "host.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if p.HostKey, _, _, _, err = ssh.ParseAuthorizedKey(pub); err != nil {
		t.Fatal(err)
	}
	p.FP = ssh.FingerprintSHA256(p.HostKey)
	if f := strings.Fields(string(out)); len(f) < 2 || f[1] != p.FP {
		t.Fatalf("sshd-peer.sh printed %q, want the fingerprint %s", out, p.FP)
	}
}

// Kill SIGKILLs the server and every session it runs: connections drop
// mid-transfer, as when a partner's server dies.
func (p *SSHD) Kill() {
	b, err := os.ReadFile(filepath.Join(p.Dir, "sshd.pid"))
	if err != nil {
		p.t.Fatalf("sshd pid: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for _, c := range Descendants(pid) {
		syscall.Kill(c, syscall.SIGKILL)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	os.Remove(filepath.Join(p.Dir, "sshd.pid"))
	for range 100 { // until the port is closed
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port))
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// Remote is a Remote for folder on the server, logging in with the peer's
// client key and pinning its host key fingerprint.
func (p *SSHD) Remote(folder string) partners.Remote {
	return partners.Remote{
		URL:        partners.Endpoint{Scheme: partners.SchemeSFTP, Host: "127.0.0.1", Port: p.Port, Path: folder},
		Username:   p.User,
		PrivateKey: partners.SecretRef{File: filepath.Join(p.Dir, "client"), Field: "test: private_key_file"},
		HostKey:    p.FP,
	}
}

// Descendants returns the pids of pid's descendant processes (Linux /proc).
func Descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // state ppid ...
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// StartVsftpd starts scripts/vsftpd-peer.sh on a fresh directory (tls: ""
// plain, "tls" explicit TLS, "implicit" implicit TLS) and returns the
// directory (the FTP root) and the control port; stopped at cleanup.
func StartVsftpd(t testing.TB, tls string) (string, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "vsftpd peer needs root")
	}
	dir := filepath.Join(t.TempDir(), "ftp")
	port := Ports(t, 11) // control + 10 passive ports
	args := []string{"start", dir, fmt.Sprint(port)}
	if tls != "" {
		args = append(args, tls)
	}
	sc := script(t, "vsftpd-peer.sh")
	out, err := exec.Command(sc, args...).CombinedOutput()
	if err != nil {
		Unavailable(t, "cannot start vsftpd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(sc, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("stop vsftpd: %v\n%s", err, out)
		}
	})
	return dir, port
}

// StartVersitygw starts scripts/s3server.sh (versitygw, posix backend) on a
// fresh directory with one folder per bucket, and returns the directory and
// the endpoint URL; stopped at cleanup.
func StartVersitygw(t testing.TB, access, secret string, buckets ...string) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "s3")
	for _, b := range buckets {
		if err := os.MkdirAll(filepath.Join(dir, b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := Ports(t, 1)
	sc := script(t, "s3server.sh")
	out, err := exec.Command(sc, "start", dir, fmt.Sprint(port), access, secret).CombinedOutput()
	if err != nil {
		Unavailable(t, "cannot start versitygw: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(sc, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("stop versitygw: %v\n%s", err, out)
		}
	})
	return dir, fmt.Sprintf("http://127.0.0.1:%d", port)
}
