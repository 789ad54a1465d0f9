package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edigw/edigw/spool"
)

// handoff passes work this node has just recorded to its own workers in
// memory. The record is created leased to this node (spool.Lease), so no
// other worker claims it and no claim write is needed. If the node dies
// with work still queued, the leases expire and any node claims the work,
// as after a worker that died mid-stage.
//
// A place in the queue is reserved before the record is written, so put
// never blocks; when the queue is full the record is created unleased and
// the workers claim it from the spool as usual.
type handoff struct {
	q        chan handed
	reserved atomic.Int64
	mu       sync.Mutex
	queued   map[spool.ID]bool // queued or being run: never queued twice
}

func newHandoff(n int) *handoff {
	return &handoff{q: make(chan handed, n), queued: map[spool.ID]bool{}}
}

// handed is work handed over, or claimed.
type handed struct {
	spool.Item
	// archived: the file stage archived the document's JSON (with the
	// file's other objects), so its stage only records it.
	archived bool
	mapped   []byte // the document's JSON, as the file stage stored it
}

// reserve takes a place for one item; false when the queue is full (or
// there is none: a CLI process).
func (h *handoff) reserve() bool {
	if h == nil {
		return false
	}
	if h.reserved.Add(1) > int64(cap(h.q)) {
		h.reserved.Add(-1)
		return false
	}
	return true
}

// cancel gives back a reserved place that will not be used.
func (h *handoff) cancel() { h.reserved.Add(-1) }

// put queues an item for which a place was reserved; false (and the place
// given back) if the item is queued or running already, which a stage
// re-run by the same node can find.
func (h *handoff) put(it handed) bool {
	h.mu.Lock()
	dup := h.queued[it.ID()]
	h.queued[it.ID()] = true
	h.mu.Unlock()
	if dup {
		h.cancel()
		return false
	}
	h.q <- it
	return true
}

// take is called by the worker that received it from q.
func (h *handoff) take() { h.reserved.Add(-1) }

// done forgets an item once its stage has run.
func (h *handoff) done(id spool.ID) {
	h.mu.Lock()
	delete(h.queued, id)
	h.mu.Unlock()
}

// queue returns the channel workers receive from (nil, never ready, without
// a handoff).
func (h *handoff) queue() <-chan handed {
	if h == nil {
		return nil
	}
	return h.q
}

// lease is what a record handed over is created with.
func (g *Gateway) lease() spool.Lease { return spool.Lease{Owner: g.id, For: g.cfg.Workers.Lease} }

// runHanded runs the stage of an item taken from a handoff queue. A lease
// that has run down while the item waited is extended first; if the lease
// was lost meanwhile the item is someone else's and is left alone.
func (g *Gateway) runHanded(ctx context.Context, h *handoff, it handed, run func(context.Context, handed)) {
	h.take()
	defer h.done(it.ID())
	if time.Until(it.Work().LeaseUntil) < g.cfg.Workers.Lease/2 {
		if _, err := g.store.ExtendLease(ctx, it.ID(), g.id, g.cfg.Workers.Lease); err != nil {
			g.log.Warn("handed-over work not run: lease lost", "message_id", it.ID(), "err", err)
			return
		}
	}
	run(ctx, it)
}

// releaseQueued gives back the leases of work still queued at shutdown, so
// that the next start (or another node) runs it at once instead of after
// the leases expire.
func (g *Gateway) releaseQueued(ctx context.Context, h *handoff) {
	if h == nil {
		return
	}
	for {
		select {
		case it := <-h.q:
			h.take()
			if err := g.store.Release(ctx, it.ID(), g.id); err != nil {
				g.log.Warn("lease of queued work not released", "message_id", it.ID(), "err", err)
			}
			h.done(it.ID())
		default:
			return
		}
	}
}
