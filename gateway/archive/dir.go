package archive

import (
	"bufio"
	"bytes"
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
// Durability: an object with [Object.LinkFrom] is hard-linked from that
// file, which is already durable, so nothing is copied or created. Any
// other body goes to a temp file in the target directory (".tmp-*", a name
// [Key] never produces), which is made durable, then hard-linked to its
// final name. Either way the link fails if the name exists, so two
// concurrent writers cannot overwrite each other (where hard links are
// unsupported, the temp file is renamed instead, after checking the name
// is free). Then the object's checksum line is appended to the directory's
// manifest, and the names, the lines and the directories made on the way
// are made durable before Put or PutAll returns. Both syncs are one
// [durable.SyncFS] for all of a PutAll's objects, shared with every other
// writer of that file system waiting at the same time: an fsync per file
// and per directory was most of the gateway's disk writes.
//
// Checksum: every directory of objects holds a manifest "SHA256SUMS"
// ([ManifestName]) with one line per object in sha256sum(1) format ("<hex>  <name>\n"), so
// `cd <dir> && sha256sum -c SHA256SUMS` verifies every object of a message.
// A file was chosen over an xattr because it survives cp/rsync/tar without
// flags and works on every file system; one manifest per directory rather
// than one sidecar per object because each file create is expensive (tens
// to hundreds of µs of kernel time on ext4), and a message folder holding
// objects linked from the spool then costs a single create. Lines are only
// ever appended, each with one write, so concurrent puts into a directory,
// even from several processes, do not interleave; when a name is listed
// twice the last line wins. The line is written after the object; if it is
// missing (crash in between) Stat recomputes the hash and a re-put appends
// it. Folders written by earlier versions hold a sidecar "<name>.sha256"
// per object instead; Stat still reads those. ContentType and Metadata are
// not kept by Dir.
type Dir struct {
	root string
}

// link is os.Link; tests replace it to simulate a file system without hard
// links.
var link = os.Link

// NewDir returns a directory archive rooted at dir, creating it if needed.
func NewDir(dir string) (*Dir, error) {
	if dir == "" {
		return nil, errors.New("archive dir: empty path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("archive dir %s: %w", dir, err)
	}
	if err := mkdirAll(abs); err == nil {
		err = durable.SyncFS(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("archive dir %s: %w", abs, err)
	}
	return &Dir{root: abs}, nil
}

// Root returns the archive's absolute directory.
func (d *Dir) Root() string { return d.root }

// Path returns the file path of key (after validating it). Besides the
// rules of [ValidKey], the key's last segment must not be the manifest's
// name, end in the legacy sidecar suffix (folders of earlier versions may
// hold sidecars), or contain a line break (it could not be listed in the
// manifest, whose format is one line per object).
func (d *Dir) Path(key string) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	name := key[strings.LastIndexByte(key, '/')+1:]
	switch {
	case strings.HasSuffix(name, SidecarSuffix):
		return "", fmt.Errorf("%w: %q: the %s suffix is reserved for checksum sidecars", ErrInvalidKey, key, SidecarSuffix)
	case name == ManifestName:
		return "", fmt.Errorf("%w: %q: the name %s is reserved for the checksum manifest", ErrInvalidKey, key, ManifestName)
	case strings.ContainsAny(name, "\n\r"):
		return "", fmt.Errorf("%w: %q: a line break in the name cannot be listed in %s", ErrInvalidKey, key, ManifestName)
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

// Put implements [Archive].
func (d *Dir) Put(ctx context.Context, o Object) error {
	return d.PutAll(ctx, []Object{o})
}

// PutAll stores objs as Put would, with one manifest append per directory
// and the syncs shared by all of them: a message's raw file, acks and
// documents go in together. On an error some objects may be stored (each
// whole, as by Put); putting them all again completes the rest.
//
// It works in two steps so that a name in the archive always holds its
// whole content, even after a power loss: the bodies to copy are written
// to temporary files and synced, and only then linked under their names,
// listed in the manifests and synced again. (A file linked before its
// content was durable could come back empty after a crash, and the retry
// would then find "another" object under its name.)
func (d *Dir) PutAll(ctx context.Context, objs []Object) error {
	type entry struct {
		dir  string
		line manifestLine
		copy *pending
	}
	entries := make([]entry, len(objs))
	defer func() {
		for _, e := range entries {
			if e.copy != nil {
				os.Remove(e.copy.tmp) // linked under its name by now, or abandoned
			}
		}
	}()
	copies := 0
	for i, o := range objs {
		dir, line, c, err := d.store(ctx, o)
		if err != nil {
			return fmt.Errorf("archive dir %s: put %s: %w", d.root, o.Key, err)
		}
		entries[i] = entry{dir, line, c}
		if c != nil {
			copies++
		}
	}
	if copies > 0 {
		if err := durable.SyncFS(d.root); err != nil {
			return fmt.Errorf("archive dir %s: %w", d.root, err)
		}
		for i, e := range entries {
			if e.copy == nil {
				continue
			}
			if err := place(*e.copy); err != nil {
				return fmt.Errorf("archive dir %s: put %s: %w", d.root, e.copy.key, err)
			}
			entries[i].line = manifestLine{name: filepath.Base(e.copy.final), sha: e.copy.sha}
		}
	}
	var dirs []string
	lines := map[string][]manifestLine{}
	for _, e := range entries {
		if _, ok := lines[e.dir]; !ok {
			dirs = append(dirs, e.dir)
		}
		lines[e.dir] = append(lines[e.dir], e.line)
	}
	for _, dir := range dirs {
		if err := appendManifest(dir, lines[dir]...); err != nil {
			return fmt.Errorf("archive dir %s: %w", d.root, err)
		}
	}
	if err := durable.SyncFS(d.root); err != nil {
		return fmt.Errorf("archive dir %s: %w", d.root, err)
	}
	return nil
}

// manifestLine is one object's entry in its directory's manifest.
type manifestLine struct{ name, sha string }

// pending is an object's body written to a temporary file beside its final
// name, not yet linked there.
type pending struct {
	key, tmp, final, sha string
}

// store links o to its final name when it is a durable file (LinkFrom) and
// returns its directory and manifest entry; any other body it writes to a
// temporary file and returns as pending, for the caller to sync and place.
func (d *Dir) store(ctx context.Context, o Object) (string, manifestLine, *pending, error) {
	final, err := d.Path(o.Key)
	if err != nil {
		return "", manifestLine{}, nil, err
	}
	want, err := normSHA256(o.SHA256)
	if err != nil {
		return "", manifestLine{}, nil, err
	}
	if o.Body == nil {
		return "", manifestLine{}, nil, errors.New("nil body")
	}
	if o.LinkFrom != "" && want == "" {
		// The linked file is not read, so only the caller can vouch for its hash.
		return "", manifestLine{}, nil, fmt.Errorf("link from %s: no sha256 given", o.LinkFrom)
	}
	if err := ctx.Err(); err != nil {
		return "", manifestLine{}, nil, err
	}
	dir := filepath.Dir(final)
	if err := mkdirAll(dir); err != nil {
		return "", manifestLine{}, nil, err
	}
	if o.LinkFrom != "" {
		linked, err := linkIn(o, final, want)
		if err != nil {
			return "", manifestLine{}, nil, err
		}
		if linked {
			return dir, manifestLine{name: filepath.Base(final), sha: want}, nil, nil
		}
	}
	tmp, sha, err := writeTemp(ctx, o, dir, want)
	if err != nil {
		return "", manifestLine{}, nil, err
	}
	return dir, manifestLine{}, &pending{key: o.Key, tmp: tmp, final: final, sha: sha}, nil
}

// linkIn hard-links o.LinkFrom to final, trusting want as its hash. It
// reports false without an error when the link cannot be made for a reason
// other than an existing name (another file system, no hard links, too
// many links), so the caller copies the body instead. The source is already
// durable: only the directory entry and the source's link count (synced by
// the caller) have anything to persist.
func linkIn(o Object, final, want string) (bool, error) {
	src, err := os.Stat(o.LinkFrom)
	if err != nil {
		return false, fmt.Errorf("link source: %w", err)
	}
	if !src.Mode().IsRegular() {
		return false, fmt.Errorf("link source %s: not a regular file", o.LinkFrom)
	}
	if o.Size >= 0 && src.Size() != o.Size {
		return false, fmt.Errorf("%w: key %s: link source %s has %d bytes, declared size %d", ErrChecksum, o.Key, o.LinkFrom, src.Size(), o.Size)
	}
	switch err := link(o.LinkFrom, final); {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		// A retry (usually the very same inode), or another object.
		if have, serr := os.Stat(final); serr == nil && os.SameFile(src, have) {
			return true, nil
		}
		have, herr := hashFile(final)
		if herr != nil {
			return false, herr
		}
		if have != want {
			return false, fmt.Errorf("%w: stored sha256 %s, new %s", ErrConflict, have, want)
		}
		return true, nil
	default:
		return false, nil
	}
}

// writeTemp writes o.Body to a temporary file in dir (".tmp-*", a name Key
// never produces) and verifies it; it returns the file and the body's hex
// SHA-256. The caller syncs it before placing it.
func writeTemp(ctx context.Context, o Object, dir, want string) (string, string, error) {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	var sha string
	n, err := durable.Copy(ctx, io.MultiWriter(tmp, h), o.Body)
	if err == nil {
		sha = hex.EncodeToString(h.Sum(nil))
		err = verify(o, want, sha, n)
	}
	if err == nil {
		err = tmp.Chmod(0o640)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", "", fmt.Errorf("write: %w", err)
	}
	return tmp.Name(), sha, nil
}

// place links a synced temporary file to its final name (or finds the same
// content there, a retry).
func place(c pending) error {
	switch err := link(c.tmp, c.final); {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		have, herr := hashFile(c.final)
		if herr != nil {
			return herr
		}
		if have != c.sha {
			return fmt.Errorf("%w: stored sha256 %s, new %s", ErrConflict, have, c.sha)
		}
		// Same content: a retry. The caller makes sure it is listed.
	default:
		// Hard links unsupported (some FUSE/SMB mounts): check, then rename.
		if _, serr := os.Lstat(c.final); serr == nil {
			return fmt.Errorf("link: %w", err)
		}
		if rerr := os.Rename(c.tmp, c.final); rerr != nil {
			return fmt.Errorf("rename: %w", rerr)
		}
	}
	return nil
}

// Stat returns the size and hex SHA-256 of key: from the directory's
// manifest, else from a legacy sidecar, else computed (an object whose
// line was lost to a crash).
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
	data, err := os.ReadFile(filepath.Join(filepath.Dir(p), ManifestName))
	if err == nil {
		if sha, ok := manifestLookup(data, filepath.Base(p)); ok {
			return fi.Size(), sha, nil
		}
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

// appendManifest lists each entry with its hex SHA-256 in dir's manifest
// unless the manifest lists it with that hash already (a retried put). The
// caller syncs.
//
// The lines are appended with O_APPEND in one write call: on local Linux
// file systems such a small append is atomic with respect to other
// appenders, so concurrent puts into one directory, even from several
// processes, never interleave their lines. Two concurrent puts of the same
// key may both append the same line, which is harmless.
func appendManifest(dir string, entries ...manifestLine) error {
	p := filepath.Join(dir, ManifestName)
	data, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("manifest: %w", err)
	}
	var add []byte
	for _, e := range entries {
		if have, ok := manifestLookup(data, e.name); ok && have == e.sha {
			continue
		}
		add = append(add, e.sha+"  "+e.name+"\n"...)
	}
	if len(add) == 0 {
		return nil
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		// A line torn by a crash: end it, so it does not swallow these.
		add = append([]byte("\n"), add...)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	_, err = f.Write(add)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

// manifestLookup returns the hash a manifest lists for name. The last line
// for a name wins, since lines are only appended; malformed lines (torn by a
// crash, or edited by hand) are ignored.
func manifestLookup(data []byte, name string) (string, bool) {
	var sha string
	var ok bool
	for line := range bytes.Lines(data) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		// "<64 hex>  <name>", or "<64 hex> *<name>" (sha256sum --binary).
		const n = sha256.Size * 2
		if len(line) < n+3 || line[n] != ' ' || (line[n+1] != ' ' && line[n+1] != '*') {
			continue
		}
		if string(line[n+2:]) != name {
			continue
		}
		if s, err := normSHA256(string(line[:n])); err == nil {
			sha, ok = s, true
		}
	}
	return sha, ok
}

// readSidecar reads the checksum sidecar that earlier versions wrote beside
// each object.
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

// mkdirAll creates dir and missing parents (os.MkdirAll with our modes and
// error for a file in the way); the caller syncs.
func mkdirAll(dir string) error {
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
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}
