//! The block device (virtio 1.2 §5.2): a disk image (raw or qcow2, through `keel-block`) as
//! the guest's /dev/vdX.
//!
//! Requests are served synchronously, on the thread that notifies the queue (a vCPU), with
//! the image's blocking pread/pwrite: simple, and the guest's own CPU is the bottleneck on an
//! interpreter anyway. A request is completed (put in the used ring) only after its data
//! reached the image, so a killed keel never leaves the guest believing in a write that did
//! not happen; FLUSH makes everything written so far durable. When a rate limiter refuses a
//! request, the queue is left alone until the limiter's timer fires on the I/O thread.

mod request;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use keel_block::{BlockError, ImageFormat, OpenOptions};
use keel_memory::GuestRam;
use virtio_queue::Queue;
use vmm_sys_util::epoll::EventSet;

use super::config::{BlockConfig, DiskFormat};
use super::metrics::DeviceMetrics;
use super::state::{device_name, other_kind, BlockState, DeviceState, SaveError};
use super::{
    device_type, drain_queue, features, ActivateError, Activation, Interrupt, VirtioDevice,
};
use crate::event::EventLoop;
use crate::rate_limiter::RateLimiter;
use crate::{DeviceError, StateError};
use request::{Disk, Request, ID_LEN, SECTOR_SIZE};

/// Queue size; Linux keeps up to this many requests in flight.
const QUEUE_SIZE: u16 = 256;
/// Data segments per request: a chain holds at most QUEUE_SIZE descriptors (§2.7.5.3.1),
/// header and status included.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Largest discard / write-zeroes range (32 MiB): each runs synchronously on a vCPU thread,
/// so one request must not take long.
const MAX_RANGE_SECTORS: u32 = 65536;
/// Ranges per discard / write-zeroes request.
const MAX_RANGES: u32 = 32;
/// Discard granularity (4 KiB): smaller pieces can't free anything in the host file.
const DISCARD_ALIGNMENT_SECTORS: u32 = 8;

