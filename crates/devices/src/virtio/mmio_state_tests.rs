//! Save and restore of transports, driven through their registers as Linux's virtio_mmio
//! does, with split virtqueues written into guest RAM by the test's driver. A restore is done
//! the way the machine does it: guest RAM copied into new RAM, a new device built from the
//! same configuration, the state through postcard (as the snapshot crate stores it).
//! The entropy and block devices and the transport's own checks are here; net, vsock and the
//! balloon in mmio_state_dev_tests.rs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use keel_memory::GuestRam;

use super::*;
use crate::testutil::MockLine;
use crate::virtio::blk::Block;
use crate::virtio::config::{BlockConfig, DiskFormat, RateLimitConfig, TokenBucketConfig};
use crate::virtio::rng::Rng;
use crate::virtio::state::{BlockState, DeviceState, MmioState, NetState};
use crate::virtio::{device_type, INT_USED_BUFFER};
use crate::StateError;

#[path = "mmio_state_dev_tests.rs"]
mod devices;

const BASE: u64 = 0x8000_0000;
const RAM: u64 = 16 << 20;
/// Buffers go from here up; rings are below, 64 KiB apart.
const DATA: u64 = BASE + (1 << 20);
/// The queue size the test's driver chooses.
const Q: u16 = 16;
const STATUS_RUNNING: u32 = 0xf;

/// The driver's side of one split virtqueue (§2.7) in guest RAM.
#[derive(Clone)]
struct DriverQueue {
    desc: u64,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl DriverQueue {
    fn new(index: usize) -> DriverQueue {
        let desc = BASE + 0x1_0000 * index as u64;
        let avail = desc + 16 * Q as u64;
        let used = (avail + 6 + 2 * Q as u64 + 3) & !3;
        DriverQueue { desc, avail, used, next_desc: 0, avail_idx: 0, used_seen: 0 }
    }

    /// Makes a chain of (address, length, device-writable) buffers available; returns its head.
    fn add(&mut self, ram: &GuestRam, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, write)) in bufs.iter().enumerate() {
            let idx = self.next_desc;
            self.next_desc = (self.next_desc + 1) % Q;
            let flags: u16 = if i + 1 < bufs.len() { 1 } else { 0 } | if write { 2 } else { 0 };
            let at = self.desc + 16 * idx as u64;
            assert!(ram.store::<u64>(at, addr) && ram.store::<u32>(at + 8, len));
            assert!(ram.store::<u16>(at + 12, flags) && ram.store::<u16>(at + 14, self.next_desc));
        }
        assert!(ram.store::<u16>(self.avail + 4 + 2 * (self.avail_idx % Q) as u64, head));
        self.avail_idx = self.avail_idx.wrapping_add(1);
        assert!(ram.store::<u16>(self.avail + 2, self.avail_idx));
        head
    }

    fn used_idx(&self, ram: &GuestRam) -> u16 {
        ram.load::<u16>(self.used + 2).unwrap()
    }

    /// Used entries (head, length) since the last call.
    fn take_used(&mut self, ram: &GuestRam) -> Vec<(u16, u32)> {
        let idx = self.used_idx(ram);
        let mut out = Vec::new();
        while self.used_seen != idx {
            let e = self.used + 4 + 8 * (self.used_seen % Q) as u64;
            out.push((ram.load::<u32>(e).unwrap() as u16, ram.load::<u32>(e + 4).unwrap()));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }
}

fn w(t: &MmioTransport, reg: u64, value: u32) {
    t.write(reg, 4, value as u64);
}

fn r(t: &MmioTransport, reg: u64) -> u32 {
    t.read(reg, 4) as u32
}

/// §3.1.1 steps 1-6: ACKNOWLEDGE, DRIVER, the features (`wanted` of those offered, and
/// VERSION_1), FEATURES_OK. Returns the features accepted.
fn negotiate(t: &MmioTransport, wanted: u64) -> u64 {
    w(t, REG_STATUS, 1);
    w(t, REG_STATUS, 3);
    let mut offered = 0u64;
    for sel in 0..2 {
        w(t, REG_DEVICE_FEATURES_SEL, sel);
        offered |= (r(t, REG_DEVICE_FEATURES) as u64) << (32 * sel);
    }
    let accepted = offered & (wanted | features::VERSION_1);
    for sel in 0..2 {
        w(t, REG_DRIVER_FEATURES_SEL, sel);
        w(t, REG_DRIVER_FEATURES, (accepted >> (32 * sel)) as u32);
    }
    w(t, REG_STATUS, 3 | STATUS_FEATURES_OK);
    assert_eq!(r(t, REG_STATUS), 3 | STATUS_FEATURES_OK, "features accepted");
    accepted
}

