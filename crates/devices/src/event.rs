//! The devices' I/O thread: an epoll loop that tells devices when their host file descriptors
//! (TAP devices, sockets, timers) are ready. Devices register and unregister from any thread.
//!
//! [`EventLoop::pause`] holds the thread between handlers, e.g. while a snapshot is written:
//! nothing it drives (TAP receive, timers, vsock sockets) touches guest memory or device state
//! until the guard is dropped.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, Weak};
use std::thread::ThreadId;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

/// Something that wants to hear about a file descriptor being ready.
pub trait EventHandler: Send + Sync {
    /// `token` is the value given at registration; `events` what epoll reported.
    fn handle_event(&self, token: u64, events: EventSet);
}

struct Registration {
    fd: RawFd,
    token: u64,
    handler: Weak<dyn EventHandler>,
}

pub struct EventLoop {
    epoll: Epoll,
    registrations: Mutex<HashMap<u64, Registration>>,
    next_key: AtomicU64,
    stop: AtomicBool,
    wake: EventFd,
    /// Pauses, and whether the loop's thread is in a handler (see [`EventLoop::pause`]).
    gate: Mutex<Gate>,
    /// Signalled when a handler returns or the last pause ends.
    gate_changed: Condvar,
}

#[derive(Default)]
struct Gate {
    /// Live [`EventLoopPause`] guards.
    pauses: usize,
    /// The loop's thread is running a handler.
    busy: bool,
    /// The thread running [`EventLoop::run`], once it has started.
    runner: Option<ThreadId>,
}

/// While this lives, the event loop's thread runs no handler: [`EventLoop::pause`] returned
/// only once the handler it was in (if any) had finished. Events that arrive meanwhile are
/// kept, not lost: the loop holds the ones epoll already reported and dispatches them when
/// the last guard is dropped, and epoll reports the rest then (level-triggered registrations
/// stay ready; edge-triggered ones were reported once and are among those kept).
#[must_use = "the event loop runs again as soon as the guard is dropped"]
pub struct EventLoopPause<'a> {
    events: &'a EventLoop,
}

/// The loop's thread is in a handler while this lives.
struct Busy<'a>(&'a EventLoop);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        crate::lock(&self.0.gate).busy = false;
        self.0.gate_changed.notify_all();
    }
}

impl Drop for EventLoopPause<'_> {
    fn drop(&mut self) {
        let mut g = crate::lock(&self.events.gate);
        g.pauses -= 1;
        if g.pauses == 0 {
            self.events.gate_changed.notify_all();
        }
    }
}

/// The epoll key of the loop's own wake-up eventfd.
const WAKE_KEY: u64 = 0;

impl EventLoop {
    pub fn new() -> io::Result<EventLoop> {
        let epoll = Epoll::new()?;
        let wake = EventFd::new(libc::EFD_NONBLOCK)?;
        epoll.ctl(
            ControlOperation::Add,
            std::os::fd::AsRawFd::as_raw_fd(&wake),
            EpollEvent::new(EventSet::IN, WAKE_KEY),
        )?;
        Ok(EventLoop {
            epoll,
            registrations: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(WAKE_KEY + 1),
            stop: AtomicBool::new(false),
            wake,
            gate: Mutex::new(Gate::default()),
            gate_changed: Condvar::new(),
        })
    }

    /// Holds the loop's thread outside every handler until the returned guard is dropped: once
    /// this returns, no handler runs (a running one has finished), so the devices' host side
    /// (TAP receive, timers, vsock sockets) neither writes guest memory nor changes device
    /// state. vCPU threads still reach the devices through their registers: stop them too for
    /// a consistent snapshot. Guards nest (the loop goes on when the last one is dropped), and
    /// the loop need not be running.
    ///
    /// Called from a handler (on the loop's own thread) it cannot wait for that handler to
    /// return: the loop then stops after it, before the next one.
    pub fn pause(&self) -> EventLoopPause<'_> {
        let mut g = crate::lock(&self.gate);
        g.pauses += 1;
        let on_loop_thread = g.runner == Some(std::thread::current().id());
        while g.busy && !on_loop_thread {
            g = self.gate_changed.wait(g).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        EventLoopPause { events: self }
    }

