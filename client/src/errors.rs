//! Kafka error codes as the client sees them. The codes, their names and which are retriable are
//! `kafka_types::ErrorCode` (one table for the workspace); this module adds the client's own rule
//! of which errors mean its metadata is stale.

pub use kafka_types::ErrorCode;

/// Kafka's name for an error code (`NOT_LEADER_OR_FOLLOWER`), or `"UNKNOWN_CODE"`.
pub fn error_name(code: i16) -> &'static str {
    ErrorCode::from_code(code).name()
}

/// Whether Kafka marks the error retriable (its exception extends `RetriableException`).
pub fn is_retriable(code: i16) -> bool {
    ErrorCode::from_code(code).is_retriable()
}

/// Errors after which a client should refresh its metadata (leadership moved or is unknown).
pub fn needs_metadata_refresh(code: i16) -> bool {
    matches!(
        ErrorCode::from_code(code),
        ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
            | ErrorCode::LEADER_NOT_AVAILABLE
            | ErrorCode::NOT_LEADER_OR_FOLLOWER
            | ErrorCode::FENCED_LEADER_EPOCH
            | ErrorCode::UNKNOWN_LEADER_EPOCH
            | ErrorCode::UNKNOWN_TOPIC_ID
    )
}
