//! Log compaction against a model, in both worlds (`cargo test -p broker --test log_compaction`,
//! `cargo sim-test -p broker --test log_compaction`):
//! - random keyed appends (tombstones, keyless records, compressed batches, tiny segments), rolls,
//!   cleanings, time passing, clean and unclean reopens: the log always reads back exactly the
//!   model's records (latest value per key below the cleaner checkpoint, tombstones until their
//!   delete horizon, everything above untouched), offsets unchanged and increasing, CRCs valid;
//!   reads at compacted-away offsets and by timestamp land on the right batch;
//! - a process crash or power loss injected at every kind of point of a clean on the disk model
//!   never loses a key's latest value and leaves a log that opens and cleans again.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use broker::log::cleaner::{clean_log, DELETE_HORIZON_FLAG};
use broker::log::{CleanupPolicy, Log, LogConfig, LogError, OpenOptions};
use bytes::Bytes;
use disk_model::clock::Clock;
use disk_model::sim::{DeviceProfile, PageCacheConfig, SimDisk, SimDiskConfig};
use disk_model::{DirEntry, FileRef, OpenMode, OsStorage, Storage, StorageFile};
use proptest::prelude::*;
use records::{BatchBuilder, BatchHeader, Compression};

const DELETE_RETENTION_MS: i64 = 1_000;
const KEYS: u32 = 12;

/// One appended record: key index (`None` = no key), value (`None` = tombstone).
type Rec = (Option<u32>, Option<Vec<u8>>);

#[derive(Debug, Clone)]
enum Op {
    Append { batches: Vec<(Vec<Rec>, u8)>, advance_ms: i64 },
    Roll,
    Clean { advance_ms: i64, dedupe_bytes: usize },
    Read { at: u64 },
    ByTimestamp { at: u64 },
    ReopenClean,
    CrashAndRecover,
}

