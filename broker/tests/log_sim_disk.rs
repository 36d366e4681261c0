//! The log on the simulated disk: crash semantics, latent corruption, disk errors, and
//! determinism of the whole stack (log + disk model) in virtual time.

mod support;

use std::path::Path;
use std::sync::Arc;

use broker::log::{Log, LogConfig, LogError, OpenOptions};
use disk_model::clock::Clock;
use disk_model::sim::{
    DeviceProfile, FaultKind, FaultRule, PageCacheConfig, SimDisk, SimDiskConfig,
};
use disk_model::Storage;
use records::BatchHeader;

fn disk(seed: u64, clock: Clock) -> SimDisk {
    let page_cache = PageCacheConfig { capacity_bytes: 1 << 20, ..PageCacheConfig::default() };
    SimDisk::new(
        SimDiskConfig { device: DeviceProfile::hdd_7200(), page_cache, seed, mounts: Vec::new() },
        clock,
    )
}

async fn append(log: &mut Log, i: u64) -> i64 {
    let mut b = support::batch(4, 200, 1_000 + i as i64, i);
    log.append_as_leader(&mut b, 0, 0).await.unwrap().last_offset
}

/// Reads the whole log with CRC checks; panics on anything corrupt.
async fn read_all(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let batches = log.read_checked(offset, i64::MAX, 1 << 20).await.expect("valid data");
        for b in batches {
            offset = BatchHeader::parse(&b).unwrap().last_offset() + 1;
            out.push(b.to_vec());
        }
    }
    out
}

#[test]
fn power_loss_keeps_what_was_fsynced_and_returns_nothing_corrupt() {
    support::block_on(7, async {
        let d = disk(7, Clock::manual());
        d.set_torn_writes(true);
        let storage: Arc<dyn Storage> = Arc::new(d.clone());
        let config = LogConfig { segment_bytes: 8_000, ..LogConfig::default() };
        let (mut log, _) = support::open_log(storage.clone(), "p-0", config.clone()).await;
        for i in 0..30 {
            append(&mut log, i).await;
        }
        log.flush(0).await.unwrap();
        let synced = read_all(&log).await;
        let durable = log.recovery_point();
        assert_eq!(durable, 120);
        for i in 30..60 {
            append(&mut log, i).await; // acks=1, no flush: page cache only
        }
        drop(log);
        d.power_loss();
        let opts =
            OpenOptions { clean_shutdown: false, recovery_point: durable, log_start_offset: 0 };
        let (log, _) = Log::open(storage, Path::new("p-0"), config, opts, 0).await.unwrap();
        assert!(log.log_end_offset() >= durable);
        assert!(
            log.log_end_offset() < 240,
            "unsynced appends in a 1 MiB cache were not all written back"
        );
        let after = read_all(&log).await;
        assert_eq!(
            &after[..synced.len()],
            &synced[..],
            "every fsynced batch is back, byte for byte"
        );
        assert!(d.stats().power_loss_lost_pages > 0);
    });
}

/// A log of 30 appends on a simulated disk with 8 kB segments: several rolls, nothing fsynced.
async fn rolled_log(seed: u64, dir: &str) -> (SimDisk, Arc<dyn Storage>, LogConfig, Log) {
    let d = disk(seed, Clock::manual());
    let storage: Arc<dyn Storage> = Arc::new(d.clone());
    let config = LogConfig { segment_bytes: 8_000, ..LogConfig::default() };
    let (mut log, _) = support::open_log(storage.clone(), dir, config.clone()).await;
    for i in 0..30 {
        append(&mut log, i).await;
    }
    (d, storage, config, log)
}

/// A roll leaves the rolled segment's fsync to the flush task: until it runs, the next segment's
/// data can reach the disk first. Recovery must then cut the log at the lost tail, not leave a
/// hole of missing offsets with later records after it.
#[test]
fn a_rolled_segments_lost_tail_drops_the_segments_after_it() {
    support::block_on(11, async {
        let (d, storage, config, log) = rolled_log(11, "g-0").await;
        let segments = log.segment_snapshots();
        assert!(segments.len() >= 3, "the appends rolled: {} segments", segments.len());
        assert!(log.roll_flush_pending(), "a roll leaves its flush pending");
        assert_eq!(log.recovery_point(), 0, "nothing was fsynced");
        // Only the active segment reaches the disk (the page cache wrote it back first).
        let active = segments.last().unwrap();
        active.log_file.sync().await.unwrap();
        let active_base = active.base_offset;
        drop(log);
        d.power_loss();
        let opts = OpenOptions { clean_shutdown: false, recovery_point: 0, log_start_offset: 0 };
        let (log, report) = Log::open(storage, Path::new("g-0"), config, opts, 0).await.unwrap();
        assert!(log.log_end_offset() < active_base, "log end {}", log.log_end_offset());
        assert!(report.segments_dropped >= 1 && !report.damage.is_empty(), "{report:?}");
        // What is left is a prefix without holes.
        let mut next = 0;
        for b in read_all(&log).await {
            let h = BatchHeader::parse(&b).unwrap();
            assert_eq!(h.base_offset, next, "a hole in the recovered log");
            next = h.last_offset() + 1;
        }
        assert_eq!(next, log.log_end_offset());
    });
}

