/*
 * interrupts-plic.S - external interrupts: 16550 UART THRE interrupt routed
 * through the PLIC to hart 0 M-mode (context 0) and S-mode (context 1).
 *
 * Spec: RISC-V PLIC specification 1.0.0: priority of source i at 4*i,
 * pending bits at 0x1000, enables of context c at 0x2000 + 0x80*c,
 * threshold at 0x20_0000 + 0x1000*c, claim/complete at threshold + 4.  An
 * interrupt is delivered to a context when it is pending, enabled there, and
 * its priority is > the context's threshold; a claim returns the ID (0 when
 * none) and clears its pending bit; the gateway forwards the source again
 * only after the completion.  Privileged ISA 1.12, 3.1.9: mip.MEIP (bit 11)
 * is the context-0 line, mcause = 0x8000_..._000b; mip.SEIP (bit 9) as read
 * by CSR instructions includes the context-1 line.  16550 UART (at
 * 0x1000_0000, PLIC source 10): IER bit 1 (ETBEI) enables the "transmit
 * holding register empty" interrupt, asserted while THR is empty.
 * QEMU 7.2's PLIC does not re-evaluate its outputs when an enable register
 * is written (only on threshold/claim/complete/source changes), so each
 * enable write below is followed by a (same-value) threshold write; that
 * is harmless on any PLIC.
 *
 * Check numbers:
 *    1      UART interrupt disabled: MEIP clear
 *    2-3    IER.ETBEI = 1: PLIC pending bit 10 set, mip.MEIP set
 *    4-5    threshold 1 (= priority) masks it; threshold 0 unmasks it
 *    6-7    disabling source 10 in context 0 masks it; enabling unmasks it
 *    8-9    with mie.MEIE and MIE: trap, mcause = 0x800000000000000b
 *   10-11   claim returns 10 and clears the pending bit
 *   12-13   after IER = 0 and complete: MEIP clear; claim with nothing
 *           pending returns 0
 *   14-17   source enabled only in context 1 (S-mode): mip.SEIP set while
 *           MEIP stays clear; claim from context 1 returns 10; SEIP clear
 *           after IER = 0 and complete
 */
#include "keel_test.h"

#define SPIN 20000000
#define UART_IER (UART_BASE + 1)
#define UART_LCR (UART_BASE + 3)

/* poll mip until (mip & bit) == want; check n */
.macro WAIT_MIP n, bit, want
    li TESTNUM, \n
    li t1, SPIN
.Lw\@:
    csrr t0, mip
    li t2, \bit
    and t0, t0, t2
    li t2, \want
    beq t0, t2, .Ld\@
    addi t1, t1, -1
    bnez t1, .Lw\@
    j keel_fail
.Ld\@:
.endm

keel_main:
    li s0, UART_BASE
    sb zero, 1(s0)                          /* IER = 0 */
    li t0, 0x03
    sb t0, 3(s0)                            /* LCR: 8N1, DLAB = 0 */
    li s1, PLIC_BASE
    li t0, 1
    sw t0, 4 * UART_IRQ(s1)                 /* priority 1 */
    li s2, PLIC_ENABLE(0)
    li t0, 1 << UART_IRQ
    sw t0, 0(s2)
    li s4, PLIC_ENABLE(1)
    sw zero, 0(s4)
    li s3, PLIC_THRESH(0)
    sw zero, 0(s3)
    li s5, PLIC_THRESH(1)
    sw zero, 0(s5)

    WAIT_MIP 1, MIP_MEIP, 0
    li t0, 0x02
    sb t0, 1(s0)                            /* IER.ETBEI */
    li TESTNUM, 2
    li t1, SPIN
    li s6, PLIC_PENDING
1:  lw a0, 0(s6)
    srli a0, a0, UART_IRQ
    andi a0, a0, 1
    bnez a0, 2f
    addi t1, t1, -1
    bnez t1, 1b
    j keel_fail
2:  WAIT_MIP 3, MIP_MEIP, MIP_MEIP

    li t0, 1
    sw t0, 0(s3)                            /* threshold 1 */
    WAIT_MIP 4, MIP_MEIP, 0
    sw zero, 0(s3)
    WAIT_MIP 5, MIP_MEIP, MIP_MEIP
    sw zero, 0(s2)                          /* disable source 10 */
    sw zero, 0(s3)                          /* (threshold rewrite: QEMU) */
    WAIT_MIP 6, MIP_MEIP, 0
    li t0, 1 << UART_IRQ
    sw t0, 0(s2)
    sw zero, 0(s3)
    WAIT_MIP 7, MIP_MEIP, MIP_MEIP

    /* ---- take it ---- */
    li t0, MIP_MEIP
    csrs mie, t0
    EXPECT_TRAP 3f
    csrsi mstatus, MSTATUS_MIE
    li t0, SPIN
2:  addi t0, t0, -1
    bnez t0, 2b
    FAIL_IF_REACHED 8
3:  CHECK 8, s9, CAUSE_INTR | IRQ_M_EXT
    csrr a0, mstatus
    CHECK_BITS 9, a0, MSTATUS_MIE, 0
    lw a0, 4(s3)                            /* claim */
    CHECK 10, a0, UART_IRQ
    lw a1, 0(s6)
    srli a1, a1, UART_IRQ
    andi a1, a1, 1
    CHECK 11, a1, 0
    sb zero, 1(s0)                          /* IER = 0: source quiet */
    sw a0, 4(s3)                            /* complete */
    WAIT_MIP 12, MIP_MEIP, 0
    lw a0, 4(s3)
    CHECK 13, a0, 0
    csrw mie, zero

    /* ---- context 1: supervisor external interrupt ---- */
    sw zero, 0(s2)                          /* not to context 0 */
    li t0, 1 << UART_IRQ
    sw t0, 0(s4)                            /* to context 1 */
    li t0, 0x02
    sb t0, 1(s0)
    WAIT_MIP 14, MIP_SEIP, MIP_SEIP
    csrr a0, mip
    CHECK_BITS 15, a0, MIP_MEIP, 0
    lw a0, 4(s5)                            /* claim, context 1 */
    CHECK 16, a0, UART_IRQ
    sb zero, 1(s0)
    sw a0, 4(s5)
    WAIT_MIP 17, MIP_SEIP, 0
    sw zero, 0(s4)

    TEST_PASS
