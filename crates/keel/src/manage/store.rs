//! VM directories under the state root: where they are, which names are allowed, and what the
//! files and the process say about a VM (the API adds running/paused on top, see `status`).

use std::ffi::OsStr;
use std::fs::{self, DirBuilder};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The longest VM name.
pub const MAX_NAME: usize = 64;

const NAME_RULE: &str = "a VM name has 1 to 64 characters: letters, digits, '.', '_' and '-', \
                         starting with a letter or digit, without \"..\"";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("invalid VM name {name:?}: {why} ({NAME_RULE})")]
    InvalidName { name: String, why: String },
    #[error("no VM named {0:?} (`keel ls` lists the VMs; `keel create {0}` makes one)")]
    NotFound(String),
    #[error("a VM named {0:?} already exists (`keel rm {0}` removes it, or pick another name)")]
    Exists(String),
    #[error("{} is not a plain directory, so it is not a keel VM; keel leaves it alone", .0.display())]
    NotADirectory(PathBuf),
    #[error(
        "cannot tell where keel keeps its VMs: set KEEL_STATE_DIR (or XDG_STATE_HOME or HOME)"
    )]
    NoRoot,
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { action, path: path.to_owned(), source }
}

/// Checks a VM name against the contract's rules. Names become directory names, so anything
/// that could step out of the state root (`/`, `..`) or hide (a leading `.`) is refused.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let why = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > MAX_NAME {
        Some(format!("it is {} characters long", name.chars().count()))
    } else if !name.as_bytes()[0].is_ascii_alphanumeric() {
        Some("it must start with a letter or digit".to_string())
    } else if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(format!("it contains {c:?}"))
    } else if name.contains("..") {
        Some("it contains \"..\"".to_string())
    } else {
        None
    };
    match why {
        Some(why) => Err(StoreError::InvalidName { name: name.to_string(), why }),
        None => Ok(()),
    }
}

/// The state root and the VMs in it.
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// `$KEEL_STATE_DIR`, else `$XDG_STATE_HOME/keel`, else `~/.local/state/keel`.
    pub fn from_env() -> Result<Store, StoreError> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let root = if let Some(dir) = var("KEEL_STATE_DIR") {
            dir
        } else if let Some(dir) = var("XDG_STATE_HOME").filter(|d| d.is_absolute()) {
            dir.join("keel")
        } else if let Some(home) = var("HOME") {
            home.join(".local/state/keel")
        } else {
            return Err(StoreError::NoRoot);
        };
        // The VMM gets the directory on its command line and runs elsewhere: make it absolute.
        let root = std::path::absolute(&root).map_err(io_err("resolve", &root))?;
        Ok(Store { root })
    }

    fn vms(&self) -> PathBuf {
        self.root.join("vms")
    }

    /// The existing VM called `name`.
    pub fn vm(&self, name: &str) -> Result<VmDir, StoreError> {
        validate_name(name)?;
        let path = self.vms().join(name);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(name.to_string()))
            }
            Err(e) => Err(io_err("read", &path)(e)),
            // A symlink is never followed: it could lead out of the state root.
            Ok(meta) if !meta.file_type().is_dir() => Err(StoreError::NotADirectory(path)),
            Ok(_) => Ok(VmDir { name: name.to_string(), path }),
        }
    }

    /// Makes the directory of a new VM (mode 0700). Fails if the name is taken.
    pub fn create(&self, name: &str) -> Result<VmDir, StoreError> {
        validate_name(name)?;
        let vms = self.vms();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&vms)
            .map_err(io_err("create", &vms))?;
        let path = vms.join(name);
        // Creating the directory itself is the check, so two `keel create`s can't both win.
        match DirBuilder::new().mode(0o700).create(&path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::Exists(name.to_string()))
            }
            Err(e) => Err(io_err("create", &path)(e)),
            Ok(()) => Ok(VmDir { name: name.to_string(), path }),
        }
    }

    /// Every VM, by name. Entries that aren't VM directories are skipped.
    pub fn list(&self) -> Result<Vec<VmDir>, StoreError> {
        let vms = self.vms();
        let entries = match fs::read_dir(&vms) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(io_err("read", &vms))?,
        };
        let mut list = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("read", &vms))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            // DirEntry::file_type does not follow symlinks.
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && validate_name(&name).is_ok() {
                list.push(VmDir { path: entry.path(), name });
            }
        }
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }
}

