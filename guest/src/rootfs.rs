//! The root filesystem image, `rootfs.ext4`: the initramfs's busybox, applet
//! links and modules as an ext4 filesystem, so a VM booted with
//! `root=/dev/vda` keeps its files across reboots. The initramfs's `/init`
//! mounts it and switch_roots into its `/sbin/init` (the same script).
//!
//! The cache holds it as a *template*: a VM must boot a copy of it (or an
//! overlay on it), never the file itself.
//!
//! The image is built with the host's e2fsprogs: `mkfs.ext4 -d` copies a
//! staging directory into the new filesystem, then one `debugfs -w` run sets
//! every inode's owner to root (mkfs copies the staging files' owner, which
//! is whoever runs `keel image pull`; `-E root_owner` only covers `/`) and
//! creates the device nodes (a normal user can't make them in the staging
//! directory), and `e2fsck -fn` checks the result.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::cpio::{self, Entry};
use crate::{PullError, INIT_SCRIPT};

/// Apparent size of the image; it is sparse (about 5 MB of it is used: the
/// busybox binary and the modules). 64 MiB leaves room for the user's files
/// and is quick to copy per VM.
pub const ROOTFS_SIZE: u64 = 64 << 20;

/// The filesystem label: `root=LABEL=keel-root` finds it.
pub const LABEL: &str = "keel-root";

/// The initramfs moves these mounts onto the disk before switch_root, so the
/// disk's /init mounts nothing; the lines are here for `mount -a` by hand and
/// for tools that read fstab.
const ETC_FSTAB: &str = "\
# keel's /init moves these from the initramfs before switching to this disk.
devtmpfs /dev devtmpfs defaults 0 0
proc /proc proc defaults 0 0
sysfs /sys sysfs defaults 0 0
tmpfs /tmp tmpfs mode=1777 0 0
tmpfs /run tmpfs mode=755 0 0
";

const ETC_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n";
const ETC_GROUP: &str = "root:x:0:\n";
/// /init sets the hostname from this file when it is there.
const ETC_HOSTNAME: &str = "keel\n";

/// The entries of the root filesystem: everything in the initramfs (busybox,
/// its applet links, the modules with their index, the device nodes the
/// kernel opens before devtmpfs), plus keel's init script as `/sbin/init`
/// (in place of busybox's init applet) and `/init`, the files in /etc a
/// persistent system wants, and /home. Sorted by path, parents first.
pub fn entries(initramfs: &[Entry]) -> Vec<Entry> {
    let init = || INIT_SCRIPT.as_bytes().to_vec();
    let own = [
        Entry::file("init", 0o755, init()),
        Entry::file("sbin/init", 0o755, init()),
        Entry::file("etc/fstab", 0o644, ETC_FSTAB.into()),
        Entry::file("etc/passwd", 0o644, ETC_PASSWD.into()),
        Entry::file("etc/group", 0o644, ETC_GROUP.into()),
        Entry::file("etc/hostname", 0o644, ETC_HOSTNAME.into()),
        // busybox mount reads it to find / for `mount -o remount,ro /`.
        Entry::symlink("etc/mtab", "/proc/mounts"),
        Entry::dir("home", 0o755),
        Entry::dir("mnt", 0o755),
        Entry::dir("dev", 0o755),
        Entry::dir("proc", 0o555),
        Entry::dir("sys", 0o555),
        Entry::dir("run", 0o755),
        Entry::dir("tmp", 0o1777),
        Entry::dir("root", 0o700),
    ];
    let mut map: BTreeMap<String, Entry> =
        initramfs.iter().map(|e| (e.path.clone(), e.clone())).collect();
    for e in own {
        map.insert(e.path.clone(), e);
    }
    // A parent directory missing from the input (an initramfs from an older
    // keel lists every one, but nothing guarantees it).
    let parents: Vec<String> = map
        .keys()
        .flat_map(|p| {
            let mut v = Vec::new();
            let mut p = p.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                v.push(parent.to_string());
                p = parent;
            }
            v
        })
        .collect();
    for p in parents {
        map.entry(p.clone()).or_insert_with(|| Entry::dir(&p, 0o755));
    }
    // Byte order of paths: each directory before what it contains.
    map.into_values().collect()
}

/// The e2fsprogs programs the build runs.
pub struct Tools {
    mkfs: PathBuf,
    debugfs: PathBuf,
    e2fsck: PathBuf,
}

