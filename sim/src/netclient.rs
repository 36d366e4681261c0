//! The client side of [`BrokerApi`] in network runs: real Kafka requests (Produce with acks
//! 0/1/-1, Fetch, ListOffsets, CreateTopics) encoded by `kafka-protocol` and sent through
//! `client::conn::Conn` (framing, correlation ids, ApiVersions negotiation, pipelining) over the
//! simulated network. One [`NetClient`] is one connection's worth of client: each producer and
//! consumer gets its own (a long-polling Fetch must not hold a producer's responses back, since
//! the broker answers one request per connection at a time, in order).
//!
//! Every request leaves one `rpc` trace line when its outcome is known: who, which API and
//! partition, when it was sent (virtual ns) and what came back — the client's view of "request
//! served". The broker's own counters are traced as `broker-served` lines by the run's sampler
//! (from `Broker::metrics`; the broker is not instrumented for the simulator).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use broker::log::TopicPartition;
use bytes::Bytes;
use client::conn::{Conn, ConnConfig, ConnError, DEFAULT_MAX_RESPONSE_BYTES};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_types::ErrorCode;
use records::{BatchHeader, LENGTH_FIELD_END};

use crate::api::{ApiError, BrokerApi, FetchResponse, ProduceResponse};
use crate::scenario::TopicSpec;
use crate::trace::Tracer;

pub struct NetClient {
    net: Arc<dyn net_model::Network>,
    addr: String,
    /// Client id on the wire and the name in trace lines (`p0`, `c1`, `oracle`).
    who: String,
    tracer: Tracer,
    /// Produce `acks` on the wire when a response is wanted (1 or -1).
    acks: i16,
    max_in_flight: usize,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

fn conn_error(e: &ConnError) -> ApiError {
    match e {
        ConnError::Connect { .. } => ApiError::Unavailable,
        ConnError::Closed { .. } => ApiError::Disconnected,
        ConnError::Timeout { .. } => ApiError::Timeout,
        other => ApiError::Broker(other.to_string()),
    }
}

fn code_error(code: i16) -> ApiError {
    if code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION {
        ApiError::UnknownTopicOrPartition
    } else {
        ApiError::Broker(ErrorCode::from_code(code).name().to_string())
    }
}

/// Splits a partition's record data into whole batches (a partial trailing batch is dropped, as
/// consumers do). CRCs are checked by whoever decodes them.
pub fn split_batches(data: &Bytes) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= LENGTH_FIELD_END {
        let size = BatchHeader::peek_size(&data[pos..])
            .ok_or_else(|| format!("bad batch length at byte {pos}"))?;
        if size < LENGTH_FIELD_END {
            return Err(format!("batch of {size} bytes at byte {pos}"));
        }
        if size > data.len() - pos {
            break;
        }
        out.push(data.slice(pos..pos + size));
        pos += size;
    }
    Ok(out)
}

impl NetClient {
    pub fn new(
        net: Arc<dyn net_model::Network>,
        addr: String,
        who: String,
        tracer: Tracer,
        acks: i16,
        max_in_flight: usize,
    ) -> Self {
        NetClient {
            net,
            addr,
            who,
            tracer,
            acks,
            max_in_flight: max_in_flight.max(1),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The open connection, or a new one (connect + ApiVersions). Concurrent callers wait for
    /// one connect instead of racing.
    async fn conn(&self, timeout: Duration) -> Result<Arc<Conn>, ApiError> {
        let mut g = self.conn.lock().await;
        if let Some(c) = g.as_ref() {
            if c.is_open() {
                return Ok(c.clone());
            }
        }
        *g = None;
        let cfg = ConnConfig {
            client_id: self.who.clone(),
            request_timeout: timeout,
            max_in_flight: self.max_in_flight,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            connect_timeout: timeout.min(Duration::from_secs(10)),
            ..ConnConfig::default()
        };
        let t0 = self.tracer.now_ns();
        match Conn::connect(self.net.as_ref(), &self.addr, cfg).await {
            Ok(c) => {
                self.tracer.event("connect", &format!("{} {} sent={t0} ok", self.who, self.addr));
                *g = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                let err = conn_error(&e);
                self.tracer.event(
                    "connect",
                    &format!("{} {} sent={t0} error={}", self.who, self.addr, err.code()),
                );
                Err(err)
            }
        }
    }

    fn rpc(&self, api: &str, tp: &str, sent_ns: u64, outcome: &str) {
        self.tracer.event("rpc", &format!("{} {api} {tp} sent={sent_ns} {outcome}", self.who));
    }

    fn failed<T>(&self, api: &str, tp: &str, sent_ns: u64, e: ApiError) -> Result<T, ApiError> {
        self.rpc(api, tp, sent_ns, &format!("error={}", e.code()));
        Err(e)
    }

    /// Creates the scenario's topics (CreateTopics, with their topic-level configs); a topic
    /// that already exists (a restarted broker) counts as created.
    pub async fn create_topics(
        &self,
        topics: &[TopicSpec],
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let conn = self.conn(timeout).await?;
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_validate_only(false)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor as i16)
                            .with_configs(
                                t.overrides
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let t0 = self.tracer.now_ns();
        let resp = match conn.request(&req).await {
            Ok(r) => r,
            Err(e) => return self.failed("CreateTopics", "-", t0, conn_error(&e)),
        };
        for t in &resp.topics {
            // 36 = TOPIC_ALREADY_EXISTS.
            if t.error_code != ErrorCode::NONE && t.error_code != ErrorCode::TOPIC_ALREADY_EXISTS {
                return self.failed(
                    "CreateTopics",
                    t.name.as_str(),
                    t0,
                    ApiError::Broker(ErrorCode::from_code(t.error_code).name().into()),
                );
            }
        }
        self.rpc("CreateTopics", "-", t0, &format!("ok topics={}", resp.topics.len()));
        Ok(())
    }

    async fn list_offset(
        &self,
        conn: &Conn,
        tp: &TopicPartition,
        timestamp: i64,
    ) -> Result<i64, ApiError> {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(&tp.topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)])]);
        let resp = conn.request(&req).await.map_err(|e| conn_error(&e))?;
        let p = resp
            .topics
            .iter()
            .filter(|t| t.name.as_str() == tp.topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == tp.partition)
            .ok_or_else(|| {
                ApiError::Broker("partition missing from the ListOffsets response".into())
            })?;
        if p.error_code != ErrorCode::NONE {
            return Err(code_error(p.error_code));
        }
        Ok(p.offset)
    }
}

