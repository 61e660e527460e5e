//! The VM file: a TOML document describing one VM.
//!
//! ```toml
//! vcpus = 1
//! memory = 256                       # MiB
//! kernel = "vmlinux"                 # relative paths are relative to the VM file
//! initrd = "initrd.img"
//! cmdline = "console=ttyS0 panic=-1"
//! firmware = "sbi"                   # "sbi", "none", or a path to M-mode firmware
//! rng = true                         # a virtio entropy device
//!
//! [[disk]]                           # virtio-blk disks, in order: /dev/vda, /dev/vdb, ...
//! path = "rootfs.qcow2"
//! read_only = false
//! format = "qcow2"                   # "raw" or "qcow2"; detected when absent
//! serial = "disk0"
//! rate_limit = { bandwidth = { size = 10485760, refill_time_ms = 1000 } }
//!
//! [[net]]                            # virtio-net interfaces on host TAP devices
//! tap = "tap0"
//! mac = "02:6b:6c:00:00:01"          # generated (stable per VM and TAP) when absent
//!
//! [vsock]                            # virtio-vsock, Firecracker's Unix-socket conventions
//! cid = 3
//! uds = "v.sock"
//!
//! accel = "jit"                      # "jit" (translated code, the default) or "interp"
//!
//! [jit]                              # the translator (with accel = "jit")
//! cache = 32                         # MiB of translated code per vCPU
//! threshold = 32                     # runs of a block before it is translated
//!
//! [balloon]                          # virtio-balloon
//! target = 0                         # MiB the balloon holds
//! stats_interval = 1                 # seconds; 0 = no statistics
//! free_page_reporting = true
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use keel_devices::virtio::config::{
    BalloonConfig, BlockConfig, DiskFormat, NetConfig, RateLimitConfig, VsockConfig,
};
use keel_machine::{Accel, Firmware, JitConfig, MachineConfig, VirtioConfig};

/// Keys of a VM file; every one is optional and unknown keys are errors.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VmFile {
    pub vcpus: Option<u32>,
    /// MiB of guest RAM.
    pub memory: Option<u64>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    pub firmware: Option<String>,
    /// An entropy device (virtio-rng): the guest's /dev/hwrng reads the host's getrandom.
    pub rng: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk: Vec<DiskEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<NetEntry>,
    pub vsock: Option<VsockEntry>,
    pub balloon: Option<BalloonEntry>,
    /// How guest code runs: "jit" (translated to host code) or "interp" (interpreted).
    pub accel: Option<String>,
    pub jit: Option<JitEntry>,
}

/// The translator's settings.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JitEntry {
    /// MiB of translated code each vCPU keeps before it starts over.
    pub cache: Option<u64>,
    /// Times a block runs in the interpreter before it is translated.
    pub threshold: Option<u32>,
}

