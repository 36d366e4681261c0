//! Log compaction for `cleanup.policy=compact` topics: Kafka's log cleaner.
//!
//! A compacted log keeps, for every key, at least its latest record. The log is split at the
//! cleaner's checkpoint (`cleaner-offset-checkpoint`, the *first dirty offset*) into a **clean**
//! section (compacted before) and a **dirty** one (appended since), and ends with the
//! **uncleanable** part: the active segment, and every segment from the first one holding a record
//! newer than `min.compaction.lag.ms`. A log is cleaned when dirty bytes / (clean + dirty bytes)
//! reaches `min.cleanable.dirty.ratio`, or when its oldest dirty segment is older than
//! `max.compaction.lag.ms`.
//!
//! A clean, as Kafka's `Cleaner.clean`:
//! 1. **Offset map**: key → latest offset over the dirty section, batch by batch, bounded by
//!    `log.cleaner.dedupe.buffer.size` (keys are stored whole, each costing its length plus
//!    [`MAP_ENTRY_OVERHEAD_BYTES`]). If the map fills, the clean covers only the batches mapped;
//!    the map's end (`end_offset`) becomes the new checkpoint.
//! 2. **Rewrite** every segment from the log start up to the one holding `end_offset`, in groups
//!    of consecutive segments whose total size fits `segment.bytes` (and index entries fit
//!    `segment.index.bytes`), so small cleaned segments merge. A record below `end_offset` is kept
//!    iff it has a key, and its offset ≥ the map's offset for its key (or its key is not in the
//!    map), and it is not a tombstone whose delete horizon has passed. Batches at or after
//!    `end_offset` are copied as they are.
//! 3. **Swap** each group's output in (`Log::install_cleaned`: `.cleaned` → `.swap` → `.log`, with
//!    Kafka's recovery rules at open), oldest group first — so an expired tombstone is never gone
//!    while an older value of its key is still there, even after a crash between two groups.
//!
//! Batches keep their base offset, offset span (`lastOffsetDelta`, as Kafka's `overrideLastOffset`),
//! leader epoch, producer id/epoch, base sequence, attributes and codec: a compressed batch is
//! decompressed, filtered and recompressed with its own codec (default level). A batch with
//! nothing removed is copied byte for byte. Offsets are preserved, so gaps appear; reads at a
//! removed offset return the next batch.
//!
//! Tombstones (null values) follow KIP-534: when a batch holding a retained tombstone is first
//! cleaned, its *delete horizon* (now + `delete.retention.ms`) is stored in its base timestamp
//! with attribute bit 0x40 (record timestamp deltas are re-based so every record keeps its
//! timestamp); a later clean after the horizon removes its tombstones. A consumer reading from
//! the start therefore sees every tombstone at least `delete.retention.ms` after the first clean.
//!
//! Differences from Kafka, deliberate:
//! - A batch left with no records is dropped. Kafka keeps an empty batch when it is the last one
//!   of its producer (so idempotent-producer state survives compaction); our batch validation
//!   refuses empty batches, and producer state is rebuilt only from the active segment's tail,
//!   which is never cleaned.
//! - Control batches (transaction markers) are kept untouched; Kafka removes them once their
//!   transaction has no data left and the delete horizon passed. There are no transactions yet.
//! - Records without a key are removed (Kafka does the same, counting them as invalid).
//! - Lag checks are per segment: its first batch's timestamp (`max.compaction.lag.ms`) and its
//!   largest timestamp (`min.compaction.lag.ms`).
//!
//! Locking: the cleaner works from a snapshot of the segments ([`CleanJob::plan`], under the
//! caller's lock), reads and writes files without the lock ([`CleanJob::build_offset_map`],
//! [`CleanJob::clean_next_group`]), and takes the lock again only for each group's swap
//! ([`CleanJob::install`]), which checks that the log did not change meanwhile. Sealed segments
//! are immutable, so reads and appends flow during a clean.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use disk_model::{FileRef, Storage};
use records::compression::{compress, decompress};
use records::varint::{
    get_varint, get_varlong, put_varint, put_varlong, varint_size, varlong_size,
};
use records::{BatchHeader, Compression, BATCH_HEADER_LEN};

use super::config::LogConfig;
use super::partition_log::{Log, LogError, SegmentSnapshot};
use super::segment::Segment;

/// Attribute bit 6: the batch's base timestamp is its delete horizon (KIP-534).
pub const DELETE_HORIZON_FLAG: i16 = 0x40;
/// What one offset-map entry costs besides its key bytes (tree node share, offset, allocation).
pub const MAP_ENTRY_OVERHEAD_BYTES: usize = 48;
/// Bytes read per IO while scanning a segment.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Cleaned batches are appended to the new segment in writes of about this size.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// The smallest cap on one batch while cleaning (as recovery: a lowered `max.message.bytes`
/// must not make old batches unreadable).
const BATCH_BYTES_MIN: usize = 16 * 1024 * 1024;
/// Decompressed size allowed per batch (bounds a compression bomb).
const UNCOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Key → latest offset over the dirty section, with a memory bound.
#[derive(Debug, Default)]
pub struct OffsetMap {
    map: BTreeMap<Box<[u8]>, i64>,
    bytes: usize,
    bytes_max: usize,
}

