package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sha256sumCheck runs the real `sha256sum --strict -c SHA256SUMS` in dir, the
// check an operator would run on a message folder.
func sha256sumCheck(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Log("sha256sum not installed: manifest not checked with it")
		return
	}
	cmd := exec.Command("sha256sum", "--strict", "-c", ManifestName)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c %s in %s: %v: %s", ManifestName, dir, err, out)
	}
}

// noTemps fails if a temp file is left anywhere under root.
func noTemps(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temp file left: %s", p)
		}
		return nil
	})
}

func readManifest(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// blob writes body as a spool would: a read-only file outside the archive
// (but on the same file system, so it can be linked).
func blob(t *testing.T, body []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), sum(body))
	if err := os.WriteFile(p, body, 0o444); err != nil {
		t.Fatal(err)
	}
	return p
}

// failReader fails the test if it is read: a linked object must not be copied.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("Body read although LinkFrom could be linked")
	return 0, errors.New("failReader")
}

// withLink replaces the link seam for the duration of the test.
func withLink(t *testing.T, f func(oldname, newname string) error) {
	t.Helper()
	saved := link
	link = f
	t.Cleanup(func() { link = saved })
}

func exdev(oldname, newname string) error {
	return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: syscall.EXDEV}
}

func TestDirManifest(t *testing.T) {
	ctx := context.Background()
	a, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	objs := []struct {
		name string
		body []byte
	}{
		{"in.edi", []byte("ISA*00*...~IEA*1*000000001~\n")},
		{"ack-1-997-0001.x12", []byte("ISA*00*...~ST*997*0001~\n")},
		{"po.json", randBytes(100<<10, 3)},
	}
	var want strings.Builder
	var dir string
	for _, o := range objs {
		key := Key("", "acme", at, "01HXMSG", o.name)
		if err := a.Put(ctx, Object{Key: key, Body: bytes.NewReader(o.body), Size: int64(len(o.body))}); err != nil {
			t.Fatal(err)
		}
		p, _ := a.Path(key)
		dir = filepath.Dir(p)
		fmt.Fprintf(&want, "%s  %s\n", sum(o.body), o.name)
	}
	if got := readManifest(t, dir); got != want.String() {
		t.Fatalf("manifest:\n%s\nwant:\n%s", got, want.String())
	}
	sha256sumCheck(t, dir)
	// Only the objects and their one manifest: no sidecars, no temp files.
	ents, _ := os.ReadDir(dir)
	if len(ents) != len(objs)+1 {
		t.Errorf("folder holds %d entries, want %d objects and %s", len(ents), len(objs), ManifestName)
	}

	// Retried puts (with and without a declared hash) add no line.
	for _, o := range objs {
		key := Key("", "acme", at, "01HXMSG", o.name)
		if err := a.Put(ctx, Object{Key: key, Body: bytes.NewReader(o.body), Size: -1, SHA256: sum(o.body)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := readManifest(t, dir); got != want.String() {
		t.Fatalf("manifest after retries:\n%s", got)
	}

	// Stat takes the hash from the manifest (proved with a line no other
	// source could give), the last line for a name wins, and malformed lines
	// are ignored.
	inKey := Key("", "acme", at, "01HXMSG", "in.edi")
	fake := sum([]byte("not the content"))
	mf, err := os.OpenFile(filepath.Join(dir, ManifestName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(mf, "%s  in.edi\nnot a line\n%s  in.edi\n%s in.edi\nzz%s  in.edi\n", sum([]byte("older")), fake, sum([]byte("one space")), fake[2:])
	mf.Close()
	if size, sha, err := a.Stat(ctx, inKey); err != nil || sha != fake || size != int64(len(objs[0].body)) {
		t.Fatalf("Stat = %d %s %v, want the manifest's last well-formed line %s", size, sha, err, fake)
	}
	// sha256sum --binary style lines are read too.
	poKey := Key("", "acme", at, "01HXMSG", "po.json")
	if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(strings.ToUpper(fake)+" *po.json\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, sha, err := a.Stat(ctx, poKey); err != nil || sha != fake {
		t.Fatalf("Stat with a binary-mode line = %s %v", sha, err)
	}

	// A line torn by a crash (no newline) does not swallow the next one.
	if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(sum(objs[1].body)[:20]), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, Object{Key: poKey, Body: bytes.NewReader(objs[2].body), Size: -1}); err != nil {
		t.Fatal(err)
	}
	if got, want := readManifest(t, dir), sum(objs[1].body)[:20]+"\n"+sum(objs[2].body)+"  po.json\n"; got != want {
		t.Fatalf("manifest after a torn line: %q, want %q", got, want)
	}
	if _, sha, err := a.Stat(ctx, poKey); err != nil || sha != sum(objs[2].body) {
		t.Fatalf("Stat after a torn line = %s %v", sha, err)
	}
	noTemps(t, a.Root())
}

// Folders written by earlier versions have a sidecar per object and no
// manifest.
func TestDirLegacySidecar(t *testing.T) {
	ctx := context.Background()
	a, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := Key("", "acme", time.Now(), "01OLD", "in.edi")
	p, _ := a.Path(key)
	body := []byte("legacy body")
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, body, 0o640); err != nil {
		t.Fatal(err)
	}
	// A sidecar hash no other source could give proves Stat reads it.
	fake := sum([]byte("sidecar"))
	if err := os.WriteFile(p+SidecarSuffix, []byte(fake+"  in.edi\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if size, sha, err := a.Stat(ctx, key); err != nil || sha != fake || size != int64(len(body)) {
		t.Fatalf("Stat with a legacy sidecar = %d %s %v, want %s", size, sha, err, fake)
	}
	// A manifest line takes precedence over the sidecar.
	if err := os.WriteFile(filepath.Join(filepath.Dir(p), ManifestName), []byte(sum(body)+"  in.edi\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, sha, err := a.Stat(ctx, key); err != nil || sha != sum(body) {
		t.Fatalf("Stat with manifest and sidecar = %s %v", sha, err)
	}
	// Neither: the hash is computed.
	os.Remove(filepath.Join(filepath.Dir(p), ManifestName))
	os.Remove(p + SidecarSuffix)
	if _, sha, err := a.Stat(ctx, key); err != nil || sha != sum(body) {
		t.Fatalf("Stat without manifest or sidecar = %s %v", sha, err)
	}
	// A put into a legacy folder writes no sidecar.
	k2 := Key("", "acme", time.Now(), "01OLD", "ack.x12")
	if err := a.Put(ctx, Object{Key: k2, Body: strings.NewReader("ack"), Size: -1}); err != nil {
		t.Fatal(err)
	}
	p2, _ := a.Path(k2)
	if _, err := os.Stat(p2 + SidecarSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("sidecar written: %v", err)
	}
	if got := readManifest(t, filepath.Dir(p)); got != sum([]byte("ack"))+"  ack.x12\n" {
		t.Fatalf("manifest %q", got)
	}
}

func TestDirLinkFrom(t *testing.T) {
	ctx := context.Background()
	a, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	body := randBytes(64<<10, 11)
	src := blob(t, body)
	key := Key("", "acme", at, "01HXLINK", "in.edi")
	p, _ := a.Path(key)
	dir := filepath.Dir(p)
	o := Object{Key: key, Body: failReader{t}, Size: int64(len(body)), SHA256: sum(body), LinkFrom: src}

	if err := a.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	srcFi, _ := os.Stat(src)
	fi, err := os.Stat(p)
	if err != nil || !os.SameFile(srcFi, fi) {
		t.Fatalf("archived file is not the source's inode: %v", err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("archived %d bytes (%v), want the body", len(got), err)
	}
	if got := readManifest(t, dir); got != sum(body)+"  in.edi\n" {
		t.Fatalf("manifest %q", got)
	}
	sha256sumCheck(t, dir)
	if size, sha, err := a.Stat(ctx, key); err != nil || size != int64(len(body)) || sha != sum(body) {
		t.Fatalf("Stat = %d %s %v", size, sha, err)
	}
	// One object, one manifest: nothing else was created.
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("folder holds %d entries, want the object and %s", len(ents), ManifestName)
	}

	// A retry is a no-op success and adds no line.
	if err := a.Put(ctx, o); err != nil {
		t.Fatalf("re-put: %v", err)
	}
	if got := readManifest(t, dir); got != sum(body)+"  in.edi\n" {
		t.Fatalf("manifest after re-put %q", got)
	}

	// The same content already archived by a copy (another inode) is a retry too.
	copied := Key("", "acme", at, "01HXLINK", "copy.edi")
	if err := a.Put(ctx, Object{Key: copied, Body: bytes.NewReader(body), Size: -1}); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, Object{Key: copied, Body: failReader{t}, Size: -1, SHA256: sum(body), LinkFrom: src}); err != nil {
		t.Fatalf("link over an equal copy: %v", err)
	}

	// Another object under the key: conflict, and the object stays.
	other := blob(t, []byte("other content"))
	err = a.Put(ctx, Object{Key: key, Body: failReader{t}, Size: -1, SHA256: sum([]byte("other content")), LinkFrom: other})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), key) {
		t.Fatalf("link over another object: %v, want ErrConflict naming the key", err)
	}
	if fi, _ := os.Stat(p); !os.SameFile(srcFi, fi) {
		t.Fatal("conflicting put replaced the object")
	}

	// Size mismatch: ErrChecksum, nothing stored.
	bad := Key("", "acme", at, "01HXLINK", "bad.edi")
	err = a.Put(ctx, Object{Key: bad, Body: failReader{t}, Size: int64(len(body)) + 1, SHA256: sum(body), LinkFrom: src})
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("size mismatch: %v, want ErrChecksum", err)
	}
	if _, _, err := a.Stat(ctx, bad); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat after size mismatch: %v", err)
	}

	// SHA256 is required with LinkFrom, and Body for the copy fallback.
	if err := a.Put(ctx, Object{Key: bad, Body: failReader{t}, Size: -1, LinkFrom: src}); err == nil {
		t.Fatal("LinkFrom without SHA256 accepted")
	}
	if err := a.Put(ctx, Object{Key: bad, Size: -1, SHA256: sum(body), LinkFrom: src}); err == nil {
		t.Fatal("LinkFrom without Body accepted")
	}
	if _, _, err := a.Stat(ctx, bad); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat after refused puts: %v", err)
	}
	if got := strings.Count(readManifest(t, dir), "\n"); got != 2 {
		t.Fatalf("manifest has %d lines, want 2 (in.edi, copy.edi)", got)
	}
	noTemps(t, a.Root())
}

