//! OMB's result JSON (`io.openmessaging.benchmark.TestResult`) and the recorder that fills it.
//!
//! The recorder takes events with their time in seconds since the run's start (wall time in a
//! real run, simulated time in the simulator) and keeps OMB's shape:
//! - one entry per stats window (OMB: 10 s) in the test phase, for every list field: rates in
//!   messages per second, backlog in messages, latencies in milliseconds (publish delay in
//!   microseconds, as OMB);
//! - `aggregated*` fields over the whole test phase; events before the test phase (warm-up) are
//!   counted nowhere, as OMB resets its stats after the warm-up;
//! - latencies in HdrHistograms of microseconds, 1 µs .. 10 min at 3 significant digits (OMB: 5
//!   digits; 3 keeps each histogram small, within 0.1 %).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Note, Workload};

/// OMB's stats interval.
pub const WINDOW_S_DEFAULT: f64 = 10.0;
/// Latency histograms' range: 1 µs .. 10 minutes.
const LATENCY_US_MAX: u64 = 600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// One stats window's counters.
#[derive(Debug, Clone)]
struct Window {
    published: u64,
    publish_errors: u64,
    consumed: u64,
    publish_us: Histogram<u64>,
    publish_delay_us: Histogram<u64>,
    e2e_us: Histogram<u64>,
}

impl Window {
    fn new() -> Self {
        Self {
            published: 0,
            publish_errors: 0,
            consumed: 0,
            publish_us: histogram(),
            publish_delay_us: histogram(),
            e2e_us: histogram(),
        }
    }
}

/// Collects a run's events; [`Recorder::finish`] makes the result.
#[derive(Debug, Clone)]
pub struct Recorder {
    test_start_s: f64,
    window_s: f64,
    subscriptions_per_topic: u64,
    windows: Vec<Window>,
    /// Over the whole run (warm-up included): backlog is what was sent and not yet received.
    sent_total: u64,
    received_total: u64,
    /// The backlog at each window's end, messages.
    backlog: Vec<u64>,
}

fn us(ms: f64) -> u64 {
    ((ms * 1000.0).round() as u64).clamp(1, LATENCY_US_MAX)
}

impl Recorder {
    /// `test_start_s`: when the test phase begins (the warm-up's length).
    pub fn new(test_start_s: f64, window_s: f64, subscriptions_per_topic: u32) -> Self {
        assert!(window_s > 0.0, "a stats window has a length");
        Self {
            test_start_s,
            window_s,
            subscriptions_per_topic: u64::from(subscriptions_per_topic),
            windows: Vec::new(),
            sent_total: 0,
            received_total: 0,
            backlog: Vec::new(),
        }
    }

    /// The test-phase window holding `t_s`, created on first use; `None` in the warm-up.
    fn window(&mut self, t_s: f64) -> Option<&mut Window> {
        if t_s < self.test_start_s {
            return None;
        }
        let i = ((t_s - self.test_start_s) / self.window_s) as usize;
        while self.windows.len() <= i {
            self.windows.push(Window::new());
            self.backlog.push(0);
        }
        Some(&mut self.windows[i])
    }

    fn note_backlog(&mut self, t_s: f64) {
        if t_s < self.test_start_s {
            return;
        }
        let i = ((t_s - self.test_start_s) / self.window_s) as usize;
        let sent = self.sent_total.saturating_mul(self.subscriptions_per_topic);
        if let Some(b) = self.backlog.get_mut(i) {
            *b = sent.saturating_sub(self.received_total);
        }
    }

    /// A message acknowledged at `t_s`: `latency_ms` from send to acknowledgement,
    /// `delay_ms` from when the rate schedule wanted it sent to when it was (None: not measured).
    pub fn published(&mut self, t_s: f64, latency_ms: f64, delay_ms: Option<f64>) {
        self.sent_total += 1;
        if let Some(w) = self.window(t_s) {
            w.published += 1;
            let _ = w.publish_us.record(us(latency_ms));
            if let Some(d) = delay_ms {
                let _ = w.publish_delay_us.record(us(d));
            }
        }
        self.note_backlog(t_s);
    }

