//! Broker metrics named as dashboards built for Kafka expect them, exposed in the Prometheus text
//! format (0.0.4) through the `prometheus-client` crate's registry and encoder.
//!
//! # Names
//! Kafka publishes JMX MBeans; dashboards read them through the Prometheus JMX exporter, whose
//! example rules for Kafka (`example_configs/kafka-2_0_0.yml` in prometheus/jmx_exporter,
//! `lowercaseOutputName: true`) turn `kafka.<domain>:type=<T>,name=<N>PerSec[,k=v]` `Count` into
//! the counter `kafka_<domain>_<t>_<n>_total{k=v}`, `...name=<N>[,k=v]` `Value` into the gauge
//! `kafka_<domain>_<t>_<n>{k=v}` and a timer's `Count` into `kafka_<domain>_<t>_<n>_count`. So:
//!
//! | name | labels | Kafka's MBean (rule) |
//! |---|---|---|
//! | `kafka_server_brokertopicmetrics_messagesin_total` | none, `topic` | `kafka.server:type=BrokerTopicMetrics,name=MessagesInPerSec[,topic=]` (PerSec counter) |
//! | `kafka_server_brokertopicmetrics_bytesin_total` | none, `topic` | `...,name=BytesInPerSec[,topic=]` |
//! | `kafka_server_brokertopicmetrics_bytesout_total` | none, `topic` | `...,name=BytesOutPerSec[,topic=]` |
//! | `kafka_server_brokertopicmetrics_failedproducerequests_total` | none, `topic` | `...,name=FailedProduceRequestsPerSec[,topic=]` |
//! | `kafka_server_brokertopicmetrics_failedfetchrequests_total` | none, `topic` | `...,name=FailedFetchRequestsPerSec[,topic=]` |
//! | `kafka_server_replicamanager_partitioncount` | | `kafka.server:type=ReplicaManager,name=PartitionCount` (gauge) |
//! | `kafka_server_replicamanager_leadercount` | | `...,name=LeaderCount` |
//! | `kafka_server_replicamanager_underreplicatedpartitions` | | `...,name=UnderReplicatedPartitions` |
//! | `kafka_server_replicamanager_underminisrpartitioncount` | | `...,name=UnderMinIsrPartitionCount` |
//! | `kafka_server_replicamanager_isrshrinks_total` | | `...,name=IsrShrinksPerSec` (PerSec counter) |
//! | `kafka_server_replicamanager_isrexpands_total` | | `...,name=IsrExpandsPerSec` |
//! | `kafka_controller_kafkacontroller_activecontrollercount` | | `kafka.controller:type=KafkaController,name=ActiveControllerCount` |
//! | `kafka_controller_kafkacontroller_offlinepartitionscount` | | `...,name=OfflinePartitionsCount` |
//! | `kafka_controller_controllerstats_leaderelectionrateandtimems_count` | | `kafka.controller:type=ControllerStats,name=LeaderElectionRateAndTimeMs` (timer `Count`; untyped, as the crate adds `_total` to counters) |
//! | `kafka_log_log_logendoffset` | `topic`, `partition` | `kafka.log:type=Log,name=LogEndOffset,topic=,partition=` (gauge, two labels) |
//! | `kafka_log_log_logstartoffset` | `topic`, `partition` | `...,name=LogStartOffset,...` |
//! | `kafka_log_log_size` | `topic`, `partition` | `...,name=Size,...` |
//! | `kafka_network_requestmetrics_requests_total` | `request` | `kafka.network:type=RequestMetrics,name=RequestsPerSec,request=` (Kafka adds `version`; not kept) |
//! | `kafka_network_requestmetrics_errors_total` | `request` | `...,name=ErrorsPerSec,request=` (Kafka adds `error`; here: requests that closed the connection) |
//! | `kafka_network_requestmetrics_totaltimems` | `request` | `...,name=TotalTimeMs,request=`: the exporter emits its `_count` and quantile gauges; here a histogram (`_bucket`, `_sum`, `_count`: the `_count` is the exporter's name) |
//! | `kafka_consumergroup_lag` | `consumergroup`, `topic`, `partition` | none in Kafka (no broker-side lag): kafka_exporter's and Burrow's convention |
//! | `kafka_consumergroup_current_offset` | `consumergroup`, `topic`, `partition` | kafka_exporter: the committed offset |
//! | `loglab_connections_accepted_total`, `loglab_connections_closed_bad_input_total` | | ours (Kafka's socket-server metrics have no `name=` key, so the example rules export none) |
//! | `loglab_metrics_topics_unlabeled_total` | | ours: topics counted broker-wide only, past [`TOPICS_MAX`] |
//!
//! Lag is `high watermark − committed offset` (what ListOffsets' latest returns, as
//! kafka_exporter computes it; the log end on a single node), for the groups this broker
//! coordinates and the partitions it hosts; the other partitions are left to their brokers.
//!
//! # Hot path and limits
//! Counters are the crate's `Counter`s (relaxed atomics). A per-topic handle is found under a
//! read lock of a map held only for the lookup (like the partition map), then incremented
//! without one. At most [`TOPICS_MAX`] topics get a `topic` label (past it a topic counts
//! broker-wide only, with a log line the first time); lag series are capped at
//! [`LAG_SERIES_MAX`] per scrape; per-partition gauges are bounded by the broker's partition
//! limit (`loglab.partitions.per.broker.max`). Gauges are read at scrape time ([`scrape`]).
//!
//! The HTTP endpoint ([`http`], real world only): the simulator never serves metrics over its
//! transport (nothing in `sim/` sets `metrics_listen`), so the simulated build compiles it out.

