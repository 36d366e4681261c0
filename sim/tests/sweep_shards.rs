//! Sharded, resumable sweeps as a batch engine runs them: `deploy/sweep-worker.sh` started as
//! separate processes with `JOB_COMPLETION_INDEX` (Kubernetes Indexed Job) and
//! `SLURM_ARRAY_TASK_ID` (Slurm job array), merged with `deploy/merge.sh`, against one unsharded
//! sweep of the same seeds (`cargo sim-test -p sim --test sweep_shards`).
#![cfg(madsim)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const SCENARIO: &str = r#"{
  "name": "sweep-shards",
  "description": "A small nemesis for the sharded-sweep test.",
  "duration_s": 3,
  "cluster": {"brokers": 1},
  "topics": [{"name": "events", "partitions": 1}],
  "workload": {"producers": [{"topic": "events", "rate": "200/s", "record.bytes": 100, "acks": "all"}],
               "consumers": [{"topic": "events"}]},
  "nemesis": {"faults": ["kill", "pause", "slow_disk"], "count": 2, "from": "500ms", "until": "2s", "min": "200ms", "max": "500ms"}
}"#;

const SEEDS: &str = "1..8";
const SHARDS: u32 = 4;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn read(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// `deploy/sweep-worker.sh` with one index variable set (the others cleared).
fn worker(sc: &Path, out: &Path, var: (&str, String)) -> Command {
    let mut c = Command::new("sh");
    c.arg(repo().join("deploy/sweep-worker.sh"))
        .current_dir(repo())
        .env_remove("SHARD_INDEX")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("SLURM_ARRAY_TASK_MIN")
        .env("SIM", env!("CARGO_BIN_EXE_sim"))
        .env("SCENARIO", sc)
        .env("SEEDS", SEEDS)
        .env("OUT", out)
        .env("JOBS", "1")
        .env(var.0, var.1);
    if var.0 == "SLURM_ARRAY_TASK_ID" {
        c.env_remove("SHARDS").env("SLURM_ARRAY_TASK_COUNT", SHARDS.to_string());
    } else {
        c.env("SHARDS", SHARDS.to_string()).env_remove("SLURM_ARRAY_TASK_COUNT");
    }
    c
}

fn ok(o: Output) -> String {
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    text
}

/// (seed, verdict, exit_code, trace_hash) of every run.
fn runs(doc: &Value) -> Vec<(u64, String, i64, String)> {
    let rows = doc["runs"].as_array().unwrap();
    let key = |r: &Value| {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        (
            r["seed"].as_u64().unwrap(),
            s("verdict"),
            r["exit_code"].as_i64().unwrap(),
            s("trace_hash"),
        )
    };
    rows.iter().map(key).collect()
}

fn sweep_cmd(sc: &Path, seeds: &str, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["sweep", sc.to_str().unwrap(), "--seeds", seeds, "--jobs", "2", "--out"])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn sharded_workers_merge_into_the_unsharded_sweep_and_resume() {
    let dir = scratch("sweep-shards");
    let sc = dir.join("sweep-shards.json");
    std::fs::write(&sc, SCENARIO).unwrap();
    ok(sweep_cmd(&sc, SEEDS, &dir.join("single")));
    let single = read(&dir.join("single/sweep.json"));

    // Four workers at once, as the batch engines start them: three pods of an Indexed Job and
    // one task of a job array.
    let out = dir.join("sharded");
    let mut children: Vec<_> = (0..3)
        .map(|i| worker(&sc, &out, ("JOB_COMPLETION_INDEX", i.to_string())))
        .chain([worker(&sc, &out, ("SLURM_ARRAY_TASK_ID", "3".into()))])
        .map(|mut c| c.output())
        .collect();
    for o in children.drain(..) {
        ok(o.unwrap());
    }
    let merge = Command::new("sh")
        .arg(repo().join("deploy/merge.sh"))
        .env("SIM", env!("CARGO_BIN_EXE_sim"))
        .env("OUT", &out)
        .output()
        .unwrap();
    ok(merge);
    let merged = read(&out.join("merged/sweep.json"));
    assert_eq!(runs(&merged), runs(&single), "merged shards = one sweep");
    assert_eq!(runs(&merged).len(), 7);
    assert_eq!(merged["failed"], single["failed"]);
    assert_eq!(merged["coverage"]["kinds"], single["coverage"]["kinds"]);
    assert!(single["coverage"]["faults"].as_u64().unwrap() > 0, "{}", single["coverage"]);
    assert_eq!(merged["missing_shards"], serde_json::json!([]));
    // Shard 1 of 4 of 1..8 is seeds 2 and 6.
    let shard1 = read(&out.join("shard-1/sweep.json"));
    assert_eq!(runs(&shard1).iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 6]);

    // Again: everything is done, nothing runs.
    let again = ok(worker(&sc, &out, ("JOB_COMPLETION_INDEX", "0".into())).output().unwrap());
    assert!(again.contains("2 of 2 seeds already done"), "{again}");
    assert_eq!(read(&out.join("shard-0/sweep.json"))["skipped"], 2);

    // A result cut short (a worker killed while writing) is redone; the other is skipped.
    let cut = out.join("shard-0/seed-5/result.json");
    let whole = read(&cut);
    let before = runs(&read(&out.join("shard-0/sweep.json")));
    assert_eq!(before.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 5]);
    std::fs::write(&cut, r#"{"seed": 5, "verd"#).unwrap();
    let redo = ok(worker(&sc, &out, ("JOB_COMPLETION_INDEX", "0".into())).output().unwrap());
    assert!(redo.contains("1 of 2 seeds already done"), "{redo}");
    assert_eq!(read(&cut)["trace_hash"], whole["trace_hash"]);
    assert_eq!(runs(&read(&out.join("shard-0/sweep.json"))), before);
}

