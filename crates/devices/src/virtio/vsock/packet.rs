//! virtio-vsock packets (virtio 1.2 §5.10.6): the 44-byte header and moving packets between
//! descriptor chains and host memory. Everything here treats the guest's descriptors as
//! untrusted: lengths are checked against the chain before anything is allocated or copied.

use keel_memory::{GuestMemoryMmap, GuestRam};
use virtio_queue::DescriptorChain;

/// Size of `struct virtio_vsock_hdr` (§5.10.6): it is packed, little-endian.
pub const HDR_SIZE: usize = 44;

/// The host's context ID (§5.10.4: CID 2 is the host).
pub const HOST_CID: u64 = 2;

/// `type` values (§5.10.6). Only stream sockets are offered (no VIRTIO_VSOCK_F_SEQPACKET).
pub const TYPE_STREAM: u16 = 1;

/// `op` values (§5.10.6).
pub mod op {
    pub const REQUEST: u16 = 1;
    pub const RESPONSE: u16 = 2;
    pub const RST: u16 = 3;
    pub const SHUTDOWN: u16 = 4;
    pub const RW: u16 = 5;
    pub const CREDIT_UPDATE: u16 = 6;
    pub const CREDIT_REQUEST: u16 = 7;
}

/// SHUTDOWN `flags` (§5.10.6.5, "Stream Sockets"): the sender will receive / send no more data.
pub mod shutdown {
    pub const RCV: u32 = 1;
    pub const SEND: u32 = 2;
    pub const BOTH: u32 = RCV | SEND;
}

/// `struct virtio_vsock_hdr`, decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Header {
    pub fn parse(b: &[u8; HDR_SIZE]) -> Header {
        let le64 = |at: usize| u64::from(le32(b, at)) | u64::from(le32(b, at + 4)) << 32;
        let le16 = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        Header {
            src_cid: le64(0),
            dst_cid: le64(8),
            src_port: le32(b, 16),
            dst_port: le32(b, 20),
            len: le32(b, 24),
            type_: le16(28),
            op: le16(30),
            flags: le32(b, 32),
            buf_alloc: le32(b, 36),
            fwd_cnt: le32(b, 40),
        }
    }

    pub fn to_bytes(self) -> [u8; HDR_SIZE] {
        let mut b = [0u8; HDR_SIZE];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }

    /// The RST answering `self` (addresses swapped): the answer to a connection request
    /// nobody takes (§5.10.6.5, "Stream Sockets"), and to any packet of no connection.
    pub fn reset_reply(&self) -> Header {
        Header {
            src_cid: self.dst_cid,
            dst_cid: self.src_cid,
            src_port: self.dst_port,
            dst_port: self.src_port,
            // The same type, so the guest can match it to the socket that asked.
            type_: self.type_,
            op: op::RST,
            ..Header::default()
        }
    }
}

/// Why a packet from the driver could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("the buffer holds {0} bytes, less than a packet header")]
    TooShort(usize),
    #[error("the header claims {len} payload bytes, more than the {max} a packet may carry")]
    TooLong { len: u32, max: u32 },
    #[error("the header claims {len} payload bytes but the buffer holds only {available}")]
    Truncated { len: u32, available: usize },
    #[error("a descriptor points outside guest RAM")]
    BadAddress,
}

/// The guest-memory pieces (address, length) of one direction of a descriptor chain, seen as
/// one contiguous byte range.
#[derive(Debug, Default)]
pub struct Segments {
    parts: Vec<(u64, u32)>,
    total: usize,
}

impl Segments {
    /// The driver-readable (`writable == false`) or device-writable part of `chain`.
    /// virtio-queue's iterator already bounds the chain's length and follows indirect tables.
    pub fn of(chain: DescriptorChain<&GuestMemoryMmap>, writable: bool) -> Segments {
        let mut s = Segments::default();
        for d in chain {
            if d.is_write_only() == writable && d.len() > 0 {
                s.parts.push((d.addr().0, d.len()));
                s.total = s.total.saturating_add(d.len() as usize);
            }
        }
        s
    }

    #[cfg(test)]
    pub fn from_parts(parts: &[(u64, u32)]) -> Segments {
        Segments { parts: parts.to_vec(), total: parts.iter().map(|p| p.1 as usize).sum() }
    }

    pub fn len(&self) -> usize {
        self.total
    }

    /// Copies bytes starting `offset` bytes into the segments into `buf` (all of it).
    pub fn read_at(
        &self,
        ram: &GuestRam,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), PacketError> {
        self.walk(offset, buf.len(), |addr, at, n| {
            ram.read_slice(addr, &mut buf[at..at + n]).map_err(|_| PacketError::BadAddress)
        })
    }

