//! Dirty-page tracking: round semantics, every write path, and a race between writers and a
//! thread taking rounds and copying what they report (as live migration does).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use super::*;

const BASE: u64 = 0x8000_0000;

fn page(n: u64) -> u64 {
    BASE + n * PAGE_SIZE
}

fn pages(d: &DirtyPages) -> Vec<u64> {
    d.iter().collect()
}

/// A store as the CPU makes it: straight to RAM when the page's flags are zero, else write
/// and note (the slow path). The caller is a busy `RamWriter`.
fn hart_store(ram: &GuestRam, flags: &[AtomicU8], addr: u64, value: u64) {
    let i = ((addr - BASE) / PAGE_SIZE) as usize;
    if flags[i].load(Ordering::Relaxed) == 0 {
        // SAFETY: `addr` is an aligned address inside `ram` (the tests only pass such).
        unsafe { store_host::<u64>(ram.host_address(addr).unwrap(), value) };
    } else {
        assert!(ram.store_unnoted::<u64>(addr, value));
        ram.note_hart_write(addr, 8);
    }
}

#[test]
fn a_round_reports_the_pages_written_since_the_last_one() {
    let ram = GuestRam::new(BASE, 1 << 20).unwrap();
    assert!(!ram.is_dirty_tracking());
    ram.store::<u8>(page(1), 1);
    assert!(ram.take_dirty_pages().is_empty(), "nothing is tracked before the start");

    ram.start_dirty_tracking();
    assert!(ram.is_dirty_tracking());
    assert!(ram.take_dirty_pages().is_empty(), "writes before the start don't count");
    ram.store::<u8>(page(1), 2);
    ram.store::<u64>(page(3) + 4092, 7); // straddles pages 3 and 4
    ram.write_slice(page(6) - 2, &[1, 2, 3, 4]).unwrap(); // pages 5 and 6
    ram.atomic_u64(page(8)).unwrap().fetch_add(1, Ordering::SeqCst);
    ram.note_write(page(8), 8);
    ram.discard(page(10), PAGE_SIZE);
    // Device writes through vm-memory, as virtio-queue makes them.
    ram.memory().write_obj(0x1234u32, GuestAddress(page(12))).unwrap();
    ram.memory().store(1u16, GuestAddress(page(13) + 2), Ordering::Release).unwrap();
    let d = ram.take_dirty_pages();
    assert_eq!(pages(&d), [1, 3, 4, 5, 6, 8, 10, 12, 13]);
    assert_eq!(d.len(), 9);
    assert!(d.contains_addr(page(3) + 5) && !d.contains_addr(page(2)));
    assert_eq!(d.addresses().next(), Some(page(1)));
    assert_eq!(d.runs().collect::<Vec<_>>(), [(1, 1), (3, 4), (8, 1), (10, 1), (12, 2)]);

    assert!(ram.take_dirty_pages().is_empty(), "a take starts a fresh round");
    ram.store::<u32>(page(3), 9);
    ram.store::<u32>(page(3) + 8, 9);
    assert_eq!(pages(&ram.take_dirty_pages()), [3]);

    ram.stop_dirty_tracking();
    assert!(!ram.is_dirty_tracking());
    assert!(ram.page_flags().iter().all(|f| f.load(Ordering::SeqCst) == 0), "fast path again");
    ram.store::<u8>(page(7), 1);
    assert!(ram.take_dirty_pages().is_empty());

    ram.start_dirty_tracking();
    ram.store::<u8>(page(7), 1);
    assert_eq!(pages(&ram.take_dirty_pages()), [7], "a restart forgets earlier rounds");
}

