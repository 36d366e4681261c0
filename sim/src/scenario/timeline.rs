//! Lowering `faults` and `nemesis` into the run's timeline: targets (brokers, group members,
//! partition leaders and followers, the controller), each action's options, rolling restarts.

use serde_json::Value;

use super::lower::NETWORK_ONLY;
use super::raw::{RawFault, RawNemesis, RawScenario};
use super::units::{range, req};
use super::{
    invalid, join, request_faults, Direction, DiskErrorKind, Fault, FaultAction, Mode, Peers,
    Target, TopicSpec, R,
};
use crate::nemesis::{NemesisKind, NemesisSpec, NEMESIS_COUNT_MAX};

/// The action keys of a `faults` entry (exactly one per entry).
pub(super) const ACTIONS: &[&str] = &[
    "kill",
    "restart",
    "power_loss",
    "pause",
    "leave",
    "stall_poll",
    "slow_disk",
    "disk_error",
    "drop_caches",
    "corrupt_sector",
    "partition",
    "slow_nic",
    "rolling_restart",
];

/// How long after `duration_s` a `restart` may come, at most (the nemesis' restarts of faults
/// drawn near the end come up to `nemesis.max` after it).
pub const RESTART_AFTER_END_MAX_S: u64 = 600;

/// What fault targets and times are checked against.
pub(super) struct Ctx<'a> {
    pub brokers: u32,
    /// Disks per broker (a disk fault's `disk` is one of them).
    pub disks: u32,
    /// Per consumer (consumer-N): whether it is a group member.
    pub members: &'a [bool],
    pub topics: &'a [TopicSpec],
    pub duration_s: u64,
    pub mode: Mode,
}

/// `faults` and `request_faults`: every entry (a rolling restart is several), in time order
/// (stable: file order on ties, the file's `faults` before request faults).
pub(super) fn faults(raw: &RawScenario, ctx: &Ctx) -> R<Vec<Fault>> {
    let mut faults = Vec::new();
    for (i, f) in raw.faults.get().map_or(&[][..], Vec::as_slice).iter().enumerate() {
        faults.extend(fault(f, &format!("faults[{i}]"), ctx)?);
    }
    faults.sort_by_key(|f| f.at_ns);
    let requests = raw.request_faults.get().map(Vec::as_slice);
    faults.extend(request_faults::request_faults(requests, ctx.brokers, ctx.duration_s)?);
    faults.sort_by_key(|f| f.at_ns);
    Ok(faults)
}

/// The keys each action takes besides `at` and itself.
fn options(action: &str) -> &'static [&'static str] {
    match action {
        "pause" | "stall_poll" => &["for"],
        "slow_disk" => &["factor", "for"],
        "disk_error" => &["kind", "probability", "times", "path", "for"],
        "corrupt_sector" => &["path"],
        "partition" => &["for", "peers", "direction", "port"],
        "rolling_restart" => &["every", "down"],
        "slow_nic" => &["bps", "for"],
        _ => &[],
    }
}

fn fault(f: &RawFault, p: &str, ctx: &Ctx) -> R<Vec<Fault>> {
    let actions: Vec<&str> = ACTIONS.iter().copied().filter(|a| f.target(a).is_some()).collect();
    let [action] = actions[..] else {
        return Err(invalid(p, format!("expected exactly one of: {}", ACTIONS.join(", "))));
    };
    let allowed: Vec<&str> =
        ["at", action].into_iter().chain(options(action).iter().copied()).collect();
    if let Some(k) = f.keys().into_iter().find(|k| !allowed.contains(k)) {
        let msg = format!("unknown key (expected one of: {})", allowed.join(", "));
        return Err(invalid(&join(p, k), msg));
    }
    let at_ns = req(&f.at, p, "at")?.0;
    // A restart may come after the end (while the run settles), as the nemesis' restarts of
    // faults drawn near the end do: `cargo simulate shrink` writes those out as they ran.
    let end_ns = ctx.duration_s * 1_000_000_000;
    let late_max_ns = end_ns + RESTART_AFTER_END_MAX_S * 1_000_000_000;
    if at_ns >= end_ns && (action != "restart" || at_ns >= late_max_ns) {
        let msg = format!("must be before the end of the run ({}s; a restart up to {RESTART_AFTER_END_MAX_S}s after it)", ctx.duration_s);
        return Err(invalid(&join(p, "at"), msg));
    }
    let target_v = f.target(action).unwrap_or(&Value::Null);
    if action == "rolling_restart" {
        return rolling_restart(f, target_v, p, at_ns, ctx);
    }
    let action_p = join(p, action);
    if let Some(s) = target_v.as_str().filter(|s| s.starts_with("followers:")) {
        let mut out = Vec::new();
        for t in followers_targets(s, &action_p, ctx)? {
            out.extend(fault_on(f, p, action, t, at_ns, ctx)?);
        }
        return Ok(out);
    }
    let target = target(target_v, &action_p, ctx)?;
    fault_on(f, p, action, target, at_ns, ctx)
}