fn rec() -> impl Strategy<Value = Rec> {
    prop_oneof![
        12 => (0..KEYS, 0usize..120, any::<u8>()).prop_map(|(k, n, b)| (Some(k), Some(vec![b; n]))),
        3 => (0..KEYS).prop_map(|k| (Some(k), None)),
        1 => (0usize..50).prop_map(|n| (None, Some(vec![7; n]))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (proptest::collection::vec((proptest::collection::vec(rec(), 1..8), 0u8..5), 1..4), 0i64..300)
            .prop_map(|(batches, advance_ms)| Op::Append { batches, advance_ms }),
        2 => Just(Op::Roll),
        4 => (0i64..800, prop_oneof![3 => Just(1usize << 20), 1 => 1usize..400])
            .prop_map(|(advance_ms, dedupe_bytes)| Op::Clean { advance_ms, dedupe_bytes }),
        2 => any::<u64>().prop_map(|at| Op::Read { at }),
        1 => any::<u64>().prop_map(|at| Op::ByTimestamp { at }),
        1 => Just(Op::ReopenClean),
        1 => Just(Op::CrashAndRecover),
    ]
}

fn codec(c: u8) -> Compression {
    [Compression::None, Compression::Lz4, Compression::Zstd, Compression::Gzip, Compression::Snappy]
        [c as usize % 5]
}

fn key_bytes(k: u32) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

/// A v2 batch built by the project's builder; timestamps `ts, ts+1, ...`.
fn build_batch(recs: &[Rec], c: u8, ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(Vec::new(), codec(c), usize::MAX);
    for (i, (k, v)) in recs.iter().enumerate() {
        let key = k.map(key_bytes);
        b.append(ts + i as i64, key.as_deref(), v.as_deref(), &[]).expect("append");
    }
    b.finish().expect("finish")
}

/// A decoded record as the model and the log compare them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

#[derive(Default)]
struct Model {
    recs: Vec<Got>,
    next_offset: i64,
    /// The cleaner checkpoint: below it, only the latest record per key.
    clean_end: i64,
    horizons: BTreeMap<i64, i64>,
    removed_tombstones: BTreeSet<i64>,
}

impl Model {
    fn latest_below(&self, end: i64) -> BTreeMap<Vec<u8>, &Got> {
        let mut m = BTreeMap::new();
        for r in self.recs.iter().filter(|r| r.offset < end) {
            if let Some(k) = &r.key {
                m.insert(k.clone(), r);
            }
        }
        m
    }

    fn expected(&self) -> Vec<Got> {
        let latest: BTreeSet<i64> =
            self.latest_below(self.clean_end).values().map(|r| r.offset).collect();
        self.recs
            .iter()
            .filter(|r| {
                r.offset >= self.clean_end
                    || (latest.contains(&r.offset) && !self.removed_tombstones.contains(&r.offset))
            })
            .cloned()
            .collect()
    }

    /// A clean up to `end` at `now_ms`: tombstones already past their horizon go, the others get
    /// a horizon the first time they are cleaned.
    fn cleaned(&mut self, end: i64, now_ms: i64) {
        assert!(
            end >= self.clean_end,
            "the cleaner checkpoint went back from {} to {end}",
            self.clean_end
        );
        self.clean_end = end;
        let tombstones: Vec<i64> = self
            .latest_below(end)
            .values()
            .filter(|r| r.value.is_none())
            .map(|r| r.offset)
            .collect();
        for t in tombstones {
            match self.horizons.get(&t) {
                Some(h) if now_ms > *h => {
                    self.removed_tombstones.insert(t);
                }
                Some(_) => {}
                None => {
                    self.horizons.insert(t, now_ms + DELETE_RETENTION_MS);
                }
            }
        }
    }
}

/// Every batch of the log, CRC-checked, with its records; asserts offsets strictly increase.
async fn read_all(log: &Log) -> Vec<(BatchHeader, Vec<Got>)> {
    let mut out: Vec<(BatchHeader, Vec<Got>)> = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let batches = log.read_checked(offset, i64::MAX, 1 << 20).await.expect("valid data");
        if batches.is_empty() {
            break;
        }
        for b in batches {
            let h = BatchHeader::parse(&b).unwrap();
            assert!(h.base_offset >= offset, "batch at {} read from {offset}", h.base_offset);
            offset = h.last_offset() + 1;
            let recs: Vec<Got> = records::decode_all(b, 1 << 24)
                .expect("decodes")
                .into_iter()
                .map(|r| Got {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.map(|k| k.to_vec()),
                    value: r.value.map(|v| v.to_vec()),
                })
                .collect();
            assert!(!recs.is_empty(), "an empty batch at {}", h.base_offset);
            out.push((h, recs));
        }
    }
    let offsets: Vec<i64> = out.iter().flat_map(|(_, r)| r.iter().map(|g| g.offset)).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets not strictly increasing: {offsets:?}"
    );
    out
}

async fn check(log: &Log, model: &Model) {
    assert_eq!(log.log_end_offset(), model.next_offset);
    assert_eq!(log.log_start_offset(), 0, "compaction never moves the log start");
    let got: Vec<Got> = read_all(log).await.into_iter().flat_map(|(_, r)| r).collect();
    let want = model.expected();
    if got != want {
        let g: Vec<_> = got.iter().map(|r| r.offset).collect();
        let w: Vec<_> = want.iter().map(|r| r.offset).collect();
        panic!(
            "log differs from the model (clean end {}):\n got {g:?}\nwant {w:?}",
            model.clean_end
        );
    }
}

fn config(segment_bytes: u32, index_interval_bytes: u32) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: DELETE_RETENTION_MS,
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    }
}

