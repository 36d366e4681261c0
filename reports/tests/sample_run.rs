//! A whole run written to disk as a tester would open it: a three-broker cluster with a leader
//! kill, latency with a gap and a start-up spike, failed sends. Set `REPORT_SAMPLE_DIR` to keep
//! the output somewhere to look at (e.g. render it with a headless browser).

use std::path::PathBuf;

use reports::{
    render_cluster_timeline, render_svg_with, write_run, write_run_with, Chart, Line, Marker,
    PlotOptions, CLUSTER_TIMELINE_FILE,
};
use serde_json::{json, Value};

fn out_dir(name: &str) -> PathBuf {
    match std::env::var_os("REPORT_SAMPLE_DIR") {
        Some(d) => PathBuf::from(d).join(name),
        None => std::env::temp_dir().join(format!("loglab-report-{name}-{}", std::process::id())),
    }
}

/// Latency over 60 s of a 64 s run: a start-up spike at 0.2 s, a median near 4 ms, p99 near
/// 20 ms, a 3 s outlier at 12 s, no acknowledgements from 20 to 26 s (NaN), and the
/// end-of-run read-back after 60 s with a huge value.
fn latency_chart() -> Chart {
    let mut p50 = vec![(0.2, 900.0)];
    let mut p99 = vec![(0.2, 2500.0)];
    let mut max = vec![(0.2, 9000.0)];
    for i in 1..=60 {
        let t = f64::from(i);
        if (20..26).contains(&i) {
            p50.push((t, f64::NAN));
            p99.push((t, f64::NAN));
            max.push((t, f64::NAN));
            continue;
        }
        p50.push((t, 4.0 + f64::from(i % 3) * 0.3));
        p99.push((t, 18.0 + f64::from(i % 5)));
        max.push((t, if i == 12 { 3000.0 } else { 40.0 + f64::from(i % 7) }));
    }
    max.push((63.5, 50_000.0));
    Chart {
        file: "produce_latency.svg".into(),
        title: "Produce latency (send → ack) by ack time".into(),
        y_label: "ms".into(),
        lines: vec![
            Line { name: "p50".into(), points: p50 },
            Line { name: "p99".into(), points: p99 },
            Line { name: "max".into(), points: max },
        ],
    }
}

fn throughput_chart() -> Chart {
    let acked = (1..=64)
        .map(|i| {
            (
                f64::from(i),
                if (20..26).contains(&i) {
                    0.0
                } else if i > 60 {
                    90_000.0
                } else {
                    1000.0
                },
            )
        })
        .collect();
    Chart {
        file: "throughput.svg".into(),
        title: "Throughput".into(),
        y_label: "records/s".into(),
        lines: vec![Line { name: "acked".into(), points: acked }],
    }
}

fn markers() -> Vec<Marker> {
    vec![
        Marker { at_s: 20.0, label: "kill leader:events/0 → broker-0".into() },
        Marker { at_s: 21.0, label: "restart broker-0".into() },
        Marker { at_s: 45.0, label: "kill controller → broker-2".into() },
    ]
}

