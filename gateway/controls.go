package gateway

import (
	"context"
	"sync"

	"github.com/edigw/edigw/spool"
)

// controlBlocks hands out control numbers from blocks reserved in the
// spool, one write per block instead of one per number. Numbers stay
// unique across restarts and nodes (a block is never handed out twice);
// what a node has not used when it stops is skipped, which X12 receivers
// accept: they check for reuse, not for gaps.
type controlBlocks struct {
	store spool.Counters
	size  int
	mu    sync.Mutex
	open  map[[2]string]*controlBlock
}

type controlBlock struct{ next, end int64 } // end exclusive

func newControlBlocks(store spool.Counters, size int) *controlBlocks {
	return &controlBlocks{store: store, size: size, open: map[[2]string]*controlBlock{}}
}

// next returns the next number of the counter (partner, name).
func (c *controlBlocks) next(ctx context.Context, partner, name string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]string{partner, name}
	b := c.open[k]
	if b == nil || b.next == b.end {
		first, err := c.store.ReserveControls(ctx, partner, name, c.size)
		if err != nil {
			return 0, err
		}
		b = &controlBlock{next: first, end: first + int64(c.size)}
		c.open[k] = b
	}
	b.next++
	return b.next - 1, nil
}
