//! The grid's SVG plots (throughput, p99 produce latency, and the runs' CPU seconds and peak RSS
//! against each varied key, one line per combination of the other keys' values) and
//! `index.html`.

use std::collections::BTreeMap;

use reports::{esc, Chart, Line, PlotOptions};
use serde_json::Value;

use super::keys::Vary;

/// A file-name-safe form of a key: `batch.size` → `batch-size`.
pub fn slug(key: &str) -> String {
    let s: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-")
}

/// Values spanning this ratio or more are drawn at evenly spaced positions (as on a log axis).
const SPAN_RATIO_MAX: f64 = 100.0;

/// x positions of a key's values: the values themselves when all are numbers within
/// [`SPAN_RATIO_MAX`] of each other, else their positions 0, 1, ... in the order given (the
/// chart's title then says which is which).
fn xs(v: &Vary) -> (Vec<f64>, Option<String>) {
    let nums: Option<Vec<f64>> = v.values.iter().map(Value::as_f64).collect();
    let narrow = |n: &Vec<f64>| {
        let lo = n.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = n.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        lo <= 0.0 || hi / lo < SPAN_RATIO_MAX
    };
    match nums {
        Some(n) if narrow(&n) => (n, None),
        _ => {
            let legend = v
                .values
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    format!("{i} = {}", x.as_str().map_or_else(|| x.to_string(), str::to_string))
                })
                .collect::<Vec<_>>()
                .join(", ");
            ((0..v.values.len()).map(|i| i as f64).collect(), Some(legend))
        }
    }
}

/// What a chart plots of a row.
struct Measure {
    file: &'static str,
    title: &'static str,
    y_label: &'static str,
    get: fn(&Value) -> Option<f64>,
}

const MEASURES: &[Measure] = &[
    Measure {
        file: "throughput",
        title: "Achieved throughput",
        y_label: "MB/s (record payload)",
        get: |r| r["bytes_per_s"].as_f64().map(|b| b / 1e6),
    },
    Measure {
        file: "p99",
        title: "Produce latency p99 (send → ack)",
        y_label: "ms",
        get: |r| r["produce_latency_ms"]["p99"].as_f64(),
    },
    Measure {
        file: "cpu",
        title: "Simulator cost: the run's process CPU seconds (measured, moves with load)",
        y_label: "CPU s",
        get: |r| r["cost"]["cpu_s"].as_f64(),
    },
    Measure {
        file: "rss",
        title: "Simulator memory: the run's peak RSS",
        y_label: "MiB",
        get: |r| r["cost"]["peak_rss_bytes"].as_f64().map(|b| b / (1024.0 * 1024.0)),
    },
];

/// The charts: for each varied key and measure, one line per combination of the other keys.
/// `points[i]` is row `i`'s value index per key.
pub fn charts(vary: &[Vary], points: &[Vec<usize>], rows: &[Value]) -> Vec<(Chart, PlotOptions)> {
    let mut out = Vec::new();
    for (k, v) in vary.iter().enumerate() {
        let (x, legend) = xs(v);
        for m in MEASURES {
            let mut lines: BTreeMap<Vec<usize>, Vec<(f64, f64)>> = BTreeMap::new();
            for (p, r) in points.iter().zip(rows) {
                let mut others = p.clone();
                others.remove(k);
                let y = (m.get)(r).unwrap_or(f64::NAN);
                lines.entry(others).or_default().push((x[p[k]], y));
            }
            let lines = lines
                .into_iter()
                .map(|(others, mut pts)| {
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    Line { name: line_name(vary, k, &others), points: pts }
                })
                .collect();
            let title = match &legend {
                Some(l) => format!("{} vs {} ({l})", m.title, v.key),
                None => format!("{} vs {}", m.title, v.key),
            };
            let chart = Chart {
                file: format!("{}-vs-{}.svg", m.file, slug(&v.key)),
                title,
                y_label: m.y_label.into(),
                lines,
            };
            out.push((chart, options(&x, &v.key)));
        }
    }
    out
}

fn options(x: &[f64], key: &str) -> PlotOptions {
    let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = if hi > lo { (hi - lo) * 0.03 } else { 0.5 };
    PlotOptions::linear().with_x_range(lo - pad, hi + pad).with_x_label(key)
}

/// A line's name: the other keys' values (`compression.type=lz4`), or the measure's when one
/// key varies.
fn line_name(vary: &[Vary], k: usize, others: &[usize]) -> String {
    let names: Vec<String> = vary
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != k)
        .zip(others)
        .map(|((_, w), &i)| format!("{}={}", w.key, show(&w.values[i])))
        .collect();
    if names.is_empty() {
        "all points".into()
    } else {
        names.join(" ")
    }
}