// Real world only; hidden from rustdoc's doctest pass too, which never receives `--cfg madsim`
// and so would compile it without its hyper dependencies in that build (as `admin`).
#[cfg(not(any(madsim, doctest)))]
pub mod http;
pub mod scrape;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use kafka_protocol::messages::ApiKey;
use prometheus_client::metrics::counter::Counter;

use crate::protocol::{api_name, SUPPORTED};

pub use scrape::Gauges;

/// Topics that get their own `topic` label in the BrokerTopicMetrics families, at most.
pub const TOPICS_MAX: usize = 1_000;
/// Consumer-group lag series per scrape, at most.
pub const LAG_SERIES_MAX: usize = 10_000;

/// Request latency histogram upper bounds, milliseconds (`+Inf` is implied).
pub const BUCKETS_MS: [f64; 12] =
    [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 500.0, 1000.0];

/// Kafka's BrokerTopicMetrics for one topic, or broker-wide.
#[derive(Debug, Default)]
pub struct TopicCounters {
    pub messages_in: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub failed_produce: Counter,
    pub failed_fetch: Counter,
}

/// One API's request metrics. Bucket counts are per bucket (not cumulative): an observation
/// increments one atomic.
#[derive(Debug, Default)]
struct ApiStats {
    requests: AtomicU64,
    errors: AtomicU64,
    total_time_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS_MS.len()],
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// BrokerTopicMetrics without a `topic` label.
    pub broker: TopicCounters,
    topics: RwLock<BTreeMap<String, Arc<TopicCounters>>>,
    topics_unlabeled: Counter,
    topics_overflow_logged: AtomicBool,
    pub(crate) lag_overflow_logged: AtomicBool,
    pub connections_accepted: Counter,
    pub connections_closed_bad_input: Counter,
    /// Partition leader elections committed while this node was the active controller.
    pub leader_elections: Counter,
    /// One slot per entry of `protocol::SUPPORTED`.
    apis: [ApiStats; SUPPORTED.len()],
}

fn slot(key: ApiKey) -> Option<usize> {
    SUPPORTED.iter().position(|(k, _, _)| *k == key)
}

