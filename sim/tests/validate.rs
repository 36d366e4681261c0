//! `cargo simulate validate` without a real broker: each workload of the plan turns into perf
//! arguments and a scenario that say the same thing (parsed by perf's own argument parser and
//! the producer's config parser on one side, by the scenario parser and the simulator's
//! producer config on the other), and `validate.json`'s rows have the stated fields and
//! arithmetic (`cargo sim-test -p sim --test validate`).
#![cfg(madsim)]

use clap::Parser;
use client::calibrate::validate::{plan, Measured, RealRun, TOPIC};
use client::perf::ProduceArgs;
use client::ProducerConfig;
use serde_json::{json, Value};
use sim::scenario::Scenario;

#[derive(Debug, Parser)]
struct Perf {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    Produce(ProduceArgs),
}

fn perf_side(args: &[String]) -> (ProduceArgs, ProducerConfig) {
    let Perf { cmd: Cmd::Produce(a) } =
        Perf::try_parse_from(std::iter::once("perf".to_string()).chain(args.iter().cloned()))
            .unwrap_or_else(|e| panic!("perf {args:?}: {e}"));
    let mut pairs: Vec<(String, String)> = a
        .producer_props
        .iter()
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())).expect("key=value"))
        .collect();
    pairs.push(("bootstrap.servers".into(), a.bootstrap_server.clone().expect("bootstrap")));
    (a, ProducerConfig::from_pairs(pairs).expect("perf's producer config"))
}

#[test]
fn every_workload_is_the_same_on_both_sides() {
    for w in plan() {
        let (a, real) = perf_side(&w.perf_args("127.0.0.1:9092"));
        let text = serde_json::to_string(&sim::validate::scenario(&w, "this-machine")).unwrap();
        let sc = Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", w.name));
        assert_eq!(sc.producers.len(), 1, "{}", w.name);
        let p = &sc.producers[0];
        let simulated =
            sim::clientload::producer_config(p, "p0", &["broker-0:9092".into()]).unwrap();
        let n = &w.name;
        // The producer: the same settings, however each side spells them.
        assert_eq!(real.acks, simulated.acks, "{n}");
        assert_eq!(real.linger_ms, simulated.linger_ms, "{n}");
        assert_eq!(real.batch_size, simulated.batch_size, "{n}");
        assert_eq!(real.compression_type, simulated.compression_type, "{n}");
        assert_eq!(
            real.max_in_flight_requests_per_connection,
            simulated.max_in_flight_requests_per_connection,
            "{n}"
        );
        assert_eq!(real.enable_idempotence, simulated.enable_idempotence, "{n}");
        assert_eq!(real.buffer_memory, simulated.buffer_memory, "{n}");
        // The records, the loop and its length.
        assert_eq!(a.record_size, p.record_bytes, "{n}");
        assert_eq!(p.count, 1, "{n}: one producer");
        match w.rate_records_s {
            None => assert!(a.throughput < 0.0 && p.max_rate, "{n}: a closed loop"),
            Some(rate) => {
                assert_eq!(a.throughput, rate as f64, "{n}: perf paces at the rate");
                assert!(!p.max_rate && p.rate_per_s == rate, "{n}: the twin offers the rate");
                let tick_ms = client::calibrate::validate::PERF_TICK_MS;
                assert_eq!(p.pacing_ns, Some(tick_ms * 1_000_000), "{n}: in perf's bursts");
            }
        }
        // The window: a fixed rate's after the real side's warm-up, a closed loop's from its
        // first acknowledgement (perf's elapsed time counts from its first send).
        assert_eq!(sc.measure_from_ns, None, "{n}");
        match w.rate_records_s {
            None => assert_eq!(sc.measure_warmup_ns, 0, "{n}"),
            Some(_) => assert_eq!(
                sc.measure_warmup_ns,
                client::calibrate::validate::WARMUP_MS * 1_000_000,
                "{n}"
            ),
        }
        assert!(a.distinct_values, "{n}: values a codec sees as the simulator's");
        assert_eq!(a.duration_ms, Some(sc.duration_s * 1000), "{n}");
        assert!(a.num_records >= client::calibrate::validate::records_cap(&w), "{n}");
        // The topic and the brokers.
        assert_eq!((a.topic.as_str(), p.topic.as_str()), (TOPIC, TOPIC), "{n}");
        let t = w.new_topic();
        assert_eq!(sc.topics.len(), 1);
        assert_eq!(sc.topics[0].partitions, t.num_partitions, "{n}");
        assert_eq!(sc.topics[0].replication_factor, i32::from(t.replication_factor), "{n}");
        assert_eq!(sc.brokers, w.brokers, "{n}");
        let overrides: Vec<String> =
            sc.broker.raw.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(overrides, w.broker_overrides(), "{n}: broker serve --override each");
        assert!(sc.host.clients_share_host, "{n}: perf shares the machine");
    }
}

