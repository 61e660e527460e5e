//! qcow2 images written by keel, checked and read by qemu-img.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use keel_block::DiskImage;

/// Streams two files and compares them (they can be large and sparse).
fn assert_files_equal(what: &str, a: &Path, b: &Path) {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    assert_eq!(fa.metadata().unwrap().len(), fb.metadata().unwrap().len(), "{what}: sizes differ");
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let (mut ha, mut hb) = (0u64, 0u64);
    let mut pos = 0u64;
    loop {
        let n = fa.read(&mut ba).unwrap();
        fb.read_exact(&mut bb[..n]).unwrap();
        if n == 0 {
            break;
        }
        ha = ha.rotate_left(5) ^ hash(&ba[..n]);
        hb = hb.rotate_left(5) ^ hash(&bb[..n]);
        if ba[..n] != bb[..n] {
            let i = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y).unwrap();
            panic!("{what}: differ at byte {:#x}", pos + i as u64);
        }
        pos += n as u64;
    }
    assert_eq!(ha, hb);
}

#[test]
fn scattered_writes_are_what_qemu_reads() {
    let dir = TempDir::new("q-scatter");
    let img = dir.path("disk.qcow2");
    let size: u64 = (576 << 20) + (512 << 10); // more than one L2 table's worth (512 MiB)
    keel_block::create_qcow2(&img, size).unwrap();
    // The model of what the disk should contain, as a sparse raw file.
    let expected = dir.path("expected.raw");
    let model = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&expected)
        .unwrap();
    model.set_len(size).unwrap();

    let writes: &[(u64, usize)] = &[
        (0, 100),                         // start of disk, partial cluster
        (65535, 2),                       // straddles a cluster boundary
        ((512 << 20) - 3, 8),             // straddles an L2 table boundary
        ((3 << 20) + 1, 300_000),         // many clusters, unaligned both ends
        (100 << 20, 4 << 20),             // big aligned write
        ((100 << 20) + 12345, 70_000),    // partly overwrites it, in place
        (size - 1000, 1000),              // end of disk
        ((560 << 20) + 65536 * 3, 65536), // one whole cluster
        (50 << 20, 1),                    // single byte
        ((3 << 20) + 200_000, 200_000),   // overlaps the earlier unaligned write
    ];
    {
        let mut disk = open_rw(&img);
        assert_eq!(disk.size(), size);
        for (i, &(off, len)) in writes.iter().enumerate() {
            let data = pattern(i as u8 + 1, off, len);
            disk.write_at(off, &data).unwrap();
            model.write_all_at(&data, off).unwrap();
        }
        disk.flush().unwrap();
        // keel reads its own writes, and zeroes elsewhere.
        for &(off, len) in writes {
            let start = off.saturating_sub(777);
            let len = (len as u64 + 1554).min(size - start) as usize;
            let mut got = vec![0u8; len];
            let mut want = vec![0u8; len];
            disk.read_at(start, &mut got).unwrap();
            model.read_exact_at(&mut want, start).unwrap();
            assert_same("keel read-back", &got, &want);
        }
    }
    assert_check_clean(&img);
    qemu_img_ok(&["compare", "-f", "raw", "-F", "qcow2", s(&expected), s(&img)]);
    let converted = dir.path("converted.raw");
    qemu_img_ok(&["convert", "-f", "qcow2", "-O", "raw", s(&img), s(&converted)]);
    assert_files_equal("qemu-img convert of keel's image", &converted, &expected);
    let info = qemu_img_ok(&["info", s(&img)]);
    assert!(info.contains("compat: 1.1"), "keel creates version 3 images:\n{info}");
}

/// Random writes, zeroes, discards, flushes and reopens against an in-memory model, for each
/// cluster size and both versions; the end result is checked by qemu.
fn random_ops(cluster_size: u32, compat: &str, with_backing: bool, seed: u64) {
    let dir = TempDir::new("q-random");
    let img = dir.path("disk.qcow2");
    let size = 24u64 << 20;
    let mut model = vec![0u8; size as usize];
    let opts = format!("cluster_size={cluster_size},compat={compat}");
    if with_backing {
        let base = dir.path("base.raw");
        model = Rng(seed ^ 0xbace).bytes(size as usize);
        write_raw(&base, &model);
        qemu_img_create_qcow2(&img, &opts, Backing::Raw("base.raw"));
    } else {
        qemu_img_create_qcow2(&img, &opts, Backing::None(&size.to_string()));
    }
    let what = format!("cluster {cluster_size}, compat {compat}, backing {with_backing}");
    let mut rng = Rng(seed);
    let mut disk = open_rw(&img);
    let cs = u64::from(cluster_size);
    for op in 0..400 {
        let len = match rng.below(4) {
            0 => rng.below(600) + 1,
            1 => rng.below(3 * cs) + 1,
            2 => (rng.below(4) + 1) * cs,
            _ => rng.below(1 << 20) + 1,
        }
        .min(size);
        let mut off = rng.below(size - len + 1);
        if rng.below(3) == 0 {
            off = off / cs * cs; // aligned sometimes
        }
        let (o, l) = (off as usize, len as usize);
        match rng.below(20) {
            0..=11 => {
                let data = rng.bytes(l);
                disk.write_at(off, &data).unwrap();
                model[o..o + l].copy_from_slice(&data);
            }
            12..=14 => {
                disk.write_zeroes(off, len).unwrap();
                model[o..o + l].fill(0);
            }
            15..=16 => {
                // Discarded data is unspecified: whatever keel now reads is the model (and
                // qemu must agree at the end).
                disk.discard(off, len).unwrap();
                disk.read_at(off, &mut model[o..o + l]).unwrap();
            }
            17 => disk.flush().unwrap(),
            18 => {
                drop(disk);
                disk = open_rw(&img);
            }
            _ => {
                let mut got = vec![0u8; l];
                disk.read_at(off, &mut got).unwrap();
                assert_same(&format!("{what}: read at op {op}"), &got, &model[o..o + l]);
            }
        }
    }
    assert_same(&format!("{what}: keel's view"), &keel_contents(disk.as_mut()), &model);
    drop(disk);
    assert_check_clean(&img);
    assert_same(&format!("{what}: qemu's view"), &qemu_contents(&img, "qcow2", &dir), &model);
}

