//! The socket device (virtio 1.2 §5.10): stream sockets between the guest and host programs,
//! which reach the guest through a Unix socket with Firecracker's conventions (muxer.rs).
//!
//! - packet.rs: the packet header and copying packets in and out of descriptor chains
//! - connection.rs: one connection's state and credit-based flow control
//! - muxer.rs: the Unix sockets, routing packets to connections, filling rx buffers
//! - sys.rs: the two socket calls std lacks
//!
//! Snapshots: host connections are Unix sockets and can't be saved. A restored device starts
//! without any and, once running, sends the driver VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the
//! event queue (§5.10.6.7), as Firecracker does; Linux then resets its connected sockets and
//! re-reads `guest_cid` from the configuration space. The restored device's CID is the one
//! of its own configuration, so a clone restored from a VM file with a new CID gets it then.

mod connection;
mod muxer;
mod packet;
mod sys;

use std::sync::Arc;

use keel_memory::GuestRam;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;

use super::config::VsockConfig;
use super::metrics::{Counter, DeviceMetrics};
use super::state::{other_kind, DeviceState, VsockState};
use super::{device_type, features, ActivateError, Activation, Interrupt, VirtioDevice};
use crate::{DeviceError, StateError};
use muxer::Muxer;

/// Queue size of each of the three queues (rx, tx, event).
const QUEUE_SIZE: u16 = 256;
const RX_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 1;
const EVENT_QUEUE: u16 = 2;
/// `struct virtio_vsock_event { le32 id; }` ids (§5.10.6.7).
const EVENT_TRANSPORT_RESET: u32 = 0;

/// Builds the device for a vsock section: the Unix socket is listened on from here on, so a
/// bad path is reported before the VM starts.
pub fn create(config: &VsockConfig) -> Result<Box<dyn VirtioDevice>, DeviceError> {
    Ok(Box::new(Vsock::new(config)?))
}

struct Active {
    rx: Queue,
    tx: Queue,
    /// The event queue (§5.10.6.7, "Device Events"): only used for the transport reset that
    /// follows a restore.
    event: Queue,
    ram: Arc<GuestRam>,
    interrupt: Arc<Interrupt>,
    /// A transport reset waits for an event buffer from the driver.
    reset_pending: bool,
}

impl Active {
    /// Puts VIRTIO_VSOCK_EVENT_TRANSPORT_RESET in the driver's next event buffer. False when
    /// there is none yet: the driver's next notification of the event queue brings the
    /// device back (with EVENT_IDX, `avail_event` asks for it, §2.7.10).
    fn send_transport_reset(&mut self) -> bool {
        let mem = self.ram.memory();
        let mut looked_again = false;
        loop {
            let Some(chain) = self.event.pop_descriptor_chain(mem) else {
                // Checked once more after asking to be notified, so a buffer added meanwhile
                // isn't missed.
                if looked_again || !matches!(self.event.enable_notification(mem), Ok(true)) {
                    return false;
                }
                looked_again = true;
                continue;
            };
            let head = chain.head_index();
            let id = EVENT_TRANSPORT_RESET.to_le_bytes();
            let sent = chain.writable().next().is_some_and(|d| {
                d.len() as usize >= id.len() && self.ram.write_slice(d.addr().0, &id).is_ok()
            });
            // A buffer that can't take the event goes back empty; the next one is tried.
            let used = self.event.add_used(mem, head, if sent { id.len() as u32 } else { 0 });
            if used.is_ok() && self.event.needs_notification(mem).unwrap_or(true) {
                self.interrupt.signal_used();
            }
            if sent || used.is_err() {
                return sent;
            }
        }
    }
}

/// Packets and payload bytes each way (rx: to the guest, tx: from it), and connections opened
/// (by either side).
#[derive(Debug, Default)]
pub struct VsockMetrics {
    pub rx_bytes: Counter,
    pub rx_packets: Counter,
    pub tx_bytes: Counter,
    pub tx_packets: Counter,
    pub connections: Counter,
}

impl DeviceMetrics for VsockMetrics {
    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("rx_bytes", self.rx_bytes.get()),
            ("rx_packets", self.rx_packets.get()),
            ("tx_bytes", self.tx_bytes.get()),
            ("tx_packets", self.tx_packets.get()),
            ("connections", self.connections.get()),
        ]
    }
}

