//! The network device (virtio 1.2 §5.1) on a host TAP device.
//!
//! Queue 0 receives (host → guest), queue 1 transmits. Frames on the TAP carry the same
//! 12-byte virtio-net header as frames on the queues (with VERSION_1 the header always has
//! `num_buffers`, §5.1.6), so checksum and segmentation offloads pass straight through: the
//! guest hands 64 KiB TCP segments to the host kernel and gets 64 KiB segments back instead of
//! thousands of 1500-byte frames, which matters most when every guest instruction is
//! interpreted.
//!
//! All the work happens on the machine's I/O thread: a driver's notification only wakes it
//! (an eventfd), so the vCPU goes on running the guest while frames are copied and TAP
//! syscalls made, and the notifications that arrive meanwhile are served in one pass with one
//! interrupt. Transmit writes each frame to the TAP (non-blocking; the TAP takes or drops it).
//! Receive runs when the TAP becomes readable (edge-triggered, so the device reads until the
//! TAP is empty) or the driver adds buffers. A frame read from the TAP that the guest has no
//! room for yet stays in the device, and the device asks the driver to notify it when it adds
//! a buffer (`avail_event` set to the driver's current index, §2.7.10); nothing is read
//! meanwhile, so further frames wait in the TAP's own queue and nothing spins. The rate
//! limiters (one per direction) stop a queue the same way, until their timers fire.

use std::io;
use std::num::Wrapping;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use keel_memory::{GuestMemoryMmap, GuestRam};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::config::NetConfig;
use super::metrics::{Counter, DeviceMetrics};
use super::state::{device_name, other_kind, DeviceState, NetState};
use super::{
    device_type, drain_queue, features, ActivateError, Activation, Interrupt, VirtioDevice,
};
use crate::event::EventLoop;
use crate::rate_limiter::RateLimiter;
use crate::{DeviceError, StateError};

#[path = "tap.rs"]
pub mod tap;
use tap::{Offloads, Tap};

/// Feature bits of the network device (§5.1.3).
pub mod feature {
    /// The device takes frames with partial checksums (the host finishes them).
    pub const CSUM: u64 = 1 << 0;
    /// The driver takes frames with partial checksums.
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MAC: u64 = 1 << 5;
    pub const GUEST_TSO4: u64 = 1 << 7;
    pub const GUEST_TSO6: u64 = 1 << 8;
    pub const GUEST_ECN: u64 = 1 << 9;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const HOST_TSO6: u64 = 1 << 12;
    pub const HOST_ECN: u64 = 1 << 13;
    /// A received frame may span several buffers (`num_buffers`).
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// The configuration space has a link status.
    pub const STATUS: u64 = 1 << 16;
}

/// `struct virtio_net_hdr` with `num_buffers` (§5.1.6).
pub const HDR_LEN: usize = 12;
const HDR_FLAGS: usize = 0;
const HDR_GSO_TYPE: usize = 1;
const HDR_NUM_BUFFERS: usize = 10;
/// `flags`: the checksum from csum_start on is not done yet.
const F_NEEDS_CSUM: u8 = 1;
// `gso_type` values (§5.1.6).
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_ECN: u8 = 0x80;

/// The largest frame (after the header) either way: a 64 KiB segment, its Ethernet and VLAN
/// headers, and slack.
const MAX_FRAME: usize = 65_536 + 256;
/// One more than the largest header and frame, so a read that fills it was cut short.
const RX_BUF_LEN: usize = HDR_LEN + MAX_FRAME + 1;

const RX_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 1;
/// 256 entries per queue, like QEMU: enough receive buffers for several 64 KiB segments.
const QUEUE_SIZES: [u16; 2] = [256, 256];

/// `status` bit in the configuration space (§5.1.4).
const S_LINK_UP: u16 = 1;
/// mac[6], status, max_virtqueue_pairs (§5.1.4).
const CONFIG_LEN: usize = 10;

/// Frames one pass moves before it lets the vCPUs at the device (the lock is held during a
/// pass, and the guest's interrupt handler needs it); the next pass follows at once.
const FRAMES_PER_PASS: usize = 64;

