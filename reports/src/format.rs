//! Text helpers shared by the HTML page and the SVGs: escaping, numbers for people, JSON as tables.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Escapes text for HTML and SVG (element content and double- or single-quoted attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Inserts `,` between groups of three digits of an optionally signed integer string.
fn group_digits(int: &str) -> String {
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A number as a person reads it: integers with thousands separators (`14,948`); values of 1 and
/// more with at most three decimals (`3.142`, `12,345.679`); smaller values with three significant
/// digits (`0.000123`, `0.988`); tiny ones in scientific notation. Trailing zeros are dropped.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let a = x.abs();
    if x == x.trunc() && a < 1e15 {
        return group_digits(&format!("{x:.0}"));
    }
    if a >= 1e15 {
        return format!("{x:.3e}");
    }
    if a >= 1.0 {
        let s = format!("{x:.3}");
        let s = trim_fraction(&s);
        let (int, frac) = s.split_once('.').map_or((s, None), |(i, f)| (i, Some(f)));
        return match frac {
            Some(f) => format!("{}.{f}", group_digits(int)),
            None => group_digits(int),
        };
    }
    if a >= 1e-6 {
        // Three significant digits: 0.0123 has its first significant digit at decimal 2.
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{x:.decimals$}");
        return trim_fraction(&s).to_string();
    }
    format!("{x:.2e}")
}