/// Sets up queue `index` (§4.2.3.2); `until` stops after that many of its registers.
fn set_up_queue(t: &MmioTransport, index: u32, q: &DriverQueue, until: usize) {
    w(t, REG_QUEUE_SEL, index);
    assert!(r(t, REG_QUEUE_NUM_MAX) >= Q as u32);
    let steps: [(u64, u32); 8] = [
        (REG_QUEUE_NUM, Q as u32),
        (REG_QUEUE_DESC_LOW, q.desc as u32),
        (REG_QUEUE_DESC_HIGH, (q.desc >> 32) as u32),
        (REG_QUEUE_DRIVER_LOW, q.avail as u32),
        (REG_QUEUE_DRIVER_HIGH, (q.avail >> 32) as u32),
        (REG_QUEUE_DEVICE_LOW, q.used as u32),
        (REG_QUEUE_DEVICE_HIGH, (q.used >> 32) as u32),
        (REG_QUEUE_READY, 1),
    ];
    for &(reg, value) in steps.iter().take(until) {
        w(t, reg, value);
    }
}

/// A guest's driver and the transport it drives.
struct Guest {
    ram: Arc<GuestRam>,
    line: Arc<MockLine>,
    t: Arc<MmioTransport>,
    qs: Vec<DriverQueue>,
}

impl Guest {
    /// A transport for `device` in new RAM, not set up yet.
    fn new(device: Box<dyn VirtioDevice>, events: &Arc<EventLoop>) -> Guest {
        let ram = Arc::new(GuestRam::new(BASE, RAM).unwrap());
        let n = device.queue_max_sizes().len();
        Guest::with(ram, (0..n).map(DriverQueue::new).collect(), device, events)
    }

    fn with(
        ram: Arc<GuestRam>,
        qs: Vec<DriverQueue>,
        device: Box<dyn VirtioDevice>,
        events: &Arc<EventLoop>,
    ) -> Guest {
        let line = Arc::new(MockLine::default());
        let t = MmioTransport::new(device, ram.clone(), line.clone(), events.clone());
        Guest { ram, line, t, qs }
    }

    /// A transport for `device`, set up by the driver up to DRIVER_OK with every queue.
    fn boot(device: Box<dyn VirtioDevice>, events: &Arc<EventLoop>, wanted: u64) -> Guest {
        let g = Guest::new(device, events);
        negotiate(&g.t, wanted);
        for (i, q) in g.qs.iter().enumerate() {
            set_up_queue(&g.t, i as u32, q, 8);
        }
        w(&g.t, REG_STATUS, STATUS_RUNNING);
        assert_eq!(r(&g.t, REG_STATUS), STATUS_RUNNING, "the device started");
        g
    }

    fn add(&mut self, queue: usize, bufs: &[(u64, u32, bool)]) -> u16 {
        self.qs[queue].add(&self.ram, bufs)
    }

    fn notify(&self, queue: u32) {
        w(&self.t, REG_QUEUE_NOTIFY, queue);
    }

    fn take_used(&mut self, queue: usize) -> Vec<(u16, u32)> {
        self.qs[queue].take_used(&self.ram)
    }

    /// The machine rebuilt and restored: guest RAM copied, a new transport for `device` (built
    /// from the same configuration), and the state restored into it.
    fn restored(
        &self,
        state: &MmioState,
        device: Box<dyn VirtioDevice>,
        events: &Arc<EventLoop>,
    ) -> Result<Guest, StateError> {
        restore_into(copy_ram(&self.ram), self.qs.clone(), state, device, events)
    }
}

fn restore_into(
    ram: Arc<GuestRam>,
    qs: Vec<DriverQueue>,
    state: &MmioState,
    device: Box<dyn VirtioDevice>,
    events: &Arc<EventLoop>,
) -> Result<Guest, StateError> {
    let g = Guest::with(ram, qs, device, events);
    g.t.restore_state(&stored(state))?;
    Ok(g)
}

