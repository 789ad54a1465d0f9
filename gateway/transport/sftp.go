package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edigw/edigw/partners"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func init() {
	dialers[partners.SchemeSFTP] = newSFTP
}

// sftpTransport is one SSH connection with one SFTP session, rooted at the
// endpoint's path ("" = the login directory).
//
// pkg/sftp calls take no context, so every operation runs under a watchdog:
// when ctx is done, or when the operation makes no progress for the timeout,
// the SSH connection is closed, which fails the pending call. The transport
// is unusable after that; the caller dials again.
type sftpTransport struct {
	ssh     *ssh.Client
	c       *sftp.Client
	dir     string
	addr    string
	timeout time.Duration

	broken    atomic.Pointer[error] // why the watchdog closed the connection
	closeOnce sync.Once
	closeErr  error
}

func newSFTP(ctx context.Context, r partners.Remote, o Options) (Transport, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if r.URL.Host == "" {
		return nil, errors.New("sftp: no host in the URL")
	}
	if r.Username == "" {
		return nil, errors.New("sftp: no username")
	}
	port := r.URL.Port
	if port == 0 {
		port = 22
	}
	addr := net.JoinHostPort(r.URL.Host, strconv.Itoa(port))

	hostKeyCallback, hostKeyAlgos, err := sftpHostKeyCheck(r, o.BaseDir, addr)
	if err != nil {
		return nil, err
	}
	auth, err := sftpAuth(r, o.BaseDir)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{
		User:              r.Username,
		Auth:              auth,
		HostKeyCallback:   hostKeyCallback,
		HostKeyAlgorithms: hostKeyAlgos,
		Timeout:           o.Timeout,
	}

	dctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	nc, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sftp: connect %s: %w", addr, err)
	}
	// The handshake and login honour dctx: a silent server cannot hold us.
	if dl, ok := dctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(dctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if !stop() && err == nil {
		err = dctx.Err()
	}
	if err != nil {
		nc.Close()
		if !isHandshakeRejection(err) {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("sftp: ssh handshake with %s as %s: %w (%v)", addr, r.Username, ctx.Err(), err)
			}
			if dl, ok := dctx.Deadline(); dctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) || (ok && !time.Now().Before(dl)) {
				return nil, fmt.Errorf("sftp: ssh handshake with %s as %s: no answer within %s: %w", addr, r.Username, o.Timeout, err)
			}
		}
		return nil, fmt.Errorf("sftp: ssh handshake with %s as %s: %w", addr, r.Username, err)
	}
	nc.SetDeadline(time.Time{})
	client := ssh.NewClient(sc, chans, reqs)

	// Starting the sftp subsystem has no context either.
	timer := time.AfterFunc(o.Timeout, func() { client.Close() })
	stop = context.AfterFunc(ctx, func() { client.Close() })
	c, err := sftp.NewClient(client, sftp.UseConcurrentReads(true), sftp.UseConcurrentWrites(true))
	okTimer, okCtx := timer.Stop(), stop()
	if err == nil && (!okTimer || !okCtx) {
		err = errors.New("timed out")
		c.Close()
	}
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("sftp: start sftp subsystem on %s: %w", addr, err)
	}

	dir := r.URL.Path
	if dir == "" {
		dir = "."
	}
	return &sftpTransport{ssh: client, c: c, dir: dir, addr: addr, timeout: o.Timeout}, nil
}

// isHandshakeRejection tells a refusal by the server (or by our host key
// check) from a timeout.
func isHandshakeRejection(err error) bool {
	s := err.Error()
	return strings.Contains(s, "unable to authenticate") || strings.Contains(s, "host key")
}

// sftpHostKeyCheck builds the host key callback: the pinned HostKey (a
// "SHA256:..." fingerprint or a full public key) or else the known_hosts
// file. It never accepts an unknown key. It also returns the host key
// algorithms to ask for when the expected key types are known, so that the
// server presents the key we can check.
func sftpHostKeyCheck(r partners.Remote, baseDir, addr string) (ssh.HostKeyCallback, []string, error) {
	switch {
	case r.HostKey != "":
		pin := strings.TrimSpace(r.HostKey)
		var want string
		var algos []string
		if strings.HasPrefix(pin, "SHA256:") {
			want = strings.TrimRight(pin, "=")
		} else {
			k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pin))
			if err != nil {
				return nil, nil, fmt.Errorf("sftp: host_key is neither a SHA256:... fingerprint nor a public key: %v", err)
			}
			want = ssh.FingerprintSHA256(k)
			algos = keyAlgorithms(k.Type())
		}
		return func(_ string, _ net.Addr, key ssh.PublicKey) error {
			got := ssh.FingerprintSHA256(key)
			if got != want {
				return fmt.Errorf("host key mismatch for %s: expected %s, server presented %s (%s)", addr, want, got, key.Type())
			}
			return nil
		}, algos, nil

	case r.KnownHostsFile != "":
		file := r.KnownHostsFile
		if !filepath.IsAbs(file) {
			file = filepath.Join(baseDir, file)
		}
		check, err := knownhosts.New(file)
		if err != nil {
			return nil, nil, fmt.Errorf("sftp: known_hosts: %w", err)
		}
		cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := check(hostname, remote, key)
			var ke *knownhosts.KeyError
			switch {
			case err == nil:
				return nil
			case errors.As(err, &ke) && len(ke.Want) > 0:
				want := make([]string, len(ke.Want))
				for i, k := range ke.Want {
					want[i] = fmt.Sprintf("%s (%s, %s:%d)", ssh.FingerprintSHA256(k.Key), k.Key.Type(), k.Filename, k.Line)
				}
				return fmt.Errorf("host key mismatch for %s: expected %s, server presented %s (%s)",
					hostname, strings.Join(want, " or "), ssh.FingerprintSHA256(key), key.Type())
			case errors.As(err, &ke):
				return fmt.Errorf("host key of %s is not in known_hosts %s: server presented %s (%s)",
					hostname, file, ssh.FingerprintSHA256(key), key.Type())
			}
			return fmt.Errorf("host key of %s: %w", hostname, err)
		}
		return cb, knownHostAlgorithms(check, addr), nil
	}
	return nil, nil, errors.New("sftp: no host key configured (host_key or known_hosts_file is required)")
}

