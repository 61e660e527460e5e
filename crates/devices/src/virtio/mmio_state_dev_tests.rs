//! Save and restore of the network, socket and balloon devices behind their transports (the
//! helpers are in mmio_state_tests.rs). Where the device works on the I/O thread, a real
//! event loop runs.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::virtio::balloon::{self, feature as balloon_feature, Balloon};
use crate::virtio::config::{BalloonConfig, NetConfig, VsockConfig};
use crate::virtio::net::tap::Offloads;
use crate::virtio::net::{self, Backend, Net, HDR_LEN};
use crate::virtio::state::{BalloonState, VsockState};
use crate::virtio::vsock::Vsock;
use crate::virtio::INT_CONFIG_CHANGE;

/// The devices' I/O thread, stopped when dropped.
struct IoThread {
    ev: Arc<EventLoop>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IoThread {
    fn start() -> IoThread {
        let ev = events();
        let runner = ev.clone();
        IoThread { ev, thread: Some(std::thread::spawn(move || runner.run())) }
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        self.ev.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// Waits (at most 10 s) for something the I/O thread does.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A datagram socket in place of the TAP: one datagram is one frame.
struct Sock(UnixDatagram);

impl Backend for Sock {
    fn name(&self) -> &str {
        "test0"
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf)
    }
    fn write(&self, frame: &[u8]) -> io::Result<usize> {
        self.0.send(frame)
    }
    fn set_offloads(&self, _: Offloads) -> io::Result<()> {
        Ok(())
    }
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// A network device on a fresh "TAP", and the host's end of it.
fn net_device() -> (Box<dyn VirtioDevice>, UnixDatagram) {
    let (dev, host) = UnixDatagram::pair().unwrap();
    dev.set_nonblocking(true).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let config = NetConfig {
        tap: "test0".into(),
        mac: [2, 0x6b, 0x6c, 0, 0, 1],
        rate_limit: RateLimitConfig::default(),
    };
    (Box::new(Net::new(Box::new(Sock(dev)), &config).unwrap()), host)
}

/// A frame as it crosses the TAP: a zero virtio-net header, then `len` patterned bytes.
fn frame(seed: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; HDR_LEN];
    f.extend((0..len).map(|i| seed.wrapping_add(i as u8)));
    f
}

fn read_guest(ram: &GuestRam, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ram.read_slice(addr, &mut v).unwrap();
    v
}

const NET_RX: usize = 0;
const NET_TX: usize = 1;

fn send_frame(g: &mut Guest, at: u64, f: &[u8]) -> u16 {
    g.ram.write_slice(at, f).unwrap();
    let head = g.add(NET_TX, &[(at, f.len() as u32, false)]);
    g.notify(NET_TX as u32);
    head
}

/// What the guest finds in a receive buffer: the frame with num_buffers = 1 (§5.1.6.4).
fn delivered(f: &[u8]) -> Vec<u8> {
    let mut want = f.to_vec();
    want[10..12].copy_from_slice(&1u16.to_le_bytes());
    want
}

#[test]
fn net_carries_a_pending_frame_over_and_goes_on_after_restore() {
    let io = IoThread::start();
    let (dev, host) = net_device();
    let wanted = features::RING_EVENT_IDX | net::feature::MRG_RXBUF;
    let mut g = Guest::boot(dev, &io.ev, wanted);

    let tx1 = frame(1, 100);
    let head = send_frame(&mut g, DATA, &tx1);
    let mut got = vec![0u8; 2048];
    let n = host.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &tx1[..]);
    wait_until("tx used", || g.qs[NET_TX].used_idx(&g.ram) == 1);
    assert_eq!(g.take_used(NET_TX), [(head, 0)]);

    let rx_buf = DATA + 0x1_0000;
    let head = g.add(NET_RX, &[(rx_buf, 2048, true)]);
    g.notify(NET_RX as u32);
    let rx1 = frame(2, 200);
    host.send(&rx1).unwrap();
    wait_until("rx used", || g.qs[NET_RX].used_idx(&g.ram) == 1);
    assert_eq!(g.take_used(NET_RX), [(head, rx1.len() as u32)]);
    assert_eq!(read_guest(&g.ram, rx_buf, rx1.len()), delivered(&rx1));

    // No receive buffer left: the next frame waits in the device.
    let rx2 = frame(3, 300);
    host.send(&rx2).unwrap();
    let pending = |g: &Guest| {
        g.t.with_device(|d| {
            matches!(d.save_device_state(), DeviceState::Net(NetState { rx_pending: Some(_) }))
        })
    };
    wait_until("the frame to be read", || pending(&g));
    let state = {
        let _paused = io.ev.pause();
        g.t.save_state().unwrap()
    };
    assert_eq!(state.device, DeviceState::Net(NetState { rx_pending: Some(rx2.clone()) }));
    for q in &state.queues {
        assert_eq!((q.next_avail, q.next_used, q.event_idx), (1, 1, true));
    }

    // The new machine: its own I/O thread and "TAP".
    let io2 = IoThread::start();
    let (dev2, host2) = net_device();
    let mut h = {
        let _paused = io2.ev.pause();
        g.restored(&state, dev2, &io2.ev).unwrap()
    };
    let rx_buf = DATA + 0x2_0000;
    let head = h.add(NET_RX, &[(rx_buf, 2048, true)]);
    h.notify(NET_RX as u32);
    wait_until("the saved frame", || h.qs[NET_RX].used_idx(&h.ram) == 2);
    assert_eq!(h.take_used(NET_RX), [(head, rx2.len() as u32)], "at the second entry");
    assert_eq!(read_guest(&h.ram, rx_buf, rx2.len()), delivered(&rx2));

    let tx2 = frame(4, 60);
    let head = send_frame(&mut h, DATA + 0x3_0000, &tx2);
    let n = host2.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &tx2[..]);
    wait_until("tx used", || h.qs[NET_TX].used_idx(&h.ram) == 2);
    assert_eq!(h.take_used(NET_TX), [(head, 0)]);
    assert!(h.line.level());