func TestDirLinkFromFallback(t *testing.T) {
	ctx := context.Background()
	a, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	body := randBytes(10<<10, 12)
	src := blob(t, body)
	srcFi, _ := os.Stat(src)

	check := func(key string) {
		t.Helper()
		p, _ := a.Path(key)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if os.SameFile(srcFi, fi) {
			t.Fatal("linked although linking failed")
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("copy has mode %v, want 0640", fi.Mode().Perm())
		}
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("copied %d bytes (%v), want the body", len(got), err)
		}
		if _, sha, err := a.Stat(ctx, key); err != nil || sha != sum(body) {
			t.Fatalf("Stat = %s %v", sha, err)
		}
		sha256sumCheck(t, filepath.Dir(p))
	}

	// The source is on another file system: the body is copied through a
	// temp file, which is then linked as usual.
	withLink(t, func(oldname, newname string) error {
		if oldname == src {
			return exdev(oldname, newname)
		}
		return os.Link(oldname, newname)
	})
	k1 := Key("", "acme", at, "01HXFALL", "in.edi")
	if err := a.Put(ctx, Object{Key: k1, Body: bytes.NewReader(body), Size: int64(len(body)), SHA256: sum(body), LinkFrom: src}); err != nil {
		t.Fatal(err)
	}
	check(k1)
	// The copy path still verifies the body against the trusted hash.
	k2 := Key("", "acme", at, "01HXFALL", "bad.edi")
	err = a.Put(ctx, Object{Key: k2, Body: strings.NewReader("not it"), Size: -1, SHA256: sum(body), LinkFrom: src})
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("fallback with a wrong body: %v, want ErrChecksum", err)
	}

	// No hard links at all: the temp file is renamed into place.
	withLink(t, exdev)
	k3 := Key("", "acme", at, "01HXFALL", "nolinks.edi")
	if err := a.Put(ctx, Object{Key: k3, Body: bytes.NewReader(body), Size: -1, SHA256: sum(body), LinkFrom: src}); err != nil {
		t.Fatal(err)
	}
	check(k3)
	p1, _ := a.Path(k1)
	if got := readManifest(t, filepath.Dir(p1)); got != sum(body)+"  in.edi\n"+sum(body)+"  nolinks.edi\n" {
		t.Fatalf("manifest %q", got)
	}
	noTemps(t, a.Root())
}

