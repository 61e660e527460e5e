//! End-to-end: virtio-net (`[[net]]` in a VM file) with the real Linux guest on real TAP
//! devices: data both ways with checksums, ping both ways, MAC addresses, a missing TAP
//! device, and rate limiting.
//!
//! Each test gets its own network namespace (`ip netns add`) holding a TAP device tap0 at
//! 10.0.2.1/24, and runs keel inside it (`ip netns exec`); the guest is 10.0.2.15. The host
//! side of each connection is a thread of this test that entered the namespace (`setns`).
//! Creating namespaces and TAP devices needs root or CAP_NET_ADMIN: without it the tests fail
//! and say so. Host tools: iproute2 (`ip`) and coreutils (`md5sum`).
//!
//! The ignored test `bench_tcp_throughput_keel_and_qemu` puts keel beside QEMU on the same TAP
//! setup: `cargo test --release -p keel --test net -- --ignored --nocapture`.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
use wait_timeout::ChildExt;

use common::*;

const DEADLINE: Duration = Duration::from_secs(180);
const MIB: usize = 1 << 20;
const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The guest's first commands: its address on eth0.
const GUEST_UP: &str = "ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up";

/// A network namespace with a TAP device (or not), deleted when dropped, also when the test
/// fails.
struct NetNs {
    name: String,
    dir: PathBuf,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip (iproute2)")
}

impl NetNs {
    /// A namespace with tap0 at 10.0.2.1/24 (`with_tap`), or without a TAP device.
    fn new(with_tap: bool) -> NetNs {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("keel-test-{}-{n}", std::process::id());
        let out = ip(&["netns", "add", &name]);
        assert!(
            out.status.success(),
            "cannot create network namespace {name}: the network tests need root or \
             CAP_NET_ADMIN (to make namespaces and TAP devices): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("net").join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ns = NetNs { name, dir };
        let mut setup = vec![vec!["link", "set", "lo", "up"]];
        if with_tap {
            setup.push(vec!["tuntap", "add", "dev", "tap0", "mode", "tap"]);
            setup.push(vec!["addr", "add", "10.0.2.1/24", "dev", "tap0"]);
            setup.push(vec!["link", "set", "tap0", "up"]);
        }
        for args in setup {
            let mut full = vec!["-n", &ns.name];
            full.extend(&args);
            let out = ip(&full);
            assert!(
                out.status.success(),
                "ip {}: {}",
                full.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        ns
    }

    /// Writes a VM file with one `[[net]]` on tap0 plus `extra` lines in that section.
    fn vm_file(&self, extra: &str) -> PathBuf {
        let path = self.dir.join("vm.toml");
        std::fs::write(&path, format!("[[net]]\ntap = \"tap0\"\n{extra}\n")).unwrap();
        path
    }

    /// `keel run VM -- sh -c SCRIPT` inside the namespace, stdin a pipe (a sync channel).
    fn spawn_keel(&self, vm: &Path, script: &str) -> Guest {
        image();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, keel_bin(), "run"])
            .arg(vm)
            .args(["--", "sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keel in the namespace");
        Guest::new(child)
    }

    /// Runs `f` on a thread inside the namespace: sockets it makes live there.
    fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            setns(ns, CloneFlags::CLONE_NEWNET).expect("setns into the test's namespace");
            f()
        })
        .join()
        .expect("thread in the namespace")
    }

    fn listen(&self, port: u16) -> TcpListener {
        self.enter(move || TcpListener::bind((HOST, port)).expect("listen on the host side"))
    }

    /// Connects to the guest, retrying while the guest's listener isn't up yet.
    fn connect_to_guest(&self, port: u16) -> TcpStream {
        self.enter(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let addr = SocketAddr::from((GUEST, port));
                match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(s) => return s,
                    Err(e) if Instant::now() > deadline => panic!("connect to the guest: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.name]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running keel whose output is collected on threads; stdout also line by line, so a test
/// can wait for the guest to reach a point.
struct Guest {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl Guest {
    fn new(mut child: Child) -> Guest {
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        let stdout = std::thread::spawn(move || {
            let mut all = String::new();
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut v = Vec::new();
            err.read_to_end(&mut v).ok();
            String::from_utf8_lossy(&v).into_owned()
        });
        Guest { child, lines, stdout: Some(stdout), stderr: Some(stderr) }
    }

    /// Waits for the guest to print a line starting with `prefix`.
    fn wait_for(&self, prefix: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => {}
                Err(e) => panic!("the guest never printed {prefix:?} ({e})"),
            }
        }
    }

    fn send(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).and_then(|()| stdin.flush()).expect("write to keel");
    }

    /// Waits for keel to exit; the guest script must have succeeded. Returns its stdout.
    fn finish(mut self) -> String {
        let status = match self.child.wait_timeout(DEADLINE).expect("wait for keel") {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("keel did not finish within {DEADLINE:?}");
            }
        };
        let out = self.stdout.take().unwrap().join().unwrap();
        let err = self.stderr.take().unwrap().join().unwrap();
        assert!(status.success(), "guest script failed ({status}):\nstdout: {out}\nstderr: {err}");
        out
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // A failed test must not leave keel running (the namespace goes next).
        if self.stdout.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The md5 of `data` as hex, by the host's md5sum (the guest has busybox's).
fn md5(data: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run md5sum (coreutils)");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string()
}

/// `len` bytes of a fixed pseudo-random sequence (xorshift64).
fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Accepts one connection and reads it to the end: (bytes, seconds from the first byte).
fn receive_all(listener: TcpListener) -> JoinHandle<(Vec<u8>, f64)> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept the guest's connection");
        conn.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut data = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut first = None;
        loop {
            let n = conn.read(&mut buf).expect("read from the guest");
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            data.extend_from_slice(&buf[..n]);
        }
        let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
        (data, secs)
    })
}

