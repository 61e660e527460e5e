//! End-to-end: an interactive session on the guest's console, driven through a real
//! pseudo-terminal the way a person at a terminal would drive it.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::openpty;
use nix::sys::termios;

use common::*;

struct Session {
    master: std::fs::File,
    child: Child,
    seen: Vec<u8>,
}

impl Session {
    /// Reads until `needle` appears after position `from` in everything seen, or fails.
    fn expect(&mut self, needle: &str, from: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(pos) = find(&self.seen[from.min(self.seen.len())..], needle.as_bytes()) {
                return from + pos + needle.len();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {needle:?} within {limit:?}; the console showed:\n{}",
                String::from_utf8_lossy(&self.seen)
            );
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            if poll(&mut fds, PollTimeout::try_from(ms).unwrap()).unwrap_or(0) == 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => self.seen.extend_from_slice(&buf[..n]),
                // EIO: the other side closed (keel exited).
                _ => panic!(
                    "console closed while waiting for {needle:?}:\n{}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }

    fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "keel did not exit within {limit:?}");
            // Keep draining output so keel never blocks on a full pty buffer.
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(100u8)).unwrap_or(0) > 0 {
                let mut buf = [0u8; 4096];
                if let Ok(n) = self.master.read(&mut buf) {
                    self.seen.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Starts `keel ARGS` with a new pseudo-terminal as its stdin, stdout and stderr; returns the
/// session (holding the master side), the slave side (to inspect the terminal's settings),
/// and the settings the terminal had before keel started.
fn open_session(args: &[&str]) -> (Session, OwnedFd, termios::Termios) {
    image();
    let pty = openpty(None, None).expect("openpty");
    let before = termios::tcgetattr(pty.slave.as_fd()).unwrap();
    let dup = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let child = Command::new(keel_bin())
        .args(args)
        .stdin(dup(&pty.slave))
        .stdout(dup(&pty.slave))
        .stderr(dup(&pty.slave))
        .spawn()
        .expect("start keel");
    (
        Session { master: std::fs::File::from(pty.master), child, seen: Vec::new() },
        pty.slave,
        before,
    )
}

#[test]
fn interactive_shell_runs_two_commands_and_powers_off() {
    let (mut s, slave, before) = open_session(&["run"]);
    let at = s.expect("# ", 0, Duration::from_secs(120));
    s.send("echo $((6 * 7))-ok\r");
    let at = s.expect("42-ok", at, Duration::from_secs(30));
    s.send("uname -m\r");
    let at = s.expect("riscv64", at, Duration::from_secs(30));
    s.expect("# ", at, Duration::from_secs(30));
    s.send("poweroff\r");
    let status = s.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "power-off must end keel with status 0, got {status}");
    let after = termios::tcgetattr(slave.as_fd()).unwrap();
    assert_eq!(before.local_flags, after.local_flags, "keel must restore the terminal");
    assert_eq!(before.input_flags, after.input_flags);
}

#[test]
fn ctrl_a_x_quits_and_restores_the_terminal() {
    let (mut s, slave, before) = open_session(&["run"]);
    s.expect("# ", 0, Duration::from_secs(120));
    // While keel runs, the terminal is raw: no echo, no line editing, no signals.
    let during = termios::tcgetattr(slave.as_fd()).unwrap();
    assert!(!during.local_flags.contains(termios::LocalFlags::ICANON));
    assert!(!during.local_flags.contains(termios::LocalFlags::ISIG));
    s.send("\x01x");
    let status = s.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "Ctrl-A X ends keel with status 0, got {status}");
    let after = termios::tcgetattr(slave.as_fd()).unwrap();
    assert_eq!(before.local_flags, after.local_flags, "keel must restore the terminal");
    assert_eq!(before.output_flags, after.output_flags);
}
