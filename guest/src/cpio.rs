//! A minimal writer for the `newc` cpio format, the one the Linux kernel
//! unpacks as an initramfs (Documentation/driver-api/early-userspace/
//! buffer-format.rst). The archive stays uncompressed: keel's software CPU
//! boots faster copying bytes than running a decompressor.
//!
//! Every header field is 8 ASCII hex digits; name and data are each padded to
//! a multiple of 4 bytes, counted from the start of the archive.

use std::io::{self, Write};

/// File type bits of `st_mode`.
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
pub const TRAILER: &str = "TRAILER!!!";

/// One archive member. Paths are relative ("bin/busybox"), as GNU cpio and
/// the kernel's own `gen_init_cpio` write them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    /// Full `st_mode`: file type bits and permissions.
    pub mode: u32,
    /// Device number for character/block nodes.
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

impl Entry {
    pub fn dir(path: &str, perm: u32) -> Self {
        Self::new(path, S_IFDIR | perm, Vec::new())
    }
    pub fn file(path: &str, perm: u32, data: Vec<u8>) -> Self {
        Self::new(path, S_IFREG | perm, data)
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        Self::new(path, S_IFLNK | 0o777, target.as_bytes().to_vec())
    }
    pub fn char_dev(path: &str, perm: u32, major: u32, minor: u32) -> Self {
        Entry { rdev: (major, minor), ..Self::new(path, S_IFCHR | perm, Vec::new()) }
    }
    fn new(path: &str, mode: u32, data: Vec<u8>) -> Self {
        Entry { path: path.trim_start_matches('/').to_string(), mode, rdev: (0, 0), data }
    }
}

fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn write_header<W: Write>(
    out: &mut W,
    fields: &[u32; 13],
    name: &str,
    written: &mut usize,
) -> io::Result<()> {
    let mut header = Vec::with_capacity(HEADER_LEN + name.len() + 4);
    header.extend_from_slice(MAGIC);
    for f in fields {
        header.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    header.extend_from_slice(name.as_bytes());
    header.push(0);
    header.resize(header.len() + pad4(header.len()), 0);
    out.write_all(&header)?;
    *written += header.len();
    Ok(())
}

/// Writes `entries` in the order given (callers sort them: parents before
/// children, and a fixed order makes the archive reproducible). Owner is
/// root, mtime 0, inode numbers count up from 1, so equal inputs give equal
/// bytes. Returns the archive's length.
pub fn write_archive<W: Write>(out: &mut W, entries: &[Entry]) -> io::Result<usize> {
    let mut written = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let name_len = u32::try_from(e.path.len() + 1).map_err(|_| too_big(&e.path))?;
        let size = u32::try_from(e.data.len()).map_err(|_| too_big(&e.path))?;
        // nlink 1 for everything but directories: the kernel treats nlink >= 2
        // on a regular file as a hard link candidate and would look it up.
        let nlink = if e.mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        let ino = u32::try_from(i + 1).map_err(|_| too_big(&e.path))?;
        let fields = [ino, e.mode, 0, 0, nlink, 0, size, 0, 0, e.rdev.0, e.rdev.1, name_len, 0];
        write_header(out, &fields, &e.path, &mut written)?;
        out.write_all(&e.data)?;
        out.write_all(&[0u8; 3][..pad4(e.data.len())])?;
        written += e.data.len() + pad4(e.data.len());
    }
    let mut fields = [0u32; 13];
    fields[4] = 1; // nlink, as GNU cpio writes its trailer
    fields[11] = (TRAILER.len() + 1) as u32;
    write_header(out, &fields, TRAILER, &mut written)?;
    Ok(written)
}

fn too_big(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{path}: too large for a newc cpio archive"),
    )
}