#[test]
fn merge_refuses_overlapping_seeds_and_mixed_scenarios() {
    let dir = scratch("sweep-refusals");
    let sc = dir.join("a.json");
    std::fs::write(&sc, SCENARIO).unwrap();
    let other = dir.join("b.json");
    std::fs::write(&other, SCENARIO.replace("\"sweep-shards\"", "\"sweep-shards-b\"")).unwrap();
    ok(sweep_cmd(&sc, "1..3", &dir.join("a1")));
    ok(sweep_cmd(&sc, "2..4", &dir.join("a2")));
    ok(sweep_cmd(&other, "5..6", &dir.join("b")));
    let merge = |dirs: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sim"));
        c.args(["sweep-merge", "--out"]).arg(dir.join("m"));
        for d in dirs {
            c.arg(dir.join(d));
        }
        c.output().unwrap()
    };
    let o = merge(&["a1", "a2"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("overlapping"), "{o:?}");
    let o = merge(&["a1", "b"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to mix"), "{o:?}");
    // A result of another scenario text in the directory refuses the sweep.
    let o = sweep_cmd(&other, "1..3", &dir.join("a1"));
    assert_eq!(o.status.code(), Some(64), "{o:?}");
    let o = merge(&["a1"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}

/// A sweep keeps summary.json and result.json for every seed, and draws the plots and
/// index.html only for seeds that do not pass (a passing seed's replay command draws them).
#[test]
fn a_sweep_draws_plots_only_for_seeds_that_do_not_pass() {
    let dir = scratch("sweep-plots");
    let passing = dir.join("passing.json");
    std::fs::write(&passing, SCENARIO).unwrap();
    // The same run, expecting a violation that does not happen: every seed fails.
    let failing = dir.join("failing.json");
    let text = SCENARIO.replacen(
        r#""name": "sweep-shards","#,
        r#""name": "sweep-shards-failing", "expect": {"lost-write": "violated"},"#,
        1,
    );
    std::fs::write(&failing, text).unwrap();
    ok(sweep_cmd(&passing, "1..3", &dir.join("pass")));
    let _ = sweep_cmd(&failing, "1..2", &dir.join("fail"));
    let files = |seed_dir: PathBuf| {
        let mut names: Vec<String> = std::fs::read_dir(&seed_dir)
            .unwrap_or_else(|e| panic!("{}: {e}", seed_dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    for seed in [1, 2] {
        let names = files(dir.join(format!("pass/seed-{seed}")));
        assert_eq!(names, vec!["result.json", "summary.json"], "seed {seed} passed");
    }
    assert_eq!(read(&dir.join("fail/seed-1/result.json"))["verdict"], "fail");
    let names = files(dir.join("fail/seed-1"));
    assert!(names.iter().any(|n| n == "index.html"), "{names:?}");
    assert!(names.iter().filter(|n| n.ends_with(".svg")).count() >= 3, "{names:?}");
}