    /// Copies `data` into the segments starting `offset` bytes in (through
    /// [`GuestRam::write_slice`], which tells the CPU's decoded-code cache).
    pub fn write_at(&self, ram: &GuestRam, offset: usize, data: &[u8]) -> Result<(), PacketError> {
        self.walk(offset, data.len(), |addr, at, n| {
            ram.write_slice(addr, &data[at..at + n]).map_err(|_| PacketError::BadAddress)
        })
    }

    /// Calls `f(guest_addr, position_in_buffer, count)` for each piece of the range
    /// `offset..offset + len`, which the caller made sure lies within `self.len()`.
    fn walk(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(u64, usize, usize) -> Result<(), PacketError>,
    ) -> Result<(), PacketError> {
        let mut skip = offset;
        let mut done = 0;
        for &(addr, plen) in &self.parts {
            if done == len {
                break;
            }
            let plen = plen as usize;
            if skip >= plen {
                skip -= plen;
                continue;
            }
            let n = (plen - skip).min(len - done);
            let addr = addr.checked_add(skip as u64).ok_or(PacketError::BadAddress)?;
            f(addr, done, n)?;
            done += n;
            skip = 0;
        }
        if done == len {
            Ok(())
        } else {
            Err(PacketError::Truncated { len: len as u32, available: done })
        }
    }
}

/// A packet the driver put on the tx queue.
#[derive(Debug, PartialEq, Eq)]
pub struct TxPacket {
    pub hdr: Header,
    /// The payload of an RW packet; empty for every other op (their `len` is ignored).
    pub payload: Vec<u8>,
}

/// Reads the packet in the driver-readable part of a tx chain. The header and payload may be
/// split across descriptors any way the driver likes (virtio 1.2 "Message Framing": the
/// device must not assume a layout). `max_payload` bounds what is copied.
pub fn read_tx(
    ram: &GuestRam,
    segs: &Segments,
    max_payload: u32,
) -> Result<TxPacket, (Option<Header>, PacketError)> {
    if segs.len() < HDR_SIZE {
        return Err((None, PacketError::TooShort(segs.len())));
    }
    let mut raw = [0u8; HDR_SIZE];
    segs.read_at(ram, 0, &mut raw).map_err(|e| (None, e))?;
    let hdr = Header::parse(&raw);
    if hdr.op != op::RW || hdr.len == 0 {
        return Ok(TxPacket { hdr, payload: Vec::new() });
    }
    if hdr.len > max_payload {
        return Err((Some(hdr), PacketError::TooLong { len: hdr.len, max: max_payload }));
    }
    let available = segs.len() - HDR_SIZE;
    if hdr.len as usize > available {
        return Err((Some(hdr), PacketError::Truncated { len: hdr.len, available }));
    }
    let mut payload = vec![0u8; hdr.len as usize];
    segs.read_at(ram, HDR_SIZE, &mut payload).map_err(|e| (Some(hdr), e))?;
    Ok(TxPacket { hdr, payload })
}

