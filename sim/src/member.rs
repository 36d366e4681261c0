//! Consumer-group members in network runs: each member is the `client` crate's group consumer
//! ([`client::Consumer::subscribe`], classic protocol) on its own host (`consumer-N`: a madsim
//! node plus a host on the simulated network), so faults can hit one member — kill (its tasks
//! die, its connections reset), restart (a fresh process: a new member, or the same static
//! member with `group.instance.id`), pause (a stalled process: its heartbeats stop, and when it
//! resumes it acts on what it had before), stall_poll (the application stops between a poll and
//! its commit while the consumer's heartbeats go on: past `max.poll.interval.ms` the consumer
//! leaves the group by itself), partition (cut off from every broker).
//!
//! The member's loop is an application's: poll; record what came back; commit the offsets it
//! just processed for the partitions it still owns (`commitSync` after every poll, no auto
//! commit); repeat. It records into the [`History`](crate::history::History):
//! - an [`Assignment`] after every rebalance notice, with the generation and member id it held;
//! - a [`Commit`] per OffsetCommit with the generation it carried and how it ended;
//! - its polls, with a reset entry where a newly assigned partition starts (a hand-over may
//!   re-deliver records: at-least-once), so per-member monotonicity is checked within an
//!   ownership and the group's coverage across rebalances by the poll-skip checker;
//! - the group's furthest position per partition (liveness is judged per group).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::{ConsumerConfig, ConsumerError, RebalanceEvent, TopicPartition};
use madsim::task::NodeId;
use tokio::sync::watch;

use crate::checkers::LivenessCause;
use crate::history::{Assignment, Commit, Poll, PollKind, Stuck};
use crate::scenario::{ConsumerSpec, GroupSpec, OffsetReset};
use crate::trace::Tracer;
use crate::workload::{lock, Control, SharedHistory};

/// One group member's host: a madsim node running the member, and its name on the fabric.
pub struct MemberHost {
    pub index: u32,
    spec: ConsumerSpec,
    group: GroupSpec,
    /// `k` of `k` members of the scenario entry (names `group.instance.id` for static members).
    ordinal: u32,
    net: net_model::SimNet,
    view: Arc<dyn net_model::Network>,
    cpu: Arc<dyn net_model::CostHook>,
    bootstrap: Vec<String>,
    history: SharedHistory,
    tracer: Tracer,
    control: Arc<Control>,
    node: Mutex<Option<NodeId>>,
    up: AtomicBool,
    /// Set by a `leave` fault: the member closes (LeaveGroup) and its process ends.
    leaving: AtomicBool,
    /// Set by a `stall_poll` fault: the application stops between a poll and its commit. A
    /// watch, so the stalled loop wakes exactly when the stall ends (no polling).
    poll_stalled: watch::Sender<bool>,
    incarnation: AtomicU64,
}

