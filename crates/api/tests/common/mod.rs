//! Test harness: a server on a socket in a private temporary directory, and a raw HTTP/1.1
//! client that writes requests by hand (so tests can also send broken ones).

#![allow(dead_code)]

pub mod mock;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_api::{serve_with, ApiServer, ServerConfig, VmApi};
use mock::MockVm;

/// A safety net so that a server bug fails a test instead of hanging it; no test waits on it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A fresh private directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("keel-api-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct TestServer {
    pub mock: Arc<MockVm>,
    pub socket: PathBuf,
    pub server: Option<ApiServer>,
    pub dir: TempDir,
}

impl TestServer {
    pub fn start(mock: MockVm) -> Self {
        Self::with_config(mock, ServerConfig::default())
    }

    pub fn with_config(mock: MockVm, config: ServerConfig) -> Self {
        let dir = TempDir::new();
        let socket = dir.0.join("api.sock");
        let mock = Arc::new(mock);
        let api: Arc<dyn VmApi> = Arc::clone(&mock) as Arc<dyn VmApi>;
        let server = serve_with(&socket, api, config).expect("serve");
        Self { mock, socket, server: Some(server), dir }
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        request(&self.socket, method, path, body)
    }

    pub fn connect(&self) -> UnixStream {
        connect(&self.socket)
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `fault_message` of an error response; panics if the body is not that shape.
    pub fn fault(&self) -> String {
        let v = self.json();
        assert_eq!(v.as_object().map(|o| o.len()), Some(1), "error body: {v}");
        v["fault_message"].as_str().expect("fault_message").to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

pub fn connect(socket: &Path) -> UnixStream {
    let stream = UnixStream::connect(socket).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// The bytes of a request that asks the server to close the connection after answering.
pub fn raw_request(method: &str, path: &str, body: Option<&str>) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    req.into_bytes()
}

/// One request on a fresh connection; the server closes it after the response.
pub fn request(socket: &Path, method: &str, path: &str, body: Option<&str>) -> Response {
    send_raw(socket, &raw_request(method, path, body))
}

pub fn send_raw(socket: &Path, bytes: &[u8]) -> Response {
    let mut stream = connect(socket);
    stream.write_all(bytes).unwrap();
    let mut all = Vec::new();
    // A server that answers before reading the whole request (413) and closes makes the
    // kernel reset the connection once the response has been read; the response stands.
    if let Err(e) = stream.read_to_end(&mut all) {
        assert!(e.kind() == std::io::ErrorKind::ConnectionReset && !all.is_empty(), "read: {e}");
    }
    parse_response(&all)
        .unwrap_or_else(|| panic!("bad response: {:?}", String::from_utf8_lossy(&all)))
}

/// Parses one complete response (with a Content-Length body, or none).
pub fn parse_response(bytes: &[u8]) -> Option<Response> {
    let (head, rest) = split_head(bytes)?;
    let (status, headers) = parse_head(head)?;
    let len = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    Some(Response { status, headers, body: rest.get(..len)?.to_vec() })
}

pub fn split_head(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&bytes[..end], &bytes[end + 4..]))
}

pub fn parse_head(head: &[u8]) -> Option<(u16, HashMap<String, String>)> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((status, headers))
}

/// Reads a response head from a stream that stays open (keep-alive or upgrade), byte by
/// byte so that nothing after the head is consumed.
pub fn read_head(stream: &mut UnixStream) -> (u16, HashMap<String, String>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read head");
        assert_eq!(n, 1, "connection closed inside the head: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    parse_head(&head[..head.len() - 4]).expect("response head")
}

/// Reads a keep-alive response: head, then a Content-Length body.
pub fn read_response(stream: &mut UnixStream) -> Response {
    let (status, headers) = read_head(stream);
    let len = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    Response { status, headers, body }
}

/// Reads exactly `n` bytes.
pub fn read_n(stream: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

/// Reads until the peer closes; true if it closed (EOF or reset) before IO_TIMEOUT.
pub fn closed_by_peer(stream: &mut UnixStream) -> bool {
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(e) => {
            matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
        }
    }
}