/// VRING_AVAIL_F_NO_INTERRUPT (§2.7.7).
const AVAIL_F_NO_INTERRUPT: u16 = 1;

// Kinds of trouble, each reported once.
const REPORT_TOO_BIG: u8 = 1;
const REPORT_BAD_HEADER: u8 = 2;
const REPORT_READ: u8 = 4;
const REPORT_WRITE: u8 = 8;

// Event loop tokens.
const TOKEN_TAP: u64 = 0;
const TOKEN_RX_LIMIT: u64 = 1;
const TOKEN_TX_LIMIT: u64 = 2;
const TOKEN_KICK: u64 = 3;

/// Where frames go and come from: the TAP device, or a socket pair in tests. Each read and
/// write is one whole frame, header first.
pub trait Backend: Send {
    /// The interface's name, for messages.
    fn name(&self) -> &str;
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&self, frame: &[u8]) -> io::Result<usize>;
    fn set_offloads(&self, offloads: Offloads) -> io::Result<()>;
    /// A non-blocking descriptor that polls readable when a frame is waiting.
    fn as_raw_fd(&self) -> RawFd;
}

impl Backend for Tap {
    fn name(&self) -> &str {
        Tap::name(self)
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Tap::read(self, buf)
    }
    fn write(&self, frame: &[u8]) -> io::Result<usize> {
        Tap::write(self, frame)
    }
    fn set_offloads(&self, offloads: Offloads) -> io::Result<()> {
        Tap::set_offloads(self, offloads)
    }
    fn as_raw_fd(&self) -> RawFd {
        Tap::as_raw_fd(self)
    }
}

/// Builds the device for a network interface: attaches to its TAP device now, so a missing or
/// unusable one stops the VM before it boots.
pub fn create(config: &NetConfig) -> Result<Box<dyn VirtioDevice>, DeviceError> {
    let tap = Tap::open(&config.tap, HDR_LEN)?;
    Ok(Box::new(Net::new(Box::new(tap), config)?))
}

/// What the device counted (frames and bytes exclude the virtio-net header).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Received frames larger than all the buffers the guest could give.
    pub rx_too_big: u64,
    /// Received frames without a header, or with offloads the guest did not accept.
    pub rx_bad_header: u64,
    /// Transmit chains that were too short, too long or outside guest RAM.
    pub tx_bad_chain: u64,
    /// Frames the TAP refused.
    pub tx_errors: u64,
}

/// [`NetStats`] as the device counts them, readable from any thread.
#[derive(Debug, Default)]
struct NetMetrics {
    rx_frames: Counter,
    rx_bytes: Counter,
    tx_frames: Counter,
    tx_bytes: Counter,
    rx_too_big: Counter,
    rx_bad_header: Counter,
    tx_bad_chain: Counter,
    tx_errors: Counter,
}

impl NetMetrics {
    fn get(&self) -> NetStats {
        NetStats {
            rx_frames: self.rx_frames.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_frames: self.tx_frames.get(),
            tx_bytes: self.tx_bytes.get(),
            rx_too_big: self.rx_too_big.get(),
            rx_bad_header: self.rx_bad_header.get(),
            tx_bad_chain: self.tx_bad_chain.get(),
            tx_errors: self.tx_errors.get(),
        }
    }
}

impl DeviceMetrics for NetMetrics {
    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let s = self.get();
        vec![
            ("rx_bytes", s.rx_bytes),
            ("rx_packets", s.rx_frames),
            ("rx_dropped", s.rx_too_big + s.rx_bad_header),
            ("tx_bytes", s.tx_bytes),
            ("tx_packets", s.tx_frames),
            ("tx_dropped", s.tx_bad_chain),
            ("tx_errors", s.tx_errors),
        ]
    }
}

/// The state while the driver runs the device.
struct Active {
    rx: Queue,
    tx: Queue,
    features: u64,
    ram: Arc<GuestRam>,
    interrupt: Arc<Interrupt>,
    events: Arc<EventLoop>,
    /// Event loop registrations, removed at reset.
    keys: Vec<u64>,
    /// Length of the frame in `rx_buf` that was read from the TAP but not delivered yet.
    rx_pending: Option<usize>,
    /// The receive limiter already counted the pending frame.
    rx_charged: bool,
    /// The TAP may have frames: it became readable and was not read until empty since.
    tap_readable: bool,
    /// The used index when receive last decided about an interrupt.
    rx_signalled: Wrapping<u16>,
}

