//! One virtio-blk request (virtio 1.2 §5.2.6): taken apart from its descriptor chain and carried
//! out on the disk image.
//!
//! A request is a device-readable header (type, reserved, sector), data, and a device-writable
//! status byte at the very end. The driver may split and merge these across descriptors as it
//! likes (§2.7.4, "message framing"), so the chain is read as two byte streams (the readable
//! part, then the writable part) and the header, data and status are cut out of those.
//! Everything here is guest-controlled: lengths and addresses are checked before use, and a
//! bad request gets VIRTIO_BLK_S_IOERR, never a panic.

use std::path::PathBuf;
use std::sync::Arc;

use keel_block::{BlockError, DiskImage};
use keel_memory::GuestRam;
use virtio_queue::desc::split::Descriptor;

use crate::virtio::metrics::{Counter, DeviceMetrics};

/// Bytes per sector: `sector` fields and the capacity count in these whatever the block size
/// (§5.2.4).
pub const SECTOR_SIZE: u64 = 512;
/// Length of the request header (§5.2.6: le32 type, le32 reserved, le64 sector).
const HEADER_LEN: u64 = 16;
/// Length of the serial number answer to VIRTIO_BLK_T_GET_ID (§5.2.6).
pub const ID_LEN: usize = 20;
/// Length of one discard / write-zeroes range (§5.2.6: le64 sector, le32 num_sectors,
/// le32 flags).
const RANGE_LEN: u64 = 16;
/// Largest piece of a read or write staged in the bounce buffer at a time, so a request of
/// any size needs bounded host memory.
const CHUNK: usize = 1 << 20;

// Request types (§5.2.6).
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
pub const T_DISCARD: u32 = 11;
pub const T_WRITE_ZEROES: u32 = 13;

// Status values (§5.2.6).
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

/// The only flag a discard / write-zeroes range may carry, and only for write zeroes (§5.2.6.2).
pub const FLAG_UNMAP: u32 = 1;

/// The disk a request runs against, and what the device negotiated about it.
pub struct Disk {
    pub image: Box<dyn DiskImage>,
    pub path: PathBuf,
    pub read_only: bool,
    /// Capacity in 512-byte sectors (a partial last sector of the image is not exposed).
    pub sectors: u64,
    /// The serial number, NUL-padded.
    pub id: [u8; ID_LEN],
    /// The driver did not negotiate VIRTIO_BLK_F_FLUSH: every write must be stable when it
    /// completes (§5.2.6.2, "a write becomes stable once it is completed and ... neither
    /// VIRTIO_BLK_F_CONFIG_WCE nor VIRTIO_BLK_F_FLUSH were negotiated").
    pub write_through: bool,
    /// Limits on one discard / write-zeroes request, as the configuration space states them.
    pub max_ranges: u32,
    pub max_range_sectors: u32,
    /// Staging buffer between the image and guest memory (grown to [`CHUNK`] on first use).
    buf: Vec<u8>,
    /// A host-side failure was already reported on stderr (they are reported once per disk).
    reported: bool,
    /// What the disk did, for the VMM's metrics.
    pub metrics: Arc<BlockMetrics>,
}

/// A disk's counters. Bytes count data moved by requests that succeeded; operations count
/// every request of their type; `errors` counts requests answered with anything but OK, and
/// chains that could not be answered at all.
#[derive(Debug, Default)]
pub struct BlockMetrics {
    pub read_bytes: Counter,
    pub write_bytes: Counter,
    pub read_ops: Counter,
    pub write_ops: Counter,
    pub flush_ops: Counter,
    pub discard_ops: Counter,
    pub write_zeroes_ops: Counter,
    pub errors: Counter,
    /// Times the rate limiter held a request back.
    pub rate_limited: Counter,
}

impl DeviceMetrics for BlockMetrics {
    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("read_bytes", self.read_bytes.get()),
            ("write_bytes", self.write_bytes.get()),
            ("read_ops", self.read_ops.get()),
            ("write_ops", self.write_ops.get()),
            ("flush_ops", self.flush_ops.get()),
            ("discard_ops", self.discard_ops.get()),
            ("write_zeroes_ops", self.write_zeroes_ops.get()),
            ("errors", self.errors.get()),
            ("rate_limited", self.rate_limited.get()),
        ]
    }
}

impl Disk {
    pub fn new(image: Box<dyn DiskImage>, path: PathBuf, read_only: bool, serial: &[u8]) -> Disk {
        let mut id = [0u8; ID_LEN];
        let n = serial.len().min(ID_LEN);
        id[..n].copy_from_slice(&serial[..n]);
        Disk {
            sectors: image.size() / SECTOR_SIZE,
            image,
            path,
            read_only,
            id,
            write_through: false,
            max_ranges: 1,
            max_range_sectors: 0,
            buf: Vec::new(),
            reported: false,
            metrics: Arc::default(),
        }
    }

