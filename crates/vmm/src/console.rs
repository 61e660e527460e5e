//! The VM's console on the host: the guest's serial output goes to the console log, to every
//! attached client and to the foreground terminal; input from stdin or any client goes to the
//! UART. Also the Ctrl-A X escape of an interactive terminal, and the marks the VMM watches
//! for in the output (a kernel panic, SysRq headers; see [`crate::console_out`]).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use keel_devices::Uart;
use keel_machine::ConsoleSink;

use crate::console_out::{lock, MarkState, Output};

/// Host input queued for the guest beyond which writers (stdin, clients) wait.
const INPUT_QUEUE_LIMIT: usize = 64 * 1024;
/// How long an input writer waits before looking again whether the console was closed.
const INPUT_RECHECK: Duration = Duration::from_millis(200);

/// The escape key: Ctrl-A, as in QEMU. Ctrl-A X quits, Ctrl-A Ctrl-A sends one Ctrl-A.
pub const ESCAPE: u8 = 0x01;

/// Where input goes: the running machine's UART, or a queue while none runs (reboot).
#[derive(Default)]
struct InputState {
    uart: Option<Arc<Uart>>,
    pending: VecDeque<u8>,
    /// The VM is gone: input is refused.
    closed: bool,
}

#[derive(Default)]
struct InputRouter {
    state: Mutex<InputState>,
    changed: Condvar,
}

impl InputRouter {
    /// Delivers `bytes` to the guest, waiting while too much input is already queued
    /// (back-pressure: a pipe or a client can produce far faster than a UART drains). False
    /// if the console was closed.
    fn send(&self, bytes: &[u8]) -> bool {
        loop {
            let mut t = lock(&self.state);
            if t.closed {
                return false;
            }
            match t.uart.clone() {
                Some(u) => {
                    drop(t);
                    if u.wait_for_room(INPUT_QUEUE_LIMIT, INPUT_RECHECK) {
                        u.push_input(bytes);
                        return true;
                    }
                }
                None if t.pending.len() < INPUT_QUEUE_LIMIT => {
                    t.pending.extend(bytes);
                    return true;
                }
                None => {
                    // Until a machine takes the queue, or the console closes.
                    let _ = self.changed.wait_timeout(t, INPUT_RECHECK);
                }
            }
        }
    }

    fn set_uart(&self, uart: Option<Arc<Uart>>) {
        let mut t = lock(&self.state);
        if let Some(u) = &uart {
            let queued: Vec<u8> = t.pending.drain(..).collect();
            if !queued.is_empty() {
                u.push_input(&queued);
            }
        }
        t.uart = uart;
        self.changed.notify_all();
    }

    fn close(&self) {
        let mut t = lock(&self.state);
        t.closed = true;
        t.uart = None;
        t.pending.clear();
        self.changed.notify_all();
    }
}

/// What Ctrl-A X does to the running VM.
type QuitAction = Arc<Mutex<Option<Box<dyn Fn() + Send>>>>;

/// A client's way to type into the console (see [`Console::attach`]). Writes wait while
/// 64 KiB of input already wait for the guest; they fail with `BrokenPipe` once the VM is
/// gone.
#[derive(Clone)]
pub struct ConsoleInput(Arc<InputRouter>);

