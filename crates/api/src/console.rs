//! `GET /console`: the HTTP upgrade to a raw byte stream, and the bridge that carries guest
//! output to the client and the client's keystrokes to the guest.

use std::io::Write;
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::http::{self, Body};
use crate::server::{wait_for_shutdown, Shared};
use crate::vm_api::{ApiError, ConsoleAttachment};

/// The `Upgrade` protocol token of the console.
pub const CONSOLE_PROTOCOL: &str = "keel-console";

/// How often the output thread looks whether its client has gone while the guest is quiet.
/// It bounds how long a detached client's thread outlives it, nothing else.
const OUTPUT_IDLE_CHECK: Duration = Duration::from_millis(250);

pub(crate) async fn upgrade(
    mut req: Request<Incoming>,
    shared: &Shared,
) -> Result<Response<Body>, ApiError> {
    if !wants_console(req.headers()) {
        return Err(ApiError::bad_request(format!(
            "GET /console is an HTTP upgrade: send `Connection: Upgrade` and \
             `Upgrade: {CONSOLE_PROTOCOL}`"
        )));
    }
    let attachment = http::blocking(&shared.api, |a| a.attach_console()).await?;
    let ends = Ends::start(attachment)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut shutdown = shared.shutdown.clone();
    let tracker = shared.tracker.clone();
    tokio::spawn(async move {
        // Held until the bridge ends, so that a stopping server waits for it.
        let _tracker = tracker;
        // An error means the client went away before the 101 reached it; dropping `ends`
        // detaches.
        if let Ok(upgraded) = on_upgrade.await {
            bridge(TokioIo::new(upgraded), ends, &mut shutdown).await;
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("upgrade"));
    resp.headers_mut().insert(UPGRADE, HeaderValue::from_static(CONSOLE_PROTOCOL));
    Ok(resp)
}

/// `Connection` must carry the `upgrade` token (it is a comma-separated list and may repeat)
/// and `Upgrade` must name our protocol; both are case-insensitive.
fn wants_console(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = headers
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(CONSOLE_PROTOCOL));
    connection_upgrade && protocol
}

/// The async ends of the two threads that talk to the VMM's blocking console halves.
struct Ends {
    /// Guest output, forwarded from `ConsoleAttachment::output`.
    output: mpsc::Receiver<Vec<u8>>,
    /// Client input, written to `ConsoleAttachment::input`.
    input: std_mpsc::Sender<Vec<u8>>,
}

impl Ends {
    fn start(attachment: ConsoleAttachment) -> Result<Self, ApiError> {
        let ConsoleAttachment { output, mut input } = attachment;
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(64);
        let (in_tx, in_rx) = std_mpsc::channel::<Vec<u8>>();
        let spawn_failed = |e: std::io::Error| {
            ApiError::internal(format!("could not start a console thread: {e}"))
        };
        std::thread::Builder::new()
            .name("keel-console-out".into())
            .spawn(move || loop {
                match output.recv_timeout(OUTPUT_IDLE_CHECK) {
                    Ok(chunk) => {
                        if out_tx.blocking_send(chunk).is_err() {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) if !out_tx.is_closed() => {}
                    Err(_) => break,
                }
            })
            .map_err(spawn_failed)?;
        std::thread::Builder::new()
            .name("keel-console-in".into())
            .spawn(move || {
                for chunk in in_rx {
                    if input.write_all(&chunk).and_then(|()| input.flush()).is_err() {
                        break;
                    }
                }
            })
            .map_err(spawn_failed)?;
        Ok(Self { output: out_rx, input: in_tx })
    }
}

/// Copies bytes both ways until the client closes, the VMM ends the output, the guest input
/// is gone, or the server stops. Dropping `ends` then lets both threads finish.
async fn bridge<S>(io: S, mut ends: Ends, shutdown: &mut watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            chunk = ends.output.recv() => {
                let Some(chunk) = chunk else { break };
                if writer.write_all(&chunk).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
            n = reader.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ends.input.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            },
            () = wait_for_shutdown(shutdown) => break,
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn upgrade_headers_are_tokens_compared_without_case() {
        assert!(wants_console(&headers(&[("connection", "Upgrade"), ("upgrade", "keel-console")])));
        assert!(wants_console(&headers(&[
            ("connection", "keep-alive, UPGRADE"),
            ("upgrade", "Keel-Console")
        ])));
        assert!(!wants_console(&headers(&[("upgrade", "keel-console")])));
        assert!(!wants_console(&headers(&[("connection", "upgrade"), ("upgrade", "websocket")])));
        assert!(!wants_console(&headers(&[
            ("connection", "upgraded"),
            ("upgrade", "keel-console")
        ])));
    }
}
