//! `keel bench start`: N VMs started together, keel beside QEMU. For each VM: the time until
//! its management API answers and the CPU its VMM used until then, the time until the guest's
//! /init runs (its `keel: Linux ...` banner on the console), and, once all are up, the VMM's
//! resident memory beyond guest RAM.
//!
//! keel: the VMM process `keel start` spawns (`keel vmm --dir DIR`), its REST API answering
//! `GET /`, then `PUT /actions InstanceStart`. QEMU: `qemu-system-riscv64 -M virt` with a QMP
//! socket (its management API: the greeting), booting at once, console to a file.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_guest::GuestImage;

use super::{median, MEMORY_MIB, QEMU};
use crate::manage::client::Client;
use crate::run::DEFAULT_CMDLINE;

/// What /init prints when it hands the console to the shell.
const INIT_BANNER: &str = "keel: Linux ";
const DEADLINE: Duration = Duration::from_secs(300);

/// One VM's figures.
struct Started {
    api_s: f64,
    api_cpu_ms: f64,
    init_s: f64,
    overhead_mib: f64,
}

/// A VMM process being measured; killed when dropped.
struct Vmm {
    child: Child,
    api: PathBuf,
    console: PathBuf,
    keel: bool,
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn bench_start(image: &GuestImage, count: usize) -> Result<ExitCode> {
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let scratch = super::Scratch::new("start")?;
    println!(
        "guest: {} (kernel {}), {MEMORY_MIB} MiB, 1 vCPU",
        image.kernel.display(),
        image.kernel_version
    );
    println!("{count} VM(s) started together; times from the VMM's spawn");
    let keel = run_batch(image, &scratch.0, count, true)?;
    let qemu = run_batch(image, &scratch.0, count, false)?;
    report("API answers (s)", &keel, &qemu, |s| s.api_s);
    report("VMM CPU until API answers (ms)", &keel, &qemu, |s| s.api_cpu_ms);
    report("guest /init runs (s)", &keel, &qemu, |s| s.init_s);
    report("VMM memory beyond guest RAM (MiB)", &keel, &qemu, |s| s.overhead_mib);
    Ok(ExitCode::SUCCESS)
}

fn report(what: &str, keel: &[Started], qemu: &[Started], f: impl Fn(&Started) -> f64) {
    let mut k: Vec<f64> = keel.iter().map(&f).collect();
    let mut q: Vec<f64> = qemu.iter().map(&f).collect();
    let (km, qm) = (median(&mut k), median(&mut q));
    let kmax = k.iter().cloned().fold(0.0, f64::max);
    let qmax = q.iter().cloned().fold(0.0, f64::max);
    println!(
        "{what}: keel median {km:.3} (max {kmax:.3}), qemu median {qm:.3} (max {qmax:.3}), \
         ratio keel/qemu {:.2}",
        km / qm
    );
}

/// Starts `count` VMs of one kind together and measures each.
fn run_batch(image: &GuestImage, scratch: &Path, count: usize, keel: bool) -> Result<Vec<Started>> {
    let t0 = Instant::now();
    let mut vmms = Vec::new();
    for i in 0..count {
        let dir = scratch.join(format!("{}-{i}", if keel { "keel" } else { "qemu" }));
        std::fs::create_dir_all(&dir)?;
        vmms.push(if keel { spawn_keel(image, &dir)? } else { spawn_qemu(image, &dir)? });
    }
    let mut api = vec![None; count];
    let mut init = vec![None; count];
    let mut starts = Vec::new();
    // One loop polls every VM, so none waits on another's slow start.
    while init.iter().any(Option::is_none) {
        if t0.elapsed() > DEADLINE {
            bail!("VMs not up within {DEADLINE:?}");
        }
        for (i, vmm) in vmms.iter_mut().enumerate() {
            if let Some(status) = vmm.child.try_wait()? {
                bail!("a VMM exited early ({status}); see {}", vmm.console.display());
            }
            if api[i].is_none() && answers(vmm)? {
                api[i] = Some((t0.elapsed().as_secs_f64(), cpu_ms(vmm.child.id())));
                if vmm.keel {
                    // On its own thread: building the machine must not hold up the polling
                    // of the other VMs (QEMU boots without being asked).
                    let api = Client::new(&vmm.api, Duration::from_secs(60));
                    starts.push(std::thread::spawn(move || {
                        api.put("/actions", &serde_json::json!({"action_type": "InstanceStart"}))
                    }));
                }
            }
            if init[i].is_none()
                && std::fs::read(&vmm.console)
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(INIT_BANNER))
            {
                init[i] = Some(t0.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for start in starts {
        start.join().map_err(|_| anyhow::anyhow!("an InstanceStart thread panicked"))??;
    }
    let mut out = Vec::new();
    for (i, vmm) in vmms.iter().enumerate() {
        let (api_s, api_cpu_ms) = api[i].context("the API never answered")?;
        out.push(Started {
            api_s,
            api_cpu_ms,
            init_s: init[i].unwrap_or_default(),
            overhead_mib: overhead_mib(vmm.child.id())?,
        });
    }
    Ok(out)
}

fn spawn_keel(image: &GuestImage, dir: &Path) -> Result<Vmm> {
    std::fs::write(dir.join("vm.toml"), super::keel_vm_file(image, MEMORY_MIB, DEFAULT_CMDLINE))?;
    let child = super::spawn_keel_vmm(dir, &[], &[])?;
    Ok(Vmm { child, api: dir.join("api.sock"), console: dir.join("console.log"), keel: true })
}

fn spawn_qemu(image: &GuestImage, dir: &Path) -> Result<Vmm> {
    let qmp = dir.join("qmp.sock");
    let console = dir.join("console.log");
    let child = Command::new(QEMU)
        .args(["-M", "virt", "-m", &MEMORY_MIB.to_string(), "-smp", "1", "-display", "none"])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", DEFAULT_CMDLINE])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args(["-monitor", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {QEMU}"))?;
    Ok(Vmm { child, api: qmp, console, keel: false })
}

/// Whether the VMM's management API answers: keel's `GET /` with 200, QEMU's QMP greeting.
fn answers(vmm: &Vmm) -> Result<bool> {
    if vmm.keel {
        return Ok(Client::new(&vmm.api, Duration::from_secs(10)).get_json("/").is_ok());
    }
    let Ok(mut s) = UnixStream::connect(&vmm.api) else { return Ok(false) };
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).contains("\"QMP\""))
}

/// CPU time (all threads) the process has used, in ms, from the scheduler's ns counters.
fn cpu_ms(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return f64::NAN };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e6
}

/// Resident memory outside the guest's RAM: total RSS minus the resident part of the largest
/// mapping (guest RAM, in keel and in QEMU alike).
fn overhead_mib(pid: u32) -> Result<f64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .with_context(|| format!("cannot read /proc/{pid}/smaps"))?;
    let (mut total, mut largest, mut size, mut ram_rss) = (0u64, 0u64, 0u64, 0u64);
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        match (f.next(), f.next().and_then(|v| v.parse::<u64>().ok())) {
            (Some("Size:"), Some(kb)) => size = kb,
            (Some("Rss:"), Some(kb)) => {
                total += kb;
                if size > largest {
                    largest = size;
                    ram_rss = kb;
                }
            }
            _ => {}
        }
    }
    Ok((total - ram_rss) as f64 / 1024.0)
}
