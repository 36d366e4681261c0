//! The checks Kafka's `LogValidator` makes on a batch a client produced, before it is stored.
//!
//! The header checks (size, magic, CRC32C, codec) alone let through batches whose records lie:
//! a compressed batch holding more records than its header says (consumers then see offsets
//! twice), an offset range that does not match the count, a payload that does not decompress
//! (consumers stop at it forever), record lengths and key lengths past the record's end, header
//! counts beyond the bytes, decompression bombs. Here every record is decoded — within
//! `max_uncompressed_bytes` — and checked, as Kafka does for client appends:
//! - `record_count` > 0 and `lastOffsetDelta + 1 == record_count` (Kafka: "Inconsistent batch
//!   offset range");
//! - exactly `record_count` records, each a well-formed record ending where its length says, with
//!   offset deltas 0, 1, 2, ... in order (Kafka: "invalid inner offset");
//! - no control batch (clients may not write control records);
//! - with `require_keys` (a compacted topic), every record has a key.
//!
//! Errors say which Kafka code answers them ([`ValidateError::kafka_code`]): structure that cannot
//! be read is `CORRUPT_MESSAGE` (2), a readable batch that breaks a rule is `INVALID_RECORD` (87).

use bytes::Bytes;
use thiserror::Error;

use crate::decode::{decode_batch_unverified_crc, DecodeError};
use crate::header::BatchHeader;

/// Kafka's `CORRUPT_MESSAGE`.
pub const CORRUPT_MESSAGE: i16 = 2;
/// Kafka's `INVALID_RECORD`.
pub const INVALID_RECORD: i16 = 87;

/// What a produced batch is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidateLimits {
    /// The records section after decompression, at most (the topic's `max.message.bytes` is a
    /// sound bound: Kafka's own producer never builds more uncompressed bytes than it, plus a
    /// margin for compression; the broker passes its limit).
    pub max_uncompressed_bytes: usize,
    /// A compacted topic: every record needs a key.
    pub require_keys: bool,
}

/// A batch that passed, with what the checks learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated {
    pub records: u32,
    /// The largest record timestamp (CreateTime), or the header's under LogAppendTime.
    pub max_timestamp: i64,
    /// Bytes of the records section after decompression.
    pub uncompressed_bytes: usize,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ValidateError {
    /// The batch cannot be read: CRC, header, decompression, a record's structure.
    #[error("corrupt batch: {0}")]
    Corrupt(String),
    /// The batch reads but breaks a rule Kafka enforces.
    #[error("invalid batch: {0}")]
    Invalid(String),
}

impl ValidateError {
    /// The Kafka error code a Produce response carries for it.
    pub fn kafka_code(&self) -> i16 {
        match self {
            ValidateError::Corrupt(_) => CORRUPT_MESSAGE,
            ValidateError::Invalid(_) => INVALID_RECORD,
        }
    }
}

fn corrupt(e: impl ToString) -> ValidateError {
    ValidateError::Corrupt(e.to_string())
}

/// Checks one produced batch (`batch` is exactly one batch, CRC included in the check).
pub fn validate_produced_batch(
    batch: &Bytes,
    limits: ValidateLimits,
) -> Result<Validated, ValidateError> {
    BatchHeader::validate(batch, usize::MAX).map_err(corrupt)?;
    validate_produced_records(batch, limits)
}

/// [`validate_produced_batch`] without the CRC32C, for a caller that checks the CRC of every
/// batch anyway before storing it (the broker's log does): the CRC is the costliest part of the
/// check, and computing it twice per batch would double that.
pub fn validate_produced_records(
    batch: &Bytes,
    limits: ValidateLimits,
) -> Result<Validated, ValidateError> {
    let header = BatchHeader::parse(batch).map_err(corrupt)?;
    check_header(&header)?;
    let mut iter = decode_batch_unverified_crc(batch.clone(), limits.max_uncompressed_bytes)
        .map_err(corrupt)?;
    let uncompressed_bytes = iter.uncompressed_records().len();
    let mut max_timestamp = i64::MIN;
    let mut count: u32 = 0;
    // Records are checked in place (varints and lengths), never sliced out or collected.
    while let Some(record) = iter.next_meta() {
        let record = record.map_err(|e| match e {
            DecodeError::RecordCountMismatch { .. } | DecodeError::TrailingBytes { .. } => {
                ValidateError::Invalid(format!(
                    "{e} (the header says {} records)",
                    header.record_count
                ))
            }
            e => corrupt(e),
        })?;
        let expected = header.base_offset + i64::from(count);
        if record.offset != expected {
            return Err(ValidateError::Invalid(format!(
                "record {count} has offset delta {}, expected {count}",
                record.offset - header.base_offset
            )));
        }
        if limits.require_keys && !record.has_key {
            return Err(ValidateError::Invalid(format!(
                "record {count} has no key: a compacted topic needs a key on every record"
            )));
        }
        max_timestamp = max_timestamp.max(record.timestamp);
        count += 1;
    }
    assert_eq!(i64::from(count), i64::from(header.record_count), "the decoder checks the count");
    Ok(Validated { records: count, max_timestamp, uncompressed_bytes })
}

fn check_header(h: &BatchHeader) -> Result<(), ValidateError> {
    if h.record_count <= 0 {
        return Err(ValidateError::Invalid(format!(
            "record count {} is not positive",
            h.record_count
        )));
    }
    if i64::from(h.last_offset_delta) + 1 != i64::from(h.record_count) {
        return Err(ValidateError::Invalid(format!(
            "lastOffsetDelta {} does not match record count {} (inconsistent offset range)",
            h.last_offset_delta, h.record_count
        )));
    }
    if h.is_control() {
        return Err(ValidateError::Invalid("clients may not write control batches".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
