//! CreatePartitions v0-3: grows a topic. A single node adds the logs and the registry count; in
//! combined mode the controller appends the new partitions (replicas placed round-robin over live
//! brokers, the topic's replication factor) and every broker follows the image.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::ApiKey;

use crate::broker::{Broker, Outcome};
use crate::controller::link::ControllerLink;
use crate::log::TopicPartition;
use crate::protocol::{self, decode_body, error_code, Request, RequestError};

use super::sb;

type Refusal = (i16, String);

impl Broker {
    pub(crate) async fn create_partitions(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: CreatePartitionsRequest = decode_body(req)?;
        let v = req.api_version;
        let mut resp = CreatePartitionsResponse::default();
        let link = self.controller_link().cloned();
        let mut seen = std::collections::BTreeSet::new();
        for t in &r.topics {
            let name = t.name.0.as_str().to_string();
            let outcome = if !seen.insert(name.clone()) {
                Err((error_code::INVALID_REQUEST, format!("topic {name} appears twice")))
            } else {
                match &link {
                    Some(link) => self.grow_in_cluster(t, r.validate_only, link.clone()).await,
                    None => self.grow_single(t, r.validate_only).await,
                }
            };
            let mut res = CreatePartitionsTopicResult::default();
            res.name = t.name.clone();
            if let Err((code, msg)) = outcome {
                tracing::info!(topic = %name, code, %msg, "CreatePartitions refused");
                res.error_code = code;
                res.error_message = Some(sb(&msg));
            } else {
                tracing::info!(topic = %name, count = t.count, validate_only = r.validate_only, "CreatePartitions");
            }
            resp.results.push(res);
        }
        let frame =
            protocol::encode_response(ApiKey::CreatePartitions, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody {
                    api: "CreatePartitions",
                    version: v,
                    why,
                })?;
        Ok(Outcome::frame(frame))
    }

    /// Kafka's checks of one topic's request against its current partition count `have`.
    fn check_growth(&self, t: &CreatePartitionsTopic, have: i32) -> Result<(), Refusal> {
        let name = t.name.0.as_str();
        if name == crate::group::OFFSETS_TOPIC {
            return Err((
                error_code::INVALID_REQUEST,
                format!("the partitions of internal topic {name} cannot be changed"),
            ));
        }
        if t.count < have {
            return Err((
                error_code::INVALID_PARTITIONS,
                format!(
                    "topic {name} has {have} partitions; the count cannot decrease to {}",
                    t.count
                ),
            ));
        }
        if t.count == have {
            return Err((
                error_code::INVALID_PARTITIONS,
                format!("topic {name} already has {have} partitions"),
            ));
        }
        if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            return Err((
                error_code::INVALID_REQUEST,
                "manual replica assignment of new partitions is not supported".to_string(),
            ));
        }
        Ok(())
    }

    async fn grow_single(
        &self,
        t: &CreatePartitionsTopic,
        validate_only: bool,
    ) -> Result<(), Refusal> {
        let name = t.name.0.as_str();
        let _admin = self.topic_admin.lock().await;
        {
            let registry = self.registry.lock().await;
            let Some(meta) = registry.topics.get(name) else {
                return Err((
                    error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic {name} does not exist"),
                ));
            };
            self.check_growth(t, meta.partitions)?;
            self.check_broker_partitions(&registry, t.count - meta.partitions)?;
        }
        if validate_only {
            return Ok(());
        }
        self.grow_topic_admin_held(name, t.count).await
    }

    async fn grow_in_cluster(
        &self,
        t: &CreatePartitionsTopic,
        validate_only: bool,
        link: Arc<dyn ControllerLink>,
    ) -> Result<(), Refusal> {
        let name = t.name.0.as_str();
        let img = link.metadata().borrow().clone();
        let topic = img.topic_ids.get(name).and_then(|id| img.topics.get(id));
        let Some(topic) = topic else {
            return Err((
                error_code::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic {name} does not exist"),
            ));
        };
        let have = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        self.check_growth(t, have)?;
        // Every broker keeps a log of every partition here (see `reconcile_topics`).
        self.check_broker_partitions_now(t.count - have).await?;
        let rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
        if validate_only {
            let live = img.live_brokers().len();
            if rf > live {
                return Err((
                    error_code::INVALID_REPLICATION_FACTOR,
                    format!("replication factor {rf} is larger than {live} live brokers"),
                ));
            }
            return Ok(());
        }
        let count = u32::try_from(t.count).unwrap_or(0);
        link.create_partitions(name, count)
            .await
            .map_err(|e| crate::controller::local::link_error_code(&e))?;
        // Local logs now, so a produce right after the answer finds them.
        let img = link.metadata().borrow().clone();
        self.reconcile_topics(&img).await;
        Ok(())
    }

    /// Grows registered topic `name` to `count` partitions: the registry first (stored), then the
    /// new logs. The caller holds `topic_admin`; `count` below the current count changes nothing.
    pub(crate) async fn grow_topic_admin_held(
        &self,
        name: &str,
        count: i32,
    ) -> Result<(), Refusal> {
        let (from, cfg, id) = {
            let mut registry = self.registry.lock().await;
            let defaults = self.log_defaults_with(&registry);
            let Some(meta) = registry.topics.get_mut(name) else {
                return Err((
                    error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("topic {name} does not exist"),
                ));
            };
            let from = meta.partitions;
            if count <= from {
                return Ok(());
            }
            meta.partitions = count;
            let cfg = meta.log_config(&defaults);
            if let Err(e) = registry.store(self.storage.as_ref(), &self.root).await {
                if let Some(meta) = registry.topics.get_mut(name) {
                    meta.partitions = from;
                }
                return Err((error_code::KAFKA_STORAGE_ERROR, e.to_string()));
            }
            (from, cfg, meta_id(&registry, name))
        };
        let now = crate::now_ms();
        for p in from..count {
            self.create_partition(TopicPartition::new(name, p), cfg.clone(), now, id)
                .await
                .map_err(|e| (error_code::KAFKA_STORAGE_ERROR, e.to_string()))?;
            tokio::task::yield_now().await;
        }
        tracing::info!(topic = name, from, to = count, "topic grown");
        Ok(())
    }
}

/// The topic id of registered topic `name` (zeros if it is gone).
fn meta_id(registry: &crate::topics::Registry, name: &str) -> [u8; 16] {
    registry.topics.get(name).map_or([0; 16], |m| m.uuid())
}
