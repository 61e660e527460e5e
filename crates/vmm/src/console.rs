//! The VM's console on the host: guest output to stdout, host input to the UART, the
//! Ctrl-A X escape, and spotting a guest kernel panic in the output.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use keel_devices::Uart;
use keel_machine::ConsoleSink;

/// Host input queued for the guest beyond which keel stops reading stdin.
const INPUT_QUEUE_LIMIT: usize = 64 * 1024;

/// The escape key: Ctrl-A, as in QEMU. Ctrl-A X quits, Ctrl-A Ctrl-A sends one Ctrl-A.
pub const ESCAPE: u8 = 0x01;

const PANIC_MARK: &[u8] = b"Kernel panic - not syncing: ";

/// Where input goes: the running machine's UART, or a queue while none runs (reboot).
#[derive(Default)]
struct InputTarget {
    uart: Option<Arc<Uart>>,
    pending: VecDeque<u8>,
}

/// What Ctrl-A X does to the running machine.
type QuitAction = Arc<Mutex<Option<Box<dyn Fn() + Send>>>>;

/// Guest output on its way to the host: the vCPU appends, a writer thread drains. A byte-
/// at-a-time UART would otherwise cost one host `write` per byte.
#[derive(Default)]
struct OutputQueue {
    state: Mutex<(Vec<u8>, bool)>,
    ready: Condvar,
}

/// The vCPU's end of the queue.
struct QueueWriter(Arc<OutputQueue>);

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = state.0.is_empty();
        state.0.extend_from_slice(buf);
        if was_empty {
            // Only an empty queue can have the writer asleep: one wake-up per burst.
            self.0.ready.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // The writer thread flushes as soon as it has written what it took.
        Ok(())
    }
}

/// Moves queued output to `out` until the queue is closed and empty.
fn drain_output(queue: Arc<OutputQueue>, mut out: Box<dyn Write + Send>) {
    loop {
        let (chunk, closed) = {
            let mut state = queue.state.lock().unwrap_or_else(|e| e.into_inner());
            while state.0.is_empty() && !state.1 {
                state = queue.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            (std::mem::take(&mut state.0), state.1)
        };
        // Output errors (a closed stdout) must not stop the guest: drop the bytes.
        let _ = out.write_all(&chunk).and_then(|_| out.flush());
        if closed && chunk.is_empty() {
            return;
        }
    }
}

pub struct Console {
    sink: ConsoleSink,
    queue: Arc<OutputQueue>,
    writer: Mutex<Option<JoinHandle<()>>>,
    panic: Arc<Mutex<Option<String>>>,
    input: Arc<Mutex<InputTarget>>,
    quit: Arc<AtomicBool>,
    on_quit: QuitAction,
}

/// Passes guest output through, remembering the message of a kernel panic.
struct PanicSpotter {
    out: Box<dyn Write + Send>,
    line: Vec<u8>,
    panic: Arc<Mutex<Option<String>>>,
}

impl Write for PanicSpotter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                if let Some(pos) = self.line.windows(PANIC_MARK.len()).position(|w| w == PANIC_MARK)
                {
                    let msg = String::from_utf8_lossy(&self.line[pos + PANIC_MARK.len()..]);
                    let mut p = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                    p.get_or_insert_with(|| msg.trim_end().to_string());
                }
                self.line.clear();
            } else if self.line.len() < 1024 {
                self.line.push(b);
            }
        }
        // Output errors (a closed stdout) must not stop the guest: drop the bytes.
        let _ = self.out.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.out.flush();
        Ok(())
    }
}

impl Console {
    /// A console writing guest output to `out`, from a thread of its own (see
    /// [`Console::finish`]).
    pub fn new(out: Box<dyn Write + Send>) -> Console {
        let panic = Arc::new(Mutex::new(None));
        let queue = Arc::new(OutputQueue::default());
        let spotter = PanicSpotter {
            out: Box::new(QueueWriter(queue.clone())),
            line: Vec::new(),
            panic: panic.clone(),
        };
        let drained = queue.clone();
        let writer = std::thread::Builder::new()
            .name("keel-stdout".into())
            .spawn(move || drain_output(drained, out))
            .ok();
        Console {
            sink: Arc::new(Mutex::new(Box::new(spotter))),
            queue,
            writer: Mutex::new(writer),
            panic,
            input: Arc::new(Mutex::new(InputTarget::default())),
            quit: Arc::new(AtomicBool::new(false)),
            on_quit: Arc::new(Mutex::new(None)),
        }
    }

