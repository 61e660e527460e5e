//! A hart's architectural state as plain data ([`HartState`]), saved and restored exactly: the
//! first step of VM snapshots.
//!
//! Saved: pc, the integer and floating-point registers, the privilege mode, whether keel is
//! the SBI, the widest paging mode the hart accepts, every CSR the hart stores (the counters
//! as the guest reads them) and the LR reservation.
//!
//! Not saved, because it is not state or is rebuilt:
//! * caches: the TLB, decoded blocks and the jump cache. A restore flushes them all.
//! * the wire-driven `mip` bits (MEIP, SEIP, MSIP, MTIP, STIP under Sstc): the PLIC, the CLINT
//!   and the timers drive them, so they come back when those devices are restored, and the
//!   hart polls them before it runs its first instruction after a restore.
//! * `mtimecmp`: it belongs to the CLINT (the hart only sees a copy through its signals).
//! * the WFI sleep: `wfi` has already retired when the hart sleeps (pc is past it), so a
//!   restored hart simply resumes after it. That is a spurious wakeup, which the privileged
//!   spec (§3.3.3) allows and every WFI loop tolerates.
//! * PMP: keel implements no PMP entries (the registers read as zero), so there is nothing.
//! * `mhartid`, `misa`, and the other constant CSRs.
//! * statistics ([`crate::HartStats`]): they describe keel's work, not the guest's; the
//!   restored hart keeps counting its own.
//!
//! A state is taken between two calls of [`crate::Cpu::run`], never inside a block, so there
//! is no half-executed instruction to save.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::consts::irq;
use crate::cpu::Cpu;
use crate::hart::{Hart, Privilege, SATP_SV39, SATP_SV57};

/// Everything a hart holds that the guest can observe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HartState {
    /// The hart this state belongs to (`mhartid`); a restore checks it.
    pub hartid: u64,
    pub pc: u64,
    /// x0..x31 (x0 is always 0).
    pub x: [u64; 32],
    /// Raw bits of f0..f31 (NaN-boxed singles as the hart holds them).
    pub f: [u64; 32],
    pub privilege: Privilege,
    /// keel answers S-mode `ecall`s itself (no M-mode firmware).
    pub sbi_mode: bool,
    /// The widest `satp` mode the hart implements (8 = Sv39 .. 10 = Sv57).
    pub max_satp_mode: u64,
    pub csr: CsrState,
    /// The LR/SC reservation, if one is held.
    pub reservation: Option<Reservation>,
}

/// The CSRs that hold state, by their architectural names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsrState {
    /// As the hart stores it; reads recompute SD from FS.
    pub mstatus: u64,
    pub medeleg: u64,
    pub mideleg: u64,
    pub mie: u64,
    /// The `mip` bits software sets (SSIP, SEIP's software part, STIP without Sstc), plus
    /// SSIP when an SBI IPI had arrived but the hart had not yet seen it.
    pub mip: u64,
    pub mtvec: u64,
    pub mscratch: u64,
    pub mepc: u64,
    pub mcause: u64,
    pub mtval: u64,
    pub mcounteren: u64,
    pub menvcfg: u64,
    pub mcountinhibit: u64,
    pub stvec: u64,
    pub sscratch: u64,
    pub sepc: u64,
    pub scause: u64,
    pub stval: u64,
    pub scounteren: u64,
    pub senvcfg: u64,
    pub satp: u64,
    pub stimecmp: u64,
    /// Accrued exception flags (5 bits) and the rounding mode (3 bits) of `fcsr`.
    pub fflags: u8,
    pub frm: u8,
    pub mcycle: u64,
    pub minstret: u64,
}

/// An LR reservation: the guest-physical address and the value LR loaded (SC succeeds only
/// if memory still holds it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub addr: u64,
    pub value: u64,
}

/// A state this hart can't take.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StateError {
    #[error("the state belongs to hart {saved}, not hart {hart}")]
    HartId { saved: u64, hart: u64 },
    #[error("invalid hart state: {field} = {value:#x}")]
    Invalid { field: &'static str, value: u64 },
}

