/*
 * rv64d-arith.S - D extension arithmetic, rounding modes, fflags and fcsr.
 *
 * Spec: RISC-V Unprivileged ISA 20191213, chapter 12 ("D" Standard Extension), which reuses the F rules of chapter 11:
 *  - 11.2 fcsr: fflags (NV=0x10 DZ=0x08 OF=0x04 UF=0x02 NX=0x01) accrue and
 *    are never cleared by instructions; frm (fcsr[7:5]) holds the dynamic
 *    rounding mode; fcsr[31:8] are reserved and read as zero; the frm,
 *    fflags and fcsr CSRs alias the same state.
 *  - 11.2 rounding modes: RNE=0 RTZ=1 RDN=2 RUP=3 RMM=4, DYN=7 in the
 *    instruction's rm field; rm = 5 or 6 is reserved (illegal instruction);
 *    DYN with frm = 5..7 raises illegal instruction.
 *  - 11.3 NaN generation: every NaN result is the canonical NaN
 *    (0x7fc00000 single, 0x7ff8000000000000 double); signaling NaN inputs
 *    raise NV; 11.6 FMA raises NV for inf*0 even with a quiet NaN addend.
 *  - 12.1: double results occupy the whole 64-bit f register -
 *    every result below is read back in full with fmv.x.d.
 *  - IEEE 754-2008 for the values: correctly rounded add/sub/mul/div/sqrt/fma
 *    (fused = one rounding), overflow to inf or the largest finite number by
 *    rounding mode, exact zero sums are +0 except -0 in RDN.
 * Expected values were derived with an exact rational-arithmetic model of
 * IEEE 754 (not taken from a reference run).
 *
 * Check numbers (each FOPx uses two: n = result bits, n+1 = fflags;
 * FOP2_DYN uses three: + frm unchanged):
 *     1-58    FADD: exact, all five static rounding modes on ties and non-ties, specials
 *    59-78    FSUB
 *    79-108   FMUL
 *   109-144   FDIV
 *   145-168   FSQRT
 *   169-202   FMADD / FMSUB / FNMSUB / FNMADD: single rounding, signs, specials
 *   203-232   dynamic rounding: rm = dyn uses frm (check n: result, n+1: fflags, n+2: frm unchanged)
 *  233-234  fflags accrue over several operations and are not cleared
 *  235-245  fcsr / frm / fflags aliasing, reserved fcsr bits, csrrs/csrrc
 *  246-249  rm field = 5 and 6 in the instruction: illegal instruction,
 *           mtval = the instruction bits
 *  250-253  rm = DYN with frm = 5 and 7: illegal instruction
 *  254      a static rm works even when frm holds an invalid value
 */
#include "keel_test.h"

#define NV 0x10
#define DZ 0x08
#define OF 0x04
#define UF 0x02
#define NX 0x01

.macro LOADF freg, val
    li t0, \val
    fmv.d.x \freg, t0
.endm

/* fa0 = op(fa1) */
.macro FOP1 n, op, rm, a, exp, fl
    LOADF fa1, \a
    fsflags zero
    \op fa0, fa1, \rm
    frflags a1
    fmv.x.d a0, fa0
    CHECK \n, a0, \exp
    CHECK \n+1, a1, \fl
.endm

/* fa0 = op(fa1, fa2) */
.macro FOP2 n, op, rm, a, b, exp, fl
    LOADF fa1, \a
    LOADF fa2, \b
    fsflags zero
    \op fa0, fa1, fa2, \rm
    frflags a1
    fmv.x.d a0, fa0
    CHECK \n, a0, \exp
    CHECK \n+1, a1, \fl
.endm

/* fa0 = op(fa1, fa2, fa3) */
.macro FOP3 n, op, rm, a, b, c, exp, fl
    LOADF fa1, \a
    LOADF fa2, \b
    LOADF fa3, \c
    fsflags zero
    \op fa0, fa1, fa2, fa3, \rm
    frflags a1
    fmv.x.d a0, fa0
    CHECK \n, a0, \exp
    CHECK \n+1, a1, \fl
