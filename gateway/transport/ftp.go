package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
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
	"time"

	"github.com/edigw/edigw/partners"
	"github.com/jlaffaye/ftp"
)

func init() {
	dialers["ftp"] = newFTP
	dialers["ftps"] = newFTP
	dialers["ftpes"] = newFTP
}

// ftpTransport is a Transport over FTP (RFC 959) in passive mode: "ftp" in
// clear, "ftps" with implicit TLS (TLS from the first byte, port 990) and
// "ftpes" with explicit TLS (AUTH TLS on port 21). TLS protects the control
// and the data connections (PROT P) and always verifies the server's
// certificate against the system roots plus Remote.CAFile.
//
// One FTP session carries one command at a time: the methods must not be
// called concurrently, and while a reader returned by Open is not closed
// the other methods fail. A cancelled context aborts the operation by
// closing the connections, after which the transport is unusable.
type ftpTransport struct {
	remote  string // for error messages: scheme://host:port/path
	dir     string // remote directory ("" = login directory)
	timeout time.Duration

	mu      sync.Mutex
	conn    *ftp.ServerConn
	ctrl    net.Conn // the control connection, for abort
	data    net.Conn // the latest data connection, for abort
	busy    bool     // an Open reader is not closed yet
	aborted error
}

func newFTP(ctx context.Context, r partners.Remote, o Options) (Transport, error) {
	t := &ftpTransport{remote: r.URL.String(), dir: r.URL.Path, timeout: o.Timeout}
	if t.timeout <= 0 {
		t.timeout = DefaultTimeout
	}
	port := r.URL.Port
	var tlsCfg *tls.Config
	switch r.URL.Scheme {
	case "ftp":
		if port == 0 {
			port = 21
		}
	case "ftps", "ftpes":
		if port == 0 {
			port = 21
			if r.URL.Scheme == "ftps" {
				port = 990
			}
		}
		var err error
		if tlsCfg, err = ftpTLSConfig(r, o.BaseDir); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("ftp transport: unsupported scheme %q", r.URL.Scheme)
	}
	if r.URL.Host == "" {
		return nil, fmt.Errorf("%s: no host", t.remote)
	}

	user := r.Username
	if user == "" {
		user = "anonymous"
	}
	var pass string
	if !r.Password.IsZero() {
		var err error
		if pass, err = r.Password.Resolve(o.BaseDir); err != nil {
			return nil, err
		}
	}

	dialer := &net.Dialer{Timeout: t.timeout}
	dialed := 0
	// The dial function serves the control connection (first call) and
	// every passive data connection; the library hands it no TLS, so TLS is
	// added here: implicit TLS on the control connection, and on every data
	// connection once TLS is in use (the library sends PBSZ 0 / PROT P).
	// With explicit TLS the library upgrades the control connection itself
	// after AUTH TLS.
	dial := func(network, addr string) (net.Conn, error) {
		dctx := context.Background()
		if dialed == 0 {
			dctx = ctx
		}
		c, err := dialer.DialContext(dctx, network, addr)
		if err != nil {
			return nil, err
		}
		var nc net.Conn = &ftpIdleConn{Conn: c, timeout: t.timeout}
		control := dialed == 0
		dialed++
		if tlsCfg != nil {
			switch {
			case !control:
				nc = &ftpTLSData{Conn: tls.Client(nc, tlsCfg)}
			case r.URL.Scheme == "ftps":
				nc = tls.Client(nc, tlsCfg)
			}
		}
		t.mu.Lock()
		if control {
			t.ctrl = nc
		} else {
			t.data = nc
		}
		t.mu.Unlock()
		return nc, nil
	}
	opts := []ftp.DialOption{ftp.DialWithDialFunc(dial), ftp.DialWithTimeout(t.timeout)}
	switch r.URL.Scheme {
	case "ftps":
		opts = append(opts, ftp.DialWithTLS(tlsCfg))
	case "ftpes":
		opts = append(opts, ftp.DialWithExplicitTLS(tlsCfg))
	}

	stop := context.AfterFunc(ctx, t.abort)
	defer stop()
	addr := net.JoinHostPort(r.URL.Host, strconv.Itoa(port))
	conn, err := ftp.Dial(addr, opts...)
	if err != nil {
		t.closeConns()
		return nil, t.wrap(ctx, "connect", err)
	}
	t.conn = conn
	if err := conn.Login(user, pass); err != nil {
		_ = conn.Quit()
		return nil, t.wrap(ctx, "login as "+user, err)
	}
	return t, nil
}

// ftpTLSConfig verifies the server against the system roots plus the
// partner's private CA (CAFile, relative to baseDir unless absolute).
func ftpTLSConfig(r partners.Remote, baseDir string) (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if r.CAFile != "" {
		p := r.CAFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		pem, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate found", p)
		}
	}
	return &tls.Config{
		ServerName: r.URL.Host,
		RootCAs:    pool,
		MinVersion: tls.VersionTLS12,
		// Many servers (vsftpd's require_ssl_reuse) want the data
		// connection to resume the control connection's TLS session.
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}, nil
}

// ftpIdleConn fails a Read or Write that makes no progress for timeout.
type ftpIdleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *ftpIdleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *ftpIdleConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// ftpTLSData is a TLS data connection that Close shuts down gracefully:
// close_notify first, then whatever the server still sends (TLS 1.3
// session tickets nobody read) is drained, so the kernel ends the
// connection with FIN rather than RST. Without it servers such as vsftpd
// may lose the tail of an upload ("426 Failure reading network stream").
type ftpTLSData struct {
	*tls.Conn
}

