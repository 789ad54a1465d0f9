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

func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
func xgetbv() (eax, edx uint32)

// useIndexAsm: the CPU has what indexAVX2 needs (a variable so that the
// tests can compare it with the Go loop).
var useIndexAsm = hasAVX2BMI()

func hasAVX2BMI() bool {
	if maxID, _, _, _ := cpuid(0, 0); maxID < 7 {
		return false
	}
	const popcnt, osxsave, avx = 1 << 23, 1 << 27, 1 << 28
	if _, _, ecx, _ := cpuid(1, 0); ecx&(popcnt|osxsave|avx) != popcnt|osxsave|avx {
		return false
	}
	if eax, _ := xgetbv(); eax&6 != 6 { // the OS saves the XMM and YMM state
		return false
	}
	const bmi1, avx2, bmi2 = 1 << 3, 1 << 5, 1 << 8
	_, ebx, _, _ := cpuid(7, 0)
	return ebx&(bmi1|avx2|bmi2) == bmi1|avx2|bmi2
}
