/*
 * rv64d-misc.S - D extension non-arithmetic instructions: sign injection,
 * min/max, comparisons, classification, moves, loads/stores.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 12 (D), same rules as F:
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
 *  145-150  FMV.D.X / FMV.X.D / FLD / FSD move 64 bits exactly (sNaN payloads
 *           kept, no flags); FSD of a NaN-boxed single stores the box
 */
#include "keel_test.h"

#define NV 0x10
#define DZ 0x08
#define OF 0x04
#define UF 0x02
#define NX 0x01

.macro LOADF freg, val
    li t0, \val
    fmv.d.x \freg, t0
.endm

/* sign injection: n = result bits, n+1 = fflags (must stay 0) */
.macro FSGN n, op, a, b, exp
    LOADF fa1, \a
    LOADF fa2, \b
    fsflags zero
    \op fa0, fa1, fa2
    frflags a1
    fmv.x.d a0, fa0
    CHECK \n, a0, \exp
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
    CHECK \n, a0, \exp
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
    FSGN 1, fsgnj.d, 0x3ff0000000000000, 0xc000000000000000, 0xbff0000000000000
    FSGN 3, fsgnj.d, 0xbff0000000000000, 0x4000000000000000, 0x3ff0000000000000
    FSGN 5, fsgnj.d, 0xbff0000000000000, 0xc000000000000000, 0xbff0000000000000
    FSGN 7, fsgnj.d, 0x3ff0000000000000, 0x4000000000000000, 0x3ff0000000000000
    FSGN 9, fsgnj.d, 0x7ff000000000003d, 0xbff0000000000000, 0xfff000000000003d
    FSGN 11, fsgnj.d, 0xfff800000000005a, 0x3ff0000000000000, 0x7ff800000000005a
    FSGN 13, fsgnjn.d, 0x3ff0000000000000, 0xc000000000000000, 0x3ff0000000000000
    FSGN 15, fsgnjn.d, 0xbff0000000000000, 0x4000000000000000, 0xbff0000000000000
    FSGN 17, fsgnjn.d, 0xbff0000000000000, 0xc000000000000000, 0x3ff0000000000000
    FSGN 19, fsgnjn.d, 0x3ff0000000000000, 0x4000000000000000, 0xbff0000000000000
    FSGN 21, fsgnjn.d, 0x7ff000000000003d, 0xbff0000000000000, 0x7ff000000000003d
    FSGN 23, fsgnjn.d, 0xfff800000000005a, 0x3ff0000000000000, 0xfff800000000005a
    FSGN 25, fsgnjx.d, 0x3ff0000000000000, 0xc000000000000000, 0xbff0000000000000
    FSGN 27, fsgnjx.d, 0xbff0000000000000, 0x4000000000000000, 0xbff0000000000000
    FSGN 29, fsgnjx.d, 0xbff0000000000000, 0xc000000000000000, 0x3ff0000000000000
    FSGN 31, fsgnjx.d, 0x3ff0000000000000, 0x4000000000000000, 0x3ff0000000000000
    FSGN 33, fsgnjx.d, 0x7ff000000000003d, 0xbff0000000000000, 0xfff000000000003d
    FSGN 35, fsgnjx.d, 0xfff800000000005a, 0x3ff0000000000000, 0xfff800000000005a

    /* ---- FMIN / FMAX: -0 < +0, one NaN operand -> the other, both NaN -> canonical NaN, sNaN raises NV ---- */
    FMINMAX 37, fmin.d, 0x3ff0000000000000, 0x4000000000000000, 0x3ff0000000000000, 0
    FMINMAX 39, fmin.d, 0x4000000000000000, 0x3ff0000000000000, 0x3ff0000000000000, 0
    FMINMAX 41, fmin.d, 0xbff0000000000000, 0xc000000000000000, 0xc000000000000000, 0
    FMINMAX 43, fmin.d, 0x8000000000000000, 0x0000000000000000, 0x8000000000000000, 0
    FMINMAX 45, fmin.d, 0x0000000000000000, 0x8000000000000000, 0x8000000000000000, 0
    FMINMAX 47, fmin.d, 0x7ff800000000005a, 0x3ff0000000000000, 0x3ff0000000000000, 0
    FMINMAX 49, fmin.d, 0x3ff0000000000000, 0x7ff800000000005a, 0x3ff0000000000000, 0
    FMINMAX 51, fmin.d, 0x7ff0000000000001, 0x3ff0000000000000, 0x3ff0000000000000, NV
    FMINMAX 53, fmin.d, 0x7ff8000000000000, 0x7ff800000000005a, 0x7ff8000000000000, 0
    FMINMAX 55, fmin.d, 0x7ff0000000000001, 0x7ff8000000000000, 0x7ff8000000000000, NV
    FMINMAX 57, fmin.d, 0xfff0000000000000, 0x3ff0000000000000, 0xfff0000000000000, 0
    FMINMAX 59, fmin.d, 0x7ff0000000000000, 0xc008000000000000, 0xc008000000000000, 0
    FMINMAX 61, fmax.d, 0x3ff0000000000000, 0x4000000000000000, 0x4000000000000000, 0
    FMINMAX 63, fmax.d, 0x4000000000000000, 0x3ff0000000000000, 0x4000000000000000, 0
    FMINMAX 65, fmax.d, 0xbff0000000000000, 0xc000000000000000, 0xbff0000000000000, 0
    FMINMAX 67, fmax.d, 0x8000000000000000, 0x0000000000000000, 0x0000000000000000, 0
    FMINMAX 69, fmax.d, 0x0000000000000000, 0x8000000000000000, 0x0000000000000000, 0
    FMINMAX 71, fmax.d, 0x7ff800000000005a, 0x3ff0000000000000, 0x3ff0000000000000, 0
    FMINMAX 73, fmax.d, 0x3ff0000000000000, 0x7ff800000000005a, 0x3ff0000000000000, 0
    FMINMAX 75, fmax.d, 0x7ff0000000000001, 0x3ff0000000000000, 0x3ff0000000000000, NV
    FMINMAX 77, fmax.d, 0x7ff8000000000000, 0x7ff800000000005a, 0x7ff8000000000000, 0
    FMINMAX 79, fmax.d, 0x7ff0000000000001, 0x7ff8000000000000, 0x7ff8000000000000, NV
    FMINMAX 81, fmax.d, 0xfff0000000000000, 0x3ff0000000000000, 0x3ff0000000000000, 0
    FMINMAX 83, fmax.d, 0x7ff0000000000000, 0xc008000000000000, 0x7ff0000000000000, 0

    /* ---- FEQ / FLT / FLE: -0 == +0; NaN compares false; FLT/FLE signal NV on any NaN, FEQ only on sNaN ---- */
    FCMP 85, feq.d, 0x3ff0000000000000, 0x3ff0000000000000, 1, 0
    FCMP 87, feq.d, 0x3ff0000000000000, 0x4000000000000000, 0, 0
    FCMP 89, feq.d, 0x4000000000000000, 0x3ff0000000000000, 0, 0
    FCMP 91, feq.d, 0x8000000000000000, 0x0000000000000000, 1, 0
    FCMP 93, feq.d, 0x7ff8000000000000, 0x3ff0000000000000, 0, 0
    FCMP 95, feq.d, 0x3ff0000000000000, 0x7ff800000000005a, 0, 0
    FCMP 97, feq.d, 0x7ff0000000000001, 0x3ff0000000000000, 0, NV
    FCMP 99, feq.d, 0xfff0000000000000, 0x7ff0000000000000, 0, 0
    FCMP 101, flt.d, 0x3ff0000000000000, 0x3ff0000000000000, 0, 0
    FCMP 103, flt.d, 0x3ff0000000000000, 0x4000000000000000, 1, 0
    FCMP 105, flt.d, 0x4000000000000000, 0x3ff0000000000000, 0, 0
    FCMP 107, flt.d, 0x8000000000000000, 0x0000000000000000, 0, 0
    FCMP 109, flt.d, 0x7ff8000000000000, 0x3ff0000000000000, 0, NV
    FCMP 111, flt.d, 0x3ff0000000000000, 0x7ff800000000005a, 0, NV
    FCMP 113, flt.d, 0x7ff0000000000001, 0x3ff0000000000000, 0, NV
    FCMP 115, flt.d, 0xfff0000000000000, 0x7ff0000000000000, 1, 0
    FCMP 117, fle.d, 0x3ff0000000000000, 0x3ff0000000000000, 1, 0
    FCMP 119, fle.d, 0x3ff0000000000000, 0x4000000000000000, 1, 0
    FCMP 121, fle.d, 0x4000000000000000, 0x3ff0000000000000, 0, 0
    FCMP 123, fle.d, 0x8000000000000000, 0x0000000000000000, 1, 0
    FCMP 125, fle.d, 0x7ff8000000000000, 0x3ff0000000000000, 0, NV
    FCMP 127, fle.d, 0x3ff0000000000000, 0x7ff800000000005a, 0, NV
    FCMP 129, fle.d, 0x7ff0000000000001, 0x3ff0000000000000, 0, NV
    FCMP 131, fle.d, 0xfff0000000000000, 0x7ff0000000000000, 1, 0

    /* ---- FCLASS: one value of each of the 10 classes ---- */
    FCLASS 133, fclass.d, 0xfff0000000000000, 1
    FCLASS 134, fclass.d, 0xbff8000000000000, 2
    FCLASS 135, fclass.d, 0x800fffffffffffff, 4
    FCLASS 136, fclass.d, 0x8000000000000000, 8
    FCLASS 137, fclass.d, 0x0000000000000000, 16
    FCLASS 138, fclass.d, 0x0000000000000001, 32
    FCLASS 139, fclass.d, 0x3ff8000000000000, 64
    FCLASS 140, fclass.d, 0x7ff0000000000000, 128
    FCLASS 141, fclass.d, 0x7ff000000000003d, 256
    FCLASS 142, fclass.d, 0x7ff8000000000000, 512
    FCLASS 143, fclass.d, 0xfff800000000005a, 512
    FCLASS 144, fclass.d, 0x8010000000000000, 2


    /* ---- bit-exact 64-bit transfers ---- */
    fsflags zero
    li a1, 0x7ff0000000000bad               /* sNaN with payload */
    fmv.d.x fa0, a1
    fmv.x.d a0, fa0
    frflags a2
    CHECK 145, a0, 0x7ff0000000000bad
    CHECK 146, a2, 0
    la s0, dbuf
    fld fa0, 0(s0)                          /* 0xfff0dead0000beef */
    fmv.x.d a0, fa0
    CHECK 147, a0, 0xfff0dead0000beef
    fsd fa0, 8(s0)
    ld a0, 8(s0)
    CHECK 148, a0, 0xfff0dead0000beef
    frflags a2
    CHECK 149, a2, 0
    li a1, 0x40490fdb
    fmv.w.x fa1, a1
    fsd fa1, 16(s0)                         /* the whole boxed register */
    ld a0, 16(s0)
    CHECK 150, a0, 0xffffffff40490fdb

    TEST_PASS

    .data
    .balign 8
dbuf:   .dword 0xfff0dead0000beef, 0, 0
