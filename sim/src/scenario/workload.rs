//! Lowering `workload` (client hosts, producers, consumers, prefill), `checks` and `expect`.

use std::collections::BTreeMap;

use records::Compression;
use serde_json::Value;

use super::raw::{RawConsumer, RawPrefill, RawProducer, RawWorkload};
use super::units::{range, req, UInt};
use super::{
    invalid, join, Acks, ConsumerSpec, GroupSpec, HostSpec, Mode, OffsetReset, PrefillSpec,
    ProducerSpec, TopicSpec, R,
};
use crate::checkers::{Outcome, CHECKS};

/// What `workload` says.
pub(super) struct WorkloadParts {
    pub client_hosts: u32,
    pub client_nic_bps: u64,
    pub producers: Vec<ProducerSpec>,
    pub consumers: Vec<ConsumerSpec>,
    pub prefill: Vec<PrefillSpec>,
}

/// What producers, consumers and prefill entries are checked against.
struct Ctx<'a> {
    topics: &'a [TopicSpec],
    mode: Mode,
    client_hosts: u32,
}

pub(super) fn workload(
    w: &RawWorkload,
    topics: &[TopicSpec],
    mode: Mode,
    host: &HostSpec,
) -> R<WorkloadParts> {
    let client_hosts = range(&w.client_hosts, "workload", "client_hosts", 1, 1, 64)? as u32;
    let client_nic_bps = match w.client_nic.get() {
        None => host.nic_bps,
        Some(_) if mode != Mode::Network => {
            return Err(invalid("workload.client_nic", "needs cluster.mode = \"network\""))
        }
        Some(b) => b.0,
    };
    if client_hosts > 1 && mode != Mode::Network {
        return Err(invalid(
            "workload.client_hosts",
            "client hosts are network hosts: needs cluster.mode = \"network\"",
        ));
    }
    let ctx = Ctx { topics, mode, client_hosts };
    let list = |p: &'static str, n: usize| (0..n).map(move |i| format!("workload.{p}[{i}]"));
    let raw_producers = w.producers.get().map_or(&[][..], Vec::as_slice);
    let producers = raw_producers
        .iter()
        .zip(list("producers", raw_producers.len()))
        .map(|(r, p)| producer(r, &p, &ctx))
        .collect::<R<Vec<_>>>()?;
    let raw_consumers = w.consumers.get().map_or(&[][..], Vec::as_slice);
    let consumers = raw_consumers
        .iter()
        .zip(list("consumers", raw_consumers.len()))
        .map(|(r, p)| consumer(r, &p, &ctx))
        .collect::<R<Vec<_>>>()?;
    let raw_prefill = w.prefill.get().map_or(&[][..], Vec::as_slice);
    if mode != Mode::Network && !raw_prefill.is_empty() {
        return Err(invalid(
            "workload.prefill",
            "prefill writes through the client crate's producer: needs cluster.mode = \"network\"",
        ));
    }
    let prefill = raw_prefill
        .iter()
        .zip(list("prefill", raw_prefill.len()))
        .map(|(r, p)| prefill(r, &p, &ctx))
        .collect::<R<Vec<_>>>()?;
    Ok(WorkloadParts { client_hosts, client_nic_bps, producers, consumers, prefill })
}

/// `topic` is required and one of the scenario's topics.
fn topic_of(topic: &super::units::Opt<String>, p: &str, topics: &[TopicSpec]) -> R<String> {
    let name = req(topic, p, "topic")?;
    if topics.iter().any(|t| &t.name == name) {
        Ok(name.clone())
    } else {
        Err(invalid(&join(p, "topic"), format!("no topic named {name} in topics")))
    }
}

/// A producer's or consumer's `host` (a client machine), if given.
fn host_of(host: &super::units::Opt<UInt>, p: &str, client_hosts: u32) -> R<Option<u32>> {
    match host.get() {
        None => Ok(None),
        Some(_) => Ok(Some(range(host, p, "host", 0, 0, u64::from(client_hosts) - 1)? as u32)),
    }
}

/// `pacing`'s range: a tick of 10 µs (finer than any sleeping load generator) to 1 s.
const PACING_NS_MIN: u64 = 10_000;
const PACING_NS_MAX: u64 = 1_000_000_000;

