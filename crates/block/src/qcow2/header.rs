//! The qcow2 header and its extensions (qcow2 spec: "Header", "Header extensions"), and the
//! layout of newly created images.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::file::ImageFile;
use crate::{BlockError, QCOW2_MAGIC};

/// Byte offsets of header fields keel rewrites in place. Each group is contiguous in the
/// header, so it is updated with one write.
pub(crate) const OFF_REFCOUNT_TABLE: u64 = 48; // refcount_table_offset (u64), _clusters (u32)
pub(crate) const OFF_AUTOCLEAR: u64 = 88;

/// Header length keel writes for version 3 (104 bytes, the compression type byte, padding to a
/// multiple of 8 as the spec requires), like QEMU.
const V3_HEADER_LEN: u32 = 112;
const V2_HEADER_LEN: u32 = 72;

/// "Header extensions": the types keel knows.
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
const EXT_ENCRYPTION: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// "incompatible_features" bits.
pub(crate) const INCOMPAT_DIRTY: u64 = 1 << 0;
pub(crate) const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

/// The spec limits backing file names to 1023 bytes.
const MAX_BACKING_NAME: usize = 1023;
/// QEMU's limits on table sizes (QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE); larger values
/// are corrupt headers and would make us allocate absurd amounts of memory.
const MAX_L1_BYTES: u64 = 32 << 20;
const MAX_REFTABLE_BYTES: u64 = 8 << 20;

pub(crate) const MIN_CLUSTER_BITS: u32 = 9;
pub(crate) const MAX_CLUSTER_BITS: u32 = 21;

#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) version: u32,
    pub(crate) cluster_bits: u32,
    pub(crate) size: u64,
    pub(crate) l1_size: u32,
    pub(crate) l1_table_offset: u64,
    pub(crate) refcount_table_offset: u64,
    pub(crate) refcount_table_clusters: u32,
    pub(crate) nb_snapshots: u32,
    pub(crate) incompatible_features: u64,
    pub(crate) autoclear_features: u64,
    pub(crate) refcount_order: u32,
    pub(crate) backing_file: Option<PathBuf>,
    pub(crate) backing_format: Option<String>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Entries (of 2^entry_bits... bytes each) covered by one L2 table, as a bit count.
pub(crate) fn l2_bits(cluster_bits: u32) -> u32 {
    cluster_bits - 3
}

/// L1 entries needed to map `size` bytes.
pub(crate) fn l1_entries_for(size: u64, cluster_bits: u32) -> u64 {
    let span = 1u64 << (cluster_bits + l2_bits(cluster_bits));
    size.div_ceil(span)
}

