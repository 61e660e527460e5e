//! `keel vmm --incoming HOST:PORT`: a VMM that receives its VM by live migration.
//!
//! `keel receive` makes the VM directory with an `incoming` marker and spawns this VMM. It
//! listens for one sender, authenticates it (the token is in `$KEEL_MIGRATION_TOKEN`), writes
//! the VM file the sender describes as `vm.toml`, serves the API (`GET /progress` shows the
//! migration), receives guest memory and state, builds the machine paused and, when the
//! sender commits, lets the guest run and removes the marker: from then on it is an ordinary
//! running VM. Until then nothing runs here: on any failure (a wrong token, a sender that
//! goes away, a VM file that cannot be built here) the VMM removes the whole VM directory
//! and exits, so that no half-received VM is left behind.

use std::net::{TcpListener, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use keel_vmm::migration::receive::{self, Incoming};
use keel_vmm::migration::{auth, MigrationError, Token};

use super::Vmm;

/// The marker `keel receive` leaves in the directory while the VM is being received.
pub const MARKER: &str = "incoming";
/// How long the sender may keep us waiting at any step once it is connected.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Listens on `listen` until `timeout` for one sender, authenticates it and writes the VM
/// file it offers into `dir`.
pub fn accept(
    dir: &Path,
    name: &str,
    listen: &str,
    timeout: Duration,
) -> Result<Incoming, MigrationError> {
    let token = Token::from_env()?.ok_or_else(|| {
        MigrationError::Token(format!("no token: {} is not set", auth::TOKEN_ENV))
    })?;
    let addrs = listen
        .to_socket_addrs()
        .map_err(|e| MigrationError::Refuse(format!("cannot listen on {listen}: {e}")))?;
    let mut last = None;
    let listener =
        addrs.into_iter().find_map(|a| TcpListener::bind(a).map_err(|e| last = Some(e)).ok());
    let listener = listener.ok_or_else(|| {
        MigrationError::Refuse(match last {
            Some(e) => format!("cannot listen on {listen}: {e}"),
            None => format!("cannot listen on {listen}: no address"),
        })
    })?;
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| listen.into());
    eprintln!("keel: VM {name}: waiting for a live migration on {addr}");
    let incoming = receive::accept(&listener, &token, Instant::now() + timeout, PEER_TIMEOUT)?;
    // One sender per VM: nobody else may connect from here on.
    drop(listener);
    eprintln!("keel: VM {name}: sender {} authenticated", incoming.peer());
    let text =
        format!("# Received by live migration from {}.\n{}", incoming.peer(), incoming.vm_file());
    if let Err(e) = super::write_atomically(&dir.join("vm.toml"), text.as_bytes()) {
        return Err(incoming.refuse(&format!("the receiver cannot write its VM file: {e:#}")));
    }
    Ok(incoming)
}

/// Receives the VM into the VMM's controller; on success the guest runs here.
pub fn receive(vmm: &Vmm, pending: Incoming) -> Result<(), MigrationError> {
    let _op = vmm.begin("migration").map_err(|e| MigrationError::Refuse(e.message))?;
    let peer = pending.peer();
    let report = pending.receive(&vmm.controller, &mut |p| vmm.report_migration(p))?;
    vmm.incoming.store(false, Ordering::SeqCst);
    let _ = std::fs::remove_file(vmm.dir.join(MARKER));
    eprintln!(
        "keel: VM {}: received from {peer}: {} MiB of memory in {} rounds, {} ms from the \
         last round to running; the guest runs here",
        vmm.name,
        report.memory_bytes >> 20,
        report.rounds,
        report.downtime.as_millis()
    );
    Ok(())
}

/// Nothing was received that may run: says why, removes the VM directory, and gives the
/// VMM's exit status.
pub fn give_up(dir: &Path, name: &str, e: &MigrationError) -> ExitCode {
    eprintln!("keel: VM {name}: migration not received: {e}");
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("keel: VM {name}: cannot remove {}: {e}", dir.display());
    }
    ExitCode::FAILURE
}
