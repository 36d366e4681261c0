//! Faults as scenario-file entries again: the run's timeline (file faults and the nemesis'
//! draw) written out as explicit `faults` / `request_faults` entries, grouped into units the
//! shrinker removes, shortens and moves as one (a kill with its restart).

use serde_json::{json, Map, Value};

use crate::faults::{DiskErrorKind, Fault, FaultAction};

/// One entry of `faults` (or, `request`, of `request_faults`), its time and `for` kept apart
/// from the rest so they can be changed; `ord` is its place in the run's timeline (ties at one
/// instant keep it, as the run did).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub ord: usize,
    pub at_ns: u64,
    pub for_ns: Option<u64>,
    pub request: bool,
    /// The action key (`kill`, `partition`, ...) and its target, for grouping and messages.
    pub action: String,
    pub target: String,
    /// The entry without `at` and `for`.
    pub rest: Map<String, Value>,
}

/// A duration as the scenario format writes it, exactly: `5s`, `250ms`, `50us`, `1234ns`.
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0 => "0s".into(),
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}us", n / 1_000),
        n => format!("{n}ns"),
    }
}

impl Entry {
    /// The entry as the file writes it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("at".into(), json!(fmt_ns(self.at_ns)));
        m.extend(self.rest.clone());
        if let Some(f) = self.for_ns {
            m.insert("for".into(), json!(fmt_ns(f)));
        }
        Value::Object(m)
    }

    /// When the fault is over: its `for`, else its instant.
    pub fn end_ns(&self) -> u64 {
        self.at_ns + self.for_ns.unwrap_or(0)
    }

    /// Process faults that a later restart of the same target ends.
    pub fn wants_restart(&self) -> bool {
        matches!(self.action.as_str(), "kill" | "power_loss" | "leave" | "disk_error")
    }
}

fn lower(s: impl std::fmt::Debug) -> String {
    format!("{s:?}").to_lowercase()
}

/// A disk fault's `disk` (JBOD), when it names one.
fn insert_disk(o: &mut Map<String, Value>, disk: &Option<u32>) {
    if let Some(d) = disk {
        o.insert("disk".into(), json!(d));
    }
}

/// The action key and its options of a fault (`None`: a request fault, whose rule goes whole).
fn action_of(a: &FaultAction) -> (&'static str, Map<String, Value>) {
    let mut o = Map::new();
    let key = match a {
        FaultAction::Kill => "kill",
        FaultAction::Restart => "restart",
        FaultAction::PowerLoss => "power_loss",
        FaultAction::Pause => "pause",
        FaultAction::Leave => "leave",
        FaultAction::StallPoll => "stall_poll",
        FaultAction::DropCaches => "drop_caches",
        FaultAction::Partition => "partition",
        FaultAction::SlowDisk { factor, disk } => {
            o.insert("factor".into(), json!(factor));
            insert_disk(&mut o, disk);
            "slow_disk"
        }
        FaultAction::SlowNic { bps } => {
            o.insert("bps".into(), json!(bps));
            "slow_nic"
        }
        FaultAction::DiskError { kind, probability, times, path, disk } => {
            insert_disk(&mut o, disk);
            let kind = match kind {
                DiskErrorKind::NoSpace => "no_space".to_string(),
                k => lower(k),
            };
            o.insert("kind".into(), json!(kind));
            o.insert("probability".into(), json!(probability));
            if let Some(t) = times {
                o.insert("times".into(), json!(t));
            }
            if let Some(p) = path {
                o.insert("path".into(), json!(p));
            }
            "disk_error"
        }
        FaultAction::CorruptSector { path, disk } => {
            insert_disk(&mut o, disk);
            if let Some(p) = path {
                o.insert("path".into(), json!(p));
            }
            "corrupt_sector"
        }
        FaultAction::Cut { peers, direction, port } => {
            o.insert("peers".into(), json!(lower(peers)));
            o.insert("direction".into(), json!(lower(direction)));
            if let Some(p) = port {
                o.insert("port".into(), json!(p));
            }
            "partition"
        }
        FaultAction::Request { rule } => {
            o.insert("rule".into(), serde_json::to_value(rule.as_ref()).unwrap_or(Value::Null));
            "request_fault"
        }
    };
    (key, o)
}

