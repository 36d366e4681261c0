//! The cluster's story as one picture (`cluster_timeline.svg`): per partition the leader (a bar
//! coloured and labelled by broker) and the ISR (one thin lane per broker, filled while it is in
//! the ISR), a row for the active controller, and the faults as vertical markers on the same time
//! axis. Hand-written SVG: rectangles and text only, with `<title>` tooltips when opened directly.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::format::{esc, fmt_num};
use crate::plot::{place_labels, MAX_LABEL_ROWS};
use crate::Marker;

/// Broker colours (a qualitative palette without red, which marks faults).
const BROKER_COLORS: [(u8, u8, u8); 9] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];
const NONE_FILL: &str = "#d9d9d9";
const FAULT: &str = "#d62728";

fn broker_color(b: i64) -> String {
    let (r, g, bl) = BROKER_COLORS[b.rem_euclid(BROKER_COLORS.len() as i64) as usize];
    format!("rgb({r},{g},{bl})")
}

/// Dark text on light fills, white on dark.
fn text_color_on(b: i64) -> &'static str {
    let (r, g, bl) = BROKER_COLORS[b.rem_euclid(BROKER_COLORS.len() as i64) as usize];
    let lum = 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(bl);
    if lum > 150.0 {
        "#111"
    } else {
        "#fff"
    }
}

/// One state of a partition from its timeline.
#[derive(Debug, Clone, PartialEq)]
struct PartState {
    t_s: f64,
    leader: i64,
    epoch: Option<i64>,
    isr: Vec<i64>,
}

fn part_states(p: &Value) -> Vec<PartState> {
    let Some(tl) = p.get("timeline").and_then(Value::as_array) else { return Vec::new() };
    let mut v: Vec<PartState> = tl
        .iter()
        .filter_map(|e| {
            Some(PartState {
                t_s: e.get("t_s")?.as_f64().filter(|t| t.is_finite())?,
                leader: e.get("leader").and_then(Value::as_i64).unwrap_or(-1),
                epoch: e.get("leader_epoch").and_then(Value::as_i64),
                isr: e
                    .get("isr")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default(),
            })
        })
        .collect();
    v.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    v
}

fn controller_states(c: &Value) -> Vec<(f64, i64, Option<i64>)> {
    let Some(a) = c.get("controllers").and_then(Value::as_array) else { return Vec::new() };
    let mut v: Vec<(f64, i64, Option<i64>)> = a
        .iter()
        .filter_map(|e| {
            Some((
                e.get("t_s")?.as_f64().filter(|t| t.is_finite())?,
                e.get("active").and_then(Value::as_i64).unwrap_or(-1),
                e.get("term").and_then(Value::as_i64),
            ))
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Partition names in natural order: `events-2` before `events-10`.
pub(crate) fn natural_key(name: &str) -> (String, u64, String) {
    match name.rsplit_once('-') {
        Some((topic, n)) if n.parse::<u64>().is_ok() => {
            (topic.to_string(), n.parse().unwrap_or(0), String::new())
        }
        _ => (name.to_string(), 0, name.to_string()),
    }
}

/// The cluster object of a summary, when it is one with partitions to draw.
pub(crate) fn cluster_of(summary: &Value) -> Option<&Map<String, Value>> {
    summary
        .get("cluster")
        .and_then(Value::as_object)
        .filter(|c| c.get("partitions").and_then(Value::as_object).is_some())
}

/// A step of 1, 2 or 5 × 10^k giving about `target` ticks over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let m = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

const W: f64 = 900.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = W - 20.0;
const BAR: f64 = 18.0;
const LANE: f64 = 4.0;
const LANE_STEP: f64 = 6.0;
const ROW_GAP: f64 = 12.0;
const LABEL_ROW: f64 = 14.0;
const CHAR_PX: f64 = 6.0;
const BAR_CHAR_PX: f64 = 6.5;

struct Svg {
    out: String,
}

impl Svg {
    /// A rectangle; `attrs` starts with its fill, e.g. `fill="#fff" stroke="#000"`.
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, attrs: &str, title: Option<&str>) {
        let _ = write!(
            self.out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" {attrs}>"#,
            w.max(0.0)
        );
        if let Some(t) = title {
            let _ = write!(self.out, "<title>{}</title>", esc(t));
        }
        self.out.push_str("</rect>\n");
    }

    fn text(&mut self, x: f64, y: f64, s: &str, attrs: &str) {
        let _ = writeln!(self.out, r#"<text x="{x:.1}" y="{y:.1}" {attrs}>{}</text>"#, esc(s));
    }

    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, attrs: &str) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" {attrs}/>"#
        );
    }
}

