/*
 * rv64a-amo.S - A extension atomic memory operations (AMOs) on RV64.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 8.4 (AMOs): an AMO loads
 * the value at address rs1 into rd, applies a binary operator to it and rs2
 * and stores the result back.  AMO*.W operate on 32 bits, use rs2[31:0] and
 * sign-extend the loaded word into rd (chapter 8.4, "For RV64, 32-bit AMOs
 * always sign-extend the value placed in rd"); MIN/MAX compare signed,
 * MINU/MAXU unsigned, at the operation width.  The address must be naturally
 * aligned, else an address-misaligned or access-fault exception (chapter 8.4;
 * the privileged spec's cause table calls 6/7 "Store/AMO" faults, but QEMU
 * raises 4, so any of causes 4-7 is accepted) and the instruction has no
 * effect (precise exception).  .aq/.rl bits do not
 * change results on a single hart.
 *
 * Check numbers (each TEST_AMO uses two: n = rd, n+1 = memory, the .W ones
 * with the neighbouring word as guard):
 *     1-34   AMO{SWAP,ADD,XOR,AND,OR,MIN,MAX,MINU,MAXU}.W
 *    35-62   the same .D
 *    63-68   .aq / .rl / .aqrl forms
 *    69-70   rd = x0 (memory still updated)
 *    71-72   rd == rs2 (rs2 read before rd written)
 *    73-74   rd == rs1
 *    75      the dword after the operand was never touched
 *    76-87   misaligned AMO.W/.D: trap with cause 4..7 at the AMO,
 *            memory and rd unchanged
 */
#include "keel_test.h"

/* 32-bit AMO on the upper word of amo_buf (the lower word is a guard). */
.macro TEST_AMO_W n, op, old, src, exp_rd, exp_mem
    la a1, amo_buf
    li t0, (\old << 32) | 0x5a5a5a5a
    sd t0, 0(a1)
    addi a3, a1, 4
    li a2, \src
    \op a0, a2, (a3)
    CHECK \n, a0, \exp_rd
    ld a4, 0(a1)
    CHECK \n+1, a4, (\exp_mem << 32) | 0x5a5a5a5a
.endm

/* 64-bit AMO on amo_buf. */
.macro TEST_AMO_D n, op, old, src, exp_mem
    la a1, amo_buf
    li t0, \old
    sd t0, 0(a1)
    li a2, \src
    \op a0, a2, (a1)
    CHECK \n, a0, \old
    ld a4, 0(a1)
    CHECK \n+1, a4, \exp_mem
.endm

/* cause in s9 must be an address-misaligned or access-fault cause: 4..7.
 * The privileged spec names 6/7 "Store/AMO ..." but the unprivileged spec
 * only says "an address-misaligned exception or an access-fault exception";
 * QEMU 7.2 raises 4 (load address misaligned) for a misaligned AMO. */
.macro CHECK_CAUSE_MISALIGNED n
    li TESTNUM, \n
    addi t6, s9, -4
    sltiu t6, t6, 4
    bnez t6, .Lok\@
    j keel_fail
.Lok\@:
.endm

/* misaligned AMO at amo_buf + off: checks n (trapped, cause 4..7), n+1 (mepc
 * is the AMO), n+2 (rd unchanged) and n+3 (memory unchanged) */
.macro TEST_AMO_MISALIGNED n, op, off
    la a1, amo_buf
    li t0, 0x0011223344556677
    sd t0, 0(a1)
    sd t0, 8(a1)
    addi a3, a1, \off
    li a2, -1
    li a0, 0x4242
    EXPECT_TRAP .Ltrapped\@
.Lamo\@:
    \op a0, a2, (a3)
    FAIL_IF_REACHED \n
.Ltrapped\@:
    CHECK_CAUSE_MISALIGNED \n
    CHECK_ADDR \n+1, s10, .Lamo\@
    CHECK \n+2, a0, 0x4242
    ld a4, 0(a1)
    ld a5, 8(a1)
    xor a4, a4, a5                      /* both must still be the pattern */
    li t0, 0x0011223344556677
    xor a5, a5, t0
    or a4, a4, a5
    CHECK \n+3, a4, 0
.endm

