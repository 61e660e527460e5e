//! The architectural state of one hart and the operations the machine performs on it.

use std::sync::atomic::AtomicU8;
use std::sync::Arc;

use keel_memory::{GuestRam, RamWriter};

use crate::bus::Bus;
use crate::consts::{cause, csr as csrno, irq, status, MENVCFG_STCE};
use crate::jit::JitCtx;
use crate::signals::HartSignals;
use crate::stats::HartStats;
use crate::tlb::{Tlb, MODE_M, MODE_S, MODE_S_SUM, MODE_U};

/// Privilege modes (privileged spec §1.2). The numbers are the architectural encodings.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Privilege {
    User = 0,
    Supervisor = 1,
    Machine = 3,
}

impl Privilege {
    pub(crate) fn from_bits(bits: u64) -> Privilege {
        match bits & 3 {
            0 => Privilege::User,
            1 => Privilege::Supervisor,
            // 2 is reserved; MPP is WARL and never holds it (see `write_mstatus`).
            _ => Privilege::Machine,
        }
    }
}

/// Why the block being executed stopped before its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Stop {
    #[default]
    None,
    /// An exception: the instruction did not retire.
    Trap { cause: u64, tval: u64 },
    /// `ecall` from S-mode while keel itself is the SBI implementation.
    Sbi,
    /// `wfi` retired; the hart may sleep until an interrupt is pending.
    Wfi,
    /// The instruction retired (pc is already past it), and what it did needs the run loop
    /// before the next one runs (a CSR write that asked for a service check).
    Retired,
}

/// An LR reservation as translated code reads and writes it (`repr(C)`): the physical
/// address, [`LrReservation::NO_ADDRESS`] when none is held, and the value LR loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LrReservation {
    pub addr: u64,
    pub value: u64,
}

impl LrReservation {
    /// Never a RAM address (RAM ends below 2^56).
    pub const NO_ADDRESS: u64 = u64::MAX;
    pub const NONE: LrReservation = LrReservation { addr: Self::NO_ADDRESS, value: 0 };

    pub fn get(&self) -> Option<(u64, u64)> {
        (self.addr != Self::NO_ADDRESS).then_some((self.addr, self.value))
    }

    pub fn set(&mut self, held: Option<(u64, u64)>) {
        *self = match held {
            Some((addr, value)) => LrReservation { addr, value },
            None => Self::NONE,
        };
    }

    /// The reservation, dropped (SC's "the reservation is invalidated", §14.2).
    pub fn take(&mut self) -> Option<(u64, u64)> {
        let held = self.get();
        *self = Self::NONE;
        held
    }
}

/// Control and status registers that hold plain state. Registers computed on the fly (time,
/// counters, the `s*` views of `m*` registers) live in `csr.rs`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Csrs {
    pub mstatus: u64,
    pub medeleg: u64,
    pub mideleg: u64,
    pub mie: u64,
    /// `mip` bits written by software (SSIP, STIP without Sstc, SEIP's software part).
    pub mip_sw: u64,
    /// `mip` bits driven by wires and timers, refreshed by `poll_inputs`.
    pub mip_hw: u64,
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
    /// Accrued exception flags and dynamic rounding mode (unprivileged spec §13.2).
    pub fflags: u8,
    pub frm: u8,
    /// mcycle - instret, so that writes to mcycle stick.
    pub cycle_delta: u64,
}

/// `satp` MODE values (privileged spec §4.1.11, table 4.4).
pub const SATP_SV39: u64 = 8;
pub const SATP_SV48: u64 = 9;
pub const SATP_SV57: u64 = 10;

/// Instructions executed between two looks at the clock and the interrupt wires.
pub(crate) const SLICE: u64 = 4096;

/// The same for native code, which runs a slice several times faster: the service check
/// then costs as large a share as it does in the interpreter.
pub(crate) const NATIVE_SLICE: u64 = 16384;

/// Instructions retired between two publications of the hart's statistics: a few
/// milliseconds' worth, so readers see fresh numbers and the hart hardly notices.
pub(crate) const PUBLISH_INTERVAL: u64 = 1 << 18;

