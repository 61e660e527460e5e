//! Guest console output on its way out of keel: the vCPU that prints appends to a queue and
//! goes on; one writer thread hands each batch to the attached clients (bounded channels, never
//! waited on), the console log file and the foreground terminal. On the vCPU's side, lines are
//! watched for what the VMM must notice: a kernel panic, and the kernel's "sysrq: " headers.

use std::fs::File;
use std::io::Write;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PANIC_MARK: &[u8] = b"Kernel panic - not syncing: ";
/// Linux's drivers/tty/sysrq.c prefixes its messages with this (`pr_fmt`); the header of each
/// key it handles ("sysrq: Emergency Sync") is forced onto the console whatever the log level.
const SYSRQ_MARK: &[u8] = b"sysrq: ";
/// What do_emergency_remount (fs/super.c) prints when SysRq u is done; only shown on the
/// console when the log level lets warnings through (not with `quiet`).
const REMOUNT_DONE_MARK: &[u8] = b"Emergency Remount complete";
/// Longest line the watcher looks into; the marks are near the start of a line.
const LINE_LIMIT: usize = 1024;
/// Batches a client may have waiting before it is detached as too slow.
const CLIENT_QUEUE: usize = 1024;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the line watcher has seen; waited on by the VMM.
#[derive(Default)]
pub(crate) struct Marks {
    state: Mutex<MarkState>,
    changed: Condvar,
}

#[derive(Default, Clone)]
pub(crate) struct MarkState {
    /// The message of the first kernel panic.
    pub panic: Option<String>,
    /// Lines with a SysRq header so far.
    pub sysrq: u64,
    /// "Emergency Remount complete" lines so far.
    pub remounts: u64,
    /// No more output will come (the console was closed).
    pub closed: bool,
}

impl Marks {
    pub fn get(&self) -> MarkState {
        lock(&self.state).clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut MarkState)) {
        f(&mut lock(&self.state));
        self.changed.notify_all();
    }

    /// Waits until `done` holds or `timeout` passes (or the console closes); returns whether
    /// `done` held.
    pub fn wait(&self, timeout: Duration, done: impl Fn(&MarkState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.state);
        while !done(&s) && !s.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = self.changed.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        done(&s)
    }

    fn line(&self, line: &[u8]) {
        let has = |mark: &[u8]| line.windows(mark.len()).position(|w| w == mark);
        if let Some(pos) = has(PANIC_MARK) {
            let msg = String::from_utf8_lossy(&line[pos + PANIC_MARK.len()..]);
            self.update(|s| {
                s.panic.get_or_insert_with(|| msg.trim_end().to_string());
            });
        }
        if has(SYSRQ_MARK).is_some() {
            self.update(|s| s.sysrq += 1);
        }
        if has(REMOUNT_DONE_MARK).is_some() {
            self.update(|s| s.remounts += 1);
        }
    }
}

/// Output waiting for the writer thread: the vCPU appends, the writer takes all at once. A
/// byte-at-a-time UART would otherwise cost one host `write` per byte.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// The writer waits here for output, [`Output::flush`] for the writer.
    ready: Condvar,
    written: Condvar,
}

#[derive(Default)]
struct QueueState {
    bytes: Vec<u8>,
    closed: bool,
    /// Bytes queued and bytes handed to the sinks, since the start.
    queued: u64,
    written: u64,
    /// The writer thread runs (it may have failed to start, and it ends at `finish`).
    writer_alive: bool,
}

/// Where the writer thread sends output, besides the foreground (which it owns).
#[derive(Default)]
struct Sinks {
    log: Option<File>,
    clients: Vec<SyncSender<Vec<u8>>>,
}

/// The vCPU's end: watches lines, then queues the bytes. Never blocks on a consumer.
pub(crate) struct Spotter {
    queue: Arc<Queue>,
    marks: Arc<Marks>,
    line: Vec<u8>,
}

