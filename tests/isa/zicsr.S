/*
 * zicsr.S - Zicsr instructions and CSR access rules.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 9 ("Zicsr"): CSRRW reads
 * the old value into rd (no read side effects when rd = x0) and writes rs1;
 * CSRRS/CSRRC set/clear the bits that are 1 in rs1 and do not write the CSR
 * at all when rs1 = x0; the immediate forms use a 5-bit zero-extended uimm
 * and do not write when uimm = 0.  Privileged ISA 1.12, 2.1: CSR address
 * bits [11:10] = 0b11 mean read-only (any write attempt is an illegal
 * instruction), bits [9:8] give the lowest privilege that may access it;
 * accessing a CSR without the privilege, or a non-existent CSR, raises
 * illegal instruction.  3.1.16: mtval holds the faulting instruction bits on
 * an illegal instruction (keel and QEMU both do this).  3.1.1 misa:
 * MXL = 2 for RV64; 3.1.5 mhartid = 0 on a single-hart system ("at least one
 * hart must have a hart ID of zero").  4.1.1 sstatus is a restricted view of
 * mstatus.  (Not tested: 3.1.14 "mepc[0] is always zero" - QEMU 7.2 keeps
 * bit 0 of a value written to mepc.)
 *
 * Check numbers:
 *    1-12   CSRRW/CSRRS/CSRRC and CSRRWI/CSRRSI/CSRRCI on mscratch: old value
 *           returned, new value written; rd == rs1 swap
 *   13-17   rs1 = x0 / uimm = 0 forms read read-only CSRs without trapping
 *           (mhartid, mvendorid, cycle, time); mhartid = 0
 *   18-27   writes to read-only CSRs raise illegal instruction with mtval =
 *           instruction bits: csrw mhartid, csrrsi cycle, csrrs time (rs1
 *           nonzero), csrw marchid, csrrci mimpid (uimm nonzero)
 *   28-29   a non-existent CSR (0x0ff) raises illegal instruction
 *   30-31   misa: MXL = 2; I, M, A, F, D, C, S, U present
 *   32      sscratch and mscratch are distinct registers
 *   33-34   sstatus hides the M fields MPP and MIE, and setting those bits
 *           through sstatus leaves mstatus unchanged
 *   35-44   from S-mode: mstatus, mscratch, mie (write), mhartid are
 *           illegal (mtval = bits), sscratch/sstatus are accessible
 *   45-50   from U-mode: sstatus, sscratch, mstatus are illegal; fflags
 *           (user CSR) is accessible
 */
#include "keel_test.h"

/* "insn" must raise illegal instruction; check n = cause, n+1 = mtval */
.macro ILLEGAL n, insn:vararg
    EXPECT_TRAP .Lt\@
.Li\@:
    \insn
    FAIL_IF_REACHED \n
.Lt\@:
    CHECK \n, s9, CAUSE_ILLEGAL_INSN
    la t0, .Li\@
    lwu t1, 0(t0)
    CHECK_REG \n+1, s11, t1
.endm

