//! The traditional memory balloon (virtio 1.2 §5.5). The host sets a target; the guest's
//! driver takes that many 4 KiB pages out of use and lists them on the inflate queue, and keel
//! gives them back to the host (`MADV_DONTNEED`, so they cost nothing until touched again).
//! Optionally the driver reports memory statistics (statsq) and hands back free pages of its
//! own accord (free page reporting, reporting_vq).
//!
//! The VMM reaches a running balloon through its transport: [`set_target`] and [`status`].

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_memory::GuestRam;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use super::config::BalloonConfig;
use super::metrics::{Counter, DeviceMetrics};
use super::mmio::MmioTransport;
use super::state::{device_name, other_kind, BalloonState, DeviceState, SavedBalloonStats};
use super::{
    device_type, drain_queue, features, ActivateError, Activation, Interrupt, VirtioDevice,
};
use crate::event::EventLoop;
use crate::{DeviceError, StateError};

/// Feature bits (§5.5.3). keel offers STATS_VQ, DEFLATE_ON_OOM and REPORTING. Not
/// MUST_TELL_HOST: deflating needs nothing from the host, so the guest may reuse pages at once.
/// Not FREE_PAGE_HINT (a migration aid) nor PAGE_POISON (reported pages read back as zero,
/// not as a poison value).
pub mod feature {
    pub const MUST_TELL_HOST: u64 = 1 << 0;
    pub const STATS_VQ: u64 = 1 << 1;
    pub const DEFLATE_ON_OOM: u64 = 1 << 2;
    pub const FREE_PAGE_HINT: u64 = 1 << 3;
    pub const PAGE_POISON: u64 = 1 << 4;
    pub const REPORTING: u64 = 1 << 5;
}

/// Statistics tags: 0-9 from virtio 1.2 §5.5.6.3, 10-15 added by Linux 6.10 (its
/// `include/uapi/linux/virtio_balloon.h`; Linux 6.12 sends all sixteen).
pub mod stat {
    pub const SWAP_IN: u16 = 0;
    pub const SWAP_OUT: u16 = 1;
    pub const MAJOR_FAULTS: u16 = 2;
    pub const MINOR_FAULTS: u16 = 3;
    pub const FREE_MEMORY: u16 = 4;
    pub const TOTAL_MEMORY: u16 = 5;
    pub const AVAILABLE_MEMORY: u16 = 6;
    pub const DISK_CACHES: u16 = 7;
    pub const HUGETLB_ALLOCATIONS: u16 = 8;
    pub const HUGETLB_FAILURES: u16 = 9;
    pub const OOM_KILLS: u16 = 10;
    pub const ALLOC_STALLS: u16 = 11;
    pub const ASYNC_SCANS: u16 = 12;
    pub const DIRECT_SCANS: u16 = 13;
    pub const ASYNC_RECLAIMS: u16 = 14;
    pub const DIRECT_RECLAIMS: u16 = 15;

    /// Linux's name for each tag (memory amounts are in bytes, the rest are counts).
    pub fn name(tag: u16) -> Option<&'static str> {
        const NAMES: [&str; 16] = [
            "swap-in",
            "swap-out",
            "major-faults",
            "minor-faults",
            "free-memory",
            "total-memory",
            "available-memory",
            "disk-caches",
            "hugetlb-allocations",
            "hugetlb-failures",
            "oom-kills",
            "alloc-stalls",
            "async-scans",
            "direct-scans",
            "async-reclaims",
            "direct-reclaims",
        ];
        NAMES.get(tag as usize).copied()
    }
}

/// Queue size of every balloon queue (Linux needs at least 32 on reporting_vq).
const QUEUE_SIZE: u16 = 128;
/// The balloon's page: PFNs on the inflate and deflate queues count 4 KiB pages whatever the
/// guest's own page size (§5.5.6).
const BALLOON_PAGE: u64 = 4096;
const PAGES_PER_MIB: u64 = (1 << 20) / BALLOON_PAGE;
/// PFNs read from guest memory at a time (Linux sends at most 256 per buffer).
const PFN_BATCH: usize = 1024;
/// One statistic: le16 tag, le64 value, packed (§5.5.6.3).
const STAT_SIZE: usize = 10;
/// Statistics read from one buffer at most, so a huge buffer can't make the device spin.
const MAX_STATS: usize = 64;
/// Event-loop token of the statistics timer.
const TOKEN_STATS_TIMER: u64 = 0;

