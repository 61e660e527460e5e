//! Turns one HTTP request into one response: route lookup, query and body checks, and the
//! [`VmApi`](crate::VmApi) call.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONNECTION};
use hyper::{Request, Response, StatusCode};

use crate::http::{self, Body};
use crate::routes::{lookup, Lookup, Operation};
use crate::server::Shared;
use crate::types::{
    ActionRequest, ActionType, BalloonConfig, BalloonUpdate, MigrateParams, RequestedState,
    SnapshotCreateParams, SnapshotLoadParams, VmStateRequest, DEFAULT_STOP_TIMEOUT_MS,
};
use crate::vm_api::ApiError;

/// The hyper service function: never fails, every problem is an HTTP error response.
///
/// The request body is read in full before any answer, refusals included: answering early
/// and leaving a body on the wire makes hyper close the connection, and a client (or a proxy
/// such as socat) still sending that body sees the connection die without its response.
pub(crate) async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let found = lookup(&method, &path);
    if let Lookup::Found(Operation::Console) = found {
        return Ok(crate::console::upgrade(req, &shared).await.unwrap_or_else(|e| http::error(&e)));
    }
    let query = req.uri().query().map(str::to_owned);
    let cfg = &shared.config;
    let body = http::read_body(req, cfg.max_body_bytes, cfg.body_read_timeout).await;
    let op = match found {
        Lookup::Found(op) => op,
        Lookup::NotFound => {
            let msg = format!("there is no route {path}; openapi.yaml lists the routes");
            return Ok(refusal(ApiError::new(404, msg), &body));
        }
        Lookup::WrongMethod(allowed) => {
            let allowed = allowed.join(", ");
            let msg = format!("{method} is not allowed on {path}; it takes {allowed}");
            let mut resp = refusal(ApiError::new(405, msg), &body);
            if let Ok(v) = HeaderValue::from_str(&allowed) {
                resp.headers_mut().insert(ALLOW, v);
            }
            return Ok(resp);
        }
    };
    let route = format!("{method} {path}");
    let result = match (check_query(op, query.as_deref()), body) {
        (Err(e), body) => return Ok(refusal(e, &body)),
        (Ok(_), Err(e)) => Err(e),
        (Ok(format), Ok(bytes)) => dispatch(op, &route, format, &bytes, &shared).await,
    };
    Ok(result.unwrap_or_else(|e| http::error(&e)))
}

/// The answer to a request refused before its body mattered. If the body itself could not be
/// read (too large, too slow), the rest of it may still be on the wire: close the connection.
fn refusal(err: ApiError, body: &Result<Bytes, ApiError>) -> Response<Body> {
    let mut resp = http::error(&err);
    if body.is_err() {
        resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The output format `GET /metrics` was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Prometheus,
}

/// Only `GET /metrics` takes a query parameter (`format`); any other is refused, as unknown
/// body fields are, rather than ignored.
fn check_query(op: Operation, query: Option<&str>) -> Result<Format, ApiError> {
    let mut format = Format::Json;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (op, key, value) {
            (Operation::Metrics, "format", "json") => format = Format::Json,
            (Operation::Metrics, "format", "prometheus") => format = Format::Prometheus,
            (Operation::Metrics, "format", _) => {
                return Err(ApiError::bad_request(format!(
                    "unknown metrics format {value:?}; use format=json or format=prometheus"
                )))
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {key:?}; only GET /metrics takes one (format)"
                )))
            }
        }
    }
    Ok(format)
}

