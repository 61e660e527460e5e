/*
 * paging-sv48.S - Sv48 virtual memory: 4-level page tables built by the test,
 * S-mode and U-mode code running through them, including a 512 GiB leaf.
 *
 * Spec: RISC-V Privileged ISA 1.12:
 *  - 4.1.11 satp (MODE 9 = Sv48); 4.5 Sv48: four levels, VA bits 63..48 must
 *    equal bit 47 (else page fault); leaves at level 3 map 512 GiB
 *    "terapages", which must have ppn[2:0] = 0 (else misaligned superpage:
 *    page fault).
 *  - everything else as in paging-sv39.S (PTE format 4.3.1, walk 4.3.2,
 *    faults, SUM/MXR, A/D, SFENCE.VMA, MPRV).
 * The body is shared with paging-sv39.S: see paging-common.inc for the
 * memory layout and check numbers 1-52.  Sv48-specific:
 *   60     VA 0x40_0000_0000 (not canonical in Sv39) is an ordinary address
 *          in Sv48: mapped by a 1 GiB leaf, it translates
 *   61     512 GiB leaf: VA 0x80_0000_0000 -> PA 0 (RAM seen at +0x8000_0000)
 *   62-63  misaligned 512 GiB leaf (PA 0x4000_0000): load page fault, stval
 *   64     high-half address 0xffff_8000_0000_0000 + x (root entry 256)
 *   65-66  the same with bits 63..48 cleared (bit 47 set): not canonical,
 *          load page fault, stval = that address
 */
#define VM_LEVELS 4
#define SATP_MODE SATP_MODE_SV48
#define VA_HI 0xffff800000000000
#define VA_NONCANON 0x0000800000000000
#include "keel_test.h"
#include "keel_paging.h"

#define VA_SV39_HOLE 0x0000004000000000
#define VA_512G      0x0000008000000000
#define VA_512G_BAD  0x0000010000000000

.macro EXTRA_MAPS
    MAP VA_SV39_HOLE, 0x80000000, 2, PTE_V|PTE_R|PTE_A
    MAP VA_512G, 0, 3, PTE_V|PTE_R|PTE_A
    MAP VA_512G_BAD, 0x40000000, 3, PTE_V|PTE_R|PTE_A
.endm

.macro EXTRA_S_CHECKS
    la t0, pg_b
    li t1, 0x80000000
    sub t0, t0, t1
    li a0, VA_SV39_HOLE
    add a0, a0, t0
    ld a1, 0(a0)
    CHECK 60, a1, 0x2222222222222222
    la t0, pg_b
    li a0, VA_512G
    add a0, a0, t0                          /* PA of pg_b, offset by 512G */
    ld a1, 0(a0)
    CHECK 61, a1, 0x2222222222222222
    li a0, VA_512G_BAD + 0x80
    S_FAULT 62, CAUSE_LOAD_PAGE_FAULT, VA_512G_BAD + 0x80, ld a1, 0(a0)
    la t0, pg_a
    li t1, 0x80000000
    sub t0, t0, t1
    li a0, VA_HI
    add a0, a0, t0
    ld a1, 0(a0)
    CHECK 64, a1, 0x1111111111111111
    li t0, 0x0000ffffffffffff
    and a0, a0, t0
    S_EXPECT_TRAP 2f
    ld a1, 0(a0)
    FAIL_IF_REACHED 65
2:  CHECK 65, s9, CAUSE_LOAD_PAGE_FAULT
    CHECK_REG 66, s11, a0
.endm

#include "paging-common.inc"