/// Text that fits in `w` pixels: the first of `choices` that fits, or nothing.
fn fitting<'a>(choices: &[&'a str], w: f64) -> Option<&'a str> {
    choices.iter().copied().find(|c| c.chars().count() as f64 * BAR_CHAR_PX + 6.0 <= w)
}

fn broker_list(isr: &[i64]) -> String {
    isr.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// Renders `summary["cluster"]` as an SVG timeline, or `None` when it has no partitions (a
/// single-broker run's `cluster` is null). The time axis runs from 0 to `x_max` (extended to
/// the last recorded state if later); `markers` are drawn as faults.
pub fn render_cluster_timeline(cluster: &Value, markers: &[Marker], x_max: f64) -> Option<String> {
    let parts_obj = cluster.get("partitions")?.as_object()?;
    let mut parts: Vec<(&String, Vec<PartState>)> =
        parts_obj.iter().map(|(k, v)| (k, part_states(v))).collect();
    parts.sort_by_key(|(k, _)| natural_key(k));
    let controllers = controller_states(cluster);

    // Brokers: as stated, else one more than the highest id seen.
    let seen_max = parts
        .iter()
        .flat_map(|(_, s)| {
            s.iter().flat_map(|st| st.isr.iter().copied().chain(std::iter::once(st.leader)))
        })
        .chain(controllers.iter().map(|c| c.1))
        .max()
        .unwrap_or(-1);
    let brokers = cluster
        .get("brokers")
        .and_then(Value::as_u64)
        .map_or(0, |b| b as i64)
        .max(seen_max + 1)
        .clamp(1, 64);

    let last_t = parts
        .iter()
        .flat_map(|(_, s)| s.iter().map(|st| st.t_s))
        .chain(controllers.iter().map(|c| c.0))
        .fold(0.0f64, f64::max);
    let x_hi = if x_max.is_finite() && x_max > 0.0 { x_max.max(last_t) } else { last_t.max(1.0) };
    let x_lo = 0.0;
    let px = |t: f64| LEFT + (t.clamp(x_lo, x_hi) - x_lo) / (x_hi - x_lo) * (RIGHT - LEFT);

    let faults: Vec<&Marker> =
        markers.iter().filter(|m| m.at_s.is_finite() && m.at_s >= x_lo && m.at_s <= x_hi).collect();
    let items: Vec<(f64, &str)> = faults.iter().map(|m| (px(m.at_s), m.label.as_str())).collect();
    let labels = place_labels(&items, W - 2.0, CHAR_PX, MAX_LABEL_ROWS);
    let label_rows = labels.iter().map(|l| l.0 + 1).max().unwrap_or(0) as f64;

    let part_row_h = BAR + 4.0 + brokers as f64 * LANE_STEP + ROW_GAP;
    let title_h = 26.0;
    let legend_h = 22.0;
    let strip_top = title_h + legend_h + 4.0;
    let rows_top = strip_top + label_rows * LABEL_ROW + 8.0;
    let rows_h = parts.len() as f64 * part_row_h + BAR + ROW_GAP;
    let axis_top = rows_top + rows_h;
    let height = axis_top + 44.0;

    let mut s = Svg { out: String::new() };
    let _ = writeln!(
        s.out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height:.0}" viewBox="0 0 {W} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    s.rect(0.0, 0.0, W, height, r##"fill="#fff""##, None);
    s.text(
        W / 2.0,
        18.0,
        "Cluster: leader and ISR per partition, active controller, faults",
        r#"text-anchor="middle" font-size="16""#,
    );

    // Legend.
    let mut lx = LEFT;
    let ly = title_h + 8.0;
    for b in 0..brokers.min(BROKER_COLORS.len() as i64) {
        s.rect(lx, ly, 12.0, 12.0, &format!(r#"fill="{}""#, broker_color(b)), None);
        s.text(lx + 15.0, ly + 10.0, &format!("b{b}"), "");
        lx += 40.0;
    }
    s.rect(lx, ly, 12.0, 12.0, &format!(r#"fill="{NONE_FILL}""#), None);
    s.text(lx + 15.0, ly + 10.0, "no leader", "");
    lx += 75.0;
    s.line(
        lx + 6.0,
        ly - 2.0,
        lx + 6.0,
        ly + 14.0,
        &format!(r#"stroke="{FAULT}" stroke-width="1.5""#),
    );
    s.text(lx + 12.0, ly + 10.0, "fault", "");
    lx += 50.0;
    s.text(
        lx,
        ly + 10.0,
        "bar: leader (bN) · thin lanes under it: ISR members, one lane per broker",
        r##"fill="#444""##,
    );

    // Grid and axis.
    let step = nice_step(x_hi - x_lo, 10.0);
    let mut t = (x_lo / step).ceil() * step;
    while t <= x_hi + step * 1e-9 {
        let x = px(t);
        s.line(x, rows_top - 4.0, x, axis_top, r##"stroke="#ececec""##);
        s.line(x, axis_top, x, axis_top + 5.0, r##"stroke="#000""##);
        s.text(x, axis_top + 17.0, &fmt_num((t * 1e6).round() / 1e6), r#"text-anchor="middle""#);
        t += step;
    }
    s.line(LEFT, axis_top, RIGHT, axis_top, r##"stroke="#000""##);
    s.text(
        (LEFT + RIGHT) / 2.0,
        axis_top + 36.0,
        "simulated time (s)",
        r#"text-anchor="middle" font-size="12""#,
    );

    // Partitions.
    let mut y = rows_top;
    for (name, states) in &parts {
        s.text(LEFT - 8.0, y + BAR / 2.0 + 4.0, name, r#"text-anchor="end" font-size="12""#);
        let lanes_top = y + BAR + 4.0;
        s.text(
            LEFT - 8.0,
            lanes_top + brokers as f64 * LANE_STEP / 2.0 + 3.0,
            "ISR",
            r##"text-anchor="end" font-size="9" fill="#666""##,
        );
        for b in 0..brokers {
            s.rect(
                LEFT,
                lanes_top + b as f64 * LANE_STEP,
                RIGHT - LEFT,
                LANE,
                r##"fill="#f3f3f3""##,
                None,
            );
        }
        for (i, st) in states.iter().enumerate() {
            let end = states.get(i + 1).map_or(x_hi, |n| n.t_s);
            let (x0, x1) = (px(st.t_s), px(end));
            if x1 <= x0 {
                continue;
            }
            let epoch = st.epoch.map_or(String::new(), |e| format!(", epoch {e}"));
            let tip = if st.leader >= 0 {
                format!(
                    "{name}: leader broker-{}{epoch}, ISR [{}], {} s – {} s",
                    st.leader,
                    broker_list(&st.isr),
                    fmt_num(st.t_s),
                    fmt_num(end)
                )
            } else {
                format!(
                    "{name}: no leader, ISR [{}], {} s – {} s",
                    broker_list(&st.isr),
                    fmt_num(st.t_s),
                    fmt_num(end)
                )
            };
            let (fill, fg) = if st.leader >= 0 {
                (broker_color(st.leader), text_color_on(st.leader))
            } else {
                (NONE_FILL.to_string(), "#333")
            };
            s.rect(
                x0,
                y,
                x1 - x0,
                BAR,
                &format!(r##"fill="{fill}" stroke="#fff" stroke-width="1""##),
                Some(&tip),
            );
            let long = if st.leader >= 0 {
                format!("b{} · ISR {}", st.leader, broker_list(&st.isr))
            } else {
                format!("no leader · ISR {}", broker_list(&st.isr))
            };
            let short = if st.leader >= 0 { format!("b{}", st.leader) } else { "none".to_string() };
            if let Some(label) = fitting(&[&long, &short], x1 - x0) {
                s.text(x0 + 4.0, y + BAR / 2.0 + 4.0, label, &format!(r#"fill="{fg}""#));
            }
            for &b in &st.isr {
                if (0..brokers).contains(&b) {
                    s.rect(
                        x0,
                        lanes_top + b as f64 * LANE_STEP,
                        x1 - x0,
                        LANE,
                        &format!(r#"fill="{}""#, broker_color(b)),
                        Some(&tip),
                    );
                }
            }
        }
        y += part_row_h;
    }

    // The active controller.
    s.text(LEFT - 8.0, y + BAR / 2.0 + 4.0, "controller", r#"text-anchor="end" font-size="12""#);
    for (i, &(t0, active, term)) in controllers.iter().enumerate() {
        let end = controllers.get(i + 1).map_or(x_hi, |n| n.0);
        let (x0, x1) = (px(t0), px(end));
        if x1 <= x0 {
            continue;
        }
        let term_s = term.map_or(String::new(), |t| format!(" · term {t}"));
        let tip = if active >= 0 {
            format!(
                "active controller broker-{active}{term_s}, {} s – {} s",
                fmt_num(t0),
                fmt_num(end)
            )
        } else {
            format!("no active controller, {} s – {} s", fmt_num(t0), fmt_num(end))
        };
        let (fill, fg) = if active >= 0 {
            (broker_color(active), text_color_on(active))
        } else {
            (NONE_FILL.to_string(), "#333")
        };
        s.rect(
            x0,
            y,
            x1 - x0,
            BAR,
            &format!(r##"fill="{fill}" stroke="#fff" stroke-width="1""##),
            Some(&tip),
        );
        let long = if active >= 0 { format!("b{active}{term_s}") } else { "none".to_string() };
        let short = if active >= 0 { format!("b{active}") } else { "none".to_string() };
        if let Some(label) = fitting(&[&long, &short], x1 - x0) {
            s.text(x0 + 4.0, y + BAR / 2.0 + 4.0, label, &format!(r#"fill="{fg}""#));
        }
    }
    if controllers.is_empty() {
        s.text(LEFT + 4.0, y + BAR / 2.0 + 4.0, "not recorded", r##"fill="#888""##);
    }

    // Faults: a line through every row, the label above.
    for (m, &(row, right)) in faults.iter().zip(&labels) {
        let x = px(m.at_s);
        let ty = strip_top + row as f64 * LABEL_ROW;
        s.line(x, ty, x, rows_top - 4.0, &format!(r#"stroke="{FAULT}" stroke-opacity="0.35""#));
        s.line(
            x,
            rows_top - 4.0,
            x,
            axis_top,
            &format!(r#"stroke="{FAULT}" stroke-width="1.5" stroke-dasharray="4 2""#),
        );
        let (anchor, tx) = if right { ("end", x - 3.0) } else { ("start", x + 3.0) };
        let _ = writeln!(
            s.out,
            r#"<text x="{tx:.1}" y="{:.1}" fill="{FAULT}" text-anchor="{anchor}"><title>{} at {} s</title>{}</text>"#,
            ty + 10.0,
            esc(&m.label),
            fmt_num(m.at_s),
            esc(&m.label)
        );
    }
    s.out.push_str("</svg>\n");
    Some(s.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nice_steps_and_natural_order() {
        assert_eq!(nice_step(60.0, 10.0), 10.0);
        assert_eq!(nice_step(12.0, 10.0), 2.0);
        assert_eq!(nice_step(3.0, 10.0), 0.5);
        let mut v = vec!["events-10", "events-2", "audit-0"];
        v.sort_by_key(|k| natural_key(k));
        assert_eq!(v, vec!["audit-0", "events-2", "events-10"]);
    }

    #[test]
    fn draws_leaders_isr_controller_and_faults() {
        let cluster = json!({
            "brokers": 3,
            "partitions": {
                "events-1": {"timeline": [{"t_s": 0.25, "leader": 1, "leader_epoch": 0, "isr": [1, 2, 0]}]},
                "events-0": {"timeline": [
                    {"t_s": 0.25, "leader": 0, "leader_epoch": 0, "isr": [0, 1, 2]},
                    {"t_s": 5.0, "leader": -1, "leader_epoch": 0, "isr": [1, 2]},
                    {"t_s": 5.25, "leader": 1, "leader_epoch": 1, "isr": [1, 2]}
                ]}
            },
            "controllers": [{"t_s": 0.25, "active": 0, "term": 1}, {"t_s": 8.0, "active": 2, "term": 2}]
        });
        let svg = render_cluster_timeline(
            &cluster,
            &[Marker { at_s: 5.0, label: "kill leader:events/0 → broker-0 <&>".into() }],
            20.0,
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Natural order: events-0's row comes first.
        assert!(svg.find(">events-0<").unwrap() < svg.find(">events-1<").unwrap());
        // Leader bars labelled by broker, with the ISR where there is room.
        assert!(svg.contains(">b0 · ISR 0,1,2<"), "{svg}");
        assert!(svg.contains(">b1 · ISR 1,2<"), "{svg}");
        assert!(svg.contains("events-0: no leader, ISR [1,2], 5 s – 5.25 s"), "{svg}");
        // ISR lanes: events-0 after 5.25 s has lanes for brokers 1 and 2 only → 2 lane rects with that tip.
        let tip = "events-0: leader broker-1, epoch 1, ISR [1,2], 5.25 s – 20 s";
        assert_eq!(svg.matches(tip).count(), 3, "bar + two ISR lanes");
        // Controller row with terms.
        assert!(svg.contains(">b0 · term 1<") && svg.contains(">b2 · term 2<"), "{svg}");
        // The fault label, escaped, and its line.
        assert!(svg.contains("kill leader:events/0 → broker-0 &lt;&amp;&gt;"), "{svg}");
        assert!(svg.contains("stroke-dasharray"));
        // Time axis ticks up to 20 s.
        assert!(svg.contains(">20<") && svg.contains("simulated time (s)"));
    }

    #[test]
    fn nothing_to_draw_without_partitions() {
        assert!(render_cluster_timeline(&Value::Null, &[], 10.0).is_none());
        assert!(cluster_of(&json!({"cluster": null})).is_none());
        assert!(cluster_of(&json!({"cluster": {"partitions": {}}})).is_some());
    }
}
