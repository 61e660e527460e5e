//! The instruction set as data: one table of every instruction keel implements (mnemonic,
//! mask/match encoding, operand format, register classes), in the spirit of QEMU's decodetree
//! files, and the decoder that turns fetched bits into an [`Insn`]. Both engines start from
//! an `Insn`: the interpreter lowers it to a threaded op (`interp::lower`), the translator
//! emits host code for it (`jit`).
//!
//! Encodings are from the unprivileged spec's "RV32/64G Instruction Set Listings" (ch. 37 of
//! the 2024 edition: RV64I, M, A, F, D, Zicsr, Zifencei) and the privileged spec §3.3 and
//! §4.2.1 (ECALL, EBREAK, xRET, WFI, SFENCE.VMA). RVC is expanded first (`compressed.rs`).

use std::sync::OnceLock;

use crate::compressed;

/// How an instruction's operand fields are laid out (unprivileged spec §2.3 and the R4,
/// rounding-mode and CSR variants). Fields a format doesn't have decode as zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// rd, rs1, rs2.
    R,
    /// rd, rs1, rs2 and the rounding mode (bits 14:12) in `imm`.
    Rm,
    /// rd, rs1, rs2, rs3 and the rounding mode in `imm` (fused multiply-add).
    R4,
    /// rd, rs1 and a sign-extended 12-bit immediate.
    I,
    /// rd, rs1 and a shift amount (bits 25:20).
    Sh,
    /// rs1, rs2 and a sign-extended 12-bit store offset.
    S,
    /// rs1, rs2 and a branch offset.
    B,
    /// rd and a sign-extended upper immediate.
    U,
    /// rd and a jump offset.
    J,
    /// rd, rs1 (a register, or a 5-bit immediate for the `*i` forms) and the CSR number in
    /// `imm`.
    Csr,
    /// No operands but rs1 and rs2 (SFENCE.VMA uses them; ECALL, xRET, WFI have none).
    Sys,
}

/// Register-class and block flags of an instruction.
pub(crate) mod flag {
    /// It must end its block: a control transfer, or a system instruction whose effects the
    /// next block lookup has to see.
    pub const END: u8 = 1;
    /// rd is a floating-point register.
    pub const FD: u8 = 2;
    /// rs1 is a floating-point register.
    pub const F1: u8 = 4;
    /// rs2 is a floating-point register.
    pub const F2: u8 = 8;
    /// rs3 is used (a floating-point register).
    pub const F3: u8 = 16;
    /// It reads the floating-point state (FS must not be Off).
    pub const FP: u8 = 32;
}

use flag::*;

/// One row of the instruction table.
pub(crate) struct Entry {
    pub op: Opcode,
    pub name: &'static str,
    pub mask: u32,
    pub bits: u32,
    pub format: Format,
    pub flags: u8,
}

macro_rules! instructions {
    ($($op:ident $name:literal $mask:literal $bits:literal $fmt:ident $flags:expr;)*) => {
        /// Every instruction keel implements, and `Illegal` for everything else.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Opcode {
            $($op,)*
            Illegal,
        }

        /// The table, in [`Opcode`] order.
        pub(crate) const TABLE: &[Entry] = &[
            $(Entry {
                op: Opcode::$op,
                name: $name,
                mask: $mask,
                bits: $bits,
                format: Format::$fmt,
                flags: $flags,
            },)*
        ];
    };
}

