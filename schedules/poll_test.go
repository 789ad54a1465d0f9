package schedules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edigw/edigw/spool"
	"github.com/robfig/cron/v3"
)

// ---- fake remote ----

type fakeFile struct {
	data []byte
	mod  time.Time
}

// fakeRemote is an in-memory remote folder with hooks to inject failures.
type fakeRemote struct {
	mu      sync.Mutex
	files   map[string]fakeFile
	moved   map[string]fakeFile // by "dir/name"
	ops     map[string]int      // dial, list, open, remove, move, close
	readers int                 // opened and not yet closed

	dialErr   error
	openErr   map[string]error
	midFail   map[string]bool  // the reader fails after half the bytes
	listSize  map[string]int64 // size listed instead of the real one
	removeErr map[string]error
	onRemove  func(name string) // called before a Remove or Move, without the lock
	onList    func(n int)       // called before the nth List (from 1), without the lock
}

var errMidway = errors.New("connection reset by peer")

func newFakeRemote() *fakeRemote {
	return &fakeRemote{files: map[string]fakeFile{}, moved: map[string]fakeFile{}, ops: map[string]int{},
		openErr: map[string]error{}, midFail: map[string]bool{}, listSize: map[string]int64{}, removeErr: map[string]error{}}
}

func (r *fakeRemote) put(name, data string, mod time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[name] = fakeFile{data: []byte(data), mod: mod}
}

func (r *fakeRemote) appendTo(name, more string, mod time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.files[name]
	r.files[name] = fakeFile{data: append(slices.Clip(f.data), more...), mod: mod}
}

func (r *fakeRemote) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.files))
}

func (r *fakeRemote) op(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ops[name]
}

func (r *fakeRemote) set(f func(r *fakeRemote)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *fakeRemote) dial(ctx context.Context) (Remote, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops["dial"]++
	if r.dialErr != nil {
		return nil, r.dialErr
	}
	return r, nil
}

func (r *fakeRemote) List(ctx context.Context) ([]File, error) {
	r.mu.Lock()
	r.ops["list"]++
	n, hook := r.ops["list"], r.onList
	r.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []File
	for _, name := range slices.Sorted(maps.Keys(r.files)) {
		f := r.files[name]
		size := int64(len(f.data))
		if s, ok := r.listSize[name]; ok {
			size = s
		}
		out = append(out, File{Name: name, Size: size, ModTime: f.mod})
	}
	return out, nil
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

type fakeReader struct {
	io.Reader
	r      *fakeRemote
	closed bool
}

func (f *fakeReader) Close() error {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	if !f.closed {
		f.closed = true
		f.r.readers--
	}
	return nil
}

func (r *fakeRemote) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops["open"]++
	if err := r.openErr[name]; err != nil {
		return nil, err
	}
	f, ok := r.files[name]
	if !ok {
		return nil, fmt.Errorf("open %s: no such file", name)
	}
	data := bytes.Clone(f.data)
	var rd io.Reader = bytes.NewReader(data)
	if r.midFail[name] {
		rd = io.MultiReader(bytes.NewReader(data[:len(data)/2]), failingReader{errMidway})
	}
	r.readers++
	return &fakeReader{Reader: rd, r: r}, nil
}

// afterFetch counts an after-fetch operation and runs the onRemove hook,
// outside the lock (the hook may call the remote).
func (r *fakeRemote) afterFetch(op, name string) {
	r.mu.Lock()
	r.ops[op]++
	hook := r.onRemove
	r.mu.Unlock()
	if hook != nil {
		hook(name)
	}
}

func (r *fakeRemote) Remove(ctx context.Context, name string) error {
	r.afterFetch("remove", name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.removeErr[name]; err != nil {
		return err
	}
	if _, ok := r.files[name]; !ok {
		return fmt.Errorf("remove %s: no such file", name)
	}
	delete(r.files, name)
	return nil
}

func (r *fakeRemote) Move(ctx context.Context, name, dir string) error {
	r.afterFetch("move", name)
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.files[name]
	if !ok {
		return fmt.Errorf("move %s: no such file", name)
	}
	r.moved[path.Join(dir, name)] = f
	delete(r.files, name)
	return nil
}

func (r *fakeRemote) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops["close"]++
	return nil
}

// ---- fake sink ----

// fakeSink records what it spooled, by file name.
type fakeSink struct {
	mu      sync.Mutex
	got     map[string][]byte
	meta    map[string]Fetched
	calls   map[string]int // successful calls by name
	readErr []error        // errors the reader returned
	fail    error          // returned after reading everything
	hold    chan struct{}  // if set, each call waits for it (or ctx) before returning
	entered chan string    // if set, each call sends its file name here once it has read the bytes
}

