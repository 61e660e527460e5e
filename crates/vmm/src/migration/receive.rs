//! The receiving side of a live migration (see the module docs of [`super`]).
//!
//! [`accept`] waits for one sender, authenticates it and reads the VM it offers; the caller
//! then makes a [`VmController`] for that VM (or refuses it) and [`Incoming::receive`] fills
//! guest RAM, builds the machine and, on the sender's word, lets the guest run. Until then
//! nothing runs: on any failure the caller drops everything.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_machine::{fdt, Machine, MachineState};
use keel_memory::{DirtyPages, GuestRam};

use super::protocol::{self, Channel, Commit, Config, Kind, Round, PAGE_SIZE};
use super::{auth, MigrationError, Progress, Token};
use crate::control::VmController;

/// A sender that has authenticated and offered a VM.
pub struct Incoming {
    ch: Channel,
    config: Config,
    peer: SocketAddr,
}

/// What a received migration did.
#[derive(Debug, Clone)]
pub struct Report {
    pub peer: SocketAddr,
    /// Bytes of guest memory received.
    pub memory_bytes: u64,
    pub rounds: u32,
    /// From the sender's last round (its VM paused) to the guest running here.
    pub downtime: Duration,
}

/// Waits until `deadline` for one sender on `listener`, authenticates it with `token` and
/// reads its offer. A peer that is not a keel sender, or whose token is wrong, is refused
/// (with an `Error` frame saying why) and ends the wait with an error.
pub fn accept(
    listener: &TcpListener,
    token: &Token,
    deadline: Instant,
    timeout: Duration,
) -> Result<Incoming, MigrationError> {
    let (stream, peer) = wait_for_peer(listener, deadline)?;
    let set = |s: &TcpStream| {
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))
    };
    set(&stream).map_err(|e| MigrationError::from_io("connection", e))?;
    let mut ch = Channel::open(stream)?;
    auth::as_receiver(&mut ch, token)?;
    let config: Config = ch.expect(Kind::Config)?.decode()?;
    Ok(Incoming { ch, config, peer })
}

fn wait_for_peer(
    listener: &TcpListener,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), MigrationError> {
    listener.set_nonblocking(true).map_err(|e| MigrationError::from_io("listen", e))?;
    loop {
        match listener.accept() {
            Ok(pair) => return Ok(pair),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(MigrationError::Refuse(
                        "no sender connected in time (`keel receive --timeout` waits longer)"
                            .into(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(MigrationError::from_io("accept", e)),
        }
    }
}

impl Incoming {
    /// The VM file the sender describes its VM with.
    pub fn vm_file(&self) -> &str {
        &self.config.vm_file
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Turns the offer down, telling the sender why.
    pub fn refuse(mut self, why: &str) -> MigrationError {
        let _ = self.ch.send_error(why);
        MigrationError::Refuse(why.to_string())
    }

    /// Receives the VM into `controller` (made from [`Incoming::vm_file`], not started):
    /// guest RAM, then the state; builds the machine paused, and lets it run once the sender
    /// commits. On error nothing runs here (a machine built meanwhile is stopped) and the
    /// sender has been told.
    pub fn receive(
        mut self,
        controller: &VmController,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Report, MigrationError> {
        let result = self.receive_inner(controller, progress);
        if let Err(e) = &result {
            let _ = self.ch.send_error(&format!("the receiver gave up: {e}"));
            // Whatever was built must not run: the source takes the VM back.
            let _ = controller.kill();
            let _ = controller.wait_timeout(Duration::from_secs(10));
        }
        result
    }

    fn receive_inner(
        &mut self,
        controller: &VmController,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Report, MigrationError> {
        let size = self.config.ram_size;
        let ours = controller.config().memory_mib << 20;
        if size != ours {
            return Err(MigrationError::Refuse(format!(
                "the sender's VM has {} MiB of memory, its VM file says {} MiB",
                size >> 20,
                ours >> 20
            )));
        }
        let ram = GuestRam::new(fdt::RAM_BASE, size)
            .map_err(|e| MigrationError::Refuse(format!("cannot map guest memory: {e}")))?;
        self.ch.send(Kind::ConfigOk, &[])?;
        self.ch.flush()?;
        let mut state = Progress { phase: "receiving", ram_bytes: size, ..Progress::default() };
        progress(&state);
        let mut written = DirtyPages::new(fdt::RAM_BASE, size / PAGE_SIZE as u64);
        let mut last_round_at = None;
        let zeros = vec![0u8; PAGE_SIZE];
        let mut last_report = Instant::now();
        let machine: MachineState = loop {
            let frame = self.ch.recv()?;
            match frame.kind {
                Kind::Round => {
                    let round: Round = frame.decode()?;
                    state.round = round.round;
                    state.dirty_pages = round.pages;
                    if round.last {
                        last_round_at = Some(Instant::now());
                        state.phase = "stop-and-copy";
                    }
                    progress(&state);
                }
                Kind::Pages => {
                    for entry in protocol::pages(&frame.payload) {
                        let (page, data) = entry?;
                        let addr = page
                            .checked_mul(PAGE_SIZE as u64)
                            .filter(|&off| off < size)
                            .map(|off| fdt::RAM_BASE + off)
                            .ok_or_else(|| {
                                MigrationError::Malformed(format!(
                                    "page {page} is outside guest RAM"
                                ))
                            })?;
                        let bytes = match data {
                            Some(bytes) => {
                                state.memory_bytes += PAGE_SIZE as u64;
                                bytes
                            }
                            // Fresh RAM reads as zero already.
                            None if !written.contains(page) => continue,
                            None => &zeros,
                        };
                        ram.write_slice(addr, bytes)
                            .map_err(|e| MigrationError::Malformed(e.to_string()))?;
                        written.insert(page);
                        state.dirty_pages = state.dirty_pages.saturating_sub(1);
                    }
                    if last_report.elapsed() >= Duration::from_millis(100) {
                        progress(&state);
                        last_report = Instant::now();
                    }
                }
                Kind::State => break frame.decode()?,
                other => {
                    return Err(MigrationError::Unexpected { expected: Kind::Pages, got: other })
                }
            }
        };
        state.phase = "starting";
        progress(&state);
        let ram = Arc::new(ram);
        controller.start_restored(true, |config, console| {
            Ok(Machine::restore(config, console, ram, &machine)?)
        })?;
        self.ch.send(Kind::Ready, &[])?;
        self.ch.flush()?;
        let commit: Commit = self.ch.expect(Kind::Commit)?.decode()?;
        if commit.resume {
            controller.resume()?;
        }
        let downtime = last_round_at.map(|t| t.elapsed()).unwrap_or_default();
        // The guest is ours now: an answer lost on the way changes nothing here.
        let _ = self.ch.send(Kind::Done, &[]).and_then(|()| self.ch.flush());
        state.phase = "done";
        progress(&state);
        Ok(Report {
            peer: self.peer,
            memory_bytes: state.memory_bytes,
            rounds: state.round + 1,
            downtime,
        })
    }
}