.endm

/* fa0 = op(fa1, fa2) with rm = DYN and frm = mode */
.macro FOP2_DYN n, op, mode, a, b, exp, fl
    LOADF fa1, \a
    LOADF fa2, \b
    fsrmi \mode
    fsflags zero
    \op fa0, fa1, fa2, dyn
    frflags a1
    frrm a2
    fsrmi 0
    fmv.x.d a0, fa0
    CHECK \n, a0, \exp
    CHECK \n+1, a1, \fl
    CHECK \n+2, a2, \mode
.endm

keel_main:
    li t0, MSTATUS_FS_INITIAL
    csrs mstatus, t0

    /* ---- FADD: exact, all five static rounding modes on ties and non-ties, specials ---- */
    FOP2 1, fadd.d, rne, 0x3ff0000000000000, 0x4000000000000000, 0x4008000000000000, 0
    FOP2 3, fadd.d, rne, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000000, NX
    FOP2 5, fadd.d, rtz, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000000, NX
    FOP2 7, fadd.d, rdn, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000000, NX
    FOP2 9, fadd.d, rup, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000001, NX
    FOP2 11, fadd.d, rmm, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000001, NX
    FOP2 13, fadd.d, rne, 0xbff0000000000000, 0xbca0000000000000, 0xbff0000000000000, NX
    FOP2 15, fadd.d, rtz, 0xbff0000000000000, 0xbca0000000000000, 0xbff0000000000000, NX
    FOP2 17, fadd.d, rdn, 0xbff0000000000000, 0xbca0000000000000, 0xbff0000000000001, NX
    FOP2 19, fadd.d, rup, 0xbff0000000000000, 0xbca0000000000000, 0xbff0000000000000, NX
    FOP2 21, fadd.d, rmm, 0xbff0000000000000, 0xbca0000000000000, 0xbff0000000000001, NX
    FOP2 23, fadd.d, rne, 0x3ff0000000000000, 0x3ca8000000000000, 0x3ff0000000000001, NX
    FOP2 25, fadd.d, rtz, 0x3ff0000000000000, 0x3ca8000000000000, 0x3ff0000000000000, NX
    FOP2 27, fadd.d, rdn, 0x3ff0000000000000, 0x3ca8000000000000, 0x3ff0000000000000, NX
    FOP2 29, fadd.d, rup, 0x3ff0000000000000, 0x3ca8000000000000, 0x3ff0000000000001, NX
    FOP2 31, fadd.d, rmm, 0x3ff0000000000000, 0x3ca8000000000000, 0x3ff0000000000001, NX
    FOP2 33, fadd.d, rne, 0x7ff0000000000000, 0xfff0000000000000, 0x7ff8000000000000, NV
    FOP2 35, fadd.d, rne, 0x7ff0000000000001, 0x3ff0000000000000, 0x7ff8000000000000, NV
    FOP2 37, fadd.d, rne, 0x7ff8000000000123, 0x3ff0000000000000, 0x7ff8000000000000, 0
    FOP2 39, fadd.d, rne, 0x7ff0000000000000, 0x3ff0000000000000, 0x7ff0000000000000, 0
    FOP2 41, fadd.d, rne, 0x3ff0000000000000, 0xbff0000000000000, 0x0000000000000000, 0
    FOP2 43, fadd.d, rdn, 0x3ff0000000000000, 0xbff0000000000000, 0x8000000000000000, 0
    FOP2 45, fadd.d, rne, 0x8000000000000000, 0x8000000000000000, 0x8000000000000000, 0
    FOP2 47, fadd.d, rne, 0x0000000000000000, 0x8000000000000000, 0x0000000000000000, 0
    FOP2 49, fadd.d, rne, 0x7fefffffffffffff, 0x7fefffffffffffff, 0x7ff0000000000000, OF|NX
    FOP2 51, fadd.d, rtz, 0x7fefffffffffffff, 0x7fefffffffffffff, 0x7fefffffffffffff, OF|NX
    FOP2 53, fadd.d, rdn, 0xffefffffffffffff, 0xffefffffffffffff, 0xfff0000000000000, OF|NX
    FOP2 55, fadd.d, rup, 0xffefffffffffffff, 0xffefffffffffffff, 0xffefffffffffffff, OF|NX
    FOP2 57, fadd.d, rne, 0x0000000000000001, 0x0000000000000001, 0x0000000000000002, 0

    /* ---- FSUB ---- */
    FOP2 59, fsub.d, rne, 0x4008000000000000, 0x4014000000000000, 0xc000000000000000, 0
    FOP2 61, fsub.d, rne, 0x3ff0000000000000, 0x3c90000000000000, 0x3ff0000000000000, NX
    FOP2 63, fsub.d, rtz, 0x3ff0000000000000, 0x3c90000000000000, 0x3fefffffffffffff, NX
    FOP2 65, fsub.d, rdn, 0x3ff0000000000000, 0x3c90000000000000, 0x3fefffffffffffff, NX
    FOP2 67, fsub.d, rup, 0x3ff0000000000000, 0x3c90000000000000, 0x3ff0000000000000, NX
    FOP2 69, fsub.d, rmm, 0x3ff0000000000000, 0x3c90000000000000, 0x3ff0000000000000, NX
    FOP2 71, fsub.d, rne, 0x4008000000000000, 0x4008000000000000, 0x0000000000000000, 0
    FOP2 73, fsub.d, rdn, 0x4008000000000000, 0x4008000000000000, 0x8000000000000000, 0
    FOP2 75, fsub.d, rne, 0xfff0000000000000, 0xfff0000000000000, 0x7ff8000000000000, NV
    FOP2 77, fsub.d, rne, 0x7ff0000000000000, 0xfff0000000000000, 0x7ff0000000000000, 0

    /* ---- FMUL ---- */
    FOP2 79, fmul.d, rne, 0x4004000000000000, 0xc010000000000000, 0xc024000000000000, 0
    FOP2 81, fmul.d, rne, 0x3ff0000000000001, 0x3ff0000000000001, 0x3ff0000000000002, NX
    FOP2 83, fmul.d, rtz, 0x3ff0000000000001, 0x3ff0000000000001, 0x3ff0000000000002, NX
    FOP2 85, fmul.d, rdn, 0x3ff0000000000001, 0x3ff0000000000001, 0x3ff0000000000002, NX
    FOP2 87, fmul.d, rup, 0x3ff0000000000001, 0x3ff0000000000001, 0x3ff0000000000003, NX
    FOP2 89, fmul.d, rmm, 0x3ff0000000000001, 0x3ff0000000000001, 0x3ff0000000000002, NX
    FOP2 91, fmul.d, rne, 0x0000000000000000, 0x7ff0000000000000, 0x7ff8000000000000, NV
    FOP2 93, fmul.d, rne, 0x8000000000000000, 0x4014000000000000, 0x8000000000000000, 0
    FOP2 95, fmul.d, rne, 0x7fefffffffffffff, 0x4000000000000000, 0x7ff0000000000000, OF|NX
    FOP2 97, fmul.d, rtz, 0x7fefffffffffffff, 0x4000000000000000, 0x7fefffffffffffff, OF|NX
    FOP2 99, fmul.d, rne, 0x0010000000000000, 0x3fe0000000000000, 0x0008000000000000, 0
    FOP2 101, fmul.d, rne, 0x0000000000000001, 0x3fe0000000000000, 0x0000000000000000, UF|NX
    FOP2 103, fmul.d, rup, 0x0000000000000001, 0x3fe0000000000000, 0x0000000000000001, UF|NX
    FOP2 105, fmul.d, rne, 0x0010000000000000, 0x3fefffffffffffff, 0x0010000000000000, UF|NX
    FOP2 107, fmul.d, rne, 0x7ff8000000000000, 0x0000000000000000, 0x7ff8000000000000, 0

    /* ---- FDIV ---- */
    FOP2 109, fdiv.d, rne, 0x4018000000000000, 0x4008000000000000, 0x4000000000000000, 0
    FOP2 111, fdiv.d, rne, 0x3ff0000000000000, 0x4008000000000000, 0x3fd5555555555555, NX
    FOP2 113, fdiv.d, rtz, 0x3ff0000000000000, 0x4008000000000000, 0x3fd5555555555555, NX
    FOP2 115, fdiv.d, rdn, 0x3ff0000000000000, 0x4008000000000000, 0x3fd5555555555555, NX
    FOP2 117, fdiv.d, rup, 0x3ff0000000000000, 0x4008000000000000, 0x3fd5555555555556, NX
    FOP2 119, fdiv.d, rmm, 0x3ff0000000000000, 0x4008000000000000, 0x3fd5555555555555, NX
    FOP2 121, fdiv.d, rne, 0xbff0000000000000, 0x4008000000000000, 0xbfd5555555555555, NX
    FOP2 123, fdiv.d, rtz, 0xbff0000000000000, 0x4008000000000000, 0xbfd5555555555555, NX
    FOP2 125, fdiv.d, rdn, 0xbff0000000000000, 0x4008000000000000, 0xbfd5555555555556, NX
    FOP2 127, fdiv.d, rup, 0xbff0000000000000, 0x4008000000000000, 0xbfd5555555555555, NX
    FOP2 129, fdiv.d, rmm, 0xbff0000000000000, 0x4008000000000000, 0xbfd5555555555555, NX
    FOP2 131, fdiv.d, rne, 0x3ff0000000000000, 0x0000000000000000, 0x7ff0000000000000, DZ
    FOP2 133, fdiv.d, rne, 0xbff0000000000000, 0x0000000000000000, 0xfff0000000000000, DZ
    FOP2 135, fdiv.d, rne, 0xc000000000000000, 0x8000000000000000, 0x7ff0000000000000, DZ
    FOP2 137, fdiv.d, rne, 0x0000000000000000, 0x0000000000000000, 0x7ff8000000000000, NV
    FOP2 139, fdiv.d, rne, 0x7ff0000000000000, 0x7ff0000000000000, 0x7ff8000000000000, NV
    FOP2 141, fdiv.d, rne, 0x3ff0000000000000, 0x7ff0000000000000, 0x0000000000000000, 0
    FOP2 143, fdiv.d, rne, 0x7ff0000000000000, 0xc000000000000000, 0xfff0000000000000, 0

    /* ---- FSQRT ---- */
    FOP1 145, fsqrt.d, rne, 0x4010000000000000, 0x4000000000000000, 0
    FOP1 147, fsqrt.d, rne, 0x4000000000000000, 0x3ff6a09e667f3bcd, NX
    FOP1 149, fsqrt.d, rtz, 0x4000000000000000, 0x3ff6a09e667f3bcc, NX
    FOP1 151, fsqrt.d, rdn, 0x4000000000000000, 0x3ff6a09e667f3bcc, NX
    FOP1 153, fsqrt.d, rup, 0x4000000000000000, 0x3ff6a09e667f3bcd, NX
    FOP1 155, fsqrt.d, rmm, 0x4000000000000000, 0x3ff6a09e667f3bcd, NX
    FOP1 157, fsqrt.d, rne, 0xbff0000000000000, 0x7ff8000000000000, NV
    FOP1 159, fsqrt.d, rne, 0x8000000000000000, 0x8000000000000000, 0
    FOP1 161, fsqrt.d, rne, 0x7ff0000000000000, 0x7ff0000000000000, 0
    FOP1 163, fsqrt.d, rne, 0xfff0000000000000, 0x7ff8000000000000, NV
    FOP1 165, fsqrt.d, rne, 0x0000000000000001, 0x1e60000000000000, 0
    FOP1 167, fsqrt.d, rne, 0x7ff0000000000001, 0x7ff8000000000000, NV

    /* ---- FMADD / FMSUB / FNMSUB / FNMADD: single rounding, signs, specials ---- */
    FOP3 169, fmadd.d, rne, 0x3ff0000002000000, 0x3ff0000002000000, 0xbff0000004000000, 0x3c90000000000000, 0
    FOP3 171, fmsub.d, rne, 0x3ff0000002000000, 0x3ff0000002000000, 0x3ff0000004000000, 0x3c90000000000000, 0
    FOP3 173, fnmsub.d, rne, 0x3ff0000002000000, 0x3ff0000002000000, 0x3ff0000004000000, 0xbc90000000000000, 0
    FOP3 175, fnmadd.d, rne, 0x3ff0000002000000, 0x3ff0000002000000, 0xbff0000004000000, 0xbc90000000000000, 0
    FOP3 177, fmadd.d, rne, 0x4000000000000000, 0x4008000000000000, 0x3ff0000000000000, 0x401c000000000000, 0
    FOP3 179, fmsub.d, rne, 0x4000000000000000, 0x4008000000000000, 0x3ff0000000000000, 0x4014000000000000, 0
    FOP3 181, fnmsub.d, rne, 0x4000000000000000, 0x4008000000000000, 0x3ff0000000000000, 0xc014000000000000, 0
    FOP3 183, fnmadd.d, rne, 0x4000000000000000, 0x4008000000000000, 0x3ff0000000000000, 0xc01c000000000000, 0
    FOP3 185, fmadd.d, rup, 0x3ff0000000000000, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000001, NX
    FOP3 187, fmadd.d, rne, 0x3ff0000000000000, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000000, NX
    FOP3 189, fnmadd.d, rdn, 0x3ff0000000000000, 0x3ff0000000000000, 0x3ca0000000000000, 0xbff0000000000001, NX
    FOP3 191, fmadd.d, rne, 0x7ff0000000000000, 0x0000000000000000, 0x7ff8000000000000, 0x7ff8000000000000, NV
    FOP3 193, fmadd.d, rne, 0x7ff0000000000000, 0x0000000000000000, 0x3ff0000000000000, 0x7ff8000000000000, NV
    FOP3 195, fmadd.d, rne, 0x7ff0000000000000, 0x3ff0000000000000, 0xfff0000000000000, 0x7ff8000000000000, NV
    FOP3 197, fmadd.d, rne, 0x0000000000000000, 0x3ff0000000000000, 0x8000000000000000, 0x0000000000000000, 0
    FOP3 199, fmadd.d, rdn, 0x0000000000000000, 0x3ff0000000000000, 0x8000000000000000, 0x8000000000000000, 0
    FOP3 201, fmadd.d, rne, 0x7fefffffffffffff, 0x4000000000000000, 0xffefffffffffffff, 0x7fefffffffffffff, 0

    /* ---- dynamic rounding: rm = dyn uses frm (check n: result, n+1: fflags, n+2: frm unchanged) ---- */
    FOP2_DYN 203, fadd.d, 0, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000000, NX
    FOP2_DYN 206, fadd.d, 1, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000000, NX
    FOP2_DYN 209, fadd.d, 2, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000000, NX
    FOP2_DYN 212, fadd.d, 3, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000001, NX
    FOP2_DYN 215, fadd.d, 4, 0x3ff0000000000000, 0x3ca0000000000000, 0x3ff0000000000001, NX
    FOP2_DYN 218, fdiv.d, 0, 0xbff0000000000000, 0x4008000000000000, 0xbfd5555555555555, NX
    FOP2_DYN 221, fdiv.d, 1, 0xbff0000000000000, 0x4008000000000000, 0xbfd5555555555555, NX
    FOP2_DYN 224, fdiv.d, 2, 0xbff0000000000000, 0x4008000000000000, 0xbfd5555555555556, NX
    FOP2_DYN 227, fdiv.d, 3, 0xbff0000000000000, 0x4008000000000000, 0xbfd5555555555555, NX
    FOP2_DYN 230, fdiv.d, 4, 0xbff0000000000000, 0x4008000000000000, 0xbfd5555555555555, NX


    /* ---- fflags accrue ---- */
    fsflags zero
    LOADF fa1, 0x3ff0000000000000
    LOADF fa2, 0x4008000000000000
    fdiv.d fa0, fa1, fa2, rne           /* NX */
    LOADF fa3, 0
    fdiv.d fa0, fa1, fa3, rne           /* DZ */
    LOADF fa4, 0xbff0000000000000
    fsqrt.d fa0, fa4, rne               /* NV */
    LOADF fa4, 0x7fefffffffffffff
    LOADF fa5, 0x4000000000000000
    fmul.d fa0, fa4, fa5, rne           /* OF, NX */
    LOADF fa4, 1
    LOADF fa5, 0x3fe0000000000000
    fmul.d fa0, fa4, fa5, rne           /* UF, NX */
    frflags a0
    CHECK 233, a0, NV|DZ|OF|UF|NX
    fadd.d fa0, fa1, fa1, rne           /* exact: clears nothing */
    frflags a0
    CHECK 234, a0, 0x1f

    /* ---- fcsr / frm / fflags are views of one register ---- */
    li a1, 0xff
    fscsr a1
    frrm a0
    CHECK 235, a0, 7
    frflags a0
    CHECK 236, a0, 0x1f
    li a1, 0xffffffff
    fscsr a1
    frcsr a0
    CHECK 237, a0, 0xff                    /* fcsr[31:8] read as zero */
    li a1, 2
    fsrm a0, a1                            /* old frm returned */
    CHECK 238, a0, 7
    frcsr a0
    CHECK 239, a0, 0x5f
    li a1, 3
    fsflags a0, a1
    CHECK 240, a0, 0x1f
    frcsr a0
    CHECK 241, a0, 0x43
    li a1, 0x1d
    csrw frm, a1                           /* only 3 bits exist */
    frrm a0
    CHECK 242, a0, 5
    frflags a0
    CHECK 243, a0, 3
    csrsi fflags, 0x10
    frflags a0
    CHECK 244, a0, 0x13
    csrci fflags, 0x1
    frcsr a0
    CHECK 245, a0, 0xb2

    /* ---- reserved rm values in the instruction ---- */
    fscsr zero
    EXPECT_TRAP 2f
