//! Bounded decoding of the records inside one v2 batch.
//!
//! Nothing here trusts a count or a length from the input: `record_count` is only compared with
//! what was actually parsed (never used to pre-allocate — `kafka-protocol` 0.18.0 does, which is an
//! allocation bomb), every varint length is checked against the bytes remaining in its record
//! before anything is sliced, and decompression is capped by the caller's `max_uncompressed_bytes`.
//! Records are zero-copy slices of the batch (uncompressed) or of the one decompressed buffer.

use std::ops::Range;

use bytes::Bytes;
use thiserror::Error;

use crate::builder::Header;
use crate::compression::{decompress, CompressionError};
use crate::header::{BatchError, BatchHeader, Compression, TimestampType, BATCH_HEADER_LEN};
use crate::varint::{
    get_short_varuint, get_varint, get_varlong, unzigzag32, unzigzag64, VarintError,
};

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `baseOffset + offsetDelta`.
    pub offset: i64,
    /// `baseTimestamp + timestampDelta`, or the batch's max timestamp under LogAppendTime.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Compression(#[from] CompressionError),
    #[error("record {index}: {field} truncated")]
    Truncated { index: u32, field: &'static str },
    #[error("record {index}: {field} varint is too long")]
    BadVarint { index: u32, field: &'static str },
    #[error("record {index}: invalid {field} length {length}")]
    BadLength { index: u32, field: &'static str, length: i32 },
    #[error("record {index}: {unread} bytes left unread inside the record")]
    RecordLengthMismatch { index: u32, unread: usize },
    #[error("batch declares {declared} records but holds {found}")]
    RecordCountMismatch { declared: i32, found: u32 },
    #[error("{bytes} bytes after the last record")]
    TrailingBytes { bytes: usize },
    #[error("record {index}: offset overflows")]
    Overflow { index: u32 },
}

/// Iterates a batch's records; yields `Err` once on malformed input, then stops.
#[derive(Debug, Clone)]
pub struct RecordIter {
    header: BatchHeader,
    /// The (decompressed) records section.
    body: Bytes,
    pos: usize,
    index: u32,
    done: bool,
}

/// Validates `batch` (size, magic, CRC32C, count) and returns an iterator over its records.
/// `batch` must be exactly one batch. Decompression is capped at `max_uncompressed_bytes`.
pub fn decode_batch(
    batch: Bytes,
    max_uncompressed_bytes: usize,
) -> Result<RecordIter, DecodeError> {
    BatchHeader::validate(&batch, usize::MAX)?;
    decode_batch_unverified_crc(batch, max_uncompressed_bytes)
}

/// Like [`decode_batch`] for a batch whose CRC the caller already checked (or wants to skip):
/// still checks sizes, magic and codec, and decodes with every bound in place.
pub fn decode_batch_unverified_crc(
    batch: Bytes,
    max_uncompressed_bytes: usize,
) -> Result<RecordIter, DecodeError> {
    let header = BatchHeader::parse(&batch)?;
    if header.size() != batch.len() {
        return Err(BatchError::Truncated { have: batch.len(), need: header.size() }.into());
    }
    let compression = header.compression()?;
    let records = batch.slice(BATCH_HEADER_LEN..);
    let body = match compression {
        Compression::None => {
            if records.len() > max_uncompressed_bytes {
                return Err(CompressionError::TooLarge {
                    codec: "none",
                    limit: max_uncompressed_bytes,
                }
                .into());
            }
            records
        }
        codec => Bytes::from(decompress(codec, &records, max_uncompressed_bytes)?),
    };
    Ok(RecordIter { header, body, pos: 0, index: 0, done: false })
}

/// Decodes every record of a batch (see [`decode_batch`]).
pub fn decode_all(batch: Bytes, max_uncompressed_bytes: usize) -> Result<Vec<Record>, DecodeError> {
    decode_batch(batch, max_uncompressed_bytes)?.collect()
}

impl RecordIter {
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The records section after decompression.
    pub fn uncompressed_records(&self) -> &Bytes {
        &self.body
    }

    fn next_record(&mut self) -> Result<Option<Record>, DecodeError> {
        let mut headers = Vec::new();
        let Some(span) = self.parse_next(Some(&mut headers))? else {
            return Ok(None);
        };
        let slice = |r: Range<usize>| self.body.slice(r);
        Ok(Some(Record {
            offset: span.offset,
            timestamp: span.timestamp,
            key: span.key.map(slice),
            value: span.value.map(slice),
            headers,
        }))
    }

    /// The next record as the iterator yields it, but with its key and value left in place:
    /// where they lie in [`Self::uncompressed_records`] (no reference counting a record: what a
    /// reader that keeps the records section needs). Its headers, if any, are pushed onto
    /// `headers`. `None` after the last record or an error, as the iterator.
    pub fn next_span(
        &mut self,
        headers: &mut Vec<Header>,
    ) -> Option<Result<RecordSpan, DecodeError>> {
        self.step(|it| it.parse_next(Some(headers)))
    }

    /// One step of `parse`; the iterator stops after its last record or an error.
    #[inline(always)]
    fn step<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<Option<T>, DecodeError>,
    ) -> Option<Result<T, DecodeError>> {
        if self.done {
            return None;
        }
        let r = parse(self).transpose();
        self.done = !matches!(r, Some(Ok(_)));
        r
    }

    /// The next record's offset, timestamp, whether it has a key and where its value lies,
    /// checked exactly as the iterator checks it but without slicing its fields out (no
    /// reference counting, no allocation): what a validator needs of each record, and a
    /// reader that wants a few bytes of each value. `None` after the last record or an error,
    /// as the iterator.
    pub fn next_meta(&mut self) -> Option<Result<RecordMeta, DecodeError>> {
        let span = self.step(|it| it.parse_next(None))?;
        Some(span.map(|s| RecordMeta {
            offset: s.offset,
            timestamp: s.timestamp,
            has_key: s.key.is_some(),
            value: s.value,
        }))
    }

    /// Parses the next record within every bound and moves past it; its headers go to `headers`
    /// when given (they are checked either way).
    fn parse_next(
        &mut self,
        headers: Option<&mut Vec<Header>>,
    ) -> Result<Option<RecordSpan>, DecodeError> {
        let declared = self.header.record_count;
        if self.index as i64 >= declared as i64 {
            if self.pos != self.body.len() {
                return Err(DecodeError::TrailingBytes { bytes: self.body.len() - self.pos });
            }
            return Ok(None);
        }
        if let Some((span, end)) = self.parse_plain() {
            self.pos = end;
            self.index += 1;
            return Ok(Some(span));
        }
        self.parse_checked(headers)
    }

    /// The next record if it is plain — well formed, no headers — and where it ends; `None`
    /// for anything else, which [`Self::parse_checked`] then parses (or names the error of).
    /// The same checks as that path, without building an error for each field: a record it
    /// accepts, the checked path accepts with the same span (a unit test compares the two).
    #[inline]
    fn parse_plain(&self) -> Option<(RecordSpan, usize)> {
        let body: &[u8] = &self.body;
        let mut p = self.pos;
        let length = usize::try_from(plain_varint(body, &mut p)?).ok()?;
        if length > body.len() - p {
            return None;
        }
        let end = p + length;
        let rec = &body[..end];
        if p >= end {
            return None;
        }
        p += 1; // attributes, unused
        let ts_delta = match get_short_varuint(rec, &mut p) {
            Some(u) => unzigzag64(u),
            None => get_varlong(rec, &mut p).ok()?,
        };
        let offset_delta = plain_varint(rec, &mut p)?;
        let key = plain_nullable(rec, &mut p)?;
        let value = plain_nullable(rec, &mut p)?;
        if plain_varint(rec, &mut p)? != 0 || p != end {
            return None;
        }
        let offset = self.header.base_offset.checked_add(offset_delta as i64)?;
        let timestamp = match self.header.timestamp_type() {
            TimestampType::LogAppendTime => self.header.max_timestamp,
            TimestampType::CreateTime => self.header.base_timestamp.wrapping_add(ts_delta),
        };
        Some((RecordSpan { offset, timestamp, key, value }, end))
    }

    /// Parses the next record (one is due) with every check named: the path of records with
    /// headers and of malformed input. Kept out of line so that the plain path's caller saves
    /// and restores only the registers the plain path needs.
    #[cold]
    #[inline(never)]
    fn parse_checked(
        &mut self,
        mut headers: Option<&mut Vec<Header>>,
    ) -> Result<Option<RecordSpan>, DecodeError> {
        let declared = self.header.record_count;
        let index = self.index;
        if self.pos == self.body.len() {
            return Err(DecodeError::RecordCountMismatch { declared, found: index });
        }
        let mut pos = self.pos;
        let body: &[u8] = &self.body;
        let length = varint(body, &mut pos, index, "record length")?;
        let length = usize::try_from(length)
            .ok()
            .filter(|&l| l <= body.len() - pos)
            .ok_or(DecodeError::BadLength { index, field: "record", length })?;
        let end = pos + length;
        // Positions in `rec` are positions in the records section.
        let rec = &body[..end];
        let mut p = pos;
        if p >= end {
            return Err(DecodeError::Truncated { index, field: "attributes" });
        }
        p += 1; // attributes, unused
        let ts_delta =
            get_varlong(rec, &mut p).map_err(|e| varint_err(e, index, "timestamp delta"))?;
        let offset_delta = varint(rec, &mut p, index, "offset delta")?;
        let key = nullable(rec, &mut p, index, "key")?;
        let value = nullable(rec, &mut p, index, "value")?;
        let header_count = varint(rec, &mut p, index, "header count")?;
        // Each header takes at least two bytes; a count beyond that is a lie, caught before looping.
        if header_count < 0 || header_count as usize > (end - p) / 2 {
            return Err(DecodeError::BadLength {
                index,
                field: "header count",
                length: header_count,
            });
        }
        if let Some(out) = headers.as_deref_mut() {
            out.reserve(header_count as usize);
        }
        for _ in 0..header_count {
            let key = nullable(rec, &mut p, index, "header key")?
                .ok_or(DecodeError::BadLength { index, field: "header key", length: -1 })?;
            let value = nullable(rec, &mut p, index, "header value")?;
            if let Some(out) = headers.as_deref_mut() {
                let value = value.map(|r| self.body.slice(r));
                out.push(Header { key: self.body.slice(key), value });
            }
        }
        if p != end {
            return Err(DecodeError::RecordLengthMismatch { index, unread: end - p });
        }
        let offset = self
            .header
            .base_offset
            .checked_add(offset_delta as i64)
            .ok_or(DecodeError::Overflow { index })?;
        let timestamp = match self.header.timestamp_type() {
            TimestampType::LogAppendTime => self.header.max_timestamp,
            // Java long arithmetic: the builder's delta wrapped, so this wraps back exactly.
            TimestampType::CreateTime => self.header.base_timestamp.wrapping_add(ts_delta),
        };
        self.pos = end;
        self.index += 1;
        Ok(Some(RecordSpan { offset, timestamp, key, value }))
    }
}

/// A varint as [`get_varint`] reads it, a short one inline; `None` where it fails.
#[inline(always)]
fn plain_varint(b: &[u8], p: &mut usize) -> Option<i32> {
    match get_short_varuint(b, p) {
        Some(u) => Some(unzigzag32(u as u32)),
        None => get_varint(b, p).ok(),
    }
}

/// As [`nullable`], `None` where it fails.
#[inline(always)]
fn plain_nullable(rec: &[u8], p: &mut usize) -> Option<Option<Range<usize>>> {
    let len = plain_varint(rec, p)?;
    if len == -1 {
        return Some(None);
    }
    let n = usize::try_from(len).ok().filter(|&n| n <= rec.len() - *p)?;
    let range = *p..*p + n;
    *p += n;
    Some(Some(range))
}

/// One parsed record ([`RecordIter::next_span`]): its offset and timestamp, and where its key and
/// value lie in the records section ([`RecordIter::uncompressed_records`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpan {
    /// As [`Record::offset`].
    pub offset: i64,
    /// As [`Record::timestamp`].
    pub timestamp: i64,
    /// `None`: a null key.
    pub key: Option<Range<usize>>,
    /// `None`: a null value.
    pub value: Option<Range<usize>>,
}