impl OffsetMap {
    pub fn new(bytes_max: usize) -> Self {
        Self { map: BTreeMap::new(), bytes: 0, bytes_max }
    }

    fn cost(key: &[u8]) -> usize {
        key.len() + MAP_ENTRY_OVERHEAD_BYTES
    }

    /// Whether `extra` more bytes of entries fit.
    pub fn fits(&self, extra: usize) -> bool {
        self.bytes.saturating_add(extra) <= self.bytes_max
    }

    /// Records that `key` occurs at `offset` (offsets arrive in increasing order).
    pub fn put(&mut self, key: &[u8], offset: i64) {
        match self.map.get_mut(key) {
            Some(o) => *o = (*o).max(offset),
            None => {
                self.bytes += Self::cost(key);
                self.map.insert(key.into(), offset);
            }
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// One record of a v2 batch, as positions in the (decompressed) records section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The record's bytes, length prefix included: `body[start..end]`.
    pub start: usize,
    pub end: usize,
    /// Where the fields after `timestampDelta` begin (offset delta, key, value, headers).
    pub after_timestamp: usize,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    /// `body[k.0..k.1]`, `None` for a null key.
    pub key: Option<(usize, usize)>,
    pub tombstone: bool,
}

/// Walks the records section of a batch with every length checked; `declared` is the header's
/// record count, which must match.
pub fn parse_records(body: &[u8], declared: i32) -> Result<Vec<RawRecord>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let nullable =
        |p: &mut usize, end: usize, what: &str| -> Result<Option<(usize, usize)>, String> {
            let len = get_varint(&body[..end], p).map_err(|e| format!("{what} length: {e:?}"))?;
            if len == -1 {
                return Ok(None);
            }
            let n = usize::try_from(len)
                .ok()
                .filter(|n| *n <= end - *p)
                .ok_or_else(|| format!("bad {what} length {len}"))?;
            let r = (*p, *p + n);
            *p += n;
            Ok(Some(r))
        };
    while pos < body.len() {
        let start = pos;
        let len = get_varint(body, &mut pos).map_err(|e| format!("record length: {e:?}"))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= body.len() - pos && *l >= 1)
            .ok_or_else(|| format!("bad record length {len}"))?;
        let end = pos + len;
        let mut p = pos + 1; // attributes, unused
        let timestamp_delta =
            get_varlong(&body[..end], &mut p).map_err(|e| format!("timestamp delta: {e:?}"))?;
        let after_timestamp = p;
        let offset_delta =
            get_varint(&body[..end], &mut p).map_err(|e| format!("offset delta: {e:?}"))?;
        let key = nullable(&mut p, end, "key")?;
        let value = nullable(&mut p, end, "value")?;
        out.push(RawRecord {
            start,
            end,
            after_timestamp,
            timestamp_delta,
            offset_delta,
            key,
            tombstone: value.is_none(),
        });
        pos = end;
    }
    if out.len() as i64 != declared as i64 {
        return Err(format!("batch declares {declared} records but holds {}", out.len()));
    }
    Ok(out)
}

/// The records section of `batch`, decompressed.
pub(crate) fn records_body(batch: &Bytes, h: &BatchHeader) -> Result<Bytes, String> {
    let codec = h.compression().map_err(|e| e.to_string())?;
    let raw = batch.slice(BATCH_HEADER_LEN..);
    match codec {
        Compression::None => Ok(raw),
        c => {
            decompress(c, &raw, UNCOMPRESSED_BYTES_MAX).map(Bytes::from).map_err(|e| e.to_string())
        }
    }
}

/// The index of the first record without a key in a whole v2 batch, if any (control batches
/// have keys by construction and are skipped). `Err` if the records do not decode.
pub fn first_keyless_record(batch: &[u8]) -> Result<Option<usize>, String> {
    let h = BatchHeader::parse(batch).map_err(|e| e.to_string())?;
    if h.is_control() || batch.len() < h.size() {
        return Ok(None);
    }
    let batch = Bytes::copy_from_slice(&batch[..h.size()]);
    let body = records_body(&batch, &h)?;
    Ok(parse_records(&body, h.record_count)?.iter().position(|r| r.key.is_none()))
}

/// What filtering did to one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Keep the batch byte for byte.
    Unchanged,
    /// Every record went.
    Dropped,
    /// The batch rebuilt with the records kept.
    Rewritten(Vec<u8>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    pub records_read: u64,
    pub records_kept: u64,
    pub tombstones_removed: u64,
    pub keyless_removed: u64,
}

