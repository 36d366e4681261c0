//! DescribeConfigs v1-4, AlterConfigs v0-2, IncrementalAlterConfigs v0-1: topic and broker
//! resources.
//!
//! Topic configs are the keys of [`TOPIC_CONFIGS`] (one definition: `LogConfig::set`/`get`).
//! A topic's overrides live in the controller's metadata in combined mode (`Record::Config`,
//! replicated, replayed at restart) and in the topic registry on a single node; either way every
//! broker applies them to its live logs ([`Broker::apply_topic_configs`]): later appends, rolls,
//! retention, cleaning and the leader's `min.insync.replicas` follow at once.
//!
//! Broker resources are described (the static `server.properties` settings, with their source);
//! this broker has no dynamic broker configs yet, so altering one answers INVALID_REQUEST naming
//! the key. `validate_only` checks everything and changes nothing.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};
use kafka_protocol::messages::ApiKey;

use crate::broker::{Broker, Outcome};
use crate::log::config::TOPIC_CONFIGS;
use crate::log::{LogConfig, TopicPartition};
use crate::protocol::{self, decode_body, error_code, Request, RequestError};

use super::sb;

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// Kafka's `ConfigSource` (DescribeConfigs v1+).
mod source {
    pub const TOPIC_CONFIG: i8 = 1;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
}

/// Resources in one request.
const RESOURCES_PER_REQUEST_MAX: usize = 1_000;

/// Kafka's `ConfigType` (DescribeConfigs v3+, KIP-569) of a topic config.
fn config_type(key: &str) -> i8 {
    const BOOLEAN: i8 = 1;
    const STRING: i8 = 2;
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const DOUBLE: i8 = 6;
    const LIST: i8 = 7;
    match key {
        "unclean.leader.election.enable" => BOOLEAN,
        "compression.type" | "message.timestamp.type" => STRING,
        "cleanup.policy" => LIST,
        "min.cleanable.dirty.ratio" => DOUBLE,
        "segment.bytes"
        | "segment.index.bytes"
        | "index.interval.bytes"
        | "max.message.bytes"
        | "min.insync.replicas" => INT,
        _ => LONG,
    }
}

fn wanted(keys: &Option<Vec<kafka_protocol::protocol::StrBytes>>, key: &str) -> bool {
    keys.as_ref().is_none_or(|ks| ks.is_empty() || ks.iter().any(|k| k.as_str() == key))
}

fn synonym(name: &str, value: Option<String>, source: i8) -> DescribeConfigsSynonym {
    let mut s = DescribeConfigsSynonym::default();
    s.name = sb(name);
    s.value = value.as_deref().map(sb);
    s.source = source;
    s
}

impl Broker {
    /// A topic's config overrides and partition count, from the image in combined mode and the
    /// registry on a single node (`None`: no such topic).
    pub(crate) async fn topic_overrides(
        &self,
        topic: &str,
    ) -> Option<(BTreeMap<String, String>, i32)> {
        if let Some(img) = self.cluster_image() {
            let id = img.topic_ids.get(topic)?;
            let n = i32::try_from(img.topics.get(id)?.partitions.len()).unwrap_or(i32::MAX);
            return Some((img.topic_config_map(topic), n));
        }
        let registry = self.registry.lock().await;
        registry.topics.get(topic).map(|m| (m.configs.clone(), m.partitions))
    }

