//! Kafka's shared vocabulary, defined once for the broker, the client, the cluster logic and the
//! simulator: [`TopicPartition`], [`ErrorCode`], the leader-epoch cache rules ([`EpochCache`]) and
//! the properties-file syntax ([`parse_properties`]).
//!
//! Pure types and logic: no IO, no async, no dependencies.

pub mod epoch;
pub mod error;
pub mod properties;
pub mod topic_partition;

pub use epoch::{EpochCache, EpochEntry};
pub use error::{error_code, ErrorCode};
pub use properties::parse_properties;
pub use topic_partition::{Topic, TopicPartition};
