package spool

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver (pure Go)
)

//go:embed migrations/sqlite/*.sql
var sqliteMigrations embed.FS

// SQLite is the single-node [Store]: one database file in WAL mode, its WAL
// fsync'd before any write is answered (see writer), written through one
// connection and read through a separate read-only pool (see the package
// documentation for why).
type SQLite struct {
	w     *sql.DB
	r     *readPool
	clock func() time.Time

	// Group commit: writes queue here and one goroutine runs whatever is
	// queued in one transaction (each in its own savepoint), so concurrent
	// callers share one fsync of the WAL instead of paying one each.
	writes     chan *writeReq
	writerDone chan struct{}
	// Committed batches wait here for the fsync of the WAL that makes them
	// durable (see writer).
	synced   chan []*writeReq
	syncDone chan struct{}
	// syncBusy is set while the syncer fsyncs; syncIdle gets a token when
	// it stops (see writer).
	syncBusy atomic.Bool
	syncIdle chan struct{}
	// beforeSync, when set (tests), runs before each fsync of the WAL.
	beforeSync func()
	walPath    string
	wal        *os.File // the syncer's
	closeOnce  sync.Once
	stmts      map[string]*sql.Stmt // prepared on the writer connection; only the writer goroutine uses them
	wanted     map[string]bool      // queries to prepare after the current batch

	// Group commits and the writes they carried (WriterStats).
	commits, committedWrites atomic.Int64

	// The writer thread's priority, as asked for (WriterPriority).
	writerNice int
	writerTID  int
	niceErr    error
	niceSet    chan struct{}
}

// wtx is a write transaction whose statements are prepared once on the
// single writer connection and reused: the pure-Go SQLite spends a good
// part of a write parsing SQL, and writes are serialised, so parsing is on
// the critical path of every upload and stage.
type wtx struct {
	*sql.Tx
	s *SQLite
}

// stmt returns the prepared statement for query, or nil the first time: a
// statement cannot be prepared on the writer connection while this
// transaction holds it, so it is noted and prepared after the commit.
func (t *wtx) stmt(ctx context.Context, query string) *sql.Stmt {
	if st, ok := t.s.stmts[query]; ok {
		return t.Tx.StmtContext(ctx, st)
	}
	if len(t.s.stmts)+len(t.s.wanted) < maxStmts {
		if t.s.wanted == nil {
			t.s.wanted = map[string]bool{}
		}
		t.s.wanted[query] = true
	}
	return nil
}

// maxStmts bounds the statement cache (queries with IN lists vary).
const maxStmts = 256

// prepareWanted prepares the statements the last batch asked for, now that
// the writer connection is free.
func (s *SQLite) prepareWanted() {
	for q := range s.wanted {
		if st, err := s.w.Prepare(q); err == nil {
			if s.stmts == nil {
				s.stmts = map[string]*sql.Stmt{}
			}
			s.stmts[q] = st
		}
	}
	clear(s.wanted)
}

// The writer's statements run without their caller's cancellation: the
// batch checks a caller's context before running its write, and a
// statement takes microseconds. With a context that can be cancelled, the
// driver starts a goroutine and a progress handler per statement to
// interrupt it, which cost the writer, what every write waits for, about
// a tenth of its time.

func (t *wtx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx)
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *wtx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = context.WithoutCancel(ctx)
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t *wtx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = context.WithoutCancel(ctx)
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

type writeReq struct {
	ctx  context.Context
	fn   func(tx *wtx, now time.Time) error
	done chan error
}

// maxBatch bounds one group commit.
const maxBatch = 128

// SQLiteOptions tunes OpenSQLite; the zero value is the default.
type SQLiteOptions struct {
	// BusyTimeout is how long a statement waits for another process's lock
	// (the CLI, a backup) before failing; default 10s.
	BusyTimeout time.Duration
	// Readers is the size of the read pool; default 4.
	Readers int
	// WriterNice, when not 0, is the OS priority (nice value, -20..19) of
	// the thread that runs the single writer, which every write waits for:
	// on a busy machine it otherwise waits for the CPU behind the work that
	// waits for it. Raising it (a negative value) needs CAP_SYS_NICE or a
	// matching RLIMIT_NICE (systemd: LimitNICE=); when it is refused the
	// writer runs at the process's priority and WriterPriority says why.
	WriterNice int
	// Clock replaces time.Now (tests).
	Clock func() time.Time
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed) the spool database at path and
// migrates its schema to the version this binary knows. It refuses a
// database migrated by a newer binary.
func OpenSQLite(ctx context.Context, path string, o *SQLiteOptions) (*SQLite, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("spool: open sqlite: %w: path %q (a plain file path is required)", ErrInvalid, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("spool: open sqlite: %w", err)
	}
	var opt SQLiteOptions
	if o != nil {
		opt = *o
	}
	if opt.BusyTimeout <= 0 {
		opt.BusyTimeout = 10 * time.Second
	}
	if opt.Readers <= 0 {
		opt.Readers = 4
	}
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	busy := strconv.FormatInt(opt.BusyTimeout.Milliseconds(), 10)
	common := "_pragma=busy_timeout(" + busy + ")&_pragma=foreign_keys(1)"

	// BEGIN IMMEDIATE: a write transaction takes the write lock at once, so
	// another process's writer makes it wait (busy_timeout) instead of
	// failing a read→write upgrade with SQLITE_BUSY.
	// synchronous=NORMAL: a commit does not fsync the WAL; the syncer does,
	// once for all the batches committed meanwhile, before any of their
	// callers is answered (see writer).
	// temp_store=MEMORY: the writer runs each caller in a savepoint, and a
	// savepoint copies every page it changes to a sub-journal. With the
	// default that journal spills to a temporary file beyond 64 KiB, which
	// cost a file create, an unlink and two 4 KiB writes per page on every
	// batch (half the writer's file writes). It only serves a rollback to
	// the savepoint, never recovery, so memory is the right place for it.
	w, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=temp_store(MEMORY)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("spool: open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &SQLite{w: w, clock: opt.Clock, writes: make(chan *writeReq, maxBatch), writerDone: make(chan struct{}),
		synced: make(chan []*writeReq, 64), syncDone: make(chan struct{}), syncIdle: make(chan struct{}, 1), walPath: path + "-wal",
		writerNice: opt.WriterNice, niceSet: make(chan struct{})}
	go s.writer()
	<-s.niceSet
	go s.syncer()
	if err := s.checkPragmas(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("spool: open sqlite %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("spool: open sqlite %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("spool: open sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(opt.Readers)
	r.SetMaxIdleConns(opt.Readers)
	s.r = &readPool{DB: r}
	return s, nil
}

// readPool is the read-only connection pool with its statements prepared
// once: parsing SQL is a good part of a small query in the pure-Go SQLite,
// and the idle workers' claim probes run all the time.
type readPool struct {
	*sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// stmt returns query prepared on the pool (database/sql prepares it on
// each connection as it is used there), or nil once the cache is full
// (queries with IN lists vary).
func (p *readPool) stmt(ctx context.Context, query string) *sql.Stmt {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.stmts[query]; ok {
		return st
	}
	if len(p.stmts) >= maxStmts {
		return nil
	}
	st, err := p.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil // the plain query reports the error
	}
	if p.stmts == nil {
		p.stmts = map[string]*sql.Stmt{}
	}
	p.stmts[query] = st
	return st
}

func (p *readPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.DB.QueryContext(ctx, query, args...)
}

func (p *readPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.DB.QueryRowContext(ctx, query, args...)
}

// Close closes the statements and the pool.
func (p *readPool) Close() error {
	p.mu.Lock()
	for _, st := range p.stmts {
		st.Close()
	}
	p.mu.Unlock()
	return p.DB.Close()
}

// checkPragmas verifies the writer really runs with the settings durability
// depends on (a DSN typo would otherwise pass silently).
func (s *SQLite) checkPragmas(ctx context.Context) error {
	var mode string
	var syncLevel, fk, temp int
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if err := s.w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncLevel); err != nil {
		return err
	}
	if err := s.w.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return err
	}
	if err := s.w.QueryRowContext(ctx, "PRAGMA temp_store").Scan(&temp); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") || syncLevel != 1 || fk != 1 || temp != 2 {
		return fmt.Errorf("pragmas not in effect: journal_mode=%s synchronous=%d foreign_keys=%d temp_store=%d", mode, syncLevel, fk, temp)
	}
	return nil
}

// SchemaVersion returns the highest migration applied.
func (s *SQLite) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.w.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := range ms {
		if ms[i].version != i+1 {
			return nil, fmt.Errorf("migration %s: versions must run 1, 2, 3, … without gaps", ms[i].name)
		}
	}
	return ms, nil
}

