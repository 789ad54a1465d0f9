package edi

// sepMasks64 returns, for the 64 bytes at p, the bits of the bytes equal to
// sep and to term (bit k for p[k]). In masks_amd64.s.
//
//go:noescape
func sepMasks64(p *byte, sep, term byte) (seps, terms uint64)

// plainMasks64 is sepMasks64 plus odd: the bytes that keep a segment from
// being plain (comp, rep, or outside 0x20..0x7E).
//
//go:noescape
func plainMasks64(p *byte, sep, term, comp, rep byte) (seps, terms, odd uint64)
