//! CSR reads and writes with their side effects (privileged spec chapters 2-4, Sstc).

use crate::consts::{csr::*, irq, status, MENVCFG_STCE, MISA_VALUE};
use crate::hart::{Hart, Privilege};

/// An access the hart refuses: the instruction raises illegal-instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Illegal;

/// `medeleg` bits that can be set: every standard exception except ecall from M-mode.
const MEDELEG_WRITABLE: u64 = 0xb3ff & !(1 << 11);

impl Hart {
    /// Checks the privilege encoded in the CSR number (bits 9:8, §2.1).
    fn csr_accessible(&self, number: u16) -> bool {
        let required = (number >> 8) & 3;
        self.prv as u16 >= required
    }

    pub(crate) fn csr_read(&mut self, number: u16) -> Result<u64, Illegal> {
        if !self.csr_accessible(number) {
            return Err(Illegal);
        }
        let c = &self.csr;
        Ok(match number {
            FFLAGS | FRM | FCSR => {
                if !self.is_fp_enabled() {
                    return Err(Illegal);
                }
                match number {
                    FFLAGS => c.fflags as u64,
                    FRM => c.frm as u64,
                    _ => ((c.frm as u64) << 5) | c.fflags as u64,
                }
            }
            CYCLE..=HPMCOUNTER31 => {
                if !self.counter_enabled(number) {
                    return Err(Illegal);
                }
                match number {
                    CYCLE => self.cycles(),
                    TIME => self.bus.time(),
                    INSTRET => self.retired(),
                    _ => 0,
                }
            }
            SSTATUS => self.sstatus(),
            SIE => c.mie & c.mideleg,
            STVEC => c.stvec,
            SCOUNTEREN => c.scounteren,
            SENVCFG => c.senvcfg,
            SSCRATCH => c.sscratch,
            SEPC => c.sepc,
            SCAUSE => c.scause,
            STVAL => c.stval,
            SIP => self.mip() & c.mideleg,
            STIMECMP => {
                if !self.stimecmp_accessible() {
                    return Err(Illegal);
                }
                c.stimecmp
            }
            SATP => {
                if self.prv == Privilege::Supervisor && c.mstatus & status::TVM != 0 {
                    return Err(Illegal);
                }
                c.satp
            }
            MVENDORID | MARCHID | MIMPID | MCONFIGPTR => 0,
            MHARTID => self.hartid,
            MSTATUS => self.mstatus_with_sd(),
            MISA => MISA_VALUE,
            MEDELEG => c.medeleg,
            MIDELEG => c.mideleg,
            MIE => c.mie,
            MTVEC => c.mtvec,
            MCOUNTEREN => c.mcounteren,
            MENVCFG => c.menvcfg,
            MCOUNTINHIBIT => c.mcountinhibit,
            MHPMEVENT3..=MHPMEVENT31 => 0,
            MSCRATCH => c.mscratch,
            MEPC => c.mepc,
            MCAUSE => c.mcause,
            MTVAL => c.mtval,
            MIP => self.mip(),
            // No PMP entries: the registers exist and read as zero (§3.7, all fields WARL).
            PMPCFG0..=PMPCFG15 | PMPADDR0..=PMPADDR63 => 0,
            MCYCLE => self.cycles(),
            MINSTRET => self.retired(),
            MHPMCOUNTER3..=MHPMCOUNTER31 => 0,
            _ => return Err(Illegal),
        })
    }

