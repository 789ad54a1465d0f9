package edi

import "unsafe"

// The reader finds the separators and terminators of its buffer in 64-byte
// blocks: one call classifies a block's bytes into bit masks (SSE2 on amd64,
// these loops elsewhere), and the positions are read off the masks with a
// trailing-zero count each, into the structural index (Reader.index). On
// CPUs with AVX2 and BMI2, indexAVX2 does the whole loop of the tokenizer's
// index in one call.

// masks64Go is sepMasks64 in plain Go (the reference the tests compare the
// assembly with, and the implementation on other architectures).
func masks64Go(p *byte, sep, term byte) (seps, terms uint64) {
	b := (*[64]byte)(unsafe.Pointer(p))
	for k, c := range b {
		if c == sep {
			seps |= 1 << k
		}
		if c == term {
			terms |= 1 << k
		}
	}
	return seps, terms
}

// plainMasks64Go is plainMasks64 in plain Go.
func plainMasks64Go(p *byte, sep, term, comp, rep byte) (seps, terms, odd uint64) {
	seps, terms = masks64Go(p, sep, term)
	b := (*[64]byte)(unsafe.Pointer(p))
	for k, c := range b {
		if c == comp || c == rep || c < 0x20 || c > 0x7E {
			odd |= 1 << k
		}
	}
	return seps, terms, odd
}
