//! The client against the real broker code in-process, over an in-memory transport built on
//! `tokio::io::duplex`: runs in both worlds (under madsim this shows the producer, consumer and
//! admin need nothing but tokio APIs and the `Network` handed in).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use client::conn::StreamWriter;
use client::{
    Admin, AdminConfig, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig,
    ProducerRecord, SendNow, SendWait, TopicPartition,
};
use net_model::{Connection, Listener, Network};
use tokio::sync::mpsc;

#[derive(Debug, Default)]
struct MemNetwork {
    listeners: Mutex<BTreeMap<String, mpsc::UnboundedSender<Connection>>>,
}

struct MemListener {
    addr: String,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Connection>>,
}

fn conn(stream: tokio::io::DuplexStream, peer: &str, local: &str) -> Connection {
    let (r, w) = tokio::io::split(stream);
    Connection {
        reader: Box::new(r),
        writer: Box::new(StreamWriter::new(w)),
        peer: peer.into(),
        local: local.into(),
    }
}

#[async_trait]
impl Listener for MemListener {
    async fn accept(&self) -> io::Result<Connection> {
        self.rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "network gone"))
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.addr.clone())
    }
}

#[async_trait]
impl Network for MemNetwork {
    async fn bind(&self, addr: &str) -> io::Result<Box<dyn Listener>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.listeners.lock().unwrap().insert(addr.to_string(), tx);
        Ok(Box::new(MemListener { addr: addr.to_string(), rx: tokio::sync::Mutex::new(rx) }))
    }

    async fn connect(&self, addr: &str) -> io::Result<Connection> {
        let tx = self.listeners.lock().unwrap().get(addr).cloned();
        let tx =
            tx.ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionRefused, addr.to_string()))?;
        let (a, b) = tokio::io::duplex(256 * 1024);
        tx.send(conn(b, "client", addr))
            .map_err(|_| io::Error::new(io::ErrorKind::ConnectionRefused, addr.to_string()))?;
        Ok(conn(a, addr, "client"))
    }
}

/// A broker on a fresh in-memory network at broker:9092, its log in a temporary directory (kept
/// while the returned `TempDir` lives), and topic `topic` (2 partitions).
async fn broker_with_topic(
    topic: &str,
) -> (tempfile::TempDir, Arc<dyn Network>, broker::node::NodeHandle) {
    let dir = tempfile::tempdir().unwrap();
    let net: Arc<dyn Network> = Arc::new(MemNetwork::default());
    let storage: Arc<dyn disk_model::Storage> =
        Arc::new(disk_model::OsStorage::new(dir.path()).unwrap());
    let config = broker::BrokerConfig::default();
    let mut opts = broker::node::NodeOptions::new(config, storage, net.clone(), "broker:9092", 0);
    opts.data_dir = "data".into();
    opts.advertised = Some(("broker".into(), 9092));
    let node = broker::node::start(opts).await.expect("the node starts");
    let admin = Admin::new(
        AdminConfig { bootstrap_servers: vec!["broker:9092".into()], ..AdminConfig::default() },
        Arc::clone(&net),
    );
    admin.create_topic(NewTopic::new(topic, 2, 1)).await.unwrap();
    (dir, net, node)
}

/// A producer to the in-process broker, with `pairs` beside its bootstrap address.
fn producer_to_broker<const N: usize>(
    net: &Arc<dyn Network>,
    pairs: [(&str, &str); N],
) -> Producer {
    let bootstrap = [("bootstrap.servers", "broker:9092")];
    let cfg = ProducerConfig::from_pairs(bootstrap.into_iter().chain(pairs)).unwrap();
    Producer::new(cfg, Arc::clone(net), 7)
}

/// A consumer of the in-process broker, with `pairs` beside its bootstrap address.
fn consumer_of_broker<const N: usize>(
    net: &Arc<dyn Network>,
    pairs: [(&str, &str); N],
) -> Consumer {
    let bootstrap = [("bootstrap.servers", "broker:9092")];
    let cfg = ConsumerConfig::from_pairs(bootstrap.into_iter().chain(pairs)).unwrap();
    Consumer::new(cfg, Arc::clone(net))
}

/// Finishes what a `send_now` left, counting by `ways` how each send went (`None`: at once).
async fn finish_noting_the_way(
    p: &Producer,
    sent: SendNow,
    ways: &mut BTreeMap<Option<SendWait>, usize>,
) {
    match sent {
        SendNow::Done(_) => *ways.entry(None).or_default() += 1,
        SendNow::Left(left) => {
            *ways.entry(Some(left.wait())).or_default() += 1;
            p.finish_send(left).await.unwrap();
        }
    }
}