impl NetClient {
    /// A debugging read (Fetch with replica id -2, Kafka's `DebuggingConsumerId`): served by ANY
    /// replica, leader or follower, up to its log end. Returns the whole batches, that replica's
    /// HW (`high_watermark`) and its log end (carried in `last_stable_offset`).
    pub async fn debug_fetch(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<(Vec<Bytes>, i64, i64, i64), ApiError> {
        let tps = tp.to_string();
        let t0 = self.tracer.now_ns();
        let conn = match self.conn(timeout).await {
            Ok(c) => c,
            Err(e) => return self.failed("DebugFetch", &tps, t0, e),
        };
        let max_bytes = max_bytes.min(i32::MAX as usize) as i32;
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-2))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&tp.topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(tp.partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes)
                    .with_current_leader_epoch(-1)])]);
        let resp = match conn.request(&req).await {
            Ok(r) => r,
            Err(e) => return self.failed("DebugFetch", &tps, t0, conn_error(&e)),
        };
        if resp.error_code != ErrorCode::NONE {
            return self.failed("DebugFetch", &tps, t0, code_error(resp.error_code));
        }
        let p = resp
            .responses
            .iter()
            .filter(|t| t.topic.as_str() == tp.topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == tp.partition);
        let Some(p) = p else {
            return self.failed(
                "DebugFetch",
                &tps,
                t0,
                ApiError::Broker("partition missing from the Fetch response".into()),
            );
        };
        if p.error_code == ErrorCode::OFFSET_OUT_OF_RANGE {
            let e = ApiError::OffsetOutOfRange {
                log_start_offset: p.log_start_offset,
                log_end_offset: p.high_watermark,
            };
            return self.failed("DebugFetch", &tps, t0, e);
        }
        if p.error_code != ErrorCode::NONE {
            return self.failed("DebugFetch", &tps, t0, code_error(p.error_code));
        }
        let data = p.records.clone().unwrap_or_default();
        let batches = match split_batches(&data) {
            Ok(b) => b,
            Err(why) => {
                return self.failed(
                    "DebugFetch",
                    &tps,
                    t0,
                    ApiError::Broker(format!("undecodable record data: {why}")),
                )
            }
        };
        self.rpc(
            "DebugFetch",
            &tps,
            t0,
            &format!(
                "ok offset={offset} batches={} hw={} leo={}",
                batches.len(),
                p.high_watermark,
                p.last_stable_offset
            ),
        );
        Ok((batches, p.high_watermark, p.last_stable_offset, p.log_start_offset))
    }
}

