//! keel-guest: the guest side keel ships.
//!
//! - [`pull`] fetches Debian 13 "trixie" riscv64's kernel and busybox with a
//!   private apt configuration inside keel's cache directory and builds the
//!   default guest image there:
//!   `images/default/{vmlinux,initrd.img,rootfs.ext4,manifest}`.
//! - The initramfs is an uncompressed `newc` cpio archive holding busybox and
//!   its applet links, the virtio and ext4 modules (decompressed, unused local
//!   symbols dropped) and `/init` ([`INIT_SCRIPT`]).
//! - `rootfs.ext4` holds the same files as an ext4 filesystem (64 MiB,
//!   sparse) with /init also as `/sbin/init`: booted with `root=/dev/vda`
//!   (that image as the VM's first virtio disk), the initramfs's /init mounts
//!   it and switch_roots into it, and files written in the guest persist. It
//!   is a template: give each VM a copy or an overlay, never the file itself.
//! - [`command_param`] encodes an argv for `/init`'s command mode: /init runs
//!   it with the console raw, reports its exit status through the SiFive test
//!   finisher at 0x10_0000 and powers off.

mod apt;
mod busybox;
mod cpio;
mod elf;
mod initramfs;
mod modules;
mod pull;
mod rootfs;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use pull::pull;

/// The guest's `/init` script (busybox `sh`), from `guest/init`.
pub const INIT_SCRIPT: &str = include_str!("../init");

/// Version of the image layout and manifest; bump when an older cached image
/// must be rebuilt.
const IMAGE_FORMAT: &str = "1";

/// Everything that can go wrong while pulling, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("no cache directory: set KEEL_CACHE_DIR, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    #[error(
        "cache directory {} is not writable ({error}); set KEEL_CACHE_DIR to a writable directory",
        path.display()
    )]
    CacheNotWritable { path: PathBuf, error: io::Error },
    #[error(
        "`{tool}` is not installed: keel fetches its default guest with Debian's apt tools \
         (apt-get, apt-cache, dpkg-deb); install them, or boot your own guest with --kernel and --initrd"
    )]
    ToolMissing { tool: &'static str },
    #[error("Debian's archive keyring {} is missing: install the debian-archive-keyring package", path.display())]
    Keyring { path: PathBuf },
    #[error(
        "cannot reach the Debian archive at {uri} (apt-get update failed); check the network \
         or proxy and retry, or boot your own guest with --kernel and --initrd. apt said:\n{apt_error}"
    )]
    ArchiveUnreachable { uri: String, apt_error: String },
    #[error("package {package} is not in {uri} (suite trixie, component main, riscv64); that mirror may not carry riscv64")]
    PackageMissing { package: String, uri: String },
    #[error("downloading {package} failed. apt said:\n{apt_error}")]
    Download { package: String, apt_error: String },
    #[error("dpkg-deb could not unpack {}: {message}", deb.display())]
    Extract { deb: PathBuf, message: String },
    #[error("unexpected package contents: {0}")]
    BadPackage(String),
    #[error(
        "`{tool}` is not installed: keel builds the guest's root filesystem image with \
         e2fsprogs (mkfs.ext4, debugfs, e2fsck); install the e2fsprogs package"
    )]
    E2fsprogsMissing { tool: &'static str },
    #[error("building the root filesystem image: {0}")]
    Rootfs(String),
    #[error("{context}: {error}")]
    Io { context: String, error: io::Error },
}

impl PullError {
    pub(crate) fn io(context: impl Into<String>, error: io::Error) -> Self {
        PullError::Io { context: context.into(), error }
    }
}

/// keel's per-user cache directory (images live in `images/`, apt's private
/// state in `apt/`).
#[derive(Debug, Clone)]
pub struct ImageCache {
    root: PathBuf,
}

/// A complete guest image on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The root filesystem *template* (ext4, [`ROOTFS_SIZE`] bytes, sparse,
    /// label `keel-root`): attach a per-VM copy (or a copy-on-write overlay
    /// on it) as the VM's first virtio disk and boot with `root=/dev/vda`.
    /// Never attach this file itself: the VM would write to every later
    /// VM's starting point, and a VM killed mid-write would corrupt it.
    pub rootfs: PathBuf,
    pub kernel_version: String,
}

/// The apparent size of [`GuestImage::rootfs`] (64 MiB; sparse, about 5 MB
/// of it in use).
pub const ROOTFS_SIZE: u64 = rootfs::ROOTFS_SIZE;

impl ImageCache {
    pub fn new(root: PathBuf) -> Self {
        ImageCache { root }
    }

