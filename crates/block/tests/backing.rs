//! Backing chains: overlays created and written by keel over raw and qcow2 bases.

mod common;

use std::path::Path;

use common::*;
use keel_block::{BlockError, ImageFormat};

/// Writes a mix of partial-cluster, cluster-straddling and whole-cluster data, plus zeroes and
/// discards, to `overlay`, and applies them to `model`.
fn write_overlay(overlay: &Path, model: &mut [u8]) {
    let mut disk = open_rw(overlay);
    assert_eq!(disk.size(), model.len() as u64);
    let writes: &[(usize, usize)] =
        &[(1, 10), (65530, 20), (200_000, 300_000), (2 << 20, 1 << 20), (model.len() - 5, 5)];
    for (i, &(off, len)) in writes.iter().enumerate() {
        let data = pattern(0x80 | i as u8, off as u64, len);
        disk.write_at(off as u64, &data).unwrap();
        model[off..off + len].copy_from_slice(&data);
    }
    // Zeroes hide the base (zero clusters where aligned).
    disk.write_zeroes(4 << 20, 256 << 10).unwrap();
    model[4 << 20..(4 << 20) + (256 << 10)].fill(0);
    disk.write_zeroes(5_000_001, 70_000).unwrap();
    model[5_000_001..5_070_001].fill(0);
    // Unwritten regions read from the base.
    let mut got = vec![0u8; 100_000];
    disk.read_at(6 << 20, &mut got).unwrap();
    assert_same("unwritten overlay region", &got, &model[6 << 20..(6 << 20) + 100_000]);
    assert_same("keel's overlay view", &keel_contents(disk.as_mut()), model);
    disk.flush().unwrap();
}

#[test]
fn overlay_over_raw_base() {
    let dir = TempDir::new("b-raw");
    let base = dir.path("base.raw");
    let size = 8 << 20;
    let mut model = Rng(1).bytes(size);
    write_raw(&base, &model);
    let base_hash = hash(&std::fs::read(&base).unwrap());
    let overlay = dir.path("overlay.qcow2");
    // Stored relative: resolved against the overlay's directory.
    keel_block::create_qcow2_overlay(&overlay, Path::new("base.raw"), ImageFormat::Raw).unwrap();
    write_overlay(&overlay, &mut model);

    assert_eq!(hash(&std::fs::read(&base).unwrap()), base_hash, "the base was modified");
    assert_check_clean(&overlay);
    let chain = qemu_img_ok(&["info", "--backing-chain", s(&overlay)]);
    assert!(chain.contains("backing file: base.raw"), "{chain}");
    assert!(chain.contains("backing file format: raw"), "{chain}");
    assert!(chain.contains("image: ") && chain.matches("image: ").count() == 2, "{chain}");
    assert_same("qemu's view of the overlay", &qemu_contents(&overlay, "qcow2", &dir), &model);
}

#[test]
fn overlay_over_qcow2_chain() {
    // raw <- qcow2 (written by qemu) <- keel overlay: a three-image chain.
    let dir = TempDir::new("b-chain");
    let size = 8 << 20;
    let raw = dir.path("bottom.raw");
    let mut model = Rng(2).bytes(size);
    write_raw(&raw, &model);
    let mid = dir.path("mid.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", "-b", s(&raw), "-F", "raw", s(&mid)]);
    qemu_io_ok(&["-c", "write -P 0x77 1M 512k", s(&mid)]);
    model[1 << 20..(1 << 20) + (512 << 10)].fill(0x77);
    let hashes = [hash(&std::fs::read(&raw).unwrap()), hash(&std::fs::read(&mid).unwrap())];

    let top = dir.path("top.qcow2");
    keel_block::create_qcow2_overlay(&top, &mid, ImageFormat::Qcow2).unwrap();
    write_overlay(&top, &mut model);

    let after = [hash(&std::fs::read(&raw).unwrap()), hash(&std::fs::read(&mid).unwrap())];
    assert_eq!(hashes, after, "a backing file was modified");
    assert_check_clean(&top);
    let chain = qemu_img_ok(&["info", "--backing-chain", s(&top)]);
    assert_eq!(chain.matches("image: ").count(), 3, "{chain}");
    assert_same("qemu's view of the chain", &qemu_contents(&top, "qcow2", &dir), &model);
}

