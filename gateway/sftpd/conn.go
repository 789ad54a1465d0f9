package sftpd

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edigw/edigw/partners"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

// Algorithms offered: modern ones only. Legacy algorithms are limited to
// the ssh-rsa (SHA-1) signature in user authentication, for users who opted
// in; see conn.verifiedKey.
var (
	kexAlgos = []string{
		ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519,
		ssh.KeyExchangeECDHP256, ssh.KeyExchangeECDHP384, ssh.KeyExchangeECDHP521,
	}
	cipherAlgos = []string{
		ssh.CipherChaCha20Poly1305, ssh.CipherAES256GCM, ssh.CipherAES128GCM,
		ssh.CipherAES256CTR, ssh.CipherAES192CTR, ssh.CipherAES128CTR,
	}
	macAlgos = []string{
		ssh.HMACSHA256ETM, ssh.HMACSHA512ETM, ssh.HMACSHA256, ssh.HMACSHA512,
	}
	// Signature algorithms accepted for client keys. ECDSA and security-key
	// variants are included because partner profiles may hold such keys.
	userKeyAlgos = []string{
		ssh.KeyAlgoED25519, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256,
	}
)

const maxChannelsPerConn = 4

// conn is one client connection.
type conn struct {
	srv  *Server
	raw  net.Conn
	ic   *idleConn
	ip   netip.Addr
	addr string
	log  *slog.Logger

	// Authentication state, used by the handshake goroutine only.
	users       *partners.Set
	pwFailures  int
	keyRejected bool
	partner     *partners.Partner
	user        *partners.SFTPUser
	method      string
	keyFP       string
	slot        string // user holding a MaxSessions slot, released at the end
	sessionID   string

	mu        sync.Mutex
	transfers int  // files open for reading or writing
	draining  bool // Shutdown: close when transfers reaches 0, refuse new ones
}

func (s *Server) newConn(raw net.Conn, ip netip.Addr) *conn {
	return &conn{
		srv:  s,
		raw:  raw,
		ic:   &idleConn{Conn: raw, idle: s.cfg.IdleTimeout},
		ip:   ip,
		addr: raw.RemoteAddr().String(),
		log:  s.log.With("ip", ip.String()),
	}
}

var (
	errShuttingDown = errors.New("server is shutting down; try again shortly")
	errTooManyOpen  = errors.New("too many files open on this connection")
)

// maxOpenFiles caps the files a connection has open at once (each upload
// holds a temporary file).
const maxOpenFiles = 64

func (c *conn) beginTransfer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining {
		return errShuttingDown
	}
	if c.transfers >= maxOpenFiles {
		return errTooManyOpen
	}
	c.transfers++
	return nil
}

func (c *conn) endTransfer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.transfers--
	if c.draining && c.transfers == 0 {
		// The reply to the client's CLOSE is sent after this returns: give
		// it a moment to leave before the connection goes.
		time.AfterFunc(drainLinger, func() { c.raw.Close() })
	}
}

// drainLinger is how long a draining connection stays open after its last
// transfer ended, for the final status to reach the client.
const drainLinger = 250 * time.Millisecond

func (c *conn) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if c.transfers == 0 {
		c.raw.Close()
	}
}

