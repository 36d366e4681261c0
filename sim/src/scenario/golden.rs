//! Behaviour-preservation record for the scenario parser: every shipped scenario file and every
//! OMB-generated scenario, as `Scenario`'s Debug form and the effective JSON, plus the error
//! message of each bad input of [`BAD`]. `GOLDEN_LABEL=old cargo test -p sim --lib golden --
//! --ignored` writes them under `target/scenario-golden/<label>/`; `diff -r` compares two labels.
//! The table test [`bad_inputs_name_their_path`] always runs.

use std::path::{Path, PathBuf};

use super::Scenario;
use crate::omb::{map, OmbSim};

const MIN: &str = r#"{"name": "t", "duration_s": 10, "cluster": {"mode": "network", "brokers": 3},
    "topics": [{"name": "events", "partitions": 2}],
    "workload": {"producers": [{"topic": "events", "rate": "100/s"}],
                 "consumers": [{"topic": "events", "group.id": "g"}]}}"#;

/// (replace this, with this, the path the message must start with)
pub const BAD: &[(&str, &str, &str)] = &[
    (r#""name": "t""#, r#""name": "t t""#, "name: "),
    (r#""name": "t""#, r#""name": 3"#, "name: "),
    (r#""duration_s": 10"#, r#""duration_s": 0"#, "duration_s: "),
    (r#""duration_s": 10"#, r#""duration_s": -1"#, "duration_s: "),
    (r#""duration_s": 10"#, r#""duration_s": 10, "seed": "x""#, "seed: "),
    (r#""duration_s": 10"#, r#""duration_s": 10, "measure": {"from": "soon"}"#, "measure.from: "),
    (r#""duration_s": 10"#, r#""duration_s": 10, "measure": {"to": "1s"}"#, "measure.to: "),
    (
        r#""duration_s": 10"#,
        r#""duration_s": 10, "measure": {"from": "1s", "warmup": "1s"}"#,
        "measure.warmup: ",
    ),
    (
        r#""duration_s": 10"#,
        r#""duration_s": 10, "measure": {"warmup": "11s"}"#,
        "measure.warmup: ",
    ),
    (r#""duration_s": 10"#, r#""duration_s": 10, "measure": {"warmup": "x"}"#, "measure.warmup: "),
    (r#""brokers": 3"#, r#""brokers": 65"#, "cluster.brokers: "),
    (r#""brokers": 3"#, r#""brokers": 3, "controllers": 4"#, "cluster.controllers: "),
    (r#""mode": "network""#, r#""mode": 1"#, "cluster.mode: "),
    (r#""brokers": 3"#, r#""brokers": 3, "host": {"disk": "floppy"}"#, "cluster.host.disk: "),
    (r#""brokers": 3"#, r#""brokers": 3, "host": {"nic": "fast"}"#, "cluster.host.nic: "),
    (
        r#""brokers": 3"#,
        r#""brokers": 3, "host": {"disk_bytes": "1 XB"}"#,
        "cluster.host.disk_bytes: ",
    ),
    (
        r#""brokers": 3"#,
        r#""brokers": 3, "host": {"torn_writes": "yes"}"#,
        "cluster.host.torn_writes: ",
    ),
    (
        r#""brokers": 3"#,
        r#""brokers": 3, "host": {"link_latency": "soon"}"#,
        "cluster.host.link_latency: ",
    ),
    (
        r#""brokers": 3"#,
        r#""brokers": 3, "host": {"dirty_ratio": 101}"#,
        "cluster.host.dirty_ratio: ",
    ),
    (
        r#""brokers": 3"#,
        r#""brokers": 3, "host": {"dirty_ratio": 5, "dirty_background_ratio": 10}"#,
        "cluster.host: ",
    ),
    (
        r#""brokers": 3"#,
        r#""brokers": 3, "config": {"log.segment.bytes": "big"}"#,
        "cluster.config[\"log.segment.bytes\"]: ",
    ),
    (
        r#""brokers": 3"#,
        r#""brokers": 3, "config": {"log.segment.bytes": [1]}"#,
        "cluster.config[\"log.segment.bytes\"]: ",
    ),
    (r#""brokers": 3"#, r#""brokers": 3, "config": 5"#, "cluster.config: "),
    (r#""partitions": 2"#, r#""partitions": 0"#, "topics[0].partitions: "),
    (
        r#""partitions": 2}]"#,
        r#""partitions": 10000, "replication.factor": 3}, {"name": "b", "partitions": 5001}]"#,
        "topics: ",
    ),
    (
        r#""partitions": 2"#,
        r#""partitions": 2, "replication.factor": 4"#,
        "topics[0][\"replication.factor\"]: ",
    ),
    (
        r#""partitions": 2"#,
        r#""partitions": 2, "config": {"log.segment.bytes": 1}"#,
        "topics[0].config[\"log.segment.bytes\"]: ",
    ),
    (
        r#""partitions": 2"#,
        r#""partitions": 2, "config": {"segment.bytes": "x"}"#,
        "topics[0].config[\"segment.bytes\"]: ",
    ),
    (r#""partitions": 2}]"#, r#""partitions": 2}, {"name": "events"}]"#, "topics[1].name: "),
    (r#""partitions": 2}]"#, r#""partitions": 2}, {"name": "a/b"}]"#, "topics[1].name: "),
    (r#""topics": [{"name": "events", "partitions": 2}]"#, r#""topics": []"#, "topics: "),
    (r#""topics": [{"name": "events", "partitions": 2}]"#, r#""topics": {}"#, "topics: "),
    (r#""topics": [{"name": "events", "partitions": 2}],"#, "", "topics: "),
    (r#""rate": "100/s""#, r#""rate": "fast""#, "workload.producers[0].rate: "),
    (r#""rate": "100/s""#, r#""rate": 0"#, "workload.producers[0].rate: "),
    (r#""rate": "100/s""#, r#""rate": "100/s", "pacing": "1us""#, "workload.producers[0].pacing: "),
    (r#""rate": "100/s""#, r#""rate": "100/s", "pacing": "2s""#, "workload.producers[0].pacing: "),
    (r#""rate": "100/s""#, r#""rate": "max", "pacing": "2ms""#, "workload.producers[0].pacing: "),
    (r#""rate": "100/s""#, r#""rate": "100/s", "acks": 2"#, "workload.producers[0].acks: "),
    (
        r#""rate": "100/s""#,
        r#""rate": "100/s", "acks": 1, "enable.idempotence": true"#,
        "workload.producers[0][\"enable.idempotence\"]: ",
    ),
    (
        r#""rate": "100/s""#,
        r#""rate": "100/s", "compression.type": "brotli""#,
        "workload.producers[0][\"compression.type\"]: ",
    ),
    (
        r#""rate": "100/s""#,
        r#""rate": "100/s", "linger.ms": "5ms""#,
        "workload.producers[0][\"linger.ms\"]: ",
    ),
    (
        r#""rate": "100/s""#,
        r#""rate": "100/s", "record.bytes": 4"#,
        "workload.producers[0][\"record.bytes\"]: ",
    ),
    (r#""rate": "100/s""#, r#""rate": "100/s", "host": 1"#, "workload.producers[0].host: "),
    (
        r#""rate": "100/s""#,
        r#""rate": "100/s", "lingr.ms": 1"#,
        "workload.producers[0][\"lingr.ms\"]: ",
    ),
    (r#""rate": "100/s""#, r#""rate": "100/s", "topic": "x""#, "workload.producers[0].topic: "),
    (r#""topic": "events", "rate""#, r#""topic": "nope", "rate""#, "workload.producers[0].topic: "),
    (r#""topic": "events", "rate""#, r#""rate""#, "workload.producers[0].topic: "),
    (r#""group.id": "g""#, r#""group.id": """#, "workload.consumers[0][\"group.id\"]: "),
    (
        r#""group.id": "g""#,
        r#""group.id": "g", "session.timeout.ms": 10, "heartbeat.interval.ms": 10"#,
        "workload.consumers[0][\"heartbeat.interval.ms\"]: ",
    ),
    (
        r#""group.id": "g""#,
        r#""group.id": "g", "partition.assignment.strategy": "range,best""#,
        "workload.consumers[0][\"partition.assignment.strategy\"]: ",
    ),
    (r#""group.id": "g""#, r#""group.id": "g", "host": 0"#, "workload.consumers[0].host: "),
    (
        r#""group.id": "g""#,
        r#""session.timeout.ms": 100"#,
        "workload.consumers[0][\"session.timeout.ms\"]: ",
    ),
    (
        r#""group.id": "g""#,
        r#""group.id": "g", "auto.offset.reset": "none""#,
        "workload.consumers[0][\"auto.offset.reset\"]: ",
    ),
    (r#""workload": {"#, r#""workload": {"client_hosts": 0, "#, "workload.client_hosts: "),
    (r#""workload": {"#, r#""workload": {"client_nic": "1Tbps", "#, "workload.client_nic: "),
    (
        r#""workload": {"#,
        r#""workload": {"prefill": [{"topic": "events", "records": 0}], "#,
        "workload.prefill[0].records: ",
    ),
    (
        r#""workload": {"#,
        r#""workload": {"prefill": [{"topic": "events", "records": 5, "x": 1}], "#,
        "workload.prefill[0].x: ",
    ),
    (r#""workload": {"#, r#""workload": {"prefill": 3, "#, "workload.prefill: "),
    (r#""workload": {"#, r#""checks": ["lost-write", "nope"], "workload": {"#, "checks[1]: "),
    (r#""workload": {"#, r#""checks": "lost-write", "workload": {"#, "checks: "),
    (
        r#""workload": {"#,
        r#""expect": {"replicas-agree": "maybe"}, "workload": {"#,
        "expect[\"replicas-agree\"]: ",
    ),
    (
        r#""workload": {"#,
        r#""expect": {"poll-skip": "held", "nope": "held"}, "workload": {"#,
        "expect.nope: ",
    ),
    (r#""workload": {"#, r#""faults": [{"at": "1s"}], "workload": {"#, "faults[0]: "),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "kill": "broker-3"}], "workload": {"#,
        "faults[0].kill: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "11s", "kill": "broker-0"}], "workload": {"#,
        "faults[0].at: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "kill": "broker-0", "factor": 3}], "workload": {"#,
        "faults[0].factor: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "kill": "broker-0", "restart": "broker-0"}], "workload": {"#,
        "faults[0]: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "pause": "broker-0"}], "workload": {"#,
        "faults[0].for: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "leave": "broker-0"}], "workload": {"#,
        "faults[0].leave: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "slow_disk": "consumer-0"}], "workload": {"#,
        "faults[0].slow_disk: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "kill": "consumer-1"}], "workload": {"#,
        "faults[0].kill: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "kill": "leader:events/2"}], "workload": {"#,
        "faults[0].kill: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "kill": "followers:events/0"}], "workload": {"#,
        "faults[0].kill: followers:events/0: the topic has replication factor 1, so no followers",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "disk_error": "broker-0", "kind": "melt"}], "workload": {"#,
        "faults[0].kind: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "disk_error": "broker-0", "kind": "read", "probability": 2}], "workload": {"#,
        "faults[0].probability: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "partition": "broker-0", "direction": "in", "port": 9092}], "workload": {"#,
        "faults[0].direction: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "partition": "broker-0", "peers": "some"}], "workload": {"#,
        "faults[0].peers: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "slow_nic": "broker-0", "bps": "1bps"}], "workload": {"#,
        "faults[0].bps: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "rolling_restart": "broker-0"}], "workload": {"#,
        "faults[0].rolling_restart: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "rolling_restart": "all", "every": "5s"}], "workload": {"#,
        "faults[0].every: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "rolling_restart": "all", "every": "1s", "down": "2s"}], "workload": {"#,
        "faults[0].down: ",
    ),
    (r#""workload": {"#, r#""faults": {}, "workload": {"#, "faults: "),
    (
        r#""workload": {"#,
        r#""nemesis": {"faults": ["melt"]}, "workload": {"#,
        "nemesis.faults[0]: ",
    ),
    (r#""workload": {"#, r#""nemesis": {"faults": []}, "workload": {"#, "nemesis.faults: "),
    (r#""workload": {"#, r#""nemesis": {"count": 3}, "workload": {"#, "nemesis.faults: "),
    (
        r#""workload": {"#,
        r#""nemesis": {"faults": ["kill"], "targets": ["leader:events/0"]}, "workload": {"#,
        "nemesis.targets[0]: ",
    ),
    (
        r#""workload": {"#,
        r#""nemesis": {"faults": ["kill"], "from": "5s", "until": "4s"}, "workload": {"#,
        "nemesis.until: ",
    ),
    (
        r#""workload": {"#,
        r#""nemesis": {"faults": ["kill"], "min": "3s", "max": "2s"}, "workload": {"#,
        "nemesis.min: ",
    ),
    (
        r#""workload": {"#,
        r#""nemesis": {"faults": ["kill"], "count": 1000000}, "workload": {"#,
        "nemesis.count: ",
    ),
    (
        r#""workload": {"#,
        r#""nemesis": {"faults": ["kill"], "slow_nic.bps": "x"}, "workload": {"#,
        "nemesis[\"slow_nic.bps\"]: ",
    ),
    (
        r#""workload": {"#,
        r#""request_faults": [{"at": "1s", "for": "10us", "rule": {"api": "Produce", "delay_ms": 5}}], "workload": {"#,
        "request_faults[0].for: ",
    ),
    (
        r#""workload": {"#,
        r#""request_faults": [{"at": "1s", "broker": 1, "rule": {"api": "Produce", "delay_ms": 5}}], "workload": {"#,
        "request_faults[0].broker: ",
    ),
    (
        r#""workload": {"#,
        r#""request_faults": [{"at": "1s", "rule": []}], "workload": {"#,
        "request_faults[0].rule: ",
    ),
    (
        r#""workload": {"#,
        r#""request_faults": [{"at": "1s"}], "workload": {"#,
        "request_faults[0].rule: ",
    ),
    // Shapes serde would take but the files never could: a list for an object, null for a value.
    (r#""duration_s": 10"#, r#""duration_s": 10, "measure": ["1s"]"#, "measure: "),
    (r#""partitions": 2}]"#, r#""partitions": 2}, ["x"]]"#, "topics[1]: "),
    (r#""brokers": 3"#, r#""brokers": 3, "host": []"#, "cluster.host: "),
    (r#""duration_s": 10"#, r#""duration_s": 10, "seed": null"#, "seed: "),
    (
        r#""rate": "100/s""#,
        r#""rate": "100/s", "linger.ms": null"#,
        "workload.producers[0][\"linger.ms\"]: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "kill": null}], "workload": {"#,
        "faults[0].kill: ",
    ),
    (
        r#""workload": {"#,
        r#""faults": [{"at": "1s", "kill": "broker-0", "bogus": 1}], "workload": {"#,
        "faults[0].bogus: ",
    ),
    (
        r#""workload": {"#,
        r#""nemesis": {"faults": ["kill", 3]}, "workload": {"#,
        "nemesis.faults[1]: ",
    ),
    (r#""workload": {"#, r#""nemesis": [], "workload": {"#, "nemesis: "),
];

fn bad_input(i: usize) -> String {
    let (from, to, _) = BAD[i];
    assert!(MIN.contains(from), "BAD[{i}]: {from} not in MIN");
    MIN.replacen(from, to, 1)
}

fn error_of(text: &str) -> String {
    match Scenario::parse(text) {
        Ok(_) => "(parsed)".to_string(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_inputs_name_their_path() {
    assert!(Scenario::parse(MIN).is_ok(), "{}", error_of(MIN));
    let mut failed = Vec::new();
    for (i, (_, _, path)) in BAD.iter().enumerate() {
        let e = error_of(&bad_input(i));
        if !e.starts_with(path) {
            failed.push(format!("BAD[{i}]: expected {path}…, got {e}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn record(out: &Path, name: &str, sc: &Scenario) {
    let debug = format!("{sc:#?}\n--- with_nemesis(7).faults\n{:#?}\n", sc.with_nemesis(7).faults);
    std::fs::write(out.join(format!("{name}.debug")), debug).unwrap();
    let effective = serde_json::to_string_pretty(&sc.effective()).unwrap();
    std::fs::write(out.join(format!("{name}.effective.json")), effective).unwrap();
}

fn sorted_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
#[ignore = "writes target/scenario-golden/$GOLDEN_LABEL; run by hand to compare parsers"]
fn golden_record() {
    let label = std::env::var("GOLDEN_LABEL").unwrap_or_else(|_| "current".into());
    let out = root().join("target/scenario-golden").join(label);
    std::fs::create_dir_all(&out).unwrap();
    for f in sorted_files(&root().join("scenarios"), "json") {
        let sc = Scenario::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        record(&out, &stem(&f), &sc);
    }
    let omb = root().join("scenarios/omb");
    let variants = [
        ("default", OmbSim::default()),
        (
            "short-2w",
            OmbSim {
                workers: 2,
                brokers: 1,
                test_minutes: Some(0.5),
                warmup_minutes: Some(0.1),
                ..OmbSim::default()
            },
        ),
    ];
    for w in sorted_files(&omb.join("workloads"), "yaml") {
        for d in sorted_files(&omb.join("drivers"), "yaml") {
            let (wl, dr, _) = crate::omb::load(&w, &d).unwrap();
            for (vname, o) in &variants {
                let m = map(&wl, &dr, o);
                let name = format!("omb-{}-{}-{vname}", stem(&w), stem(&d));
                let sc = Scenario::parse(&m.scenario.to_string())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                record(&out, &name, &sc);
            }
        }
    }
    let mut errors = String::new();
    for i in 0..BAD.len() {
        errors.push_str(&format!("BAD[{i}] {}\n", error_of(&bad_input(i))));
    }
    for (name, text) in [("not json", "{"), ("array", "[]"), ("empty", "{}")] {
        errors.push_str(&format!("{name}: {}\n", error_of(text)));
    }
    std::fs::write(out.join("errors.txt"), errors).unwrap();
}
