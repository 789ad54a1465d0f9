package edi

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// The word-at-a-time scans must agree with a byte loop on every input,
// whatever the byte values and wherever the separators fall in a word.
func TestSWARScansMatchByteLoops(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("AB*~:^\x00\x1f\x7f\xff \n~*")
	d := Delimiters{Element: '*', Component: ':', Repetition: '^', Segment: '~'}
	for iter := 0; iter < 20000; iter++ {
		raw := make([]byte, rng.IntN(40))
		for i := range raw {
			raw[i] = alphabet[rng.IntN(len(alphabet))]
		}
		// splitElements against a byte loop
		ends := make([]int32, len(raw)+1)
		n := splitElements(ends, raw, '*')
		var want []int32
		for i, c := range raw {
			if c == '*' {
				want = append(want, int32(i))
			}
		}
		want = append(want, int32(len(raw)))
		if !slices.Equal(ends[:n+1], want) {
			t.Fatalf("splitElements(%q) = %v, want %v", raw, ends[:n+1], want)
		}
		// plainSegment against a byte loop, with and without a repetition separator
		for _, dd := range []Delimiters{d, {Element: '*', Component: ':', Segment: '~'}} {
			plain := true
			for _, c := range raw {
				if c == dd.Component || (dd.Repetition != 0 && c == dd.Repetition) || c < 0x20 || c > 0x7e {
					plain = false
				}
			}
			if got := plainSegment(raw, dd); got != plain {
				t.Fatalf("plainSegment(%q, rep %q) = %v, want %v", raw, dd.Repetition, got, plain)
			}
		}
		// scanSegment (fast path) against IndexByte + the byte loop
		r := &Reader{buf: raw, end: len(raw), MaxSegment: DefaultMaxSegment, delim: d, seg: Segment{ends: make([]int32, 0, 4)}}
		e, ns := r.scanSegment()
		term := bytes.IndexByte(raw, '~')
		if e < 0 {
			// only allowed when the terminator is not in the part read by whole words
			if term >= 0 && term < len(raw)/8*8 {
				t.Fatalf("scanSegment(%q) missed the terminator at %d", raw, term)
			}
			continue
		}
		if e != term {
			t.Fatalf("scanSegment(%q) = end %d, want %d", raw, e, term)
		}
		var wantEnds []int32
		for i, c := range raw[:term] {
			if c == '*' {
				wantEnds = append(wantEnds, int32(i))
			}
		}
		wantEnds = append(wantEnds, int32(term))
		if got := r.seg.ends[:ns+1]; !slices.Equal(got, wantEnds) {
			t.Fatalf("scanSegment(%q) ends = %v, want %v", raw, got, wantEnds)
		}
	}
}
