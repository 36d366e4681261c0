//! `cargo simulate validate`'s plan: the workloads run on the real broker under `perf produce`
//! and in the simulator with a host profile, each defined once here. The real side's command
//! line ([`Workload::perf_args`], [`Workload::broker_overrides`]) and the simulated side's
//! scenario (`sim::validate::scenario`) are both derived from [`Workload::producer_props`] and
//! the workload's fields, so the two cannot drift (`sim/tests/validate.rs` checks that each
//! pair parses into the same producer settings, topic and cluster).
//!
//! Both sides create the topic first ([`Workload::new_topic`]) and run a closed-loop producer (`perf produce --throughput -1`, the scenario's
//! `"rate": "max"`) for the same time (`duration_ms`; perf stops creating records then, the
//! simulator stops its producers at `duration_s`), with values the codecs see alike (perf's
//! `--distinct-values`: the simulator's 64-symbol filler, a different value per record).
//!
//! A closed loop measures throughput; its latency is the time a record waits in a full
//! `buffer.memory`, which says more about the buffer than about the model (and varies 4×
//! between real runs). So the plan also has fixed-rate workloads ([`Workload::rate_records_s`]:
//! perf's `--throughput N`, the scenario's `"rate": "N/s"`) well below saturation, whose
//! latency percentiles are the pipeline's: batching, the request's CPU and the round trip.

use serde::{Deserialize, Serialize};

/// The topic both sides produce to.
pub const TOPIC: &str = "validate";

/// Records `perf produce` may send at most: a cap (its `--num-records`) that a run of
/// `duration_ms` never reaches below ~1 GB/s of payload, so time ends every run.
pub fn records_cap(w: &Workload) -> u64 {
    match w.rate_records_s {
        // A paced run stops at its time too; the cap leaves room for perf's catch-up.
        Some(rate) => (rate.saturating_mul(w.duration_ms) / 1_000).saturating_mul(2).max(1_000),
        None => (w.duration_ms.saturating_mul(1_000_000) / w.record_bytes.max(1)).max(1_000),
    }
}

/// The real side's warm-up: a `perf produce` run this long on the fresh brokers before the
/// measured runs (connections, the segment's first pages, the followers' fetch sessions). A
/// fixed-rate twin leaves as much out of its measurement window (`measure.warmup`): the
/// cluster's start-up would otherwise be its latency tail.
pub const WARMUP_MS: u64 = 500;

/// How `perf produce --throughput N` hands records over, as the twin's `pacing` says it: its loop
/// (`client::perf`) sends every record due within the next millisecond, then sleeps until the
/// next one is due; tokio's timer wheel rounds a sleep up to its next 1 ms tick, so bursts
/// come about every 2 ms, each of the records due in between (200 at 100,000 a second). A
/// twin that spread its records instead would fill batches slowly where perf fills them at
/// once: at 100 B that alone moved the twin's median latency from 0.2 to 0.9 ms.
pub const PERF_TICK_MS: u64 = 2;

/// Fastest fixed rate a workload may ask for, records per second.
pub const RATE_RECORDS_S_MAX: u64 = 10_000_000;

/// One validation workload: a producer, closed-loop or at a fixed rate, against one broker or a
/// cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// A short label: `<brokers>b-<record size>-acks<acks>-<compression>`.
    pub name: String,
    pub brokers: u32,
    pub partitions: u32,
    pub replication_factor: u32,
    /// Value bytes of each record (perf's `--record-size`, the scenario's `record.bytes`).
    pub record_bytes: u64,
    /// `1` or `all`.
    pub acks: String,
    /// `none` or a codec (`lz4`, ...).
    pub compression: String,
    pub linger_ms: u64,
    pub batch_size: u64,
    pub max_in_flight: u32,
    /// How long the producer creates records, ms (the scenario's `duration_s` × 1000).
    pub duration_ms: u64,
    /// `min.insync.replicas` of the brokers (both sides).
    pub min_insync_replicas: u32,
    /// `None`: a closed loop (as fast as the producer's buffer lets records in), whose
    /// throughput is compared. `Some(n)`: n records a second (below saturation), whose latency
    /// is compared; both sides keep the rate, so its throughput ratio says nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_records_s: Option<u64>,
}

