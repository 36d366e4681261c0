//! DescribeConfigs v1-4, AlterConfigs v0-2, IncrementalAlterConfigs v0-1: topic and broker
//! resources.
//!
//! Topic configs are the keys of [`TOPIC_CONFIGS`] (one definition: `LogConfig::set`/`get`).
//! A topic's overrides live in the controller's metadata in combined mode (`Record::Config`,
//! replicated, replayed at restart) and in the topic registry on a single node; either way every
//! broker applies them to its live logs ([`Broker::apply_topic_configs`]): later appends, rolls,
//! retention, cleaning and the leader's `min.insync.replicas` follow at once.
//!
//! Broker resources are described (the `server.properties` settings and the dynamic broker
//! configs, with their source); the dynamic ones are the log defaults of `api/dynamic_configs.rs`,
//! and altering any other answers INVALID_REQUEST naming the key. `validate_only` checks
//! everything and changes nothing.

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
    pub const DYNAMIC_BROKER_CONFIG: i8 = 2;
    pub const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
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
        force: bool,
    ) -> Result<(), (i16, String)> {
        let (cfg, partitions) = {
            let mut registry = self.registry.lock().await;
            let defaults = self.log_defaults_with(&registry);
            let Some(meta) = registry.topics.get_mut(topic) else {
                return Err((error_code::UNKNOWN_TOPIC_OR_PARTITION, format!("no topic {topic}")));
            };
            if meta.configs == configs && !force {
                return Ok(());
            }
            meta.configs = configs;
            let (cfg, n) = (meta.log_config(&defaults), meta.partitions);
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
    /// change through another broker, a new controller), and every topic's config again when
    /// the dynamic broker configs changed.
    pub(crate) async fn sync_topic_configs(&self, image: &cluster::metadata::MetadataImage) {
        let defaults_changed = {
            let mut seen = self.dynamic_configs_seen.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *seen != image.broker_configs;
            if changed {
                seen.clone_from(&image.broker_configs);
            }
            changed
        };
        let stale: Vec<(String, BTreeMap<String, String>)> = {
            let registry = self.registry.lock().await;
            registry
                .topics
                .iter()
                .filter(|(name, _)| name.as_str() != crate::group::OFFSETS_TOPIC)
                .filter(|(name, _)| image.topic_ids.contains_key(name.as_str()))
                .filter(|(name, m)| defaults_changed || m.configs != image.topic_config_map(name))
                .map(|(name, _)| (name.clone(), image.topic_config_map(name)))
                .collect()
        };
        for (name, configs) in stale {
            if let Err((code, msg)) =
                self.apply_topic_configs(&name, configs, defaults_changed).await
            {
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
                RESOURCE_BROKER => self.describe_broker_configs(res, r.include_synonyms, v).await,
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
        let dynamic = self.dynamic_configs_with(&*self.registry.lock().await);
        let (cluster_wide, own) = (dynamic.get(""), dynamic.get(&self.config.node_id.to_string()));
        let mut effective =
            crate::api::dynamic_configs::layered(statics, &dynamic, self.config.node_id);
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
            let own_v = own.and_then(|m| m.get(*broker_key)).cloned();
            let cluster_v = cluster_wide.and_then(|m| m.get(*broker_key)).cloned();
            c.config_source = if overrides.contains_key(*key) {
                source::TOPIC_CONFIG
            } else if own_v.is_some() {
                source::DYNAMIC_BROKER_CONFIG
            } else if cluster_v.is_some() {
                source::DYNAMIC_DEFAULT_BROKER_CONFIG
            } else if static_set {
                source::STATIC_BROKER_CONFIG
            } else {
                source::DEFAULT_CONFIG
            };
            if synonyms {
                if overrides.contains_key(*key) {
                    c.synonyms.push(synonym(key, value.clone(), source::TOPIC_CONFIG));
                }
                if own_v.is_some() {
                    c.synonyms.push(synonym(broker_key, own_v, source::DYNAMIC_BROKER_CONFIG));
                }
                if cluster_v.is_some() {
                    c.synonyms.push(synonym(
                        broker_key,
                        cluster_v,
                        source::DYNAMIC_DEFAULT_BROKER_CONFIG,
                    ));
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

    /// This broker's settings (`BrokerConfig::effective`): the static ones read-only (the admin
    /// token sensitive, its value never shown), the dynamic log configs writable, with the value
    /// in force and its source (this broker's dynamic config, the cluster-wide one, static,
    /// default). Resource `""` describes the cluster-wide dynamic configs alone, as Kafka does.
    async fn describe_broker_configs(
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
        let dynamic = self.dynamic_configs_with(&*self.registry.lock().await);
        let empty = BTreeMap::new();
        let cluster_wide = dynamic.get("").unwrap_or(&empty);
        if name.is_empty() {
            return Ok(cluster_wide
                .iter()
                .filter(|(k, _)| wanted(&res.configuration_keys, k))
                .map(|(k, val)| {
                    let mut c = DescribeConfigsResourceResult::default();
                    c.name = sb(k);
                    c.value = Some(sb(val));
                    c.config_source = source::DYNAMIC_DEFAULT_BROKER_CONFIG;
                    if synonyms {
                        c.synonyms.push(synonym(k, Some(val.clone()), c.config_source));
                    }
                    if v >= 3 {
                        c.config_type = 2;
                    }
                    c
                })
                .collect());
        }
        let own = dynamic.get(name).unwrap_or(&empty);
        let mut all: BTreeMap<String, String> =
            self.config.effective().into_iter().map(|(k, val)| (k.to_string(), val)).collect();
        for (k, val) in cluster_wide.iter().chain(own.iter()) {
            all.insert(k.clone(), val.clone());
        }
        let defaults = crate::config::BrokerConfig::default().effective();
        let mut out = Vec::new();
        for (key, value) in all {
            let key = key.as_str();
            if !wanted(&res.configuration_keys, key) {
                continue;
            }
            let sensitive = key == "loglab.admin.token";
            let source = if own.contains_key(key) {
                source::DYNAMIC_BROKER_CONFIG
            } else if cluster_wide.contains_key(key) {
                source::DYNAMIC_DEFAULT_BROKER_CONFIG
            } else if defaults.get(key) == Some(&value) {
                source::DEFAULT_CONFIG
            } else {
                source::STATIC_BROKER_CONFIG
            };
            let mut c = DescribeConfigsResourceResult::default();
            c.name = sb(key);
            c.value = (!sensitive).then(|| sb(&value));
            c.read_only = crate::api::dynamic_configs::topic_key_of(key).is_none();
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
