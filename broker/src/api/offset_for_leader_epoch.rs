//! OffsetForLeaderEpoch v2-4 (KIP-101, KIP-279, KIP-320): where a leader epoch ends on the
//! leader's log. Followers ask it after a leader change to truncate what the new leader does not
//! have; consumers (librdkafka, the Java client) ask it to validate their position after a leader
//! change.
//!
//! Per partition: the leader answers the largest epoch ≤ the requested one that its log has and
//! the offset where that epoch ends (the next epoch's start, or its log end); UNDEFINED (-1, -1)
//! when it knows no such epoch. Only the leader answers (NOT_LEADER_OR_FOLLOWER elsewhere), after
//! checking `current_leader_epoch` (v2+: FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH).

use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::ApiKey;

use crate::broker::{Broker, Outcome};
use crate::log::TopicPartition;
use crate::protocol::{self, decode_body, error_code, Request, RequestError};

impl Broker {
    pub(crate) async fn offset_for_leader_epoch(
        &self,
        req: &Request,
    ) -> Result<Outcome, RequestError> {
        let r: OffsetForLeaderEpochRequest = decode_body(req)?;
        let v = req.api_version;
        let mut resp = OffsetForLeaderEpochResponse::default();
        for t in &r.topics {
            let name = t.topic.0.as_str();
            let mut tr = OffsetForLeaderTopicResult::default();
            tr.topic = t.topic.clone();
            for p in &t.partitions {
                let mut out = EpochEndOffset::default();
                out.partition = p.partition;
                out.leader_epoch = -1;
                out.end_offset = -1;
                let tp = TopicPartition::new(name, p.partition);
                let part = self.partition(&tp);
                let data = match &part {
                    Some(part) => part.data().await,
                    None => None,
                };
                let log = data.as_ref().map(|d| &d.log);
                let refused = match log {
                    None => Some(error_code::UNKNOWN_TOPIC_OR_PARTITION),
                    Some(_) => self.not_leader_error(name, p.partition).or_else(|| {
                        if v >= 2 {
                            self.check_leader_epoch(&tp, p.current_leader_epoch)
                        } else {
                            None
                        }
                    }),
                };
                match (refused, log) {
                    (Some(code), _) => out.error_code = code,
                    (None, Some(log)) => {
                        if let Some((epoch, end)) =
                            log.epochs().end_offset_for(p.leader_epoch, log.log_end_offset())
                        {
                            out.leader_epoch = epoch;
                            out.end_offset = end;
                        }
                    }
                    (None, None) => out.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION,
                }
                tr.partitions.push(out);
            }
            resp.topics.push(tr);
        }
        let frame =
            protocol::encode_response(ApiKey::OffsetForLeaderEpoch, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody {
                api: "OffsetForLeaderEpoch",
                version: v,
                why,
            })?;
        Ok(Outcome::frame(frame))
    }
}