/// Buffers chosen for one received frame.
#[derive(Default)]
struct Plan {
    /// Writable guest ranges, in order.
    segs: Vec<(u64, usize)>,
    /// Per chain: its head and the end of its ranges in `segs`.
    chains: Vec<(u16, usize)>,
    /// Per chain: head and bytes written, for the used ring.
    used: Vec<(u16, u32)>,
}

enum Delivery {
    Done,
    /// Not enough buffers now; the driver will add some.
    NoRoom,
    /// More than every buffer the driver can give at once.
    TooBig,
}

pub struct Net {
    backend: Box<dyn Backend>,
    config: [u8; CONFIG_LEN],
    rx_limiter: Option<RateLimiter>,
    tx_limiter: Option<RateLimiter>,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    /// The driver's notifications, handed from the vCPU to the I/O thread.
    kick: EventFd,
    plan: Plan,
    stats: Arc<NetMetrics>,
    /// Kinds of trouble already reported on stderr (each is reported once, then counted).
    reported: u8,
    active: Option<Active>,
    /// Restored: the length of the pending frame put back in `rx_buf`, for the activation
    /// that follows.
    restored_rx: Option<usize>,
}

impl Net {
    pub fn new(backend: Box<dyn Backend>, config: &NetConfig) -> Result<Net, DeviceError> {
        let mut cfg = [0u8; CONFIG_LEN];
        cfg[..6].copy_from_slice(&config.mac);
        cfg[6..8].copy_from_slice(&S_LINK_UP.to_le_bytes());
        cfg[8..10].copy_from_slice(&1u16.to_le_bytes());
        // Each direction gets its own buckets with the configured limits.
        let limiter = || {
            RateLimiter::new(&config.rate_limit).map_err(|e| {
                DeviceError::Setup(format!(
                    "network {}: cannot make a rate limiter: {e}",
                    config.tap
                ))
            })
        };
        Ok(Net {
            backend,
            config: cfg,
            rx_limiter: limiter()?,
            tx_limiter: limiter()?,
            rx_buf: vec![0; RX_BUF_LEN],
            tx_buf: vec![0; HDR_LEN + MAX_FRAME],
            kick: EventFd::new(libc::EFD_NONBLOCK).map_err(|e| {
                DeviceError::Setup(format!("network {}: cannot make an eventfd: {e}", config.tap))
            })?,
            plan: Plan::default(),
            stats: Arc::default(),
            reported: 0,
            active: None,
            restored_rx: None,
        })
    }

    pub fn stats(&self) -> NetStats {
        self.stats.get()
    }

    /// Says once per kind of trouble what happened; later occurrences are only counted.
    fn report(&mut self, kind: u8, what: &str) {
        if self.reported & kind == 0 {
            self.reported |= kind;
            eprintln!(
                "keel: network {}: {what} (further cases are counted, not reported)",
                self.backend.name()
            );
        }
    }

    /// Moves frames from the TAP into the guest's receive buffers until the TAP is empty, the
    /// guest has no room, or the rate limit is reached.
    fn process_rx(&mut self) {
        // A driver that keeps moving its index without giving usable buffers must not keep
        // the device busy forever: after this many retries it waits for a notification.
        let mut retries = QUEUE_SIZES[0];
        let mut budget = FRAMES_PER_PASS;
        while let Some(len) = self.next_rx_frame() {
            if budget == 0 {
                let _ = self.kick.write(1);
                return;
            }
            let Some(a) = self.active.as_mut() else { return };
            if !a.rx_charged {
                if let Some(limiter) = self.rx_limiter.as_mut() {
                    // Refused: the limiter's timer brings us back.
                    if !limiter.consume((len - HDR_LEN) as u64) {
                        return;
                    }
                }
                a.rx_charged = true;
            }
            match deliver(a, &mut self.rx_buf[..len], &mut self.plan) {
                Delivery::Done => {
                    budget -= 1;
                    a.rx_pending = None;
                    self.stats.rx_frames.inc();
                    self.stats.rx_bytes.add((len - HDR_LEN) as u64);
                    if a.rx_needs_interrupt() {
                        a.interrupt.signal_used();
                    }
                }
                Delivery::NoRoom => {
                    if !a.arm_rx_notification() || retries == 0 {
                        return;
                    }
                    // The driver added buffers meanwhile: try again.
                    retries -= 1;
                }
                Delivery::TooBig => {
                    a.rx_pending = None;
                    self.stats.rx_too_big.inc();
                    let what =
                        format!("dropped a {len}-byte frame: the guest's buffers are smaller");
                    self.report(REPORT_TOO_BIG, &what);
                }
            }
        }
    }

