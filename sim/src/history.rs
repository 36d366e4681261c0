//! What a run recorded, as plain data: every send and its outcome, every poll, every consumer
//! reset, and the final read of each partition. Checkers are pure functions of this.

use std::collections::BTreeMap;

use serde::Serialize;

/// A partition, as `topic-partition` (Kafka's directory name).
pub type Tp = String;

/// Record ids are `(producer index << 40) | sequence`; prefill entry `k` writes as producer
/// index `PREFILL_INDEX_BASE + k` (never a workload producer's index).
pub const PREFILL_INDEX_BASE: u32 = 1 << 23;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SendOutcome {
    /// acks=1/all: the broker answered with this offset.
    Acked { offset: i64, at_ns: u64 },
    /// acks=0: handed to the broker with no answer expected (never a promise).
    Unconfirmed { at_ns: u64 },
    /// Gave up (retries exhausted, delivery timeout): the write may or may not be in the log.
    Failed { at_ns: u64, error: String },
    /// Still in flight when the run ended.
    Pending,
}

/// One record a producer sent. `value` is unique across the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Send {
    pub producer: u32,
    pub tp: Tp,
    pub value: u64,
    pub created_ns: u64,
    pub outcome: SendOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PollKind {
    /// Records returned, in the order the consumer saw them: (offset, value).
    Records(Vec<(i64, u64)>),
    /// The consumer's position was reset (`auto.offset.reset` after OffsetOutOfRange, or an
    /// explicit seek): monotonicity restarts here.
    Reset { from: i64, to: i64, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Poll {
    pub consumer: u32,
    pub tp: Tp,
    pub at_ns: u64,
    pub kind: PollKind,
}

/// The end state read by the oracle after the run healed: each partition's records in offset
/// order, with its log end offset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FinalLog {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub records: Vec<(i64, u64)>,
}

/// A group member's assignment as it saw it, after a rebalance notice: the generation and member
/// id it held then and every partition it owned (empty after a revocation or loss).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub member: u32,
    pub group: String,
    pub member_id: String,
    pub generation: i32,
    pub tps: Vec<Tp>,
    pub at_ns: u64,
}

/// An OffsetCommit a group member sent: what it carried and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Commit {
    pub member: u32,
    pub group: String,
    pub member_id: String,
    /// The generation the member held when it sent the commit.
    pub generation: i32,
    /// Next offset to read, per partition.
    pub offsets: Vec<(Tp, i64)>,
    pub sent_ns: u64,
    pub at_ns: u64,
    /// `None` = accepted; otherwise the error the member got.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct History {
    pub sends: Vec<Send>,
    pub polls: Vec<Poll>,
    /// `None` for a partition the oracle could not read (a liveness failure).
    pub final_logs: BTreeMap<Tp, Option<FinalLog>>,
    /// Each consumer's position per partition at the end.
    pub final_positions: BTreeMap<(u32, Tp), i64>,
    /// When the last fault healed (ns); progress must resume after it.
    pub last_heal_ns: Option<u64>,
    /// Why the run could not make progress, if it knows (e.g. the broker failed to start).
    pub stuck: Vec<String>,
    /// Consumer-group runs: each member's assignments and commits, in the order they happened.
    pub assignments: Vec<Assignment>,
    pub commits: Vec<Commit>,
    /// Group members: consumer index → group id. Their polls are checked per group across
    /// rebalances, and their progress per group (`group_positions`), not per member.
    pub group_members: BTreeMap<u32, String>,
    /// Per group and partition: the furthest position any member reached.
    pub group_positions: BTreeMap<(String, Tp), i64>,
    /// Per group: the partitions it subscribes to (all must be owned again after the heal).
    pub group_partitions: BTreeMap<String, Vec<Tp>>,
    /// Cluster runs: each replica's log read back after the run healed (debugging Fetch,
    /// replica id -2), per partition and broker; `None` = could not be read.
    pub replica_logs: BTreeMap<Tp, BTreeMap<u32, Option<ReplicaLog>>>,
    /// Cluster runs: the final partition state (leader, ISR) the oracle read against.
    pub final_partition: BTreeMap<Tp, (i32, i32, Vec<i32>)>,
    /// Cluster runs: periodic HW samples of every broker that leads a partition.
    pub hw_samples: Vec<HwSample>,
}

/// One replica's log as that replica serves it to a debugging reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaLog {
    pub high_watermark: i64,
    pub log_end_offset: i64,
    /// (base offset, last offset, hash of the batch's bytes), in log order.
    pub batches: Vec<(i64, i64, u64)>,
}

/// A leader's HW at one instant: (broker, its incarnation, leader epoch) identify the
/// leadership the sample belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HwSample {
    pub at_ns: u64,
    pub broker: u32,
    pub incarnation: u64,
    pub tp: Tp,
    pub leader_epoch: i32,
    pub hw: i64,
}

impl History {
    pub fn acked(&self) -> impl Iterator<Item = (&Send, i64, u64)> {
        self.sends.iter().filter_map(|s| match s.outcome {
            SendOutcome::Acked { offset, at_ns } => Some((s, offset, at_ns)),
            _ => None,
        })
    }
}
