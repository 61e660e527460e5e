//! RAM mapped copy-on-write from a file.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::*;

const BASE: u64 = 0x8000_0000;
const SIZE: u64 = 1 << 20;

/// A sparse file of `len` bytes with `data` at `at`.
fn sparse_file(len: u64, at: u64, data: &[u8]) -> File {
    let file = tempfile::tempfile().unwrap();
    file.set_len(len).unwrap();
    file.write_all_at(data, at).unwrap();
    file
}

fn file_bytes(file: &File, at: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, at).unwrap();
    buf
}

/// A field of the `/proc/self/smaps` entry for the mapping that starts at `host`, in bytes.
fn smaps_field(host: usize, field: &str) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let header = format!("{host:x}-");
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&header));
    lines.next().expect("the mapping is listed");
    let line = lines.find(|l| l.starts_with(&format!("{field}:"))).expect("field listed");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// Bytes of `ram` that smaps counts as shared with another mapping (the file's pages are
/// dirty in the page cache until written back, hence both fields).
fn shared(ram: &GuestRam) -> u64 {
    smaps_field(ram.host_base(), "Shared_Clean") + smaps_field(ram.host_base(), "Shared_Dirty")
}

#[test]
fn the_files_bytes_show_up_in_ram_and_holes_read_zero() {
    let offset = 3 * PAGE_SIZE;
    let file = sparse_file(offset + SIZE, offset + 0x2345, b"snapshot");
    let ram = GuestRam::from_file(BASE, SIZE, &file, offset).unwrap();
    assert!(ram.is_file_backed());
    let mut buf = [0u8; 8];
    ram.read_slice(BASE + 0x2345, &mut buf).unwrap();
    assert_eq!(&buf, b"snapshot");
    assert_eq!(ram.load::<u64>(BASE), Some(0), "a hole");
    assert_eq!(ram.load::<u8>(BASE + SIZE - 1), Some(0));
    // The CPU's view (raw host addresses) sees the same bytes.
    // SAFETY: an address inside RAM.
    assert_eq!(unsafe { load_host::<u8>(ram.host_address(BASE + 0x2345).unwrap()) }, b's');
}

#[test]
fn writing_ram_never_changes_the_file() {
    let file = sparse_file(SIZE, 0x10, b"original");
    let ram = GuestRam::from_file(BASE, SIZE, &file, 0).unwrap();
    ram.write_slice(BASE + 0x10, b"changed!").unwrap();
    ram.store::<u64>(BASE + 0x8000, u64::MAX);
    ram.atomic_u64(BASE + 0x9000).unwrap().fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(ram.load::<u64>(BASE + 0x8000), Some(u64::MAX));
    drop(ram);
    assert_eq!(file_bytes(&file, 0x10, 8), b"original");
    assert_eq!(file_bytes(&file, 0x8000, 8), [0; 8]);
    assert_eq!(file_bytes(&file, 0x9000, 8), [0; 8]);
}

#[test]
fn two_rams_from_one_file_share_its_pages_until_they_write_them() {
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 + i / 4096) as u8).collect();
    let file = tempfile::tempfile().unwrap();
    file.write_all_at(&data, 0).unwrap();
    let a = GuestRam::from_file(BASE, SIZE, &file, 0).unwrap();
    let b = GuestRam::from_file(BASE, SIZE, &file, 0).unwrap();
    let mut seen = vec![0u8; SIZE as usize];
    for ram in [&a, &b] {
        ram.read_slice(BASE, &mut seen).unwrap();
        assert!(seen == data);
    }
    // Every page is mapped by both: shared, and neither VM has a private copy.
    for ram in [&a, &b] {
        assert_eq!(shared(ram), SIZE);
        assert_eq!(ram.private_bytes().unwrap(), 0);
        assert_eq!(ram.resident_bytes(), 0, "file-backed RAM counts private pages only");
    }
    a.store::<u32>(BASE + 5 * PAGE_SIZE, 0xdead_beef);
    assert_eq!(a.private_bytes().unwrap(), PAGE_SIZE, "one page copied on write");
    assert_eq!(b.private_bytes().unwrap(), 0);
    let at = 5 * PAGE_SIZE as usize;
    let original = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
    assert_eq!(b.load::<u32>(BASE + 5 * PAGE_SIZE), Some(original));
    assert_eq!(a.load::<u32>(BASE + 5 * PAGE_SIZE), Some(0xdead_beef));
    assert_eq!(shared(&b), SIZE - PAGE_SIZE, "b alone maps the file's page 5 now");
    assert_eq!(file_bytes(&file, 0, SIZE as usize), data, "the file is untouched");
}