impl Header {
    /// Reads and validates the header of `file`, whose length is `file_len`.
    pub(crate) fn read(file: &ImageFile, file_len: u64) -> Result<Header, BlockError> {
        let path = &file.path;
        let bad = |reason: String| BlockError::invalid_header(path, reason);
        if file_len < u64::from(V2_HEADER_LEN) {
            return Err(bad(format!(
                "the file is {file_len} bytes long, shorter than a qcow2 header"
            )));
        }
        let mut fixed = [0u8; 104];
        file.read_zero_fill(&mut fixed, 0)?;
        if fixed[0..4] != QCOW2_MAGIC {
            return Err(bad("it does not start with the qcow2 magic \"QFI\\xfb\"".into()));
        }
        let version = be32(&fixed, 4);
        if version != 2 && version != 3 {
            return Err(BlockError::unsupported(
                path,
                format!("qcow2 version {version}"),
                "keel reads versions 2 and 3; convert with `qemu-img convert -O qcow2`",
            ));
        }
        let cluster_bits = be32(&fixed, 20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(bad(format!(
                "cluster_bits {cluster_bits} is outside 9..21 (512 bytes to 2 MiB clusters)"
            )));
        }
        let cluster_size = 1u64 << cluster_bits;
        let mut h = Header {
            version,
            cluster_bits,
            size: be64(&fixed, 24),
            l1_size: be32(&fixed, 36),
            l1_table_offset: be64(&fixed, 40),
            refcount_table_offset: be64(&fixed, 48),
            refcount_table_clusters: be32(&fixed, 56),
            nb_snapshots: be32(&fixed, 60),
            incompatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            backing_file: None,
            backing_format: None,
        };
        let crypt_method = be32(&fixed, 32);
        if crypt_method != 0 {
            let kind = if crypt_method == 1 { "AES" } else { "LUKS" };
            return Err(BlockError::unsupported(
                path,
                format!("{kind} encryption (crypt_method {crypt_method})"),
                "decrypt it with `qemu-img convert --object secret,... --image-opts ... -O qcow2`",
            ));
        }
        let header_len = if version == 3 {
            if file_len < 104 {
                return Err(bad("the file is too short for a version 3 header".into()));
            }
            h.incompatible_features = be64(&fixed, 72);
            h.autoclear_features = be64(&fixed, 88);
            h.refcount_order = be32(&fixed, 96);
            let len = be32(&fixed, 100);
            if len < 104 || u64::from(len) > cluster_size {
                return Err(bad(format!("header_length {len} is not in 104..cluster size")));
            }
            len
        } else {
            V2_HEADER_LEN
        };

        // The first cluster holds the header extensions and the backing file name.
        let mut first = vec![0u8; cluster_size as usize];
        file.read_zero_fill(&mut first, 0)?;
        let mut feature_names = Vec::new();
        let mut pos = header_len as usize;
        while pos + 8 <= first.len() {
            let ty = be32(&first, pos);
            let len = be32(&first, pos + 4) as usize;
            let data_start = pos + 8;
            if ty == EXT_END {
                break;
            }
            if data_start + len > first.len() {
                return Err(bad(format!(
                    "header extension {ty:#x} at byte {pos} runs past the first cluster"
                )));
            }
            let data = &first[data_start..data_start + len];
            match ty {
                EXT_BACKING_FORMAT => {
                    h.backing_format = Some(String::from_utf8_lossy(data).into_owned());
                }
                EXT_FEATURE_NAMES => {
                    // "Feature name table": 48-byte entries: type, bit number, 46-byte name.
                    for e in data.chunks_exact(48) {
                        let name = e[2..].split(|&b| b == 0).next().unwrap_or_default();
                        feature_names.push((e[0], e[1], String::from_utf8_lossy(name).into()));
                    }
                }
                EXT_ENCRYPTION => {
                    return Err(BlockError::unsupported(
                        path,
                        "a full disk encryption header",
                        "decrypt the image with qemu-img convert first",
                    ));
                }
                EXT_DATA_FILE => {
                    return Err(BlockError::unsupported(
                        path,
                        "an external data file",
                        "convert it to a self-contained image with `qemu-img convert -O qcow2`",
                    ));
                }
                // The spec lets readers ignore unknown extensions.
                _ => {}
            }
            pos = data_start + len.next_multiple_of(8);
        }
        h.check_features(path, &feature_names)?;

        let backing_offset = be64(&fixed, 8);
        let backing_len = be32(&fixed, 16) as usize;
        if backing_offset != 0 {
            if backing_len > MAX_BACKING_NAME
                || backing_offset.saturating_add(backing_len as u64) > cluster_size
            {
                return Err(bad(format!(
                    "the backing file name ({backing_len} bytes at offset {backing_offset}) is \
                     too long or outside the first cluster"
                )));
            }
            let at = backing_offset as usize;
            let name = &first[at..at + backing_len];
            if name.is_empty() {
                return Err(bad("the backing file name is empty".into()));
            }
            h.backing_file = Some(PathBuf::from(OsStr::from_bytes(name)));
        }
        h.check_tables(path, file_len)?;
        Ok(h)
    }

    fn check_features(
        &self,
        path: &Path,
        feature_names: &[(u8, u8, String)],
    ) -> Result<(), BlockError> {
        let incompat = self.incompatible_features;
        let hint = "convert it with `qemu-img convert -O qcow2` (without that option)";
        if incompat & INCOMPAT_DATA_FILE != 0 {
            return Err(BlockError::unsupported(path, "an external data file", hint));
        }
        if incompat & INCOMPAT_EXTL2 != 0 {
            return Err(BlockError::unsupported(path, "extended L2 entries (subclusters)", hint));
        }
        if incompat & INCOMPAT_COMPRESSION != 0 {
            return Err(BlockError::unsupported(
                path,
                "a compression type other than zlib (probably zstd)",
                "convert it with `qemu-img convert -O qcow2 -o compression_type=zlib`",
            ));
        }
        let known = INCOMPAT_DIRTY | INCOMPAT_CORRUPT;
        let unknown = incompat & !known & !(INCOMPAT_DATA_FILE | INCOMPAT_EXTL2);
        if unknown != 0 {
            let bit = unknown.trailing_zeros();
            let name = feature_names
                .iter()
                .find(|(ty, b, _)| *ty == 0 && u32::from(*b) == bit)
                .map_or_else(|| "unnamed".to_string(), |(_, _, n)| n.clone());
            return Err(BlockError::unsupported(
                path,
                format!("incompatible feature bit {bit} ({name})"),
                "convert it with `qemu-img convert -O qcow2` to a plain qcow2 image",
            ));
        }
        if self.version == 3 && self.refcount_order > 6 {
            return Err(BlockError::invalid_header(
                path,
                format!("refcount_order {} is above 6", self.refcount_order),
            ));
        }
        Ok(())
    }

