//! What the server asks of the VMM: the [`VmApi`] trait, its error type and the console pair.

use std::io::Write;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::types::{
    BalloonConfig, BalloonStatistics, BalloonUpdate, InstanceInfo, MigrateParams, MigrationDone,
    Progress, SnapshotCreateParams, SnapshotCreated, SnapshotLoadParams,
};

/// A failed request: the HTTP status and the `fault_message` sent back to the client.
///
/// `status` should be 4xx (the request was wrong, e.g. for the VM's state) or 5xx (the VMM
/// failed); anything else is sent as 500 so that an error never looks like a success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (HTTP {status})")]
pub struct ApiError {
    pub status: u16,
    /// What was wrong and what to do about it.
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// 400: the request is malformed or does not fit the VM's state.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 500: the VMM could not do what was asked.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// The status actually sent: `status` if it is an error status, else 500.
    pub fn http_status(&self) -> u16 {
        if (400..=599).contains(&self.status) {
            self.status
        } else {
            500
        }
    }
}

/// One client's view of the guest console, handed out by [`VmApi::attach_console`].
///
/// The server forwards every chunk received on `output` to the client, and writes what the
/// client types to `input`. The attachment ends when the client closes the connection (the
/// server then drops both halves: the VMM sees its sender fail and `input` dropped) or when
/// the VMM drops the sending side of `output` (the server then closes the connection).
pub struct ConsoleAttachment {
    /// Guest console output from the moment of attaching.
    pub output: Receiver<Vec<u8>>,
    /// Keyboard input for the guest. Writes may block; the server makes them on a thread of
    /// their own.
    pub input: Box<dyn Write + Send>,
}

/// The operations of the REST API, implemented by the VMM.
///
/// The server calls every method on a blocking thread pool, so methods may block (`stop`
/// waits for the guest) without holding up other requests; several calls can run at once.
/// A method that panics answers 500 and leaves the server running.
pub trait VmApi: Send + Sync + 'static {
    /// `GET /`.
    fn info(&self) -> Result<InstanceInfo, ApiError>;
    /// `PUT /actions` InstanceStart: boot the guest (400 if already started).
    fn instance_start(&self) -> Result<(), ApiError>;
    /// `PUT /actions` SendCtrlAltDel: ask the guest to power off; returns at once.
    fn send_ctrl_alt_del(&self) -> Result<(), ApiError>;
    /// `PUT /actions` Stop: ask the guest to power off, wait up to `timeout`, then stop it
    /// by force. Return once the VM has stopped.
    fn stop(&self, timeout: Duration) -> Result<(), ApiError>;
    /// `PUT /actions` Reset: hard reset; the machine is rebuilt and the guest boots again.
    fn reset(&self) -> Result<(), ApiError>;
    /// `PUT /actions` FlushMetrics: write `metrics.json`.
    fn flush_metrics(&self) -> Result<(), ApiError>;
    /// `PATCH /vm` Paused: freeze every vCPU and the guest's clock.
    fn pause(&self) -> Result<(), ApiError>;
    /// `PATCH /vm` Resumed.
    fn resume(&self) -> Result<(), ApiError>;
    /// `GET /vm/config`: the VM configuration as the contract shapes it.
    fn vm_config(&self) -> Result<serde_json::Value, ApiError>;
    /// `GET /balloon` (400 "no balloon device" when the VM has none).
    fn balloon(&self) -> Result<BalloonConfig, ApiError>;
    /// `PUT /balloon`: set the target; the other fields must equal the configured ones.
    fn put_balloon(&self, config: BalloonConfig) -> Result<(), ApiError>;
    /// `PATCH /balloon`: set the target.
    fn patch_balloon(&self, update: BalloonUpdate) -> Result<(), ApiError>;
    /// `GET /balloon/statistics`.
    fn balloon_statistics(&self) -> Result<BalloonStatistics, ApiError>;
    /// `GET /metrics`: the contract's metrics JSON.
    fn metrics(&self) -> Result<serde_json::Value, ApiError>;
    /// `GET /metrics?format=prometheus`: the same numbers in Prometheus text exposition.
    fn metrics_prometheus(&self) -> Result<String, ApiError>;
    /// `GET /console` upgrade: a new attachment to the guest console.
    fn attach_console(&self) -> Result<ConsoleAttachment, ApiError>;
    /// `PUT /snapshot/create`: pause a running VM, write its state and memory, resume it
    /// (unless asked not to). Returns once the snapshot is complete on disk.
    fn create_snapshot(&self, params: SnapshotCreateParams) -> Result<SnapshotCreated, ApiError>;
    /// `PUT /snapshot/load`: start a VM that was not started from a snapshot.
    fn load_snapshot(&self, params: SnapshotLoadParams) -> Result<(), ApiError>;
    /// `PUT /migrate`: move the running VM to a receiver; returns once it runs there (this
    /// VM has then ended). On failure the VM runs here as before.
    fn migrate(&self, params: MigrateParams) -> Result<MigrationDone, ApiError>;
    /// `GET /progress`: how far a long operation (snapshot, restore, migration) has come.
    fn progress(&self) -> Result<Progress, ApiError>;
}
