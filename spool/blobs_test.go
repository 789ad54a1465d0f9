package spool

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncLog records the fsyncs a Local performs.
type syncLog struct {
	mu    sync.Mutex
	files int
	dirs  []string
}

func newLocal(t *testing.T) (*Local, *syncLog) {
	t.Helper()
	l, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := &syncLog{}
	realFile, realDir := l.syncFile, l.syncDir
	l.syncFile = func(f *os.File) error {
		log.mu.Lock()
		log.files++
		log.mu.Unlock()
		return realFile(f)
	}
	l.syncDir = func(d string) error {
		log.mu.Lock()
		log.dirs = append(log.dirs, d)
		log.mu.Unlock()
		return realDir(d)
	}
	return l, log
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func tmpEntries(t *testing.T, l *Local) []string {
	t.Helper()
	es, err := os.ReadDir(l.tmp)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestLocalLayoutAndSyncs(t *testing.T) {
	l, log := newLocal(t)
	ref, err := l.Put(t.Context(), strings.NewReader("ISA*00*~"))
	if err != nil {
		t.Fatal(err)
	}
	h := sum("ISA*00*~")
	want := filepath.Join(l.Dir(), h[:2], h)
	fi, err := os.Stat(want)
	if err != nil {
		t.Fatalf("blob not at %s: %v", want, err)
	}
	if fi.Mode().Perm() != 0o444 || fi.Size() != ref.Size {
		t.Errorf("mode %v size %d", fi.Mode(), fi.Size())
	}
	// The file, and its shard directory after the rename (the 256 shard
	// directories are made by NewLocal, not per Put).
	wantDirs := []string{filepath.Dir(want)}
	if log.files != 1 || !slices.Equal(log.dirs, wantDirs) {
		t.Errorf("fsyncs: %d files, dirs %v; want 1 file, dirs %v", log.files, log.dirs, wantDirs)
	}
	if names := tmpEntries(t, l); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
	// The same content again: nothing written under the final name, but the
	// directory is synced (the first Put may still be in flight).
	log.dirs, log.files = nil, 0
	before := fi.ModTime()
	time.Sleep(10 * time.Millisecond)
	if _, err := l.Put(t.Context(), strings.NewReader("ISA*00*~")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(want); !fi.ModTime().Equal(before) {
		t.Error("the stored blob was rewritten")
	}
	if !slices.Equal(log.dirs, []string{filepath.Dir(want)}) {
		t.Errorf("second put synced %v", log.dirs)
	}
	if names := tmpEntries(t, l); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
}

// Blobs stored under the earlier two-level layout are still found, and not
// stored again.
func TestLocalLegacyLayout(t *testing.T) {
	l, _ := newLocal(t)
	content := "ISA*00*legacy~"
	h := sum(content)
	legacy := filepath.Join(l.Dir(), h[:2], h[2:4], h)
	os.MkdirAll(filepath.Dir(legacy), 0o755)
	if err := os.WriteFile(legacy, []byte(content), 0o444); err != nil {
		t.Fatal(err)
	}
	ref, err := l.Stat(t.Context(), h)
	if err != nil || ref.Size != int64(len(content)) {
		t.Fatalf("Stat of a legacy blob: %v %v", ref, err)
	}
	r, err := l.Open(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(b) != content {
		t.Fatalf("Open of a legacy blob: %q %v", b, err)
	}
	if _, err := l.Put(t.Context(), strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.Dir(), h[:2], h)); !os.IsNotExist(err) {
		t.Errorf("a blob stored under the legacy layout was stored again: %v", err)
	}
}

// A crash before the rename (here: the upload fails mid-stream, or the fsync
// fails) leaves nothing under a final name and no temporary file.
func TestLocalFailureBeforeRename(t *testing.T) {
	l, log := newLocal(t)
	content := strings.Repeat("x", 100_000)
	_, err := l.Put(t.Context(), io.MultiReader(strings.NewReader(content[:50_000]), errReader{errors.New("connection reset")}))
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("Put: %v", err)
	}
	if log.files != 0 {
		t.Error("fsync'd a failed upload")
	}
	assertEmpty(t, l)

	l.syncFile = func(*os.File) error { return errors.New("EIO") }
	if _, err := l.Put(t.Context(), strings.NewReader(content)); err == nil || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("Put with failing fsync: %v", err)
	}
	assertEmpty(t, l)
}

func assertEmpty(t *testing.T, l *Local) {
	t.Helper()
	var found []string
	filepath.WalkDir(l.Dir(), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			found = append(found, p)
		}
		return err
	})
	if len(found) != 0 {
		t.Errorf("files left behind: %v", found)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// While a Put streams, its bytes live only under tmp/.
func TestLocalTempNeverFinal(t *testing.T) {
	l, _ := newLocal(t)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := l.Put(t.Context(), pr)
		done <- err
	}()
	if _, err := pw.Write([]byte(strings.Repeat("a", 64<<10))); err != nil {
		t.Fatal(err)
	}
	var final []string
	filepath.WalkDir(l.Dir(), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Dir(p) != l.tmp {
			final = append(final, p)
		}
		return err
	})
	if len(final) != 0 || len(tmpEntries(t, l)) != 1 {
		t.Errorf("mid-stream: final files %v, tmp %v", final, tmpEntries(t, l))
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(tmpEntries(t, l)) != 0 {
		t.Error("temporary file left")
	}
}