impl FilterStats {
    fn add(&mut self, o: FilterStats) {
        self.records_read += o.records_read;
        self.records_kept += o.records_kept;
        self.tombstones_removed += o.tombstones_removed;
        self.keyless_removed += o.keyless_removed;
    }
}

/// Filters one whole, CRC-checked batch lying below the clean's end offset: keeps a record iff
/// it has a key, is the latest for it (`latest(key)` is the offset map) and is not a tombstone
/// past its batch's delete horizon; stamps a delete horizon on batches keeping tombstones.
/// Pure: no IO, `now_ms` handed in.
pub fn filter_batch(
    batch: &Bytes,
    latest: &dyn Fn(&[u8]) -> Option<i64>,
    now_ms: i64,
    delete_retention_ms: i64,
) -> Result<(Filtered, FilterStats), String> {
    let h = BatchHeader::parse(batch).map_err(|e| e.to_string())?;
    let mut stats = FilterStats::default();
    if h.is_control() {
        return Ok((Filtered::Unchanged, stats));
    }
    let body = records_body(batch, &h)?;
    let recs = parse_records(&body, h.record_count)?;
    let horizon_set = h.attributes & DELETE_HORIZON_FLAG != 0;
    let horizon_passed = horizon_set && now_ms > h.base_timestamp;
    let mut keep = Vec::with_capacity(recs.len());
    let mut tombstone_kept = false;
    for r in &recs {
        stats.records_read += 1;
        let Some((ks, ke)) = r.key else {
            stats.keyless_removed += 1;
            keep.push(false);
            continue;
        };
        let offset = h.base_offset + r.offset_delta as i64;
        let superseded = latest(&body[ks..ke]).is_some_and(|m| offset < m);
        let expired = r.tombstone && horizon_passed;
        if r.tombstone && !superseded && expired {
            stats.tombstones_removed += 1;
        }
        let k = !superseded && !expired;
        tombstone_kept |= k && r.tombstone;
        stats.records_kept += k as u64;
        keep.push(k);
    }
    let set_horizon = tombstone_kept && !horizon_set;
    if stats.records_kept == stats.records_read && !set_horizon {
        return Ok((Filtered::Unchanged, stats));
    }
    if stats.records_kept == 0 {
        return Ok((Filtered::Dropped, stats));
    }
    let log_append_time = h.attributes & 0x08 != 0;
    let base_ts =
        if set_horizon { now_ms.saturating_add(delete_retention_ms) } else { h.base_timestamp };
    let mut records = Vec::with_capacity(body.len());
    let mut max_ts = i64::MIN;
    for (r, k) in recs.iter().zip(&keep) {
        if !*k {
            continue;
        }
        // Java long arithmetic, as the decoder: the delta may have wrapped.
        let ts = h.base_timestamp.wrapping_add(r.timestamp_delta);
        max_ts = max_ts.max(ts);
        if base_ts == h.base_timestamp {
            records.extend_from_slice(&body[r.start..r.end]);
        } else {
            // Re-base the timestamp delta on the horizon; the rest of the record is unchanged.
            let delta = ts.wrapping_sub(base_ts);
            let rest = &body[r.after_timestamp..r.end];
            let len = 1 + varlong_size(delta) + rest.len();
            let len = i32::try_from(len).map_err(|_| "record too large".to_string())?;
            records.reserve(varint_size(len) + len as usize);
            put_varint(&mut records, len);
            records.put_u8(0);
            put_varlong(&mut records, delta);
            records.extend_from_slice(rest);
        }
    }
    let codec = h.compression().map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    out.resize(BATCH_HEADER_LEN, 0);
    compress(codec, &records, &mut out).map_err(|e| e.to_string())?;
    let mut nh = h;
    nh.batch_length = i32::try_from(out.len() - records::LENGTH_FIELD_END)
        .map_err(|_| "batch too large".to_string())?;
    nh.record_count = stats.records_kept as i32;
    nh.base_timestamp = base_ts;
    if set_horizon {
        nh.attributes |= DELETE_HORIZON_FLAG;
    }
    if !log_append_time {
        nh.max_timestamp = max_ts;
    }
    nh.write_to(&mut out);
    BatchHeader::update_crc(&mut out);
    Ok((Filtered::Rewritten(out), stats))
}

/// Which part of a log is cleanable now, and whether it is due.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleanable {
    pub first_dirty: i64,
    /// First offset the clean must not reach (active segment, the segment holding the recovery
    /// point, min compaction lag).
    pub uncleanable: i64,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    pub dirty_ratio: f64,
    /// `dirty_ratio ≥ min.cleanable.dirty.ratio` or `max.compaction.lag.ms` exceeded.
    pub due: bool,
}

