/*
 * rv64i-alu.S - RV64I integer computational instructions.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 2.4 (Integer Computational
 * Instructions: ADDI/SLTI/SLTIU/ANDI/ORI/XORI, SLLI/SRLI/SRAI, LUI, AUIPC,
 * ADD/SLT/SLTU/AND/OR/XOR/SLL/SRL/SUB/SRA), chapter 2.6/2.2 (x0 hardwired to
 * zero) and chapter 5.2 (RV64I: 6-bit shift amounts, ADDIW/SLLIW/SRLIW/SRAIW,
 * ADDW/SUBW/SLLW/SRLW/SRAW operate on the low 32 bits and sign-extend the
 * 32-bit result to 64 bits; LUI/AUIPC sign-extend their 32-bit value).
 *
 * Every check computes a0 = op(a1, a2) (or op(a1, imm)) and compares a0 with
 * a value worked out from the spec text above.  Check numbers:
 *     1-16    ADD, SUB                    17-24   ADDI
 *    25-56    SLT, SLTU, SLTI, SLTIU      57-80   XOR/OR/AND, XORI/ORI/ANDI
 *    81-125   SLL/SRL/SRA (by 0,1,31,32,63, rs2 >= 64), SLLI/SRLI/SRAI
 *   126-145   ADDW, SUBW, ADDIW          146-184 SLLW/SRLW/SRAW, *IW forms
 *   185-190   LUI (positive, bit-31 sign extension, zero)
 *   191-194   AUIPC (offset 0, positive, negative, 0x80000 sign-extended)
 *   195-199   x0: writes are discarded, reads give zero
 *   200-205   source/destination register aliasing (rd == rs1 == rs2 ...)
 */
#include "keel_test.h"

/* a0 = op(a, b) */
.macro TEST_RR n, op, exp, a, b
    li a1, \a
    li a2, \b
    \op a0, a1, a2
    CHECK \n, a0, \exp
.endm

/* a0 = op(a, imm) */
.macro TEST_IMM n, op, exp, a, imm
    li a1, \a
    \op a0, a1, \imm
    CHECK \n, a0, \exp
.endm

