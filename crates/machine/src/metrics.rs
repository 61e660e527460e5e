//! What a machine's vCPUs and devices did, readable from any thread while the VM runs (the
//! VMM's metrics): the harts publish their statistics through their signals, and the virtio
//! devices count into atomics their transports share.

use keel_cpu::HartStats;
use keel_devices::virtio::metrics::device_names;

use crate::board::Machine;

/// One virtio device's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCounters {
    /// `vda`, `vdb`, ... for disks in configuration order, `net0`, ..., `rng`, `vsock`,
    /// `balloon` (see [`device_names`]).
    pub name: String,
    /// (counter, value) in the device's order: its own counters, then `interrupts` and
    /// `queue_notifications` from the transport.
    pub counters: Vec<(&'static str, u64)>,
}

impl Machine {
    /// Each vCPU's statistics, by hart id, as the hart last published them: a few
    /// milliseconds old at most while it runs, and final once its thread's `run` returned.
    pub fn vcpu_stats(&self) -> Vec<HartStats> {
        self.hart_signals().iter().map(|s| s.stats()).collect()
    }

    /// Every virtio device's counters, in slot order. Takes no device lock, so a device busy
    /// with a long request doesn't hold the caller up.
    pub fn device_counters(&self) -> Vec<DeviceCounters> {
        let names = device_names(self.virtio.iter().map(|t| t.device_type()));
        names
            .into_iter()
            .zip(&self.virtio)
            .map(|(name, t)| DeviceCounters { name, counters: t.metrics() })
            .collect()
    }
}
