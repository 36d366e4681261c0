//! The partition log against a simple in-memory model: random sequences of append, read, roll,
//! retention, truncation, clean reopen and process crash. After every step the log must hold
//! exactly the model's batches, byte for byte, from its start offset to its end offset.

mod support;

use std::path::Path;
use std::sync::Arc;

use broker::log::{Log, LogConfig, OpenOptions};
use disk_model::clock::Clock;
use disk_model::sim::{DeviceProfile, PageCacheConfig, SimDisk, SimDiskConfig};
use disk_model::{OsStorage, Storage};
use proptest::prelude::*;
use records::BatchHeader;

#[derive(Debug, Clone)]
enum Op {
    Append {
        batches: usize,
        records: usize,
        value_len: usize,
        ts_step_ms: i64,
    },
    Read {
        at: usize,
        max_bytes: usize,
    },
    Roll,
    Retention {
        advance_ms: i64,
    },
    Truncate {
        at: usize,
    },
    ReopenClean,
    CrashAndRecover,
    /// Only on the disk model: every dirty page is lost, a write in flight may tear.
    PowerLossAndRecover,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..4, 1usize..20, 0usize..300, 0i64..50)
            .prop_map(|(batches, records, value_len, ts_step_ms)| Op::Append { batches, records, value_len, ts_step_ms }),
        3 => (any::<usize>(), 1usize..5000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => Just(Op::Roll),
        1 => (0i64..2000).prop_map(|advance_ms| Op::Retention { advance_ms }),
        1 => any::<usize>().prop_map(|at| Op::Truncate { at }),
        1 => Just(Op::ReopenClean),
        1 => Just(Op::CrashAndRecover),
        1 => Just(Op::PowerLossAndRecover),
    ]
}

/// The model: the batches the log must hold (with their assigned offsets), and its start.
#[derive(Default)]
struct Model {
    batches: Vec<(i64, Vec<u8>)>,
    log_start: i64,
    next_offset: i64,
}

impl Model {
    fn live(&self) -> impl Iterator<Item = &(i64, Vec<u8>)> {
        self.batches.iter().filter(move |(b, bytes)| last_offset(*b, bytes) >= self.log_start)
    }
}

fn last_offset(base: i64, bytes: &[u8]) -> i64 {
    base + BatchHeader::parse(bytes).expect("model batch").last_offset_delta as i64
}

async fn check(log: &Log, model: &Model) {
    assert_eq!(log.log_end_offset(), model.next_offset, "log end offset");
    assert_eq!(log.log_start_offset(), model.log_start, "log start offset");
    let mut got = Vec::new();
    let mut offset = model.log_start;
    while offset < model.next_offset {
        let batches = log.read_checked(offset, i64::MAX, 1 << 20).await.expect("read");
        assert!(!batches.is_empty(), "no data at {offset} below end {}", model.next_offset);
        for b in batches {
            let h = BatchHeader::parse(&b).unwrap();
            offset = h.last_offset() + 1;
            got.push((h.base_offset, b.to_vec()));
        }
    }
    let want: Vec<_> = model.live().cloned().collect();
    assert_eq!(got.len(), want.len(), "batch count");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0, "base offset");
        assert!(g.1 == w.1, "batch at {} differs", g.0);
    }
}

