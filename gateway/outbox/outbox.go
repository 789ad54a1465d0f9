// Package outbox keeps, on local disk, the files a partner picks up from our
// SFTP listener: acknowledgements (997/999/TA1) and outbound documents.
//
// Each partner has one directory, <root>/<partner>/, holding plain files.
// Put writes a file under a temporary name in the same directory, makes it
// durable and only then links it into place, so a partner never sees a
// half-written file, even after a power loss; then it makes the name
// durable before it returns, so a crash never loses an acknowledged one.
// Both syncs are durable.SyncFS, shared with every other writer of the
// file system at the time. Remove is how a partner's pick-up is recorded.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"github.com/edigw/edigw/internal/durable"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// File describes one file waiting in a partner's outbox.
type File struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Dir is a set of per-partner outboxes under one root directory. It is safe
// for concurrent use (the file system does the locking).
type Dir struct {
	root string
}

// tmpPrefix starts the names of files being written; names starting with a
// dot are never valid outbox names, so they are never listed or served.
const tmpPrefix = ".tmp-"

// New returns the outboxes under root, creating root if needed.
func New(root string) (*Dir, error) {
	if root == "" {
		return nil, errors.New("outbox: no directory configured")
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return &Dir{root: abs}, nil
}

// Root returns the root directory.
func (d *Dir) Root() string { return d.root }

// ValidName reports why name cannot be a file name in an outbox (or an
// inbox upload), or nil: it must be a single path element of at most 255
// bytes of valid UTF-8, not start with a dot (which also excludes "." and
// ".."), and contain no slash, backslash or control character.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("empty file name")
	case len(name) > 255:
		return errors.New("file name longer than 255 bytes")
	case name[0] == '.':
		return fmt.Errorf("file name %q starts with a dot", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("file name %q contains a path separator", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("file name %q is not valid UTF-8", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("file name %q contains a control character", name)
		}
	}
	return nil
}

// validPartner checks a partner id the way the partners package defines it
// ([a-z0-9-]+), so that it is always a safe single directory name.
func validPartner(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("invalid partner id %q", id)
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("invalid partner id %q", id)
		}
	}
	return nil
}

func (d *Dir) partnerDir(partner string) (string, error) {
	if err := validPartner(partner); err != nil {
		return "", fmt.Errorf("outbox: %w", err)
	}
	return filepath.Join(d.root, partner), nil
}

func (d *Dir) path(partner, name string) (string, error) {
	dir, err := d.partnerDir(partner)
	if err != nil {
		return "", err
	}
	if err := ValidName(name); err != nil {
		return "", fmt.Errorf("outbox: partner %s: %w", partner, err)
	}
	return filepath.Join(dir, name), nil
}

// target validates partner and name and returns the file's path and its
// (existing) directory.
func (d *Dir) target(ctx context.Context, partner, name string) (final, dir string, err error) {
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	if final, err = d.path(partner, name); err != nil {
		return "", "", err
	}
	dir = filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", "", fmt.Errorf("outbox: partner %s: %w", partner, err)
	}
	return final, dir, nil
}

// link makes final a name of src. A hard link fails if the name exists,
// where a rename would silently replace it.
func link(src, final, partner, name string) error {
	err := os.Link(src, final)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("outbox: partner %s: %s: %w", partner, name, fs.ErrExist)
	}
	return fmt.Errorf("outbox: partner %s: %w", partner, err)
}

