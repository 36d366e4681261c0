//! `perf omb`: an OMB workload against any Kafka-compatible broker, with this crate's producer and
//! consumer standing in for OMB's Kafka driver (one producer per OMB producer, one consumer group
//! per subscription). Writes OMB's result JSON.
//!
//! Phases, as OMB's `WorkloadGenerator` runs them:
//! 1. create the topics (`replicationFactor`, `topicConfig`), start every consumer and wait until
//!    each subscription's group has every partition (at most [`READY_TIMEOUT`]);
//! 2. warm-up (`warmupDurationMinutes`): producers and consumers run, nothing is recorded;
//!    with `consumerBacklogSizeGB` > 0 the consumers are started only after the producers have
//!    built that backlog (the warm-up is then the backlog build), as OMB pauses them;
//! 3. test (`testDurationMinutes`), recorded in windows of 10 s; with a backlog, the test runs on
//!    until the backlog has drained to `1 - backlogDrainRatio` of its size, at most 4× the test
//!    duration.
//!
//! Producers follow a schedule: producer `p` sends its `i`-th message at `start + i / rate`, and
//! the publish delay is how late it actually went (OMB's `publishDelayLatency`); `producerRate: 0`
//! sends as fast as the producer's buffer allows. End-to-end latency is the consumer's receive
//! time minus the record's CreateTime (milliseconds, as OMB measures it).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use net_model::Network;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;
use tokio::time::Instant;

use super::result::{OmbResult, Recorder, ResultHeader, WINDOW_S_DEFAULT};
use super::{Driver, KeyDistributor, Note, OmbError, Workload};
use crate::admin::{Admin, AdminConfig, AdminError, NewTopic};
use crate::config::{ConfigError, ProducerConfig};
use crate::consumer::{Consumer, ConsumerConfig, ConsumerError};
use crate::producer::{wall_clock_ms, ProduceError, Producer, ProducerRecord};

/// How long consumers may take to get every partition before the run is refused.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Keys in the KEY_ROUND_ROBIN pool.
const KEY_POOL: u64 = 10_000;
/// A backlog test runs at most this many times its test duration.
const BACKLOG_DRAIN_FACTOR_MAX: f64 = 4.0;

