package spool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/edigw/edigw/internal/durable"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// BlobRef addresses stored bytes by their SHA-256 (lowercase hex) and size.
// The zero BlobRef means "no blob".
type BlobRef struct {
	SHA256 string
	Size   int64
}

// IsZero reports whether r is the zero BlobRef.
func (r BlobRef) IsZero() bool { return r == BlobRef{} }

func (r BlobRef) String() string { return fmt.Sprintf("sha256:%s (%d bytes)", r.SHA256, r.Size) }

// Check returns an error unless r is a well-formed reference.
func (r BlobRef) Check() error {
	if !validSHA256(r.SHA256) {
		return fmt.Errorf("%w: blob hash %q is not 64 lowercase hex digits", ErrInvalid, r.SHA256)
	}
	if r.Size < 0 {
		return fmt.Errorf("%w: blob size %d", ErrInvalid, r.Size)
	}
	return nil
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Blobs stores immutable bytes by content. [Local] keeps them in a directory;
// an S3 implementation serves several nodes.
type Blobs interface {
	// Put stores everything r yields and returns its address. It streams (the
	// content is never held in memory whole) and returns only once the bytes
	// are durable; storing the same content twice stores it once. If r fails,
	// nothing is stored.
	Put(ctx context.Context, r io.Reader) (BlobRef, error)
	// Open returns the bytes at ref. A read that reaches the end checks the
	// hash and fails with ErrCorrupt on a mismatch. ErrNotFound if absent.
	Open(ctx context.Context, ref BlobRef) (io.ReadCloser, error)
	// Stat returns the reference of the blob with this hash, or ErrNotFound.
	Stat(ctx context.Context, sha256 string) (BlobRef, error)
}

// Local is a [Blobs] store in a local directory: <dir>/ab/<sha256>, where ab
// is the hash's first byte (256 directories, made once by NewLocal: creating
// a directory per blob cost a mkdir and a directory fsync on every Put).
// Blobs stored under the earlier two-level layout (<dir>/ab/cd/<sha256>) are
// still found. A Put streams into <dir>/tmp (same file system, so the rename
// is atomic) while hashing, fsyncs the file, renames it to its address and
// fsyncs the directory, so a blob is either absent or whole and durable under
// its final name. Blobs are read-only (0444) once stored.
type Local struct {
	dir string
	tmp string

	// Seams for tests: how a file and a directory are made durable.
	syncFile func(*os.File) error
	syncDir  func(dir string) error
}

// staleTemp is how old a leftover temporary file (from a crash mid-Put) must
// be before NewLocal removes it; a Put from another process may be running.
const staleTemp = 24 * time.Hour

// NewLocal opens (creating if needed) a blob directory and removes temporary
// files that crashed Puts left behind.
func NewLocal(dir string) (*Local, error) {
	l := &Local{dir: dir, tmp: filepath.Join(dir, "tmp"), syncFile: (*os.File).Sync, syncDir: durable.SyncDir}
	if err := os.MkdirAll(l.tmp, 0o755); err != nil {
		return nil, fmt.Errorf("spool: blob dir: %w", err)
	}
	entries, err := os.ReadDir(l.tmp)
	if err != nil {
		return nil, fmt.Errorf("spool: blob dir: %w", err)
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
			_ = os.Remove(filepath.Join(l.tmp, e.Name()))
		}
	}
	made := false
	for i := range 256 {
		err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("%02x", i)), 0o755)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("spool: blob dir: %w", err)
		}
		made = made || err == nil
	}
	if made {
		if err := l.syncDir(dir); err != nil {
			return nil, fmt.Errorf("spool: blob dir: fsync: %w", err)
		}
	}
	return l, nil
}

// Dir returns the root directory.
func (l *Local) Dir() string { return l.dir }

func (l *Local) path(sum string) string {
	return filepath.Join(l.dir, strings.ToLower(sum[0:2]), sum)
}

// find returns where the blob is: its path, or its path in the earlier
// two-level layout if only that exists.
func (l *Local) find(sum string) string {
	p, _ := l.locate(sum)
	return p
}