    /// Turns an image error into the status the guest sees, telling the host operator about
    /// failures that are the host's business (a full or failing disk, a corrupt image) once.
    fn fail(&mut self, e: BlockError) -> u8 {
        let guest_caused = matches!(e, BlockError::OutOfRange { .. } | BlockError::ReadOnly { .. });
        if !guest_caused && !self.reported {
            self.reported = true;
            eprintln!(
                "keel: virtio-blk: {e}; the guest got an I/O error (further errors on {} are not \
                 shown)",
                self.path.display()
            );
        }
        S_IOERR
    }

    /// True when `sectors` sectors at `sector` lie on the disk.
    fn in_range(&self, sector: u64, sectors: u64) -> bool {
        sector.checked_add(sectors).is_some_and(|end| end <= self.sectors)
    }
}

/// A piece of guest memory a descriptor names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub addr: u64,
    pub len: u64,
}

/// Why a chain cannot be answered at all.
#[derive(Debug, PartialEq, Eq)]
pub struct NoStatus;

/// What the request asks for, once taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    In,
    Out,
    Flush,
    GetId,
    Discard,
    WriteZeroes,
    /// A type this device does not implement.
    Unsupported,
    /// A chain no request fits (short header, bad layout, memory outside RAM).
    Invalid,
}

/// A request, ready to run.
#[derive(Debug)]
pub struct Request {
    kind: Kind,
    sector: u64,
    /// The data buffers: device-writable for IN and GET_ID, device-readable otherwise.
    data: Vec<Segment>,
    data_len: u64,
    /// Length of the whole device-writable part (data for IN / GET_ID, then the status).
    writable_len: u64,
    /// Guest address of the status byte.
    status: u64,
}

impl Request {
    /// Takes a descriptor chain apart. Fails only when there is no status byte in RAM to
    /// answer through; every other problem becomes a request that fails with IOERR.
    pub fn parse(
        chain: impl Iterator<Item = Descriptor>,
        ram: &GuestRam,
    ) -> Result<Self, NoStatus> {
        let mut readable = Vec::new();
        let mut writable = Vec::new();
        let mut sound = true;
        for d in chain {
            if d.len() == 0 {
                continue;
            }
            let seg = Segment { addr: d.addr().0, len: d.len() as u64 };
            sound &= ram.contains(seg.addr, seg.len);
            if d.is_write_only() {
                writable.push(seg);
            } else {
                // Device-readable descriptors come first (§2.7.4.2).
                sound &= writable.is_empty();
                readable.push(seg);
            }
        }
        // The status is the chain's last byte and the device writes it (§5.2.6).
        let last = writable.last().ok_or(NoStatus)?;
        let status = last.addr + last.len - 1;
        if !ram.contains(status, 1) {
            return Err(NoStatus);
        }
        let writable_len: u64 = writable.iter().map(|s| s.len).sum();
        let mut req = Request {
            kind: Kind::Invalid,
            sector: 0,
            data: Vec::new(),
            data_len: 0,
            writable_len,
            status,
        };
        let mut header = [0u8; HEADER_LEN as usize];
        if !sound || gather(ram, &readable, &mut header).is_err() {
            return Ok(req);
        }
        let kind = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        req.sector = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        (req.kind, req.data) = match kind {
            T_IN => (Kind::In, drop_last_byte(writable)),
            T_GET_ID => (Kind::GetId, drop_last_byte(writable)),
            T_OUT => (Kind::Out, skip(readable, HEADER_LEN)),
            T_DISCARD => (Kind::Discard, skip(readable, HEADER_LEN)),
            T_WRITE_ZEROES => (Kind::WriteZeroes, skip(readable, HEADER_LEN)),
            T_FLUSH => (Kind::Flush, Vec::new()),
            _ => (Kind::Unsupported, Vec::new()),
        };
        req.data_len = req.data.iter().map(|s| s.len).sum();
        Ok(req)
    }

    /// What the rate limiter charges: the bytes moved between guest memory and the disk for
    /// reads and writes (Firecracker's model), nothing but the operation for the rest.
    pub fn bytes(&self) -> u64 {
        match self.kind {
            Kind::In | Kind::Out => self.data_len,
            _ => 0,
        }
    }

