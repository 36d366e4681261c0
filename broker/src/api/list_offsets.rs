//! ListOffsets v1-7: earliest (-2), latest (-1), max timestamp (-3, v7), and by timestamp — the
//! batch found through the time index is decoded (bounded) to pick the first record with
//! timestamp ≥ the target.

use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::ApiKey;

use crate::broker::{Broker, Outcome};
use crate::log::{Log, LogError, TopicPartition};
use crate::protocol::{self, decode_body, error_code, Request, RequestError};

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;

/// First record with timestamp ≥ `ts`: (offset, timestamp), or `None` if every record is older.
async fn offset_for_timestamp(
    log: &Log,
    ts: i64,
    max_uncompressed: usize,
) -> Result<Option<(i64, i64)>, LogError> {
    let Some((header, bytes)) = log.find_batch_by_timestamp(ts).await? else {
        return Ok(None);
    };
    let iter = records::decode_batch_unverified_crc(bytes, max_uncompressed).map_err(|e| {
        LogError::Corrupt { file: format!("{:?}", log.dir()), position: 0, why: e.to_string() }
    })?;
    for rec in iter {
        let rec = rec.map_err(|e| LogError::Corrupt {
            file: format!("{:?}", log.dir()),
            position: 0,
            why: e.to_string(),
        })?;
        if rec.timestamp >= ts && rec.offset >= log.log_start_offset() {
            return Ok(Some((rec.offset, rec.timestamp)));
        }
    }
    // The index said this batch reaches `ts`; if no record does, the next batch starts after it.
    Ok(Some((header.last_offset() + 1, -1)).filter(|(o, _)| *o < log.log_end_offset()))
}

impl Broker {
    pub(crate) async fn list_offsets(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: ListOffsetsRequest = decode_body(req)?;
        let v = req.api_version;
        let mut resp = ListOffsetsResponse::default();
        // Decompressing one batch is bounded by the largest batch the log accepts, times a
        // generous compression ratio, capped.
        let max_uncompressed =
            (self.config.log.max_message_bytes as usize).saturating_mul(64).min(256 << 20);
        for t in &r.topics {
            let name = t.name.0.as_str();
            let mut tr = ListOffsetsTopicResponse::default();
            tr.name = t.name.clone();
            for p in &t.partitions {
                let mut pr = ListOffsetsPartitionResponse::default();
                pr.partition_index = p.partition_index;
                pr.timestamp = -1;
                pr.offset = -1;
                if v >= 4 {
                    pr.leader_epoch = self.leader_epoch(name, p.partition_index);
                }
                if let Some(code) = self.not_leader_error(name, p.partition_index) {
                    pr.error_code = code;
                    tr.partitions.push(pr);
                    continue;
                }
                let part = self.partition(&TopicPartition::new(name, p.partition_index));
                let data = match &part {
                    Some(part) => part.data().await,
                    None => None,
                };
                let log = data.as_ref().map(|d| &d.log);
                match log {
                    None => pr.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    Some(log) => match p.timestamp {
                        EARLIEST => pr.offset = log.log_start_offset(),
                        LATEST => {
                            pr.offset = self.readable_end(
                                &TopicPartition::new(name, p.partition_index),
                                log.log_end_offset(),
                            )
                        }
                        MAX_TIMESTAMP => {
                            if let Some(ts) = log.max_timestamp() {
                                match offset_for_timestamp(log, ts, max_uncompressed).await {
                                    Ok(Some((o, t))) => {
                                        pr.offset = o;
                                        pr.timestamp = t;
                                    }
                                    Ok(None) => {}
                                    Err(e) => {
                                        tracing::warn!(error = %e, "ListOffsets max timestamp");
                                        pr.error_code = error_code::KAFKA_STORAGE_ERROR;
                                    }
                                }
                            }
                        }
                        ts if ts < 0 => pr.error_code = error_code::INVALID_REQUEST,
                        ts => match offset_for_timestamp(log, ts, max_uncompressed).await {
                            Ok(Some((o, t))) => {
                                pr.offset = o;
                                pr.timestamp = t;
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "ListOffsets by timestamp");
                                pr.error_code = error_code::KAFKA_STORAGE_ERROR;
                            }
                        },
                    },
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        let frame = protocol::encode_response(ApiKey::ListOffsets, v, req.correlation_id, &resp)
            .map_err(|why| RequestError::BadBody { api: "ListOffsets", version: v, why })?;
        Ok(Outcome::frame(frame))
    }
}
