//! One connection to a broker: Kafka framing, request headers, correlation ids, pipelining and
//! ApiVersions negotiation.
//!
//! - A frame is a 4-byte big-endian size followed by that many bytes. Requests carry header v1
//!   (non-flexible APIs) or v2 (flexible) with the client id; responses header v0 or v1. The size
//!   of every response frame is checked against `max_response_bytes` before anything is allocated.
//! - Requests are pipelined: up to `max_in_flight` wait for responses at once (a semaphore whose
//!   permits travel with the pending request), responses are matched by correlation id by one reader
//!   task. A Produce with `acks=0` expects no response and holds no permit.
//! - At connect, ApiVersions (v3, falling back to the version the broker names, KIP-511) learns the
//!   broker's ranges; each API is then used at the highest version both sides speak.
//!
//! Runtime-agnostic: tokio (madsim-tokio) tasks, sync and time only; bytes go through the
//! `net_model` transport handed in. No unbiased `select!`.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use net_model::{Chunk, ChunkWriter, CostHook, Reader, RealCpu, Work};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use crate::errors::{self, ErrorCode};

/// The API versions this client speaks. Upper bounds stop before versions that address topics by
/// id only (Produce 13, Fetch 13+, DeleteTopics 6), which this client does not track.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::InitProducerId, 0, 4),
    // Consumer groups (client/src/group). OffsetFetch stops at 7: v8 batches groups.
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
];

/// The CPU model's codec of the first batch in `data`, if it is compressed (`None` for
/// uncompressed data, an empty buffer or a header too short to tell).
pub fn first_batch_codec(data: &[u8]) -> Option<net_model::Codec> {
    let header = records::BatchHeader::parse(data).ok()?;
    match header.compression().ok()? {
        records::Compression::None => None,
        records::Compression::Gzip => Some(net_model::Codec::Gzip),
        records::Compression::Snappy => Some(net_model::Codec::Snappy),
        records::Compression::Lz4 => Some(net_model::Codec::Lz4),
        records::Compression::Zstd => Some(net_model::Codec::Zstd),
    }
}

/// Kafka's default `socket.request.max.bytes`, used as the default response bound.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 100 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ConnConfig {
    pub client_id: String,
    /// `request.timeout.ms`.
    pub request_timeout: Duration,
    /// `max.in.flight.requests.per.connection`.
    pub max_in_flight: usize,
    /// Response frames larger than this are refused before allocating (the connection closes).
    pub max_response_bytes: usize,
    /// Bound on connecting plus ApiVersions.
    pub connect_timeout: Duration,
    /// The CPU seam: charged once per request sent (a no-op on real hardware, the client
    /// host's core pool in the simulator).
    pub cost: Arc<dyn CostHook>,
}

