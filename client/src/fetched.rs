//! One partition's records as a fetch brought them: each batch's records section (a view of the
//! response's bytes, or the decompressed buffer) and where each record's key, value and headers
//! lie in it. A reader that looks at records through [`PartitionRecords::iter`] costs no
//! reference-count change and no copy a record; [`crate::Consumer::poll`] turns them into owned
//! [`ConsumerRecord`]s (a topic and two `Bytes` views each), [`crate::Consumer::poll_partitions`]
//! hands them out as they are. The parts of one fetch that successive polls hand out (at most
//! `max.poll.records` each) share what was fetched: no record is copied.
//!
//! Issue 13: the simulator's consumers read a million records per simulated 10 s, and each owned
//! record cost four atomic reference-count changes (its topic and value made and dropped) and 128
//! bytes of fresh memory; a located record is 72 bytes and no atomics.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use kafka_types::Topic;
use records::{decode_batch, decode_batch_unverified_crc, BatchHeader, Header, LENGTH_FIELD_END};

use crate::consumer::ConsumerRecord;

/// Bound on one batch's decompressed records.
pub(crate) const MAX_UNCOMPRESSED_BATCH: usize = 128 * 1024 * 1024;

/// Records [`decode`] reserves room for per batch at most, whatever its header says.
const RESERVE_RECORDS_MAX: usize = 4096;

/// Records of one partition, in offset order, from one fetch (or a part of one: a poll hands out
/// at most `max.poll.records`).
#[derive(Debug, Clone)]
pub struct PartitionRecords {
    /// Shared by every record of a fetch's partition (one allocation).
    pub topic: Topic,
    pub partition: i32,
    /// What the fetch brought, shared by the parts polls hand out.
    fetched: Arc<Fetched>,
    /// The records of `fetched` these are.
    range: Range<usize>,
}

/// One partition's share of a fetch, decoded.
#[derive(Debug, Default)]
struct Fetched {
    /// The batches' records sections the records lie in (a batch none of whose records is
    /// here may still be listed).
    sections: Vec<Bytes>,
    records: Vec<Located>,
}

/// A record's place in its batch's records section. Ranges are `u32`: a section is bounded by
/// the response frame (`fetch.max.bytes`, an `i32`, plus slack) or by
/// [`MAX_UNCOMPRESSED_BATCH`].
#[derive(Debug, Clone)]
struct Located {
    offset: i64,
    timestamp: i64,
    section: u32,
    key: Option<Range<u32>>,
    value: Option<Range<u32>>,
    headers: Vec<Header>,
}

/// A record of [`PartitionRecords`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchedRecord<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header],
}

impl PartitionRecords {
    pub(crate) fn empty(topic: Topic, partition: i32) -> Self {
        PartitionRecords::new(topic, partition, Fetched::default())
    }

    fn new(topic: Topic, partition: i32, fetched: Fetched) -> Self {
        let range = 0..fetched.records.len();
        PartitionRecords { topic, partition, fetched: Arc::new(fetched), range }
    }

    pub fn len(&self) -> usize {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    fn records(&self) -> &[Located] {
        &self.fetched.records[self.range.clone()]
    }

    /// The records in offset order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = FetchedRecord<'_>> + DoubleEndedIterator {
        let sections = &self.fetched.sections;
        self.records().iter().map(move |r| {
            let section = &sections[r.section as usize];
            let field = |f: &Option<Range<u32>>| widen(f).map(|f| &section[f]);
            FetchedRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                key: field(&r.key),
                value: field(&r.value),
                headers: &r.headers,
            }
        })
    }

    /// Owned records, each with its topic and views of its key and value.
    pub fn into_records(self) -> impl Iterator<Item = ConsumerRecord> {
        let PartitionRecords { topic, partition, fetched, range } = self;
        range.map(move |i| {
            let r = &fetched.records[i];
            let section = &fetched.sections[r.section as usize];
            let field = |f: &Option<Range<u32>>| widen(f).map(|f| section.slice(f));
            ConsumerRecord {
                topic: topic.clone(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: field(&r.key),
                value: field(&r.value),
                headers: r.headers.clone(),
            }
        })
    }

    /// The offset of record `i` (in offset order).
    pub(crate) fn offset_at(&self, i: usize) -> i64 {
        self.records()[i].offset
    }

    /// Records `range` of these (in offset order), sharing what was fetched.
    pub(crate) fn part(&self, range: Range<usize>) -> PartitionRecords {
        assert!(range.end <= self.len(), "a part of the records there are");
        let at = self.range.start;
        PartitionRecords {
            topic: self.topic.clone(),
            partition: self.partition,
            fetched: Arc::clone(&self.fetched),
            range: at + range.start..at + range.end,
        }
    }

    /// The bytes of every key and value (what decompression produced, for the CPU model).
    pub(crate) fn field_bytes(&self) -> u64 {
        let len = |f: &Option<Range<u32>>| widen(f).map_or(0, |f| f.len() as u64);
        self.records().iter().map(|r| len(&r.key) + len(&r.value)).sum()
    }
}

