//! Encoding magic-v2 record batches.
//!
//! A record inside a v2 batch (Kafka's `DefaultRecord`), all varints zig-zag:
//!
//! ```text
//! length            varint   bytes after this field
//! attributes        int8     unused, 0
//! timestampDelta    varlong  timestamp - batch baseTimestamp
//! offsetDelta       varint   index within the batch
//! keyLength         varint   -1 = null
//! key               bytes
//! valueLength       varint   -1 = null
//! value             bytes
//! headerCount       varint
//! headers           headerKeyLength varint, headerKey (UTF-8), headerValueLength varint (-1 = null), headerValue
//! ```
//!
//! [`BatchBuilder`] writes records uncompressed into a caller-provided buffer right after a
//! 61-byte header placeholder; [`BatchBuilder::finish`] compresses the records section (if asked),
//! fills in the header and the CRC32C, and hands the buffer back, so a producer's buffer pool can
//! recycle it. Producer id, epoch and base sequence can be set at any time before `finish`, which
//! is when an idempotent producer knows them (at drain time).

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::compression::{compress_with_level, CompressionError};
use crate::header::{BatchHeader, Compression, BATCH_HEADER_LEN, LENGTH_FIELD_END, MAGIC_V2};
use crate::varint::{varint_size, varlong_size, zigzag32, zigzag64};
use crate::{NO_PRODUCER_ID, NO_SEQUENCE};

/// A record header: a UTF-8 key (kept as bytes) and a nullable value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl Header {
    pub fn new(key: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        Self { key: key.into(), value }
    }
}

/// A buffer a batch can be built in: `BytesMut` or `Vec<u8>`.
pub trait BatchBuf: BufMut + AsRef<[u8]> + AsMut<[u8]> {
    fn truncate_to(&mut self, len: usize);
}

impl BatchBuf for Vec<u8> {
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
}

