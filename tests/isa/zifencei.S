/*
 * zifencei.S - Zifencei: FENCE.I makes stores to instruction memory visible
 * to instruction fetch (self-modifying code).
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 3 ("Zifencei"): "FENCE.I
 * ... ensures that a subsequent instruction fetch on a RISC-V hart will see
 * any previous data stores already visible to the same RISC-V hart."
 * Without FENCE.I the fetched instruction is unspecified, so every check
 * below patches, executes FENCE.I, then runs the patched code.  Each
 * location is patched at least twice, after it has already been executed,
 * so a stale cached decoding (or a JIT'ed block) would be caught.
 * Encodings (chapter 2.4/24): addi rd, x0, imm = imm<<20 | rd<<7 | 0x13;
 * lui rd, imm = imm<<12 | rd<<7 | 0x37.
 *
 * Check numbers:
 *    1     the unpatched function returns 1 (executed several times)
 *    2-3   patched to return 2, then 3 (same word, two patches)
 *    4     patched to a different instruction (lui)
 *    5-6   an instruction right after the FENCE.I, in the same straight-line
 *          block as the patching store, patched to 7 and then 9 by two
 *          iterations of the same loop
 */
#include "keel_test.h"

keel_main:
    la s0, patch_fn
    /* ---- run the original a few times ---- */
    call patch_fn
    call patch_fn
    call patch_fn
    CHECK 1, a0, 1

    /* ---- patch #1 ---- */
    li t0, (2 << 20) | (10 << 7) | 0x13          /* addi a0, zero, 2 */
    sw t0, 0(s0)
    fence.i
    call patch_fn
    CHECK 2, a0, 2
    call patch_fn
    CHECK 2, a0, 2

    /* ---- patch #2, same word ---- */
    li t0, (3 << 20) | (10 << 7) | 0x13          /* addi a0, zero, 3 */
    sw t0, 0(s0)
    fence.i
    call patch_fn
    CHECK 3, a0, 3

    /* ---- patch #3: another opcode ---- */
    li t0, (0x12345 << 12) | (10 << 7) | 0x37    /* lui a0, 0x12345 */
    sw t0, 0(s0)
    fence.i
    call patch_fn
    CHECK 4, a0, 0x12345000

    /* ---- patch the instruction right after fence.i, twice ---- */
    li s2, 0                                     /* iteration */
    li s3, (7 << 20) | (11 << 7) | 0x13          /* addi a1, zero, 7 */
    li s4, (9 << 20) | (11 << 7) | 0x13          /* addi a1, zero, 9 */
    la s1, 1f
2:  sw s3, 0(s1)
    fence.i
1:  addi a1, zero, 5                             /* replaced */
    bnez s2, 3f
    CHECK 5, a1, 7
    mv s3, s4
    li s2, 1
    j 2b
3:  CHECK 6, a1, 9

    TEST_PASS

    .balign 4
patch_fn:
    addi a0, zero, 1
    ret