    /// Makes `configs` the overrides of `topic` here: the registry (stored), every local log of
    /// the topic, and the leader's `min.insync.replicas`. Partitions are locked one at a time.
    pub(crate) async fn apply_topic_configs(
        &self,
        topic: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), (i16, String)> {
        let (cfg, partitions) = {
            let mut registry = self.registry.lock().await;
            let Some(meta) = registry.topics.get_mut(topic) else {
                return Err((error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {topic}")));
            };
            if meta.configs == configs {
                return Ok(());
            }
            meta.configs = configs;
            let (cfg, n) = (meta.log_config(&self.config.log), meta.partitions);
            registry
                .store(self.storage.as_ref(), &self.root)
                .await
                .map_err(|e| (error_code::KAFKA_STORAGE_ERROR, e.to_string()))?;
            (cfg, n)
        };
        for p in 0..partitions {
            let tp = TopicPartition::new(topic, p);
            let Some(part) = self.partition(&tp) else { continue };
            let Some(mut data) = part.data().await else { continue };
            data.log.set_config(cfg.clone());
            self.replicas.set_min_insync_replicas(&tp, cfg.min_insync_replicas as usize);
            drop(data);
        }
        tracing::info!(topic, "topic configs applied");
        Ok(())
    }

    /// Combined mode: brings every local topic's overrides to the image's (after a restart, a
    /// change through another broker, a new controller).
    pub(crate) async fn sync_topic_configs(&self, image: &cluster::metadata::MetadataImage) {
        let stale: Vec<(String, BTreeMap<String, String>)> = {
            let registry = self.registry.lock().await;
            registry
                .topics
                .iter()
                .filter(|(name, _)| name.as_str() != crate::group::OFFSETS_TOPIC)
                .filter(|(name, _)| image.topic_ids.contains_key(name.as_str()))
                .filter(|(name, m)| m.configs != image.topic_config_map(name))
                .map(|(name, _)| (name.clone(), image.topic_config_map(name)))
                .collect()
        };
        for (name, configs) in stale {
            if let Err((code, msg)) = self.apply_topic_configs(&name, configs).await {
                tracing::warn!(topic = %name, code, %msg, "topic configs not applied");
            }
        }
    }

    pub(crate) async fn describe_configs(&self, req: &Request) -> Result<Outcome, RequestError> {
        let r: DescribeConfigsRequest = decode_body(req)?;
        let v = req.api_version;
        let mut resp = DescribeConfigsResponse::default();
        for res in r.resources.iter().take(RESOURCES_PER_REQUEST_MAX) {
            let mut out = DescribeConfigsResult::default();
            out.resource_type = res.resource_type;
            out.resource_name = res.resource_name.clone();
            let described = match res.resource_type {
                RESOURCE_TOPIC => self.describe_topic_configs(res, r.include_synonyms, v).await,
                RESOURCE_BROKER => self.describe_broker_configs(res, r.include_synonyms, v),
                t => Err((
                    error_code::INVALID_REQUEST,
                    format!("resource type {t} is not supported"),
                )),
            };
            match described {
                Ok(configs) => out.configs = configs,
                Err((code, msg)) => {
                    out.error_code = code;
                    out.error_message = Some(sb(&msg));
                }
            }
            resp.results.push(out);
        }
        let frame =
            protocol::encode_response(ApiKey::DescribeConfigs, v, req.correlation_id, &resp)
                .map_err(|why| RequestError::BadBody { api: "DescribeConfigs", version: v, why })?;
        Ok(Outcome::frame(frame))
    }

    async fn describe_topic_configs(
        &self,
        res: &DescribeConfigsResource,
        synonyms: bool,
        v: i16,
    ) -> Result<Vec<DescribeConfigsResourceResult>, (i16, String)> {
        let name = res.resource_name.as_str();
        let Some((overrides, _)) = self.topic_overrides(name).await else {
            return Err((error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {name}")));
        };
        let statics = &self.config.log;
        let defaults = LogConfig::default();
        let mut effective = statics.clone();
        for (k, val) in &overrides {
            let _ = effective.set(k, val);
        }
        let mut out = Vec::new();
        for (key, broker_key) in
            TOPIC_CONFIGS.iter().filter(|(k, _)| wanted(&res.configuration_keys, k))
        {
            let static_set = statics.get(key) != defaults.get(key);
            let mut c = DescribeConfigsResourceResult::default();
            c.name = sb(key);
            // An override shows as stored (Kafka keeps a list's order), the rest as in force.
            let value = overrides.get(*key).cloned().or_else(|| effective.get(key));
            c.value = value.as_deref().map(sb);
            c.config_source = match (overrides.contains_key(*key), static_set) {
                (true, _) => source::TOPIC_CONFIG,
                (false, true) => source::STATIC_BROKER_CONFIG,
                (false, false) => source::DEFAULT_CONFIG,
            };
            if synonyms {
                if overrides.contains_key(*key) {
                    c.synonyms.push(synonym(key, value.clone(), source::TOPIC_CONFIG));
                }
                if static_set {
                    c.synonyms.push(synonym(
                        broker_key,
                        statics.get(key),
                        source::STATIC_BROKER_CONFIG,
                    ));
                }
                c.synonyms.push(synonym(broker_key, defaults.get(key), source::DEFAULT_CONFIG));
            }
            if v >= 3 {
                c.config_type = config_type(key);
            }
            out.push(c);
        }
        Ok(out)
    }

    /// This broker's static settings (`BrokerConfig::effective`), read-only; the admin token is
    /// sensitive (its value is never shown).
    fn describe_broker_configs(
        &self,
        res: &DescribeConfigsResource,
        synonyms: bool,
        v: i16,
    ) -> Result<Vec<DescribeConfigsResourceResult>, (i16, String)> {
        let name = res.resource_name.as_str();
        if !(name.is_empty() || name == self.config.node_id.to_string()) {
            return Err((
                error_code::INVALID_REQUEST,
                format!("broker {name}'s configs are described by broker {name}"),
            ));
        }
        let defaults = crate::config::BrokerConfig::default().effective();
        let mut out = Vec::new();
        for (key, value) in self.config.effective() {
            if !wanted(&res.configuration_keys, key) {
                continue;
            }
            let sensitive = key == "loglab.admin.token";
            let source = if defaults.get(key) == Some(&value) {
                source::DEFAULT_CONFIG
            } else {
                source::STATIC_BROKER_CONFIG
            };
            let mut c = DescribeConfigsResourceResult::default();
            c.name = sb(key);
            c.value = (!sensitive).then(|| sb(&value));
            c.read_only = true;
            c.is_sensitive = sensitive;
            c.config_source = source;
            if synonyms {
                c.synonyms.push(synonym(key, (!sensitive).then(|| value.clone()), source));
            }
            if v >= 3 {
                c.config_type = if sensitive { 9 } else { 2 };
            }
            out.push(c);
        }
        Ok(out)
    }
}
