/*
 * priv-trap.S - M-mode traps, ECALL from each mode, xRET mode transitions,
 * illegal instruction / breakpoint / access faults, vectored mtvec, TSR/TW/TVM.
 *
 * Spec: RISC-V Privileged ISA 1.12:
 *  - 3.1.15 mcause: 2 illegal instruction, 3 breakpoint, 1/5/7 instruction/
 *    load/store access fault, 8/9/11 environment call from U/S/M.
 *  - 3.1.14 mepc = address of the trapping instruction; 3.1.16 mtval = 0 for
 *    ECALL ("For other traps, mtval is set to zero"), the faulting address for
 *    access faults, the instruction bits for illegal instructions (optional in
 *    the spec; keel and QEMU both provide them).  mtval for EBREAK is not
 *    checked (1.12 allows 0 or the pc).
 *  - 3.1.6.1 trap entry: MPIE <- MIE, MIE <- 0, MPP <- previous mode.
 *    MRET: MIE <- MPIE, MPIE <- 1, MPP <- U (least-privileged mode), mode <-
 *    old MPP.  SRET likewise with SIE/SPIE/SPP (SPP <- U).  (1.12 also has
 *    xRET clear MPRV when the new mode is not M; QEMU 7.2 does not, so that
 *    is not checked.)
 *  - 3.1.6.5 TVM: satp access and SFENCE.VMA in S-mode are illegal; TW: WFI
 *    in S-mode is illegal (time limit 0 when nothing can wake it); TSR: SRET
 *    in S-mode is illegal.  3.3.3: WFI in U-mode is illegal when S-mode exists
 *    (again: nothing pending, so it cannot complete).  3.3.2: MRET in S/U and
 *    SRET in U are illegal.
 *  - 3.1.7 mtvec MODE = 1 (vectored): exceptions go to BASE, interrupts to
 *    BASE + 4 * cause.
 *  - 3.5 access faults: 0x0800_0000 is a hole in the physical map of both keel
 *    and QEMU virt.  (0x4000_0000 is not usable: QEMU virt maps its PCIe MMIO
 *    window there and reads from it succeed.)
 *
 * Check numbers:
 *    1-6    ECALL from M: cause 11, mepc, mtval 0, MPP = M, MPIE = old MIE (1),
 *           MIE cleared
 *    7-9    ECALL from S: cause 9, mepc, MPP = S
 *   10-12   ECALL from U: cause 8, mepc, MPP = U
 *   13-15   MRET M->M: MIE <- MPIE (1), MPIE <- 1, MPP <- U
 *   16-17   MRET with MPRV = 1 to S (arrives in S); MRET to M keeps MPRV
 *   18-19   MRET copies MPIE into MIE (seen through the next trap's MPIE)
 *   20-24   SRET S->S: SIE <- SPIE, SPIE <- 1, SPP <- U; SRET to U
 *   25-28   illegal instruction: reserved LOAD funct3 and 32-bit UNIMP,
 *           cause 2 and mtval = bits
 *   29-30   EBREAK: cause 3, mepc
 *   31-36   load / store / fetch access faults on a hole: cause 5/7/1,
 *           mtval = the address (mepc = the address for the fetch)
 *   37-42   SRET in U, MRET in U, MRET in S: illegal, mtval = bits
 *   43-48   TSR, TW (S-mode WFI), WFI in U-mode: illegal
 *   49-54   TVM: sfence.vma, csrr satp, csrw satp illegal in S; allowed with
 *           TVM = 0
 *   55-58   vectored mtvec: an exception goes to BASE, supervisor software
 *           interrupt (cause 1, taken in M) goes to BASE + 4
 */
#include "keel_test.h"

#define HOLE 0x08000000

/* the instruction at label "lbl" trapped with illegal instruction: checks
 * n (cause) and n+1 (mtval = its bits) */
.macro CHECK_ILLEGAL n, lbl
    CHECK \n, s9, CAUSE_ILLEGAL_INSN
    la t0, \lbl
    lwu t1, 0(t0)
    CHECK_REG \n+1, s11, t1
.endm

keel_main:
    /* ---- ECALL from M ---- */
    csrsi mstatus, MSTATUS_MIE           /* mie = 0: nothing can interrupt */
    EXPECT_TRAP 2f
1:  ecall
    FAIL_IF_REACHED 1
2:  CHECK 1, s9, CAUSE_MACHINE_ECALL
    CHECK_ADDR 2, s10, 1b
    CHECK 3, s11, 0
    csrr a0, mstatus
    CHECK_BITS 4, a0, MSTATUS_MPP, MSTATUS_MPP_M
    CHECK_BITS 5, a0, MSTATUS_MPIE, MSTATUS_MPIE
    CHECK_BITS 6, a0, MSTATUS_MIE, 0

    /* ---- ECALL from S ---- */
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  ecall
2:  CHECK 7, s9, CAUSE_SUPERVISOR_ECALL
    CHECK_ADDR 8, s10, 1b
    csrr a0, mstatus
    CHECK_BITS 9, a0, MSTATUS_MPP, MSTATUS_MPP_S

    /* ---- ECALL from U ---- */
    EXPECT_TRAP 2f
    GOTO_MODE 0, 1f
