//! The metrics endpoint, scraped over HTTP from a broker on loopback and parsed with a Prometheus
//! text parser: Kafka's JMX-exporter names and labels, values that follow what was produced,
//! fetched and committed, and the HTTP rules (GET /metrics only). Real world only.
#![cfg(not(madsim))]
#![allow(clippy::field_reassign_with_default)]

use broker::BrokerConfig;
use bytes::Bytes;
use kafka_protocol::messages::*;
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::client::{Client, TIMEOUT};
use support::kafka::{create_topics_req, fetch_req, produce_req, produced, sb as s, values_batch};
use support::server::{self, Server};

fn batch(n: usize, tag: &str) -> Bytes {
    let values: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    values_batch(1_700_000_000_000, &refs)
}

async fn create(c: &mut Client, topic: &str, partitions: i32) {
    let resp: CreateTopicsResponse =
        c.call(ApiKey::CreateTopics, 7, &create_topics_req(&[(topic, partitions)])).await;
    assert_eq!(resp.topics[0].error_code, 0, "create {topic}");
}

/// Produces `records` (acks=1); returns the error code.
async fn produce(c: &mut Client, topic: &str, partition: i32, records: Bytes) -> i16 {
    let r = produce_req(topic, partition, records, 1);
    produced(&c.call(ApiKey::Produce, 9, &r).await).0
}

/// Fetches partition 0 of `topic` from `offset` (v12, by name): (error, record bytes).
async fn fetch(c: &mut Client, topic: &str, offset: i64) -> (i16, usize) {
    let r = fetch_req(12, topic, uuid::Uuid::nil(), offset, 0);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &r).await;
    let p = &resp.responses[0].partitions[0];
    (p.error_code, p.records.as_ref().map_or(0, |r| r.len()))
}

/// A simple consumer's commit (no generation, no member), OffsetCommit v8.
async fn commit(c: &mut Client, group: &str, topic: &str, partition: i32, offset: i64) -> i16 {
    let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
    p.partition_index = partition;
    p.committed_offset = offset;
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = TopicName(s(topic));
    t.partitions = vec![p];
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s(group));
    r.generation_id_or_member_epoch = -1;
    r.retention_time_ms = -1;
    r.topics = vec![t];
    let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &r).await;
    resp.topics[0].partitions[0].error_code
}

/// One HTTP/1.1 request: (status, body).
async fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    support::http::request(addr, method, path, &[], "").await
}