/// What [`RecordIter::next_meta`] tells of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// `baseOffset + offsetDelta`.
    pub offset: i64,
    /// As [`Record::timestamp`].
    pub timestamp: i64,
    pub has_key: bool,
    /// The value's bytes within [`RecordIter::uncompressed_records`] (`None`: a null value).
    pub value: Option<Range<usize>>,
}

/// Reads a varint length and skips that many bytes (`-1` = null) within `rec`; returns their
/// range.
fn nullable(
    rec: &[u8],
    p: &mut usize,
    index: u32,
    field: &'static str,
) -> Result<Option<Range<usize>>, DecodeError> {
    let len = varint(rec, p, index, field)?;
    if len == -1 {
        return Ok(None);
    }
    let n = usize::try_from(len)
        .ok()
        .filter(|&n| n <= rec.len() - *p)
        .ok_or(DecodeError::BadLength { index, field, length: len })?;
    let range = *p..*p + n;
    *p += n;
    Ok(Some(range))
}

fn varint(b: &[u8], p: &mut usize, index: u32, field: &'static str) -> Result<i32, DecodeError> {
    get_varint(b, p).map_err(|e| varint_err(e, index, field))
}

fn varint_err(e: VarintError, index: u32, field: &'static str) -> DecodeError {
    match e {
        VarintError::Truncated => DecodeError::Truncated { index, field },
        VarintError::TooLong => DecodeError::BadVarint { index, field },
    }
}

