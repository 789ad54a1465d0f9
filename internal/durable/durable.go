// Package durable holds the two small pieces every on-disk store of edigw
// (spool blobs, outboxes, the directory archive) needs to make a write
// durable and a copy cancellable.
package durable

import (
	"context"
	"io"
	"sync"
)

// Reader returns r that stops with ctx's error once ctx is done, so a long
// copy of an upload or archive object can be cancelled.
func Reader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Copy copies src to dst as io.Copy does, stopping once ctx is done, with a
// pooled buffer: io.Copy allocates and zeroes 32 KB per call (a file's
// ReadFrom does too, for a source that is not a file), which for the
// gateway's small acks, documents and archive objects cost more than the
// copy itself.
func Copy(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(writerOnly{dst}, Reader(ctx, src), *buf)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writerOnly hides dst's ReadFrom, which would not use the buffer.
type writerOnly struct{ io.Writer }
