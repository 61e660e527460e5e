/*
 * rv64c.S - C extension (compressed instructions), RV64C subset.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 16 ("C" Standard Extension
 * for Compressed Instructions), 16.3-16.7 and Table 16.4-16.6 (RVC opcode
 * map).  Every RV64C instruction is used via its explicit c.* mnemonic under
 * .option rvc: c.addi4spn, c.fld, c.lw, c.ld, c.fsd, c.sw, c.sd (quadrant 0);
 * c.nop, c.addi, c.addiw, c.li, c.addi16sp, c.lui, c.srli, c.srai, c.andi,
 * c.sub, c.xor, c.or, c.and, c.subw, c.addw, c.j, c.beqz, c.bnez
 * (quadrant 1); c.slli, c.fldsp, c.lwsp, c.ldsp, c.jr, c.mv, c.ebreak,
 * c.jalr, c.add, c.fsdsp, c.swsp, c.sdsp (quadrant 2).  (c.jal is RV32-only;
 * in RV64 that encoding is c.addiw.)  Immediates are sign-extended except the
 * scaled unsigned load/store offsets and c.addi4spn's; c.lui loads
 * nzimm[17:12] sign-extended; c.addiw/c.addw/c.subw sign-extend their 32-bit
 * result.  c.jalr links pc + 2.  16.1: with C, instructions are 16-bit
 * aligned, so 32-bit instructions may sit at pc % 4 == 2 (and may cross a
 * page boundary).  The all-zero 16-bit pattern is defined illegal (16.5).
 * c.ebreak raises a breakpoint exception (cause 3) with mepc = its address
 * (privileged spec 3.1.15).
 *
 * Check numbers:
 *    1-5    c.li, c.addi, c.nop
 *    6-8    c.addiw (sign extension, imm 0 = sext.w)
 *    9-11   c.lui (negative, small, largest positive)
 *   12-15   c.addi16sp (negative / positive), c.addi4spn (max / min)
 *   16-23   c.slli, c.srli, c.srai (shift by 1, 32, 63), c.andi
 *   24-31   c.sub, c.xor, c.or, c.and, c.subw, c.addw, c.mv, c.add
 *   32-41   c.lw (sign-extends), c.ld, c.sw, c.sd, c.lwsp, c.ldsp, c.swsp,
 *           c.sdsp, max offsets
 *   42-45   c.fld, c.fsd, c.fldsp, c.fsdsp
 *   46-53   c.j (forward/backward), c.jr, c.jalr link = pc + 2,
 *           c.beqz / c.bnez taken and not taken
 *   54-55   c.ebreak: cause 3, mepc = address of the c.ebreak
 *   56      0x0000 is an illegal instruction (cause 2)
 *   57-61   32-bit instructions at 2 mod 4 addresses: addi, auipc value,
 *           jal link = pc + 4, jalr to a 2 mod 4 target
 *   62      a 32-bit instruction straddling a 4 KiB page boundary
 */
#include "keel_test.h"

