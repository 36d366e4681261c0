//! Coverage: which kinds of fault hit which roles, and how often — so a green sweep says what it
//! exercised (a thousand seeds that only ever paused followers prove little about leaders).
//!
//! A run's table is derived after the run from what it already recorded: each fault the driver
//! applied and the broker it resolved to, and the roles that broker held when the fault started
//! — partition leader or follower (the cluster observer's leader/ISR timeline, committed
//! metadata sampled every 250 ms), the active controller (the observer's controller timeline),
//! the coordinator of a consumer group (the leader of the group's `__consumer_offsets`
//! partition, sampled with the rest). A fault on a group member's host counts as `member`. In a
//! single-broker run broker-0 leads every partition and coordinates every group.
//!
//! A fault counts once per role its broker held (a broker leading one partition and following
//! another counts as leader and as follower), and once in `faults`; a fault whose dynamic target
//! resolved to no broker counts in `unresolved`. Restarts are the end of a fault, not a fault.
//! Pure: built and tested in both worlds.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::faults::{Fault, FaultAction, Target};

/// The roles of the table, in its column order.
pub const ROLES: &[&str] =
    &["leader", "follower", "active controller", "group coordinator", "member"];

/// Who held which role over a run (times in simulated seconds, each list in time order).
#[derive(Debug, Default, Clone)]
pub struct Roles {
    /// Per partition: (t_s, leader, replicas) as committed.
    pub partitions: BTreeMap<String, Vec<(f64, i32, Vec<i32>)>>,
    /// The active controller: (t_s, broker or -1 for none).
    pub controllers: Vec<(f64, i64)>,
    /// Per consumer group: (t_s, coordinator broker or -1 for none).
    pub coordinators: BTreeMap<String, Vec<(f64, i32)>>,
}

/// The latest entry at or before `t_s`.
fn at<T>(line: &[(f64, T)], t_s: f64) -> Option<&T> {
    line.iter().rev().find(|(t, _)| *t <= t_s).map(|(_, v)| v)
}

impl Roles {
    /// A single broker's run: broker-0 leads every partition and coordinates every group from
    /// the start (it runs no controller quorum).
    pub fn single_broker(partitions: &[String], groups: &[String]) -> Roles {
        Roles {
            partitions: partitions.iter().map(|p| (p.clone(), vec![(0.0, 0, vec![0])])).collect(),
            controllers: Vec::new(),
            coordinators: groups.iter().map(|g| (g.clone(), vec![(0.0, 0)])).collect(),
        }
    }

    /// The roles broker `b` held at `t_s` (each at most once).
    pub fn of(&self, b: u32, t_s: f64) -> Vec<&'static str> {
        let b = b as i32;
        let mut out = Vec::new();
        let states = || self.partitions.values().filter_map(|line| at_state(line, t_s));
        if states().any(|(leader, _)| leader == b) {
            out.push("leader");
        }
        if states().any(|(leader, replicas)| leader != b && replicas.contains(&b)) {
            out.push("follower");
        }
        if at(&self.controllers, t_s) == Some(&i64::from(b)) {
            out.push("active controller");
        }
        if self.coordinators.values().any(|line| at(line, t_s) == Some(&b)) {
            out.push("group coordinator");
        }
        out
    }
}

fn at_state(line: &[(f64, i32, Vec<i32>)], t_s: f64) -> Option<(i32, &[i32])> {
    line.iter().rev().find(|(t, ..)| *t <= t_s).map(|(_, l, r)| (*l, r.as_slice()))
}

/// A fault's kind as the table names it (the nemesis' names; `None` for a restart).
pub fn kind_name(a: &FaultAction) -> Option<&'static str> {
    Some(match a {
        FaultAction::Restart => return None,
        FaultAction::Kill => "kill",
        FaultAction::PowerLoss => "power_loss",
        FaultAction::Pause => "pause",
        FaultAction::Leave => "leave",
        FaultAction::StallPoll => "stall_poll",
        FaultAction::SlowDisk { .. } => "slow_disk",
        FaultAction::DiskError { .. } => "disk_error",
        FaultAction::DropCaches => "drop_caches",
        FaultAction::CorruptSector { .. } => "corrupt_sector",
        FaultAction::Partition | FaultAction::Cut { .. } => "partition",
        FaultAction::SlowNic { .. } => "slow_nic",
        FaultAction::Request { .. } => "request_fault",
    })
}

/// Counts per fault kind: `faults`, `unresolved` and one count per role.
pub type Table = BTreeMap<String, BTreeMap<String, u64>>;

