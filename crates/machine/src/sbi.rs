//! keel's SBI implementation: the hypervisor answers the kernel's `ecall`s itself, so Linux
//! boots in S-mode without firmware (RISC-V SBI specification v2.0).

use std::io::Write;
use std::sync::{Arc, Mutex};

use keel_cpu::{Hart, HartSignals};
use keel_devices::PowerRequest;
use keel_memory::GuestRam;

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

/// HSM hart states (SBI spec §9, table 9.1).
const HSM_STARTED: u64 = 0;

/// Where the debug console (DBCN) writes: the same console the UART writes to.
pub type ConsoleSink = Arc<Mutex<Box<dyn Write + Send>>>;

pub struct Sbi {
    harts: Vec<Arc<HartSignals>>,
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
        power: Arc<PowerLatch>,
        console: ConsoleSink,
        ram: Arc<GuestRam>,
    ) -> Sbi {
        Sbi { harts, power, console, ram }
    }

    /// Answers the `ecall` the hart stopped at and moves it past the instruction.
    pub fn handle(&self, hart: &mut Hart) {
        let (eid, fid) = (hart.x(17), hart.x(16));
        let a = [hart.x(10), hart.x(11), hart.x(12), hart.x(13), hart.x(14), hart.x(15)];
        let Ret(error, value) = match eid {
            ext::BASE => self.base(fid, a[0]),
            ext::TIME if fid == 0 => {
                hart.set_supervisor_timer(a[0]);
                Ret::ok(0)
            }
            ext::IPI if fid == 0 => self.for_harts(a[0], a[1], |h| h.post_ipi()),
            ext::RFENCE => self.rfence(fid, a[0], a[1]),
            ext::HSM => self.hsm(fid, a[0]),
            ext::SRST if fid == 0 => self.reset(a[0], a[1]),
            ext::DBCN => self.debug_console(fid, a),
            _ => Ret::err(err::NOT_SUPPORTED),
        };
        hart.set_x(10, error as u64);
        // a1 is only written when the call returns a value (SBI spec §3.1); keel always sets it
        // as it is unchanged-or-value for every function it implements.
        hart.set_x(11, value);
        hart.finish_ecall();
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
    fn for_harts(&self, mask: u64, base: u64, f: impl Fn(&HartSignals)) -> Ret {
        if base == u64::MAX {
            self.harts.iter().for_each(|h| f(h));
            return Ret::ok(0);
        }
        for bit in 0..64 {
            if mask & (1 << bit) == 0 {
                continue;
            }
            let Some(h) = base.checked_add(bit).and_then(|id| self.harts.get(id as usize)) else {
                return Ret::err(err::INVALID_PARAM);
            };
            f(h);
        }
        Ret::ok(0)
    }

    fn rfence(&self, fid: u64, mask: u64, base: u64) -> Ret {
        match fid {
            // FENCE.I: each hart's decoded-code cache follows stores to code pages itself.
            0 => self.for_harts(mask, base, |_| {}),
            // SFENCE.VMA (with or without ASID): the harts drop all cached translations before
            // they run on; the caller too, since `finish_ecall` makes it look at its signals.
            1 | 2 => self.for_harts(mask, base, |h| h.post_fence()),
            // The HFENCE functions need the H extension, which keel's harts lack.
            _ => Ret::err(err::NOT_SUPPORTED),
        }
    }

    fn hsm(&self, fid: u64, hartid: u64) -> Ret {
        let known = (hartid as usize) < self.harts.len();
        match fid {
            // hart_start: every hart keel creates is already running.
            0 if known => Ret::err(err::ALREADY_AVAILABLE),
            2 if known => Ret::ok(HSM_STARTED),
            0 | 2 => Ret::err(err::INVALID_PARAM),
            // hart_stop and hart_suspend come with multiprocessor support.
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
