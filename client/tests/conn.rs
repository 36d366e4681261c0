//! The connection layer against an in-memory fake broker over `tokio::io::duplex` (both worlds):
//! framing, headers, ApiVersions negotiation and the KIP-511 fallback, pipelining and out-of-order
//! responses matched by correlation id, the in-flight limit, oversized frames, timeouts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use client::conn::{Conn, ConnConfig, ConnError, StreamWriter};
use client::errors::ErrorCode;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

type Rd = ReadHalf<DuplexStream>;
type Wr = WriteHalf<DuplexStream>;

async fn read_request(rd: &mut Rd) -> Option<(RequestHeader, Bytes)> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    rd.read_exact(&mut buf).await.ok()?;
    let mut b = Bytes::from(buf);
    let key = ApiKey::try_from(i16::from_be_bytes([b[0], b[1]])).ok()?;
    let version = i16::from_be_bytes([b[2], b[3]]);
    let header = RequestHeader::decode(&mut b, key.request_header_version(version)).ok()?;
    Some((header, b))
}

fn response<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    let hv = key.response_header_version(version);
    ResponseHeader::default().with_correlation_id(correlation_id).encode(&mut buf, hv).unwrap();
    body.encode(&mut buf, version).unwrap();
    let n = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&n.to_be_bytes());
    buf.freeze()
}

fn api_versions(max_api_versions: i16) -> ApiVersionsResponse {
    let keys = [
        (ApiKey::ApiVersions, 0, max_api_versions),
        (ApiKey::Metadata, 0, 12),
        (ApiKey::Produce, 0, 10),
        (ApiKey::Fetch, 4, 16),
    ];
    ApiVersionsResponse::default().with_api_keys(
        keys.iter()
            .map(|(k, lo, hi)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(*lo)
                    .with_max_version(*hi)
            })
            .collect(),
    )
}

/// Answers ApiVersions (KIP-511 style when the version is above `max_api_versions`).
async fn answer_api_versions(rd: &mut Rd, wr: &mut Wr, max_api_versions: i16) {
    loop {
        let (h, _) = read_request(rd).await.expect("ApiVersions");
        assert_eq!(h.request_api_key, ApiKey::ApiVersions as i16);
        assert_eq!(h.client_id.as_ref().map(|s| s.as_str()), Some("test-client"));
        if h.request_api_version > max_api_versions {
            let r = api_versions(max_api_versions)
                .with_error_code(ErrorCode::UNSUPPORTED_VERSION.code());
            wr.write_all(&response(ApiKey::ApiVersions, 0, h.correlation_id, &r)).await.unwrap();
            continue;
        }
        let r = api_versions(max_api_versions);
        wr.write_all(&response(ApiKey::ApiVersions, h.request_api_version, h.correlation_id, &r))
            .await
            .unwrap();
        return;
    }
}

fn cfg() -> ConnConfig {
    ConnConfig {
        client_id: "test-client".into(),
        request_timeout: Duration::from_millis(2_000),
        max_in_flight: 3,
        max_response_bytes: 1 << 20,
        connect_timeout: Duration::from_millis(2_000),
        ..ConnConfig::default()
    }
}

fn duplex_pair() -> (net_model::Connection, Rd, Wr) {
    let (client_side, server_side) = tokio::io::duplex(1 << 16);
    let (crd, cwr) = tokio::io::split(client_side);
    let (srd, swr) = tokio::io::split(server_side);
    let conn = net_model::Connection {
        reader: Box::new(crd),
        writer: Box::new(StreamWriter::new(cwr)),
        peer: "fake:9092".into(),
        local: "client".into(),
    };
    (conn, srd, swr)
}

fn metadata_with_broker(node: i32) -> MetadataResponse {
    MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
        .with_node_id(BrokerId(node))
        .with_host(StrBytes::from_static_str("h"))
        .with_port(1)])
}

