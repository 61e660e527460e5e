//! End-to-end: virtio-vsock between the Debian guest and host programs, through the Unix
//! socket with Firecracker's conventions (`CONNECT <port>\n` / `OK <port>\n`, and
//! `<uds>_<port>` for guest-initiated connections).
//!
//! The guest side is tests/guest-tools/vsock-echo.c, compiled here with Debian's RISC-V cross
//! compiler and added to the default initramfs as /bin/vsock-echo by appending a second newc
//! archive (Linux unpacks concatenated archives in order).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1 << 20;
/// How long a whole guest run may take (boots are 3-4 s; tests run side by side).
const LIMIT: Duration = Duration::from_secs(180);

fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vsock").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The default initramfs plus /bin/vsock-echo, built once per test run.
fn initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| initrd_with_tools(&work_dir("tool"), &["vsock-echo"]))
}

/// The test pattern vsock-echo writes (`pattern N`): xorshift64, little-endian words.
fn pattern(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// FNV-1a, 64 bits, as vsock-echo prints it.
fn fnv(data: &[u8]) -> String {
    let h = data
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("{h:016x}")
}

fn vm_file(dir: &Path, cid: u64) -> PathBuf {
    let path = dir.join("vm.toml");
    let text = format!("initrd = {:?}\n\n[vsock]\ncid = {cid}\nuds = \"v.sock\"\n", initrd());
    std::fs::write(&path, text).unwrap();
    path
}

/// A running `keel run VMFILE -- ARGS`, its stdout read line by line as it comes.
struct Vm {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    deadline: Instant,
}

impl Vm {
    fn start(vmfile: &Path, args: &[&str]) -> Vm {
        let mut child = keel()
            .arg("run")
            .arg(vmfile)
            .arg("--")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keel");
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Vm { child, lines, seen: Vec::new(), deadline: Instant::now() + LIMIT }
    }

    /// Waits for a line of the guest's output that starts with `prefix`.
    fn expect_line(&mut self, prefix: &str) -> String {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let mut err = String::new();
                    let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                    panic!(
                        "no line starting with {prefix:?}; the guest printed:\n{}\nkeel's stderr:\n{err}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Waits for keel to exit; returns its status code and everything printed after what was
    /// already read.
    fn finish(mut self) -> (Option<i32>, Vec<String>, String) {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut err);
                // The reader thread sees end-of-file once keel is gone.
                self.seen.extend(self.lines.iter());
                return (status.code(), self.seen, err);
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                panic!("keel did not exit in time; the guest printed:\n{}", self.seen.join("\n"));
            }
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(line);
            }
        }
    }
}

/// Connects to keel's socket and asks for guest port `port`: the `OK` answer's host port,
/// or `None` if keel closed the connection instead.
fn connect_guest(uds: &Path, port: u32) -> (UnixStream, Option<u32>) {
    let mut s = UnixStream::connect(uds).expect("connect to keel's vsock socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("CONNECT {port}\n").as_bytes()).unwrap();
    // Read the answer a byte at a time: nothing after the newline belongs to it.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => line.push(b[0]),
            Ok(_) => return (s, None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (s, None),
            Err(e) => panic!("waiting for keel's answer to CONNECT {port}: {e}"),
        }
    }
    let line = String::from_utf8(line).unwrap();
    let port = line.strip_prefix("OK ").and_then(|p| p.parse().ok());
    assert!(port.is_some(), "keel answered {line:?}");
    (s, port)
}

#[test]
fn a_host_program_reaches_a_guest_listener_and_gets_1_mib_echoed() {
    let dir = work_dir("host-to-guest");
    let uds = dir.join("v.sock");
    // A socket file left by a previous run that nobody listens on any more: keel replaces it.
    drop(UnixListener::bind(&uds).unwrap());
    let mut vm =
        Vm::start(&vm_file(&dir, 77), &["sh", "-c", "vsock-echo cid && vsock-echo listen 1234"]);
    assert_eq!(vm.expect_line("cid "), "cid 77", "the guest sees the VM file's CID");
    vm.expect_line("listening 1234");

    // Nobody listens on 4321 in the guest: the guest resets, keel closes without OK.
    assert_eq!(connect_guest(&uds, 4321).1, None);
    // A malformed line is closed too.
    let mut bad = UnixStream::connect(&uds).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    bad.write_all(b"HELLO 1234\n").unwrap();
    let mut rest = Vec::new();
    assert!(bad.read_to_end(&mut rest).map(|_| rest.is_empty()).unwrap_or(true));

    let (mut s, port) = connect_guest(&uds, 1234);
    assert!(port.unwrap() >= 1 << 30, "a host port from keel's ephemeral range");
    let data = pattern(MIB);
    let start = Instant::now();
    let writer = {
        let mut s = s.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || {
            s.write_all(&data).unwrap();
            // End of our data: the guest reads end-of-file and stops echoing.
            s.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    let elapsed = start.elapsed();
    writer.join().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echo differs from what was sent");
    eprintln!(
        "vsock echo of 1 MiB (host -> guest -> host): {:.2} s, {:.2} MiB/s each way",
        elapsed.as_secs_f64(),
        1.0 / elapsed.as_secs_f64()
    );

    let (code, lines, err) = vm.finish();
    assert_eq!(code, Some(0), "{lines:?}\n{err}");
    assert!(lines.iter().any(|l| l == "echoed 1048576 bytes"), "{lines:?}");
    assert!(!uds.exists(), "keel removes its socket file when it exits");
}

#[test]
fn a_guest_program_reaches_a_host_listener_and_gets_1_mib_echoed() {
    let dir = work_dir("guest-to-host");
    let listener = UnixListener::bind(dir.join("v.sock_5000")).unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            s.write_all(&buf[..n]).unwrap();
        }
        got
    });
    let script = "vsock-echo pattern 1048576 | vsock-echo connect 2 5000 | vsock-echo sum; \
                  vsock-echo connect 2 5001 </dev/null; echo refused=$?";
    let vm = Vm::start(&vm_file(&dir, 3), &["sh", "-c", script]);
    let (code, lines, err) = vm.finish();
    assert_eq!(code, Some(0), "{lines:?}\n{err}");
    let data = pattern(MIB);
    assert!(echo.join().unwrap() == data, "the host received the guest's pattern intact");
    let expected = format!("bytes=1048576 fnv={}", fnv(&data));
    assert!(lines.contains(&expected), "want {expected:?} in {lines:?}");
    // Nobody listens on v.sock_5001: the guest's connect is reset.
    assert!(lines.iter().any(|l| l.contains("connect: Connection reset")), "{lines:?}");
    assert!(lines.contains(&"refused=1".to_string()), "{lines:?}");
}

#[test]
fn unusable_socket_paths_are_clear_errors() {
    let dir = work_dir("bad-paths");
    let vm = dir.join("vm.toml");
    std::fs::write(&vm, "[vsock]\ncid = 3\nuds = \"missing/v.sock\"\n").unwrap();
    let out = run_with_deadline(keel().arg("run").arg(&vm).args(["--", "true"]), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("missing") && err.contains("does not exist"), "{err}");

    // Someone is listening on the path already (another keel, say).
    let _other = UnixListener::bind(dir.join("busy.sock")).unwrap();
    std::fs::write(&vm, "[vsock]\ncid = 3\nuds = \"busy.sock\"\n").unwrap();
    let out = run_with_deadline(keel().arg("run").arg(&vm).args(["--", "true"]), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("busy.sock") && err.contains("listening"), "{err}");
    assert!(dir.join("busy.sock").exists(), "the other program's socket is left alone");
}