    /// A send that failed at `t_s`.
    pub fn publish_failed(&mut self, t_s: f64) {
        if let Some(w) = self.window(t_s) {
            w.publish_errors += 1;
        }
    }

    /// A message received by a consumer at `t_s`, `e2e_ms` after it was created (`None`: its
    /// creation time is unknown, e.g. a simulated prefill; it counts as consumed only).
    pub fn consumed(&mut self, t_s: f64, e2e_ms: Option<f64>) {
        self.received_total += 1;
        if let Some(w) = self.window(t_s) {
            w.consumed += 1;
            if let Some(e) = e2e_ms {
                let _ = w.e2e_us.record(us(e.max(0.0)));
            }
        }
        self.note_backlog(t_s);
    }

    /// Moves the start of the test phase to `t_s` (a real run learns it only once consumers are
    /// ready); what was recorded before is dropped.
    pub fn restart_test_at(&mut self, t_s: f64) {
        self.test_start_s = t_s;
        self.windows.clear();
        self.backlog.clear();
    }

    pub fn window_s(&self) -> f64 {
        self.window_s
    }

    /// Messages sent (times subscriptions) and not yet received, now.
    pub fn backlog_now(&self) -> u64 {
        self.sent_total
            .saturating_mul(self.subscriptions_per_topic)
            .saturating_sub(self.received_total)
    }

    /// How many test windows have ended by `now_s`.
    pub fn complete_windows(&self, now_s: f64) -> usize {
        (((now_s - self.test_start_s) / self.window_s).max(0.0) as usize).min(self.windows.len())
    }

    /// OMB's per-window line: rates, backlog, publish latency.
    pub fn window_line(&self, i: usize, message_bytes: f64) -> Option<String> {
        let w = self.windows.get(i)?;
        let (pub_rate, cons_rate) =
            (w.published as f64 / self.window_s, w.consumed as f64 / self.window_s);
        let p = percentiles(&w.publish_us, 0.001);
        let e = percentiles(&w.e2e_us, 0.001);
        Some(format!(
            "Pub rate {pub_rate:.1} msg/s / {:.1} MB/s | Cons rate {cons_rate:.1} msg/s / {:.1} MB/s | Backlog: {:.1} K | Pub Latency (ms) avg: {:.1} - 50%: {:.1} - 99%: {:.1} - 99.9%: {:.1} - Max: {:.1} | E2E Latency (ms) avg: {:.1} - 50%: {:.1} - 99%: {:.1} - Max: {:.1}",
            pub_rate * message_bytes / 1e6,
            cons_rate * message_bytes / 1e6,
            self.backlog.get(i).copied().unwrap_or(0) as f64 / 1000.0,
            p.avg, p.p50, p.p99, p.p999, p.max, e.avg, e.p50, e.p99, e.max
        ))
    }

    /// Messages published (acknowledged) and consumed in the test phase.
    pub fn test_counts(&self) -> (u64, u64) {
        self.windows.iter().fold((0, 0), |(p, c), w| (p + w.published, c + w.consumed))
    }

    /// The result, with `windows` windows at most (later events are dropped: a run ends).
    pub fn finish(mut self, header: ResultHeader, windows: usize) -> OmbResult {
        self.windows.truncate(windows);
        self.backlog.truncate(windows);
        // A window with no event keeps the previous window's backlog.
        for i in 1..self.backlog.len() {
            let w = &self.windows[i];
            if w.published == 0 && w.consumed == 0 {
                self.backlog[i] = self.backlog[i - 1];
            }
        }
        build(header, self)
    }
}

/// The fields of OMB's result that describe the run rather than measure it.
#[derive(Debug, Clone, Serialize)]
pub struct ResultHeader {
    pub workload: String,
    pub driver: String,
    pub message_size: u64,
    pub topics: u32,
    pub partitions: u32,
    pub producers_per_topic: u32,
    pub consumers_per_topic: u32,
}

