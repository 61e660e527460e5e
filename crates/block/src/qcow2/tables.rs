//! L1/L2 entries (qcow2 spec: "Cluster mapping", "Compressed Clusters Descriptor"), the bounded
//! table cache, and the image file with its current length.

use std::collections::HashMap;
use std::path::Path;

use flate2::{Decompress, FlushDecompress};

use crate::file::ImageFile;
use crate::BlockError;

/// Bit 63 of L1 and standard L2 entries: the refcount of the table or cluster is exactly one, so
/// it may be written in place ("COPIED").
pub(crate) const COPIED: u64 = 1 << 63;
/// Bit 62 of L2 entries: a compressed cluster.
pub(crate) const COMPRESSED: u64 = 1 << 62;
/// Bit 0 of standard L2 entries (version 3): the cluster reads as all zeroes.
pub(crate) const ZERO: u64 = 1;
/// Bits 9-55: host offset in L1 entries and standard L2 entries.
pub(crate) const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L1 entry bits that the spec reserves (must be zero): 0-8 and 56-62.
const L1_RESERVED: u64 = 0x7f00_0000_0000_01ff;

/// The image file and its length, which grows as clusters are allocated; tables pointing
/// beyond it are corrupt.
pub(crate) struct HostFile {
    pub(crate) file: ImageFile,
    pub(crate) len: u64,
}

impl HostFile {
    pub(crate) fn path(&self) -> &Path {
        &self.file.path
    }

    /// Reads, with zeroes beyond the end of the file (the last cluster may be short).
    pub(crate) fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        self.file.read_zero_fill(buf, offset)
    }

    pub(crate) fn write(&mut self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        self.file.write_all_at(buf, offset)?;
        self.len = self.len.max(offset + buf.len() as u64);
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<(), BlockError> {
        self.file.sync()
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>) -> BlockError {
        BlockError::corrupt(self.path(), what)
    }

    /// Reads a table of big-endian u64 entries.
    pub(crate) fn read_u64s(&self, offset: u64, count: usize) -> Result<Vec<u64>, BlockError> {
        let mut raw = vec![0u8; count * 8];
        self.read(&mut raw, offset)?;
        Ok(raw.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect())
    }

    /// Writes big-endian u64 entries.
    pub(crate) fn write_u64s(&mut self, entries: &[u64], offset: u64) -> Result<(), BlockError> {
        let raw: Vec<u8> = entries.iter().flat_map(|e| e.to_be_bytes()).collect();
        self.write(&raw, offset)
    }
}

/// What a guest cluster maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mapping {
    /// Reads from the backing file, or as zeroes without one.
    Unallocated,
    /// Reads as zeroes; `host` is a cluster kept allocated for later writes ("preallocated zero
    /// cluster").
    Zero { host: Option<u64> },
    /// Data at `host`; `copied` is the COPIED flag (refcount is exactly one).
    Data { host: u64, copied: bool },
    /// zlib/deflate data at `offset`, at most `len` bytes of it.
    Compressed { offset: u64, len: u64 },
}

/// Decodes an L2 entry ("Standard Cluster Descriptor" / "Compressed Clusters Descriptor").
/// `file_len` bounds host offsets: anything beyond the file is corruption.
pub(crate) fn decode_l2(entry: u64, cluster_bits: u32, file_len: u64) -> Result<Mapping, String> {
    if entry & COMPRESSED != 0 {
        // x = 62 - (cluster_bits - 8): bits 0..x-1 are the byte offset, bits x..61 the number
        // of additional 512-byte sectors.
        let x = 62 - (cluster_bits - 8);
        let offset = entry & ((1u64 << x) - 1) & ((1u64 << 56) - 1);
        let sectors = ((entry >> x) & ((1u64 << (62 - x)) - 1)) + 1;
        let len = sectors * 512 - (offset & 511);
        if offset >= file_len {
            return Err(format!(
                "L2 entry {entry:#x}: compressed data at {offset:#x} is beyond the end of file"
            ));
        }
        return Ok(Mapping::Compressed { offset, len });
    }
    let host = entry & OFFSET_MASK;
    let cluster_size = 1u64 << cluster_bits;
    if host % cluster_size != 0 {
        return Err(format!("L2 entry {entry:#x}: host offset {host:#x} is not cluster aligned"));
    }
    if host != 0 && host >= file_len {
        return Err(format!(
            "L2 entry {entry:#x}: host cluster {host:#x} is beyond the end of the file"
        ));
    }
    Ok(match (entry & ZERO != 0, host) {
        (true, 0) => Mapping::Zero { host: None },
        (true, h) => Mapping::Zero { host: Some(h) },
        (false, 0) => Mapping::Unallocated,
        (false, h) => Mapping::Data { host: h, copied: entry & COPIED != 0 },
    })
}

