//! One segment: `<base>.log` (record batches exactly as on the wire), `<base>.index` and
//! `<base>.timeindex` (see [`super::index`]), named by the 20-digit base offset.
//!
//! The log file is append-only; the index files are appended in step with it and rebuilt from the
//! log whenever they cannot be trusted (unclean shutdown, failed sanity check). Positions are u32,
//! so a segment never exceeds `i32::MAX` bytes (enforced by `segment.bytes`' range).

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use disk_model::{FileRef, FileRegion, OpenMode, Storage};
use records::{BatchError, BatchHeader, BATCH_HEADER_LEN};

use super::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};

/// Bytes read per IO while scanning batch headers or recovering (batches larger than this are
/// read whole, up to the recovery size limit).
const SCAN_CHUNK_BYTES: usize = 64 * 1024;
/// Index entries are buffered and appended in chunks of about this size: one write syscall per
/// batch for the log instead of three (Kafka mmaps its indexes for the same reason). Entries not
/// yet written cost nothing at a crash: an index missing its tail is still valid, only sparser,
/// and recovery rebuilds indexes anyway.
const INDEX_WRITE_BYTES: usize = 4096;

pub fn segment_file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// Parses `00000000000000000042.log` → 42.
pub fn parse_segment_file_name(name: &str, extension: &str) -> Option<i64> {
    let stem = name.strip_suffix(extension)?.strip_suffix('.')?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
}

/// What a scan found wrong with the bytes at `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub position: u64,
    pub why: String,
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    dir: PathBuf,
    log: FileRef,
    index_file: FileRef,
    time_file: FileRef,
    index: OffsetIndex,
    time_index: TimeIndex,
    /// One past the last offset stored here (`base_offset` when empty).
    next_offset: i64,
    bytes_since_index_entry: u32,
    /// Largest batch max-timestamp in the segment and the last offset of the batch carrying it.
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// The time `segment.ms` counts from: the first batch's max timestamp, or creation time.
    rolling_base_ms: i64,
    /// Encoded index entries not yet appended to `.index` / `.timeindex`.
    pending_index: Vec<u8>,
    pending_time: Vec<u8>,
}

/// Sequential reader of batch headers (and, when asked, whole batches) over a file range.
struct Scanner {
    file: FileRef,
    /// The chunk read ahead, in the pieces the file lent (a simulated file's pages; one piece
    /// on real IO), and where it starts and ends in the file.
    chunk: Vec<Bytes>,
    chunk_pos: u64,
    chunk_end: u64,
    end: u64,
}

impl Scanner {
    fn new(file: FileRef, end: u64) -> Self {
        Self { file, chunk: Vec::new(), chunk_pos: 0, chunk_end: 0, end }
    }

    /// Bytes `[pos, pos+len)` (fewer at the end of the range), reading ahead a chunk. The chunk
    /// is read in pieces: a header is a view of its page, not of a 64 KiB copy made to read it
    /// (the copy was ~1.5 % of a simulated benchmark's CPU); only what straddles pieces is copied.
    async fn bytes(&mut self, pos: u64, len: usize) -> io::Result<Bytes> {
        if pos < self.chunk_pos || pos + len as u64 > self.chunk_end {
            let want = len.max(SCAN_CHUNK_BYTES).min(self.end.saturating_sub(pos) as usize);
            self.chunk = self.file.read_pieces_at(pos, want).await?;
            self.chunk_pos = pos;
            self.chunk_end = pos + self.chunk.iter().map(|p| p.len() as u64).sum::<u64>();
        }
        let stop = (pos + len as u64).min(self.chunk_end);
        Ok(view(&self.chunk, self.chunk_pos, pos, stop))
    }

    /// The header of the batch at `pos`, if a whole, plausible batch lies in the range.
    async fn header(&mut self, pos: u64) -> io::Result<Result<BatchHeader, String>> {
        let bytes = self.bytes(pos, BATCH_HEADER_LEN).await?;
        let header = match BatchHeader::parse(&bytes) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if pos + header.size() as u64 > self.end {
            return Ok(Err(BatchError::Truncated {
                have: (self.end - pos) as usize,
                need: header.size(),
            }
            .to_string()));
        }
        Ok(Ok(header))
    }
}

