package spool_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edigw/edigw/spool"
	"github.com/edigw/edigw/spool/spooltest"
)

// pgDSN is the test server: trust auth on the developers' and CI's machines.
func pgDSN() string {
	if dsn := os.Getenv("EDIGW_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

var (
	pgOnce sync.Once
	pgErr  error
)

// needPostgres skips the test when no server answers, except on CI, where a
// missing server is a broken setup rather than a reason to pass.
func needPostgres(t *testing.T) {
	t.Helper()
	pgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgDSN())
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		pgErr = err
	})
	if pgErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at EDIGW_TEST_POSTGRES is unreachable: %v", pgErr)
		}
		t.Skipf("PostgreSQL unreachable (set EDIGW_TEST_POSTGRES): %v", pgErr)
	}
}

// pgSchemas gives each test one schema, so that opening again with the same
// t reopens it (the contract's durability tests rely on this).
var pgSchemas sync.Map // *testing.T → string

var notIdent = regexp.MustCompile(`[^a-z0-9_]+`)

func pgSchema(t *testing.T) string {
	t.Helper()
	needPostgres(t)
	if s, ok := pgSchemas.Load(t); ok {
		return s.(string)
	}
	var b [4]byte
	rand.Read(b[:])
	suffix := "_" + hex.EncodeToString(b[:])
	name := notIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	name = "t_" + strings.Trim(name, "_")
	name = name[:min(len(name), 63-len(suffix))] + suffix
	pgSchemas.Store(t, name)
	t.Cleanup(func() {
		pgSchemas.Delete(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgDSN())
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

func openPostgresOpts(t *testing.T, o spool.PostgresOptions) *spool.Postgres {
	t.Helper()
	o.Schema = pgSchema(t)
	s, err := spool.OpenPostgres(t.Context(), pgDSN(), &o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openPostgres(t *testing.T) spool.Store { return openPostgresOpts(t, spool.PostgresOptions{}) }

func TestPostgres(t *testing.T) {
	spooltest.Run(t, openPostgres)
}

// pgNodes opens n stores over t's schema, each with its own pool: n nodes.
func pgNodes(t *testing.T, n int) []*spool.Postgres {
	t.Helper()
	nodes := make([]*spool.Postgres, n)
	for i := range nodes {
		nodes[i] = openPostgresOpts(t, spool.PostgresOptions{MaxConns: 2})
		t.Cleanup(func() { nodes[i].Close() })
	}
	return nodes
}

// pgRaw is a plain connection to t's schema, as an operator's psql.
func pgRaw(t *testing.T) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = pgx.Identifier{pgSchema(t)}.Sanitize()
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPostgresConcurrentAddFile(t *testing.T) {
	nodes := pgNodes(t, 8)
	blob := spool.BlobRef{SHA256: strings.Repeat("ab", 32), Size: 10}
	for round := range 3 {
		partner := fmt.Sprint("acme-", round)
		files := make([]spool.File, len(nodes))
		var wg sync.WaitGroup
		for i, s := range nodes {
			wg.Go(func() {
				f, err := s.AddFile(t.Context(), spool.NewFile{Partner: partner, Channel: "sftp", Blob: blob})
				if err != nil {
					t.Error(err)
				}
				files[i] = f
			})
		}
		wg.Wait()
		var orig []spool.File
		for _, f := range files {
			if f.State == spool.StateReceived {
				orig = append(orig, f)
			}
		}
		if len(orig) != 1 {
			t.Fatalf("round %d: %d originals, want 1: %+v", round, len(orig), files)
		}
		for _, f := range files {
			if f.ID != orig[0].ID && (f.State != spool.StateDuplicate || f.DuplicateOf != orig[0].ID) {
				t.Errorf("round %d: %s is %s of %q, want a duplicate of %s", round, f.ID, f.State, f.DuplicateOf, orig[0].ID)
			}
		}
	}
}

func TestPostgresConcurrentInterchange(t *testing.T) {
	nodes := pgNodes(t, 8)
	// Copies received at the same time: which one is parsed first decides
	// the original (one received later is never an earlier one's duplicate).
	at := time.Now()
	var ids []spool.ID
	for i := range nodes {
		f, err := nodes[0].AddFile(t.Context(), spool.NewFile{Partner: "acme", Channel: "sftp", ReceivedAt: at,
			Blob: spool.BlobRef{SHA256: fmt.Sprintf("%064x", i+1), Size: 1}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, f.ID)
	}
	xs := make([]spool.Interchange, len(nodes))
	var wg sync.WaitGroup
	for i, s := range nodes {
		wg.Go(func() {
			x, _, err := s.AddInterchange(t.Context(), spool.NewInterchange{FileID: ids[i], Control: "000000042"})
			if err != nil {
				t.Error(err)
			}
			xs[i] = x
		})
	}
	wg.Wait()
	n := 0
	for _, x := range xs {
		if x.State == spool.StateParsed {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d originals of one control number, want 1: %+v", n, xs)
	}
}

func TestPostgresConcurrentNextControl(t *testing.T) {
	nodes := pgNodes(t, 8)
	const each = 50
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for _, s := range nodes {
		wg.Go(func() {
			last := int64(0)
			for range each {
				v, err := s.NextControl(t.Context(), "acme", "isa")
				if err != nil {
					t.Error(err)
					return
				}
				if v <= last {
					t.Errorf("%d after %d", v, last)
				}
				last = v
				mu.Lock()
				if seen[v] {
					t.Errorf("%d handed out twice", v)
				}
				seen[v] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != len(nodes)*each {
		t.Errorf("%d distinct numbers, want %d", len(seen), len(nodes)*each)
	}
	for v := int64(1); v <= int64(len(nodes)*each); v++ {
		if !seen[v] {
			t.Errorf("%d skipped", v)
		}
	}
}

func TestPostgresConcurrentClaim(t *testing.T) {
	nodes := pgNodes(t, 4)
	const n = 200
	for i := range n {
		if _, err := nodes[i%len(nodes)].AddFile(t.Context(), spool.NewFile{Partner: "acme", Channel: "sftp",
			Blob: spool.BlobRef{SHA256: fmt.Sprintf("%064x", i+1), Size: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	got := map[spool.ID]string{}
	var wg sync.WaitGroup
	for i, s := range nodes {
		for g := range 2 { // two workers per node
			owner := fmt.Sprintf("node-%d/%d", i, g)
			wg.Go(func() {
				for range n {
					items, err := s.Claim(t.Context(), spool.KindFile, []spool.State{spool.StateReceived}, owner, time.Hour, 5)
					if err != nil {
						t.Error(err)
						return
					}
					if len(items) == 0 {
						return
					}
					mu.Lock()
					for _, it := range items {
						if prev, dup := got[it.ID()]; dup {
							t.Errorf("%s claimed by %s and %s", it.ID(), prev, owner)
						}
						got[it.ID()] = owner
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(got) != n {
		t.Errorf("%d of %d items claimed", len(got), n)
	}
	for id, owner := range got {
		f, err := nodes[0].GetFile(t.Context(), id)
		if err != nil || f.LeaseOwner != owner {
			t.Errorf("%s: stored owner %q, claimed by %s (%v)", id, f.LeaseOwner, owner, err)
		}
	}
}

func TestPostgresConcurrentBeginRun(t *testing.T) {
	nodes := pgNodes(t, 4)
	for round := range 3 {
		var mu sync.Mutex
		var won []spool.PollRun
		var wg sync.WaitGroup
		for i, s := range nodes {
			wg.Go(func() {
				r, err := s.BeginRun(t.Context(), spool.NewRun{Partner: "acme", Poll: "inbox", Owner: fmt.Sprint("node-", i)}, time.Hour)
				switch {
				case err == nil:
					mu.Lock()
					won = append(won, r)
					mu.Unlock()
				case !errors.Is(err, spool.ErrPollBusy):
					t.Errorf("round %d: %v", round, err)
				}
			})
		}
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("round %d: %d winners, want 1: %+v", round, len(won), won)
		}
		won[0].Status = spool.RunOK
		if err := nodes[round%len(nodes)].FinishRun(t.Context(), won[0]); err != nil {
			t.Fatal(err)
		}
	}
}

// Nodes starting together on a fresh schema: one migrates, the others wait
// for it and find the schema current.
func TestPostgresConcurrentMigrate(t *testing.T) {
	schema := pgSchema(t)
	const n = 4
	stores := make([]*spool.Postgres, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = spool.OpenPostgres(t.Context(), pgDSN(), &spool.PostgresOptions{Schema: schema, MaxConns: 2})
		})
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Errorf("open %d: %v", i, errs[i])
			continue
		}
		if v, err := s.SchemaVersion(t.Context()); err != nil || v != 9 {
			t.Errorf("open %d: schema version %d %v, want 9", i, v, err)
		}
		s.Close()
	}
	var rows int
	if err := pgRaw(t).QueryRow(t.Context(), "SELECT COUNT(*) FROM schema_migrations").Scan(&rows); err != nil || rows != 9 {
		t.Errorf("schema_migrations has %d rows %v, want 9", rows, err)
	}
}

func TestPostgresRefusesNewerSchema(t *testing.T) {
	s := openPostgres(t)
	s.Close()
	if _, err := pgRaw(t).Exec(t.Context(), "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future.sql', now())"); err != nil {
		t.Fatal(err)
	}
	_, err := spool.OpenPostgres(t.Context(), pgDSN(), &spool.PostgresOptions{Schema: pgSchema(t)})
	if err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("open of a newer schema: %v", err)
	}
}

func TestPostgresEventsAppendOnly(t *testing.T) {
	s := openPostgres(t)
	defer s.Close()
	f, err := s.AddFile(t.Context(), spool.NewFile{Partner: "acme", Channel: "sftp", Blob: spool.BlobRef{SHA256: strings.Repeat("a", 64)}})
	if err != nil {
		t.Fatal(err)
	}
	db := pgRaw(t)
	for _, q := range []string{"UPDATE events SET actor = 'mallory'", "DELETE FROM events", "TRUNCATE events"} {
		if _, err := db.Exec(t.Context(), q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: error %v, want the append-only trigger", q, err)
		}
	}
	if evs, err := s.Events(t.Context(), f.ID); err != nil || len(evs) != 1 || evs[0].Actor != "system" {
		t.Errorf("events: %+v %v", evs, err)
	}
}

func TestPostgresCounterWraps(t *testing.T) {
	s := openPostgres(t)
	defer s.Close()
	if _, err := s.NextControl(t.Context(), "acme", "isa"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgRaw(t).Exec(t.Context(), "UPDATE counters SET value = $1 WHERE partner = 'acme'", spool.MaxControl-1); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int64{spool.MaxControl, 1, 2} {
		if v, err := s.NextControl(t.Context(), "acme", "isa"); err != nil || v != want {
			t.Errorf("NextControl = %d %v, want %d", v, err, want)
		}
	}
	// A block that does not fit before the maximum starts again at 1.
	if _, err := pgRaw(t).Exec(t.Context(), "UPDATE counters SET value = $1 WHERE partner = 'acme'", spool.MaxControl-5); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int64{spool.MaxControl - 4, 1, 5} {
		if v, err := s.ReserveControls(t.Context(), "acme", "isa", 4); err != nil || v != want {
			t.Errorf("ReserveControls(4) = %d %v, want %d", v, err, want)
		}
	}
}

func TestPostgresClock(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 6789, time.UTC)
	s := openPostgresOpts(t, spool.PostgresOptions{Clock: func() time.Time { return now }})
	defer s.Close()
	f, err := s.AddFile(t.Context(), spool.NewFile{Partner: "p", Channel: "sftp", Blob: spool.BlobRef{SHA256: strings.Repeat("a", 64)}})
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Truncate(time.Microsecond); !f.ReceivedAt.Equal(want) || !f.CreatedAt.Equal(want) || f.ReceivedAt.Location() != time.UTC {
		t.Errorf("times %v %v, want %v UTC", f.ReceivedAt, f.CreatedAt, want)
	}
	// The clock, not the server's: a lease far in the future of the server
	// is still valid.
	items, err := s.Claim(t.Context(), spool.KindFile, []spool.State{spool.StateReceived}, "w", time.Minute, 1)
	if err != nil || len(items) != 1 || !items[0].Work().LeaseUntil.Equal(now.Truncate(time.Microsecond).Add(time.Minute)) {
		t.Errorf("claim under the clock: %+v %v", items, err)
	}
}

func TestPostgresBadDSN(t *testing.T) {
	if _, err := spool.OpenPostgres(t.Context(), "postgres://%zz", nil); !errors.Is(err, spool.ErrInvalid) {
		t.Errorf("OpenPostgres with a malformed DSN: %v", err)
	}
}