// migrate applies each embedded migration not yet recorded, each in its own
// transaction with its row in schema_migrations.
func (s *SQLite) migrate(ctx context.Context) error {
	ms, err := loadMigrations(sqliteMigrations, "migrations/sqlite")
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	have, err := s.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if have > len(ms) {
		return fmt.Errorf("migrate: database schema is version %d, this binary knows up to %d: upgrade edigw", have, len(ms))
	}
	for _, m := range ms[have:] {
		err := s.write(ctx, func(tx *wtx, now time.Time) error {
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.version).Scan(&n); err != nil || n > 0 {
				return err // another process applied it meanwhile
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", m.version, m.name, micros(now))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.name, err)
		}
	}
	return nil
}

// Close closes both pools.
func (s *SQLite) Close() error {
	s.closeOnce.Do(func() {
		if s.writes != nil {
			close(s.writes)
			<-s.writerDone
			close(s.synced)
			<-s.syncDone
		}
		if s.wal != nil {
			s.wal.Close()
		}
		for _, st := range s.stmts {
			st.Close()
		}
	})
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	return errors.Join(errs...)
}

// ---- helpers ----

func (s *SQLite) now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func norm(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

// write runs fn in a write transaction on the single writer connection and
// returns once that transaction is committed and durable (the WAL fsync'd).
// fn's changes are all or nothing: it runs in a savepoint of a transaction
// that may carry other callers' writes too (group commit).
func (s *SQLite) write(ctx context.Context, fn func(tx *wtx, now time.Time) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	defer func() {
		if r := recover(); r != nil { // send on a closed channel: the store is closed
			err = errors.New("spool: store is closed")
		}
	}()
	s.writes <- req
	return <-req.done
}

// writer runs queued writes: it takes everything waiting (up to maxBatch)
// into one transaction and commits it without an fsync (synchronous=NORMAL
// in WAL mode: the commit's frames are written to the WAL, not synced),
// hands the batch to the syncer and goes on with the next batch while the
// WAL is fsync'd. The fsync, about a millisecond here, was some 40 % of the
// writer's time, and the writer is what the pipeline waits for; now it
// overlaps the next batch's statements. Nobody is told a write succeeded
// before an fsync that covers it, so "committed" still means durable.
// Other connections may read a commit a moment before it is durable, which
// is harmless: whatever they do about it is a later write, answered only
// after a later fsync, which covers this commit too.
//
// While the syncer is still fsyncing, the writer keeps its transaction open
// and adds the writes that arrive meanwhile, committing when the syncer is
// done (or the batch is full): those writes would wait for that fsync to end
// anyway, and a commit costs a transaction's worth of WAL frames whatever
// it carries. In bench e2e (1000 files, 16 connections) batches grew from
// 1.9-2.0 writes to 4.2-4.6, and the WAL writes (pwrite calls) fell from
// about 92,000 to 53,000.
func (s *SQLite) writer() {
	defer close(s.writerDone)
	if s.writerNice != 0 {
		// The priority belongs to the OS thread: keep this goroutine on it
		// (the thread ends with the goroutine).
		runtime.LockOSThread()
		s.writerTID, s.niceErr = setThreadNice(s.writerNice)
	}
	close(s.niceSet)
	for first := range s.writes {
		b := s.beginBatch()
		b.run(first)
	gather:
		for len(b.reqs) < maxBatch {
			select {
			case r, ok := <-s.writes:
				if !ok {
					break gather
				}
				b.run(r)
				continue
			default:
			}
			if !s.syncBusy.Load() {
				break
			}
			select {
			case r, ok := <-s.writes:
				if !ok {
					break gather
				}
				b.run(r)
			case <-s.syncIdle:
				if s.syncBusy.Load() {
					continue // a token left from an earlier round
				}
				break gather
			}
		}
		committed := b.commit()
		if len(committed) > 0 {
			s.commits.Add(1)
			s.committedWrites.Add(int64(len(committed)))
			s.synced <- committed
		}
		if len(s.wanted) > 0 {
			s.prepareWanted()
		}
	}
}

// syncer fsyncs the WAL for the batches the writer committed (all those
// waiting, with one fsync) and then answers their callers.
func (s *SQLite) syncer() {
	defer close(s.syncDone)
	for first := range s.synced {
		s.syncBusy.Store(true)
		batches := [][]*writeReq{first}
	gather:
		for {
			select {
			case b, ok := <-s.synced:
				if !ok {
					break gather
				}
				batches = append(batches, b)
			default:
				break gather
			}
		}
		if s.beforeSync != nil {
			s.beforeSync()
		}
		err := s.syncWAL()
		if err != nil {
			err = fmt.Errorf("spool: committed but not made durable: fsync of the WAL: %w", err)
		}
		for _, b := range batches {
			for _, r := range b {
				r.done <- err
			}
		}
		s.syncBusy.Store(false)
		select {
		case s.syncIdle <- struct{}{}:
		default:
		}
	}
}

// syncWAL fsyncs the WAL file, reopening it if SQLite replaced it (it
// removes the WAL when its last connection closes).
func (s *SQLite) syncWAL() error {
	if s.wal != nil {
		a, aerr := s.wal.Stat()
		b, berr := os.Stat(s.walPath)
		if aerr != nil || berr != nil || !os.SameFile(a, b) {
			s.wal.Close()
			s.wal = nil
		}
	}
	if s.wal == nil {
		f, err := os.Open(s.walPath)
		if err != nil {
			return err
		}
		s.wal = f
	}
	return s.wal.Sync()
}

// WriterPriority reports the nice value asked for the writer's thread
// (SQLiteOptions.WriterNice; 0: none) and why it could not be set.
func (s *SQLite) WriterPriority() (nice int, err error) {
	if s.niceErr != nil {
		return 0, fmt.Errorf("spool: the writer runs at the process's priority: nice %d: %w", s.writerNice, s.niceErr)
	}
	return s.writerNice, nil
}

// WriterStats returns how many group commits the writer made and how many
// writes they carried (bench e2e prints them).
func (s *SQLite) WriterStats() (commits, writes int64) {
	return s.commits.Load(), s.committedWrites.Load()
}

// batch is one group commit: writes run in one transaction, each in its
// own savepoint, so one caller's failure does not undo the others'.
type batch struct {
	s       *SQLite
	tx      *wtx
	err     error // the transaction could not begin
	reqs    []*writeReq
	results []error
	ok      int
}

func (s *SQLite) beginBatch() *batch {
	b := &batch{s: s}
	stx, err := s.w.BeginTx(context.Background(), nil)
	if err != nil {
		b.err = err
		return b
	}
	b.tx = &wtx{Tx: stx, s: s}
	return b
}

// run runs r's function in a savepoint of the batch's transaction.
func (b *batch) run(r *writeReq) {
	b.reqs = append(b.reqs, r)
	b.results = append(b.results, b.runOne(r))
}

func (b *batch) runOne(r *writeReq) error {
	if b.err != nil {
		return b.err
	}
	if err := r.ctx.Err(); err != nil {
		return err
	}
	tx := b.tx
	if _, err := tx.Exec("SAVEPOINT w"); err != nil {
		return err
	}
	err := r.fn(tx, b.s.now())
	if err != nil {
		if _, rerr := tx.Exec("ROLLBACK TO w"); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if _, rerr := tx.Exec("RELEASE w"); rerr != nil && err == nil {
		err = rerr
	}
	if err == nil {
		b.ok++
	}
	return err
}

// commit commits the batch. It answers the callers whose writes failed (all
// of them when nothing was committed) and returns the others, committed,
// for the syncer.
func (b *batch) commit() (committed []*writeReq) {
	defer func() {
		for i, r := range b.reqs {
			if b.results[i] == nil && committed != nil {
				continue
			}
			r.done <- b.results[i]
		}
	}()
	if b.err != nil {
		return nil
	}
	if b.ok == 0 {
		b.tx.Rollback()
		return nil
	}
	if err := b.tx.Commit(); err != nil {
		for i := range b.results {
			if b.results[i] == nil {
				b.results[i] = err
			}
		}
		return nil
	}
	committed = make([]*writeReq, 0, b.ok)
	for i, r := range b.reqs {
		if b.results[i] == nil {
			committed = append(committed, r)
		}
	}
	return committed
}

type scanner interface{ Scan(dest ...any) error }

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func nullJSON(b json.RawMessage) sql.NullString {
	return sql.NullString{String: string(b), Valid: len(b) > 0}
}

func rawJSON(ns sql.NullString) json.RawMessage {
	if !ns.Valid || ns.String == "" {
		return nil
	}
	return json.RawMessage(ns.String)
}

func checkJSON(what string, b json.RawMessage) error {
	if len(b) > 0 && !json.Valid(b) {
		return fmt.Errorf("%w: %s is not valid JSON", ErrInvalid, what)
	}
	return nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// workTable returns the table holding a unit of work with this id.
func workTable(id ID) (string, error) {
	switch id.Kind() {
	case KindFile:
		return "files", nil
	case KindDocument:
		return "documents", nil
	}
	return "", fmt.Errorf("%w: %q is not a file or document id", ErrInvalid, id)
}

const workCols = "state, retry_of, attempts, next_attempt_at, last_error, lease_owner, lease_until"

func workDest(w *Work, next, until *int64) []any {
	return []any{&w.State, &w.RetryOf, &w.Attempts, next, &w.LastError, &w.LeaseOwner, until}
}

const fileCols = "id, partner, channel, direction, name, remote_path, sha256, size, received_at, duplicate_of, meta, " +
	workCols + ", created_at, updated_at"

func scanFile(sc scanner) (File, error) {
	var f File
	var dup, meta sql.NullString
	var received, next, until, created, updated int64
	dest := []any{&f.ID, &f.Partner, &f.Channel, &f.Direction, &f.Name, &f.RemotePath, &f.Blob.SHA256, &f.Blob.Size, &received, &dup, &meta}
	dest = append(dest, workDest(&f.Work, &next, &until)...)
	dest = append(dest, &created, &updated)
	if err := sc.Scan(dest...); err != nil {
		return File{}, err
	}
	f.ReceivedAt, f.NextAttemptAt, f.LeaseUntil = fromMicros(received), fromMicros(next), fromMicros(until)
	f.CreatedAt, f.UpdatedAt = fromMicros(created), fromMicros(updated)
	f.DuplicateOf, f.Meta = ID(dup.String), rawJSON(meta)
	return f, nil
}

const ixCols = "id, file_id, seq, partner, control, sender, receiver, version, state, duplicate_of, received_at, " +
	"ack_kind, ack_status, ack_control, ack_sha256, ack_size, ack_at, meta, created_at, updated_at"

func scanInterchange(sc scanner) (Interchange, error) {
	var x Interchange
	var dup, meta sql.NullString
	var received, ackAt, created, updated int64
	err := sc.Scan(&x.ID, &x.FileID, &x.Seq, &x.Partner, &x.Control, &x.Sender, &x.Receiver, &x.Version, &x.State, &dup, &received,
		&x.Ack.Kind, &x.Ack.Status, &x.Ack.Control, &x.Ack.Blob.SHA256, &x.Ack.Blob.Size, &ackAt, &meta, &created, &updated)
	if err != nil {
		return Interchange{}, err
	}
	x.DuplicateOf, x.Meta = ID(dup.String), rawJSON(meta)
	x.ReceivedAt, x.Ack.At, x.CreatedAt, x.UpdatedAt = fromMicros(received), fromMicros(ackAt), fromMicros(created), fromMicros(updated)
	return x, nil
}

const docCols = "id, file_id, interchange_id, seq, partner, type, group_control, set_control, business_key, idempotency_key, " +
	"mapped_sha256, mapped_size, resp_status, resp_sha256, resp_size, resp_inline, resp_at, meta, " + workCols + ", created_at, updated_at"

func scanDocument(sc scanner) (Document, error) {
	var d Document
	var ix, meta sql.NullString
	var respAt, next, until, created, updated int64
	dest := []any{&d.ID, &d.FileID, &ix, &d.Seq, &d.Partner, &d.Type, &d.GroupControl, &d.SetControl, &d.BusinessKey, &d.IdempotencyKey,
		&d.Mapped.SHA256, &d.Mapped.Size, &d.Response.Status, &d.Response.Body.SHA256, &d.Response.Body.Size, &d.Response.Inline, &respAt, &meta}
	dest = append(dest, workDest(&d.Work, &next, &until)...)
	dest = append(dest, &created, &updated)
	if err := sc.Scan(dest...); err != nil {
		return Document{}, err
	}
	d.InterchangeID, d.Meta = ID(ix.String), rawJSON(meta)
	d.Response.At, d.NextAttemptAt, d.LeaseUntil = fromMicros(respAt), fromMicros(next), fromMicros(until)
	d.CreatedAt, d.UpdatedAt = fromMicros(created), fromMicros(updated)
	return d, nil
}

const eventCols = "seq, subject, at, actor, kind, from_state, to_state, message, detail"

func scanEvent(sc scanner) (Event, error) {
	var e Event
	var at int64
	var detail sql.NullString
	if err := sc.Scan(&e.Seq, &e.Subject, &at, &e.Actor, &e.Kind, &e.From, &e.To, &e.Message, &detail); err != nil {
		return Event{}, err
	}
	e.At, e.Detail = fromMicros(at), rawJSON(detail)
	return e, nil
}

func insertEvent(ctx context.Context, tx *wtx, e Event) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO events (subject, at, actor, kind, from_state, to_state, message, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		e.Subject, micros(e.At), e.Actor, e.Kind, e.From, e.To, e.Message, nullJSON(e.Detail))
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}

func notFound(err error, id ID) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return err
}

// ---- Recorder ----

// AddFile implements [Recorder].
func (s *SQLite) AddFile(ctx context.Context, nf NewFile) (File, error) {
	if nf.Partner == "" || nf.Channel == "" {
		return File{}, fmt.Errorf("spool: add file: %w: partner and channel are required", ErrInvalid)
	}
	if err := nf.Blob.Check(); err != nil {
		return File{}, fmt.Errorf("spool: add file: %w", err)
	}
	if nf.Direction == "" {
		nf.Direction = Inbound
	}
	if nf.Direction != Inbound && nf.Direction != Outbound {
		return File{}, fmt.Errorf("spool: add file: %w: direction %q", ErrInvalid, nf.Direction)
	}
	if err := errors.Join(checkJSON("meta", nf.Meta), nf.Lease.check(), nf.checkInline()); err != nil {
		return File{}, fmt.Errorf("spool: add file: %w", err)
	}
	actor := cmp.Or(nf.Actor, "system")
	var f File
	err := s.write(ctx, func(tx *wtx, now time.Time) error {
		if err := insertInline(ctx, tx, nf.Inline); err != nil {
			return err
		}
		received := cmpOrTime(norm(nf.ReceivedAt), now)
		id, err := NewID(KindFile, now)
		if err != nil {
			return err
		}
		var dupOf string
		if !nf.NoDedupe {
			q := "SELECT id FROM files WHERE partner = ? AND sha256 = ? AND duplicate_of IS NULL AND received_at <= ?"
			args := []any{nf.Partner, nf.Blob.SHA256, micros(received)}
			if nf.DedupeWindow > 0 {
				q += " AND received_at >= ?"
				args = append(args, micros(received.Add(-nf.DedupeWindow)))
			}
			err := tx.QueryRowContext(ctx, q+" ORDER BY received_at, id LIMIT 1", args...).Scan(&dupOf)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("dedupe: %w", err)
			}
		}
		state, msg := StateReceived, ""
		if dupOf != "" {
			state, msg = StateDuplicate, "same content as "+dupOf
		}
		lease := nf.Lease
		if state == StateDuplicate {
			lease = Lease{}
		}
		f, err = scanFile(tx.QueryRowContext(ctx, `INSERT INTO files (id, partner, channel, direction, name, remote_path, sha256, size,
			received_at, duplicate_of, meta, state, next_attempt_at, created_at, updated_at, lease_owner, lease_until)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING `+fileCols,
			id, nf.Partner, nf.Channel, nf.Direction, nf.Name, nf.RemotePath, nf.Blob.SHA256, nf.Blob.Size,
			micros(received), nullString(dupOf), nullJSON(nf.Meta), state, micros(now), micros(now), micros(now),
			lease.Owner, micros(lease.until(now))))
		if err != nil {
			return err
		}
		return insertEvent(ctx, tx, Event{Subject: id, At: now, Actor: actor, Kind: EventCreated, To: state, Message: msg})
	})
	if err != nil {
		return File{}, fmt.Errorf("spool: add file: %w", err)
	}
	return f, nil
}

// AddInterchange implements [Recorder].
func (s *SQLite) AddInterchange(ctx context.Context, ni NewInterchange) (Interchange, []Document, error) {
	if err := ni.check(); err != nil {
		return Interchange{}, nil, fmt.Errorf("spool: add interchange: %w", err)
	}
	var (
		x    Interchange
		docs []Document
	)
	err := s.write(ctx, func(tx *wtx, now time.Time) error {
		var (
			err   error
			fresh bool
		)
		if x, fresh, err = s.addInterchange(ctx, tx, now, ni); err != nil || x.State == StateDuplicate {
			return err
		}
		if err := insertInline(ctx, tx, ni.Inline...); err != nil {
			return err
		}
		docs = docs[:0]
		for _, nd := range ni.Documents {
			nd.FileID, nd.InterchangeID = ni.FileID, x.ID
			var in *newIx // a new interchange has no documents yet
			if fresh {
				in = &newIx{partner: x.Partner}
			}
			d, err := s.addDocument(ctx, tx, now, nd, in)
			if err != nil {
				return fmt.Errorf("document %d: %w", nd.Seq, err)
			}
			docs = append(docs, d)
		}
		if ni.Ack.Kind != "" && x.Ack.Kind == "" {
			if err := setAck(ctx, tx, now, x.ID, ni.Ack, Options{Actor: "system"}); err != nil {
				return err
			}
			x.Ack = ni.Ack
			x.Ack.At = cmpOrTime(norm(ni.Ack.At), now)
		}
		return nil
	})
	if err != nil {
		return Interchange{}, nil, fmt.Errorf("spool: add interchange to %s: %w", ni.FileID, err)
	}
	return x, docs, nil
}

// insertInline stores small blobs in the spool (see InlineMax); a blob
// stored before stays as it is (the same bytes: the key is their hash).
func insertInline(ctx context.Context, tx *wtx, blobs ...[]byte) error {
	for _, b := range blobs {
		if b == nil {
			continue
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO inline_blobs (sha256, content) VALUES (?, ?) ON CONFLICT DO NOTHING", sumOf(b), b); err != nil {
			return fmt.Errorf("inline blob: %w", err)
		}
	}
	return nil
}

// InlineBlob implements [InlineReader].
func (s *SQLite) InlineBlob(ctx context.Context, sum string) ([]byte, error) {
	key, err := inlineKey(sum)
	if err != nil {
		return nil, err
	}
	var b []byte
	err = s.r.QueryRowContext(ctx, "SELECT content FROM inline_blobs WHERE sha256 = ?", key).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("spool: inline blob %s: %w", sum, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: inline blob %s: %w", sum, err)
	}
	return b, nil
}

// sqliteDedupeQuery finds the interchange of partner with control that one
// received at received (micros) duplicates: the earliest parsed one, within
// window before it.
func sqliteDedupeQuery(partner, control string, received int64, window time.Duration) (string, []any) {
	q := "SELECT id FROM interchanges WHERE partner = ? AND control = ? AND state = 'parsed' AND received_at <= ?"
	args := []any{partner, control, received}
	if window > 0 {
		q += " AND received_at >= ?"
		args = append(args, received-window.Microseconds())
	}
	return q + " ORDER BY received_at, id LIMIT 1", args
}

// DuplicateInterchange implements [Store], on a reader.
func (s *SQLite) DuplicateInterchange(ctx context.Context, fileID ID, seq int, control string, window time.Duration) (ID, error) {
	var recorded int
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM interchanges WHERE file_id = ? AND seq = ?", fileID, seq).Scan(&recorded); err != nil {
		return "", fmt.Errorf("spool: duplicate check: %w", err)
	}
	if recorded > 0 {
		return "", nil
	}
	var partner string
	var received int64
	if err := s.r.QueryRowContext(ctx, "SELECT partner, received_at FROM files WHERE id = ?", fileID).Scan(&partner, &received); err != nil {
		return "", fmt.Errorf("spool: duplicate check: %w", notFound(err, fileID))
	}
	q, args := sqliteDedupeQuery(partner, control, received, window)
	var dup string
	if err := s.r.QueryRowContext(ctx, q, args...).Scan(&dup); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("spool: duplicate check: %w", err)
	}
	return ID(dup), nil
}

