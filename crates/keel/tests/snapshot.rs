//! End-to-end: snapshots of running Debian guests (`keel snapshot`, `keel restore`, the API's
//! `PUT /snapshot/create|load`): the restored guest goes on where it stopped, with its
//! processes and memory; diff snapshots hold only what changed; clones get their own identity
//! and share memory; appliances (`keel export`/`import`) carry a VM and its snapshot; broken
//! snapshots are refused.
//!
//! Every test has its own state root (`KEEL_STATE_DIR`), so they run in parallel.

mod common;
#[path = "common/store.rs"]
mod store;

use std::path::Path;
use std::process::Command;

use common::*;
use store::{Root, PROMPT};

/// Starts a counter in the guest: `count=N` five times a second, N from a shell variable (so
/// it lives in the guest's memory, not in a file).
const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo count=$i; sleep 0.2; done &";

/// The `count=N` values in a console log, in order (the loop's own command line excluded).
fn counts(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| !l.contains("echo count="))
        .filter_map(|l| l.rsplit_once("count=")?.1.trim().parse().ok())
        .collect()
}

/// Boots `name` (with a VM file, if given), starts the counter and leaves a marker in guest
/// RAM (/tmp is tmpfs).
fn boot_counting(root: &Root, name: &str, vm_file: Option<&Path>) {
    match vm_file {
        Some(f) => root.ok(&["create", name, f.to_str().unwrap()]),
        None => root.ok(&["create", name]),
    };
    root.ok(&["start", name]);
    root.await_console(name, PROMPT, 0);
    root.type_line(name, "echo marker-$((4000 + 242)) > /tmp/marker");
    root.type_line(name, COUNTER);
    let typed = root.await_console(name, "echo count=", 0);
    let first = root.await_console(name, "count=", typed);
    root.await_console(name, "count=", first);
}

/// Waits until `name` prints `n` more counts after `from`, and returns every count after it.
fn more_counts(root: &Root, name: &str, from: usize, n: usize) -> Vec<u64> {
    let mut at = from;
    for _ in 0..n {
        at = root.await_console(name, "count=", at);
        at = root.await_console(name, "\n", at);
    }
    counts(&root.console_log(name)[from..])
}

fn assert_consecutive(counts: &[u64], what: &str) {
    for w in counts.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{what}: the count went {} -> {}: {counts:?}", w[0], w[1]);
    }
}

