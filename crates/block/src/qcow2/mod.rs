//! qcow2 images, versions 2 and 3 (QEMU's docs/interop/qcow2.txt).
//!
//! Guest offsets map through a two-level table: the L1 table (in memory) points at L2 tables
//! (cached), whose entries point at host clusters. Writes allocate clusters on demand; metadata
//! is written through to the file in an order that a crash cannot turn into corruption:
//!
//! 1. a cluster's refcount is raised and synced before any table points at it (the allocator
//!    reserves clusters in batches of 8 MiB growing to 256 MiB, so that costs one fdatasync
//!    per batch, not per write);
//! 2. data goes to a new cluster before the L2 entry that maps it. Where losing the data in a
//!    power failure would expose something other than the old contents (copy-on-write of
//!    backing data, reuse of a freed cluster), the entry must not reach the disk before the
//!    data does: it changes in the cached table at once (reads see it) but is written only
//!    after the next fdatasync — at the next flush, or once 1024 such entries wait. QEMU orders
//!    these the same way. Until that flush, a crash of keel can lose such writes (the guest has
//!    not asked for them to be durable yet), never the image's consistency;
//! 3. a cluster is unmapped (L2 entry written, synced) before its refcount drops; such frees
//!    are queued and applied at the next flush.
//!
//! So after a crash `qemu-img check` finds at worst leaked clusters.

mod header;
mod open;
mod refcount;
mod tables;

use crate::file::ImageFile;
use crate::{check_range, BlockError, DiskImage};
use header::{Header, OFF_AUTOCLEAR};
pub(crate) use open::{create, resolve_backing};
use open::{open_backing, refuse_writing};
use refcount::Refcounts;
use tables::{
    decode_l1, decode_l2, decompress, HostFile, Mapping, TableCache, COPIED, OFFSET_MASK, ZERO,
};

/// L2 cache budget: 32 MiB covers a 256 GiB disk with 64 KiB clusters.
const L2_CACHE_BYTES: u64 = 32 << 20;
/// Queued frees are applied (after a sync) once this many accumulate without a flush.
const MAX_PENDING_FREES: usize = 4096;
/// Deferred L2 entries are committed (after a sync) once this many accumulate.
const MAX_PENDING_LINKS: usize = 1024;

pub(crate) struct Qcow2Image {
    hf: HostFile,
    read_only: bool,
    version: u32,
    cluster_bits: u32,
    /// log2 of entries per L2 table.
    l2_bits: u32,
    size: u64,
    l1: Vec<u64>,
    l1_offset: u64,
    l2_cache: TableCache<u64>,
    /// Only for writable images; reading never needs refcounts.
    refcounts: Option<Refcounts>,
    backing: Option<Box<dyn DiskImage>>,
    /// Host byte ranges unmapped since the last flush, whose refcounts still need lowering.
    pending_free: Vec<(u64, u64)>,
    /// L2 entries (table offset, index) changed in the cache but not yet on disk, because the
    /// copy-on-write data they point at is not known to be durable yet.
    pending_links: Vec<(u64, usize)>,
    /// The last decompressed cluster, keyed by its L2 entry: small sequential reads of a
    /// compressed cluster would otherwise inflate it again for every request.
    last_compressed: Option<(u64, Vec<u8>)>,
    /// File length at open: closing trims only unused clusters this session appended.
    len_at_open: u64,
}

/// A piece of a write: a slice of the caller's buffer, or a whole cluster assembled for
/// copy-on-write.
enum Seg {
    User { host: u64, start: usize, end: usize },
    Owned { host: u64, buf: Vec<u8> },
}