/// A JSON number: integers exactly (no detour through f64), others via [`fmt_num`].
fn fmt_json_number(n: &serde_json::Number) -> String {
    if let Some(u) = n.as_u64() {
        group_digits(&u.to_string())
    } else if let Some(i) = n.as_i64() {
        group_digits(&i.to_string())
    } else {
        fmt_num(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Bytes in binary units, e.g. `1.5 MiB`.
pub fn fmt_bytes(b: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b;
    let mut u = 0;
    while v.abs() >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{} B", fmt_num(b))
    } else {
        format!("{:.2} {}", v, UNITS[u])
    }
}

/// A number in a table cell: formatted, with a unit hint derived from its key where the raw
/// number is hard to read (`peak_dirty_bytes: 12,582,912 (12.00 MiB)`, `hit_ratio: 0.934 (93.4%)`).
fn number_cell(key: &str, n: &serde_json::Number) -> String {
    let text = fmt_json_number(n);
    let Some(x) = n.as_f64() else { return esc(&text) };
    let k = key.to_ascii_lowercase();
    let hint = if k.contains("bytes") && x.abs() >= 1024.0 {
        let rate = k.ends_with("per_s") || k.ends_with("persec") || k.ends_with("_s");
        Some(format!("{}{}", fmt_bytes(x), if rate { "/s" } else { "" }))
    } else if (k.contains("ratio") || k.contains("utilization")) && (0.0..=1.0).contains(&x) {
        Some(format!("{}%", fmt_num(x * 100.0)))
    } else {
        None
    };
    match hint {
        Some(h) => format!("{} <span class=\"hint\">({})</span>", esc(&text), esc(&h)),
        None => esc(&text),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// Rows shown of a long array before "… N more".
const MAX_ROWS: usize = 50;

/// Column names of a list of objects, in order of first appearance.
fn columns<'a>(rows: impl Iterator<Item = &'a Map<String, Value>>) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        for k in r.keys() {
            if !cols.iter().any(|c| c == k) {
                cols.push(k.clone());
            }
        }
    }
    cols
}

/// A list of objects as one table: a header row of the union of their keys, one row each.
/// Columns named in `order` come first, in that order; the others follow as found.
pub fn records_table(rows: &[&Map<String, Value>], order: &[&str]) -> String {
    let mut cols = columns(rows.iter().copied());
    cols.sort_by_key(|c| order.iter().position(|o| o == c).unwrap_or(order.len()));
    let mut h = String::from("<table class=\"records\"><tr>");
    for c in &cols {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>\n");
    for r in rows.iter().take(MAX_ROWS) {
        h.push_str("<tr>");
        for c in &cols {
            let _ = write!(
                h,
                "<td>{}</td>",
                r.get(c).map_or_else(
                    || "<span class=\"na\">—</span>".to_string(),
                    |v| value_html(c, v)
                )
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>");
    if rows.len() > MAX_ROWS {
        let _ = write!(
            h,
            "<p class=\"more\">… {} more rows in summary.json</p>",
            rows.len() - MAX_ROWS
        );
    }
    h
}

/// An object whose values are all flat objects (or null), e.g. `final_logs` per partition: one
/// row per key with the inner fields as columns.
fn keyed_records_table(obj: &Map<String, Value>) -> String {
    let cols = columns(obj.values().filter_map(Value::as_object));
    let mut h = String::from("<table class=\"records\"><tr><th></th>");
    for c in &cols {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>\n");
    for (i, (k, v)) in obj.iter().enumerate() {
        if i == MAX_ROWS {
            let _ = writeln!(
                h,
                "<tr><td colspan=\"{}\" class=\"more\">… {} more in summary.json</td></tr>",
                cols.len() + 1,
                obj.len() - MAX_ROWS
            );
            break;
        }
        let _ = write!(h, "<tr><th>{}</th>", esc(k));
        match v.as_object() {
            Some(inner) => {
                for c in &cols {
                    let _ = write!(
                        h,
                        "<td>{}</td>",
                        inner.get(c).map_or_else(
                            || "<span class=\"na\">—</span>".to_string(),
                            |v| value_html(c, v)
                        )
                    );
                }
            }
            None => {
                let _ =
                    write!(h, "<td colspan=\"{}\">{}</td>", cols.len().max(1), value_html(k, v));
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>");
    h
}

/// The same, transposed, for few records with many fields (counters per broker): one row per
/// field, one column per key.
fn keyed_records_table_transposed(obj: &Map<String, Value>) -> String {
    let fields = columns(obj.values().filter_map(Value::as_object));
    let mut h = String::from("<table class=\"records\"><tr><th></th>");
    for k in obj.keys() {
        let _ = write!(h, "<th>{}</th>", esc(k));
    }
    h.push_str("</tr>\n");
    for f in &fields {
        let _ = write!(h, "<tr><th>{}</th>", esc(f));
        for v in obj.values() {
            let _ = write!(
                h,
                "<td>{}</td>",
                v.get(f).map_or_else(
                    || "<span class=\"na\">—</span>".to_string(),
                    |v| value_html(f, v)
                )
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>");
    h
}

/// Fields of a record table at most before it is transposed (or left nested).
const MAX_COLUMNS: usize = 12;
/// Records of a transposed table at most.
const MAX_TRANSPOSED: usize = 8;

/// Whether an object reads better as a table of records: at least two values, every value a
/// flat object or null, at least one object. `Some(true)`: transposed (many fields, few records).
fn keyed_records_shape(obj: &Map<String, Value>) -> Option<bool> {
    let flat = obj.len() >= 2
        && obj.values().any(Value::is_object)
        && obj
            .values()
            .all(|v| v.is_null() || v.as_object().is_some_and(|o| o.values().all(is_scalar)));
    if !flat {
        return None;
    }
    let n = columns(obj.values().filter_map(Value::as_object)).len();
    if n <= MAX_COLUMNS {
        Some(false)
    } else if obj.len() <= MAX_TRANSPOSED && obj.values().all(Value::is_object) {
        Some(true)
    } else {
        None
    }
}

/// An object as a key/value table; nested objects become nested tables.
pub fn object_table(obj: &Map<String, Value>) -> String {
    let mut h = String::from("<table class=\"kv\">\n");
    for (k, v) in obj {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), value_html(k, v));
    }
    h.push_str("</table>");
    h
}

/// Any JSON value as HTML: scalars as formatted text, objects and lists of objects as tables.
/// `key` is the value's name in its parent (it picks unit hints for numbers).
pub fn value_html(key: &str, v: &Value) -> String {
    match v {
        Value::Null => "<span class=\"na\">—</span>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_cell(key, n),
        Value::String(s) => esc(s),
        Value::Array(items) => {
            if items.is_empty() {
                "<span class=\"na\">none</span>".to_string()
            } else if items.iter().all(is_scalar) {
                let shown: Vec<String> =
                    items.iter().take(MAX_ROWS).map(|i| value_html(key, i)).collect();
                let more = if items.len() > MAX_ROWS {
                    format!(", … {} more", items.len() - MAX_ROWS)
                } else {
                    String::new()
                };
                format!("{}{more}", shown.join(", "))
            } else if items.iter().all(Value::is_object) {
                let rows: Vec<&Map<String, Value>> =
                    items.iter().filter_map(Value::as_object).collect();
                records_table(&rows, &[])
            } else {
                let mut h = String::from("<ol>");
                for i in items.iter().take(MAX_ROWS) {
                    let _ = write!(h, "<li>{}</li>", value_html(key, i));
                }
                h.push_str("</ol>");
                h
            }
        }
        Value::Object(obj) => {
            if obj.is_empty() {
                "<span class=\"na\">none</span>".to_string()
            } else {
                match keyed_records_shape(obj) {
                    Some(false) => keyed_records_table(obj),
                    Some(true) => keyed_records_table_transposed(obj),
                    None => object_table(obj),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_read_like_numbers() {
        assert_eq!(fmt_num(14948.0), "14,948");
        assert_eq!(fmt_num(-1234567.0), "-1,234,567");
        assert_eq!(fmt_num(999.0), "999");
        assert_eq!(fmt_num(1.23456), "1.235");
        assert_eq!(fmt_num(12345.6789), "12,345.679");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(0.98765), "0.988");
        assert_eq!(fmt_num(0.000123456), "0.000123");
        assert_eq!(fmt_num(-0.5), "-0.5");
        assert_eq!(fmt_num(1.5e-9), "1.50e-9");
        assert_eq!(fmt_num(f64::NAN), "NaN");
        assert_eq!(fmt_bytes(512.0), "512 B");
        assert_eq!(fmt_bytes(1536.0), "1.50 KiB");
        assert_eq!(fmt_bytes(12.0 * 1024.0 * 1024.0), "12.00 MiB");
    }

    #[test]
    fn esc_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("kill leader:events/0 → broker-1"), "kill leader:events/0 → broker-1");
    }

    #[test]
    fn nested_objects_become_tables() {
        let v = json!({"produce": {"records_per_s": 14948.123456, "bytes_per_s": 1494812}, "note": "<b>"});
        let h = value_html("throughput", &v);
        // Nested object → nested table, numbers formatted, text escaped, no raw JSON braces.
        assert!(h.matches("<table").count() >= 2, "{h}");
        assert!(h.contains("<th>records_per_s</th><td>14,948.123</td>"), "{h}");
        assert!(h.contains("1,494,812 <span class=\"hint\">(1.43 MiB/s)</span>"), "{h}");
        assert!(h.contains("&lt;b&gt;") && !h.contains("<b>"), "{h}");
        assert!(!h.contains('{'), "{h}");
    }

    #[test]
    fn maps_of_records_and_lists_of_records_get_columns() {
        let v = json!({"events-0": {"log_end_offset": 1200, "records": 1200}, "events-1": null, "events-2": {"log_end_offset": 7, "records": 7}});
        let h = value_html("final_logs", &v);
        assert!(h.contains("<th>log_end_offset</th><th>records</th>"), "{h}");
        assert!(h.contains("<tr><th>events-0</th><td>1,200</td><td>1,200</td></tr>"), "{h}");
        let l = value_html("x", &json!([{"a": 1, "b": "x"}, {"a": 2, "c": 0.5}]));
        assert!(l.contains("<th>a</th><th>b</th><th>c</th>"), "{l}");
        assert!(l.contains("<td>2</td><td><span class=\"na\">—</span></td><td>0.5</td>"), "{l}");
        assert_eq!(value_html("x", &json!([1, 2000])), "1, 2,000");
        assert!(value_html("hit_ratio", &json!(0.934)).contains("93.4%"));
        // Many counters for few brokers: one row per counter, one column per broker.
        let fields: serde_json::Map<String, Value> =
            (0..15).map(|i| (format!("c{i:02}"), json!(i))).collect();
        let per_broker = json!({"broker-0": fields.clone(), "broker-1": fields});
        let t = value_html("per_broker", &per_broker);
        assert!(t.contains("<tr><th></th><th>broker-0</th><th>broker-1</th></tr>"), "{t}");
        assert!(t.contains("<tr><th>c14</th><td>14</td><td>14</td></tr>"), "{t}");
    }
}