impl Iterator for RecordIter {
    type Item = Result<Record, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(Self::next_record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::BatchBuilder;
    use proptest::prelude::*;

    /// (timestamp delta, key, value length, with a header).
    type Rec = (i64, Option<Vec<u8>>, usize, bool);

    fn batch_of(records: &[Rec]) -> Bytes {
        let mut b = BatchBuilder::new(bytes::BytesMut::new(), Compression::None, usize::MAX);
        for (ts, key, value_len, header) in records {
            let headers = if *header { vec![Header::new(&b"h"[..], None)] } else { vec![] };
            let value = vec![7u8; *value_len];
            b.append(1_000 + ts, key.as_deref(), Some(&value), &headers).expect("appends");
        }
        b.finish().expect("a batch").freeze()
    }

    /// Walks `it` record by record: wherever the plain path takes a record, the checked path
    /// takes it too, with the same span and end. Returns how many records the plain path took.
    fn compare_paths(mut it: RecordIter) -> usize {
        let mut plain_taken = 0;
        while (it.index as i64) < i64::from(it.header.record_count) {
            let plain = it.parse_plain();
            let mut checked = it.clone();
            let result = checked.parse_checked(None);
            if let Some((span, end)) = plain {
                assert_eq!(result, Ok(Some(span)), "record {}", it.index);
                assert_eq!(checked.pos, end);
                plain_taken += 1;
            }
            match result {
                Ok(Some(_)) => it = checked,
                _ => break,
            }
        }
        plain_taken
    }

    /// A record whose length claims more than its fields (then zeros: a header count of 0 and
    /// one byte nobody reads) is the checked path's error, so the plain path must not take it.
    #[test]
    fn a_record_longer_than_its_fields_is_not_plain() {
        let batch = batch_of(&[(0, None, 3, false)]);
        let it = decode_batch(batch, usize::MAX).expect("a valid batch");
        let mut body = it.body.to_vec();
        assert!(body[0] < 0x3f, "a one-byte length");
        body[0] += 2; // zig-zag: one more byte
        body.push(0);
        let mut stretched = it.clone();
        stretched.body = Bytes::from(body);
        assert!(stretched.parse_plain().is_none());
        assert_eq!(
            stretched.parse_checked(None).err(),
            Some(DecodeError::RecordLengthMismatch { index: 0, unread: 1 })
        );
        assert_eq!(compare_paths(it), 1);
    }

    fn rec() -> impl Strategy<Value = Rec> {
        let ts = prop_oneof![4 => -70i64..70, 1 => any::<i64>()];
        let key = proptest::option::weighted(0.3, proptest::collection::vec(any::<u8>(), 0..80));
        (ts, key, 0usize..200, proptest::bool::weighted(0.2))
    }

    proptest! {
        /// The plain path agrees with the checked one on valid batches (where it must take every
        /// record without headers) and on damaged ones.
        #[test]
        fn plain_path_takes_what_the_checked_path_takes(
            records in proptest::collection::vec(rec(), 1..12),
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in proptest::option::weighted(0.2, any::<prop::sample::Index>()),
        ) {
            let batch = batch_of(&records);
            let it = decode_batch(batch.clone(), usize::MAX).expect("a valid batch");
            let plain = records.iter().filter(|r| !r.3).count();
            prop_assert_eq!(compare_paths(it.clone()), plain, "every record without headers");
            let mut body = it.body.to_vec();
            for (at, byte) in &damage {
                let i = at.index(body.len());
                body[i] = *byte;
            }
            if let Some(at) = cut {
                body.truncate(at.index(body.len()));
            }
            let mut damaged = it;
            damaged.body = Bytes::from(body);
            compare_paths(damaged);
        }

        /// A span names the bytes the iterator's record holds, on valid and damaged batches:
        /// the same records, the same headers, the same error at the same place.
        #[test]
        fn spans_locate_what_the_iterator_yields(
            records in proptest::collection::vec(rec(), 1..12),
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        ) {
            let it = decode_batch(batch_of(&records), usize::MAX).expect("a valid batch");
            let mut body = it.body.to_vec();
            for (at, byte) in &damage {
                let i = at.index(body.len());
                body[i] = *byte;
            }
            let mut spans = it;
            spans.body = Bytes::from(body);
            let owned: Vec<_> = spans.clone().collect();
            let section = spans.uncompressed_records().clone();
            let mut located = Vec::new();
            let mut headers = Vec::new();
            while let Some(r) = spans.next_span(&mut headers) {
                located.push(r.map(|s| Record {
                    offset: s.offset,
                    timestamp: s.timestamp,
                    key: s.key.map(|k| section.slice(k)),
                    value: s.value.map(|v| section.slice(v)),
                    headers: std::mem::take(&mut headers),
                }));
            }
            if damage.is_empty() {
                prop_assert_eq!(located.len(), records.len());
            }
            prop_assert_eq!(located, owned);
        }
    }
}
