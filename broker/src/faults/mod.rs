//! Request-level fault injection: rules that answer a Kafka error, delay, throttle or disconnect
//! chosen requests, for client developers (issue 19). [`rules`] is the pure part: matching,
//! actions, triggers and counters.

pub mod respond;
pub mod rules;

pub use rules::{Action, FaultTable, RequestFacts, Rule, RuleError, RuleSpec, When};