pub fn show(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// `index.html`: the command, a table of the points, the plots, and links to the files.
pub fn index_html(
    command: &str,
    vary: &[Vary],
    rows: &[Value],
    charts: &[(Chart, PlotOptions)],
) -> String {
    let mut h =
        String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>grid</title>");
    h += "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>";
    h += &format!("<h1>Grid</h1><p><code>{}</code></p>", esc(command));
    h += "<p><a href=\"grid.json\">grid.json</a> · <a href=\"grid.csv\">grid.csv</a> · bottleneck rule: the resource with the highest utilization if ≥ 0.9, else “offered load” when achieved ≥ 0.95 × offered, else “latency/flow control” (sim/README.md)</p>";
    h += "<table><tr><th>point</th>";
    for v in vary {
        h += &format!("<th>{}</th>", esc(&v.key));
    }
    h += "<th>MB/s</th><th>records/s</th><th>of</th><th>p99 ms</th><th>bottleneck</th><th>verdict</th><th>CPU s</th></tr>";
    for r in rows {
        let p = r["point"].as_u64().unwrap_or(0);
        h += &format!("<tr><td><a href=\"points/{p}/index.html\">{p}</a></td>");
        for v in vary {
            h += &format!("<td>{}</td>", esc(&show(&r["values"][&v.key])));
        }
        let num = |x: &Value, scale: f64| {
            x.as_f64().map_or("-".into(), |x| reports::fmt_num((x * scale * 100.0).round() / 100.0))
        };
        h += &format!(
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            num(&r["bytes_per_s"], 1e-6),
            num(&r["records_per_s"], 1.0),
            esc(r["throughput_of"].as_str().unwrap_or("")),
            num(&r["produce_latency_ms"]["p99"], 1.0),
            esc(r["bottleneck"].as_str().unwrap_or("")),
            esc(r["verdict"].as_str().unwrap_or("")),
            num(&r["cost"]["cpu_s"], 1.0)
        );
    }
    h += "</table>";
    for (c, _) in charts {
        h += &format!(
            "<h2>{}</h2><img src=\"{}\" alt=\"{}\">",
            esc(&c.title),
            esc(&c.file),
            esc(&c.file)
        );
    }
    h + "</body></html>\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::keys::{parse_vary, product};
    use serde_json::json;

    #[test]
    fn one_line_per_value_of_the_other_key() {
        let vary =
            [parse_vary("batch.size=1024,1048576").unwrap(), parse_vary("brokers=1,2,3").unwrap()];
        let pts = product(&vary);
        let rows: Vec<Value> = (0..pts.len())
            .map(|i| {
                json!({"bytes_per_s": 1e6 * i as f64, "produce_latency_ms": {"p99": i},
                    "cost": {"cpu_s": 10.0 * i as f64, "peak_rss_bytes": 1 << 20}})
            })
            .collect();
        let c = charts(&vary, &pts, &rows);
        let files: Vec<&str> = c.iter().map(|(c, _)| c.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "throughput-vs-batch-size.svg",
                "p99-vs-batch-size.svg",
                "cpu-vs-batch-size.svg",
                "rss-vs-batch-size.svg",
                "throughput-vs-brokers.svg",
                "p99-vs-brokers.svg",
                "cpu-vs-brokers.svg",
                "rss-vs-brokers.svg"
            ]
        );
        // Against batch.size: a line per broker count, two points each, at positions (the values
        // span 1024x); against brokers: a line per batch size, at the values themselves.
        assert_eq!(c[0].0.lines.len(), 3);
        assert_eq!(c[0].0.lines[1].name, "brokers=2");
        assert_eq!(c[0].0.lines[1].points, vec![(0.0, 1.0), (1.0, 4.0)]);
        assert!(c[0].0.title.contains("0 = 1024, 1 = 1048576"), "{}", c[0].0.title);
        assert_eq!(c[4].0.lines.len(), 2);
        assert_eq!(c[4].0.lines[0].points, vec![(1.0, 0.0), (2.0, 1.0), (3.0, 2.0)]);
        assert_eq!(c[5].0.lines[1].name, "batch.size=1048576");
        // The cost charts plot each row's `cost.cpu_s` (here 10 × the point).
        assert_eq!(c[6].0.lines[1].points, vec![(1.0, 30.0), (2.0, 40.0), (3.0, 50.0)]);
        for (chart, opts) in &c {
            let svg = reports::render_svg_with(chart, &[], 0.0, opts).unwrap();
            assert!(svg.contains("<svg"));
        }
    }
}
