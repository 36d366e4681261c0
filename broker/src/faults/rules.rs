//! Fault rules: which requests a rule matches, what it does to them, and when it fires. Pure:
//! the broker hands in the facts of a request, the time and a random draw; the table says what to
//! do and counts.
//!
//! A rule, as JSON (the admin API, `--fault-plan`, a scenario's `request_faults`):
//! ```json
//! {"api": "Produce", "versions": [3, 9], "topic": "orders", "partition": 0,
//!  "group": null, "client_id": null,
//!  "error": "NOT_LEADER_OR_FOLLOWER", "after_handling": false,
//!  "times": 3, "after": 0, "probability": 1.0, "from_ms": null, "until_ms": null}
//! ```
//! - **Match**: `api` (Kafka's name) is required; the others narrow it (a request matches `topic`
//!   when any of its topics is that one, `partition` likewise; `group` is a group id;
//!   `client_id` the request header's).
//! - **Action**, exactly one: `error` (a Kafka error name, answered in place of handling, or with
//!   `after_handling` after the request was handled — the write happened, the client is told it
//!   did not), `delay_ms` (the response waits), `throttle_ms` (the response carries a throttle
//!   time), `disconnect` (`"before"`: close without handling; `"after"`: handle, then close
//!   without answering).
//! - **Trigger**, all that are given must hold: the rule skips its first `after` matching requests,
//!   fires at most `times` times (`once` is `times: 1`), fires with `probability` (drawn from the
//!   caller's rng: seeded in the simulator), and only within [`from_ms`, `until_ms`) of the time
//!   it was installed.
//! - Every rule counts `matched` (requests that matched its filters) and `fired`.
//! - Limits: at most [`RULES_MAX`] rules; `delay_ms` at most [`DELAY_MS_MAX`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Rules installed at once, at most.
pub const RULES_MAX: usize = 1_000;
/// A delay, at most (10 minutes).
pub const DELAY_MS_MAX: u64 = 600_000;

/// A rule as written (JSON, CLI flags).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub api: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<[i16; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub after_handling: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_ms: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<When>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub once: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// When a disconnect happens relative to handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    Before,
    After,
}

/// What the broker does with a request a rule fired on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer this error code without handling the request.
    ErrorInstead(i16),
    /// Handle the request, then answer this error code instead of its response.
    ErrorAfter(i16),
    /// Handle the request; send its response this much later.
    Delay { ms: u64 },
    /// Handle the request; its response carries this throttle time.
    Throttle { ms: i32 },
    /// Close the connection without handling.
    DisconnectBefore,
    /// Handle the request, then close without answering.
    DisconnectAfter,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RuleError {
    #[error("`{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("at most {RULES_MAX} rules")]
    TooMany,
}

fn field(field: &'static str, reason: impl Into<String>) -> RuleError {
    RuleError::Field { field, reason: reason.into() }
}

/// The facts of one request that rules match on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// Kafka's API name (`Produce`).
    pub api: &'static str,
    pub version: i16,
    pub client_id: Option<String>,
    /// Topics named in the request, each with the partitions it names.
    pub topics: Vec<(String, Vec<i32>)>,
    pub group: Option<String>,
}

/// An installed rule with its counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub id: u64,
    #[serde(flatten)]
    pub spec: RuleSpec,
    pub matched: u64,
    pub fired: u64,
    /// When it was installed, ms on the caller's clock (windows count from here).
    pub installed_ms: u64,
    #[serde(skip)]
    action: Option<Action>,
}

impl Rule {
    /// What the rule does when it fires.
    pub fn action(&self) -> Action {
        self.action.expect("installed rules are validated")
    }
}

/// Checks a spec and resolves its action; `error_code` maps a Kafka error name to its code and
/// `known_api` says whether an API name is one the broker serves.
pub fn validate(
    spec: &RuleSpec,
    error_code: &dyn Fn(&str) -> Option<i16>,
    known_api: &dyn Fn(&str) -> bool,
) -> Result<Action, RuleError> {
    if !known_api(&spec.api) {
        return Err(field(
            "api",
            format!("unknown API `{}` (Kafka's names: Produce, Fetch, JoinGroup, ...)", spec.api),
        ));
    }
    if let Some([lo, hi]) = spec.versions {
        if lo < 0 || lo > hi {
            return Err(field("versions", format!("[{lo}, {hi}] is not a range")));
        }
    }
    if let Some(p) = spec.probability {
        if !(p > 0.0 && p <= 1.0) {
            return Err(field("probability", format!("{p} is outside (0, 1]")));
        }
    }
    if let (Some(a), Some(b)) = (spec.from_ms, spec.until_ms) {
        if a >= b {
            return Err(field("until_ms", "must be after from_ms"));
        }
    }
    if spec.once && spec.times.is_some() {
        return Err(field("once", "give once or times, not both"));
    }
    if spec.times == Some(0) {
        return Err(field("times", "must be at least 1"));
    }
    if spec.after_handling && spec.error.is_none() {
        return Err(field("after_handling", "only with error"));
    }
    action(spec, error_code)
}

