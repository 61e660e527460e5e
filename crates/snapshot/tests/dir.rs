//! Snapshot directories: the whole write/open cycle, and interrupted or damaged snapshots.

use std::fs;
use std::path::Path;

use keel_snapshot::{
    Error, MemoryKind, Snapshot, SnapshotWriter, COMPLETE_FILE, MEMORY_FILE, PAGE_SIZE, STATE_FILE,
};

const PAGE: usize = PAGE_SIZE as usize;

fn ram() -> Vec<u8> {
    let mut ram = vec![0u8; 1024 * PAGE];
    ram[..PAGE].fill(1);
    ram[700 * PAGE..][..2 * PAGE].fill(2);
    ram
}

fn take(dir: &Path, ram: &[u8]) {
    let mut w = SnapshotWriter::create(dir).unwrap();
    w.put("cpu.0", 1, &(0x8020_0000u64, [7u64; 32])).unwrap();
    w.put("vm", 2, "vcpus = 1\nmemory = 4\n").unwrap();
    w.write_memory(ram, |_, _| {}).unwrap();
    w.finish().unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn full_snapshot_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    let ram = ram();
    take(&dir, &ram);
    assert_eq!(names(&dir), [COMPLETE_FILE, MEMORY_FILE, STATE_FILE]);

    let snap = Snapshot::open(&dir).unwrap();
    let (v, (pc, regs)): (u32, (u64, [u64; 32])) = snap.state().get("cpu.0").unwrap();
    assert_eq!((v, pc, regs), (1, 0x8020_0000, [7; 32]));
    assert_eq!(snap.state().get::<String>("vm").unwrap().1, "vcpus = 1\nmemory = 4\n");
    let info = snap.memory().unwrap();
    assert_eq!((info.len, &info.kind), (ram.len() as u64, &MemoryKind::Full));
    let mem = snap.map_memory().unwrap();
    assert!(mem[..] == ram[..]);
    // A full snapshot is not a diff.
    let err = snap.apply_memory_diff(&mut ram.clone()).unwrap_err();
    assert!(matches!(err, Error::MemoryKind { found: "full", wanted: "diff", .. }), "{err:?}");
}

#[test]
fn diff_snapshot_restores_over_its_base() {
    let tmp = tempfile::tempdir().unwrap();
    let (base_dir, diff_dir) = (tmp.path().join("base"), tmp.path().join("diff"));
    let base = ram();
    take(&base_dir, &base);

    let mut now = base.clone();
    now[5 * PAGE..][..PAGE].fill(9);
    now[700 * PAGE..][..PAGE].fill(0);
    let mut w = SnapshotWriter::create(&diff_dir).unwrap();
    w.put("cpu.0", 1, &(0x8020_1000u64, [8u64; 32])).unwrap();
    w.write_memory_diff(&now, [5, 700], |_, _| {}).unwrap();
    w.finish().unwrap();

    let base_snap = Snapshot::open(&base_dir).unwrap();
    let diff_snap = Snapshot::open(&diff_dir).unwrap();
    let mut mem = base_snap.map_memory().unwrap();
    diff_snap.apply_memory_diff(&mut mem).unwrap();
    assert!(mem[..] == now[..]);
    assert!(matches!(diff_snap.map_memory(), Err(Error::MemoryKind { found: "diff", .. })));
}

#[test]
fn dropped_writer_leaves_nothing_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    let mut w = SnapshotWriter::create(&dir).unwrap();
    w.put("cpu.0", 1, &1u64).unwrap();
    w.write_memory(&ram(), |_, _| {}).unwrap();
    // Mid-snapshot, only partial files exist.
    assert_eq!(names(&dir), ["memory.bin.partial"]);
    assert!(matches!(Snapshot::open(&dir), Err(Error::Incomplete { .. })));
    drop(w);
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    let err = Snapshot::open(&dir).unwrap_err();
    assert!(matches!(&err, Error::Incomplete { .. }), "{err:?}");
    assert!(err.to_string().contains("interrupted"), "{err}");
}