/// The largest translated-code cache per vCPU, in MiB (jumps within it are 32-bit relative).
pub const MAX_JIT_CACHE_MIB: u64 = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiskEntry {
    pub path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
    pub format: Option<DiskFormat>,
    pub serial: Option<String>,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetEntry {
    pub tap: String,
    pub mac: Option<String>,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VsockEntry {
    pub cid: u64,
    pub uds: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BalloonEntry {
    /// MiB.
    #[serde(default)]
    pub target: u64,
    /// Seconds.
    #[serde(default)]
    pub stats_interval: u64,
    #[serde(default)]
    pub free_page_reporting: bool,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read VM file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl VmFile {
    /// Reads and checks a VM file. Relative paths in it are made relative to its folder.
    pub fn load(path: &Path) -> Result<VmFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut vm = VmFile::parse(&text, path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let disks = vm.disk.iter_mut().map(|d| &mut d.path);
        let vsock = vm.vsock.iter_mut().map(|v| &mut v.uds);
        for p in [&mut vm.kernel, &mut vm.initrd].into_iter().flatten().chain(disks).chain(vsock) {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        if let Some(fw) = &vm.firmware {
            if !matches!(fw.as_str(), "sbi" | "none") && Path::new(fw).is_relative() {
                vm.firmware = Some(dir.join(fw).to_string_lossy().into_owned());
            }
        }
        Ok(vm)
    }

    /// Parses VM file text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<VmFile, ConfigError> {
        let vm: VmFile = toml::from_str(text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start.min(text.len()));
            let line = text[..start].matches('\n').count() + 1;
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                message: e.message().trim().to_string(),
            }
        })?;
        vm.validate(&path.display().to_string())?;
        Ok(vm)
    }

    /// Checks values whose range the type doesn't capture. `origin` names where they came from.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: origin.to_string(), message };
        if self.memory == Some(0) {
            return Err(invalid(
                "memory = 0: a VM needs at least 1 MiB of RAM (give MiB, e.g. memory = 256)".into(),
            ));
        }
        if let Some(m) = self.memory {
            // RAM starts at 2 GiB and must end below the 56-bit physical address limit.
            if m > (1 << 36) - 2048 {
                return Err(invalid(format!(
                    "memory = {m}: more than the RISC-V physical address space holds"
                )));
            }
        }
        for (i, n) in self.net.iter().enumerate() {
            if let Some(mac) = &n.mac {
                if parse_mac(mac).is_none() {
                    return Err(invalid(format!(
                        "net[{i}].mac = {mac:?} is not a MAC address (six hex bytes, like 02:6b:6c:00:00:01)"
                    )));
                }
            }
            if n.tap.is_empty() || n.tap.len() > 15 {
                return Err(invalid(format!(
                    "net[{i}].tap = {:?}: a TAP device name has 1 to 15 characters",
                    n.tap
                )));
            }
        }
        for (i, d) in self.disk.iter().enumerate() {
            if d.serial.as_ref().is_some_and(|s| s.len() > 20) {
                return Err(invalid(format!(
                    "disk[{i}].serial: at most 20 bytes (virtio-blk's ID field)"
                )));
            }
        }
        if let Some(v) = &self.vsock {
            if v.cid < 3 || v.cid > u32::MAX as u64 - 1 {
                return Err(invalid(format!(
                    "vsock.cid = {}: guest CIDs are 3 to 4294967294 (0-2 are reserved)",
                    v.cid
                )));
            }
        }
        if let (Some(b), Some(m)) = (&self.balloon, self.memory) {
            if b.target > m {
                return Err(invalid(format!(
                    "balloon.target = {} MiB is more than memory = {m} MiB",
                    b.target
                )));
            }
        }
        if self.vcpus == Some(0) {
            return Err(invalid("vcpus = 0: a VM needs at least one vCPU".into()));
        }
        match self.accel.as_deref() {
            None | Some("jit") => {}
            Some("interp") if self.jit.is_some() => {
                return Err(invalid(
                    "[jit] settings need accel = \"jit\" (the interpreter translates nothing)"
                        .into(),
                ))
            }
            Some("interp") => {}
            Some(other) => {
                return Err(invalid(format!(
                    "accel = {other:?}: keel runs guest code with \"jit\" (translated, the default) or \"interp\""
                )))
            }
        }
        if let Some(mib) = self.jit.as_ref().and_then(|j| j.cache) {
            let min = keel_machine::MIN_CACHE_MIB as u64;
            if !(min..=MAX_JIT_CACHE_MIB).contains(&mib) {
                return Err(invalid(format!(
                    "jit.cache = {mib}: the translated-code cache is {min} to {MAX_JIT_CACHE_MIB} MiB per vCPU (default {})",
                    keel_machine::DEFAULT_CACHE_MIB
                )));
            }
        }
        if let Some(n) = self.vcpus.filter(|&n| n > keel_machine::board::MAX_VCPUS) {
            return Err(invalid(format!(
                "vcpus = {n}: keel runs at most {} vCPUs per VM",
                keel_machine::board::MAX_VCPUS
            )));
        }
        Ok(())
    }

    /// The VM file that describes `config` exactly: absolute paths, MAC addresses spelled
    /// out, every value given. A snapshot carries it, so that the VM can be rebuilt anywhere
    /// (and a clone can edit it: its own disks, MAC and vsock CID).
    pub fn describing(config: &MachineConfig) -> VmFile {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let mut vm = VmFile {
            vcpus: Some(config.vcpus),
            memory: Some(config.memory_mib),
            kernel: Some(absolute(&config.kernel)),
            initrd: config.initrd.as_deref().map(absolute),
            cmdline: Some(config.cmdline.clone()),
            firmware: Some(match &config.firmware {
                Firmware::Sbi => "sbi".to_string(),
                Firmware::None => "none".to_string(),
                Firmware::Path(p) => absolute(p).to_string_lossy().into_owned(),
            }),
            ..VmFile::default()
        };
        match &config.accel {
            Accel::Interp => vm.accel = Some("interp".into()),
            Accel::Jit(jit) => {
                vm.accel = Some("jit".into());
                vm.jit = Some(JitEntry {
                    cache: Some((jit.cache_bytes >> 20) as u64),
                    threshold: Some(jit.threshold),
                });
            }
        }
        for device in &config.virtio {
            match device {
                VirtioConfig::Block(b) => vm.disk.push(DiskEntry {
                    path: absolute(&b.path),
                    read_only: b.read_only,
                    format: b.format,
                    serial: b.serial.clone(),
                    rate_limit: b.rate_limit,
                }),
                VirtioConfig::Net(n) => vm.net.push(NetEntry {
                    tap: n.tap.clone(),
                    mac: Some(format_mac(&n.mac)),
                    rate_limit: n.rate_limit,
                }),
                VirtioConfig::Rng => vm.rng = Some(true),
                VirtioConfig::Vsock(v) => {
                    vm.vsock = Some(VsockEntry { cid: v.guest_cid, uds: absolute(&v.uds_path) })
                }
                VirtioConfig::Balloon(b) => {
                    vm.balloon = Some(BalloonEntry {
                        target: b.target_mib,
                        stats_interval: b.stats_interval_s,
                        free_page_reporting: b.free_page_reporting,
                    })
                }
            }
        }
        vm
    }

    /// The VM file as TOML text.
    pub fn to_toml(&self) -> String {
        // Every field is a plain value, a table or an array of tables: this cannot fail.
        toml::to_string(self).unwrap_or_default()
    }

    /// Applies `other`'s values over these (command-line flags over the file).
    pub fn merge(&mut self, other: VmFile) {
        macro_rules! over {
            ($($f:ident),*) => {$( if other.$f.is_some() { self.$f = other.$f; } )*};
        }
        over!(vcpus, memory, kernel, initrd, cmdline, firmware, rng, vsock, balloon, accel, jit);
        // Devices given on the command line come after the file's.
        self.disk.extend(other.disk);
        self.net.extend(other.net);
    }

    /// The virtio devices the file describes, in the order they get slots: disks first (so
    /// the first is /dev/vda), then network, entropy, vsock and balloon. `identity` names the
    /// VM; generated MAC addresses derive from it, so they stay the same for the same VM.
    pub fn virtio(&self, identity: &str) -> Vec<VirtioConfig> {
        let mut devices = Vec::new();
        for d in &self.disk {
            devices.push(VirtioConfig::Block(BlockConfig {
                path: d.path.clone(),
                read_only: d.read_only,
                format: d.format,
                serial: d.serial.clone(),
                rate_limit: d.rate_limit,
            }));
        }
        for n in &self.net {
            let mac = n
                .mac
                .as_deref()
                .and_then(parse_mac)
                .unwrap_or_else(|| generated_mac(identity, &n.tap));
            devices.push(VirtioConfig::Net(NetConfig {
                tap: n.tap.clone(),
                mac,
                rate_limit: n.rate_limit,
            }));
        }
        if self.rng == Some(true) {
            devices.push(VirtioConfig::Rng);
        }
        if let Some(v) = &self.vsock {
            devices.push(VirtioConfig::Vsock(VsockConfig {
                guest_cid: v.cid,
                uds_path: v.uds.clone(),
            }));
        }
        if let Some(b) = &self.balloon {
            devices.push(VirtioConfig::Balloon(BalloonConfig {
                target_mib: b.target,
                stats_interval_s: b.stats_interval,
                free_page_reporting: b.free_page_reporting,
            }));
        }
        devices
    }

    /// How guest code runs (after `validate`: unknown engines were refused there).
    pub fn accel(&self) -> Accel {
        if self.accel.as_deref() == Some("interp") {
            return Accel::Interp;
        }
        let mut jit = JitConfig::default();
        if let Some(j) = &self.jit {
            if let Some(mib) = j.cache {
                jit.cache_bytes = (mib as usize) << 20;
            }
            if let Some(t) = j.threshold {
                jit.threshold = t;
            }
        }
        Accel::Jit(jit)
    }

    pub fn firmware(&self) -> Firmware {
        match self.firmware.as_deref() {
            None | Some("sbi") => Firmware::Sbi,
            Some("none") => Firmware::None,
            Some(path) => Firmware::Path(PathBuf::from(path)),
        }
    }
}