async fn run_ops(
    storage: Arc<dyn Storage>,
    disk: Option<SimDisk>,
    config: LogConfig,
    ops: Vec<Op>,
) {
    let dir = Path::new("compacted-0");
    let mut now_ms = 1_000_000i64;
    let mut model = Model::default();
    let (mut log, _) =
        Log::open(storage.clone(), dir, config.clone(), OpenOptions::default(), now_ms)
            .await
            .unwrap();
    let mut cleans = 0;
    for op in ops {
        match op {
            Op::Append { batches, advance_ms } => {
                for (recs, c) in batches {
                    let mut b = build_batch(&recs, c, now_ms);
                    if let Some(i) = recs.iter().position(|(k, _)| k.is_none()) {
                        // Kafka's rule for compacted topics: every record needs a key.
                        let r = log.append_as_leader(&mut b, 1, now_ms).await;
                        assert!(
                            matches!(r, Err(LogError::KeylessRecord { record, .. }) if record == i),
                            "{r:?}"
                        );
                        continue;
                    }
                    let info = log.append_as_leader(&mut b, 1, now_ms).await.unwrap();
                    assert_eq!(info.base_offset, model.next_offset);
                    for (i, (k, v)) in recs.into_iter().enumerate() {
                        model.recs.push(Got {
                            offset: info.base_offset + i as i64,
                            timestamp: now_ms + i as i64,
                            key: k.map(key_bytes),
                            value: v,
                        });
                    }
                    model.next_offset = info.last_offset + 1;
                    now_ms += 10;
                }
                now_ms += advance_ms;
            }
            Op::Roll => log.roll(now_ms).await.unwrap(),
            Op::Clean { advance_ms, dedupe_bytes } => {
                now_ms += advance_ms;
                let active_base = *log.segment_bases().last().unwrap();
                if let Some(stats) = clean_log(&mut log, dedupe_bytes, now_ms, false).await.unwrap()
                {
                    cleans += 1;
                    let end = log.cleaner_checkpoint().expect("checkpointed");
                    assert_eq!(end, stats.end_offset);
                    assert!(end <= active_base, "cleaned into the active segment");
                    assert!(stats.bytes_written <= stats.bytes_read + stats.batches_rewritten * 64);
                    model.cleaned(end, now_ms);
                }
            }
            Op::Read { at } => {
                if model.next_offset == 0 {
                    continue;
                }
                let offset = (at % model.next_offset as u64) as i64;
                let info = log.read(offset, i64::MAX, 1, true).await.unwrap();
                let want = model.expected().into_iter().find(|r| r.offset >= offset);
                match (info.region, want) {
                    (Some(region), Some(want)) => {
                        // The first batch whose offset span reaches `offset` (a cleaned batch
                        // keeps its span, so it may hold only records below `offset`: the
                        // consumer then fetches from its end). Nothing at or after `offset` skipped.
                        let bytes = region.read().await.unwrap();
                        let h = BatchHeader::parse(&bytes).unwrap();
                        let recs = records::decode_all(bytes, 1 << 24).expect("one whole batch");
                        assert!(
                            h.last_offset() >= offset && h.base_offset <= want.offset,
                            "read at {offset}: batch {}..={}",
                            h.base_offset,
                            h.last_offset()
                        );
                        match recs.iter().find(|r| r.offset >= offset) {
                            Some(r) => assert_eq!(r.offset, want.offset, "read at {offset}"),
                            None => assert!(h.last_offset() < want.offset),
                        }
                    }
                    (None, None) => {}
                    (Some(region), None) => {
                        // Only a batch whose span reaches `offset` but whose records lie below it.
                        let recs =
                            records::decode_all(region.read().await.unwrap(), 1 << 24).unwrap();
                        assert!(
                            recs.iter().all(|r| r.offset < offset),
                            "read at {offset} found records the model lacks"
                        );
                    }
                    (None, Some(w)) => panic!("read at {offset}: nothing, expected record {w:?}"),
                }
            }
            Op::ByTimestamp { at } => {
                let want = model.expected();
                let Some(last) = want.iter().map(|r| r.timestamp).max() else { continue };
                let first = want.iter().map(|r| r.timestamp).min().unwrap();
                let ts = first + (at % (last - first + 2) as u64) as i64;
                let found = log.find_batch_by_timestamp(ts).await.unwrap();
                match (found, want.iter().find(|r| r.timestamp >= ts)) {
                    (Some((_, bytes)), Some(w)) => {
                        let recs = records::decode_all(bytes, 1 << 24).unwrap();
                        assert!(
                            recs.iter().any(|r| r.offset == w.offset),
                            "timestamp {ts}: batch without offset {}",
                            w.offset
                        );
                    }
                    (None, None) => {}
                    (f, w) => {
                        panic!("timestamp {ts}: found {:?}, expected {w:?}", f.map(|(h, _)| h))
                    }
                }
            }
            Op::ReopenClean => {
                let checkpoint = log.cleaner_checkpoint();
                let recovery_point = log.close(now_ms).await.unwrap();
                let options =
                    OpenOptions { clean_shutdown: true, recovery_point, log_start_offset: 0 };
                let (l, report) =
                    Log::open(storage.clone(), dir, config.clone(), options, now_ms).await.unwrap();
                assert!(report.damage.is_empty() && report.indexes_rebuilt == 0, "{report:?}");
                log = l;
                if let Some(c) = checkpoint {
                    log.set_cleaner_checkpoint(c); // what the manager's checkpoint file carries
                }
            }
            Op::CrashAndRecover => {
                let recovery_point = log.recovery_point();
                let checkpoint = log.cleaner_checkpoint();
                drop(log);
                if let Some(d) = &disk {
                    d.crash_process();
                }
                let options =
                    OpenOptions { clean_shutdown: false, recovery_point, log_start_offset: 0 };
                let (l, report) =
                    Log::open(storage.clone(), dir, config.clone(), options, now_ms).await.unwrap();
                assert!(report.damage.is_empty(), "{report:?}");
                log = l;
                if let Some(c) = checkpoint {
                    log.set_cleaner_checkpoint(c);
                }
            }
        }
        check(&log, &model).await;
    }
    // Finally everything but an empty active segment is cleaned once more, then the log reopens
    // uncleanly: so every case cleans at least once when it holds data.
    log.roll(now_ms).await.unwrap();
    if let Some(s) = clean_log(&mut log, 1 << 20, now_ms, true).await.unwrap() {
        cleans += 1;
        model.cleaned(s.end_offset, now_ms);
        assert_eq!(s.end_offset, model.next_offset, "everything is cleanable");
    }
    check(&log, &model).await;
    assert!(cleans > 0 || model.next_offset == model.clean_end);
    let recovery_point = log.recovery_point();
    drop(log);
    let options = OpenOptions { clean_shutdown: false, recovery_point, log_start_offset: 0 };
    let (log, _) = Log::open(storage.clone(), dir, config.clone(), options, now_ms).await.unwrap();
    check(&log, &model).await;
}