#[test]
fn the_default_profile_file_loads_as_the_scenarios_name_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = sim::validate::default_profile(&root).canonicalize().unwrap();
    let w = &plan()[0];
    let text = serde_json::to_string(&sim::validate::scenario(w, &path.display().to_string()));
    let sc = Scenario::parse(&text.unwrap()).unwrap();
    assert_eq!(sc.host.profile_name.as_deref(), Some("this-machine-2026-12"));
    assert_eq!(sc.host.cpu.cores, 2, "profiles/this-machine.json's cores");
}

fn run(mb_s: f64, p99_ms: f64, load: &str) -> RealRun {
    RealRun {
        mb_s,
        p99_ms,
        p50_ms: Some(p99_ms / 2.0),
        records: 1000,
        errors: 0,
        elapsed_s: 2.0,
        loadavg: load.into(),
        broker_cpu_s: 1.0,
        client_cpu_s: 1.0,
    }
}

#[test]
fn validate_json_rows_have_the_stated_fields_and_arithmetic() {
    let w = plan()[1].clone();
    let measured = Measured {
        workload: w.clone(),
        runs: vec![
            run(100.0, 4.0, "1.0 2 3"),
            run(130.0, 8.0, "2.0 2 3"),
            run(90.0, 2.0, "3.0 2 3"),
        ],
    };
    let summary = json!({"throughput": {"achieved": {"produce_bytes_per_s": 110e6},
                                        "window_s": [1.0, 3.0], "acked": 200_000},
                         "latency": {"produce_ms": {"p99": 6.0}},
                         "cpu": {"shared-host": {"busy_ns": 2.048e9}}});
    let m = serde_json::to_value(&measured).unwrap();
    let row = sim::validate::row(&m, &summary, std::path::Path::new("out/sim/x"));
    for k in [
        "workload",
        "measured_mb_s",
        "predicted_mb_s",
        "ratio",
        "measured_p99_ms",
        "predicted_p99_ms",
        "p99_ratio",
        "loadavg",
    ] {
        assert!(row.get(k).is_some(), "rows[].{k} missing: {row}");
    }
    assert_eq!(row["workload"], json!(w.name));
    assert_eq!(row["kind"], json!("closed_loop"));
    assert_eq!(row["measured_mb_s"], json!(100.0), "the median of the runs, not the mean");
    assert_eq!(row["measured"]["mb_s"]["min"], json!(90.0));
    assert_eq!(row["measured"]["mb_s"]["max"], json!(130.0));
    assert_eq!(row["predicted_mb_s"], json!(110.0), "10^6 bytes per MB");
    assert!((row["ratio"].as_f64().unwrap() - 1.1).abs() < 1e-12, "predicted / measured");
    assert_eq!(row["within_goal"], json!(true));
    assert_eq!(row["measured_p99_ms"], json!(4.0));
    assert!((row["p99_ratio"].as_f64().unwrap() - 1.5).abs() < 1e-12);
    assert_eq!(row["loadavg"], json!(["1.0 2 3", "2.0 2 3", "3.0 2 3"]), "one per measured run");
    assert_eq!(row["measured"]["cores_busy"]["median"], json!(1.0), "2 CPU s over 2 s");
    // 2 CPU s over 200 MB (10), 260 MB (7.7), 180 MB (11.1); 2.048 s busy over 200,000
    // acknowledged records of 1,024 bytes.
    assert_eq!(row["measured"]["cpu_ns_per_byte"]["median"], json!(10.0));
    assert_eq!(row["predicted"]["cpu_ns_per_byte"], json!(10.0));
    assert_eq!(row["cpu_per_byte_ratio"], json!(1.0), "predicted / measured CPU per byte");

    // A failed simulation leaves the prediction empty, not zero.
    let failed = sim::validate::row(&m, &Value::Null, std::path::Path::new("x"));
    assert!(failed["predicted_mb_s"].is_null() && failed["ratio"].is_null());

    let doc = sim::validate::document(
        "this-machine",
        &json!({"name": "this-machine"}),
        &json!({"loadavg_before": "1 1 1", "loadavg_after": "2 2 2"}),
        vec![row, failed],
    );
    assert_eq!(doc["profile"]["name"], json!("this-machine"));
    assert_eq!(doc["rows"].as_array().map(Vec::len), Some(2));
    let table = sim::validate::table(&doc);
    assert!(table.contains(&w.name) && table.contains("1.10"), "{table}");
    assert_eq!(
        doc["counts"],
        json!({"closed_loop": 2, "closed_loop_within_goal": 1, "fixed_rate": 0})
    );
    assert!(table.contains("1 of 2 closed-loop rows within the goal"), "{table}");
}

