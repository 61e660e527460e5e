//! Hart states for the SBI Hart State Management extension (SBI spec §9): which harts run,
//! which wait to be started, and where a started hart begins.

use std::sync::Mutex;

/// `sbi_hart_get_status` values (SBI spec §9, table 9.1).
pub const STARTED: u64 = 0;
pub const STOPPED: u64 = 1;
pub const START_PENDING: u64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Started,
    Stopped,
    /// `hart_start` was called: the hart begins in S-mode at `addr` with a1 = `opaque`.
    StartPending {
        addr: u64,
        opaque: u64,
    },
}

pub struct Hsm {
    harts: Vec<Mutex<State>>,
}

/// Why `hart_start` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    NoSuchHart,
    AlreadyRunning,
}

impl Hsm {
    /// `running` harts start out started, the others stopped.
    pub fn new(harts: usize, running: impl Fn(usize) -> bool) -> Hsm {
        let harts = (0..harts)
            .map(|h| Mutex::new(if running(h) { State::Started } else { State::Stopped }))
            .collect();
        Hsm { harts }
    }

    fn state(&self, hart: usize) -> Option<std::sync::MutexGuard<'_, State>> {
        self.harts.get(hart).map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The SBI status of `hart`, or `None` if there is no such hart.
    pub fn status(&self, hart: usize) -> Option<u64> {
        Some(match *self.state(hart)? {
            State::Started => STARTED,
            State::Stopped => STOPPED,
            State::StartPending { .. } => START_PENDING,
        })
    }

    pub fn is_stopped(&self, hart: usize) -> bool {
        self.state(hart).is_some_and(|s| *s != State::Started)
    }

    /// `hart_start`: a stopped hart will begin at `addr`.
    pub fn request_start(&self, hart: usize, addr: u64, opaque: u64) -> Result<(), StartError> {
        let mut s = self.state(hart).ok_or(StartError::NoSuchHart)?;
        if *s != State::Stopped {
            return Err(StartError::AlreadyRunning);
        }
        *s = State::StartPending { addr, opaque };
        Ok(())
    }

    /// Takes a pending start for `hart`, which is started from then on.
    pub fn take_start(&self, hart: usize) -> Option<(u64, u64)> {
        let mut s = self.state(hart)?;
        match *s {
            State::StartPending { addr, opaque } => {
                *s = State::Started;
                Some((addr, opaque))
            }
            _ => None,
        }
    }

    /// `hart_stop`: the calling hart stops.
    pub fn stop(&self, hart: usize) {
        if let Some(mut s) = self.state(hart) {
            *s = State::Stopped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_hart_starts_once() {
        let hsm = Hsm::new(2, |h| h == 0);
        assert_eq!(hsm.status(0), Some(STARTED));
        assert_eq!(hsm.status(1), Some(STOPPED));
        assert_eq!(hsm.request_start(0, 0x8020_0000, 1), Err(StartError::AlreadyRunning));
        assert_eq!(hsm.request_start(7, 0x8020_0000, 1), Err(StartError::NoSuchHart));
        hsm.request_start(1, 0x8020_0000, 42).unwrap();
        assert_eq!(hsm.status(1), Some(START_PENDING));
        assert_eq!(hsm.request_start(1, 0, 0), Err(StartError::AlreadyRunning));
        assert_eq!(hsm.take_start(1), Some((0x8020_0000, 42)));
        assert_eq!(hsm.take_start(1), None);
        assert_eq!(hsm.status(1), Some(STARTED));
        hsm.stop(1);
        assert!(hsm.is_stopped(1));
    }
}
