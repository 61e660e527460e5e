//! Corrupt and unsupported images are refused with the right error.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use keel_block::{BlockError, DiskImage, ImageFormat, OpenOptions};

fn open_as(path: &Path, read_only: bool) -> Result<Box<dyn DiskImage>, BlockError> {
    keel_block::open(path, &OpenOptions { read_only, format: Some(ImageFormat::Qcow2) })
}

fn err(r: Result<Box<dyn DiskImage>, BlockError>) -> BlockError {
    match r {
        Ok(_) => panic!("the image opened"),
        Err(e) => e,
    }
}

fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn peek64(path: &Path, offset: u64) -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open(path).unwrap().read_exact_at(&mut b, offset).unwrap();
    u64::from_be_bytes(b)
}

/// A 4 MiB qemu-made image with data in its first cluster.
fn qemu_image(dir: &TempDir, name: &str, opts: &str) -> PathBuf {
    let img = dir.path(name);
    qemu_img_create_qcow2(&img, opts, Backing::None("4M"));
    qemu_io_ok(&["-c", "write -P 0x61 0 64k", s(&img)]);
    img
}

#[test]
fn truncated_and_foreign_headers() {
    let dir = TempDir::new("c-header");
    let short = dir.path("short.qcow2");
    write_raw(&short, b"QFI\xfb\0\0\0\x03 and then nothing");
    // Detected as qcow2 by its magic, then refused.
    let e = err(keel_block::open(&short, &OpenOptions::default()));
    assert!(matches!(e, BlockError::InvalidHeader { .. }), "{e}");
    assert!(e.to_string().contains("short.qcow2"), "{e}");

    let raw = dir.path("disk.raw");
    write_raw(&raw, &[0u8; 1 << 20]);
    let e = err(open_as(&raw, true));
    assert!(matches!(e, BlockError::InvalidHeader { .. }), "{e}");
    assert!(e.to_string().contains("magic") && e.to_string().contains("format raw"), "{e}");
}

