// Package spooltest is the contract every spool backend must pass: the state
// machine and its event log, optimistic conflicts, leases and concurrent
// claims, duplicate detection, control-number counters, durability across
// reopen, listing, and the state of scheduled polls (run leases, run history,
// remote-file memory). A backend's test calls Run (records) and RunBlobs (blob
// stores) with a function that opens one.
package spooltest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/edigw/edigw/spool"
)

// Run runs the record-store contract. open is called once per subtest with
// that subtest's t and must return an empty store. Called again with the same
// t after the store was closed, it must return a store over the same data:
// the durability tests close and reopen. Run closes every store it gets; a
// store's Close must tolerate being called twice.
func Run(t *testing.T, open func(t *testing.T) spool.Store) {
	h := harness{open: open}
	tests := []struct {
		name string
		fn   func(*testing.T, harness)
	}{
		{"AddFile", testAddFile},
		{"TransitionTable/file", testTransitionTableFile},
		{"TransitionTable/document", testTransitionTableDocument},
		{"Pipeline", testPipeline},
		{"TransitionThen", testTransitionThen},
		{"Conflict", testConflict},
		{"ConcurrentTransition", testConcurrentTransition},
		{"NotFoundAndInvalid", testNotFound},
		{"ClaimSelection", testClaimSelection},
		{"ClaimConcurrent", testClaimConcurrent},
		{"LeaseExpiry", testLeaseExpiry},
		{"ExtendAndRelease", testExtendRelease},
		{"Retry", testRetry},
		{"HeldAndRejected", testHeldRejected},
		{"Replay", testReplay},
		{"DuplicateByHash", testDuplicateByHash},
		{"DuplicateInterchange", testDuplicateInterchange},
		{"IdempotentAdds", testIdempotentAdds},
		{"InterchangeWithDocuments", testInterchangeWithDocuments},
		{"LeasedAtCreation", testLeasedAtCreation},
		{"InlineBlobs", testInlineBlobs},
		{"Results", testResults},
		{"Events", testEvents},
		{"Counters", testCounters},
		{"Durability", testDurability},
		{"ListFiles", testListFiles},
		{"Audit", testAudit},
		{"Depth", testDepth},
		{"Nodes", testNodes},
		{"SilentNodesLeases", testSilentNodesLeases},
		{"PollTicks", testPollTicks},
		{"ListDocuments", testListDocuments},
		{"PollRuns", testPollRuns},
		{"PollLeaseConcurrent", testPollLeaseConcurrent},
		{"PollLeaseExpiry", testPollLeaseExpiry},
		{"PollRemoteFiles", testPollRemoteFiles},
		{"PollDurability", testPollDurability},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

type harness struct {
	open func(*testing.T) spool.Store
}

func (h harness) store(t *testing.T) spool.Store {
	t.Helper()
	s := h.open(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// ---- helpers ----

func ref(content string) spool.BlobRef {
	sum := sha256.Sum256([]byte(content))
	return spool.BlobRef{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content))}
}

var seq int64
var seqMu sync.Mutex

// unique returns content no other call returns, so files are not duplicates.
func unique() string {
	seqMu.Lock()
	defer seqMu.Unlock()
	seq++
	return fmt.Sprintf("content %d %d", time.Now().UnixNano(), seq)
}

func addFile(t *testing.T, s spool.Store, partner string) spool.File {
	t.Helper()
	f, err := s.AddFile(t.Context(), spool.NewFile{Partner: partner, Channel: "sftp", Name: "in.edi", Blob: ref(unique())})
	if err != nil {
		t.Fatalf("AddFile: %v", err)
	}
	return f
}

func addDoc(t *testing.T, s spool.Store, fileID spool.ID, seq int, st spool.State) spool.Document {
	t.Helper()
	d, err := s.AddDocument(t.Context(), spool.NewDocument{FileID: fileID, Seq: seq, Type: "850", State: st})
	if err != nil {
		t.Fatalf("AddDocument(seq %d, %s): %v", seq, st, err)
	}
	return d
}

func work(t *testing.T, s spool.Store, id spool.ID) spool.Work {
	t.Helper()
	switch id.Kind() {
	case spool.KindFile:
		f, err := s.GetFile(t.Context(), id)
		if err != nil {
			t.Fatalf("GetFile: %v", err)
		}
		return f.Work
	case spool.KindDocument:
		d, err := s.GetDocument(t.Context(), id)
		if err != nil {
			t.Fatalf("GetDocument: %v", err)
		}
		return d.Work
	}
	t.Fatalf("not a work id: %s", id)
	return spool.Work{}
}

func events(t *testing.T, s spool.Store, id spool.ID) []spool.Event {
	t.Helper()
	evs, err := s.Events(t.Context(), id)
	if err != nil {
		t.Fatalf("Events(%s): %v", id, err)
	}
	return evs
}

func mustTransition(t *testing.T, s spool.Store, id spool.ID, from, to spool.State, opts ...spool.Option) {
	t.Helper()
	if err := s.Transition(t.Context(), id, from, to, opts...); err != nil {
		t.Fatalf("Transition %s → %s: %v", from, to, err)
	}
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

func claimIDs(items []spool.Item) []spool.ID {
	ids := make([]spool.ID, len(items))
	for i, it := range items {
		ids[i] = it.ID()
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids ...spool.ID) []spool.ID {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

var allStates = spool.States()

// ---- tests ----

func testAddFile(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	received := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	nf := spool.NewFile{Partner: "acme", Channel: "poll", Name: "PO_1.edi", RemotePath: "/out/PO_1.edi", Blob: ref("ISA*..."),
		ReceivedAt: received, Meta: json.RawMessage(`{"host":"sftp.acme.test"}`), Actor: "poller/acme"}
	before := time.Now().Add(-time.Second)
	f, err := s.AddFile(ctx, nf)
	if err != nil {
		t.Fatal(err)
	}
	if f.ID.Kind() != spool.KindFile {
		t.Errorf("ID %q: kind %q", f.ID, f.ID.Kind())
	}
	if f.State != spool.StateReceived || f.Attempts != 0 || f.LeaseOwner != "" || f.DuplicateOf != "" {
		t.Errorf("new file work: %+v", f.Work)
	}
	if f.Partner != "acme" || f.Channel != "poll" || f.Direction != spool.Inbound || f.Name != "PO_1.edi" || f.RemotePath != "/out/PO_1.edi" || f.Blob != nf.Blob {
		t.Errorf("fields: %+v", f)
	}
	if !f.ReceivedAt.Equal(received.Truncate(time.Microsecond)) {
		t.Errorf("ReceivedAt %v, want %v (to the microsecond)", f.ReceivedAt, received)
	}
	if f.NextAttemptAt.Before(before) || f.NextAttemptAt.After(time.Now().Add(time.Second)) || f.CreatedAt.IsZero() {
		t.Errorf("a new file is due now: next %v created %v", f.NextAttemptAt, f.CreatedAt)
	}
	var meta map[string]string
	if err := json.Unmarshal(f.Meta, &meta); err != nil || meta["host"] != "sftp.acme.test" {
		t.Errorf("meta %s: %v", f.Meta, err)
	}
	got, err := s.GetFile(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f, got); diff != "" {
		t.Errorf("GetFile differs from AddFile's result (-add +get):\n%s", diff)
	}
	evs := events(t, s, f.ID)
	if len(evs) != 1 || evs[0].Kind != spool.EventCreated || evs[0].To != spool.StateReceived || evs[0].Actor != "poller/acme" || evs[0].Subject != f.ID {
		t.Errorf("events: %+v", evs)
	}
	out, err := s.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "api", Direction: spool.Outbound, Blob: ref(unique())})
	if err != nil || out.Direction != spool.Outbound {
		t.Errorf("outbound file: %+v %v", out, err)
	}
	for name, bad := range map[string]spool.NewFile{
		"no partner":    {Channel: "sftp", Blob: ref("x")},
		"no channel":    {Partner: "p", Blob: ref("x")},
		"no blob":       {Partner: "p", Channel: "sftp"},
		"bad hash":      {Partner: "p", Channel: "sftp", Blob: spool.BlobRef{SHA256: "../../etc/passwd", Size: 1}},
		"bad meta":      {Partner: "p", Channel: "sftp", Blob: ref("x"), Meta: json.RawMessage("{")},
		"bad direction": {Partner: "p", Channel: "sftp", Blob: ref("x"), Direction: "sideways"},
	} {
		if _, err := s.AddFile(ctx, bad); !errors.Is(err, spool.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
}

// driveFile brings a new file to state st in at most one step.
func driveFile(t *testing.T, s spool.Store, st spool.State) spool.File {
	t.Helper()
	f := addFile(t, s, "acme")
	switch st {
	case spool.StateReceived:
	case spool.StateRetrying:
		if err := s.Retry(t.Context(), f.ID, errors.New("boom"), time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
	default:
		mustTransition(t, s, f.ID, spool.StateReceived, st)
	}
	return f
}

// checkEdge tries from → to on an item known to be in from, and checks the
// result against CanTransition (stage is the state the edge is judged from).
func checkEdge(t *testing.T, s spool.Store, id spool.ID, from, stage, to spool.State) {
	t.Helper()
	ctx := t.Context()
	before := work(t, s, id)
	nEvents := len(events(t, s, id))
	err := s.Transition(ctx, id, from, to, spool.WithActor("tester"), spool.WithReason("because"))
	after := work(t, s, id)
	evs := events(t, s, id)
	if spool.CanTransition(stage, to) {
		if err != nil {
			t.Errorf("%s → %s (stage %s): %v", from, to, stage, err)
			return
		}
		if after.State != to || after.RetryOf != "" || after.LeaseOwner != "" {
			t.Errorf("%s → %s: work after %+v", from, to, after)
		}
		if len(evs) != nEvents+1 {
			t.Fatalf("%s → %s: %d events, want %d", from, to, len(evs), nEvents+1)
		}
		last := evs[len(evs)-1]
		if last.Kind != spool.EventTransition || last.From != before.State || last.To != to || last.Actor != "tester" || last.Message != "because" {
			t.Errorf("%s → %s: event %+v", from, to, last)
		}
		return
	}
	if !errors.Is(err, spool.ErrInvalidTransition) {
		t.Errorf("%s → %s (stage %s): error %v, want ErrInvalidTransition", from, to, stage, err)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("%s → %s refused but work changed:\n%s", from, to, diff)
	}
	if len(evs) != nEvents {
		t.Errorf("%s → %s refused but an event was appended", from, to)
	}
}

func testTransitionTableFile(t *testing.T, h harness) {
	s := h.store(t)
	// The table itself, at its corners (the loop below checks the store
	// agrees with it everywhere).
	for _, c := range []struct {
		from, to spool.State
		ok       bool
	}{
		{spool.StateReceived, spool.StateParsed, true},
		{spool.StateReceived, spool.StateDone, true},
		{spool.StateParsed, spool.StateReceived, false},
		{spool.StateMapped, spool.StateAcked, false},
		{spool.StateDone, spool.StateArchived, false},
		{spool.StateDone, spool.StateDead, false},
		{spool.StateDead, spool.StateReceived, false},
		{spool.StateDuplicate, spool.StateDone, false},
		{spool.StateRejected, spool.StateArchived, true},
		{spool.StateRejected, spool.StateMapped, false},
		{spool.StateRejected, spool.StateDelivered, false},
		{spool.StateHeld, spool.StateMapped, true},
		{spool.StateHeld, spool.StateDuplicate, false},
		{spool.StateAcked, spool.StateHeld, true},
		{spool.StateDelivered, spool.StateDead, true},
		{spool.StateParsed, spool.StateRetrying, false},
		{spool.StateParsed, spool.StateParsed, false},
	} {
		if got := spool.CanTransition(c.from, c.to); got != c.ok {
			t.Errorf("CanTransition(%s, %s) = %v, want %v", c.from, c.to, got, c.ok)
		}
	}
	for _, from := range allStates {
		for _, to := range allStates {
			f := driveFile(t, s, from)
			stage := from
			if from == spool.StateRetrying {
				stage = spool.StateReceived
			}
			checkEdge(t, s, f.ID, from, stage, to)
		}
	}
	// While retrying, the retried stage may be named as the from-state.
	for _, to := range allStates {
		f := driveFile(t, s, spool.StateRetrying)
		checkEdge(t, s, f.ID, spool.StateReceived, spool.StateReceived, to)
	}
}

func testTransitionTableDocument(t *testing.T, h harness) {
	s := h.store(t)
	f := addFile(t, s, "acme")
	n := 0
	for _, from := range allStates {
		for _, to := range allStates {
			n++
			var d spool.Document
			stage := from
			if from == spool.StateRetrying {
				d = addDoc(t, s, f.ID, n, spool.StateMapped)
				if err := s.Retry(t.Context(), d.ID, errors.New("erp 503"), time.Time{}); err != nil {
					t.Fatal(err)
				}
				stage = spool.StateMapped
			} else {
				d = addDoc(t, s, f.ID, n, from)
			}
			checkEdge(t, s, d.ID, from, stage, to)
		}
	}
	if _, err := s.AddDocument(t.Context(), spool.NewDocument{FileID: f.ID, Seq: 100000, Type: "850", State: spool.StateRetrying}); !errors.Is(err, spool.ErrInvalid) {
		t.Errorf("a document cannot start retrying: %v", err)
	}
}

func testPipeline(t *testing.T, h harness) {
	s := h.store(t)
	f := addFile(t, s, "acme")
	path := []spool.State{spool.StateReceived, spool.StateParsed, spool.StateAcked, spool.StateMapped, spool.StateDelivered, spool.StateArchived, spool.StateDone}
	for i := 1; i < len(path); i++ {
		mustTransition(t, s, f.ID, path[i-1], path[i], spool.WithActor(fmt.Sprintf("worker-%d", i)), spool.WithDetail(map[string]int{"step": i}))
	}
	evs := events(t, s, f.ID)
	if len(evs) != len(path) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(path), evs)
	}
	for i, e := range evs {
		if i == 0 {
			if e.Kind != spool.EventCreated || e.To != spool.StateReceived {
				t.Errorf("event 0: %+v", e)
			}
			continue
		}
		if e.Kind != spool.EventTransition || e.From != path[i-1] || e.To != path[i] || e.Actor != fmt.Sprintf("worker-%d", i) {
			t.Errorf("event %d: %+v", i, e)
		}
		var d map[string]int
		if err := json.Unmarshal(e.Detail, &d); err != nil || d["step"] != i {
			t.Errorf("event %d detail %s: %v", i, e.Detail, err)
		}
		if e.Seq <= evs[i-1].Seq || e.At.Before(evs[i-1].At) {
			t.Errorf("event %d out of order: %+v after %+v", i, e, evs[i-1])
		}
	}
	if w := work(t, s, f.ID); w.State != spool.StateDone {
		t.Errorf("state %s", w.State)
	}
}

// Then moves through several states in one write, each hop an event, and
// refuses the whole move when one hop is not allowed.
func testTransitionThen(t *testing.T, h harness) {
	s := h.store(t)
	ctx := context.Background()
	f := driveFile(t, s, spool.StateAcked)
	before := len(events(t, s, f.ID))
	mustTransition(t, s, f.ID, spool.StateAcked, spool.StateArchived, spool.Then(spool.StateDone), spool.WithActor("worker-9"), spool.WithReason("all archived"))
	if w := work(t, s, f.ID); w.State != spool.StateDone || w.LeaseOwner != "" {
		t.Errorf("after acked → archived → done: %+v", w)
	}
	evs := events(t, s, f.ID)[before:]
	if len(evs) != 2 || evs[0].From != spool.StateAcked || evs[0].To != spool.StateArchived ||
		evs[1].From != spool.StateArchived || evs[1].To != spool.StateDone || evs[0].Actor != "worker-9" || evs[1].Actor != "worker-9" {
		t.Fatalf("events %+v", evs)
	}
	if evs[0].Message != "" || evs[1].Message != "all archived" {
		t.Errorf("the reason belongs to the last hop: %q, %q", evs[0].Message, evs[1].Message)
	}

	g := driveFile(t, s, spool.StateAcked)
	n := len(events(t, s, g.ID))
	err := s.Transition(ctx, g.ID, spool.StateAcked, spool.StateArchived, spool.Then(spool.StateReceived))
	wantErr(t, err, spool.ErrInvalidTransition, "archived → received")
	if w := work(t, s, g.ID); w.State != spool.StateAcked || len(events(t, s, g.ID)) != n {
		t.Errorf("a refused multi-hop move changed something: %+v", w)
	}
}

func testConflict(t *testing.T, h harness) {
	s := h.store(t)
	f := addFile(t, s, "acme")
	mustTransition(t, s, f.ID, spool.StateReceived, spool.StateParsed)
	err := s.Transition(t.Context(), f.ID, spool.StateReceived, spool.StateParsed)
	var ce *spool.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, spool.ErrConflict) {
		t.Fatalf("stale from: error %v, want a *ConflictError", err)
	}
	if ce.ID != f.ID || ce.Expected != spool.StateReceived || ce.Actual != spool.StateParsed {
		t.Errorf("conflict %+v", ce)
	}
	if w := work(t, s, f.ID); w.State != spool.StateParsed {
		t.Errorf("state changed to %s", w.State)
	}
	if n := len(events(t, s, f.ID)); n != 2 {
		t.Errorf("%d events after a refused transition, want 2", n)
	}
}

func testConcurrentTransition(t *testing.T, h harness) {
	s := h.store(t)
	f := addFile(t, s, "acme")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Transition(t.Context(), f.ID, spool.StateReceived, spool.StateParsed) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, spool.ErrConflict):
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of 8 concurrent identical transitions succeeded, want exactly 1", ok)
	}
	if n := len(events(t, s, f.ID)); n != 2 {
		t.Errorf("%d events, want 2", n)
	}
}

func testNotFound(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	ghostFile, _ := spool.NewID(spool.KindFile, time.Now())
	ghostDoc, _ := spool.NewID(spool.KindDocument, time.Now())
	ghostIx, _ := spool.NewID(spool.KindInterchange, time.Now())
	_, err := s.GetFile(ctx, ghostFile)
	wantErr(t, err, spool.ErrNotFound, "GetFile")
	_, err = s.GetDocument(ctx, ghostDoc)
	wantErr(t, err, spool.ErrNotFound, "GetDocument")
	_, err = s.GetInterchange(ctx, ghostIx)
	wantErr(t, err, spool.ErrNotFound, "GetInterchange")
	wantErr(t, s.Transition(ctx, ghostDoc, spool.StateParsed, spool.StateAcked), spool.ErrNotFound, "Transition")
	wantErr(t, s.Retry(ctx, ghostFile, errors.New("x"), time.Time{}), spool.ErrNotFound, "Retry")
	_, err = s.Events(ctx, ghostFile)
	wantErr(t, err, spool.ErrNotFound, "Events")
	wantErr(t, s.AddEvent(ctx, spool.Event{Subject: ghostFile, Kind: spool.EventNote}), spool.ErrNotFound, "AddEvent")
	_, err = s.AddDocument(ctx, spool.NewDocument{FileID: ghostFile, Type: "850"})
	wantErr(t, err, spool.ErrNotFound, "AddDocument to a missing file")
	_, _, err = s.AddInterchange(ctx, spool.NewInterchange{FileID: ghostFile, Control: "1"})
	wantErr(t, err, spool.ErrNotFound, "AddInterchange to a missing file")
	wantErr(t, s.SetDocumentResult(ctx, ghostDoc, spool.Response{Status: 200}), spool.ErrNotFound, "SetDocumentResult")
	wantErr(t, s.SetInterchangeAck(ctx, ghostIx, spool.Ack{Kind: "997"}), spool.ErrNotFound, "SetInterchangeAck")

	wantErr(t, s.Transition(ctx, "nonsense", spool.StateParsed, spool.StateAcked), spool.ErrInvalid, "malformed id")
	wantErr(t, s.Transition(ctx, ghostIx, spool.StateParsed, spool.StateAcked), spool.ErrInvalid, "interchanges have no work")
	f := addFile(t, s, "acme")
	wantErr(t, s.Transition(ctx, f.ID, "bogus", spool.StateAcked), spool.ErrInvalid, "unknown state")
	_, err = s.Claim(ctx, spool.KindInterchange, []spool.State{spool.StateParsed}, "w", time.Minute, 1)
	wantErr(t, err, spool.ErrInvalid, "claim interchanges")
	_, err = s.Claim(ctx, spool.KindFile, []spool.State{spool.StateRetrying}, "w", time.Minute, 1)
	wantErr(t, err, spool.ErrInvalid, "claim retrying")
	_, err = s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "", time.Minute, 1)
	wantErr(t, err, spool.ErrInvalid, "claim without owner")
	_, err = s.Claim(ctx, spool.KindFile, nil, "w", time.Minute, 1)
	wantErr(t, err, spool.ErrInvalid, "claim without states")
}

