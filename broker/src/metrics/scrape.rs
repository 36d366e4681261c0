//! One scrape: the gauges read from the broker now ([`gather`]) and the text of every family
//! ([`encode`]), through a `prometheus-client` registry holding one collector of both.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cluster::metadata::{MetadataImage, NO_LEADER};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::{CounterSnapshot, TopicSnapshot, LAG_SERIES_MAX};
use crate::log::TopicPartition;
use crate::Broker;

/// `Content-Type` of what [`encode`] writes.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One partition hosted here.
#[derive(Debug, Clone)]
pub struct PartitionGauge {
    pub topic: String,
    pub partition: i32,
    pub log_end_offset: i64,
    pub log_start_offset: i64,
    pub size_bytes: u64,
}

/// A group's committed offset of one partition, and its lag.
#[derive(Debug, Clone)]
pub struct LagGauge {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub lag: i64,
}

/// What is read from the broker at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub partitions: Vec<PartitionGauge>,
    pub leaders: u64,
    pub under_replicated: u64,
    pub under_min_isr: u64,
    pub offline: u64,
    pub active_controller: u64,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub lag: Vec<LagGauge>,
}

/// Reads the gauges. `image` is this node's controller's committed image (combined mode, a
/// voter): the active controller counts the partitions it shows leaderless. Without a
/// controller (a single node) the node is its own controller: it counts itself active and its
/// offline logs (a storage error) as offline partitions.
pub async fn gather(
    broker: &Broker,
    image: Option<&watch::Receiver<Arc<MetadataImage>>>,
) -> Gauges {
    let mut g = Gauges::default();
    let mut offline_logs = 0;
    for p in broker.partitions.all() {
        let Some(data) = p.data().await else { continue };
        offline_logs += u64::from(data.log.is_offline());
        g.partitions.push(PartitionGauge {
            topic: p.tp.topic.to_string(),
            partition: p.tp.partition,
            log_end_offset: data.log.log_end_offset(),
            log_start_offset: data.log.log_start_offset(),
            size_bytes: data.log.size_bytes(),
        });
    }
    let c = broker.cluster_gauges();
    g.leaders = c.leaders;
    g.under_replicated = c.under_replicated;
    g.under_min_isr = broker.replicas.under_min_isr() as u64;
    g.isr_shrinks = c.isr_shrinks;
    g.isr_expands = c.isr_expands;
    (g.active_controller, g.offline) = match image {
        None => (1, offline_logs),
        Some(_) if c.active_controller == 0 => (0, 0),
        Some(rx) => (1, leaderless(&rx.borrow())),
    };
    g.lag = lag(broker).await;
    g
}

fn leaderless(image: &MetadataImage) -> u64 {
    let parts = image.topics.values().flat_map(|t| &t.partitions);
    parts.filter(|p| p.leader == NO_LEADER).count() as u64
}

/// Lag of every committed offset of the groups coordinated here, on partitions hosted here.
async fn lag(broker: &Broker) -> Vec<LagGauge> {
    // While a coordinator partition loads the list is incomplete: no lag this scrape.
    let Ok(groups) = broker.groups.list().await else { return Vec::new() };
    let mut out = Vec::new();
    for (group, _, _) in groups {
        let Ok(topics) = broker.groups.fetch_offsets(&group, None).await else { continue };
        for (topic, parts) in topics {
            for (partition, committed) in parts {
                let Some(committed) = committed else { continue };
                let tp = TopicPartition::new(topic.as_str(), partition);
                let Some(end) = readable_end(broker, &tp).await else { continue };
                if out.len() >= LAG_SERIES_MAX {
                    if !broker.metrics.lag_overflow_logged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            lag_series_max = LAG_SERIES_MAX,
                            "metrics: more consumer-group lag series than the limit; the rest are not exported"
                        );
                    }
                    return out;
                }
                out.push(LagGauge {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition,
                    committed: committed.offset,
                    lag: (end - committed.offset).max(0),
                });
            }
        }
    }
    out
}

/// The high watermark (the log end where no replication role is assigned), when hosted here.
async fn readable_end(broker: &Broker, tp: &TopicPartition) -> Option<i64> {
    let p = broker.partitions.get(tp)?;
    let leo = p.data().await?.log.log_end_offset();
    Some(broker.replicas.high_watermark(tp).unwrap_or(leo).min(leo))
}

/// The Prometheus text (0.0.4) of every family.
pub fn encode(counters: CounterSnapshot, gauges: Gauges) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition { counters, gauges }));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// One scrape's values, encoded by the registry.
#[derive(Debug)]
struct Exposition {
    counters: CounterSnapshot,
    gauges: Gauges,
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// A family of samples `(labels, value)` of one type.
fn family<'a, V: Copy + fmt::Debug>(
    e: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    samples: impl IntoIterator<Item = (Labels<'a>, V)>,
    encode: impl Fn(&mut MetricEncoder, V) -> fmt::Result,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        encode(&mut m.encode_family(&labels)?, v)?;
    }
    Ok(())
}

