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

/// The default initramfs plus the given guest programs as /bin/NAME: each is
/// tests/guest-tools/NAME.c, compiled with Debian's RISC-V cross compiler (static, so it
/// needs no libraries in the guest). The programs go in a second newc archive appended to
/// the image's (Linux unpacks concatenated archives in order). Written to `dir/initrd.img`.
pub fn initrd_with_tools(dir: &Path, tools: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut bytes = std::fs::read(&image().1).expect("the default initrd");
    // The next archive must start 4-byte aligned; the kernel skips zero padding.
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    for tool in tools {
        let out = dir.join(tool);
        let status = std::process::Command::new("riscv64-linux-gnu-gcc")
            .args(["-static", "-O2", "-Wall", "-pthread", "-o"])
            .arg(&out)
            .arg(tests_dir().join(format!("guest-tools/{tool}.c")))
            .status()
            .expect(
                "riscv64-linux-gnu-gcc (install gcc-riscv64-linux-gnu; the README's test command does)",
            );
        assert!(
            status.success(),
            "compiling {tool}.c failed (it needs libc6-dev-riscv64-cross; scripts/test.sh installs it)"
        );
        append_newc(&mut bytes, &format!("bin/{tool}"), 0o100755, &std::fs::read(&out).unwrap());
    }
    append_newc(&mut bytes, "TRAILER!!!", 0, &[]);
    let path = dir.join("initrd.img");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// One entry of a newc ("070701") cpio archive: a 110-byte ASCII header, the name with its
/// NUL padded to 4 bytes, the data padded to 4 bytes (Linux's buffer-format.rst).
pub fn append_newc(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
    static INO: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0x7000);
    let ino = INO.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nlink = if mode == 0 { 0 } else { 1 };
    let fields =
        [ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}
