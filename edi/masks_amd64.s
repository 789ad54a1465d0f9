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
