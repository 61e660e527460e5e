//! The block device against a driver written here: real image files, guest RAM, and split
//! virtqueues laid out as a driver would (virtio 1.2 §2.7).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use keel_memory::GuestRam;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;

use super::request::*;
use super::*;
use crate::event::{EventHandler, EventLoop};
use crate::testutil::MockLine;
use crate::virtio::config::{RateLimitConfig, TokenBucketConfig};

const RAM_BASE: u64 = 0x8000_0000;
const RAM_SIZE: u64 = 4 << 20;
const DESC: u64 = RAM_BASE;
const AVAIL: u64 = RAM_BASE + 0x1000;
const USED: u64 = RAM_BASE + 0x2000;
/// Where the test's buffers go.
const BUFFERS: u64 = RAM_BASE + 0x10000;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

/// A scratch image file, deleted at the end of the test.
struct TempImage(PathBuf);

impl TempImage {
    fn new(contents: &[u8]) -> TempImage {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "keel-blk-test-{}-{}.img",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        TempImage(path)
    }

    fn contents(&self) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A disk whose sector `s` holds the byte `s as u8 + 1` throughout.
fn patterned(sectors: u64) -> Vec<u8> {
    (0..sectors).flat_map(|s| [(s as u8).wrapping_add(1); 512]).collect()
}

fn config(img: &TempImage) -> BlockConfig {
    BlockConfig {
        path: img.0.clone(),
        read_only: false,
        format: Some(DiskFormat::Raw),
        serial: None,
        rate_limit: RateLimitConfig::default(),
    }
}

struct NoHandler;
impl EventHandler for NoHandler {
    fn handle_event(&self, _: u64, _: EventSet) {}
}

/// The driver side: descriptor table, available ring, used ring, and a bump allocator for
/// buffers.
struct Driver {
    ram: Arc<GuestRam>,
    next_desc: u16,
    avail_idx: u16,
    next_buf: u64,
    line: Arc<MockLine>,
}

/// A descriptor to be: (address, length, device-writable).
type D = (u64, u32, bool);

impl Driver {
    fn new() -> Driver {
        let ram = Arc::new(GuestRam::new(RAM_BASE, RAM_SIZE).unwrap());
        Driver { ram, next_desc: 0, avail_idx: 0, next_buf: BUFFERS, line: Arc::default() }
    }

    fn queue(&self) -> Queue {
        let mut q = Queue::new(QUEUE_SIZE).unwrap();
        q.set_size(QUEUE_SIZE);
        q.set_desc_table_address(Some(DESC as u32), Some((DESC >> 32) as u32));
        q.set_avail_ring_address(Some(AVAIL as u32), Some((AVAIL >> 32) as u32));
        q.set_used_ring_address(Some(USED as u32), Some((USED >> 32) as u32));
        q.set_ready(true);
        q
    }

    /// Activates `blk` on this driver's queue, with every offered feature accepted.
    fn activate(&self, blk: &mut Block) {
        self.activate_with(blk, blk.device_features());
    }

    fn activate_with(&self, blk: &mut Block, features: u64) {
        let handler: Weak<dyn EventHandler> = Weak::<NoHandler>::new();
        blk.activate(Activation {
            queues: vec![self.queue()],
            features,
            ram: self.ram.clone(),
            interrupt: Arc::new(Interrupt::new(self.line.clone())),
            events: Arc::new(EventLoop::new().unwrap()),
            handler,
        })
        .unwrap();
    }

    fn alloc(&mut self, len: u64) -> u64 {
        let a = self.next_buf;
        self.next_buf += len.next_multiple_of(16);
        assert!(self.next_buf <= RAM_BASE + RAM_SIZE);
        a
    }

    fn put(&self, addr: u64, data: &[u8]) {
        self.ram.write_slice(addr, data).unwrap();
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.ram.read_slice(addr, &mut v).unwrap();
        v
    }

    fn write_desc(&self, table: u64, i: u16, (addr, len, write): D, next: Option<u16>) {
        let mut flags = if write { F_WRITE } else { 0 };
        if next.is_some() {
            flags |= F_NEXT;
        }
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.unwrap_or(0).to_le_bytes());
        self.put(table + i as u64 * 16, &raw);
    }

