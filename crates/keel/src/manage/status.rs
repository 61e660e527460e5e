//! What state a VM is in (`keel ls`, `keel info`): its files and process first, then, for a
//! live VMM, what its API says.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use keel_machine::Firmware;
use keel_vmm::VmFile;
use serde_json::{json, Map, Value};

use super::client::Client;
use super::store::{Process, Store, StoreError, VmDir};
use crate::run::{ACCEL_ENV, DEFAULT_CMDLINE, DEFAULT_MEMORY_MIB};
use crate::vmm::{accel_name, jit_json};

/// The file `keel receive` leaves in a VM's directory until the received guest runs.
pub const INCOMING_MARKER: &str = "incoming";

/// How long `ls` and `info` wait for a VMM to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    /// Never started: no pid file, no state file.
    Created,
    /// The VMM runs but has not booted the guest yet (its API says "Not started").
    Starting,
    Running,
    Paused,
    /// The VMM process runs but its API does not answer.
    Unresponsive,
    /// Ended: the state file says so.
    Stopped,
    /// The pid file names a process that is gone, or the VMM recorded that the guest died.
    Crashed,
    /// A VMM waits for the VM, or receives it, by live migration (`keel receive`).
    Incoming,
    /// The VM moved to another host by live migration and runs there.
    Migrated,
}

impl VmState {
    /// A VMM process exists for the VM.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            VmState::Starting
                | VmState::Running
                | VmState::Paused
                | VmState::Unresponsive
                | VmState::Incoming
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Created => "created",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Unresponsive => "unresponsive",
            VmState::Stopped => "stopped",
            VmState::Crashed => "crashed",
            VmState::Incoming => "incoming",
            VmState::Migrated => "migrated",
        }
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A VM's state and, when its VMM answered, its `GET /` object.
pub struct Status {
    pub state: VmState,
    pub pid: Option<u32>,
    pub info: Option<Value>,
}

impl Status {
    pub fn uptime_s(&self) -> Option<f64> {
        self.info.as_ref()?.get("uptime_s")?.as_f64()
    }
}

pub fn api(vm: &VmDir, timeout: Duration) -> Client {
    Client::new(&vm.api_socket(), timeout)
}

/// Works out the VM's state. A pid file whose process is gone means a crash; a live VMM is
/// asked over its socket whether it runs or is paused.
pub fn probe(vm: &VmDir) -> Status {
    match vm.process() {
        Process::None => {
            let state = match vm.recorded_state().as_deref() {
                None => VmState::Created,
                Some("crashed") => VmState::Crashed,
                Some("migrated") => VmState::Migrated,
                Some(_) => VmState::Stopped,
            };
            Status { state, pid: None, info: None }
        }
        Process::Dead(pid) => Status { state: VmState::Crashed, pid, info: None },
        // Until the guest runs, a receiving VMM is "incoming", whatever its API says.
        Process::Alive(pid) if vm.path.join(INCOMING_MARKER).exists() => {
            let info = api(vm, PROBE_TIMEOUT).get_json("/").ok();
            Status { state: VmState::Incoming, pid: Some(pid), info }
        }
        Process::Alive(pid) => match api(vm, PROBE_TIMEOUT).get_json("/") {
            Ok(info) => {
                let state = match info.get("state").and_then(Value::as_str) {
                    Some("Paused") => VmState::Paused,
                    Some("Not started") => VmState::Starting,
                    _ => VmState::Running,
                };
                Status { state, pid: Some(pid), info: Some(info) }
            }
            Err(_) => Status { state: VmState::Unresponsive, pid: Some(pid), info: None },
        },
    }
}

/// `keel ls`.
pub fn list(store: &Store, as_json: bool) -> Result<(), StoreError> {
    let mut rows = Vec::new();
    for vm in store.list()? {
        let status = probe(&vm);
        let file = VmFile::load(&vm.vm_file()).ok();
        let vcpus = file.as_ref().map(|f| f.vcpus.unwrap_or(1));
        let memory = file.as_ref().map(|f| f.memory.unwrap_or(DEFAULT_MEMORY_MIB));
        rows.push(json!({
            "name": vm.name,
            "state": status.state.as_str(),
            "vcpus": vcpus,
            "memory_mib": memory,
            "uptime_s": status.uptime_s(),
            "pid": status.pid,
        }));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&Value::Array(rows)).expect("JSON"));
        return Ok(());
    }
    let text = |v: &Value, f: &dyn Fn(&Value) -> Option<String>| f(v).unwrap_or("-".into());
    let mut table = vec![["NAME", "STATE", "VCPUS", "MEMORY", "UPTIME"].map(String::from)];
    for row in &rows {
        table.push([
            text(&row["name"], &|v| v.as_str().map(str::to_string)),
            text(&row["state"], &|v| v.as_str().map(str::to_string)),
            text(&row["vcpus"], &|v| v.as_u64().map(|n| n.to_string())),
            text(&row["memory_mib"], &|v| v.as_u64().map(|n| format!("{n} MiB"))),
            text(&row["uptime_s"], &|v| v.as_f64().map(human_duration)),
        ]);
    }
    let widths: Vec<usize> =
        (0..5).map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &table {
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    Ok(())
}

