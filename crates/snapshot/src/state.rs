//! `state.bin`: the VM's and devices' state as named, versioned sections.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! 0   magic           8 bytes  "KEELSNAP"
//! 8   format version  u32      FORMAT_VERSION
//! 12  body length     u64      N
//! 20  body            N bytes
//!       created       u64 seconds + u32 nanoseconds since the Unix epoch
//!       keel version  u16 length + UTF-8
//!       section count u32
//!       per section   u16 name length + UTF-8 name, u32 version, u64 payload length, payload
//! 20+N checksum       u32      CRC32C of bytes 0..20+N
//! ```
//!
//! Magic and format version come first and at fixed offsets so that a file from a newer keel
//! (whose body this one may not understand) is refused as "newer" rather than "corrupt". The
//! explicit body length tells a truncated file from a corrupted one. Payloads are `postcard`
//! encodings of the caller's serde types; the framing around them is hand-written so that the
//! container does not change when postcard's encoding of some type does.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{io_err, Error, Result};

/// The first eight bytes of every `state.bin`.
pub const MAGIC: [u8; 8] = *b"KEELSNAP";
/// The `state.bin` format this keel writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The oldest format this keel reads.
pub const MIN_FORMAT_VERSION: u32 = 1;

const PREFIX_LEN: usize = 20;
const CHECKSUM_LEN: usize = 4;

/// When and by what a snapshot was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub format_version: u32,
    pub created: SystemTime,
    pub keel_version: String,
}

#[derive(Debug, Clone)]
struct Section {
    name: String,
    version: u32,
    payload: Vec<u8>,
}

/// Collects sections in memory and encodes them as a `state.bin`.
#[derive(Debug, Clone)]
pub struct StateWriter {
    keel_version: String,
    created: SystemTime,
    sections: Vec<Section>,
}

impl Default for StateWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl StateWriter {
    /// An empty state stamped with now and this crate's version (the workspace's, i.e. keel's).
    pub fn new() -> Self {
        StateWriter {
            keel_version: env!("CARGO_PKG_VERSION").to_owned(),
            created: SystemTime::now(),
            sections: Vec::new(),
        }
    }

