package gateway

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/edigw/edigw/spool"
)

// Files recorded while the handoff queue has room are created leased to
// this node and queued; beyond that they are left to claims. At shutdown
// the queued ones' leases are given back, so they do not wait for expiry.
func TestHandoffLeasesAndShutdown(t *testing.T) {
	g := pollGateway(t, "")
	g.cfg.Workers.Lease = time.Hour
	g.files = newHandoff(2)
	ctx := t.Context()
	var ids []spool.ID
	for _, body := range []string{"first", "second", "third"} {
		id, _, err := g.spoolFile(ctx, spool.NewFile{Partner: "retail", Channel: "test", Name: body + ".csv"}, func() (spool.BlobRef, error) {
			return spool.PutBytes(ctx, g.blobs, []byte(body))
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if n := len(g.files.q); n != 2 {
		t.Fatalf("%d files queued, want 2 (the queue's size)", n)
	}
	for i, id := range ids {
		f, err := g.store.GetFile(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if leased := f.Work.LeaseOwner == g.id; leased != (i < 2) {
			t.Errorf("file %d leased to this node: %v", i, leased)
		}
	}
	claim := func() []spool.ID {
		items, err := g.store.Claim(ctx, spool.KindFile, []spool.State{spool.StateReceived}, "other-node", time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []spool.ID
		for _, it := range items {
			got = append(got, it.ID())
		}
		return got
	}
	if got := claim(); !slices.Equal(got, ids[2:]) {
		t.Errorf("another node claimed %v, want only the file not handed over %v", got, ids[2:])
	}
	g.releaseQueued(ctx, g.files)
	if got := claim(); !slices.Equal(got, ids[:2]) {
		t.Errorf("after shutdown another node claimed %v, want the queued files %v", got, ids[:2])
	}
	if n := g.files.reserved.Load(); n != 0 {
		t.Errorf("%d places still reserved", n)
	}
}

// The queue never holds more than it reserved, and an item already queued
// or running is not queued again (a stage re-run by the same node).
func TestHandoffAccounting(t *testing.T) {
	h := newHandoff(2)
	if !h.reserve() || !h.reserve() || h.reserve() {
		t.Fatal("a queue of 2 must reserve exactly 2 places")
	}
	d := &spool.Document{ID: "doc_1"}
	if !h.put(handed{Item: spool.Item{Kind: spool.KindDocument, Document: d}}) {
		t.Fatal("first put refused")
	}
	if h.put(handed{Item: spool.Item{Kind: spool.KindDocument, Document: d}}) {
		t.Error("the same document queued twice")
	}
	if !h.reserve() {
		t.Error("the refused put did not give its place back")
	}
	h.cancel()
	var ran []spool.ID
	g := &Gateway{cfg: &Config{}}
	g.cfg.Workers.Lease = time.Minute
	d.Work.LeaseUntil = time.Now().Add(time.Minute)
	it := <-h.queue()
	g.runHanded(context.Background(), h, it, func(_ context.Context, it handed) { ran = append(ran, it.ID()) })
	if !slices.Equal(ran, []spool.ID{"doc_1"}) || h.reserved.Load() != 0 {
		t.Errorf("ran %v, %d places reserved", ran, h.reserved.Load())
	}
	if !h.reserve() || !h.put(handed{Item: spool.Item{Kind: spool.KindDocument, Document: d}}) {
		t.Error("a document that has run can be queued again")
	}
	var none *handoff // a CLI process
	if none.reserve() || none.queue() != nil {
		t.Error("no handoff must reserve nothing")
	}
}