fn copy_ram(ram: &GuestRam) -> Arc<GuestRam> {
    let mut bytes = vec![0u8; RAM as usize];
    ram.read_slice(BASE, &mut bytes).unwrap();
    let copy = Arc::new(GuestRam::new(BASE, RAM).unwrap());
    copy.write_slice(BASE, &bytes).unwrap();
    copy
}

/// Through postcard (the snapshot file's encoding) and JSON.
fn stored(state: &MmioState) -> MmioState {
    let back: MmioState = postcard::from_bytes(&postcard::to_stdvec(state).unwrap()).unwrap();
    assert_eq!(&back, state);
    let json: MmioState = serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap();
    assert_eq!(&json, state);
    back
}

fn read_u128(ram: &GuestRam, addr: u64) -> u128 {
    let mut b = [0u8; 16];
    ram.read_slice(addr, &mut b).unwrap();
    u128::from_le_bytes(b)
}

fn events() -> Arc<EventLoop> {
    Arc::new(EventLoop::new().unwrap())
}

/// An entropy request: one writable buffer of `len` bytes at `at`.
fn rng_request(g: &mut Guest, at: u64, len: u32) -> u16 {
    g.add(0, &[(at, len, true)])
}

#[test]
fn rng_goes_on_from_the_saved_ring_positions() {
    let ev = events();
    let mut g = Guest::boot(Box::new(Rng::new()), &ev, features::RING_EVENT_IDX);
    let heads: Vec<u16> = (0..3).map(|k| rng_request(&mut g, DATA + 0x100 * k, 32)).collect();
    g.notify(0);
    assert_eq!(g.take_used(0), heads.iter().map(|&h| (h, 32)).collect::<Vec<_>>());
    // One more made available but not notified yet, and the interrupt not acknowledged.
    let waiting = rng_request(&mut g, DATA + 0x1000, 16);
    assert!(g.line.level());

    let state = g.t.save_state().unwrap();
    assert!(state.activated);
    assert_eq!(state.status, STATUS_RUNNING);
    assert_eq!(state.interrupt_status, INT_USED_BUFFER);
    assert_eq!(state.device, DeviceState::Stateless);
    let q = state.queues[0];
    assert_eq!((q.size, q.ready, q.next_avail, q.next_used, q.event_idx), (Q, true, 3, 3, true));
    assert_eq!(
        (q.desc_table, q.avail_ring, q.used_ring),
        (g.qs[0].desc, g.qs[0].avail, g.qs[0].used)
    );

    let mut h = g.restored(&state, Box::new(Rng::new()), &events()).unwrap();
    // The interrupt the driver has not handled yet is still pending, on the line too.
    assert!(h.line.level());
    assert_eq!(r(&h.t, REG_INTERRUPT_STATUS), INT_USED_BUFFER);
    assert_eq!(r(&h.t, REG_STATUS), STATUS_RUNNING);
    // The request made available before the snapshot was served on restore, right after the
    // first three: the used index goes on from 3.
    assert_eq!(h.qs[0].used_idx(&h.ram), 4);
    assert_eq!(h.take_used(0), [(waiting, 16)]);
    assert_ne!(read_u128(&h.ram, DATA + 0x1000), 0, "random bytes arrived");
    let next = rng_request(&mut h, DATA + 0x2000, 8);
    h.notify(0);
    assert_eq!(h.take_used(0), [(next, 8)]);
    w(&h.t, REG_INTERRUPT_ACK, INT_USED_BUFFER);
    assert!(!h.line.level());
    let again = h.t.save_state().unwrap();
    assert_eq!((again.queues[0].next_avail, again.queues[0].next_used), (5, 5));
    // Nothing of the old machine is used: its RAM did not move on.
    assert_eq!(g.qs[0].used_idx(&g.ram), 3);
}

