//! `--vary KEY=v1,v2,...`: keys by scenario path or Kafka name, values, and the product of them.
//!
//! A path is the scenario's own (the one its error messages print): keys joined by `.`, a list
//! element as `.0` or `[0]`, every element of a list as `[*]`, a key that holds dots quoted as
//! `["batch.size"]` (`workload.producers[0]["batch.size"]`). An unquoted dotted name is matched
//! against the keys present (`workload.producers.0.batch.size` finds `batch.size` when the
//! producer sets it). Kafka names stand for their path ([`alias`]): a producer setting sets it
//! on every producer entry, `partitions` and `replication.factor` on every topic, `brokers` is
//! `cluster.brokers`. A value that reads as a JSON number or boolean is one; anything else is a
//! string (`lz4`, `all`, `16GiB`). The scenario parser then checks each point's document, so an
//! unknown key or a bad value is refused, naming its path, before anything runs.

use serde_json::{Map, Value};

use crate::scenario::{CONSUMER_SETTINGS, PRODUCER_SETTINGS};

/// Points per grid at most.
pub const POINTS_MAX: usize = 256;
/// Varied keys per grid at most, and values per key at most.
pub const KEYS_MAX: usize = 4;
pub const VALUES_MAX: usize = 64;

/// One `--vary`: the key as written, the path it stands for, its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Vary {
    pub key: String,
    pub path: String,
    pub values: Vec<Value>,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A key, or (unquoted) a plain identifier that may be part of a dotted key.
    Key {
        name: String,
        quoted: bool,
    },
    Index(usize),
    /// Every element of a list.
    All,
}

/// The path a Kafka name stands for (`None`: not a Kafka name the grid knows).
pub fn alias(key: &str) -> Option<String> {
    if PRODUCER_SETTINGS.contains(&key) || key == "record.bytes" {
        return Some(format!("workload.producers[*][\"{key}\"]"));
    }
    if CONSUMER_SETTINGS.contains(&key) {
        return Some(format!("workload.consumers[*][\"{key}\"]"));
    }
    match key {
        "partitions" => Some("topics[*].partitions".into()),
        "replication.factor" => Some("topics[*][\"replication.factor\"]".into()),
        "brokers" => Some("cluster.brokers".into()),
        _ => None,
    }
}

/// Parses a path (see the module docs).
pub fn parse_path(path: &str) -> Result<Vec<Seg>, String> {
    let bad = |why: &str| format!("{path}: {why}");
    let mut segs = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| bad("a [ without its ]"))?;
            let inner = &r[..end];
            segs.push(match inner {
                "*" => Seg::All,
                _ if inner.starts_with('"') && inner.ends_with('"') && inner.len() >= 2 => {
                    Seg::Key { name: inner[1..inner.len() - 1].to_string(), quoted: true }
                }
                _ => Seg::Index(inner.parse().map_err(|_| bad("expected [N], [*] or [\"key\"]"))?),
            });
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let word = &rest[..end];
            if word.is_empty() {
                return Err(bad("an empty key"));
            }
            segs.push(match word {
                "*" => Seg::All,
                _ => Seg::Key { name: word.to_string(), quoted: false },
            });
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    if segs.is_empty() {
        return Err(bad("an empty key"));
    }
    Ok(segs)
}

/// A value as written on the command line: a JSON number or boolean, else a string.
fn value_of(s: &str) -> Value {
    match serde_json::from_str::<Value>(s) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(s.to_string()),
    }
}

/// One `--vary KEY=v1,v2,...`.
pub fn parse_vary(arg: &str) -> Result<Vary, String> {
    let (key, values) = arg.split_once('=').ok_or_else(|| {
        format!("--vary {arg}: expected KEY=v1,v2,... (a scenario path or a Kafka name)")
    })?;
    let key = key.trim();
    let path = alias(key).unwrap_or_else(|| key.to_string());
    parse_path(&path).map_err(|e| format!("--vary {arg}: {e}"))?;
    let values: Vec<Value> = values.split(',').map(|v| value_of(v.trim())).collect();
    if values.iter().any(|v| v.as_str() == Some("")) {
        return Err(format!("--vary {arg}: an empty value"));
    }
    if values.len() > VALUES_MAX {
        return Err(format!("--vary {arg}: {} values, at most {VALUES_MAX}", values.len()));
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(format!("--vary {arg}: the value {v} twice"));
        }
    }
    Ok(Vary { key: key.to_string(), path, values })
}

