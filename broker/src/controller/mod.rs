//! The controller quorum (KRaft-style, issue 5): the IO around the pure logic of the `cluster`
//! crate. Nothing here runs unless a quorum is configured (`controller.quorum.voters`); a
//! single-node broker never touches this module.
//!
//! - [`frame`]: length-prefixed serde_json frames on the controller listener.
//! - [`raft_log`]: the Raft log and hard state under `<data-dir>/__cluster_metadata-0/`.
//! - [`rpc`]: the messages on the controller listener (Raft between voters, requests from
//!   brokers) and the quorum settings.
//! - [`node`]: one controller: the Raft driver, the metadata image, the active controller's
//!   decisions, the listener and the peer connections.
//! - [`local`]: the broker in combined mode (topics from the image, leader checks).
//! - [`combined`]: starting a combined-mode node (controller and/or broker side), shared by
//!   `broker serve` and the simulator.
//! - [`link`]: the broker's side, the [`link::ControllerLink`] trait and its implementation over
//!   the RPCs (registration, heartbeats, metadata pulls).

pub mod combined;
pub mod frame;
pub mod link;
pub mod local;
pub mod node;
pub mod raft_log;
pub mod rpc;
