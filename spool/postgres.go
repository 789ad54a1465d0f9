package spool

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/postgres/*.sql
var postgresMigrations embed.FS

// Postgres is the multi-node [Store]: every node of a cluster opens the same
// database and schema. Transactions run at READ COMMITTED and take the locks
// their checks need explicitly: a row lock on the item a transition checks
// (SELECT … FOR NO KEY UPDATE), SKIP LOCKED for claims, a transaction-scoped
// advisory lock for duplicate detection (whose "no earlier copy" cannot be
// locked as a row), and the poll's lease row for BeginRun. Times are the
// injected clock's, not the server's now(), so that both backends behave the
// same under the contract's clock; the nodes' clocks must therefore agree
// (NTP) to well within the shortest lease.
type Postgres struct {
	pool   *pgxpool.Pool
	schema string
	clock  func() time.Time
}

// PostgresOptions tunes OpenPostgres; the zero value is the default.
type PostgresOptions struct {
	// Schema holds the tables; created if missing. Default "public".
	Schema string
	// MaxConns bounds the connection pool; default pgxpool's (the greater
	// of 4 and the number of CPUs).
	MaxConns int32
	// Clock replaces time.Now (tests).
	Clock func() time.Time
}

var _ Store = (*Postgres)(nil)

// Advisory lock classes: the two-key form pg_advisory_xact_lock(class, key)
// keeps our locks apart from other applications' one-key locks on the same
// database. The key is hashtext of a string that names the schema, so stores
// in different schemas of one database do not wait for each other.
const (
	pgLockMigrate    int32 = 0x65646900 // key: the schema
	pgLockFileDedupe int32 = 0x65646901 // key: schema, partner, sha256
	pgLockIxDedupe   int32 = 0x65646902 // key: schema, partner, control
)

// OpenPostgres connects to the database at dsn (a PostgreSQL URL or
// key=value string), creates the schema if missing and migrates it to the
// version this binary knows. It refuses a schema migrated by a newer binary.
func OpenPostgres(ctx context.Context, dsn string, o *PostgresOptions) (*Postgres, error) {
	var opt PostgresOptions
	if o != nil {
		opt = *o
	}
	opt.Schema = cmp.Or(opt.Schema, "public")
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	if opt.MaxConns < 0 {
		return nil, fmt.Errorf("spool: open postgres: %w: max conns %d", ErrInvalid, opt.MaxConns)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil { // pgconn's message masks a password
		return nil, fmt.Errorf("spool: open postgres: %w: %v", ErrInvalid, err)
	}
	if opt.MaxConns > 0 {
		cfg.MaxConns = opt.MaxConns
	}
	// Unqualified names resolve in the store's schema only. A startup
	// parameter rather than a SET in AfterConnect: no extra round trip, and
	// no connection can ever run a query before it is in effect.
	cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{opt.Schema}.Sanitize()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("spool: open postgres: %w", err)
	}
	p := &Postgres{pool: pool, schema: opt.Schema, clock: opt.Clock}
	if err := p.Migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("spool: open postgres schema %s: %w", opt.Schema, err)
	}
	return p, nil
}

// SchemaVersion returns the highest migration applied.
func (p *Postgres) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := p.pool.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

// Migrate creates the schema if missing and applies the embedded migrations
// not yet recorded in schema_migrations. All of it is one transaction
// (PostgreSQL's DDL is transactional: a failure leaves the schema as it was)
// holding an advisory lock, so that nodes starting together wait for the
// first instead of racing it; the others then find nothing left to do.
func (p *Postgres) Migrate(ctx context.Context) error {
	ms, err := loadMigrations(postgresMigrations, "migrations/postgres")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var step string
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := p.lock(ctx, tx, pgLockMigrate, p.schema); err != nil {
			return err
		}
		// Look before creating: CREATE … IF NOT EXISTS checks the privilege
		// to create even when there is nothing to do, and a node may run
		// under a role that can only read and write a schema migrated by
		// another (edigw migrate).
		var schemaExists, tableExists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
			to_regclass('schema_migrations') IS NOT NULL`, p.schema).Scan(&schemaExists, &tableExists); err != nil {
			return err
		}
		if !schemaExists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{p.schema}.Sanitize()); err != nil {
				return err
			}
		}
		if !tableExists {
			if _, err := tx.Exec(ctx, `CREATE TABLE schema_migrations (
				version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)`); err != nil {
				return err
			}
		}
		var have int
		if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&have); err != nil {
			return err
		}
		if have > len(ms) {
			return fmt.Errorf("database schema is version %d, this binary knows up to %d: upgrade edigw", have, len(ms))
		}
		for _, m := range ms[have:] {
			step = " " + m.name
			if _, err := tx.Exec(ctx, m.sql); err != nil { // no arguments: simple protocol, several statements
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", m.version, m.name, p.now()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate%s: %w", step, err)
	}
	return nil
}

// Close closes the pool; calling it again does nothing.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

// ---- helpers ----

func (p *Postgres) now() time.Time { return p.clock().UTC().Truncate(time.Microsecond) }

// tx runs fn in one transaction (READ COMMITTED: fn takes the locks its
// checks need) and commits it, or rolls it back if fn fails.
func (p *Postgres) tx(ctx context.Context, fn func(tx pgx.Tx, now time.Time) error) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error { return fn(tx, p.now()) })
}

// lock takes a transaction-scoped advisory lock on (class, key), held until
// commit or rollback. Keys hash to 32 bits; a collision only makes two
// unrelated transactions wait for each other.
func (p *Postgres) lock(ctx context.Context, tx pgx.Tx, class int32, key string) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", class, key); err != nil {
		return fmt.Errorf("advisory lock: %w", err)
	}
	return nil
}

// pgTime scans a nullable timestamptz: the zero time for NULL, else UTC.
type pgTime time.Time

func (t *pgTime) ScanTimestamptz(v pgtype.Timestamptz) error {
	*t = pgTime{}
	if v.Valid {
		*t = pgTime(v.Time.UTC())
	}
	return nil
}

// pgText scans a nullable text: "" for NULL.
type pgText string

func (s *pgText) ScanText(v pgtype.Text) error {
	*s = pgText(v.String)
	return nil
}

// pgTS is t as a nullable timestamptz: NULL for the zero time.
func pgTS(t time.Time) pgtype.Timestamptz { return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()} }

// pgNull is s as a nullable text (or json): NULL for "".
func pgNull[T ~string | ~[]byte](s T) any {
	if len(s) == 0 {
		return nil
	}
	return string(s)
}

func pgOneRow(tag pgconn.CommandTag, err error, id ID) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return nil
}

// withExtra scans extra columns after the ones its caller asks for.
type withExtra struct {
	scanner
	extra []any
}

func (w withExtra) Scan(dest ...any) error { return w.scanner.Scan(append(dest, w.extra...)...) }

// The column lists are SQLite's (fileCols, ixCols, …); only the scanning
// of times, nullable text and JSON differs.

func pgWorkDest(w *Work) []any {
	return []any{&w.State, &w.RetryOf, &w.Attempts, (*pgTime)(&w.NextAttemptAt), &w.LastError, &w.LeaseOwner, (*pgTime)(&w.LeaseUntil)}
}

func pgScanFile(sc scanner) (File, error) {
	var f File
	dest := []any{&f.ID, &f.Partner, &f.Channel, &f.Direction, &f.Name, &f.RemotePath, &f.Blob.SHA256, &f.Blob.Size,
		(*pgTime)(&f.ReceivedAt), (*pgText)(&f.DuplicateOf), (*[]byte)(&f.Meta)}
	dest = append(dest, pgWorkDest(&f.Work)...)
	dest = append(dest, (*pgTime)(&f.CreatedAt), (*pgTime)(&f.UpdatedAt))
	if err := sc.Scan(dest...); err != nil {
		return File{}, err
	}
	return f, nil
}

func pgScanInterchange(sc scanner) (Interchange, error) {
	var x Interchange
	err := sc.Scan(&x.ID, &x.FileID, &x.Seq, &x.Partner, &x.Control, &x.Sender, &x.Receiver, &x.Version, &x.State,
		(*pgText)(&x.DuplicateOf), (*pgTime)(&x.ReceivedAt), &x.Ack.Kind, &x.Ack.Status, &x.Ack.Control, &x.Ack.Blob.SHA256,
		&x.Ack.Blob.Size, (*pgTime)(&x.Ack.At), (*[]byte)(&x.Meta), (*pgTime)(&x.CreatedAt), (*pgTime)(&x.UpdatedAt))
	if err != nil {
		return Interchange{}, err
	}
	return x, nil
}

func pgScanDocument(sc scanner) (Document, error) {
	var d Document
	dest := []any{&d.ID, &d.FileID, (*pgText)(&d.InterchangeID), &d.Seq, &d.Partner, &d.Type, &d.GroupControl, &d.SetControl,
		&d.BusinessKey, &d.IdempotencyKey, &d.Mapped.SHA256, &d.Mapped.Size, &d.Response.Status, &d.Response.Body.SHA256,
		&d.Response.Body.Size, &d.Response.Inline, (*pgTime)(&d.Response.At), (*[]byte)(&d.Meta)}
	dest = append(dest, pgWorkDest(&d.Work)...)
	dest = append(dest, (*pgTime)(&d.CreatedAt), (*pgTime)(&d.UpdatedAt))
	if err := sc.Scan(dest...); err != nil {
		return Document{}, err
	}
	return d, nil
}

func pgScanEvent(sc scanner) (Event, error) {
	var e Event
	err := sc.Scan(&e.Seq, &e.Subject, (*pgTime)(&e.At), &e.Actor, &e.Kind, &e.From, &e.To, &e.Message, (*[]byte)(&e.Detail))
	if err != nil {
		return Event{}, err
	}
	return e, nil
}

func pgInsertEvent(ctx context.Context, tx pgx.Tx, e Event) error {
	_, err := tx.Exec(ctx, "INSERT INTO events (subject, at, actor, kind, from_state, to_state, message, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
		e.Subject, e.At, e.Actor, e.Kind, e.From, e.To, e.Message, pgNull(e.Detail))
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}

// pgList runs a query on the pool and scans every row (nil for none).
func pgList[T any](ctx context.Context, p *Postgres, q string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := p.pool.Query(ctx, q, args...)
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

// ---- Recorder ----

// AddFile implements [Recorder].
func (p *Postgres) AddFile(ctx context.Context, nf NewFile) (File, error) {
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
	err := p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
		if !nf.NoDedupe {
			// Two nodes receiving the same bytes at once must not both find
			// no original, and "no earlier row" cannot be row-locked: the
			// advisory lock serialises check and insert for this partner and
			// content only, without SERIALIZABLE's retries and false
			// conflicts. It is taken before the check's snapshot, so the
			// check sees whatever the previous holder committed; and before
			// the clock is read, so that holder's file counts as received
			// earlier.
			if err := p.lock(ctx, tx, pgLockFileDedupe, p.schema+":"+nf.Partner+":"+nf.Blob.SHA256); err != nil {
				return err
			}
			now = p.now()
		}
		received := cmpOrTime(norm(nf.ReceivedAt), now)
		id, err := NewID(KindFile, now)
		if err != nil {
			return err
		}
		if err := pgInsertInline(ctx, tx, nf.Inline); err != nil {
			return err
		}
		var dupOf string
		if !nf.NoDedupe {
			q := "SELECT id FROM files WHERE partner = $1 AND sha256 = $2 AND duplicate_of IS NULL AND received_at <= $3"
			args := []any{nf.Partner, nf.Blob.SHA256, received}
			if nf.DedupeWindow > 0 {
				q += " AND received_at >= $4"
				args = append(args, received.Add(-nf.DedupeWindow))
			}
			err := tx.QueryRow(ctx, q+" ORDER BY received_at, id LIMIT 1", args...).Scan(&dupOf)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
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
		f, err = pgScanFile(tx.QueryRow(ctx, `INSERT INTO files (id, partner, channel, direction, name, remote_path, sha256, size,
			received_at, duplicate_of, meta, state, next_attempt_at, created_at, updated_at, lease_owner, lease_until)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $13, $14, $15) RETURNING `+fileCols,
			id, nf.Partner, nf.Channel, nf.Direction, nf.Name, nf.RemotePath, nf.Blob.SHA256, nf.Blob.Size,
			received, pgNull(dupOf), pgNull(nf.Meta), state, now, lease.Owner, pgTS(lease.until(now))))
		if err != nil {
			return err
		}
		return pgInsertEvent(ctx, tx, Event{Subject: id, At: now, Actor: actor, Kind: EventCreated, To: state, Message: msg})
	})
	if err != nil {
		return File{}, fmt.Errorf("spool: add file: %w", err)
	}
	return f, nil
}

// AddInterchange implements [Recorder].
func (p *Postgres) AddInterchange(ctx context.Context, ni NewInterchange) (Interchange, []Document, error) {
	if err := ni.check(); err != nil {
		return Interchange{}, nil, fmt.Errorf("spool: add interchange: %w", err)
	}
	var (
		x    Interchange
		docs []Document
	)
	err := p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
		var err error
		if x, now, err = p.addInterchange(ctx, tx, now, ni); err != nil || x.State == StateDuplicate {
			return err
		}
		if err := pgInsertInline(ctx, tx, ni.Inline...); err != nil {
			return err
		}
		docs = docs[:0]
		for _, nd := range ni.Documents {
			nd.FileID, nd.InterchangeID = ni.FileID, x.ID
			d, err := p.addDocument(ctx, tx, now, nd)
			if err != nil {
				return fmt.Errorf("document %d: %w", nd.Seq, err)
			}
			docs = append(docs, d)
		}
		if ni.Ack.Kind != "" && x.Ack.Kind == "" {
			if err := pgSetAck(ctx, tx, now, x.ID, ni.Ack, Options{Actor: "system"}); err != nil {
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

// addInterchange records the interchange, or returns the one recorded
// before at its position; and the clock as the dedupe lock left it.
func (p *Postgres) addInterchange(ctx context.Context, tx pgx.Tx, now time.Time, ni NewInterchange) (Interchange, time.Time, error) {
	const byPos = "SELECT " + ixCols + " FROM interchanges WHERE file_id = $1 AND seq = $2"
	x, err := pgScanInterchange(tx.QueryRow(ctx, byPos, ni.FileID, ni.Seq))
	if err == nil {
		return x, now, nil // added before: a re-run of the same stage
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return x, now, err
	}
	var partner string
	var received time.Time
	if err := tx.QueryRow(ctx, "SELECT partner, received_at FROM files WHERE id = $1", ni.FileID).Scan(&partner, (*pgTime)(&received)); err != nil {
		return x, now, notFound(err, ni.FileID)
	}
	state, dupOf, msg := StateParsed, "", ""
	if ni.Rejected {
		state = StateRejected
	} else if !ni.NoDedupe {
		// As in AddFile: two nodes parsing copies of one interchange at
		// once must find exactly one original.
		if err := p.lock(ctx, tx, pgLockIxDedupe, p.schema+":"+partner+":"+ni.Control); err != nil {
			return x, now, err
		}
		now = p.now()
		q, args := pgDedupeQuery(partner, ni.Control, received, ni.DedupeWindow)
		err := tx.QueryRow(ctx, q, args...).Scan(&dupOf)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return x, now, fmt.Errorf("dedupe: %w", err)
		}
		if dupOf != "" {
			state, msg = StateDuplicate, "interchange control "+ni.Control+" already received in "+dupOf
		}
	}
	id, err := NewID(KindInterchange, now)
	if err != nil {
		return x, now, err
	}
	// A concurrent add of the same position (another node re-running the
	// stage) makes the insert wait for it and then do nothing: return its
	// record.
	x, err = pgScanInterchange(tx.QueryRow(ctx, `INSERT INTO interchanges (id, file_id, seq, partner, control, sender, receiver,
		version, state, duplicate_of, received_at, meta, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
		ON CONFLICT (file_id, seq) DO NOTHING RETURNING `+ixCols,
		id, ni.FileID, ni.Seq, partner, ni.Control, ni.Sender, ni.Receiver, ni.Version, state, pgNull(dupOf), received,
		pgNull(ni.Meta), now))
	if errors.Is(err, pgx.ErrNoRows) {
		x, err = pgScanInterchange(tx.QueryRow(ctx, byPos, ni.FileID, ni.Seq))
		return x, now, err
	}
	if err != nil {
		return x, now, err
	}
	return x, now, pgInsertEvent(ctx, tx, Event{Subject: id, At: now, Actor: "system", Kind: EventCreated, To: state, Message: msg})
}

// AddDocument implements [Recorder].
func (p *Postgres) AddDocument(ctx context.Context, nd NewDocument) (Document, error) {
	if _, err := nd.check(); err != nil {
		return Document{}, fmt.Errorf("spool: add document: %w", err)
	}
	var d Document
	err := p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
		var err error
		d, err = p.addDocument(ctx, tx, now, nd)
		return err
	})
	if err != nil {
		return Document{}, fmt.Errorf("spool: add document to %s: %w", nd.FileID, err)
	}
	return d, nil
}

// addDocument records a checked document, or returns the one recorded
// before at its position.
func (p *Postgres) addDocument(ctx context.Context, tx pgx.Tx, now time.Time, nd NewDocument) (Document, error) {
	const byPos = "SELECT " + docCols + " FROM documents WHERE file_id = $1 AND seq = $2"
	d, err := pgScanDocument(tx.QueryRow(ctx, byPos, nd.FileID, nd.Seq))
	if err == nil {
		return d, nil // added before
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return d, err
	}
	var partner string
	if err := tx.QueryRow(ctx, "SELECT partner FROM files WHERE id = $1", nd.FileID).Scan(&partner); err != nil {
		return d, notFound(err, nd.FileID)
	}
	if nd.InterchangeID != "" {
		var fileID ID
		if err := tx.QueryRow(ctx, "SELECT file_id FROM interchanges WHERE id = $1", nd.InterchangeID).Scan(&fileID); err != nil {
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
	d, err = pgScanDocument(tx.QueryRow(ctx, `INSERT INTO documents (id, file_id, interchange_id, seq, partner, type,
		group_control, set_control, business_key, idempotency_key, meta, state, last_error, next_attempt_at, created_at, updated_at,
		mapped_sha256, mapped_size, lease_owner, lease_until)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $14, $15, $16, $17, $18)
		ON CONFLICT (file_id, seq) DO NOTHING RETURNING `+docCols,
		id, nd.FileID, pgNull(nd.InterchangeID), nd.Seq, partner, nd.Type, nd.GroupControl, nd.SetControl,
		nd.BusinessKey, nd.IdempotencyKey, pgNull(nd.Meta), state, nd.Reason, now, nd.Mapped.SHA256, nd.Mapped.Size,
		nd.Lease.Owner, pgTS(nd.Lease.until(now))))
	if errors.Is(err, pgx.ErrNoRows) { // added meanwhile by a concurrent caller
		return pgScanDocument(tx.QueryRow(ctx, byPos, nd.FileID, nd.Seq))
	}
	if err != nil {
		return d, err
	}
	for _, ref := range nd.Refs {
		if ref == "" || ref == nd.BusinessKey {
			continue
		}
		if _, err := tx.Exec(ctx, "INSERT INTO document_refs (document_id, ref) VALUES ($1, $2) ON CONFLICT DO NOTHING", id, ref); err != nil {
			return d, err
		}
	}
	return d, pgInsertEvent(ctx, tx, Event{Subject: id, At: now, Actor: cmp.Or(nd.Actor, "system"), Kind: EventCreated, To: state, Message: nd.Reason})
}

// SetInterchangeAck implements [Recorder].
func (p *Postgres) SetInterchangeAck(ctx context.Context, id ID, a Ack, opts ...Option) error {
	o, err := ApplyOptions(opts)
	if err == nil && id.Kind() != KindInterchange {
		err = fmt.Errorf("%w: %q is not an interchange id", ErrInvalid, id)
	}
	if err == nil && !a.Blob.IsZero() {
		err = a.Blob.Check()
	}
	if err == nil {
		err = p.tx(ctx, func(tx pgx.Tx, now time.Time) error { return pgSetAck(ctx, tx, now, id, a, o) })
	}
	if err != nil {
		return fmt.Errorf("spool: set ack of %s: %w", id, err)
	}
	return nil
}

func pgSetAck(ctx context.Context, tx pgx.Tx, now time.Time, id ID, a Ack, o Options) error {
	at := cmpOrTime(norm(a.At), now)
	tag, err := tx.Exec(ctx, `UPDATE interchanges SET ack_kind = $1, ack_status = $2, ack_control = $3, ack_sha256 = $4,
		ack_size = $5, ack_at = $6, updated_at = $7 WHERE id = $8`,
		a.Kind, a.Status, a.Control, a.Blob.SHA256, a.Blob.Size, at, now, id)
	if err := pgOneRow(tag, err, id); err != nil {
		return err
	}
	detail := o.Detail
	if detail == nil {
		detail, _ = json.Marshal(map[string]string{"kind": a.Kind, "status": a.Status, "control": a.Control})
	}
	return pgInsertEvent(ctx, tx, Event{Subject: id, At: now, Actor: o.Actor, Kind: EventAck, Message: o.Reason, Detail: detail})
}

// SetDocumentMapped implements [Recorder].
func (p *Postgres) SetDocumentMapped(ctx context.Context, id ID, mapped BlobRef, businessKey string) error {
	err := mapped.Check()
	if err == nil && id.Kind() != KindDocument {
		err = fmt.Errorf("%w: %q is not a document id", ErrInvalid, id)
	}
	if err == nil {
		tag, qerr := p.pool.Exec(ctx, `UPDATE documents SET mapped_sha256 = $1, mapped_size = $2,
			business_key = COALESCE(NULLIF($3::text, ''), business_key), updated_at = $4 WHERE id = $5`,
			mapped.SHA256, mapped.Size, businessKey, p.now(), id)
		err = pgOneRow(tag, qerr, id)
	}
	if err != nil {
		return fmt.Errorf("spool: set mapped of %s: %w", id, err)
	}
	return nil
}

// pgSetResult records the ERP's answer r on document id, and its event (ev
// gives the actor, message and detail; the detail defaults to the status
// and the body's hash).
func pgSetResult(ctx context.Context, tx pgx.Tx, id ID, r Response, now time.Time, ev Event) error {
	at := cmpOrTime(norm(r.At), now)
	tag, err := tx.Exec(ctx, `UPDATE documents SET resp_status = $1, resp_sha256 = $2, resp_size = $3, resp_inline = $4, resp_at = $5,
		updated_at = $6 WHERE id = $7`, r.Status, r.Body.SHA256, r.Body.Size, r.Inline, at, now, id)
	if err := pgOneRow(tag, err, id); err != nil {
		return err
	}
	return pgInsertEvent(ctx, tx, resultEvent(id, r, now, ev))
}

// SetDocumentResult implements [Recorder].
func (p *Postgres) SetDocumentResult(ctx context.Context, id ID, r Response, opts ...Option) error {
	o, err := ApplyOptions(opts)
	if err == nil && id.Kind() != KindDocument {
		err = fmt.Errorf("%w: %q is not a document id", ErrInvalid, id)
	}
	if err == nil {
		err = r.check()
	}
	if err == nil {
		err = p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
			return pgSetResult(ctx, tx, id, r, now, Event{Actor: o.Actor, Message: o.Reason, Detail: o.Detail})
		})
	}
	if err != nil {
		return fmt.Errorf("spool: set result of %s: %w", id, err)
	}
	return nil
}

// AddEvent implements [Recorder].
func (p *Postgres) AddEvent(ctx context.Context, e Event) error {
	err := checkJSON("detail", e.Detail)
	if err == nil && e.Kind != EventNote && e.Kind != EventError {
		err = fmt.Errorf("%w: only note and error events may be added, not %q", ErrInvalid, e.Kind)
	}
	tbl := map[Kind]string{KindFile: "files", KindDocument: "documents", KindInterchange: "interchanges"}[e.Subject.Kind()]
	if err == nil && tbl == "" {
		err = fmt.Errorf("%w: %q is not an id", ErrInvalid, e.Subject)
	}
	if err == nil {
		err = p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
			var one int
			if err := tx.QueryRow(ctx, "SELECT 1 FROM "+tbl+" WHERE id = $1", e.Subject).Scan(&one); err != nil {
				return notFound(err, e.Subject)
			}
			e.At, e.From, e.To, e.Actor = now, "", "", cmp.Or(e.Actor, "system")
			return pgInsertEvent(ctx, tx, e)
		})
	}
	if err != nil {
		return fmt.Errorf("spool: add event to %s: %w", e.Subject, err)
	}
	return nil
}

// ---- Queue ----

// Claim implements [Queue].
func (p *Postgres) Claim(ctx context.Context, kind Kind, states []State, owner string, lease time.Duration, limit int) ([]Item, error) {
	tbl := map[Kind]string{KindFile: "files", KindDocument: "documents"}[kind]
	var err error
	switch {
	case tbl == "":
		err = fmt.Errorf("%w: cannot claim kind %q", ErrInvalid, kind)
	case len(states) == 0 || owner == "" || lease <= 0 || limit <= 0:
		err = fmt.Errorf("%w: states, owner, a positive lease and a positive limit are required", ErrInvalid)
	}
	stages := make([]string, len(states))
	for i, st := range states {
		if err == nil {
			if err = checkState(st); err == nil && st == StateRetrying {
				err = fmt.Errorf("%w: claim the retried stage, not %q", ErrInvalid, st)
			}
		}
		stages[i] = string(st)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: claim: %w", err)
	}
	limit = min(limit, maxClaim)
	cols := map[Kind]string{KindFile: fileCols, KindDocument: docCols}[kind]

	var items []Item
	err = p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
		items = items[:0]
		// SKIP LOCKED: claimers on other connections and nodes pass over
		// the rows another claim is taking instead of queueing behind it
		// (and then finding them leased). NO KEY UPDATE rather than UPDATE:
		// adding an interchange or document to a claimed file takes FOR KEY
		// SHARE on it (the foreign key), which must not wait for the claim.
		// The CTE returns the rows as they were, for the reclaim events.
		rows, err := tx.Query(ctx, `WITH c (cid, prev_owner, prev_until) AS (
				SELECT id, lease_owner, lease_until FROM `+tbl+`
				WHERE (state = ANY($1) OR (state = 'retrying' AND retry_of = ANY($1)))
				AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2)
				ORDER BY next_attempt_at, id LIMIT $3
				FOR NO KEY UPDATE SKIP LOCKED)
			UPDATE `+tbl+` SET lease_owner = $4, lease_until = $5, updated_at = $2 FROM c WHERE id = cid
			RETURNING `+cols+`, prev_owner, prev_until`,
			stages, now, limit, owner, now.Add(lease))
		if err != nil {
			return err
		}
		type prev struct {
			owner string
			until time.Time
		}
		var prevs []prev
		for rows.Next() {
			var pv prev
			sc := withExtra{rows, []any{&pv.owner, (*pgTime)(&pv.until)}}
			it := Item{Kind: kind}
			if kind == KindFile {
				f, err := pgScanFile(sc)
				if err != nil {
					rows.Close()
					return err
				}
				it.File = &f
			} else {
				d, err := pgScanDocument(sc)
				if err != nil {
					rows.Close()
					return err
				}
				it.Document = &d
			}
			items = append(items, it)
			prevs = append(prevs, pv)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i, it := range items {
			if pv := prevs[i]; pv.owner != "" {
				detail, _ := json.Marshal(map[string]any{"previous_owner": pv.owner, "expired_at": pv.until})
				err := pgInsertEvent(ctx, tx, Event{Subject: it.ID(), At: now, Actor: owner, Kind: EventReclaim,
					Message: "lease of " + pv.owner + " expired", Detail: detail})
				if err != nil {
					return err
				}
			}
		}
		// UPDATE … RETURNING has no order: oldest due first, as selected.
		slices.SortFunc(items, func(a, b Item) int {
			return cmp.Or(a.Work().NextAttemptAt.Compare(b.Work().NextAttemptAt), strings.Compare(string(a.ID()), string(b.ID())))
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: claim %s: %w", kind, err)
	}
	return items, nil
}

// current reads id's state and lease and locks its row until the
// transaction ends, so that the checks made on it hold when it is updated.
// It then sets *now afresh: the lock may have been waited for, and the lease
// check and the event's time must follow the previous holder's.
func (p *Postgres) current(ctx context.Context, tx pgx.Tx, tbl string, id ID, now *time.Time) (current, error) {
	var c current
	err := tx.QueryRow(ctx, "SELECT state, retry_of, lease_owner, lease_until FROM "+tbl+" WHERE id = $1 FOR NO KEY UPDATE", id).
		Scan(&c.state, &c.retryOf, &c.owner, (*pgTime)(&c.until))
	*now = p.now()
	return c, notFound(err, id)
}

// ExtendLease implements [Queue].
func (p *Postgres) ExtendLease(ctx context.Context, id ID, owner string, lease time.Duration) (time.Time, error) {
	tbl, err := workTable(id)
	if err == nil && (owner == "" || lease <= 0) {
		err = fmt.Errorf("%w: owner and a positive lease are required", ErrInvalid)
	}
	var until time.Time
	if err == nil {
		err = p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
			c, err := p.current(ctx, tx, tbl, id, &now)
			if err != nil {
				return err
			}
			if err := checkLease(c, owner, now); err != nil {
				return err
			}
			until = now.Add(lease)
			_, err = tx.Exec(ctx, "UPDATE "+tbl+" SET lease_until = $1, updated_at = $2 WHERE id = $3", until, now, id)
			return err
		})
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("spool: extend lease on %s: %w", id, err)
	}
	return until, nil
}

// Release implements [Queue].
func (p *Postgres) Release(ctx context.Context, id ID, owner string, opts ...Option) error {
	tbl, err := workTable(id)
	o, oerr := ApplyOptions(opts)
	err = errors.Join(err, oerr)
	if err == nil && owner == "" {
		err = fmt.Errorf("%w: owner is required", ErrInvalid)
	}
	if err == nil {
		err = p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
			c, err := p.current(ctx, tx, tbl, id, &now)
			if err != nil {
				return err
			}
			if err := checkLease(c, owner, now); err != nil {
				return err
			}
			next := cmpOrTime(norm(o.NextAt), now)
			_, err = tx.Exec(ctx, "UPDATE "+tbl+" SET lease_owner = '', lease_until = NULL, next_attempt_at = $1, updated_at = $2 WHERE id = $3",
				next, now, id)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("spool: release %s: %w", id, err)
	}
	return nil
}

// Transition implements [Queue].
func (p *Postgres) Transition(ctx context.Context, id ID, from, to State, opts ...Option) error {
	tbl, err := workTable(id)
	o, oerr := ApplyOptions(opts)
	err = errors.Join(err, oerr, o.check(id), checkState(from), checkState(to))
	if err == nil {
		err = p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
			c, err := p.current(ctx, tx, tbl, id, &now)
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
				if err := pgSetResult(ctx, tx, id, *o.Response, now, Event{Actor: o.Actor}); err != nil {
					return err
				}
			}
			final := path[len(path)-1]
			// A forward move starts the next stage afresh; a stop keeps the
			// count and records why.
			next := cmpOrTime(norm(o.NextAt), now)
			args := []any{final, next, now, id}
			set := "attempts = 0, last_error = '', "
			if !final.InPipeline() {
				set = ""
				if o.Reason != "" {
					set = "last_error = $5, "
					args = append(args, o.Reason)
				}
			}
			_, err = tx.Exec(ctx, "UPDATE "+tbl+" SET "+set+"state = $1, retry_of = '', next_attempt_at = $2, lease_owner = '', lease_until = NULL, updated_at = $3 WHERE id = $4", args...)
			if err != nil {
				return err
			}
			for _, ev := range o.hopEvents(id, now, c.state, path) {
				if err := pgInsertEvent(ctx, tx, ev); err != nil {
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
func (p *Postgres) Retry(ctx context.Context, id ID, cause error, next time.Time, opts ...Option) error {
	tbl, err := workTable(id)
	o, oerr := ApplyOptions(opts)
	err = errors.Join(err, oerr)
	if err == nil && cause == nil {
		err = fmt.Errorf("%w: a cause is required", ErrInvalid)
	}
	if err == nil {
		err = p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
			c, err := p.current(ctx, tx, tbl, id, &now)
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
			err = tx.QueryRow(ctx, "UPDATE "+tbl+` SET state = 'retrying', retry_of = $1, attempts = attempts + 1, last_error = $2,
				next_attempt_at = $3, lease_owner = '', lease_until = NULL, updated_at = $4 WHERE id = $5 RETURNING attempts`,
				stage, cause.Error(), due, now, id).Scan(&attempts)
			if err != nil {
				return err
			}
			detail := o.Detail
			if detail == nil {
				detail, _ = json.Marshal(map[string]any{"stage": stage, "attempt": attempts, "next_attempt_at": due})
			}
			return pgInsertEvent(ctx, tx, Event{Subject: id, At: now, Actor: o.Actor, Kind: EventRetry, From: c.state, To: StateRetrying,
				Message: cause.Error(), Detail: detail})
		})
	}
	if err != nil {
		return fmt.Errorf("spool: retry %s: %w", id, err)
	}
	return nil
}

// Replay implements [Queue].
func (p *Postgres) Replay(ctx context.Context, id ID, to State, opts ...Option) error {
	tbl, err := workTable(id)
	o, oerr := ApplyOptions(opts)
	err = errors.Join(err, oerr)
	if err == nil && !CanReplayTo(to) {
		err = fmt.Errorf("%w: replay to %q (a pipeline state before done)", ErrInvalidTransition, to)
	}
	if err == nil {
		err = p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
			c, err := p.current(ctx, tx, tbl, id, &now)
			if err != nil {
				return err
			}
			if err := checkLease(c, o.Owner, now); err != nil {
				return err
			}
			next := cmpOrTime(norm(o.NextAt), now)
			_, err = tx.Exec(ctx, "UPDATE "+tbl+` SET state = $1, retry_of = '', attempts = 0, last_error = '', next_attempt_at = $2,
				lease_owner = '', lease_until = NULL, updated_at = $3 WHERE id = $4`, to, next, now, id)
			if err != nil {
				return err
			}
			return pgInsertEvent(ctx, tx, Event{Subject: id, At: now, Actor: o.Actor, Kind: EventReplay, From: c.state, To: to, Message: o.Reason, Detail: o.Detail})
		})
	}
	if err != nil {
		return fmt.Errorf("spool: replay %s to %s: %w", id, to, err)
	}
	return nil
}

// ---- Reader ----

// GetFile implements [Reader].
func (p *Postgres) GetFile(ctx context.Context, id ID) (File, error) {
	f, err := pgScanFile(p.pool.QueryRow(ctx, "SELECT "+fileCols+" FROM files WHERE id = $1", id))
	if err != nil {
		return File{}, fmt.Errorf("spool: get file: %w", notFound(err, id))
	}
	return f, nil
}

// pgInsertInline stores small blobs in the spool (see InlineMax).
func pgInsertInline(ctx context.Context, tx pgx.Tx, blobs ...[]byte) error {
	for _, b := range blobs {
		if b == nil {
			continue
		}
		if _, err := tx.Exec(ctx, "INSERT INTO inline_blobs (sha256, content) VALUES ($1, $2) ON CONFLICT DO NOTHING", sumOf(b), b); err != nil {
			return fmt.Errorf("inline blob: %w", err)
		}
	}
	return nil
}

// InlineBlob implements [InlineReader].
func (p *Postgres) InlineBlob(ctx context.Context, sum string) ([]byte, error) {
	key, err := inlineKey(sum)
	if err != nil {
		return nil, err
	}
	var b []byte
	err = p.pool.QueryRow(ctx, "SELECT content FROM inline_blobs WHERE sha256 = $1", key).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("spool: inline blob %s: %w", sum, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: inline blob %s: %w", sum, err)
	}
	return b, nil
}

// pgDedupeQuery finds the interchange of partner with control that one
// received at received duplicates: the earliest parsed one, within window
// before it.
func pgDedupeQuery(partner, control string, received time.Time, window time.Duration) (string, []any) {
	q := "SELECT id FROM interchanges WHERE partner = $1 AND control = $2 AND state = 'parsed' AND received_at <= $3"
	args := []any{partner, control, received}
	if window > 0 {
		q += " AND received_at >= $4"
		args = append(args, received.Add(-window))
	}
	return q + " ORDER BY received_at, id LIMIT 1", args
}

// DuplicateInterchange implements [Store].
func (p *Postgres) DuplicateInterchange(ctx context.Context, fileID ID, seq int, control string, window time.Duration) (ID, error) {
	var recorded bool
	if err := p.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM interchanges WHERE file_id = $1 AND seq = $2)", fileID, seq).Scan(&recorded); err != nil {
		return "", fmt.Errorf("spool: duplicate check: %w", err)
	}
	if recorded {
		return "", nil
	}
	var partner string
	var received time.Time
	if err := p.pool.QueryRow(ctx, "SELECT partner, received_at FROM files WHERE id = $1", fileID).Scan(&partner, (*pgTime)(&received)); err != nil {
		return "", fmt.Errorf("spool: duplicate check: %w", notFound(err, fileID))
	}
	q, args := pgDedupeQuery(partner, control, received, window)
	var dup string
	if err := p.pool.QueryRow(ctx, q, args...).Scan(&dup); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("spool: duplicate check: %w", err)
	}
	return ID(dup), nil
}

// GetInterchange implements [Reader].
func (p *Postgres) GetInterchange(ctx context.Context, id ID) (Interchange, error) {
	x, err := pgScanInterchange(p.pool.QueryRow(ctx, "SELECT "+ixCols+" FROM interchanges WHERE id = $1", id))
	if err != nil {
		return Interchange{}, fmt.Errorf("spool: get interchange: %w", notFound(err, id))
	}
	return x, nil
}

// GetDocument implements [Reader].
func (p *Postgres) GetDocument(ctx context.Context, id ID) (Document, error) {
	d, err := pgScanDocument(p.pool.QueryRow(ctx, "SELECT "+docCols+" FROM documents WHERE id = $1", id))
	if err != nil {
		return Document{}, fmt.Errorf("spool: get document: %w", notFound(err, id))
	}
	return d, nil
}

// ListFiles implements [Reader].
func (p *Postgres) ListFiles(ctx context.Context, f FileFilter) ([]File, string, error) {
	w := pgWhere()
	fileConds(w, f)
	tail, limit := w.page(f.Page)
	files, err := pgList(ctx, p, "SELECT "+fileCols+" FROM files"+tail, w.args, pgScanFile)
	if err != nil {
		return nil, "", fmt.Errorf("spool: list files: %w", err)
	}
	files, next := pageOf(files, limit, func(f *File) ID { return f.ID })
	return files, next, nil
}

// ListInterchanges implements [Reader].
func (p *Postgres) ListInterchanges(ctx context.Context, fileID ID) ([]Interchange, error) {
	xs, err := pgList(ctx, p, "SELECT "+ixCols+" FROM interchanges WHERE file_id = $1 ORDER BY seq", []any{fileID}, pgScanInterchange)
	if err != nil {
		return nil, fmt.Errorf("spool: list interchanges of %s: %w", fileID, err)
	}
	return xs, nil
}

// ListDocuments implements [Reader].
func (p *Postgres) ListDocuments(ctx context.Context, f DocumentFilter) ([]Document, string, error) {
	w := pgWhere()
	documentConds(w, f)
	tail, limit := w.page(f.Page)
	docs, err := pgList(ctx, p, "SELECT "+docCols+" FROM documents"+tail, w.args, pgScanDocument)
	if err != nil {
		return nil, "", fmt.Errorf("spool: list documents: %w", err)
	}
	docs, next := pageOf(docs, limit, func(d *Document) ID { return d.ID })
	return docs, next, nil
}

// Events implements [Reader].
func (p *Postgres) Events(ctx context.Context, id ID) ([]Event, error) {
	evs, err := pgList(ctx, p, "SELECT "+eventCols+" FROM events WHERE subject = $1 ORDER BY seq", []any{id}, pgScanEvent)
	if err == nil && len(evs) == 0 {
		err = fmt.Errorf("%s: %w", id, ErrNotFound) // every record has its "created" event
	}
	if err != nil {
		return nil, fmt.Errorf("spool: events of %s: %w", id, err)
	}
	return evs, nil
}

// Depth implements [Reader].
func (p *Postgres) Depth(ctx context.Context) (map[Kind]map[State]int, error) {
	type row struct {
		kind  Kind
		state State
		n     int
	}
	rows, err := pgList(ctx, p, `SELECT 'file', state, COUNT(*) FROM files GROUP BY state
		UNION ALL SELECT 'document', state, COUNT(*) FROM documents GROUP BY state`, nil, func(sc scanner) (row, error) {
		var r row
		err := sc.Scan(&r.kind, &r.state, &r.n)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("spool: depth: %w", err)
	}
	out := map[Kind]map[State]int{KindFile: {}, KindDocument: {}}
	for _, r := range rows {
		out[r.kind][r.state] = r.n
	}
	return out, nil
}

// ---- Counters ----

// NextControl implements [Counters].
func (p *Postgres) NextControl(ctx context.Context, partner, name string) (int64, error) {
	return p.ReserveControls(ctx, partner, name, 1)
}

// ReserveControls implements [Counters]. One statement: the upsert locks
// the counter's row, so concurrent callers on any node queue for it and
// each sees the value the previous one committed.
func (p *Postgres) ReserveControls(ctx context.Context, partner, name string, n int) (int64, error) {
	if err := checkReserve(partner, name, n); err != nil {
		return 0, err
	}
	var v int64
	err := p.pool.QueryRow(ctx, `INSERT INTO counters (partner, name, value, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (partner, name) DO UPDATE
		SET value = CASE WHEN counters.value > $5 THEN excluded.value ELSE counters.value + excluded.value END, updated_at = excluded.updated_at
		RETURNING value`, partner, name, int64(n), p.now(), int64(MaxControl-n)).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("spool: next control %s/%s: %w", partner, name, err)
	}
	return v - int64(n) + 1, nil
}

// ---- Polls ----

func pgScanRun(sc scanner) (PollRun, error) {
	var r PollRun
	if err := sc.Scan(&r.ID, &r.Partner, &r.Poll, &r.Owner, &r.Trigger, &r.Status, (*pgTime)(&r.StartedAt), (*pgTime)(&r.EndedAt),
		(*pgTime)(&r.LeaseUntil), &r.Seen, &r.Fetched, &r.Skipped, &r.Failed, &r.Errors); err != nil {
		return PollRun{}, err
	}
	if len(r.Errors) == 0 {
		r.Errors = nil
	}
	return r, nil
}

// BeginRun implements [Polls].
func (p *Postgres) BeginRun(ctx context.Context, nr NewRun, lease time.Duration) (PollRun, error) {
	if nr.Partner == "" || nr.Poll == "" || nr.Owner == "" || lease <= 0 {
		return PollRun{}, fmt.Errorf("spool: begin run: %w: partner, poll, owner and a positive lease are required", ErrInvalid)
	}
	var r PollRun
	err := p.tx(ctx, func(tx pgx.Tx, _ time.Time) error {
		// The poll's lease row decides between concurrent BeginRuns on any
		// node: make sure it exists (an insert racing another waits for it,
		// then does nothing), then lock it; whoever gets the lock second
		// sees the first one's run.
		_, err := tx.Exec(ctx, "INSERT INTO poll_leases (partner, poll) VALUES ($1, $2) ON CONFLICT DO NOTHING", nr.Partner, nr.Poll)
		if err != nil {
			return err
		}
		var held pgtype.Int8
		var holder string
		var until time.Time
		err = tx.QueryRow(ctx, "SELECT run_id, owner, lease_until FROM poll_leases WHERE partner = $1 AND poll = $2 FOR UPDATE",
			nr.Partner, nr.Poll).Scan(&held, &holder, (*pgTime)(&until))
		if err != nil {
			return err
		}
		now := p.now() // the lock may have been waited for: judge the lease by the time it is ours
		switch {
		case held.Valid && until.After(now):
			return fmt.Errorf("%w: %s holds it (run %d) until %s", ErrPollBusy, holder, held.Int64, until.Format(time.RFC3339Nano))
		case held.Valid: // the holder died: its run is over
			msg := "lease expired: owner " + holder + " stopped without finishing"
			_, err = tx.Exec(ctx, `UPDATE poll_runs SET status = 'abandoned', ended_at = $1, errors = array_append(errors, $2)
				WHERE id = $3 AND status = 'running'`, now, msg, held.Int64)
			if err != nil {
				return err
			}
		}
		// Under the lease row's lock, no other BeginRun of this poll can
		// record the tick between this check and the insert (the unique
		// index poll_runs_tick would refuse it anyway).
		tick := norm(nr.Tick)
		if !tick.IsZero() {
			var by string
			err := tx.QueryRow(ctx, "SELECT owner FROM poll_runs WHERE partner = $1 AND poll = $2 AND tick = $3",
				nr.Partner, nr.Poll, tick).Scan(&by)
			if err == nil {
				return fmt.Errorf("%w: the tick of %s already ran on %s", ErrPollBusy, tick.Format(time.RFC3339), by)
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		r, err = pgScanRun(tx.QueryRow(ctx, `INSERT INTO poll_runs (partner, poll, owner, "trigger", status, started_at, lease_until, tick)
			VALUES ($1, $2, $3, $4, 'running', $5, $6, $7) RETURNING `+runCols,
			nr.Partner, nr.Poll, nr.Owner, nr.Trigger, now, now.Add(lease), pgTS(tick)))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE poll_leases SET run_id = $1, owner = $2, lease_until = $3 WHERE partner = $4 AND poll = $5",
			r.ID, r.Owner, r.LeaseUntil, r.Partner, r.Poll)
		return err
	})
	if err != nil {
		return PollRun{}, fmt.Errorf("spool: begin run of %s/%s: %w", nr.Partner, nr.Poll, err)
	}
	return r, nil
}

// ExtendRun implements [Polls].
func (p *Postgres) ExtendRun(ctx context.Context, runID int64, lease time.Duration) error {
	var err error
	if runID <= 0 || lease <= 0 {
		err = fmt.Errorf("%w: a run id and a positive lease are required", ErrInvalid)
	}
	if err == nil {
		err = p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
			// The lease row points at the run while it holds the lease, even
			// expired, until another run takes it over or the run finishes.
			// (A BeginRun taking it over holds the row lock: this update
			// waits, then no longer matches.)
			until := now.Add(lease)
			tag, err := tx.Exec(ctx, "UPDATE poll_leases SET lease_until = $1 WHERE run_id = $2", until, runID)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return ErrLeaseLost
			}
			_, err = tx.Exec(ctx, "UPDATE poll_runs SET lease_until = $1 WHERE id = $2", until, runID)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("spool: extend run %d: %w", runID, err)
	}
	return nil
}

// FinishRun implements [Polls].
func (p *Postgres) FinishRun(ctx context.Context, r PollRun) error {
	var err error
	switch {
	case r.Status != RunOK && r.Status != RunPartial && r.Status != RunFailed:
		err = fmt.Errorf("%w: a run finishes ok, partial or failed, not %q", ErrInvalid, r.Status)
	case r.ID <= 0 || r.Seen < 0 || r.Fetched < 0 || r.Skipped < 0 || r.Failed < 0:
		err = fmt.Errorf("%w: a run id and counts >= 0 are required", ErrInvalid)
	}
	if err == nil {
		errs := append([]string{}, r.Errors[:min(len(r.Errors), maxRunErrors)]...)
		err = p.tx(ctx, func(tx pgx.Tx, now time.Time) error {
			tag, err := tx.Exec(ctx, `UPDATE poll_runs SET status = $1, ended_at = $2, seen = $3, fetched = $4, skipped = $5, failed = $6,
				errors = $7 WHERE id = $8`, r.Status, now, r.Seen, r.Fetched, r.Skipped, r.Failed, errs, r.ID)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return ErrNotFound
			}
			// Free the lease but keep its row: it is the poll's lock.
			_, err = tx.Exec(ctx, "UPDATE poll_leases SET run_id = NULL, owner = '', lease_until = NULL WHERE run_id = $1", r.ID)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("spool: finish run %d: %w", r.ID, err)
	}
	return nil
}

// ListRuns implements [Polls].
func (p *Postgres) ListRuns(ctx context.Context, f RunFilter) ([]PollRun, error) {
	w := pgWhere()
	w.eq("partner", f.Partner)
	w.eq("poll", f.Poll)
	runs, err := pgList(ctx, p, "SELECT "+runCols+" FROM poll_runs"+w.newest(f.Limit, 50), w.args, pgScanRun)
	if err != nil {
		return nil, fmt.Errorf("spool: list runs: %w", err)
	}
	return runs, nil
}

func pgScanRemote(sc scanner) (RemoteFile, error) {
	var f RemoteFile
	if err := sc.Scan(&f.Partner, &f.Poll, &f.Name, &f.Size, (*pgTime)(&f.ModTime), (*pgTime)(&f.Since), (*pgText)(&f.FileID),
		(*pgTime)(&f.FetchedAt), &f.Done); err != nil {
		return RemoteFile{}, err
	}
	return f, nil
}

// RemoteFiles implements [Polls].
func (p *Postgres) RemoteFiles(ctx context.Context, partner, poll string) (map[string]RemoteFile, error) {
	if partner == "" || poll == "" {
		return nil, fmt.Errorf("spool: remote files: %w: partner and poll are required", ErrInvalid)
	}
	files, err := pgList(ctx, p, "SELECT "+remoteCols+" FROM poll_files WHERE partner = $1 AND poll = $2", []any{partner, poll}, pgScanRemote)
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
func (p *Postgres) PutRemoteFile(ctx context.Context, f RemoteFile) error {
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
		_, err = p.pool.Exec(ctx, `INSERT INTO poll_files (`+remoteCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (partner, poll, name) DO UPDATE SET size = excluded.size, mod_time = excluded.mod_time, since = excluded.since,
			file_id = excluded.file_id, fetched_at = excluded.fetched_at, done = excluded.done`,
			f.Partner, f.Poll, f.Name, f.Size, pgTS(norm(f.ModTime)), pgTS(norm(f.Since)), pgNull(f.FileID),
			pgTS(norm(f.FetchedAt)), f.Done)
	}
	if err != nil {
		return fmt.Errorf("spool: put remote file %s/%s/%s: %w", f.Partner, f.Poll, f.Name, err)
	}
	return nil
}

// ForgetRemoteFiles implements [Polls].
func (p *Postgres) ForgetRemoteFiles(ctx context.Context, partner, poll string, names []string) error {
	var err error
	if partner == "" || poll == "" {
		err = fmt.Errorf("%w: partner and poll are required", ErrInvalid)
	}
	if err == nil && len(names) > 0 { // one array parameter: no chunks needed
		_, err = p.pool.Exec(ctx, "DELETE FROM poll_files WHERE partner = $1 AND poll = $2 AND name = ANY($3)", partner, poll, names)
	}
	if err != nil {
		return fmt.Errorf("spool: forget remote files of %s/%s: %w", partner, poll, err)
	}
	return nil
}

// ---- Audit ----

func pgScanAudit(sc scanner) (AuditEntry, error) {
	var e AuditEntry
	if err := sc.Scan(&e.ID, (*pgTime)(&e.At), &e.Actor, &e.Role, &e.Action, &e.Target, &e.Reason, &e.Outcome, (*[]byte)(&e.Detail)); err != nil {
		return AuditEntry{}, err
	}
	return e, nil
}

// AddAudit implements [Audit].
func (p *Postgres) AddAudit(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	if e.Actor == "" || e.Action == "" || e.Outcome == "" {
		return AuditEntry{}, fmt.Errorf("spool: add audit: %w: actor, action and outcome are required", ErrInvalid)
	}
	if err := checkJSON("detail", e.Detail); err != nil {
		return AuditEntry{}, fmt.Errorf("spool: add audit: %w", err)
	}
	out, err := pgScanAudit(p.pool.QueryRow(ctx, `INSERT INTO audit (at, actor, role, action, target, reason, outcome, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+auditCols,
		p.now(), e.Actor, e.Role, e.Action, e.Target, e.Reason, e.Outcome, pgNull(e.Detail)))
	if err != nil {
		return AuditEntry{}, fmt.Errorf("spool: add audit: %w", err)
	}
	return out, nil
}

// ListAudit implements [Audit].
func (p *Postgres) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	w := pgWhere()
	w.eq("actor", f.Actor)
	w.eq("target", f.Target)
	es, err := pgList(ctx, p, "SELECT "+auditCols+" FROM audit"+w.newest(f.Limit, 100), w.args, pgScanAudit)
	if err != nil {
		return nil, fmt.Errorf("spool: list audit: %w", err)
	}
	return es, nil
}

// ---- Nodes ----

// Heartbeat implements [Nodes].
func (p *Postgres) Heartbeat(ctx context.Context, n Node) error {
	if n.ID == "" {
		return fmt.Errorf("spool: heartbeat: %w: node id required", ErrInvalid)
	}
	now := p.now()
	started := cmpOrTime(norm(n.StartedAt), now)
	_, err := p.pool.Exec(ctx, `INSERT INTO nodes (id, addr, version, started_at, seen_at, in_flight) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, version = excluded.version, seen_at = excluded.seen_at, in_flight = excluded.in_flight`,
		n.ID, n.Addr, n.Version, started, now, n.InFlight)
	if err != nil {
		return fmt.Errorf("spool: heartbeat of %s: %w", n.ID, err)
	}
	return nil
}

// ExpireSilentLeases implements [Nodes].
func (p *Postgres) ExpireSilentLeases(ctx context.Context, silentBefore time.Time) (int, error) {
	now := p.now()
	var n int64
	for _, tbl := range []string{"files", "documents"} {
		tag, err := p.pool.Exec(ctx, "UPDATE "+tbl+" SET lease_until = $1, updated_at = $1 WHERE lease_owner <> '' AND lease_until > $1"+
			" AND state IN ("+openStatesSQL+") AND lease_owner IN (SELECT id FROM nodes WHERE seen_at < $2)", now, norm(silentBefore))
		if err != nil {
			return 0, fmt.Errorf("spool: expire leases of silent nodes: %w", err)
		}
		n += tag.RowsAffected()
	}
	return int(n), nil
}

// ListNodes implements [Nodes].
func (p *Postgres) ListNodes(ctx context.Context, since time.Time) ([]Node, error) {
	nodes, err := pgList(ctx, p, "SELECT id, addr, version, started_at, seen_at, in_flight FROM nodes WHERE seen_at >= $1 ORDER BY id",
		[]any{norm(since)}, func(sc scanner) (Node, error) {
			var n Node
			err := sc.Scan(&n.ID, &n.Addr, &n.Version, (*pgTime)(&n.StartedAt), (*pgTime)(&n.SeenAt), &n.InFlight)
			return n, err
		})
	if err != nil {
		return nil, fmt.Errorf("spool: list nodes: %w", err)
	}
	return nodes, nil
}
