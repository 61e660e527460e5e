//! End-to-end: live migration of running Debian guests between two "hosts" (`keel migrate`,
//! `keel receive`): two network namespaces joined by a veth pair, 10.77.0.1 and 10.77.0.2,
//! each with its own state root; the VMMs run inside them, disks are shared storage (one
//! image path for both).
//!
//! The guest counts all along, writing each count to its disk (synchronously) before
//! echoing it: after the migration the count goes on from where it was, the disk holds every
//! count in order, and the guest never rebooted. Failed migrations (a wrong token, a receiver
//! killed mid-way, nobody listening) leave the source running and nothing on the receiver.
//!
//! Namespaces need root (CI runs as root): without it the tests say so and pass vacuously.

mod common;
#[path = "common/store.rs"]
mod store;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use store::{Root, DEADLINE, PROMPT};

const RECEIVER: &str = "10.77.0.2";
const TOKEN: &str = "keel-test-token-0123456789abcdef";

/// The guest's counter: each count goes to its own 16-byte slot of /dev/vda (`count=` and 9
/// digits), flushed to the image, before it is echoed; five counts a second.
const DISK_COUNTER: &str = "i=0; while true; do i=$((i+1)); printf 'count=%09d\\n' $i | dd of=/dev/vda bs=16 seek=$i conv=notrunc,fsync 2>/dev/null; echo count=$i; sleep 0.2; done &";
/// The same without a disk.
const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo count=$i; sleep 0.2; done &";

/// Two network namespaces joined by a veth pair, deleted when dropped.
struct Hosts {
    a: String,
    b: String,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip (iproute2)")
}

impl Hosts {
    /// None (and a message) when this is not root.
    fn new() -> Option<Hosts> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "skipping: the migration tests make network namespaces, which needs root \
                 (CI runs them as root)"
            );
            return None;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", std::process::id());
        let hosts = Hosts { a: format!("keel-mig-a-{id}"), b: format!("keel-mig-b-{id}") };
        let (va, vb) = (format!("kma{id}"), format!("kmb{id}"));
        let (va, vb) = (&va[..va.len().min(15)], &vb[..vb.len().min(15)]);
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &hosts.a],
            vec!["netns", "add", &hosts.b],
            vec!["link", "add", va, "type", "veth", "peer", "name", vb],
            vec!["link", "set", va, "netns", &hosts.a],
            vec!["link", "set", vb, "netns", &hosts.b],
            vec!["-n", &hosts.a, "addr", "add", "10.77.0.1/24", "dev", va],
            vec!["-n", &hosts.b, "addr", "add", "10.77.0.2/24", "dev", vb],
            vec!["-n", &hosts.a, "link", "set", va, "up"],
            vec!["-n", &hosts.b, "link", "set", vb, "up"],
            vec!["-n", &hosts.a, "link", "set", "lo", "up"],
            vec!["-n", &hosts.b, "link", "set", "lo", "up"],
        ];
        for step in steps {
            let out = ip(&step);
            assert!(
                out.status.success(),
                "ip {}: {}",
                step.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Some(hosts)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.a]);
        let _ = ip(&["netns", "delete", &self.b]);
    }
}

