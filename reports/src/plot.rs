//! Line charts drawn with plotters' SVG backend: gaps break lines, optional log y axis, an x window
//! chosen by the caller that alone decides the scales, fault markers labelled above the plot.

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::format::fmt_num;
use crate::{Chart, Marker, ReportError};

/// How one chart is drawn. `PlotOptions::default()` is what [`crate::render_svg`] does: linear y
/// from zero, x from 0 to the run's end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlotOptions {
    /// Logarithmic y axis (decades), for values spanning orders of magnitude such as latency: a
    /// 4 ms median and a 3 s outlier are both readable. Values ≤ 0 are drawn on the axis floor.
    pub y_log: bool,
    /// The x window (seconds) that is drawn: points outside it are left out and do not count for
    /// the y scale, markers outside it are not drawn. `None`: `0 ..= x_max`.
    pub x_range: Option<(f64, f64)>,
    /// A fixed y range instead of one computed from the points in the window (e.g. `(0.0, 1.0)`
    /// for a utilization). Ignored when unusable (not finite, empty, or ≤ 0 with `y_log`).
    pub y_range: Option<(f64, f64)>,
    /// Consecutive points further apart in x than this many seconds are not joined (for series
    /// that leave empty intervals out instead of marking them with NaN). `None`: only NaN breaks.
    pub gap_s: Option<f64>,
    /// The x axis' description; `None`: "simulated time (s)" (plots of a parameter, such as a
    /// grid's throughput against `batch.size`, name their parameter).
    pub x_label: Option<String>,
}

impl PlotOptions {
    /// Linear y, whole run.
    pub fn linear() -> Self {
        Self::default()
    }

    /// Log y, whole run.
    pub fn log() -> Self {
        Self { y_log: true, ..Self::default() }
    }

    /// The same options drawing only `x_min ..= x_max` seconds.
    #[must_use]
    pub fn with_x_range(mut self, x_min: f64, x_max: f64) -> Self {
        self.x_range = Some((x_min, x_max));
        self
    }

    /// The same options, not joining points more than `gap_s` seconds apart.
    #[must_use]
    pub fn with_gap(mut self, gap_s: f64) -> Self {
        self.gap_s = Some(gap_s);
        self
    }

    /// The same options with the x axis described as `label`.
    #[must_use]
    pub fn with_x_label(mut self, label: &str) -> Self {
        self.x_label = Some(label.to_string());
        self
    }

    /// The same options with a fixed y range.
    #[must_use]
    pub fn with_y_range(mut self, y_min: f64, y_max: f64) -> Self {
        self.y_range = Some((y_min, y_max));
        self
    }
}

/// The x window actually drawn.
pub(crate) fn x_window(x_max: f64, opts: &PlotOptions) -> (f64, f64) {
    match opts.x_range {
        Some((a, b)) if a.is_finite() && b.is_finite() && b > a => (a, b),
        _ => (0.0, if x_max.is_finite() && x_max > 0.0 { x_max } else { 1.0 }),
    }
}