    /// Carries the request out, writes its status and returns the used length: how many bytes
    /// of the device-writable part, from its start, now hold what the device wrote (§2.7.8.2).
    pub fn execute(&self, disk: &mut Disk, ram: &GuestRam) -> u32 {
        let (status, written) = match self.kind {
            Kind::In => self.read(disk, ram),
            Kind::Out => (self.write(disk, ram), 0),
            Kind::Flush => (disk.image.flush().map_or_else(|e| disk.fail(e), |()| S_OK), 0),
            Kind::GetId => self.get_id(disk, ram),
            Kind::Discard | Kind::WriteZeroes => (self.ranges(disk, ram), 0),
            Kind::Unsupported => (S_UNSUPP, 0),
            Kind::Invalid => (S_IOERR, 0),
        };
        self.account(&disk.metrics, status);
        // The address was checked when parsing; nothing more can be done if this fails.
        let _ = ram.write_slice(self.status, &[status]);
        let used = if written + 1 == self.writable_len { self.writable_len } else { written };
        u32::try_from(used).unwrap_or(u32::MAX)
    }

    /// Counts the finished request in the disk's metrics.
    fn account(&self, m: &BlockMetrics, status: u8) {
        let ok = status == S_OK;
        match self.kind {
            Kind::In => {
                m.read_ops.inc();
                if ok {
                    m.read_bytes.add(self.data_len);
                }
            }
            Kind::Out => {
                m.write_ops.inc();
                if ok {
                    m.write_bytes.add(self.data_len);
                }
            }
            Kind::Flush => m.flush_ops.inc(),
            Kind::Discard => m.discard_ops.inc(),
            Kind::WriteZeroes => m.write_zeroes_ops.inc(),
            Kind::GetId | Kind::Unsupported | Kind::Invalid => {}
        }
        if !ok {
            m.errors.inc();
        }
    }

    /// The sectors a read or write covers, if it is whole sectors on the disk.
    fn data_sectors(&self, disk: &Disk) -> Option<u64> {
        let sectors = self.data_len / SECTOR_SIZE;
        (self.data_len % SECTOR_SIZE == 0 && disk.in_range(self.sector, sectors)).then_some(sectors)
    }

    fn read(&self, disk: &mut Disk, ram: &GuestRam) -> (u8, u64) {
        if self.data_sectors(disk).is_none() {
            return (S_IOERR, 0);
        }
        let base = self.sector * SECTOR_SIZE;
        let mut out = Cursor::new(&self.data);
        let mut done = 0u64;
        while done < self.data_len {
            let n = (self.data_len - done).min(CHUNK as u64) as usize;
            let buf = staging(&mut disk.buf, n);
            if let Err(e) = disk.image.read_at(base + done, buf) {
                return (disk.fail(e), done);
            }
            if out.write(ram, buf).is_err() {
                return (S_IOERR, done);
            }
            done += n as u64;
        }
        (S_OK, done)
    }

    fn write(&self, disk: &mut Disk, ram: &GuestRam) -> u8 {
        // A read-only disk takes no writes at all (§5.2.6.2).
        if disk.read_only || self.data_sectors(disk).is_none() {
            return S_IOERR;
        }
        let base = self.sector * SECTOR_SIZE;
        let mut src = Cursor::new(&self.data);
        let mut done = 0u64;
        while done < self.data_len {
            let n = (self.data_len - done).min(CHUNK as u64) as usize;
            let buf = staging(&mut disk.buf, n);
            if src.read(ram, buf).is_err() {
                return S_IOERR;
            }
            if let Err(e) = disk.image.write_at(base + done, buf) {
                return disk.fail(e);
            }
            done += n as u64;
        }
        // Completion is reported only after the data reached the image (and, without a
        // negotiated flush, stable storage).
        if disk.write_through {
            if let Err(e) = disk.image.flush() {
                return disk.fail(e);
            }
        }
        S_OK
    }

    fn get_id(&self, disk: &Disk, ram: &GuestRam) -> (u8, u64) {
        let n = (self.data_len as usize).min(ID_LEN);
        match Cursor::new(&self.data).write(ram, &disk.id[..n]) {
            Ok(()) => (S_OK, n as u64),
            Err(()) => (S_IOERR, 0),
        }
    }