/// Kafka's `LogCleanerManager` arithmetic over the segments (oldest first, active last). Pure.
pub fn cleanable(
    segments: &[SegmentSnapshot],
    log_start: i64,
    checkpoint: Option<i64>,
    recovery_point: i64,
    config: &LogConfig,
    now_ms: i64,
) -> Option<Cleanable> {
    let (active, sealed) = segments.split_last()?;
    // A checkpoint outside the log (retention moved the start, truncation the end) restarts at
    // the log start, as Kafka does.
    let first_dirty = match checkpoint {
        Some(c) if c >= log_start && c <= active.next_offset => c,
        _ => log_start,
    };
    let mut uncleanable = active.base_offset;
    // A cleaned segment may end short of the next one's base, which recovery takes for a lost
    // tail when it lies above the recovery point: clean only segments wholly below it.
    match segments.iter().rev().find(|s| s.base_offset <= recovery_point) {
        Some(s) => uncleanable = uncleanable.min(s.base_offset),
        None => return None,
    }
    if config.min_compaction_lag_ms > 0 {
        let horizon = now_ms.saturating_sub(config.min_compaction_lag_ms);
        if let Some(s) =
            sealed.iter().find(|s| s.next_offset > first_dirty && s.max_timestamp > horizon)
        {
            uncleanable = uncleanable.min(s.base_offset);
        }
    }
    if first_dirty >= uncleanable {
        return None;
    }
    let clean_bytes: u64 =
        sealed.iter().filter(|s| s.next_offset <= first_dirty).map(|s| s.size).sum();
    let dirty: Vec<&SegmentSnapshot> = sealed
        .iter()
        .filter(|s| s.next_offset > first_dirty && s.base_offset < uncleanable && s.size > 0)
        .collect();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
    if dirty_bytes == 0 {
        return None;
    }
    let dirty_ratio = dirty_bytes as f64 / (clean_bytes + dirty_bytes) as f64;
    let lagging = config.max_compaction_lag_ms != i64::MAX
        && dirty.first().is_some_and(|s| {
            now_ms.saturating_sub(s.first_timestamp_ms) > config.max_compaction_lag_ms
        });
    let due = dirty_ratio >= config.min_cleanable_dirty_ratio || lagging;
    Some(Cleanable { first_dirty, uncleanable, clean_bytes, dirty_bytes, dirty_ratio, due })
}

/// Groups consecutive segments (indexes into `segments`) so each group's total size fits
/// `segment_bytes`, its index entries `index_entries_max`, and its offsets a u32 relative
/// offset — Kafka's `groupSegmentsBySize`. Every segment is in exactly one group. Pure.
pub fn group_segments(
    segments: &[SegmentSnapshot],
    segment_bytes: u64,
    index_entries_max: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < segments.len() {
        let first = &segments[i];
        let (mut size, mut entries) = (first.size, first.index_entries);
        let mut j = i + 1;
        while j < segments.len() {
            let s = &segments[j];
            let fits = size + s.size <= segment_bytes
                && entries + s.index_entries <= index_entries_max
                && s.next_offset - 1 - first.base_offset <= i32::MAX as i64;
            if !fits {
                break;
            }
            size += s.size;
            entries += s.index_entries;
            j += 1;
        }
        groups.push(i..j);
        i = j;
    }
    groups
}

/// What a clean did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub first_dirty: i64,
    /// The new first dirty offset (checkpointed).
    pub end_offset: i64,
    pub map_keys: usize,
    pub map_bytes: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub batches_dropped: u64,
    pub batches_rewritten: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    pub records: FilterStats,
}

/// Reads whole batches of one sealed segment file in order, CRC-checked.
struct BatchReader {
    file: FileRef,
    end: u64,
    pos: u64,
    buf: Bytes,
    buf_pos: u64,
    batch_bytes_max: usize,
}

impl BatchReader {
    fn new(file: FileRef, end: u64, batch_bytes_max: usize) -> Self {
        Self { file, end, pos: 0, buf: Bytes::new(), buf_pos: 0, batch_bytes_max }
    }

    fn corrupt(&self, why: String) -> LogError {
        LogError::Corrupt { file: format!("{:?}", self.file), position: self.pos, why }
    }