1:  .word 0x02c5d553                       /* fadd.d fa0, fa1, fa2 with rm = 5 */
    FAIL_IF_REACHED 246
2:  CHECK 246, s9, CAUSE_ILLEGAL_INSN
    CHECK 247, s11, 0x02c5d553
    EXPECT_TRAP 2f
1:  .word 0x02c5e553                       /* rm = 6 */
    FAIL_IF_REACHED 248
2:  CHECK 248, s9, CAUSE_ILLEGAL_INSN
    CHECK 249, s11, 0x02c5e553

    /* ---- DYN with an invalid frm ---- */
    fsrmi 5
    EXPECT_TRAP 2f
1:  fadd.d fa0, fa1, fa2, dyn
    FAIL_IF_REACHED 250
2:  CHECK 250, s9, CAUSE_ILLEGAL_INSN
    CHECK_ADDR 251, s10, 1b
    fsrmi 7
    EXPECT_TRAP 2f
1:  fmul.d fa0, fa1, fa2, dyn
    FAIL_IF_REACHED 252
2:  CHECK 252, s9, CAUSE_ILLEGAL_INSN
    CHECK_ADDR 253, s10, 1b

    /* ---- a static rm ignores frm ---- */
    LOADF fa1, 0x3ff0000000000000
    LOADF fa2, 0x3ff0000000000000
    fadd.d fa0, fa1, fa2, rne
    fsrmi 0
    fmv.x.d a0, fa0
    CHECK 254, a0, 0x4000000000000000

    TEST_PASS
