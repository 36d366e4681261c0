//! A follower's Kafka-protocol connection to a leader: one request at a time, frames bounded
//! before allocation. Followers speak the same Fetch and OffsetForLeaderEpoch as Kafka's
//! replica fetchers, over the same listener clients use.

use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use net_model::{Chunk, Connection, Network};
use tokio::io::AsyncReadExt;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("response frame of {len} bytes exceeds {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("connection closed by the leader")]
    Closed,
}

pub struct KafkaConn {
    conn: Connection,
    pub addr: String,
    next_correlation_id: i32,
    client_id: StrBytes,
}

impl KafkaConn {
    pub async fn connect(
        net: &dyn Network,
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, WireError> {
        let conn = tokio::time::timeout(timeout, net.connect(addr))
            .await
            .map_err(|_| WireError::Timeout(timeout))??;
        Ok(Self {
            conn,
            addr: addr.to_string(),
            next_correlation_id: 1,
            client_id: StrBytes::from_string(client_id.to_string()),
        })
    }

    /// Sends `req` as `key` v`version` and reads its response, within `timeout`; a response frame
    /// above `max_bytes` is refused before it is read.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Resp, WireError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(self.client_id.clone());
        let mut buf = BytesMut::with_capacity(256);
        buf.extend_from_slice(&[0u8; 4]);
        header
            .encode(&mut buf, key.request_header_version(version))
            .map_err(|e| WireError::Malformed(e.to_string()))?;
        req.encode(&mut buf, version).map_err(|e| WireError::Malformed(e.to_string()))?;
        let len = (buf.len() - 4) as u32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        let exchange = async {
            self.conn.writer.write_chunks(&[Chunk::Bytes(buf.freeze())]).await?;
            let mut head = [0u8; 4];
            match self.conn.reader.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(WireError::Closed)
                }
                Err(e) => return Err(e.into()),
            }
            let len = u32::from_be_bytes(head) as usize;
            if len > max_bytes {
                return Err(WireError::TooLarge { len, max: max_bytes });
            }
            match net_model::read_frame_body(&mut self.conn.reader, len).await? {
                Some(body) => Ok(body.freeze()),
                None => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
            }
        };
        let mut body = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| WireError::Timeout(timeout))??;
        let rh = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(|e| WireError::Malformed(e.to_string()))?;
        if rh.correlation_id != correlation_id {
            return Err(WireError::Malformed(format!(
                "correlation id {} for request {correlation_id}",
                rh.correlation_id
            )));
        }
        Resp::decode(&mut body, version).map_err(|e| WireError::Malformed(e.to_string()))
    }
}