    /// DISCARD and WRITE_ZEROES: the data is a list of ranges (§5.2.6).
    fn ranges(&self, disk: &mut Disk, ram: &GuestRam) -> u8 {
        if disk.read_only {
            return S_IOERR;
        }
        let count = self.data_len / RANGE_LEN;
        if self.data_len % RANGE_LEN != 0 || count == 0 || count > disk.max_ranges as u64 {
            return S_IOERR;
        }
        let mut raw = vec![0u8; self.data_len as usize];
        if gather(ram, &self.data, &mut raw).is_err() {
            return S_IOERR;
        }
        let ranges: Vec<(u64, u64, u32)> = raw
            .chunks_exact(RANGE_LEN as usize)
            .map(|r| {
                let sector = u64::from_le_bytes(r[0..8].try_into().expect("8 bytes"));
                let sectors = u32::from_le_bytes(r[8..12].try_into().expect("4 bytes"));
                let flags = u32::from_le_bytes(r[12..16].try_into().expect("4 bytes"));
                (sector, sectors as u64, flags)
            })
            .collect();
        // Check every range before touching the disk, so a bad request changes nothing.
        // Unknown flags, and unmap on a discard, are UNSUPP (§5.2.6.2).
        let allowed = if self.kind == Kind::WriteZeroes { FLAG_UNMAP } else { 0 };
        if ranges.iter().any(|&(_, _, flags)| flags & !allowed != 0) {
            return S_UNSUPP;
        }
        let fits = |&(sector, sectors, _): &(u64, u64, u32)| {
            sectors <= disk.max_range_sectors as u64 && disk.in_range(sector, sectors)
        };
        if !ranges.iter().all(fits) {
            return S_IOERR;
        }
        for (sector, sectors, _) in ranges {
            let (offset, len) = (sector * SECTOR_SIZE, sectors * SECTOR_SIZE);
            // Write zeroes may always deallocate (write_zeroes_may_unmap is 1); reads return
            // zeroes afterwards either way, which is all the spec requires.
            let done = if self.kind == Kind::Discard {
                disk.image.discard(offset, len)
            } else {
                disk.image.write_zeroes(offset, len)
            };
            if let Err(e) = done {
                return disk.fail(e);
            }
        }
        if disk.write_through {
            if let Err(e) = disk.image.flush() {
                return disk.fail(e);
            }
        }
        S_OK
    }
}

/// The first `n` bytes of the staging buffer.
fn staging(buf: &mut Vec<u8>, n: usize) -> &mut [u8] {
    if buf.len() < n {
        buf.resize(CHUNK.max(n), 0);
    }
    &mut buf[..n]
}

/// `segs` without its first `n` bytes.
fn skip(segs: Vec<Segment>, mut n: u64) -> Vec<Segment> {
    let mut out = Vec::with_capacity(segs.len());
    for s in segs {
        if n >= s.len {
            n -= s.len;
        } else {
            out.push(Segment { addr: s.addr + n, len: s.len - n });
            n = 0;
        }
    }
    out
}

/// `segs` without its last byte (the status).
fn drop_last_byte(mut segs: Vec<Segment>) -> Vec<Segment> {
    if let Some(last) = segs.last_mut() {
        last.len -= 1;
        if last.len == 0 {
            segs.pop();
        }
    }
    segs
}

/// Fills `buf` from the start of `segs`.
fn gather(ram: &GuestRam, segs: &[Segment], buf: &mut [u8]) -> Result<(), ()> {
    Cursor::new(segs).read(ram, buf)
}

/// A position in a list of segments, moving forward as bytes are copied.
struct Cursor<'a> {
    segs: &'a [Segment],
    /// Bytes already used of `segs[0]`.
    offset: u64,
}

impl<'a> Cursor<'a> {
    fn new(segs: &'a [Segment]) -> Self {
        Cursor { segs, offset: 0 }
    }

    /// Calls `f(address, length)` for the next `len` bytes, piece by piece.
    fn walk(
        &mut self,
        mut len: usize,
        mut f: impl FnMut(u64, usize, usize) -> Result<(), ()>,
    ) -> Result<(), ()> {
        let mut pos = 0;
        while len > 0 {
            let seg = self.segs.first().ok_or(())?;
            let n = (seg.len - self.offset).min(len as u64) as usize;
            f(seg.addr + self.offset, pos, n)?;
            self.offset += n as u64;
            if self.offset == seg.len {
                self.segs = &self.segs[1..];
                self.offset = 0;
            }
            pos += n;
            len -= n;
        }
        Ok(())
    }

    /// Copies guest memory into `buf`.
    fn read(&mut self, ram: &GuestRam, buf: &mut [u8]) -> Result<(), ()> {
        self.walk(buf.len(), |addr, pos, n| {
            ram.read_slice(addr, &mut buf[pos..pos + n]).map_err(|_| ())
        })
    }

    /// Copies `data` into guest memory (through `write_slice`, which tells the CPU when a
    /// page with decoded code was overwritten).
    fn write(&mut self, ram: &GuestRam, data: &[u8]) -> Result<(), ()> {
        self.walk(data.len(), |addr, pos, n| {
            ram.write_slice(addr, &data[pos..pos + n]).map_err(|_| ())
        })
    }
}
