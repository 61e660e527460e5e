//! Paravirtual devices on virtio-mmio (virtio 1.2, OASIS standard).
//!
//! A device implements [`VirtioDevice`]: its type, features, configuration space and what it
//! does with its queues. The [`mmio::MmioTransport`] does the rest the same way for every
//! device: the register interface, feature negotiation, queue setup, the device status state
//! machine and interrupts. The transport also saves and restores itself and its device for
//! snapshots (see [`state`]).

pub mod balloon;
pub mod blk;
pub mod config;
pub mod metrics;
pub mod mmio;
pub mod net;
pub mod rng;
pub mod state;
pub mod vsock;

use std::sync::{Arc, Mutex, Weak};

use keel_memory::GuestRam;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};

use crate::event::{EventHandler, EventLoop};
use crate::{IrqLine, StateError};
use metrics::{Counter, DeviceMetrics};
use state::{DeviceState, SaveError};

/// Device IDs (virtio 1.2 §5, table "Device Types").
pub mod device_type {
    pub const NET: u32 = 1;
    pub const BLOCK: u32 = 2;
    pub const ENTROPY: u32 = 4;
    pub const BALLOON: u32 = 5;
    pub const VSOCK: u32 = 19;
}

/// Feature bits every keel device offers (virtio 1.2 §6).
pub mod features {
    /// The device follows virtio 1.x (not the legacy interface).
    pub const VERSION_1: u64 = 1 << 32;
    /// The driver may put descriptor tables in guest memory indirectly (§2.7.5.3).
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    /// Used/avail event indexes suppress needless notifications (§2.7.10).
    pub const RING_EVENT_IDX: u64 = 1 << 29;
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("the driver did not set up queue {0} correctly")]
    BadQueue(usize),
    #[error("{0}")]
    Backend(String),
}

/// What a device gets when the driver has set it up (status DRIVER_OK).
pub struct Activation {
    /// One per queue the device has, in order.
    pub queues: Vec<Queue>,
    /// Features the driver accepted.
    pub features: u64,
    pub ram: Arc<GuestRam>,
    pub interrupt: Arc<Interrupt>,
    pub events: Arc<EventLoop>,
    /// The transport, to register for events: they come back through
    /// [`VirtioDevice::handle_event`] with the device lock held.
    pub handler: Weak<dyn EventHandler>,
}

/// One virtio device's own behaviour.
pub trait VirtioDevice: Send {
    fn device_type(&self) -> u32;
    /// Maximum size of each of the device's queues (the number of queues is its length).
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits the device offers, [`features::VERSION_1`] included.
    fn device_features(&self) -> u64;
    /// Reads the device configuration space (the transport checks bounds).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver finished initialisation (DRIVER_OK): take the queues and start.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// The driver notified queue `index` (QueueNotify).
    fn queue_notify(&mut self, index: u16);
    /// The driver reset the device (status 0): drop the queues and stop using guest memory.
    fn reset(&mut self);
    /// An event the device registered for with the event loop.
    fn handle_event(&mut self, _token: u64, _events: vmm_sys_util::epoll::EventSet) {}
    /// The concrete device, for controls the VMM has on one kind of device (the balloon's
    /// target and statistics) through [`mmio::MmioTransport::with_device`]. Devices without
    /// such controls keep the default.
    fn as_any(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
    /// The device's own counters (bytes, requests, errors), shared with whoever reads the
    /// metrics. The transport asks once, when it is built.
    fn metrics(&self) -> Option<Arc<dyn DeviceMetrics>> {
        None
    }

    /// For a snapshot: the queues the device took at activation, by queue index (`None` for
    /// one it does not hold), with their ring positions as they are now. Empty while it is not
    /// active. The transport saves the others as they were handed over.
    fn active_queues(&self) -> Vec<Option<&Queue>>;

    /// Before a snapshot is taken: write back what the device keeps in host memory that the
    /// files it works on must have (a qcow2 image's metadata), so that the files match the
    /// saved state. The I/O thread should be paused ([`EventLoop::pause`]).
    fn sync(&mut self) -> Result<(), SaveError> {
        Ok(())
    }

    /// The device's own state beyond its configuration. Stateless devices keep the default.
    fn save_device_state(&self) -> DeviceState {
        DeviceState::Stateless
    }

    /// Takes back what [`VirtioDevice::save_device_state`] gave, on a device just built from
    /// the same configuration and not active; [`VirtioDevice::activate`] follows when the
    /// saved device was running. A state that does not fit is an error and changes nothing.
    fn restore_device_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        match state {
            DeviceState::Stateless => Ok(()),
            _ => Err(state::other_kind(self.device_type())),
        }
    }
}

