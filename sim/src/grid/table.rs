//! A grid point's row (from its run's `summary.json`), the bottleneck rule, and `grid.csv`.
//!
//! **The bottleneck rule**, in order:
//! 1. the resource with the highest utilization inside the throughput window, when it is at
//!    least [`SATURATED`] (0.9): a resource busy 90 % of the window has no room left for the
//!    bursts the workload brings, so its queue, not the workload, sets the pace;
//! 2. else `offered load`, when producers have an offered rate and achieved at least
//!    [`OFFERED_MET`] (0.95) of it: nothing limited the run but what it was asked to do;
//! 3. else `latency/flow control`: no resource is saturated and the offered rate (or, for
//!    closed-loop producers, as much as they can send) was not reached, so the limit is a
//!    round trip times a window: `max.in.flight.requests.per.connection` × `batch.size` per
//!    round trip, `linger.ms`, the acks' wait for followers, a consumer's fetch wait
//!    (Little's law: throughput = requests in flight / latency).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

/// A resource this busy (share of the window) is the bottleneck.
pub const SATURATED: f64 = 0.9;
/// Achieved / offered at least this: the offered load was met.
pub const OFFERED_MET: f64 = 0.95;

pub const OFFERED_LOAD: &str = "offered load";
pub const FLOW_CONTROL: &str = "latency/flow control";
/// A point whose run wrote no summary.
pub const NO_RUN: &str = "none (the run crashed: no summary)";

/// What the rule needs from a summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub utilization: BTreeMap<String, f64>,
    pub achieved_records_per_s: Option<f64>,
    pub offered_records_per_s: Option<f64>,
}

/// The bottleneck and why (see the module docs).
pub fn bottleneck(f: &Figures) -> (String, String) {
    let top = f.utilization.iter().fold(None::<(&String, f64)>, |best, (k, &u)| match best {
        Some((_, b)) if b >= u => best,
        _ => Some((k, u)),
    });
    if let Some((k, u)) = top.filter(|(_, u)| *u >= SATURATED) {
        return (
            k.clone(),
            format!("{k} busy {:.0} % of the window (>= {:.0} %)", u * 100.0, SATURATED * 100.0),
        );
    }
    let busiest = top.map_or("no resource measured".into(), |(k, u)| {
        format!("busiest {k} at {:.0} %", u * 100.0)
    });
    match (f.achieved_records_per_s, f.offered_records_per_s) {
        (Some(a), Some(o)) if o > 0.0 && a >= OFFERED_MET * o => {
            (OFFERED_LOAD.into(), format!("achieved {a:.0} of {o:.0} records/s offered; {busiest}"))
        }
        (a, o) => {
            let what = match o {
                Some(o) => format!("achieved {:.0} of {o:.0} records/s offered", a.unwrap_or(0.0)),
                None => format!(
                    "no offered rate (closed-loop producers or consumers only): {:.0} records/s",
                    a.unwrap_or(0.0)
                ),
            };
            (
                FLOW_CONTROL.into(),
                format!("{what}, no resource >= {:.0} % ({busiest})", SATURATED * 100.0),
            )
        }
    }
}

/// The rule's inputs from a run's `summary.json`.
pub fn figures_of(s: &Value) -> Figures {
    let utilization = s["utilization"]["resources"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_f64().map(|u| (k.clone(), u))).collect())
        .unwrap_or_default();
    let t = &s["throughput"];
    Figures {
        utilization,
        achieved_records_per_s: t["achieved"][format!("{}_records_per_s", side(s))].as_f64(),
        offered_records_per_s: t["offered"]["produce_records_per_s"].as_f64(),
    }
}

/// Which throughput a point is measured by: `produce`, or `consume` when nothing was produced
/// (a consumer-only run, such as draining a prefilled backlog).
pub fn side(s: &Value) -> &'static str {
    let produced = s["throughput"]["achieved"]["produce_records_per_s"].as_f64().unwrap_or(0.0);
    if produced > 0.0 {
        "produce"
    } else {
        "consume"
    }
}

