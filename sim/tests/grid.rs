//! `cargo simulate grid` end to end: a 2 × 2 grid of tiny runs (about one simulated second
//! each) writes grid.json with four rows, each with a bottleneck and its process's cost, grid.csv
//! with the same rows, the SVG plots and index.html; an unknown key is refused before anything runs
//! (`cargo sim-test -p sim --test grid`).
#![cfg(madsim)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const SCENARIO: &str = r#"{
  "name": "grid-e2e",
  "description": "A tiny grid point: one broker, one producer at an offered rate.",
  "duration_s": 1,
  "cluster": {"brokers": 1, "mode": "network", "host": {"disk": "nvme", "nic": "1Gbps", "cores": 2}},
  "topics": [{"name": "events", "partitions": 1}],
  "workload": {"producers": [{"topic": "events", "rate": "500/s", "record.bytes": 200, "acks": 1, "linger.ms": 1}]}
}"#;

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn grid(sc: &Path, vary: &[&str], out: &Path) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sim"));
    c.arg("grid").arg(sc);
    for v in vary {
        c.args(["--vary", v]);
    }
    c.args(["--jobs", "2", "--out"]).arg(out).output().unwrap()
}

#[test]
fn a_two_by_two_grid_names_a_bottleneck_per_point() {
    let dir = scratch("grid-e2e");
    let sc = dir.join("grid-e2e.json");
    std::fs::write(&sc, SCENARIO).unwrap();
    let out = dir.join("out");
    let o = grid(&sc, &["linger.ms=0,5", "cluster.host.cores=1,2"], &out);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("grid.json")).unwrap()).unwrap();
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["point"], i);
        assert!(
            r["bottleneck"].as_str().is_some_and(|b| !b.is_empty() && !b.starts_with("none")),
            "{r}"
        );
        assert!(r["records_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["utilization"].as_object().unwrap().contains_key("cpu:broker-0"), "{r}");
        // What the point's process cost, from its summary's `speed.process`.
        assert!(r["cost"]["cpu_s"].as_f64().is_some_and(|c| c > 0.0), "{r}");
        assert!(r["cost"]["peak_rss_bytes"].as_u64().is_some_and(|b| b > 1 << 20), "{r}");
        // Each point's scenario is on disk with its values (replayable on its own).
        let point: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("points/{i}/scenario.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(point["workload"]["producers"][0]["linger.ms"], r["values"]["linger.ms"]);
        assert_eq!(point["cluster"]["host"]["cores"], r["values"]["cluster.host.cores"]);
    }
    // Point order: the first key varies slowest.
    assert_eq!(rows[1]["values"]["linger.ms"], 0);
    assert_eq!(rows[1]["values"]["cluster.host.cores"], 2);
    let csv = std::fs::read_to_string(out.join("grid.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<&str> = lines[i + 1].split(',').collect();
        assert_eq!(cells[0], i.to_string());
        assert!(cells.contains(&r["bottleneck"].as_str().unwrap()), "{}", lines[i + 1]);
    }
    for f in [
        "throughput-vs-linger-ms.svg",
        "p99-vs-linger-ms.svg",
        "throughput-vs-cluster-host-cores.svg",
        "p99-vs-cluster-host-cores.svg",
        "cpu-vs-linger-ms.svg",
        "rss-vs-cluster-host-cores.svg",
        "index.html",
    ] {
        let text = std::fs::read_to_string(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(text.len() > 500, "{f}");
    }
}

#[test]
fn an_unknown_key_is_refused_before_anything_runs() {
    let dir = scratch("grid-unknown");
    let sc = dir.join("grid-e2e.json");
    std::fs::write(&sc, SCENARIO).unwrap();
    let out = dir.join("out");
    let o = grid(&sc, &["linger.ms=0,5", "cluster.host.coresx=1,2"], &out);
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("coresx"), "{err}");
    assert!(!out.join("points").exists(), "nothing ran");
    let o = grid(&sc, &["acks=1,2"], &out);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("acks"));
}