    fn publish(&mut self, head: u16) {
        let slot = AVAIL + 4 + (self.avail_idx % QUEUE_SIZE) as u64 * 2;
        self.put(slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.put(AVAIL + 2, &self.avail_idx.to_le_bytes());
    }

    /// Makes a chain of `descs` available; returns its head.
    fn submit(&mut self, descs: &[D]) -> u16 {
        let head = self.next_desc;
        for (k, d) in descs.iter().enumerate() {
            let i = self.next_desc;
            self.next_desc += 1;
            let next = (k + 1 < descs.len()).then_some(i + 1);
            self.write_desc(DESC, i, *d, next);
        }
        self.publish(head);
        head
    }

    /// Makes `descs` available through an indirect table (§2.7.5.3).
    fn submit_indirect(&mut self, descs: &[D]) -> u16 {
        let table = self.alloc(16 * descs.len() as u64);
        for (k, d) in descs.iter().enumerate() {
            let next = (k + 1 < descs.len()).then_some(k as u16 + 1);
            self.write_desc(table, k as u16, *d, next);
        }
        let head = self.next_desc;
        self.next_desc += 1;
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&table.to_le_bytes());
        raw[8..12].copy_from_slice(&(16 * descs.len() as u32).to_le_bytes());
        raw[12..14].copy_from_slice(&F_INDIRECT.to_le_bytes());
        self.put(DESC + head as u64 * 16, &raw);
        self.publish(head);
        head
    }

    /// The used ring: (head, length) of every element so far.
    fn used(&self) -> Vec<(u16, u32)> {
        let idx = u16::from_le_bytes(self.get(USED + 2, 2).try_into().unwrap());
        (0..idx)
            .map(|i| {
                let e = self.get(USED + 4 + (i % QUEUE_SIZE) as u64 * 8, 8);
                (
                    u32::from_le_bytes(e[0..4].try_into().unwrap()) as u16,
                    u32::from_le_bytes(e[4..8].try_into().unwrap()),
                )
            })
            .collect()
    }

    /// A request header in its own buffer.
    fn header(&mut self, kind: u32, sector: u64) -> u64 {
        let h = self.alloc(16);
        let mut raw = [0u8; 16];
        raw[0..4].copy_from_slice(&kind.to_le_bytes());
        raw[8..16].copy_from_slice(&sector.to_le_bytes());
        self.put(h, &raw);
        h
    }

    /// A status byte, preset to a value no device writes.
    fn status(&mut self) -> u64 {
        let s = self.alloc(1);
        self.put(s, &[0xff]);
        s
    }

    /// A request the way Linux builds it: header, data (if any), status. Returns (data
    /// address, status address).
    fn request(&mut self, kind: u32, sector: u64, data: &[u8], device_writes: bool) -> (u64, u64) {
        let h = self.header(kind, sector);
        let d = self.alloc(data.len() as u64);
        self.put(d, data);
        let s = self.status();
        let mut chain = vec![(h, 16, false)];
        if !data.is_empty() {
            chain.push((d, data.len() as u32, device_writes));
        }
        chain.push((s, 1, true));
        self.submit(&chain);
        (d, s)
    }
}

fn notify(blk: &mut Block) {
    blk.queue_notify(0);
}

fn range(sector: u64, sectors: u32, flags: u32) -> Vec<u8> {
    let mut r = sector.to_le_bytes().to_vec();
    r.extend(sectors.to_le_bytes());
    r.extend(flags.to_le_bytes());
    r
}

