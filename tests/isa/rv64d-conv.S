/*
 * rv64d-conv.S - D extension conversions: double <-> 32/64-bit signed and
 * unsigned integers, and single <-> double.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 12.4 (D conversions), same rules as 11.7:
 *  - FCVT.int.fmt rounds by rm; an out-of-range result or a NaN input
 *    raises NV (and not NX) and returns the value of Table 11.4:
 *        W: -2^31 / 2^31-1, NaN -> 2^31-1     WU: 0 / 2^32-1, NaN -> 2^32-1
 *        L: -2^63 / 2^63-1, NaN -> 2^63-1     LU: 0 / 2^64-1, NaN -> 2^64-1
 *    an in-range inexact result raises NX (e.g. -0.5 -> WU with RTZ is 0,
 *    NX only).  The 32-bit results (W and WU) are sign-extended to 64 bits
 *    "even for the unsigned ones" (11.7).
 *  - FCVT.fmt.int converts the low 32 bits of rs1 for W/WU (upper bits
 *    ignored) or all 64 for L/LU, rounding by rm (NX when inexact).
 *  - 12.5 FCVT.S.D rounds by rm (OF/UF/NX as for arithmetic, NaN ->
 *    canonical NaN, sNaN raises NV); FCVT.D.S is exact (NaN -> canonical,
 *    sNaN raises NV).
 * Expected values come from an exact model of these rules.
 *
 * Check numbers (two per conversion: n = result, n+1 = fflags):
 *     1-52    FCVT.W.D (float -> int32): rounding, saturation, NaN
 *    53-102   FCVT.WU.D (float -> uint32): rounding, saturation, NaN
 *   103-150   FCVT.L.D (float -> int64): rounding, saturation, NaN
 *   151-194   FCVT.LU.D (float -> uint64): rounding, saturation, NaN
 *   195-210   FCVT.D.W (int32 -> float)
 *   211-224   FCVT.D.WU (uint32 -> float)
 *   225-256   FCVT.D.L (int64 -> float)
 *   257-276   FCVT.D.LU (uint64 -> float)
 *   277-324   FCVT.S.D: rounding, overflow, underflow, NaN
 *   325-340   FCVT.D.S: exact widening, NaN
 */
#include "keel_test.h"

#define NV 0x10
#define DZ 0x08
#define OF 0x04
#define UF 0x02
#define NX 0x01

/* float -> int: n = integer result (64-bit), n+1 = fflags */
.macro CVT_F2I n, op, rm, a, exp, fl
    li t0, \a
    fmv.d.x fa1, t0
    fsflags zero
    \op a0, fa1, \rm
    frflags a1
    CHECK \n, a0, \exp
    CHECK \n+1, a1, \fl
.endm

/* int -> float: n = result bits, n+1 = fflags */
.macro CVT_I2F n, op, rm, a, exp, fl
    li a1, \a
    fsflags zero
    \op fa0, a1, \rm
    frflags a2
    fmv.x.d a0, fa0
    CHECK \n, a0, \exp
    CHECK \n+1, a2, \fl
.endm

/* int -> float conversions that are always exact (no rm operand) */
.macro CVT_I2F_EXACT n, op, a, exp, fl
    li a1, \a
    fsflags zero
    \op fa0, a1
    frflags a2
    fmv.x.d a0, fa0
    CHECK \n, a0, \exp
    CHECK \n+1, a2, \fl
.endm

/* fcvt.s.d: n = single result (NaN-boxed), n+1 = fflags */
.macro CVT_D2S n, rm, a, exp, fl
    li t0, \a
    fmv.d.x fa1, t0
    fsflags zero
    fcvt.s.d fa0, fa1, \rm
    frflags a1
    fmv.x.d a0, fa0
    CHECK \n, a0, 0xffffffff00000000 | \exp
    CHECK \n+1, a1, \fl
.endm

/* fcvt.d.s (always exact): n = double result, n+1 = fflags */
.macro CVT_S2D n, a, exp, fl
    li t0, \a
    fmv.w.x fa1, t0
    fsflags zero
    fcvt.d.s fa0, fa1
    frflags a1
    fmv.x.d a0, fa0
    CHECK \n, a0, \exp
    CHECK \n+1, a1, \fl
