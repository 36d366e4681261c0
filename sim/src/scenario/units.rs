//! Leaf values of scenario files and the bridge from serde's errors to ours.
//!
//! Every leaf is read from a `serde_json::Value` so it can accept the syntaxes the files use
//! ("10s", "1GiB", "5000/s", "10Gbps", numbers as strings) and fail with the message a user
//! reads today (`expected a duration like "10s", ...`). [`from_value`] runs a raw type's derived
//! `Deserialize` through `serde_path_to_error`, so every error names its JSON path.

use serde::de::{DeserializeOwned, Deserializer, Error as _, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{invalid, join, Acks, Mode, R};
use records::Compression;

/// A field that may be absent; when present it must hold a `T` (`null` is not "absent", as it
/// never was: it fails with `T`'s own message). Raw types default every field to absent.
#[derive(Debug, Clone)]
pub struct Opt<T>(pub Option<T>);

impl<T> Default for Opt<T> {
    fn default() -> Self {
        Opt(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Opt<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|t| Opt(Some(t)))
    }
}

impl<T> Opt<T> {
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

/// An object holding a `T`. Derived struct deserializers also take a JSON list (fields by
/// position); a scenario file's objects are objects only, so every raw struct sits in an `Obj`,
/// read through the (path-tracking) map access of the deserializer.
#[derive(Debug, Default)]
pub struct Obj<T>(pub T);

impl<T> std::ops::Deref for Obj<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(m)).map(Obj)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A leaf type read through `Value` by a function returning today's message on failure.
macro_rules! leaf {
    ($(#[$doc:meta])* $name:ident($t:ty) = $parse:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(pub $t);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let parse: fn(&Value) -> Result<$t, String> = $parse;
                parse(&Value::deserialize(d)?).map($name).map_err(D::Error::custom)
            }
        }
    };
}

leaf!(
    /// A non-negative integer, also written as a string ("5"); ranges are checked by the field.
    UInt(u64) = uint
);
leaf!(
    /// A duration in nanoseconds: "10s", "250ms", "2m", "1.5s", or a number of seconds.
    Dur(u64) = duration_ns
);
leaf!(
    /// A size in bytes: "1GiB", "512MiB", "100MB", or a number of bytes.
    Bytes(u64) = bytes
);
leaf!(
    /// A bandwidth in bits per second within the NIC model's range: "10Gbps", "100Mbps", a number.
    Bps(u64) = bps
);
leaf!(
    /// Records per second ("5000/s", a number) or `None` for "max" (a closed loop).
    Rate(Option<u64>) = rate
);
leaf!(
    /// A probability in 0..=1.
    Prob(f64) = probability
);
leaf!(
    /// A config value (string, number or boolean) as the text Kafka's config parser sees.
    ConfigVal(String) = config_text
);
leaf!(
    /// `compression.type`: none, gzip, snappy, lz4, zstd.
    Codec(Compression) = codec
);

impl Copy for UInt {}
impl Copy for Dur {}

impl<'de> Deserialize<'de> for Acks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Number(n) if n.as_i64() == Some(0) => Acks::Zero,
            Value::Number(n) if n.as_i64() == Some(1) => Acks::One,
            Value::Number(n) if n.as_i64() == Some(-1) => Acks::All,
            Value::String(s) if s == "0" => Acks::Zero,
            Value::String(s) if s == "1" => Acks::One,
            Value::String(s) if s == "all" || s == "-1" => Acks::All,
            _ => return Err(D::Error::custom("expected one of 0, 1, all")),
        })
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)?.as_str() {
            Some("storage") => Ok(Mode::Storage),
            Some("network") => Ok(Mode::Network),
            _ => Err(D::Error::custom("expected one of storage, network")),
        }
    }
}

/// `cluster.config` / `topics[].config`: key → value as text, in the file's (the `Value`'s) order.
#[derive(Debug, Clone, Default)]
pub struct ConfigMap(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for ConfigMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConfigMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ConfigMap, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, ConfigVal>()? {
                    out.push((k, v.0));
                }
                Ok(ConfigMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Deserializes `T` from `v`; an error names its path (`workload.producers[0].acks: ...`).
pub fn from_value<T: DeserializeOwned>(v: Value) -> R<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let mut path = String::new();
        for seg in e.path() {
            use serde_path_to_error::Segment;
            path = match seg {
                Segment::Seq { index } => format!("{path}[{index}]"),
                Segment::Map { key } => join(&path, key),
                Segment::Enum { variant } => join(&path, variant),
                Segment::Unknown => path,
            };
        }
        invalid(&path, message(&e.inner().to_string()))
    })
}

/// serde's wording in ours: `unknown key (expected one of: a, b)`, `expected a list`, ...
fn message(serde_msg: &str) -> String {
    if let Some(rest) = serde_msg.strip_prefix("unknown field `") {
        let expected = rest
            .split_once(", expected one of ")
            .or_else(|| rest.split_once(", expected "))
            .map_or("", |(_, list)| list);
        let names: Vec<&str> = expected.split(", ").map(|s| s.trim_matches('`')).collect();
        return format!("unknown key (expected one of: {})", names.join(", "));
    }
    if serde_msg.starts_with("invalid type: ") {
        if let Some((_, exp)) = serde_msg.rsplit_once(", expected ") {
            let exp = match exp {
                "a sequence" => "a list",
                "a boolean" => "true or false",
                "a map" => "an object",
                e if e.starts_with("struct ") => "an object",
                e => e,
            };
            return format!("expected {exp}");
        }
    }
    serde_msg.to_string()
}