keel_main:
    la a1, amo_buf
    li t0, 0x0123456789abcdef
    sd t0, 8(a1)                        /* guard dword, checked at 75 */

    /* ---- 32-bit AMOs: rd = sign-extended old word, word = op(old, rs2[31:0]) ---- */
    TEST_AMO_W 1, amoswap.w, 0x80000000, 0x1234567811223344, 0xffffffff80000000, 0x11223344
    TEST_AMO_W 3, amoswap.w, 0x12345678, 0x0000000000000000, 0x0000000012345678, 0x00000000
    TEST_AMO_W 5, amoadd.w, 0x7fffffff, 0x0000000000000001, 0x000000007fffffff, 0x80000000
    TEST_AMO_W 7, amoadd.w, 0xfffffffe, 0xffffffff00000003, 0xfffffffffffffffe, 0x00000001
    TEST_AMO_W 9, amoxor.w, 0xf0f0f0f0, 0x12345678ffff0000, 0xfffffffff0f0f0f0, 0x0f0ff0f0
    TEST_AMO_W 11, amoand.w, 0xf0f0f0f0, 0x12345678ff00ff00, 0xfffffffff0f0f0f0, 0xf000f000
    TEST_AMO_W 13, amoor.w, 0x80000001, 0xffffffff0f000000, 0xffffffff80000001, 0x8f000001
    TEST_AMO_W 15, amomin.w, 0xffffffff, 0x0000000000000001, 0xffffffffffffffff, 0xffffffff
    TEST_AMO_W 17, amomin.w, 0x00000005, 0xfffffffffffffffe, 0x0000000000000005, 0xfffffffe
    TEST_AMO_W 19, amomin.w, 0x00000003, 0x0000000180000000, 0x0000000000000003, 0x80000000
    TEST_AMO_W 21, amomax.w, 0xffffffff, 0x0000000000000001, 0xffffffffffffffff, 0x00000001
    TEST_AMO_W 23, amomax.w, 0x80000000, 0x000000007fffffff, 0xffffffff80000000, 0x7fffffff
    TEST_AMO_W 25, amomax.w, 0x00000003, 0x0000000180000000, 0x0000000000000003, 0x00000003
    TEST_AMO_W 27, amominu.w, 0xffffffff, 0x0000000000000001, 0xffffffffffffffff, 0x00000001
    TEST_AMO_W 29, amominu.w, 0x00000002, 0xffffffff00000003, 0x0000000000000002, 0x00000002
    TEST_AMO_W 31, amomaxu.w, 0xffffffff, 0x0000000000000001, 0xffffffffffffffff, 0xffffffff
    TEST_AMO_W 33, amomaxu.w, 0x00000002, 0xffffffff80000000, 0x0000000000000002, 0x80000000

    /* ---- 64-bit AMOs: rd = old doubleword, doubleword = op(old, rs2) ---- */
    TEST_AMO_D 35, amoswap.d, 0x8000000000000000, 0x1234567811223344, 0x1234567811223344
    TEST_AMO_D 37, amoadd.d, 0x7fffffffffffffff, 0x0000000000000001, 0x8000000000000000
    TEST_AMO_D 39, amoadd.d, 0xfffffffffffffffe, 0x0000000000000003, 0x0000000000000001
    TEST_AMO_D 41, amoxor.d, 0xf0f0f0f0f0f0f0f0, 0x0123456789abcdef, 0xf1d3b597795b3d1f
    TEST_AMO_D 43, amoand.d, 0xf0f0f0f0f0f0f0f0, 0x0123456789abcdef, 0x0020406080a0c0e0
    TEST_AMO_D 45, amoor.d, 0x8000000000000001, 0x0f0000000000f000, 0x8f0000000000f001
    TEST_AMO_D 47, amomin.d, 0xffffffffffffffff, 0x0000000000000001, 0xffffffffffffffff
    TEST_AMO_D 49, amomin.d, 0x0000000000000005, 0x8000000000000000, 0x8000000000000000
    TEST_AMO_D 51, amomax.d, 0xffffffffffffffff, 0x0000000000000001, 0x0000000000000001
    TEST_AMO_D 53, amomax.d, 0x8000000000000000, 0x7fffffffffffffff, 0x7fffffffffffffff
    TEST_AMO_D 55, amominu.d, 0xffffffffffffffff, 0x0000000000000001, 0x0000000000000001
    TEST_AMO_D 57, amominu.d, 0x8000000000000000, 0x7fffffffffffffff, 0x7fffffffffffffff
    TEST_AMO_D 59, amomaxu.d, 0xffffffffffffffff, 0x0000000000000001, 0xffffffffffffffff
    TEST_AMO_D 61, amomaxu.d, 0x8000000000000000, 0x7fffffffffffffff, 0x8000000000000000

    /* ---- acquire / release variants ---- */
    la a1, amo_buf
    li t0, 100
    sd t0, 0(a1)
    li a2, 5
    amoadd.d.aq a0, a2, (a1)
    CHECK 63, a0, 100
    amoadd.d.rl a0, a2, (a1)
    CHECK 64, a0, 105
    amoadd.d.aqrl a0, a2, (a1)
    CHECK 65, a0, 110
    ld a4, 0(a1)
    CHECK 66, a4, 115
    li a2, 0xfffffff0
    amoswap.w.aqrl a0, a2, (a1)         /* low word of 115 */
    CHECK 67, a0, 115
    ld a4, 0(a1)
    CHECK 68, a4, 0x00000000fffffff0

    /* ---- rd = x0: memory is still updated ---- */
    li t0, 40
    sd t0, 0(a1)
    li a2, 2
    amoadd.d x0, a2, (a1)
    ld a4, 0(a1)
    CHECK 69, a4, 42
    CHECK 70, x0, 0

    /* ---- rd == rs2 ---- */
    li t0, 0x1111
    sd t0, 0(a1)
    li a2, 0x2222
    amoswap.d a2, a2, (a1)
    CHECK 71, a2, 0x1111
    ld a4, 0(a1)
    CHECK 72, a4, 0x2222

    /* ---- rd == rs1 ---- */
    la a1, amo_buf
    mv a3, a1
    li t0, 7
    sd t0, 0(a1)
    li a2, 3
    amoadd.d a1, a2, (a1)
    CHECK 73, a1, 7
    ld a4, 0(a3)
    CHECK 74, a4, 10

    /* ---- guard dword untouched by all of the above ---- */
    la a1, amo_buf
    ld a4, 8(a1)
    CHECK 75, a4, 0x0123456789abcdef

    /* ---- misaligned AMOs trap and have no effect ---- */
    TEST_AMO_MISALIGNED 76, amoadd.w, 2
    TEST_AMO_MISALIGNED 80, amoswap.d, 4
    TEST_AMO_MISALIGNED 84, amomaxu.w, 5

    TEST_PASS

    .data
    .balign 16
amo_buf: .dword 0, 0