func newFakeSink() *fakeSink {
	return &fakeSink{got: map[string][]byte{}, meta: map[string]Fetched{}, calls: map[string]int{}}
}

func (k *fakeSink) Sink(ctx context.Context, f Fetched, r io.Reader) (spool.ID, error) {
	data, err := io.ReadAll(r)
	k.mu.Lock()
	hold, entered, fail := k.hold, k.entered, k.fail
	k.mu.Unlock()
	if entered != nil {
		entered <- f.Name
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.readErr = append(k.readErr, err)
		return "", err
	}
	if fail != nil {
		return "", fail
	}
	id, err := spool.NewID(spool.KindFile, time.Now())
	if err != nil {
		return "", err
	}
	k.got[f.Name] = data
	k.meta[f.Name] = f
	k.calls[f.Name]++
	return id, nil
}

func (k *fakeSink) has(name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.got[name]
	return ok
}

func (k *fakeSink) contents() map[string]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]string{}
	for n, b := range k.got {
		out[n] = string(b)
	}
	return out
}

func (k *fakeSink) totalCalls() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, c := range k.calls {
		n += c
	}
	return n
}

func (k *fakeSink) set(f func(k *fakeSink)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f(k)
}

// ---- environment ----

// mtime has nanoseconds, as a local file system gives them.
var mtime = time.Date(2025, 3, 1, 10, 0, 0, 123456789, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	t      *testing.T
	store  *spool.SQLite
	remote *fakeRemote
	sink   *fakeSink
	runner *Runner
	poll   *Poll
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openStore(t *testing.T) *spool.SQLite {
	t.Helper()
	st, err := spool.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "spool.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, store: openStore(t), remote: newFakeRemote(), sink: newFakeSink()}
	e.runner = &Runner{Store: e.store, Sink: e.sink.Sink, Owner: "test-node", Log: discardLog()}
	e.poll = &Poll{Partner: "acme", Name: "inbox", Where: "mem://acme/inbox", After: Delete, Concurrency: 4, Dial: e.remote.dial}
	return e
}

// run runs the poll once, expecting no error; it checks the run was recorded
// as returned and that every reader opened was closed.
func (e *env) run() spool.PollRun {
	e.t.Helper()
	run, err := e.runner.Run(e.t.Context(), e.poll, "manual:test")
	if err != nil {
		e.t.Fatalf("Run: %v", err)
	}
	e.checkRecorded(run)
	return run
}

func (e *env) checkRecorded(run spool.PollRun) {
	e.t.Helper()
	runs, err := e.store.ListRuns(e.t.Context(), spool.RunFilter{Partner: e.poll.Partner, Poll: e.poll.Name, Limit: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(runs) != 1 {
		e.t.Fatalf("ListRuns: %d runs, want 1", len(runs))
	}
	got := runs[0]
	if got.ID != run.ID || got.Status != run.Status || got.Seen != run.Seen || got.Fetched != run.Fetched ||
		got.Skipped != run.Skipped || got.Failed != run.Failed || !slices.Equal(got.Errors, run.Errors) || got.EndedAt.IsZero() {
		e.t.Errorf("recorded run %+v, returned %+v", got, run)
	}
	e.remote.mu.Lock()
	open := e.remote.readers
	e.remote.mu.Unlock()
	if open != 0 {
		e.t.Errorf("%d remote readers left open", open)
	}
}

func (e *env) memory() map[string]spool.RemoteFile {
	e.t.Helper()
	m, err := e.store.RemoteFiles(e.t.Context(), e.poll.Partner, e.poll.Name)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func wantRun(t *testing.T, run spool.PollRun, status spool.RunStatus, seen, fetched, skipped, failed int) {
	t.Helper()
	if run.Status != status || run.Seen != seen || run.Fetched != fetched || run.Skipped != skipped || run.Failed != failed {
		t.Errorf("run: status %s seen %d fetched %d skipped %d failed %d (errors %q); want %s %d %d %d %d",
			run.Status, run.Seen, run.Fetched, run.Skipped, run.Failed, run.Errors, status, seen, fetched, skipped, failed)
	}
	if (status == spool.RunOK) != (len(run.Errors) == 0) {
		t.Errorf("run %s with errors %q", run.Status, run.Errors)
	}
}

func wantNames(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: %q, want %q", what, got, want)
	}
}

func wantContents(t *testing.T, k *fakeSink, want map[string]string) {
	t.Helper()
	if got := k.contents(); !maps.Equal(got, want) {
		t.Errorf("sink holds %q, want %q", got, want)
	}
}

// ---- tests ----

func TestDeleteAfterFetch(t *testing.T) {
	e := newEnv(t)
	e.poll.Pattern = "*.edi"
	e.remote.put("a.edi", "ISA*a~", mtime)
	e.remote.put("b.edi", "ISA*bb~", mtime.Add(time.Second))
	e.remote.put("c.edi", "ISA*ccc~", mtime.Add(2*time.Second))
	e.remote.put("notes.txt", "not EDI", mtime)

	wantRun(t, e.run(), spool.RunOK, 3, 3, 0, 0)
	wantContents(t, e.sink, map[string]string{"a.edi": "ISA*a~", "b.edi": "ISA*bb~", "c.edi": "ISA*ccc~"})
	wantNames(t, "remote", e.remote.names(), "notes.txt")
	if f := e.sink.meta["b.edi"]; f.Partner != "acme" || f.Poll != "inbox" || f.Where != "mem://acme/inbox" ||
		f.Size != 7 || !f.ModTime.Equal(mtime.Add(time.Second)) {
		t.Errorf("sink got %+v for b.edi", f)
	}
	if m := e.memory(); len(m) != 0 {
		t.Errorf("memory after delete: %v", m)
	}
	if n := e.remote.op("open"); n != 3 {
		t.Errorf("%d opens, want 3", n)
	}
	if d, c := e.remote.op("dial"), e.remote.op("close"); d != 1 || c != 1 {
		t.Errorf("dialled %d times, closed %d", d, c)
	}

	wantRun(t, e.run(), spool.RunOK, 0, 0, 0, 0)
	if n := e.sink.totalCalls(); n != 3 {
		t.Errorf("sink called %d times after the second run, want 3", n)
	}
	wantNames(t, "remote", e.remote.names(), "notes.txt")
}

func TestRemoveOnlyAfterSink(t *testing.T) {
	for _, after := range []Action{Delete, Move} {
		t.Run(string(after), func(t *testing.T) {
			e := newEnv(t)
			e.poll.After, e.poll.MoveDir = after, "done"
			var mu sync.Mutex
			var early []string
			e.remote.onRemove = func(name string) {
				if !e.sink.has(name) {
					mu.Lock()
					early = append(early, name)
					mu.Unlock()
				}
			}
			for i := range 8 {
				e.remote.put(fmt.Sprintf("f%d.edi", i), strings.Repeat("x", 1000*i+1), mtime)
			}
			wantRun(t, e.run(), spool.RunOK, 8, 8, 0, 0)
			if len(early) > 0 {
				t.Errorf("removed before the sink held them: %q", early)
			}
			if n := e.remote.op(map[Action]string{Delete: "remove", Move: "move"}[after]); n != 8 {
				t.Errorf("%d %s calls, want 8", n, after)
			}
			wantNames(t, "remote", e.remote.names())
		})
	}
}

func TestStableForWithClock(t *testing.T) {
	e := newEnv(t)
	clk := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	start := clk.Now()
	e.runner.Now, e.runner.MaxSettle = clk.Now, time.Second
	e.poll.StableFor = time.Hour
	e.remote.put("a.edi", "AAAA", mtime)
	e.remote.put("b.edi", "BBBB", mtime)

	wantRun(t, e.run(), spool.RunOK, 2, 0, 2, 0)
	m := e.memory()
	if len(m) != 2 || !m["a.edi"].Since.Equal(start) || !m["b.edi"].Since.Equal(start) || m["a.edi"].Size != 4 || m["a.edi"].FileID != "" {
		t.Fatalf("memory after the first run: %+v", m)
	}
	if n := e.remote.op("open"); n != 0 {
		t.Errorf("%d opens before the files are stable", n)
	}

	clk.Add(30 * time.Minute) // not yet stable, unchanged: Since stays
	wantRun(t, e.run(), spool.RunOK, 2, 0, 2, 0)
	if m := e.memory(); !m["a.edi"].Since.Equal(start) || !m["b.edi"].Since.Equal(start) {
		t.Errorf("Since moved for unchanged files: a %v b %v, want %v", m["a.edi"].Since, m["b.edi"].Since, start)
	}

	e.remote.appendTo("b.edi", "bb", mtime.Add(time.Minute))
	clk.Add(31 * time.Minute) // a: stable; b: changed
	wantRun(t, e.run(), spool.RunOK, 2, 1, 1, 0)
	wantContents(t, e.sink, map[string]string{"a.edi": "AAAA"})
	wantNames(t, "remote", e.remote.names(), "b.edi")
	m = e.memory()
	if b := m["b.edi"]; len(m) != 1 || !b.Since.Equal(clk.Now()) || b.Size != 6 || !b.ModTime.Equal(mtime.Add(time.Minute).Truncate(time.Microsecond)) {
		t.Errorf("memory after b changed: %+v", m)
	}

	clk.Add(58 * time.Minute)
	wantRun(t, e.run(), spool.RunOK, 1, 0, 1, 0)
	clk.Add(2 * time.Minute)
	wantRun(t, e.run(), spool.RunOK, 1, 1, 0, 0)
	wantContents(t, e.sink, map[string]string{"a.edi": "AAAA", "b.edi": "BBBBbb"})
	wantNames(t, "remote", e.remote.names())
}

func TestSettleWithinRun(t *testing.T) {
	const stable = 200 * time.Millisecond
	t.Run("new file", func(t *testing.T) {
		e := newEnv(t)
		e.poll.StableFor, e.runner.MaxSettle = stable, time.Second
		e.remote.put("new.edi", "NEW", mtime)
		began := time.Now()
		wantRun(t, e.run(), spool.RunOK, 1, 1, 0, 0)
		if d := time.Since(began); d < stable {
			t.Errorf("run took %v, less than StableFor", d)
		}
		if n := e.remote.op("list"); n != 2 {
			t.Errorf("%d lists, want 2 (the re-list after settling)", n)
		}
		wantContents(t, e.sink, map[string]string{"new.edi": "NEW"})
		wantNames(t, "remote", e.remote.names())
	})

	t.Run("modified while waiting", func(t *testing.T) {
		e := newEnv(t)
		e.poll.StableFor, e.runner.MaxSettle = stable, time.Second
		e.remote.put("grow.edi", "PART1", mtime)
		appended := make(chan struct{})
		e.remote.onList = func(n int) {
			switch n {
			case 1: // the run's first listing: the partner is still writing
				go func() {
					time.Sleep(100 * time.Millisecond)
					e.remote.appendTo("grow.edi", "PART2", mtime.Add(time.Second))
					close(appended)
				}()
			case 2: // the re-list sees the change, however slow the goroutine
				<-appended
			}
		}
		wantRun(t, e.run(), spool.RunOK, 1, 0, 1, 0)
		wantContents(t, e.sink, map[string]string{})
		if m := e.memory()["grow.edi"]; m.Size != 10 {
			t.Errorf("memory after the change: %+v", m)
		}

		e.remote.set(func(r *fakeRemote) { r.onList = nil })
		wantRun(t, e.run(), spool.RunOK, 1, 1, 0, 0)
		wantContents(t, e.sink, map[string]string{"grow.edi": "PART1PART2"})
		wantNames(t, "remote", e.remote.names())
	})

	// A file that is unchanged at the re-list but not yet stable keeps the
	// time it was first seen: it is not "still changing".
	t.Run("unchanged but younger", func(t *testing.T) {
		// The clock runs at real speed (settle sleeps real time) but is
		// set back between runs, so the ages do not depend on how long
		// the runs' own work took.
		const stable = 400 * time.Millisecond
		clk := &shiftClock{}
		e := newEnv(t)
		e.runner.Now = clk.Now
		e.poll.StableFor, e.runner.MaxSettle = stable, time.Nanosecond
		e.remote.put("old.edi", "OLD", mtime)
		wantRun(t, e.run(), spool.RunOK, 1, 0, 1, 0) // observed, too long to wait
		clk.Set(e.memory()["old.edi"].Since.Add(stable / 4))

		e.runner.MaxSettle = time.Second
		e.remote.put("young.edi", "YOUNG", mtime)
		var relisted time.Time
		e.remote.onList = func(n int) {
			if n == 3 { // the second run's re-list
				relisted = clk.Now()
			}
		}
		// old.edi is ready after ~300ms; young.edi, seen at once, is then
		// unchanged but only ~300ms old.
		wantRun(t, e.run(), spool.RunOK, 2, 1, 1, 0)
		wantContents(t, e.sink, map[string]string{"old.edi": "OLD"})
		if y := e.memory()["young.edi"]; y.Since.IsZero() || !y.Since.Before(relisted) {
			t.Errorf("young.edi Since %v was reset at the re-list (%v)", y.Since, relisted)
		}
		e.remote.set(func(r *fakeRemote) { r.onList = nil })
		clk.Set(clk.Now().Add(stable))
		wantRun(t, e.run(), spool.RunOK, 1, 1, 0, 0)
		wantContents(t, e.sink, map[string]string{"old.edi": "OLD", "young.edi": "YOUNG"})
	})
}

// shiftClock is the real clock, shifted by Set.
type shiftClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *shiftClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

// Set makes Now return t now.
func (c *shiftClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off = t.Sub(time.Now().Round(0))
}

func TestTriggerSuffix(t *testing.T) {
	e := newEnv(t)
	e.poll.TriggerSuffix = ".done" // no pattern: the trigger files would match it
	e.remote.put("a.edi", "AAA", mtime)
	e.remote.put("b.edi", "BBB", mtime)
	e.remote.put("b.edi.done", "", mtime)

	wantRun(t, e.run(), spool.RunOK, 2, 1, 1, 0)
	wantContents(t, e.sink, map[string]string{"b.edi": "BBB"})
	wantNames(t, "remote", e.remote.names(), "a.edi")

	e.remote.put("a.edi.done", "", mtime)
	wantRun(t, e.run(), spool.RunOK, 1, 1, 0, 0)
	wantContents(t, e.sink, map[string]string{"a.edi": "AAA", "b.edi": "BBB"})
	wantNames(t, "remote", e.remote.names())
	if m := e.memory(); len(m) != 0 {
		t.Errorf("memory: %v", m)
	}
}

func TestKeep(t *testing.T) {
	e := newEnv(t)
	e.poll.After = Keep
	e.remote.put("a.edi", "V1", mtime)

	wantRun(t, e.run(), spool.RunOK, 1, 1, 0, 0)
	wantContents(t, e.sink, map[string]string{"a.edi": "V1"})
	wantNames(t, "remote", e.remote.names(), "a.edi")
	if m := e.memory()["a.edi"]; m.FileID == "" || !m.Done {
		t.Errorf("memory after keep: %+v", m)
	}

	wantRun(t, e.run(), spool.RunOK, 1, 0, 1, 0)
	if n := e.sink.totalCalls(); n != 1 {
		t.Errorf("sink called %d times, want 1 (already fetched)", n)
	}

	e.remote.put("a.edi", "V2 longer", mtime.Add(time.Hour))
	wantRun(t, e.run(), spool.RunOK, 1, 1, 0, 0)
	wantContents(t, e.sink, map[string]string{"a.edi": "V2 longer"})
	if n := e.sink.calls["a.edi"]; n != 2 {
		t.Errorf("sink called %d times for a.edi, want 2", n)
	}
	wantRun(t, e.run(), spool.RunOK, 1, 0, 1, 0)
	if n, m := e.remote.op("remove"), e.remote.op("move"); n != 0 || m != 0 {
		t.Errorf("keep removed %d, moved %d", n, m)
	}
	wantNames(t, "remote", e.remote.names(), "a.edi")
}

func TestMove(t *testing.T) {
	e := newEnv(t)
	e.poll.After, e.poll.MoveDir = Move, "done"
	e.remote.put("a.edi", "AAA", mtime)

	wantRun(t, e.run(), spool.RunOK, 1, 1, 0, 0)
	wantContents(t, e.sink, map[string]string{"a.edi": "AAA"})
	wantNames(t, "remote", e.remote.names())
	if got := slices.Sorted(maps.Keys(e.remote.moved)); !slices.Equal(got, []string{"done/a.edi"}) || string(e.remote.moved["done/a.edi"].data) != "AAA" {
		t.Errorf("moved: %q", got)
	}
	if n := e.remote.op("remove"); n != 0 {
		t.Errorf("%d removes with After=move", n)
	}
	wantRun(t, e.run(), spool.RunOK, 0, 0, 0, 0)
}

func TestCrashRecovery(t *testing.T) {
	e := newEnv(t)
	e.remote.put("a.edi", "AAA", mtime)
	id, err := spool.NewID(spool.KindFile, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.PutRemoteFile(t.Context(), spool.RemoteFile{Partner: "acme", Poll: "inbox", Name: "a.edi", Size: 3,
		ModTime: mtime, Since: time.Now().Add(-time.Minute), FileID: id, FetchedAt: time.Now(), Done: false}); err != nil {
		t.Fatal(err)
	}

	wantRun(t, e.run(), spool.RunOK, 1, 0, 1, 0)
	if n := e.sink.totalCalls(); n != 0 || e.remote.op("open") != 0 {
		t.Errorf("sink called %d times, %d opens: an already spooled file was fetched again", n, e.remote.op("open"))
	}
	wantNames(t, "remote", e.remote.names())
	if m := e.memory(); len(m) != 0 {
		t.Errorf("memory: %v", m)
	}
}

func TestFailures(t *testing.T) {
	t.Run("open", func(t *testing.T) {
		e := newEnv(t)
		e.remote.put("a.edi", "AAA", mtime)
		e.remote.put("b.edi", "BBB", mtime)
		e.remote.openErr["b.edi"] = errors.New("permission denied")

		run := e.run()
		wantRun(t, run, spool.RunPartial, 2, 1, 0, 1)
		if len(run.Errors) != 1 || !strings.Contains(run.Errors[0], "b.edi") || !strings.Contains(run.Errors[0], "permission denied") {
			t.Errorf("errors %q", run.Errors)
		}
		wantContents(t, e.sink, map[string]string{"a.edi": "AAA"})
		wantNames(t, "remote", e.remote.names(), "b.edi")

		e.remote.set(func(r *fakeRemote) { delete(r.openErr, "b.edi") })
		wantRun(t, e.run(), spool.RunOK, 1, 1, 0, 0)
		wantContents(t, e.sink, map[string]string{"a.edi": "AAA", "b.edi": "BBB"})
		wantNames(t, "remote", e.remote.names())
	})

	for _, tc := range []struct {
		name  string
		setup func(r *fakeRemote)
		want  error
	}{
		{"midway", func(r *fakeRemote) { r.midFail["a.edi"] = true }, errMidway},
		{"short", func(r *fakeRemote) { r.listSize["a.edi"] = 100 }, errShort},
		{"long", func(r *fakeRemote) { r.listSize["a.edi"] = 10 }, errShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.remote.put("a.edi", strings.Repeat("z", 50), mtime)
			e.remote.set(tc.setup)
			run := e.run()
			wantRun(t, run, spool.RunPartial, 1, 0, 0, 1)
			wantContents(t, e.sink, map[string]string{})
			if len(e.sink.readErr) != 1 || !errors.Is(e.sink.readErr[0], tc.want) {
				t.Errorf("sink read errors %v, want %v", e.sink.readErr, tc.want)
			}
			if len(run.Errors) != 1 || !strings.HasPrefix(run.Errors[0], "a.edi: ") {
				t.Errorf("errors %q", run.Errors)
			}
			wantNames(t, "remote", e.remote.names(), "a.edi")
			if m := e.memory()["a.edi"]; m.FileID != "" {
				t.Errorf("a failed fetch is remembered as spooled: %+v", m)
			}
		})
	}

	t.Run("sink", func(t *testing.T) {
		e := newEnv(t)
		e.remote.put("a.edi", "AAA", mtime)
		e.sink.fail = errors.New("disk full")
		run := e.run()
		wantRun(t, run, spool.RunPartial, 1, 0, 0, 1)
		if len(run.Errors) != 1 || !strings.Contains(run.Errors[0], "disk full") {
			t.Errorf("errors %q", run.Errors)
		}
		wantNames(t, "remote", e.remote.names(), "a.edi")
		if n := e.remote.op("remove"); n != 0 {
			t.Errorf("%d removes after the sink failed", n)
		}
		e.sink.set(func(k *fakeSink) { k.fail = nil })
		wantRun(t, e.run(), spool.RunOK, 1, 1, 0, 0)
		wantNames(t, "remote", e.remote.names())
	})

	// The file is spooled but the remove fails: the next run removes it
	// without fetching it again.
	t.Run("remove", func(t *testing.T) {
		e := newEnv(t)
		e.remote.put("a.edi", "AAA", mtime)
		e.remote.removeErr["a.edi"] = errors.New("read-only folder")
		run := e.run()
		wantRun(t, run, spool.RunPartial, 1, 1, 0, 1)
		if len(run.Errors) != 1 || !strings.Contains(run.Errors[0], "read-only folder") {
			t.Errorf("errors %q", run.Errors)
		}
		if m := e.memory()["a.edi"]; m.FileID == "" || m.Done {
			t.Errorf("memory: %+v", m)
		}
		e.remote.set(func(r *fakeRemote) { delete(r.removeErr, "a.edi") })
		wantRun(t, e.run(), spool.RunOK, 1, 0, 1, 0)
		if n := e.sink.totalCalls(); n != 1 {
			t.Errorf("sink called %d times, want 1", n)
		}
		wantNames(t, "remote", e.remote.names())
		if m := e.memory(); len(m) != 0 {
			t.Errorf("memory: %v", m)
		}
	})

	t.Run("dial", func(t *testing.T) {
		e := newEnv(t)
		e.remote.put("a.edi", "AAA", mtime)
		e.remote.dialErr = errors.New("connection refused")
		run, err := e.runner.Run(t.Context(), e.poll, "schedule")
		if err == nil || !errors.Is(err, e.remote.dialErr) {
			t.Fatalf("Run: %v, want the dial error", err)
		}
		wantRun(t, run, spool.RunFailed, 0, 0, 0, 0)
		e.checkRecorded(run)
		runs, err := e.store.ListRuns(t.Context(), spool.RunFilter{Partner: "acme", Poll: "inbox"})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 1 || runs[0].Status != spool.RunFailed || runs[0].Trigger != "schedule" ||
			len(runs[0].Errors) != 1 || !strings.Contains(runs[0].Errors[0], "connection refused") {
			t.Errorf("recorded runs: %+v", runs)
		}
		if n := e.sink.totalCalls(); n != 0 {
			t.Errorf("sink called %d times", n)
		}
		// The lease was released: the next run goes.
		e.remote.set(func(r *fakeRemote) { r.dialErr = nil })
		wantRun(t, e.run(), spool.RunOK, 1, 1, 0, 0)
	})
}

func TestMaxFiles(t *testing.T) {
	e := newEnv(t)
	e.poll.MaxFiles, e.poll.Concurrency = 2, 1
	for name, age := range map[string]int{"e.edi": 1, "a.edi": 5, "d.edi": 2, "b.edi": 4, "c.edi": 3} {
		e.remote.put(name, "data of "+name, mtime.Add(-time.Duration(age)*time.Minute))
	}
	wantRun(t, e.run(), spool.RunOK, 5, 2, 3, 0)
	wantContents(t, e.sink, map[string]string{"a.edi": "data of a.edi", "b.edi": "data of b.edi"})
	wantNames(t, "remote", e.remote.names(), "c.edi", "d.edi", "e.edi")

	wantRun(t, e.run(), spool.RunOK, 3, 2, 1, 0)
	wantNames(t, "remote", e.remote.names(), "e.edi")
}

func TestLease(t *testing.T) {
	e := newEnv(t)
	e.remote.put("a.edi", "AAA", mtime)
	hold, entered := make(chan struct{}), make(chan string, 1)
	e.sink.hold, e.sink.entered = hold, entered

	type result struct {
		run spool.PollRun
		err error
	}
	first := make(chan result, 1)
	go func() {
		run, err := e.runner.Run(t.Context(), e.poll, "schedule")
		first <- result{run, err}
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the first run never reached the sink")
	}

	other := *e.runner
	other.Owner = "other-node"
	if _, err := other.Run(t.Context(), e.poll, "schedule"); !errors.Is(err, spool.ErrPollBusy) {
		t.Errorf("second run: %v, want ErrPollBusy", err)
	}
	if _, err := e.runner.Run(t.Context(), e.poll, "schedule"); !errors.Is(err, spool.ErrPollBusy) {
		t.Errorf("second run by the same owner: %v, want ErrPollBusy", err)
	}
	close(hold)
	r := <-first
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantRun(t, r.run, spool.RunOK, 1, 1, 0, 0)
	e.checkRecorded(r.run)
	runs, err := e.store.ListRuns(t.Context(), spool.RunFilter{Partner: "acme", Poll: "inbox"})
	if err != nil || len(runs) != 1 {
		t.Errorf("runs recorded: %d (%v), want 1", len(runs), err)
	}
	if n := e.remote.op("dial"); n != 1 {
		t.Errorf("dialled %d times, want 1 (the busy runs must not connect)", n)
	}
}

var secondsParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func TestScheduler(t *testing.T) {
	e := newEnv(t)
	every, err := secondsParser.Parse("@every 1s")
	if err != nil {
		t.Fatal(err)
	}
	e.poll.Schedule = every
	e.remote.put("a.edi", "AAA", mtime)
	manual := newFakeRemote()
	manual.put("m.edi", "MMM", mtime)
	mp := Poll{Partner: "acme", Name: "manual", Where: "mem://acme/manual", After: Delete, Dial: manual.dial}

	s := NewScheduler(e.runner)
	s.Set([]Poll{*e.poll, mp})
	s.Start()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.Stop(ctx)
		}
	}
	defer stop()

	deadline := time.Now().Add(5 * time.Second)
	for !e.sink.has("a.edi") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !e.sink.has("a.edi") {
		t.Fatal("the scheduled poll did not fetch a.edi within 5s")
	}

	run, err := s.RunNow(t.Context(), "acme", "manual", "alice")
	if err != nil {
		t.Fatal(err)
	}
	wantRun(t, run, spool.RunOK, 1, 1, 0, 0)
	if run.Trigger != "manual:alice" {
		t.Errorf("trigger %q", run.Trigger)
	}
	if _, err := s.RunNow(t.Context(), "acme", "nope", "alice"); !errors.Is(err, ErrUnknownPoll) {
		t.Errorf("RunNow unknown: %v, want ErrUnknownPoll", err)
	}

	// The same settings with a new Dial keep the job; a new pattern replaces it.
	entry := s.jobs["acme/inbox"].entry
	p2 := *e.poll
	p2.Dial = func(ctx context.Context) (Remote, error) { return e.remote.dial(ctx) }
	s.Set([]Poll{p2, mp})
	if got := s.jobs["acme/inbox"].entry; got != entry {
		t.Errorf("an unchanged poll got a new job: entry %d → %d", entry, got)
	}
	p2.Pattern = "*.x12"
	s.Set([]Poll{p2})
	infos := s.Polls()
	if len(infos) != 1 || infos[0].Key() != "acme/inbox" || infos[0].Pattern != "*.x12" {
		t.Errorf("Polls after the change: %+v", infos)
	}
	if got := s.jobs["acme/inbox"].entry; got == entry || got == 0 {
		t.Errorf("a changed poll kept its job (entry %d → %d)", entry, got)
	}
	if n := len(s.cron.Entries()); n != 1 {
		t.Errorf("%d cron entries, want 1", n)
	}
	if _, err := s.RunNow(t.Context(), "acme", "manual", "alice"); !errors.Is(err, ErrUnknownPoll) {
		t.Errorf("RunNow of a removed poll: %v, want ErrUnknownPoll", err)
	}
	s.Set(nil)
	if infos := s.Polls(); len(infos) != 0 {
		t.Errorf("Polls after Set(nil): %+v", infos)
	}
	if n := len(s.cron.Entries()); n != 0 {
		t.Errorf("%d cron entries after Set(nil), want 0", n)
	}
	stop()

	runs, err := e.store.ListRuns(t.Context(), spool.RunFilter{Partner: "acme", Poll: "inbox"})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) == 0 || runs[len(runs)-1].Trigger != "schedule" {
		t.Errorf("scheduled runs: %+v", runs)
	}
	for _, r := range runs {
		if r.Status == spool.RunRunning {
			t.Errorf("run %d still running after Stop", r.ID)
		}
	}
}