impl Tools {
    /// Finds them in `$PATH`, then in /usr/sbin and /sbin, which are not in
    /// a normal user's `$PATH` on Debian.
    pub fn find() -> Result<Tools, PullError> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs: Vec<PathBuf> =
            std::env::split_paths(&path).chain(["/usr/sbin", "/sbin"].map(PathBuf::from)).collect();
        let find = |tool: &'static str| {
            dirs.iter()
                .map(|d| d.join(tool))
                .find(|p| {
                    fs::metadata(p)
                        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                })
                .ok_or(PullError::E2fsprogsMissing { tool })
        };
        Ok(Tools { mkfs: find("mkfs.ext4")?, debugfs: find("debugfs")?, e2fsck: find("e2fsck")? })
    }
}

fn fail(what: impl Into<String>) -> PullError {
    PullError::Rootfs(what.into())
}

fn run(cmd: &mut Command) -> Result<Output, PullError> {
    cmd.output().map_err(|e| fail(format!("running {:?}: {e}", cmd.get_program())))
}

/// The end of a tool's output, for an error message.
fn tail(out: &Output) -> String {
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(6)..].join("\n")
}

/// Builds the ext4 image `image` (`size` bytes, sparse) holding `entries`,
/// using `staging` (created, left for the caller to remove) as the tree
/// mkfs.ext4 copies. Every inode ends up owned by root, with exactly the
/// entry's mode.
pub fn build(
    tools: &Tools,
    entries: &[Entry],
    staging: &Path,
    image: &Path,
    size: u64,
) -> Result<(), PullError> {
    stage(entries, staging)?;
    make_image(tools, entries, staging, image, size)
}

/// mkfs.ext4 from the staged tree, then the debugfs fix-ups and the check.
fn make_image(
    tools: &Tools,
    entries: &[Entry],
    staging: &Path,
    image: &Path,
    size: u64,
) -> Result<(), PullError> {
    let _ = fs::remove_file(image);
    let file = fs::File::create(image)
        .map_err(|e| PullError::io(format!("creating {}", image.display()), e))?;
    // A hole as long as the image: mkfs writes only the metadata.
    file.set_len(size).map_err(|e| PullError::io(format!("sizing {}", image.display()), e))?;
    drop(file);
    let out = run(Command::new(&tools.mkfs)
        .args(["-q", "-F", "-b", "4096", "-i", "8192", "-m", "0", "-L", LABEL])
        // lazy_itable_init=0: the inode tables are marked zeroed (the file
        // is a fresh hole), so the guest's kernel doesn't start zeroing
        // them at first mount. lazy_journal_init=1: no zeroes written into
        // the journal of a file that reads as zeroes already; the image
        // stays sparse.
        .args(["-E", "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=1", "-d"])
        .arg(staging)
        .arg(image))?;
    if !out.status.success() {
        return Err(fail(format!("mkfs.ext4 failed ({}):\n{}", out.status, tail(&out))));
    }

    debugfs_fixup(tools, entries, staging, image)?;

    let out = run(Command::new(&tools.e2fsck).arg("-fn").arg(image))?;
    if !out.status.success() {
        return Err(fail(format!(
            "e2fsck finds the new image damaged ({}):\n{}",
            out.status,
            tail(&out)
        )));
    }
    Ok(())
}

/// Writes the entries under `staging` with their exact modes, all but the
/// device nodes, which debugfs creates.
fn stage(entries: &[Entry], staging: &Path) -> Result<(), PullError> {
    let _ = fs::remove_dir_all(staging);
    let io = |p: &Path, e| PullError::io(format!("writing {}", p.display()), e);
    fs::create_dir_all(staging).map_err(|e| io(staging, e))?;
    let mut dirs = Vec::new();
    for e in entries {
        let path = staging.join(&e.path);
        let perm = fs::Permissions::from_mode(e.mode & 0o7777);
        match e.mode & 0o170000 {
            cpio::S_IFDIR => {
                fs::create_dir_all(&path).map_err(|err| io(&path, err))?;
                dirs.push((path, perm));
            }
            cpio::S_IFREG => {
                fs::write(&path, &e.data).map_err(|err| io(&path, err))?;
                fs::set_permissions(&path, perm).map_err(|err| io(&path, err))?;
            }
            cpio::S_IFLNK => {
                let target = String::from_utf8_lossy(&e.data).into_owned();
                std::os::unix::fs::symlink(target, &path).map_err(|err| io(&path, err))?;
            }
            cpio::S_IFCHR | S_IFBLK => {}
            _ => return Err(fail(format!("{}: unsupported file type", e.path))),
        }
    }
    // Directory modes last: a read-only directory could not be filled. The
    // staging directory becomes the image's /, whatever the umask.
    dirs.push((staging.to_path_buf(), fs::Permissions::from_mode(0o755)));
    for (path, perm) in dirs.into_iter().rev() {
        fs::set_permissions(&path, perm).map_err(|err| io(&path, err))?;
    }
    Ok(())
}

