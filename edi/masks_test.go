package edi

import (
	"math/rand/v2"
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
