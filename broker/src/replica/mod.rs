//! Replication between brokers (combined mode only; a single node has no replicas).
//!
//! - [`delta`]: what a broker must do when the controller's image changes (become leader,
//!   become follower, stop replicas), pure and property-tested.
//! - [`state`]: each partition's role here — a leader's `cluster::isr::LeaderState` (ISR, HW,
//!   `acks=all` waiters) or a follower's leader, epoch and HW — without IO.
//! - [`fetcher`]: one task per leader broker: truncate by epoch, then Fetch and append.
//! - [`wire`]: the follower's Kafka-protocol connection.
//! - `crate::broker::replica_manager`: the replica manager (it drives a `Broker`, so it lives
//!   with it and nothing here imports the broker). It follows the controller's image: creates
//!   local logs for new topics, applies [`delta::local_changes`] (leaders start `LeaderState`s at
//!   their log end; followers start truncating), starts fetchers, sends ISR changes (AlterPartition) the
//!   leaders ask for, checks for lagging followers every `replica.lag.time.max.ms / 2`, and
//!   checkpoints HWs to `replication-offset-checkpoint`.
//!
//! Data flow: a produce appends at the leader → a follower's long-polling Fetch returns the new
//! batches → it appends them and fetches again from its new log end → that fetch tells the leader
//! the follower's LEO → the HW moves to the smallest LEO of the ISR → `acks=all` produces below it
//! complete and consumers may read up to it.

pub mod delta;
pub mod fetcher;
pub mod state;
pub mod wire;

pub use state::Replicas;
