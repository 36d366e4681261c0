//! The record accumulator against a simple model, plus unit tests of readiness, drain, sequences,
//! retries, expiry and the memory budget.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use client::{
    AccumulatorConfig, AppendError, BufferPool, FailReason, ProducerBatch, ProducerConfig,
    RecordAccumulator, RecordRef, TopicPartition, TryAppend, UNACKED_BATCHES_MAX,
};
use proptest::prelude::*;
use records::{decode_all, BatchHeader, Compression};

fn cfg(
    batch_size: usize,
    linger_ms: u64,
    buffer_memory: usize,
    compression: Compression,
    idempotence: bool,
) -> AccumulatorConfig {
    AccumulatorConfig {
        batch_size,
        linger_ms,
        compression,
        compression_level: None,
        max_request_size: 1 << 20,
        buffer_memory,
        retry_backoff_ms: 100,
        delivery_timeout_ms: 120_000,
        idempotence,
    }
}

fn acc(c: AccumulatorConfig) -> RecordAccumulator<u64> {
    let pool = Arc::new(BufferPool::new(c.buffer_memory, c.batch_size));
    RecordAccumulator::new(c, pool)
}

fn value_for(id: u64, len: usize) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.resize(len.max(8), (id % 251) as u8);
    v
}

/// Appends without waiting: allocates from the pool synchronously. `false` if memory is exhausted.
fn append_now(
    a: &mut RecordAccumulator<u64>,
    tp: &TopicPartition,
    id: u64,
    len: usize,
    now: u64,
) -> bool {
    let value = value_for(id, len);
    let rec = RecordRef { timestamp: now as i64, key: None, value: Some(&value), headers: &[] };
    match a.try_append(tp, rec, id).unwrap() {
        TryAppend::Appended(_) => true,
        TryAppend::NeedsBuffer { size, thunk } => match a.pool().try_allocate(size).unwrap() {
            Some(buf) => {
                a.append_with_buffer(tp, rec, thunk, buf, size, now).unwrap();
                true
            }
            None => false,
        },
    }
}

/// Decodes a drained batch and checks its records are the thunks' ids, in order.
fn check_batch(b: &ProducerBatch<u64>) {
    let h = BatchHeader::validate(b.bytes(), usize::MAX).unwrap();
    assert_eq!(h.record_count as u32, b.record_count());
    assert_eq!(h.base_sequence, b.base_sequence());
    let recs = decode_all(Bytes::copy_from_slice(b.bytes()), 64 << 20).unwrap();
    let ids: Vec<u64> = recs
        .iter()
        .map(|r| u64::from_be_bytes(r.value.as_ref().unwrap()[..8].try_into().unwrap()))
        .collect();
    assert_eq!(ids, b.thunks);
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

#[test]
fn linger_decides_readiness_and_the_next_check() {
    let mut a = acc(cfg(1000, 10, 100_000, Compression::None, false));
    assert!(append_now(&mut a, &tp(0), 1, 10, 100));
    let r = a.ready(105);
    assert!(r.ready.is_empty());
    assert_eq!(r.next_ready_check_delay_ms, 5);
    assert_eq!(a.ready(110).ready, vec![tp(0)]);
    // Flushing makes everything ready at once.
    a.begin_flush();
    assert_eq!(a.ready(101).ready, vec![tp(0)]);
    a.end_flush();
    assert!(a.ready(101).ready.is_empty());
}

#[test]
fn a_full_batch_is_ready_before_linger() {
    let mut a = acc(cfg(300, 1000, 100_000, Compression::None, false));
    let mut id = 0;
    while a.queued_batches(&tp(0)) < 2 {
        assert!(append_now(&mut a, &tp(0), id, 50, 0));
        id += 1;
    }
    assert_eq!(a.ready(0).ready, vec![tp(0)]);
    let drained = a.drain(0, &[tp(0)], 1 << 20, 0);
    assert_eq!(drained.len(), 1, "one batch per partition per drain");
    assert!(drained[0].bytes().len() <= 300);
    check_batch(&drained[0]);
}

#[test]
fn drain_respects_max_request_size_and_rotates() {
    let mut a = acc(cfg(1000, 0, 100_000, Compression::None, false));
    let parts: Vec<_> = (0..4).map(tp).collect();
    for (i, p) in parts.iter().enumerate() {
        for j in 0..5 {
            assert!(append_now(&mut a, p, (i * 10 + j) as u64, 100, 0));
        }
    }
    let one = a.drain(7, &parts, 700, 0)[0].bytes().len();
    assert!(one > 500);
    // The first drain took partition 0 only (two would exceed 700); the next starts at 1.
    let second = a.drain(7, &parts, 700, 0);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].tp, tp(1));
    let rest = a.drain(7, &parts, 1 << 20, 0);
    assert_eq!(rest.iter().map(|b| b.tp.partition).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(a.in_flight_count(), 4);
}