fn producer(r: &RawProducer, p: &str, ctx: &Ctx) -> R<ProducerSpec> {
    let topic = topic_of(&r.topic, p, ctx.topics)?;
    let acks = r.acks.get().copied().unwrap_or(Acks::All);
    let idempotence = r.idempotence.get().copied().unwrap_or(false);
    if idempotence && acks != Acks::All {
        return Err(invalid(
            &join(p, "enable.idempotence"),
            "idempotence requires acks = all (as Kafka's producer)",
        ));
    }
    let record_bytes = range(&r.record_bytes, p, "record.bytes", 100, 8, 1 << 20)? as usize;
    let rate = req(&r.rate, p, "rate")?.0;
    if rate.is_none() && ctx.mode != Mode::Network {
        return Err(invalid(&join(p, "rate"), "\"max\" (a closed loop) needs cluster.mode = \"network\" (the client crate's producer)"));
    }
    let pacing_ns = r.pacing.get().map(|d| d.0);
    if let Some(tick) = pacing_ns {
        if rate.is_none() {
            return Err(invalid(&join(p, "pacing"), "needs a rate (\"max\" is a closed loop)"));
        }
        if !(PACING_NS_MIN..=PACING_NS_MAX).contains(&tick) {
            return Err(invalid(&join(p, "pacing"), "expected 10us..1s"));
        }
    }
    let ms = |v, key, default, lo| range(v, p, key, default, lo, 3_600_000);
    Ok(ProducerSpec {
        pacing_ns,
        count: range(&r.count, p, "count", 1, 1, 1000)? as u32,
        topic,
        rate_per_s: rate.unwrap_or(0),
        max_rate: rate.is_none(),
        host: host_of(&r.host, p, ctx.client_hosts)?,
        record_bytes,
        acks,
        linger_ms: ms(&r.linger_ms, "linger.ms", 5, 0)?,
        batch_size: range(&r.batch_size, p, "batch.size", 16384, 0, 64 << 20)? as usize,
        compression: r.compression.get().map_or(Compression::None, |c| c.0),
        retries: range(&r.retries, p, "retries", i32::MAX as u64, 0, i32::MAX as u64)? as u32,
        retry_backoff_ms: ms(&r.retry_backoff_ms, "retry.backoff.ms", 100, 0)?,
        request_timeout_ms: ms(&r.request_timeout_ms, "request.timeout.ms", 30_000, 1)?,
        delivery_timeout_ms: ms(&r.delivery_timeout_ms, "delivery.timeout.ms", 120_000, 1)?,
        max_in_flight: range(
            &r.max_in_flight,
            p,
            "max.in.flight.requests.per.connection",
            5,
            1,
            100,
        )? as u32,
        idempotence,
    })
}

fn consumer(r: &RawConsumer, p: &str, ctx: &Ctx) -> R<ConsumerSpec> {
    let topic = topic_of(&r.topic, p, ctx.topics)?;
    let auto_offset_reset = match r.auto_offset_reset.get().map_or("earliest", String::as_str) {
        "earliest" => OffsetReset::Earliest,
        "latest" => OffsetReset::Latest,
        _ => {
            return Err(invalid(&join(p, "auto.offset.reset"), "expected one of earliest, latest"))
        }
    };
    let group_id = r.group_id.get().cloned();
    let group = group(r, p, ctx.mode)?;
    if group_id.is_some() && r.host.is_some() {
        return Err(invalid(&join(p, "host"), "group members run on their own hosts (consumer-N)"));
    }
    let ms = |v, key, default, lo| range(v, p, key, default, lo, 3_600_000);
    Ok(ConsumerSpec {
        count: range(&r.count, p, "count", 1, 1, 1000)? as u32,
        topic,
        group_id,
        group,
        max_partition_fetch_bytes: range(
            &r.max_partition_fetch_bytes,
            p,
            "max.partition.fetch.bytes",
            1 << 20,
            1,
            1 << 30,
        )? as usize,
        fetch_max_wait_ms: ms(&r.fetch_max_wait_ms, "fetch.max.wait.ms", 500, 0)?,
        auto_offset_reset,
        retry_backoff_ms: ms(&r.retry_backoff_ms, "retry.backoff.ms", 100, 0)?,
        request_timeout_ms: ms(&r.request_timeout_ms, "request.timeout.ms", 30_000, 1)?,
        host: host_of(&r.host, p, ctx.client_hosts)?,
    })
}

