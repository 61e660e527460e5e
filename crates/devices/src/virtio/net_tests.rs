//! Unit tests of the network device: a test driver's virtqueues in real guest RAM, and a
//! Unix datagram socket pair in place of the TAP (one datagram = one frame, like a TAP).

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::*;
use crate::event::EventHandler;
use crate::testutil::MockLine;
use crate::virtio::config::{RateLimitConfig, TokenBucketConfig};

const RAM_BASE: u64 = 0x8000_0000;
const RX_RING: u64 = RAM_BASE;
const TX_RING: u64 = RAM_BASE + 0x1_0000;
const BUFFERS: u64 = RAM_BASE + 0x4_0000;
const RING_SIZE: u16 = 128;
const MAC: [u8; 6] = [0x02, 0x6b, 0x6c, 0, 0, 1];

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;

struct Pair {
    sock: UnixDatagram,
    offloads: Arc<Mutex<Option<Offloads>>>,
}

impl Backend for Pair {
    fn name(&self) -> &str {
        "test0"
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf)
    }
    fn write(&self, frame: &[u8]) -> io::Result<usize> {
        self.sock.send(frame)
    }
    fn set_offloads(&self, offloads: Offloads) -> io::Result<()> {
        *self.offloads.lock().unwrap() = Some(offloads);
        Ok(())
    }
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

struct NoHandler;
impl EventHandler for NoHandler {
    fn handle_event(&self, _token: u64, _events: EventSet) {}
}

/// The driver's side of one split virtqueue (§2.7), written straight into guest RAM.
struct Ring {
    ram: Arc<GuestRam>,
    base: u64,
    next_desc: u16,
    avail_idx: u16,
}

impl Ring {
    fn desc(&self) -> u64 {
        self.base
    }
    fn avail(&self) -> u64 {
        self.base + 16 * RING_SIZE as u64
    }
    fn used(&self) -> u64 {
        self.base + 0x1000
    }

    fn queue(&self, event_idx: bool) -> Queue {
        let mut q = Queue::new(RING_SIZE).unwrap();
        q.set_size(RING_SIZE);
        q.set_desc_table_address(Some(self.desc() as u32), Some((self.desc() >> 32) as u32));
        q.set_avail_ring_address(Some(self.avail() as u32), Some((self.avail() >> 32) as u32));
        q.set_used_ring_address(Some(self.used() as u32), Some((self.used() >> 32) as u32));
        q.set_event_idx(event_idx);
        q.set_ready(true);
        q
    }

    /// Makes a chain of (address, length, device-writable) buffers available.
    fn add(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let idx = self.next_desc;
            self.next_desc = (self.next_desc + 1) % RING_SIZE;
            let at = self.desc() + 16 * idx as u64;
            let mut flags = if writable { DESC_F_WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= DESC_F_NEXT;
            }
            self.ram.store::<u64>(at, addr);
            self.ram.store::<u32>(at + 8, len);
            self.ram.store::<u16>(at + 12, flags);
            self.ram.store::<u16>(at + 14, self.next_desc);
        }
        self.ram.store::<u16>(self.avail() + 4 + 2 * (self.avail_idx % RING_SIZE) as u64, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.ram.store::<u16>(self.avail() + 2, self.avail_idx);
        head
    }

    fn used_idx(&self) -> u16 {
        self.ram.load::<u16>(self.used() + 2).unwrap()
    }

    /// Used element `i`: (head, length).
    fn used_elem(&self, i: u16) -> (u32, u32) {
        let at = self.used() + 4 + 8 * (i % RING_SIZE) as u64;
        (self.ram.load::<u32>(at).unwrap(), self.ram.load::<u32>(at + 4).unwrap())
    }

    fn avail_event(&self) -> u16 {
        self.ram.load::<u16>(self.used() + 4 + 8 * RING_SIZE as u64).unwrap()
    }

    fn set_used_event(&self, v: u16) {
        self.ram.store::<u16>(self.avail() + 4 + 2 * RING_SIZE as u64, v);
    }
}

