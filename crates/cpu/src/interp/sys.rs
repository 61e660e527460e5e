//! SYSTEM and MISC-MEM instructions: CSR access (Zicsr), ecall/ebreak, xRET, WFI, fences.
//! All but the CSR instructions end their block, so state they change is seen by the next
//! block lookup; a CSR instruction ends it only when what it wrote needs the run loop.

use super::op::{next, stopped, Op};
use crate::consts::{cause, status};
use crate::hart::{Hart, Privilege, Stop};

pub(crate) fn illegal(h: &mut Hart, op: &Op) -> bool {
    h.raise(cause::ILLEGAL_INSN, op.raw as u64);
    stopped(h, op)
}

/// The CSR instructions (unprivileged spec ch. 9). `imm` holds the CSR number; the `*i` forms
/// put their 5-bit immediate in `rs1` (decode stores it there), `rs2` says which form.
fn csr_op(h: &mut Hart, op: &Op, kind: CsrKind) -> bool {
    let number = op.imm as u16;
    let rd_is_x0 = op.rd == 32;
    let (source, source_is_zero) = match kind {
        CsrKind::Rw | CsrKind::Rs | CsrKind::Rc => (h.rs1(op), op.rs1 == 0),
        CsrKind::Rwi | CsrKind::Rsi | CsrKind::Rci => (op.rs1 as u64, op.rs1 == 0),
    };
    h.insn_in_block = op.idx as u64;
    // CSRRW with rd = x0 does not read (no read side effects); CSRRS/C with a zero source
    // does not write, so read-only CSRs can be read with them.
    let writes = matches!(kind, CsrKind::Rw | CsrKind::Rwi) || !source_is_zero;
    let old = if matches!(kind, CsrKind::Rw | CsrKind::Rwi) && rd_is_x0 {
        0
    } else {
        match h.csr_read(number) {
            Ok(v) => v,
            Err(_) => return illegal(h, op),
        }
    };
    if writes {
        let new = match kind {
            CsrKind::Rw | CsrKind::Rwi => source,
            CsrKind::Rs | CsrKind::Rsi => old | source,
            CsrKind::Rc | CsrKind::Rci => old & !source,
        };
        if h.csr_write(number, new).is_err() {
            return illegal(h, op);
        }
    }
    h.set_rd(op, old);
    if h.service_due() {
        // It changed something the run loop must see first (interrupt enables, satp, ...).
        h.pc = op.next_pc(h);
        h.stop = Stop::Retired;
        return stopped(h, op);
    }
    next(h, op)
}

#[derive(Clone, Copy)]
enum CsrKind {
    Rw,
    Rs,
    Rc,
    Rwi,
    Rsi,
    Rci,
}

pub(crate) fn csrrw(h: &mut Hart, op: &Op) -> bool {
    csr_op(h, op, CsrKind::Rw)
}
pub(crate) fn csrrs(h: &mut Hart, op: &Op) -> bool {
    csr_op(h, op, CsrKind::Rs)
}
pub(crate) fn csrrc(h: &mut Hart, op: &Op) -> bool {
    csr_op(h, op, CsrKind::Rc)
}
pub(crate) fn csrrwi(h: &mut Hart, op: &Op) -> bool {
    csr_op(h, op, CsrKind::Rwi)
}
pub(crate) fn csrrsi(h: &mut Hart, op: &Op) -> bool {
    csr_op(h, op, CsrKind::Rsi)
}
pub(crate) fn csrrci(h: &mut Hart, op: &Op) -> bool {
    csr_op(h, op, CsrKind::Rci)
}

pub(crate) fn ecall(h: &mut Hart, op: &Op) -> bool {
    if h.sbi_mode && h.prv == Privilege::Supervisor {
        h.stop = Stop::Sbi;
        return stopped(h, op);
    }
    let c = match h.prv {
        Privilege::User => cause::ECALL_U,
        Privilege::Supervisor => cause::ECALL_S,
        Privilege::Machine => cause::ECALL_M,
    };
    h.raise(c, 0);
    stopped(h, op)
}

pub(crate) fn ebreak(h: &mut Hart, op: &Op) -> bool {
    // tval for a breakpoint is the address of the instruction (privileged spec §3.1.16).
    let pc = op.pc(h);
    h.raise(cause::BREAKPOINT, pc);
    stopped(h, op)
}

pub(crate) fn mret(h: &mut Hart, op: &Op) -> bool {
    if h.prv != Privilege::Machine {
        return illegal(h, op);
    }
    h.mret();
    h.request_service();
    true
}

pub(crate) fn sret(h: &mut Hart, op: &Op) -> bool {
    let tsr = h.csr.mstatus & status::TSR != 0;
    if h.prv == Privilege::User || (h.prv == Privilege::Supervisor && tsr) {
        return illegal(h, op);
    }
    h.sret();
    h.request_service();
    true
}

pub(crate) fn wfi(h: &mut Hart, op: &Op) -> bool {
    // U-mode may not wait; S-mode may not when TW is set (privileged spec §3.1.6.5).
    let tw = h.csr.mstatus & status::TW != 0;
    if h.prv == Privilege::User || (h.prv == Privilege::Supervisor && tw) {
        return illegal(h, op);
    }
    h.pc = op.next_pc(h);
    h.stop = Stop::Wfi;
    stopped(h, op)
}

pub(crate) fn sfence_vma(h: &mut Hart, op: &Op) -> bool {
    let tvm = h.csr.mstatus & status::TVM != 0;
    if h.prv == Privilege::User || (h.prv == Privilege::Supervisor && tvm) {
        return illegal(h, op);
    }
    if op.rs1 == 0 && op.rs2 != 0 {
        // One address space (ASID in rs2): global mappings stay (privileged spec §4.2.1).
        h.stats.tlb_flushes += 1;
        h.tlb.flush_non_global();
        h.flush_local_jump_cache = true;
    } else if op.rs1 == 0 {
        h.stats.tlb_flushes += 1;
        h.tlb.flush_translated();
        h.flush_jump_cache = true;
    } else {
        h.stats.tlb_address_flushes += 1;
        let vaddr = h.rs1(op);
        if h.tlb.flush_address(vaddr) {
            h.flush_jump_cache = true;
        } else {
            // Only blocks entered through this very page can have a stale translation.
            h.fenced_pages.push(vaddr & !0xfff);
        }
    }
    h.request_service();
    h.pc = op.next_pc(h);
    true
}

/// FENCE.I: every store to a page with decoded code already told the harts holding that code
/// (see `note_code_write`); ending the block with a service check makes this hart drop it
/// before its next instruction.
pub(crate) fn fence_i(h: &mut Hart, op: &Op) -> bool {
    h.pc = op.next_pc(h);
    h.request_service();
    true
}
