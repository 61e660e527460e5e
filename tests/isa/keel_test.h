/*
 * keel_test.h - shared environment for keel's bare-metal ISA test programs.
 *
 * Include this once at the top of every tests/isa/<group>.S.  It provides:
 *   - _start (section .text.init, linked at 0x8000_0000): puts the hart in a
 *     known state (see "Initial state" below) and jumps to keel_main, which
 *     the test program defines in .text;
 *   - the exit protocol (tohost + SiFive test finisher), keel_pass/keel_fail;
 *   - a default M-mode trap handler (keel_mtrap) and S-mode trap handler
 *     (keel_strap) that either resume at an "expected trap" address or fail;
 *   - CHECK macros, privilege-switch macros and platform constants.
 *
 * Conventions
 *   gp (x3) = TESTNUM, the number of the check being executed.  A failing
 *   check exits with code TESTNUM.  An unexpected trap exits with the current
 *   TESTNUM as well (code 1023 if no check has started yet).
 *   t5, t6 are scratch registers of the macros below.
 *   s9, s10, s11 and t6 are written by the trap handlers:
 *       s9 = xcause, s10 = xepc, s11 = xtval of the last trap taken by
 *       keel_mtrap (M) or keel_strap (S).
 *   All code is assembled with .option norvc (no compressed instructions) so
 *   that only rv64c.S depends on the C decoder; rv64c.S turns RVC on itself.
 *
 * Exit protocol (what the keel runner and QEMU look for)
 *   tohost <- (code << 1) | 1      code 0 = pass, N >= 1 = first failing check
 *   then the SiFive test finisher at 0x0010_0000 (32-bit store):
 *       0x5555 on pass, (code << 16) | 0x3333 on failure
 *   QEMU -M virt exits with status code & 0xff; keel stops at the tohost write.
 *
 * Initial state set by _start (M-mode): x1..x31 = 0 (then sp = __stack_top,
 * gp = 0), f0..f31 = +0.0, fcsr = 0, mstatus = FS=Initial only (MIE=0, MPP=U,
 * MPRV=0 ...), mie = mip(writable bits) = medeleg = mideleg = 0, satp = 0,
 * mtvec = keel_mtrap (direct), stvec = keel_strap (direct),
 * mcounteren = scounteren = 0, menvcfg = 0, pmpaddr0 = -1 and
 * pmpcfg0 = 0x1f (NAPOT RWX over all memory, needed by QEMU to let S/U run;
 * keel ignores it), .bss zeroed, mtimecmp = -1 (no timer interrupt pending).
 */
#ifndef KEEL_TEST_H
#define KEEL_TEST_H

#define TESTNUM gp

/* ---------------------------------------------------------------- platform */
#define RAM_BASE        0x80000000
#define FINISHER_BASE   0x00100000
#define FINISHER_PASS   0x5555
#define FINISHER_FAIL   0x3333
#define CLINT_BASE      0x02000000
#define CLINT_MSIP      0x02000000
#define CLINT_MTIMECMP  0x02004000
#define CLINT_MTIME     0x0200bff8
#define PLIC_BASE       0x0c000000
#define PLIC_PENDING    0x0c001000
#define PLIC_ENABLE(c)  (0x0c002000 + 0x80 * (c))
#define PLIC_THRESH(c)  (0x0c200000 + 0x1000 * (c))
#define PLIC_CLAIM(c)   (0x0c200004 + 0x1000 * (c))
#define UART_BASE       0x10000000
#define UART_IRQ        10

/* ------------------------------------------------------------ CSR numbers */
/* (numeric where binutils 2.40 lacks the name) */
#define CSR_MENVCFG     0x30a
#define CSR_SENVCFG     0x10a
#define CSR_STIMECMP    0x14d

/* ---------------------------------------------------------------- mstatus */
#define MSTATUS_SIE     (1 << 1)
#define MSTATUS_MIE     (1 << 3)
#define MSTATUS_SPIE    (1 << 5)
#define MSTATUS_MPIE    (1 << 7)
#define MSTATUS_SPP     (1 << 8)
#define MSTATUS_MPP     (3 << 11)
#define MSTATUS_MPP_U   (0 << 11)
#define MSTATUS_MPP_S   (1 << 11)
#define MSTATUS_MPP_M   (3 << 11)
#define MSTATUS_FS      (3 << 13)
#define MSTATUS_FS_OFF      (0 << 13)
#define MSTATUS_FS_INITIAL  (1 << 13)
#define MSTATUS_FS_CLEAN    (2 << 13)
#define MSTATUS_FS_DIRTY    (3 << 13)
#define MSTATUS_XS      (3 << 15)
#define MSTATUS_MPRV    (1 << 17)
#define MSTATUS_SUM     (1 << 18)
#define MSTATUS_MXR     (1 << 19)
#define MSTATUS_TVM     (1 << 20)
#define MSTATUS_TW      (1 << 21)
#define MSTATUS_TSR     (1 << 22)
#define MSTATUS_UXL     (3 << 32)
#define MSTATUS_SXL     (3 << 34)
#define MSTATUS_SD      0x8000000000000000

