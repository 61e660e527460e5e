//! `keel image pull`, finding the default guest image, and per-VM root disks from it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
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
        RootfsFormat::Raw => sparse_copy(&image.rootfs, dest)?,
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

/// Copies `src` to `dest` leaving holes where `src` reads as zeros (the template is a
/// mostly empty 64 MiB filesystem), through a temporary file renamed at the end so an
/// interrupted copy never leaves a disk that looks complete.
fn sparse_copy(src: &Path, dest: &Path) -> Result<()> {
    let mut from = File::open(src).with_context(|| format!("cannot open {}", src.display()))?;
    let tmp = dest.with_file_name(format!(
        ".{}.partial",
        dest.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    ));
    let mut to = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut buf = vec![0u8; 64 << 10];
    let mut len = 0u64;
    let copied = (|| -> std::io::Result<()> {
        loop {
            let n = read_full(&mut from, &mut buf)?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().all(|&b| b == 0) {
                to.seek(SeekFrom::Current(n as i64))?;
            } else {
                to.write_all(&buf[..n])?;
            }
            len += n as u64;
        }
        to.set_len(len)?;
        to.sync_all()
    })();
    if let Err(e) = copied.and_then(|_| std::fs::rename(&tmp, dest)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("cannot copy {} to {}", src.display(), dest.display()));
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
