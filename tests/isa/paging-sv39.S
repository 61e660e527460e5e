/*
 * paging-sv39.S - Sv39 virtual memory: 3-level page tables built by the test,
 * S-mode and U-mode code running through them.
 *
 * Spec: RISC-V Privileged ISA 1.12:
 *  - 4.1.11 satp (MODE 8 = Sv39, PPN of the root table); 4.2 SFENCE.VMA.
 *  - 4.3.1 PTE bits V R W X U G A D; W=1,R=0 is reserved (page fault);
 *    4.3.2 translation: a leaf at level i > 0 whose ppn[i-1:0] != 0 is a
 *    misaligned superpage (page fault); A/D: keel and QEMU 7.2 both set
 *    them in hardware (the test accepts nothing else: A after an access, D
 *    after a store).
 *  - 4.3.1/4.4.1 page faults: 12 fetch, 13 load, 15 store/AMO, stval = the
 *    faulting virtual address, sepc = the faulting instruction (= the
 *    target address for fetches).
 *  - 4.1.1 sstatus.SUM (S may access U pages; never execute them) and MXR
 *    (loads from execute-only pages succeed).  U-mode may not access S pages.
 *  - 4.4.1 Sv39: VA bits 63..39 must equal bit 38, else a page fault.
 *  - 3.1.6.3 MPRV = 1 makes M-mode loads/stores translate with privilege
 *    MPP (and SUM/MXR).
 * The body is shared with paging-sv48.S: see paging-common.inc for the
 * memory layout and check numbers 1-52.  Sv39-specific:
 *   60     a high-half (sign-extended) address, 0xffff_ffc0_0000_0000 + x,
 *          translates through root entry 256
 *   61-62  the same address with bits 63..39 cleared (bit 38 still set) is
 *          not canonical: load page fault, stval = that address
 */
#define VM_LEVELS 3
#define SATP_MODE SATP_MODE_SV39
#define VA_HI 0xffffffc000000000
#define VA_NONCANON 0x0000004000000000
#include "keel_test.h"
#include "keel_paging.h"

.macro EXTRA_MAPS
.endm

.macro EXTRA_S_CHECKS
    /* pg_a through the high-half 1 GiB leaf ... */
    la t0, pg_a
    li t1, 0x80000000
    sub t0, t0, t1
    li a0, VA_HI
    add a0, a0, t0
    ld a1, 0(a0)
    CHECK 60, a1, 0x1111111111111111
    /* ... and the same address without its sign extension (bit 38 set,
     * bits 63..39 clear): not canonical, load page fault, stval = VA */
    li t0, 0x0000007fffffffff
    and a0, a0, t0
    S_EXPECT_TRAP 2f
    ld a1, 0(a0)
    FAIL_IF_REACHED 61
2:  CHECK 61, s9, CAUSE_LOAD_PAGE_FAULT
    CHECK_REG 62, s11, a0
.endm

#include "paging-common.inc"