async fn start() -> Server {
    let mut config = BrokerConfig::default();
    config.apply_override("offsets.topic.num.partitions=1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    server::start_with(config, dir, |o| o.metrics_listen = Some("127.0.0.1:0".to_string())).await
}

/// The value of the one sample of `name` whose labels are exactly `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&prometheus_parse::Sample> = scrape
        .samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| {
            labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
                && x.labels.iter().count() == labels.len()
        })
        .collect();
    assert_eq!(found.len(), 1, "one sample of {name}{labels:?}");
    match &found[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name}: not a scalar: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_names_labels_and_values() {
    let node = start().await;
    let maddr = node.metrics_addr.clone().expect("a metrics address");
    let mut c = Client::connect_as(&node.addr, "metrics-test").await;
    create(&mut c, "alpha", 2).await;
    create(&mut c, "beta", 1).await;
    let (a1, a2, a3, b1) = (batch(3, "a"), batch(4, "a"), batch(2, "a"), batch(5, "b"));
    let alpha_bytes = (a1.len() + a2.len() + a3.len()) as f64;
    let alpha0_bytes = (a1.len() + a2.len()) as f64;
    let beta_bytes = b1.len() as f64;
    assert_eq!(produce(&mut c, "alpha", 0, a1).await, 0);
    assert_eq!(produce(&mut c, "alpha", 0, a2).await, 0);
    assert_eq!(produce(&mut c, "alpha", 1, a3).await, 0);
    assert_eq!(produce(&mut c, "beta", 0, b1).await, 0);
    let (err, beta_out) = fetch(&mut c, "beta", 0).await;
    assert_eq!((err, beta_out as f64), (0, beta_bytes));
    assert_ne!(fetch(&mut c, "beta", 1_000).await.0, 0, "past the log end: OFFSET_OUT_OF_RANGE");
    assert_eq!(commit(&mut c, "g1", "alpha", 0, 3).await, 0);

    let (status, body) = http(&maddr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    for x in &scrape.samples {
        assert_eq!(x.metric, x.metric.to_lowercase(), "names are lowercase, as the exporter's");
    }
    let v = |name: &str, labels: &[(&str, &str)]| value(&scrape, name, labels);
    let msgs = "kafka_server_brokertopicmetrics_messagesin_total";
    assert_eq!(v(msgs, &[("topic", "alpha")]), 9.0);
    assert_eq!(v(msgs, &[("topic", "beta")]), 5.0);
    assert_eq!(v(msgs, &[]), 14.0, "broker-wide: no topic label");
    let bytes_in = "kafka_server_brokertopicmetrics_bytesin_total";
    assert_eq!(v(bytes_in, &[("topic", "alpha")]), alpha_bytes);
    assert_eq!(v(bytes_in, &[]), alpha_bytes + beta_bytes);
    let bytes_out = "kafka_server_brokertopicmetrics_bytesout_total";
    assert_eq!(v(bytes_out, &[("topic", "beta")]), beta_bytes);
    let failed_fetch = "kafka_server_brokertopicmetrics_failedfetchrequests_total";
    assert_eq!(v(failed_fetch, &[("topic", "beta")]), 1.0);
    assert_eq!(v("kafka_server_brokertopicmetrics_failedproducerequests_total", &[]), 0.0);

    let leo = "kafka_log_log_logendoffset";
    assert_eq!(v(leo, &[("topic", "alpha"), ("partition", "0")]), 7.0);
    assert_eq!(v(leo, &[("topic", "alpha"), ("partition", "1")]), 2.0);
    assert_eq!(v(leo, &[("topic", "beta"), ("partition", "0")]), 5.0);
    assert_eq!(v("kafka_log_log_size", &[("topic", "alpha"), ("partition", "0")]), alpha0_bytes);
    assert_eq!(v("kafka_log_log_logstartoffset", &[("topic", "beta"), ("partition", "0")]), 0.0);
    let g1 = [("consumergroup", "g1"), ("topic", "alpha"), ("partition", "0")];
    assert_eq!(v("kafka_consumergroup_current_offset", &g1), 3.0);
    assert_eq!(v("kafka_consumergroup_lag", &g1), 7.0 - 3.0, "lag = log end - committed");

    let hosted = scrape.samples.iter().filter(|x| x.metric == leo).count() as f64;
    assert!(hosted >= 3.0);
    assert_eq!(v("kafka_server_replicamanager_partitioncount", &[]), hosted);
    assert_eq!(v("kafka_controller_kafkacontroller_activecontrollercount", &[]), 1.0);
    assert_eq!(v("kafka_controller_kafkacontroller_offlinepartitionscount", &[]), 0.0);
    assert_eq!(v("kafka_server_replicamanager_underminisrpartitioncount", &[]), 0.0);
    assert_eq!(v("kafka_server_replicamanager_underreplicatedpartitions", &[]), 0.0);

    let requests = "kafka_network_requestmetrics_requests_total";
    assert_eq!(v(requests, &[("request", "Produce")]), 4.0);
    assert_eq!(v(requests, &[("request", "Fetch")]), 2.0);
    assert_eq!(v(requests, &[("request", "CreateTopics")]), 2.0);
    let total_time = scrape
        .samples
        .iter()
        .filter(|x| x.metric.starts_with("kafka_network_requestmetrics_totaltimems"))
        .filter(|x| x.labels.get("request") == Some("Produce"))
        .find(|x| matches!(x.value, Value::Histogram(_)))
        .expect("a TotalTimeMs histogram for Produce");
    match &total_time.value {
        Value::Histogram(buckets) => {
            let inf = buckets.iter().find(|b| b.less_than.is_infinite()).expect("+Inf");
            assert_eq!(inf.count, 4.0, "every Produce is under +Inf");
        }
        other => panic!("TotalTimeMs is a histogram, got {other:?}"),
    }
    assert!(body.contains("kafka_network_requestmetrics_totaltimems_count{request=\"Produce\"} 4"));

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_get_metrics_is_served() {
    let node = start().await;
    let maddr = node.metrics_addr.clone().expect("a metrics address");
    assert_eq!(http(&maddr, "GET", "/other").await.0, 404);
    assert_eq!(http(&maddr, "GET", "/").await.0, 404);
    assert_eq!(http(&maddr, "POST", "/metrics").await.0, 405);
    assert_eq!(http(&maddr, "DELETE", "/metrics").await.0, 405);
    let (status, body) = http(&maddr, "GET", "/metrics?x=1").await;
    assert_eq!(status, 200, "a query string is still /metrics");
    assert!(body.contains("kafka_server_brokertopicmetrics_messagesin_total 0"));
    // A head past the bound is refused, not buffered.
    let mut sock = TcpStream::connect(&maddr).await.unwrap();
    let huge = format!("GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = sock.write_all(huge.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, sock.read_to_end(&mut raw)).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 431"), "got {text:?}");
    node.stop().await;
}