keel_main:

    /* ---- ADD / SUB ---- */
    TEST_RR 1, add, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000
    TEST_RR 2, add, 0x0000000000000002, 0x0000000000000001, 0x0000000000000001
    TEST_RR 3, add, 0x000000000000000a, 0x0000000000000003, 0x0000000000000007
    TEST_RR 4, add, 0x0000000000000000, 0xffffffffffffffff, 0x0000000000000001
    TEST_RR 5, add, 0x8000000000000000, 0x7fffffffffffffff, 0x0000000000000001
    TEST_RR 6, add, 0x7fffffffffffffff, 0x8000000000000000, 0xffffffffffffffff
    TEST_RR 7, add, 0x0000000100000000, 0x00000000ffffffff, 0x0000000000000001
    TEST_RR 8, add, 0xfffffffffffffffe, 0xffffffffffffffff, 0xffffffffffffffff
    TEST_RR 9, sub, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000
    TEST_RR 10, sub, 0x0000000000000000, 0x0000000000000001, 0x0000000000000001
    TEST_RR 11, sub, 0xfffffffffffffffc, 0x0000000000000003, 0x0000000000000007
    TEST_RR 12, sub, 0xffffffffffffffff, 0x0000000000000000, 0x0000000000000001
    TEST_RR 13, sub, 0x7fffffffffffffff, 0x8000000000000000, 0x0000000000000001
    TEST_RR 14, sub, 0x8000000000000000, 0x7fffffffffffffff, 0xffffffffffffffff
    TEST_RR 15, sub, 0x00000000ffffffff, 0x0000000100000000, 0x0000000000000001
    TEST_RR 16, sub, 0x0000000000000000, 0xffffffffffffffff, 0xffffffffffffffff

    /* ---- ADDI (12-bit sign-extended immediate: -2048..2047) ---- */
    TEST_IMM 17, addi, 0x0000000000000000, 0x0000000000000000, 0
    TEST_IMM 18, addi, 0x0000000000000002, 0x0000000000000001, 1
    TEST_IMM 19, addi, 0x00000000000007ff, 0x0000000000000000, 2047
    TEST_IMM 20, addi, 0xfffffffffffff800, 0x0000000000000000, -2048
    TEST_IMM 21, addi, 0x0000000000000000, 0xffffffffffffffff, 1
    TEST_IMM 22, addi, 0x8000000000000000, 0x7fffffffffffffff, 1
    TEST_IMM 23, addi, 0x00000007fffff7ff, 0x00000007ffffffff, -2048
    TEST_IMM 24, addi, 0x0000000000000004, 0x0000000000000005, -1

    /* ---- SLT / SLTU / SLTI / SLTIU (signed vs unsigned) ---- */
    TEST_RR 25, slt, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000
    TEST_RR 26, slt, 0x0000000000000001, 0x0000000000000000, 0x0000000000000001
    TEST_RR 27, slt, 0x0000000000000000, 0x0000000000000001, 0x0000000000000000
    TEST_RR 28, slt, 0x0000000000000001, 0xffffffffffffffff, 0x0000000000000000
    TEST_RR 29, slt, 0x0000000000000000, 0x0000000000000000, 0xffffffffffffffff
    TEST_RR 30, slt, 0x0000000000000001, 0x8000000000000000, 0x7fffffffffffffff
    TEST_RR 31, slt, 0x0000000000000000, 0x7fffffffffffffff, 0x8000000000000000
    TEST_RR 32, slt, 0x0000000000000001, 0xfffffffffffffffe, 0xffffffffffffffff
    TEST_RR 33, sltu, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000
    TEST_RR 34, sltu, 0x0000000000000001, 0x0000000000000000, 0x0000000000000001
    TEST_RR 35, sltu, 0x0000000000000000, 0x0000000000000001, 0x0000000000000000
    TEST_RR 36, sltu, 0x0000000000000000, 0xffffffffffffffff, 0x0000000000000000
    TEST_RR 37, sltu, 0x0000000000000001, 0x0000000000000000, 0xffffffffffffffff
    TEST_RR 38, sltu, 0x0000000000000000, 0x8000000000000000, 0x7fffffffffffffff
    TEST_RR 39, sltu, 0x0000000000000001, 0x7fffffffffffffff, 0x8000000000000000
    TEST_RR 40, sltu, 0x0000000000000001, 0xfffffffffffffffe, 0xffffffffffffffff
    TEST_IMM 41, slti, 0x0000000000000000, 0x0000000000000000, 0
    TEST_IMM 42, slti, 0x0000000000000001, 0x0000000000000000, 1
    TEST_IMM 43, slti, 0x0000000000000001, 0xffffffffffffffff, 0
    TEST_IMM 44, slti, 0x0000000000000000, 0x0000000000000001, -1
    TEST_IMM 45, slti, 0x0000000000000001, 0x8000000000000000, 0
    TEST_IMM 46, slti, 0x0000000000000001, 0xfffffffffffff7ff, -2048
    TEST_IMM 47, slti, 0x0000000000000000, 0x00000000000007ff, 2047
    TEST_IMM 48, slti, 0x0000000000000001, 0x00000000000007fe, 2047
    TEST_IMM 49, sltiu, 0x0000000000000001, 0x0000000000000000, 1
    TEST_IMM 50, sltiu, 0x0000000000000000, 0x0000000000000001, 1
    TEST_IMM 51, sltiu, 0x0000000000000001, 0x0000000000000005, -1
    TEST_IMM 52, sltiu, 0x0000000000000000, 0xffffffffffffffff, -1
    TEST_IMM 53, sltiu, 0x0000000000000001, 0xfffffffffffffffe, -1
    TEST_IMM 54, sltiu, 0x0000000000000000, 0x0000000000000800, 2047
    TEST_IMM 55, sltiu, 0x0000000000000001, 0x00000000000007fe, 2047
    TEST_IMM 56, sltiu, 0x0000000000000001, 0x8000000000000000, -2048

    /* ---- XOR / OR / AND and immediate forms (immediate sign-extended) ---- */
    TEST_RR 57, xor, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0, 0xf0f0f0f0f0f0f0f0
    TEST_RR 58, xor, 0xff00ff00ff00ff00, 0xf0f0f0f0f0f0f0f0, 0x0ff00ff00ff00ff0
    TEST_RR 59, xor, 0xffffffffffffffff, 0x0000000000000000, 0xffffffffffffffff
    TEST_RR 60, xor, 0xaaaaaaaaaaaaaaaa, 0xffffffffffffffff, 0x5555555555555555
    TEST_RR 61, or, 0xfff0fff0fff0fff0, 0x0ff00ff00ff00ff0, 0xf0f0f0f0f0f0f0f0
    TEST_RR 62, or, 0xfff0fff0fff0fff0, 0xf0f0f0f0f0f0f0f0, 0x0ff00ff00ff00ff0
    TEST_RR 63, or, 0xffffffffffffffff, 0x0000000000000000, 0xffffffffffffffff
    TEST_RR 64, or, 0xffffffffffffffff, 0xffffffffffffffff, 0x5555555555555555
    TEST_RR 65, and, 0x00f000f000f000f0, 0x0ff00ff00ff00ff0, 0xf0f0f0f0f0f0f0f0
    TEST_RR 66, and, 0x00f000f000f000f0, 0xf0f0f0f0f0f0f0f0, 0x0ff00ff00ff00ff0
    TEST_RR 67, and, 0x0000000000000000, 0x0000000000000000, 0xffffffffffffffff
    TEST_RR 68, and, 0x5555555555555555, 0xffffffffffffffff, 0x5555555555555555
    TEST_IMM 69, xori, 0x0ff00ff00ff00f00, 0x0ff00ff00ff00ff0, 240
    TEST_IMM 70, xori, 0xf00ff00ff00ff000, 0x0ff00ff00ff00ff0, -16
    TEST_IMM 71, xori, 0x0000000000000000, 0xffffffffffffffff, -1
    TEST_IMM 72, xori, 0xedcba987654326f0, 0x123456789abcdef0, -2048
    TEST_IMM 73, ori, 0x0ff00ff00ff00ff0, 0x0ff00ff00ff00ff0, 240
    TEST_IMM 74, ori, 0xfffffffffffffff0, 0x0ff00ff00ff00ff0, -16
    TEST_IMM 75, ori, 0xffffffffffffffff, 0xffffffffffffffff, -1
    TEST_IMM 76, ori, 0xfffffffffffffef0, 0x123456789abcdef0, -2048
    TEST_IMM 77, andi, 0x00000000000000f0, 0x0ff00ff00ff00ff0, 240
    TEST_IMM 78, andi, 0x0ff00ff00ff00ff0, 0x0ff00ff00ff00ff0, -16
    TEST_IMM 79, andi, 0xffffffffffffffff, 0xffffffffffffffff, -1
    TEST_IMM 80, andi, 0x123456789abcd800, 0x123456789abcdef0, -2048

    /* ---- SLL / SRL / SRA: shift amounts 0, 1, 31, 32, 63 and only rs2[5:0] used ---- */
    TEST_RR 81, sll, 0x8000000000000001, 0x8000000000000001, 0x0000000000000000
    TEST_RR 82, sll, 0x0000000000000002, 0x8000000000000001, 0x0000000000000001
    TEST_RR 83, sll, 0xc4d5e6f780000000, 0x0123456789abcdef, 0x000000000000001f
    TEST_RR 84, sll, 0x89abcdef00000000, 0x0123456789abcdef, 0x0000000000000020
    TEST_RR 85, sll, 0x8000000000000000, 0x8000000000000001, 0x000000000000003f
    TEST_RR 86, sll, 0x8000000000000000, 0x8000000007654321, 0x000000000000003f
    TEST_RR 87, sll, 0x123456789abcdef0, 0x0123456789abcdef, 0x0000000000000044
    TEST_RR 88, sll, 0x8000000000000000, 0x8000000000000001, 0xffffffffffffffff
    TEST_RR 89, srl, 0x8000000000000001, 0x8000000000000001, 0x0000000000000000
    TEST_RR 90, srl, 0x4000000000000000, 0x8000000000000001, 0x0000000000000001
    TEST_RR 91, srl, 0x0000000002468acf, 0x0123456789abcdef, 0x000000000000001f
    TEST_RR 92, srl, 0x0000000001234567, 0x0123456789abcdef, 0x0000000000000020
    TEST_RR 93, srl, 0x0000000000000001, 0x8000000000000001, 0x000000000000003f
    TEST_RR 94, srl, 0x0000000000000001, 0x8000000007654321, 0x000000000000003f
    TEST_RR 95, srl, 0x00123456789abcde, 0x0123456789abcdef, 0x0000000000000044
    TEST_RR 96, srl, 0x0000000000000001, 0x8000000000000001, 0xffffffffffffffff
    TEST_RR 97, sra, 0x8000000000000001, 0x8000000000000001, 0x0000000000000000
    TEST_RR 98, sra, 0xc000000000000000, 0x8000000000000001, 0x0000000000000001
    TEST_RR 99, sra, 0x0000000002468acf, 0x0123456789abcdef, 0x000000000000001f
    TEST_RR 100, sra, 0x0000000001234567, 0x0123456789abcdef, 0x0000000000000020
    TEST_RR 101, sra, 0xffffffffffffffff, 0x8000000000000001, 0x000000000000003f
    TEST_RR 102, sra, 0xffffffffffffffff, 0x8000000007654321, 0x000000000000003f
    TEST_RR 103, sra, 0x00123456789abcde, 0x0123456789abcdef, 0x0000000000000044
    TEST_RR 104, sra, 0xffffffffffffffff, 0x8000000000000001, 0xffffffffffffffff
    TEST_IMM 105, slli, 0x8000000000000001, 0x8000000000000001, 0
    TEST_IMM 106, slli, 0x0000000000000002, 0x8000000000000001, 1
    TEST_IMM 107, slli, 0xc4d5e6f780000000, 0x0123456789abcdef, 31
    TEST_IMM 108, slli, 0x89abcdef00000000, 0x0123456789abcdef, 32
    TEST_IMM 109, slli, 0x8000000000000000, 0x8000000000000001, 63
    TEST_IMM 110, slli, 0x8000000000000000, 0x8000000007654321, 63
    TEST_IMM 111, slli, 0xfffffffffffff000, 0xffffffffffffffff, 12
    TEST_IMM 112, srli, 0x8000000000000001, 0x8000000000000001, 0
    TEST_IMM 113, srli, 0x4000000000000000, 0x8000000000000001, 1
    TEST_IMM 114, srli, 0x0000000002468acf, 0x0123456789abcdef, 31
    TEST_IMM 115, srli, 0x0000000001234567, 0x0123456789abcdef, 32
    TEST_IMM 116, srli, 0x0000000000000001, 0x8000000000000001, 63
    TEST_IMM 117, srli, 0x0000000000000001, 0x8000000007654321, 63
    TEST_IMM 118, srli, 0x000fffffffffffff, 0xffffffffffffffff, 12
    TEST_IMM 119, srai, 0x8000000000000001, 0x8000000000000001, 0
    TEST_IMM 120, srai, 0xc000000000000000, 0x8000000000000001, 1
    TEST_IMM 121, srai, 0x0000000002468acf, 0x0123456789abcdef, 31
    TEST_IMM 122, srai, 0x0000000001234567, 0x0123456789abcdef, 32
    TEST_IMM 123, srai, 0xffffffffffffffff, 0x8000000000000001, 63
    TEST_IMM 124, srai, 0xffffffffffffffff, 0x8000000007654321, 63
    TEST_IMM 125, srai, 0xffffffffffffffff, 0xffffffffffffffff, 12

    /* ---- ADDW / SUBW / ADDIW: 32-bit result sign-extended, upper input bits ignored ---- */
    TEST_RR 126, addw, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000
    TEST_RR 127, addw, 0x0000000000000002, 0x0000000000000001, 0x0000000000000001
    TEST_RR 128, addw, 0xffffffff80000000, 0x000000007fffffff, 0x0000000000000001
    TEST_RR 129, addw, 0x0000000000000000, 0x00000000ffffffff, 0x0000000000000001
    TEST_RR 130, addw, 0x0000000000000008, 0x1234567800000005, 0xabcdef0000000003
    TEST_RR 131, addw, 0x0000000000000000, 0x0000000080000000, 0x0000000080000000
    TEST_RR 132, addw, 0xfffffffffffffffe, 0xffffffffffffffff, 0xffffffffffffffff
    TEST_RR 133, subw, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000
    TEST_RR 134, subw, 0xffffffffffffffff, 0x0000000000000000, 0x0000000000000001
    TEST_RR 135, subw, 0x000000007fffffff, 0x0000000080000000, 0x0000000000000001
    TEST_RR 136, subw, 0xffffffffffffffff, 0x0000000100000000, 0x0000000000000001
    TEST_RR 137, subw, 0xfffffffffffffffe, 0xffffffff00000005, 0x0000000100000007
    TEST_RR 138, subw, 0xffffffff80000000, 0x000000007fffffff, 0xffffffffffffffff
    TEST_IMM 139, addiw, 0x0000000000000000, 0x0000000000000000, 0
    TEST_IMM 140, addiw, 0xffffffff80000000, 0x000000007fffffff, 1
    TEST_IMM 141, addiw, 0x0000000000000000, 0x00000000ffffffff, 1
    TEST_IMM 142, addiw, 0xffffffffffffffff, 0x123456780000000a, -11
    TEST_IMM 143, addiw, 0x000000007fffffff, 0x0000000080000000, -1
    TEST_IMM 144, addiw, 0x000000007fffffff, 0x000000007ffff800, 2047
    TEST_IMM 145, addiw, 0xffffffffffffffff, 0x12345678ffffffff, 0

    /* ---- SLLW / SRLW / SRAW / SLLIW / SRLIW / SRAIW: shift amounts 0, 1, 31 and only rs2[4:0] used ---- */
    TEST_RR 146, sllw, 0xffffffff80000001, 0xfedcba9880000001, 0x0000000000000000
    TEST_RR 147, sllw, 0x0000000000000002, 0xfedcba9880000001, 0x0000000000000001
    TEST_RR 148, sllw, 0xffffffff80000000, 0xfedcba9880000001, 0x000000000000001f
    TEST_RR 149, sllw, 0xffffffff80000001, 0xfedcba9880000001, 0x0000000000000020
    TEST_RR 150, sllw, 0x0000000000000002, 0xfedcba9880000001, 0x0000000000000021
    TEST_RR 151, sllw, 0x0000000023456780, 0x0000000012345678, 0x0000000000000004
    TEST_RR 152, sllw, 0x0000000023456780, 0x00000000f2345678, 0x0000000000000004
    TEST_RR 153, sllw, 0xffffffff80000000, 0xfedcba9880000001, 0xffffffffffffffff
    TEST_RR 154, srlw, 0xffffffff80000001, 0xfedcba9880000001, 0x0000000000000000
    TEST_RR 155, srlw, 0x0000000040000000, 0xfedcba9880000001, 0x0000000000000001
    TEST_RR 156, srlw, 0x0000000000000001, 0xfedcba9880000001, 0x000000000000001f
    TEST_RR 157, srlw, 0xffffffff80000001, 0xfedcba9880000001, 0x0000000000000020
    TEST_RR 158, srlw, 0x0000000040000000, 0xfedcba9880000001, 0x0000000000000021
    TEST_RR 159, srlw, 0x0000000001234567, 0x0000000012345678, 0x0000000000000004
    TEST_RR 160, srlw, 0x000000000f234567, 0x00000000f2345678, 0x0000000000000004
    TEST_RR 161, srlw, 0x0000000000000001, 0xfedcba9880000001, 0xffffffffffffffff
    TEST_RR 162, sraw, 0xffffffff80000001, 0xfedcba9880000001, 0x0000000000000000
    TEST_RR 163, sraw, 0xffffffffc0000000, 0xfedcba9880000001, 0x0000000000000001
    TEST_RR 164, sraw, 0xffffffffffffffff, 0xfedcba9880000001, 0x000000000000001f
    TEST_RR 165, sraw, 0xffffffff80000001, 0xfedcba9880000001, 0x0000000000000020
    TEST_RR 166, sraw, 0xffffffffc0000000, 0xfedcba9880000001, 0x0000000000000021
    TEST_RR 167, sraw, 0x0000000001234567, 0x0000000012345678, 0x0000000000000004
    TEST_RR 168, sraw, 0xffffffffff234567, 0x00000000f2345678, 0x0000000000000004
    TEST_RR 169, sraw, 0xffffffffffffffff, 0xfedcba9880000001, 0xffffffffffffffff
    TEST_IMM 170, slliw, 0xffffffff80000001, 0xfedcba9880000001, 0
    TEST_IMM 171, slliw, 0x0000000000000002, 0xfedcba9880000001, 1
    TEST_IMM 172, slliw, 0xffffffff80000000, 0xfedcba9880000001, 31
    TEST_IMM 173, slliw, 0x0000000023456780, 0x0000000012345678, 4
    TEST_IMM 174, slliw, 0x0000000023456780, 0x00000000f2345678, 4
    TEST_IMM 175, srliw, 0xffffffff80000001, 0xfedcba9880000001, 0
    TEST_IMM 176, srliw, 0x0000000040000000, 0xfedcba9880000001, 1
    TEST_IMM 177, srliw, 0x0000000000000001, 0xfedcba9880000001, 31
    TEST_IMM 178, srliw, 0x0000000001234567, 0x0000000012345678, 4
    TEST_IMM 179, srliw, 0x000000000f234567, 0x00000000f2345678, 4
    TEST_IMM 180, sraiw, 0xffffffff80000001, 0xfedcba9880000001, 0
    TEST_IMM 181, sraiw, 0xffffffffc0000000, 0xfedcba9880000001, 1
    TEST_IMM 182, sraiw, 0xffffffffffffffff, 0xfedcba9880000001, 31
    TEST_IMM 183, sraiw, 0x0000000001234567, 0x0000000012345678, 4
    TEST_IMM 184, sraiw, 0xffffffffff234567, 0x00000000f2345678, 4

    /* ---- LUI: imm << 12, the 32-bit result sign-extended ---- */
    lui a0, 0
    CHECK 185, a0, 0
    lui a0, 1
    CHECK 186, a0, 0x1000
    lui a0, 0x7ffff
    CHECK 187, a0, 0x000000007ffff000
    lui a0, 0x80000
    CHECK 188, a0, 0xffffffff80000000
    lui a0, 0xfffff
    CHECK 189, a0, 0xfffffffffffff000
    lui a0, 0x12345
    addi a0, a0, 0x678
    CHECK 190, a0, 0x12345678

    /* ---- AUIPC: pc + (imm << 12), imm sign-extended from 32 bits ---- */
