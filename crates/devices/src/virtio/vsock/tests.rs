//! The device driven the way the Linux driver drives it: split virtqueues in guest RAM, real
//! Unix sockets on the host side (the event loop is not run: the tests deliver its events).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use keel_memory::GuestRam;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;

use super::connection::CONN_BUF_SIZE;
use super::packet::{op, shutdown, Header, HDR_SIZE, HOST_CID, TYPE_STREAM};
use super::*;
use crate::event::{EventHandler, EventLoop};
use crate::testutil::MockLine;

const BASE: u64 = 0x8000_0000;
const CID: u64 = 3;
const RX_BUF: u32 = 4096 + HDR_SIZE as u32;
/// Where rx buffers live (256 of 8 KiB); tx packets go above, from `TX_BUFS`.
const RX_BUFS: u64 = BASE + 0x10_0000;
const TX_BUFS: u64 = BASE + 0x40_0000;

/// The driver's side of one split virtqueue (§2.7): descriptor table, available and used
/// rings at fixed places in guest RAM.
struct DriverQueue {
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl DriverQueue {
    fn new(base: u64, size: u16) -> DriverQueue {
        let avail = base + 16 * size as u64;
        let used = (avail + 6 + 2 * size as u64 + 3) & !3;
        DriverQueue { desc: base, avail, used, size, next_desc: 0, avail_idx: 0, used_seen: 0 }
    }

    fn queue(&self, ram: &GuestRam) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc as u32), Some((self.desc >> 32) as u32));
        q.set_avail_ring_address(Some(self.avail as u32), Some((self.avail >> 32) as u32));
        q.set_used_ring_address(Some(self.used as u32), Some((self.used >> 32) as u32));
        q.set_ready(true);
        assert!(q.is_valid(ram.memory()));
        q
    }

    /// How many more chains the ring has room for.
    fn room(&self, ram: &GuestRam) -> u16 {
        let used: u16 = ram.load(self.used + 2).unwrap();
        self.size - self.avail_idx.wrapping_sub(used)
    }

    /// Makes a chain of (address, length, device-writable) buffers available; returns its head.
    fn add(&mut self, ram: &GuestRam, bufs: &[(u64, u32, bool)]) -> u16 {
        assert!(self.room(ram) > 0, "the test overfilled a ring");
        let head = self.next_desc;
        for (i, &(addr, len, write)) in bufs.iter().enumerate() {
            let idx = self.next_desc;
            self.next_desc = (self.next_desc + 1) % self.size;
            let last = i + 1 == bufs.len();
            let flags: u16 = if last { 0 } else { 1 } | if write { 2 } else { 0 };
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..16].copy_from_slice(&self.next_desc.to_le_bytes());
            ram.write_slice(self.desc + 16 * idx as u64, &d).unwrap();
        }
        let slot = self.avail + 4 + 2 * (self.avail_idx % self.size) as u64;
        ram.write_slice(slot, &head.to_le_bytes()).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        ram.write_slice(self.avail + 2, &self.avail_idx.to_le_bytes()).unwrap();
        head
    }

    /// Used entries (head, length) since the last call.
    fn take_used(&mut self, ram: &GuestRam) -> Vec<(u16, u32)> {
        let idx: u16 = ram.load(self.used + 2).unwrap();
        let mut out = Vec::new();
        while self.used_seen != idx {
            let e = self.used + 4 + 8 * (self.used_seen % self.size) as u64;
            out.push((ram.load::<u32>(e).unwrap() as u16, ram.load(e + 4).unwrap()));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }
}

struct NoHandler;
impl EventHandler for NoHandler {
    fn handle_event(&self, _: u64, _: EventSet) {}
}

