//! Assembles the guest's initramfs from the unpacked Debian packages.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::busybox;
use crate::cpio::{self, Entry};
use crate::modules::{self, ModuleSet};
use crate::INIT_SCRIPT;

/// Where busybox-static puts its binary (trixie: /usr/bin; older: /bin).
const BUSYBOX_PATHS: &[&str] = &["usr/bin/busybox", "bin/busybox"];

/// Empty directories the guest needs before /init has mounted anything:
/// mount points, and the applet directories `busybox --install -s` fills.
const DIRS: &[&str] = &[
    "bin", "dev", "etc", "lib", "mnt", "proc", "root", "run", "sbin", "sys", "tmp", "usr",
    "usr/bin", "usr/sbin",
];

/// Filesystem types busybox `mount` tries when given no `-t` (it reads this
/// and /proc/filesystems): ext4 is a module and absent from the latter until
/// loaded.
const ETC_FILESYSTEMS: &str = "ext4\n";

/// What /init mounts with one `mount -a` (one process instead of five).
const ETC_FSTAB: &str = "\
devtmpfs /dev devtmpfs defaults 0 0
proc /proc proc defaults 0 0
sysfs /sys sysfs defaults 0 0
tmpfs /tmp tmpfs mode=1777 0 0
tmpfs /run tmpfs mode=755 0 0
";

/// The built archive and what went into it.
pub struct Initramfs {
    pub bytes: Vec<u8>,
    /// What the archive holds, sorted by path (the root filesystem image is
    /// built from the same entries).
    pub entries: Vec<Entry>,
    pub modules: ModuleSet,
    /// Busybox applet symlinks in the archive (0: /init installs them).
    pub applet_links: usize,
}

/// Builds the archive from `root`, the directory the kernel and busybox
/// packages were unpacked into.
pub fn build(root: &Path, kernel_version: &str) -> Result<Initramfs, String> {
    let busybox = BUSYBOX_PATHS
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file())
        .ok_or("busybox-static contains no busybox binary")?;
    let busybox = fs::read(&busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
    // Applet symlinks made here save /init a `busybox --install -s`.
    let links = busybox::applet_links(&busybox).unwrap_or_default();

    let moddir = ["usr/lib/modules", "lib/modules"]
        .iter()
        .map(|d| root.join(d).join(kernel_version))
        .find(|d| d.is_dir())
        .ok_or_else(|| format!("the kernel package has no lib/modules/{kernel_version}"))?;
    let set = modules::collect(&moddir, modules::WANTED)?;

    let mut entries = vec![
        Entry::file("init", 0o755, INIT_SCRIPT.as_bytes().to_vec()),
        Entry::file("bin/busybox", 0o755, busybox),
        // The kernel opens /dev/console for init's stdio before /init can
        // mount devtmpfs, so the node must be in the archive.
        Entry::char_dev("dev/console", 0o600, 5, 1),
        Entry::char_dev("dev/null", 0o666, 1, 3),
        Entry::file("etc/filesystems", 0o644, ETC_FILESYSTEMS.into()),
        Entry::file("etc/fstab", 0o644, ETC_FSTAB.into()),
    ];
    let taken: BTreeSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    for (path, target) in &links {
        if !taken.contains(path) {
            entries.push(Entry::symlink(path, target));
        }
    }
    let modbase = format!("lib/modules/{kernel_version}");
    for m in &set.modules {
        entries.push(Entry::file(&format!("{modbase}/{}", m.rel_path), 0o644, m.data.clone()));
    }
    entries.push(Entry::file(
        &format!("{modbase}/modules.dep"),
        0o644,
        set.modules_dep.clone().into_bytes(),
    ));
    entries.push(Entry::file(
        &format!("{modbase}/modules.alias"),
        0o644,
        set.modules_alias.clone().into_bytes(),
    ));

    // Every parent directory of every entry, plus the fixed ones.
    let mut dirs: BTreeSet<String> = DIRS.iter().map(|d| d.to_string()).collect();
    for e in &entries {
        let mut p = e.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            dirs.insert(parent.to_string());
            p = parent;
        }
    }
    entries.extend(dirs.iter().map(|d| {
        let perm = if d == "root" { 0o700 } else { 0o755 };
        Entry::dir(d, perm)
    }));
    // Byte order of paths puts each directory before what it contains (a
    // parent is a prefix of its children) and makes the archive reproducible.
    entries.sort_by(|a, b| a.path.cmp(&b.path));

    let mut bytes = Vec::new();
    cpio::write_archive(&mut bytes, &entries).map_err(|e| e.to_string())?;
    Ok(Initramfs { bytes, entries, modules: set, applet_links: links.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_from_fake_packages() {
        let root = crate::tests::scratch_dir("initramfs");
        let kv = "6.12.0-test";
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/busybox"), b"\x7fELF fake busybox").unwrap();
        let moddir = root.join("usr/lib/modules").join(kv);
        for (rel, info) in [
            ("kernel/drivers/virtio/virtio_mmio.ko", "depends=\0"),
            ("kernel/drivers/block/virtio_blk.ko", "depends=\0"),
            ("kernel/drivers/net/virtio_net.ko", "depends=net_failover\0"),
            ("kernel/drivers/net/net_failover.ko", "depends=failover\0"),
            ("kernel/net/core/failover.ko", "depends=\0"),
            ("kernel/drivers/virtio/virtio_balloon.ko", "depends=\0"),
            ("kernel/drivers/char/hw_random/virtio-rng.ko", "depends=\0"),
            ("kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko", "depends=vsock\0"),
            ("kernel/net/vmw_vsock/vsock.ko", "depends=\0"),
            ("kernel/fs/ext4/ext4.ko", "depends=\0softdep=pre: crypto-crc32c\0"),
            ("kernel/crypto/crc32c_generic.ko", "depends=\0alias=crypto-crc32c\0"),
        ] {
            let p = moddir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, crate::elf::tests_support::fake_module(info)).unwrap();
        }
        let built = build(&root, kv).unwrap();
        let entries = cpio::parse_archive(&built.bytes).unwrap();
        let find =
            |p: &str| entries.iter().find(|e| e.path == p).unwrap_or_else(|| panic!("{p} missing"));
        assert_eq!(find("init").mode, cpio::S_IFREG | 0o755);
        assert_eq!(find("init").data, INIT_SCRIPT.as_bytes());
        assert_eq!(find("bin/busybox").mode, cpio::S_IFREG | 0o755);
        assert_eq!(find("dev/console").mode, cpio::S_IFCHR | 0o600);
        assert_eq!(find("dev/console").rdev, (5, 1));
        assert_eq!(find("dev/null").rdev, (1, 3));
        for d in ["dev", "proc", "sys", "tmp", "etc", "root", "run", "sbin", "usr/bin"] {
            assert_eq!(find(d).mode & 0o170000, cpio::S_IFDIR, "{d}");
        }
        let dep =
            String::from_utf8(find(&format!("lib/modules/{kv}/modules.dep")).data.clone()).unwrap();
        assert!(dep.contains(
            "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n"
        ));
        assert!(dep.contains("kernel/fs/ext4/ext4.ko: kernel/crypto/crc32c_generic.ko\n"));
        assert_eq!(built.modules.modules.len(), 11);
        // Sorted, every parent before its children.
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        for p in &paths {
            if let Some((parent, _)) = p.rsplit_once('/') {
                assert!(paths.contains(&parent), "{parent} missing for {p}");
            }
        }
        // Same input, same bytes.
        assert_eq!(build(&root, kv).unwrap().bytes, built.bytes);
        fs::remove_dir_all(&root).unwrap();
    }
}
