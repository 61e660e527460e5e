//! Host cluster allocation (qcow2 spec: "Host cluster management"): the refcount table, 16-bit
//! refcount blocks, finding free clusters, and growing the table.
//!
//! Crash safety: a cluster's refcount is raised (and made durable) before anything points at it,
//! and lowered only after the pointer to it is gone, so an interrupted update leaves at worst a
//! leaked cluster (refcount 1, unused), never a used cluster with refcount 0.

use std::collections::VecDeque;

use super::header::OFF_REFCOUNT_TABLE;
use super::tables::{HostFile, TableCache};
use crate::BlockError;

/// How much the allocator reserves at once: a reservation costs one fdatasync, after which
/// writes can use the clusters without further syncs. It starts small and doubles with each
/// refill, so a long sequential write pays for few syncs. Unused reserved clusters are returned
/// on close; on a crash they leak, as holes in the file that take no disk space.
const RESERVE_MIN_BYTES: u64 = 8 << 20;
const RESERVE_MAX_BYTES: u64 = 256 << 20;
/// Refcount block cache budget.
const CACHE_BYTES: u64 = 4 << 20;

pub(crate) struct Refcounts {
    cluster_bits: u32,
    /// log2 of the entries per refcount block (16-bit entries: cluster_bits - 1).
    block_bits: u32,
    table: Vec<u64>,
    table_offset: u64,
    cache: TableCache<u16>,
    /// No cluster below this index is free.
    free_hint: u64,
    /// Clusters whose refcount is already 1 (and durable), ready to be used, with whether
    /// each is fresh (see `alloc_cluster`).
    reserved: VecDeque<(u64, bool)>,
    /// Clusters the next refill reserves.
    reserve_next: u64,
}

impl Refcounts {
    pub(crate) fn load(
        hf: &HostFile,
        cluster_bits: u32,
        table_offset: u64,
        table_clusters: u32,
    ) -> Result<Self, BlockError> {
        let cs = 1u64 << cluster_bits;
        let count = (u64::from(table_clusters) * cs / 8) as usize;
        let table = hf.read_u64s(table_offset, count)?;
        for (i, &e) in table.iter().enumerate() {
            // Bits 0-8 are reserved; the block must be cluster aligned and inside the file.
            if e % cs != 0 || (e != 0 && e >= hf.len) {
                return Err(hf.corrupt(format!(
                    "refcount table entry {i} ({e:#x}) is misaligned or beyond the end of the file"
                )));
            }
        }
        Ok(Refcounts {
            cluster_bits,
            block_bits: cluster_bits - 1,
            table,
            table_offset,
            cache: TableCache::new((CACHE_BYTES >> cluster_bits) as usize),
            free_hint: 0,
            reserved: VecDeque::new(),
            reserve_next: (RESERVE_MIN_BYTES >> cluster_bits).max(1),
        })
    }

    fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn block_exists(&self, block: u64) -> bool {
        self.table.get(block as usize).is_some_and(|&e| e != 0)
    }

    /// The refcount block `block`, from the cache or the file; None if not allocated.
    fn block(&mut self, hf: &HostFile, block: u64) -> Result<Option<&mut [u16]>, BlockError> {
        let Some(&off) = self.table.get(block as usize) else { return Ok(None) };
        if off == 0 {
            return Ok(None);
        }
        if self.cache.get(off).is_none() {
            let mut raw = vec![0u8; self.cluster_size() as usize];
            hf.read(&mut raw, off)?;
            let entries: Box<[u16]> =
                raw.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            self.cache.insert(off, entries);
        }
        Ok(self.cache.get(off))
    }

    pub(crate) fn get(&mut self, hf: &HostFile, cluster: u64) -> Result<u16, BlockError> {
        let mask = (1u64 << self.block_bits) - 1;
        Ok(self.block(hf, cluster >> self.block_bits)?.map_or(0, |b| b[(cluster & mask) as usize]))
    }

