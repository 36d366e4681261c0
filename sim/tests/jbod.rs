//! JBOD in the simulator (`cluster.host.disks`): the broker's `log.dirs` get one directory on
//! each disk, every disk a device of its own behind the host's one page cache
//! (`cargo sim-test -p sim --test jbod`). Shortened from `scenarios/experiments/jbod-disks.json`:
//! HDDs, 8 partitions, 320 MB/s offered, so one disk is the bottleneck.
#![cfg(madsim)]

use std::path::Path;

use sim::run::{run, RunOptions, RunOutput};
use sim::scenario::Scenario;

fn text() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/experiments/jbod-disks.json");
    let t = std::fs::read_to_string(path).unwrap();
    // 4 s measured from 2 s: shorter than the experiment, long enough to saturate a disk.
    let short = t
        .replace(r#""duration_s": 8"#, r#""duration_s": 4"#)
        .replace(r#""from": "3s""#, r#""from": "2s""#);
    assert_ne!(short, t);
    short
}

/// The shortened scenario with `n` disks and `faults` (a `"faults": [...],` entry or "").
fn scenario_text(n: u32, faults: &str) -> String {
    let t = text().replace(r#""disks": 1}"#, &format!(r#""disks": {n}}}"#));
    t.replacen("\"workload\"", &format!("{faults}\"workload\""), 1)
}

fn with_disks(n: u32, faults: &str) -> Scenario {
    Scenario::parse(&scenario_text(n, faults)).unwrap_or_else(|e| panic!("{e}"))
}

fn go(sc: &Scenario, keep_trace: bool) -> RunOutput {
    let opts = RunOptions {
        keep_trace,
        scenario_path: "scenarios/experiments/jbod-disks.json".into(),
        out_dir: "out/jbod".into(),
        omb: None,
    };
    run(sc, 1, &opts)
}

fn achieved(out: &RunOutput) -> f64 {
    out.summary["throughput"]["achieved"]["produce_bytes_per_s"].as_f64().unwrap_or(f64::NAN)
}

fn util(out: &RunOutput, resource: &str) -> Option<f64> {
    out.summary["utilization"]["resources"][resource].as_f64()
}

/// Two disks take twice the writes of one: with one disk it is busy the whole window and the
/// offer is not met; with two, both are busy and the throughput nearly doubles.
#[test]
fn a_second_disk_doubles_what_a_disk_bound_broker_takes() {
    let (one, two) = (go(&with_disks(1, ""), false), go(&with_disks(2, ""), false));
    assert_eq!((one.exit_code, two.exit_code), (0, 0), "{}", two.summary["checks"]);
    let (a1, a2) = (achieved(&one), achieved(&two));
    assert!(a1 < 0.5 * 320e6, "one HDD cannot take 320 MB/s: {a1}");
    assert!(a2 > 1.8 * a1, "two disks: {a2} B/s, one: {a1}");
    assert!(util(&one, "disk:broker-0").unwrap() > 0.95);
    assert_eq!(util(&one, "disk:broker-0/1"), None, "one disk has no second device");
    for d in ["disk:broker-0", "disk:broker-0/1"] {
        assert!(util(&two, d).unwrap() > 0.95, "{d} busy: {:?}", util(&two, d));
    }
}

/// A disk fault can name one disk: `slow_disk` with `disk: 1` slows that device only (the
/// trace's slow-factor event names device 1), and `disk` beyond the broker's disks is refused.
#[test]
fn a_disk_fault_names_one_of_the_disks() {
    let fault = r#""faults": [{"at": "1s", "slow_disk": "broker-0", "factor": 100, "disk": 1}],"#;
    let out = go(&with_disks(2, fault), true);
    let lines = out.trace_lines.as_ref().expect("kept");
    // The heal at the end sets every disk back (factor 1): only the fault slows one.
    let slowed: Vec<&String> =
        lines.iter().filter(|l| l.contains(r#"{"SlowFactor":{"factor":100,"#)).collect();
    assert_eq!(slowed.len(), 1, "{slowed:?}");
    assert!(slowed[0].contains(r#""device":1"#), "{}", slowed[0]);
    let clean = go(&with_disks(2, ""), false);
    assert!(achieved(&out) < 0.8 * achieved(&clean), "a slowed disk holds the writers back");
    let beyond = scenario_text(2, &fault.replace(r#""disk": 1"#, r#""disk": 2"#));
    let e = Scenario::parse(&beyond).unwrap_err().to_string();
    assert!(e.contains("faults[0].disk") && e.contains("0..=1"), "{e}");
}
