//! `keel console NAME`: attaches the terminal to a running VM's serial console through the
//! API's `GET /console` upgrade. Detaching (Ctrl-] or, for scripts, stdin's end followed by a
//! quiet spell) leaves the VM running.

use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use keel_vmm::terminal::RawMode;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::commands::ManageError;
use super::status::{api, probe};
use super::store::VmDir;

/// Ctrl-]: detaches, as in telnet.
const DETACH: u8 = 0x1d;
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the console session ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Ctrl-] on the terminal.
    Detached,
    /// stdin ended and the guest then stayed quiet.
    Quiet,
    /// The VMM closed the connection: the VM stopped.
    Closed,
}

/// Attaches to `vm`'s console. With a terminal on stdin it goes raw and Ctrl-] detaches.
/// Otherwise stdin is copied to the guest until it ends, and the output keeps coming until
/// the guest has printed nothing for `quiet` (or the VM stops).
pub fn attach(vm: &VmDir, quiet: Duration) -> anyhow::Result<()> {
    let status = probe(vm);
    if !status.state.is_live() {
        return Err(ManageError::NotRunning { name: vm.name.clone(), state: status.state }.into());
    }
    let (stream, early) =
        api(vm, UPGRADE_TIMEOUT).upgrade("/console", "keel-console").map_err(|source| {
            ManageError::Api { name: vm.name.clone(), action: "attach to", source }
        })?;
    let interactive = io::stdin().is_terminal();
    let raw = if interactive {
        eprintln!("attached to {}; Ctrl-] detaches", vm.name);
        Some(RawMode::enable()?)
    } else {
        None
    };
    let end = pump(stream, &early, interactive, quiet);
    drop(raw);
    match end? {
        End::Detached if interactive => {
            eprintln!("\ndetached from {}; it keeps running", vm.name)
        }
        End::Closed => eprintln!("\nkeel: {}'s console closed: the VM stopped", vm.name),
        End::Detached | End::Quiet => {}
    }
    Ok(())
}

/// Copies stdin to the socket and the socket to stdout, in one thread with poll(2), so
/// either side ending is noticed at once.
fn pump(mut sock: UnixStream, early: &[u8], interactive: bool, quiet: Duration) -> io::Result<End> {
    let stdin = io::stdin();
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout.write_all(early).and_then(|()| stdout.flush()) {
        return stdout_gone(e);
    }
    let mut stdin_open = true;
    let mut quiet_since = Instant::now();
    let mut buf = [0u8; 8192];
    loop {
        let timeout = if stdin_open {
            PollTimeout::NONE
        } else {
            let left = quiet.saturating_sub(quiet_since.elapsed());
            if left.is_zero() {
                return Ok(End::Quiet);
            }
            // Round up so the loop doesn't spin on a sub-millisecond remainder.
            PollTimeout::try_from(left + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX)
        };
        let (sock_ready, stdin_ready) = {
            let mut fds = vec![PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            let ready = |fd: &PollFd| fd.any().unwrap_or(false);
            (ready(&fds[0]), fds.get(1).is_some_and(ready))
        };
        if sock_ready {
            let n = match sock.read(&mut buf) {
                Ok(0) => return Ok(End::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Ok(End::Closed),
            };
            if let Err(e) = stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()) {
                return stdout_gone(e);
            }
            quiet_since = Instant::now();
        }
        if stdin_ready {
            // Straight from the descriptor: std's buffered stdin could hold bytes poll(2)
            // would never report.
            let n = match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(n) => n,
            };
            if n == 0 {
                stdin_open = false;
                quiet_since = Instant::now();
                continue;
            }
            let (data, detach) = match buf[..n].iter().position(|&b| b == DETACH) {
                Some(i) if interactive => (&buf[..i], true),
                _ => (&buf[..n], false),
            };
            if sock.write_all(data).is_err() {
                return Ok(End::Closed);
            }
            if detach {
                return Ok(End::Detached);
            }
        }
    }
}

/// A reader that went away (`keel console vm | head`) ends the session quietly.
fn stdout_gone(e: io::Error) -> io::Result<End> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(End::Detached)
    } else {
        Err(e)
    }
}