/// Decodes an L1 entry: the L2 table offset (0 = not allocated), and the COPIED flag.
pub(crate) fn decode_l1(
    entry: u64,
    cluster_bits: u32,
    file_len: u64,
) -> Result<(u64, bool), String> {
    let off = entry & OFFSET_MASK;
    if entry & L1_RESERVED != 0 || off % (1u64 << cluster_bits) != 0 {
        return Err(format!("L1 entry {entry:#x} has reserved bits set or is misaligned"));
    }
    if off != 0 && off >= file_len {
        return Err(format!("L1 entry {entry:#x} points beyond the end of the file"));
    }
    Ok((off, entry & COPIED != 0))
}

/// Inflates a compressed cluster: "raw deflate" data (no zlib header), of which only the first
/// cluster's worth of output is wanted; the input may run on into padding or the next
/// compressed cluster.
pub(crate) fn decompress(input: &[u8], cluster_size: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; cluster_size];
    let mut inflater = Decompress::new(false);
    inflater
        .decompress(input, &mut out, FlushDecompress::Finish)
        .map_err(|e| format!("compressed cluster does not inflate: {e}"))?;
    if inflater.total_out() != cluster_size as u64 {
        return Err(format!(
            "compressed cluster inflates to {} bytes instead of {cluster_size}",
            inflater.total_out()
        ));
    }
    Ok(out)
}

/// A bounded cache of tables (L2 tables, refcount blocks) keyed by host offset. It is
/// write-through: callers write changed entries to the file as they change them, so an entry
/// can be dropped at any time.
pub(crate) struct TableCache<T> {
    tables: HashMap<u64, (Box<[T]>, u64)>,
    capacity: usize,
    tick: u64,
}

impl<T> TableCache<T> {
    /// At most `capacity` tables, and never more than 1024: eviction scans them all.
    pub(crate) fn new(capacity: usize) -> Self {
        TableCache { tables: HashMap::new(), capacity: capacity.clamp(2, 1024), tick: 0 }
    }

    pub(crate) fn get(&mut self, offset: u64) -> Option<&mut [T]> {
        self.tick += 1;
        let tick = self.tick;
        self.tables.get_mut(&offset).map(|(t, used)| {
            *used = tick;
            &mut t[..]
        })
    }

    /// Whether inserting a new table evicts one.
    pub(crate) fn is_full(&self) -> bool {
        self.tables.len() >= self.capacity
    }

    pub(crate) fn insert(&mut self, offset: u64, table: Box<[T]>) -> &mut [T] {
        if self.tables.len() >= self.capacity && !self.tables.contains_key(&offset) {
            // Least recently used goes; the scan only happens on a miss, which costs a table
            // read from the file anyway.
            if let Some(&victim) = self.tables.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| k) {
                self.tables.remove(&victim);
            }
        }
        self.tick += 1;
        let tick = self.tick;
        let slot = self.tables.entry(offset).or_insert((table, tick));
        &mut slot.0[..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_standard_entries() {
        let len = 1 << 30;
        assert_eq!(decode_l2(0, 16, len), Ok(Mapping::Unallocated));
        assert_eq!(decode_l2(ZERO, 16, len), Ok(Mapping::Zero { host: None }));
        assert_eq!(decode_l2(0x30000 | ZERO, 16, len), Ok(Mapping::Zero { host: Some(0x30000) }));
        assert_eq!(
            decode_l2(COPIED | 0x50000, 16, len),
            Ok(Mapping::Data { host: 0x50000, copied: true })
        );
        assert!(decode_l2(0x50200, 16, len).is_err(), "misaligned");
        assert!(decode_l2(1 << 31, 16, len).is_err(), "beyond the file");
    }

    #[test]
    fn decodes_compressed_entries() {
        // 64 KiB clusters: x = 54; offset 0x12345, 3 additional sectors.
        let e = COMPRESSED | (3u64 << 54) | 0x12345;
        let m = decode_l2(e, 16, 1 << 20).unwrap();
        assert_eq!(m, Mapping::Compressed { offset: 0x12345, len: 4 * 512 - 0x145 });
    }

    #[test]
    fn cache_evicts_least_recently_used() {
        let mut c: TableCache<u64> = TableCache::new(2);
        c.insert(1, vec![1].into());
        c.insert(2, vec![2].into());
        assert!(c.get(1).is_some());
        c.insert(3, vec![3].into());
        assert!(c.get(2).is_none());
        assert!(c.get(1).is_some() && c.get(3).is_some());
    }
}