    async fn next(&mut self) -> Result<Option<(BatchHeader, Bytes)>, LogError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let remaining = (self.end - self.pos) as usize;
        let mut at = (self.pos - self.buf_pos) as usize;
        if self.pos < self.buf_pos || at + BATCH_HEADER_LEN.min(remaining) > self.buf.len() {
            self.buf = self.file.read_at(self.pos, READ_CHUNK_BYTES.min(remaining)).await?;
            self.buf_pos = self.pos;
            at = 0;
        }
        let h = BatchHeader::parse(&self.buf[at..]).map_err(|e| self.corrupt(e.to_string()))?;
        if h.size() > self.batch_bytes_max || h.size() > remaining {
            return Err(self.corrupt(format!(
                "batch of {} bytes (limit {}, {remaining} left)",
                h.size(),
                self.batch_bytes_max
            )));
        }
        if at + h.size() > self.buf.len() {
            self.buf =
                self.file.read_at(self.pos, h.size().max(READ_CHUNK_BYTES).min(remaining)).await?;
            self.buf_pos = self.pos;
            at = 0;
            if self.buf.len() < h.size() {
                return Err(self.corrupt("short read".into()));
            }
        }
        let batch = self.buf.slice(at..at + h.size());
        BatchHeader::validate(&batch, self.batch_bytes_max)
            .map_err(|e| self.corrupt(e.to_string()))?;
        self.pos += h.size() as u64;
        Ok(Some((h, batch)))
    }
}

/// One clean of one log, in steps that need the log's lock only for [`CleanJob::plan`],
/// [`CleanJob::install`] and [`CleanJob::finish`].
#[derive(Debug)]
pub struct CleanJob {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    config: LogConfig,
    generation: u64,
    /// Sealed segments below the uncleanable offset, oldest first.
    segments: Vec<SegmentSnapshot>,
    pub cleanable: Cleanable,
    map: OffsetMap,
    end_offset: i64,
    groups: VecDeque<Vec<SegmentSnapshot>>,
    batch_bytes_max: usize,
    pub stats: CleanStats,
}

impl CleanJob {
    /// Under the lock: a job if `log` is compacted, healthy and due (or `force` and anything is
    /// dirty). Cheap: copies segment metadata and file handles only.
    pub fn plan(log: &Log, now_ms: i64, force: bool) -> Option<CleanJob> {
        let config = log.config();
        if !config.cleanup_policy.compact() || log.is_offline() || log.uncleanable().is_some() {
            return None;
        }
        let all = log.segment_snapshots();
        let c = cleanable(
            &all,
            log.log_start_offset(),
            log.cleaner_checkpoint(),
            log.recovery_point(),
            config,
            now_ms,
        )?;
        if !(c.due || force) {
            return None;
        }
        let segments: Vec<SegmentSnapshot> =
            all.into_iter().filter(|s| s.base_offset < c.uncleanable).collect();
        Some(CleanJob {
            storage: log.storage().clone(),
            dir: log.dir().to_path_buf(),
            config: config.clone(),
            generation: log.generation(),
            stats: CleanStats {
                first_dirty: c.first_dirty,
                segments_before: segments.len(),
                ..CleanStats::default()
            },
            segments,
            map: OffsetMap::default(),
            end_offset: c.first_dirty,
            cleanable: c,
            groups: VecDeque::new(),
            batch_bytes_max: (config.max_message_bytes as usize).max(BATCH_BYTES_MIN),
        })
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Without the lock: builds the offset map over the dirty section, at most
    /// `dedupe_buffer_bytes` of it (but always at least one batch), and plans the groups.
    pub async fn build_offset_map(&mut self, dedupe_buffer_bytes: usize) -> Result<(), LogError> {
        let mut map = OffsetMap::new(dedupe_buffer_bytes);
        let (first_dirty, uncleanable) = (self.cleanable.first_dirty, self.cleanable.uncleanable);
        let mut end = first_dirty;
        let mut keys: Vec<(Bytes, i64)> = Vec::new();
        'segments: for seg in self.segments.iter().filter(|s| s.next_offset > first_dirty) {
            let mut reader = BatchReader::new(seg.log_file.clone(), seg.size, self.batch_bytes_max);
            while let Some((h, batch)) = reader.next().await? {
                if h.last_offset() < first_dirty {
                    continue;
                }
                if h.base_offset >= uncleanable {
                    break 'segments;
                }
                keys.clear();
                if !h.is_control() {
                    let body = records_body(&batch, &h).map_err(|why| reader.corrupt(why))?;
                    for r in
                        parse_records(&body, h.record_count).map_err(|why| reader.corrupt(why))?
                    {
                        if let Some((s, e)) = r.key {
                            keys.push((body.slice(s..e), h.base_offset + r.offset_delta as i64));
                        }
                    }
                }
                let cost: usize = keys.iter().map(|(k, _)| OffsetMap::cost(k)).sum();
                if !map.fits(cost) && end > first_dirty {
                    break 'segments; // full: clean up to here, the rest next time
                }
                for (k, o) in &keys {
                    map.put(k, *o);
                }
                end = h.last_offset() + 1;
            }
        }
        self.end_offset = end;
        self.stats.end_offset = end;
        self.stats.map_keys = map.len();
        self.stats.map_bytes = map.bytes();
        self.map = map;
        // Every segment from the log start up to the one holding the map's end.
        let upto = self.segments.iter().take_while(|s| s.base_offset < end).count();
        let index_entries_max = self.config.index_entries_max();
        let groups = group_segments(
            &self.segments[..upto],
            self.config.segment_bytes as u64,
            index_entries_max,
        );
        self.groups = groups.into_iter().map(|r| self.segments[r].to_vec()).collect();
        Ok(())
    }

