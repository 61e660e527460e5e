//! `keel image pull`, finding the default guest image, and per-VM root disks from it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use keel_guest::{GuestImage, ImageCache};

fn cache(dir: Option<PathBuf>) -> Result<ImageCache> {
    Ok(match dir {
        Some(d) => ImageCache::new(d),
        None => ImageCache::from_env()?,
    })
}

/// Fetches the default guest image, showing progress on stderr.
pub fn pull(dir: Option<PathBuf>, force: bool) -> Result<GuestImage> {
    let cache = cache(dir)?;
    let image = keel_guest::pull(&cache, force, &mut |line| eprintln!("{line}"))?;
    Ok(image)
}

/// The default guest image, pulled first if it isn't there yet.
pub fn default_image() -> Result<GuestImage> {
    let cache = cache(None)?;
    if let Some(image) = cache.default_image() {
        return Ok(image);
    }
    eprintln!("keel: the default guest image is not in {} yet; pulling it", cache.root().display());
    Ok(keel_guest::pull(&cache, false, &mut |line| eprintln!("{line}"))?)
}

/// How `keel image rootfs` makes a VM's own root disk from the template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RootfsFormat {
    /// A sparse copy of the template: independent of it from then on.
    Raw,
    /// A qcow2 overlay backed by the template: only the VM's changes take space, and many
    /// VMs share the template. Rebuilding the image (`pull --force`) invalidates overlays.
    Qcow2,
}

/// Makes `dest`, a root disk for one VM, from the default image's rootfs.ext4 template.
pub fn rootfs(dest: &Path, format: RootfsFormat) -> Result<()> {
    let image = default_image()?;
    if dest.exists() {
        bail!("{} already exists; choose another path or remove it first", dest.display());
    }
    match format {
        RootfsFormat::Raw => {
            keel_block::copy_sparse(&image.rootfs, dest, |_, _| {}).with_context(|| {
                format!("cannot copy {} to {}", image.rootfs.display(), dest.display())
            })?
        }
        RootfsFormat::Qcow2 => {
            keel_block::create_qcow2_overlay(dest, &image.rootfs, keel_block::ImageFormat::Raw)?
        }
    }
    eprintln!(
        "keel: {} is ready: boot it with [[disk]] path = \"{}\"{} and cmdline \"console=ttyS0 \
         root=/dev/vda\"",
        dest.display(),
        dest.display(),
        if format == RootfsFormat::Qcow2 { ", format = \"qcow2\"" } else { "" }
    );
    Ok(())
}
