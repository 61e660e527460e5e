/*
 * fp-fs.S - mstatus.FS: floating-point unit off/initial/clean/dirty tracking.
 *
 * Spec: RISC-V Privileged ISA 1.12, 3.1.6.6 "Extension Context Status in
 * mstatus Register": FS = 0 Off, 1 Initial, 2 Clean, 3 Dirty.  "When an
 * extension's status is set to Off, any instruction that attempts to read or
 * write the corresponding state will cause an illegal instruction exception"
 * (FP loads/stores/moves/arithmetic and the fflags/frm/fcsr CSRs).  Any
 * instruction that modifies FP state (f registers or fcsr) sets FS to Dirty;
 * SD (bit 63) is the read-only summary FS==Dirty || XS==Dirty || VS==Dirty.
 * (Implementations may also set Dirty when nothing changed, so no check
 * here depends on FS staying Clean.)  sstatus.FS/SD are views of the same
 * bits (4.1.1).  mtval = the instruction bits on illegal instruction (3.1.16;
 * keel and QEMU both report them).
 *
 * Check numbers:
 *    1-2   FS=Off: FADD.S is illegal, mtval = its encoding
 *    3-9   FS=Off: FLW, FSD, FMV.X.W, FMV.W.X, FCVT.S.W, frflags (csrr fflags),
 *          fscsr (csrw fcsr) all raise illegal instruction
 *   10     FS=Off: mstatus.SD = 0
 *   11-12  FS=Initial: FADD.S executes and sets FS=Dirty, SD=1
 *   13     FS=Clean: FMV.W.X (writes an f register) sets Dirty
 *   14     FS=Clean: a write to fflags sets Dirty
 *   15     FS=Clean: FLD sets Dirty
 *   16-17  sstatus shows FS=Dirty and SD=1
 *   18     clearing FS through sstatus turns the FPU off in mstatus
 *   19-20  FS=Off also traps FP instructions executed in S-mode (to M,
 *          cause 2)
 */
#include "keel_test.h"

/* instruction at 1: must raise illegal instruction; check n */
.macro ILLEGAL_FP n, insn:vararg
    EXPECT_TRAP .Lt\@
    \insn
    FAIL_IF_REACHED \n
.Lt\@:
    CHECK \n, s9, CAUSE_ILLEGAL_INSN
.endm

keel_main:
    la s0, fdata
    li t0, MSTATUS_FS
    csrc mstatus, t0                    /* FS = Off */

    EXPECT_TRAP 2f
1:  fadd.s fa0, fa1, fa2
    FAIL_IF_REACHED 1
2:  CHECK 1, s9, CAUSE_ILLEGAL_INSN
    la t0, 1b
    lwu t1, 0(t0)
    CHECK_REG 2, s11, t1

    ILLEGAL_FP 3, flw fa0, 0(s0)
    ILLEGAL_FP 4, fsd fa0, 0(s0)
    ILLEGAL_FP 5, fmv.x.w a0, fa0
    ILLEGAL_FP 6, fmv.w.x fa0, a0
    ILLEGAL_FP 7, fcvt.s.w fa0, a0
    ILLEGAL_FP 8, frflags a0
    ILLEGAL_FP 9, fscsr a0

    csrr a0, mstatus
    srli a0, a0, 63
    CHECK 10, a0, 0

    /* ---- Initial -> Dirty ---- */
    li t0, MSTATUS_FS_INITIAL
    csrs mstatus, t0
    fadd.s fa0, fa1, fa2
    csrr a0, mstatus
    CHECK_BITS 11, a0, MSTATUS_FS, MSTATUS_FS_DIRTY
    srli a0, a0, 63
    CHECK 12, a0, 1

    /* ---- Clean -> Dirty ---- */
    li t0, MSTATUS_FS
    csrc mstatus, t0
    li t0, MSTATUS_FS_CLEAN
    csrs mstatus, t0
    li a1, 0x3f800000
    fmv.w.x fa3, a1
    csrr a0, mstatus
    CHECK_BITS 13, a0, MSTATUS_FS, MSTATUS_FS_DIRTY

    li t0, MSTATUS_FS
    csrc mstatus, t0
    li t0, MSTATUS_FS_CLEAN
    csrs mstatus, t0
    csrwi fflags, 1
    csrr a0, mstatus
    CHECK_BITS 14, a0, MSTATUS_FS, MSTATUS_FS_DIRTY

    li t0, MSTATUS_FS
    csrc mstatus, t0
    li t0, MSTATUS_FS_CLEAN
    csrs mstatus, t0
    fld fa4, 0(s0)
    csrr a0, mstatus
    CHECK_BITS 15, a0, MSTATUS_FS, MSTATUS_FS_DIRTY

    /* ---- sstatus view ---- */
    csrr a0, sstatus
    CHECK_BITS 16, a0, MSTATUS_FS, MSTATUS_FS_DIRTY
    srli a0, a0, 63
    CHECK 17, a0, 1
    li t0, MSTATUS_FS
    csrc sstatus, t0
    csrr a0, mstatus
    CHECK_BITS 18, a0, MSTATUS_FS | MSTATUS_SD, 0

    /* ---- FS=Off in S-mode ---- */
    EXPECT_TRAP 3f
    GOTO_MODE 1, 2f
2:  fmul.d fa0, fa1, fa2
    FAIL_IF_REACHED 19                  /* (would trap to M as a failure) */
3:  CHECK 19, s9, CAUSE_ILLEGAL_INSN
    csrr a0, mstatus
    CHECK_BITS 20, a0, MSTATUS_MPP, MSTATUS_MPP_S

    TEST_PASS

    .data
    .balign 8
fdata: .dword 0x3ff0000000000000