1:  ecall
2:  CHECK 10, s9, CAUSE_USER_ECALL
    CHECK_ADDR 11, s10, 1b
    csrr a0, mstatus
    CHECK_BITS 12, a0, MSTATUS_MPP, MSTATUS_MPP_U

    /* ---- MRET M -> M ---- */
    li t0, MSTATUS_MIE
    csrc mstatus, t0
    li t0, MSTATUS_MPP_M | MSTATUS_MPIE
    csrs mstatus, t0
    la t0, 1f
    csrw mepc, t0
    mret
1:  csrr a0, mstatus
    li t0, MSTATUS_MIE
    csrc mstatus, t0
    CHECK_BITS 13, a0, MSTATUS_MIE, MSTATUS_MIE
    CHECK_BITS 14, a0, MSTATUS_MPIE, MSTATUS_MPIE
    CHECK_BITS 15, a0, MSTATUS_MPP, MSTATUS_MPP_U

    /* ---- MRET and MPRV ---- */
    li t0, MSTATUS_MPRV
    csrs mstatus, t0                     /* MPP = U: M loads would use U... */
    li t0, MSTATUS_MPP                   /* ...so set MPP first to S */
    csrs mstatus, t0
    li t0, MSTATUS_MPP_M
    csrc mstatus, t0
    li t0, MSTATUS_MPP_S
    csrs mstatus, t0                     /* MPRV=1, MPP=S (satp = 0: bare) */
    EXPECT_TRAP 2f
    la t0, 1f
    csrw mepc, t0
    mret
1:  ecall
    /* MRET to S with MPRV = 1: the privileged spec 1.12 (3.1.6.3) says MRET
     * clears MPRV when the new mode is not M, but QEMU 7.2 leaves it set, so
     * that is not checked; only that the MRET went to S. */
2:  CHECK 16, s9, CAUSE_SUPERVISOR_ECALL
    li t0, MSTATUS_MPRV | MSTATUS_MPP
    csrs mstatus, t0                     /* MPRV=1, MPP=M */
    la t0, 1f
    csrw mepc, t0
    mret
1:  csrr a0, mstatus
    li t0, MSTATUS_MPRV
    csrc mstatus, t0
    CHECK_BITS 17, a0, MSTATUS_MPRV, MSTATUS_MPRV

    /* ---- MRET: MIE <- MPIE ---- */
    EXPECT_TRAP 2f
    li t0, MSTATUS_MPP
    csrc mstatus, t0
    li t0, MSTATUS_MPP_S | MSTATUS_MPIE
    csrs mstatus, t0
    la t0, 1f
    csrw mepc, t0
    mret                                 /* S-mode with MIE = 1 */
1:  ecall
2:  csrr a0, mstatus
    CHECK_BITS 18, a0, MSTATUS_MPIE, MSTATUS_MPIE
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f                      /* (clears MPIE: MIE = 0 in S) */
1:  ecall
2:  csrr a0, mstatus
    CHECK_BITS 19, a0, MSTATUS_MPIE, 0

    /* ---- SRET ---- */
    EXPECT_TRAP 3f
    GOTO_MODE 1, 1f
1:  li t0, MSTATUS_SIE
    csrc sstatus, t0
    li t0, MSTATUS_SPP | MSTATUS_SPIE
    csrs sstatus, t0                     /* back to S, SPIE = 1 */
    la t0, 2f
    csrw sepc, t0
    sret
2:  ecall
3:  csrr a0, mstatus
    CHECK_BITS 20, a0, MSTATUS_SIE, MSTATUS_SIE
    CHECK_BITS 21, a0, MSTATUS_SPIE, MSTATUS_SPIE
    CHECK_BITS 22, a0, MSTATUS_SPP, 0
    CHECK_BITS 23, a0, MSTATUS_MPP, MSTATUS_MPP_S
    li t0, MSTATUS_SIE | MSTATUS_SPIE
    csrc mstatus, t0
    EXPECT_TRAP 3f
    GOTO_MODE 1, 1f
1:  S_GOTO_U 2f
2:  ecall
3:  CHECK 24, s9, CAUSE_USER_ECALL

    /* ---- illegal instructions ---- */
    EXPECT_TRAP 2f
1:  .word (7 << 12) | (10 << 7) | 0x03   /* LOAD with reserved funct3 = 7 */
    FAIL_IF_REACHED 25
