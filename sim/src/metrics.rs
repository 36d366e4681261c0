//! Figures and time series computed after a run from its history and disk samples (so the
//! workload records facts, not aggregates): throughput (Kafka's MessagesInPerSec, BytesInPerSec,
//! BytesOutPerSec), produce latency percentiles, page-cache dirty bytes and hit ratio, disk
//! utilization (share of time with an IO in service, like iostat's %util).

use serde::Serialize;
use serde_json::{json, Value};

use crate::history::{History, PollKind, SendOutcome};

/// One sample of the disk's gauges and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskSample {
    pub t_ns: u64,
    pub dirty_bytes: u64,
    pub cached_bytes: u64,
    pub writeback_bytes: u64,
    pub hit_pages: u64,
    pub miss_pages: u64,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(ns: Option<u64>) -> Value {
    ns.map(|n| json!(n as f64 / 1e6)).unwrap_or(Value::Null)
}

pub struct Figures {
    pub summary_throughput: Value,
    pub summary_latency: Value,
    pub summary_page_cache: Value,
    pub charts: Vec<reports::Chart>,
}

/// Merges IO service intervals and returns busy nanoseconds inside each bucket.
pub fn busy_per_bucket(mut intervals: Vec<(u64, u64)>, bucket_ns: u64, buckets: usize) -> Vec<u64> {
    intervals.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in intervals {
        if e <= s {
            continue;
        }
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut busy = vec![0u64; buckets];
    for (mut s, e) in merged {
        while s < e {
            let b = (s / bucket_ns) as usize;
            if b >= buckets {
                break;
            }
            let end = e.min((b as u64 + 1) * bucket_ns);
            busy[b] += end - s;
            s = end;
        }
    }
    busy
}

/// `record_bytes` per producer entry is not in the history, so the caller passes the average.
pub fn figures(h: &History, samples: &[DiskSample], io: Vec<(u64, u64)>, duration_ns: u64, end_ns: u64, record_bytes: f64) -> Figures {
    let bucket_ns: u64 = if end_ns > 20_000_000_000 { 1_000_000_000 } else { 100_000_000 };
    let buckets = (end_ns / bucket_ns + 1) as usize;
    let t = |b: usize| (b as f64 + 0.5) * bucket_ns as f64 / 1e9;
    let per_s = 1e9 / bucket_ns as f64;

    let mut acked = vec![0u64; buckets];
    let mut lat_by_bucket: Vec<Vec<u64>> = vec![Vec::new(); buckets];
    let mut lat_all = Vec::new();
    let (mut n_acked, mut n_failed, mut n_unconfirmed, mut n_pending) = (0u64, 0u64, 0u64, 0u64);
    for s in &h.sends {
        match &s.outcome {
            SendOutcome::Acked { at_ns, .. } | SendOutcome::Unconfirmed { at_ns } => {
                if matches!(s.outcome, SendOutcome::Acked { .. }) {
                    n_acked += 1;
                } else {
                    n_unconfirmed += 1;
                }
                let b = (*at_ns / bucket_ns) as usize;
                let lat = at_ns.saturating_sub(s.created_ns);
                if b < buckets {
                    acked[b] += 1;
                    lat_by_bucket[b].push(lat);
                }
                lat_all.push(lat);
            }
            SendOutcome::Failed { .. } => n_failed += 1,
            SendOutcome::Pending => n_pending += 1,
        }
    }
    let mut consumed = vec![0u64; buckets];
    let mut n_consumed = 0u64;
    for p in &h.polls {
        if let PollKind::Records(rs) = &p.kind {
            n_consumed += rs.len() as u64;
            let b = (p.at_ns / bucket_ns) as usize;
            if b < buckets {
                consumed[b] += rs.len() as u64;
            }
        }
    }
    lat_all.sort_unstable();
    for v in &mut lat_by_bucket {
        v.sort_unstable();
    }
    let dur_s = duration_ns as f64 / 1e9;
    let summary_throughput = json!({
        "MessagesInPerSec": n_acked as f64 / dur_s,
        "BytesInPerSec": n_acked as f64 * record_bytes / dur_s,
        "MessagesOutPerSec": n_consumed as f64 / dur_s,
        "BytesOutPerSec": n_consumed as f64 * record_bytes / dur_s,
        "note": "record payload bytes per simulated second of the workload (duration_s); batch overhead not counted",
        "sends": h.sends.len(),
        "acked": n_acked,
        "unconfirmed_acks0": n_unconfirmed,
        "failed": n_failed,
        "pending_at_end": n_pending,
        "consumed": n_consumed,
    });
    let summary_latency = json!({
        "what": "record created (producer send) → acknowledged, including linger and batching",
        "count": lat_all.len(),
        "p50": ms(percentile(&lat_all, 50.0)),
        "p95": ms(percentile(&lat_all, 95.0)),
        "p99": ms(percentile(&lat_all, 99.0)),
        "p999": ms(percentile(&lat_all, 99.9)),
        "max": ms(lat_all.last().copied()),
        "mean": if lat_all.is_empty() { Value::Null } else { json!(lat_all.iter().map(|&x| x as f64).sum::<f64>() / lat_all.len() as f64 / 1e6) },
    });

    // Page cache: per-sample hit ratio of the interval, and dirty bytes.
    let mut dirty = Vec::new();
    let mut hit = Vec::new();
    let mut prev = DiskSample::default();
    let mut peak_dirty = 0u64;
    for s in samples {
        let x = s.t_ns as f64 / 1e9;
        dirty.push((x, s.dirty_bytes as f64 / (1 << 20) as f64));
        peak_dirty = peak_dirty.max(s.dirty_bytes);
        let (dh, dm) = (s.hit_pages.saturating_sub(prev.hit_pages), s.miss_pages.saturating_sub(prev.miss_pages));
        if dh + dm > 0 {
            hit.push((x, dh as f64 / (dh + dm) as f64));
        }
        prev = *s;
    }
    let last = samples.last().copied().unwrap_or_default();
    let total = last.hit_pages + last.miss_pages;
    let busy = busy_per_bucket(io, bucket_ns, buckets);
    let busy_total: u64 = busy.iter().sum();
    let summary_page_cache = json!({
        "hit_ratio": if total == 0 { Value::Null } else { json!(last.hit_pages as f64 / total as f64) },
        "hit_pages": last.hit_pages,
        "miss_pages": last.miss_pages,
        "peak_dirty_bytes": peak_dirty,
        "disk_utilization_mean": if end_ns == 0 { 0.0 } else { busy_total as f64 / end_ns as f64 },
    });

    let pts = |v: &[u64], scale: f64| v.iter().enumerate().map(|(b, &x)| (t(b), x as f64 * scale)).collect::<Vec<_>>();
    let pct = |p: f64| lat_by_bucket.iter().enumerate().filter_map(|(b, v)| percentile(v, p).map(|x| (t(b), x as f64 / 1e6))).collect::<Vec<_>>();
    let line = |name: &str, points| reports::Line { name: name.to_string(), points };
    let charts = vec![
        reports::Chart {
            file: "throughput.svg".into(),
            title: "Throughput (MessagesInPerSec acked, MessagesOutPerSec consumed)".into(),
            y_label: "records/s".into(),
            lines: vec![line("acked", pts(&acked, per_s)), line("consumed", pts(&consumed, per_s))],
        },
        reports::Chart {
            file: "produce_latency.svg".into(),
            title: "Produce latency (send → ack) by ack time".into(),
            y_label: "ms".into(),
            lines: vec![line("p50", pct(50.0)), line("p99", pct(99.0)), line("max", pct(100.0))],
        },
        reports::Chart {
            file: "page_cache_dirty.svg".into(),
            title: "Page cache: dirty bytes (incl. under writeback)".into(),
            y_label: "MiB".into(),
            lines: vec![line("dirty", dirty)],
        },
        reports::Chart {
            file: "page_cache_hit_ratio.svg".into(),
            title: "Page cache: read hit ratio per sample".into(),
            y_label: "hits / (hits + misses)".into(),
            lines: vec![line("hit ratio", hit)],
        },
        reports::Chart {
            file: "disk_utilization.svg".into(),
            title: "Disk utilization (share of time with an IO in service)".into(),
            y_label: "utilization".into(),
            lines: vec![line("disk", pts(&busy, 1.0 / bucket_ns as f64))],
        },
    ];
    Figures { summary_throughput, summary_latency, summary_page_cache, charts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_busy_time() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[], 50.0), None);
        // Overlaps count once; an interval spanning buckets is split.
        assert_eq!(busy_per_bucket(vec![(0, 5), (3, 8), (15, 25)], 10, 3), vec![8, 5, 5]);
    }
}