    /// Adds section `name` holding `value` encoded with postcard.
    pub fn put<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        version: u32,
        value: &T,
    ) -> Result<()> {
        let payload = postcard::to_stdvec(value)
            .map_err(|source| Error::Encode { section: name.to_owned(), source })?;
        self.put_raw(name, version, payload)
    }

    /// Adds section `name` with an already-encoded payload.
    pub fn put_raw(&mut self, name: &str, version: u32, payload: Vec<u8>) -> Result<()> {
        if name.is_empty() || name.len() > usize::from(u16::MAX) {
            return Err(Error::BadSectionName { section: name.to_owned() });
        }
        if self.sections.iter().any(|s| s.name == name) {
            return Err(Error::DuplicateSection { section: name.to_owned() });
        }
        self.sections.push(Section { name: name.to_owned(), version, payload });
        Ok(())
    }

    /// Whether a section of this name has been added.
    pub fn contains(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s.name == name)
    }

    /// The complete file contents, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let since = self.created.duration_since(UNIX_EPOCH).unwrap_or_default();
        body.extend_from_slice(&since.as_secs().to_le_bytes());
        body.extend_from_slice(&since.subsec_nanos().to_le_bytes());
        put_str(&mut body, &self.keel_version);
        body.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for s in &self.sections {
            put_str(&mut body, &s.name);
            body.extend_from_slice(&s.version.to_le_bytes());
            body.extend_from_slice(&(s.payload.len() as u64).to_le_bytes());
            body.extend_from_slice(&s.payload);
        }
        let mut out = Vec::with_capacity(PREFIX_LEN + body.len() + CHECKSUM_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// Strings in the header are short (the keel version, section names): a u16 length suffices,
/// and `put_raw` refuses longer names. The keel version is clipped rather than refused.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// A verified, parsed `state.bin`.
#[derive(Debug, Clone)]
pub struct State {
    path: PathBuf,
    checksum: u32,
    header: Header,
    sections: Vec<Section>,
}

impl State {
    /// Reads and verifies `path`.
    pub fn read(path: &Path) -> Result<State> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Missing { path: path.to_owned(), what: "state.bin" }
            } else {
                io_err(path, "read")(e)
            }
        })?;
        State::decode(&bytes, path)
    }

    /// Verifies and parses file contents; `path` is only used in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<State> {
        let path = path.to_owned();
        // Magic first: a short file whose bytes so far are the magic's is truncated, any other
        // file is simply not ours.
        let magic_len = bytes.len().min(MAGIC.len());
        if bytes[..magic_len] != MAGIC[..magic_len] {
            return Err(Error::BadMagic { path });
        }
        if bytes.len() < PREFIX_LEN {
            return Err(Error::Truncated {
                path,
                expected: (PREFIX_LEN + CHECKSUM_LEN) as u64,
                actual: bytes.len() as u64,
            });
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version > FORMAT_VERSION {
            return Err(Error::NewerFormat { path, version, supported: FORMAT_VERSION });
        }
        if version < MIN_FORMAT_VERSION {
            return Err(Error::UnsupportedFormat { path, version, supported: FORMAT_VERSION });
        }
        let body_len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let expected = (PREFIX_LEN as u64 + CHECKSUM_LEN as u64).saturating_add(body_len);
        let actual = bytes.len() as u64;
        if actual < expected {
            return Err(Error::Truncated { path, expected, actual });
        }
        if actual > expected {
            return Err(Error::Malformed {
                path,
                detail: format!("{} bytes after the checksum", actual - expected),
            });
        }
        let end = expected as usize - CHECKSUM_LEN;
        let stored = u32::from_le_bytes(bytes[end..].try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(&bytes[..end]);
        if stored != computed {
            return Err(Error::ChecksumMismatch { path, stored, computed });
        }
        match parse_body(&bytes[PREFIX_LEN..end], version) {
            Ok((header, sections)) => Ok(State { path, checksum: stored, header, sections }),
            Err(detail) => Err(Error::Malformed { path, detail }),
        }
    }

    /// The file this state came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's (verified) CRC32C.
    pub fn checksum(&self) -> u32 {
        self.checksum
    }

    /// When and by which keel the snapshot was taken.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Section names and versions, in the order they were written.
    pub fn sections(&self) -> impl Iterator<Item = (&str, u32)> {
        self.sections.iter().map(|s| (s.name.as_str(), s.version))
    }

    /// Whether the file has a section of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Section `name`'s version and raw payload.
    pub fn get_raw(&self, name: &str) -> Result<(u32, &[u8])> {
        let s = self.find(name).ok_or_else(|| Error::MissingSection {
            path: self.path.clone(),
            section: name.to_owned(),
        })?;
        Ok((s.version, &s.payload))
    }

    /// Section `name` decoded as `T`, with its version. The caller must check the version (or
    /// use [`State::get_supported`]); this only refuses a missing or undecodable section.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<(u32, T)> {
        let (version, payload) = self.get_raw(name)?;
        let value = postcard::from_bytes(payload).map_err(|source| Error::Decode {
            path: self.path.clone(),
            section: name.to_owned(),
            version,
            source,
        })?;
        Ok((version, value))
    }

    /// Like [`State::get`], but refuses a version outside `min..=max` before decoding, since a
    /// payload of an unknown version may well decode as `T` and mean something else.
    pub fn get_supported<T: DeserializeOwned>(
        &self,
        name: &str,
        min: u32,
        max: u32,
    ) -> Result<(u32, T)> {
        let (version, _) = self.get_raw(name)?;
        if !(min..=max).contains(&version) {
            return Err(self.unknown_version(name, version, min, max));
        }
        self.get(name)
    }

    /// The error for a section version the caller does not understand, for callers that
    /// dispatch on the version themselves.
    pub fn unknown_version(&self, name: &str, version: u32, min: u32, max: u32) -> Error {
        Error::UnknownSectionVersion {
            path: self.path.clone(),
            section: name.to_owned(),
            version,
            min,
            max,
        }
    }

    fn find(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// A cursor over the checksummed body. Its errors are strings: with a good checksum they can
/// only come from a buggy writer, and `decode` wraps them in `Malformed` with the path.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], String> {
        if n > self.rest.len() as u64 {
            return Err(format!("{what} runs past the end of the body"));
        }
        let (head, tail) = self.rest.split_at(n as usize);
        self.rest = tail;
        Ok(head)
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.u16(what)?;
        let bytes = self.take(u64::from(len), what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

fn parse_body(body: &[u8], format_version: u32) -> Result<(Header, Vec<Section>), String> {
    let mut c = Cursor { rest: body };
    let secs = c.u64("creation time")?;
    let nanos = c.u32("creation time")?;
    let created = UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos.min(999_999_999)))
        .ok_or("creation time out of range")?;
    let keel_version = c.string("keel version")?;
    let count = c.u32("section count")?;
    let mut sections: Vec<Section> = Vec::new();
    for i in 0..count {
        let name = c.string(&format!("section {i} name"))?;
        let version = c.u32(&format!("section {name:?} version"))?;
        let len = c.u64(&format!("section {name:?} length"))?;
        let payload = c.take(len, &format!("section {name:?}"))?.to_vec();
        if sections.iter().any(|s| s.name == name) {
            return Err(format!("section {name:?} appears twice"));
        }
        sections.push(Section { name, version, payload });
    }
    if !c.rest.is_empty() {
        return Err(format!("{} unexplained bytes after the last section", c.rest.len()));
    }
    Ok((Header { format_version, created, keel_version }, sections))
}
