//! `keel image pull`: download, unpack, build, and move into place.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::{self, Apt};
use crate::cpio::Entry;
use crate::{
    cpio, init_hash, initramfs, rootfs, GuestImage, ImageCache, Manifest, PullError, INITRD_FILE,
    INIT_SCRIPT, KERNEL_FILE, MANIFEST, ROOTFS_FILE,
};

const KERNEL_META: &str = "linux-image-riscv64";
const BUSYBOX: &str = "busybox-static";
const STEPS: usize = 6;

/// Removes the temporary build directory however `pull` ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mb(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb >= 10.0 {
        format!("{mb:.0} MB")
    } else {
        format!("{mb:.1} MB")
    }
}

/// Downloads Debian trixie's riscv64 kernel and busybox and builds the
/// default guest image in `cache`. With a complete image already there it
/// only says so, unless `force`. `progress` gets one line per step.
pub fn pull(
    cache: &ImageCache,
    force: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<GuestImage, PullError> {
    if !force {
        if let Some(image) = cache.default_image() {
            progress(&format!(
                "keel: guest image already present in {} (kernel {}); use --force to fetch it again",
                cache.default_dir().display(),
                image.kernel_version
            ));
            return Ok(image);
        }
        if let Some(image) = refresh(cache, progress)? {
            return Ok(image);
        }
    }
    let tmp = temp_dir(cache)?;
    // Fail before downloading 100 MB if the unpacker or e2fsprogs is missing.
    check_tool("dpkg-deb")?;
    let e2fs = rootfs::Tools::find()?;
    let out = tmp.0.join("out");
    let debs = tmp.0.join("debs");
    let root = tmp.0.join("root");
    for d in [&debs, &root] {
        fs::create_dir_all(d).map_err(|e| PullError::io(format!("creating {}", d.display()), e))?;
    }

    let uri = apt::host_archive_uri().unwrap_or_else(|| apt::FALLBACK_URI.to_string());
    let apt = Apt::prepare(cache.root(), &uri)?;
    progress(&format!(
        "keel: [1/{STEPS}] updating package lists from {uri} ({} main, riscv64)...",
        apt::SUITE
    ));
    apt.update()?;

    let meta = apt.show(KERNEL_META)?;
    let kernel_pkg = apt::field(&meta, "Depends")
        .and_then(apt::kernel_package_from_depends)
        .ok_or_else(|| {
            PullError::BadPackage(format!(
                "{KERNEL_META} depends on no linux-image-<version> package"
            ))
        })?;
    let kernel_version = kernel_pkg["linux-image-".len()..].to_string();
    let kernel_fields = apt.show(&kernel_pkg)?;
    let busybox_fields = apt.show(BUSYBOX)?;
    let size = |f: &[(String, String)]| {
        apt::field(f, "Size")
            .and_then(|s| s.parse().ok())
            .map(|b| format!(" ({})", mb(b)))
            .unwrap_or_default()
    };

    progress(&format!("keel: [2/{STEPS}] downloading {kernel_pkg}{}...", size(&kernel_fields)));
    let kernel_deb = apt.download(&kernel_pkg, &debs)?;
    progress(&format!("keel: [3/{STEPS}] downloading {BUSYBOX}{}...", size(&busybox_fields)));
    let busybox_deb = apt.download(BUSYBOX, &debs)?;

    progress(&format!("keel: [4/{STEPS}] unpacking the packages..."));
    extract(&kernel_deb, &root)?;
    extract(&busybox_deb, &root)?;
    // The .debs are no longer needed; free the space before building.
    let _ = fs::remove_dir_all(&debs);

    let vmlinux_src = root.join("boot").join(format!("vmlinux-{kernel_version}"));
    check_kernel(&vmlinux_src)?;
    let vmlinux = out.join(KERNEL_FILE);
    fs::rename(&vmlinux_src, &vmlinux)
        .map_err(|e| PullError::io(format!("moving {}", vmlinux_src.display()), e))?;

    progress(&format!("keel: [5/{STEPS}] building the initramfs..."));
    let initrd = initramfs::build(&root, &kernel_version).map_err(PullError::BadPackage)?;
    let initrd_path = out.join(INITRD_FILE);
    fs::write(&initrd_path, &initrd.bytes)
        .map_err(|e| PullError::io(format!("writing {}", initrd_path.display()), e))?;

    progress(&format!(
        "keel: [6/{STEPS}] building the root filesystem image ({} MiB, sparse)...",
        rootfs::ROOTFS_SIZE >> 20
    ));
    build_rootfs(&e2fs, &initrd.entries, &tmp.0, &out)?;

    let vmlinux_size = file_size(&vmlinux)?;
    let mut manifest = Manifest::default();
    manifest.set("kernel_version", &kernel_version);
    manifest.set("kernel_package", &kernel_pkg);
    let version = |f: &[(String, String)]| apt::field(f, "Version").unwrap_or("?").to_string();
    manifest.set("kernel_package_version", version(&kernel_fields));
    manifest.set("busybox_package_version", version(&busybox_fields));
    manifest.set("archive", format!("{uri} {}", apt::SUITE));
    manifest.set("vmlinux_size", vmlinux_size);
    manifest.set("initrd_size", initrd.bytes.len());
    set_rootfs(&mut manifest);
    let names: Vec<&str> = initrd.modules.modules.iter().map(|m| m.name.as_str()).collect();
    manifest.set("modules", names.join(","));
    manifest.set("applet_links", initrd.applet_links);
    if !initrd.modules.unresolved_softdeps.is_empty() {
        manifest.set("unresolved_softdeps", initrd.modules.unresolved_softdeps.join(","));
    }
    // Written last: its presence is what marks the image complete.
    let manifest_path = out.join(MANIFEST);
    fs::write(&manifest_path, manifest.render())
        .map_err(|e| PullError::io(format!("writing {}", manifest_path.display()), e))?;

    install(&out, &cache.default_dir())?;
    let image = cache.default_image().ok_or_else(|| {
        PullError::BadPackage("the image just built does not check out".to_string())
    })?;
    progress(&format!(
        "keel: guest image ready in {} (kernel {kernel_version}, vmlinux {}, initrd.img {}, {} modules, \
         rootfs.ext4 {} MiB template)",
        cache.default_dir().display(),
        mb(vmlinux_size),
        mb(initrd.bytes.len() as u64),
        names.len(),
        rootfs::ROOTFS_SIZE >> 20
    ));
    Ok(image)
}

/// A fresh `.default.tmp-PID/out` next to the image's final place (same
/// filesystem), so the last step is a rename and an interrupted pull leaves
/// only a `.default.tmp-*`, which the next pull removes.
fn temp_dir(cache: &ImageCache) -> Result<TempDir, PullError> {
    let images = cache.images_dir();
    let not_writable =
        |error| PullError::CacheNotWritable { path: cache.root().to_path_buf(), error };
    fs::create_dir_all(&images).map_err(not_writable)?;
    remove_stale_temp_dirs(&images);
    let tmp = TempDir(images.join(format!(".default.tmp-{}", std::process::id())));
    let _ = fs::remove_dir_all(&tmp.0);
    fs::create_dir_all(tmp.0.join("out")).map_err(not_writable)?;
    Ok(tmp)
}

/// The root filesystem image from the initramfs's entries, into `out`.
fn build_rootfs(
    tools: &rootfs::Tools,
    initramfs: &[Entry],
    tmp: &Path,
    out: &Path,
) -> Result<(), PullError> {
    let staging = tmp.join("rootfs");
    let built = rootfs::build(
        tools,
        &rootfs::entries(initramfs),
        &staging,
        &out.join(ROOTFS_FILE),
        rootfs::ROOTFS_SIZE,
    );
    let _ = fs::remove_dir_all(&staging);
    built
}

fn set_rootfs(manifest: &mut Manifest) {
    manifest.set("rootfs_size", rootfs::ROOTFS_SIZE);
    manifest.set("rootfs_label", rootfs::LABEL);
}

/// An intact image that is not current: built with another /init (an older
/// keel), or without a root filesystem image (older still, or deleted).
/// Swaps the current /init into its initrd and builds the root filesystem
/// from the initrd's files instead of downloading everything again. `None`
/// when there is no such image or its initrd doesn't parse.
fn refresh(
    cache: &ImageCache,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<GuestImage>, PullError> {
    let Some((old, mut manifest)) = cache.intact_image() else {
        return Ok(None);
    };
    let read =
        |p: &Path| fs::read(p).map_err(|e| PullError::io(format!("reading {}", p.display()), e));
    let Ok(mut entries) = cpio::parse_archive(&read(&old.initrd)?) else {
        return Ok(None);
    };
    let Some(init) = entries.iter_mut().find(|e| e.path == "init") else {
        return Ok(None);
    };
    let e2fs = rootfs::Tools::find()?;
    if manifest.get("init") == Some(init_hash().as_str()) {
        progress("keel: building rootfs.ext4 for the cached guest image (nothing to download)...");
    } else {
        progress("keel: updating /init in the cached guest image (nothing to download)...");
    }
    init.data = INIT_SCRIPT.as_bytes().to_vec();
    let mut initrd = Vec::new();
    cpio::write_archive(&mut initrd, &entries)
        .map_err(|e| PullError::io("building the initrd", e))?;

    let tmp = temp_dir(cache)?;
    let out = tmp.0.join("out");
    let kernel = out.join(KERNEL_FILE);
    // A hard link where the filesystem allows: the kernel is 31 MB.
    if fs::hard_link(&old.kernel, &kernel).is_err() {
        fs::copy(&old.kernel, &kernel)
            .map_err(|e| PullError::io(format!("copying {}", old.kernel.display()), e))?;
    }
    let write = |name: &str, data: &[u8]| {
        let p = out.join(name);
        fs::write(&p, data).map_err(|e| PullError::io(format!("writing {}", p.display()), e))
    };
    write(INITRD_FILE, &initrd)?;
    manifest.set("initrd_size", initrd.len());
    build_rootfs(&e2fs, &entries, &tmp.0, &out)?;
    set_rootfs(&mut manifest);
    write(MANIFEST, manifest.render().as_bytes())?;
    install(&out, &cache.default_dir())?;
    Ok(cache.default_image())
}

fn check_tool(tool: &'static str) -> Result<(), PullError> {
    match Command::new(tool).arg("--version").output() {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(PullError::ToolMissing { tool }),
        Err(e) => Err(PullError::io(format!("running {tool}"), e)),
    }
}

fn extract(deb: &Path, dest: &Path) -> Result<(), PullError> {
    let out =
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest).output().map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::NotFound => PullError::ToolMissing { tool: "dpkg-deb" },
                _ => PullError::io("running dpkg-deb", e),
            }
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr.lines().last().unwrap_or("").to_string();
        return Err(PullError::Extract {
            deb: deb.to_path_buf(),
            message: format!("{message} ({})", out.status),
        });
    }
    Ok(())
}

