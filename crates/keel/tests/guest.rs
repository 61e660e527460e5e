//! End-to-end: the real Debian riscv64 kernel and keel's initramfs boot on keel's CPU and run
//! commands (`keel run -- COMMAND`).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn uname_reports_riscv64() {
    let out = run_guest(&["uname", "-m"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "riscv64\n",
        "command output must be exact (no kernel messages, no \\r)"
    );
}

#[test]
fn the_command_exit_status_comes_back() {
    let out = run_guest(&["sh", "-c", "echo about to fail; exit 42"]);
    assert_eq!(out.status.code(), Some(42), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "about to fail\n");
    let missing = run_guest(&["no-such-command"]);
    assert_eq!(missing.status.code(), Some(127), "a missing command is status 127 as in a shell");
}

#[test]
fn awk_floating_point_matches_known_values() {
    // busybox awk computes in IEEE double precision; the expected text is what C's printf
    // (and Python's % operator) print for the same double-precision computations.
    let program = r#"BEGIN {
        x = 1; for (i = 1; i <= 20; i++) x = x * 1.1 + 1 / i
        printf "%.12f\n", x
        printf "%.17g %.17g\n", 0.1 + 0.2, 1 / 3
        t = 1; for (i = 0; i < 1074; i++) t /= 2
        printf "%.6e %.6e\n", 1e300 * 1e10, t
        printf "%d %d %.3f\n", 7.9, -7.9, 10 / 7
        s = 0; for (i = 1; i <= 1000; i++) s += 1 / (i * i)
        printf "%.15f\n", s
    }"#;
    let out = run_guest(&["awk", program]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "22.508890040215\n\
         0.30000000000000004 0.33333333333333331\n\
         inf 4.940656e-324\n\
         7 -7 1.429\n\
         1.643934566681561\n"
    );
}

#[test]
fn md5sum_of_generated_data_matches_the_host() {
    let script =
        "seq 1 200000 | md5sum; dd if=/dev/zero bs=64k count=64 2>/dev/null | tr '\\0' k | md5sum";
    let out = run_guest(&["sh", "-c", script]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let host = Command::new("sh").args(["-c", script]).stdin(Stdio::null()).output().unwrap();
    assert!(host.status.success());
    assert_eq!(stdout(&out), String::from_utf8_lossy(&host.stdout));
}

#[test]
fn piped_stdin_reaches_the_guest_without_loss() {
    // 300 KB of text lines from a file: far more than the UART FIFO and the guest's tty
    // buffer hold, so this only passes if keel holds input back until the guest takes it.
    let input = std::env::temp_dir().join(format!("keel-stdin-{}.txt", std::process::id()));
    let text: String =
        (0..20_000).map(|i| format!("line {i:06} {}\n", i * 7919 % 100_003)).collect();
    std::fs::write(&input, &text).unwrap();
    image();
    let mut cmd = keel();
    cmd.args(["run", "--", "sh", "-c", "stty -echo; head -c 300000 | md5sum"]);
    let stdin = std::fs::File::open(&input).unwrap();
    assert!(text.len() > 300_000);
    let expected = Command::new("sh")
        .arg("-c")
        .arg(format!("head -c 300000 {} | md5sum", input.display()))
        .output()
        .unwrap();
    let out = run_with_stdin(&mut cmd, stdin.into(), Duration::from_secs(180));
    let _ = std::fs::remove_file(&input);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let want = String::from_utf8_lossy(&expected.stdout)[..32].to_string();
    assert!(
        stdout(&out).ends_with(&format!("{want}  -\n")),
        "guest saw different bytes; it printed: {:?}",
        stdout(&out).lines().last()
    );
}

#[test]
fn arguments_arrive_intact() {
    let args = ["printf", "[%s]\n", "two words", "", "quote\"s", "tab\there", "trailing\n", "ünï"];
    let out = run_guest(&args);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "[two words]\n[]\n[quote\"s]\n[tab\there]\n[trailing\n]\n[ünï]\n");
}

#[test]
fn user_programs_can_read_the_time_csr() {
    // busybox `time` reads the `time` CSR from U-mode (rdtime); that needs scounteren.TM,
    // which keel, as the firmware, leaves set (Linux only sets it with the SBI PMU extension).
    let out = run_guest(&["sh", "-c", "time true 2>&1; echo status=$?"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("real") && text.ends_with("status=0\n"), "{text}");
}
