//! `keel image pull` and finding the default guest image.

use std::path::PathBuf;

use anyhow::Result;
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
