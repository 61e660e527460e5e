//! VMs that run in the background: `keel create`, `start`, `stop`, `ls`, `console`, ...
//!
//! Each VM is a directory under the state root (`$KEEL_STATE_DIR`, `$XDG_STATE_HOME/keel` or
//! `~/.local/state/keel`) holding its VM file, and while it runs, a `keel vmm --dir DIR`
//! process's pid file and API socket. A running VM is reached only through that socket.

mod appliance;
pub(crate) mod client;
mod commands;
mod console;
mod logs;
mod migrate;
mod progress;
mod snapshot;
mod status;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use store::Store;

#[derive(Subcommand)]
pub enum ManageCommand {
    /// Create a VM from a VM file (or the default VM: default image, 1 vCPU, 256 MiB).
    ///
    /// The file is checked and copied into the VM's directory with its relative paths made
    /// absolute; editing the original later does not change the VM.
    Create {
        /// 1-64 characters: letters, digits, '.', '_' and '-', starting with a letter or digit.
        name: String,
        /// The VM file (TOML); see README.
        vmfile: Option<PathBuf>,
    },
    /// Start a created, stopped or crashed VM in the background.
    Start { name: String },
    /// Stop a VM: ask the guest to power off, and stop it by force after the timeout.
    Stop {
        name: String,
        /// Seconds the guest gets to power off.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        timeout: u64,
        /// Stop at once; kill the VMM if it does not answer.
        #[arg(long)]
        force: bool,
    },
    /// Freeze a running VM: its vCPUs and its clock stop.
    Pause { name: String },
    /// Let a paused VM run again.
    Resume { name: String },
    /// Remove a VM and its directory (logs included).
    Rm {
        name: String,
        /// Stop it first if it is running.
        #[arg(long)]
        force: bool,
    },
    /// List the VMs: name, state, vCPUs, memory, uptime.
    Ls {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a VM's state and configuration.
    Info {
        name: String,
        /// JSON instead of "key: value" lines.
        #[arg(long)]
        json: bool,
    },
    /// Attach to a running VM's serial console; Ctrl-] detaches, the VM keeps running.
    ///
    /// When stdin is not a terminal (a script), it is sent to the guest until it ends;
    /// then the output keeps coming until the guest has been quiet for --timeout seconds.
    Console {
        name: String,
        /// With stdin not a terminal: after stdin ends, detach once the guest has printed
        /// nothing for this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 1.0)]
        timeout: f64,
    },
    /// Write a running VM's state and memory to a snapshot directory.
    ///
    /// The VM is paused while it is saved and resumed afterwards (unless --leave-paused).
    /// An interrupted snapshot is never mistaken for a complete one.
    Snapshot {
        name: String,
        /// The snapshot directory: new, empty, or an earlier snapshot to replace.
        dir: PathBuf,
        /// Only the pages written since the VM's previous snapshot (which must stay where it
        /// is: this one refers to it).
        #[arg(long)]
        diff: bool,
        /// Leave the VM paused afterwards.
        #[arg(long)]
        leave_paused: bool,
    },
    /// Start a new VM from a snapshot: the guest goes on where it was saved.
    Restore {
        /// The snapshot directory.
        dir: PathBuf,
        /// The new VM's name (default: the directory's name).
        name: Option<String>,
        /// Leave it paused (`keel resume NAME` lets it run).
        #[arg(long)]
        paused: bool,
        /// Run it on this engine ("jit" or "interp") instead of the snapshot's; the saved
        /// state is the same for both.
        #[arg(long, value_name = "jit|interp")]
        accel: Option<String>,
    },
    /// Start many VMs from one snapshot, each with its own disk overlays, MACs and vsock CID.
    ///
    /// The clones share the snapshot's memory pages copy-on-write until they write them.
    Clone {
        /// The snapshot directory.
        dir: PathBuf,
        /// The new VMs' names.
        #[arg(required = true)]
        names: Vec<String>,
        /// TAP device names for the clones' network interfaces: {n} is the clone's number
        /// (0, 1, ...), {name} its name. Needed when the snapshot's VM has an interface.
        #[arg(long, value_name = "TEMPLATE")]
        tap: Option<String>,
        /// Leave them paused.
        #[arg(long)]
        paused: bool,
        /// Run them on this engine ("jit" or "interp") instead of the snapshot's.
        #[arg(long, value_name = "jit|interp")]
        accel: Option<String>,
    },
    /// Pack a VM into one file (a virtual appliance): its VM file, kernel, initrd and disks,
    /// and optionally a snapshot of it.
    Export {
        name: String,
        /// The archive to write (gzip-compressed tar).
        file: PathBuf,
        /// A full snapshot of the VM to include (from `keel snapshot`): the imported VM then
        /// goes on from it. Without it the VM must be stopped.
        #[arg(long, value_name = "DIR")]
        snapshot: Option<PathBuf>,
    },
    /// Unpack an appliance as a new VM (restored at once if it holds a snapshot).
    Import { file: PathBuf, name: String },
    /// Move a running VM to another host while its guest keeps running (live migration).
    ///
    /// The other host waits with `keel receive --listen HOST:PORT NAME`. Both use the same
    /// secret token (--token-file, or $KEEL_MIGRATION_TOKEN); it proves each side to the
    /// other and never crosses the network. Disks must be shared storage (the same image
    /// path on both hosts). On success the VM runs there and has ended here; on failure it
    /// runs here as before.
    Migrate {
        name: String,
        /// The receiver's HOST:PORT.
        destination: String,
        /// A file holding the shared token (else $KEEL_MIGRATION_TOKEN).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// MiB/s the copy of memory may use at most while the guest runs.
        #[arg(long, value_name = "MIB")]
        max_bandwidth: Option<u64>,
    },
    /// Wait for a VM that another host sends with `keel migrate`, and run it here.
    ///
    /// Returns once the guest runs here. Nothing is left behind when the migration fails:
    /// the VM's directory is removed and the sender's VM runs on there.
    Receive {
        /// HOST:PORT to listen on (one connection, from an authenticated sender).
        #[arg(long, value_name = "HOST:PORT")]
        listen: String,
        /// The name of the VM here.
        name: String,
        /// A file holding the shared token (else $KEEL_MIGRATION_TOKEN).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Seconds to wait for the sender.
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        timeout: u64,
    },
    /// Print a VM's log (the VMM's), or with --console what the guest printed.
    Logs {
        name: String,
        /// The guest's console output instead of the VMM's log.
        #[arg(long)]
        console: bool,
        /// Keep printing what is added.
        #[arg(short, long)]
        follow: bool,
    },
}

pub fn run(command: ManageCommand) -> anyhow::Result<ExitCode> {
    let store = Store::from_env()?;
    match command {
        ManageCommand::Create { name, vmfile } => {
            commands::create(&store, &name, vmfile.as_deref())?
        }
        ManageCommand::Start { name } => commands::start(&store, &name)?,
        ManageCommand::Stop { name, timeout, force } => {
            commands::stop(&store, &name, Duration::from_secs(timeout), force)?
        }
        ManageCommand::Pause { name } => commands::set_paused(&store, &name, true)?,
        ManageCommand::Resume { name } => commands::set_paused(&store, &name, false)?,
        ManageCommand::Rm { name, force } => commands::remove(&store, &name, force)?,
        ManageCommand::Ls { json } => status::list(&store, json)?,
        ManageCommand::Info { name, json } => status::info(&store.vm(&name)?, json)?,
        ManageCommand::Console { name, timeout } => {
            let quiet = Duration::try_from_secs_f64(timeout).map_err(|_| {
                anyhow::anyhow!("--timeout {timeout}: give a number of seconds, 0 or more")
            })?;
            console::attach(&store.vm(&name)?, quiet)?
        }
        ManageCommand::Snapshot { name, dir, diff, leave_paused } => {
            snapshot::snapshot(&store, &name, &dir, diff, leave_paused)?
        }
        ManageCommand::Restore { dir, name, paused, accel } => {
            snapshot::restore(&store, &dir, name.as_deref(), paused, accel.as_deref())?
        }
        ManageCommand::Clone { dir, names, tap, paused, accel } => {
            snapshot::clone(&store, &dir, &names, tap.as_deref(), paused, accel.as_deref())?
        }
        ManageCommand::Export { name, file, snapshot } => {
            appliance::export(&store, &name, &file, snapshot.as_deref())?
        }
        ManageCommand::Import { file, name } => appliance::import(&store, &file, &name)?,
        ManageCommand::Migrate { name, destination, token_file, max_bandwidth } => {
            migrate::migrate(&store, &name, &destination, token_file.as_deref(), max_bandwidth)?
        }
        ManageCommand::Receive { listen, name, token_file, timeout } => {
            migrate::receive(&store, &name, &listen, token_file.as_deref(), timeout)?
        }
        ManageCommand::Logs { name, console, follow } => {
            logs::show(&store.vm(&name)?, console, follow)?
        }
    }
    Ok(ExitCode::SUCCESS)
}