// addInterchange records the interchange, or returns the one recorded
// before at its position; fresh reports which.
func (s *SQLite) addInterchange(ctx context.Context, tx *wtx, now time.Time, ni NewInterchange) (x Interchange, fresh bool, err error) {
	x, err = scanInterchange(tx.QueryRowContext(ctx, "SELECT "+ixCols+" FROM interchanges WHERE file_id = ? AND seq = ?", ni.FileID, ni.Seq))
	if err == nil {
		return x, false, nil // added before: a re-run of the same stage
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return x, false, err
	}
	var partner string
	var received int64
	if err := tx.QueryRowContext(ctx, "SELECT partner, received_at FROM files WHERE id = ?", ni.FileID).Scan(&partner, &received); err != nil {
		return x, false, notFound(err, ni.FileID)
	}
	state, dupOf, msg := StateParsed, "", ""
	if ni.Rejected {
		state = StateRejected
	} else if !ni.NoDedupe {
		q, args := sqliteDedupeQuery(partner, ni.Control, received, ni.DedupeWindow)
		err := tx.QueryRowContext(ctx, q, args...).Scan(&dupOf)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return x, false, fmt.Errorf("dedupe: %w", err)
		}
		if dupOf != "" {
			state, msg = StateDuplicate, "interchange control "+ni.Control+" already received in "+dupOf
		}
	}
	id, err := NewID(KindInterchange, now)
	if err != nil {
		return x, false, err
	}
	x, err = scanInterchange(tx.QueryRowContext(ctx, `INSERT INTO interchanges (id, file_id, seq, partner, control, sender, receiver,
		version, state, duplicate_of, received_at, meta, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING `+ixCols,
		id, ni.FileID, ni.Seq, partner, ni.Control, ni.Sender, ni.Receiver, ni.Version, state, nullString(dupOf), received,
		nullJSON(ni.Meta), micros(now), micros(now)))
	if err != nil {
		return x, false, err
	}
	return x, true, insertEvent(ctx, tx, Event{Subject: id, At: now, Actor: "system", Kind: EventCreated, To: state, Message: msg})
}

