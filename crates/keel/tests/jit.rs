//! End-to-end: the binary translator (`--accel jit`) beside the interpreter (`--accel interp`)
//! on real Linux guests: parallel atomics (AMOs, LR/SC, a spinlock) on four vCPUs, code that
//! rewrites itself, snapshots taken under one engine and restored under the other, and
//! $KEEL_ACCEL choosing the engine of VMs that name none.
//!
//! The guest programs are tests/guest-tools/atomics.c and smc.c, compiled here with Debian's
//! RISC-V cross compiler and added to the default initramfs (see `initrd_with_tools`).

mod common;
#[path = "common/store.rs"]
mod store;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use serde_json::Value;
use store::{Root, PROMPT};

/// How long one `keel run` may take (a 4-vCPU guest on the interpreter, beside other tests,
/// on a two-core machine).
const LIMIT: Duration = Duration::from_secs(240);

fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jit").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The default initramfs plus /bin/atomics and /bin/smc, built once per test run.
fn initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| initrd_with_tools(&work_dir("tools"), &["atomics", "smc"]))
}

/// A VM file in `dir` with the test initramfs and `extra` keys.
fn vm_file(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("vm.toml");
    std::fs::write(&path, format!("initrd = {:?}\n{extra}", initrd())).unwrap();
    path
}

/// `keel run VMFILE FLAGS... -- COMMAND...`.
fn run(vm_file: &Path, flags: &[&str], command: &[&str]) -> Output {
    let mut cmd = keel();
    cmd.arg("run").arg(vm_file).args(flags).arg("--").args(command);
    run_with_deadline(&mut cmd, LIMIT)
}

/// The engines the guest-program tests run on: the translator as configured by default,
/// the translator translating every block the first time it runs, and the interpreter.
/// (Flags and VM file name the engine, so $KEEL_ACCEL does not change these tests.)
enum Engine {
    Jit,
    JitAtOnce,
    Interp,
}