#[test]
fn the_configuration_space_describes_the_disk() {
    let img = TempImage::new(&patterned(100));
    let blk = Block::new(&config(&img)).unwrap();
    let f = blk.device_features();
    for bit in [feature::SEG_MAX, feature::BLK_SIZE, feature::FLUSH, feature::DISCARD] {
        assert_ne!(f & bit, 0, "{bit:#x}");
    }
    assert_ne!(f & feature::WRITE_ZEROES, 0);
    assert_eq!(f & feature::RO, 0);
    assert_ne!(f & features::VERSION_1, 0);
    let read = |off: u64, n: usize| {
        let mut b = vec![0u8; n];
        blk.read_config(off, &mut b);
        b
    };
    assert_eq!(u64::from_le_bytes(read(0, 8).try_into().unwrap()), 100, "capacity");
    assert_eq!(read(0, 4), 100u32.to_le_bytes(), "4-byte access to the low half");
    assert_eq!(u32::from_le_bytes(read(12, 4).try_into().unwrap()), SEG_MAX);
    assert_eq!(u32::from_le_bytes(read(20, 4).try_into().unwrap()), 512, "blk_size");
    assert_eq!(u32::from_le_bytes(read(40, 4).try_into().unwrap()), MAX_RANGES);
    assert_eq!(read(56, 1), [1], "write_zeroes_may_unmap");
    assert_eq!(read(58, 8), [0; 8], "past the end reads as zero");
    assert_eq!(read(u64::MAX - 2, 8), [0; 8]);
}

#[test]
fn a_read_only_disk_offers_ro_and_neither_discard_nor_write_zeroes() {
    let img = TempImage::new(&patterned(8));
    let blk = Block::new(&BlockConfig { read_only: true, ..config(&img) }).unwrap();
    let f = blk.device_features();
    assert_ne!(f & feature::RO, 0);
    assert_eq!(f & (feature::DISCARD | feature::WRITE_ZEROES), 0);
}

#[test]
fn reads_and_writes_reach_the_image() {
    let img = TempImage::new(&patterned(16));
    let mut blk = Block::new(&config(&img)).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);

    let (rd, rs) = drv.request(T_IN, 2, &[0; 3 * 512], true);
    let data: Vec<u8> = (0..1024).map(|i| (i * 7) as u8).collect();
    let (_, ws) = drv.request(T_OUT, 9, &data, false);
    notify(&mut blk);

    assert_eq!(drv.get(rs, 1), [S_OK]);
    assert_eq!(drv.get(rd, 3 * 512), patterned(16)[2 * 512..5 * 512]);
    assert_eq!(drv.get(ws, 1), [S_OK]);
    assert_eq!(img.contents()[9 * 512..11 * 512], data);
    // Used lengths: everything the device wrote (data and status), then just the status.
    assert_eq!(drv.used(), vec![(0, 3 * 512 + 1), (3, 1)]);
    assert!(drv.line.level(), "the driver is interrupted");
}

#[test]
fn header_data_and_status_may_be_framed_any_way() {
    let img = TempImage::new(&patterned(8));
    let mut blk = Block::new(&config(&img)).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);

    // A write whose header and data share one buffer, split at odd places into three
    // descriptors, and whose status shares a buffer with nothing.
    let buf = drv.alloc(16 + 512);
    let mut bytes = vec![0u8; 16 + 512];
    bytes[0..4].copy_from_slice(&T_OUT.to_le_bytes());
    bytes[8..16].copy_from_slice(&5u64.to_le_bytes());
    bytes[16..].fill(0xab);
    drv.put(buf, &bytes);
    let s = drv.status();
    drv.submit(&[(buf, 5, false), (buf + 5, 100, false), (buf + 105, 423, false), (s, 1, true)]);
    // A read whose data and status share one writable buffer.
    let h = drv.header(T_IN, 5);
    let ds = drv.alloc(513);
    drv.submit(&[(h, 16, false), (ds, 200, true), (ds + 200, 313, true)]);
    notify(&mut blk);

    assert_eq!(drv.get(s, 1), [S_OK]);
    assert_eq!(img.contents()[5 * 512..6 * 512], [0xab; 512]);
    assert_eq!(drv.get(ds, 512), [0xab; 512]);
    assert_eq!(drv.get(ds + 512, 1), [S_OK]);
    assert_eq!(drv.used()[1].1, 513);
}