#[test]
fn idempotence_assigns_sequences_at_drain_and_waits_for_a_producer_id() {
    // Batches of 400 bytes: the 20 records fit in fewer than UNACKED_BATCHES_MAX batches.
    let mut a = acc(cfg(400, 0, 100_000, Compression::Lz4, true));
    for id in 0..20 {
        assert!(append_now(&mut a, &tp(0), id, 40, 0));
    }
    assert!(a.ready(0).ready.is_empty(), "no producer id yet");
    assert!(a.drain(0, &[tp(0)], 1 << 20, 0).is_empty());
    a.set_producer_id_and_epoch(1234, 2);
    let mut seq = 0;
    let mut batches = Vec::new();
    while a.has_undrained() {
        for b in a.drain(0, &[tp(0)], 1 << 20, 0) {
            assert_eq!((b.producer_id(), b.producer_epoch(), b.base_sequence()), (1234, 2, seq));
            let h = BatchHeader::validate(b.bytes(), usize::MAX).unwrap();
            assert_eq!(h.compression().unwrap(), Compression::Lz4);
            check_batch(&b);
            seq += b.record_count() as i32;
            batches.push(b);
        }
    }
    assert_eq!(seq, 20);
    assert!(batches.len() >= 3 && batches.len() < UNACKED_BATCHES_MAX, "{}", batches.len());
    assert_eq!(a.next_sequence(&tp(0)), 20);
    // Retried batches go back in sequence order, ahead of new ones.
    assert!(append_now(&mut a, &tp(0), 99, 40, 0));
    let second = batches.remove(1);
    let first = batches.remove(0);
    a.reenqueue(second, 10);
    a.reenqueue(first, 10);
    assert!(a.drain(0, &[tp(0)], 1 << 20, 50).is_empty(), "backing off");
    assert!(a.ready(50).ready.is_empty());
    assert_eq!(a.ready(110).ready, vec![tp(0)]);
    let again: Vec<i32> = (0..3)
        .flat_map(|_| a.drain(0, &[tp(0)], 1 << 20, 110))
        .map(|b| b.base_sequence())
        .collect();
    assert_eq!(again[0], 0);
    assert!(again[1] > 0 && again[2] == 20, "{again:?}");
    // A new epoch restarts sequences.
    a.set_producer_id_and_epoch(1234, 3);
    assert_eq!(a.next_sequence(&tp(0)), 0);
}

