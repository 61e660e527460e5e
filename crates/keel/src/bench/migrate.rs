//! `keel bench migrate`: live migration of an idle and of a busy guest over loopback TCP,
//! keel beside QEMU: the total time and the downtime (the guest stands still) of each.
//!
//! keel: two VMMs (`keel vmm --dir`, and `keel vmm --incoming 127.0.0.1:PORT` as `keel
//! receive` starts it), `PUT /migrate` on the source; the figures are its answer. QEMU: two
//! `qemu-system-riscv64 -M virt`, the second with `-incoming tcp:127.0.0.1:PORT`, driven
//! through QMP (`migrate`, then `query-migrate` until it completes: its `total-time` and
//! `downtime`). QEMU gets keel's downtime target (`downtime-limit` 50 ms) and no bandwidth
//! cap (its default is 128 MiB/s), so both copy as fast as they can.
//!
//! The busy guest rewrites a 32 MiB tmpfs file over and over, so the pre-copy rounds have
//! dirty pages to chase; the idle one sleeps.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_guest::GuestImage;
use serde_json::{json, Value};

use super::{median, Scratch, MEMORY_MIB, QEMU};
use crate::manage::client::Client;
use crate::run::DEFAULT_CMDLINE;

const DEADLINE: Duration = Duration::from_secs(300);
const TOKEN: &str = "keel-bench-migration-token-0123456789";
const IDLE: &str = "echo bench-ready; while true; do sleep 1000; done";
const BUSY: &str = "echo bench-ready; while true; do yes keel-migration-bench | head -c 33554432 > /tmp/dirty; done";

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One migration's figures, in seconds.
#[derive(Clone, Copy)]
struct Figures {
    total: f64,
    downtime: f64,
    /// Copy rounds (keel's; QEMU does not say).
    rounds: u64,
}