/// `disk`: the simulated disk behind `storage`, if it is one (crashes then go through it).
async fn run_ops(
    storage: Arc<dyn Storage>,
    disk: Option<SimDisk>,
    dir: &Path,
    config: LogConfig,
    ops: Vec<Op>,
) {
    let mut now_ms = 1_000_000i64;
    let mut model = Model::default();
    let (mut log, _) =
        Log::open(storage.clone(), dir, config.clone(), OpenOptions::default(), now_ms)
            .await
            .unwrap();
    let mut seed = 0u64;
    for op in ops {
        match op {
            Op::Append { batches, records, value_len, ts_step_ms } => {
                let mut buf = Vec::new();
                let mut parts = Vec::new();
                for _ in 0..batches {
                    seed += 1;
                    let b = support::batch(records, value_len, now_ms, seed);
                    parts.push(b.len());
                    buf.extend(b);
                }
                let info = log.append_as_leader(&mut buf, 3, now_ms).await.unwrap();
                assert_eq!(info.base_offset, model.next_offset);
                let mut at = 0;
                for len in parts {
                    let bytes = buf[at..at + len].to_vec();
                    let base = BatchHeader::parse(&bytes).unwrap().base_offset;
                    model.next_offset = last_offset(base, &bytes) + 1;
                    model.batches.push((base, bytes));
                    at += len;
                }
                assert_eq!(info.last_offset, model.next_offset - 1);
                now_ms += ts_step_ms;
            }
            Op::Read { at, max_bytes } => {
                let live: Vec<_> = model.live().cloned().collect();
                if live.is_empty() {
                    continue;
                }
                let (base, bytes) = &live[at % live.len()];
                let span = last_offset(*base, bytes) - base + 1;
                let offset = base + (at as i64 % span).max(0);
                let offset = offset.max(model.log_start);
                let got = log.read(offset, i64::MAX, max_bytes, true).await.unwrap();
                let region = got.region.expect("data below the end");
                let data = region.read().await.unwrap();
                // The read starts with the batch holding `offset`, whole even past max_bytes.
                assert!(data.len() >= bytes.len().min(max_bytes.max(bytes.len())));
                assert_eq!(&data[..bytes.len()], &bytes[..], "first batch of a read at {offset}");
                assert!(data.len() <= max_bytes.max(bytes.len()));
            }
            Op::Roll => {
                log.roll(now_ms).await.unwrap();
            }
            Op::Retention { advance_ms } => {
                now_ms += advance_ms;
                log.apply_retention(now_ms).await.unwrap();
                let start = log.log_start_offset();
                assert!(start >= model.log_start, "log start went back");
                assert!(
                    start == model.next_offset || model.batches.iter().any(|(b, _)| *b == start),
                    "log start {start} is not a batch boundary"
                );
                model.log_start = start;
            }
            Op::Truncate { at } => {
                let live: Vec<_> = model.live().cloned().collect();
                if live.is_empty() {
                    continue;
                }
                let (base, _) = live[at % live.len()];
                log.truncate_to(base).await.unwrap();
                if base <= model.log_start {
                    // Truncating to or below the start empties the log at that offset.
                    model.batches.clear();
                    model.log_start = base;
                } else {
                    model.batches.retain(|(b, _)| *b < base);
                }
                model.next_offset = base;
            }
            Op::ReopenClean => {
                let recovery_point = log.close(now_ms).await.unwrap();
                let options = OpenOptions {
                    clean_shutdown: true,
                    recovery_point,
                    log_start_offset: model.log_start,
                };
                let (l, report) =
                    Log::open(storage.clone(), dir, config.clone(), options, now_ms).await.unwrap();
                assert_eq!(report.segments_recovered, 0, "a clean reopen validates nothing");
                assert!(report.damage.is_empty());
                log = l;
            }
            Op::CrashAndRecover => {
                // A process crash: no flush, no marker. The OS (or the model's page cache) keeps
                // every appended byte, so nothing may be lost.
                let recovery_point = log.recovery_point();
                drop(log);
                if let Some(disk) = &disk {
                    disk.crash_process(); // handles of the dead process go stale
                }
                let options = OpenOptions {
                    clean_shutdown: false,
                    recovery_point,
                    log_start_offset: model.log_start,
                };
                let (l, report) =
                    Log::open(storage.clone(), dir, config.clone(), options, now_ms).await.unwrap();
                assert!(report.damage.is_empty(), "a process crash leaves no damage: {report:?}");
                log = l;
            }
            Op::PowerLossAndRecover => {
                let Some(disk) = &disk else { continue };
                // What was fsynced (below the recovery point) must survive; the rest may not.
                let durable = log.recovery_point();
                drop(log);
                disk.power_loss();
                let options = OpenOptions {
                    clean_shutdown: false,
                    recovery_point: durable,
                    log_start_offset: model.log_start,
                };
                let (l, _) =
                    Log::open(storage.clone(), dir, config.clone(), options, now_ms).await.unwrap();
                let leo = l.log_end_offset();
                assert!(
                    leo >= durable,
                    "fsynced data lost: log end {leo} < recovery point {durable}"
                );
                assert!(leo <= model.next_offset);
                assert!(
                    leo == model.next_offset
                        || leo <= model.log_start
                        || model.batches.iter().any(|(b, _)| *b == leo),
                    "recovery stopped inside a batch at {leo}"
                );
                // The survivors must be exactly the model's prefix (checked below).
                model.batches.retain(|(b, _)| *b < leo);
                model.next_offset = leo;
                if leo <= model.log_start {
                    model.log_start = l.log_start_offset();
                    model.next_offset = l.log_end_offset();
                    model.batches.clear();
                }
                log = l;
            }
        }
        check(&log, &model).await;
    }
}

fn small_config(segment_bytes: u32, index_interval_bytes: u32, retention_bytes: i64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes,
        retention_bytes,
        retention_ms: 5_000,
        ..LogConfig::default()
    }
}

proptest! {
    // PROPTEST_CASES raises the count for deep runs; the default keeps the test command quick.
    #![proptest_config(support::proptest_config(48))]

    #[test]
    fn os_backend_matches_model(
        ops in proptest::collection::vec(op(), 1..40),
        segment_bytes in 2_000u32..40_000,
        index_interval_bytes in 0u32..3_000,
        retention_bytes in prop_oneof![Just(-1i64), 5_000i64..60_000],
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(OsStorage::new(tmp.path()).unwrap());
        let config = small_config(segment_bytes, index_interval_bytes, retention_bytes);
        support::block_on(1, run_ops(storage, None, Path::new("t-0"), config, ops));
    }

    /// The same against the disk model: a small page cache so writeback, eviction and throttling
    /// happen, torn writes on, and power losses. Runs in both worlds (manual clock).
    #[test]
    fn disk_model_matches_model(
        ops in proptest::collection::vec(op(), 1..40),
        segment_bytes in 2_000u32..40_000,
        index_interval_bytes in 0u32..3_000,
        retention_bytes in prop_oneof![Just(-1i64), 5_000i64..60_000],
        flush_messages in prop_oneof![Just(i64::MAX), 1i64..20],
        hdd in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let device = if hdd { DeviceProfile::hdd_7200() } else { DeviceProfile::nvme() };
        let page_cache = PageCacheConfig { capacity_bytes: 64 * 4096, ..PageCacheConfig::default() };
        let disk = SimDisk::new(SimDiskConfig { device, page_cache, seed, mounts: Vec::new() }, Clock::manual());
        disk.set_torn_writes(true);
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        let config = LogConfig { flush_messages, ..small_config(segment_bytes, index_interval_bytes, retention_bytes) };
        support::block_on(seed, run_ops(storage, Some(disk.clone()), Path::new("t-0"), config, ops));
        disk.check_invariants();
    }
}