#[test]
fn discarded_file_backed_pages_read_zero_and_go_back_to_the_host() {
    let data = vec![0xa5u8; SIZE as usize];
    let file = tempfile::tempfile().unwrap();
    file.write_all_at(&data, 0).unwrap();
    let ram = GuestRam::from_file(BASE, SIZE, &file, 0).unwrap();
    let host = ram.host_base();
    for p in 0..8 {
        ram.store::<u8>(BASE + p * PAGE_SIZE, 1); // private copies
    }
    assert_eq!(ram.private_bytes().unwrap(), 8 * PAGE_SIZE);
    ram.start_dirty_tracking();
    ram.discard(BASE + 2 * PAGE_SIZE, 4 * PAGE_SIZE);
    assert_eq!(ram.host_base(), host, "RAM stays where the CPU cached it");
    assert_eq!(ram.host_address(BASE), Some(host));
    for p in 0..8 {
        let want = if (2..6).contains(&p) { 0 } else { 1 };
        assert_eq!(ram.load::<u8>(BASE + p * PAGE_SIZE), Some(want), "page {p}");
        assert_eq!(
            ram.load::<u8>(BASE + p * PAGE_SIZE + 1),
            Some(if want == 0 { 0 } else { 0xa5 })
        );
    }
    assert_eq!(ram.private_bytes().unwrap(), 4 * PAGE_SIZE, "the private copies went back");
    assert_eq!(ram.resident_bytes(), 4 * PAGE_SIZE, "zero pages read since cost nothing");
    assert_eq!(ram.take_dirty_pages().iter().collect::<Vec<_>>(), [2, 3, 4, 5]);
    // Discarded pages are plain anonymous memory now: writable, private, and zero again
    // after another discard.
    ram.store::<u8>(BASE + 3 * PAGE_SIZE, 9);
    assert_eq!(ram.load::<u8>(BASE + 3 * PAGE_SIZE), Some(9));
    ram.discard(BASE + 3 * PAGE_SIZE, PAGE_SIZE);
    assert_eq!(ram.load::<u8>(BASE + 3 * PAGE_SIZE), Some(0));
    assert!(ram.is_file_backed());

    ram.discard_all();
    assert!(!ram.is_file_backed(), "nothing maps the file any more");
    assert_eq!(ram.load::<u8>(BASE + 7 * PAGE_SIZE + 1), Some(0));
    ram.store::<u8>(BASE, 1);
    ram.discard(BASE, PAGE_SIZE); // MADV_DONTNEED from now on
    assert_eq!(ram.load::<u8>(BASE), Some(0));
    assert_eq!(ram.host_base(), host);
    assert_eq!(file_bytes(&file, 0, SIZE as usize), data, "the file is untouched");
}

#[test]
fn a_file_too_short_for_the_ram_is_refused_with_a_reason() {
    let file = sparse_file(SIZE, 0, b"x");
    let err = GuestRam::from_file(BASE, SIZE, &file, PAGE_SIZE).err().unwrap();
    assert!(
        matches!(err, MemoryError::FileTooShort { need, len } if need == SIZE + PAGE_SIZE && len == SIZE),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("too short") && msg.contains(&SIZE.to_string()), "{msg}");
    assert!(matches!(
        GuestRam::from_file(BASE, SIZE, &file, 100),
        Err(MemoryError::FileOffset(100))
    ));
    assert!(matches!(GuestRam::from_file(BASE, 100, &file, 0), Err(MemoryError::BadSize(100))));
    // Exactly long enough is fine, also from a file opened read-only.
    let path = tempfile::NamedTempFile::new().unwrap();
    path.as_file().set_len(SIZE).unwrap();
    let read_only = File::open(path.path()).unwrap();
    let ram = GuestRam::from_file(BASE, SIZE, &read_only, 0).unwrap();
    ram.store::<u8>(BASE, 1);
    assert_eq!(ram.load::<u8>(BASE), Some(1), "private pages are writable");
}

#[test]
fn anonymous_ram_counts_what_it_touched() {
    let ram = GuestRam::new(BASE, SIZE).unwrap();
    assert!(!ram.is_file_backed());
    assert_eq!(ram.private_bytes().unwrap(), 0);
    for p in 0..10 {
        ram.store::<u8>(BASE + p * PAGE_SIZE, 1);
    }
    assert_eq!(ram.private_bytes().unwrap(), 10 * PAGE_SIZE);
    assert!(ram.resident_bytes() >= 10 * PAGE_SIZE);
    ram.discard(BASE, 4 * PAGE_SIZE);
    assert_eq!(ram.private_bytes().unwrap(), 6 * PAGE_SIZE);
}