/// Bytes `[pos, stop)` of `pieces`, which hold the file from `at` on: a view of one piece when
/// the range lies in it, else a copy gathered from the pieces it spans.
fn view(pieces: &[Bytes], at: u64, pos: u64, stop: u64) -> Bytes {
    assert!(at <= pos && pos <= stop, "a view inside the chunk: {at} {pos} {stop}");
    let mut piece_pos = at;
    let mut gathered: Option<Vec<u8>> = None;
    for piece in pieces {
        let piece_end = piece_pos + piece.len() as u64;
        if piece_end > pos && piece_pos < stop {
            let from = (pos.max(piece_pos) - piece_pos) as usize;
            let to = (stop.min(piece_end) - piece_pos) as usize;
            // The first piece the range touches holds `pos`: the range lies in it or spans on.
            if piece_pos <= pos && stop <= piece_end {
                return piece.slice(from..to);
            }
            gathered
                .get_or_insert_with(|| Vec::with_capacity((stop - pos) as usize))
                .extend_from_slice(&piece[from..to]);
        }
        piece_pos = piece_end;
        if piece_pos >= stop {
            break;
        }
    }
    gathered.map_or_else(Bytes::new, Bytes::from)
}

impl Segment {
    fn paths(dir: &Path, base_offset: i64) -> [PathBuf; 3] {
        Self::paths_with_suffix(dir, base_offset, "")
    }

    /// The log, index and time-index paths of a segment, with `suffix` (`""`, `".cleaned"`,
    /// `".swap"`) after the extension as Kafka names the cleaner's files.
    pub fn paths_with_suffix(dir: &Path, base_offset: i64, suffix: &str) -> [PathBuf; 3] {
        ["log", "index", "timeindex"]
            .map(|ext| dir.join(format!("{}{suffix}", segment_file_name(base_offset, ext))))
    }

    /// Creates an empty segment in files named with `suffix` (the cleaner's `.cleaned` files),
    /// emptying leftovers of an earlier attempt. Once the files are renamed to their plain names
    /// (handles survive renames) the segment is an ordinary one.
    pub async fn create_with_suffix(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
        suffix: &str,
        now_ms: i64,
    ) -> io::Result<Self> {
        let mut files = Vec::with_capacity(3);
        for path in Self::paths_with_suffix(dir, base_offset, suffix) {
            let f = storage.open(&path, OpenMode::OpenOrCreate).await?;
            f.truncate(0).await?;
            files.push(f);
        }
        let [log, index_file, time_file]: [FileRef; 3] = files.try_into().expect("three files");
        Ok(Self::empty(dir, base_offset, [log, index_file, time_file], now_ms))
    }

    /// Opens the files named with `suffix` (index files created if missing) without trusting
    /// their indexes: the caller must [`Segment::recover`] it (a `.swap` found at open).
    pub async fn open_with_suffix_unindexed(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
        suffix: &str,
        now_ms: i64,
    ) -> io::Result<Self> {
        let [log_path, index_path, time_path] = Self::paths_with_suffix(dir, base_offset, suffix);
        let log = storage.open(&log_path, OpenMode::Existing).await?;
        let index_file = storage.open(&index_path, OpenMode::OpenOrCreate).await?;
        let time_file = storage.open(&time_path, OpenMode::OpenOrCreate).await?;
        Ok(Self::empty(dir, base_offset, [log, index_file, time_file], now_ms))
    }

