/*
 * rv64f-conv.S - F extension conversions: single <-> 32/64-bit signed and
 * unsigned integers.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 11.7 (Single-Precision Floating-Point Conversion and Move Instructions):
 *  - FCVT.int.fmt rounds by rm; an out-of-range result or a NaN input
 *    raises NV (and not NX) and returns the value of Table 11.4:
 *        W: -2^31 / 2^31-1, NaN -> 2^31-1     WU: 0 / 2^32-1, NaN -> 2^32-1
 *        L: -2^63 / 2^63-1, NaN -> 2^63-1     LU: 0 / 2^64-1, NaN -> 2^64-1
 *    an in-range inexact result raises NX (e.g. -0.5 -> WU with RTZ is 0,
 *    NX only).  The 32-bit results (W and WU) are sign-extended to 64 bits
 *    "even for the unsigned ones" (11.7).
 *  - FCVT.fmt.int converts the low 32 bits of rs1 for W/WU (upper bits
 *    ignored) or all 64 for L/LU, rounding by rm (NX when inexact).
 * Expected values come from an exact model of these rules.
 *
 * Check numbers (two per conversion: n = result, n+1 = fflags):
 *     1-48    FCVT.W.S (float -> int32): rounding, saturation, NaN
 *    49-94    FCVT.WU.S (float -> uint32): rounding, saturation, NaN
 *    95-142   FCVT.L.S (float -> int64): rounding, saturation, NaN
 *   143-186   FCVT.LU.S (float -> uint64): rounding, saturation, NaN
 *   187-220   FCVT.S.W (int32 -> float)
 *   221-244   FCVT.S.WU (uint32 -> float)
 *   245-276   FCVT.S.L (int64 -> float)
 *   277-296   FCVT.S.LU (uint64 -> float)
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
    fmv.w.x fa1, t0
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
    CHECK \n, a0, 0xffffffff00000000 | \exp
    CHECK \n+1, a2, \fl
.endm

/* int -> float conversions that are always exact (no rm operand) */
.macro CVT_I2F_EXACT n, op, a, exp, fl
    li a1, \a
    fsflags zero
    \op fa0, a1
    frflags a2
    fmv.x.d a0, fa0
    CHECK \n, a0, 0xffffffff00000000 | \exp
    CHECK \n+1, a2, \fl
.endm

