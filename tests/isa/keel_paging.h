/*
 * keel_paging.h - page-table builder and test pages shared by
 * paging-sv39.S and paging-sv48.S.  Define VM_LEVELS (3 or 4) before
 * including it, after keel_test.h.
 *
 * vm_map: a0 = virtual address, a1 = physical address, a2 = leaf level
 *         (0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB, 3 = 512 GiB), a3 = PTE flag bits.
 *         Walks from vm_root, allocating zeroed intermediate tables from
 *         vm_pool (non-leaf PTEs have only V set, as the spec requires), and
 *         writes the leaf PTE = (pa >> 12) << 10 | flags.  Returns a0 = the
 *         physical address of the leaf PTE.  M-mode only (bare addressing).
 *         Clobbers t0-t5.
 * (Privileged ISA 1.12, 4.3.1/4.4.1/4.5.1 PTE format: V R W X U G A D in
 * bits 0-7, PPN from bit 10; 4.3.2 the translation walk.)
 */
#ifndef KEEL_PAGING_H
#define KEEL_PAGING_H

#define VM_POOL_PAGES 24

    .text
    .balign 4
vm_map:
    la t0, vm_root
    li t1, VM_LEVELS - 1
1:  li t2, 9
    mul t2, t2, t1
    addi t2, t2, 12
    srl t3, a0, t2
    andi t3, t3, 511
    slli t3, t3, 3
    add t3, t0, t3                  /* t3 = &table[index] */
    beq t1, a2, 3f
    ld t4, 0(t3)
    andi t5, t4, PTE_V
    bnez t5, 2f
    la t5, vm_next                  /* allocate a table */
    ld t4, 0(t5)
    li t2, 4096
    add t2, t4, t2
    sd t2, 0(t5)
    srli t4, t4, 12
    slli t4, t4, 10
    ori t4, t4, PTE_V
    sd t4, 0(t3)
2:  srli t4, t4, 10
    slli t0, t4, 12                 /* next table */
    addi t1, t1, -1
    j 1b
3:  srli t4, a1, 12
    slli t4, t4, 10
    or t4, t4, a3
    sd t4, 0(t3)
    mv a0, t3
    ret

/* U-mode code page: a0 = address; +0 loads a1 = (a0), +8 stores a2 to (a0),
 * +16 jumps to a0; each ends with ECALL. */
    .balign 4096
ucode:
    ld a1, 0(a0)
    ecall
    sd a2, 0(a0)
    ecall
    jr a0
    ecall
    .balign 4096

    .data
    .balign 8
vm_next: .dword vm_pool + 4096
    .balign 4096
pg_a:   .dword 0x1111111111111111, 0xaaaa
    .balign 4096
pg_b:   .dword 0x2222222222222222
    .balign 4096
pg_x:   .word 0x07700513            /* addi a0, zero, 0x77 */
        .word 0x00008067            /* ret */
    .balign 4096
pg_ad:  .dword 0x4444444444444444
    .balign 4096
udata:  .dword 0x5555555555555555
    .balign 4096

    .bss
    .balign 4096
vm_root:
vm_pool: .skip 4096 * VM_POOL_PAGES

    .text
#endif
