//! keel-vmm: a VM's life in the foreground: its VM file, console and vCPU threads.

pub mod config;
pub mod console;
pub mod runner;
pub mod terminal;

pub use config::{ConfigError, VmFile};
pub use console::Console;
pub use runner::{run, Outcome, RunError};
