//! RVC: expands a 16-bit instruction into the 32-bit instruction it stands for (unprivileged
//! spec ch. 16, tables 16.5-16.7, RV64 encodings). Reserved encodings return `None`.

/// Register x8..x15 named by a 3-bit field.
fn creg(bits: u32) -> u32 {
    8 + (bits & 7)
}

fn bit(v: u32, i: u32) -> u32 {
    (v >> i) & 1
}

fn r_type(funct7: u32, rs2: u32, rs1: u32, funct3: u32, rd: u32, opcode: u32) -> u32 {
    (funct7 << 25) | (rs2 << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode
}

fn i_type(imm: i32, rs1: u32, funct3: u32, rd: u32, opcode: u32) -> u32 {
    (((imm as u32) & 0xfff) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode
}

fn s_type(imm: i32, rs2: u32, rs1: u32, funct3: u32, opcode: u32) -> u32 {
    let imm = imm as u32;
    (((imm >> 5) & 0x7f) << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (funct3 << 12)
        | ((imm & 0x1f) << 7)
        | opcode
}

fn b_type(imm: i32, rs2: u32, rs1: u32, funct3: u32) -> u32 {
    let imm = imm as u32;
    (bit(imm, 12) << 31)
        | (((imm >> 5) & 0x3f) << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (funct3 << 12)
        | (((imm >> 1) & 0xf) << 8)
        | (bit(imm, 11) << 7)
        | 0x63
}

fn j_type(imm: i32, rd: u32) -> u32 {
    let imm = imm as u32;
    (bit(imm, 20) << 31)
        | (((imm >> 1) & 0x3ff) << 21)
        | (bit(imm, 11) << 20)
        | (((imm >> 12) & 0xff) << 12)
        | (rd << 7)
        | 0x6f
}

fn sext(v: u32, bits: u32) -> i32 {
    ((v << (32 - bits)) as i32) >> (32 - bits)
}

/// CI-format 6-bit signed immediate: imm[5] at bit 12, imm[4:0] at bits 6:2.
fn ci_imm(c: u32) -> i32 {
    sext((bit(c, 12) << 5) | ((c >> 2) & 0x1f), 6)
}

pub(crate) fn expand(c: u32) -> Option<u32> {
    let funct3 = (c >> 13) & 7;
    let rd = (c >> 7) & 0x1f;
    let rs2 = (c >> 2) & 0x1f;
    let rd_p = creg(c >> 2);
    let rs1_p = creg(c >> 7);
    // Offsets of the CL/CS formats.
    let lw_off = (((c >> 10) & 7) << 3) | (bit(c, 6) << 2) | (bit(c, 5) << 6);
    let ld_off = (((c >> 10) & 7) << 3) | (((c >> 5) & 3) << 6);
    match (c & 3, funct3) {
        (0, 0) => {
            // C.ADDI4SPN: nzuimm[5:4|9:6|2|3] in bits 12:5.
            let imm = (((c >> 11) & 3) << 4)
                | (((c >> 7) & 0xf) << 6)
                | (bit(c, 6) << 2)
                | (bit(c, 5) << 3);
            (imm != 0).then(|| i_type(imm as i32, 2, 0, rd_p, 0x13))
        }
        (0, 1) => Some(i_type(ld_off as i32, rs1_p, 3, rd_p, 0x07)), // C.FLD
        (0, 2) => Some(i_type(lw_off as i32, rs1_p, 2, rd_p, 0x03)), // C.LW
        (0, 3) => Some(i_type(ld_off as i32, rs1_p, 3, rd_p, 0x03)), // C.LD
        (0, 5) => Some(s_type(ld_off as i32, rd_p, rs1_p, 3, 0x27)), // C.FSD
        (0, 6) => Some(s_type(lw_off as i32, rd_p, rs1_p, 2, 0x23)), // C.SW
        (0, 7) => Some(s_type(ld_off as i32, rd_p, rs1_p, 3, 0x23)), // C.SD
        (1, 0) => Some(i_type(ci_imm(c), rd, 0, rd, 0x13)),          // C.ADDI / C.NOP
        (1, 1) => (rd != 0).then(|| i_type(ci_imm(c), rd, 0, rd, 0x1b)), // C.ADDIW
        (1, 2) => Some(i_type(ci_imm(c), 0, 0, rd, 0x13)),           // C.LI
        (1, 3) if rd == 2 => {
            // C.ADDI16SP: nzimm[9] at 12, nzimm[4|6|8:7|5] at 6:2.
            let imm = (bit(c, 12) << 9)
                | (bit(c, 6) << 4)
                | (bit(c, 5) << 6)
                | (((c >> 3) & 3) << 7)
                | (bit(c, 2) << 5);
            (imm != 0).then(|| i_type(sext(imm, 10), 2, 0, 2, 0x13))
        }
        (1, 3) => {
            // C.LUI: nzimm[17] at 12, nzimm[16:12] at 6:2.
            let imm = ci_imm(c);
            (imm != 0).then_some((((imm as u32) << 12) & 0xffff_f000) | (rd << 7) | 0x37)
        }
        (1, 4) => {
            let rd = rs1_p;
            let shamt = (bit(c, 12) << 5) | ((c >> 2) & 0x1f);
            match (c >> 10) & 3 {
                0 => Some(i_type(shamt as i32, rd, 5, rd, 0x13)), // C.SRLI
                1 => Some(i_type((shamt | 0x400) as i32, rd, 5, rd, 0x13)), // C.SRAI
                2 => Some(i_type(ci_imm(c), rd, 7, rd, 0x13)),    // C.ANDI
                _ => {
                    let rs2 = creg(c >> 2);
                    match (bit(c, 12), (c >> 5) & 3) {
                        (0, 0) => Some(r_type(0x20, rs2, rd, 0, rd, 0x33)), // C.SUB
                        (0, 1) => Some(r_type(0, rs2, rd, 4, rd, 0x33)),    // C.XOR
                        (0, 2) => Some(r_type(0, rs2, rd, 6, rd, 0x33)),    // C.OR
                        (0, 3) => Some(r_type(0, rs2, rd, 7, rd, 0x33)),    // C.AND
                        (1, 0) => Some(r_type(0x20, rs2, rd, 0, rd, 0x3b)), // C.SUBW
                        (1, 1) => Some(r_type(0, rs2, rd, 0, rd, 0x3b)),    // C.ADDW
                        _ => None,
                    }
                }
            }
        }
        (1, 5) => {
            // C.J: offset[11|4|9:8|10|6|7|3:1|5] in bits 12:2.
            let imm = (bit(c, 12) << 11)
                | (bit(c, 11) << 4)
                | (((c >> 9) & 3) << 8)
                | (bit(c, 8) << 10)
                | (bit(c, 7) << 6)
                | (bit(c, 6) << 7)
                | (((c >> 3) & 7) << 1)
                | (bit(c, 2) << 5);
            Some(j_type(sext(imm, 12), 0))
        }
        (1, 6) | (1, 7) => {
            // C.BEQZ / C.BNEZ: offset[8|4:3] at 12:10, offset[7:6|2:1|5] at 6:2.
            let imm = (bit(c, 12) << 8)
                | (((c >> 10) & 3) << 3)
                | (((c >> 5) & 3) << 6)
                | (((c >> 3) & 3) << 1)
                | (bit(c, 2) << 5);
            Some(b_type(sext(imm, 9), 0, rs1_p, funct3 - 6))
        }
        (2, 0) => {
            let shamt = (bit(c, 12) << 5) | rs2;
            Some(i_type(shamt as i32, rd, 1, rd, 0x13)) // C.SLLI
        }
        (2, 1) => {
            let off = (bit(c, 12) << 5) | (((c >> 5) & 3) << 3) | (((c >> 2) & 7) << 6);
            Some(i_type(off as i32, 2, 3, rd, 0x07)) // C.FLDSP
        }
        (2, 2) => {
            let off = (bit(c, 12) << 5) | (((c >> 4) & 7) << 2) | (((c >> 2) & 3) << 6);
            (rd != 0).then(|| i_type(off as i32, 2, 2, rd, 0x03)) // C.LWSP
        }
        (2, 3) => {
            let off = (bit(c, 12) << 5) | (((c >> 5) & 3) << 3) | (((c >> 2) & 7) << 6);
            (rd != 0).then(|| i_type(off as i32, 2, 3, rd, 0x03)) // C.LDSP
        }
        (2, 4) => match (bit(c, 12), rd, rs2) {
            (0, 0, 0) => None,
            (0, rs1, 0) => Some(i_type(0, rs1, 0, 0, 0x67)), // C.JR
            (0, rd, rs2) => Some(r_type(0, rs2, 0, 0, rd, 0x33)), // C.MV
            (1, 0, 0) => Some(0x0010_0073),                  // C.EBREAK
            (1, rs1, 0) => Some(i_type(0, rs1, 0, 1, 0x67)), // C.JALR
            (_, rd, rs2) => Some(r_type(0, rs2, rd, 0, rd, 0x33)), // C.ADD
        },
        (2, 5) => {
            let off = (((c >> 10) & 7) << 3) | (((c >> 7) & 7) << 6);
            Some(s_type(off as i32, rs2, 2, 3, 0x27)) // C.FSDSP
        }
        (2, 6) => {
            let off = (((c >> 9) & 0xf) << 2) | (((c >> 7) & 3) << 6);
            Some(s_type(off as i32, rs2, 2, 2, 0x23)) // C.SWSP
        }
        (2, 7) => {
            let off = (((c >> 10) & 7) << 3) | (((c >> 7) & 7) << 6);
            Some(s_type(off as i32, rs2, 2, 3, 0x23)) // C.SDSP
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::expand;

    // Pairs produced by the GNU assembler (riscv64-linux-gnu-as -march=rv64gc, objdump -M
    // no-aliases): each compressed instruction and the 32-bit instruction it stands for.
    #[test]
    fn expands_known_encodings() {
        let cases: &[(u32, u32, &str)] = &[
            (0x0040, 0x00410413, "c.addi4spn s0,sp,4"),
            (0x717d, 0xff010113, "c.addi16sp sp,-16"),
            (0x1141, 0xff010113, "c.addi sp,-16"),
            (0xe406, 0x00113423, "c.sdsp ra,8(sp)"),
            (0x60a2, 0x00813083, "c.ldsp ra,8(sp)"),
            (0x8082, 0x00008067, "c.jr ra"),
            (0x853e, 0x00f00533, "c.mv a0,a5"),
            (0x4501, 0x00000513, "c.li a0,0"),
            (0x6785, 0x000017b7, "c.lui a5,0x1"),
            (0x9002, 0x00100073, "c.ebreak"),
            (0x4398, 0x0007a703, "c.lw a4,0(a5)"),
            (0x6398, 0x0007b703, "c.ld a4,0(a5)"),
            (0x8d1d, 0x40f50533, "c.sub a0,a5"),
            (0x9d3d, 0x00f5053b, "c.addw a0,a5"),
            (0x0505, 0x00150513, "c.addi a0,1"),
            (0x2505, 0x0015051b, "c.addiw a0,1"),
            (0x050e, 0x00351513, "c.slli a0,0x3"),
            (0x850d, 0x40355513, "c.srai a0,0x3"),
        ];
        for &(c, want, text) in cases {
            assert_eq!(expand(c), Some(want), "{text}: expanded {:#010x?}", expand(c));
        }
    }

    #[test]
    fn reserved_encodings_are_illegal() {
        assert_eq!(expand(0x0000), None, "all-zero is defined illegal");
        assert_eq!(expand(0x6101), None, "c.addi16sp with a zero immediate");
        assert_eq!(expand(0x8002), None, "c.jr x0");
        assert_eq!(expand(0x4002), None, "c.lwsp x0");
    }
}
