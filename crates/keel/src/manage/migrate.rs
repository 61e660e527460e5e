//! `keel migrate NAME HOST:PORT` and `keel receive --listen HOST:PORT NAME`: live migration
//! of a running VM between two hosts (see keel-vmm's `migration` module for the protocol).
//!
//! The token both ends share comes from `--token-file` or `$KEEL_MIGRATION_TOKEN`, never from
//! the command line (which `ps` shows). The sending side hands it to its VMM over the VM's
//! private API socket; the receiving side to the VMM it spawns, in its environment.

use std::fs;
use std::io::{IsTerminal, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_vmm::migration::{auth, Token};
use serde_json::{json, Value};

use super::commands::{spawn_vmm, wait_exit, ManageError, Spawned};
use super::progress::put_with_progress;
use super::status::{api, probe, VmState, INCOMING_MARKER};
use super::store::{validate_name, write_atomic, Store, StoreError};

/// A migration of a large guest over a slow link takes a while; the request waits for all
/// of it.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a migrated VM's VMM gets to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// The token from `file`, else from `$KEEL_MIGRATION_TOKEN`.
fn load_token(file: Option<&Path>) -> Result<Token, ManageError> {
    let token = match file {
        Some(f) => Token::from_file(f),
        None => Token::from_env().and_then(|t| {
            t.ok_or_else(|| {
                keel_vmm::migration::MigrationError::Token(format!(
                    "give --token-file FILE or set {} (the same secret on both hosts)",
                    auth::TOKEN_ENV
                ))
            })
        }),
    };
    token.map_err(|e| ManageError::Migration(e.to_string()))
}

/// `keel migrate NAME HOST:PORT [--token-file F] [--max-bandwidth MIB]`.
pub fn migrate(
    store: &Store,
    name: &str,
    destination: &str,
    token_file: Option<&Path>,
    max_bandwidth_mib: Option<u64>,
) -> Result<(), ManageError> {
    let token = load_token(token_file)?;
    let text = std::str::from_utf8(token.expose())
        .map_err(|_| ManageError::Migration("migration token: it must be text (UTF-8)".into()))?;
    let vm = store.vm(name)?;
    let status = probe(&vm);
    if !matches!(status.state, VmState::Running | VmState::Paused) {
        return Err(ManageError::NotRunning { name: vm.name, state: status.state });
    }
    let mut body = json!({"destination": destination, "token": text});
    if let Some(mib) = max_bandwidth_mib {
        body["max_bandwidth_mib"] = json!(mib);
    }
    let what = format!("migrating {name} to {destination}");
    let line = |p: &Value| {
        (p["operation"] == "migration").then(|| {
            format!(
                "{what}: {}, round {}, {} MiB sent, {} dirty pages left",
                p["phase"].as_str().unwrap_or("?"),
                p["round"].as_u64().unwrap_or(0),
                p["done_bytes"].as_u64().unwrap_or(0) >> 20,
                p["dirty_pages"].as_u64().unwrap_or(0),
            )
        })
    };
    let answer = put_with_progress(&vm, MIGRATE_TIMEOUT, "/migrate", &body, line);
    let report = answer.map_err(|source| ManageError::Api {
        name: name.to_string(),
        action: "migrate",
        source,
    })?;
    let mib = report["memory_bytes"].as_u64().unwrap_or(0) as f64 / f64::from(1 << 20);
    let secs = report["total_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
    println!(
        "{name}: migrated to {destination} in {secs:.2} s: {} rounds, {mib:.1} MiB of memory \
         sent; the guest stood still {} ms",
        report["rounds"], report["downtime_ms"],
    );
    if report["confirmed"] == Value::Bool(false) {
        println!(
            "{name}: the receiver's confirmation was lost, but it holds the VM's disks, so it \
             runs the guest"
        );
    }
    // The VMM exits once its VM has ended; `keel ls` then shows it migrated.
    if let Some(pid) = status.pid {
        wait_exit(pid, &vm.path, EXIT_DEADLINE);
    }
    Ok(())
}

/// `keel receive --listen HOST:PORT NAME [--token-file F] [--timeout SECS]`: makes the VM's
/// directory, spawns its VMM (`keel vmm --incoming`), and waits until the received guest
/// runs, or the VMM gives up (it then removes the directory, and this says why).
pub fn receive(
    store: &Store,
    name: &str,
    listen: &str,
    token_file: Option<&Path>,
    timeout: u64,
) -> Result<(), ManageError> {
    let token = load_token(token_file)?;
    validate_name(name)?;
    if store.vm(name).is_ok() {
        return Err(StoreError::Exists(name.to_string()).into());
    }
    let vm = store.create(name)?;
    let io = |action| {
        let name = name.to_string();
        move |source| ManageError::Io { name, action, source }
    };
    let setup = || -> Result<(Spawned, fs::File), ManageError> {
        write_atomic(&vm.path.join(INCOMING_MARKER), format!("{listen}\n").as_bytes())?;
        // Read through our own handle: it outlives the directory if the VMM removes it.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(vm.keel_log())
            .map_err(io("open keel.log"))?;
        let timeout = timeout.to_string();
        let args = ["--incoming", listen, "--incoming-timeout", &timeout].map(std::ffi::OsStr::new);
        let env = [(auth::TOKEN_ENV, std::ffi::OsStr::from_bytes(token.expose()))];
        Ok((spawn_vmm(&vm, &args, &env)?, log))
    };
    let (Spawned { mut child, log_start, .. }, mut log) = match setup() {
        Ok(s) => s,
        Err(e) => {
            let _ = vm.remove();
            return Err(e);
        }
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in
        [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP]
    {
        signal_hook::flag::register(signal, interrupted.clone()).map_err(io("handle signals"))?;
    }
    let mut stderr = std::io::stderr();
    let terminal = stderr.is_terminal();
    let mut shown = false;
    let outcome = loop {
        if let Some(status) = child.try_wait().map_err(io("wait for the VMM"))? {
            break Err(format!("its VMM exited ({status})"));
        }
        if interrupted.load(Ordering::SeqCst) {
            // Our own child, and the guest does not run yet: nothing is lost.
            let _ = child.kill();
            let _ = child.wait();
            break Err("interrupted".to_string());
        }
        if vm.path.exists() && !vm.path.join(INCOMING_MARKER).exists() {
            break Ok(());
        }
        if terminal {
            let line = match api(&vm, Duration::from_secs(2)).get_json("/progress") {
                Ok(p) if p["operation"] == "migration" => format!(
                    "receiving {name}: {}, round {}, {} MiB",
                    p["phase"].as_str().unwrap_or("?"),
                    p["round"].as_u64().unwrap_or(0),
                    p["done_bytes"].as_u64().unwrap_or(0) >> 20
                ),
                _ => format!("{name}: waiting for a sender on {listen}"),
            };
            let _ = write!(stderr, "\r{line:<70}");
            shown = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if shown {
        let _ = writeln!(stderr);
    }
    let said = log_since(&mut log, log_start);
    match outcome {
        Ok(()) => {
            let line =
                said.lines().rev().find_map(|l| l.split_once(": received from ").map(|x| x.1));
            match line {
                Some(what) => println!("{name}: received from {what}"),
                None => println!("{name}: received; the guest runs here"),
            }
            Ok(())
        }
        Err(how) => {
            // A VMM that was killed could not clean up after itself.
            if vm.path.exists() && !matches!(probe(&vm).state, VmState::Running | VmState::Paused) {
                let _ = vm.clone().remove();
            }
            let why = said
                .lines()
                .rev()
                .find_map(|l| l.split_once("migration not received: ").map(|x| x.1.to_string()))
                .unwrap_or(how);
            Err(ManageError::Migration(format!("VM {name} was not received: {why}")))
        }
    }
}

/// What the VMM wrote to its log since `from`.
fn log_since(log: &mut fs::File, from: u64) -> String {
    let mut bytes = Vec::new();
    if log.seek(std::io::SeekFrom::Start(from)).is_ok() {
        let _ = log.take(1 << 20).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