#[test]
fn encryption_is_refused() {
    let dir = TempDir::new("c-crypt");
    // A real LUKS-encrypted image. QEMU benchmarks the key derivation while creating it, which
    // fails now and then on a loaded machine ("Unable to get accurate CPU usage"): retry.
    let luks = dir.path("luks.qcow2");
    let args = [
        "create",
        "-q",
        "--object",
        "secret,id=sec0,data=keel-test",
        "-f",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        s(&luks),
        "1M",
    ];
    if !(0..5).any(|_| qemu_img(&args).status.success()) {
        qemu_img_ok(&args); // fails, with qemu-img's message
    }
    let e = err(open_as(&luks, true));
    assert!(matches!(e, BlockError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("encryption"), "{e}");
    // ...and the legacy AES flag set by hand.
    let aes = qemu_image(&dir, "aes.qcow2", "compat=1.1");
    poke(&aes, 32, &1u32.to_be_bytes());
    let e = err(open_as(&aes, true));
    assert!(e.to_string().contains("AES encryption"), "{e}");
}

#[test]
fn unsupported_features_are_refused() {
    let dir = TempDir::new("c-features");
    let data_file = dir.path("data.raw");
    for (opts, what) in [
        (format!("data_file={}", s(&data_file)), "external data file"),
        ("extended_l2=on".to_string(), "extended L2"),
        ("compression_type=zstd".to_string(), "compression type"),
    ] {
        let img = dir.path("f.qcow2");
        let _ = std::fs::remove_file(&img);
        qemu_img_create_qcow2(&img, &opts, Backing::None("1M"));
        let e = err(open_as(&img, true));
        assert!(matches!(e, BlockError::Unsupported { .. }), "{opts}: {e}");
        assert!(e.to_string().contains(what), "{opts}: {e}");
    }
    // An incompatible feature bit nobody knows yet.
    let img = qemu_image(&dir, "future.qcow2", "compat=1.1");
    poke(&img, 72, &(1u64 << 10).to_be_bytes());
    let e = err(open_as(&img, true));
    assert!(e.to_string().contains("incompatible feature bit 10"), "{e}");
    // Version 4.
    poke(&img, 4, &4u32.to_be_bytes());
    assert!(err(open_as(&img, true)).to_string().contains("version 4"));
}

#[test]
fn dirty_corrupt_and_8_bit_refcounts_open_read_only_only() {
    let dir = TempDir::new("c-ro");
    let dirty = qemu_image(&dir, "dirty.qcow2", "compat=1.1,lazy_refcounts=on");
    poke(&dirty, 72, &1u64.to_be_bytes()); // incompatible bit 0: dirty
    let corrupt = qemu_image(&dir, "corrupt.qcow2", "compat=1.1");
    poke(&corrupt, 72, &2u64.to_be_bytes()); // incompatible bit 1: corrupt
    let rc8 = qemu_image(&dir, "rc8.qcow2", "refcount_bits=8");
    for (img, what) in [(dirty, "dirty"), (corrupt, "corrupt"), (rc8, "8-bit refcounts")] {
        let mut disk = open_as(&img, true).unwrap();
        let mut b = [0u8; 4];
        disk.read_at(100, &mut b).unwrap();
        assert_eq!(b, [0x61; 4]);
        drop(disk);
        let e = err(open_as(&img, false));
        assert!(e.to_string().contains(what), "{e}");
        assert!(e.to_string().contains("read-only"), "{e}");
    }
}

#[test]
fn corrupt_tables_are_refused() {
    let dir = TempDir::new("c-tables");
    let base = qemu_image(&dir, "good.qcow2", "compat=1.1");
    let l1_off = peek64(&base, 40);
    let l1_0 = peek64(&base, l1_off);
    let l2_off = l1_0 & 0x00ff_ffff_ffff_fe00;
    let l2_0 = peek64(&base, l2_off);
    let copy = |name: &str| {
        let p = dir.path(name);
        std::fs::copy(&base, &p).unwrap();
        p
    };

    // An L1 entry beyond the end of the file: refused at open.
    let img = copy("l1.qcow2");
    poke(&img, l1_off, &((1u64 << 63) | (1 << 40)).to_be_bytes());
    let e = err(open_as(&img, true));
    assert!(matches!(e, BlockError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("qemu-img check"), "{e}");

    // A misaligned L2 entry: refused when the cluster is accessed.
    let img = copy("l2.qcow2");
    poke(&img, l2_off, &(l2_0 + 512).to_be_bytes());
    let mut disk = open_as(&img, true).unwrap();
    let mut b = [0u8; 16];
    disk.read_at(65536, &mut b).unwrap(); // other clusters are fine
    let e = disk.read_at(0, &mut b).unwrap_err();
    assert!(matches!(e, BlockError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("aligned"), "{e}");
    drop(disk);

    // A data cluster beyond the end of the file.
    let img = copy("l2far.qcow2");
    poke(&img, l2_off, &((1u64 << 63) | (1 << 40)).to_be_bytes());
    let mut disk = open_as(&img, false).unwrap();
    assert!(matches!(disk.read_at(0, &mut b), Err(BlockError::Corrupt { .. })));
    assert!(matches!(disk.write_at(0, &b), Err(BlockError::Corrupt { .. })));
    drop(disk);

    // Refcount table misaligned; L1 too small for the disk; cluster_bits out of range.
    for (name, off, bytes) in [
        ("rt.qcow2", 48u64, (peek64(&base, 48) + 8).to_be_bytes().to_vec()),
        ("l1size.qcow2", 36, 0u32.to_be_bytes().to_vec()),
        ("cb.qcow2", 20, 30u32.to_be_bytes().to_vec()),
    ] {
        let img = copy(name);
        poke(&img, off, &bytes);
        let e = err(open_as(&img, false));
        assert!(
            matches!(e, BlockError::Corrupt { .. } | BlockError::InvalidHeader { .. }),
            "{name}: {e}"
        );
    }

    // Compressed data that does not inflate.
    let raw = dir.path("src.raw");
    write_raw(&raw, &vec![b'k'; 1 << 20]);
    let comp = dir.path("comp.qcow2");
    qemu_img_ok(&["convert", "-c", "-f", "raw", "-O", "qcow2", s(&raw), s(&comp)]);
    let l1 = peek64(&comp, peek64(&comp, 40)) & 0x00ff_ffff_ffff_fe00;
    let entry = peek64(&comp, l1);
    assert!(entry & (1 << 62) != 0, "qemu-img wrote a compressed cluster");
    let data_off = entry & ((1u64 << 54) - 1);
    poke(&comp, data_off, &[0xff; 64]);
    let mut disk = open_as(&comp, true).unwrap();
    let e = disk.read_at(0, &mut b).unwrap_err();
    assert!(matches!(e, BlockError::Corrupt { .. }), "{e}");
}
