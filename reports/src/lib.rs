//! Turns a run into files: `summary.json`, SVG plots and an `index.html` that shows both.
//!
//! Knows nothing of the simulator: it takes a summary (any JSON) and charts (named lines of
//! (time, value) points, plus fault markers on the time axis). Plots are drawn by `plotters`
//! with its SVG backend only — no bitmap backend, no system fonts (text is measured by plotters'
//! built-in estimate and rendered by the browser).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("writing {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("plot {file}: {msg}")]
    Plot { file: String, msg: String },
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    /// (seconds, value), in time order.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    /// File name inside the output directory, e.g. `throughput.svg`.
    pub file: String,
    pub title: String,
    pub y_label: String,
    pub lines: Vec<Line>,
}

/// A fault drawn as a vertical marker at `at_s`.
#[derive(Debug, Clone)]
pub struct Marker {
    pub at_s: f64,
    pub label: String,
}

const COLORS: [RGBColor; 6] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(148, 103, 189), RGBColor(140, 86, 75), RGBColor(23, 190, 207)];

fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Io { path: path.display().to_string(), source })
}

/// Renders one chart to an SVG string.
pub fn render_svg(chart: &Chart, markers: &[Marker], x_max: f64) -> Result<String, ReportError> {
    let err = |e: &dyn std::fmt::Display| ReportError::Plot { file: chart.file.clone(), msg: e.to_string() };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let y_max = chart
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.1 };
        let x_max = if x_max <= 0.0 { 1.0 } else { x_max };
        let mut cc = ChartBuilder::on(&root)
            .caption(&chart.title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| err(&e))?;
        cc.configure_mesh()
            .x_desc("simulated time (s)")
            .y_desc(&chart.y_label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| err(&e))?;
        for m in markers {
            let red = RGBColor(214, 39, 40);
            cc.draw_series(LineSeries::new(vec![(m.at_s, 0.0), (m.at_s, y_max)], red.stroke_width(1)))
                .map_err(|e| err(&e))?;
            cc.draw_series(std::iter::once(Text::new(m.label.clone(), (m.at_s, y_max * 0.97), ("sans-serif", 11).into_font().color(&red))))
                .map_err(|e| err(&e))?;
        }
        for (i, line) in chart.lines.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            cc.draw_series(LineSeries::new(line.points.iter().copied().filter(|p| p.1.is_finite()), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(line.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        if !chart.lines.is_empty() {
            cc.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The HTML page: verdict, checks, headline figures, plots, the full summary.
pub fn render_index(summary: &Value, charts: &[Chart]) -> String {
    let s = |k: &str| summary.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{name} seed {seed}: {verdict}</title>\n<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}.pass{{color:#2a2}}.fail{{color:#c22}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>\n",
        name = esc(&s("scenario")),
        seed = esc(&s("seed")),
        verdict = esc(&s("verdict"))
    );
    let verdict = s("verdict");
    let _ = write!(
        h,
        "<h1>{} <span class=\"{}\">{}</span></h1>\n<p>{}</p>\n<p>seed {} · trace hash <code>{}</code> · replay: <code>{}</code></p>\n<p><em>{}</em></p>\n",
        esc(&s("scenario")),
        if verdict == "pass" { "pass" } else { "fail" },
        esc(&verdict),
        esc(&s("description")),
        esc(&s("seed")),
        esc(&s("trace_hash")),
        esc(&s("replay")),
        esc(&s("mode"))
    );
    h.push_str("<h2>Checks</h2>\n<table><tr><th>check</th><th>outcome</th><th>expected</th><th>detail</th></tr>\n");
    if let Some(checks) = summary.get("checks").and_then(Value::as_object) {
        for (name, c) in checks {
            let g = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let ok = g("outcome") == g("expected");
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                if ok { "pass" } else { "fail" },
                esc(&g("outcome")),
                esc(&g("expected")),
                esc(&g("detail"))
            );
        }
    }
    h.push_str("</table>\n<h2>Figures</h2>\n<table>\n");
    for key in ["throughput", "produce_latency_ms", "page_cache", "disk", "history", "speed"] {
        if let Some(v) = summary.get(key) {
            let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
            let _ = writeln!(h, "<tr><th>{}</th><td><pre>{}</pre></td></tr>", esc(key), esc(&pretty));
        }
    }
    h.push_str("</table>\n<h2>Plots</h2>\n");
    for c in charts {
        let _ = writeln!(h, "<h3>{}</h3>\n<img src=\"{}\" alt=\"{}\" width=\"900\">", esc(&c.title), esc(&c.file), esc(&c.title));
    }
    let _ = write!(h, "<h2>summary.json</h2>\n<pre>{}</pre>\n</body></html>\n", esc(&serde_json::to_string_pretty(summary).unwrap_or_default()));
    h
}

/// Writes `summary.json`, one SVG per chart and `index.html` into `dir` (created if missing).
pub fn write_run(dir: &Path, summary: &Value, charts: &[Chart], markers: &[Marker], x_max: f64) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io { path: dir.display().to_string(), source })?;
    let text = serde_json::to_string_pretty(summary).unwrap_or_default();
    write(&dir.join("summary.json"), &(text + "\n"))?;
    for c in charts {
        let svg = render_svg(c, markers, x_max)?;
        write(&dir.join(&c.file), &svg)?;
    }
    write(&dir.join("index.html"), &render_index(summary, charts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg_and_index() {
        let chart = Chart {
            file: "t.svg".into(),
            title: "throughput".into(),
            y_label: "records/s".into(),
            lines: vec![Line { name: "acked".into(), points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, f64::NAN)] }],
        };
        let svg = render_svg(&chart, &[Marker { at_s: 1.0, label: "kill".into() }], 2.0).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("kill") && svg.contains("acked"));
        let summary = serde_json::json!({"scenario": "x<y", "verdict": "pass", "checks": {"lost-write": {"outcome": "held", "expected": "held", "detail": "ok"}}});
        let html = render_index(&summary, &[chart]);
        assert!(html.contains("x&lt;y") && html.contains("t.svg") && html.contains("lost-write"));
    }
}
