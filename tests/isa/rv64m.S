/*
 * rv64m.S - M extension (multiply/divide) on RV64.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 7 ("M" Standard Extension):
 * 7.1 MUL/MULH/MULHSU/MULHU/MULW (MULW multiplies the low 32 bits and
 * sign-extends the low 32 bits of the product); 7.2 DIV/DIVU/REM/REMU and the
 * W forms (division rounds toward zero, remainder has the dividend's sign;
 * Table 7.1: x/0 = all ones (-1 / 2^XLEN-1), x%0 = x, signed overflow
 * -2^(L-1)/-1 = -2^(L-1) with remainder 0; W forms sign-extend their 32-bit
 * result, DIVUW/REMUW included).
 *
 * Each check computes a0 = op(a1, a2).  Check numbers:
 *     1-8   MUL           9-17  MULH        18-26 MULHSU     27-35 MULHU
 *    36-41  MULW         42-51  DIV         52-58 DIVU
 *    59-66  REM          67-72  REMU
 *    73-82  DIVW         83-92  DIVUW       93-102 REMW     103-112 REMUW
 *   113-115 rd aliasing a source (mul a0,a0,a0 / div a0,a1,a0 / rem a0,a0,a1)
 */
#include "keel_test.h"

.macro TEST_RR n, op, exp, a, b
    li a1, \a
    li a2, \b
    \op a0, a1, a2
    CHECK \n, a0, \exp
.endm