    /// The frame to deliver next: the one waiting in `rx_buf`, or a new one from the TAP.
    fn next_rx_frame(&mut self) -> Option<usize> {
        loop {
            let a = self.active.as_mut()?;
            if a.rx_pending.is_some() || !a.tap_readable {
                return a.rx_pending;
            }
            let n = match self.backend.read(&mut self.rx_buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Empty (WouldBlock), or failing: wait for the next readiness edge either way.
                    a.tap_readable = false;
                    if e.kind() != io::ErrorKind::WouldBlock {
                        self.report(REPORT_READ, &format!("reading the TAP device failed: {e}"));
                    }
                    return None;
                }
            };
            if n >= RX_BUF_LEN {
                self.stats.rx_too_big.inc();
                self.report(REPORT_TOO_BIG, "dropped a frame from the TAP larger than 64 KiB");
                continue;
            }
            if n < HDR_LEN || !fix_rx_header(&mut self.rx_buf[..HDR_LEN], a.features) {
                self.stats.rx_bad_header.inc();
                self.report(REPORT_BAD_HEADER, "dropped a frame with offloads the guest refused");
                continue;
            }
            a.rx_pending = Some(n);
            a.rx_charged = false;
            return Some(n);
        }
    }

    /// Sends every frame the driver queued, as the rate limit allows.
    fn process_tx(&mut self) {
        let Some(a) = self.active.as_mut() else { return };
        if self.tx_limiter.as_ref().is_some_and(RateLimiter::is_blocked) {
            return;
        }
        let (backend, limiter, buf, stats) =
            (&self.backend, &mut self.tx_limiter, &mut self.tx_buf, &self.stats);
        let ram = &a.ram;
        let mut failed = None;
        let mut budget = FRAMES_PER_PASS;
        let notify = drain_queue(&mut a.tx, ram, |chain| {
            if budget == 0 {
                return None;
            }
            budget -= 1;
            // Gather the header and frame (§5.1.6.2: any layout over the descriptors).
            let mut len = 0usize;
            for desc in chain.readable() {
                let n = desc.len() as usize;
                let Some(dst) = buf.get_mut(len..len + n) else {
                    stats.tx_bad_chain.inc();
                    return Some(0);
                };
                if ram.read_slice(desc.addr().0, dst).is_err() {
                    stats.tx_bad_chain.inc();
                    return Some(0);
                }
                len += n;
            }
            if len < HDR_LEN {
                stats.tx_bad_chain.inc();
                return Some(0);
            }
            if let Some(l) = limiter.as_mut() {
                if !l.consume((len - HDR_LEN) as u64) {
                    // Leave the chain queued; the limiter's timer brings us back.
                    return None;
                }
            }
            // The header's offload requests go to the TAP as they are: the host kernel checks
            // them like any other packet from user space.
            match backend.write(&buf[..len]) {
                Ok(_) => {
                    stats.tx_frames.inc();
                    stats.tx_bytes.add((len - HDR_LEN) as u64);
                }
                Err(e) => {
                    stats.tx_errors.inc();
                    failed.get_or_insert(e);
                }
            }
            // The device writes nothing into transmit buffers.
            Some(0)
        });
        if notify {
            a.interrupt.signal_used();
        }
        if budget == 0 {
            let _ = self.kick.write(1);
        }
        if let Some(e) = failed {
            self.report(REPORT_WRITE, &format!("the TAP device refused a frame: {e}"));
        }
    }

    fn unregister(&mut self) {
        if let Some(a) = self.active.take() {
            for key in a.keys {
                a.events.remove(key);
            }
        }
    }
}

