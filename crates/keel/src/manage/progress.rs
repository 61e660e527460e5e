//! A long API request (snapshot, migration) with the VMM's progress shown meanwhile.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::client::ClientError;
use super::status::api;
use super::store::VmDir;

/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// `PUT path` with `body` on the VM's API, waiting up to `timeout` for the answer (its JSON).
/// Meanwhile, on a terminal, a line updated in place shows `line(GET /progress)` whenever
/// that gives one; scripts get nothing but the caller's summary.
pub fn put_with_progress(
    vm: &VmDir,
    timeout: Duration,
    path: &str,
    body: &Value,
    line: impl Fn(&Value) -> Option<String> + Sync,
) -> Result<Value, ClientError> {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| show(vm, &done, &line));
        let answer = api(vm, timeout).put(path, body);
        done.store(true, Ordering::SeqCst);
        answer
    })
    .and_then(|r| r.json())
}

fn show(vm: &VmDir, done: &AtomicBool, line: &dyn Fn(&Value) -> Option<String>) {
    let mut stderr = std::io::stderr();
    if !stderr.is_terminal() {
        return;
    }
    let client = api(vm, Duration::from_secs(2));
    let mut shown = false;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(PROGRESS_EVERY);
        let Ok(progress) = client.get_json("/progress") else { continue };
        if let Some(text) = line(&progress).filter(|_| !done.load(Ordering::SeqCst)) {
            let _ = write!(stderr, "\r{text}   ");
            shown = true;
        }
    }
    if shown {
        let _ = writeln!(stderr);
    }
}