// A 0 mask bit is a field; aq/rl of AMOs, FENCE's pred/succ/fm and FP rounding modes are
// fields too (rounding modes are checked when the instruction runs: DYN depends on frm).
instructions! {
    // RV64I (unprivileged spec ch. 2 and 4)
    Lui "lui" 0x0000_007f 0x0000_0037 U 0;
    Auipc "auipc" 0x0000_007f 0x0000_0017 U 0;
    Jal "jal" 0x0000_007f 0x0000_006f J END;
    Jalr "jalr" 0x0000_707f 0x0000_0067 I END;
    Beq "beq" 0x0000_707f 0x0000_0063 B END;
    Bne "bne" 0x0000_707f 0x0000_1063 B END;
    Blt "blt" 0x0000_707f 0x0000_4063 B END;
    Bge "bge" 0x0000_707f 0x0000_5063 B END;
    Bltu "bltu" 0x0000_707f 0x0000_6063 B END;
    Bgeu "bgeu" 0x0000_707f 0x0000_7063 B END;
    Lb "lb" 0x0000_707f 0x0000_0003 I 0;
    Lh "lh" 0x0000_707f 0x0000_1003 I 0;
    Lw "lw" 0x0000_707f 0x0000_2003 I 0;
    Ld "ld" 0x0000_707f 0x0000_3003 I 0;
    Lbu "lbu" 0x0000_707f 0x0000_4003 I 0;
    Lhu "lhu" 0x0000_707f 0x0000_5003 I 0;
    Lwu "lwu" 0x0000_707f 0x0000_6003 I 0;
    Sb "sb" 0x0000_707f 0x0000_0023 S 0;
    Sh "sh" 0x0000_707f 0x0000_1023 S 0;
    Sw "sw" 0x0000_707f 0x0000_2023 S 0;
    Sd "sd" 0x0000_707f 0x0000_3023 S 0;
    Addi "addi" 0x0000_707f 0x0000_0013 I 0;
    Slti "slti" 0x0000_707f 0x0000_2013 I 0;
    Sltiu "sltiu" 0x0000_707f 0x0000_3013 I 0;
    Xori "xori" 0x0000_707f 0x0000_4013 I 0;
    Ori "ori" 0x0000_707f 0x0000_6013 I 0;
    Andi "andi" 0x0000_707f 0x0000_7013 I 0;
    Slli "slli" 0xfc00_707f 0x0000_1013 Sh 0;
    Srli "srli" 0xfc00_707f 0x0000_5013 Sh 0;
    Srai "srai" 0xfc00_707f 0x4000_5013 Sh 0;
    Add "add" 0xfe00_707f 0x0000_0033 R 0;
    Sub "sub" 0xfe00_707f 0x4000_0033 R 0;
    Sll "sll" 0xfe00_707f 0x0000_1033 R 0;
    Slt "slt" 0xfe00_707f 0x0000_2033 R 0;
    Sltu "sltu" 0xfe00_707f 0x0000_3033 R 0;
    Xor "xor" 0xfe00_707f 0x0000_4033 R 0;
    Srl "srl" 0xfe00_707f 0x0000_5033 R 0;
    Sra "sra" 0xfe00_707f 0x4000_5033 R 0;
    Or "or" 0xfe00_707f 0x0000_6033 R 0;
    And "and" 0xfe00_707f 0x0000_7033 R 0;
    Addiw "addiw" 0x0000_707f 0x0000_001b I 0;
    Slliw "slliw" 0xfe00_707f 0x0000_101b Sh 0;
    Srliw "srliw" 0xfe00_707f 0x0000_501b Sh 0;
    Sraiw "sraiw" 0xfe00_707f 0x4000_501b Sh 0;
    Addw "addw" 0xfe00_707f 0x0000_003b R 0;
    Subw "subw" 0xfe00_707f 0x4000_003b R 0;
    Sllw "sllw" 0xfe00_707f 0x0000_103b R 0;
    Srlw "srlw" 0xfe00_707f 0x0000_503b R 0;
    Sraw "sraw" 0xfe00_707f 0x4000_503b R 0;
    Fence "fence" 0x0000_707f 0x0000_000f Sys 0;
    FenceI "fence.i" 0x0000_707f 0x0000_100f Sys END;
    // Privileged instructions (privileged spec §3.3, §4.2.1)
    Ecall "ecall" 0xffff_ffff 0x0000_0073 Sys END;
    Ebreak "ebreak" 0xffff_ffff 0x0010_0073 Sys END;
    Sret "sret" 0xffff_ffff 0x1020_0073 Sys END;
    Mret "mret" 0xffff_ffff 0x3020_0073 Sys END;
    Wfi "wfi" 0xffff_ffff 0x1050_0073 Sys END;
    SfenceVma "sfence.vma" 0xfe00_7fff 0x1200_0073 Sys END;
    // Zicsr (unprivileged spec ch. 7)
    Csrrw "csrrw" 0x0000_707f 0x0000_1073 Csr 0;
    Csrrs "csrrs" 0x0000_707f 0x0000_2073 Csr 0;
    Csrrc "csrrc" 0x0000_707f 0x0000_3073 Csr 0;
    Csrrwi "csrrwi" 0x0000_707f 0x0000_5073 Csr 0;
    Csrrsi "csrrsi" 0x0000_707f 0x0000_6073 Csr 0;
    Csrrci "csrrci" 0x0000_707f 0x0000_7073 Csr 0;
    // M (unprivileged spec ch. 13)
    Mul "mul" 0xfe00_707f 0x0200_0033 R 0;
    Mulh "mulh" 0xfe00_707f 0x0200_1033 R 0;
    Mulhsu "mulhsu" 0xfe00_707f 0x0200_2033 R 0;
    Mulhu "mulhu" 0xfe00_707f 0x0200_3033 R 0;
    Div "div" 0xfe00_707f 0x0200_4033 R 0;
    Divu "divu" 0xfe00_707f 0x0200_5033 R 0;
    Rem "rem" 0xfe00_707f 0x0200_6033 R 0;
    Remu "remu" 0xfe00_707f 0x0200_7033 R 0;
    Mulw "mulw" 0xfe00_707f 0x0200_003b R 0;
    Divw "divw" 0xfe00_707f 0x0200_403b R 0;
    Divuw "divuw" 0xfe00_707f 0x0200_503b R 0;
    Remw "remw" 0xfe00_707f 0x0200_603b R 0;
    Remuw "remuw" 0xfe00_707f 0x0200_703b R 0;
    // A (unprivileged spec ch. 14); LR has rs2 = 0
    LrW "lr.w" 0xf9f0_707f 0x1000_202f R 0;
    ScW "sc.w" 0xf800_707f 0x1800_202f R 0;
    AmoswapW "amoswap.w" 0xf800_707f 0x0800_202f R 0;
    AmoaddW "amoadd.w" 0xf800_707f 0x0000_202f R 0;
    AmoxorW "amoxor.w" 0xf800_707f 0x2000_202f R 0;
    AmoandW "amoand.w" 0xf800_707f 0x6000_202f R 0;
    AmoorW "amoor.w" 0xf800_707f 0x4000_202f R 0;
    AmominW "amomin.w" 0xf800_707f 0x8000_202f R 0;
    AmomaxW "amomax.w" 0xf800_707f 0xa000_202f R 0;
    AmominuW "amominu.w" 0xf800_707f 0xc000_202f R 0;
    AmomaxuW "amomaxu.w" 0xf800_707f 0xe000_202f R 0;
    LrD "lr.d" 0xf9f0_707f 0x1000_302f R 0;
    ScD "sc.d" 0xf800_707f 0x1800_302f R 0;
    AmoswapD "amoswap.d" 0xf800_707f 0x0800_302f R 0;
    AmoaddD "amoadd.d" 0xf800_707f 0x0000_302f R 0;
    AmoxorD "amoxor.d" 0xf800_707f 0x2000_302f R 0;
    AmoandD "amoand.d" 0xf800_707f 0x6000_302f R 0;
    AmoorD "amoor.d" 0xf800_707f 0x4000_302f R 0;
    AmominD "amomin.d" 0xf800_707f 0x8000_302f R 0;
    AmomaxD "amomax.d" 0xf800_707f 0xa000_302f R 0;
    AmominuD "amominu.d" 0xf800_707f 0xc000_302f R 0;
    AmomaxuD "amomaxu.d" 0xf800_707f 0xe000_302f R 0;
    // F and D (unprivileged spec ch. 20-21)
    Flw "flw" 0x0000_707f 0x0000_2007 I FD | FP;
    Fld "fld" 0x0000_707f 0x0000_3007 I FD | FP;
    Fsw "fsw" 0x0000_707f 0x0000_2027 S F2 | FP;
    Fsd "fsd" 0x0000_707f 0x0000_3027 S F2 | FP;
    FmaddS "fmadd.s" 0x0600_007f 0x0000_0043 R4 FD | F1 | F2 | F3 | FP;
    FmsubS "fmsub.s" 0x0600_007f 0x0000_0047 R4 FD | F1 | F2 | F3 | FP;
    FnmsubS "fnmsub.s" 0x0600_007f 0x0000_004b R4 FD | F1 | F2 | F3 | FP;
    FnmaddS "fnmadd.s" 0x0600_007f 0x0000_004f R4 FD | F1 | F2 | F3 | FP;
    FmaddD "fmadd.d" 0x0600_007f 0x0200_0043 R4 FD | F1 | F2 | F3 | FP;
    FmsubD "fmsub.d" 0x0600_007f 0x0200_0047 R4 FD | F1 | F2 | F3 | FP;
    FnmsubD "fnmsub.d" 0x0600_007f 0x0200_004b R4 FD | F1 | F2 | F3 | FP;
    FnmaddD "fnmadd.d" 0x0600_007f 0x0200_004f R4 FD | F1 | F2 | F3 | FP;
    FaddS "fadd.s" 0xfe00_007f 0x0000_0053 Rm FD | F1 | F2 | FP;
    FaddD "fadd.d" 0xfe00_007f 0x0200_0053 Rm FD | F1 | F2 | FP;
    FsubS "fsub.s" 0xfe00_007f 0x0800_0053 Rm FD | F1 | F2 | FP;
    FsubD "fsub.d" 0xfe00_007f 0x0a00_0053 Rm FD | F1 | F2 | FP;
    FmulS "fmul.s" 0xfe00_007f 0x1000_0053 Rm FD | F1 | F2 | FP;
    FmulD "fmul.d" 0xfe00_007f 0x1200_0053 Rm FD | F1 | F2 | FP;
    FdivS "fdiv.s" 0xfe00_007f 0x1800_0053 Rm FD | F1 | F2 | FP;
    FdivD "fdiv.d" 0xfe00_007f 0x1a00_0053 Rm FD | F1 | F2 | FP;
    FsqrtS "fsqrt.s" 0xfff0_007f 0x5800_0053 Rm FD | F1 | FP;
    FsqrtD "fsqrt.d" 0xfff0_007f 0x5a00_0053 Rm FD | F1 | FP;
    FsgnjS "fsgnj.s" 0xfe00_707f 0x2000_0053 R FD | F1 | F2 | FP;
    FsgnjnS "fsgnjn.s" 0xfe00_707f 0x2000_1053 R FD | F1 | F2 | FP;
    FsgnjxS "fsgnjx.s" 0xfe00_707f 0x2000_2053 R FD | F1 | F2 | FP;
    FsgnjD "fsgnj.d" 0xfe00_707f 0x2200_0053 R FD | F1 | F2 | FP;
    FsgnjnD "fsgnjn.d" 0xfe00_707f 0x2200_1053 R FD | F1 | F2 | FP;
    FsgnjxD "fsgnjx.d" 0xfe00_707f 0x2200_2053 R FD | F1 | F2 | FP;
    FminS "fmin.s" 0xfe00_707f 0x2800_0053 R FD | F1 | F2 | FP;
    FmaxS "fmax.s" 0xfe00_707f 0x2800_1053 R FD | F1 | F2 | FP;
    FminD "fmin.d" 0xfe00_707f 0x2a00_0053 R FD | F1 | F2 | FP;
    FmaxD "fmax.d" 0xfe00_707f 0x2a00_1053 R FD | F1 | F2 | FP;
    FcvtSD "fcvt.s.d" 0xfff0_007f 0x4010_0053 Rm FD | F1 | FP;
    FcvtDS "fcvt.d.s" 0xfff0_007f 0x4200_0053 Rm FD | F1 | FP;
    FeqS "feq.s" 0xfe00_707f 0xa000_2053 R F1 | F2 | FP;
    FltS "flt.s" 0xfe00_707f 0xa000_1053 R F1 | F2 | FP;
    FleS "fle.s" 0xfe00_707f 0xa000_0053 R F1 | F2 | FP;
    FeqD "feq.d" 0xfe00_707f 0xa200_2053 R F1 | F2 | FP;
    FltD "flt.d" 0xfe00_707f 0xa200_1053 R F1 | F2 | FP;
    FleD "fle.d" 0xfe00_707f 0xa200_0053 R F1 | F2 | FP;
    FcvtWS "fcvt.w.s" 0xfff0_007f 0xc000_0053 Rm F1 | FP;
    FcvtWuS "fcvt.wu.s" 0xfff0_007f 0xc010_0053 Rm F1 | FP;
    FcvtLS "fcvt.l.s" 0xfff0_007f 0xc020_0053 Rm F1 | FP;
    FcvtLuS "fcvt.lu.s" 0xfff0_007f 0xc030_0053 Rm F1 | FP;
    FcvtWD "fcvt.w.d" 0xfff0_007f 0xc200_0053 Rm F1 | FP;
    FcvtWuD "fcvt.wu.d" 0xfff0_007f 0xc210_0053 Rm F1 | FP;
    FcvtLD "fcvt.l.d" 0xfff0_007f 0xc220_0053 Rm F1 | FP;
    FcvtLuD "fcvt.lu.d" 0xfff0_007f 0xc230_0053 Rm F1 | FP;
    FcvtSW "fcvt.s.w" 0xfff0_007f 0xd000_0053 Rm FD | FP;
    FcvtSWu "fcvt.s.wu" 0xfff0_007f 0xd010_0053 Rm FD | FP;
    FcvtSL "fcvt.s.l" 0xfff0_007f 0xd020_0053 Rm FD | FP;
    FcvtSLu "fcvt.s.lu" 0xfff0_007f 0xd030_0053 Rm FD | FP;
    FcvtDW "fcvt.d.w" 0xfff0_007f 0xd200_0053 Rm FD | FP;
    FcvtDWu "fcvt.d.wu" 0xfff0_007f 0xd210_0053 Rm FD | FP;
    FcvtDL "fcvt.d.l" 0xfff0_007f 0xd220_0053 Rm FD | FP;
    FcvtDLu "fcvt.d.lu" 0xfff0_007f 0xd230_0053 Rm FD | FP;
    FmvXW "fmv.x.w" 0xfff0_707f 0xe000_0053 R F1 | FP;
    FclassS "fclass.s" 0xfff0_707f 0xe000_1053 R F1 | FP;
    FmvXD "fmv.x.d" 0xfff0_707f 0xe200_0053 R F1 | FP;
    FclassD "fclass.d" 0xfff0_707f 0xe200_1053 R F1 | FP;
    FmvWX "fmv.w.x" 0xfff0_707f 0xf000_0053 R FD | FP;
    FmvDX "fmv.d.x" 0xfff0_707f 0xf200_0053 R FD | FP;
}

