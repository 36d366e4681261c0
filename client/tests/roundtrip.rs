//! Round trips against the real broker binary over loopback TCP: produce with acks 0/1/all and
//! every compression, consume back byte-equal, seeks (beginning, end, timestamp, out of range),
//! the idempotent producer, admin, and the perf tools end to end.

#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use client::{
    Admin, AdminConfig, Consumer, ConsumerConfig, ConsumerError, ConsumerRecord, Header, NewTopic,
    Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use net_model::tcp::TcpNetwork;

fn net() -> Arc<dyn net_model::Network> {
    Arc::new(TcpNetwork::default())
}

fn admin(addr: &str) -> Admin {
    Admin::new(
        AdminConfig { bootstrap_servers: vec![addr.to_string()], ..AdminConfig::default() },
        net(),
    )
}

fn producer(addr: &str, props: &[(&str, &str)]) -> Producer {
    let mut pairs: Vec<(String, String)> = vec![("bootstrap.servers".into(), addr.into())];
    pairs.extend(props.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Producer::new(ProducerConfig::from_pairs(pairs).unwrap(), net(), 42)
}

fn consumer(addr: &str, props: &[(&str, &str)]) -> Consumer {
    let mut pairs: Vec<(String, String)> =
        vec![("bootstrap.servers".into(), addr.into()), ("fetch.max.wait.ms".into(), "100".into())];
    pairs.extend(props.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Consumer::new(ConsumerConfig::from_pairs(pairs).unwrap(), net())
}

async fn create(addr: &str, topic: &str, partitions: i32) {
    admin(addr).create_topic(NewTopic::new(topic, partitions, 1)).await.unwrap();
}

fn tps(topic: &str, n: i32) -> Vec<TopicPartition> {
    (0..n).map(|p| TopicPartition::new(topic, p)).collect()
}

/// Polls until `n` records arrived (or 20 s passed).
async fn consume_n(c: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < n && tokio::time::Instant::now() < deadline {
        out.extend(c.poll(Duration::from_millis(200)).await.unwrap());
    }
    out
}

fn record(i: usize) -> ProducerRecord {
    let value: Vec<u8> = (0..(i * 37) % 700).map(|j| (i * 31 + j) as u8).collect();
    let mut r = ProducerRecord::new("", Bytes::from(value)).with_key(format!("key-{i}"));
    if i.is_multiple_of(3) {
        r.headers =
            vec![Header::new(Bytes::from(format!("h{i}")), Some(Bytes::from_static(b"hv")))];
    }
    if i.is_multiple_of(10) {
        r.value = None;
    }
    r
}

#[tokio::test]
async fn produce_and_consume_every_acks_and_compression() {
    let b = common::start_broker(&[]);
    for acks in ["0", "1", "all"] {
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let topic = format!("rt-{}-{codec}", if acks == "all" { "all" } else { acks });
            create(&b.addr, &topic, 3).await;
            let p = producer(
                &b.addr,
                &[("acks", acks), ("compression.type", codec), ("linger.ms", "2")],
            );
            let n = 300;
            let mut futs = Vec::new();
            for i in 0..n {
                let mut r = record(i);
                r.topic = topic.as_str().into();
                futs.push((i, p.send(r).await.unwrap()));
            }
            p.flush().await;
            let mut acked = BTreeMap::new();
            for (i, f) in futs {
                let md = f.await.unwrap_or_else(|e| panic!("{topic}: {e}"));
                if acks != "0" {
                    assert!(md.offset >= 0);
                    acked.insert((md.partition, md.offset), i);
                }
            }
            p.close().await;

            let mut c = consumer(&b.addr, &[("auto.offset.reset", "earliest")]);
            c.assign(tps(&topic, 3));
            let got = consume_n(&mut c, n).await;
            assert_eq!(got.len(), n, "{topic}: consumed {} of {n}", got.len());
            let mut seen = vec![false; n];
            for r in &got {
                let key = std::str::from_utf8(r.key.as_ref().unwrap()).unwrap();
                let i: usize = key.trim_start_matches("key-").parse().unwrap();
                let want = record(i);
                assert_eq!(r.value, want.value, "{topic} record {i}");
                assert_eq!(r.headers, want.headers, "{topic} record {i}");
                assert!(!seen[i], "{topic}: record {i} twice");
                seen[i] = true;
                if acks != "0" {
                    assert_eq!(acked.get(&(r.partition, r.offset)), Some(&i), "{topic}");
                }
            }
            c.close().await;
        }
    }
}

#[tokio::test]
async fn seek_to_beginning_end_timestamp_and_out_of_range() {
    let b = common::start_broker(&[]);
    let topic = "seeks";
    create(&b.addr, topic, 1).await;
    let p = producer(&b.addr, &[("acks", "all")]);
    let base_ts = 1_700_000_000_000i64;
    for i in 0..100i64 {
        let r = ProducerRecord::new(topic, Bytes::from(format!("v{i}")))
            .with_partition(0)
            .with_timestamp(base_ts + i * 1000);
        let md = p.send(r).await.unwrap().await.unwrap();
        assert_eq!((md.partition, md.offset), (0, i));
    }
    p.close().await;
    let tp = TopicPartition::new(topic, 0);

    let mut c = consumer(&b.addr, &[]);
    c.assign([tp.clone()]);
    // Default auto.offset.reset=latest: the end.
    assert_eq!(c.position(&tp).await.unwrap(), 100);
    c.seek_to_beginning(std::slice::from_ref(&tp)).unwrap();
    assert_eq!(c.position(&tp).await.unwrap(), 0);
    let got = consume_n(&mut c, 100).await;
    assert_eq!(got.len(), 100);
    assert_eq!(got[0].value.as_deref(), Some(&b"v0"[..]));
    assert_eq!(got[99].offset, 99);
    assert_eq!(got[42].timestamp, base_ts + 42_000);

    c.seek_to_timestamp(std::slice::from_ref(&tp), base_ts + 41_500).unwrap();
    assert_eq!(c.position(&tp).await.unwrap(), 42);
    let got = consume_n(&mut c, 58).await;
    assert_eq!(got.first().map(|r| r.offset), Some(42));

    c.seek_to_end(std::slice::from_ref(&tp)).unwrap();
    assert_eq!(c.position(&tp).await.unwrap(), 100);
    assert!(c.poll(Duration::from_millis(300)).await.unwrap().is_empty());

    c.seek(&tp, 50).unwrap();
    let got = consume_n(&mut c, 50).await;
    assert_eq!(got.first().map(|r| r.offset), Some(50));
    assert_eq!(got.len(), 50);

    let ends = c.end_offsets(std::slice::from_ref(&tp)).await.unwrap();
    assert_eq!(ends[&tp], 100);
    let by_time = c.offsets_for_times(&[(tp.clone(), base_ts + 1_000_000)]).await.unwrap();
    assert_eq!(by_time[&tp], None);

    // Out of range: reset per auto.offset.reset.
    let mut early = consumer(&b.addr, &[("auto.offset.reset", "earliest")]);
    early.assign([tp.clone()]);
    early.seek(&tp, 10_000).unwrap();
    let got = consume_n(&mut early, 100).await;
    assert_eq!(got.first().map(|r| r.offset), Some(0));

    let mut strict = consumer(&b.addr, &[("auto.offset.reset", "none")]);
    strict.assign([tp.clone()]);
    strict.seek(&tp, 10_000).unwrap();
    let mut err = None;
    for _ in 0..20 {
        match strict.poll(Duration::from_millis(200)).await {
            Err(e) => {
                err = Some(e);
                break;
            }
            Ok(r) => assert!(r.is_empty()),
        }
    }
    assert!(matches!(err, Some(ConsumerError::OffsetOutOfRange { offset: 10_000, .. })), "{err:?}");
}

#[tokio::test]
async fn idempotent_producer_round_trip() {
    let b = common::start_broker(&[]);
    let topic = "idem";
    create(&b.addr, topic, 2).await;
    // Defaults: enable.idempotence=true, acks=all, max.in.flight=5.
    let p = producer(&b.addr, &[("linger.ms", "1"), ("batch.size", "1024")]);
    assert!(p.config().enable_idempotence);
    let n = 2000;
    let mut futs = Vec::new();
    for i in 0..n {
        let r = ProducerRecord::new(topic, Bytes::from(format!("value-{i:05}")))
            .with_partition((i % 2) as i32);
        futs.push(p.send(r).await.unwrap());
    }
    let mut offsets = [Vec::new(), Vec::new()];
    for f in futs {
        let md = f.await.unwrap();
        offsets[md.partition as usize].push(md.offset);
    }
    for o in &offsets {
        assert_eq!(*o, (0..(n / 2) as i64).collect::<Vec<_>>(), "contiguous, in send order");
    }
    p.close().await;
    let mut c = consumer(&b.addr, &[("auto.offset.reset", "earliest")]);
    c.assign(tps(topic, 2));
    let got = consume_n(&mut c, n).await;
    assert_eq!(got.len(), n);
    for r in &got {
        let i = (r.offset * 2) as usize + r.partition as usize;
        assert_eq!(r.value.as_deref(), Some(format!("value-{i:05}").as_bytes()));
    }
}

/// Regression: with idempotence and 5 requests in flight, requests once reached the broker out of
/// sequence order under load (OUT_OF_ORDER_SEQUENCE retries until records expired). Many small
/// batches sent as fast as possible must all land, once each, in send order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_under_load_keeps_sequence_order() {
    let b = common::start_broker(&[]);
    let topic = "idem-load";
    create(&b.addr, topic, 1).await;
    let p = producer(
        &b.addr,
        &[
            ("linger.ms", "0"),
            ("batch.size", "2048"),
            ("max.in.flight.requests.per.connection", "5"),
        ],
    );
    let n = 30_000usize;
    let mut futs = Vec::with_capacity(n);
    for i in 0..n {
        let r = ProducerRecord::new(topic, Bytes::from(format!("v{i:06}-{}", "x".repeat(80))))
            .with_partition(0);
        futs.push(p.send(r).await.unwrap());
    }
    for (i, f) in futs.into_iter().enumerate() {
        let md = f.await.unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        assert_eq!(md.offset, i as i64, "exactly once, in send order");
    }
    // On a healthy broker nothing needs a retry: requests leave in sequence order.
    assert_eq!(p.record_retry_total(), 0, "records were retried (out-of-order sequences?)");
    p.close().await;
}