impl Qcow2Image {
    pub(crate) fn open(file: ImageFile, read_only: bool, depth: u32) -> Result<Self, BlockError> {
        let len = file.len()?;
        let h = Header::read(&file, len)?;
        let path = file.path.clone();
        if !read_only {
            refuse_writing(&path, &h)?;
        }
        let cb = h.cluster_bits;
        let mut hf = HostFile { file, len };
        let l1 = hf.read_u64s(h.l1_table_offset, h.l1_size as usize)?;
        for (i, &e) in l1.iter().enumerate() {
            decode_l1(e, cb, len).map_err(|w| hf.corrupt(format!("L1 entry {i}: {w}")))?;
        }
        let refcounts = if read_only {
            None
        } else {
            Some(Refcounts::load(&hf, cb, h.refcount_table_offset, h.refcount_table_clusters)?)
        };
        let backing = match &h.backing_file {
            Some(name) => Some(open_backing(&path, name, h.backing_format.as_deref(), depth)?),
            None => None,
        };
        if !read_only && h.autoclear_features != 0 {
            // "autoclear_features": a writer that does not maintain these features (bitmaps)
            // must clear the bits, marking that data stale.
            hf.write(&[0; 8], OFF_AUTOCLEAR)?;
            hf.sync()?;
        }
        let l2_tables = (L2_CACHE_BYTES >> cb).min(u64::from(h.l1_size)).max(8);
        Ok(Qcow2Image {
            hf,
            read_only,
            version: h.version,
            cluster_bits: cb,
            l2_bits: header::l2_bits(cb),
            size: h.size,
            l1,
            l1_offset: h.l1_table_offset,
            l2_cache: TableCache::new(l2_tables as usize),
            refcounts,
            backing,
            pending_free: Vec::new(),
            pending_links: Vec::new(),
            last_compressed: None,
            len_at_open: len,
        })
    }

    fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Bytes of guest space one L2 table maps.
    fn l2_span(&self) -> u64 {
        1 << (self.cluster_bits + self.l2_bits)
    }

    /// The L2 table at `off`, loaded into the cache if needed.
    fn l2_table(&mut self, off: u64) -> Result<&mut [u64], BlockError> {
        if self.l2_cache.get(off).is_none() {
            let t = self.hf.read_u64s(off, 1 << self.l2_bits)?;
            self.l2_insert(off, t.into_boxed_slice())?;
        }
        Ok(self.l2_cache.get(off).expect("just inserted"))
    }

    /// L2 entries `first..first + n` of the table mapping `l1_idx` (zeroes if it has none).
    fn l2_entries(
        &mut self,
        l1_idx: usize,
        first: usize,
        n: usize,
    ) -> Result<Vec<u64>, BlockError> {
        let off = self.l1[l1_idx] & OFFSET_MASK;
        if off == 0 {
            return Ok(vec![0; n]);
        }
        Ok(self.l2_table(off)?[first..first + n].to_vec())
    }

    fn decode(&self, entry: u64, guest: u64) -> Result<Mapping, BlockError> {
        decode_l2(entry, self.cluster_bits, self.hf.len)
            .map_err(|w| self.hf.corrupt(format!("mapping of guest offset {guest:#x}: {w}")))
    }

    /// Fills `buf` from the backing file at guest offset `off` (zeroes where there is none, or
    /// beyond its end). Returns whether any of it came from a backing file.
    fn read_backing(&mut self, off: u64, buf: &mut [u8]) -> Result<bool, BlockError> {
        let Some(b) = self.backing.as_mut() else {
            buf.fill(0);
            return Ok(false);
        };
        let n = b.size().saturating_sub(off).min(buf.len() as u64) as usize;
        if n > 0 {
            b.read_at(off, &mut buf[..n])?;
        }
        buf[n..].fill(0);
        Ok(n > 0)
    }

    /// The contents of a compressed cluster.
    fn compressed(&mut self, entry: u64, offset: u64, len: u64) -> Result<&[u8], BlockError> {
        if self.last_compressed.as_ref().is_none_or(|(e, _)| *e != entry) {
            let avail = len.min(self.hf.len - offset) as usize;
            let mut input = vec![0u8; avail];
            self.hf.read(&mut input, offset)?;
            let data = decompress(&input, self.cluster_size() as usize)
                .map_err(|w| self.hf.corrupt(format!("data at {offset:#x}: {w}")))?;
            self.last_compressed = Some((entry, data));
        }
        Ok(&self.last_compressed.as_ref().expect("just filled").1)
    }

