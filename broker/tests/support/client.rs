//! A Kafka client on one loopback TCP connection (real world only): request frames from
//! [`super::kafka`], answers read with a bound on the wait, and the raw bytes and closed-connection
//! checks that bad-input tests need.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::kafka;

/// How long a test waits for an answer (or a close) before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub struct Client {
    s: TcpStream,
    corr: i32,
    client_id: &'static str,
}

impl Client {
    /// Connects with the client id `test`.
    pub async fn connect(addr: &str) -> Self {
        Self::connect_as(addr, "test").await
    }

    /// Connects; every request carries `client_id`.
    pub async fn connect_as(addr: &str, client_id: &'static str) -> Self {
        let s = TcpStream::connect(addr).await.expect("connects to the broker");
        Self { s, corr: 0, client_id }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("writes to the broker");
    }

    /// Sends a request whose body is already encoded; returns its correlation id.
    pub async fn send_body(&mut self, key: ApiKey, v: i16, body: &[u8]) -> i32 {
        self.corr += 1;
        let f = kafka::frame_with_body(key, v, self.corr, self.client_id, body);
        self.send_raw(&f).await;
        self.corr
    }

    /// Sends a request; returns its correlation id.
    pub async fn send<T: Encodable>(&mut self, key: ApiKey, v: i16, body: &T) -> i32 {
        self.corr += 1;
        let f = kafka::frame(key, v, self.corr, self.client_id, body);
        self.send_raw(&f).await;
        self.corr
    }

    /// Reads one response frame, `None` if the broker closed the connection.
    pub async fn recv_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        tokio::time::timeout(TIMEOUT, self.s.read_exact(&mut len))
            .await
            .expect("response in time")
            .ok()?;
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut buf).await.ok()?;
        Some(Bytes::from(buf))
    }

    /// The answer to request `corr`, `None` if the broker closed the connection instead.
    pub async fn try_recv<T: Decodable>(&mut self, key: ApiKey, v: i16, corr: i32) -> Option<T> {
        let frame = self.recv_frame().await?;
        Some(kafka::decode_response(frame, key, v, corr))
    }

    pub async fn recv<T: Decodable>(&mut self, key: ApiKey, v: i16, corr: i32) -> T {
        self.try_recv(key, v, corr).await.expect("a response, not a closed connection")
    }

    /// One request and its answer, `None` if the broker closed the connection instead.
    pub async fn try_call<Q: Encodable, R: Decodable>(
        &mut self,
        key: ApiKey,
        v: i16,
        body: &Q,
    ) -> Option<R> {
        let corr = self.send(key, v, body).await;
        self.try_recv(key, v, corr).await
    }

    pub async fn call<Q: Encodable, R: Decodable>(&mut self, key: ApiKey, v: i16, body: &Q) -> R {
        let corr = self.send(key, v, body).await;
        self.recv(key, v, corr).await
    }

    /// True if the broker closed the connection (EOF or reset) within [`TIMEOUT`].
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(TIMEOUT, self.s.read(&mut b)).await.expect("close in time"),
            Ok(0) | Err(_)
        )
    }
}

/// One request on a fresh blocking connection (for tests that run no runtime): the answer, or
/// the IO error that kept it from coming.
pub fn call_blocking<Q: Encodable, R: Decodable>(
    addr: &str,
    key: ApiKey,
    v: i16,
    body: &Q,
) -> std::io::Result<R> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.write_all(&kafka::frame(key, v, 7, "test", body))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut frame)?;
    Ok(kafka::decode_response(Bytes::from(frame), key, v, 7))
}
