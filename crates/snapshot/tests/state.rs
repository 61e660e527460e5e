//! `state.bin`: round trip, and every refusal of a damaged or foreign file.

use std::path::Path;
use std::time::{Duration, SystemTime};

use keel_snapshot::{Error, State, StateWriter, FORMAT_VERSION};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Hart {
    pc: u64,
    regs: [u64; 32],
    mode: u8,
    pending: Vec<u32>,
    name: String,
}

fn hart(i: u64) -> Hart {
    let mut regs = [0; 32];
    for (r, v) in regs.iter_mut().enumerate() {
        *v = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(r as u64);
    }
    Hart { pc: 0x8020_0000 + i, regs, mode: 1, pending: vec![5, 9], name: format!("hart{i}") }
}

fn sample() -> Vec<u8> {
    let mut w = StateWriter::new();
    w.put("cpu.0", 3, &hart(0)).unwrap();
    w.put("cpu.1", 3, &hart(1)).unwrap();
    w.put("uart", 1, &(0x3u8, vec![1u8, 2, 3])).unwrap();
    w.put_raw("empty", 7, Vec::new()).unwrap();
    w.encode()
}

fn decode(bytes: &[u8]) -> Result<State, Error> {
    State::decode(bytes, Path::new("snap/state.bin"))
}

#[test]
fn round_trip() {
    let before = SystemTime::now() - Duration::from_secs(1);
    let state = decode(&sample()).unwrap();
    let header = state.header();
    assert_eq!(header.format_version, FORMAT_VERSION);
    assert_eq!(header.keel_version, env!("CARGO_PKG_VERSION"));
    assert!(header.created >= before && header.created <= SystemTime::now());

    assert_eq!(state.get::<Hart>("cpu.0").unwrap(), (3, hart(0)));
    assert_eq!(state.get::<Hart>("cpu.1").unwrap(), (3, hart(1)));
    assert_eq!(state.get::<(u8, Vec<u8>)>("uart").unwrap(), (1, (3, vec![1, 2, 3])));
    assert_eq!(state.get_raw("empty").unwrap(), (7, &[][..]));
    let names: Vec<_> = state.sections().collect();
    assert_eq!(names, [("cpu.0", 3), ("cpu.1", 3), ("uart", 1), ("empty", 7)]);
    assert!(state.contains("uart") && !state.contains("plic"));
    assert_eq!(state.get_supported::<Hart>("cpu.0", 2, 3).unwrap().1, hart(0));
}

#[test]
fn writer_refuses_duplicate_and_bad_names() {
    let mut w = StateWriter::new();
    w.put("a", 1, &1u32).unwrap();
    assert!(matches!(w.put("a", 2, &2u32), Err(Error::DuplicateSection { .. })));
    assert!(matches!(w.put("", 1, &1u32), Err(Error::BadSectionName { .. })));
    assert!(matches!(w.put(&"x".repeat(70_000), 1, &1u32), Err(Error::BadSectionName { .. })));
}

#[test]
fn missing_section_names_it_and_the_file() {
    let state = decode(&sample()).unwrap();
    let err = state.get::<Hart>("plic").unwrap_err();
    assert!(matches!(&err, Error::MissingSection { section, .. } if section == "plic"));
    let msg = err.to_string();
    assert!(msg.contains("snap/state.bin") && msg.contains("\"plic\""), "{msg}");
}

#[test]
fn unknown_section_version_is_refused() {
    let state = decode(&sample()).unwrap();
    let err = state.get_supported::<Hart>("cpu.0", 1, 2).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownSectionVersion { version: 3, min: 1, max: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("version 3"), "{err}");
}

#[test]
fn wrong_type_is_a_decode_error() {
    let state = decode(&sample()).unwrap();
    // The "uart" payload is 5 bytes; a Hart needs far more.
    let err = state.get::<Hart>("uart").unwrap_err();
    assert!(matches!(err, Error::Decode { version: 1, .. }), "{err:?}");
}

#[test]
fn truncation_anywhere_is_refused() {
    let bytes = sample();
    // Inside the magic, the version, the length, the header, a section, the checksum.
    let cuts = [0, 1, 7, 8, 11, 12, 19, 20, 30, 60, bytes.len() / 2, bytes.len() - 4];
    for cut in cuts.into_iter().chain([bytes.len() - 1]) {
        match decode(&bytes[..cut]) {
            Err(Error::Truncated { expected, actual, .. }) => {
                assert_eq!(actual, cut as u64);
                assert!(expected > actual);
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn every_flipped_byte_is_refused() {
    let bytes = sample();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        let err = decode(&bad).expect_err("a flipped byte must not decode");
        match i {
            0..=7 => assert!(matches!(err, Error::BadMagic { .. }), "{i}: {err:?}"),
            // Bit 6 of the version's low byte: version 65, newer than this keel.
            8 => assert!(matches!(err, Error::NewerFormat { version: 65, .. }), "{err:?}"),
            9..=11 => assert!(matches!(err, Error::NewerFormat { .. }), "{i}: {err:?}"),
            // The body length: the file is now too short or has trailing bytes.
            12..=19 => assert!(
                matches!(err, Error::Truncated { .. } | Error::Malformed { .. }),
                "{i}: {err:?}"
            ),
            _ => assert!(matches!(err, Error::ChecksumMismatch { .. }), "{i}: {err:?}"),
        }
    }
}

#[test]
fn checksum_message_says_what_to_do() {
    let mut bytes = sample();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let msg = decode(&bytes).unwrap_err().to_string();
    assert!(msg.contains("snap/state.bin") && msg.contains("checksum"), "{msg}");
    assert!(msg.contains("take it again"), "{msg}");
}

/// Rewrites the format version and fixes up the checksum, as a future keel's file would be.
fn with_version(mut bytes: Vec<u8>, version: u32) -> Vec<u8> {
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    let end = bytes.len() - 4;
    let crc = crc32c::crc32c(&bytes[..end]);
    bytes[end..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn newer_format_is_refused_before_anything_else() {
    let newer = with_version(sample(), FORMAT_VERSION + 1);
    let err = decode(&newer).unwrap_err();
    assert!(
        matches!(err, Error::NewerFormat { version, supported, .. }
            if version == FORMAT_VERSION + 1 && supported == FORMAT_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer keel"), "{err}");
    // Even a newer file whose body this keel can't parse (different layout, short) says
    // "newer", not "truncated" or "corrupt".
    let mut short = newer[..20].to_vec();
    short[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(decode(&short), Err(Error::NewerFormat { .. })));

    let zero = with_version(sample(), 0);
    assert!(matches!(decode(&zero), Err(Error::UnsupportedFormat { version: 0, .. })));
}

#[test]
fn foreign_files_are_bad_magic() {
    assert!(matches!(decode(b"\x7fELF\x02\x01\x01\0 and so on..."), Err(Error::BadMagic { .. })));
    assert!(matches!(decode(b"KEELSNAX"), Err(Error::BadMagic { .. })));
    // Extra bytes after the checksum are not silently ignored.
    let mut long = sample();
    long.push(0);
    assert!(matches!(decode(&long), Err(Error::Malformed { .. })));
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.bin");
    let err = State::read(&path).unwrap_err();
    assert!(matches!(&err, Error::Missing { path: p, .. } if *p == path), "{err:?}");
}
