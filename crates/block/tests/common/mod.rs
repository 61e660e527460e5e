//! Helpers for the image tests: scratch directories, qemu-img/qemu-io, a deterministic PRNG.
//! The tests need QEMU's tools (Debian package qemu-utils) and fail, never skip, without them.

#![allow(dead_code)] // each test crate uses a different subset

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use keel_block::{DiskImage, ImageFormat, OpenOptions};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("keel-block-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tool(name: &str, args: &[&str]) -> Output {
    match Command::new(name).args(args).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{name} is not installed; keel-block's tests check images with QEMU's tools: \
             install them with `apt-get install qemu-utils`"
        ),
        Err(e) => panic!("running {name}: {e}"),
    }
}

/// Runs qemu-img; returns its output whatever the exit status.
pub fn qemu_img(args: &[&str]) -> Output {
    tool("qemu-img", args)
}

/// Runs a tool and returns its stdout, failing the test if it fails.
fn ok(name: &str, args: &[&str]) -> String {
    let o = tool(name, args);
    assert!(
        o.status.success(),
        "{name} {args:?} failed ({}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn qemu_img_ok(args: &[&str]) -> String {
    ok("qemu-img", args)
}

/// `qemu-img create -f qcow2 -o OPTS IMG` with either a virtual size or a raw backing file
/// (named relative to the image, as users write it).
pub fn qemu_img_create_qcow2(img: &Path, opts: &str, size_or_raw_backing: Backing) {
    let mut args = vec!["create", "-q", "-f", "qcow2", "-o", opts];
    match size_or_raw_backing {
        Backing::None(size) => {
            args.push(s(img));
            args.push(size);
        }
        Backing::Raw(base) => {
            args.extend(["-b", base, "-F", "raw", s(img)]);
        }
    }
    qemu_img_ok(&args);
}

/// What [`qemu_img_create_qcow2`] makes: a standalone image of a size, or an overlay.
pub enum Backing<'a> {
    None(&'a str),
    Raw(&'a str),
}

pub fn qemu_io_ok(args: &[&str]) -> String {
    let out = ok("qemu-io", args);
    // qemu-io reports failed commands on stdout but still exits 0.
    assert!(!out.contains("failed"), "qemu-io {args:?}: {out}");
    out
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `qemu-img check` must find no errors and no leaks (exit status 0).
pub fn assert_check_clean(img: &Path) {
    let o = qemu_img(&["check", "-f", "qcow2", s(img)]);
    assert!(
        o.status.code() == Some(0),
        "qemu-img check {} is not clean ({}):\n{}{}",
        img.display(),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// After a simulated crash: no corruption, leaks allowed (exit status 0 or 3). -U because
/// the "crashed" image's lock is still held by this process.
pub fn assert_check_no_corruption(img: &Path) {
    let o = qemu_img(&["check", "-U", "-f", "qcow2", s(img)]);
    assert!(
        matches!(o.status.code(), Some(0) | Some(3)),
        "qemu-img check {} found corruption ({}):\n{}{}",
        img.display(),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// What qemu reads from an image: `qemu-img convert -O raw`.
pub fn qemu_contents(img: &Path, format: &str, scratch: &TempDir) -> Vec<u8> {
    let out = scratch.path("qemu-view.raw");
    let _ = fs::remove_file(&out);
    qemu_img_ok(&["convert", "-f", format, "-O", "raw", s(img), s(&out)]);
    let data = fs::read(&out).unwrap();
    fs::remove_file(&out).unwrap();
    data
}

/// FNV-1a, to compare large contents in assertion messages without printing them.
pub fn hash(data: &[u8]) -> u64 {
    data.iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
        panic!(
            "{what}: contents differ (hash {:#x} vs {:#x}); first difference at byte {first:#x}: \
             {:#04x} instead of {:#04x}",
            hash(got),
            hash(want),
            got[first],
            want[first]
        );
    }
}

/// xorshift64*: deterministic test data and operations.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// Bytes that identify their own position (and a seed), so misplaced data is detected.
pub fn pattern(seed: u8, offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let p = offset + i;
            (p ^ (p >> 8) ^ (p >> 16) ^ (p >> 24)) as u8 ^ seed
        })
        .collect()
}

pub fn open_rw(path: &Path) -> Box<dyn DiskImage> {
    keel_block::open(path, &OpenOptions { read_only: false, format: None })
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

pub fn open_ro(path: &Path) -> Box<dyn DiskImage> {
    keel_block::open(path, &OpenOptions { read_only: true, format: None })
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

pub fn open_fmt(path: &Path, read_only: bool, format: ImageFormat) -> Box<dyn DiskImage> {
    keel_block::open(path, &OpenOptions { read_only, format: Some(format) })
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// Reads the whole image through keel.
pub fn keel_contents(img: &mut dyn DiskImage) -> Vec<u8> {
    let mut buf = vec![0u8; img.size() as usize];
    // In odd-sized pieces, to exercise request splitting.
    let mut pos = 0;
    let mut step = 1 << 20;
    while pos < buf.len() {
        let n = step.min(buf.len() - pos);
        img.read_at(pos as u64, &mut buf[pos..pos + n]).unwrap();
        pos += n;
        step = step * 3 / 2 + 4097;
    }
    buf
}

/// Writes `model` to a raw file.
pub fn write_raw(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap();
}
