//! Helpers for keel's end-to-end tests: the `keel` binary, the default guest image, and
//! running with a deadline.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use wait_timeout::ChildExt;

pub fn keel_bin() -> &'static str {
    env!("CARGO_BIN_EXE_keel")
}

pub fn keel() -> Command {
    Command::new(keel_bin())
}

/// The default guest image (kernel, initrd), pulled once per test run if missing: the
/// README's test command pulls it first, so this is normally a quick check.
pub fn image() -> &'static (PathBuf, PathBuf) {
    static IMAGE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = keel()
            .args(["image", "pull"])
            .stdin(Stdio::null())
            .output()
            .expect("run keel image pull");
        assert!(
            out.status.success(),
            "keel image pull failed (the end-to-end tests need Debian's riscv64 kernel):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cache = keel_guest::ImageCache::from_env().expect("cache dir");
        let img = cache.default_image().expect("image present after pull");
        (img.kernel, img.initrd)
    })
}

/// Runs `cmd` with stdin from /dev/null, failing the test if it takes longer than `limit`.
pub fn run_with_deadline(cmd: &mut Command, limit: Duration) -> Output {
    run_with_stdin(cmd, Stdio::null(), limit)
}

/// Runs `cmd` with the given stdin, failing the test if it takes longer than `limit`.
pub fn run_with_stdin(cmd: &mut Command, stdin: Stdio, limit: Duration) -> Output {
    let mut child =
        cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start keel");
    // Drain the pipes on threads so a chatty guest can't block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).ok();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut v).ok();
        v
    });
    let status = match child.wait_timeout(limit).expect("wait for keel") {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
            panic!("keel did not finish within {limit:?}; stderr:\n{err}");
        }
    };
    Output { status, stdout: out_t.join().unwrap(), stderr: err_t.join().unwrap() }
}

/// `keel run -- ARGS...` on the default VM.
pub fn run_guest(args: &[&str]) -> Output {
    image();
    let mut cmd = keel();
    cmd.arg("run").arg("--").args(args);
    run_with_deadline(&mut cmd, Duration::from_secs(180))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests")
}
