//! `keel create`, `ls`, `info`, `rm`, `logs` and friends on VM directories, as real
//! processes against a private state root. Nothing here boots a VM: the states that need a
//! VMM (running, paused) are covered where the VMM is.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A private state root (and scratch space beside it) for one test.
struct Root {
    base: PathBuf,
}

impl Root {
    fn new(test: &str) -> Root {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("manage").join(test);
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        Root { base }
    }

    fn state(&self) -> PathBuf {
        self.base.join("state")
    }

    fn vm_dir(&self, name: &str) -> PathBuf {
        self.state().join("vms").join(name)
    }

    fn keel(&self, args: &[&str]) -> Output {
        self.keel_in(&self.base, args)
    }

    fn keel_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut cmd = keel();
        cmd.args(args).current_dir(cwd).env("KEEL_STATE_DIR", self.state());
        let out = run_with_deadline(&mut cmd, Duration::from_secs(60));
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "keel {args:?} panicked: {err}");
        out
    }

    /// Runs keel, expecting success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.keel(args);
        assert!(out.status.success(), "keel {args:?} failed: {}", stderr(&out));
        stdout(&out)
    }

    /// Runs keel, expecting exit status 1 and a one-line `keel: error:`; returns it.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.keel(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "keel {args:?}: {err}");
        assert!(err.starts_with("keel: error: "), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        err
    }

    /// `keel ls --json`, as (name, state) pairs.
    fn states(&self) -> Vec<(String, String)> {
        let list: Value = serde_json::from_str(&self.ok(&["ls", "--json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|vm| (vm["name"].as_str().unwrap().into(), vm["state"].as_str().unwrap().into()))
            .collect()
    }
}

fn pair(name: &str, state: &str) -> (String, String) {
    (name.to_string(), state.to_string())
}

#[test]
fn bad_names_are_refused_and_nothing_is_made_outside_the_root() {
    let root = Root::new("names");
    let long = "x".repeat(65);
    for name in ["../x", "a/b", "", ".hidden", "a..b", "-x", "sp ace", long.as_str()] {
        // After `--` so that "-x" is a name, not an unknown flag.
        let err = root.fails(&["create", "--", name]);
        assert!(err.contains("invalid VM name"), "{name:?}: {err}");
    }
    assert!(!root.base.join("x").exists(), "../x escaped the state root");
    assert!(!root.state().join("x").exists());
    assert!(!root.vm_dir("a").exists());
    let left: Vec<_> = std::fs::read_dir(root.state().join("vms"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // The same rules guard every command that takes a name.
    root.ok(&["create", "keep"]);
    for name in ["../state", "../vms", "keep/..", "."] {
        let err = root.fails(&["rm", "--force", name]);
        assert!(err.contains("invalid VM name"), "{err}");
    }
    assert!(root.vm_dir("keep").join("vm.toml").exists());
}

#[test]
fn a_created_vm_is_listed_described_and_removed() {
    let root = Root::new("lifecycle");
    root.ok(&["create", "web"]);
    let dir = root.vm_dir("web");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(dir.join("vm.toml").is_file());

    let table = root.ok(&["ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATE", "VCPUS", "MEMORY", "UPTIME"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row, ["web", "created", "1", "256", "MiB", "-"]);

    let info: Value = serde_json::from_str(&root.ok(&["info", "web", "--json"])).unwrap();
    assert_eq!(info["name"], "web");
    assert_eq!(info["state"], "created");
    assert_eq!(info["vcpus"], 1);
    assert_eq!(info["memory_mib"], 256);
    assert_eq!(info["pid"], Value::Null);
    let text = root.ok(&["info", "web"]);
    assert!(text.lines().any(|l| l == "state: created"), "{text}");
    assert!(text.lines().any(|l| l == "memory: 256 MiB"), "{text}");

    root.ok(&["rm", "web"]);
    assert!(!dir.exists());
    assert_eq!(root.states(), []);
    let err = root.fails(&["info", "web"]);
    assert!(err.contains("no VM named \"web\""), "{err}");
}

#[test]
fn a_vm_file_is_checked_and_copied_with_absolute_paths() {
    let root = Root::new("vmfile");
    let src = root.base.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("vm.toml"),
        "vcpus = 2\nmemory = 512 # MiB\nkernel = \"vmlinux\"\nfirmware = \"sbi\"\n\
         [[disk]]\npath = \"disks/root.img\"\nread_only = true\n",
    )
    .unwrap();
    // A relative VM file path, from another directory: paths follow the file, not the cwd.
    root.keel_in(&root.base, &["create", "db", "src/vm.toml"]);
    let copy = std::fs::read_to_string(root.vm_dir("db").join("vm.toml")).unwrap();
    let kernel = src.join("vmlinux");
    assert!(copy.contains(&format!("kernel = \"{}\"", kernel.display())), "{copy}");
    assert!(copy.contains(&format!("\"{}\"", src.join("disks/root.img").display())), "{copy}");
    assert!(copy.contains("firmware = \"sbi\""), "{copy}");

    let info: Value = serde_json::from_str(&root.ok(&["info", "db", "--json"])).unwrap();
    assert_eq!(info["vcpus"], 2);
    assert_eq!(info["memory_mib"], 512);
    assert_eq!(info["kernel"], kernel.to_str().unwrap());
    assert_eq!(info["disks"][0]["read_only"], true);
    let list: Value = serde_json::from_str(&root.ok(&["ls", "--json"])).unwrap();
    assert_eq!(list[0]["vcpus"], 2);
    assert_eq!(list[0]["memory_mib"], 512);

    // The copy stands alone: changing the original doesn't change the VM.
    std::fs::write(src.join("vm.toml"), "memory = 64\n").unwrap();
    let list: Value = serde_json::from_str(&root.ok(&["ls", "--json"])).unwrap();
    assert_eq!(list[0]["memory_mib"], 512);
}

#[test]
fn a_taken_name_is_refused() {
    let root = Root::new("duplicate");
    root.ok(&["create", "a"]);
    let before = std::fs::read(root.vm_dir("a").join("vm.toml")).unwrap();
    let file = root.base.join("other.toml");
    std::fs::write(&file, "memory = 64\n").unwrap();
    let err = root.fails(&["create", "a", file.to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(root.vm_dir("a").join("vm.toml")).unwrap(), before);
}

#[test]
fn a_bad_vm_file_is_refused_and_leaves_nothing_behind() {
    let root = Root::new("badfile");
    let file = root.base.join("bad.toml");
    std::fs::write(&file, "vcpus = 1\nmemory = 128\nmemroy = 64\n").unwrap();
    let err = root.fails(&["create", "bad", file.to_str().unwrap()]);
    assert!(err.contains("bad.toml:3"), "{err}");
    assert!(err.contains("memroy"), "{err}");
    assert!(!root.vm_dir("bad").exists());

    std::fs::write(&file, "memory = 0\n").unwrap();
    let err = root.fails(&["create", "bad", file.to_str().unwrap()]);
    assert!(err.contains("memory = 0"), "{err}");
    let err = root.fails(&["create", "bad", "/nonexistent/vm.toml"]);
    assert!(err.contains("/nonexistent/vm.toml"), "{err}");
    assert!(!root.vm_dir("bad").exists());
}

/// A process id that no longer names a running process: a `sleep` that was killed and reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    pid
}

#[test]
fn states_come_from_the_files_and_the_process() {
    let root = Root::new("states");
    for name in ["crashed", "stopped", "reused", "fresh", "died"] {
        root.ok(&["create", name]);
    }
    std::fs::write(root.vm_dir("crashed").join("pid"), format!("{}\n", dead_pid())).unwrap();
    std::fs::write(root.vm_dir("stopped").join("state"), "stopped\n").unwrap();
    // The VMM exited after the guest died, and said so.
    std::fs::write(root.vm_dir("died").join("state"), "crashed\n").unwrap();
    // A live process that isn't this VM's VMM (the pid was reused): still a crash.
    let mut other = Command::new("sleep").arg("1000").spawn().unwrap();
    std::fs::write(root.vm_dir("reused").join("pid"), other.id().to_string()).unwrap();
    let states = root.states();
    other.kill().unwrap();
    other.wait().unwrap();
    assert_eq!(
        states,
        [
            pair("crashed", "crashed"),
            pair("died", "crashed"),
            pair("fresh", "created"),
            pair("reused", "crashed"),
            pair("stopped", "stopped")
        ]
    );
    let table = root.ok(&["ls"]);
    assert!(table.lines().any(|l| l.split_whitespace().take(2).eq(["crashed", "crashed"])));
    let info: Value = serde_json::from_str(&root.ok(&["info", "crashed", "--json"])).unwrap();
    assert_eq!(info["state"], "crashed");
}

#[test]
fn a_crashed_vm_is_removed_without_force() {
    let root = Root::new("rm-crashed");
    root.ok(&["create", "gone"]);
    std::fs::write(root.vm_dir("gone").join("pid"), dead_pid().to_string()).unwrap();
    std::fs::write(root.vm_dir("gone").join("keel.log"), "the VMM said things\n").unwrap();
    root.ok(&["rm", "gone"]);
    assert!(!root.vm_dir("gone").exists());
}

#[test]
fn rm_never_follows_symlinks_out_of_the_root() {
    let root = Root::new("symlinks");
    let outside = root.base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious"), "keep me").unwrap();
    root.ok(&["create", "a"]);
    std::os::unix::fs::symlink(&outside, root.vm_dir("a").join("link")).unwrap();
    root.ok(&["rm", "a"]);
    assert!(!root.vm_dir("a").exists());
    // A VM "directory" that is a symlink is not a VM, and is left alone.
    std::os::unix::fs::symlink(&outside, root.vm_dir("b")).unwrap();
    let err = root.fails(&["rm", "--force", "b"]);
    assert!(err.contains("not a plain directory"), "{err}");
    assert_eq!(root.states(), []);
    assert_eq!(std::fs::read_to_string(outside.join("precious")).unwrap(), "keep me");
}

#[test]
fn commands_on_missing_or_stopped_vms_say_what_to_do() {
    let root = Root::new("errors");
    for cmd in ["start", "stop", "pause", "resume", "console", "logs", "info", "rm"] {
        let err = root.fails(&[cmd, "nope"]);
        assert!(err.contains("no VM named \"nope\""), "{cmd}: {err}");
        assert!(err.contains("keel create nope"), "{cmd}: {err}");
    }
    root.ok(&["create", "idle"]);
    for cmd in ["stop", "pause", "resume", "console"] {
        let err = root.fails(&[cmd, "idle"]);
        assert!(err.contains("VM idle is not running"), "{cmd}: {err}");
        assert!(err.contains("keel start idle"), "{cmd}: {err}");
    }
}

#[test]
fn logs_print_the_vmm_log_or_the_console() {
    let root = Root::new("logs");
    root.ok(&["create", "v"]);
    std::fs::write(root.vm_dir("v").join("keel.log"), "vmm line 1\nvmm line 2\n").unwrap();
    std::fs::write(root.vm_dir("v").join("console.log"), b"login: \x1b[0m\n").unwrap();
    assert_eq!(root.ok(&["logs", "v"]), "vmm line 1\nvmm line 2\n");
    assert_eq!(root.keel(&["logs", "v", "--console"]).stdout, b"login: \x1b[0m\n");
}

#[test]
fn an_empty_state_root_lists_nothing() {
    let root = Root::new("empty");
    assert_eq!(root.states(), []);
    let table = root.ok(&["ls"]);
    assert_eq!(table.lines().count(), 1, "{table}");
}

/// A stand-in for `keel vmm`, so the commands that talk to a running VM can be tried before
/// there is a guest: a `sh` whose command line reads `vmm --dir DIR` (so keel takes it for the
/// VM's VMM; it just waits on its stdin), and a thread here serving the contract's API on
/// DIR/api.sock.
mod fake {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};

    use serde_json::{json, Value};

    pub struct FakeVmm {
        shared: Arc<Shared>,
        pub pid: u32,
    }

    struct Shared {
        dir: PathBuf,
        pid: u32,
        process: Mutex<Option<Child>>,
        paused: Mutex<bool>,
        /// "METHOD PATH BODY" of every request.
        requests: Mutex<Vec<String>>,
    }

    impl FakeVmm {
        /// `serve`: false for a VMM that has hung (its process runs, its socket is gone).
        pub fn start(dir: &Path, serve: bool) -> FakeVmm {
            let child = Command::new("sh")
                .args(["-c", "read line", "vmm", "--dir"])
                .arg(dir)
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            let pid = child.id();
            // Until the child has exec'd sh, /proc shows the test binary's command line, which
            // keel rightly takes for a reused pid: wait for the exec.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("vmm"))
            {
                assert!(std::time::Instant::now() < deadline, "the fake VMM never started");
                std::thread::yield_now();
            }
            std::fs::write(dir.join("pid"), format!("{pid}\n")).unwrap();
            let shared = Arc::new(Shared {
                dir: dir.to_owned(),
                pid,
                process: Mutex::new(Some(child)),
                paused: Mutex::new(false),
                requests: Mutex::new(Vec::new()),
            });
            if serve {
                let listener = UnixListener::bind(dir.join("api.sock")).unwrap();
                let shared = shared.clone();
                std::thread::spawn(move || {
                    for stream in listener.incoming() {
                        if !shared.handle(stream.unwrap()) {
                            break;
                        }
                    }
                });
            }
            FakeVmm { shared, pid }
        }

        pub fn requests(&self) -> Vec<String> {
            self.shared.requests.lock().unwrap().clone()
        }
    }

    impl Drop for FakeVmm {
        fn drop(&mut self) {
            if let Some(mut child) = self.shared.process.lock().unwrap().take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Shared {
        /// Answers one connection; false once the VM has stopped.
        fn handle(self: &Arc<Self>, stream: UnixStream) -> bool {
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let mut words = head.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            self.requests.lock().unwrap().push(format!("{method} {path} {body}"));
            let mut stream = reader.into_inner();
            let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let (status, answer) = match (method, path) {
                ("GET", "/") => {
                    let state = if *self.paused.lock().unwrap() { "Paused" } else { "Running" };
                    (
                        200,
                        json!({"id": "v", "state": state, "vmm_version": "0.1.0",
                        "app_name": "keel", "pid": self.pid, "vcpus": 1,
                        "memory_mib": 256, "uptime_s": 12.5}),
                    )
                }
                ("GET", "/vm/config") => (
                    200,
                    json!({"vcpus": 1, "memory_mib": 256, "kernel": "/k", "initrd": null,
                        "cmdline": "console=ttyS0", "firmware": "sbi", "disks": [], "nets": [],
                        "vsock": null, "balloon": null, "rng": false}),
                ),
                ("PATCH", "/vm") => {
                    let mut paused = self.paused.lock().unwrap();
                    let want = json["state"] == "Paused";
                    if want == *paused {
                        let fault = if want { "the VM is already paused" } else { "not paused" };
                        (400, json!({ "fault_message": fault }))
                    } else {
                        *paused = want;
                        (204, Value::Null)
                    }
                }
                ("PUT", "/actions") if json["action_type"] == "Stop" => {
                    // What the VMM does on the way out: record the stop, tidy up, exit.
                    if let Some(mut child) = self.process.lock().unwrap().take() {
                        child.kill().unwrap();
                        child.wait().unwrap();
                    }
                    std::fs::write(self.dir.join("state"), "stopped\n").unwrap();
                    std::fs::remove_file(self.dir.join("pid")).unwrap();
                    std::fs::remove_file(self.dir.join("api.sock")).unwrap();
                    stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
                    return false;
                }
                ("GET", "/console") if head.contains("Upgrade: keel-console") => {
                    stream
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: keel-console\r\n\r\nhello from the guest\r\n")
                        .unwrap();
                    // The "guest" echoes what it is sent.
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 256];
                        while let Ok(n @ 1..) = stream.read(&mut buf) {
                            let mut echo = b"echo:".to_vec();
                            echo.extend_from_slice(&buf[..n]);
                            if stream.write_all(&echo).is_err() {
                                break;
                            }
                        }
                    });
                    return true;
                }
                _ => (404, json!({"fault_message": "no such route"})),
            };
            let text = if answer.is_null() { String::new() } else { answer.to_string() };
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
            true
        }
    }
}

#[test]
fn a_running_vm_is_listed_described_paused_and_stopped() {
    let root = Root::new("fake-running");
    root.ok(&["create", "v"]);
    let vmm = fake::FakeVmm::start(&root.vm_dir("v"), true);
    assert_eq!(root.states(), [pair("v", "running")]);
    let table = root.ok(&["ls"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["v", "running", "1", "256", "MiB", "12s"]);
    let info: Value = serde_json::from_str(&root.ok(&["info", "v", "--json"])).unwrap();
    assert_eq!(info["state"], "running");
    assert_eq!(info["pid"], vmm.pid);
    assert_eq!(info["kernel"], "/k");
    assert_eq!(info["uptime_s"], 12.5);
    assert!(root.ok(&["info", "v"]).lines().any(|l| l == "uptime: 12s"));

    root.ok(&["pause", "v"]);
    assert_eq!(root.states(), [pair("v", "paused")]);
    let err = root.fails(&["pause", "v"]);
    assert!(err.contains("cannot pause VM v: the VM is already paused (HTTP 400)"), "{err}");
    root.ok(&["resume", "v"]);
    assert_eq!(root.states(), [pair("v", "running")]);

    let err = root.fails(&["start", "v"]);
    assert!(err.contains("VM v is already running"), "{err}");
    let err = root.fails(&["rm", "v"]);
    assert!(err.contains("keel stop v") && err.contains("--force"), "{err}");

    root.ok(&["stop", "v", "--timeout", "3"]);
    assert_eq!(root.states(), [pair("v", "stopped")]);
    let requests = vmm.requests();
    assert!(requests.iter().any(|r| r.starts_with("PATCH /vm {\"state\":\"Paused\"}")));
    let stop = requests.iter().find(|r| r.starts_with("PUT /actions")).unwrap();
    let body: Value = serde_json::from_str(stop.split_once(' ').unwrap().1[8..].trim()).unwrap();
    assert_eq!(body, serde_json::json!({"action_type": "Stop", "timeout_ms": 3000}));
}

#[test]
fn rm_force_stops_a_running_vm_first() {
    let root = Root::new("fake-rm");
    root.ok(&["create", "v"]);
    let vmm = fake::FakeVmm::start(&root.vm_dir("v"), true);
    root.ok(&["rm", "--force", "v"]);
    assert!(!root.vm_dir("v").exists());
    assert!(vmm.requests().iter().any(|r| r.contains("\"timeout_ms\":0")), "{:?}", vmm.requests());
}

#[test]
fn a_vmm_that_does_not_answer_is_killed_only_with_force() {
    let root = Root::new("fake-hung");
    root.ok(&["create", "v"]);
    let _vmm = fake::FakeVmm::start(&root.vm_dir("v"), false);
    assert_eq!(root.states(), [pair("v", "unresponsive")]);
    let err = root.fails(&["stop", "v"]);
    assert!(err.contains("cannot stop VM v") && err.contains("api.sock"), "{err}");
    assert!(err.contains("keel stop --force v"), "{err}");
    root.ok(&["stop", "--force", "v"]);
    assert_eq!(root.states(), [pair("v", "stopped")]);
    assert!(!root.vm_dir("v").join("pid").exists());
}

#[test]
fn console_from_a_script_sends_stdin_and_prints_the_output() {
    let root = Root::new("fake-console");
    root.ok(&["create", "v"]);
    let _vmm = fake::FakeVmm::start(&root.vm_dir("v"), true);
    let input = root.base.join("input");
    std::fs::write(&input, "ls\n").unwrap();
    let mut cmd = keel();
    cmd.args(["console", "v", "--timeout", "2"]).env("KEEL_STATE_DIR", root.state());
    let stdin = std::fs::File::open(&input).unwrap();
    let out = run_with_stdin(&mut cmd, stdin.into(), Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from the guest\r\necho:ls\n");
    assert_eq!(root.states(), [pair("v", "running")], "the VM keeps running");
}

#[test]
fn console_on_a_terminal_is_raw_and_ctrl_close_bracket_detaches() {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::termios::{self, LocalFlags};

    let root = Root::new("fake-console-tty");
    root.ok(&["create", "v"]);
    let vmm = fake::FakeVmm::start(&root.vm_dir("v"), true);
    let pty = nix::pty::openpty(None, None).unwrap();
    let before = termios::tcgetattr(pty.slave.as_fd()).unwrap();
    let slave = || std::process::Stdio::from(pty.slave.try_clone().unwrap());
    let mut child = keel()
        .args(["console", "v"])
        .env("KEEL_STATE_DIR", root.state())
        .stdin(slave())
        .stdout(slave())
        .stderr(slave())
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut seen = Vec::new();
    // Reads the terminal until `needle` shows up, or fails after a generous deadline.
    let mut expect = |master: &mut std::fs::File, needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "no {needle:?}; saw {:?}", String::from_utf8_lossy(&seen));
            let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::try_from(left).unwrap()).unwrap() > 0 {
                let mut buf = [0u8; 1024];
                let n = master.read(&mut buf).expect("keel closed the terminal");
                seen.extend_from_slice(&buf[..n]);
            }
        }
    };
    expect(&mut master, "attached to v; Ctrl-] detaches");
    expect(&mut master, "hello from the guest");
    let during = termios::tcgetattr(pty.slave.as_fd()).unwrap();
    assert!(!during.local_flags.contains(LocalFlags::ICANON), "the terminal is raw");
    master.write_all(b"abc").unwrap();
    expect(&mut master, "echo:abc");
    master.write_all(b"\x1d").unwrap();
    expect(&mut master, "detached from v");
    let status = wait_timeout::ChildExt::wait_timeout(&mut child, Duration::from_secs(30))
        .unwrap()
        .expect("keel console did not exit after Ctrl-]");
    assert!(status.success(), "{status}");
    let after = termios::tcgetattr(pty.slave.as_fd()).unwrap();
    assert_eq!(before.local_flags, after.local_flags, "the terminal is restored");
    assert_eq!(root.states(), [pair("v", "running")], "the VM keeps running");
    assert!(!vmm.requests().iter().any(|r| r.starts_with("PUT /actions")));
}

#[test]
fn logs_follow_shows_what_is_added_until_the_vm_is_removed() {
    use std::io::{Read, Write};
    use std::sync::mpsc;

    let root = Root::new("logs-follow");
    root.ok(&["create", "v"]);
    let log = root.vm_dir("v").join("console.log");
    std::fs::write(&log, "one\n").unwrap();
    let mut child = keel()
        .args(["logs", "-f", "--console", "v"])
        .env("KEEL_STATE_DIR", root.state())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = out.read(&mut buf) {
            tx.send(buf[..n].to_vec()).unwrap();
        }
    });
    let mut seen = String::new();
    let mut expect = |text: &str| {
        while !seen.contains(text) {
            let chunk = rx.recv_timeout(Duration::from_secs(30)).expect("no output from logs -f");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    expect("one\n");
    std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(b"two\n").unwrap();
    expect("one\ntwo\n");
    root.ok(&["rm", "v"]);
    let status = wait_timeout::ChildExt::wait_timeout(&mut child, Duration::from_secs(30))
        .unwrap()
        .expect("logs -f did not end when the VM was removed");
    assert!(status.success());
}