/// What a virtqueue is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Inflate,
    Deflate,
    Stats,
    Reporting,
}

/// The queues that exist when `features` are offered, in index order (§5.5.2). The spec
/// lists fixed indexes (statsq 2, free_page_vq 3, reporting_vq 4) but says the optional
/// queues only exist with their feature; QEMU, crosvm and the virtio-comment discussion of
/// 2023 read that as "a queue whose feature is not offered takes no index", so with stats and
/// reporting offered reporting_vq is queue 3, and without stats it is queue 2.
fn layout(features: u64) -> Vec<Role> {
    let mut roles = vec![Role::Inflate, Role::Deflate];
    if features & feature::STATS_VQ != 0 {
        roles.push(Role::Stats);
    }
    if features & feature::REPORTING != 0 {
        roles.push(Role::Reporting);
    }
    roles
}

/// Which queue plays which role once the driver has accepted `acked` of the `offered`
/// features and made the queues marked in `ready` ready. Queues whose feature was offered
/// keep their index; a feature the driver declined leaves its queue unused. But Linux numbers
/// queues by the features it *accepted* (its virtio-mmio `find_vqs` skips the ones it doesn't
/// use), so a Linux that declined stats puts reporting_vq where statsq was. Linux accepts
/// every balloon feature keel offers, so that doesn't happen with it, but the queues the
/// driver made ready tell the two numberings apart where it could.
fn assign_roles(offered: u64, acked: u64, ready: &[bool]) -> Vec<Option<Role>> {
    let used = |r: &Role| match r {
        Role::Stats => acked & feature::STATS_VQ != 0,
        Role::Reporting => acked & feature::REPORTING != 0,
        Role::Inflate | Role::Deflate => true,
    };
    let by_offer: Vec<Option<Role>> =
        layout(offered).into_iter().map(|r| used(&r).then_some(r)).collect();
    let mut by_ack: Vec<Option<Role>> = layout(offered & acked).into_iter().map(Some).collect();
    by_ack.resize(by_offer.len(), None);
    let fits = |roles: &[Option<Role>]| {
        ready.iter().enumerate().all(|(i, &r)| r == roles.get(i).is_some_and(Option::is_some))
    };
    if !fits(&by_offer) && fits(&by_ack) {
        by_ack
    } else {
        by_offer
    }
}

/// The statistics the driver last sent (§5.5.6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalloonStats {
    /// (tag, value) as the driver sent them, unknown tags included; see [`stat`].
    pub entries: Vec<(u16, u64)>,
    /// When they arrived.
    pub received: Instant,
}

impl BalloonStats {
    /// The value of statistic `tag` (one of [`stat`]'s constants), if the driver sent it.
    pub fn get(&self, tag: u16) -> Option<u64> {
        self.entries.iter().rev().find(|(t, _)| *t == tag).map(|&(_, v)| v)
    }
}

/// What the VMM can know about a balloon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalloonStatus {
    /// The target (num_pages), in 4 KiB pages.
    pub target_pages: u32,
    /// The pages the driver says it holds (actual), in 4 KiB pages.
    pub actual_pages: u32,
    /// Statistics, once the driver has sent some (only with a statistics interval).
    pub stats: Option<BalloonStats>,
}

impl BalloonStatus {
    pub fn target_mib(&self) -> u64 {
        self.target_pages as u64 / PAGES_PER_MIB
    }

    pub fn actual_mib(&self) -> u64 {
        self.actual_pages as u64 / PAGES_PER_MIB
    }
}

/// One line for people: `target 128 MiB, guest holds 96 MiB; statistics 0.4 s old:
/// swap-in=0 ...` (what `KEEL_STATS=1` prints at exit).
impl std::fmt::Display for BalloonStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "target {} MiB, guest holds {} MiB", self.target_mib(), self.actual_mib())?;
        let Some(stats) = &self.stats else { return write!(f, "; no statistics") };
        write!(f, "; statistics {:.1} s old:", stats.received.elapsed().as_secs_f64())?;
        for &(tag, value) in &stats.entries {
            match stat::name(tag) {
                Some(name) => write!(f, " {name}={value}")?,
                None => write!(f, " tag{tag}={value}")?,
            }
        }
        Ok(())
    }
}