func (c *conn) serve() {
	defer c.raw.Close()
	s := c.srv
	start := time.Now()
	c.users = s.cfg.Users()
	config := &ssh.ServerConfig{
		Config: ssh.Config{
			KeyExchanges: kexAlgos,
			Ciphers:      cipherAlgos,
			MACs:         macAlgos,
		},
		PublicKeyAuthAlgorithms:   userKeyAlgos,
		MaxAuthTries:              s.cfg.MaxAuthTries,
		PasswordCallback:          c.password,
		PublicKeyCallback:         c.publicKey,
		VerifiedPublicKeyCallback: c.verifiedKey,
		ServerVersion:             "SSH-2.0-edigw",
	}
	if s.anyLegacy(c.users) {
		// PublicKeyAuthAlgorithms applies to every user of the connection,
		// and the user is not known yet: ssh-rsa is allowed here when any
		// user opted in, and refused per user in verifiedKey.
		config.PublicKeyAuthAlgorithms = append(append([]string(nil), userKeyAlgos...), ssh.KeyAlgoRSA)
	}
	for _, k := range s.hostKeys {
		config.AddHostKey(k)
	}

	// The handshake and authentication share one deadline.
	c.ic.handshake.Store(true)
	c.raw.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(c.ic, config)
	if err != nil {
		if c.user == nil && c.pwFailures == 0 && c.keyRejected {
			// Only keys were offered, and none was accepted: one failed login.
			c.recordFailure(1)
		}
		if c.slot != "" {
			s.releaseSession(c.slot)
		}
		c.log.Debug("sftp handshake ended", "err", err)
		return
	}
	defer s.releaseSession(c.slot)
	c.ic.handshake.Store(false)
	c.raw.SetDeadline(time.Time{})
	c.ic.touch()
	c.sessionID = hex.EncodeToString(sconn.SessionID())[:16]
	c.log = c.log.With("partner", c.partner.ID, "user", c.user.User, "session", c.sessionID)
	c.log.Info("sftp login", "method", c.method, "key", c.keyFP)
	c.srv.onLogin(c.partner, true)
	defer func() {
		c.log.Info("sftp logout", "duration", time.Since(start).Round(time.Millisecond).String())
	}()

	go ssh.DiscardRequests(reqs) // global requests: no port forwarding
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxChannelsPerConn)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only SFTP sessions are supported")
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			nc.Reject(ssh.ResourceShortage, "too many channels")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			<-sem
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.serveChannel(ch, creqs)
		}()
	}
	sconn.Close()
	wg.Wait()
}

// serveChannel runs the sftp subsystem on a session channel; every other
// request (shell, exec, pty, env...) is refused.
func (c *conn) serveChannel(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "subsystem" || !bytes.Equal(subsystemName(req.Payload), []byte("sftp")) {
			req.Reply(false, nil)
			continue
		}
		req.Reply(true, nil)
		go func() {
			for r := range reqs {
				r.Reply(false, nil)
			}
		}()
		sess := newSession(c)
		rs := sftp.NewRequestServer(ch, sess.handlers())
		if err := rs.Serve(); err != nil && !errors.Is(err, io.EOF) {
			c.log.Debug("sftp session ended", "err", err)
		}
		rs.Close()
		return
	}
}

func subsystemName(payload []byte) []byte {
	if len(payload) < 4 {
		return nil
	}
	n := binary.BigEndian.Uint32(payload)
	if uint64(n) > uint64(len(payload)-4) {
		return nil
	}
	return payload[4 : 4+n]
}

// ---- authentication ----

// errAuth is what the client learns about a rejected login: nothing.
var errAuth = errors.New("authentication failed")

// dummyHash is compared against when there is no real hash, so that an
// unknown user costs as much time as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("edigw: no such user"), bcrypt.DefaultCost)
	return h
})

func (c *conn) lookup(name string) (*partners.Partner, *partners.SFTPUser) {
	if c.users == nil {
		return nil, nil
	}
	return c.users.BySFTPUser(name)
}

func (c *conn) fail(meta ssh.ConnMetadata, method, reason string, p *partners.Partner) {
	attrs := []any{"user", sanitize(meta.User()), "method", method, "reason", reason}
	if p != nil {
		attrs = append(attrs, "partner", p.ID)
	}
	c.log.Info("sftp login failed", attrs...)
	c.srv.onLogin(p, false)
}

// recordFailure counts failed logins for the ban.
func (c *conn) recordFailure(n int) {
	if c.srv.bans.fail(c.ip, n, time.Now()) {
		c.log.Warn("sftp address banned", "failures", c.srv.cfg.BanAfter, "window", c.srv.cfg.FailWindow.String(), "for", c.srv.cfg.BanFor.String())
	}
}

