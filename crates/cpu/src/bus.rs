//! What a hart needs from the machine around it: the physical bus beyond RAM, and the clock.
//!
//! RAM itself is reached directly (see `keel-memory`); only device registers and the few RAM
//! pages a machine wants to watch go through this trait. It is the seam between the CPU and
//! the board: the CPU knows nothing about devices.

/// The physical address space outside plain RAM, plus the platform timer.
pub trait Bus: Send + Sync {
    /// Reads `size` (1, 2, 4 or 8) bytes at physical `addr`. `None` means nothing answers there:
    /// the hart raises an access fault, as hardware does for a hole in the memory map.
    fn read(&self, hart: usize, addr: u64, size: u8) -> Option<u64>;
    /// Writes `size` bytes at physical `addr`. `false` means nothing answers there.
    fn write(&self, hart: usize, addr: u64, size: u8, value: u64) -> bool;
    /// The platform's real-time counter (`mtime`, privileged spec §3.2.1), in timebase ticks.
    fn time(&self) -> u64;
    /// Ticks per second of [`Bus::time`].
    fn timebase_hz(&self) -> u64;
    /// True for RAM pages (by page number, `addr >> 12`) whose accesses must reach
    /// [`Bus::read`]/[`Bus::write`] anyway, such as a bare-metal program's HTIF `tohost` word.
    fn is_watched_page(&self, _page: u64) -> bool {
        false
    }
}