    /// `$KEEL_CACHE_DIR`, else `$XDG_CACHE_HOME/keel`, else `$HOME/.cache/keel`.
    pub fn from_env() -> Result<Self, PullError> {
        Self::from_lookup(|k| std::env::var_os(k))
    }

    fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Result<Self, PullError> {
        let var = |k: &str| get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(dir) = var("KEEL_CACHE_DIR") {
            return Ok(Self::new(dir));
        }
        // The XDG spec says to ignore a relative XDG_CACHE_HOME.
        if let Some(dir) = var("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
            return Ok(Self::new(dir.join("keel")));
        }
        var("HOME").map(|h| Self::new(h.join(".cache").join("keel"))).ok_or(PullError::NoCacheDir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    pub(crate) fn default_dir(&self) -> PathBuf {
        self.images_dir().join("default")
    }

    /// The default image, only when complete: its manifest (written last)
    /// is there, was written for this keel's `/init`, and the kernel, the
    /// initrd and the root filesystem have the sizes it records.
    pub fn default_image(&self) -> Option<GuestImage> {
        let (image, manifest) = self.intact_image()?;
        let rootfs_size = fs::metadata(&image.rootfs).ok()?.len().to_string();
        (manifest.get("init")? == init_hash() && manifest.get("rootfs_size")? == rootfs_size)
            .then_some(image)
    }

    /// The default image when its kernel and initrd match its manifest,
    /// whatever `/init` it was built with and whether or not its root
    /// filesystem is there (an older keel built none): `pull` swaps in the
    /// current /init and builds the root filesystem from the initrd's files
    /// without downloading.
    pub(crate) fn intact_image(&self) -> Option<(GuestImage, Manifest)> {
        let dir = self.default_dir();
        let text = fs::read_to_string(dir.join(MANIFEST)).ok()?;
        let m = Manifest::parse(&text);
        if m.get("format")? != IMAGE_FORMAT {
            return None;
        }
        let image = GuestImage {
            kernel: dir.join(KERNEL_FILE),
            initrd: dir.join(INITRD_FILE),
            rootfs: dir.join(ROOTFS_FILE),
            kernel_version: m.get("kernel_version")?.to_string(),
        };
        let size = |p: &Path| fs::metadata(p).ok().map(|md| md.len().to_string());
        (size(&image.kernel)? == m.get("vmlinux_size")?
            && size(&image.initrd)? == m.get("initrd_size")?)
        .then_some((image, m))
    }
}

pub(crate) const KERNEL_FILE: &str = "vmlinux";
pub(crate) const INITRD_FILE: &str = "initrd.img";
pub(crate) const ROOTFS_FILE: &str = "rootfs.ext4";
pub(crate) const MANIFEST: &str = "manifest";

/// The image manifest: `key=value` lines, `#` comments.
#[derive(Debug, Default)]
pub(crate) struct Manifest(Vec<(String, String)>);

impl Manifest {
    /// Sets `key`, replacing an earlier value.
    pub(crate) fn set(&mut self, key: &str, value: impl ToString) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_string(), value.to_string()));
    }
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    fn parse(text: &str) -> Self {
        Manifest(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
    pub(crate) fn render(&self) -> String {
        let mut s = String::from(
            "# keel guest image, written last by `keel image pull`\n\
             # rootfs.ext4 is a template: boot a copy of it (or an overlay on it) per VM\n",
        );
        s.push_str(&format!("format={IMAGE_FORMAT}\ninit={}\n", init_hash()));
        for (k, v) in self.0.iter().filter(|(k, _)| k != "format" && k != "init") {
            s.push_str(&format!("{k}={v}\n"));
        }
        s
    }
}

/// FNV-1a of the embedded `/init`: a cached image built with another
/// `/init` is stale, and the next pull puts the current one in.
pub(crate) fn init_hash() -> String {
    let h = INIT_SCRIPT
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("{h:016x}")
}

/// The kernel command-line parameter that makes /init run `args` (e.g.
/// `keel.cmd=dW5hbWU=,LW0=`): each argument base64-encoded (standard
/// alphabet, padded), joined by commas, so the whole argv is one parameter
/// without spaces. `/init` splits at commas and decodes each piece; an empty
/// argument is an empty piece. An empty `args` gives `keel.cmd=`, which /init
/// reads as one empty argument (a command that is not found: status 127).
/// Mind the kernel's command-line limit (1024 bytes on riscv, all parameters
/// together): a parameter cut short there makes /init exit with status 125
/// (when the cut leaves invalid base64; callers should check the length).
/// 125 also means that a `root=` device could not be mounted (/init says
/// why on the console).
pub fn command_param(args: &[String]) -> String {
    let pieces: Vec<String> = args.iter().map(|a| base64(a.as_bytes())).collect();
    format!("keel.cmd={}", pieces.join(","))
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