/// One RISC-V hart.
///
/// `repr(C)` with the state translated code reads and writes first: generated code reaches
/// these fields at offsets taken with `offset_of!`, so their layout is part of the
/// translator's contract (see `jit`).
#[repr(C)]
pub struct Hart {
    /// x0..x31; index 32 is where writes to x0 go, so handlers need no `rd == 0` test.
    pub(crate) x: [u64; 64],
    pub(crate) f: [u64; 32],
    pub(crate) pc: u64,
    /// Instructions retired since reset, as of the start of the block being executed.
    pub(crate) instret: u64,
    /// The hart looks after interrupts, timers, fences and the VMM once `instret` reaches
    /// this (see `service_due`; the guest may write `minstret`, so the two are compared
    /// modulo 2^64).
    pub(crate) deadline: u64,
    /// Virtual address of the first instruction of the block being executed; while native
    /// code runs, the virtual page it runs in (see `jit`).
    pub(crate) block_vpc: u64,
    pub(crate) jit: JitCtx,
    /// TLB set used by loads and stores (depends on privilege, MPRV and SUM).
    pub(crate) data_mode: u8,
    pub(crate) tlb: Box<Tlb>,
    pub(crate) prv: Privilege,
    pub(crate) csr: Csrs,
    pub(crate) stop: Stop,
    /// Where the block stopped: the op's offset and position (see `op::stopped`).
    pub(crate) stop_at: (u16, u8),
    /// LR reservation: guest-physical address and the value LR saw (SC compares against it).
    pub(crate) reservation: LrReservation,
    /// Position of the executing instruction in its block, set by instructions that read or
    /// write the counters (the block adds its count to `instret` when it ends).
    pub(crate) insn_in_block: u64,
    /// Per RAM page: nonzero while some hart holds decoded code from it or while dirty-page
    /// tracking waits for the page's first write of a round (shared with every hart and
    /// device through `GuestRam`); stores to such pages take the slow path.
    pub(crate) page_flags: Arc<[AtomicU8]>,
    /// Host address of guest RAM's first byte, to index `page_flags` from a host address.
    pub(crate) ram_host: usize,
    /// This hart as a writer of RAM on the store fast path: busy while `Cpu::run` executes
    /// guest code, quiescent between blocks, so that dirty-page tracking can wait for stores
    /// in flight (see keel-memory's `dirty.rs`).
    pub(crate) ram_writer: RamWriter,
    /// The jump cache must be dropped (translation or code changed).
    pub(crate) flush_jump_cache: bool,
    /// Jump-cache entries reached through non-global translations must go (another
    /// address space).
    pub(crate) flush_local_jump_cache: bool,
    /// Virtual pages fenced by address since the last service check: jump-cache entries that
    /// start in them must go.
    pub(crate) fenced_pages: Vec<u64>,
    pub(crate) ram: Arc<GuestRam>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) signals: Arc<HartSignals>,
    pub(crate) hartid: u64,
    /// No M-mode firmware: keel answers S-mode `ecall`s itself (SBI).
    pub(crate) sbi_mode: bool,
    /// Slow-path counters (`stats.instructions` is filled in from `instret` when published).
    pub(crate) stats: HartStats,
    /// Instructions retired before `instret` last restarted (hart reset, `minstret` write).
    pub(crate) instret_offset: u64,
    /// Instructions retired when the statistics were last published.
    pub(crate) published_at: u64,
    /// The widest `satp` mode the hart accepts (8 = Sv39, 9 = Sv48, 10 = Sv57).
    pub(crate) max_satp_mode: u64,
}

impl Hart {
    pub fn new(
        hartid: u64,
        ram: Arc<GuestRam>,
        bus: Arc<dyn Bus>,
        signals: Arc<HartSignals>,
    ) -> Hart {
        let mut hart = Hart {
            x: [0; 64],
            f: [0; 32],
            pc: 0,
            instret: 0,
            deadline: 0,
            block_vpc: 0,
            jit: JitCtx {
                tlb: 0,
                jump: 0,
                tag: 0,
                global_tag: 0,
                patch: 0,
                page_flags: ram.page_flags().as_ptr() as usize,
                ram_host: ram.host_base(),
                ram_base: ram.base(),
            },
            data_mode: MODE_M as u8,
            tlb: Tlb::new(),
            prv: Privilege::Machine,
            csr: Csrs::default(),
            stop: Stop::None,
            stop_at: (0, 0),
            reservation: LrReservation::NONE,
            insn_in_block: 0,
            page_flags: ram.page_flags(),
            ram_host: ram.host_base(),
            ram_writer: ram.register_writer(),
            flush_jump_cache: true,
            flush_local_jump_cache: false,
            fenced_pages: Vec::new(),
            ram,
            bus,
            signals,
            hartid,
            sbi_mode: false,
            stats: HartStats::default(),
            instret_offset: 0,
            published_at: 0,
            max_satp_mode: SATP_SV57,
        };
        hart.reset(0, Privilege::Machine, false);
        hart
    }

