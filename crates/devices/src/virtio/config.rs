//! What the VM file says about each paravirtual device, as plain data: the VMM fills these in,
//! the machine builds devices from them.

use std::path::PathBuf;

/// A token bucket (Firecracker's rate-limiter model): `size` tokens, refilled completely
/// every `refill_time_ms`, plus a one-time burst available at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucketConfig {
    /// Tokens in a full bucket: bytes for bandwidth, requests for operations.
    pub size: u64,
    /// Extra tokens usable once, before the steady rate applies.
    #[serde(default)]
    pub one_time_burst: u64,
    /// Milliseconds to refill an empty bucket.
    pub refill_time_ms: u64,
}

/// Limits on a device's traffic; either bucket may be absent (unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub bandwidth: Option<TokenBucketConfig>,
    pub ops: Option<TokenBucketConfig>,
}

/// Disk image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

/// A virtio-blk disk backed by an image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    pub path: PathBuf,
    pub read_only: bool,
    /// `None`: detect from the file (qcow2 magic, else raw).
    pub format: Option<DiskFormat>,
    /// The disk's serial number (VIRTIO_BLK_T_GET_ID), at most 20 bytes.
    pub serial: Option<String>,
    pub rate_limit: RateLimitConfig,
}

/// A virtio-net interface attached to a host TAP device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Name of an existing TAP device on the host.
    pub tap: String,
    pub mac: [u8; 6],
    pub rate_limit: RateLimitConfig,
}

/// A virtio-vsock device whose host side is a Unix socket, with Firecracker's conventions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsockConfig {
    /// The guest's context ID (3 or more).
    pub guest_cid: u64,
    /// The Unix socket host programs connect to (`CONNECT <port>\n`); guest-initiated
    /// connections to port P go to `<uds_path>_P`.
    pub uds_path: PathBuf,
}

/// A virtio-balloon device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalloonConfig {
    /// How much memory (MiB) the balloon should hold at boot.
    pub target_mib: u64,
    /// Seconds between statistics updates; 0 disables the statistics queue.
    pub stats_interval_s: u64,
    /// Offer free page reporting (the guest hands back free pages on its own).
    pub free_page_reporting: bool,
}