/// After a broker lost the producer's state: the oldest unacknowledged batch is recognised,
/// nothing drains while the producer id is reset, and a new id re-stamps the queued retries
/// from sequence 0 (header and CRC rewritten), with new batches following on.
#[test]
fn a_new_producer_id_restamps_queued_retries() {
    // Batches of 400 bytes: the 20 records fit in at most UNACKED_BATCHES_MAX batches.
    let mut a = acc(cfg(400, 0, 100_000, Compression::None, true));
    for id in 0..20 {
        assert!(append_now(&mut a, &tp(0), id, 40, 0));
    }
    a.set_producer_id_and_epoch(1000, 0);
    let mut batches = Vec::new();
    while a.has_undrained() {
        batches.extend(a.drain(0, &[tp(0)], 1 << 20, 0));
    }
    assert!(
        batches.len() >= 3 && batches.len() <= UNACKED_BATCHES_MAX,
        "{} batches",
        batches.len()
    );
    let acked = batches.remove(0);
    assert!(a.is_oldest_unacked(&acked));
    assert!(!a.is_oldest_unacked(&batches[0]), "an earlier batch is still unacknowledged");
    let acked_records = acked.record_count() as i32;
    // Nothing acknowledged yet: the batch at sequence 0 is the next the broker expects.
    assert!(a.is_next_sequence(&acked) && !a.is_next_sequence(&batches[0]));
    a.acknowledged(&acked);
    a.complete(acked);
    assert!(a.is_oldest_unacked(&batches[0]));
    assert!(!a.is_oldest_unacked(&batches[1]));
    // Only the batch right after the last acknowledged sequence, refused as out of order, shows
    // lost producer state; a later one refused so is a reordering (it may be in the log).
    assert!(a.is_next_sequence(&batches[0]) && !a.is_next_sequence(&batches[1]));
    // The broker refuses the rest as out of order: all come back, in sequence order.
    let old_sequences: Vec<i32> = batches.iter().map(|b| b.base_sequence()).collect();
    assert_eq!(old_sequences[0], acked_records);
    a.reset_producer_id();
    for b in batches.drain(..).rev() {
        a.reenqueue(b, 10);
    }
    assert!(append_now(&mut a, &tp(0), 99, 40, 10));
    assert!(a.ready(1_000).ready.is_empty(), "no drain without a producer id");
    assert!(a.drain(0, &[tp(0)], 1 << 20, 1_000).is_empty());
    a.set_producer_id_and_epoch(2000, 0);
    let mut seq = 0;
    let mut ids = Vec::new();
    while a.has_undrained() {
        for b in a.drain(0, &[tp(0)], 1 << 20, 1_000) {
            assert_eq!((b.producer_id(), b.producer_epoch(), b.base_sequence()), (2000, 0, seq));
            let h = BatchHeader::validate(b.bytes(), usize::MAX).unwrap();
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (2000, 0, seq));
            check_batch(&b);
            seq += b.record_count() as i32;
            ids.extend(b.thunks.iter().copied());
            a.complete(b);
        }
    }
    let expected: Vec<u64> = (acked_records as u64..20).chain([99]).collect();
    assert_eq!(ids, expected, "every record not acknowledged travels again, in order");
}

/// A drained batch's bytes go into a request without a copy; its buffer returns to the pool
/// when it completes if no request holds the bytes any more, and otherwise its memory does
/// (the buffer goes with the last holder). A restamp (a new producer id) copies bytes that a
/// request still holds rather than change them under it.
#[test]
fn sent_bytes_are_shared_and_the_buffer_returns_once_no_request_holds_them() {
    let mut a = acc(cfg(1000, 0, 10_000, Compression::None, false));
    assert!(append_now(&mut a, &tp(0), 1, 40, 0));
    let b = a.drain(0, &[tp(0)], 1 << 20, 0).remove(0);
    let sent = b.shared_bytes();
    assert_eq!(sent.as_ptr(), b.bytes().as_ptr(), "the request holds the batch's own bytes");
    a.complete(b);
    let pool = a.pool();
    assert_eq!((pool.available_memory(), pool.pooled_buffers()), (10_000, 0), "held: memory only");
    drop(sent);
    assert!(append_now(&mut a, &tp(0), 2, 40, 0));
    let b = a.drain(0, &[tp(0)], 1 << 20, 0).remove(0);
    a.complete(b);
    let pool = a.pool();
    assert_eq!((pool.available_memory(), pool.pooled_buffers()), (10_000, 1), "not held: pooled");

    let mut a = acc(cfg(1000, 0, 10_000, Compression::None, true));
    assert!(append_now(&mut a, &tp(0), 3, 40, 0));
    a.set_producer_id_and_epoch(1000, 0);
    let b = a.drain(0, &[tp(0)], 1 << 20, 0).remove(0);
    let sent = b.shared_bytes();
    a.reset_producer_id();
    a.reenqueue(b, 10);
    a.set_producer_id_and_epoch(2000, 0);
    let b = a.drain(0, &[tp(0)], 1 << 20, 1_000).remove(0);
    let stamped = |bytes: &[u8]| BatchHeader::validate(bytes, usize::MAX).unwrap().producer_id;
    assert_eq!((stamped(&sent), stamped(b.bytes())), (1000, 2000), "the held bytes unchanged");
    check_batch(&b);
}