/// The checks on the set of keys: at most [`KEYS_MAX`], none twice, at most [`POINTS_MAX`]
/// points in their product.
pub fn check_product(vary: &[Vary]) -> Result<usize, String> {
    if vary.is_empty() || vary.len() > KEYS_MAX {
        return Err(format!("{} --vary keys: expected 1 to {KEYS_MAX}", vary.len()));
    }
    for (i, v) in vary.iter().enumerate() {
        if vary[..i].iter().any(|w| w.path == v.path) {
            return Err(format!("--vary {}: that key ({}) is varied twice", v.key, v.path));
        }
    }
    let n = vary.iter().try_fold(1usize, |n, v| n.checked_mul(v.values.len()));
    match n {
        Some(n) if n <= POINTS_MAX => Ok(n),
        _ => Err(format!(
            "{} points ({}): at most {POINTS_MAX} per grid",
            vary.iter().map(|v| v.values.len().to_string()).collect::<Vec<_>>().join(" x "),
            vary.iter().map(|v| v.key.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Every point of the product: one value index per key, the first key varying slowest.
pub fn product(vary: &[Vary]) -> Vec<Vec<usize>> {
    let mut points: Vec<Vec<usize>> = vec![Vec::new()];
    for v in vary {
        points = points
            .into_iter()
            .flat_map(|p| {
                (0..v.values.len()).map(move |i| {
                    let mut q = p.clone();
                    q.push(i);
                    q
                })
            })
            .collect();
    }
    points
}

/// Sets `path` to `value` in `doc`, creating missing objects; returns how many places it set.
pub fn set(doc: &mut Value, path: &str, value: &Value) -> Result<usize, String> {
    let segs = parse_path(path)?;
    set_in(doc, &segs, value).map_err(|e| format!("{path}: {e}"))
}

fn set_in(node: &mut Value, segs: &[Seg], value: &Value) -> Result<usize, String> {
    let Some(first) = segs.first() else {
        *node = value.clone();
        return Ok(1);
    };
    if let Some(arr) = node.as_array_mut() {
        let i = match first {
            Seg::All if arr.is_empty() => return Err("[*]: the list is empty".into()),
            Seg::All => {
                let mut n = 0;
                for el in arr {
                    n += set_in(el, &segs[1..], value)?;
                }
                return Ok(n);
            }
            Seg::Index(i) => *i,
            Seg::Key { name, .. } => {
                name.parse().map_err(|_| format!("{name}: a list here, expected an index"))?
            }
        };
        let len = arr.len();
        let el = arr.get_mut(i).ok_or_else(|| format!("[{i}]: the list has {len} elements"))?;
        return set_in(el, &segs[1..], value);
    }
    match first {
        Seg::All => Err("[*]: not a list here".into()),
        Seg::Index(i) => Err(format!("[{i}]: not a list here")),
        Seg::Key { .. } => set_key(node, segs, value),
    }
}

/// At an object (created when absent): the longest run of unquoted segments that names a key
/// present (`batch` + `size` → `batch.size`), else the first segment alone.
fn set_key(node: &mut Value, segs: &[Seg], value: &Value) -> Result<usize, String> {
    if node.is_null() {
        *node = Value::Object(Map::new());
    }
    let obj = node.as_object_mut().ok_or("not an object here")?;
    let plain =
        segs.iter().take_while(|s| matches!(s, Seg::Key { quoted: false, .. })).count().max(1);
    let name_of = |k: usize| -> String {
        segs[..k]
            .iter()
            .map(|s| match s {
                Seg::Key { name, .. } => name.as_str(),
                _ => "",
            })
            .collect::<Vec<_>>()
            .join(".")
    };
    let k = (1..=plain).rev().find(|&k| obj.contains_key(&name_of(k))).unwrap_or(1);
    let child = obj.entry(name_of(k)).or_insert(Value::Null);
    set_in(child, &segs[k..], value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(arg: &str) -> Vary {
        parse_vary(arg).unwrap()
    }

    #[test]
    fn kafka_names_map_to_their_scenario_paths() {
        assert_eq!(v("batch.size=1024").path, "workload.producers[*][\"batch.size\"]");
        assert_eq!(v("linger.ms=0,5").path, "workload.producers[*][\"linger.ms\"]");
        assert_eq!(
            v("compression.type=none,lz4").path,
            "workload.producers[*][\"compression.type\"]"
        );
        assert_eq!(v("acks=1,all").path, "workload.producers[*][\"acks\"]");
        assert_eq!(v("record.bytes=100").path, "workload.producers[*][\"record.bytes\"]");
        assert_eq!(v("fetch.max.wait.ms=10").path, "workload.consumers[*][\"fetch.max.wait.ms\"]");
        assert_eq!(v("partitions=1,2").path, "topics[*].partitions");
        assert_eq!(v("replication.factor=3").path, "topics[*][\"replication.factor\"]");
        assert_eq!(v("brokers=1,3").path, "cluster.brokers");
        assert_eq!(v("cluster.host.cores=2,4").path, "cluster.host.cores");
        // Values: numbers and booleans as JSON, the rest as strings.
        assert_eq!(v("acks=1,all").values, vec![json!(1), json!("all")]);
        assert_eq!(v("x.y=true,1.5,4GiB").values, vec![json!(true), json!(1.5), json!("4GiB")]);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse_vary("batch.size").unwrap_err().contains("KEY=v1,v2"));
        assert!(parse_vary("batch.size=1,,2").unwrap_err().contains("empty value"));
        assert!(parse_vary("batch.size=1,1").unwrap_err().contains("twice"));
        assert!(parse_vary("a..b=1").unwrap_err().contains("empty key"));
        assert!(parse_vary("a[x]=1").is_err());
        let big = (0..=VALUES_MAX).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert!(parse_vary(&format!("brokers={big}")).is_err());
    }

    #[test]
    fn two_keys_give_n_times_m_points_first_key_slowest() {
        let vary = [v("batch.size=1024,16384,65536"), v("compression.type=none,lz4")];
        assert_eq!(check_product(&vary), Ok(6));
        let p = product(&vary);
        assert_eq!(p.len(), 6);
        assert_eq!(p[0], vec![0, 0]);
        assert_eq!(p[1], vec![0, 1]);
        assert_eq!(p[5], vec![2, 1]);
        let again = [v("batch.size=1"), v("batch.size=2")];
        assert!(check_product(&again).unwrap_err().contains("twice"));
        let many = [
            v(&format!(
                "brokers={}",
                (1..=20).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
            )),
            v(&format!(
                "partitions={}",
                (1..=20).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
            )),
        ];
        assert!(check_product(&many).unwrap_err().contains("at most 256"));
    }

    #[test]
    fn set_walks_paths_lists_and_dotted_keys() {
        let mut doc = json!({"workload": {"producers": [{"batch.size": 1}, {"acks": 1}]},
            "topics": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(set(&mut doc, "workload.producers[*][\"batch.size\"]", &json!(9)), Ok(2));
        assert_eq!(doc["workload"]["producers"][1]["batch.size"], 9);
        assert_eq!(set(&mut doc, "workload.producers.0.batch.size", &json!(7)), Ok(1));
        assert_eq!(doc["workload"]["producers"][0]["batch.size"], 7);
        assert_eq!(set(&mut doc, "topics[*].partitions", &json!(4)), Ok(2));
        assert_eq!(doc["topics"][1]["partitions"], 4);
        assert_eq!(set(&mut doc, "cluster.host.cores", &json!(2)), Ok(1));
        assert_eq!(doc["cluster"]["host"]["cores"], 2);
        assert!(set(&mut doc, "topics[5].partitions", &json!(1))
            .unwrap_err()
            .contains("2 elements"));
        assert!(set(&mut doc, "cluster[*]", &json!(1)).unwrap_err().contains("not a list"));
    }
}