    /// Puts the hart in its reset state (privileged spec §3.4) at `pc` in mode `prv`.
    ///
    /// With `sbi_mode`, keel plays the part of M-mode firmware: every trap that firmware such
    /// as OpenSBI would delegate goes to S-mode, S-mode may read the counters, Sstc is on, and
    /// `ecall` from S-mode becomes an SBI call answered by the machine.
    pub fn reset(&mut self, pc: u64, prv: Privilege, sbi_mode: bool) {
        self.x = [0; 64];
        self.f = [0; 32];
        self.csr = Csrs { mstatus: status::UXL_SXL_64, stimecmp: u64::MAX, ..Csrs::default() };
        self.sbi_mode = sbi_mode;
        if sbi_mode {
            // Everything but ecall-from-S/M goes to the kernel (priv spec §3.1.8).
            self.csr.medeleg = 0xb1ff & !(1 << cause::ECALL_S);
            self.csr.mideleg = irq::S_MASK;
            self.csr.menvcfg = MENVCFG_STCE;
            self.csr.mcounteren = 0xffff_ffff;
            // User space may read `time` (the vDSO's clock_gettime does). Linux sets this
            // itself only through the SBI PMU extension, which keel's SBI doesn't have.
            self.csr.scounteren = 1 << 1;
            // Linux expects FS to be usable (it turns it off and on itself).
            self.csr.mstatus |= 1 << status::FS_SHIFT;
        }
        self.pc = pc;
        self.prv = prv;
        self.stop = Stop::None;
        self.reservation = LrReservation::NONE;
        self.instret_offset = self.instret_offset.wrapping_add(self.instret);
        self.instret = 0;
        self.tlb.flush_all();
        self.flush_jump_cache = true;
        self.request_service();
        self.update_data_mode();
    }

    /// Limits the paging modes the hart implements to `mode` and narrower (the board
    /// advertises the same in the device tree's `mmu-type`). Wider modes written to `satp`
    /// are ignored, which is how software discovers what the hart supports.
    pub fn set_max_paging_mode(&mut self, mode: u64) {
        self.max_satp_mode = mode.clamp(SATP_SV39, SATP_SV57);
    }

    pub fn hartid(&self) -> u64 {
        self.hartid
    }

    /// Integer register `i` (0..=31).
    pub fn x(&self, i: usize) -> u64 {
        self.x[i & 31]
    }

    /// Sets integer register `i`; writes to x0 are ignored.
    pub fn set_x(&mut self, i: usize, value: u64) {
        if i & 31 != 0 {
            self.x[i & 31] = value;
        }
    }

    /// Raw bits of floating-point register `i`.
    pub fn f(&self, i: usize) -> u64 {
        self.f[i & 31]
    }

    pub fn pc(&self) -> u64 {
        self.pc
    }

    pub fn set_pc(&mut self, pc: u64) {
        self.pc = pc;
    }

    pub fn privilege(&self) -> Privilege {
        self.prv
    }

    /// Instructions retired since reset (`minstret`).
    pub fn instret(&self) -> u64 {
        self.instret
    }

    /// What the hart did since it was built (see also [`HartSignals::stats`], the same numbers
    /// as last published, for other threads).
    pub fn stats(&self) -> HartStats {
        HartStats { instructions: self.instret_offset.wrapping_add(self.instret), ..self.stats }
    }

    /// Makes the current statistics visible to other threads through the hart's signals.
    pub(crate) fn publish_stats(&mut self) {
        self.published_at = self.instret;
        self.signals.publish_stats(&self.stats());
    }

    /// Publishes the statistics if enough instructions retired since the last time.
    #[inline]
    pub(crate) fn maybe_publish_stats(&mut self) {
        if self.instret.wrapping_sub(self.published_at) >= PUBLISH_INTERVAL {
            self.publish_stats();
        }
    }

    pub fn signals(&self) -> &Arc<HartSignals> {
        &self.signals
    }

    /// SBI TIME `set_timer`: program the supervisor timer. keel implements it with the Sstc
    /// comparator, so STIP follows `time >= value` (SBI spec §6.1, Sstc spec §2).
    pub fn set_supervisor_timer(&mut self, value: u64) {
        self.csr.stimecmp = value;
        self.request_service();
    }

    /// Asks for a service check (interrupts, timers, fences, the VMM) at the next block
    /// boundary: something changed that the run loop must look at before going on.
    #[inline]
    pub(crate) fn request_service(&mut self) {
        // `instret` may lag behind while native code runs (it is the start of a block or of
        // a run), which only makes the check fire sooner.
        self.deadline = self.instret;
    }

