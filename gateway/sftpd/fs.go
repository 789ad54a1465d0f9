package sftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edigw/edigw/gateway/outbox"
	"github.com/edigw/edigw/partners"
	"github.com/pkg/sftp"
)

const (
	inboxDir     = "inbox"
	outboxDir    = "outbox"
	uploadPrefix = ".upload-"
	maxRecent    = 1000
)

var (
	errPerm     = sftp.ErrSSHFxPermissionDenied
	errNotExist = os.ErrNotExist
)

// session is one SFTP subsystem of a connection: the partner's virtual
// file system.
type session struct {
	c       *conn
	partner *partners.Partner
	user    string

	mu      sync.Mutex
	open    map[string]int      // inbox names being uploaded
	done    map[string]struct{} // inbox names uploaded in this session
	doneSeq []string
}

func newSession(c *conn) *session {
	return &session{c: c, partner: c.partner, user: c.user.User, open: map[string]int{}, done: map[string]struct{}{}}
}

func (s *session) handlers() sftp.Handlers {
	return sftp.Handlers{FileGet: s, FilePut: s, FileCmd: s, FileList: s}
}

func (s *session) ctx() context.Context { return s.c.srv.ctx }

// ---- virtual paths ----

type kind int

const (
	kNone kind = iota
	kRoot
	kInbox
	kOutbox
	kInboxFile
	kOutboxFile
)

// resolve maps a client path onto the virtual tree. The path is cleaned as
// an absolute path first, so ".." can never climb above "/":
// "/inbox/../../etc/passwd" is "/etc/passwd", which is kNone.
func resolve(p string) (kind, string) {
	p = path.Clean("/" + p)
	switch p {
	case "/":
		return kRoot, ""
	case "/" + inboxDir:
		return kInbox, ""
	case "/" + outboxDir:
		return kOutbox, ""
	}
	dir, name := path.Split(p)
	if outbox.ValidName(name) != nil {
		return kNone, ""
	}
	switch dir {
	case "/" + inboxDir + "/":
		return kInboxFile, name
	case "/" + outboxDir + "/":
		return kOutboxFile, name
	}
	return kNone, ""
}

func (s *session) refuse(op, p string) error {
	s.c.log.Info("sftp refused", "op", op, "path", sanitize(p))
	return errPerm
}

// ---- FileLister ----

// RealPath cleans a path against the virtual root (sftp.RealPathFileLister).
func (s *session) RealPath(p string) (string, error) {
	return path.Clean("/" + p), nil
}

// Readlink: there are no links (sftp.ReadlinkFileLister).
func (s *session) Readlink(p string) (string, error) {
	return "", s.refuse("readlink", p)
}

// Lstat is Stat: there are no links (sftp.LstatFileLister).
func (s *session) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	return s.stat(r.Filepath)
}

func (s *session) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	switch r.Method {
	case "Stat", "Lstat":
		return s.stat(r.Filepath)
	case "List":
	default:
		return nil, s.refuse(r.Method, r.Filepath)
	}
	k, _ := resolve(r.Filepath)
	now := time.Now()
	switch k {
	case kRoot:
		return listerAt{dirInfo(inboxDir, now), dirInfo(outboxDir, now)}, nil
	case kInbox:
		return listerAt{}, nil // uploads go to the spool; nothing stays here
	case kOutbox:
		files, err := s.outboxFiles()
		if err != nil {
			return nil, err
		}
		l := make(listerAt, len(files))
		for i, f := range files {
			l[i] = fileInfo{name: f.Name, size: f.Size, mode: 0o444, mod: f.ModTime}
		}
		return l, nil
	}
	return nil, s.refuse("list", r.Filepath)
}

func (s *session) stat(p string) (sftp.ListerAt, error) {
	k, name := resolve(p)
	now := time.Now()
	switch k {
	case kRoot:
		return listerAt{dirInfo("/", now)}, nil
	case kInbox:
		return listerAt{dirInfo(inboxDir, now)}, nil
	case kOutbox:
		return listerAt{dirInfo(outboxDir, now)}, nil
	case kOutboxFile:
		files, err := s.outboxFiles()
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if f.Name == name {
				return listerAt{fileInfo{name: f.Name, size: f.Size, mode: 0o444, mod: f.ModTime}}, nil
			}
		}
	}
	return nil, errNotExist
}

func (s *session) outboxFiles() ([]outbox.File, error) {
	if s.c.srv.cfg.Outbox == nil {
		return nil, nil
	}
	files, err := s.c.srv.cfg.Outbox.List(s.ctx(), s.partner.ID)
	if err != nil {
		s.c.log.Error("sftp outbox list", "err", err)
		return nil, sftp.ErrSSHFxFailure
	}
	return files, nil
}

// ---- FileReader: downloads from outbox/ ----

