//! Replication between brokers (issue 5's next step), started here. So far:
//! - [`delta`]: what a broker must do when the controller's image changes (become leader,
//!   become follower, stop replicas), pure and property-tested.
//!
//! Next: a replica manager that applies these changes (followers fetch from the leader with
//! `replica_id`, truncate by leader epoch via `cluster::isr`; leaders track follower LEOs, move
//! the high watermark, and shrink/expand the ISR through `ControllerLink::alter_partition`).

pub mod delta;

use std::sync::Arc;

use net_model::Network;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::controller::link::ControllerLink;

/// Follows the controller's image: local topics and logs, then partition roles. Runs until
/// `shutdown`.
pub async fn run(broker: Arc<Broker>, link: Arc<dyn ControllerLink>, _net: Arc<dyn Network>, shutdown: watch::Receiver<bool>) {
    let _ = (broker, link, shutdown);
}