/// The kernel must be a RISC-V `Image` (boot.rst: magic "RISCV\0\0\0" at
/// 0x30 and "RSC\x05" at 0x38); catch a changed package layout here rather
/// than in the guest.
fn check_kernel(path: &Path) -> Result<(), PullError> {
    let mut header = [0u8; 64];
    let read =
        fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
    if read.is_err() || &header[0x30..0x38] != b"RISCV\0\0\0" || &header[0x38..0x3c] != b"RSC\x05" {
        return Err(PullError::BadPackage(format!(
            "{} is missing or not a RISC-V Image",
            path.display()
        )));
    }
    Ok(())
}

fn file_size(path: &Path) -> Result<u64, PullError> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| PullError::io(format!("reading {}", path.display()), e))
}

/// Swaps the finished directory into place: the old image (if any) is first
/// renamed aside, so `dest` is either absent or complete at every moment.
fn install(built: &Path, dest: &Path) -> Result<(), PullError> {
    let old = dest.with_file_name(format!(".default.old-{}", std::process::id()));
    if dest.exists() {
        fs::rename(dest, &old)
            .map_err(|e| PullError::io(format!("moving {} aside", dest.display()), e))?;
    }
    fs::rename(built, dest)
        .map_err(|e| PullError::io(format!("renaming into {}", dest.display()), e))?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

/// Removes `.default.tmp-PID` / `.default.old-PID` left by pulls that were
/// killed (their process is gone); a concurrent pull's directory stays.
fn remove_stale_temp_dirs(images: &Path) {
    let Ok(rd) = fs::read_dir(images) else {
        return;
    };
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix(".default.tmp-").or_else(|| name.strip_prefix(".default.old-"));
        if let Some(pid) = pid {
            if !process_alive(pid) {
                let _ = fs::remove_dir_all(ent.path());
            }
        }
    }
}

