//! Wire-level helpers: Kafka error codes, the versions we serve, request-header parsing and
//! response framing. Message bodies are `kafka-protocol`'s, except where we hand-encode (Fetch
//! responses, whose record data are file regions; Produce v0-2 refusals).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

/// Kafka's error codes as `i16` (one table, in `kafka-types`; `kafka_types::ErrorCode` is the
/// typed form with names and retriability).
pub use kafka_types::error_code;

/// The APIs and versions this broker serves (and advertises in ApiVersions).
/// Produce is advertised from 0 (librdkafka < 2.11.1 disables compression otherwise); 0-2 are
/// answered with UNSUPPORTED_VERSION since they carry pre-v2 message sets.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 10),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    // Single broker: it is every group's coordinator. Advertising v0 also makes librdkafka
    // < 2.11.1 enable its LZ4 feature.
    (ApiKey::FindCoordinator, 0, 4),
    // The classic group protocol. OffsetCommit v0-1 are decoded by hand (kafka-protocol starts
    // at v2); librdkafka's group consumer wants v0 advertised.
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 0, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    // Followers truncate by it (KIP-101/279); consumers validate positions after a leader change
    // (KIP-320).
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    // Topic and broker configs (api/configs.rs, api/alter_configs.rs).
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    // Partition and record admin (issue 15): api/partitions.rs, api/records.rs.
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    // Group admin (issue 15): api/group_admin.rs.
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // api/log_dirs.rs (kafka-protocol starts at v1).
    (ApiKey::DescribeLogDirs, 1, 4),
    // api/elect.rs: preferred elections.
    (ApiKey::ElectLeaders, 0, 2),
];

pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|(_, lo, hi)| (*lo, *hi))
}

/// A human name per API, for logs and metrics (Kafka's request names).
pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::ElectLeaders => "ElectLeaders",
        _ => "Other",
    }
}

#[derive(Debug, Error)]
pub enum RequestError {
    #[error("frame of {0} bytes is too short for a request header")]
    Short(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("malformed request header: {0}")]
    BadHeader(String),
    #[error("malformed {api} v{version} request: {why}")]
    BadBody { api: &'static str, version: i16, why: String },
    #[error("{api} v{version} is not supported")]
    UnsupportedVersion { api: &'static str, version: i16 },
}

/// A parsed request: header plus the undecoded body.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub header: Option<RequestHeader>,
    pub body: Bytes,
}

/// Peeks the fixed part of a request header (api key, version, correlation id).
pub fn peek_header(frame: &[u8]) -> Result<(i16, i16, i32), RequestError> {
    if frame.len() < 8 {
        return Err(RequestError::Short(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    Ok((key, version, corr))
}

/// Parses the request header with `kafka-protocol`, leaving the body undecoded.
pub fn parse_request(frame: Bytes) -> Result<Request, RequestError> {
    let (key, version, correlation_id) = peek_header(&frame)?;
    let api_key = ApiKey::try_from(key).map_err(|_| RequestError::UnknownApi(key))?;
    if supported_range(api_key).is_none() {
        return Err(RequestError::UnknownApi(key));
    }
    let mut body = frame;
    // Header versions of versions kafka-protocol does not know may be wrong; those requests are
    // refused by version before their header matters (ApiVersions' KIP-511 fallback needs only the
    // correlation id, which is at a fixed position).
    let header_version = api_key.request_header_version(version);
    match RequestHeader::decode(&mut body, header_version) {
        Ok(header) => Ok(Request {
            api_key,
            api_version: version,
            correlation_id,
            header: Some(header),
            body,
        }),
        Err(e) => {
            if api_key == ApiKey::ApiVersions {
                Ok(Request {
                    api_key,
                    api_version: version,
                    correlation_id,
                    header: None,
                    body: Bytes::new(),
                })
            } else {
                Err(RequestError::BadHeader(e.to_string()))
            }
        }
    }
}

pub fn decode_body<T: Decodable>(req: &Request) -> Result<T, RequestError> {
    let mut body = req.body.clone();
    crate::guard::check(req.api_key, req.api_version, &req.body).map_err(|why| {
        RequestError::BadBody { api: api_name(req.api_key), version: req.api_version, why }
    })?;
    T::decode(&mut body, req.api_version).map_err(|e| RequestError::BadBody {
        api: api_name(req.api_key),
        version: req.api_version,
        why: e.to_string(),
    })
}

/// Response header bytes for `req`.
pub fn response_header(api_key: ApiKey, version: i16, correlation_id: i32) -> BytesMut {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_i32(0); // frame length, patched by the caller
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    // Encoding a header into a BytesMut cannot fail for these versions.
    let hv =
        if api_key == ApiKey::ApiVersions { 0 } else { api_key.response_header_version(version) };
    if header.encode(&mut buf, hv).is_err() {
        buf.put_i32(correlation_id);
    }
    buf
}

/// A whole response frame (length prefix, header, body) from a kafka-protocol message.
pub fn encode_response<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, String> {
    let mut buf = response_header(api_key, version, correlation_id);
    body.encode(&mut buf, version).map_err(|e| e.to_string())?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Hand-encoding helpers for the classic and the flexible (compact) encodings.
pub struct Wire<'a> {
    pub buf: &'a mut BytesMut,
    pub flexible: bool,
}

impl Wire<'_> {
    pub fn i8(&mut self, v: i8) {
        self.buf.put_i8(v);
    }
    pub fn i16(&mut self, v: i16) {
        self.buf.put_i16(v);
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }
    pub fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }
    /// Array length (`n` elements).
    pub fn array_len(&mut self, n: usize) {
        if self.flexible {
            self.uvarint(n as u32 + 1);
        } else {
            self.i32(n as i32);
        }
    }
    pub fn null_array(&mut self) {
        if self.flexible {
            self.uvarint(0);
        } else {
            self.i32(-1);
        }
    }
    pub fn string(&mut self, s: &str) {
        if self.flexible {
            self.uvarint(s.len() as u32 + 1);
        } else {
            self.i16(s.len() as i16);
        }
        self.buf.put_slice(s.as_bytes());
    }
    /// Length prefix of a nullable bytes/records field of `len` bytes (`None` = null).
    pub fn bytes_len(&mut self, len: Option<u64>) {
        match (len, self.flexible) {
            (None, true) => self.uvarint(0),
            (None, false) => self.i32(-1),
            (Some(n), true) => self.uvarint(n as u32 + 1),
            (Some(n), false) => self.i32(n as i32),
        }
    }
    /// An empty tagged-field section (flexible versions only).
    pub fn no_tags(&mut self) {
        if self.flexible {
            self.uvarint(0);
        }
    }
}
