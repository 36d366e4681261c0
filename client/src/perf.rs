//! Perf tools shaped like Kafka's `kafka-producer-perf-test` and `kafka-consumer-perf-test`
//! (bin `perf`, subcommands `produce` and `consume`). The logic lives here, over any
//! `net_model::Network`, so it runs on real TCP (the bin) and in tests.
//!
//! `perf produce` prints Kafka's lines: every 5 s
//! `N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency.` and at the end
//! `N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, P ms 50th, P ms
//! 95th, P ms 99th, P ms 99.9th.` — latency is send-to-acknowledgement per record.
//!
//! `perf consume` prints Kafka's CSV header and line (`start.time, end.time, data.consumed.in.MB,
//! MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec,
//! fetch.nMsg.sec`), then `N records received, R records/sec (M MB/sec), A ms avg latency, X ms max
//! latency, P ms 50th, ...` where latency is the duration of each `poll` that returned records.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use net_model::Network;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

/// The `perf` bin's tokio worker threads: how many cores its work can occupy at once (the host
/// profile's `cpu.threads.client` that `cargo simulate calibrate` writes).
pub const WORKER_THREADS: usize = 2;
use tokio::time::Instant;

use crate::accumulator::TopicPartition;
use crate::config::{ConfigError, ProducerConfig};
use crate::consumer::{AutoOffsetReset, Consumer, ConsumerConfig, ConsumerError};
use crate::producer::{ProduceError, Producer, ProducerRecord};

const MB: f64 = 1024.0 * 1024.0;
const REPORT_INTERVAL: Duration = Duration::from_millis(5_000);

#[derive(Debug, Error)]
pub enum PerfError {
    #[error(transparent)]
    ProducerConfig(#[from] ConfigError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error(transparent)]
    Produce(#[from] ProduceError),
    #[error("{0}")]
    Usage(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// `perf produce` (kafka-producer-perf-test's flags).
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    #[arg(long)]
    pub topic: String,
    /// Number of messages to produce.
    #[arg(long = "num-records")]
    pub num_records: u64,
    /// Message size in bytes.
    #[arg(long = "record-size")]
    pub record_size: usize,
    /// Throttle to at most this many messages/sec; -1 for no throttling.
    #[arg(long, allow_negative_numbers = true)]
    pub throughput: f64,
    /// Producer configs as key=value (e.g. acks=1 linger.ms=5 compression.type=lz4).
    #[arg(long = "producer-props", num_args = 1..)]
    pub producer_props: Vec<String>,
    /// A producer config properties file.
    #[arg(long = "producer.config")]
    pub producer_config: Option<std::path::PathBuf>,
    /// host:port of a broker (overrides bootstrap.servers).
    #[arg(long = "bootstrap-server")]
    pub bootstrap_server: Option<String>,
    /// Loglab: stop creating records after this many ms (then flush); `--num-records` stays the
    /// most that are sent. `cargo simulate validate` runs real and simulated producers for the
    /// same time this way.
    #[arg(long = "duration-ms")]
    pub duration_ms: Option<u64>,
    /// Loglab: each record's value is a different slice of 4 MiB of pseudo-random bytes over the
    /// simulator's 64-symbol alphabet, so compression sees what the simulator's records give it.
    /// Default (Kafka's tool): one payload of random uppercase letters for every record, which a
    /// codec compresses across the records of a batch.
    #[arg(long = "distinct-values")]
    pub distinct_values: bool,
    /// Loglab: also write the final figures as JSON to this file (percentiles in fractional ms).
    #[arg(long = "summary-json")]
    pub summary_json: Option<std::path::PathBuf>,
}

/// `perf consume` (kafka-consumer-perf-test's flags).
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// host:port of a broker.
    #[arg(long = "bootstrap-server")]
    pub bootstrap_server: String,
    /// Topic to consume (every partition is assigned; no group).
    #[arg(long)]
    pub topic: String,
    /// Number of messages to consume.
    #[arg(long)]
    pub messages: u64,
    /// max.partition.fetch.bytes.
    #[arg(long = "fetch-size", default_value_t = 1_048_576)]
    pub fetch_size: i32,
    /// Give up when no message arrives for this many ms.
    #[arg(long, default_value_t = 10_000)]
    pub timeout: u64,
    /// Start at the end of each partition instead of the beginning.
    #[arg(long = "from-latest")]
    pub from_latest: bool,
    /// Consumer config properties file.
    #[arg(long = "consumer.config")]
    pub consumer_config: Option<std::path::PathBuf>,
    /// Consumer configs as key=value.
    #[arg(long = "consumer-props", num_args = 1..)]
    pub consumer_props: Vec<String>,
    /// Accepted for kafka-consumer-perf-test compatibility; groups are not implemented (ignored).
    #[arg(long)]
    pub group: Option<String>,
    /// Do not print the CSV header.
    #[arg(long = "hide-header")]
    pub hide_header: bool,
    /// Print a CSV line per reporting interval.
    #[arg(long = "show-detailed-stats")]
    pub show_detailed_stats: bool,
    /// Interval between detailed stats lines, in ms.
    #[arg(long = "reporting-interval", default_value_t = 5_000)]
    pub reporting_interval: u64,
}

/// Latency statistics in milliseconds, sampled like Kafka's perf tool.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<f64>,
    sampling: u64,
    seen: u64,
    pub count: u64,
    pub bytes: u64,
    pub total_ms: f64,
    pub max_ms: f64,
    window_count: u64,
    window_bytes: u64,
    window_total_ms: f64,
    window_max_ms: f64,
}

impl Latencies {
    pub fn new(expected: u64) -> Self {
        let sampling = (expected / expected.clamp(1, 500_000)).max(1);
        Self { sampling, ..Self::default() }
    }