#[test]
fn killed_writer_leaves_nothing_complete() {
    // A writer killed outright runs no destructor: simulate with mem::forget.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    let mut w = SnapshotWriter::create(&dir).unwrap();
    w.write_memory(&ram(), |_, _| {}).unwrap();
    std::mem::forget(w);
    assert!(matches!(Snapshot::open(&dir), Err(Error::Incomplete { .. })));
}

#[test]
fn rewriting_a_snapshot_invalidates_it_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    take(&dir, &ram());
    Snapshot::open(&dir).unwrap();
    // A new snapshot into the same directory that never finishes: the old one must not stay
    // openable with new files half in place.
    let w = SnapshotWriter::create(&dir).unwrap();
    assert!(matches!(Snapshot::open(&dir), Err(Error::Incomplete { .. })));
    drop(w);
    assert!(matches!(Snapshot::open(&dir), Err(Error::Incomplete { .. })));
    // And one that does finish replaces it, state-only this time: the old memory goes.
    let mut w = SnapshotWriter::create(&dir).unwrap();
    w.put("only", 1, &()).unwrap();
    w.finish().unwrap();
    let snap = Snapshot::open(&dir).unwrap();
    assert!(snap.memory().is_none() && !dir.join(MEMORY_FILE).exists());
    assert!(matches!(snap.map_memory(), Err(Error::Missing { .. })));
}

#[test]
fn damaged_directories_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    let ram = ram();

    let err = Snapshot::open(&tmp.path().join("nope")).unwrap_err();
    assert!(matches!(err, Error::Missing { what: "snapshot directory", .. }), "{err:?}");

    // Each case starts from a good snapshot and damages one thing.
    type Damage = fn(&Path);
    type Check = fn(&Error) -> bool;
    let cases: [(&str, Damage, Check); 7] = [
        (
            "state.bin missing",
            |d| fs::remove_file(d.join(STATE_FILE)).unwrap(),
            |e| matches!(e, Error::Missing { what: "state.bin", .. }),
        ),
        (
            "memory.bin missing",
            |d| fs::remove_file(d.join(MEMORY_FILE)).unwrap(),
            |e| matches!(e, Error::Missing { what: "memory image", .. }),
        ),
        (
            "marker missing",
            |d| fs::remove_file(d.join(COMPLETE_FILE)).unwrap(),
            |e| matches!(e, Error::Incomplete { .. }),
        ),
        (
            "state.bin truncated",
            |d| truncate(&d.join(STATE_FILE), 40),
            |e| matches!(e, Error::Truncated { .. }),
        ),
        (
            "memory.bin truncated",
            |d| truncate(&d.join(MEMORY_FILE), 100 * PAGE_SIZE),
            |e| {
                matches!(e, Error::Truncated { expected, actual: 0x6_4000, .. }
                if *expected == 1024 * PAGE_SIZE)
            },
        ),
        (
            "state.bin byte flipped",
            |d| {
                let path = d.join(STATE_FILE);
                let mut bytes = fs::read(&path).unwrap();
                bytes[30] ^= 0x10;
                fs::write(&path, bytes).unwrap();
            },
            |e| matches!(e, Error::ChecksumMismatch { .. }),
        ),
        (
            "marker from another snapshot",
            |d| fs::write(d.join(COMPLETE_FILE), "keel snapshot complete\n").unwrap(),
            |e| matches!(e, Error::Malformed { .. }),
        ),
    ];
    for (what, damage, expect) in cases {
        let _ = fs::remove_dir_all(&dir);
        take(&dir, &ram);
        damage(&dir);
        match Snapshot::open(&dir) {
            Err(e) if expect(&e) => {
                let msg = e.to_string();
                assert!(msg.contains(dir.to_str().unwrap()), "{what}: no path in {msg:?}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}
