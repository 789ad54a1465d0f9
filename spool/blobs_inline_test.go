package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeInline is an InlineReader over a map, counting lookups.
type fakeInline struct {
	blobs map[string][]byte
	calls atomic.Int32
}

func (f *fakeInline) InlineBlob(_ context.Context, sum string) ([]byte, error) {
	f.calls.Add(1)
	if b, ok := f.blobs[sum]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("inline %s: %w", sum, ErrNotFound)
}

func readAll(t *testing.T, b Blobs, ref BlobRef) ([]byte, error) {
	t.Helper()
	r, err := b.Open(t.Context(), ref)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestTieredReadsInlineThenFiles(t *testing.T) {
	local, _ := newLocal(t)
	small := []byte("ISA*small~")
	inline := &fakeInline{blobs: map[string][]byte{RefOf(small).SHA256: small}}
	tr := &Tiered{Inline: inline, Blobs: local}

	if got, err := readAll(t, tr, RefOf(small)); err != nil || !bytes.Equal(got, small) {
		t.Errorf("inline blob: %q %v", got, err)
	}
	// Small but only in the file store (stored before blobs were inline).
	old := []byte("ISA*stored as a file~")
	oldRef, err := local.PutBytes(t.Context(), old)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, tr, oldRef); err != nil || !bytes.Equal(got, old) {
		t.Errorf("file blob: %q %v", got, err)
	}
	if p, err := tr.Path(oldRef); err != nil || !strings.HasSuffix(p, oldRef.SHA256) {
		t.Errorf("Path of a file blob: %q %v", p, err)
	}
	if ref, err := tr.Stat(t.Context(), RefOf(small).SHA256); err != nil || ref != RefOf(small) {
		t.Errorf("Stat of an inline blob: %v %v", ref, err)
	}
	// A large blob is never looked up inline.
	big := bytes.Repeat([]byte("x"), InlineMax+1)
	bigRef, err := tr.Put(t.Context(), bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	before := inline.calls.Load()
	if got, err := readAll(t, tr, bigRef); err != nil || !bytes.Equal(got, big) {
		t.Errorf("large blob: %d bytes %v", len(got), err)
	}
	if inline.calls.Load() != before {
		t.Error("a blob larger than InlineMax was looked up in the spool")
	}
	if _, err := readAll(t, tr, RefOf([]byte("absent"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("absent blob: %v, want ErrNotFound", err)
	}
	// The spool answering other bytes for a hash is corruption, not data.
	inline.blobs[RefOf([]byte("wanted")).SHA256] = []byte("other!")
	if _, err := readAll(t, tr, RefOf([]byte("wanted"))); !errors.Is(err, ErrCorrupt) {
		t.Errorf("inline blob with other bytes: %v, want ErrCorrupt", err)
	}
}

func TestTieredKeepServesFromMemoryWithinBound(t *testing.T) {
	local, _ := newLocal(t)
	inline := &fakeInline{blobs: map[string][]byte{}}
	tr := &Tiered{Inline: inline, Blobs: local}
	first := []byte("first blob")
	ref := tr.Keep(first)
	inline.blobs[ref.SHA256] = first // committed with its record
	if got, err := readAll(t, tr, ref); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("kept blob: %q %v", got, err)
	}
	if n := inline.calls.Load(); n != 0 {
		t.Errorf("a kept blob was read from the spool (%d lookups)", n)
	}
	if _, err := tr.Path(ref); err == nil {
		t.Error("Path of an inline blob: no error")
	}
	// Past recentMax the oldest is forgotten and read from the spool again.
	chunk := bytes.Repeat([]byte("y"), InlineMax)
	for i := 0; i <= recentMax/InlineMax; i++ {
		tr.Keep(append(fmt.Appendf(nil, "%d", i), chunk[:InlineMax-8]...))
	}
	if tr.size > recentMax {
		t.Errorf("remembers %d bytes, more than %d", tr.size, recentMax)
	}
	if got, err := readAll(t, tr, ref); err != nil || !bytes.Equal(got, first) || inline.calls.Load() != 1 {
		t.Errorf("forgotten blob: %q %v after %d lookups, want it read from the spool once", got, err, inline.calls.Load())
	}
}
