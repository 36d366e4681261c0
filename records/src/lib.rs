//! Kafka record batches, magic v2, as they travel on the wire and lie on disk.
//!
//! The broker stores batches opaquely: it validates the 61-byte header and the CRC32C, rewrites the
//! base offset (and partition leader epoch) in place — neither is covered by the CRC — and never
//! decodes or recompresses record bodies on the hot path. Everything here is bounds-checked against
//! the buffer it is given; a batch never makes us allocate more than its own declared length, and
//! that length is checked against the caller's limit first.
//!
//! Clients build batches with [`BatchBuilder`] (records in Kafka's varint format, compression,
//! producer id/epoch/sequence, CRC32C) and read them with [`decode_batch`], which decompresses
//! within a caller-given bound ([`compression`]) and never trusts a count or length it reads.

mod builder;
pub mod compression;
mod decode;
mod header;
pub mod validate;
pub mod varint;

pub use builder::{
    batch_size_upper_bound, record_size_upper_bound, BatchBuf, BatchBuilder, BuildError, Header,
};
pub use compression::CompressionError;
pub use decode::{
    decode_all, decode_batch, decode_batch_unverified_crc, DecodeError, Record, RecordIter,
    RecordMeta, RecordSpan,
};
pub use header::{
    BatchError, BatchHeader, BatchIter, Compression, TimestampType, BATCH_HEADER_LEN,
    BATCH_OVERHEAD_LEN, CRC_COVERED_FROM, LENGTH_FIELD_END, MAGIC_V2, NO_PRODUCER_ID, NO_SEQUENCE,
};
pub use validate::{
    validate_produced_batch, validate_produced_records, ValidateError, ValidateLimits, Validated,
};