#[test]
fn indirect_descriptor_tables_work() {
    let img = TempImage::new(&patterned(8));
    let mut blk = Block::new(&config(&img)).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);
    let h = drv.header(T_IN, 1);
    let d1 = drv.alloc(512);
    let d2 = drv.alloc(1024);
    let s = drv.status();
    drv.submit_indirect(&[(h, 16, false), (d1, 512, true), (d2, 1024, true), (s, 1, true)]);
    notify(&mut blk);
    assert_eq!(drv.get(s, 1), [S_OK]);
    assert_eq!(drv.get(d1, 512), [2; 512]);
    assert_eq!(drv.get(d2, 1024), patterned(8)[2 * 512..4 * 512]);
    assert_eq!(drv.used(), vec![(0, 1537)]);
}

#[test]
fn requests_beyond_the_end_or_of_partial_sectors_fail_with_ioerr() {
    let original = patterned(8);
    let img = TempImage::new(&original);
    let mut blk = Block::new(&config(&img)).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);
    let statuses = [
        drv.request(T_IN, 7, &[0; 1024], true).1,
        drv.request(T_OUT, 7, &[1; 1024], false).1,
        drv.request(T_OUT, 8, &[1; 512], false).1,
        drv.request(T_IN, u64::MAX, &[0; 512], true).1,
        drv.request(T_OUT, u64::MAX / 256, &[1; 512], false).1,
        drv.request(T_OUT, 0, &[1; 100], false).1,
        drv.request(T_IN, 0, &[0; 513], true).1,
    ];
    notify(&mut blk);
    for (i, s) in statuses.iter().enumerate() {
        assert_eq!(drv.get(*s, 1), [S_IOERR], "request {i}");
    }
    assert_eq!(img.contents(), original, "nothing was written");
    // A failed read wrote no data: the used length covers nothing.
    assert_eq!(drv.used()[0].1, 0);
}

#[test]
fn a_read_only_disk_refuses_every_write() {
    let original = patterned(8);
    let img = TempImage::new(&original);
    let mut blk = Block::new(&BlockConfig { read_only: true, ..config(&img) }).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);
    let w = drv.request(T_OUT, 0, &[9; 512], false).1;
    let z = drv.request(T_WRITE_ZEROES, 0, &range(0, 1, 0), false).1;
    let d = drv.request(T_DISCARD, 0, &range(0, 1, 0), false).1;
    let (rd, r) = drv.request(T_IN, 0, &[0; 512], true);
    let f = drv.request(T_FLUSH, 0, &[], false).1;
    notify(&mut blk);
    assert_eq!(drv.get(w, 1), [S_IOERR]);
    assert_eq!(drv.get(z, 1), [S_IOERR]);
    assert_eq!(drv.get(d, 1), [S_IOERR]);
    assert_eq!(drv.get(r, 1), [S_OK], "reads work");
    assert_eq!(drv.get(rd, 512), [1; 512]);
    assert_eq!(drv.get(f, 1), [S_OK]);
    assert_eq!(img.contents(), original);
}

#[test]
fn unknown_request_types_are_unsupported() {
    let img = TempImage::new(&patterned(8));
    let mut blk = Block::new(&config(&img)).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);
    // SCSI commands, GET_LIFETIME, SECURE_ERASE, a zoned command, nonsense.
    let s: Vec<u64> = [2, 10, 14, 16, 0xdead_beef]
        .iter()
        .map(|&t| drv.request(t, 0, &[0; 512], true).1)
        .collect();
    notify(&mut blk);
    for a in s {
        assert_eq!(drv.get(a, 1), [S_UNSUPP]);
    }
}

#[test]
fn get_id_answers_the_serial_padded_with_nuls() {
    let img = TempImage::new(&patterned(8));
    let mut blk =
        Block::new(&BlockConfig { serial: Some("keel-disk-7".into()), ..config(&img) }).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);
    let (d, s) = drv.request(T_GET_ID, 0, &[0xee; 20], true);
    notify(&mut blk);
    assert_eq!(drv.get(s, 1), [S_OK]);
    assert_eq!(drv.get(d, 20), b"keel-disk-7\0\0\0\0\0\0\0\0\0");
    assert_eq!(drv.used(), vec![(0, 21)]);

    let long = BlockConfig { serial: Some("x".repeat(21)), ..config(&img) };
    let err = Block::new(&long).err().unwrap().to_string();
    assert!(err.contains("20 bytes"), "{err}");
}