/// Writes a packet (header, then `payload`) into the device-writable part of an rx chain and
/// returns the number of bytes written, for the used ring. The caller sized `payload` to fit.
pub fn write_rx(
    ram: &GuestRam,
    segs: &Segments,
    hdr: &Header,
    payload: &[u8],
) -> Result<u32, PacketError> {
    let total = HDR_SIZE + payload.len();
    if total > segs.len() {
        return Err(PacketError::Truncated { len: payload.len() as u32, available: segs.len() });
    }
    let mut hdr = *hdr;
    hdr.len = payload.len() as u32;
    segs.write_at(ram, 0, &hdr.to_bytes())?;
    segs.write_at(ram, HDR_SIZE, payload)?;
    Ok(total as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x8000_0000;

    fn ram() -> GuestRam {
        GuestRam::new(BASE, 1 << 20).unwrap()
    }

    fn sample() -> Header {
        Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 0x1234_5678,
            dst_port: 5000,
            len: 7,
            type_: TYPE_STREAM,
            op: op::RW,
            flags: 0,
            buf_alloc: 256 * 1024,
            fwd_cnt: 0xdead_beef,
        }
    }

    #[test]
    fn the_header_layout_matches_the_spec() {
        let b = sample().to_bytes();
        assert_eq!(&b[0..8], &3u64.to_le_bytes());
        assert_eq!(&b[8..16], &2u64.to_le_bytes());
        assert_eq!(&b[16..20], &0x1234_5678u32.to_le_bytes());
        assert_eq!(&b[20..24], &5000u32.to_le_bytes());
        assert_eq!(&b[24..28], &7u32.to_le_bytes());
        assert_eq!(&b[28..30], &1u16.to_le_bytes());
        assert_eq!(&b[30..32], &5u16.to_le_bytes());
        assert_eq!(&b[36..40], &(256u32 * 1024).to_le_bytes());
        assert_eq!(&b[40..44], &0xdead_beefu32.to_le_bytes());
        assert_eq!(Header::parse(&b), sample());
    }

    #[test]
    fn a_reset_reply_swaps_the_addresses() {
        let r = sample().reset_reply();
        assert_eq!((r.src_cid, r.dst_cid, r.src_port, r.dst_port), (2, 3, 5000, 0x1234_5678));
        assert_eq!((r.op, r.type_, r.len), (op::RST, TYPE_STREAM, 0));
    }

    #[test]
    fn a_packet_split_anywhere_across_descriptors_reads_back_whole() {
        let ram = ram();
        let mut bytes = sample().to_bytes().to_vec();
        bytes.extend_from_slice(b"payload");
        // Header split 10 + 34, payload split 3 + 4 in the second and third descriptors.
        ram.write_slice(BASE + 0x100, &bytes[..10]).unwrap();
        ram.write_slice(BASE + 0x200, &bytes[10..47]).unwrap();
        ram.write_slice(BASE + 0x300, &bytes[47..]).unwrap();
        let segs =
            Segments::from_parts(&[(BASE + 0x100, 10), (BASE + 0x200, 37), (BASE + 0x300, 4)]);
        let p = read_tx(&ram, &segs, 1024).unwrap();
        assert_eq!(p.hdr, sample());
        assert_eq!(p.payload, b"payload");
    }

    #[test]
    fn bad_lengths_are_errors_not_panics() {
        let ram = ram();
        ram.write_slice(BASE, &sample().to_bytes()).unwrap();
        let short = Segments::from_parts(&[(BASE, 43)]);
        assert_eq!(read_tx(&ram, &short, 1024), Err((None, PacketError::TooShort(43))));
        // len 7 but only 3 payload bytes in the chain.
        let trunc = Segments::from_parts(&[(BASE, 47)]);
        assert_eq!(
            read_tx(&ram, &trunc, 1024),
            Err((Some(sample()), PacketError::Truncated { len: 7, available: 3 }))
        );
        let mut huge = sample();
        huge.len = u32::MAX;
        ram.write_slice(BASE, &huge.to_bytes()).unwrap();
        let segs = Segments::from_parts(&[(BASE, 4096)]);
        assert_eq!(
            read_tx(&ram, &segs, 65536),
            Err((Some(huge), PacketError::TooLong { len: u32::MAX, max: 65536 }))
        );
        // Descriptors outside RAM, or whose address wraps around.
        let outside = Segments::from_parts(&[(0x10, 44)]);
        assert_eq!(read_tx(&ram, &outside, 1024), Err((None, PacketError::BadAddress)));
        let wrap = Segments::from_parts(&[(u64::MAX - 3, 44)]);
        assert!(read_tx(&ram, &wrap, 1024).is_err());
    }

    #[test]
    fn only_rw_packets_carry_a_payload() {
        let ram = ram();
        let mut h = sample();
        h.op = op::CREDIT_UPDATE;
        h.len = 100_000;
        ram.write_slice(BASE, &h.to_bytes()).unwrap();
        let p = read_tx(&ram, &Segments::from_parts(&[(BASE, 44)]), 1024).unwrap();
        assert_eq!(p.hdr.op, op::CREDIT_UPDATE);
        assert!(p.payload.is_empty());
    }

    #[test]
    fn rx_packets_fill_the_chain_from_the_start() {
        let ram = ram();
        let segs = Segments::from_parts(&[(BASE + 0x1000, 20), (BASE + 0x2000, 100)]);
        let n = write_rx(&ram, &segs, &sample(), b"hello, guest").unwrap();
        assert_eq!(n as usize, HDR_SIZE + 12);
        let mut raw = [0u8; HDR_SIZE + 12];
        segs.read_at(&ram, 0, &mut raw).unwrap();
        let hdr = Header::parse(raw[..HDR_SIZE].try_into().unwrap());
        assert_eq!(hdr.len, 12, "len is set from the payload");
        assert_eq!(&raw[HDR_SIZE..], b"hello, guest");
        let small = Segments::from_parts(&[(BASE, 50)]);
        assert!(write_rx(&ram, &small, &sample(), &[0; 7]).is_err());
    }
}
