// Package spool is edigw's durable store: the bytes of every file and
// artifact (a [Blobs] store) and the records that say where each message is in
// its life (a [Store]). It knows nothing about X12, CSV, partners or mappings:
// it stores bytes, records, states and events, and hands out work.
//
// # Model
//
// A [File] is what arrived (an SFTP upload, a polled file, an API request). A
// file holds zero or more [Interchange] records (one per ISA..IEA; none for a
// CSV file), and a file or interchange holds [Document] records (one per
// ST..SE, or one per CSV file). Files and documents are the units of work: each
// carries a [Work] part (state, attempts, next attempt time, last error and
// lease). Interchanges are bookkeeping (control number, ack) with a fixed
// state: parsed, rejected or duplicate.
//
// Every change of state, retry, replay, reclaimed lease and operator note is
// an [Event] in an append-only log keyed by the message's [ID]; the console's
// timeline and the per-step latency metrics read it.
//
// IDs are kind-prefixed ULIDs ("file_01J…", "ix_01J…", "doc_01J…"). They are
// made by the process, before the insert, so a worker can log and name
// archive keys with them at once; they are unique across nodes and across a
// move from SQLite to PostgreSQL; they sort by creation time, which is what
// keyset pagination and "newest first" need; and the prefix lets one
// Transition, Retry or Events call serve files and documents alike and makes
// an ID pasted into the console self-describing. The cost (26-character text
// keys instead of 8-byte integers) does not matter at EDI volumes.
//
// # State machine
//
//	received → parsed → acked → mapped → delivered → archived → done
//
// Beside the pipeline: rejected (bad input, acked negatively: may still go on
// to archived and done, never to mapped or delivered), duplicate (seen
// before, not processed again), held (stopped with a reason an operator or a
// configuration change must resolve, e.g. no mapping for this document type;
// may resume at any pipeline state), retrying (waiting for its next attempt
// at the stage recorded in [Work.RetryOf]) and dead (gave up; needs an
// operator). [CanTransition] is the full table: forward moves may skip
// pipeline states (a CSV file has no ack step); done, duplicate and dead are
// final and are left only by [Queue.Replay], the operator's "run again from
// step X".
//
// Work is handed out by [Queue.Claim] with a lease: the item is the caller's
// until the lease expires, and a claim after that may take it again (a worker
// that died loses nothing). Every stage is therefore written to be
// idempotent; the store helps by making AddInterchange and AddDocument
// idempotent per position in the file. Each transition is one transaction
// that checks the expected from-state (optimistic concurrency: a mismatch is
// a [*ConflictError]), releases the lease and appends the event.
//
// A retrying item is claimed by the workers of the stage it is retrying, and
// a Transition may name either "retrying" or that stage as its from-state.
//
// # Durability choices
//
//   - Blobs ([Local]) are written to a temporary file on the same file
//     system, fsync'd, renamed to their content address and the directory
//     fsync'd; only then does the caller commit a record pointing at them. A
//     crash leaves either no blob or a whole one, never a truncated file under
//     a final name, and a record never points at bytes that are not durable.
//   - Blobs are content-addressed (SHA-256): the same bytes are stored once,
//     the address doubles as the duplicate-detection key, and a read verifies
//     the hash so silent corruption surfaces as [ErrCorrupt].
//   - SQLite ([SQLite]) runs in WAL mode with synchronous=NORMAL plus its own
//     fsync of the WAL: NORMAL alone can lose the last commits on power loss,
//     which would break "accepted only when durable", so no caller is answered
//     before an fsync of the WAL that covers its commit. That fsync runs beside
//     the single writer (one for all batches committed meanwhile) instead of
//     inside each commit, where it was some 40 % of the writer's time; while
//     it runs, the writer gathers the writes arriving into one open
//     transaction and commits them when it ends, since they would wait for
//     it anyway. The savepoint sub-journal stays in memory (temp_store). One
//     writer connection serialises writes in the process (no
//     SQLITE_BUSY between our own writers, and BEGIN IMMEDIATE keeps another
//     process, such as the CLI, from deadlocking a lock upgrade); a separate
//     read-only pool serves the console and never blocks the writer under WAL.
//     busy_timeout covers other processes; foreign_keys keeps records
//     consistent. The schema is migrated at open from embedded, versioned SQL.
//   - Times are stored as integer microseconds since the Unix epoch (UTC), the
//     precision PostgreSQL keeps, so both backends round-trip the same values.
package spool
