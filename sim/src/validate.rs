//! `cargo simulate validate [--profile FILE] --out DIR`: the throughput model against the real
//! broker. Every workload of the plan (`client::calibrate::validate::plan`, each defined once)
//! runs on the real release broker under `perf produce` (the real-world binary `validate` of
//! the client crate, built with the broker and `perf` by `cargo build --release -p broker -p
//! client`), then in the simulator with the host profile (default `profiles/this-machine.json`)
//! as a scenario derived from the same workload ([`scenario`]), each scenario in its own
//! process as `sweep` runs seeds. Writes `DIR/measured.json` (every real run),
//! `DIR/sim/<workload>/{scenario.json,summary.json,...}` and `DIR/validate.json` ([`row`]:
//! measured and predicted throughput and p99 latency with their ratios, the load average at
//! each measured run), and prints the table.

use std::path::{Path, PathBuf};

use client::calibrate::validate::{Workload, PERF_TICK_MS, TOPIC, WARMUP_MS};
use net_model::profile::Measurement;
use serde_json::{json, Map, Value};

/// The ratio band the model aims for (predicted / measured throughput).
pub const GOAL: (f64, f64) = (0.85, 1.15);

/// A producer setting as the scenario file writes it (numbers and booleans as JSON's).
fn json_value(v: &str) -> Value {
    match v {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => v.parse::<u64>().map_or_else(|_| Value::String(v.into()), Value::from),
    }
}

/// The simulated twin of `w`: the same brokers, topic, producer settings and duration, a
/// closed-loop producer or one at the workload's fixed rate, on host profile `profile` (a shipped name or a file path) with the
/// clients on the brokers' machine (`clients_share_host`, as perf shares it for real).
pub fn scenario(w: &Workload, profile: &str) -> Value {
    let mut producer = Map::new();
    producer.insert("topic".into(), json!(TOPIC));
    let rate = w.rate_records_s.map_or_else(|| json!("max"), |r| json!(format!("{r}/s")));
    producer.insert("rate".into(), rate);
    if w.rate_records_s.is_some() {
        // perf's bursts, not records spread around the rate.
        producer.insert("pacing".into(), json!(format!("{PERF_TICK_MS}ms")));
    }
    producer.insert("record.bytes".into(), json!(w.record_bytes));
    for (k, v) in w.producer_props() {
        producer.insert(k.into(), json_value(&v));
    }
    let config: Map<String, Value> =
        w.broker_config().into_iter().map(|(k, v)| (k.to_string(), json_value(&v))).collect();
    let t = w.new_topic();
    // A closed loop's throughput counts from its first record, as perf's elapsed time does; a
    // fixed rate's latency is compared in steady state, after the real side's warm-up.
    let measure = match w.rate_records_s {
        Some(_) => json!({"warmup": format!("{WARMUP_MS}ms")}),
        None => json!({}),
    };
    json!({
        "name": format!("validate-{}", w.name),
        "description": format!(
            "cargo simulate validate: workload {} (the real side: perf produce for {} ms against broker serve on this machine)",
            w.name, w.duration_ms
        ),
        "seed": 1,
        "duration_s": w.duration_ms.div_ceil(1000),
        "cluster": {
            "brokers": w.brokers,
            "mode": "network",
            "host": {"profile": profile, "clients_share_host": true},
            "config": config,
        },
        "topics": [{"name": t.name, "partitions": t.num_partitions,
                    "replication.factor": t.replication_factor}],
        "workload": {"producers": [Value::Object(producer)]},
        "measure": measure,
    })
}

/// Median, min and max of the finite `xs` (`None` without any).
fn spread(xs: &[f64], unit: &str) -> Option<Measurement> {
    let f: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).take(100).collect();
    (!f.is_empty()).then(|| Measurement::of(&f, unit, ""))
}

fn ratio(predicted: Option<f64>, measured: Option<f64>) -> Value {
    match (predicted, measured) {
        (Some(p), Some(m)) if m > 0.0 => json!(p / m),
        _ => Value::Null,
    }
}

/// CPU time per payload byte, independent of how much of the machine others took: measured per
/// run (the brokers' and perf's CPU over the run's bytes), and predicted as the twin's whole
/// run's core time over the payload of every record it acknowledged (a warm-up window leaves
/// records out of the throughput, not out of the CPU).
fn cpu_per_byte(runs: &[Value], summary: &Value, w: &Value) -> (Option<Measurement>, Value) {
    let ns_per_byte: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let cpu = r["broker_cpu_s"].as_f64()? + r["client_cpu_s"].as_f64()?;
            let bytes = r["mb_s"].as_f64()? * 1e6 * r["elapsed_s"].as_f64()?;
            (bytes > 0.0).then(|| cpu * 1e9 / bytes)
        })
        .collect();
    let busy_ns: f64 = summary["cpu"]
        .as_object()
        .map_or(0.0, |m| m.values().filter_map(|c| c["busy_ns"].as_f64()).sum());
    let acked_bytes = summary["throughput"]["acked"].as_f64().zip(w["record_bytes"].as_f64());
    let predicted = match acked_bytes.map(|(n, b)| n * b) {
        Some(bytes) if bytes > 0.0 && busy_ns > 0.0 => json!(busy_ns / bytes),
        _ => Value::Null,
    };
    (spread(&ns_per_byte, "ns/B"), predicted)
}

