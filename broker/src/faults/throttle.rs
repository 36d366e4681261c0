//! `throttle_ms` rules: the handled request's response carries that `throttle_time_ms`.
//!
//! Every API this broker serves has the field from some version on ([`since`]). In most
//! responses it is the body's first field, patched in place (Fetch's file regions are left
//! alone); in Produce's, ApiVersions' and OffsetDelete's it comes after the arrays, so those bodies are decoded
//! and encoded again (only when the rule fires).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, OffsetDeleteResponse, ProduceResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use net_model::Chunk;

use super::rules::RuleError;
use crate::protocol::{self, api_name};

/// The first version of `key`'s response with `throttle_time_ms`; `None` if it has none.
pub fn since(key: ApiKey) -> Option<i16> {
    Some(match key {
        ApiKey::DescribeConfigs | ApiKey::AlterConfigs | ApiKey::IncrementalAlterConfigs => 0,
        ApiKey::InitProducerId
        | ApiKey::CreatePartitions
        | ApiKey::DeleteRecords
        | ApiKey::DeleteGroups
        | ApiKey::OffsetDelete
        | ApiKey::DescribeLogDirs
        | ApiKey::ElectLeaders => 0,
        ApiKey::Produce
        | ApiKey::Fetch
        | ApiKey::ApiVersions
        | ApiKey::DeleteTopics
        | ApiKey::FindCoordinator
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::ListGroups
        | ApiKey::DescribeGroups => 1,
        ApiKey::ListOffsets
        | ApiKey::CreateTopics
        | ApiKey::JoinGroup
        | ApiKey::OffsetForLeaderEpoch => 2,
        ApiKey::Metadata | ApiKey::OffsetCommit | ApiKey::OffsetFetch => 3,
        _ => return None,
    })
}

/// Checks a throttle rule against the versions whose responses carry the field; without a
/// `versions` range the rule gets exactly those (`[since, highest served]`).
pub fn narrow(api: &str, versions: Option<[i16; 2]>) -> Result<[i16; 2], RuleError> {
    let found = protocol::SUPPORTED.iter().find(|(k, _, _)| api_name(*k) == api);
    let Some(&(key, _, hi)) = found else {
        return Err(RuleError::Field { field: "api", reason: format!("unknown API `{api}`") });
    };
    let Some(lo) = since(key) else {
        return Err(RuleError::Field {
            field: "throttle_ms",
            reason: format!("{api} responses have no throttle_time_ms"),
        });
    };
    match versions {
        None => Ok([lo, hi]),
        Some([a, b]) if a >= lo => Ok([a, b]),
        Some(_) => Err(RuleError::Field {
            field: "versions",
            reason: format!("{api} responses carry throttle_time_ms from v{lo} on only"),
        }),
    }
}

/// Sets `throttle_time_ms` in a response frame (length prefix, header, body).
pub fn apply(key: ApiKey, version: i16, chunks: &mut [Chunk], ms: i32) -> Result<(), String> {
    let header_len = protocol::response_header(key, version, 0).len();
    match key {
        ApiKey::Produce => reencode::<ProduceResponse>(key, version, chunks, ms, header_len),
        ApiKey::ApiVersions => {
            reencode::<ApiVersionsResponse>(key, version, chunks, ms, header_len)
        }
        ApiKey::OffsetDelete => {
            reencode::<OffsetDeleteResponse>(key, version, chunks, ms, header_len)
        }
        _ => {
            let Some(Chunk::Bytes(first)) = chunks.first_mut() else {
                return Err("response without a leading byte chunk".into());
            };
            if first.len() < header_len + 4 {
                return Err("response too short for throttle_time_ms".into());
            }
            let mut b = BytesMut::from(&first[..]);
            b[header_len..header_len + 4].copy_from_slice(&ms.to_be_bytes());
            *first = b.freeze();
            Ok(())
        }
    }
}

/// The bodies whose throttle time is not the first field.
trait Throttled: Decodable + Encodable {
    fn set_throttle(&mut self, ms: i32);
}

impl Throttled for ProduceResponse {
    fn set_throttle(&mut self, ms: i32) {
        self.throttle_time_ms = ms;
    }
}

impl Throttled for OffsetDeleteResponse {
    fn set_throttle(&mut self, ms: i32) {
        self.throttle_time_ms = ms;
    }
}

impl Throttled for ApiVersionsResponse {
    fn set_throttle(&mut self, ms: i32) {
        self.throttle_time_ms = ms;
    }
}

fn reencode<T: Throttled>(
    key: ApiKey,
    version: i16,
    chunks: &mut [Chunk],
    ms: i32,
    header_len: usize,
) -> Result<(), String> {
    let [Chunk::Bytes(frame)] = chunks else {
        return Err("expected a one-chunk response".into());
    };
    if frame.len() < header_len {
        return Err("response shorter than its header".into());
    }
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let mut body: Bytes = frame.slice(header_len..);
    let mut msg = T::decode(&mut body, version).map_err(|e| e.to_string())?;
    msg.set_throttle(ms);
    *frame = protocol::encode_response(key, version, correlation_id, &msg)?;
    Ok(())
}

#[cfg(test)]
mod tests;