struct Fixture {
    net: Net,
    peer: UnixDatagram,
    ram: Arc<GuestRam>,
    rx: Ring,
    tx: Ring,
    line: Arc<MockLine>,
    offloads: Arc<Mutex<Option<Offloads>>>,
    _handler: Arc<NoHandler>,
}

fn fixture(features: u64, rate_limit: RateLimitConfig) -> Fixture {
    let ram = Arc::new(GuestRam::new(RAM_BASE, 1 << 20).unwrap());
    let (dev, peer) = UnixDatagram::pair().unwrap();
    dev.set_nonblocking(true).unwrap();
    peer.set_nonblocking(true).unwrap();
    let offloads = Arc::new(Mutex::new(None));
    let backend = Pair { sock: dev, offloads: offloads.clone() };
    let config = NetConfig { tap: "test0".into(), mac: MAC, rate_limit };
    let mut net = Net::new(Box::new(backend), &config).unwrap();
    let rx = Ring { ram: ram.clone(), base: RX_RING, next_desc: 0, avail_idx: 0 };
    let tx = Ring { ram: ram.clone(), base: TX_RING, next_desc: 0, avail_idx: 0 };
    let event_idx = features & features::RING_EVENT_IDX != 0;
    let line = Arc::new(MockLine::default());
    let handler = Arc::new(NoHandler);
    let weak: Weak<dyn EventHandler> = Arc::downgrade(&handler) as _;
    net.activate(Activation {
        queues: vec![rx.queue(event_idx), tx.queue(event_idx)],
        features: features | features::VERSION_1,
        ram: ram.clone(),
        interrupt: Arc::new(Interrupt::new(line.clone())),
        events: Arc::new(EventLoop::new().unwrap()),
        handler: weak,
    })
    .unwrap();
    // The I/O thread's first pass after activation.
    net.handle_event(TOKEN_KICK, EventSet::IN);
    Fixture { net, peer, ram, rx, tx, line, offloads, _handler: handler }
}

/// A frame from the host: a header with `flags` and `gso_type`, then `len` patterned bytes.
fn host_frame(len: usize, flags: u8, gso_type: u8, seed: u8) -> Vec<u8> {
    let mut f = vec![0u8; HDR_LEN];
    f[0] = flags;
    f[1] = gso_type;
    f.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    f
}

/// The driver notifies the transmit queue and the I/O thread handles it.
fn kick_tx(f: &mut Fixture) {
    f.net.queue_notify(TX_QUEUE);
    f.net.handle_event(TOKEN_KICK, EventSet::IN);
}

fn read_guest(ram: &GuestRam, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ram.read_slice(addr, &mut v).unwrap();
    v
}

fn expect_delivered(f: &Fixture, frame: &[u8], buffers: &[(u64, u32)], first_used: u16) {
    let mut got = Vec::new();
    for (i, &(addr, size)) in buffers.iter().enumerate() {
        let (_, len) = f.rx.used_elem(first_used + i as u16);
        assert!(len <= size, "buffer {i}: {len} bytes written into {size}");
        got.extend(read_guest(&f.ram, addr, len as usize));
    }
    let mut want = frame.to_vec();
    want[HDR_NUM_BUFFERS..HDR_NUM_BUFFERS + 2]
        .copy_from_slice(&(buffers.len() as u16).to_le_bytes());
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the guest got other bytes than the TAP sent");
}

#[test]
fn the_config_space_has_the_mac_and_the_link_is_up() {
    let f = fixture(0, RateLimitConfig::default());
    let mut cfg = [0xffu8; 12];
    f.net.read_config(0, &mut cfg);
    assert_eq!(&cfg[..6], &MAC);
    assert_eq!(u16::from_le_bytes([cfg[6], cfg[7]]), S_LINK_UP);
    assert_eq!(&cfg[10..], &[0, 0], "beyond the fields: zero");
    let mut far = [0xffu8; 4];
    f.net.read_config(u64::MAX - 1, &mut far);
    assert_eq!(far, [0; 4]);
    let offered = f.net.device_features();
    for bit in [feature::MAC, feature::STATUS, feature::MRG_RXBUF, feature::CSUM] {
        assert_ne!(offered & bit, 0);
    }
}

