//! The `keel` command: parses the command line and reports results. The work happens in the
//! library crates.

mod bench;
mod image;
mod manage;
mod run;
mod vmm;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "Run RISC-V Linux virtual machines on keel's own software CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot a VM in the foreground: the default VM, or one a VM file describes.
    ///
    /// With `-- COMMAND [ARGS...]` the guest runs COMMAND, keel prints its output and exits
    /// with its status. Without, you get the guest's console; Ctrl-A X quits.
    Run(run::RunArgs),
    #[command(flatten)]
    Manage(manage::ManageCommand),
    /// The process that runs one managed VM (spawned by `keel start`; not for direct use).
    #[command(hide = true)]
    Vmm(vmm::VmmArgs),
    /// Manage guest images.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Benchmarks: keel beside QEMU (qemu-system-riscv64 -M virt) on the same guest.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Fetch Debian's riscv64 kernel and busybox and build the default guest image.
    Pull {
        /// Fetch and rebuild even if the image is already there.
        #[arg(long)]
        force: bool,
        /// Cache directory (default: $KEEL_CACHE_DIR, $XDG_CACHE_HOME/keel or ~/.cache/keel).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Make a root disk for one VM from the image's ext4 template (boot it with
    /// `root=/dev/vda`); its files then persist across the VM's boots.
    Rootfs {
        /// Where to write the new disk image.
        dest: PathBuf,
        /// raw: a sparse copy; qcow2: an overlay sharing the template.
        #[arg(long, value_enum, default_value = "raw")]
        format: image::RootfsFormat,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Manage(command) => manage::run(command),
        Command::Vmm(args) => vmm::run(args),
        Command::Image { command: ImageCommand::Pull { force, cache_dir } } => {
            image::pull(cache_dir, force).map(|_| ExitCode::SUCCESS)
        }
        Command::Image { command: ImageCommand::Rootfs { dest, format } } => {
            image::rootfs(&dest, format).map(|_| ExitCode::SUCCESS)
        }
        Command::Bench { command } => bench::bench(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            keel_vmm::terminal::restore();
            eprintln!("keel: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. keel's error types already quote their source in
/// their own message, so causes whose text is already there are not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text.replace('\n', " ")
}