/// The drawable runs of a line: a point whose x or y is not finite (NaN marks "no data here")
/// ends the current run, and so does a point outside the x window (dropped); with `gap_s`, so
/// does a step in x longer than it.
pub(crate) fn segments(
    points: &[(f64, f64)],
    x_lo: f64,
    x_hi: f64,
    gap_s: Option<f64>,
) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() && x >= x_lo && x <= x_hi {
            if let (Some(g), Some(&(px, _))) = (gap_s, cur.last()) {
                if x - px > g {
                    out.push(std::mem::take(&mut cur));
                }
            }
            cur.push((x, y));
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The y range from the points inside the window (and the caller's fixed range when usable).
pub(crate) fn y_window(chart: &Chart, x_lo: f64, x_hi: f64, opts: &PlotOptions) -> (f64, f64) {
    if let Some((a, b)) = opts.y_range {
        if a.is_finite() && b.is_finite() && b > a && (!opts.y_log || a > 0.0) {
            return (a, b);
        }
    }
    let ys = chart
        .lines
        .iter()
        .flat_map(|l| l.points.iter())
        .filter(|(x, y)| x.is_finite() && *x >= x_lo && *x <= x_hi && y.is_finite())
        .map(|p| p.1);
    if opts.y_log {
        let (lo, hi) = ys
            .filter(|y| *y > 0.0)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
        if !lo.is_finite() {
            return (1.0, 10.0);
        }
        let lo = 10f64.powf(lo.log10().floor());
        let mut hi = 10f64.powf(hi.log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
        (lo, hi)
    } else {
        let (lo, hi) = ys.fold((0.0f64, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
        if hi <= lo {
            return (lo, lo + 1.0);
        }
        let pad = (hi - lo) * 0.08;
        (if lo < 0.0 { lo - pad } else { lo }, hi + pad)
    }
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];
pub(crate) const FAULT_RED: RGBColor = RGBColor(214, 39, 40);

/// Compact tick label: `0.001`, `2.5`, `1,000`.
fn tick(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.0e}")
    } else {
        fmt_num((v * 1e6).round() / 1e6)
    }
}

/// Renders one chart to an SVG string with the given options.
pub fn render_svg_with(
    chart: &Chart,
    markers: &[Marker],
    x_max: f64,
    opts: &PlotOptions,
) -> Result<String, ReportError> {
    let (x_lo, x_hi) = x_window(x_max, opts);
    let (y_lo, y_hi) = y_window(chart, x_lo, x_hi, opts);
    if opts.y_log {
        draw(chart, markers, (x_lo, x_hi), (y_lo, y_hi), (y_lo..y_hi).log_scale(), opts)
    } else {
        draw(chart, markers, (x_lo, x_hi), (y_lo, y_hi), y_lo..y_hi, opts)
    }
}

const WIDTH: u32 = 900;
const PLOT_HEIGHT: u32 = 330;
const CAPTION_PX: u32 = 30;
const ROW_PX: u32 = 15;
const LEGEND_ROW_PX: u32 = 20;
/// Left edge of the plotting area: margin + y label area.
const PLOT_LEFT: f64 = 10.0 + 75.0;
const PLOT_RIGHT: f64 = WIDTH as f64 - 15.0;
const MARKER_CHAR_PX: f64 = 6.5;
/// Rows of fault labels above a plot at most.
pub(crate) const MAX_LABEL_ROWS: usize = 8;
const LEGEND_CHAR_PX: f64 = 7.5;

/// Places labels in rows so that none overlaps another. `xs[i]` is label i's anchor pixel and
/// `texts[i]` its text; a label starts at its anchor unless it would run past `right_edge`, then
/// it ends there. At most `max_rows` rows: past that a label goes to the row that ends first
/// (and may overlap). Returns (row, anchored right) per label.
pub(crate) fn place_labels(
    items: &[(f64, &str)],
    right_edge: f64,
    char_px: f64,
    max_rows: usize,
) -> Vec<(usize, bool)> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|a, b| items[*a].0.total_cmp(&items[*b].0));
    // Per row: the rightmost pixel used so far.
    let mut row_end: Vec<f64> = Vec::new();
    let mut out = vec![(0usize, false); items.len()];
    for i in order {
        let (p, text) = items[i];
        let w = text.chars().count() as f64 * char_px + 6.0;
        let right_anchor = p + w > right_edge;
        let (start, end) = if right_anchor { (p - w, p) } else { (p, p + w) };
        let row = match row_end.iter().position(|e| start > *e) {
            Some(r) => r,
            None if row_end.len() < max_rows.max(1) => row_end.len(),
            None => {
                (0..row_end.len()).min_by(|a, b| row_end[*a].total_cmp(&row_end[*b])).unwrap_or(0)
            }
        };
        if row == row_end.len() {
            row_end.push(end);
        } else {
            row_end[row] = end;
        }
        out[i] = (row, right_anchor);
    }
    out
}

/// Legend rows: (line index, x pixel, row).
fn place_legend(chart: &Chart) -> Vec<(usize, i32, u32)> {
    let mut out = Vec::new();
    let (mut x, mut row) = (PLOT_LEFT, 0u32);
    for (i, l) in chart.lines.iter().enumerate() {
        let w = 26.0 + l.name.chars().count() as f64 * LEGEND_CHAR_PX + 18.0;
        if x + w > PLOT_RIGHT && x > PLOT_LEFT {
            x = PLOT_LEFT;
            row += 1;
        }
        out.push((i, x as i32, row));
        x += w;
    }
    out
}

fn draw<Y>(
    chart: &Chart,
    markers: &[Marker],
    (x_lo, x_hi): (f64, f64),
    (y_lo, y_hi): (f64, f64),
    y_spec: Y,
    opts: &PlotOptions,
) -> Result<String, ReportError>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let err = |e: &dyn std::fmt::Display| ReportError::Plot {
        file: chart.file.clone(),
        msg: e.to_string(),
    };
    let in_window: Vec<&Marker> =
        markers.iter().filter(|m| m.at_s.is_finite() && m.at_s >= x_lo && m.at_s <= x_hi).collect();
    let px = |x: f64| PLOT_LEFT + (x - x_lo) / (x_hi - x_lo) * (PLOT_RIGHT - PLOT_LEFT);
    let items: Vec<(f64, &str)> =
        in_window.iter().map(|m| (px(m.at_s), m.label.as_str())).collect();
    let labels = place_labels(&items, f64::from(WIDTH) - 2.0, MARKER_CHAR_PX, MAX_LABEL_ROWS);
    let label_rows = labels.iter().map(|l| l.0 + 1).max().unwrap_or(0) as u32;
    let legend = place_legend(chart);
    let legend_rows = legend.iter().map(|l| l.2 + 1).max().unwrap_or(0);
    let marker_strip = if label_rows == 0 { 4 } else { label_rows * ROW_PX + 6 };
    let height = CAPTION_PX + marker_strip + PLOT_HEIGHT + legend_rows * LEGEND_ROW_PX + 6;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (caption, rest) = root.split_vertically(CAPTION_PX);
        caption
            .draw(&Text::new(
                chart.title.clone(),
                (WIDTH as i32 / 2, 8),
                ("sans-serif", 20)
                    .into_font()
                    .into_text_style(&root)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(|e| err(&e))?;
        let (strip, rest) = rest.split_vertically(marker_strip);
        let (plot_area, legend_area) = rest.split_vertically(PLOT_HEIGHT);
        let y_desc = if opts.y_log {
            format!("{} (log scale)", chart.y_label)
        } else {
            chart.y_label.clone()
        };
        let mut cc = ChartBuilder::on(&plot_area)
            .margin_left(10)
            .margin_right(15)
            .margin_top(4)
            .margin_bottom(4)
            .x_label_area_size(38)
            .y_label_area_size(75)
            .build_cartesian_2d::<RangedCoordf64, Y>((x_lo..x_hi).into(), y_spec)
            .map_err(|e| err(&e))?;
        cc.configure_mesh()
            .x_desc(opts.x_label.as_deref().unwrap_or("simulated time (s)"))
            .y_desc(y_desc)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(RGBColor(242, 242, 242))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(|e| err(&e))?;

        // Fault markers: a line over the plot, its label in the strip above.
        let (_, strip_top) = strip.get_base_pixel();
        for (m, (row, right)) in in_window.iter().zip(&labels) {
            let (px, bottom) = cc.backend_coord(&(m.at_s, y_lo));
            let (_, top) = cc.backend_coord(&(m.at_s, y_hi));
            let label_y = strip_top + (*row as i32) * ROW_PX as i32 + 2;
            let red = FAULT_RED;
            root.draw(&PathElement::new(
                vec![(px, label_y), (px, top)],
                red.mix(0.35).stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
            root.draw(&PathElement::new(vec![(px, top), (px, bottom)], red.stroke_width(1)))
                .map_err(|e| err(&e))?;
            let (hpos, tx) = if *right { (HPos::Right, px - 3) } else { (HPos::Left, px + 3) };
            root.draw(&Text::new(
                m.label.clone(),
                (tx, label_y),
                ("sans-serif", 13).into_font().color(&red).pos(Pos::new(hpos, VPos::Top)),
            ))
            .map_err(|e| err(&e))?;
        }

        // Lines: one path per run of points, a dot for a run of one.
        for (i, line) in chart.lines.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            for seg in segments(&line.points, x_lo, x_hi, opts.gap_s) {
                let seg: Vec<(f64, f64)> = if opts.y_log {
                    seg.into_iter().map(|(x, y)| (x, y.max(y_lo))).collect()
                } else {
                    seg
                };
                if seg.len() == 1 {
                    cc.draw_series(std::iter::once(Circle::new(seg[0], 2, color.filled())))
                        .map_err(|e| err(&e))?;
                } else {
                    cc.draw_series(LineSeries::new(seg, color.stroke_width(2)))
                        .map_err(|e| err(&e))?;
                }
            }
        }

        // Legend under the plot.
        let (_, legend_top) = legend_area.get_base_pixel();
        for (i, x, row) in legend {
            let color = COLORS[i % COLORS.len()];
            let y = legend_top + (row * LEGEND_ROW_PX) as i32 + 10;
            root.draw(&PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)))
                .map_err(|e| err(&e))?;
            root.draw(&Text::new(
                chart.lines[i].name.clone(),
                (x + 26, y),
                ("sans-serif", 15)
                    .into_font()
                    .into_text_style(&root)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Line;

    #[test]
    fn nan_and_window_break_lines() {
        let pts = [
            (0.0, 1.0),
            (1.0, 2.0),
            (2.0, f64::NAN),
            (3.0, 4.0),
            (4.0, 5.0),
            (5.0, 6.0),
            (9.0, 1.0),
        ];
        assert_eq!(
            segments(&pts, 0.0, 10.0, None),
            vec![
                vec![(0.0, 1.0), (1.0, 2.0)],
                vec![(3.0, 4.0), (4.0, 5.0), (5.0, 6.0), (9.0, 1.0)]
            ]
        );
        // Outside the window is dropped (0.0 and 9.0), inside kept.
        assert_eq!(
            segments(&pts, 0.5, 8.0, None),
            vec![vec![(1.0, 2.0)], vec![(3.0, 4.0), (4.0, 5.0), (5.0, 6.0)]]
        );
        // A 4 s step with a 1.5 s gap limit: 5.0 and 9.0 are not joined.
        assert_eq!(
            segments(&pts, 0.0, 10.0, Some(1.5)),
            vec![
                vec![(0.0, 1.0), (1.0, 2.0)],
                vec![(3.0, 4.0), (4.0, 5.0), (5.0, 6.0)],
                vec![(9.0, 1.0)]
            ]
        );
    }

    #[test]
    fn y_scale_comes_from_the_window_only() {
        let chart = Chart {
            file: "l.svg".into(),
            title: "latency".into(),
            y_label: "ms".into(),
            lines: vec![Line {
                name: "p50".into(),
                points: vec![(0.1, 5000.0), (2.0, 4.0), (3.0, 3000.0), (4.0, 5.0), (10.0, 90000.0)],
            }],
        };
        let (lo, hi) = y_window(&chart, 1.0, 5.0, &PlotOptions::default());
        assert_eq!(lo, 0.0);
        assert!(hi > 3000.0 && hi < 3500.0, "{hi}");
        let (lo, hi) = y_window(&chart, 1.0, 5.0, &PlotOptions::log());
        assert_eq!((lo, hi), (1.0, 10000.0));
        assert_eq!(
            y_window(&chart, 1.0, 5.0, &PlotOptions::default().with_y_range(0.0, 1.0)),
            (0.0, 1.0)
        );
        // An unusable fixed range on a log axis falls back to the data.
        assert_eq!(
            y_window(&chart, 1.0, 5.0, &PlotOptions::log().with_y_range(0.0, 1.0)),
            (1.0, 10000.0)
        );
        assert_eq!(x_window(7.0, &PlotOptions::default()), (0.0, 7.0));
        assert_eq!(x_window(7.0, &PlotOptions::default().with_x_range(1.0, 5.0)), (1.0, 5.0));
        assert_eq!(x_window(7.0, &PlotOptions::default().with_x_range(5.0, 1.0)), (0.0, 7.0));
    }

    #[test]
    fn marker_labels_do_not_overlap() {
        let ms = [
            Marker { at_s: 5.0, label: "kill leader:events/0 → broker-1".into() },
            Marker { at_s: 5.5, label: "restart broker-1".into() },
            Marker { at_s: 30.0, label: "heal".into() },
            Marker { at_s: 59.9, label: "power loss broker-2".into() },
        ];
        let items: Vec<(f64, &str)> =
            ms.iter().map(|m| (80.0 + m.at_s * 13.0, m.label.as_str())).collect();
        let placed = place_labels(&items, 898.0, 6.0, 8);
        assert_eq!(placed[0].0, 0);
        assert_eq!(placed[1].0, 1, "close markers go to separate rows");
        assert_eq!(placed[2].0, 0, "a far marker reuses the first row");
        assert!(placed[3].1, "a label at the right edge is anchored right");
        assert!(!placed[0].1);
        // Twenty labels at one instant: capped at three rows.
        let crowd: Vec<(f64, &str)> = (0..20).map(|_| (100.0, "restart broker-1")).collect();
        let rows = place_labels(&crowd, 898.0, 6.0, 3);
        assert_eq!(rows.iter().map(|r| r.0).max(), Some(2));
    }
}