#[test]
fn a_transmitted_frame_reaches_the_tap_whole() {
    let mut f = fixture(features::RING_EVENT_IDX, RateLimitConfig::default());
    let frame = host_frame(3000, 0, 0, 7);
    // Header alone, then the frame over two descriptors.
    f.ram.write_slice(BUFFERS, &frame[..HDR_LEN]).unwrap();
    f.ram.write_slice(BUFFERS + 0x1000, &frame[HDR_LEN..1012]).unwrap();
    f.ram.write_slice(BUFFERS + 0x2000, &frame[1012..]).unwrap();
    let head = f.tx.add(&[
        (BUFFERS, HDR_LEN as u32, false),
        (BUFFERS + 0x1000, 1000, false),
        (BUFFERS + 0x2000, (frame.len() - 1012) as u32, false),
    ]);
    f.net.queue_notify(TX_QUEUE);
    assert_eq!(f.tx.used_idx(), 0, "the vCPU's notification only wakes the I/O thread");
    f.net.handle_event(TOKEN_KICK, EventSet::IN);
    let mut got = vec![0u8; 8192];
    let n = f.peer.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &frame[..]);
    assert_eq!(f.tx.used_idx(), 1);
    assert_eq!(f.tx.used_elem(0), (head as u32, 0));
    assert!(f.line.level(), "the driver is interrupted for the used buffer");
    assert_eq!(f.net.stats().tx_frames, 1);
    assert_eq!(f.net.stats().tx_bytes, 3000);
}

#[test]
fn a_received_frame_fills_one_buffer_with_num_buffers_one() {
    let mut f = fixture(0, RateLimitConfig::default());
    f.rx.add(&[(BUFFERS, 2048, true)]);
    let frame = host_frame(1500, 0, 0, 1);
    f.peer.send(&frame).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.rx.used_idx(), 1);
    assert_eq!(f.rx.used_elem(0).1 as usize, frame.len());
    expect_delivered(&f, &frame, &[(BUFFERS, 2048)], 0);
    assert!(f.line.level());
}

#[test]
fn mergeable_buffers_take_a_large_frame_in_pieces_published_at_once() {
    let mut f = fixture(feature::MRG_RXBUF | features::RING_EVENT_IDX, RateLimitConfig::default());
    let bufs: Vec<(u64, u32)> = (0..4).map(|i| (BUFFERS + i * 0x1000, 2048)).collect();
    for &(a, l) in &bufs {
        f.rx.add(&[(a, l, true)]);
    }
    let frame = host_frame(5000, 0, 0, 2);
    f.peer.send(&frame).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.rx.used_idx(), 3, "5012 bytes take three 2048-byte buffers");
    expect_delivered(&f, &frame, &bufs[..3], 0);
    assert_eq!(f.rx.used_elem(2).1, 5012 - 4096);
}

#[test]
fn without_buffers_frames_wait_in_order_and_none_is_lost() {
    let mut f = fixture(features::RING_EVENT_IDX, RateLimitConfig::default());
    let first = host_frame(100, 0, 0, 3);
    let second = host_frame(200, 0, 0, 4);
    f.peer.send(&first).unwrap();
    f.peer.send(&second).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.rx.used_idx(), 0);
    assert_eq!(f.rx.avail_event(), 0, "notify me when you add a buffer");
    // The second frame is still in the TAP: the device stopped reading.
    let a = f.net.active.as_ref().unwrap();
    assert_eq!(a.rx_pending, Some(first.len()));
    assert!(a.tap_readable);

    f.rx.add(&[(BUFFERS, 2048, true)]);
    f.rx.add(&[(BUFFERS + 0x1000, 2048, true)]);
    f.net.queue_notify(RX_QUEUE);
    f.net.handle_event(TOKEN_KICK, EventSet::IN);
    assert_eq!(f.rx.used_idx(), 2);
    expect_delivered(&f, &first, &[(BUFFERS, 2048)], 0);
    expect_delivered(&f, &second, &[(BUFFERS + 0x1000, 2048)], 1);
    assert!(!f.net.active.as_ref().unwrap().tap_readable, "read until the TAP was empty");
}

