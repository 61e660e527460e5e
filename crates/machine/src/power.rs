//! The guest's requests to end or restart the machine, from whichever device made them
//! (SBI SRST, the SiFive test device, HTIF), gathered in one place the VMM reads.

use std::sync::{Arc, Mutex};

use keel_cpu::HartSignals;
use keel_devices::{PowerControl, PowerRequest};

/// How the guest asked the machine to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExit {
    /// Power-off: the VM ends with status 0.
    PowerOff,
    /// Reboot: the VM restarts.
    Reset,
    /// The guest asked to end with this status (the SiFive test finisher's FAIL code, or a
    /// bare-metal program's HTIF `tohost` exit code).
    Exit(u32),
}

impl From<PowerRequest> for GuestExit {
    fn from(r: PowerRequest) -> GuestExit {
        match r {
            PowerRequest::PowerOff => GuestExit::PowerOff,
            PowerRequest::Reset => GuestExit::Reset,
            PowerRequest::Fail(code) => GuestExit::Exit(code as u32),
        }
    }
}

/// Remembers the first request and stops every hart.
pub struct PowerLatch {
    request: Mutex<Option<GuestExit>>,
    harts: Vec<Arc<HartSignals>>,
}

impl PowerLatch {
    pub fn new(harts: Vec<Arc<HartSignals>>) -> PowerLatch {
        PowerLatch { request: Mutex::new(None), harts }
    }

    pub fn exit(&self, exit: GuestExit) {
        let mut req = self.request.lock().unwrap_or_else(|e| e.into_inner());
        // The first request wins: a program that exits with a code and then powers off
        // (as keel's /init does on some paths) keeps its code.
        req.get_or_insert(exit);
        drop(req);
        for h in &self.harts {
            h.request_exit();
        }
    }

    /// The pending request, if the guest made one.
    pub fn pending(&self) -> Option<GuestExit> {
        *self.request.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PowerControl for PowerLatch {
    fn request(&self, req: PowerRequest) {
        self.exit(req.into());
    }
}