func (c *conn) delay() {
	if d := c.srv.cfg.FailDelay; d > 0 {
		time.Sleep(d)
	}
}

func (c *conn) password(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
	const method = "password"
	if _, banned := c.srv.bans.banned(c.ip, time.Now()); banned {
		c.fail(meta, method, "address banned", nil)
		return nil, errAuth
	}
	p, u := c.lookup(meta.User())
	reject := func(reason string, count bool) (*ssh.Permissions, error) {
		c.fail(meta, method, reason, p)
		if count {
			c.pwFailures++
			c.recordFailure(1)
		}
		c.delay()
		return nil, errAuth
	}
	if u == nil {
		bcrypt.CompareHashAndPassword(dummyHash(), pw)
		return reject("unknown user", true)
	}
	// The network is checked before the password, so that a client from
	// elsewhere learns nothing about it.
	if !u.Allowed(c.ip) {
		bcrypt.CompareHashAndPassword(dummyHash(), pw)
		return reject("address not in allowed_networks", true)
	}
	if u.PasswordHash.IsZero() {
		bcrypt.CompareHashAndPassword(dummyHash(), pw)
		return reject("password login not enabled for this user", true)
	}
	hash, err := u.PasswordHash.Resolve(p.Dir)
	if err != nil {
		c.log.Error("sftp password hash unavailable", "partner", p.ID, "user", u.User, "err", err)
		bcrypt.CompareHashAndPassword(dummyHash(), pw)
		return reject("password hash unavailable", false)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), pw) != nil {
		return reject("wrong password", true)
	}
	return c.admit(meta, method, p, u, "")
}

func (c *conn) publicKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	const method = "publickey"
	if _, banned := c.srv.bans.banned(c.ip, time.Now()); banned {
		c.fail(meta, method, "address banned", nil)
		return nil, errAuth
	}
	p, u := c.lookup(meta.User())
	reject := func(reason string) (*ssh.Permissions, error) {
		attrs := []any{"user", sanitize(meta.User()), "method", method, "reason", reason, "key", ssh.FingerprintSHA256(key)}
		if p != nil {
			attrs = append(attrs, "partner", p.ID)
		}
		c.log.Info("sftp login failed", attrs...)
		c.srv.onLogin(p, false)
		c.keyRejected = true
		return nil, errAuth
	}
	switch {
	case u == nil:
		return reject("unknown user")
	case !u.Allowed(c.ip):
		return reject("address not in allowed_networks")
	}
	want := key.Marshal()
	for _, k := range u.PublicKeys {
		if bytes.Equal(k.Marshal(), want) {
			return &ssh.Permissions{}, nil
		}
	}
	return reject("unknown key")
}

// verifiedKey runs once the client proved it holds a key accepted by
// publicKey. sigFormat is the algorithm of the signature that was verified:
// "ssh-rsa" means RSA with SHA-1, which only users with legacy_algorithms
// may use (it can be offered at all only because PublicKeyAuthAlgorithms is
// per connection, not per user).
func (c *conn) verifiedKey(meta ssh.ConnMetadata, key ssh.PublicKey, _ *ssh.Permissions, sigFormat string) (*ssh.Permissions, error) {
	p, u := c.lookup(meta.User())
	if u == nil { // cannot happen: publicKey accepted this user
		return nil, errAuth
	}
	if sigFormat == ssh.KeyAlgoRSA && !u.LegacyAlgorithms {
		c.fail(meta, "publickey", "legacy ssh-rsa (SHA-1) signature; the user has no legacy_algorithms", p)
		return nil, errAuth
	}
	return c.admit(meta, "publickey/"+sigFormat, p, u, ssh.FingerprintSHA256(key))
}