proptest! {
    #![proptest_config(support::proptest_config(40))]

    #[test]
    fn os_backend_matches_model(
        ops in proptest::collection::vec(op(), 1..60),
        segment_bytes in 300u32..3_000,
        index_interval_bytes in 0u32..1_000,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(OsStorage::new(tmp.path()).unwrap());
        support::block_on(1, run_ops(storage, None, config(segment_bytes, index_interval_bytes), ops));
    }

    #[test]
    fn disk_model_matches_model(
        ops in proptest::collection::vec(op(), 1..60),
        segment_bytes in 300u32..3_000,
        index_interval_bytes in 0u32..1_000,
        seed in any::<u64>(),
    ) {
        let page_cache = PageCacheConfig { capacity_bytes: 64 * 4096, ..PageCacheConfig::default() };
        let disk = SimDisk::new(SimDiskConfig { device: DeviceProfile::nvme(), page_cache, seed, mounts: Vec::new() }, Clock::manual());
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        support::block_on(seed, run_ops(storage, Some(disk.clone()), config(segment_bytes, index_interval_bytes), ops));
        disk.check_invariants();
    }
}

/// A storage that lets `ops_left` more mutating operations through, then crashes the simulated
/// process (or cuts the power) and fails everything after, like a dead process would.
#[derive(Debug, Clone)]
struct CrashAt {
    disk: SimDisk,
    ops_left: Arc<AtomicI64>,
    power_loss: bool,
}

impl CrashAt {
    fn tick(&self) -> io::Result<()> {
        let left = self.ops_left.fetch_sub(1, Ordering::SeqCst);
        if left == 0 {
            if self.power_loss {
                self.disk.power_loss();
            } else {
                self.disk.crash_process();
            }
        }
        if left <= 0 {
            return Err(io::Error::other("injected crash"));
        }
        Ok(())
    }

    fn fired(&self) -> bool {
        self.ops_left.load(Ordering::SeqCst) < 0
    }
}

