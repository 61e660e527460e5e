//! A small blocking HTTP/1.1 client for a VMM's API socket: one request per connection
//! (`Connection: close`), JSON bodies, and the console's `Upgrade`.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

/// The most header bytes a response may have.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to the API socket {}: {source}", path.display())]
    Connect { path: PathBuf, source: io::Error },
    #[error("no answer on the API socket {} within {} s", path.display(), timeout.as_secs_f64())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("talking to the API socket {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("the VMM sent a malformed HTTP response: {0}")]
    Malformed(String),
    /// A 4xx/5xx answer; `message` is the API's `fault_message`.
    #[error("{message} (HTTP {status})")]
    Status { status: u16, message: String },
}

impl ClientError {
    /// The VMM answered and said no (as opposed to not answering at all).
    pub fn is_refusal(&self) -> bool {
        matches!(self, ClientError::Status { .. })
    }
}

/// An answer with a 1xx or 2xx status.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ClientError::Malformed(format!("the body is not JSON: {e}")))
    }
}

/// Talks to one API socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(socket: &Path, timeout: Duration) -> Client {
        Client { socket: socket.to_owned(), timeout }
    }

    pub fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        self.request("GET", path, None)?.json()
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Response, ClientError> {
        self.request("PUT", path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Response, ClientError> {
        self.request("PATCH", path, Some(body))
    }

    /// Sends one request and reads the whole answer. Statuses from 400 up are errors.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        let mut stream = self.connect()?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        if !body.is_empty() || matches!(method, "PUT" | "PATCH" | "POST") {
            request.push_str("Content-Type: application/json\r\n");
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("Accept: application/json\r\nConnection: close\r\n\r\n");
        request.push_str(&body);
        stream.write_all(request.as_bytes()).map_err(|e| self.io(e))?;
        let (head, rest) = self.read_head(&mut stream)?;
        let body = if head.status < 200 || head.status == 204 || head.status == 304 {
            Vec::new()
        } else {
            self.read_body(&mut stream, &head.headers, rest)?
        };
        let response = Response { status: head.status, body };
        check(response, &head.reason)
    }

    /// `GET path` asking to switch the connection to `protocol`. On 101 the connection is
    /// handed back (without a read time limit) with whatever bytes came after the answer.
    pub fn upgrade(
        &self,
        path: &str,
        protocol: &str,
    ) -> Result<(UnixStream, Vec<u8>), ClientError> {
        let mut stream = self.connect()?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).map_err(|e| self.io(e))?;
        let (head, rest) = self.read_head(&mut stream)?;
        if head.status == 101 {
            stream.set_read_timeout(None).map_err(|e| self.io(e))?;
            stream.set_write_timeout(None).map_err(|e| self.io(e))?;
            return Ok((stream, rest));
        }
        let body = self.read_body(&mut stream, &head.headers, rest)?;
        let response = Response { status: head.status, body };
        check(response, &head.reason)?;
        Err(ClientError::Malformed(format!(
            "asked to upgrade to {protocol}, the VMM answered {} {}",
            head.status, head.reason
        )))
    }

    fn connect(&self) -> Result<UnixStream, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .map_err(|source| ClientError::Connect { path: self.socket.clone(), source })?;
        stream.set_read_timeout(Some(self.timeout)).map_err(|e| self.io(e))?;
        stream.set_write_timeout(Some(self.timeout)).map_err(|e| self.io(e))?;
        Ok(stream)
    }

    fn io(&self, source: io::Error) -> ClientError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                ClientError::Timeout { path: self.socket.clone(), timeout: self.timeout }
            }
            _ => ClientError::Io { path: self.socket.clone(), source },
        }
    }

    /// Reads the status line and headers; returns them and the bytes read past them.
    fn read_head(&self, stream: &mut UnixStream) -> Result<(Head, Vec<u8>), ClientError> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let rest = buf.split_off(end + 4);
                return Ok((parse_head(&buf[..end])?, rest));
            }
            if buf.len() > MAX_HEAD {
                return Err(ClientError::Malformed("the headers never end".into()));
            }
            let n = read_some(stream, &mut chunk).map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(ClientError::Malformed(if buf.is_empty() {
                    "the connection closed without an answer".into()
                } else {
                    "the connection closed in the middle of the headers".into()
                }));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The body after the headers: Content-Length bytes, chunked, or up to the end.
    fn read_body(
        &self,
        stream: &mut UnixStream,
        headers: &[(String, String)],
        mut body: Vec<u8>,
    ) -> Result<Vec<u8>, ClientError> {
        let header = |name: &str| {
            headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
        };
        if header("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            stream.read_to_end(&mut body).map_err(|e| self.io(e))?;
            return dechunk(&body);
        }
        match header("Content-Length") {
            Some(len) => {
                let len: usize = len.parse().map_err(|_| {
                    ClientError::Malformed(format!("Content-Length {len:?} is not a number"))
                })?;
                let mut chunk = [0u8; 4096];
                while body.len() < len {
                    let n = read_some(stream, &mut chunk).map_err(|e| self.io(e))?;
                    if n == 0 {
                        return Err(ClientError::Malformed(format!(
                            "the body ended after {} of its {len} bytes",
                            body.len()
                        )));
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                body.truncate(len);
            }
            None => {
                stream.read_to_end(&mut body).map_err(|e| self.io(e))?;
            }
        }
        Ok(body)
    }
}

struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

fn read_some(stream: &mut UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(bytes: &[u8]) -> Result<Head, ClientError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ClientError::Malformed("the headers are not text".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let status = match code.parse::<u16>() {
        Ok(s) if version.starts_with("HTTP/1.") && (100..600).contains(&s) => s,
        _ => return Err(ClientError::Malformed(format!("status line {status_line:?}"))),
    };
    let reason = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ClientError::Malformed(format!("header line {line:?}")));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Head { status, reason, headers })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, ClientError> {
    let bad = || ClientError::Malformed("bad chunked encoding".into());
    let mut body = Vec::new();
    loop {
        let end = find(data, b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&data[..end]).map_err(|_| bad())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            return Err(bad());
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Turns 4xx/5xx into `ClientError::Status` with the API's `fault_message`.
fn check(response: Response, reason: &str) -> Result<Response, ClientError> {
    if response.status < 400 {
        return Ok(response);
    }
    let fault = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| v.get("fault_message").and_then(Value::as_str).map(str::to_string));
    let message = match fault {
        Some(m) => m,
        None => {
            let text = String::from_utf8_lossy(&response.body).trim().to_string();
            if text.is_empty() {
                reason.to_string()
            } else {
                text
            }
        }
    };
    Err(ClientError::Status { status: response.status, message })
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;

    use serde_json::json;

    use super::*;

    /// A one-connection server: answers `reply` and sends back what it was asked.
    struct Server {
        dir: PathBuf,
        asked: mpsc::Receiver<String>,
    }

    impl Server {
        fn start(test: &str, reply: String) -> Server {
            let dir =
                std::env::temp_dir().join(format!("keel-client-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let listener = UnixListener::bind(dir.join("api.sock")).unwrap();
            let (tx, asked) = mpsc::channel();
            std::thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = io::BufReader::new(stream);
                let mut request = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    request.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                request.push_str(&String::from_utf8(body).unwrap());
                reader.get_mut().write_all(reply.as_bytes()).unwrap();
                tx.send(request).unwrap();
            });
            Server { dir, asked }
        }

        fn client(&self) -> Client {
            Client::new(&self.dir.join("api.sock"), Duration::from_secs(10))
        }
    }

    /// A response with a Content-Length that matches its body.
    fn reply(status: &str, body: &str) -> String {
        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_200_with_json_is_read() {
        let server = Server::start("200", reply("200 OK", "{\"state\":\"Running\",\"vcpus\":2}\n"));
        let v = server.client().get_json("/").unwrap();
        assert_eq!(v, json!({"state": "Running", "vcpus": 2}));
        let asked = server.asked.recv().unwrap();
        assert!(asked.starts_with("GET / HTTP/1.1\r\n"), "{asked}");
        assert!(asked.contains("Host: localhost\r\n") && asked.contains("Connection: close"));
    }

    #[test]
    fn a_204_has_no_body_and_the_request_carries_json() {
        let server = Server::start("204", "HTTP/1.1 204 No Content\r\n\r\n".into());
        let r = server.client().put("/actions", &json!({"action_type": "InstanceStart"})).unwrap();
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
        let asked = server.asked.recv().unwrap();
        assert!(asked.starts_with("PUT /actions HTTP/1.1\r\n"), "{asked}");
        assert!(asked.contains("Content-Type: application/json\r\n"), "{asked}");
        assert!(asked.ends_with("\r\n\r\n{\"action_type\":\"InstanceStart\"}"), "{asked}");
    }

    #[test]
    fn a_400_carries_the_fault_message() {
        let server = Server::start(
            "400",
            reply(
                "400 Bad Request",
                "{\"fault_message\": \"cannot pause: the VM is not running\"}",
            ),
        );
        let err = server.client().patch("/vm", &json!({"state": "Paused"})).unwrap_err();
        assert!(err.is_refusal());
        match &err {
            ClientError::Status { status, message } => {
                assert_eq!(*status, 400);
                assert_eq!(message, "cannot pause: the VM is not running");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.to_string(), "cannot pause: the VM is not running (HTTP 400)");
    }

    #[test]
    fn a_body_without_length_runs_to_the_end() {
        let server = Server::start("eof", "HTTP/1.1 200 OK\r\n\r\n{\"a\": 1}".into());
        assert_eq!(server.client().get_json("/x").unwrap(), json!({"a": 1}));
    }

    #[test]
    fn an_upgrade_hands_back_the_connection_and_early_bytes() {
        let server = Server::start(
            "upgrade",
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: keel-console\r\n\r\nlogin: "
                .into(),
        );
        let (mut stream, mut early) = server.client().upgrade("/console", "keel-console").unwrap();
        stream.read_to_end(&mut early).unwrap();
        assert_eq!(early, b"login: ");
        let asked = server.asked.recv().unwrap();
        assert!(asked.contains("Upgrade: keel-console\r\n"), "{asked}");
    }

    #[test]
    fn a_missing_socket_is_a_clear_connect_error() {
        let path = std::env::temp_dir().join(format!("keel-client-none-{}", std::process::id()));
        let err =
            Client::new(&path.join("api.sock"), Duration::from_secs(1)).get_json("/").unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        assert!(!err.is_refusal());
        let text = err.to_string();
        assert!(text.contains("cannot connect to the API socket") && text.contains("api.sock"));
    }

    #[test]
    fn a_socket_nobody_listens_on_refuses_the_connection() {
        let dir = std::env::temp_dir().join(format!("keel-client-refused-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        drop(UnixListener::bind(&path).unwrap());
        let err = Client::new(&path, Duration::from_secs(1)).get_json("/").unwrap_err();
        match &err {
            ClientError::Connect { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused)
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert!(dechunk(b"zz\r\n").is_err());
    }
}