impl ResultHeader {
    pub fn of(w: &Workload, driver: &str) -> Self {
        Self {
            workload: w.name.clone(),
            driver: driver.to_string(),
            message_size: u64::from(w.message_size),
            topics: w.topics,
            partitions: w.partitions_per_topic,
            producers_per_topic: w.producers_per_topic,
            consumers_per_topic: w.subscriptions_per_topic * w.consumer_per_subscription,
        }
    }
}

/// Seven percentiles and the mean, OMB's set.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub avg: f64,
    pub p50: f64,
    pub p75: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

fn percentiles(h: &Histogram<u64>, scale: f64) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let q = |p: f64| h.value_at_quantile(p) as f64 * scale;
    Percentiles {
        avg: h.mean() * scale,
        p50: q(0.5),
        p75: q(0.75),
        p95: q(0.95),
        p99: q(0.99),
        p999: q(0.999),
        p9999: q(0.9999),
        max: h.max() as f64 * scale,
    }
}

/// The quantile map OMB writes (`aggregated*LatencyQuantiles`): percentile → latency.
fn quantiles(h: &Histogram<u64>, scale: f64) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if h.is_empty() {
        return out;
    }
    let mut ps: Vec<f64> = (1..=99).map(f64::from).collect();
    ps.extend([99.9, 99.99, 100.0]);
    for p in ps {
        out.insert(format!("{p:.2}"), h.value_at_quantile(p / 100.0) as f64 * scale);
    }
    out
}