1:  auipc a0, 0
    la a1, 1b
    CHECK_REG 191, a0, a1
2:  auipc a0, 1
    la a1, 2b
    li a2, 0x1000
    add a1, a1, a2
    CHECK_REG 192, a0, a1
3:  auipc a0, 0xfffff                /* pc - 0x1000 */
    la a1, 3b
    li a2, 0x1000
    sub a1, a1, a2
    CHECK_REG 193, a0, a1
4:  auipc a0, 0x80000                /* pc + 0xffffffff80000000 = pc - 2^31 */
    la a1, 4b
    li a2, 0x80000000
    sub a1, a1, a2
    CHECK_REG 194, a0, a1

    /* ---- x0 is hardwired to zero ---- */
    addi x0, x0, 5
    CHECK 195, x0, 0
    li a1, -1
    add x0, a1, a1
    CHECK 196, x0, 0
    lui x0, 0x12345
    CHECK 197, x0, 0
    mv a0, x0
    CHECK 198, a0, 0
    li a1, 7
    or a0, a1, x0                    /* reading x0 as a source gives 0 */
    CHECK 199, a0, 7

    /* ---- register aliasing: sources are read before rd is written ---- */
    li a0, 13
    li a2, 11
    add a0, a0, a2                   /* rd == rs1 */
    CHECK 200, a0, 24
    li a0, 13
    li a1, 11
    sub a0, a1, a0                   /* rd == rs2 */
    CHECK 201, a0, -2
    li a0, 0x70000001
    addw a0, a0, a0                  /* rd == rs1 == rs2 */
    CHECK 202, a0, 0xffffffffe0000002
    li a0, 3
    sll a0, a0, a0                   /* 3 << 3 */
    CHECK 203, a0, 24
    li a0, 5
    slti a0, a0, 6
    CHECK 204, a0, 1
    li a1, 0x5555
    xor a0, a1, a1
    CHECK 205, a0, 0

    TEST_PASS