keel_main:
    .option push
    .option rvc

    /* ---- c.li / c.addi / c.nop ---- */
    c.li a0, -32
    CHECK 1, a0, -32
    c.li a1, 31
    CHECK 2, a1, 31
    c.addi a0, 5
    CHECK 3, a0, -27
    c.addi a1, -32
    CHECK 4, a1, -1
    c.nop
    c.nop
    CHECK 5, a1, -1

    /* ---- c.addiw ---- */
    li a0, 0x7fffffff
    c.addiw a0, 1
    CHECK 6, a0, 0xffffffff80000000
    li a0, 0x0000000180000000
    c.addiw a0, 0                       /* sext.w */
    CHECK 7, a0, 0xffffffff80000000
    li a0, 0x12345678ffffffff
    c.addiw a0, -1
    CHECK 8, a0, -2

    /* ---- c.lui ---- */
    c.lui a2, 0xfffff                   /* nzimm = -1 */
    CHECK 9, a2, 0xfffffffffffff000
    c.lui a3, 1
    CHECK 10, a3, 0x1000
    c.lui a4, 0x1f
    CHECK 11, a4, 0x1f000

    /* ---- c.addi16sp / c.addi4spn ---- */
    la sp, cstack_mid
    mv s1, sp
    c.addi16sp sp, -512
    sub a0, s1, sp
    CHECK 12, a0, 512
    c.addi16sp sp, 496
    sub a0, s1, sp
    CHECK 13, a0, 16
    mv sp, s1
    c.addi4spn a0, sp, 1020
    sub a0, a0, s1
    CHECK 14, a0, 1020
    c.addi4spn a5, sp, 4
    sub a5, a5, s1
    CHECK 15, a5, 4

    /* ---- shifts and c.andi ---- */
    li a0, 1
    c.slli a0, 63
    CHECK 16, a0, 0x8000000000000000
    li a1, 0x00000000deadbeef
    c.slli a1, 32
    CHECK 17, a1, 0xdeadbeef00000000
    c.srli a0, 63
    CHECK 18, a0, 1
    c.srli a1, 32
    CHECK 19, a1, 0xdeadbeef
    li a2, 0x8000000000000010
    c.srai a2, 4
    CHECK 20, a2, 0xf800000000000001
    li a3, -1
    c.srai a3, 63
    CHECK 21, a3, -1
    li a4, 0x12345678
    c.andi a4, -16
    CHECK 22, a4, 0x12345670
    c.andi a4, 0x1f
    CHECK 23, a4, 0x10

    /* ---- register-register ---- */
    li a0, 100
    li a1, 58
    c.sub a0, a1
    CHECK 24, a0, 42
    li a2, 0xff00ff00ff00ff00
    li a3, 0x0ff00ff00ff00ff0
    mv a4, a2
    c.xor a4, a3
    CHECK 25, a4, 0xf0f0f0f0f0f0f0f0
    mv a4, a2
    c.or a4, a3
    CHECK 26, a4, 0xfff0fff0fff0fff0
    mv a4, a2
    c.and a4, a3
    CHECK 27, a4, 0x0f000f000f000f00
    li a0, 0x0000000080000000
    li a1, 1
    c.subw a0, a1                       /* 0x7fffffff */
    CHECK 28, a0, 0x7fffffff
    c.addw a0, a1                       /* 0x80000000 sign-extended */
    CHECK 29, a0, 0xffffffff80000000
    li t1, 0x1234
    c.mv a5, t1
    CHECK 30, a5, 0x1234
    li t2, 0x1000
    c.add t2, a5
    CHECK 31, t2, 0x2234

    /* ---- integer loads / stores ---- */
    la s0, cdata
    c.lw a0, 0(s0)                      /* 0x80000001 */
    CHECK 32, a0, 0xffffffff80000001
    c.lw a1, 124(s0)                    /* largest c.lw offset */
    CHECK 33, a1, 0x7654321
    c.ld a2, 8(s0)
    CHECK 34, a2, 0x0123456789abcdef
    c.ld a3, 248(s0)                    /* largest c.ld offset */
    CHECK 35, a3, 0xfedcba9876543210
    li a4, 0x1111111122222222
    c.sw a4, 16(s0)
    c.sd a4, 24(s0)
    ld a0, 16(s0)
    CHECK 36, a0, 0x5a5a5a5a22222222
    ld a0, 24(s0)
    CHECK 37, a0, 0x1111111122222222
    mv s1, sp
    mv sp, s0
    c.lwsp a0, 0(sp)
    CHECK 38, a0, 0xffffffff80000001
    c.ldsp a1, 504(sp)                  /* largest c.ldsp offset */
    CHECK 39, a1, 0x0a0b0c0d0e0f1011
    li a2, 0x33333333
    c.swsp a2, 252(sp)                  /* largest c.swsp offset */
    lwu a0, 252(s0)
    CHECK 40, a0, 0x33333333
    li a3, 0x4444444455555555
    c.sdsp a3, 32(sp)
    ld a0, 32(s0)
    CHECK 41, a0, 0x4444444455555555
    mv sp, s1

    /* ---- FP loads / stores ---- */
    li t0, MSTATUS_FS_INITIAL
    csrs mstatus, t0
    c.fld fa0, 40(s0)
    fmv.x.d a0, fa0
    CHECK 42, a0, 0x400921fb54442d18
    c.fsd fa0, 48(s0)
    ld a0, 48(s0)
    CHECK 43, a0, 0x400921fb54442d18
    mv s1, sp
    mv sp, s0
    c.fldsp fa1, 496(sp)
    fmv.x.d a0, fa1
    CHECK 44, a0, 0xc000000000000000
    c.fsdsp fa1, 56(sp)
    ld a0, 56(s0)
    CHECK 45, a0, 0xc000000000000000
    mv sp, s1

    /* ---- control transfer ---- */
    li a0, 0
    c.j 1f
    li a0, 99