keel_main:

    /* ---- MUL: low 64 bits ---- */
    TEST_RR 1, mul, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000
    TEST_RR 2, mul, 0x0000000000000015, 0x0000000000000003, 0x0000000000000007
    TEST_RR 3, mul, 0xffffffffffffffeb, 0xfffffffffffffffd, 0x0000000000000007
    TEST_RR 4, mul, 0x0000000000000015, 0xfffffffffffffffd, 0xfffffffffffffff9
    TEST_RR 5, mul, 0x8000000000000000, 0x8000000000000000, 0xffffffffffffffff
    TEST_RR 6, mul, 0x236d88fe5618cf00, 0x123456789abcdef0, 0xfedcba9876543210
    TEST_RR 7, mul, 0x0000000000000001, 0x7fffffffffffffff, 0x7fffffffffffffff
    TEST_RR 8, mul, 0xfffffffe00000001, 0x00000000ffffffff, 0x00000000ffffffff

    /* ---- MULH (signed x signed), MULHSU (signed x unsigned), MULHU (unsigned x unsigned): high 64 bits ---- */
    TEST_RR 9, mulh, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000
    TEST_RR 10, mulh, 0x0000000000000000, 0x0000000000000003, 0x0000000000000007
    TEST_RR 11, mulh, 0x0000000000000000, 0xffffffffffffffff, 0xffffffffffffffff
    TEST_RR 12, mulh, 0xffffffffffffffff, 0xffffffffffffffff, 0x0000000000000001
    TEST_RR 13, mulh, 0x4000000000000000, 0x8000000000000000, 0x8000000000000000
    TEST_RR 14, mulh, 0x0000000000000000, 0x8000000000000000, 0xffffffffffffffff
    TEST_RR 15, mulh, 0x3fffffffffffffff, 0x7fffffffffffffff, 0x7fffffffffffffff
    TEST_RR 16, mulh, 0xffeb49923cc09532, 0x123456789abcdef0, 0xfedcba9876543210
    TEST_RR 17, mulh, 0xffffffffffffffff, 0x0000000000000002, 0xffffffffffffffff
    TEST_RR 18, mulhsu, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000
    TEST_RR 19, mulhsu, 0x0000000000000000, 0x0000000000000003, 0x0000000000000007
    TEST_RR 20, mulhsu, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff
    TEST_RR 21, mulhsu, 0xffffffffffffffff, 0xffffffffffffffff, 0x0000000000000001
    TEST_RR 22, mulhsu, 0xc000000000000000, 0x8000000000000000, 0x8000000000000000
    TEST_RR 23, mulhsu, 0x8000000000000000, 0x8000000000000000, 0xffffffffffffffff
    TEST_RR 24, mulhsu, 0x3fffffffffffffff, 0x7fffffffffffffff, 0x7fffffffffffffff
    TEST_RR 25, mulhsu, 0x121fa00ad77d7422, 0x123456789abcdef0, 0xfedcba9876543210
    TEST_RR 26, mulhsu, 0x0000000000000001, 0x0000000000000002, 0xffffffffffffffff
    TEST_RR 27, mulhu, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000
    TEST_RR 28, mulhu, 0x0000000000000000, 0x0000000000000003, 0x0000000000000007
    TEST_RR 29, mulhu, 0xfffffffffffffffe, 0xffffffffffffffff, 0xffffffffffffffff
    TEST_RR 30, mulhu, 0x0000000000000000, 0xffffffffffffffff, 0x0000000000000001
    TEST_RR 31, mulhu, 0x4000000000000000, 0x8000000000000000, 0x8000000000000000
    TEST_RR 32, mulhu, 0x7fffffffffffffff, 0x8000000000000000, 0xffffffffffffffff
    TEST_RR 33, mulhu, 0x3fffffffffffffff, 0x7fffffffffffffff, 0x7fffffffffffffff
    TEST_RR 34, mulhu, 0x121fa00ad77d7422, 0x123456789abcdef0, 0xfedcba9876543210
    TEST_RR 35, mulhu, 0x0000000000000001, 0x0000000000000002, 0xffffffffffffffff

    /* ---- MULW: low 32 bits of the product, sign-extended; upper input bits ignored ---- */
    TEST_RR 36, mulw, 0x0000000000000015, 0x0000000000000003, 0x0000000000000007
    TEST_RR 37, mulw, 0xffffffffffffffeb, 0xfffffffffffffffd, 0x0000000000000007
    TEST_RR 38, mulw, 0xfffffffffffffffe, 0x000000007fffffff, 0x0000000000000002
    TEST_RR 39, mulw, 0x0000000000000000, 0x0000000000010000, 0x0000000000010000
    TEST_RR 40, mulw, 0x000000000000000f, 0xffffffff00000003, 0x1234567800000005
    TEST_RR 41, mulw, 0xffffffff80000000, 0x0000000080000000, 0xffffffffffffffff

    /* ---- DIV / DIVU: truncation toward zero, x/0 = all ones, INT64_MIN/-1 = INT64_MIN ---- */
    TEST_RR 42, div, 0x0000000000000003, 0x0000000000000014, 0x0000000000000006
    TEST_RR 43, div, 0xfffffffffffffffd, 0xffffffffffffffec, 0x0000000000000006
    TEST_RR 44, div, 0xfffffffffffffffd, 0x0000000000000014, 0xfffffffffffffffa
    TEST_RR 45, div, 0x0000000000000003, 0xffffffffffffffec, 0xfffffffffffffffa
    TEST_RR 46, div, 0xffffffffffffffff, 0x0000000000000007, 0x0000000000000000
    TEST_RR 47, div, 0xffffffffffffffff, 0xfffffffffffffff9, 0x0000000000000000
    TEST_RR 48, div, 0xffffffffffffffff, 0x0000000000000000, 0x0000000000000000
    TEST_RR 49, div, 0x8000000000000000, 0x8000000000000000, 0xffffffffffffffff
    TEST_RR 50, div, 0x8000000000000000, 0x8000000000000000, 0x0000000000000001
    TEST_RR 51, div, 0x8000000000000001, 0x7fffffffffffffff, 0xffffffffffffffff
    TEST_RR 52, divu, 0x0000000000000003, 0x0000000000000014, 0x0000000000000006
    TEST_RR 53, divu, 0x2aaaaaaaaaaaaaa7, 0xffffffffffffffec, 0x0000000000000006
    TEST_RR 54, divu, 0x0000000000000000, 0x0000000000000014, 0xfffffffffffffffa
    TEST_RR 55, divu, 0xffffffffffffffff, 0x0000000000000007, 0x0000000000000000
    TEST_RR 56, divu, 0xffffffffffffffff, 0x0000000000000000, 0x0000000000000000
    TEST_RR 57, divu, 0x0000000000000000, 0x8000000000000000, 0xffffffffffffffff
    TEST_RR 58, divu, 0xffffffffffffffff, 0xffffffffffffffff, 0x0000000000000001

    /* ---- REM / REMU: sign of the dividend, x%0 = x, INT64_MIN%-1 = 0 ---- */
    TEST_RR 59, rem, 0x0000000000000002, 0x0000000000000014, 0x0000000000000006
    TEST_RR 60, rem, 0xfffffffffffffffe, 0xffffffffffffffec, 0x0000000000000006
    TEST_RR 61, rem, 0x0000000000000002, 0x0000000000000014, 0xfffffffffffffffa
    TEST_RR 62, rem, 0xfffffffffffffffe, 0xffffffffffffffec, 0xfffffffffffffffa
    TEST_RR 63, rem, 0x0000000000000007, 0x0000000000000007, 0x0000000000000000
    TEST_RR 64, rem, 0xfffffffffffffff9, 0xfffffffffffffff9, 0x0000000000000000
    TEST_RR 65, rem, 0x0000000000000000, 0x8000000000000000, 0xffffffffffffffff
    TEST_RR 66, rem, 0x8000000000000000, 0x8000000000000000, 0x0000000000000000
    TEST_RR 67, remu, 0x0000000000000002, 0x0000000000000014, 0x0000000000000006
    TEST_RR 68, remu, 0x0000000000000002, 0xffffffffffffffec, 0x0000000000000006
    TEST_RR 69, remu, 0x0000000000000014, 0x0000000000000014, 0xfffffffffffffffa
    TEST_RR 70, remu, 0x0000000000000007, 0x0000000000000007, 0x0000000000000000
    TEST_RR 71, remu, 0xfffffffffffffff9, 0xfffffffffffffff9, 0x0000000000000000
    TEST_RR 72, remu, 0x8000000000000000, 0x8000000000000000, 0xffffffffffffffff

    /* ---- DIVW / DIVUW / REMW / REMUW: 32-bit operands, 32-bit result sign-extended ---- */
    TEST_RR 73, divw, 0x0000000000000003, 0x0000000000000014, 0x0000000000000006
    TEST_RR 74, divw, 0xfffffffffffffffd, 0xffffffffffffffec, 0x0000000000000006
    TEST_RR 75, divw, 0xfffffffffffffffd, 0x0000000000000014, 0xfffffffffffffffa
    TEST_RR 76, divw, 0xffffffffffffffff, 0x0000000000000007, 0x0000000000000000
    TEST_RR 77, divw, 0xffffffffffffffff, 0xfffffffffffffff9, 0x0000000000000000
    TEST_RR 78, divw, 0xffffffff80000000, 0x0000000080000000, 0xffffffffffffffff
    TEST_RR 79, divw, 0xffffffff80000000, 0xffffffff80000000, 0xffffffffffffffff
    TEST_RR 80, divw, 0x0000000000000003, 0x0000000100000007, 0x0000000000000002
    TEST_RR 81, divw, 0xffffffffffffffff, 0x0000000080000000, 0x0000000000000000
    TEST_RR 82, divw, 0x0000000000000000, 0x00000000fffffffe, 0x0000000000000003
    TEST_RR 83, divuw, 0x0000000000000003, 0x0000000000000014, 0x0000000000000006
    TEST_RR 84, divuw, 0x000000002aaaaaa7, 0xffffffffffffffec, 0x0000000000000006
    TEST_RR 85, divuw, 0x0000000000000000, 0x0000000000000014, 0xfffffffffffffffa
    TEST_RR 86, divuw, 0xffffffffffffffff, 0x0000000000000007, 0x0000000000000000
    TEST_RR 87, divuw, 0xffffffffffffffff, 0xfffffffffffffff9, 0x0000000000000000
    TEST_RR 88, divuw, 0x0000000000000000, 0x0000000080000000, 0xffffffffffffffff
    TEST_RR 89, divuw, 0x0000000000000000, 0xffffffff80000000, 0xffffffffffffffff
    TEST_RR 90, divuw, 0x0000000000000003, 0x0000000100000007, 0x0000000000000002
    TEST_RR 91, divuw, 0xffffffffffffffff, 0x0000000080000000, 0x0000000000000000
    TEST_RR 92, divuw, 0x0000000055555554, 0x00000000fffffffe, 0x0000000000000003
    TEST_RR 93, remw, 0x0000000000000002, 0x0000000000000014, 0x0000000000000006
    TEST_RR 94, remw, 0xfffffffffffffffe, 0xffffffffffffffec, 0x0000000000000006
    TEST_RR 95, remw, 0x0000000000000002, 0x0000000000000014, 0xfffffffffffffffa
    TEST_RR 96, remw, 0x0000000000000007, 0x0000000000000007, 0x0000000000000000
    TEST_RR 97, remw, 0xfffffffffffffff9, 0xfffffffffffffff9, 0x0000000000000000
    TEST_RR 98, remw, 0x0000000000000000, 0x0000000080000000, 0xffffffffffffffff
    TEST_RR 99, remw, 0x0000000000000000, 0xffffffff80000000, 0xffffffffffffffff
    TEST_RR 100, remw, 0x0000000000000001, 0x0000000100000007, 0x0000000000000002
    TEST_RR 101, remw, 0xffffffff80000000, 0x0000000080000000, 0x0000000000000000
    TEST_RR 102, remw, 0xfffffffffffffffe, 0x00000000fffffffe, 0x0000000000000003
    TEST_RR 103, remuw, 0x0000000000000002, 0x0000000000000014, 0x0000000000000006
    TEST_RR 104, remuw, 0x0000000000000002, 0xffffffffffffffec, 0x0000000000000006
    TEST_RR 105, remuw, 0x0000000000000014, 0x0000000000000014, 0xfffffffffffffffa
    TEST_RR 106, remuw, 0x0000000000000007, 0x0000000000000007, 0x0000000000000000
    TEST_RR 107, remuw, 0xfffffffffffffff9, 0xfffffffffffffff9, 0x0000000000000000
    TEST_RR 108, remuw, 0xffffffff80000000, 0x0000000080000000, 0xffffffffffffffff
    TEST_RR 109, remuw, 0xffffffff80000000, 0xffffffff80000000, 0xffffffffffffffff
    TEST_RR 110, remuw, 0x0000000000000001, 0x0000000100000007, 0x0000000000000002
    TEST_RR 111, remuw, 0xffffffff80000000, 0x0000000080000000, 0x0000000000000000
    TEST_RR 112, remuw, 0x0000000000000002, 0x00000000fffffffe, 0x0000000000000003

    /* ---- rd aliasing a source ---- */
    li a0, -9
    mul a0, a0, a0
    CHECK 113, a0, 81
    li a0, 4
    li a1, 81
    div a0, a1, a0
    CHECK 114, a0, 20
    li a0, -81
    li a1, 4
    rem a0, a0, a1
    CHECK 115, a0, -1

    TEST_PASS