/* ------------------------------------------------------- interrupt bits */
#define IRQ_S_SOFT      1
#define IRQ_M_SOFT      3
#define IRQ_S_TIMER     5
#define IRQ_M_TIMER     7
#define IRQ_S_EXT       9
#define IRQ_M_EXT       11
#define MIP_SSIP        (1 << IRQ_S_SOFT)
#define MIP_MSIP        (1 << IRQ_M_SOFT)
#define MIP_STIP        (1 << IRQ_S_TIMER)
#define MIP_MTIP        (1 << IRQ_M_TIMER)
#define MIP_SEIP        (1 << IRQ_S_EXT)
#define MIP_MEIP        (1 << IRQ_M_EXT)
#define CAUSE_INTR      0x8000000000000000

/* ------------------------------------------------------- exception causes */
#define CAUSE_MISALIGNED_FETCH  0
#define CAUSE_FETCH_ACCESS      1
#define CAUSE_ILLEGAL_INSN      2
#define CAUSE_BREAKPOINT        3
#define CAUSE_MISALIGNED_LOAD   4
#define CAUSE_LOAD_ACCESS       5
#define CAUSE_MISALIGNED_STORE  6
#define CAUSE_STORE_ACCESS      7
#define CAUSE_USER_ECALL        8
#define CAUSE_SUPERVISOR_ECALL  9
#define CAUSE_MACHINE_ECALL     11
#define CAUSE_FETCH_PAGE_FAULT  12
#define CAUSE_LOAD_PAGE_FAULT   13
#define CAUSE_STORE_PAGE_FAULT  15

/* ------------------------------------------------------------------- satp */
#define SATP_MODE_SV39  (8 << 60)
#define SATP_MODE_SV48  (9 << 60)

/* -------------------------------------------------------------- PTE bits */
#define PTE_V   (1 << 0)
#define PTE_R   (1 << 1)
#define PTE_W   (1 << 2)
#define PTE_X   (1 << 3)
#define PTE_U   (1 << 4)
#define PTE_G   (1 << 5)
#define PTE_A   (1 << 6)
#define PTE_D   (1 << 7)

/* ================================================================ macros */

/* CHECK n, reg, value: check number n passes iff reg == value (64-bit). */
.macro CHECK n, reg, val
    li TESTNUM, \n
    li t6, \val
    beq \reg, t6, .Lck_ok\@
    j keel_fail
.Lck_ok\@:
.endm

/* CHECK_REG n, ra, rb: check n passes iff ra == rb. */
.macro CHECK_REG n, ra, rb
    li TESTNUM, \n
    beq \ra, \rb, .Lck_ok\@
    j keel_fail
.Lck_ok\@:
.endm

/* CHECK_ADDR n, reg, symbol: check n passes iff reg == &symbol. */
.macro CHECK_ADDR n, reg, sym
    li TESTNUM, \n
    la t6, \sym
    beq \reg, t6, .Lck_ok\@
    j keel_fail
.Lck_ok\@:
.endm

/* CHECK_NE n, reg, value: check n passes iff reg != value. */
.macro CHECK_NE n, reg, val
    li TESTNUM, \n
    li t6, \val
    bne \reg, t6, .Lck_ok\@
    j keel_fail
.Lck_ok\@:
.endm

/* CHECK_BITS n, reg, mask, value: passes iff (reg & mask) == value. */
.macro CHECK_BITS n, reg, mask, val
    li TESTNUM, \n
    li t6, \mask
    and t6, \reg, t6
    li t5, \val
    beq t5, t6, .Lck_ok\@
    j keel_fail
.Lck_ok\@:
.endm

/* SET_TEST n: set TESTNUM (for checks done by hand). */
.macro SET_TEST n
    li TESTNUM, \n
.endm

/* FAIL_IF_REACHED n: check n fails if execution gets here (e.g. after an
 * instruction that must have trapped). */
.macro FAIL_IF_REACHED n
    li TESTNUM, \n
    j keel_fail
.endm

/* TEST_PASS: end of the test, all checks passed (M-mode only). */
.macro TEST_PASS
    j keel_pass
.endm

