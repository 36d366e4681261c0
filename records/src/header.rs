//! The v2 record-batch header: layout, parsing, validation and in-place rewrites.
//!
//! Layout (big-endian), byte positions from the start of the batch:
//!
//! | pos | len | field                 | covered by CRC |
//! |-----|-----|-----------------------|----------------|
//! | 0   | 8   | baseOffset            | no             |
//! | 8   | 4   | batchLength           | no             |
//! | 12  | 4   | partitionLeaderEpoch  | no             |
//! | 16  | 1   | magic (= 2)           | no             |
//! | 17  | 4   | crc (CRC32C)          | -              |
//! | 21  | 2   | attributes            | yes            |
//! | 23  | 4   | lastOffsetDelta       | yes            |
//! | 27  | 8   | baseTimestamp         | yes            |
//! | 35  | 8   | maxTimestamp          | yes            |
//! | 43  | 8   | producerId            | yes            |
//! | 51  | 2   | producerEpoch         | yes            |
//! | 53  | 4   | baseSequence          | yes            |
//! | 57  | 4   | records count         | yes            |
//! | 61  | ..  | records (maybe compressed) | yes       |
//!
//! `batchLength` counts the bytes after the length field, so a batch occupies `12 + batchLength`
//! bytes in total.

use thiserror::Error;

/// Bytes of the fixed header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s counted region: baseOffset (8) + batchLength (4).
pub const LENGTH_FIELD_END: usize = 12;
/// Alias used by readers scanning a log: the smallest prefix that tells a batch's total size.
pub const BATCH_OVERHEAD_LEN: usize = LENGTH_FIELD_END;
/// The CRC covers everything from the attributes to the end of the batch.
pub const CRC_COVERED_FROM: usize = 21;
pub const MAGIC_V2: i8 = 2;
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_SEQUENCE: i32 = -1;

const POS_BASE_OFFSET: usize = 0;
const POS_LENGTH: usize = 8;
const POS_LEADER_EPOCH: usize = 12;
const POS_MAGIC: usize = 16;
const POS_CRC: usize = 17;
const POS_ATTRIBUTES: usize = 21;
const POS_LAST_OFFSET_DELTA: usize = 23;
const POS_BASE_TIMESTAMP: usize = 27;
const POS_MAX_TIMESTAMP: usize = 35;
const POS_PRODUCER_ID: usize = 43;
const POS_PRODUCER_EPOCH: usize = 51;
const POS_BASE_SEQUENCE: usize = 53;
const POS_RECORD_COUNT: usize = 57;

