package spool

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// Kind says what an ID names.
type Kind string

// The kinds of record. Files and documents are units of work (they have a
// state and can be claimed); interchanges are bookkeeping.
const (
	KindFile        Kind = "file"
	KindInterchange Kind = "interchange"
	KindDocument    Kind = "document"
)

var kindPrefix = map[Kind]string{KindFile: "file_", KindInterchange: "ix_", KindDocument: "doc_"}

// ID names a file, interchange or document: a kind prefix and a ULID, e.g.
// "doc_01J9Z3M6Q0W2Q7K8Y1B9V4E5TR". IDs sort by creation time (to the
// millisecond; IDs made in the same millisecond by different goroutines are
// unique but in no particular order).
type ID string

// NewID returns a fresh ID of kind k stamped with time t.
func NewID(k Kind, t time.Time) (ID, error) {
	p, ok := kindPrefix[k]
	if !ok {
		return "", fmt.Errorf("%w: unknown kind %q", ErrInvalid, k)
	}
	u, err := ulid.New(ulid.Timestamp(t), ulid.DefaultEntropy())
	if err != nil {
		return "", fmt.Errorf("spool: new id: %w", err)
	}
	return ID(p + u.String()), nil
}

// Kind returns the kind the ID's prefix names, or "" for a malformed ID.
func (id ID) Kind() Kind {
	for k, p := range kindPrefix {
		if rest, ok := strings.CutPrefix(string(id), p); ok {
			if _, err := ulid.ParseStrict(rest); err == nil {
				return k
			}
		}
	}
	return ""
}

func (id ID) String() string { return string(id) }

// Direction says which way a file travels.
const (
	Inbound  = "in"  // from a partner to the ERP
	Outbound = "out" // from the ERP to a partner
)

// Work is the part of a file or document that tracks its progress.
type Work struct {
	State State
	// RetryOf is the stage being retried while State is StateRetrying; a
	// claim for that stage's state picks the item up again once due.
	RetryOf State
	// Attempts counts failed attempts at the current stage (Retry adds one);
	// a forward transition resets it, a move to rejected, held or dead keeps
	// it for the operator.
	Attempts int
	// NextAttemptAt is when the item is next due; Claim ignores it until then.
	NextAttemptAt time.Time
	// LastError is the reason of the last Retry, or of a move to rejected,
	// held or dead (WithReason). Cleared by a forward transition.
	LastError string
	// LeaseOwner and LeaseUntil say who holds the item. The lease is valid
	// while LeaseUntil is after now; an expired lease may be claimed by
	// anyone. Transition, Retry and Release clear it.
	LeaseOwner string
	LeaseUntil time.Time
}

// Stage is the state whose work is pending: RetryOf while retrying, State
// otherwise.
func (w Work) Stage() State {
	if w.State == StateRetrying {
		return w.RetryOf
	}
	return w.State
}

// File is one received file.
type File struct {
	ID         ID
	Partner    string
	Channel    string // how it came: sftp, poll, api, ...
	Direction  string // Inbound or Outbound
	Name       string // original file name
	RemotePath string // where it was collected from, for a polled file
	Blob       BlobRef
	ReceivedAt time.Time
	// DuplicateOf is the earlier file with the same content, when State is
	// (or was, before a replay) StateDuplicate.
	DuplicateOf ID
	Meta        json.RawMessage // free-form JSON object, nil if none
	Work
	CreatedAt time.Time
	UpdatedAt time.Time
}

// NewFile is the input of AddFile.
type NewFile struct {
	Partner    string // required
	Channel    string // required
	Direction  string // Inbound (default) or Outbound
	Name       string
	RemotePath string
	Blob       BlobRef // required: Put the bytes first, or give them as Inline
	// Inline, when set, are Blob's bytes (at most InlineMax), kept in the
	// spool itself and committed with the record instead of Put in the blob
	// store: a small upload then costs no file of its own.
	Inline     []byte
	ReceivedAt time.Time
	Meta       json.RawMessage
	// DedupeWindow bounds duplicate detection: the file is a duplicate of an
	// earlier file of the same partner with the same SHA-256 received within
	// DedupeWindow before ReceivedAt; 0 means at any time. NoDedupe turns
	// detection off (for feeds that legitimately resend the same bytes).
	DedupeWindow time.Duration
	NoDedupe     bool
	Actor        string // for the "created" event; default "system"
	// Lease creates the file already leased (not when it is a duplicate).
	Lease Lease
}

