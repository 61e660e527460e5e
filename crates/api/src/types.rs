//! The JSON bodies of the API, as the contract and `openapi.yaml` describe them.
//!
//! Requests refuse unknown fields so that a typo (`"ammount_mib"`) is a 400 naming the field
//! instead of a silently ignored setting. Every type derives both `Serialize` and
//! `Deserialize` so that a client (the `keel` CLI) can reuse them.

use serde::{Deserialize, Serialize};

/// The VM's run state as `GET /` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmState {
    /// The VMM is up but has not been sent `InstanceStart` yet.
    #[serde(rename = "Not started")]
    NotStarted,
    Running,
    Paused,
}

/// `GET /` → 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// The VM's name.
    pub id: String,
    pub state: VmState,
    pub vmm_version: String,
    pub app_name: String,
    /// The VMM process id.
    pub pid: u32,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Seconds since the guest was started; `null` before `InstanceStart`.
    pub uptime_s: Option<f64>,
}

/// The `action_type` of `PUT /actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionType {
    InstanceStart,
    SendCtrlAltDel,
    Stop,
    Reset,
    FlushMetrics,
}

/// `PUT /actions` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub action_type: ActionType,
    /// How long `Stop` waits for the guest to power off before stopping it by force.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub timeout_ms: Option<u64>,
}

/// An optional field may be left out but not be `null`: the document says it is an integer.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// How long `Stop` waits when the request names no `timeout_ms`.
pub const DEFAULT_STOP_TIMEOUT_MS: u64 = 10_000;

/// The state asked for by `PATCH /vm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestedState {
    Paused,
    Resumed,
}

/// `PATCH /vm` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmStateRequest {
    pub state: RequestedState,
}

/// `GET /balloon` → 200, and the `PUT /balloon` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonConfig {
    /// Target size of the balloon: memory taken away from the guest.
    pub amount_mib: u32,
    pub deflate_on_oom: bool,
    pub stats_polling_interval_s: u32,
}

/// `PATCH /balloon` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonUpdate {
    pub amount_mib: u32,
}

/// `GET /balloon/statistics` → 200. The optional fields are omitted until the guest has
/// reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonStatistics {
    pub target_pages: u64,
    pub actual_pages: u64,
    pub target_mib: u64,
    pub actual_mib: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_out: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major_faults: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor_faults: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_caches: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugetlb_allocations: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugetlb_failures: Option<u64>,
}

/// What a snapshot holds of guest memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotType {
    /// All of guest memory.
    #[default]
    Full,
    /// The pages written since the VM's previous snapshot (taken or restored from).
    Diff,
}

/// `PUT /snapshot/create` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreateParams {
    /// The snapshot directory (absolute): created if missing; an existing one must be empty
    /// or an earlier keel snapshot, which is replaced.
    pub snapshot_path: String,
    #[serde(default)]
    pub snapshot_type: SnapshotType,
    /// Leave a running VM paused afterwards instead of resuming it.
    #[serde(default)]
    pub leave_paused: bool,
}

/// `PUT /snapshot/create` → 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotCreated {
    pub snapshot_path: String,
    pub snapshot_type: SnapshotType,
    /// Bytes of guest memory written (zero pages are not written).
    pub memory_bytes: u64,
    /// Guest pages the memory image covers: all of RAM, or the dirty ones.
    pub pages: u64,
    /// How long the guest stood still for the snapshot.
    pub paused_ms: u64,
}

/// `PUT /snapshot/load` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotLoadParams {
    /// The snapshot directory (absolute).
    pub snapshot_path: String,
    /// Let the guest run at once; else the VM waits, paused, for `PATCH /vm` Resumed.
    #[serde(default)]
    pub resume_vm: bool,
}

/// `GET /progress` → 200: the long operation under way, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// `snapshot`, `restore` or `migration`; null when nothing long is under way.
    pub operation: Option<String>,
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// A migration's step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// A migration's pre-copy round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// Pages a migration still has to send in this round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty_pages: Option<u64>,
}

/// `PUT /migrate` request body.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateParams {
    /// The receiver, `HOST:PORT`.
    pub destination: String,
    /// The secret shared with the receiver.
    pub token: String,
    /// MiB/s the pre-copy may send at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bandwidth_mib: Option<u64>,
}

impl std::fmt::Debug for MigrateParams {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateParams")
            .field("destination", &self.destination)
            .field("max_bandwidth_mib", &self.max_bandwidth_mib)
            .finish_non_exhaustive()
    }
}

/// `PUT /migrate` → 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationDone {
    pub destination: String,
    pub rounds: u32,
    pub memory_bytes: u64,
    pub sent_bytes: u64,
    pub total_ms: u64,
    pub downtime_ms: u64,
    pub confirmed: bool,
}

/// The body of every 4xx/5xx response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub fault_message: String,
}
