//! End-to-end: managed VMs (`keel create/start/console/pause/resume/stop/rm/ls`) with the real
//! Debian guest, each VM its own VMM process serving the REST API on its Unix socket.
//!
//! Every test has its own state root (`KEEL_STATE_DIR`), so they run in parallel.

mod common;
#[path = "common/store.rs"]
mod store;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use store::{Root, DEADLINE, PROMPT};

/// The last `/proc/uptime` value the guest's counter loop printed (`tick=<seconds>`; a line
/// may start with the shell's prompt, and the loop's own command line doesn't count).
fn last_uptime(log: &str) -> Option<f64> {
    log.lines()
        .rev()
        .filter(|l| !l.contains("echo tick="))
        .find_map(|l| l.rsplit_once("tick=")?.1.trim().parse().ok())
}

#[test]
fn lifecycle_create_start_console_pause_resume_stop_rm() {
    image();
    let root = Root::new("life");
    root.ok(&["create", "life"]);
    assert_eq!(root.state("life"), "created");
    root.ok(&["start", "life"]);
    root.await_console("life", PROMPT, 0);
    assert_eq!(root.state("life"), "running");

    // A command over the console, and its answer in the console log.
    root.type_line("life", "echo answer-$((6 * 7))");
    root.await_console("life", "answer-42", 0);

    // A clock-driven counter: the guest prints its uptime five times a second.
    root.type_line(
        "life",
        "while true; do echo tick=$(cut -d' ' -f1 /proc/uptime); sleep 0.2; done &",
    );
    let typed = root.await_console("life", "echo tick=", 0);
    let first = root.await_console("life", "tick=", typed);
    root.await_console("life", "tick=", first);

    root.ok(&["pause", "life"]);
    assert_eq!(root.state("life"), "paused");
    let frozen = root.console_log("life");
    let before = last_uptime(&frozen).expect("an uptime line before the pause");
    // A host wait, to measure that nothing happens in it: no output, no guest time.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(root.console_log("life"), frozen, "a paused guest prints nothing");
    let err = root.fails(&["pause", "life"]);
    assert!(err.contains("paused"), "pausing twice says why: {err}");

    root.ok(&["resume", "life"]);
    assert_eq!(root.state("life"), "running");
    let after_resume = root.await_console("life", "tick=", frozen.len());
    root.await_console("life", "\n", after_resume);
    let after = last_uptime(&root.console_log("life")).unwrap();
    assert!(
        after > before && after - before < 1.5,
        "the guest clock stood still while paused: {before} s before, {after} s after a 2 s pause"
    );

    let err = root.fails(&["rm", "life"]);
    assert!(err.contains("--force"), "rm of a running VM asks for --force: {err}");
    root.ok(&["stop", "life"]);
    assert_eq!(root.state("life"), "stopped");
    let err = root.fails(&["pause", "life"]);
    assert!(err.contains("stopped") || err.contains("not running"), "{err}");
    assert!(!root.vm_dir("life").join("api.sock").exists(), "the API socket goes with the VMM");
    root.ok(&["rm", "life"]);
    assert!(!root.vm_dir("life").exists());
    assert!(!root.ok(&["ls"]).contains("life"));
}

#[test]
fn ten_vms_at_once_and_one_killed() {
    image();
    const N: usize = 10;
    let root = Root::new("ten");
    let names: Vec<String> = (0..N).map(|i| format!("vm{i}")).collect();
    for name in &names {
        root.ok(&["create", name]);
    }
    std::thread::scope(|s| {
        for name in &names {
            let root = &root;
            s.spawn(move || root.ok(&["start", name]));
        }
    });
    for name in &names {
        root.await_console(name, PROMPT, 0);
    }
    let ls = root.ok(&["ls"]);
    assert_eq!(ls.matches(" running ").count(), N, "{ls}");

    // SIGKILL one VMM: it shows as crashed, the others keep running and answering.
    let victim = &names[3];
    let pid = root.pid(victim);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while root.state(victim) != "crashed" {
        assert!(Instant::now() < deadline, "a killed VMM never shows as crashed");
        std::thread::sleep(Duration::from_millis(50));
    }
    for name in names.iter().filter(|n| *n != victim) {
        assert_eq!(root.state(name), "running");
        let from = root.console_log(name).len();
        root.type_line(name, &format!("echo still-{name}"));
        root.await_console(name, &format!("still-{name}"), from);
    }

    // A crashed VM starts again.
    let from = root.console_log(victim).len();
    root.ok(&["start", victim]);
    root.await_console(victim, PROMPT, from);
    assert_eq!(root.state(victim), "running");

    std::thread::scope(|s| {
        for name in &names {
            let root = &root;
            s.spawn(move || root.ok(&["stop", name, "--timeout", "20"]));
        }
    });
    let ls = root.ok(&["ls"]);
    assert_eq!(ls.matches(" stopped ").count(), N, "{ls}");
}

