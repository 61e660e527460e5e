//! Running a VM in the foreground (`keel run`): start it under a [`VmController`] and wait
//! for the way it ends: an outcome (power-off, exit status, Ctrl-A X) or an error (a crash, a
//! kernel panic). A guest reboot builds the machine afresh and goes on.

use std::sync::Arc;

use keel_machine::{MachineConfig, MachineError};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use thiserror::Error;

use crate::console::Console;
use crate::control::{ControlError, VmController};

/// How a VM ended, when it ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The guest powered off.
    PowerOff,
    /// The guest asked to end with this status.
    Exit(u32),
    /// The host ended it by force: Ctrl-A X in `keel run`, or the VMM's
    /// [`VmController::kill`] (also what [`VmController::stop`] falls back to when the guest
    /// does not power off in time).
    Quit,
    /// The guest moved to another VMM by a live migration, which runs it now.
    Migrated,
}

/// Why a VM could not run on, in a form that can be kept, cloned and reported (serialized as
/// `{"kind": "crashed", "message": "the guest crashed: ..."}`).
#[derive(Debug, Clone, Error)]
pub enum RunError {
    #[error(transparent)]
    Machine(Arc<MachineError>),
    #[error("the guest crashed: {0}")]
    Crashed(String),
    #[error("the guest kernel panicked: {0}")]
    KernelPanic(String),
    #[error("cannot start a vCPU thread: {0}")]
    Thread(Arc<std::io::Error>),
    /// A snapshot's memory could not be brought back (the text names the file).
    #[error("cannot restore: {0}")]
    Snapshot(String),
}

impl From<MachineError> for RunError {
    fn from(e: MachineError) -> RunError {
        RunError::Machine(Arc::new(e))
    }
}

impl RunError {
    /// A short machine-readable name of the kind of error.
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::Machine(_) => "machine",
            RunError::Crashed(_) => "crashed",
            RunError::KernelPanic(_) => "kernel_panic",
            RunError::Thread(_) => "thread",
            RunError::Snapshot(_) => "snapshot",
        }
    }
}

impl Serialize for RunError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("RunError", 2)?;
        s.serialize_field("kind", self.kind())?;
        s.serialize_field("message", &self.to_string())?;
        s.end()
    }
}

/// Runs the VM until it ends. A guest reboot builds the machine afresh from `config`; Ctrl-A X
/// on the console's input ends it with [`Outcome::Quit`].
pub fn run(config: &MachineConfig, console: &Console) -> Result<Outcome, RunError> {
    let vm = VmController::new(config.clone(), console.clone());
    vm.start().map_err(|e| match e {
        ControlError::Start(e) => e,
        // A new controller is always startable: nothing else can go wrong.
        other => RunError::Crashed(other.to_string()),
    })?;
    vm.wait()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::to_string;

    #[test]
    fn outcomes_and_errors_serialize_for_reports() {
        assert_eq!(to_string(&Outcome::PowerOff).unwrap(), r#""power_off""#);
        assert_eq!(to_string(&Outcome::Exit(3)).unwrap(), r#"{"exit":3}"#);
        assert_eq!(
            to_string(&RunError::KernelPanic("VFS".into())).unwrap(),
            r#"{"kind":"kernel_panic","message":"the guest kernel panicked: VFS"}"#
        );
    }
}