#[test]
fn pages_are_armed_clean_and_the_first_store_disarms_them() {
    let ram = GuestRam::new(BASE, 1 << 16).unwrap();
    let flags = ram.page_flags();
    let writer = ram.register_writer();
    ram.start_dirty_tracking();
    // (Not before: a take waits for busy writers, this thread's own included.)
    writer.enter();
    assert!(flags.iter().all(|f| f.load(Ordering::SeqCst) == FLAG_CLEAN));
    hart_store(&ram, &flags, page(2), 1);
    assert_eq!(flags[2].load(Ordering::SeqCst), 0, "dirty: later stores stay fast");
    hart_store(&ram, &flags, page(2) + 8, 2);
    writer.leave();
    assert_eq!(pages(&ram.take_dirty_pages()), [2]);
    assert_eq!(flags[2].load(Ordering::SeqCst), FLAG_CLEAN, "re-armed for the next round");
}

#[derive(Default)]
struct Seen(Mutex<Vec<(u64, u64)>>);
impl CodeObserver for Seen {
    fn code_overwritten(&self, page_addr: u64, harts: u64) {
        self.0.lock().unwrap().push((page_addr, harts));
    }
}

#[test]
fn code_pages_are_still_invalidated_while_tracking() {
    let ram = GuestRam::new(BASE, 1 << 16).unwrap();
    let seen = Arc::new(Seen::default());
    ram.set_code_observer(seen.clone());
    ram.start_dirty_tracking();
    ram.mark_code(page(4), 1);
    assert_eq!(ram.page_flags()[4].load(Ordering::SeqCst), FLAG_CODE | FLAG_CLEAN);
    assert!(ram.take_dirty_pages().is_empty(), "decoding code is no write");
    assert!(ram.note_hart_write(page(4) + 16, 4), "the write hit code");
    assert_eq!(*seen.0.lock().unwrap(), [(page(4), 0b10)]);
    assert_eq!(ram.page_flags()[4].load(Ordering::SeqCst), 0);
    assert_eq!(pages(&ram.take_dirty_pages()), [4]);
    // A code page that is dirty already (only FLAG_CODE set) still tells the harts.
    ram.store::<u8>(page(5), 1);
    ram.mark_code(page(5), 0);
    ram.store::<u8>(page(5), 2);
    assert_eq!(seen.0.lock().unwrap().len(), 2);
}

