//! Unit tests of the balloon: queue numbering, PFN handling, configuration space, and the
//! queues driven from the driver's side with virtio-queue's mock rings in a real GuestRam.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::GuestAddress;

use super::*;
use crate::event::EventHandler;
use crate::IrqLine;

const BASE: u64 = 0x8000_0000;
const RAM: u64 = 16 << 20;
/// Where the mock rings live (the first MiB of RAM); buffers go above.
const RINGS: u64 = BASE;
const DATA: u64 = BASE + (1 << 20);
const Q: u16 = 16;

const ALL: u64 = feature::STATS_VQ | feature::REPORTING;

#[test]
fn queues_exist_for_offered_features_in_spec_order() {
    use Role::*;
    assert_eq!(layout(0), [Inflate, Deflate]);
    assert_eq!(layout(feature::STATS_VQ), [Inflate, Deflate, Stats]);
    assert_eq!(layout(feature::REPORTING), [Inflate, Deflate, Reporting], "reporting_vq is 2");
    assert_eq!(layout(ALL), [Inflate, Deflate, Stats, Reporting], "reporting_vq is 3");
}

#[test]
fn roles_follow_what_the_driver_accepted_and_made_ready() {
    use Role::*;
    let s = |r: &[Role]| r.iter().map(|&r| Some(r)).collect::<Vec<_>>();
    // Everything accepted (Linux): the offered layout.
    assert_eq!(assign_roles(ALL, ALL, &[true; 4]), s(&[Inflate, Deflate, Stats, Reporting]));
    assert_eq!(assign_roles(0, 0, &[true; 2]), s(&[Inflate, Deflate]));
    assert_eq!(
        assign_roles(feature::REPORTING, feature::REPORTING, &[true; 3]),
        s(&[Inflate, Deflate, Reporting])
    );
    // Reporting declined: queue 3 is unused.
    assert_eq!(
        assign_roles(ALL, feature::STATS_VQ, &[true, true, true, false]),
        vec![Some(Inflate), Some(Deflate), Some(Stats), None]
    );
    // Stats declined, reporting kept at its offered index 3 (QEMU's numbering)...
    assert_eq!(
        assign_roles(ALL, feature::REPORTING, &[true, true, false, true]),
        vec![Some(Inflate), Some(Deflate), None, Some(Reporting)]
    );
    // ...or moved down to 2 by a driver that numbers by accepted features (Linux's find_vqs).
    assert_eq!(
        assign_roles(ALL, feature::REPORTING, &[true, true, true, false]),
        vec![Some(Inflate), Some(Deflate), Some(Reporting), None]
    );
}

#[test]
fn pfns_are_bounds_checked_sorted_and_batched_into_runs() {
    let first = (BASE / BALLOON_PAGE) as u32;
    let last = ((BASE + RAM) / BALLOON_PAGE) as u32 - 1;
    let mut pfns = vec![
        first + 3,
        first + 1,
        u32::MAX,
        first + 2,
        last,
        first + 9,
        first + 2, // a duplicate
        first - 1, // below RAM
        last + 1,  // just past the end
        0,
    ];
    let mut runs = Vec::new();
    let outside = page_runs(&mut pfns, BASE, BASE + RAM, |a, l| runs.push((a, l)));
    assert_eq!(outside, 4);
    assert_eq!(
        runs,
        [
            (BASE + 0x1000, 3 * BALLOON_PAGE),
            (BASE + 0x9000, BALLOON_PAGE),
            (BASE + RAM - BALLOON_PAGE, BALLOON_PAGE)
        ]
    );
    let mut none: Vec<u32> = Vec::new();
    assert_eq!(page_runs(&mut none, BASE, BASE + RAM, |_, _| panic!("nothing to discard")), 0);
}

#[test]
fn reported_ranges_shrink_to_whole_pages() {
    assert_eq!(whole_pages(0x8020_0000, 0x20_0000), Some((0x8020_0000, 0x20_0000)));
    assert_eq!(whole_pages(0x8000_0001, 0x2000), Some((0x8000_1000, 0x1000)));
    assert_eq!(whole_pages(0x8000_0001, 0x1000), None, "no whole page inside");
    assert_eq!(whole_pages(u64::MAX - 10, 0x10_0000), None, "wraps around");
    assert_eq!(whole_pages(0, 0), None);
}

fn config(target_mib: u64, stats: u64, reporting: bool) -> BalloonConfig {
    BalloonConfig { target_mib, stats_interval_s: stats, free_page_reporting: reporting }
}

