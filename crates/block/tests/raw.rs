//! Raw images: round trips, bounds, read-only refusal, discard and write-zeroes, probing.

mod common;

use common::*;
use keel_block::{BlockError, ImageFormat};

#[test]
fn round_trips_at_odd_offsets_and_sizes() {
    let dir = TempDir::new("raw-rw");
    let path = dir.path("disk.raw");
    let size = (3 << 20) + 1234; // not even a multiple of 512
    let mut model = Rng(7).bytes(size);
    write_raw(&path, &model);
    let mut img = open_rw(&path);
    assert_eq!(img.size(), size as u64);
    assert!(!img.read_only());
    let mut rng = Rng(99);
    for _ in 0..300 {
        let len = rng.below(70_000) as usize + 1;
        let off = rng.below((size - len) as u64) as usize;
        if rng.below(2) == 0 {
            let data = rng.bytes(len);
            img.write_at(off as u64, &data).unwrap();
            model[off..off + len].copy_from_slice(&data);
        } else {
            let mut buf = vec![0u8; len];
            img.read_at(off as u64, &mut buf).unwrap();
            assert_same("read back", &buf, &model[off..off + len]);
        }
    }
    // The last byte, and empty accesses at the very end, are in range.
    img.write_at(size as u64 - 1, &[0x5a]).unwrap();
    model[size - 1] = 0x5a;
    img.read_at(size as u64, &mut []).unwrap();
    img.flush().unwrap();
    drop(img);
    assert_same("file", &std::fs::read(&path).unwrap(), &model);
}

#[test]
fn accesses_beyond_the_end_fail() {
    let dir = TempDir::new("raw-range");
    let path = dir.path("disk.raw");
    write_raw(&path, &[0u8; 4096]);
    let mut img = open_rw(&path);
    let mut buf = [0u8; 16];
    for off in [4090, 4096, u64::MAX - 3] {
        let e = img.read_at(off, &mut buf).unwrap_err();
        assert!(matches!(e, BlockError::OutOfRange { .. }), "{e}");
        assert!(e.to_string().contains("disk.raw"), "{e}");
        assert!(matches!(img.write_at(off, &buf), Err(BlockError::OutOfRange { .. })));
    }
    assert!(matches!(img.write_zeroes(4000, 97), Err(BlockError::OutOfRange { .. })));
    assert!(matches!(img.discard(0, 4097), Err(BlockError::OutOfRange { .. })));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096, "nothing was written");
}

#[test]
fn read_only_images_refuse_changes() {
    let dir = TempDir::new("raw-ro");
    let path = dir.path("disk.raw");
    write_raw(&path, &[7u8; 8192]);
    let mut img = open_ro(&path);
    assert!(img.read_only());
    let e = img.write_at(0, &[1]).unwrap_err();
    assert!(matches!(e, BlockError::ReadOnly { .. }), "{e}");
    assert!(e.to_string().contains("read-only"), "{e}");
    assert!(matches!(img.discard(0, 512), Err(BlockError::ReadOnly { .. })));
    assert!(matches!(img.write_zeroes(0, 512), Err(BlockError::ReadOnly { .. })));
    img.flush().unwrap();
    let mut buf = [0u8; 3];
    img.read_at(8189, &mut buf).unwrap();
    assert_eq!(buf, [7; 3]);
}

#[test]
fn write_zeroes_reads_zero_and_discard_keeps_the_size() {
    let dir = TempDir::new("raw-zero");
    let path = dir.path("disk.raw");
    let size = 1 << 20;
    let mut model = Rng(3).bytes(size);
    write_raw(&path, &model);
    let mut img = open_rw(&path);
    // Unaligned and aligned ranges.
    for (off, len) in [(1, 10), (4095, 8194), (65536, 131072), (size - 7, 7)] {
        img.write_zeroes(off as u64, len as u64).unwrap();
        model[off..off + len].fill(0);
    }
    assert_same("after write_zeroes", &keel_contents(img.as_mut()), &model);
    // Discard: contents unspecified, but the disk keeps its size and stays usable.
    img.discard(131072, 262144).unwrap();
    img.discard(3, 5).unwrap();
    assert_eq!(img.size(), size as u64);
    let mut buf = vec![0u8; 4096];
    img.read_at(131072, &mut buf).unwrap();
    img.write_at(131072, &[9u8; 4096]).unwrap();
    img.read_at(131072, &mut buf).unwrap();
    assert_eq!(buf, vec![9u8; 4096]);
    img.flush().unwrap();
    drop(img);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size as u64);
}

#[test]
fn detects_raw_and_refuses_qcow2_magic_in_probed_raw() {
    let dir = TempDir::new("raw-probe");
    let path = dir.path("disk.raw");
    write_raw(&path, &[0u8; 65536]);
    let mut img = open_rw(&path);
    // Writing "QFI\xfb" over sector 0 of an image detected as raw would turn it into a qcow2
    // image next time (QEMU refuses this too); piecewise as well.
    let e = img.write_at(0, b"QFI\xfbrest").unwrap_err();
    assert!(e.to_string().contains("raw"), "{e}");
    img.write_at(1, b"FI\xfb").unwrap();
    assert!(img.write_at(0, b"Q").is_err());
    img.write_at(0, b"X").unwrap();
    drop(img);
    // With the format given, the guest may write what it likes.
    let mut img = open_fmt(&path, false, ImageFormat::Raw);
    img.write_at(0, b"QFI\xfb").unwrap();
}
