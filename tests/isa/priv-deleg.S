/*
 * priv-deleg.S - trap delegation to S-mode (medeleg / mideleg) and S-mode
 * trap state (scause, sepc, stval, sstatus.SPP/SPIE/SIE, stvec).
 *
 * Spec: RISC-V Privileged ISA 1.12:
 *  - 3.1.8 medeleg/mideleg: a trap taken in S or U whose bit is set is
 *    handled in S-mode: scause/sepc/stval written, SPP <- previous mode
 *    (0 = U, 1 = S), SPIE <- SIE, SIE <- 0, pc <- stvec; M-mode registers
 *    untouched.  "Traps never transition from a more-privileged mode to a
 *    less-privileged mode": an exception in M is handled in M even if its
 *    medeleg bit is set; delegated interrupts are not taken in M-mode.
 *  - 3.1.9/4.1.3: an interrupt delegated to S is taken when in U-mode
 *    regardless of sstatus.SIE, in S-mode only if SIE = 1; sip/sie show the
 *    bits of delegated interrupts only (others read as zero).
 *  - 4.1.9 stval = instruction bits on illegal instruction (keel and QEMU
 *    both provide them), 0 for ECALL.
 *
 * Check numbers:
 *    1-6    ECALL from U delegated: scause 8, sepc, stval 0, SPP = U,
 *           SPIE = SIE before the trap (1), SIE cleared
 *    7      a non-delegated ECALL from S still goes to M (cause 9)
 *    8-9    illegal instruction in U delegated: scause 2, stval = bits
 *   10-12   EBREAK in S delegated: scause 3, SPP = S, sepc
 *   13      EBREAK in M with medeleg[3] = 1 is still taken by M
 *   14-15   a non-delegated exception from U (load access fault) goes to M
 *           with MPP = U
 *   16-17   sie/sip show nothing while SSI is not delegated; after
 *           delegation sip.SSIP reflects mip.SSIP
 *   18      a delegated SSI is not taken in M-mode (MIE = 1)
 *   19      ... nor in S-mode with SIE = 0
 *   20-21   ... but in S-mode with SIE = 1: scause = interrupt | 1, SPP = S
 *   22-23   ... and in U-mode even with SIE = 0: scause, SPP = U
 */
#include "keel_test.h"

#define HOLE 0x08000000

keel_main:
    li t0, (1 << CAUSE_USER_ECALL) | (1 << CAUSE_ILLEGAL_INSN) | (1 << CAUSE_BREAKPOINT)
    csrw medeleg, t0

    /* ---- ECALL from U, delegated ---- */
    EXPECT_TRAP 9f
    GOTO_MODE 1, 1f
1:  S_EXPECT_TRAP 3f
    li t0, MSTATUS_SPP
    csrc sstatus, t0                     /* to U ... */
    li t0, MSTATUS_SPIE
    csrs sstatus, t0                     /* ... with SIE = 1 there */
    la t0, 2f
    csrw sepc, t0
    sret
2:  ecall                                /* U */
3:  mv s2, s9                            /* S handler resumed here */
    mv s3, s10
    mv s4, s11
    csrr s5, sstatus
    ecall                                /* S -> M (not delegated) */
9:  CHECK 1, s2, CAUSE_USER_ECALL
    CHECK_ADDR 2, s3, 2b
    CHECK 3, s4, 0
    CHECK_BITS 4, s5, MSTATUS_SPP, 0
    CHECK_BITS 5, s5, MSTATUS_SPIE, MSTATUS_SPIE
    CHECK_BITS 6, s5, MSTATUS_SIE, 0
    CHECK 7, s9, CAUSE_SUPERVISOR_ECALL
    li t0, MSTATUS_SIE | MSTATUS_SPIE
    csrc mstatus, t0

    /* ---- illegal instruction in U, delegated ---- */
    EXPECT_TRAP 9f
    GOTO_MODE 1, 1f