/// A point's row of `grid.json`: `values` by key as written, figures from its summary (`Null`
/// when its run wrote none).
pub fn row(point: usize, values: &Value, dir: &str, code: Option<i32>, s: Option<&Value>) -> Value {
    let Some(s) = s else {
        return json!({"point": point, "values": values, "dir": dir, "exit_code": code,
            "verdict": "crash", "bottleneck": NO_RUN});
    };
    let f = figures_of(s);
    let (bottleneck, why) = bottleneck(&f);
    let (a, lat, side) = (&s["throughput"]["achieved"], &s["latency"], side(s));
    json!({
        "point": point,
        "values": values,
        "dir": dir,
        "exit_code": code,
        "verdict": s["verdict"],
        "throughput_of": side,
        "records_per_s": a[format!("{side}_records_per_s")],
        "bytes_per_s": a[format!("{side}_bytes_per_s")],
        "produce_records_per_s": a["produce_records_per_s"],
        "produce_bytes_per_s": a["produce_bytes_per_s"],
        "consume_records_per_s": a["consume_records_per_s"],
        "consume_bytes_per_s": a["consume_bytes_per_s"],
        "offered_records_per_s": f.offered_records_per_s,
        "produce_latency_ms": {"p50": lat["produce_ms"]["p50"], "p99": lat["produce_ms"]["p99"], "p999": lat["produce_ms"]["p999"]},
        "end_to_end_latency_ms": {"p50": lat["end_to_end_ms"]["p50"], "p99": lat["end_to_end_ms"]["p99"], "p999": lat["end_to_end_ms"]["p999"]},
        "utilization": f.utilization,
        "bottleneck": bottleneck,
        "bottleneck_why": why,
        "cost": cost(s),
    })
}

/// What the point's run cost the machine that ran it: its process CPU seconds (set-up,
/// simulation, checks and report), peak RSS, and simulated seconds per CPU second, from the
/// summary's `speed.process`. Measured, not simulated: not part of the trace, and it moves with
/// the machine's load (a grid run with `--jobs 2` on 2 cores charges each point its own CPU).
pub fn cost(s: &Value) -> Value {
    let p = &s["speed"]["process"];
    json!({
        "cpu_s": p["cpu_s"],
        "peak_rss_bytes": p["peak_rss_bytes"],
        "simulated_s": s["speed"]["simulated_s"],
        "simulated_s_per_cpu_s": p["simulated_s_per_cpu_s"],
        "records_per_cpu_s": p["records_per_cpu_s"],
    })
}

/// The CSV columns after the varied keys (each a path into a row).
const FIGURE_COLUMNS: &[(&str, &[&str])] = &[
    ("throughput_of", &["throughput_of"]),
    ("records_per_s", &["records_per_s"]),
    ("bytes_per_s", &["bytes_per_s"]),
    ("produce_records_per_s", &["produce_records_per_s"]),
    ("produce_bytes_per_s", &["produce_bytes_per_s"]),
    ("consume_records_per_s", &["consume_records_per_s"]),
    ("consume_bytes_per_s", &["consume_bytes_per_s"]),
    ("offered_records_per_s", &["offered_records_per_s"]),
    ("produce_p50_ms", &["produce_latency_ms", "p50"]),
    ("produce_p99_ms", &["produce_latency_ms", "p99"]),
    ("produce_p999_ms", &["produce_latency_ms", "p999"]),
    ("end_to_end_p99_ms", &["end_to_end_latency_ms", "p99"]),
    ("bottleneck", &["bottleneck"]),
    ("verdict", &["verdict"]),
    ("cpu_s", &["cost", "cpu_s"]),
    ("peak_rss_bytes", &["cost", "peak_rss_bytes"]),
    ("simulated_s_per_cpu_s", &["cost", "simulated_s_per_cpu_s"]),
];

