use super::result::{Recorder, ResultHeader};
use super::*;

const WORKLOAD: &str = r#"
name: 1 producer / 1 consumers on 1 topic
topics: 1
partitionsPerTopic: 16
messageSize: 1024
payloadFile: "payload/payload-1Kb.data"
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producersPerTopic: 1
producerRate: 50000
consumerBacklogSizeGB: 0
testDurationMinutes: 15
"#;

const DRIVER: &str = r#"
name: Kafka
driverClass: io.openmessaging.benchmark.driver.kafka.KafkaBenchmarkDriver
replicationFactor: 3
topicConfig: |
  min.insync.replicas=2
commonConfig: |
  bootstrap.servers=localhost:9092
  request.timeout.ms=1200000
producerConfig: |
  acks=all
  linger.ms=1
  batch.size=1048576
consumerConfig: |
  auto.offset.reset=earliest
  enable.auto.commit=false
  request.timeout.ms=30000
"#;

#[test]
fn omb_workload_reads_with_omb_defaults() {
    let (w, notes) = parse_workload("w.yaml", WORKLOAD).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!((w.topics, w.partitions_per_topic, w.message_size), (1, 16, 1024));
    assert_eq!(
        (w.producers_per_topic, w.subscriptions_per_topic, w.consumer_per_subscription),
        (1, 1, 1)
    );
    assert_eq!(w.producer_rate, 50_000);
    assert_eq!(w.test_duration_minutes, 15.0);
    assert_eq!(w.warmup_duration_minutes, 1.0, "OMB's default warm-up");
    assert_eq!(w.backlog_drain_ratio, 1.0);
    let backlog = parse_workload(
        "w.yaml",
        &WORKLOAD.replace("consumerBacklogSizeGB: 0", "consumerBacklogSizeGB: 2"),
    )
    .unwrap();
    assert_eq!(backlog_bytes(&backlog.0), 2 << 30, "consumerBacklogSizeGB, OMB's spelling");
    assert!(backlog.1.is_empty());
    assert_eq!(w.key_distributor, KeyDistributor::NoKey);
    assert_eq!(rate_per_producer(&w), Some(50_000.0));
}

#[test]
fn unknown_keys_are_notes_not_silence() {
    let text = format!("{WORKLOAD}producerRatee: 10\nfoo: bar\n");
    let (_, notes) = parse_workload("w.yaml", &text).unwrap();
    let keys: Vec<&str> = notes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, ["workload.producerRatee", "workload.foo"]);
    let (_, notes) = parse_driver("d.yaml", &format!("{DRIVER}clientConfig: x\n")).unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].key, "driver.clientConfig");
}

#[test]
fn driver_properties_merge_common_under_their_own() {
    let (d, _) = parse_driver("d.yaml", DRIVER).unwrap();
    assert_eq!(d.replication_factor, 3);
    assert_eq!(d.topic_config, vec![("min.insync.replicas".to_string(), "2".to_string())]);
    let c = d.consumer_properties();
    let get = |k: &str| c.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str());
    assert_eq!(get("request.timeout.ms"), Some("30000"), "consumerConfig wins over commonConfig");
    assert_eq!(get("bootstrap.servers"), Some("localhost:9092"));
    let p = d.producer_properties();
    assert!(p.contains(&("request.timeout.ms".to_string(), "1200000".to_string())));
    assert!(p.contains(&("acks".to_string(), "all".to_string())));
}

#[test]
fn bad_fields_are_named() {
    for (edit, field) in [
        ("topics: 0", "topics"),
        ("partitionsPerTopic: 20000", "partitionsPerTopic"),
        ("testDurationMinutes: 0", "testDurationMinutes"),
        ("messageSize: -3", "messageSize"),
    ] {
        let key = edit.split(':').next().unwrap();
        let text: String =
            WORKLOAD
                .lines()
                .map(|l| {
                    if l.starts_with(&format!("{key}:")) {
                        edit.to_string()
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
        let e = parse_workload("w.yaml", &text).unwrap_err().to_string();
        assert!(e.contains(field), "{edit}: {e}");
    }
    let e = parse_workload("w.yaml", "topics: 1\n").unwrap_err().to_string();
    assert!(e.contains("partitionsPerTopic"), "{e}");
    let e = parse_driver("d.yaml", "replicationFactor: 0\n").unwrap_err().to_string();
    assert!(e.contains("replicationFactor"), "{e}");
}

#[test]
fn recorder_skips_warmup_and_keeps_windows() {
    // Warm-up 60 s, windows of 10 s; one subscription.
    let mut r = Recorder::new(60.0, 10.0, 1);
    r.published(5.0, 100.0, None); // warm-up: not in any window
    r.consumed(6.0, Some(100.0));
    for i in 0..100 {
        let t = 60.0 + i as f64 * 0.2; // 20 s of test, 5 per second
        r.published(t, 2.0, Some(0.5));
        if i % 2 == 0 {
            r.consumed(t, Some(4.0));
        }
    }
    assert_eq!(r.test_counts(), (100, 50));
    let w = parse_workload("w.yaml", WORKLOAD).unwrap().0;
    let res = r.finish(ResultHeader::of(&w, "Kafka"), 2);
    assert_eq!(res.publish_rate, vec![5.0, 5.0]);
    assert_eq!(res.consume_rate, vec![2.5, 2.5]);
    // Backlog counts from the run's start: 1 + 50 sent and 1 + 25 received by the first window's end.
    assert_eq!(res.backlog, vec![25, 50]);
    assert!((res.aggregated_publish_latency_50pct - 2.0).abs() < 0.01);
    assert!((res.aggregated_end_to_end_latency_max - 4.0).abs() < 0.01);
    assert_eq!(res.aggregated_publish_delay_latency_50pct, 500, "publish delay in µs, as OMB");
    assert_eq!(res.loglab.published, 100);
    let json = serde_json::to_value(&res).unwrap();
    for k in [
        "publishRate",
        "consumeRate",
        "backlog",
        "publishLatency99pct",
        "endToEndLatency99pct",
        "aggregatedPublishLatency9999pct",
        "aggregatedEndToEndLatencyQuantiles",
        "publishDelayLatency50pct",
    ] {
        assert!(json.get(k).is_some(), "{k} missing");
    }
}
