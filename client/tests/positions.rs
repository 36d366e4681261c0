//! A consumer with several partitions and `auto.offset.reset=none` positions each partition on
//! its own: a partition that was seeked resolves even while another assigned partition has no
//! offset yet (found by the simulator, whose workload seeks one partition at a time: before the
//! fix `position` failed with NoOffset for the other partition and the consumer never polled).

#![cfg(not(madsim))]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use client::{
    Admin, AdminConfig, Consumer, ConsumerConfig, ConsumerError, NewTopic, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};
use net_model::tcp::TcpNetwork;

fn net() -> Arc<dyn net_model::Network> {
    Arc::new(TcpNetwork::default())
}

#[tokio::test]
async fn each_partition_is_positioned_on_its_own_without_a_reset_policy() {
    let b = common::start_broker(&[]);
    let admin = Admin::new(
        AdminConfig { bootstrap_servers: vec![b.addr.clone()], ..AdminConfig::default() },
        net(),
    );
    admin.create_topic(NewTopic::new("two", 2, 1)).await.unwrap();
    let pairs = vec![
        ("bootstrap.servers".to_string(), b.addr.clone()),
        ("acks".to_string(), "all".to_string()),
    ];
    let p = Producer::new(ProducerConfig::from_pairs(pairs).unwrap(), net(), 7);
    for part in 0..2 {
        for i in 0..5 {
            let r = ProducerRecord::new("two", Bytes::from(format!("p{part}-{i}")))
                .with_partition(part);
            p.send(r).await.unwrap().await.unwrap();
        }
    }
    p.close().await;

    let cfg = ConsumerConfig::from_pairs(vec![
        ("bootstrap.servers".to_string(), b.addr.clone()),
        ("auto.offset.reset".to_string(), "none".to_string()),
        ("fetch.max.wait.ms".to_string(), "100".to_string()),
    ])
    .unwrap();
    let mut c = Consumer::new(cfg, net());
    let (tp0, tp1) = (TopicPartition::new("two", 0), TopicPartition::new("two", 1));
    c.assign([tp0.clone(), tp1.clone()]);
    // tp1 has no offset and no policy: asking for it names it.
    match c.position(&tp1).await {
        Err(ConsumerError::NoOffset { partition: 1, .. }) => {}
        other => panic!("expected NoOffset for partition 1, got {other:?}"),
    }
    // tp0 seeked: it resolves although tp1 still has no offset.
    c.seek_to_end(std::slice::from_ref(&tp0)).unwrap();
    assert_eq!(c.position(&tp0).await.unwrap(), 5);
    // poll still refuses while an assigned partition has no offset (Java's
    // NoOffsetForPartitionException), naming it.
    match c.poll(Duration::from_millis(100)).await {
        Err(ConsumerError::NoOffset { partition: 1, .. }) => {}
        other => panic!("expected NoOffset for partition 1 from poll, got {other:?}"),
    }
    c.seek_to_beginning(std::slice::from_ref(&tp1)).unwrap();
    assert_eq!(c.position(&tp1).await.unwrap(), 0);
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < 5 && tokio::time::Instant::now() < deadline {
        got.extend(c.poll(Duration::from_millis(200)).await.unwrap());
    }
    assert_eq!(
        got.len(),
        5,
        "partition 1's five records, and none of partition 0 (positioned at its end)"
    );
    assert!(got.iter().all(|r| r.partition == 1));
}