/// Every encoding in the table: (opcode, mask, match). For tests that generate instructions.
#[doc(hidden)]
pub fn encodings() -> impl Iterator<Item = (Opcode, u32, u32)> {
    TABLE.iter().map(|e| (e.op, e.mask, e.bits))
}

/// One decoded instruction: what it is and its operands, nothing about how it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub op: Opcode,
    /// Register numbers (0-31) of the fields the format has; 0 otherwise. Whether a register
    /// is an integer or a floating-point one is in the table's flags.
    pub rd: u8,
    pub rs1: u8,
    pub rs2: u8,
    pub rs3: u8,
    /// The immediate, sign-extended; the rounding mode or the CSR number for those formats.
    pub imm: i64,
    /// The instruction bits as fetched (16 bits for a compressed instruction): `tval` for an
    /// illegal instruction.
    pub raw: u32,
    /// 2 or 4 bytes.
    pub len: u8,
}

impl Opcode {
    fn entry(self) -> Option<&'static Entry> {
        TABLE.get(self as usize)
    }

    /// The assembler mnemonic.
    pub fn name(self) -> &'static str {
        self.entry().map_or("illegal", |e| e.name)
    }

    pub(crate) fn flags(self) -> u8 {
        self.entry().map_or(END, |e| e.flags)
    }
}