/// The flush task's part of a roll: the rolled segments are fsynced without the log's lock, and
/// the recovery point moves only if no truncation came between.
#[test]
fn a_rolled_segments_flush_is_deferred_and_a_truncation_voids_it() {
    support::block_on(12, async {
        let (_d, _storage, _config, mut log) = rolled_log(12, "f-0").await;
        let active_base = log.segment_snapshots().last().unwrap().base_offset;
        assert!(log.roll_flush_pending());
        let flush = log.prepare_flush_rolled().await.unwrap();
        assert_eq!(flush.upto, active_base, "the rolled segments, not the active one");
        assert!(!flush.files.is_empty());
        for f in &flush.files {
            f.sync().await.unwrap();
        }
        log.mark_flushed(&flush, 0);
        assert_eq!(log.recovery_point(), active_base);
        assert!(!log.roll_flush_pending());
        // A flush prepared before a truncation marks nothing.
        for i in 30..60 {
            append(&mut log, i).await;
        }
        let flush = log.prepare_flush_rolled().await.unwrap();
        log.truncate_to(active_base + 4).await.unwrap();
        for f in &flush.files {
            f.sync().await.unwrap();
        }
        log.mark_flushed(&flush, 0);
        assert_eq!(log.recovery_point(), active_base, "the truncation voided the flush");
    });
}

#[test]
fn process_crash_keeps_every_append() {
    support::block_on(8, async {
        let d = disk(8, Clock::manual());
        let storage: Arc<dyn Storage> = Arc::new(d.clone());
        let (mut log, _) = support::open_log(storage.clone(), "c-0", LogConfig::default()).await;
        for i in 0..50 {
            append(&mut log, i).await;
        }
        let before = read_all(&log).await;
        d.crash_process();
        assert!(
            log.read_checked(0, i64::MAX, 100).await.is_err(),
            "the dead process's handles are stale"
        );
        drop(log);
        let (log, report) = support::open_log(storage, "c-0", LogConfig::default()).await;
        assert!(report.damage.is_empty());
        assert_eq!(read_all(&log).await, before);
    });
}

#[test]
fn latent_corruption_is_reported_never_returned() {
    support::block_on(9, async {
        let d = disk(9, Clock::manual());
        let storage: Arc<dyn Storage> = Arc::new(d.clone());
        let (mut log, _) = support::open_log(storage.clone(), "z-0", LogConfig::default()).await;
        for i in 0..40 {
            append(&mut log, i).await;
        }
        log.flush(0).await.unwrap();
        // Flip a sector in the middle of the segment on the device, then lose the cached copy.
        d.corrupt(Path::new("z-0/00000000000000000000.log"), 10_000, 16).unwrap();
        d.drop_caches();
        let mut offset = 0;
        let mut caught = 0;
        while offset < log.log_end_offset() {
            match log.read_checked(offset, i64::MAX, 1).await {
                Ok(b) => offset = BatchHeader::parse(&b[0]).unwrap().last_offset() + 1,
                Err(LogError::Corrupt { .. }) => {
                    caught += 1;
                    offset += 4; // batches hold 4 records: step over the bad one
                }
                Err(e) => panic!("expected data or a corruption report, got {e}"),
            }
        }
        assert!(caught >= 1, "the CRC catches the flipped sector");
        drop(log);
        // Recovery from 0 cuts the log at the damage.
        let (log, report) = support::open_log(storage, "z-0", LogConfig::default()).await;
        assert_eq!(report.damage.len(), 1);
        assert!(log.log_end_offset() < 160);
        read_all(&log).await;
    });
}

