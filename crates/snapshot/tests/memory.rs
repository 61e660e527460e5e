//! `memory.bin`: sparse full images, diffs, and copy-on-write mappings.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use keel_snapshot::{
    apply_memory_diff, map_memory_cow, write_memory, write_memory_diff, DirtyPages, Error,
    MemoryKind, PageRun, PAGE_SIZE,
};

const PAGE: usize = PAGE_SIZE as usize;

/// 64 MiB of RAM with a few scattered non-zero pages (a kernel, a page table, a stack...).
fn mostly_zero_ram() -> Vec<u8> {
    let mut ram = vec![0u8; 64 << 20];
    for (i, page) in [0usize, 1, 2, 100, 4095, 8000, 16383].into_iter().enumerate() {
        ram[page * PAGE..][..PAGE].fill(i as u8 + 1);
    }
    // A page whose only non-zero byte is its last, to catch a sloppy zero check.
    ram[500 * PAGE + PAGE - 1] = 0xff;
    ram
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn full_image_round_trips_and_is_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.bin");
    let ram = mostly_zero_ram();
    let mut reports = Vec::new();
    let info = write_memory(&path, &ram, |done, total| reports.push((done, total))).unwrap();

    assert_eq!(info.len, ram.len() as u64);
    assert_eq!(info.kind, MemoryKind::Full);
    assert_eq!(info.stored, 8 * PAGE_SIZE);
    assert_eq!(std::fs::read(&path).unwrap(), ram);
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(size, ram.len() as u64);
    // 8 data pages; allow for filesystem metadata and block-size rounding.
    assert!(allocated(&path) < size / 32, "{} of {size} bytes allocated", allocated(&path));

    // Progress: increasing, ending at the total.
    assert!(reports.len() > 1);
    assert!(reports.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(*reports.last().unwrap(), (ram.len() as u64, ram.len() as u64));
}

#[test]
fn dense_ram_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.bin");
    // Non-zero everywhere, longer than one write, not a multiple of one.
    let ram: Vec<u8> = (0..(9 << 20) + 3 * PAGE).map(|i| (i % 251) as u8 | 1).collect();
    let info = write_memory(&path, &ram, |_, _| {}).unwrap();
    assert_eq!(info.stored, ram.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), ram);
}

#[test]
fn unaligned_ram_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.bin");
    let err = write_memory(&path, &[1u8; 5000], |_, _| {}).unwrap_err();
    assert!(matches!(err, Error::Unaligned { len: 5000, .. }), "{err:?}");
}

#[test]
fn dirty_pages_coalesce() {
    let pages = DirtyPages::new([7, 3, 4, 5, 5, 9, 10, 0], 11).unwrap();
    assert_eq!(
        pages.runs(),
        [
            PageRun { first: 0, count: 1 },
            PageRun { first: 3, count: 3 },
            PageRun { first: 7, count: 1 },
            PageRun { first: 9, count: 2 },
        ]
    );
    assert_eq!(pages.len(), 7);
    assert_eq!(pages.pages().collect::<Vec<_>>(), [0, 3, 4, 5, 7, 9, 10]);
    assert!(matches!(DirtyPages::new([11], 11), Err(Error::PageOutOfRange { page: 11, .. })));
}

#[test]
fn diff_applies_exactly_its_pages() {
    let dir = tempfile::tempdir().unwrap();
    let base_path = dir.path().join("base.bin");
    let diff_path = dir.path().join("diff.bin");
    let base = mostly_zero_ram();
    write_memory(&base_path, &base, |_, _| {}).unwrap();

    // The guest runs on: it writes some pages, zeroes one that had data (page 100), and
    // writes a page with the same data it had (page 1, dirty but unchanged).
    let mut now = base.clone();
    now[100 * PAGE..][..PAGE].fill(0);
    now[200 * PAGE..][..3 * PAGE].fill(0xaa);
    now[16000 * PAGE + 17] = 0x55;
    let dirty = [100u64, 200, 201, 202, 16000, 1];
    let mut reports = Vec::new();
    let info = write_memory_diff(&diff_path, &now, dirty, |d, t| reports.push((d, t))).unwrap();
    let MemoryKind::Diff(pages) = &info.kind else { panic!("{:?}", info.kind) };
    assert_eq!(pages.len(), 6);
    // The zeroed page is recorded but not stored.
    assert_eq!(info.stored, 5 * PAGE_SIZE);
    assert_eq!(reports.last(), Some(&(6 * PAGE_SIZE, 6 * PAGE_SIZE)));
    assert!(allocated(&diff_path) < 64 * PAGE_SIZE);

    // Apply over a COW mapping of the base: the result is the current RAM, and the base file
    // is untouched.
    let mut ram = map_memory_cow(&base_path, base.len() as u64).unwrap();
    apply_memory_diff(&diff_path, pages, &mut ram).unwrap();
    assert!(ram[..] == now[..]);
    assert!(std::fs::read(&base_path).unwrap() == base);

    // A diff image of the wrong size is refused.
    let mut small = vec![0u8; PAGE * 4];
    let err = apply_memory_diff(&diff_path, &DirtyPages::default(), &mut small).unwrap_err();
    assert!(matches!(err, Error::MemorySize { .. }), "{err:?}");
}

