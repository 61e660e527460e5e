//! keel's SBI implementation: the hypervisor answers the kernel's `ecall`s itself, so Linux
//! boots in S-mode without firmware (RISC-V SBI specification v2.0).

use std::io::Write;
use std::sync::{Arc, Mutex};

use keel_cpu::{Hart, HartSignals};
use keel_devices::PowerRequest;
use keel_memory::GuestRam;

use crate::hsm::{Hsm, StartError};
use crate::power::PowerLatch;

/// Extension IDs (SBI spec §3-§12).
pub mod ext {
    pub const BASE: u64 = 0x10;
    pub const TIME: u64 = 0x5449_4d45;
    pub const IPI: u64 = 0x0073_5049;
    pub const RFENCE: u64 = 0x5246_4e43;
    pub const HSM: u64 = 0x0048_534d;
    pub const SRST: u64 = 0x5352_5354;
    pub const DBCN: u64 = 0x4442_434e;
}

/// Standard error codes (SBI spec §3.2, table 1).
mod err {
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -2;
    pub const INVALID_PARAM: i64 = -3;
    pub const INVALID_ADDRESS: i64 = -5;
    pub const ALREADY_AVAILABLE: i64 = -6;
}

/// SBI v2.0: major 2 in bits 30:24, minor 0.
const SPEC_VERSION: u64 = 2 << 24;
/// Implementation ID: keel has no assigned number; it reports "keel" in ASCII.
pub const IMPL_ID: u64 = 0x6b65_656c;

/// Where the debug console (DBCN) writes: the same console the UART writes to.
pub type ConsoleSink = Arc<Mutex<Box<dyn Write + Send>>>;

/// What the vCPU must do after an SBI call, beyond resuming the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SbiAction {
    Continue,
    /// `hart_stop`: the calling hart is stopped until another hart starts it.
    StopHart,
    /// Remote fences are out: each (hart, ticket) must be answered before the caller goes on,
    /// as SBI RFENCE calls complete on the remote harts before they return.
    AwaitFences(Vec<(usize, u64)>),
}

pub struct Sbi {
    harts: Vec<Arc<HartSignals>>,
    hsm: Arc<Hsm>,
    power: Arc<PowerLatch>,
    console: ConsoleSink,
    ram: Arc<GuestRam>,
}

/// The result of one call: `a0` (error) and `a1` (value).
struct Ret(i64, u64);

impl Ret {
    fn ok(value: u64) -> Ret {
        Ret(err::SUCCESS, value)
    }
    fn err(code: i64) -> Ret {
        Ret(code, 0)
    }
}

impl Sbi {
    pub fn new(
        harts: Vec<Arc<HartSignals>>,
        hsm: Arc<Hsm>,
        power: Arc<PowerLatch>,
        console: ConsoleSink,
        ram: Arc<GuestRam>,
    ) -> Sbi {
        Sbi { harts, hsm, power, console, ram }
    }

    /// Every hart's signals, by hart id.
    pub fn harts(&self) -> &[Arc<HartSignals>] {
        &self.harts
    }

    pub fn hsm(&self) -> &Arc<Hsm> {
        &self.hsm
    }

    /// Answers the `ecall` the hart stopped at and moves it past the instruction; says what
    /// else the vCPU must do.
    pub fn handle(&self, hart: &mut Hart) -> SbiAction {
        let (eid, fid) = (hart.x(17), hart.x(16));
        let a = [hart.x(10), hart.x(11), hart.x(12), hart.x(13), hart.x(14), hart.x(15)];
        let mut action = SbiAction::Continue;
        let Ret(error, value) = match eid {
            ext::BASE => self.base(fid, a[0]),
            ext::TIME if fid == 0 => {
                hart.set_supervisor_timer(a[0]);
                Ret::ok(0)
            }
            ext::IPI if fid == 0 => self.for_harts(a[0], a[1], |_, h| h.post_ipi()),
            ext::RFENCE => self.rfence(fid, a[0], a[1], &mut action),
            ext::HSM => self.hart_state(hart.hartid() as usize, fid, a, &mut action),
            ext::SRST if fid == 0 => self.reset(a[0], a[1]),
            ext::DBCN => self.debug_console(fid, a),
            _ => Ret::err(err::NOT_SUPPORTED),
        };
        hart.set_x(10, error as u64);
        // a1 is only written when the call returns a value (SBI spec §3.1); keel always sets it
        // as it is unchanged-or-value for every function it implements.
        hart.set_x(11, value);
        hart.finish_ecall();
        action
    }

    fn supported(eid: u64) -> bool {
        matches!(
            eid,
            ext::BASE | ext::TIME | ext::IPI | ext::RFENCE | ext::HSM | ext::SRST | ext::DBCN
        )
    }

    fn base(&self, fid: u64, arg: u64) -> Ret {
        match fid {
            0 => Ret::ok(SPEC_VERSION),
            1 => Ret::ok(IMPL_ID),
            2 => Ret::ok(implementation_version()),
            3 => Ret::ok(Self::supported(arg) as u64),
            // mvendorid, marchid, mimpid: all zero on keel's harts.
            4..=6 => Ret::ok(0),
            _ => Ret::err(err::NOT_SUPPORTED),
        }
    }

