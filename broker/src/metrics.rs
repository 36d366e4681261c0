//! Broker metrics with Kafka's names, rendered as Prometheus text.
//!
//! Counters are atomics (no locks on the hot path). Names follow the JMX-exporter spelling of
//! Kafka's MBeans: `kafka_server_BrokerTopicMetrics_BytesInPerSec` etc.; request latency is
//! `kafka_network_RequestMetrics_TotalTimeMs` by `request` (Kafka's API name).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::messages::ApiKey;

use crate::protocol::{api_name, SUPPORTED};

/// Latency histogram buckets, milliseconds.
const BUCKETS_MS: [f64; 12] =
    [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 500.0, 1000.0];

#[derive(Debug, Default)]
struct ApiStats {
    requests: AtomicU64,
    errors: AtomicU64,
    total_time_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS_MS.len()],
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_in: AtomicU64,
    pub failed_produce: AtomicU64,
    pub failed_fetch: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_closed_bad_input: AtomicU64,
    /// Partition leader elections committed while this node was the active controller.
    pub leader_elections: AtomicU64,
    /// One slot per entry of `protocol::SUPPORTED`.
    apis: [ApiStats; SUPPORTED.len()],
}

fn slot(key: ApiKey) -> Option<usize> {
    SUPPORTED.iter().position(|(k, _, _)| *k == key)
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
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
        for (b, bound) in s.buckets.iter().zip(BUCKETS_MS) {
            if ms <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, partitions: usize, log_bytes: u64) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "kafka_server_BrokerTopicMetrics_BytesInPerSec",
            "Bytes produced to the broker (rate over time).",
            get(&self.bytes_in),
        );
        counter(
            "kafka_server_BrokerTopicMetrics_BytesOutPerSec",
            "Bytes fetched from the broker (rate over time).",
            get(&self.bytes_out),
        );
        counter(
            "kafka_server_BrokerTopicMetrics_MessagesInPerSec",
            "Records produced to the broker (rate over time).",
            get(&self.messages_in),
        );
        counter(
            "kafka_server_BrokerTopicMetrics_FailedProduceRequestsPerSec",
            "Produce partitions answered with an error.",
            get(&self.failed_produce),
        );
        counter(
            "kafka_server_BrokerTopicMetrics_FailedFetchRequestsPerSec",
            "Fetch partitions answered with an error.",
            get(&self.failed_fetch),
        );
        counter(
            "kafka_network_SocketServer_connections_accepted",
            "Connections accepted.",
            get(&self.connections_accepted),
        );
        counter(
            "kafka_network_SocketServer_connections_closed_bad_input",
            "Connections closed over bad input.",
            get(&self.connections_closed_bad_input),
        );
        let _ = writeln!(out, "# TYPE kafka_server_ReplicaManager_PartitionCount gauge\nkafka_server_ReplicaManager_PartitionCount {partitions}");
        let _ = writeln!(out, "# TYPE kafka_log_Log_Size gauge\nkafka_log_Log_Size {log_bytes}");
        let _ = writeln!(out, "# TYPE kafka_network_RequestMetrics_RequestsPerSec counter");
        for (i, (key, _, _)) in SUPPORTED.iter().enumerate() {
            let _ = writeln!(
                out,
                "kafka_network_RequestMetrics_RequestsPerSec{{request=\"{}\"}} {}",
                api_name(*key),
                get(&self.apis[i].requests)
            );
        }
        let _ = writeln!(out, "# TYPE kafka_network_RequestMetrics_ErrorsPerSec counter");
        for (i, (key, _, _)) in SUPPORTED.iter().enumerate() {
            let _ = writeln!(
                out,
                "kafka_network_RequestMetrics_ErrorsPerSec{{request=\"{}\"}} {}",
                api_name(*key),
                get(&self.apis[i].errors)
            );
        }
        let _ = writeln!(out, "# HELP kafka_network_RequestMetrics_TotalTimeMs Request latency by API, milliseconds.\n# TYPE kafka_network_RequestMetrics_TotalTimeMs histogram");
        for (i, (key, _, _)) in SUPPORTED.iter().enumerate() {
            let s = &self.apis[i];
            let name = api_name(*key);
            for (b, bound) in s.buckets.iter().zip(BUCKETS_MS) {
                let _ = writeln!(out, "kafka_network_RequestMetrics_TotalTimeMs_bucket{{request=\"{name}\",le=\"{bound}\"}} {}", get(b));
            }
            let n = get(&s.requests);
            let _ = writeln!(out, "kafka_network_RequestMetrics_TotalTimeMs_bucket{{request=\"{name}\",le=\"+Inf\"}} {n}");
            let _ = writeln!(
                out,
                "kafka_network_RequestMetrics_TotalTimeMs_sum{{request=\"{name}\"}} {}",
                get(&s.total_time_us) as f64 / 1000.0
            );
            let _ = writeln!(
                out,
                "kafka_network_RequestMetrics_TotalTimeMs_count{{request=\"{name}\"}} {n}"
            );
        }
        out
    }

    /// The cluster metrics (combined mode; a single node reports them as zeros, with itself the
    /// active controller of nothing).
    pub fn render_cluster(&self, c: &ClusterGauges) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        metric(
            "kafka_server_ReplicaManager_UnderReplicatedPartitions",
            "gauge",
            "Partitions led here whose ISR is smaller than their replica set.",
            c.under_replicated,
        );
        metric(
            "kafka_server_ReplicaManager_LeaderCount",
            "gauge",
            "Partitions led here.",
            c.leaders,
        );
        metric(
            "kafka_server_ReplicaManager_IsrShrinksPerSec",
            "counter",
            "ISR shrinks proposed by this leader (rate over time).",
            c.isr_shrinks,
        );
        metric(
            "kafka_server_ReplicaManager_IsrExpandsPerSec",
            "counter",
            "ISR expansions proposed by this leader (rate over time).",
            c.isr_expands,
        );
        metric(
            "kafka_controller_KafkaController_ActiveControllerCount",
            "gauge",
            "1 on the active controller, else 0.",
            c.active_controller,
        );
        metric(
            "kafka_controller_ControllerStats_LeaderElectionRateAndTimeMs",
            "counter",
            "Partition leader elections committed while this node was the active controller (rate over time).",
            self.leader_elections.load(Ordering::Relaxed),
        );
        out
    }
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