#[test]
fn cow_mapping_never_writes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.bin");
    let ram = mostly_zero_ram();
    write_memory(&path, &ram, |_, _| {}).unwrap();

    let mut a = map_memory_cow(&path, ram.len() as u64).unwrap();
    let b = map_memory_cow(&path, ram.len() as u64).unwrap();
    assert!(a[..] == ram[..] && b[..] == ram[..]);

    a[0] = 0x42;
    a[100 * PAGE..][..PAGE].fill(0x99);
    a[ram.len() - 1] = 7; // a hole page, written
    a.flush().unwrap(); // a no-op for a private mapping, and must stay one
    assert_eq!(a[0], 0x42);
    assert!(b[..] == ram[..], "a write through one mapping showed in another");
    assert!(std::fs::read(&path).unwrap() == ram, "a write through a COW mapping hit the file");
    drop(a);
    let again = map_memory_cow(&path, ram.len() as u64).unwrap();
    assert!(again[..] == ram[..]);
}

/// Sums one field of /proc/self/smaps over the mapping starting at `addr`.
fn smaps_kib(addr: usize, field: &str) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut in_map = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((start, _)) = range.split_once('-') {
                if let Ok(start) = usize::from_str_radix(start, 16) {
                    in_map = start == addr;
                    continue;
                }
            }
        }
        if in_map {
            if let Some(rest) = line.strip_prefix(field) {
                return rest.trim().trim_end_matches(" kB").trim().parse().ok();
            }
        }
    }
    None
}

#[test]
fn two_mappings_share_clean_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.bin");
    let ram: Vec<u8> = (0..256 * PAGE).map(|i| (i / PAGE) as u8 | 1).collect();
    write_memory(&path, &ram, |_, _| {}).unwrap();
    let a = map_memory_cow(&path, ram.len() as u64).unwrap();
    let b = map_memory_cow(&path, ram.len() as u64).unwrap();
    // Fault every page in through both mappings.
    let sum = |m: &[u8]| m.iter().step_by(PAGE).map(|&x| u64::from(x)).sum::<u64>();
    assert_eq!(sum(&a), sum(&b));

    // Both mappings map the same page-cache pages: each sees them as shared, and neither has
    // private (anonymous, copied) pages.
    let Some(shared) = smaps_kib(a.as_ptr() as usize, "Shared_Clean:") else {
        eprintln!("no /proc/self/smaps; sharing not checked");
        return;
    };
    assert_eq!(shared, ram.len() as u64 / 1024, "mapping a: Shared_Clean");
    assert_eq!(smaps_kib(b.as_ptr() as usize, "Shared_Clean:"), Some(shared));
    assert_eq!(smaps_kib(a.as_ptr() as usize, "Anonymous:"), Some(0));
}

#[test]
fn mapping_checks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memory.bin");
    let err = map_memory_cow(&path, 1 << 20).unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err:?}");

    write_memory(&path, &vec![1u8; 1 << 20], |_, _| {}).unwrap();
    let err = map_memory_cow(&path, 2 << 20).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { expected: 0x20_0000, actual: 0x10_0000, .. }),
        "{err:?}"
    );
    let err = map_memory_cow(&path, 1 << 19).unwrap_err();
    assert!(matches!(err, Error::MemorySize { .. }), "{err:?}");
}
