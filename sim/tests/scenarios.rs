//! Every shipped scenario (`scenarios/*.json`), run at its own seed: it meets its expectations,
//! every check it lists examined something (`checks.<name>.examined` > 0, never `vacuous`), and
//! every consumer polled records and ended at the log end (`cargo sim-test -p sim --test scenarios`).
//! The `bench-*` throughput scenarios run shortened to 3 simulated seconds (their shape, not
//! their length, is what this test is about; `cargo simulate` runs them whole).
#![cfg(madsim)]

use std::path::Path;

use sim::run::{run, RunOptions};
use sim::scenario::Scenario;

const BENCH_DURATION_S: u64 = 3;

fn shipped() -> Vec<(String, Scenario)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|file| {
            let sc = Scenario::load(&dir.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            (file.trim_end_matches(".json").to_string(), sc)
        })
        .collect()
}

#[test]
fn every_shipped_scenario_examines_what_it_checks_and_consumes() {
    let all = shipped();
    assert!(all.len() >= 25, "expected the shipped scenarios, found {}", all.len());
    let mut failures = Vec::new();
    for (name, mut sc) in all {
        if name.starts_with("bench-") {
            sc.duration_s = sc.duration_s.min(BENCH_DURATION_S);
        }
        let out = run(
            &sc,
            sc.seed,
            &RunOptions {
                keep_trace: false,
                scenario_path: format!("scenarios/{name}.json"),
                out_dir: format!("out/{name}"),
                omb: None,
            },
        );
        let checks = &out.summary["checks"];
        if out.exit_code != 0 {
            failures.push(format!(
                "{name}: exit {} {}",
                out.exit_code,
                serde_json::to_string_pretty(checks).unwrap_or_default()
            ));
        }
        for c in &sc.checks {
            let examined = checks[c]["examined"].as_u64().unwrap_or(0);
            if examined == 0 || checks[c]["outcome"] == "vacuous" {
                failures.push(format!("{name}: check {c} examined nothing: {}", checks[c]));
            }
        }
        // A story whose point is that nothing progresses (liveness expected violated) has nothing
        // for its consumers to read.
        let stalls = sc.expect.get("liveness") == Some(&sim::checkers::Outcome::Violated);
        let consumers =
            out.summary["history"]["consumers"].as_object().cloned().unwrap_or_default();
        let expected: u32 = sc.consumers.iter().map(|c| c.count).sum();
        if consumers.len() as u32 != expected {
            failures.push(format!(
                "{name}: {expected} consumers in the workload, {} in the summary",
                consumers.len()
            ));
        }
        for (c, v) in &consumers {
            if v["polls"].as_u64().unwrap_or(0) == 0 && !stalls {
                failures.push(format!("{name}: {c} never polled a record: {v}"));
            }
            if v["behind_log_end"].as_i64().is_some_and(|b| b != 0) {
                failures.push(format!("{name}: {c} ended behind the log end: {v}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every check some shipped scenario expects `violated` (and `every_shipped_scenario_…` above
/// proves the run really violates it): a check is trusted only once it has been seen to fire.
/// The bug museum (`scenarios/bug-*.json`, each the twin of a story that holds with the safeguard
/// on) and the other stories that expect an anomaly show each of them.
const SHOWN_FIRING: &[&str] = &[
    "lost-write",
    "inconsistent-offsets",
    "duplicate",
    "replicas-agree",
    "hw-monotonic",
    "generation-fencing",
    "committed-offset-monotonic",
    "group-exclusive",
    "poll-skip",
    "nonmonotonic-poll",
    "liveness",
];

/// Checks no shipped scenario shows firing yet, each with the reason (none since
/// `bug-zombie-fencing-disabled` shows `hw-monotonic`); a new checker goes here until a story
/// shows it.
const NOT_YET_SHOWN: &[&str] = &[];

#[test]
fn the_museum_shows_each_of_these_checks_violated_by_a_shipped_scenario() {
    use sim::checkers::Outcome;
    let all = shipped();
    let mut fired: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, sc) in &all {
        for (check, outcome) in &sc.expect {
            if *outcome == Outcome::Violated {
                fired.entry(check.clone()).or_default().push(name.clone());
            }
        }
    }
    let missing: Vec<&str> =
        SHOWN_FIRING.iter().copied().filter(|c| !fired.contains_key(*c)).collect();
    assert!(missing.is_empty(), "no shipped scenario expects these violated: {missing:?}");
    // The list is every checker there is: a new checker must be shown firing too.
    let mut checkers: Vec<&str> = sim::checkers::CHECKS.to_vec();
    let mut shown: Vec<&str> = SHOWN_FIRING.iter().chain(NOT_YET_SHOWN).copied().collect();
    checkers.sort_unstable();
    shown.sort_unstable();
    assert_eq!(shown, checkers, "SHOWN_FIRING and NOT_YET_SHOWN must list every checker");
    for check in NOT_YET_SHOWN {
        assert!(
            !fired.contains_key(*check),
            "{check} is shown firing now: move it to SHOWN_FIRING"
        );
    }
    // Each museum story has its twin with the safeguard on, where every check holds; so has a
    // story that turns a safeguard off by a Kafka setting (`cluster-unclean-election`).
    let has_twin = |n: &str, sc: &Scenario| {
        n.starts_with("bug-") || sc.description.contains("Its twin with the safeguard on is")
    };
    for (name, sc) in all.iter().filter(|(n, sc)| has_twin(n, sc)) {
        assert!(
            sc.expect.values().any(|o| *o == Outcome::Violated),
            "{name}: a museum story expects some check violated"
        );
        let twin = sc.description.split("Its twin with the safeguard on is scenarios/").nth(1);
        let twin = twin.and_then(|t| t.split(".json").next()).unwrap_or_else(|| {
            panic!("{name}: the description names its twin (\"Its twin with the safeguard on is scenarios/X.json\")")
        });
        let (_, t) = all
            .iter()
            .find(|(n, _)| n == twin)
            .unwrap_or_else(|| panic!("{name}: twin {twin} not shipped"));
        assert!(
            t.expect.values().all(|o| *o == Outcome::Held),
            "{name}: its twin {twin} expects every check held"
        );
    }
}

/// The zombie-controller pair at seed 1: the same cluster, workload and faults, only
/// `loglab.unsafe.controller.epoch.fencing.disable` differs. In both the real quorum replaces
/// the cut-off controller's partition leader (a leader change, so the twin's verdict is not
/// vacuous); with the switch on the zombie's uncommitted ISR shrink lets it acknowledge writes
/// alone, which are lost (`lost-write`, `inconsistent-offsets` violated), with it off every check
/// holds.
#[test]
fn the_zombie_controller_loses_acknowledged_writes_only_with_its_switch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let raw = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).expect(name);
        let mut v: serde_json::Value = serde_json::from_str(&text).expect(name);
        let o = v.as_object_mut().expect("a scenario is an object");
        for k in ["name", "description", "expect"] {
            o.remove(k);
        }
        v["cluster"]["config"]
            .as_object_mut()
            .expect("cluster.config")
            .remove("loglab.unsafe.controller.epoch.fencing.disable");
        v
    };
    assert_eq!(raw("bug-zombie-controller"), raw("cluster-zombie-controller"));
    let all = shipped();
    let mut outcomes = Vec::new();
    for name in ["bug-zombie-controller", "cluster-zombie-controller"] {
        let (_, sc) = all.iter().find(|(n, _)| n == name).expect(name);
        let opts = RunOptions {
            keep_trace: false,
            scenario_path: format!("scenarios/{name}.json"),
            out_dir: format!("out/{name}"),
            omb: None,
        };
        let out = run(sc, 1, &opts);
        let checks = &out.summary["checks"];
        assert_eq!(out.exit_code, 0, "{name}: {checks}");
        let parts = out.summary["cluster"]["partitions"].as_object().cloned().unwrap_or_default();
        let changes: u64 = parts.values().filter_map(|p| p["leader_changes"].as_u64()).sum();
        assert!(changes >= 1, "{name}: the quorum elected a new leader: {parts:?}");
        let mut violated: Vec<String> = checks
            .as_object()
            .expect("checks")
            .iter()
            .filter(|(_, c)| c["outcome"] == "violated")
            .map(|(k, _)| k.clone())
            .collect();
        violated.sort();
        outcomes.push(violated);
    }
    assert_eq!(outcomes[0], ["inconsistent-offsets", "lost-write"], "the switch on");
    assert!(outcomes[1].is_empty(), "the switch off: {:?}", outcomes[1]);
}

/// KIP-101 case 2 both ways at seed 1 (issue 14): with truncation to the high watermark and the
/// settings of Kafka before 0.11, both replicas losing power leaves them diverged for good; with
/// the safeguards on, the same faults lose nothing and the replicas agree.
#[test]
fn kip101_case2_diverges_only_with_the_safeguards_off() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let outcome = |name: &str| {
        let sc = Scenario::load(&dir.join(format!("{name}.json"))).expect(name);
        let opts = RunOptions {
            keep_trace: false,
            scenario_path: format!("scenarios/{name}.json"),
            out_dir: format!("out/{name}-seed1"),
            omb: None,
        };
        run(&sc, 1, &opts).summary["checks"].clone()
    };
    let bug = outcome("bug-kip101-case2");
    for c in ["replicas-agree", "lost-write", "inconsistent-offsets"] {
        assert_eq!(bug[c]["outcome"], "violated", "bug-kip101-case2 {c}: {}", bug[c]);
    }
    let detail = bug["replicas-agree"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("differs from the leader"), "{detail}");
    let twin = outcome("kip101-both-lose-power");
    for c in ["replicas-agree", "lost-write", "inconsistent-offsets", "liveness"] {
        assert_eq!(twin[c]["outcome"], "held", "kip101-both-lose-power {c}: {}", twin[c]);
    }
}