#[test]
fn write_zeroes_and_discard_follow_the_spec() {
    let img = TempImage::new(&patterned(64));
    let mut blk = Block::new(&config(&img)).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);
    let mut two = range(4, 2, FLAG_UNMAP);
    two.extend(range(10, 1, 0));
    let zero = drv.request(T_WRITE_ZEROES, 0, &two, false).1;
    let discard = drv.request(T_DISCARD, 0, &range(32, 8, 0), false).1;
    let discard_unmap = drv.request(T_DISCARD, 0, &range(32, 8, FLAG_UNMAP), false).1;
    let zero_flags = drv.request(T_WRITE_ZEROES, 0, &range(20, 1, 2), false).1;
    // The second range is off the end: nothing at all may happen.
    let mut bad = range(20, 1, 0);
    bad.extend(range(63, 2, 0));
    let zero_end = drv.request(T_WRITE_ZEROES, 0, &bad, false).1;
    let short = drv.request(T_WRITE_ZEROES, 0, &range(20, 1, 0)[..15], false).1;
    let many: Vec<u8> = (0..MAX_RANGES as u64 + 1).flat_map(|i| range(i, 1, 0)).collect();
    let too_many = drv.request(T_DISCARD, 0, &many, false).1;
    let huge = drv.request(T_WRITE_ZEROES, 0, &range(0, MAX_RANGE_SECTORS + 1, 0), false).1;
    notify(&mut blk);

    assert_eq!(drv.get(zero, 1), [S_OK]);
    assert_eq!(drv.get(discard, 1), [S_OK]);
    assert_eq!(drv.get(discard_unmap, 1), [S_UNSUPP], "unmap is for write zeroes only");
    assert_eq!(drv.get(zero_flags, 1), [S_UNSUPP], "unknown flag");
    assert_eq!(drv.get(zero_end, 1), [S_IOERR]);
    assert_eq!(drv.get(short, 1), [S_IOERR]);
    assert_eq!(drv.get(too_many, 1), [S_IOERR]);
    assert_eq!(drv.get(huge, 1), [S_IOERR]);
    let disk = img.contents();
    let mut expect = patterned(64);
    expect[4 * 512..6 * 512].fill(0);
    expect[10 * 512..11 * 512].fill(0);
    // Discarded sectors may read as anything; compare the rest.
    expect[32 * 512..40 * 512].copy_from_slice(&disk[32 * 512..40 * 512]);
    assert_eq!(disk, expect);
}

#[test]
fn malformed_chains_get_an_error_or_are_returned_untouched() {
    let original = patterned(8);
    let img = TempImage::new(&original);
    let mut blk = Block::new(&config(&img)).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);
    let outside = RAM_BASE + RAM_SIZE - 100;

    // No device-writable byte: nowhere to put a status.
    let h = drv.header(T_OUT, 0);
    let d = drv.alloc(512);
    drv.submit(&[(h, 16, false), (d, 512, false)]);
    // The status byte is outside RAM.
    let h = drv.header(T_IN, 0);
    drv.submit(&[(h, 16, false), (RAM_BASE + RAM_SIZE, 1, true)]);
    // Data outside RAM, partly and entirely, and of absurd length.
    let (h, a) = (drv.header(T_OUT, 0), drv.status());
    drv.submit(&[(h, 16, false), (outside, 512, false), (a, 1, true)]);
    let (h, b) = (drv.header(T_IN, 0), drv.status());
    drv.submit(&[(h, 16, false), (0x1000, u32::MAX - 100, true), (b, 1, true)]);
    // A header of 12 bytes.
    let (h, c) = (drv.header(T_IN, 0), drv.status());
    drv.submit(&[(h, 12, false), (c, 1, true)]);
    // A device-readable descriptor after a writable one (§2.7.4.2).
    let (h, e, d2) = (drv.header(T_OUT, 0), drv.status(), drv.alloc(512));
    drv.submit(&[(h, 16, false), (e, 1, true), (d2, 512, false)]);
    // And a correct request for comparison.
    let (h, ok) = (drv.header(T_OUT, 0), drv.status());
    drv.submit(&[(h, 16, false), (d2, 512, false), (ok, 1, true)]);
    notify(&mut blk);

    let used = drv.used();
    assert_eq!(used.len(), 7, "every chain was returned: {used:?}");
    assert_eq!(used[0].1, 0);
    assert_eq!(used[1].1, 0);
    for s in [a, b, c, e] {
        assert_eq!(drv.get(s, 1), [S_IOERR]);
    }
    assert_eq!(drv.get(ok, 1), [S_OK]);
    // The huge read wrote only its status, at the far end: nothing from the start.
    assert_eq!(used[2..], [(4, 1), (7, 0), (10, 1), (12, 1), (15, 1)]);
    assert_eq!(img.contents()[..512], [0u8; 512]);
    assert_eq!(img.contents()[512..], original[512..]);
}