/// Makes a header from the TAP fit what the driver accepted. False when it can't: a segment
/// the guest can't take (the TAP only makes those when told to, so this is defensive).
fn fix_rx_header(hdr: &mut [u8], features: u64) -> bool {
    let gso = hdr[HDR_GSO_TYPE];
    let accepted = match gso & !GSO_ECN {
        GSO_NONE => true,
        GSO_TCPV4 => features & feature::GUEST_TSO4 != 0,
        GSO_TCPV6 => features & feature::GUEST_TSO6 != 0,
        _ => false,
    };
    if !accepted || (gso & GSO_ECN != 0 && features & feature::GUEST_ECN == 0) {
        return false;
    }
    if features & feature::GUEST_CSUM == 0 {
        // §5.1.6.3.1: without GUEST_CSUM flags must be zero (the TAP then only marks checksums
        // it verified, DATA_VALID, and never leaves one undone).
        if hdr[HDR_FLAGS] & F_NEEDS_CSUM != 0 {
            return false;
        }
        hdr[HDR_FLAGS] = 0;
    }
    true
}

/// Puts `frame` (header first) into the driver's receive buffers: one buffer, or with
/// MRG_RXBUF as many as it takes (§5.1.6.4).
fn deliver(a: &mut Active, frame: &mut [u8], plan: &mut Plan) -> Delivery {
    let mergeable = a.features & feature::MRG_RXBUF != 0;
    let mem = a.ram.memory();
    plan.segs.clear();
    plan.chains.clear();
    let mut room = 0usize;
    while room < frame.len() {
        let Some(chain) = a.rx.pop_descriptor_chain(mem) else { break };
        let head = chain.head_index();
        for desc in chain.writable() {
            if room == frame.len() {
                break;
            }
            let len = (desc.len() as usize).min(frame.len() - room);
            // A range outside RAM is no room at all (a broken or hostile driver).
            if len > 0 && a.ram.contains(desc.addr().0, len as u64) {
                plan.segs.push((desc.addr().0, len));
                room += len;
            }
        }
        plan.chains.push((head, plan.segs.len()));
        if !mergeable {
            break;
        }
    }
    if room < frame.len() {
        let taken = plan.chains.len();
        for _ in 0..taken {
            a.rx.go_to_previous_position();
        }
        // Without MRG_RXBUF the frame must fit one buffer; with it, the whole ring.
        let hopeless = if mergeable { taken >= usize::from(a.rx.size()) } else { taken == 1 };
        return if hopeless { Delivery::TooBig } else { Delivery::NoRoom };
    }
    // §5.1.6.4.1: num_buffers is the number of buffers used (1 without MRG_RXBUF).
    let count = plan.chains.len() as u16;
    frame[HDR_NUM_BUFFERS..HDR_NUM_BUFFERS + 2].copy_from_slice(&count.to_le_bytes());
    plan.used.clear();
    let (mut off, mut start) = (0usize, 0usize);
    for &(head, end) in &plan.chains {
        let mut written = 0usize;
        for &(addr, len) in &plan.segs[start..end] {
            // Checked against RAM above; the guest sees the bytes once the used index moves.
            let _ = a.ram.write_slice(addr, &frame[off..off + len]);
            off += len;
            written += len;
        }
        plan.used.push((head, written as u32));
        start = end;
    }
    publish_used(&mut a.rx, mem, &plan.used);
    Delivery::Done
}

/// Adds `used` to the used ring and only then moves its index once (§2.7.8), so the driver
/// never sees some of a frame's buffers without the rest.
fn publish_used(queue: &mut Queue, mem: &GuestMemoryMmap, used: &[(u16, u32)]) {
    let size = queue.size();
    let ring = GuestAddress(queue.used_ring());
    let mut next = Wrapping(queue.next_used());
    for &(head, len) in used {
        // struct virtq_used_elem { le32 id; le32 len; } after flags and idx.
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        let slot = 4 + 8 * u64::from(next.0 % size.max(1));
        let Some(addr) = ring.0.checked_add(slot) else { return };
        if mem.write_slice(&elem, GuestAddress(addr)).is_err() {
            return;
        }
        next += 1;
    }
    let Some(idx_addr) = ring.0.checked_add(2) else { return };
    if mem.store(next.0.to_le(), GuestAddress(idx_addr), Ordering::Release).is_ok() {
        queue.set_next_used(next.0);
    }
}

