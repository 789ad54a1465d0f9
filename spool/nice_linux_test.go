package spool

import (
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The writer's thread gets the nice value asked for when the process may
// raise it (root here, as in CI), and the spool works either way; without
// the right to raise it, WriterPriority says so.
func TestSQLiteWriterPriority(t *testing.T) {
	s, err := OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "spool.db"), &SQLiteOptions{WriterNice: -3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nice, perr := s.WriterPriority()
	canRaise := mayRaisePriority()
	switch {
	case canRaise && (perr != nil || nice != -3):
		t.Fatalf("allowed to raise it: WriterPriority %d %v, want -3", nice, perr)
	case !canRaise && (perr == nil || !errors.Is(perr, unix.EACCES) && !errors.Is(perr, unix.EPERM)):
		t.Fatalf("without the right to raise it: WriterPriority %d %v, want a permission error", nice, perr)
	}
	if perr == nil {
		// getpriority(2) answers 20 - nice for the thread.
		got, err := unix.Getpriority(unix.PRIO_PROCESS, s.writerTID)
		if err != nil || 20-got != -3 {
			t.Errorf("the writer thread %d has nice %d (%v), want -3", s.writerTID, 20-got, err)
		}
		if s.writerTID == unix.Gettid() {
			t.Error("the test's own thread was changed, not the writer's")
		}
	}
	if _, err := s.AddFile(t.Context(), NewFile{Partner: "acme", Channel: "sftp", Blob: BlobRef{SHA256: strings.Repeat("a", 64), Size: 1}}); err != nil {
		t.Fatal(err)
	}
	// None asked for: the writer's thread is left alone.
	s2, err := OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "spool.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if nice, err := s2.WriterPriority(); nice != 0 || err != nil || s2.writerTID != 0 {
		t.Errorf("no WriterNice: %d %v, thread %d", nice, err, s2.writerTID)
	}
}

// mayRaisePriority tells whether this process may lower a thread's nice
// value (root with CAP_SYS_NICE, or RLIMIT_NICE), trying it on a thread of
// its own and putting it back.
func mayRaisePriority() bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	was, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return false
	}
	if unix.Setpriority(unix.PRIO_PROCESS, tid, 20-was-1) != nil {
		return false
	}
	unix.Setpriority(unix.PRIO_PROCESS, tid, 20-was)
	return true
}