#[derive(Debug)]
struct CrashFile {
    inner: FileRef,
    at: CrashAt,
}

#[async_trait]
impl StorageFile for CrashFile {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    async fn append(&self, data: &[u8]) -> io::Result<u64> {
        self.at.tick()?;
        self.inner.append(data).await
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if self.at.fired() {
            return Err(io::Error::other("injected crash"));
        }
        self.inner.read_at(pos, len).await
    }
    async fn sync(&self) -> io::Result<()> {
        self.at.tick()?;
        self.inner.sync().await
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.at.tick()?;
        self.inner.truncate(len).await
    }
}

#[async_trait]
impl Storage for CrashAt {
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        self.tick()?;
        let inner = self.disk.open(path, mode).await?;
        Ok(Arc::new(CrashFile { inner, at: self.clone() }))
    }
    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.tick()?;
        self.disk.create_dir_all(path).await
    }
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.disk.list_dir(path).await
    }
    async fn exists(&self, path: &Path) -> io::Result<bool> {
        self.disk.exists(path).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.tick()?;
        self.disk.rename(from, to).await
    }
    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.tick()?;
        self.disk.remove_file(path).await
    }
    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.tick()?;
        self.disk.remove_dir_all(path).await
    }
    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.tick()?;
        self.disk.sync_dir(path).await
    }
}

/// Latest value per key (`None` = deleted) of a record stream; keyless records ignored.
fn latest_values(recs: impl IntoIterator<Item = Got>) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    let mut m = BTreeMap::new();
    for r in recs {
        if let Some(k) = r.key {
            m.insert(k, r.value);
        }
    }
    m
}

/// What a reader must see: the latest live value per key (tombstoned keys absent).
fn live(m: BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    m.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()
}

async fn append_round(
    log: &mut Log,
    all: &mut Vec<Got>,
    rng: &mut u64,
    now_ms: i64,
    batches: usize,
    keys: u32,
) {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    for _ in 0..batches {
        let n = 1 + next() % 6;
        let recs: Vec<Rec> = (0..n)
            .map(|_| {
                let k = (next() % keys as u64) as u32;
                let v = if next() % 6 == 0 {
                    None
                } else {
                    Some(vec![(next() % 251) as u8; (next() % 90) as usize])
                };
                (Some(k), v)
            })
            .collect();
        let c = (next() % 5) as u8;
        let mut b = build_batch(&recs, c, now_ms);
        let info = log.append_as_leader(&mut b, 1, now_ms).await.unwrap();
        for (i, (k, v)) in recs.into_iter().enumerate() {
            all.push(Got {
                offset: info.base_offset + i as i64,
                timestamp: now_ms + i as i64,
                key: k.map(key_bytes),
                value: v,
            });
        }
    }
}

