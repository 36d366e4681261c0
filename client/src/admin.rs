//! Topic administration: CreateTopics, CreatePartitions, DeleteTopics, and listing/describing
//! topics by Metadata.
//! Requests go to the controller named in metadata (any broker when none is named).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use net_model::Network;
use thiserror::Error;

use crate::cluster::{Cluster, Metadata, TopicMetadata};
use crate::conn::{Conn, ConnConfig, ConnError, DEFAULT_MAX_RESPONSE_BYTES};
use crate::errors::{self, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub bootstrap_servers: Vec<String>,
    pub client_id: String,
    pub request_timeout_ms: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: Vec::new(),
            client_id: "loglab-admin".into(),
            request_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker's `num.partitions`.
    pub num_partitions: i32,
    /// -1: the broker's `default.replication.factor`.
    pub replication_factor: i16,
    /// Topic configs under Kafka's names (`retention.ms`, `segment.bytes`, ...).
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, num_partitions: i32, replication_factor: i16) -> Self {
        Self { name: name.into(), num_partitions, replication_factor, configs: BTreeMap::new() }
    }

    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AdminError {
    #[error("topic `{topic}`: {name} (error code {code}){}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Topic { topic: String, code: i16, name: &'static str, message: Option<String> },
    #[error("topic `{topic}` missing from the response")]
    Missing { topic: String },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl AdminError {
    /// The Kafka error code, for per-topic errors.
    pub fn code(&self) -> Option<i16> {
        match self {
            AdminError::Topic { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Per topic: `Ok` or its error, in request order.
pub type TopicResults = Vec<(String, Result<(), AdminError>)>;

#[derive(Debug)]
pub struct Admin {
    cfg: AdminConfig,
    cluster: Arc<Cluster>,
}

impl Admin {
    pub fn new(cfg: AdminConfig, net: Arc<dyn Network>) -> Self {
        let conn_cfg = ConnConfig {
            client_id: cfg.client_id.clone(),
            request_timeout: Duration::from_millis(cfg.request_timeout_ms),
            max_in_flight: 5,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            connect_timeout: Duration::from_millis(cfg.request_timeout_ms.min(10_000)),
            ..ConnConfig::default()
        };
        let cluster = Arc::new(Cluster::new(net, cfg.bootstrap_servers.clone(), conn_cfg));
        Self { cfg, cluster }
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    async fn controller(&self) -> Result<Arc<Conn>, ConnError> {
        let m = self.cluster.refresh_metadata(Some(&[]), false).await?;
        if m.brokers.contains_key(&m.controller_id) {
            if let Ok(c) = self.cluster.node_conn(m.controller_id).await {
                return Ok(c);
            }
        }
        self.cluster.any_conn().await
    }

    fn timeout_ms(&self) -> i32 {
        self.cfg.request_timeout_ms.min(i32::MAX as u64) as i32
    }

    /// Creates topics; one result per topic.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<TopicResults, AdminError> {
        let conn = self.controller().await?;
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_validate_only(false)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                            .with_num_partitions(t.num_partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
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
        let resp = conn.request(&req).await?;
        let answers =
            resp.topics.into_iter().map(|t| (t.name.to_string(), t.error_code, t.error_message));
        Ok(results(topics.iter().map(|t| &t.name), answers))
    }

    /// Grows topics to the given partition counts (Kafka's `createPartitions`; new partitions
    /// only, a smaller count is refused with `INVALID_PARTITIONS`); one result per topic. The
    /// broker places the new replicas.
    pub async fn create_partitions(
        &self,
        counts: &[(String, i32)],
    ) -> Result<TopicResults, AdminError> {
        let conn = self.controller().await?;
        let topics = counts
            .iter()
            .map(|(name, count)| {
                CreatePartitionsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_count(*count)
            })
            .collect();
        let req = CreatePartitionsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(self.timeout_ms())
            .with_validate_only(false);
        let resp = conn.request(&req).await?;
        let answers =
            resp.results.into_iter().map(|r| (r.name.to_string(), r.error_code, r.error_message));
        Ok(results(counts.iter().map(|(name, _)| name), answers))
    }

    /// Creates one topic.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<(), AdminError> {
        let mut r = self.create_topics(std::slice::from_ref(&topic)).await?;
        r.pop().map(|(_, r)| r).unwrap_or(Err(AdminError::Missing { topic: topic.name }))
    }

    /// Deletes topics by name; one result per topic.
    pub async fn delete_topics(&self, names: &[String]) -> Result<TopicResults, AdminError> {
        let conn = self.controller().await?;
        let req =
            DeleteTopicsRequest::default().with_timeout_ms(self.timeout_ms()).with_topic_names(
                names.iter().map(|n| TopicName(StrBytes::from_string(n.clone()))).collect(),
            );
        let resp = conn.request(&req).await?;
        let answers = resp
            .responses
            .into_iter()
            .filter_map(|r| r.name.map(|n| (n.to_string(), r.error_code, r.error_message)));
        Ok(results(names.iter(), answers))
    }

    /// Names of all (non-internal) topics.
    pub async fn list_topics(&self) -> Result<Vec<String>, AdminError> {
        let m = self.cluster.refresh_metadata(None, false).await?;
        Ok(m.topics
            .values()
            .filter(|t| !t.is_internal && t.error_code == ErrorCode::NONE)
            .map(|t| t.name.clone())
            .collect())
    }

    /// Metadata of the given topics (without auto-creating them).
    pub async fn describe_topics(
        &self,
        names: &[String],
    ) -> Result<BTreeMap<String, Result<TopicMetadata, AdminError>>, AdminError> {
        let m: Metadata = self.cluster.refresh_metadata(Some(names), false).await?;
        Ok(names
            .iter()
            .map(|n| {
                let r = match m.topics.get(n) {
                    None => Err(AdminError::Missing { topic: n.clone() }),
                    Some(t) if t.error_code == ErrorCode::NONE => Ok(t.clone()),
                    Some(t) => Err(AdminError::Topic {
                        topic: n.clone(),
                        code: t.error_code,
                        name: errors::error_name(t.error_code),
                        message: None,
                    }),
                };
                (n.clone(), r)
            })
            .collect())
    }

    pub async fn close(&self) {
        self.cluster.close().await;
    }
}

/// One result per topic asked about, in the order asked, from the broker's per-topic answers
/// (name, error code, message); a topic the broker did not answer for is `Missing`.
fn results<'a>(
    asked: impl Iterator<Item = &'a String>,
    answers: impl Iterator<Item = (String, i16, Option<StrBytes>)>,
) -> TopicResults {
    let mut by_name: BTreeMap<String, (i16, Option<String>)> = answers
        .map(|(name, code, message)| (name, (code, message.map(|m| m.to_string()))))
        .collect();
    asked
        .map(|topic| {
            let r = match by_name.remove(topic) {
                None => Err(AdminError::Missing { topic: topic.clone() }),
                Some((0, _)) => Ok(()),
                Some((code, message)) => Err(AdminError::Topic {
                    topic: topic.clone(),
                    code,
                    name: errors::error_name(code),
                    message,
                }),
            };
            (topic.clone(), r)
        })
        .collect()
}
