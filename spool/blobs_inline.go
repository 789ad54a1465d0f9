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
	"sync"
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
	sum := sumOf(b)
	return BlobRef{SHA256: hex.EncodeToString(sum), Size: int64(len(b))}
}

// inlineKey is the key of the inline blob with the hex SHA-256 sum.
func inlineKey(sum string) ([]byte, error) {
	key, err := hex.DecodeString(sum)
	if err != nil || len(key) != sha256.Size {
		return nil, fmt.Errorf("spool: inline blob %q: %w: not a SHA-256", sum, ErrInvalid)
	}
	return key, nil
}

// sumOf is b's SHA-256, the key of an inline blob.
func sumOf(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:]
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
//
// It also remembers the last few MB of inline blobs its owner made (Keep):
// the stage that records an upload's interchange reads the upload, then
// archives it with its ack and JSON and puts the ack in the outbox, all
// within milliseconds; from memory, that is no query each.
type Tiered struct {
	Inline InlineReader
	Blobs  Blobs

	mu     sync.Mutex
	recent map[string][]byte // by SHA-256
	order  []string          // oldest first
	size   int               // bytes in recent
}

// recentMax bounds the bytes Tiered remembers.
const recentMax = 8 << 20

// Keep returns the reference of b, a small blob about to be committed
// inline (NewFile.Inline, NewInterchange.Inline), and remembers b for a
// while for Open. b must not be changed afterwards.
func (t *Tiered) Keep(b []byte) BlobRef {
	ref := RefOf(b)
	if len(b) > InlineMax {
		return ref
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.recent == nil {
		t.recent = map[string][]byte{}
	}
	if _, ok := t.recent[ref.SHA256]; ok {
		return ref
	}
	t.recent[ref.SHA256] = b
	t.order = append(t.order, ref.SHA256)
	t.size += len(b)
	for t.size > recentMax {
		old := t.order[0]
		t.order = t.order[1:]
		t.size -= len(t.recent[old])
		delete(t.recent, old)
	}
	return ref
}

func (t *Tiered) remembered(ref BlobRef) ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := t.recent[ref.SHA256]
	return b, ok && int64(len(b)) == ref.Size
}

// Put implements [Blobs]: it stores in t.Blobs.
func (t *Tiered) Put(ctx context.Context, r io.Reader) (BlobRef, error) { return t.Blobs.Put(ctx, r) }

// Open implements [Blobs].
func (t *Tiered) Open(ctx context.Context, ref BlobRef) (io.ReadCloser, error) {
	if ref.Size <= InlineMax {
		if b, ok := t.remembered(ref); ok {
			return io.NopCloser(bytes.NewReader(b)), nil
		}
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
	if _, inline := t.remembered(ref); inline || !ok {
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

// PutBytes stores b in t.Blobs, as [PutBytes] does.
func (t *Tiered) PutBytes(ctx context.Context, b []byte) (BlobRef, error) {
	return PutBytes(ctx, t.Blobs, b)
}
