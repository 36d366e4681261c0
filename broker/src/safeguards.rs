//! Safeguards that can be switched off: the bug museum's switches (issue 14).
//!
//! Every safeguard is on by default. A `loglab.unsafe.*` broker setting turns one off so that a
//! scenario can show the anomaly it prevents — the same checks that hold with it on go red with it
//! off, which proves the checks can see that anomaly at all. Each switch names the Kafka bug or
//! KIP whose absence it reproduces. They exist for simulated stories and for experiments; a broker
//! serving real data never needs one, and the broker logs a warning for each one turned off.
//!
//! | key | what is switched off | history |
//! |---|---|---|
//! | `loglab.unsafe.producer.dedup.disable` | idempotent-producer sequence checks: every retried batch is appended again | before KIP-98 (Kafka 0.11) a retry after a lost response wrote the batch twice |
//! | `loglab.unsafe.group.commit.any.generation` | generation fencing of OffsetCommit: a commit from an evicted member or an old generation is stored | OffsetCommit v0 carried no generation (Kafka 0.8.2); a zombie consumer overwrote the group's progress |
//! | `loglab.unsafe.truncate.to.hw` | truncation by leader epoch: a follower that starts following truncates its log to its own high watermark | before KIP-101 (Kafka 0.11): acknowledged records between a follower's high watermark and its log end are cut and lost when that follower is elected before it refetched them |
//! | `loglab.unsafe.follower.fetch.ignore.epoch` | leader-epoch validation of follower fetches: a follower sends no current leader epoch (Fetch and OffsetForLeaderEpoch, so a stale leader serves it), and truncates to the end offset the leader answers without checking the epoch the leader named | before KIP-320 (Kafka 2.1) and KIP-279 (Kafka 2.0): when leadership flips twice quickly, a follower whose latest epoch the new leader never saw keeps records of that epoch at offsets where the leader has others; the replicas diverge for good |
//! | `loglab.unsafe.elr.disable` | eligible leader replicas, the last known ELR and unclean recovery: the controller treats every topic as `min.insync.replicas=1` for leader election | before KIP-966 (Kafka 3.7/4.0): the last ISR member, back from a power loss with a shorter (or empty) log, is elected again and the other replica, which held every acknowledged write, truncates to it |
//! | `loglab.unsafe.zombie.fencing.disable` | fencing of replica fetches that belong to another leadership or another incarnation: a leader acts on a follower's fetch whatever current leader epoch it carries (no FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH), and takes the offset as that ISR member's log end even when it went back, so its high watermark falls with it | before KIP-320 (Kafka 2.1) a zombie leader, one that had not yet learned it was replaced, kept serving followers of the newer leadership; a replica back from an unclean restart with a shorter log is a zombie of its earlier incarnation in a leader's stale ISR (KIP-903, Kafka 3.5, added broker epochs so the ISR tells incarnations apart). Kafka's leader never lowered its HW (`Partition.maybeIncrementLeaderHW`): that half is not a Kafka release's bug but the rule `hw-monotonic` checks, removed so the check can be seen to fire (`scenarios/bug-zombie-fencing-disabled.json`) |
//! | `loglab.unsafe.controller.epoch.fencing.disable` | the commit of a controller decision before its answer: the active controller answers a request (an AlterPartition ISR shrink, a registration, a topic creation...) as soon as it has appended the decision to its own log in its own term, without waiting for the quorum to commit it, so a controller cut off from the quorum, not yet stepped down, answers decisions no quorum agreed to and the broker acts on them | before the controller epoch's zkVersion fenced ZooKeeper writes (KAFKA-6082, Kafka 2.1) a controller that had lost its session went on writing and sending decisions after its successor took over, and until KAFKA-14154 (Kafka 3.3) a stale controller could answer an AlterPartition as accepted without making it stick, so the leader believed an ISR no quorum had agreed to. Here the fencing is commit-before-answer (brokers apply only committed metadata; Raft terms are the controller epochs): off, a leader told its ISR is itself acknowledges `acks=all` writes alone and loses them when the leader the real quorum elected takes over (`scenarios/bug-zombie-controller.json`) |

/// The switches, each `false` (the safeguard on) unless a `loglab.unsafe.*` key says otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Safeguards {
    /// `loglab.unsafe.producer.dedup.disable`.
    pub producer_dedup_disabled: bool,
    /// `loglab.unsafe.group.commit.any.generation`.
    pub commit_any_generation: bool,
    /// `loglab.unsafe.truncate.to.hw`.
    pub truncate_to_hw: bool,
    /// `loglab.unsafe.follower.fetch.ignore.epoch`.
    pub fetch_ignore_epoch: bool,
    /// `loglab.unsafe.elr.disable`.
    pub elr_disabled: bool,
    /// `loglab.unsafe.zombie.fencing.disable`.
    pub zombie_fencing_disabled: bool,
    /// `loglab.unsafe.controller.epoch.fencing.disable`.
    pub controller_fencing_disabled: bool,
}

