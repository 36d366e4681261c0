//! Idempotent-producer sequence checks per (producer id, partition), as Kafka's ProducerStateManager:
//! the last five batches of each producer are remembered so a retried batch is answered with the
//! offsets it got the first time; a gap or a reordering is OUT_OF_ORDER_SEQUENCE_NUMBER; an older
//! epoch is INVALID_PRODUCER_EPOCH. State is in memory: after a restart the first batch of a
//! producer is accepted at any sequence (Kafka would rebuild the state from the log).

use std::collections::{BTreeMap, VecDeque};

use records::BatchHeader;

use crate::log::TopicPartition;
use crate::protocol::error_code;

/// Batches remembered per producer and partition (Kafka's max.in.flight for idempotence).
pub const BATCHES_KEPT: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
}

/// What to do with an incoming produce for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Append,
    /// An exact retry of a batch already in the log: answer with its original base offset.
    Duplicate { base_offset: i64 },
    /// Refuse with this error code.
    Reject(i16),
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    entries: BTreeMap<(i64, TopicPartition), Entry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

fn last_seq(h: &BatchHeader) -> i32 {
    let span = h.last_offset_delta.max(0) as i64;
    ((h.base_sequence as i64 + span) % (i32::MAX as i64 + 1)) as i32
}

impl ProducerStates {
    /// Checks the batches (headers in order) of one partition's produce.
    pub fn check(&self, tp: &TopicPartition, headers: &[BatchHeader]) -> Verdict {
        let Some(first) = headers.first() else {
            return Verdict::Append;
        };
        if first.producer_id < 0 || first.base_sequence < 0 {
            return Verdict::Append;
        }
        let entry = self.entries.get(&(first.producer_id, tp.clone()));
        let mut expected: Option<(i16, i32)> =
            entry.and_then(|e| e.batches.back().map(|b| (e.epoch, next_seq(b.last_seq))));
        if let Some(e) = entry {
            if first.producer_epoch < e.epoch {
                return Verdict::Reject(error_code::INVALID_PRODUCER_EPOCH);
            }
            if first.producer_epoch == e.epoch {
                if let Some(b) = e
                    .batches
                    .iter()
                    .find(|b| b.first_seq == first.base_sequence && b.last_seq == last_seq(first))
                {
                    return Verdict::Duplicate { base_offset: b.first_offset };
                }
            }
        }
        for h in headers {
            if h.producer_id != first.producer_id {
                return Verdict::Reject(error_code::INVALID_RECORD);
            }
            match expected {
                Some((epoch, seq)) if h.producer_epoch == epoch && h.base_sequence != seq => {
                    return Verdict::Reject(error_code::OUT_OF_ORDER_SEQUENCE_NUMBER);
                }
                Some((epoch, _)) if h.producer_epoch > epoch && h.base_sequence != 0 => {
                    return Verdict::Reject(error_code::OUT_OF_ORDER_SEQUENCE_NUMBER);
                }
                _ => {}
            }
            expected = Some((h.producer_epoch, next_seq(last_seq(h))));
        }
        Verdict::Append
    }

    /// What this broker remembers of the producer of `h` on `tp`, for a refusal's log line.
    pub fn describe(&self, tp: &TopicPartition, h: &BatchHeader) -> String {
        match self.entries.get(&(h.producer_id, tp.clone())) {
            None => format!(
                "producer {} epoch {} seq {}: no state",
                h.producer_id, h.producer_epoch, h.base_sequence
            ),
            Some(e) => format!(
                "producer {} epoch {} seq {}..={}: known epoch {}, batches {:?}",
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                last_seq(h),
                e.epoch,
                e.batches
                    .iter()
                    .map(|b| (b.first_seq, b.last_seq, b.first_offset))
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// Records appended batches (headers with their assigned base offsets).
    pub fn record(&mut self, tp: &TopicPartition, headers: &[BatchHeader]) {
        for h in headers {
            if h.producer_id < 0 || h.base_sequence < 0 {
                continue;
            }
            let e = self.entries.entry((h.producer_id, tp.clone())).or_default();
            if h.producer_epoch != e.epoch {
                e.epoch = h.producer_epoch;
                e.batches.clear();
            }
            e.batches.push_back(BatchMeta {
                first_seq: h.base_sequence,
                last_seq: last_seq(h),
                first_offset: h.base_offset,
                last_offset: h.last_offset(),
            });
            while e.batches.len() > BATCHES_KEPT {
                e.batches.pop_front();
            }
        }
    }

    /// Forgets a partition's producers (topic deleted).
    pub fn forget_partition(&mut self, tp: &TopicPartition) {
        self.entries.retain(|(_, t), _| t != tp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32, base: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: n,
        }
    }

    #[test]
    fn sequences() {
        let tp = TopicPartition::new("t", 0);
        let mut s = ProducerStates::default();
        assert_eq!(s.check(&tp, &[h(7, 0, 0, 3, 0)]), Verdict::Append);
        s.record(&tp, &[h(7, 0, 0, 3, 10)]);
        assert_eq!(s.check(&tp, &[h(7, 0, 0, 3, 0)]), Verdict::Duplicate { base_offset: 10 });
        assert_eq!(
            s.check(&tp, &[h(7, 0, 5, 1, 0)]),
            Verdict::Reject(error_code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(s.check(&tp, &[h(7, 0, 3, 1, 0)]), Verdict::Append);
        s.record(&tp, &[h(7, 0, 3, 1, 13)]);
        assert_eq!(s.check(&tp, &[h(7, 1, 0, 1, 0)]), Verdict::Append);
        assert_eq!(
            s.check(&tp, &[h(7, 1, 4, 1, 0)]),
            Verdict::Reject(error_code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        s.record(&tp, &[h(7, 1, 0, 1, 14)]);
        assert_eq!(
            s.check(&tp, &[h(7, 0, 4, 1, 0)]),
            Verdict::Reject(error_code::INVALID_PRODUCER_EPOCH)
        );
    }
}