    pub(crate) fn csr_write(&mut self, number: u16, value: u64) -> Result<(), Illegal> {
        // Bits 11:10 = 3 mark read-only CSRs (§2.1).
        if !self.csr_accessible(number) || number >> 10 == 3 {
            return Err(Illegal);
        }
        match number {
            FFLAGS | FRM | FCSR => {
                if !self.is_fp_enabled() {
                    return Err(Illegal);
                }
                match number {
                    FFLAGS => self.csr.fflags = (value & 0x1f) as u8,
                    FRM => self.csr.frm = (value & 7) as u8,
                    _ => {
                        self.csr.fflags = (value & 0x1f) as u8;
                        self.csr.frm = ((value >> 5) & 7) as u8;
                    }
                }
                self.mark_fp_dirty();
            }
            SSTATUS => {
                let mask = status::S_WRITABLE;
                let v = (self.csr.mstatus & !mask) | (value & mask);
                self.write_mstatus(v);
            }
            SIE => {
                let mask = self.csr.mideleg;
                self.csr.mie = (self.csr.mie & !mask) | (value & mask);
                self.request_service();
            }
            STVEC => self.csr.stvec = legal_tvec(value),
            SCOUNTEREN => self.csr.scounteren = value & 0xffff_ffff,
            SENVCFG => self.csr.senvcfg = value & 1,
            SSCRATCH => self.csr.sscratch = value,
            SEPC => self.csr.sepc = value & !1,
            SCAUSE => self.csr.scause = value,
            STVAL => self.csr.stval = value,
            SIP => {
                // Only SSIP is writable through sip, and only when delegated (§4.1.3).
                let mask = irq::SSIP & self.csr.mideleg;
                self.csr.mip_sw = (self.csr.mip_sw & !mask) | (value & mask);
                self.request_service();
            }
            STIMECMP => {
                if !self.stimecmp_accessible() {
                    return Err(Illegal);
                }
                self.csr.stimecmp = value;
                self.request_service();
            }
            SATP => {
                if self.prv == Privilege::Supervisor && self.csr.mstatus & status::TVM != 0 {
                    return Err(Illegal);
                }
                // Bare or a supported paging mode; any other mode leaves satp unchanged
                // (§4.1.11).
                let mode = value >> 60;
                let old_satp = self.csr.satp;
                if mode == 0 || (8..=self.max_satp_mode).contains(&mode) {
                    // Keep 16 ASID bits and a 44-bit PPN.
                    self.csr.satp = value & 0xf000_ffff_ffff_ffff;
                    // keel's TLB has no ASID tags: a new address space (or ASID) means a flush,
                    // but global mappings are the same in every address space (§4.3.1) and
                    // stay, unless paging was just switched on or off.
                    if (old_satp ^ value) >> 60 != 0 {
                        self.tlb.flush_translated();
                        self.flush_jump_cache = true;
                    } else {
                        self.tlb.flush_non_global();
                        self.flush_local_jump_cache = true;
                    }
                    self.stats.tlb_flushes += 1;
                    self.request_service();
                }
            }
            MSTATUS => self.write_mstatus(value),
            MISA | MCONFIGPTR => {}
            MEDELEG => self.csr.medeleg = value & MEDELEG_WRITABLE,
            MIDELEG => {
                self.csr.mideleg = value & irq::S_MASK;
                self.request_service();
            }
            MIE => {
                self.csr.mie = value & irq::ALL;
                self.request_service();
            }
            MTVEC => self.csr.mtvec = legal_tvec(value),
            MCOUNTEREN => self.csr.mcounteren = value & 0xffff_ffff,
            MENVCFG => {
                self.csr.menvcfg = value & (MENVCFG_STCE | 1);
                self.request_service();
            }
            MCOUNTINHIBIT => self.csr.mcountinhibit = value & 0xffff_fffd,
            MHPMEVENT3..=MHPMEVENT31 => {}
            MSCRATCH => self.csr.mscratch = value,
            MEPC => self.csr.mepc = value & !1,
            MCAUSE => self.csr.mcause = value,
            MTVAL => self.csr.mtval = value,
            MIP => {
                let mut mask = irq::SSIP | irq::SEIP;
                if self.csr.menvcfg & MENVCFG_STCE == 0 {
                    mask |= irq::STIP;
                }
                self.csr.mip_sw = (self.csr.mip_sw & !mask) | (value & mask);
                self.request_service();
            }
            PMPCFG0..=PMPCFG15 | PMPADDR0..=PMPADDR63 => {}
            MCYCLE => self.csr.cycle_delta = value.wrapping_sub(self.retired()),
            // The block adds its instructions, this one included, when it ends; the next
            // instruction must read exactly `value`.
            MINSTRET => {
                let delta = self.cycles().wrapping_sub(self.retired());
                let instret = value.wrapping_sub(self.insn_in_block + 1);
                // The statistics keep counting what really retired.
                self.instret_offset =
                    self.instret_offset.wrapping_add(self.instret.wrapping_sub(instret));
                self.published_at = instret;
                self.instret = instret;
                self.csr.cycle_delta = delta;
                // The service deadline counts in instret: set it anew from the new count.
                self.request_service();
            }
            MHPMCOUNTER3..=MHPMCOUNTER31 => {}
            _ => return Err(Illegal),
        }
        Ok(())
    }

    /// Instructions retired before the executing one (blocks add their count at the end).
    fn retired(&self) -> u64 {
        self.instret.wrapping_add(self.insn_in_block)
    }

    fn cycles(&self) -> u64 {
        self.retired().wrapping_add(self.csr.cycle_delta)
    }

    fn sstatus(&self) -> u64 {
        self.mstatus_with_sd() & status::S_VISIBLE
    }

    fn mstatus_with_sd(&self) -> u64 {
        let st = self.csr.mstatus;
        if st & status::FS == status::FS_DIRTY {
            st | status::SD
        } else {
            st & !status::SD
        }
    }

    /// Sstc §2: S-mode may touch stimecmp only when menvcfg.STCE and mcounteren.TM are set.
    fn stimecmp_accessible(&self) -> bool {
        match self.prv {
            Privilege::Machine => true,
            _ => self.csr.menvcfg & MENVCFG_STCE != 0 && self.csr.mcounteren & 2 != 0,
        }
    }

    pub(crate) fn write_mstatus(&mut self, value: u64) {
        let old = self.csr.mstatus;
        let mut new = (old & !status::M_WRITABLE) | (value & status::M_WRITABLE);
        // MPP is WARL: the reserved encoding 2 is not kept.
        if (new & status::MPP) >> status::MPP_SHIFT == 2 {
            new = (new & !status::MPP) | (old & status::MPP);
        }
        new |= status::UXL_SXL_64;
        self.csr.mstatus = new & !status::SD;
        if (old ^ new) & status::MXR != 0 {
            // MXR changes what every cached translation allows. The jump cache goes too: it
            // relies on the TLB remembering where superpages were.
            self.tlb.flush_all();
            self.flush_jump_cache = true;
            self.request_service();
        }
        if new & !old & (status::MIE | status::SIE) != 0 {
            // An interrupt already pending may now be taken.
            self.request_service();
        }
        self.update_data_mode();
    }
}

/// xtvec MODE is WARL: direct (0) or vectored (1); the base is 4-byte aligned (§3.1.7).
fn legal_tvec(value: u64) -> u64 {
    let mode = value & 3;
    (value & !3) | if mode == 1 { 1 } else { 0 }
}