impl BatchBuf for BytesMut {
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BuildError {
    #[error("a batch needs at least one record")]
    Empty,
    #[error("{what} of {len} bytes does not fit a record")]
    FieldTooLarge { what: &'static str, len: usize },
    #[error("batch of {size} bytes exceeds the int32 batch length")]
    BatchTooLarge { size: usize },
    #[error("too many records in one batch")]
    TooManyRecords,
    #[error(transparent)]
    Compression(#[from] CompressionError),
}

/// Upper bound on a varint-prefixed optional byte field's size.
#[inline]
fn nullable_len(len: Option<usize>) -> usize {
    match len {
        None => 1,
        Some(n) => varint_size(i32::try_from(n).unwrap_or(i32::MAX)) + n,
    }
}

#[inline]
fn headers_size(headers: &[Header]) -> usize {
    let count = i32::try_from(headers.len()).unwrap_or(i32::MAX);
    let mut size = varint_size(count);
    for h in headers {
        size += nullable_len(Some(h.key.len())) + nullable_len(h.value.as_ref().map(|v| v.len()));
    }
    size
}

/// Exact size of a record's body (what its length varint counts).
fn record_body_size(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<usize>,
    value: Option<usize>,
    headers: &[Header],
) -> usize {
    1 + varlong_size(timestamp_delta)
        + varint_size(offset_delta)
        + nullable_len(key)
        + nullable_len(value)
        + headers_size(headers)
}

/// An upper bound on one record's encoded size (length prefix included), whatever its timestamp
/// delta and offset delta (Kafka's `DefaultRecord.sizeInBytes` upper bound).
#[inline]
pub fn record_size_upper_bound(
    key: Option<usize>,
    value: Option<usize>,
    headers: &[Header],
) -> usize {
    let body = 1 + 10 + 5 + nullable_len(key) + nullable_len(value) + headers_size(headers);
    5 + body
}

/// An upper bound on a batch holding just this record (Kafka's `estimateSizeInBytesUpperBound`):
/// what a producer must allocate for a record, and compares with `max.request.size`.
#[inline]
pub fn batch_size_upper_bound(
    key: Option<usize>,
    value: Option<usize>,
    headers: &[Header],
) -> usize {
    BATCH_HEADER_LEN + record_size_upper_bound(key, value, headers)
}

/// Builds one v2 batch in a caller-provided buffer. See the module docs.
#[derive(Debug)]
pub struct BatchBuilder<B: BatchBuf = BytesMut> {
    buf: B,
    /// Where this batch starts in `buf` (a buffer may already hold other batches).
    start: usize,
    compression: Compression,
    compression_level: Option<i32>,
    write_limit: usize,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
}

impl<B: BatchBuf> BatchBuilder<B> {
    /// Starts a batch at the end of `buf`. `write_limit` is the size (`batch.size`) at which
    /// [`has_room_for`](Self::has_room_for) starts saying no; the first record always fits.
    pub fn new(mut buf: B, compression: Compression, write_limit: usize) -> Self {
        let start = buf.as_ref().len();
        buf.put_bytes(0, BATCH_HEADER_LEN);
        Self {
            buf,
            start,
            compression,
            compression_level: None,
            write_limit,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            base_timestamp: 0,
            max_timestamp: -1,
            record_count: 0,
        }
    }

    /// gzip (0-9) / zstd (1-22) level; `None` is Kafka's default.
    pub fn set_compression_level(&mut self, level: Option<i32>) {
        self.compression_level = level;
    }

    /// Producer id, epoch and the first record's sequence number (idempotence).
    pub fn set_producer_state(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
    }

    pub fn set_transactional(&mut self, transactional: bool) {
        self.transactional = transactional;
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    pub fn record_count(&self) -> u32 {
        self.record_count as u32
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    pub fn write_limit(&self) -> usize {
        self.write_limit
    }

    /// Bytes of uncompressed records written so far.
    pub fn uncompressed_records_size(&self) -> usize {
        self.buf.as_ref().len() - self.start - BATCH_HEADER_LEN
    }

    /// Estimated size of the finished batch: header + records, assuming compression does not grow
    /// them (Kafka's estimate since it dropped the compression-ratio estimator). A compressed batch
    /// is therefore at most about its estimate, so closing at `batch.size` keeps it below.
    pub fn estimated_size(&self) -> usize {
        BATCH_HEADER_LEN + self.uncompressed_records_size()
    }

    /// Whether the estimate reached the write limit.
    pub fn is_full(&self) -> bool {
        self.estimated_size() >= self.write_limit
    }

    /// Whether a record with these fields, appended next at `timestamp`, fits under the write
    /// limit (always true when empty). Its size is exact, with the offset and timestamp deltas it
    /// would get, as in Kafka's `MemoryRecordsBuilder.hasRoomFor`: a batch fills to the byte
    /// Kafka's does, and reaches the limit exactly when Kafka's would ([`is_full`](Self::is_full),
    /// which the sticky partitioner asks).
    pub fn has_room_for(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> bool {
        self.fits(self.next_record_size(timestamp, key, value, headers))
    }

    /// Whether a next record of `size` bytes fits under the write limit (the first always does).
    fn fits(&self, size: usize) -> bool {
        self.record_count == 0 || self.estimated_size() + size <= self.write_limit
    }

    /// The size (length prefix included) of a record with these fields appended next at
    /// `timestamp`, with the offset and timestamp deltas it gets: what
    /// [`has_room_for`](Self::has_room_for) asks and [`append`](Self::append) writes.
    #[inline]
    fn next_record_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> usize {
        let base_timestamp = if self.record_count == 0 { timestamp } else { self.base_timestamp };
        let timestamp_delta = timestamp.wrapping_sub(base_timestamp);
        let body = record_body_size(
            timestamp_delta,
            self.record_count,
            key.map(<[u8]>::len),
            value.map(<[u8]>::len),
            headers,
        );
        varint_size(i32::try_from(body).unwrap_or(i32::MAX)) + body
    }

    /// Appends one record; returns its offset delta.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<i32, BuildError> {
        let appended = self.append_if(timestamp, key, value, headers, false)?;
        Ok(appended.expect("an unconditional append always appends"))
    }

    /// Appends one record if it fits ([`has_room_for`](Self::has_room_for)); returns its
    /// offset delta, or `None` (nothing written) if it does not fit. One size computation where
    /// asking and then appending take two (a producer's append asks for every record).
    pub fn try_append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<Option<i32>, BuildError> {
        self.append_if(timestamp, key, value, headers, true)
    }

    /// [`append`](Self::append), or with `only_if_room` [`try_append`](Self::try_append).
    fn append_if(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
        only_if_room: bool,
    ) -> Result<Option<i32>, BuildError> {
        check_len("key", key.map(<[u8]>::len))?;
        check_len("value", value.map(<[u8]>::len))?;
        if i32::try_from(headers.len()).is_err() {
            return Err(BuildError::FieldTooLarge { what: "header count", len: headers.len() });
        }
        for h in headers {
            check_len("header key", Some(h.key.len()))?;
            check_len("header value", h.value.as_ref().map(Bytes::len))?;
        }
        let offset_delta = self.record_count;
        if offset_delta == i32::MAX {
            return Err(BuildError::TooManyRecords);
        }
        let base_timestamp = if self.record_count == 0 { timestamp } else { self.base_timestamp };
        let timestamp_delta = timestamp.wrapping_sub(base_timestamp);
        let (key_len, value_len) = (nullable_varint(key), nullable_varint(value));
        // The fields before the key are encoded first, on the stack: their size is what they
        // took (no size computed per field), and the record's length goes in front of them.
        let mut g = Gather::new();
        g.u8(0); // attributes
        g.varint(zigzag64(timestamp_delta));
        g.varint(zigzag32(offset_delta).into());
        g.varint(zigzag32(key_len).into());
        let body = g.fields_len()
            + key.map_or(0, <[u8]>::len)
            + nullable_len(value.map(<[u8]>::len))
            + headers_size(headers);
        let body_i32 = i32::try_from(body)
            .map_err(|_| BuildError::FieldTooLarge { what: "record", len: body })?;
        let size = varint_size(body_i32) + body;
        debug_assert_eq!(
            size,
            self.next_record_size(timestamp, key, value, headers),
            "the size has_room_for asks"
        );
        if only_if_room && !self.fits(size) {
            return Ok(None);
        }
        if self.record_count == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        // The rest through the same stack buffer: byte strings that fit are copied in, longer
        // ones written from where they are (a producer's usual record is one `put_slice`).
        let out = &mut self.buf;
        g.length(body_i32);
        if let Some(key) = key {
            g.bytes(out, key);
        }
        g.varint(zigzag32(value_len).into());
        if let Some(value) = value {
            g.bytes(out, value);
        }
        g.varint(zigzag32(headers.len() as i32).into());
        for h in headers {
            g.varint(zigzag32(h.key.len() as i32).into());
            g.bytes(out, &h.key);
            let value = h.value.as_deref();
            g.varint(zigzag32(nullable_varint(value)).into());
            if let Some(value) = value {
                g.bytes(out, value);
            }
        }
        g.flush(out);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.record_count += 1;
        Ok(Some(offset_delta))
    }

    /// Compresses the records, writes header and CRC, and returns the buffer; the batch occupies
    /// `buf[start..]` where `start` was the buffer's length when the builder was created.
    pub fn finish(mut self) -> Result<B, BuildError> {
        if self.record_count == 0 {
            return Err(BuildError::Empty);
        }
        let records_at = self.start + BATCH_HEADER_LEN;
        if self.compression != Compression::None {
            let mut compressed = Vec::with_capacity(self.uncompressed_records_size() / 2 + 64);
            compress_with_level(
                self.compression,
                self.compression_level,
                &self.buf.as_ref()[records_at..],
                &mut compressed,
            )?;
            self.buf.truncate_to(records_at);
            self.buf.put_slice(&compressed);
        }
        let size = self.buf.as_ref().len() - self.start;
        let batch_length = i32::try_from(size - LENGTH_FIELD_END)
            .map_err(|_| BuildError::BatchTooLarge { size })?;
        let mut attributes = self.compression.id();
        if self.transactional {
            attributes |= 0x10;
        }
        let header = BatchHeader {
            base_offset: 0,
            batch_length,
            partition_leader_epoch: -1,
            magic: MAGIC_V2,
            crc: 0,
            attributes,
            last_offset_delta: self.record_count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.record_count,
        };
        let batch = &mut self.buf.as_mut()[self.start..];
        header.write_to(batch);
        BatchHeader::update_crc(batch);
        Ok(self.buf)
    }

    /// Gives up on the batch and returns the buffer, truncated to where the batch started.
    pub fn abandon(mut self) -> B {
        self.buf.truncate_to(self.start);
        self.buf
    }
}

#[inline]
fn check_len(what: &'static str, len: Option<usize>) -> Result<(), BuildError> {
    match len {
        Some(len) if i32::try_from(len).is_err() => Err(BuildError::FieldTooLarge { what, len }),
        _ => Ok(()),
    }
}

/// A nullable field's length as written: `-1` for null.
#[inline]
fn nullable_varint(field: Option<&[u8]>) -> i32 {
    field.map_or(-1, |b| b.len() as i32)
}

/// A record's bytes gathered on the stack ([`BatchBuilder::try_append`]) and written to the
/// batch with as few `put_slice` calls as the byte strings allow: the fields after the record's
/// length first, with room in front for that varint (written by [`Gather::length`] once the
/// fields say what the length is), then the rest, each byte string copied in if it fits and
/// written from where it is if not.
struct Gather {
    buf: [u8; Gather::BYTES],
    /// Where the bytes not yet written start (in front of the fields once the length is in).
    start: usize,
    /// The end of the bytes gathered.
    end: usize,
}

impl Gather {
    /// Room for the longest length varint.
    const LENGTH_ROOM: usize = 5;
    /// Room kept free after a byte string for the varints before the next one: at most three
    /// of 5 bytes (after a key, a null value's length, the header count and the first header
    /// key's length). The fields before the key leave more (at most 26 of the 192 bytes used).
    const VARINT_ROOM: usize = 15;
    /// The length's room, the fields before the key (attributes, a timestamp delta of up to 10
    /// bytes, two 5-byte varints: at most 26 bytes with the room) and a small record's rest: a
    /// value of up to ~150 bytes is gathered with them.
    const BYTES: usize = 192;

    #[inline]
    fn new() -> Self {
        Gather { buf: [0; Self::BYTES], start: Self::LENGTH_ROOM, end: Self::LENGTH_ROOM }
    }

    #[inline(always)]
    fn u8(&mut self, b: u8) {
        self.buf[self.end] = b;
        self.end += 1;
    }

    /// An unsigned varint (zig-zag already applied): there is room ([`Gather::VARINT_ROOM`]).
    #[inline(always)]
    fn varint(&mut self, mut u: u64) {
        while u >= 0x80 {
            self.u8((u as u8 & 0x7f) | 0x80);
            u >>= 7;
        }
        self.u8(u as u8);
    }

    /// Bytes gathered after the length (before [`Gather::length`]).
    #[inline]
    fn fields_len(&self) -> usize {
        self.end - Self::LENGTH_ROOM
    }

    /// Writes the record's length (`body`) in front of the fields gathered so far.
    #[inline(always)]
    fn length(&mut self, body: i32) {
        self.start = Self::LENGTH_ROOM - varint_size(body);
        let mut u = zigzag32(body);
        for b in &mut self.buf[self.start..Self::LENGTH_ROOM - 1] {
            *b = (u as u8 & 0x7f) | 0x80;
            u >>= 7;
        }
        self.buf[Self::LENGTH_ROOM - 1] = u as u8;
    }

    /// A byte string after the length: copied in if it leaves room for the varints after it,
    /// else the gathered bytes and then `b` written to `out`.
    #[inline(always)]
    fn bytes<B: BufMut>(&mut self, out: &mut B, b: &[u8]) {
        if b.len() + Self::VARINT_ROOM <= Self::BYTES - self.end {
            self.buf[self.end..self.end + b.len()].copy_from_slice(b);
            self.end += b.len();
        } else {
            self.flush(out);
            out.put_slice(b);
        }
    }

    /// Writes what is gathered to `out` (after [`Gather::length`]).
    #[inline]
    fn flush<B: BufMut>(&mut self, out: &mut B) {
        out.put_slice(&self.buf[self.start..self.end]);
        (self.start, self.end) = (0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::varint::{put_varint, put_varlong};

    /// A nullable byte string written field by field (what the gathered writes must equal).
    fn put_nullable<B: BufMut>(out: &mut B, field: Option<&[u8]>) {
        match field {
            None => put_varint(out, -1),
            Some(b) => {
                put_varint(out, b.len() as i32);
                out.put_slice(b);
            }
        }
    }

    /// The gathered writes give the bytes of writing each field in turn, for keys, values and
    /// deltas whose varints take every length (1 to 10 bytes) and with or without headers, for
    /// keyless records whose values are gathered with their fields or, longer, not (around the
    /// ~150 bytes that fit), and for headers whose byte strings fill the stack buffer between
    /// varints (each way a gathered record is flushed).
    #[test]
    fn gathered_fields_are_the_fields_written_one_by_one() {
        let lens = [None, Some(0), Some(63), Some(64), Some(8191), Some(8192)];
        let deltas = [0i64, -1, 63, 64, -8193, 1 << 20, 1 << 34, i64::MIN / 2];
        let keyless = [None, Some(0), Some(100), Some(128), Some(129), Some(150), Some(160)];
        // Keys that end within a few bytes of the buffer's room, then a null value: the most
        // varints between two byte strings.
        let near_full = (150..172).flat_map(|n| [(Some(n), None); 4]);
        let pairs = (lens.iter().copied().zip(lens.iter().rev().copied()))
            .chain(keyless.iter().flat_map(|&v| [(None, v), (None, v)]))
            .chain(near_full);
        for (i, (key_len, value_len)) in pairs.enumerate() {
            let key = key_len.map(|n| vec![b'k'; n]);
            let value = value_len.map(|n| vec![b'v'; n]);
            let headers = match i % 4 {
                0 | 2 => vec![],
                1 => vec![Header::new(&b"h"[..], None)],
                _ => (150..185)
                    .step_by(7)
                    .map(|n| Header::new(vec![b'x'; n], (n % 2 == 0).then(|| vec![b'y'; 3].into())))
                    .collect(),
            };
            let mut b = BatchBuilder::new(Vec::new(), Compression::None, usize::MAX);
            let mut want = Vec::new();
            for (offset_delta, &delta) in deltas.iter().enumerate() {
                b.append(1_000 + delta, key.as_deref(), value.as_deref(), &headers).unwrap();
                let body =
                    record_body_size(delta, offset_delta as i32, key_len, value_len, &headers);
                put_varint(&mut want, body as i32);
                want.put_u8(0);
                put_varlong(&mut want, delta);
                put_varint(&mut want, offset_delta as i32);
                put_nullable(&mut want, key.as_deref());
                put_nullable(&mut want, value.as_deref());
                put_varint(&mut want, headers.len() as i32);
                for h in &headers {
                    put_nullable(&mut want, Some(&h.key));
                    put_nullable(&mut want, h.value.as_deref());
                }
            }
            let buf = b.finish().unwrap();
            assert_eq!(buf[BATCH_HEADER_LEN..], want[..], "key {key_len:?} value {value_len:?}");
        }
    }

    #[test]
    fn known_uncompressed_record_bytes() {
        let mut b = BatchBuilder::new(Vec::new(), Compression::None, 1 << 20);
        b.append(1000, Some(b"k"), Some(b"vv"), &[Header::new(&b"h"[..], None)]).unwrap();
        b.append(1005, None, Some(b""), &[]).unwrap();
        let buf = b.finish().unwrap();
        let h = BatchHeader::validate(&buf, usize::MAX).unwrap();
        assert_eq!(
            (h.record_count, h.last_offset_delta, h.base_timestamp, h.max_timestamp),
            (2, 1, 1000, 1005)
        );
        assert_eq!(h.producer_id, -1);
        assert_eq!(h.base_sequence, -1);
        assert_eq!(h.partition_leader_epoch, -1);
        let expected: &[u8] = &[
            // record 0: len 12, attrs, tsΔ 0, offΔ 0, key len 1 "k", value len 2 "vv", 1 header: "h", null
            24, 0, 0, 0, 2, b'k', 4, b'v', b'v', 2, 2, b'h', 1,
            // record 1: len 6, attrs, tsΔ 5, offΔ 1, key null, value len 0, 0 headers
            12, 0, 10, 2, 1, 0, 0,
        ];
        assert_eq!(&buf[BATCH_HEADER_LEN..], expected);
    }

    /// `has_room_for` counts a record's exact size, so a batch fills to the byte and is then
    /// full (Kafka's `hasRoomFor` and `isFull`); an upper bound would stop a record short.
    #[test]
    fn a_batch_fills_to_the_byte_with_exact_record_sizes() {
        // A 20-byte value, no key, timestamp and offset deltas under 64: 26 bytes of body and
        // a 1-byte length.
        let limit = BATCH_HEADER_LEN + 5 * 27;
        let mut b = BatchBuilder::new(BytesMut::new(), Compression::None, limit);
        let mut n = 0;
        while b.has_room_for(7, None, Some(&[1; 20]), &[]) {
            b.append(7, None, Some(&[1; 20]), &[]).unwrap();
            n += 1;
        }
        assert_eq!((n, b.estimated_size()), (5, limit), "five records fill it exactly");
        assert!(b.is_full(), "a batch at its limit is full");
        // A later timestamp makes the next record longer (a 2-byte delta): one byte short.
        let mut b = BatchBuilder::new(BytesMut::new(), Compression::None, limit);
        for _ in 0..4 {
            b.append(7, None, Some(&[1; 20]), &[]).unwrap();
        }
        assert!(b.has_room_for(7, None, Some(&[1; 20]), &[]));
        assert!(!b.has_room_for(7 + 64, None, Some(&[1; 20]), &[]), "tsΔ 64 is a 2-byte varint");
        assert!(!b.is_full());
    }

    /// `try_append` is `has_room_for` then `append` in one step: it fills the same batch to the
    /// same byte, says `None` exactly when `has_room_for` says no, and then writes nothing.
    #[test]
    fn try_append_appends_exactly_what_has_room_for_admits() {
        let limit = BATCH_HEADER_LEN + 5 * 27;
        let (mut asked, mut tried) = (
            BatchBuilder::new(BytesMut::new(), Compression::None, limit),
            BatchBuilder::new(BytesMut::new(), Compression::None, limit),
        );
        // Timestamps rising by 20: the fourth record's delta (60) is one byte, the fifth's (80)
        // two, so the fifth does not fit; an oversized first record always does.
        assert_eq!(tried.try_append(0, None, Some(&[3; 300]), &[]).unwrap(), Some(0));
        tried = BatchBuilder::new(BytesMut::new(), Compression::None, limit);
        let (mut n, mut ts) = (0, 0);
        loop {
            let fits = asked.has_room_for(ts, None, Some(&[1; 20]), &[]);
            let size = tried.estimated_size();
            let got = tried.try_append(ts, None, Some(&[1; 20]), &[]).unwrap();
            assert_eq!(got.is_some(), fits, "record {n}");
            if !fits {
                assert_eq!(tried.estimated_size(), size, "nothing written");
                break;
            }
            assert_eq!(got, Some(n));
            asked.append(ts, None, Some(&[1; 20]), &[]).unwrap();
            (n, ts) = (n + 1, ts + 20);
        }
        assert_eq!(n, 4, "the fifth record's 2-byte delta does not fit");
        assert_eq!(tried.estimated_size(), asked.estimated_size());
        assert_eq!(tried.finish().unwrap(), asked.finish().unwrap(), "the same bytes");
    }

    #[test]
    fn writes_after_existing_bytes_and_respects_limit() {
        let mut buf = BytesMut::new();
        buf.put_slice(b"prefix");
        let mut b = BatchBuilder::new(buf, Compression::None, 200);
        assert!(b.has_room_for(0, None, Some(&[0; 1000]), &[]), "first record always fits");
        let mut n = 0;
        while b.has_room_for(n, None, Some(&[1; 20]), &[]) {
            b.append(n, None, Some(&[1; 20]), &[]).unwrap();
            n += 1;
        }
        assert!(b.estimated_size() <= 200);
        let buf = b.finish().unwrap();
        assert_eq!(&buf[..6], b"prefix");
        let h = BatchHeader::validate(&buf[6..], usize::MAX).unwrap();
        assert_eq!(h.record_count as i64, n);
        assert!(h.size() <= 200);
    }

    #[test]
    fn empty_batch_is_refused() {
        let b = BatchBuilder::new(Vec::new(), Compression::Lz4, 100);
        assert_eq!(b.finish(), Err(BuildError::Empty));
    }
}