impl Engine {
    /// (the VM file's extra keys, the `keel run` flags)
    fn config(&self) -> (&'static str, &'static [&'static str]) {
        match self {
            Engine::Jit => ("", &["--accel", "jit"]),
            Engine::JitAtOnce => ("accel = \"jit\"\n[jit]\nthreshold = 0\n", &[]),
            Engine::Interp => ("", &["--accel", "interp"]),
        }
    }
}

/// Rounds of each atomics thread: a few seconds of the interpreter on four vCPUs sharing two
/// host cores.
const ATOMIC_ROUNDS: u64 = 1_000_000;

fn atomics_on_four_vcpus(name: &str, engine: Engine) {
    image();
    let dir = work_dir(name);
    let (extra, flags) = engine.config();
    let vm = vm_file(&dir, extra);
    let flags = [flags, &["--vcpus", "4"]].concat();
    let rounds = ATOMIC_ROUNDS.to_string();
    let out = run(&vm, &flags, &["atomics", "4", &rounds]);
    let total = 4 * ATOMIC_ROUNDS;
    assert_eq!(
        stdout(&out),
        format!(
            "atomics: started 4 threads\n\
             threads=4 cpus=4 rounds={total} amo64={total} amo32={total} cas={total} locked={total}\n\
             atomics ok\n"
        ),
        "{name}: every increment of every thread must count, each thread on its own vCPU; stderr: {}",
        stderr(&out)
    );
    assert!(out.status.success(), "{name}: {}", stderr(&out));
}

#[test]
fn atomics_on_four_vcpus_count_exactly_translated() {
    atomics_on_four_vcpus("atomics-jit", Engine::Jit);
}

#[test]
fn atomics_on_four_vcpus_count_exactly_translated_at_once() {
    atomics_on_four_vcpus("atomics-jit0", Engine::JitAtOnce);
}

#[test]
fn atomics_on_four_vcpus_count_exactly_interpreted() {
    atomics_on_four_vcpus("atomics-interp", Engine::Interp);
}

/// Rounds of rewriting, and runs of each version: more runs than the translator's default
/// threshold (32), so every version is translated before it is overwritten.
const SMC_ROUNDS: u32 = 400;
const SMC_CALLS: u32 = 100;

fn self_modifying_code(name: &str, engine: Engine) {
    image();
    let dir = work_dir(name);
    let (extra, flags) = engine.config();
    let vm = vm_file(&dir, extra);
    // Two vCPUs: the "thread" case writes on one and runs on the other.
    let flags = [flags, &["--vcpus", "2"]].concat();
    let out = run(&vm, &flags, &["smc", &SMC_ROUNDS.to_string(), &SMC_CALLS.to_string()]);
    let calls = SMC_ROUNDS * SMC_CALLS;
    let want: String = ["rwx", "mprotect", "alias", "self", "thread"]
        .iter()
        .map(|case| format!("{case} rounds={SMC_ROUNDS} calls={calls} wrong=0\n"))
        .chain(["smc ok\n".to_string()])
        .collect();
    assert_eq!(
        stdout(&out),
        want,
        "{name}: every call must run the newest code; stderr: {}",
        stderr(&out)
    );
    assert!(out.status.success(), "{name}: {}", stderr(&out));
}

#[test]
fn rewritten_code_runs_its_newest_version_translated() {
    self_modifying_code("smc-jit", Engine::Jit);
}

#[test]
fn rewritten_code_runs_its_newest_version_translated_at_once() {
    self_modifying_code("smc-jit0", Engine::JitAtOnce);
}

#[test]
fn rewritten_code_runs_its_newest_version_interpreted() {
    self_modifying_code("smc-interp", Engine::Interp);
}

/// One raw HTTP/1.1 GET on a VM's API socket; the JSON body of its 200 answer.
fn get_json(root: &Root, name: &str, path: &str) -> Value {
    let mut s = UnixStream::connect(root.vm_dir(name).join("api.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {answer}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Blocks translated by each vCPU, and the instructions all of them retired
/// (`GET /metrics`).
fn translated(root: &Root, name: &str) -> (Vec<u64>, u64) {
    let metrics = get_json(root, name, "/metrics");
    let vcpus = metrics["vcpus"].as_array().unwrap();
    let blocks = vcpus.iter().map(|c| c["blocks_translated"].as_u64().unwrap()).collect();
    (blocks, vcpus.iter().map(|c| c["instructions"].as_u64().unwrap()).sum())
}

/// `keel info --json NAME`.
fn info(root: &Root, name: &str) -> Value {
    serde_json::from_str(&root.ok(&["info", name, "--json"])).unwrap()
}

/// The `count=N` values in a console log, in order (the loop's own command line excluded).
fn counts(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| !l.contains("echo count="))
        .filter_map(|l| l.rsplit_once("count=")?.1.trim().parse().ok())
        .collect()
}

/// Waits until `name` prints `n` more counts after byte `from` of its console log; returns
/// every count after it.
fn more_counts(root: &Root, name: &str, from: usize, n: usize) -> Vec<u64> {
    let mut at = from;
    for _ in 0..n {
        at = root.await_console(name, "count=", at);
        at = root.await_console(name, "\n", at);
    }
    counts(&root.console_log(name)[from..])
}

/// The restored guest counts on from `last` (the last count before the snapshot), one by
/// one.
fn assert_goes_on(counted: &[u64], last: u64, what: &str) {
    assert!(
        counted[0] >= last && counted[0] <= last + 2,
        "{what}: the counter continues from {last}, not from the start: {counted:?}"
    );
    for w in counted.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{what}: the count went {} -> {}: {counted:?}", w[0], w[1]);
    }
}

/// VM `name` runs, on `engine` as `keel info` says.
fn assert_engine(root: &Root, name: &str, engine: &str) {
    let info = info(root, name);
    assert_eq!(info["state"], "running", "{name}: {info}");
    assert_eq!(info["accel"], engine, "{name}: keel info shows the engine it runs on: {info}");
    assert_eq!(info["jit"].is_null(), engine == "interp", "{name}: {info}");
}

/// VM `name` was made from a snapshot to run on `engine`: it runs on it and its VM file
/// says so.
fn assert_restored_on(root: &Root, name: &str, engine: &str) {
    assert_engine(root, name, engine);
    let vm = std::fs::read_to_string(root.vm_dir(name).join("vm.toml")).unwrap();
    assert!(vm.contains(&format!("accel = \"{engine}\"")), "{name}'s VM file: {vm}");
    if engine == "interp" {
        assert!(!vm.contains("[jit]"), "the interpreter has no [jit] settings: {vm}");
    }
}

#[test]
fn a_snapshot_taken_under_one_engine_goes_on_under_the_other() {
    image();
    let root = Root::new("jit-cross");
    // Two vCPUs, on the translator whatever $KEEL_ACCEL says.
    let vm = vm_file(&root.0, "vcpus = 2\naccel = \"jit\"\n");
    root.ok(&["create", "a", vm.to_str().unwrap()]);
    root.ok(&["start", "a"]);
    root.await_console("a", PROMPT, 0);
    // State in guest memory: a file in tmpfs, four threads hammering shared counters with
    // AMOs and LR/SC until told to stop (their totals are checked at the very end, after
    // two engine changes), and a shell loop counting in a variable.
    root.type_line("a", "echo marker-$((4000 + 242)) > /tmp/marker");
    root.type_line("a", "atomics 4 until /tmp/stop &");
    root.await_console("a", "atomics: started 4 threads", 0);
    root.type_line("a", "i=0; while true; do i=$((i+1)); echo count=$i; sleep 0.2; done &");
    let typed = root.await_console("a", "echo count=", 0);
    more_counts(&root, "a", typed, 2);
    assert_engine(&root, "a", "jit");
    let (blocks, _) = translated(&root, "a");
    assert!(blocks.iter().all(|&b| b > 0), "every vCPU of a translates code: {blocks:?}");

    // jit -> interp.
    let snap_a = root.0.join("snap-a");
    root.ok(&["snapshot", "a", snap_a.to_str().unwrap(), "--leave-paused"]);
    let last_a = *counts(&root.console_log("a")).last().unwrap();
    root.ok(&["stop", "a", "--force"]);
    root.ok(&["restore", snap_a.to_str().unwrap(), "b", "--accel", "interp"]);
    assert_restored_on(&root, "b", "interp");
    let counted = more_counts(&root, "b", 0, 3);
    assert_goes_on(&counted, last_a, "restored on the interpreter");
    let (blocks, instructions) = translated(&root, "b");
    assert!(instructions > 1_000_000, "b runs: {instructions} instructions");
    assert_eq!(blocks, [0, 0], "the interpreter translates nothing");
    let from = root.console_log("b").len();
    root.type_line("b", "cat /tmp/marker");
    root.await_console("b", "marker-4242", from);

    // interp -> jit, after more work on the interpreter.
    let snap_b = root.0.join("snap-b");
    root.ok(&["snapshot", "b", snap_b.to_str().unwrap(), "--leave-paused"]);
    let last = *counts(&root.console_log("b")).last().unwrap();
    root.ok(&["stop", "b", "--force"]);
    root.ok(&["restore", snap_b.to_str().unwrap(), "c", "--accel", "jit"]);
    assert_restored_on(&root, "c", "jit");
    let counted = more_counts(&root, "c", 0, 3);
    assert_goes_on(&counted, last, "restored on the translator");
    let (blocks, _) = translated(&root, "c");
    assert!(blocks.iter().all(|&b| b > 0), "every vCPU of c translates code: {blocks:?}");

    // The atomics threads ran on three engines' worth of machines; every increment counts.
    let from = root.console_log("c").len();
    root.type_line("c", "touch /tmp/stop; cat /tmp/marker");
    let at = root.await_console("c", "atomics ", from);
    let log = root.console_log("c");
    let totals = log[from..at].lines().rev().find(|l| l.starts_with("threads=4 ")).unwrap_or("");
    let ok = root.await_console("c", "\n", at);
    assert_eq!(&log[at..ok].trim_end(), &"ok", "the atomics' totals: {totals}");
    let rounds: u64 = totals
        .split_whitespace()
        .find_map(|f| f.strip_prefix("rounds=")?.parse().ok())
        .unwrap_or_else(|| panic!("no totals: {}", &log[from..]));
    assert!(rounds > 0);
    for field in ["amo64", "amo32", "cas", "locked"] {
        assert!(totals.contains(&format!("{field}={rounds}")), "{totals}");
    }
    root.await_console("c", "marker-4242", from);

    // Clones pick their engine too.
    root.ok(&["clone", snap_a.to_str().unwrap(), "d", "--accel", "interp"]);
    assert_restored_on(&root, "d", "interp");
    let counted = more_counts(&root, "d", 0, 2);
    assert_goes_on(&counted, last_a, "a clone on the interpreter");
    for name in ["c", "d"] {
        root.ok(&["stop", name, "--force"]);
    }
}

/// `keel ARGS` under `root` with $KEEL_ACCEL set to `accel` (or unset); must succeed.
fn keel_with_accel(root: &Root, accel: Option<&str>, args: &[&str]) -> String {
    let mut cmd = keel();
    cmd.env("KEEL_STATE_DIR", &root.0).args(args);
    match accel {
        Some(a) => cmd.env("KEEL_ACCEL", a),
        None => cmd.env_remove("KEEL_ACCEL"),
    };
    let out = run_with_deadline(&mut cmd, store::DEADLINE);
    assert!(out.status.success(), "keel {args:?} (KEEL_ACCEL={accel:?}): {}", stderr(&out));
    stdout(&out)
}

#[test]
fn keel_accel_chooses_the_engine_of_vms_that_name_none() {
    image();
    let root = Root::new("jit-env");
    root.ok(&["create", "plain"]);
    let engine = |accel| {
        let info: Value =
            serde_json::from_str(&keel_with_accel(&root, accel, &["info", "plain", "--json"]))
                .unwrap();
        info["accel"].as_str().unwrap().to_string()
    };
    assert_eq!(engine(None), "jit", "the translator is the default");
    assert_eq!(engine(Some("interp")), "interp", "keel info shows what a start would pick");

    // Started with $KEEL_ACCEL=interp, the VM runs on the interpreter: real guest work
    // translates nothing.
    keel_with_accel(&root, Some("interp"), &["start", "plain"]);
    root.await_console("plain", PROMPT, 0);
    let from = root.console_log("plain").len();
    root.type_line("plain", "seq 1 30000 | md5sum");
    root.await_console("plain", "  -", from);
    assert_engine(&root, "plain", "interp");
    let (blocks, instructions) = translated(&root, "plain");
    assert!(instructions > 10_000_000, "the guest ran: {instructions} instructions");
    assert_eq!(blocks, [0], "KEEL_ACCEL=interp: nothing translated");
    root.ok(&["stop", "plain", "--force"]);

    // Without it, the same VM translates.
    let before = root.console_log("plain").len();
    keel_with_accel(&root, None, &["start", "plain"]);
    let from = root.await_console("plain", PROMPT, before);
    root.type_line("plain", "seq 1 30000 | md5sum");
    root.await_console("plain", "  -", from);
    let (blocks, _) = translated(&root, "plain");
    assert!(blocks[0] > 0, "the translator translated nothing: {blocks:?}");
    root.ok(&["stop", "plain", "--force"]);

    // A VM file that names an engine wins over $KEEL_ACCEL.
    let vm = root.0.join("named.toml");
    std::fs::write(&vm, "accel = \"jit\"\n").unwrap();
    root.ok(&["create", "named", vm.to_str().unwrap()]);
    assert_eq!(
        serde_json::from_str::<Value>(&keel_with_accel(
            &root,
            Some("interp"),
            &["info", "named", "--json"]
        ))
        .unwrap()["accel"],
        "jit"
    );
    keel_with_accel(&root, Some("interp"), &["start", "named"]);
    root.await_console("named", PROMPT, 0);
    assert_engine(&root, "named", "jit");
    let (blocks, _) = translated(&root, "named");
    assert!(blocks[0] > 0, "a VM file's accel = \"jit\" beats KEEL_ACCEL=interp: {blocks:?}");
    root.ok(&["stop", "named", "--force"]);
}
