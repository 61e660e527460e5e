/*
 * rv64f-misc.S - F extension non-arithmetic instructions: sign injection,
 * min/max, comparisons, classification, moves, loads/stores, NaN-boxing.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 11 (F):
 *  - 11.6 FSGNJ/FSGNJN/FSGNJX: result = rs1 with the sign of rs2 / ~rs2 /
 *    rs1^rs2; no flags, NaN payloads untouched (they are not arithmetic).
 *  - 11.6 FMIN/FMAX (IEEE 754-2019 minimumNumber/maximumNumber as of F 2.2):
 *    -0.0 < +0.0; a single NaN operand returns the other operand; two NaNs
 *    return the canonical NaN; a signaling NaN operand raises NV.
 *  - 11.8 FEQ/FLT/FLE write 0/1 to an integer register; NaN operands give 0;
 *    FEQ raises NV only for signaling NaNs, FLT/FLE for any NaN.
 *  - 11.9 FCLASS: bit 0 -inf, 1 -normal, 2 -subnormal, 3 -0, 4 +0,
 *    5 +subnormal, 6 +normal, 7 +inf, 8 sNaN, 9 qNaN.
 *  - 11.5/11.7 FLW/FSW/FMV.X.W/FMV.W.X and 12.2 NaN boxing: transfers into
 *    the 64-bit f registers NaN-box (upper 32 bits all ones), transfers out
 *    take the low 32 bits; any other single-precision operation treats an
 *    input that is not properly boxed as the canonical NaN.
 *
 * Check numbers:
 *     1-36    FSGNJ / FSGNJN / FSGNJX (no flags, NaN payloads kept)
 *    37-84    FMIN / FMAX: -0 < +0, one NaN operand -> the other, both NaN -> canonical NaN, sNaN raises NV
 *    85-132   FEQ / FLT / FLE: -0 == +0; NaN compares false; FLT/FLE signal NV on any NaN, FEQ only on sNaN
 *   133-144   FCLASS: one value of each of the 10 classes
 *  145-154  FMV.W.X / FLW NaN-box their result; FMV.X.W sign-extends and keeps
 *           NaN payloads; FSW stores the low 32 bits; no flags
 *  155-173  inputs that are not properly NaN-boxed (upper 32 bits not all
 *           ones) are seen as the canonical NaN by arithmetic, sign
 *           injection, classify, compare, min/max and conversions, while
 *           the transfer instructions FMV.X.W and FSW move the low 32 bits
 */
#include "keel_test.h"

#define NV 0x10
#define DZ 0x08
#define OF 0x04
#define UF 0x02
#define NX 0x01

.macro LOADF freg, val
    li t0, \val
    fmv.w.x \freg, t0
.endm

/* sign injection: n = result bits, n+1 = fflags (must stay 0) */
.macro FSGN n, op, a, b, exp
    LOADF fa1, \a
    LOADF fa2, \b
    fsflags zero
    \op fa0, fa1, fa2
    frflags a1
    fmv.x.d a0, fa0
    CHECK \n, a0, 0xffffffff00000000 | \exp
    CHECK \n+1, a1, 0
.endm

/* fmin/fmax: n = result bits, n+1 = fflags */
.macro FMINMAX n, op, a, b, exp, fl
    LOADF fa1, \a
    LOADF fa2, \b
    fsflags zero
    \op fa0, fa1, fa2
    frflags a1
    fmv.x.d a0, fa0
    CHECK \n, a0, 0xffffffff00000000 | \exp
    CHECK \n+1, a1, \fl
.endm

/* compare: n = integer result, n+1 = fflags */
.macro FCMP n, op, a, b, exp, fl
    LOADF fa1, \a
    LOADF fa2, \b
    fsflags zero
    \op a0, fa1, fa2
    frflags a1
    CHECK \n, a0, \exp
    CHECK \n+1, a1, \fl
.endm

.macro FCLASS n, op, a, exp
    LOADF fa1, \a
    \op a0, fa1
    CHECK \n, a0, \exp
.endm