/// One fault entry's action on one target.
fn fault_on(
    f: &RawFault,
    p: &str,
    action: &str,
    target: Target,
    at_ns: u64,
    ctx: &Ctx,
) -> R<Vec<Fault>> {
    let action_p = join(p, action);
    if matches!(target, Target::Consumer(_))
        && !["kill", "restart", "pause", "partition", "leave", "stall_poll"].contains(&action)
    {
        return Err(invalid(&action_p, "a group member can be killed, restarted, paused, partitioned or leave (it has no disk)"));
    }
    if action == "leave" && !matches!(target, Target::Consumer(_)) {
        return Err(invalid(&action_p, "only a group member (consumer-N) can leave"));
    }
    if action == "stall_poll" && !matches!(target, Target::Consumer(_)) {
        return Err(invalid(
            &action_p,
            "only a group member (consumer-N) has a poll loop to stall",
        ));
    }
    let for_ns = f.for_.get().map(|d| d.0);
    let action_v = fault_action(f, p, action, for_ns, ctx)?;
    let label = label(action, target, &action_v, for_ns);
    Ok(vec![Fault { at_ns, target, action: action_v, for_ns, label }])
}

/// The action a fault entry names, with its options.
fn fault_action(
    f: &RawFault,
    p: &str,
    action: &str,
    for_ns: Option<u64>,
    ctx: &Ctx,
) -> R<FaultAction> {
    let network_only = || {
        if ctx.mode == Mode::Network {
            Ok(())
        } else {
            Err(invalid(&join(p, action), NETWORK_ONLY))
        }
    };
    Ok(match action {
        "kill" => FaultAction::Kill,
        "restart" => FaultAction::Restart,
        "leave" => FaultAction::Leave,
        "power_loss" => FaultAction::PowerLoss,
        "pause" if for_ns.is_none() => return Err(invalid(&join(p, "for"), "required for pause")),
        "pause" => FaultAction::Pause,
        "stall_poll" if for_ns.is_none() => {
            return Err(invalid(&join(p, "for"), "required for stall_poll"))
        }
        "stall_poll" => FaultAction::StallPoll,
        "slow_disk" => FaultAction::SlowDisk {
            factor: range(&f.factor, p, "factor", 10, 1, 1_000_000)? as u32,
            disk: disk(f, p, ctx)?,
        },
        "disk_error" => disk_error(f, p, ctx)?,
        "drop_caches" => FaultAction::DropCaches,
        "partition" => {
            network_only()?;
            partition(f, p)?
        }
        "slow_nic" => {
            network_only()?;
            FaultAction::SlowNic { bps: req(&f.bps, p, "bps")?.0 }
        }
        "corrupt_sector" => {
            FaultAction::CorruptSector { path: f.path.get().cloned(), disk: disk(f, p, ctx)? }
        }
        _ => unreachable!("action list is closed"),
    })
}

/// A disk fault's `disk` (JBOD): one of the broker's disks, 0-based; `None` (not given): for
/// `slow_disk` every disk, for the others the first disk's data directory.
fn disk(f: &RawFault, p: &str, ctx: &Ctx) -> R<Option<u32>> {
    match f.disk.get() {
        None => Ok(None),
        Some(_) => Ok(Some(range(&f.disk, p, "disk", 0, 0, u64::from(ctx.disks) - 1)? as u32)),
    }
}

