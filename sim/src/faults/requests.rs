//! Request-fault rules on a simulated broker: installed on the running broker process's own
//! `FaultControl` (the code path `broker serve --fault-plan` and the admin API use), and read
//! back from it. Every count in a [`RuleRecord`] is the broker's (`matched`, `fired`), read
//! when the rule's `for` ends, when its broker process stops, or when the run heals.
//!
//! Lifetimes: rules live in the broker process, as on a real broker. A rule with `for` is
//! installed with its window ending when `for` does (the broker stops firing it itself;
//! `FaultControl` has no per-rule removal, and clearing and re-installing the others would
//! reset their counters and triggers), so an ended rule stays in the table, silent, until the
//! heal clears the table. A kill or power loss ends the process's rules (counted up to then);
//! a restarted broker starts without them.

use std::collections::BTreeMap;

use broker::Broker;
use serde::Serialize;

use super::{rule_brief, windowed, Fault, FaultAction, RuleSpec};
use crate::trace::Tracer;

/// One installation of a rule on one broker process, with the broker's counters.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRecord {
    /// The fault's index in the run's timeline.
    pub fault: usize,
    pub label: String,
    pub broker: String,
    pub incarnation: u64,
    /// The rule as written (the installed copy's window also ends with `for`).
    pub rule: RuleSpec,
    /// Its id in the broker's `FaultControl`; `None`: not installed (the broker was down).
    pub id: Option<u64>,
    pub installed_s: f64,
    pub ended_s: Option<f64>,
    /// `for elapsed`, `broker stopped`, `run healed`, or why it was never installed.
    pub ended: Option<String>,
    pub matched: u64,
    pub fired: u64,
}

/// A host's request-fault rules: those in force on its running process, and every record.
#[derive(Debug, Default)]
pub struct RequestRules {
    /// Fault index → record index, for rules installed on the running process and not ended.
    active: BTreeMap<usize, usize>,
    /// Whether the running process's table holds any rule (ended ones stay until cleared).
    installed: bool,
    records: Vec<RuleRecord>,
}

/// Where a rule lands: the running process (if any), its host's name and incarnation.
pub struct On<'a> {
    pub broker: Option<&'a Broker>,
    pub name: String,
    pub incarnation: u64,
    pub tracer: &'a Tracer,
}

impl RequestRules {
    /// Installs fault `i`'s rule on the running process (a down broker gets a record saying so).
    pub fn install(&mut self, on: &On, i: usize, fault: &Fault) {
        let FaultAction::Request { rule } = &fault.action else { return };
        let now_ns = on.tracer.now_ns();
        let mut rec = RuleRecord {
            fault: i,
            label: fault.label.clone(),
            broker: on.name.clone(),
            incarnation: on.incarnation,
            rule: (**rule).clone(),
            id: None,
            installed_s: now_ns as f64 / 1e9,
            ended_s: None,
            ended: None,
            matched: 0,
            fired: 0,
        };
        let spec = windowed(rule, fault.for_ns);
        let now_ms = broker::now_ms().max(0) as u64;
        match on.broker.map(|b| b.faults.install(spec, now_ms)) {
            Some(Ok(id)) => {
                let line = format!(
                    "{} id={id} incarnation={} {}",
                    on.name,
                    on.incarnation,
                    rule_brief(rule)
                );
                on.tracer.event("request-rule", &line);
                rec.id = Some(id);
                self.installed = true;
                self.active.insert(i, self.records.len());
            }
            Some(Err(e)) => {
                // Validated at parse time; a refusal here is reported, not fatal.
                on.tracer.event("fault-ignored", &format!("{}: refused: {e}", fault.label));
                rec.ended_s = Some(rec.installed_s);
                rec.ended = Some(format!("refused: {e}"));
            }
            None => {
                on.tracer.event("fault-ignored", &format!("{}: the broker is down", fault.label));
                rec.ended_s = Some(rec.installed_s);
                rec.ended = Some("not installed: the broker was down".into());
            }
        }
        self.records.push(rec);
    }

    /// Ends fault `i`'s rule (if in force): reads its counters from the broker.
    pub fn end(&mut self, on: &On, i: usize, cause: &str) {
        let Some(r) = self.active.remove(&i) else { return };
        let rec = &mut self.records[r];
        let now_ns = on.tracer.now_ns();
        rec.ended_s = Some(now_ns as f64 / 1e9);
        rec.ended = Some(cause.to_string());
        let counted = on.broker.and_then(|b| {
            let id = rec.id?;
            b.faults.rules().into_iter().find(|x| x.id == id).map(|x| (x.matched, x.fired))
        });
        match counted {
            Some((matched, fired)) => (rec.matched, rec.fired) = (matched, fired),
            None => rec.ended = Some(format!("{cause}; counters not found on the broker")),
        }
        let line = format!(
            "{} id={} matched={} fired={} ({})",
            rec.broker,
            rec.id.unwrap_or(0),
            rec.matched,
            rec.fired,
            rec.ended.as_deref().unwrap_or("")
        );
        on.tracer.event("request-rule-end", &line);
    }

    /// Ends every rule in force (a process that stops, or the heal), in fault order.
    pub fn end_all(&mut self, on: &On, cause: &str) {
        let active: Vec<usize> = self.active.keys().copied().collect();
        for i in active {
            self.end(on, i, cause);
        }
    }

    /// The heal: ends every rule in force and empties the broker's table (ended rules stay in
    /// it, silent, until now); a broker that never held a rule is not touched.
    pub fn clear(&mut self, on: &On) {
        self.end_all(on, "run healed");
        if std::mem::take(&mut self.installed) {
            if let Some(b) = on.broker {
                let n = b.faults.clear();
                on.tracer.event("request-rules-cleared", &format!("{} rules={n}", on.name));
            }
        }
    }

    /// A process stopped: its rules end with it (counted up to now) and its table is gone.
    pub fn stopped(&mut self, on: &On) {
        self.end_all(on, "broker stopped");
        self.installed = false;
    }

    pub fn records(&self) -> &[RuleRecord] {
        &self.records
    }
}