/// A fixed-rate row compares latency: its throughput ratio is reported but not judged (both
/// sides keep the offered rate), `rate_kept` says whether each side did, and the medians of
/// p50 and p99 are compared.
#[test]
fn a_fixed_rate_row_is_judged_by_its_latency_not_its_throughput() {
    let w = plan().into_iter().find(|w| w.rate_records_s.is_some()).expect("a fixed-rate workload");
    let offered = w.offered_mb_s().expect("offered");
    let measured = Measured {
        workload: w.clone(),
        runs: vec![
            run(offered, 4.0, "1 1 1"),
            run(offered * 0.9, 6.0, "1 1 1"),
            run(offered, 2.0, "1 1 1"),
        ],
    };
    let summary = json!({"throughput": {"achieved": {"produce_bytes_per_s": offered * 2.0 * 1e6},
                                        "window_s": [1.0, 3.0]},
                         "latency": {"produce_ms": {"p50": 3.0, "p99": 8.0}},
                         "cpu": {"shared-host": {"busy_ns": 1e9}}});
    let m = serde_json::to_value(&measured).unwrap();
    let row = sim::validate::row(&m, &summary, std::path::Path::new("x"));
    assert_eq!(row["kind"], json!("fixed_rate"));
    assert_eq!(row["within_goal"], Value::Null, "a ratio of 2 is not judged: {row}");
    assert!((row["ratio"].as_f64().unwrap() - 2.0).abs() < 1e-9, "but reported");
    assert_eq!(row["offered_mb_s"], json!(offered));
    assert_eq!(row["rate_kept"]["measured"], json!(1.0), "the median run kept the rate");
    assert!((row["rate_kept"]["predicted"].as_f64().unwrap() - 2.0).abs() < 1e-9);
    assert_eq!(row["measured_p50_ms"], json!(2.0), "median of 2, 3, 1");
    assert!((row["p50_ratio"].as_f64().unwrap() - 1.5).abs() < 1e-12);
    assert!((row["p99_ratio"].as_f64().unwrap() - 2.0).abs() < 1e-12);
    let doc = sim::validate::document("p", &json!({}), &json!({}), vec![row]);
    assert_eq!(doc["counts"]["fixed_rate"], json!(1));
    let table = sim::validate::table(&doc);
    assert!(table.contains("2.00~"), "{table}");
    assert!(table.contains("0 of 0 closed-loop rows within the goal"), "{table}");
}

/// One lz4 batch of up to `batch.size` (16 KiB) filled with `value(i)` for i = 0, 1, ...:
/// its size on the wire (what the CRC, the disk and the loopback see) over its records' size.
fn lz4_batch_ratio(value: impl Fn(u64) -> Vec<u8>) -> f64 {
    let mut b = records::BatchBuilder::new(Vec::new(), records::Compression::Lz4, 16_384);
    let mut i = 0;
    while b.try_append(0, None, Some(&value(i)), &[]).expect("append").is_some() {
        i += 1;
    }
    let raw = b.uncompressed_records_size() as f64;
    let wire = b.finish().expect("finish").len() as f64;
    wire / raw
}

