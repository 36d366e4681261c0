//! The log of one partition: an ordered set of segments, the last one active.
//!
//! Data flow of an append: validate every batch (size, magic, CRC32C) → assign offsets in place
//! (base offset and leader epoch are outside the CRC) → roll if the active segment is full or old
//! → one append to the segment file → index entries → leader-epoch cache → flush policy.
//!
//! Durability is Kafka's: nothing is fsynced unless `flush.messages` / `flush.ms` say so, or a
//! segment rolls, or the broker shuts down. A roll does not fsync the rolled segment itself (that
//! held the log's lock for seconds on a real disk with a 1 GiB segment): as Kafka schedules a
//! flush of the rolled segment, the roll leaves it pending (`roll_flush_pending`) and the
//! broker's flush task fsyncs it without the lock (`prepare_flush_rolled`, then `mark_flushed`).
//! `recovery_point` is the offset below which everything is known durable; an unclean open
//! re-validates every segment from the one holding it. Since a later segment's data can reach the
//! disk before an earlier one's tail, recovery treats a validated segment that ends short of the
//! next one's base (above the recovery point) as a lost tail and drops what follows, so the log
//! stays a prefix of what was written; the cleaner, whose cleaned segments may legitimately end
//! short, cleans only below the recovery point, which the broker checkpoints before it swaps.
//!
//! After an IO error while changing the log (append, roll, truncate, flush) its in-memory state
//! may disagree with the files, so the log goes offline (every later call fails) until it is
//! reopened — which runs recovery — as Kafka marks a log directory offline.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use disk_model::{FileRef, FileRegion, Storage};
use records::{BatchError, BatchHeader, BatchIter};
use thiserror::Error;

use super::config::LogConfig;
use super::epoch::EpochCache;
use super::segment::{parse_segment_file_name, Damage, Segment};

/// The smallest cap on a batch during recovery: a lowered `max.message.bytes` must not make
/// recovery throw away batches that were legal when written.
const RECOVERY_BATCH_BYTES_MIN: usize = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum LogError {
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    #[error("invalid record batch at byte {position} of the request: {source}")]
    InvalidBatch { position: usize, source: BatchError },
    #[error("record batch of {size} bytes exceeds max.message.bytes {limit}")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("the request holds no record batch")]
    EmptyAppend,
    #[error("compacted topic cannot accept a record without a key (batch at byte {position}, record {record})")]
    KeylessRecord { position: usize, record: usize },
    #[error("records of the batch at byte {position} do not decode: {why}")]
    InvalidRecords { position: usize, why: String },
    #[error("follower batch at offset {base_offset} does not follow the log end {log_end_offset}")]
    NonContiguousAppend { base_offset: i64, log_end_offset: i64 },
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange { offset: i64, log_start_offset: i64, log_end_offset: i64 },
    #[error("corrupt data in {file} at byte {position}: {why}")]
    Corrupt { file: String, position: u64, why: String },
    #[error("log {dir} is offline after a storage error: {why}")]
    Offline { dir: String, why: String },
}

/// A flush prepared under the log's lock, its fsyncs run without it (`Log::prepare_flush`).
#[derive(Debug)]
pub struct PendingFlush {
    /// The files to fsync.
    pub files: Vec<FileRef>,
    /// Everything below this offset is durable once they are.
    pub upto: i64,
    /// The whole log (resets the `flush.messages`/`flush.ms` counters), not only rolled segments.
    whole: bool,
    truncations: u64,
}

/// A header that does not parse while scanning a segment is corruption, not an IO failure.
fn corrupt_or_io(e: io::Error, seg: &Segment) -> LogError {
    if e.kind() == io::ErrorKind::InvalidData {
        LogError::Corrupt { file: format!("{:?}", seg.log_file()), position: 0, why: e.to_string() }
    } else {
        LogError::Io(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub record_count: i64,
    pub log_start_offset: i64,
}

/// A record set's batch headers, parsed once: by the request path (the producer-sequence check
/// needs them before the append) and then handed to the log, which validates each batch (size,
/// CRC, codec, record count) without parsing the headers again.
#[derive(Debug, Clone)]
pub struct ParsedBatches {
    /// Length of the record set parsed (checked against the one appended).
    len: usize,
    headers: Vec<(usize, BatchHeader)>,
    /// Where and why parsing stopped before the end (a torn or malformed batch).
    stopped: Option<(usize, BatchError)>,
}

impl ParsedBatches {
    pub fn parse(records: &[u8]) -> Self {
        let mut iter = BatchIter::new(records);
        let headers: Vec<(usize, BatchHeader)> = iter.by_ref().collect();
        let stopped = iter.stopped().cloned().map(|e| (iter.position(), e));
        Self { len: records.len(), headers, stopped }
    }

    /// The headers of the whole batches found, in order.
    pub fn headers(&self) -> impl Iterator<Item = &BatchHeader> + '_ {
        self.headers.iter().map(|(_, h)| h)
    }

    /// Each whole batch found: its position in the record set and its header.
    pub fn batches(&self) -> impl Iterator<Item = (usize, &BatchHeader)> + '_ {
        self.headers.iter().map(|(pos, h)| (*pos, h))
    }
}