/// OMB's `TestResult`, field names and units as OMB writes them, plus a `loglab` block (what the
/// run was, notes, counts) that OMB's tools ignore.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OmbResult {
    pub workload: String,
    pub driver: String,
    pub message_size: u64,
    pub topics: u32,
    pub partitions: u32,
    pub producers_per_topic: u32,
    pub consumers_per_topic: u32,
    pub publish_rate: Vec<f64>,
    pub publish_error_rate: Vec<f64>,
    pub consume_rate: Vec<f64>,
    pub backlog: Vec<u64>,
    pub publish_latency_avg: Vec<f64>,
    #[serde(rename = "publishLatency50pct")]
    pub publish_latency_50pct: Vec<f64>,
    #[serde(rename = "publishLatency75pct")]
    pub publish_latency_75pct: Vec<f64>,
    #[serde(rename = "publishLatency95pct")]
    pub publish_latency_95pct: Vec<f64>,
    #[serde(rename = "publishLatency99pct")]
    pub publish_latency_99pct: Vec<f64>,
    #[serde(rename = "publishLatency999pct")]
    pub publish_latency_999pct: Vec<f64>,
    #[serde(rename = "publishLatency9999pct")]
    pub publish_latency_9999pct: Vec<f64>,
    pub publish_latency_max: Vec<f64>,
    pub publish_delay_latency_avg: Vec<f64>,
    #[serde(rename = "publishDelayLatency50pct")]
    pub publish_delay_latency_50pct: Vec<u64>,
    #[serde(rename = "publishDelayLatency75pct")]
    pub publish_delay_latency_75pct: Vec<u64>,
    #[serde(rename = "publishDelayLatency95pct")]
    pub publish_delay_latency_95pct: Vec<u64>,
    #[serde(rename = "publishDelayLatency99pct")]
    pub publish_delay_latency_99pct: Vec<u64>,
    #[serde(rename = "publishDelayLatency999pct")]
    pub publish_delay_latency_999pct: Vec<u64>,
    #[serde(rename = "publishDelayLatency9999pct")]
    pub publish_delay_latency_9999pct: Vec<u64>,
    pub publish_delay_latency_max: Vec<u64>,
    pub aggregated_publish_latency_avg: f64,
    #[serde(rename = "aggregatedPublishLatency50pct")]
    pub aggregated_publish_latency_50pct: f64,
    #[serde(rename = "aggregatedPublishLatency75pct")]
    pub aggregated_publish_latency_75pct: f64,
    #[serde(rename = "aggregatedPublishLatency95pct")]
    pub aggregated_publish_latency_95pct: f64,
    #[serde(rename = "aggregatedPublishLatency99pct")]
    pub aggregated_publish_latency_99pct: f64,
    #[serde(rename = "aggregatedPublishLatency999pct")]
    pub aggregated_publish_latency_999pct: f64,
    #[serde(rename = "aggregatedPublishLatency9999pct")]
    pub aggregated_publish_latency_9999pct: f64,
    pub aggregated_publish_latency_max: f64,
    pub aggregated_publish_delay_latency_avg: f64,
    #[serde(rename = "aggregatedPublishDelayLatency50pct")]
    pub aggregated_publish_delay_latency_50pct: u64,
    #[serde(rename = "aggregatedPublishDelayLatency75pct")]
    pub aggregated_publish_delay_latency_75pct: u64,
    #[serde(rename = "aggregatedPublishDelayLatency95pct")]
    pub aggregated_publish_delay_latency_95pct: u64,
    #[serde(rename = "aggregatedPublishDelayLatency99pct")]
    pub aggregated_publish_delay_latency_99pct: u64,
    #[serde(rename = "aggregatedPublishDelayLatency999pct")]
    pub aggregated_publish_delay_latency_999pct: u64,
    #[serde(rename = "aggregatedPublishDelayLatency9999pct")]
    pub aggregated_publish_delay_latency_9999pct: u64,
    pub aggregated_publish_delay_latency_max: u64,
    pub aggregated_publish_latency_quantiles: BTreeMap<String, f64>,
    pub aggregated_publish_delay_latency_quantiles: BTreeMap<String, f64>,
    pub end_to_end_latency_avg: Vec<f64>,
    #[serde(rename = "endToEndLatency50pct")]
    pub end_to_end_latency_50pct: Vec<f64>,
    #[serde(rename = "endToEndLatency75pct")]
    pub end_to_end_latency_75pct: Vec<f64>,
    #[serde(rename = "endToEndLatency95pct")]
    pub end_to_end_latency_95pct: Vec<f64>,
    #[serde(rename = "endToEndLatency99pct")]
    pub end_to_end_latency_99pct: Vec<f64>,
    #[serde(rename = "endToEndLatency999pct")]
    pub end_to_end_latency_999pct: Vec<f64>,
    #[serde(rename = "endToEndLatency9999pct")]
    pub end_to_end_latency_9999pct: Vec<f64>,
    pub end_to_end_latency_max: Vec<f64>,
    pub aggregated_end_to_end_latency_quantiles: BTreeMap<String, f64>,
    pub aggregated_end_to_end_latency_avg: f64,
    #[serde(rename = "aggregatedEndToEndLatency50pct")]
    pub aggregated_end_to_end_latency_50pct: f64,
    #[serde(rename = "aggregatedEndToEndLatency75pct")]
    pub aggregated_end_to_end_latency_75pct: f64,
    #[serde(rename = "aggregatedEndToEndLatency95pct")]
    pub aggregated_end_to_end_latency_95pct: f64,
    #[serde(rename = "aggregatedEndToEndLatency99pct")]
    pub aggregated_end_to_end_latency_99pct: f64,
    #[serde(rename = "aggregatedEndToEndLatency999pct")]
    pub aggregated_end_to_end_latency_999pct: f64,
    #[serde(rename = "aggregatedEndToEndLatency9999pct")]
    pub aggregated_end_to_end_latency_9999pct: f64,
    pub aggregated_end_to_end_latency_max: f64,
    /// Loglab's additions; OMB's tools ignore the key.
    pub loglab: LoglabBlock,
}

/// What a reader of the result needs beyond OMB's fields.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoglabBlock {
    /// `real` or `simulated`.
    pub world: String,
    pub window_s: f64,
    pub warmup_s: f64,
    pub test_s: f64,
    /// Messages acknowledged and consumed in the test phase.
    pub published: u64,
    pub consumed: u64,
    pub publish_errors: u64,
    /// Mean publish and consume rates over the test phase, messages/s and MB/s (10^6 bytes).
    pub publish_rate_mean: f64,
    pub consume_rate_mean: f64,
    pub publish_mb_s: f64,
    pub consume_mb_s: f64,
    pub notes: Vec<Note>,
}