/// One row of `validate.json` from the workload's measured runs (`measured`: the client
/// crate's `validate_real::Measured` as JSON) and its simulated `summary` (`Null` if the
/// simulation failed).
pub fn row(measured: &Value, summary: &Value, scenario_dir: &Path) -> Value {
    let w = &measured["workload"];
    let runs = measured["runs"].as_array().map_or(&[][..], Vec::as_slice);
    let field = |k: &str| runs.iter().filter_map(|r| r[k].as_f64()).collect::<Vec<f64>>();
    let mb = spread(&field("mb_s"), "MB/s");
    let p99 = spread(&field("p99_ms"), "ms");
    let cores: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let cpu = r["broker_cpu_s"].as_f64()? + r["client_cpu_s"].as_f64()?;
            Some(cpu / r["elapsed_s"].as_f64()?.max(1e-9))
        })
        .collect();
    let predicted_mb =
        summary["throughput"]["achieved"]["produce_bytes_per_s"].as_f64().map(|b| b / 1e6);
    let (measured_ns_per_byte, predicted_ns_per_byte) = cpu_per_byte(runs, summary, w);
    let cpu_ratio =
        ratio(predicted_ns_per_byte.as_f64(), measured_ns_per_byte.as_ref().map(|m| m.median));
    let predicted_p99 = summary["latency"]["produce_ms"]["p99"].as_f64();
    let p50 = spread(&field("p50_ms"), "ms");
    let predicted_p50 = summary["latency"]["produce_ms"]["p50"].as_f64();
    let ratio_mb = ratio(predicted_mb, mb.as_ref().map(|m| m.median));
    // A fixed rate is kept by both sides below saturation: its throughput ratio is ~1 by
    // construction, so only closed loops are judged against the goal.
    let offered_mb =
        w["rate_records_s"].as_f64().zip(w["record_bytes"].as_f64()).map(|(r, b)| r * b / 1e6);
    let within = match offered_mb {
        Some(_) => None,
        None => ratio_mb.as_f64().map(|r| (GOAL.0..=GOAL.1).contains(&r)),
    };
    json!({
        "workload": w["name"],
        "kind": if offered_mb.is_some() { "fixed_rate" } else { "closed_loop" },
        "spec": w,
        "offered_mb_s": offered_mb,
        "rate_kept": offered_mb.map(|o| json!({
            "measured": mb.as_ref().map(|m| m.median / o),
            "predicted": predicted_mb.map(|p| p / o),
        })),
        "measured_mb_s": mb.as_ref().map(|m| m.median),
        "predicted_mb_s": predicted_mb,
        "ratio": ratio_mb,
        "measured_p99_ms": p99.as_ref().map(|m| m.median),
        "predicted_p99_ms": predicted_p99,
        "p99_ratio": ratio(predicted_p99, p99.as_ref().map(|m| m.median)),
        "measured_p50_ms": p50.as_ref().map(|m| m.median),
        "predicted_p50_ms": predicted_p50,
        "p50_ratio": ratio(predicted_p50, p50.as_ref().map(|m| m.median)),
        "within_goal": within,
        "cpu_per_byte_ratio": cpu_ratio,
        "loadavg": runs.iter().map(|r| r["loadavg"].clone()).collect::<Vec<_>>(),
        "measured": {
            "mb_s": mb,
            "p99_ms": p99,
            "p50_ms": p50,
            "cores_busy": spread(&cores, "cores"),
            "cpu_ns_per_byte": measured_ns_per_byte,
            "runs": runs,
        },
        "predicted": {
            "scenario": scenario_dir.join("scenario.json"),
            "summary": scenario_dir.join("summary.json"),
            "cpu": summary["cpu"].clone(),
            "cpu_ns_per_byte": predicted_ns_per_byte,
            "window_s": summary["throughput"]["window_s"].clone(),
        },
    })
}