    /// Without the lock: writes the next group's cleaned segment to `<base>.*.cleaned` files and
    /// syncs them. `None` when every group is done.
    pub async fn clean_next_group(
        &mut self,
        now_ms: i64,
    ) -> Result<Option<(Vec<SegmentSnapshot>, Segment)>, LogError> {
        let Some(group) = self.groups.pop_front() else {
            return Ok(None);
        };
        let base = group[0].base_offset;
        let r = self.write_group(&group, now_ms).await;
        match r {
            Ok(seg) => Ok(Some((group, seg))),
            Err(e) => {
                self.delete_cleaned(base).await;
                Err(e)
            }
        }
    }

    async fn write_group(
        &mut self,
        group: &[SegmentSnapshot],
        now_ms: i64,
    ) -> Result<Segment, LogError> {
        let base = group[0].base_offset;
        let mut out =
            Segment::create_with_suffix(self.storage.as_ref(), &self.dir, base, ".cleaned", now_ms)
                .await?;
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_CHUNK_BYTES + 1024);
        let mut headers: Vec<(usize, BatchHeader)> = Vec::new();
        let interval = self.config.index_interval_bytes;
        let map = &self.map;
        let latest = |k: &[u8]| map.get(k);
        for seg in group {
            let mut reader = BatchReader::new(seg.log_file.clone(), seg.size, self.batch_bytes_max);
            while let Some((h, batch)) = reader.next().await? {
                self.stats.bytes_read += h.size() as u64;
                let filtered = if h.base_offset >= self.end_offset {
                    Filtered::Unchanged
                } else {
                    let (f, s) =
                        filter_batch(&batch, &latest, now_ms, self.config.delete_retention_ms)
                            .map_err(|why| reader.corrupt(why))?;
                    self.stats.records.add(s);
                    f
                };
                let kept: &[u8] = match &filtered {
                    Filtered::Unchanged => &batch,
                    Filtered::Dropped => {
                        self.stats.batches_dropped += 1;
                        continue;
                    }
                    Filtered::Rewritten(b) => {
                        self.stats.batches_rewritten += 1;
                        b
                    }
                };
                let nh = BatchHeader::parse(kept).map_err(|e| reader.corrupt(e.to_string()))?;
                headers.push((buf.len(), nh));
                buf.extend_from_slice(kept);
                if buf.len() >= WRITE_CHUNK_BYTES {
                    out.append(&buf, &headers, interval).await?;
                    self.stats.bytes_written += buf.len() as u64;
                    buf.clear();
                    headers.clear();
                }
            }
        }
        if !headers.is_empty() {
            out.append(&buf, &headers, interval).await?;
            self.stats.bytes_written += buf.len() as u64;
        }
        out.sync().await?;
        Ok(out)
    }

    async fn delete_cleaned(&self, base: i64) {
        for path in Segment::paths_with_suffix(&self.dir, base, ".cleaned") {
            match self.storage.remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Harmless: the next open deletes `.cleaned` leftovers.
                Err(e) => tracing::warn!(?path, error = %e, "could not delete a cleaned file"),
            }
        }
    }

    /// Under the lock: swaps a group's cleaned segment in. `false` if the log changed since the
    /// plan (the cleaned files are deleted and the job should stop).
    pub async fn install(
        &mut self,
        log: &mut Log,
        old: Vec<SegmentSnapshot>,
        cleaned: Segment,
    ) -> Result<bool, LogError> {
        let base = cleaned.base_offset;
        if !log.install_cleaned(self.generation, &old, cleaned).await? {
            self.delete_cleaned(base).await;
            self.groups.clear();
            return Ok(false);
        }
        self.generation = log.generation();
        Ok(true)
    }

    /// Drops the job, deleting a cleaned segment that will not be installed.
    pub async fn abort(&self, cleaned: Option<Segment>) {
        if let Some(seg) = cleaned {
            let base = seg.base_offset;
            drop(seg);
            self.delete_cleaned(base).await;
        }
    }

    /// Under the lock, after the last install: moves the log's first dirty offset.
    pub fn finish(&mut self, log: &mut Log) {
        log.set_cleaner_checkpoint(self.end_offset);
        self.stats.segments_after = log
            .segment_snapshots()
            .iter()
            .filter(|s| s.base_offset < self.cleanable.uncleanable)
            .count();
    }
}