func testClaimSelection(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	recv := addFile(t, s, "acme")
	parsed := driveFile(t, s, spool.StateParsed)
	held := driveFile(t, s, spool.StateHeld)
	later := addFile(t, s, "acme")
	if err := s.Retry(ctx, later.ID, errors.New("remote down"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	dueRetry := addFile(t, s, "acme")
	if err := s.Retry(ctx, dueRetry.ID, errors.New("remote down"), time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	doc := addDoc(t, s, recv.ID, 0, spool.StateParsed)

	items, err := s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "w1", time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	// received, plus the retry of "received" that is due; not the one due in
	// an hour, not parsed, not held, not the document.
	if diff := cmp.Diff(sorted(recv.ID, dueRetry.ID), claimIDs(items)); diff != "" {
		t.Errorf("claimed (-want +got):\n%s", diff)
	}
	for _, it := range items {
		w := it.Work()
		if it.Kind != spool.KindFile || it.File == nil || it.Document != nil || w.LeaseOwner != "w1" || !w.LeaseUntil.After(time.Now()) {
			t.Errorf("item %+v work %+v", it, w)
		}
		if it.ID() == dueRetry.ID && (w.State != spool.StateRetrying || w.RetryOf != spool.StateReceived || w.Stage() != spool.StateReceived || w.Attempts != 1) {
			t.Errorf("claimed retry: %+v", w)
		}
	}
	// Leased now: nobody else gets them.
	items, err = s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "w2", time.Minute, 10)
	if err != nil || len(items) != 0 {
		t.Errorf("second claim: %v %v", claimIDs(items), err)
	}
	// Several states at once, and limits.
	items, err = s.Claim(ctx, spool.KindFile, []spool.State{spool.StateParsed, spool.StateHeld}, "w2", time.Minute, 1)
	if err != nil || len(items) != 1 {
		t.Fatalf("limit 1: %v %v", claimIDs(items), err)
	}
	items2, err := s.Claim(ctx, spool.KindFile, []spool.State{spool.StateParsed, spool.StateHeld}, "w2", time.Minute, 5)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sorted(parsed.ID, held.ID), claimIDs(append(items, items2...))); diff != "" {
		t.Errorf("claimed (-want +got):\n%s", diff)
	}
	docs, err := s.Claim(ctx, spool.KindDocument, []spool.State{spool.StateParsed}, "w3", time.Minute, 5)
	if err != nil || len(docs) != 1 || docs[0].Document == nil || docs[0].ID() != doc.ID || docs[0].Kind != spool.KindDocument {
		t.Errorf("document claim: %+v %v", docs, err)
	}
	// Transition with the owner releases the lease.
	mustTransition(t, s, doc.ID, spool.StateParsed, spool.StateAcked, spool.WithOwner("w3"))
	if w := work(t, s, doc.ID); w.LeaseOwner != "" || !w.LeaseUntil.IsZero() {
		t.Errorf("lease kept after transition: %+v", w)
	}
	t.Run("OldestDueFirst", func(t *testing.T) {
		s2 := h.store(t)
		a := addFile(t, s2, "acme")
		b := addFile(t, s2, "acme")
		if err := s2.Retry(ctx, b.ID, errors.New("x"), time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		items, err := s2.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "w", time.Minute, 1)
		if err != nil || len(items) != 1 || items[0].ID() != b.ID {
			t.Errorf("oldest due first: got %v, want %s (a is %s): %v", claimIDs(items), b.ID, a.ID, err)
		}
	})
}

func testClaimConcurrent(t *testing.T, h harness) {
	s := h.store(t)
	const n, claimers = 120, 8
	want := make([]spool.ID, n)
	for i := range want {
		want[i] = addFile(t, s, "acme").ID
	}
	var mu sync.Mutex
	got := map[spool.ID]string{}
	var wg sync.WaitGroup
	for c := range claimers {
		owner := fmt.Sprintf("claimer-%d", c)
		wg.Go(func() {
			for range n { // more rounds than a correct backend needs
				items, err := s.Claim(t.Context(), spool.KindFile, []spool.State{spool.StateReceived}, owner, time.Hour, 3)
				if err != nil {
					t.Errorf("%s: %v", owner, err)
					return
				}
				if len(items) == 0 {
					return
				}
				mu.Lock()
				for _, it := range items {
					if prev, dup := got[it.ID()]; dup {
						t.Errorf("%s claimed by %s and %s", it.ID(), prev, owner)
						mu.Unlock()
						return
					}
					got[it.ID()] = owner
					if it.Work().LeaseOwner != owner {
						t.Errorf("%s: lease owner %q in claim by %s", it.ID(), it.Work().LeaseOwner, owner)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("%d of %d items claimed", len(got), n)
	}
	for _, id := range want {
		if _, ok := got[id]; !ok {
			t.Errorf("%s never claimed", id)
		}
	}
	// Each holder's lease is recorded as its own.
	for id, owner := range got {
		if w := work(t, s, id); w.LeaseOwner != owner {
			t.Errorf("%s: stored owner %q, claimed by %q", id, w.LeaseOwner, owner)
		}
	}
}

func testLeaseExpiry(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	f := addFile(t, s, "acme")
	const lease = 300 * time.Millisecond
	items, err := s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "dying", lease, 1)
	if err != nil || len(items) != 1 {
		t.Fatalf("claim: %v %v", items, err)
	}
	until := items[0].Work().LeaseUntil
	if other, err := s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "rescuer", time.Minute, 1); err != nil || len(other) != 0 {
		t.Fatalf("claim under a valid lease: %v %v", claimIDs(other), err)
	}
	wantErr(t, s.Transition(ctx, f.ID, spool.StateReceived, spool.StateParsed), spool.ErrLeased, "transition without owner under another's lease")
	wantErr(t, s.Transition(ctx, f.ID, spool.StateReceived, spool.StateParsed, spool.WithOwner("rescuer")), spool.ErrLeaseLost, "transition by a non-owner")
	_, err = s.ExtendLease(ctx, f.ID, "rescuer", time.Minute)
	wantErr(t, err, spool.ErrLeaseLost, "extend by a non-owner")
	wantErr(t, s.Replay(ctx, f.ID, spool.StateReceived), spool.ErrLeased, "replay under a lease")

	time.Sleep(time.Until(until) + 50*time.Millisecond)
	items, err = s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "rescuer", time.Minute, 1)
	if err != nil || len(items) != 1 || items[0].ID() != f.ID || items[0].Work().LeaseOwner != "rescuer" {
		t.Fatalf("reclaim after expiry: %+v %v", items, err)
	}
	evs := events(t, s, f.ID)
	last := evs[len(evs)-1]
	if last.Kind != spool.EventReclaim || last.Actor != "rescuer" {
		t.Errorf("reclaim event: %+v", last)
	}
	// The first owner's late moves fail; the new owner's succeed.
	wantErr(t, s.Transition(ctx, f.ID, spool.StateReceived, spool.StateParsed, spool.WithOwner("dying")), spool.ErrLeaseLost, "late transition")
	_, err = s.ExtendLease(ctx, f.ID, "dying", time.Minute)
	wantErr(t, err, spool.ErrLeaseLost, "late extend")
	wantErr(t, s.Retry(ctx, f.ID, errors.New("late"), time.Time{}, spool.WithOwner("dying")), spool.ErrLeaseLost, "late retry")
	mustTransition(t, s, f.ID, spool.StateReceived, spool.StateParsed, spool.WithOwner("rescuer"))

	// An expired lease not yet taken over is still its owner's.
	g := addFile(t, s, "acme")
	items, err = s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "slow", 50*time.Millisecond, 1)
	if err != nil || len(items) != 1 || items[0].ID() != g.ID {
		t.Fatalf("claim: %v %v", claimIDs(items), err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := s.ExtendLease(ctx, g.ID, "slow", time.Minute); err != nil {
		t.Errorf("extend an expired but untaken lease: %v", err)
	}
	mustTransition(t, s, g.ID, spool.StateReceived, spool.StateParsed, spool.WithOwner("slow"))
}

func testExtendRelease(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	f := addFile(t, s, "acme")
	items, err := s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "w1", time.Second, 1)
	if err != nil || len(items) != 1 {
		t.Fatalf("claim: %v %v", items, err)
	}
	until, err := s.ExtendLease(ctx, f.ID, "w1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if until.Before(time.Now().Add(59*time.Minute)) || !work(t, s, f.ID).LeaseUntil.Equal(until) {
		t.Errorf("extended until %v; stored %v", until, work(t, s, f.ID).LeaseUntil)
	}
	wantErr(t, s.Release(ctx, f.ID, "w2"), spool.ErrLeaseLost, "release by a non-owner")
	if err := s.Release(ctx, f.ID, "w1"); err != nil {
		t.Fatal(err)
	}
	w := work(t, s, f.ID)
	if w.LeaseOwner != "" || w.State != spool.StateReceived {
		t.Errorf("after release: %+v", w)
	}
	items, err = s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "w2", time.Minute, 1)
	if err != nil || len(items) != 1 {
		t.Errorf("claim after release: %v %v", claimIDs(items), err)
	}
	// A release with a later due time defers the item.
	if err := s.Release(ctx, f.ID, "w2", spool.WithNextAttempt(time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	items, err = s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "w3", time.Minute, 1)
	if err != nil || len(items) != 0 {
		t.Errorf("claim of a deferred item: %v %v", claimIDs(items), err)
	}
	// A release is not a reclaim: no events beyond "created".
	if n := len(events(t, s, f.ID)); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
}

func testRetry(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	f := addFile(t, s, "acme")
	d := addDoc(t, s, f.ID, 0, spool.StateMapped)
	items, err := s.Claim(ctx, spool.KindDocument, []spool.State{spool.StateMapped}, "deliverer", time.Minute, 1)
	if err != nil || len(items) != 1 {
		t.Fatalf("claim: %v %v", items, err)
	}
	next := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	if err := s.Retry(ctx, d.ID, errors.New("erp: 503 Service Unavailable"), next, spool.WithOwner("deliverer"), spool.WithActor("deliverer")); err != nil {
		t.Fatal(err)
	}
	w := work(t, s, d.ID)
	if w.State != spool.StateRetrying || w.RetryOf != spool.StateMapped || w.Attempts != 1 || w.LastError != "erp: 503 Service Unavailable" ||
		!w.NextAttemptAt.Equal(next) || w.LeaseOwner != "" {
		t.Errorf("after retry: %+v", w)
	}
	evs := events(t, s, d.ID)
	last := evs[len(evs)-1]
	if last.Kind != spool.EventRetry || last.From != spool.StateMapped || last.To != spool.StateRetrying || last.Message != w.LastError || last.Actor != "deliverer" {
		t.Errorf("retry event: %+v", last)
	}
	// Not due yet.
	if items, err := s.Claim(ctx, spool.KindDocument, []spool.State{spool.StateMapped}, "deliverer", time.Minute, 1); err != nil || len(items) != 0 {
		t.Errorf("claimed before due: %v %v", claimIDs(items), err)
	}
	// Retry again (now due), twice: attempts count, the stage stays.
	if err := s.Retry(ctx, d.ID, errors.New("timeout"), time.Now().Add(-time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if w := work(t, s, d.ID); w.Attempts != 2 || w.RetryOf != spool.StateMapped || w.LastError != "timeout" {
		t.Errorf("second retry: %+v", w)
	}
	items, err = s.Claim(ctx, spool.KindDocument, []spool.State{spool.StateMapped}, "deliverer", time.Minute, 1)
	if err != nil || len(items) != 1 || items[0].Work().Stage() != spool.StateMapped {
		t.Fatalf("claim when due: %+v %v", items, err)
	}
	// Success: the stage moves on and the count starts afresh.
	mustTransition(t, s, d.ID, spool.StateMapped, spool.StateDelivered, spool.WithOwner("deliverer"))
	if w := work(t, s, d.ID); w.State != spool.StateDelivered || w.Attempts != 0 || w.LastError != "" || w.RetryOf != "" {
		t.Errorf("after success: %+v", w)
	}
	// Giving up keeps the count and the error for the operator.
	g := addDoc(t, s, f.ID, 1, spool.StateMapped)
	for range 3 {
		if err := s.Retry(ctx, g.ID, errors.New("erp 500"), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	mustTransition(t, s, g.ID, spool.StateRetrying, spool.StateDead, spool.WithReason("gave up after 3 attempts"))
	if w := work(t, s, g.ID); w.State != spool.StateDead || w.Attempts != 3 || w.LastError != "gave up after 3 attempts" {
		t.Errorf("dead: %+v", w)
	}
	wantErr(t, s.Retry(ctx, g.ID, errors.New("again"), time.Time{}), spool.ErrInvalidTransition, "retry a dead item")
	wantErr(t, s.Retry(ctx, d.ID, nil, time.Time{}), spool.ErrInvalid, "retry without a cause")
}

func testHeldRejected(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	f := addFile(t, s, "acme")
	d := addDoc(t, s, f.ID, 0, spool.StateAcked)
	mustTransition(t, s, d.ID, spool.StateAcked, spool.StateHeld, spool.WithReason("no mapping for 875"))
	if w := work(t, s, d.ID); w.State != spool.StateHeld || w.LastError != "no mapping for 875" {
		t.Errorf("held: %+v", w)
	}
	if items, err := s.Claim(ctx, spool.KindDocument, []spool.State{spool.StateAcked}, "mapper", time.Minute, 10); err != nil || len(items) != 0 {
		t.Errorf("held item claimed: %v %v", claimIDs(items), err)
	}
	wantErr(t, s.Retry(ctx, d.ID, errors.New("x"), time.Time{}), spool.ErrInvalidTransition, "retry a held item")
	mustTransition(t, s, d.ID, spool.StateHeld, spool.StateAcked, spool.WithActor("ops@example.com"))
	if w := work(t, s, d.ID); w.State != spool.StateAcked || w.LastError != "" {
		t.Errorf("resumed: %+v", w)
	}
	// A document may start held or rejected, with its reason.
	r, err := s.AddDocument(ctx, spool.NewDocument{FileID: f.ID, Seq: 1, Type: "856", State: spool.StateRejected, Reason: "AK5*R: segment count"})
	if err != nil || r.State != spool.StateRejected || r.LastError != "AK5*R: segment count" {
		t.Fatalf("rejected doc: %+v %v", r, err)
	}
	mustTransition(t, s, r.ID, spool.StateRejected, spool.StateArchived)
	mustTransition(t, s, r.ID, spool.StateArchived, spool.StateDone)
}

func testReplay(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	f := driveFile(t, s, spool.StateDone)
	if err := s.Replay(ctx, f.ID, spool.StateParsed, spool.WithActor("ops@example.com"), spool.WithReason("partner asked")); err != nil {
		t.Fatal(err)
	}
	w := work(t, s, f.ID)
	if w.State != spool.StateParsed || w.Attempts != 0 || w.LastError != "" {
		t.Errorf("after replay: %+v", w)
	}
	evs := events(t, s, f.ID)
	last := evs[len(evs)-1]
	if last.Kind != spool.EventReplay || last.From != spool.StateDone || last.To != spool.StateParsed || last.Actor != "ops@example.com" || last.Message != "partner asked" {
		t.Errorf("replay event %+v", last)
	}
	items, err := s.Claim(ctx, spool.KindFile, []spool.State{spool.StateParsed}, "w", time.Minute, 5)
	if err != nil || len(items) != 1 {
		t.Errorf("replayed item not claimable: %v %v", claimIDs(items), err)
	}
	for _, from := range []spool.State{spool.StateDead, spool.StateDuplicate, spool.StateRetrying, spool.StateHeld, spool.StateRejected} {
		g := driveFile(t, s, from)
		if err := s.Replay(ctx, g.ID, spool.StateReceived); err != nil {
			t.Errorf("replay from %s: %v", from, err)
		}
		if w := work(t, s, g.ID); w.State != spool.StateReceived || w.RetryOf != "" || w.Attempts != 0 {
			t.Errorf("replay from %s: %+v", from, w)
		}
	}
	for _, to := range []spool.State{spool.StateDone, spool.StateDead, spool.StateRetrying, spool.StateHeld} {
		wantErr(t, s.Replay(ctx, f.ID, to), spool.ErrInvalidTransition, "replay to "+string(to))
	}
}

func testDuplicateByHash(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	now := time.Now()
	content := ref("ISA*00*same bytes")
	add := func(partner string, at time.Time, window time.Duration, off bool) spool.File {
		t.Helper()
		f, err := s.AddFile(ctx, spool.NewFile{Partner: partner, Channel: "sftp", Blob: content, ReceivedAt: at, DedupeWindow: window, NoDedupe: off})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	orig := add("acme", now.Add(-48*time.Hour), 0, false)
	if orig.State != spool.StateReceived || orig.DuplicateOf != "" {
		t.Fatalf("original: %+v", orig)
	}
	dup := add("acme", now, 0, false)
	if dup.State != spool.StateDuplicate || dup.DuplicateOf != orig.ID {
		t.Errorf("same content, same partner: state %s dup of %q, want duplicate of %s", dup.State, dup.DuplicateOf, orig.ID)
	}
	evs := events(t, s, dup.ID)
	if len(evs) != 1 || evs[0].To != spool.StateDuplicate {
		t.Errorf("duplicate's events: %+v", evs)
	}
	// A duplicate is not offered to workers.
	items, err := s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "w", time.Minute, 10)
	if err != nil || len(items) != 1 || items[0].ID() != orig.ID {
		t.Errorf("claim: %v %v", claimIDs(items), err)
	}
	// A third copy points at the original, not at the duplicate.
	if third := add("acme", now, 0, false); third.DuplicateOf != orig.ID {
		t.Errorf("third copy dup of %q, want %s", third.DuplicateOf, orig.ID)
	}
	if other := add("globex", now, 0, false); other.State != spool.StateReceived {
		t.Errorf("same content from another partner: %s", other.State)
	}
	if off := add("acme", now, 0, true); off.State != spool.StateReceived {
		t.Errorf("NoDedupe: %s", off.State)
	}
	// Windows: the original is 48h old.
	if in := add("acme", now, 72*time.Hour, false); in.State != spool.StateDuplicate || in.DuplicateOf != orig.ID {
		t.Errorf("within a 72h window: %s of %q", in.State, in.DuplicateOf)
	}
	t.Run("OutsideWindow", func(t *testing.T) {
		s2 := h.store(t) // a fresh store: the NoDedupe copy above would match a 24h window
		o2, err := s2.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "sftp", Blob: content, ReceivedAt: now.Add(-48 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		out, err := s2.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "sftp", Blob: content, ReceivedAt: now, DedupeWindow: 24 * time.Hour})
		if err != nil || out.State != spool.StateReceived {
			t.Errorf("outside a 24h window: %+v %v (original %s)", out.Work, err, o2.ID)
		}
	})
}

func testDuplicateInterchange(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	now := time.Now()
	fileAt := func(partner string, at time.Time) spool.File {
		t.Helper()
		f, err := s.AddFile(ctx, spool.NewFile{Partner: partner, Channel: "sftp", Blob: ref(unique()), ReceivedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	addIx := func(f spool.File, seq int, control string, window time.Duration, rejected bool) spool.Interchange {
		t.Helper()
		x, _, err := s.AddInterchange(ctx, spool.NewInterchange{FileID: f.ID, Seq: seq, Control: control, Sender: "ZZ:ACME", Receiver: "ZZ:US",
			Version: "00401", DedupeWindow: window, Rejected: rejected})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	a := fileAt("acme", now.Add(-10*24*time.Hour))
	orig := addIx(a, 0, "000000101", 0, false)
	if orig.State != spool.StateParsed || orig.DuplicateOf != "" || orig.Partner != "acme" || orig.FileID != a.ID || orig.ID.Kind() != spool.KindInterchange {
		t.Fatalf("original: %+v", orig)
	}
	b := fileAt("acme", now)
	// DuplicateInterchange answers as AddInterchange will, without writing.
	precheck := func(f spool.File, seq int, control string, window time.Duration) spool.ID {
		t.Helper()
		id, err := s.DuplicateInterchange(ctx, f.ID, seq, control, window)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	if got := precheck(b, 0, "000000101", 30*24*time.Hour); got != orig.ID {
		t.Errorf("DuplicateInterchange within the window: %q, want %s", got, orig.ID)
	}
	if got := precheck(b, 0, "000000101", 7*24*time.Hour); got != "" {
		t.Errorf("DuplicateInterchange outside a 7-day window: %q", got)
	}
	if got := precheck(b, 0, "000000102", 0); got != "" {
		t.Errorf("DuplicateInterchange of a new ISA13: %q", got)
	}
	if got := precheck(a, 0, "000000101", 0); got != "" {
		t.Errorf("DuplicateInterchange of the original's own position (a re-run): %q", got)
	}
	if _, err := s.DuplicateInterchange(ctx, "file_01M8GHHAB575W6FMJ37X2BEPY8", 0, "000000101", 0); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("DuplicateInterchange of an unknown file: %v", err)
	}
	dup := addIx(b, 0, "000000101", 30*24*time.Hour, false)
	if got := precheck(b, 0, "000000101", 30*24*time.Hour); got != "" {
		t.Errorf("DuplicateInterchange of a recorded position: %q", got)
	}
	if dup.State != spool.StateDuplicate || dup.DuplicateOf != orig.ID {
		t.Errorf("same ISA13 within window: %s of %q, want duplicate of %s", dup.State, dup.DuplicateOf, orig.ID)
	}
	if x := addIx(b, 1, "000000101", 7*24*time.Hour, false); x.State != spool.StateParsed {
		t.Errorf("same ISA13 outside a 7-day window (original 10 days old): %s", x.State)
	}
	if x := addIx(fileAt("globex", now), 0, "000000101", 0, false); x.State != spool.StateParsed {
		t.Errorf("same ISA13 from another partner: %s", x.State)
	}
	if x := addIx(b, 2, "000000102", 0, false); x.State != spool.StateParsed {
		t.Errorf("new ISA13: %s", x.State)
	}
	// A rejected original does not make the corrected resend a duplicate.
	c := fileAt("acme", now.Add(-time.Hour))
	bad := addIx(c, 0, "000000200", 0, true)
	if bad.State != spool.StateRejected {
		t.Errorf("rejected: %s", bad.State)
	}
	if x := addIx(fileAt("acme", now), 0, "000000200", 0, false); x.State != spool.StateParsed {
		t.Errorf("resend after a rejected original: %s of %q", x.State, x.DuplicateOf)
	}
	// Adding the same position again (a re-run parse) returns the stored
	// record: the original does not become a duplicate of itself.
	again := addIx(a, 0, "000000101", 0, false)
	if again.ID != orig.ID || again.State != spool.StateParsed {
		t.Errorf("re-added original: %+v", again)
	}
	againDup := addIx(b, 0, "000000101", 0, false)
	if againDup.ID != dup.ID || againDup.State != spool.StateDuplicate {
		t.Errorf("re-added duplicate: %+v", againDup)
	}
	xs, err := s.ListInterchanges(ctx, b.ID)
	if err != nil || len(xs) != 3 || xs[0].Seq != 0 || xs[2].Seq != 2 {
		t.Errorf("ListInterchanges: %+v %v", xs, err)
	}
	// Concurrent parses of two copies: exactly one original.
	f1, f2 := fileAt("initech", now), fileAt("initech", now)
	var wg sync.WaitGroup
	res := make([]spool.Interchange, 2)
	for i, f := range []spool.File{f1, f2} {
		wg.Go(func() {
			x, _, err := s.AddInterchange(ctx, spool.NewInterchange{FileID: f.ID, Control: "000000777"})
			if err != nil {
				t.Error(err)
			}
			res[i] = x
		})
	}
	wg.Wait()
	if n := count(res, func(x spool.Interchange) bool { return x.State == spool.StateDuplicate }); n != 1 {
		t.Errorf("concurrent copies: %d duplicates, want 1: %+v", n, res)
	}
}

func count[T any](xs []T, f func(T) bool) int {
	n := 0
	for _, x := range xs {
		if f(x) {
			n++
		}
	}
	return n
}

func testIdempotentAdds(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	f := addFile(t, s, "acme")
	x, _, err := s.AddInterchange(ctx, spool.NewInterchange{FileID: f.ID, Control: "000000001"})
	if err != nil {
		t.Fatal(err)
	}
	nd := spool.NewDocument{FileID: f.ID, InterchangeID: x.ID, Seq: 0, Type: "850", GroupControl: "1", SetControl: "0001", BusinessKey: "PO-1", IdempotencyKey: "acme:000000001:1:0001"}
	d1, err := s.AddDocument(ctx, nd)
	if err != nil {
		t.Fatal(err)
	}
	if d1.Partner != "acme" || d1.InterchangeID != x.ID || d1.State != spool.StateParsed || d1.IdempotencyKey != nd.IdempotencyKey || d1.ID.Kind() != spool.KindDocument {
		t.Errorf("document: %+v", d1)
	}
	d2, err := s.AddDocument(ctx, nd)
	if err != nil || d2.ID != d1.ID {
		t.Errorf("re-added document: %s, want %s (%v)", d2.ID, d1.ID, err)
	}
	docs, _, err := s.ListDocuments(ctx, spool.DocumentFilter{FileID: f.ID})
	if err != nil || len(docs) != 1 {
		t.Errorf("documents after a re-add: %d %v", len(docs), err)
	}
	if n := len(events(t, s, d1.ID)); n != 1 {
		t.Errorf("%d events after a re-add, want 1", n)
	}
	// A document cannot name another file's interchange.
	g := addFile(t, s, "acme")
	_, err = s.AddDocument(ctx, spool.NewDocument{FileID: g.ID, InterchangeID: x.ID, Type: "850"})
	wantErr(t, err, spool.ErrInvalid, "foreign interchange")
}

func testResults(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	f := addFile(t, s, "acme")
	x, _, err := s.AddInterchange(ctx, spool.NewInterchange{FileID: f.ID, Control: "000000009", Meta: json.RawMessage(`{"isa09":"250304"}`)})
	if err != nil {
		t.Fatal(err)
	}
	ackAt := time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)
	ack := spool.Ack{Kind: "997", Status: "A", Control: "000000042", Blob: ref("997 bytes"), At: ackAt}
	if err := s.SetInterchangeAck(ctx, x.ID, ack, spool.WithActor("acker")); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetInterchange(ctx, x.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ack, got.Ack); diff != "" {
		t.Errorf("ack (-want +got):\n%s", diff)
	}
	if string(got.Meta) != `{"isa09":"250304"}` {
		t.Errorf("meta %s", got.Meta)
	}
	evs := events(t, s, x.ID)
	if last := evs[len(evs)-1]; last.Kind != spool.EventAck || last.Actor != "acker" {
		t.Errorf("ack event %+v", last)
	}

	d := addDoc(t, s, f.ID, 0, spool.StateAcked)
	mapped := ref(`{"po":"PO-9"}`)
	if err := s.SetDocumentMapped(ctx, d.ID, mapped, "PO-9"); err != nil {
		t.Fatal(err)
	}
	resp := spool.Response{Status: 201, Body: ref(`{"id":1}`), At: ackAt.Add(time.Minute)}
	if err := s.SetDocumentResult(ctx, d.ID, spool.Response{Status: 503}, spool.WithActor("deliverer")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDocumentResult(ctx, d.ID, resp, spool.WithActor("deliverer")); err != nil {
		t.Fatal(err)
	}
	gd, err := s.GetDocument(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gd.Mapped != mapped || gd.BusinessKey != "PO-9" {
		t.Errorf("mapped %+v key %q", gd.Mapped, gd.BusinessKey)
	}
	if diff := cmp.Diff(resp, gd.Response); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}
	n := count(events(t, s, d.ID), func(e spool.Event) bool { return e.Kind == spool.EventResult })
	if n != 2 {
		t.Errorf("%d result events, want 2 (every response is logged)", n)
	}
	// An empty business key keeps the one known.
	if err := s.SetDocumentMapped(ctx, d.ID, mapped, ""); err != nil {
		t.Fatal(err)
	}
	if gd, _ := s.GetDocument(ctx, d.ID); gd.BusinessKey != "PO-9" {
		t.Errorf("business key cleared: %q", gd.BusinessKey)
	}
	wantErr(t, s.SetDocumentMapped(ctx, d.ID, spool.BlobRef{}, ""), spool.ErrInvalid, "mapped without a blob")

	// WithResponse records the answer with the transition, in one write; a
	// refused transition records neither.
	e := addDoc(t, s, f.ID, 1, spool.StateMapped)
	ok := spool.Response{Status: 200, Body: ref(`{"ok":true}`), At: ackAt.Add(2 * time.Minute)}
	err = s.Transition(ctx, e.ID, spool.StateDelivered, spool.StateArchived, spool.WithResponse(ok))
	wantErr(t, err, spool.ErrConflict, "transition from the wrong state")
	if ge, _ := s.GetDocument(ctx, e.ID); ge.Response.Status != 0 {
		t.Errorf("a refused transition recorded the response: %+v", ge.Response)
	}
	mustTransition(t, s, e.ID, spool.StateMapped, spool.StateDelivered, spool.WithResponse(ok), spool.WithActor("deliverer"))
	ge, err := s.GetDocument(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ok, ge.Response); diff != "" || ge.Work.State != spool.StateDelivered {
		t.Errorf("state %s, response (-want +got):\n%s", ge.Work.State, diff)
	}
	evs = events(t, s, e.ID)
	if r, tr := evs[len(evs)-2], evs[len(evs)-1]; r.Kind != spool.EventResult || r.Actor != "deliverer" || tr.To != spool.StateDelivered {
		t.Errorf("events %+v, %+v; want the result, then the transition", r, tr)
	}
	wantErr(t, s.Transition(ctx, f.ID, spool.StateReceived, spool.StateParsed, spool.WithResponse(ok)), spool.ErrInvalid, "a response on a file")

	// A small body kept inline, with the transition; a later blob body
	// replaces it.
	g := addDoc(t, s, f.ID, 2, spool.StateMapped)
	inline := spool.Response{Status: 201, Inline: []byte(`{"status":"accepted","key":"k-2"}`), At: ackAt.Add(3 * time.Minute)}
	mustTransition(t, s, g.ID, spool.StateMapped, spool.StateDelivered, spool.WithResponse(inline))
	if gg, err := s.GetDocument(ctx, g.ID); err != nil || !cmp.Equal(inline, gg.Response) {
		t.Errorf("inline response: %v (-want +got):\n%s", err, cmp.Diff(inline, gg.Response))
	}
	if err := s.SetDocumentResult(ctx, g.ID, resp); err != nil {
		t.Fatal(err)
	}
	if gg, _ := s.GetDocument(ctx, g.ID); !cmp.Equal(resp, gg.Response) {
		t.Errorf("a blob body after an inline one (-want +got):\n%s", cmp.Diff(resp, gg.Response))
	}
	wantErr(t, s.SetDocumentResult(ctx, g.ID, spool.Response{Status: 200, Inline: make([]byte, spool.MaxInlineResponse+1)}), spool.ErrInvalid, "an inline body over the limit")
	wantErr(t, s.SetDocumentResult(ctx, g.ID, spool.Response{Status: 200, Inline: []byte("x"), Body: ref("x")}), spool.ErrInvalid, "a body inline and as a blob")
}

func testEvents(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	f := addFile(t, s, "acme")
	note := spool.Event{Subject: f.ID, Actor: "ops@example.com", Kind: spool.EventNote, Message: "partner says resend tomorrow", Detail: json.RawMessage(`{"ticket":"OPS-1"}`)}
	if err := s.AddEvent(ctx, note); err != nil {
		t.Fatal(err)
	}
	if err := s.AddEvent(ctx, spool.Event{Subject: f.ID, Kind: spool.EventError, Message: "archive: 403"}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.AddEvent(ctx, spool.Event{Subject: f.ID, Kind: spool.EventTransition, From: spool.StateReceived, To: spool.StateDone}), spool.ErrInvalid, "forged transition event")
	wantErr(t, s.AddEvent(ctx, spool.Event{Subject: f.ID, Kind: spool.EventNote, Detail: json.RawMessage("{")}), spool.ErrInvalid, "bad detail")
	evs := events(t, s, f.ID)
	if len(evs) != 3 {
		t.Fatalf("events: %+v", evs)
	}
	got := evs[1]
	if got.Kind != spool.EventNote || got.Actor != note.Actor || got.Message != note.Message || string(got.Detail) != `{"ticket":"OPS-1"}` || got.Subject != f.ID || got.At.IsZero() {
		t.Errorf("note: %+v", got)
	}
	if evs[2].Actor != "system" || evs[2].Kind != spool.EventError {
		t.Errorf("error event: %+v", evs[2])
	}
	if w := work(t, s, f.ID); w.State != spool.StateReceived {
		t.Errorf("a note changed state: %s", w.State)
	}
	// WithDetail rejects what does not marshal.
	wantErr(t, s.Transition(ctx, f.ID, spool.StateReceived, spool.StateParsed, spool.WithDetail(func() {})), spool.ErrInvalid, "unmarshalable detail")
}

func testCounters(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	for i := int64(1); i <= 3; i++ {
		v, err := s.NextControl(ctx, "acme", "isa")
		if err != nil || v != i {
			t.Fatalf("NextControl #%d = %d, %v", i, v, err)
		}
	}
	if v, err := s.NextControl(ctx, "acme", "gs"); err != nil || v != 1 {
		t.Errorf("another name starts at 1: %d %v", v, err)
	}
	if v, err := s.NextControl(ctx, "globex", "isa"); err != nil || v != 1 {
		t.Errorf("another partner starts at 1: %d %v", v, err)
	}
	const goroutines, each = 8, 25
	got := make([][]int64, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				v, err := s.NextControl(ctx, "acme", "isa")
				if err != nil {
					t.Error(err)
					return
				}
				got[g] = append(got[g], v)
			}
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for g, vs := range got {
		for i, v := range vs {
			if seen[v] {
				t.Errorf("control number %d handed out twice", v)
			}
			seen[v] = true
			if i > 0 && v <= vs[i-1] {
				t.Errorf("goroutine %d: %d after %d", g, v, vs[i-1])
			}
		}
	}
	for v := int64(4); v <= 3+goroutines*each; v++ {
		if !seen[v] {
			t.Errorf("control number %d skipped", v)
		}
	}
	// Across a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = h.store(t)
	if v, err := s.NextControl(ctx, "acme", "isa"); err != nil || v != 4+goroutines*each {
		t.Errorf("after reopen: %d %v, want %d", v, err, 4+goroutines*each)
	}
	_, err := s.NextControl(ctx, "", "isa")
	wantErr(t, err, spool.ErrInvalid, "counter without partner")

	// Blocks: consecutive, shared with NextControl, never overlapping.
	next := int64(5 + goroutines*each)
	if v, err := s.ReserveControls(ctx, "acme", "isa", 10); err != nil || v != next {
		t.Errorf("ReserveControls(10) = %d %v, want %d", v, err, next)
	}
	if v, err := s.NextControl(ctx, "acme", "isa"); err != nil || v != next+10 {
		t.Errorf("NextControl after a block = %d %v, want %d", v, err, next+10)
	}
	if v, err := s.ReserveControls(ctx, "initech", "ack", 16); err != nil || v != 1 {
		t.Errorf("first block of a new counter starts at %d (%v), want 1", v, err)
	}
	for _, n := range []int{0, 1001} {
		_, err = s.ReserveControls(ctx, "acme", "isa", n)
		wantErr(t, err, spool.ErrInvalid, fmt.Sprintf("a block of %d", n))
	}
}

func testDurability(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	f := addFile(t, s, "acme")
	mustTransition(t, s, f.ID, spool.StateReceived, spool.StateParsed)
	x, _, err := s.AddInterchange(ctx, spool.NewInterchange{FileID: f.ID, Control: "000000005", Sender: "ZZ:ACME", Receiver: "ZZ:US", Version: "00501"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetInterchangeAck(ctx, x.ID, spool.Ack{Kind: "999", Status: "A", Control: "7"}); err != nil {
		t.Fatal(err)
	}
	d, err := s.AddDocument(ctx, spool.NewDocument{FileID: f.ID, InterchangeID: x.ID, Type: "856", SetControl: "0001", BusinessKey: "ASN-5",
		Meta: json.RawMessage(`{"lines":3}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Retry(ctx, d.ID, errors.New("map: unknown UOM"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, spool.KindFile, []spool.State{spool.StateParsed}, "w", time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NextControl(ctx, "acme", "isa"); err != nil {
		t.Fatal(err)
	}
	wantF, _ := s.GetFile(ctx, f.ID)
	wantX, _ := s.GetInterchange(ctx, x.ID)
	wantD, _ := s.GetDocument(ctx, d.ID)
	wantFE, wantDE, wantXE := events(t, s, f.ID), events(t, s, d.ID), events(t, s, x.ID)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = h.store(t)
	gotF, err := s.GetFile(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	gotX, _ := s.GetInterchange(ctx, x.ID)
	gotD, _ := s.GetDocument(ctx, d.ID)
	for name, diff := range map[string]string{
		"file":               cmp.Diff(wantF, gotF),
		"interchange":        cmp.Diff(wantX, gotX),
		"document":           cmp.Diff(wantD, gotD),
		"file events":        cmp.Diff(wantFE, events(t, s, f.ID)),
		"document events":    cmp.Diff(wantDE, events(t, s, d.ID)),
		"interchange events": cmp.Diff(wantXE, events(t, s, x.ID)),
	} {
		if diff != "" {
			t.Errorf("%s after reopen (-before +after):\n%s", name, diff)
		}
	}
	if gotF.LeaseOwner != "w" {
		t.Errorf("lease lost across reopen: %+v", gotF.Work)
	}
	if v, err := s.NextControl(ctx, "acme", "isa"); err != nil || v != 2 {
		t.Errorf("counter after reopen: %d %v", v, err)
	}
}

// pages reads every page of a listing.
func pages[T any](t *testing.T, size int, asc bool, list func(spool.Page) ([]T, string, error)) [][]T {
	t.Helper()
	var out [][]T
	cursor := ""
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("paging does not end")
		}
		page, next, err := list(spool.Page{Limit: size, After: cursor, Ascending: asc})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page)
		if next == "" {
			return out
		}
		cursor = next
	}
}

func testListFiles(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var all []spool.ID
	byPartner := map[string][]spool.ID{}
	for i := range 25 {
		partner := []string{"acme", "globex"}[i%2]
		f, err := s.AddFile(ctx, spool.NewFile{Partner: partner, Channel: []string{"sftp", "poll", "api"}[i%3], Blob: ref(unique()),
			ReceivedAt: base.Add(time.Duration(i) * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			mustTransition(t, s, f.ID, spool.StateReceived, spool.StateRejected)
		}
		all = append(all, f.ID)
		byPartner[partner] = append(byPartner[partner], f.ID)
	}
	slices.Sort(all)
	list := func(f spool.FileFilter) func(spool.Page) ([]spool.File, string, error) {
		return func(p spool.Page) ([]spool.File, string, error) {
			f.Page = p
			return s.ListFiles(ctx, f)
		}
	}
	ids := func(pp [][]spool.File) (flat []spool.ID) {
		for _, p := range pp {
			for _, f := range p {
				flat = append(flat, f.ID)
			}
		}
		return flat
	}
	// Newest first, pages of 10: 10, 10, 5, no overlap, nothing missing.
	pp := pages(t, 10, false, list(spool.FileFilter{}))
	if len(pp) != 3 || len(pp[0]) != 10 || len(pp[1]) != 10 || len(pp[2]) != 5 {
		t.Errorf("page sizes: %d pages", len(pp))
	}
	want := slices.Clone(all)
	slices.Reverse(want)
	if diff := cmp.Diff(want, ids(pp)); diff != "" {
		t.Errorf("descending pages (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(all, ids(pages(t, 7, true, list(spool.FileFilter{})))); diff != "" {
		t.Errorf("ascending pages (-want +got):\n%s", diff)
	}
	if pp := pages(t, 25, false, list(spool.FileFilter{})); len(pp) != 1 {
		t.Errorf("an exact page leaves a next cursor: %d pages", len(pp))
	}
	got := ids(pages(t, 4, true, list(spool.FileFilter{Partner: "acme"})))
	if diff := cmp.Diff(sorted(byPartner["acme"]...), got); diff != "" {
		t.Errorf("partner filter (-want +got):\n%s", diff)
	}
	rej := ids(pages(t, 100, true, list(spool.FileFilter{States: []spool.State{spool.StateRejected}})))
	if len(rej) != 5 {
		t.Errorf("state filter: %d rejected, want 5", len(rej))
	}
	// Hours 5..9 inclusive: Since inclusive, Until exclusive.
	rng := ids(pages(t, 100, true, list(spool.FileFilter{Since: base.Add(5 * time.Hour), Until: base.Add(10 * time.Hour)})))
	if len(rng) != 5 {
		t.Errorf("time range: %d files, want 5", len(rng))
	}
	mix := ids(pages(t, 100, true, list(spool.FileFilter{Partner: "acme", Channel: "sftp", States: []spool.State{spool.StateReceived, spool.StateRejected}})))
	if len(mix) != 5 { // i in {0, 6, 12, 18, 24}
		t.Errorf("combined filter: %d files, want 5", len(mix))
	}
	one, err := s.GetFile(ctx, all[3])
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(pages(t, 100, true, list(spool.FileFilter{SHA256: one.Blob.SHA256}))); len(got) != 1 || got[0] != one.ID {
		t.Errorf("hash filter: %v", got)
	}
}

func testListDocuments(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	f := addFile(t, s, "acme")
	g := addFile(t, s, "globex")
	xa, _, err := s.AddInterchange(ctx, spool.NewInterchange{FileID: f.ID, Control: "000000300"})
	if err != nil {
		t.Fatal(err)
	}
	xg, _, err := s.AddInterchange(ctx, spool.NewInterchange{FileID: g.ID, Control: "000000301"})
	if err != nil {
		t.Fatal(err)
	}
	types := []string{"850", "856", "810"}
	var all []spool.ID
	for i := range 12 {
		file, ix := f, xa
		if i >= 8 {
			file, ix = g, xg
		}
		d, err := s.AddDocument(ctx, spool.NewDocument{FileID: file.ID, InterchangeID: ix.ID, Seq: i, Type: types[i%3],
			GroupControl: fmt.Sprint(1 + i/4), SetControl: fmt.Sprintf("%04d", i), BusinessKey: fmt.Sprintf("KEY-%d", i),
			IdempotencyKey: fmt.Sprintf("idem-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, d.ID)
	}
	csv, err := s.AddDocument(ctx, spool.NewDocument{FileID: g.ID, Seq: 100, Type: "inventory"})
	if err != nil {
		t.Fatal(err)
	}
	mustTransition(t, s, all[0], spool.StateParsed, spool.StateAcked)
	mustTransition(t, s, all[1], spool.StateParsed, spool.StateAcked)

	list := func(df spool.DocumentFilter) []spool.ID {
		t.Helper()
		var out []spool.ID
		for _, p := range pages(t, 3, true, func(p spool.Page) ([]spool.Document, string, error) {
			df.Page = p
			return s.ListDocuments(ctx, df)
		}) {
			for _, d := range p {
				out = append(out, d.ID)
			}
		}
		return out
	}
	for name, c := range map[string]struct {
		f    spool.DocumentFilter
		want []spool.ID
	}{
		"all":             {spool.DocumentFilter{}, sorted(append(slices.Clone(all), csv.ID)...)},
		"partner":         {spool.DocumentFilter{Partner: "globex"}, sorted(all[8], all[9], all[10], all[11], csv.ID)},
		"type":            {spool.DocumentFilter{Types: []string{"856"}}, sorted(all[1], all[4], all[7], all[10])},
		"types":           {spool.DocumentFilter{Types: []string{"810", "inventory"}}, sorted(all[2], all[5], all[8], all[11], csv.ID)},
		"state":           {spool.DocumentFilter{States: []spool.State{spool.StateAcked}}, sorted(all[0], all[1])},
		"file":            {spool.DocumentFilter{FileID: g.ID}, sorted(all[8], all[9], all[10], all[11], csv.ID)},
		"interchange":     {spool.DocumentFilter{InterchangeID: xa.ID}, sorted(all[:8]...)},
		"ISA13":           {spool.DocumentFilter{InterchangeControl: "000000301"}, sorted(all[8:]...)},
		"GS06":            {spool.DocumentFilter{GroupControl: "2"}, sorted(all[4:8]...)},
		"ST02":            {spool.DocumentFilter{SetControl: "0005"}, sorted(all[5])},
		"business key":    {spool.DocumentFilter{BusinessKey: "KEY-7"}, sorted(all[7])},
		"idempotency key": {spool.DocumentFilter{IdempotencyKey: "idem-3"}, sorted(all[3])},
		"combined":        {spool.DocumentFilter{Partner: "acme", Types: []string{"850"}, GroupControl: "1"}, sorted(all[0], all[3])},
		"nothing":         {spool.DocumentFilter{BusinessKey: "nope"}, nil},
		"future":          {spool.DocumentFilter{Since: time.Now().Add(time.Hour)}, nil},
		"until now":       {spool.DocumentFilter{Until: time.Now().Add(time.Hour), Types: []string{"inventory"}}, sorted(csv.ID)},
	} {
		if diff := cmp.Diff(c.want, list(c.f)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	page, next, err := s.ListDocuments(ctx, spool.DocumentFilter{Page: spool.Page{Limit: 5}})
	if err != nil || len(page) != 5 || next == "" || page[0].ID != csv.ID {
		t.Errorf("first page newest first: %d docs next %q: %v", len(page), next, err)
	}

	// Direction is the file's.
	out, err := s.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "api", Direction: spool.Outbound, Name: "850.x12", Blob: ref(unique())})
	if err != nil {
		t.Fatal(err)
	}
	po := addDoc(t, s, out.ID, 0, "")
	if got := list(spool.DocumentFilter{Direction: spool.Outbound}); !slices.Equal(got, []spool.ID{po.ID}) {
		t.Errorf("outbound documents: %v, want [%s]", got, po.ID)
	}
	if got := list(spool.DocumentFilter{Direction: spool.Inbound, Partner: "acme"}); len(got) != 8 || slices.Contains(got, po.ID) {
		t.Errorf("inbound documents of acme: %d (%v), want the 8 inbound ones", len(got), got)
	}

	// WasIn finds documents by a state they went through.
	rej := addDoc(t, s, f.ID, 60, spool.StateRejected)
	mustTransition(t, s, rej.ID, spool.StateRejected, spool.StateDone)
	if got := list(spool.DocumentFilter{WasIn: []spool.State{spool.StateRejected}}); !slices.Equal(got, []spool.ID{rej.ID}) {
		t.Errorf("WasIn rejected: %v, want [%s]", got, rej.ID)
	}
	if got := list(spool.DocumentFilter{WasIn: []spool.State{spool.StateAcked}, Partner: "acme"}); !slices.Equal(got, sorted(all[0], all[1])) {
		t.Errorf("WasIn acked: %v, want the two acked", got)
	}

	// Ref finds the business key or any of the document's refs.
	asn, err := s.AddDocument(ctx, spool.NewDocument{FileID: f.ID, Seq: 50, Type: "856", BusinessKey: "ASN-9", Refs: []string{"PO-1", "PO-2", "ASN-9", ""}})
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string][]spool.ID{"PO-2": {asn.ID}, "PO-1": {asn.ID}, "ASN-9": {asn.ID}, "KEY-3": {all[3]}, "PO-3": nil} {
		if got := list(spool.DocumentFilter{Ref: ref}); !slices.Equal(got, want) {
			t.Errorf("Ref %s: %v, want %v", ref, got, want)
		}
	}
	if again, err := s.AddDocument(ctx, spool.NewDocument{FileID: f.ID, Seq: 50, Type: "856", Refs: []string{"PO-7"}}); err != nil || again.ID != asn.ID {
		t.Errorf("adding the same position again: %v %v", again.ID, err)
	}
}

// ---- blobs ----

// RunBlobs runs the blob-store contract against stores made by open (called
// once per subtest, returning an empty store).
func RunBlobs(t *testing.T, open func(t *testing.T) spool.Blobs) {
	t.Run("PutOpenStat", func(t *testing.T) {
		b := open(t)
		ctx := t.Context()
		for _, content := range []string{"", "ISA*00*~", string(make([]byte, 1<<20+7))} {
			r, err := b.Put(ctx, stringsReader(content))
			if err != nil {
				t.Fatal(err)
			}
			if r != ref(content) {
				t.Errorf("Put = %v, want %v", r, ref(content))
			}
			if got := readAll(t, b, r); got != content {
				t.Errorf("Open returned %d bytes, want %d", len(got), len(content))
			}
			st, err := b.Stat(ctx, r.SHA256)
			if err != nil || st != r {
				t.Errorf("Stat = %v, %v", st, err)
			}
		}
	})
	t.Run("SameContentOnce", func(t *testing.T) {
		b := open(t)
		var wg sync.WaitGroup
		refs := make([]spool.BlobRef, 8)
		for i := range refs {
			wg.Go(func() {
				r, err := b.Put(t.Context(), stringsReader("same bytes"))
				if err != nil {
					t.Error(err)
				}
				refs[i] = r
			})
		}
		wg.Wait()
		for _, r := range refs {
			if r != ref("same bytes") {
				t.Errorf("ref %v", r)
			}
		}
		if got := readAll(t, b, refs[0]); got != "same bytes" {
			t.Errorf("content %q", got)
		}
	})
	t.Run("FailingReaderStoresNothing", func(t *testing.T) {
		b := open(t)
		content := string(make([]byte, 256<<10))
		half := content[:len(content)/2]
		_, err := b.Put(t.Context(), &failingReader{data: half, err: errors.New("connection reset")})
		if err == nil {
			t.Fatal("Put succeeded on a failing reader")
		}
		for _, c := range []string{content, half} {
			if _, err := b.Stat(t.Context(), ref(c).SHA256); !errors.Is(err, spool.ErrNotFound) {
				t.Errorf("after a failed Put, Stat: %v, want ErrNotFound", err)
			}
		}
	})
	t.Run("CanceledContext", func(t *testing.T) {
		b := open(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := b.Put(ctx, stringsReader("never")); err == nil {
			t.Error("Put with a canceled context succeeded")
		}
		if _, err := b.Stat(t.Context(), ref("never").SHA256); !errors.Is(err, spool.ErrNotFound) {
			t.Errorf("Stat: %v", err)
		}
	})
	t.Run("NotFoundAndInvalid", func(t *testing.T) {
		b := open(t)
		_, err := b.Open(t.Context(), ref("absent"))
		wantErr(t, err, spool.ErrNotFound, "Open absent")
		_, err = b.Stat(t.Context(), ref("absent").SHA256)
		wantErr(t, err, spool.ErrNotFound, "Stat absent")
		for _, bad := range []string{"", "../../../../etc/passwd", "ABCDEF", ref("x").SHA256[:63] + "/"} {
			_, err = b.Open(t.Context(), spool.BlobRef{SHA256: bad})
			wantErr(t, err, spool.ErrInvalid, "Open "+bad)
			_, err = b.Stat(t.Context(), bad)
			wantErr(t, err, spool.ErrInvalid, "Stat "+bad)
		}
	})
}

// An interchange recorded with its documents and ack: one transaction, all
// or nothing, idempotent on a re-run, nothing for a duplicate.
func testInterchangeWithDocuments(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	f := addFile(t, s, "acme")
	ack := spool.Ack{Kind: "999", Status: "A", Control: "000000007", Blob: ref("999 #7")}
	ni := spool.NewInterchange{FileID: f.ID, Control: "000000123", Ack: ack, Documents: []spool.NewDocument{
		{Seq: 0, Type: "856", SetControl: "0001", State: spool.StateMapped, Mapped: ref("{}"), BusinessKey: "ASN-1", Refs: []string{"PO-1"}},
		{Seq: 1, Type: "856", SetControl: "0002", State: spool.StateRejected, Reason: "IK5*R"},
	}}
	x, docs, err := s.AddInterchange(ctx, ni)
	if err != nil {
		t.Fatal(err)
	}
	if x.State != spool.StateParsed || x.Ack.Kind != "999" || x.Ack.Control != "000000007" || x.Ack.At.IsZero() {
		t.Errorf("interchange: %+v", x)
	}
	if len(docs) != 2 {
		t.Fatalf("%d documents, want 2", len(docs))
	}
	for i, d := range docs {
		if d.InterchangeID != x.ID || d.FileID != f.ID || d.Seq != i || d.Partner != "acme" {
			t.Errorf("document %d: %+v", i, d)
		}
	}
	if docs[0].State != spool.StateMapped || docs[0].Mapped != ref("{}") || docs[1].State != spool.StateRejected || docs[1].Work.LastError != "IK5*R" {
		t.Errorf("document states: %s %s %q", docs[0].State, docs[1].State, docs[1].Work.LastError)
	}
	got, err := s.GetInterchange(ctx, x.ID)
	if err != nil || got.Ack.Control != "000000007" || got.Ack.Blob != ack.Blob {
		t.Errorf("stored ack: %+v %v", got.Ack, err)
	}
	if kinds := eventKinds(t, s, x.ID); !slices.Equal(kinds, []spool.EventKind{spool.EventCreated, spool.EventAck}) {
		t.Errorf("interchange events %v", kinds)
	}
	if found, _, err := s.ListDocuments(ctx, spool.DocumentFilter{Ref: "PO-1"}); err != nil || len(found) != 1 || found[0].ID != docs[0].ID {
		t.Errorf("by ref: %v %v", found, err)
	}

	// A re-run (another ack, as a re-run would make) changes nothing.
	ni.Ack.Control = "000000008"
	x2, docs2, err := s.AddInterchange(ctx, ni)
	if err != nil || x2.ID != x.ID || x2.Ack.Control != "000000007" || len(docs2) != 2 || docs2[0].ID != docs[0].ID || docs2[1].ID != docs[1].ID {
		t.Errorf("re-run: %+v %v %v", x2, docs2, err)
	}
	if all, _, err := s.ListDocuments(ctx, spool.DocumentFilter{FileID: f.ID}); err != nil || len(all) != 2 {
		t.Errorf("documents after a re-run: %d %v", len(all), err)
	}

	// The same control number in another file: a duplicate, with neither
	// documents nor ack.
	g := addFile(t, s, "acme")
	ni.FileID = g.ID
	dup, ddocs, err := s.AddInterchange(ctx, ni)
	if err != nil || dup.State != spool.StateDuplicate || dup.DuplicateOf != x.ID || len(ddocs) != 0 || dup.Ack.Kind != "" {
		t.Errorf("duplicate: %+v %v %v", dup, ddocs, err)
	}
	if all, _, err := s.ListDocuments(ctx, spool.DocumentFilter{FileID: g.ID}); err != nil || len(all) != 0 {
		t.Errorf("a duplicate's documents: %d %v", len(all), err)
	}

	// A bad document fails the whole interchange.
	h2 := addFile(t, s, "acme")
	_, _, err = s.AddInterchange(ctx, spool.NewInterchange{FileID: h2.ID, Control: "000000124", Documents: []spool.NewDocument{
		{Seq: 0, Type: "850"}, {Seq: 1, Type: ""},
	}})
	wantErr(t, err, spool.ErrInvalid, "document without a type")
	// And a failure inside the transaction leaves nothing behind.
	_, _, err = s.AddInterchange(ctx, spool.NewInterchange{FileID: h2.ID, Control: "000000124", Documents: []spool.NewDocument{
		{Seq: 0, Type: "850"}, {Seq: 1, Type: "850", Mapped: ref("x"), Lease: spool.Lease{Owner: "w"}},
	}})
	wantErr(t, err, spool.ErrInvalid, "a lease without a duration")
	if ixs, err := s.ListInterchanges(ctx, h2.ID); err != nil || len(ixs) != 0 {
		t.Errorf("interchanges after a failed add: %d %v", len(ixs), err)
	}
}

func eventKinds(t *testing.T, s spool.Store, id spool.ID) []spool.EventKind {
	t.Helper()
	var kinds []spool.EventKind
	for _, e := range events(t, s, id) {
		kinds = append(kinds, e.Kind)
	}
	return kinds
}

// A record created leased is not claimable by others until the lease
// expires; its owner moves it on without a claim.
func testLeasedAtCreation(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	const lease = 300 * time.Millisecond
	f, err := s.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "sftp", Blob: ref(unique()), Lease: spool.Lease{Owner: "node-a", For: lease}})
	if err != nil {
		t.Fatal(err)
	}
	if f.State != spool.StateReceived || f.Work.LeaseOwner != "node-a" || f.Work.LeaseUntil.IsZero() {
		t.Fatalf("leased file: %+v", f.Work)
	}
	x, docs, err := s.AddInterchange(ctx, spool.NewInterchange{FileID: f.ID, Control: "000000200", Documents: []spool.NewDocument{
		{Seq: 0, Type: "850", State: spool.StateMapped, Mapped: ref("{}"), Lease: spool.Lease{Owner: "node-a", For: lease}},
		{Seq: 1, Type: "850", State: spool.StateMapped, Mapped: ref("{}")},
	}})
	if err != nil || x.State != spool.StateParsed || len(docs) != 2 {
		t.Fatalf("add interchange: %v %v", docs, err)
	}
	if docs[0].Work.LeaseOwner != "node-a" || docs[1].Work.LeaseOwner != "" {
		t.Errorf("document leases: %q %q", docs[0].Work.LeaseOwner, docs[1].Work.LeaseOwner)
	}
	if items, err := s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "node-b", time.Minute, 10); err != nil || len(items) != 0 {
		t.Errorf("claimed a file leased at creation: %v %v", claimIDs(items), err)
	}
	items, err := s.Claim(ctx, spool.KindDocument, []spool.State{spool.StateMapped}, "node-b", time.Minute, 10)
	if err != nil || len(items) != 1 || items[0].ID() != docs[1].ID {
		t.Errorf("claim of documents: %v %v (want only the unleased one)", claimIDs(items), err)
	}
	wantErr(t, s.Transition(ctx, f.ID, spool.StateReceived, spool.StateParsed, spool.WithOwner("node-b")), spool.ErrLeaseLost, "transition by a non-owner")
	mustTransition(t, s, docs[0].ID, spool.StateMapped, spool.StateDelivered, spool.WithOwner("node-a"))

	// The owner died: after the lease, anyone claims the file (a reclaim).
	time.Sleep(time.Until(f.Work.LeaseUntil) + 50*time.Millisecond)
	items, err = s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "node-b", time.Minute, 10)
	if err != nil || len(items) != 1 || items[0].ID() != f.ID {
		t.Fatalf("claim after the lease: %v %v", claimIDs(items), err)
	}
	if kinds := eventKinds(t, s, f.ID); kinds[len(kinds)-1] != spool.EventReclaim {
		t.Errorf("file events %v, want a reclaim last", kinds)
	}

	// A duplicate is not leased: there is no work on it.
	dup, err := s.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "sftp", Blob: f.Blob, Lease: spool.Lease{Owner: "node-a", For: lease}})
	if err != nil || dup.State != spool.StateDuplicate || dup.Work.LeaseOwner != "" {
		t.Errorf("duplicate: %+v %v", dup.Work, err)
	}
	_, err = s.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "sftp", Blob: ref(unique()), Lease: spool.Lease{Owner: "node-a"}})
	wantErr(t, err, spool.ErrInvalid, "a lease without a duration")
}

// testInlineBlobs: small blobs given with a file or an interchange are kept
// by the store, committed with the record, and read back by hash; they are
// refused when too large or not the file's blob, and not kept with a
// duplicate interchange.
func testInlineBlobs(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	inline := func(sum string) ([]byte, error) { return s.InlineBlob(ctx, sum) }

	raw := []byte("ISA*" + unique())
	f, err := s.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "sftp", Name: "in.edi", Blob: spool.RefOf(raw), Inline: raw})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := inline(f.Blob.SHA256); err != nil || !bytes.Equal(got, raw) {
		t.Errorf("the file's inline blob: %q %v, want %q", got, err, raw)
	}
	// The same bytes again (a duplicate file): stored once, still readable.
	if dup, err := s.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "sftp", Name: "again.edi", Blob: spool.RefOf(raw), Inline: raw}); err != nil || dup.State != spool.StateDuplicate {
		t.Errorf("the same inline file again: %s %v, want duplicate", dup.State, err)
	}

	ackBytes, doc := []byte("ISA*999*"+unique()), []byte(`{"asn":"`+unique()+`"}`)
	ni := spool.NewInterchange{FileID: f.ID, Control: "000000321", Inline: [][]byte{ackBytes, doc},
		Ack:       spool.Ack{Kind: "999", Status: "A", Control: "000000001", Blob: spool.RefOf(ackBytes)},
		Documents: []spool.NewDocument{{Seq: 0, Type: "856", State: spool.StateMapped, Mapped: spool.RefOf(doc)}}}
	if _, _, err := s.AddInterchange(ctx, ni); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{ackBytes, doc} {
		if got, err := inline(spool.RefOf(b).SHA256); err != nil || !bytes.Equal(got, b) {
			t.Errorf("inline blob of the interchange: %q %v, want %q", got, err, b)
		}
	}

	// A duplicate interchange (same partner and control, another file)
	// keeps nothing: nothing refers to its blobs.
	f2 := addFile(t, s, "acme")
	other := []byte(`{"asn":"` + unique() + `"}`)
	x, _, err := s.AddInterchange(ctx, spool.NewInterchange{FileID: f2.ID, Control: "000000321", Inline: [][]byte{other},
		Documents: []spool.NewDocument{{Seq: 0, Type: "856", State: spool.StateMapped, Mapped: spool.RefOf(other)}}})
	if err != nil || x.State != spool.StateDuplicate {
		t.Fatalf("duplicate interchange: %s %v", x.State, err)
	}
	if _, err := inline(spool.RefOf(other).SHA256); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("a duplicate interchange's inline blob: %v, want ErrNotFound", err)
	}

	if _, err := s.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "sftp", Blob: ref(unique()), Inline: []byte("other bytes")}); !errors.Is(err, spool.ErrInvalid) {
		t.Errorf("inline bytes that are not the file's blob: %v, want ErrInvalid", err)
	}
	big := bytes.Repeat([]byte("x"), spool.InlineMax+1)
	if _, err := s.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "sftp", Blob: spool.RefOf(big), Inline: big}); !errors.Is(err, spool.ErrInvalid) {
		t.Errorf("an inline blob over InlineMax: %v, want ErrInvalid", err)
	}
	if _, _, err := s.AddInterchange(ctx, spool.NewInterchange{FileID: f.ID, Seq: 1, Control: "000000999", Inline: [][]byte{big}}); !errors.Is(err, spool.ErrInvalid) {
		t.Errorf("an interchange's inline blob over InlineMax: %v, want ErrInvalid", err)
	}
	if _, err := inline(ref(unique()).SHA256); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("an unknown inline blob: %v, want ErrNotFound", err)
	}
}
