//! `request_faults` (and the rules of the `request_fault` nemesis): request-level fault rules
//! on the timeline. An entry is
//! `{"at": "2s", "for": "3s", "broker": "broker-0" | "all", "rule": {RuleSpec}}` — `for` and
//! `broker` optional (until the run heals; every broker) — where the rule is the broker's own
//! JSON (`broker::faults::rules`, as `broker serve --fault-plan` and the admin API take it),
//! checked here exactly as the broker checks it when installing, so a bad rule is refused
//! before the run with its path: `request_faults[2].rule.error: unknown Kafka error ...`.

use broker::faults::{FaultControl, RuleError};
use serde_json::Value;

use super::raw::RawRequestFault;
use super::timeline::broker_ref;
use super::units::{req, Obj};
use super::{invalid, join, R};
use crate::faults::{rule_brief, Fault, FaultAction, RuleSpec, Target};
use crate::nemesis::NemesisKind;

/// `request_faults` entries at most (a broker holds at most `broker::faults::rules::RULES_MAX`
/// rules; with the nemesis' own at most 100 a broker stays well below it).
pub const REQUEST_FAULTS_MAX: usize = 100;

/// A rule at `path`: the broker's `RuleSpec`, validated by installing it into a scratch
/// `FaultControl` (the broker's own checks: API and error names, ranges, one action).
pub fn parse_rule(v: &Value, path: &str) -> R<RuleSpec> {
    if !v.is_object() {
        return Err(invalid(path, "expected a rule object (see broker/src/faults/rules.rs)"));
    }
    let spec: RuleSpec =
        serde_json::from_value(v.clone()).map_err(|e| invalid(path, e.to_string()))?;
    match FaultControl::new(0).install(spec.clone(), 0) {
        Ok(_) => Ok(spec),
        Err(RuleError::Field { field, reason }) => Err(invalid(&join(path, field), reason)),
        Err(e) => Err(invalid(path, e.to_string())),
    }
}

/// A rule that is in force for `for_ns` must be able to fire within it: its own window
/// (`from_ms`, counted from its installation) has to start before `for` ends.
pub fn check_window(rule: &RuleSpec, for_ns: Option<u64>, path: &str) -> R<()> {
    let Some(for_ns) = for_ns else { return Ok(()) };
    let for_ms = for_ns / 1_000_000;
    if rule.from_ms.is_some_and(|f| f >= for_ms) {
        return Err(invalid(
            &join(path, "from_ms"),
            format!("the rule's window starts after its `for` ({for_ms} ms) ends"),
        ));
    }
    Ok(())
}

/// `request_faults`: each entry becomes one fault per broker it names (`all`: every broker).
pub(super) fn request_faults(
    list: Option<&[Obj<RawRequestFault>]>,
    brokers: u32,
    duration_s: u64,
) -> R<Vec<Fault>> {
    let list = list.unwrap_or(&[]);
    if list.len() > REQUEST_FAULTS_MAX {
        return Err(invalid("request_faults", format!("at most {REQUEST_FAULTS_MAX} entries")));
    }
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        out.extend(entry(r, &format!("request_faults[{i}]"), brokers, duration_s)?);
    }
    Ok(out)
}

fn entry(r: &RawRequestFault, path: &str, brokers: u32, duration_s: u64) -> R<Vec<Fault>> {
    let at_ns = req(&r.at, path, "at")?.0;
    if at_ns >= duration_s * 1_000_000_000 {
        return Err(invalid(
            &join(path, "at"),
            format!("must be before the end of the run ({duration_s}s)"),
        ));
    }
    let for_ns = match r.for_.get() {
        None => None,
        Some(d) if d.0 < 1_000_000 => return Err(invalid(&join(path, "for"), "at least 1ms")),
        Some(d) => Some(d.0),
    };
    let rule_path = join(path, "rule");
    let rule = parse_rule(req(&r.rule, path, "rule")?, &rule_path)?;
    check_window(&rule, for_ns, &rule_path)?;
    let targets: Vec<u32> = match r.broker.get() {
        None => (0..brokers).collect(),
        Some(Value::String(s)) if s == "all" => (0..brokers).collect(),
        Some(b) => vec![broker_ref(b, &join(path, "broker"), brokers)?],
    };
    let brief = rule_brief(&rule);
    let fault = |b: u32| {
        let mut label = format!("request_fault broker-{b} {brief}");
        if let Some(f) = for_ns {
            label.push_str(&format!(" for {}ms", f / 1_000_000));
        }
        let action = FaultAction::Request { rule: Box::new(rule.clone()) };
        Fault { at_ns, target: Target::Broker(b), action, for_ns, label }
    };
    Ok(targets.into_iter().map(fault).collect())
}