func (s *session) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	k, name := resolve(r.Filepath)
	if k != kOutboxFile {
		return nil, s.refuse("read", r.Filepath)
	}
	ob := s.c.srv.cfg.Outbox
	if ob == nil {
		return nil, errNotExist
	}
	if err := s.c.beginTransfer(); err != nil {
		return nil, err
	}
	rc, err := ob.Open(s.ctx(), s.partner.ID, name)
	if err != nil {
		s.c.endTransfer()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errNotExist
		}
		s.c.log.Error("sftp outbox open", "file", name, "err", err)
		return nil, sftp.ErrSSHFxFailure
	}
	ra, ok := rc.(io.ReaderAt)
	if !ok {
		// Requests for different offsets arrive out of order: serve them
		// from a temporary copy.
		tmp, err := os.CreateTemp(s.c.srv.cfg.TempDir, uploadPrefix+"dl-*")
		if err == nil {
			os.Remove(tmp.Name())
			_, err = io.Copy(tmp, rc)
		}
		rc.Close()
		if err != nil {
			if tmp != nil {
				tmp.Close()
			}
			s.c.endTransfer()
			s.c.log.Error("sftp outbox copy", "file", name, "err", err)
			return nil, sftp.ErrSSHFxFailure
		}
		ra, rc = tmp, tmp
	}
	return &download{s: s, name: name, ra: ra, c: rc}, nil
}

type download struct {
	s      *session
	name   string
	ra     io.ReaderAt
	c      io.Closer
	bytes  atomic.Int64
	closed atomic.Bool
}

func (d *download) ReadAt(p []byte, off int64) (int, error) {
	n, err := d.ra.ReadAt(p, off)
	d.bytes.Add(int64(n))
	return n, err
}

func (d *download) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	err := d.c.Close()
	d.s.c.endTransfer()
	d.s.c.log.Info("sftp download", "file", d.name, "bytes", d.bytes.Load())
	return err
}

// ---- FileWriter: uploads into inbox/ ----

func (s *session) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	k, name := resolve(r.Filepath)
	if k != kInboxFile {
		return nil, s.refuse("write", r.Filepath)
	}
	if err := s.c.beginTransfer(); err != nil {
		return nil, err
	}
	u := &upload{s: s, name: name, max: s.c.srv.cfg.MaxFileSize, started: time.Now()}
	if s.c.srv.cfg.MemoryUpload <= 0 {
		if err := u.spill(); err != nil {
			s.c.endTransfer()
			s.c.log.Error("sftp upload temp file", "file", name, "err", err)
			return nil, sftp.ErrSSHFxFailure
		}
	}
	s.mu.Lock()
	s.open[name]++
	s.mu.Unlock()
	return u, nil
}

// upload is an inbox file being written: in memory (buf) while it is
// small, then in a temporary file (f). It implements io.WriterAt,
// io.Closer (Close hands the upload to Inbox.Accept) and
// sftp.TransferError (a lost connection discards the file).
type upload struct {
	s       *session
	name    string
	max     int64
	started time.Time

	mu          sync.Mutex
	buf         []byte   // the bytes so far, while f is nil
	f           *os.File // the temporary file, once the upload is too large for buf
	failed      error    // a write failed: the upload cannot be complete
	transferErr error    // the connection was lost with the file open
	closed      bool
}

// spill moves the upload from memory to a temporary file.
func (u *upload) spill() error {
	f, err := os.CreateTemp(u.s.c.srv.cfg.TempDir, uploadPrefix+"*")
	if err != nil {
		return err
	}
	if _, err := f.Write(u.buf); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	u.f, u.buf = f, nil
	return nil
}

func (u *upload) WriteAt(p []byte, off int64) (int, error) {
	u.mu.Lock()
	failed, closed := u.failed, u.closed
	if failed == nil && !closed && u.f == nil && off >= 0 {
		// Writes may come out of order (the client pipelines them):
		// buf grows to the furthest end written, holes read as zeros as
		// in a file.
		end := off + int64(len(p))
		if end <= int64(u.s.c.srv.cfg.MemoryUpload) && end <= u.max {
			if end > int64(len(u.buf)) {
				u.buf = append(u.buf, make([]byte, end-int64(len(u.buf)))...)
			}
			copy(u.buf[off:], p)
			u.mu.Unlock()
			return len(p), nil
		}
		if err := u.spill(); err != nil {
			u.mu.Unlock()
			u.s.c.log.Error("sftp upload temp file", "file", u.name, "err", err)
			err = errors.New("cannot store the upload")
			u.setFailed(err)
			return 0, err
		}
	}
	u.mu.Unlock()
	switch {
	case closed:
		return 0, os.ErrClosed
	case failed != nil:
		return 0, failed
	case off < 0 || off+int64(len(p)) > u.max:
		err := fmt.Errorf("file too large: the limit is %d bytes", u.max)
		u.setFailed(err)
		return 0, err
	}
	n, err := u.f.WriteAt(p, off)
	if err != nil {
		u.s.c.log.Error("sftp upload write", "file", u.name, "err", err)
		err = errors.New("cannot store the upload")
		u.setFailed(err)
	}
	return n, err
}

