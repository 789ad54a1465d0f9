#include "textflag.h"

// Byte-class masks of 64 bytes with SSE2 (part of every amd64 CPU): bit k
// of a mask is set when p[k] is in the class. See masks.go.

// BCAST spreads the low byte of r over all 16 bytes of x.
#define BCAST(r, x) \
	MOVQ r, x; \
	PUNPCKLBW x, x; \
	PUNPCKLWL x, x; \
	PSHUFL $0, x, x

// MASK16 sets dst to the 16-bit mask of bytes of data equal to those of pat
// (scratch: t).
#define MASK16(data, pat, t, dst) \
	MOVO data, t; \
	PCMPEQB pat, t; \
	PMOVMSKB t, dst

// SEP64 ORs into R10 (separators) and R11 (terminators) the masks of the
// 16 bytes at off(SI), shifted to bit shift.
#define SEP64(off, shift) \
	MOVOU off(SI), X4; \
	MASK16(X4, X0, X8, R8); \
	MASK16(X4, X1, X9, R9); \
	SHLQ $shift, R8; \
	SHLQ $shift, R9; \
	ORQ R8, R10; \
	ORQ R9, R11

// func sepMasks64(p *byte, sep, term byte) (seps, terms uint64)
TEXT ·sepMasks64(SB), NOSPLIT, $0-32
	MOVQ p+0(FP), SI
	MOVBQZX sep+8(FP), AX
	MOVBQZX term+9(FP), BX
	BCAST(AX, X0)
	BCAST(BX, X1)
	XORQ R10, R10
	XORQ R11, R11
	SEP64(0, 0)
	SEP64(16, 16)
	SEP64(32, 32)
	SEP64(48, 48)
	MOVQ R10, seps+16(FP)
	MOVQ R11, terms+24(FP)
	RET

// ODD16 sets dst to the 16-bit mask of bytes of data that are comp (X2),
// rep (X3), below 0x20 (X13; signed, so 0x80..0xFF count as below) or 0x7F
// (X14).
#define ODD16(data, t, u, dst) \
	MOVO X13, t; \
	PCMPGTB data, t; \
	MOVO data, u; \
	PCMPEQB X14, u; \
	POR u, t; \
	MOVO data, u; \
	PCMPEQB X2, u; \
	POR u, t; \
	MOVO data, u; \
	PCMPEQB X3, u; \
	POR u, t; \
	PMOVMSKB t, dst

// PLAIN64 is SEP64 plus the odd bytes, ORed into R12.
#define PLAIN64(off, shift) \
	SEP64(off, shift); \
	ODD16(X4, X10, X11, DX); \
	SHLQ $shift, DX; \
	ORQ DX, R12

// func plainMasks64(p *byte, sep, term, comp, rep byte) (seps, terms, odd uint64)
TEXT ·plainMasks64(SB), NOSPLIT, $0-40
	MOVQ p+0(FP), SI
	MOVBQZX sep+8(FP), AX
	MOVBQZX term+9(FP), BX
	BCAST(AX, X0)
	BCAST(BX, X1)
	MOVBQZX comp+10(FP), AX
	MOVBQZX rep+11(FP), BX
	BCAST(AX, X2)
	BCAST(BX, X3)
	MOVQ $0x20, AX
	BCAST(AX, X13)
	MOVQ $0x7F, AX
	BCAST(AX, X14)
	XORQ R10, R10
	XORQ R11, R11
	XORQ R12, R12
	PLAIN64(0, 0)
	PLAIN64(16, 16)
	PLAIN64(32, 32)
	PLAIN64(48, 48)
	MOVQ R10, seps+16(FP)
	MOVQ R11, terms+24(FP)
	MOVQ R12, odd+32(FP)
	RET

// FLAT1 writes base (R10) + the index of the lowest bit of BX at off(DI)
// and clears that bit (ZF set when none is left).
#define FLAT1(off) \
	TZCNTQ BX, R13; \
	ADDL R10, R13; \
	MOVL R13, off(DI); \
	BLSRQ BX, BX