keel_main:
    li t0, MSTATUS_FS_INITIAL
    csrs mstatus, t0

    /* ---- FSGNJ / FSGNJN / FSGNJX (no flags, NaN payloads kept) ---- */
    FSGN 1, fsgnj.s, 0x3f800000, 0xc0000000, 0xbf800000
    FSGN 3, fsgnj.s, 0xbf800000, 0x40000000, 0x3f800000
    FSGN 5, fsgnj.s, 0xbf800000, 0xc0000000, 0xbf800000
    FSGN 7, fsgnj.s, 0x3f800000, 0x40000000, 0x3f800000
    FSGN 9, fsgnj.s, 0x7f80003d, 0xbf800000, 0xff80003d
    FSGN 11, fsgnj.s, 0xffc0005a, 0x3f800000, 0x7fc0005a
    FSGN 13, fsgnjn.s, 0x3f800000, 0xc0000000, 0x3f800000
    FSGN 15, fsgnjn.s, 0xbf800000, 0x40000000, 0xbf800000
    FSGN 17, fsgnjn.s, 0xbf800000, 0xc0000000, 0x3f800000
    FSGN 19, fsgnjn.s, 0x3f800000, 0x40000000, 0xbf800000
    FSGN 21, fsgnjn.s, 0x7f80003d, 0xbf800000, 0x7f80003d
    FSGN 23, fsgnjn.s, 0xffc0005a, 0x3f800000, 0xffc0005a
    FSGN 25, fsgnjx.s, 0x3f800000, 0xc0000000, 0xbf800000
    FSGN 27, fsgnjx.s, 0xbf800000, 0x40000000, 0xbf800000
    FSGN 29, fsgnjx.s, 0xbf800000, 0xc0000000, 0x3f800000
    FSGN 31, fsgnjx.s, 0x3f800000, 0x40000000, 0x3f800000
    FSGN 33, fsgnjx.s, 0x7f80003d, 0xbf800000, 0xff80003d
    FSGN 35, fsgnjx.s, 0xffc0005a, 0x3f800000, 0xffc0005a

    /* ---- FMIN / FMAX: -0 < +0, one NaN operand -> the other, both NaN -> canonical NaN, sNaN raises NV ---- */
    FMINMAX 37, fmin.s, 0x3f800000, 0x40000000, 0x3f800000, 0
    FMINMAX 39, fmin.s, 0x40000000, 0x3f800000, 0x3f800000, 0
    FMINMAX 41, fmin.s, 0xbf800000, 0xc0000000, 0xc0000000, 0
    FMINMAX 43, fmin.s, 0x80000000, 0x00000000, 0x80000000, 0
    FMINMAX 45, fmin.s, 0x00000000, 0x80000000, 0x80000000, 0
    FMINMAX 47, fmin.s, 0x7fc0005a, 0x3f800000, 0x3f800000, 0
    FMINMAX 49, fmin.s, 0x3f800000, 0x7fc0005a, 0x3f800000, 0
    FMINMAX 51, fmin.s, 0x7f800001, 0x3f800000, 0x3f800000, NV
    FMINMAX 53, fmin.s, 0x7fc00000, 0x7fc0005a, 0x7fc00000, 0
    FMINMAX 55, fmin.s, 0x7f800001, 0x7fc00000, 0x7fc00000, NV
    FMINMAX 57, fmin.s, 0xff800000, 0x3f800000, 0xff800000, 0
    FMINMAX 59, fmin.s, 0x7f800000, 0xc0400000, 0xc0400000, 0
    FMINMAX 61, fmax.s, 0x3f800000, 0x40000000, 0x40000000, 0
    FMINMAX 63, fmax.s, 0x40000000, 0x3f800000, 0x40000000, 0
    FMINMAX 65, fmax.s, 0xbf800000, 0xc0000000, 0xbf800000, 0
    FMINMAX 67, fmax.s, 0x80000000, 0x00000000, 0x00000000, 0
    FMINMAX 69, fmax.s, 0x00000000, 0x80000000, 0x00000000, 0
    FMINMAX 71, fmax.s, 0x7fc0005a, 0x3f800000, 0x3f800000, 0
    FMINMAX 73, fmax.s, 0x3f800000, 0x7fc0005a, 0x3f800000, 0
    FMINMAX 75, fmax.s, 0x7f800001, 0x3f800000, 0x3f800000, NV
    FMINMAX 77, fmax.s, 0x7fc00000, 0x7fc0005a, 0x7fc00000, 0
    FMINMAX 79, fmax.s, 0x7f800001, 0x7fc00000, 0x7fc00000, NV
    FMINMAX 81, fmax.s, 0xff800000, 0x3f800000, 0x3f800000, 0
    FMINMAX 83, fmax.s, 0x7f800000, 0xc0400000, 0x7f800000, 0

    /* ---- FEQ / FLT / FLE: -0 == +0; NaN compares false; FLT/FLE signal NV on any NaN, FEQ only on sNaN ---- */
    FCMP 85, feq.s, 0x3f800000, 0x3f800000, 1, 0
    FCMP 87, feq.s, 0x3f800000, 0x40000000, 0, 0
    FCMP 89, feq.s, 0x40000000, 0x3f800000, 0, 0
    FCMP 91, feq.s, 0x80000000, 0x00000000, 1, 0
    FCMP 93, feq.s, 0x7fc00000, 0x3f800000, 0, 0
    FCMP 95, feq.s, 0x3f800000, 0x7fc0005a, 0, 0
    FCMP 97, feq.s, 0x7f800001, 0x3f800000, 0, NV
    FCMP 99, feq.s, 0xff800000, 0x7f800000, 0, 0
    FCMP 101, flt.s, 0x3f800000, 0x3f800000, 0, 0
    FCMP 103, flt.s, 0x3f800000, 0x40000000, 1, 0
    FCMP 105, flt.s, 0x40000000, 0x3f800000, 0, 0
    FCMP 107, flt.s, 0x80000000, 0x00000000, 0, 0
    FCMP 109, flt.s, 0x7fc00000, 0x3f800000, 0, NV
    FCMP 111, flt.s, 0x3f800000, 0x7fc0005a, 0, NV
    FCMP 113, flt.s, 0x7f800001, 0x3f800000, 0, NV
    FCMP 115, flt.s, 0xff800000, 0x7f800000, 1, 0
    FCMP 117, fle.s, 0x3f800000, 0x3f800000, 1, 0
    FCMP 119, fle.s, 0x3f800000, 0x40000000, 1, 0
    FCMP 121, fle.s, 0x40000000, 0x3f800000, 0, 0
    FCMP 123, fle.s, 0x80000000, 0x00000000, 1, 0
    FCMP 125, fle.s, 0x7fc00000, 0x3f800000, 0, NV
    FCMP 127, fle.s, 0x3f800000, 0x7fc0005a, 0, NV
    FCMP 129, fle.s, 0x7f800001, 0x3f800000, 0, NV
    FCMP 131, fle.s, 0xff800000, 0x7f800000, 1, 0

    /* ---- FCLASS: one value of each of the 10 classes ---- */
    FCLASS 133, fclass.s, 0xff800000, 1
    FCLASS 134, fclass.s, 0xbfc00000, 2
    FCLASS 135, fclass.s, 0x807fffff, 4
    FCLASS 136, fclass.s, 0x80000000, 8
    FCLASS 137, fclass.s, 0x00000000, 16
    FCLASS 138, fclass.s, 0x00000001, 32
    FCLASS 139, fclass.s, 0x3fc00000, 64
    FCLASS 140, fclass.s, 0x7f800000, 128
    FCLASS 141, fclass.s, 0x7f80003d, 256
    FCLASS 142, fclass.s, 0x7fc00000, 512
    FCLASS 143, fclass.s, 0xffc0005a, 512
    FCLASS 144, fclass.s, 0x80800000, 2


    /* ---- NaN-boxing by the transfer instructions ---- */
    li a1, 0x123456783f800000
    fmv.w.x fa0, a1                         /* upper bits of rs1 ignored */
    fmv.x.d a0, fa0
    CHECK 145, a0, 0xffffffff3f800000
    LOADF fa0, 0xbf800000
    fmv.x.w a0, fa0                         /* bit 31 sign-extended */
    CHECK 146, a0, 0xffffffffbf800000
    LOADF fa0, 0x3f800000
    fmv.x.w a0, fa0
    CHECK 147, a0, 0x3f800000
    fsflags zero
    LOADF fa0, 0x7f800001                   /* sNaN: moved bit-exactly */
    fmv.x.w a0, fa0
    frflags a1
    CHECK 148, a0, 0x7f800001
    CHECK 149, a1, 0
    la s0, fbuf
    flw fa0, 0(s0)                          /* 0xbfc00000 */
    fmv.x.d a0, fa0
    CHECK 150, a0, 0xffffffffbfc00000
    flw fa0, 4(s0)                          /* sNaN 0x7f80dead */
    frflags a1
    fmv.x.d a0, fa0
    CHECK 151, a0, 0xffffffff7f80dead
    CHECK 152, a1, 0
    LOADF fa0, 0x40490fdb
    fsw fa0, 8(s0)
    ld a0, 8(s0)                            /* word 8 written, word 12 kept */
    CHECK 153, a0, 0x5a5a5a5a40490fdb
    ld a0, 16(s0)
    CHECK 154, a0, 0xa5a5a5a5a5a5a5a5

    /* ---- improperly NaN-boxed inputs read as the canonical NaN ---- */
    li a1, 0x000000003f800000               /* "1.0" without its box */
    fmv.d.x fs0, a1
    li a1, 0xfffffffe3f800000               /* one box bit clear */
    fmv.d.x fs1, a1
    LOADF fa2, 0x3f800000                   /* properly boxed 1.0 */
    LOADF fa3, 0xbf800000                   /* properly boxed -1.0 */
    fsflags zero
    fadd.s fa0, fs0, fa2
    frflags a1
    fmv.x.d a0, fa0
    CHECK 155, a0, 0xffffffff7fc00000
    CHECK 156, a1, 0                        /* canonical NaN is quiet */
    fsgnj.s fa0, fs1, fs1                   /* fmv.s */
    fmv.x.d a0, fa0
    CHECK 157, a0, 0xffffffff7fc00000
    fsgnj.s fa0, fs1, fa3                   /* canonical NaN, sign of -1.0 */
    fmv.x.d a0, fa0
    CHECK 158, a0, 0xffffffffffc00000
    fclass.s a0, fs0
    CHECK 159, a0, 0x200
    fsflags zero
    feq.s a0, fs0, fs0
    frflags a1
    CHECK 160, a0, 0
    CHECK 161, a1, 0
    flt.s a0, fs1, fa2
    frflags a1
    CHECK 162, a0, 0
    CHECK 163, a1, NV
    fsflags zero
    fcvt.d.s fa0, fs0
    frflags a1
    fmv.x.d a0, fa0
    CHECK 164, a0, 0x7ff8000000000000
    CHECK 165, a1, 0
    fcvt.w.s a0, fs1, rtz
    frflags a1
    CHECK 166, a0, 0x7fffffff
    CHECK 167, a1, NV
    fmv.x.w a0, fs0                         /* transfer: low 32 bits */
    CHECK 168, a0, 0x3f800000
    fsw fs1, 8(s0)
    lwu a0, 8(s0)
    CHECK 169, a0, 0x3f800000
    fsflags zero
    LOADF fa4, 0x40000000
    fmin.s fa0, fs0, fa4                    /* NaN operand: other one */
    frflags a1
    fmv.x.d a0, fa0
    CHECK 170, a0, 0xffffffff40000000
    CHECK 171, a1, 0
    fmadd.s fa0, fa2, fa2, fs0, rne
    fmv.x.d a0, fa0
    CHECK 172, a0, 0xffffffff7fc00000
    fmul.s fa0, fs1, fa2, rne
    fmv.x.d a0, fa0
    CHECK 173, a0, 0xffffffff7fc00000

    TEST_PASS

    .data
    .balign 8
fbuf:   .word 0xbfc00000, 0x7f80dead, 0x5a5a5a5a, 0x5a5a5a5a
        .dword 0xa5a5a5a5a5a5a5a5