/// Writes a compacted log, cleans it once, appends more, flushes, then cleans again with a crash
/// after `crash_after` storage operations; the reopened log must still give every key its latest
/// value, hold only records that were written, and clean again.
async fn crash_during_clean(seed: u64, crash_after: i64, power_loss: bool) -> bool {
    let page_cache = PageCacheConfig { capacity_bytes: 256 * 4096, ..PageCacheConfig::default() };
    let disk = SimDisk::new(
        SimDiskConfig { device: DeviceProfile::nvme(), page_cache, seed, mounts: Vec::new() },
        Clock::manual(),
    );
    disk.set_torn_writes(true);
    let at =
        CrashAt { disk: disk.clone(), ops_left: Arc::new(AtomicI64::new(i64::MAX)), power_loss };
    let storage: Arc<dyn Storage> = Arc::new(at.clone());
    let dir = Path::new("crash-0");
    let config = config(1_500, 200);
    let mut now_ms = 5_000_000;
    let (mut log, _) =
        Log::open(storage.clone(), dir, config.clone(), OpenOptions::default(), now_ms)
            .await
            .unwrap();
    let mut all = Vec::new();
    let mut rng = seed | 1;
    // Many keys first, then few: most keys' latest values lie in the small segments the first
    // clean leaves, which the second clean merges (groups of several segments).
    append_round(&mut log, &mut all, &mut rng, now_ms, 60, 80).await;
    log.roll(now_ms).await.unwrap();
    now_ms += 100;
    clean_log(&mut log, 1 << 20, now_ms, true).await.unwrap().expect("a first clean");
    append_round(&mut log, &mut all, &mut rng, now_ms, 30, KEYS).await;
    log.roll(now_ms).await.unwrap();
    append_round(&mut log, &mut all, &mut rng, now_ms, 3, KEYS).await;
    log.flush(now_ms).await.unwrap();
    let durable = log.recovery_point();
    assert_eq!(durable, log.log_end_offset());
    let before = latest_values(read_all(&log).await.into_iter().flat_map(|(_, r)| r));
    assert_eq!(before, latest_values(all.clone()), "the first clean kept every latest value");

    // Past the first clean's tombstone horizons, so this clean also deletes tombstones.
    now_ms += 2 * DELETE_RETENTION_MS;
    at.ops_left.store(crash_after, Ordering::SeqCst);
    let result = clean_log(&mut log, 1 << 20, now_ms, true).await;
    let fired = at.fired();
    if !fired {
        let stats = result.expect("no fault, no error").expect("a second clean");
        assert!(
            stats.segments_after + 2 <= stats.segments_before,
            "groups merged segments: {stats:?}"
        );
        at.ops_left.store(0, Ordering::SeqCst);
        at.tick().unwrap_err(); // crash after the clean instead
    }
    drop(log);

    let plain: Arc<dyn Storage> = Arc::new(disk.clone());
    let options =
        OpenOptions { clean_shutdown: false, recovery_point: durable, log_start_offset: 0 };
    let (mut log, _) = Log::open(plain.clone(), dir, config.clone(), options, now_ms)
        .await
        .expect("the log opens after the crash");
    assert_eq!(log.log_end_offset(), durable, "flushed data survives");
    let recs: Vec<Got> = read_all(&log).await.into_iter().flat_map(|(_, r)| r).collect();
    let written: BTreeMap<i64, &Got> = all.iter().map(|g| (g.offset, g)).collect();
    for r in &recs {
        let w = written
            .get(&r.offset)
            .unwrap_or_else(|| panic!("record at {} was never written", r.offset));
        assert_eq!(*w, r, "record at {} changed", r.offset);
    }
    assert_eq!(
        live(latest_values(recs)),
        live(latest_values(all.clone())),
        "a key lost its latest value (crash after {crash_after})"
    );

    // The survivor cleans again and still agrees.
    clean_log(&mut log, 1 << 20, now_ms, true).await.expect("cleans after recovery");
    let recs: Vec<Got> = read_all(&log).await.into_iter().flat_map(|(_, r)| r).collect();
    assert_eq!(live(latest_values(recs)), live(latest_values(all)));
    let names: Vec<String> =
        plain.list_dir(dir).await.unwrap().into_iter().map(|e| e.name).collect();
    assert!(
        names.iter().all(|n| !n.ends_with(".cleaned") && !n.ends_with(".swap")),
        "leftovers: {names:?}"
    );
    disk.check_invariants();
    fired
}

#[test]
fn crash_at_every_point_of_a_clean_keeps_latest_values() {
    // Every operation of the clean in turn, for a process crash and for a power loss; stops
    // once the crash point lies past the clean's last operation.
    for power_loss in [false, true] {
        let mut n = 0;
        loop {
            let seed = 11 + n as u64;
            let fired = support::block_on(seed, crash_during_clean(seed, n, power_loss));
            if !fired {
                assert!(
                    n > 10,
                    "a clean of several segments takes more than {n} storage operations"
                );
                break;
            }
            n += 1;
        }
    }
}

