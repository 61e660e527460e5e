//! `memory.bin`: guest RAM as a flat image, byte `i` of the file is byte `i` of RAM.
//!
//! A full image has every non-zero page at its natural offset and holes for zero pages, so a
//! mostly-idle guest's image costs the disk what the guest actually uses, and restore can map
//! it `MAP_PRIVATE` at offset 0 (page-aligned by construction): nothing is read up front and
//! every clone of one snapshot shares the page cache's copy of each page until it writes it.
//!
//! A diff image has the same size and layout but holds only the pages dirtied since the
//! previous snapshot; the rest are holes. Holes cannot tell "not in the diff" from "dirtied to
//! zero", so the list of pages the diff holds is kept separately ([`DirtyPages`], stored in
//! `state.bin` by the directory writer) and applying a diff copies exactly those pages.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use memmap2::{MmapMut, MmapOptions};
use serde::{Deserialize, Serialize};

use crate::error::{io_err, Error, Result};

/// The guest page size the images are laid out in (RISC-V's base page).
pub const PAGE_SIZE: u64 = 4096;

/// The most one `pwrite` carries: large enough to stream at disk speed, small enough that the
/// progress callback runs often.
const MAX_WRITE: u64 = 8 << 20;
/// How much RAM is scanned between progress reports.
const PROGRESS_STEP: u64 = 16 << 20;

/// A run of consecutive guest pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRun {
    pub first: u64,
    pub count: u64,
}

/// A sorted, de-duplicated set of guest page numbers, stored as runs (dirty pages cluster, so
/// runs are much smaller than a list or a bitmap of a large, mostly clean RAM).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirtyPages {
    runs: Vec<PageRun>,
}

impl DirtyPages {
    /// The set of `pages`, in any order and with repeats, checked against a RAM of `total`
    /// pages.
    pub fn new(pages: impl IntoIterator<Item = u64>, total: u64) -> Result<DirtyPages> {
        let mut pages: Vec<u64> = pages.into_iter().collect();
        pages.sort_unstable();
        pages.dedup();
        if let Some(&last) = pages.last() {
            if last >= total {
                return Err(Error::PageOutOfRange { page: last, pages: total });
            }
        }
        let mut runs: Vec<PageRun> = Vec::new();
        for page in pages {
            match runs.last_mut() {
                Some(run) if run.first + run.count == page => run.count += 1,
                _ => runs.push(PageRun { first: page, count: 1 }),
            }
        }
        Ok(DirtyPages { runs })
    }

    /// The runs, in ascending order, none adjacent or overlapping.
    pub fn runs(&self) -> &[PageRun] {
        &self.runs
    }

    /// Every page number, ascending.
    pub fn pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs.iter().flat_map(|r| r.first..r.first + r.count)
    }

    /// How many pages.
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|r| r.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Checks the set against a RAM of `total` pages (a set read from a file is untrusted).
    pub(crate) fn check(&self, total: u64) -> Result<()> {
        let mut next = 0;
        for run in &self.runs {
            let end = run.first.checked_add(run.count).filter(|&e| e <= total && run.count > 0);
            if run.first < next || end.is_none() {
                return Err(Error::PageOutOfRange { page: run.first, pages: total });
            }
            next = run.first + run.count;
        }
        Ok(())
    }
}

/// What a memory image holds, as recorded in `state.bin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemoryKind {
    /// All of RAM (zero pages as holes).
    Full,
    /// Only these pages; apply it over the previous snapshot's RAM.
    Diff(DirtyPages),
}

impl MemoryKind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            MemoryKind::Full => "full",
            MemoryKind::Diff(_) => "diff",
        }
    }
}

/// A memory image's description: its length (= guest RAM's), and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryInfo {
    pub len: u64,
    pub page_size: u64,
    /// Bytes of page data actually written (the rest are holes).
    pub stored: u64,
    pub kind: MemoryKind,
}

fn check_aligned(len: u64) -> Result<()> {
    if len % PAGE_SIZE != 0 {
        return Err(Error::Unaligned { len, page_size: PAGE_SIZE });
    }
    Ok(())
}