#[tokio::test]
async fn in_process_round_trip() {
    let (_dir, net, node) = broker_with_topic("mem").await;

    let p = producer_to_broker(&net, [("compression.type", "zstd")]);
    let mut futs = Vec::new();
    for i in 0..200 {
        let r = ProducerRecord::new("mem", Bytes::from(format!("v{i}"))).with_key(format!("k{i}"));
        futs.push(p.send(r).await.unwrap());
    }
    let mut acked = BTreeMap::new();
    for (i, f) in futs.into_iter().enumerate() {
        let md = f.await.unwrap();
        acked.insert((md.partition, md.offset), i);
    }
    p.close().await;

    let mut c =
        consumer_of_broker(&net, [("auto.offset.reset", "earliest"), ("fetch.max.wait.ms", "50")]);
    c.assign([TopicPartition::new("mem", 0), TopicPartition::new("mem", 1)]);
    let mut got = Vec::new();
    for _ in 0..100 {
        got.extend(c.poll(Duration::from_millis(100)).await.unwrap());
        if got.len() >= 200 {
            break;
        }
    }
    assert_eq!(got.len(), 200);
    for r in got {
        let i = acked[&(r.partition, r.offset)];
        assert_eq!(r.value.as_deref(), Some(format!("v{i}").as_bytes()));
        assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
    }
    c.close().await;
    node.stop_tasks().await;
}

/// `send_now` appends a record with no future when the topic is known and there is room, and
/// leaves the metadata wait, the buffer-memory wait and a batch's CPU charge to `finish_send`;
/// every record sent either way is acknowledged once, at its own offset.
#[tokio::test]
async fn send_now_appends_at_once_and_leaves_the_waits_to_finish_send() {
    let (_dir, net, node) = broker_with_topic("now").await;

    // Batches of ~9 records, memory for three, sent only when full.
    let p = producer_to_broker(
        &net,
        [("batch.size", "1024"), ("buffer.memory", "3072"), ("linger.ms", "60000")],
    );
    let acks = Arc::new(Mutex::new(Vec::new()));
    let mut ways: BTreeMap<Option<SendWait>, usize> = BTreeMap::new();
    let records = 300;
    for i in 0..records {
        let acks = Arc::clone(&acks);
        let cb = Box::new(move |r: Result<client::RecordMetadata, client::ProduceError>| {
            acks.lock().unwrap().push((i, r.map(|md| (md.partition, md.offset))));
        });
        let value = Bytes::from(format!("{i:0>100}"));
        let sent = p.send_now(ProducerRecord::new("now", value), cb).unwrap();
        finish_noting_the_way(&p, sent, &mut ways).await;
    }
    p.flush().await;
    // The first record waits for the topic's partitions; most need nothing; full batches leave
    // their charge; with three batches of memory, some records wait for memory.
    assert_eq!(ways.get(&Some(SendWait::Metadata)), Some(&1), "{ways:?}");
    assert!(ways.get(&None).is_some_and(|&n| n > records / 2), "{ways:?}");
    assert!(ways.get(&Some(SendWait::Nothing)).is_some_and(|&n| n >= 10), "{ways:?}");
    assert!(ways.get(&Some(SendWait::Memory)).is_some_and(|&n| n >= 1), "{ways:?}");
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    assert_eq!(acks.len(), records);
    let mut at = std::collections::BTreeSet::new();
    for (i, r) in acks {
        let place = r.unwrap_or_else(|e| panic!("record {i}: {e}"));
        assert!(at.insert(place), "record {i} acknowledged at a taken offset {place:?}");
    }
    p.close().await;
    node.stop_tasks().await;
}

/// Hears what the test's producer completes: tokens through the listener, the rest through
/// callbacks, all into one log in the order they are told.
#[derive(Default)]
struct Heard {
    /// (record, partition, offset, by the listener), in the order they were told.
    log: Mutex<Vec<(u64, i32, i64, bool)>>,
    /// (record, timestamp), as told.
    timestamps: Mutex<Vec<(u64, i64)>>,
    /// How many records each call of the listener heard.
    calls: Mutex<Vec<usize>>,
}

