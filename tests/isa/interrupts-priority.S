/*
 * interrupts-priority.S - order in which simultaneously pending M-mode
 * interrupts are taken: the parts of the order QEMU 7.2 agrees with.
 *
 * Spec: RISC-V Privileged ISA 1.12, 3.1.9: "Multiple simultaneous interrupts
 * destined for M-mode are handled in the following decreasing priority
 * order: MEI, MSI, MTI, SEI, SSI, STI."  QEMU 7.2 instead takes the lowest
 * cause number first, so only sets of interrupts where both orders agree
 * are used here: {MSI, MTI, SEI} (3, 7, 9), {SSI, STI} (1, 5) and
 * {MSI, STI} (3, 5).  MEI's top priority and SEI/MTI above SSI/STI are
 * checked by interrupts-priority-full.S (which QEMU 7.2 fails).
 * Sources: MSI = CLINT msip, MTI = CLINT mtimecmp = 0, SEI/SSI/STI = the
 * software-writable mip bits (STIP is writable while menvcfg.STCE = 0).
 * Nothing is delegated.  The handler records mcause, silences that source
 * and returns with MRET; the next pending one is then taken.
 *
 * Check numbers:
 *    1-5    MSI + MTI + SEI pending: all visible in mip; taken 3, 7, 9;
 *           exactly three taken
 *    6-9    SSI + STI: visible; taken 1, 5; exactly two
 *   10-13   MSI + STI: visible; taken 3, 5; exactly two
 *   14      nothing pending at the end
 */
#include "keel_test.h"

#define SPIN 20000000

/* make "mask" pending (set_code does it), enable, wait for "count" traps */
.macro PHASE n, mask, count
    li TESTNUM, \n
    li t1, SPIN
    li t2, \mask
.Lp\@:
    csrr a0, mip
    and a0, a0, t2
    beq a0, t2, .Lq\@
    addi t1, t1, -1
    bnez t1, .Lp\@
    j keel_fail
.Lq\@:
    la s0, order
    li s1, 0
    csrw mie, t2
    csrsi mstatus, MSTATUS_MIE
    li t0, SPIN
.Lr\@:
    li t1, \count
    beq s1, t1, .Ls\@
    addi t0, t0, -1
    bnez t0, .Lr\@
.Ls\@:
    li t0, 10000                            /* let any extra one arrive */
.Lt\@:
    addi t0, t0, -1
    bnez t0, .Lt\@
    csrci mstatus, MSTATUS_MIE
    csrw mie, zero
.endm

keel_main:
    csrw CSR_MENVCFG, zero
    csrw mideleg, zero
    la t0, prio_handler
    csrw mtvec, t0

    /* ---- MSI, MTI, SEI ---- */
    li t0, CLINT_MSIP
    li t1, 1
    sw t1, 0(t0)
    li t0, CLINT_MTIMECMP
    sd zero, 0(t0)
    li t0, MIP_SEIP
    csrs mip, t0
    PHASE 1, MIP_MSIP | MIP_MTIP | MIP_SEIP, 3
    ld a0, 0(s0)
    CHECK 2, a0, CAUSE_INTR | IRQ_M_SOFT
    ld a0, 8(s0)
    CHECK 3, a0, CAUSE_INTR | IRQ_M_TIMER
    ld a0, 16(s0)
    CHECK 4, a0, CAUSE_INTR | IRQ_S_EXT
    CHECK 5, s1, 3

    /* ---- SSI, STI ---- */
    li t0, MIP_SSIP | MIP_STIP
    csrs mip, t0
    PHASE 6, MIP_SSIP | MIP_STIP, 2
    ld a0, 0(s0)
    CHECK 7, a0, CAUSE_INTR | IRQ_S_SOFT
    ld a0, 8(s0)
    CHECK 8, a0, CAUSE_INTR | IRQ_S_TIMER
    CHECK 9, s1, 2

    /* ---- MSI, STI ---- */
    li t0, CLINT_MSIP
    li t1, 1
    sw t1, 0(t0)
    li t0, MIP_STIP
    csrs mip, t0
    PHASE 10, MIP_MSIP | MIP_STIP, 2
    ld a0, 0(s0)
    CHECK 11, a0, CAUSE_INTR | IRQ_M_SOFT
    ld a0, 8(s0)
    CHECK 12, a0, CAUSE_INTR | IRQ_S_TIMER
    CHECK 13, s1, 2

    la t0, keel_mtrap
    csrw mtvec, t0
    csrr a0, mip
    CHECK_BITS 14, a0, MIP_MSIP | MIP_MTIP | MIP_SEIP | MIP_SSIP | MIP_STIP, 0
    TEST_PASS

/* record mcause, silence the source, return */
    .balign 4
prio_handler:
    csrr s9, mcause
    li t6, 8
    bgeu s1, t6, keel_mtrap_unexpected      /* runaway */
    slli t6, s1, 3
    add t6, s0, t6
    sd s9, 0(t6)
    addi s1, s1, 1
    li t6, CAUSE_INTR | IRQ_M_SOFT
    beq s9, t6, 3f
    li t6, CAUSE_INTR | IRQ_M_TIMER
    beq s9, t6, 7f
    li t6, CAUSE_INTR | IRQ_S_EXT
    beq s9, t6, 9f
    li t6, CAUSE_INTR | IRQ_S_SOFT
    beq s9, t6, 11f
    li t6, CAUSE_INTR | IRQ_S_TIMER
    beq s9, t6, 5f
    j keel_mtrap_unexpected
3:  li t6, CLINT_MSIP
    sw zero, 0(t6)
    mret
7:  li t6, CLINT_MTIMECMP
    li s10, -1
    sd s10, 0(t6)
    mret
9:  li t6, MIP_SEIP
    csrc mip, t6
    mret
11: li t6, MIP_SSIP
    csrc mip, t6
    mret
5:  li t6, MIP_STIP
    csrc mip, t6
    mret

    .data
    .balign 8
order: .dword 0, 0, 0, 0, 0, 0, 0, 0