/// The lz4 twin offers the codec the bytes the real run offered: perf's `--distinct-values`
/// (which the plan's perf arguments pass) and the simulator's record values
/// (`sim::workload::encode_value`) both give lz4 batches of about their records' size (64
/// random symbols: lz4 has no entropy coder, nothing repeats within a batch but the twin's id
/// prefixes: 7 % at 100 B, under 2 % at 1 KiB), at 100 B and 1 KiB. Goes
/// red if either side sends a repeated payload — perf's default (Kafka's one payload for every
/// record) compresses over 10× here, which the control below shows — or if the plan stops
/// passing `--distinct-values`.
#[test]
fn the_lz4_twin_offers_the_bytes_perf_offers() {
    for w in plan().iter().filter(|w| w.compression == "lz4") {
        assert!(w.perf_args("h:1").iter().any(|a| a == "--distinct-values"), "{}", w.name);
        let size = w.record_bytes as usize;
        let perf = client::perf::Values::new(size, true);
        let real = lz4_batch_ratio(|i| perf.get(i).to_vec());
        // Ids from 1: id 0 (the first record of producer 0, once a run) seeds the filler's
        // xorshift with 0 and is all '0's.
        let twin = lz4_batch_ratio(|i| sim::workload::encode_value(i + 1, size));
        assert!((0.99..1.02).contains(&real), "{}: perf's values: lz4 ratio {real}", w.name);
        // The twin's values start with their 8-byte big-endian id, whose leading zero bytes
        // repeat from record to record: at 100 B lz4 finds them (0.93), at 1 KiB hardly (0.99).
        let floor = if size < 1024 { 0.92 } else { 0.98 };
        assert!((floor..1.02).contains(&twin), "{}: the twin's values: lz4 ratio {twin}", w.name);
        let kafka_default = client::perf::Values::new(size, false);
        let repeated = lz4_batch_ratio(|i| kafka_default.get(i).to_vec());
        assert!(repeated < 0.1, "{}: the check sees a repeated payload ({repeated})", w.name);
    }
}

/// Runs a twin scenario (JSON) in-process; its `summary.json`, after asserting every check held.
fn simulate(scenario: &Value, label: &str) -> Value {
    let sc = Scenario::parse(&scenario.to_string()).expect("parses");
    let opts = sim::run::RunOptions {
        keep_trace: false,
        scenario_path: "(test)".into(),
        out_dir: format!("out/test-validate/{}-{label}", sc.name),
        omb: None,
    };
    let out = sim::run::run(&sc, sc.seed, &opts);
    assert_eq!(out.exit_code, 0, "{label}: {}", out.summary["checks"]);
    out.summary
}