/// Why the VMM's request to a balloon failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BalloonError {
    #[error("the virtio device is not a balloon")]
    NotABalloon,
    #[error("a balloon target of {mib} MiB is more than the guest's {ram_mib} MiB of memory")]
    TargetTooLarge { mib: u64, ram_mib: u64 },
    #[error("a balloon target of {mib} MiB is more than the balloon can count (16 TiB)")]
    TargetOutOfRange { mib: u64 },
}

/// Sets the target of the balloon behind `transport` (MiB) and tells the guest's driver.
pub fn set_target(transport: &MmioTransport, mib: u64) -> Result<(), BalloonError> {
    let tell = transport.with_device(|d| as_balloon(d)?.set_target_mib(mib))?;
    // Outside `with_device`: config_changed takes the transport's lock itself.
    if tell {
        transport.config_changed();
    }
    Ok(())
}

/// The target, the driver's `actual` and the latest statistics of the balloon behind
/// `transport`.
pub fn status(transport: &MmioTransport) -> Result<BalloonStatus, BalloonError> {
    transport.with_device(|d| Ok(as_balloon(d)?.status()))
}

fn as_balloon(d: &mut dyn VirtioDevice) -> Result<&mut Balloon, BalloonError> {
    d.as_any().and_then(|a| a.downcast_mut::<Balloon>()).ok_or(BalloonError::NotABalloon)
}

/// Builds the device for a balloon.
pub fn create(config: &BalloonConfig) -> Result<Box<dyn VirtioDevice>, DeviceError> {
    Ok(Box::new(Balloon::new(config)?))
}

/// The statistics queue: the driver keeps one buffer on it; the device holds it and gives it
/// back when it wants fresh numbers, which the driver sends in the next buffer (§5.5.6.3).
struct StatsQueue {
    queue: Queue,
    held: Option<u16>,
    timer: TimerFd,
    events: Arc<EventLoop>,
    key: u64,
}

impl Drop for StatsQueue {
    fn drop(&mut self) {
        self.events.remove(self.key);
    }
}

/// A running balloon's queues.
struct Active {
    ram: Arc<GuestRam>,
    interrupt: Arc<Interrupt>,
    /// Queue index → role.
    roles: Vec<Option<Role>>,
    inflate: Queue,
    deflate: Queue,
    stats: Option<StatsQueue>,
    reporting: Option<Queue>,
    /// Page numbers outside RAM were reported to the operator once already.
    warned: bool,
}

pub struct Balloon {
    offered: u64,
    queue_sizes: Vec<u16>,
    stats_interval: Duration,
    /// num_pages (§5.5.4): the target, set by the host.
    num_pages: u32,
    /// actual (§5.5.4): what the driver holds, written by the driver.
    actual: u32,
    stats: Option<BalloonStats>,
    /// Guest RAM's size, known from the first activation.
    ram_size: Option<u64>,
    active: Option<Active>,
    metrics: Arc<BalloonMetrics>,
    /// Restored: the statistics buffer the saved device held, for the activation that
    /// follows.
    restored_stats_buffer: Option<u16>,
}

/// What the balloon moved: 4 KiB pages listed on the inflate and deflate queues, bytes of free
/// memory the guest reported (and keel gave back to the host), and statistics updates.
#[derive(Debug, Default)]
struct BalloonMetrics {
    inflated_pages: Counter,
    deflated_pages: Counter,
    reported_bytes: Counter,
    stats_updates: Counter,
}

impl DeviceMetrics for BalloonMetrics {
    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("inflated_pages", self.inflated_pages.get()),
            ("deflated_pages", self.deflated_pages.get()),
            ("reported_bytes", self.reported_bytes.get()),
            ("stats_updates", self.stats_updates.get()),
        ]
    }
}