    /// The service deadline has come: `instret - deadline`, taken modulo 2^64 as a signed
    /// number, is not negative (translated code checks the sign of the same difference).
    #[inline]
    pub(crate) fn service_due(&self) -> bool {
        self.instret.wrapping_sub(self.deadline) as i64 >= 0
    }

    /// The value of `mip` as software reads it.
    pub(crate) fn mip(&self) -> u64 {
        self.csr.mip_sw | self.csr.mip_hw
    }

    /// Recomputes which TLB set loads and stores use (MPRV, privilege, SUM: priv spec §3.1.6.3).
    pub(crate) fn update_data_mode(&mut self) {
        let effective = if self.prv == Privilege::Machine && self.csr.mstatus & status::MPRV != 0 {
            Privilege::from_bits(self.csr.mstatus >> status::MPP_SHIFT)
        } else {
            self.prv
        };
        self.data_mode = self.mode_for(effective) as u8;
        // Native code reads the current set's entries through this pointer.
        self.jit.tlb = self.tlb.fast[self.data_mode as usize].as_ptr() as usize;
    }

    pub(crate) fn mode_for(&self, prv: Privilege) -> usize {
        match prv {
            Privilege::Machine => MODE_M,
            Privilege::Supervisor if self.csr.mstatus & status::SUM != 0 => MODE_S_SUM,
            Privilege::Supervisor => MODE_S,
            Privilege::User => MODE_U,
        }
    }

    /// TLB set for instruction fetch: SUM never lets S-mode execute user pages.
    #[inline]
    pub(crate) fn fetch_mode(&self) -> usize {
        match self.prv {
            Privilege::Machine => MODE_M,
            Privilege::Supervisor => MODE_S,
            Privilege::User => MODE_U,
        }
    }

    /// Records an exception for the running instruction; handlers return the result.
    #[cold]
    pub(crate) fn raise(&mut self, cause: u64, tval: u64) -> bool {
        self.stop = Stop::Trap { cause, tval };
        false
    }

    /// Refreshes the wire- and timer-driven `mip` bits (privileged spec §3.1.9; Sstc §2).
    pub(crate) fn poll_inputs(&mut self) {
        if self.signals.take_ipi() {
            self.csr.mip_sw |= irq::SSIP;
            self.stats.interrupts_signalled += 1;
        }
        let now = self.bus.time();
        let lines = self.signals.lines();
        let mut hw = lines & (irq::MEIP | irq::SEIP | irq::MSIP);
        if now >= self.signals.mtimecmp() {
            hw |= irq::MTIP;
        }
        if self.csr.menvcfg & MENVCFG_STCE != 0 {
            self.csr.mip_sw &= !irq::STIP;
            if now >= self.csr.stimecmp {
                hw |= irq::STIP;
            }
        }
        self.stats.interrupts_signalled += (hw & !self.csr.mip_hw).count_ones() as u64;
        self.csr.mip_hw = hw;
    }

    /// The interrupt to take now, if any (privileged spec §3.1.9: M-level before S-level,
    /// then MEI, MSI, MTI, SEI, SSI, STI).
    pub(crate) fn pending_interrupt(&self) -> Option<u64> {
        let pending = self.mip() & self.csr.mie;
        if pending == 0 {
            return None;
        }
        let m_enabled = self.prv < Privilege::Machine || self.csr.mstatus & status::MIE != 0;
        let s_enabled = self.prv < Privilege::Supervisor
            || (self.prv == Privilege::Supervisor && self.csr.mstatus & status::SIE != 0);
        let m_pending = pending & !self.csr.mideleg;
        let s_pending = pending & self.csr.mideleg;
        let pick = |set: u64| irq::PRIORITY.iter().copied().find(|i| set & (1 << i) != 0);
        if m_enabled && m_pending != 0 {
            return pick(m_pending);
        }
        if s_enabled && s_pending != 0 && self.prv != Privilege::Machine {
            return pick(s_pending);
        }
        None
    }

