//! End-to-end: multiprocessor guests. Each vCPU is a host thread; the guest starts its harts
//! through SBI HSM and shares work between them. (The bare-metal AMO/LR-SC counter test is
//! tests/isa/smp-counter.S.)

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn run_smp(vcpus: &str, script: &str) -> std::process::Output {
    image();
    let mut cmd = keel();
    cmd.args(["run", "--vcpus", vcpus, "--", "sh", "-c", script]);
    run_with_deadline(&mut cmd, Duration::from_secs(240))
}

#[test]
fn the_guest_sees_every_vcpu() {
    let out = run_smp("4", "nproc; grep -c ^processor /proc/cpuinfo");
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "4\n4\n");
}

#[test]
fn more_vcpus_than_host_cores_run_parallel_work_correctly() {
    // Eight processes hash the same data at once on eight vCPUs (this machine has two cores);
    // each must get the host's answer, and every vCPU must have run some of the work.
    let script = "for i in 1 2 3 4 5 6 7 8; do (seq 1 20000 | md5sum > /tmp/r$i) & done; wait; \
                  cat /tmp/r1 /tmp/r2 /tmp/r3 /tmp/r4 /tmp/r5 /tmp/r6 /tmp/r7 /tmp/r8; \
                  awk '/^cpu[0-9]/ { if ($2 + $4 > 0) busy++ } END { print busy }' /proc/stat";
    let out = run_smp("8", script);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let host = Command::new("sh")
        .args(["-c", "seq 1 20000 | md5sum"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&host.stdout).repeat(8) + "8\n";
    assert_eq!(stdout(&out), want);
}

#[test]
fn a_hart_taken_offline_and_back_runs_again() {
    // CPU hotplug goes through SBI HSM: hart_stop, then hart_start at the kernel's entry.
    let script = "echo 0 > /sys/devices/system/cpu/cpu2/online; cat /sys/devices/system/cpu/online; \
                  echo 1 > /sys/devices/system/cpu/cpu2/online; cat /sys/devices/system/cpu/online; \
                  taskset 4 sh -c 'seq 1 1000 | md5sum'";
    let out = run_smp("4", script);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let host = Command::new("sh").args(["-c", "seq 1 1000 | md5sum"]).output().unwrap();
    let want = format!("0-1,3\n0-3\n{}", String::from_utf8_lossy(&host.stdout));
    assert_eq!(stdout(&out), want);
}