/// `validate.json`: the profile used, the goal, the measuring's load averages and the rows.
pub fn document(profile: &str, profile_json: &Value, measured: &Value, rows: Vec<Value>) -> Value {
    json!({
        "command": "cargo simulate validate",
        "profile": {"spec": profile, "name": profile_json["name"].clone(),
                    "calibration": profile_json["calibration"].clone(), "profile": profile_json},
        "goal": {"ratio": [GOAL.0, GOAL.1]},
        "throughput_unit": "MB/s of record payload (10^6 bytes), measured: records × record bytes / perf's elapsed time; predicted: summary.json throughput.achieved.produce_bytes_per_s",
        "cpu_ns_per_byte": "CPU time per payload byte: measured, the brokers' and perf's CPU seconds over the bytes of the run; predicted, the core pool's busy time over the whole simulated run (set-up and read-back included) divided by the payload bytes of every record acknowledged in it (summary.json throughput.acked). Independent of the machine's load, unlike MB/s; `cpu_per_byte_ratio` = predicted / measured",
        "p99_unit": "ms, send → acknowledgement (perf) and record created → acknowledged (summary.json latency.produce_ms)",
        "fixed_rate": "rows of kind fixed_rate offer a fixed rate (perf --throughput N, the scenario's rate N/s) below saturation: both sides keep it (rate_kept: achieved / offered), so their throughput ratio is not judged (within_goal null); their latency percentiles (p50, p99) are the pipeline's, not a full buffer's",
        "counts": counts(&rows),
        "loadavg_before": measured["loadavg_before"].clone(),
        "loadavg_after": measured["loadavg_after"].clone(),
        "rows": rows,
    })
}

/// How many rows of each kind, and how many closed loops within the goal.
fn counts(rows: &[Value]) -> Value {
    let closed = rows.iter().filter(|r| r["kind"] == json!("closed_loop")).count();
    let within = rows.iter().filter(|r| r["within_goal"] == json!(true)).count();
    json!({"closed_loop": closed, "closed_loop_within_goal": within, "fixed_rate": rows.len() - closed})
}

fn fmt(v: &Value, prec: usize) -> String {
    v.as_f64().map_or_else(|| "-".into(), |x| format!("{x:.prec$}"))
}

/// The table printed on stdout.
pub fn table(doc: &Value) -> String {
    let mut s = format!(
        "{:<30} {:>22} {:>9} {:>6} {:>9} {:>8} {:>12} {:>9} {:>6} {:>11} {:>9} {:>6}  {}\n",
        "workload",
        "real MB/s (min-max)",
        "sim MB/s",
        "ratio",
        "real p50",
        "sim p50",
        "real p99 ms",
        "sim p99",
        "p99 r",
        "real CPU/B",
        "sim CPU/B",
        "CPU r",
        "load (1 min) per run"
    );
    for r in doc["rows"].as_array().map_or(&[][..], Vec::as_slice) {
        let m = &r["measured"]["mb_s"];
        let real =
            format!("{} ({}-{})", fmt(&m["median"], 1), fmt(&m["min"], 0), fmt(&m["max"], 0));
        let load: Vec<String> = r["loadavg"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|l| l.as_str().unwrap_or("").split(' ').next().unwrap_or("").to_string())
            .collect();
        let flag = match (&r["kind"], &r["within_goal"]) {
            (k, _) if k == "fixed_rate" => "~",
            (_, w) if w == &json!(true) => " ",
            _ => "*",
        };
        s += &format!(
            "{:<30} {:>22} {:>9} {:>5}{flag} {:>9} {:>8} {:>12} {:>9} {:>6} {:>8} ns {:>6} ns {:>6}  {}\n",
            r["workload"].as_str().unwrap_or(""),
            real,
            fmt(&r["predicted_mb_s"], 1),
            fmt(&r["ratio"], 2),
            fmt(&r["measured_p50_ms"], 2),
            fmt(&r["predicted_p50_ms"], 2),
            fmt(&r["measured_p99_ms"], 2),
            fmt(&r["predicted_p99_ms"], 2),
            fmt(&r["p99_ratio"], 2),
            fmt(&r["measured"]["cpu_ns_per_byte"]["median"], 1),
            fmt(&r["predicted"]["cpu_ns_per_byte"], 1),
            fmt(&r["cpu_per_byte_ratio"], 2),
            load.join(" ")
        );
    }
    let c = &doc["counts"];
    s + &format!(
        "* ratio outside {}-{}; ~ a fixed-rate row (its latency is compared, not its throughput)\n{} of {} closed-loop rows within the goal\n",
        GOAL.0, GOAL.1, c["closed_loop_within_goal"], c["closed_loop"]
    )
}

/// The default profile: `profiles/this-machine.json` of this checkout.
pub fn default_profile(root: &Path) -> PathBuf {
    root.join("profiles/this-machine.json")
}

#[cfg(madsim)]
pub use cmd::run;

#[cfg(madsim)]
mod cmd;