impl Default for ConnConfig {
    fn default() -> Self {
        Self {
            client_id: "loglab".into(),
            request_timeout: Duration::from_millis(30_000),
            max_in_flight: 5,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            connect_timeout: Duration::from_millis(10_000),
            cost: Arc::new(RealCpu),
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConnError {
    #[error("connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to {peer} closed: {reason}")]
    Closed { peer: String, reason: String },
    #[error("{api} request to {peer} timed out after {ms} ms")]
    Timeout { api: &'static str, peer: String, ms: u64 },
    #[error("encoding {api} v{version}: {reason}")]
    Encode { api: &'static str, version: i16, reason: String },
    #[error("decoding {api} v{version} response from {peer}: {reason}")]
    Decode { api: &'static str, version: i16, peer: String, reason: String },
    #[error("{peer} does not support {api} in versions {min}..={max}")]
    UnsupportedVersion { api: &'static str, peer: String, min: i16, max: i16 },
    #[error("ApiVersions to {peer} failed: {code_name}")]
    ApiVersions { peer: String, code_name: &'static str },
}

impl ConnError {
    /// Transport-level failures after which the request may be retried on a new connection.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ConnError::Connect { .. } | ConnError::Closed { .. } | ConnError::Timeout { .. }
        )
    }
}

pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        _ => "Other",
    }
}

struct Waiter {
    tx: oneshot::Sender<Result<Bytes, ConnError>>,
    _permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct Pending {
    waiters: BTreeMap<i32, Waiter>,
    /// Set once the connection is unusable; later requests fail with this reason.
    closed: Option<String>,
}

struct Shared {
    pending: Mutex<Pending>,
    shutdown: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail_all(&self, reason: String, peer: &str) {
        let waiters = {
            let mut p = self.lock();
            if p.closed.is_none() {
                p.closed = Some(reason.clone());
            }
            std::mem::take(&mut p.waiters)
        };
        for (_, w) in waiters {
            let _ = w
                .tx
                .send(Err(ConnError::Closed { peer: peer.to_string(), reason: reason.clone() }));
        }
    }
}

struct WriteState {
    writer: Box<dyn ChunkWriter>,
    next_correlation_id: i32,
}

/// A negotiated connection to one broker. Cheap to share (`Arc<Conn>`); every method takes `&self`.
pub struct Conn {
    peer: String,
    cfg: ConnConfig,
    shared: Arc<Shared>,
    write: tokio::sync::Mutex<WriteState>,
    inflight: Arc<Semaphore>,
    /// API key → (min, max) usable with this broker.
    versions: Mutex<BTreeMap<i16, (i16, i16)>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("peer", &self.peer).finish()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.shutdown.notify_one();
    }
}

/// Reads one frame (size prefix excluded). `Ok(None)` at a clean end of stream.
pub async fn read_frame(reader: &mut Reader, max_bytes: usize) -> Result<Option<Bytes>, String> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let size = i32::from_be_bytes(len);
    let size = usize::try_from(size).map_err(|_| format!("negative frame size {size}"))?;
    if size < 4 {
        return Err(format!("frame of {size} bytes is shorter than a response header"));
    }
    if size > max_bytes {
        return Err(format!(
            "response frame of {size} bytes exceeds the limit of {max_bytes} bytes"
        ));
    }
    match net_model::read_frame_body(reader, size).await {
        Ok(Some(buf)) => Ok(Some(buf.freeze())),
        Ok(None) => Err(format!("reading a {size}-byte frame: early eof")),
        Err(e) => Err(format!("reading a {size}-byte frame: {e}")),
    }
}

async fn read_loop(mut reader: Reader, shared: Arc<Shared>, max_bytes: usize, peer: String) {
    let reason = loop {
        let frame = tokio::select! {
            biased;
            _ = shared.shutdown.notified() => break "connection dropped by the client".to_string(),
            r = read_frame(&mut reader, max_bytes) => r,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break "end of stream".to_string(),
            Err(e) => break e,
        };
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let waiter = shared.lock().waiters.remove(&correlation_id);
        match waiter {
            Some(w) => {
                let _ = w.tx.send(Ok(frame));
            }
            None => {
                break format!("response with unknown correlation id {correlation_id}");
            }
        }
    };
    tracing::debug!(%peer, %reason, "connection reader stopped");
    shared.fail_all(reason, &peer);
}

fn encode_frame<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &R,
) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let header_version = key.request_header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| body.compute_size(version).map(|b| h + b))
        .map_err(|e| e.to_string())?;
    let size_i32 = i32::try_from(size).map_err(|_| format!("request of {size} bytes"))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size_i32);
    header.encode(&mut buf, header_version).map_err(|e| e.to_string())?;
    body.encode(&mut buf, version).map_err(|e| e.to_string())?;
    if buf.len() != 4 + size {
        return Err(format!("encoded {} bytes, computed {}", buf.len() - 4, size));
    }
    Ok(buf.freeze())
}

/// Picks the highest version in both ranges.
pub fn negotiate(ours: (i16, i16), theirs: (i16, i16)) -> Option<(i16, i16)> {
    let lo = ours.0.max(theirs.0);
    let hi = ours.1.min(theirs.1);
    (lo <= hi).then_some((lo, hi))
}

