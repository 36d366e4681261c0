//! The oracle's and the settle loop's view of the broker: list offsets, fetch, produce.
//! Implemented over the simulated network by [`crate::netclient::NetClient`] (Kafka requests to
//! the unmodified broker) and, for clusters, by [`crate::cluster::Router`] (each partition's
//! current leader).

use std::time::Duration;

use async_trait::async_trait;
use broker::log::TopicPartition;
use bytes::Bytes;
use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ApiError {
    /// No broker process answers (down, or restarting): like a refused connection.
    #[error("broker unavailable")]
    Unavailable,
    /// The broker died with the request in flight: like a reset connection.
    #[error("connection lost with the request in flight")]
    Disconnected,
    #[error("request timed out")]
    Timeout,
    #[error("offset out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange { log_start_offset: i64, log_end_offset: i64 },
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// The log answered with an error (storage error, offline log, corrupt batch…).
    #[error("broker error: {0}")]
    Broker(String),
}

impl ApiError {
    /// A short stable name for traces.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unavailable => "unavailable",
            ApiError::Disconnected => "disconnected",
            ApiError::Timeout => "timeout",
            ApiError::OffsetOutOfRange { .. } => "offset_out_of_range",
            ApiError::UnknownTopicOrPartition => "unknown_topic_or_partition",
            ApiError::Broker(_) => "broker_error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceResponse {
    pub base_offset: i64,
    pub log_end_offset: i64,
}

#[derive(Debug, Clone)]
pub struct FetchResponse {
    /// Whole record batches, CRC-checked by the broker.
    pub batches: Vec<Bytes>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

#[async_trait]
pub trait BrokerApi: Send + Sync {
    /// Appends one record batch; with `wait` false (acks=0) returns as soon as it is handed over.
    async fn produce(
        &self,
        tp: &TopicPartition,
        batch: Bytes,
        wait: bool,
        timeout: Duration,
    ) -> Result<Option<ProduceResponse>, ApiError>;
    /// Reads from `offset`; waits up to `max_wait` for data when there is none.
    async fn fetch(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
        timeout: Duration,
    ) -> Result<FetchResponse, ApiError>;
    /// (log start offset, log end offset).
    async fn list_offsets(
        &self,
        tp: &TopicPartition,
        timeout: Duration,
    ) -> Result<(i64, i64), ApiError>;
}
