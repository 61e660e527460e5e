//! GuestRam basics: accesses, bounds, lazy allocation, code invalidation.

use super::*;

const BASE: u64 = 0x8000_0000;

#[test]
fn loads_and_stores_round_trip_at_any_alignment() {
    let ram = GuestRam::new(BASE, 1 << 20).unwrap();
    assert!(ram.store::<u64>(BASE + 3, 0x1122_3344_5566_7788));
    assert_eq!(ram.load::<u64>(BASE + 3), Some(0x1122_3344_5566_7788));
    assert_eq!(ram.load::<u8>(BASE + 3), Some(0x88), "little endian");
    assert_eq!(ram.load::<u16>(BASE + 4), Some(0x6677));
}

#[test]
fn accesses_outside_ram_are_refused() {
    let ram = GuestRam::new(BASE, 1 << 20).unwrap();
    assert_eq!(ram.load::<u32>(BASE - 4), None);
    assert_eq!(ram.load::<u64>(BASE + (1 << 20) - 4), None, "straddles the end");
    assert!(!ram.store::<u8>(BASE + (1 << 20), 1));
    assert!(ram.write_slice(BASE + (1 << 20) - 2, &[1, 2, 3]).is_err());
    assert!(ram.atomic_u64(BASE + 4).is_none(), "misaligned atomic");
}

#[test]
fn bad_sizes_are_rejected_with_a_reason() {
    assert!(matches!(GuestRam::new(BASE, 0), Err(MemoryError::BadSize(0))));
    assert!(matches!(GuestRam::new(BASE, 100), Err(MemoryError::BadSize(100))));
    assert!(matches!(GuestRam::new(BASE, 1 << 60), Err(MemoryError::OutOfRange { .. })));
}

#[test]
fn memory_is_allocated_lazily_and_discard_returns_it() {
    let ram = GuestRam::new(BASE, 64 << 20).unwrap();
    assert!(ram.resident_bytes() < (1 << 20), "untouched RAM must not be resident");
    for page in 0..256u64 {
        ram.store::<u8>(BASE + page * PAGE_SIZE, 1);
    }
    assert!(ram.resident_bytes() >= 256 * PAGE_SIZE);
    ram.discard_all();
    assert!(ram.resident_bytes() < 256 * PAGE_SIZE);
    assert_eq!(ram.load::<u8>(BASE), Some(0), "discarded pages read as zero");
}

#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<(u64, u64)>>);
impl CodeObserver for Seen {
    fn code_overwritten(&self, page_addr: u64, harts: u64) {
        self.0.lock().unwrap().push((page_addr, harts));
    }
}

#[test]
fn writes_to_code_pages_tell_the_harts_that_decoded_them() {
    let ram = GuestRam::new(BASE, 1 << 20).unwrap();
    let seen = Arc::new(Seen::default());
    ram.set_code_observer(seen.clone());
    ram.mark_code(BASE + 0x3000, 0);
    ram.mark_code(BASE + 0x3000, 2);
    assert_eq!(ram.page_flags()[3].load(Ordering::SeqCst), FLAG_CODE);
    assert!(!ram.note_write(BASE + 0x1000, 0x2000), "pages 1 and 2 hold no code");
    ram.write_slice(BASE + 0x2ffe, &[1, 2, 3, 4]).unwrap();
    assert_eq!(*seen.0.lock().unwrap(), vec![(BASE + 0x3000, 0b101)]);
    assert_eq!(ram.page_flags()[3].load(Ordering::SeqCst), 0, "told once, then clean");
    assert!(!ram.note_write(BASE + 0x3000, 8));
}

#[test]
fn atomics_see_plain_stores() {
    let ram = GuestRam::new(BASE, 1 << 16).unwrap();
    ram.store::<u64>(BASE + 8, 41);
    let a = ram.atomic_u64(BASE + 8).unwrap();
    a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(ram.load::<u64>(BASE + 8), Some(42));
}