// func indexAVX2(p *byte, nblk int, keep uint64, sep, term byte, base int32, idx *int32, tix *int32) (n, nt int)
//
// The structural index of nblk 64-byte blocks at p (see Reader.index):
// the position (base + offset) of every sep and term byte, in order, to
// idx, and for each term the number of its entry in idx, times 2, plus 1,
// to tix. keep masks the first block. Needs AVX2, BMI1, BMI2 and POPCNT;
// writes up to 64 entries of idx past the last one.
TEXT ·indexAVX2(SB), NOSPLIT, $0-64
	MOVQ p+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVQ keep+16(FP), R11
	MOVBQZX sep+24(FP), AX
	MOVQ AX, X0
	VPBROADCASTB X0, Y0
	MOVBQZX term+25(FP), AX
	MOVQ AX, X1
	VPBROADCASTB X1, Y1
	MOVLQSX base+28(FP), R10
	MOVQ idx+32(FP), DI
	MOVQ tix+40(FP), R8
	XORQ R9, R9
	TESTQ CX, CX
	JZ done

loop:
	VMOVDQU (SI), Y2
	VMOVDQU 32(SI), Y3
	VPCMPEQB Y0, Y2, Y4
	VPCMPEQB Y0, Y3, Y5
	VPCMPEQB Y1, Y2, Y6
	VPCMPEQB Y1, Y3, Y7
	VPMOVMSKB Y4, AX
	VPMOVMSKB Y5, BX
	VPMOVMSKB Y6, DX
	VPMOVMSKB Y7, R13
	SHLQ $32, BX
	SHLQ $32, R13
	ORQ BX, AX
	ORQ R13, DX
	ANDQ R11, DX // terminators
	ANDQ R11, AX
	MOVQ $-1, R11
	ORQ DX, AX // separators and terminators
	JZ next

	// Every position, eight at a time without a test each.
	MOVQ AX, BX
	FLAT1(0)
	FLAT1(4)
	FLAT1(8)
	FLAT1(12)
	FLAT1(16)
	FLAT1(20)
	FLAT1(24)
	FLAT1(28)
	JZ flatdone
	FLAT1(32)
	FLAT1(36)
	FLAT1(40)
	FLAT1(44)
	FLAT1(48)
	FLAT1(52)
	FLAT1(56)
	FLAT1(60)
	JZ flatdone
	LEAQ 64(DI), R12

flatmore:
	TZCNTQ BX, R13
	ADDL R10, R13
	MOVL R13, (R12)
	ADDQ $4, R12
	BLSRQ BX, BX
	JNZ flatmore

flatdone:
	// The terminators: n + the number of entries before each.
	TESTQ DX, DX
	JZ termsdone

terms:
	TZCNTQ DX, BX
	BZHIQ BX, AX, R13
	POPCNTQ R13, R13
	ADDQ R9, R13
	LEAQ 1(R13)(R13*1), R13
	MOVL R13, (R8)
	ADDQ $4, R8
	BLSRQ DX, DX
	JNZ terms

termsdone:
	POPCNTQ AX, R13
	ADDQ R13, R9
	LEAQ (DI)(R13*4), DI

next:
	ADDQ $64, SI
	ADDQ $64, R10
	DECQ CX
	JNZ loop

done:
	VZEROUPPER
	MOVQ R9, n+48(FP)
	SUBQ tix+40(FP), R8
	SHRQ $2, R8
	MOVQ R8, nt+56(FP)
	RET

// ODDMASK sets dst to the 32-bit mask of the bytes of data that are comp
// (Y8), rep (Y9), below 0x20 (Y10; signed, so 0x80..0xFF count as below) or
// 0x7F (Y11). Scratch: Y12, Y13.
#define ODDMASK(data, dst) \
	VPCMPGTB data, Y10, Y12; \
	VPCMPEQB Y11, data, Y13; \
	VPOR Y13, Y12, Y12; \
	VPCMPEQB Y8, data, Y13; \
	VPOR Y13, Y12, Y12; \
	VPCMPEQB Y9, data, Y13; \
	VPOR Y13, Y12, Y12; \
	VPMOVMSKB Y12, dst

// FLATP is FLAT1 for indexPlainAVX2 (the same, a name of its own for
// clarity of the loop below).
#define FLATP(off) FLAT1(off)

