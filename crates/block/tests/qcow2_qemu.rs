//! qcow2 images written by QEMU's tools, read (and modified) by keel.

mod common;

use common::*;
use keel_block::BlockError;

/// qemu-io writes; keel reads the same bytes, for each cluster size and version.
#[test]
fn reads_what_qemu_io_wrote() {
    let dir = TempDir::new("qq-io");
    for (cs, compat) in
        [(65536, "1.1"), (512, "1.1"), (2 << 20, "1.1"), (65536, "0.10"), (4096, "0.10")]
    {
        let img = dir.path(&format!("q-{cs}-{compat}.qcow2"));
        let opts = format!("cluster_size={cs},compat={compat}");
        qemu_img_create_qcow2(&img, &opts, Backing::None("16M"));
        qemu_io_ok(&[
            "-f",
            "qcow2",
            "-c",
            "write -P 0xab 1M 64k",
            "-c",
            "write -P 0xcd 2999808 100352", // qemu-io wants 512-byte units
            "-c",
            "write -P 0x11 8M 4M",
            "-c",
            "write -P 0x22 16769024 8192", // the last 8 KiB
            "-c",
            "write -z 9M 1M", // zeroes over data: zero clusters (v3) or written zeroes
            s(&img),
        ]);
        let mut want = vec![0u8; 16 << 20];
        want[1 << 20..(1 << 20) + 65536].fill(0xab);
        want[2_999_808..3_100_160].fill(0xcd);
        want[8 << 20..12 << 20].fill(0x11);
        want[(16 << 20) - 8192..].fill(0x22);
        want[9 << 20..10 << 20].fill(0);
        let mut disk = open_ro(&img);
        assert_eq!(disk.size(), 16 << 20);
        assert_same(&format!("{cs}/{compat}"), &keel_contents(disk.as_mut()), &want);
        // And keel can keep writing to it.
        drop(disk);
        let mut disk = open_rw(&img);
        disk.write_at(9 << 20, &[0x33; 70000]).unwrap();
        want[9 << 20..(9 << 20) + 70000].fill(0x33);
        drop(disk);
        assert_check_clean(&img);
        assert_same(&format!("{cs}/{compat} qemu"), &qemu_contents(&img, "qcow2", &dir), &want);
    }
}

/// Compressible but not trivial data: text-like runs with some noise.
fn compressible(len: usize) -> Vec<u8> {
    let mut rng = Rng(77);
    let words: [&[u8]; 6] = [b"keel ", b"qcow2 ", b"cluster ", b"virtio ", b"block\n", b"0123 "];
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        if rng.below(50) == 0 {
            v.extend_from_slice(&rng.bytes(37));
        } else if rng.below(40) == 0 {
            v.extend(std::iter::repeat_n(0u8, 5000)); // some all-zero clusters too
        } else {
            v.extend_from_slice(words[rng.below(6) as usize]);
        }
    }
    v.truncate(len);
    v
}

#[test]
fn reads_and_rewrites_compressed_clusters() {
    let dir = TempDir::new("qq-comp");
    let raw = dir.path("src.raw");
    let data = compressible(6 << 20);
    write_raw(&raw, &data);
    for cs in [512u32, 4096, 65536, 2 << 20] {
        let img = dir.path(&format!("c-{cs}.qcow2"));
        let opts = format!("cluster_size={cs}");
        qemu_img_ok(&["convert", "-c", "-f", "raw", "-O", "qcow2", "-o", &opts, s(&raw), s(&img)]);
        let info = qemu_img_ok(&["check", s(&img)]);
        assert!(!info.contains(" 0.00% compressed"), "qemu-img did not compress:\n{info}");
        let mut disk = open_ro(&img);
        assert_same(&format!("compressed, cluster {cs}"), &keel_contents(disk.as_mut()), &data);
        // Small reads inside compressed clusters.
        let mut b = [0u8; 7];
        disk.read_at(123_457, &mut b).unwrap();
        assert_eq!(b, data[123_457..123_464]);
        drop(disk);

        // Partial writes copy the rest of the compressed cluster; discards free it.
        let mut want = data.clone();
        let mut disk = open_rw(&img);
        disk.write_at(100_001, &[0xee; 3000]).unwrap();
        want[100_001..103_001].fill(0xee);
        disk.write_zeroes(4 << 20, 1 << 20).unwrap();
        want[4 << 20..5 << 20].fill(0);
        assert_same("after rewrite", &keel_contents(disk.as_mut()), &want);
        drop(disk);
        assert_check_clean(&img);
        assert_same("qemu after rewrite", &qemu_contents(&img, "qcow2", &dir), &want);
    }
}

#[test]
fn snapshots_are_readable_but_not_writable() {
    let dir = TempDir::new("qq-snap");
    let img = dir.path("snap.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&img), "4M"]);
    qemu_io_ok(&["-c", "write -P 0x41 0 64k", s(&img)]);
    qemu_img_ok(&["snapshot", "-c", "before", s(&img)]);
    qemu_io_ok(&["-c", "write -P 0x42 0 4k", s(&img)]);
    let mut disk = open_ro(&img);
    let mut b = [0u8; 8192];
    disk.read_at(0, &mut b).unwrap();
    assert!(b[..4096].iter().all(|&x| x == 0x42) && b[4096..].iter().all(|&x| x == 0x41));
    drop(disk);
    let e = keel_block::open(&img, &keel_block::OpenOptions::default()).err().unwrap();
    assert!(matches!(e, BlockError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("snapshots"), "{e}");
}

#[test]
fn preallocated_zero_clusters() {
    // qemu-io "write -z" on allocated clusters of a v3 image keeps them allocated, flagged
    // "all zeroes"; keel must read zeroes and may reuse the cluster.
    let dir = TempDir::new("qq-zalloc");
    let img = dir.path("z.qcow2");
    qemu_img_create_qcow2(&img, "preallocation=metadata", Backing::None("4M"));
    qemu_io_ok(&["-c", "write -P 0x55 0 1M", "-c", "write -z 128k 256k", s(&img)]);
    let mut want = vec![0u8; 4 << 20];
    want[..1 << 20].fill(0x55);
    want[128 << 10..384 << 10].fill(0);
    let mut disk = open_rw(&img);
    assert_same("zero clusters", &keel_contents(disk.as_mut()), &want);
    disk.write_at((128 << 10) + 100, &[7; 10]).unwrap();
    disk.write_at(192 << 10, &[8; 65536]).unwrap();
    disk.discard(256 << 10, 64 << 10).unwrap();
    want[(128 << 10) + 100..(128 << 10) + 110].fill(7);
    want[192 << 10..256 << 10].fill(8);
    want[256 << 10..320 << 10].fill(0);
    assert_same("after writes", &keel_contents(disk.as_mut()), &want);
    drop(disk);
    assert_check_clean(&img);
    assert_same("qemu", &qemu_contents(&img, "qcow2", &dir), &want);
}