#[tokio::test]
async fn admin_create_list_delete() {
    let b = common::start_broker(&["auto.create.topics.enable=false"]);
    let a = admin(&b.addr);
    let r = a
        .create_topics(&[
            NewTopic::new("adm-a", 4, 1).with_config("retention.ms", "60000"),
            NewTopic::new("adm-b", 1, 1),
        ])
        .await
        .unwrap();
    assert!(r.iter().all(|(_, r)| r.is_ok()), "{r:?}");
    let again = a.create_topic(NewTopic::new("adm-a", 4, 1)).await.unwrap_err();
    assert_eq!(again.code(), Some(36), "{again}");
    let bad = a.create_topic(NewTopic::new("bad name!", 1, 1)).await.unwrap_err();
    assert_eq!(bad.code(), Some(17), "{bad}");
    let topics = a.list_topics().await.unwrap();
    assert!(topics.contains(&"adm-a".to_string()) && topics.contains(&"adm-b".to_string()));
    let d = a.describe_topics(&["adm-a".to_string()]).await.unwrap();
    assert_eq!(d["adm-a"].as_ref().unwrap().partitions.len(), 4);
    let r = a.delete_topics(&["adm-a".to_string()]).await.unwrap();
    assert!(r[0].1.is_ok(), "{r:?}");
    let topics = a.list_topics().await.unwrap();
    assert!(!topics.contains(&"adm-a".to_string()), "{topics:?}");

    // Without auto-creation, producing to a missing topic times out on metadata (max.block.ms).
    let p = producer(&b.addr, &[("max.block.ms", "300")]);
    let e = p.send(ProducerRecord::new("nope", "x")).await.unwrap_err();
    assert!(e.to_string().contains("max.block.ms"), "{e}");
}