impl Active {
    /// Whether the driver wants an interrupt for the buffers used since the last decision
    /// (§2.7.10: with EVENT_IDX, when the used index passes `used_event`).
    fn rx_needs_interrupt(&mut self) -> bool {
        fence(Ordering::SeqCst);
        let new = Wrapping(self.rx.next_used());
        let old = std::mem::replace(&mut self.rx_signalled, new);
        let mem = self.ram.memory();
        let avail = self.rx.avail_ring();
        if self.rx.event_idx_enabled() {
            let at = avail.checked_add(4 + 2 * u64::from(self.rx.size()));
            let Some(used_event) =
                at.and_then(|at| mem.load::<u16>(GuestAddress(at), Ordering::Acquire).ok())
            else {
                return true;
            };
            new - Wrapping(u16::from_le(used_event)) - Wrapping(1) < new - old
        } else {
            let flags = mem.load::<u16>(GuestAddress(avail), Ordering::Acquire).map(u16::from_le);
            !matches!(flags, Ok(f) if f & AVAIL_F_NO_INTERRUPT != 0)
        }
    }

    /// The device waits for receive buffers: asks the driver to notify it when it adds one.
    /// Returns true when buffers arrived meanwhile (try again now).
    fn arm_rx_notification(&mut self) -> bool {
        let mem = self.ram.memory();
        let Ok(seen) = self.rx.avail_idx(mem, Ordering::Acquire) else { return false };
        if self.rx.event_idx_enabled() {
            // `avail_event` is the driver's current index, not the device's position: some
            // buffers may be available but too few for the frame, and the driver must still
            // notify when it adds the next one (§2.7.10).
            let at = self.rx.used_ring().checked_add(4 + 8 * u64::from(self.rx.size()));
            if let Some(at) = at {
                let _ = mem.store(seen.0.to_le(), GuestAddress(at), Ordering::Relaxed);
            }
        }
        // Without EVENT_IDX receive never suppresses notifications, so there's nothing to do.
        fence(Ordering::SeqCst);
        self.rx.avail_idx(mem, Ordering::Acquire).is_ok_and(|now| now != seen)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_type::NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn device_features(&self) -> u64 {
        use feature::*;
        features::VERSION_1
            | features::RING_EVENT_IDX
            | features::RING_INDIRECT_DESC
            | MAC
            | STATUS
            | MRG_RXBUF
            | CSUM
            | HOST_TSO4
            | HOST_TSO6
            | HOST_ECN
            | GUEST_CSUM
            | GUEST_TSO4
            | GUEST_TSO6
            | GUEST_ECN
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
            *b = at.and_then(|at| self.config.get(at)).copied().unwrap_or(0);
        }
    }