// Concurrent puts into one folder each append one whole line.
func TestDirManifestConcurrent(t *testing.T) {
	ctx := context.Background()
	a, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	const n = 8
	bodies := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		bodies[i] = randBytes(4<<10+i, uint64(100+i))
		o := Object{Key: Key("", "acme", at, "01HXCONC", fmt.Sprintf("obj-%d.edi", i)), Body: bytes.NewReader(bodies[i]), Size: -1}
		if i%2 == 0 { // half linked from a blob, half copied
			o.LinkFrom, o.SHA256 = blob(t, bodies[i]), sum(bodies[i])
		}
		wg.Go(func() { errs[i] = a.Put(ctx, o) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	p, _ := a.Path(Key("", "acme", at, "01HXCONC", "obj-0.edi"))
	dir := filepath.Dir(p)
	m := readManifest(t, dir)
	lines := strings.SplitAfter(m, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) != n {
		t.Fatalf("manifest has %d lines, want %d:\n%s", len(lines), n, m)
	}
	re := regexp.MustCompile(`^([0-9a-f]{64})  (obj-[0-9]\.edi)\n$`)
	seen := map[string]string{}
	for _, l := range lines {
		g := re.FindStringSubmatch(l)
		if g == nil {
			t.Fatalf("malformed line %q", l)
		}
		seen[g[2]] = g[1]
	}
	for i := range n {
		if name := fmt.Sprintf("obj-%d.edi", i); seen[name] != sum(bodies[i]) {
			t.Errorf("%s listed with %q, want %s", name, seen[name], sum(bodies[i]))
		}
	}
	sha256sumCheck(t, dir)
	noTemps(t, a.Root())
}

// PutAll stores a message's objects together: each folder gets one
// manifest append listing all of its objects; a second PutAll changes
// nothing, and a conflicting object fails it.
func TestDirPutAll(t *testing.T) {
	ctx := context.Background()
	a, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	raw, ack, doc, other := []byte("ISA*raw"), []byte("ISA*ack"), []byte(`{"asn":"1"}`), []byte("other message")
	objs := []Object{
		{Key: Key("", "acme", at, "01MSG", "raw-in.x12"), Body: failReader{t}, Size: int64(len(raw)), SHA256: sum(raw), LinkFrom: blob(t, raw)},
		{Key: Key("", "acme", at, "01MSG", "ack-0-999-000000001.x12"), Body: bytes.NewReader(ack), Size: int64(len(ack)), SHA256: sum(ack)},
		{Key: Key("", "acme", at, "01MSG", "doc-0-856.json"), Body: failReader{t}, Size: int64(len(doc)), SHA256: sum(doc), LinkFrom: blob(t, doc)},
		{Key: Key("", "acme", at, "01OTHER", "raw-x.x12"), Body: bytes.NewReader(other), Size: -1},
	}
	if err := PutAll(ctx, a, objs); err != nil {
		t.Fatal(err)
	}
	p, _ := a.Path(objs[0].Key)
	dir := filepath.Dir(p)
	want := sum(raw) + "  raw-in.x12\n" + sum(ack) + "  ack-0-999-000000001.x12\n" + sum(doc) + "  doc-0-856.json\n"
	if got := readManifest(t, dir); got != want {
		t.Errorf("manifest:\n%s\nwant:\n%s", got, want)
	}
	sha256sumCheck(t, dir)
	po, _ := a.Path(objs[3].Key)
	if got := readManifest(t, filepath.Dir(po)); got != sum(other)+"  raw-x.x12\n" {
		t.Errorf("other folder's manifest %q", got)
	}
	for i, body := range [][]byte{raw, ack, doc, other} {
		if size, sha, err := a.Stat(ctx, objs[i].Key); err != nil || size != int64(len(body)) || sha != sum(body) {
			t.Errorf("Stat(%s) = %d %s %v", objs[i].Key, size, sha, err)
		}
	}
	noTemps(t, a.Root())

	// Again (a retried stage): nothing changes.
	objs[1].Body, objs[3].Body = bytes.NewReader(ack), bytes.NewReader(other)
	if err := PutAll(ctx, a, objs); err != nil {
		t.Fatal(err)
	}
	if got := readManifest(t, dir); got != want {
		t.Errorf("manifest after a retry:\n%s", got)
	}
	// Other content under a stored key: a conflict.
	bad := Object{Key: objs[1].Key, Body: bytes.NewReader([]byte("ISA*other ack")), Size: -1}
	if err := PutAll(ctx, a, []Object{bad}); !errors.Is(err, ErrConflict) {
		t.Errorf("conflicting PutAll: %v, want ErrConflict", err)
	}
}