/// Cleans `log` now if it is compacted and due (or `force` and anything is dirty), holding it
/// throughout (tests, tools, the storage-mode simulator). Returns what was done, or `None`.
/// Rolled segments' pending flush runs first, as the broker's flush task (every
/// `log.flush.scheduler.interval.ms`) runs it long before its cleaner looks (the cleaner cleans
/// only below the recovery point). Corrupt data marks the log uncleanable (logged, not retried
/// until reopen), as Kafka does.
pub async fn clean_log(
    log: &mut Log,
    dedupe_buffer_bytes: usize,
    now_ms: i64,
    force: bool,
) -> Result<Option<CleanStats>, LogError> {
    if log.roll_flush_pending() && !log.is_offline() {
        log.flush_rolled().await?;
    }
    let Some(mut job) = CleanJob::plan(log, now_ms, force) else {
        return Ok(None);
    };
    let r = run_job(&mut job, log, dedupe_buffer_bytes, now_ms).await;
    match r {
        Ok(true) => {
            job.finish(log);
            Ok(Some(job.stats))
        }
        Ok(false) => Ok(None),
        Err(e) => {
            if let LogError::Corrupt { .. } = &e {
                tracing::error!(dir = ?log.dir(), error = %e, "log cleaner: corrupt data, log marked uncleanable");
                log.mark_uncleanable(e.to_string());
            }
            Err(e)
        }
    }
}