// Lease, when Owner is set, creates a record already leased to Owner for
// For: the caller hands the work to its own worker in memory instead of
// making it claim it (a write saved per record). If that worker dies the
// lease expires and any worker claims the record, as after a claim.
type Lease struct {
	Owner string
	For   time.Duration
}

func (l Lease) check() error {
	if l.Owner != "" && l.For <= 0 {
		return fmt.Errorf("%w: a lease needs a positive duration", ErrInvalid)
	}
	return nil
}

// until is the lease's expiry (0, none, without an owner).
func (l Lease) until(now time.Time) time.Time {
	if l.Owner == "" {
		return time.Time{}
	}
	return now.Add(l.For)
}

// Interchange is one ISA..IEA envelope of a file.
type Interchange struct {
	ID      ID
	FileID  ID
	Seq     int // position in the file, from 0
	Partner string
	Control string // ISA13
	Sender  string // as the caller formats it, e.g. "ZZ:ACME"
	// Receiver as the caller formats it.
	Receiver string
	Version  string // ISA12 (or the GS08 the caller cares about)
	// State is StateParsed, StateRejected or StateDuplicate.
	State State
	// DuplicateOf is the earlier interchange with the same control number
	// from the same partner, when State is StateDuplicate.
	DuplicateOf ID
	ReceivedAt  time.Time // the file's
	Ack         Ack
	Meta        json.RawMessage
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// NewInterchange is the input of AddInterchange.
type NewInterchange struct {
	FileID   ID
	Seq      int
	Control  string // required
	Sender   string
	Receiver string
	Version  string
	Rejected bool // the envelope itself is bad
	Meta     json.RawMessage
	// DedupeWindow bounds duplicate detection of (partner, Control): an
	// earlier interchange counts if its file was received within the window
	// before this one's; 0 means at any time. NoDedupe turns it off.
	DedupeWindow time.Duration
	NoDedupe     bool
	// Documents are the interchange's sets, added in the same transaction
	// as by AddDocument (FileID and InterchangeID are filled in), unless the
	// interchange is a duplicate.
	Documents []NewDocument
	// Ack, if Kind is set, is stored in the same transaction as by
	// SetInterchangeAck, unless the interchange is a duplicate or already
	// has an ack (a re-run keeps the first).
	Ack Ack
	// Inline are small blobs (at most InlineMax each) that the ack and the
	// documents refer to (their bytes, their JSON), kept in the spool and
	// committed with the interchange instead of Put in the blob store;
	// not stored when the interchange is a duplicate.
	Inline [][]byte
}

// Ack is the functional acknowledgement of an interchange: the one sent for
// an inbound interchange, or the one the partner returned for an outbound one.
type Ack struct {
	Kind    string  // "997", "999", "TA1", ...
	Status  string  // e.g. A, E, P, R
	Control string  // the ack's own control number
	Blob    BlobRef // the ack's bytes, if kept
	At      time.Time
}

// Document is one transaction set (or one CSV file): the unit that is mapped,
// delivered and archived.
type Document struct {
	ID            ID
	FileID        ID
	InterchangeID ID // empty for a CSV document
	Seq           int
	Partner       string
	Type          string // 850, 855, 856, 810, or a CSV feed name
	GroupControl  string // GS06
	SetControl    string // ST02
	// BusinessKey is the PO, ASN or invoice number, for search.
	BusinessKey string
	// IdempotencyKey is sent with the delivery, so a redelivery is recognised.
	IdempotencyKey string
	Mapped         BlobRef // the canonical JSON
	Response       Response
	Meta           json.RawMessage
	Work
	CreatedAt time.Time
	UpdatedAt time.Time
}

// NewDocument is the input of AddDocument.
type NewDocument struct {
	FileID        ID // required
	InterchangeID ID // empty for a CSV document
	Seq           int
	Type          string // required
	GroupControl  string
	SetControl    string
	BusinessKey   string
	// Refs are other business numbers the document is about (the PO
	// numbers of a ship notice's orders); DocumentFilter.Ref finds them.
	Refs           []string
	IdempotencyKey string
	// State is the starting state; default StateParsed. Not retrying.
	State State
	// Mapped is the canonical JSON when the document starts in StateMapped
	// (parsed and mapped in one stage: one transaction instead of three).
	Mapped BlobRef
	// Reason becomes LastError (e.g. why it starts held or rejected).
	Reason string
	Meta   json.RawMessage
	Actor  string
	// Lease creates the document already leased.
	Lease Lease
}

// check validates nd as AddDocument does and returns its starting state.
func (nd *NewDocument) check() (State, error) {
	if nd.FileID.Kind() != KindFile || nd.Seq < 0 || nd.Type == "" {
		return "", fmt.Errorf("%w: file id, seq >= 0 and type are required", ErrInvalid)
	}
	if nd.InterchangeID != "" && nd.InterchangeID.Kind() != KindInterchange {
		return "", fmt.Errorf("%w: %q is not an interchange id", ErrInvalid, nd.InterchangeID)
	}
	state := cmp.Or(nd.State, StateParsed)
	if err := checkState(state); err != nil || state == StateRetrying {
		return "", fmt.Errorf("%w: cannot start in state %q", ErrInvalid, state)
	}
	if err := checkJSON("meta", nd.Meta); err != nil {
		return "", err
	}
	if !nd.Mapped.IsZero() {
		if err := nd.Mapped.Check(); err != nil {
			return "", fmt.Errorf("%w: mapped blob: %v", ErrInvalid, err)
		}
	}
	return state, nd.Lease.check()
}

// check validates ni as AddInterchange does, with its documents and ack.
func (ni *NewInterchange) check() error {
	if ni.FileID.Kind() != KindFile || ni.Seq < 0 || ni.Control == "" {
		return fmt.Errorf("%w: file id, seq >= 0 and control are required", ErrInvalid)
	}
	if err := checkJSON("meta", ni.Meta); err != nil {
		return err
	}
	if err := checkInline(ni.Inline...); err != nil {
		return err
	}
	if !ni.Ack.Blob.IsZero() {
		if err := ni.Ack.Blob.Check(); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
	}
	for _, nd := range ni.Documents {
		if nd.FileID == "" {
			nd.FileID = ni.FileID
		}
		if nd.FileID != ni.FileID || nd.InterchangeID != "" {
			return fmt.Errorf("%w: document %d belongs to another file or interchange", ErrInvalid, nd.Seq)
		}
		if _, err := nd.check(); err != nil {
			return fmt.Errorf("document %d: %w", nd.Seq, err)
		}
	}
	return nil
}

// Response is the ERP's answer to a delivery.
type Response struct {
	Status int     // HTTP status; 0 if none yet
	Body   BlobRef // the response body, if kept as a blob
	// Inline is the response body kept in the record instead (at most
	// MaxInlineResponse bytes): a delivery then writes no file. At most one
	// of Body and Inline is set.
	Inline []byte
	At     time.Time
}

// MaxInlineResponse is the largest response body a record keeps inline.
const MaxInlineResponse = 4096

// Item is one piece of claimed work: exactly one of File and Document is set.
type Item struct {
	Kind     Kind
	File     *File
	Document *Document
}

// ID returns the claimed record's ID.
func (it Item) ID() ID {
	if it.File != nil {
		return it.File.ID
	}
	if it.Document != nil {
		return it.Document.ID
	}
	return ""
}

// Work returns the claimed record's work part.
func (it Item) Work() Work {
	if it.File != nil {
		return it.File.Work
	}
	if it.Document != nil {
		return it.Document.Work
	}
	return Work{}
}

// EventKind classifies an Event.
type EventKind string

// Event kinds. The store writes created, transition, retry, replay, reclaim,
// ack and result itself; AddEvent accepts note and error.
const (
	EventCreated    EventKind = "created"
	EventTransition EventKind = "transition"
	EventRetry      EventKind = "retry"
	EventReplay     EventKind = "replay"
	EventReclaim    EventKind = "reclaim" // a claim took over an expired lease
	EventAck        EventKind = "ack"     // SetInterchangeAck
	EventResult     EventKind = "result"  // SetDocumentResult
	EventNote       EventKind = "note"
	EventError      EventKind = "error"
)

// Event is one entry of a message's append-only log.
type Event struct {
	Seq     int64 // position in the whole log; increases with time
	Subject ID
	At      time.Time
	Actor   string // "system", a worker name, a user
	Kind    EventKind
	From    State
	To      State
	Message string          // human text: the error, the reason, the note
	Detail  json.RawMessage // structured detail, nil if none
}

// Page selects one page of a listing, by keyset on ID.
type Page struct {
	// Limit is the page size: default 100, at most 1000.
	Limit int
	// After is the cursor returned with the previous page ("" for the first).
	After string
	// Ascending lists oldest first; the default is newest first.
	Ascending bool
}

// FileFilter selects files; zero fields match everything.
type FileFilter struct {
	Partner string
	Channel string
	States  []State
	SHA256  string
	Since   time.Time // ReceivedAt >= Since
	Until   time.Time // ReceivedAt < Until
	Page
}

// DocumentFilter selects documents; zero fields match everything.
type DocumentFilter struct {
	Partner            string
	States             []State
	Types              []string
	FileID             ID
	InterchangeID      ID
	InterchangeControl string // ISA13 of the document's interchange
	GroupControl       string
	SetControl         string
	BusinessKey        string
	IdempotencyKey     string
	Ref                string // the business key or one of the document's Refs
	Direction          string // Inbound or Outbound: the direction of the document's file
	// WasIn matches documents that were ever in one of these states (their
	// event log shows it), e.g. rejected sets, which end in done once archived.
	WasIn []State
	Since time.Time // CreatedAt >= Since
	Until time.Time // CreatedAt < Until
	Page
}

// Errors. Test with errors.Is; they are wrapped with context.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: the item is not in the expected state (see ConflictError).
	ErrConflict = errors.New("state conflict")
	// ErrInvalidTransition: the state machine has no such edge.
	ErrInvalidTransition = errors.New("invalid transition")
	// ErrLeaseLost: the caller (WithOwner) no longer holds the lease.
	ErrLeaseLost = errors.New("lease lost")
	// ErrLeased: another owner holds a valid lease on the item.
	ErrLeased = errors.New("leased by another owner")
	// ErrInvalid: an argument is missing or malformed.
	ErrInvalid = errors.New("invalid argument")
	// ErrCorrupt: stored bytes do not match their address.
	ErrCorrupt = errors.New("blob corrupt")
)