1:  CHECK 46, a0, 0
    c.j 3f
2:  li a0, 7
    c.j 4f
3:  c.j 2b                              /* backward */
4:  CHECK 47, a0, 7
    la t0, 5f
    c.jr t0
    FAIL_IF_REACHED 48
5:  la t0, 6f
    c.jalr t0
7:  FAIL_IF_REACHED 48
6:  CHECK_ADDR 48, ra, 7b               /* link = address of c.jalr + 2 */
    li a0, 0
    c.beqz a0, 8f
    FAIL_IF_REACHED 49
8:  li a1, -5
    c.beqz a1, 9f
    c.j 10f
9:  FAIL_IF_REACHED 50
10: c.bnez a1, 11f
    FAIL_IF_REACHED 51
11: li a2, 0
    c.bnez a2, 12f
    c.j 13f
12: FAIL_IF_REACHED 52
13: li a3, 0x100000000                  /* only bit 32 set: nonzero */
    c.bnez a3, 14f
    FAIL_IF_REACHED 53
14:

    /* ---- c.ebreak ---- */
    EXPECT_TRAP 2f
1:  c.ebreak
    FAIL_IF_REACHED 54
2:  CHECK 54, s9, CAUSE_BREAKPOINT
    CHECK_ADDR 55, s10, 1b

    /* ---- the all-zero halfword is illegal ---- */
    EXPECT_TRAP 2f
1:  .hword 0
    FAIL_IF_REACHED 56
2:  CHECK 56, s9, CAUSE_ILLEGAL_INSN

    /* ---- 32-bit instructions at 2-byte alignment ---- */
    .balign 4
    li a0, 1                            /* (li 1 = c.li: 2 bytes) */
    .option push
    .option norvc
    addi a0, a0, 0x100                  /* at an address = 2 mod 4 */
    .option pop
    CHECK 57, a0, 0x101
    .balign 4
    c.nop
    .option push
    .option norvc
1:  auipc a1, 0
    .option pop
    la a2, 1b
    CHECK_REG 58, a1, a2
    andi a2, a2, 3
    CHECK 59, a2, 2
    .balign 4
    c.nop
    .option push
    .option norvc
    jal ra, 2f
1:  .option pop
    FAIL_IF_REACHED 60
2:  CHECK_ADDR 60, ra, 1b
    la t0, odd_target                   /* 2 mod 4 */
    jalr ra, 0(t0)
    CHECK 61, a0, 0x77

    /* ---- a 32-bit instruction crossing a page boundary ---- */
    li a0, 5
    la t0, straddle
    jalr ra, 0(t0)
    CHECK 62, a0, 0x505

    .option pop
    TEST_PASS

    .option push
    .option rvc
    .balign 4
    c.nop
odd_target:
    .option push
    .option norvc
    addi a0, zero, 0x77
    .option pop
    c.jr ra

    .balign 4096
    .skip 4094
straddle:                               /* occupies page offsets 0xffe..0x1001 */
    .option push
    .option norvc
    addi a0, a0, 0x500
    .option pop
    c.jr ra
    .option pop

    .data
    .balign 8
cdata:
    .word 0x80000001, 0                 /* 0 */
    .dword 0x0123456789abcdef           /* 8 */
    .dword 0x5a5a5a5a5a5a5a5a           /* 16 */
    .dword 0                            /* 24 */
    .dword 0                            /* 32 */
    .dword 0x400921fb54442d18           /* 40: pi */
    .dword 0                            /* 48 */
    .dword 0                            /* 56 */
    .skip 124 - 64
    .word 0x7654321                     /* 124 */
    .skip 248 - 128
    .dword 0xfedcba9876543210           /* 248 */
    .word 0                             /* 256 */
    .skip 496 - 260
    .dword 0xc000000000000000           /* 496: -2.0 */
    .dword 0x0a0b0c0d0e0f1011           /* 504 */
    .balign 16
cstack:
    .skip 2048
cstack_mid:
    .skip 2048
