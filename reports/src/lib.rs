//! Turns a run into files: `summary.json`, SVG plots and an `index.html` that shows both.
//!
//! Knows nothing of the simulator: it takes a summary (any JSON) and charts (named lines of
//! (time, value) points, plus fault markers on the time axis). Plots are drawn by `plotters`
//! with its SVG backend only — no bitmap backend, no system fonts (text is measured by plotters'
//! built-in estimate and rendered by the browser).
//!
//! What the page reads from the summary, besides showing all of it folded at the end:
//! `scenario`, `description`, `seed`, `trace_hash`, `replay`, `mode`, `verdict`;
//! `checks.<name>.{outcome, expected, examined, detail}`; `history.failed` and
//! `history.failed_sends` (`[{producer, partition, error, at_s}]`); `cluster` (`partitions.<tp>.
//! {leader_changes, isr_shrinks, isr_expands, timeline: [{t_s, leader, leader_epoch, isr}]}`,
//! `leader_elections`, `controllers: [{t_s, active, term}]`, `brokers`, `note`), drawn as
//! `cluster_timeline.svg`; and as tables the figures `throughput`, `latency` (else the legacy
//! `produce_latency_ms`), `page_cache`, `disk`, `cpu`, `network`, `speed`, `history`, `groups`.
//!
//! Plots: a NaN y (or, with [`PlotOptions::gap_s`], a long step in x) breaks a line; a log y axis
//! on request; the caller's x window alone sets both scales.

use std::io;
use std::path::Path;

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

mod format;
mod html;
mod plot;
mod timeline;

pub use format::{esc, fmt_num};
pub use html::CLUSTER_TIMELINE_FILE;
pub use plot::{render_svg_with, PlotOptions};
pub use timeline::render_cluster_timeline;

fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text)
        .map_err(|source| ReportError::Io { path: path.display().to_string(), source })
}

/// Renders one chart to an SVG string with default options (linear y, x from 0 to `x_max`).
pub fn render_svg(chart: &Chart, markers: &[Marker], x_max: f64) -> Result<String, ReportError> {
    render_svg_with(chart, markers, x_max, &PlotOptions::default())
}

/// The HTML page: verdict, checks, failed sends, the cluster (when `summary["cluster"]` is an
/// object with partitions; the page then shows `cluster_timeline.svg`), figures as tables, plots,
/// and the full summary folded at the end.
pub fn render_index(summary: &Value, charts: &[Chart]) -> String {
    html::index_html(summary, charts.iter(), &[])
}

/// Writes `summary.json`, one SVG per chart (drawn with default options), `cluster_timeline.svg`
/// for cluster runs and `index.html` (which also lists the faults) into `dir` (created if missing).
pub fn write_run(
    dir: &Path,
    summary: &Value,
    charts: &[Chart],
    markers: &[Marker],
    x_max: f64,
) -> Result<(), ReportError> {
    let with: Vec<(Chart, PlotOptions)> =
        charts.iter().map(|c| (c.clone(), PlotOptions::default())).collect();
    write_run_with(dir, summary, &with, markers, x_max)
}

/// As [`write_run`], each chart drawn with its own [`PlotOptions`]. `x_max` is the run's end
/// (the default x window of the plots and the cluster timeline's axis).
pub fn write_run_with(
    dir: &Path,
    summary: &Value,
    charts: &[(Chart, PlotOptions)],
    markers: &[Marker],
    x_max: f64,
) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir)
        .map_err(|source| ReportError::Io { path: dir.display().to_string(), source })?;
    let text = serde_json::to_string_pretty(summary).unwrap_or_default();
    write(&dir.join("summary.json"), &(text + "\n"))?;
    for (c, opts) in charts {
        let svg = render_svg_with(c, markers, x_max, opts)?;
        write(&dir.join(&c.file), &svg)?;
    }
    let cluster = summary.get("cluster").filter(|_| timeline::cluster_of(summary).is_some());
    if let Some(svg) = cluster.and_then(|c| render_cluster_timeline(c, markers, x_max)) {
        write(&dir.join(CLUSTER_TIMELINE_FILE), &svg)?;
    }
    write(
        &dir.join("index.html"),
        &html::index_html(summary, charts.iter().map(|(c, _)| c), markers),
    )
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
            lines: vec![Line {
                name: "acked".into(),
                points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, f64::NAN)],
            }],
        };
        let svg = render_svg(&chart, &[Marker { at_s: 1.0, label: "kill".into() }], 2.0).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("kill") && svg.contains("acked"));
        let summary = serde_json::json!({"scenario": "x<y", "verdict": "pass", "checks": {"lost-write": {"outcome": "held", "expected": "held", "detail": "ok"}}});
        let html = render_index(&summary, &[chart]);
        assert!(html.contains("x&lt;y") && html.contains("t.svg") && html.contains("lost-write"));
    }
}
