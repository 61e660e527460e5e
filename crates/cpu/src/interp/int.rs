//! RV64I and M: integer computation, jumps and branches (unprivileged spec ch. 2, 5, 7).

use super::op::{next, Op};
use crate::hart::Hart;

/// Register-register operations.
macro_rules! rr {
    ($($name:ident => |$a:ident, $b:ident| $e:expr;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            let $a = h.rs1(op);
            let $b = h.rs2(op);
            h.set_rd(op, $e);
            next(h, op)
        }
    )*};
}

/// Register-immediate operations.
macro_rules! ri {
    ($($name:ident => |$a:ident, $i:ident| $e:expr;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            let $a = h.rs1(op);
            let $i = op.imm;
            h.set_rd(op, $e);
            next(h, op)
        }
    )*};
}

/// Conditional branches: the last op of a block, so they set the next pc either way.
macro_rules! branch {
    ($($name:ident => |$a:ident, $b:ident| $cond:expr;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            let $a = h.rs1(op);
            let $b = h.rs2(op);
            h.pc = if $cond { op.pc(h).wrapping_add(op.imm as u64) } else { op.next_pc(h) };
            true
        }
    )*};
}

fn sext32(v: u64) -> u64 {
    v as i32 as i64 as u64
}

ri! {
    addi => |a, i| a.wrapping_add(i as u64);
    slti => |a, i| ((a as i64) < i) as u64;
    sltiu => |a, i| (a < i as u64) as u64;
    xori => |a, i| a ^ i as u64;
    ori => |a, i| a | i as u64;
    andi => |a, i| a & i as u64;
    slli => |a, i| a << (i & 63);
    srli => |a, i| a >> (i & 63);
    srai => |a, i| ((a as i64) >> (i & 63)) as u64;
    addiw => |a, i| sext32(a.wrapping_add(i as u64));
    slliw => |a, i| sext32(((a as u32) << (i & 31)) as u64);
    srliw => |a, i| sext32(((a as u32) >> (i & 31)) as u64);
    sraiw => |a, i| ((a as i32) >> (i & 31)) as i64 as u64;
}

rr! {
    add => |a, b| a.wrapping_add(b);
    sub => |a, b| a.wrapping_sub(b);
    sll => |a, b| a << (b & 63);
    slt => |a, b| ((a as i64) < (b as i64)) as u64;
    sltu => |a, b| (a < b) as u64;
    xor => |a, b| a ^ b;
    srl => |a, b| a >> (b & 63);
    sra => |a, b| ((a as i64) >> (b & 63)) as u64;
    or => |a, b| a | b;
    and => |a, b| a & b;
    addw => |a, b| sext32(a.wrapping_add(b));
    subw => |a, b| sext32(a.wrapping_sub(b));
    sllw => |a, b| sext32(((a as u32) << (b & 31)) as u64);
    srlw => |a, b| sext32(((a as u32) >> (b & 31)) as u64);
    sraw => |a, b| ((a as i32) >> (b & 31)) as i64 as u64;
    // M extension (unprivileged spec ch. 7); division by zero and overflow have defined
    // results instead of traps (table 7.1).
    mul => |a, b| a.wrapping_mul(b);
    mulh => |a, b| ((a as i64 as i128 * b as i64 as i128) >> 64) as u64;
    mulhsu => |a, b| ((a as i64 as i128).wrapping_mul(b as i128) >> 64) as u64;
    mulhu => |a, b| ((a as u128 * b as u128) >> 64) as u64;
    div => |a, b| if b == 0 { u64::MAX } else { (a as i64).wrapping_div(b as i64) as u64 };
    divu => |a, b| a.checked_div(b).unwrap_or(u64::MAX);
    rem => |a, b| if b == 0 { a } else { (a as i64).wrapping_rem(b as i64) as u64 };
    remu => |a, b| a.checked_rem(b).unwrap_or(a);
    mulw => |a, b| sext32(a.wrapping_mul(b));
    divw => |a, b| {
        let (a, b) = (a as i32, b as i32);
        if b == 0 { u64::MAX } else { a.wrapping_div(b) as i64 as u64 }
    };
    divuw => |a, b| {
        let (a, b) = (a as u32, b as u32);
        a.checked_div(b).map_or(u64::MAX, |q| sext32(q as u64))
    };
    remw => |a, b| {
        let (a, b) = (a as i32, b as i32);
        if b == 0 { a as i64 as u64 } else { a.wrapping_rem(b) as i64 as u64 }
    };
    remuw => |a, b| {
        let (a, b) = (a as u32, b as u32);
        sext32(a.checked_rem(b).unwrap_or(a) as u64)
    };
}

branch! {
    beq => |a, b| a == b;
    bne => |a, b| a != b;
    blt => |a, b| (a as i64) < (b as i64);
    bge => |a, b| (a as i64) >= (b as i64);
    bltu => |a, b| a < b;
    bgeu => |a, b| a >= b;
}

/// `li`: addi rd, x0, imm and lui.
pub(crate) fn li(h: &mut Hart, op: &Op) -> bool {
    h.set_rd(op, op.imm as u64);
    next(h, op)
}

pub(crate) fn auipc(h: &mut Hart, op: &Op) -> bool {
    let v = op.pc(h).wrapping_add(op.imm as u64);
    h.set_rd(op, v);
    next(h, op)
}

/// FENCE: program order already holds for one hart, and the host's atomics order AMOs; only
/// a store before a later load can pass on the host (x86-TSO), so that order gets a fence.
pub(crate) fn fence(h: &mut Hart, op: &Op) -> bool {
    if crate::insn::fence_orders_store_load(op.raw) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
    next(h, op)
}

pub(crate) fn jal(h: &mut Hart, op: &Op) -> bool {
    let link = op.next_pc(h);
    h.pc = op.pc(h).wrapping_add(op.imm as u64);
    h.set_rd(op, link);
    true
}

pub(crate) fn jalr(h: &mut Hart, op: &Op) -> bool {
    // Read rs1 before writing rd: they may be the same register.
    let target = h.rs1(op).wrapping_add(op.imm as u64) & !1;
    let link = op.next_pc(h);
    h.pc = target;
    h.set_rd(op, link);
    true
}

/// Ends a block that runs into a page boundary or the length limit: continue at `imm`
/// bytes from the block's start. Not an instruction; it retires nothing.
pub(crate) fn continue_at(h: &mut Hart, op: &Op) -> bool {
    h.pc = h.block_vpc.wrapping_add(op.imm as u64);
    true
}
