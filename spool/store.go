package spool

import (
	"context"
	"time"
)

// Store is the record side of the spool. [SQLite] implements it for one
// node; a PostgreSQL backend implements the same contract for many nodes
// (claims with SELECT … FOR UPDATE SKIP LOCKED). spooltest.Run is the
// contract every backend must pass. Consumers should depend on the narrowest
// of the embedded interfaces they need.
type Store interface {
	Recorder
	Queue
	Reader
	Counters
	Polls
	Audit
	Nodes
	Close() error
}

// Recorder adds records and attaches results to them.
type Recorder interface {
	// AddFile records a received file whose bytes are already durable in the
	// blob store. A file of the same partner with the same SHA-256 received
	// earlier (within NewFile.DedupeWindow) makes this one StateDuplicate
	// with DuplicateOf set; otherwise it starts in StateReceived, due now.
	// The check and the insert are one transaction.
	AddFile(ctx context.Context, f NewFile) (File, error)

	// AddInterchange records an interchange of a file. It is idempotent per
	// (FileID, Seq): adding the same position again returns the stored
	// record, so a re-run parse stage does not flag itself as a duplicate.
	// An earlier interchange of the same partner with the same Control,
	// received within the window and neither rejected nor itself a duplicate,
	// makes this one StateDuplicate with DuplicateOf set; the check and the
	// insert are one transaction. (This is the "claim (partner, ISA13)"
	// operation: recording and claiming at once is what makes it safe to run
	// twice.) A rejected original does not count: partners resend a corrected
	// interchange under the same control number.
	//
	// The interchange's documents (NewInterchange.Documents) and ack
	// (NewInterchange.Ack) are recorded in the same transaction, so a parse
	// stage costs one write; on a re-run, documents already recorded are
	// returned as they are and a stored ack is kept. A duplicate gets
	// neither, and no documents are returned.
	AddInterchange(ctx context.Context, ix NewInterchange) (Interchange, []Document, error)

	// DuplicateInterchange answers, without writing, what AddInterchange
	// would: the interchange that one with this control number at position
	// seq of file fileID would duplicate (within window; 0 = at any time),
	// or "" when it would not be a duplicate or that position is recorded
	// already. Interchanges never change state, so a duplicate found here
	// stays one; one not found may still turn out a duplicate of an
	// interchange recorded meanwhile. The gateway asks before it takes an
	// ack control number and maps the sets, so a re-sent interchange costs
	// neither.
	DuplicateInterchange(ctx context.Context, fileID ID, seq int, control string, window time.Duration) (ID, error)

	// AddDocument records a document, idempotently per (FileID, Seq).
	AddDocument(ctx context.Context, d NewDocument) (Document, error)

	// SetInterchangeAck stores the acknowledgement of an interchange and
	// appends an "ack" event.
	SetInterchangeAck(ctx context.Context, id ID, a Ack, opts ...Option) error

	// SetDocumentMapped stores the canonical JSON's blob ref and, if not
	// empty, the business key found while mapping.
	SetDocumentMapped(ctx context.Context, id ID, mapped BlobRef, businessKey string) error

	// SetDocumentResult stores the ERP's response to a delivery and appends
	// a "result" event (every response is logged; the document keeps the
	// last).
	SetDocumentResult(ctx context.Context, id ID, r Response, opts ...Option) error

	// AddEvent appends a note or error event (e.Kind EventNote or
	// EventError; the store writes the other kinds itself).
	AddEvent(ctx context.Context, e Event) error
}

// Queue hands out work and moves it through the state machine.
type Queue interface {
	// Claim leases up to limit items of kind (KindFile or KindDocument) that
	// are due (NextAttemptAt <= now), whose stage is one of states (their
	// State, or RetryOf for a retrying item), and whose lease is empty or
	// expired, to owner until now+lease. Oldest due first. A claim that takes
	// over an expired lease appends a "reclaim" event. No two claims hold the
	// same item while its lease is valid.
	Claim(ctx context.Context, kind Kind, states []State, owner string, lease time.Duration, limit int) ([]Item, error)

	// ExtendLease moves owner's lease on id to now+lease and returns the new
	// expiry. ErrLeaseLost if owner no longer holds it (an expired lease not
	// yet taken by anyone is still owner's).
	ExtendLease(ctx context.Context, id ID, owner string, lease time.Duration) (time.Time, error)

	// Release gives owner's lease back without changing state; the item is
	// due again at once (or at WithNextAttempt). ErrLeaseLost if owner does
	// not hold it.
	Release(ctx context.Context, id ID, owner string, opts ...Option) error

	// Transition moves id from one state to another in one transaction that
	// checks the current state (a *ConflictError if it is not from; while
	// retrying, from may be "retrying" or the retried stage), checks the edge
	// (ErrInvalidTransition, see CanTransition), checks the lease (see
	// WithOwner), releases the lease, makes the item due (now or
	// WithNextAttempt) and appends a "transition" event. A forward move
	// resets Attempts and LastError; a move to rejected, held or dead keeps
	// Attempts and sets LastError to WithReason's text.
	Transition(ctx context.Context, id ID, from, to State, opts ...Option) error

	// Retry records a failed attempt at id's current stage: Attempts+1,
	// State retrying, RetryOf the stage, LastError cause, due at next, lease
	// released, a "retry" event appended. Deciding when to give up (a
	// Transition to dead) is the caller's.
	Retry(ctx context.Context, id ID, cause error, next time.Time, opts ...Option) error

	// Replay sends id back to a pipeline state (before done) from whatever
	// state it is in, final ones included: Attempts and LastError reset, due
	// now, a "replay" event appended. ErrLeased if someone holds a valid
	// lease on it.
	Replay(ctx context.Context, id ID, to State, opts ...Option) error
}

// Reader looks records up. Listing is newest first by default, paged by
// keyset: pass the returned cursor as the next page's Page.After; an empty
// cursor means there is no next page.
type Reader interface {
	GetFile(ctx context.Context, id ID) (File, error)
	GetInterchange(ctx context.Context, id ID) (Interchange, error)
	GetDocument(ctx context.Context, id ID) (Document, error)
	ListFiles(ctx context.Context, f FileFilter) (files []File, next string, err error)
	// ListInterchanges returns a file's interchanges in Seq order.
	ListInterchanges(ctx context.Context, fileID ID) ([]Interchange, error)
	ListDocuments(ctx context.Context, f DocumentFilter) (docs []Document, next string, err error)
	// Events returns id's log, oldest first.
	Events(ctx context.Context, id ID) ([]Event, error)
	// Depth counts files and documents by state (for queue-depth metrics).
	Depth(ctx context.Context) (map[Kind]map[State]int, error)
	InlineReader
}

// Counters hands out control numbers.
type Counters interface {
	// NextControl returns the next number of the counter (partner, name),
	// starting at 1: strictly increasing, never handed out twice, durable
	// across restarts, safe for concurrent callers (and nodes). After
	// MaxControl it wraps to 1, as X12 control numbers (nine digits) must;
	// receivers' duplicate windows are far shorter than a billion
	// interchanges.
	NextControl(ctx context.Context, partner, name string) (int64, error)

	// ReserveControls takes n (1 <= n <= 1000) consecutive numbers of the
	// counter in one write and returns the first, for a caller that hands
	// them out itself. Numbers it has not handed out when it stops are
	// skipped, never reused. A block does not wrap: when fewer than n
	// numbers are left before MaxControl, the block is 1..n.
	ReserveControls(ctx context.Context, partner, name string, n int) (first int64, err error)
}

// MaxControl is the largest number NextControl returns before wrapping to 1.
const MaxControl = 999999999