    pub fn record(&mut self, ms: f64, bytes: u64, n: u64) {
        self.count += n;
        self.bytes += bytes;
        self.total_ms += ms * n as f64;
        self.max_ms = self.max_ms.max(ms);
        self.window_count += n;
        self.window_bytes += bytes;
        self.window_total_ms += ms * n as f64;
        self.window_max_ms = self.window_max_ms.max(ms);
        if self.seen.is_multiple_of(self.sampling) {
            self.samples.push(ms);
        }
        self.seen += 1;
    }

    pub fn avg_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms / self.count as f64
        }
    }

    /// Percentiles (in whole ms, like Kafka's output) of the samples.
    pub fn percentiles(&self, ps: &[f64]) -> Vec<u64> {
        self.percentiles_ms(ps).into_iter().map(|ms| ms as u64).collect()
    }

    /// Percentiles of the samples in fractional ms (0 without samples).
    pub fn percentiles_ms(&self, ps: &[f64]) -> Vec<f64> {
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        ps.iter()
            .map(|p| {
                if s.is_empty() {
                    0.0
                } else {
                    s[((p * s.len() as f64) as usize).min(s.len() - 1)]
                }
            })
            .collect()
    }

    fn take_window(&mut self) -> (u64, u64, f64, f64) {
        let w = (
            self.window_count,
            self.window_bytes,
            if self.window_count == 0 {
                0.0
            } else {
                self.window_total_ms / self.window_count as f64
            },
            self.window_max_ms,
        );
        self.window_count = 0;
        self.window_bytes = 0;
        self.window_total_ms = 0.0;
        self.window_max_ms = 0.0;
        w
    }
}

/// What `perf produce` measured (`--summary-json` writes it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProduceSummary {
    pub records: u64,
    pub errors: u64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
    /// 50th, 95th, 99th, 99.9th.
    pub percentiles: Vec<u64>,
    /// The same percentiles in fractional ms.
    pub percentiles_ms: Vec<f64>,
    /// Seconds from the first send to the end of the flush.
    pub elapsed_s: f64,
    /// CPU seconds (user + system) of the thread that ran the send loop and the flush (the
    /// caller of `send`: records made and appended to their batches), from the first send to
    /// the end of the flush; `calibrate` fits the appending work from it. `None` where a thread's
    /// CPU time cannot be read (under the simulator).
    #[serde(default)]
    pub app_thread_cpu_s: Option<f64>,
}

/// CPU seconds (user + system) of the calling thread (`getrusage(RUSAGE_THREAD)`); `None`
/// under the simulator, where threads are not the machine's.
fn thread_cpu_s() -> Option<f64> {
    #[cfg(all(not(madsim), target_os = "linux"))]
    return Some(crate::calibrate::measure::rusage_cpu_s(libc::RUSAGE_THREAD));
    #[cfg(not(all(not(madsim), target_os = "linux")))]
    None
}

fn parse_kv(s: &str) -> Result<(String, String), PerfError> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| PerfError::Usage(format!("`{s}` is not key=value")))
}

fn read_properties(path: &std::path::Path) -> Result<Vec<(String, String)>, PerfError> {
    let text = std::fs::read_to_string(path)?;
    kafka_types::parse_properties(&text)
        .map_err(|e| PerfError::Usage(format!("{}: {e}", path.display())))
}

