/*
 * rv64i-branch.S - RV64I control transfer: conditional branches, JAL, JALR.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 2.5 (Control Transfer
 * Instructions).  BEQ/BNE compare for equality, BLT/BGE signed, BLTU/BGEU
 * unsigned; the target is pc + sign-extended 13-bit offset.  JAL writes
 * pc + 4 to rd and jumps to pc + offset; JALR jumps to (rs1 + imm) with
 * bit 0 cleared and writes pc + 4 to rd (the target is computed from the old
 * rs1, so rd == rs1 works).  JAL/JALR with rd = x0 do not link.
 *
 * Check numbers:
 *    1-48   every branch, taken and not taken, on the pairs
 *           (0,0) (1,-1) (-1,1) (INT64_MIN,INT64_MAX) (INT64_MAX,INT64_MIN)
 *           (-1,-1) (0,1) (2^32,0): beq 1-8, bne 9-16, blt 17-24, bge 25-32,
 *           bltu 33-40, bgeu 41-48
 *   49-50   backward branch loop runs the expected number of iterations
 *   51-54   long forward/backward branch offsets (about +-4 KiB)
 *   55-58   JAL: link = pc + 4, JAL with rd = t0, J (rd = x0) does not link,
 *           backward JAL
 *   59-66   JALR: link value, immediate offset (positive and negative),
 *           target bit 0 cleared, rd == rs1, rd = x0
 */
#include "keel_test.h"

/* a0 = 1 if "op a1, a2" branches, else 0.  Both paths are checked to land
 * where they should (the not-taken path falls through exactly once). */
.macro TEST_BR n, op, taken, a, b
    li a1, \a
    li a2, \b
    li a0, 5
    \op a1, a2, .Ltk\@
    li a0, 0
    j .Lend\@
.Ltk\@:
    li a0, 1
.Lend\@:
    CHECK \n, a0, \taken
.endm

keel_main:

    /* beq */
    TEST_BR 1, beq, 1, 0x0000000000000000, 0x0000000000000000
    TEST_BR 2, beq, 0, 0x0000000000000001, 0xffffffffffffffff
    TEST_BR 3, beq, 0, 0xffffffffffffffff, 0x0000000000000001
    TEST_BR 4, beq, 0, 0x8000000000000000, 0x7fffffffffffffff
    TEST_BR 5, beq, 0, 0x7fffffffffffffff, 0x8000000000000000
    TEST_BR 6, beq, 1, 0xffffffffffffffff, 0xffffffffffffffff
    TEST_BR 7, beq, 0, 0x0000000000000000, 0x0000000000000001
    TEST_BR 8, beq, 0, 0x0000000100000000, 0x0000000000000000

    /* bne */
    TEST_BR 9, bne, 0, 0x0000000000000000, 0x0000000000000000
    TEST_BR 10, bne, 1, 0x0000000000000001, 0xffffffffffffffff
    TEST_BR 11, bne, 1, 0xffffffffffffffff, 0x0000000000000001
    TEST_BR 12, bne, 1, 0x8000000000000000, 0x7fffffffffffffff
    TEST_BR 13, bne, 1, 0x7fffffffffffffff, 0x8000000000000000
    TEST_BR 14, bne, 0, 0xffffffffffffffff, 0xffffffffffffffff
    TEST_BR 15, bne, 1, 0x0000000000000000, 0x0000000000000001
    TEST_BR 16, bne, 1, 0x0000000100000000, 0x0000000000000000

    /* blt */
    TEST_BR 17, blt, 0, 0x0000000000000000, 0x0000000000000000
    TEST_BR 18, blt, 0, 0x0000000000000001, 0xffffffffffffffff
    TEST_BR 19, blt, 1, 0xffffffffffffffff, 0x0000000000000001
    TEST_BR 20, blt, 1, 0x8000000000000000, 0x7fffffffffffffff
    TEST_BR 21, blt, 0, 0x7fffffffffffffff, 0x8000000000000000
    TEST_BR 22, blt, 0, 0xffffffffffffffff, 0xffffffffffffffff
    TEST_BR 23, blt, 1, 0x0000000000000000, 0x0000000000000001
    TEST_BR 24, blt, 0, 0x0000000100000000, 0x0000000000000000

    /* bge */
    TEST_BR 25, bge, 1, 0x0000000000000000, 0x0000000000000000
    TEST_BR 26, bge, 1, 0x0000000000000001, 0xffffffffffffffff
    TEST_BR 27, bge, 0, 0xffffffffffffffff, 0x0000000000000001
    TEST_BR 28, bge, 0, 0x8000000000000000, 0x7fffffffffffffff
    TEST_BR 29, bge, 1, 0x7fffffffffffffff, 0x8000000000000000
    TEST_BR 30, bge, 1, 0xffffffffffffffff, 0xffffffffffffffff
    TEST_BR 31, bge, 0, 0x0000000000000000, 0x0000000000000001
    TEST_BR 32, bge, 1, 0x0000000100000000, 0x0000000000000000

    /* bltu */
    TEST_BR 33, bltu, 0, 0x0000000000000000, 0x0000000000000000
    TEST_BR 34, bltu, 1, 0x0000000000000001, 0xffffffffffffffff
    TEST_BR 35, bltu, 0, 0xffffffffffffffff, 0x0000000000000001
    TEST_BR 36, bltu, 0, 0x8000000000000000, 0x7fffffffffffffff
    TEST_BR 37, bltu, 1, 0x7fffffffffffffff, 0x8000000000000000
    TEST_BR 38, bltu, 0, 0xffffffffffffffff, 0xffffffffffffffff
    TEST_BR 39, bltu, 1, 0x0000000000000000, 0x0000000000000001
    TEST_BR 40, bltu, 0, 0x0000000100000000, 0x0000000000000000

    /* bgeu */
    TEST_BR 41, bgeu, 1, 0x0000000000000000, 0x0000000000000000
    TEST_BR 42, bgeu, 0, 0x0000000000000001, 0xffffffffffffffff
    TEST_BR 43, bgeu, 1, 0xffffffffffffffff, 0x0000000000000001
    TEST_BR 44, bgeu, 1, 0x8000000000000000, 0x7fffffffffffffff
    TEST_BR 45, bgeu, 0, 0x7fffffffffffffff, 0x8000000000000000
    TEST_BR 46, bgeu, 1, 0xffffffffffffffff, 0xffffffffffffffff
    TEST_BR 47, bgeu, 0, 0x0000000000000000, 0x0000000000000001
    TEST_BR 48, bgeu, 1, 0x0000000100000000, 0x0000000000000000

    /* ---- backward branches: loop 5 times ---- */
    li a0, 0
    li a1, 5
