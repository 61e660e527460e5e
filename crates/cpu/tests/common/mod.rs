//! What the CPU's integration tests share.

use keel_cpu::Bus;

/// A bus with no devices and a clock at zero: the programs under test touch only RAM.
pub struct NoDevices;

impl Bus for NoDevices {
    fn read(&self, _hart: usize, _addr: u64, _size: u8) -> Option<u64> {
        None
    }
    fn write(&self, _hart: usize, _addr: u64, _size: u8, _value: u64) -> bool {
        false
    }
    fn time(&self) -> u64 {
        0
    }
    fn timebase_hz(&self) -> u64 {
        10_000_000
    }
}
