/*
 * interrupts-timer.S - CLINT machine timer interrupt (mtime/mtimecmp, MTIP).
 *
 * Spec: RISC-V Privileged ISA 1.12:
 *  - 3.2.1 mtime/mtimecmp: "A machine timer interrupt becomes pending
 *    whenever mtime contains a value greater than or equal to mtimecmp";
 *    writing mtimecmp clears it once mtime < mtimecmp.  (Platform: CLINT at
 *    0x0200_0000, mtimecmp hart 0 at +0x4000, mtime at +0xbff8, 10 MHz.)
 *  - 3.1.9 mip.MTIP (bit 7) is read-only and shows the pending timer;
 *    an interrupt i is taken in M-mode iff mip[i] & mie[i] and mstatus.MIE
 *    (when running in M).  mcause = 0x8000_0000_0000_0007; mepc = the
 *    interrupted (not yet executed) instruction; trap entry sets MPIE <- MIE,
 *    MIE <- 0, MPP <- M.
 *  - 3.3.3 WFI: "If an enabled interrupt is present or later becomes
 *    present while the hart is stalled, the hart resumes execution at the
 *    instruction following the WFI" ... "This holds even when the global
 *    interrupt enable is disabled" (mie bit set, mstatus.MIE clear: no trap).
 *
 * Check numbers:
 *    1      mtime advances
 *    2      mtimecmp = -1: MTIP clear
 *    3      mtimecmp = 0: MTIP becomes visible in mip (not taken: MIE = 0)
 *    4      mie.MTIE = 1, mstatus.MIE = 0: not taken in M-mode
 *    5      mstatus.MIE = 1, mie.MTIE = 0: not taken
 *    6-9    both enabled: taken, mcause = 0x8000000000000007, mepc in the
 *           spin loop, MPIE = 1 / MIE = 0 / MPP = M
 *   10      writing mtimecmp = -1 clears MTIP
 *   11-14   a deadline 50 ms ahead: not pending right away, taken later,
 *           and not before mtime >= mtimecmp
 *   15-17   WFI with MTIE set and MIE clear wakes up when the timer fires,
 *           continues after the WFI without trapping; MTIP is then pending
 */
#include "keel_test.h"

#define SPIN 20000000

.macro SET_MTIMECMP reg
    li t0, CLINT_MTIMECMP
    sd \reg, 0(t0)
.endm

/* poll mip until (mip & bit) == want, at most SPIN times; check n */
.macro WAIT_MIP n, bit, want
    li TESTNUM, \n
    li t1, SPIN
.Lw\@:
    csrr t0, mip
    andi t0, t0, \bit
    li t2, \want
    beq t0, t2, .Ld\@
    addi t1, t1, -1
    bnez t1, .Lw\@
    j keel_fail
.Ld\@:
.endm

keel_main:
    li s0, CLINT_MTIME
    ld a0, 0(s0)
    li t0, 100000
1:  addi t0, t0, -1
    bnez t0, 1b
    ld a1, 0(s0)
    sltu a0, a0, a1
    CHECK 1, a0, 1

    li a0, -1
    SET_MTIMECMP a0
    csrr a0, mip
    CHECK_BITS 2, a0, MIP_MTIP, 0

    SET_MTIMECMP zero
    WAIT_MIP 3, MIP_MTIP, MIP_MTIP

    li t0, MIP_MTIP
    csrs mie, t0
    SET_TEST 4                              /* a trap here = failure 4 */
    li t0, 1000
1:  addi t0, t0, -1
    bnez t0, 1b
    csrw mie, zero
    SET_TEST 5
    csrsi mstatus, MSTATUS_MIE
    li t0, 1000
1:  addi t0, t0, -1
    bnez t0, 1b
    csrci mstatus, MSTATUS_MIE

    /* ---- enabled: taken ---- */
    EXPECT_TRAP 3f
    li t0, MIP_MTIP
    csrs mie, t0
    csrsi mstatus, MSTATUS_MIE
1:  li t0, SPIN
2:  addi t0, t0, -1
    bnez t0, 2b
    FAIL_IF_REACHED 6
3:  csrr s1, mstatus
    CHECK 6, s9, CAUSE_INTR | IRQ_M_TIMER
    la t0, 1b                               /* from the insn after the csrsi ... */
    sltu t0, s10, t0
    CHECK 7, t0, 0
    la t0, 3b                               /* ... to the end of the loop */
    sltu t0, s10, t0
    CHECK 8, t0, 1
    CHECK_BITS 9, s1, MSTATUS_MPIE | MSTATUS_MIE | MSTATUS_MPP, MSTATUS_MPIE | MSTATUS_MPP_M
    li a0, -1
    SET_MTIMECMP a0
    WAIT_MIP 10, MIP_MTIP, 0

    /* ---- a deadline in the future ---- */
    ld s2, 0(s0)
    li t0, 500000                           /* 50 ms at 10 MHz: ample margin */
    add s2, s2, t0                          /* for "not pending yet" */
    SET_MTIMECMP s2
    csrr a0, mip
    CHECK_BITS 11, a0, MIP_MTIP, 0
    EXPECT_TRAP 3f
    li t1, 10000000                         /* give up 1 s after the deadline */
    add t1, s2, t1
    csrsi mstatus, MSTATUS_MIE
2:  ld t0, 0(s0)
    bltu t0, t1, 2b
    FAIL_IF_REACHED 12
3:  ld a0, 0(s0)
    CHECK 12, s9, CAUSE_INTR | IRQ_M_TIMER
    sltu a0, a0, s2
    CHECK 13, a0, 0                         /* mtime >= mtimecmp */
    li a0, -1
    SET_MTIMECMP a0
    WAIT_MIP 14, MIP_MTIP, 0

    /* ---- WFI with the interrupt enabled in mie but MIE = 0 ---- */
    csrci mstatus, MSTATUS_MIE
    ld s2, 0(s0)
    li t0, 10000
    add s2, s2, t0
    SET_MTIMECMP s2
    SET_TEST 15                             /* any trap = failure 15 */
    wfi
    CHECK 15, zero, 0                       /* continued after the WFI */
    WAIT_MIP 16, MIP_MTIP, MIP_MTIP
    csrr a0, mstatus
    CHECK_BITS 17, a0, MSTATUS_MIE, 0
    li a0, -1
    SET_MTIMECMP a0
    csrw mie, zero

    TEST_PASS