    /// Adds `delta` to the refcounts of clusters `start..start + count`, writing each changed
    /// block range through to the file. Freed clusters have their space given back to the file
    /// system (they read as zeroes afterwards, which later reuse relies on).
    pub(crate) fn update(
        &mut self,
        hf: &mut HostFile,
        start: u64,
        count: u64,
        delta: i32,
    ) -> Result<(), BlockError> {
        let per_block = 1u64 << self.block_bits;
        let cb = self.cluster_bits;
        let mut c = start;
        let end = start + count;
        while c < end {
            let b = c >> self.block_bits;
            let first = (c & (per_block - 1)) as usize;
            let n = (end - c).min(per_block - first as u64) as usize;
            let block_off = self.table.get(b as usize).copied().unwrap_or(0);
            let Some(block) = self.block(hf, b)? else {
                return Err(hf.corrupt(format!(
                    "cluster {:#x} has no refcount block but its refcount must change",
                    c << self.cluster_bits
                )));
            };
            // Check the whole range first, so an error leaves the cached block unchanged.
            let range = &mut block[first..first + n];
            if let Some(i) = range
                .iter()
                .position(|&r| !(0..=i32::from(u16::MAX)).contains(&(i32::from(r) + delta)))
            {
                return Err(BlockError::corrupt(
                    hf.path(),
                    format!(
                        "the refcount of cluster {:#x} would become {}",
                        (c + i as u64) << cb,
                        i32::from(range[i]) + delta
                    ),
                ));
            }
            let mut freed: Vec<(u64, u64)> = Vec::new();
            for (i, r) in range.iter_mut().enumerate() {
                let v = i32::from(*r) + delta;
                *r = v as u16;
                if v == 0 {
                    let cl = c + i as u64;
                    match freed.last_mut() {
                        Some((s, len)) if *s + *len == cl => *len += 1,
                        _ => freed.push((cl, 1)),
                    }
                }
            }
            let raw: Vec<u8> = range.iter().flat_map(|r| r.to_be_bytes()).collect();
            hf.write(&raw, block_off + first as u64 * 2)?;
            for (f, len) in freed {
                self.free_hint = self.free_hint.min(f);
                // Best effort: a file system without hole punching keeps the space.
                hf.file.punch_hole(f << cb, len << cb)?;
            }
            c += n as u64;
        }
        Ok(())
    }

    /// Lowers the refcounts of the host clusters overlapping `len` bytes at `offset` (a data
    /// cluster, or the sectors of a compressed cluster, which QEMU counts per host cluster).
    pub(crate) fn free_bytes(
        &mut self,
        hf: &mut HostFile,
        offset: u64,
        len: u64,
    ) -> Result<(), BlockError> {
        let first = offset >> self.cluster_bits;
        let last = (offset + len.max(1) - 1) >> self.cluster_bits;
        self.update(hf, first, last - first + 1, -1)
    }

    /// First free run at or after the hint: at least `min_len` and at most `max_len` clusters.
    /// Clusters in missing refcount blocks, or beyond the table, are free.
    fn find_free(
        &mut self,
        hf: &HostFile,
        max_len: u64,
        min_len: u64,
    ) -> Result<(u64, u64), BlockError> {
        let per_block = 1u64 << self.block_bits;
        let mut c = self.free_hint;
        let (mut run_start, mut run_len) = (c, 0u64);
        let mut first_free = None;
        loop {
            if run_len >= max_len {
                break;
            }
            let b = c >> self.block_bits;
            let block_end = (b + 1) * per_block;
            let Some(block) = self.block(hf, b)? else {
                // A missing block: its whole range is free.
                first_free.get_or_insert(c);
                if run_len == 0 {
                    run_start = c;
                }
                let take = (block_end - c).min(max_len - run_len);
                run_len += take;
                c += take;
                continue;
            };
            while c < block_end && run_len < max_len {
                if block[(c & (per_block - 1)) as usize] == 0 {
                    first_free.get_or_insert(c);
                    if run_len == 0 {
                        run_start = c;
                    }
                    run_len += 1;
                } else if run_len >= min_len {
                    break;
                } else {
                    run_len = 0;
                }
                c += 1;
            }
            if c < block_end && run_len >= min_len {
                break;
            }
        }
        if let Some(f) = first_free {
            self.free_hint = f;
        }
        Ok((run_start, run_len))
    }

