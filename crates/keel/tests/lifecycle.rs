//! End-to-end: how a VM ends or restarts, and booting through M-mode firmware.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_guest_kernel_panic_ends_keel_with_a_reason() {
    image();
    // No init in the initramfs and no root device: Linux panics, and with panic=-1 it reboots
    // at once. keel must report the death instead of rebooting forever.
    let mut cmd = keel();
    cmd.args(["run", "--cmdline", "console=ttyS0 panic=-1 rdinit=/nonexistent", "--", "true"]);
    let out = run_with_deadline(&mut cmd, Duration::from_secs(180));
    assert!(!out.status.success(), "a kernel panic must be a failure");
    let err = stderr(&out);
    assert!(err.contains("kernel panicked"), "stderr: {err}");
    assert!(
        err.contains("Unable to mount root fs"),
        "the panic message is the reason; stderr: {err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line on stderr: {err}");
}

#[test]
fn a_guest_reboot_restarts_the_vm() {
    image();
    let mut child = keel()
        .args(["run", "--", "sh", "-c", "echo booted; reboot -f"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = Vec::new();
    let boots = loop {
        let count = String::from_utf8_lossy(&seen).matches("booted").count();
        if count >= 2 || Instant::now() > deadline {
            break count;
        }
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => break String::from_utf8_lossy(&seen).matches("booted").count(),
        }
    };
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        boots,
        2,
        "the guest should boot again after `reboot -f`; output: {}",
        String::from_utf8_lossy(&seen)
    );
    assert!(still_running, "keel must keep running across a guest reboot");
}

#[test]
fn opensbi_firmware_boots_the_kernel() {
    image();
    let fw = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";
    assert!(
        std::path::Path::new(fw).exists(),
        "{fw} is missing: install Debian's opensbi package (the README's test command does)"
    );
    let mut cmd = keel();
    cmd.args(["run", "--firmware", fw, "--", "uname", "-m"]);
    let out = run_with_deadline(&mut cmd, Duration::from_secs(180));
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("OpenSBI"), "OpenSBI prints its banner first: {text}");
    assert!(text.ends_with("riscv64\n"), "then the command runs: {text}");
}