#[async_trait]
impl BrokerApi for NetClient {
    async fn produce(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
        wait: bool,
        timeout: Duration,
    ) -> Result<Option<ProduceResponse>, ApiError> {
        let tps = tp.to_string();
        let t0 = self.tracer.now_ns();
        let conn = match self.conn(timeout).await {
            Ok(c) => c,
            Err(e) => return self.failed("Produce", &tps, t0, e),
        };
        let acks = if wait { self.acks } else { 0 };
        let req = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(acks)
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&tp.topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(tp.partition)
                    .with_records(Some(batch))])]);
        if !wait {
            return match conn.send_only(&req).await {
                Ok(()) => {
                    self.rpc("Produce", &tps, t0, "written acks=0");
                    Ok(None)
                }
                Err(e) => self.failed("Produce", &tps, t0, conn_error(&e)),
            };
        }
        let resp = match conn.request(&req).await {
            Ok(r) => r,
            Err(e) => return self.failed("Produce", &tps, t0, conn_error(&e)),
        };
        let p = resp
            .responses
            .iter()
            .filter(|t| t.name.as_str() == tp.topic)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == tp.partition);
        let Some(p) = p else {
            return self.failed(
                "Produce",
                &tps,
                t0,
                ApiError::Broker("partition missing from the Produce response".into()),
            );
        };
        if p.error_code != ErrorCode::NONE {
            return self.failed("Produce", &tps, t0, code_error(p.error_code));
        }
        self.rpc("Produce", &tps, t0, &format!("ok acks={acks} base={}", p.base_offset));
        // Kafka's response has no log end offset; the workload uses the base offset only.
        Ok(Some(ProduceResponse { base_offset: p.base_offset, log_end_offset: -1 }))
    }

    async fn fetch(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
        timeout: Duration,
    ) -> Result<FetchResponse, ApiError> {
        let tps = tp.to_string();
        let t0 = self.tracer.now_ns();
        let conn = match self.conn(timeout).await {
            Ok(c) => c,
            Err(e) => return self.failed("Fetch", &tps, t0, e),
        };
        let max_bytes = max_bytes.min(i32::MAX as usize) as i32;
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait.as_millis().min(i32::MAX as u128) as i32)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&tp.topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(tp.partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes)])]);
        let resp = match conn.request(&req).await {
            Ok(r) => r,
            Err(e) => return self.failed("Fetch", &tps, t0, conn_error(&e)),
        };
        if resp.error_code != ErrorCode::NONE {
            return self.failed("Fetch", &tps, t0, code_error(resp.error_code));
        }
        let p = resp
            .responses
            .iter()
            .filter(|t| t.topic.as_str() == tp.topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == tp.partition);
        let Some(p) = p else {
            return self.failed(
                "Fetch",
                &tps,
                t0,
                ApiError::Broker("partition missing from the Fetch response".into()),
            );
        };
        if p.error_code == ErrorCode::OFFSET_OUT_OF_RANGE {
            return self.failed(
                "Fetch",
                &tps,
                t0,
                ApiError::OffsetOutOfRange {
                    log_start_offset: p.log_start_offset,
                    log_end_offset: p.high_watermark,
                },
            );
        }
        if p.error_code != ErrorCode::NONE {
            return self.failed("Fetch", &tps, t0, code_error(p.error_code));
        }
        let data = p.records.clone().unwrap_or_default();
        let batches = match split_batches(&data) {
            Ok(b) => b,
            Err(why) => {
                return self.failed(
                    "Fetch",
                    &tps,
                    t0,
                    ApiError::Broker(format!("undecodable record data: {why}")),
                )
            }
        };
        self.rpc(
            "Fetch",
            &tps,
            t0,
            &format!(
                "ok offset={offset} batches={} bytes={} hw={}",
                batches.len(),
                data.len(),
                p.high_watermark
            ),
        );
        Ok(FetchResponse {
            batches,
            log_start_offset: p.log_start_offset,
            log_end_offset: p.high_watermark,
        })
    }

    async fn list_offsets(
        &self,
        tp: &TopicPartition,
        timeout: Duration,
    ) -> Result<(i64, i64), ApiError> {
        let tps = tp.to_string();
        let t0 = self.tracer.now_ns();
        let conn = match self.conn(timeout).await {
            Ok(c) => c,
            Err(e) => return self.failed("ListOffsets", &tps, t0, e),
        };
        // -2 = earliest (log start), -1 = latest (high watermark).
        let r = async {
            Ok::<_, ApiError>((
                self.list_offset(&conn, tp, -2).await?,
                self.list_offset(&conn, tp, -1).await?,
            ))
        }
        .await;
        match r {
            Ok((start, end)) => {
                self.rpc("ListOffsets", &tps, t0, &format!("ok start={start} end={end}"));
                Ok((start, end))
            }
            Err(e) => self.failed("ListOffsets", &tps, t0, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_batches_keeps_whole_batches_only() {
        let mut b =
            records::BatchBuilder::new(bytes::BytesMut::new(), records::Compression::None, 1 << 20);
        b.append(1, None, Some(b"abc"), &[]).unwrap();
        let one = b.finish().unwrap().freeze();
        let mut two = one.to_vec();
        two.extend_from_slice(&one);
        two.extend_from_slice(&one[..20]);
        let got = split_batches(&Bytes::from(two)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], one);
    }
}