impl client::Listener for Heard {
    fn completed(&self, done: client::Completed<'_>) {
        self.calls.lock().unwrap().push(done.len());
        let mut log = self.log.lock().unwrap();
        for (token, r) in done.iter() {
            let md = r.unwrap_or_else(|e| panic!("record {token}: {e}"));
            log.push((token, md.partition, md.offset, true));
            self.timestamps.lock().unwrap().push((token, md.timestamp));
        }
    }
}

#[tokio::test]
async fn a_listener_hears_tokens_in_offset_order_among_callbacks() {
    let (_dir, net, node) = broker_with_topic("heard").await;
    let p = producer_to_broker(&net, [("batch.size", "2048"), ("linger.ms", "60000")]);
    // A new timestamp every third record, each told back with its own record below (red with
    // a run of tokens told its first record's timestamp).
    let timestamp = |i: u64| 1_700_000_000_000 + (i / 3) as i64;
    let record = |i: u64| {
        let value = Bytes::from(format!("{i:0>100}"));
        ProducerRecord::new("heard", value).with_timestamp(timestamp(i))
    };
    let refused = p.send_now_token(record(0), 0);
    assert!(matches!(refused, Err(client::ProduceError::NoListener)), "no listener yet");
    let heard = Arc::new(Heard::default());
    assert!(p.listen(heard.clone()).is_ok());
    assert!(p.listen(Arc::new(Heard::default())).is_err(), "a producer has one listener");
    // Seven of every ten records by token, three by callback.
    let records = 300u64;
    for i in 0..records {
        let sent = if i % 10 < 7 {
            p.send_now_token(record(i), i)
        } else {
            let heard = heard.clone();
            let cb = Box::new(move |r: Result<client::RecordMetadata, client::ProduceError>| {
                let md = r.unwrap_or_else(|e| panic!("record {i}: {e}"));
                heard.log.lock().unwrap().push((i, md.partition, md.offset, false));
                heard.timestamps.lock().unwrap().push((i, md.timestamp));
            });
            p.send_now(record(i), cb)
        };
        if let SendNow::Left(left) = sent.unwrap() {
            p.finish_send(left).await.unwrap();
        }
    }
    p.flush().await;
    let log = std::mem::take(&mut *heard.log.lock().unwrap());
    let calls = std::mem::take(&mut *heard.calls.lock().unwrap());
    // Every record told once, each the way it was sent.
    let mut told: Vec<(u64, bool)> = log.iter().map(|&(i, _, _, by)| (i, by)).collect();
    told.sort_unstable();
    let sent: Vec<(u64, bool)> = (0..records).map(|i| (i, i % 10 < 7)).collect();
    assert_eq!(told, sent);
    // Each with its own timestamp (the topic keeps CreateTime).
    let mut stamps = std::mem::take(&mut *heard.timestamps.lock().unwrap());
    stamps.sort_unstable();
    let stamped: Vec<(u64, i64)> = (0..records).map(|i| (i, timestamp(i))).collect();
    assert_eq!(stamps, stamped);
    // In offset order per partition, tokens and callbacks alike, across batches too: with five
    // Produce requests in flight, madsim may poll their response tasks in either order (red
    // there when requests settle as their tasks run, not in write order).
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for &(i, partition, offset, _) in &log {
        let before = last.insert(partition, offset);
        assert!(before.is_none_or(|b| b < offset), "record {i} told after a later offset");
    }
    // Tokens are heard a run at a time: fewer calls than tokens, and some with several.
    let tokens: usize = calls.iter().sum();
    assert_eq!(tokens, log.iter().filter(|r| r.3).count());
    assert!(calls.len() < tokens && calls.iter().any(|&n| n > 1), "{calls:?}");
    p.close().await;
    node.stop_tasks().await;
}

/// Produce requests the in-process broker has served.
fn produce_requests(node: &broker::node::NodeHandle) -> u64 {
    let snapshot = node.broker.metrics.snapshot();
    snapshot.requests.iter().filter(|r| r.request == "Produce").map(|r| r.requests).sum()
}

/// A CPU hook that takes `per_charge` of (tokio) time for every charge, as the simulator's CPU
/// model does: the sender suspends while it pays for a batch, and records keep arriving.
#[derive(Debug)]
struct SlowCpu {
    per_charge: Duration,
}

#[async_trait]
impl net_model::CostHook for SlowCpu {
    async fn spend(&self, _work: net_model::Work, _bytes: u64) {
        tokio::time::sleep(self.per_charge).await;
    }
}