#[test]
fn a_transport_saved_during_setup_is_set_up_the_rest_of_the_way() {
    let ev = events();
    let g = Guest::new(Box::new(Rng::new()), &ev);
    negotiate(&g.t, features::RING_EVENT_IDX);
    // Size, descriptor table and driver area written; the device area and READY not yet.
    set_up_queue(&g.t, 0, &g.qs[0], 5);
    let state = g.t.save_state().unwrap();
    assert!(!state.activated);
    assert_eq!(state.status, 3 | STATUS_FEATURES_OK);
    assert!(!state.queues[0].ready);

    let mut h = g.restored(&state, Box::new(Rng::new()), &ev).unwrap();
    assert_eq!(h.t.save_state().unwrap(), state, "the restored transport saves the same");
    let q = h.qs[0].clone();
    for (reg, value) in [
        (REG_QUEUE_DEVICE_LOW, q.used as u32),
        (REG_QUEUE_DEVICE_HIGH, (q.used >> 32) as u32),
        (REG_QUEUE_READY, 1),
    ] {
        w(&h.t, reg, value);
    }
    w(&h.t, REG_STATUS, STATUS_RUNNING);
    assert_eq!(r(&h.t, REG_STATUS), STATUS_RUNNING);
    let head = rng_request(&mut h, DATA, 64);
    h.notify(0);
    assert_eq!(h.take_used(0), [(head, 64)]);
    assert!(h.t.save_state().unwrap().queues[0].event_idx, "EVENT_IDX was negotiated");
}

#[test]
fn a_state_that_does_not_fit_is_an_error_and_changes_nothing() {
    let ev = events();
    let mut g = Guest::boot(Box::new(Rng::new()), &ev, 0);
    rng_request(&mut g, DATA, 8);
    g.notify(0);
    let good = g.t.save_state().unwrap();
    let fresh = Guest::with(copy_ram(&g.ram), g.qs.clone(), Box::new(Rng::new()), &ev);
    let untouched = fresh.t.save_state().unwrap();
    let fails = |change: &dyn Fn(&mut MmioState)| {
        let mut bad = good.clone();
        change(&mut bad);
        let err = fresh.t.restore_state(&bad).unwrap_err();
        assert_eq!(fresh.t.save_state().unwrap(), untouched, "{err}");
        assert!(!fresh.line.level());
        err
    };
    let invalid = |err: StateError, words: &str| match err {
        StateError::Invalid { device: "virtio-rng", what } if what.contains(words) => {}
        other => panic!("expected an error on virtio-rng about {words:?}, got {other:?}"),
    };

    invalid(fails(&|s| s.device_type = device_type::BLOCK), "virtio-blk");
    assert_eq!(
        fails(&|s| s.queues.push(s.queues[0])),
        StateError::Shape { device: "virtio-rng", what: "queues", saved: 2, here: 1 }
    );
    invalid(fails(&|s| s.queues[0].size = 128), "queue 0");
    invalid(fails(&|s| s.queues[0].size = 12), "queue 0");
    invalid(fails(&|s| s.queues[0].max_size = 128), "queue 0");
    invalid(fails(&|s| s.queues[0].desc_table += 8), "queue 0");
    invalid(fails(&|s| s.queues[0].used_ring = 0x1000), "queue 0");
    invalid(fails(&|s| s.driver_features |= 1 << 40), "features");
    invalid(fails(&|s| s.status = 3), "DRIVER_OK");
    invalid(fails(&|s| s.interrupt_status = 4), "interrupt status");
    invalid(fails(&|s| s.device = DeviceState::Net(NetState { rx_pending: None })), "kind");

    // The state itself restores into the same transport afterwards.
    fresh.t.restore_state(&good).unwrap();
    assert_eq!(fresh.t.save_state().unwrap(), good);
}

/// A scratch image file, deleted at the end of the test.
struct TempImage(PathBuf);

impl TempImage {
    fn new(sectors: usize) -> TempImage {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "keel-mmio-state-{}-{}.img",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, vec![0x11u8; sectors * 512]).unwrap();
        TempImage(path)
    }

    fn config(&self, rate_limit: RateLimitConfig) -> BlockConfig {
        BlockConfig {
            path: self.0.clone(),
            read_only: false,
            format: Some(DiskFormat::Raw),
            serial: None,
            rate_limit,
        }
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const T_IN: u32 = 0;
const T_OUT: u32 = 1;

/// A block request (§5.2.6) at `at`: header, one 512-byte data buffer, status byte.
fn blk_request(g: &mut Guest, at: u64, kind: u32, sector: u64, data: Option<u8>) -> u16 {
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&kind.to_le_bytes());
    hdr[8..].copy_from_slice(&sector.to_le_bytes());
    g.ram.write_slice(at, &hdr).unwrap();
    if let Some(byte) = data {
        g.ram.write_slice(at + 0x1000, &[byte; 512]).unwrap();
    }
    assert!(g.ram.store::<u8>(at + 0x2000, 0xff));
    g.add(0, &[(at, 16, false), (at + 0x1000, 512, kind == T_IN), (at + 0x2000, 1, true)])
}

