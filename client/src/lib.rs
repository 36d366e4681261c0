//! Loglab's Kafka client. For now the producer core, as pure logic plus a runtime-agnostic wait:
//!
//! - [`ProducerConfig`]: Kafka's producer config names, defaults and cross-checks.
//! - [`Partitioner`]: murmur2 for keyed records, sticky (KIP-794) for null keys, seeded rng.
//! - [`BufferPool`]: `buffer.memory` with recycled `batch.size` buffers; waits use tokio
//!   (madsim-tokio) time, so they work on real IO and in the simulator.
//! - [`RecordAccumulator`]: per-partition batches (`records::BatchBuilder`), linger/size readiness,
//!   per-node drain bounded by `max.request.size`, idempotent sequence numbers at drain time.
//!
//! The network half (metadata, sender loop, Produce requests) plugs in at
//! [`RecordAccumulator::ready`] / [`RecordAccumulator::drain`] / [`RecordAccumulator::complete`].

pub mod accumulator;
pub mod buffer_pool;
pub mod config;
pub mod partitioner;

pub use accumulator::{
    append, increment_sequence, AccumulatorConfig, AppendError, Appended, FailReason, FailedBatch,
    ProducerBatch, ReadyCheck, RecordAccumulator, RecordRef, TopicPartition, TryAppend,
};
pub use buffer_pool::{BufferPool, PoolError};
pub use config::{Acks, ConfigError, ProducerConfig};
pub use partitioner::{murmur2, partition_for_key, to_positive, Partitioner};