#[derive(Debug, Error)]
pub enum OmbRunError {
    #[error(transparent)]
    Omb(#[from] OmbError),
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("producer config: {0}")]
    Producer(#[from] ConfigError),
    #[error("consumer: {0}")]
    Consumer(#[from] ConsumerError),
    #[error("create topics: {0}")]
    Admin(#[from] AdminError),
    #[error("produce: {0}")]
    Produce(#[from] ProduceError),
    #[error("{0}")]
    NotReady(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// `perf omb` (OMB's `benchmark` command, one workload, one driver).
#[derive(Debug, Clone, Args)]
pub struct OmbArgs {
    /// OMB workload YAML.
    pub workload: String,
    /// OMB Kafka driver YAML.
    #[arg(long)]
    pub driver: String,
    /// Overrides the driver's bootstrap.servers.
    #[arg(long = "bootstrap-server")]
    pub bootstrap_server: Option<String>,
    /// Output directory: omb-result.json.
    #[arg(long, default_value = "out/omb")]
    pub out: String,
    /// Overrides warmupDurationMinutes (short runs on a laptop).
    #[arg(long = "warmup-minutes")]
    pub warmup_minutes: Option<f64>,
    /// Overrides testDurationMinutes.
    #[arg(long = "test-minutes")]
    pub test_minutes: Option<f64>,
    /// Stats window, seconds (OMB: 10).
    #[arg(long = "window-s", default_value_t = WINDOW_S_DEFAULT)]
    pub window_s: f64,
    /// Topic name prefix (default: `omb-<unix ms>`, so reruns do not mix).
    #[arg(long = "topic-prefix")]
    pub topic_prefix: Option<String>,
}

fn read(path: &str) -> Result<String, OmbRunError> {
    std::fs::read_to_string(path).map_err(|source| OmbRunError::Read { path: path.into(), source })
}

/// Everything the run needs, parsed and checked, with the notes gathered on the way.
struct Plan {
    workload: Workload,
    driver: Driver,
    producer: Vec<(String, String)>,
    consumer: Vec<(String, String)>,
    prefix: String,
    payload: Bytes,
    notes: Vec<Note>,
    window_s: f64,
}

fn plan(args: &OmbArgs) -> Result<Plan, OmbRunError> {
    let (mut workload, mut notes) = super::parse_workload(&args.workload, &read(&args.workload)?)?;
    let (driver, driver_notes) = super::parse_driver(&args.driver, &read(&args.driver)?)?;
    notes.extend(driver_notes);
    if let Some(m) = args.warmup_minutes {
        notes.push(Note::new("workload.warmupDurationMinutes", format!("overridden: {m}")));
        workload.warmup_duration_minutes = m;
    }
    if let Some(m) = args.test_minutes {
        notes.push(Note::new("workload.testDurationMinutes", format!("overridden: {m}")));
        workload.test_duration_minutes = m;
    }
    let mut producer = known_producer_properties(&driver, &mut notes);
    let mut consumer = known_consumer_properties(&driver, &mut notes);
    if let Some(b) = &args.bootstrap_server {
        producer.retain(|(k, _)| k != "bootstrap.servers");
        consumer.retain(|(k, _)| k != "bootstrap.servers");
        producer.push(("bootstrap.servers".into(), b.clone()));
        consumer.push(("bootstrap.servers".into(), b.clone()));
    }
    let payload = payload(&args.workload, &workload, &mut notes)?;
    let window_s = super::window_for(&workload, args.window_s, &mut notes);
    let prefix = args.topic_prefix.clone().unwrap_or_else(|| format!("omb-{}", wall_clock_ms()));
    Ok(Plan { workload, driver, producer, consumer, prefix, payload, notes, window_s })
}

/// The driver's producer properties this client knows; the rest become notes.
fn known_producer_properties(driver: &Driver, notes: &mut Vec<Note>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in driver.producer_properties() {
        match ProducerConfig::from_pairs([(k.as_str(), v.as_str())]) {
            Err(ConfigError::UnknownKey { .. }) => notes.push(Note::new(
                format!("driver.producerConfig.{k}"),
                "not a setting of Loglab's producer; ignored",
            )),
            _ => out.push((k, v)),
        }
    }
    out
}

/// The driver's consumer properties this client knows; the rest become notes.
fn known_consumer_properties(driver: &Driver, notes: &mut Vec<Note>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in driver.consumer_properties() {
        match ConsumerConfig::default().set(&k, &v) {
            Err(ConsumerError::UnknownConfig { .. }) => notes.push(Note::new(
                format!("driver.consumerConfig.{k}"),
                "not a setting of Loglab's consumer; ignored",
            )),
            _ => out.push((k, v)),
        }
    }
    out
}

/// `payloadFile` relative to the workload file's directory, or OMB's repository root (where its
/// workloads name `payload/payload-1Kb.data`); else a deterministic payload of `messageSize`.
fn payload(workload_path: &str, w: &Workload, notes: &mut Vec<Note>) -> Result<Bytes, OmbRunError> {
    let size = w.message_size as usize;
    if let Some(file) = &w.payload_file {
        let dir = std::path::Path::new(workload_path).parent().unwrap_or(std::path::Path::new("."));
        for candidate in [dir.join(file), dir.join("..").join(file)] {
            if let Ok(bytes) = std::fs::read(&candidate) {
                if bytes.len() != size {
                    notes.push(Note::new(
                        "workload.payloadFile",
                        format!(
                            "{} bytes, messageSize {size}: the file is sent as is",
                            bytes.len()
                        ),
                    ));
                }
                return Ok(Bytes::from(bytes));
            }
        }
        notes.push(Note::new(
            "workload.payloadFile",
            format!("{file} not found; a generated payload of messageSize bytes is sent"),
        ));
    }
    if w.use_randomized_payloads {
        notes.push(Note::new(
            "workload.useRandomizedPayloads",
            "one payload for every message (compressibility as randomBytesRatio says)",
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let random = (size as f64 * w.random_bytes_ratio) as usize;
    Ok((0..size)
        .map(|i| if i < random { rng.gen::<u8>() } else { b'a' + (i % 26) as u8 })
        .collect())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared between the tasks of a run.
struct Shared {
    start: Instant,
    recorder: Mutex<Recorder>,
    stop_producers: AtomicBool,
    stop_consumers: AtomicBool,
    sent_bytes: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// Runs the workload; prints OMB-style lines per window and the notes to `out`; writes
/// `OUT/omb-result.json`.
pub async fn run(
    args: &OmbArgs,
    net: Arc<dyn Network>,
    out: &mut (dyn Write + Send),
) -> Result<OmbResult, OmbRunError> {
    let plan = plan(args)?;
    for n in &plan.notes {
        writeln!(out, "note: {n}")?;
    }
    let w = &plan.workload;
    create_topics(&plan, Arc::clone(&net)).await?;
    let warmup_s = w.warmup_duration_minutes * 60.0;
    let test_s = w.test_duration_minutes * 60.0;
    let shared = Arc::new(Shared {
        start: Instant::now(),
        recorder: Mutex::new(Recorder::new(warmup_s, plan.window_s, w.subscriptions_per_topic)),
        stop_producers: AtomicBool::new(false),
        stop_consumers: AtomicBool::new(false),
        sent_bytes: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let backlog = super::backlog_bytes(w);
    let mut consumers = Vec::new();
    if backlog == 0 {
        consumers = start_consumers(&plan, &net, &shared).await?;
    }
    let producers = start_producers(&plan, &net, &shared)?;
    if backlog > 0 {
        while shared.sent_bytes.load(Ordering::Relaxed) < backlog {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        writeln!(out, "backlog of {backlog} bytes built at {:.1} s", shared.now_s())?;
        consumers = start_consumers(&plan, &net, &shared).await?;
    }
    wait_test_phase(&plan, &shared, warmup_s, test_s, backlog, out).await?;
    shared.stop_producers.store(true, Ordering::Relaxed);
    for p in producers {
        let _ = p.await;
    }
    shared.stop_consumers.store(true, Ordering::Relaxed);
    for c in consumers {
        let _ = c.await;
    }
    finish(args, &plan, &shared, out)
}

async fn create_topics(plan: &Plan, net: Arc<dyn Network>) -> Result<(), OmbRunError> {
    let bootstrap = plan
        .producer
        .iter()
        .find(|(k, _)| k == "bootstrap.servers")
        .map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let admin =
        Admin::new(AdminConfig { bootstrap_servers: bootstrap, ..AdminConfig::default() }, net);
    let topics: Vec<NewTopic> = (0..plan.workload.topics)
        .map(|t| {
            let mut nt = NewTopic::new(
                super::topic_name(&plan.prefix, t),
                plan.workload.partitions_per_topic as i32,
                plan.driver.replication_factor as i16,
            );
            for (k, v) in &plan.driver.topic_config {
                nt = nt.with_config(k.clone(), v.clone());
            }
            nt
        })
        .collect();
    let results = admin.create_topics(&topics).await;
    admin.close().await;
    for (_, r) in results? {
        r?;
    }
    Ok(())
}

/// Starts every consumer; returns once each subscription's group holds every partition.
async fn start_consumers(
    plan: &Plan,
    net: &Arc<dyn Network>,
    shared: &Arc<Shared>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, OmbRunError> {
    let w = &plan.workload;
    let mut handles = Vec::new();
    let mut groups = Vec::new();
    for t in 0..w.topics {
        for s in 0..w.subscriptions_per_topic {
            let assigned: Arc<Vec<AtomicUsize>> =
                Arc::new((0..w.consumer_per_subscription).map(|_| AtomicUsize::new(0)).collect());
            for c in 0..w.consumer_per_subscription as usize {
                let mut cfg = ConsumerConfig::from_pairs(plan.consumer.iter().cloned())?;
                cfg.set("group.id", &super::group_id(t, s))?;
                let mut consumer = Consumer::new(cfg, Arc::clone(net));
                consumer.subscribe([super::topic_name(&plan.prefix, t)])?;
                let (shared, assigned) = (Arc::clone(shared), Arc::clone(&assigned));
                handles.push(tokio::spawn(consume_loop(consumer, shared, assigned, c)));
            }
            groups.push(assigned);
        }
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    let partitions = w.partitions_per_topic as usize;
    while !groups
        .iter()
        .all(|g| g.iter().map(|a| a.load(Ordering::Relaxed)).sum::<usize>() == partitions)
    {
        if Instant::now() > deadline {
            shared.stop_consumers.store(true, Ordering::Relaxed);
            return Err(OmbRunError::NotReady(format!(
                "consumer groups did not get every partition within {} s",
                READY_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(handles)
}

async fn consume_loop(
    mut consumer: Consumer,
    shared: Arc<Shared>,
    assigned: Arc<Vec<AtomicUsize>>,
    me: usize,
) {
    while !shared.stop_consumers.load(Ordering::Relaxed) {
        match consumer.poll_partitions(Duration::from_millis(100)).await {
            Ok(parts) => {
                let now_ms = wall_clock_ms();
                let t = shared.now_s();
                let mut rec = lock(&shared.recorder);
                for r in parts.iter().flat_map(|p| p.iter()) {
                    rec.consumed(t, Some((now_ms - r.timestamp) as f64));
                }
            }
            Err(e) => {
                lock(&shared.first_error).get_or_insert_with(|| format!("consume: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assigned[me].store(consumer.assignment().len(), Ordering::Relaxed);
    }
    consumer.close().await;
}

fn start_producers(
    plan: &Plan,
    net: &Arc<dyn Network>,
    shared: &Arc<Shared>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, OmbRunError> {
    let w = &plan.workload;
    let rate = super::rate_per_producer(w);
    let mut handles = Vec::new();
    for t in 0..w.topics {
        for p in 0..w.producers_per_topic {
            let cfg = ProducerConfig::from_pairs(plan.producer.iter().cloned())?;
            let seed = u64::from(t) << 32 | u64::from(p);
            let producer = Producer::new(cfg, Arc::clone(net), seed);
            let job = ProduceJob {
                topic: super::topic_name(&plan.prefix, t),
                payload: plan.payload.clone(),
                keys: w.key_distributor,
                rate,
                seed,
            };
            handles.push(tokio::spawn(produce_loop(producer, job, Arc::clone(shared))));
        }
    }
    Ok(handles)
}

struct ProduceJob {
    topic: String,
    payload: Bytes,
    keys: KeyDistributor,
    rate: Option<f64>,
    seed: u64,
}

async fn produce_loop(producer: Producer, job: ProduceJob, shared: Arc<Shared>) {
    let mut rng = ChaCha8Rng::seed_from_u64(job.seed);
    let began = Instant::now();
    let mut i: u64 = 0;
    while !shared.stop_producers.load(Ordering::Relaxed) {
        let due = job.rate.map(|r| began + Duration::from_secs_f64(i as f64 / r));
        if let Some(due) = due {
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
        let sent_at = Instant::now();
        let delay_ms = due.map(|d| sent_at.saturating_duration_since(d).as_secs_f64() * 1000.0);
        let key = match job.keys {
            KeyDistributor::NoKey => None,
            KeyDistributor::KeyRoundRobin => Some(Bytes::from((i % KEY_POOL).to_string())),
            KeyDistributor::RandomNano => Some(Bytes::from(rng.gen::<u64>().to_string())),
        };
        let record = ProducerRecord {
            topic: job.topic.as_str().into(),
            key,
            value: Some(job.payload.clone()),
            ..ProducerRecord::default()
        };
        let bytes = job.payload.len() as u64;
        let sh = Arc::clone(&shared);
        let sent = producer
            .send_with_callback(
                record,
                Box::new(move |r| {
                    let t = sh.now_s();
                    let mut rec = lock(&sh.recorder);
                    match r {
                        Ok(_) => {
                            rec.published(t, sent_at.elapsed().as_secs_f64() * 1000.0, delay_ms);
                            sh.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
                        }
                        Err(_) => rec.publish_failed(t),
                    }
                }),
            )
            .await;
        if let Err(e) = sent {
            lock(&shared.first_error).get_or_insert_with(|| format!("produce: {e}"));
            break;
        }
        i += 1;
    }
    producer.flush().await;
    producer.close().await;
}

/// Waits through the warm-up and the test, printing one line per finished window.
async fn wait_test_phase(
    plan: &Plan,
    shared: &Arc<Shared>,
    warmup_s: f64,
    test_s: f64,
    backlog: u64,
    out: &mut (dyn Write + Send),
) -> Result<(), OmbRunError> {
    let test_start = shared.now_s().max(warmup_s);
    lock(&shared.recorder).restart_test_at(test_start);
    let window_s = lock(&shared.recorder).window_s();
    let size = f64::from(plan.workload.message_size);
    let drain_target = ((1.0 - plan.workload.backlog_drain_ratio) * backlog as f64 / size) as u64;
    let mut printed = 0usize;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = shared.now_s();
        let done_windows = ((now - test_start).max(0.0) / window_s) as usize;
        while printed < done_windows {
            let line = lock(&shared.recorder).window_line(printed, size);
            if let Some(line) = line {
                writeln!(out, "{line}")?;
            }
            printed += 1;
        }
        let elapsed = now - test_start;
        let drained = backlog == 0 || lock(&shared.recorder).backlog_now() <= drain_target;
        if elapsed >= test_s && (drained || elapsed >= test_s * BACKLOG_DRAIN_FACTOR_MAX) {
            return Ok(());
        }
    }
}

fn finish(
    args: &OmbArgs,
    plan: &Plan,
    shared: &Arc<Shared>,
    out: &mut (dyn Write + Send),
) -> Result<OmbResult, OmbRunError> {
    let rec = lock(&shared.recorder).clone();
    let windows = rec.complete_windows(shared.now_s());
    let driver =
        if plan.driver.name.is_empty() { "Kafka".to_string() } else { plan.driver.name.clone() };
    let mut result = rec.finish(ResultHeader::of(&plan.workload, &driver), windows);
    result.loglab.world = "real".into();
    result.loglab.notes = plan.notes.clone();
    if let Some(e) = lock(&shared.first_error).clone() {
        result.loglab.notes.push(Note::new("run", format!("first error: {e}")));
    }
    std::fs::create_dir_all(&args.out)?;
    let path = std::path::Path::new(&args.out).join("omb-result.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&result).map_err(std::io::Error::other)?)?;
    writeln!(out, "{}", super::result::summary_line(&result))?;
    writeln!(out, "wrote {}", path.display())?;
    Ok(result)
}