fn read_u32(b: &Balloon, offset: u64) -> u32 {
    let mut d = [0u8; 4];
    b.read_config(offset, &mut d);
    u32::from_le_bytes(d)
}

#[test]
fn config_space_has_the_target_and_the_drivers_actual() {
    let mut b = Balloon::new(&config(3, 0, false)).unwrap();
    assert_eq!(read_u32(&b, 0), 3 * 256, "num_pages counts 4 KiB pages");
    b.write_config(4, &7000u32.to_le_bytes());
    assert_eq!(read_u32(&b, 4), 7000);
    b.write_config(5, &[1]);
    assert_eq!(read_u32(&b, 4), 7000 - (7000 & 0xff00) + 0x100, "byte writes");
    b.write_config(0, &[0xff; 4]);
    assert_eq!(read_u32(&b, 0), 768, "num_pages is the host's");
    let mut far = [0xaau8; 8];
    b.read_config(6, &mut far);
    assert_eq!(&far[2..], &[0; 6], "past the config space reads zero");
    b.read_config(u64::MAX - 1, &mut far);
    assert_eq!(far, [0; 8]);
    b.write_config(u64::MAX, &[1, 2]);
    assert_eq!(b.status().actual_pages, read_u32(&b, 4));
}

#[test]
fn features_and_queues_follow_the_config() {
    let plain = Balloon::new(&config(0, 0, false)).unwrap();
    assert_eq!(plain.queue_max_sizes().len(), 2);
    assert_eq!(plain.device_features() & ALL, 0);
    assert_ne!(plain.device_features() & feature::DEFLATE_ON_OOM, 0);
    assert_ne!(plain.device_features() & features::VERSION_1, 0);
    assert_eq!(plain.device_features() & feature::MUST_TELL_HOST, 0);
    let full = Balloon::new(&config(0, 1, true)).unwrap();
    assert_eq!(full.queue_max_sizes(), [QUEUE_SIZE; 4]);
    assert_eq!(full.device_features() & ALL, ALL);
    assert!(Balloon::new(&config(1 << 40, 0, false)).is_err(), "target beyond 2^32 pages");
}

#[derive(Default)]
struct Line(AtomicBool);
impl IrqLine for Line {
    fn set_level(&self, level: bool) {
        self.0.store(level, Ordering::SeqCst);
    }
}

struct NoHandler;
impl EventHandler for NoHandler {
    fn handle_event(&self, _: u64, _: EventSet) {}
}

/// A balloon and the driver's side of its queues in a 16 MiB guest RAM.
struct Rig {
    ram: Arc<GuestRam>,
    /// The driver's side of queues 0-3 (rings 64 KiB apart). Made once: making one zeroes
    /// its rings.
    mocks: Vec<MockSplitQueue<'static, keel_memory::GuestMemoryMmap>>,
    line: Arc<Line>,
    interrupt: Arc<Interrupt>,
    dev: Balloon,
}

impl Rig {
    fn new(cfg: &BalloonConfig) -> Rig {
        let ram = Arc::new(GuestRam::new(BASE, RAM).unwrap());
        // The mocks borrow the memory for the whole test: leak one reference to it.
        let mem: &'static keel_memory::GuestMemoryMmap = Box::leak(Box::new(ram.clone())).memory();
        let mocks = (0..4)
            .map(|i| MockSplitQueue::create(mem, GuestAddress(RINGS + i as u64 * 0x1_0000), Q))
            .collect();
        let line = Arc::new(Line::default());
        let interrupt = Arc::new(Interrupt::new(line.clone()));
        Rig { ram, mocks, line, interrupt, dev: Balloon::new(cfg).unwrap() }
    }

    /// Activates with `acked` features; the queues marked in `ready` are set up.
    fn activate(&mut self, acked: u64, ready: &[bool]) -> Result<(), ActivateError> {
        let queues = ready
            .iter()
            .enumerate()
            .map(
                |(i, &r)| {
                    if r {
                        self.mocks[i].create_queue().unwrap()
                    } else {
                        Queue::new(Q).unwrap()
                    }
                },
            )
            .collect();
        let handler: Weak<dyn EventHandler> = Weak::<NoHandler>::new();
        self.dev.activate(Activation {
            queues,
            features: self.dev.device_features() & (acked | features::VERSION_1),
            ram: self.ram.clone(),
            interrupt: self.interrupt.clone(),
            events: Arc::new(EventLoop::new().unwrap()),
            handler,
        })
    }

