package outbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func newDir(t *testing.T) *Dir {
	t.Helper()
	d, err := New(filepath.Join(t.TempDir(), "outbox"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPutListOpenRemove(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	if files, err := d.List(ctx, "acme"); err != nil || len(files) != 0 {
		t.Fatalf("empty outbox: %v %v", files, err)
	}
	if err := d.Put(ctx, "acme", "997_000000002.x12", strings.NewReader("ISA*second~")); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, "acme", "997_000000001.x12", strings.NewReader("ISA*first~")); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, "bolt", "999_000000001.x12", strings.NewReader("bolt")); err != nil {
		t.Fatal(err)
	}
	files, err := d.List(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Name != "997_000000001.x12" || files[1].Name != "997_000000002.x12" ||
		files[0].Size != int64(len("ISA*first~")) || files[0].ModTime.IsZero() {
		t.Fatalf("list: %+v", files)
	}
	rc, err := d.Open(ctx, "acme", "997_000000001.x12")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "ISA*first~" {
		t.Fatalf("content %q", b)
	}
	if _, ok := rc.(io.ReaderAt); !ok {
		t.Error("Open should return an io.ReaderAt")
	}
	if err := d.Remove(ctx, "acme", "997_000000001.x12"); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(ctx, "acme", "997_000000001.x12"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second remove: %v", err)
	}
	if _, err := d.Open(ctx, "acme", "997_000000001.x12"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open removed: %v", err)
	}
	files, _ = d.List(ctx, "acme")
	if len(files) != 1 {
		t.Fatalf("after remove: %+v", files)
	}
	// Partners are separate.
	if files, _ := d.List(ctx, "bolt"); len(files) != 1 || files[0].Name != "999_000000001.x12" {
		t.Fatalf("bolt: %+v", files)
	}
	if _, err := d.Open(ctx, "bolt", "997_000000002.x12"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("bolt sees acme's file: %v", err)
	}
}

func TestPutExisting(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	if err := d.Put(ctx, "acme", "a.x12", strings.NewReader("one")); err != nil {
		t.Fatal(err)
	}
	err := d.Put(ctx, "acme", "a.x12", strings.NewReader("two"))
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("want ErrExist, got %v", err)
	}
	rc, _ := d.Open(ctx, "acme", "a.x12")
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "one" {
		t.Fatalf("overwritten: %q", b)
	}
	assertNoTemp(t, d, "acme")
}

func TestPutConcurrentSameName(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.Put(ctx, "acme", "same.x12", bytes.NewReader(bytes.Repeat([]byte{byte('a' + i)}, 1<<16)))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d puts succeeded, want 1", ok)
	}
	assertNoTemp(t, d, "acme")
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func TestPutFailingReaderLeavesNothing(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	err := d.Put(ctx, "acme", "a.x12", &failingReader{n: 100})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("want reader error, got %v", err)
	}
	if files, _ := d.List(ctx, "acme"); len(files) != 0 {
		t.Fatalf("partial file listed: %+v", files)
	}
	assertNoTemp(t, d, "acme")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Put(cctx, "acme", "b.x12", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled put: %v", err)
	}
}

func TestInvalidNames(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	if err := d.Put(ctx, "acme", "ok.x12", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", ".", "..", ".hidden", "../ok.x12", "a/b", `a\b`, "x\x00y", "x\ny", strings.Repeat("a", 256), "\xff"} {
		if err := ValidName(name); err == nil {
			t.Errorf("ValidName(%q) = nil", name)
		}
		if err := d.Put(ctx, "acme", name, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) succeeded", name)
		}
		if _, err := d.Open(ctx, "acme", name); err == nil {
			t.Errorf("Open(%q) succeeded", name)
		}
		if err := d.Remove(ctx, "acme", name); err == nil {
			t.Errorf("Remove(%q) succeeded", name)
		}
	}
	for _, partner := range []string{"", "..", "../acme", "ACME", "a/b", "."} {
		if _, err := d.List(ctx, partner); err == nil {
			t.Errorf("List(partner %q) succeeded", partner)
		}
		if _, err := d.Open(ctx, partner, "ok.x12"); err == nil {
			t.Errorf("Open(partner %q) succeeded", partner)
		}
	}
	for _, name := range []string{"997_000000001.x12", "ACK file (1).txt", "a..b", "ünïcode.csv"} {
		if err := ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v", name, err)
		}
	}
}

func TestListSkipsForeignEntries(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	if err := d.Put(ctx, "acme", "real.x12", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(d.Root(), "acme")
	os.WriteFile(filepath.Join(dir, ".tmp-leftover"), []byte("partial"), 0o600)
	os.Mkdir(filepath.Join(dir, "subdir"), 0o750)
	os.Symlink("/etc/passwd", filepath.Join(dir, "passwd"))
	files, err := d.List(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Name != "real.x12" {
		t.Fatalf("list: %+v", files)
	}
	if _, err := d.Open(ctx, "acme", "passwd"); err == nil {
		t.Fatal("opened a symlink")
	}
	if _, err := d.Open(ctx, "acme", "subdir"); err == nil {
		t.Fatal("opened a directory")
	}
}

func assertNoTemp(t *testing.T, d *Dir, partner string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(d.Root(), partner))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

// Link makes a stored file visible in the outbox without copying it; an
// existing name is never replaced, and picking the file up removes only the
// outbox's name for it.
func TestLink(t *testing.T) {
	ctx := context.Background()
	d := newDir(t)
	src := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(src, []byte("ISA*ack~"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := d.Link(ctx, "acme", "999_000000007.x12", src); err != nil {
		t.Fatal(err)
	}
	files, err := d.List(ctx, "acme")
	if err != nil || len(files) != 1 || files[0].Name != "999_000000007.x12" || files[0].Size != 8 {
		t.Fatalf("List: %+v %v", files, err)
	}
	a, _ := os.Stat(src)
	b, _ := os.Stat(filepath.Join(d.Root(), "acme", "999_000000007.x12"))
	if !os.SameFile(a, b) {
		t.Error("the outbox file is a copy")
	}
	other := filepath.Join(t.TempDir(), "other")
	os.WriteFile(other, []byte("ISA*other~"), 0o444)
	if err := d.Link(ctx, "acme", "999_000000007.x12", other); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("linking over an existing name: %v", err)
	}
	if err := d.Link(ctx, "acme", "../escape.x12", src); err == nil {
		t.Fatal("a name with a path separator was linked")
	}
	if err := d.Remove(ctx, "acme", "999_000000007.x12"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(src); err != nil || string(b) != "ISA*ack~" {
		t.Fatalf("the source after pick-up: %q %v", b, err)
	}
	assertNoTemp(t, d, "acme")
}