func (c *ftpTLSData) Close() error {
	if c.Conn.ConnectionState().HandshakeComplete {
		if c.Conn.CloseWrite() == nil {
			_, _ = io.CopyN(io.Discard, c.Conn, 256<<10)
		}
	}
	return c.Conn.Close()
}

// abort closes the connections so that a blocked operation returns; it
// runs when an operation's context is done.
func (t *ftpTransport) abort() {
	t.mu.Lock()
	if t.aborted == nil {
		t.aborted = errors.New("connection aborted by a cancelled operation")
	}
	t.mu.Unlock()
	t.closeConns()
}

func (t *ftpTransport) closeConns() {
	t.mu.Lock()
	ctrl, data := t.ctrl, t.data
	t.mu.Unlock()
	if d, ok := data.(*ftpTLSData); ok {
		_ = d.Conn.Close() // no graceful drain when aborting
	} else if data != nil {
		_ = data.Close()
	}
	if ctrl != nil {
		_ = ctrl.Close()
	}
}

// begin checks that the session is usable and arms ctx to abort it.
func (t *ftpTransport) begin(ctx context.Context) (stop func() bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.conn == nil:
		return nil, fmt.Errorf("%s: transport is closed", t.remote)
	case t.aborted != nil:
		return nil, fmt.Errorf("%s: %w", t.remote, t.aborted)
	case t.busy:
		return nil, fmt.Errorf("%s: a download is in progress (close its reader first)", t.remote)
	}
	return context.AfterFunc(ctx, t.abort), nil
}

func (t *ftpTransport) wrap(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %s: %w (%v)", t.remote, op, cerr, err)
	}
	return fmt.Errorf("%s: %s: %w", t.remote, op, err)
}

func (t *ftpTransport) path(name string) string {
	if t.dir == "" {
		return name
	}
	return path.Join(t.dir, name)
}

func (t *ftpTransport) List(ctx context.Context) ([]File, error) {
	stop, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()
	entries, err := t.conn.List(t.dir)
	if err != nil {
		return nil, t.wrap(ctx, "list", err)
	}
	files := make([]File, 0, len(entries))
	for _, e := range entries {
		if e.Type != ftp.EntryTypeFile || isTempName(e.Name) || checkName(e.Name) != nil {
			continue
		}
		files = append(files, File{Name: e.Name, Size: int64(e.Size), ModTime: e.Time})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

// ftpReader is a download; Close ends the transfer and reads the server's
// final status, which reports a transfer the server did not complete.
type ftpReader struct {
	t    *ftpTransport
	resp *ftp.Response
	stop func() bool
	once sync.Once
	err  error
}

func (r *ftpReader) Read(p []byte) (int, error) { return r.resp.Read(p) }

func (r *ftpReader) Close() error {
	r.once.Do(func() {
		r.err = r.resp.Close()
		r.stop()
		r.t.mu.Lock()
		r.t.busy = false
		r.t.mu.Unlock()
		if r.err != nil {
			r.err = fmt.Errorf("%s: download: %w", r.t.remote, r.err)
		}
	})
	return r.err
}

func (t *ftpTransport) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	stop, err := t.begin(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := t.conn.Retr(t.path(name))
	if err != nil {
		stop()
		return nil, t.wrap(ctx, "open "+name, err)
	}
	t.mu.Lock()
	t.busy = true
	t.mu.Unlock()
	return &ftpReader{t: t, resp: resp, stop: stop}, nil
}

// Write uploads to ".NAME.part-RANDOM" in the same directory and renames
// it to NAME, so NAME never holds a partial file. A failed upload deletes
// the temporary file (unless the connection itself was lost).
func (t *ftpTransport) Write(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	stop, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer stop()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := t.path("." + name + ".part-" + hex.EncodeToString(rnd[:]))
	if err := t.conn.Stor(tmp, r); err != nil {
		_ = t.conn.Delete(tmp)
		return t.wrap(ctx, "upload "+name, err)
	}
	if err := t.conn.Rename(tmp, t.path(name)); err != nil {
		_ = t.conn.Delete(tmp)
		return t.wrap(ctx, "rename upload to "+name, err)
	}
	return nil
}

func (t *ftpTransport) Remove(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	stop, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer stop()
	return t.wrap(ctx, "delete "+name, t.conn.Delete(t.path(name)))
}

// Move renames NAME into dir (relative to the remote directory), creating
// dir's missing components first.
func (t *ftpTransport) Move(ctx context.Context, name, dir string) error {
	if err := checkName(name); err != nil {
		return err
	}
	clean, err := cleanSubdir(dir)
	if err != nil {
		return err
	}
	stop, err := t.begin(ctx)
	if err != nil {
		return err
	}
	defer stop()
	sub := ""
	for _, el := range strings.Split(clean, "/") {
		sub = path.Join(sub, el)
		_ = t.conn.MakeDir(t.path(sub)) // fails when it exists; Rename reports real problems
	}
	return t.wrap(ctx, "move "+name+" to "+clean, t.conn.Rename(t.path(name), t.path(path.Join(clean, name))))
}

func (t *ftpTransport) Close() error {
	t.mu.Lock()
	conn := t.conn
	t.conn = nil
	aborted := t.aborted != nil
	t.mu.Unlock()
	if conn == nil {
		return nil
	}
	if aborted {
		t.closeConns()
		return nil
	}
	if err := conn.Quit(); err != nil {
		return fmt.Errorf("%s: quit: %w", t.remote, err)
	}
	return nil
}