/// One run's table: `faults` as the run executed them (file and nemesis), `resolved` the broker
/// each broker fault hit (by index into `faults`).
pub fn of_run(faults: &[Fault], resolved: &BTreeMap<usize, u32>, roles: &Roles) -> Table {
    let mut table = Table::new();
    for (i, f) in faults.iter().enumerate() {
        let Some(kind) = kind_name(&f.action) else { continue };
        let row = table.entry(kind.to_string()).or_insert_with(empty_row);
        *row.entry("faults".into()).or_default() += 1;
        let hit: Vec<&str> = match (f.target, resolved.get(&i)) {
            (Target::Consumer(_), _) => vec!["member"],
            (_, Some(&b)) => roles.of(b, f.at_ns as f64 / 1e9),
            (_, None) => {
                *row.entry("unresolved".into()).or_default() += 1;
                continue;
            }
        };
        for r in hit {
            *row.entry(r.to_string()).or_default() += 1;
        }
    }
    table
}

fn empty_row() -> BTreeMap<String, u64> {
    ["faults", "unresolved"].iter().chain(ROLES).map(|k| (k.to_string(), 0)).collect()
}

/// Adds `other` into `into` (a sweep sums its runs' tables).
pub fn add(into: &mut Table, other: &Table) {
    for (kind, row) in other {
        let mine = into.entry(kind.clone()).or_insert_with(empty_row);
        for (k, n) in row {
            *mine.entry(k.clone()).or_default() += n;
        }
    }
}

/// A table from its JSON (`coverage.kinds` of a summary or a sweep); `None` if malformed.
pub fn from_json(v: &Value) -> Option<Table> {
    serde_json::from_value(v.clone()).ok()
}

/// The `coverage` section of `summary.json` and `sweep.json`.
pub fn to_json(table: &Table, runs: u64) -> Value {
    json!({
        "roles": ROLES,
        "kinds": table,
        "runs": runs,
        "faults": table.values().map(|r| r.get("faults").copied().unwrap_or(0)).sum::<u64>(),
        "note": "per fault kind: faults applied, faults whose target resolved to no broker (unresolved), and per role how many faults hit a broker holding it when the fault started (a broker can hold several roles; restarts not counted). Roles from the run's own records: the leader/ISR and controller timelines (committed metadata sampled every 250 ms) and each group's coordinator (leader of its __consumer_offsets partition); a fault on a group member's host is `member`.",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(at_s: f64, target: Target, action: FaultAction) -> Fault {
        Fault { at_ns: (at_s * 1e9) as u64, target, action, for_ns: None, label: String::new() }
    }

    #[test]
    fn roles_come_from_the_state_at_the_faults_time() {
        let mut roles = Roles::default();
        roles
            .partitions
            .insert("events-0".into(), vec![(0.0, 0, vec![0, 1, 2]), (5.0, 1, vec![0, 1, 2])]);
        roles.controllers = vec![(0.0, 2), (6.0, 0)];
        roles.coordinators.insert("g".into(), vec![(0.0, 1)]);
        let faults = vec![
            fault(1.0, Target::Broker(0), FaultAction::Kill),
            fault(2.0, Target::Broker(0), FaultAction::Restart),
            fault(5.5, Target::Leader("events", 0), FaultAction::Pause),
            fault(7.0, Target::Controller, FaultAction::PowerLoss),
            fault(8.0, Target::Consumer(0), FaultAction::Leave),
            fault(9.0, Target::Leader("events", 0), FaultAction::Kill),
        ];
        // Fault 5 resolved to no broker.
        let resolved: BTreeMap<usize, u32> = [(0, 0), (1, 0), (2, 1), (3, 0)].into();
        let t = of_run(&faults, &resolved, &roles);
        let row = |k: &str| t[k].clone();
        // Broker-0 at 1 s: leader of events-0.
        assert_eq!(
            (row("kill")["leader"], row("kill")["follower"], row("kill")["faults"]),
            (1, 0, 2)
        );
        assert_eq!(row("kill")["unresolved"], 1);
        // Broker-1 at 5.5 s: the new leader, and the group's coordinator; not the controller.
        let p = row("pause");
        assert_eq!((p["leader"], p["group coordinator"], p["active controller"]), (1, 1, 0));
        // Broker-0 at 7 s: a follower and the active controller.
        let pl = row("power_loss");
        assert_eq!((pl["follower"], pl["active controller"], pl["leader"]), (1, 1, 0));
        assert_eq!(row("leave")["member"], 1);
        assert!(!t.contains_key("restart"));
        let mut sum = t.clone();
        add(&mut sum, &t);
        assert_eq!(sum["kill"]["faults"], 4);
        assert_eq!(from_json(&serde_json::to_value(&sum).unwrap()), Some(sum));
    }

    #[test]
    fn a_single_broker_leads_and_coordinates_everything() {
        let roles = Roles::single_broker(&["events-0".into()], &["g".into()]);
        assert_eq!(roles.of(0, 3.0), vec!["leader", "group coordinator"]);
        assert!(roles.of(1, 3.0).is_empty());
    }
}