pub fn bench_migrate(image: &GuestImage, runs: usize) -> Result<ExitCode> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let scratch = Scratch::new("migrate")?;
    println!(
        "guest: {} (kernel {}), {MEMORY_MIB} MiB, 1 vCPU; migration over 127.0.0.1",
        image.kernel.display(),
        image.kernel_version
    );
    let mut port = 7300 + (std::process::id() % 500) as u16 * 4;
    for (what, script) in [("idle", IDLE), ("busy", BUSY)] {
        let cmdline = format!(
            "{DEFAULT_CMDLINE} loglevel=1 {}",
            keel_guest::command_param(&["sh".into(), "-c".into(), script.into()])
        );
        let (mut keel, mut qemu) = (Vec::new(), Vec::new());
        for i in 0..runs {
            let dir = scratch.0.join(format!("{what}-{i}"));
            port += 1;
            let k = migrate_keel(image, &cmdline, &dir.join("keel"), port)
                .with_context(|| format!("keel, {what} guest"))?;
            port += 1;
            let q = migrate_qemu(image, &cmdline, &dir.join("qemu"), port)
                .with_context(|| format!("QEMU, {what} guest"))?;
            println!(
                "{what} run {}: keel total {:.3} s, downtime {:.1} ms ({} rounds); qemu total {:.3} s, downtime {:.1} ms",
                i + 1,
                k.total,
                k.downtime * 1e3,
                k.rounds,
                q.total,
                q.downtime * 1e3
            );
            keel.push(k);
            qemu.push(q);
        }
        let med = |v: &[Figures], f: fn(&Figures) -> f64| {
            median(&mut v.iter().map(f).collect::<Vec<_>>())
        };
        let (kt, qt) = (med(&keel, |f| f.total), med(&qemu, |f| f.total));
        let (kd, qd) = (med(&keel, |f| f.downtime), med(&qemu, |f| f.downtime));
        println!(
            "{what} guest, median of {runs}: total keel {kt:.3} s, qemu {qt:.3} s (ratio keel/qemu \
             {:.2}); downtime keel {:.1} ms, qemu {:.1} ms (ratio {:.2})",
            kt / qt,
            kd * 1e3,
            qd * 1e3,
            kd / qd
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until `path` contains `needle`.
fn await_file(path: &Path, needle: &str, child: &mut Child) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if std::fs::read(path).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the VM exited ({status}) before {needle:?} showed in {}", path.display());
        }
        if t0.elapsed() > DEADLINE {
            bail!("no {needle:?} in {} within {DEADLINE:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn migrate_keel(image: &GuestImage, cmdline: &str, dir: &Path, port: u16) -> Result<Figures> {
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    std::fs::create_dir_all(&src)?;
    std::fs::create_dir_all(&dst)?;
    std::fs::write(src.join("vm.toml"), super::keel_vm_file(image, MEMORY_MIB, cmdline))?;
    let spawn = |args: &[&str], dir: &Path| -> Result<Proc> {
        let env = [(keel_vmm::migration::auth::TOKEN_ENV, TOKEN)];
        Ok(Proc(super::spawn_keel_vmm(dir, args, &env)?))
    };
    let mut source = spawn(&[], &src)?;
    let api = Client::new(&src.join("api.sock"), Duration::from_secs(60));
    let t0 = Instant::now();
    while api.get_json("/").is_err() {
        if t0.elapsed() > DEADLINE {
            bail!("the source VMM's API never answered");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    api.put("/actions", &json!({"action_type": "InstanceStart"}))?;
    await_file(&src.join("console.log"), "bench-ready", &mut source.0)?;
    // Let the busy loop get going.
    std::thread::sleep(Duration::from_secs(2));
    let listen = format!("127.0.0.1:{port}");
    let mut receiver = spawn(&["--incoming", &listen], &dst)?;
    await_listener(port, &mut receiver.0)?;
    let done = Client::new(&src.join("api.sock"), DEADLINE)
        .put("/migrate", &json!({"destination": listen, "token": TOKEN}))?
        .json()?;
    let ms = |key: &str| done[key].as_u64().unwrap_or(0) as f64 / 1e3;
    let rounds = done["rounds"].as_u64().unwrap_or(0);
    Ok(Figures { total: ms("total_ms"), downtime: ms("downtime_ms"), rounds })
}

/// Waits until something listens on TCP `port` (read from /proc/net/tcp: a probe
/// connection would be taken for the migration itself).
fn await_listener(port: u16, child: &mut Child) -> Result<()> {
    let t0 = Instant::now();
    let needle = format!(":{port:04X} ");
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let listening = table.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && format!("{} ", f[1]).ends_with(&needle) && f[3] == "0A"
        });
        if listening {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the receiver exited ({status}) before it listened");
        }
        if t0.elapsed() > DEADLINE {
            bail!("the receiver never listened on port {port}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn migrate_qemu(image: &GuestImage, cmdline: &str, dir: &Path, port: u16) -> Result<Figures> {
    std::fs::create_dir_all(dir)?;
    let spawn = |name: &str, incoming: Option<String>| -> Result<Proc> {
        let mut cmd = Command::new(QEMU);
        cmd.args(["-M", "virt", "-m", &MEMORY_MIB.to_string(), "-smp", "1", "-display", "none"])
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .args(["-append", cmdline])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", dir.join(format!("{name}.qmp")).display()))
            .arg("-serial")
            .arg(format!("file:{}", dir.join(format!("{name}.log")).display()))
            .args(["-monitor", "none"]);
        if let Some(uri) = incoming {
            cmd.args(["-incoming", &uri]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {QEMU}"))?;
        Ok(Proc(child))
    };
    let mut source = spawn("src", None)?;
    await_file(&dir.join("src.log"), "bench-ready", &mut source.0)?;
    std::thread::sleep(Duration::from_secs(2));
    let mut receiver = spawn("dst", Some(format!("tcp:127.0.0.1:{port}")))?;
    await_listener(port, &mut receiver.0)?;
    let mut qmp = Qmp::connect(&dir.join("src.qmp"))?;
    qmp.execute(
        "migrate-set-parameters",
        json!({"max-bandwidth": 100u64 << 30, "downtime-limit": 50}),
    )?;
    qmp.execute("migrate", json!({"uri": format!("tcp:127.0.0.1:{port}")}))?;
    let t0 = Instant::now();
    loop {
        let info = qmp.execute("query-migrate", json!({}))?;
        match info["status"].as_str() {
            Some("completed") => {
                let ms = |key: &str| info[key].as_u64().unwrap_or(0) as f64 / 1e3;
                return Ok(Figures {
                    total: ms("total-time"),
                    downtime: ms("downtime"),
                    rounds: 0,
                });
            }
            Some("failed") | Some("cancelled") => bail!("QEMU's migration failed: {info}"),
            _ => {}
        }
        if t0.elapsed() > DEADLINE {
            bail!("QEMU's migration did not complete within {DEADLINE:?}: {info}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A QMP connection: the greeting and `qmp_capabilities` done, then one command at a time.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Result<Qmp> {
        let t0 = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if t0.elapsed() > Duration::from_secs(30) => {
                    return Err(e).with_context(|| format!("cannot connect to {}", path.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut qmp = Qmp { reader: BufReader::new(stream.try_clone()?), writer: stream };
        let mut greeting = String::new();
        qmp.reader.read_line(&mut greeting)?;
        if !greeting.contains("QMP") {
            bail!("not a QMP greeting: {greeting}");
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs `command`; its `return` value (events that come in between are skipped).
    fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let request = json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{request}")?;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("QEMU closed its QMP socket");
            }
            let v: Value = serde_json::from_str(&line).with_context(|| format!("QMP: {line}"))?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                bail!("QMP {command}: {e}");
            }
        }
    }
}