#[test]
fn qemu_overlay_over_keel_overlay() {
    // keel's overlay as the middle of a chain that QEMU writes on top of.
    let dir = TempDir::new("b-qtop");
    let base = dir.path("base.raw");
    let mut model = Rng(3).bytes(8 << 20);
    write_raw(&base, &model);
    let mid = dir.path("mid.qcow2");
    keel_block::create_qcow2_overlay(&mid, &base, ImageFormat::Raw).unwrap();
    write_overlay(&mid, &mut model);
    let top = dir.path("top.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", "-b", s(&mid), "-F", "qcow2", s(&top)]);
    qemu_io_ok(&["-c", "write -P 0x99 512 1024", s(&top)]);
    model[512..1536].fill(0x99);
    // keel follows the chain QEMU recorded (names and backing format extensions).
    let mut disk = open_ro(&top);
    assert_same("keel reads qemu's overlay", &keel_contents(disk.as_mut()), &model);
}

#[test]
fn base_smaller_than_overlay_reads_zeroes_beyond_it() {
    let dir = TempDir::new("b-small");
    let base = dir.path("base.raw");
    let data = Rng(4).bytes(1_000_000); // not a multiple of 512
    write_raw(&base, &data);
    let overlay = dir.path("o.qcow2");
    keel_block::create_qcow2_overlay(&overlay, &base, ImageFormat::Raw).unwrap();
    let mut disk = open_rw(&overlay);
    assert_eq!(disk.size(), 1_000_448, "rounded up to 512 bytes");
    let mut model = data.clone();
    model.resize(1_000_448, 0);
    disk.write_at(999_990, &[3; 20]).unwrap(); // copy-on-write of the base's last cluster
    model[999_990..1_000_010].fill(3);
    assert_same("keel", &keel_contents(disk.as_mut()), &model);
    drop(disk);
    assert_check_clean(&overlay);
}

#[test]
fn missing_backing_file_is_named() {
    let dir = TempDir::new("b-missing");
    let base = dir.path("base.raw");
    write_raw(&base, &[0u8; 65536]);
    let overlay = dir.path("o.qcow2");
    keel_block::create_qcow2_overlay(&overlay, Path::new("base.raw"), ImageFormat::Raw).unwrap();
    std::fs::remove_file(&base).unwrap();
    let e = keel_block::open(&overlay, &Default::default()).err().unwrap();
    assert!(matches!(e, BlockError::Backing { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("o.qcow2") && msg.contains("base.raw"), "{msg}");
    // Overlays refuse to replace existing files.
    let e = keel_block::create_qcow2_overlay(&overlay, &overlay, ImageFormat::Qcow2).unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
}

#[test]
fn many_copy_on_write_tables_without_flush() {
    // 512-byte clusters: one L2 table maps 32 KiB, so a write every 32 KiB of a 64 MiB disk
    // touches 2048 tables, more than the L2 cache holds, while copy-on-write L2 updates wait
    // for a sync; they must survive evictions and reach qemu.
    let dir = TempDir::new("b-many");
    let base = dir.path("base.raw");
    let size = 64 << 20;
    let mut model = Rng(6).bytes(size);
    write_raw(&base, &model);
    let img = dir.path("o.qcow2");
    qemu_img_create_qcow2(&img, "cluster_size=512", Backing::Raw("base.raw"));
    let mut disk = open_rw(&img);
    for (i, off) in (100..size).step_by(32 << 10).enumerate() {
        disk.write_at(off as u64, &[i as u8; 3]).unwrap();
        model[off..off + 3].fill(i as u8);
    }
    assert_same("keel", &keel_contents(disk.as_mut()), &model);
    drop(disk);
    assert_check_clean(&img);
    assert_same("qemu", &qemu_contents(&img, "qcow2", &dir), &model);
}

#[test]
fn backing_loops_are_refused() {
    // x -> loop.qcow2, which is then replaced by a copy of an overlay of x: x -> y' -> x -> ...
    let dir = TempDir::new("b-loop");
    let looped = dir.path("loop.qcow2");
    keel_block::create_qcow2(&looped, 1 << 20).unwrap();
    let x = dir.path("x.qcow2");
    keel_block::create_qcow2_overlay(&x, Path::new("loop.qcow2"), ImageFormat::Qcow2).unwrap();
    let y = dir.path("y.qcow2");
    keel_block::create_qcow2_overlay(&y, Path::new("x.qcow2"), ImageFormat::Qcow2).unwrap();
    std::fs::copy(&y, &looped).unwrap();
    let e = keel_block::open(&x, &keel_block::OpenOptions { read_only: true, format: None })
        .err()
        .unwrap();
    assert!(e.to_string().contains("loops"), "{e}");
}
