//! Host profiles change what the model predicts, in the direction the hardware says
//! (`cargo sim-test -p sim --test profiles`).
#![cfg(madsim)]

use sim::run::{run, RunOptions, RunOutput};
use sim::scenario::Scenario;

/// One broker, one closed-loop producer of 1 KB records on one client host, `host` as the
/// scenario's `cluster.host`, `topic_config` on the topic.
fn scenario(name: &str, host: &str, topic_config: &str) -> Scenario {
    let text = format!(
        r#"{{"name": "{name}", "seed": 1, "duration_s": 3, "measure": {{"from": "1s"}},
            "cluster": {{"brokers": 1, "mode": "network", "host": {host}}},
            "topics": [{{"name": "events", "partitions": 2, "config": {topic_config}}}],
            "workload": {{"producers": [{{"count": 1, "topic": "events", "rate": "max",
                "record.bytes": 1000, "acks": 1, "linger.ms": 5, "batch.size": 65536}}]}}}}"#
    );
    Scenario::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn go(sc: &Scenario) -> RunOutput {
    let opts = RunOptions {
        keep_trace: false,
        scenario_path: format!("(test) {}", sc.name),
        out_dir: format!("out/test-profiles/{}", sc.name),
        omb: None,
    };
    let out = run(sc, sc.seed, &opts);
    let checks = serde_json::to_string_pretty(&out.summary["checks"]).unwrap_or_default();
    assert_eq!(out.exit_code, 0, "{}: {checks}", sc.name);
    out
}

fn achieved(out: &RunOutput) -> f64 {
    out.summary["throughput"]["achieved"]["produce_bytes_per_s"].as_f64().unwrap_or(f64::NAN)
}

fn p99_ms(out: &RunOutput) -> f64 {
    out.summary["latency"]["produce_ms"]["p99"].as_f64().unwrap_or(f64::NAN)
}

/// An fsync per message set (`flush.messages` = 1): on the hdd-7200 profile every fsync pays a
/// seek and half a rotation, on nvme-generic 20 µs, so the HDD broker achieves less and its
/// produce latency is higher. Same workload, same seed, only the profile differs.
#[test]
fn an_hdd_profile_gives_less_throughput_and_more_latency_than_nvme_when_fsyncing() {
    let nic = r#""nic": "1Gbps""#;
    let nvme = go(&scenario(
        "p-nvme",
        &format!(r#"{{"profile": "nvme-generic", {nic}}}"#),
        r#"{"flush.messages": 1}"#,
    ));
    let hdd = go(&scenario(
        "p-hdd",
        &format!(r#"{{"profile": "hdd-7200", {nic}}}"#),
        r#"{"flush.messages": 1}"#,
    ));
    let (a_nvme, a_hdd) = (achieved(&nvme), achieved(&hdd));
    assert!(a_hdd < 0.5 * a_nvme, "hdd {a_hdd} B/s vs nvme {a_nvme} B/s");
    assert!(
        p99_ms(&hdd) > 2.0 * p99_ms(&nvme),
        "p99 hdd {} ms vs nvme {} ms",
        p99_ms(&hdd),
        p99_ms(&nvme)
    );
    assert_eq!(hdd.summary["settings"]["cluster"]["host"]["profile"], "hdd-7200 (shipped)");
}

/// Clients sharing the brokers' machine (`clients_share_host`) charge their own work (each
/// request they send) to the brokers' core pool: with an expensive request (1 ms) on one core
/// the host is CPU-bound, so the same profile with the clients on their own machines achieves
/// more.
#[test]
fn clients_sharing_the_host_lower_what_a_cpu_bound_host_achieves() {
    let host = |share: bool| {
        format!(
            r#"{{"profile": "nvme-generic", "cores": 1, "clients_share_host": {share},
                 "cpu": {{"request": {{"per_op_ns": 1000000, "per_byte_ps": 0}},
                         "client_request": {{"per_op_ns": 1000000, "per_byte_ps": 0}}}}}}"#
        )
    };
    let shared = go(&scenario("p-shared", &host(true), "{}"));
    let apart = go(&scenario("p-apart", &host(false), "{}"));
    let (a_shared, a_apart) = (achieved(&shared), achieved(&apart));
    assert!(a_shared < 0.8 * a_apart, "shared {a_shared} B/s vs separate {a_apart} B/s");
    let cpu = shared.summary["cpu"].as_object().cloned().unwrap_or_default();
    assert!(cpu.contains_key("shared-host") && cpu.len() == 1, "one pool: {:?}", cpu.keys());
    // Loopback: each produced byte is copied in and out of a socket on the shared pool.
    let loopback = cpu["shared-host"]["per_work"]["Loopback"]["bytes"].as_u64().unwrap_or(0);
    let produced = achieved(&shared) as u64;
    assert!(loopback > 2 * produced, "loopback {loopback} B for {produced} B/s produced");
    let cpu = apart.summary["cpu"].as_object().cloned().unwrap_or_default();
    assert!(cpu.contains_key("broker-0") && cpu.contains_key("client"), "{:?}", cpu.keys());
    for (host, c) in &cpu {
        assert!(c["per_work"].get("Loopback").is_none(), "{host}: separate machines: {c}");
    }
}

/// On one machine (`clients_share_host`) the bytes between clients and brokers do not cross a
/// NIC: a profile's slow `nic` bounds separate machines, not loopback, which costs CPU.
#[test]
fn loopback_is_not_bounded_by_the_nic() {
    let host = |share: bool| {
        format!(
            r#"{{"profile": "nvme-generic", "cores": 8, "nic": "20Mbps", "clients_share_host": {share}}}"#
        )
    };
    let shared = go(&scenario("p-loop", &host(true), "{}"));
    let apart = go(&scenario("p-nic", &host(false), "{}"));
    let (a_shared, a_apart) = (achieved(&shared), achieved(&apart));
    assert!(a_apart < 2.6e6, "20 Mb/s bounds separate machines: {a_apart} B/s");
    assert!(a_shared > 2.0 * a_apart, "loopback {a_shared} B/s vs NIC {a_apart} B/s");
}