#[test]
fn disk_errors_take_the_log_offline_until_recovery() {
    support::block_on(10, async {
        let d = disk(10, Clock::manual());
        let storage: Arc<dyn Storage> = Arc::new(d.clone());
        let (mut log, _) = support::open_log(storage.clone(), "e-0", LogConfig::default()).await;
        for i in 0..5 {
            append(&mut log, i).await;
        }
        let fault = d.inject_fault(FaultRule::always(FaultKind::WriteError).under("e-0").times(1));
        let mut b = support::batch(4, 200, 0, 99);
        assert!(matches!(log.append_as_leader(&mut b, 0, 0).await, Err(LogError::Io(_))));
        assert!(log.is_offline());
        let mut b = support::batch(4, 200, 0, 100);
        assert!(matches!(log.append_as_leader(&mut b, 0, 0).await, Err(LogError::Offline { .. })));
        d.clear_fault(fault);
        drop(log);
        let (mut log, _) = support::open_log(storage.clone(), "e-0", LogConfig::default()).await;
        assert_eq!(log.log_end_offset(), 20, "nothing of the failed append is visible");
        append(&mut log, 5).await;
        // A failed fsync (fsyncgate) also takes the log offline: the data may be gone.
        d.inject_fault(FaultRule::always(FaultKind::SyncError).times(1));
        assert!(log.flush(0).await.is_err());
        assert!(log.is_offline());
        // ENOSPC on append.
        drop(log);
        d.clear_faults();
        let (mut log, _) = support::open_log(storage, "e-0", LogConfig::default()).await;
        d.set_space_limit_bytes(Some(d.stats().used_bytes + 100));
        let mut b = support::batch(4, 200, 0, 101);
        match log.append_as_leader(&mut b, 0, 0).await {
            Err(LogError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::StorageFull),
            other => panic!("expected ENOSPC, got {other:?}"),
        }
    });
}

/// The whole stack in madsim's virtual time: same seed → identical disk event log and timings;
/// another seed → a different one (torn-write patterns and probabilistic faults are seeded).
#[cfg(madsim)]
#[test]
fn log_on_disk_model_is_deterministic() {
    fn run(seed: u64) -> (String, std::time::Duration) {
        support::block_on(seed, async move {
            let d = disk(seed, Clock::runtime());
            d.set_torn_writes(true);
            d.inject_fault(FaultRule::always(FaultKind::ReadError).with_probability(0.05));
            let storage: Arc<dyn Storage> = Arc::new(d.clone());
            let t0 = tokio::time::Instant::now();
            let config =
                LogConfig { segment_bytes: 16_000, flush_messages: 40, ..LogConfig::default() };
            let (mut log, _) = support::open_log(storage.clone(), "d-0", config.clone()).await;
            for i in 0..200 {
                append(&mut log, i).await;
                if i % 7 == 0 {
                    d.drop_caches();
                    let _ = log.read_checked((i as i64 * 4) / 2, i64::MAX, 4096).await;
                }
            }
            drop(log);
            d.power_loss();
            let _ = Log::open(storage, Path::new("d-0"), config, OpenOptions::default(), 0).await;
            let events = d.drain_events();
            (format!("{events:?}"), t0.elapsed())
        })
    }
    let (a, ta) = run(11);
    let (b, tb) = run(11);
    assert!(ta > std::time::Duration::from_millis(10), "HDD flushes take virtual time: {ta:?}");
    assert_eq!(ta, tb);
    assert!(a == b, "same seed, same events");
    let (c, _) = run(12);
    assert!(a != c, "another seed, other events");
}

#[test]
fn a_new_data_dir_survives_power_loss() {
    use broker::log::{LogManager, TopicPartition};
    support::block_on(12, async {
        let d = disk(12, Clock::manual());
        let storage: Arc<dyn Storage> = Arc::new(d.clone());
        let cfg = |_: &str| LogConfig { flush_messages: 1, ..LogConfig::default() };
        let root = Path::new("kafka-logs");
        let (mut m, _) =
            LogManager::open(storage.clone(), root, LogConfig::default(), &cfg, 0).await.unwrap();
        let log = m.create(TopicPartition::new("t", 0), cfg("t"), 0).await.unwrap();
        append(log, 1).await; // flush.messages=1: durable once acknowledged
        drop(m);
        d.power_loss();
        let (m, _) = LogManager::open(storage, root, LogConfig::default(), &cfg, 0).await.unwrap();
        let log = m.get(&TopicPartition::new("t", 0)).expect("partition dir survived");
        assert_eq!(log.log_end_offset(), 4, "the flushed batch survived");
    });
}