fn counter(m: &mut MetricEncoder, v: u64) -> fmt::Result {
    m.encode_counter::<Labels, u64, u64>(&v, None)
}

fn gauge(m: &mut MetricEncoder, v: i64) -> fmt::Result {
    m.encode_gauge(&v)
}

/// A family read from each item of a list: (name, help, the value of one item).
type Field<T, V> = (&'static str, &'static str, fn(&T) -> V);

const BROKER_TOPIC: [Field<TopicSnapshot, u64>; 5] = [
    ("kafka_server_brokertopicmetrics_messagesin", "Records appended (MessagesInPerSec).", |t| {
        t.messages_in
    }),
    ("kafka_server_brokertopicmetrics_bytesin", "Record bytes appended (BytesInPerSec).", |t| {
        t.bytes_in
    }),
    ("kafka_server_brokertopicmetrics_bytesout", "Record bytes fetched (BytesOutPerSec).", |t| {
        t.bytes_out
    }),
    (
        "kafka_server_brokertopicmetrics_failedproducerequests",
        "Produce partitions answered with an error (FailedProduceRequestsPerSec).",
        |t| t.failed_produce,
    ),
    (
        "kafka_server_brokertopicmetrics_failedfetchrequests",
        "Fetch partitions answered with an error (FailedFetchRequestsPerSec).",
        |t| t.failed_fetch,
    ),
];

impl Exposition {
    fn broker_topic(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let c = &self.counters;
        for (name, help, get) in BROKER_TOPIC {
            let wide = std::iter::once((Labels::new(), get(&c.broker)));
            let per_topic = c.topics.iter().map(|(t, s)| (vec![("topic", t.as_str())], get(s)));
            family(e, (name, help, MetricType::Counter), wide.chain(per_topic), counter)?;
        }
        Ok(())
    }

    fn replication(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let g = &self.gauges;
        let gauges: [(&str, &str, u64); 6] = [
            (
                "kafka_server_replicamanager_partitioncount",
                "Partitions hosted here.",
                g.partitions.len() as u64,
            ),
            ("kafka_server_replicamanager_leadercount", "Partitions led here.", g.leaders),
            (
                "kafka_server_replicamanager_underreplicatedpartitions",
                "Partitions led here whose ISR is smaller than their replica set.",
                g.under_replicated,
            ),
            (
                "kafka_server_replicamanager_underminisrpartitioncount",
                "Partitions led here whose ISR is below min.insync.replicas.",
                g.under_min_isr,
            ),
            (
                "kafka_controller_kafkacontroller_activecontrollercount",
                "1 on the active controller, else 0.",
                g.active_controller,
            ),
            (
                "kafka_controller_kafkacontroller_offlinepartitionscount",
                "Partitions without a leader (reported by the active controller).",
                g.offline,
            ),
        ];
        for (name, help, v) in gauges {
            family(e, (name, help, MetricType::Gauge), [(Labels::new(), v as i64)], gauge)?;
        }
        let counters: [(&str, &str, u64); 5] = [
            (
                "kafka_server_replicamanager_isrshrinks",
                "ISR shrinks proposed by this leader (IsrShrinksPerSec).",
                g.isr_shrinks,
            ),
            (
                "kafka_server_replicamanager_isrexpands",
                "ISR expansions proposed by this leader (IsrExpandsPerSec).",
                g.isr_expands,
            ),
            (
                "loglab_connections_accepted",
                "Client connections accepted.",
                self.counters.connections_accepted,
            ),
            (
                "loglab_connections_closed_bad_input",
                "Client connections closed over bad input.",
                self.counters.connections_closed_bad_input,
            ),
            (
                "loglab_metrics_topics_unlabeled",
                "Topics first seen past the per-topic label limit (counted broker-wide only).",
                self.counters.topics_unlabeled,
            ),
        ];
        for (name, help, v) in counters {
            family(e, (name, help, MetricType::Counter), [(Labels::new(), v)], counter)?;
        }
        let elections = (
            "kafka_controller_controllerstats_leaderelectionrateandtimems_count",
            "Partition leader elections committed while this node was the active controller.",
            MetricType::Unknown,
        );
        family(e, elections, [(Labels::new(), self.counters.leader_elections as i64)], gauge)
    }