    /// Reads guest bytes that lie within one L2 table's span, in runs of clusters that map
    /// alike (contiguous host data is one read).
    fn read_chunk(&mut self, off: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let cb = self.cluster_bits;
        let end = off + buf.len() as u64;
        let first = off >> cb;
        let n = (((end - 1) >> cb) - first + 1) as usize;
        let idx0 = (first & ((1 << self.l2_bits) - 1)) as usize;
        let entries = self.l2_entries((off / self.l2_span()) as usize, idx0, n)?;
        let maps = entries
            .iter()
            .enumerate()
            .map(|(k, &e)| self.decode(e, (first + k as u64) << cb))
            .collect::<Result<Vec<_>, _>>()?;
        let mut i = 0;
        while i < n {
            let m = maps[i];
            let mut j = i + 1;
            while j < n {
                let same = match (m, maps[j]) {
                    (Mapping::Data { host, .. }, Mapping::Data { host: h, .. }) => {
                        h == host + ((j - i) as u64) * self.cluster_size()
                    }
                    (Mapping::Unallocated, Mapping::Unallocated) => true,
                    (Mapping::Zero { .. }, Mapping::Zero { .. }) => true,
                    _ => false,
                };
                if !same {
                    break;
                }
                j += 1;
            }
            let run_start = (first + i as u64) << cb;
            let g_start = off.max(run_start);
            let g_end = end.min((first + j as u64) << cb);
            let dst = &mut buf[(g_start - off) as usize..(g_end - off) as usize];
            match m {
                Mapping::Data { host, .. } => self.hf.read(dst, host + (g_start - run_start))?,
                Mapping::Unallocated => {
                    self.read_backing(g_start, dst)?;
                }
                Mapping::Zero { .. } => dst.fill(0),
                Mapping::Compressed { offset, len } => {
                    let at = (g_start - run_start) as usize;
                    let data = self.compressed(entries[i], offset, len)?;
                    dst.copy_from_slice(&data[at..at + dst.len()]);
                }
            }
            i = j;
        }
        Ok(())
    }

    /// The L2 table for `l1_idx`, allocating it if needed, with its COPIED flag checked.
    fn l2_for_write(&mut self, l1_idx: usize) -> Result<u64, BlockError> {
        let entry = self.l1[l1_idx];
        let off = entry & OFFSET_MASK;
        if off != 0 {
            if entry & COPIED == 0 {
                self.check_unshared(off, "L2 table")?;
                self.set_l1(l1_idx, off | COPIED)?;
            }
            return Ok(off);
        }
        let (new, fresh) = self
            .refcounts
            .as_mut()
            .expect("writable images have refcounts")
            .alloc_cluster(&mut self.hf)?;
        let zeroes = vec![0u64; 1 << self.l2_bits];
        if !fresh {
            // A reused cluster holds stale bytes: its zeroes must be on disk before the L1
            // entry points at it. (A fresh one is a hole: it reads as zeroes regardless.)
            self.hf.write_u64s(&zeroes, new)?;
            self.hf.sync()?;
        }
        self.set_l1(l1_idx, new | COPIED)?;
        self.l2_insert(new, zeroes.into_boxed_slice())?;
        Ok(new)
    }

    fn set_l1(&mut self, idx: usize, entry: u64) -> Result<(), BlockError> {
        self.l1[idx] = entry;
        self.hf.write_u64s(&[entry], self.l1_offset + idx as u64 * 8)
    }

    /// A table or cluster without the COPIED flag may be shared (snapshots, which writable
    /// opens refuse), so it may only be written in place if its refcount is exactly one.
    fn check_unshared(&mut self, host: u64, what: &str) -> Result<(), BlockError> {
        let cb = self.cluster_bits;
        let rc = self
            .refcounts
            .as_mut()
            .expect("writable images have refcounts")
            .get(&self.hf, host >> cb)?;
        if rc != 1 {
            return Err(self.hf.corrupt(format!(
                "the {what} at {host:#x} has refcount {rc} although the image has no snapshots"
            )));
        }
        Ok(())
    }

