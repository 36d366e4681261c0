//! Request-level faults in scenarios (issue 19, `cargo sim-test -p sim --test request_faults`):
//! the rules run on each broker's own `FaultControl`, the counts in `summary.json` are the
//! broker's, a run replays exactly from its seed (fired counts included), and the checkers see
//! what the rules did: an after-handling REQUEST_TIMED_OUT duplicates a write without
//! idempotence and not with it.
#![cfg(madsim)]

use std::path::Path;

use serde_json::Value;
use sim::run::{run, RunOptions, RunOutput};
use sim::scenario::Scenario;

fn scenario(name: &str) -> Scenario {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(format!("{name}.json"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn go(name: &str, seed: u64) -> RunOutput {
    let opts = RunOptions {
        keep_trace: true,
        scenario_path: format!("scenarios/{name}.json"),
        out_dir: format!("out/{name}"),
        omb: None,
    };
    run(&scenario(name), seed, &opts)
}

/// (label, matched, fired) of every rule, as the summary reports them.
fn counts(out: &RunOutput) -> Vec<(String, u64, u64)> {
    let rules = out.summary["request_faults"]["rules"].as_array().cloned().unwrap_or_default();
    rules
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap_or(0);
            (r["label"].as_str().unwrap_or("").to_string(), n("matched"), n("fired"))
        })
        .collect()
}

fn outcome<'a>(out: &'a RunOutput, check: &str) -> &'a str {
    out.summary["checks"][check]["outcome"].as_str().unwrap_or("?")
}

fn show(out: &RunOutput) -> String {
    let s = &out.summary;
    format!(
        "checks: {}\nrequest_faults: {}",
        serde_json::to_string_pretty(&s["checks"]).unwrap_or_default(),
        serde_json::to_string_pretty(&s["request_faults"]).unwrap_or_default()
    )
}

#[test]
fn request_faults_replay_exactly_and_fire_as_the_broker_counts() {
    let a = go("request-faults", 1);
    let b = go("request-faults", 1);
    assert_eq!(a.trace_hash, b.trace_hash, "same seed twice must give the same trace hash");
    assert_eq!(a.trace_lines, b.trace_lines);
    let (ca, cb) = (counts(&a), counts(&b));
    assert_eq!(ca, cb, "fired counts must replay exactly");
    // Two rules on broker-0: the after-handling REQUEST_TIMED_OUT fires once, the
    // NOT_LEADER_OR_FOLLOWER rule three times (its `times`), as the broker counted them.
    let fired: Vec<u64> = ca.iter().map(|c| c.2).collect();
    assert_eq!(fired, vec![1, 3], "{}", show(&a));
    assert!(ca.iter().all(|c| c.1 >= c.2), "{ca:?}");
    let lines = a.trace_lines.as_deref().unwrap_or_default();
    assert!(lines
        .iter()
        .any(|l| l.contains(" request-rule-end broker-0 id=2 ") && l.contains("fired=3")));
    // A different seed is a different run (and still fires).
    let c = go("request-faults", 2);
    assert_ne!(a.trace_hash, c.trace_hash);
    assert!(counts(&c).iter().all(|x| x.2 > 0), "{}", show(&c));
}

#[test]
fn after_handling_timeout_duplicates_without_idempotence_and_not_with_it() {
    let off = go("request-faults", 1);
    assert_eq!(off.exit_code, 0, "{}", show(&off));
    assert_eq!(outcome(&off, "duplicate"), "violated", "{}", show(&off));
    assert_eq!(outcome(&off, "lost-write"), "held", "{}", show(&off));
    let on = go("request-faults-idempotent", 1);
    assert_eq!(on.exit_code, 0, "{}", show(&on));
    assert_eq!(outcome(&on, "duplicate"), "held", "{}", show(&on));
    assert_eq!(outcome(&on, "lost-write"), "held", "{}", show(&on));
    // The same rules fired in both runs: the difference is the producer's, not the faults'.
    let fired = |o: &RunOutput| counts(o).iter().map(|c| c.2).collect::<Vec<_>>();
    assert_eq!(fired(&off), fired(&on));
}

#[test]
fn a_broker_kill_ends_its_rules_counted_up_to_the_kill() {
    let mut sc = scenario("request-faults");
    let extra = Scenario::parse(
        r#"{"name": "k", "cluster": {"mode": "network"}, "topics": [{"name": "events"}],
            "workload": {}, "duration_s": 7,
            "faults": [{"at": "4500ms", "kill": "broker-0"}, {"at": "5500ms", "restart": "broker-0"}],
            "request_faults": [{"at": "4s", "rule": {"api": "Produce", "delay_ms": 1}}]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    sc.faults.extend(extra.faults);
    sc.faults.sort_by_key(|f| f.at_ns);
    let opts = RunOptions {
        keep_trace: false,
        scenario_path: "request-faults+kill".into(),
        out_dir: "out/request-faults-kill".into(),
        omb: None,
    };
    let out = run(&sc, 1, &opts);
    let rules = out.summary["request_faults"]["rules"].as_array().cloned().unwrap_or_default();
    let delay: Vec<&Value> =
        rules.iter().filter(|r| r["rule"]["delay_ms"].as_u64() == Some(1)).collect();
    assert_eq!(delay.len(), 1, "{}", show(&out));
    assert_eq!(delay[0]["ended"], "broker stopped", "{}", show(&out));
    assert!(delay[0]["fired"].as_u64().unwrap_or(0) > 0, "{}", show(&out));
    // Ended at the kill (4.5 s; the driver wakes within a microsecond of it).
    let ended_s = delay[0]["ended_s"].as_f64().unwrap_or(0.0);
    assert!((4.5..4.501).contains(&ended_s), "{}", show(&out));
}