func TestLocalDirSyncFailureIsReported(t *testing.T) {
	l, _ := newLocal(t)
	l.syncDir = func(string) error { return errors.New("EIO") }
	if _, err := l.Put(t.Context(), strings.NewReader("x")); err == nil {
		t.Error("Put succeeded although the directory fsync failed")
	}
}

func TestLocalDetectsCorruption(t *testing.T) {
	l, _ := newLocal(t)
	ref, err := l.Put(t.Context(), strings.NewReader("hello world"))
	if err != nil {
		t.Fatal(err)
	}
	p := l.path(ref.SHA256)
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, []byte("hello wOrld"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := l.Open(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("read of flipped bytes: %v, want ErrCorrupt", err)
	}
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Open(t.Context(), ref); !errors.Is(err, ErrCorrupt) {
		t.Errorf("open of a truncated blob: %v, want ErrCorrupt", err)
	}
}

func TestLocalRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewLocal(dir); err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(dir, "tmp", "put-old"), filepath.Join(dir, "tmp", "put-new")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	os.Chtimes(stale, old, old)
	if _, err := NewLocal(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp (maybe another process's Put) removed: %v", err)
	}
}

// zeros yields n zero bytes without holding them.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	clear(p[:k])
	z.n -= k
	return int(k), nil
}

