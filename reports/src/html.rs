//! `index.html`: verdict, checks, failed sends, the cluster's story, figures as tables, plots, and
//! the full summary folded away at the end.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::format::{esc, fmt_num, object_table, records_table, value_html};
use crate::timeline::{cluster_of, natural_key};
use crate::{Chart, Marker};

/// File name of the cluster timeline inside the run directory.
pub const CLUSTER_TIMELINE_FILE: &str = "cluster_timeline.svg";

/// The figures shown as tables, in order. `latency` falls back to the legacy `produce_latency_ms`.
const FIGURES: [&str; 9] =
    ["throughput", "latency", "page_cache", "disk", "cpu", "network", "speed", "history", "groups"];

const STYLE: &str =
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:.3em 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f4f4f4;font-weight:600}\
table.kv>tbody>tr>th,table.kv>tr>th{white-space:nowrap}\
td table{font-size:95%}\
table.records td{font-variant-numeric:tabular-nums}\
.pass{color:#2a2;font-weight:600}.fail{color:#c22;font-weight:600}\
.na{color:#999}.hint{color:#777;font-size:90%}.more{color:#777;font-style:italic}\
.note{color:#555;font-size:92%}\
pre{background:#f6f6f6;padding:1em;overflow:auto}\
details{margin:1.5em 0}summary{cursor:pointer;font-weight:600}\
img{max-width:100%;height:auto}";

fn str_of(summary: &Value, k: &str) -> String {
    summary
        .get(k)
        .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
        .unwrap_or_default()
}

fn checks_section(h: &mut String, summary: &Value) {
    h.push_str("<h2 id=\"checks\">Checks</h2>\n");
    let Some(checks) = summary.get("checks").and_then(Value::as_object).filter(|c| !c.is_empty())
    else {
        h.push_str("<p class=\"na\">no checks listed</p>\n");
        return;
    };
    let with_examined = checks.values().any(|c| c.get("examined").is_some());
    h.push_str("<table><tr><th>check</th><th>outcome</th><th>expected</th>");
    if with_examined {
        h.push_str("<th>examined</th>");
    }
    h.push_str("<th>detail</th></tr>\n");
    for (name, c) in checks {
        let g = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let ok = g("outcome") == g("expected");
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td>",
            esc(name),
            if ok { "pass" } else { "fail" },
            esc(&g("outcome")),
            esc(&g("expected"))
        );
        if with_examined {
            let _ = write!(
                h,
                "<td>{}</td>",
                c.get("examined").map_or_else(
                    || "<span class=\"na\">—</span>".to_string(),
                    |v| value_html("examined", v)
                )
            );
        }
        let _ = writeln!(h, "<td>{}</td></tr>", esc(&g("detail")));
    }
    h.push_str("</table>\n");
}

fn failed_sends_section(h: &mut String, summary: &Value) {
    h.push_str("<h2 id=\"failed-sends\">Failed sends</h2>\n");
    let history = summary.get("history");
    let examples: Vec<&Map<String, Value>> = history
        .and_then(|h| h.get("failed_sends"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let count = history
        .and_then(|h| h.get("failed"))
        .and_then(Value::as_u64)
        .unwrap_or(examples.len() as u64);
    if count == 0 && examples.is_empty() {
        h.push_str("<p>none</p>\n");
        return;
    }
    let _ = writeln!(
        h,
        "<p class=\"fail\">{} send{} failed.</p>",
        fmt_num(count as f64),
        if count == 1 { "" } else { "s" }
    );
    if examples.is_empty() {
        h.push_str("<p class=\"note\">no examples recorded</p>\n");
        return;
    }
    if (examples.len() as u64) < count {
        let _ = writeln!(h, "<p class=\"note\">the first {} of them:</p>", examples.len());
    }
    h.push_str(&records_table(&examples, &["producer", "partition", "error", "at_s"]));
    h.push('\n');
}

fn faults_section(h: &mut String, markers: &[Marker]) {
    if markers.is_empty() {
        return;
    }
    h.push_str("<h2 id=\"faults\">Faults</h2>\n<table class=\"records\"><tr><th>at_s</th><th>fault</th></tr>\n");
    let mut ms: Vec<&Marker> = markers.iter().collect();
    ms.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    for m in ms {
        let _ =
            writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(&fmt_num(m.at_s)), esc(&m.label));
    }
    h.push_str("</table>\n");
}

fn cluster_section(h: &mut String, summary: &Value) {
    let Some(c) = cluster_of(summary) else { return };
    h.push_str("<h2 id=\"cluster\">Cluster</h2>\n");
    let _ = writeln!(h, "<p><img src=\"{CLUSTER_TIMELINE_FILE}\" alt=\"cluster timeline: leader and ISR per partition, active controller, faults\" width=\"900\"></p>");
    if let Some(note) = c.get("note").and_then(Value::as_str) {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(note));
    }

    h.push_str("<h3>Leader elections</h3>\n");
    let elections: Vec<&Map<String, Value>> = c
        .get("leader_elections")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    if elections.is_empty() {
        h.push_str("<p>none (no fault hit a partition's leader)</p>\n");
    } else {
        h.push_str(&records_table(
            &elections,
            &[
                "partition",
                "fault",
                "at_s",
                "old_leader",
                "new_leader",
                "new_epoch",
                "elected_after_s",
            ],
        ));
        h.push('\n');
        if elections.iter().any(|e| e.get("new_leader").is_none_or(Value::is_null)) {
            h.push_str("<p class=\"note\">new_leader —: no new leader was elected before the run ended.</p>\n");
        }
    }

    // Per partition: counts and the final state.
    if let Some(parts) = c.get("partitions").and_then(Value::as_object) {
        h.push_str("<h3>Partitions</h3>\n<table class=\"records\"><tr><th>partition</th><th>leader changes</th><th>ISR shrinks</th><th>ISR expands</th><th>final leader</th><th>final ISR</th></tr>\n");
        let mut names: Vec<&String> = parts.keys().collect();
        names.sort_by_key(|k| natural_key(k));
        for name in names {
            let p = &parts[name];
            let n = |k: &str| {
                p.get(k)
                    .map_or_else(|| "<span class=\"na\">—</span>".to_string(), |v| value_html(k, v))
            };
            let last = p.get("timeline").and_then(Value::as_array).and_then(|t| t.last());
            let leader = match last.and_then(|l| l.get("leader")).and_then(Value::as_i64) {
                Some(b) if b >= 0 => format!("broker-{b}"),
                Some(_) => "none".to_string(),
                None => "—".to_string(),
            };
            let isr = last
                .and_then(|l| l.get("isr"))
                .map_or_else(|| "—".to_string(), |v| value_html("isr", v));
            let _ = writeln!(
                h,
                "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{isr}</td></tr>",
                esc(name),
                n("leader_changes"),
                n("isr_shrinks"),
                n("isr_expands"),
                esc(&leader)
            );
        }
        h.push_str("</table>\n");
    }

    if let Some(ctl) = c.get("controllers").and_then(Value::as_array).filter(|a| !a.is_empty()) {
        let changes = ctl.len().saturating_sub(1);
        let last = ctl.last().and_then(|l| l.get("active")).and_then(Value::as_i64).map_or(
            "—".to_string(),
            |b| if b >= 0 { format!("broker-{b}") } else { "none".to_string() },
        );
        let _ = writeln!(
            h,
            "<p>Active controller changed {changes} time{}; at the end: {}.</p>",
            if changes == 1 { "" } else { "s" },
            esc(&last)
        );
    }
}

fn figures_section(h: &mut String, summary: &Value) {
    h.push_str("<h2 id=\"figures\">Figures</h2>\n");
    let mut any = false;
    for key in FIGURES {
        let (name, v) = match (key, summary.get(key)) {
            ("latency", None | Some(Value::Null)) => {
                ("produce_latency_ms", summary.get("produce_latency_ms"))
            }
            (k, v) => (k, v),
        };
        let Some(v) = v else { continue };
        if v.is_null()
            || v.as_object().is_some_and(Map::is_empty)
            || v.as_array().is_some_and(Vec::is_empty)
        {
            continue;
        }
        any = true;
        let _ = writeln!(h, "<h3 id=\"fig-{0}\">{0}</h3>", esc(name));
        let body = match (name, v.as_object()) {
            // The failed-send examples have their own section.
            ("history", Some(obj)) if obj.contains_key("failed_sends") => {
                let mut o = obj.clone();
                let n = o.get("failed_sends").and_then(Value::as_array).map_or(0, Vec::len);
                o.insert(
                    "failed_sends".into(),
                    Value::String(format!(
                        "{n} example{} (see Failed sends)",
                        if n == 1 { "" } else { "s" }
                    )),
                );
                object_table(&o)
            }
            _ => value_html(name, v),
        };
        h.push_str(&body);
        h.push('\n');
    }
    if !any {
        h.push_str("<p class=\"na\">no figures in the summary</p>\n");
    }
}

/// The HTML page for a run whose plots are `charts` (files next to it) and whose faults are
/// `markers` (listed when there are any).
pub(crate) fn index_html<'a>(
    summary: &Value,
    charts: impl Iterator<Item = &'a Chart>,
    markers: &[Marker],
) -> String {
    let s = |k: &str| str_of(summary, k);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{name} seed {seed}: {verdict}</title>\n<style>{STYLE}</style></head><body>\n",
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
    checks_section(&mut h, summary);
    failed_sends_section(&mut h, summary);
    faults_section(&mut h, markers);
    cluster_section(&mut h, summary);
    figures_section(&mut h, summary);
    h.push_str("<h2 id=\"plots\">Plots</h2>\n");
    for c in charts {
        let _ = writeln!(
            h,
            "<h3>{}</h3>\n<img src=\"{}\" alt=\"{}\" width=\"900\">",
            esc(&c.title),
            esc(&c.file),
            esc(&c.title)
        );
    }
    let _ = write!(
        h,
        "<details><summary>summary.json (everything above, and every effective setting)</summary>\n<pre>{}</pre>\n</details>\n</body></html>\n",
        esc(&serde_json::to_string_pretty(summary).unwrap_or_default())
    );
    h
}