// knownHostAlgorithms lists the algorithms of the keys known_hosts holds for
// addr, by presenting a throwaway key: the KeyError names the known ones.
func knownHostAlgorithms(check ssh.HostKeyCallback, addr string) []string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	tcp, _ := net.ResolveTCPAddr("tcp", addr)
	if tcp == nil {
		tcp = &net.TCPAddr{}
	}
	var ke *knownhosts.KeyError
	if err := check(addr, tcp, probe); !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var algos []string
	for _, k := range ke.Want {
		for _, a := range keyAlgorithms(k.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// keyAlgorithms maps a key type to the host key algorithms that present it.
func keyAlgorithms(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// sftpAuth resolves the private key and/or password into auth methods.
// Errors name the reference, never the secret.
func sftpAuth(r partners.Remote, baseDir string) ([]ssh.AuthMethod, error) {
	var auth []ssh.AuthMethod
	if !r.PrivateKey.IsZero() {
		pem, err := r.PrivateKey.Resolve(baseDir)
		if err != nil {
			return nil, fmt.Errorf("sftp: %w", err)
		}
		signer, err := ssh.ParsePrivateKey([]byte(pem))
		if err != nil {
			var pm *ssh.PassphraseMissingError
			if errors.As(err, &pm) {
				return nil, fmt.Errorf("sftp: private key (%s) is encrypted; an unencrypted key is required", r.PrivateKey)
			}
			return nil, fmt.Errorf("sftp: private key (%s): %v", r.PrivateKey, err)
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	if !r.Password.IsZero() {
		pw, err := r.Password.Resolve(baseDir)
		if err != nil {
			return nil, fmt.Errorf("sftp: %w", err)
		}
		auth = append(auth, ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = pw
				}
				return answers, nil
			}))
	}
	if len(auth) == 0 {
		return nil, errors.New("sftp: no credentials (private key or password) configured")
	}
	return auth, nil
}

var errNoProgress = os.ErrDeadlineExceeded

// guard runs fn under the watchdog: ctx done, or no call to touch for the
// timeout, closes the connection. It returns fn's error, explained by the
// watchdog's reason when it fired.
func (t *sftpTransport) guard(ctx context.Context, op string, fn func(touch func()) error) error {
	if b := t.broken.Load(); b != nil {
		return fmt.Errorf("sftp %s: %s: connection is closed: %w", op, t.addr, *b)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sftp %s: %w", op, err)
	}
	var last atomic.Int64
	touch := func() { last.Store(time.Now().UnixNano()) }
	touch()
	var fired atomic.Bool
	var timer *time.Timer
	timer = time.AfterFunc(t.timeout, func() {
		idle := time.Since(time.Unix(0, last.Load()))
		if idle < t.timeout {
			timer.Reset(t.timeout - idle)
			return
		}
		fired.Store(true)
		t.abort(fmt.Errorf("no progress for %s: %w", t.timeout, errNoProgress))
	})
	stop := context.AfterFunc(ctx, func() {
		fired.Store(true)
		t.abort(ctx.Err())
	})
	err := fn(touch)
	timer.Stop()
	stop()
	if err != nil && fired.Load() {
		if b := t.broken.Load(); b != nil {
			return fmt.Errorf("sftp %s: %s: %w (%v)", op, t.addr, *b, err)
		}
	}
	if err != nil {
		return fmt.Errorf("sftp %s: %w", op, err)
	}
	return nil
}

// abort closes the connection for reason; pending calls fail.
func (t *sftpTransport) abort(reason error) {
	t.broken.CompareAndSwap(nil, &reason)
	t.ssh.Close()
}

func (t *sftpTransport) path(name string) string { return path.Join(t.dir, name) }

func (t *sftpTransport) List(ctx context.Context) ([]File, error) {
	var files []File
	err := t.guard(ctx, "list "+t.dir, func(func()) error {
		fis, err := t.c.ReadDir(t.dir)
		if err != nil {
			return err
		}
		for _, fi := range fis {
			if fi.Mode().IsRegular() && !isTempName(fi.Name()) {
				files = append(files, File{Name: fi.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

// Open opens name for reading. ctx covers the reading too, until Close: its
// end closes the connection. The reader implements io.WriterTo (concurrent
// reads), so io.Copy from it is fast.
func (t *sftpTransport) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	p := t.path(name)
	var f *sftp.File
	err := t.guard(ctx, "open "+p, func(func()) error {
		var err error
		if f, err = t.c.Open(p); err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			err = errors.New("not a regular file")
		}
		if err != nil {
			f.Close()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &sftpReader{t: t, f: f, ctx: ctx, p: p}, nil
}

type sftpReader struct {
	t   *sftpTransport
	f   *sftp.File
	ctx context.Context
	p   string
}

func (r *sftpReader) Read(b []byte) (n int, err error) {
	err = r.t.guard(r.ctx, "read "+r.p, func(func()) error {
		n, err = r.f.Read(b)
		return err
	})
	if errors.Is(err, io.EOF) {
		err = io.EOF
	}
	return n, err
}

func (r *sftpReader) WriteTo(w io.Writer) (n int64, err error) {
	err = r.t.guard(r.ctx, "read "+r.p, func(touch func()) error {
		n, err = r.f.WriteTo(progressWriter{w, touch})
		return err
	})
	return n, err
}

func (r *sftpReader) Close() error {
	return r.t.guard(context.Background(), "close "+r.p, func(func()) error { return r.f.Close() })
}

type progressWriter struct {
	w     io.Writer
	touch func()
}

func (p progressWriter) Write(b []byte) (int, error) {
	p.touch()
	return p.w.Write(b)
}

type progressReader struct {
	r     io.Reader
	touch func()
}

func (p progressReader) Read(b []byte) (int, error) {
	p.touch()
	return p.r.Read(b)
}

// Write uploads to ".NAME.part-RANDOM" in the folder, fsyncs it when the
// server supports it, and renames it over name. On failure the temp file is
// removed (unless the connection itself is gone).
func (t *sftpTransport) Write(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := t.path("." + name + ".part-" + hex.EncodeToString(rnd[:]))
	dst := t.path(name)
	return t.guard(ctx, "write "+dst, func(touch func()) (err error) {
		f, err := t.c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return err
		}
		defer func() {
			if err != nil {
				f.Close()
				t.c.Remove(tmp)
			}
		}()
		if _, err = f.ReadFromWithConcurrency(progressReader{ctxReader{ctx, r}, touch}, 0); err != nil {
			return err
		}
		touch()
		if v, ok := t.c.HasExtension("fsync@openssh.com"); ok && v == "1" {
			if err = f.Sync(); err != nil {
				return err
			}
		}
		if err = f.Close(); err != nil {
			return err
		}
		if err = ctx.Err(); err != nil {
			return err
		}
		return t.rename(tmp, dst)
	})
}

// rename replaces newname: posix-rename@openssh.com when the server has it;
// else plain SFTP rename, which fails on an existing target, so the target
// is removed first in that case.
func (t *sftpTransport) rename(oldname, newname string) error {
	if _, ok := t.c.HasExtension("posix-rename@openssh.com"); ok {
		err := t.c.PosixRename(oldname, newname)
		var se *sftp.StatusError
		if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported {
			return err
		}
	}
	err := t.c.Rename(oldname, newname)
	if err == nil {
		return nil
	}
	if _, serr := t.c.Lstat(newname); serr != nil {
		return err
	}
	if rerr := t.c.Remove(newname); rerr != nil {
		return err
	}
	return t.c.Rename(oldname, newname)
}

func (t *sftpTransport) Remove(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	p := t.path(name)
	return t.guard(ctx, "remove "+p, func(func()) error { return t.c.Remove(p) })
}

func (t *sftpTransport) Move(ctx context.Context, name, dir string) error {
	if err := checkName(name); err != nil {
		return err
	}
	sub, err := cleanSubdir(dir)
	if err != nil {
		return err
	}
	src, to := t.path(name), t.path(sub)
	return t.guard(ctx, "move "+src+" to "+to, func(func()) error {
		if err := t.c.MkdirAll(to); err != nil {
			return err
		}
		return t.rename(src, path.Join(to, name))
	})
}

// Close ends the SFTP session and the SSH connection.
func (t *sftpTransport) Close() error {
	t.closeOnce.Do(func() {
		err1 := t.c.Close()
		err2 := t.ssh.Close()
		if t.broken.Load() == nil {
			if err1 != nil && !errors.Is(err1, io.EOF) {
				t.closeErr = err1
			} else if err2 != nil && !errors.Is(err2, net.ErrClosed) {
				t.closeErr = err2
			}
		}
	})
	return t.closeErr
}