    /// Writes guest bytes within one L2 table's span.
    fn write_chunk(&mut self, off: u64, data: &[u8]) -> Result<(), BlockError> {
        self.last_compressed = None;
        let cb = self.cluster_bits;
        let cs = self.cluster_size();
        let end = off + data.len() as u64;
        let first = off >> cb;
        let n = (((end - 1) >> cb) - first + 1) as usize;
        let idx0 = (first & ((1 << self.l2_bits) - 1)) as usize;
        let l2_off = self.l2_for_write((off / self.l2_span()) as usize)?;
        let entries = self.l2_table(l2_off)?[idx0..idx0 + n].to_vec();

        let mut segs: Vec<Seg> = Vec::with_capacity(n);
        let mut new_entries: Vec<Option<u64>> = vec![None; n];
        let mut frees = Vec::new();
        let mut barrier = false;
        for (k, &entry) in entries.iter().enumerate() {
            let c_guest = (first + k as u64) << cb;
            let w_start = off.max(c_guest);
            let w_end = end.min(c_guest + cs);
            let (start, stop) = ((w_start - off) as usize, (w_end - off) as usize);
            let full = w_end - w_start == cs;
            let in_cluster = (w_start - c_guest) as usize;
            let m = self.decode(entry, c_guest)?;
            if let Mapping::Data { host, copied } = m {
                if !copied {
                    self.check_unshared(host, "data cluster")?;
                    new_entries[k] = Some(host | COPIED);
                }
                segs.push(Seg::User { host: host + in_cluster as u64, start, end: stop });
                continue;
            }
            // Everything else needs a cluster of its own: the preallocated one of a zero
            // cluster, or a new one.
            let (host, fresh) = match m {
                Mapping::Zero { host: Some(h) } => (h, false),
                _ => self
                    .refcounts
                    .as_mut()
                    .expect("writable images have refcounts")
                    .alloc_cluster(&mut self.hf)?,
            };
            new_entries[k] = Some(host | COPIED);
            if full {
                // A reused cluster would show stale bytes if this write were lost.
                barrier |= !fresh;
                segs.push(Seg::User { host, start, end: stop });
                queue_if_compressed(&mut frees, m);
                continue;
            }
            // Copy-on-write: the rest of the cluster keeps what the guest saw before.
            let mut old = None;
            match m {
                Mapping::Unallocated if self.backing.is_some() => {
                    let mut buf = vec![0u8; cs as usize];
                    self.read_backing(c_guest, &mut buf)?;
                    // Zeroes in the backing file (free space of a sparse base) need no copy.
                    if buf.iter().any(|&b| b != 0) {
                        old = Some(buf);
                    }
                }
                Mapping::Compressed { offset, len } => {
                    old = Some(self.compressed(entry, offset, len)?.to_vec());
                }
                _ => {}
            }
            if old.is_none() && fresh {
                // The new cluster is a hole in the file, so the rest of it reads as zeroes
                // already, even if this write is lost in a crash: write only the guest's bytes.
                segs.push(Seg::User { host: host + in_cluster as u64, start, end: stop });
            } else {
                // Where losing the write would expose something other than the old contents
                // (copied data, or a reused cluster's stale bytes), the cluster must be on disk
                // before the L2 entry points at it.
                barrier = true;
                let mut buf = old.unwrap_or_else(|| vec![0u8; cs as usize]);
                buf[in_cluster..in_cluster + (stop - start)].copy_from_slice(&data[start..stop]);
                segs.push(Seg::Owned { host, buf });
            }
            queue_if_compressed(&mut frees, m);
        }
        self.last_compressed = None;

        // Data first, merging slices of the caller's buffer that are contiguous on the host.
        let mut i = 0;
        while i < segs.len() {
            match &segs[i] {
                Seg::Owned { host, buf } => self.hf.write(buf, *host)?,
                &Seg::User { host, start, mut end } => {
                    while let Some(&Seg::User { host: h, start: s, end: e }) = segs.get(i + 1) {
                        if s != end || h != host + (end - start) as u64 {
                            break;
                        }
                        end = e;
                        i += 1;
                    }
                    self.hf.write(&data[start..end], host)?;
                }
            }
            i += 1;
        }
        // Then the mapping, in the cached table at once (reads must see it).
        let table = self.l2_table(l2_off)?;
        let mut changed = Vec::new();
        for (k, e) in new_entries.iter().enumerate() {
            if let Some(e) = *e {
                table[idx0 + k] = e;
                changed.push(idx0 + k);
            }
        }
        if barrier {
            // The data must be on disk before the entries are: they go out after the next
            // sync, which a flush (or enough pending entries) brings.
            self.pending_links.extend(changed.iter().map(|&i| (l2_off, i)));
            if self.pending_links.len() > MAX_PENDING_LINKS {
                self.commit_links()?;
            }
        } else {
            self.write_l2_entries(l2_off, &changed)?;
        }
        self.queue_frees(frees)
    }

    /// Writes the cached values of entries `idxs` (ascending) of the L2 table at `l2_off`, one
    /// write per run of adjacent entries. Only changed entries are written: others in between
    /// may be pending links that must not reach the disk yet.
    fn write_l2_entries(&mut self, l2_off: u64, idxs: &[usize]) -> Result<(), BlockError> {
        let mut i = 0;
        while i < idxs.len() {
            let mut j = i + 1;
            while j < idxs.len() && idxs[j] == idxs[j - 1] + 1 {
                j += 1;
            }
            let (a, b) = (idxs[i], idxs[j - 1]);
            let vals =
                self.l2_cache.get(l2_off).expect("changed tables are cached")[a..=b].to_vec();
            self.hf.write_u64s(&vals, l2_off + a as u64 * 8)?;
            i = j;
        }
        Ok(())
    }

