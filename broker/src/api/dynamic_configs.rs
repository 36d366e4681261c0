//! Dynamic broker configs (Kafka's `DynamicLogConfig`): the broker spellings of the topic configs
//! (`log.retention.ms`, `log.segment.bytes`, `message.max.bytes`, `min.insync.replicas`, ...: the
//! second column of [`TOPIC_CONFIGS`]) can be changed while brokers run, cluster-wide (broker
//! resource `""`) or for one broker (its id), by IncrementalAlterConfigs or AlterConfigs. They are
//! the defaults of every topic without an override of its own; a log's config is the static
//! `server.properties` value, then the cluster-wide dynamic one, then the broker's own, then the
//! topic's. They live in the controller's metadata in combined mode (`Record::Config`, replayed
//! at restart, applied by every broker as it follows the image) and in the topic registry on a
//! single node. Other broker configs answer INVALID_REQUEST naming the key: set them in
//! `server.properties`.

use std::collections::BTreeMap;

use cluster::metadata::ConfigResource;

use super::alter_configs::{topic_after, Op};
use crate::broker::Broker;
use crate::log::config::TOPIC_CONFIGS;
use crate::log::LogConfig;
use crate::protocol::error_code;
use crate::topics::Registry;

/// Dynamic configs by broker resource name: `""` (cluster-wide) or a broker id.
pub type BrokerConfigs = BTreeMap<String, BTreeMap<String, String>>;

type Outcome1 = Result<(), (i16, String)>;

/// The topic config a dynamic broker config is the default of (`None`: not dynamic).
pub(crate) fn topic_key_of(broker_key: &str) -> Option<&'static str> {
    TOPIC_CONFIGS.iter().find(|(_, b)| *b == broker_key).map(|(t, _)| *t)
}

/// `statics` with the cluster-wide dynamic configs, then broker `node_id`'s, applied.
pub(crate) fn layered(statics: &LogConfig, configs: &BrokerConfigs, node_id: i32) -> LogConfig {
    let mut c = statics.clone();
    for layer in [configs.get(""), configs.get(&node_id.to_string())].into_iter().flatten() {
        for (k, v) in layer {
            if let Err(e) = c.set(k, v) {
                tracing::warn!(key = %k, error = %e, "ignoring a bad dynamic broker config");
            }
        }
    }
    c
}

/// A broker resource's dynamic configs after `ops` (`replace`: AlterConfigs' meaning). Keys are
/// broker spellings; values are checked as the topic configs they are defaults of.
fn broker_after(
    current: &BTreeMap<String, String>,
    effective: &LogConfig,
    ops: &[(String, Op, Option<String>)],
    replace: bool,
) -> Result<BTreeMap<String, String>, (i16, String)> {
    let to_topic = |k: &str| {
        topic_key_of(k).ok_or_else(|| {
            (
                error_code::INVALID_REQUEST,
                format!("broker config {k} cannot be changed while the broker runs: set it in server.properties"),
            )
        })
    };
    let mut ops_t = Vec::with_capacity(ops.len());
    for (k, op, v) in ops {
        ops_t.push((to_topic(k)?.to_string(), *op, v.clone()));
    }
    let mut current_t = BTreeMap::new();
    for (k, v) in current {
        current_t.insert(to_topic(k)?.to_string(), v.clone());
    }
    let next_t = topic_after(&current_t, effective, &ops_t, replace)?;
    let back = |t: &str| TOPIC_CONFIGS.iter().find(|(k, _)| *k == t).map(|(_, b)| b.to_string());
    Ok(next_t.into_iter().filter_map(|(t, v)| back(&t).map(|b| (b, v))).collect())
}

impl Broker {
    /// Every broker resource's dynamic configs: the image's in combined mode, else the
    /// registry's.
    pub(crate) fn dynamic_configs_with(&self, registry: &Registry) -> BrokerConfigs {
        match self.cluster_image() {
            Some(img) => img.broker_configs.clone(),
            None => registry.broker_configs.clone(),
        }
    }

    /// The defaults of this broker's topics (static, then dynamic) for a caller holding the
    /// registry.
    pub(crate) fn log_defaults_with(&self, registry: &Registry) -> LogConfig {
        layered(&self.config.log, &self.dynamic_configs_with(registry), self.config.node_id)
    }