#[test]
fn too_few_mergeable_buffers_wait_for_the_drivers_next_one() {
    let mut f = fixture(feature::MRG_RXBUF | features::RING_EVENT_IDX, RateLimitConfig::default());
    f.rx.add(&[(BUFFERS, 2048, true)]);
    let frame = host_frame(5000, 0, 0, 5);
    f.peer.send(&frame).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.rx.used_idx(), 0, "nothing used before the whole frame fits");
    // One buffer is available but unused: the notification is armed at the driver's index.
    assert_eq!(f.rx.avail_event(), 1);
    f.rx.add(&[(BUFFERS + 0x1000, 2048, true)]);
    f.rx.add(&[(BUFFERS + 0x2000, 2048, true)]);
    f.net.queue_notify(RX_QUEUE);
    f.net.handle_event(TOKEN_KICK, EventSet::IN);
    assert_eq!(f.rx.used_idx(), 3);
    let bufs = [(BUFFERS, 2048), (BUFFERS + 0x1000, 2048), (BUFFERS + 0x2000, 2048)];
    expect_delivered(&f, &frame, &bufs, 0);
}

#[test]
fn a_frame_larger_than_the_buffer_is_dropped_and_the_buffer_kept() {
    let mut f = fixture(0, RateLimitConfig::default());
    f.rx.add(&[(BUFFERS, 1000, true)]);
    f.peer.send(&host_frame(1500, 0, 0, 6)).unwrap();
    let small = host_frame(100, 0, 0, 7);
    f.peer.send(&small).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.net.stats().rx_too_big, 1);
    assert_eq!(f.rx.used_idx(), 1);
    expect_delivered(&f, &small, &[(BUFFERS, 1000)], 0);
    assert_eq!(f.ram.load::<u8>(BUFFERS + 1000), Some(0), "nothing past the buffer");
}

#[test]
fn headers_the_guest_did_not_agree_to_are_fixed_or_dropped() {
    let mut f = fixture(0, RateLimitConfig::default());
    f.rx.add(&[(BUFFERS, 2048, true)]);
    f.peer.send(&host_frame(100, 1, 0, 0)).unwrap(); // NEEDS_CSUM without GUEST_CSUM
    f.peer.send(&host_frame(100, 0, GSO_TCPV4, 0)).unwrap(); // a segment without GUEST_TSO4
    f.peer.send(&host_frame(100, 2, 0, 0)).unwrap(); // DATA_VALID: cleared
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.net.stats().rx_bad_header, 2);
    assert_eq!(f.rx.used_idx(), 1);
    assert_eq!(f.ram.load::<u8>(BUFFERS), Some(0), "flags zero without GUEST_CSUM");
}

#[test]
fn offloads_follow_what_the_driver_accepted() {
    let f = fixture(feature::GUEST_CSUM | feature::GUEST_TSO4, RateLimitConfig::default());
    let o = f.offloads.lock().unwrap().unwrap();
    assert_eq!(o, Offloads { csum: true, tso4: true, tso6: false, tso_ecn: false });
    let f = fixture(0, RateLimitConfig::default());
    assert_eq!(f.offloads.lock().unwrap().unwrap(), Offloads::default());
}

