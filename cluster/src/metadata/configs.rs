//! Config records (Kafka's `ConfigRecord`): topic configs and dynamic broker configs in the
//! metadata log, so every broker's image holds them, they survive restarts (the log is replayed)
//! and they move with the active controller.
//!
//! The controller stores names and values as strings; the broker that takes the request
//! validates values by their Kafka meaning before it forwards them (the controller knows no
//! log settings). `apply` checks only the shape: the resource exists, names are config names,
//! lengths and counts stay within bounds. A `None` value deletes the key.
//!
//! Effective values for the controller's own decisions (`min.insync.replicas`,
//! `unclean.leader.election.enable`): the topic's config, else the cluster-wide dynamic default
//! (broker resource `""`), else the controller's static config ([`ControllerConfig::for_topic`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ApplyError, ControllerConfig, ControllerError, Decision, MetadataImage, Record};

/// Keys one resource may hold.
pub const CONFIGS_PER_RESOURCE_MAX: usize = 256;
/// Length of a config name.
pub const CONFIG_NAME_LEN_MAX: usize = 255;
/// Length of a config value.
pub const CONFIG_VALUE_LEN_MAX: usize = 16 * 1024;
/// Changes in one AlterConfigs decision.
pub const CONFIG_CHANGES_MAX: usize = 1_024;

/// What a config record is about (Kafka's ConfigResource: type 2 = topic, 4 = broker).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// A broker by id (decimal), or `""`: the cluster-wide default of every broker.
    Broker(String),
}

/// One config change: set (`Some`) or delete (`None`) `name` of `resource`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub resource: ConfigResource,
    pub name: String,
    pub value: Option<String>,
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > CONFIG_NAME_LEN_MAX
        || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
    {
        return Err(format!("illegal config name {name:?}"));
    }
    Ok(())
}

impl MetadataImage {
    /// The configs of `resource` (empty if none are set).
    pub fn configs(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        match resource {
            ConfigResource::Topic(t) => self.topic_configs.get(t),
            ConfigResource::Broker(b) => self.broker_configs.get(b),
        }
    }

    /// A topic's config overrides (empty if none).
    pub fn topic_config_map(&self, topic: &str) -> BTreeMap<String, String> {
        self.topic_configs.get(topic).cloned().unwrap_or_default()
    }

    /// The value in force for `name` of `topic` as far as the metadata says: the topic's own,
    /// else the cluster-wide dynamic broker default. `None`: the static config decides.
    pub fn topic_config(&self, topic: &str, name: &str) -> Option<&str> {
        self.topic_configs
            .get(topic)
            .and_then(|c| c.get(name))
            .or_else(|| self.broker_configs.get("").and_then(|c| c.get(name)))
            .map(String::as_str)
    }

    /// Checks a config change against the image (see the module doc).
    pub(super) fn check_config(&self, change: &ConfigChange) -> Result<(), ApplyError> {
        check_name(&change.name).map_err(ApplyError::Invalid)?;
        if change.value.as_ref().is_some_and(|v| v.len() > CONFIG_VALUE_LEN_MAX) {
            return Err(ApplyError::Limit(format!("value of {} too long", change.name)));
        }
        match &change.resource {
            ConfigResource::Topic(t) if !self.topic_ids.contains_key(t) => {
                return Err(ApplyError::Invalid(format!("unknown topic {t}")));
            }
            ConfigResource::Broker(b) if !(b.is_empty() || b.parse::<u32>().is_ok()) => {
                return Err(ApplyError::Invalid(format!("bad broker resource {b:?}")));
            }
            _ => {}
        }
        let existing = self.configs(&change.resource);
        let adds = !existing.is_some_and(|c| c.contains_key(&change.name));
        if change.value.is_some()
            && adds
            && existing.map_or(0, BTreeMap::len) >= CONFIGS_PER_RESOURCE_MAX
        {
            return Err(ApplyError::Limit(format!("{CONFIGS_PER_RESOURCE_MAX} configs")));
        }
        Ok(())
    }

    /// Applies a checked config change.
    pub(super) fn apply_config(&mut self, change: &ConfigChange) {
        let map = match &change.resource {
            ConfigResource::Topic(t) => self.topic_configs.entry(t.clone()).or_default(),
            ConfigResource::Broker(b) => self.broker_configs.entry(b.clone()).or_default(),
        };
        match &change.value {
            Some(v) => {
                map.insert(change.name.clone(), v.clone());
            }
            None => {
                map.remove(&change.name);
            }
        }
        let empty = map.is_empty();
        if empty {
            match &change.resource {
                ConfigResource::Topic(t) => self.topic_configs.remove(t),
                ConfigResource::Broker(b) => self.broker_configs.remove(b),
            };
        }
    }
}

