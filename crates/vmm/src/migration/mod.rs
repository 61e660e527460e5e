//! Live migration: a running VM moves to another VMM over TCP while its guest keeps running.
//!
//! A migration is a snapshot streamed in rounds ([`send`] and [`receive`]):
//!
//! 1. The sender connects; the peers exchange preambles and authenticate each other with a
//!    shared token ([`auth`]); every later frame is tagged ([`protocol`]).
//! 2. The sender offers the VM (its VM file, with absolute paths: disks are shared storage,
//!    the same image path on both hosts); the receiver checks that it can build it.
//! 3. Pre-copy: with dirty-page tracking on, round 0 sends every non-zero page of guest RAM
//!    while the guest runs; each later round sends the pages written during the previous
//!    one. It stops when the pages left would take less than the downtime target to send
//!    at the rate measured, or after a bounded number of rounds.
//! 4. Stop-and-copy: the sender pauses the VM and detaches its machine (see
//!    [`crate::control`]'s hand-over: the state is saved, the disks flushed and unlocked),
//!    sends the last dirty pages and the machine state.
//! 5. The receiver builds the machine paused (this opens the disks) and answers `Ready`; the
//!    sender answers `Commit`; the receiver lets the guest run and answers `Done`; the
//!    sender's VM ends as migrated.
//!
//! Failures: anything that goes wrong before `Commit` leaves the receiver with nothing (its
//! machine is dropped, its VMM gives up) and the source running again: until the hand-over
//! the VM just resumes; after it, a machine rebuilt from the kept RAM and state takes over.
//! If the connection breaks between `Commit` and `Done`, the sender cannot know whether the
//! receiver got the go-ahead; it tries to take its disks back, and the disk locks decide: a
//! receiver that runs the guest holds them (the source then ends as migrated), one that gave
//! up has released them (the source runs on). A VM without writable disks has no such
//! arbiter, and the source runs on (see the README).

pub mod auth;
pub mod protocol;
pub mod receive;
pub mod send;

use std::io;

use thiserror::Error;

use crate::control::ControlError;
use crate::runner::RunError;
use protocol::Kind;

pub use auth::Token;

/// Why a migration failed.
#[derive(Debug, Error)]
pub enum MigrationError {
    #[error("{what}: {source}")]
    Io { what: &'static str, source: io::Error },
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer did not answer in time")]
    Timeout,
    #[error("the peer does not speak keel's migration protocol")]
    NotKeel,
    #[error("the peer speaks migration protocol version {theirs}; this keel speaks {ours}")]
    Version { theirs: u32, ours: u32 },
    #[error("protocol error: {0}")]
    Malformed(String),
    #[error("protocol error: expected a {expected:?} frame, got {got:?}")]
    Unexpected { expected: Kind, got: Kind },
    #[error(
        "a frame failed its integrity check (HMAC): the connection was corrupted or tampered with"
    )]
    BadTag,
    #[error("authentication failed: the sender's token does not match this receiver's")]
    AuthFailed,
    #[error("the receiver refused our token: {0}")]
    PeerRefusedToken(String),
    #[error("authentication failed: the receiver could not prove it knows the token")]
    ReceiverNotAuthentic,
    #[error("the peer gave up: {0}")]
    Refused(String),
    #[error("migration token: {0}")]
    Token(String),
    #[error("{0}")]
    Refuse(String),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{0}")]
    Restore(#[from] RunError),
}

impl MigrationError {
    pub(crate) fn from_io(what: &'static str, source: io::Error) -> MigrationError {
        match source.kind() {
            io::ErrorKind::UnexpectedEof => MigrationError::Closed,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => MigrationError::Timeout,
            _ => MigrationError::Io { what, source },
        }
    }
}

/// How far a migration has come, for `GET /progress` and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// "connecting", "pre-copy", "stop-and-copy", "handing over", "done"; on the receiving
    /// side "waiting", "receiving", "starting".
    pub phase: &'static str,
    /// The pre-copy round under way (0 sends all of RAM).
    pub round: u32,
    /// Bytes of guest memory sent or received so far (zero pages count nothing).
    pub memory_bytes: u64,
    /// Guest RAM size.
    pub ram_bytes: u64,
    /// Pages still to send in this round, or dirty pages left for the next.
    pub dirty_pages: u64,
}