/// What the pid file says about the VMM process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// No pid file.
    None,
    /// The pid file names a live `keel vmm` for this directory.
    Alive(u32),
    /// The pid file names a process that is gone (or is now something else).
    Dead(Option<u32>),
}

/// One VM's directory.
#[derive(Debug, Clone)]
pub struct VmDir {
    pub name: String,
    pub path: PathBuf,
}

impl VmDir {
    pub fn vm_file(&self) -> PathBuf {
        self.path.join("vm.toml")
    }
    pub fn api_socket(&self) -> PathBuf {
        self.path.join("api.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.path.join("pid")
    }
    pub fn state_file(&self) -> PathBuf {
        self.path.join("state")
    }
    pub fn console_log(&self) -> PathBuf {
        self.path.join("console.log")
    }
    pub fn keel_log(&self) -> PathBuf {
        self.path.join("keel.log")
    }

    /// The VMM process, as the pid file and /proc tell it.
    pub fn process(&self) -> Process {
        let text = match fs::read_to_string(self.pid_file()) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Process::None,
            Err(_) => return Process::Dead(None),
            Ok(text) => text,
        };
        match text.trim().parse::<u32>() {
            Ok(pid) if pid > 0 && is_vmm_for(pid, &self.path) => Process::Alive(pid),
            Ok(pid) if pid > 0 => Process::Dead(Some(pid)),
            _ => Process::Dead(None),
        }
    }

    /// The word the VMM left in the `state` file when it exited (`stopped`, or `crashed`
    /// when the guest died); None before the first run.
    pub fn recorded_state(&self) -> Option<String> {
        fs::read_to_string(self.state_file()).ok().map(|s| s.trim().to_string())
    }

    /// Removes what a VMM that died left behind (its pid file and socket), so a new one can
    /// start. Only for a VM whose process is known to be gone.
    pub fn clear_stale(&self) -> Result<(), StoreError> {
        for path in [self.pid_file(), self.api_socket()] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("remove", &path)(e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Records a stop that keel made by killing the VMM (which then could not record it).
    pub fn mark_stopped(&self) -> Result<(), StoreError> {
        write_atomic(&self.state_file(), b"stopped\n")?;
        self.clear_stale()
    }

    /// Deletes the VM's directory. `remove_dir_all` removes symlinks inside it rather than
    /// following them, and the directory itself was checked not to be one.
    pub fn remove(self) -> Result<(), StoreError> {
        fs::remove_dir_all(&self.path).map_err(io_err("remove", &self.path))
    }
}

/// Writes `path` through a temporary file in the same directory and a rename, so readers see
/// the old file or the new one, never half of one. The file is private to the user (0600).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    if let Err(e) = write().and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", path)(e));
    }
    Ok(())
}

/// Whether process `pid` is `keel vmm --dir DIR` for this directory. The pid alone is not
/// enough: after a crash the number may have been reused by an unrelated process. A zombie
/// has an empty command line, so it counts as gone too.
pub fn is_vmm_for(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let Some(vmm) = args.iter().skip(1).position(|a| *a == b"vmm") else { return false };
    let rest = &args[vmm + 2..];
    let given = rest.iter().enumerate().find_map(|(i, a)| {
        if *a == b"--dir" {
            rest.get(i + 1).copied()
        } else {
            a.strip_prefix(b"--dir=")
        }
    });
    given.is_some_and(|g| same_path(Path::new(OsStr::from_bytes(g)), dir))
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for good in ["a", "web-1", "db.prod_2", "A9", &"x".repeat(64)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a..b", "x y", "é", &"x".repeat(65)] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid VM name"), "{bad}: {err}");
        }
    }

    #[test]
    fn our_own_process_is_not_a_vmm() {
        assert!(!is_vmm_for(std::process::id(), Path::new("/nowhere")));
        assert!(!is_vmm_for(u32::MAX, Path::new("/nowhere")));
    }
}
