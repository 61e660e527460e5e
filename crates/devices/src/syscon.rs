//! The SiFive "test" device (`sifive,test1`, `sifive,test0`, `syscon`) at 0x10_0000 on QEMU
//! `virt`: one 32-bit register at offset 0 through which the guest powers off, resets, or
//! exits with a failure code. Linux reaches it through the `syscon-poweroff` (value 0x5555)
//! and `syscon-reboot` (value 0x7777) nodes of the device tree; bare-metal tests write
//! `0x3333 | code << 16` to fail with `code`.

use std::sync::Arc;

use crate::{MmioDevice, PowerControl, PowerRequest};

/// Size of the device's MMIO window.
pub const SYSCON_SIZE: u64 = 0x1000;
/// Low 16 bits of the register value for each request.
pub const FINISHER_FAIL: u32 = 0x3333;
pub const FINISHER_PASS: u32 = 0x5555;
pub const FINISHER_RESET: u32 = 0x7777;

/// The syscon's state: none. Its register is write-only and every write acts at once; the
/// struct exists so that a snapshot lists every device the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SysconState {}

/// The power/reset device; forwards requests to the machine's [`PowerControl`].
pub struct Syscon {
    power: Arc<dyn PowerControl>,
}

impl Syscon {
    pub fn new(power: Arc<dyn PowerControl>) -> Self {
        Syscon { power }
    }

    pub fn save_state(&self) -> SysconState {
        SysconState {}
    }

    pub fn restore_state(&self, _state: &SysconState) {}

    /// The request a register value encodes, if any.
    pub fn decode(value: u32) -> Option<PowerRequest> {
        match value & 0xffff {
            FINISHER_PASS => Some(PowerRequest::PowerOff),
            FINISHER_RESET => Some(PowerRequest::Reset),
            FINISHER_FAIL => Some(PowerRequest::Fail((value >> 16) as u16)),
            _ => None,
        }
    }
}

impl MmioDevice for Syscon {
    fn read(&self, _offset: u64, _size: u8) -> u64 {
        0
    }

    /// A 32-bit write to offset 0 (a 64-bit one counts by its low word, for `sd`); anything
    /// else, and unknown values, are ignored.
    fn write(&self, offset: u64, size: u8, value: u64) {
        if offset != 0 || size < 4 {
            return;
        }
        if let Some(req) = Self::decode(value as u32) {
            self.power.request(req);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MockPower;

    #[test]
    fn finisher_codes() {
        let p = Arc::new(MockPower::default());
        let s = Syscon::new(p.clone());
        s.write(0, 4, 0x5555);
        s.write(0, 4, 0x7777);
        s.write(0, 4, 0x0002_3333);
        s.write(0, 4, 0xffff_3333);
        s.write(0, 8, 0xdead_0000_0000_5555);
        assert_eq!(
            *p.0.lock().unwrap(),
            vec![
                PowerRequest::PowerOff,
                PowerRequest::Reset,
                PowerRequest::Fail(2),
                PowerRequest::Fail(0xffff),
                PowerRequest::PowerOff,
            ]
        );
    }

    #[test]
    fn other_values_offsets_and_sizes_are_ignored() {
        let p = Arc::new(MockPower::default());
        let s = Syscon::new(p.clone());
        s.write(0, 4, 0x1234);
        s.write(0, 4, 0x5556);
        s.write(4, 4, 0x5555);
        s.write(0, 1, 0x55);
        s.write(0, 2, 0x5555);
        assert!(p.0.lock().unwrap().is_empty());
        assert_eq!(s.read(0, 4), 0);
    }
}