#[test]
fn idle_writers_never_hold_up_a_take_and_busy_ones_do_until_quiescent() {
    let ram = Arc::new(GuestRam::new(BASE, 1 << 16).unwrap());
    let idle = ram.register_writer();
    ram.start_dirty_tracking(); // `idle` never entered: no wait
    idle.enter();
    idle.leave();
    ram.take_dirty_pages();

    let busy = ram.register_writer();
    busy.enter();
    let done = Arc::new(AtomicBool::new(false));
    let taker = {
        let (ram, done) = (ram.clone(), done.clone());
        std::thread::spawn(move || {
            ram.take_dirty_pages();
            done.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(!done.load(Ordering::SeqCst), "the take waits for the busy writer");
    busy.quiescent();
    taker.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    drop(busy); // unregisters
    drop(idle);
    ram.take_dirty_pages();
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Harts (fast path, sometimes descheduled between the flag check and the store), a device
/// writing through vm-memory and one through `GuestRam::store` write random pages while
/// another thread takes rounds and copies the reported pages, as a live migration does.
/// Every written page is in some round, and the copy ends up equal to RAM.
#[test]
fn racing_writers_lose_no_write_to_a_thread_taking_rounds() {
    const PAGES: u64 = 512;
    const HARTS: u64 = 3;
    let ram = Arc::new(GuestRam::new(BASE, PAGES * PAGE_SIZE).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    ram.start_dirty_tracking();
    let mut copy = vec![0u8; (PAGES * PAGE_SIZE) as usize];

    let mut threads = Vec::new();
    for t in 0..HARTS + 2 {
        let (ram, stop) = (ram.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let flags = ram.page_flags();
            // Only harts register: a device never calls `quiescent`.
            let writer = (t < HARTS).then(|| ram.register_writer());
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t + 1) * 0x1234_5678));
            let mut written = BTreeSet::new();
            let mut n = 1u64;
            if let Some(w) = &writer {
                w.enter();
            }
            while !stop.load(Ordering::Relaxed) {
                let p = rng.next() % PAGES;
                let addr = page(p) + (rng.next() % (PAGE_SIZE / 8)) * 8;
                let value = (t << 56) | n;
                n += 1;
                match t {
                    t if t < HARTS => {
                        let writer = writer.as_ref().expect("harts register");
                        let i = p as usize;
                        if flags[i].load(Ordering::Relaxed) == 0 {
                            if n % 64 == 0 {
                                std::thread::yield_now(); // descheduled mid-store
                            }
                            // SAFETY: an aligned address inside RAM.
                            unsafe { store_host::<u64>(ram.host_address(addr).unwrap(), value) };
                        } else {
                            ram.store_unnoted::<u64>(addr, value);
                            ram.note_hart_write(addr, 8);
                        }
                        if n % 16 == 0 {
                            writer.quiescent();
                        }
                        if n % 4096 == 0 {
                            writer.leave();
                            std::thread::yield_now();
                            writer.enter();
                        }
                    }
                    t if t == HARTS => {
                        ram.memory().write_obj(value, GuestAddress(addr)).unwrap();
                    }
                    _ => {
                        ram.store::<u64>(addr, value);
                    }
                }
                written.insert(p);
            }
            drop(writer);
            written
        }));
    }

    let mut union = DirtyPages::new(BASE, PAGES);
    let mut rounds = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(700) {
        let d = ram.take_dirty_pages();
        for (first, count) in d.runs() {
            let at = (first * PAGE_SIZE) as usize;
            let len = (count * PAGE_SIZE) as usize;
            ram.read_slice(BASE + at as u64, &mut copy[at..at + len]).unwrap();
        }
        union.union_with(&d);
        rounds += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let written: BTreeSet<u64> =
        threads.into_iter().flat_map(|t| t.join().unwrap().into_iter()).collect();
    // The last round, with every writer stopped (a migration's final pass).
    let d = ram.take_dirty_pages();
    for p in d.iter() {
        let at = (p * PAGE_SIZE) as usize;
        ram.read_slice(page(p), &mut copy[at..at + PAGE_SIZE as usize]).unwrap();
    }
    union.union_with(&d);

    assert!(rounds > 10, "only {rounds} rounds");
    let missing: Vec<u64> = written.iter().copied().filter(|p| !union.contains(*p)).collect();
    assert!(missing.is_empty(), "written pages no round reported: {missing:?}");
    let mut now = vec![0u8; copy.len()];
    ram.read_slice(BASE, &mut now).unwrap();
    let stale: Vec<usize> = (0..PAGES as usize)
        .filter(|p| now[p * 4096..(p + 1) * 4096] != copy[p * 4096..(p + 1) * 4096])
        .collect();
    assert!(stale.is_empty(), "pages whose copy missed a write: {stale:?} ({rounds} rounds)");
}

#[test]
fn dirty_pages_iterate_count_and_merge() {
    let mut a = DirtyPages::new(BASE, 200);
    assert!(a.is_empty() && a.iter().next().is_none());
    assert_eq!(a.len(), 0);
    for p in [0, 63, 64, 65, 127, 199, 200] {
        a.insert(p);
    }
    assert_eq!(pages(&a), [0, 63, 64, 65, 127, 199], "200 is past the end");
    let mut b = DirtyPages::new(BASE, 200);
    b.insert(1);
    b.insert(64);
    a.union_with(&b);
    assert_eq!(a.len(), 7);
    assert_eq!(a.runs().collect::<Vec<_>>(), [(0, 2), (63, 3), (127, 1), (199, 1)]);
    assert_eq!(a.clone().into_iter().collect::<Vec<_>>(), pages(&a));
    assert_eq!(format!("{b:?}"), "{1..2, 64..65}");
    assert!(DirtyPages::default().iter().next().is_none());
}
