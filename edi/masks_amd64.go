package edi

import "golang.org/x/sys/cpu"

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

// indexAVX2 is the loop of Reader.index without findPlain, in one call for
// nblk blocks (AVX2 to classify, BMI1/BMI2/POPCNT to read the masks off).
// In masks_amd64.s; only when useIndexAsm.
//
//go:noescape
func indexAVX2(p *byte, nblk int, keep uint64, sep, term byte, base int32, idx *int32, tix *int32) (n, nt int)

// indexPlainAVX2 is indexAVX2 with findPlain: a tix entry's low bit says
// whether the segment it ends is not plain.
//
//go:noescape
func indexPlainAVX2(p *byte, nblk int, keep uint64, sep, term, comp, rep byte, base int32, idx *int32, tix *int32) (n, nt int)

// useIndexAsm: the CPU has what indexAVX2 needs (a variable so that the
// tests can compare it with the Go loop). x/sys/cpu also checks that the
// OS saves the YMM registers.
var useIndexAsm = cpu.X86.HasAVX2 && cpu.X86.HasBMI1 && cpu.X86.HasBMI2 && cpu.X86.HasPOPCNT
