//! End-to-end: the virtio-balloon with Linux's own driver, measured from the host as keel's
//! resident memory (VmRSS of the keel process) at moments the guest announces on its console.
//! The guest then waits for the host with `read` on its console (keel forwards stdin), so each
//! measurement happens at a known point; every other wait is for a condition, with a deadline.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;
/// How long any one step may take; generous, as a loaded host slows the guest a lot.
const STEP: Duration = Duration::from_secs(120);

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("balloon").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `keel run VMFILE -- sh -c SCRIPT` whose console we read line by line.
struct Vm {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Vm {
    /// The script travels on the console, not on the kernel command line (1023 bytes at
    /// most): the guest reads exactly its length with `head -c`, then runs it.
    fn start(name: &str, vm_file: &str, script: &str) -> Vm {
        image();
        let path = scratch(name).join("vm.toml");
        std::fs::write(&path, vm_file).unwrap();
        let fetch = format!(
            "echo send-script; head -c {} >/run/test.sh && exec sh /run/test.sh",
            script.len()
        );
        let mut child = keel()
            .arg("run")
            .arg(&path)
            .args(["--", "sh", "-c", &fetch])
            .env("KEEL_STATS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keel");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut vm = Vm { child, stdin, lines, seen: Vec::new(), stderr: Some(stderr) };
        vm.expect("send-script");
        if vm.stdin.write_all(script.as_bytes()).and_then(|_| vm.stdin.flush()).is_err() {
            vm.fail("keel's stdin closed");
        }
        vm
    }

    /// Waits until the guest prints `line`.
    fn expect(&mut self, line: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l == line => {
                    self.seen.push(l);
                    return;
                }
                Ok(l) => self.seen.push(l),
                Err(_) => self.fail(&format!("the guest did not print {line:?} within {STEP:?}")),
            }
        }
    }

    /// Lets the guest go on past its `read`.
    fn resume(&mut self) {
        if self.stdin.write_all(b"\n").and_then(|_| self.stdin.flush()).is_err() {
            self.fail("keel's stdin closed");
        }
    }

    /// keel's resident memory now.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("keel is running");
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS in /proc/PID/status");
        kib * 1024
    }

    /// Waits for keel to exit successfully; returns everything the guest printed and keel's
    /// stderr.
    fn finish(mut self) -> (Vec<String>, String) {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.seen.extend(self.lines.iter());
                let stderr = self.stderr.take().unwrap().join().unwrap();
                assert!(
                    status.success(),
                    "keel exited with {status}; the guest printed:\n{}\nstderr:\n{stderr}",
                    self.seen.join("\n")
                );
                return (std::mem::take(&mut self.seen), stderr);
            }
            if Instant::now() > deadline {
                self.fail("keel did not exit");
            }
            // Collect output meanwhile; the timeout is the poll interval for the exit.
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(l);
            }
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen.extend(self.lines.try_iter());
        let stderr = self.stderr.take().map(|t| t.join().unwrap()).unwrap_or_default();
        panic!("{why}; the guest printed:\n{}\nstderr:\n{stderr}", self.seen.join("\n"));
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // A failed assertion must not leave a VM running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// keel's `KEEL_STATS` line about the balloon.
fn balloon_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("keel: balloon: "))
        .unwrap_or_else(|| panic!("no balloon line in keel's stderr:\n{stderr}"))
}

