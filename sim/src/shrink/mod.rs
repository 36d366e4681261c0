//! `cargo simulate shrink SCENARIO --seed N --out DIR`: the smallest scenario that still
//! violates the same check as seed N's run, by delta debugging over whole runs.
//!
//! 1. The run as given (nemesis and all) picks the check: `--check`, else the first check whose
//!    outcome was not the expected one and is `violated`, else (a run that passed) the first
//!    check the scenario expects violated and saw violated (a museum story: "fails" is "the
//!    expected violation appears"). "Still fails" always means: that check's outcome is
//!    `violated` (and the simulator did not crash) and, for `liveness`, for the same kinds of
//!    cause as the run as given (`summary.json` `checks.liveness.causes`, e.g. `unanswered`,
//!    `consumer-behind`, `not-settled`: [`crate::checkers::LivenessCause`]): a candidate that
//!    fails liveness for another reason is a different failure, not a smaller one ([`still_fails`]).
//! 2. Explicit: the run's whole timeline (file faults, the nemesis' draw for the seed, rolling
//!    restarts expanded) written out as `faults` / `request_faults` entries, the nemesis removed.
//!    Fault order, times and targets are those of the run, so it replays the same events; the
//!    step is kept only if the same check is violated (trace event counts are compared too).
//! 3. ddmin over fault units (a kill with its restart is one unit), then each unit's `for`
//!    and downtime halved, each unit moved earlier, `duration_s` cut to the last fault plus 1 s,
//!    producer rates halved, partitions and brokers reduced — each change kept only if the
//!    check is still violated; then once more ddmin if anything changed.
//!
//! Every candidate runs in its own process (`sim CANDIDATE --seed N`, as a sweep runs seeds);
//! an invalid candidate (e.g. a fault on a broker that no longer exists) is not run. At most
//! `--runs-max` runs. Writes `DIR/minimal.json`, `DIR/shrink.json` (steps: tried, kept; runs,
//! CPU s) and prints the replay command.

mod entries;
mod steps;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser;
use serde_json::{json, Value};

pub use entries::{entry_of, fmt_ns, units, Entry};

use crate::exit;
use crate::scenario::Scenario;

/// `--runs-max` at most.
pub const RUNS_MAX_LIMIT: u32 = 10_000;

#[derive(Debug, Parser)]
#[command(
    name = "cargo simulate shrink",
    about = "Shrink a failing run into the smallest scenario that still violates the same check"
)]
pub struct ShrinkArgs {
    /// The scenario file of the failing run.
    pub scenario: String,
    /// The seed of the failing run.
    #[arg(long)]
    pub seed: u64,
    /// Where minimal.json, shrink.json and the candidates' runs go.
    #[arg(long)]
    pub out: String,
    /// The check that must stay violated (default: the first check the run failed, else the
    /// first it expects violated and saw violated).
    #[arg(long)]
    pub check: Option<String>,
    /// Simulator runs at most (the original and the explicit replay included).
    #[arg(long = "runs-max", default_value_t = 200)]
    pub runs_max: u32,
}

/// A candidate: the scenario's JSON without faults or nemesis, and the fault units.
#[derive(Debug, Clone)]
pub struct Cand {
    pub doc: Value,
    pub units: Vec<Vec<Entry>>,
}

impl Cand {
    /// The scenario file of the candidate: entries in timeline order (time, then run order).
    pub fn to_json(&self) -> Value {
        let mut d = self.doc.clone();
        let mut all: Vec<&Entry> = self.units.iter().flatten().collect();
        all.sort_by_key(|e| (e.at_ns, e.ord));
        let list = |request: bool| -> Vec<Value> {
            all.iter().filter(|e| e.request == request).map(|e| e.to_json()).collect()
        };
        let (faults, requests) = (list(false), list(true));
        if let Some(o) = d.as_object_mut() {
            for k in ["nemesis", "faults", "request_faults"] {
                o.remove(k);
            }
            if !faults.is_empty() {
                o.insert("faults".into(), Value::Array(faults));
            }
            if !requests.is_empty() {
                o.insert("request_faults".into(), Value::Array(requests));
            }
        }
        d
    }

    pub fn faults(&self) -> usize {
        self.units.iter().map(Vec::len).sum()
    }
}