impl Hart {
    /// The hart's architectural state. Call it while the hart is not running (between two
    /// [`Cpu::run`]s); it leaves the hart untouched.
    pub fn save_state(&self) -> HartState {
        let c = &self.csr;
        let mut x = [0; 32];
        x.copy_from_slice(&self.x[..32]);
        // An IPI posted but not yet polled would otherwise be lost with the signals.
        let ipi = if self.signals.ipi_pending() { irq::SSIP } else { 0 };
        HartState {
            hartid: self.hartid,
            pc: self.pc,
            x,
            f: self.f,
            privilege: self.prv,
            sbi_mode: self.sbi_mode,
            max_satp_mode: self.max_satp_mode,
            csr: CsrState {
                mstatus: c.mstatus,
                medeleg: c.medeleg,
                mideleg: c.mideleg,
                mie: c.mie,
                mip: c.mip_sw | ipi,
                mtvec: c.mtvec,
                mscratch: c.mscratch,
                mepc: c.mepc,
                mcause: c.mcause,
                mtval: c.mtval,
                mcounteren: c.mcounteren,
                menvcfg: c.menvcfg,
                mcountinhibit: c.mcountinhibit,
                stvec: c.stvec,
                sscratch: c.sscratch,
                sepc: c.sepc,
                scause: c.scause,
                stval: c.stval,
                scounteren: c.scounteren,
                senvcfg: c.senvcfg,
                satp: c.satp,
                stimecmp: c.stimecmp,
                fflags: c.fflags,
                frm: c.frm,
                mcycle: self.instret.wrapping_add(c.cycle_delta),
                minstret: self.instret,
            },
            reservation: self.reservation.get().map(|(addr, value)| Reservation { addr, value }),
        }
    }

    /// Puts the hart in `state`, exactly as it was saved, and drops every cached translation.
    /// Decoded code lives in the [`Cpu`]: restore through [`Cpu::restore_state`] unless the
    /// hart is not in a `Cpu` yet. On error the hart is unchanged.
    pub fn restore_state(&mut self, state: &HartState) -> Result<(), StateError> {
        check(state, self.hartid)?;
        let s = &state.csr;
        self.x = [0; 64];
        self.x[..32].copy_from_slice(&state.x);
        self.f = state.f;
        self.pc = state.pc;
        self.prv = state.privilege;
        self.sbi_mode = state.sbi_mode;
        self.max_satp_mode = state.max_satp_mode;
        let c = &mut self.csr;
        c.mstatus = s.mstatus;
        c.medeleg = s.medeleg;
        c.mideleg = s.mideleg;
        c.mie = s.mie;
        c.mip_sw = s.mip;
        // Rebuilt from the wires and timers at the first service check (budget = 0 below).
        c.mip_hw = 0;
        c.mtvec = s.mtvec;
        c.mscratch = s.mscratch;
        c.mepc = s.mepc;
        c.mcause = s.mcause;
        c.mtval = s.mtval;
        c.mcounteren = s.mcounteren;
        c.menvcfg = s.menvcfg;
        c.mcountinhibit = s.mcountinhibit;
        c.stvec = s.stvec;
        c.sscratch = s.sscratch;
        c.sepc = s.sepc;
        c.scause = s.scause;
        c.stval = s.stval;
        c.scounteren = s.scounteren;
        c.senvcfg = s.senvcfg;
        c.satp = s.satp;
        c.stimecmp = s.stimecmp;
        c.fflags = s.fflags;
        c.frm = s.frm;
        c.cycle_delta = s.mcycle.wrapping_sub(s.minstret);
        // The statistics keep counting what this hart really executed (as `reset` does).
        self.instret_offset =
            self.instret_offset.wrapping_add(self.instret).wrapping_sub(s.minstret);
        self.instret = s.minstret;
        self.published_at = s.minstret;
        self.insn_in_block = 0;
        self.reservation.set(state.reservation.map(|r| (r.addr, r.value)));
        self.stop = Default::default();
        self.stop_at = (0, 0);
        self.tlb.flush_all();
        self.fenced_pages.clear();
        self.flush_jump_cache = true;
        self.request_service();
        self.update_data_mode();
        Ok(())
    }
}

/// Refuses states no running hart could have been in, so a corrupted snapshot can't put the
/// hart somewhere its WARL fields never go.
fn check(state: &HartState, hartid: u64) -> Result<(), StateError> {
    if state.hartid != hartid {
        return Err(StateError::HartId { saved: state.hartid, hart: hartid });
    }
    let invalid = |field, value| Err(StateError::Invalid { field, value });
    if state.x[0] != 0 {
        return invalid("x0", state.x[0]);
    }
    if !(SATP_SV39..=SATP_SV57).contains(&state.max_satp_mode) {
        return invalid("max_satp_mode", state.max_satp_mode);
    }
    let satp_mode = state.csr.satp >> 60;
    if satp_mode != 0 && !(SATP_SV39..=state.max_satp_mode).contains(&satp_mode) {
        return invalid("satp", state.csr.satp);
    }
    if state.csr.fflags > 0x1f {
        return invalid("fflags", state.csr.fflags.into());
    }
    if state.csr.frm > 7 {
        return invalid("frm", state.csr.frm.into());
    }
    Ok(())
}

impl Cpu {
    /// The hart's architectural state (see [`Hart::save_state`]).
    pub fn save_state(&self) -> HartState {
        self.hart().save_state()
    }

    /// Restores the hart (see [`Hart::restore_state`]) and forgets all decoded code, which
    /// may have come from memory the snapshot replaced.
    pub fn restore_state(&mut self, state: &HartState) -> Result<(), StateError> {
        self.hart_mut().restore_state(state)?;
        self.clear_code();
        Ok(())
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
