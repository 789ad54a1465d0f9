package sftpd

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestPeekSpeed(t *testing.T) {
	e := newEnv(t, envOpts{keygen: true})
	e.local("big.csv", randomBytes(128<<20))
	for _, c := range []string{"chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes128-ctr"} {
		args := append([]string{"-c", c}, e.sftpArgs("acme", "acme", e.batchFile("put big.csv /inbox/"))...)
		cmd := exec.Command("sftp", args...)
		cmd.Dir = e.work
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		t.Logf("%s %v %s: %.0f MB/s", c, err, out, 128/d.Seconds())
	}
	f, _ := os.Open(filepath.Join(e.work, "big.csv"))
	e.out.Put(t.Context(), "acme", "big.csv", f)
	for _, c := range []string{"chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com"} {
		args := append([]string{"-c", c}, e.sftpArgs("acme", "acme", e.batchFile("get /outbox/big.csv got.csv"))...)
		cmd := exec.Command("sftp", args...)
		cmd.Dir = e.work
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		t.Logf("get %s %v %s: %.0f MB/s", c, err, out, 128/d.Seconds())
	}
}
