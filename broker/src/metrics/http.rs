//! The Prometheus scrape endpoint (`broker serve --metrics-listen HOST:PORT`, real world only):
//! HTTP/1.1 served by hyper. `GET /metrics` answers the text format; any other path is 404, any
//! other method on `/metrics` 405. At most [`CONNECTIONS_MAX`] connections at once (more wait to
//! be accepted), a request head of at most [`HEAD_BYTES_MAX`] bytes arriving within
//! [`HEAD_READ_TIMEOUT_MS`]; request bodies are never read.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster::metadata::MetadataImage;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::scrape;
use crate::Broker;

/// Scrape connections served at once, at most.
pub const CONNECTIONS_MAX: usize = 16;
/// A request head (request line and headers), at most: hyper's smallest read buffer.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;
/// A request head must arrive within this.
pub const HEAD_READ_TIMEOUT_MS: u64 = 10_000;

type Reply = Response<Full<Bytes>>;

/// What a scrape reads besides the broker: this node's controller image (combined mode).
pub type Image = Option<watch::Receiver<Arc<MetadataImage>>>;

/// Serves scrapes on `listener` until `shutdown` changes.
pub async fn run(
    broker: Arc<Broker>,
    image: Image,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            a = accept(&listener, &slots) => a,
        };
        let Some((stream, peer, permit)) = accepted else { continue };
        let (b, image) = (broker.clone(), image.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (b, image) = (b.clone(), image.clone());
                async move { Ok::<_, std::convert::Infallible>(answer(&b, image.as_ref(), &req).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(HEAD_READ_TIMEOUT_MS))
                .max_buf_size(HEAD_BYTES_MAX)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "metrics connection");
            }
            drop(permit);
        });
    }
}

type Accepted = (tokio::net::TcpStream, std::net::SocketAddr, tokio::sync::OwnedSemaphorePermit);

/// A connection and its slot; `None` after an accept error (logged, then a short pause).
async fn accept(listener: &TcpListener, slots: &Arc<Semaphore>) -> Option<Accepted> {
    let permit = slots.clone().acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, permit)),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: accept failed");
            tokio::time::sleep(Duration::from_millis(10)).await;
            None
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    r
}

async fn answer(
    broker: &Broker,
    image: Option<&watch::Receiver<Arc<MetadataImage>>>,
    req: &Request<Incoming>,
) -> Reply {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, TEXT, "not found: metrics are at /metrics\n".into());
    }
    if req.method() != Method::GET {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n".into());
        r.headers_mut().insert(ALLOW, hyper::header::HeaderValue::from_static("GET"));
        return r;
    }
    let gauges = scrape::gather(broker, image).await;
    match scrape::encode(broker.metrics.snapshot(), gauges) {
        Ok(body) => reply(StatusCode::OK, scrape::CONTENT_TYPE, body),
        Err(e) => {
            tracing::error!(error = %e, "metrics: encoding failed");
            reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, "encoding failed\n".into())
        }
    }
}
