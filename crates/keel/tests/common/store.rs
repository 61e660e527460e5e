//! A state root of its own for one end-to-end test (`KEEL_STATE_DIR`), with the CLI and
//! console helpers the managed-VM tests share. Every VMM left under it is killed on drop.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use super::common::*;

pub const DEADLINE: Duration = Duration::from_secs(120);
pub const PROMPT: &str = "keel:/# ";

/// A state root for one test, removed (with every VM in it stopped) when dropped.
pub struct Root(pub PathBuf);

impl Root {
    pub fn new(name: &str) -> Root {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vms").join(name);
        let root = Root(dir);
        root.kill_all();
        let _ = std::fs::remove_dir_all(&root.0);
        std::fs::create_dir_all(&root.0).unwrap();
        root
    }

    pub fn keel(&self, args: &[&str]) -> Output {
        let mut cmd = keel();
        cmd.env("KEEL_STATE_DIR", &self.0).args(args);
        run_with_deadline(&mut cmd, DEADLINE)
    }

    /// `keel ARGS` must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.keel(args);
        assert!(
            out.status.success(),
            "keel {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// `keel ARGS` must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.keel(args);
        assert!(!out.status.success(), "keel {args:?} should fail; stdout: {}", stdout(&out));
        assert_eq!(out.status.code(), Some(1), "errors exit 1: {}", stderr(&out));
        stderr(&out)
    }

    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.0.join("vms").join(name)
    }

    pub fn console_log(&self, name: &str) -> String {
        String::from_utf8_lossy(
            &std::fs::read(self.vm_dir(name).join("console.log")).unwrap_or_default(),
        )
        .into_owned()
    }

    /// Waits until the console log has `needle` after byte `from`; returns the end of the
    /// match.
    pub fn await_console(&self, name: &str, needle: &str, from: usize) -> usize {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let log = self.console_log(name);
            if let Some(i) = log.get(from..).and_then(|rest| rest.find(needle)) {
                return from + i + needle.len();
            }
            assert!(
                Instant::now() < deadline,
                "{name}: no {needle:?} on the console within {DEADLINE:?}; it shows:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `line` on the VM's console (`keel console` with stdin from a pipe).
    pub fn type_line(&self, name: &str, line: &str) {
        let mut cmd = keel();
        cmd.env("KEEL_STATE_DIR", &self.0).args(["console", name, "--timeout", "0.2"]);
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(format!("{line}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "keel console: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn state(&self, name: &str) -> String {
        let ls = self.ok(&["ls"]);
        ls.lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(name)).then(|| f.next().unwrap_or("").to_string())
            })
            .unwrap_or_else(|| panic!("{name} not in keel ls:\n{ls}"))
    }

    pub fn pid(&self, name: &str) -> i32 {
        std::fs::read_to_string(self.vm_dir(name).join("pid")).unwrap().trim().parse().unwrap()
    }

    /// SIGKILLs every VMM still running under this root (a failed test must not leave any).
    pub fn kill_all(&self) {
        let Ok(vms) = std::fs::read_dir(self.0.join("vms")) else { return };
        for vm in vms.flatten() {
            if let Ok(pid) = std::fs::read_to_string(vm.path().join("pid")) {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        self.kill_all();
    }
}