2:  CHECK_ILLEGAL 25, 1b
    EXPECT_TRAP 2f
1:  .word 0xc0001073                     /* unimp = csrrw x0, cycle, x0 */
    FAIL_IF_REACHED 27
2:  CHECK_ILLEGAL 27, 1b

    /* ---- EBREAK ---- */
    EXPECT_TRAP 2f
1:  ebreak
    FAIL_IF_REACHED 29
2:  CHECK 29, s9, CAUSE_BREAKPOINT
    CHECK_ADDR 30, s10, 1b

    /* ---- access faults ---- */
    li s1, HOLE
    EXPECT_TRAP 2f
    ld a0, 0(s1)
    FAIL_IF_REACHED 31
2:  CHECK 31, s9, CAUSE_LOAD_ACCESS
    CHECK 32, s11, HOLE
    addi s1, s1, 0x40
    EXPECT_TRAP 2f
    sw a0, 0(s1)
    FAIL_IF_REACHED 33
2:  CHECK 33, s9, CAUSE_STORE_ACCESS
    CHECK 34, s11, HOLE + 0x40
    li s1, HOLE + 0x100
    EXPECT_TRAP 2f
    jalr ra, 0(s1)
    FAIL_IF_REACHED 35
2:  CHECK 35, s9, CAUSE_FETCH_ACCESS
    CHECK 36, s10, HOLE + 0x100          /* mepc = the target */
    CHECK 36, s11, HOLE + 0x100          /* mtval = the target too */

    /* ---- xRET from too low a privilege ---- */
    EXPECT_TRAP 2f
    GOTO_MODE 0, 1f
1:  sret
2:  CHECK_ILLEGAL 37, 1b
    EXPECT_TRAP 2f
    GOTO_MODE 0, 1f
1:  mret
2:  CHECK_ILLEGAL 39, 1b
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  mret
2:  CHECK_ILLEGAL 41, 1b

    /* ---- TSR / TW / WFI in U ---- */
    li t0, MSTATUS_TSR
    csrs mstatus, t0
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  sret
2:  CHECK_ILLEGAL 43, 1b
    li t0, MSTATUS_TSR
    csrc mstatus, t0
    li t0, MSTATUS_TW
    csrs mstatus, t0
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  wfi
2:  CHECK_ILLEGAL 45, 1b
    li t0, MSTATUS_TW
    csrc mstatus, t0
    EXPECT_TRAP 2f
    GOTO_MODE 0, 1f
1:  wfi
2:  CHECK_ILLEGAL 47, 1b

    /* ---- TVM ---- */
    li t0, MSTATUS_TVM
    csrs mstatus, t0
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  sfence.vma
2:  CHECK_ILLEGAL 49, 1b
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  csrr a0, satp
2:  CHECK 51, s9, CAUSE_ILLEGAL_INSN
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  csrw satp, zero
2:  CHECK 52, s9, CAUSE_ILLEGAL_INSN
    li t0, MSTATUS_TVM
    csrc mstatus, t0
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  sfence.vma
    csrr a0, satp
    ecall
2:  CHECK 53, s9, CAUSE_SUPERVISOR_ECALL
    CHECK 54, a0, 0

    /* ---- vectored mtvec ---- */
    la t0, vtable
    ori t0, t0, 1
    csrw mtvec, t0
    li s8, 0
    EXPECT_TRAP 2f
    ecall                                /* exception -> BASE */
2:  CHECK 55, s8, 0xe
    li s8, 0
    li t0, MIP_SSIP
    csrs mie, t0
    csrs mip, t0                         /* SSIP pending, enabled, M-mode */
    csrsi mstatus, MSTATUS_MIE
    li a0, 0
1:  addi a0, a0, 1                       /* the interrupt arrives here */
    beqz s8, 1b
    csrci mstatus, MSTATUS_MIE
    CHECK 56, s8, 1
    CHECK 57, s9, CAUSE_INTR | IRQ_S_SOFT
    csrr a0, mip
    CHECK_BITS 58, a0, MIP_SSIP, 0
    csrw mie, zero
    la t0, keel_mtrap
    csrw mtvec, t0

    TEST_PASS

    .balign 256
vtable:
    j vec_exception                      /* 0: exceptions */
    j vec_unexpected                     /* 1: SSI */
    j vec_unexpected
    j vec_unexpected
    j vec_unexpected
    j vec_unexpected
    j vec_unexpected
    j vec_unexpected
    j vec_unexpected
    j vec_unexpected
    j vec_unexpected
    j vec_unexpected
vec_exception:
    li s8, 0xe
    j keel_mtrap
vec_unexpected:
    csrr s9, mcause
    li t6, CAUSE_INTR | IRQ_S_SOFT
    bne s9, t6, keel_mtrap_unexpected
    li s8, 1
    li t6, MIP_SSIP
    csrc mip, t6
    mret