/// The fixed payload: random uppercase letters, like Kafka's tool.
fn payload(size: usize) -> Bytes {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    Bytes::from((0..size).map(|_| b'A' + rng.gen_range(0..26u8)).collect::<Vec<u8>>())
}

/// `bytes` of the simulator's record filler (`sim::workload::encode_value`): xorshift, 64
/// symbols from '0'. What `--distinct-values` slices values from, and what `calibrate`
/// measures the codecs on (the data the simulated producers compress).
pub fn filler(bytes: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = vec![0u8; bytes];
    for b in &mut v {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x & 0x3f) as u8 + b'0';
    }
    v
}

/// Bytes of the pool `--distinct-values` slices values from.
pub const DISTINCT_POOL_BYTES: usize = 4 << 20;

/// The values `perf produce` sends: Kafka's tool's one payload, or with `--distinct-values`
/// the pool (its tail repeats its head, so any slice of `size` fits) and record `i`'s value, a
/// slice at a stride no codec window finds repeated within a batch. Public so the validate twin
/// can be checked against it (`sim/tests/validate.rs`).
pub struct Values {
    pool: Bytes,
    size: usize,
    distinct: bool,
}

impl Values {
    /// `--record-size size`, with or without `--distinct-values`.
    pub fn new(size: usize, distinct: bool) -> Values {
        if !distinct {
            return Values { pool: payload(size), size, distinct };
        }
        let mut v = filler(DISTINCT_POOL_BYTES + size);
        v.copy_within(..size, DISTINCT_POOL_BYTES);
        Values { pool: Bytes::from(v), size, distinct }
    }

    /// Record `i`'s value.
    pub fn get(&self, i: u64) -> Bytes {
        if !self.distinct {
            return self.pool.clone();
        }
        // Consecutive records take consecutive, non-overlapping slices; the pool wraps only
        // after 4 MiB, far beyond a batch and any codec's window.
        let at = (i.wrapping_mul(self.size as u64 + 8) % DISTINCT_POOL_BYTES as u64) as usize;
        self.pool.slice(at..at + self.size)
    }
}

/// Runs `perf produce`, printing Kafka's lines to `out`.
pub async fn produce(
    args: &ProduceArgs,
    net: Arc<dyn Network>,
    out: &mut (dyn Write + Send),
) -> Result<ProduceSummary, PerfError> {
    let mut pairs = Vec::new();
    if let Some(p) = &args.producer_config {
        pairs.extend(read_properties(p)?);
    }
    for kv in &args.producer_props {
        pairs.push(parse_kv(kv)?);
    }
    if let Some(b) = &args.bootstrap_server {
        pairs.push(("bootstrap.servers".into(), b.clone()));
    }
    let cfg = ProducerConfig::from_pairs(pairs)?;
    if cfg.bootstrap_servers.is_empty() {
        return Err(PerfError::Usage(
            "give --bootstrap-server or bootstrap.servers in --producer-props".into(),
        ));
    }
    let producer = Producer::new(cfg, net, 0);
    let values = Values::new(args.record_size, args.distinct_values);
    let stop = args.duration_ms.map(Duration::from_millis);
    let stats = Arc::new(Mutex::new(Latencies::new(args.num_records)));
    let errors = Arc::new(Mutex::new((0u64, None::<ProduceError>)));
    let start = Instant::now();
    let app_cpu_at_start = thread_cpu_s();
    let mut last_report = start;
    for i in 0..args.num_records {
        if stop.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        if args.throughput > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / args.throughput);
            let now = Instant::now();
            if due > now + Duration::from_millis(1) {
                tokio::time::sleep(due - now).await;
            }
        }
        let sent_at = Instant::now();
        let (st, er) = (Arc::clone(&stats), Arc::clone(&errors));
        let size = args.record_size as u64;
        let record = ProducerRecord {
            topic: args.topic.as_str().into(),
            value: Some(values.get(i)),
            ..ProducerRecord::default()
        };
        producer
            .send_with_callback(
                record,
                Box::new(move |r| match r {
                    Ok(_) => {
                        let ms = sent_at.elapsed().as_secs_f64() * 1000.0;
                        st.lock().unwrap_or_else(|e| e.into_inner()).record(ms, size, 1);
                    }
                    Err(e) => {
                        let mut g = er.lock().unwrap_or_else(|e| e.into_inner());
                        g.0 += 1;
                        g.1.get_or_insert(e);
                    }
                }),
            )
            .await?;
        if last_report.elapsed() >= REPORT_INTERVAL {
            let elapsed = last_report.elapsed().as_secs_f64();
            last_report = Instant::now();
            let (n, bytes, avg, max) =
                stats.lock().unwrap_or_else(|e| e.into_inner()).take_window();
            writeln!(
                out,
                "{n} records sent, {:.1} records/sec ({:.2} MB/sec), {avg:.1} ms avg latency, {max:.1} ms max latency.",
                n as f64 / elapsed,
                bytes as f64 / MB / elapsed
            )?;
        }
    }
    producer.flush().await;
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    // The loop and the flush ran in this future, which `block_on` polls on one thread (perf's
    // main thread); a thread's CPU time is only theirs if nothing moved the future.
    let app_thread_cpu_s = app_cpu_at_start.zip(thread_cpu_s()).map(|(a, b)| (b - a).max(0.0));
    producer.close().await;
    let s = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (n_errors, first_error) = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ps = s.percentiles(&[0.5, 0.95, 0.99, 0.999]);
    let summary = ProduceSummary {
        records: s.count,
        errors: n_errors,
        records_per_sec: s.count as f64 / elapsed,
        mb_per_sec: s.bytes as f64 / MB / elapsed,
        avg_ms: s.avg_ms(),
        max_ms: s.max_ms,
        percentiles: ps.clone(),
        percentiles_ms: s.percentiles_ms(&[0.5, 0.95, 0.99, 0.999]),
        elapsed_s: elapsed,
        app_thread_cpu_s,
    };
    writeln!(
        out,
        "{} records sent, {:.6} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, {} ms 50th, {} ms 95th, {} ms 99th, {} ms 99.9th.",
        summary.records,
        summary.records_per_sec,
        summary.mb_per_sec,
        summary.avg_ms,
        summary.max_ms,
        ps[0],
        ps[1],
        ps[2],
        ps[3]
    )?;
    if let Some(e) = first_error {
        writeln!(out, "{n_errors} records failed; first error: {e}")?;
    }
    if let Some(path) = &args.summary_json {
        let text = serde_json::to_string_pretty(&summary).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")?;
    }
    Ok(summary)
}

