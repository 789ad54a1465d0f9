package archive

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/edigw/edigw/internal/durable"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Dir is an archive in a local directory: key "a/b/c" is the file
// <dir>/a/b/c. It is the embedded default of `edigw serve`.
//
// Durability: the body goes to a temp file in the target directory
// (".tmp-*", a name [Key] never produces), is fsynced, then hard-linked to
// its final name (link fails if the name exists, so two concurrent writers
// cannot overwrite each other), and the directory is fsynced. Directories
// created on the way are fsynced into their parents.
//
// Checksum: the hex SHA-256 lives in a sidecar file "<name>.sha256" beside
// the object, in sha256sum(1) format ("<hex>  <name>\n"), so
// `cd dir && sha256sum -c name.sha256` verifies it. A sidecar was chosen
// over an xattr because it survives cp/rsync/tar without flags and works
// on every file system. The sidecar is written after the object; if it is
// missing (crash in between) Stat recomputes the hash and a re-put
// rewrites it. ContentType and Metadata are not kept by Dir.
type Dir struct {
	root string
}

// NewDir returns a directory archive rooted at dir, creating it if needed.
func NewDir(dir string) (*Dir, error) {
	if dir == "" {
		return nil, errors.New("archive dir: empty path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("archive dir %s: %w", dir, err)
	}
	if err := mkdirAllSync(abs); err != nil {
		return nil, fmt.Errorf("archive dir %s: %w", abs, err)
	}
	return &Dir{root: abs}, nil
}

// Root returns the archive's absolute directory.
func (d *Dir) Root() string { return d.root }

// Path returns the file path of key (after validating it).
func (d *Dir) Path(key string) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	if strings.HasSuffix(key, SidecarSuffix) {
		return "", fmt.Errorf("%w: %q: the %s suffix is reserved for checksum sidecars", ErrInvalidKey, key, SidecarSuffix)
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

// Put implements [Archive].
func (d *Dir) Put(ctx context.Context, o Object) error {
	if err := d.put(ctx, o); err != nil {
		return fmt.Errorf("archive dir %s: put %s: %w", d.root, o.Key, err)
	}
	return nil
}

func (d *Dir) put(ctx context.Context, o Object) (err error) {
	final, err := d.Path(o.Key)
	if err != nil {
		return err
	}
	want, err := normSHA256(o.SHA256)
	if err != nil {
		return err
	}
	if o.Body == nil {
		return errors.New("nil body")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(final)
	if err := mkdirAllSync(dir); err != nil {
		return err
	}

	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		os.Remove(tmpName) // the object is linked under its final name, or abandoned
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), durable.Reader(ctx, o.Body))
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if err := verify(o, want, got, n); err != nil {
		return err
	}
	if err := tmp.Chmod(0o640); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	err = tmp.Close()
	tmp = nil
	if err != nil {
		return err
	}

	switch err := os.Link(tmpName, final); {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		have, herr := hashFile(final)
		if herr != nil {
			return herr
		}
		if have != got {
			return fmt.Errorf("%w: stored sha256 %s, new %s", ErrConflict, have, got)
		}
		// Same content: a retry. Make sure the sidecar is there and right.
	default:
		// Hard links unsupported (some FUSE/SMB mounts): check, then rename.
		if _, serr := os.Lstat(final); serr == nil {
			return fmt.Errorf("link: %w", err)
		}
		if rerr := os.Rename(tmpName, final); rerr != nil {
			return fmt.Errorf("rename: %w", rerr)
		}
	}
	if err := writeSidecar(final, got); err != nil {
		return err
	}
	return durable.SyncDir(dir)
}

// Stat returns the size and hex SHA-256 of key (from the sidecar, or
// computed when the sidecar is missing).
func (d *Dir) Stat(ctx context.Context, key string) (size int64, sha string, err error) {
	p, err := d.Path(key)
	if err != nil {
		return 0, "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return 0, "", fmt.Errorf("archive dir %s: stat %s: %w", d.root, key, err)
	}
	sha, err = readSidecar(p)
	if err != nil {
		if sha, err = hashFile(p); err != nil {
			return 0, "", fmt.Errorf("archive dir %s: stat %s: %w", d.root, key, err)
		}
	}
	return fi.Size(), sha, nil
}

// Open opens key for reading.
func (d *Dir) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := d.Path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return nil, fmt.Errorf("archive dir %s: open %s: %w", d.root, key, err)
	}
	return f, nil
}

func writeSidecar(final, sha string) error {
	side := final + SidecarSuffix
	if have, err := readSidecar(final); err == nil && have == sha {
		return nil
	}
	dir := filepath.Dir(final)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	name := f.Name()
	defer os.Remove(name)
	_, err = fmt.Fprintf(f, "%s  %s\n", sha, filepath.Base(final))
	if err == nil {
		err = f.Chmod(0o640)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sidecar: %w", err)
	}
	if err := os.Rename(name, side); err != nil {
		return fmt.Errorf("sidecar: %w", err)
	}
	return nil
}

func readSidecar(final string) (string, error) {
	f, err := os.Open(final + SidecarSuffix)
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, err := bufio.NewReader(io.LimitReader(f, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	hexsum, _, _ := strings.Cut(strings.TrimSpace(line), " ")
	if hexsum == "" {
		return "", errors.New("empty sidecar")
	}
	return normSHA256(hexsum)
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// mkdirAllSync creates dir and missing parents, fsyncing each parent that
// gained an entry, so a new directory survives a power loss.
func mkdirAllSync(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return durable.SyncDir(parent)
}
