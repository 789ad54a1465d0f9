package spool_test

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edigw/edigw/spool"
	"github.com/edigw/edigw/spool/spooltest"
)

// dbPaths gives each test one database file, so that opening again with the
// same t reopens it (the contract's durability tests rely on this).
var dbPaths sync.Map // *testing.T → string

func dbPath(t *testing.T) string {
	if p, ok := dbPaths.Load(t); ok {
		return p.(string)
	}
	p := filepath.Join(t.TempDir(), "spool.db")
	dbPaths.Store(t, p)
	t.Cleanup(func() { dbPaths.Delete(t) })
	return p
}

func openSQLite(t *testing.T) spool.Store {
	t.Helper()
	s, err := spool.OpenSQLite(t.Context(), dbPath(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSQLite(t *testing.T) {
	spooltest.Run(t, openSQLite)
}

func TestLocalBlobs(t *testing.T) {
	spooltest.RunBlobs(t, func(t *testing.T) spool.Blobs {
		b, err := spool.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// raw opens the database file directly, as another process would.
func raw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLiteDurabilitySettings(t *testing.T) {
	path := dbPath(t)
	s := openSQLite(t)
	defer s.Close()
	var mode string
	if err := raw(t, path).QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q %v, want wal", mode, err)
	}
	if v, err := s.(*spool.SQLite).SchemaVersion(t.Context()); err != nil || v != 9 {
		t.Errorf("schema version %d %v", v, err)
	}
}

// The writer commits without syncing and fsyncs the WAL itself: writes
// keep being answered when a checkpoint empties the WAL under it, and
// what they wrote is there after a reopen.
func TestSQLiteWALSyncedByWriter(t *testing.T) {
	path := dbPath(t)
	s := openSQLite(t)
	var ids []spool.ID
	for i := range 3 {
		f, err := s.AddFile(t.Context(), spool.NewFile{Partner: "acme", Channel: "sftp", Blob: spool.BlobRef{SHA256: strings.Repeat(fmt.Sprint(i), 64)}})
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		ids = append(ids, f.ID)
		if i == 1 {
			var busy, logged, done int
			if err := raw(t, path).QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logged, &done); err != nil || busy != 0 {
				t.Fatalf("checkpoint: busy %d %v", busy, err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSQLite(t)
	defer s.Close()
	for _, id := range ids {
		if _, err := s.GetFile(t.Context(), id); err != nil {
			t.Errorf("after reopen: %v", err)
		}
	}
}

func TestSQLiteEventsAppendOnly(t *testing.T) {
	path := dbPath(t)
	s := openSQLite(t)
	defer s.Close()
	blobs, err := spool.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ref, err := blobs.Put(t.Context(), strings.NewReader("ISA*00*~"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.AddFile(t.Context(), spool.NewFile{Partner: "acme", Channel: "sftp", Blob: ref})
	if err != nil {
		t.Fatal(err)
	}
	db := raw(t, path)
	for _, q := range []string{"UPDATE events SET actor = 'mallory'", "DELETE FROM events"} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: error %v, want the append-only trigger", q, err)
		}
	}
	if evs, err := s.Events(t.Context(), f.ID); err != nil || len(evs) != 1 || evs[0].Actor != "system" {
		t.Errorf("events: %+v %v", evs, err)
	}
}

func TestSQLiteCounterWraps(t *testing.T) {
	path := dbPath(t)
	s := openSQLite(t)
	defer s.Close()
	if _, err := s.NextControl(t.Context(), "acme", "isa"); err != nil {
		t.Fatal(err)
	}
	if _, err := raw(t, path).Exec("UPDATE counters SET value = ? WHERE partner = 'acme'", spool.MaxControl-1); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int64{spool.MaxControl, 1, 2} {
		if v, err := s.NextControl(t.Context(), "acme", "isa"); err != nil || v != want {
			t.Errorf("NextControl = %d %v, want %d", v, err, want)
		}
	}
	// A block that does not fit before the maximum starts again at 1.
	if _, err := raw(t, path).Exec("UPDATE counters SET value = ? WHERE partner = 'acme'", spool.MaxControl-5); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int64{spool.MaxControl - 4, 1, 5} {
		if v, err := s.ReserveControls(t.Context(), "acme", "isa", 4); err != nil || v != want {
			t.Errorf("ReserveControls(4) = %d %v, want %d", v, err, want)
		}
	}
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	path := dbPath(t)
	s := openSQLite(t)
	s.Close()
	if _, err := raw(t, path).Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', 0)"); err != nil {
		t.Fatal(err)
	}
	_, err := spool.OpenSQLite(t.Context(), path, nil)
	if err == nil || !strings.Contains(err.Error(), "newer") && !strings.Contains(err.Error(), "version 99") {
		t.Errorf("open of a newer schema: %v", err)
	}
}

func TestSQLiteClock(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 6789, time.UTC)
	s, err := spool.OpenSQLite(t.Context(), dbPath(t), &spool.SQLiteOptions{Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := s.AddFile(t.Context(), spool.NewFile{Partner: "p", Channel: "sftp", Blob: spool.BlobRef{SHA256: strings.Repeat("a", 64)}})
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Truncate(time.Microsecond); !f.ReceivedAt.Equal(want) || !f.CreatedAt.Equal(want) || f.ReceivedAt.Location() != time.UTC {
		t.Errorf("times %v %v, want %v UTC", f.ReceivedAt, f.CreatedAt, want)
	}
}

func TestSQLiteBadPath(t *testing.T) {
	for _, p := range []string{"", "file:x.db", "x.db?mode=ro"} {
		if _, err := spool.OpenSQLite(t.Context(), p, nil); !errors.Is(err, spool.ErrInvalid) {
			t.Errorf("OpenSQLite(%q): %v", p, err)
		}
	}
}

// BenchmarkReceiveAndThreeSteps measures one file's AddFile and three
// transitions (four write transactions, each answered after the WAL's fsync).
func BenchmarkReceiveAndThreeSteps(b *testing.B) {
	s, err := spool.OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := b.Context()
	i := 0
	for b.Loop() {
		i++
		f, err := s.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "sftp",
			Blob: spool.BlobRef{SHA256: fmt.Sprintf("%064x", i), Size: 100}})
		if err != nil {
			b.Fatal(err)
		}
		for _, step := range [][2]spool.State{{spool.StateReceived, spool.StateParsed}, {spool.StateParsed, spool.StateAcked}, {spool.StateAcked, spool.StateMapped}} {
			if err := s.Transition(ctx, f.ID, step[0], step[1]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// Group commit: writes from many goroutines share transactions, yet each is
// all or nothing on its own — a failing write (here a transition from the
// wrong state) leaves the others in its batch committed.
func TestSQLiteGroupCommitIsolation(t *testing.T) {
	s := openSQLite(t)
	ctx := t.Context()
	blob := spool.BlobRef{SHA256: strings.Repeat("a", 64), Size: 1}
	const n = 64
	ids := make([]spool.ID, n)
	for i := range ids {
		f, err := s.AddFile(ctx, spool.NewFile{Partner: "p", Channel: "sftp", Name: fmt.Sprint(i), Blob: blob, NoDedupe: true})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = f.ID
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := spool.StateReceived
			if i%2 == 1 {
				from = spool.StateAcked // wrong: these must fail alone
			}
			errs[i] = s.Transition(ctx, id, from, spool.StateParsed)
		}()
	}
	wg.Wait()
	for i, id := range ids {
		f, err := s.GetFile(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := spool.StateParsed
		if i%2 == 1 {
			want = spool.StateReceived
			if !errors.Is(errs[i], spool.ErrConflict) {
				t.Errorf("%d: err %v, want a conflict", i, errs[i])
			}
		} else if errs[i] != nil {
			t.Errorf("%d: %v", i, errs[i])
		}
		if f.State != want {
			t.Errorf("%d: state %s, want %s", i, f.State, want)
		}
		evs, _ := s.Events(ctx, id)
		if wantEv := map[bool]int{true: 1, false: 2}[i%2 == 1]; len(evs) != wantEv {
			t.Errorf("%d: %d events, want %d (a failed write leaves no event)", i, len(evs), wantEv)
		}
	}
}