    /// Allocates between `min_len` and `max_len` contiguous clusters with refcount 1 and
    /// returns (first cluster index, count). Not yet durable: callers sync before use.
    fn alloc_run(
        &mut self,
        hf: &mut HostFile,
        max_len: u64,
        min_len: u64,
    ) -> Result<(u64, u64), BlockError> {
        loop {
            let (start, len) = self.find_free(hf, max_len, min_len)?;
            let (b0, b1) = (start >> self.block_bits, (start + len - 1) >> self.block_bits);
            if let Some(b) = (b0..=b1).find(|&b| !self.block_exists(b)) {
                self.create_block(hf, b)?;
                continue; // the new block may sit inside the run: look again
            }
            self.update(hf, start, len, 1)?;
            if start == self.free_hint {
                self.free_hint = start + len;
            }
            return Ok((start, len));
        }
    }

    /// One cluster from the reservation, refilling it when empty; its refcount is already 1 and
    /// durable, and it lies inside the file (a crash cannot leave a table pointing past the
    /// end). Returns the host offset and whether the cluster is fresh: appended to the file by
    /// the reservation, so it reads as zeroes even if data written to it is lost in a crash.
    pub(crate) fn alloc_cluster(&mut self, hf: &mut HostFile) -> Result<(u64, bool), BlockError> {
        if self.reserved.is_empty() {
            let want = self.reserve_next;
            self.reserve_next = (want * 2).min((RESERVE_MAX_BYTES >> self.cluster_bits).max(1));
            let old_end = hf.len.div_ceil(self.cluster_size());
            while (self.reserved.len() as u64) < want {
                let (start, len) = self.alloc_run(hf, want - self.reserved.len() as u64, 1)?;
                self.reserved.extend((start..start + len).map(|c| (c, c >= old_end)));
            }
            let last = self.reserved.iter().map(|r| r.0).max().unwrap();
            let end = (last + 1) << self.cluster_bits;
            if end > hf.len {
                // Extending the file (sparsely) is metadata only: no data is written.
                hf.file.file.set_len(end).map_err(|e| hf.file.err("extending", e))?;
                hf.len = end;
            }
            hf.sync()?;
        }
        let (c, fresh) = self.reserved.pop_front().unwrap();
        Ok((c << self.cluster_bits, fresh))
    }

    /// Gives back reserved clusters that were never used (on close).
    pub(crate) fn release_reserved(&mut self, hf: &mut HostFile) -> Result<(), BlockError> {
        while let Some((start, _)) = self.reserved.pop_front() {
            let mut n = 1;
            while self.reserved.front().map(|r| r.0) == Some(start + n) {
                self.reserved.pop_front();
                n += 1;
            }
            self.update(hf, start, n, -1)?;
        }
        Ok(())
    }

    /// Truncates free clusters off the end of the file, but only down to `floor` (the length
    /// at open): what this session appended and did not use.
    pub(crate) fn trim_file(&mut self, hf: &mut HostFile, floor: u64) -> Result<(), BlockError> {
        let cs = self.cluster_size();
        let mut end = hf.len.div_ceil(cs);
        while end > 0 && (end - 1) * cs >= floor && self.get(hf, end - 1)? == 0 {
            end -= 1;
        }
        let new_len = (end * cs).max(floor);
        if new_len < hf.len {
            hf.file.file.set_len(new_len).map_err(|e| hf.file.err("truncating", e))?;
            hf.len = new_len;
        }
        Ok(())
    }