// newIx is what addDocument need not look up for the documents of an
// interchange created in the same transaction: no document of it exists
// yet, it belongs to the document's file, and the file's partner.
type newIx struct{ partner string }

// AddDocument implements [Recorder].
func (s *SQLite) AddDocument(ctx context.Context, nd NewDocument) (Document, error) {
	if _, err := nd.check(); err != nil {
		return Document{}, fmt.Errorf("spool: add document: %w", err)
	}
	var d Document
	err := s.write(ctx, func(tx *wtx, now time.Time) error {
		var err error
		d, err = s.addDocument(ctx, tx, now, nd, nil)
		return err
	})
	if err != nil {
		return Document{}, fmt.Errorf("spool: add document to %s: %w", nd.FileID, err)
	}
	return d, nil
}

// addDocument records a checked document, or returns the one recorded
// before at its position.
func (s *SQLite) addDocument(ctx context.Context, tx *wtx, now time.Time, nd NewDocument, in *newIx) (d Document, err error) {
	var partner string
	if in != nil {
		partner = in.partner
	} else {
		d, err = scanDocument(tx.QueryRowContext(ctx, "SELECT "+docCols+" FROM documents WHERE file_id = ? AND seq = ?", nd.FileID, nd.Seq))
		if err == nil {
			return d, nil // added before
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return d, err
		}
		if err := tx.QueryRowContext(ctx, "SELECT partner FROM files WHERE id = ?", nd.FileID).Scan(&partner); err != nil {
			return d, notFound(err, nd.FileID)
		}
	}
	if nd.InterchangeID != "" && in == nil {
		var fileID ID
		if err := tx.QueryRowContext(ctx, "SELECT file_id FROM interchanges WHERE id = ?", nd.InterchangeID).Scan(&fileID); err != nil {
			return d, notFound(err, nd.InterchangeID)
		}
		if fileID != nd.FileID {
			return d, fmt.Errorf("%w: interchange %s belongs to %s", ErrInvalid, nd.InterchangeID, fileID)
		}
	}
	id, err := NewID(KindDocument, now)
	if err != nil {
		return d, err
	}
	state := cmp.Or(nd.State, StateParsed)
	d, err = scanDocument(tx.QueryRowContext(ctx, `INSERT INTO documents (id, file_id, interchange_id, seq, partner, type,
		group_control, set_control, business_key, idempotency_key, meta, state, last_error, next_attempt_at, created_at, updated_at,
		mapped_sha256, mapped_size, lease_owner, lease_until)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING `+docCols,
		id, nd.FileID, nullString(string(nd.InterchangeID)), nd.Seq, partner, nd.Type, nd.GroupControl, nd.SetControl,
		nd.BusinessKey, nd.IdempotencyKey, nullJSON(nd.Meta), state, nd.Reason, micros(now), micros(now), micros(now),
		nd.Mapped.SHA256, nd.Mapped.Size, nd.Lease.Owner, micros(nd.Lease.until(now))))
	if err != nil {
		return d, err
	}
	for _, ref := range nd.Refs {
		if ref == "" || ref == nd.BusinessKey {
			continue
		}
		if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO document_refs (document_id, ref) VALUES (?, ?)", id, ref); err != nil {
			return d, err
		}
	}
	return d, insertEvent(ctx, tx, Event{Subject: id, At: now, Actor: cmp.Or(nd.Actor, "system"), Kind: EventCreated, To: state, Message: nd.Reason})
}

// SetInterchangeAck implements [Recorder].
func (s *SQLite) SetInterchangeAck(ctx context.Context, id ID, a Ack, opts ...Option) error {
	o, err := ApplyOptions(opts)
	if err == nil && id.Kind() != KindInterchange {
		err = fmt.Errorf("%w: %q is not an interchange id", ErrInvalid, id)
	}
	if err == nil && !a.Blob.IsZero() {
		err = a.Blob.Check()
	}
	if err == nil {
		err = s.write(ctx, func(tx *wtx, now time.Time) error { return setAck(ctx, tx, now, id, a, o) })
	}
	if err != nil {
		return fmt.Errorf("spool: set ack of %s: %w", id, err)
	}
	return nil
}

