//! `keel bench snapshot`: saving and restoring a running guest, keel beside QEMU in one run.
//!
//! For each memory size, the default guest boots to its shell prompt, then:
//! - keel: `PUT /snapshot/create` (a full snapshot: state, sparse memory image), then a fresh
//!   VMM `PUT /snapshot/load` with `resume_vm` (memory mapped copy-on-write);
//! - QEMU: `savevm` into the guest's qcow2 disk, then `loadvm` (in place), through QMP.
//!
//! Then clones: N VMMs each restore the first size's snapshot (keel: `/snapshot/load`; QEMU:
//! `-incoming "exec:cat FILE"` of a `migrate` to a file), timed from the first spawn until all
//! run, and the host memory they take together (the sum of their proportional set sizes,
//! after they have run a few seconds).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_guest::GuestImage;
use serde_json::{json, Value};

use super::QEMU;
use crate::manage::client::Client;
use crate::run::DEFAULT_CMDLINE;

const PROMPT: &str = "keel:/# ";
const DEADLINE: Duration = Duration::from_secs(300);

/// A VMM process; killed when dropped.
struct Vmm {
    child: Child,
    dir: PathBuf,
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vmm {
    fn api(&self, timeout: Duration) -> Client {
        Client::new(&self.dir.join("api.sock"), timeout)
    }

    fn qmp(&self) -> Result<Qmp> {
        Qmp::connect(&self.dir.join("qmp.sock"))
    }
}

pub fn bench_snapshot(image: &GuestImage, sizes: &[u64], clones: usize) -> Result<ExitCode> {
    let scratch = super::Scratch::new("snapshot")?;
    println!(
        "guest: {} (kernel {}), 1 vCPU, idle at its shell prompt",
        image.kernel.display(),
        image.kernel_version
    );
    let mut first_snapshot = None;
    for &mib in sizes {
        let dir = scratch.0.join(format!("{mib}"));
        std::fs::create_dir_all(&dir)?;
        let k = keel_save_restore(image, &dir, mib)?;
        let q = qemu_save_restore(image, &dir, mib)?;
        println!(
            "{mib} MiB: snapshot keel {:.3} s ({:.1} MiB on disk), qemu savevm {:.3} s ({:.1} MiB); \
             restore to running keel {:.3} s, qemu loadvm {:.3} s",
            k.save_s, k.size_mib, q.save_s, q.size_mib, k.restore_s, q.restore_s
        );
        println!(
            "{mib} MiB ratios keel/qemu: snapshot {:.2}, size {:.2}, restore {:.2}",
            k.save_s / q.save_s,
            k.size_mib / q.size_mib,
            k.restore_s / q.restore_s
        );
        first_snapshot.get_or_insert((dir, mib));
    }
    if clones > 0 {
        let (dir, mib) = first_snapshot.context("give at least one --memory size")?;
        let (k_s, k_mib) = keel_clones(image, &dir, mib, clones)?;
        let (q_s, q_mib) = qemu_clones(image, &dir, mib, clones)?;
        println!(
            "{clones} clones of the {mib} MiB snapshot: keel {:.1} clones/s, {k_mib:.0} MiB together; \
             qemu {:.1} clones/s, {q_mib:.0} MiB together",
            clones as f64 / k_s,
            clones as f64 / q_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct SaveRestore {
    save_s: f64,
    size_mib: f64,
    restore_s: f64,
}

fn vm_file(image: &GuestImage, mib: u64) -> String {
    super::keel_vm_file(image, mib, DEFAULT_CMDLINE)
}

fn spawn_keel(dir: &Path, vm: &str) -> Result<Vmm> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("vm.toml"), vm)?;
    let child = super::spawn_keel_vmm(dir, &[], &[])?;
    let vmm = Vmm { child, dir: dir.to_owned() };
    wait_for(|| Ok(vmm.api(Duration::from_secs(5)).get_json("/").is_ok()), "keel's API")?;
    Ok(vmm)
}

fn wait_for(mut ready: impl FnMut() -> Result<bool>, what: &str) -> Result<()> {
    let t0 = Instant::now();
    while !ready()? {
        if t0.elapsed() > DEADLINE {
            bail!("{what}: not ready within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn wait_prompt(console: &Path) -> Result<()> {
    wait_for(
        || Ok(std::fs::read(console).is_ok_and(|c| String::from_utf8_lossy(&c).contains(PROMPT))),
        "the guest's shell prompt",
    )
}

/// Bytes a file or directory takes on disk (holes excluded), in MiB.
fn du_mib(path: &Path) -> f64 {
    let blocks = |p: &Path| std::fs::metadata(p).map(|m| m.blocks() * 512).unwrap_or(0);
    let bytes: u64 = match std::fs::read_dir(path) {
        Ok(entries) => entries.flatten().map(|e| blocks(&e.path())).sum(),
        Err(_) => blocks(path),
    };
    bytes as f64 / f64::from(1 << 20)
}

fn keel_save_restore(image: &GuestImage, dir: &Path, mib: u64) -> Result<SaveRestore> {
    let vm = vm_file(image, mib);
    let source = spawn_keel(&dir.join("keel-src"), &vm)?;
    source
        .api(Duration::from_secs(60))
        .put("/actions", &json!({"action_type": "InstanceStart"}))?;
    wait_prompt(&source.dir.join("console.log"))?;
    let snap = dir.join("keel-snap");
    let t0 = Instant::now();
    source
        .api(DEADLINE)
        .put("/snapshot/create", &json!({"snapshot_path": snap, "snapshot_type": "Full"}))?;
    let save_s = t0.elapsed().as_secs_f64();
    drop(source);
    let target = spawn_keel(&dir.join("keel-dst"), &vm)?;
    let t0 = Instant::now();
    target
        .api(DEADLINE)
        .put("/snapshot/load", &json!({"snapshot_path": snap, "resume_vm": true}))?;
    let restore_s = t0.elapsed().as_secs_f64();
    Ok(SaveRestore { save_s, size_mib: du_mib(&snap), restore_s })
}

fn spawn_qemu(image: &GuestImage, dir: &Path, mib: u64, extra: &[&str]) -> Result<Vmm> {
    std::fs::create_dir_all(dir)?;
    let disk = dir.join("disk.qcow2");
    if !disk.exists() {
        super::run_to_success(
            "qemu-img",
            Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg("64M"),
        )?;
    }
    let qmp = dir.join("qmp.sock");
    let _ = std::fs::remove_file(&qmp);
    let child = Command::new(QEMU)
        .args(["-M", "virt", "-m", &mib.to_string(), "-smp", "1", "-display", "none"])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", DEFAULT_CMDLINE])
        .arg("-drive")
        .arg(format!("file={},if=none,format=qcow2,id=d0", disk.display()))
        .args(["-device", "virtio-blk-device,drive=d0"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .arg("-serial")
        .arg(format!("file:{}", dir.join("console.log").display()))
        .args(["-monitor", "none"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {QEMU}"))?;
    let vmm = Vmm { child, dir: dir.to_owned() };
    wait_for(|| Ok(UnixStream::connect(&qmp).is_ok()), "QEMU's QMP socket")?;
    Ok(vmm)
}

fn qemu_save_restore(image: &GuestImage, dir: &Path, mib: u64) -> Result<SaveRestore> {
    let qemu = spawn_qemu(image, &dir.join("qemu"), mib, &[])?;
    wait_prompt(&qemu.dir.join("console.log"))?;
    let disk = qemu.dir.join("disk.qcow2");
    let before = du_mib(&disk);
    let mut qmp = qemu.qmp()?;
    let t0 = Instant::now();
    qmp.hmp("savevm s1")?;
    let save_s = t0.elapsed().as_secs_f64();
    let size_mib = du_mib(&disk) - before;
    let t0 = Instant::now();
    qmp.hmp("loadvm s1")?;
    let restore_s = t0.elapsed().as_secs_f64();
    // The migration stream of the same guest, for the clones.
    let file = dir.join("qemu.mig");
    qmp.execute("migrate", json!({"uri": format!("exec:cat > {}", file.display())}))?;
    wait_for(
        || Ok(qmp.execute("query-migrate", json!({}))?["status"] == "completed"),
        "QEMU's migration to a file",
    )?;
    Ok(SaveRestore { save_s, size_mib, restore_s })
}

/// Proportional set size of a process, in MiB.
fn pss_mib(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0);
    kib as f64 / 1024.0
}

fn keel_clones(image: &GuestImage, dir: &Path, mib: u64, n: usize) -> Result<(f64, f64)> {
    let vm = vm_file(image, mib);
    let snap = dir.join("keel-snap");
    let t0 = Instant::now();
    let mut vmms = Vec::new();
    for i in 0..n {
        let vmm = spawn_keel(&dir.join(format!("keel-clone{i}")), &vm)?;
        vmm.api(DEADLINE)
            .put("/snapshot/load", &json!({"snapshot_path": snap, "resume_vm": true}))?;
        vmms.push(vmm);
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok((secs, settled_pss(&vmms)))
}

/// How long clones run before their memory is measured: a restored keel guest faults its
/// pages in as it touches them, so right after the restore it holds almost nothing.
const SETTLE: Duration = Duration::from_secs(3);

/// The clones' proportional set sizes added up, once they have run for [`SETTLE`].
fn settled_pss(vmms: &[Vmm]) -> f64 {
    std::thread::sleep(SETTLE);
    vmms.iter().map(|v| pss_mib(v.child.id())).sum()
}

fn qemu_clones(image: &GuestImage, dir: &Path, mib: u64, n: usize) -> Result<(f64, f64)> {
    let file = dir.join("qemu.mig");
    let incoming = format!("exec:cat {}", file.display());
    let t0 = Instant::now();
    let mut vmms = Vec::new();
    for i in 0..n {
        let clone_dir = dir.join(format!("qemu-clone{i}"));
        std::fs::create_dir_all(&clone_dir)?;
        std::fs::copy(dir.join("qemu").join("disk.qcow2"), clone_dir.join("disk.qcow2"))?;
        let vmm = spawn_qemu(image, &clone_dir, mib, &["-incoming", &incoming])?;
        let mut qmp = vmm.qmp()?;
        wait_for(
            || Ok(qmp.execute("query-status", json!({}))?["status"] == "running"),
            "a QEMU clone",
        )?;
        vmms.push(vmm);
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok((secs, settled_pss(&vmms)))
}

/// A QMP connection, past its greeting and capabilities negotiation.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Result<Qmp> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("cannot connect to QMP at {}", path.display()))?;
        stream.set_read_timeout(Some(DEADLINE))?;
        let mut qmp = Qmp { reader: BufReader::new(stream.try_clone()?), writer: stream };
        qmp.read()?;
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QEMU closed its QMP socket");
        }
        Ok(serde_json::from_str(&line)?)
    }

    /// Runs a command; returns its `return` value (events are skipped).
    fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let request = json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{request}")?;
        loop {
            let reply = self.read()?;
            if let Some(error) = reply.get("error") {
                bail!("QMP {command}: {error}");
            }
            if let Some(value) = reply.get("return") {
                return Ok(value.clone());
            }
        }
    }

    /// A human monitor command; its output is an error when not empty (savevm/loadvm print
    /// only on failure).
    fn hmp(&mut self, line: &str) -> Result<()> {
        let out = self.execute("human-monitor-command", json!({"command-line": line}))?;
        match out.as_str() {
            Some("") | None => Ok(()),
            Some(text) => bail!("QEMU `{line}`: {}", text.trim()),
        }
    }
}
