//! Metadata v0-12: this broker, and topics (all, or the ones asked for, auto-creating them when
//! allowed). One broker: it leads every partition at leader epoch 0.

use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};

use crate::broker::{Broker, Outcome};
use crate::protocol::{self, decode_body, error_code, Request, RequestError};
use crate::topics::{validate_topic_name, TopicMeta};

use super::sb;

impl Broker {
    fn describe_topic(&self, name: &str, meta: &TopicMeta) -> MetadataResponseTopic {
        let node = BrokerId(self.config.node_id);
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(sb(name)));
        t.topic_id = uuid::Uuid::from_bytes(meta.uuid());
        t.is_internal = name == crate::group::OFFSETS_TOPIC;
        t.partitions = (0..meta.partitions)
            .map(|p| {
                let mut mp = MetadataResponsePartition::default();
                mp.partition_index = p;
                mp.leader_id = node;
                mp.leader_epoch = 0;
                mp.replica_nodes = vec![node];
                mp.isr_nodes = vec![node];
                mp
            })
            .collect();
        t
    }

    fn topic_error(name: Option<&str>, code: i16) -> MetadataResponseTopic {
        let mut t = MetadataResponseTopic::default();
        t.name = name.map(|n| TopicName(sb(n)));
        t.error_code = code;
        t
    }

    pub(crate) async fn metadata(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: MetadataRequest = decode_body(req)?;
        let v = req.api_version;
        let allow_auto = if v >= 4 { r.allow_auto_topic_creation } else { true };
        let mut resp = MetadataResponse::default();
        let (host, port) = self.advertised();
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(self.config.node_id);
        b.host = sb(&host);
        b.port = port;
        resp.brokers = vec![b];
        resp.cluster_id = Some(sb(&self.config.cluster_id));
        resp.controller_id = BrokerId(self.config.node_id);
        let mut state = self.lock().await;
        let wanted = match r.topics {
            None => None,
            Some(t) if t.is_empty() && v == 0 => None,
            Some(t) => Some(t),
        };
        match wanted {
            None => {
                for (name, meta) in &state.registry.topics {
                    resp.topics.push(self.describe_topic(name, meta));
                }
            }
            Some(topics) => {
                for t in topics {
                    let name = match t.name {
                        Some(n) => n.0.as_str().to_string(),
                        None => {
                            let id = t.topic_id.into_bytes();
                            match state.registry.topics.iter().find(|(_, m)| m.uuid() == id) {
                                Some((name, meta)) => resp.topics.push(self.describe_topic(name, meta)),
                                None => {
                                    let mut e = Self::topic_error(None, error_code::UNKNOWN_TOPIC_ID);
                                    e.topic_id = t.topic_id;
                                    resp.topics.push(e);
                                }
                            }
                            continue;
                        }
                    };
                    if validate_topic_name(&name).is_err() {
                        resp.topics.push(Self::topic_error(Some(&name), error_code::INVALID_TOPIC_EXCEPTION));
                        continue;
                    }
                    if let Some(meta) = state.registry.topics.get(&name) {
                        resp.topics.push(self.describe_topic(&name, meta));
                    } else if allow_auto && self.config.auto_create_topics && name != crate::group::OFFSETS_TOPIC {
                        match self.create_topic(&mut state, &name, self.config.num_partitions, Default::default()).await {
                            Ok(meta) => resp.topics.push(self.describe_topic(&name, &meta)),
                            Err((code, _)) => resp.topics.push(Self::topic_error(Some(&name), code)),
                        }
                    } else {
                        resp.topics.push(Self::topic_error(Some(&name), error_code::UNKNOWN_TOPIC_OR_PARTITION));
                    }
                }
            }
        }
        drop(state);
        let frame = protocol::encode_response(ApiKey::Metadata, v, req.correlation_id, &resp)
            .map_err(|why| RequestError::BadBody { api: "Metadata", version: v, why })?;
        Ok(Outcome::frame(frame))
    }
}
