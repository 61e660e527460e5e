//! The socket file: its mode, what may already be at its path, and its removal on shutdown.

mod common;

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use common::mock::{MockVm, StopGate};
use common::{read_response, TempDir, TestServer};
use keel_api::{serve, ServeError, VmApi};

fn mock() -> Arc<dyn VmApi> {
    Arc::new(MockVm::new())
}

#[test]
fn the_socket_is_mode_0600() {
    let s = TestServer::start(MockVm::new());
    let meta = std::fs::metadata(&s.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn shutdown_and_drop_remove_the_socket() {
    let dir = TempDir::new();
    let path = dir.0.join("api.sock");
    let server = serve(&path, mock()).unwrap();
    assert_eq!(server.socket_path(), path);
    assert_eq!(common::request(&path, "GET", "/", None).status, 200);
    server.shutdown();
    assert!(!path.exists());

    let server = serve(&path, mock()).unwrap();
    assert!(path.exists());
    drop(server);
    assert!(!path.exists());
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = TempDir::new();
    let path = dir.0.join("api.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let _server = serve(&path, mock()).unwrap();
    assert_eq!(common::request(&path, "GET", "/", None).status, 200);
}

#[test]
fn a_live_socket_is_not_stolen() {
    let dir = TempDir::new();
    let path = dir.0.join("api.sock");
    let _first = serve(&path, mock()).unwrap();
    let err = serve(&path, mock()).err().expect("second serve must fail");
    assert!(matches!(err, ServeError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("another process is serving"), "{err}");
    assert_eq!(common::request(&path, "GET", "/", None).status, 200);
}

#[test]
fn a_file_in_the_way_is_left_alone() {
    let dir = TempDir::new();
    let path = dir.0.join("api.sock");
    std::fs::write(&path, "precious").unwrap();
    let err = serve(&path, mock()).err().expect("serve must fail");
    assert!(matches!(err, ServeError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let dir = TempDir::new();
    let path = dir.0.join("no-such-vm").join("api.sock");
    let err = serve(&path, mock()).err().expect("serve must fail");
    assert!(matches!(err, ServeError::NoParentDir { .. }), "{err}");
    assert!(err.to_string().contains("its directory does not exist"), "{err}");
    assert!(err.to_string().contains("no-such-vm"), "{err}");
}

#[test]
fn shutdown_lets_a_stop_in_flight_answer() {
    let mut s = TestServer::start(MockVm::running());
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    s.mock.gate_stop(StopGate { entered: entered_tx, release: release_rx });
    let mut c = s.connect();
    c.write_all(&common::raw_request("PUT", "/actions", Some(r#"{"action_type":"Stop"}"#)))
        .unwrap();
    entered_rx.recv().unwrap();

    // The VMM shuts the server down while the Stop is still being handled.
    let server = s.server.take().unwrap();
    let shutting_down = thread::spawn(move || server.shutdown());
    release_tx.send(()).unwrap();
    assert_eq!(read_response(&mut c).status, 204);
    shutting_down.join().unwrap();
    assert!(!s.socket.exists());
}