impl Write for Spotter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                self.marks.line(&self.line);
                self.line.clear();
            } else if self.line.len() < LINE_LIMIT {
                self.line.push(b);
            }
        }
        let mut state = lock(&self.queue.state);
        let was_empty = state.bytes.is_empty();
        state.bytes.extend_from_slice(buf);
        state.queued += buf.len() as u64;
        if was_empty {
            // Only an empty queue can have the writer asleep: one wake-up per burst.
            self.queue.ready.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // The writer thread flushes as soon as it has written what it took.
        Ok(())
    }
}

/// The output side of a console.
pub(crate) struct Output {
    queue: Arc<Queue>,
    sinks: Arc<Mutex<Sinks>>,
    pub marks: Arc<Marks>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Output {
    /// Output going to `foreground` (if any), with a writer thread of its own.
    pub fn new(foreground: Option<Box<dyn Write + Send>>) -> Output {
        let queue = Arc::new(Queue::default());
        let sinks = Arc::new(Mutex::new(Sinks::default()));
        let (q, s) = (queue.clone(), sinks.clone());
        let writer = std::thread::Builder::new()
            .name("keel-console".into())
            .spawn(move || drain(q, s, foreground))
            .map_err(|e| eprintln!("keel: cannot start the console output thread: {e}"))
            .ok();
        lock(&queue.state).writer_alive = writer.is_some();
        Output { queue, sinks, marks: Arc::new(Marks::default()), writer: Mutex::new(writer) }
    }

    /// The writer the guest's devices print through.
    pub fn spotter(&self) -> Spotter {
        Spotter { queue: self.queue.clone(), marks: self.marks.clone(), line: Vec::new() }
    }

    /// Appends output to `file` from now on (the console log).
    pub fn set_log(&self, file: File) {
        lock(&self.sinks).log = Some(file);
    }

    /// A new client: it gets output from now on, in batches, until it drops the receiver or
    /// falls [`CLIENT_QUEUE`] batches behind (then it is detached: its receiver ends).
    pub fn attach(&self) -> Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::sync_channel(CLIENT_QUEUE);
        lock(&self.sinks).clients.push(tx);
        rx
    }

    /// Waits until everything printed so far has been handed to the clients, the log and the
    /// foreground (or the writer thread is gone).
    pub fn flush(&self) {
        let mut state = lock(&self.queue.state);
        let target = state.queued;
        while state.written < target && state.writer_alive {
            state = self.queue.written.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Writes out everything queued and stops the writer thread; detaches every client.
    pub fn finish(&self) {
        {
            let mut state = lock(&self.queue.state);
            state.closed = true;
            self.queue.ready.notify_one();
        }
        if let Some(t) = lock(&self.writer).take() {
            let _ = t.join();
        }
        lock(&self.sinks).clients.clear();
        self.marks.update(|s| s.closed = true);
    }
}

/// The writer thread: moves queued output to the sinks until the queue is closed and empty.
fn drain(
    queue: Arc<Queue>,
    sinks: Arc<Mutex<Sinks>>,
    mut foreground: Option<Box<dyn Write + Send>>,
) {
    loop {
        let (chunk, closed) = {
            let mut state = lock(&queue.state);
            while state.bytes.is_empty() && !state.closed {
                state = queue.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            (std::mem::take(&mut state.bytes), state.closed)
        };
        if !chunk.is_empty() {
            let mut s = lock(&sinks);
            // A client that is gone or too slow is detached rather than waited for (the guest
            // must never wait for a client) or given a stream with holes in it.
            s.clients.retain(|c| match c.try_send(chunk.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            });
            if let Some(log) = &mut s.log {
                // A full disk must not stop the guest: the log misses the bytes.
                let _ = log.write_all(&chunk);
            }
            drop(s);
            if let Some(out) = &mut foreground {
                // Output errors (a closed stdout) must not stop the guest: drop the bytes.
                let _ = out.write_all(&chunk).and_then(|_| out.flush());
            }
            lock(&queue.state).written += chunk.len() as u64;
            queue.written.notify_all();
        }
        if closed && chunk.is_empty() {
            lock(&queue.state).writer_alive = false;
            queue.written.notify_all();
            return;
        }
    }
}