/// What [`decode`] read of one partition's record data.
#[derive(Debug)]
pub struct Decoded {
    pub records: PartitionRecords,
    /// The offset after the last whole batch read.
    pub next_offset: i64,
    /// Why decoding stopped early, if it did.
    pub corrupt: Option<String>,
}

/// Decodes one partition's record data: whole batches only (a partial trailing batch is dropped),
/// records from `fetch_offset` on, control batches skipped.
pub fn decode(
    topic: &Topic,
    partition: i32,
    data: Bytes,
    fetch_offset: i64,
    check_crcs: bool,
) -> Decoded {
    let mut out = Fetched::default();
    let mut next = fetch_offset;
    let mut pos = 0usize;
    let stop = |out, next, why: String| Decoded {
        records: PartitionRecords::new(topic.clone(), partition, out),
        next_offset: next,
        corrupt: Some(why),
    };
    while data.len() - pos >= LENGTH_FIELD_END {
        let Some(size) = BatchHeader::peek_size(&data[pos..]) else {
            return stop(out, next, "negative batch length".into());
        };
        if size > data.len() - pos {
            break; // partial trailing batch
        }
        let batch = data.slice(pos..pos + size);
        pos += size;
        let header = match BatchHeader::parse(&batch) {
            Ok(h) => h,
            Err(e) => return stop(out, next, e.to_string()),
        };
        if header.last_offset() < next {
            continue;
        }
        if header.is_control() {
            next = header.last_offset() + 1;
            continue;
        }
        let iter = if check_crcs {
            decode_batch(batch, MAX_UNCOMPRESSED_BATCH)
        } else {
            decode_batch_unverified_crc(batch, MAX_UNCOMPRESSED_BATCH)
        };
        let mut iter = match iter {
            Ok(i) => i,
            Err(e) => return stop(out, next, e.to_string()),
        };
        let section =
            u32::try_from(out.sections.len()).expect("fewer batches than bytes in a frame");
        out.sections.push(iter.uncompressed_records().clone());
        // Room for the batch's records up front (bounded: the count is the broker's word).
        let count = usize::try_from(header.record_count).unwrap_or(0);
        out.records.reserve(count.min(RESERVE_RECORDS_MAX));
        let mut headers = Vec::new();
        while let Some(r) = iter.next_span(&mut headers) {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    let next = out.records.last().map_or(next, |l| (l.offset + 1).max(next));
                    return stop(out, next, e.to_string());
                }
            };
            let headers = std::mem::take(&mut headers);
            if r.offset < next {
                continue;
            }
            out.records.push(Located {
                offset: r.offset,
                timestamp: r.timestamp,
                section,
                key: r.key.map(narrow),
                value: r.value.map(narrow),
                headers,
            });
        }
        next = header.last_offset() + 1;
    }
    let records = PartitionRecords::new(topic.clone(), partition, out);
    Decoded { records, next_offset: next, corrupt: None }
}

/// A field's range as [`narrow`] kept it.
fn widen(f: &Option<Range<u32>>) -> Option<Range<usize>> {
    f.as_ref().map(|f| f.start as usize..f.end as usize)
}

/// A field's range in a section, which is bounded below 4 GiB (see [`Located`]).
fn narrow(r: Range<usize>) -> Range<u32> {
    let at = |i: usize| u32::try_from(i).expect("a records section is bounded below 4 GiB");
    at(r.start)..at(r.end)
}