#[test]
fn perf_tools_end_to_end() {
    let b = common::start_broker(&[]);
    let perf = env!("CARGO_BIN_EXE_perf");
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.json");
    let out = std::process::Command::new(perf)
        .args([
            "produce",
            "--summary-json",
            summary.to_str().unwrap(),
            "--topic",
            "perf-t",
            "--num-records",
            "5000",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--bootstrap-server",
            &b.addr,
            "--producer-props",
            "acks=1",
            "linger.ms=5",
            "compression.type=lz4",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().unwrap_or("");
    assert!(last.starts_with("5000 records sent, "), "{stdout}");
    for part in [
        "records/sec (",
        "MB/sec), ",
        "ms avg latency, ",
        "ms max latency, ",
        "ms 50th, ",
        "ms 99th, ",
        "ms 99.9th.",
    ] {
        assert!(last.contains(part), "{last}");
    }
    // The appending thread's CPU (calibrate fits it): measured, and one thread's, so no more
    // than the run's wall time (the whole process's CPU, two runtime workers and the main
    // thread, could be more).
    let s: client::perf::ProduceSummary =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s.records, 5000);
    let app = s.app_thread_cpu_s.expect("perf reports its appending thread's CPU");
    assert!(app > 0.0 && app <= s.elapsed_s + 0.01, "{app} CPU s in {} s", s.elapsed_s);

    let out = std::process::Command::new(perf)
        .args([
            "consume",
            "--bootstrap-server",
            &b.addr,
            "--topic",
            "perf-t",
            "--messages",
            "5000",
            "--timeout",
            "10000",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("start.time, end.time, data.consumed.in.MB"), "{stdout}");
    let csv: Vec<&str> = lines[1].split(", ").collect();
    assert_eq!(csv.len(), 10, "{stdout}");
    assert_eq!(csv[4], "5000", "{stdout}");
    assert!(lines[2].starts_with("5000 records received, "), "{stdout}");
}

#[tokio::test]
async fn keyed_records_follow_murmur2_and_auto_create_works() {
    let b = common::start_broker(&["num.partitions=4"]);
    let p = producer(&b.addr, &[("acks", "1")]);
    let mut by_key = BTreeMap::new();
    for i in 0..40 {
        let key = format!("k{}", i % 8);
        let md = p
            .send(ProducerRecord::new("auto-created", "v").with_key(key.clone()))
            .await
            .unwrap()
            .await
            .unwrap();
        let want = client::partition_for_key(key.as_bytes(), 4).unwrap() as i32;
        assert_eq!(md.partition, want);
        by_key.insert(key, md.partition);
    }
    p.close().await;
    let mut c = consumer(&b.addr, &[("auto.offset.reset", "earliest")]);
    c.assign(tps("auto-created", 4));
    let got = consume_n(&mut c, 40).await;
    assert_eq!(got.len(), 40);
    for r in got {
        let k = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
        assert_eq!(by_key[&k], r.partition);
    }
}

/// Every failed Produce attempt is counted by its error name, retried or not: acks=all to a
/// topic whose `min.insync.replicas` (2) is above its one replica answers NOT_ENOUGH_REPLICAS
/// to the first send and to each of its `retries` (2), and a healthy topic counts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_counted_by_error_name() {
    let b = common::start_broker(&[]);
    let a = admin(&b.addr);
    a.create_topic(NewTopic::new("short", 1, 1).with_config("min.insync.replicas", "2"))
        .await
        .unwrap();
    create(&b.addr, "fine", 1).await;
    let p = producer(&b.addr, &[("acks", "all"), ("retries", "2"), ("retry.backoff.ms", "10")]);
    let ok = p.send(ProducerRecord::new("fine", Bytes::from_static(b"a"))).await.unwrap();
    ok.await.expect("a topic with enough replicas takes the record");
    assert!(p.error_counts().is_empty(), "nothing failed yet: {:?}", p.error_counts());
    let f = p.send(ProducerRecord::new("short", Bytes::from_static(b"b"))).await.unwrap();
    let err = f.await.expect_err("min.insync.replicas 2 with one replica refuses acks=all");
    assert!(err.to_string().contains("NOT_ENOUGH_REPLICAS"), "{err}");
    let counts = p.error_counts();
    assert_eq!(
        counts.get("NOT_ENOUGH_REPLICAS"),
        Some(&3),
        "first attempt + 2 retries: {counts:?}"
    );
    assert_eq!(counts.len(), 1, "{counts:?}");
    p.close().await;
}