keel_main:
    li t0, MSTATUS_FS_INITIAL
    csrs mstatus, t0

    /* ---- FCVT.W.S (float -> int32): rounding, saturation, NaN ---- */
    CVT_F2I 1, fcvt.w.s, rne, 0x00000000, 0x0000000000000000, 0
    CVT_F2I 3, fcvt.w.s, rtz, 0x80000000, 0x0000000000000000, 0
    CVT_F2I 5, fcvt.w.s, rne, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 7, fcvt.w.s, rtz, 0x3fc00000, 0x0000000000000001, NX
    CVT_F2I 9, fcvt.w.s, rdn, 0x3fc00000, 0x0000000000000001, NX
    CVT_F2I 11, fcvt.w.s, rup, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 13, fcvt.w.s, rmm, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 15, fcvt.w.s, rne, 0xc0200000, 0xfffffffffffffffe, NX
    CVT_F2I 17, fcvt.w.s, rtz, 0xc0200000, 0xfffffffffffffffe, NX
    CVT_F2I 19, fcvt.w.s, rdn, 0xc0200000, 0xfffffffffffffffd, NX
    CVT_F2I 21, fcvt.w.s, rup, 0xc0200000, 0xfffffffffffffffe, NX
    CVT_F2I 23, fcvt.w.s, rmm, 0xc0200000, 0xfffffffffffffffd, NX
    CVT_F2I 25, fcvt.w.s, rtz, 0xbf000000, 0x0000000000000000, NX
    CVT_F2I 27, fcvt.w.s, rdn, 0xbf000000, 0xffffffffffffffff, NX
    CVT_F2I 29, fcvt.w.s, rtz, 0x3f7fffff, 0x0000000000000000, NX
    CVT_F2I 31, fcvt.w.s, rne, 0xbf800000, 0xffffffffffffffff, 0
    CVT_F2I 33, fcvt.w.s, rne, 0x4f000000, 0x000000007fffffff, NV
    CVT_F2I 35, fcvt.w.s, rtz, 0x4efffffe, 0x000000007fffff00, 0
    CVT_F2I 37, fcvt.w.s, rne, 0xcf000000, 0xffffffff80000000, 0
    CVT_F2I 39, fcvt.w.s, rne, 0xcf000002, 0xffffffff80000000, NV
    CVT_F2I 41, fcvt.w.s, rne, 0x7f800000, 0x000000007fffffff, NV
    CVT_F2I 43, fcvt.w.s, rne, 0xff800000, 0xffffffff80000000, NV
    CVT_F2I 45, fcvt.w.s, rne, 0x7fc0005a, 0x000000007fffffff, NV
    CVT_F2I 47, fcvt.w.s, rne, 0x7f800001, 0x000000007fffffff, NV

    /* ---- FCVT.WU.S (float -> uint32): rounding, saturation, NaN ---- */
    CVT_F2I 49, fcvt.wu.s, rne, 0x00000000, 0x0000000000000000, 0
    CVT_F2I 51, fcvt.wu.s, rtz, 0x80000000, 0x0000000000000000, 0
    CVT_F2I 53, fcvt.wu.s, rne, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 55, fcvt.wu.s, rtz, 0x3fc00000, 0x0000000000000001, NX
    CVT_F2I 57, fcvt.wu.s, rdn, 0x3fc00000, 0x0000000000000001, NX
    CVT_F2I 59, fcvt.wu.s, rup, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 61, fcvt.wu.s, rmm, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 63, fcvt.wu.s, rne, 0xc0200000, 0x0000000000000000, NV
    CVT_F2I 65, fcvt.wu.s, rtz, 0xc0200000, 0x0000000000000000, NV
    CVT_F2I 67, fcvt.wu.s, rdn, 0xc0200000, 0x0000000000000000, NV
    CVT_F2I 69, fcvt.wu.s, rup, 0xc0200000, 0x0000000000000000, NV
    CVT_F2I 71, fcvt.wu.s, rmm, 0xc0200000, 0x0000000000000000, NV
    CVT_F2I 73, fcvt.wu.s, rtz, 0xbf000000, 0x0000000000000000, NX
    CVT_F2I 75, fcvt.wu.s, rdn, 0xbf000000, 0x0000000000000000, NV
    CVT_F2I 77, fcvt.wu.s, rtz, 0x3f7fffff, 0x0000000000000000, NX
    CVT_F2I 79, fcvt.wu.s, rne, 0xbf800000, 0x0000000000000000, NV
    CVT_F2I 81, fcvt.wu.s, rne, 0x4f800000, 0xffffffffffffffff, NV
    CVT_F2I 83, fcvt.wu.s, rtz, 0x4f7fffff, 0xffffffffffffff00, 0
    CVT_F2I 85, fcvt.wu.s, rne, 0x4f32d05e, 0xffffffffb2d05e00, 0
    CVT_F2I 87, fcvt.wu.s, rne, 0x7f800000, 0xffffffffffffffff, NV
    CVT_F2I 89, fcvt.wu.s, rne, 0xff800000, 0x0000000000000000, NV
    CVT_F2I 91, fcvt.wu.s, rne, 0x7fc0005a, 0xffffffffffffffff, NV
    CVT_F2I 93, fcvt.wu.s, rne, 0x7f800001, 0xffffffffffffffff, NV

    /* ---- FCVT.L.S (float -> int64): rounding, saturation, NaN ---- */
    CVT_F2I 95, fcvt.l.s, rne, 0x00000000, 0x0000000000000000, 0
    CVT_F2I 97, fcvt.l.s, rtz, 0x80000000, 0x0000000000000000, 0
    CVT_F2I 99, fcvt.l.s, rne, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 101, fcvt.l.s, rtz, 0x3fc00000, 0x0000000000000001, NX
    CVT_F2I 103, fcvt.l.s, rdn, 0x3fc00000, 0x0000000000000001, NX
    CVT_F2I 105, fcvt.l.s, rup, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 107, fcvt.l.s, rmm, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 109, fcvt.l.s, rne, 0xc0200000, 0xfffffffffffffffe, NX
    CVT_F2I 111, fcvt.l.s, rtz, 0xc0200000, 0xfffffffffffffffe, NX
    CVT_F2I 113, fcvt.l.s, rdn, 0xc0200000, 0xfffffffffffffffd, NX
    CVT_F2I 115, fcvt.l.s, rup, 0xc0200000, 0xfffffffffffffffe, NX
    CVT_F2I 117, fcvt.l.s, rmm, 0xc0200000, 0xfffffffffffffffd, NX
    CVT_F2I 119, fcvt.l.s, rtz, 0xbf000000, 0x0000000000000000, NX
    CVT_F2I 121, fcvt.l.s, rdn, 0xbf000000, 0xffffffffffffffff, NX
    CVT_F2I 123, fcvt.l.s, rtz, 0x3f7fffff, 0x0000000000000000, NX
    CVT_F2I 125, fcvt.l.s, rne, 0xbf800000, 0xffffffffffffffff, 0
    CVT_F2I 127, fcvt.l.s, rne, 0x5f000000, 0x7fffffffffffffff, NV
    CVT_F2I 129, fcvt.l.s, rtz, 0x5efffffe, 0x7fffff0000000000, 0
    CVT_F2I 131, fcvt.l.s, rne, 0xdf000000, 0x8000000000000000, 0
    CVT_F2I 133, fcvt.l.s, rne, 0xdf000002, 0x8000000000000000, NV
    CVT_F2I 135, fcvt.l.s, rne, 0x7f800000, 0x7fffffffffffffff, NV
    CVT_F2I 137, fcvt.l.s, rne, 0xff800000, 0x8000000000000000, NV
    CVT_F2I 139, fcvt.l.s, rne, 0x7fc0005a, 0x7fffffffffffffff, NV
    CVT_F2I 141, fcvt.l.s, rne, 0x7f800001, 0x7fffffffffffffff, NV

    /* ---- FCVT.LU.S (float -> uint64): rounding, saturation, NaN ---- */
    CVT_F2I 143, fcvt.lu.s, rne, 0x00000000, 0x0000000000000000, 0
    CVT_F2I 145, fcvt.lu.s, rtz, 0x80000000, 0x0000000000000000, 0
    CVT_F2I 147, fcvt.lu.s, rne, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 149, fcvt.lu.s, rtz, 0x3fc00000, 0x0000000000000001, NX
    CVT_F2I 151, fcvt.lu.s, rdn, 0x3fc00000, 0x0000000000000001, NX
    CVT_F2I 153, fcvt.lu.s, rup, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 155, fcvt.lu.s, rmm, 0x3fc00000, 0x0000000000000002, NX
    CVT_F2I 157, fcvt.lu.s, rne, 0xc0200000, 0x0000000000000000, NV
    CVT_F2I 159, fcvt.lu.s, rtz, 0xc0200000, 0x0000000000000000, NV
    CVT_F2I 161, fcvt.lu.s, rdn, 0xc0200000, 0x0000000000000000, NV
    CVT_F2I 163, fcvt.lu.s, rup, 0xc0200000, 0x0000000000000000, NV
    CVT_F2I 165, fcvt.lu.s, rmm, 0xc0200000, 0x0000000000000000, NV
    CVT_F2I 167, fcvt.lu.s, rtz, 0xbf000000, 0x0000000000000000, NX
    CVT_F2I 169, fcvt.lu.s, rdn, 0xbf000000, 0x0000000000000000, NV
    CVT_F2I 171, fcvt.lu.s, rtz, 0x3f7fffff, 0x0000000000000000, NX
    CVT_F2I 173, fcvt.lu.s, rne, 0xbf800000, 0x0000000000000000, NV
    CVT_F2I 175, fcvt.lu.s, rne, 0x5f800000, 0xffffffffffffffff, NV
    CVT_F2I 177, fcvt.lu.s, rtz, 0x5f7fffff, 0xffffff0000000000, 0
    CVT_F2I 179, fcvt.lu.s, rne, 0x7f800000, 0xffffffffffffffff, NV
    CVT_F2I 181, fcvt.lu.s, rne, 0xff800000, 0x0000000000000000, NV
    CVT_F2I 183, fcvt.lu.s, rne, 0x7fc0005a, 0xffffffffffffffff, NV
    CVT_F2I 185, fcvt.lu.s, rne, 0x7f800001, 0xffffffffffffffff, NV

    /* ---- FCVT.S.W (int32 -> float) ---- */
    CVT_I2F 187, fcvt.s.w, rne, 0x0000000000000000, 0x00000000, 0
    CVT_I2F 189, fcvt.s.w, rne, 0x0000000000000001, 0x3f800000, 0
    CVT_I2F 191, fcvt.s.w, rne, 0xffffffffffffffff, 0xbf800000, 0
    CVT_I2F 193, fcvt.s.w, rne, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 195, fcvt.s.w, rtz, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 197, fcvt.s.w, rdn, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 199, fcvt.s.w, rup, 0x0000000001000001, 0x4b800001, NX
    CVT_I2F 201, fcvt.s.w, rmm, 0x0000000001000001, 0x4b800001, NX
    CVT_I2F 203, fcvt.s.w, rne, 0xfffffffffeffffff, 0xcb800000, NX
    CVT_I2F 205, fcvt.s.w, rtz, 0xfffffffffeffffff, 0xcb800000, NX
    CVT_I2F 207, fcvt.s.w, rdn, 0xfffffffffeffffff, 0xcb800001, NX
    CVT_I2F 209, fcvt.s.w, rup, 0xfffffffffeffffff, 0xcb800000, NX
    CVT_I2F 211, fcvt.s.w, rmm, 0xfffffffffeffffff, 0xcb800001, NX
    CVT_I2F 213, fcvt.s.w, rne, 0x000000007fffffff, 0x4f000000, NX
    CVT_I2F 215, fcvt.s.w, rtz, 0x000000007fffffff, 0x4effffff, NX
    CVT_I2F 217, fcvt.s.w, rne, 0xffffffff80000000, 0xcf000000, 0
    CVT_I2F 219, fcvt.s.w, rne, 0x1234567800000003, 0x40400000, 0

    /* ---- FCVT.S.WU (uint32 -> float) ---- */
    CVT_I2F 221, fcvt.s.wu, rne, 0x0000000000000000, 0x00000000, 0
    CVT_I2F 223, fcvt.s.wu, rne, 0x0000000000000001, 0x3f800000, 0
    CVT_I2F 225, fcvt.s.wu, rne, 0xffffffffffffffff, 0x4f800000, NX
    CVT_I2F 227, fcvt.s.wu, rne, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 229, fcvt.s.wu, rtz, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 231, fcvt.s.wu, rdn, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 233, fcvt.s.wu, rup, 0x0000000001000001, 0x4b800001, NX
    CVT_I2F 235, fcvt.s.wu, rmm, 0x0000000001000001, 0x4b800001, NX
    CVT_I2F 237, fcvt.s.wu, rne, 0x00000000ffffffff, 0x4f800000, NX
    CVT_I2F 239, fcvt.s.wu, rtz, 0x00000000ffffffff, 0x4f7fffff, NX
    CVT_I2F 241, fcvt.s.wu, rne, 0x1234567800000003, 0x40400000, 0
    CVT_I2F 243, fcvt.s.wu, rne, 0xffffffff80000000, 0x4f000000, 0

    /* ---- FCVT.S.L (int64 -> float) ---- */
    CVT_I2F 245, fcvt.s.l, rne, 0x0000000000000000, 0x00000000, 0
    CVT_I2F 247, fcvt.s.l, rne, 0x0000000000000001, 0x3f800000, 0
    CVT_I2F 249, fcvt.s.l, rne, 0xffffffffffffffff, 0xbf800000, 0
    CVT_I2F 251, fcvt.s.l, rne, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 253, fcvt.s.l, rtz, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 255, fcvt.s.l, rdn, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 257, fcvt.s.l, rup, 0x0000000001000001, 0x4b800001, NX
    CVT_I2F 259, fcvt.s.l, rmm, 0x0000000001000001, 0x4b800001, NX
    CVT_I2F 261, fcvt.s.l, rne, 0xfffffffffeffffff, 0xcb800000, NX
    CVT_I2F 263, fcvt.s.l, rtz, 0xfffffffffeffffff, 0xcb800000, NX
    CVT_I2F 265, fcvt.s.l, rdn, 0xfffffffffeffffff, 0xcb800001, NX
    CVT_I2F 267, fcvt.s.l, rup, 0xfffffffffeffffff, 0xcb800000, NX
    CVT_I2F 269, fcvt.s.l, rmm, 0xfffffffffeffffff, 0xcb800001, NX
    CVT_I2F 271, fcvt.s.l, rne, 0x7fffffffffffffff, 0x5f000000, NX
    CVT_I2F 273, fcvt.s.l, rtz, 0x7fffffffffffffff, 0x5effffff, NX
    CVT_I2F 275, fcvt.s.l, rne, 0x8000000000000000, 0xdf000000, 0

    /* ---- FCVT.S.LU (uint64 -> float) ---- */
    CVT_I2F 277, fcvt.s.lu, rne, 0x0000000000000000, 0x00000000, 0
    CVT_I2F 279, fcvt.s.lu, rne, 0x0000000000000001, 0x3f800000, 0
    CVT_I2F 281, fcvt.s.lu, rne, 0xffffffffffffffff, 0x5f800000, NX
    CVT_I2F 283, fcvt.s.lu, rne, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 285, fcvt.s.lu, rtz, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 287, fcvt.s.lu, rdn, 0x0000000001000001, 0x4b800000, NX
    CVT_I2F 289, fcvt.s.lu, rup, 0x0000000001000001, 0x4b800001, NX
    CVT_I2F 291, fcvt.s.lu, rmm, 0x0000000001000001, 0x4b800001, NX
    CVT_I2F 293, fcvt.s.lu, rne, 0xffffffffffffffff, 0x5f800000, NX
    CVT_I2F 295, fcvt.s.lu, rtz, 0xffffffffffffffff, 0x5f7fffff, NX


    TEST_PASS