#[test]
fn sequences_wrap_like_kafka() {
    assert_eq!(client::increment_sequence(i32::MAX, 1), 0);
    assert_eq!(client::increment_sequence(i32::MAX - 1, 5), 3);
    assert_eq!(client::increment_sequence(5, 5), 10);
}

#[test]
fn expired_batches_fail_and_return_memory() {
    let c = AccumulatorConfig {
        delivery_timeout_ms: 1000,
        ..cfg(1000, 0, 10_000, Compression::None, false)
    };
    let mut a = acc(c);
    assert!(append_now(&mut a, &tp(0), 1, 10, 0));
    assert!(append_now(&mut a, &tp(1), 2, 10, 500));
    assert!(a.expire(999).is_empty());
    let e = a.expire(1000);
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].tp.clone(), e[0].thunks.clone(), e[0].reason.clone()),
        (tp(0), vec![1], FailReason::DeliveryTimeout)
    );
    let aborted = a.abort_all();
    assert_eq!(aborted[0].thunks, vec![2]);
    assert_eq!(a.pool().available_memory(), 10_000);
}

#[test]
fn oversized_records_are_refused() {
    let c = AccumulatorConfig {
        max_request_size: 1000,
        ..cfg(100, 0, 10_000, Compression::None, false)
    };
    let mut a = acc(c);
    let big = vec![0u8; 2000];
    let rec = RecordRef { timestamp: 0, key: None, value: Some(&big), headers: &[] };
    assert!(matches!(a.try_append(&tp(0), rec, 1), Err(AppendError::RecordTooLarge { .. })));
    // A record larger than batch.size but within limits gets a batch of its own.
    let mid = vec![0u8; 500];
    let rec = RecordRef { timestamp: 0, key: None, value: Some(&mid), headers: &[] };
    match a.try_append(&tp(0), rec, 2).unwrap() {
        TryAppend::NeedsBuffer { size, .. } => assert!(size > 500),
        other => panic!("{other:?}"),
    }
    a.close();
    assert!(matches!(a.try_append(&tp(0), rec, 3), Err(AppendError::Closed)));
}

#[test]
fn config_feeds_the_accumulator() {
    let c = ProducerConfig::from_pairs([
        ("batch.size", "1000"),
        ("linger.ms", "7"),
        ("compression.type", "zstd"),
    ])
    .unwrap();
    let ac = AccumulatorConfig::from(&c);
    assert_eq!(
        (ac.batch_size, ac.linger_ms, ac.compression, ac.idempotence),
        (1000, 7, Compression::Zstd, true)
    );
}