impl Balloon {
    pub fn new(config: &BalloonConfig) -> Result<Balloon, DeviceError> {
        let num_pages = target_pages(config.target_mib).ok_or_else(|| {
            DeviceError::Setup(format!(
                "balloon target {} MiB: the balloon counts at most 2^32 - 1 pages of 4 KiB \
                 (16 TiB); lower [balloon] target",
                config.target_mib
            ))
        })?;
        let mut offered = features::VERSION_1
            | features::RING_EVENT_IDX
            | features::RING_INDIRECT_DESC
            | feature::DEFLATE_ON_OOM;
        if config.stats_interval_s > 0 {
            offered |= feature::STATS_VQ;
        }
        if config.free_page_reporting {
            offered |= feature::REPORTING;
        }
        Ok(Balloon {
            offered,
            queue_sizes: vec![QUEUE_SIZE; layout(offered).len()],
            stats_interval: Duration::from_secs(config.stats_interval_s),
            num_pages,
            actual: 0,
            stats: None,
            ram_size: None,
            active: None,
            metrics: Arc::default(),
            restored_stats_buffer: None,
        })
    }

    /// Sets a new target. Returns true when the driver must be told (it is running); it reads
    /// the target when it starts otherwise.
    pub fn set_target_mib(&mut self, mib: u64) -> Result<bool, BalloonError> {
        if let Some(ram_mib) = self.ram_size.map(|s| s >> 20).filter(|&r| mib > r) {
            return Err(BalloonError::TargetTooLarge { mib, ram_mib });
        }
        let pages = target_pages(mib).ok_or(BalloonError::TargetOutOfRange { mib })?;
        let changed = pages != self.num_pages;
        self.num_pages = pages;
        Ok(changed && self.active.is_some())
    }

    pub fn status(&self) -> BalloonStatus {
        BalloonStatus {
            target_pages: self.num_pages,
            actual_pages: self.actual,
            stats: self.stats.clone(),
        }
    }

    fn config_bytes(&self) -> [u8; 8] {
        let mut c = [0u8; 8];
        c[..4].copy_from_slice(&self.num_pages.to_le_bytes());
        c[4..].copy_from_slice(&self.actual.to_le_bytes());
        c
    }

    /// The driver listed pages it gave up: return them to the host (§5.5.6.1).
    fn inflate(&mut self) {
        let Some(a) = self.active.as_mut() else { return };
        let ram = &a.ram;
        let mut outside = 0;
        let mut listed = 0;
        let notify = drain_queue(&mut a.inflate, ram, |chain| {
            let (l, o) = discard_listed_pages(ram, chain);
            (listed, outside) = (listed + l, outside + o);
            Some(0)
        });
        self.metrics.inflated_pages.add(listed);
        warn_outside(&mut a.warned, outside);
        if notify {
            a.interrupt.signal_used();
        }
    }

    /// The driver takes pages back: nothing to do, they come back zero-filled when touched.
    /// Without MUST_TELL_HOST the driver may even have used them already (§5.5.6.1).
    fn deflate(&mut self) {
        let Some(a) = self.active.as_mut() else { return };
        let mut listed = 0;
        let used = drain_queue(&mut a.deflate, &a.ram, |chain| {
            // Le32 PFNs fill the readable part; a trailing partial one is ignored.
            listed += chain.readable().map(|d| u64::from(d.len() / 4)).sum::<u64>();
            Some(0)
        });
        self.metrics.deflated_pages.add(listed);
        if used {
            a.interrupt.signal_used();
        }
    }

    /// Free page reporting: each buffer lists free ranges of guest memory; give their whole
    /// pages back to the host.
    fn report(&mut self) {
        let Some(a) = self.active.as_mut() else { return };
        let Some(queue) = a.reporting.as_mut() else { return };
        let ram = &a.ram;
        let mut outside = 0;
        let metrics = &self.metrics;
        let notify = drain_queue(queue, ram, |chain| {
            // Linux posts the ranges device-writable; the device writes nothing.
            for desc in chain {
                match whole_pages(desc.addr().0, desc.len() as u64) {
                    Some((addr, len)) if ram.contains(addr, len) => {
                        ram.discard(addr, len);
                        metrics.reported_bytes.add(len);
                    }
                    Some(_) => outside += 1,
                    None => {}
                }
            }
            Some(0)
        });
        warn_outside(&mut a.warned, outside);
        if notify {
            a.interrupt.signal_used();
        }
    }