/// Parses a `newc` archive back into entries (up to the trailer). Strict on
/// purpose: it checks magic, hex fields and that padding bytes are zero, so
/// tests catch any layout mistake of the writer. `pull` reads a cached
/// initrd back to swap its /init.
pub fn parse_archive(buf: &[u8]) -> Result<Vec<Entry>, String> {
    let mut pos = 0usize;
    let mut entries = Vec::new();
    loop {
        let header =
            buf.get(pos..pos + HEADER_LEN).ok_or_else(|| format!("truncated header at {pos}"))?;
        if &header[..6] != MAGIC {
            return Err(format!("bad magic at {pos}"));
        }
        let mut f = [0u32; 13];
        for (i, v) in f.iter_mut().enumerate() {
            let hex = std::str::from_utf8(&header[6 + i * 8..14 + i * 8])
                .map_err(|_| format!("non-ASCII field at {pos}"))?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("bad hex field {i} at {pos}: {hex:?}"));
            }
            *v = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
        }
        let (mode, size, rdev, name_len) = (f[1], f[6] as usize, (f[9], f[10]), f[11] as usize);
        if name_len == 0 {
            return Err(format!("empty name at {pos}"));
        }
        let name_start = pos + HEADER_LEN;
        let name_bytes = buf.get(name_start..name_start + name_len).ok_or("truncated name")?;
        if name_bytes[name_len - 1] != 0 {
            return Err(format!("name not NUL-terminated at {pos}"));
        }
        let name = String::from_utf8(name_bytes[..name_len - 1].to_vec())
            .map_err(|_| "non-UTF-8 name".to_string())?;
        let mut data_start = name_start + name_len;
        let name_pad = pad4(data_start);
        check_zero(buf, data_start, name_pad)?;
        data_start += name_pad;
        if name == TRAILER {
            return Ok(entries);
        }
        let data = buf
            .get(data_start..data_start + size)
            .ok_or_else(|| format!("truncated data of {name}"))?
            .to_vec();
        let data_pad = pad4(data_start + size);
        check_zero(buf, data_start + size, data_pad)?;
        pos = data_start + size + data_pad;
        entries.push(Entry { path: name, mode, rdev, data });
    }
}

fn check_zero(buf: &[u8], at: usize, len: usize) -> Result<(), String> {
    match buf.get(at..at + len) {
        Some(p) if p.iter().all(|&b| b == 0) => Ok(()),
        Some(_) => Err(format!("non-zero padding at {at}")),
        None => Err(format!("truncated padding at {at}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry::dir("bin", 0o755),
            Entry::file("bin/x", 0o755, b"abc".to_vec()),
            Entry::dir("dev", 0o755),
            Entry::char_dev("dev/console", 0o600, 5, 1),
            Entry::file("empty", 0o644, Vec::new()),
            Entry::file("four", 0o644, b"1234".to_vec()),
            Entry::symlink("sh", "bin/x"),
        ]
    }

    #[test]
    fn round_trip_and_alignment() {
        let mut buf = Vec::new();
        let len = write_archive(&mut buf, &sample()).unwrap();
        assert_eq!(len, buf.len());
        assert_eq!(buf.len() % 4, 0);
        assert_eq!(parse_archive(&buf).unwrap(), sample());
        // The first header, byte by byte: ino 1, dir 0755, nlink 2, name "bin".
        let first = std::str::from_utf8(&buf[..HEADER_LEN]).unwrap();
        let expected = [
            "070701",   // magic
            "00000001", // ino
            "000041ed", // mode: directory, 0755
            "00000000", // uid
            "00000000", // gid
            "00000002", // nlink
            "00000000", // mtime
            "00000000", // filesize
            "00000000", // devmajor
            "00000000", // devminor
            "00000000", // rdevmajor
            "00000000", // rdevminor
            "00000004", // namesize, with the NUL
            "00000000", // check
        ];
        assert_eq!(first, expected.concat());
        assert_eq!(&buf[HEADER_LEN..HEADER_LEN + 4], b"bin\0");
        // The archive ends with the trailer, padded to 4.
        let tail = String::from_utf8_lossy(&buf[buf.len() - 16..]).to_string();
        assert!(tail.contains("TRAILER!!!\0"), "{tail:?}");
    }

    #[test]
    fn same_input_same_bytes() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_archive(&mut a, &sample()).unwrap();
        write_archive(&mut b, &sample()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn parser_rejects_garbage() {
        let mut buf = Vec::new();
        write_archive(&mut buf, &sample()).unwrap();
        let mut bad = buf.clone();
        bad[0] = b'1';
        assert!(parse_archive(&bad).is_err());
        assert!(parse_archive(&buf[..buf.len() - 20]).is_err());
    }

    /// Cross-check with GNU cpio when the host has it (skipped otherwise:
    /// the round trip above is the test that always runs).
    #[test]
    fn gnu_cpio_lists_it() {
        use std::process::{Command, Stdio};
        let mut buf = Vec::new();
        write_archive(&mut buf, &sample()).unwrap();
        let child = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("cpio not installed; skipping the cross-check");
            return;
        };
        child.stdin.take().unwrap().write_all(&buf).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 7, "{listing}");
        assert!(lines[0].starts_with("drwxr-xr-x"), "{listing}");
        assert!(lines[1].starts_with("-rwxr-xr-x") && lines[1].ends_with("bin/x"));
        assert!(lines[3].starts_with("crw-------") && lines[3].contains("5,"));
        assert!(lines[6].starts_with("lrwxrwxrwx") && lines[6].ends_with("sh -> bin/x"));
    }
}