/// Whether a page is all zeroes. The OR-reduction over fixed blocks vectorises; checking
/// between blocks stops early on the (common) non-zero page.
fn is_zero(page: &[u8]) -> bool {
    page.chunks(256).all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Creates `path` as an all-hole file of `len` bytes (truncating anything there before).
fn create_sparse(path: &Path, len: u64) -> Result<File> {
    let file = File::create(path).map_err(io_err(path, "create"))?;
    file.set_len(len).map_err(io_err(path, "set length of"))?;
    Ok(file)
}

/// Writes pages `first..first + count` of `ram` at their own offset, skipping zero pages
/// (which stay holes) and coalescing the rest into large writes.
fn write_pages(file: &File, path: &Path, ram: &[u8], first: u64, count: u64) -> Result<u64> {
    let mut stored = 0;
    let mut run_start: Option<u64> = None;
    let end = first + count;
    for page in first..=end {
        let data = (page < end).then(|| &ram[(page * PAGE_SIZE) as usize..][..PAGE_SIZE as usize]);
        let keep = data.is_some_and(|d| !is_zero(d));
        if let Some(start) = run_start {
            if !keep || (page - start) * PAGE_SIZE >= MAX_WRITE {
                let (off, bytes) = (start * PAGE_SIZE, (page - start) * PAGE_SIZE);
                file.write_all_at(&ram[off as usize..(off + bytes) as usize], off)
                    .map_err(io_err(path, "write"))?;
                stored += bytes;
                run_start = None;
            }
        }
        if keep && run_start.is_none() {
            run_start = Some(page);
        }
    }
    Ok(stored)
}

/// Writes all of `ram` to `path` as a sparse image and fsyncs it. `progress(done, total)`
/// reports bytes of RAM processed. The file is written in place: the directory writer gives
/// it a `.partial` name and renames it when the whole snapshot is done.
pub fn write_memory(
    path: &Path,
    ram: &[u8],
    mut progress: impl FnMut(u64, u64),
) -> Result<MemoryInfo> {
    let len = ram.len() as u64;
    check_aligned(len)?;
    let file = create_sparse(path, len)?;
    let pages = len / PAGE_SIZE;
    let step = PROGRESS_STEP / PAGE_SIZE;
    let mut stored = 0;
    let mut page = 0;
    while page < pages {
        let count = step.min(pages - page);
        stored += write_pages(&file, path, ram, page, count)?;
        page += count;
        progress(page * PAGE_SIZE, len);
    }
    file.sync_all().map_err(io_err(path, "fsync"))?;
    Ok(MemoryInfo { len, page_size: PAGE_SIZE, stored, kind: MemoryKind::Full })
}

/// Writes the pages `dirty_pages` of `ram` to `path` (same size and layout as a full image,
/// everything else a hole) and fsyncs it. `progress(done, total)` counts dirty bytes.
pub fn write_memory_diff(
    path: &Path,
    ram: &[u8],
    dirty_pages: impl IntoIterator<Item = u64>,
    mut progress: impl FnMut(u64, u64),
) -> Result<MemoryInfo> {
    let len = ram.len() as u64;
    check_aligned(len)?;
    let dirty = DirtyPages::new(dirty_pages, len / PAGE_SIZE)?;
    let file = create_sparse(path, len)?;
    let total = dirty.len() * PAGE_SIZE;
    let mut done = 0;
    let mut stored = 0;
    for run in dirty.runs() {
        stored += write_pages(&file, path, ram, run.first, run.count)?;
        done += run.count * PAGE_SIZE;
        progress(done, total);
    }
    file.sync_all().map_err(io_err(path, "fsync"))?;
    Ok(MemoryInfo { len, page_size: PAGE_SIZE, stored, kind: MemoryKind::Diff(dirty) })
}

/// Opens a memory image and checks that it is `len` bytes.
fn open_image(path: &Path, len: u64) -> Result<File> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Missing { path: path.to_owned(), what: "memory image" }
        } else {
            io_err(path, "open")(e)
        }
    })?;
    let actual = file.metadata().map_err(io_err(path, "stat"))?.len();
    if actual < len {
        return Err(Error::Truncated { path: path.to_owned(), expected: len, actual });
    }
    if actual > len {
        return Err(Error::MemorySize { path: path.to_owned(), expected: len, actual });
    }
    Ok(file)
}

/// Copies the pages `pages` of the diff image at `path` into `ram` (the previous snapshot's
/// RAM, typically a [`map_memory_cow`] mapping), leaving every other page as it is.
pub fn apply_memory_diff(path: &Path, pages: &DirtyPages, ram: &mut [u8]) -> Result<()> {
    let len = ram.len() as u64;
    check_aligned(len)?;
    pages.check(len / PAGE_SIZE)?;
    let file = open_image(path, len)?;
    for run in pages.runs() {
        let (off, bytes) = (run.first * PAGE_SIZE, run.count * PAGE_SIZE);
        file.read_exact_at(&mut ram[off as usize..(off + bytes) as usize], off)
            .map_err(io_err(path, "read"))?;
    }
    Ok(())
}

/// Maps the `len`-byte full image at `path` privately: reads come from the file (through the
/// page cache, shared with every other mapping of it), writes go to anonymous copies and
/// never reach the file. Nothing is read until the guest touches it.
pub fn map_memory_cow(path: &Path, len: u64) -> Result<MmapMut> {
    check_aligned(len)?;
    let file = open_image(path, len)?;
    let len_usize = usize::try_from(len).map_err(|_| Error::MemorySize {
        path: path.to_owned(),
        expected: len,
        actual: len,
    })?;
    // SAFETY: the mapping is MAP_PRIVATE, so nothing written through it reaches the file and
    // it aliases no Rust-owned memory. The remaining hazard of file mappings is the file
    // changing underneath: shrinking would SIGBUS, and a write would show through pages not
    // yet copied. Snapshot images are written once under a temporary name and renamed into
    // place, and keel never modifies a finished one, so that only happens if someone else
    // edits a snapshot's files while a VM runs from them.
    let map = unsafe { MmapOptions::new().len(len_usize).map_copy(&file) }
        .map_err(io_err(path, "mmap"))?;
    Ok(map)
}
