//! The group coordinator (classic consumer-group protocol, offsets in `__consumer_offsets`).
//!
//! - [`state`]: one group's state machine, pure and synchronous (property-tested).
//! - [`offsets_topic`]: Kafka's record formats of `__consumer_offsets` and the group→partition hash.
//! - [`coordinator`]: the async service: owned offsets partitions, persistence, delayed responses,
//!   timers.

pub mod coordinator;
pub mod offsets_topic;
pub mod state;

pub use coordinator::Coordinator;
pub use offsets_topic::{partition_for, OFFSETS_TOPIC};
pub use state::GroupConfig;
