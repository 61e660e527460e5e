//! keel's VMM REST API: HTTP/1.1 with JSON bodies over a Unix socket, shaped like
//! Firecracker's. `openapi.yaml` beside this crate documents it; [`ROUTES`] is the table the
//! server routes by, and the tests keep the two in step.
//!
//! The VMM implements [`VmApi`] and calls [`serve`]; the server runs on a thread of its own
//! (a single-threaded tokio runtime with hyper) and calls `VmApi` methods on a blocking pool.

mod console;
mod handler;
mod http;
mod routes;
mod server;
mod types;
mod vm_api;

pub use console::CONSOLE_PROTOCOL;
pub use routes::{Operation, Route, ROUTES};
pub use server::{serve, serve_with, ApiServer, ServeError, ServerConfig};
pub use types::{
    ActionRequest, ActionType, BalloonConfig, BalloonStatistics, BalloonUpdate, ErrorBody,
    InstanceInfo, MigrateParams, MigrationDone, Progress, RequestedState, SnapshotCreateParams,
    SnapshotCreated, SnapshotLoadParams, SnapshotType, VmState, VmStateRequest,
    DEFAULT_STOP_TIMEOUT_MS,
};
pub use vm_api::{ApiError, ConsoleAttachment, VmApi};

/// The `Content-Type` of `GET /metrics?format=prometheus`.
pub const PROMETHEUS_CONTENT_TYPE: &str = http::PROMETHEUS;
