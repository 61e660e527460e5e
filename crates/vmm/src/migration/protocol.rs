//! The wire format of a live migration: a preamble, then frames.
//!
//! Each side opens with the preamble: the 8 bytes `KEELMIG\n` and the protocol version (u32,
//! little-endian). A side that reads another magic, or a version it does not know, says so in
//! an `Error` frame and closes: nothing else is ever read from such a peer.
//!
//! A frame is `kind: u8`, `len: u32` (little-endian) and `len` bytes of payload; once the
//! peers have authenticated each other (see `auth.rs`), every frame also ends with a 32-byte
//! HMAC-SHA256 tag over `seq: u64 || kind || len || payload` under that direction's session
//! key, `seq` counting the direction's frames from 0. A frame whose tag does not match
//! (tampered with, corrupted, replayed, reordered or cut) ends the migration, so the final
//! machine state, like every page, is checksummed and authenticated. Payloads are at most
//! [`MAX_PAYLOAD`] bytes; a longer length is refused before anything is allocated.
//!
//! Payloads: structured ones (`Config`, `Round`, `Commit`, `Done`) are postcard, the
//! `State` frame is the postcard of `MachineState`, `Error` is UTF-8 text, `Pages` is a list
//! of `page: u64` (page number from the start of RAM), `what: u8` (0: 4096 bytes follow,
//! 1: the page is all zeros), page bytes.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::MigrationError;

/// The first bytes each side sends.
pub const MAGIC: [u8; 8] = *b"KEELMIG\n";
/// The protocol version this keel speaks (and the only one it accepts).
pub const VERSION: u32 = 1;
/// The largest frame payload: a `Pages` frame of [`PAGES_PER_FRAME`] pages, or the state.
pub const MAX_PAYLOAD: u32 = 16 << 20;
/// Pages in one `Pages` frame at most.
pub const PAGES_PER_FRAME: usize = 256;
pub const PAGE_SIZE: usize = 4096;
/// Bytes of one page entry in a `Pages` frame: page number, kind, and the page.
pub const PAGE_ENTRY: usize = 9 + PAGE_SIZE;
const TAG_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Receiver → sender: a fresh nonce to prove the token with (32 bytes).
    Challenge = 1,
    /// Sender → receiver: its nonce (32 bytes) and proof (32 bytes).
    Auth = 2,
    /// Receiver → sender: its proof (32 bytes).
    AuthOk = 3,
    /// Either way: why this side gives up (UTF-8 text); the connection closes after it.
    Error = 4,
    /// Sender → receiver: the VM ([`Config`]).
    Config = 5,
    /// Receiver → sender: the VM fits; send the memory.
    ConfigOk = 6,
    /// Sender → receiver: a pre-copy round begins ([`Round`]).
    Round = 7,
    /// Sender → receiver: pages of guest RAM.
    Pages = 8,
    /// Sender → receiver: the paused machine's state; the sender's disks are released.
    State = 9,
    /// Receiver → sender: the machine is built (disks open), paused.
    Ready = 10,
    /// Sender → receiver: run it ([`Commit`]); the source will not.
    Commit = 11,
    /// Receiver → sender: it runs.
    Done = 12,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        use Kind::*;
        Some(match b {
            1 => Challenge,
            2 => Auth,
            3 => AuthOk,
            4 => Error,
            5 => Config,
            6 => ConfigOk,
            7 => Round,
            8 => Pages,
            9 => State,
            10 => Ready,
            11 => Commit,
            12 => Done,
            _ => return None,
        })
    }
}

/// The VM a sender offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The VM file describing the machine exactly (absolute paths; disks are shared).
    pub vm_file: String,
    /// Guest RAM in bytes.
    pub ram_size: u64,
}

/// A pre-copy round: its number (0 sends all of RAM) and how many pages it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    pub round: u32,
    pub pages: u64,
    /// This is the stop-and-copy round: the source is paused.
    pub last: bool,
}

/// The sender's go-ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Let the guest run (false: the source VM was paused, so the receiver's stays paused).
    pub resume: bool,
}

/// One received frame.
#[derive(Debug)]
pub struct Frame {
    pub kind: Kind,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The payload decoded as postcard `T`.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<T, MigrationError> {
        postcard::from_bytes(&self.payload).map_err(|e| {
            MigrationError::Malformed(format!("a {:?} frame does not decode: {e}", self.kind))
        })
    }