/// Sends `data` on `conn`, closes the sending side and waits for the guest to close:
/// returns the seconds that took.
fn send_all(mut conn: TcpStream, data: &[u8]) -> f64 {
    let start = Instant::now();
    conn.write_all(data).expect("send to the guest");
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut sink = [0u8; 4096];
    while conn.read(&mut sink).is_ok_and(|n| n > 0) {}
    start.elapsed().as_secs_f64()
}

/// The line of `out` that starts with `key`, without it.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} line in the guest's output:\n{out}"))
        .trim()
}

#[test]
fn data_crosses_both_ways_intact() {
    let ns = NetNs::new(true);
    let vm = ns.vm_file("");
    let upload = receive_all(ns.listen(5001));
    let script = format!(
        "{GUEST_UP} && dd if=/dev/urandom of=/tmp/up bs=1M count=8 2>/dev/null && \
         echo up=$(md5sum </tmp/up) && nc 10.0.2.1 5001 </tmp/up && \
         echo down=$(nc -l -p 5002 | md5sum)"
    );
    let guest = ns.spawn_keel(&vm, &script);
    let (got, up_secs) = upload.join().unwrap();
    let down = pattern(8 * MIB);
    let down_secs = send_all(ns.connect_to_guest(5002), &down);
    let out = guest.finish();
    assert_eq!(got.len(), 8 * MIB, "bytes the host got from the guest");
    assert_eq!(field(&out, "up=").trim_end_matches(" -").trim(), md5(&got), "guest → host");
    assert_eq!(field(&out, "down=").trim_end_matches(" -").trim(), md5(&down), "host → guest");
    eprintln!(
        "guest → host {:.2} MiB/s, host → guest {:.2} MiB/s",
        8.0 / up_secs.max(1e-3),
        8.0 / down_secs.max(1e-3)
    );
}

