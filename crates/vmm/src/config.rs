//! The VM file: a TOML document describing one VM.
//!
//! ```toml
//! vcpus = 1
//! memory = 256                       # MiB
//! kernel = "vmlinux"                 # relative paths are relative to the VM file
//! initrd = "initrd.img"
//! cmdline = "console=ttyS0 panic=-1"
//! firmware = "sbi"                   # "sbi", "none", or a path to M-mode firmware
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use keel_machine::Firmware;

/// Keys of a VM file; every one is optional and unknown keys are errors.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VmFile {
    pub vcpus: Option<u32>,
    /// MiB of guest RAM.
    pub memory: Option<u64>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    pub firmware: Option<String>,
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
        for p in [&mut vm.kernel, &mut vm.initrd].into_iter().flatten() {
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
        if self.vcpus == Some(0) {
            return Err(invalid("vcpus = 0: a VM needs at least one vCPU".into()));
        }
        if let Some(n) = self.vcpus {
            if n > 1 {
                return Err(invalid(format!(
                    "vcpus = {n}: this version of keel runs guests on one vCPU; multiprocessor guests are not implemented yet"
                )));
            }
        }
        Ok(())
    }

    /// Applies `other`'s values over these (command-line flags over the file).
    pub fn merge(&mut self, other: VmFile) {
        macro_rules! over {
            ($($f:ident),*) => {$( if other.$f.is_some() { self.$f = other.$f; } )*};
        }
        over!(vcpus, memory, kernel, initrd, cmdline, firmware);
    }

    pub fn firmware(&self) -> Firmware {
        match self.firmware.as_deref() {
            None | Some("sbi") => Firmware::Sbi,
            Some("none") => Firmware::None,
            Some(path) => Firmware::Path(PathBuf::from(path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<VmFile, ConfigError> {
        VmFile::parse(text, Path::new("vm.toml"))
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