    fn logs(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let parts = &self.gauges.partitions;
        let numbers: Vec<String> = parts.iter().map(|p| p.partition.to_string()).collect();
        let labels =
            |i: usize| vec![("topic", parts[i].topic.as_str()), ("partition", numbers[i].as_str())];
        let each: [Field<PartitionGauge, i64>; 3] = [
            (
                "kafka_log_log_logendoffset",
                "The offset the next record appended gets (LogEndOffset).",
                |p| p.log_end_offset,
            ),
            ("kafka_log_log_logstartoffset", "The first offset kept (LogStartOffset).", |p| {
                p.log_start_offset
            }),
            ("kafka_log_log_size", "Bytes of the partition's segments (Size).", |p| {
                p.size_bytes as i64
            }),
        ];
        for (name, help, get) in each {
            let samples = (0..parts.len()).map(|i| (labels(i), get(&parts[i])));
            family(e, (name, help, MetricType::Gauge), samples, gauge)?;
        }
        let lag = &self.gauges.lag;
        let numbers: Vec<String> = lag.iter().map(|l| l.partition.to_string()).collect();
        let labels = |i: usize| {
            let l = &lag[i];
            vec![
                ("consumergroup", l.group.as_str()),
                ("topic", l.topic.as_str()),
                ("partition", numbers[i].as_str()),
            ]
        };
        let each: [Field<LagGauge, i64>; 2] = [
            (
                "kafka_consumergroup_lag",
                "High watermark minus the group's committed offset (kafka_exporter's convention).",
                |l| l.lag,
            ),
            ("kafka_consumergroup_current_offset", "The group's committed offset.", |l| {
                l.committed
            }),
        ];
        for (name, help, get) in each {
            let samples = (0..lag.len()).map(|i| (labels(i), get(&lag[i])));
            family(e, (name, help, MetricType::Gauge), samples, gauge)?;
        }
        Ok(())
    }

    fn requests(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let rs = &self.counters.requests;
        let by_request = |get: fn(&super::RequestSnapshot) -> u64| {
            rs.iter().map(move |r| (vec![("request", r.request)], get(r)))
        };
        let requests = (
            "kafka_network_requestmetrics_requests",
            "Requests handled, by API (RequestsPerSec).",
            MetricType::Counter,
        );
        family(e, requests, by_request(|r| r.requests), counter)?;
        let errors = (
            "kafka_network_requestmetrics_errors",
            "Requests that closed the connection, by API (ErrorsPerSec).",
            MetricType::Counter,
        );
        family(e, errors, by_request(|r| r.errors), counter)?;
        let name = "kafka_network_requestmetrics_totaltimems";
        let help = "Request handling time, milliseconds, by API (TotalTimeMs).";
        let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for r in rs {
            let labels: Labels = vec![("request", r.request)];
            let mut f = m.encode_family(&labels)?;
            f.encode_histogram::<Labels>(r.total_time_ms, r.requests, &r.buckets, None)?;
        }
        Ok(())
    }
}

impl Collector for Exposition {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        self.broker_topic(&mut e)?;
        self.replication(&mut e)?;
        self.logs(&mut e)?;
        self.requests(&mut e)
    }
}

#[cfg(test)]
mod tests {
    use cluster::metadata::{PartitionState, TopicId, TopicImage};

    use super::*;
    use crate::metrics::Metrics;

    fn partition(leader: i32) -> PartitionState {
        PartitionState {
            replicas: vec![1, 2],
            isr: if leader == NO_LEADER { vec![2] } else { vec![leader] },
            leader,
            leader_epoch: 3,
            partition_epoch: 4,
            elr: Vec::new(),
            last_known_elr: Vec::new(),
            recovering: false,
        }
    }

    #[test]
    fn the_active_controller_counts_leaderless_partitions() {
        let mut image = MetadataImage::default();
        let partitions = vec![partition(1), partition(NO_LEADER), partition(NO_LEADER)];
        let id = TopicId([7; 16]);
        image.topics.insert(id, TopicImage { name: "t".into(), id, partitions, created_at: 0 });
        assert_eq!(leaderless(&image), 2);
    }

    #[test]
    fn gauges_are_encoded_with_the_exporter_names() {
        let gauges = Gauges {
            partitions: vec![PartitionGauge {
                topic: "t".into(),
                partition: 2,
                log_end_offset: 40,
                log_start_offset: 10,
                size_bytes: 999,
            }],
            under_min_isr: 1,
            offline: 2,
            lag: vec![LagGauge {
                group: "g".into(),
                topic: "t".into(),
                partition: 2,
                committed: 15,
                lag: 25,
            }],
            ..Gauges::default()
        };
        let text = encode(Metrics::default().snapshot(), gauges).expect("encodes");
        for line in [
            "kafka_log_log_logendoffset{topic=\"t\",partition=\"2\"} 40",
            "kafka_log_log_size{topic=\"t\",partition=\"2\"} 999",
            "kafka_server_replicamanager_partitioncount 1",
            "kafka_server_replicamanager_underminisrpartitioncount 1",
            "kafka_controller_kafkacontroller_offlinepartitionscount 2",
            "kafka_consumergroup_lag{consumergroup=\"g\",topic=\"t\",partition=\"2\"} 25",
            "# TYPE kafka_network_requestmetrics_totaltimems histogram",
            "kafka_server_brokertopicmetrics_messagesin_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