/// `keel ARGS` under `root`, inside namespace `ns`; must succeed.
fn in_ns(root: &Root, ns: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, keel_bin()]).args(args).env("KEEL_STATE_DIR", &root.0);
    let out = run_with_deadline(&mut cmd, DEADLINE);
    assert!(out.status.success(), "keel {args:?} in {ns}: {}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// `keel receive --listen 10.77.0.2:PORT NAME` in the background, inside namespace `ns`;
/// returns once it listens.
fn receive(root: &Root, ns: &str, name: &str, token_file: &Path) -> Child {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, keel_bin(), "receive", "--listen"])
        .arg(format!("{RECEIVER}:7070"))
        .arg(name)
        .arg("--token-file")
        .arg(token_file)
        .env("KEEL_STATE_DIR", &root.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keel receive");
    let log = root.vm_dir(name).join("keel.log");
    let deadline = Instant::now() + DEADLINE;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("waiting for a live migration")
    {
        assert!(Instant::now() < deadline, "keel receive never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Waits for `keel receive` to end; returns (success, stdout + stderr).
fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
}

/// `keel migrate NAME 10.77.0.2:PORT` plus `extra`; its output and success.
fn migrate(
    root: &Root,
    name: &str,
    port: u16,
    token_file: &Path,
    extra: &[&str],
) -> (bool, String) {
    let dest = format!("{RECEIVER}:{port}");
    let mut args = vec!["migrate", name, &dest, "--token-file", token_file.to_str().unwrap()];
    args.extend(extra);
    let out = root.keel(&args);
    (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
}

fn write_token(root: &Root, name: &str, token: &str) -> PathBuf {
    let path = root.0.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

/// The `count=N` values a console log shows, in order.
fn counts(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| !l.contains("echo count="))
        .filter_map(|l| l.rsplit_once("count=")?.1.trim().parse().ok())
        .collect()
}

fn assert_consecutive(counts: &[u64], what: &str) {
    assert!(!counts.is_empty(), "{what}: no counts");
    for w in counts.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{what}: the count went {} -> {}", w[0], w[1]);
    }
}

/// Waits for `n` more counts on `name`'s console after byte `from`.
fn more_counts(root: &Root, name: &str, from: usize, n: usize) -> usize {
    let mut at = from;
    for _ in 0..n {
        at = root.await_console(name, "count=", at);
        at = root.await_console(name, "\n", at);
    }
    at
}

/// Boots `name` in namespace `ns`, leaves a marker in its tmpfs and starts `counter`.
fn boot_counting(root: &Root, ns: &str, name: &str, vm_file: Option<&Path>, counter: &str) {
    match vm_file {
        Some(f) => in_ns(root, ns, &["create", name, f.to_str().unwrap()]),
        None => in_ns(root, ns, &["create", name]),
    };
    in_ns(root, ns, &["start", name]);
    root.await_console(name, PROMPT, 0);
    root.type_line(name, "echo marker-$((4000 + 242)) > /tmp/marker");
    root.type_line(name, counter);
    let typed = root.await_console(name, "echo count=", 0);
    more_counts(root, name, typed, 2);
}

/// The guest's uptime in seconds.
fn uptime(root: &Root, name: &str) -> f64 {
    let from = root.console_log(name).len();
    root.type_line(name, "echo up=$(cut -d' ' -f1 /proc/uptime)=");
    let start = root.await_console(name, "\nup=", from);
    let end = root.await_console(name, "=", start);
    let log = root.console_log(name);
    let field = &log[start..end - 1];
    field.parse().unwrap_or_else(|_| panic!("uptime {field:?}"))
}

/// `GET path` on a VMM's API socket: the whole response.
fn get(socket: &Path, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_counting_guest_moves_hosts_without_losing_a_count_or_a_write() {
    image();
    let Some(hosts) = Hosts::new() else { return };
    let (a, b) = (Root::new("mig-a"), Root::new("mig-b"));
    let token = write_token(&a, "token", TOKEN);
    // Shared storage: one image path that both hosts open.
    let disk = a.0.join("shared.img");
    std::fs::File::create(&disk).unwrap().set_len(16 << 20).unwrap();
    let vm_file = a.0.join("vm.toml");
    std::fs::write(&vm_file, format!("[[disk]]\npath = {:?}\n", disk.to_str().unwrap())).unwrap();
    boot_counting(&a, &hosts.a, "web", Some(&vm_file), DISK_COUNTER);
    let before = uptime(&a, "web");

    let receiver = receive(&b, &hosts.b, "web", &token);
    assert_eq!(b.state("web"), "incoming", "keel ls shows a VM being received apart");
    let started = Instant::now();
    let (ok, out) = migrate(&a, "web", 7070, &token, &[]);
    assert!(ok, "keel migrate: {out}");
    assert!(
        out.contains("web: migrated to 10.77.0.2:7070") && out.contains("stood still"),
        "{out}"
    );
    eprintln!("migration: {out} ({:.2} s with the CLI)", started.elapsed().as_secs_f64());
    let (ok, said) = finish(receiver);
    assert!(ok && said.contains("received from 10.77.0.1"), "keel receive: {said}");
    assert_eq!(b.state("web"), "running");
    assert_eq!(a.state("web"), "migrated", "the source has ended");
    let err = a.fails(&["start", "web"]);
    assert!(err.contains("migrated"), "a migrated VM is not started again here: {err}");

    // The same guest goes on: the count, its tmpfs, its clock.
    more_counts(&b, "web", 0, 3);
    let from = b.console_log("web").len();
    b.type_line("web", "cat /tmp/marker");
    b.await_console("web", "marker-4242", from);
    let after = uptime(&b, "web");
    assert!(after > before, "the guest never rebooted: uptime {before} then {after}");
    let from = b.console_log("web").len();
    b.type_line("web", "kill $!; echo stopped-$?");
    b.await_console("web", "stopped-0", from);
    std::thread::sleep(Duration::from_millis(500));
    let both = a.console_log("web") + &b.console_log("web");
    let shown = counts(&both);
    assert_consecutive(&shown, "the counts on both consoles, in order");
    let on_receiver = counts(&b.console_log("web"));
    assert!(!on_receiver.is_empty() && !counts(&a.console_log("web")).is_empty());
    b.ok(&["stop", "web"]);

    // Every count reached the shared disk, in order, up to the last one shown.
    let image = std::fs::read(&disk).unwrap();
    let mut on_disk = Vec::new();
    for slot in image.chunks_exact(16).skip(1) {
        if slot.iter().all(|&c| c == 0) {
            break;
        }
        let text = std::str::from_utf8(slot).unwrap();
        on_disk.push(text.trim_start_matches("count=").trim_end().parse::<u64>().unwrap());
    }
    assert_eq!(on_disk.first(), Some(&1), "the disk starts at count 1");
    assert_consecutive(&on_disk, "the counts on the disk");
    let last = *shown.last().unwrap();
    assert!(*on_disk.last().unwrap() >= last, "the disk has up to {last}: {:?}", on_disk.last());
}

#[test]
fn failed_migrations_leave_the_source_running_and_nothing_on_the_receiver() {
    image();
    let Some(hosts) = Hosts::new() else { return };
    let (a, b) = (Root::new("migbad-a"), Root::new("migbad-b"));
    let token = write_token(&a, "token", TOKEN);
    let wrong = write_token(&a, "wrong", "another-token-of-the-right-length");
    boot_counting(&a, &hosts.a, "db", None, COUNTER);

    // A wrong token: refused on both sides, with the reason.
    let receiver = receive(&b, &hosts.b, "db", &token);
    let (ok, out) = migrate(&a, "db", 7070, &wrong, &[]);
    assert!(!ok && out.contains("token") && out.contains("runs here as before"), "{out}");
    let (ok, said) = finish(receiver);
    assert!(!ok && said.contains("token does not match"), "keel receive: {said}");
    assert!(!b.ok(&["ls"]).contains("db"), "nothing is left on the receiver");
    assert_eq!(a.state("db"), "running");
    more_counts(&a, "db", a.console_log("db").len(), 2);

    // Nobody listening.
    let (ok, out) = migrate(&a, "db", 7071, &token, &[]);
    assert!(!ok && out.contains("cannot connect"), "{out}");
    assert_eq!(a.state("db"), "running");

    // The receiver killed mid-way (the copy is slowed down so that there is a mid-way).
    let receiver = receive(&b, &hosts.b, "db", &token);
    let sender = {
        let mut cmd = keel();
        cmd.env("KEEL_STATE_DIR", &a.0)
            .args(["migrate", "db", "10.77.0.2:7070", "--max-bandwidth", "2", "--token-file"])
            .arg(&token);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let log = b.vm_dir("db").join("keel.log");
    let deadline = Instant::now() + DEADLINE;
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("authenticated") {
        assert!(Instant::now() < deadline, "the sender never got through");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let progress = get(&a.vm_dir("db").join("api.sock"), "/progress");
    assert!(progress.contains(r#""operation":"migration""#), "GET /progress: {progress}");
    assert!(progress.contains(r#""phase":"pre-copy""#), "GET /progress: {progress}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(b.pid("db")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = sender.wait_with_output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success() && text.contains("runs here as before"), "{text}");
    let (ok, said) = finish(receiver);
    assert!(!ok, "keel receive: {said}");
    assert!(!b.ok(&["ls"]).contains("db"), "nothing is left on the receiver");
    assert_eq!(a.state("db"), "running");
    let from = a.console_log("db").len();
    more_counts(&a, "db", from, 2);
    a.type_line("db", "cat /tmp/marker");
    a.await_console("db", "marker-4242", from);
    assert_consecutive(&counts(&a.console_log("db")), "the source's counts");
    a.ok(&["stop", "db"]);
}

/// The receiver fails after the source has handed its machine over (paused, state sent,
/// disks and TAP released): here it cannot open the VM's TAP device, which only the source
/// host has. The source builds its machine again from the RAM and state it kept, and the
/// guest goes on there without a lost count.
#[test]
fn a_receiver_that_cannot_build_the_vm_hands_it_back_to_the_source() {
    image();
    let Some(hosts) = Hosts::new() else { return };
    let (a, b) = (Root::new("migback-a"), Root::new("migback-b"));
    let token = write_token(&a, "token", TOKEN);
    let tap = format!("kmt{}", std::process::id());
    let tap = &tap[..tap.len().min(15)];
    for step in [
        vec!["-n", &hosts.a, "tuntap", "add", "dev", tap, "mode", "tap"],
        vec!["-n", &hosts.a, "link", "set", tap, "up"],
    ] {
        let out = ip(&step);
        assert!(
            out.status.success(),
            "ip {}: {}",
            step.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let vm_file = a.0.join("vm.toml");
    std::fs::write(&vm_file, format!("[[net]]\ntap = \"{tap}\"\n")).unwrap();
    boot_counting(&a, &hosts.a, "nt", Some(&vm_file), COUNTER);

    let receiver = receive(&b, &hosts.b, "nt", &token);
    let (ok, out) = migrate(&a, "nt", 7070, &token, &[]);
    assert!(!ok, "the migration cannot succeed without the TAP device: {out}");
    assert!(out.contains(tap), "the error names what the receiver lacked: {out}");
    let (ok, said) = finish(receiver);
    assert!(!ok, "keel receive: {said}");
    assert!(!b.ok(&["ls"]).contains("nt"), "nothing is left on the receiver");

    assert_eq!(a.state("nt"), "running");
    let log = std::fs::read_to_string(a.vm_dir("nt").join("keel.log")).unwrap();
    assert!(log.contains("machine was rebuilt here"), "the source took the VM back: {log}");
    let from = a.console_log("nt").len();
    more_counts(&a, "nt", from, 3);
    a.type_line("nt", "cat /tmp/marker");
    a.await_console("nt", "marker-4242", from);
    assert_consecutive(&counts(&a.console_log("nt")), "the source's counts, across the take-back");
    a.ok(&["stop", "nt"]);
}