/// A guest driver and the device, with a scratch directory for sockets.
struct Guest {
    ram: Arc<GuestRam>,
    dev: Vsock,
    rxq: DriverQueue,
    txq: DriverQueue,
    /// rx head → buffer address.
    rx_bufs: HashMap<u16, u64>,
    next_buf: u64,
    line: Arc<MockLine>,
    _handler: Arc<NoHandler>,
    dir: PathBuf,
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-vsock-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(dir: &Path) -> VsockConfig {
    VsockConfig { guest_cid: CID, uds_path: dir.join("v.sock") }
}

impl Guest {
    fn new(name: &str) -> Guest {
        let dir = scratch_dir(name);
        let ram = Arc::new(GuestRam::new(BASE, 16 << 20).unwrap());
        let mut dev = Vsock::new(&config(&dir)).unwrap();
        let rxq = DriverQueue::new(BASE, QUEUE_SIZE);
        let txq = DriverQueue::new(BASE + 0x10000, QUEUE_SIZE);
        let evq = DriverQueue::new(BASE + 0x20000, QUEUE_SIZE);
        let line = Arc::new(MockLine::default());
        let handler = Arc::new(NoHandler);
        let weak: Weak<dyn EventHandler> = Arc::downgrade(&handler) as _;
        dev.activate(Activation {
            queues: vec![rxq.queue(&ram), txq.queue(&ram), evq.queue(&ram)],
            features: dev.device_features(),
            ram: ram.clone(),
            interrupt: Arc::new(Interrupt::new(line.clone())),
            events: Arc::new(EventLoop::new().unwrap()),
            handler: weak,
        })
        .unwrap();
        Guest {
            ram,
            dev,
            rxq,
            txq,
            rx_bufs: HashMap::new(),
            next_buf: TX_BUFS,
            line,
            _handler: handler,
            dir,
        }
    }

    fn buf(&mut self, len: u32) -> u64 {
        let a = self.next_buf;
        self.next_buf += (len as u64 + 0xfff) & !0xfff;
        if self.next_buf > BASE + (15 << 20) {
            self.next_buf = TX_BUFS;
        }
        a
    }

    /// Puts raw bytes on the tx queue as one descriptor and notifies.
    fn send_raw(&mut self, bytes: &[u8]) {
        let a = self.buf(bytes.len() as u32);
        self.ram.write_slice(a, bytes).unwrap();
        self.txq.add(&self.ram, &[(a, bytes.len() as u32, false)]);
        self.dev.queue_notify(TX_QUEUE);
    }

    /// Sends a packet as the Linux driver does: header and payload in separate descriptors.
    fn send(&mut self, hdr: Header, payload: &[u8]) {
        let h = self.buf(HDR_SIZE as u32);
        self.ram.write_slice(h, &Header { len: payload.len() as u32, ..hdr }.to_bytes()).unwrap();
        let mut chain = vec![(h, HDR_SIZE as u32, false)];
        if !payload.is_empty() {
            let p = self.buf(payload.len() as u32);
            self.ram.write_slice(p, payload).unwrap();
            chain.push((p, payload.len() as u32, false));
        }
        self.txq.add(&self.ram, &chain);
        self.dev.queue_notify(TX_QUEUE);
        let used = self.txq.take_used(&self.ram);
        assert!(!used.is_empty(), "the device consumed the packet");
    }

    /// Offers up to `n` more rx buffers (as many as the ring has room for).
    fn give_rx(&mut self, n: usize) {
        for _ in 0..n.min(self.rxq.room(&self.ram) as usize) {
            // Each descriptor has its own buffer, as rx chains come back in order before
            // their descriptors are reused.
            let a = RX_BUFS + 0x2000 * self.rxq.next_desc as u64;
            let head = self.rxq.add(&self.ram, &[(a, RX_BUF, true)]);
            self.rx_bufs.insert(head, a);
        }
        self.dev.queue_notify(RX_QUEUE);
    }

    /// Packets the device put in rx buffers since the last call.
    fn recv(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        for (head, len) in self.rxq.take_used(&self.ram) {
            let Some(a) = self.rx_bufs.remove(&head) else { continue }; // a junk buffer
            let mut b = vec![0u8; len as usize];
            self.ram.read_slice(a, &mut b).unwrap();
            let hdr = Header::parse(b[..HDR_SIZE].try_into().unwrap());
            assert_eq!(hdr.len as usize, len as usize - HDR_SIZE, "used length = header + len");
            out.push((hdr, b[HDR_SIZE..].to_vec()));
        }
        out
    }