#[test]
fn flush_succeeds_and_write_through_applies_without_the_flush_feature() {
    let img = TempImage::new(&patterned(8));
    let mut blk = Block::new(&config(&img)).unwrap();
    let mut drv = Driver::new();
    let features = blk.device_features() & !feature::FLUSH;
    drv.activate_with(&mut blk, features);
    assert!(blk.disk.write_through);
    let s = drv.request(T_OUT, 1, &[3; 512], false).1;
    let f = drv.request(T_FLUSH, 0, &[], false).1;
    notify(&mut blk);
    assert_eq!(drv.get(s, 1), [S_OK]);
    assert_eq!(drv.get(f, 1), [S_OK]);
    assert_eq!(img.contents()[512..1024], [3; 512]);

    let drv = Driver::new();
    blk.reset();
    drv.activate(&mut blk);
    assert!(!blk.disk.write_through);
}

#[test]
fn the_rate_limiter_holds_requests_back_until_its_timer_fires() {
    let img = TempImage::new(&patterned(64));
    // Slow enough that scheduling delays on a loaded machine refill far less than a request.
    let bucket = TokenBucketConfig { size: 4096, one_time_burst: 0, refill_time_ms: 1000 };
    let limited = BlockConfig {
        rate_limit: RateLimitConfig { bandwidth: Some(bucket), ops: None },
        ..config(&img)
    };
    let mut blk = Block::new(&limited).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);
    let start = Instant::now();
    let s: Vec<u64> = (0..3).map(|i| drv.request(T_IN, i * 8, &[0; 4096], true).1).collect();
    notify(&mut blk);
    assert_eq!(drv.used().len(), 1, "the bucket holds one request's bytes");
    assert_eq!(drv.get(s[1], 1), [0xff], "the second request was not touched");
    notify(&mut blk);
    assert_eq!(drv.used().len(), 1, "a notification doesn't get past the limiter");
    assert_eq!(counters(&blk)["rate_limited"], 2, "held back once per pass");
    // The timer fires when 4096 bytes have refilled; the event loop would call this then
    // (timer_fired waits for the timer, so this also measures the wait).
    blk.handle_event(TIMER_TOKEN, EventSet::IN);
    assert_eq!(drv.used().len(), 2);
    blk.handle_event(TIMER_TOKEN, EventSet::IN);
    assert_eq!(drv.used().len(), 3);
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
    for a in s {
        assert_eq!(drv.get(a, 1), [S_OK]);
    }
    assert_eq!(counters(&blk)["read_bytes"], 3 * 4096);
}

#[test]
fn opening_reports_missing_and_locked_disks_clearly() {
    let missing = BlockConfig {
        path: std::env::temp_dir().join("keel-blk-test-no-such-disk.img"),
        read_only: false,
        format: None,
        serial: None,
        rate_limit: RateLimitConfig::default(),
    };
    let err = Block::new(&missing).err().unwrap().to_string();
    assert!(err.contains("keel-blk-test-no-such-disk.img does not exist"), "{err}");

    let img = TempImage::new(&patterned(8));
    let first = Block::new(&config(&img)).unwrap();
    let err = Block::new(&config(&img)).err().unwrap().to_string();
    assert!(err.contains("is in use by another VM or program"), "{err}");
    assert!(err.contains("read_only = true"), "{err}");
    let ro = BlockConfig { read_only: true, ..config(&img) };
    let err = Block::new(&ro).err().unwrap().to_string();
    assert!(err.contains("being written by another VM"), "{err}");
    drop(first);
    // Readers share an image.
    let _a = Block::new(&ro).unwrap();
    let _b = Block::new(&ro).unwrap();
}

