//! Loglab's Kafka client, runtime-agnostic: tokio (madsim-tokio) tasks, sync and time only, bytes
//! through the `net_model` transport handed in, randomness from a seed handed in.
//!
//! - [`conn`]: one broker connection — framing, request headers, correlation ids, pipelining up
//!   to `max.in.flight.requests.per.connection`, ApiVersions negotiation, bounded response frames.
//! - [`cluster`]: connections per broker and the metadata cache, shared by the clients below.
//! - [`producer`]: [`Producer`] over the producer core: [`ProducerConfig`] (Kafka names/defaults),
//!   [`Partitioner`] (murmur2 / sticky), [`BufferPool`] (`buffer.memory`), [`RecordAccumulator`]
//!   (linger/size readiness, per-node drain, idempotent sequences) and a sender task.
//! - [`consumer`]: [`Consumer`] with `assign`, `seek*`, `poll` and pipelined fetches; with a
//!   `group.id`, `subscribe` (consumer groups, [`group`]), commits and rebalance listeners.
//! - [`fetched`]: [`PartitionRecords`], one partition's fetched records read in place.
//! - [`admin`]: [`Admin`] — create/delete/list topics.
//! - [`omb`]: OpenMessaging Benchmark workloads, driver files and result JSON; `perf omb`.

pub mod accumulator;
pub mod admin;
pub mod buffer_pool;
pub mod calibrate;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod consumer;
pub mod errors;
pub mod fetched;
pub mod group;
pub mod omb;
pub mod partitioner;
pub mod perf;
pub mod producer;

pub use accumulator::{
    append, increment_sequence, AccumulatorConfig, AppendError, Appended, FailReason, FailedBatch,
    ProducerBatch, ReadyCheck, RecordAccumulator, RecordRef, TopicPartition, TryAppend,
    UNACKED_BATCHES_MAX,
};
pub use admin::{Admin, AdminConfig, AdminError, NewTopic};
pub use buffer_pool::{BufferPool, PoolError};
pub use cluster::{Cluster, Metadata, PartitionMetadata, TopicMetadata};
pub use config::{Acks, ConfigError, ProducerConfig};
pub use conn::{Conn, ConnConfig, ConnError};
pub use consumer::{
    AutoOffsetReset, Consumer, ConsumerConfig, ConsumerError, ConsumerRecord, GroupMetadata,
    RebalanceEvent, RebalanceListener,
};
pub use fetched::{FetchedRecord, PartitionRecords};
pub use group::{GroupError, Strategy};
pub use partitioner::{murmur2, partition_for_key, to_positive, Partitioner};
pub use producer::{
    Completed, DeliveryFuture, Listener, ProduceError, Producer, ProducerRecord, ProducerRecordRef,
    RecordMetadata, SendLeft, SendNow, SendWait,
};
pub use records::Header;
