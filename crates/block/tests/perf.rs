//! Sequential throughput, raw against qcow2. Not run by default (it measures the machine):
//! `cargo test -p keel-block --release --test perf -- --ignored --nocapture`
//! (KEEL_BLOCK_PERF_MIB sets the disk size, 1024 by default).

mod common;

use std::time::Instant;

use common::*;
use keel_block::DiskImage;

fn mb_per_s(bytes: u64, t: Instant) -> f64 {
    bytes as f64 / t.elapsed().as_secs_f64() / 1e6
}

/// Writes the whole disk in `chunk`-byte requests then flushes; reads it back.
fn run(disk: &mut dyn DiskImage, chunk: usize) -> (f64, f64) {
    let size = disk.size();
    let buf = Rng(1).bytes(chunk);
    let t = Instant::now();
    for off in (0..size).step_by(chunk) {
        disk.write_at(off, &buf).unwrap();
    }
    disk.flush().unwrap();
    let w = mb_per_s(size, t);
    let mut rb = vec![0u8; chunk];
    let t = Instant::now();
    for off in (0..size).step_by(chunk) {
        disk.read_at(off, &mut rb).unwrap();
    }
    (w, mb_per_s(size, t))
}

#[test]
#[ignore]
fn sequential_throughput() {
    let mib: u64 = std::env::var("KEEL_BLOCK_PERF_MIB").map_or(1024, |v| v.parse().unwrap());
    let size = mib << 20;
    let dir = TempDir::new("perf");
    for chunk in [4096usize, 1 << 20] {
        let raw = dir.path("disk.raw");
        std::fs::File::create(&raw).unwrap().set_len(size).unwrap();
        let q = dir.path("disk.qcow2");
        keel_block::create_qcow2(&q, size).unwrap();
        let mut r = open_rw(&raw);
        let mut qd = open_rw(&q);
        let (rw1, rr1) = run(r.as_mut(), chunk);
        let (qw1, qr1) = run(qd.as_mut(), chunk);
        // Second pass: the file blocks / clusters are allocated now.
        let (rw2, rr2) = run(r.as_mut(), chunk);
        let (qw2, qr2) = run(qd.as_mut(), chunk);
        println!(
            "{mib} MiB in {chunk}-byte requests, MB/s (write incl. final flush / read):\n  \
             raw   first write {rw1:.0} / read {rr1:.0}; rewrite {rw2:.0} / read {rr2:.0}\n  \
             qcow2 first write {qw1:.0} / read {qr1:.0}; rewrite {qw2:.0} / read {qr2:.0}"
        );
        drop((r, qd));
        std::fs::remove_file(&raw).unwrap();
        std::fs::remove_file(&q).unwrap();
    }
}