#[tokio::test]
async fn append_waits_for_memory_released_by_completion() {
    let c = cfg(100, 0, 200, Compression::None, false);
    let pool = Arc::new(BufferPool::new(200, 100));
    let a = Arc::new(Mutex::new(RecordAccumulator::<u64>::new(c, pool.clone())));
    // A record whose upper bound fits one batch.size buffer.
    let v = vec![1u8; 10];
    let rec = RecordRef { timestamp: 0, key: None, value: Some(&v), headers: &[] };
    for (i, p) in [0, 1].into_iter().enumerate() {
        let done = client::append(&a, &tp(p), rec, i as u64, Duration::from_millis(10), || 0)
            .await
            .unwrap();
        assert!(!done.waited_for_memory, "memory was free: no wait");
    }
    assert_eq!(pool.available_memory(), 0);
    let err =
        client::append(&a, &tp(2), rec, 9, Duration::from_millis(10), || 0).await.unwrap_err();
    assert!(matches!(err, AppendError::Pool(client::PoolError::Timeout { .. })));
    let a2 = a.clone();
    let waiter = tokio::spawn(async move {
        let v = vec![1u8; 10];
        let rec = RecordRef { timestamp: 0, key: None, value: Some(&v), headers: &[] };
        client::append(&a2, &tp(2), rec, 3, Duration::from_secs(5), || 0).await
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    {
        let mut g = a.lock().unwrap();
        // The pool has a waiter: every batch is ready ("exhausted").
        assert_eq!(g.ready(0).ready.len(), 2);
        let drained = g.drain(0, &[tp(0)], 1 << 20, 0);
        for b in drained {
            g.complete(b);
        }
    }
    let appended = waiter.await.unwrap().unwrap();
    assert!(appended.new_batch_created);
    assert!(appended.waited_for_memory, "it waited for the completion's memory");
}

#[derive(Debug, Clone)]
enum Op {
    Append { partition: i32, len: usize },
    Tick(u64),
    Drain { node: i32, max_request_size: usize },
    Complete(proptest::sample::Index),
    Retry(proptest::sample::Index),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0i32..4, 0usize..300).prop_map(|(partition, len)| Op::Append { partition, len }),
        2 => (0u64..30).prop_map(Op::Tick),
        3 => (0i32..2, prop_oneof![Just(1 << 20), 100usize..3000]).prop_map(|(node, max_request_size)| Op::Drain { node, max_request_size }),
        3 => any::<proptest::sample::Index>().prop_map(Op::Complete),
        1 => any::<proptest::sample::Index>().prop_map(Op::Retry),
    ]
}