    /// A fixed-size payload.
    pub fn bytes<const N: usize>(&self) -> Result<[u8; N], MigrationError> {
        self.payload.as_slice().try_into().map_err(|_| {
            MigrationError::Malformed(format!(
                "a {:?} frame has {} bytes, not {N}",
                self.kind,
                self.payload.len()
            ))
        })
    }
}

/// One direction's session key and frame counter.
struct Seal {
    key: HmacSha256,
    seq: u64,
}

impl Seal {
    fn tag(&mut self, kind: u8, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.key.clone();
        mac.update(&self.seq.to_le_bytes());
        mac.update(&[kind]);
        mac.update(&(payload.len() as u32).to_le_bytes());
        mac.update(payload);
        self.seq += 1;
        mac.finalize().into_bytes().into()
    }
}

/// A migration connection: frames in both directions over one TCP stream.
pub struct Channel {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    send_seal: Option<Seal>,
    recv_seal: Option<Seal>,
    /// Bytes written so far (frames and preamble).
    pub sent: u64,
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> MigrationError {
    move |source| MigrationError::from_io(what, source)
}

impl Channel {
    /// Wraps a connected stream; sends the preamble and checks the peer's.
    pub fn open(stream: TcpStream) -> Result<Channel, MigrationError> {
        let _ = stream.set_nodelay(true);
        let reader =
            BufReader::with_capacity(1 << 20, stream.try_clone().map_err(io_err("connection"))?);
        let writer = BufWriter::with_capacity(1 << 20, stream);
        let mut ch = Channel { reader, writer, send_seal: None, recv_seal: None, sent: 0 };
        let mut preamble = MAGIC.to_vec();
        preamble.extend_from_slice(&VERSION.to_le_bytes());
        ch.writer.write_all(&preamble).map_err(io_err("sending to the peer"))?;
        ch.writer.flush().map_err(io_err("sending to the peer"))?;
        ch.sent += preamble.len() as u64;
        let mut theirs = [0u8; 12];
        ch.reader.read_exact(&mut theirs).map_err(io_err("receiving from the peer"))?;
        if theirs[..8] != MAGIC {
            return Err(MigrationError::NotKeel);
        }
        let version = u32::from_le_bytes(theirs[8..].try_into().expect("4 bytes"));
        if version != VERSION {
            let _ = ch.send_error(&format!(
                "this keel speaks migration protocol version {VERSION}, not {version}"
            ));
            return Err(MigrationError::Version { theirs: version, ours: VERSION });
        }
        Ok(ch)
    }

    /// From now on every frame is tagged with these keys (ours for what we send, theirs for
    /// what we receive).
    pub fn seal(&mut self, send_key: &[u8; 32], recv_key: &[u8; 32]) {
        let key = |k: &[u8; 32]| HmacSha256::new_from_slice(k).expect("HMAC takes any key");
        self.send_seal = Some(Seal { key: key(send_key), seq: 0 });
        self.recv_seal = Some(Seal { key: key(recv_key), seq: 0 });
    }

