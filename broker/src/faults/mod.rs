//! Request-level fault injection: rules that answer a Kafka error, delay, throttle or disconnect
//! chosen requests, for client developers (issue 19). [`rules`] is the pure part: matching,
//! actions, triggers and counters; [`respond`] reads a request's facts and answers it with an
//! error in its API's shape; [`control`] is what the broker holds and consults per request
//! (`Broker::handle`).

pub mod conns;
pub mod control;
pub mod respond;
pub mod rules;
pub mod throttle;

pub use conns::Connections;
pub use control::FaultControl;
pub use rules::{Action, FaultTable, RequestFacts, Rule, RuleError, RuleSpec, When};
