package spooltest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/edigw/edigw/spool"
)

// The audit log appends, lists newest first, filters, and keeps entries
// across reopen.
func testAudit(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	if _, err := s.AddAudit(ctx, spool.AuditEntry{Action: "replay", Outcome: "ok"}); !errors.Is(err, spool.ErrInvalid) {
		t.Errorf("AddAudit without actor: %v, want ErrInvalid", err)
	}
	if _, err := s.AddAudit(ctx, spool.AuditEntry{Actor: "a", Action: "x", Outcome: "ok", Detail: json.RawMessage("{bad")}); !errors.Is(err, spool.ErrInvalid) {
		t.Errorf("AddAudit with bad detail: %v, want ErrInvalid", err)
	}
	in := []spool.AuditEntry{
		{Actor: "alice", Role: "operator", Action: "replay", Target: "doc_1", Reason: "ERP fixed", Outcome: "ok", Detail: json.RawMessage(`{"to":"mapped"}`)},
		{Actor: "bob", Role: "viewer", Action: "replay", Target: "doc_1", Reason: "", Outcome: "denied"},
		{Actor: "alice", Role: "operator", Action: "resolve", Target: "doc_2", Reason: "sent by mail", Outcome: "ok"},
	}
	var ids []int64
	for _, e := range in {
		got, err := s.AddAudit(ctx, e)
		if err != nil {
			t.Fatalf("AddAudit: %v", err)
		}
		if got.ID == 0 || got.At.IsZero() || got.Actor != e.Actor || got.Reason != e.Reason || string(got.Detail) != string(e.Detail) {
			t.Errorf("AddAudit returned %+v for %+v", got, e)
		}
		ids = append(ids, got.ID)
	}
	all, err := s.ListAudit(ctx, spool.AuditFilter{})
	if err != nil || len(all) != 3 || all[0].ID != ids[2] || all[2].ID != ids[0] {
		t.Fatalf("ListAudit: %+v %v, want 3 newest first", all, err)
	}
	if string(all[2].Detail) != `{"to":"mapped"}` || all[1].Outcome != "denied" {
		t.Errorf("round trip: %+v", all)
	}
	if got, _ := s.ListAudit(ctx, spool.AuditFilter{Actor: "alice"}); len(got) != 2 {
		t.Errorf("by actor: %d entries, want 2", len(got))
	}
	if got, _ := s.ListAudit(ctx, spool.AuditFilter{Target: "doc_1", Limit: 1}); len(got) != 1 || got[0].ID != ids[1] {
		t.Errorf("by target with limit: %+v", got)
	}
	s.Close()
	s = h.store(t)
	if got, _ := s.ListAudit(ctx, spool.AuditFilter{}); len(got) != 3 {
		t.Errorf("after reopen: %d entries, want 3", len(got))
	}
}

