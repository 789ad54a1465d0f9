package edi

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// The block masks agree with a byte loop on random bytes, with delimiters
// drawn from the usual ones, the binary ones and any byte at all.
func TestBlockMasks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	delims := []byte{'*', '~', ':', '^', '>', '|', '\n', 0x1C, 0x1D, 0x1E, 0x1F, 0x85, 0x00, 0xFF, 0x7F, 0x20}
	buf := make([]byte, 64+7)
	for round := range 20000 {
		for i := range buf {
			switch rng.IntN(4) {
			case 0:
				buf[i] = byte(rng.IntN(256))
			default:
				buf[i] = delims[rng.IntN(len(delims))]
			}
		}
		pick := func() byte {
			if rng.IntN(3) == 0 {
				return byte(rng.IntN(256))
			}
			return delims[rng.IntN(len(delims))]
		}
		sep, term, comp, rep := pick(), pick(), pick(), pick()
		p := &buf[round%8] // unaligned starts too
		s1, t1 := sepMasks64(p, sep, term)
		s2, t2 := masks64Go(p, sep, term)
		if s1 != s2 || t1 != t2 {
			t.Fatalf("sepMasks64(%q, %q): %x %x, want %x %x", sep, term, s1, t1, s2, t2)
		}
		s1, t1, o1 := plainMasks64(p, sep, term, comp, rep)
		s2, t2, o2 := plainMasks64Go(p, sep, term, comp, rep)
		if s1 != s2 || t1 != t2 || o1 != o2 {
			t.Fatalf("plainMasks64(%q, %q, %q, %q): %x %x %x, want %x %x %x", sep, term, comp, rep, s1, t1, o1, s2, t2, o2)
		}
	}
}

// Segment after segment through one buffer, as Next reads them, the block
// scans (with their kept masks) find what a byte loop finds: the terminator,
// the separators before it and whether the segment is plain.
func TestBlockScansMatchByteLoops(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("AB01*~:^ \x00\x1f\x7f\xff")
	d := Delimiters{Element: '*', Component: ':', Repetition: '^', Segment: '~'}
	for iter := 0; iter < 3000; iter++ {
		buf := make([]byte, 64+rng.IntN(600))
		for i := range buf {
			switch {
			case rng.IntN(40) == 0:
				buf[i] = '~'
			case rng.IntN(6) == 0:
				buf[i] = '*'
			case rng.IntN(4) == 0:
				buf[i] = alphabet[rng.IntN(len(alphabet))]
			default:
				buf[i] = 'A' + byte(rng.IntN(26))
			}
		}
		for _, plain := range []bool{false, true} {
			r := &Reader{buf: buf, end: len(buf), MaxSegment: DefaultMaxSegment, delim: d, seg: Segment{ends: make([]int32, 0, 4)}, findPlain: plain}
			r.beg = rng.IntN(8)
			for r.beg < len(buf) {
				var e, n int
				if plain {
					e, n = r.scanSegmentPlain()
				} else {
					e, n = r.scanSegment()
				}
				term := bytes.IndexByte(buf[r.beg:], '~')
				if e < 0 {
					// Allowed only near the end, where neither a block nor a word fits.
					if term >= 0 && r.beg+term+8 <= len(buf)-8 {
						t.Fatalf("iter %d: missed the terminator at %d (segment from %d, buffer %d)", iter, r.beg+term, r.beg, len(buf))
					}
					break
				}
				if e != r.beg+term {
					t.Fatalf("iter %d: end %d, want %d", iter, e, r.beg+term)
				}
				var want []int32
				isPlain := true
				for i, c := range buf[r.beg:e] {
					if c == '*' {
						want = append(want, int32(i))
					}
					if c == ':' || c == '^' || c < 0x20 || c > 0x7e {
						isPlain = false
					}
				}
				want = append(want, int32(e-r.beg))
				if got := r.seg.ends[:n+1]; !slices.Equal(got, want) {
					t.Fatalf("iter %d: segment %q: ends %v, want %v", iter, buf[r.beg:e], got, want)
				}
				if plain && r.seg.plain != isPlain {
					t.Fatalf("iter %d: segment %q: plain %v, want %v", iter, buf[r.beg:e], r.seg.plain, isPlain)
				}
				r.beg = e + 1
			}
		}
	}
}