#[test]
fn delete_horizon_is_stamped_once_and_tombstones_go_after_it() {
    support::block_on(3, async {
        let tmp = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(OsStorage::new(tmp.path()).unwrap());
        let (mut log, _) =
            Log::open(storage, Path::new("t-0"), config(100_000, 0), OpenOptions::default(), 0)
                .await
                .unwrap();
        let mut b = build_batch(&[(Some(1), Some(b"v".to_vec())), (Some(2), None)], 1, 100);
        log.append_as_leader(&mut b, 0, 100).await.unwrap();
        log.roll(200).await.unwrap();
        clean_log(&mut log, 1 << 20, 1_000, false).await.unwrap().unwrap();
        let batches = read_all(&log).await;
        let (h, recs) = &batches[0];
        assert_eq!(h.attributes & DELETE_HORIZON_FLAG, DELETE_HORIZON_FLAG);
        assert_eq!(h.base_timestamp, 1_000 + DELETE_RETENTION_MS);
        assert_eq!(
            recs.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
            vec![100, 101],
            "timestamps kept"
        );
        // Nothing dirty: nothing to do.
        assert!(clean_log(&mut log, 1 << 20, 1_500, true).await.unwrap().is_none());
        // Dirty again: the tombstone stays until its horizon, and goes after it.
        let dirty = |ts: i64| build_batch(&[(Some(3), Some(b"w".to_vec()))], 0, ts);
        log.append_as_leader(&mut dirty(1_900), 0, 1_900).await.unwrap();
        log.roll(1_900).await.unwrap();
        clean_log(&mut log, 1 << 20, 2_000, false).await.unwrap().unwrap();
        assert_eq!(read_all(&log).await[0].1.len(), 2);
        log.append_as_leader(&mut dirty(1_950), 0, 1_950).await.unwrap();
        log.roll(1_950).await.unwrap();
        let s = clean_log(&mut log, 1 << 20, 2_001, false).await.unwrap().unwrap();
        assert_eq!(s.records.tombstones_removed, 1);
        let recs = &read_all(&log).await[0].1;
        assert_eq!(recs.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![0]);
        // `cleanup.policy=compact` alone: retention never deletes, however old the data.
        let segments = log.segment_count();
        assert_eq!(log.apply_retention(i64::MAX / 2).await.unwrap(), 0);
        assert_eq!(log.segment_count(), segments);
    });
}

mod in_process {
    //! The broker in-process (no sockets): Kafka requests as frames through `Broker::handle`.
    use super::*;
    use broker::{Broker, BrokerConfig, Outcome};
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use net_model::Chunk;

    async fn call<Q: Encodable, R: Decodable>(b: &Broker, key: ApiKey, v: i16, body: &Q) -> R {
        let mut h = RequestHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = v;
        h.correlation_id = 7;
        h.client_id = Some(StrBytes::from_static_str("compaction-test"));
        let mut buf = BytesMut::new();
        h.encode(&mut buf, key.request_header_version(v)).unwrap();
        body.encode(&mut buf, v).unwrap();
        let Outcome::Respond(chunks) = b.handle(buf.freeze()).await else { panic!("no response") };
        let mut frame = BytesMut::new();
        for c in chunks {
            match c {
                Chunk::Bytes(x) => frame.put_slice(&x),
                Chunk::File(r) => frame.put_slice(&r.read().await.unwrap()),
            }
        }
        let mut frame = frame.freeze().slice(4..);
        let rh = ResponseHeader::decode(&mut frame, key.response_header_version(v)).unwrap();
        assert_eq!(rh.correlation_id, 7);
        R::decode(&mut frame, v).unwrap()
    }