#[test]
fn random_ops_v3() {
    for (i, cs) in [512, 4096, 65536, 2 << 20].into_iter().enumerate() {
        random_ops(cs, "1.1", false, 1 + i as u64);
    }
}

#[test]
fn random_ops_v2() {
    for (i, cs) in [512, 65536].into_iter().enumerate() {
        random_ops(cs, "0.10", false, 11 + i as u64);
    }
}

#[test]
fn random_ops_over_backing_file() {
    for (i, cs) in [4096, 65536].into_iter().enumerate() {
        random_ops(cs, "1.1", true, 21 + i as u64);
    }
    random_ops(65536, "0.10", true, 31);
}

#[test]
fn write_zeroes_makes_zero_clusters_qemu_agrees() {
    let dir = TempDir::new("q-zero");
    let img = dir.path("disk.qcow2");
    let size = 8u64 << 20;
    keel_block::create_qcow2(&img, size).unwrap();
    let mut model = Rng(5).bytes(size as usize);
    {
        let mut disk = open_rw(&img);
        disk.write_at(0, &model).unwrap();
        // Aligned: becomes unallocated (no backing file); unaligned edges are written.
        disk.write_zeroes(65536, 4 * 65536).unwrap();
        disk.write_zeroes(1_000_000, 300_001).unwrap();
        disk.discard(4 << 20, 1 << 20).unwrap();
        model[65536..5 * 65536].fill(0);
        model[1_000_000..1_300_001].fill(0);
        model[4 << 20..5 << 20].fill(0); // discarded clusters of an image without backing
        assert_same("keel", &keel_contents(disk.as_mut()), &model);
    }
    assert_check_clean(&img);
    assert_same("qemu", &qemu_contents(&img, "qcow2", &dir), &model);
    // The clusters were freed: qemu-img map shows holes there.
    let map = qemu_img_ok(&["map", "--output=json", s(&img)]);
    assert!(map.contains(r#""start": 65536, "length": 262144, "depth": 0, "present": false, "zero": true, "data": false"#), "{map}");
}

#[test]
fn crash_leaves_at_most_leaks() {
    let dir = TempDir::new("q-crash");
    for cluster_size in [512u32, 65536] {
        let img = dir.path(&format!("crash-{cluster_size}.qcow2"));
        qemu_img_create_qcow2(&img, &format!("cluster_size={cluster_size}"), Backing::None("16M"));
        let mut disk = open_rw(&img);
        let mut rng = Rng(42);
        for _ in 0..100 {
            let off = rng.below(15 << 20);
            let len = rng.below(200_000) as usize + 1;
            disk.write_at(off, &rng.bytes(len)).unwrap();
        }
        disk.discard(0, 8 << 20).unwrap(); // frees queued, not applied
        disk.write_at(12345, &[1; 70000]).unwrap();
        // A crash: no close, no flush.
        std::mem::forget(disk);
        assert_check_no_corruption(&img);
    }
}

#[test]
fn reopened_image_reads_back() {
    let dir = TempDir::new("q-reopen");
    let img = dir.path("disk.qcow2");
    keel_block::create_qcow2(&img, 4 << 20).unwrap();
    let data = pattern(9, 0, 3 << 20);
    {
        let mut disk = open_rw(&img);
        disk.write_at(4096, &data).unwrap();
    }
    let mut disk: Box<dyn DiskImage> = open_ro(&img);
    let mut got = vec![0u8; data.len()];
    disk.read_at(4096, &mut got).unwrap();
    assert_same("reopened", &got, &data);
    // Closing gave back the reserved clusters and their file space.
    let len = std::fs::metadata(&img).unwrap().len();
    assert!(len < (4 << 20) + (1 << 20), "file is {len} bytes");
}
