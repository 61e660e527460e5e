//! `keel bench`: keel and QEMU run the same kernel, initrd and command line in one session,
//! several times each; the figures are medians.

use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::image;
use crate::run::DEFAULT_CMDLINE;

mod disk;
mod migrate;
mod snapshot;
mod start;
mod suite;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Boot to power-off: the guest runs `true` and powers off.
    Boot {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// vCPUs of the guest (QEMU gets the same with -smp).
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
    },
    /// A CPU-bound guest command: sha256sum of 64 MiB from /dev/zero, timed inside the guest.
    Cpu {
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Sequential read and write of a raw virtio-blk disk with dd, timed inside the guest.
    Disk {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Disk size in MiB (read whole, then written whole).
        #[arg(long, default_value_t = 256)]
        size: u64,
    },
    /// VMs started together: time to the management API and to the guest's /init, VMM CPU
    /// until the API answers, and VMM memory beyond guest RAM.
    Start {
        /// How many VMs start at once.
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Snapshot and restore of a running guest (keel's snapshots beside QEMU's savevm and
    /// loadvm), and how fast clones of one snapshot start and how much memory they take.
    Snapshot {
        /// Guest memory sizes in MiB, one measurement each.
        #[arg(long, value_delimiter = ',', default_values_t = [256, 1024])]
        memory: Vec<u64>,
        /// Clones of the first size's snapshot (0: none).
        #[arg(long, default_value_t = 4)]
        clones: usize,
    },
    /// Live migration over loopback of an idle and a busy guest: total time and downtime.
    Migrate {
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// CPU-bound C programs (compress, interp, fp, pointer, syscall) built for the guest and
    /// timed inside it; per program keel's and QEMU's medians, their ratio, and the ratios'
    /// geometric mean.
    Suite {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Only these programs (comma-separated names).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

const QEMU: &str = "qemu-system-riscv64";

/// Turns a run's stdout and wall-clock seconds into the figure a benchmark reports.
type Measure = fn(&str, f64) -> Result<f64>;
const MEMORY_MIB: u64 = 256;
/// The CPU benchmark's guest command: prints the seconds the hashing took, by the guest clock.
const CPU_SCRIPT: &str = "read a b </proc/uptime; dd if=/dev/zero bs=1M count=64 2>/dev/null | sha256sum >/dev/null; read c d </proc/uptime; echo \"elapsed $a $c\"";

pub fn bench(cmd: BenchCommand) -> Result<ExitCode> {
    let image = image::default_image()?;
    which(QEMU).with_context(|| {
        format!(
            "{QEMU} is needed for the side-by-side figures: install Debian's qemu-system-misc \
             (QEMU 10.0 on Debian 12: enable bookworm-backports, then \
             apt-get install -t bookworm-backports qemu-system-misc)"
        )
    })?;
    let (runs, vcpus, args, measure): (usize, u32, Vec<String>, Measure) = match cmd {
        BenchCommand::Boot { runs, vcpus } => {
            (runs, vcpus, vec!["true".into()], |_, wall| Ok(wall))
        }
        BenchCommand::Disk { runs, size } => return disk::bench_disk(&image, runs, size),
        BenchCommand::Start { count } => return start::bench_start(&image, count),
        BenchCommand::Snapshot { memory, clones } => {
            return snapshot::bench_snapshot(&image, &memory, clones)
        }
        BenchCommand::Migrate { runs } => return migrate::bench_migrate(&image, runs),
        BenchCommand::Suite { runs, only } => return suite::bench_suite(&image, runs, &only),
        BenchCommand::Cpu { runs } => {
            (runs, 1, vec!["sh".into(), "-c".into(), CPU_SCRIPT.into()], |out, _| {
                guest_elapsed(out)
            })
        }
    };
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let cmdline = format!("{DEFAULT_CMDLINE} loglevel=1 {}", keel_guest::command_param(&args));
    let keel_exe = std::env::current_exe().context("cannot find keel's own executable")?;
    let kernel = image.kernel.to_string_lossy().into_owned();
    let initrd = image.initrd.to_string_lossy().into_owned();
    let memory = MEMORY_MIB.to_string();
    let smp = vcpus.to_string();
    let keel_cmd = |c: &mut Command, extra: &[&str]| {
        c.arg("run")
            .args(["--kernel", &kernel, "--initrd", &initrd, "--memory", &memory])
            .args(["--vcpus", &smp, "--cmdline", &cmdline])
            .args(extra);
    };
    let qemu_cmd = |c: &mut Command| {
        c.args(["-M", "virt", "-m", &memory, "-smp", &smp, "-nographic", "-no-reboot"])
            .args(["-kernel", &kernel, "-initrd", &initrd, "-append", &cmdline]);
    };
    println!(
        "guest: {} (kernel {}), {MEMORY_MIB} MiB, {vcpus} vCPU(s)",
        image.kernel.display(),
        image.kernel_version
    );
    println!("cmdline: {cmdline}");
    let mut keel_times = vec![Vec::new(); KEEL_ENGINES.len()];
    let mut qemu_times = Vec::new();
    // Alternate, so slow drifts of the machine affect all alike.
    for i in 0..runs {
        let mut line = format!("run {}:", i + 1);
        for ((label, extra), times) in KEEL_ENGINES.iter().zip(&mut keel_times) {
            let t = time_run(label, keel_exe.as_os_str(), |c| keel_cmd(c, extra), measure)?;
            line += &format!(" {label} {t:.3} s,");
            times.push(t);
        }
        let q = time_run("qemu", QEMU.as_ref(), qemu_cmd, measure)?;
        println!("{line} qemu {q:.3} s");
        qemu_times.push(q);
    }
    let q = median(&mut qemu_times);
    for ((label, _), times) in KEEL_ENGINES.iter().zip(&mut keel_times) {
        println!("{label} median: {:.3} s", median(times));
    }
    println!("qemu median: {q:.3} s");
    for ((label, _), times) in KEEL_ENGINES.iter().zip(&mut keel_times) {
        println!("ratio {label}/qemu: {:.2}", median(times) / q);
    }
    Ok(ExitCode::SUCCESS)
}

/// keel's engines, one column each in the side-by-side benchmarks: a label and the
/// `keel run` arguments that select it.
pub(crate) const KEEL_ENGINES: &[(&str, &[&str])] =
    &[("keel-jit", &["--accel", "jit"]), ("keel-interp", &["--accel", "interp"])];

/// The VM file the benchmarks give keel: the default image with `memory_mib` and `cmdline`.
pub(crate) fn keel_vm_file(
    image: &keel_guest::GuestImage,
    memory_mib: u64,
    cmdline: &str,
) -> String {
    format!(
        "kernel = {:?}\ninitrd = {:?}\nmemory = {memory_mib}\ncmdline = {cmdline:?}\n",
        image.kernel, image.initrd
    )
}

/// Starts `keel vmm --dir DIR ARGS...` (DIR holds its vm.toml) with `env`, output discarded.
pub(crate) fn spawn_keel_vmm(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("cannot find keel's own executable")?;
    Command::new(exe)
        .args(["vmm", "--dir"])
        .arg(dir)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start keel vmm")
}

/// A scratch directory for one benchmark run, removed when dropped.
pub(crate) struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("keel-bench-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` with no input; returns its stdout, or an error showing the tail of its output.
pub(crate) fn run_to_success(name: &str, cmd: &mut Command) -> Result<String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd.output().with_context(|| format!("cannot start {name}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{name} failed ({}):\n{}{}",
            out.status,
            tail(&stdout),
            tail(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(stdout)
}

fn time_run(
    name: &str,
    program: &std::ffi::OsStr,
    setup: impl Fn(&mut Command),
    measure: Measure,
) -> Result<f64> {
    let mut cmd = Command::new(program);
    setup(&mut cmd);
    let start = Instant::now();
    let stdout = run_to_success(name, &mut cmd)?;
    let wall = start.elapsed().as_secs_f64();
    measure(&stdout, wall).with_context(|| format!("{name}'s output:\n{}", tail(&stdout)))
}

/// The guest-side seconds from the CPU script's `elapsed START END` line (/proc/uptime).
fn guest_elapsed(out: &str) -> Result<f64> {
    let line =
        out.lines().find_map(|l| l.trim().strip_prefix("elapsed ")).context("no `elapsed` line")?;
    let mut it = line.split_whitespace().map(str::parse::<f64>);
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok(b - a),
        _ => bail!("malformed `elapsed` line: {line}"),
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(20);
    lines[start..].iter().map(|l| format!("  {l}\n")).collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn which(program: &str) -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d.join(program).is_file()) {
        Ok(())
    } else {
        bail!("{program} not found in PATH")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn guest_elapsed_reads_the_uptime_pair() {
        assert!((guest_elapsed("x\nelapsed 1.50 4.25\n").unwrap() - 2.75).abs() < 1e-9);
        assert!(guest_elapsed("nothing\n").is_err());
    }
}
