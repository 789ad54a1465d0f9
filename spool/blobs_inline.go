package spool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// InlineMax is the largest blob the gateway keeps in the spool's database
// (NewFile.Inline, NewInterchange.Inline) instead of the blob store: most
// uploads, every ack and every document's JSON. A blob in the store is a
// file written and fsync'd, then its directory fsync'd, about three
// synchronous writes; an inline blob rides in the record's own commit,
// which the writer shares among everything committed at the same time
// (bench e2e: see docs/benchmarks.md). SQLite reads and writes blobs of
// this size at least as fast as the file system does.
const InlineMax = 64 << 10

// RefOf is the reference of b.
func RefOf(b []byte) BlobRef {
	sum := sha256.Sum256(b)
	return BlobRef{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b))}
}

// InlineReader reads the small blobs a [Store] keeps (see InlineMax).
type InlineReader interface {
	// InlineBlob returns the bytes of the inline blob with this SHA-256, or
	// ErrNotFound.
	InlineBlob(ctx context.Context, sha256 string) ([]byte, error)
}

// Tiered is the gateway's blob store: small blobs that the spool keeps
// inline (committed with their records), everything else in Blobs. Reads
// look up a small reference in the spool first and fall back to Blobs (a
// blob stored before it was kept inline, or Put there); writes go to Blobs.
type Tiered struct {
	Inline InlineReader
	Blobs  Blobs
}

// Put implements [Blobs]: it stores in t.Blobs.
func (t *Tiered) Put(ctx context.Context, r io.Reader) (BlobRef, error) { return t.Blobs.Put(ctx, r) }

// Open implements [Blobs].
func (t *Tiered) Open(ctx context.Context, ref BlobRef) (io.ReadCloser, error) {
	if ref.Size <= InlineMax {
		b, err := t.inline(ctx, ref)
		switch {
		case err == nil:
			return io.NopCloser(bytes.NewReader(b)), nil
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
	}
	return t.Blobs.Open(ctx, ref)
}

func (t *Tiered) inline(ctx context.Context, ref BlobRef) ([]byte, error) {
	if err := ref.Check(); err != nil {
		return nil, err
	}
	b, err := t.Inline.InlineBlob(ctx, ref.SHA256)
	if err != nil {
		return nil, err
	}
	if got := RefOf(b); got != ref {
		return nil, fmt.Errorf("spool: inline blob %s: the spool holds %s: %w", ref, got, ErrCorrupt)
	}
	return b, nil
}

// Stat implements [Blobs].
func (t *Tiered) Stat(ctx context.Context, sum string) (BlobRef, error) {
	ref, err := t.Blobs.Stat(ctx, sum)
	if !errors.Is(err, ErrNotFound) {
		return ref, err
	}
	b, ierr := t.Inline.InlineBlob(ctx, sum)
	if ierr != nil {
		if errors.Is(ierr, ErrNotFound) {
			return BlobRef{}, err
		}
		return BlobRef{}, ierr
	}
	return BlobRef{SHA256: sum, Size: int64(len(b))}, nil
}

// Path is the file holding ref, when it is one of a [Local] store (for a
// caller that links it instead of copying it); an inline blob has none.
func (t *Tiered) Path(ref BlobRef) (string, error) {
	l, ok := t.Blobs.(*Local)
	if !ok {
		return "", fmt.Errorf("spool: blob %s: not in a local directory: %w", ref, ErrNotFound)
	}
	return l.Path(ref)
}

// Adopt takes over the file f as a blob when Blobs is a [Local] store (a
// hard link instead of a copy), and Puts it otherwise.
func (t *Tiered) Adopt(ctx context.Context, f *os.File) (BlobRef, error) {
	if l, ok := t.Blobs.(*Local); ok {
		return l.Adopt(ctx, f)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return BlobRef{}, fmt.Errorf("spool: adopt %s: %w", f.Name(), err)
	}
	return t.Blobs.Put(ctx, f)
}
