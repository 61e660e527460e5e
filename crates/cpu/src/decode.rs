//! Instruction decoding: 32-bit encodings (and expanded RVC ones) to [`Op`]s
//! (unprivileged spec ch. 2, 5, 7, 8, 9, 13, 14, 24 "Instruction Set Listings";
//! privileged spec §3.3 and §4.2.1 for the privileged instructions).

use crate::compressed;
use crate::exec_fp as fp;
use crate::exec_int as int;
use crate::exec_mem as mem;
use crate::exec_sys as sys;
use crate::op::{Handler, Op};

/// A decoded instruction and whether it must end its block (control transfer or a
/// system instruction whose effects the next block lookup has to see).
pub(crate) struct Decoded {
    pub op: Op,
    pub ends_block: bool,
}

fn imm_i(i: u32) -> i64 {
    (i as i32 >> 20) as i64
}

fn imm_s(i: u32) -> i64 {
    (((i as i32 >> 25) << 5) | ((i >> 7) & 0x1f) as i32) as i64
}

fn imm_b(i: u32) -> i64 {
    let v = (((i as i32) >> 31) << 12) as u32
        | ((i >> 7) & 1) << 11
        | ((i >> 25) & 0x3f) << 5
        | ((i >> 8) & 0xf) << 1;
    v as i32 as i64
}

fn imm_u(i: u32) -> i64 {
    (i & 0xffff_f000) as i32 as i64
}

fn imm_j(i: u32) -> i64 {
    let v = (((i as i32) >> 31) << 20) as u32
        | (i & 0x000f_f000)
        | ((i >> 20) & 1) << 11
        | ((i >> 21) & 0x3ff) << 1;
    v as i32 as i64
}

/// Decodes one instruction. `raw` holds 16 bits for a compressed instruction (`len == 2`).
pub(crate) fn decode(raw: u32, len: u8) -> Decoded {
    let inst = if len == 2 { compressed::expand(raw) } else { Some(raw) };
    let (handler, ends_block, fields) = match inst {
        Some(i) => decode32(i),
        None => (sys::illegal as Handler, true, Fields::default()),
    };
    let mut op = Op::new(handler);
    op.raw = raw;
    op.len = len;
    op.imm = fields.imm;
    op.rs1 = fields.rs1;
    op.rs2 = fields.rs2;
    op.rs3 = fields.rs3;
    // Integer x0 as a destination becomes the scratch slot; FP destinations keep f0.
    op.rd = if fields.rd == 0 && !fields.rd_is_fp { 32 } else { fields.rd };
    Decoded { op, ends_block }
}

#[derive(Default, Clone, Copy)]
struct Fields {
    rd: u8,
    rs1: u8,
    rs2: u8,
    rs3: u8,
    imm: i64,
    rd_is_fp: bool,
}

fn illegal() -> (Handler, bool, Fields) {
    (sys::illegal, true, Fields::default())
}