impl MemberHost {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: u32,
        spec: ConsumerSpec,
        group: GroupSpec,
        ordinal: u32,
        net: net_model::SimNet,
        nic: net_model::sim::NicConfig,
        cpu: Arc<dyn net_model::CostHook>,
        bootstrap: Vec<String>,
        history: SharedHistory,
        tracer: Tracer,
        control: Arc<Control>,
    ) -> Arc<Self> {
        let view = net.add_host(&Self::host_name(index), nic);
        Arc::new(Self {
            index,
            spec,
            group,
            ordinal,
            net,
            view,
            cpu,
            bootstrap,
            history,
            tracer,
            control,
            node: Mutex::new(None),
            up: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            poll_stalled: watch::Sender::new(false),
            incarnation: AtomicU64::new(0),
        })
    }

    pub fn host_name(index: u32) -> String {
        format!("consumer-{index}")
    }

    pub fn name(&self) -> String {
        Self::host_name(self.index)
    }

    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        let node = madsim::runtime::Handle::current()
            .create_node()
            .name(self.name())
            .init(move || {
                let me = me.clone();
                async move { me.run().await }
            })
            .build();
        *lock(&self.node) = Some(node.id());
        self.up.store(true, Ordering::SeqCst);
    }

    fn node_id(&self) -> Option<NodeId> {
        *lock(&self.node)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// The process dies: its connections are reset first, as the kernel does for a dead process.
    pub fn kill(&self) {
        if self.up.swap(false, Ordering::SeqCst) {
            self.net.crash(&self.name());
            if let Some(id) = self.node_id() {
                madsim::runtime::Handle::current().kill(id);
            }
        }
    }

    /// A clean shutdown: the member finishes its current step, closes (LeaveGroup) and stops.
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    /// Whether the member is running (not killed, not left).
    pub fn is_running(&self) -> bool {
        self.is_up() && !self.leaving.load(Ordering::SeqCst)
    }

    pub fn restart(&self) {
        self.leaving.store(false, Ordering::SeqCst);
        self.kill();
        self.net.restart(&self.name());
        self.up.store(true, Ordering::SeqCst);
        if let Some(id) = self.node_id() {
            madsim::runtime::Handle::current().restart(id);
        }
    }

    /// Starts or ends a `stall_poll`: the member's loop stops calling poll and commit; the
    /// consumer's own tasks (heartbeats) go on.
    pub fn stall_poll(&self, on: bool) {
        self.poll_stalled.send_replace(on);
    }

    /// Waits while a `stall_poll` is in force; wakes when the fault ends it.
    async fn wait_while_stalled(&self) {
        let mut stalled = self.poll_stalled.subscribe();
        if !*stalled.borrow_and_update() {
            return;
        }
        self.tracer.event("member-stall", &self.name());
        // The sender lives as long as `self`, so this returns only when the stall ends.
        let _ = stalled.wait_for(|on| !*on).await;
        self.tracer.event("member-unstall", &self.name());
    }

    pub fn pause(&self) {
        if let Some(id) = self.node_id() {
            madsim::runtime::Handle::current().pause(id);
        }
    }

    pub fn resume(&self) {
        if let Some(id) = self.node_id() {
            madsim::runtime::Handle::current().resume(id);
        }
    }

    /// Cuts this member off from every broker, both ways.
    pub fn partition_from(&self, brokers: &[String]) {
        for b in brokers {
            self.net.partition(&self.name(), b);
        }
    }

    pub fn heal_from(&self, brokers: &[String]) {
        for b in brokers {
            self.net.heal_between(&self.name(), b);
        }
    }

    fn group(&self) -> String {
        self.spec.group_id.clone().unwrap_or_default()
    }

    fn config(&self) -> ConsumerConfig {
        let g = &self.group;
        let mut cfg = ConsumerConfig {
            bootstrap_servers: self.bootstrap.clone(),
            client_id: self.name(),
            fetch_max_wait_ms: self.spec.fetch_max_wait_ms as i32,
            max_partition_fetch_bytes: self.spec.max_partition_fetch_bytes as i32,
            auto_offset_reset: match self.spec.auto_offset_reset {
                OffsetReset::Earliest => client::AutoOffsetReset::Earliest,
                OffsetReset::Latest => client::AutoOffsetReset::Latest,
            },
            request_timeout_ms: self.spec.request_timeout_ms,
            retry_backoff_ms: self.spec.retry_backoff_ms,
            ..ConsumerConfig::default()
        };
        let mut pairs: Vec<(String, String)> = vec![
            ("group.id".into(), self.group()),
            ("enable.auto.commit".into(), "false".into()),
            ("session.timeout.ms".into(), g.session_timeout_ms.to_string()),
            ("heartbeat.interval.ms".into(), g.heartbeat_interval_ms.to_string()),
            ("max.poll.interval.ms".into(), g.max_poll_interval_ms.to_string()),
            ("partition.assignment.strategy".into(), g.assignment_strategy.clone()),
        ];
        if let Some(prefix) = &g.instance_id_prefix {
            pairs.push(("group.instance.id".into(), format!("{prefix}-{}", self.ordinal)));
        }
        for (k, v) in pairs {
            if let Err(e) = cfg.set(&k, &v) {
                self.tracer.event("member-config-failed", &format!("{} {k}={v}: {e}", self.name()));
            }
        }
        cfg
    }

    fn record_assignment(&self, consumer: &client::Consumer) {
        let md = consumer.group_metadata();
        let (generation, member_id) =
            md.map(|m| (m.generation_id, m.member_id)).unwrap_or((-1, String::new()));
        let tps: Vec<TopicPartition> = consumer.assignment().into_iter().collect();
        let names: Vec<String> = tps.iter().map(|tp| tp.to_string()).collect();
        self.tracer
            .event("assignment", &format!("{} gen={generation} {}", self.name(), names.join(",")));
        lock(&self.history).assignments.push(Assignment {
            member: self.index,
            group: self.group(),
            member_id,
            generation,
            tps,
            at_ns: self.tracer.now_ns(),
        });
    }

    fn advance_group_position(&self, tp: &TopicPartition, pos: i64) {
        let key = (self.group(), tp.clone());
        let mut h = lock(&self.history);
        let e = h.group_positions.entry(key).or_insert(pos);
        *e = (*e).max(pos);
        drop(h);
        let mut positions = lock(&self.control.group_positions);
        let e = positions.entry((self.group(), tp.clone())).or_insert(pos);
        *e = (*e).max(pos);
    }

    /// Records one poll's records per partition (a partition fresh from a rebalance first gets
    /// a reset), and returns the offsets to commit: past the last record of each partition.
    fn record_polls(
        &self,
        parts: &[client::PartitionRecords],
        fresh: &mut BTreeSet<String>,
        last_seen: &mut BTreeMap<String, i64>,
    ) -> BTreeMap<TopicPartition, i64> {
        let who = self.name();
        // Runs per partition, then in the order of their `topic-partition` names.
        let runs = crate::clientload::seen_runs(parts, |p, offset| {
            let tp = format!("{}-{}", p.topic, p.partition);
            lock(&self.history).stuck.push(Stuck::new(
                LivenessCause::Undecodable,
                format!("{who} could not decode {tp}@{offset}: value without an id"),
            ));
        });
        let runs: BTreeMap<String, _> = runs
            .into_iter()
            .filter(|(_, recs)| !recs.is_empty())
            .map(|(r, recs)| (format!("{}-{}", r.topic, r.partition), (r, recs)))
            .collect();
        let at_ns = self.tracer.now_ns();
        let mut offsets: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for (tp, (r, recs)) in runs {
            let id = lock(&self.history).partitions.intern(&r.topic, r.partition);
            let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
                continue;
            };
            if fresh.remove(&tp) {
                let from = last_seen.get(&tp).map_or(-1, |o| o + 1);
                lock(&self.history).polls.push(Poll {
                    consumer: self.index,
                    tp: id,
                    at_ns,
                    kind: PollKind::Reset {
                        from,
                        to: first.0,
                        reason: "partition assigned by a rebalance",
                    },
                });
            }
            self.tracer
                .event("poll", &format!("{who} {tp} {}..={} n={}", first.0, last.0, recs.len()));
            lock(&self.history).polls.push(Poll {
                consumer: self.index,
                tp: id,
                at_ns,
                kind: PollKind::records(recs),
            });
            last_seen.insert(tp, last.0);
            offsets.insert(TopicPartition::new(self.spec.topic.clone(), r.partition), last.0 + 1);
        }
        offsets
    }

    /// Commits `offsets` synchronously and records the commit (and, if accepted, the group's
    /// position).
    async fn commit(
        &self,
        consumer: &mut client::Consumer,
        offsets: BTreeMap<TopicPartition, i64>,
    ) {
        let who = self.name();
        let md = consumer.group_metadata();
        let (generation, member_id) =
            md.map(|m| (m.generation_id, m.member_id)).unwrap_or((-1, String::new()));
        let sent_ns = self.tracer.now_ns();
        let result = consumer.commit_sync(Some(offsets.clone())).await;
        let at_ns = self.tracer.now_ns();
        let list: Vec<(String, i64)> =
            offsets.iter().map(|(tp, o)| (format!("{}-{}", tp.topic, tp.partition), *o)).collect();
        let error = result.as_ref().err().map(|e| e.to_string());
        self.tracer.event(
            "commit",
            &format!("{who} gen={generation} {:?} {}", list, error.as_deref().unwrap_or("ok")),
        );
        if error.is_none() {
            for (tp, o) in &offsets {
                self.advance_group_position(tp, *o);
            }
        }
        lock(&self.history).commits.push(Commit {
            member: self.index,
            group: self.group(),
            member_id,
            generation,
            offsets: offsets.into_iter().collect(),
            sent_ns,
            at_ns,
            error,
        });
    }

    async fn run(self: Arc<Self>) {
        let inc = self.incarnation.fetch_add(1, Ordering::SeqCst) + 1;
        let who = self.name();
        self.tracer.event("member-start", &format!("{who} incarnation={inc}"));
        let backoff = Duration::from_millis(self.spec.retry_backoff_ms.max(1));
        let mut consumer =
            client::Consumer::with_cost_hook(self.config(), self.view.clone(), self.cpu.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RebalanceEvent>();
        consumer.set_rebalance_listener(Box::new(tx));
        if let Err(e) = consumer.subscribe([self.spec.topic.clone()]) {
            lock(&self.history).stuck.push(Stuck::other(format!("{who} could not subscribe: {e}")));
            return;
        }
        // Partitions assigned since their last poll: their first records start a new ownership.
        let mut fresh: BTreeSet<String> = BTreeSet::new();
        let mut last_seen: BTreeMap<String, i64> = BTreeMap::new();
        let poll_timeout = Duration::from_millis(self.spec.fetch_max_wait_ms.max(1));
        while !self.control.stop_consumers.load(Ordering::SeqCst) {
            if self.leaving.load(Ordering::SeqCst) {
                self.tracer.event("member-leave", &who);
                break;
            }
            self.wait_while_stalled().await;
            let polled = consumer.poll_partitions(poll_timeout).await;
            let mut changed = false;
            while let Ok(ev) = rx.try_recv() {
                changed = true;
                if let RebalanceEvent::Assigned(tps) = &ev {
                    fresh.extend(tps.iter().map(|tp| format!("{}-{}", tp.topic, tp.partition)));
                }
            }
            if changed {
                self.record_assignment(&consumer);
            }
            let records = match polled {
                Ok(r) => r,
                Err(ConsumerError::Corrupt { topic, partition, offset, reason }) => {
                    self.tracer.event(
                        "decode-failed",
                        &format!("{who} {topic}-{partition}@{offset} {reason}"),
                    );
                    lock(&self.history).stuck.push(Stuck::new(
                        LivenessCause::Undecodable,
                        format!("{who} could not decode {topic}-{partition}@{offset}: {reason}"),
                    ));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                Err(e) => {
                    self.tracer.event("poll-error", &format!("{who} {e}"));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            if records.is_empty() {
                continue;
            }
            let mut offsets = self.record_polls(&records, &mut fresh, &mut last_seen);
            // Commit what was processed, for the partitions still owned (a member that lost a
            // partition must not commit it: another member may be ahead already).
            let owned: BTreeSet<TopicPartition> = consumer.assignment().into_iter().collect();
            offsets.retain(|tp, _| owned.contains(tp));
            // A stalled application processes these records before it commits them.
            self.wait_while_stalled().await;
            if offsets.is_empty() {
                continue;
            }
            self.commit(&mut consumer, offsets).await;
        }
        consumer.close().await;
    }
}