impl Metrics {
    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// The counters of `topic`, created on first use; `None` past [`TOPICS_MAX`] topics.
    pub fn topic(&self, topic: &str) -> Option<Arc<TopicCounters>> {
        let read = self.topics.read().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = read.get(topic) {
            return Some(c.clone());
        }
        drop(read);
        let mut map = self.topics.write().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(topic) {
            return Some(c.clone());
        }
        if map.len() >= TOPICS_MAX {
            self.topics_unlabeled.inc();
            if !self.topics_overflow_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    topics_max = TOPICS_MAX,
                    topic,
                    "metrics: more topics than the per-topic label limit; the rest count broker-wide only"
                );
            }
            return None;
        }
        let c = Arc::new(TopicCounters::default());
        map.insert(topic.to_string(), c.clone());
        Some(c)
    }

    /// Drops a deleted topic's label set (as Kafka removes its per-topic metrics).
    pub fn forget_topic(&self, topic: &str) {
        self.topics.write().unwrap_or_else(|p| p.into_inner()).remove(topic);
    }

    /// Applies `f` to the broker-wide counters and to `topic`'s.
    fn each(&self, topic: &str, f: impl Fn(&TopicCounters)) {
        f(&self.broker);
        if let Some(t) = self.topic(topic) {
            f(&t);
        }
    }

    /// A batch of `records` records, `bytes` bytes, appended to `topic`.
    pub fn produced(&self, topic: &str, bytes: u64, records: u64) {
        self.each(topic, |c| {
            c.bytes_in.inc_by(bytes);
            c.messages_in.inc_by(records);
        });
    }

    /// A produce to one partition of `topic` answered with an error.
    pub fn produce_failed(&self, topic: &str) {
        self.each(topic, |c| {
            c.failed_produce.inc();
        });
    }

    /// Record bytes of `topic` sent in a fetch response.
    pub fn fetched(&self, topic: &str, bytes: u64) {
        self.each(topic, |c| {
            c.bytes_out.inc_by(bytes);
        });
    }

    /// A fetch of one partition of `topic` answered with an error.
    pub fn fetch_failed(&self, topic: &str) {
        self.each(topic, |c| {
            c.failed_fetch.inc();
        });
    }

    pub fn record_request(&self, key: ApiKey, micros: u64, failed: bool) {
        let Some(i) = slot(key) else { return };
        let s = &self.apis[i];
        s.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            s.errors.fetch_add(1, Ordering::Relaxed);
        }
        s.total_time_us.fetch_add(micros, Ordering::Relaxed);
        let ms = micros as f64 / 1000.0;
        if let Some(b) = BUCKETS_MS.iter().position(|bound| ms <= *bound) {
            s.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters as they are now (what a scrape encodes).
    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let requests = SUPPORTED
            .iter()
            .zip(&self.apis)
            .map(|((key, _, _), s)| RequestSnapshot {
                request: api_name(*key),
                requests: get(&s.requests),
                errors: get(&s.errors),
                total_time_ms: get(&s.total_time_us) as f64 / 1000.0,
                buckets: BUCKETS_MS.iter().zip(&s.buckets).map(|(b, n)| (*b, get(n))).collect(),
            })
            .collect();
        CounterSnapshot {
            broker: TopicSnapshot::of(&self.broker),
            topics: topics.iter().map(|(t, c)| (t.clone(), TopicSnapshot::of(c))).collect(),
            topics_unlabeled: self.topics_unlabeled.get(),
            connections_accepted: self.connections_accepted.get(),
            connections_closed_bad_input: self.connections_closed_bad_input.get(),
            leader_elections: self.leader_elections.get(),
            requests,
        }
    }
}

/// BrokerTopicMetrics values at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicSnapshot {
    pub messages_in: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub failed_produce: u64,
    pub failed_fetch: u64,
}

impl TopicSnapshot {
    fn of(c: &TopicCounters) -> Self {
        Self {
            messages_in: c.messages_in.get(),
            bytes_in: c.bytes_in.get(),
            bytes_out: c.bytes_out.get(),
            failed_produce: c.failed_produce.get(),
            failed_fetch: c.failed_fetch.get(),
        }
    }
}

/// One API's request metrics at one instant.
#[derive(Debug, Clone)]
pub struct RequestSnapshot {
    pub request: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub total_time_ms: f64,
    /// (upper bound ms, observations in this bucket alone).
    pub buckets: Vec<(f64, u64)>,
}

/// Every counter at one instant.
#[derive(Debug, Clone)]
pub struct CounterSnapshot {
    pub broker: TopicSnapshot,
    pub topics: Vec<(String, TopicSnapshot)>,
    pub topics_unlabeled: u64,
    pub connections_accepted: u64,
    pub connections_closed_bad_input: u64,
    pub leader_elections: u64,
    pub requests: Vec<RequestSnapshot>,
}

/// Replication gauges gathered at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterGauges {
    pub under_replicated: u64,
    pub leaders: u64,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub active_controller: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_past_the_limit_count_broker_wide_only() {
        let m = Metrics::default();
        for i in 0..TOPICS_MAX {
            m.produced(&format!("t{i}"), 10, 1);
        }
        m.produced("one-too-many", 10, 2);
        let s = m.snapshot();
        assert_eq!(s.topics.len(), TOPICS_MAX);
        assert!(s.topics.iter().all(|(t, _)| t != "one-too-many"));
        assert_eq!(s.broker.messages_in, TOPICS_MAX as u64 + 2);
        assert_eq!(s.topics_unlabeled, 1);
        m.forget_topic("t0");
        m.produced("one-too-many", 10, 2);
        assert!(m.snapshot().topics.iter().any(|(t, c)| t == "one-too-many" && c.messages_in == 2));
    }

    #[test]
    fn a_request_lands_in_one_bucket() {
        let m = Metrics::default();
        m.record_request(ApiKey::Produce, 3_000, false);
        m.record_request(ApiKey::Produce, 5_000_000, true);
        let s = m.snapshot();
        let p = s.requests.iter().find(|r| r.request == "Produce").expect("Produce");
        assert_eq!((p.requests, p.errors), (2, 1));
        let five = p.buckets.iter().find(|(b, _)| *b == 5.0).expect("the 5 ms bucket");
        assert_eq!(five.1, 1);
        assert_eq!(p.buckets.iter().map(|(_, n)| n).sum::<u64>(), 1, "5 s is past every bound");
    }
}