fn decode32(i: u32) -> (Handler, bool, Fields) {
    let rd = ((i >> 7) & 0x1f) as u8;
    let rs1 = ((i >> 15) & 0x1f) as u8;
    let rs2 = ((i >> 20) & 0x1f) as u8;
    let funct3 = (i >> 12) & 7;
    let funct7 = i >> 25;
    let base = Fields { rd, rs1, rs2, rs3: (i >> 27) as u8, imm: 0, rd_is_fp: false };
    let with_imm = |imm| Fields { imm, ..base };
    let plain = |h: Handler, imm| (h, false, with_imm(imm));
    let ends = |h: Handler, imm| (h, true, with_imm(imm));
    match i & 0x7f {
        0x37 => plain(int::li, imm_u(i)),
        0x17 => plain(int::auipc, imm_u(i)),
        0x6f => ends(int::jal, imm_j(i)),
        0x67 if funct3 == 0 => ends(int::jalr, imm_i(i)),
        0x63 => {
            let h: Handler = match funct3 {
                0 => int::beq,
                1 => int::bne,
                4 => int::blt,
                5 => int::bge,
                6 => int::bltu,
                7 => int::bgeu,
                _ => return illegal(),
            };
            ends(h, imm_b(i))
        }
        0x03 => {
            let h: Handler = match funct3 {
                0 => mem::lb,
                1 => mem::lh,
                2 => mem::lw,
                3 => mem::ld,
                4 => mem::lbu,
                5 => mem::lhu,
                6 => mem::lwu,
                _ => return illegal(),
            };
            plain(h, imm_i(i))
        }
        0x23 => {
            let h: Handler = match funct3 {
                0 => mem::sb,
                1 => mem::sh,
                2 => mem::sw,
                3 => mem::sd,
                _ => return illegal(),
            };
            plain(h, imm_s(i))
        }
        0x13 => {
            let imm = imm_i(i);
            let h: Handler = match funct3 {
                0 if rs1 == 0 => int::li,
                0 => int::addi,
                2 => int::slti,
                3 => int::sltiu,
                4 => int::xori,
                6 => int::ori,
                7 => int::andi,
                1 if funct7 >> 1 == 0 => int::slli,
                5 if funct7 >> 1 == 0 => int::srli,
                5 if funct7 >> 1 == 0x10 => int::srai,
                _ => return illegal(),
            };
            plain(h, if funct3 == 1 || funct3 == 5 { imm & 63 } else { imm })
        }
        0x1b => {
            let h: Handler = match (funct3, funct7) {
                (0, _) => int::addiw,
                (1, 0) => int::slliw,
                (5, 0) => int::srliw,
                (5, 0x20) => int::sraiw,
                _ => return illegal(),
            };
            plain(h, if funct3 == 0 { imm_i(i) } else { (rs2 & 31) as i64 })
        }
        0x33 => {
            let h: Handler = match (funct7, funct3) {
                (0, 0) => int::add,
                (0x20, 0) => int::sub,
                (0, 1) => int::sll,
                (0, 2) => int::slt,
                (0, 3) => int::sltu,
                (0, 4) => int::xor,
                (0, 5) => int::srl,
                (0x20, 5) => int::sra,
                (0, 6) => int::or,
                (0, 7) => int::and,
                (1, 0) => int::mul,
                (1, 1) => int::mulh,
                (1, 2) => int::mulhsu,
                (1, 3) => int::mulhu,
                (1, 4) => int::div,
                (1, 5) => int::divu,
                (1, 6) => int::rem,
                (1, 7) => int::remu,
                _ => return illegal(),
            };
            plain(h, 0)
        }
        0x3b => {
            let h: Handler = match (funct7, funct3) {
                (0, 0) => int::addw,
                (0x20, 0) => int::subw,
                (0, 1) => int::sllw,
                (0, 5) => int::srlw,
                (0x20, 5) => int::sraw,
                (1, 0) => int::mulw,
                (1, 4) => int::divw,
                (1, 5) => int::divuw,
                (1, 6) => int::remw,
                (1, 7) => int::remuw,
                _ => return illegal(),
            };
            plain(h, 0)
        }
        // FENCE orders memory; keel's harts see memory in program order already (the host's
        // atomics give the A extension its ordering), so it is a no-op.
        0x0f if funct3 == 0 => plain(int::nop, 0),
        0x0f if funct3 == 1 => ends(sys::fence_i, 0),
        0x73 => decode_system(i, base),
        0x2f => decode_amo(i, base),
        0x07 | 0x27 => {
            let is_load = i & 0x7f == 0x07;
            let h: Handler = match (is_load, funct3) {
                (true, 2) => fp::flw,
                (true, 3) => fp::fld,
                (false, 2) => fp::fsw,
                (false, 3) => fp::fsd,
                _ => return illegal(),
            };
            let imm = if is_load { imm_i(i) } else { imm_s(i) };
            (h, false, Fields { imm, rd_is_fp: is_load, ..base })
        }
        0x43 | 0x47 | 0x4b | 0x4f => {
            let double = match funct7 & 3 {
                0 => false,
                1 => true,
                _ => return illegal(),
            };
            let h: Handler = match (i & 0x7f, double) {
                (0x43, false) => fp::fmadd_s,
                (0x47, false) => fp::fmsub_s,
                (0x4b, false) => fp::fnmsub_s,
                (0x4f, false) => fp::fnmadd_s,
                (0x43, true) => fp::fmadd_d,
                (0x47, true) => fp::fmsub_d,
                (0x4b, true) => fp::fnmsub_d,
                _ => fp::fnmadd_d,
            };
            (h, false, Fields { imm: funct3 as i64, rd_is_fp: true, ..base })
        }
        0x53 => decode_op_fp(i, base),
        _ => illegal(),
    }
}

