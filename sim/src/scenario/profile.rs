//! Host profiles: a JSON file that describes one machine with the keys of `cluster.host`
//! (`disk` or `device`, `disks`, `page_cache` and Linux's writeback knobs, `nic`,
//! `link_latency`, `cores`, `cpu`, `clients_share_host`) plus `name`, `description`, `sources`
//! (where every number comes from), `measurements` and `calibration` (what `cargo simulate
//! calibrate` measured). One parser reads both: the profile is checked alone as a
//! [`RawHost`](super::raw::RawHost) (errors name the file and the key's path), then the
//! scenario's `cluster.host` keys are laid over it (objects `cpu` and `device` key by key,
//! anything else replaced) and the result is read as the scenario's `cluster.host`.
//!
//! `cluster.host.profile` is a shipped name ([`SHIPPED`], the files of `profiles/`, compiled
//! into the binary) or a path, relative to the scenario file's directory when the scenario was
//! loaded from a file.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::raw::RawHost;
use super::units::{from_value, Obj};
use super::{invalid, ScenarioError, R};

/// A profile file larger than this is refused before it is parsed.
pub const PROFILE_BYTES_MAX: u64 = 1 << 20;

/// Shipped profiles by name: `profiles/<name>.json` at the repository root.
pub const SHIPPED: &[(&str, &str)] = &[
    ("nvme-generic", include_str!("../../../profiles/nvme-generic.json")),
    ("hdd-7200", include_str!("../../../profiles/hdd-7200.json")),
    ("this-machine", include_str!("../../../profiles/this-machine.json")),
];

/// Other names of shipped profiles (the calibrated machine by the month it was measured).
const ALIASES: &[(&str, &str)] = &[("this-machine-2026-12", "this-machine")];

/// Keys of a profile that mean nothing to a storage run (free link, free CPU): dropped from
/// the profile (not from the scenario, where they stay errors) when `cluster.mode` is storage.
const NETWORK_KEYS: &[&str] = &["nic", "link_latency", "cores", "cpu", "clients_share_host"];

/// The text of shipped profile `name`, if it is one.
pub fn shipped(name: &str) -> Option<&'static str> {
    let name = ALIASES.iter().find(|(a, _)| *a == name).map_or(name, |(_, n)| *n);
    SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
}

/// Reads profile `spec` (a shipped name or a path) and checks it alone. Returns how the
/// effective configuration names it and its JSON object.
pub fn load(spec: &str, base: Option<&Path>) -> R<(String, Map<String, Value>)> {
    let p = "cluster.host.profile";
    let (label, text) = match shipped(spec) {
        Some(text) => (format!("{spec} (shipped)"), text.to_string()),
        None => {
            let path = match base {
                Some(dir) if Path::new(spec).is_relative() => dir.join(spec),
                _ => PathBuf::from(spec),
            };
            let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
            let meta = std::fs::metadata(&path).map_err(|e| {
                let msg = format!("{}: {e} (shipped names: {})", path.display(), names.join(", "));
                invalid(p, msg)
            })?;
            if meta.len() > PROFILE_BYTES_MAX {
                let msg = format!("{}: larger than {PROFILE_BYTES_MAX} bytes", path.display());
                return Err(invalid(p, msg));
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| invalid(p, format!("{}: {e}", path.display())))?;
            (path.display().to_string(), text)
        }
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| invalid(p, format!("{label}: not valid JSON: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(invalid(p, format!("{label}: expected an object")));
    };
    if obj.contains_key("profile") {
        return Err(invalid(p, format!("{label}: a profile cannot name another profile")));
    }
    // The profile alone, so a bad key names the file and its own path.
    from_value::<Obj<RawHost>>(Value::Object(obj.clone())).map_err(|e| match e {
        ScenarioError::Invalid { path, msg } => invalid(p, format!("{label}: {path}: {msg}")),
        other => invalid(p, format!("{label}: {other}")),
    })?;
    Ok((label, obj))
}

/// `host` (the scenario's `cluster.host`) laid over the profile it names, when it names one;
/// `network`: the run is networked (else the profile's network and CPU keys are dropped).
pub fn resolve(host: &Map<String, Value>, base: Option<&Path>, network: bool) -> R<Option<Value>> {
    let Some(spec) = host.get("profile") else {
        return Ok(None);
    };
    let Some(spec) = spec.as_str() else {
        return Err(invalid("cluster.host.profile", "expected a shipped name or a file path"));
    };
    let (label, mut merged) = load(spec, base)?;
    if !network {
        merged.retain(|k, _| !NETWORK_KEYS.contains(&k.as_str()));
    }
    for (k, v) in host {
        if k == "profile" {
            continue;
        }
        if k == "cpu" || k == "device" {
            if let (Some(Value::Object(base)), Value::Object(over)) = (merged.get_mut(k), v) {
                merge_objects(base, over);
                continue;
            }
        }
        // A disk chosen by name replaces a measured device, and the reverse.
        match k.as_str() {
            "disk" => merged.remove("device"),
            "device" => merged.remove("disk"),
            _ => None,
        };
        merged.insert(k.clone(), v.clone());
    }
    merged.insert("profile".into(), Value::String(label));
    Ok(Some(Value::Object(merged)))
}

/// A `cluster.host` that names profile `spec` (a shipped name, or a file made absolute so the
/// scenario that holds it can be written anywhere): `cargo simulate omb --profile`.
pub fn host_naming(spec: &str) -> Result<Value, String> {
    if shipped(spec).is_some() {
        return Ok(serde_json::json!({ "profile": spec }));
    }
    let path = std::fs::canonicalize(spec).map_err(|e| format!("{spec}: {e}"))?;
    load(&path.display().to_string(), None).map_err(|e| e.to_string())?;
    Ok(serde_json::json!({ "profile": path.display().to_string() }))
}

/// Deep merge: objects key by key, anything else replaced.
fn merge_objects(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => merge_objects(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The numeric leaves of a profile by path (`cpu.lz4.compress.per_byte_ps`), for the rule that
/// every number of a shipped profile has a source.
pub fn numeric_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                numeric_paths(v, &p, out);
            }
        }
        Value::Number(_) => out.push(prefix.to_string()),
        // "1GiB", "10Gbps", "50us": numbers written with units.
        Value::String(s) if s.starts_with(|c: char| c.is_ascii_digit()) => {
            out.push(prefix.to_string())
        }
        _ => {}
    }
}

