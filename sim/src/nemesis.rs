//! The nemesis: a random fault schedule drawn from the run's seed, within the bounds a scenario's
//! `nemesis` section sets, so a sweep over thousands of seeds explores different histories
//! (after Jepsen's nemesis). Pure: (bounds, seed) → fault specs, appended to the scenario's own
//! faults before the run starts. Same seed, same schedule.
//!
//! Rules of the draw:
//! - `count` faults, each of a kind drawn from `faults`, on a target drawn from those of
//!   `targets` the kind applies to (disk and power faults hit brokers; `leave` hits group members);
//! - each starts uniformly in [`from`, `until`) and lasts uniformly in [`min`, `max`];
//! - faults on one target never overlap (a fault that would start while its target is still
//!   faulted starts when the previous one ends, or is dropped past `until`), so every kill is
//!   followed by its own restart and every pause by its own resume;
//! - process faults end with a restart: kill, power loss and leave restart the target after the
//!   drawn duration; a disk error ends with a broker restart too (an offline log stays offline
//!   until the broker reopens it, as an operator would restart it);
//! - `request_fault` installs one of `request_faults` (a rule drawn uniformly; one more draw,
//!   made only for this kind, so schedules without it are unchanged) on a broker for the drawn
//!   duration.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::faults::{rule_brief, DiskErrorKind, Fault, FaultAction, RuleSpec, Target};

/// Salt of the nemesis' random stream (independent of every other subsystem's).
pub const NEMESIS_SALT: u64 = 0x6e65_6d65_7369_7321; // "nemesis!"

/// Upper bound on drawn faults per run.
pub const NEMESIS_COUNT_MAX: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NemesisKind {
    Kill,
    PowerLoss,
    Pause,
    Partition,
    SlowDisk,
    SlowNic,
    DiskError,
    Leave,
    RequestFault,
}

impl NemesisKind {
    pub const ALL: &'static [(&'static str, NemesisKind)] = &[
        ("kill", NemesisKind::Kill),
        ("power_loss", NemesisKind::PowerLoss),
        ("pause", NemesisKind::Pause),
        ("partition", NemesisKind::Partition),
        ("slow_disk", NemesisKind::SlowDisk),
        ("slow_nic", NemesisKind::SlowNic),
        ("disk_error", NemesisKind::DiskError),
        ("leave", NemesisKind::Leave),
        ("request_fault", NemesisKind::RequestFault),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).map_or("?", |(n, _)| n)
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
    }

    /// Whether the fault takes its broker out of the quorum/ISR (counted by `minority`).
    pub fn disrupts(self) -> bool {
        matches!(
            self,
            NemesisKind::Kill
                | NemesisKind::PowerLoss
                | NemesisKind::Pause
                | NemesisKind::Partition
                | NemesisKind::DiskError
        )
    }

    /// Whether this kind of fault can hit `target`.
    pub fn applies_to(self, target: Target) -> bool {
        matches!(
            (self, target),
            (NemesisKind::Kill | NemesisKind::Pause | NemesisKind::Partition, _)
                | (
                    NemesisKind::PowerLoss
                        | NemesisKind::SlowDisk
                        | NemesisKind::SlowNic
                        | NemesisKind::DiskError
                        | NemesisKind::RequestFault,
                    Target::Broker(_),
                )
                | (NemesisKind::Leave, Target::Consumer(_))
        )
    }
}

/// A scenario's `nemesis` section.
#[derive(Debug, Clone, PartialEq)]
pub struct NemesisSpec {
    pub kinds: Vec<NemesisKind>,
    pub targets: Vec<Target>,
    pub count: u32,
    pub from_ns: u64,
    pub until_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    /// `slow_disk`: latency multiplier; `slow_nic`: the degraded bandwidth.
    pub slow_disk_factor: u32,
    pub slow_nic_bps: u64,
    /// Cluster runs (`minority: true`): at most ⌊(brokers-1)/2⌋ brokers are down, paused,
    /// partitioned or disk-failed at once, so a majority (the controller quorum, and with RF =
    /// brokers an ISR quorum) stays whole; a drawn fault that would break the bound is dropped.
    pub minority: bool,
    pub brokers: u32,
    /// `request_fault`: the rules to draw from (non-empty when the kind is drawn).
    pub request_faults: Vec<RuleSpec>,
}