fn blk_status(g: &Guest, at: u64) -> u8 {
    g.ram.load::<u8>(at + 0x2000).unwrap()
}

#[test]
fn blk_goes_on_from_the_saved_ring_positions_on_the_reopened_image() {
    let image = TempImage::new(64);
    let ev = events();
    let cfg = image.config(RateLimitConfig::default());
    let mut g = Guest::boot(Box::new(Block::new(&cfg).unwrap()), &ev, features::RING_EVENT_IDX);
    let write = blk_request(&mut g, DATA, T_OUT, 1, Some(0xab));
    g.notify(0);
    let read = blk_request(&mut g, DATA + 0x1_0000, T_IN, 1, None);
    g.notify(0);
    assert_eq!(g.take_used(0), [(write, 1), (read, 513)]);
    assert_eq!(blk_status(&g, DATA), 0);

    let state = g.t.save_state().unwrap();
    assert_eq!(state.device, DeviceState::Block(BlockState { sectors: 64, read_only: false }));
    assert_eq!((state.queues[0].next_avail, state.queues[0].next_used), (2, 2));
    // The old keel goes away (and unlocks the image); the new one reopens it.
    let (ram, qs) = (copy_ram(&g.ram), g.qs.clone());
    drop(g);
    let dev = Box::new(Block::new(&cfg).unwrap());
    let mut h = restore_into(ram, qs, &state, dev, &ev).unwrap();
    let again = blk_request(&mut h, DATA + 0x2_0000, T_IN, 1, None);
    h.notify(0);
    assert_eq!(h.take_used(0), [(again, 513)], "served from the third ring entry");
    assert_eq!(h.qs[0].used_idx(&h.ram), 3);
    assert_eq!(blk_status(&h, DATA + 0x2_0000), 0);
    assert_eq!(h.ram.load::<u64>(DATA + 0x2_1000), Some(0xabab_abab_abab_abab), "the write");

    // A disk of another size is not the saved one.
    drop(h);
    let other = TempImage::new(32);
    let dev = Box::new(Block::new(&other.config(RateLimitConfig::default())).unwrap());
    let err = Guest::new(dev, &ev).t.restore_state(&state).unwrap_err();
    assert!(
        matches!(&err, StateError::Invalid { device: "virtio-blk", what } if what.contains("64 sectors")),
        "{err:?}"
    );
}

#[test]
fn blk_serves_after_restore_what_the_rate_limiter_held_back() {
    let image = TempImage::new(8);
    let ev = events();
    // One request per hour.
    let ops = TokenBucketConfig { size: 1, one_time_burst: 0, refill_time_ms: 3_600_000 };
    let cfg = image.config(RateLimitConfig { bandwidth: None, ops: Some(ops) });
    let mut g = Guest::boot(Box::new(Block::new(&cfg).unwrap()), &ev, features::RING_EVENT_IDX);
    let first = blk_request(&mut g, DATA, T_IN, 0, None);
    let second = blk_request(&mut g, DATA + 0x1_0000, T_IN, 1, None);
    g.notify(0);
    assert_eq!(g.take_used(0), [(first, 513)], "the second waits for the limiter");

    let state = g.t.save_state().unwrap();
    assert_eq!((state.queues[0].next_avail, state.queues[0].next_used), (1, 1));
    let (ram, qs) = (copy_ram(&g.ram), g.qs.clone());
    drop(g);
    let mut h = restore_into(ram, qs, &state, Box::new(Block::new(&cfg).unwrap()), &ev).unwrap();
    // The restored limiter starts full, and the restore looked at the queue: no notification
    // from the driver was needed (it would wait for its request forever).
    assert_eq!(h.take_used(0), [(second, 513)]);
    assert_eq!(blk_status(&h, DATA + 0x1_0000), 0);
    assert!(h.line.level());
}