fn summary(cluster: Value) -> Value {
    json!({
        "scenario": "cluster-leader-kill",
        "description": "kill the leader of events/0 under acks=all & expect <no> loss",
        "mode": "storage + network",
        "seed": 1,
        "trace_hash": "00ff",
        "verdict": "fail",
        "replay": "cargo simulate scenarios/cluster-leader-kill.json --seed 1",
        "checks": {
            "lost-write": {"outcome": "held", "expected": "held", "detail": "all 14948 acknowledged records readable", "examined": 14948},
            "liveness": {"outcome": "vacuous", "expected": "held", "detail": "no polls", "examined": 0}
        },
        "throughput": {
            "offered": {"produce": {"records_per_s": 1000.0, "bytes_per_s": 102400.0}},
            "achieved": {"produce": {"records_per_s": 914.2857142, "bytes_per_s": 93622.857}, "consume": {"records_per_s": 0.0, "bytes_per_s": 0.0}},
            "window_s": [1.0, 60.0]
        },
        "latency": {"produce_ms": {"p50": 4.12345, "p99": 21.0, "p99.9": 2999.5, "max": 3000.0}, "end_to_end_ms": {"p50": 9.5, "p99": 40.25, "p99.9": null}},
        "produce_latency_ms": {"p50": 4.1},
        "page_cache": {"hit_ratio": 0.9342, "hit_pages": 1000, "miss_pages": 70, "peak_dirty_bytes": 12_582_912, "disk_utilization_mean": 0.0123},
        "disk": {"broker-0": {"reads": 12, "writes": 3400, "fsyncs": 100}, "broker-1": {"reads": 10, "writes": 3300, "fsyncs": 99}},
        "cpu": null,
        "network": {"client": {"egress_bytes": 1_500_000, "ingress_bytes": 20_000}},
        "speed": {"simulated_s": 64.0, "wall_s": 1.5, "simulated_s_per_wall_s": 42.666666, "note": "wall-clock figures vary by machine"},
        "history": {
            "sends": 60000, "polls": 0, "failed": 37,
            "failed_sends": [
                {"producer": 0, "partition": "events-0", "error": "NotLeaderOrFollower <retriable>", "at_s": 20.25},
                {"producer": 1, "partition": "events-0", "error": "RequestTimedOut", "at_s": 23.5}
            ],
            "final_logs": {"events-0": {"log_start_offset": 0, "log_end_offset": 29000, "records": 29000}, "events-1": {"log_start_offset": 0, "log_end_offset": 31000, "records": 31000}}
        },
        "cluster": cluster,
        "settings": {"linger.ms": 5}
    })
}

fn cluster() -> Value {
    json!({
        "brokers": 3,
        "observer_period_ms": 250,
        "partitions": {
            "events-0": {"leader_changes": 2, "isr_shrinks": 1, "isr_expands": 1, "timeline": [
                {"t_s": 0.25, "leader": 0, "leader_epoch": 0, "isr": [0, 1, 2]},
                {"t_s": 20.25, "leader": -1, "leader_epoch": 0, "isr": [1, 2]},
                {"t_s": 23.25, "leader": 1, "leader_epoch": 1, "isr": [1, 2]},
                {"t_s": 31.0, "leader": 1, "leader_epoch": 1, "isr": [0, 1, 2]}
            ]},
            "events-1": {"leader_changes": 0, "isr_shrinks": 1, "isr_expands": 1, "timeline": [
                {"t_s": 0.25, "leader": 1, "leader_epoch": 0, "isr": [1, 2, 0]},
                {"t_s": 20.25, "leader": 1, "leader_epoch": 0, "isr": [1, 2]},
                {"t_s": 31.0, "leader": 1, "leader_epoch": 0, "isr": [1, 2, 0]}
            ]}
        },
        "leader_elections": [{"partition": "events-0", "fault": "kill leader:events/0", "at_s": 20.0, "old_leader": 0, "new_leader": 1, "new_epoch": 1, "elected_after_s": 3.25}],
        "controllers": [{"t_s": 0.25, "active": 2, "term": 1}, {"t_s": 45.5, "active": -1, "term": 1}, {"t_s": 46.0, "active": 0, "term": 2}],
        "note": "states as committed in the metadata quorum, sampled every 250 ms"
    })
}

/// The stroke plotters gives the first line (the legend swatch is wider).
const FIRST_LINE: &str = "stroke=\"#1F77B4\" stroke-width=\"2\"";

/// The text of every `<text>` element (plotters puts it on the line after the tag).
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            t.split_once('>')
                .map(|(_, rest)| rest.split("</text>").next().unwrap_or("").trim().to_string())
        })
        .collect()
}

fn has_text(svg: &str, t: &str) -> bool {
    texts(svg).iter().any(|x| x == t)
}

fn polylines_with(svg: &str, stroke: &str) -> usize {
    svg.split("<polyline")
        .skip(1)
        .filter(|p| p.split("/>").next().is_some_and(|attrs| attrs.contains(stroke)))
        .count()
}

