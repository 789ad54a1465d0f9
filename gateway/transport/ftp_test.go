package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edigw/edigw/internal/testpeers"
	"github.com/edigw/edigw/partners"
)

func ftpRemote(scheme string, port int, path string) partners.Remote {
	return partners.Remote{URL: partners.Endpoint{Scheme: scheme, Host: "127.0.0.1", Port: port, Path: path}}
}

func dialT(t *testing.T, r partners.Remote, o Options) Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := Dial(ctx, r, o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// failingReader yields n bytes, then an error.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("source broke")
	}
	k := min(len(p), r.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

func fileNames(fs []File) []string {
	var ns []string
	for _, f := range fs {
		ns = append(ns, f.Name)
	}
	return ns
}

// xferRoundTrip drives every Transport method against a real peer and
// checks the results through the transport and, via names(dir), the
// peer's own storage: names("") lists the folder, names("done") the
// subfolder Move used.
func xferRoundTrip(t *testing.T, tr Transport, names func(sub string) []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	large := make([]byte, 3<<20+17)
	rand.Read(large)
	small := []byte("ISA*00*~\r\nIEA*1*000000001~\n")
	want := map[string][]byte{"b.edi": large, "a.x12": small, "empty.txt": {}}
	for name, data := range want {
		if err := tr.Write(ctx, name, bytes.NewReader(data)); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	// Overwrite keeps one file with the new content.
	small = append(small, "more"...)
	want["a.x12"] = small
	if err := tr.Write(ctx, "a.x12", bytes.NewReader(small)); err != nil {
		t.Fatalf("overwrite: %v", err)
	}

	files, err := tr.List(ctx)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if got := strings.Join(fileNames(files), ","); got != "a.x12,b.edi,empty.txt" {
		t.Fatalf("list = %s, want a.x12,b.edi,empty.txt", got)
	}
	for _, f := range files {
		if f.Size != int64(len(want[f.Name])) {
			t.Errorf("%s: size %d, want %d", f.Name, f.Size, len(want[f.Name]))
		}
		if d := time.Since(f.ModTime); d < -2*time.Minute || d > 10*time.Minute {
			t.Errorf("%s: mtime %v is not recent", f.Name, f.ModTime)
		}
	}
	for name, data := range want {
		rc, err := tr.Open(ctx, name)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		got, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		if err := rc.Close(); err != nil {
			t.Fatalf("close %s: %v", name, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: read %d bytes, differ from the %d written", name, len(got), len(data))
		}
	}
	if _, err := tr.Open(ctx, "missing.edi"); err == nil {
		t.Error("open of a missing file succeeded")
	}

	// A source that fails mid-way leaves nothing under the name, nor a temp file.
	if err := tr.Write(ctx, "broken.edi", &failingReader{n: 200 << 10}); err == nil {
		t.Fatal("write from a failing reader succeeded")
	}
	if got := strings.Join(names(""), ","); got != "a.x12,b.edi,empty.txt" {
		t.Fatalf("after a failed write the peer holds %s", got)
	}

	if err := tr.Move(ctx, "b.edi", "done"); err != nil {
		t.Fatalf("move: %v", err)
	}
	if err := tr.Move(ctx, "empty.txt", "done/"); err != nil { // the folder exists now
		t.Fatalf("second move: %v", err)
	}
	if got := strings.Join(names("done"), ","); got != "b.edi,empty.txt" {
		t.Fatalf("done/ holds %s", got)
	}
	if err := tr.Move(ctx, "a.x12", "../out"); err == nil {
		t.Error("move outside the folder succeeded")
	}
	if err := tr.Remove(ctx, "a.x12"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	files, err = tr.List(ctx)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(files) != 0 {
		t.Fatalf("list after move and remove = %v, want none (folders are not files)", fileNames(files))
	}
	if got := names(""); len(got) != 0 {
		t.Fatalf("peer still holds %v", got)
	}
}

// dirNames lists regular files (temp files included) of a local directory.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range es {
		if e.Type().IsRegular() {
			ns = append(ns, e.Name())
		}
	}
	return ns
}

func TestFTPRoundTrip(t *testing.T) {
	dir, port := testpeers.StartVsftpd(t, "")
	tr := dialT(t, ftpRemote("ftp", port, "/incoming"), Options{})
	xferRoundTrip(t, tr, func(sub string) []string {
		return dirNames(t, filepath.Join(dir, "root/incoming", sub))
	})
}

func TestFTPESRoundTrip(t *testing.T) {
	dir, port := testpeers.StartVsftpd(t, "tls")
	r := ftpRemote("ftpes", port, "/incoming")
	r.CAFile = "ca.pem" // relative to BaseDir
	tr := dialT(t, r, Options{BaseDir: dir, Timeout: 10 * time.Second})
	xferRoundTrip(t, tr, func(sub string) []string {
		return dirNames(t, filepath.Join(dir, "root/incoming", sub))
	})
}

func TestFTPSImplicitRoundTrip(t *testing.T) {
	dir, port := testpeers.StartVsftpd(t, "implicit")
	r := ftpRemote("ftps", port, "/incoming")
	r.CAFile = filepath.Join(dir, "ca.pem") // absolute
	tr := dialT(t, r, Options{Timeout: 10 * time.Second})
	xferRoundTrip(t, tr, func(sub string) []string {
		return dirNames(t, filepath.Join(dir, "root/incoming", sub))
	})
	// Explicit TLS (a clear greeting first) does not talk to it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.URL.Scheme = "ftpes"
	if tr, err := Dial(ctx, r, Options{Timeout: 3 * time.Second}); err == nil {
		tr.Close()
		t.Fatal("ftpes dial to an implicit-TLS server succeeded")
	}
}

func TestFTPESRejectsUnknownCA(t *testing.T) {
	dir, port := testpeers.StartVsftpd(t, "tls")
	other := filepath.Join(t.TempDir(), "other-ca.pem")
	writeTestCA(t, other)
	for name, ca := range map[string]string{"wrong CA": other, "no CA": ""} {
		r := ftpRemote("ftpes", port, "/incoming")
		r.CAFile = ca
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		tr, err := Dial(ctx, r, Options{BaseDir: dir})
		cancel()
		if err == nil {
			tr.Close()
			t.Fatalf("%s: dial succeeded", name)
		}
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) {
			t.Fatalf("%s: dial error is not a certificate error: %v", name, err)
		}
	}
	// A plain FTP client is refused by a server that forces TLS.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if tr, err := Dial(ctx, ftpRemote("ftp", port, "/incoming"), Options{}); err == nil {
		tr.Close()
		t.Fatal("plain login to a TLS-only server succeeded")
	}
}

