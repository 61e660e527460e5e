/*
 * counters-exact.S - minstret counts retired instructions exactly.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 10 (instret "counts the
 * number of instructions retired by this hart"); Privileged ISA 1.12, 3.1.11
 * minstret.  A CSR read returns the value before the reading instruction
 * retires, so two reads around N instructions differ by N + 1 (the first
 * read itself retires in between).
 *
 * QEMU 7.2 is exact only with -icount: run-qemu.sh runs this program with
 * "-icount shift=0" (without it QEMU derives minstret from the host clock).
 *
 * Check numbers:
 *    1      64 straight-line instructions: difference 65
 *    2      a 10-iteration loop of 2 instructions plus its setup li: 22
 *    3      4 compressed instructions count as 4 instructions: 5
 */
#include "keel_test.h"

keel_main:
    csrr s1, minstret
    .rept 64
    addi t0, t0, 1
    .endr
    csrr s2, minstret
    sub a0, s2, s1
    CHECK 1, a0, 65

    csrr s1, minstret
    li t0, 10
1:  addi t0, t0, -1
    bnez t0, 1b
    csrr s2, minstret
    sub a0, s2, s1
    CHECK 2, a0, 22

    csrr s1, minstret
    .option push
    .option rvc
    c.addi a0, 1
    c.nop
    c.addi a0, 1
    c.nop
    .option pop
    csrr s2, minstret
    sub a0, s2, s1
    CHECK 3, a0, 5

    TEST_PASS
