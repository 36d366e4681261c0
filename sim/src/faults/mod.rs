//! Faults: what a scenario (or the nemesis) does to the run, as data — one [`Fault`] type (when,
//! on what, which [`FaultAction`], for how long) that scenario files parse into and the nemesis
//! draws. Pure and runtime-free; applying and undoing a fault on the simulated world is
//! [`driver`] (simulated builds only), the one place that knows what each action does.
//!
//! Promises: every action that holds a state (pause, partition, slow disk or NIC, disk error,
//! request fault) has an undo; kill, power loss and leave end with a restart; drop_caches and corrupt_sector
//! are instants with nothing to undo.

#[cfg(madsim)]
pub mod driver;
#[cfg(madsim)]
pub mod requests;

pub use broker::faults::RuleSpec;

/// What a fault hits: a broker host, or a group member's host (`consumer-N`, N counting every
/// consumer of the workload in file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Broker(u32),
    Consumer(u32),
    /// Cluster runs: the current leader of a partition, resolved when the fault starts (from the
    /// newest metadata any live broker holds). A `restart` of it restarts the broker the previous
    /// fault on the same target hit.
    Leader(&'static str, i32),
    /// Cluster runs: a follower of the partition (the first replica, in assignment order, that is
    /// not the leader, is up and is not the active controller — or, failing that, any live
    /// follower), resolved when the fault starts.
    Follower(&'static str, i32),
    /// Cluster runs: the active controller (the Raft leader of the metadata quorum).
    Controller,
    /// Cluster runs, from `followers:TOPIC/P` (every follower at once, one fault per rank): the
    /// rank-th (0-based) replica, in assignment order, that is not the leader when the fault
    /// starts; none if that replica is down. A `restart` restarts the broker the previous fault
    /// on the same rank hit.
    FollowerRank(&'static str, i32, u8),
}

impl Target {
    pub fn name(self) -> String {
        match self {
            Target::Broker(n) => format!("broker-{n}"),
            Target::Consumer(n) => format!("consumer-{n}"),
            Target::Leader(t, p) => format!("leader:{t}/{p}"),
            Target::Follower(t, p) => format!("follower:{t}/{p}"),
            Target::Controller => "controller".to_string(),
            Target::FollowerRank(t, p, j) => format!("followers:{t}/{p}#{j}"),
        }
    }

    /// Whether the target is resolved to a broker at fault time.
    pub fn is_dynamic(self) -> bool {
        matches!(
            self,
            Target::Leader(..)
                | Target::Follower(..)
                | Target::FollowerRank(..)
                | Target::Controller
        )
    }
}

/// Cluster runs: which hosts a `partition` fault cuts its target off from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peers {
    /// Every other host: brokers, the client host, group members.
    All,
    /// The other brokers only (clients still reach the target).
    Brokers,
    /// The client host and group members only.
    Clients,
}

/// Which direction of traffic a `partition` fault blocks, seen from its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Both,
    /// Peers → target is blocked (the target sends, nothing reaches it).
    In,
    /// Target → peers is blocked (the target hears, nothing it sends arrives).
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskErrorKind {
    Read,
    Write,
    Sync,
    NoSpace,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Process crash: the page cache survives. The broker stays down until `restart`.
    Kill,
    Restart,
    /// Power cut: dirty pages are lost. The broker stays down until `restart`.
    PowerLoss,
    /// The process stalls (a long GC pause) for `for`.
    Pause,
    /// A group member shuts down cleanly: it sends LeaveGroup and stops (until `restart`).
    Leave,
    /// A group member's application stalls between a poll and its commit (slow processing) for
    /// `for`, while the consumer's background heartbeats go on: past `max.poll.interval.ms` the
    /// consumer leaves the group by itself (KIP-62), and the commit it makes when the stall ends
    /// carries a generation the coordinator has moved past.
    StallPoll,
    /// `disk`: one of the broker's disks (JBOD); `None`: all of them.
    SlowDisk {
        factor: u32,
        disk: Option<u32>,
    },
    /// `path` inside the data directory on `disk` (JBOD; `None`: the first).
    DiskError {
        kind: DiskErrorKind,
        probability: f64,
        times: Option<u64>,
        path: Option<String>,
        disk: Option<u32>,
    },
    DropCaches,
    CorruptSector {
        path: Option<String>,
        disk: Option<u32>,
    },
    /// Network runs: the broker's host is cut off from every other host, both ways, for `for`
    /// (or until the run heals). Open streams stall (bytes wait in send buffers), new connects
    /// time out; nothing is dropped.
    Partition,
    /// Network runs: the broker host's NIC drops to `bps` each way for `for` (a degraded link,
    /// a duplex mismatch), then back to `cluster.host.nic`.
    SlowNic {
        bps: u64,
    },
    /// Cluster runs: a partition with options — from which peers, which direction, or only the
    /// connections to one port (`port`: connections from the peers to the target's listener on
    /// that port, and from the target to the peers' listeners on it, carry nothing either way).
    Cut {
        peers: Peers,
        direction: Direction,
        port: Option<u16>,
    },
    /// A request-fault rule (`request_faults`, the `request_fault` nemesis) installed on the
    /// broker's own `FaultControl` at `at`; after `for` it no longer fires and its counters are
    /// read (the broker's `matched` / `fired`). Boxed: a rule is large beside the other actions.
    Request {
        rule: Box<RuleSpec>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub at_ns: u64,
    pub target: Target,
    pub action: FaultAction,
    /// Undone after this long (pause, slow_disk, disk_error); `None` = until the run heals.
    pub for_ns: Option<u64>,
    /// The fault as written (for the trace and the plots).
    pub label: String,
}

impl DiskErrorKind {
    /// The disk model's fault this error injects.
    pub fn model(self) -> disk_model::sim::FaultKind {
        use disk_model::sim::FaultKind;
        match self {
            DiskErrorKind::Read => FaultKind::ReadError,
            DiskErrorKind::Write => FaultKind::WriteError,
            DiskErrorKind::Sync => FaultKind::SyncError,
            DiskErrorKind::NoSpace => FaultKind::NoSpace,
        }
    }
}

/// A rule in a few words, for labels and the trace: `Produce error=NOT_LEADER_OR_FOLLOWER
/// times=3` (the whole rule is in `summary.json`).
pub fn rule_brief(r: &RuleSpec) -> String {
    let mut s = r.api.clone();
    if let Some(t) = &r.topic {
        s.push_str(&format!(" topic={t}"));
    }
    if let Some(p) = r.partition {
        s.push_str(&format!(" partition={p}"));
    }
    if let Some(g) = &r.group {
        s.push_str(&format!(" group={g}"));
    }
    match (&r.error, r.delay_ms, r.throttle_ms, r.disconnect) {
        (Some(e), ..) if r.after_handling => s.push_str(&format!(" error={e} after_handling")),
        (Some(e), ..) => s.push_str(&format!(" error={e}")),
        (_, Some(ms), ..) => s.push_str(&format!(" delay_ms={ms}")),
        (_, _, Some(ms), _) => s.push_str(&format!(" throttle_ms={ms}")),
        (.., Some(w)) => s.push_str(&format!(" disconnect={w:?}").to_lowercase()),
        _ => {}
    }
    if r.once {
        s.push_str(" once");
    }
    if let Some(n) = r.times {
        s.push_str(&format!(" times={n}"));
    }
    if let Some(n) = r.after {
        s.push_str(&format!(" after={n}"));
    }
    if let Some(p) = r.probability {
        s.push_str(&format!(" p={p}"));
    }
    s
}

/// The rule as installed for a fault that lasts `for_ns`: its window (`until_ms`, counted from
/// installation by the broker's clock) ends when `for` does, so the broker itself stops firing
/// it then; without `for` the rule as written.
pub fn windowed(rule: &RuleSpec, for_ns: Option<u64>) -> RuleSpec {
    let mut r = rule.clone();
    if let Some(ns) = for_ns {
        let for_ms = (ns / 1_000_000).max(1);
        r.until_ms = Some(r.until_ms.map_or(for_ms, |u| u.min(for_ms)));
    }
    r
}

impl FaultAction {
    /// Instants: applied once, nothing stays in force to undo.
    pub fn is_instant(&self) -> bool {
        matches!(self, FaultAction::DropCaches | FaultAction::CorruptSector { .. })
    }

    /// Ended by a restart of the target rather than by an undo (kill, power loss, leave).
    pub fn ends_with_restart(&self) -> bool {
        matches!(self, FaultAction::Kill | FaultAction::PowerLoss | FaultAction::Leave)
    }
}