    /// Puts one chain of `(addr, len, flags)` descriptors on queue `i`, at table slot `slot`.
    fn offer(&self, i: usize, slot: u16, descs: &[(u64, u32, u16)]) {
        let n = descs.len();
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(k, &(addr, len, flags))| {
                let next = if k + 1 < n { VRING_DESC_F_NEXT } else { 0 };
                RawDescriptor::from(SplitDescriptor::new(
                    addr,
                    len,
                    flags | next,
                    slot + k as u16 + 1,
                ))
            })
            .collect();
        self.mocks[i].add_desc_chains(&raw, slot).unwrap();
    }

    /// (used index, ids in the used ring) of queue `i`.
    fn used(&self, i: usize) -> (u16, Vec<u32>) {
        let used = self.mocks[i].used();
        let idx = used.idx().load();
        let ids =
            (0..idx.min(Q)).map(|k| used.ring().ref_at(k as usize).unwrap().load().id()).collect();
        (idx, ids)
    }

    fn touch(&self, addr: u64, len: u64) {
        for a in (addr..addr + len).step_by(BALLOON_PAGE as usize) {
            assert!(self.ram.store::<u8>(a, 0x5a));
        }
    }

    fn resident(&self, addr: u64) -> bool {
        self.ram.load::<u8>(addr) != Some(0)
    }
}

const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;

fn pfn_bytes(pfns: &[u32]) -> Vec<u8> {
    pfns.iter().flat_map(|p| p.to_le_bytes()).collect()
}

#[test]
fn inflating_returns_the_listed_pages_to_the_host() {
    let mut rig = Rig::new(&config(1, 0, false));
    rig.activate(0, &[true, true]).unwrap();
    let pages = BASE + (4 << 20);
    rig.touch(pages, 64 * BALLOON_PAGE);
    // The first 32 of those pages, in a scrambled order, plus junk the device must skip.
    let first = (pages / BALLOON_PAGE) as u32;
    let mut list: Vec<u32> = (0..32).rev().map(|k| first + k).collect();
    list.extend([0, u32::MAX, first + 5]);
    rig.ram.write_slice(DATA, &pfn_bytes(&list)).unwrap();
    rig.offer(0, 0, &[(DATA, list.len() as u32 * 4 + 3, 0)]);
    rig.dev.queue_notify(0);
    assert_eq!(rig.used(0), (1, vec![0]), "the buffer came back");
    assert!(rig.line.0.load(Ordering::SeqCst), "and the driver was interrupted");
    for k in 0..64 {
        assert_eq!(rig.resident(pages + k * BALLOON_PAGE), k >= 32, "page {k}");
    }
    // The discarded memory is usable again, as after a deflate.
    rig.touch(pages, BALLOON_PAGE);
    rig.offer(1, 0, &[(DATA, 4, 0)]);
    rig.dev.queue_notify(1);
    assert_eq!(rig.used(1), (1, vec![0]));
    assert!(rig.resident(pages));
}

#[test]
fn hostile_inflate_buffers_do_no_harm() {
    let mut rig = Rig::new(&config(0, 0, false));
    rig.activate(0, &[true, true]).unwrap();
    rig.touch(BASE + (2 << 20), BALLOON_PAGE);
    // Outside RAM, straddling its end, huge, empty, and device-writable: all used, nothing lost.
    rig.offer(0, 0, &[(0x1000, 4096, 0)]);
    rig.offer(0, 1, &[(BASE + RAM - 8, 64, 0)]);
    rig.offer(0, 2, &[(BASE, u32::MAX, 0)]);
    rig.offer(0, 3, &[(DATA, 0, 0)]);
    rig.offer(0, 4, &[(DATA, 4096, VRING_DESC_F_WRITE)]);
    rig.dev.queue_notify(0);
    assert_eq!(rig.used(0).0, 5);
    assert!(rig.resident(BASE + (2 << 20)));
    // Notifications for queues that don't exist are ignored.
    rig.dev.queue_notify(2);
    rig.dev.queue_notify(u16::MAX);
}

fn stats_buffer(entries: &[(u16, u64)]) -> Vec<u8> {
    entries.iter().flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes())).collect()
}