async fn dispatch(
    op: Operation,
    route: &str,
    format: Format,
    body: &[u8],
    shared: &Shared,
) -> Result<Response<Body>, ApiError> {
    let api = &shared.api;
    match op {
        Operation::Info => Ok(http::json(&http::blocking(api, |a| a.info()).await?)),
        Operation::Actions => {
            let action: ActionRequest = http::parse_json(route, body)?;
            let timeout_ms = match (action.action_type, action.timeout_ms) {
                (ActionType::Stop, t) => t.unwrap_or(DEFAULT_STOP_TIMEOUT_MS),
                (_, None) => 0,
                (other, Some(_)) => {
                    return Err(ApiError::bad_request(format!(
                        "timeout_ms applies only to Stop, not to {other:?}; leave it out"
                    )))
                }
            };
            http::blocking(api, move |a| match action.action_type {
                ActionType::InstanceStart => a.instance_start(),
                ActionType::SendCtrlAltDel => a.send_ctrl_alt_del(),
                ActionType::Stop => a.stop(Duration::from_millis(timeout_ms)),
                ActionType::Reset => a.reset(),
                ActionType::FlushMetrics => a.flush_metrics(),
            })
            .await?;
            Ok(http::no_content())
        }
        Operation::PatchVm => {
            let request: VmStateRequest = http::parse_json(route, body)?;
            http::blocking(api, move |a| match request.state {
                RequestedState::Paused => a.pause(),
                RequestedState::Resumed => a.resume(),
            })
            .await?;
            Ok(http::no_content())
        }
        Operation::VmConfig => Ok(http::json(&http::blocking(api, |a| a.vm_config()).await?)),
        Operation::GetBalloon => Ok(http::json(&http::blocking(api, |a| a.balloon()).await?)),
        Operation::PutBalloon => {
            let config: BalloonConfig = http::parse_json(route, body)?;
            http::blocking(api, move |a| a.put_balloon(config)).await?;
            Ok(http::no_content())
        }
        Operation::PatchBalloon => {
            let update: BalloonUpdate = http::parse_json(route, body)?;
            http::blocking(api, move |a| a.patch_balloon(update)).await?;
            Ok(http::no_content())
        }
        Operation::BalloonStatistics => {
            Ok(http::json(&http::blocking(api, |a| a.balloon_statistics()).await?))
        }
        Operation::Metrics => match format {
            Format::Json => Ok(http::json(&http::blocking(api, |a| a.metrics()).await?)),
            Format::Prometheus => {
                let text = http::blocking(api, |a| a.metrics_prometheus()).await?;
                Ok(http::with_body(StatusCode::OK, http::PROMETHEUS, text.into_bytes()))
            }
        },
        Operation::Console => Err(ApiError::internal("/console is served before dispatch")),
        Operation::CreateSnapshot => {
            let params: SnapshotCreateParams = http::parse_json(route, body)?;
            absolute(&params.snapshot_path)?;
            Ok(http::json(&http::blocking(api, move |a| a.create_snapshot(params)).await?))
        }
        Operation::LoadSnapshot => {
            let params: SnapshotLoadParams = http::parse_json(route, body)?;
            absolute(&params.snapshot_path)?;
            http::blocking(api, move |a| a.load_snapshot(params)).await?;
            Ok(http::no_content())
        }
        Operation::Migrate => {
            let params: MigrateParams = http::parse_json(route, body)?;
            Ok(http::json(&http::blocking(api, move |a| a.migrate(params)).await?))
        }
        Operation::Progress => Ok(http::json(&http::blocking(api, |a| a.progress()).await?)),
    }
}

/// Snapshot paths must be absolute: the VMM's working directory is nothing a client knows.
fn absolute(path: &str) -> Result<(), ApiError> {
    if std::path::Path::new(path).is_absolute() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "snapshot_path {path:?} is not absolute; give the directory's full path"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_metrics_takes_a_format() {
        assert_eq!(check_query(Operation::Metrics, None), Ok(Format::Json));
        assert_eq!(
            check_query(Operation::Metrics, Some("format=prometheus")),
            Ok(Format::Prometheus)
        );
        assert_eq!(check_query(Operation::Metrics, Some("format=json&")), Ok(Format::Json));
        assert_eq!(check_query(Operation::Metrics, Some("format=xml")).unwrap_err().status, 400);
        assert_eq!(check_query(Operation::Metrics, Some("verbose=1")).unwrap_err().status, 400);
        assert_eq!(check_query(Operation::Info, Some("format=json")).unwrap_err().status, 400);
        assert_eq!(check_query(Operation::Info, Some("")), Ok(Format::Json));
    }
}