/// One Produce request per ready node per pass, as Kafka's `Sender` drains: a batch that is
/// not ready (younger than `linger.ms`, not full) stays in the accumulator even when records
/// reach it while the sender pays for the batch before it. The sender used to drain a node
/// again and again until nothing was left, so each lingered batch was followed by requests of
/// the few records appended during its CPU charges (up to `max.in.flight`): three times
/// Kafka's request count on `bench-100k-cluster` with a record handed over at a time.
#[tokio::test]
async fn a_batch_younger_than_linger_waits_for_its_own_turn() {
    let (_dir, net, node) = broker_with_topic("linger").await;
    let linger_ms = 100u64;
    let cfg = ProducerConfig::from_pairs([
        ("bootstrap.servers", "broker:9092"),
        ("linger.ms", "100"),
        ("batch.size", "1048576"),
    ])
    .unwrap();
    let cpu = Arc::new(SlowCpu { per_charge: Duration::from_millis(3) });
    let p = Producer::with_cost_hook(cfg, Arc::clone(&net), 7, cpu);
    let started = tokio::time::Instant::now();
    let mut futs = Vec::new();
    for i in 0..300 {
        let r = ProducerRecord::new("linger", Bytes::from(format!("v{i}"))).with_partition(0);
        futs.push(p.send(r).await.unwrap());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let sending_ms = started.elapsed().as_millis() as u64;
    let before_flush = produce_requests(&node);
    p.flush().await;
    for f in futs {
        f.await.unwrap();
    }
    // While records arrived, a request left only when the oldest batch had lingered: at most
    // one per `linger.ms` of sending (the CPU charges only lengthen the gaps), plus one for the
    // millisecond clock's rounding.
    let bound = sending_ms / linger_ms + 2;
    assert!(before_flush >= 2, "records lingered and left while sending: {before_flush}");
    assert!(
        before_flush <= bound,
        "{before_flush} Produce requests in {sending_ms} ms of sending with linger.ms \
         {linger_ms}: batches left before their linger ended (bound {bound})"
    );
    p.close().await;
    node.stop_tasks().await;
}

/// A node with a ready batch takes the first batch of every partition it leads, ready or not,
/// in the same request, as Kafka's `drainBatchesForOneNode` does: a record of the other
/// partition, younger than `linger.ms`, leaves with the first one, not a linger later.
#[tokio::test]
async fn a_ready_node_takes_every_partition_it_leads_in_one_request() {
    let (_dir, net, node) = broker_with_topic("piggy").await;
    let p = producer_to_broker(&net, [("linger.ms", "200")]);
    let started = tokio::time::Instant::now();
    let first = p.send(ProducerRecord::new("piggy", "a").with_partition(0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = p.send(ProducerRecord::new("piggy", "b").with_partition(1)).await.unwrap();
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    let waited = started.elapsed();
    assert_eq!((a.partition, b.partition), (0, 1));
    // Both left when the first had lingered (~200 ms); alone, the second would have waited
    // until ~300 ms, in a request of its own.
    assert_eq!(produce_requests(&node), 1, "both records in one request (after {waited:?})");
    p.close().await;
    node.stop_tasks().await;
}

/// Kafka's sticky partitioner switches after `batch.size` bytes only when the partition's last
/// batch is full, and always after twice `batch.size` (`RecordAccumulator.append`,
/// `BuiltInPartitioner.updatePartitionInfo`): when linger sends batches before they fill, a
/// partition keeps its records until twice `batch.size`, rather than ending its turn with a
/// fragment of a batch.
#[tokio::test]
async fn linger_sent_batches_keep_the_sticky_partition_until_twice_batch_size() {
    let (_dir, net, node) = broker_with_topic("sticky").await;
    // About six 88-byte records per 30 ms linger (a 589-byte batch); a batch of these records is
    // never exactly 1000 bytes (61 + 10 records is at most 951, 11 at least 1,029), so never full.
    let p = producer_to_broker(&net, [("linger.ms", "30"), ("batch.size", "1000")]);
    let mut futs = Vec::new();
    for _ in 0..120 {
        futs.push(p.send(ProducerRecord::new("sticky", vec![7u8; 80])).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut runs: Vec<(i32, usize)> = Vec::new();
    for f in futs {
        let partition = f.await.unwrap().partition;
        match runs.last_mut() {
            Some((last, n)) if *last == partition => *n += 1,
            _ => runs.push((partition, 1)),
        }
    }
    // Every run but the last is whole. A run holds one sticky period or more (a draw may pick
    // the same partition again); a period ends after 2,000 bytes, about 21 records (switching
    // at 1,000 bytes it would be about 11).
    let whole = &runs[..runs.len() - 1];
    assert!(!whole.is_empty(), "the records switched partition at least once: {runs:?}");
    assert!(whole.iter().all(|&(_, n)| n >= 18), "a switch before twice batch.size: {runs:?}");
    p.close().await;
    node.stop_tasks().await;
}

/// Kafka's `partitionChanged` retry (`RecordAccumulator.append`): a sticky record that waits for
/// buffer memory, while other records' appends decide the partitioner's switch, goes to the
/// partition the partitioner gives after the wait rather than the one it was given before.
#[tokio::test]
async fn a_record_that_waited_for_memory_follows_a_sticky_switch_made_meanwhile() {
    let (_dir, net, node) = broker_with_topic("moved").await;
    // Memory for two batches, sent only when full (or when the pool is exhausted).
    let p = producer_to_broker(
        &net,
        [("batch.size", "1000"), ("buffer.memory", "2000"), ("linger.ms", "60000")],
    );
    let record = |len: usize| ProducerRecord::new("moved", vec![5u8; len]).with_timestamp(1_000);
    let cb = || Box::new(|_: Result<client::RecordMetadata, client::ProduceError>| {});
    let left = |r: Result<SendNow, client::ProduceError>| match r.unwrap() {
        SendNow::Left(left) => left,
        SendNow::Done(_) => panic!("a record that opens or fills a batch leaves its charge"),
    };
    // Two 909-byte records (a 900-byte value) open a batch each: 970 bytes, not full, and the
    // pool's 2,000 bytes are taken. The first waits for the topic's partitions.
    let first = p.finish_send(left(p.send_now(record(900), cb()))).await.unwrap();
    let second = left(p.send_now(record(900), cb()));
    // The third does not fit the second batch and needs memory; it was given `first`.
    let third = left(p.send_now(record(900), cb()));
    assert_eq!(third.wait(), SendWait::Memory);
    // A 30-byte record (a 23-byte value) fills the second batch to 1,000 bytes exactly: after
    // batch.size bytes on a full batch, the partitioner switches.
    let fourth = left(p.send_now(record(23), cb()));
    assert_eq!(p.finish_send(second).await.unwrap(), first, "the second batch's partition");
    assert_eq!(p.finish_send(fourth).await.unwrap(), first, "the fourth filled that batch");
    let moved = p.finish_send(third).await.unwrap();
    // The next sticky record goes where the third went: the draw after the switch.
    let next = match p.send_now(record(23), cb()).unwrap() {
        SendNow::Done(partition) => partition,
        SendNow::Left(left) => p.finish_send(left).await.unwrap(),
    };
    assert_eq!(moved, next, "the third record took the partition drawn after the switch");
    assert_ne!(moved, first, "the draw after the switch picked the other partition");
    p.flush().await;
    p.close().await;
    node.stop_tasks().await;
}

/// A send to a topic whose partitions are known: it may leave a new batch's charge to finish,
/// never a wait for metadata or memory.
async fn now(p: &Producer, record: ProducerRecord) -> Result<i32, client::ProduceError> {
    let cb = Box::new(|_: Result<client::RecordMetadata, client::ProduceError>| {});
    match p.send_now(record, cb)? {
        SendNow::Done(partition) => Ok(partition),
        SendNow::Left(left) => {
            assert_eq!(left.wait(), SendWait::Nothing, "a known topic's send waits for nothing");
            p.finish_send(left).await
        }
    }
}

/// A send checks its partition against the count of its own topic, and sees a topic's new
/// partitions once its metadata is refreshed (the producer keeps the last topic's count while
/// the metadata is unchanged, and the partition last appended to: a count kept across topics
/// or across a refresh, or a partition kept across topics, goes red here).
#[tokio::test]
async fn a_send_knows_its_topics_partitions_and_learns_new_ones() {
    let (_dir, net, node) = broker_with_topic("two").await;
    let admin = Admin::new(
        AdminConfig { bootstrap_servers: vec!["broker:9092".into()], ..AdminConfig::default() },
        Arc::clone(&net),
    );
    admin.create_topic(NewTopic::new("four", 4, 1)).await.unwrap();
    let p = producer_to_broker(&net, [("linger.ms", "0")]);
    let cb = || Box::new(|_: Result<client::RecordMetadata, client::ProduceError>| {});
    let to = |topic: &str, partition: i32| {
        ProducerRecord::new(topic, Bytes::from_static(b"v")).with_partition(partition)
    };
    // Each topic's first send waits for its metadata.
    let first = match p.send_now(to("four", 3), cb()).unwrap() {
        SendNow::Left(left) => p.finish_send(left).await,
        SendNow::Done(_) => panic!("the topic's partitions were not known yet"),
    };
    assert_eq!(first.unwrap(), 3);
    let first = match p.send_now(to("two", 3), cb()) {
        Ok(SendNow::Left(left)) => p.finish_send(left).await,
        _ => panic!("the topic's partitions were not known yet"),
    };
    let partitions_of = |r: Result<i32, client::ProduceError>| match r {
        Err(client::ProduceError::UnknownPartition { partitions, .. }) => partitions,
        other => panic!("partition 3 of a 2-partition topic: {other:?}"),
    };
    assert_eq!(partitions_of(first), 2);
    for _ in 0..3 {
        assert_eq!(now(&p, to("four", 3)).await.unwrap(), 3);
        assert_eq!(partitions_of(now(&p, to("two", 3)).await), 2);
    }
    // "two" grows to four partitions ("four" cannot shrink); the producer's next refresh
    // shows them.
    let grown = admin.create_partitions(&[("two".into(), 4), ("four".into(), 2)]).await.unwrap();
    assert!(grown[0].1.is_ok(), "{grown:?}");
    let refused = grown[1].1.as_ref().unwrap_err();
    let invalid = client::errors::ErrorCode::INVALID_PARTITIONS.code();
    assert_eq!(refused.code(), Some(invalid), "{refused:?}");
    assert_eq!(partitions_of(now(&p, to("two", 3)).await), 2, "before the refresh");
    p.cluster().refresh_metadata(Some(&["two".to_string()]), true).await.unwrap();
    assert_eq!(now(&p, to("two", 3)).await.unwrap(), 3, "after the refresh");
    assert_eq!(now(&p, to("four", 3)).await.unwrap(), 3);
    // Each went to its own topic's partition 3: the offsets count each topic's records there.
    let two = p.send(to("two", 3)).await.unwrap();
    let four = p.send(to("four", 3)).await.unwrap();
    p.flush().await;
    assert_eq!(two.await.unwrap().offset, 1, "two-3 holds one record before this one");
    assert_eq!(four.await.unwrap().offset, 5, "four-3 holds five records before this one");
    p.close().await;
    admin.close().await;
    node.stop_tasks().await;
}

/// Kafka's buffered-node gate (KAFKA-17182, `AbstractFetch.prepareFetchRequests`): while records
/// of a partition wait in the consumer's buffer, no fetch goes to that partition's leader.
/// Without it, the fetch sent while partition 0 was buffered listed partition 1 alone and
/// long-polled `fetch.max.wait.ms` on it (nothing comes to partition 1), and partition 0,
/// drained meanwhile, could not be fetched again until that fetch returned.
#[tokio::test]
async fn a_node_with_buffered_records_is_not_fetched_from_until_they_are_polled() {
    let (_dir, net, node) = broker_with_topic("gate").await;
    let p = producer_to_broker(&net, [("linger.ms", "0")]);
    let send =
        |i: usize| ProducerRecord::new("gate", Bytes::from(format!("r{i}"))).with_partition(0);
    let mut futs = Vec::new();
    for i in 0..300 {
        futs.push(p.send(send(i)).await.unwrap());
    }
    for f in futs {
        f.await.unwrap();
    }
    let mut c =
        consumer_of_broker(&net, [("max.poll.records", "100"), ("fetch.max.wait.ms", "20000")]);
    let tps = [TopicPartition::new("gate", 0), TopicPartition::new("gate", 1)];
    c.assign(tps.clone());
    c.seek_to_beginning(&tps).unwrap();
    // One fetch brings all 300 records of partition 0; three polls hand them out, in offset
    // order (a poll takes part of a buffered fetch, or the rest of it whole).
    let (mut polls, mut offsets) = (0, Vec::new());
    while offsets.len() < 300 {
        let records = c.poll(Duration::from_secs(5)).await.unwrap();
        offsets.extend(records.iter().map(|r| r.offset));
        polls += 1;
        assert!(polls <= 10, "300 records in {polls} polls: {}", offsets.len());
    }
    assert_eq!(offsets, (0..300).collect::<Vec<i64>>());
    // Partition 0 is drained: a new record there reaches the next poll, well before the
    // 20 s long-poll a fetch of partition 1 alone would hold.
    p.send(send(300)).await.unwrap().await.unwrap();
    let more = c.poll(Duration::from_secs(5)).await.unwrap();
    assert_eq!(more.len(), 1, "the record sent after the buffer drained, within one poll");
    c.close().await;
    p.close().await;
    node.stop_tasks().await;
}

/// Record `i` of [`polls_hand_out_each_partitions_records_in_place`]: a key on every third
/// record, a null value on every fifth, `i % 3` headers (one with a null value).
fn varied(i: usize, partition: i32) -> ProducerRecord {
    let value =
        (!i.is_multiple_of(5)).then(|| Bytes::from(format!("value-{i}-{}", "x".repeat(i % 11))));
    let headers = (0..i % 3)
        .map(|h| {
            client::Header::new(format!("h{h}"), (h == 0).then(|| Bytes::from(format!("{i}"))))
        })
        .collect();
    let mut r = ProducerRecord { value, ..ProducerRecord::new("views", Bytes::new()) }
        .with_partition(partition)
        .with_headers(headers)
        .with_timestamp(1_000_000 + i as i64);
    if i.is_multiple_of(3) {
        r = r.with_key(format!("key-{i}"));
    }
    r
}

/// `poll_partitions` hands out one run per partition of what was sent, read in place — keys,
/// null values, headers and timestamps where the producer put them, in plain and compressed
/// batches, from a position inside a batch — at most `max.poll.records` a poll, and `poll`
/// taken in turns with it continues where it stopped.
#[tokio::test]
async fn polls_hand_out_each_partitions_records_in_place() {
    let (_dir, net, node) = broker_with_topic("views").await;
    let mut sent = BTreeMap::new();
    for (codec, range) in [("none", 0..40), ("zstd", 40..80)] {
        let p = producer_to_broker(&net, [("linger.ms", "20"), ("compression.type", codec)]);
        let mut futs = Vec::new();
        for i in range {
            futs.push((i, p.send(varied(i, (i % 2) as i32)).await.unwrap()));
        }
        for (i, f) in futs {
            let md = f.await.unwrap();
            sent.insert((md.partition, md.offset), i);
        }
        p.close().await;
    }
    let mut c = consumer_of_broker(&net, [("max.poll.records", "7"), ("fetch.max.wait.ms", "50")]);
    let (p0, p1) = (TopicPartition::new("views", 0), TopicPartition::new("views", 1));
    c.assign([p0.clone(), p1.clone()]);
    c.seek(&p0, 3).unwrap();
    c.seek_to_beginning(std::slice::from_ref(&p1)).unwrap();
    let check = |partition: i32,
                 offset: i64,
                 timestamp: i64,
                 key: Option<&[u8]>,
                 value: Option<&[u8]>,
                 headers: &[client::Header]| {
        let want = varied(sent[&(partition, offset)], partition);
        assert_eq!(timestamp, want.timestamp.unwrap(), "{partition}@{offset}");
        assert_eq!(key, want.key.as_deref(), "{partition}@{offset}");
        assert_eq!(value, want.value.as_deref(), "{partition}@{offset}");
        assert_eq!(headers, &want.headers[..], "{partition}@{offset}");
    };
    let mut got: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let (mut polls, mut in_place, mut owned) = (0u32, 0, 0);
    while got.values().map(Vec::len).sum::<usize>() < 77 {
        polls += 1;
        assert!(polls <= 100, "{got:?}");
        let mut seen = Vec::new();
        if !polls.is_multiple_of(2) {
            let parts = c.poll_partitions(Duration::from_millis(200)).await.unwrap();
            for p in &parts {
                assert_eq!(&*p.topic, "views");
                assert!(!p.is_empty());
                assert!(!seen.contains(&p.partition), "one run a partition");
                seen.push(p.partition);
                for r in p.iter() {
                    check(p.partition, r.offset, r.timestamp, r.key, r.value, r.headers);
                    got.entry(p.partition).or_default().push(r.offset);
                    in_place += 1;
                }
            }
            assert!(parts.iter().map(|p| p.len()).sum::<usize>() <= 7);
        } else {
            let records = c.poll(Duration::from_millis(200)).await.unwrap();
            assert!(records.len() <= 7);
            for r in &records {
                assert_eq!(&*r.topic, "views");
                let (k, v) = (r.key.as_deref(), r.value.as_deref());
                check(r.partition, r.offset, r.timestamp, k, v, &r.headers);
                got.entry(r.partition).or_default().push(r.offset);
                owned += 1;
            }
        }
    }
    assert_eq!(got[&0], (3..40).collect::<Vec<i64>>(), "partition 0 from offset 3");
    assert_eq!(got[&1], (0..40).collect::<Vec<i64>>());
    assert!(in_place > 0 && owned > 0, "both ways: {in_place} in place, {owned} owned");
    c.close().await;
    node.stop_tasks().await;
}

/// A borrowed send (`send_now_token_ref`) copies what it was lent before it returns, whichever
/// way it goes — into the batch at once, or into a record of its own to wait for the topic's
/// metadata or for buffer memory — so the caller may write the next record over the same
/// buffer; a keyed record goes to its key's partition. Every record is consumed back with the
/// bytes it was sent with, at the offset the listener heard.
#[tokio::test]
async fn a_borrowed_send_copies_what_it_was_lent_whichever_way_it_goes() {
    let (_dir, net, node) = broker_with_topic("lent").await;
    // Batches of ~9 records, memory for three, sent only when full.
    let p = producer_to_broker(
        &net,
        [("batch.size", "1024"), ("buffer.memory", "3072"), ("linger.ms", "60000")],
    );
    let heard = Arc::new(Heard::default());
    assert!(p.listen(heard.clone()).is_ok());
    let topic = kafka_types::Topic::from("lent");
    let key = |i: u64| i.is_multiple_of(4).then(|| format!("key-{i}").into_bytes());
    let headers = |i: u64| {
        (i % 3 == 1).then(|| client::Header::new(format!("h{i}"), None)).into_iter().collect()
    };
    let (records, mut value) = (300u64, Vec::new());
    let mut ways: BTreeMap<Option<SendWait>, usize> = BTreeMap::new();
    for i in 0..records {
        // One buffer for every value, written over by each record.
        value.clear();
        value.extend_from_slice(format!("{i:0>100}").as_bytes());
        let (k, h): (Option<Vec<u8>>, Vec<client::Header>) = (key(i), headers(i));
        let record = client::ProducerRecordRef {
            topic: &topic,
            partition: None,
            key: k.as_deref(),
            value: Some(&value),
            headers: &h,
            timestamp: Some(7_000 + i as i64),
        };
        let sent = p.send_now_token_ref(record, i).unwrap();
        finish_noting_the_way(&p, sent, &mut ways).await;
    }
    p.flush().await;
    assert_eq!(ways.get(&Some(SendWait::Metadata)), Some(&1), "{ways:?}");
    assert!(ways.get(&Some(SendWait::Memory)).is_some_and(|&n| n >= 1), "{ways:?}");
    assert!(ways.get(&None).is_some_and(|&n| n > 100), "{ways:?}");
    let log = std::mem::take(&mut *heard.log.lock().unwrap());
    assert_eq!(log.len() as u64, records);
    let placed: BTreeMap<(i32, i64), u64> = log.iter().map(|&(i, p, o, _)| ((p, o), i)).collect();
    assert_eq!(placed.len() as u64, records, "each at an offset of its own");
    let mut c =
        consumer_of_broker(&net, [("auto.offset.reset", "earliest"), ("fetch.max.wait.ms", "50")]);
    c.assign([TopicPartition::new("lent", 0), TopicPartition::new("lent", 1)]);
    let mut got = 0;
    for _ in 0..100 {
        for r in c.poll(Duration::from_millis(100)).await.unwrap() {
            let i = placed[&(r.partition, r.offset)];
            assert_eq!(r.value.as_deref(), Some(format!("{i:0>100}").as_bytes()), "record {i}");
            assert_eq!(r.key.as_deref(), key(i).as_deref(), "record {i}");
            assert_eq!(r.headers, headers(i), "record {i}");
            assert_eq!(r.timestamp, 7_000 + i as i64, "record {i}");
            if let Some(k) = key(i) {
                let want = client::partition_for_key(&k, 2).unwrap() as i32;
                assert_eq!(r.partition, want, "record {i} goes to its key's partition");
            }
            got += 1;
        }
        if got == records {
            break;
        }
    }
    assert_eq!(got, records);
    c.close().await;
    p.close().await;
    node.stop_tasks().await;
}