fn cell(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// `grid.csv`: a header, then one line per row: `point`, the varied keys, the figures, then
/// `util:RESOURCE` for every resource any point measured (empty where a point has none).
pub fn csv(keys: &[String], rows: &[Value]) -> String {
    let resources: BTreeSet<&String> =
        rows.iter().filter_map(|r| r["utilization"].as_object()).flat_map(|m| m.keys()).collect();
    let mut header = vec!["point".to_string()];
    header.extend(keys.iter().cloned());
    header.extend(FIGURE_COLUMNS.iter().map(|(c, _)| c.to_string()));
    header.extend(resources.iter().map(|r| format!("util:{r}")));
    let mut out = header.iter().map(|h| cell(&json!(h))).collect::<Vec<_>>().join(",") + "\n";
    for r in rows {
        let mut line = vec![cell(&r["point"])];
        line.extend(keys.iter().map(|k| cell(&r["values"][k])));
        for (_, path) in FIGURE_COLUMNS {
            line.push(cell(path.iter().fold(r, |v, k| &v[*k])));
        }
        line.extend(resources.iter().map(|res| cell(&r["utilization"][res.as_str()])));
        out += &(line.join(",") + "\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(util: &[(&str, f64)], achieved: f64, offered: Option<f64>) -> Figures {
        Figures {
            utilization: util.iter().map(|(k, u)| (k.to_string(), *u)).collect(),
            achieved_records_per_s: Some(achieved),
            offered_records_per_s: offered,
        }
    }

    #[test]
    fn the_bottleneck_rule_takes_each_branch() {
        // 1. The busiest resource at >= 0.9, even when the offered load was met.
        let sat = f(
            &[("cpu:broker-0", 0.5), ("nic_in:broker-0", 0.93), ("disk:broker-0", 0.91)],
            1000.0,
            Some(1000.0),
        );
        assert_eq!(bottleneck(&sat).0, "nic_in:broker-0");
        // Just under: not saturated.
        let under = f(&[("nic_in:broker-0", 0.89)], 960.0, Some(1000.0));
        assert_eq!(bottleneck(&under).0, OFFERED_LOAD);
        // 2. Offered met at 95 %, not at 94 %.
        assert_eq!(bottleneck(&f(&[], 950.0, Some(1000.0))).0, OFFERED_LOAD);
        // 3. Short of the offered rate with nothing saturated, or closed-loop producers.
        assert_eq!(bottleneck(&f(&[("cpu:client", 0.2)], 940.0, Some(1000.0))).0, FLOW_CONTROL);
        let closed = bottleneck(&f(&[("disk:broker-0", 0.4)], 5000.0, None));
        assert_eq!(closed.0, FLOW_CONTROL);
        assert!(closed.1.contains("busiest disk:broker-0 at 40 %"), "{}", closed.1);
    }

    #[test]
    fn rows_and_csv_carry_every_resource() {
        let s = serde_json::json!({"verdict": "pass",
            "throughput": {"achieved": {"produce_records_per_s": 10.0, "produce_bytes_per_s": 1000.0}, "offered": {"produce_records_per_s": 10.0}},
            "latency": {"produce_ms": {"p50": 1.0, "p99": 2.0, "p999": 3.0}},
            "utilization": {"resources": {"cpu:broker-0": 0.95, "disk:broker-0": 0.1}},
            "speed": {"simulated_s": 12.0, "process": {"cpu_s": 3.0, "peak_rss_bytes": 5000,
                "simulated_s_per_cpu_s": 4.0, "records_per_cpu_s": 40.0}}});
        let r = row(0, &serde_json::json!({"acks": "all"}), "d/points/0", Some(0), Some(&s));
        assert_eq!(r["bottleneck"], "cpu:broker-0");
        let crashed = row(1, &serde_json::json!({"acks": 1}), "d/points/1", None, None);
        assert_eq!(crashed["bottleneck"], NO_RUN);
        let text = csv(&["acks".into()], &[r.clone(), crashed]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with(
            "point,acks,throughput_of,records_per_s,bytes_per_s,produce_records_per_s,"
        ));
        assert!(lines[0].ends_with("util:cpu:broker-0,util:disk:broker-0"));
        assert!(lines[1].starts_with("0,all,produce,10.0,1000.0,10.0,1000.0,"), "{}", lines[1]);
        assert!(lines[1].ends_with(",cpu:broker-0,pass,3.0,5000,4.0,0.95,0.1"), "{}", lines[1]);
        assert_eq!(r["cost"]["records_per_cpu_s"], 40.0);
        assert!(lines[2].ends_with(",,"), "{}", lines[2]);
    }
}