/// Spells a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A locally administered unicast MAC (02:6b:6c = "kl") whose last three bytes hash the VM's
/// identity and the TAP device, so a VM keeps its address across runs.
pub fn generated_mac(identity: &str, tap: &str) -> [u8; 6] {
    // FNV-1a: stable across Rust versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.bytes().chain([0]).chain(tap.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    [0x02, 0x6b, 0x6c, (h >> 16) as u8, (h >> 8) as u8, h as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<VmFile, ConfigError> {
        VmFile::parse(text, Path::new("vm.toml"))
    }

    /// The VM file a snapshot carries rebuilds exactly the machine it describes.
    #[test]
    fn a_described_machine_round_trips_through_its_vm_file() {
        let text = r#"
            vcpus = 2
            memory = 128
            kernel = "/img/vmlinux"
            initrd = "/img/initrd.img"
            cmdline = "console=ttyS0 quiet"
            rng = true
            [[disk]]
            path = "/vm/root.qcow2"
            format = "qcow2"
            serial = "root"
            rate_limit = { ops = { size = 100, refill_time_ms = 1000 } }
            [[disk]]
            path = "/vm/data.img"
            read_only = true
            [[net]]
            tap = "tap7"
            [vsock]
            cid = 9
            uds = "/run/v.sock"
            [balloon]
            target = 16
            stats_interval = 2
            free_page_reporting = true
        "#;
        let vm = parse(text).unwrap();
        let config = MachineConfig {
            vcpus: vm.vcpus.unwrap(),
            memory_mib: vm.memory.unwrap(),
            kernel: vm.kernel.clone().unwrap(),
            initrd: vm.initrd.clone(),
            cmdline: vm.cmdline.clone().unwrap(),
            firmware: vm.firmware(),
            virtio: vm.virtio("identity"),
            accel: vm.accel(),
        };
        let described = VmFile::describing(&config);
        let again = parse(&described.to_toml()).unwrap();
        assert_eq!(again, described);
        // The generated MAC is spelled out, so another identity gets the same devices.
        assert_eq!(again.virtio("some other VM"), config.virtio);
        assert_eq!(again.firmware(), Firmware::Sbi);
        assert_eq!(again.kernel.as_deref(), Some(Path::new("/img/vmlinux")));
    }

    #[test]
    fn reads_every_key() {
        let vm = parse(
            "vcpus = 1\nmemory = 512\nkernel = \"k\"\ninitrd = \"i\"\ncmdline = \"console=ttyS0\"\nfirmware = \"none\"\n",
        )
        .unwrap();
        assert_eq!(vm.memory, Some(512));
        assert_eq!(vm.kernel, Some(PathBuf::from("k")));
        assert_eq!(vm.firmware(), Firmware::None);
    }

    #[test]
    fn unknown_keys_name_the_file_line_and_key() {
        let err = parse("memory = 256\n\nmemroy = 128\n").unwrap_err().to_string();
        assert!(err.starts_with("vm.toml:3: "), "{err}");
        assert!(err.contains("memroy"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_line() {
        let err = parse("vcpus = 1\nmemory = \"lots\"\n").unwrap_err().to_string();
        assert!(err.starts_with("vm.toml:2: "), "{err}");
    }

    #[test]
    fn zero_memory_and_vcpus_are_refused() {
        assert!(parse("memory = 0").unwrap_err().to_string().contains("memory = 0"));
        assert!(parse("vcpus = 0").unwrap_err().to_string().contains("vcpus = 0"));
    }

    #[test]
    fn flags_override_the_file() {
        let mut vm = parse("memory = 256\ncmdline = \"a\"\n").unwrap();
        vm.merge(VmFile { memory: Some(128), ..Default::default() });
        assert_eq!(vm.memory, Some(128));
        assert_eq!(vm.cmdline.as_deref(), Some("a"));
    }

    #[test]
    fn device_sections_become_devices_in_slot_order() {
        let vm = parse(
            "rng = true\n[[net]]\ntap = \"tap0\"\n[[disk]]\npath = \"/d0\"\nread_only = true\n\
             [[disk]]\npath = \"/d1\"\nformat = \"qcow2\"\nrate_limit = { ops = { size = 10, refill_time_ms = 1000 } }\n\
             [vsock]\ncid = 7\nuds = \"/v.sock\"\n[balloon]\ntarget = 16\n",
        )
        .unwrap();
        let devices = vm.virtio("vm-a");
        let kinds: Vec<&str> = devices
            .iter()
            .map(|d| match d {
                VirtioConfig::Block(_) => "blk",
                VirtioConfig::Net(_) => "net",
                VirtioConfig::Rng => "rng",
                VirtioConfig::Vsock(_) => "vsock",
                VirtioConfig::Balloon(_) => "balloon",
            })
            .collect();
        assert_eq!(kinds, ["blk", "blk", "net", "rng", "vsock", "balloon"]);
        let VirtioConfig::Block(d1) = &devices[1] else { unreachable!() };
        assert_eq!(d1.format, Some(DiskFormat::Qcow2));
        assert_eq!(d1.rate_limit.ops.unwrap().size, 10);
    }

    #[test]
    fn generated_macs_are_stable_local_unicast_and_per_vm() {
        let a = generated_mac("vm-a", "tap0");
        assert_eq!(a, generated_mac("vm-a", "tap0"));
        assert_ne!(a, generated_mac("vm-b", "tap0"));
        assert_ne!(a, generated_mac("vm-a", "tap1"));
        assert_eq!(a[0] & 3, 2, "locally administered, unicast");
        assert_eq!(parse_mac("02:6b:6c:00:00:01"), Some([2, 0x6b, 0x6c, 0, 0, 1]));
        assert_eq!(parse_mac("02:6b:6c:00:00"), None);
        assert_eq!(parse_mac("zz:6b:6c:00:00:01"), None);
    }

    #[test]
    fn bad_device_values_are_refused_by_name() {
        let e = parse("[[net]]\ntap = \"tap0\"\nmac = \"nope\"\n").unwrap_err().to_string();
        assert!(e.contains("net[0].mac"), "{e}");
        let e = parse("[vsock]\ncid = 2\nuds = \"/v\"\n").unwrap_err().to_string();
        assert!(e.contains("vsock.cid"), "{e}");
        let e = parse("[[disk]]\npath = \"/d\"\nreadonly = true\n").unwrap_err().to_string();
        assert!(e.starts_with("vm.toml:3:") && e.contains("readonly"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_vm_file() {
        let dir = std::env::temp_dir().join(format!("keel-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vm.toml");
        std::fs::write(&file, "kernel = \"vmlinux\"\nfirmware = \"fw.bin\"\n").unwrap();
        let vm = VmFile::load(&file).unwrap();
        assert_eq!(vm.kernel, Some(dir.join("vmlinux")));
        assert_eq!(vm.firmware(), Firmware::Path(dir.join("fw.bin")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
