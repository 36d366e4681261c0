//! Loglab's cluster logic, synchronous and free of IO: inputs in, effects out.
//!
//! - [`isr`]: a partition leader's replication rules (ISR, high watermark, `acks=all`) and a
//!   follower's truncation on leader change (KIP-101/279).
//! - [`metadata`]: the controller's replicated state machine (records applied to an image) and its
//!   decisions (fencing, leader election, AlterPartition, topic creation) as pure functions.
//! - [`raft`]: the Raft consensus core that replicates the metadata log between controllers.
//!
//! The callers own time, the network and the disk; nothing here sleeps, reads a clock or draws
//! randomness other than from a seeded generator handed in.

pub mod isr;
pub mod metadata;
pub mod raft;

/// Proptest case counts: `PROPTEST_CASES` when set (the full test command deepens the properties
/// that guard data), else the property's own default.
#[cfg(test)]
pub(crate) fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}