/// `measure.warmup` moves the window's start that far past the first acknowledgement, and in the
/// plan's 3-node fixed-rate twin it is what leaves the cluster's start-up (the first produce
/// requests waiting for the followers' first fetches) out of the latency: without it that
/// start-up is the run's p99. Both runs are the same simulation (same seed, same trace); only
/// the window differs.
#[test]
fn a_fixed_rate_twin_measures_after_its_warm_up() {
    let w = plan()
        .into_iter()
        .find(|w| w.rate_records_s.is_some() && w.brokers == 3)
        .expect("a 3-node fixed-rate workload");
    let twin = sim::validate::scenario(&w, "this-machine");
    assert_eq!(twin["measure"]["warmup"], json!("500ms"));
    let mut cold = twin.clone();
    cold["measure"] = json!({});
    let (warm, cold) = (simulate(&twin, "warm"), simulate(&cold, "cold"));
    assert_eq!(warm["trace_hash"], cold["trace_hash"], "the window changes no event");
    let start = |s: &Value| s["throughput"]["window_s"][0].as_f64().unwrap_or(f64::NAN);
    assert!(
        (start(&warm) - start(&cold) - 0.5).abs() < 1e-9,
        "{} vs {}",
        start(&warm),
        start(&cold)
    );
    let p99 = |s: &Value| s["latency"]["produce_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
    let count = |s: &Value| s["latency"]["produce_ms"]["count"].as_u64().unwrap_or(0);
    assert!(
        count(&warm) > 10_000 && count(&warm) < count(&cold),
        "{} of {}",
        count(&warm),
        count(&cold)
    );
    assert!(p99(&cold) > 3.0 * p99(&warm), "p99 cold {} ms, warm {} ms", p99(&cold), p99(&warm));
}

/// A fixed-rate twin hands records over as perf does (`pacing`: every record due before the
/// next 2 ms tick at once, each timed from then), not spread around the rate: at 100 B and
/// 100,000 a second a burst fills its batches at once, so the median record waits for no
/// batch to fill. Spread, the same rate fills a batch over ~1 ms and the median record waits
/// for it. Red if `pacing` is ignored (the two runs would be the same).
#[test]
fn a_paced_twin_sends_in_bursts_as_perf_does() {
    let w = plan()
        .into_iter()
        .find(|w| w.rate_records_s.is_some() && w.record_bytes == 100)
        .expect("a 100 B fixed-rate workload");
    let mut paced = sim::validate::scenario(&w, "this-machine");
    paced["duration_s"] = json!(2);
    let mut spread = paced.clone();
    spread["workload"]["producers"][0].as_object_mut().map(|p| p.remove("pacing"));
    let (p, s) = (simulate(&paced, "paced"), simulate(&spread, "spread"));
    let p50 = |s: &Value| s["latency"]["produce_ms"]["p50"].as_f64().unwrap_or(f64::NAN);
    let acked = |s: &Value| s["throughput"]["acked"].as_f64().unwrap_or(0.0);
    assert!(p50(&p) < 0.5 * p50(&s), "p50 paced {} ms, spread {} ms", p50(&p), p50(&s));
    // Both offer the rate: within a tenth of each other.
    assert!((acked(&p) / acked(&s) - 1.0).abs() < 0.1, "{} vs {}", acked(&p), acked(&s));
}

/// The producer's appending thread (perf's thread that calls `send`) is charged apart from its
/// sender (`cpu.client_append`: `Work::ClientAppendRecords` and `ClientAppendBytes` in the
/// appending task, the rest of the per-record work in the sender's `ClientRecords`): the two
/// run on different threads, as in the real client, so at 100 B — where the per-record work is
/// most of the client's — the twin gets further than with all of it in the sender, for the same
/// CPU a record. Red if the appending task's charges are dropped (no `ClientAppendRecords`) or
/// made in the sender (no gain).
#[test]
fn the_appending_thread_is_charged_apart_from_the_sender() {
    let w = plan()
        .into_iter()
        .find(|w| {
            w.rate_records_s.is_none()
                && w.brokers == 1
                && w.record_bytes == 100
                && w.compression == "none"
        })
        .expect("a 100 B closed-loop workload");
    let mut split = sim::validate::scenario(&w, "this-machine");
    split["duration_s"] = json!(1);
    let profile: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../profiles/this-machine.json"
        ))
        .expect("the shipped profile"),
    )
    .expect("JSON");
    let cpu = &profile["cpu"];
    let append_ns = cpu["client_append"]["per_op_ns"].as_u64().unwrap_or(0);
    let append_ps = cpu["client_append"]["per_byte_ps"].as_u64().unwrap_or(0);
    assert!(append_ns > 0, "the shipped profile measures the appending thread: {cpu}");
    // The same costs, all in the sender: the appending thread's per record into client_record,
    // its per byte into client_request's.
    let mut folded = split.clone();
    folded["cluster"]["host"]["cpu"] = json!({
        "client_append": {"per_op_ns": 0, "per_byte_ps": 0},
        "client_record": {"per_op_ns": 0,
            "per_byte_ps": cpu["client_record"]["per_byte_ps"].as_u64().unwrap_or(0) + append_ns * 1_000},
        "client_request": {"per_op_ns": cpu["client_request"]["per_op_ns"],
            "per_byte_ps": cpu["client_request"]["per_byte_ps"].as_u64().unwrap_or(0) + append_ps},
    });
    let (s, f) = (simulate(&split, "split"), simulate(&folded, "folded"));
    let work = |s: &Value, k: &str, f: &str| {
        s["cpu"]["shared-host"]["per_work"][k][f].as_u64().unwrap_or(0) as f64
    };
    let (appended, sent) =
        (work(&s, "ClientAppendRecords", "bytes"), work(&s, "ClientRecords", "bytes"));
    // Every record is charged once to each; the appending task pays when a batch fills or a new
    // one opens, so the last batch's records may be unpaid.
    assert!(appended <= sent && appended + 1_000.0 >= sent, "{appended} appended, {sent} sent");
    assert_eq!(work(&s, "ClientAppendBytes", "bytes"), 100.0 * appended, "100 B each");
    assert_eq!(work(&f, "ClientAppendRecords", "busy_ns"), 0.0, "folded: all in the sender");
    // The same client CPU a record either way ...
    let client_ns = |s: &Value| {
        ["ClientAppendRecords", "ClientAppendBytes", "ClientRecords", "ClientRequest"]
            .iter()
            .map(|k| work(s, k, "busy_ns"))
            .sum::<f64>()
            / work(s, "ClientRecords", "bytes").max(1.0)
    };
    let (cs, cf) = (client_ns(&s), client_ns(&f));
    assert!((cs / cf - 1.0).abs() < 0.05, "client ns a record: split {cs:.0}, folded {cf:.0}");
    // ... but in parallel: further in the same time.
    let mb_s = |s: &Value| {
        s["throughput"]["achieved"]["produce_bytes_per_s"].as_f64().unwrap_or(0.0) / 1e6
    };
    assert!(mb_s(&s) > 1.2 * mb_s(&f), "split {:.1} MB/s, folded {:.1}", mb_s(&s), mb_s(&f));
}