/// One switch: its key and what turning it on reproduces.
#[derive(Debug, Clone, Copy)]
pub struct Switch {
    pub key: &'static str,
    pub reproduces: &'static str,
}

/// Every switch, in the order of the table above.
pub const SWITCHES: &[Switch] = &[
    Switch {
        key: "loglab.unsafe.producer.dedup.disable",
        reproduces: "no idempotent-producer deduplication (before KIP-98): retries write twice",
    },
    Switch {
        key: "loglab.unsafe.group.commit.any.generation",
        reproduces: "no generation fencing of offset commits (OffsetCommit v0): zombie commits",
    },
    Switch {
        key: "loglab.unsafe.truncate.to.hw",
        reproduces: "truncation to the high watermark (before KIP-101): acknowledged writes lost",
    },
    Switch {
        key: "loglab.unsafe.follower.fetch.ignore.epoch",
        reproduces: "no leader-epoch validation of follower fetches (before KIP-279/KIP-320): replicas diverge",
    },
    Switch {
        key: "loglab.unsafe.elr.disable",
        reproduces: "no eligible leader replicas (before KIP-966): the last replica standing loses writes",
    },
    Switch {
        key: "loglab.unsafe.zombie.fencing.disable",
        reproduces: "no fencing of zombie replica fetches (before KIP-320/KIP-903): the leader's high watermark falls",
    },
    Switch {
        key: "loglab.unsafe.controller.epoch.fencing.disable",
        reproduces: "controller decisions answered before the quorum commits them (before KAFKA-6082/KAFKA-14154): a zombie controller shrinks an ISR no quorum agreed to",
    },
];

impl Safeguards {
    /// Sets the switch named `key` to `unsafe_on`; `false` when `key` is no switch.
    pub fn set(&mut self, key: &str, unsafe_on: bool) -> bool {
        let slot = match key {
            "loglab.unsafe.producer.dedup.disable" => &mut self.producer_dedup_disabled,
            "loglab.unsafe.group.commit.any.generation" => &mut self.commit_any_generation,
            "loglab.unsafe.truncate.to.hw" => &mut self.truncate_to_hw,
            "loglab.unsafe.follower.fetch.ignore.epoch" => &mut self.fetch_ignore_epoch,
            "loglab.unsafe.elr.disable" => &mut self.elr_disabled,
            "loglab.unsafe.zombie.fencing.disable" => &mut self.zombie_fencing_disabled,
            "loglab.unsafe.controller.epoch.fencing.disable" => {
                &mut self.controller_fencing_disabled
            }
            _ => return false,
        };
        *slot = unsafe_on;
        true
    }

    /// The value of the switch named `key` (`None`: no such switch).
    pub fn get(&self, key: &str) -> Option<bool> {
        match key {
            "loglab.unsafe.producer.dedup.disable" => Some(self.producer_dedup_disabled),
            "loglab.unsafe.group.commit.any.generation" => Some(self.commit_any_generation),
            "loglab.unsafe.truncate.to.hw" => Some(self.truncate_to_hw),
            "loglab.unsafe.follower.fetch.ignore.epoch" => Some(self.fetch_ignore_epoch),
            "loglab.unsafe.elr.disable" => Some(self.elr_disabled),
            "loglab.unsafe.zombie.fencing.disable" => Some(self.zombie_fencing_disabled),
            "loglab.unsafe.controller.epoch.fencing.disable" => {
                Some(self.controller_fencing_disabled)
            }
            _ => None,
        }
    }

    /// The switches turned on (safeguards off), for the start-up warning.
    pub fn off(&self) -> Vec<&'static Switch> {
        SWITCHES.iter().filter(|s| self.get(s.key) == Some(true)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_switch_is_settable_and_readable_and_off_by_default() {
        let mut s = Safeguards::default();
        assert!(s.off().is_empty());
        for sw in SWITCHES {
            assert_eq!(s.get(sw.key), Some(false), "{}", sw.key);
            assert!(s.set(sw.key, true), "{}", sw.key);
            assert_eq!(s.get(sw.key), Some(true), "{}", sw.key);
        }
        assert_eq!(s.off().len(), SWITCHES.len());
        assert!(!s.set("loglab.unsafe.nothing", true));
        assert_eq!(s.get("loglab.unsafe.nothing"), None);
    }
}