fn action(spec: &RuleSpec, error_code: &dyn Fn(&str) -> Option<i16>) -> Result<Action, RuleError> {
    let given = [
        spec.error.is_some(),
        spec.delay_ms.is_some(),
        spec.throttle_ms.is_some(),
        spec.disconnect.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(field(
            "error",
            "give exactly one action: error, delay_ms, throttle_ms or disconnect",
        ));
    }
    if let Some(name) = &spec.error {
        let code = error_code(name)
            .ok_or_else(|| field("error", format!("unknown Kafka error `{name}`")))?;
        if code == 0 {
            return Err(field("error", "NONE is not an error"));
        }
        return Ok(if spec.after_handling {
            Action::ErrorAfter(code)
        } else {
            Action::ErrorInstead(code)
        });
    }
    if let Some(ms) = spec.delay_ms {
        if ms > DELAY_MS_MAX {
            return Err(field("delay_ms", format!("at most {DELAY_MS_MAX}")));
        }
        return Ok(Action::Delay { ms });
    }
    if let Some(ms) = spec.throttle_ms {
        if ms < 0 {
            return Err(field("throttle_ms", "must not be negative"));
        }
        return Ok(Action::Throttle { ms });
    }
    Ok(match spec.disconnect.expect("one action is given") {
        When::Before => Action::DisconnectBefore,
        When::After => Action::DisconnectAfter,
    })
}

/// The installed rules, in order; the first rule that fires on a request decides.
#[derive(Debug, Clone, Default)]
pub struct FaultTable {
    rules: Vec<Rule>,
    next_id: u64,
}

impl FaultTable {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Installs a validated rule; returns its id.
    pub fn push(&mut self, spec: RuleSpec, action: Action, now_ms: u64) -> Result<u64, RuleError> {
        if self.rules.len() >= RULES_MAX {
            return Err(RuleError::TooMany);
        }
        self.next_id += 1;
        let id = self.next_id;
        self.rules.push(Rule {
            id,
            spec,
            matched: 0,
            fired: 0,
            installed_ms: now_ms,
            action: Some(action),
        });
        Ok(id)
    }

    /// Removes the rule with this id; whether there was one.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        self.rules.len() < before
    }

    /// Removes every rule; returns how many there were.
    pub fn clear(&mut self) -> usize {
        std::mem::take(&mut self.rules).len()
    }

    /// The action for this request, if a rule fires. `draw` gives a uniform number in [0, 1) and
    /// is called only for a rule with a `probability`.
    pub fn decide(
        &mut self,
        facts: &RequestFacts,
        now_ms: u64,
        draw: &mut dyn FnMut() -> f64,
    ) -> Option<Action> {
        for rule in &mut self.rules {
            if !matches(&rule.spec, facts) {
                continue;
            }
            rule.matched += 1;
            if fires(rule, now_ms, draw) {
                rule.fired += 1;
                return rule.action;
            }
        }
        None
    }
}

/// Whether the request is one the spec names.
pub fn matches(spec: &RuleSpec, f: &RequestFacts) -> bool {
    if spec.api != f.api {
        return false;
    }
    if let Some([lo, hi]) = spec.versions {
        if f.version < lo || f.version > hi {
            return false;
        }
    }
    if spec.client_id.is_some() && spec.client_id != f.client_id {
        return false;
    }
    if spec.group.is_some() && spec.group != f.group {
        return false;
    }
    let topic_ok = |t: &str, ps: &[i32]| {
        spec.topic.as_deref().is_none_or(|want| want == t)
            && spec.partition.is_none_or(|p| ps.contains(&p))
    };
    if spec.topic.is_some() || spec.partition.is_some() {
        return f.topics.iter().any(|(t, ps)| topic_ok(t, ps));
    }
    true
}

fn fires(rule: &Rule, now_ms: u64, draw: &mut dyn FnMut() -> f64) -> bool {
    let s = &rule.spec;
    let since = now_ms.saturating_sub(rule.installed_ms);
    if s.from_ms.is_some_and(|a| since < a) || s.until_ms.is_some_and(|b| since >= b) {
        return false;
    }
    if rule.matched <= s.after.unwrap_or(0) {
        return false;
    }
    let times = if s.once { Some(1) } else { s.times };
    if times.is_some_and(|n| rule.fired >= n) {
        return false;
    }
    s.probability.is_none_or(|p| draw() < p)
}

#[cfg(test)]
mod tests;