const S_IFBLK: u32 = 0o060000;

/// One `debugfs -w` run: root owns every inode, and the device nodes are
/// made (`mknod` in the node's directory: debugfs 1.47.0 stores a name given
/// with a path as one odd name). debugfs exits 0 even when a command fails,
/// so anything on stderr besides its version banner is an error.
fn debugfs_fixup(
    tools: &Tools,
    entries: &[Entry],
    staging: &Path,
    image: &Path,
) -> Result<(), PullError> {
    let mut script = String::new();
    let is_node = |e: &&Entry| matches!(e.mode & 0o170000, cpio::S_IFCHR | S_IFBLK);
    for n in entries.iter().filter(is_node) {
        let (dir, name) = n.path.rsplit_once('/').unwrap_or(("", &n.path));
        let kind = if n.mode & 0o170000 == S_IFBLK { 'b' } else { 'c' };
        script.push_str(&format!(
            "cd \"/{dir}\"\nmknod \"{name}\" {kind} {} {}\nsif \"{name}\" mode 0{:o}\ncd /\n",
            n.rdev.0, n.rdev.1, n.mode
        ));
    }
    for e in entries {
        if e.path.contains(|c: char| c == '"' || c.is_whitespace()) {
            return Err(fail(format!("{:?}: unusual file name", e.path)));
        }
        script.push_str(&format!("sif \"/{0}\" uid 0\nsif \"/{0}\" gid 0\n", e.path));
    }
    let cmds = staging.with_extension("debugfs");
    fs::write(&cmds, script)
        .map_err(|e| PullError::io(format!("writing {}", cmds.display()), e))?;
    let out = run(Command::new(&tools.debugfs).arg("-w").arg("-f").arg(&cmds).arg(image));
    let _ = fs::remove_file(&cmds);
    let out = out?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> =
        stderr.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs ")).collect();
    if !out.status.success() || !errors.is_empty() {
        return Err(fail(format!(
            "debugfs could not set owners and device nodes ({}):\n{}",
            out.status,
            errors.join("\n")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_initramfs() -> Vec<Entry> {
        let mut v = vec![
            Entry::dir("bin", 0o755),
            Entry::file("bin/busybox", 0o755, b"\x7fELF fake busybox".to_vec()),
            Entry::symlink("bin/sh", "/bin/busybox"),
            Entry::dir("dev", 0o755),
            Entry::char_dev("dev/console", 0o600, 5, 1),
            Entry::char_dev("dev/null", 0o666, 1, 3),
            Entry::dir("etc", 0o755),
            Entry::file("etc/filesystems", 0o644, b"ext4\n".to_vec()),
            Entry::file("etc/fstab", 0o644, b"initramfs fstab\n".to_vec()),
            Entry::file("init", 0o755, b"#!/bin/sh\nold init\n".to_vec()),
            // No lib/ or lib/modules/ entries: entries() adds the parents.
            Entry::file(
                "lib/modules/6.12.0-test/kernel/fs/ext4/ext4.ko",
                0o644,
                b"\x7fELF ext4".to_vec(),
            ),
            Entry::file(
                "lib/modules/6.12.0-test/modules.dep",
                0o644,
                b"kernel/fs/ext4/ext4.ko:\n".to_vec(),
            ),
            Entry::dir("sbin", 0o755),
            Entry::symlink("sbin/init", "/bin/busybox"),
            Entry::symlink("sbin/poweroff", "/bin/busybox"),
            Entry::dir("usr", 0o755),
            Entry::dir("usr/bin", 0o755),
            Entry::symlink("usr/bin/[", "/bin/busybox"),
        ];
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    #[test]
    fn layout() {
        let rootfs = entries(&fake_initramfs());
        let find =
            |p: &str| rootfs.iter().find(|e| e.path == p).unwrap_or_else(|| panic!("{p} missing"));
        for p in ["init", "sbin/init"] {
            assert_eq!(find(p).mode, cpio::S_IFREG | 0o755, "{p}");
            assert_eq!(find(p).data, INIT_SCRIPT.as_bytes(), "{p}");
        }
        assert_eq!(find("bin/busybox").mode, cpio::S_IFREG | 0o755);
        assert_eq!(find("sbin/poweroff").mode, cpio::S_IFLNK | 0o777);
        assert_eq!(find("dev/console").rdev, (5, 1));
        assert_eq!(find("etc/fstab").data, ETC_FSTAB.as_bytes());
        assert_eq!(find("etc/filesystems").data, b"ext4\n");
        assert!(String::from_utf8_lossy(&find("etc/passwd").data).starts_with("root:x:0:0:"));
        assert!(String::from_utf8_lossy(&find("etc/group").data).starts_with("root:x:0:"));
        assert_eq!(find("etc/hostname").data, b"keel\n");
        assert_eq!(find("etc/mtab").data, b"/proc/mounts");
        assert_eq!(find("tmp").mode, cpio::S_IFDIR | 0o1777);
        assert_eq!(find("root").mode, cpio::S_IFDIR | 0o700);
        for d in [
            "dev",
            "proc",
            "sys",
            "run",
            "mnt",
            "home",
            "lib",
            "lib/modules",
            "lib/modules/6.12.0-test/kernel/fs/ext4",
        ] {
            assert_eq!(find(d).mode & 0o170000, cpio::S_IFDIR, "{d}");
        }
        let paths: Vec<&str> = rootfs.iter().map(|e| e.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(paths, sorted, "sorted, no duplicates");
        for p in &paths {
            if let Some((parent, _)) = p.rsplit_once('/') {
                assert!(paths.contains(&parent), "{parent} missing for {p}");
            }
        }
    }

    /// Builds a real image with the host's e2fsprogs (Priority: required on
    /// Debian) and reads it back with debugfs. Run as root, the staging
    /// files are first given to another owner, as when a normal user pulls.
    #[test]
    fn builds_a_clean_root_owned_image() {
        let dir = crate::tests::scratch_dir("rootfs");
        let tools = Tools::find().expect("e2fsprogs (mkfs.ext4, debugfs, e2fsck) installed");
        let rootfs = entries(&fake_initramfs());
        let staging = dir.join("staging");
        stage(&rootfs, &staging).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            let out = Command::new("chown")
                .args(["-R", "-h", "4242:4242"])
                .arg(&staging)
                .status()
                .unwrap();
            assert!(out.success());
        }
        let image = dir.join("rootfs.ext4");
        make_image(&tools, &rootfs, &staging, &image, ROOTFS_SIZE).unwrap();
        let md = fs::metadata(&image).unwrap();
        assert_eq!(md.len(), ROOTFS_SIZE);
        assert!(std::os::unix::fs::MetadataExt::blocks(&md) * 512 < 4 << 20, "not sparse");
        let fsck = Command::new(&tools.e2fsck).arg("-fn").arg(&image).output().unwrap();
        assert!(fsck.status.success(), "{}", tail(&fsck));

        let ls = |dir: &str| {
            let out = Command::new(&tools.debugfs)
                .args(["-R", &format!("ls -l {dir}")])
                .arg(&image)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        // "  inode  mode (links)  uid  gid  size date time name"
        let rows = |dir: &str| -> Vec<(String, String, String, String)> {
            ls(dir)
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() >= 8).then(|| {
                        let name = f[f.len() - 1].to_string();
                        (name, f[1].to_string(), f[3].to_string(), f[4].to_string())
                    })
                })
                .collect()
        };
        let mut seen = 0;
        for dir in [
            "/",
            "/bin",
            "/sbin",
            "/dev",
            "/etc",
            "/usr/bin",
            "/lib/modules/6.12.0-test/kernel/fs/ext4",
        ] {
            for (name, _, uid, gid) in rows(dir) {
                assert_eq!((uid.as_str(), gid.as_str()), ("0", "0"), "{dir}/{name}");
                seen += 1;
            }
        }
        assert!(seen > 30, "{}", ls("/"));
        let mode = |dir: &str, name: &str| {
            rows(dir)
                .into_iter()
                .find(|r| r.0 == name)
                .unwrap_or_else(|| panic!("{dir}/{name} missing:\n{}", ls(dir)))
                .1
        };
        assert_eq!(ls("/").lines().next().unwrap().split_whitespace().nth(1), Some("40755"));
        assert_eq!(mode("/", "tmp"), "41777");
        assert_eq!(mode("/", "root"), "40700");
        assert_eq!(mode("/", "home"), "40755");
        assert_eq!(mode("/", "init"), "100755");
        assert_eq!(mode("/sbin", "init"), "100755");
        assert_eq!(mode("/usr/bin", "["), "120777");
        assert_eq!(mode("/dev", "console"), "20600");
        assert_eq!(mode("/dev", "null"), "20666");
        // The init script's bytes, read back.
        let cat = Command::new(&tools.debugfs)
            .args(["-R", "cat /sbin/init"])
            .arg(&image)
            .output()
            .unwrap();
        assert_eq!(cat.stdout, INIT_SCRIPT.as_bytes());
        let label =
            Command::new(&tools.debugfs).args(["-R", "stats"]).arg(&image).output().unwrap();
        assert!(
            String::from_utf8_lossy(&label.stdout).contains("Filesystem volume name:   keel-root")
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