/// One ICMP echo from the host to the guest over a raw socket: true when the reply came.
fn host_ping(sock: &UdpSocket, seq: u16) -> bool {
    let mut pkt = vec![8u8, 0, 0, 0, 0x6b, 0x6c, (seq >> 8) as u8, seq as u8];
    pkt.extend_from_slice(b"keel ping payload");
    let sum = internet_checksum(&pkt);
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    sock.send_to(&pkt, (GUEST, 0)).expect("send an echo request");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        // A raw IPv4 socket gets the IP header too.
        let ihl = usize::from(buf[0] & 0xf) * 4;
        if from.ip() == GUEST && n >= ihl + 8 {
            let icmp = &buf[ihl..n];
            if icmp[0] == 0 && icmp[4..6] == [0x6b, 0x6c] && icmp[6..8] == seq.to_be_bytes() {
                return icmp[8..] == *b"keel ping payload";
            }
        }
    }
    false
}

fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn ping_works_both_ways_and_the_vm_files_mac_is_eth0s() {
    let ns = NetNs::new(true);
    let vm = ns.vm_file("mac = \"02:aa:bb:cc:dd:ee\"");
    // The guest pings the host, then waits for the host's pings before it powers off.
    let script = format!(
        "{GUEST_UP} && echo mac=$(cat /sys/class/net/eth0/address) && ping -c 3 10.0.2.1 && \
         echo guest-pinged && read line && echo host-pinged"
    );
    let mut guest = ns.spawn_keel(&vm, &script);
    let sock = ns.enter(|| {
        let fd: OwnedFd =
            socket(AddressFamily::Inet, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::Icmp)
                .expect("raw ICMP socket (needs root or CAP_NET_RAW)");
        let sock = UdpSocket::from(fd);
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        sock
    });
    guest.wait_for("guest-pinged");
    for seq in 1..=3 {
        assert!(host_ping(&sock, seq), "ping {seq} of 3 from the host got no reply");
    }
    guest.send("go\n");
    let out = guest.finish();
    assert_eq!(field(&out, "mac="), "02:aa:bb:cc:dd:ee");
    assert!(out.contains("3 packets transmitted, 3 packets received"), "guest's ping:\n{out}");
    assert!(out.contains("host-pinged"), "{out}");
}

#[test]
fn a_generated_mac_is_the_same_every_run() {
    let ns = NetNs::new(true);
    let vm = ns.vm_file("");
    let mac =
        || field(&ns.spawn_keel(&vm, "cat /sys/class/net/eth0/address").finish(), "").to_string();
    let (first, second) = (mac(), mac());
    assert_eq!(first, second, "the generated MAC changed between runs");
    assert!(first.starts_with("02:6b:6c:"), "a locally administered keel MAC: {first}");
}

#[test]
fn a_missing_tap_device_stops_the_vm_before_boot() {
    let ns = NetNs::new(false);
    let vm = ns.vm_file("");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, keel_bin(), "run", "--kernel-log"])
        .arg(&vm)
        .args(["--", "true"]);
    let out = run_with_deadline(&mut cmd, DEADLINE);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("TAP device tap0 does not exist"), "{err}");
    assert!(err.contains("ip tuntap add dev tap0 mode tap"), "says how to make it: {err}");
    assert!(!stdout(&out).contains("Linux version"), "the kernel must not have started");
}