#[test]
fn hostile_chains_are_survived() {
    let mut f = fixture(feature::MRG_RXBUF, RateLimitConfig::default());
    // Transmit: outside RAM, longer than any frame, only a header's worth, a loop.
    f.tx.add(&[(0x10, 100, false)]);
    f.tx.add(&[(BUFFERS, u32::MAX, false)]);
    f.tx.add(&[(BUFFERS, 4, false)]);
    let looped = f.tx.add(&[(BUFFERS, 64, false)]);
    f.ram.store::<u16>(TX_RING + 16 * looped as u64 + 12, DESC_F_NEXT);
    f.ram.store::<u16>(TX_RING + 16 * looped as u64 + 14, looped);
    kick_tx(&mut f);
    assert_eq!(f.tx.used_idx(), 4, "every chain is given back");
    assert_eq!(f.net.stats().tx_bad_chain, 3);
    // The loop ends after as many descriptors as the ring has: a frame of the guest's own
    // bytes, harmless.
    assert_eq!(f.net.stats().tx_frames, 1);
    assert_eq!(f.net.stats().tx_bytes, u64::from(RING_SIZE) * 64 - HDR_LEN as u64);

    // Receive: a buffer outside RAM and one straddling its end are no room at all.
    f.rx.add(&[(0x1000, 4096, true)]);
    f.rx.add(&[(RAM_BASE + (1 << 20) - 8, 4096, true)]);
    f.rx.add(&[(BUFFERS, 4096, true)]);
    let frame = host_frame(64, 0, 0, 9);
    f.peer.send(&frame).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.rx.used_idx(), 3);
    assert_eq!(f.rx.used_elem(0).1, 0);
    assert_eq!(f.rx.used_elem(1).1, 0);
    assert_eq!(f.rx.used_elem(2).1 as usize, frame.len());
    // A driver that claims more available buffers than the ring holds gets nothing.
    f.ram.store::<u16>(f.rx.avail() + 2, 1000);
    f.peer.send(&frame).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.rx.used_idx(), 3);
}

#[test]
fn the_transmit_rate_limit_holds_frames_until_its_timer() {
    // Slow enough that scheduling delays on a loaded machine refill far less than a frame.
    let bucket = TokenBucketConfig { size: 1000, one_time_burst: 0, refill_time_ms: 1000 };
    let limit = RateLimitConfig { bandwidth: Some(bucket), ops: None };
    let mut f = fixture(features::RING_EVENT_IDX, limit);
    let frame = host_frame(800, 0, 0, 1);
    for i in 0..2 {
        f.ram.write_slice(BUFFERS + i * 0x1000, &frame).unwrap();
        f.tx.add(&[(BUFFERS + i * 0x1000, frame.len() as u32, false)]);
    }
    let start = Instant::now();
    kick_tx(&mut f);
    assert_eq!(f.tx.used_idx(), 1, "the second frame waits for tokens");
    kick_tx(&mut f);
    assert_eq!(f.tx.used_idx(), 1, "a notification doesn't get past the limit");
    // The limiter's timer fires when 600 more tokens are there (600 ms).
    f.net.handle_event(TOKEN_TX_LIMIT, EventSet::IN);
    assert_eq!(f.tx.used_idx(), 2);
    assert!(start.elapsed() >= Duration::from_millis(550), "{:?}", start.elapsed());
    let mut buf = [0u8; 2048];
    assert_eq!(f.peer.recv(&mut buf).unwrap(), frame.len());
    assert_eq!(f.peer.recv(&mut buf).unwrap(), frame.len());
}

#[test]
fn the_receive_rate_limit_keeps_the_frame_until_its_timer() {
    // Slow enough that scheduling delays on a loaded machine refill far less than a frame.
    let bucket = TokenBucketConfig { size: 1000, one_time_burst: 0, refill_time_ms: 1000 };
    let limit = RateLimitConfig { bandwidth: Some(bucket), ops: None };
    let mut f = fixture(features::RING_EVENT_IDX, limit);
    f.rx.add(&[(BUFFERS, 2048, true)]);
    f.rx.add(&[(BUFFERS + 0x1000, 2048, true)]);
    f.peer.send(&host_frame(800, 0, 0, 1)).unwrap();
    f.peer.send(&host_frame(800, 0, 0, 2)).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.rx.used_idx(), 1);
    f.net.handle_event(TOKEN_RX_LIMIT, EventSet::IN);
    assert_eq!(f.rx.used_idx(), 2);
    assert_eq!(f.net.stats().rx_frames, 2);
}