/// Whether `pid` is a running process. A killed pull may linger as a zombie
/// until its parent reaps it; that counts as dead.
fn process_alive(pid: &str) -> bool {
    let Ok(stat) = fs::read_to_string(Path::new("/proc").join(pid).join("stat")) else {
        return false;
    };
    // "PID (comm) STATE ...": comm may hold spaces and parentheses.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    state != Some("Z") && state != Some("X")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_replaces_atomically() {
        let dir = crate::tests::scratch_dir("install");
        let (built, dest) = (dir.join("built"), dir.join("default"));
        fs::create_dir_all(&built).unwrap();
        fs::write(built.join("f"), "new").unwrap();
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("f"), "old").unwrap();
        install(&built, &dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("f")).unwrap(), "new");
        assert!(!built.exists());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "old copy left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temp_dirs_go_live_ones_stay() {
        let dir = crate::tests::scratch_dir("stale");
        let live = dir.join(format!(".default.tmp-{}", std::process::id()));
        let dead = dir.join(".default.tmp-999999999");
        let other = dir.join("default");
        for d in [&live, &dead, &other] {
            fs::create_dir_all(d).unwrap();
        }
        remove_stale_temp_dirs(&dir);
        assert!(live.exists() && other.exists() && !dead.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(mb(112_012_420), "112 MB");
        assert_eq!(mb(941_532), "0.9 MB");
    }
}