    /// Applies `f` to the harts selected by `mask` and `base` (SBI spec §3.3: a base of -1
    /// selects every hart).
    fn for_harts(&self, mask: u64, base: u64, mut f: impl FnMut(usize, &HartSignals)) -> Ret {
        if base == u64::MAX {
            self.harts.iter().enumerate().for_each(|(id, h)| f(id, h));
            return Ret::ok(0);
        }
        // Check the whole mask before acting on any hart.
        let selected: Vec<usize> = (0..64)
            .filter(|bit| mask & (1 << bit) != 0)
            .map(|bit| base.checked_add(bit).map_or(usize::MAX, |id| id as usize))
            .collect();
        if selected.iter().any(|&id| id >= self.harts.len()) {
            return Ret::err(err::INVALID_PARAM);
        }
        selected.into_iter().for_each(|id| f(id, &self.harts[id]));
        Ret::ok(0)
    }

    fn rfence(&self, fid: u64, mask: u64, base: u64, action: &mut SbiAction) -> Ret {
        match fid {
            // FENCE.I and SFENCE.VMA (with or without ASID): each selected hart drops its cached
            // translations and any decoded code that was overwritten, and the call returns only
            // when all have done so (SBI spec §8: the fence is complete on return).
            0..=2 => {
                let mut tickets = Vec::new();
                let r = self.for_harts(mask, base, |id, h| tickets.push((id, h.post_fence())));
                *action = SbiAction::AwaitFences(tickets);
                r
            }
            // The HFENCE functions need the H extension, which keel's harts lack.
            _ => Ret::err(err::NOT_SUPPORTED),
        }
    }

    /// The HSM extension (SBI spec §9).
    fn hart_state(&self, caller: usize, fid: u64, a: [u64; 6], action: &mut SbiAction) -> Ret {
        match fid {
            // hart_start(hartid, start_addr, opaque)
            0 => {
                let (hart, addr, opaque) = (a[0] as usize, a[1], a[2]);
                if hart >= self.harts.len() {
                    return Ret::err(err::INVALID_PARAM);
                }
                if !self.ram.contains(addr, 4) {
                    return Ret::err(err::INVALID_ADDRESS);
                }
                match self.hsm.request_start(hart, addr, opaque) {
                    Ok(()) => {
                        self.harts[hart].kick();
                        Ret::ok(0)
                    }
                    Err(StartError::AlreadyRunning) => Ret::err(err::ALREADY_AVAILABLE),
                    Err(StartError::NoSuchHart) => Ret::err(err::INVALID_PARAM),
                }
            }
            // hart_stop(): does not return on success.
            1 => {
                self.hsm.stop(caller);
                *action = SbiAction::StopHart;
                Ret::ok(0)
            }
            // hart_get_status(hartid)
            2 => match self.hsm.status(a[0] as usize) {
                Some(status) => Ret::ok(status),
                None => Ret::err(err::INVALID_PARAM),
            },
            // hart_suspend: Linux only uses it with idle states in the device tree, which
            // keel's doesn't describe; WFI is how keel's harts idle.
            _ => Ret::err(err::NOT_SUPPORTED),
        }
    }

    fn reset(&self, kind: u64, _reason: u64) -> Ret {
        let req = match kind {
            0 => PowerRequest::PowerOff,
            1 | 2 => PowerRequest::Reset,
            _ => return Ret::err(err::INVALID_PARAM),
        };
        self.power.exit(req.into());
        // On success the call does not return; the hart stops at its next block boundary.
        Ret::ok(0)
    }

    fn debug_console(&self, fid: u64, a: [u64; 6]) -> Ret {
        match fid {
            0 => {
                let (len, addr) = (a[0], a[1] | a[2] << 32);
                let len = len.min(4096);
                let mut buf = vec![0u8; len as usize];
                if self.ram.read_slice(addr, &mut buf).is_err() {
                    return Ret::err(err::INVALID_ADDRESS);
                }
                self.write_console(&buf);
                Ret::ok(len)
            }
            // console_read: keel's input goes to the UART; report no bytes available.
            1 => Ret::ok(0),
            2 => {
                self.write_console(&[a[0] as u8]);
                Ret::ok(0)
            }
            _ => Ret::err(err::NOT_SUPPORTED),
        }
    }

    fn write_console(&self, bytes: &[u8]) {
        let mut out = self.console.lock().unwrap_or_else(|e| e.into_inner());
        if out.write_all(bytes).and_then(|_| out.flush()).is_err() {
            // The console is gone (closed stdout): the guest's output has nowhere to go,
            // which is not the guest's fault.
        }
    }
}

/// keel's version for `get_impl_version`, packed as (major << 16) | minor.
fn implementation_version() -> u64 {
    let major: u64 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0);
    let minor: u64 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0);
    (major << 16) | minor
}
