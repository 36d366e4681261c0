//! `broker serve` as a process: config errors name the key; it prints where it listens and stops
//! cleanly on SIGTERM (clean-shutdown marker written). Real mode only.
#![cfg(not(madsim))]

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

mod support;
use support::process::{self, BIN};

#[test]
fn unknown_config_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--override", "no.such.key=1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no.such.key"));

    let props = dir.path().join("server.properties");
    std::fs::write(&props, "# comment\nnum.partitions=2\nbogus.setting=3\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&props)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus.setting"));
}

#[test]
fn serve_prints_address_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let props = dir.path().join("server.properties");
    std::fs::write(&props, "# a Kafka-style file\nnum.partitions=3\nlog.segment.bytes=1048576\n\nauto.create.topics.enable=true\n").unwrap();
    let data = dir.path().join("data");
    let mut cmd = process::serve(&data);
    cmd.arg("--config").arg(&props).args([
        "--override",
        "message.max.bytes=2000000",
        "--override",
        "loglab.fetch.zero.copy=false",
    ]);
    let (mut child, _out, addr) = process::spawn_listening(&mut cmd, Duration::from_secs(30));
    assert!(addr.starts_with("127.0.0.1:"));
    std::net::TcpStream::connect(&addr).expect("accepts connections");
    let status = process::stop(&mut child, Duration::from_secs(30));
    assert!(status.success());
    assert!(data.join(".kafka_cleanshutdown").exists());
}

#[test]
fn a_bad_fault_plan_is_refused_naming_the_rule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, r#"[{"api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER", "times": 3}, {"api": "Produce", "error": "NO_SUCH_ERROR"}]"#).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--fault-plan")
        .arg(&plan)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rule 1: `error`: unknown Kafka error `NO_SUCH_ERROR`"), "{err}");
}

/// `broker faults push|list|clear` against `broker serve --admin-listen`: exit 0 and JSON on
/// success; exit 1 with the server's message on a refusal or when nothing answers; exit 2 on
/// bad flags.
#[test]
fn faults_command_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = process::serve(&dir.path().join("data"))
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--override", "loglab.admin.token=s3cret"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let admin = loop {
        let line = lines.next().expect("broker output").unwrap();
        assert!(!line.contains("listening on"), "the admin line comes first: {line}");
        if let Some(rest) = line.split("loglab admin on ").nth(1) {
            break rest.trim().to_string();
        }
    };
    assert!(admin.starts_with("http://127.0.0.1:"), "{admin}");
    let faults = |args: &[&str], token: &str| {
        Command::new(BIN)
            .arg("faults")
            .args(args)
            .env("LOGLAB_ADMIN_TOKEN", token)
            .output()
            .unwrap()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let push = ["push", "--admin", &admin, "--api", "Produce", "--error", "NOT_LEADER_OR_FOLLOWER"];
    let out = faults(&[&push[..], &["--times", "3"][..]].concat(), "s3cret");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), r#"{"ids":[1]}"#);
    let out = faults(&push, "");
    assert_eq!(out.status.code(), Some(1), "no token");
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    let out = faults(&["push", "--admin", &admin, "--api", "Produce", "--error", "NOPE"], "s3cret");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`error`"), "names the field: {}", text(&out.stderr));
    let out = faults(&["push", "--admin", &admin, "--delay-ms", "5"], "s3cret");
    assert_eq!(out.status.code(), Some(2), "--api (or --file) is required");

    let out = faults(&["list", "--admin", &admin], "s3cret");
    assert_eq!(out.status.code(), Some(0));
    let rules: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((rules[0]["times"].as_u64(), rules[0]["fired"].as_u64()), (Some(3), Some(0)));
    let out = faults(&["clear", "--admin", &admin, "--token", "s3cret"], "");
    assert_eq!(text(&out.stdout).trim(), r#"{"removed":1}"#);

    process::stop(&mut child, Duration::from_secs(30));
    let out = faults(&["list", "--admin", &admin], "s3cret");
    assert_eq!(out.status.code(), Some(1), "nothing listens any more");
    let out = faults(&["list", "--admin", "ftp://127.0.0.1:1"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("http://"), "{}", text(&out.stderr));
}

/// Starts `broker serve` on `data`; returns the child, its stdout and its address.
fn serve_on(data: &std::path::Path) -> (std::process::Child, process::Stdout, String) {
    process::spawn_listening(&mut process::serve(data), Duration::from_secs(30))
}

#[test]
fn a_second_broker_on_a_locked_data_dir_exits_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut first, _out, _) = serve_on(&data);
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let first_status = process::stop(&mut first, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second broker ran: {stderr}");
    assert!(stderr.contains(&data.display().to_string()), "names the dir: {stderr}");
    assert!(stderr.contains(".lock") && stderr.contains("locked"), "names the lock: {stderr}");
    assert!(first_status.success());
    // The lock goes with its process: a broker starts on the dir again.
    let (mut again, _out2, _) = serve_on(&data);
    assert!(process::stop(&mut again, Duration::from_secs(30)).success());
}