// ConflictError reports an optimistic check that failed: the caller expected
// the item in state Expected, it is in Actual. It matches ErrConflict.
type ConflictError struct {
	ID       ID
	Expected State
	Actual   State
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s is %s, not %s", e.ID, e.Actual, e.Expected)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Option adjusts Transition, Retry, Replay, Release and the Set* calls.
type Option func(*Options)

// Options is what the Option functions set; backends read it through
// ApplyOptions.
type Options struct {
	Actor     string // default "system"
	Owner     string
	Reason    string
	Detail    json.RawMessage
	NextAt    time.Time
	Then      []State
	Response  *Response
	detailErr error
}

// ApplyOptions folds opts into an Options, for backends.
func ApplyOptions(opts []Option) (Options, error) {
	o := Options{Actor: "system"}
	for _, f := range opts {
		f(&o)
	}
	if o.detailErr != nil {
		return o, fmt.Errorf("%w: detail: %v", ErrInvalid, o.detailErr)
	}
	return o, nil
}

// Then makes a Transition move on through more states in the same write,
// each hop checked and recorded as its own event (the reason and detail go
// with the last one): "acked, then archived, then done" costs one commit,
// and no worker can die between the hops.
func Then(states ...State) Option { return func(o *Options) { o.Then = append(o.Then, states...) } }

// WithResponse makes a Transition of a document also record the ERP's
// answer, as SetDocumentResult does, in the same write.
func WithResponse(r Response) Option { return func(o *Options) { o.Response = &r } }

// check validates what the options carry for a move of id.
func (o Options) check(id ID) error {
	if o.Response == nil {
		return nil
	}
	if id.Kind() != KindDocument {
		return fmt.Errorf("%w: %q is not a document id: no ERP response to record", ErrInvalid, id)
	}
	return o.Response.check()
}

func (r Response) check() error {
	switch {
	case len(r.Inline) > MaxInlineResponse:
		return fmt.Errorf("%w: an inline response body of %d bytes (at most %d)", ErrInvalid, len(r.Inline), MaxInlineResponse)
	case r.Inline != nil && !r.Body.IsZero():
		return fmt.Errorf("%w: a response body both inline and as a blob", ErrInvalid)
	case !r.Body.IsZero():
		return r.Body.Check()
	}
	return nil
}

// path returns the states a Transition from stage to to passes through
// (to, then o.Then), checking each hop.
func (o Options) path(stage, to State) ([]State, error) {
	path := append([]State{to}, o.Then...)
	prev := stage
	for _, st := range path {
		if err := checkState(st); err != nil {
			return nil, err
		}
		if !CanTransition(prev, st) {
			return nil, fmt.Errorf("%w: %s → %s", ErrInvalidTransition, prev, st)
		}
		prev = st
	}
	return path, nil
}

// hopEvents are the events of a Transition of id from from along path.
func (o Options) hopEvents(id ID, now time.Time, from State, path []State) []Event {
	evs := make([]Event, len(path))
	for i, st := range path {
		evs[i] = Event{Subject: id, At: now, Actor: o.Actor, Kind: EventTransition, From: from, To: st}
		from = st
	}
	evs[len(evs)-1].Message, evs[len(evs)-1].Detail = o.Reason, o.Detail
	return evs
}

// resultEvent completes ev as the event of recording r on document id; its
// detail defaults to the status and the body's hash.
func resultEvent(id ID, r Response, now time.Time, ev Event) Event {
	if ev.Detail == nil {
		body := r.Body.SHA256
		if r.Inline != nil {
			body = "inline"
		}
		ev.Detail, _ = json.Marshal(map[string]any{"status": r.Status, "body": body})
	}
	ev.Subject, ev.At, ev.Kind = id, now, EventResult
	return ev
}

// WithActor names who acts, for the event log (a worker, a user).
func WithActor(actor string) Option {
	return func(o *Options) {
		if actor != "" {
			o.Actor = actor
		}
	}
}

// WithOwner says the caller acts under its lease as owner: the call fails
// with ErrLeaseLost if the lease has since passed to someone else. Without
// it, a call on an item under another's valid lease fails with ErrLeased.
func WithOwner(owner string) Option { return func(o *Options) { o.Owner = owner } }

// WithReason records why (in the event's Message, and as Work.LastError when
// moving to rejected, held or dead).
func WithReason(reason string) Option { return func(o *Options) { o.Reason = reason } }

// WithDetail attaches v, marshalled to JSON, to the event.
func WithDetail(v any) Option {
	return func(o *Options) {
		if raw, ok := v.(json.RawMessage); ok {
			if !json.Valid(raw) {
				o.detailErr = errors.New("not valid JSON")
				return
			}
			o.Detail = raw
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			o.detailErr = err
			return
		}
		o.Detail = b
	}
}

// WithNextAttempt makes the item due at t in its new state (default now).
func WithNextAttempt(t time.Time) Option { return func(o *Options) { o.NextAt = t } }

// checkInline refuses inline blobs larger than InlineMax.
func checkInline(blobs ...[]byte) error {
	for _, b := range blobs {
		if len(b) > InlineMax {
			return fmt.Errorf("%w: an inline blob of %d bytes (at most %d)", ErrInvalid, len(b), InlineMax)
		}
	}
	return nil
}

// checkInline checks that nf.Inline, if set, is nf.Blob's bytes.
func (nf *NewFile) checkInline() error {
	if nf.Inline == nil {
		return nil
	}
	if err := checkInline(nf.Inline); err != nil {
		return err
	}
	if ref := RefOf(nf.Inline); ref != nf.Blob {
		return fmt.Errorf("%w: inline bytes are %s, not the file's blob %s", ErrInvalid, ref, nf.Blob)
	}
	return nil
}