// Put stores the content of r as name in the partner's outbox. It returns
// only once the file and its directory entry are durable (a sync of the
// file system before the link and one after, each shared with concurrent
// writers, instead of an fsync of the file and one of the directory). A name that
// already exists is an error wrapping fs.ErrExist (names carry control
// numbers, so a clash is a bug upstream, never something to overwrite).
func (d *Dir) Put(ctx context.Context, partner, name string, r io.Reader) (err error) {
	final, dir, err := d.target(ctx, partner, name)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(final); err == nil {
		return fmt.Errorf("outbox: partner %s: %s: %w", partner, name, fs.ErrExist)
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("outbox: partner %s: %w", partner, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if tmp != "" {
			os.Remove(tmp) // the link failed: the temporary file is all there is
		}
	}()
	if err := f.Chmod(0o640); err != nil {
		return fmt.Errorf("outbox: partner %s: %w", partner, err)
	}
	if _, err := durable.Copy(ctx, f, r); err != nil {
		return fmt.Errorf("outbox: partner %s: write %s: %w", partner, name, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("outbox: partner %s: close %s: %w", partner, name, err)
	}
	// The content is durable before the name appears: a name linked first
	// could come back empty after a power loss, and the retry would take it
	// for its own earlier run's file.
	if err := durable.SyncFS(dir); err != nil {
		return fmt.Errorf("outbox: partner %s: %w", partner, err)
	}
	// On failure the temporary name is removed by the deferred call.
	if err := link(tmp, final, partner, name); err != nil {
		return err
	}
	err = os.Remove(tmp) // the extra name only
	tmp = ""
	if err != nil {
		return fmt.Errorf("outbox: partner %s: %w", partner, err)
	}
	if err := durable.SyncFS(dir); err != nil {
		return fmt.Errorf("outbox: partner %s: %w", partner, err)
	}
	return nil
}

// Link puts the file src into the partner's outbox as name by a hard link,
// where Put would copy it: src must already be durable and never change
// again (a spool blob), so no file is created. It returns an error wrapping fs.ErrExist if name is there already
// and the link's own error if src cannot be linked (another file system, no
// hard links): the caller then falls back to Put.
func (d *Dir) Link(ctx context.Context, partner, name, src string) error {
	final, dir, err := d.target(ctx, partner, name)
	if err != nil {
		return err
	}
	if err := link(src, final, partner, name); err != nil {
		return err
	}
	// The new name, the partner's directory if it is new, and src's new
	// link count.
	if err := durable.SyncFS(dir); err != nil {
		return fmt.Errorf("outbox: partner %s: %w", partner, err)
	}
	return nil
}

// List returns the files waiting in the partner's outbox, sorted by name.
// An outbox that was never written to is empty.
func (d *Dir) List(ctx context.Context, partner string) ([]File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, err := d.partnerDir(partner)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("outbox: partner %s: %w", partner, err)
	}
	files := make([]File, 0, len(entries))
	for _, e := range entries {
		if ValidName(e.Name()) != nil || !e.Type().IsRegular() {
			continue // temporary files, and anything not put here by Put
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			return nil, fmt.Errorf("outbox: partner %s: %w", partner, err)
		}
		files = append(files, File{Name: e.Name(), Size: info.Size(), ModTime: info.ModTime()})
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return files, nil
}

// Open opens a file of the partner's outbox for reading. The result is an
// *os.File, so it also implements io.ReaderAt and io.Seeker. A missing file
// is an error wrapping fs.ErrNotExist.
func (d *Dir) Open(ctx context.Context, partner, name string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := d.path(partner, name)
	if err != nil {
		return nil, err
	}
	lst, err := os.Lstat(p)
	if err != nil {
		return nil, fmt.Errorf("outbox: partner %s: %s: %w", partner, name, unwrapPath(err))
	}
	if !lst.Mode().IsRegular() {
		return nil, fmt.Errorf("outbox: partner %s: %s is not a regular file", partner, name)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("outbox: partner %s: %s: %w", partner, name, unwrapPath(err))
	}
	// The entry must still be the file checked above (not swapped for a
	// link in between).
	if st, err := f.Stat(); err != nil || !os.SameFile(st, lst) {
		f.Close()
		return nil, fmt.Errorf("outbox: partner %s: %s changed while opening", partner, name)
	}
	return f, nil
}

// Remove deletes a file from the partner's outbox: the partner picked it up.
// A missing file is an error wrapping fs.ErrNotExist.
func (d *Dir) Remove(ctx context.Context, partner, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := d.path(partner, name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("outbox: partner %s: remove %s: %w", partner, name, unwrapPath(err))
	}
	if err := durable.SyncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("outbox: partner %s: fsync directory: %w", partner, err)
	}
	return nil
}

// unwrapPath drops the *fs.PathError wrapper, whose path is the absolute
// file name, so that errors name the partner and file instead.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