    /// The driver put a statistics buffer on statsq: keep its numbers and hold the buffer.
    fn stats_arrived(&mut self) {
        let Some(a) = self.active.as_mut() else { return };
        let Some(sq) = a.stats.as_mut() else { return };
        let ram = &a.ram;
        let mem = ram.memory();
        let mut used_any = false;
        // The notification protocol of `drain_queue` (§2.7.10), but chains are held, not used.
        loop {
            if sq.queue.disable_notification(mem).is_err() {
                break;
            }
            while let Some(chain) = sq.queue.iter(mem).ok().and_then(|mut it| it.next()) {
                let head = chain.head_index();
                self.stats = Some(BalloonStats {
                    entries: read_stats(ram, chain),
                    received: Instant::now(),
                });
                self.metrics.stats_updates.inc();
                // The driver keeps one buffer outstanding; an extra one goes straight back.
                if let Some(old) = sq.held.replace(head) {
                    used_any |= sq.queue.add_used(mem, old, 0).is_ok();
                }
            }
            match sq.queue.enable_notification(mem) {
                Ok(true) => continue,
                _ => break,
            }
        }
        if used_any && sq.queue.needs_notification(mem).unwrap_or(true) {
            a.interrupt.signal_used();
        }
    }

    /// Time for fresh statistics: give the held buffer back, which asks the driver to refill it.
    fn stats_due(&mut self) {
        let Some(a) = self.active.as_mut() else { return };
        let Some(sq) = a.stats.as_mut() else { return };
        let Some(head) = sq.held.take() else { return };
        let mem = a.ram.memory();
        if sq.queue.add_used(mem, head, 0).is_ok()
            && sq.queue.needs_notification(mem).unwrap_or(true)
        {
            a.interrupt.signal_used();
        }
    }

    /// Serves whatever the driver queued, e.g. before DRIVER_OK: Linux puts its first
    /// statistics buffer on statsq and notifies before it sets DRIVER_OK, when the transport
    /// doesn't pass notifications on yet.
    fn serve_all(&mut self) {
        self.inflate();
        self.deflate();
        self.stats_arrived();
        self.report();
    }
}

fn timer_error(e: impl std::fmt::Display) -> ActivateError {
    ActivateError::Backend(format!("virtio-balloon: cannot set up the statistics timer: {e}"))
}

/// num_pages for a target of `mib` MiB, if it fits the 32-bit field.
fn target_pages(mib: u64) -> Option<u32> {
    mib.checked_mul(PAGES_PER_MIB).and_then(|p| u32::try_from(p).ok())
}

fn warn_outside(warned: &mut bool, outside: u64) {
    if outside > 0 && !*warned {
        *warned = true;
        eprintln!(
            "keel: virtio-balloon: the guest's driver listed {outside} page(s) outside guest \
             RAM; they were ignored (a driver bug or a hostile guest; not reported again)"
        );
    }
}