pub struct Vsock {
    guest_cid: u64,
    muxer: Muxer,
    active: Option<Active>,
    /// Restored from a running device: send a transport reset once activated.
    reset_on_activate: bool,
}

impl Vsock {
    pub fn new(config: &VsockConfig) -> Result<Vsock, DeviceError> {
        Ok(Vsock {
            guest_cid: config.guest_cid,
            muxer: Muxer::new(config.guest_cid, &config.uds_path)?,
            active: None,
            reset_on_activate: false,
        })
    }

    /// Moves packets: the tx queue if `tx` (or if it was left waiting for room), then as
    /// many rx buffers as there are packets for.
    fn process(&mut self, tx: bool) {
        let Some(a) = self.active.as_mut() else { return };
        let mut notify = false;
        if tx || self.muxer.tx_stalled() {
            notify |= self.muxer.handle_tx(&mut a.tx, &a.ram);
        }
        while self.muxer.has_rx_work() {
            notify |= self.muxer.fill_rx(&mut a.rx, &a.ram);
            // Replies that went out make room for the tx queue to go on.
            if !(self.muxer.tx_stalled() && self.muxer.replies_have_room()) {
                break;
            }
            notify |= self.muxer.handle_tx(&mut a.tx, &a.ram);
        }
        if notify {
            a.interrupt.signal_used();
        }
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_type::VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 3]
    }

    fn device_features(&self) -> u64 {
        // Stream sockets only: with no VIRTIO_VSOCK_F_* bit offered, streams are implied
        // (§5.10.3).
        features::VERSION_1 | features::RING_EVENT_IDX | features::RING_INDIRECT_DESC
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_vsock_config { le64 guest_cid; } (§5.10.4)
        let config = self.guest_cid.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset.checked_add(i as u64).and_then(|a| usize::try_from(a).ok());
            *b = at.and_then(|a| config.get(a)).copied().unwrap_or(0);
        }
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let mut queues = a.queues.into_iter();
        let (Some(rx), Some(tx), Some(event)) = (queues.next(), queues.next(), queues.next())
        else {
            return Err(ActivateError::BadQueue(0));
        };
        self.muxer.activate(a.events, a.handler).map_err(|e| {
            ActivateError::Backend(format!("vsock: cannot watch the Unix socket: {e}"))
        })?;
        let mut active = Active {
            rx,
            tx,
            event,
            ram: a.ram,
            interrupt: a.interrupt,
            reset_pending: std::mem::take(&mut self.reset_on_activate),
        };
        if active.reset_pending {
            active.reset_pending = !active.send_transport_reset();
        }
        self.active = Some(active);
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        match index {
            // New rx buffers: send what waited for them.
            RX_QUEUE => self.process(false),
            TX_QUEUE => self.process(true),
            // Event buffers: one may be awaited for a transport reset.
            EVENT_QUEUE => {
                if let Some(a) = self.active.as_mut().filter(|a| a.reset_pending) {
                    a.reset_pending = !a.send_transport_reset();
                }
            }
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.muxer.reset();
        self.active = None;
        self.reset_on_activate = false;
    }

    fn metrics(&self) -> Option<Arc<dyn DeviceMetrics>> {
        Some(self.muxer.metrics.clone())
    }

    fn handle_event(&mut self, token: u64, events: EventSet) {
        if self.active.is_some() {
            self.muxer.handle_event(token, events);
            self.process(false);
        }
    }

    fn active_queues(&self) -> Vec<Option<&Queue>> {
        self.active.iter().flat_map(|a| [Some(&a.rx), Some(&a.tx), Some(&a.event)]).collect()
    }

    fn save_device_state(&self) -> DeviceState {
        DeviceState::Vsock(VsockState { guest_cid: self.guest_cid, active: self.active.is_some() })
    }

    /// Keeps this device's own CID (from its configuration; a clone may have a new one) and
    /// no connections; a device that was running resets the driver's transport when it runs
    /// again (see the module documentation).
    fn restore_device_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let DeviceState::Vsock(saved) = state else { return Err(other_kind(device_type::VSOCK)) };
        self.reset_on_activate = saved.active;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