impl Insn {
    /// It must be the last instruction of its block.
    pub(crate) fn ends_block(&self) -> bool {
        self.op.flags() & END != 0
    }
}

/// A FENCE (raw bits) whose predecessor set has W and successor set has R, other than
/// FENCE.TSO: the one ordering a host with x86's memory model must enforce itself (a store
/// before a later load; unprivileged spec §2.7 and appendix A.5).
pub(crate) fn fence_orders_store_load(raw: u32) -> bool {
    let fm = raw >> 28;
    let pred_w = raw & (1 << 24) != 0;
    let succ_r = raw & (1 << 21) != 0;
    pred_w && succ_r && fm != 0b1000
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

/// Table rows by major opcode (bits 6:2 of a 32-bit instruction).
fn rows_by_major() -> &'static [Vec<u8>; 32] {
    static INDEX: OnceLock<[Vec<u8>; 32]> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index: [Vec<u8>; 32] = Default::default();
        for (i, e) in TABLE.iter().enumerate() {
            index[((e.bits >> 2) & 31) as usize].push(i as u8);
        }
        index
    })
}

/// Decodes one instruction. `raw` holds 16 bits for a compressed instruction (`len == 2`).
pub fn decode(raw: u32, len: u8) -> Insn {
    let illegal = Insn { op: Opcode::Illegal, rd: 0, rs1: 0, rs2: 0, rs3: 0, imm: 0, raw, len };
    let Some(i) = (if len == 2 { compressed::expand(raw) } else { Some(raw) }) else {
        return illegal;
    };
    if i & 3 != 3 {
        return illegal;
    }
    let rows = &rows_by_major()[((i >> 2) & 31) as usize];
    let Some(e) = rows.iter().map(|&r| &TABLE[r as usize]).find(|e| i & e.mask == e.bits) else {
        return illegal;
    };
    let rd = ((i >> 7) & 0x1f) as u8;
    let rs1 = ((i >> 15) & 0x1f) as u8;
    let rs2 = ((i >> 20) & 0x1f) as u8;
    let rs3 = (i >> 27) as u8;
    let rm = ((i >> 12) & 7) as i64;
    let (rd, rs1, rs2, rs3, imm) = match e.format {
        Format::R => (rd, rs1, rs2, 0, 0),
        Format::Rm => (rd, rs1, rs2, 0, rm),
        Format::R4 => (rd, rs1, rs2, rs3, rm),
        Format::I => (rd, rs1, 0, 0, imm_i(i)),
        Format::Sh => (rd, rs1, 0, 0, ((i >> 20) & 63) as i64),
        Format::S => (0, rs1, rs2, 0, imm_s(i)),
        Format::B => (0, rs1, rs2, 0, imm_b(i)),
        Format::U => (rd, 0, 0, 0, imm_u(i)),
        Format::J => (rd, 0, 0, 0, imm_j(i)),
        Format::Csr => (rd, rs1, 0, 0, (i >> 20) as i64),
        Format::Sys => (0, rs1, rs2, 0, 0),
    };
    Insn { op: e.op, rd, rs1, rs2, rs3, imm, raw, len }
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
    fn the_table_is_in_opcode_order_and_encodings_do_not_overlap() {
        for (i, e) in TABLE.iter().enumerate() {
            assert_eq!(e.op as usize, i, "{}", e.name);
            assert_eq!(e.bits & !e.mask, 0, "{}: match bits outside the mask", e.name);
            assert_eq!(decode(e.bits, 4).op, e.op, "{} decodes to itself", e.name);
            for f in &TABLE[i + 1..] {
                // Some word matches both iff they agree on every bit both masks fix.
                let overlap = (e.bits ^ f.bits) & e.mask & f.mask == 0;
                assert!(!overlap, "{} and {} share encodings", e.name, f.name);
            }
        }
    }

    #[test]
    fn operands_land_in_their_fields() {
        // fmadd.d f1, f2, f3, f4, rne (0x223100c3)
        let i = decode(0x2231_00c3, 4);
        assert_eq!((i.op, i.rd, i.rs1, i.rs2, i.rs3, i.imm), (Opcode::FmaddD, 1, 2, 3, 4, 0));
        // srai a0, a0, 63 (0x43f55513)
        let i = decode(0x43f5_5513, 4);
        assert_eq!((i.op, i.rd, i.rs1, i.imm), (Opcode::Srai, 10, 10, 63));
        // csrrs a0, mstatus, x0 (0x30002573)
        let i = decode(0x3000_2573, 4);
        assert_eq!((i.op, i.rd, i.rs1, i.imm), (Opcode::Csrrs, 10, 0, 0x300));
        // sd ra, 8(sp) has no rd
        let i = decode(0x0011_3423, 4);
        assert_eq!((i.op, i.rd, i.rs1, i.rs2, i.imm), (Opcode::Sd, 0, 2, 1, 8));
        // c.addi sp, -16 expands to addi sp, sp, -16 and keeps its own bits
        let i = decode(0x1141, 2);
        assert_eq!((i.op, i.rd, i.rs1, i.imm, i.raw, i.len), (Opcode::Addi, 2, 2, -16, 0x1141, 2));
    }

    #[test]
    fn reserved_encodings_decode_to_illegal() {
        for bad in [0x0000_0000u32, 0xffff_ffff, 0x0000_707f /* funct3=7 jalr */, 0x0600_0043] {
            let i = decode(bad, 4);
            assert_eq!(i.op, Opcode::Illegal, "{bad:#x}");
            assert!(i.ends_block());
        }
        assert_eq!(decode(0x0000, 2).op, Opcode::Illegal);
    }
}