// locate is find that also returns the file's size, -1 when it does not
// exist, from the same stat (a new blob's lookup was three stats).
func (l *Local) locate(sum string) (string, int64) {
	p := l.path(sum)
	fi, err := os.Stat(p)
	if err == nil {
		return p, fi.Size()
	}
	if errors.Is(err, fs.ErrNotExist) {
		legacy := filepath.Join(l.dir, sum[0:2], sum[2:4], sum)
		if fi, err := os.Stat(legacy); err == nil {
			return legacy, fi.Size()
		}
	}
	return p, -1
}

// Put implements [Blobs].
func (l *Local) Put(ctx context.Context, r io.Reader) (ref BlobRef, err error) {
	tmp, err := os.CreateTemp(l.tmp, "put-*")
	if err != nil {
		return BlobRef{}, fmt.Errorf("spool: put blob: %w", err)
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()

	h := sha256.New()
	n, err := durable.Copy(ctx, io.MultiWriter(tmp, h), r)
	if err != nil {
		return BlobRef{}, fmt.Errorf("spool: put blob: copy: %w", err)
	}
	ref = BlobRef{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}
	if stored, err := l.stored(ref); stored || err != nil {
		return ref, err
	}
	if err := l.syncFile(tmp); err != nil {
		return BlobRef{}, fmt.Errorf("spool: put blob: fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return BlobRef{}, fmt.Errorf("spool: put blob: close: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return BlobRef{}, fmt.Errorf("spool: put blob %s: %w", ref.SHA256, err)
	}
	final := l.path(ref.SHA256)
	err = os.Rename(tmp.Name(), final)
	if errors.Is(err, fs.ErrNotExist) { // its shard directory was removed since NewLocal
		if err = l.mkdirShard(filepath.Dir(final)); err == nil {
			err = os.Rename(tmp.Name(), final)
		}
	}
	if err != nil {
		return BlobRef{}, fmt.Errorf("spool: put blob %s: %w", ref.SHA256, err)
	}
	renamed = true
	if err := l.syncDir(filepath.Dir(final)); err != nil {
		return BlobRef{}, fmt.Errorf("spool: put blob %s: fsync dir: %w", ref.SHA256, err)
	}
	return ref, nil
}

// stored reports whether ref is in the store already. Its rename may be
// another Put's that has not yet fsync'd the directory, so the directory is
// synced here too before the caller says "durable".
func (l *Local) stored(ref BlobRef) (bool, error) {
	p, size := l.locate(ref.SHA256)
	if size != ref.Size {
		return false, nil
	}
	if err := l.syncDir(filepath.Dir(p)); err != nil {
		return false, fmt.Errorf("spool: put blob %s: fsync dir: %w", ref.SHA256, err)
	}
	return true, nil
}

// PutBytes stores b like Put, but hashes first and creates no file when the
// blob is stored already (an ERP's usual answer, a re-sent file). Besides
// the write it saves, a temporary file made and removed again is costly on
// ext4 without a journal: the allocator skips inodes freed in the last 30
// seconds, one by one, on every later create.
func (l *Local) PutBytes(ctx context.Context, b []byte) (BlobRef, error) {
	h := sha256.Sum256(b)
	ref := BlobRef{SHA256: hex.EncodeToString(h[:]), Size: int64(len(b))}
	if stored, err := l.stored(ref); stored || err != nil {
		return ref, err
	}
	return l.Put(ctx, bytes.NewReader(b))
}

// Adopt stores the contents of f (from its start) by hard-linking f into
// the store instead of copying it: an upload that is already a file on this
// file system becomes a blob without a second file being made, written and
// removed. The caller must not write to f afterwards (it becomes read-only)
// and may remove its own name for it. When f cannot be linked (another file
// system, or no hard links), it is copied as Put does.
func (l *Local) Adopt(ctx context.Context, f *os.File) (BlobRef, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return BlobRef{}, fmt.Errorf("spool: adopt %s: %w", f.Name(), err)
	}
	h := sha256.New()
	n, err := durable.Copy(ctx, h, f)
	if err != nil {
		return BlobRef{}, fmt.Errorf("spool: adopt %s: %w", f.Name(), err)
	}
	ref := BlobRef{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}
	if stored, err := l.stored(ref); stored || err != nil {
		return ref, err
	}
	if err := f.Chmod(0o444); err != nil { // before the fsync, which then covers it
		return BlobRef{}, fmt.Errorf("spool: adopt %s: %w", f.Name(), err)
	}
	if err := l.syncFile(f); err != nil {
		return BlobRef{}, fmt.Errorf("spool: adopt %s: fsync: %w", f.Name(), err)
	}
	final := l.path(ref.SHA256)
	err = os.Link(f.Name(), final)
	if errors.Is(err, fs.ErrNotExist) { // its shard directory was removed since NewLocal
		if err = l.mkdirShard(filepath.Dir(final)); err == nil {
			err = os.Link(f.Name(), final)
		}
	}
	switch {
	case err == nil, errors.Is(err, fs.ErrExist): // fs.ErrExist: a concurrent Put of the same bytes
	default:
		if _, serr := f.Seek(0, io.SeekStart); serr != nil {
			return BlobRef{}, fmt.Errorf("spool: adopt %s: %w", f.Name(), serr)
		}
		got, err := l.Put(ctx, f)
		if err == nil && got != ref {
			err = fmt.Errorf("spool: adopt %s: the file changed while it was stored (%s, then %s)", f.Name(), ref, got)
		}
		return got, err
	}
	if err := l.syncDir(filepath.Dir(final)); err != nil {
		return BlobRef{}, fmt.Errorf("spool: adopt %s: fsync dir: %w", f.Name(), err)
	}
	return ref, nil
}

// Path returns the file holding ref, for a caller that links it elsewhere
// (the directory archive, the outbox) instead of copying it. The file is
// read-only and is never rewritten.
func (l *Local) Path(ref BlobRef) (string, error) {
	if err := ref.Check(); err != nil {
		return "", err
	}
	p, size := l.locate(ref.SHA256)
	switch {
	case size < 0:
		return "", fmt.Errorf("spool: blob %s: %w", ref.SHA256, ErrNotFound)
	case size != ref.Size:
		return "", fmt.Errorf("spool: blob %s: %d bytes stored, %d expected: %w", ref.SHA256, size, ref.Size, ErrCorrupt)
	}
	return p, nil
}

// PutBytes stores b in blobs, by [Local.PutBytes] when blobs has it.
func PutBytes(ctx context.Context, blobs Blobs, b []byte) (BlobRef, error) {
	if p, ok := blobs.(interface {
		PutBytes(context.Context, []byte) (BlobRef, error)
	}); ok {
		return p.PutBytes(ctx, b)
	}
	return blobs.Put(ctx, bytes.NewReader(b))
}

// mkdirShard makes a shard directory again, fsyncing the root so the new
// entry survives a crash.
func (l *Local) mkdirShard(d string) error {
	if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := l.syncDir(l.dir); err != nil {
		return fmt.Errorf("fsync dir: %w", err)
	}
	return nil
}

// Open implements [Blobs].
func (l *Local) Open(ctx context.Context, ref BlobRef) (io.ReadCloser, error) {
	if err := ref.Check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(l.find(ref.SHA256))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("spool: blob %s: %w", ref.SHA256, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open blob: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: open blob: %w", err)
	}
	if fi.Size() != ref.Size {
		f.Close()
		return nil, fmt.Errorf("spool: blob %s: %d bytes stored, %d expected: %w", ref.SHA256, fi.Size(), ref.Size, ErrCorrupt)
	}
	return &verifyReader{f: f, h: sha256.New(), want: ref.SHA256}, nil
}

// Stat implements [Blobs].
func (l *Local) Stat(ctx context.Context, sum string) (BlobRef, error) {
	if !validSHA256(sum) {
		return BlobRef{}, fmt.Errorf("%w: blob hash %q", ErrInvalid, sum)
	}
	if err := ctx.Err(); err != nil {
		return BlobRef{}, err
	}
	fi, err := os.Stat(l.find(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return BlobRef{}, fmt.Errorf("spool: blob %s: %w", sum, ErrNotFound)
	}
	if err != nil {
		return BlobRef{}, fmt.Errorf("spool: stat blob: %w", err)
	}
	return BlobRef{SHA256: sum, Size: fi.Size()}, nil
}

// verifyReader hashes what it reads and fails at the end on a mismatch.
type verifyReader struct {
	f    *os.File
	h    hash.Hash
	want string
}

func (v *verifyReader) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(v.h.Sum(nil)); !strings.EqualFold(got, v.want) {
			return n, fmt.Errorf("spool: blob %s: content hashes to %s: %w", v.want, got, ErrCorrupt)
		}
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.f.Close() }