impl Conn {
    /// Wraps a transport connection: starts the reader task and negotiates versions.
    pub async fn establish(
        conn: net_model::Connection,
        cfg: ConnConfig,
    ) -> Result<Arc<Conn>, ConnError> {
        let peer = conn.peer.clone();
        let shared =
            Arc::new(Shared { pending: Mutex::new(Pending::default()), shutdown: Notify::new() });
        tokio::spawn(read_loop(
            conn.reader,
            Arc::clone(&shared),
            cfg.max_response_bytes,
            peer.clone(),
        ));
        let c = Arc::new(Conn {
            peer,
            inflight: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            cfg,
            shared,
            write: tokio::sync::Mutex::new(WriteState {
                writer: conn.writer,
                next_correlation_id: 0,
            }),
            versions: Mutex::new(BTreeMap::new()),
        });
        let timeout = c.cfg.connect_timeout;
        match tokio::time::timeout(timeout, c.negotiate_versions()).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ConnError::Timeout {
                    api: "ApiVersions",
                    peer: c.peer.clone(),
                    ms: timeout.as_millis() as u64,
                })
            }
        }
        Ok(c)
    }

    /// Connects through `net` to `addr` and negotiates (bounded by `connect_timeout`).
    pub async fn connect(
        net: &dyn net_model::Network,
        addr: &str,
        cfg: ConnConfig,
    ) -> Result<Arc<Conn>, ConnError> {
        let conn = match tokio::time::timeout(cfg.connect_timeout, net.connect(addr)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(ConnError::Connect { addr: addr.to_string(), reason: e.to_string() })
            }
            Err(_) => {
                return Err(ConnError::Connect {
                    addr: addr.to_string(),
                    reason: format!("timed out after {} ms", cfg.connect_timeout.as_millis()),
                })
            }
        };
        Self::establish(conn, cfg).await
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// False once the connection failed or was closed.
    /// The CPU seam this connection charges (see [`ConnConfig::cost`]).
    pub fn cost_hook(&self) -> &Arc<dyn CostHook> {
        &self.cfg.cost
    }

    pub fn is_open(&self) -> bool {
        self.shared.lock().closed.is_none()
    }

    /// The version range usable for `key` with this broker, if any.
    pub fn versions(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner()).get(&(key as i16)).copied()
    }

    /// The version this client uses for `key` with this broker (the highest both speak).
    pub fn version(&self, key: ApiKey) -> Result<i16, ConnError> {
        self.versions(key).map(|(_, hi)| hi).ok_or_else(|| {
            let (min, max) = CLIENT_VERSIONS
                .iter()
                .find(|(k, _, _)| *k == key)
                .map(|(_, lo, hi)| (*lo, *hi))
                .unwrap_or((0, -1));
            ConnError::UnsupportedVersion { api: api_name(key), peer: self.peer.clone(), min, max }
        })
    }

    async fn negotiate_versions(&self) -> Result<(), ConnError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("loglab-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = 3;
        for _ in 0..2 {
            let frame = self
                .send_frame(ApiKey::ApiVersions, version, &req, true)
                .await?
                .ok_or_else(|| self.closed_error("no ApiVersions response"))?;
            let frame = self.await_frame(ApiKey::ApiVersions, frame).await?;
            // ApiVersions responses always use header v0 (the KIP-511 fallback answers in v0).
            let mut body = frame.slice(4..);
            let parsed = ApiVersionsResponse::decode(&mut body, version).ok();
            let resp = match parsed {
                Some(r) if r.error_code != ErrorCode::UNSUPPORTED_VERSION => r,
                _ => {
                    let mut body = frame.slice(4..);
                    let v0 = ApiVersionsResponse::decode(&mut body, 0).map_err(|e| {
                        ConnError::Decode {
                            api: "ApiVersions",
                            version: 0,
                            peer: self.peer.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    if v0.error_code == ErrorCode::UNSUPPORTED_VERSION {
                        let theirs = v0
                            .api_keys
                            .iter()
                            .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                            .map(|k| k.max_version)
                            .unwrap_or(0);
                        let next = theirs.clamp(0, 3);
                        if next < version {
                            version = next;
                            continue;
                        }
                    }
                    v0
                }
            };
            if resp.error_code != ErrorCode::NONE {
                return Err(ConnError::ApiVersions {
                    peer: self.peer.clone(),
                    code_name: errors::error_name(resp.error_code),
                });
            }
            let mut map = BTreeMap::new();
            for k in &resp.api_keys {
                if let Some((key, lo, hi)) =
                    CLIENT_VERSIONS.iter().find(|(c, _, _)| *c as i16 == k.api_key)
                {
                    if let Some(range) = negotiate((*lo, *hi), (k.min_version, k.max_version)) {
                        map.insert(*key as i16, range);
                    }
                }
            }
            *self.versions.lock().unwrap_or_else(|e| e.into_inner()) = map;
            return Ok(());
        }
        Err(ConnError::ApiVersions { peer: self.peer.clone(), code_name: "UNSUPPORTED_VERSION" })
    }

    fn closed_error(&self, fallback: &str) -> ConnError {
        let reason = self.shared.lock().closed.clone().unwrap_or_else(|| fallback.to_string());
        ConnError::Closed { peer: self.peer.clone(), reason }
    }

    /// Writes one request. With `expect_response`, waits for an in-flight permit first and returns
    /// the receiver of the response frame.
    async fn send_frame<R: Encodable>(
        &self,
        key: ApiKey,
        version: i16,
        body: &R,
        expect_response: bool,
    ) -> Result<Option<oneshot::Receiver<Result<Bytes, ConnError>>>, ConnError> {
        let permit = if expect_response {
            let p = Arc::clone(&self.inflight)
                .acquire_owned()
                .await
                .map_err(|_| self.closed_error("closed"))?;
            Some(p)
        } else {
            None
        };
        let mut w = self.write.lock().await;
        let correlation_id = w.next_correlation_id;
        w.next_correlation_id = w.next_correlation_id.wrapping_add(1);
        let frame = encode_frame(key, version, correlation_id, &self.cfg.client_id, body)
            .map_err(|reason| ConnError::Encode { api: api_name(key), version, reason })?;
        // Per-request client CPU (encode, syscalls): what batching amortizes on this side too.
        self.cfg.cost.spend(Work::ClientRequest, frame.len() as u64).await;
        let rx = {
            let mut p = self.shared.lock();
            if let Some(reason) = &p.closed {
                return Err(ConnError::Closed { peer: self.peer.clone(), reason: reason.clone() });
            }
            match permit {
                Some(permit) => {
                    let (tx, rx) = oneshot::channel();
                    p.waiters.insert(correlation_id, Waiter { tx, _permit: permit });
                    Some(rx)
                }
                None => None,
            }
        };
        if let Err(e) = w.writer.write_chunks(&[Chunk::Bytes(frame)]).await {
            drop(w);
            let reason = format!("write failed: {e}");
            self.shared.fail_all(reason.clone(), &self.peer);
            self.shared.shutdown.notify_one();
            return Err(ConnError::Closed { peer: self.peer.clone(), reason });
        }
        Ok(rx)
    }

    async fn await_frame(
        &self,
        key: ApiKey,
        rx: oneshot::Receiver<Result<Bytes, ConnError>>,
    ) -> Result<Bytes, ConnError> {
        match tokio::time::timeout(self.cfg.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.closed_error("reader stopped")),
            Err(_) => {
                // Like Kafka's NetworkClient: a request timeout closes the connection, so the
                // late response cannot be confused with anything.
                let reason = format!("{} request timed out", api_name(key));
                self.shared.fail_all(reason, &self.peer);
                self.shared.shutdown.notify_one();
                Err(ConnError::Timeout {
                    api: api_name(key),
                    peer: self.peer.clone(),
                    ms: self.cfg.request_timeout.as_millis() as u64,
                })
            }
        }
    }

    /// Sends `req` at the negotiated version and waits for its response.
    pub async fn request<R: Request>(&self, req: &R) -> Result<R::Response, ConnError> {
        let key = api_key::<R>()?;
        let version = self.version(key)?;
        self.request_at(req, version).await
    }

    /// Sends `req` at an explicit version and waits for its response.
    pub async fn request_at<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ConnError> {
        let key = api_key::<R>()?;
        let rx = self
            .send_frame(key, version, req, true)
            .await?
            .ok_or_else(|| self.closed_error("no response channel"))?;
        let frame = self.await_frame(key, rx).await?;
        decode_response::<R>(key, version, frame, &self.peer)
    }

    /// Writes `req` now (so requests started in order go on the wire in order) and returns a
    /// handle to wait for its response.
    pub async fn start<R: Request>(
        self: &Arc<Self>,
        req: &R,
    ) -> Result<PendingResponse<R>, ConnError> {
        let key = api_key::<R>()?;
        let version = self.version(key)?;
        let rx = self
            .send_frame(key, version, req, true)
            .await?
            .ok_or_else(|| self.closed_error("no response channel"))?;
        Ok(PendingResponse {
            conn: Arc::clone(self),
            key,
            version,
            rx,
            _req: std::marker::PhantomData,
        })
    }

    /// Sends a request that gets no response (Produce with `acks=0`); returns once written.
    pub async fn send_only<R: Request>(&self, req: &R) -> Result<(), ConnError> {
        let key = api_key::<R>()?;
        let version = self.version(key)?;
        self.send_frame(key, version, req, false).await?;
        Ok(())
    }

    /// Closes the connection: pending requests fail, the reader stops.
    pub async fn close(&self) {
        self.shared.fail_all("closed by the client".into(), &self.peer);
        self.shared.shutdown.notify_one();
        let mut w = self.write.lock().await;
        let _ = w.writer.shutdown().await;
    }
}

/// A request on the wire, waiting for its response (from [`Conn::start`]).
pub struct PendingResponse<R: Request> {
    conn: Arc<Conn>,
    key: ApiKey,
    version: i16,
    rx: oneshot::Receiver<Result<Bytes, ConnError>>,
    _req: std::marker::PhantomData<fn() -> R>,
}

impl<R: Request> PendingResponse<R> {
    pub async fn wait(self) -> Result<R::Response, ConnError> {
        let frame = self.conn.await_frame(self.key, self.rx).await?;
        decode_response::<R>(self.key, self.version, frame, &self.conn.peer)
    }
}

fn api_key<R: Request>() -> Result<ApiKey, ConnError> {
    ApiKey::try_from(R::KEY).map_err(|_| ConnError::Encode {
        api: "Other",
        version: -1,
        reason: format!("unknown api key {}", R::KEY),
    })
}

fn decode_response<R: Request>(
    key: ApiKey,
    version: i16,
    frame: Bytes,
    peer: &str,
) -> Result<R::Response, ConnError> {
    let err = |reason: String| ConnError::Decode {
        api: api_name(key),
        version,
        peer: peer.to_string(),
        reason,
    };
    let mut buf = frame;
    let header_version = key.response_header_version(version);
    ResponseHeader::decode(&mut buf, header_version).map_err(|e| err(e.to_string()))?;
    let resp = R::Response::decode(&mut buf, version).map_err(|e| err(e.to_string()))?;
    if !buf.is_empty() {
        return Err(err(format!("{} bytes after the response body", buf.len())));
    }
    Ok(resp)
}

/// A [`ChunkWriter`] over any `AsyncWrite` (an in-memory duplex in tests, a simulated stream):
/// byte chunks only — a client never sends file regions.
pub struct StreamWriter<W> {
    inner: W,
}

impl<W> StreamWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl<W: AsyncWrite + Send + Unpin> ChunkWriter for StreamWriter<W> {
    async fn write_chunks(&mut self, chunks: &[Chunk]) -> io::Result<()> {
        for c in chunks {
            match c {
                Chunk::Bytes(b) => self.inner.write_all(b).await?,
                Chunk::File(r) => {
                    let b = r.read().await?;
                    self.inner.write_all(&b).await?;
                }
            }
        }
        self.inner.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.inner.shutdown().await
    }
}