impl Write for ConsoleInput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.send(buf) {
            Ok(buf.len())
        } else {
            Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the VM has ended"))
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A VM's console (a cheap handle: clones share it). Guest output never waits for anyone:
/// the log file and the foreground terminal are written from a thread of the console's own,
/// and a client that falls behind is detached.
#[derive(Clone)]
pub struct Console {
    sink: ConsoleSink,
    output: Arc<Output>,
    input: Arc<InputRouter>,
    quit: Arc<AtomicBool>,
    on_quit: QuitAction,
}

impl Console {
    /// A console whose output also goes to `out` (the foreground terminal, as `keel run`
    /// does).
    pub fn new(out: Box<dyn Write + Send>) -> Console {
        Console::build(Some(out))
    }

    /// A console with no foreground terminal: output goes to the log and to clients only.
    pub fn headless() -> Console {
        Console::build(None)
    }

    fn build(foreground: Option<Box<dyn Write + Send>>) -> Console {
        let output = Arc::new(Output::new(foreground));
        Console {
            sink: Arc::new(Mutex::new(Box::new(output.spotter()))),
            output,
            input: Arc::new(InputRouter::default()),
            quit: Arc::new(AtomicBool::new(false)),
            on_quit: Arc::new(Mutex::new(None)),
        }
    }

    /// Appends the guest's output to the file at `path` (created if missing) from now on:
    /// the VM directory's `console.log`.
    pub fn open_log(&self, path: &Path) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        self.output.set_log(file);
        Ok(())
    }

    /// Attaches a client: the receiver gets the guest's output from now on, in batches; the
    /// writer types into the guest. The receiver ends (disconnects) when the console finishes
    /// or when the client falls 1024 batches behind (it is then detached so the guest never
    /// waits for it); dropping the receiver detaches the client.
    pub fn attach(&self) -> (Receiver<Vec<u8>>, ConsoleInput) {
        (self.output.attach(), ConsoleInput(self.input.clone()))
    }

    /// Where the machine's devices (UART, SBI debug console) print.
    pub fn sink(&self) -> ConsoleSink {
        self.sink.clone()
    }

    /// Waits until everything the guest printed so far has reached the log, the clients and
    /// the foreground terminal.
    pub fn flush_output(&self) {
        self.output.flush();
    }

    /// Writes out everything the guest printed, stops the writer thread, detaches every
    /// client and refuses input from then on. Call before the process exits; guest output
    /// after this is dropped.
    pub fn finish(&self) {
        self.close_input();
        self.output.finish();
    }

    /// The message of the kernel panic the guest printed, if any.
    pub fn panic_message(&self) -> Option<String> {
        self.output.marks.get().panic
    }

    pub fn clear_panic(&self) {
        self.output.marks.update(|s| s.panic = None);
    }

    /// What the output watcher has seen so far.
    pub(crate) fn marks(&self) -> MarkState {
        self.output.marks.get()
    }

    /// Waits (at most `timeout`, less if the console closes) until `done` holds for what the
    /// output watcher has seen.
    pub(crate) fn wait_marks(&self, timeout: Duration, done: impl Fn(&MarkState) -> bool) -> bool {
        self.output.marks.wait(timeout, done)
    }

    /// Routes input to a (new) machine's UART, with what was typed while none ran.
    pub(crate) fn connect(&self, uart: Arc<Uart>) {
        self.input.set_uart(Some(uart));
    }

    /// Stops routing input (the machine is going away); input is queued meanwhile.
    pub(crate) fn disconnect(&self) {
        self.input.set_uart(None);
    }

    /// The VM has ended: input is refused from now on (writers get `BrokenPipe`).
    pub(crate) fn close_input(&self) {
        self.input.close();
        self.output.marks.update(|s| s.closed = true);
    }

    /// What Ctrl-A X does (the VMM's forced stop).
    pub(crate) fn on_quit(&self, action: Box<dyn Fn() + Send>) {
        *lock(&self.on_quit) = Some(action);
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
                                if let Some(stop) = lock(&on_quit).as_ref() {
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
                if !target.send(&out) {
                    return;
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

    struct NoIrq;
    impl keel_devices::IrqLine for NoIrq {
        fn set_level(&self, _: bool) {}
    }

    fn received(rx: &Receiver<Vec<u8>>) -> Vec<u8> {
        rx.try_iter().flatten().collect()
    }

    #[test]
    fn every_client_the_log_and_the_foreground_get_the_output() {
        let log = std::env::temp_dir().join(format!("keel-console-{}.log", std::process::id()));
        std::fs::write(&log, b"earlier boot\n").unwrap();
        let cap = Capture::default();
        let console = Console::new(Box::new(cap.clone()));
        console.open_log(&log).unwrap();
        let (a, _) = console.attach();
        console.sink().lock().unwrap().write_all(b"one\n").unwrap();
        console.flush_output();
        // A client sees output from the moment it attached.
        let (b, _) = console.attach();
        console.sink().lock().unwrap().write_all(b"two\n").unwrap();
        console.flush_output();
        assert_eq!(received(&a), b"one\ntwo\n");
        assert_eq!(received(&b), b"two\n");
        assert_eq!(std::fs::read(&log).unwrap(), b"earlier boot\none\ntwo\n");
        console.finish();
        assert_eq!(&cap.0.lock().unwrap()[..], b"one\ntwo\n");
        assert!(a.recv().is_err(), "finishing the console detaches its clients");
        std::fs::remove_file(&log).unwrap();
    }

    #[test]
    fn a_client_that_falls_behind_is_detached_and_the_others_go_on() {
        let console = Console::headless();
        let (slow, _) = console.attach();
        let (keen, _) = console.attach();
        let mut got = Vec::new();
        for i in 0..2000u32 {
            // Each write is its own batch: the writer has handed it out before the next.
            console.sink().lock().unwrap().write_all(&i.to_le_bytes()).unwrap();
            console.flush_output();
            got.extend(received(&keen));
        }
        let expected: Vec<u8> = (0..2000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(got, expected, "a client that keeps up gets every byte");
        let kept: Vec<Vec<u8>> = slow.try_iter().collect();
        assert_eq!(kept.len(), 1024, "the slow client's queue filled up");
        assert!(slow.try_recv().is_err() && slow.recv().is_err(), "then it was detached");
        // Its stream has no holes: what it got is the start of the output.
        assert_eq!(kept.concat(), expected[..4 * 1024]);
    }

    #[test]
    fn client_input_reaches_the_uart_and_waits_across_machines() {
        let console = Console::headless();
        let (_, mut input) = console.attach();
        // No machine yet (or a reboot in between): queued, then handed to the next UART.
        input.write_all(b"early ").unwrap();
        let uart = Arc::new(Uart::new(Arc::new(NoIrq), Box::new(std::io::sink())));
        console.connect(uart.clone());
        assert_eq!(uart.input_backlog(), 6);
        input.write_all(b"typed").unwrap();
        assert_eq!(uart.input_backlog(), 11);
        console.disconnect();
        input.write_all(b"!").unwrap();
        assert_eq!(uart.input_backlog(), 11, "a machine going away gets no more input");
        console.close_input();
        let err = input.write_all(b"late").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn sysrq_headers_are_counted() {
        let console = Console::headless();
        let sink = console.sink();
        sink.lock()
            .unwrap()
            .write_all(b"[ 20.5] sysrq: Emergency Sync\r\n[ 20.6] sysrq: ")
            .unwrap();
        assert_eq!(console.marks().sysrq, 1, "a line counts once it ends");
        sink.lock().unwrap().write_all(b"Power Off\r\n").unwrap();
        assert_eq!(console.marks().sysrq, 2);
        assert!(console.wait_marks(Duration::ZERO, |m| m.sysrq == 2));
    }
}
