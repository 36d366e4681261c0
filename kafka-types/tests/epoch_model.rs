//! The epoch cache against two models, under the operations a partition log performs: appends
//! (each batch carries an epoch no older than the last), truncation to an offset, and moving the
//! log start (retention, DeleteRecords).
//! - Kafka's `LeaderEpochFileCache` transliterated: a `BTreeMap<epoch, start>` and its
//!   `assign`/`truncateFromEnd`/`truncateFromStart`/`endOffsetFor` code paths.
//! - The records themselves: the epoch of every offset, from which an epoch's end offset is read.

use std::collections::BTreeMap;

use kafka_types::EpochCache;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A batch of `records` (≥ 1) with epoch `last epoch + epoch_step`.
    Append { epoch_step: i32, records: i64 },
    /// Truncate the log's end to the given fraction (per mille) of [log start, log end].
    TruncateTo { per_mille: i64 },
    /// Move the log start to the given fraction (per mille) of [log start, log end].
    MoveStart { per_mille: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3i32, 1..5i64).prop_map(|(epoch_step, records)| Op::Append { epoch_step, records }),
        1 => (0..=1000i64).prop_map(|per_mille| Op::TruncateTo { per_mille }),
        1 => (0..=1000i64).prop_map(|per_mille| Op::MoveStart { per_mille }),
    ]
}

/// Kafka's TreeMap-based cache, code path for code path.
#[derive(Default)]
struct KafkaModel {
    epochs: BTreeMap<i32, i64>,
}

impl KafkaModel {
    fn assign(&mut self, epoch: i32, start: i64) {
        let update_needed =
            self.epochs.last_key_value().is_none_or(|(&e, &s)| epoch != e || start < s);
        if !update_needed {
            return;
        }
        // maybeTruncateNonMonotonicEntries: remove from the end while epoch ≥ or start ≥.
        while let Some((&e, &s)) = self.epochs.last_key_value() {
            if e >= epoch || s >= start {
                self.epochs.remove(&e);
            } else {
                break;
            }
        }
        self.epochs.insert(epoch, start);
    }

    fn truncate_from_end(&mut self, end: i64) {
        while let Some((&e, &s)) = self.epochs.last_key_value() {
            if end >= 0 && s >= end {
                self.epochs.remove(&e);
            } else {
                break;
            }
        }
    }

    fn truncate_from_start(&mut self, start: i64) {
        let mut last_removed = None;
        while let Some((&e, &s)) = self.epochs.first_key_value() {
            if s <= start {
                self.epochs.remove(&e);
                last_removed = Some(e);
            } else {
                break;
            }
        }
        if let Some(e) = last_removed {
            self.epochs.insert(e, start);
        }
    }

    /// Kafka's `endOffsetFor`, except a request newer than every epoch (see the module docs of
    /// `kafka_types::epoch`): there Kafka answers UNDEFINED and Loglab the latest epoch.
    fn end_offset_for(&self, requested: i32, leo: i64) -> Option<(i32, i64)> {
        let (&latest, _) = self.epochs.last_key_value()?;
        if requested < 0 {
            None
        } else if requested == latest {
            Some((requested, leo))
        } else {
            match self.epochs.range(requested + 1..).next() {
                None => Some((latest, leo)),
                Some((_, &higher_start)) => match self.epochs.range(..=requested).next_back() {
                    None => Some((requested, higher_start)),
                    Some((&floor, _)) => Some((floor, higher_start)),
                },
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn cache_follows_kafka_and_the_records(ops in prop::collection::vec(op(), 1..40)) {
        let mut cache = EpochCache::default();
        let mut kafka = KafkaModel::default();
        // records[i] is the epoch of offset i; offsets below log_start are deleted.
        let mut records: Vec<i32> = Vec::new();
        let mut log_start = 0i64;
        let mut last_epoch = 0i32;
        for op in ops {
            let leo = records.len() as i64;
            match op {
                Op::Append { epoch_step, records: n } => {
                    last_epoch += epoch_step;
                    cache.assign(last_epoch, leo);
                    kafka.assign(last_epoch, leo);
                    records.extend(std::iter::repeat_n(last_epoch, n as usize));
                }
                Op::TruncateTo { per_mille } => {
                    let to = log_start + (leo - log_start) * per_mille / 1000;
                    records.truncate(to as usize);
                    cache.truncate_from_end(to);
                    kafka.truncate_from_end(to);
                }
                Op::MoveStart { per_mille } => {
                    log_start += (leo - log_start) * per_mille / 1000;
                    cache.truncate_from_start(log_start);
                    kafka.truncate_from_start(log_start);
                }
            }
            let expected: Vec<(i32, i64)> = kafka.epochs.iter().map(|(&e, &s)| (e, s)).collect();
            let got: Vec<(i32, i64)> =
                cache.entries().iter().map(|e| (e.epoch, e.start_offset)).collect();
            prop_assert_eq!(&got, &expected);
            let leo = records.len() as i64;
            for requested in -1..=last_epoch + 1 {
                let answer = cache.end_offset_for(requested, leo);
                prop_assert_eq!(answer, kafka.end_offset_for(requested, leo), "epoch {}", requested);
                check_against_records(&records, log_start, &cache, requested, answer)?;
            }
        }
    }
}

/// For a request at or after the first known epoch, the answer's end offset is the first live
/// record of a newer epoch than requested (or the log end), and every live record before it has
/// an epoch ≤ the answer's epoch.
fn check_against_records(
    records: &[i32],
    log_start: i64,
    cache: &EpochCache,
    requested: i32,
    answer: Option<(i32, i64)>,
) -> Result<(), TestCaseError> {
    let Some(first) = cache.earliest() else { return Ok(()) };
    if requested < first.epoch {
        return Ok(());
    }
    let (epoch, end) = answer.expect("a known epoch ≤ the request");
    prop_assert!(epoch <= requested);
    let live = &records[log_start.min(records.len() as i64) as usize..];
    let first_newer = live.iter().position(|&e| e > requested).map(|i| log_start + i as i64);
    prop_assert_eq!(end, first_newer.unwrap_or(records.len() as i64));
    prop_assert!(live.iter().take((end - log_start).max(0) as usize).all(|&e| e <= epoch));
    Ok(())
}