proptest! {
    // PROPTEST_CASES raises the count for deep runs (scripts/test.sh's deep property step); the
    // default keeps the workspace run quick.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    /// Every appended record comes out in exactly one completed batch; per partition, batches in
    /// sequence (or first-drain) order concatenate to the append order; sequences are contiguous
    /// from 0; the pool never hands out more than buffer.memory and gets it all back.
    #[test]
    fn accumulator_matches_model(
        ops in proptest::collection::vec(op(), 1..150),
        batch_size in 100usize..2000,
        linger_ms in 0u64..20,
        buffer_memory in 2_000usize..20_000,
        compression in proptest::sample::select(vec![Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]),
        idempotence in any::<bool>(),
    ) {
        let c = AccumulatorConfig { max_request_size: 1 << 20, ..cfg(batch_size, linger_ms, buffer_memory, compression, idempotence) };
        let mut a = acc(c);
        if idempotence {
            a.set_producer_id_and_epoch(77, 0);
        }
        let partitions_of = |node: i32| -> Vec<TopicPartition> { (0..4).filter(|p| p % 2 == node).map(tp).collect() };
        let mut now = 0u64;
        let mut next_id = 0u64;
        let mut appended: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
        let mut in_flight: Vec<ProducerBatch<u64>> = Vec::new();
        // (partition, first-drain order, base sequence, ids) for each completed batch
        let mut completed: Vec<(i32, u64, i32, Vec<u64>)> = Vec::new();
        let mut first_drain: BTreeMap<u64, u64> = BTreeMap::new();
        let mut drain_counter = 0u64;

        let mut handle_drained = |batches: Vec<ProducerBatch<u64>>, in_flight: &mut Vec<ProducerBatch<u64>>| {
            for b in batches {
                check_batch(&b);
                first_drain.entry(b.id).or_insert_with(|| { drain_counter += 1; drain_counter });
                in_flight.push(b);
            }
        };

        for op in ops {
            match op {
                Op::Append { partition, len } => {
                    if append_now(&mut a, &tp(partition), next_id, len, now) {
                        appended.entry(partition).or_default().push(next_id);
                    }
                    next_id += 1;
                }
                Op::Tick(ms) => now += ms,
                Op::Drain { node, max_request_size } => {
                    let ready = a.ready(now);
                    if ready.ready.iter().any(|t| t.partition % 2 == node) {
                        let batches = a.drain(node, &partitions_of(node), max_request_size, now);
                        prop_assert!(!batches.is_empty());
                        handle_drained(batches, &mut in_flight);
                    }
                }
                Op::Complete(i) => {
                    if !in_flight.is_empty() {
                        let b = in_flight.remove(i.index(in_flight.len()));
                        let entry = (b.tp.partition, b.id, b.base_sequence(), b.thunks.clone());
                        prop_assert_eq!(a.complete(b), entry.3.clone());
                        completed.push(entry);
                    }
                }
                Op::Retry(i) => {
                    if !in_flight.is_empty() {
                        let b = in_flight.remove(i.index(in_flight.len()));
                        a.reenqueue(b, now);
                    }
                }
            }
            let pool = a.pool();
            prop_assert!(pool.available_memory() <= buffer_memory);
            prop_assert!(pool.pooled_buffers() * batch_size <= buffer_memory);
        }
        // Flush: drain and complete everything that is left.
        a.begin_flush();
        for b in std::mem::take(&mut in_flight) {
            let entry = (b.tp.partition, b.id, b.base_sequence(), b.thunks.clone());
            a.complete(b);
            completed.push(entry);
        }
        let mut rounds = 0;
        while a.has_incomplete() {
            now += 200; // past any retry backoff
            for node in 0..2 {
                let batches = a.drain(node, &partitions_of(node), 1 << 20, now);
                handle_drained(batches, &mut in_flight);
            }
            for b in std::mem::take(&mut in_flight) {
                let entry = (b.tp.partition, b.id, b.base_sequence(), b.thunks.clone());
                a.complete(b);
                completed.push(entry);
            }
            rounds += 1;
            prop_assert!(rounds < 1000, "flush does not converge");
        }
        a.end_flush();
        prop_assert_eq!(a.pool().available_memory(), buffer_memory);

        let mut ids: Vec<u64> = completed.iter().flat_map(|c| c.3.iter().copied()).collect();
        ids.sort_unstable();
        let mut want: Vec<u64> = appended.values().flatten().copied().collect();
        want.sort_unstable();
        prop_assert_eq!(ids, want, "each record in exactly one batch");

        for (partition, order) in &appended {
            let mut batches: Vec<_> = completed.iter().filter(|c| c.0 == *partition).collect();
            if idempotence {
                batches.sort_by_key(|c| c.2);
                let mut seq = 0i32;
                for b in &batches {
                    prop_assert_eq!(b.2, seq, "contiguous sequences");
                    seq += b.3.len() as i32;
                }
            } else {
                prop_assert!(batches.iter().all(|b| b.2 == -1));
            }
            // First-drain order equals sequence order and append order.
            let mut by_drain = batches.clone();
            by_drain.sort_by_key(|c| first_drain[&c.1]);
            let concat: Vec<u64> = by_drain.iter().flat_map(|c| c.3.iter().copied()).collect();
            prop_assert_eq!(&concat, order);
            if idempotence {
                // Sequence order (what the broker enforces) equals append order.
                let concat: Vec<u64> = batches.iter().flat_map(|c| c.3.iter().copied()).collect();
                prop_assert_eq!(&concat, order);
            }
        }
    }
}