    /// [`Broker::log_defaults_with`], taking the registry briefly.
    pub(crate) async fn log_defaults(&self) -> LogConfig {
        let registry = self.registry.lock().await;
        self.log_defaults_with(&registry)
    }

    /// The dynamic configs of broker resource `name` (`""` or an id).
    pub(crate) async fn broker_overrides(&self, name: &str) -> BTreeMap<String, String> {
        let registry = self.registry.lock().await;
        self.dynamic_configs_with(&registry).get(name).cloned().unwrap_or_default()
    }

    /// AlterConfigs / IncrementalAlterConfigs of broker resource `name`.
    pub(super) async fn alter_broker(
        &self,
        name: &str,
        ops: &[(String, Op, Option<String>)],
        replace: bool,
        validate_only: bool,
    ) -> Outcome1 {
        if !(name.is_empty() || name.parse::<u32>().is_ok()) {
            return Err((error_code::INVALID_REQUEST, format!("bad broker resource {name:?}")));
        }
        let current = self.broker_overrides(name).await;
        let effective = self.log_defaults().await;
        let next = broker_after(&current, &effective, ops, replace)?;
        if validate_only || next == current {
            return Ok(());
        }
        let Some(link) = self.controller_link().cloned() else {
            {
                let mut registry = self.registry.lock().await;
                if next.is_empty() {
                    registry.broker_configs.remove(name);
                } else {
                    registry.broker_configs.insert(name.to_string(), next);
                }
                registry
                    .store(self.storage.as_ref(), &self.root)
                    .await
                    .map_err(|e| (error_code::KAFKA_STORAGE_ERROR, e.to_string()))?;
            }
            self.reapply_topic_configs().await;
            return Ok(());
        };
        let resource = ConfigResource::Broker(name.to_string());
        self.commit_configs(link.as_ref(), resource, &current, &next).await
    }

    /// Every local topic's config again, from its overrides over the current defaults (after a
    /// dynamic broker config changed).
    pub(crate) async fn reapply_topic_configs(&self) {
        let topics: Vec<(String, BTreeMap<String, String>)> = {
            let registry = self.registry.lock().await;
            registry.topics.iter().map(|(n, m)| (n.clone(), m.configs.clone())).collect()
        };
        for (name, configs) in topics {
            if let Err((code, msg)) = self.apply_topic_configs(&name, configs, true).await {
                tracing::warn!(topic = %name, code, %msg, "topic configs not applied");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_log_configs_are_dynamic_and_values_are_checked() {
        let set = |k: &str, v: &str| (k.to_string(), Op::Set, Some(v.to_string()));
        let none = BTreeMap::new();
        let base = LogConfig::default();
        let next = broker_after(&none, &base, &[set("log.retention.ms", "1000")], false).unwrap();
        assert_eq!(next, BTreeMap::from([("log.retention.ms".into(), "1000".into())]));
        let err = broker_after(&none, &base, &[set("num.partitions", "3")], false).unwrap_err();
        assert_eq!(err.0, error_code::INVALID_REQUEST, "{err:?}");
        let err = broker_after(&none, &base, &[set("retention.ms", "3")], false).unwrap_err();
        assert_eq!(err.0, error_code::INVALID_REQUEST, "the topic spelling is not a broker key");
        let err = broker_after(&none, &base, &[set("log.segment.bytes", "x")], false).unwrap_err();
        assert_eq!(err.0, error_code::INVALID_CONFIG, "{err:?}");
    }

    #[test]
    fn layers_apply_cluster_wide_then_per_broker() {
        let configs: BrokerConfigs = BTreeMap::from([
            (
                "".into(),
                BTreeMap::from([
                    ("log.retention.ms".into(), "1000".into()),
                    ("message.max.bytes".into(), "2000".into()),
                ]),
            ),
            ("3".into(), BTreeMap::from([("log.retention.ms".into(), "5".into())])),
        ]);
        let c = layered(&LogConfig::default(), &configs, 3);
        assert_eq!((c.retention_ms, c.max_message_bytes), (5, 2000));
        let c = layered(&LogConfig::default(), &configs, 1);
        assert_eq!((c.retention_ms, c.max_message_bytes), (1000, 2000));
    }
}