func setAck(ctx context.Context, tx *wtx, now time.Time, id ID, a Ack, o Options) error {
	at := cmpOrTime(norm(a.At), now)
	res, err := tx.ExecContext(ctx, `UPDATE interchanges SET ack_kind = ?, ack_status = ?, ack_control = ?, ack_sha256 = ?,
		ack_size = ?, ack_at = ?, updated_at = ? WHERE id = ?`,
		a.Kind, a.Status, a.Control, a.Blob.SHA256, a.Blob.Size, micros(at), micros(now), id)
	if err := oneRow(res, err, id); err != nil {
		return err
	}
	detail := o.Detail
	if detail == nil {
		detail, _ = json.Marshal(map[string]string{"kind": a.Kind, "status": a.Status, "control": a.Control})
	}
	return insertEvent(ctx, tx, Event{Subject: id, At: now, Actor: o.Actor, Kind: EventAck, Message: o.Reason, Detail: detail})
}

// SetDocumentMapped implements [Recorder].
func (s *SQLite) SetDocumentMapped(ctx context.Context, id ID, mapped BlobRef, businessKey string) error {
	err := mapped.Check()
	if err == nil && id.Kind() != KindDocument {
		err = fmt.Errorf("%w: %q is not a document id", ErrInvalid, id)
	}
	if err == nil {
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			res, err := tx.ExecContext(ctx, `UPDATE documents SET mapped_sha256 = ?, mapped_size = ?,
				business_key = CASE WHEN ? = '' THEN business_key ELSE ? END, updated_at = ? WHERE id = ?`,
				mapped.SHA256, mapped.Size, businessKey, businessKey, micros(now), id)
			return oneRow(res, err, id)
		})
	}
	if err != nil {
		return fmt.Errorf("spool: set mapped of %s: %w", id, err)
	}
	return nil
}

// SetDocumentResult implements [Recorder].
func (s *SQLite) SetDocumentResult(ctx context.Context, id ID, r Response, opts ...Option) error {
	o, err := ApplyOptions(opts)
	if err == nil && id.Kind() != KindDocument {
		err = fmt.Errorf("%w: %q is not a document id", ErrInvalid, id)
	}
	if err == nil {
		err = r.check()
	}
	if err == nil {
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			return setResult(ctx, tx, id, r, now, Event{Actor: o.Actor, Message: o.Reason, Detail: o.Detail})
		})
	}
	if err != nil {
		return fmt.Errorf("spool: set result of %s: %w", id, err)
	}
	return nil
}

// setResult records the ERP's answer r on document id, and its event (ev
// gives the actor, message and detail; the detail defaults to the status
// and the body's hash).
func setResult(ctx context.Context, tx *wtx, id ID, r Response, now time.Time, ev Event) error {
	at := cmpOrTime(norm(r.At), now)
	res, err := tx.ExecContext(ctx, `UPDATE documents SET resp_status = ?, resp_sha256 = ?, resp_size = ?, resp_inline = ?, resp_at = ?,
		updated_at = ? WHERE id = ?`, r.Status, r.Body.SHA256, r.Body.Size, r.Inline, micros(at), micros(now), id)
	if err := oneRow(res, err, id); err != nil {
		return err
	}
	return insertEvent(ctx, tx, resultEvent(id, r, now, ev))
}

// AddEvent implements [Recorder].
func (s *SQLite) AddEvent(ctx context.Context, e Event) error {
	err := checkJSON("detail", e.Detail)
	if err == nil && e.Kind != EventNote && e.Kind != EventError {
		err = fmt.Errorf("%w: only note and error events may be added, not %q", ErrInvalid, e.Kind)
	}
	tbl := map[Kind]string{KindFile: "files", KindDocument: "documents", KindInterchange: "interchanges"}[e.Subject.Kind()]
	if err == nil && tbl == "" {
		err = fmt.Errorf("%w: %q is not an id", ErrInvalid, e.Subject)
	}
	if err == nil {
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			var one int
			if err := tx.QueryRowContext(ctx, "SELECT 1 FROM "+tbl+" WHERE id = ?", e.Subject).Scan(&one); err != nil {
				return notFound(err, e.Subject)
			}
			e.At, e.From, e.To, e.Actor = now, "", "", cmp.Or(e.Actor, "system")
			return insertEvent(ctx, tx, e)
		})
	}
	if err != nil {
		return fmt.Errorf("spool: add event to %s: %w", e.Subject, err)
	}
	return nil
}

func oneRow(res sql.Result, err error, id ID) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return nil
}

// ---- Queue ----

// maxClaim bounds one Claim's batch.
const maxClaim = 1000

