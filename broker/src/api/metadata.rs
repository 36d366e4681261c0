//! Metadata v0-12: this broker, and topics (all, or the ones asked for, auto-creating them when
//! allowed). One broker: it leads every partition at leader epoch 0.

use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};

use std::sync::Arc;

use cluster::metadata::{ControllerError, MetadataImage, TopicImage, NO_LEADER};

use crate::broker::{Broker, Outcome};
use crate::controller::link::{ControllerLink, LinkError};
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
        if let Some(link) = self.controller_link().cloned() {
            return self.metadata_cluster(req, r, link).await;
        }
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
        let mut registry = self.registry.lock().await;
        let wanted = match r.topics {
            None => None,
            Some(t) if t.is_empty() && v == 0 => None,
            Some(t) => Some(t),
        };
        match wanted {
            None => {
                for (name, meta) in &registry.topics {
                    resp.topics.push(self.describe_topic(name, meta));
                }
            }
            Some(topics) => {
                for t in topics {
                    let name = match t.name {
                        Some(n) => n.0.as_str().to_string(),
                        None => {
                            let id = t.topic_id.into_bytes();
                            match registry.topics.iter().find(|(_, m)| m.uuid() == id) {
                                Some((name, meta)) => {
                                    resp.topics.push(self.describe_topic(name, meta))
                                }
                                None => {
                                    let mut e =
                                        Self::topic_error(None, error_code::UNKNOWN_TOPIC_ID);
                                    e.topic_id = t.topic_id;
                                    resp.topics.push(e);
                                }
                            }
                            continue;
                        }
                    };
                    if validate_topic_name(&name).is_err() {
                        resp.topics.push(Self::topic_error(
                            Some(&name),
                            error_code::INVALID_TOPIC_EXCEPTION,
                        ));
                        continue;
                    }
                    if let Some(meta) = registry.topics.get(&name) {
                        resp.topics.push(self.describe_topic(&name, meta));
                    } else if allow_auto
                        && self.config.auto_create_topics
                        && name != crate::group::OFFSETS_TOPIC
                    {
                        // Created without the registry lock held (see `Broker::create_topic`).
                        drop(registry);
                        let created = self
                            .ensure_topic(&name, self.config.num_partitions, Default::default())
                            .await;
                        registry = self.registry.lock().await;
                        match created {
                            Ok(meta) => resp.topics.push(self.describe_topic(&name, &meta)),
                            Err((code, _)) => {
                                resp.topics.push(Self::topic_error(Some(&name), code))
                            }
                        }
                    } else {
                        resp.topics.push(Self::topic_error(
                            Some(&name),
                            error_code::UNKNOWN_TOPIC_OR_PARTITION,
                        ));
                    }
                }
            }
        }
        drop(registry);
        let frame = protocol::encode_response(ApiKey::Metadata, v, req.correlation_id, &resp)
            .map_err(|why| RequestError::BadBody { api: "Metadata", version: v, why })?;
        Ok(Outcome::frame(frame))
    }

    fn describe_image_topic(img: &MetadataImage, t: &TopicImage) -> MetadataResponseTopic {
        let mut out = MetadataResponseTopic::default();
        out.name = Some(TopicName(sb(&t.name)));
        out.topic_id = uuid::Uuid::from_bytes(t.id.0);
        out.is_internal = t.name == crate::group::OFFSETS_TOPIC;
        out.partitions = t
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut mp = MetadataResponsePartition::default();
                mp.partition_index = i as i32;
                mp.leader_id = BrokerId(p.leader);
                mp.leader_epoch = p.leader_epoch;
                mp.replica_nodes = p.replicas.iter().map(|r| BrokerId(*r)).collect();
                mp.isr_nodes = p.isr.iter().map(|r| BrokerId(*r)).collect();
                mp.offline_replicas =
                    p.replicas.iter().filter(|r| !img.is_live(**r)).map(|r| BrokerId(*r)).collect();
                if p.leader == NO_LEADER {
                    mp.error_code = error_code::LEADER_NOT_AVAILABLE;
                }
                mp
            })
            .collect();
        out
    }

    /// Combined mode: every live broker and the topics of the controller's committed image;
    /// auto-creation goes through the controller. Every broker forwards admin requests to the
    /// controller, so each names itself as `controller_id` (as KIP-590 brokers do).
    async fn metadata_cluster(
        &self,
        req: &Request,
        r: MetadataRequest,
        link: Arc<dyn ControllerLink>,
    ) -> Result<Outcome, RequestError> {
        let v = req.api_version;
        let allow_auto = if v >= 4 { r.allow_auto_topic_creation } else { true };
        let wanted = match r.topics {
            None => None,
            Some(t) if t.is_empty() && v == 0 => None,
            Some(t) => Some(t),
        };
        let mut failed: std::collections::BTreeMap<String, i16> = Default::default();
        if let Some(topics) = &wanted {
            let known = link.metadata().borrow().clone();
            for t in topics {
                let Some(name) = t.name.as_ref().map(|n| n.0.as_str().to_string()) else {
                    continue;
                };
                let creatable = allow_auto
                    && self.config.auto_create_topics
                    && name != crate::group::OFFSETS_TOPIC
                    && validate_topic_name(&name).is_ok();
                if known.topic_ids.contains_key(&name) || !creatable {
                    continue;
                }
                let partitions = u32::try_from(self.config.num_partitions).unwrap_or(1);
                let rf = u16::try_from(self.config.default_replication_factor).unwrap_or(1);
                match link.create_topic(&name, partitions, rf).await {
                    Ok(_) | Err(LinkError::Controller(ControllerError::TopicAlreadyExists)) => {}
                    Err(e) => {
                        let (code, msg) = crate::controller::local::link_error_code(&e);
                        tracing::info!(topic = %name, code, %msg, "auto-creation through the controller failed");
                        failed.insert(name, code);
                    }
                }
            }
        }
        let img = link.metadata().borrow().clone();
        let mut resp = MetadataResponse::default();
        resp.brokers = img
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| {
                let mut mb = MetadataResponseBroker::default();
                mb.node_id = BrokerId(b.broker_id);
                mb.host = sb(&b.endpoint.host);
                mb.port = i32::from(b.endpoint.port);
                mb
            })
            .collect();
        resp.cluster_id = Some(sb(&self.config.cluster_id));
        resp.controller_id = BrokerId(self.config.node_id);
        match wanted {
            None => {
                resp.topics =
                    img.topics.values().map(|t| Self::describe_image_topic(&img, t)).collect()
            }
            Some(topics) => {
                for t in topics {
                    let found = match &t.name {
                        Some(n) => {
                            img.topic_ids.get(n.0.as_str()).and_then(|id| img.topics.get(id))
                        }
                        None => {
                            img.topics.get(&cluster::metadata::TopicId(t.topic_id.into_bytes()))
                        }
                    };
                    match (found, &t.name) {
                        (Some(ti), _) => resp.topics.push(Self::describe_image_topic(&img, ti)),
                        (None, None) => {
                            let mut e = Self::topic_error(None, error_code::UNKNOWN_TOPIC_ID);
                            e.topic_id = t.topic_id;
                            resp.topics.push(e);
                        }
                        (None, Some(n)) => {
                            let name = n.0.as_str();
                            let code = if validate_topic_name(name).is_err() {
                                error_code::INVALID_TOPIC_EXCEPTION
                            } else {
                                failed
                                    .get(name)
                                    .copied()
                                    .unwrap_or(error_code::UNKNOWN_TOPIC_OR_PARTITION)
                            };
                            resp.topics.push(Self::topic_error(Some(name), code));
                        }
                    }
                }
            }
        }
        let frame = protocol::encode_response(ApiKey::Metadata, v, req.correlation_id, &resp)
            .map_err(|why| RequestError::BadBody { api: "Metadata", version: v, why })?;
        Ok(Outcome::frame(frame))
    }
}