fn uint(v: &Value) -> Result<u64, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.ok_or_else(|| "expected a non-negative integer".to_string())
}

/// Checks a parsed integer against its field's range (`{n} is out of range lo..=hi`).
pub fn range(v: &Opt<UInt>, base: &str, key: &str, default: u64, lo: u64, hi: u64) -> R<u64> {
    let Some(&UInt(n)) = v.get() else { return Ok(default) };
    if n < lo || n > hi {
        return Err(invalid(&join(base, key), format!("{n} is out of range {lo}..={hi}")));
    }
    Ok(n)
}

/// A required field, or `{path}: required`.
pub fn req<'a, T>(v: &'a Opt<T>, base: &str, key: &str) -> R<&'a T> {
    v.get().ok_or_else(|| invalid(&join(base, key), "required"))
}

/// A number split off its unit suffix: "1.5s" → ("1.5", "s").
fn split_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let idx = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    (s[..idx].trim(), s[idx..].trim())
}

/// Parses a decimal "12", "1.25" into value × scale (integral: no float rounding).
fn decimal_scaled(num: &str, scale: u64) -> Option<u64> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut v = int.checked_mul(scale)?;
    let mut place = scale;
    for c in frac.chars() {
        let d = u64::from(c.to_digit(10)?);
        place /= 10;
        if place == 0 {
            return if d == 0 { Some(v) } else { None };
        }
        v = v.checked_add(d * place)?;
    }
    Some(v)
}

/// A number with a unit from `units` (suffix → scale), at `milli` precision for sizes.
fn scaled(v: &Value, units: &[(&str, u64)], number_scale: u64, milli: bool) -> Option<u64> {
    match v {
        Value::Number(n) if number_scale == 1 => n.as_u64(),
        Value::Number(n) => decimal_scaled(&n.to_string(), number_scale),
        Value::String(s) => {
            let (num, unit) = split_unit(s);
            let scale = units.iter().find(|(u, _)| *u == unit)?.1;
            if milli {
                decimal_scaled(num, 1000)?.checked_mul(scale).map(|b| b / 1000)
            } else {
                decimal_scaled(num, scale)
            }
        }
        _ => None,
    }
}

pub fn duration_ns(v: &Value) -> Result<u64, String> {
    const UNITS: &[(&str, u64)] = &[
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("", 1_000_000_000),
        ("m", 60_000_000_000),
        ("min", 60_000_000_000),
    ];
    scaled(v, UNITS, 1_000_000_000, false).ok_or_else(|| {
        "expected a duration like \"10s\", \"250ms\", \"2m\" or a number of seconds".into()
    })
}

pub fn bytes(v: &Value) -> Result<u64, String> {
    const UNITS: &[(&str, u64)] = &[
        ("", 1),
        ("B", 1),
        ("KB", 1_000),
        ("kB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("TB", 1_000_000_000_000),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("TiB", 1 << 40),
    ];
    scaled(v, UNITS, 1, true).ok_or_else(|| {
        "expected a size like \"1GiB\", \"512MiB\", \"100MB\" or a number of bytes".into()
    })
}

fn bps(v: &Value) -> Result<u64, String> {
    const UNITS: &[(&str, u64)] = &[
        ("bps", 1),
        ("", 1),
        ("Kbps", 1_000),
        ("kbps", 1_000),
        ("Mbps", 1_000_000),
        ("Gbps", 1_000_000_000),
    ];
    let bps = scaled(v, UNITS, 1, true).ok_or_else(|| {
        "expected a bandwidth like \"10Gbps\", \"1Gbps\", \"100Mbps\" or a number of bits per second".to_string()
    })?;
    let (lo, hi) = (net_model::sim::NIC_BPS_MIN, net_model::sim::NIC_BPS_MAX);
    if bps < lo || bps > hi {
        return Err(format!("{bps} bits/s is out of range {lo}..={hi}"));
    }
    Ok(bps)
}

fn rate(v: &Value) -> Result<Option<u64>, String> {
    if v.as_str().is_some_and(|r| r.trim() == "max") {
        return Ok(None);
    }
    let bad = || "expected a rate like \"5000/s\", a number of records per second, or \"max\"";
    let n = match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad)?,
        Value::String(s) => {
            let t = s.trim();
            t.strip_suffix("/s").unwrap_or(t).trim().parse::<u64>().map_err(|_| bad())?
        }
        _ => return Err(bad().into()),
    };
    if n == 0 || n > 10_000_000 {
        return Err(format!("{n} records/s is out of range 1..=10000000"));
    }
    Ok(Some(n))
}

fn probability(v: &Value) -> Result<f64, String> {
    v.as_f64()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| "expected a number in 0..=1".to_string())
}

fn config_text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err("expected a string, number or boolean".into()),
    }
}

fn codec(v: &Value) -> Result<Compression, String> {
    v.as_str()
        .and_then(Compression::from_name)
        .ok_or_else(|| "expected one of none, gzip, snappy, lz4, zstd".to_string())
}