/// Discards the pages whose PFNs (le32 each) fill the readable part of `chain`. Returns how
/// many PFNs were listed, and how many of them lay outside RAM.
fn discard_listed_pages(
    ram: &GuestRam,
    chain: DescriptorChain<&keel_memory::GuestMemoryMmap>,
) -> (u64, u64) {
    let mut outside = 0;
    let mut listed = 0;
    let mut bytes = [0u8; PFN_BATCH * 4];
    let mut pfns = Vec::with_capacity(PFN_BATCH);
    for desc in chain.readable() {
        let mut addr = desc.addr().0;
        // A trailing partial PFN is ignored.
        let mut left = (desc.len() & !3) as usize;
        listed += left as u64 / 4;
        while left > 0 {
            let n = left.min(bytes.len());
            if ram.read_slice(addr, &mut bytes[..n]).is_err() {
                outside += 1;
                break;
            }
            pfns.clear();
            pfns.extend(
                bytes[..n].chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            outside += page_runs(&mut pfns, ram.base(), ram.end(), |a, l| ram.discard(a, l));
            addr += n as u64;
            left -= n;
        }
    }
    (listed, outside)
}

/// Sorts `pfns` and calls `discard(addr, len)` once per run of contiguous pages that lie in
/// RAM `[base, end)`, so a whole batch usually costs one madvise. Returns how many PFNs lay
/// outside RAM (they are skipped); duplicates count once.
fn page_runs(pfns: &mut [u32], base: u64, end: u64, mut discard: impl FnMut(u64, u64)) -> u64 {
    pfns.sort_unstable();
    let mut outside = 0;
    let mut run: Option<(u64, u64)> = None;
    let mut last = None;
    for &pfn in pfns.iter() {
        if last.replace(pfn) == Some(pfn) {
            continue;
        }
        let addr = pfn as u64 * BALLOON_PAGE;
        if addr < base || addr + BALLOON_PAGE > end {
            outside += 1;
            continue;
        }
        match run {
            Some((start, len)) if start + len == addr => run = Some((start, len + BALLOON_PAGE)),
            _ => {
                if let Some((start, len)) = run {
                    discard(start, len);
                }
                run = Some((addr, BALLOON_PAGE));
            }
        }
    }
    if let Some((start, len)) = run {
        discard(start, len);
    }
    outside
}

/// The whole 4 KiB pages inside `[addr, addr + len)`, as (start, length); None if there are
/// none (or the range wraps around).
fn whole_pages(addr: u64, len: u64) -> Option<(u64, u64)> {
    let start = addr.checked_next_multiple_of(BALLOON_PAGE)?;
    let end = addr.checked_add(len)? / BALLOON_PAGE * BALLOON_PAGE;
    (end > start).then(|| (start, end - start))
}

/// Reads the (tag, value) pairs of a statistics buffer, at most [`MAX_STATS`] of them.
fn read_stats(
    ram: &GuestRam,
    chain: DescriptorChain<&keel_memory::GuestMemoryMmap>,
) -> Vec<(u16, u64)> {
    let mut bytes = Vec::new();
    for desc in chain.readable() {
        let room = MAX_STATS * STAT_SIZE - bytes.len();
        let n = (desc.len() as usize).min(room);
        let at = bytes.len();
        bytes.resize(at + n, 0);
        if ram.read_slice(desc.addr().0, &mut bytes[at..]).is_err() {
            bytes.truncate(at);
            break;
        }
        if bytes.len() == MAX_STATS * STAT_SIZE {
            break;
        }
    }
    bytes
        .chunks_exact(STAT_SIZE)
        .map(|s| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&s[2..]);
            (u16::from_le_bytes([s[0], s[1]]), u64::from_le_bytes(v))
        })
        .collect()
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        device_type::BALLOON
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn device_features(&self) -> u64 {
        self.offered
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // num_pages and actual (§5.5.4); the other fields only exist with features keel
        // doesn't offer.
        let config = self.config_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset.checked_add(i as u64).and_then(|o| usize::try_from(o).ok());
            *b = at.and_then(|o| config.get(o)).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only actual (bytes 4-7) is the driver's to write (§5.5.4, §5.5.6.2).
        let mut actual = self.actual.to_le_bytes();
        for (i, &b) in data.iter().enumerate() {
            if let Some(o) = offset.checked_add(i as u64).filter(|o| (4..8).contains(o)) {
                actual[o as usize - 4] = b;
            }
        }
        self.actual = u32::from_le_bytes(actual);
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let ready: Vec<bool> = a.queues.iter().map(|q| q.ready()).collect();
        let roles = assign_roles(self.offered, a.features, &ready);
        let (mut inflate, mut deflate, mut stats, mut reporting) = (None, None, None, None);
        for (i, (queue, role)) in a.queues.into_iter().zip(roles.iter()).enumerate() {
            let Some(role) = role else { continue };
            if !queue.ready() {
                return Err(ActivateError::BadQueue(i));
            }
            match role {
                Role::Inflate => inflate = Some(queue),
                Role::Deflate => deflate = Some(queue),
                Role::Stats => stats = Some(queue),
                Role::Reporting => reporting = Some(queue),
            }
        }
        let inflate = inflate.ok_or(ActivateError::BadQueue(0))?;
        let deflate = deflate.ok_or(ActivateError::BadQueue(1))?;
        // A restored device holds the buffer the saved one held (§5.5.6.3): the driver sends
        // no statistics until it gets it back.
        let held = self.restored_stats_buffer.take();
        if let Some(head) = held {
            if stats.as_ref().is_none_or(|q| head >= q.size()) {
                return Err(ActivateError::Backend(format!(
                    "virtio-balloon: the saved statistics buffer (descriptor {head}) does not \
                     fit the statistics queue"
                )));
            }
        }
        let stats = match stats {
            Some(queue) => {
                let mut timer = TimerFd::new().map_err(timer_error)?;
                let every = self.stats_interval.max(Duration::from_secs(1));
                timer.reset(every, Some(every)).map_err(timer_error)?;
                let key = a
                    .events
                    .add(timer.as_raw_fd(), EventSet::IN, a.handler.clone(), TOKEN_STATS_TIMER)
                    .map_err(timer_error)?;
                Some(StatsQueue { queue, held, timer, events: a.events.clone(), key })
            }
            None => None,
        };
        self.ram_size = Some(a.ram.size());
        self.active = Some(Active {
            ram: a.ram,
            interrupt: a.interrupt,
            roles,
            inflate,
            deflate,
            stats,
            reporting,
            warned: false,
        });
        self.serve_all();
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        let role =
            self.active.as_ref().and_then(|a| a.roles.get(index as usize).copied().flatten());
        match role {
            Some(Role::Inflate) => self.inflate(),
            Some(Role::Deflate) => self.deflate(),
            Some(Role::Stats) => self.stats_arrived(),
            Some(Role::Reporting) => self.report(),
            None => {}
        }
    }

    fn reset(&mut self) {
        // A reset driver holds no pages any more (Linux empties the balloon before it resets
        // the device on removal).
        self.active = None;
        self.actual = 0;
        self.restored_stats_buffer = None;
    }

    fn handle_event(&mut self, token: u64, _events: EventSet) {
        if token != TOKEN_STATS_TIMER {
            return;
        }
        if let Some(sq) = self.active.as_mut().and_then(|a| a.stats.as_mut()) {
            // Epoll said the timer expired, so this read doesn't block.
            let _ = sq.timer.wait();
        }
        self.stats_due();
    }

    fn as_any(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }

    fn metrics(&self) -> Option<Arc<dyn DeviceMetrics>> {
        Some(self.metrics.clone())
    }

    fn active_queues(&self) -> Vec<Option<&Queue>> {
        let Some(a) = &self.active else { return Vec::new() };
        a.roles
            .iter()
            .map(|role| match role {
                Some(Role::Inflate) => Some(&a.inflate),
                Some(Role::Deflate) => Some(&a.deflate),
                Some(Role::Stats) => a.stats.as_ref().map(|s| &s.queue),
                Some(Role::Reporting) => a.reporting.as_ref(),
                None => None,
            })
            .collect()
    }

    // The inflate, deflate and reporting queues hold nothing between notifications; statsq
    // holds one buffer (§5.5.6.3). The statistics timer starts a fresh interval.
    fn save_device_state(&self) -> DeviceState {
        DeviceState::Balloon(BalloonState {
            target_pages: self.num_pages,
            actual_pages: self.actual,
            stats_buffer: self.active.as_ref().and_then(|a| a.stats.as_ref()?.held),
            stats: self.stats.as_ref().map(|s| SavedBalloonStats {
                entries: s.entries.clone(),
                age_ms: u64::try_from(s.received.elapsed().as_millis()).unwrap_or(u64::MAX),
            }),
        })
    }

    fn restore_device_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let DeviceState::Balloon(saved) = state else {
            return Err(other_kind(device_type::BALLOON));
        };
        let no_stats = self.offered & feature::STATS_VQ == 0;
        if let Some(head) = saved.stats_buffer.filter(|&h| no_stats || h >= QUEUE_SIZE) {
            return Err(StateError::Invalid {
                device: device_name(device_type::BALLOON),
                what: format!("it held statistics buffer {head}, which this balloon can't have"),
            });
        }
        // The target is the saved one: the VMM may have changed it since the VM file's.
        self.num_pages = saved.target_pages;
        self.actual = saved.actual_pages;
        self.stats = saved.stats.as_ref().map(|s| {
            let now = Instant::now();
            BalloonStats {
                entries: s.entries.clone(),
                received: now.checked_sub(Duration::from_millis(s.age_ms)).unwrap_or(now),
            }
        });
        self.restored_stats_buffer = saved.stats_buffer;
        Ok(())
    }
}

#[cfg(test)]
#[path = "balloon_tests.rs"]
mod tests;
