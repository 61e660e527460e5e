//! The devices' I/O thread: an epoll loop that tells devices when their host file descriptors
//! (TAP devices, sockets, timers) are ready. Devices register and unregister from any thread.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};

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
        })
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

    /// Makes [`EventLoop::run`] return.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
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
}