/// Draws the schedule for `seed` (sorted by time; each entry labelled `nemesis …`).
pub fn draw(spec: &NemesisSpec, seed: u64) -> Vec<Fault> {
    assert!(spec.from_ns < spec.until_ns, "nemesis window is empty");
    assert!(spec.min_ns <= spec.max_ns, "nemesis durations are inverted");
    assert!(
        !spec.kinds.contains(&NemesisKind::RequestFault) || !spec.request_faults.is_empty(),
        "request_fault without rules to draw from"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ NEMESIS_SALT);
    let mut busy_until: BTreeMap<Target, u64> = BTreeMap::new();
    let mut minority = Minority::new(spec);
    let mut out = Vec::new();
    for _ in 0..spec.count.min(NEMESIS_COUNT_MAX) {
        let kind = spec.kinds[rng.gen_range(0..spec.kinds.len())];
        let eligible: Vec<Target> =
            spec.targets.iter().copied().filter(|t| kind.applies_to(*t)).collect();
        // Draw every number even when the fault is dropped, so one drop does not shift the rest.
        let pick = rng.gen_range(0..u32::MAX);
        let at = rng.gen_range(spec.from_ns..spec.until_ns);
        let dur = rng.gen_range(spec.min_ns..=spec.max_ns);
        let rule = match kind {
            NemesisKind::RequestFault => rng.gen_range(0..spec.request_faults.len()),
            _ => 0,
        };
        let Some(&target) = eligible.get(pick as usize % eligible.len().max(1)) else { continue };
        let at = at.max(busy_until.get(&target).copied().unwrap_or(0));
        if at >= spec.until_ns || !minority.admits(kind, target, at, at + dur) {
            continue;
        }
        busy_until.insert(target, at + dur + 1_000_000);
        out.extend(faults_of(spec, kind, target, at, dur, rule));
    }
    out.sort_by_key(|f| f.at_ns);
    out
}

/// `minority: true`: the disruptive broker faults drawn so far, to keep at most
/// ⌊(brokers-1)/2⌋ brokers disrupted at once.
struct Minority {
    on: bool,
    bound: usize,
    /// (broker, start, end including its restart and a margin).
    disrupted: Vec<(Target, u64, u64)>,
}

impl Minority {
    fn new(spec: &NemesisSpec) -> Self {
        let bound = (spec.brokers.saturating_sub(1) / 2) as usize;
        Minority { on: spec.minority, bound, disrupted: Vec::new() }
    }

    /// Whether a `kind` fault on `target` over [at, end) keeps the bound (and records it).
    fn admits(&mut self, kind: NemesisKind, target: Target, at: u64, end: u64) -> bool {
        if !(self.on && matches!(target, Target::Broker(_)) && kind.disrupts()) {
            return true;
        }
        // Margin: a restarted broker needs a moment to rejoin before the next one goes.
        let (lo, hi) = (at, end + 2_000_000_000);
        let mut others: Vec<Target> = self
            .disrupted
            .iter()
            .filter(|(t, s, e)| *t != target && *s < hi && lo < *e)
            .map(|(t, _, _)| *t)
            .collect();
        others.sort();
        others.dedup();
        if others.len() + 1 > self.bound {
            return false;
        }
        self.disrupted.push((target, lo, hi));
        true
    }
}