#[test]
fn a_corrupt_available_index_does_not_hang_the_device() {
    let img = TempImage::new(&patterned(8));
    let mut blk = Block::new(&config(&img)).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);
    let s = drv.request(T_IN, 0, &[0; 512], true).1;
    // The driver claims 1000 new buffers in a ring of 256.
    drv.put(AVAIL + 2, &1000u16.to_le_bytes());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        notify(&mut blk);
        let _ = tx.send(());
    });
    assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok(), "queue_notify must return");
    assert_eq!(drv.get(s, 1), [0xff], "nothing is served from a broken ring");
}

#[test]
fn every_request_is_one_operation_for_the_rate_limiter() {
    let img = TempImage::new(&patterned(8));
    // A slow refill (one token a second), so a loaded machine can't sneak a third token in
    // between building the device and the first notification.
    let bucket = TokenBucketConfig { size: 2, one_time_burst: 0, refill_time_ms: 2000 };
    let limited = BlockConfig {
        rate_limit: RateLimitConfig { bandwidth: None, ops: Some(bucket) },
        ..config(&img)
    };
    let mut blk = Block::new(&limited).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);
    drv.request(T_FLUSH, 0, &[], false);
    drv.request(T_GET_ID, 0, &[0; 20], true);
    drv.request(T_IN, 0, &[0; 512], true);
    notify(&mut blk);
    assert_eq!(drv.used().len(), 2, "two operations fit in the bucket, whatever their kind");
    blk.handle_event(TIMER_TOKEN, EventSet::IN);
    assert_eq!(drv.used().len(), 3);
}

/// The device's counters, by name.
fn counters(blk: &Block) -> std::collections::HashMap<&'static str, u64> {
    blk.metrics().unwrap().snapshot().into_iter().collect()
}

#[test]
fn counters_move_by_exactly_what_the_requests_did() {
    let img = TempImage::new(&patterned(64));
    let mut blk = Block::new(&config(&img)).unwrap();
    let mut drv = Driver::new();
    drv.activate(&mut blk);
    assert!(counters(&blk).values().all(|&n| n == 0));

    drv.request(T_IN, 2, &[0; 3 * 512], true);
    drv.request(T_IN, 0, &[0; 8 * 512], true);
    drv.request(T_OUT, 9, &[7; 2 * 512], false);
    drv.request(T_FLUSH, 0, &[], false);
    drv.request(T_DISCARD, 0, &range(32, 8, 0), false);
    drv.request(T_WRITE_ZEROES, 0, &range(4, 2, 0), false);
    drv.request(T_GET_ID, 0, &[0; ID_LEN], true);
    // Failures: a read past the end, a write of half a sector, an unknown type.
    drv.request(T_IN, 63, &[0; 2 * 512], true);
    drv.request(T_OUT, 0, &[1; 256], false);
    drv.request(99, 0, &[], false);
    notify(&mut blk);

    let c = counters(&blk);
    assert_eq!(c["read_bytes"], 11 * 512, "only successful reads move bytes");
    assert_eq!(c["write_bytes"], 2 * 512);
    assert_eq!(c["read_ops"], 3);
    assert_eq!(c["write_ops"], 2);
    assert_eq!(c["flush_ops"], 1);
    assert_eq!(c["discard_ops"], 1);
    assert_eq!(c["write_zeroes_ops"], 1);
    assert_eq!(c["errors"], 3);
    assert_eq!(c["rate_limited"], 0);

    // A chain with no status byte can't even be answered: an error, nothing else.
    let h = drv.header(T_OUT, 0);
    let d = drv.alloc(512);
    drv.submit(&[(h, 16, false), (d, 512, false)]);
    notify(&mut blk);
    let c2 = counters(&blk);
    assert_eq!(c2["errors"], 4);
    assert_eq!(c2["write_ops"], 2);
    // The counters are the device's own: a reset driver doesn't reset them.
    blk.reset();
    assert_eq!(counters(&blk), c2);
}
