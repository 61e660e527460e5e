//! Asking a Linux guest to power off the way a person at its serial console would: the magic
//! SysRq keys (Documentation/admin-guide/sysrq.rst) s (sync), u (remount every filesystem
//! read-only) and o (power off).
//!
//! On a serial console, SysRq is a BREAK followed within 5 seconds by the key
//! (CONFIG_MAGIC_SYSRQ_SERIAL; `uart_handle_break` and `uart_prepare_sysrq_char` in
//! include/linux/serial_core.h), and it only works on the port that is the kernel's console.
//! Debian's kernels enable s, u and o by default (CONFIG_MAGIC_SYSRQ_DEFAULT_ENABLE=0x1b6).
//! The kernel answers each key with a "sysrq: <action>" header, forced onto the console
//! whatever the log level; 'o' ends in `kernel_power_off`, which reaches keel through SBI SRST.
//!
//! The driver keeps one pending key per receive interrupt, so each key must reach the guest in
//! an interrupt of its own: the next key is sent only once the guest's header for the previous
//! one has been printed (or after [`KEY_TIMEOUT`]). 's' and 'u' only queue work in the guest,
//! and 'o' does not wait for it, so before 'o' the guest gets [`REMOUNT_GRACE`] to finish the
//! read-only remount (less if it prints "Emergency Remount complete", which it only does on a
//! console that shows warnings, i.e. without `quiet`).

use std::time::Duration;

use keel_devices::Uart;

use crate::console::Console;

/// How long to wait for the guest's answer to one key.
pub const KEY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the guest gets to remount its filesystems read-only before the power-off key.
pub const REMOUNT_GRACE: Duration = Duration::from_secs(2);

/// The keys, in order.
pub const POWER_OFF_KEYS: &[u8] = b"suo";

/// Types the power-off keys into the guest's console (on `uart`, whose output `console`
/// watches). Returns when the last key is sent, or early if the console closes (the VM ended).
pub fn power_off(uart: &Uart, console: &Console) {
    for (i, &key) in POWER_OFF_KEYS.iter().enumerate() {
        let seen = console.marks();
        if seen.closed {
            return;
        }
        uart.send_break_then(&[key]);
        if i + 1 == POWER_OFF_KEYS.len() {
            return;
        }
        console.wait_marks(KEY_TIMEOUT, |m| m.sysrq > seen.sysrq);
        if key == b'u' {
            console.wait_marks(REMOUNT_GRACE, |m| m.remounts > seen.remounts);
        }
    }
}
