//! keel-vmm: a VM's life: its VM file, console and vCPU threads, and its control at run time.

pub mod config;
pub mod console;
mod console_out;
pub mod control;
pub mod metrics;
pub mod migration;
pub mod runner;
pub mod snapshot;
mod supervisor;
pub mod sysrq;
pub mod terminal;

pub use config::{ConfigError, VmFile};
pub use console::{Console, ConsoleInput};
pub use control::{ControlError, VmController, VmEnd, VmState};
pub use runner::{run, Outcome, RunError};
