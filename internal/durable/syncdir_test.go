package durable

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A caller that arrives while an fsync of its directory runs must not be
// answered by that fsync (it may have begun before the caller's change) but
// by the next one, which it shares with everyone else who arrived meanwhile.
func TestCoalescerSharesTheNextFsync(t *testing.T) {
	c := &coalescer{paths: map[string]*pathSync{}}
	var calls atomic.Int32
	release := make(chan struct{})
	entered := make(chan int32, 16)
	fsync := func(string) error {
		n := calls.Add(1)
		entered <- n
		<-release
		return nil
	}
	first := make(chan error, 1)
	go func() { first <- c.sync("/d", fsync) }()
	if n := <-entered; n != 1 {
		t.Fatalf("first fsync is call %d", n)
	}
	// Ten callers arrive while fsync 1 runs.
	var wg sync.WaitGroup
	answered := make(chan int32, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.sync("/d", fsync); err != nil {
				t.Error(err)
			}
			answered <- calls.Load()
		}()
	}
	waitQueued(t, c, "/d")
	select {
	case <-answered:
		t.Fatal("a caller was answered by the fsync that was running when it came")
	case <-time.After(50 * time.Millisecond):
	}
	release <- struct{}{} // fsync 1 ends
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := <-entered; n != 2 {
		t.Fatalf("second fsync is call %d", n)
	}
	release <- struct{}{} // fsync 2 ends: all ten answered by it
	wg.Wait()
	close(answered)
	for n := range answered {
		if n != 2 {
			t.Errorf("a caller was answered after %d fsyncs, want 2", n)
		}
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("%d fsyncs for 11 callers, want 2", got)
	}
	c.mu.Lock()
	left := len(c.paths)
	c.mu.Unlock()
	if left != 0 {
		t.Errorf("%d idle paths still tracked", left)
	}
}

// waitQueued waits until a round is queued behind the running fsync of path.
func waitQueued(t *testing.T, c *coalescer, path string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		c.mu.Lock()
		p := c.paths[path]
		queued := p != nil && p.next != nil
		c.mu.Unlock()
		if queued {
			return
		}
	}
	t.Fatal("no round queued")
}

// The error of the fsync a caller waited for is the caller's error.
func TestCoalescerReportsTheSharedFsyncsError(t *testing.T) {
	c := &coalescer{paths: map[string]*pathSync{}}
	boom := errors.New("EIO")
	release := make(chan struct{})
	var calls atomic.Int32
	fsync := func(string) error {
		if calls.Add(1) == 1 {
			<-release
			return nil
		}
		return boom
	}
	first := make(chan error, 1)
	go func() { first <- c.sync("/d", fsync) }()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() { second <- c.sync("/d", fsync) }()
	waitQueued(t, c, "/d")
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first: %v", err)
	}
	if err := <-second; !errors.Is(err, boom) {
		t.Fatalf("second: %v, want %v", err, boom)
	}
}

func TestSyncDirRealDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := SyncDir(dir); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := SyncDir(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing dir: %v", err)
	}
}