async fn run_job(
    job: &mut CleanJob,
    log: &mut Log,
    dedupe_buffer_bytes: usize,
    now_ms: i64,
) -> Result<bool, LogError> {
    job.build_offset_map(dedupe_buffer_bytes).await?;
    while let Some((old, seg)) = job.clean_next_group(now_ms).await? {
        if !job.install(log, old, seg).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(base: i64, next: i64, size: u64, max_ts: i64) -> SegmentSnapshot {
        #[derive(Debug)]
        struct NoFile;
        #[async_trait::async_trait]
        impl disk_model::StorageFile for NoFile {
            fn len(&self) -> u64 {
                0
            }
            async fn append(&self, _: &[u8]) -> io::Result<u64> {
                unreachable!()
            }
            async fn read_at(&self, _: u64, _: usize) -> io::Result<Bytes> {
                unreachable!()
            }
            async fn sync(&self) -> io::Result<()> {
                Ok(())
            }
            async fn truncate(&self, _: u64) -> io::Result<()> {
                Ok(())
            }
        }
        SegmentSnapshot {
            base_offset: base,
            next_offset: next,
            size,
            max_timestamp: max_ts,
            first_timestamp_ms: max_ts,
            index_entries: 1,
            log_file: Arc::new(NoFile),
        }
    }

    /// Three sealed segments of 10 offsets (100 B, timestamps 1-3 s) and an active one.
    fn four_segments() -> Vec<SegmentSnapshot> {
        vec![
            snap(0, 10, 100, 1_000),
            snap(10, 20, 100, 2_000),
            snap(20, 30, 100, 3_000),
            snap(30, 31, 10, 4_000),
        ]
    }

    #[test]
    fn dirty_ratio_and_lags() {
        let segs = four_segments();
        let mut c = LogConfig {
            cleanup_policy: crate::log::CleanupPolicy::Compact,
            ..LogConfig::default()
        };
        let r = cleanable(&segs, 0, None, i64::MAX, &c, 5_000).unwrap();
        assert_eq!((r.first_dirty, r.uncleanable, r.dirty_bytes, r.clean_bytes), (0, 30, 300, 0));
        assert!(r.due);
        let r = cleanable(&segs, 0, Some(20), i64::MAX, &c, 5_000).unwrap();
        assert_eq!((r.clean_bytes, r.dirty_bytes), (200, 100));
        assert!(!r.due, "1/3 < 0.5");
        c.max_compaction_lag_ms = 1_000;
        assert!(
            cleanable(&segs, 0, Some(20), i64::MAX, &c, 5_000).unwrap().due,
            "the dirty segment is 2 s old"
        );
        c.max_compaction_lag_ms = i64::MAX;
        c.min_compaction_lag_ms = 2_500; // records after 2_500 are too young
        let r = cleanable(&segs, 0, None, i64::MAX, &c, 5_000).unwrap();
        assert_eq!(r.uncleanable, 20, "the segment holding a record from 3_000 is not cleanable");
        assert!(cleanable(&segs, 0, Some(20), i64::MAX, &c, 5_000).is_none());
        // A checkpoint beyond the log end restarts at the log start.
        assert_eq!(
            cleanable(&segs, 0, Some(99), i64::MAX, &LogConfig::default(), 5_000)
                .unwrap()
                .first_dirty,
            0
        );
    }

    #[test]
    fn cleans_only_below_the_segment_holding_the_recovery_point() {
        let segs = four_segments();
        let c = LogConfig {
            cleanup_policy: crate::log::CleanupPolicy::Compact,
            ..LogConfig::default()
        };
        // Recovery point 15 lies in the second segment: only the first is wholly below it.
        let r = cleanable(&segs, 0, None, 15, &c, 5_000).unwrap();
        assert_eq!((r.uncleanable, r.dirty_bytes), (10, 100));
        // Exactly at a segment's base: everything before that segment is durable.
        assert_eq!(cleanable(&segs, 0, None, 20, &c, 5_000).unwrap().uncleanable, 20);
        // Nothing durable yet: nothing to clean.
        assert!(cleanable(&segs, 0, None, 5, &c, 5_000).is_none());
        assert!(cleanable(&segs[1..], 10, None, 5, &c, 5_000).is_none());
    }

    #[test]
    fn groups_respect_size_and_cover_everything() {
        let segs: Vec<_> =
            (0..7).map(|i| snap(i * 10, i * 10 + 10, 40 + i as u64 * 10, 0)).collect();
        let groups = group_segments(&segs, 100, 100);
        assert_eq!(groups, vec![0..2, 2..3, 3..4, 4..5, 5..6, 6..7]);
        let groups = group_segments(&segs, 1_000, 3);
        assert_eq!(groups, vec![0..3, 3..6, 6..7]);
    }

    fn batch(
        recs: &[(Option<&str>, Option<&str>, i64)],
        codec: Compression,
        base_offset: i64,
    ) -> Bytes {
        let mut b = records::BatchBuilder::new(Vec::new(), codec, usize::MAX);
        for (k, v, ts) in recs {
            b.append(*ts, k.map(str::as_bytes), v.map(str::as_bytes), &[]).unwrap();
        }
        let mut out = b.finish().unwrap();
        BatchHeader::set_base_offset(&mut out, base_offset);
        Bytes::from(out)
    }

    fn decoded(b: &Bytes) -> Vec<(i64, i64, Option<Bytes>, Option<Bytes>)> {
        records::decode_all(b.clone(), 1 << 20)
            .unwrap()
            .into_iter()
            .map(|r| (r.offset, r.timestamp, r.key, r.value))
            .collect()
    }

    #[test]
    fn filter_keeps_latest_and_stamps_horizon() {
        for codec in [
            Compression::None,
            Compression::Lz4,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Zstd,
        ] {
            let b = batch(
                &[
                    (Some("a"), Some("1"), 100),
                    (Some("b"), None, 105),
                    (None, Some("x"), 107),
                    (Some("c"), Some("3"), 110),
                ],
                codec,
                50,
            );
            // a is superseded at 60; b's tombstone is the latest; the keyless record goes.
            let latest = |k: &[u8]| match k {
                b"a" => Some(60),
                b"b" => Some(51),
                _ => None,
            };
            let (f, s) = filter_batch(&b, &latest, 1_000, 500).unwrap();
            assert_eq!((s.records_read, s.records_kept, s.keyless_removed), (4, 2, 1));
            let Filtered::Rewritten(nb) = f else { panic!("{f:?}") };
            let nb = Bytes::from(nb);
            let h = BatchHeader::validate(&nb, usize::MAX).unwrap();
            let oh = BatchHeader::parse(&b).unwrap();
            assert_eq!((h.base_offset, h.last_offset_delta, h.record_count), (50, 3, 2));
            assert_eq!(h.compression().unwrap(), codec);
            assert_eq!(h.attributes & DELETE_HORIZON_FLAG, DELETE_HORIZON_FLAG);
            assert_eq!(h.base_timestamp, 1_500);
            assert_eq!((h.producer_id, h.base_sequence), (oh.producer_id, oh.base_sequence));
            let want = vec![
                (51, 105, Some(Bytes::from("b")), None),
                (53, 110, Some(Bytes::from("c")), Some(Bytes::from("3"))),
            ];
            assert_eq!(decoded(&nb), want, "timestamps survive the re-basing");
            assert_eq!(h.max_timestamp, 110);
            // Before the horizon the tombstone stays (unchanged batch); after it, it goes.
            let none = |_: &[u8]| None;
            assert_eq!(filter_batch(&nb, &none, 1_500, 500).unwrap().0, Filtered::Unchanged);
            let (f, s) = filter_batch(&nb, &none, 1_501, 500).unwrap();
            assert_eq!(s.tombstones_removed, 1);
            let Filtered::Rewritten(nb2) = f else { panic!() };
            assert_eq!(decoded(&Bytes::from(nb2)), want[1..].to_vec());
            // Everything superseded: the batch goes.
            let all = |_: &[u8]| Some(1_000);
            assert_eq!(filter_batch(&b, &all, 0, 0).unwrap().0, Filtered::Dropped);
        }
    }

    #[test]
    fn offset_map_counts_bytes() {
        let mut m = OffsetMap::new(200);
        m.put(b"abc", 1);
        m.put(b"abc", 5);
        assert_eq!((m.len(), m.bytes(), m.get(b"abc")), (1, 3 + MAP_ENTRY_OVERHEAD_BYTES, Some(5)));
        assert!(m.fits(100) && !m.fits(200));
    }
}