// admit runs after the credentials were verified: partner status and the
// user's session limit.
func (c *conn) admit(meta ssh.ConnMetadata, method string, p *partners.Partner, u *partners.SFTPUser, fp string) (*ssh.Permissions, error) {
	if p.Status == partners.StatusDisabled {
		c.fail(meta, method, "partner disabled", p)
		return nil, &ssh.BannerError{Err: errAuth, Message: "This account is disabled.\r\n"}
	}
	if c.slot == "" {
		if !c.srv.reserveSession(u.User, u.MaxSessions) {
			c.fail(meta, method, "too many concurrent sessions", p)
			return nil, &ssh.BannerError{Err: errAuth, Message: "Too many concurrent sessions for this user; try again later.\r\n"}
		}
		c.slot = u.User
	}
	c.partner, c.user, c.method, c.keyFP = p, u, method, fp
	return &ssh.Permissions{Extensions: map[string]string{"partner": p.ID}}, nil
}

// ---- failed logins and bans ----

type banList struct {
	after         int
	window, banOf time.Duration

	mu sync.Mutex
	m  map[netip.Addr]*ipRecord
}

type ipRecord struct {
	fails []time.Time
	until time.Time
}

func newBanList(after int, window, banFor time.Duration) *banList {
	return &banList{after: after, window: window, banOf: banFor, m: map[netip.Addr]*ipRecord{}}
}

func (b *banList) banned(ip netip.Addr, now time.Time) (time.Time, bool) {
	if b.after < 0 {
		return time.Time{}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.m[ip]; r != nil && now.Before(r.until) {
		return r.until, true
	}
	return time.Time{}, false
}

// fail records n failures from ip and reports whether that banned it.
func (b *banList) fail(ip netip.Addr, n int, now time.Time) bool {
	if b.after < 0 || n <= 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.m) > 10000 {
		b.sweep(now)
	}
	r := b.m[ip]
	if r == nil {
		r = &ipRecord{}
		b.m[ip] = r
	}
	if now.Before(r.until) {
		return false
	}
	r.fails = recent(r.fails, now.Add(-b.window))
	for range n {
		r.fails = append(r.fails, now)
	}
	if len(r.fails) >= b.after {
		r.fails = nil
		r.until = now.Add(b.banOf)
		return true
	}
	return false
}

func recent(ts []time.Time, since time.Time) []time.Time {
	i := 0
	for i < len(ts) && ts[i].Before(since) {
		i++
	}
	return ts[i:]
}

func (b *banList) sweep(now time.Time) {
	for ip, r := range b.m {
		if now.After(r.until) && len(recent(r.fails, now.Add(-b.window))) == 0 {
			delete(b.m, ip)
		}
	}
}

// ---- deadlines ----

// idleConn gives every read and write a deadline of now+idle, so a client
// that sends nothing for that long is disconnected. During the handshake
// the absolute handshake deadline applies instead, and while the server
// itself is busy for the client (committing an upload) reads have none.
type idleConn struct {
	net.Conn
	idle      time.Duration
	handshake atomic.Bool
	holds     atomic.Int32
}

func (c *idleConn) Read(p []byte) (int, error) {
	if !c.handshake.Load() && c.holds.Load() == 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if !c.handshake.Load() {
		c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Write(p)
}

// touch restarts the idle timer of a pending read.
func (c *idleConn) touch() {
	c.Conn.SetReadDeadline(time.Now().Add(c.idle))
}

// hold suspends the idle timeout until the returned func is called.
func (c *idleConn) hold() (release func()) {
	c.holds.Add(1)
	c.Conn.SetReadDeadline(time.Time{})
	var once sync.Once
	return func() {
		once.Do(func() {
			if c.holds.Add(-1) == 0 {
				c.touch()
			}
		})
	}
}

// onLogin reports a login attempt to the OnLogin hook.
func (s *Server) onLogin(p *partners.Partner, ok bool) {
	if s.cfg.OnLogin == nil {
		return
	}
	id := ""
	if p != nil {
		id = p.ID
	}
	s.cfg.OnLogin(id, ok)
}
