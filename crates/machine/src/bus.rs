//! The board's physical address space as the harts see it beyond RAM: device windows and the
//! HTIF words of bare-metal programs.

use std::io::Write;
use std::sync::{Arc, OnceLock};

use keel_cpu::Bus;
use keel_devices::{Clock, MmioDevice, TIMEBASE_HZ};
use keel_memory::GuestRam;

use crate::power::{GuestExit, PowerLatch};
use crate::sbi::ConsoleSink;

/// One device window.
pub struct Window {
    pub base: u64,
    pub size: u64,
    pub device: Arc<dyn MmioDevice>,
}

/// The Host-Target Interface words of a program built in the riscv-tests style: writes to
/// `tohost` are commands. keel understands the two every such program uses: exit (device 0,
/// value `(code << 1) | 1`) and console output (device 1, command 1, the byte in bits 7:0).
pub struct Htif {
    pub tohost: u64,
    pub fromhost: Option<u64>,
}

pub struct PlatformBus {
    ram: Arc<GuestRam>,
    clock: Arc<Clock>,
    windows: Vec<Window>,
    /// Set once, when a bare-metal program is loaded, before any hart runs.
    htif: OnceLock<Htif>,
    power: Arc<PowerLatch>,
    console: ConsoleSink,
}

impl PlatformBus {
    pub fn new(
        ram: Arc<GuestRam>,
        clock: Arc<Clock>,
        mut windows: Vec<Window>,
        power: Arc<PowerLatch>,
        console: ConsoleSink,
    ) -> PlatformBus {
        windows.sort_by_key(|w| w.base);
        PlatformBus { ram, clock, windows, htif: OnceLock::new(), power, console }
    }

    /// Makes the program's HTIF words the bus's; only the first call counts.
    pub fn set_htif(&self, htif: Htif) {
        let _ = self.htif.set(htif);
    }

    fn window(&self, addr: u64) -> Option<&Window> {
        let i = self.windows.partition_point(|w| w.base <= addr);
        let w = self.windows.get(i.checked_sub(1)?)?;
        (addr - w.base < w.size).then_some(w)
    }

    fn htif_page(&self) -> Option<u64> {
        self.htif.get().map(|h| h.tohost >> 12)
    }

    fn htif_command(&self, value: u64) {
        let device = value >> 56;
        let command = (value >> 48) & 0xff;
        match (device, command) {
            (0, _) if value & 1 == 1 => self.power.exit(match value >> 1 {
                0 => GuestExit::PowerOff,
                code => GuestExit::Exit(u32::try_from(code).unwrap_or(u32::MAX)),
            }),
            (1, 1) => {
                let mut out = self.console.lock().unwrap_or_else(|e| e.into_inner());
                let _ = out.write_all(&[value as u8]).and_then(|_| out.flush());
            }
            // Other HTIF devices (system calls through memory, block devices) are not part of
            // keel's board; the command is ignored, as a host without them would.
            _ => {}
        }
    }
}

fn ram_read(ram: &GuestRam, addr: u64, size: u8) -> Option<u64> {
    match size {
        1 => ram.load::<u8>(addr).map(u64::from),
        2 => ram.load::<u16>(addr).map(u64::from),
        4 => ram.load::<u32>(addr).map(u64::from),
        _ => ram.load::<u64>(addr),
    }
}

fn ram_write(ram: &GuestRam, addr: u64, size: u8, value: u64) -> bool {
    match size {
        1 => ram.store::<u8>(addr, value as u8),
        2 => ram.store::<u16>(addr, value as u16),
        4 => ram.store::<u32>(addr, value as u32),
        _ => ram.store::<u64>(addr, value),
    }
}

impl Bus for PlatformBus {
    fn read(&self, _hart: usize, addr: u64, size: u8) -> Option<u64> {
        if Some(addr >> 12) == self.htif_page() {
            return ram_read(&self.ram, addr, size);
        }
        let w = self.window(addr)?;
        Some(w.device.read(addr - w.base, size))
    }

    fn write(&self, _hart: usize, addr: u64, size: u8, value: u64) -> bool {
        if let Some(htif) = self.htif.get() {
            if addr >> 12 == htif.tohost >> 12 {
                if !ram_write(&self.ram, addr, size, value) {
                    return false;
                }
                if addr == htif.tohost && value != 0 {
                    self.htif_command(value);
                }
                return true;
            }
        }
        match self.window(addr) {
            Some(w) => {
                w.device.write(addr - w.base, size, value);
                true
            }
            None => false,
        }
    }

    fn time(&self) -> u64 {
        self.clock.now()
    }

    fn timebase_hz(&self) -> u64 {
        TIMEBASE_HZ
    }

    fn is_watched_page(&self, page: u64) -> bool {
        Some(page) == self.htif_page()
    }
}