#[tokio::test]
async fn negotiates_versions_with_kip511_fallback() {
    let (conn, mut rd, mut wr) = duplex_pair();
    let server = tokio::spawn(async move {
        answer_api_versions(&mut rd, &mut wr, 2).await;
        (rd, wr)
    });
    let c = Conn::establish(conn, cfg()).await.unwrap();
    server.await.unwrap();
    assert_eq!(c.version(ApiKey::Metadata).unwrap(), 12);
    assert_eq!(c.version(ApiKey::Produce).unwrap(), 10);
    assert_eq!(c.version(ApiKey::Fetch).unwrap(), 12, "capped below topic-id versions");
    assert_eq!(c.version(ApiKey::ApiVersions).unwrap(), 2);
    assert!(matches!(c.version(ApiKey::ListOffsets), Err(ConnError::UnsupportedVersion { .. })));
}

#[tokio::test]
async fn pipelined_requests_match_out_of_order_responses() {
    let (conn, mut rd, mut wr) = duplex_pair();
    let max_seen = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&max_seen);
    let server = tokio::spawn(async move {
        answer_api_versions(&mut rd, &mut wr, 3).await;
        let mut served = 0;
        while served < 9 {
            // Read three pipelined requests, then answer them in reverse order.
            let mut batch = Vec::new();
            for _ in 0..3 {
                let (h, _) = read_request(&mut rd).await.unwrap();
                assert_eq!(h.request_api_key, ApiKey::Metadata as i16);
                assert_eq!(h.request_api_version, 12);
                batch.push(h.correlation_id);
            }
            seen.fetch_max(batch.len(), Ordering::SeqCst);
            for id in batch.into_iter().rev() {
                let body = metadata_with_broker(id);
                wr.write_all(&response(ApiKey::Metadata, 12, id, &body)).await.unwrap();
            }
            served += 3;
        }
    });
    let c = Conn::establish(conn, cfg()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..9 {
        let c = Arc::clone(&c);
        tasks.push(tokio::spawn(
            async move { c.request(&MetadataRequest::default()).await.unwrap() },
        ));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        ids.push(r.brokers[0].node_id.0);
    }
    ids.sort();
    // Each response carried its own correlation id as the broker id: all distinct, all matched.
    assert_eq!(ids, (1..=9).collect::<Vec<_>>());
    server.await.unwrap();
    assert_eq!(max_seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn oversized_frames_close_the_connection_before_allocating() {
    let (conn, mut rd, mut wr) = duplex_pair();
    let server = tokio::spawn(async move {
        answer_api_versions(&mut rd, &mut wr, 3).await;
        let (h, _) = read_request(&mut rd).await.unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(i32::MAX); // 2 GiB claimed
        frame.put_i32(h.correlation_id);
        wr.write_all(&frame).await.unwrap();
        (rd, wr)
    });
    let c = Conn::establish(conn, cfg()).await.unwrap();
    let err = c.request(&MetadataRequest::default()).await.unwrap_err();
    match &err {
        ConnError::Closed { reason, .. } => assert!(reason.contains("exceeds the limit"), "{err}"),
        other => panic!("unexpected {other}"),
    }
    assert!(!c.is_open());
    let _ = server.await;
}

#[tokio::test]
async fn request_timeout_fails_and_closes() {
    let (conn, mut rd, mut wr) = duplex_pair();
    let server = tokio::spawn(async move {
        answer_api_versions(&mut rd, &mut wr, 3).await;
        let _ = read_request(&mut rd).await; // never answered
        tokio::time::sleep(Duration::from_secs(5)).await;
        (rd, wr)
    });
    let mut c = cfg();
    c.request_timeout = Duration::from_millis(200);
    let c = Conn::establish(conn, c).await.unwrap();
    let err = c.request(&MetadataRequest::default()).await.unwrap_err();
    assert!(matches!(err, ConnError::Timeout { .. }), "{err}");
    assert!(!c.is_open());
    server.abort();
}

#[tokio::test]
async fn peer_close_fails_pending_requests() {
    let (conn, mut rd, mut wr) = duplex_pair();
    let server = tokio::spawn(async move {
        answer_api_versions(&mut rd, &mut wr, 3).await;
        let _ = read_request(&mut rd).await;
        drop(rd);
        drop(wr);
    });
    let c = Conn::establish(conn, cfg()).await.unwrap();
    let err = c.request(&MetadataRequest::default()).await.unwrap_err();
    assert!(matches!(err, ConnError::Closed { .. }), "{err}");
    server.await.unwrap();
}