    /// Enters the trap handler for `cause` (exception or, with the top bit, interrupt) raised
    /// at `pc` (privileged spec §3.1.6.1, §3.1.7, §4.1.1). Returns false when the trap belongs
    /// to M-mode but there is no M-mode firmware to take it.
    pub(crate) fn enter_trap(&mut self, cause: u64, tval: u64, pc: u64) -> bool {
        let interrupt = cause & cause::INTERRUPT != 0;
        let code = cause & !cause::INTERRUPT;
        if interrupt {
            self.stats.interrupts += 1;
        } else {
            self.stats.exceptions += 1;
        }
        let delegated = if interrupt { self.csr.mideleg } else { self.csr.medeleg };
        let st = &mut self.csr.mstatus;
        if self.prv <= Privilege::Supervisor && (delegated >> code) & 1 != 0 {
            self.csr.sepc = pc;
            self.csr.scause = cause;
            self.csr.stval = tval;
            let sie = *st & status::SIE != 0;
            *st &= !(status::SPP | status::SPIE | status::SIE);
            if sie {
                *st |= status::SPIE;
            }
            if self.prv == Privilege::Supervisor {
                *st |= status::SPP;
            }
            self.prv = Privilege::Supervisor;
            self.pc = trap_vector(self.csr.stvec, interrupt, code);
        } else {
            if self.sbi_mode {
                return false;
            }
            self.csr.mepc = pc;
            self.csr.mcause = cause;
            self.csr.mtval = tval;
            let mie = *st & status::MIE != 0;
            *st &= !(status::MPP | status::MPIE | status::MIE);
            if mie {
                *st |= status::MPIE;
            }
            *st |= (self.prv as u64) << status::MPP_SHIFT;
            self.prv = Privilege::Machine;
            self.pc = trap_vector(self.csr.mtvec, interrupt, code);
        }
        self.update_data_mode();
        true
    }

    /// MRET (privileged spec §3.3.2).
    pub(crate) fn mret(&mut self) {
        let st = self.csr.mstatus;
        let mpp = Privilege::from_bits(st >> status::MPP_SHIFT);
        let mut new = st & !(status::MIE | status::MPP);
        if st & status::MPIE != 0 {
            new |= status::MIE;
        }
        new |= status::MPIE;
        if mpp != Privilege::Machine {
            new &= !status::MPRV;
        }
        self.csr.mstatus = new;
        self.prv = mpp;
        self.pc = self.csr.mepc;
        self.update_data_mode();
    }

    /// SRET (privileged spec §3.3.2).
    pub(crate) fn sret(&mut self) {
        let st = self.csr.mstatus;
        let spp = if st & status::SPP != 0 { Privilege::Supervisor } else { Privilege::User };
        let mut new = st & !(status::SIE | status::SPP | status::MPRV);
        if st & status::SPIE != 0 {
            new |= status::SIE;
        }
        new |= status::SPIE;
        self.csr.mstatus = new;
        self.prv = spp;
        self.pc = self.csr.sepc;
        self.update_data_mode();
    }

    /// Whether the hart may sleep now: nothing pending and enabled in `mie`. WFI wakes on a
    /// locally enabled interrupt even when the global enable bits are clear (§3.3.3).
    pub(crate) fn wfi_should_sleep(&self) -> bool {
        self.mip() & self.csr.mie == 0
    }

    /// The next time (in ticks) a timer interrupt could become pending.
    pub(crate) fn next_timer_deadline(&self) -> u64 {
        let mut deadline = u64::MAX;
        if self.csr.mie & irq::MTIP != 0 {
            deadline = deadline.min(self.signals.mtimecmp());
        }
        if self.csr.mie & irq::STIP != 0 && self.csr.menvcfg & MENVCFG_STCE != 0 {
            deadline = deadline.min(self.csr.stimecmp);
        }
        deadline
    }

    pub(crate) fn is_fp_enabled(&self) -> bool {
        self.csr.mstatus & status::FS != 0
    }

    /// Any write to FP state marks it dirty (privileged spec §3.1.6.6), which Linux relies on
    /// to know whether to save FP registers on a context switch.
    #[inline]
    pub(crate) fn mark_fp_dirty(&mut self) {
        self.csr.mstatus |= status::FS_DIRTY | status::SD;
    }

    /// CSR number decoded from an instruction.
    pub(crate) fn counter_enabled(&self, number: u16) -> bool {
        let bit = 1u64 << (number - csrno::CYCLE);
        match self.prv {
            Privilege::Machine => true,
            Privilege::Supervisor => self.csr.mcounteren & bit != 0,
            Privilege::User => self.csr.mcounteren & self.csr.scounteren & bit != 0,
        }
    }
}

fn trap_vector(tvec: u64, interrupt: bool, code: u64) -> u64 {
    let base = tvec & !3;
    if interrupt && tvec & 3 == 1 {
        base + 4 * code
    } else {
        base
    }
}