impl Workload {
    fn new(brokers: u32, record_bytes: u64, acks: &str, compression: &str) -> Workload {
        let size = match record_bytes {
            b if b >= 1024 && b % 1024 == 0 => format!("{}k", b / 1024),
            b => format!("{b}"),
        };
        Workload {
            name: format!("{brokers}b-{size}-acks{acks}-{compression}"),
            brokers,
            partitions: 1,
            replication_factor: brokers,
            record_bytes,
            acks: acks.into(),
            compression: compression.into(),
            linger_ms: 5,
            batch_size: 16_384,
            max_in_flight: 5,
            duration_ms: 3_000,
            min_insync_replicas: if brokers > 1 { 2 } else { 1 },
            rate_records_s: None,
        }
    }

    /// The same workload at `rate` records a second, named `<name>-rate<rate>`.
    fn at_rate(self, rate: u64) -> Workload {
        assert!((1..=RATE_RECORDS_S_MAX).contains(&rate), "rate {rate}");
        Workload { name: format!("{}-rate{rate}", self.name), rate_records_s: Some(rate), ..self }
    }

    /// The payload MB/s (10^6 bytes) a fixed-rate workload offers; `None` for a closed loop.
    pub fn offered_mb_s(&self) -> Option<f64> {
        self.rate_records_s.map(|r| r as f64 * self.record_bytes as f64 / 1e6)
    }

    /// The producer's settings by their Kafka names: perf's `--producer-props` and the
    /// scenario's producer keys.
    pub fn producer_props(&self) -> Vec<(&'static str, String)> {
        vec![
            ("acks", self.acks.clone()),
            ("compression.type", self.compression.clone()),
            ("linger.ms", self.linger_ms.to_string()),
            ("batch.size", self.batch_size.to_string()),
            ("max.in.flight.requests.per.connection", self.max_in_flight.to_string()),
            ("enable.idempotence", "false".into()),
        ]
    }

    /// Broker settings for both sides (`--override` each, the scenario's `cluster.config`).
    /// `replica.fetch.wait.max.ms` is Kafka's default, stated because the simulator's
    /// cluster default is shorter.
    pub fn broker_config(&self) -> Vec<(&'static str, String)> {
        let mut c = vec![("min.insync.replicas", self.min_insync_replicas.to_string())];
        if self.brokers > 1 {
            c.push(("replica.fetch.wait.max.ms", "500".into()));
        }
        c
    }

    /// `broker serve --override` pairs: [`Self::broker_config`].
    pub fn broker_overrides(&self) -> Vec<String> {
        self.broker_config().into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The topic, created with CreateTopics before the producer starts on both sides (the
    /// real side once every broker has registered; the simulator creates a scenario's topics).
    pub fn new_topic(&self) -> crate::admin::NewTopic {
        crate::admin::NewTopic::new(TOPIC, self.partitions as i32, self.replication_factor as i16)
    }

    /// `perf produce ...` arguments (without the program name) against `bootstrap`.
    pub fn perf_args(&self, bootstrap: &str) -> Vec<String> {
        let mut a: Vec<String> =
            ["produce", "--topic", TOPIC, "--distinct-values", "--bootstrap-server", bootstrap]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let throughput = self.rate_records_s.map_or_else(|| "-1".to_string(), |r| r.to_string());
        a.extend(["--throughput".into(), throughput]);
        a.extend(["--num-records".into(), records_cap(self).to_string()]);
        a.extend(["--record-size".into(), self.record_bytes.to_string()]);
        a.extend(["--duration-ms".into(), self.duration_ms.to_string()]);
        a.push("--producer-props".into());
        a.extend(self.producer_props().into_iter().map(|(k, v)| format!("{k}={v}")));
        a
    }
}

/// One measured `perf produce` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RealRun {
    /// Payload MB/s (10^6 bytes): records × record bytes / perf's elapsed time.
    pub mb_s: f64,
    /// perf's 99th percentile of send → acknowledgement, ms.
    pub p99_ms: f64,
    /// perf's median of the same, ms (absent from measurements made before it was recorded).
    #[serde(default)]
    pub p50_ms: Option<f64>,
    pub records: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    /// `/proc/loadavg` (1, 5, 15 min) as the run started.
    pub loadavg: String,
    /// CPU seconds (user + system) of every broker process over the run.
    pub broker_cpu_s: f64,
    /// CPU seconds of the perf process.
    pub client_cpu_s: f64,
}

/// Every run of one workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    pub workload: Workload,
    pub runs: Vec<RealRun>,
}