// func indexPlainAVX2(p *byte, nblk int, keep uint64, sep, term, comp, rep byte, base int32, idx *int32, tix *int32) (n, nt int)
//
// indexAVX2 for the validator: each tix entry's low bit is set when the
// segment it ends is not plain (holds a comp, rep or a byte outside
// 0x20..0x7E), counting its bytes from the first block's first kept byte.
TEXT ·indexPlainAVX2(SB), NOSPLIT, $0-64
	MOVQ p+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVBQZX sep+24(FP), AX
	MOVQ AX, X0
	VPBROADCASTB X0, Y0
	MOVBQZX term+25(FP), AX
	MOVQ AX, X1
	VPBROADCASTB X1, Y1
	MOVBQZX comp+26(FP), AX
	MOVQ AX, X8
	VPBROADCASTB X8, Y8
	MOVBQZX rep+27(FP), AX
	MOVQ AX, X9
	VPBROADCASTB X9, Y9
	MOVQ $0x20, AX
	MOVQ AX, X10
	VPBROADCASTB X10, Y10
	MOVQ $0x7F, AX
	MOVQ AX, X11
	VPBROADCASTB X11, Y11
	MOVLQSX base+28(FP), R10
	MOVQ idx+32(FP), DI
	MOVQ tix+40(FP), R8
	XORQ R9, R9  // n
	XORQ R11, R11 // carry: odd bytes since the last terminator
	TESTQ CX, CX
	JZ pdone

ploop:
	VMOVDQU (SI), Y2
	VMOVDQU 32(SI), Y3
	ODDMASK(Y2, R12)
	ODDMASK(Y3, BX)
	SHLQ $32, BX
	ORQ BX, R12
	VPCMPEQB Y0, Y2, Y4
	VPCMPEQB Y0, Y3, Y5
	VPCMPEQB Y1, Y2, Y6
	VPCMPEQB Y1, Y3, Y7
	VPMOVMSKB Y4, AX
	VPMOVMSKB Y5, BX
	VPMOVMSKB Y6, DX
	VPMOVMSKB Y7, R13
	SHLQ $32, BX
	SHLQ $32, R13
	ORQ BX, AX
	ORQ R13, DX
	MOVQ keep+16(FP), BX
	ANDQ BX, DX // terminators
	ANDQ BX, AX
	ANDQ BX, R12 // odd bytes
	MOVQ $-1, keep+16(FP)
	ORQ DX, AX // separators and terminators
	JZ pcarry

	MOVQ AX, BX
	FLATP(0)
	FLATP(4)
	FLATP(8)
	FLATP(12)
	FLATP(16)
	FLATP(20)
	FLATP(24)
	FLATP(28)
	JZ pflatdone
	FLATP(32)
	FLATP(36)
	FLATP(40)
	FLATP(44)
	FLATP(48)
	FLATP(52)
	FLATP(56)
	FLATP(60)
	JZ pflatdone
	ADDQ $64, DI // DI is set again below

pflatmore:
	TZCNTQ BX, R13
	ADDL R10, R13
	MOVL R13, (DI)
	ADDQ $4, DI
	BLSRQ BX, BX
	JNZ pflatmore

pflatdone:
	TESTQ DX, DX
	JZ ptermsdone

pterms:
	TZCNTQ DX, BX
	BZHIQ BX, AX, R13
	POPCNTQ R13, R13
	ADDQ R9, R13
	ADDQ R13, R13
	BZHIQ BX, R12, BX // odd bytes before it (those before the last one are cleared)
	ORQ R11, BX
	NEGQ BX // CF: not plain
	ADCQ $0, R13
	MOVL R13, (R8)
	ADDQ $4, R8
	BLSMSKQ DX, BX
	ANDNQ R12, BX, R12 // odd bytes up to this terminator cleared
	XORQ R11, R11
	BLSRQ DX, DX
	JNZ pterms

ptermsdone:
	POPCNTQ AX, R13
	ADDQ R13, R9
	MOVQ idx+32(FP), DI
	LEAQ (DI)(R9*4), DI

pcarry:
	ORQ R12, R11

	ADDQ $64, SI
	ADDQ $64, R10
	DECQ CX
	JNZ ploop

pdone:
	VZEROUPPER
	MOVQ R9, n+48(FP)
	SUBQ tix+40(FP), R8
	SHRQ $2, R8
	MOVQ R8, nt+56(FP)
	RET