/// The runs so far, the budget and the step log.
pub struct Shrinker {
    exe: PathBuf,
    seed: u64,
    out: PathBuf,
    pub check: String,
    /// The kinds of cause of the original run's `liveness` violation (empty for other checks).
    pub causes: Vec<String>,
    pub runs: u32,
    runs_max: u32,
    pub cpu_s: f64,
    /// Candidate text → whether it violated the check (no run twice).
    cache: BTreeMap<String, bool>,
    /// The summary of the last candidate kept.
    pub last: Value,
    pub steps: Vec<Value>,
    step: (String, u32, u32),
}

impl Shrinker {
    pub fn new(exe: PathBuf, seed: u64, out: PathBuf, runs_max: u32) -> Self {
        Shrinker {
            exe,
            seed,
            out,
            check: String::new(),
            causes: Vec::new(),
            runs: 0,
            runs_max,
            cpu_s: 0.0,
            cache: BTreeMap::new(),
            last: Value::Null,
            steps: Vec::new(),
            step: (String::new(), 0, 0),
        }
    }

    /// Runs a scenario file in its own process: its summary (`Null` if it wrote none).
    fn run_file(&mut self, file: &Path, what: &str) -> Option<Value> {
        if self.runs >= self.runs_max {
            return None;
        }
        self.runs += 1;
        let dir = self.out.join("run");
        let _ = std::fs::remove_dir_all(&dir);
        let status = Command::new(&self.exe)
            .arg(file)
            .args(["--seed", &self.seed.to_string(), "--out"])
            .arg(&dir)
            .arg("--quiet")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let code = status.ok().and_then(|s| s.code()).unwrap_or(exit::CRASH);
        let text = std::fs::read_to_string(dir.join("summary.json")).unwrap_or_default();
        let summary: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        self.cpu_s += summary["speed"]["process"]["cpu_s"].as_f64().unwrap_or(0.0);
        let outcome = summary["checks"][&self.check]["outcome"].as_str().unwrap_or("-");
        let causes = causes_of(&summary["checks"][&self.check]).join(",");
        eprintln!(
            "run {}/{}: {what}: exit {code}, {} {outcome} {causes}",
            self.runs, self.runs_max, self.check
        );
        Some(if code == exit::CRASH { Value::Null } else { summary })
    }

    /// Whether the candidate still violates the check (runs it unless known; an invalid
    /// candidate or an exhausted budget counts as no).
    pub fn test(&mut self, c: &Cand, what: &str) -> bool {
        let doc = c.to_json();
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
        if let Some(&v) = self.cache.get(&text) {
            return v;
        }
        if Scenario::parse(&text).is_err() {
            self.cache.insert(text, false);
            return false;
        }
        self.step.1 += 1;
        let file = self.out.join("candidate.json");
        if std::fs::write(&file, &text).is_err() {
            return false;
        }
        let Some(summary) = self.run_file(&file, what) else { return false };
        let violated = still_fails(&summary, &self.check, &self.causes);
        self.cache.insert(text, violated);
        if violated {
            self.step.2 += 1;
            self.last = summary;
        }
        violated
    }

    pub fn budget_left(&self) -> bool {
        self.runs < self.runs_max
    }

    /// Starts a step of the log (ending the previous one).
    pub fn begin(&mut self, name: &str) {
        self.end_step();
        self.step = (name.to_string(), 0, 0);
    }

    pub fn end_step(&mut self) {
        let (name, tried, kept) = std::mem::take(&mut self.step);
        if !name.is_empty() {
            self.steps.push(json!({"step": name, "tried": tried, "kept": kept}));
        }
    }
}

/// The kinds of cause a check's summary entry names (`causes`; only `liveness` has any).
pub fn causes_of(check: &Value) -> Vec<String> {
    let list = check["causes"].as_array().map(Vec::as_slice).unwrap_or_default();
    list.iter().filter_map(Value::as_str).map(String::from).collect()
}