/// A device's interrupt: the InterruptStatus register (virtio 1.2 §4.2.2) and the level line
/// it drives into the PLIC.
pub struct Interrupt {
    status: Mutex<u32>,
    line: Arc<dyn IrqLine>,
    /// Interrupts raised (used-buffer and configuration-change notifications).
    raised: Counter,
}

/// InterruptStatus bits.
pub const INT_USED_BUFFER: u32 = 1;
pub const INT_CONFIG_CHANGE: u32 = 2;

impl Interrupt {
    pub fn new(line: Arc<dyn IrqLine>) -> Interrupt {
        Interrupt { status: Mutex::new(0), line, raised: Counter::default() }
    }

    /// The device put buffers in a used ring.
    pub fn signal_used(&self) {
        self.raise(INT_USED_BUFFER);
    }

    /// The device changed its configuration space.
    pub fn signal_config(&self) {
        self.raise(INT_CONFIG_CHANGE);
    }

    fn raise(&self, bits: u32) {
        let mut s = crate::lock(&self.status);
        *s |= bits;
        self.line.set_level(true);
        self.raised.inc();
    }

    /// How many times the device interrupted the driver.
    pub fn raised(&self) -> u64 {
        self.raised.get()
    }

    pub fn status(&self) -> u32 {
        *crate::lock(&self.status)
    }

    /// InterruptACK: the driver handled `bits`.
    pub fn ack(&self, bits: u32) {
        let mut s = crate::lock(&self.status);
        *s &= !bits;
        if *s == 0 {
            self.line.set_level(false);
        }
    }

    /// Device reset: nothing pending any more.
    pub fn clear(&self) {
        self.ack(u32::MAX);
    }

    /// Restore: InterruptStatus as saved, and the line at the level it drives.
    pub(crate) fn restore(&self, status: u32) {
        let mut s = crate::lock(&self.status);
        *s = status;
        self.line.set_level(status != 0);
    }
}

/// Serves every buffer the driver has made available on `queue`: `serve` handles one chain and
/// returns the number of bytes it wrote into it, or `None` to stop (and leave the chain for
/// later, e.g. when the host side can't take more). Follows the notification protocol of
/// virtio 1.2 §2.7.10 (with or without `VIRTIO_F_RING_EVENT_IDX`): notifications are off while
/// draining and back on (with the avail event published) before stopping, and the ring is
/// checked once more so a buffer made available meanwhile isn't missed. Returns true when the
/// driver must be interrupted.
pub fn drain_queue<F>(queue: &mut Queue, ram: &GuestRam, mut serve: F) -> bool
where
    F: FnMut(DescriptorChain<&keel_memory::GuestMemoryMmap>) -> Option<u32>,
{
    let mem = ram.memory();
    let mut used_any = false;
    loop {
        if queue.disable_notification(mem).is_err() {
            break;
        }
        loop {
            let chain = match queue.iter(mem) {
                Ok(mut it) => it.next(),
                // An available index more than a ring ahead (§2.7.6) stays broken: checking
                // again (below) would spin forever on it.
                Err(_) => return finish(queue, mem, used_any),
            };
            let Some(chain) = chain else { break };
            let head = chain.head_index();
            match serve(chain) {
                Some(len) => {
                    if queue.add_used(mem, head, len).is_err() {
                        return used_any;
                    }
                    used_any = true;
                }
                None => {
                    // Put the chain back: the device will come back to it.
                    queue.go_to_previous_position();
                    return finish(queue, mem, used_any);
                }
            }
        }
        match queue.enable_notification(mem) {
            Ok(true) => continue,
            _ => break,
        }
    }
    finish(queue, mem, used_any)
}

fn finish(queue: &mut Queue, mem: &keel_memory::GuestMemoryMmap, used_any: bool) -> bool {
    let _ = queue.enable_notification(mem);
    used_any && queue.needs_notification(mem).unwrap_or(true)
}