    /// Delivers "ready" for every host socket, as the event loop would.
    fn poll_host(&mut self) {
        self.dev.handle_event(0, EventSet::IN);
        for t in self.dev.muxer.tokens() {
            self.dev.handle_event(t, EventSet::IN | EventSet::OUT);
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hdr(op: u16, src_port: u32, dst_port: u32) -> Header {
    Header {
        src_cid: CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        type_: TYPE_STREAM,
        op,
        buf_alloc: 64 * 1024,
        ..Header::default()
    }
}

fn ops(pkts: &[(Header, Vec<u8>)]) -> Vec<u16> {
    pkts.iter().map(|p| p.0.op).collect()
}

#[test]
fn config_space_holds_the_guest_cid() {
    let dir = scratch_dir("config");
    let dev =
        Vsock::new(&VsockConfig { guest_cid: 0x1_0000_0007, uds_path: dir.join("s") }).unwrap();
    let mut b = [0u8; 8];
    dev.read_config(0, &mut b);
    assert_eq!(u64::from_le_bytes(b), 0x1_0000_0007);
    let mut hi = [0u8; 4];
    dev.read_config(4, &mut hi);
    assert_eq!(u32::from_le_bytes(hi), 1);
    dev.read_config(8, &mut hi);
    assert_eq!(hi, [0; 4]);
    dev.read_config(u64::MAX, &mut hi);
    assert_eq!(hi, [0; 4]);
    assert_eq!(dev.queue_max_sizes().len(), 3);
    assert_eq!(dev.device_type(), 19);
}

#[test]
fn the_socket_file_is_checked_replaced_when_stale_and_removed_at_the_end() {
    let dir = scratch_dir("socketfile");
    let cfg = config(&dir);
    // A stale socket from a previous run: nobody listens, so it is replaced.
    drop(UnixListener::bind(&cfg.uds_path).unwrap());
    let dev = Vsock::new(&cfg).unwrap();
    assert!(UnixStream::connect(&cfg.uds_path).is_ok());
    // A second device on the same path finds it in use.
    let e = Vsock::new(&cfg).err().unwrap().to_string();
    assert!(e.contains("v.sock") && e.contains("listening"), "{e}");
    drop(dev);
    assert!(!cfg.uds_path.exists(), "the socket file goes with the device");
    // Not a socket: left alone.
    std::fs::write(&cfg.uds_path, b"precious").unwrap();
    let e = Vsock::new(&cfg).err().unwrap().to_string();
    assert!(e.contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&cfg.uds_path).unwrap(), b"precious");
    // A directory that does not exist.
    let missing = VsockConfig { guest_cid: CID, uds_path: dir.join("nope/v.sock") };
    let e = Vsock::new(&missing).err().unwrap().to_string();
    assert!(e.contains("nope") && e.contains("does not exist"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_guest_connect_reaches_the_host_listener_and_bytes_flow_both_ways() {
    let mut g = Guest::new("guest-connect");
    let listener = UnixListener::bind(g.dir.join("v.sock_5000")).unwrap();
    g.give_rx(8);
    g.send(hdr(op::REQUEST, 40000, 5000), &[]);
    let pkts = g.recv();
    assert_eq!(ops(&pkts), [op::RESPONSE]);
    let r = pkts[0].0;
    assert_eq!((r.src_cid, r.src_port, r.dst_cid, r.dst_port), (HOST_CID, 5000, CID, 40000));
    assert_eq!(r.buf_alloc, CONN_BUF_SIZE);
    assert!(g.line.level(), "the driver was interrupted");
    let (mut host, _) = listener.accept().unwrap();

    g.send(hdr(op::RW, 40000, 5000), b"ping");
    let mut b = [0u8; 4];
    host.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");

    host.write_all(b"pong").unwrap();
    g.poll_host();
    let pkts = g.recv();
    assert_eq!(ops(&pkts), [op::RW]);
    assert_eq!(pkts[0].1, b"pong");
    assert_eq!(pkts[0].0.fwd_cnt, 4, "our fwd_cnt counts what the host took");

    // The guest closes: RST answers, the host sees end-of-file.
    g.send(Header { flags: shutdown::BOTH, ..hdr(op::SHUTDOWN, 40000, 5000) }, &[]);
    assert_eq!(ops(&g.recv()), [op::RST]);
    let mut rest = Vec::new();
    host.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert_eq!(g.dev.muxer.connection_count(), 0);

    // Packets each way (REQUEST, RW, SHUTDOWN out; RESPONSE, RW, RST in), payload bytes only.
    let m: HashMap<_, _> = g.dev.metrics().unwrap().snapshot().into_iter().collect();
    assert_eq!((m["tx_packets"], m["tx_bytes"]), (3, 4));
    assert_eq!((m["rx_packets"], m["rx_bytes"]), (3, 4));
    assert_eq!(m["connections"], 1);
}

#[test]
fn a_guest_connect_to_a_port_nobody_listens_on_is_reset() {
    let mut g = Guest::new("guest-refused");
    g.give_rx(2);
    g.send(hdr(op::REQUEST, 40001, 5001), &[]);
    let pkts = g.recv();
    assert_eq!(ops(&pkts), [op::RST]);
    assert_eq!((pkts[0].0.src_port, pkts[0].0.dst_port), (5001, 40001));
}

#[test]
fn a_host_connect_line_opens_a_stream_to_the_guest_within_its_credit() {
    let mut g = Guest::new("host-connect");
    let mut host = UnixStream::connect(g.dir.join("v.sock")).unwrap();
    host.write_all(b"CONNECT 1234\n").unwrap();
    g.poll_host();
    g.give_rx(4);
    let pkts = g.recv();
    assert_eq!(ops(&pkts), [op::REQUEST]);
    let req = pkts[0].0;
    assert_eq!((req.src_cid, req.dst_cid, req.dst_port), (HOST_CID, CID, 1234));
    let local = req.src_port;
    assert!(local >= 1 << 30);

    // The guest accepts with a small 10000-byte buffer.
    let mut resp = hdr(op::RESPONSE, 1234, local);
    resp.buf_alloc = 10_000;
    g.send(resp, &[]);
    let mut ok = vec![0u8; format!("OK {local}\n").len()];
    host.read_exact(&mut ok).unwrap();
    assert_eq!(ok, format!("OK {local}\n").as_bytes());

    // 100 KB from the host arrive in order, never more in flight than the guest allows.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let writer = {
        let data = data.clone();
        let mut host = host.try_clone().unwrap();
        std::thread::spawn(move || host.write_all(&data).unwrap())
    };
    let mut got = Vec::new();
    let mut fwd_cnt = 0u32;
    let mut rounds = 0;
    while got.len() < data.len() {
        rounds += 1;
        assert!(rounds < 100_000, "stalled at {} bytes", got.len());
        g.poll_host();
        g.give_rx(2);
        for (h, p) in g.recv() {
            match h.op {
                op::RW => {
                    assert!(got.len() as u32 + p.len() as u32 - fwd_cnt <= 10_000, "credit");
                    got.extend_from_slice(&p);
                }
                op::CREDIT_REQUEST | op::CREDIT_UPDATE => {}
                o => panic!("unexpected op {o}"),
            }
        }
        // The guest application reads everything: tell the device.
        if fwd_cnt != got.len() as u32 {
            fwd_cnt = got.len() as u32;
            let mut u = hdr(op::CREDIT_UPDATE, 1234, local);
            u.buf_alloc = 10_000;
            u.fwd_cnt = fwd_cnt;
            g.send(u, &[]);
        }
    }
    writer.join().unwrap();
    assert!(got == data, "the bytes arrived intact and in order");

    // The host closes: the guest hears SHUTDOWN (both directions), answers RST.
    drop(host);
    g.dev.handle_event(g.dev.muxer.tokens()[0], EventSet::IN | EventSet::HANG_UP);
    g.give_rx(2);
    let pkts = g.recv();
    assert_eq!(ops(&pkts), [op::SHUTDOWN]);
    assert_eq!(pkts[0].0.flags, shutdown::BOTH);
    g.send(hdr(op::RST, 1234, local), &[]);
    assert_eq!(g.dev.muxer.connection_count(), 0);
}

#[test]
fn a_guest_refusal_or_a_bad_line_closes_the_host_connection() {
    let mut g = Guest::new("host-refused");
    g.give_rx(4);
    let mut host = UnixStream::connect(g.dir.join("v.sock")).unwrap();
    host.write_all(b"CONNECT 99\n").unwrap();
    g.poll_host();
    let req = g.recv()[0].0;
    g.send(hdr(op::RST, 99, req.src_port), &[]);
    let mut rest = Vec::new();
    host.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "no OK line");

    for bad in [&b"HELLO\n"[..], b"CONNECT\n", b"CONNECT x\n", &[b'9'; 100]] {
        let mut host = UnixStream::connect(g.dir.join("v.sock")).unwrap();
        host.write_all(bad).unwrap();
        g.poll_host();
        // Closed: end-of-file, or a reset when it had sent more than we read.
        let mut rest = Vec::new();
        match host.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty()),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
    }
    assert!(g.recv().is_empty(), "the guest heard nothing of them");
    assert_eq!(g.dev.muxer.connection_count(), 0);
}

#[test]
fn a_guest_overrunning_its_credit_is_reset() {
    let mut g = Guest::new("overrun");
    let listener = UnixListener::bind(g.dir.join("v.sock_6000")).unwrap();
    g.give_rx(8);
    g.send(hdr(op::REQUEST, 40000, 6000), &[]);
    assert_eq!(ops(&g.recv()), [op::RESPONSE]);
    let (_host, _) = listener.accept().unwrap();
    // The host never reads: after its socket buffer and our 256 KiB, the guest oversteps.
    let chunk = vec![0x55u8; 60 * 1024];
    for _ in 0..64 {
        g.send(hdr(op::RW, 40000, 6000), &chunk);
        if g.dev.muxer.connection_count() == 0 {
            break;
        }
    }
    assert_eq!(g.dev.muxer.connection_count(), 0);
    // Credit updates while the host's socket buffer took some, then the reset.
    let ops = ops(&g.recv());
    assert_eq!(ops.last(), Some(&op::RST), "{ops:?}");
    assert!(ops[..ops.len() - 1].iter().all(|&o| o == op::CREDIT_UPDATE), "{ops:?}");
}

#[test]
fn malformed_packets_get_a_reset_or_are_ignored() {
    let mut g = Guest::new("malformed");
    g.give_rx(64);
    // Shorter than a header: consumed, nothing to answer.
    g.send_raw(&[0u8; 20]);
    assert_eq!(g.txq.take_used(&g.ram).len(), 1);
    // Another source CID: ignored.
    g.send(Header { src_cid: 7, ..hdr(op::REQUEST, 1, 2) }, &[]);
    assert!(g.recv().is_empty());
    // To a CID other than the host, a datagram type, an unknown op, data on no connection:
    // RST each.
    g.send(Header { dst_cid: 9, ..hdr(op::REQUEST, 1, 2) }, &[]);
    g.send(Header { type_: 3, ..hdr(op::REQUEST, 1, 2) }, &[]);
    g.send(hdr(200, 1, 2), &[]);
    g.send(hdr(op::RW, 1, 2), b"stray");
    assert_eq!(ops(&g.recv()), [op::RST; 4]);
    // An RST for nothing is not answered.
    g.send(hdr(op::RST, 1, 2), &[]);
    assert!(g.recv().is_empty());
    // A length larger than the chain.
    let mut raw = Header { len: 1000, ..hdr(op::RW, 1, 2) }.to_bytes().to_vec();
    raw.extend_from_slice(&[0; 10]);
    g.send_raw(&raw);
    assert_eq!(ops(&g.recv()), [op::RST]);

    // Random junk, including chains pointing outside RAM and zero-length rx buffers.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..2000 {
        let mut h = hdr((next() % 9) as u16, (next() % 4) as u32, (next() % 4) as u32);
        h.len = match i % 3 {
            0 => next() as u32,
            1 => (next() % 64) as u32,
            _ => 0,
        };
        h.flags = next() as u32;
        h.buf_alloc = next() as u32;
        h.fwd_cnt = next() as u32;
        if i % 5 == 0 {
            h.type_ = next() as u16;
        }
        let mut bytes = h.to_bytes().to_vec();
        bytes.extend((0..next() % 80).map(|_| next() as u8));
        g.give_rx(2);
        g.send_raw(&bytes);
        if i % 7 == 0 && g.rxq.room(&g.ram) >= 2 {
            g.txq.add(&g.ram, &[(0x1000, 64, false)]);
            g.rxq.add(&g.ram, &[(u64::MAX - 10, 100, true)]);
            g.rxq.add(&g.ram, &[(BASE + 0x200000, 0, true)]);
            g.dev.queue_notify(TX_QUEUE);
        }
        g.recv();
    }
    assert_eq!(g.txq.room(&g.ram), QUEUE_SIZE, "every tx packet was consumed");
}

#[test]
fn a_driver_publishing_more_than_a_ring_does_not_hang_the_device() {
    let mut g = Guest::new("overfull");
    // An avail index more than a ring ahead of what the device has seen (the spec forbids it).
    g.ram.write_slice(g.txq.avail + 2, &(QUEUE_SIZE + 5).to_le_bytes()).unwrap();
    g.dev.queue_notify(TX_QUEUE);
    g.ram.write_slice(g.rxq.avail + 2, &(QUEUE_SIZE + 5).to_le_bytes()).unwrap();
    g.dev.queue_notify(RX_QUEUE);
}

#[test]
fn a_device_reset_closes_every_connection() {
    let mut g = Guest::new("reset");
    let listener = UnixListener::bind(g.dir.join("v.sock_7000")).unwrap();
    g.give_rx(4);
    g.send(hdr(op::REQUEST, 40000, 7000), &[]);
    assert_eq!(ops(&g.recv()), [op::RESPONSE]);
    let (mut host, _) = listener.accept().unwrap();
    g.dev.reset();
    let mut rest = Vec::new();
    host.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    // The listening socket stays for the next driver.
    assert!(g.dir.join("v.sock").exists());
}

#[test]
fn queues_of_the_wrong_count_fail_activation() {
    let dir = scratch_dir("badqueues");
    let mut dev = Vsock::new(&config(&dir)).unwrap();
    let ram = Arc::new(GuestRam::new(BASE, 1 << 20).unwrap());
    let handler: Arc<dyn EventHandler> = Arc::new(NoHandler);
    let r = dev.activate(Activation {
        queues: vec![Queue::new(QUEUE_SIZE).unwrap()],
        features: 0,
        ram,
        interrupt: Arc::new(Interrupt::new(Arc::new(MockLine::default()))),
        events: Arc::new(EventLoop::new().unwrap()),
        handler: Arc::downgrade(&handler),
    });
    assert!(r.is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_tx_queue_waits_while_resets_pile_up() {
    let mut g = Guest::new("backpressure");
    // Each stray packet needs an RST, and the guest offers no rx buffers to take them.
    for i in 0..QUEUE_SIZE as u32 {
        g.send(hdr(op::RW, i, 1), b"x");
    }
    for i in 0..10 {
        g.send_raw(&hdr(op::RW, 1000 + i, 1).to_bytes());
    }
    assert_eq!(g.txq.room(&g.ram), QUEUE_SIZE - 10, "the tx queue waits");
    g.give_rx(64);
    assert_eq!(g.recv().len(), 64);
    assert_eq!(g.txq.room(&g.ram), QUEUE_SIZE, "and goes on once RSTs went out");
}

/// Delivers timer events until `done`, failing after a few seconds.
fn wait_for_timeouts(g: &mut Guest, done: impl Fn(&Guest) -> bool) {
    let start = std::time::Instant::now();
    while !done(g) {
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "no timeout happened");
        std::thread::sleep(std::time::Duration::from_millis(10));
        g.dev.handle_event(1, EventSet::IN);
    }
}

#[test]
fn a_guest_that_never_answers_times_out() {
    let mut g = Guest::new("timeouts");
    g.give_rx(8);
    // A host-initiated connection the guest never accepts: closed, and the guest gets RST.
    let mut host = UnixStream::connect(g.dir.join("v.sock")).unwrap();
    host.write_all(b"CONNECT 1234\n").unwrap();
    g.poll_host();
    assert_eq!(ops(&g.recv()), [op::REQUEST]);
    wait_for_timeouts(&mut g, |g| g.dev.muxer.connection_count() == 0);
    assert_eq!(ops(&g.recv()), [op::RST]);
    let mut rest = Vec::new();
    host.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    // The host closes a guest-initiated connection; the guest never sends its RST.
    let listener = UnixListener::bind(g.dir.join("v.sock_5000")).unwrap();
    g.send(hdr(op::REQUEST, 40000, 5000), &[]);
    assert_eq!(ops(&g.recv()), [op::RESPONSE]);
    drop(listener.accept().unwrap());
    let token = g.dev.muxer.tokens()[0];
    g.dev.handle_event(token, EventSet::IN | EventSet::HANG_UP);
    let pkts = g.recv();
    assert_eq!(ops(&pkts), [op::SHUTDOWN]);
    assert_eq!(pkts[0].0.flags, shutdown::BOTH);
    wait_for_timeouts(&mut g, |g| g.dev.muxer.connection_count() == 0);
    assert_eq!(ops(&g.recv()), [op::RST]);
}