/// A fault of the run's timeline as a file entry.
pub fn entry_of(ord: usize, f: &Fault) -> Entry {
    let (key, mut rest) = action_of(&f.action);
    let target = f.target.name();
    let request = key == "request_fault";
    if request {
        rest.insert("broker".into(), json!(target));
    } else {
        let mut m = Map::new();
        m.insert(key.into(), json!(target));
        m.extend(rest);
        rest = m;
    }
    Entry { ord, at_ns: f.at_ns, for_ns: f.for_ns, request, action: key.into(), target, rest }
}

/// Groups entries into units: a process fault with the first later restart of its target,
/// everything else alone; in timeline order.
pub fn units(entries: Vec<Entry>) -> Vec<Vec<Entry>> {
    let mut claimed = vec![false; entries.len()];
    let mut out = Vec::new();
    for i in 0..entries.len() {
        if claimed[i] {
            continue;
        }
        claimed[i] = true;
        let mut unit = vec![entries[i].clone()];
        if entries[i].wants_restart() {
            let e = &entries[i];
            let r = (i + 1..entries.len()).find(|&j| {
                !claimed[j] && entries[j].action == "restart" && entries[j].target == e.target
            });
            if let Some(j) = r {
                claimed[j] = true;
                unit.push(entries[j].clone());
            }
        }
        out.push(unit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{RuleSpec, Target};

    fn f(at_s: u64, target: Target, action: FaultAction, for_s: Option<u64>) -> Fault {
        let s = 1_000_000_000;
        Fault {
            at_ns: at_s * s,
            target,
            action,
            for_ns: for_s.map(|x| x * s),
            label: String::new(),
        }
    }

    #[test]
    fn faults_become_entries_and_units_pair_restarts() {
        assert_eq!(
            (fmt_ns(5_000_000_000), fmt_ns(250_000_000), fmt_ns(50_000), fmt_ns(7)),
            ("5s".into(), "250ms".into(), "50us".into(), "7ns".into())
        );
        let rule = RuleSpec { api: "Produce".into(), times: Some(3), ..RuleSpec::default() };
        let faults = [
            f(1, Target::Broker(1), FaultAction::Kill, None),
            f(2, Target::Broker(0), FaultAction::Pause, Some(1)),
            f(3, Target::Broker(1), FaultAction::Restart, None),
            f(4, Target::Broker(0), FaultAction::Request { rule: Box::new(rule) }, Some(2)),
            f(
                5,
                Target::Leader("events", 0),
                FaultAction::SlowDisk { factor: 10, disk: None },
                Some(1),
            ),
            f(6, Target::Broker(2), FaultAction::Restart, None),
        ];
        let entries: Vec<Entry> = faults.iter().enumerate().map(|(i, f)| entry_of(i, f)).collect();
        assert_eq!(entries[0].to_json(), json!({"at": "1s", "kill": "broker-1"}));
        assert_eq!(entries[1].to_json(), json!({"at": "2s", "pause": "broker-0", "for": "1s"}));
        assert_eq!(
            entries[3].to_json(),
            json!({"at": "4s", "broker": "broker-0", "rule": {"api": "Produce", "times": 3}, "for": "2s"})
        );
        assert!(entries[3].request);
        assert_eq!(
            entries[4].to_json(),
            json!({"at": "5s", "slow_disk": "leader:events/0", "factor": 10, "for": "1s"})
        );
        let u = units(entries);
        let shape: Vec<Vec<usize>> = u.iter().map(|u| u.iter().map(|e| e.ord).collect()).collect();
        assert_eq!(shape, vec![vec![0, 2], vec![1], vec![3], vec![4], vec![5]]);
    }
}