    async fn create(b: &Broker, name: &str, configs: &[(&'static str, &'static str)]) {
        let mut t = create_topics_request::CreatableTopic::default();
        t.name = TopicName(StrBytes::from_string(name.into()));
        t.num_partitions = 1;
        t.replication_factor = 1;
        t.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut c = create_topics_request::CreatableTopicConfig::default();
                c.name = StrBytes::from_static_str(k);
                c.value = Some(StrBytes::from_static_str(v));
                c
            })
            .collect();
        let mut ct = CreateTopicsRequest::default();
        ct.topics = vec![t];
        ct.timeout_ms = 1000;
        let r: CreateTopicsResponse = call(b, ApiKey::CreateTopics, 7, &ct).await;
        assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    }

    async fn produce(b: &Broker, topic: &str, records: Vec<u8>) -> i16 {
        let mut p = produce_request::PartitionProduceData::default();
        p.index = 0;
        p.records = Some(Bytes::from(records));
        let mut t = produce_request::TopicProduceData::default();
        t.name = TopicName(StrBytes::from_string(topic.into()));
        t.partition_data = vec![p];
        let mut r = ProduceRequest::default();
        r.acks = -1;
        r.timeout_ms = 5000;
        r.topic_data = vec![t];
        let resp: ProduceResponse = call(b, ApiKey::Produce, 9, &r).await;
        resp.responses[0].partition_responses[0].error_code
    }

    fn disk() -> (SimDisk, Arc<dyn Storage>) {
        let d = SimDisk::new(
            SimDiskConfig {
                device: DeviceProfile::nvme(),
                page_cache: PageCacheConfig::default(),
                seed: 5,
                mounts: Vec::new(),
            },
            Clock::manual(),
        );
        let s: Arc<dyn Storage> = Arc::new(d.clone());
        (d, s)
    }

    #[test]
    fn keyless_record_on_compacted_topic_is_invalid_record() {
        support::block_on(5, async {
            let (_d, storage) = disk();
            let b =
                Broker::open(BrokerConfig::default(), storage, Path::new("data")).await.unwrap();
            create(&b, "compacted", &[("cleanup.policy", "compact")]).await;
            create(&b, "plain", &[]).await;
            for c in 0..5u8 {
                let keyless = build_batch(
                    &[(Some(1), Some(b"a".to_vec())), (None, Some(b"b".to_vec()))],
                    c,
                    1,
                );
                assert_eq!(
                    produce(&b, "compacted", keyless.clone()).await,
                    87,
                    "INVALID_RECORD ({:?})",
                    codec(c)
                );
                assert_eq!(produce(&b, "plain", keyless).await, 0, "keys are optional elsewhere");
                let keyed = build_batch(&[(Some(1), Some(b"a".to_vec())), (Some(2), None)], c, 1);
                assert_eq!(produce(&b, "compacted", keyed).await, 0);
            }
            b.shutdown().await.unwrap();
        });
    }

    #[test]
    fn broker_cleaner_pass_compacts_and_checkpoints() {
        support::block_on(6, async {
            let (_d, storage) = disk();
            let b = Broker::open(BrokerConfig::default(), storage.clone(), Path::new("data"))
                .await
                .unwrap();
            create(
                &b,
                "kv",
                &[
                    ("cleanup.policy", "compact"),
                    ("segment.bytes", "2000"),
                    ("min.cleanable.dirty.ratio", "0.1"),
                ],
            )
            .await;
            create(&b, "events", &[("segment.bytes", "2000")]).await;
            for i in 0..200u32 {
                let batch = build_batch(&[(Some(i % 5), Some(vec![i as u8; 100]))], 0, 1);
                assert_eq!(produce(&b, "kv", batch.clone()).await, 0);
                assert_eq!(produce(&b, "events", batch).await, 0);
            }
            let (_, before) = b.log_stats().await;
            // The flush task fsyncs rolled segments first; the cleaner cleans only below the
            // recovery point.
            assert!(!b.run_cleaner().await.unwrap(), "nothing is durable yet");
            b.run_flush().await.unwrap();
            assert!(b.run_cleaner().await.unwrap(), "the compacted topic is due");
            let (_, after) = b.log_stats().await;
            // 200 records of 5 keys: the sealed part shrinks to about 5 records; `events` is untouched.
            assert!(after < before * 3 / 4, "{before} -> {after}");
            let text = storage
                .open(Path::new("data/cleaner-offset-checkpoint"), OpenMode::Existing)
                .await
                .unwrap();
            let text = String::from_utf8(text.read_at(0, 4096).await.unwrap().to_vec()).unwrap();
            assert!(text.starts_with("0\n1\nkv 0 "), "{text:?}");
            assert!(!b.run_cleaner().await.unwrap(), "nothing dirty left");
            b.shutdown().await.unwrap();
            // The checkpoint is read back at open.
            let b = Broker::open(BrokerConfig::default(), storage.clone(), Path::new("data"))
                .await
                .unwrap();
            assert!(!b.run_cleaner().await.unwrap(), "still nothing dirty after a restart");
            b.shutdown().await.unwrap();
        });
    }
}