func (u *upload) setFailed(err error) {
	u.mu.Lock()
	if u.failed == nil {
		u.failed = err
	}
	u.mu.Unlock()
}

// TransferError is called by the request server when the session ends with
// the file still open: the upload is incomplete and Close must discard it.
func (u *upload) TransferError(err error) {
	u.mu.Lock()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	u.transferErr = err
	u.mu.Unlock()
}

func (u *upload) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.closed = true
	failed, terr := u.failed, u.transferErr
	u.mu.Unlock()

	s := u.s
	defer func() {
		if u.f != nil {
			u.f.Close()
			os.Remove(u.f.Name())
		}
		s.mu.Lock()
		if s.open[u.name]--; s.open[u.name] <= 0 {
			delete(s.open, u.name)
		}
		s.mu.Unlock()
		s.c.endTransfer()
	}()
	log := s.c.log.With("file", sanitize(u.name))
	if terr != nil {
		log.Info("sftp upload discarded", "reason", "connection lost before the file was closed", "err", terr.Error())
		return terr
	}
	if failed != nil {
		log.Info("sftp upload discarded", "reason", failed.Error())
		return failed
	}
	up := Upload{
		PartnerID:  s.partner.ID,
		User:       s.user,
		Name:       u.name,
		Size:       int64(len(u.buf)),
		RemoteAddr: s.c.addr,
		SessionID:  s.c.sessionID,
		Data:       u.buf,
	}
	if u.f != nil {
		st, err := u.f.Stat()
		if err == nil {
			_, err = u.f.Seek(0, io.SeekStart)
		}
		if err != nil {
			log.Error("sftp upload", "err", err)
			return errors.New("cannot store the upload")
		}
		up.Size, up.Data = st.Size(), nil
	} else if up.Data == nil {
		up.Data = []byte{} // an empty file
	}
	release := s.c.ic.hold() // committing can take longer than the idle timeout
	rcpt, err := s.c.srv.cfg.Inbox.Accept(s.ctx(), up, u.f)
	release()
	if err != nil {
		log.Error("sftp upload not accepted", "bytes", up.Size, "err", err)
		// The client sees this text; the cause stays in our log.
		return fmt.Errorf("upload of %s failed: the gateway could not store it (session %s); please send it again", u.name, s.c.sessionID)
	}
	log.Info("sftp upload", "bytes", up.Size, "duration", time.Since(u.started).Round(time.Millisecond).String(),
		"message_id", rcpt.MessageID, "sha256", rcpt.SHA256)
	s.mu.Lock()
	if _, ok := s.done[u.name]; !ok {
		s.done[u.name] = struct{}{}
		s.doneSeq = append(s.doneSeq, u.name)
		if len(s.doneSeq) > maxRecent {
			delete(s.done, s.doneSeq[0])
			s.doneSeq = s.doneSeq[1:]
		}
	}
	s.mu.Unlock()
	return nil
}

// ---- FileCmder ----

func (s *session) Filecmd(r *sftp.Request) error {
	k, name := resolve(r.Filepath)
	switch r.Method {
	case "Remove":
		if k != kOutboxFile {
			return s.refuse("remove", r.Filepath)
		}
		ob := s.c.srv.cfg.Outbox
		if ob == nil {
			return errNotExist
		}
		if err := ob.Remove(s.ctx(), s.partner.ID, name); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return errNotExist
			}
			s.c.log.Error("sftp outbox remove", "file", name, "err", err)
			return sftp.ErrSSHFxFailure
		}
		s.c.log.Info("sftp pickup", "file", name)
		return nil
	case "Setstat":
		// Clients that preserve times and modes (OpenSSH "put -p", WinSCP)
		// set them on the file they upload. That is harmless and ignored;
		// anything else (size, owner, other files) is refused.
		f := r.AttrFlags()
		if k == kInboxFile && !f.Size && !f.UidGid && s.uploading(name) {
			return nil
		}
		return s.refuse("setstat", r.Filepath)
	}
	// Rename, PosixRename, Mkdir, Rmdir, Symlink, Link.
	return s.refuse(r.Method, r.Filepath)
}

// uploading reports whether name is being, or was, uploaded in this session.
func (s *session) uploading(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, done := s.done[name]
	return s.open[name] > 0 || done
}

// ---- file infos ----

type fileInfo struct {
	name string
	size int64
	mode fs.FileMode
	mod  time.Time
}

func dirInfo(name string, t time.Time) fileInfo {
	return fileInfo{name: name, mode: fs.ModeDir | 0o755, mod: t}
}

func (f fileInfo) Name() string       { return f.name }
func (f fileInfo) Size() int64        { return f.size }
func (f fileInfo) Mode() fs.FileMode  { return f.mode }
func (f fileInfo) ModTime() time.Time { return f.mod }
func (f fileInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fileInfo) Sys() any           { return nil }

type listerAt []os.FileInfo

func (l listerAt) ListAt(dst []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[off:])
	if n < len(dst) {
		return n, io.EOF
	}
	return n, nil
}