// RunNow refuses a poll already running in this process; Stop cancels the
// run in progress and waits for it to be recorded.
func TestSchedulerRunNowBusyAndStop(t *testing.T) {
	e := newEnv(t)
	e.remote.put("a.edi", "AAA", mtime)
	hold, entered := make(chan struct{}), make(chan string, 1)
	e.sink.hold, e.sink.entered = hold, entered
	defer close(hold)

	s := NewScheduler(e.runner)
	s.Set([]Poll{*e.poll})
	s.Start()
	done := make(chan error, 1)
	go func() {
		_, err := s.RunNow(context.Background(), "acme", "inbox", "bob")
		done <- err
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the run never reached the sink")
	}
	if _, err := s.RunNow(t.Context(), "acme", "inbox", "bob"); !errors.Is(err, spool.ErrPollBusy) {
		t.Errorf("RunNow while running: %v, want ErrPollBusy", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Stop(ctx)
	if ctx.Err() != nil {
		t.Fatal("Stop did not return within 5s")
	}
	// Stop returned: the run in progress was cancelled and recorded.
	runs, err := e.store.ListRuns(t.Context(), spool.RunFilter{Partner: "acme", Poll: "inbox"})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 {
		t.Fatalf("%d runs", len(runs))
	}
	wantRun(t, runs[0], spool.RunPartial, 1, 0, 0, 1)
	wantNames(t, "remote", e.remote.names(), "a.edi")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunNow: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunNow did not return after Stop")
	}
}

// everyMillisecond ticks as often as cron can.
type everyMillisecond struct{}

func (everyMillisecond) Next(t time.Time) time.Time { return t.Add(time.Millisecond) }

// watchStore is the real store, counting the runs begun after stopped is set.
type watchStore struct {
	*spool.SQLite
	stopped atomic.Bool
	late    atomic.Int32
}

func (w *watchStore) BeginRun(ctx context.Context, r spool.NewRun, lease time.Duration) (spool.PollRun, error) {
	if w.stopped.Load() {
		w.late.Add(1)
	}
	return w.SQLite.BeginRun(ctx, r, lease)
}

// Once Stop returns, no scheduled run starts: a tick cron launched just
// before Stop is waited for too.
func TestSchedulerStopWaitsForTicks(t *testing.T) {
	e := newEnv(t)
	for i := range 100 {
		ws := &watchStore{SQLite: e.store}
		r := *e.runner
		r.Store = ws
		s := NewScheduler(&r)
		p := *e.poll
		p.Schedule = everyMillisecond{}
		s.Set([]Poll{p})
		s.Start()
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		s.Stop(context.Background())
		ws.stopped.Store(true)
		time.Sleep(2 * time.Millisecond)
		if n := ws.late.Load(); n > 0 {
			t.Fatalf("iteration %d: %d runs began after Stop returned", i, n)
		}
	}
}