fn disk_error(f: &RawFault, p: &str, ctx: &Ctx) -> R<FaultAction> {
    let kind = match req(&f.kind, p, "kind")?.as_str() {
        "read" => DiskErrorKind::Read,
        "write" => DiskErrorKind::Write,
        "sync" => DiskErrorKind::Sync,
        "no_space" => DiskErrorKind::NoSpace,
        _ => return Err(invalid(&join(p, "kind"), "expected one of read, write, sync, no_space")),
    };
    let times = match f.times.get() {
        None => None,
        Some(_) => Some(range(&f.times, p, "times", 0, 1, u64::MAX)?),
    };
    let probability = f.probability.get().map_or(1.0, |x| x.0);
    let (path, disk) = (f.path.get().cloned(), disk(f, p, ctx)?);
    Ok(FaultAction::DiskError { kind, probability, times, path, disk })
}

fn partition(f: &RawFault, p: &str) -> R<FaultAction> {
    if f.peers.0.is_none() && f.direction.0.is_none() && f.port.0.is_none() {
        return Ok(FaultAction::Partition);
    }
    let peers = match f.peers.get().map_or("all", String::as_str) {
        "all" => Peers::All,
        "brokers" => Peers::Brokers,
        "clients" => Peers::Clients,
        _ => return Err(invalid(&join(p, "peers"), "expected one of all, brokers, clients")),
    };
    let direction = match f.direction.get().map_or("both", String::as_str) {
        "both" => Direction::Both,
        "in" => Direction::In,
        "out" => Direction::Out,
        _ => return Err(invalid(&join(p, "direction"), "expected one of both, in, out")),
    };
    let port = match f.port.get() {
        None => None,
        Some(_) => Some(range(&f.port, p, "port", 0, 1, 65_535)? as u16),
    };
    if port.is_some() && direction != Direction::Both {
        return Err(invalid(
            &join(p, "direction"),
            "a port-level partition cuts its connections both ways",
        ));
    }
    Ok(FaultAction::Cut { peers, direction, port })
}

/// A fault as the trace and the plots name it: `slow_disk broker-0 x10 for 1500ms`.
fn label(action: &str, target: Target, action_v: &FaultAction, for_ns: Option<u64>) -> String {
    let mut label = format!("{action} {}", target.name());
    match action_v {
        FaultAction::SlowDisk { factor, .. } => label.push_str(&format!(" x{factor}")),
        FaultAction::SlowNic { bps } => label.push_str(&format!(" {bps}bps")),
        FaultAction::DiskError { kind, probability, .. } => {
            label.push_str(&format!(" {kind:?} p={probability}"))
        }
        FaultAction::Cut { peers, direction, port } => {
            label.push_str(&format!(" peers={peers:?} direction={direction:?}").to_lowercase());
            if let Some(p) = port {
                label.push_str(&format!(" port={p}"));
            }
        }
        _ => {}
    }
    if let Some(f) = for_ns {
        label.push_str(&format!(" for {}ms", f / 1_000_000));
    }
    label
}

/// `rolling_restart`: kill and restart every broker in turn: broker-i dies at `at + i*every`,
/// comes back `down` later (a process crash; the page cache survives).
fn rolling_restart(f: &RawFault, v: &Value, p: &str, at_ns: u64, ctx: &Ctx) -> R<Vec<Fault>> {
    if v.as_str() != Some("all") {
        return Err(invalid(
            &join(p, "rolling_restart"),
            "expected \"all\" (every broker in turn)",
        ));
    }
    let every = f.every.get().map_or(5_000_000_000, |d| d.0);
    let down = f.down.get().map_or(1_000_000_000, |d| d.0);
    if down >= every {
        return Err(invalid(&join(p, "down"), "must be shorter than every"));
    }
    let (brokers, duration_s) = (ctx.brokers, ctx.duration_s);
    let mut out = Vec::new();
    for b in 0..brokers {
        let t = at_ns + u64::from(b) * every;
        if t + down >= duration_s * 1_000_000_000 {
            return Err(invalid(&join(p, "every"), format!("the rolling restart of {brokers} brokers must end before the end of the run ({duration_s}s)")));
        }
        let target = Target::Broker(b);
        let fault = |at_ns, action, what| Fault {
            at_ns,
            target,
            action,
            for_ns: None,
            label: format!("rolling_restart {what} broker-{b}"),
        };
        out.push(fault(t, FaultAction::Kill, "kill"));
        out.push(fault(t + down, FaultAction::Restart, "restart"));
    }
    Ok(out)
}

