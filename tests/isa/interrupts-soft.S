/*
 * interrupts-soft.S - machine software interrupt through the CLINT msip
 * register, in direct and vectored mtvec modes.
 *
 * Spec: RISC-V Privileged ISA 1.12:
 *  - 3.1.9 mip.MSIP (bit 3) is read-only in mip; it is written through a
 *    memory-mapped register (CLINT msip for hart 0 at 0x0200_0000; only
 *    bit 0 exists, the others read as zero - SiFive CLINT / RISC-V ACLINT
 *    MSWI).  Taken when mie.MSIE and mstatus.MIE: mcause = 0x8000_..._0003,
 *    mepc = the interrupted instruction; MRET returns there.
 *  - 3.1.7 mtvec MODE = 1 (vectored): interrupts go to BASE + 4 * cause.
 *
 * Check numbers:
 *    1      msip = 0: mip.MSIP clear
 *    2-3    msip = 1 (written as 0xffffffff): mip.MSIP set, msip reads 1
 *    4      not taken with mstatus.MIE = 0
 *    5-7    taken once enabled: mcause, mepc in the spin loop; the handler's
 *           msip = 0 clears mip.MSIP
 *    8      MRET resumed the interrupted loop (it finished counting)
 *    9-10   vectored mtvec: the interrupt enters at BASE + 12, mcause
 */
#include "keel_test.h"

#define SPIN 20000000

keel_main:
    li s0, CLINT_MSIP
    sw zero, 0(s0)
    csrr a0, mip
    CHECK_BITS 1, a0, MIP_MSIP, 0
    li t0, 0xffffffff
    sw t0, 0(s0)
    li TESTNUM, 2
    li t1, SPIN
1:  csrr a0, mip
    andi a0, a0, MIP_MSIP
    bnez a0, 2f
    addi t1, t1, -1
    bnez t1, 1b
    j keel_fail
2:  lw a0, 0(s0)
    CHECK 3, a0, 1

    li t0, MIP_MSIP
    csrs mie, t0
    SET_TEST 4
    li t0, 1000
1:  addi t0, t0, -1
    bnez t0, 1b

    /* ---- taken: own handler that clears msip and returns ---- */
    la t0, msi_handler
    csrw mtvec, t0
    li s1, 0                                /* handler count */
    li s2, 0                                /* loop count */
    csrsi mstatus, MSTATUS_MIE
1:  li t0, 1000
2:  addi s2, s2, 1
    addi t0, t0, -1
    bnez t0, 2b
3:  csrci mstatus, MSTATUS_MIE
    CHECK 5, s1, 1
    CHECK 5, s9, CAUSE_INTR | IRQ_M_SOFT
    la t0, 1b
    sltu t0, s10, t0
    CHECK 6, t0, 0
    la t0, 3b
    sltu t0, s10, t0
    CHECK 6, t0, 1
    csrr a0, mip
    CHECK_BITS 7, a0, MIP_MSIP, 0
    CHECK 8, s2, 1000

    /* ---- vectored ---- */
    la t0, vtable
    ori t0, t0, 1
    csrw mtvec, t0
    li s1, 0
    li t0, 1
    sw t0, 0(s0)
    csrsi mstatus, MSTATUS_MIE
    li t0, SPIN
1:  bnez s1, 2f
    addi t0, t0, -1
    bnez t0, 1b
2:  csrci mstatus, MSTATUS_MIE
    CHECK 9, s1, 3                          /* entered at slot 3 */
    CHECK 10, s9, CAUSE_INTR | IRQ_M_SOFT

    la t0, keel_mtrap
    csrw mtvec, t0
    csrw mie, zero
    TEST_PASS

    .balign 4
msi_handler:
    csrr s9, mcause
    csrr s10, mepc
    li t6, CAUSE_INTR | IRQ_M_SOFT
    bne s9, t6, keel_mtrap_unexpected
    addi s1, s1, 1
    li t6, CLINT_MSIP
    sw zero, 0(t6)
    mret

    .balign 256
vtable:
    j keel_mtrap                            /* 0: exceptions */
    j vslot_bad
    j vslot_bad
    j vslot3                                /* 3: MSI */
    j vslot_bad
    j vslot_bad
    j vslot_bad
    j vslot_bad
    j vslot_bad
    j vslot_bad
    j vslot_bad
    j vslot_bad
vslot_bad:
    csrr s9, mcause
    j keel_mtrap_unexpected
vslot3:
    csrr s9, mcause
    li s1, 3
    li t6, CLINT_MSIP
    sw zero, 0(t6)
    mret
