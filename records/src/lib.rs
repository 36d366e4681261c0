//! Kafka record batches, magic v2, as they travel on the wire and lie on disk.
//!
//! The broker stores batches opaquely: it validates the 61-byte header and the CRC32C, rewrites the
//! base offset (and partition leader epoch) in place — neither is covered by the CRC — and never
//! decodes or recompresses record bodies on the hot path. Everything here is bounds-checked against
//! the buffer it is given; a batch never makes us allocate more than its own declared length, and
//! that length is checked against the caller's limit first.

mod header;

pub use header::{
    BatchError, BatchHeader, BatchIter, Compression, TimestampType, BATCH_HEADER_LEN,
    BATCH_OVERHEAD_LEN, CRC_COVERED_FROM, LENGTH_FIELD_END, MAGIC_V2, NO_PRODUCER_ID,
    NO_SEQUENCE,
};
