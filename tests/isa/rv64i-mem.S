/*
 * rv64i-mem.S - RV64I loads and stores.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 2.6 (Load and Store
 * Instructions: effective address = rs1 + sign-extended 12-bit offset; LB/LH/
 * LW sign-extend, LBU/LHU zero-extend; SB/SH/SW store the low 8/16/32 bits of
 * rs2; memory is little-endian) and chapter 5.3 (RV64I: LD, SD, LWU, and LW
 * sign-extending to 64 bits).  All accesses here are naturally aligned
 * (misaligned ordinary accesses are an implementation choice, not tested).
 *
 * Check numbers:
 *    1-8    LB / LBU: sign and zero extension, positive and negative offsets
 *    9-14   LH / LHU
 *   15-20   LW / LWU
 *   21-24   LD, and offsets +2047 / -2048
 *   25-33   SB / SH / SW / SD write exactly their bytes (read back with LD)
 *   34-36   store with negative offset, store of x0, store then narrow load
 *   37-38   load into x0 is discarded; load with rd == rs1
 */
#include "keel_test.h"

keel_main:
    la s0, mem0              /* bytes: 11 20 3f 4e 5d 6c 7b 8a */
    la s1, mem1              /* bytes: ef cd ab 89 67 45 23 01 */

    /* ---- LB / LBU ---- */
    lb a0, 0(s0)
    CHECK 1, a0, 0x11
    lb a0, 7(s0)
    CHECK 2, a0, 0xffffffffffffff8a
    lbu a0, 7(s0)
    CHECK 3, a0, 0x8a
    lb a0, -1(s1)            /* = mem0 byte 7 */
    CHECK 4, a0, 0xffffffffffffff8a
    lbu a0, -8(s1)           /* = mem0 byte 0 */
    CHECK 5, a0, 0x11
    lb a0, 1(s1)
    CHECK 6, a0, 0xffffffffffffffcd
    lbu a0, 2(s1)
    CHECK 7, a0, 0xab
    lb a0, 7(s1)
    CHECK 8, a0, 0x01

    /* ---- LH / LHU ---- */
    lh a0, 0(s0)
    CHECK 9, a0, 0x2011
    lh a0, 6(s0)
    CHECK 10, a0, 0xffffffffffff8a7b
    lhu a0, 6(s0)
    CHECK 11, a0, 0x8a7b
    lh a0, 2(s0)
    CHECK 12, a0, 0x4e3f
    lhu a0, -4(s1)           /* mem0 bytes 4,5 */
    CHECK 13, a0, 0x6c5d
    lh a0, 0(s1)
    CHECK 14, a0, 0xffffffffffffcdef

    /* ---- LW / LWU ---- */
    lw a0, 0(s0)
    CHECK 15, a0, 0x4e3f2011
    lw a0, 4(s0)
    CHECK 16, a0, 0xffffffff8a7b6c5d
    lwu a0, 4(s0)
    CHECK 17, a0, 0x000000008a7b6c5d
    lw a0, 0(s1)
    CHECK 18, a0, 0xffffffff89abcdef
    lwu a0, 0(s1)
    CHECK 19, a0, 0x89abcdef
    lw a0, -4(s1)
    CHECK 20, a0, 0xffffffff8a7b6c5d

    /* ---- LD and extreme offsets ---- */
    ld a0, 0(s0)
    CHECK 21, a0, 0x8a7b6c5d4e3f2011
    ld a0, 8(s0)
    CHECK 22, a0, 0x0123456789abcdef
    addi a1, s0, -2047
    ld a0, 2047(a1)
    CHECK 23, a0, 0x8a7b6c5d4e3f2011
    li a2, 2048
    add a1, s1, a2
    ld a0, -2048(a1)
    CHECK 24, a0, 0x0123456789abcdef

    /* ---- stores write exactly their bytes ---- */
    la s2, buf
    li a1, 0x0706050403020100
    sd a1, 0(s2)
    ld a0, 0(s2)
    CHECK 25, a0, 0x0706050403020100
    li a1, 0x1234567890abcdaa        /* SB stores only the low byte 0xaa */
    sb a1, 3(s2)
    ld a0, 0(s2)
    CHECK 26, a0, 0x07060504aa020100
    sb a1, 0(s2)
    sb a1, 7(s2)
    ld a0, 0(s2)
    CHECK 27, a0, 0xaa060504aa0201aa
    li a1, 0xffffffffffffbeef        /* SH: low 16 bits */
    sh a1, 4(s2)
    ld a0, 0(s2)
    CHECK 28, a0, 0xaa06beefaa0201aa
    sh a1, 6(s2)
    ld a0, 0(s2)
    CHECK 29, a0, 0xbeefbeefaa0201aa
    li a1, 0x55555555deadc0de        /* SW: low 32 bits */
    sw a1, 0(s2)
    ld a0, 0(s2)
    CHECK 30, a0, 0xbeefbeefdeadc0de
    sw a1, 4(s2)
    ld a0, 0(s2)
    CHECK 31, a0, 0xdeadc0dedeadc0de
    ld a0, 8(s2)                     /* the next dword is untouched */
    CHECK 32, a0, 0x1111111111111111
    li a1, 0xfedcba9876543210
    sd a1, 8(s2)
    ld a0, 8(s2)
    CHECK 33, a0, 0xfedcba9876543210

    /* ---- negative offset, x0 as data, store then narrow loads ---- */
    addi a2, s2, 16
    li a1, 0x0badf00d
    sw a1, -12(a2)                   /* buf + 4 */
    ld a0, 0(s2)
    CHECK 34, a0, 0x0badf00ddeadc0de
    sd zero, 8(s2)
    ld a0, 8(s2)
    CHECK 35, a0, 0
    li a1, -2
    sh a1, 10(s2)
    lhu a0, 10(s2)
    lb a3, 11(s2)
    add a0, a0, a3                   /* 0xfffe + (-1) */
    CHECK 36, a0, 0xfffd

    /* ---- load into x0 is discarded; rd == rs1 ---- */
    ld x0, 0(s0)
    CHECK 37, x0, 0
    mv a1, s1
    ld a1, 0(a1)
    CHECK 38, a1, 0x0123456789abcdef

    TEST_PASS

    .data
    .balign 8
mem0:   .dword 0x8a7b6c5d4e3f2011
mem1:   .dword 0x0123456789abcdef
buf:    .dword 0, 0x1111111111111111, 0