/// One raw HTTP/1.1 request on the VM's API socket; returns the status code and body.
fn http(sock: &Path, request: &str) -> (u16, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn json_request(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn the_api_of_a_real_vm_answers_many_clients_and_refuses_bad_requests() {
    image();
    let root = Root::new("api");
    root.ok(&["create", "api"]);
    root.ok(&["start", "api"]);
    root.await_console("api", PROMPT, 0);
    let sock = root.vm_dir("api").join("api.sock");
    let mode = std::fs::metadata(&sock)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .unwrap();
    assert_eq!(mode & 0o777, 0o600, "only the owner may talk to the VMM");

    // 100 clients at once, some of them leaving in the middle of a request.
    std::thread::scope(|s| {
        for i in 0..100 {
            let sock = &sock;
            s.spawn(move || {
                if i % 10 == 0 {
                    let mut c = UnixStream::connect(sock).unwrap();
                    c.write_all(b"PATCH /vm HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"st").unwrap();
                    return;
                }
                let (status, body) = http(sock, &json_request("GET", "/", ""));
                assert_eq!(status, 200, "{body}");
                assert!(body.contains("\"Running\""), "{body}");
            });
        }
    });

    let (status, body) = http(&sock, &json_request("PATCH", "/vm", "{\"state\": "));
    assert_eq!(status, 400, "malformed JSON: {body}");
    assert!(body.contains("fault_message"));
    let (status, body) = http(&sock, &json_request("PATCH", "/vm", r#"{"state":"Paused","x":1}"#));
    assert_eq!(status, 400, "unknown field: {body}");
    let (status, body) =
        http(&sock, &json_request("PUT", "/actions", r#"{"action_type":"InstanceStart"}"#));
    assert_eq!(status, 400, "starting a running VM: {body}");
    let (status, body) = http(&sock, &json_request("GET", "/balloon", ""));
    assert_eq!(status, 400, "no balloon in this VM: {body}");
    let (status, body) = http(&sock, &json_request("GET", "/metrics", ""));
    assert_eq!(status, 200);
    let metrics: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(metrics["vcpus"][0]["instructions"].as_u64().unwrap() > 1_000_000, "{body}");
    assert!(metrics["memory"]["rss_bytes"].as_u64().unwrap() > 0, "{body}");
    let (status, body) = http(&sock, &json_request("GET", "/metrics?format=prometheus", ""));
    assert_eq!(status, 200);
    assert!(body.contains("keel_vcpu_instructions_total{vcpu=\"0\"}"), "{body}");
    let (status, body) = http(&sock, &json_request("GET", "/vm/config", ""));
    assert_eq!(status, 200);
    assert!(body.contains("\"memory_mib\":256"), "{body}");

    let (status, body) = http(
        &sock,
        &json_request("PUT", "/actions", r#"{"action_type":"Stop","timeout_ms":20000}"#),
    );
    assert_eq!(status, 204, "{body}");
    let deadline = Instant::now() + DEADLINE;
    while root.state("api") != "stopped" {
        assert!(Instant::now() < deadline, "the VMM never ended after Stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_vmm_per_vm_and_sigterm_stops_the_guest_cleanly() {
    image();
    let root = Root::new("term");
    root.ok(&["create", "term"]);
    root.ok(&["start", "term"]);
    root.await_console("term", PROMPT, 0);
    let pid = root.pid("term");

    // A second VMM for the same directory (two racing `keel start`s) is refused before it
    // touches anything.
    let mut second = keel();
    second.arg("vmm").arg("--dir").arg(root.vm_dir("term"));
    let out = run_with_deadline(&mut second, DEADLINE);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("already has a VMM running"), "{}", stderr(&out));
    assert_eq!(root.pid("term"), pid, "the running VMM's pid file is untouched");
    assert_eq!(root.state("term"), "running");

    // SIGTERM is a stop, not a crash.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while root.state("term") != "stopped" {
        assert!(Instant::now() < deadline, "SIGTERM never stopped the VM: {}", root.state("term"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(root.vm_dir("term").join("keel.log")).unwrap();
    assert!(log.contains("stopped (PowerOff)"), "the guest powered off in an orderly way:\n{log}");
}
