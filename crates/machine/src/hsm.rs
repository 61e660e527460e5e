//! Hart states for the SBI Hart State Management extension (SBI spec §9): which harts run,
//! which wait to be started, and where a started hart begins.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// `sbi_hart_get_status` values (SBI spec §9, table 9.1).
pub const STARTED: u64 = 0;
pub const STOPPED: u64 = 1;
pub const START_PENDING: u64 = 2;

/// One hart's HSM state; also what a snapshot keeps of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HartHsmState {
    Started,
    Stopped,
    /// `hart_start` was called: the hart begins in S-mode at `addr` with a1 = `opaque`.
    StartPending {
        addr: u64,
        opaque: u64,
    },
}

pub struct Hsm {
    harts: Vec<Mutex<HartHsmState>>,
}

/// A saved HSM state that does not fit this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the saved HSM state has {saved} harts, this machine {harts}")]
pub struct HsmStateError {
    pub saved: usize,
    pub harts: usize,
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
            .map(|h| {
                Mutex::new(if running(h) { HartHsmState::Started } else { HartHsmState::Stopped })
            })
            .collect();
        Hsm { harts }
    }

    fn state(&self, hart: usize) -> Option<std::sync::MutexGuard<'_, HartHsmState>> {
        self.harts.get(hart).map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The SBI status of `hart`, or `None` if there is no such hart.
    pub fn status(&self, hart: usize) -> Option<u64> {
        Some(match *self.state(hart)? {
            HartHsmState::Started => STARTED,
            HartHsmState::Stopped => STOPPED,
            HartHsmState::StartPending { .. } => START_PENDING,
        })
    }

    pub fn is_stopped(&self, hart: usize) -> bool {
        self.state(hart).is_some_and(|s| *s != HartHsmState::Started)
    }

    /// `hart_start`: a stopped hart will begin at `addr`.
    pub fn request_start(&self, hart: usize, addr: u64, opaque: u64) -> Result<(), StartError> {
        let mut s = self.state(hart).ok_or(StartError::NoSuchHart)?;
        if *s != HartHsmState::Stopped {
            return Err(StartError::AlreadyRunning);
        }
        *s = HartHsmState::StartPending { addr, opaque };
        Ok(())
    }

    /// Takes a pending start for `hart`, which is started from then on.
    pub fn take_start(&self, hart: usize) -> Option<(u64, u64)> {
        let mut s = self.state(hart)?;
        match *s {
            HartHsmState::StartPending { addr, opaque } => {
                *s = HartHsmState::Started;
                Some((addr, opaque))
            }
            _ => None,
        }
    }

    /// Every hart's state, in hart order (for a snapshot).
    pub fn save_state(&self) -> Vec<HartHsmState> {
        (0..self.harts.len()).filter_map(|h| self.state(h).map(|s| *s)).collect()
    }

    /// Puts back what [`Hsm::save_state`] returned; refuses a state for another hart count.
    pub fn restore_state(&self, saved: &[HartHsmState]) -> Result<(), HsmStateError> {
        if saved.len() != self.harts.len() {
            return Err(HsmStateError { saved: saved.len(), harts: self.harts.len() });
        }
        for (hart, state) in saved.iter().enumerate() {
            if let Some(mut s) = self.state(hart) {
                *s = *state;
            }
        }
        Ok(())
    }

    /// `hart_stop`: the calling hart stops.
    pub fn stop(&self, hart: usize) {
        if let Some(mut s) = self.state(hart) {
            *s = HartHsmState::Stopped;
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

    #[test]
    fn every_hart_state_survives_a_save_and_restore() {
        let hsm = Hsm::new(3, |h| h == 0);
        hsm.request_start(2, 0x8020_0000, 7).unwrap();
        let saved = hsm.save_state();
        let json = serde_json::to_string(&saved).unwrap();
        let fresh = Hsm::new(3, |_| true);
        fresh.restore_state(&serde_json::from_str::<Vec<HartHsmState>>(&json).unwrap()).unwrap();
        assert_eq!(fresh.status(0), Some(STARTED));
        assert_eq!(fresh.status(1), Some(STOPPED));
        assert_eq!(fresh.take_start(2), Some((0x8020_0000, 7)), "a pending start is kept");
        let err = Hsm::new(2, |_| true).restore_state(&saved).unwrap_err();
        assert_eq!(err, HsmStateError { saved: 3, harts: 2 });
    }
}