/// Result of a read: a zero-copy region (maybe none) and the log's bounds at the time.
#[derive(Debug, Clone)]
pub struct ReadInfo {
    pub region: Option<FileRegion>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// What opening the log found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub segments_recovered: usize,
    /// Segments whose index files failed the sanity check and were rebuilt.
    pub indexes_rebuilt: usize,
    /// Damage found (torn tails, CRC mismatches) and cut, by segment base offset.
    pub damage: Vec<(i64, Damage)>,
    /// Segments deleted because they followed damage.
    pub segments_dropped: usize,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// The previous process shut down cleanly (marker present): trust files, skip validation.
    pub clean_shutdown: bool,
    /// Offset below which the data is known durable (from the recovery-point checkpoint).
    pub recovery_point: i64,
    /// From the log-start-offset checkpoint (raised by retention or DeleteRecords).
    pub log_start_offset: i64,
}

#[derive(Debug)]
pub struct Log {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    recovery_point: i64,
    epochs: EpochCache,
    unflushed_messages: i64,
    last_flush_ms: i64,
    /// A roll's pending flush: the rolled segments below this offset await an fsync (pending while
    /// it is above the recovery point).
    roll_flush_upto: i64,
    /// Bumped by every truncation: a flush prepared before one must not mark data durable that
    /// the truncation replaced.
    truncations: u64,
    offline: Option<String>,
    /// Bumped whenever segments other than the active one change (truncation, retention, a
    /// cleaner swap), so the cleaner, which works from a snapshot without the broker's lock, can
    /// tell that its snapshot is stale.
    generation: u64,
    /// The cleaner's first dirty offset (`cleaner-offset-checkpoint`); `None` = never cleaned.
    cleaner_checkpoint: Option<i64>,
    /// Why the cleaner gave up on this log (corrupt data), if it did; cleared at reopen.
    uncleanable: Option<String>,
}

/// What the cleaner needs to know of one segment, taken under the lock and used without it.
#[derive(Debug, Clone)]
pub struct SegmentSnapshot {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    /// The first batch's timestamp (or creation time): when its oldest data was written.
    pub first_timestamp_ms: i64,
    pub index_entries: usize,
    pub log_file: FileRef,
}