/// A leader change with batches still in flight (issue 14, cluster-nemesis seed 5785): an
/// idempotent partition is drained to one node at a time. Nothing is stamped for the new leader
/// until every batch in flight to the old one is back; then the retries go first, in sequence
/// order, so the new leader sees the sequences in order and a retried batch is still among the
/// last five it appended (answered as a duplicate, never re-stamped and written again).
#[test]
fn an_idempotent_partition_is_in_flight_to_one_node_at_a_time() {
    let mut a = acc(cfg(200, 0, 100_000, Compression::None, true));
    for id in 0..40 {
        assert!(append_now(&mut a, &tp(0), id, 40, 0));
    }
    a.set_producer_id_and_epoch(1000, 0);
    // Two batches in flight to the old leader, node 1.
    let first = a.drain(1, &[tp(0)], 1 << 20, 0).pop().expect("a batch");
    let second = a.drain(1, &[tp(0)], 1 << 20, 0).pop().expect("a batch");
    let (s1, s2) = (first.base_sequence(), second.base_sequence());
    assert_eq!((s1, s2), (0, first.record_count() as i32));
    let next = a.next_sequence(&tp(0));
    // The metadata names node 2 now: nothing of the partition drains there meanwhile.
    assert!(
        a.drain(2, &[tp(0)], 1 << 20, 0).is_empty(),
        "drained to the new leader while batches are in flight to the old"
    );
    assert_eq!(a.next_sequence(&tp(0)), next, "no sequence stamped for the new leader");
    // Other partitions are not held back.
    assert!(append_now(&mut a, &tp(1), 100, 40, 0));
    let other = a.drain(2, &[tp(0), tp(1)], 1 << 20, 0);
    assert_eq!(other.iter().map(|b| b.tp.partition).collect::<Vec<_>>(), vec![1]);
    for b in other {
        a.complete(b);
    }
    // The old leader steps down: one answer back, the other still out.
    a.reenqueue(first, 10);
    assert!(
        a.drain(2, &[tp(0)], 1 << 20, 200).is_empty(),
        "one batch is still in flight to node 1"
    );
    a.reenqueue(second, 10);
    // Both back: retries first, in sequence order, then the next new batch; and now node 1 waits.
    let to_new: Vec<i32> = (0..3)
        .flat_map(|_| a.drain(2, &[tp(0)], 1 << 20, 200))
        .map(|b| b.base_sequence())
        .collect();
    assert_eq!(to_new, vec![s1, s2, next]);
    assert!(a.drain(1, &[tp(0)], 1 << 20, 200).is_empty(), "batches are in flight to node 2");
}

/// A batch written but answered with an error (a timeout after handling) is retried while newer
/// batches are appended (nemesis-request-faults seed 51). The broker deduplicates against its last
/// five batches of the producer, so a new batch waits while a partition has five unacknowledged:
/// the retry is then always inside the broker's window.
#[test]
fn at_most_five_batches_of_a_partition_are_unacknowledged() {
    let mut a = acc(cfg(100, 0, 100_000, Compression::None, true));
    for id in 0..12 {
        assert!(append_now(&mut a, &tp(0), id, 40, 0));
    }
    a.set_producer_id_and_epoch(1000, 0);
    let mut batches = Vec::new();
    for _ in 0..10 {
        batches.extend(a.drain(0, &[tp(0)], 1 << 20, 0));
    }
    assert_eq!(batches.len(), UNACKED_BATCHES_MAX, "the sixth batch waits");
    assert!(a.has_undrained());
    assert!(a.ready(1_000).ready.is_empty(), "a waiting partition is not ready");
    // The oldest fails after it was written; the other four are acknowledged.
    let oldest = batches.remove(0);
    let oldest_sequence = oldest.base_sequence();
    a.reenqueue(oldest, 0);
    for b in batches.drain(..) {
        a.acknowledged(&b);
        a.complete(b);
    }
    // Its retry may go (it has its sequence). Nothing new while it is out: the broker may have
    // appended the four acknowledged ones after it, and a fifth would push it out of the window.
    assert_eq!(a.ready(1_000).ready, vec![tp(0)]);
    let retry = a.drain(0, &[tp(0)], 1 << 20, 1_000);
    assert_eq!(retry.iter().map(|b| b.base_sequence()).collect::<Vec<_>>(), vec![oldest_sequence]);
    assert!(a.drain(0, &[tp(0)], 1 << 20, 1_000).is_empty());
    assert!(a.ready(1_000).ready.is_empty());
    for b in retry {
        a.acknowledged(&b);
        a.complete(b);
    }
    // Acknowledged: the window is empty again and the next five may go.
    let mut newer = Vec::new();
    for _ in 0..10 {
        newer.extend(a.drain(0, &[tp(0)], 1 << 20, 1_000));
    }
    assert!(!newer.is_empty() && newer.len() <= UNACKED_BATCHES_MAX, "{}", newer.len());
    assert_eq!(
        newer[0].base_sequence(),
        a.next_sequence(&tp(0)) - newer.iter().map(|b| b.record_count() as i32).sum::<i32>()
    );
}