1:  addi a0, a0, 1
    addi a1, a1, -1
    bnez a1, 1b
    CHECK 49, a0, 5
    li a0, 0
    li a1, -3
2:  addi a0, a0, 2
    addi a1, a1, 1
    blt a1, zero, 2b
    CHECK 50, a0, 6

    /* ---- long branch offsets (close to the +-4 KiB limit) ---- */
    li a0, 0
    beq zero, zero, far_fwd          /* forward, about +4000 bytes */
    FAIL_IF_REACHED 51
far_back:
    li a0, 2
    j far_done
    .skip 4000                       /* never executed (zeros: illegal) */
far_fwd:
    CHECK 52, a0, 0
    li a0, 1
    bne a0, zero, far_back           /* backward, about -4000 bytes */
    FAIL_IF_REACHED 53
far_done:
    CHECK 54, a0, 2

    /* ---- JAL ---- */
    jal ra, 3f
4:  FAIL_IF_REACHED 55               /* JAL jumped past here */
3:  CHECK_ADDR 55, ra, 4b            /* link = address of the next insn */
    jal t0, 5f
6:  FAIL_IF_REACHED 56
5:  CHECK_ADDR 56, t0, 6b
    li ra, 0x1234
    j 7f                             /* jal x0: no link */
    FAIL_IF_REACHED 57
7:  CHECK 57, ra, 0x1234
    j 9f
8:  li a0, 0x55                      /* target of a backward JAL */
    j 10f
9:  jal ra, 8b
11: FAIL_IF_REACHED 58
10: CHECK_ADDR 58, ra, 11b

    /* ---- JALR ---- */
    la a1, 12f
    jalr ra, 0(a1)
13: FAIL_IF_REACHED 59
12: CHECK_ADDR 59, ra, 13b
    la a1, 14f
    addi a1, a1, -8
    jalr ra, 8(a1)                   /* positive offset */
    FAIL_IF_REACHED 60
14: la a1, 15f
    addi a1, a1, 12
    jalr t1, -12(a1)                 /* negative offset */
    FAIL_IF_REACHED 61
15: la a1, 16f
    ori a1, a1, 1                    /* target | 1: bit 0 is cleared */
    jalr ra, 0(a1)
17: FAIL_IF_REACHED 62
16: CHECK_ADDR 62, ra, 17b
    la a1, 18f
    addi a1, a1, -3
    jalr ra, 3(a1)                   /* odd offset + even base... */
    FAIL_IF_REACHED 63
18: la a1, 19f                       /* ...but here the sum is odd: */
    addi a1, a1, -2
    jalr ra, 3(a1)                   /* (19f + 1) & ~1 == 19f */
20: FAIL_IF_REACHED 63
19: CHECK_ADDR 63, ra, 20b
    la a1, 21f
    jalr a1, 0(a1)                   /* rd == rs1: target from old a1 */
22: FAIL_IF_REACHED 64
21: CHECK_ADDR 64, a1, 22b
    li ra, 0x777
    la a1, 23f
    jalr zero, 0(a1)                 /* no link */
    FAIL_IF_REACHED 65
23: CHECK 65, ra, 0x777
    /* call / ret round trip */
    li a0, 0
    call leaf
    CHECK 66, a0, 42

    TEST_PASS

leaf:
    li a0, 42
    ret
