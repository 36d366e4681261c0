//! ElectLeaders v0-2, preferred elections: the first replica of a partition's assignment becomes
//! its leader if it is live and in the ISR (ELECTION_NOT_NEEDED when it leads already,
//! PREFERRED_LEADER_NOT_AVAILABLE otherwise). In combined mode the controller decides and
//! commits the leader changes; a single node leads every partition (not needed, always).
//! Unclean elections on request are refused with INVALID_REQUEST. All partitions (a null list)
//! answer only those elected or failed, as Kafka does.

use kafka_protocol::messages::elect_leaders_request::ElectLeadersRequest;
use kafka_protocol::messages::elect_leaders_response::{
    ElectLeadersResponse, PartitionResult, ReplicaElectionResult,
};
use kafka_protocol::messages::{ApiKey, TopicName};

use crate::broker::{Broker, Outcome};
use crate::protocol::{self, decode_body, error_code, Request, RequestError};

use super::sb;

const PREFERRED: i8 = 0;

impl Broker {
    pub(crate) async fn elect_leaders(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: ElectLeadersRequest = decode_body(req)?;
        let v = req.api_version;
        let all = r.topic_partitions.is_none();
        let wanted = match &r.topic_partitions {
            Some(ts) => ts
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.as_str().to_string(), *p)))
                .collect(),
            None => self.every_partition().await,
        };
        let results: Vec<(i16, Option<String>)> = if v >= 1 && r.election_type != PREFERRED {
            let why = "only preferred leader elections are supported (unclean: set unclean.leader.election.enable)";
            tracing::info!(election_type = r.election_type, "ElectLeaders refused: {why}");
            vec![(error_code::INVALID_REQUEST, Some(why.to_string())); wanted.len()]
        } else {
            self.elect_preferred(&wanted).await
        };
        let mut resp = ElectLeadersResponse::default();
        for ((topic, partition), (code, msg)) in wanted.iter().zip(results) {
            if all && code == error_code::ELECTION_NOT_NEEDED {
                continue;
            }
            let mut pr = PartitionResult::default();
            pr.partition_id = *partition;
            pr.error_code = code;
            pr.error_message = msg.map(|m| sb(&m));
            match resp.replica_election_results.last_mut() {
                Some(t) if t.topic.0.as_str() == topic => t.partition_result.push(pr),
                _ => {
                    let mut t = ReplicaElectionResult::default();
                    t.topic = TopicName(sb(topic));
                    t.partition_result.push(pr);
                    resp.replica_election_results.push(t);
                }
            }
        }
        let frame =
            protocol::encode_response(ApiKey::ElectLeaders, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "ElectLeaders", version: v, why })?;
        Ok(Outcome::frame(frame))
    }

    /// Every partition this broker knows: the controller's image, else the registry.
    async fn every_partition(&self) -> Vec<(String, i32)> {
        if let Some(img) = self.cluster_image() {
            return img
                .topics
                .values()
                .flat_map(|t| (0..t.partitions.len()).map(|p| (t.name.clone(), p as i32)))
                .collect();
        }
        let registry = self.registry.lock().await;
        registry
            .topics
            .iter()
            .flat_map(|(n, m)| (0..m.partitions).map(|p| (n.clone(), p)))
            .collect()
    }

    /// A preferred election of each partition: (code, message), in order.
    async fn elect_preferred(&self, wanted: &[(String, i32)]) -> Vec<(i16, Option<String>)> {
        let Some(link) = self.controller_link().cloned() else {
            let registry = self.registry.lock().await;
            return wanted
                .iter()
                .map(|(t, p)| match registry.topics.get(t) {
                    Some(m) if (0..m.partitions).contains(p) => {
                        (error_code::ELECTION_NOT_NEEDED, None)
                    }
                    _ => (error_code::UNKNOWN_TOPIC_OR_PARTITION, None),
                })
                .collect();
        };
        let asked: Vec<(String, u32)> = wanted
            .iter()
            .map(|(t, p)| (t.clone(), u32::try_from(*p).unwrap_or(u32::MAX)))
            .collect();
        match link.elect_preferred(asked).await {
            Ok(codes) => {
                tracing::info!(
                    partitions = wanted.len(),
                    elected = codes.iter().filter(|c| **c == 0).count(),
                    "ElectLeaders"
                );
                codes.into_iter().map(|c| (c, None)).collect()
            }
            Err(e) => {
                let (code, msg) = crate::controller::local::link_error_code(&e);
                vec![(code, Some(msg)); wanted.len()]
            }
        }
    }
}