    pub fn sink(&self) -> ConsoleSink {
        self.sink.clone()
    }

    /// Writes out everything the guest printed and stops the writer thread. Call before the
    /// process exits; guest output after this is dropped.
    pub fn finish(&self) {
        {
            let mut state = self.queue.state.lock().unwrap_or_else(|e| e.into_inner());
            state.1 = true;
            self.queue.ready.notify_one();
        }
        if let Some(t) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }

    /// The message of the kernel panic the guest printed, if any.
    pub fn panic_message(&self) -> Option<String> {
        self.panic.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn clear_panic(&self) {
        *self.panic.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Routes input to a (new) machine's UART; `stop` is what Ctrl-A X does to it.
    pub fn attach(&self, uart: Arc<Uart>, stop: Box<dyn Fn() + Send>) {
        let mut t = self.input.lock().unwrap_or_else(|e| e.into_inner());
        let queued: Vec<u8> = t.pending.drain(..).collect();
        if !queued.is_empty() {
            uart.push_input(&queued);
        }
        t.uart = Some(uart);
        *self.on_quit.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop);
    }

    /// Stops routing input (the machine is going away).
    pub fn detach(&self) {
        self.input.lock().unwrap_or_else(|e| e.into_inner()).uart = None;
    }

    /// True once the user pressed Ctrl-A X.
    pub fn quit_requested(&self) -> bool {
        self.quit.load(Ordering::SeqCst)
    }

    /// Starts forwarding `input` (stdin) to the guest. With `escape`, Ctrl-A sequences are
    /// interpreted (interactive terminals); otherwise bytes pass through untouched.
    pub fn forward_input(&self, mut input: Box<dyn Read + Send>, escape: bool) {
        let target = self.input.clone();
        let quit = self.quit.clone();
        let on_quit = self.on_quit.clone();
        let spawned = std::thread::Builder::new().name("keel-stdin".into()).spawn(move || {
            let mut buf = [0u8; 1024];
            let mut after_escape = false;
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    if !escape {
                        out.push(b);
                    } else if after_escape {
                        after_escape = false;
                        match b {
                            b'x' | b'X' => {
                                quit.store(true, Ordering::SeqCst);
                                if let Some(stop) =
                                    on_quit.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
                                {
                                    stop();
                                }
                                return;
                            }
                            ESCAPE => out.push(ESCAPE),
                            other => out.extend_from_slice(&[ESCAPE, other]),
                        }
                    } else if b == ESCAPE {
                        after_escape = true;
                    } else {
                        out.push(b);
                    }
                }
                // Back-pressure: don't read more from stdin while the guest hasn't taken
                // what is queued (a pipe or file can produce far faster than a UART drains).
                loop {
                    let uart = target.lock().unwrap_or_else(|e| e.into_inner()).uart.clone();
                    match uart {
                        Some(u)
                            if u.wait_for_room(INPUT_QUEUE_LIMIT, Duration::from_millis(200)) =>
                        {
                            u.push_input(&out);
                            break;
                        }
                        Some(_) => continue,
                        None => {
                            let mut t = target.lock().unwrap_or_else(|e| e.into_inner());
                            if t.pending.len() < INPUT_QUEUE_LIMIT {
                                t.pending.extend(out);
                                break;
                            }
                            drop(t);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            }
        });
        if let Err(e) = spawned {
            eprintln!("keel: cannot start the console input thread: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_passes_through_and_a_panic_is_spotted() {
        let cap = Capture::default();
        let console = Console::new(Box::new(cap.clone()));
        let text =
            b"[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n[ 1.3] more\n";
        for chunk in text.chunks(7) {
            console.sink().lock().unwrap().write_all(chunk).unwrap();
        }
        console.finish();
        assert_eq!(&cap.0.lock().unwrap()[..], &text[..]);
        assert_eq!(console.panic_message().as_deref(), Some("VFS: Unable to mount root fs"));
    }

    #[test]
    fn no_panic_no_message() {
        let console = Console::new(Box::new(Capture::default()));
        console.sink().lock().unwrap().write_all(b"hello\n").unwrap();
        assert_eq!(console.panic_message(), None);
    }
}