/// `keel info`: what the VMM says (`GET /` and `GET /vm/config`) when it answers, else what
/// the VM file says.
pub fn info(vm: &VmDir, as_json: bool) -> anyhow::Result<()> {
    let status = probe(vm);
    let mut out = Map::new();
    out.insert("name".into(), json!(vm.name));
    out.insert("state".into(), json!(status.state.as_str()));
    out.insert("dir".into(), json!(vm.path));
    out.insert("pid".into(), json!(status.pid));
    let config = match &status.info {
        Some(info) => {
            for (key, value) in info.as_object().into_iter().flatten() {
                if !matches!(key.as_str(), "id" | "state" | "app_name") {
                    out.insert(key.clone(), value.clone());
                }
            }
            api(vm, PROBE_TIMEOUT).get_json("/vm/config").ok()
        }
        None => {
            out.insert("uptime_s".into(), Value::Null);
            None
        }
    };
    let config = match config {
        Some(config) => config,
        None => config_from_file(&vm.vm_file())?,
    };
    for (key, value) in config.as_object().into_iter().flatten() {
        out.insert(key.clone(), value.clone());
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&Value::Object(out)).expect("JSON"));
        return Ok(());
    }
    let default_image = out.get("kernel").is_none_or(Value::is_null);
    for (key, value) in &out {
        let (key, text) = match (key.as_str(), value) {
            ("uptime_s", v) => ("uptime", v.as_f64().map_or("-".into(), human_duration)),
            ("memory_mib", Value::Number(n)) => ("memory", format!("{n} MiB")),
            ("kernel" | "initrd", Value::Null) if default_image => {
                (key.as_str(), "(the default image)".to_string())
            }
            (_, Value::Null) => (key.as_str(), "-".to_string()),
            (_, Value::String(s)) => (key.as_str(), s.clone()),
            (_, Value::Array(items)) if items.is_empty() => (key.as_str(), "-".to_string()),
            (_, other) => (key.as_str(), other.to_string()),
        };
        println!("{key}: {text}");
    }
    Ok(())
}

/// The VM file in `GET /vm/config`'s shape, for a VM whose VMM isn't there to ask. Its
/// engine is the file's, or when it names none, the one `keel start` would pick now
/// ($KEEL_ACCEL, else the translator).
fn config_from_file(path: &Path) -> anyhow::Result<Value> {
    let mut vm = VmFile::load(path)?;
    if vm.accel.is_none() {
        let from_env = VmFile { accel: std::env::var(ACCEL_ENV).ok(), ..VmFile::default() };
        if from_env.validate("").is_ok() {
            vm.accel = from_env.accel;
        }
    }
    let accel = vm.accel();
    let firmware = match vm.firmware() {
        Firmware::Sbi => json!("sbi"),
        Firmware::None => json!("none"),
        Firmware::Path(p) => json!(p),
    };
    let disks: Vec<Value> = vm
        .disk
        .iter()
        .map(|d| json!({"path": d.path, "read_only": d.read_only, "format": d.format.map(|f| format!("{f:?}").to_lowercase())}))
        .collect();
    let nets: Vec<Value> = vm.net.iter().map(|n| json!({"tap": n.tap, "mac": n.mac})).collect();
    Ok(json!({
        "vcpus": vm.vcpus.unwrap_or(1),
        "memory_mib": vm.memory.unwrap_or(DEFAULT_MEMORY_MIB),
        // null: the default guest image's.
        "kernel": vm.kernel,
        "initrd": vm.initrd,
        "cmdline": vm.cmdline.as_deref().unwrap_or(DEFAULT_CMDLINE),
        "firmware": firmware,
        "disks": disks,
        "nets": nets,
        "vsock": vm.vsock.as_ref().map(|v| json!({"guest_cid": v.cid, "uds_path": v.uds})),
        "balloon": vm.balloon.as_ref().map(|b| json!({
            "amount_mib": b.target,
            "stats_polling_interval_s": b.stats_interval,
            "free_page_reporting": b.free_page_reporting,
        })),
        "rng": vm.rng.unwrap_or(false),
        "accel": accel_name(&accel),
        "jit": jit_json(&accel),
    }))
}

/// `3s`, `4m05s`, `2h07m`, `3d04h`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_ls() {
        assert_eq!(human_duration(3.7), "3s");
        assert_eq!(human_duration(245.0), "4m05s");
        assert_eq!(human_duration(7620.0), "2h07m");
        assert_eq!(human_duration(273_600.0), "3d04h");
    }
}