/// Whether a candidate's run fails as the original did: `check` violated and, for `liveness`,
/// with the same kinds of cause (`causes`, the original's). A liveness failure for another
/// reason (say, a consumer behind where the original left sends unanswered) is rejected, so
/// shrinking cannot slip from one liveness bug to another.
pub fn still_fails(summary: &Value, check: &str, causes: &[String]) -> bool {
    let c = &summary["checks"][check];
    if c["outcome"] != "violated" {
        return false;
    }
    check != "liveness" || causes_of(c) == causes
}

/// The check to keep violated, and whether the run failed it (`false`: a museum story's
/// expected violation); `order` is the scenario's own order of checks.
pub fn pick_check(
    summary: &Value,
    order: &[String],
    wanted: Option<&str>,
) -> Result<(String, bool), String> {
    let checks = summary["checks"].as_object().ok_or("the run wrote no checks (did it crash?)")?;
    let violated = |c: &Value| c["outcome"] == "violated";
    if let Some(w) = wanted {
        let c = checks.get(w).ok_or(format!("the run has no check {w}"))?;
        if !violated(c) {
            return Err(format!("{w} was {} in this run: nothing to keep violated", c["outcome"]));
        }
        return Ok((w.to_string(), c["expected"] != "violated"));
    }
    let mut names: Vec<&String> = order.iter().filter(|n| checks.contains_key(*n)).collect();
    names.extend(checks.keys().filter(|k| !order.contains(k)));
    let first = |failing: bool| {
        names.iter().find(|n| {
            let c = &checks[n.as_str()];
            violated(c) && (!failing || c["expected"] != "violated")
        })
    };
    if let Some(k) = first(true) {
        return Ok(((*k).clone(), true));
    }
    if let Some(k) = first(false) {
        return Ok(((*k).clone(), false));
    }
    Err("no check was violated in this run: nothing to shrink".into())
}

/// A relative `cluster.host.profile` file made absolute (candidates live elsewhere).
pub(crate) fn absolute_profile(doc: &mut Value, scenario: &Path) {
    let Some(p) = doc.pointer_mut("/cluster/host/profile") else { return };
    let Some(s) = p.as_str() else { return };
    let dir = scenario.parent().unwrap_or(Path::new("."));
    let candidate = dir.join(s);
    if !Path::new(s).is_absolute() && candidate.is_file() {
        let abs = std::fs::canonicalize(&candidate).unwrap_or(candidate);
        *p = Value::String(abs.display().to_string());
    }
}

/// The run's timeline as explicit entries, the nemesis removed.
pub fn explicit(sc: &Scenario, doc: Value, seed: u64) -> Cand {
    let timeline = sc.with_nemesis(seed).faults;
    let list: Vec<Entry> = timeline.iter().enumerate().map(|(i, f)| entry_of(i, f)).collect();
    Cand { doc, units: units(list) }
}

fn usage(msg: String) -> i32 {
    eprintln!("error: {msg}");
    exit::USAGE
}

/// `cargo simulate shrink`.
pub fn main(args: &[String]) -> Result<i32, i32> {
    let a: ShrinkArgs = crate::exit::parse_args(args)?;
    if a.runs_max < 2 || a.runs_max > RUNS_MAX_LIMIT {
        return Err(usage(format!("--runs-max {}: expected 2..={RUNS_MAX_LIMIT}", a.runs_max)));
    }
    let sc = Scenario::load(Path::new(&a.scenario))
        .map_err(|e| usage(format!("{}: {e}", a.scenario)))?;
    let text =
        std::fs::read_to_string(&a.scenario).map_err(|e| usage(format!("{}: {e}", a.scenario)))?;
    let mut doc: Value =
        serde_json::from_str(&text).map_err(|e| usage(format!("{}: {e}", a.scenario)))?;
    absolute_profile(&mut doc, Path::new(&a.scenario));
    let out = PathBuf::from(&a.out);
    std::fs::create_dir_all(&out).map_err(|e| usage(format!("{}: {e}", a.out)))?;
    let exe = std::env::current_exe().map_err(|_| exit::CRASH)?;
    let started = std::time::Instant::now();
    let mut s = Shrinker::new(exe, a.seed, out.clone(), a.runs_max);
    s.begin("original");
    let orig = s.run_file(Path::new(&a.scenario), "the run as given").unwrap_or(Value::Null);
    s.step = ("original".into(), 1, 1);
    let (check, failing) = pick_check(&orig, &sc.checks, a.check.as_deref()).map_err(|e| {
        eprintln!("error: {} seed {}: {e}", a.scenario, a.seed);
        exit::USAGE
    })?;
    s.check = check.clone();
    s.causes = causes_of(&orig["checks"][&check]);
    let mode = if failing { "failing" } else { "expected-violation" };
    let because =
        if s.causes.is_empty() { String::new() } else { format!(" for {}", s.causes.join(", ")) };
    eprintln!("shrinking on {check} violated{because} ({mode} run; at most {} runs)", a.runs_max);
    let cand = explicit(&sc, doc, a.seed);
    let original_faults = cand.faults();
    s.begin("explicit");
    if !s.test(&cand, "the nemesis' faults written out") {
        eprintln!("error: the scenario with its faults written out does not violate {check}{because} at seed {}: cannot shrink (see {}/candidate.json)", a.seed, a.out);
        return Ok(exit::CRASH);
    }
    let replay = json!({"same_check_violated": true, "trace_events": [orig["trace_events"], s.last["trace_events"]],
        "trace_events_equal": orig["trace_events"] == s.last["trace_events"]});
    let min = steps::minimize(&mut s, cand);
    s.end_step();
    let report = Report {
        a: &a,
        sc: &sc,
        check: &check,
        mode,
        original_faults,
        replay,
        wall_s: started.elapsed().as_secs_f64(),
    };
    write_outputs(&s, &min, &report)
}

