// Package sftpd is the gateway's SFTP listener: partners log in with a
// password or a key from their profile (package partners), upload files
// into inbox/ and collect acknowledgements from outbox/.
//
// The server is golang.org/x/crypto/ssh with the request server of
// github.com/pkg/sftp over a virtual file system: each session sees "/"
// holding exactly "inbox/" and "outbox/" of its own partner, and nothing of
// the host's file system. An upload is written to a hidden temporary file
// under Config.TempDir; when the client closes it, the bytes are handed to
// Inbox.Accept, and the client's CLOSE succeeds only if Accept did, that is
// once the file is durable. A transfer cut by a lost connection is discarded,
// never accepted.
package sftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/edigw/edigw/gateway/outbox"
	"github.com/edigw/edigw/partners"
	"golang.org/x/crypto/ssh"
)

// Upload describes a completed upload handed to Inbox.Accept.
type Upload struct {
	PartnerID  string
	User       string // the SFTP user that uploaded it
	Name       string // the file name (no directory)
	Size       int64
	RemoteAddr string // client address, host:port
	SessionID  string // the SSH session, as logged by the server
	// Data holds the bytes of an upload small enough to be kept in memory
	// (Config.MemoryUpload); Accept then gets no file.
	Data []byte
}

// Inbox receives uploaded files.
type Inbox interface {
	// Accept is called when a client closes an uploaded file whose transfer
	// completed. A small upload's bytes are u.Data and f is nil; otherwise
	// f is the upload's temporary file, positioned at its start: Accept may
	// read it or link it elsewhere (the listener removes only its own name
	// for it afterwards) but must not write to it. It returns only
	// once the bytes are durable (and recorded); an error fails the client's
	// CLOSE, so the partner sees a failed upload and sends it again.
	Accept(ctx context.Context, u Upload, f *os.File) (Receipt, error)
}

// Receipt is what Inbox.Accept stored, for the upload's log line.
type Receipt struct {
	MessageID string
	SHA256    string
}

// Outbox holds the files partners pick up; *outbox.Dir implements it.
type Outbox interface {
	List(ctx context.Context, partner string) ([]outbox.File, error)
	Open(ctx context.Context, partner, name string) (io.ReadCloser, error)
	Remove(ctx context.Context, partner, name string) error
}

// Defaults of Config.
const (
	DefaultMaxFileSize      = 256 << 20
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultMaxAuthTries     = 3
	DefaultBanAfter         = 5
	DefaultMemoryUpload     = 64 << 10
	DefaultBanFor           = 15 * time.Minute
	DefaultFailWindow       = 5 * time.Minute
	DefaultFailDelay        = time.Second
	DefaultShutdownGrace    = 30 * time.Second
)

// Config configures a Server. Zero durations and sizes mean the defaults.
type Config struct {
	Addr       string // listen address for ListenAndServe, e.g. ":2022"
	HostKeyDir string // ed25519 and RSA-3072 host keys; generated on first start
	// Users returns the current partner profiles. It is called once per
	// connection, so a reload (an atomic swap of the Set) applies to the
	// next login.
	Users  func() *partners.Set
	Inbox  Inbox
	Outbox Outbox // nil: outbox/ is always empty

	MaxFileSize      int64         // per upload (256 MiB)
	IdleTimeout      time.Duration // no traffic from the client for this long closes the connection (5m)
	HandshakeTimeout time.Duration // for the SSH handshake and authentication together (30s)
	MaxAuthTries     int           // authentication attempts per connection (3)
	// BanAfter failed logins from one IP address within FailWindow ban it
	// for BanFor: its connections are closed before the SSH handshake.
	// A negative BanAfter disables banning.
	BanAfter   int           // 5
	BanFor     time.Duration // 15m
	FailWindow time.Duration // 5m
	// FailDelay is waited after each rejected password before the client is
	// answered (1s; negative: none).
	FailDelay time.Duration
	// TempDir holds uploads in progress as hidden files. It belongs to this
	// server: leftovers of a crash are removed by New. Default:
	// <os.TempDir()>/edigw-sftpd.
	TempDir string
	// MemoryUpload: an upload up to this size is held in memory, not in a
	// temporary file (64 KiB; negative: none). Most EDI files are a few KB,
	// and a file created, written and removed per upload was a good part of
	// the listener's kernel time.
	MemoryUpload int
	Logger       *slog.Logger
	// OnLogin, when set, is told of every login attempt: the partner ("" for
	// an unknown user) and whether it succeeded (for metrics).
	OnLogin func(partner string, ok bool)
}

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown.
var ErrServerClosed = errors.New("sftpd: server closed")

// Server is an SFTP listener. Create it with New.
type Server struct {
	cfg      Config
	log      *slog.Logger
	hostKeys []ssh.Signer
	bans     *banList

	// ctx is the context of Inbox/Outbox calls; it is cancelled when
	// Shutdown gives up waiting.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	sessions  map[string]int // SFTP user → connections logged in
	legacy    legacyCache
}