fn same_file(a: &FileRef, b: &FileRef) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering it if the last stop was unclean.
    pub async fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        config: LogConfig,
        options: OpenOptions,
        now_ms: i64,
    ) -> Result<(Self, RecoveryReport), LogError> {
        // Directory entries are durable only once their parent is synced (a power loss otherwise
        // takes a new partition directory, or a deleted segment comes back).
        if !storage.exists(dir).await? {
            storage.create_dir_all(dir).await?;
            storage.sync_dir(dir.parent().unwrap_or(Path::new(""))).await?;
        }
        let mut report = RecoveryReport::default();
        complete_interrupted_swaps(storage.as_ref(), dir, &config, now_ms).await?;
        let mut bases = Vec::new();
        for entry in storage.list_dir(dir).await? {
            if entry.is_dir {
                continue;
            }
            if entry.name.ends_with(".tmp")
                || entry.name.ends_with(".deleted")
                || entry.name.ends_with(".cleaned")
            {
                storage.remove_file(&dir.join(&entry.name)).await?;
            } else if let Some(base) = parse_segment_file_name(&entry.name, "log") {
                bases.push(base);
            }
        }
        // Index files without their log are leftovers of an interrupted delete or roll.
        for entry in storage.list_dir(dir).await? {
            for ext in ["index", "timeindex"] {
                if let Some(base) = parse_segment_file_name(&entry.name, ext) {
                    if !bases.contains(&base) {
                        storage.remove_file(&dir.join(&entry.name)).await?;
                    }
                }
            }
        }
        bases.sort_unstable();
        let batch_bytes_max = (config.max_message_bytes as usize).max(RECOVERY_BATCH_BYTES_MIN);
        // Unclean: validate from the segment that holds the recovery point onwards.
        let first_unflushed =
            bases.iter().rev().find(|b| **b <= options.recovery_point).copied().unwrap_or(i64::MIN);
        let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
        let mut damaged = false;
        let mut epochs = EpochCache::load(storage.as_ref(), dir).await?;
        let mut epochs_changed = false;
        for base in bases {
            if damaged {
                // Everything after damage is unreachable by offset: drop it, as Kafka does.
                let (seg, _) = Segment::open(storage.as_ref(), dir, base, now_ms).await?;
                seg.delete(storage.as_ref()).await?;
                report.segments_dropped += 1;
                continue;
            }
            let (mut seg, index_bad) = Segment::open(storage.as_ref(), dir, base, now_ms).await?;
            let must_validate = !options.clean_shutdown && base >= first_unflushed;
            if must_validate || index_bad {
                if must_validate {
                    report.segments_recovered += 1;
                } else {
                    report.indexes_rebuilt += 1;
                }
                let (damage, epoch_starts) =
                    seg.recover(config.index_interval_bytes, batch_bytes_max, now_ms).await?;
                for (epoch, start) in epoch_starts {
                    epochs_changed |= epochs.assign(epoch, start);
                }
                if let Some(d) = damage {
                    report.damage.push((base, d));
                    damaged = true;
                }
            }
            if let Some((prev_base, prev)) = segments.iter().next_back() {
                // A segment whose offsets run into the next one's base is damaged at that point.
                if prev.next_offset() > base {
                    return Err(LogError::Corrupt {
                        file: format!("{dir:?}/{base:020}.log"),
                        position: 0,
                        why: format!(
                            "segment starts at {base} but the previous one ends at {}",
                            prev.next_offset()
                        ),
                    });
                }
                // A validated segment that ends short of this one's base lost its tail (this
                // one's data reached the disk first): drop this and what follows, as after
                // damage. Only above the recovery point: the cleaner's segments may end short,
                // but lie below it.
                let prev_validated = !options.clean_shutdown && *prev_base >= first_unflushed;
                if prev_validated && prev.next_offset() < base && base > options.recovery_point {
                    report.damage.push((
                        *prev_base,
                        Damage {
                            position: prev.size(),
                            why: format!(
                                "segment ends at offset {} but the next one starts at {base}: its tail was lost",
                                prev.next_offset()
                            ),
                        },
                    ));
                    damaged = true;
                    seg.delete(storage.as_ref()).await?;
                    report.segments_dropped += 1;
                    continue;
                }
            }
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            let base = options.log_start_offset.max(0);
            segments.insert(base, Segment::create(storage.as_ref(), dir, base, now_ms).await?);
            storage.sync_dir(dir).await?;
        } else if report.segments_dropped > 0 {
            storage.sync_dir(dir).await?;
        }
        report.segments = segments.len();
        let first_base = *segments.keys().next().expect("at least one segment");
        let mut log = Self {
            storage,
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: options.log_start_offset.max(first_base),
            recovery_point: 0,
            epochs,
            unflushed_messages: 0,
            last_flush_ms: now_ms,
            roll_flush_upto: 0,
            truncations: 0,
            offline: None,
            generation: 0,
            cleaner_checkpoint: None,
            uncleanable: None,
        };
        log.log_start_offset = log.log_start_offset.min(log.log_end_offset());
        let leo = log.log_end_offset();
        epochs_changed |= log.epochs.truncate_from_end(leo);
        epochs_changed |= log.epochs.truncate_from_start(log.log_start_offset);
        if epochs_changed {
            log.epochs.store(log.storage.as_ref(), dir).await?;
        }
        if options.clean_shutdown {
            log.recovery_point = leo;
        } else {
            // What recovery validated may still sit only in the page cache: make it durable so the
            // recovery point can honestly move to the end.
            log.flush(now_ms).await?;
        }
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// New settings (a topic config changed): later appends, rolls, retention and cleaning
    /// follow them; existing segments stay as they are.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    pub fn epochs(&self) -> &EpochCache {
        &self.epochs
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn segment_bases(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    pub fn is_offline(&self) -> bool {
        self.offline.is_some()
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every segment, oldest first, the active one last.
    pub fn segment_snapshots(&self) -> Vec<SegmentSnapshot> {
        self.segments
            .values()
            .map(|s| SegmentSnapshot {
                base_offset: s.base_offset,
                next_offset: s.next_offset(),
                size: s.size(),
                max_timestamp: s.max_timestamp(),
                first_timestamp_ms: s.rolling_base_ms(),
                index_entries: s.index_entries(),
                log_file: s.log_file().clone(),
            })
            .collect()
    }

    /// The cleaner's first dirty offset as last checkpointed (`None`: never cleaned).
    pub fn cleaner_checkpoint(&self) -> Option<i64> {
        self.cleaner_checkpoint
    }

    pub fn set_cleaner_checkpoint(&mut self, offset: i64) {
        self.cleaner_checkpoint = Some(offset);
    }

    pub fn uncleanable(&self) -> Option<&str> {
        self.uncleanable.as_deref()
    }

    pub fn mark_uncleanable(&mut self, why: String) {
        self.uncleanable = Some(why);
    }

    /// Replaces the segments `old` (consecutive, oldest first, none of them active) by `cleaned`,
    /// a segment the cleaner wrote and synced in `<base>.*.cleaned` files where `base` is the
    /// first old segment's base. Returns `false`, touching nothing, if the log changed since the
    /// snapshot (`generation`, or a segment is not the same file of the same size any more): the
    /// caller then deletes its `.cleaned` files.
    ///
    /// Crash safety (Kafka's protocol): `.cleaned` → `.swap` (the log file last) and a directory
    /// sync commit the swap; then the other old segments are deleted and the `.swap` files renamed
    /// over the first one's (the log file last), and the directory synced. An open finding a
    /// `.log.swap` completes the swap (see `complete_interrupted_swaps`); `.cleaned` files are
    /// deleted.
    pub async fn install_cleaned(
        &mut self,
        generation: u64,
        old: &[SegmentSnapshot],
        cleaned: Segment,
    ) -> Result<bool, LogError> {
        self.check_online()?;
        let base = cleaned.base_offset;
        let unchanged = generation == self.generation
            && !old.is_empty()
            && old[0].base_offset == base
            && old.iter().all(|o| {
                self.segments
                    .get(&o.base_offset)
                    .is_some_and(|s| same_file(s.log_file(), &o.log_file) && s.size() == o.size)
            })
            && old.last().is_some_and(|o| o.base_offset < self.active().base_offset);
        if !unchanged {
            return Ok(false);
        }
        let r = self.install_inner(old, cleaned).await;
        self.offline_on_io(r)?;
        Ok(true)
    }

    async fn install_inner(
        &mut self,
        old: &[SegmentSnapshot],
        cleaned: Segment,
    ) -> Result<(), LogError> {
        let base = cleaned.base_offset;
        let st = self.storage.clone();
        let cleaned_paths = Segment::paths_with_suffix(&self.dir, base, ".cleaned");
        let swap_paths = Segment::paths_with_suffix(&self.dir, base, ".swap");
        let plain_paths = Segment::paths_with_suffix(&self.dir, base, "");
        // Index files first, the log last: a `.log.swap` means the whole swap is complete.
        for i in [1, 2, 0] {
            st.rename(&cleaned_paths[i], &swap_paths[i]).await?;
        }
        st.sync_dir(&self.dir).await?;
        for o in &old[1..] {
            if let Some(seg) = self.segments.remove(&o.base_offset) {
                seg.delete(st.as_ref()).await?;
            }
        }
        for i in [1, 2, 0] {
            st.rename(&swap_paths[i], &plain_paths[i]).await?;
        }
        st.sync_dir(&self.dir).await?;
        // The old first segment's files were replaced by the renames; drop its handles only.
        self.segments.insert(base, cleaned);
        self.generation += 1;
        Ok(())
    }

    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    fn check_online(&self) -> Result<(), LogError> {
        match &self.offline {
            Some(why) => {
                Err(LogError::Offline { dir: format!("{:?}", self.dir), why: why.clone() })
            }
            None => Ok(()),
        }
    }

    /// Runs a state-changing step; an IO error takes the log offline.
    fn offline_on_io<T>(&mut self, r: Result<T, LogError>) -> Result<T, LogError> {
        if let Err(LogError::Io(e)) = &r {
            tracing::error!(dir = ?self.dir, error = %e, "log going offline after a storage error");
            self.offline = Some(e.to_string());
        }
        r
    }

    /// Validates every batch in `records`, returning their positions and headers.
    fn validate(&self, records: &[u8]) -> Result<Vec<(usize, BatchHeader)>, LogError> {
        self.validate_parsed(records, ParsedBatches::parse(records))
    }

    /// Validates every batch of `records` (size limit, CRC, codec, record count) from headers
    /// already parsed, without parsing them again.
    fn validate_parsed(
        &self,
        records: &[u8],
        parsed: ParsedBatches,
    ) -> Result<Vec<(usize, BatchHeader)>, LogError> {
        assert_eq!(parsed.len, records.len(), "headers parsed from another record set");
        let limit = self.config.max_message_bytes as usize;
        for (pos, header) in &parsed.headers {
            if header.size() > limit {
                return Err(LogError::RecordTooLarge { size: header.size(), limit });
            }
            BatchHeader::validate(&records[*pos..*pos + header.size()], limit)
                .map_err(|source| LogError::InvalidBatch { position: *pos, source })?;
        }
        if let Some((position, e)) = parsed.stopped {
            return Err(LogError::InvalidBatch { position, source: e });
        }
        if parsed.headers.is_empty() {
            return Err(LogError::EmptyAppend);
        }
        Ok(parsed.headers)
    }

    /// Appends a leader's batches: assigns offsets from the log end and stamps `leader_epoch`.
    /// `records` is rewritten in place (base offsets and epochs); the CRC stays valid.
    pub async fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let parsed = ParsedBatches::parse(records);
        self.append_parsed_as_leader(records, parsed, leader_epoch, now_ms).await.map(|(i, _)| i)
    }

    /// [`Log::append_as_leader`] with the headers parsed once by the caller (who needed them for
    /// the producer-sequence check); returns the headers as appended (offsets and epoch assigned).
    pub async fn append_parsed_as_leader(
        &mut self,
        records: &mut [u8],
        parsed: ParsedBatches,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<(AppendInfo, Vec<BatchHeader>), LogError> {
        self.check_online()?;
        let mut headers = self.validate_parsed(records, parsed)?;
        if self.config.cleanup_policy.compact() {
            // Kafka's LogValidator: a compacted log needs a key on every record (the cleaner
            // would drop a keyless one). Costs a decompression, only on compacted topics.
            for (pos, h) in &headers {
                let batch = &records[*pos..*pos + h.size()];
                match super::cleaner::first_keyless_record(batch) {
                    Ok(None) => {}
                    Ok(Some(record)) => {
                        return Err(LogError::KeylessRecord { position: *pos, record })
                    }
                    Err(why) => return Err(LogError::InvalidRecords { position: *pos, why }),
                }
            }
        }
        let mut next = self.log_end_offset();
        for (pos, header) in headers.iter_mut() {
            let batch = &mut records[*pos..*pos + header.size()];
            BatchHeader::set_base_offset(batch, next);
            BatchHeader::set_partition_leader_epoch(batch, leader_epoch);
            header.base_offset = next;
            header.partition_leader_epoch = leader_epoch;
            if self.config.log_append_time {
                stamp_log_append_time(batch, header, now_ms);
            }
            next = header.last_offset() + 1;
        }
        let r = self.append_validated(records, &headers, now_ms).await;
        let info = self.offline_on_io(r)?;
        Ok((info, headers.into_iter().map(|(_, h)| h).collect()))
    }

    /// Appends a follower's batches as fetched from the leader (LogAppendTime already stamped by
    /// the leader): offsets are already assigned and
    /// must continue the log exactly.
    pub async fn append_as_follower(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.check_online()?;
        let headers = self.validate(records)?;
        let mut expected = self.log_end_offset();
        for (_, h) in &headers {
            if h.base_offset != expected {
                return Err(LogError::NonContiguousAppend {
                    base_offset: h.base_offset,
                    log_end_offset: expected,
                });
            }
            expected = h.last_offset() + 1;
        }
        let r = self.append_validated(records, &headers, now_ms).await;
        self.offline_on_io(r)
    }

    async fn append_validated(
        &mut self,
        records: &[u8],
        headers: &[(usize, BatchHeader)],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let first = headers[0].1;
        let last = headers[headers.len() - 1].1;
        self.maybe_roll(records.len(), last.last_offset(), now_ms).await?;
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(records, headers, interval).await?;
        let mut epochs_changed = false;
        for (_, h) in headers {
            epochs_changed |= self.epochs.assign(h.partition_leader_epoch, h.base_offset);
        }
        if epochs_changed {
            self.epochs.store(self.storage.as_ref(), &self.dir).await?;
        }
        let record_count: i64 = headers.iter().map(|(_, h)| h.record_count as i64).sum();
        self.unflushed_messages = self.unflushed_messages.saturating_add(record_count);
        if self.unflushed_messages >= self.config.flush_messages || self.flush_due(now_ms) {
            self.flush(now_ms).await?;
        }
        Ok(AppendInfo {
            base_offset: first.base_offset,
            last_offset: last.last_offset(),
            max_timestamp: headers.iter().map(|(_, h)| h.max_timestamp).max().unwrap_or(-1),
            record_count,
            log_start_offset: self.log_start_offset,
        })
    }

    /// Rolls a new active segment if the incoming `bytes` ending at `last_offset` do not fit.
    async fn maybe_roll(
        &mut self,
        bytes: usize,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let active = self.active();
        if active.is_empty() {
            return Ok(());
        }
        let full = active.size() + bytes as u64 > self.config.segment_bytes as u64;
        let old = now_ms - active.rolling_base_ms() >= self.config.segment_ms;
        let index_full = active.index_entries() >= self.config.index_entries_max();
        let offsets_overflow = last_offset - active.base_offset > i32::MAX as i64;
        if full || old || index_full || offsets_overflow {
            self.roll(now_ms).await?;
        }
        Ok(())
    }

    /// Starts a new active segment at the log end; the one it replaces awaits its flush
    /// (`roll_flush_pending`).
    pub async fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        self.check_online()?;
        let r = self.roll_inner(now_ms).await;
        self.offline_on_io(r)
    }

    async fn roll_inner(&mut self, now_ms: i64) -> Result<(), LogError> {
        let base = self.log_end_offset();
        if self.active().base_offset == base {
            return Ok(()); // the active segment is empty: nothing to roll
        }
        let seg = Segment::create(self.storage.as_ref(), &self.dir, base, now_ms).await?;
        self.segments.insert(base, seg);
        self.storage.sync_dir(&self.dir).await?;
        tracing::debug!(dir = ?self.dir, base, "rolled segment");
        // Kafka schedules a flush of the rolled segment; so do we (the broker's flush task).
        self.roll_flush_upto = self.roll_flush_upto.max(base);
        Ok(())
    }

    /// A rolled segment awaits its fsync.
    pub fn roll_flush_pending(&self) -> bool {
        self.roll_flush_upto > self.recovery_point
    }

    pub fn flush_due(&self, now_ms: i64) -> bool {
        self.config.flush_ms != i64::MAX && now_ms - self.last_flush_ms >= self.config.flush_ms
    }

    /// Writes buffered index entries, then returns the files holding data above the recovery
    /// point and the offset that becomes durable once they are synced: lets a caller fsync without
    /// holding the log's lock (then `mark_flushed`).
    pub async fn prepare_flush(&mut self) -> Result<PendingFlush, LogError> {
        let upto = self.log_end_offset();
        self.prepare_flush_below(upto, true).await
    }

    /// `prepare_flush` for the rolled segments only (`roll_flush_pending`): the active segment's
    /// data and the `flush.messages`/`flush.ms` counters are left alone.
    pub async fn prepare_flush_rolled(&mut self) -> Result<PendingFlush, LogError> {
        let upto = self.roll_flush_upto.min(self.log_end_offset());
        self.prepare_flush_below(upto, false).await
    }

    async fn prepare_flush_below(
        &mut self,
        upto: i64,
        whole: bool,
    ) -> Result<PendingFlush, LogError> {
        self.check_online()?;
        let recovery_point = self.recovery_point;
        let r: Result<Vec<FileRef>, LogError> = async {
            let mut files = Vec::new();
            for seg in self.segments.values_mut() {
                let above = seg.next_offset() > recovery_point || seg.base_offset >= recovery_point;
                if above && (whole || seg.base_offset < upto) {
                    seg.write_pending_index().await?;
                    files.extend(seg.files());
                }
            }
            Ok(files)
        }
        .await;
        let files = self.offline_on_io(r)?;
        Ok(PendingFlush { files, upto, whole, truncations: self.truncations })
    }

    /// Records that what `flush` (prepared by `prepare_flush*`, its files since synced) covers is
    /// durable — unless the log was truncated meanwhile (then nothing is marked: the next flush
    /// covers it again).
    pub fn mark_flushed(&mut self, flush: &PendingFlush, now_ms: i64) {
        if flush.truncations != self.truncations {
            return;
        }
        self.recovery_point = self.recovery_point.max(flush.upto.min(self.log_end_offset()));
        if flush.whole {
            self.unflushed_messages = 0;
            self.last_flush_ms = now_ms;
        }
    }

    /// The rolled segments' pending flush, holding the log (what the broker's flush task does
    /// without its lock): tests, tools, `clean_log`.
    pub async fn flush_rolled(&mut self) -> Result<(), LogError> {
        let flush = self.prepare_flush_rolled().await?;
        let r: Result<(), LogError> = async {
            for f in &flush.files {
                f.sync().await?;
            }
            Ok(())
        }
        .await;
        self.offline_on_io(r)?;
        self.mark_flushed(&flush, 0);
        Ok(())
    }

    /// fsyncs everything up to the log end and advances the recovery point.
    pub async fn flush(&mut self, now_ms: i64) -> Result<(), LogError> {
        let flush = self.prepare_flush().await?;
        let r: Result<(), LogError> = async {
            for f in &flush.files {
                f.sync().await?;
            }
            self.storage.sync_dir(&self.dir).await?;
            Ok(())
        }
        .await;
        self.offline_on_io(r)?;
        self.mark_flushed(&flush, now_ms);
        Ok(())
    }

    fn out_of_range(&self, offset: i64) -> LogError {
        LogError::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset(),
        }
    }

    /// Reads from `offset`: a zero-copy region of whole batches from one segment, ending before
    /// `upper_offset` (the high watermark for consumers, the log end for followers) and at most
    /// `max_bytes` long (but the first batch whole with `min_one`).
    pub async fn read(
        &self,
        offset: i64,
        upper_offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadInfo, LogError> {
        self.check_online()?;
        let leo = self.log_end_offset();
        if offset < self.log_start_offset || offset > leo {
            return Err(self.out_of_range(offset));
        }
        let upper = upper_offset.min(leo);
        let mut region = None;
        if offset < upper {
            // The segment holding `offset`, or the next one if offsets were skipped (compaction).
            let start_base =
                self.segments.range(..=offset).next_back().map(|(b, _)| *b).unwrap_or(offset);
            for (_, seg) in self.segments.range(start_base..) {
                let read = seg.read(offset.max(seg.base_offset), upper, max_bytes, min_one).await;
                if let Some(r) = read.map_err(|e| corrupt_or_io(e, seg))? {
                    region = Some(r);
                    break;
                }
                if seg.next_offset() >= upper {
                    break;
                }
            }
        }
        Ok(ReadInfo { region, log_start_offset: self.log_start_offset, log_end_offset: leo })
    }

    /// Like [`Log::read`] but returns the batches' bytes after validating each one's CRC — for
    /// checkers, tools and replication paths that must never pass corrupt data on as valid.
    pub async fn read_checked(
        &self,
        offset: i64,
        upper_offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, LogError> {
        let info = self.read(offset, upper_offset, max_bytes, true).await?;
        let Some(region) = info.region else {
            return Ok(Vec::new());
        };
        let bytes = region.read().await?;
        let mut out = Vec::new();
        let mut iter = BatchIter::new(&bytes);
        for (pos, h) in iter.by_ref() {
            let batch = bytes.slice(pos..pos + h.size());
            BatchHeader::validate(&batch, usize::MAX).map_err(|e| LogError::Corrupt {
                file: format!("{:?}", region.file),
                position: region.pos + pos as u64,
                why: e.to_string(),
            })?;
            out.push(batch);
        }
        if out.is_empty() {
            if let Some(e) = iter.stopped() {
                return Err(LogError::Corrupt {
                    file: format!("{:?}", region.file),
                    position: region.pos,
                    why: e.to_string(),
                });
            }
        }
        Ok(out)
    }

    /// ListOffsets by timestamp: the batch holding the first record with timestamp ≥ `timestamp`
    /// (its position in the log, its header and bytes), or `None` if every record is older.
    /// The caller decodes the batch to pick the exact record.
    pub async fn find_batch_by_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(BatchHeader, Bytes)>, LogError> {
        self.check_online()?;
        for seg in self.segments.values() {
            let found =
                seg.find_batch_by_timestamp(timestamp).await.map_err(|e| corrupt_or_io(e, seg))?;
            if let Some((pos, h)) = found {
                if h.last_offset() < self.log_start_offset {
                    continue;
                }
                let bytes = seg.log_file().read_at(pos, h.size()).await?;
                BatchHeader::validate(&bytes, usize::MAX).map_err(|e| LogError::Corrupt {
                    file: format!("{:?}", seg.log_file()),
                    position: pos,
                    why: e.to_string(),
                })?;
                return Ok(Some((h, bytes)));
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset carrying it (ListOffsets MAX_TIMESTAMP).
    pub fn max_timestamp(&self) -> Option<i64> {
        self.segments.values().map(Segment::max_timestamp).max().filter(|t| *t >= 0)
    }

    /// Removes every batch holding an offset ≥ `offset` (replica truncation; whole batches).
    pub async fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        self.check_online()?;
        let r = self.truncate_inner(offset).await;
        self.offline_on_io(r)
    }

    async fn truncate_inner(&mut self, offset: i64) -> Result<(), LogError> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset <= self.log_start_offset {
            return self.truncate_fully_inner(offset.max(0), None).await;
        }
        let doomed: Vec<i64> = self.segments.range(offset + 1..).map(|(b, _)| *b).collect();
        let holder = self.segments.range(..=offset).next_back().map(|(b, _)| *b);
        for base in doomed {
            // Keep at least one segment: the holder exists since offset > log start ≥ first base.
            if Some(base) == holder {
                continue;
            }
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete(self.storage.as_ref()).await?;
            }
        }
        self.storage.sync_dir(&self.dir).await?;
        self.generation += 1;
        if let Some(seg) = self.segments.values_mut().next_back() {
            seg.truncate_to(offset).await?;
        }
        // If whole batches before `offset` were cut and the active segment is now empty at a base
        // above its data, it is still consistent: the log end is the segment's base.
        let leo = self.log_end_offset();
        self.recovery_point = self.recovery_point.min(leo);
        self.roll_flush_upto = self.roll_flush_upto.min(leo);
        self.truncations += 1;
        if self.epochs.truncate_from_end(leo) {
            self.epochs.store(self.storage.as_ref(), &self.dir).await?;
        }
        Ok(())
    }

    /// Deletes every segment and starts empty at `offset` (a follower far behind the leader's
    /// log start, or a truncation below the log start).
    pub async fn truncate_fully_and_start_at(
        &mut self,
        offset: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        self.check_online()?;
        let r = self.truncate_fully_inner(offset, Some(now_ms)).await;
        self.offline_on_io(r)
    }

    async fn truncate_fully_inner(
        &mut self,
        offset: i64,
        now_ms: Option<i64>,
    ) -> Result<(), LogError> {
        let now_ms = now_ms.unwrap_or_else(|| self.active().rolling_base_ms());
        self.generation += 1;
        let old = std::mem::take(&mut self.segments);
        for (_, seg) in old {
            seg.delete(self.storage.as_ref()).await?;
        }
        let seg = Segment::create(self.storage.as_ref(), &self.dir, offset, now_ms).await?;
        self.segments.insert(offset, seg);
        self.storage.sync_dir(&self.dir).await?;
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.roll_flush_upto = offset;
        self.truncations += 1;
        self.epochs = EpochCache::default();
        self.epochs.store(self.storage.as_ref(), &self.dir).await?;
        Ok(())
    }

    /// Deletes whole segments beyond `retention.bytes` or older than `retention.ms` (by their
    /// largest timestamp). The active segment is rolled first if it has expired entirely.
    /// Returns the number of segments deleted.
    pub async fn apply_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        self.check_online()?;
        let r = self.retention_inner(now_ms).await;
        self.offline_on_io(r)
    }

    async fn retention_inner(&mut self, now_ms: i64) -> Result<usize, LogError> {
        // `cleanup.policy=compact` alone: old segments are compacted, never deleted.
        if !self.config.cleanup_policy.delete() {
            return Ok(0);
        }
        let expired = |seg: &Segment, cfg: &LogConfig| {
            cfg.retention_ms >= 0
                && !seg.is_empty()
                && now_ms - seg.max_timestamp() > cfg.retention_ms
        };
        if expired(self.active(), &self.config) {
            self.roll_inner(now_ms).await?;
        }
        let mut deleted = 0;
        let mut total = self.size_bytes() as i64;
        loop {
            if self.segments.len() <= 1 {
                break;
            }
            let (base, seg) = self.segments.iter().next().expect("non-empty");
            let by_size = self.config.retention_bytes >= 0
                && total - seg.size() as i64 >= self.config.retention_bytes;
            // A non-active segment the cleaner emptied holds nothing to keep.
            let emptied = seg.is_empty();
            if !(by_size || emptied || expired(seg, &self.config)) {
                break;
            }
            let base = *base;
            let seg = self.segments.remove(&base).expect("present");
            total -= seg.size() as i64;
            seg.delete(self.storage.as_ref()).await?;
            deleted += 1;
        }
        if deleted > 0 {
            self.generation += 1;
            self.storage.sync_dir(&self.dir).await?;
            let new_start = *self.segments.keys().next().expect("non-empty");
            self.log_start_offset = self.log_start_offset.max(new_start);
            if self.epochs.truncate_from_start(self.log_start_offset) {
                self.epochs.store(self.storage.as_ref(), &self.dir).await?;
            }
            tracing::debug!(dir = ?self.dir, deleted, log_start = self.log_start_offset, "retention");
        }
        Ok(deleted)
    }

    /// DeleteRecords (and a follower catching up with its leader's): moves the log start offset
    /// up to `offset` (at most the log end offset; never down) and deletes the segments wholly
    /// below it. Returns the log start offset now.
    pub async fn advance_log_start(&mut self, offset: i64) -> Result<i64, LogError> {
        self.check_online()?;
        let r = self.advance_log_start_inner(offset).await;
        self.offline_on_io(r)
    }

    async fn advance_log_start_inner(&mut self, offset: i64) -> Result<i64, LogError> {
        let offset = offset.min(self.log_end_offset());
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        let mut deleted = 0;
        loop {
            let mut bases = self.segments.keys();
            let (Some(&base), Some(&next)) = (bases.next(), bases.next()) else { break };
            // A segment is wholly below the start when the next one begins at or before it.
            if next > offset {
                break;
            }
            let seg = self.segments.remove(&base).expect("present");
            seg.delete(self.storage.as_ref()).await?;
            deleted += 1;
        }
        if deleted > 0 {
            self.generation += 1;
            self.storage.sync_dir(&self.dir).await?;
        }
        if self.epochs.truncate_from_start(offset) {
            self.epochs.store(self.storage.as_ref(), &self.dir).await?;
        }
        assert!(self.log_start_offset <= self.log_end_offset());
        tracing::info!(dir = ?self.dir, deleted, log_start = offset, "log start offset advanced");
        Ok(offset)
    }

    /// Flushes everything; the caller then writes the clean-shutdown marker.
    pub async fn close(mut self, now_ms: i64) -> Result<i64, LogError> {
        self.flush(now_ms).await?;
        Ok(self.recovery_point)
    }
}

/// Finishes cleaner swaps an earlier process was interrupted in (Kafka's recovery rule): a
/// `<base>.log.swap` is a complete, synced cleaned segment that replaces every segment whose base
/// lies in `[base, swap's next offset)`. It is validated (rebuilding its indexes), those segments
/// are deleted, and the `.swap` files are renamed to their plain names. Index `.swap` files
/// without a log `.swap` belong to a swap that never committed and are deleted.
async fn complete_interrupted_swaps(
    storage: &dyn Storage,
    dir: &Path,
    config: &LogConfig,
    now_ms: i64,
) -> Result<(), LogError> {
    let entries = storage.list_dir(dir).await?;
    let swapped: Vec<i64> = entries
        .iter()
        .filter_map(|e| {
            e.name.strip_suffix(".swap").and_then(|n| parse_segment_file_name(n, "log"))
        })
        .collect();
    for e in &entries {
        let Some(name) = e.name.strip_suffix(".swap") else { continue };
        let orphan = ["index", "timeindex"]
            .iter()
            .any(|ext| parse_segment_file_name(name, ext).is_some_and(|b| !swapped.contains(&b)));
        if orphan {
            storage.remove_file(&dir.join(&e.name)).await?;
        }
    }
    if swapped.is_empty() {
        return Ok(());
    }
    let batch_bytes_max = (config.max_message_bytes as usize).max(RECOVERY_BATCH_BYTES_MIN);
    for base in swapped {
        let mut seg =
            Segment::open_with_suffix_unindexed(storage, dir, base, ".swap", now_ms).await?;
        let (damage, _) = seg.recover(config.index_interval_bytes, batch_bytes_max, now_ms).await?;
        if let Some(d) = damage {
            // Swap files are synced before they are named `.swap`: damage here is a disk fault.
            tracing::warn!(?dir, base, ?d, "damaged cleaner swap file: recovered its valid prefix");
        }
        seg.sync().await?;
        let next = seg.next_offset();
        drop(seg);
        for e in storage.list_dir(dir).await? {
            if let Some(b) = parse_segment_file_name(&e.name, "log") {
                if b > base && b < next {
                    for path in Segment::paths_with_suffix(dir, b, "") {
                        match storage.remove_file(&path).await {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
        }
        let swap = Segment::paths_with_suffix(dir, base, ".swap");
        let plain = Segment::paths_with_suffix(dir, base, "");
        for i in [1, 2, 0] {
            storage.rename(&swap[i], &plain[i]).await?;
        }
        tracing::info!(?dir, base, next, "completed an interrupted cleaner swap");
    }
    storage.sync_dir(dir).await?;
    Ok(())
}

/// `message.timestamp.type=LogAppendTime` (Kafka's LogValidator): the batch's timestamp-type
/// attribute bit (3) is set and its max timestamp becomes the append time; readers then take that
/// time for every record. The CRC covers both, so it is recomputed.
fn stamp_log_append_time(batch: &mut [u8], header: &mut BatchHeader, now_ms: i64) {
    header.attributes |= 0x08;
    header.max_timestamp = now_ms;
    let crc = header.crc;
    header.write_to(&mut batch[..records::BATCH_HEADER_LEN]);
    BatchHeader::update_crc(batch);
    match BatchHeader::parse(batch) {
        Ok(h) => *header = h,
        Err(_) => header.crc = crc, // unreachable: the bytes were just validated
    }
}