/// Why a byte range is not a valid v2 batch. Each maps onto a Kafka error code at the wire.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch truncated: have {have} bytes, need {need}")]
    Truncated { have: usize, need: usize },
    #[error("batch length {length} is below the v2 header size")]
    LengthTooSmall { length: i32 },
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("unsupported magic {magic} (only v2 is stored)")]
    UnsupportedMagic { magic: i8 },
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record count {count} is inconsistent with lastOffsetDelta {last_offset_delta}")]
    BadRecordCount { count: i32, last_offset_delta: i32 },
    #[error("unknown compression codec {codec}")]
    UnknownCompression { codec: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        match (attributes & 0x07) as u8 {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            codec => Err(BatchError::UnknownCompression { codec }),
        }
    }

    pub fn id(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }

    /// Kafka's `compression.type` names.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" | "uncompressed" => Self::None,
            "gzip" => Self::Gzip,
            "snappy" => Self::Snappy,
            "lz4" => Self::Lz4,
            "zstd" => Self::Zstd,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The decoded fixed header of one batch. Plain data; the batch bytes stay where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// The `batchLength` field: bytes after the length field.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(b: &[u8], pos: usize) -> i64 {
    i64::from_be_bytes(b[pos..pos + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], pos: usize) -> i32 {
    i32::from_be_bytes(b[pos..pos + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], pos: usize) -> i16 {
    i16::from_be_bytes(b[pos..pos + 2].try_into().expect("2 bytes"))
}

impl BatchHeader {
    /// Total size of a batch on the wire and on disk, read from the first 12 bytes alone.
    /// `None` when fewer than 12 bytes are given or the length field is negative.
    pub fn peek_size(bytes: &[u8]) -> Option<usize> {
        if bytes.len() < LENGTH_FIELD_END {
            return None;
        }
        let length = be_i32(bytes, POS_LENGTH);
        usize::try_from(length).ok().map(|l| l + LENGTH_FIELD_END)
    }

    /// Parses the fixed header at the start of `bytes`. Checks sizes and magic, not the CRC.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated { have: bytes.len(), need: BATCH_HEADER_LEN });
        }
        let batch_length = be_i32(bytes, POS_LENGTH);
        if batch_length < (BATCH_HEADER_LEN - LENGTH_FIELD_END) as i32 {
            return Err(BatchError::LengthTooSmall { length: batch_length });
        }
        let magic = bytes[POS_MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        Ok(Self {
            base_offset: be_i64(bytes, POS_BASE_OFFSET),
            batch_length,
            partition_leader_epoch: be_i32(bytes, POS_LEADER_EPOCH),
            magic,
            crc: be_i32(bytes, POS_CRC) as u32,
            attributes: be_i16(bytes, POS_ATTRIBUTES),
            last_offset_delta: be_i32(bytes, POS_LAST_OFFSET_DELTA),
            base_timestamp: be_i64(bytes, POS_BASE_TIMESTAMP),
            max_timestamp: be_i64(bytes, POS_MAX_TIMESTAMP),
            producer_id: be_i64(bytes, POS_PRODUCER_ID),
            producer_epoch: be_i16(bytes, POS_PRODUCER_EPOCH),
            base_sequence: be_i32(bytes, POS_BASE_SEQUENCE),
            record_count: be_i32(bytes, POS_RECORD_COUNT),
        })
    }

    /// Parses and fully validates one whole batch: `bytes` must be exactly the batch.
    /// Validates size against `max_size`, magic, CRC32C and the count/offset-delta relation.
    pub fn validate(bytes: &[u8], max_size: usize) -> Result<Self, BatchError> {
        if bytes.len() > max_size {
            return Err(BatchError::TooLarge { size: bytes.len(), limit: max_size });
        }
        let header = Self::parse(bytes)?;
        if header.size() != bytes.len() {
            return Err(BatchError::Truncated { have: bytes.len(), need: header.size() });
        }
        let computed = crc32c::crc32c(&bytes[CRC_COVERED_FROM..]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch { stored: header.crc, computed });
        }
        Compression::from_attributes(header.attributes)?;
        // A batch holds at least one record, and a record count above the offset span is a lie
        // (compaction may leave fewer records than the span, never more).
        if header.record_count < 1
            || header.last_offset_delta < 0
            || header.record_count > header.last_offset_delta.saturating_add(1)
        {
            return Err(BatchError::BadRecordCount {
                count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        Ok(header)
    }

    /// Total bytes this batch occupies.
    pub fn size(&self) -> usize {
        self.batch_length as usize + LENGTH_FIELD_END
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offsets this batch spans (`lastOffsetDelta + 1`).
    pub fn offset_count(&self) -> u32 {
        self.last_offset_delta as u32 + 1
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & 0x08 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }

    /// Rewrites the base offset in place. Not covered by the CRC, so the batch stays valid.
    pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
        batch[POS_BASE_OFFSET..POS_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    }

    /// Rewrites the partition leader epoch in place. Not covered by the CRC.
    pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
        batch[POS_LEADER_EPOCH..POS_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
    }

    /// Rewrites the producer id, epoch and base sequence in place and recomputes the CRC (they
    /// are covered by it): an idempotent producer that takes a new producer id re-stamps the
    /// batches it has not yet had acknowledged, as Kafka's client does after an epoch bump.
    pub fn set_producer_state(
        batch: &mut [u8],
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) {
        assert!(batch.len() >= BATCH_HEADER_LEN, "batch shorter than its header");
        batch[POS_PRODUCER_ID..POS_PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
        batch[POS_PRODUCER_EPOCH..POS_PRODUCER_EPOCH + 2]
            .copy_from_slice(&producer_epoch.to_be_bytes());
        batch[POS_BASE_SEQUENCE..POS_BASE_SEQUENCE + 4]
            .copy_from_slice(&base_sequence.to_be_bytes());
        Self::update_crc(batch);
    }

    /// Recomputes and stores the CRC32C (for builders and for LogAppendTime rewrites).
    pub fn update_crc(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
        batch[POS_CRC..POS_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }

    /// Writes this header's fields into the first 61 bytes of `out` (CRC field as stored here).
    pub fn write_to(&self, out: &mut [u8]) {
        assert!(out.len() >= BATCH_HEADER_LEN, "header buffer too small");
        out[POS_BASE_OFFSET..POS_BASE_OFFSET + 8].copy_from_slice(&self.base_offset.to_be_bytes());
        out[POS_LENGTH..POS_LENGTH + 4].copy_from_slice(&self.batch_length.to_be_bytes());
        out[POS_LEADER_EPOCH..POS_LEADER_EPOCH + 4]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out[POS_MAGIC] = self.magic as u8;
        out[POS_CRC..POS_CRC + 4].copy_from_slice(&self.crc.to_be_bytes());
        out[POS_ATTRIBUTES..POS_ATTRIBUTES + 2].copy_from_slice(&self.attributes.to_be_bytes());
        out[POS_LAST_OFFSET_DELTA..POS_LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&self.last_offset_delta.to_be_bytes());
        out[POS_BASE_TIMESTAMP..POS_BASE_TIMESTAMP + 8]
            .copy_from_slice(&self.base_timestamp.to_be_bytes());
        out[POS_MAX_TIMESTAMP..POS_MAX_TIMESTAMP + 8]
            .copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[POS_PRODUCER_ID..POS_PRODUCER_ID + 8].copy_from_slice(&self.producer_id.to_be_bytes());
        out[POS_PRODUCER_EPOCH..POS_PRODUCER_EPOCH + 2]
            .copy_from_slice(&self.producer_epoch.to_be_bytes());
        out[POS_BASE_SEQUENCE..POS_BASE_SEQUENCE + 4]
            .copy_from_slice(&self.base_sequence.to_be_bytes());
        out[POS_RECORD_COUNT..POS_RECORD_COUNT + 4]
            .copy_from_slice(&self.record_count.to_be_bytes());
    }
}

/// Walks consecutive batches in a buffer (a produce request's records, a chunk of a segment).
/// Yields `(position, header)` for each batch whose header parses and whose bytes are all present;
/// stops at the first incomplete or malformed batch and reports it through [`BatchIter::stopped`].
/// CRCs are not checked here — callers that need it call [`BatchHeader::validate`] on the slice.
pub struct BatchIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    stopped: Option<BatchError>,
}

impl<'a> BatchIter<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0, stopped: None }
    }

    /// Where iteration stopped: bytes after this position did not form a complete batch.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Why iteration stopped early, if it did (None at a clean end of buffer).
    pub fn stopped(&self) -> Option<&BatchError> {
        self.stopped.as_ref()
    }
}

impl Iterator for BatchIter<'_> {
    type Item = (usize, BatchHeader);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.bytes[self.pos..];
        if rest.is_empty() || self.stopped.is_some() {
            return None;
        }
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.stopped = Some(e);
                return None;
            }
        };
        if header.size() > rest.len() {
            self.stopped = Some(BatchError::Truncated { have: rest.len(), need: header.size() });
            return None;
        }
        let at = self.pos;
        self.pos += header.size();
        Some((at, header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(records: usize) -> Vec<u8> {
        let body = vec![7u8; records * 10];
        let mut b = vec![0u8; BATCH_HEADER_LEN + body.len()];
        let h = BatchHeader {
            base_offset: 0,
            batch_length: (b.len() - LENGTH_FIELD_END) as i32,
            partition_leader_epoch: -1,
            magic: MAGIC_V2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records as i32 - 1,
            base_timestamp: 1000,
            max_timestamp: 1000 + records as i64,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence: NO_SEQUENCE,
            record_count: records as i32,
        };
        h.write_to(&mut b);
        b[BATCH_HEADER_LEN..].copy_from_slice(&body);
        BatchHeader::update_crc(&mut b);
        b
    }

    #[test]
    fn offsets_and_epoch_are_outside_the_crc() {
        let mut b = sample(3);
        BatchHeader::validate(&b, usize::MAX).unwrap();
        BatchHeader::set_base_offset(&mut b, 1234);
        BatchHeader::set_partition_leader_epoch(&mut b, 9);
        let h = BatchHeader::validate(&b, usize::MAX).unwrap();
        assert_eq!((h.base_offset, h.last_offset(), h.partition_leader_epoch), (1234, 1236, 9));
    }

    #[test]
    fn any_flipped_covered_byte_fails_the_crc() {
        let b = sample(2);
        for i in CRC_COVERED_FROM..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(BatchHeader::validate(&c, usize::MAX).is_err(), "flip at {i} not caught");
        }
    }

    #[test]
    fn limits_and_lies_are_rejected() {
        let b = sample(2);
        assert!(matches!(BatchHeader::validate(&b, 10), Err(BatchError::TooLarge { .. })));
        assert!(matches!(
            BatchHeader::validate(&b[..b.len() - 1], usize::MAX),
            Err(BatchError::Truncated { .. })
        ));
        let mut c = b.clone();
        c[57..61].copy_from_slice(&1_000_000i32.to_be_bytes());
        BatchHeader::update_crc(&mut c);
        assert!(matches!(
            BatchHeader::validate(&c, usize::MAX),
            Err(BatchError::BadRecordCount { .. })
        ));
    }

    #[test]
    fn iterator_stops_at_a_torn_tail() {
        let mut buf = sample(1);
        buf.extend(sample(2));
        let whole = buf.len();
        buf.extend(&sample(3)[..30]);
        let mut it = BatchIter::new(&buf);
        assert_eq!(it.by_ref().count(), 2);
        assert_eq!(it.position(), whole);
        assert!(it.stopped().is_some());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = BatchHeader::parse(&bytes);
            let _ = BatchHeader::validate(&bytes, 1 << 20);
            let _ = BatchIter::new(&bytes).count();
        }
    }
}