// Depth counts files and documents by state.
func testDepth(t *testing.T, h harness) {
	s := h.store(t)
	f1 := addFile(t, s, "acme")
	addFile(t, s, "acme")
	addDoc(t, s, f1.ID, 0, spool.StateMapped)
	addDoc(t, s, f1.ID, 1, spool.StateMapped)
	addDoc(t, s, f1.ID, 2, spool.StateHeld)
	d, err := s.Depth(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d[spool.KindFile][spool.StateReceived] != 2 || d[spool.KindDocument][spool.StateMapped] != 2 || d[spool.KindDocument][spool.StateHeld] != 1 ||
		len(d[spool.KindFile]) != 1 || len(d[spool.KindDocument]) != 2 {
		t.Errorf("Depth = %v", d)
	}
}

// Nodes heartbeat; the list shows those seen recently.
func testNodes(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	if err := s.Heartbeat(ctx, spool.Node{}); !errors.Is(err, spool.ErrInvalid) {
		t.Errorf("heartbeat without id: %v", err)
	}
	before := time.Now().Add(-time.Second)
	if err := s.Heartbeat(ctx, spool.Node{ID: "a:1", Addr: ":8080", Version: "v1", InFlight: 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.Heartbeat(ctx, spool.Node{ID: "b:2", Addr: ":8081", Version: "v1"}); err != nil {
		t.Fatal(err)
	}
	first, _ := s.ListNodes(ctx, before)
	time.Sleep(20 * time.Millisecond)
	if err := s.Heartbeat(ctx, spool.Node{ID: "a:1", Addr: ":8080", Version: "v1", InFlight: 1}); err != nil {
		t.Fatal(err)
	}
	nodes, err := s.ListNodes(ctx, before)
	if err != nil || len(nodes) != 2 || nodes[0].ID != "a:1" || nodes[0].InFlight != 1 || nodes[1].Addr != ":8081" {
		t.Fatalf("ListNodes: %+v %v", nodes, err)
	}
	if !nodes[0].StartedAt.Equal(first[0].StartedAt) || !nodes[0].SeenAt.After(first[0].SeenAt) {
		t.Errorf("a heartbeat keeps StartedAt and moves SeenAt: %+v then %+v", first[0], nodes[0])
	}
	if recent, _ := s.ListNodes(ctx, nodes[1].SeenAt.Add(time.Millisecond)); len(recent) != 1 || recent[0].ID != "a:1" {
		t.Errorf("seen since b's heartbeat: %+v", recent)
	}
}

// The leases of a node that stopped heartbeating end at once, so the work
// it held is claimed (a reclaim) without waiting out the lease; a live
// node's leases and those of owners that are not nodes are kept.
func testSilentNodesLeases(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	heartbeat := func(id string) {
		t.Helper()
		if err := s.Heartbeat(ctx, spool.Node{ID: id, Addr: ":8080", Version: "v1"}); err != nil {
			t.Fatal(err)
		}
	}
	leased := func(owner string) spool.ID {
		t.Helper()
		f, err := s.AddFile(ctx, spool.NewFile{Partner: "acme", Channel: "sftp", Blob: ref(unique()), Lease: spool.Lease{Owner: owner, For: time.Hour}})
		if err != nil {
			t.Fatal(err)
		}
		return f.ID
	}
	heartbeat("dead:1")
	heartbeat("live:2")
	deadFile, liveFile, cliFile := leased("dead:1"), leased("live:2"), leased("cli:3")
	_, docs, err := s.AddInterchange(ctx, spool.NewInterchange{FileID: deadFile, Control: "000000300", Documents: []spool.NewDocument{
		{Seq: 0, Type: "850", State: spool.StateMapped, Mapped: ref("{}"), Lease: spool.Lease{Owner: "dead:1", For: time.Hour}},
	}})
	if err != nil || len(docs) != 1 {
		t.Fatalf("add interchange: %v %v", docs, err)
	}
	time.Sleep(20 * time.Millisecond)
	silentBefore := time.Now()
	time.Sleep(20 * time.Millisecond)
	heartbeat("live:2")

	n, err := s.ExpireSilentLeases(ctx, silentBefore)
	if err != nil || n != 2 {
		t.Fatalf("ExpireSilentLeases: %d %v, want the dead node's file and document", n, err)
	}
	items, err := s.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "other:4", time.Minute, 10)
	if err != nil || len(items) != 1 || items[0].ID() != deadFile {
		t.Fatalf("claim: %v %v, want only %s (live %s and cli %s keep their leases)", claimIDs(items), err, deadFile, liveFile, cliFile)
	}
	if kinds := eventKinds(t, s, deadFile); kinds[len(kinds)-1] != spool.EventReclaim {
		t.Errorf("file events %v, want a reclaim last", kinds)
	}
	items, err = s.Claim(ctx, spool.KindDocument, []spool.State{spool.StateMapped}, "other:4", time.Minute, 10)
	if err != nil || len(items) != 1 || items[0].ID() != docs[0].ID {
		t.Fatalf("claim of documents: %v %v", claimIDs(items), err)
	}
	// Expiring again finds nothing: the leases taken over belong to a node
	// that has not been seen at all (other:4), so they are not a silent node's.
	if n, err := s.ExpireSilentLeases(ctx, silentBefore); err != nil || n != 0 {
		t.Errorf("again: %d %v, want 0", n, err)
	}
}

// A scheduled tick runs once: a second BeginRun for the same tick, after
// the first finished, is refused; other ticks and manual runs are not.
func testPollTicks(t *testing.T, h harness) {
	s := h.store(t)
	ctx := t.Context()
	tick := time.Date(2026, 11, 27, 10, 5, 0, 0, time.UTC)
	begin := func(owner string, at time.Time) (spool.PollRun, error) {
		return s.BeginRun(ctx, spool.NewRun{Partner: "acme", Poll: "p", Owner: owner, Trigger: "schedule", Tick: at}, time.Minute)
	}
	r, err := begin("node-a", tick)
	if err != nil {
		t.Fatal(err)
	}
	r.Status = spool.RunOK
	if err := s.FinishRun(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := begin("node-b", tick); !errors.Is(err, spool.ErrPollBusy) {
		t.Errorf("the same tick again on another node: %v, want ErrPollBusy", err)
	}
	r2, err := begin("node-b", tick.Add(time.Minute))
	if err != nil {
		t.Fatalf("the next tick: %v", err)
	}
	r2.Status = spool.RunOK
	s.FinishRun(ctx, r2)
	for range 2 {
		m, err := begin("node-c", time.Time{})
		if err != nil {
			t.Fatalf("a manual run: %v", err)
		}
		m.Status = spool.RunOK
		s.FinishRun(ctx, m)
	}
}