fn decode_system(i: u32, f: Fields) -> (Handler, bool, Fields) {
    let funct3 = (i >> 12) & 7;
    let csr = (i >> 20) as i64;
    let h: Handler = match funct3 {
        0 => {
            return match i {
                0x0000_0073 => (sys::ecall, true, f),
                0x0010_0073 => (sys::ebreak, true, f),
                0x1020_0073 => (sys::sret, true, f),
                0x3020_0073 => (sys::mret, true, f),
                0x1050_0073 => (sys::wfi, true, f),
                _ if i >> 25 == 0x09 && f.rd == 0 => (sys::sfence_vma, true, f),
                _ => illegal(),
            }
        }
        1 => sys::csrrw,
        2 => sys::csrrs,
        3 => sys::csrrc,
        5 => sys::csrrwi,
        6 => sys::csrrsi,
        7 => sys::csrrci,
        _ => return illegal(),
    };
    (h, true, Fields { imm: csr, ..f })
}

fn decode_amo(i: u32, f: Fields) -> (Handler, bool, Fields) {
    let funct5 = i >> 27;
    let h: Handler = match ((i >> 12) & 7, funct5) {
        (2, 0x02) if f.rs2 == 0 => mem::lr_w,
        (2, 0x03) => mem::sc_w,
        (2, 0x01) => mem::amoswap_w,
        (2, 0x00) => mem::amoadd_w,
        (2, 0x04) => mem::amoxor_w,
        (2, 0x0c) => mem::amoand_w,
        (2, 0x08) => mem::amoor_w,
        (2, 0x10) => mem::amomin_w,
        (2, 0x14) => mem::amomax_w,
        (2, 0x18) => mem::amominu_w,
        (2, 0x1c) => mem::amomaxu_w,
        (3, 0x02) if f.rs2 == 0 => mem::lr_d,
        (3, 0x03) => mem::sc_d,
        (3, 0x01) => mem::amoswap_d,
        (3, 0x00) => mem::amoadd_d,
        (3, 0x04) => mem::amoxor_d,
        (3, 0x0c) => mem::amoand_d,
        (3, 0x08) => mem::amoor_d,
        (3, 0x10) => mem::amomin_d,
        (3, 0x14) => mem::amomax_d,
        (3, 0x18) => mem::amominu_d,
        (3, 0x1c) => mem::amomaxu_d,
        _ => return illegal(),
    };
    (h, false, f)
}

