package spool

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Writes that arrive while the WAL is being fsync'd join one open
// transaction, committed when the fsync ends, instead of a commit each
// (they would wait for that fsync anyway). Every write is still answered
// only after an fsync that covers it.
func TestSQLiteWriterGathersWritesDuringFsync(t *testing.T) {
	s, err := OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "spool.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	add := func(i int) error {
		_, err := s.AddFile(t.Context(), NewFile{Partner: "acme", Channel: "sftp", Blob: BlobRef{SHA256: strings.Repeat(fmt.Sprintf("%x", i%16), 64), Size: int64(i)}})
		return err
	}
	commits0, writes0 := s.WriterStats()

	entered, release := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	releaseSync := func() { released.Do(func() { close(release) }) }
	defer releaseSync() // before Close, which waits for the held fsync
	s.beforeSync = func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}
	first := make(chan error, 1)
	go func() { first <- add(0) }()
	<-entered // the first write is committed; its fsync is held

	const n = 10
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		go func() { errs <- add(i) }()
	}
	// The ten are in the writer's open transaction, not committed.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if len(s.writes) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer did not take the queued writes")
		}
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-errs:
		t.Fatalf("a write was answered before any fsync covered it: %v", err)
	default:
	}
	if c, _ := s.WriterStats(); c-commits0 != 1 {
		t.Fatalf("%d commits while the first fsync runs, want 1", c-commits0)
	}
	releaseSync()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	commits, writes := s.WriterStats()
	if commits-commits0 != 2 || writes-writes0 != n+1 {
		t.Errorf("%d commits carrying %d writes, want 2 carrying %d", commits-commits0, writes-writes0, n+1)
	}
}