/* EXPECT_TRAP label: the next trap taken by keel_mtrap resumes at label, in
 * M-mode, with s9/s10/s11 = mcause/mepc/mtval and mstatus as the trap left it
 * (MPP/MPIE describe the trapping context).  One-shot. */
.macro EXPECT_TRAP label
    la t5, keel_trap_resume
    la t6, \label
    sd t6, 0(t5)
.endm

/* EXPECT_TRAP_SKIP: the next trap taken by keel_mtrap records s9/s10/s11 and
 * returns with mret to the instruction after the trapping one (mepc + 2 or
 * + 4 by its encoding; mepc must be readable at the same physical address). */
.macro EXPECT_TRAP_SKIP
    la t5, keel_trap_resume
    li t6, 1
    sd t6, 0(t5)
.endm

/* CANCEL_TRAP: disarm a pending EXPECT_TRAP. */
.macro CANCEL_TRAP
    la t5, keel_trap_resume
    sd zero, 0(t5)
.endm

/* S_EXPECT_TRAP label / S_EXPECT_TRAP_SKIP: the same for keel_strap
 * (scause/sepc/stval; resumes in S-mode).  Usable in M or S mode. */
.macro S_EXPECT_TRAP label
    la t5, keel_strap_resume
    la t6, \label
    sd t6, 0(t5)
.endm
.macro S_EXPECT_TRAP_SKIP
    la t5, keel_strap_resume
    li t6, 1
    sd t6, 0(t5)
.endm

/* GOTO_MODE mode, label: from M-mode, mret to label in privilege mode
 * (0 = U, 1 = S, 3 = M).  Clears MPIE first, so the target runs with
 * mstatus.MIE = 0.  Clobbers t6. */
.macro GOTO_MODE mode, label
    li t6, MSTATUS_MPP | MSTATUS_MPIE
    csrc mstatus, t6
    li t6, (\mode << 11)
    csrs mstatus, t6
    la t6, \label
    csrw mepc, t6
    mret
.endm

/* S_GOTO_U label: from S-mode, sret to label in U-mode (SPIE cleared).
 * Clobbers t6. */
.macro S_GOTO_U label
    li t6, MSTATUS_SPP | MSTATUS_SPIE
    csrc sstatus, t6
    la t6, \label
    csrw sepc, t6
    sret
.endm

/* ====================================================== start-up code */
    .option norvc
    .option nopic       /* la = auipc+addi, never a GOT load */
    .section .text.init, "ax", @progbits
    .globl _start
_start:
    li x1, 0
    li x2, 0
    li x3, 0
    li x4, 0
    li x5, 0
    li x6, 0
    li x7, 0
    li x8, 0
    li x9, 0
    li x10, 0
    li x11, 0
    li x12, 0
    li x13, 0
    li x14, 0
    li x15, 0
    li x16, 0
    li x17, 0
    li x18, 0
    li x19, 0
    li x20, 0
    li x21, 0
    li x22, 0
    li x23, 0
    li x24, 0
    li x25, 0
    li x26, 0
    li x27, 0
    li x28, 0
    li x29, 0
    li x30, 0
    li x31, 0
    la t0, keel_mtrap
    csrw mtvec, t0
    csrw mie, zero
    li t0, MSTATUS_FS_INITIAL
    csrw mstatus, t0
    csrw medeleg, zero
    csrw mideleg, zero
    csrw mip, zero
    csrw satp, zero
    csrw mscratch, zero
    csrw sscratch, zero
    csrw mcounteren, zero
    csrw scounteren, zero
    csrw CSR_MENVCFG, zero
    la t0, keel_strap
    csrw stvec, t0
    li t0, -1
    csrw pmpaddr0, t0
    li t0, 0x1f
    csrw pmpcfg0, t0
    /* timer compare far in the future */
    li t0, CLINT_MTIMECMP
    li t1, -1
    sd t1, 0(t0)
    /* FP state: all registers +0.0, fcsr 0, then FS back to Initial */
    csrw fcsr, zero
    fmv.d.x f0, zero
    fmv.d.x f1, zero
    fmv.d.x f2, zero
    fmv.d.x f3, zero
    fmv.d.x f4, zero
    fmv.d.x f5, zero
    fmv.d.x f6, zero
    fmv.d.x f7, zero
    fmv.d.x f8, zero
    fmv.d.x f9, zero
    fmv.d.x f10, zero
    fmv.d.x f11, zero
    fmv.d.x f12, zero
    fmv.d.x f13, zero
    fmv.d.x f14, zero
    fmv.d.x f15, zero
    fmv.d.x f16, zero
    fmv.d.x f17, zero
    fmv.d.x f18, zero
    fmv.d.x f19, zero
    fmv.d.x f20, zero
    fmv.d.x f21, zero
    fmv.d.x f22, zero
    fmv.d.x f23, zero
    fmv.d.x f24, zero
    fmv.d.x f25, zero
    fmv.d.x f26, zero
    fmv.d.x f27, zero
    fmv.d.x f28, zero
    fmv.d.x f29, zero
    fmv.d.x f30, zero
    fmv.d.x f31, zero
    li t0, MSTATUS_FS_INITIAL
    csrw mstatus, t0
    /* zero .bss */
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  la sp, __stack_top
    li t0, 0
    li t1, 0
    li TESTNUM, 0
    j keel_main