// Claim implements [Queue].
func (s *SQLite) Claim(ctx context.Context, kind Kind, states []State, owner string, lease time.Duration, limit int) ([]Item, error) {
	tbl := map[Kind]string{KindFile: "files", KindDocument: "documents"}[kind]
	var err error
	switch {
	case tbl == "":
		err = fmt.Errorf("%w: cannot claim kind %q", ErrInvalid, kind)
	case len(states) == 0 || owner == "" || lease <= 0 || limit <= 0:
		err = fmt.Errorf("%w: states, owner, a positive lease and a positive limit are required", ErrInvalid)
	}
	args := make([]any, 0, 2*len(states)+3)
	for _, st := range states {
		if err == nil {
			if err = checkState(st); err == nil && st == StateRetrying {
				err = fmt.Errorf("%w: claim the retried stage, not %q", ErrInvalid, st)
			}
		}
		args = append(args, st)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: claim: %w", err)
	}
	args = append(args, args...)
	limit = min(limit, maxClaim)

	in := placeholders(len(states))
	q := "SELECT id, lease_owner, lease_until FROM " + tbl + " WHERE (state IN (" + in + ") OR (state = 'retrying' AND retry_of IN (" + in + ")))" +
		" AND next_attempt_at <= ? AND lease_until <= ? ORDER BY next_attempt_at, id LIMIT ?"
	// Most claims of idle workers find nothing: look on a reader first, so
	// they cost the single writer nothing. A reader sees every committed
	// write, so nothing due is missed; the writer looks again.
	now := micros(s.now())
	var probe ID
	switch err := s.r.QueryRowContext(ctx, q, append(args, now, now, 1)...).Scan(&probe, new(string), new(int64)); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("spool: claim: %w", err)
	}

	var items []Item
	err = s.write(ctx, func(tx *wtx, now time.Time) error {
		items = items[:0]
		rows, err := tx.QueryContext(ctx, q, append(args, micros(now), micros(now), limit)...)
		if err != nil {
			return err
		}
		type cand struct {
			id    ID
			owner string
			until int64
		}
		var cands []cand
		for rows.Next() {
			var c cand
			if err := rows.Scan(&c.id, &c.owner, &c.until); err != nil {
				rows.Close()
				return err
			}
			cands = append(cands, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		until := micros(now.Add(lease))
		for _, c := range cands {
			var it Item
			row := tx.QueryRowContext(ctx, "UPDATE "+tbl+" SET lease_owner = ?, lease_until = ?, updated_at = ? WHERE id = ? RETURNING "+
				map[Kind]string{KindFile: fileCols, KindDocument: docCols}[kind], owner, until, micros(now), c.id)
			if kind == KindFile {
				f, err := scanFile(row)
				if err != nil {
					return err
				}
				it = Item{Kind: kind, File: &f}
			} else {
				d, err := scanDocument(row)
				if err != nil {
					return err
				}
				it = Item{Kind: kind, Document: &d}
			}
			items = append(items, it)
			if c.owner != "" {
				detail, _ := json.Marshal(map[string]any{"previous_owner": c.owner, "expired_at": fromMicros(c.until)})
				err := insertEvent(ctx, tx, Event{Subject: c.id, At: now, Actor: owner, Kind: EventReclaim,
					Message: "lease of " + c.owner + " expired", Detail: detail})
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: claim %s: %w", kind, err)
	}
	return items, nil
}

type current struct {
	state, retryOf State
	owner          string
	until          time.Time
}

func (s *SQLite) current(ctx context.Context, tx *wtx, tbl string, id ID) (current, error) {
	var c current
	var until int64
	err := tx.QueryRowContext(ctx, "SELECT state, retry_of, lease_owner, lease_until FROM "+tbl+" WHERE id = ?", id).
		Scan(&c.state, &c.retryOf, &c.owner, &until)
	c.until = fromMicros(until)
	return c, notFound(err, id)
}

// checkLease: with an owner, the caller must still hold the lease; without
// one, nobody else may hold a valid lease.
func checkLease(c current, owner string, now time.Time) error {
	if owner != "" {
		if c.owner != owner {
			holder := cmp.Or(c.owner, "nobody")
			return fmt.Errorf("%w: %s does not hold it (%s does)", ErrLeaseLost, owner, holder)
		}
		return nil
	}
	if c.owner != "" && c.until.After(now) {
		return fmt.Errorf("%w: %s holds it until %s", ErrLeased, c.owner, c.until.Format(time.RFC3339Nano))
	}
	return nil
}

// ExtendLease implements [Queue].
func (s *SQLite) ExtendLease(ctx context.Context, id ID, owner string, lease time.Duration) (time.Time, error) {
	tbl, err := workTable(id)
	if err == nil && (owner == "" || lease <= 0) {
		err = fmt.Errorf("%w: owner and a positive lease are required", ErrInvalid)
	}
	var until time.Time
	if err == nil {
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			c, err := s.current(ctx, tx, tbl, id)
			if err != nil {
				return err
			}
			if err := checkLease(c, owner, now); err != nil {
				return err
			}
			until = now.Add(lease)
			_, err = tx.ExecContext(ctx, "UPDATE "+tbl+" SET lease_until = ?, updated_at = ? WHERE id = ?", micros(until), micros(now), id)
			return err
		})
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("spool: extend lease on %s: %w", id, err)
	}
	return until, nil
}

// Release implements [Queue].
func (s *SQLite) Release(ctx context.Context, id ID, owner string, opts ...Option) error {
	tbl, err := workTable(id)
	o, oerr := ApplyOptions(opts)
	err = errors.Join(err, oerr)
	if err == nil && owner == "" {
		err = fmt.Errorf("%w: owner is required", ErrInvalid)
	}
	if err == nil {
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			c, err := s.current(ctx, tx, tbl, id)
			if err != nil {
				return err
			}
			if err := checkLease(c, owner, now); err != nil {
				return err
			}
			next := cmpOrTime(norm(o.NextAt), now)
			_, err = tx.ExecContext(ctx, "UPDATE "+tbl+" SET lease_owner = '', lease_until = 0, next_attempt_at = ?, updated_at = ? WHERE id = ?",
				micros(next), micros(now), id)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("spool: release %s: %w", id, err)
	}
	return nil
}

// Transition implements [Queue].
func (s *SQLite) Transition(ctx context.Context, id ID, from, to State, opts ...Option) error {
	tbl, err := workTable(id)
	o, oerr := ApplyOptions(opts)
	err = errors.Join(err, oerr, o.check(id), checkState(from), checkState(to))
	if err == nil {
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			c, err := s.current(ctx, tx, tbl, id)
			if err != nil {
				return err
			}
			if c.state != from && (c.state != StateRetrying || c.retryOf != from) {
				return &ConflictError{ID: id, Expected: from, Actual: c.state}
			}
			stage := c.state
			if stage == StateRetrying {
				stage = c.retryOf
			}
			path, err := o.path(stage, to)
			if err != nil {
				return err
			}
			if err := checkLease(c, o.Owner, now); err != nil {
				return err
			}
			if o.Response != nil {
				if err := setResult(ctx, tx, id, *o.Response, now, Event{Actor: o.Actor}); err != nil {
					return err
				}
			}
			final := path[len(path)-1]
			// A forward move starts the next stage afresh; a stop keeps the
			// count and records why.
			set := "attempts = 0, last_error = ''"
			args := []any{}
			if !final.InPipeline() {
				set = "last_error = CASE WHEN ? = '' THEN last_error ELSE ? END"
				args = append(args, o.Reason, o.Reason)
			}
			next := cmpOrTime(norm(o.NextAt), now)
			args = append(args, final, micros(next), micros(now), id)
			_, err = tx.ExecContext(ctx, "UPDATE "+tbl+" SET "+set+", state = ?, retry_of = '', next_attempt_at = ?, lease_owner = '', lease_until = 0, updated_at = ? WHERE id = ?", args...)
			if err != nil {
				return err
			}
			for _, ev := range o.hopEvents(id, now, c.state, path) {
				if err := insertEvent(ctx, tx, ev); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("spool: transition %s %s → %s: %w", id, from, to, err)
	}
	return nil
}

// Retry implements [Queue].
func (s *SQLite) Retry(ctx context.Context, id ID, cause error, next time.Time, opts ...Option) error {
	tbl, err := workTable(id)
	o, oerr := ApplyOptions(opts)
	err = errors.Join(err, oerr)
	if err == nil && cause == nil {
		err = fmt.Errorf("%w: a cause is required", ErrInvalid)
	}
	if err == nil {
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			c, err := s.current(ctx, tx, tbl, id)
			if err != nil {
				return err
			}
			if !CanRetry(c.state) {
				return fmt.Errorf("%w: cannot retry an item that is %s", ErrInvalidTransition, c.state)
			}
			if err := checkLease(c, o.Owner, now); err != nil {
				return err
			}
			stage := c.state
			if stage == StateRetrying {
				stage = c.retryOf
			}
			due := cmpOrTime(norm(next), now)
			var attempts int
			err = tx.QueryRowContext(ctx, "UPDATE "+tbl+` SET state = 'retrying', retry_of = ?, attempts = attempts + 1, last_error = ?,
				next_attempt_at = ?, lease_owner = '', lease_until = 0, updated_at = ? WHERE id = ? RETURNING attempts`,
				stage, cause.Error(), micros(due), micros(now), id).Scan(&attempts)
			if err != nil {
				return err
			}
			detail := o.Detail
			if detail == nil {
				detail, _ = json.Marshal(map[string]any{"stage": stage, "attempt": attempts, "next_attempt_at": due})
			}
			return insertEvent(ctx, tx, Event{Subject: id, At: now, Actor: o.Actor, Kind: EventRetry, From: c.state, To: StateRetrying,
				Message: cause.Error(), Detail: detail})
		})
	}
	if err != nil {
		return fmt.Errorf("spool: retry %s: %w", id, err)
	}
	return nil
}

// Replay implements [Queue].
func (s *SQLite) Replay(ctx context.Context, id ID, to State, opts ...Option) error {
	tbl, err := workTable(id)
	o, oerr := ApplyOptions(opts)
	err = errors.Join(err, oerr)
	if err == nil && !CanReplayTo(to) {
		err = fmt.Errorf("%w: replay to %q (a pipeline state before done)", ErrInvalidTransition, to)
	}
	if err == nil {
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			c, err := s.current(ctx, tx, tbl, id)
			if err != nil {
				return err
			}
			if err := checkLease(c, o.Owner, now); err != nil {
				return err
			}
			next := cmpOrTime(norm(o.NextAt), now)
			_, err = tx.ExecContext(ctx, "UPDATE "+tbl+` SET state = ?, retry_of = '', attempts = 0, last_error = '', next_attempt_at = ?,
				lease_owner = '', lease_until = 0, updated_at = ? WHERE id = ?`, to, micros(next), micros(now), id)
			if err != nil {
				return err
			}
			return insertEvent(ctx, tx, Event{Subject: id, At: now, Actor: o.Actor, Kind: EventReplay, From: c.state, To: to, Message: o.Reason, Detail: o.Detail})
		})
	}
	if err != nil {
		return fmt.Errorf("spool: replay %s to %s: %w", id, to, err)
	}
	return nil
}

// ---- Reader ----

// GetFile implements [Reader].
func (s *SQLite) GetFile(ctx context.Context, id ID) (File, error) {
	f, err := scanFile(s.r.QueryRowContext(ctx, "SELECT "+fileCols+" FROM files WHERE id = ?", id))
	if err != nil {
		return File{}, fmt.Errorf("spool: get file: %w", notFound(err, id))
	}
	return f, nil
}

// GetInterchange implements [Reader].
func (s *SQLite) GetInterchange(ctx context.Context, id ID) (Interchange, error) {
	x, err := scanInterchange(s.r.QueryRowContext(ctx, "SELECT "+ixCols+" FROM interchanges WHERE id = ?", id))
	if err != nil {
		return Interchange{}, fmt.Errorf("spool: get interchange: %w", notFound(err, id))
	}
	return x, nil
}

// GetDocument implements [Reader].
func (s *SQLite) GetDocument(ctx context.Context, id ID) (Document, error) {
	d, err := scanDocument(s.r.QueryRowContext(ctx, "SELECT "+docCols+" FROM documents WHERE id = ?", id))
	if err != nil {
		return Document{}, fmt.Errorf("spool: get document: %w", notFound(err, id))
	}
	return d, nil
}

func states(ss []State) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

// ListFiles implements [Reader].
func (s *SQLite) ListFiles(ctx context.Context, f FileFilter) ([]File, string, error) {
	w := sqliteWhere()
	fileConds(w, f)
	tail, limit := w.page(f.Page)
	files, err := list(ctx, s.r, "SELECT "+fileCols+" FROM files"+tail, w.args, scanFile)
	if err != nil {
		return nil, "", fmt.Errorf("spool: list files: %w", err)
	}
	files, next := pageOf(files, limit, func(f *File) ID { return f.ID })
	return files, next, nil
}