    /// Waits while the loop is paused, then marks it busy until the returned guard is
    /// dropped (also if the handler panics). None when the loop must stop.
    fn enter_handler(&self) -> Option<Busy<'_>> {
        let mut g = crate::lock(&self.gate);
        while g.pauses > 0 && !self.stop.load(Ordering::SeqCst) {
            g = self.gate_changed.wait(g).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if self.stop.load(Ordering::SeqCst) {
            return None;
        }
        g.busy = true;
        Some(Busy(self))
    }

    /// Calls `handler.handle_event(token, ..)` whenever `fd` has any of `events`. Returns a key
    /// for [`EventLoop::remove`]. The handler is held weakly: a dropped device stops hearing.
    pub fn add(
        &self,
        fd: RawFd,
        events: EventSet,
        handler: Weak<dyn EventHandler>,
        token: u64,
    ) -> io::Result<u64> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, Registration { fd, token, handler });
        if let Err(e) = self.epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(events, key)) {
            self.lock().remove(&key);
            return Err(e);
        }
        Ok(key)
    }

    /// Changes the events a registration waits for.
    pub fn modify(&self, key: u64, events: EventSet) -> io::Result<()> {
        let fd = self.lock().get(&key).map(|r| r.fd);
        match fd {
            Some(fd) => self.epoll.ctl(ControlOperation::Modify, fd, EpollEvent::new(events, key)),
            None => Ok(()),
        }
    }

    pub fn remove(&self, key: u64) {
        if let Some(r) = self.lock().remove(&key) {
            let _ = self.epoll.ctl(ControlOperation::Delete, r.fd, EpollEvent::default());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Registration>> {
        crate::lock(&self.registrations)
    }

    /// Runs until [`EventLoop::stop`].
    pub fn run(&self) {
        crate::lock(&self.gate).runner = Some(std::thread::current().id());
        let mut events = vec![EpollEvent::default(); 32];
        while !self.stop.load(Ordering::SeqCst) {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            for ev in &events[..n] {
                let key = ev.data();
                if key == WAKE_KEY {
                    let _ = self.wake.read();
                    continue;
                }
                // Paused: wait here, keeping the events already reported.
                let Some(_busy) = self.enter_handler() else { return };
                // Looked up after the pause: a registration removed meanwhile is not called.
                let target = self.lock().get(&key).map(|r| (r.token, r.handler.clone()));
                if let Some((token, handler)) = target {
                    match handler.upgrade() {
                        Some(h) => h.handle_event(token, ev.event_set()),
                        None => self.remove(key),
                    }
                }
            }
        }
    }

    /// Makes [`EventLoop::run`] return (also while paused).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
        // Taking the lock orders the flag before a paused loop's next check.
        drop(crate::lock(&self.gate));
        self.gate_changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Seen(Mutex<Vec<u64>>);
    impl EventHandler for Seen {
        fn handle_event(&self, token: u64, _events: EventSet) {
            self.0.lock().unwrap().push(token);
        }
    }

    #[test]
    fn a_ready_fd_reaches_its_handler_and_stop_ends_the_loop() {
        let lp = Arc::new(EventLoop::new().unwrap());
        let fd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let seen = Arc::new(Seen::default());
        let weak: Weak<dyn EventHandler> = Arc::downgrade(&seen) as _;
        lp.add(fd.as_raw_fd(), EventSet::IN | EventSet::EDGE_TRIGGERED, weak, 7).unwrap();
        fd.write(1).unwrap();
        let runner = lp.clone();
        let t = std::thread::spawn(move || runner.run());
        // The handler runs on the loop's thread; stop() then ends the loop, and join waits.
        while seen.0.lock().unwrap().is_empty() {
            std::thread::yield_now();
        }
        lp.stop();
        t.join().unwrap();
        assert_eq!(*seen.0.lock().unwrap(), vec![7]);
    }

    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
    use std::time::Duration;

    /// How long a negative check waits for something that must not happen.
    const QUIET: Duration = Duration::from_millis(200);
    /// The bound on waiting for something that must happen.
    const SOON: Duration = Duration::from_secs(10);

    /// Reads its (level-triggered) eventfd and reports the count it read; with a `hold`, it
    /// then waits to be released before it returns, and marks `done`.
    struct Reader {
        fd: EventFd,
        seen: Mutex<Sender<u64>>,
        hold: Option<Mutex<Receiver<()>>>,
        done: AtomicBool,
    }

    impl EventHandler for Reader {
        fn handle_event(&self, _token: u64, _events: EventSet) {
            let Ok(n) = self.fd.read() else { return };
            self.seen.lock().unwrap().send(n).unwrap();
            if let Some(hold) = &self.hold {
                hold.lock().unwrap().recv().unwrap();
            }
            self.done.store(true, Ordering::SeqCst);
        }
    }

    /// A running loop with one [`Reader`] registered level-triggered.
    fn running(
        hold: Option<Receiver<()>>,
    ) -> (Arc<EventLoop>, Arc<Reader>, Receiver<u64>, std::thread::JoinHandle<()>) {
        let lp = Arc::new(EventLoop::new().unwrap());
        let (tx, rx) = channel();
        let reader = Arc::new(Reader {
            fd: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            seen: Mutex::new(tx),
            hold: hold.map(Mutex::new),
            done: AtomicBool::new(false),
        });
        let weak: Weak<dyn EventHandler> = Arc::downgrade(&reader) as _;
        lp.add(reader.fd.as_raw_fd(), EventSet::IN, weak, 1).unwrap();
        let runner = lp.clone();
        (lp, reader, rx, std::thread::spawn(move || runner.run()))
    }

    #[test]
    fn a_paused_loop_handles_nothing_until_the_last_guard_drops() {
        let (lp, reader, seen, t) = running(None);
        reader.fd.write(1).unwrap();
        assert_eq!(seen.recv_timeout(SOON), Ok(1), "the loop runs");

        let outer = lp.pause();
        reader.fd.write(5).unwrap();
        assert_eq!(seen.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout), "paused");
        let inner = lp.pause();
        drop(outer);
        assert_eq!(seen.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout), "still paused");
        drop(inner);
        assert_eq!(seen.recv_timeout(SOON), Ok(5), "the event waited, it was not lost");

        lp.stop();
        t.join().unwrap();
    }

    #[test]
    fn pause_waits_for_the_running_handler_to_return() {
        let (release, hold) = channel();
        let (lp, reader, entered, t) = running(Some(hold));
        reader.fd.write(1).unwrap();
        assert_eq!(entered.recv_timeout(SOON), Ok(1), "the handler is running");

        // Another thread pauses; it reports whether the handler had finished by then, and
        // keeps the guard until told to drop it.
        let (paused_tx, paused) = channel();
        let (resume, resume_rx) = channel::<()>();
        let pauser = {
            let (lp, reader) = (lp.clone(), reader.clone());
            std::thread::spawn(move || {
                let guard = lp.pause();
                paused_tx.send(reader.done.load(Ordering::SeqCst)).unwrap();
                resume_rx.recv().unwrap();
                drop(guard);
            })
        };
        assert_eq!(paused.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout), "still in it");
        release.send(()).unwrap();
        assert_eq!(paused.recv_timeout(SOON), Ok(true), "pause returned after the handler");

        // Paused: a new event is not handled...
        reader.fd.write(2).unwrap();
        assert_eq!(entered.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
        // ...until the guard goes.
        resume.send(()).unwrap();
        pauser.join().unwrap();
        assert_eq!(entered.recv_timeout(SOON), Ok(2));
        release.send(()).unwrap();

        lp.stop();
        t.join().unwrap();
    }

    #[test]
    fn stop_ends_a_paused_loop_and_pause_needs_no_running_loop() {
        let idle = EventLoop::new().unwrap();
        drop(idle.pause());

        let (lp, reader, seen, t) = running(None);
        let guard = lp.pause();
        reader.fd.write(1).unwrap();
        let (ended_tx, ended) = channel();
        let waiter = std::thread::spawn(move || {
            t.join().unwrap();
            ended_tx.send(()).unwrap();
        });
        lp.stop();
        assert_eq!(ended.recv_timeout(SOON), Ok(()), "run returned while paused");
        waiter.join().unwrap();
        drop(guard);
        assert_eq!(seen.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty));
    }
}
