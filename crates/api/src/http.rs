//! HTTP plumbing shared by the handlers: building responses, reading bounded request bodies,
//! and running a [`VmApi`] call off the async thread.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::ErrorBody;
use crate::vm_api::{ApiError, VmApi};

pub(crate) type Body = Full<Bytes>;

pub(crate) const JSON: &str = "application/json";
pub(crate) const PROMETHEUS: &str = "text/plain; version=0.0.4";

pub(crate) fn with_body(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}

pub(crate) fn json<T: Serialize>(value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(StatusCode::OK, JSON, body),
        Err(e) => error(&ApiError::internal(format!("could not encode the response: {e}"))),
    }
}

pub(crate) fn no_content() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

pub(crate) fn error(err: &ApiError) -> Response<Body> {
    let status =
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody { fault_message: err.message.clone() };
    // Encoding a struct of one String cannot fail; fall back to an empty object regardless.
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = with_body(status, JSON, bytes);
    // After a 408 or 413 the rest of the request body is still on the wire; closing is the
    // only way not to read it as the next request.
    if matches!(status, StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE) {
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Reads the whole request body, refusing more than `limit` bytes (413) and a body that does
/// not arrive within `timeout` (408, so that a client trickling a body cannot hold a
/// connection forever).
pub(crate) async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let too_large =
        || ApiError::new(413, format!("the request body is larger than the {limit}-byte limit"));
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    if declared.and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(req.into_body(), limit);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            408,
            format!("the request body did not arrive within {} ms", timeout.as_millis()),
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad_request(format!("could not read the request body: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Parses a JSON request body, with a 400 that names the route and serde's account of what
/// was wrong (unknown field, wrong type, bad syntax, with line and column).
pub(crate) fn parse_json<T: DeserializeOwned>(route: &str, body: &[u8]) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::bad_request(format!(
                "{route} needs a JSON body; see openapi.yaml for its fields"
            )))
        }
        // serde would also take a struct as an array of its fields; the API speaks objects.
        Some(b'[') => {
            return Err(ApiError::bad_request(format!(
                "invalid JSON body for {route}: expected an object, found an array"
            )))
        }
        Some(_) => {}
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body for {route}: {e}")))
}

/// Runs `f` on the blocking pool so that a slow VMM call (Stop waits for the guest) holds up
/// no other request. A panic in `f` becomes a 500.
pub(crate) async fn blocking<T, F>(api: &Arc<dyn VmApi>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn VmApi) -> Result<T, ApiError> + Send + 'static,
{
    let api = Arc::clone(api);
    match tokio::task::spawn_blocking(move || f(&*api)).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(ApiError::internal(format!(
            "the VMM panicked while handling the request: {}; see keel.log",
            panic_text(e.into_panic().as_ref())
        ))),
        Err(_) => Err(ApiError::internal("the request was cancelled: the API server is stopping")),
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