    /// "Host cluster management" and "Cluster mapping": the tables must be cluster aligned,
    /// inside the file, and the L1 table big enough for the virtual size (QEMU refuses smaller
    /// ones too).
    fn check_tables(&self, path: &Path, file_len: u64) -> Result<(), BlockError> {
        let cluster_size = 1u64 << self.cluster_bits;
        let corrupt = |what: String| Err(BlockError::corrupt(path, what));
        let needed = l1_entries_for(self.size, self.cluster_bits);
        if u64::from(self.l1_size) < needed {
            return corrupt(format!(
                "the L1 table has {} entries but the {}-byte virtual size needs {needed}",
                self.l1_size, self.size
            ));
        }
        let l1_bytes = u64::from(self.l1_size) * 8;
        if l1_bytes > MAX_L1_BYTES {
            return corrupt(format!("the L1 table ({l1_bytes} bytes) is larger than 32 MiB"));
        }
        if self.l1_size > 0
            && (self.l1_table_offset % cluster_size != 0
                || self.l1_table_offset == 0
                || self.l1_table_offset.saturating_add(l1_bytes) > file_len)
        {
            return corrupt(format!(
                "the L1 table offset {:#x} is misaligned or outside the {file_len}-byte file",
                self.l1_table_offset
            ));
        }
        let rt_bytes = u64::from(self.refcount_table_clusters) * cluster_size;
        if rt_bytes > MAX_REFTABLE_BYTES {
            return corrupt(format!("the refcount table ({rt_bytes} bytes) is larger than 8 MiB"));
        }
        if self.refcount_table_clusters == 0
            || self.refcount_table_offset % cluster_size != 0
            || self.refcount_table_offset == 0
            || self.refcount_table_offset.saturating_add(rt_bytes) > file_len
        {
            return corrupt(format!(
                "the refcount table ({} clusters at {:#x}) is empty, misaligned or outside the \
                 {file_len}-byte file",
                self.refcount_table_clusters, self.refcount_table_offset
            ));
        }
        Ok(())
    }
}

/// Layout of a new image: header cluster, refcount table (1 cluster), refcount block 0, then
/// the L1 table; everything else is allocated on demand.
pub(crate) struct NewImage<'a> {
    pub(crate) cluster_bits: u32,
    pub(crate) size: u64,
    /// Backing file name as it is to be stored, and its format name.
    pub(crate) backing: Option<(&'a [u8], &'a str)>,
}

impl NewImage<'_> {
    /// Writes the new image into the empty `file`.
    pub(crate) fn write(&self, file: &ImageFile) -> Result<(), BlockError> {
        let path = &file.path;
        let cb = self.cluster_bits;
        let cs = 1u64 << cb;
        let invalid = |what: String| BlockError::InvalidArgument { path: path.into(), what };
        if self.size % 512 != 0 {
            return Err(invalid(format!("the size {} is not a multiple of 512 bytes", self.size)));
        }
        let l1_size = l1_entries_for(self.size, cb);
        let l1_clusters = (l1_size * 8).div_ceil(cs);
        let total_clusters = 3 + l1_clusters;
        // Refcount block 0 must cover all metadata clusters: 2^(cluster_bits - 1) of them.
        if l1_size * 8 > MAX_L1_BYTES || total_clusters > cs / 2 {
            return Err(invalid(format!("the size {} is too large for qcow2", self.size)));
        }
        let (rt_off, rb_off, l1_off) = (cs, 2 * cs, 3 * cs);

        let mut head = vec![0u8; cs as usize];
        let put32 =
            |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        let put64 =
            |b: &mut [u8], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_be_bytes());
        head[0..4].copy_from_slice(&QCOW2_MAGIC);
        put32(&mut head, 4, 3);
        put32(&mut head, 20, cb);
        put64(&mut head, 24, self.size);
        put32(&mut head, 36, l1_size as u32);
        put64(&mut head, 40, l1_off);
        put64(&mut head, 48, rt_off);
        put32(&mut head, 56, 1);
        put32(&mut head, 96, 4); // refcount_order 4: 16-bit refcounts, the default
        put32(&mut head, 100, V3_HEADER_LEN);
        let mut pos = V3_HEADER_LEN as usize;
        if let Some((name, format)) = self.backing {
            if name.is_empty() || name.len() > MAX_BACKING_NAME {
                return Err(invalid(format!(
                    "the backing file name must be 1 to {MAX_BACKING_NAME} bytes long"
                )));
            }
            put32(&mut head, pos, EXT_BACKING_FORMAT);
            put32(&mut head, pos + 4, format.len() as u32);
            head[pos + 8..pos + 8 + format.len()].copy_from_slice(format.as_bytes());
            pos += 8 + format.len().next_multiple_of(8);
            // End-of-extensions marker: 8 zero bytes, already there.
            pos += 8;
            if pos + name.len() > head.len() {
                return Err(invalid("the backing file name does not fit in a cluster".into()));
            }
            head[pos..pos + name.len()].copy_from_slice(name);
            put64(&mut head, 8, pos as u64);
            put32(&mut head, 16, name.len() as u32);
        }

        let mut reftable = vec![0u8; cs as usize];
        put64(&mut reftable, 0, rb_off);
        let mut refblock = vec![0u8; cs as usize];
        for c in 0..total_clusters as usize {
            refblock[2 * c..2 * c + 2].copy_from_slice(&1u16.to_be_bytes());
        }
        // The L1 table is all zeroes (nothing allocated): extending the file provides it.
        file.file
            .set_len(total_clusters * cs)
            .map_err(|e| file.err("extending the new image", e))?;
        file.write_all_at(&reftable, rt_off)?;
        file.write_all_at(&refblock, rb_off)?;
        file.write_all_at(&head, 0)?;
        file.sync()
    }
}