/// `nemesis.request_faults`: the rules the `request_fault` nemesis draws from — required with
/// that kind, refused without it; each must be able to fire within the shortest drawn duration
/// (`nemesis.min`).
pub(super) fn nemesis_rules(
    v: Option<&Value>,
    kinds: &[NemesisKind],
    min_ns: u64,
) -> R<Vec<RuleSpec>> {
    let path = "nemesis.request_faults";
    let v = match (kinds.contains(&NemesisKind::RequestFault), v) {
        (true, None) => {
            return Err(invalid(path, "required with request_fault: the rules to draw from"))
        }
        (false, Some(_)) => return Err(invalid(path, "only with request_fault in nemesis.faults")),
        (false, None) => return Ok(Vec::new()),
        (true, Some(v)) => v,
    };
    let list = v.as_array().ok_or_else(|| invalid(path, "expected a list"))?;
    if list.is_empty() || list.len() > REQUEST_FAULTS_MAX {
        return Err(invalid(path, format!("1..={REQUEST_FAULTS_MAX} rules")));
    }
    let mut rules = Vec::new();
    for (i, rv) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let rule = parse_rule(rv, &p)?;
        check_window(&rule, Some(min_ns), &p)?;
        rules.push(rule);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use crate::faults::FaultAction;
    use crate::scenario::{Scenario, Target};

    fn scenario(extra: &str) -> String {
        format!(
            r#"{{"name": "t", "duration_s": 10, "cluster": {{"mode": "network", "brokers": 3}},
            "topics": [{{"name": "events"}}],
            "workload": {{"producers": [{{"topic": "events", "rate": "100/s"}}]}}{extra}}}"#
        )
    }

    fn err(extra: &str) -> String {
        Scenario::parse(&scenario(extra)).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn entries_join_the_timeline_one_fault_per_broker() {
        let sc = Scenario::parse(&scenario(
            r#", "faults": [{"at": "3s", "kill": "broker-1"}],
            "request_faults": [
              {"at": "1s", "for": "2s", "broker": "broker-2", "rule": {"api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER", "times": 3}},
              {"at": "3s", "rule": {"api": "Fetch", "delay_ms": 200}}]"#,
        ))
        .unwrap();
        let got: Vec<(u64, String, Option<u64>)> =
            sc.faults.iter().map(|f| (f.at_ns / 1_000_000, f.target.name(), f.for_ns)).collect();
        // Sorted by time; on a tie the file's `faults` come first; `all` (the default) is
        // every broker in order.
        assert_eq!(
            got,
            vec![
                (1000, "broker-2".into(), Some(2_000_000_000)),
                (3000, "broker-1".into(), None),
                (3000, "broker-0".into(), None),
                (3000, "broker-1".into(), None),
                (3000, "broker-2".into(), None),
            ]
        );
        assert_eq!(
            sc.faults[0].label,
            "request_fault broker-2 Produce error=NOT_LEADER_OR_FOLLOWER times=3 for 2000ms"
        );
        let FaultAction::Request { rule } = &sc.faults[0].action else {
            panic!("{:?}", sc.faults[0])
        };
        assert_eq!((rule.api.as_str(), rule.times), ("Produce", Some(3)));
        assert_eq!(sc.faults[2].target, Target::Broker(0));
        // The rule as written is in the settings; the last heal is when the run heals (no `for`).
        assert_eq!(sc.effective()["faults"][0]["rule"]["error"], "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(sc.planned_last_heal_ns(), 10_000_000_000);
    }

    #[test]
    fn a_bad_rule_is_refused_naming_its_path_and_field() {
        let entry = |rule: &str| {
            format!(
                r#", "request_faults": [{{"at": "1s", "rule": {{"api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER"}}}}, {{"at": "1s", "rule": {{"api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER"}}}}, {{"at": "2s", "rule": {rule}}}]"#
            )
        };
        let e = err(&entry(r#"{"api": "Produce", "error": "NOT_A_KAFKA_ERROR"}"#));
        assert!(
            e.starts_with("request_faults[2].rule.error: unknown Kafka error `NOT_A_KAFKA_ERROR`"),
            "{e}"
        );
        let e = err(&entry(r#"{"api": "Produse", "error": "NOT_LEADER_OR_FOLLOWER"}"#));
        assert!(e.starts_with("request_faults[2].rule.api: unknown API `Produse`"), "{e}");
        let e =
            err(&entry(r#"{"api": "Produce", "error": "REQUEST_TIMED_OUT", "probability": 1.5}"#));
        assert!(e.starts_with("request_faults[2].rule.probability: "), "{e}");
        let e = err(&entry(r#"{"api": "Produce", "delay_ms": 5, "disconnect": "after"}"#));
        assert!(e.starts_with("request_faults[2].rule.error: give exactly one action"), "{e}");
        let e = err(&entry(r#"{"api": "Produce", "eror": "REQUEST_TIMED_OUT"}"#));
        assert!(e.starts_with("request_faults[2].rule: unknown field `eror`"), "{e}");
        // The entry's own keys, the broker and the window are checked too.
        let e = err(
            r#", "request_faults": [{"at": "1s", "broker": "broker-3", "rule": {"api": "Produce", "delay_ms": 5}}]"#,
        );
        assert!(e.starts_with("request_faults[0].broker: no broker-3"), "{e}");
        let e = err(
            r#", "request_faults": [{"at": "1s", "for": "2s", "rule": {"api": "Produce", "delay_ms": 5, "from_ms": 2000}}]"#,
        );
        assert!(
            e.starts_with("request_faults[0].rule.from_ms: the rule's window starts after"),
            "{e}"
        );
        let e = err(
            r#", "request_faults": [{"at": "11s", "rule": {"api": "Produce", "delay_ms": 5}}]"#,
        );
        assert!(e.starts_with("request_faults[0].at: must be before the end"), "{e}");
        let e = err(r#", "request_faults": [{"at": "1s", "rul": {}}]"#);
        assert!(e.starts_with("request_faults[0].rul: unknown key"), "{e}");
    }

    #[test]
    fn the_nemesis_draws_request_rules_only_when_asked() {
        let nem = |extra: &str| {
            format!(
                r#", "nemesis": {{"faults": ["request_fault"], "count": 6, "min": "1s", "max": "2s"{extra}}}"#
            )
        };
        let e = err(&nem(""));
        assert!(e.starts_with("nemesis.request_faults: required with request_fault"), "{e}");
        let e = err(&nem(r#", "request_faults": [{"api": "Produce", "error": "NONE"}]"#));
        assert!(e.starts_with("nemesis.request_faults[0].error: NONE is not an error"), "{e}");
        let e = err(r#", "nemesis": {"faults": ["kill"], "request_faults": []}"#);
        assert!(e.starts_with("nemesis.request_faults: only with request_fault"), "{e}");
        let rules = r#", "request_faults": [{"api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER", "times": 2}, {"api": "Fetch", "delay_ms": 100}]"#;
        let sc = Scenario::parse(&scenario(&nem(rules))).unwrap();
        let drawn = sc.with_nemesis(7).faults;
        assert!(!drawn.is_empty());
        for f in &drawn {
            assert!(
                matches!(f.action, FaultAction::Request { .. })
                    && matches!(f.target, Target::Broker(_)),
                "{f:?}"
            );
            assert!(f.label.starts_with("nemesis request_fault["), "{}", f.label);
            assert!(f.for_ns.is_some_and(|d| (1_000_000_000..=2_000_000_000).contains(&d)));
        }
        assert_eq!(drawn, sc.with_nemesis(7).faults);
        // Both rules are drawn over a few seeds.
        let apis: std::collections::BTreeSet<String> = (1..20)
            .flat_map(|s| sc.with_nemesis(s).faults)
            .filter_map(|f| match f.action {
                FaultAction::Request { rule } => Some(rule.api),
                _ => None,
            })
            .collect();
        assert_eq!(apis.len(), 2, "{apis:?}");
    }

    #[test]
    fn the_installed_window_ends_with_for() {
        use crate::faults::{windowed, RuleSpec};
        let r = RuleSpec {
            api: "Produce".into(),
            delay_ms: Some(5),
            until_ms: Some(9_000),
            ..RuleSpec::default()
        };
        assert_eq!(windowed(&r, Some(2_500_000_000)).until_ms, Some(2_500));
        assert_eq!(windowed(&r, Some(20_000_000_000)).until_ms, Some(9_000));
        assert_eq!(windowed(&r, None), r);
    }
}