fn build(h: ResultHeader, rec: Recorder) -> OmbResult {
    let window_s = rec.window_s;
    let rate = |n: u64| n as f64 / window_s;
    let ms = 0.001;
    let per = |f: &dyn Fn(&Window) -> Percentiles| -> Vec<Percentiles> {
        rec.windows.iter().map(f).collect()
    };
    let publish = per(&|w| percentiles(&w.publish_us, ms));
    let delay = per(&|w| percentiles(&w.publish_delay_us, 1.0));
    let e2e = per(&|w| percentiles(&w.e2e_us, ms));
    let (mut agg_pub, mut agg_delay, mut agg_e2e) = (histogram(), histogram(), histogram());
    for w in &rec.windows {
        let _ = agg_pub.add(&w.publish_us);
        let _ = agg_delay.add(&w.publish_delay_us);
        let _ = agg_e2e.add(&w.e2e_us);
    }
    let (ap, ad, ae) =
        (percentiles(&agg_pub, ms), percentiles(&agg_delay, 1.0), percentiles(&agg_e2e, ms));
    let col = |v: &[Percentiles], f: fn(&Percentiles) -> f64| v.iter().map(f).collect::<Vec<f64>>();
    let coli = |v: &[Percentiles], f: fn(&Percentiles) -> f64| {
        v.iter().map(|p| f(p).round() as u64).collect::<Vec<u64>>()
    };
    let published: u64 = rec.windows.iter().map(|w| w.published).sum();
    let consumed: u64 = rec.windows.iter().map(|w| w.consumed).sum();
    let errors: u64 = rec.windows.iter().map(|w| w.publish_errors).sum();
    let test_s = rec.windows.len() as f64 * window_s;
    let mean = |n: u64| if test_s > 0.0 { n as f64 / test_s } else { 0.0 };
    OmbResult {
        workload: h.workload,
        driver: h.driver,
        message_size: h.message_size,
        topics: h.topics,
        partitions: h.partitions,
        producers_per_topic: h.producers_per_topic,
        consumers_per_topic: h.consumers_per_topic,
        publish_rate: rec.windows.iter().map(|w| rate(w.published)).collect(),
        publish_error_rate: rec.windows.iter().map(|w| rate(w.publish_errors)).collect(),
        consume_rate: rec.windows.iter().map(|w| rate(w.consumed)).collect(),
        backlog: rec.backlog.clone(),
        publish_latency_avg: col(&publish, |p| p.avg),
        publish_latency_50pct: col(&publish, |p| p.p50),
        publish_latency_75pct: col(&publish, |p| p.p75),
        publish_latency_95pct: col(&publish, |p| p.p95),
        publish_latency_99pct: col(&publish, |p| p.p99),
        publish_latency_999pct: col(&publish, |p| p.p999),
        publish_latency_9999pct: col(&publish, |p| p.p9999),
        publish_latency_max: col(&publish, |p| p.max),
        publish_delay_latency_avg: col(&delay, |p| p.avg),
        publish_delay_latency_50pct: coli(&delay, |p| p.p50),
        publish_delay_latency_75pct: coli(&delay, |p| p.p75),
        publish_delay_latency_95pct: coli(&delay, |p| p.p95),
        publish_delay_latency_99pct: coli(&delay, |p| p.p99),
        publish_delay_latency_999pct: coli(&delay, |p| p.p999),
        publish_delay_latency_9999pct: coli(&delay, |p| p.p9999),
        publish_delay_latency_max: coli(&delay, |p| p.max),
        aggregated_publish_latency_avg: ap.avg,
        aggregated_publish_latency_50pct: ap.p50,
        aggregated_publish_latency_75pct: ap.p75,
        aggregated_publish_latency_95pct: ap.p95,
        aggregated_publish_latency_99pct: ap.p99,
        aggregated_publish_latency_999pct: ap.p999,
        aggregated_publish_latency_9999pct: ap.p9999,
        aggregated_publish_latency_max: ap.max,
        aggregated_publish_delay_latency_avg: ad.avg,
        aggregated_publish_delay_latency_50pct: ad.p50.round() as u64,
        aggregated_publish_delay_latency_75pct: ad.p75.round() as u64,
        aggregated_publish_delay_latency_95pct: ad.p95.round() as u64,
        aggregated_publish_delay_latency_99pct: ad.p99.round() as u64,
        aggregated_publish_delay_latency_999pct: ad.p999.round() as u64,
        aggregated_publish_delay_latency_9999pct: ad.p9999.round() as u64,
        aggregated_publish_delay_latency_max: ad.max.round() as u64,
        aggregated_publish_latency_quantiles: quantiles(&agg_pub, ms),
        aggregated_publish_delay_latency_quantiles: quantiles(&agg_delay, 1.0),
        end_to_end_latency_avg: col(&e2e, |p| p.avg),
        end_to_end_latency_50pct: col(&e2e, |p| p.p50),
        end_to_end_latency_75pct: col(&e2e, |p| p.p75),
        end_to_end_latency_95pct: col(&e2e, |p| p.p95),
        end_to_end_latency_99pct: col(&e2e, |p| p.p99),
        end_to_end_latency_999pct: col(&e2e, |p| p.p999),
        end_to_end_latency_9999pct: col(&e2e, |p| p.p9999),
        end_to_end_latency_max: col(&e2e, |p| p.max),
        aggregated_end_to_end_latency_quantiles: quantiles(&agg_e2e, ms),
        aggregated_end_to_end_latency_avg: ae.avg,
        aggregated_end_to_end_latency_50pct: ae.p50,
        aggregated_end_to_end_latency_75pct: ae.p75,
        aggregated_end_to_end_latency_95pct: ae.p95,
        aggregated_end_to_end_latency_99pct: ae.p99,
        aggregated_end_to_end_latency_999pct: ae.p999,
        aggregated_end_to_end_latency_9999pct: ae.p9999,
        aggregated_end_to_end_latency_max: ae.max,
        loglab: LoglabBlock {
            window_s,
            warmup_s: rec.test_start_s,
            test_s,
            published,
            consumed,
            publish_errors: errors,
            publish_rate_mean: mean(published),
            consume_rate_mean: mean(consumed),
            publish_mb_s: mean(published) * h.message_size as f64 / 1e6,
            consume_mb_s: mean(consumed) * h.message_size as f64 / 1e6,
            ..LoglabBlock::default()
        },
    }
}

/// OMB's closing line: aggregated rates and latencies.
pub fn summary_line(r: &OmbResult) -> String {
    format!(
        "Aggregated: Pub rate {:.1} msg/s / {:.2} MB/s | Cons rate {:.1} msg/s / {:.2} MB/s | Pub Latency (ms) avg: {:.1} - 50%: {:.1} - 95%: {:.1} - 99%: {:.1} - 99.9%: {:.1} - Max: {:.1} | E2E Latency (ms) avg: {:.1} - 50%: {:.1} - 99%: {:.1} - Max: {:.1}",
        r.loglab.publish_rate_mean,
        r.loglab.publish_mb_s,
        r.loglab.consume_rate_mean,
        r.loglab.consume_mb_s,
        r.aggregated_publish_latency_avg,
        r.aggregated_publish_latency_50pct,
        r.aggregated_publish_latency_95pct,
        r.aggregated_publish_latency_99pct,
        r.aggregated_publish_latency_999pct,
        r.aggregated_publish_latency_max,
        r.aggregated_end_to_end_latency_avg,
        r.aggregated_end_to_end_latency_50pct,
        r.aggregated_end_to_end_latency_99pct,
        r.aggregated_end_to_end_latency_max,
    )
}