struct Report<'a> {
    a: &'a ShrinkArgs,
    sc: &'a Scenario,
    check: &'a str,
    mode: &'a str,
    original_faults: usize,
    replay: Value,
    wall_s: f64,
}

/// `minimal.json` (named `<name>-minimal`, described, its `expect` keeping only the
/// violations the last run still showed) and `shrink.json`; prints the replay command.
fn write_outputs(s: &Shrinker, min: &Cand, r: &Report) -> Result<i32, i32> {
    let mut doc = min.to_json();
    let (a, check) = (r.a, r.check);
    let desc = format!("Shrunk by `cargo simulate shrink {} --seed {}` ({} runs): {check} still violated with {} of {} faults. Original: {}", a.scenario, a.seed, s.runs, min.faults(), r.original_faults, r.sc.description);
    doc["name"] = json!(format!("{}-minimal", r.sc.name));
    doc["description"] = json!(desc);
    doc["seed"] = json!(a.seed);
    if let Some(e) = doc.get_mut("expect").and_then(Value::as_object_mut) {
        e.retain(|k, v| {
            k == check || *v != "violated" || s.last["checks"][k]["outcome"] == "violated"
        });
    }
    let dir = Path::new(&a.out);
    let minimal = dir.join("minimal.json");
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    let replay = format!("cargo simulate {} --seed {}", minimal.display(), a.seed);
    let facts = json!({
        "scenario": r.sc.name, "scenario_file": a.scenario, "seed": a.seed, "check": check, "causes": s.causes, "mode": r.mode,
        "original": {"faults": r.original_faults, "duration_s": r.sc.duration_s},
        "minimal": {"faults": min.faults(), "units": min.units.len(), "duration_s": doc["duration_s"], "file": minimal.display().to_string()},
        "explicit_replay": r.replay,
        "runs": s.runs, "runs_max": a.runs_max, "budget_exhausted": !s.budget_left(),
        "cpu_s": s.cpu_s, "wall_s": r.wall_s, "steps": s.steps, "replay": replay,
        "note": "cpu_s sums the candidates' own process CPU seconds (summary.json speed.process.cpu_s); invalid candidates are not run and not counted",
    });
    let write = |p: PathBuf, t: String| {
        std::fs::write(&p, t).map_err(|e| {
            eprintln!("error: writing {}: {e}", p.display());
            exit::CRASH
        })
    };
    write(minimal.clone(), text)?;
    write(
        dir.join("shrink.json"),
        serde_json::to_string_pretty(&facts).unwrap_or_default() + "\n",
    )?;
    println!("SHRUNK: {} seed {}: {check} violated with {} of {} faults, duration_s {} ({} runs, {:.1} CPU s)", r.sc.name, a.seed, min.faults(), r.original_faults, doc["duration_s"], s.runs, s.cpu_s);
    println!("minimal: {}", minimal.display());
    println!("replay: {replay}");
    Ok(exit::PASS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_is_the_first_failed_else_the_expected_violation() {
        let order: Vec<String> = ["lost-write", "duplicate"].map(String::from).to_vec();
        let s = json!({"checks": {
            "duplicate": {"outcome": "violated", "expected": "held"},
            "lost-write": {"outcome": "violated", "expected": "violated"},
        }});
        // lost-write comes first in the scenario but was expected: duplicate is the failure.
        assert_eq!(pick_check(&s, &order, None), Ok(("duplicate".into(), true)));
        let museum = json!({"checks": {
            "duplicate": {"outcome": "held", "expected": "held"},
            "lost-write": {"outcome": "violated", "expected": "violated"},
        }});
        assert_eq!(pick_check(&museum, &order, None), Ok(("lost-write".into(), false)));
        assert!(pick_check(&museum, &order, Some("duplicate")).is_err());
        let clean = json!({"checks": {"lost-write": {"outcome": "held", "expected": "held"}}});
        assert!(pick_check(&clean, &order, None).is_err());
    }

    #[test]
    fn a_liveness_failure_for_another_cause_is_not_still_failing() {
        let run = |check: &str, outcome: &str, causes: &[&str]| json!({"checks": {check: {"outcome": outcome, "causes": causes}}});
        let original: Vec<String> = vec!["unanswered".into()];
        let same = run("liveness", "violated", &["unanswered"]);
        assert!(still_fails(&same, "liveness", &original));
        // Liveness violated, but because a consumer ended behind: another failure.
        let other = run("liveness", "violated", &["consumer-behind"]);
        assert!(!still_fails(&other, "liveness", &original));
        let more = run("liveness", "violated", &["not-settled", "unanswered"]);
        assert!(!still_fails(&more, "liveness", &original));
        assert!(!still_fails(&run("liveness", "held", &[]), "liveness", &[]));
        // A safety check has no causes: violated is enough.
        assert!(still_fails(&run("lost-write", "violated", &[]), "lost-write", &[]));
        assert!(!still_fails(&run("lost-write", "held", &[]), "lost-write", &[]));
        assert_eq!(causes_of(&same["checks"]["liveness"]), original);
    }

    #[test]
    fn a_candidate_writes_faults_in_timeline_order_without_the_nemesis() {
        let f = |at_s: u64, action: crate::faults::FaultAction| crate::faults::Fault {
            at_ns: at_s * 1_000_000_000,
            target: crate::faults::Target::Broker(0),
            action,
            for_ns: None,
            label: String::new(),
        };
        use crate::faults::FaultAction::{Kill, Restart};
        let entries = vec![entry_of(0, &f(1, Kill)), entry_of(1, &f(2, Restart))];
        let mut c = Cand { doc: json!({"name": "x", "nemesis": {}}), units: units(entries) };
        c.units[0][0].at_ns = 3_000_000_000;
        let doc = c.to_json();
        assert!(doc.get("nemesis").is_none() && doc.get("request_faults").is_none());
        assert_eq!(doc["faults"][0]["restart"], "broker-0");
        assert_eq!(doc["faults"][1]["at"], "3s");
        assert_eq!(c.faults(), 2);
    }

    #[test]
    fn a_restart_may_come_after_the_end_as_the_nemesis_draws_it() {
        let sc = |faults: &str| {
            Scenario::parse(&format!(
                r#"{{"name": "t", "duration_s": 5, "cluster": {{}}, "topics": [{{"name": "events"}}],
                "workload": {{"producers": [{{"topic": "events", "rate": "10/s"}}]}}, "faults": {faults}}}"#
            ))
        };
        let late =
            sc(r#"[{"at": "4s", "kill": "broker-0"}, {"at": "6500ms", "restart": "broker-0"}]"#);
        assert_eq!(late.map(|s| s.faults[1].at_ns).ok(), Some(6_500_000_000));
        assert!(sc(r#"[{"at": "5s", "kill": "broker-0"}]"#).is_err());
        assert!(sc(r#"[{"at": "4s", "kill": "broker-0"}, {"at": "700s", "restart": "broker-0"}]"#)
            .is_err());
    }
}
