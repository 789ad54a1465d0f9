package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/edigw/edigw/partners"
)

func init() {
	dialers[partners.SchemeFile] = newFile
}

// fileTransport is a local directory (file:///abs/path): a mounted share or
// a folder another program picks files up from.
type fileTransport struct {
	dir string
}

func newFile(_ context.Context, r partners.Remote, o Options) (Transport, error) {
	dir := r.URL.Path
	if dir == "" {
		return nil, errors.New("file: no directory in the URL")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(o.BaseDir, dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("file: %s is not a directory", dir)
	}
	return &fileTransport{dir: dir}, nil
}

func (t *fileTransport) List(ctx context.Context) ([]File, error) {
	ents, err := os.ReadDir(t.dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", t.dir, err)
	}
	var files []File
	for _, e := range ents {
		if !e.Type().IsRegular() || isTempName(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // removed since ReadDir
		} else if err != nil {
			return nil, fmt.Errorf("list %s: %w", t.dir, err)
		}
		files = append(files, File{Name: e.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
	}
	return files, ctx.Err()
}

func (t *fileTransport) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(t.dir, name))
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = errors.New("not a regular file")
		}
		return nil, fmt.Errorf("open %s: %w", f.Name(), err)
	}
	return f, nil
}

// Write writes to a temp file in the folder, syncs it, renames it to name
// and syncs the folder.
func (t *fileTransport) Write(ctx context.Context, name string, r io.Reader) (err error) {
	if err := checkName(name); err != nil {
		return err
	}
	f, err := os.CreateTemp(t.dir, "."+name+".part-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", filepath.Join(t.dir, name), err)
		}
	}()
	if _, err = io.Copy(f, ctxReader{ctx, r}); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = ctx.Err(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(t.dir, name)); err != nil {
		return err
	}
	return syncDir(t.dir)
}

func (t *fileTransport) Remove(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(t.dir, name)); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	return syncDir(t.dir)
}

func (t *fileTransport) Move(ctx context.Context, name, dir string) error {
	if err := checkName(name); err != nil {
		return err
	}
	sub, err := cleanSubdir(dir)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	to := filepath.Join(t.dir, filepath.FromSlash(sub))
	if err := os.MkdirAll(to, 0o755); err != nil {
		return fmt.Errorf("move %s: %w", name, err)
	}
	if err := os.Rename(filepath.Join(t.dir, name), filepath.Join(to, name)); err != nil {
		return fmt.Errorf("move: %w", err)
	}
	if err := syncDir(to); err != nil {
		return err
	}
	return syncDir(t.dir)
}

func (t *fileTransport) Close() error { return nil }

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
