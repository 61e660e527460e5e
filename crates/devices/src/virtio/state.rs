//! The saved state of a virtio device on its virtio-mmio transport, for snapshots and live
//! migration: plain serde data (no host file descriptors), stored with postcard by the
//! snapshot crate. [`mmio::MmioTransport::save_state`](super::mmio::MmioTransport::save_state)
//! makes it, [`restore_state`](super::mmio::MmioTransport::restore_state) puts a freshly built
//! transport of the same device and configuration back into it.
//!
//! What each device keeps, and what it deliberately does not:
//!
//! - block: nothing but a check of the disk's shape; the image is reopened from the VM file.
//!   Saving first flushes the image (qcow2 metadata updates are held in memory until then),
//!   so the file matches the state. Rate limiters start full.
//! - net: a frame read from the TAP that the guest had no buffer for yet. Rate limiters start
//!   full; the TAP is reopened from the VM file.
//! - entropy: nothing.
//! - balloon: the target and the driver's `actual`, the statistics buffer the device holds
//!   (§5.5.6.3) and the last statistics. Free page reporting holds no buffers.
//! - vsock: host connections cannot be carried over. The restored device has none, and once
//!   re-activated it sends the driver VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (§5.10.6.7), after
//!   which Linux resets its connected sockets and re-reads `guest_cid`. The restored device
//!   uses the CID of *its own* configuration (the VM file it was built from), not the saved
//!   one, so a clone restored with a new CID takes it up at that point.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::device_type;

/// A virtio-mmio transport and its device (see [`super::mmio::MmioTransport::save_state`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MmioState {
    /// The virtio device ID (`device_type::*`): a state only fits a device of its kind.
    pub device_type: u32,
    /// The device status register (§2.1).
    pub status: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    /// Features the driver wrote (accepted, once FEATURES_OK is set).
    pub driver_features: u64,
    pub queue_sel: u32,
    pub config_generation: u32,
    /// InterruptStatus (§4.2.2): notifications the driver has not acknowledged yet. The
    /// interrupt line is high when it is not zero.
    pub interrupt_status: u32,
    /// The device was started (DRIVER_OK) and runs: restoring starts it again.
    pub activated: bool,
    /// One per queue of the device, in index order.
    pub queues: Vec<VirtqueueState>,
    /// What the device itself keeps.
    pub device: DeviceState,
}

/// One split virtqueue (§2.7): the driver's setup and the device's ring positions.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtqueueState {
    /// QueueNumMax: fixed by the device (checked on restore).
    pub max_size: u16,
    /// QueueNum, chosen by the driver.
    pub size: u16,
    pub ready: bool,
    /// Guest physical addresses of the descriptor table and the driver (available) and
    /// device (used) areas.
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    /// The next available-ring entry the device will take.
    pub next_avail: u16,
    /// The used index the device will publish next.
    pub next_used: u16,
    /// VIRTIO_F_RING_EVENT_IDX is in use on this queue (§2.7.10).
    pub event_idx: bool,
}

/// A device's own state beyond its configuration, one variant per kind of device.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum DeviceState {
    /// Nothing beyond the configuration (entropy, and devices without their own state).
    Stateless,
    Block(BlockState),
    Net(NetState),
    Balloon(BalloonState),
    Vsock(VsockState),
}

/// virtio-blk: only what the restored device checks its disk against.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BlockState {
    /// Capacity in 512-byte sectors: the guest's view of the disk must not change.
    pub sectors: u64,
    pub read_only: bool,
}

/// virtio-net.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct NetState {
    /// A frame (virtio-net header first, fitted to the accepted features) read from the TAP
    /// that the guest had no receive buffer for yet. The restored device delivers it first.
    pub rx_pending: Option<Vec<u8>>,
}

/// virtio-balloon (§5.5).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BalloonState {
    /// num_pages: the host's target, in 4 KiB pages (the VMM may have changed it since boot).
    pub target_pages: u32,
    /// actual: what the driver said it holds, in 4 KiB pages.
    pub actual_pages: u32,
    /// The head of the statistics buffer the device holds back, to give it back when fresh
    /// statistics are due (§5.5.6.3). The driver won't send statistics without it.
    pub stats_buffer: Option<u16>,
    /// The statistics the driver last sent.
    pub stats: Option<SavedBalloonStats>,
}

/// Balloon statistics as saved: their age instead of an instant.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedBalloonStats {
    /// (tag, value) pairs as the driver sent them.
    pub entries: Vec<(u16, u64)>,
    /// How old they were when saved, in milliseconds.
    pub age_ms: u64,
}

/// virtio-vsock: no connections (they are host sockets; see the module documentation).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VsockState {
    /// The guest's CID when saved. For information only: the restored device keeps the CID
    /// of its own configuration and tells the driver to re-read it.
    pub guest_cid: u64,
    /// The device was running, so the driver may have had connections: the restored device
    /// sends it a transport reset once it runs again.
    pub active: bool,
}

/// Why a device's state could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The disk image could not be made to match the saved state (a failing or full disk).
    #[error("{device}: the disk image {} could not be flushed for the snapshot: {source}", path.display())]
    Flush {
        device: &'static str,
        path: PathBuf,
        #[source]
        source: keel_block::BlockError,
    },
}

/// The error for a device state restored into another kind of device.
pub(crate) fn other_kind(device_type: u32) -> crate::StateError {
    crate::StateError::Invalid {
        device: device_name(device_type),
        what: "the saved device state is for another kind of device".into(),
    }
}

/// The name a device's state errors use.
pub fn device_name(device_type: u32) -> &'static str {
    match device_type {
        device_type::NET => "virtio-net",
        device_type::BLOCK => "virtio-blk",
        device_type::ENTROPY => "virtio-rng",
        device_type::BALLOON => "virtio-balloon",
        device_type::VSOCK => "virtio-vsock",
        _ => "a virtio device",
    }
}