/// `name=value` from the balloon line's statistics.
fn stat(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// The guest's `MemTotal:  N kB` line, in bytes.
fn mem_total(seen: &[String]) -> u64 {
    let kib = seen
        .iter()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("the guest printed MemTotal");
    kib * 1024
}

/// CRC-32 (IEEE, as busybox `crc32` and zlib compute it) of `data` repeated `times` times.
fn crc32_repeated(data: &[u8], times: usize) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        *t = c;
    }
    let mut crc = !0u32;
    for _ in 0..times {
        for &b in data {
            crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

/// Shell helpers for the guest scripts: a tmpfs big enough to fill the guest's memory, and
/// `wait_for COND WHAT`, which polls a condition for at most 60 s.
const PRELUDE: &str = r#"
set -e
mkdir -p /dev/shm
mount -t tmpfs -o size=95% shm /dev/shm
wait_for() {
    n=0
    until eval "$1"; do
        n=$((n + 1))
        if [ $n -gt 1200 ]; then echo "timed out waiting for $2" >&2; exit 3; fi
        sleep 0.05
    done
}
"#;

#[test]
fn inflating_gives_guest_memory_back_to_the_host_and_deflating_returns_it() {
    // 128 MiB of a 256 MiB guest; statistics every second (statsq is queue 2).
    let vm_file = "memory = 256\n[balloon]\ntarget = 128\nstats_interval = 1\n";
    let script = PRELUDE.to_string()
        + r#"
# The driver loaded at boot and inflated; empty the balloon to fill the memory it held.
rmmod virtio_balloon
dd if=/dev/zero of=/dev/shm/fill bs=1M count=150 2>/dev/null
echo filled
read x
rm /dev/shm/fill
modprobe virtio_balloon
# Pages the balloon holds: Linux counts every page in and out.
held() { awk '/^balloon_inflate /{i=$2} /^balloon_deflate /{d=$2} END{print i-d}' /proc/vmstat; }
wait_for '[ "$(held)" -ge 32768 ]' "the balloon to hold 128 MiB"
echo inflated
read x
# Statistics: with the balloon steady, its interrupts are requests for fresh statistics.
# Three more requests mean the device received a buffer filled after this point.
dev=$(cd /sys/bus/virtio/drivers/virtio_balloon && echo virtio*)
irqs() { awk -v d="$dev" '$NF == d {print $2}' /proc/interrupts; }
echo stats
read x
c0=$(irqs)
wait_for '[ "$(irqs)" -ge $((c0 + 3)) ]' "statistics requests"
grep MemTotal /proc/meminfo
# Deflate (the driver empties the balloon when removed), then use the memory again.
rmmod virtio_balloon
yes keel-balloon | head -c 1048576 >/dev/shm/p
cat /dev/shm/p /dev/shm/p /dev/shm/p /dev/shm/p /dev/shm/p /dev/shm/p /dev/shm/p /dev/shm/p >/dev/shm/p8
set --
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do set -- "$@" /dev/shm/p8; done
cat "$@" >/dev/shm/fill
rm /dev/shm/p /dev/shm/p8
crc32 /dev/shm/fill
echo deflated
read x
"#;
    let t0 = Instant::now();
    let mut vm = Vm::start("inflate", vm_file, &script);
    vm.expect("filled");
    let full = vm.rss();
    vm.resume();
    vm.expect("inflated");
    let inflated = vm.rss();
    vm.resume();
    vm.expect("stats");
    let stats_from = Instant::now();
    vm.resume();
    vm.expect("deflated");
    let used_again = vm.rss();
    vm.resume();
    let (seen, stderr) = vm.finish();
    let stats_window = stats_from.elapsed();
    eprintln!(
        "RSS: {} MiB filled, {} MiB inflated, {} MiB after deflating and refilling ({:.1} s)",
        full / MIB,
        inflated / MIB,
        used_again / MIB,
        t0.elapsed().as_secs_f64()
    );

    // The balloon took 128 MiB, mostly the pages the 150 MiB file had just freed: most of it
    // must have left keel's memory.
    let expected = 128 * MIB * 3 / 4;
    assert!(
        full.saturating_sub(inflated) >= expected,
        "RSS fell only from {} MiB to {} MiB",
        full / MIB,
        inflated / MIB
    );
    // Deflated, the guest filled 128 MiB again and keel backs it with memory again.
    assert!(
        used_again >= inflated + 100 * MIB,
        "RSS grew only from {} to {} MiB",
        inflated / MIB,
        used_again / MIB
    );
    let pattern: Vec<u8> = b"keel-balloon\n".iter().copied().cycle().take(MIB as usize).collect();
    let crc = format!("{:08x} /dev/shm/fill", crc32_repeated(&pattern, 128));
    assert!(seen.contains(&crc), "expected {crc:?} from the guest, got:\n{}", seen.join("\n"));

    // What the VMM sees: the target, an empty balloon (the driver was removed), and
    // statistics the driver sent after the guest started counting requests.
    let line = balloon_line(&stderr);
    assert!(line.starts_with("target 128 MiB, guest holds 0 MiB; statistics "), "{line}");
    assert_eq!(stat(line, "total-memory"), Some(mem_total(&seen)), "{line}");
    assert!(stat(line, "free-memory").is_some_and(|f| f > 0), "{line}");
    let age: f64 = line
        .split("statistics ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no statistics age in {line:?}"));
    assert!(
        age <= stats_window.as_secs_f64() + 0.1,
        "statistics {age} s old, from before the guest asked for them {:.1} s ago: {line}",
        stats_window.as_secs_f64()
    );
}

/// Free page reporting: the guest hands back freed memory on its own, no host action needed.
fn free_pages_are_reported(name: &str, vm_file: &str) {
    let script = PRELUDE.to_string()
        + r#"
dd if=/dev/zero of=/dev/shm/fill bs=1M count=150 2>/dev/null
echo filled
read x
rm /dev/shm/fill
echo freed
read x
grep MemTotal /proc/meminfo
"#;
    let mut vm = Vm::start(name, vm_file, &script);
    vm.expect("filled");
    let full = vm.rss();
    vm.resume();
    vm.expect("freed");
    let freed = Instant::now();
    // Linux reports free 2 MiB blocks about 2 s after they appear.
    let want = 150 * MIB * 3 / 4;
    let mut now = vm.rss();
    while full.saturating_sub(now) < want {
        if freed.elapsed() > Duration::from_secs(60) {
            vm.fail(&format!(
                "RSS only fell from {} to {} MiB within 60 s of freeing 150 MiB",
                full / MIB,
                now / MIB
            ));
        }
        std::thread::sleep(Duration::from_millis(100)); // the poll interval of a deadline wait
        now = vm.rss();
    }
    eprintln!(
        "{name}: RSS {} MiB filled, {} MiB {:.1} s after freeing",
        full / MIB,
        now / MIB,
        freed.elapsed().as_secs_f64()
    );
    vm.resume();
    let (seen, stderr) = vm.finish();
    let line = balloon_line(&stderr);
    if vm_file.contains("stats_interval") {
        assert_eq!(stat(line, "total-memory"), Some(mem_total(&seen)), "{line}");
    }
}

#[test]
fn freed_guest_memory_is_reported_and_given_back() {
    // reporting_vq is queue 2: no statistics queue before it.
    free_pages_are_reported("report", "memory = 256\n[balloon]\nfree_page_reporting = true\n");
}

#[test]
fn free_page_reporting_works_beside_statistics() {
    // reporting_vq is queue 3, after statsq.
    free_pages_are_reported(
        "report-stats",
        "memory = 256\n[balloon]\nstats_interval = 1\nfree_page_reporting = true\n",
    );
}

#[test]
fn crc32_matches_busybox() {
    assert_eq!(crc32_repeated(b"123456789", 1), 0xcbf4_3926);
}
