//! DeleteRecords v0-2: advances a partition's log start offset (Kafka's low watermark) to the
//! given offset, or to the high watermark for -1, and deletes the segments wholly below it.
//! Offsets beyond the high watermark get OFFSET_OUT_OF_RANGE. In combined mode only the leader
//! accepts it; followers follow the leader's `log_start_offset` in its fetch responses, and the
//! answer waits, as Kafka's does, until every ISR follower reported (in its Fetch requests'
//! `log_start_offset`) a log start at least the new one, or `timeout_ms` expires
//! (REQUEST_TIMED_OUT; the log start has moved on the leader all the same).

use kafka_protocol::messages::delete_records_request::DeleteRecordsRequest;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::ApiKey;

use crate::broker::{Broker, Outcome};
use crate::log::TopicPartition;
use crate::protocol::{self, decode_body, error_code, Request, RequestError};

/// DeleteRecords' "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

impl Broker {
    pub(crate) async fn delete_records(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: DeleteRecordsRequest = decode_body(req)?;
        let v = req.api_version;
        let mut resp = DeleteRecordsResponse::default();
        let mut advanced = false;
        // (topic index, partition index, the followers' answer) for each partition that moved.
        let mut waits = Vec::new();
        for t in &r.topics {
            let mut tr = DeleteRecordsTopicResult::default();
            tr.name = t.name.clone();
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
                let mut pr = DeleteRecordsPartitionResult::default();
                pr.partition_index = p.partition_index;
                match self.delete_records_of(&tp, p.offset).await {
                    Ok(start) => {
                        pr.low_watermark = start;
                        advanced = true;
                        if self.controller_link().is_some() {
                            waits.push((resp.topics.len(), tr.partitions.len(), tp, start));
                        }
                    }
                    Err(code) => {
                        pr.low_watermark = -1;
                        pr.error_code = code;
                    }
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        if advanced {
            // The new log starts survive a crash (Kafka's log-start-offset-checkpoint).
            if let Err(e) = self.run_checkpoint().await {
                tracing::warn!(error = %e, "checkpoint after DeleteRecords failed");
            }
        }
        let timeout = std::time::Duration::from_millis(r.timeout_ms.max(0) as u64);
        let deadline = tokio::time::Instant::now() + timeout;
        for (t, p, tp, start) in waits {
            let code = self.followers_trimmed(&tp, start, deadline).await;
            if code != error_code::NONE {
                let pr = &mut resp.topics[t].partitions[p];
                pr.error_code = code;
            }
        }
        let frame = protocol::encode_response(ApiKey::DeleteRecords, v, req.correlation_id, &resp)
            .map_err(|why| RequestError::BadBody { api: "DeleteRecords", version: v, why })?;
        Ok(Outcome::frame(frame))
    }

    /// Waits (until `deadline`) for every ISR follower of `tp` to report a log start at least
    /// `start`: NONE, REQUEST_TIMED_OUT, or NOT_LEADER_OR_FOLLOWER if leadership moved.
    async fn followers_trimmed(
        &self,
        tp: &TopicPartition,
        start: i64,
        deadline: tokio::time::Instant,
    ) -> i16 {
        let rx = match self.replicas.await_log_start(tp, start) {
            Ok(rx) => rx,
            Err(cluster::isr::ProduceError::TooManyPendingAcks) => {
                return error_code::REQUEST_TIMED_OUT
            }
            Err(_) => return error_code::NOT_LEADER_OR_FOLLOWER,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx).await {
            Ok(Ok(Ok(()))) => error_code::NONE,
            Ok(_) => error_code::NOT_LEADER_OR_FOLLOWER,
            Err(_) => {
                tracing::info!(partition = %tp, start, "DeleteRecords: followers did not follow in time");
                error_code::REQUEST_TIMED_OUT
            }
        }
    }

    /// One partition: its new log start offset, or the error code.
    async fn delete_records_of(&self, tp: &TopicPartition, offset: i64) -> Result<i64, i16> {
        if let Some(code) = self.not_leader_error_tp(tp) {
            return Err(code);
        }
        let part = self.partition(tp).ok_or(error_code::UNKNOWN_TOPIC_OR_PARTITION)?;
        let mut data = part.data().await.ok_or(error_code::NOT_LEADER_OR_FOLLOWER)?;
        let hw = self.readable_end(tp, data.log.log_end_offset());
        let target = if offset == HIGH_WATERMARK { hw } else { offset };
        if target < 0 || target > hw {
            tracing::info!(partition = %tp, offset, hw, "DeleteRecords beyond the high watermark");
            return Err(error_code::OFFSET_OUT_OF_RANGE);
        }
        match data.log.advance_log_start(target).await {
            Ok(start) => {
                tracing::info!(partition = %tp, offset = target, log_start = start, "DeleteRecords");
                Ok(start)
            }
            Err(e) => {
                tracing::warn!(partition = %tp, error = %e, "DeleteRecords failed");
                Err(error_code::KAFKA_STORAGE_ERROR)
            }
        }
    }
}