#[test]
fn statistics_are_kept_and_the_buffer_held_until_they_are_due() {
    let mut rig = Rig::new(&config(0, 1, false));
    // Linux queues its first statistics before DRIVER_OK, when notifications don't reach the
    // device: activation must pick the buffer up by itself.
    let first = stats_buffer(&[(stat::FREE_MEMORY, 100 << 20), (stat::TOTAL_MEMORY, 256 << 20)]);
    rig.ram.write_slice(DATA, &first).unwrap();
    rig.offer(2, 0, &[(DATA, first.len() as u32, 0)]);
    rig.activate(feature::STATS_VQ, &[true; 3]).unwrap();
    let s = rig.dev.status().stats.expect("statistics arrived at activation");
    assert_eq!(s.get(stat::FREE_MEMORY), Some(100 << 20));
    assert_eq!(s.get(stat::TOTAL_MEMORY), Some(256 << 20));
    assert_eq!(s.get(stat::SWAP_IN), None);
    assert_eq!(rig.used(2).0, 0, "held, not returned");

    rig.dev.stats_due();
    assert_eq!(rig.used(2), (1, vec![0]), "returned when due");
    assert!(rig.line.0.load(Ordering::SeqCst));
    rig.dev.stats_due();
    assert_eq!(rig.used(2).0, 1, "nothing held, nothing returned");

    // The driver's refill, with a tag keel doesn't know and a torn last entry.
    let mut next = stats_buffer(&[(stat::FREE_MEMORY, 5), (99, 7), (stat::OOM_KILLS, 1)]);
    next.extend([1, 2, 3]);
    rig.ram.write_slice(DATA + 0x1000, &next[..12]).unwrap();
    rig.ram.write_slice(DATA + 0x2000, &next[12..]).unwrap();
    rig.offer(2, 1, &[(DATA + 0x1000, 12, 0), (DATA + 0x2000, next.len() as u32 - 12, 0)]);
    rig.dev.queue_notify(2);
    let s = rig.dev.status().stats.unwrap();
    assert_eq!(s.entries, [(stat::FREE_MEMORY, 5), (99, 7), (stat::OOM_KILLS, 1)]);
    assert_eq!(stat::name(stat::OOM_KILLS), Some("oom-kills"));
    assert_eq!(stat::name(99), None);
}

#[test]
fn a_huge_statistics_buffer_is_read_only_in_part() {
    let mut rig = Rig::new(&config(0, 1, false));
    rig.activate(feature::STATS_VQ, &[true; 3]).unwrap();
    rig.offer(2, 0, &[(BASE + (2 << 20), 8 << 20, 0)]);
    rig.dev.queue_notify(2);
    assert_eq!(rig.dev.status().stats.unwrap().entries.len(), MAX_STATS);
    rig.offer(2, 1, &[(0x10, 100, 0)]);
    rig.dev.queue_notify(2);
    assert_eq!(rig.dev.status().stats.unwrap().entries.len(), 0, "outside RAM: nothing read");
    assert_eq!(rig.used(2), (1, vec![0]), "the first of two outstanding buffers went back");
}

#[test]
fn free_page_reporting_discards_whole_pages_on_the_right_queue() {
    for (offered, acked, ready, index) in [
        (ALL, ALL, vec![true; 4], 3),
        (feature::REPORTING, feature::REPORTING, vec![true; 3], 2),
        (ALL, feature::REPORTING, vec![true, true, true, false], 2),
    ] {
        let mut rig = Rig::new(&config(0, (offered & feature::STATS_VQ != 0) as u64, true));
        rig.activate(acked, &ready).unwrap();
        let block = BASE + (8 << 20);
        rig.touch(block, 4 << 20);
        // Linux reports 2 MiB blocks; one device-writable descriptor per block.
        rig.offer(
            index,
            0,
            &[
                (block, 2 << 20, VRING_DESC_F_WRITE),
                (block + (3 << 20) + 1, 0x2000, VRING_DESC_F_WRITE),
            ],
        );
        rig.dev.queue_notify(index as u16);
        assert_eq!(rig.used(index), (1, vec![0]), "{offered:#x}/{acked:#x}");
        assert!(!rig.resident(block) && !rig.resident(block + (2 << 20) - 1));
        assert!(rig.resident(block + (2 << 20)), "not reported");
        assert!(rig.resident(block + (3 << 20)), "partial page kept");
        assert!(!rig.resident(block + (3 << 20) + 0x1000), "whole page inside the range");
    }
}

#[test]
fn activation_needs_the_queues_the_features_call_for() {
    let mut rig = Rig::new(&config(0, 1, true));
    assert!(matches!(
        rig.activate(ALL, &[true, false, true, true]),
        Err(ActivateError::BadQueue(1))
    ));
    assert!(matches!(
        rig.activate(ALL, &[true, true, false, false]),
        Err(ActivateError::BadQueue(2))
    ));
    rig.activate(0, &[true, true, false, false]).unwrap();
}

