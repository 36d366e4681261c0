use client::omb::{parse_driver, parse_workload};

use super::*;
use crate::scenario::Scenario;

const FIXED_RATE: &str = r#"
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

const FOUR_BY_FOUR: &str = r#"
name: Backlog for 200k rate 4 producers and 4 consumers on 1 topic / 100 partition
topics: 2
partitionsPerTopic: 100
messageSize: 1024
useRandomizedPayloads: true
randomBytesRatio: 0.5
randomizedPayloadPoolSize: 1000
subscriptionsPerTopic: 2
consumerPerSubscription: 4
producersPerTopic: 4
producerRate: 200000
consumerBacklogSizeGB: 512
testDurationMinutes: 5
warmupDurationMinutes: 0.5
someFutureKey: 3
"#;

const DRIVER: &str = r#"
name: Kafka-throughput
driverClass: io.openmessaging.benchmark.driver.kafka.KafkaBenchmarkDriver
replicationFactor: 3
topicConfig: |
  min.insync.replicas=2
  message.timestamp.type=LogAppendTime
commonConfig: |
  bootstrap.servers=localhost:9092
  default.api.timeout.ms=1200000
  request.timeout.ms=1200000
producerConfig: |
  acks=all
  linger.ms=1
  batch.size=1048576
  buffer.memory=67108864
consumerConfig: |
  auto.offset.reset=earliest
  enable.auto.commit=false
  max.partition.fetch.bytes=10485760
"#;

fn mapped(workload: &str, o: &OmbSim) -> Mapped {
    let (w, mut notes) = parse_workload("w.yaml", workload).unwrap();
    let (d, dn) = parse_driver("d.yaml", DRIVER).unwrap();
    notes.extend(dn);
    let mut m = map(&w, &d, o);
    notes.extend(m.notes);
    m.notes = notes;
    m
}

fn has_note(m: &Mapped, key: &str) -> bool {
    m.notes.iter().any(|n| n.key == key)
}

#[test]
fn fixed_rate_workload_maps_topics_producers_consumers_rates_and_warmup() {
    let m = mapped(FIXED_RATE, &OmbSim { test_minutes: Some(0.5), ..OmbSim::default() });
    let s = &m.scenario;
    assert_eq!(s["topics"].as_array().unwrap().len(), 1);
    assert_eq!(s["topics"][0]["partitions"], 16);
    assert_eq!(s["topics"][0]["replication.factor"], 3);
    let producers = s["workload"]["producers"].as_array().unwrap();
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0]["count"], 1);
    assert_eq!(producers[0]["rate"], "50000/s");
    assert_eq!(producers[0]["record.bytes"], 1024);
    assert_eq!(producers[0]["acks"], "all");
    assert_eq!(producers[0]["linger.ms"], 1);
    assert_eq!(producers[0]["batch.size"], 1_048_576);
    let consumers = s["workload"]["consumers"].as_array().unwrap();
    assert_eq!(consumers.len(), 1);
    assert_eq!(consumers[0]["count"], 1);
    assert_eq!(consumers[0]["group.id"], "sub-000-000");
    assert_eq!(consumers[0]["max.partition.fetch.bytes"], 10_485_760);
    // Warm-up (OMB's default minute) excluded; the run lasts warm-up + test.
    assert_eq!(s["measure"]["from"], "60s");
    assert_eq!(s["duration_s"], 90);
    assert_eq!(s["cluster"]["config"]["min.insync.replicas"], 2);
    for key in [
        "driver.topicConfig.min.insync.replicas",
        "driver.topicConfig.message.timestamp.type",
        "driver.producerConfig.buffer.memory",
        "driver.consumerConfig.enable.auto.commit",
        "driver.producerConfig.bootstrap.servers",
        "workload.payloadFile",
        "workload.testDurationMinutes",
    ] {
        assert!(has_note(&m, key), "no note for {key}: {:?}", m.notes);
    }
    let sc = Scenario::parse(&s.to_string()).expect("the mapped scenario is a valid scenario");
    assert_eq!(sc.name, "omb-1-producer-1-consumers-on-1-topic");
}

#[test]
fn four_by_four_backlog_workload_maps_groups_rates_prefill_and_unknown_keys() {
    let m = mapped(FOUR_BY_FOUR, &OmbSim { brokers: 2, workers: 4, ..OmbSim::default() });
    let s = &m.scenario;
    assert_eq!(s["topics"].as_array().unwrap().len(), 2);
    assert_eq!(s["topics"][1]["name"], "omb-0001");
    assert_eq!(s["topics"][0]["replication.factor"], 2, "capped at the broker count");
    assert!(has_note(&m, "driver.replicationFactor"));
    let producers = s["workload"]["producers"].as_array().unwrap();
    assert_eq!(producers.len(), 2);
    assert_eq!(producers[0]["count"], 4);
    assert_eq!(producers[0]["rate"], "25000/s", "200k over 2 topics × 4 producers");
    assert_eq!(s["workload"]["client_hosts"], 4);
    let consumers = s["workload"]["consumers"].as_array().unwrap();
    assert_eq!(consumers.len(), 4, "2 topics × 2 subscriptions");
    let groups: Vec<&str> = consumers.iter().map(|c| c["group.id"].as_str().unwrap()).collect();
    assert_eq!(groups, ["sub-000-000", "sub-000-001", "sub-001-000", "sub-001-001"]);
    assert!(consumers.iter().all(|c| c["count"] == 4));
    assert_eq!(s["measure"]["from"], "0s", "a backlog drain is measured from the start");
    assert_eq!(s["duration_s"], 300);
    assert!(has_note(&m, "workload.warmupDurationMinutes"));
    // 512 GB capped at 1 GiB per topic: 1 GiB / 1 KiB records.
    let prefill = s["workload"]["prefill"].as_array().unwrap();
    assert_eq!(prefill.len(), 2);
    assert_eq!(prefill[0]["records"], 1 << 20);
    assert!(has_note(&m, "workload.someFutureKey"), "unknown workload keys are reported");
    assert!(has_note(&m, "workload.consumerBacklogSizeGB"));
    assert_eq!(m.window_s, 10.0, "OMB's window");
    let short = mapped(FIXED_RATE, &OmbSim { test_minutes: Some(0.05), ..OmbSim::default() });
    assert_eq!(short.window_s, 3.0, "a 3 s test is one window");
    assert!(has_note(&short, "window_s"));
    Scenario::parse(&s.to_string()).expect("the mapped scenario is a valid scenario");
}

#[test]
fn max_rate_maps_to_closed_loop_producers() {
    let w = FIXED_RATE.replace("producerRate: 50000", "producerRate: 0");
    let m = mapped(&w, &OmbSim::default());
    assert_eq!(m.scenario["workload"]["producers"][0]["rate"], "max");
}
