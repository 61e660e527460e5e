//! The socket device (virtio 1.2 §5.10): stream sockets between the guest and host programs,
//! which reach the guest through a Unix socket with Firecracker's conventions (muxer.rs).
//!
//! - packet.rs: the packet header and copying packets in and out of descriptor chains
//! - connection.rs: one connection's state and credit-based flow control
//! - muxer.rs: the Unix sockets, routing packets to connections, filling rx buffers
//! - sys.rs: the two socket calls std lacks

mod connection;
mod muxer;
mod packet;
mod sys;

use std::sync::Arc;

use keel_memory::GuestRam;
use virtio_queue::Queue;
use vmm_sys_util::epoll::EventSet;

use super::config::VsockConfig;
use super::metrics::{Counter, DeviceMetrics};
use super::{device_type, features, ActivateError, Activation, Interrupt, VirtioDevice};
use crate::DeviceError;
use muxer::Muxer;

/// Queue size of each of the three queues (rx, tx, event).
const QUEUE_SIZE: u16 = 256;
const RX_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 1;

/// Builds the device for a vsock section: the Unix socket is listened on from here on, so a
/// bad path is reported before the VM starts.
pub fn create(config: &VsockConfig) -> Result<Box<dyn VirtioDevice>, DeviceError> {
    Ok(Box::new(Vsock::new(config)?))
}

struct Active {
    rx: Queue,
    tx: Queue,
    /// The event queue (§5.10.6, "Device Events"): keel never needs it (its only event, a transport reset,
    /// follows a migration), but the driver sets it up.
    _event: Queue,
    ram: Arc<GuestRam>,
    interrupt: Arc<Interrupt>,
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
}

impl Vsock {
    pub fn new(config: &VsockConfig) -> Result<Vsock, DeviceError> {
        Ok(Vsock {
            guest_cid: config.guest_cid,
            muxer: Muxer::new(config.guest_cid, &config.uds_path)?,
            active: None,
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
        self.active = Some(Active { rx, tx, _event: event, ram: a.ram, interrupt: a.interrupt });
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        match index {
            // New rx buffers: send what waited for them.
            RX_QUEUE => self.process(false),
            TX_QUEUE => self.process(true),
            // The event queue only gives us buffers we have no use for.
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.muxer.reset();
        self.active = None;
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
}

#[cfg(test)]
mod tests;