#[test]
fn a_restored_guest_goes_on_where_it_was_saved_and_diffs_hold_only_changes() {
    image();
    let root = Root::new("snap");
    // A disk and an entropy device, so that virtio queues are part of the saved state.
    let disk = root.0.join("disk.img");
    std::fs::File::create(&disk).unwrap().set_len(8 << 20).unwrap();
    let vm_file = root.0.join("vm.toml");
    std::fs::write(&vm_file, "rng = true\n[[disk]]\npath = \"disk.img\"\n").unwrap();
    boot_counting(&root, "orig", Some(&vm_file));
    let from = root.console_log("orig").len();
    root.type_line(
        "orig",
        "echo before-snapshot | dd of=/dev/vda conv=fsync 2>/dev/null; echo wrote-$?",
    );
    root.await_console("orig", "wrote-0", from);
    let full = root.0.join("full");
    let out = root.ok(&["snapshot", "orig", full.to_str().unwrap(), "--leave-paused"]);
    assert!(out.contains("Full snapshot of orig"), "{out}");
    assert_eq!(root.state("orig"), "paused", "--leave-paused leaves it paused");
    let saved_log = root.console_log("orig");
    let last = *counts(&saved_log).last().expect("counts before the snapshot");
    for file in ["state.bin", "memory.bin", "complete"] {
        assert!(full.join(file).is_file(), "the snapshot has {file}");
    }
    // The source goes on after a resume, from where it was.
    root.ok(&["resume", "orig"]);
    let went_on = more_counts(&root, "orig", saved_log.len(), 2);
    assert!(went_on[0] <= last + 2 && went_on[0] >= last, "{last} then {went_on:?}");
    root.ok(&["stop", "orig"]);

    // Restored: the same shell process counts on from the saved value, never from 1, and
    // the tmpfs file written before the snapshot is there.
    root.ok(&["restore", full.to_str().unwrap(), "back"]);
    assert_eq!(root.state("back"), "running");
    let back = more_counts(&root, "back", 0, 3);
    assert!(
        back[0] >= last && back[0] <= last + 2,
        "the restored counter continues from {last}, not from the start: {back:?}"
    );
    assert_consecutive(&back, "restored guest");
    let from = root.console_log("back").len();
    root.type_line("back", "cat /tmp/marker");
    root.await_console("back", "marker-4242", from);
    // The devices go on too: the disk reads what was written before the snapshot and takes
    // a new write; the entropy device still answers.
    root.type_line("back", "head -c 15 /dev/vda; echo; head -c 16 /dev/hwrng | wc -c");
    let at = root.await_console("back", "before-snapshot", from);
    root.await_console("back", "16", at);
    root.type_line(
        "back",
        "echo after-restore | dd of=/dev/vda bs=512 seek=8 conv=fsync 2>/dev/null; echo wrote-$?",
    );
    root.await_console("back", "wrote-0", at);

    // A diff snapshot of the restored VM holds only the pages written since the restore.
    let diff = root.0.join("diff");
    let out = root.ok(&["snapshot", "back", diff.to_str().unwrap(), "--diff", "--leave-paused"]);
    assert!(out.contains("Diff snapshot of back"), "{out}");
    let words: Vec<&str> = out.split_whitespace().collect();
    let pages: u64 = words
        .windows(2)
        .find_map(|w| w[1].starts_with("pages").then(|| w[0].parse().ok()).flatten())
        .unwrap_or_else(|| panic!("pages in {out:?}"));
    let all = 256 * 256;
    assert!(pages > 0 && pages < all / 4, "a diff of a counting guest is small: {pages} pages");
    let diff_bytes = du(&diff.join("memory.bin"));
    let full_bytes = du(&full.join("memory.bin"));
    assert!(diff_bytes < full_bytes / 2, "diff {diff_bytes} B on disk, full {full_bytes} B");
    let back_log = root.console_log("back");
    let back_last = *counts(&back_log).last().unwrap();
    root.ok(&["stop", "back"]);

    // Restoring the diff applies it over the full snapshot it names.
    root.ok(&["restore", diff.to_str().unwrap(), "back2"]);
    let back2 = more_counts(&root, "back2", 0, 3);
    assert!(back2[0] >= back_last && back2[0] <= back_last + 2, "{back_last} then {back2:?}");
    assert_consecutive(&back2, "guest restored from a diff");
    let from = root.console_log("back2").len();
    root.type_line("back2", "cat /tmp/marker");
    root.await_console("back2", "marker-4242", from);
    // The disk as back left it: its write after the restore came with the diff snapshot.
    root.type_line("back2", "dd if=/dev/vda bs=512 skip=8 count=1 2>/dev/null | head -c 13; echo");
    root.await_console("back2", "after-restore", from);
    root.ok(&["stop", "back2"]);
    // Restored VMs write to overlays of their own: neither the VM's image nor the snapshot's
    // copy of it changed.
    for image in [disk.clone(), full.join("disk0.img")] {
        let bytes = std::fs::read(&image).unwrap();
        assert!(bytes.starts_with(b"before-snapshot"), "{}", image.display());
        assert!(!bytes[4096..].starts_with(b"after-restore"), "{} was written", image.display());
    }
}

/// Resident and proportional set size of a process, in KiB (`/proc/PID/smaps_rollup`).
fn rss_pss(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    (field("Rss:"), field("Pss:"))
}