// ListInterchanges implements [Reader].
func (s *SQLite) ListInterchanges(ctx context.Context, fileID ID) ([]Interchange, error) {
	xs, err := list(ctx, s.r, "SELECT "+ixCols+" FROM interchanges WHERE file_id = ? ORDER BY seq", []any{fileID}, scanInterchange)
	if err != nil {
		return nil, fmt.Errorf("spool: list interchanges of %s: %w", fileID, err)
	}
	return xs, nil
}

// ListDocuments implements [Reader].
func (s *SQLite) ListDocuments(ctx context.Context, f DocumentFilter) ([]Document, string, error) {
	w := sqliteWhere()
	documentConds(w, f)
	tail, limit := w.page(f.Page)
	docs, err := list(ctx, s.r, "SELECT "+docCols+" FROM documents"+tail, w.args, scanDocument)
	if err != nil {
		return nil, "", fmt.Errorf("spool: list documents: %w", err)
	}
	docs, next := pageOf(docs, limit, func(d *Document) ID { return d.ID })
	return docs, next, nil
}

// Events implements [Reader].
func (s *SQLite) Events(ctx context.Context, id ID) ([]Event, error) {
	evs, err := list(ctx, s.r, "SELECT "+eventCols+" FROM events WHERE subject = ? ORDER BY seq", []any{id}, scanEvent)
	if err == nil && len(evs) == 0 {
		err = fmt.Errorf("%s: %w", id, ErrNotFound) // every record has its "created" event
	}
	if err != nil {
		return nil, fmt.Errorf("spool: events of %s: %w", id, err)
	}
	return evs, nil
}