#[test]
fn a_rate_limited_interface_keeps_to_its_limit() {
    // 256 KiB/s each way, in 64 KiB per 250 ms: 1 MiB takes about 3.75 s after the first
    // (full) bucket. Unlimited, the guest moves several times that.
    const RATE: f64 = 256.0 * 1024.0;
    const BUCKET: usize = 64 * 1024;
    let ns = NetNs::new(true);
    let vm = ns.vm_file("rate_limit = { bandwidth = { size = 65536, refill_time_ms = 250 } }");
    let upload = receive_all(ns.listen(5001));
    let script = format!(
        "{GUEST_UP} && dd if=/dev/zero bs=64k count=16 2>/dev/null | nc 10.0.2.1 5001 && \
         nc -l -p 5002 | wc -c"
    );
    let guest = ns.spawn_keel(&vm, &script);
    let (got, up_secs) = upload.join().unwrap();
    let down_secs = send_all(ns.connect_to_guest(5002), &pattern(MIB));
    let out = guest.finish();
    assert_eq!(got.len(), MIB);
    assert_eq!(out.trim(), MIB.to_string(), "bytes the guest got");
    for (dir, secs) in [("guest → host", up_secs), ("host → guest", down_secs)] {
        // Headers count too, and the first bucket is free: the payload rate beyond it stays
        // under the limit, with a margin for timing, and not far below it.
        let rate = (MIB - BUCKET) as f64 / secs;
        eprintln!("{dir}: {:.0} KiB/s with a limit of {:.0} KiB/s", rate / 1024.0, RATE / 1024.0);
        assert!(rate <= RATE * 1.1, "{dir}: {rate:.0} B/s is over the limit of {RATE} B/s");
        assert!(rate >= RATE * 0.5, "{dir}: {rate:.0} B/s is far under the limit of {RATE} B/s");
    }
}

/// keel beside QEMU (`qemu-system-riscv64 -M virt`, its virtio-net-device on the same TAP) on
/// the same kernel, initrd and guest commands: TCP throughput each way, alternating runs,
/// medians. `cargo test --release -p keel --test net -- --ignored --nocapture`
#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn bench_tcp_throughput_keel_and_qemu() {
    const MIB_EACH_WAY: usize = 16;
    const RUNS: usize = 3;
    let ns = NetNs::new(true);
    let vm = ns.vm_file("");
    let (kernel, initrd) = image();
    let script = format!(
        "{GUEST_UP} && dd if=/dev/zero of=/tmp/up bs=1M count={MIB_EACH_WAY} 2>/dev/null && \
         nc 10.0.2.1 5001 </tmp/up && nc -l -p 5002 >/dev/null"
    );
    let args = ["sh".to_string(), "-c".to_string(), script.clone()];
    let cmdline =
        format!("console=ttyS0 panic=-1 quiet loglevel=1 {}", keel_guest::command_param(&args));
    let down = pattern(MIB_EACH_WAY * MIB);
    let mut results: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for run in 0..RUNS {
        for (which, name) in ["keel", "qemu"].iter().enumerate() {
            let upload = receive_all(ns.listen(5001));
            let guest = if which == 0 {
                ns.spawn_keel(&vm, &script)
            } else {
                let child = Command::new("ip")
                    .args(["netns", "exec", &ns.name, "qemu-system-riscv64", "-M", "virt"])
                    .args(["-m", "256", "-smp", "1", "-nographic", "-no-reboot", "-kernel"])
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(initrd)
                    .args(["-append", &cmdline])
                    .args(["-netdev", "tap,id=n,ifname=tap0,script=no,downscript=no"])
                    .args(["-device", "virtio-net-device,netdev=n"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start qemu-system-riscv64 (Debian's qemu-system-misc)");
                Guest::new(child)
            };
            let (got, up_secs) = upload.join().unwrap();
            assert_eq!(got.len(), MIB_EACH_WAY * MIB);
            let down_secs = send_all(ns.connect_to_guest(5002), &down);
            guest.finish();
            let mb = MIB_EACH_WAY as f64;
            let (up, dn) = (mb / up_secs, mb / down_secs);
            println!("run {run}: {name}: guest → host {up:.2} MiB/s, host → guest {dn:.2} MiB/s");
            results[which].push((up, dn));
        }
    }
    let median = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        let mut x: Vec<f64> = v.iter().map(pick).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let upload: fn(&(f64, f64)) -> f64 = |r| r.0;
    let download: fn(&(f64, f64)) -> f64 = |r| r.1;
    for (dir, pick) in [("guest → host", upload), ("host → guest", download)] {
        let (k, q) = (median(&results[0], pick), median(&results[1], pick));
        println!("{dir}: keel {k:.2} MiB/s, QEMU {q:.2} MiB/s, keel/QEMU {:.2}", k / q);
    }
}