    /// Syncs, then writes the pending L2 entries whose data that sync made durable.
    fn commit_links(&mut self) -> Result<(), BlockError> {
        if self.pending_links.is_empty() {
            return Ok(());
        }
        self.hf.sync()?;
        let mut links = std::mem::take(&mut self.pending_links);
        links.sort_unstable();
        links.dedup();
        let mut i = 0;
        while i < links.len() {
            let l2_off = links[i].0;
            let n = links[i..].iter().take_while(|l| l.0 == l2_off).count();
            let idxs: Vec<usize> = links[i..i + n].iter().map(|l| l.1).collect();
            self.write_l2_entries(l2_off, &idxs)?;
            i += n;
        }
        Ok(())
    }

    /// Adds a table to the L2 cache. Tables holding pending links must not be evicted, so
    /// before an eviction those are committed.
    fn l2_insert(&mut self, off: u64, table: Box<[u64]>) -> Result<(), BlockError> {
        if self.l2_cache.is_full() {
            self.commit_links()?;
        }
        self.l2_cache.insert(off, table);
        Ok(())
    }

    fn queue_frees(&mut self, frees: Vec<(u64, u64)>) -> Result<(), BlockError> {
        self.pending_free.extend(frees);
        if self.pending_free.len() > MAX_PENDING_FREES {
            self.apply_frees()?;
        }
        Ok(())
    }

    /// Lowers the refcounts of unmapped clusters, once the unmapping is on disk.
    fn apply_frees(&mut self) -> Result<(), BlockError> {
        if self.pending_free.is_empty() {
            return Ok(());
        }
        // An entry that replaced a freed cluster (a rewritten compressed one) may still be
        // pending: it must be on disk first.
        self.commit_links()?;
        self.hf.sync()?;
        let frees = std::mem::take(&mut self.pending_free);
        let rc = self.refcounts.as_mut().expect("writable images have refcounts");
        for (off, len) in frees {
            rc.free_bytes(&mut self.hf, off, len)?;
        }
        Ok(())
    }