func TestLocalPutStreams(t *testing.T) {
	l, _ := newLocal(t)
	const size = 64 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ref, err := l.Put(t.Context(), &zeros{n: size})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Size != size {
		t.Errorf("size %d", ref.Size)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/8 {
		t.Errorf("Put of %d bytes allocated %d bytes: not streaming", size, alloc)
	}
}

// An upload already on disk becomes a blob by a hard link: the blob is the
// same file, made read-only, fsync'd once, its shard directory synced, and
// no temporary file is made.
func TestLocalAdoptLinks(t *testing.T) {
	l, log := newLocal(t)
	content := "ISA*00*adopted~"
	up := filepath.Join(t.TempDir(), ".upload-1")
	if err := os.WriteFile(up, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(up, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(5, io.SeekStart) // Adopt reads from the start whatever the offset
	ref, err := l.Adopt(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	if ref.SHA256 != sum(content) || ref.Size != int64(len(content)) {
		t.Fatalf("ref %v", ref)
	}
	p, err := l.Path(ref)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(up)
	b, _ := os.Stat(p)
	if !os.SameFile(a, b) {
		t.Error("the blob is a copy, not the uploaded file")
	}
	if b.Mode().Perm() != 0o444 {
		t.Errorf("blob mode %v", b.Mode())
	}
	if log.files != 1 || !slices.Equal(log.dirs, []string{filepath.Dir(p)}) {
		t.Errorf("fsyncs: %d files, dirs %v", log.files, log.dirs)
	}
	if names := tmpEntries(t, l); len(names) != 0 {
		t.Errorf("temporary files made: %v", names)
	}
	// The uploader removes its name; the blob stays whole.
	f.Close()
	os.Remove(up)
	r, err := l.Open(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(got) != content {
		t.Fatalf("read back %q %v", got, err)
	}
}

// Adopting content that is stored already links nothing and writes nothing.
func TestLocalAdoptStored(t *testing.T) {
	l, log := newLocal(t)
	content := "ISA*00*twice~"
	ref, err := l.Put(t.Context(), strings.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	up := filepath.Join(t.TempDir(), ".upload-2")
	os.WriteFile(up, []byte(content), 0o600)
	f, _ := os.Open(up)
	defer f.Close()
	log.files, log.dirs = 0, nil
	got, err := l.Adopt(t.Context(), f)
	if err != nil || got != ref {
		t.Fatalf("Adopt: %v %v, want %v", got, err, ref)
	}
	a, _ := os.Stat(up)
	p, _ := l.Path(ref)
	b, _ := os.Stat(p)
	if os.SameFile(a, b) || log.files != 0 {
		t.Errorf("a stored blob was replaced (same file %v, %d file fsyncs)", os.SameFile(a, b), log.files)
	}
	if a.Mode().Perm() != 0o600 {
		t.Errorf("the caller's file was changed to %v although it was not adopted", a.Mode())
	}
}

// Where the file cannot be linked (another file system, no hard links;
// here: its name is gone), Adopt copies it as Put does.
func TestLocalAdoptFallsBackToCopy(t *testing.T) {
	l, _ := newLocal(t)
	content := "ISA*00*copied~"
	up := filepath.Join(t.TempDir(), ".upload-3")
	os.WriteFile(up, []byte(content), 0o600)
	f, err := os.Open(up)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	os.Remove(up) // the open file has no name left to link
	ref, err := l.Adopt(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Open(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(got) != content || ref.SHA256 != sum(content) {
		t.Fatalf("copied blob %q %v %v", got, ref, err)
	}
}

// PutBytes of content stored already creates no temporary file (and so
// removes none); new content is stored as Put stores it.
func TestLocalPutBytes(t *testing.T) {
	l, log := newLocal(t)
	ref, err := PutBytes(t.Context(), l, []byte("{\"status\":\"ok\"}"))
	if err != nil || ref.SHA256 != sum("{\"status\":\"ok\"}") {
		t.Fatalf("PutBytes: %v %v", ref, err)
	}
	if log.files != 1 {
		t.Errorf("%d file fsyncs for new content, want 1", log.files)
	}
	tmp, err := os.Open(l.tmp)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := tmp.Stat()
	tmp.Close()
	time.Sleep(10 * time.Millisecond)
	log.files = 0
	again, err := PutBytes(t.Context(), l, []byte("{\"status\":\"ok\"}"))
	if err != nil || again != ref {
		t.Fatalf("second PutBytes: %v %v", again, err)
	}
	after, _ := os.Stat(l.tmp)
	if log.files != 0 || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("stored content written again: %d file fsyncs, tmp dir modified %v", log.files, !after.ModTime().Equal(before.ModTime()))
	}
}

func TestLocalPath(t *testing.T) {
	l, _ := newLocal(t)
	ref, _ := l.Put(t.Context(), strings.NewReader("abc"))
	p, err := l.Path(ref)
	if err != nil || p != filepath.Join(l.Dir(), ref.SHA256[:2], ref.SHA256) {
		t.Fatalf("Path: %q %v", p, err)
	}
	if _, err := l.Path(BlobRef{SHA256: sum("absent"), Size: 6}); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent blob: %v", err)
	}
	if _, err := l.Path(BlobRef{SHA256: ref.SHA256, Size: 4}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("wrong size: %v", err)
	}
}
