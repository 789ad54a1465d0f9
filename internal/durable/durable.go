// Package durable holds the two small pieces every on-disk store of edigw
// (spool blobs, outboxes, the directory archive) needs to make a write
// durable and a copy cancellable.
package durable

import (
	"context"
	"io"
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
