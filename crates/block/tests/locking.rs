//! Image locking: keel against keel, and keel against QEMU's tools (same lock bytes).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use keel_block::{BlockError, OpenOptions};

fn try_open(path: &Path, read_only: bool) -> Result<Box<dyn keel_block::DiskImage>, BlockError> {
    keel_block::open(path, &OpenOptions { read_only, format: None })
}

fn assert_locked(r: Result<Box<dyn keel_block::DiskImage>, BlockError>) {
    match r {
        Err(e @ BlockError::Locked { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("another VM"), "{msg}");
            assert!(msg.contains("read-only"), "{msg}");
            assert!(msg.contains("disk.img"), "{msg}");
        }
        Err(e) => panic!("expected a lock conflict, got: {e}"),
        Ok(_) => panic!("expected a lock conflict, but the image opened"),
    }
}

fn images(dir: &TempDir) -> Vec<std::path::PathBuf> {
    let raw = dir.path("raw/disk.img");
    std::fs::create_dir_all(raw.parent().unwrap()).unwrap();
    write_raw(&raw, &[0u8; 65536]);
    let q = dir.path("qcow2/disk.img");
    std::fs::create_dir_all(q.parent().unwrap()).unwrap();
    keel_block::create_qcow2(&q, 1 << 20).unwrap();
    vec![raw, q]
}

#[test]
fn writers_are_exclusive_and_readers_share() {
    let dir = TempDir::new("lock");
    for path in images(&dir) {
        {
            let _w = try_open(&path, false).unwrap();
            assert_locked(try_open(&path, false));
            // Readers are kept out as well: the image is changing under them.
            assert_locked(try_open(&path, true));
        }
        {
            let _r1 = try_open(&path, true).unwrap();
            let _r2 = try_open(&path, true).unwrap();
            assert_locked(try_open(&path, false));
        }
        // Closing releases the lock.
        let _w = try_open(&path, false).unwrap();
    }
}

#[test]
fn backing_files_are_locked_shared() {
    let dir = TempDir::new("lock-backing");
    let base = dir.path("disk.img");
    write_raw(&base, &[1u8; 65536]);
    let overlay = dir.path("overlay.qcow2");
    keel_block::create_qcow2_overlay(&overlay, Path::new("disk.img"), keel_block::ImageFormat::Raw)
        .unwrap();
    let _o = try_open(&overlay, false).unwrap();
    assert_locked(try_open(&base, false));
    let _r = try_open(&base, true).unwrap();
}

/// Waits until some process holds an OFD lock on `path` (as /proc/locks shows).
fn wait_for_ofd_lock(path: &Path, child: &mut std::process::Child) {
    let ino = std::fs::metadata(path).unwrap().ino();
    let needle = format!(":{ino} ");
    let start = Instant::now();
    loop {
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        if locks.lines().any(|l| l.contains("OFDLCK") && l.contains(&needle)) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("qemu-io exited early ({status})");
        }
        assert!(start.elapsed() < Duration::from_secs(20), "qemu-io never locked the image");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn qemu_and_keel_see_each_others_locks() {
    let dir = TempDir::new("lock-qemu");
    for path in images(&dir) {
        let p = s(&path);
        let out = dir.path("copy.raw");
        let out = s(&out);
        // keel writing: qemu-img cannot even copy the image without -U (force share).
        {
            let _w = try_open(&path, false).unwrap();
            let o = qemu_img(&["convert", "-O", "raw", p, out]);
            assert!(!o.status.success(), "qemu-img convert read an image keel is writing");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("lock"), "{err}");
            qemu_img_ok(&["convert", "-U", "-O", "raw", p, out]);
        }
        // keel reading: qemu-img may read too, but not write.
        {
            let _r = try_open(&path, true).unwrap();
            qemu_img_ok(&["convert", "-O", "raw", p, out]);
            let o = Command::new("qemu-io").args(["-c", "write 0 512", p]).output().unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(all.contains("lock"), "qemu-io wrote to an image keel is reading: {all}");
        }
        // QEMU writing: keel can neither write nor read it.
        let mut child = Command::new("qemu-io")
            .args(["-c", "sleep 30000", p])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-io is not installed; install qemu-utils");
        wait_for_ofd_lock(&path, &mut child);
        let r1 = try_open(&path, false);
        let r2 = try_open(&path, true);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_locked(r1);
        assert_locked(r2);
        // And once it is gone, keel can.
        drop(try_open(&path, false).unwrap());
    }
}