    // With VERSION_1 the configuration space is read-only for the driver (§5.1.4.2).

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        self.unregister();
        let mut queues = a.queues.into_iter();
        let rx = queues.next().ok_or(ActivateError::BadQueue(RX_QUEUE as usize))?;
        let tx = queues.next().ok_or(ActivateError::BadQueue(TX_QUEUE as usize))?;
        let f = a.features;
        let offloads = Offloads {
            csum: f & feature::GUEST_CSUM != 0,
            tso4: f & feature::GUEST_TSO4 != 0,
            tso6: f & feature::GUEST_TSO6 != 0,
            tso_ecn: f & feature::GUEST_ECN != 0,
        };
        let name = self.backend.name().to_owned();
        self.backend.set_offloads(offloads).map_err(|e| {
            ActivateError::Backend(format!("network {name}: cannot set the TAP's offloads: {e}"))
        })?;
        let mut fds = vec![
            (self.backend.as_raw_fd(), EventSet::IN | EventSet::EDGE_TRIGGERED, TOKEN_TAP),
            (self.kick.as_raw_fd(), EventSet::IN, TOKEN_KICK),
        ];
        if let Some(l) = &self.rx_limiter {
            fds.push((l.timer_fd(), EventSet::IN, TOKEN_RX_LIMIT));
        }
        if let Some(l) = &self.tx_limiter {
            fds.push((l.timer_fd(), EventSet::IN, TOKEN_TX_LIMIT));
        }
        let mut keys = Vec::new();
        for (fd, events, token) in fds {
            match a.events.add(fd, events, a.handler.clone(), token) {
                Ok(key) => keys.push(key),
                Err(e) => {
                    keys.into_iter().for_each(|k| a.events.remove(k));
                    return Err(ActivateError::Backend(format!(
                        "network {name}: cannot register with the I/O thread's event loop: {e}"
                    )));
                }
            }
        }
        let rx_signalled = Wrapping(rx.next_used());
        self.active = Some(Active {
            rx,
            tx,
            features: f,
            ram: a.ram,
            interrupt: a.interrupt,
            events: a.events,
            keys,
            // A restored frame goes first (the receive limiter charges it again).
            rx_pending: self.restored_rx.take(),
            rx_charged: false,
            // Frames may have queued up before the driver was ready.
            tap_readable: true,
            rx_signalled,
        });
        // A first pass on the I/O thread, for buffers and frames that are already there.
        let _ = self.kick.write(1);
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        // The I/O thread does the work (TAP syscalls, copies) while the vCPU runs on; kicks
        // that come before it does are served in one pass, with one interrupt.
        if index == RX_QUEUE || index == TX_QUEUE {
            let _ = self.kick.write(1);
        }
    }

    fn metrics(&self) -> Option<Arc<dyn DeviceMetrics>> {
        Some(self.stats.clone())
    }

    fn reset(&mut self) {
        self.unregister();
        self.restored_rx = None;
        // Until a driver says otherwise, the host must not send it offloaded frames.
        let _ = self.backend.set_offloads(Offloads::default());
    }

    fn handle_event(&mut self, token: u64, _events: EventSet) {
        match token {
            TOKEN_TAP => {
                if let Some(a) = self.active.as_mut() {
                    a.tap_readable = true;
                }
                self.process_rx();
            }
            TOKEN_RX_LIMIT => {
                if let Some(l) = self.rx_limiter.as_mut() {
                    l.timer_fired();
                }
                self.process_rx();
            }
            TOKEN_KICK => {
                let _ = self.kick.read();
                self.process_tx();
                self.process_rx();
            }
            TOKEN_TX_LIMIT => {
                if let Some(l) = self.tx_limiter.as_mut() {
                    l.timer_fired();
                }
                self.process_tx();
            }
            _ => {}
        }
    }

    fn active_queues(&self) -> Vec<Option<&Queue>> {
        self.active.iter().flat_map(|a| [Some(&a.rx), Some(&a.tx)]).collect()
    }

    // The MAC and the TAP come from the configuration, and the rate limiters start full.
    // Between passes the device keeps only a frame it read that the guest had no room for:
    // its chains were put back (`deliver`), so the rings are consistent either way, and the
    // frame is carried over rather than dropped.
    fn save_device_state(&self) -> DeviceState {
        let pending = self.active.as_ref().and_then(|a| a.rx_pending);
        DeviceState::Net(NetState { rx_pending: pending.map(|n| self.rx_buf[..n].to_vec()) })
    }

    fn restore_device_state(&mut self, state: &DeviceState) -> Result<(), StateError> {
        let device = device_name(device_type::NET);
        let DeviceState::Net(saved) = state else { return Err(other_kind(device_type::NET)) };
        if let Some(frame) = &saved.rx_pending {
            // As `next_rx_frame` takes them: a header, and less than the buffer.
            if frame.len() < HDR_LEN || frame.len() >= RX_BUF_LEN {
                return Err(StateError::Invalid {
                    device,
                    what: format!("the pending receive frame has {} bytes", frame.len()),
                });
            }
            self.rx_buf[..frame.len()].copy_from_slice(frame);
        }
        self.restored_rx = saved.rx_pending.as_ref().map(Vec::len);
        Ok(())
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
