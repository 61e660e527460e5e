//! Bad input: every mistake gets a one-line error naming what is wrong and a non-zero exit,
//! never a panic.

mod common;

use std::time::Duration;

use common::*;

fn keel_err(args: &[&str]) -> (Option<i32>, String) {
    keel_err_with(args, &[])
}

/// `keel ARGS` with `env` added to its environment.
fn keel_err_with(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = keel();
    cmd.args(args).envs(env.iter().copied());
    let out = run_with_deadline(&mut cmd, Duration::from_secs(60));
    let err = stderr(&out);
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "keel panicked: {err}");
    (out.status.code(), err)
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_missing_kernel_is_named() {
    let (code, err) =
        keel_err(&["run", "--kernel", "/nonexistent/vmlinux", "--initrd", "/dev/null"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/nonexistent/vmlinux"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn a_file_that_is_not_a_kernel_is_refused() {
    let path = scratch("not-a-kernel.txt");
    std::fs::write(&path, "just some text, not a kernel\n").unwrap();
    let (code, err) = keel_err(&["run", "--kernel", path.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not-a-kernel.txt"), "{err}");
}

#[test]
fn zero_or_impossible_memory_is_refused() {
    let (code, err) = keel_err(&["run", "--memory", "0", "--kernel", "/dev/null"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("memory"), "{err}");
    let (code, err) = keel_err(&["run", "--memory", "999999999999", "--kernel", "/dev/null"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("memory"), "{err}");
}

#[test]
fn a_malformed_vm_file_names_the_file_line_and_key() {
    let path = scratch("bad.toml");
    std::fs::write(&path, "vcpus = 1\nmemory = 128\nmemroy = 64\n").unwrap();
    let (code, err) = keel_err(&["run", path.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.toml:3"), "{err}");
    assert!(err.contains("memroy"), "{err}");
    std::fs::write(&path, "memory = [1, 2\n").unwrap();
    let (code, err) = keel_err(&["run", path.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.toml:"), "{err}");
}

#[test]
fn a_command_too_long_for_the_kernel_command_line_is_refused() {
    let long = "x".repeat(900);
    let (code, err) = keel_err(&["run", "--kernel", "/dev/null", "--", "echo", &long]);
    assert_eq!(code, Some(1));
    assert!(err.contains("1023"), "{err}");
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let (code, err) = keel_err(&["run", "--frobnicate"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--frobnicate"), "{err}");
}

#[test]
fn a_bare_metal_program_reports_through_htif() {
    // selftest-fail.S exits through HTIF tohost with code 7; built by the ISA suite's rules.
    let src = tests_dir().join("isa/selftest-fail.S");
    let elf = scratch("selftest-fail.elf");
    let isa = tests_dir().join("isa");
    let cc = std::process::Command::new("riscv64-linux-gnu-gcc")
        .args([
            "-march=rv64gc_zicsr_zifencei",
            "-mabi=lp64d",
            "-nostdlib",
            "-nostartfiles",
            "-static",
            "-Wl,--build-id=none",
            "-T",
        ])
        .arg(isa.join("link.ld"))
        .arg("-I")
        .arg(&isa)
        .arg("-o")
        .arg(&elf)
        .arg(&src)
        .status()
        .expect(
            "riscv64-linux-gnu-gcc (install gcc-riscv64-linux-gnu; the README's test command does)",
        );
    assert!(cc.success());
    let mut cmd = keel();
    cmd.args(["run", "--firmware", "none", "--kernel", elf.to_str().unwrap()]);
    let out = run_with_deadline(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(7));
}

/// The error names the engine asked for and the ones keel has.
fn assert_names_engines(err: &str, asked: &str) {
    assert!(err.contains(asked), "{err}");
    assert!(err.contains("\"jit\"") && err.contains("\"interp\""), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn an_unknown_engine_is_refused_naming_the_engines() {
    let (code, err) = keel_err(&["run", "--accel", "fast"]);
    assert_eq!(code, Some(1));
    assert_names_engines(&err, "\"fast\"");

    let (code, err) = keel_err_with(&["run", "--kernel", "/dev/null"], &[("KEEL_ACCEL", "turbo")]);
    assert_eq!(code, Some(1));
    assert_names_engines(&err, "\"turbo\"");
    assert!(err.contains("$KEEL_ACCEL"), "{err}");
    // The flag wins over the environment: this fails on the kernel, not on the engine.
    let (code, err) = keel_err_with(
        &["run", "--accel", "interp", "--kernel", "/nonexistent/vmlinux", "--initrd", "/dev/null"],
        &[("KEEL_ACCEL", "turbo")],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("/nonexistent/vmlinux") && !err.contains("turbo"), "{err}");

    let path = scratch("accel.toml");
    std::fs::write(&path, "accel = \"fast\"\n").unwrap();
    let (code, err) = keel_err(&["run", path.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert_names_engines(&err, "\"fast\"");
    assert!(err.contains("accel.toml"), "{err}");

    // keel restore and keel clone check the engine before they look at the snapshot or make
    // a VM.
    let state = scratch("accel-state");
    let env = [("KEEL_STATE_DIR", state.to_str().unwrap())];
    for args in [
        &["restore", "/nonexistent/snap", "v", "--accel", "fast"][..],
        &["clone", "/nonexistent/snap", "v1", "v2", "--accel", "fast"],
    ] {
        let (code, err) = keel_err_with(args, &env);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert_names_engines(&err, "\"fast\"");
        assert!(err.contains("--accel"), "{err}");
    }
    assert!(!state.join("vms/v").exists() && !state.join("vms/v1").exists(), "no VM is made");
}