/// A consumer entry's group settings (only with `group.id`).
fn group(r: &RawConsumer, p: &str, mode: Mode) -> R<Option<GroupSpec>> {
    let Some(g) = r.group_id.get() else {
        let group_keys = [
            ("session.timeout.ms", r.session_timeout_ms.is_some()),
            ("heartbeat.interval.ms", r.heartbeat_interval_ms.is_some()),
            ("max.poll.interval.ms", r.max_poll_interval_ms.is_some()),
            ("partition.assignment.strategy", r.assignment_strategy.is_some()),
            ("group.instance.id", r.instance_id.is_some()),
        ];
        if let Some((k, _)) = group_keys.iter().find(|(_, present)| *present) {
            return Err(invalid(&join(p, k), "only with group.id"));
        }
        return Ok(None);
    };
    if mode != Mode::Network {
        return Err(invalid(&join(p, "group.id"), "consumer groups need cluster.mode = \"network\" (members are the client crate's consumers on their own hosts)"));
    }
    if g.is_empty() {
        return Err(invalid(&join(p, "group.id"), "must not be empty"));
    }
    let ms = |v, key, default| range(v, p, key, default, 1, 3_600_000);
    let session_timeout_ms = ms(&r.session_timeout_ms, "session.timeout.ms", 45_000)?;
    let heartbeat_interval_ms = ms(&r.heartbeat_interval_ms, "heartbeat.interval.ms", 3_000)?;
    if heartbeat_interval_ms >= session_timeout_ms {
        return Err(invalid(&join(p, "heartbeat.interval.ms"), "must be below session.timeout.ms"));
    }
    let assignment_strategy =
        r.assignment_strategy.get().map_or("range,cooperative-sticky", String::as_str);
    for name in assignment_strategy.split(',').map(str::trim) {
        if !["range", "roundrobin", "sticky", "cooperative-sticky"].contains(&name) {
            return Err(invalid(&join(p, "partition.assignment.strategy"), format!("unknown assignor {name}: expected range, roundrobin, sticky, cooperative-sticky")));
        }
    }
    Ok(Some(GroupSpec {
        session_timeout_ms,
        heartbeat_interval_ms,
        max_poll_interval_ms: ms(&r.max_poll_interval_ms, "max.poll.interval.ms", 300_000)?,
        rebalance_timeout_ms: None,
        assignment_strategy: assignment_strategy.to_string(),
        instance_id_prefix: r.instance_id.get().cloned(),
    }))
}

/// `workload.prefill[i]`: a backlog written before the workload's clock starts.
fn prefill(r: &RawPrefill, p: &str, ctx: &Ctx) -> R<PrefillSpec> {
    Ok(PrefillSpec {
        topic: topic_of(&r.topic, p, ctx.topics)?,
        // Absent: no records (as the hand-written parser had it; a present 0 is refused).
        records: range(&r.records, p, "records", 0, 1, 100_000_000)?,
        record_bytes: range(&r.record_bytes, p, "record.bytes", 100, 8, 1 << 20)? as usize,
    })
}

/// `checks`: as listed, or (absent) every check that has something to examine.
pub(super) fn checks(
    v: Option<&Value>,
    producers: &[ProducerSpec],
    consumers: &[ConsumerSpec],
    prefill: &[PrefillSpec],
    brokers: u32,
) -> R<Vec<String>> {
    let Some(v) = v else {
        // The cluster checks (replicas-agree, hw-monotonic) are on by default only in
        // cluster runs; single-broker scenarios can list them (they hold trivially).
        // Only the checks that apply: a check with nothing to examine would be vacuous.
        let has_consumers = !consumers.is_empty();
        let has_groups = consumers.iter().any(|c| c.group.is_some());
        let acked = producers.iter().any(|p| p.acks != Acks::Zero);
        let writes = !producers.is_empty() || !prefill.is_empty();
        let applies = |c: &str| match c {
            "lost-write" => acked,
            "inconsistent-offsets" | "duplicate" => writes,
            "nonmonotonic-poll" | "poll-skip" => has_consumers,
            "group-exclusive" | "committed-offset-monotonic" | "generation-fencing" => has_groups,
            "replicas-agree" | "hw-monotonic" => brokers > 1,
            _ => true,
        };
        return Ok(CHECKS.iter().filter(|c| applies(c)).map(|s| s.to_string()).collect());
    };
    let list = v.as_array().ok_or_else(|| invalid("checks", "expected a list of check names"))?;
    let mut out: Vec<String> = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let p = format!("checks[{i}]");
        let s = c.as_str().ok_or_else(|| invalid(&p, "expected a check name"))?;
        if !CHECKS.contains(&s) {
            let msg = format!("unknown check {s} (expected one of: {})", CHECKS.join(", "));
            return Err(invalid(&p, msg));
        }
        if !out.iter().any(|x| x == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

/// `expect`: each check's expected outcome (default held).
pub(super) fn expect(v: Option<&Value>, checks: &[String]) -> R<BTreeMap<String, Outcome>> {
    let mut expect: BTreeMap<String, Outcome> =
        checks.iter().map(|c| (c.clone(), Outcome::Held)).collect();
    let Some(e) = v else { return Ok(expect) };
    let m = e.as_object().ok_or_else(|| {
        invalid("expect", "expected an object of check → \"held\" | \"violated\"")
    })?;
    for (k, v) in m {
        let p = join("expect", k);
        if !checks.contains(k) {
            return Err(invalid(&p, "not one of this scenario's checks"));
        }
        let o = match v.as_str() {
            Some("held") => Outcome::Held,
            Some("violated") => Outcome::Violated,
            _ => return Err(invalid(&p, "expected one of held, violated")),
        };
        expect.insert(k.clone(), o);
    }
    Ok(expect)
}