.endm

keel_main:
    li t0, MSTATUS_FS_INITIAL
    csrs mstatus, t0

    /* ---- FCVT.W.D (float -> int32): rounding, saturation, NaN ---- */
    CVT_F2I 1, fcvt.w.d, rne, 0x0000000000000000, 0x0000000000000000, 0
    CVT_F2I 3, fcvt.w.d, rtz, 0x8000000000000000, 0x0000000000000000, 0
    CVT_F2I 5, fcvt.w.d, rne, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 7, fcvt.w.d, rtz, 0x3ff8000000000000, 0x0000000000000001, NX
    CVT_F2I 9, fcvt.w.d, rdn, 0x3ff8000000000000, 0x0000000000000001, NX
    CVT_F2I 11, fcvt.w.d, rup, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 13, fcvt.w.d, rmm, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 15, fcvt.w.d, rne, 0xc004000000000000, 0xfffffffffffffffe, NX
    CVT_F2I 17, fcvt.w.d, rtz, 0xc004000000000000, 0xfffffffffffffffe, NX
    CVT_F2I 19, fcvt.w.d, rdn, 0xc004000000000000, 0xfffffffffffffffd, NX
    CVT_F2I 21, fcvt.w.d, rup, 0xc004000000000000, 0xfffffffffffffffe, NX
    CVT_F2I 23, fcvt.w.d, rmm, 0xc004000000000000, 0xfffffffffffffffd, NX
    CVT_F2I 25, fcvt.w.d, rtz, 0xbfe0000000000000, 0x0000000000000000, NX
    CVT_F2I 27, fcvt.w.d, rdn, 0xbfe0000000000000, 0xffffffffffffffff, NX
    CVT_F2I 29, fcvt.w.d, rtz, 0x3fefffffffffffff, 0x0000000000000000, NX
    CVT_F2I 31, fcvt.w.d, rne, 0xbff0000000000000, 0xffffffffffffffff, 0
    CVT_F2I 33, fcvt.w.d, rne, 0x41e0000000000000, 0x000000007fffffff, NV
    CVT_F2I 35, fcvt.w.d, rtz, 0x41dfffffffc00000, 0x000000007fffffff, 0
    CVT_F2I 37, fcvt.w.d, rne, 0xc1e0000000000000, 0xffffffff80000000, 0
    CVT_F2I 39, fcvt.w.d, rne, 0xc1e0000000000002, 0xffffffff80000000, NX
    CVT_F2I 41, fcvt.w.d, rne, 0x41dfffffffe00000, 0x000000007fffffff, NV
    CVT_F2I 43, fcvt.w.d, rtz, 0x41dfffffffe00000, 0x000000007fffffff, NX
    CVT_F2I 45, fcvt.w.d, rne, 0x7ff0000000000000, 0x000000007fffffff, NV
    CVT_F2I 47, fcvt.w.d, rne, 0xfff0000000000000, 0xffffffff80000000, NV
    CVT_F2I 49, fcvt.w.d, rne, 0x7ff800000000005a, 0x000000007fffffff, NV
    CVT_F2I 51, fcvt.w.d, rne, 0x7ff0000000000001, 0x000000007fffffff, NV

    /* ---- FCVT.WU.D (float -> uint32): rounding, saturation, NaN ---- */
    CVT_F2I 53, fcvt.wu.d, rne, 0x0000000000000000, 0x0000000000000000, 0
    CVT_F2I 55, fcvt.wu.d, rtz, 0x8000000000000000, 0x0000000000000000, 0
    CVT_F2I 57, fcvt.wu.d, rne, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 59, fcvt.wu.d, rtz, 0x3ff8000000000000, 0x0000000000000001, NX
    CVT_F2I 61, fcvt.wu.d, rdn, 0x3ff8000000000000, 0x0000000000000001, NX
    CVT_F2I 63, fcvt.wu.d, rup, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 65, fcvt.wu.d, rmm, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 67, fcvt.wu.d, rne, 0xc004000000000000, 0x0000000000000000, NV
    CVT_F2I 69, fcvt.wu.d, rtz, 0xc004000000000000, 0x0000000000000000, NV
    CVT_F2I 71, fcvt.wu.d, rdn, 0xc004000000000000, 0x0000000000000000, NV
    CVT_F2I 73, fcvt.wu.d, rup, 0xc004000000000000, 0x0000000000000000, NV
    CVT_F2I 75, fcvt.wu.d, rmm, 0xc004000000000000, 0x0000000000000000, NV
    CVT_F2I 77, fcvt.wu.d, rtz, 0xbfe0000000000000, 0x0000000000000000, NX
    CVT_F2I 79, fcvt.wu.d, rdn, 0xbfe0000000000000, 0x0000000000000000, NV
    CVT_F2I 81, fcvt.wu.d, rtz, 0x3fefffffffffffff, 0x0000000000000000, NX
    CVT_F2I 83, fcvt.wu.d, rne, 0xbff0000000000000, 0x0000000000000000, NV
    CVT_F2I 85, fcvt.wu.d, rne, 0x41f0000000000000, 0xffffffffffffffff, NV
    CVT_F2I 87, fcvt.wu.d, rtz, 0x41efffffffe00000, 0xffffffffffffffff, 0
    CVT_F2I 89, fcvt.wu.d, rne, 0x41effffffff00000, 0xffffffffffffffff, NV
    CVT_F2I 91, fcvt.wu.d, rtz, 0x41effffffff00000, 0xffffffffffffffff, NX
    CVT_F2I 93, fcvt.wu.d, rne, 0x41e65a0bc0000000, 0xffffffffb2d05e00, 0
    CVT_F2I 95, fcvt.wu.d, rne, 0x7ff0000000000000, 0xffffffffffffffff, NV
    CVT_F2I 97, fcvt.wu.d, rne, 0xfff0000000000000, 0x0000000000000000, NV
    CVT_F2I 99, fcvt.wu.d, rne, 0x7ff800000000005a, 0xffffffffffffffff, NV
    CVT_F2I 101, fcvt.wu.d, rne, 0x7ff0000000000001, 0xffffffffffffffff, NV

    /* ---- FCVT.L.D (float -> int64): rounding, saturation, NaN ---- */
    CVT_F2I 103, fcvt.l.d, rne, 0x0000000000000000, 0x0000000000000000, 0
    CVT_F2I 105, fcvt.l.d, rtz, 0x8000000000000000, 0x0000000000000000, 0
    CVT_F2I 107, fcvt.l.d, rne, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 109, fcvt.l.d, rtz, 0x3ff8000000000000, 0x0000000000000001, NX
    CVT_F2I 111, fcvt.l.d, rdn, 0x3ff8000000000000, 0x0000000000000001, NX
    CVT_F2I 113, fcvt.l.d, rup, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 115, fcvt.l.d, rmm, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 117, fcvt.l.d, rne, 0xc004000000000000, 0xfffffffffffffffe, NX
    CVT_F2I 119, fcvt.l.d, rtz, 0xc004000000000000, 0xfffffffffffffffe, NX
    CVT_F2I 121, fcvt.l.d, rdn, 0xc004000000000000, 0xfffffffffffffffd, NX
    CVT_F2I 123, fcvt.l.d, rup, 0xc004000000000000, 0xfffffffffffffffe, NX
    CVT_F2I 125, fcvt.l.d, rmm, 0xc004000000000000, 0xfffffffffffffffd, NX
    CVT_F2I 127, fcvt.l.d, rtz, 0xbfe0000000000000, 0x0000000000000000, NX
    CVT_F2I 129, fcvt.l.d, rdn, 0xbfe0000000000000, 0xffffffffffffffff, NX
    CVT_F2I 131, fcvt.l.d, rtz, 0x3fefffffffffffff, 0x0000000000000000, NX
    CVT_F2I 133, fcvt.l.d, rne, 0xbff0000000000000, 0xffffffffffffffff, 0
    CVT_F2I 135, fcvt.l.d, rne, 0x43e0000000000000, 0x7fffffffffffffff, NV
    CVT_F2I 137, fcvt.l.d, rtz, 0x43dffffffffffffe, 0x7ffffffffffff800, 0
    CVT_F2I 139, fcvt.l.d, rne, 0xc3e0000000000000, 0x8000000000000000, 0
    CVT_F2I 141, fcvt.l.d, rne, 0xc3e0000000000002, 0x8000000000000000, NV
    CVT_F2I 143, fcvt.l.d, rne, 0x7ff0000000000000, 0x7fffffffffffffff, NV
    CVT_F2I 145, fcvt.l.d, rne, 0xfff0000000000000, 0x8000000000000000, NV
    CVT_F2I 147, fcvt.l.d, rne, 0x7ff800000000005a, 0x7fffffffffffffff, NV
    CVT_F2I 149, fcvt.l.d, rne, 0x7ff0000000000001, 0x7fffffffffffffff, NV

    /* ---- FCVT.LU.D (float -> uint64): rounding, saturation, NaN ---- */
    CVT_F2I 151, fcvt.lu.d, rne, 0x0000000000000000, 0x0000000000000000, 0
    CVT_F2I 153, fcvt.lu.d, rtz, 0x8000000000000000, 0x0000000000000000, 0
    CVT_F2I 155, fcvt.lu.d, rne, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 157, fcvt.lu.d, rtz, 0x3ff8000000000000, 0x0000000000000001, NX
    CVT_F2I 159, fcvt.lu.d, rdn, 0x3ff8000000000000, 0x0000000000000001, NX
    CVT_F2I 161, fcvt.lu.d, rup, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 163, fcvt.lu.d, rmm, 0x3ff8000000000000, 0x0000000000000002, NX
    CVT_F2I 165, fcvt.lu.d, rne, 0xc004000000000000, 0x0000000000000000, NV
    CVT_F2I 167, fcvt.lu.d, rtz, 0xc004000000000000, 0x0000000000000000, NV
    CVT_F2I 169, fcvt.lu.d, rdn, 0xc004000000000000, 0x0000000000000000, NV
    CVT_F2I 171, fcvt.lu.d, rup, 0xc004000000000000, 0x0000000000000000, NV
    CVT_F2I 173, fcvt.lu.d, rmm, 0xc004000000000000, 0x0000000000000000, NV
    CVT_F2I 175, fcvt.lu.d, rtz, 0xbfe0000000000000, 0x0000000000000000, NX
    CVT_F2I 177, fcvt.lu.d, rdn, 0xbfe0000000000000, 0x0000000000000000, NV
    CVT_F2I 179, fcvt.lu.d, rtz, 0x3fefffffffffffff, 0x0000000000000000, NX
    CVT_F2I 181, fcvt.lu.d, rne, 0xbff0000000000000, 0x0000000000000000, NV
    CVT_F2I 183, fcvt.lu.d, rne, 0x43f0000000000000, 0xffffffffffffffff, NV
    CVT_F2I 185, fcvt.lu.d, rtz, 0x43efffffffffffff, 0xfffffffffffff800, 0
    CVT_F2I 187, fcvt.lu.d, rne, 0x7ff0000000000000, 0xffffffffffffffff, NV
    CVT_F2I 189, fcvt.lu.d, rne, 0xfff0000000000000, 0x0000000000000000, NV
    CVT_F2I 191, fcvt.lu.d, rne, 0x7ff800000000005a, 0xffffffffffffffff, NV
    CVT_F2I 193, fcvt.lu.d, rne, 0x7ff0000000000001, 0xffffffffffffffff, NV

    /* ---- FCVT.D.W (int32 -> float) ---- */
    CVT_I2F_EXACT 195, fcvt.d.w, 0x0000000000000000, 0x0000000000000000, 0
    CVT_I2F_EXACT 197, fcvt.d.w, 0x0000000000000001, 0x3ff0000000000000, 0
    CVT_I2F_EXACT 199, fcvt.d.w, 0xffffffffffffffff, 0xbff0000000000000, 0
    CVT_I2F_EXACT 201, fcvt.d.w, 0x0020000000000001, 0x3ff0000000000000, 0
    CVT_I2F_EXACT 203, fcvt.d.w, 0xffdfffffffffffff, 0xbff0000000000000, 0
    CVT_I2F_EXACT 205, fcvt.d.w, 0x000000007fffffff, 0x41dfffffffc00000, 0
    CVT_I2F_EXACT 207, fcvt.d.w, 0xffffffff80000000, 0xc1e0000000000000, 0
    CVT_I2F_EXACT 209, fcvt.d.w, 0x1234567800000003, 0x4008000000000000, 0

    /* ---- FCVT.D.WU (uint32 -> float) ---- */
    CVT_I2F_EXACT 211, fcvt.d.wu, 0x0000000000000000, 0x0000000000000000, 0
    CVT_I2F_EXACT 213, fcvt.d.wu, 0x0000000000000001, 0x3ff0000000000000, 0
    CVT_I2F_EXACT 215, fcvt.d.wu, 0xffffffffffffffff, 0x41efffffffe00000, 0
    CVT_I2F_EXACT 217, fcvt.d.wu, 0x0020000000000001, 0x3ff0000000000000, 0
    CVT_I2F_EXACT 219, fcvt.d.wu, 0x00000000ffffffff, 0x41efffffffe00000, 0
    CVT_I2F_EXACT 221, fcvt.d.wu, 0x1234567800000003, 0x4008000000000000, 0
    CVT_I2F_EXACT 223, fcvt.d.wu, 0xffffffff80000000, 0x41e0000000000000, 0

    /* ---- FCVT.D.L (int64 -> float) ---- */
    CVT_I2F 225, fcvt.d.l, rne, 0x0000000000000000, 0x0000000000000000, 0
    CVT_I2F 227, fcvt.d.l, rne, 0x0000000000000001, 0x3ff0000000000000, 0
    CVT_I2F 229, fcvt.d.l, rne, 0xffffffffffffffff, 0xbff0000000000000, 0
    CVT_I2F 231, fcvt.d.l, rne, 0x0020000000000001, 0x4340000000000000, NX
    CVT_I2F 233, fcvt.d.l, rtz, 0x0020000000000001, 0x4340000000000000, NX
    CVT_I2F 235, fcvt.d.l, rdn, 0x0020000000000001, 0x4340000000000000, NX
    CVT_I2F 237, fcvt.d.l, rup, 0x0020000000000001, 0x4340000000000001, NX
    CVT_I2F 239, fcvt.d.l, rmm, 0x0020000000000001, 0x4340000000000001, NX
    CVT_I2F 241, fcvt.d.l, rne, 0xffdfffffffffffff, 0xc340000000000000, NX
    CVT_I2F 243, fcvt.d.l, rtz, 0xffdfffffffffffff, 0xc340000000000000, NX
    CVT_I2F 245, fcvt.d.l, rdn, 0xffdfffffffffffff, 0xc340000000000001, NX
    CVT_I2F 247, fcvt.d.l, rup, 0xffdfffffffffffff, 0xc340000000000000, NX
    CVT_I2F 249, fcvt.d.l, rmm, 0xffdfffffffffffff, 0xc340000000000001, NX
    CVT_I2F 251, fcvt.d.l, rne, 0x7fffffffffffffff, 0x43e0000000000000, NX
    CVT_I2F 253, fcvt.d.l, rtz, 0x7fffffffffffffff, 0x43dfffffffffffff, NX
    CVT_I2F 255, fcvt.d.l, rne, 0x8000000000000000, 0xc3e0000000000000, 0

    /* ---- FCVT.D.LU (uint64 -> float) ---- */
    CVT_I2F 257, fcvt.d.lu, rne, 0x0000000000000000, 0x0000000000000000, 0
    CVT_I2F 259, fcvt.d.lu, rne, 0x0000000000000001, 0x3ff0000000000000, 0
    CVT_I2F 261, fcvt.d.lu, rne, 0xffffffffffffffff, 0x43f0000000000000, NX
    CVT_I2F 263, fcvt.d.lu, rne, 0x0020000000000001, 0x4340000000000000, NX
    CVT_I2F 265, fcvt.d.lu, rtz, 0x0020000000000001, 0x4340000000000000, NX
    CVT_I2F 267, fcvt.d.lu, rdn, 0x0020000000000001, 0x4340000000000000, NX
    CVT_I2F 269, fcvt.d.lu, rup, 0x0020000000000001, 0x4340000000000001, NX
    CVT_I2F 271, fcvt.d.lu, rmm, 0x0020000000000001, 0x4340000000000001, NX
    CVT_I2F 273, fcvt.d.lu, rne, 0xffffffffffffffff, 0x43f0000000000000, NX
    CVT_I2F 275, fcvt.d.lu, rtz, 0xffffffffffffffff, 0x43efffffffffffff, NX

    /* ---- FCVT.S.D: rounding, overflow, underflow, NaN ---- */
    CVT_D2S 277, rne, 0x4004000000000000, 0x40200000, 0
    CVT_D2S 279, rne, 0x8000000000000000, 0x80000000, 0
    CVT_D2S 281, rne, 0x3ff0000010000000, 0x3f800000, NX
    CVT_D2S 283, rtz, 0x3ff0000010000000, 0x3f800000, NX
    CVT_D2S 285, rdn, 0x3ff0000010000000, 0x3f800000, NX
    CVT_D2S 287, rup, 0x3ff0000010000000, 0x3f800001, NX
    CVT_D2S 289, rmm, 0x3ff0000010000000, 0x3f800001, NX
    CVT_D2S 291, rne, 0xbff0000018000000, 0xbf800001, NX
    CVT_D2S 293, rtz, 0xbff0000018000000, 0xbf800000, NX
    CVT_D2S 295, rdn, 0xbff0000018000000, 0xbf800001, NX
    CVT_D2S 297, rup, 0xbff0000018000000, 0xbf800000, NX
    CVT_D2S 299, rmm, 0xbff0000018000000, 0xbf800001, NX
    CVT_D2S 301, rne, 0x7e37e43c8800759c, 0x7f800000, OF|NX
    CVT_D2S 303, rtz, 0x7e37e43c8800759c, 0x7f7fffff, OF|NX
    CVT_D2S 305, rne, 0xfe37e43c8800759c, 0xff800000, OF|NX
    CVT_D2S 307, rne, 0x358dee7a4ad4b81f, 0x00000000, UF|NX
    CVT_D2S 309, rup, 0x358dee7a4ad4b81f, 0x00000001, UF|NX
    CVT_D2S 311, rne, 0x36a0000000000000, 0x00000001, 0
    CVT_D2S 313, rne, 0x3738000000000000, 0x00000300, 0
    CVT_D2S 315, rne, 0x7ff0000000000000, 0x7f800000, 0
    CVT_D2S 317, rne, 0xfff0000000000000, 0xff800000, 0
    CVT_D2S 319, rne, 0x7ff8000000123456, 0x7fc00000, 0
    CVT_D2S 321, rne, 0x7ff0000000000001, 0x7fc00000, NV
    CVT_D2S 323, rne, 0xfff8000000000000, 0x7fc00000, 0

    /* ---- FCVT.D.S: exact widening, NaN ---- */
    CVT_S2D 325, 0x3fc00000, 0x3ff8000000000000, 0
    CVT_S2D 327, 0x80000000, 0x8000000000000000, 0
    CVT_S2D 329, 0x00000001, 0x36a0000000000000, 0
    CVT_S2D 331, 0x7f7fffff, 0x47efffffe0000000, 0
    CVT_S2D 333, 0xff800000, 0xfff0000000000000, 0
    CVT_S2D 335, 0x7fc12345, 0x7ff8000000000000, 0
    CVT_S2D 337, 0x7f800001, 0x7ff8000000000000, NV
    CVT_S2D 339, 0x807fffff, 0xb80fffffc0000000, 0


    TEST_PASS