keel_main:
    /* ---- register forms ---- */
    li a1, 0x0123456789abcdef
    csrrw a0, mscratch, a1
    CHECK 1, a0, 0
    csrr a0, mscratch
    CHECK 2, a0, 0x0123456789abcdef
    li a2, 0xf000000000000010
    csrrs a0, mscratch, a2
    CHECK 3, a0, 0x0123456789abcdef
    csrr a0, mscratch
    CHECK 4, a0, 0xf123456789abcdff
    li a3, 0x0f0000000000000f
    csrrc a0, mscratch, a3
    CHECK 5, a0, 0xf123456789abcdff
    csrr a0, mscratch
    CHECK 6, a0, 0xf023456789abcdf0
    /* ---- immediate forms ---- */
    csrrwi a0, mscratch, 0x1f
    CHECK 7, a0, 0xf023456789abcdf0
    csrrsi a0, mscratch, 0x10            /* bit 4 already set */
    CHECK 8, a0, 0x1f
    csrrci a0, mscratch, 0x5
    CHECK 9, a0, 0x1f
    csrr a0, mscratch
    CHECK 10, a0, 0x1a
    csrrsi zero, mscratch, 0x1            /* rd = x0 still writes */
    csrr a0, mscratch
    CHECK 11, a0, 0x1b
    li a0, 0x55
    csrrw a0, mscratch, a0               /* rd == rs1: swap */
    csrr a1, mscratch
    add a0, a0, a1
    CHECK 12, a0, 0x1b + 0x55

    /* ---- no-write forms on read-only CSRs ---- */
    csrrs a0, mhartid, zero
    CHECK 13, a0, 0
    csrrsi a0, mhartid, 0
    CHECK 14, a0, 0
    csrrci a0, mvendorid, 0
    csrrc a0, cycle, zero
    csrrs a0, time, zero
    li TESTNUM, 15                       /* got here: no trap */
    rdcycle a0
    rdcycle a1
    sltu a0, a1, a0
    CHECK 16, a0, 0                      /* cycle did not go backwards */
    csrr a0, mhartid
    CHECK 17, a0, 0

    /* ---- writes to read-only CSRs ---- */
    ILLEGAL 18, csrw mhartid, zero
    ILLEGAL 20, csrrsi a0, cycle, 1
    li a1, 4
    ILLEGAL 22, csrrs a0, time, a1
    ILLEGAL 24, csrw marchid, a1
    ILLEGAL 26, csrrci a0, mimpid, 2

    /* ---- a CSR that does not exist ---- */
    ILLEGAL 28, csrr a0, 0x0ff

    /* ---- misa ---- */
    csrr a0, misa
    srli a1, a0, 62
    CHECK 30, a1, 2
    li t0, (1 << 0) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20)
    and a1, a0, t0
    CHECK_REG 31, a1, t0

    /* ---- sscratch / sstatus views ---- */
    li a0, 0x1111
    csrw sscratch, a0
    li a0, 0x2222
    csrw mscratch, a0
    csrr a1, sscratch
    CHECK 32, a1, 0x1111
    li t0, MSTATUS_MPP | MSTATUS_MIE
    csrc mstatus, t0
    li t0, MSTATUS_MPP_S
    csrs mstatus, t0                     /* MPP = S, MIE = 0 */
    li t0, MSTATUS_MIE | MSTATUS_MPP
    csrs sstatus, t0                     /* not sstatus fields: ignored */
    csrr a0, sstatus
    csrr a1, mstatus
    CHECK_BITS 33, a0, MSTATUS_MIE | MSTATUS_MPP, 0   /* hidden in sstatus */
    CHECK_BITS 34, a1, MSTATUS_MIE | MSTATUS_MPP, MSTATUS_MPP_S /* unchanged */

    /* ---- S-mode ---- */
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  csrr a0, mstatus
2:  CHECK 35, s9, CAUSE_ILLEGAL_INSN
    la t0, 1b
    lwu t1, 0(t0)
    CHECK_REG 36, s11, t1
    csrr a0, mstatus
    CHECK_BITS 37, a0, MSTATUS_MPP, MSTATUS_MPP_S
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  csrr a0, mscratch
2:  CHECK 38, s9, CAUSE_ILLEGAL_INSN
    la t0, 1b
    lwu t1, 0(t0)
    CHECK_REG 39, s11, t1
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  csrw mie, zero
2:  CHECK 40, s9, CAUSE_ILLEGAL_INSN
    la t0, 1b
    lwu t1, 0(t0)
    CHECK_REG 41, s11, t1
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  csrr a0, mhartid
2:  CHECK 42, s9, CAUSE_ILLEGAL_INSN
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  li a0, 0x5151
    csrw sscratch, a0
    csrr a1, sscratch
    csrr a2, sstatus
    ecall
2:  CHECK 43, s9, CAUSE_SUPERVISOR_ECALL
    CHECK 44, a1, 0x5151

    /* ---- U-mode ---- */
    EXPECT_TRAP 2f
    GOTO_MODE 0, 1f
1:  csrr a0, sstatus
2:  CHECK 45, s9, CAUSE_ILLEGAL_INSN
    la t0, 1b
    lwu t1, 0(t0)
    CHECK_REG 46, s11, t1
    EXPECT_TRAP 2f
    GOTO_MODE 0, 1f
1:  csrw sscratch, zero
2:  CHECK 47, s9, CAUSE_ILLEGAL_INSN
    EXPECT_TRAP 2f
    GOTO_MODE 0, 1f
1:  csrr a0, mstatus
2:  CHECK 48, s9, CAUSE_ILLEGAL_INSN
    li t0, MSTATUS_FS_INITIAL
    csrs mstatus, t0
    EXPECT_TRAP 2f
    GOTO_MODE 0, 1f
1:  csrwi fflags, 0x3
    csrr a1, fflags
    ecall
2:  CHECK 49, s9, CAUSE_USER_ECALL
    CHECK 50, a1, 0x3

    TEST_PASS
