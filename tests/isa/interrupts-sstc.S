/*
 * interrupts-sstc.S - supervisor interrupts delegated to S-mode: the Sstc
 * timer (stimecmp) and the supervisor software interrupt (sip.SSIP).
 *
 * Spec: RISC-V "Sstc" extension 1.0 (stimecmp CSR 0x14D, menvcfg.STCE =
 * bit 63): with STCE = 1, mip.STIP reflects time >= stimecmp and is not
 * writable; S-mode may access stimecmp only if menvcfg.STCE = 1 and
 * mcounteren.TM = 1 (else illegal instruction).  With STCE = 0, mip.STIP is
 * the software-writable bit of the privileged spec (3.1.9).
 * Privileged ISA 1.12: 3.1.8 mideleg; 4.1.3 sip/sie (SSIP is writable in
 * sip by S-mode); a delegated interrupt is taken in S-mode when sie bit and
 * sstatus.SIE are set: scause = 0x8000_..._0005 (STI) / ..._0001 (SSI),
 * sepc, SPP = S.
 *
 * Check numbers:
 *    1      menvcfg.STCE reads back as set
 *    2      stimecmp = -1: STIP clear
 *    3-4    stimecmp = 0: mip.STIP set, also visible as sip.STIP
 *    5-7    S-mode enables STIE/SIE: trap to S with scause 0x8...5,
 *           SPP = S; writing stimecmp = -1 (from S) clears sip.STIP
 *    8-10   S programs stimecmp = time + 50 ms: not pending right away,
 *           taken later, and not before time >= stimecmp
 *   11-12   S sets sip.SSIP itself: taken, scause 0x8...1; cleared via sip
 *   13      menvcfg.STCE = 0: stimecmp is illegal in S-mode
 *   14      STCE = 1 but mcounteren.TM = 0: stimecmp is illegal in S-mode
 *   15-16   STCE = 0: M-mode can set and clear mip.STIP directly
 */
#include "keel_test.h"

#define SPIN 20000000
#define MENVCFG_STCE 0x8000000000000000

keel_main:
    li t0, MENVCFG_STCE
    csrs CSR_MENVCFG, t0
    csrr a0, CSR_MENVCFG
    srli a0, a0, 63
    CHECK 1, a0, 1
    li t0, 7                                /* CY, TM, IR */
    csrw mcounteren, t0
    li t0, MIP_STIP | MIP_SSIP
    csrw mideleg, t0

    li t0, -1
    csrw CSR_STIMECMP, t0
    csrr a0, mip
    CHECK_BITS 2, a0, MIP_STIP, 0
    csrw CSR_STIMECMP, zero
    li TESTNUM, 3
    li t1, SPIN
1:  csrr a0, mip
    andi a0, a0, MIP_STIP
    bnez a0, 2f
    addi t1, t1, -1
    bnez t1, 1b
    j keel_fail
2:  csrr a0, sip
    CHECK_BITS 4, a0, MIP_STIP, MIP_STIP

    /* ---- S-mode takes the timer interrupt ---- */
    GOTO_MODE 1, s_main
s_main:
    li t0, MIP_STIP
    csrs sie, t0
    S_EXPECT_TRAP 3f
    csrsi sstatus, MSTATUS_SIE
    li t0, SPIN
2:  addi t0, t0, -1
    bnez t0, 2b
    FAIL_IF_REACHED 5
3:  csrr s1, sstatus
    CHECK 5, s9, CAUSE_INTR | IRQ_S_TIMER
    CHECK_BITS 6, s1, MSTATUS_SPP | MSTATUS_SIE, MSTATUS_SPP
    li t0, -1
    csrw CSR_STIMECMP, t0
    li TESTNUM, 7
    li t1, SPIN
1:  csrr a0, sip
    andi a0, a0, MIP_STIP
    beqz a0, 2f
    addi t1, t1, -1
    bnez t1, 1b
    j keel_fail
2:
    /* ---- a deadline in the future ---- */
    rdtime s2
    li t0, 500000                           /* 50 ms at 10 MHz */
    add s2, s2, t0
    csrw CSR_STIMECMP, s2
    csrr a0, sip
    CHECK_BITS 8, a0, MIP_STIP, 0
    S_EXPECT_TRAP 3f
    li t1, 10000000                         /* give up 1 s after the deadline */
    add t1, s2, t1
    csrsi sstatus, MSTATUS_SIE
2:  rdtime t0
    bltu t0, t1, 2b
    FAIL_IF_REACHED 9
3:  rdtime a0
    CHECK 9, s9, CAUSE_INTR | IRQ_S_TIMER
    sltu a0, a0, s2
    CHECK 10, a0, 0
    li t0, -1
    csrw CSR_STIMECMP, t0

    /* ---- supervisor software interrupt raised by S itself ---- */
    li t0, MIP_SSIP
    csrs sie, t0
    S_EXPECT_TRAP 3f
    csrsi sstatus, MSTATUS_SIE
    csrs sip, t0
    li t0, SPIN
2:  addi t0, t0, -1
    bnez t0, 2b
    FAIL_IF_REACHED 11
3:  CHECK 11, s9, CAUSE_INTR | IRQ_S_SOFT
    li t0, MIP_SSIP
    csrc sip, t0
    csrr a0, sip
    CHECK_BITS 12, a0, MIP_SSIP, 0
    csrw sie, zero
    EXPECT_TRAP m_main
    ecall

m_main:
    /* ---- access control for stimecmp ---- */
    li t0, MENVCFG_STCE
    csrc CSR_MENVCFG, t0
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  csrr a0, CSR_STIMECMP
2:  CHECK 13, s9, CAUSE_ILLEGAL_INSN
    li t0, MENVCFG_STCE
    csrs CSR_MENVCFG, t0
    li t0, 2
    csrc mcounteren, t0
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  csrw CSR_STIMECMP, zero
2:  CHECK 14, s9, CAUSE_ILLEGAL_INSN

    /* ---- STCE = 0: STIP is an M-writable bit ---- */
    li t0, MENVCFG_STCE
    csrc CSR_MENVCFG, t0
    csrw mideleg, zero
    li t0, MIP_STIP
    csrs mip, t0
    csrr a0, mip
    CHECK_BITS 15, a0, MIP_STIP, MIP_STIP
    csrc mip, t0
    csrr a0, mip
    CHECK_BITS 16, a0, MIP_STIP, 0

    TEST_PASS
