//! A decoded instruction: the handler that executes it and its operands, laid out so a block
//! of them is a flat array the interpreter walks.

use crate::hart::Hart;
use crate::insn::{Insn, Opcode};

/// Executes one instruction and, unless it ends the block, goes on to the next op itself
/// (threaded dispatch: each handler's own indirect jump predicts its likely successor).
/// Returns true when the block ran to its end, false when an op stopped it (the reason is in
/// `hart.stop`, the place in `hart.stop_at`).
pub(crate) type Handler = fn(&mut Hart, &Op) -> bool;

/// Runs the op after `op` in the same block.
#[inline(always)]
pub(crate) fn next(h: &mut Hart, op: &Op) -> bool {
    // SAFETY: every block's ops are one contiguous slice whose last op ends the block (a
    // control transfer, a system instruction, or `continue_at`; see `decode_block`), and
    // handlers of such ops never call `next`. So an op that calls `next` is never the last
    // one, and `op + 1` is the following element of the same live slice.
    let n = unsafe { &*(op as *const Op).add(1) };
    (n.handler)(h, n)
}

/// Ends the block at `op`, which did not complete (an exception, or an exit to the machine).
#[cold]
#[inline(never)]
pub(crate) fn stopped(h: &mut Hart, op: &Op) -> bool {
    h.stop_at = (op.pc_off, op.idx);
    false
}

#[derive(Clone, Copy)]
pub(crate) struct Op {
    pub handler: Handler,
    pub imm: i64,
    /// The instruction bits as fetched (16 or 32 bits): `tval` for illegal instructions.
    pub raw: u32,
    /// Byte offset of the instruction from the start of its block.
    pub pc_off: u16,
    /// Destination register; 32 stands for x0 (writes land in a scratch slot).
    pub rd: u8,
    pub rs1: u8,
    pub rs2: u8,
    pub rs3: u8,
    /// Instruction length in bytes (2 or 4).
    pub len: u8,
    /// Position in the block, for counting retired instructions on a trap.
    pub idx: u8,
    /// What the instruction is (the handler is how it runs).
    pub opcode: Opcode,
}

impl Op {
    pub fn new(handler: Handler) -> Op {
        Op {
            handler,
            imm: 0,
            raw: 0,
            pc_off: 0,
            rd: 32,
            rs1: 0,
            rs2: 0,
            rs3: 0,
            len: 4,
            idx: 0,
            opcode: Opcode::Illegal,
        }
    }

    /// The instruction this op was lowered from.
    pub fn insn(&self) -> Insn {
        Insn {
            op: self.opcode,
            rd: self.rd & 31,
            rs1: self.rs1,
            rs2: self.rs2,
            rs3: self.rs3,
            imm: self.imm,
            raw: self.raw,
            len: self.len,
        }
    }

    /// The virtual address of this instruction.
    #[inline(always)]
    pub fn pc(&self, hart: &Hart) -> u64 {
        hart.block_vpc.wrapping_add(self.pc_off as u64)
    }

    /// The address of the next instruction.
    #[inline(always)]
    pub fn next_pc(&self, hart: &Hart) -> u64 {
        hart.block_vpc.wrapping_add(self.pc_off as u64 + self.len as u64)
    }
}

/// Register access helpers: indices are masked so the compiler needs no bounds checks.
impl Hart {
    #[inline(always)]
    pub(crate) fn rs1(&self, op: &Op) -> u64 {
        self.x[(op.rs1 & 63) as usize]
    }
    #[inline(always)]
    pub(crate) fn rs2(&self, op: &Op) -> u64 {
        self.x[(op.rs2 & 63) as usize]
    }
    #[inline(always)]
    pub(crate) fn set_rd(&mut self, op: &Op, value: u64) {
        self.x[(op.rd & 63) as usize] = value;
    }
}