    /// Creates a new, empty segment (replacing leftover index files of a crashed earlier attempt).
    pub async fn create(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
    ) -> io::Result<Self> {
        let [log_path, index_path, time_path] = Self::paths(dir, base_offset);
        let log = storage.open(&log_path, OpenMode::OpenOrCreate).await?;
        if !log.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("segment {log_path:?} already holds {} bytes", log.len()),
            ));
        }
        let index_file = storage.open(&index_path, OpenMode::OpenOrCreate).await?;
        index_file.truncate(0).await?;
        let time_file = storage.open(&time_path, OpenMode::OpenOrCreate).await?;
        time_file.truncate(0).await?;
        Ok(Self::empty(dir, base_offset, [log, index_file, time_file], now_ms))
    }

    /// A segment over `files` (log, index, time index) with nothing indexed yet.
    fn empty(dir: &Path, base_offset: i64, files: [FileRef; 3], now_ms: i64) -> Self {
        let [log, index_file, time_file] = files;
        Self {
            base_offset,
            dir: dir.to_path_buf(),
            log,
            index_file,
            time_file,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            next_offset: base_offset,
            bytes_since_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            rolling_base_ms: now_ms,
            pending_index: Vec::new(),
            pending_time: Vec::new(),
        }
    }

    /// Opens an existing segment, trusting its index files if they pass a sanity check. The
    /// returned flag says they did not (garbage, or an entry not pointing at its batch): the caller
    /// must then call [`Segment::recover`] to rebuild them from the log.
    pub async fn open(
        storage: &dyn Storage,
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
    ) -> io::Result<(Self, bool)> {
        let [log_path, index_path, time_path] = Self::paths(dir, base_offset);
        let log = storage.open(&log_path, OpenMode::Existing).await?;
        let index_file = storage.open(&index_path, OpenMode::OpenOrCreate).await?;
        let time_file = storage.open(&time_path, OpenMode::OpenOrCreate).await?;
        let mut seg = Self::empty(dir, base_offset, [log, index_file, time_file], now_ms);
        let index_bytes = seg.index_file.read_at(0, seg.index_file.len() as usize).await?;
        let time_bytes = seg.time_file.read_at(0, seg.time_file.len() as usize).await?;
        let (Some(index), Some(time_index)) =
            (OffsetIndex::decode(&index_bytes, seg.log.len()), TimeIndex::decode(&time_bytes))
        else {
            return Ok((seg, true));
        };
        seg.index = index;
        seg.time_index = time_index;
        // Walk the headers after the last index entry to find the end offset, the max timestamp
        // and the bytes since the last entry (Kafka does the same on a clean load).
        let from = seg.index.last().map_or(0, |e| e.position as u64);
        if let Some(t) = seg.time_index.last() {
            seg.max_timestamp = t.timestamp;
            seg.offset_of_max_timestamp = base_offset + t.relative_offset as i64;
        }
        let end = seg.log.len();
        let mut scanner = Scanner::new(seg.log.clone(), end);
        let mut pos = from;
        while pos < end {
            let Ok(h) = scanner.header(pos).await? else {
                return Ok((seg, true));
            };
            let indexed_last = seg.index.last().map(|e| base_offset + e.relative_offset as i64);
            if pos == from && from > 0 && indexed_last != Some(h.last_offset()) {
                return Ok((seg, true)); // the last index entry does not point at its batch
            }
            if h.base_offset < seg.next_offset {
                return Ok((seg, true));
            }
            seg.observe_timestamp(&h);
            seg.next_offset = h.last_offset() + 1;
            pos += h.size() as u64;
        }
        // As Kafka: the byte counter restarts at load; the index only gets a little sparser.
        seg.bytes_since_index_entry = 0;
        seg.rolling_base_ms = seg.first_batch_timestamp().await?.unwrap_or(now_ms);
        Ok((seg, false))
    }

    async fn first_batch_timestamp(&self) -> io::Result<Option<i64>> {
        if self.log.is_empty() {
            return Ok(None);
        }
        let bytes = self.log.read_at(0, BATCH_HEADER_LEN).await?;
        Ok(BatchHeader::parse(&bytes).ok().map(|h| h.max_timestamp))
    }

    fn observe_timestamp(&mut self, h: &BatchHeader) {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
    }

    /// Validates every batch by CRC from the start, rebuilds both indexes, and truncates the log
    /// at the first batch that is torn, corrupt or out of order. `batch_bytes_max` caps what a
    /// length field may claim (a corrupt length must not make us read a gigabyte).
    /// Returns what was cut, if anything, and where each leader epoch seen starts (in order), so
    /// the epoch cache can be re-learned from the data as Kafka does.
    pub async fn recover(
        &mut self,
        index_interval_bytes: u32,
        batch_bytes_max: usize,
        now_ms: i64,
    ) -> io::Result<(Option<Damage>, Vec<(i32, i64)>)> {
        self.index = OffsetIndex::default();
        self.time_index = TimeIndex::default();
        self.next_offset = self.base_offset;
        self.bytes_since_index_entry = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        let end = self.log.len();
        let mut scanner = Scanner::new(self.log.clone(), end);
        let mut pos = 0u64;
        let mut damage = None;
        let mut epoch_starts: Vec<(i32, i64)> = Vec::new();
        while pos < end {
            let header = match scanner.header(pos).await? {
                Ok(h) => h,
                Err(why) => {
                    damage = Some(Damage { position: pos, why });
                    break;
                }
            };
            if header.size() > batch_bytes_max {
                damage = Some(Damage {
                    position: pos,
                    why: format!(
                        "batch of {} bytes over the {batch_bytes_max}-byte limit",
                        header.size()
                    ),
                });
                break;
            }
            let bytes = scanner.bytes(pos, header.size()).await?;
            if let Err(e) = BatchHeader::validate(&bytes, batch_bytes_max) {
                damage = Some(Damage { position: pos, why: e.to_string() });
                break;
            }
            if header.base_offset < self.next_offset
                || header.last_offset() - self.base_offset > u32::MAX as i64
            {
                damage = Some(Damage {
                    position: pos,
                    why: format!(
                        "batch base offset {} out of order (expected ≥ {})",
                        header.base_offset, self.next_offset
                    ),
                });
                break;
            }
            self.index_batch(pos as u32, &header, index_interval_bytes);
            if epoch_starts.last().is_none_or(|(e, _)| *e != header.partition_leader_epoch) {
                epoch_starts.push((header.partition_leader_epoch, header.base_offset));
            }
            self.next_offset = header.last_offset() + 1;
            pos += header.size() as u64;
        }
        if let Some(d) = &damage {
            tracing::warn!(segment = ?self.log, position = d.position, why = %d.why, "truncating damaged tail of segment");
            self.log.truncate(d.position).await?;
        }
        self.rewrite_index_files().await?;
        self.rolling_base_ms = self.first_batch_timestamp().await?.unwrap_or(now_ms);
        Ok((damage, epoch_starts))
    }

    async fn rewrite_index_files(&mut self) -> io::Result<()> {
        // The in-memory indexes are the truth; buffered entries are part of them.
        self.pending_index.clear();
        self.pending_time.clear();
        self.index_file.truncate(0).await?;
        let bytes: Vec<u8> = self.index.entries().iter().flat_map(|e| e.encode()).collect();
        if !bytes.is_empty() {
            self.index_file.append(&bytes).await?;
        }
        self.time_file.truncate(0).await?;
        let bytes: Vec<u8> = self.time_index.entries().iter().flat_map(|e| e.encode()).collect();
        if !bytes.is_empty() {
            self.time_file.append(&bytes).await?;
        }
        Ok(())
    }

    /// Updates the in-memory indexes for a batch stored at `position` (Kafka's rule: an entry for
    /// a batch once more than `index.interval.bytes` were written since the last entry).
    /// Returns the entries added, for the caller to append to the index files.
    fn index_batch(
        &mut self,
        position: u32,
        h: &BatchHeader,
        interval: u32,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        self.observe_timestamp(h);
        let mut added = (None, None);
        if self.bytes_since_index_entry > interval {
            let entry = OffsetEntry {
                relative_offset: (h.last_offset() - self.base_offset) as u32,
                position,
            };
            if self
                .index
                .last()
                .is_none_or(|l| l.relative_offset < entry.relative_offset && l.position < position)
            {
                self.index.push(entry);
                added.0 = Some(entry);
            }
            let t = TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: (self.offset_of_max_timestamp - self.base_offset) as u32,
            };
            if self.time_index.accepts(&t) {
                self.time_index.push(t);
                added.1 = Some(t);
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry = self.bytes_since_index_entry.saturating_add(h.size() as u32);
        added
    }

    /// Appends already-validated batches whose offsets are assigned. `headers` are the batches'
    /// positions within `bytes` and their headers, in order.
    pub async fn append(
        &mut self,
        bytes: &[u8],
        headers: &[(usize, BatchHeader)],
        index_interval_bytes: u32,
    ) -> io::Result<()> {
        assert!(!headers.is_empty(), "append of no batches");
        assert!(headers[0].1.base_offset >= self.next_offset, "offsets must grow within a segment");
        let start = self.log.len();
        assert!(start + bytes.len() as u64 <= u32::MAX as u64, "segment position overflow");
        let written_at = self.log.append(bytes).await?;
        assert_eq!(written_at, start, "single writer: the append lands at the tail");
        for (at, h) in headers {
            let (e, t) = self.index_batch((start + *at as u64) as u32, h, index_interval_bytes);
            if let Some(e) = e {
                self.pending_index.extend_from_slice(&e.encode());
            }
            if let Some(t) = t {
                self.pending_time.extend_from_slice(&t.encode());
            }
            self.next_offset = h.last_offset() + 1;
        }
        if self.pending_index.len() >= INDEX_WRITE_BYTES
            || self.pending_time.len() >= INDEX_WRITE_BYTES
        {
            self.write_pending_index().await?;
        }
        Ok(())
    }

    /// Appends buffered index entries to the index files.
    pub async fn write_pending_index(&mut self) -> io::Result<()> {
        if !self.pending_index.is_empty() {
            self.index_file.append(&self.pending_index).await?;
            self.pending_index.clear();
        }
        if !self.pending_time.is_empty() {
            self.time_file.append(&self.pending_time).await?;
            self.pending_time.clear();
        }
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub fn rolling_base_ms(&self) -> i64 {
        self.rolling_base_ms
    }

    pub fn index_entries(&self) -> usize {
        self.index.len()
    }

    pub fn log_file(&self) -> &FileRef {
        &self.log
    }

    /// Position and header of the first batch whose last offset is ≥ `offset`, if any.
    pub async fn find_batch(&self, offset: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        let end = self.log.len();
        let mut pos = self.index.lookup(rel) as u64;
        let mut scanner = Scanner::new(self.log.clone(), end);
        while pos < end {
            match scanner.header(pos).await? {
                Ok(h) if h.last_offset() >= offset => return Ok(Some((pos, h))),
                Ok(h) => pos += h.size() as u64,
                Err(why) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("corrupt batch header in {:?} at {pos}: {why}", self.log),
                    ))
                }
            }
        }
        Ok(None)
    }

    /// Position and header of the first batch whose max timestamp is ≥ `timestamp`.
    pub async fn find_batch_by_timestamp(
        &self,
        timestamp: i64,
    ) -> io::Result<Option<(u64, BatchHeader)>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let rel = self.time_index.lookup(timestamp);
        let end = self.log.len();
        let mut pos = self.index.lookup(rel) as u64;
        let mut scanner = Scanner::new(self.log.clone(), end);
        while pos < end {
            match scanner.header(pos).await? {
                Ok(h) if h.max_timestamp >= timestamp => return Ok(Some((pos, h))),
                Ok(h) => pos += h.size() as u64,
                Err(why) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("corrupt batch header in {:?} at {pos}: {why}", self.log),
                    ))
                }
            }
        }
        Ok(None)
    }

    /// A zero-copy region of whole batches starting with the batch that holds `offset`, ending
    /// before the first batch at or past `upper_offset`, at most `max_bytes` long — except that
    /// with `min_one` the first batch is returned whole even if larger (KIP-74). The region may end
    /// inside a batch when `max_bytes` cuts it; clients drop a partial trailing batch, as with Kafka.
    pub async fn read(
        &self,
        offset: i64,
        upper_offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> io::Result<Option<FileRegion>> {
        let Some((start, first)) = self.find_batch(offset).await? else {
            return Ok(None);
        };
        if first.base_offset >= upper_offset {
            return Ok(None);
        }
        let end = if upper_offset >= self.next_offset {
            self.log.len()
        } else {
            match self.find_batch(upper_offset).await? {
                Some((p, h)) if h.base_offset >= upper_offset => p,
                // The bound falls inside a batch: that batch is not yet readable.
                Some((p, _)) => p,
                None => self.log.len(),
            }
        };
        if end <= start {
            return Ok(None);
        }
        let available = end - start;
        let mut len = available.min(max_bytes as u64);
        if min_one && (first.size() as u64) > len {
            len = (first.size() as u64).min(available);
        }
        if len == 0 {
            return Ok(None);
        }
        // A lazily opened file hands out its open handle, held open until the region is sent.
        let file = self.log.pin().await?.unwrap_or_else(|| self.log.clone());
        Ok(Some(FileRegion { file, pos: start, len }))
    }

    /// Removes every batch whose last offset is ≥ `offset` (whole batches). Returns bytes cut.
    pub async fn truncate_to(&mut self, offset: i64) -> io::Result<u64> {
        let Some((pos, _)) = self.find_batch(offset).await? else {
            return Ok(0);
        };
        let cut = self.log.len() - pos;
        self.log.truncate(pos).await?;
        self.index.truncate_to_position(pos as u32);
        self.time_index
            .truncate_to_offset((offset.max(self.base_offset) - self.base_offset) as u32);
        // Recompute the tail state by walking headers after the last surviving index entry.
        let from = self.index.last().map_or(0, |e| e.position as u64);
        let end = self.log.len();
        self.next_offset = self.base_offset;
        self.max_timestamp = self.time_index.last().map_or(-1, |t| t.timestamp);
        self.offset_of_max_timestamp = self
            .time_index
            .last()
            .map_or(self.base_offset, |t| self.base_offset + t.relative_offset as i64);
        let mut scanner = Scanner::new(self.log.clone(), end);
        let mut pos = from;
        while pos < end {
            let h = match scanner.header(pos).await? {
                Ok(h) => h,
                Err(why) => return Err(io::Error::new(io::ErrorKind::InvalidData, why)),
            };
            self.observe_timestamp(&h);
            self.next_offset = h.last_offset() + 1;
            pos += h.size() as u64;
        }
        self.bytes_since_index_entry = 0;
        self.rewrite_index_files().await?;
        Ok(cut)
    }

    /// Writes buffered index entries, then fsyncs the log and both index files.
    pub async fn sync(&mut self) -> io::Result<()> {
        self.write_pending_index().await?;
        self.log.sync().await?;
        self.index_file.sync().await?;
        self.time_file.sync().await
    }

    /// Handles to fsync outside the log's lock (see `Log::flush`).
    pub fn files(&self) -> [FileRef; 3] {
        [self.log.clone(), self.index_file.clone(), self.time_file.clone()]
    }

    pub async fn delete(self, storage: &dyn Storage) -> io::Result<()> {
        for path in Self::paths(&self.dir, self.base_offset) {
            match storage.remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_twenty_digits() {
        assert_eq!(segment_file_name(42, "log"), "00000000000000000042.log");
        assert_eq!(parse_segment_file_name("00000000000000000042.log", "log"), Some(42));
        assert_eq!(parse_segment_file_name("00000000000000000042.index", "log"), None);
        assert_eq!(parse_segment_file_name("42.log", "log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.log", "log"), None);
    }

    proptest::proptest! {
        /// A view of a chunk read in pieces holds the bytes of the same range of the whole
        /// chunk, cut at the chunk's end; a range inside one piece shares that piece's memory.
        #[test]
        fn a_view_of_pieces_is_the_range_of_their_concatenation(
            sizes in proptest::collection::vec(0usize..40, 0..8),
            at in 0u64..1_000,
            from in 0usize..300,
            len in 0usize..120,
        ) {
            let whole: Vec<u8> = (0..sizes.iter().sum::<usize>()).map(|i| (i * 7 % 251) as u8).collect();
            let mut pieces = Vec::new();
            let mut cut = 0;
            for n in &sizes {
                pieces.push(Bytes::copy_from_slice(&whole[cut..cut + n]));
                cut += n;
            }
            let from = from.min(whole.len());
            let stop = (from + len).min(whole.len());
            let got = view(&pieces, at, at + from as u64, at + stop as u64);
            proptest::prop_assert_eq!(&got[..], &whole[from..stop]);
            let mut piece_pos = 0;
            for p in &pieces {
                let inside = piece_pos <= from && stop <= piece_pos + p.len() && from < stop;
                if inside {
                    let shared = p.as_ptr() as usize + (from - piece_pos) == got.as_ptr() as usize;
                    proptest::prop_assert!(shared, "a range inside one piece is a view of it");
                    break;
                }
                piece_pos += p.len();
            }
        }
    }
}