/// What `perf consume` measured.
#[derive(Debug, Clone)]
pub struct ConsumeSummary {
    pub records: u64,
    pub bytes: u64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub avg_ms: f64,
    pub max_ms: f64,
    pub percentiles: Vec<u64>,
}

/// `yyyy-MM-dd HH:mm:ss:SSS` (UTC), Kafka's consumer perf date format.
fn format_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}:{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

const CONSUME_HEADER: &str = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec";

/// Runs `perf consume`, printing Kafka's CSV and a latency line to `out`.
pub async fn consume(
    args: &ConsumeArgs,
    net: Arc<dyn Network>,
    out: &mut (dyn Write + Send),
) -> Result<ConsumeSummary, PerfError> {
    let mut pairs = Vec::new();
    if let Some(p) = &args.consumer_config {
        pairs.extend(read_properties(p)?);
    }
    for kv in &args.consumer_props {
        pairs.push(parse_kv(kv)?);
    }
    pairs.push(("bootstrap.servers".into(), args.bootstrap_server.clone()));
    pairs.push(("max.partition.fetch.bytes".into(), args.fetch_size.to_string()));
    let mut cfg = ConsumerConfig::from_pairs(pairs)?;
    cfg.auto_offset_reset =
        if args.from_latest { AutoOffsetReset::Latest } else { AutoOffsetReset::Earliest };
    let mut consumer = Consumer::new(cfg, net);
    let topics = [args.topic.clone()];
    let meta = consumer
        .cluster()
        .refresh_metadata(Some(&topics), false)
        .await
        .map_err(ConsumerError::from)?;
    let partitions: Vec<TopicPartition> = meta
        .topic(&args.topic)
        .filter(|t| t.error_code == kafka_types::ErrorCode::NONE)
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(args.topic.clone(), p.partition))
                .collect()
        })
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(PerfError::Usage(format!(
            "topic `{}` does not exist or has no partitions",
            args.topic
        )));
    }
    consumer.assign(partitions);
    if !args.hide_header {
        if args.show_detailed_stats {
            writeln!(out, "time, threadId, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec")?;
        } else {
            writeln!(out, "{CONSUME_HEADER}")?;
        }
    }
    let start_wall = crate::producer::wall_clock_ms();
    let start = Instant::now();
    let mut stats = Latencies::new(args.messages);
    let mut last_record = Instant::now();
    let mut last_report = Instant::now();
    let (mut report_n, mut report_bytes) = (0u64, 0u64);
    let timeout = Duration::from_millis(args.timeout);
    let mut per_partition: BTreeMap<i32, u64> = BTreeMap::new();
    while stats.count < args.messages && last_record.elapsed() < timeout {
        let t = Instant::now();
        let parts = consumer.poll_partitions(Duration::from_millis(100)).await?;
        if parts.is_empty() {
            continue;
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        last_record = Instant::now();
        let (mut bytes, mut n) = (0u64, 0u64);
        for p in &parts {
            for r in p.iter() {
                bytes += (r.value.map_or(0, <[u8]>::len) + r.key.map_or(0, <[u8]>::len)) as u64;
            }
            *per_partition.entry(p.partition).or_default() += p.len() as u64;
            n += p.len() as u64;
        }
        stats.record(ms, bytes, n);
        if args.show_detailed_stats
            && last_report.elapsed() >= Duration::from_millis(args.reporting_interval)
        {
            let el = last_report.elapsed().as_secs_f64();
            let n = stats.count - report_n;
            let b = stats.bytes - report_bytes;
            writeln!(
                out,
                "{}, 0, {:.4}, {:.4}, {}, {:.4}, 0, {}, {:.4}, {:.4}",
                format_ms(crate::producer::wall_clock_ms()),
                stats.bytes as f64 / MB,
                b as f64 / MB / el,
                stats.count,
                n as f64 / el,
                (el * 1000.0) as u64,
                b as f64 / MB / el,
                n as f64 / el
            )?;
            report_n = stats.count;
            report_bytes = stats.bytes;
            last_report = Instant::now();
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let end_wall = crate::producer::wall_clock_ms();
    consumer.close().await;
    let mb = stats.bytes as f64 / MB;
    let ps = stats.percentiles(&[0.5, 0.95, 0.99, 0.999]);
    let summary = ConsumeSummary {
        records: stats.count,
        bytes: stats.bytes,
        records_per_sec: stats.count as f64 / elapsed,
        mb_per_sec: mb / elapsed,
        avg_ms: stats.avg_ms(),
        max_ms: stats.max_ms,
        percentiles: ps.clone(),
    };
    if !args.show_detailed_stats {
        writeln!(
            out,
            "{}, {}, {:.4}, {:.4}, {}, {:.4}, 0, {}, {:.4}, {:.4}",
            format_ms(start_wall),
            format_ms(end_wall),
            mb,
            summary.mb_per_sec,
            summary.records,
            summary.records_per_sec,
            (elapsed * 1000.0) as u64,
            summary.mb_per_sec,
            summary.records_per_sec
        )?;
    }
    writeln!(
        out,
        "{} records received, {:.6} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, {} ms 50th, {} ms 95th, {} ms 99th, {} ms 99.9th.",
        summary.records,
        summary.records_per_sec,
        summary.mb_per_sec,
        summary.avg_ms,
        summary.max_ms,
        ps[0],
        ps[1],
        ps[2],
        ps[3]
    )?;
    if stats.count < args.messages {
        writeln!(
            out,
            "WARNING: exiting before consuming the expected number of messages: timeout ({} ms) exceeded.",
            args.timeout
        )?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_like_kafka() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00:000");
        assert_eq!(format_ms(1_700_000_000_123), "2023-11-14 22:13:20:123");
    }

    #[test]
    fn distinct_values_differ_and_repeated_ones_do_not() {
        let d = Values::new(1000, true);
        let (a, b) = (d.get(0), d.get(1));
        assert_eq!((a.len(), b.len()), (1000, 1000));
        assert_ne!(a, b);
        assert!(a.iter().all(|c| (b'0'..b'0' + 64).contains(c)), "the simulator's alphabet");
        // The last slice before the wrap fits the pool.
        let n = (DISTINCT_POOL_BYTES / 1008) as u64;
        assert_eq!(d.get(n).len(), 1000);
        let r = Values::new(1000, false);
        assert_eq!(r.get(0), r.get(1), "Kafka's tool: one payload");
    }

    #[test]
    fn percentiles_of_samples() {
        let mut l = Latencies::new(1000);
        for i in 0..1000 {
            l.record(i as f64, 1, 1);
        }
        assert_eq!(l.percentiles(&[0.5, 0.99]), vec![500, 990]);
        let mut f = Latencies::new(10);
        for ms in [0.25, 0.5, 0.75, 1.5] {
            f.record(ms, 1, 1);
        }
        assert_eq!(f.percentiles_ms(&[0.5, 0.99]), vec![0.75, 1.5]);
        assert_eq!(f.percentiles(&[0.5, 0.99]), vec![0, 1]);
        assert_eq!(l.max_ms, 999.0);
    }
}
