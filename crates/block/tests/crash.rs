//! Crash consistency: a writer process is killed (SIGKILL) at arbitrary points; qemu-img
//! check must then find no corruption, only leaked clusters, and keel must reopen the image.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const IMG_VAR: &str = "KEEL_BLOCK_CRASH_IMAGE";

/// The victim: runs in a child process (started by `killed_writers_leave_at_most_leaks`),
/// writing, zeroing and discarding until it is killed.
#[test]
#[ignore = "run as a child process by killed_writers_leave_at_most_leaks"]
fn crash_child_writer() {
    let Ok(img) = std::env::var(IMG_VAR) else { return };
    let mut disk = open_rw(Path::new(&img));
    let size = disk.size();
    let mut rng = Rng(std::process::id() as u64 | 1);
    println!("ready");
    loop {
        let len = rng.below(300_000) + 1;
        let off = rng.below(size - len);
        match rng.below(10) {
            0 => disk.discard(off, len).unwrap(),
            1 => disk.write_zeroes(off, len).unwrap(),
            2 => disk.flush().unwrap(),
            _ => disk.write_at(off, &rng.bytes(len as usize)).unwrap(),
        }
    }
}

#[test]
fn killed_writers_leave_at_most_leaks() {
    let dir = TempDir::new("crash");
    let exe = std::env::current_exe().unwrap();
    let base = dir.path("base.raw");
    write_raw(&base, &Rng(5).bytes(16 << 20));
    for round in 0..12u64 {
        let img = dir.path(&format!("crash-{round}.qcow2"));
        let cs = [512, 4096, 65536][round as usize % 3];
        let opts = format!("cluster_size={cs}");
        let backing = if round % 2 == 0 { Backing::None("16M") } else { Backing::Raw("base.raw") };
        qemu_img_create_qcow2(&img, &opts, backing);
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "crash_child_writer", "--nocapture"])
            .env(IMG_VAR, &img)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(status.code().is_none(), "the writer died by itself ({status})");
        let o = qemu_img(&["check", s(&img)]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            matches!(o.status.code(), Some(0) | Some(3)),
            "round {round} (cluster {cs}): qemu-img check found corruption ({}):\n{out}{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!out.contains("ERROR"), "{out}");
        // keel reopens it and carries on; qemu agrees with what it reads.
        let mut disk = open_rw(&img);
        disk.write_at(1000, &[0xaa; 100_000]).unwrap();
        let view = keel_contents(disk.as_mut());
        drop(disk);
        assert_same("after the crash", &qemu_contents(&img, "qcow2", &dir), &view);
        let _ = std::fs::remove_file(&img);
    }
}