// New checks cfg, applies defaults, loads (or generates) the host keys and
// prepares TempDir.
func New(cfg Config) (*Server, error) {
	if cfg.Users == nil {
		return nil, errors.New("sftpd: Config.Users is required")
	}
	if cfg.Inbox == nil {
		return nil, errors.New("sftpd: Config.Inbox is required")
	}
	setDefault(&cfg.MaxFileSize, DefaultMaxFileSize)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&cfg.MaxAuthTries, DefaultMaxAuthTries)
	setDefault(&cfg.BanAfter, DefaultBanAfter)
	setDefault(&cfg.MemoryUpload, DefaultMemoryUpload)
	setDefault(&cfg.BanFor, DefaultBanFor)
	setDefault(&cfg.FailWindow, DefaultFailWindow)
	setDefault(&cfg.FailDelay, DefaultFailDelay)
	if cfg.TempDir == "" {
		cfg.TempDir = filepath.Join(os.TempDir(), "edigw-sftpd")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	keys, err := loadHostKeys(cfg.HostKeyDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.TempDir, 0o700); err != nil {
		return nil, fmt.Errorf("sftpd: temp dir: %w", err)
	}
	// Uploads in progress when a previous process died were never
	// accepted (the client was never told they were): drop them.
	if old, err := filepath.Glob(filepath.Join(cfg.TempDir, uploadPrefix+"*")); err == nil {
		for _, f := range old {
			os.Remove(f)
		}
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		hostKeys:  keys,
		bans:      newBanList(cfg.BanAfter, cfg.FailWindow, cfg.BanFor),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		sessions:  map[string]int{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// HostKeys returns the server's public host keys (ed25519, RSA), e.g. to
// log or publish their fingerprints.
func (s *Server) HostKeys() []ssh.PublicKey {
	out := make([]ssh.PublicKey, len(s.hostKeys))
	for i, k := range s.hostKeys {
		out[i] = k.PublicKey()
	}
	return out
}

// ListenAndServe listens on Config.Addr and serves until ctx is done or
// Shutdown is called. When ctx is done it shuts down, giving transfers in
// progress up to DefaultShutdownGrace to finish. It returns ErrServerClosed
// after a shutdown.
func (s *Server) ListenAndServe(ctx context.Context) error {
	addr := s.cfg.Addr
	if addr == "" {
		addr = ":2022"
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("sftpd: %w", err)
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), DefaultShutdownGrace)
		defer cancel()
		if err := s.Shutdown(sctx); err != nil {
			s.log.Warn("sftp shutdown", "err", err)
		}
	})
	defer stop()
	return s.Serve(ln)
}

// Serve accepts connections on ln until Shutdown is called (then it returns
// ErrServerClosed) or ln fails. Each connection is served in its own
// goroutine; banned addresses are closed before the SSH handshake.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	for _, k := range s.hostKeys {
		s.log.Info("sftp listening", "addr", ln.Addr().String(), "host_key", ssh.FingerprintSHA256(k.PublicKey()), "type", k.PublicKey().Type())
	}
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("sftp accept", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		ip := addrIP(raw.RemoteAddr())
		if until, banned := s.bans.banned(ip, time.Now()); banned {
			s.log.Debug("sftp connection refused: address banned", "ip", ip.String(), "until", until)
			raw.Close()
			continue
		}
		c := s.newConn(raw, ip)
		if !s.track(c) {
			raw.Close()
			continue
		}
		go func() {
			defer s.untrack(c)
			c.serve()
		}()
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting connections, closes idle ones and lets
// transfers in progress finish (a connection closes when its last open file
// is closed; opening a new one is refused meanwhile). When ctx is done
// first, it closes the remaining connections (their open uploads are
// discarded) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.drain()
	}
	s.mu.Unlock()

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			s.cancel()
			return nil
		}
		select {
		case <-ctx.Done():
			s.cancel()
			s.mu.Lock()
			for c := range s.conns {
				c.raw.Close()
			}
			s.mu.Unlock()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// reserveSession takes one of the user's MaxSessions slots.
func (s *Server) reserveSession(user string, maxSessions int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if maxSessions > 0 && s.sessions[user] >= maxSessions {
		return false
	}
	s.sessions[user]++
	return true
}

func (s *Server) releaseSession(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[user]--; s.sessions[user] <= 0 {
		delete(s.sessions, user)
	}
}

// legacyCache remembers, for the last partner Set seen, whether any user
// opted in to legacy algorithms.
type legacyCache struct {
	set *partners.Set
	any bool
}

func (s *Server) anyLegacy(set *partners.Set) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.legacy.set != set || set == nil {
		any := false
		if set != nil {
			for _, p := range set.Partners() {
				for _, u := range p.Inbound.SFTP {
					any = any || u.LegacyAlgorithms
				}
			}
		}
		s.legacy = legacyCache{set: set, any: any}
	}
	return s.legacy.any
}

func addrIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// sanitize keeps a client-supplied string (user name, file name) short and
// printable for the logs.
func sanitize(s string) string {
	if len(s) > 128 {
		s = s[:128] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
