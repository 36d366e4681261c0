use proptest::prelude::*;

use super::*;

fn code(name: &str) -> Option<i16> {
    match name {
        "NONE" => Some(0),
        "NOT_LEADER_OR_FOLLOWER" => Some(6),
        "REQUEST_TIMED_OUT" => Some(7),
        "COORDINATOR_LOAD_IN_PROGRESS" => Some(14),
        _ => None,
    }
}

fn api(name: &str) -> bool {
    ["Produce", "Fetch", "JoinGroup"].contains(&name)
}

fn produce(topic: &str, partition: i32) -> RequestFacts {
    RequestFacts {
        api: "Produce",
        version: 9,
        client_id: Some("app".into()),
        topics: vec![(topic.into(), vec![partition])],
        group: None,
    }
}

fn install(t: &mut FaultTable, spec: RuleSpec, now_ms: u64) -> u64 {
    let action = validate(&spec, &code, &api).unwrap();
    t.push(spec, action, now_ms).unwrap()
}

fn spec(json: &str) -> RuleSpec {
    serde_json::from_str(json).unwrap()
}

#[test]
fn three_not_leader_errors_then_normal_handling() {
    let mut t = FaultTable::default();
    install(
        &mut t,
        spec(r#"{"api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER", "times": 3}"#),
        0,
    );
    let mut never = || unreachable!("no probability given");
    let got: Vec<_> = (0..5).map(|_| t.decide(&produce("a", 0), 0, &mut never)).collect();
    assert_eq!(
        got,
        [Some(Action::ErrorInstead(6)); 3].into_iter().chain([None, None]).collect::<Vec<_>>()
    );
    assert_eq!((t.rules()[0].matched, t.rules()[0].fired), (5, 3));
}

#[test]
fn filters_narrow_by_topic_partition_version_client_and_group() {
    let mut t = FaultTable::default();
    install(
        &mut t,
        spec(
            r#"{"api": "Produce", "topic": "a", "partition": 1, "versions": [3, 9], "client_id": "app", "delay_ms": 5}"#,
        ),
        0,
    );
    let mut never = || 0.0;
    assert_eq!(t.decide(&produce("a", 1), 0, &mut never), Some(Action::Delay { ms: 5 }));
    assert_eq!(t.decide(&produce("a", 0), 0, &mut never), None, "other partition");
    assert_eq!(t.decide(&produce("b", 1), 0, &mut never), None, "other topic");
    let mut old = produce("a", 1);
    old.version = 2;
    assert_eq!(t.decide(&old, 0, &mut never), None, "version outside");
    let mut other_client = produce("a", 1);
    other_client.client_id = Some("x".into());
    assert_eq!(t.decide(&other_client, 0, &mut never), None, "other client");
    let fetch = RequestFacts { api: "Fetch", ..produce("a", 1) };
    assert_eq!(t.decide(&fetch, 0, &mut never), None, "other API");
    assert_eq!(t.rules()[0].matched, 1, "only matching requests count");
    let mut g = FaultTable::default();
    install(&mut g, spec(r#"{"api": "JoinGroup", "group": "g1", "delay_ms": 30000}"#), 0);
    let join = |group: &str| RequestFacts {
        api: "JoinGroup",
        group: Some(group.into()),
        ..RequestFacts::default()
    };
    assert_eq!(g.decide(&join("g2"), 0, &mut never), None);
    assert_eq!(g.decide(&join("g1"), 0, &mut never), Some(Action::Delay { ms: 30_000 }));
}

#[test]
fn after_window_and_probability_triggers() {
    let mut t = FaultTable::default();
    install(
        &mut t,
        spec(r#"{"api": "Produce", "disconnect": "after", "after": 2, "once": true}"#),
        0,
    );
    let mut d = || 0.0;
    let got: Vec<_> = (0..5).map(|_| t.decide(&produce("a", 0), 0, &mut d)).collect();
    assert_eq!(got, [None, None, Some(Action::DisconnectAfter), None, None]);

    let mut w = FaultTable::default();
    install(
        &mut w,
        spec(r#"{"api": "Produce", "throttle_ms": 100, "from_ms": 1000, "until_ms": 2000}"#),
        500,
    );
    assert_eq!(w.decide(&produce("a", 0), 1400, &mut d), None, "900 ms after install");
    assert_eq!(w.decide(&produce("a", 0), 1500, &mut d), Some(Action::Throttle { ms: 100 }));
    assert_eq!(w.decide(&produce("a", 0), 2500, &mut d), None, "window over");

    let mut p = FaultTable::default();
    install(
        &mut p,
        spec(
            r#"{"api": "Produce", "error": "REQUEST_TIMED_OUT", "after_handling": true, "probability": 0.5}"#,
        ),
        0,
    );
    let mut draws = [0.7, 0.2, 0.5, 0.49].into_iter();
    let mut draw = || draws.next().unwrap();
    let got: Vec<_> = (0..4).map(|_| p.decide(&produce("a", 0), 0, &mut draw)).collect();
    assert_eq!(got, [None, Some(Action::ErrorAfter(7)), None, Some(Action::ErrorAfter(7))]);
}

#[test]
fn first_firing_rule_decides_and_later_rules_still_count() {
    let mut t = FaultTable::default();
    install(&mut t, spec(r#"{"api": "Produce", "delay_ms": 1, "once": true}"#), 0);
    install(&mut t, spec(r#"{"api": "Produce", "delay_ms": 2}"#), 0);
    let mut d = || 0.0;
    assert_eq!(t.decide(&produce("a", 0), 0, &mut d), Some(Action::Delay { ms: 1 }));
    assert_eq!(t.decide(&produce("a", 0), 0, &mut d), Some(Action::Delay { ms: 2 }));
    assert_eq!((t.rules()[0].fired, t.rules()[1].fired), (1, 1));
    assert_eq!(t.clear(), 2);
    assert!(t.is_empty());
}

#[test]
fn bad_rules_name_the_field() {
    for (json, field) in [
        (r#"{"api": "Produc", "delay_ms": 1}"#, "api"),
        (r#"{"api": "Produce", "error": "NOT_A_CODE"}"#, "error"),
        (r#"{"api": "Produce", "error": "NONE"}"#, "error"),
        (r#"{"api": "Produce"}"#, "error"),
        (r#"{"api": "Produce", "delay_ms": 1, "throttle_ms": 2}"#, "error"),
        (r#"{"api": "Produce", "delay_ms": 1, "probability": 1.5}"#, "probability"),
        (r#"{"api": "Produce", "delay_ms": 1, "versions": [5, 3]}"#, "versions"),
        (r#"{"api": "Produce", "delay_ms": 1, "times": 0}"#, "times"),
        (r#"{"api": "Produce", "delay_ms": 1, "once": true, "times": 2}"#, "once"),
        (r#"{"api": "Produce", "delay_ms": 1, "after_handling": true}"#, "after_handling"),
        (r#"{"api": "Produce", "delay_ms": 700000}"#, "delay_ms"),
        (r#"{"api": "Produce", "delay_ms": 1, "from_ms": 5, "until_ms": 5}"#, "until_ms"),
    ] {
        let e = validate(&spec(json), &code, &api).unwrap_err().to_string();
        assert!(e.starts_with(&format!("`{field}`")), "{json}: {e}");
    }
    let e = serde_json::from_str::<RuleSpec>(r#"{"api": "Produce", "delay": 1}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `delay`"), "{e}");
}

proptest! {
    /// Against a model: with `after` A and `times` N (probability 1, no window), a rule fires on
    /// the matching requests numbered A+1 ..= A+N and on no other request; `matched` counts every
    /// matching request.
    #[test]
    fn fires_exactly_on_the_requests_the_model_says(
        after in 0u64..5, times in 1u64..5,
        topics in proptest::collection::vec(0u8..3, 0..30),
    ) {
        let mut t = FaultTable::default();
        let s = RuleSpec { api: "Produce".into(), topic: Some("t0".into()), error: Some("NOT_LEADER_OR_FOLLOWER".into()),
                           after: Some(after), times: Some(times), ..RuleSpec::default() };
        install(&mut t, s, 0);
        let mut matched = 0u64;
        let mut d = || 0.0;
        for tp in topics {
            let got = t.decide(&produce(&format!("t{tp}"), 0), 0, &mut d);
            let matching = tp == 0;
            if matching { matched += 1; }
            let want = matching && matched > after && matched <= after + times;
            prop_assert_eq!(got.is_some(), want);
        }
        prop_assert_eq!(t.rules()[0].matched, matched);
        prop_assert_eq!(t.rules()[0].fired, matched.saturating_sub(after).min(times));
    }
}