    // A frame with no room for a header is not a frame.
    let mut bad = state.clone();
    bad.device = DeviceState::Net(NetState { rx_pending: Some(vec![0; 4]) });
    let err = Guest::new(net_device().0, &io2.ev).t.restore_state(&bad).unwrap_err();
    assert!(matches!(err, StateError::Invalid { device: "virtio-net", .. }), "{err:?}");
}

const VSOCK_RX: usize = 0;
const VSOCK_TX: usize = 1;
const VSOCK_EVENT: usize = 2;
const VSOCK_HDR: u32 = 44;
/// Receive buffers: descriptor d's is at `RX_BUFS + 0x2000 * d`.
const RX_BUFS: u64 = DATA + 0x10_0000;
const EVENT_BUFS: u64 = DATA + 0x20_0000;
const OP_REQUEST: u16 = 1;
const OP_RESPONSE: u16 = 2;
const OP_RST: u16 = 3;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-mmio-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn vsock(cid: u64, path: PathBuf) -> Box<dyn VirtioDevice> {
    Box::new(Vsock::new(&VsockConfig { guest_cid: cid, uds_path: path }).unwrap())
}

/// A stream packet header (§5.10.6): the fields the tests use.
fn vsock_header(src: (u64, u32), dst: (u64, u32), op: u16) -> [u8; 44] {
    let mut h = [0u8; 44];
    h[0..8].copy_from_slice(&src.0.to_le_bytes());
    h[8..16].copy_from_slice(&dst.0.to_le_bytes());
    h[16..20].copy_from_slice(&src.1.to_le_bytes());
    h[20..24].copy_from_slice(&dst.1.to_le_bytes());
    h[28..30].copy_from_slice(&1u16.to_le_bytes()); // VIRTIO_VSOCK_TYPE_STREAM
    h[30..32].copy_from_slice(&op.to_le_bytes());
    h[36..40].copy_from_slice(&65536u32.to_le_bytes()); // buf_alloc
    h
}

fn give_rx(g: &mut Guest, n: usize) {
    for _ in 0..n {
        let at = RX_BUFS + 0x2000 * g.qs[VSOCK_RX].next_desc as u64;
        g.add(VSOCK_RX, &[(at, 4096 + VSOCK_HDR, true)]);
    }
    g.notify(VSOCK_RX as u32);
}

fn give_events(g: &mut Guest, n: usize) {
    for _ in 0..n {
        let at = EVENT_BUFS + 0x10 * g.qs[VSOCK_EVENT].next_desc as u64;
        assert!(g.ram.store::<u32>(at, 0xffff_ffff), "not an event id yet");
        g.add(VSOCK_EVENT, &[(at, 4, true)]);
    }
    g.notify(VSOCK_EVENT as u32);
}

/// Sends a header-only packet; returns the (header of the) packets the guest received.
fn vsock_send(g: &mut Guest, at: u64, hdr: [u8; 44]) -> Vec<(u64, u32, u16)> {
    g.ram.write_slice(at, &hdr).unwrap();
    g.add(VSOCK_TX, &[(at, VSOCK_HDR, false)]);
    g.notify(VSOCK_TX as u32);
    g.take_used(VSOCK_RX)
        .into_iter()
        .map(|(head, len)| {
            assert_eq!(len, VSOCK_HDR);
            let b = RX_BUFS + 0x2000 * head as u64;
            let (cid, port) = (g.ram.load::<u64>(b + 8), g.ram.load::<u32>(b + 20));
            (cid.unwrap(), port.unwrap(), g.ram.load::<u16>(b + 30).unwrap())
        })
        .collect()
}

