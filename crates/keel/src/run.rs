//! `keel run`: boot a VM in the foreground.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use keel_machine::{Firmware, MachineConfig};
use keel_vmm::{terminal::RawMode, Console, Outcome, VmFile};

use crate::image;

/// The kernel command line when neither the VM file nor `--cmdline` gives one.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1 quiet";
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// Linux on RISC-V keeps at most this many bytes of its command line (COMMAND_LINE_SIZE is
/// 1024 with the terminating NUL) and silently drops the rest.
const MAX_CMDLINE: usize = 1023;
/// The engine for VMs whose flags and VM file name none (so that a test suite can run
/// everything under the interpreter, say).
pub const ACCEL_ENV: &str = "KEEL_ACCEL";
/// Added in command mode so kernel messages stay off the command's output (only a panic,
/// at KERN_EMERG, still shows).
const COMMAND_LOGLEVEL: &str = "loglevel=1";

#[derive(clap::Args)]
pub struct RunArgs {
    /// A VM file (TOML) describing the VM; the flags below override its values.
    pub vmfile: Option<PathBuf>,
    /// Kernel: a RISC-V Linux Image, or an ELF (default: the default guest image's kernel).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Initial RAM disk (default: the default guest image's initramfs).
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line [default: "console=ttyS0 panic=-1 quiet"].
    #[arg(long)]
    pub cmdline: Option<String>,
    /// Guest RAM in MiB [default: 256].
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u64>,
    /// Number of vCPUs [default: 1].
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// What runs first: "sbi" (keel's built-in SBI, the default), "none" (a bare-metal ELF in
    /// M-mode), or the path of M-mode firmware such as OpenSBI's fw_dynamic.bin.
    #[arg(long, value_name = "sbi|none|PATH")]
    pub firmware: Option<String>,
    /// Add an entropy device (virtio-rng), as `rng = true` in a VM file does.
    #[arg(long)]
    pub rng: bool,
    /// How guest code runs: "jit" translates hot code to host code (the default), "interp"
    /// interprets everything. Without this flag or `accel` in the VM file, $KEEL_ACCEL
    /// decides.
    #[arg(long, value_name = "jit|interp")]
    pub accel: Option<String>,
    /// In command mode, show the kernel's messages too.
    #[arg(long)]
    pub kernel_log: bool,
    /// Command to run in the guest; keel exits with its status.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl RunArgs {
    /// A VM file and no overriding flags: how a managed VM (`keel vmm`) is configured.
    pub fn for_vm_file(vmfile: PathBuf) -> RunArgs {
        RunArgs {
            vmfile: Some(vmfile),
            kernel: None,
            initrd: None,
            cmdline: None,
            memory: None,
            vcpus: None,
            firmware: None,
            rng: false,
            accel: None,
            kernel_log: false,
            command: Vec::new(),
        }
    }
}

/// Turns the VM file and flags into a machine configuration.
pub fn machine_config(args: &RunArgs) -> Result<MachineConfig> {
    let mut vm = match &args.vmfile {
        Some(path) => VmFile::load(path)?,
        None => VmFile::default(),
    };
    let flags = VmFile {
        vcpus: args.vcpus,
        memory: args.memory,
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        cmdline: args.cmdline.clone(),
        firmware: args.firmware.clone(),
        rng: args.rng.then_some(true),
        accel: args.accel.clone(),
        ..VmFile::default()
    };
    flags.validate("command line")?;
    vm.merge(flags);
    if vm.accel.is_none() {
        if let Ok(accel) = std::env::var(ACCEL_ENV) {
            vm.accel = Some(accel);
            vm.validate(&format!("${ACCEL_ENV}"))?;
        }
    }
    let firmware = vm.firmware();
    let (kernel, initrd) = match (vm.kernel.clone(), firmware == Firmware::None) {
        (Some(k), _) => (k, vm.initrd.clone()),
        (None, true) => {
            bail!("firmware \"none\" runs a bare-metal program: give it with --kernel PROGRAM.elf")
        }
        (None, false) => {
            let img = image::default_image()?;
            (img.kernel, vm.initrd.clone().or(Some(img.initrd)))
        }
    };
    let mut cmdline = vm.cmdline.clone().unwrap_or_else(|| DEFAULT_CMDLINE.to_string());
    if !args.command.is_empty() {
        if !args.kernel_log {
            cmdline.push(' ');
            cmdline.push_str(COMMAND_LOGLEVEL);
        }
        cmdline.push(' ');
        cmdline.push_str(&keel_guest::command_param(&args.command));
    }
    if cmdline.len() > MAX_CMDLINE {
        bail!(
            "the kernel command line would be {} bytes, but Linux on RISC-V keeps only {MAX_CMDLINE}{}",
            cmdline.len(),
            if args.command.is_empty() { "" } else { " (the command travels on it, base64-encoded: shorten it, or put it in a script)" }
        );
    }
    Ok(MachineConfig {
        vcpus: vm.vcpus.unwrap_or(1),
        memory_mib: vm.memory.unwrap_or(DEFAULT_MEMORY_MIB),
        kernel,
        initrd,
        cmdline,
        firmware,
        virtio: vm.virtio(&vm_identity(args)),
        accel: vm.accel(),
    })
}

/// What names this VM for generated MAC addresses: its VM file's absolute path, or
/// "default" for the default VM.
fn vm_identity(args: &RunArgs) -> String {
    match &args.vmfile {
        Some(p) => {
            std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).to_string_lossy().into_owned()
        }
        None => "default".to_string(),
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let config = machine_config(&args)?;
    let console = Console::new(Box::new(std::io::stdout()));
    let interactive = args.command.is_empty() && std::io::stdin().is_terminal();
    // An interactive console gets the raw terminal and the Ctrl-A escape; otherwise stdin is
    // passed through as it comes (and Ctrl-C stops keel as usual).
    let raw = if interactive { Some(RawMode::enable()?) } else { None };
    console.forward_input(Box::new(std::io::stdin()), interactive);
    let outcome = keel_vmm::run(&config, &console);
    console.finish();
    drop(raw);
    Ok(match outcome? {
        Outcome::PowerOff | Outcome::Quit | Outcome::Migrated => ExitCode::SUCCESS,
        Outcome::Exit(code) => ExitCode::from(code.min(255) as u8),
    })
}
