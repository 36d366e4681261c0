//! One client connection: read a frame, handle it, write the response, in order — Kafka's
//! one-request-in-flight-per-connection semantics. Frames above `socket.request.max.bytes` are
//! refused from their 4-byte length alone, before any allocation. A connection with no request
//! for `connections.max.idle.ms` is closed, and so is one whose frame, once begun, does not
//! complete within `loglab.frame.read.timeout.ms` (tokio time: virtual in the simulator).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use net_model::Connection;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::broker::{Broker, Outcome};
use crate::metrics::Metrics;

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    /// The peer closed cleanly between requests.
    PeerClosed,
    /// The broker is shutting down.
    Shutdown,
    /// The admin API reset it (connection faults).
    Reset,
    /// Bad input; the reason is logged.
    BadInput(String),
    /// No request for `connections.max.idle.ms`.
    Idle,
    /// A frame began but did not complete within `loglab.frame.read.timeout.ms`.
    SlowFrame,
    Io(io::Error),
}

/// Reads one frame: `Ok(None)` on a clean EOF before the length prefix.
pub async fn read_frame(
    reader: &mut net_model::Reader,
    max_bytes: i32,
) -> Result<Option<Bytes>, End> {
    read_frame_after(reader, [0u8; 4], 0, max_bytes).await
}

/// [`read_frame`] when the first `got` bytes of the length prefix are in `len_buf` already.
async fn read_frame_after(
    reader: &mut net_model::Reader,
    mut len_buf: [u8; 4],
    mut got: usize,
    max_bytes: i32,
) -> Result<Option<Bytes>, End> {
    while got < 4 {
        match reader.read(&mut len_buf[got..]).await {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(End::BadInput("connection closed inside a frame length".into())),
            Ok(n) => got += n,
            Err(e) => return Err(End::Io(e)),
        }
    }
    let len = i32::from_be_bytes(len_buf);
    if len < 0 {
        return Err(End::BadInput(format!("negative frame length {len}")));
    }
    if len > max_bytes {
        return Err(End::BadInput(format!(
            "frame of {len} bytes exceeds socket.request.max.bytes {max_bytes}"
        )));
    }
    // Each frame gets its own allocation (grown as its bytes arrive: `read_frame_body`), so a
    // produce's record set is the only owner of its bytes once the request is decoded and can
    // be appended without a copy.
    let len = len as usize;
    match net_model::read_frame_body(reader, len).await.map_err(End::Io)? {
        Some(frame) => Ok(Some(frame.freeze())),
        None => Err(End::BadInput(format!("connection closed inside a {len}-byte frame"))),
    }
}

/// Reads one frame under the connection limits: the first byte may take up to `idle`, the rest
/// of the frame up to `frame`. `Ok(None)` on a clean EOF before the frame.
async fn read_frame_within(
    reader: &mut net_model::Reader,
    max_bytes: i32,
    idle: Duration,
    frame: Duration,
) -> Result<Option<Bytes>, End> {
    let mut len_buf = [0u8; 4];
    let got = match tokio::time::timeout(idle, reader.read(&mut len_buf)).await {
        Err(_) => return Err(End::Idle),
        Ok(Err(e)) => return Err(End::Io(e)),
        Ok(Ok(0)) => return Ok(None),
        Ok(Ok(n)) => n,
    };
    match tokio::time::timeout(frame, read_frame_after(reader, len_buf, got, max_bytes)).await {
        Err(_) => Err(End::SlowFrame),
        Ok(r) => r,
    }
}

/// Serves one connection until the peer leaves, bad input, or shutdown.
pub async fn serve(
    broker: Arc<Broker>,
    mut conn: Connection,
    mut shutdown: watch::Receiver<bool>,
) -> End {
    let max = broker.config.socket_request_max_bytes;
    let limits = &broker.config.limits;
    let idle = Duration::from_millis(limits.connections_max_idle_ms);
    let frame_timeout = Duration::from_millis(limits.frame_read_timeout_ms);
    let peer = conn.peer.clone();
    let mut faults = broker.connections.register(&peer);
    let end = loop {
        if *shutdown.borrow() {
            break End::Shutdown;
        }
        let frame = tokio::select! {
            biased;
            _ = shutdown.changed() => break End::Shutdown,
            _ = faults.killed() => {
                faults.linger().await;
                break End::Reset;
            }
            f = read_frame_within(&mut conn.reader, max, idle, frame_timeout) => f,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break End::PeerClosed,
            Err(e) => break e,
        };
        if faults.gate(Some(&frame[..])).await.is_err() {
            break End::Reset;
        }
        match broker.handle(frame).await {
            Outcome::Respond(chunks) => {
                if faults.gate(None).await.is_err() {
                    break End::Reset;
                }
                if let Err(e) = conn.writer.write_chunks(&chunks).await {
                    break End::Io(e);
                }
            }
            Outcome::NoResponse => {}
            Outcome::Close(why) => break End::BadInput(why),
        }
    };
    match &end {
        End::BadInput(why) => {
            Metrics::add(&broker.metrics.connections_closed_bad_input, 1);
            tracing::warn!(%peer, reason = %why, "closing connection: bad input");
        }
        End::Io(e) => tracing::debug!(%peer, error = %e, "connection error"),
        End::Idle => {
            tracing::info!(%peer, idle_ms = idle.as_millis() as u64, "closing idle connection (connections.max.idle.ms)")
        }
        End::SlowFrame => {
            Metrics::add(&broker.metrics.connections_closed_bad_input, 1);
            tracing::warn!(%peer, timeout_ms = frame_timeout.as_millis() as u64, "closing connection: request frame incomplete (loglab.frame.read.timeout.ms)");
        }
        _ => {}
    }
    let _ = conn.writer.shutdown().await;
    end
}