/// The transport-reset events the guest received (§5.10.6.7: id 0).
fn reset_events(g: &mut Guest) -> usize {
    let used = g.take_used(VSOCK_EVENT);
    for &(head, len) in &used {
        assert_eq!(len, 4);
        assert_eq!(g.ram.load::<u32>(EVENT_BUFS + 0x10 * head as u64), Some(0));
    }
    used.len()
}

#[test]
fn vsock_resets_the_transport_after_restore_and_reports_the_new_cid() {
    let dir = scratch_dir("vsock-reset");
    let ev = events();
    let mut g = Guest::boot(vsock(3, dir.join("v.sock")), &ev, features::RING_EVENT_IDX);
    give_rx(&mut g, 4);
    give_events(&mut g, 4);
    // The guest connects to a host program listening on port 52: a live connection.
    let listener = UnixListener::bind(dir.join("v.sock_52")).unwrap();
    let got = vsock_send(&mut g, DATA, vsock_header((3, 1000), (2, 52), OP_REQUEST));
    assert_eq!(got, [(3, 1000, OP_RESPONSE)]);
    let _host_end = listener.accept().unwrap();
    assert_eq!(g.qs[VSOCK_EVENT].used_idx(&g.ram), 0, "no event before the snapshot");

    let state = g.t.save_state().unwrap();
    assert_eq!(state.device, DeviceState::Vsock(VsockState { guest_cid: 3, active: true }));
    let positions: Vec<(u16, u16)> =
        state.queues.iter().map(|q| (q.next_avail, q.next_used)).collect();
    assert_eq!(positions, [(1, 1), (1, 1), (0, 0)]);

    // A clone: its VM file gives it CID 7 and its own socket.
    let mut h = g.restored(&state, vsock(7, dir.join("clone.sock")), &events()).unwrap();
    assert_eq!(reset_events(&mut h), 1, "the driver learns its connections are gone");
    assert!(h.line.level());
    assert_eq!(h.t.read(REG_CONFIG, 8), 7, "and reads its new CID");
    // Linux has re-read the CID; its next connection (nobody listens on 53) is refused,
    // through the next receive buffer and transmit entry.
    let got = vsock_send(&mut h, DATA + 0x1000, vsock_header((7, 1001), (2, 53), OP_REQUEST));
    assert_eq!(got, [(7, 1001, OP_RST)]);
    let again = h.t.save_state().unwrap();
    let positions: Vec<(u16, u16)> =
        again.queues.iter().map(|q| (q.next_avail, q.next_used)).collect();
    assert_eq!(positions, [(2, 2), (2, 2), (1, 1)]);
    assert_eq!(reset_events(&mut h), 0, "one reset only");
    drop((g, h));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn vsock_sends_the_reset_once_the_driver_gives_an_event_buffer() {
    let dir = scratch_dir("vsock-later");
    let ev = events();
    let g = Guest::boot(vsock(3, dir.join("v.sock")), &ev, features::RING_EVENT_IDX);
    let state = g.t.save_state().unwrap();
    let mut h = g.restored(&state, vsock(3, dir.join("clone.sock")), &ev).unwrap();
    assert_eq!(reset_events(&mut h), 0, "no buffer for it yet");
    give_events(&mut h, 2);
    assert_eq!(reset_events(&mut h), 1);

    // A device saved before it ran owes the driver no reset.
    let fresh = Guest::new(vsock(3, dir.join("idle.sock")), &ev);
    let state = fresh.t.save_state().unwrap();
    assert_eq!(state.device, DeviceState::Vsock(VsockState { guest_cid: 3, active: false }));
    let h = fresh.restored(&state, vsock(3, dir.join("idle2.sock")), &ev).unwrap();
    negotiate(&h.t, 0);
    let mut h = Guest { qs: (0..3).map(DriverQueue::new).collect(), ..h };
    for (i, q) in h.qs.iter().enumerate() {
        set_up_queue(&h.t, i as u32, q, 8);
    }
    w(&h.t, REG_STATUS, STATUS_RUNNING);
    give_events(&mut h, 2);
    assert_eq!(reset_events(&mut h), 0);
    drop((g, h, fresh));
    std::fs::remove_dir_all(&dir).unwrap();
}

const STATSQ: usize = 2;

#[test]
fn balloon_keeps_target_actual_and_the_held_statistics_buffer() {
    let cfg = BalloonConfig { target_mib: 0, stats_interval_s: 1, free_page_reporting: true };
    // No I/O thread for the first machine: its statistics timer never fires.
    let ev = events();
    let wanted = balloon_feature::STATS_VQ | balloon_feature::REPORTING | features::RING_EVENT_IDX;
    let mut g = Guest::boot(Box::new(Balloon::new(&cfg).unwrap()), &ev, wanted);
    assert_eq!(g.qs.len(), 4);

    // Statistics (§5.5.6.3): free memory 1000, total 2000; the device holds the buffer.
    let mut stats = Vec::new();
    for (tag, value) in [(4u16, 1000u64), (5, 2000)] {
        stats.extend(tag.to_le_bytes());
        stats.extend(value.to_le_bytes());
    }
    g.ram.write_slice(DATA, &stats).unwrap();
    let stats_head = g.add(STATSQ, &[(DATA, stats.len() as u32, false)]);
    g.notify(STATSQ as u32);
    assert_eq!(g.take_used(STATSQ), []);
    // Two pages inflated.
    let pfn = ((BASE + (8 << 20)) / 4096) as u32;
    let pfns: Vec<u8> = [pfn, pfn + 1].iter().flat_map(|p| p.to_le_bytes()).collect();
    g.ram.write_slice(DATA + 0x1000, &pfns).unwrap();
    let head = g.add(0, &[(DATA + 0x1000, 8, false)]);
    g.notify(0);
    assert_eq!(g.take_used(0), [(head, 0)]);
    // The host asks for 8 MiB; the driver says it holds them.
    balloon::set_target(&g.t, 8).unwrap();
    g.t.write(REG_CONFIG + 4, 4, 2048);

    let state = g.t.save_state().unwrap();
    let DeviceState::Balloon(saved) = &state.device else { panic!("{:?}", state.device) };
    let BalloonState { target_pages, actual_pages, stats_buffer, stats: saved_stats } = saved;
    assert_eq!((*target_pages, *actual_pages, *stats_buffer), (2048, 2048, Some(stats_head)));
    assert_eq!(saved_stats.as_ref().unwrap().entries, [(4, 1000), (5, 2000)]);
    assert_eq!(state.config_generation, 1);
    assert_eq!(state.interrupt_status, INT_USED_BUFFER | INT_CONFIG_CHANGE);

    // The new machine runs its I/O thread: the statistics timer is registered again.
    let io = IoThread::start();
    let mut h = {
        let _paused = io.ev.pause();
        g.restored(&state, Box::new(Balloon::new(&cfg).unwrap()), &io.ev).unwrap()
    };
    let status = balloon::status(&h.t).unwrap();
    assert_eq!((status.target_pages, status.actual_pages), (2048, 2048));
    assert_eq!(status.stats.unwrap().entries, [(4, 1000), (5, 2000)]);
    assert_eq!((h.t.read(REG_CONFIG, 4), h.t.read(REG_CONFIG + 4, 4)), (2048, 2048));
    assert_eq!(r(&h.t, REG_CONFIG_GENERATION), 1);
    // When statistics are due, the device gives back the buffer it held before the snapshot.
    wait_until("the statistics buffer", || h.qs[STATSQ].used_idx(&h.ram) == 1);
    assert_eq!(h.take_used(STATSQ), [(stats_head, 0)]);
    // Inflating goes on at the second entry.
    h.ram.write_slice(DATA + 0x2000, &(pfn + 2).to_le_bytes()).unwrap();
    let head = h.add(0, &[(DATA + 0x2000, 4, false)]);
    h.notify(0);
    assert_eq!(h.take_used(0), [(head, 0)]);
    assert_eq!(h.qs[0].used_idx(&h.ram), 2);

    // A balloon without statistics has a queue less...
    let plain = BalloonConfig { stats_interval_s: 0, ..cfg };
    let err = Guest::new(Box::new(Balloon::new(&plain).unwrap()), &ev)
        .t
        .restore_state(&state)
        .unwrap_err();
    assert_eq!(
        err,
        StateError::Shape { device: "virtio-balloon", what: "queues", saved: 4, here: 3 }
    );
    // ...and a held buffer beyond the queue is refused.
    let mut bad = state.clone();
    if let DeviceState::Balloon(b) = &mut bad.device {
        b.stats_buffer = Some(Q);
    }
    let err = g.restored(&bad, Box::new(Balloon::new(&cfg).unwrap()), &ev).err().unwrap();
    assert!(matches!(err, StateError::Invalid { device: "virtio-balloon", .. }), "{err:?}");
}