1:  S_EXPECT_TRAP 3f
    S_GOTO_U 2f
2:  csrr a0, mstatus                     /* illegal in U */
3:  mv s2, s9
    mv s4, s11
    ecall
9:  CHECK 8, s2, CAUSE_ILLEGAL_INSN
    la t0, 2b
    lwu t1, 0(t0)
    CHECK_REG 9, s4, t1

    /* ---- EBREAK in S, delegated ---- */
    EXPECT_TRAP 9f
    GOTO_MODE 1, 1f
1:  S_EXPECT_TRAP 3f
2:  ebreak
3:  mv s2, s9
    mv s3, s10
    csrr s5, sstatus
    ecall
9:  CHECK 10, s2, CAUSE_BREAKPOINT
    CHECK_BITS 11, s5, MSTATUS_SPP, MSTATUS_SPP
    CHECK_ADDR 12, s3, 2b

    /* ---- EBREAK in M is never delegated ---- */
    EXPECT_TRAP 2f
    ebreak
2:  CHECK 13, s9, CAUSE_BREAKPOINT

    /* ---- non-delegated exception from U goes to M ---- */
    EXPECT_TRAP 2f
    GOTO_MODE 0, 1f
1:  li a0, HOLE
    ld a0, 0(a0)
2:  CHECK 14, s9, CAUSE_LOAD_ACCESS
    csrr a0, mstatus
    CHECK_BITS 15, a0, MSTATUS_MPP, MSTATUS_MPP_U

    /* ---- interrupt delegation: supervisor software interrupt ---- */
    li t0, MIP_SSIP
    csrs mie, t0
    csrs mip, t0                         /* pending, not delegated */
    csrr a0, sip
    csrr a1, sie
    or a0, a0, a1
    CHECK_BITS 16, a0, MIP_SSIP, 0
    csrw mideleg, t0                     /* delegate SSI */
    csrr a0, sip
    CHECK_BITS 17, a0, MIP_SSIP, MIP_SSIP
    SET_TEST 18                          /* (an M trap below = failure 18) */
    csrsi mstatus, MSTATUS_MIE           /* M: delegated SSI must not trap */
    li a0, 200
1:  addi a0, a0, -1
    bnez a0, 1b
    csrci mstatus, MSTATUS_MIE

    EXPECT_TRAP 9f
    GOTO_MODE 1, 1f
1:  li TESTNUM, 19                       /* S with SIE = 0: not taken */
    li a0, 200
2:  addi a0, a0, -1
    bnez a0, 2b
    S_EXPECT_TRAP 3f
    csrsi sstatus, MSTATUS_SIE           /* now it is taken */
    li a0, 1000
2:  addi a0, a0, -1
    bnez a0, 2b
    li s9, 0                             /* not taken: s9 = 0 */
3:  mv s2, s9
    csrr s5, sstatus
    li t0, MIP_SSIP
    csrc sip, t0
    ecall
9:  CHECK 20, s2, CAUSE_INTR | IRQ_S_SOFT
    CHECK_BITS 21, s5, MSTATUS_SPP, MSTATUS_SPP

    li t0, MIP_SSIP
    csrs mip, t0
    EXPECT_TRAP 9f
    GOTO_MODE 1, 1f
1:  S_EXPECT_TRAP 3f
    S_GOTO_U 2f                          /* U with SIE = 0 */
2:  li a0, 1000
4:  addi a0, a0, -1
    bnez a0, 4b
    li s9, 0
    ecall                                /* not taken: U ecall (delegated) */
3:  mv s2, s9
    csrr s5, sstatus
    li t0, MIP_SSIP
    csrc sip, t0
    ecall
9:  CHECK 22, s2, CAUSE_INTR | IRQ_S_SOFT
    CHECK_BITS 23, s5, MSTATUS_SPP, 0

    csrw mie, zero
    csrw mideleg, zero
    csrw medeleg, zero
    TEST_PASS