    /// Allocates refcount block `block` (all its clusters have refcount 0, since it is missing).
    fn create_block(&mut self, hf: &mut HostFile, block: u64) -> Result<(), BlockError> {
        if block as usize >= self.table.len() {
            self.grow_table(hf, block)?;
            if self.block_exists(block) {
                return Ok(());
            }
        }
        let (loc, _) = self.find_free(hf, 1, 1)?;
        let loc_block = loc >> self.block_bits;
        let mut entries = vec![0u16; 1 << self.block_bits].into_boxed_slice();
        if loc_block == block {
            // The new block lies in its own range and counts itself.
            entries[(loc & ((1 << self.block_bits) - 1)) as usize] = 1;
        } else if !self.block_exists(loc_block) {
            // Its own location is not covered either: create that block first (it will describe
            // itself), then try again.
            self.create_block(hf, loc_block)?;
            return self.create_block(hf, block);
        } else {
            self.update(hf, loc, 1, 1)?;
        }
        let off = loc << self.cluster_bits;
        let raw: Vec<u8> = entries.iter().flat_map(|r| r.to_be_bytes()).collect();
        hf.write(&raw, off)?;
        // The block's contents must be on disk before the table points at it.
        hf.sync()?;
        self.table[block as usize] = off;
        hf.write_u64s(&[off], self.table_offset + block * 8)?;
        self.cache.insert(off, entries);
        if loc == self.free_hint {
            self.free_hint = loc + 1;
        }
        Ok(())
    }

    /// Replaces the refcount table by a larger one that has room for `block`. The new table
    /// and any refcount blocks needed to count its own clusters are laid out together in a free
    /// run, written, synced, and only then made current by one header write; the old table is
    /// freed last (a crash in between leaks it).
    fn grow_table(&mut self, hf: &mut HostFile, block: u64) -> Result<(), BlockError> {
        let cs = self.cluster_size();
        let per_cluster = cs / 8;
        let mut entries =
            (block + 1).max(self.table.len() as u64 * 2).next_multiple_of(per_cluster);
        let (start, table_clusters, new_blocks) = loop {
            let table_clusters = entries / per_cluster;
            let mut extra = 0;
            let (start, missing) = loop {
                let n = table_clusters + extra;
                let (start, _) = self.find_free(hf, n, n)?;
                let missing: Vec<u64> = (start >> self.block_bits
                    ..=(start + n - 1) >> self.block_bits)
                    .filter(|&b| !self.block_exists(b))
                    .collect();
                if missing.len() as u64 <= extra {
                    break (start, missing);
                }
                extra = missing.len() as u64;
            };
            let highest = missing.iter().copied().max().unwrap_or(0).max(block);
            if highest < entries {
                break (start, table_clusters, missing);
            }
            entries = (highest + 1).next_multiple_of(per_cluster);
        };
        if entries * 8 > 8 << 20 {
            return Err(BlockError::unsupported(
                hf.path(),
                "an image so large that its refcount table would exceed 8 MiB",
                "use a larger cluster size",
            ));
        }

        let per_block = 1u64 << self.block_bits;
        let layout_end = start + table_clusters + new_blocks.len() as u64;
        let mut blocks: Vec<(u64, u64, Box<[u16]>)> = new_blocks
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                (b, start + table_clusters + i as u64, vec![0u16; per_block as usize].into())
            })
            .collect();
        for c in start..layout_end {
            let b = c >> self.block_bits;
            if let Some((_, _, data)) = blocks.iter_mut().find(|(nb, _, _)| *nb == b) {
                data[(c & (per_block - 1)) as usize] = 1;
            } else {
                self.update(hf, c, 1, 1)?;
            }
        }
        let mut table = self.table.clone();
        table.resize(entries as usize, 0);
        for (b, loc, data) in &blocks {
            let raw: Vec<u8> = data.iter().flat_map(|r| r.to_be_bytes()).collect();
            hf.write(&raw, loc << self.cluster_bits)?;
            table[*b as usize] = loc << self.cluster_bits;
        }
        let table_off = start << self.cluster_bits;
        hf.write_u64s(&table, table_off)?;
        hf.sync()?;
        let mut hdr = [0u8; 12];
        hdr[..8].copy_from_slice(&table_off.to_be_bytes());
        hdr[8..].copy_from_slice(&(table_clusters as u32).to_be_bytes());
        hf.write(&hdr, OFF_REFCOUNT_TABLE)?;
        hf.sync()?;

        let old_off = self.table_offset;
        let old_clusters = (self.table.len() as u64 * 8).div_ceil(cs);
        self.table = table;
        self.table_offset = table_off;
        for (_, loc, data) in blocks {
            self.cache.insert(loc << self.cluster_bits, data);
        }
        if start == self.free_hint {
            self.free_hint = layout_end;
        }
        self.update(hf, old_off >> self.cluster_bits, old_clusters, -1)
    }
}
