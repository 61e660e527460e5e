/*
 * counters.S - cycle / time / instret counters and their access control.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 10 ("Counters":
 * RDCYCLE/RDTIME/RDINSTRET read cycle 0xC00, time 0xC01, instret 0xC02);
 * Privileged ISA 1.12: 3.1.11 mcycle/minstret (M-mode read/write),
 * 3.1.12 mcounteren / 4.1.5 scounteren: bit 0 CY, 1 TM, 2 IR, 3+ HPMn.
 * "When the CY, TM, IR, or HPMn bit in the mcounteren register is clear,
 * attempts to read the cycle, time, instret, or hpmcountern register while
 * executing in S-mode or U-mode will cause an illegal instruction
 * exception"; in U-mode access also needs the scounteren bit.  M-mode is
 * never restricted.  time mirrors the memory-mapped mtime (3.2.1).
 * keel's hpmcounters read as zero; QEMU 7.2's read zero until programmed.
 * QEMU 7.2 (without -icount) derives minstret from the host clock, so only
 * a strict increase is checked, not the exact instruction count.
 *
 * Check numbers:
 *    1-3    M-mode: rdcycle/rdtime/rdinstret and mcycle/minstret readable;
 *           mcycle and minstret strictly increase across a loop
 *    4-5    cycle/instret are views of mcycle/minstret (later read >=)
 *    6      minstret increases across 64 straight-line instructions
 *    7-8    mtime (MMIO) <= rdtime <= mtime read later
 *    9-10   minstret and mcycle are writable from M-mode
 *   11      mhpmcounter3 reads 0
 *   12-15   mcounteren = 0: S-mode rdcycle (mtval = bits), rdtime,
 *           rdinstret are illegal
 *   16-17   mcounteren = CY: S-mode rdcycle works, rdtime is illegal
 *   18-21   mcounteren = 7, scounteren = 0: S rdtime works; U rdcycle,
 *           rdtime, rdinstret are illegal
 *   22      mcounteren = scounteren = 7: U reads all three
 *   23      scounteren = 7, mcounteren = 0: U rdcycle is illegal
 *   24      mcounteren = scounteren = HPM3: U reads hpmcounter3 = 0
 *   25      M-mode reads cycle with mcounteren = 0
 */
#include "keel_test.h"

/* run "insn" in mode (0 = U, 1 = S): check n = illegal instruction */
.macro LOWER_ILLEGAL n, mode, insn:vararg
    EXPECT_TRAP .Lt\@
    GOTO_MODE \mode, .Lc\@
.Lc\@:
    \insn
    FAIL_IF_REACHED \n
.Lt\@:
    CHECK \n, s9, CAUSE_ILLEGAL_INSN
.endm

/* run "insn" in mode then ecall: check n = it did not trap */
.macro LOWER_OK n, mode, insn:vararg
    EXPECT_TRAP .Lt\@
    GOTO_MODE \mode, .Lc\@
.Lc\@:
    \insn
    ecall
.Lt\@:
    li t0, \mode
    beqz t0, .Lu\@
    CHECK \n, s9, CAUSE_SUPERVISOR_ECALL
    j .Le\@
.Lu\@:
    CHECK \n, s9, CAUSE_USER_ECALL
.Le\@:
.endm

keel_main:
    /* ---- M-mode ---- */
    rdcycle a0
    rdtime a1
    rdinstret a2
    csrr a3, mcycle
    csrr a4, minstret
    li t0, 1000
1:  addi t0, t0, -1
    bnez t0, 1b
    csrr a5, mcycle
    csrr a6, minstret
    li TESTNUM, 1                           /* (reads did not trap) */
    sltu t0, a3, a5
    CHECK 2, t0, 1
    sltu t0, a4, a6
    CHECK 3, t0, 1
    rdcycle a0
    sltu t0, a0, a5                         /* cycle read after mcycle */
    CHECK 4, t0, 0
    rdinstret a0
    sltu t0, a0, a6
    CHECK 5, t0, 0

    csrr s1, minstret
    .rept 64
    addi t0, t0, 1
    .endr
    csrr s2, minstret
    sltu t0, s1, s2
    CHECK 6, t0, 1

    li s0, CLINT_MTIME
    ld a0, 0(s0)
    rdtime a1
    ld a2, 0(s0)
    sltu t0, a1, a0
    CHECK 7, t0, 0
    sltu t0, a2, a1
    CHECK 8, t0, 0

    li a0, 0x100000000
    csrw minstret, a0
    csrr a1, minstret
    sltu t0, a1, a0
    CHECK 9, t0, 0
    li a0, 0x200000000
    csrw mcycle, a0
    csrr a1, mcycle
    sltu t0, a1, a0
    CHECK 10, t0, 0
    csrr a0, mhpmcounter3
    CHECK 11, a0, 0

    /* ---- mcounteren = 0 ---- */
    csrw mcounteren, zero
    csrw scounteren, zero
    EXPECT_TRAP 2f
    GOTO_MODE 1, 1f
1:  rdcycle a0
2:  CHECK 12, s9, CAUSE_ILLEGAL_INSN
    la t0, 1b
    lwu t1, 0(t0)
    CHECK_REG 13, s11, t1
    LOWER_ILLEGAL 14, 1, rdtime a0
    LOWER_ILLEGAL 15, 1, rdinstret a0

    /* ---- mcounteren = CY ---- */
    csrwi mcounteren, 1
    LOWER_OK 16, 1, rdcycle a0
    LOWER_ILLEGAL 17, 1, rdtime a0

    /* ---- mcounteren = 7, scounteren = 0 ---- */
    csrwi mcounteren, 7
    LOWER_OK 18, 1, rdtime a0
    LOWER_ILLEGAL 19, 0, rdcycle a0
    LOWER_ILLEGAL 20, 0, rdtime a0
    LOWER_ILLEGAL 21, 0, rdinstret a0

    /* ---- both = 7 ---- */
    csrwi scounteren, 7
    LOWER_OK 22, 0, rdcycle a0
    LOWER_OK 22, 0, rdtime a1
    LOWER_OK 22, 0, rdinstret a2

    /* ---- scounteren alone is not enough ---- */
    csrw mcounteren, zero
    LOWER_ILLEGAL 23, 0, rdcycle a0

    /* ---- hpmcounter3 ---- */
    csrwi mcounteren, 8
    csrwi scounteren, 8
    li a0, -1
    EXPECT_TRAP 2f
    GOTO_MODE 0, 1f
1:  csrr a0, hpmcounter3
    ecall
2:  CHECK 24, a0, 0

    /* ---- M-mode is not restricted ---- */
    csrw mcounteren, zero
    rdcycle a0
    CHECK_NE 25, a0, 0

    TEST_PASS