#[test]
fn cluster_run_writes_a_readable_report() {
    let dir = out_dir("cluster");
    let _ = std::fs::remove_dir_all(&dir);
    let window = PlotOptions::default().with_x_range(1.0, 60.0);
    let charts = vec![
        (throughput_chart(), window.clone()),
        (latency_chart(), PlotOptions::log().with_x_range(1.0, 60.0)),
    ];
    write_run_with(&dir, &summary(cluster()), &charts, &markers(), 64.0).unwrap();

    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    let section = |from: &str, to: &str| {
        let a = html.find(from).unwrap_or_else(|| panic!("no {from}"));
        let b = html[a + from.len()..].find(to).map_or(html.len(), |b| a + from.len() + b);
        html[a..b].to_string()
    };
    // Figures are tables, not JSON: no braces or quoted keys between the headings.
    let figures = section("<h2 id=\"figures\">", "<h2 id=\"plots\">");
    assert!(!figures.contains('{') && !figures.contains("&quot;"), "{figures}");
    for key in ["throughput", "latency", "page_cache", "disk", "network", "speed", "history"] {
        assert!(figures.contains(&format!("<h3 id=\"fig-{key}\">")), "figure {key} missing");
    }
    assert!(
        !figures.contains("fig-produce_latency_ms"),
        "legacy latency shown though `latency` exists"
    );
    assert!(!figures.contains("fig-cpu"), "null cpu shown");
    assert!(figures.contains("<td>914.286</td>") && figures.contains("(91.43 KiB/s)"), "{figures}");
    assert!(
        figures.contains(
            "<tr><th>produce_ms</th><td>4.123</td><td>21</td><td>2,999.5</td><td>3,000</td></tr>"
        ),
        "latency percentiles as rows: {figures}"
    );
    assert!(
        figures.contains("<tr><th>events-0</th><td>29,000</td><td>0</td><td>29,000</td></tr>"),
        "final_logs as rows: {figures}"
    );

    // Failed sends: the count and the examples, escaped.
    let failed = section("<h2 id=\"failed-sends\">", "<h2 ");
    assert!(failed.contains("37 sends failed"), "{failed}");
    assert!(
        failed.contains("the first 2 of them")
            && failed.contains("NotLeaderOrFollower &lt;retriable&gt;")
            && failed.contains(
                "<tr><th>producer</th><th>partition</th><th>error</th><th>at_s</th></tr>"
            ),
        "{failed}"
    );

    // The faults, in time order.
    let faults = section("<h2 id=\"faults\">", "<h2 ");
    assert!(faults.contains("<tr><td>20</td><td>kill leader:events/0 → broker-0</td></tr>\n<tr><td>21</td><td>restart broker-0</td></tr>"), "{faults}");

    // The cluster: the picture and the elections.
    let cl = section("<h2 id=\"cluster\">", "<h2 id=\"figures\">");
    assert!(cl.contains(&format!("src=\"{CLUSTER_TIMELINE_FILE}\"")), "{cl}");
    assert!(cl.contains("<tr><td>events-0</td><td>kill leader:events/0</td><td>20</td><td>0</td><td>1</td><td>1</td><td>3.25</td></tr>"), "{cl}");
    assert!(cl.contains("<tr><th>events-0</th><td>2</td><td>1</td><td>1</td><td>broker-1</td><td>0, 1, 2</td></tr>"), "{cl}");
    assert!(cl.contains("changed 2 times; at the end: broker-0"), "{cl}");
    let timeline = std::fs::read_to_string(dir.join(CLUSTER_TIMELINE_FILE)).unwrap();
    assert!(
        timeline.contains("kill leader:events/0 → broker-0")
            && timeline.contains(">b1 · ISR 1,2<")
            && timeline.contains(">controller<")
    );

    // Checks: examined shown, vacuous is red.
    assert!(html.contains("<td class=\"fail\">vacuous</td><td>held</td><td>0</td>"), "{html}");
    // Text escaped, the full summary folded at the end.
    assert!(html.contains("acks=all &amp; expect &lt;no&gt; loss"));
    let details = html.rfind("<details>").unwrap();
    assert!(
        details > html.find("<h2 id=\"plots\">").unwrap()
            && html[details..].contains("&quot;settings&quot;")
    );

    // Latency: the NaN gap splits each line; log axis; the start-up spike (0.2 s) and the
    // read-back (63.5 s) are outside the window and do not reach the axis.
    let lat = std::fs::read_to_string(dir.join("produce_latency.svg")).unwrap();
    assert_eq!(polylines_with(&lat, FIRST_LINE), 2, "p50 is two runs, before and after the gap");
    assert!(lat.contains("ms (log scale)"));
    assert!(
        has_text(&lat, "1") && has_text(&lat, "10,000"),
        "4 ms and the 3 s outlier inside the axis: {:?}",
        texts(&lat)
    );
    assert!(
        !has_text(&lat, "100,000") && !has_text(&lat, "0.1"),
        "start-up or read-back set the scale: {:?}",
        texts(&lat)
    );
    assert!(has_text(&lat, "kill leader:events/0 → broker-0") && has_text(&lat, "p99"));
    // Throughput: the read-back's 90,000/s is outside the window.
    let thr = std::fs::read_to_string(dir.join("throughput.svg")).unwrap();
    let top_tick = texts(&thr)
        .iter()
        .filter_map(|t| t.replace(',', "").parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!((1000.0..2000.0).contains(&top_tick), "read-back set the scale: {:?}", texts(&thr));
    if std::env::var_os("REPORT_SAMPLE_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn single_broker_run_has_no_cluster_section_and_says_no_failed_sends() {
    let dir = out_dir("single");
    let _ = std::fs::remove_dir_all(&dir);
    let mut s = summary(Value::Null);
    s["history"] = json!({"sends": 10, "polls": 3, "failed": 0, "failed_sends": []});
    s.as_object_mut().unwrap().remove("latency");
    write_run(&dir, &s, &[throughput_chart()], &[], 64.0).unwrap();
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(!dir.join(CLUSTER_TIMELINE_FILE).exists());
    assert!(!html.contains("<h2 id=\"cluster\">") && !html.contains("<h2 id=\"faults\">"));
    assert!(html.contains("<h2 id=\"failed-sends\">Failed sends</h2>\n<p>none</p>"), "{html}");
    assert!(
        html.contains("<h3 id=\"fig-produce_latency_ms\">"),
        "legacy latency shown when `latency` is absent"
    );
    // Without failed_sends at all, still "none".
    let mut s2 = s.clone();
    s2["history"] = json!({"sends": 10});
    assert!(reports::render_index(&s2, &[]).contains("Failed sends</h2>\n<p>none</p>"));
    if std::env::var_os("REPORT_SAMPLE_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn default_plot_uses_the_whole_run_and_a_linear_axis() {
    let chart = latency_chart();
    let svg = render_svg_with(&chart, &markers(), 64.0, &PlotOptions::default()).unwrap();
    assert!(!svg.contains("log scale"));
    // Whole run: the read-back's 50,000 ms sets the linear scale.
    let top_tick = texts(&svg)
        .iter()
        .filter_map(|t| t.replace(',', "").parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(top_tick >= 40_000.0, "{:?}", texts(&svg));
    assert!(render_cluster_timeline(&Value::Null, &[], 1.0).is_none());
}

#[test]
fn missing_points_break_lines_with_a_gap_limit() {
    // Empty buckets left out rather than NaN: 1..=19 and 26..=60, one point per second.
    let pts: Vec<(f64, f64)> =
        (1..=60).filter(|i| !(20..26).contains(i)).map(|i| (f64::from(i), 4.0)).collect();
    let chart = Chart {
        file: "g.svg".into(),
        title: "gap".into(),
        y_label: "ms".into(),
        lines: vec![Line { name: "p50".into(), points: pts }],
    };
    let joined = render_svg_with(&chart, &[], 60.0, &PlotOptions::log()).unwrap();
    assert_eq!(polylines_with(&joined, FIRST_LINE), 1);
    let broken = render_svg_with(&chart, &[], 60.0, &PlotOptions::log().with_gap(1.5)).unwrap();
    assert_eq!(polylines_with(&broken, FIRST_LINE), 2);
}