#[test]
fn clones_get_their_own_identity_and_disks_and_share_memory() {
    image();
    let root = Root::new("clone");
    let disk = root.0.join("disk.img");
    std::fs::File::create(&disk).unwrap().set_len(8 << 20).unwrap();
    let vm_file = root.0.join("vm.toml");
    std::fs::write(
        &vm_file,
        "[[disk]]\npath = \"disk.img\"\n[vsock]\ncid = 3\nuds = \"tmpl.sock\"\n",
    )
    .unwrap();
    boot_counting(&root, "tmpl", Some(&vm_file));
    let snap = root.0.join("tmpl-snap");
    root.ok(&["snapshot", "tmpl", snap.to_str().unwrap(), "--leave-paused"]);
    let last = *counts(&root.console_log("tmpl")).last().unwrap();
    root.ok(&["stop", "tmpl"]);

    let names = ["c0", "c1", "c2"];
    let out = root.ok(&["clone", snap.to_str().unwrap(), names[0], names[1], names[2]]);
    let mut cids = Vec::new();
    for name in names {
        let line = out.lines().find(|l| l.starts_with(&format!("{name}:"))).expect("a line each");
        let cid: u64 = line
            .split("vsock CID ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        cids.push(cid);
        let vm = std::fs::read_to_string(root.vm_dir(name).join("vm.toml")).unwrap();
        assert!(vm.contains(&format!("cid = {cid}")), "{vm}");
        assert!(vm.contains(root.vm_dir(name).join("vsock.sock").to_str().unwrap()), "{vm}");
    }
    cids.sort();
    cids.dedup();
    assert_eq!(cids.len(), 3, "every clone has its own CID: {out}");
    assert!(!cids.contains(&3), "the template's CID stays the template's: {cids:?}");

    for name in names {
        assert_eq!(root.state(name), "running");
        let counted = more_counts(&root, name, 0, 2);
        assert!(counted[0] >= last && counted[0] <= last + 2, "{name}: {last} then {counted:?}");
        let from = root.console_log(name).len();
        root.type_line(name, &format!("cat /tmp/marker; echo disk-of-{name} | dd of=/dev/vda conv=fsync 2>/dev/null; echo w-$?"));
        let at = root.await_console(name, "marker-4242", from);
        root.await_console(name, "w-0", at);
    }
    // The default image's agent took each clone's identity from keel (on ttyS1): its name as
    // hostname, a fresh RNG seed, the wall clock.
    for name in names {
        let log = root.vm_dir(name).join("keel.log");
        let deadline = std::time::Instant::now() + store::DEADLINE;
        let expect = format!("guest agent: applied as {name}: hostname rng clock");
        while !std::fs::read_to_string(&log).unwrap_or_default().contains(&expect) {
            assert!(std::time::Instant::now() < deadline, "{name}: no {expect:?} in keel.log");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let from = root.console_log(name).len();
        root.type_line(name, "echo host-$(hostname)");
        root.await_console(name, &format!("host-{name}"), from);
    }
    // Each clone reads back its own write: the overlays are independent.
    for name in names {
        let from = root.console_log(name).len();
        root.type_line(name, "head -c 11 /dev/vda; echo");
        root.await_console(name, &format!("disk-of-{name}"), from);
    }
    // The clones map the snapshot's memory file and share what none of them wrote: their
    // proportional set sizes add up to much less than their resident sets.
    let (rss, pss) =
        names.iter().map(|n| rss_pss(root.pid(n))).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert!(rss - pss > 20 << 10, "clones share pages: RSS {rss} KiB, PSS {pss} KiB");
    for name in names {
        root.ok(&["stop", name]);
    }
    let base = std::fs::read(snap.join("disk0.img")).unwrap();
    assert!(!base.starts_with(b"disk-of-"), "the snapshot's disk is never written");
}

/// Bytes a file takes on disk (sparse holes excluded).
fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// A copy of snapshot `from` in `to`, sparse, for damaging.
fn copy_snapshot(from: &Path, to: &Path) {
    let status =
        Command::new("cp").args(["-r", "--sparse=always"]).arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

#[test]
fn broken_snapshots_and_bad_targets_are_refused_clearly() {
    image();
    let root = Root::new("snapbad");
    boot_counting(&root, "src", None);
    let good = root.0.join("good");
    root.ok(&["snapshot", "src", good.to_str().unwrap()]);

    // A directory with other things in it is not overwritten.
    let busy = root.0.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    let err = root.fails(&["snapshot", "src", busy.to_str().unwrap()]);
    assert!(err.contains("notes.txt") && err.contains("not part of a keel snapshot"), "{err}");
    assert_eq!(std::fs::read_to_string(busy.join("notes.txt")).unwrap(), "mine");
    assert_eq!(root.state("src"), "running", "a refused snapshot leaves the VM running");
    // A diff needs a snapshot to go over: src has one (good), a fresh VM has none.
    root.ok(&["stop", "src"]);

    type Damage<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Damage, &str); 3] = [
        (
            "corrupt",
            &|d| {
                let p = d.join("state.bin");
                let mut bytes = std::fs::read(&p).unwrap();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x40;
                std::fs::write(&p, bytes).unwrap();
            },
            "checksum mismatch",
        ),
        (
            "truncated",
            &|d| {
                let f = std::fs::OpenOptions::new().write(true).open(d.join("memory.bin")).unwrap();
                let len = f.metadata().unwrap().len();
                f.set_len(len - 4096).unwrap();
            },
            "truncated",
        ),
        ("incomplete", &|d| std::fs::remove_file(d.join("complete")).unwrap(), "incomplete"),
    ];
    for (name, damage, expect) in cases {
        let dir = root.0.join(name);
        copy_snapshot(&good, &dir);
        damage(&dir);
        let err = root.fails(&["restore", dir.to_str().unwrap(), name]);
        assert!(err.contains(expect), "{name}: {err}");
        assert!(err.contains(dir.to_str().unwrap()), "{name}: the error names the snapshot: {err}");
        assert!(!root.ok(&["ls"]).contains(name), "{name}: no VM is left behind");
    }
    // The undamaged snapshot still restores.
    root.ok(&["restore", good.to_str().unwrap(), "fine"]);
    let counted = more_counts(&root, "fine", 0, 2);
    assert!(counted[0] > 1, "{counted:?}");
    root.ok(&["stop", "fine"]);
}

#[test]
fn appliances_carry_a_vm_and_its_snapshot_to_a_new_vm() {
    image();
    let root = Root::new("appliance");
    let disk = root.0.join("disk.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"appliance-data", 0).unwrap();
    let vm_file = root.0.join("vm.toml");
    std::fs::write(&vm_file, "[[disk]]\npath = \"disk.img\"\n").unwrap();

    // A VM that never ran: its VM file, kernel, initrd and disk travel in one file.
    root.ok(&["create", "plain", vm_file.to_str().unwrap()]);
    let plain = root.0.join("plain.keel");
    root.ok(&["export", "plain", plain.to_str().unwrap()]);
    let out = root.ok(&["import", plain.to_str().unwrap(), "plain2"]);
    assert!(out.contains("keel start plain2"), "{out}");
    let imported = std::fs::read_to_string(root.vm_dir("plain2").join("vm.toml")).unwrap();
    assert!(
        imported.contains(root.vm_dir("plain2").join("appliance/boot/vmlinux").to_str().unwrap()),
        "{imported}"
    );
    root.ok(&["start", "plain2"]);
    root.await_console("plain2", PROMPT, 0);
    let from = root.console_log("plain2").len();
    root.type_line("plain2", "head -c 14 /dev/vda; echo");
    root.await_console("plain2", "appliance-data", from);
    root.ok(&["stop", "plain2"]);

    // A running VM cannot be exported without a snapshot; with one, the imported VM goes on
    // from it.
    boot_counting(&root, "live", Some(&vm_file));
    let err = root.fails(&["export", "live", root.0.join("x.keel").to_str().unwrap()]);
    assert!(err.contains("Stop it first"), "{err}");
    let snap = root.0.join("live-snap");
    root.ok(&["snapshot", "live", snap.to_str().unwrap(), "--leave-paused"]);
    let last = *counts(&root.console_log("live")).last().unwrap();
    let packed = root.0.join("live.keel");
    root.ok(&["export", "live", packed.to_str().unwrap(), "--snapshot", snap.to_str().unwrap()]);
    root.ok(&["stop", "live"]);
    std::fs::remove_dir_all(&snap).unwrap();
    let out = root.ok(&["import", packed.to_str().unwrap(), "live2"]);
    assert!(out.contains("restored from its snapshot"), "{out}");
    let counted = more_counts(&root, "live2", 0, 2);
    assert!(counted[0] >= last && counted[0] <= last + 2, "{last} then {counted:?}");
    let from = root.console_log("live2").len();
    root.type_line("live2", "cat /tmp/marker; head -c 14 /dev/vda; echo");
    let at = root.await_console("live2", "marker-4242", from);
    root.await_console("live2", "appliance-data", at);
    root.ok(&["stop", "live2"]);

    // Anything else is refused, and leaves no VM behind.
    let junk = root.0.join("junk.keel");
    std::fs::write(&junk, b"not an appliance").unwrap();
    let err = root.fails(&["import", junk.to_str().unwrap(), "junk"]);
    assert!(err.contains("junk.keel"), "{err}");
    assert!(!root.ok(&["ls"]).contains("junk"));
}
