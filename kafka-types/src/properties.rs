//! Java-properties text as Kafka's tools read it (`server.properties`, `--producer.config`, OMB's
//! driver blocks): `key=value` or `key:value` lines, `#` / `!` comments, blank lines; keys and
//! values trimmed; pairs in file order (a later duplicate wins where the caller applies them in
//! order). Line continuations and escapes are not supported: no Kafka config uses them.

/// A line that is not `key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based.
    pub line: usize,
    pub text: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: `{}` is not key=value", self.line, self.text)
    }
}

impl std::error::Error for BadLine {}

/// Parses properties text into (key, value) pairs in file order.
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, BadLine> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let bad = || BadLine { line: i + 1, text: raw.to_string() };
        let idx = line.find(['=', ':']).ok_or_else(bad)?;
        let (k, v) = (line[..idx].trim(), line[idx + 1..].trim());
        if k.is_empty() {
            return Err(bad());
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_in_order_comments_and_both_separators() {
        let got = parse_properties("# c\n! c\n\na = 1\nb:2\nbootstrap.servers=h:9092\n").unwrap();
        let want = [("a", "1"), ("b", "2"), ("bootstrap.servers", "h:9092")];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(parse_properties("a=1\nnope\n").unwrap_err().line, 2);
        assert_eq!(parse_properties("=1\n").unwrap_err().line, 1);
    }
}
