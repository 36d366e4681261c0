//! `cargo simulate shrink` on a small failing scenario: a power loss under acks=1 without
//! flushes loses acknowledged writes, among faults that have nothing to do with it (explicit
//! ones and a nemesis' draw). The minimal scenario keeps fewer faults and, replayed in its own
//! process, still violates the same check (`cargo sim-test -p sim --test shrink`).
#![cfg(madsim)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const SCENARIO: &str = r#"{
  "name": "shrink-test",
  "description": "acks=1, no flush: the power loss at 3s loses acknowledged writes; the rest is noise.",
  "duration_s": 5,
  "cluster": {"brokers": 1, "host": {"disk": "nvme", "page_cache": "256MiB"}},
  "topics": [{"name": "events", "partitions": 2}],
  "workload": {"producers": [{"topic": "events", "rate": "1000/s", "record.bytes": 100, "acks": "1", "linger.ms": 5, "retries": 0}]},
  "faults": [
    {"at": "1s", "pause": "broker-0", "for": "200ms"},
    {"at": "1500ms", "slow_disk": "broker-0", "factor": 5, "for": "300ms"},
    {"at": "2s", "drop_caches": "broker-0"},
    {"at": "3s", "power_loss": "broker-0"},
    {"at": "3500ms", "restart": "broker-0"}
  ],
  "nemesis": {"faults": ["pause", "slow_disk"], "count": 2, "from": "500ms", "until": "2500ms", "min": "100ms", "max": "300ms"},
  "checks": ["lost-write", "liveness"]
}"#;

fn read(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn shrink_keeps_the_check_violated_with_fewer_faults() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shrink-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sc = dir.join("shrink-test.json");
    std::fs::write(&sc, SCENARIO).unwrap();
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["shrink", sc.to_str().unwrap(), "--seed", "3", "--runs-max", "60", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    assert!(text.contains("replay: cargo simulate"), "{text}");
    let report = read(&out.join("shrink.json"));
    assert_eq!(report["check"], "lost-write", "{report}");
    assert_eq!(report["mode"], "failing");
    assert_eq!(report["explicit_replay"]["trace_events_equal"], true, "{report}");
    let original = report["original"]["faults"].as_u64().unwrap();
    let minimal = read(&out.join("minimal.json"));
    let faults = minimal["faults"].as_array().map_or(0, Vec::len) as u64;
    // Five file faults and the nemesis' draws (two units at most); the power loss and its
    // restart are what loses the writes.
    assert!(original >= 6, "{report}");
    assert!(faults < original && faults >= 1, "{faults} of {original}: {minimal}");
    assert!(minimal.get("nemesis").is_none());
    assert!(report["runs"].as_u64().unwrap() <= 60);
    // The minimal scenario replayed in its own process violates the same check.
    let replay = out.join("replay");
    let o = Command::new(env!("CARGO_BIN_EXE_sim"))
        .arg(out.join("minimal.json"))
        .args(["--seed", "3", "--quiet", "--out"])
        .arg(&replay)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(read(&replay.join("summary.json"))["checks"]["lost-write"]["outcome"], "violated");
}
