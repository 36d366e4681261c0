//! The admin control API (`broker serve --admin-listen 127.0.0.1:PORT`, real world only): fault
//! rules and connection faults over HTTP/1.1 with JSON bodies, for tests in any language.
//!
//! ```text
//! POST   /faults                  one rule or a list → {"ids": [..]}; a bad rule → 400 naming the field
//! GET    /faults                  the rules, each with its id, `matched` and `fired`
//! DELETE /faults                  clear → {"removed": N}
//! DELETE /faults/ID               one rule → {"removed": 1}, or 404
//! GET    /connections             the live client connections [{id, peer, client_id}]
//! POST   /connections/reset       {"client_id"?, "linger_ms"?} → {"reset": N}: close now, or
//!                                 after lingering silent for linger_ms (a slow close)
//! POST   /connections/half-open   {"ms", "client_id"?} → {"held": N}: open, nothing read or
//!                                 answered for ms
//! ```
//!
//! With `loglab.admin.token` set, every request must carry `Authorization: Bearer TOKEN` (else
//! 401). Bodies are at most [`BODY_BYTES_MAX`]; at most [`CONNECTIONS_MAX`] admin connections at
//! once. [`cli`] is `broker faults push|list|clear`, its client.

pub mod cli;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::faults::RuleSpec;
use crate::Broker;

/// A request body, at most (1 MiB).
pub const BODY_BYTES_MAX: usize = 1 << 20;
/// Admin connections served at once, at most; more wait to be accepted.
pub const CONNECTIONS_MAX: usize = 64;
/// A request's head must arrive within this.
const HEADER_READ_TIMEOUT_MS: u64 = 10_000;

type Reply = Response<Full<Bytes>>;

/// Where to bind: `PORT` alone (or `:PORT`) is loopback's.
pub fn bind_address(given: &str) -> String {
    let port = given.strip_prefix(':').unwrap_or(given);
    if port.chars().all(|c| c.is_ascii_digit()) {
        format!("127.0.0.1:{port}")
    } else {
        given.to_string()
    }
}

/// Serves the admin API on `listener` until the task is dropped.
pub async fn run(broker: Arc<Broker>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let b = broker.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let b = b.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&b, req).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "admin connection");
            }
            drop(permit);
        });
    }
}

fn reply(status: StatusCode, body: &Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, "application/json".parse().expect("a valid header"));
    r
}

fn refuse(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    reply(status, &json!({ "error": message.to_string() }))
}

/// Equal in time independent of where they differ (the token check).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(broker: &Broker, req: &Request<Incoming>) -> bool {
    let Some(token) = &broker.config.admin_token else { return true };
    let given = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
    let want = format!("Bearer {token}");
    constant_time_eq(given, want.as_bytes())
}

async fn answer(broker: &Broker, req: Request<Incoming>) -> Reply {
    if !authorized(broker, &req) {
        return refuse(StatusCode::UNAUTHORIZED, "a bearer token is required (loglab.admin.token)");
    }
    use hyper::body::Body as _;
    if req.body().size_hint().lower() > BODY_BYTES_MAX as u64 {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body: at most 1 MiB");
    }
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let body = match Limited::new(req.into_body(), BODY_BYTES_MAX).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("body: {e} (at most 1 MiB)"))
        }
    };
    let now_ms = crate::now_ms().max(0) as u64;
    let faults = &broker.faults;
    match (&method, path.as_str()) {
        (&Method::POST, "/faults") => push(broker, &body, now_ms),
        (&Method::GET, "/faults") => reply(StatusCode::OK, &json!(faults.rules())),
        (&Method::DELETE, "/faults") => reply(StatusCode::OK, &json!({"removed": faults.clear()})),
        (&Method::DELETE, p) if p.starts_with("/faults/") => remove(broker, &p[8..]),
        (&Method::GET, "/connections") => reply(StatusCode::OK, &json!(broker.connections.list())),
        (&Method::POST, "/connections/reset") => reset(broker, &body),
        (&Method::POST, "/connections/half-open") => half_open(broker, &body),
        (_, "/faults" | "/connections" | "/connections/reset" | "/connections/half-open") => {
            refuse(StatusCode::METHOD_NOT_ALLOWED, format!("{method} {path}"))
        }
        _ => refuse(StatusCode::NOT_FOUND, format!("no such endpoint: {method} {path}")),
    }
}

/// One rule (an object) or several (a list); all are installed or none.
fn push(broker: &Broker, body: &[u8], now_ms: u64) -> Reply {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    let (specs, many) = match value {
        Value::Array(items) => {
            let specs: Result<Vec<RuleSpec>, _> = items
                .into_iter()
                .enumerate()
                .map(|(i, v)| serde_json::from_value(v).map_err(|e| format!("rule {i}: {e}")))
                .collect();
            (specs, true)
        }
        v => (serde_json::from_value(v).map(|s| vec![s]).map_err(|e| e.to_string()), false),
    };
    let specs = match specs {
        Ok(s) => s,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    match broker.faults.install_all(specs, now_ms) {
        Ok(ids) => reply(StatusCode::OK, &json!({ "ids": ids })),
        Err((i, e)) if many => refuse(StatusCode::BAD_REQUEST, format!("rule {i}: {e}")),
        Err((_, e)) => refuse(StatusCode::BAD_REQUEST, e),
    }
}

fn remove(broker: &Broker, id: &str) -> Reply {
    match id.parse::<u64>() {
        Ok(id) if broker.faults.remove(id) => reply(StatusCode::OK, &json!({"removed": 1})),
        Ok(id) => refuse(StatusCode::NOT_FOUND, format!("no rule {id}")),
        Err(_) => refuse(StatusCode::NOT_FOUND, format!("`{id}` is not a rule id")),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnOrder {
    client_id: Option<String>,
    #[serde(default)]
    linger_ms: u64,
    ms: Option<u64>,
}

/// A connection order's body (empty: every connection, no linger).
fn order(body: &[u8]) -> Result<ConnOrder, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ConnOrder::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("body: {e}"))
}

fn reset(broker: &Broker, body: &[u8]) -> Reply {
    let o = match order(body) {
        Ok(o) => o,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    if o.ms.is_some() {
        return refuse(StatusCode::BAD_REQUEST, "`ms`: for half-open; a reset takes linger_ms");
    }
    let n = broker.connections.reset(o.client_id.as_deref(), o.linger_ms);
    reply(StatusCode::OK, &json!({ "reset": n }))
}

fn half_open(broker: &Broker, body: &[u8]) -> Reply {
    let o = match order(body) {
        Ok(o) => o,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let Some(ms) = o.ms else {
        return refuse(StatusCode::BAD_REQUEST, "`ms`: required (how long to hold)");
    };
    if ms > crate::faults::conns::HOLD_MS_MAX {
        let max = crate::faults::conns::HOLD_MS_MAX;
        return refuse(StatusCode::BAD_REQUEST, format!("`ms`: at most {max}"));
    }
    let n = broker.connections.hold(o.client_id.as_deref(), ms);
    reply(StatusCode::OK, &json!({ "held": n }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_and_bind_address() {
        assert!(constant_time_eq(b"Bearer s3cret", b"Bearer s3cret"));
        assert!(!constant_time_eq(b"Bearer s3cret", b"Bearer s3creT"));
        assert!(!constant_time_eq(b"Bearer s3cre", b"Bearer s3cret"));
        assert_eq!(bind_address("9405"), "127.0.0.1:9405");
        assert_eq!(bind_address(":9405"), "127.0.0.1:9405");
        assert_eq!(bind_address("0.0.0.0:9405"), "0.0.0.0:9405");
    }
}