/// Block device feature bits (§5.2.3).
mod feature {
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// Offsets in `struct virtio_blk_config` (§5.2.4).
mod cfg {
    pub const CAPACITY: usize = 0;
    pub const SEG_MAX: usize = 12;
    pub const BLK_SIZE: usize = 20;
    pub const NUM_QUEUES: usize = 34;
    pub const MAX_DISCARD_SECTORS: usize = 36;
    pub const MAX_DISCARD_SEG: usize = 40;
    pub const DISCARD_SECTOR_ALIGNMENT: usize = 44;
    pub const MAX_WRITE_ZEROES_SECTORS: usize = 48;
    pub const MAX_WRITE_ZEROES_SEG: usize = 52;
    pub const WRITE_ZEROES_MAY_UNMAP: usize = 56;
    /// Up to the secure-erase fields, which keel doesn't offer; reads beyond are zero.
    pub const LEN: usize = 60;
}

/// The event-loop token of the rate limiter's timer.
const TIMER_TOKEN: u64 = 0;

/// A virtio-blk device.
pub struct Block {
    disk: Disk,
    features: u64,
    config: [u8; cfg::LEN],
    limiter: Option<RateLimiter>,
    active: Option<Active>,
}

/// What the device holds while the driver runs it.
struct Active {
    queue: Queue,
    ram: Arc<GuestRam>,
    interrupt: Arc<Interrupt>,
    events: Arc<EventLoop>,
    /// The rate limiter timer's registration with the event loop.
    timer_key: Option<u64>,
}

/// Builds the device for a disk: opens (and locks) the image now, so a bad disk stops the VM
/// before it boots.
pub fn create(config: &BlockConfig) -> Result<Box<dyn VirtioDevice>, DeviceError> {
    Ok(Box::new(Block::new(config)?))
}

impl Block {
    pub fn new(config: &BlockConfig) -> Result<Block, DeviceError> {
        let path = &config.path;
        let serial = config.serial.as_deref().unwrap_or("").as_bytes();
        if serial.len() > ID_LEN {
            return Err(DeviceError::Setup(format!(
                "disk {}: serial {:?} is longer than virtio-blk's {ID_LEN} bytes",
                path.display(),
                config.serial.as_deref().unwrap_or("")
            )));
        }
        let format = config.format.map(|f| match f {
            DiskFormat::Raw => ImageFormat::Raw,
            DiskFormat::Qcow2 => ImageFormat::Qcow2,
        });
        let options = OpenOptions { read_only: config.read_only, format };
        let image = keel_block::open(path, &options)
            .map_err(|e| DeviceError::Setup(open_error(path, config.read_only, e)))?;
        let limiter = RateLimiter::new(&config.rate_limit).map_err(|e| {
            DeviceError::Setup(format!(
                "disk {}: cannot create the rate limiter's timer (timerfd_create): {e}",
                path.display()
            ))
        })?;
        let mut disk = Disk::new(image, path.clone(), config.read_only, serial);
        disk.max_ranges = MAX_RANGES;
        disk.max_range_sectors = MAX_RANGE_SECTORS;

        let mut features = features::VERSION_1
            | features::RING_EVENT_IDX
            | features::RING_INDIRECT_DESC
            | feature::SEG_MAX
            | feature::BLK_SIZE
            | feature::FLUSH;
        if config.read_only {
            features |= feature::RO;
        } else {
            features |= feature::DISCARD | feature::WRITE_ZEROES;
        }

        let mut c = [0u8; cfg::LEN];
        let mut put = |at: usize, bytes: &[u8]| c[at..at + bytes.len()].copy_from_slice(bytes);
        put(cfg::CAPACITY, &disk.sectors.to_le_bytes());
        put(cfg::SEG_MAX, &SEG_MAX.to_le_bytes());
        put(cfg::BLK_SIZE, &(SECTOR_SIZE as u32).to_le_bytes());
        put(cfg::NUM_QUEUES, &1u16.to_le_bytes());
        put(cfg::MAX_DISCARD_SECTORS, &MAX_RANGE_SECTORS.to_le_bytes());
        put(cfg::MAX_DISCARD_SEG, &MAX_RANGES.to_le_bytes());
        put(cfg::DISCARD_SECTOR_ALIGNMENT, &DISCARD_ALIGNMENT_SECTORS.to_le_bytes());
        put(cfg::MAX_WRITE_ZEROES_SECTORS, &MAX_RANGE_SECTORS.to_le_bytes());
        put(cfg::MAX_WRITE_ZEROES_SEG, &MAX_RANGES.to_le_bytes());
        // Zeroing may free space (fallocate, qcow2 zero clusters).
        put(cfg::WRITE_ZEROES_MAY_UNMAP, &[1]);

        Ok(Block { disk, features, config: c, limiter, active: None })
    }

    /// Serves the queue until it is empty or the rate limiter says stop.
    fn process(&mut self) {
        let Some(active) = self.active.as_mut() else { return };
        let (disk, limiter, ram) = (&mut self.disk, &mut self.limiter, &active.ram);
        let notify = drain_queue(&mut active.queue, ram, |chain| {
            let Ok(req) = Request::parse(chain, ram) else {
                // Nowhere to put a status: give the buffers back untouched.
                disk.metrics.errors.inc();
                return Some(0);
            };
            if let Some(rl) = limiter.as_mut() {
                if !rl.consume(req.bytes()) {
                    disk.metrics.rate_limited.inc();
                    return None;
                }
            }
            Some(req.execute(disk, ram))
        });
        if notify {
            active.interrupt.signal_used();
        }
    }