/// The source `sources` gives for `path`: its own entry or the nearest section's.
pub fn source_of<'a>(sources: &'a Map<String, Value>, path: &str) -> Option<&'a str> {
    let mut p = path;
    loop {
        if let Some(s) = sources.get(p).and_then(Value::as_str) {
            return Some(s);
        }
        p = &p[..p.rfind('.')?];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn net(host: &str) -> String {
        format!(
            r#"{{"name": "t", "cluster": {{"mode": "network", "host": {host}}}, "topics": [{{"name": "e"}}],
               "workload": {{"producers": [{{"topic": "e", "rate": "100/s"}}]}}}}"#
        )
    }

    fn err(text: &str) -> String {
        Scenario::parse(text).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_shipped_name_resolves_and_equals_the_defaults_it_states() {
        let p = Scenario::parse(&net(r#"{"profile": "nvme-generic"}"#)).unwrap();
        let d = Scenario::parse(&net(r#"{"cores": 8}"#)).unwrap();
        assert_eq!(p.host.profile.as_deref(), Some("nvme-generic (shipped)"));
        assert_eq!(p.host.profile_name.as_deref(), Some("nvme-generic"));
        assert_eq!(
            (p.host.cores, &p.host.cpu, &p.host.device, &p.host.page_cache, p.host.nic_bps),
            (d.host.cores, &d.host.cpu, &d.host.device, &d.host.page_cache, d.host.nic_bps)
        );
        assert_eq!(p.host.link_latency_ns, d.host.link_latency_ns);
        assert!(!p.host.clients_share_host);
        let hdd = Scenario::parse(&net(r#"{"profile": "hdd-7200"}"#)).unwrap();
        assert_eq!(hdd.host.device.name, "hdd-7200");
        let alias = Scenario::parse(&net(r#"{"profile": "this-machine-2026-12"}"#)).unwrap();
        assert!(alias.host.clients_share_host, "the calibrated machine runs its clients too");
        let eff = p.effective();
        assert_eq!(eff["cluster"]["host"]["profile"], "nvme-generic (shipped)");
        assert_eq!(eff["cluster"]["host"]["cpu_profile"]["cores"], 8);
        assert!(eff["cluster"]["host"]["sources"]["dirty_ratio"].is_string());
        assert!(err(&net(r#"{"profile": "no-such-profile"}"#))
            .starts_with("cluster.host.profile: no-such-profile: "));
    }

    #[test]
    fn overrides_change_the_effective_value_key_by_key() {
        let over = r#"{"profile": "nvme-generic", "cores": 3, "page_cache": "2GiB",
                       "cpu": {"request": {"per_op_ns": 7000, "per_byte_ps": 1}},
                       "disk": "hdd-7200", "clients_share_host": true}"#;
        let s = Scenario::parse(&net(over)).unwrap();
        assert_eq!((s.host.cores, s.host.cpu.cores), (Some(3), 3));
        assert_eq!(s.host.cpu.request, net_model::cpu::Cost::new(7_000, 1));
        assert_eq!(s.host.cpu.lz4, net_model::CpuProfile::default().lz4, "the rest of cpu kept");
        assert_eq!(s.host.page_cache.capacity_bytes, 2 << 30);
        assert_eq!(s.host.device.name, "hdd-7200");
        assert!(s.host.clients_share_host);
        let eff = s.effective();
        assert_eq!(eff["cluster"]["host"]["cpu_profile"]["request"]["per_op_ns"], 7000);
        assert_eq!(eff["cluster"]["host"]["page_cache"], 2u64 << 30);
        // A device by its parameters, over a profile that names a disk.
        let dev = r#"{"profile": "nvme-generic", "device": {"name": "slow", "channels": 1,
            "sequential_access_ns": 0, "random_access_ns": 1000000, "read_bytes_per_sec": 50000000,
            "write_bytes_per_sec": 40000000, "flush_ns": 2000000}}"#;
        let s = Scenario::parse(&net(dev)).unwrap();
        assert_eq!((s.host.device.name.as_str(), s.host.device.flush_ns), ("slow", 2_000_000));
        // Storage runs take a profile's disk and page cache, not its network or CPU.
        let storage = r#"{"name": "t", "cluster": {"host": {"profile": "hdd-7200"}},
            "topics": [{"name": "e"}], "workload": {"producers": [{"topic": "e", "rate": "100/s"}]}}"#;
        let s = Scenario::parse(storage).unwrap();
        assert_eq!((s.host.device.name.as_str(), s.host.cores), ("hdd-7200", None));
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let e = err(&net(r#"{"profile": "nvme-generic", "cpu": {"requets": {}}}"#));
        assert!(e.starts_with("cluster.host.cpu.requets: unknown key"), "{e}");
        let e = err(&net(r#"{"profile": "nvme-generic", "device": {"name": "x", "chanels": 1}}"#));
        assert!(e.starts_with("cluster.host.device.chanels: unknown key"), "{e}");
        let e = err(&net(r#"{"profile": "nvme-generic", "disks": 65}"#));
        assert!(e.starts_with("cluster.host.disks"), "{e}");
        let e = err(&net(r#"{"cores": 2, "cpu": {"lz4": {"compress": {"per_op_ns": 1}}}}"#));
        assert!(e.starts_with("cluster.host.cpu.lz4.compress"), "{e}");
        // A profile file's own bad key names the file and the key.
        let dir = std::env::temp_dir().join(format!("loglab-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("bad.json"),
            r#"{"cores": 2, "cpu": {"memcpy": {"per_op_ns": 0, "per_byte_ps": 1, "x": 1}}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("good.json"),
            r#"{"cores": 2, "nic": "1Gbps", "disk": "sata-ssd"}"#,
        )
        .unwrap();
        let text = net(r#"{"profile": "bad.json"}"#);
        let e = Scenario::parse_in(&text, Some(&dir)).err().map(|e| e.to_string()).unwrap();
        assert!(
            e.starts_with("cluster.host.profile: ")
                && e.contains("bad.json: cpu.memcpy.x: unknown key"),
            "{e}"
        );
        let good = Scenario::parse_in(&net(r#"{"profile": "good.json"}"#), Some(&dir)).unwrap();
        assert_eq!((good.host.cores, good.host.nic_bps), (Some(2), 1_000_000_000));
        assert_eq!(good.host.device.name, "sata-ssd");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_number_of_a_shipped_profile_has_a_source() {
        for (name, text) in SHIPPED {
            let v: Value = serde_json::from_str(text).unwrap();
            let sources = v["sources"].as_object().unwrap_or_else(|| panic!("{name}: no sources"));
            let mut paths = Vec::new();
            for (k, x) in v.as_object().unwrap() {
                if !["sources", "measurements", "calibration"].contains(&k.as_str()) {
                    numeric_paths(x, k, &mut paths);
                }
            }
            assert!(paths.len() > 10, "{name}: {paths:?}");
            for p in &paths {
                assert!(source_of(sources, p).is_some(), "{name}: {p} has no source");
            }
            let s = Scenario::parse(&net(&format!(r#"{{"profile": "{name}"}}"#)));
            assert!(s.is_ok(), "{name}: {:?}", s.err());
        }
    }

    #[test]
    fn calibrate_output_parses_back() {
        let c = client::calibrate::example();
        let dir = std::env::temp_dir().join(format!("loglab-calibrated-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = serde_json::to_string_pretty(&c.profile("measured-here")).unwrap();
        std::fs::write(dir.join("m.json"), &text).unwrap();
        let s = Scenario::parse_in(&net(r#"{"profile": "m.json"}"#), Some(&dir)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(s.host.profile_name.as_deref(), Some("measured-here"));
        assert_eq!(s.host.cpu, c.cpu());
        assert_eq!((s.host.cores, s.host.device.read_bytes_per_sec), (Some(2), 1_000_000_000));
        assert_eq!((s.host.nic_bps, s.host.link_latency_ns), (16_000_000_000, 20_000));
        assert!(s.host.clients_share_host);
        let v: Value = serde_json::from_str(&text).unwrap();
        let mut paths = Vec::new();
        for (k, x) in v.as_object().unwrap() {
            if !["sources", "measurements", "calibration"].contains(&k.as_str()) {
                numeric_paths(x, k, &mut paths);
            }
        }
        let sources = v["sources"].as_object().unwrap();
        for p in &paths {
            assert!(source_of(sources, p).is_some(), "calibrated {p} has no source");
        }
    }
}