fn decode_op_fp(i: u32, f: Fields) -> (Handler, bool, Fields) {
    let funct7 = i >> 25;
    let rm = ((i >> 12) & 7) as i64;
    let rs2 = f.rs2;
    let fp_rd = Fields { imm: rm, rd_is_fp: true, ..f };
    let int_rd = Fields { imm: rm, rd_is_fp: false, ..f };
    let (h, fields): (Handler, Fields) = match funct7 {
        0x00 => (fp::fadd_s, fp_rd),
        0x01 => (fp::fadd_d, fp_rd),
        0x04 => (fp::fsub_s, fp_rd),
        0x05 => (fp::fsub_d, fp_rd),
        0x08 => (fp::fmul_s, fp_rd),
        0x09 => (fp::fmul_d, fp_rd),
        0x0c => (fp::fdiv_s, fp_rd),
        0x0d => (fp::fdiv_d, fp_rd),
        0x2c if rs2 == 0 => (fp::fsqrt_s, fp_rd),
        0x2d if rs2 == 0 => (fp::fsqrt_d, fp_rd),
        0x10 | 0x11 => {
            let d = funct7 == 0x11;
            let h: Handler = match (rm, d) {
                (0, false) => fp::fsgnj_s,
                (1, false) => fp::fsgnjn_s,
                (2, false) => fp::fsgnjx_s,
                (0, true) => fp::fsgnj_d,
                (1, true) => fp::fsgnjn_d,
                (2, true) => fp::fsgnjx_d,
                _ => return illegal(),
            };
            (h, fp_rd)
        }
        0x14 | 0x15 => {
            let d = funct7 == 0x15;
            let h: Handler = match (rm, d) {
                (0, false) => fp::fmin_s,
                (1, false) => fp::fmax_s,
                (0, true) => fp::fmin_d,
                (1, true) => fp::fmax_d,
                _ => return illegal(),
            };
            (h, fp_rd)
        }
        0x20 if rs2 == 1 => (fp::fcvt_s_d, fp_rd),
        0x21 if rs2 == 0 => (fp::fcvt_d_s, fp_rd),
        0x50 | 0x51 => {
            let d = funct7 == 0x51;
            let h: Handler = match (rm, d) {
                (2, false) => fp::feq_s,
                (1, false) => fp::flt_s,
                (0, false) => fp::fle_s,
                (2, true) => fp::feq_d,
                (1, true) => fp::flt_d,
                (0, true) => fp::fle_d,
                _ => return illegal(),
            };
            (h, int_rd)
        }
        0x60 | 0x61 => {
            let d = funct7 == 0x61;
            let h: Handler = match (rs2, d) {
                (0, false) => fp::fcvt_w_s,
                (1, false) => fp::fcvt_wu_s,
                (2, false) => fp::fcvt_l_s,
                (3, false) => fp::fcvt_lu_s,
                (0, true) => fp::fcvt_w_d,
                (1, true) => fp::fcvt_wu_d,
                (2, true) => fp::fcvt_l_d,
                (3, true) => fp::fcvt_lu_d,
                _ => return illegal(),
            };
            (h, int_rd)
        }
        0x68 | 0x69 => {
            let d = funct7 == 0x69;
            let h: Handler = match (rs2, d) {
                (0, false) => fp::fcvt_s_w,
                (1, false) => fp::fcvt_s_wu,
                (2, false) => fp::fcvt_s_l,
                (3, false) => fp::fcvt_s_lu,
                (0, true) => fp::fcvt_d_w,
                (1, true) => fp::fcvt_d_wu,
                (2, true) => fp::fcvt_d_l,
                (3, true) => fp::fcvt_d_lu,
                _ => return illegal(),
            };
            (h, fp_rd)
        }
        0x70 if rs2 == 0 && rm == 0 => (fp::fmv_x_w, int_rd),
        0x70 if rs2 == 0 && rm == 1 => (fp::fclass_s, int_rd),
        0x71 if rs2 == 0 && rm == 0 => (fp::fmv_x_d, int_rd),
        0x71 if rs2 == 0 && rm == 1 => (fp::fclass_d, int_rd),
        0x78 if rs2 == 0 && rm == 0 => (fp::fmv_w_x, fp_rd),
        0x79 if rs2 == 0 && rm == 0 => (fp::fmv_d_x, fp_rd),
        _ => return illegal(),
    };
    (h, false, fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediates_decode_with_sign() {
        // beq x0, x0, -4: imm[12]=1 ... (0xfe000ee3)
        assert_eq!(imm_b(0xfe00_0ee3), -4);
        // jal x0, -8 (0xff9ff06f)
        assert_eq!(imm_j(0xff9f_f06f), -8);
        // sd ra, -8(sp) (0xfe113c23)
        assert_eq!(imm_s(0xfe11_3c23), -8);
        // addi a0, a0, -1 (0xfff50513)
        assert_eq!(imm_i(0xfff5_0513), -1);
        // lui a0, 0x80000 (0x80000537): sign-extended on RV64
        assert_eq!(imm_u(0x8000_0537), -0x8000_0000);
    }

    #[test]
    fn x0_destinations_go_to_the_scratch_slot_but_f0_does_not() {
        assert_eq!(decode(0x0000_0013, 4).op.rd, 32, "addi x0, x0, 0");
        // fadd.s f0, f1, f2 (0x00208053)
        assert_eq!(decode(0x0020_8053, 4).op.rd, 0);
    }

    #[test]
    fn reserved_encodings_decode_to_illegal() {
        for bad in [0x0000_0000u32, 0xffff_ffff, 0x0000_707f /* funct3=7 jalr */] {
            let d = decode(bad, 4);
            assert!(d.ends_block);
            assert_eq!(d.op.handler as usize, sys::illegal as Handler as usize, "{bad:#x}");
        }
    }
}