func TestFTPErrors(t *testing.T) {
	dir, port := testpeers.StartVsftpd(t, "")
	ctx := context.Background()

	// A cancelled context aborts a download that is in progress.
	if err := os.WriteFile(filepath.Join(dir, "root/incoming/big.edi"), make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := dialT(t, ftpRemote("ftp", port, "/incoming"), Options{Timeout: 5 * time.Second})
	octx, ocancel := context.WithCancel(ctx)
	rc, err := tr.Open(octx, "big.edi")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.List(ctx); err == nil {
		t.Error("list during an open download succeeded")
	}
	ocancel()
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, rc); done <- err }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("read did not stop after cancel")
	}
	rc.Close()
	if _, err := tr.List(ctx); err == nil {
		t.Error("list on an aborted transport succeeded")
	}

	// Bad names, a missing file, a closed port.
	tr2 := dialT(t, ftpRemote("ftp", port, "/incoming"), Options{})
	for _, n := range []string{"", "..", "a/b"} {
		if err := tr2.Write(ctx, n, strings.NewReader("x")); err == nil {
			t.Errorf("write %q succeeded", n)
		}
	}
	if err := tr2.Remove(ctx, "nope.edi"); err == nil {
		t.Error("remove of a missing file succeeded")
	}
	dead := testpeers.Ports(t, 1)
	if tr, err := Dial(ctx, ftpRemote("ftp", dead, ""), Options{Timeout: 2 * time.Second}); err == nil {
		tr.Close()
		t.Error("dial to a closed port succeeded")
	}
}

// writeTestCA writes a self-signed CA certificate that signed nothing.
func writeTestCA(t *testing.T, file string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "unrelated CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}
