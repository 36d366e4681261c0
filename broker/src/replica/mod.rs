//! Replication between brokers (issue 5's next step), started here. So far:
//! - [`delta`]: what a broker must do when the controller's image changes (become leader,
//!   become follower, stop replicas), pure and property-tested.
//!
//! Next: a replica manager that applies these changes (followers fetch from the leader with
//! `replica_id`, truncate by leader epoch via `cluster::isr`; leaders track follower LEOs, move
//! the high watermark, and shrink/expand the ISR through `ControllerLink::alter_partition`).

pub mod delta;