    fn unregister(&mut self) {
        if let Some(a) = self.active.take() {
            if let Some(key) = a.timer_key {
                a.events.remove(key);
            }
        }
    }
}

/// The message for an image that can't be opened: what is wrong and what to do.
fn open_error(path: &Path, read_only: bool, e: BlockError) -> String {
    let p = path.display();
    match &e {
        BlockError::Locked { .. } if read_only => format!(
            "disk {p} is being written by another VM or program; stop the other user (read-only \
             attachments can share an image only with other read-only ones)"
        ),
        BlockError::Locked { .. } => format!(
            "disk {p} is in use by another VM or program; attach it with read_only = true or stop \
             the other user"
        ),
        BlockError::Io { op: "opening", source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => format!(
                "disk {p} does not exist; create it first (e.g. `truncate -s 1G {p}`, or \
                 `qemu-img create -f qcow2 {p} 1G`)"
            ),
            std::io::ErrorKind::PermissionDenied if !read_only => format!(
                "disk {p} cannot be opened for writing ({source}); fix its permissions or attach it \
                 with read_only = true"
            ),
            std::io::ErrorKind::ReadOnlyFilesystem => format!(
                "disk {p} is on a read-only file system; attach it with read_only = true"
            ),
            _ => format!("disk {p} cannot be opened: {source}"),
        },
        _ => e.to_string(),
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // Bytes past the structure read as zero.
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset.saturating_add(i as u64);
            *b = usize::try_from(at).ok().and_then(|at| self.config.get(at)).copied().unwrap_or(0);
        }
    }

    // The configuration space is read-only without VIRTIO_BLK_F_CONFIG_WCE: writes are ignored.

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        self.unregister();
        let queue = a.queues.into_iter().next().ok_or(ActivateError::BadQueue(0))?;
        self.disk.write_through = a.features & feature::FLUSH == 0;
        let timer_key = match &self.limiter {
            Some(rl) => Some(
                a.events.add(rl.timer_fd(), EventSet::IN, a.handler.clone(), TIMER_TOKEN).map_err(
                    |e| {
                        ActivateError::Backend(format!(
                            "disk {}: cannot watch the rate limiter's timer: {e}",
                            self.disk.path.display()
                        ))
                    },
                )?,
            ),
            None => None,
        };
        self.active =
            Some(Active { queue, ram: a.ram, interrupt: a.interrupt, events: a.events, timer_key });
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if index == 0 {
            self.process();
        }
    }

    fn reset(&mut self) {
        // The image stays open (and locked) for the VM's life; only the queue goes.
        self.unregister();
    }

    fn metrics(&self) -> Option<Arc<dyn DeviceMetrics>> {
        Some(self.disk.metrics.clone())
    }

    fn handle_event(&mut self, token: u64, _events: EventSet) {
        if token != TIMER_TOKEN {
            return;
        }
        if let Some(rl) = self.limiter.as_mut() {
            rl.timer_fired();
        }
        self.process();
    }

    fn active_queues(&self) -> Vec<Option<&Queue>> {
        self.active.iter().map(|a| Some(&a.queue)).collect()
    }

    /// A completed write may still have its qcow2 metadata (L2 entries) only in memory until
    /// a flush (keel-block's volatile-cache model): flush, so the image file holds every
    /// write the guest saw completed and a restore that reopens it reads them back.
    fn sync(&mut self) -> Result<(), SaveError> {
        if self.disk.read_only {
            return Ok(());
        }
        self.disk.image.flush().map_err(|source| SaveError::Flush {
            device: device_name(device_type::BLOCK),
            path: self.disk.path.clone(),
            source,
        })
    }

    // Nothing else to keep: `write_through` follows from the features at re-activation, the
    // rate limiter starts full (and the restore's notification serves what it held back),
    // and "reported once" flags only quieten stderr.
    fn save_device_state(&self) -> DeviceState {
        DeviceState::Block(BlockState {
            sectors: self.disk.sectors,
            read_only: self.disk.read_only,
        })
    }

    fn restore_device_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let device = device_name(device_type::BLOCK);
        let DeviceState::Block(saved) = state else { return Err(other_kind(device_type::BLOCK)) };
        let path = self.disk.path.display();
        if saved.sectors != self.disk.sectors {
            return Err(StateError::Invalid {
                device,
                what: format!(
                    "the saved disk had {} sectors of 512 bytes, {path} has {}",
                    saved.sectors, self.disk.sectors
                ),
            });
        }
        if saved.read_only != self.disk.read_only {
            return Err(StateError::Invalid {
                device,
                what: format!(
                    "the saved disk was attached {}, {path} is attached {}",
                    if saved.read_only { "read-only" } else { "read-write" },
                    if self.disk.read_only { "read-only" } else { "read-write" }
                ),
            });
        }
        Ok(())
    }
}