/* ======================================================= exit protocol */
    .section .text.init, "ax", @progbits
    .balign 4
    .globl keel_pass
keel_pass:
    li a0, 0
    j keel_exit
    .globl keel_fail
keel_fail:
    mv a0, TESTNUM
    bnez a0, keel_exit
    li a0, 1023
    /* a0 = exit code.  Must run in M-mode: in S/U the csrc below traps to
     * keel_mtrap, which reports the failure with the current TESTNUM. */
keel_exit:
    li t0, MSTATUS_MPRV | MSTATUS_MIE
    csrc mstatus, t0
    slli t1, a0, 1
    ori t1, t1, 1
    la t0, tohost
    sd t1, 0(t0)
    fence
    li t0, FINISHER_BASE
    li t1, FINISHER_PASS
    beqz a0, 1f
    slli t1, a0, 16
    li t2, FINISHER_FAIL
    or t1, t1, t2
1:  sw t1, 0(t0)
2:  wfi
    j 2b

/* ================================================== M-mode trap handler */
    .balign 64
    .globl keel_mtrap
keel_mtrap:
    la s11, keel_trap_resume
    ld t6, 0(s11)
    sd zero, 0(s11)
    csrr s9, mcause
    csrr s10, mepc
    csrr s11, mtval
    beqz t6, keel_mtrap_unexpected
    addi t6, t6, -1
    beqz t6, 1f
    addi t6, t6, 1
    jr t6
1:  /* skip the trapping instruction: length from its low two bits */
    lhu t6, 0(s10)
    andi t6, t6, 3
    addi t6, t6, -3
    bnez t6, 2f
    addi t6, s10, 4
    j 3f
2:  addi t6, s10, 2
3:  csrw mepc, t6
    mret
keel_mtrap_unexpected:
    la t6, keel_trap_dump
    sd s9, 0(t6)
    sd s10, 8(t6)
    sd s11, 16(t6)
    j keel_fail

/* ================================================== S-mode trap handler */
/* Runs wherever S-mode code runs; the test must keep keel_strap and its
 * data at VA == PA (identity map) when paging is on. */
    .balign 64
    .globl keel_strap
keel_strap:
    la s11, keel_strap_resume
    ld t6, 0(s11)
    sd zero, 0(s11)
    csrr s9, scause
    csrr s10, sepc
    csrr s11, stval
    beqz t6, keel_strap_unexpected
    addi t6, t6, -1
    beqz t6, 1f
    addi t6, t6, 1
    jr t6
1:  lhu t6, 0(s10)
    andi t6, t6, 3
    addi t6, t6, -3
    bnez t6, 2f
    addi t6, s10, 4
    j 3f
2:  addi t6, s10, 2
3:  csrw sepc, t6
    sret
keel_strap_unexpected:
    /* Disarm any M-mode expectation, then trap to M: keel_mtrap reports
     * the failure with the current TESTNUM. */
    la t6, keel_trap_resume
    sd zero, 0(t6)
    la t6, keel_trap_dump
    sd s9, 24(t6)
    sd s10, 32(t6)
    sd s11, 40(t6)
    ecall
    j keel_strap_unexpected

/* ================================================================ data */
    .section .tohost, "aw", @progbits
    .balign 64
    .globl tohost
tohost: .dword 0
    .balign 64
    .globl fromhost
fromhost: .dword 0

    .data
    .balign 8
    .globl keel_trap_resume
keel_trap_resume:  .dword 0
    .globl keel_strap_resume
keel_strap_resume: .dword 0
    /* mcause, mepc, mtval of an unexpected M trap; then scause, sepc,
     * stval of an unexpected S trap (debugging aid) */
    .globl keel_trap_dump
keel_trap_dump:    .dword 0, 0, 0, 0, 0, 0

/* test code follows in .text; it must define keel_main */
    .text
    .balign 4

#endif /* KEEL_TEST_H */