/// "broker-N" within the cluster.
pub(super) fn broker_ref(v: &Value, path: &str, brokers: u32) -> R<u32> {
    let bad = || invalid(path, "expected a broker like \"broker-0\"");
    let s = v.as_str().ok_or_else(bad)?;
    let n: u32 = s.strip_prefix("broker-").and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    if n >= brokers {
        return Err(invalid(path, format!("no {s}: the cluster has {brokers} broker(s)")));
    }
    Ok(n)
}

/// `controller`, `leader:TOPIC/P`, `follower:TOPIC/P` (cluster runs only).
fn dynamic_target(s: &str, path: &str, ctx: &Ctx) -> R<Target> {
    cluster_only(s, path, ctx)?;
    if s == "controller" {
        return Ok(Target::Controller);
    }
    let (kind, tp) = s.split_once(':').unwrap_or((s, ""));
    let (name, p, _) = topic_partition(kind, tp, path, ctx)?;
    Ok(if kind == "leader" { Target::Leader(name, p) } else { Target::Follower(name, p) })
}

fn cluster_only(s: &str, path: &str, ctx: &Ctx) -> R<()> {
    if ctx.brokers < 2 {
        return Err(invalid(path, format!("{s}: only in a cluster (cluster.brokers > 1)")));
    }
    Ok(())
}

/// `TOPIC/P` of a `kind:TOPIC/P` target: the topic's name (for the run's lifetime), the
/// partition and the topic's replication factor.
fn topic_partition(kind: &str, tp: &str, path: &str, ctx: &Ctx) -> R<(&'static str, i32, i32)> {
    let bad =
        || invalid(path, format!("expected {kind}:TOPIC/PARTITION naming a topic of the scenario"));
    let (t, p) = tp.rsplit_once('/').ok_or_else(bad)?;
    let p: i32 = p.parse().map_err(|_| bad())?;
    let topic = ctx.topics.iter().find(|x| x.name == t).ok_or_else(bad)?;
    if p < 0 || p >= topic.partitions {
        return Err(bad());
    }
    let name: &'static str = Box::leak(t.to_string().into_boxed_str());
    Ok((name, p, topic.replication_factor))
}

/// `followers:TOPIC/P`: every follower of the partition at once, one target per follower rank
/// (replication factor - 1 of them; see [`Target::FollowerRank`]); `followers:TOPIC/P#J` is rank
/// J alone (how the trace names each, and how `shrink` writes them out).
fn followers_targets(s: &str, path: &str, ctx: &Ctx) -> R<Vec<Target>> {
    cluster_only(s, path, ctx)?;
    let spec = s.strip_prefix("followers:").unwrap_or("");
    let (tp, rank) = match spec.split_once('#') {
        Some((tp, j)) => {
            let bad = || invalid(path, format!("{s}: expected a follower rank after #"));
            (tp, Some(j.parse::<u8>().map_err(|_| bad())?))
        }
        None => (spec, None),
    };
    let (name, p, rf) = topic_partition("followers", tp, path, ctx)?;
    if rf < 2 {
        let why = format!("{s}: the topic has replication factor {rf}, so no followers");
        return Err(invalid(path, why));
    }
    let ranks = u8::try_from(rf - 1).map_err(|_| invalid(path, "too many replicas"))?;
    match rank {
        Some(j) if j >= ranks => {
            Err(invalid(path, format!("{s}: the topic has {ranks} follower(s), ranks 0..{ranks}")))
        }
        Some(j) => Ok(vec![Target::FollowerRank(name, p, j)]),
        None => Ok((0..ranks).map(|j| Target::FollowerRank(name, p, j)).collect()),
    }
}

fn target(v: &Value, path: &str, ctx: &Ctx) -> R<Target> {
    if let Some(s) = v.as_str() {
        if s == "controller" || s.starts_with("leader:") || s.starts_with("follower:") {
            return dynamic_target(s, path, ctx);
        }
    }
    if let Some(n) = v.as_str().and_then(|s| s.strip_prefix("consumer-")) {
        let n: u32 = n.parse().map_err(|_| {
            invalid(
                path,
                "expected a broker like \"broker-0\" or a group member like \"consumer-0\"",
            )
        })?;
        return match ctx.members.get(n as usize) {
            Some(true) => Ok(Target::Consumer(n)),
            Some(false) => Err(invalid(path, format!("consumer-{n} has no group.id: faults hit group members only (they run on their own hosts)"))),
            None => Err(invalid(path, format!("no consumer-{n}: the workload has {} consumer(s)", ctx.members.len()))),
        };
    }
    broker_ref(v, path, ctx.brokers).map(Target::Broker)
}

