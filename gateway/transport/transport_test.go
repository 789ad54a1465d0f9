package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edigw/edigw/partners"
)

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

var errReaderBroke = errors.New("reader broke midway")

// brokenReader yields n bytes of data, then fails.
type brokenReader struct{ r io.Reader }

func newBrokenReader(data []byte) io.Reader {
	return brokenReader{io.MultiReader(bytes.NewReader(data), errorReader{})}
}

func (b brokenReader) Read(p []byte) (int, error) { return b.r.Read(p) }

type errorReader struct{}

func (errorReader) Read([]byte) (int, error) { return 0, errReaderBroke }

func readAll(t *testing.T, tr Transport, name string) []byte {
	t.Helper()
	rc, err := tr.Open(context.Background(), name)
	if err != nil {
		t.Fatalf("Open(%s): %v", name, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, rc); err != nil { // io.WriterTo when the reader has it
		t.Fatalf("read %s: %v", name, err)
	}
	return buf.Bytes()
}

func listNames(t *testing.T, tr Transport) []string {
	t.Helper()
	files, err := tr.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	return names
}

// localEntries lists the folder on disk, dot files included.
func localEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// checkTransportContract runs the behaviour every Transport must have
// against tr, whose folder is the local directory local (empty at start).
func checkTransportContract(t *testing.T, tr Transport, local string) {
	ctx := context.Background()
	if names := listNames(t, tr); len(names) != 0 {
		t.Fatalf("List of an empty folder = %v", names)
	}

	small := []byte("ISA*00*          *00*~\n")
	big := randomBytes(20<<20, 1) // 20 MB
	if err := tr.Write(ctx, "b.edi", bytes.NewReader(small)); err != nil {
		t.Fatalf("Write small: %v", err)
	}
	if err := tr.Write(ctx, "a.csv", bytes.NewReader(big)); err != nil {
		t.Fatalf("Write 20 MB: %v", err)
	}
	// Not listed: directories and our own temp files.
	if err := os.Mkdir(filepath.Join(local, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local, ".x.edi.part-1234"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := tr.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Name != "a.csv" || files[1].Name != "b.edi" {
		t.Fatalf("List = %+v, want a.csv and b.edi, sorted", files)
	}
	if files[0].Size != int64(len(big)) || files[1].Size != int64(len(small)) {
		t.Errorf("List sizes = %d, %d; want %d, %d", files[0].Size, files[1].Size, len(big), len(small))
	}
	if files[0].ModTime.IsZero() {
		t.Error("List: zero ModTime")
	}
	os.Remove(filepath.Join(local, ".x.edi.part-1234"))

	if got := readAll(t, tr, "a.csv"); !bytes.Equal(got, big) {
		t.Fatalf("20 MB round trip: got %d bytes, not equal to the %d written", len(got), len(big))
	}
	if got, _ := os.ReadFile(filepath.Join(local, "a.csv")); !bytes.Equal(got, big) {
		t.Fatal("20 MB file on disk differs from what was written")
	}
	// Plain Read (no WriterTo) too.
	rc, err := tr.Open(ctx, "b.edi")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(struct{ io.Reader }{rc})
	rc.Close()
	if err != nil || !bytes.Equal(got, small) {
		t.Fatalf("Read b.edi = %q, %v; want %q", got, err, small)
	}

	// Overwrite replaces the content.
	if err := tr.Write(ctx, "b.edi", strings.NewReader("second")); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, tr, "b.edi"); string(got) != "second" {
		t.Fatalf("after overwrite: %q", got)
	}

	// A reader failing midway: an error, nothing under the name, no temp
	// file left, and an existing file keeps its content.
	err = tr.Write(ctx, "c.edi", newBrokenReader(randomBytes(3<<20, 2)))
	if !errors.Is(err, errReaderBroke) {
		t.Fatalf("Write with a failing reader = %v, want the reader's error", err)
	}
	err = tr.Write(ctx, "b.edi", newBrokenReader(randomBytes(1<<20, 3)))
	if !errors.Is(err, errReaderBroke) {
		t.Fatalf("overwrite with a failing reader = %v, want the reader's error", err)
	}
	if got := strings.Join(localEntries(t, local), ","); got != "a.csv,b.edi,subdir" {
		t.Fatalf("folder after failed writes = %s, want a.csv,b.edi,subdir", got)
	}
	if got := readAll(t, tr, "b.edi"); string(got) != "second" {
		t.Fatalf("failed overwrite changed the file: %q", got)
	}

	// A cancelled context: an error and nothing written.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := tr.Write(cctx, "d.edi", strings.NewReader("x")); err == nil {
		t.Fatal("Write with a cancelled context succeeded")
	}
	if t.Failed() {
		return
	}
	// The transport may be closed by the cancellation (sftp); the rest of
	// the contract is checked by the caller on a fresh one when needed.
}

// checkTransportMoveRemove checks Move, Remove and name validation; tr's
// folder is local and holds a.csv and b.edi.
func checkTransportMoveRemove(t *testing.T, tr Transport, local string) {
	ctx := context.Background()
	want, _ := os.ReadFile(filepath.Join(local, "b.edi"))
	if err := tr.Move(ctx, "b.edi", "done/2024"); err != nil {
		t.Fatalf("Move into a new nested dir: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(local, "done", "2024", "b.edi")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("moved file: %q, %v", got, err)
	}
	if err := tr.Move(ctx, "a.csv", "done/2024/"); err != nil {
		t.Fatalf("Move into an existing dir: %v", err)
	}
	if names := listNames(t, tr); len(names) != 0 {
		t.Fatalf("List after moves = %v", names)
	}
	if err := tr.Move(ctx, "missing.edi", "done"); err == nil {
		t.Error("Move of a missing file succeeded")
	}

	if err := tr.Write(ctx, "r.edi", strings.NewReader("bye")); err != nil {
		t.Fatal(err)
	}
	if err := tr.Remove(ctx, "r.edi"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(local, "r.edi")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed file still there: %v", err)
	}
	if err := tr.Remove(ctx, "r.edi"); err == nil {
		t.Error("Remove of a missing file succeeded")
	}
	if _, err := tr.Open(ctx, "missing.edi"); err == nil {
		t.Error("Open of a missing file succeeded")
	}
	if _, err := tr.Open(ctx, "done"); err == nil {
		t.Error("Open of a directory succeeded")
	}

	for _, bad := range []string{"", ".", "..", "../x", "a/b", "/etc/passwd"} {
		if err := tr.Write(ctx, bad, strings.NewReader("x")); err == nil {
			t.Errorf("Write(%q) succeeded", bad)
		}
		if _, err := tr.Open(ctx, bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
		if err := tr.Remove(ctx, bad); err == nil {
			t.Errorf("Remove(%q) succeeded", bad)
		}
	}
	if err := tr.Write(ctx, "m.edi", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", ".", "..", "../out", "/abs", "a/../../b"} {
		if err := tr.Move(ctx, "m.edi", bad); err == nil {
			t.Errorf("Move(m.edi, %q) succeeded", bad)
		}
	}
}

func fileRemote(dir string) partners.Remote {
	return partners.Remote{URL: partners.Endpoint{Scheme: partners.SchemeFile, Path: dir}}
}

func TestFileTransport(t *testing.T) {
	local := t.TempDir()
	tr, err := Dial(context.Background(), fileRemote(local), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	checkTransportContract(t, tr, local)
	if t.Failed() {
		return
	}
	checkTransportMoveRemove(t, tr, local)
}

func TestFileDialErrors(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := Dial(ctx, fileRemote(missing), Options{}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Dial of a missing directory = %v, want an error naming it", err)
	}
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, nil, 0o644)
	if _, err := Dial(ctx, fileRemote(f), Options{}); err == nil {
		t.Error("Dial of a regular file succeeded")
	}
	// A relative path is relative to the partner folder.
	base := t.TempDir()
	os.Mkdir(filepath.Join(base, "out"), 0o755)
	tr, err := Dial(ctx, fileRemote("out"), Options{BaseDir: base})
	if err != nil {
		t.Fatalf("relative dir: %v", err)
	}
	if err := tr.Write(ctx, "x", strings.NewReader("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(base, "out", "x")); err != nil {
		t.Fatal(err)
	}
}

func TestFileDialUnknownScheme(t *testing.T) {
	_, err := Dial(context.Background(), partners.Remote{URL: partners.Endpoint{Scheme: "gopher", Host: "h", Port: 70}}, Options{})
	if err == nil || !strings.Contains(err.Error(), `unsupported scheme "gopher"`) || !strings.Contains(err.Error(), "sftp") {
		t.Fatalf("Dial(gopher) = %v, want an unsupported-scheme error listing the supported ones", err)
	}
}
