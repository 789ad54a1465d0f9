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

// func sepMasks64(p *byte, sep, term byte) (seps, terms uint64)
TEXT ·sepMasks64(SB), NOSPLIT, $0-32
	MOVQ p+0(FP), SI
	MOVBQZX sep+8(FP), AX
	MOVBQZX term+9(FP), BX
	BCAST(AX, X0)
	BCAST(BX, X1)
	XORQ R10, R10 // seps
	XORQ R11, R11 // terms
	MOVOU 0(SI), X4
	MOVOU 16(SI), X5
	MOVOU 32(SI), X6
	MOVOU 48(SI), X7

	MASK16(X4, X0, X8, R8)
	MASK16(X4, X1, X9, R9)
	ORQ R8, R10
	ORQ R9, R11

	MASK16(X5, X0, X8, R8)
	MASK16(X5, X1, X9, R9)
	SHLQ $16, R8
	SHLQ $16, R9
	ORQ R8, R10
	ORQ R9, R11

	MASK16(X6, X0, X8, R8)
	MASK16(X6, X1, X9, R9)
	SHLQ $32, R8
	SHLQ $32, R9
	ORQ R8, R10
	ORQ R9, R11

	MASK16(X7, X0, X8, R8)
	MASK16(X7, X1, X9, R9)
	SHLQ $48, R8
	SHLQ $48, R9
	ORQ R8, R10
	ORQ R9, R11

	MOVQ R10, seps+16(FP)
	MOVQ R11, terms+24(FP)
	RET

// ODD16 sets dst to the 16-bit mask of bytes of data that are comp, rep,
// below 0x20 (signed: 0x80..0xFF count as below) or 0x7F.
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

	MOVOU 0(SI), X4
	MASK16(X4, X0, X8, R8)
	MASK16(X4, X1, X9, R9)
	ODD16(X4, X10, X11, DX)
	ORQ R8, R10
	ORQ R9, R11
	ORQ DX, R12

	MOVOU 16(SI), X4
	MASK16(X4, X0, X8, R8)
	MASK16(X4, X1, X9, R9)
	ODD16(X4, X10, X11, DX)
	SHLQ $16, R8
	SHLQ $16, R9
	SHLQ $16, DX
	ORQ R8, R10
	ORQ R9, R11
	ORQ DX, R12

	MOVOU 32(SI), X4
	MASK16(X4, X0, X8, R8)
	MASK16(X4, X1, X9, R9)
	ODD16(X4, X10, X11, DX)
	SHLQ $32, R8
	SHLQ $32, R9
	SHLQ $32, DX
	ORQ R8, R10
	ORQ R9, R11
	ORQ DX, R12

	MOVOU 48(SI), X4
	MASK16(X4, X0, X8, R8)
	MASK16(X4, X1, X9, R9)
	ODD16(X4, X10, X11, DX)
	SHLQ $48, R8
	SHLQ $48, R9
	SHLQ $48, DX
	ORQ R8, R10
	ORQ R9, R11
	ORQ DX, R12

	MOVQ R10, seps+16(FP)
	MOVQ R11, terms+24(FP)
	MOVQ R12, odd+32(FP)
	RET