impl ControllerConfig {
    /// This config with `topic`'s overrides of `min.insync.replicas` and
    /// `unclean.leader.election.enable` (an unparsable value keeps the static one); with
    /// `unsafe_elr_disabled`, `min.insync.replicas` is 1 (the controller uses it only for the ELR).
    pub fn for_topic(&self, image: &MetadataImage, topic: &str) -> ControllerConfig {
        let mut c = self.clone();
        if let Some(v) = image.topic_config(topic, "min.insync.replicas") {
            if let Ok(n) = v.trim().parse::<usize>() {
                c.min_insync_replicas = n.max(1);
            }
        }
        if let Some(v) = image.topic_config(topic, "unclean.leader.election.enable") {
            match v.trim() {
                "true" => c.unclean_leader_election_enable = true,
                "false" => c.unclean_leader_election_enable = false,
                _ => {}
            }
        }
        if c.unsafe_elr_disabled {
            // Before KIP-966: the ELR rules never apply (they are empty at min.insync.replicas=1).
            c.min_insync_replicas = 1;
        }
        c
    }
}

/// The records of `changes`, checked in order on a copy of `image` (all or nothing).
pub(super) fn alter_configs(
    image: &MetadataImage,
    changes: &[ConfigChange],
) -> Result<Decision<()>, ControllerError> {
    if changes.len() > CONFIG_CHANGES_MAX {
        return Err(ControllerError::LimitExceeded(format!("{} config changes", changes.len())));
    }
    let mut work = image.clone();
    let mut records = Vec::with_capacity(changes.len());
    for c in changes {
        let record = Record::Config(c.clone());
        work.apply(&record).map_err(|e| match (&c.resource, e) {
            (ConfigResource::Topic(_), ApplyError::Invalid(m))
                if m.starts_with("unknown topic") =>
            {
                ControllerError::UnknownTopicOrPartition
            }
            (_, ApplyError::Limit(m)) => ControllerError::LimitExceeded(m),
            (_, e) => ControllerError::InvalidRequest(e.to_string()),
        })?;
        records.push(record);
    }
    Ok(Decision { records, reply: () })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint { host: "127.0.0.1".into(), port }
    }

    fn apply_all(image: &mut MetadataImage, records: Vec<Record>) {
        for r in records {
            image
                .apply(&r)
                .unwrap_or_else(|e| panic!("decision made a rejected record {r:?}: {e}"));
        }
    }

    /// Brokers 0..n registered and unfenced.
    fn cluster(c: &mut Controller, n: i32) -> MetadataImage {
        let mut image = MetadataImage::default();
        for b in 0..n {
            let d = c.register_broker(&image, b, 1, ep(9092 + b as u16), true, 0).unwrap();
            apply_all(&mut image, d.records);
            let d = c.heartbeat(&image, b, image.brokers[&b].broker_epoch, false, 0).unwrap();
            apply_all(&mut image, d.records);
        }
        image
    }

    fn set(topic: &str, name: &str, value: Option<&str>) -> ConfigChange {
        ConfigChange {
            resource: ConfigResource::Topic(topic.into()),
            name: name.into(),
            value: value.map(str::to_string),
        }
    }

    fn fence(c: &mut Controller, image: &mut MetadataImage, b: BrokerId) {
        let d = c.heartbeat(image, b, image.brokers[&b].broker_epoch, true, 10).unwrap();
        apply_all(image, d.records);
    }

    #[test]
    fn topic_configs_are_created_altered_and_go_with_the_topic() {
        let mut c = Controller::new(ControllerConfig::default());
        let mut image = cluster(&mut c, 3);
        let configs = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
        let d =
            c.create_topic_with_configs(&image, "t", TopicId([1; 16]), 1, 3, 0, &configs).unwrap();
        assert_eq!(d.records.len(), 2, "the topic and its config commit as one decision");
        apply_all(&mut image, d.records);
        assert_eq!(image.topic_config("t", "min.insync.replicas"), Some("2"));
        assert_eq!(c.config.for_topic(&image, "t").min_insync_replicas, 2);
        assert_eq!(c.config.for_topic(&image, "other").min_insync_replicas, 1);
        // A config of an unknown topic is refused, whole: nothing of the decision applies.
        let bad = [set("t", "retention.ms", Some("5")), set("nope", "retention.ms", Some("5"))];
        assert_eq!(c.alter_configs(&image, &bad), Err(ControllerError::UnknownTopicOrPartition));
        let before = image.clone();
        assert!(image.apply(&Record::Config(bad[1].clone())).is_err());
        assert_eq!(image, before);
        // The cluster-wide dynamic default is below the topic's own value.
        let default = ConfigChange {
            resource: ConfigResource::Broker(String::new()),
            name: "unclean.leader.election.enable".into(),
            value: Some("true".into()),
        };
        let d = c.alter_configs(&image, &[default, set("t", "min.insync.replicas", None)]).unwrap();
        apply_all(&mut image, d.records);
        assert_eq!(image.topic_config("t", "min.insync.replicas"), None);
        assert!(c.config.for_topic(&image, "t").unclean_leader_election_enable);
        assert!(image.topic_configs.is_empty(), "deleting the last key drops the map");
        let d = c.alter_configs(&image, &[set("t", "cleanup.policy", Some("compact"))]).unwrap();
        apply_all(&mut image, d.records);
        let d = c.delete_topic(&image, "t").unwrap();
        apply_all(&mut image, d.records);
        assert_eq!(image.topic_config("t", "cleanup.policy"), None);
        // The image (with its configs) survives the JSON the metadata log and snapshots use.
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(serde_json::from_str::<MetadataImage>(&json).unwrap(), image);
    }

    #[test]
    fn a_topics_min_insync_replicas_decides_its_elr() {
        // Static min.insync.replicas 1: no ELR. The topic's own 2 makes a leaving replica an ELR
        // member once the ISR is below 2.
        let mut c = Controller::new(ControllerConfig::default());
        let mut image = cluster(&mut c, 2);
        let two = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
        for (name, id, configs) in [("hard", 1u8, two), ("soft", 2, BTreeMap::new())] {
            let d = c
                .create_topic_with_configs(&image, name, TopicId([id; 16]), 1, 2, 0, &configs)
                .unwrap();
            apply_all(&mut image, d.records);
        }
        fence(&mut c, &mut image, 1);
        let hard = image.partition(TopicId([1; 16]), 0).unwrap();
        let soft = image.partition(TopicId([2; 16]), 0).unwrap();
        assert_eq!((hard.isr.clone(), hard.elr.clone()), (vec![0], vec![1]));
        assert_eq!((soft.isr.clone(), soft.elr.clone()), (vec![0], vec![]));
    }

    #[test]
    fn a_topics_unclean_leader_election_enable_decides_its_election() {
        let mut c = Controller::new(ControllerConfig::default());
        let mut image = cluster(&mut c, 2);
        let unclean =
            BTreeMap::from([("unclean.leader.election.enable".to_string(), "true".to_string())]);
        for (name, id, configs) in [("u", 1u8, unclean), ("clean", 2, BTreeMap::new())] {
            let d = c
                .create_topic_with_configs(&image, name, TopicId([id; 16]), 1, 2, 0, &configs)
                .unwrap();
            apply_all(&mut image, d.records);
        }
        // Both ISRs shrink to broker 0 (the leader), then 0 goes away.
        for id in [1u8, 2] {
            let p = image.partition(TopicId([id; 16]), 0).unwrap().clone();
            let req = AlterPartitionRequest {
                broker_id: 0,
                broker_epoch: image.brokers[&0].broker_epoch,
                topic_id: TopicId([id; 16]),
                partition: 0,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: vec![0],
            };
            let d = c.alter_partition(&image, &req).unwrap();
            apply_all(&mut image, d.records);
        }
        fence(&mut c, &mut image, 0);
        assert_eq!(image.partition(TopicId([1; 16]), 0).unwrap().leader, 1, "unclean: elected");
        assert_eq!(image.partition(TopicId([2; 16]), 0).unwrap().leader, NO_LEADER, "clean");
    }

    fn change() -> impl Strategy<Value = ConfigChange> {
        (
            prop_oneof![Just("t".to_string()), Just("gone".to_string())],
            prop_oneof![Just("a.b".to_string()), Just("c".to_string()), Just("b d".to_string())],
            proptest::option::of("[0-9]{0,3}"),
        )
            .prop_map(|(t, name, value)| set(&t, &name, value.as_deref()))
    }

    proptest! {
        /// Config records against a model map: accepted changes do what they say, rejected ones
        /// (unknown topic, bad name) change nothing.
        #[test]
        fn config_records_follow_a_map(changes in proptest::collection::vec(change(), 0..40)) {
            let mut c = Controller::new(ControllerConfig::default());
            let mut image = cluster(&mut c, 1);
            let d = c.create_topic(&image, "t", TopicId([1; 16]), 1, 1, 0).unwrap();
            apply_all(&mut image, d.records);
            let mut model: BTreeMap<String, String> = BTreeMap::new();
            for ch in &changes {
                let before = image.clone();
                let ok = image.apply(&Record::Config(ch.clone())).is_ok();
                let valid = ch.resource == ConfigResource::Topic("t".into()) && ch.name != "b d";
                prop_assert_eq!(ok, valid);
                if !ok {
                    prop_assert_eq!(&image, &before);
                    continue;
                }
                match &ch.value {
                    Some(v) => model.insert(ch.name.clone(), v.clone()),
                    None => model.remove(&ch.name),
                };
                prop_assert_eq!(image.topic_config_map("t"), model.clone());
            }
        }
    }
}