func list[T any](ctx context.Context, db *readPool, q string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ---- Counters ----

// NextControl implements [Counters].
func (s *SQLite) NextControl(ctx context.Context, partner, name string) (int64, error) {
	return s.ReserveControls(ctx, partner, name, 1)
}

// ReserveControls implements [Counters].
func (s *SQLite) ReserveControls(ctx context.Context, partner, name string, n int) (int64, error) {
	if err := checkReserve(partner, name, n); err != nil {
		return 0, err
	}
	var v int64
	err := s.write(ctx, func(tx *wtx, now time.Time) error {
		return tx.QueryRowContext(ctx, `INSERT INTO counters (partner, name, value, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (partner, name) DO UPDATE
			SET value = CASE WHEN value > ? THEN excluded.value ELSE value + excluded.value END, updated_at = excluded.updated_at
			RETURNING value`, partner, name, n, micros(now), MaxControl-n).Scan(&v)
	})
	if err != nil {
		return 0, fmt.Errorf("spool: next control %s/%s: %w", partner, name, err)
	}
	return v - int64(n) + 1, nil
}

func checkReserve(partner, name string, n int) error {
	if partner == "" || name == "" || n < 1 || n > 1000 {
		return fmt.Errorf("spool: next control: %w: partner, name and 1 <= n <= 1000 are required", ErrInvalid)
	}
	return nil
}

func cmpOrTime(t, def time.Time) time.Time {
	if t.IsZero() {
		return def
	}
	return t
}

// ---- Polls ----

// maxRunErrors bounds the error lines a run keeps (the first ones).
const maxRunErrors = 20

// maxForget bounds the names deleted by one statement.
const maxForget = 500

func nullMicros(t time.Time) sql.NullInt64 {
	return sql.NullInt64{Int64: micros(t), Valid: !t.IsZero()}
}

const runCols = `id, partner, poll, owner, "trigger", status, started_at, ended_at, lease_until, seen, fetched, skipped, failed, errors`

func scanRun(sc scanner) (PollRun, error) {
	var r PollRun
	var started, until int64
	var ended sql.NullInt64
	var errs string
	if err := sc.Scan(&r.ID, &r.Partner, &r.Poll, &r.Owner, &r.Trigger, &r.Status, &started, &ended, &until,
		&r.Seen, &r.Fetched, &r.Skipped, &r.Failed, &errs); err != nil {
		return PollRun{}, err
	}
	if err := json.Unmarshal([]byte(errs), &r.Errors); err != nil {
		return PollRun{}, fmt.Errorf("run %d: errors: %w", r.ID, err)
	}
	if len(r.Errors) == 0 {
		r.Errors = nil
	}
	r.StartedAt, r.EndedAt, r.LeaseUntil = fromMicros(started), fromMicros(ended.Int64), fromMicros(until)
	return r, nil
}

// BeginRun implements [Polls].
func (s *SQLite) BeginRun(ctx context.Context, nr NewRun, lease time.Duration) (PollRun, error) {
	if nr.Partner == "" || nr.Poll == "" || nr.Owner == "" || lease <= 0 {
		return PollRun{}, fmt.Errorf("spool: begin run: %w: partner, poll, owner and a positive lease are required", ErrInvalid)
	}
	var r PollRun
	err := s.write(ctx, func(tx *wtx, now time.Time) error {
		var holder string
		var held, until int64
		err := tx.QueryRowContext(ctx, "SELECT run_id, owner, lease_until FROM poll_leases WHERE partner = ? AND poll = ?",
			nr.Partner, nr.Poll).Scan(&held, &holder, &until)
		switch {
		case err == nil && until > micros(now):
			return fmt.Errorf("%w: %s holds it (run %d) until %s", ErrPollBusy, holder, held, fromMicros(until).Format(time.RFC3339Nano))
		case err == nil: // the holder died: its run is over
			msg := "lease expired: owner " + holder + " stopped without finishing"
			_, err = tx.ExecContext(ctx, `UPDATE poll_runs SET status = 'abandoned', ended_at = ?, errors = json_insert(errors, '$[#]', ?)
				WHERE id = ? AND status = 'running'`, micros(now), msg, held)
			if err != nil {
				return err
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if !nr.Tick.IsZero() {
			var by string
			err := tx.QueryRowContext(ctx, "SELECT owner FROM poll_runs WHERE partner = ? AND poll = ? AND tick = ?",
				nr.Partner, nr.Poll, micros(nr.Tick)).Scan(&by)
			if err == nil {
				return fmt.Errorf("%w: the tick of %s already ran on %s", ErrPollBusy, nr.Tick.UTC().Format(time.RFC3339), by)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		var tick sql.NullInt64
		if !nr.Tick.IsZero() {
			tick = sql.NullInt64{Int64: micros(nr.Tick), Valid: true}
		}
		r, err = scanRun(tx.QueryRowContext(ctx, `INSERT INTO poll_runs (partner, poll, owner, "trigger", status, started_at, lease_until, tick)
			VALUES (?, ?, ?, ?, 'running', ?, ?, ?) RETURNING `+runCols,
			nr.Partner, nr.Poll, nr.Owner, nr.Trigger, micros(now), micros(now.Add(lease)), tick))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO poll_leases (partner, poll, run_id, owner, lease_until) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (partner, poll) DO UPDATE SET run_id = excluded.run_id, owner = excluded.owner, lease_until = excluded.lease_until`,
			r.Partner, r.Poll, r.ID, r.Owner, micros(r.LeaseUntil))
		return err
	})
	if err != nil {
		return PollRun{}, fmt.Errorf("spool: begin run of %s/%s: %w", nr.Partner, nr.Poll, err)
	}
	return r, nil
}

// ExtendRun implements [Polls].
func (s *SQLite) ExtendRun(ctx context.Context, runID int64, lease time.Duration) error {
	var err error
	if runID <= 0 || lease <= 0 {
		err = fmt.Errorf("%w: a run id and a positive lease are required", ErrInvalid)
	}
	if err == nil {
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			// The lease row points at the run while it holds the lease, even
			// expired, until another run takes it over or the run finishes.
			until := micros(now.Add(lease))
			res, err := tx.ExecContext(ctx, "UPDATE poll_leases SET lease_until = ? WHERE run_id = ?", until, runID)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				return cmp.Or(err, ErrLeaseLost)
			}
			_, err = tx.ExecContext(ctx, "UPDATE poll_runs SET lease_until = ? WHERE id = ?", until, runID)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("spool: extend run %d: %w", runID, err)
	}
	return nil
}

// FinishRun implements [Polls].
func (s *SQLite) FinishRun(ctx context.Context, r PollRun) error {
	var err error
	switch {
	case r.Status != RunOK && r.Status != RunPartial && r.Status != RunFailed:
		err = fmt.Errorf("%w: a run finishes ok, partial or failed, not %q", ErrInvalid, r.Status)
	case r.ID <= 0 || r.Seen < 0 || r.Fetched < 0 || r.Skipped < 0 || r.Failed < 0:
		err = fmt.Errorf("%w: a run id and counts >= 0 are required", ErrInvalid)
	}
	if err == nil {
		errs, _ := json.Marshal(append([]string{}, r.Errors[:min(len(r.Errors), maxRunErrors)]...))
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			res, err := tx.ExecContext(ctx, `UPDATE poll_runs SET status = ?, ended_at = ?, seen = ?, fetched = ?, skipped = ?, failed = ?,
				errors = ? WHERE id = ?`, r.Status, micros(now), r.Seen, r.Fetched, r.Skipped, r.Failed, string(errs), r.ID)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				return cmp.Or(err, ErrNotFound)
			}
			_, err = tx.ExecContext(ctx, "DELETE FROM poll_leases WHERE run_id = ?", r.ID)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("spool: finish run %d: %w", r.ID, err)
	}
	return nil
}

// ListRuns implements [Polls].
func (s *SQLite) ListRuns(ctx context.Context, f RunFilter) ([]PollRun, error) {
	w := sqliteWhere()
	w.eq("partner", f.Partner)
	w.eq("poll", f.Poll)
	runs, err := list(ctx, s.r, "SELECT "+runCols+" FROM poll_runs"+w.newest(f.Limit, 50), w.args, scanRun)
	if err != nil {
		return nil, fmt.Errorf("spool: list runs: %w", err)
	}
	return runs, nil
}

const remoteCols = "partner, poll, name, size, mod_time, since, file_id, fetched_at, done"

func scanRemote(sc scanner) (RemoteFile, error) {
	var f RemoteFile
	var mod, since int64
	var fileID sql.NullString
	var fetched sql.NullInt64
	if err := sc.Scan(&f.Partner, &f.Poll, &f.Name, &f.Size, &mod, &since, &fileID, &fetched, &f.Done); err != nil {
		return RemoteFile{}, err
	}
	f.ModTime, f.Since, f.FetchedAt, f.FileID = fromMicros(mod), fromMicros(since), fromMicros(fetched.Int64), ID(fileID.String)
	return f, nil
}

// RemoteFiles implements [Polls].
func (s *SQLite) RemoteFiles(ctx context.Context, partner, poll string) (map[string]RemoteFile, error) {
	if partner == "" || poll == "" {
		return nil, fmt.Errorf("spool: remote files: %w: partner and poll are required", ErrInvalid)
	}
	files, err := list(ctx, s.r, "SELECT "+remoteCols+" FROM poll_files WHERE partner = ? AND poll = ?", []any{partner, poll}, scanRemote)
	if err != nil {
		return nil, fmt.Errorf("spool: remote files of %s/%s: %w", partner, poll, err)
	}
	m := make(map[string]RemoteFile, len(files))
	for _, f := range files {
		m[f.Name] = f
	}
	return m, nil
}

// PutRemoteFile implements [Polls].
func (s *SQLite) PutRemoteFile(ctx context.Context, f RemoteFile) error {
	var err error
	switch {
	case f.Partner == "" || f.Poll == "" || f.Name == "":
		err = fmt.Errorf("%w: partner, poll and name are required", ErrInvalid)
	case f.Size < 0:
		err = fmt.Errorf("%w: size %d", ErrInvalid, f.Size)
	case f.FileID != "" && f.FileID.Kind() != KindFile:
		err = fmt.Errorf("%w: %q is not a file id", ErrInvalid, f.FileID)
	}
	if err == nil {
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO poll_files (`+remoteCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (partner, poll, name) DO UPDATE SET size = excluded.size, mod_time = excluded.mod_time, since = excluded.since,
				file_id = excluded.file_id, fetched_at = excluded.fetched_at, done = excluded.done`,
				f.Partner, f.Poll, f.Name, f.Size, micros(norm(f.ModTime)), micros(norm(f.Since)), nullString(string(f.FileID)),
				nullMicros(norm(f.FetchedAt)), f.Done)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("spool: put remote file %s/%s/%s: %w", f.Partner, f.Poll, f.Name, err)
	}
	return nil
}

// ForgetRemoteFiles implements [Polls].
func (s *SQLite) ForgetRemoteFiles(ctx context.Context, partner, poll string, names []string) error {
	var err error
	if partner == "" || poll == "" {
		err = fmt.Errorf("%w: partner and poll are required", ErrInvalid)
	}
	if err == nil && len(names) > 0 {
		err = s.write(ctx, func(tx *wtx, now time.Time) error {
			for chunk := range slices.Chunk(names, maxForget) {
				w := sqliteWhere()
				w.eq("partner", partner)
				w.eq("poll", poll)
				w.in("name", chunk)
				if _, err := tx.ExecContext(ctx, "DELETE FROM poll_files"+w.clause(), w.args...); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("spool: forget remote files of %s/%s: %w", partner, poll, err)
	}
	return nil
}

// ---- Audit ----

const auditCols = "id, at, actor, role, action, target, reason, outcome, detail"

func scanAudit(sc scanner) (AuditEntry, error) {
	var e AuditEntry
	var at int64
	var detail sql.NullString
	if err := sc.Scan(&e.ID, &at, &e.Actor, &e.Role, &e.Action, &e.Target, &e.Reason, &e.Outcome, &detail); err != nil {
		return AuditEntry{}, err
	}
	e.At, e.Detail = fromMicros(at), rawJSON(detail)
	return e, nil
}

// AddAudit implements [Audit].
func (s *SQLite) AddAudit(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	if e.Actor == "" || e.Action == "" || e.Outcome == "" {
		return AuditEntry{}, fmt.Errorf("spool: add audit: %w: actor, action and outcome are required", ErrInvalid)
	}
	if err := checkJSON("detail", e.Detail); err != nil {
		return AuditEntry{}, err
	}
	var out AuditEntry
	err := s.write(ctx, func(tx *wtx, now time.Time) error {
		var err error
		out, err = scanAudit(tx.QueryRowContext(ctx, `INSERT INTO audit (at, actor, role, action, target, reason, outcome, detail)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING `+auditCols,
			micros(now), e.Actor, e.Role, e.Action, e.Target, e.Reason, e.Outcome, nullJSON(e.Detail)))
		return err
	})
	if err != nil {
		return AuditEntry{}, fmt.Errorf("spool: add audit: %w", err)
	}
	return out, nil
}

// ListAudit implements [Audit].
func (s *SQLite) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	w := sqliteWhere()
	w.eq("actor", f.Actor)
	w.eq("target", f.Target)
	es, err := list(ctx, s.r, "SELECT "+auditCols+" FROM audit"+w.newest(f.Limit, 100), w.args, scanAudit)
	if err != nil {
		return nil, fmt.Errorf("spool: list audit: %w", err)
	}
	return es, nil
}

// Depth implements [Reader].
func (s *SQLite) Depth(ctx context.Context) (map[Kind]map[State]int, error) {
	out := map[Kind]map[State]int{KindFile: {}, KindDocument: {}}
	for kind, tbl := range map[Kind]string{KindFile: "files", KindDocument: "documents"} {
		rows, err := s.r.QueryContext(ctx, "SELECT state, COUNT(*) FROM "+tbl+" GROUP BY state")
		if err != nil {
			return nil, fmt.Errorf("spool: depth: %w", err)
		}
		for rows.Next() {
			var st string
			var n int
			if err := rows.Scan(&st, &n); err != nil {
				rows.Close()
				return nil, fmt.Errorf("spool: depth: %w", err)
			}
			out[kind][State(st)] = n
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ---- Nodes ----

// Heartbeat implements [Nodes].
func (s *SQLite) Heartbeat(ctx context.Context, n Node) error {
	if n.ID == "" {
		return fmt.Errorf("spool: heartbeat: %w: node id required", ErrInvalid)
	}
	return s.write(ctx, func(tx *wtx, now time.Time) error {
		started := n.StartedAt
		if started.IsZero() {
			started = now
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO nodes (id, addr, version, started_at, seen_at, in_flight) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, version = excluded.version, seen_at = excluded.seen_at, in_flight = excluded.in_flight`,
			n.ID, n.Addr, n.Version, micros(started), micros(now), n.InFlight)
		return err
	})
}

// ExpireSilentLeases implements [Nodes].
func (s *SQLite) ExpireSilentLeases(ctx context.Context, silentBefore time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *wtx, now time.Time) error {
		n = 0
		for _, tbl := range []string{"files", "documents"} {
			res, err := tx.ExecContext(ctx, "UPDATE "+tbl+" SET lease_until = ?, updated_at = ? WHERE lease_owner <> '' AND lease_until > ?"+
				" AND state IN ("+openStatesSQL+") AND lease_owner IN (SELECT id FROM nodes WHERE seen_at < ?)", micros(now), micros(now), micros(now), micros(silentBefore))
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += k
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("spool: expire leases of silent nodes: %w", err)
	}
	return int(n), nil
}

// ListNodes implements [Nodes].
func (s *SQLite) ListNodes(ctx context.Context, since time.Time) ([]Node, error) {
	return list(ctx, s.r, "SELECT id, addr, version, started_at, seen_at, in_flight FROM nodes WHERE seen_at >= ? ORDER BY id",
		[]any{micros(since)}, func(sc scanner) (Node, error) {
			var n Node
			var started, seen int64
			err := sc.Scan(&n.ID, &n.Addr, &n.Version, &started, &seen, &n.InFlight)
			n.StartedAt, n.SeenAt = fromMicros(started), fromMicros(seen)
			return n, err
		})
}