#[test]
fn interrupts_follow_the_drivers_used_event() {
    let mut f = fixture(features::RING_EVENT_IDX, RateLimitConfig::default());
    for i in 0..3 {
        f.rx.add(&[(BUFFERS + i * 0x1000, 2048, true)]);
    }
    // The driver wants an interrupt once the third buffer is used (used_event = 2).
    f.rx.set_used_event(2);
    f.peer.send(&host_frame(60, 0, 0, 1)).unwrap();
    f.peer.send(&host_frame(60, 0, 0, 2)).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.rx.used_idx(), 2);
    assert_eq!(f.line.rises(), 0);
    f.peer.send(&host_frame(60, 0, 0, 3)).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.line.rises(), 1);
}

#[test]
fn after_reset_the_device_is_idle_until_activated_again() {
    let mut f = fixture(0, RateLimitConfig::default());
    f.net.reset();
    f.peer.send(&host_frame(60, 0, 0, 1)).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    f.net.queue_notify(RX_QUEUE);
    f.net.handle_event(TOKEN_KICK, EventSet::IN);
    assert!(f.net.active.is_none());
    assert_eq!(f.net.stats().rx_frames, 0);
}

#[test]
fn a_long_burst_is_served_in_passes_that_let_the_vcpus_in() {
    let mut f = fixture(feature::MRG_RXBUF | features::RING_EVENT_IDX, RateLimitConfig::default());
    let n = FRAMES_PER_PASS as u64 + 16;
    for i in 0..n {
        f.rx.add(&[(BUFFERS + i * 0x1000, 2048, true)]);
        f.peer.send(&host_frame(60, 0, 0, i as u8)).unwrap();
    }
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    assert_eq!(f.rx.used_idx(), FRAMES_PER_PASS as u16, "one pass, one budget");
    // The pass asked the I/O thread for another one.
    assert_eq!(f.net.kick.read().unwrap(), 1);
    f.net.handle_event(TOKEN_KICK, EventSet::IN);
    assert_eq!(u64::from(f.rx.used_idx()), n);
    assert_eq!(f.net.stats().rx_frames, n);
}

#[test]
fn metrics_count_frames_and_bytes_without_headers() {
    let mut f = fixture(0, RateLimitConfig::default());
    let metrics = f.net.metrics().unwrap();
    // Two frames received, one dropped for its size, one for its header.
    f.rx.add(&[(BUFFERS, 2048, true)]);
    f.rx.add(&[(BUFFERS + 0x1000, 2048, true)]);
    f.peer.send(&host_frame(700, 0, 0, 1)).unwrap();
    f.peer.send(&host_frame(4000, 0, 0, 2)).unwrap();
    f.peer.send(&host_frame(100, 0, GSO_TCPV4, 3)).unwrap();
    f.peer.send(&host_frame(60, 0, 0, 4)).unwrap();
    f.net.handle_event(TOKEN_TAP, EventSet::IN);
    // One frame sent.
    let frame = host_frame(1234, 0, 0, 5);
    f.ram.write_slice(BUFFERS + 0x4000, &frame).unwrap();
    f.tx.add(&[(BUFFERS + 0x4000, frame.len() as u32, false)]);
    kick_tx(&mut f);

    let got: std::collections::HashMap<_, _> = metrics.snapshot().into_iter().collect();
    assert_eq!(got["rx_packets"], 2);
    assert_eq!(got["rx_bytes"], 760);
    assert_eq!(got["rx_dropped"], 2);
    assert_eq!(got["tx_packets"], 1);
    assert_eq!(got["tx_bytes"], 1234);
    assert_eq!(got["tx_dropped"], 0);
    assert_eq!(got["tx_errors"], 0);
    let s = f.net.stats();
    assert_eq!((s.rx_frames, s.rx_bytes, s.tx_frames), (2, 760, 1), "the same numbers");
}