/// The workloads: record size 100 B / 1 KiB / 16 KiB, acks 1 and all, compression none and
/// lz4, one broker, and three brokers with RF 3 and acks=all, each in a closed loop; then three
/// at a fixed rate, each under a tenth to a third of what the closed loop reaches here (100 B
/// at 10 MB/s, 16 KiB at 33 MB/s, the 3-node cluster at 20 MB/s), for their latency.
pub fn plan() -> Vec<Workload> {
    vec![
        Workload::new(1, 100, "1", "none"),
        Workload::new(1, 1024, "1", "none"),
        Workload::new(1, 16_384, "1", "none"),
        Workload::new(1, 1024, "all", "none"),
        Workload::new(1, 1024, "1", "lz4"),
        Workload::new(1, 100, "1", "lz4"),
        Workload::new(3, 1024, "all", "none"),
        Workload::new(3, 16_384, "all", "none"),
        Workload::new(1, 100, "1", "none").at_rate(100_000),
        Workload::new(1, 16_384, "1", "none").at_rate(2_000),
        Workload::new(3, 1024, "all", "none").at_rate(20_000),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_covers_the_issue_and_names_are_unique() {
        let p = plan();
        assert!(p.len() >= 6);
        for size in [100, 1024, 16_384] {
            assert!(p.iter().any(|w| w.record_bytes == size), "{size}");
        }
        assert!(p.iter().any(|w| w.acks == "all" && w.brokers == 1));
        assert!(p.iter().any(|w| w.compression == "lz4"));
        assert!(p.iter().any(|w| w.brokers == 3 && w.replication_factor == 3 && w.acks == "all"));
        let mut names: Vec<&str> = p.iter().map(|w| w.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), p.len());
        assert_eq!(p[1].name, "1b-1k-acks1-none");
        assert!(records_cap(&p[0]) >= 30_000_000, "3 s at 1 GB/s of 100 B records");
        let paced: Vec<&Workload> = p.iter().filter(|w| w.rate_records_s.is_some()).collect();
        assert!(paced.len() >= 3, "latency rows");
        assert!(paced.iter().any(|w| w.brokers == 3));
        for w in paced {
            let closed = p.iter().find(|c| w.name.starts_with(&format!("{}-rate", c.name)));
            assert!(
                closed.is_some_and(|c| c.rate_records_s.is_none()),
                "{}: its closed loop",
                w.name
            );
            assert!(records_cap(w) >= w.rate_records_s.unwrap_or(0) * w.duration_ms / 1000);
            let args = w.perf_args("b:9092");
            let t = args.iter().position(|a| a == "--throughput").map(|i| args[i + 1].as_str());
            assert_eq!(t, Some(w.rate_records_s.unwrap_or(0).to_string().as_str()));
        }
        let args = p[0].perf_args("b:9092");
        assert!(args.windows(2).any(|a| a[0] == "--throughput" && a[1] == "-1"));
    }

    #[test]
    fn a_workload_written_before_rates_reads_as_a_closed_loop() {
        let mut v = serde_json::to_value(&plan()[0]).expect("json");
        assert!(v.get("rate_records_s").is_none(), "closed loops write no rate");
        v.as_object_mut().map(|o| o.remove("rate_records_s"));
        let w: Workload = serde_json::from_value(v).expect("parses");
        assert_eq!(w.rate_records_s, None);
        let run: RealRun = serde_json::from_value(serde_json::json!({"mb_s": 1.0, "p99_ms": 2.0,
            "records": 3, "errors": 0, "elapsed_s": 1.0, "loadavg": "0 0 0",
            "broker_cpu_s": 0.1, "client_cpu_s": 0.1}))
        .expect("an old run");
        assert_eq!(run.p50_ms, None);
    }
}
