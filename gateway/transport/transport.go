// Package transport moves files to and from partners' servers: sftp, ftp/ftps, s3 and local directories, behind one small interface.
package transport

import (
	"context"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/edigw/edigw/partners"
)

// File is a regular file in a remote folder.
type File struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Transport is one connection to a remote folder (the endpoint's path/prefix). Names are plain file names in that folder.
type Transport interface {
	List(ctx context.Context) ([]File, error) // regular files only, sorted by name
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	Write(ctx context.Context, name string, r io.Reader) error // to a temp name in the same folder, then rename (never a partial file under name)
	Remove(ctx context.Context, name string) error
	Move(ctx context.Context, name, dir string) error // into dir (relative to the folder, created if missing), same name
	Close() error
}

// Options tune Dial.
type Options struct {
	BaseDir string        // the partner folder: secret files, known_hosts and CA files are relative to it
	Timeout time.Duration // connect and per-operation timeout (default 30s)
}

// DefaultTimeout is the connect and per-operation timeout when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// dialers maps a URL scheme to its implementation; each implementation file
// registers its schemes in an init function.
var dialers = map[string]func(context.Context, partners.Remote, Options) (Transport, error){}

// Dial connects to r.URL according to its scheme. Host keys are always checked (a wrong host key is an error naming the expected and presented fingerprints). Secrets are resolved through SecretRef.Resolve and never logged.
func Dial(ctx context.Context, r partners.Remote, o Options) (Transport, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	dial, ok := dialers[r.URL.Scheme]
	if !ok {
		known := make([]string, 0, len(dialers))
		for s := range dialers {
			known = append(known, s)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("transport: unsupported scheme %q in %q (supported: %s)",
			r.URL.Scheme, r.URL.String(), strings.Join(known, ", "))
	}
	t, err := dial(ctx, r, o)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", r.URL.String(), err)
	}
	return t, nil
}

// checkName reports whether name is a plain file name: not empty, not "." or
// "..", no slash, backslash or NUL.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("invalid file name %q: want a plain name in the folder", name)
	}
	return nil
}

// cleanSubdir checks a Move destination: a relative, slash-separated path
// that stays inside the folder. It returns the cleaned path.
func cleanSubdir(dir string) (string, error) {
	c := path.Clean(strings.TrimSuffix(dir, "/"))
	if dir == "" || c == "." || path.IsAbs(dir) || c == ".." || strings.HasPrefix(c, "../") ||
		strings.ContainsAny(dir, "\\\x00") {
		return "", fmt.Errorf("invalid directory %q: want a path relative to the folder, inside it", dir)
	}
	return c, nil
}

// isTempName reports whether name is one of the temp names Write uses
// (".NAME.part-RANDOM"); List leaves them out.
func isTempName(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".part-")
}

// ctxReader fails a Read once ctx is done, so an upload stops promptly.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