/// The faults one draw makes: the fault, and the restart that ends it (kill, power loss, leave
/// and disk errors; the others end after `dur`).
fn faults_of(
    spec: &NemesisSpec,
    kind: NemesisKind,
    target: Target,
    at: u64,
    dur: u64,
    rule: usize,
) -> Vec<Fault> {
    let end = at + dur;
    let fault = |at_ns: u64, action: FaultAction, for_ns: Option<u64>, what: &str| Fault {
        at_ns,
        target,
        action,
        for_ns,
        label: format!("nemesis {what} {}", target.name()),
    };
    let restart = |at_ns: u64| fault(at_ns, FaultAction::Restart, None, "restart");
    match kind {
        NemesisKind::Kill => vec![fault(at, FaultAction::Kill, None, "kill"), restart(end)],
        NemesisKind::PowerLoss => {
            vec![fault(at, FaultAction::PowerLoss, None, "power_loss"), restart(end)]
        }
        NemesisKind::Leave => vec![fault(at, FaultAction::Leave, None, "leave"), restart(end)],
        NemesisKind::Pause => vec![fault(at, FaultAction::Pause, Some(dur), "pause")],
        NemesisKind::Partition => vec![fault(at, FaultAction::Partition, Some(dur), "partition")],
        NemesisKind::SlowDisk => {
            let factor = spec.slow_disk_factor;
            let what = format!("slow_disk x{factor}");
            vec![fault(at, FaultAction::SlowDisk { factor, disk: None }, Some(dur), &what)]
        }
        NemesisKind::SlowNic => {
            let bps = spec.slow_nic_bps;
            vec![fault(at, FaultAction::SlowNic { bps }, Some(dur), &format!("slow_nic {bps}bps"))]
        }
        NemesisKind::DiskError => {
            let action = FaultAction::DiskError {
                kind: DiskErrorKind::Write,
                probability: 1.0,
                times: None,
                path: None,
                disk: None,
            };
            vec![fault(at, action, Some(dur), "disk_error write"), restart(end + 1)]
        }
        NemesisKind::RequestFault => {
            let r = &spec.request_faults[rule];
            let what = format!("request_fault[{rule}] {}", rule_brief(r));
            let action = FaultAction::Request { rule: Box::new(r.clone()) };
            vec![fault(at, action, Some(dur), &what)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(count: u32) -> NemesisSpec {
        NemesisSpec {
            kinds: NemesisKind::ALL.iter().map(|(_, k)| *k).collect(),
            targets: vec![Target::Broker(0), Target::Consumer(0), Target::Consumer(1)],
            count,
            from_ns: 1_000_000_000,
            until_ns: 20_000_000_000,
            min_ns: 500_000_000,
            max_ns: 5_000_000_000,
            slow_disk_factor: 10,
            slow_nic_bps: 100_000_000,
            minority: false,
            brokers: 1,
            request_faults: vec![RuleSpec {
                api: "Produce".into(),
                error: Some("NOT_LEADER_OR_FOLLOWER".into()),
                ..RuleSpec::default()
            }],
        }
    }

    proptest! {
        #[test]
        fn schedules_are_deterministic_bounded_and_never_overlap_per_target(seed in any::<u64>(), count in 0u32..30) {
            let s = spec(count);
            let a = draw(&s, seed);
            prop_assert_eq!(&a, &draw(&s, seed));
            let mut faulted: std::collections::BTreeMap<Target, u64> = std::collections::BTreeMap::new();
            for f in &a {
                prop_assert!(f.action == FaultAction::Restart || (f.at_ns >= s.from_ns && f.at_ns < s.until_ns), "{f:?}");
                prop_assert!(f.for_ns.is_none_or(|d| d >= s.min_ns && d <= s.max_ns), "{f:?}");
                if f.action == FaultAction::Restart {
                    continue;
                }
                // A new fault on a target starts only after its previous one (and restart) ended.
                let end = f.at_ns + f.for_ns.unwrap_or(0);
                if let Some(&prev_end) = faulted.get(&f.target) {
                    prop_assert!(f.at_ns > prev_end, "{f:?} overlaps a fault ending at {prev_end}");
                }
                let restart_at = a.iter().filter(|r| r.target == f.target && r.action == FaultAction::Restart && r.at_ns >= f.at_ns).map(|r| r.at_ns).min();
                let needs_restart = matches!(f.action, FaultAction::Kill | FaultAction::PowerLoss | FaultAction::Leave | FaultAction::DiskError { .. });
                prop_assert!(!needs_restart || restart_at.is_some(), "{f:?} has no restart");
                faulted.insert(f.target, restart_at.filter(|_| needs_restart).unwrap_or(end).max(end));
                prop_assert!(match f.action {
                    FaultAction::PowerLoss | FaultAction::SlowDisk { .. } | FaultAction::SlowNic { .. } | FaultAction::DiskError { .. } | FaultAction::Request { .. } => matches!(f.target, Target::Broker(_)),
                    FaultAction::Leave => matches!(f.target, Target::Consumer(_)),
                    _ => true,
                }, "{f:?} on the wrong kind of target");
            }
        }
    }

    #[test]
    fn different_seeds_draw_different_schedules() {
        let s = spec(8);
        assert_ne!(draw(&s, 1), draw(&s, 2));
        assert!(draw(&s, 1).iter().filter(|f| f.action != FaultAction::Restart).count() <= 8);
    }
}