/// `nemesis.faults`: the kinds of fault to draw (each once).
fn nemesis_kinds(n: &RawNemesis, mode: Mode) -> R<Vec<NemesisKind>> {
    let names = n
        .faults
        .get()
        .ok_or_else(|| invalid("nemesis.faults", "required: the kinds of fault to draw"))?;
    let mut kinds = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let p = format!("nemesis.faults[{i}]");
        let k = NemesisKind::from_name(name).ok_or_else(|| {
            let all: Vec<&str> = NemesisKind::ALL.iter().map(|(n, _)| *n).collect();
            invalid(&p, format!("unknown fault kind (expected one of: {})", all.join(", ")))
        })?;
        if matches!(k, NemesisKind::Partition | NemesisKind::SlowNic) && mode != Mode::Network {
            return Err(invalid(&p, "only with cluster.mode = \"network\""));
        }
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    if kinds.is_empty() {
        return Err(invalid("nemesis.faults", "name at least one kind of fault"));
    }
    Ok(kinds)
}

/// `nemesis.targets`: brokers and group members (default: every one).
fn nemesis_targets(n: &RawNemesis, ctx: &Ctx) -> R<Vec<Target>> {
    let Some(names) = n.targets.get() else {
        let members = ctx.members.iter().enumerate().filter(|(_, m)| **m);
        let consumers = members.map(|(i, _)| Target::Consumer(i as u32));
        return Ok((0..ctx.brokers).map(Target::Broker).chain(consumers).collect());
    };
    let mut targets = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let p = format!("nemesis.targets[{i}]");
        let t = target(&Value::String(name.clone()), &p, ctx)?;
        if t.is_dynamic() {
            return Err(invalid(
                &p,
                "the nemesis draws among brokers (broker-N) and group members (consumer-N)",
            ));
        }
        targets.push(t);
    }
    Ok(targets)
}

pub(super) fn nemesis(n: &RawNemesis, ctx: &Ctx) -> R<NemesisSpec> {
    let kinds = nemesis_kinds(n, ctx.mode)?;
    let targets = nemesis_targets(n, ctx)?;
    for k in &kinds {
        if !targets.iter().any(|t| k.applies_to(*t)) {
            let msg = format!("{} applies to none of the targets", k.name());
            return Err(invalid("nemesis.faults", msg));
        }
    }
    let duration_s = ctx.duration_s;
    let end_ns = duration_s * 1_000_000_000;
    let from_ns = n.from.get().map_or(1_000_000_000.min(end_ns / 2), |d| d.0);
    let until_default = end_ns.saturating_sub(1_000_000_000).max(from_ns + 1);
    let until_ns = n.until.get().map_or(until_default, |d| d.0);
    if from_ns >= until_ns || until_ns > end_ns {
        return Err(invalid(
            "nemesis.until",
            format!(
                "the window [from, until) must be non-empty and end by duration_s ({duration_s}s)"
            ),
        ));
    }
    let min_ns = n.min.get().map_or(1_000_000_000, |d| d.0);
    let max_ns = n.max.get().map_or(5_000_000_000, |d| d.0);
    if min_ns > max_ns || min_ns == 0 {
        return Err(invalid("nemesis.min", "must be positive and at most max"));
    }
    let request_faults = request_faults::nemesis_rules(n.request_faults.get(), &kinds, min_ns)?;
    let count_max = u64::from(NEMESIS_COUNT_MAX);
    Ok(NemesisSpec {
        kinds,
        targets,
        count: range(&n.count, "nemesis", "count", 5, 0, count_max)? as u32,
        from_ns,
        until_ns,
        min_ns,
        max_ns,
        slow_disk_factor: range(
            &n.slow_disk_factor,
            "nemesis",
            "slow_disk.factor",
            10,
            1,
            1_000_000,
        )? as u32,
        slow_nic_bps: n.slow_nic_bps.get().map_or(100_000_000, |b| b.0),
        minority: n.minority.get().copied().unwrap_or(false),
        brokers: ctx.brokers,
        request_faults,
    })
}