    /// Queues a frame (see [`Channel::flush`]).
    pub fn send(&mut self, kind: Kind, payload: &[u8]) -> Result<(), MigrationError> {
        if payload.len() > MAX_PAYLOAD as usize {
            return Err(MigrationError::Malformed(format!(
                "a {kind:?} frame of {} bytes is larger than the protocol allows",
                payload.len()
            )));
        }
        let mut header = [0u8; 5];
        header[0] = kind as u8;
        header[1..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        let w = &mut self.writer;
        w.write_all(&header)
            .and_then(|_| w.write_all(payload))
            .map_err(io_err("sending to the peer"))?;
        self.sent += (header.len() + payload.len()) as u64;
        if let Some(seal) = &mut self.send_seal {
            let tag = seal.tag(kind as u8, payload);
            self.writer.write_all(&tag).map_err(io_err("sending to the peer"))?;
            self.sent += TAG_LEN as u64;
        }
        Ok(())
    }

    /// Sends a postcard-encoded frame.
    pub fn send_value<T: Serialize>(
        &mut self,
        kind: Kind,
        value: &T,
    ) -> Result<(), MigrationError> {
        let payload = postcard::to_stdvec(value)
            .map_err(|e| MigrationError::Malformed(format!("cannot encode {kind:?}: {e}")))?;
        self.send(kind, &payload)
    }

    /// Sends what is queued.
    pub fn flush(&mut self) -> Result<(), MigrationError> {
        self.writer.flush().map_err(io_err("sending to the peer"))
    }

    /// Tells the peer why we give up (best effort: the connection may be gone already).
    pub fn send_error(&mut self, why: &str) -> Result<(), MigrationError> {
        let mut text = why.as_bytes();
        text = &text[..text.len().min(4096)];
        self.send(Kind::Error, text)?;
        self.flush()
    }

    /// Reads the next frame. An `Error` frame from the peer comes back as
    /// [`MigrationError::Refused`].
    pub fn recv(&mut self) -> Result<Frame, MigrationError> {
        let mut header = [0u8; 5];
        self.reader.read_exact(&mut header).map_err(io_err("receiving from the peer"))?;
        let len = u32::from_le_bytes(header[1..].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD {
            return Err(MigrationError::Malformed(format!(
                "the peer announced a frame of {len} bytes; at most {MAX_PAYLOAD} are allowed"
            )));
        }
        let mut payload = vec![0u8; len as usize];
        self.reader.read_exact(&mut payload).map_err(io_err("receiving from the peer"))?;
        if let Some(seal) = &mut self.recv_seal {
            let mut tag = [0u8; TAG_LEN];
            self.reader.read_exact(&mut tag).map_err(io_err("receiving from the peer"))?;
            let expected = seal.tag(header[0], &payload);
            if !constant_time_eq(&expected, &tag) {
                return Err(MigrationError::BadTag);
            }
        }
        let kind = Kind::from_u8(header[0]).ok_or_else(|| {
            MigrationError::Malformed(format!("unknown frame type {}", header[0]))
        })?;
        if kind == Kind::Error {
            let text = String::from_utf8_lossy(&payload).into_owned();
            return Err(MigrationError::Refused(text));
        }
        Ok(Frame { kind, payload })
    }

    /// Reads the next frame, which must be of `kind`.
    pub fn expect(&mut self, kind: Kind) -> Result<Frame, MigrationError> {
        let frame = self.recv()?;
        if frame.kind != kind {
            return Err(MigrationError::Unexpected { expected: kind, got: frame.kind });
        }
        Ok(frame)
    }

    /// The underlying stream (for timeouts and shutdown).
    pub fn stream(&self) -> &TcpStream {
        self.writer.get_ref()
    }
}

/// Compares two tags without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Appends one page entry to a `Pages` payload: `data` is the page, or `None` for a zero page.
pub fn put_page(payload: &mut Vec<u8>, page: u64, data: Option<&[u8]>) {
    payload.extend_from_slice(&page.to_le_bytes());
    match data {
        Some(bytes) => {
            payload.push(0);
            payload.extend_from_slice(bytes);
        }
        None => payload.push(1),
    }
}

/// The entries of a `Pages` payload, checked: `(page number, Some(page bytes) | None for a
/// zero page)`. Any malformed entry is an error, never a panic.
pub fn pages(payload: &[u8]) -> impl Iterator<Item = Result<(u64, Option<&[u8]>), MigrationError>> {
    let mut rest = payload;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let bad =
            |what: &str| Some(Err(MigrationError::Malformed(format!("a Pages frame {what}"))));
        if rest.len() < 9 {
            rest = &[];
            return bad("ends inside an entry");
        }
        let page = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let what = rest[8];
        rest = &rest[9..];
        match what {
            0 if rest.len() >= PAGE_SIZE => {
                let (data, tail) = rest.split_at(PAGE_SIZE);
                rest = tail;
                Some(Ok((page, Some(data))))
            }
            0 => {
                rest = &[];
                bad("ends inside a page")
            }
            1 => Some(Ok((page, None))),
            other => {
                rest = &[];
                bad(&format!("has an entry of unknown kind {other}"))
            }
        }
    })
}

/// True when every byte of `page` is zero.
pub fn is_zero(page: &[u8]) -> bool {
    let mut chunks = page.chunks_exact(16);
    chunks.by_ref().all(|c| u128::from_ne_bytes(c.try_into().expect("16 bytes")) == 0)
        && chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