#[test]
fn targets_are_set_at_runtime_and_checked_against_ram() {
    let mut rig = Rig::new(&config(4, 0, false));
    assert_eq!(rig.dev.set_target_mib(8), Ok(false), "no driver yet: it reads the target at start");
    assert_eq!(
        rig.dev.set_target_mib(1 << 24),
        Err(BalloonError::TargetOutOfRange { mib: 1 << 24 })
    );
    rig.activate(0, &[true, true]).unwrap();
    assert_eq!(rig.dev.set_target_mib(8), Ok(false), "unchanged");
    assert_eq!(rig.dev.set_target_mib(2), Ok(true), "the driver must be told");
    assert_eq!(
        rig.dev.set_target_mib(17),
        Err(BalloonError::TargetTooLarge { mib: 17, ram_mib: 16 })
    );
    assert_eq!(rig.dev.status().target_mib(), 2);
    assert_eq!(read_u32(&rig.dev, 0), 512);
    rig.dev.write_config(4, &256u32.to_le_bytes());
    assert_eq!(rig.dev.status().actual_mib(), 1);
    rig.dev.reset();
    assert_eq!(rig.dev.status().actual_pages, 0, "a reset driver holds nothing");
    assert_eq!(rig.dev.status().target_pages, 512, "the host's target stays");
    rig.dev.queue_notify(0);
}

#[test]
fn the_vmm_finds_the_balloon_behind_a_trait_object() {
    let mut dev: Box<dyn VirtioDevice> = create(&config(1, 0, false)).unwrap();
    assert_eq!(as_balloon(dev.as_mut()).unwrap().status().target_mib(), 1);
    let mut rng: Box<dyn VirtioDevice> = Box::new(super::super::rng::Rng::new());
    assert_eq!(as_balloon(rng.as_mut()).err(), Some(BalloonError::NotABalloon));
}

#[test]
fn the_vmm_sets_targets_and_reads_status_through_the_transport() {
    let ram = Arc::new(GuestRam::new(BASE, RAM).unwrap());
    let events = Arc::new(EventLoop::new().unwrap());
    let t = MmioTransport::new(
        create(&config(2, 0, false)).unwrap(),
        ram,
        Arc::new(Line::default()),
        events,
    );
    assert_eq!(status(&t).unwrap().target_pages, 512);
    set_target(&t, 5).unwrap();
    let s = status(&t).unwrap();
    assert_eq!((s.target_mib(), s.actual_mib(), &s.stats), (5, 0, &None));
    assert_eq!(s.to_string(), "target 5 MiB, guest holds 0 MiB; no statistics");
    let rng = MmioTransport::new(
        Box::new(super::super::rng::Rng::new()),
        Arc::new(GuestRam::new(BASE, RAM).unwrap()),
        Arc::new(Line::default()),
        Arc::new(EventLoop::new().unwrap()),
    );
    assert_eq!(set_target(&rng, 1), Err(BalloonError::NotABalloon));
}

#[test]
fn metrics_count_listed_pages_reported_bytes_and_statistics() {
    let mut rig = Rig::new(&config(1, 1, true));
    rig.activate(ALL, &[true; 4]).unwrap();
    let metrics = rig.dev.metrics().unwrap();
    let first = ((BASE + (4 << 20)) / BALLOON_PAGE) as u32;
    let list: Vec<u32> = (0..10).map(|k| first + k).collect();
    rig.ram.write_slice(DATA, &pfn_bytes(&list)).unwrap();
    // 10 PFNs over two descriptors, plus 3 bytes of a torn PFN that doesn't count.
    rig.offer(0, 0, &[(DATA, 24, 0), (DATA + 24, 16 + 3, 0)]);
    rig.dev.queue_notify(0);
    rig.offer(1, 0, &[(DATA, 12, 0)]);
    rig.dev.queue_notify(1);
    let block = BASE + (8 << 20);
    rig.offer(
        3,
        0,
        &[(block, 2 << 20, VRING_DESC_F_WRITE), (block + 1, 0x2000, VRING_DESC_F_WRITE)],
    );
    rig.dev.queue_notify(3);
    let s = stats_buffer(&[(stat::FREE_MEMORY, 1)]);
    rig.ram.write_slice(DATA + 0x1000, &s).unwrap();
    rig.offer(2, 0, &[(DATA + 0x1000, s.len() as u32, 0)]);
    rig.dev.queue_notify(2);

    let got: std::collections::HashMap<_, _> = metrics.snapshot().into_iter().collect();
    assert_eq!(got["inflated_pages"], 10);
    assert_eq!(got["deflated_pages"], 3);
    assert_eq!(got["reported_bytes"], (2 << 20) + 0x1000, "whole pages only");
    assert_eq!(got["stats_updates"], 1);
    assert_eq!(rig.interrupt.raised(), 3, "inflate, deflate and reporting buffers came back");
}