    fn writable(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly { path: self.hf.path().into() });
        }
        check_range(self.hf.path(), offset, len, self.size)
    }

    /// Calls `f` for each piece of `offset..offset + len` that lies within one L2 span.
    fn for_each_span(
        &mut self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(&mut Self, u64, u64) -> Result<(), BlockError>,
    ) -> Result<(), BlockError> {
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let stop = end.min((pos / self.l2_span() + 1) * self.l2_span());
            f(self, pos, stop)?;
            pos = stop;
        }
        Ok(())
    }

    /// Zeroes part of one cluster, unless it already reads as zeroes.
    fn zero_partial(&mut self, off: u64, len: u64) -> Result<(), BlockError> {
        let cb = self.cluster_bits;
        let idx = ((off >> cb) & ((1 << self.l2_bits) - 1)) as usize;
        let entry = self.l2_entries((off / self.l2_span()) as usize, idx, 1)?[0];
        let reads_zero = match self.decode(entry, off)? {
            Mapping::Zero { .. } => true,
            Mapping::Unallocated => self.backing.as_ref().is_none_or(|b| b.size() <= off),
            _ => false,
        };
        if reads_zero {
            return Ok(());
        }
        self.write_chunk(off, &vec![0; len as usize])
    }

    /// Makes whole clusters `start..end` (within one L2 span) read as zeroes — or, for a
    /// discard of a version 2 image, read from the backing file — and frees their host
    /// clusters.
    fn zero_clusters(&mut self, start: u64, end: u64, discard: bool) -> Result<(), BlockError> {
        let cb = self.cluster_bits;
        // Version 3 has zero clusters ("all zeroes" flag); without a backing file an
        // unallocated cluster reads as zeroes too.
        let target = match (self.backing.is_some(), self.version >= 3, discard) {
            (false, _, _) => 0,
            (true, true, _) => ZERO,
            (true, false, true) => 0,
            (true, false, false) => {
                // Version 2 over a backing file: only real zeroes read as zeroes.
                let zeroes = vec![0u8; (end - start).min(1 << 20) as usize];
                let mut pos = start;
                while pos < end {
                    let n = (end - pos).min(zeroes.len() as u64);
                    self.write_chunk(pos, &zeroes[..n as usize])?;
                    pos += n;
                }
                return Ok(());
            }
        };
        let l1_idx = (start / self.l2_span()) as usize;
        if self.l1[l1_idx] & OFFSET_MASK == 0 && target == 0 {
            return Ok(()); // all unallocated already
        }
        self.last_compressed = None;
        let l2_off = self.l2_for_write(l1_idx)?;
        let first = start >> cb;
        let n = ((end - start) >> cb) as usize;
        let idx0 = (first & ((1 << self.l2_bits) - 1)) as usize;
        let entries = self.l2_table(l2_off)?[idx0..idx0 + n].to_vec();
        let mut frees = Vec::new();
        let mut changed = Vec::new();
        for (k, &entry) in entries.iter().enumerate() {
            let m = self.decode(entry, (first + k as u64) << cb)?;
            match m {
                Mapping::Zero { host: None } => continue,
                Mapping::Unallocated if target == 0 => continue,
                Mapping::Unallocated => {}
                Mapping::Data { host, .. } | Mapping::Zero { host: Some(host) } => {
                    frees.push((host, self.cluster_size()));
                }
                Mapping::Compressed { offset, len } => frees.push((offset, len)),
            }
            changed.push(k);
        }
        let table = self.l2_table(l2_off)?;
        for &k in &changed {
            table[idx0 + k] = target;
        }
        let idxs: Vec<usize> = changed.iter().map(|k| idx0 + k).collect();
        self.write_l2_entries(l2_off, &idxs)?;
        self.queue_frees(frees)
    }

    fn zero_or_discard(&mut self, offset: u64, len: u64, discard: bool) -> Result<(), BlockError> {
        self.writable(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let cs = self.cluster_size();
        let end = offset + len;
        let a = offset.next_multiple_of(cs).min(end);
        let b = (end / cs * cs).max(a);
        if !discard {
            // Partial clusters: write zeroes (discard just leaves them alone).
            if offset < a {
                self.zero_partial(offset, a - offset)?;
            }
            if b < end {
                self.zero_partial(b, end - b)?;
            }
        }
        self.for_each_span(a, b - a, |s, pos, stop| s.zero_clusters(pos, stop, discard))
    }

    /// Clean close: apply queued frees, give back unused reserved clusters and the file space
    /// they took, sync.
    fn close(&mut self) -> Result<(), BlockError> {
        self.commit_links()?;
        self.apply_frees()?;
        let rc = self.refcounts.as_mut().expect("writable images have refcounts");
        rc.release_reserved(&mut self.hf)?;
        rc.trim_file(&mut self.hf, self.len_at_open)?;
        self.hf.sync()
    }
}

/// A compressed cluster replaced by a write is freed once the new mapping is on disk.
fn queue_if_compressed(frees: &mut Vec<(u64, u64)>, old: Mapping) {
    if let Mapping::Compressed { offset, len } = old {
        frees.push((offset, len));
    }
}

impl DiskImage for Qcow2Image {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(self.hf.path(), offset, buf.len() as u64, self.size)?;
        let mut done = 0;
        self.for_each_span(offset, buf.len() as u64, |s, pos, stop| {
            let n = (stop - pos) as usize;
            s.read_chunk(pos, &mut buf[done..done + n])?;
            done += n;
            Ok(())
        })
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.writable(offset, buf.len() as u64)?;
        let mut done = 0;
        self.for_each_span(offset, buf.len() as u64, |s, pos, stop| {
            let n = (stop - pos) as usize;
            s.write_chunk(pos, &buf[done..done + n])?;
            done += n;
            Ok(())
        })
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        self.commit_links()?;
        if self.pending_free.is_empty() {
            self.hf.sync()
        } else {
            // Syncs first; the lowered refcounts need not be durable yet (losing them leaks).
            self.apply_frees()
        }
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.zero_or_discard(offset, len, true)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.zero_or_discard(offset, len, false)
    }
}

impl Drop for Qcow2Image {
    fn drop(&mut self) {
        if !self.read_only {
            // Nothing to report errors to; a failure here leaves leaked clusters at worst.
            let _ = self.close();
        }
    }
}
