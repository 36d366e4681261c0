//! The log's files on the real backend: Kafka's format (judged by kafka-protocol's decoder), index
//! meanings, rolling, retention, flush policy, recovery from torn tails and corruption, the
//! clean-shutdown marker.
#![cfg(not(madsim))]

mod support;

use std::path::Path;
use std::sync::Arc;

use broker::log::index::{OffsetIndex, TimeIndex};
use broker::log::manager::CLEAN_SHUTDOWN_FILE;
use broker::log::{Log, LogConfig, LogError, LogManager, OpenOptions, TopicPartition};
use disk_model::{OsStorage, Storage};
use records::BatchHeader;

fn storage(tmp: &tempfile::TempDir) -> Arc<dyn Storage> {
    Arc::new(OsStorage::new(tmp.path()).unwrap())
}

async fn append_n(log: &mut Log, n: usize, records: usize, value_len: usize, ts_ms: i64) {
    for i in 0..n {
        let mut b = support::batch(records, value_len, ts_ms + i as i64 * 10, i as u64);
        log.append_as_leader(&mut b, 0, ts_ms).await.unwrap();
    }
}

fn segment_files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn files_have_kafkas_format_and_index_meanings() {
    let tmp = tempfile::tempdir().unwrap();
    support::block_on(1, async {
        let config = LogConfig {
            segment_bytes: 20_000,
            index_interval_bytes: 1_000,
            ..LogConfig::default()
        };
        let (mut log, _) =
            Log::open(storage(&tmp), Path::new("fmt-0"), config, OpenOptions::default(), 0)
                .await
                .unwrap();
        append_n(&mut log, 200, 5, 40, 1_700_000_000_000).await;
        assert!(log.segment_count() > 3, "rolled by size");
        log.close(0).await.unwrap();
    });
    let dir = tmp.path().join("fmt-0");
    let mut expected_offset = 0;
    for log_path in segment_files(&dir, "log") {
        let name = log_path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 20, "20-digit base offset");
        let base: i64 = name.parse().unwrap();
        assert_eq!(base, expected_offset, "segments are contiguous");
        let bytes = std::fs::read(&log_path).unwrap();
        // The judge: an independent decoder reads every batch and every record.
        let decoded = support::decode_all(&bytes);
        for (first, count, offsets) in &decoded {
            assert_eq!(*first, expected_offset);
            assert_eq!(*count, 5);
            assert_eq!(
                offsets.iter().map(|o| o.0).collect::<Vec<_>>(),
                (expected_offset..expected_offset + 5).collect::<Vec<_>>()
            );
            expected_offset += 5;
        }
        // .index: 8-byte entries; each maps a batch's last offset (relative) to its position.
        let index = std::fs::read(log_path.with_extension("index")).unwrap();
        assert_eq!(index.len() % 8, 0);
        let index = OffsetIndex::decode(&index, bytes.len() as u64).expect("valid index");
        assert!(
            bytes.len() < 2_000 || !index.is_empty(),
            "a 1000-byte interval indexes every segment over 2 kB"
        );
        for e in index.entries() {
            let h = BatchHeader::parse(&bytes[e.position as usize..]).unwrap();
            assert_eq!(
                h.last_offset(),
                base + e.relative_offset as i64,
                "index entry points at its batch"
            );
        }
        // .timeindex: 12-byte entries (timestamp, relative offset), the max timestamp so far.
        let time = std::fs::read(log_path.with_extension("timeindex")).unwrap();
        assert_eq!(time.len() % 12, 0);
        let time = TimeIndex::decode(&time).expect("valid time index");
        assert!(bytes.len() < 2_000 || !time.is_empty());
        for t in time.entries() {
            let max_so_far = records::BatchIter::new(&bytes)
                .filter(|(_, h)| h.last_offset() <= base + t.relative_offset as i64)
                .map(|(_, h)| h.max_timestamp)
                .max()
                .unwrap();
            assert_eq!(t.timestamp, max_so_far, "time entry holds the max timestamp so far");
        }
    }
    assert_eq!(expected_offset, 1000);
}

#[test]
fn find_by_timestamp_and_read_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    support::block_on(1, async {
        let config =
            LogConfig { segment_bytes: 5_000, index_interval_bytes: 300, ..LogConfig::default() };
        let (mut log, _) =
            Log::open(storage(&tmp), Path::new("ts-0"), config, OpenOptions::default(), 0)
                .await
                .unwrap();
        // batch i holds offsets 4i..4i+3 with timestamps 1000+100i .. +3
        for i in 0..60 {
            let mut b = support::batch(4, 30, 1000 + 100 * i, i as u64);
            log.append_as_leader(&mut b, 0, 0).await.unwrap();
        }
        for target in [0, 1000, 1001, 1050, 2999, 3000, 6903] {
            let (h, _) = log.find_batch_by_timestamp(target).await.unwrap().unwrap();
            let i = ((target - 1000).max(0) + 96) / 100; // first batch whose max ts (1000+100i+3) ≥ target
            assert_eq!(h.base_offset, 4 * i, "target {target}");
        }
        assert!(log.find_batch_by_timestamp(6904).await.unwrap().is_none());
        // Upper bound (a high watermark) stops the read at a batch boundary.
        let r = log.read(8, 20, 1 << 20, true).await.unwrap().region.unwrap();
        let bytes = r.read().await.unwrap();
        let offs: Vec<i64> = records::BatchIter::new(&bytes).map(|(_, h)| h.base_offset).collect();
        assert_eq!(offs, vec![8, 12, 16]);
        // max_bytes smaller than one batch still returns that batch whole (KIP-74).
        let r = log.read(8, i64::MAX, 10, true).await.unwrap().region.unwrap();
        assert_eq!(BatchHeader::peek_size(&r.read().await.unwrap()).unwrap() as u64, r.len);
        assert!(log
            .read(8, i64::MAX, 10, false)
            .await
            .unwrap()
            .region
            .is_some_and(|r| r.len == 10));
        // Out of range on both sides; the end itself is an empty read.
        assert!(matches!(
            log.read(241, i64::MAX, 100, true).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(log.read(240, i64::MAX, 100, true).await.unwrap().region.is_none());
        log.apply_retention(0).await.unwrap();
    });
}

#[test]
fn retention_by_bytes_and_time_and_roll_by_time() {
    let tmp = tempfile::tempdir().unwrap();
    support::block_on(1, async {
        let config = LogConfig {
            segment_bytes: 2_000,
            segment_ms: 60_000,
            retention_bytes: 5_000,
            retention_ms: 3_600_000,
            ..LogConfig::default()
        };
        let (mut log, _) =
            Log::open(storage(&tmp), Path::new("ret-0"), config, OpenOptions::default(), 0)
                .await
                .unwrap();
        let t0 = 1_700_000_000_000;
        append_n(&mut log, 60, 2, 100, t0).await;
        let before = log.segment_count();
        let deleted = log.apply_retention(t0).await.unwrap();
        assert!(deleted > 0);
        assert_eq!(log.segment_count(), before - deleted);
        // Kafka's rule: delete while the rest still holds at least retention.bytes.
        assert!(
            log.size_bytes() >= 5_000 - 2_000 && log.size_bytes() < 5_000 + 2_000,
            "size {}",
            log.size_bytes()
        );
        assert_eq!(log.log_start_offset(), log.segment_bases()[0]);
        let start = log.log_start_offset();
        assert!(matches!(
            log.read(start - 1, i64::MAX, 100, true).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        // Time: everything older than retention.ms goes, and the active segment is rolled first.
        let leo = log.log_end_offset();
        log.apply_retention(t0 + 3_600_000 + 10_000).await.unwrap();
        assert_eq!(log.log_start_offset(), leo);
        assert_eq!(log.segment_count(), 1);
        // Roll by segment.ms: a non-empty active segment older than 60 s rolls on the next append.
        let now = t0 + 4_000_000;
        let mut b = support::batch(1, 10, now, 1);
        log.append_as_leader(&mut b, 0, now).await.unwrap();
        let mut b = support::batch(1, 10, now, 2);
        log.append_as_leader(&mut b, 0, now + 60_000).await.unwrap();
        assert_eq!(log.segment_count(), 2);
    });
}

#[test]
fn flush_policy_moves_the_recovery_point() {
    let tmp = tempfile::tempdir().unwrap();
    support::block_on(1, async {
        let st = storage(&tmp);
        let (mut log, _) = support::open_log(st.clone(), "never-0", LogConfig::default()).await;
        append_n(&mut log, 5, 1, 10, 0).await;
        assert_eq!(log.recovery_point(), 0, "default policy: never flush");
        let config = LogConfig { flush_messages: 3, ..LogConfig::default() };
        let (mut log, _) = support::open_log(st.clone(), "three-0", config).await;
        append_n(&mut log, 2, 1, 10, 0).await;
        assert_eq!(log.recovery_point(), 0);
        append_n(&mut log, 1, 1, 10, 0).await;
        assert_eq!(log.recovery_point(), 3, "flush after 3 messages");
        let config = LogConfig { flush_ms: 1_000, ..LogConfig::default() };
        let (mut log, _) = support::open_log(st, "ms-0", config).await;
        let mut b = support::batch(1, 10, 0, 0);
        log.append_as_leader(&mut b, 0, 500).await.unwrap();
        assert_eq!(log.recovery_point(), 0);
        let mut b = support::batch(1, 10, 0, 1);
        log.append_as_leader(&mut b, 0, 1_000).await.unwrap();
        assert_eq!(log.recovery_point(), 2, "flush once flush.ms passed");
    });
}

#[test]
fn recovery_cuts_a_torn_tail_and_detects_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec-0");
    let config = LogConfig { segment_bytes: 4_000, ..LogConfig::default() };
    support::block_on(1, async {
        let (mut log, _) =
            Log::open(storage(&tmp), Path::new("rec-0"), config.clone(), OpenOptions::default(), 0)
                .await
                .unwrap();
        append_n(&mut log, 40, 3, 50, 0).await;
        drop(log); // unclean
    });
    let logs = segment_files(&dir, "log");
    assert!(logs.len() >= 3);
    // Tear the tail of the last segment: half a batch.
    let last = logs.last().unwrap();
    let good_len = std::fs::metadata(last).unwrap().len();
    let extra = support::batch(3, 50, 0, 99);
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut f, &extra[..extra.len() / 2]).unwrap();
    drop(f);
    support::block_on(1, async {
        let (log, report) =
            Log::open(storage(&tmp), Path::new("rec-0"), config.clone(), OpenOptions::default(), 0)
                .await
                .unwrap();
        assert_eq!(report.damage.len(), 1, "{report:?}");
        assert_eq!(log.log_end_offset(), 120, "every whole batch survives");
        assert_eq!(std::fs::metadata(last).unwrap().len(), good_len, "torn bytes cut");
    });
    // Corrupt a byte inside the second segment (a record value, covered by the CRC).
    let second = &logs[1];
    let mut bytes = std::fs::read(second).unwrap();
    let victim_pos = bytes.len() / 2;
    bytes[victim_pos] ^= 0xff;
    std::fs::write(second, &bytes).unwrap();
    support::block_on(1, async {
        // Opened as clean (no validation): the corruption is still caught on a checked read.
        let opts = OpenOptions { clean_shutdown: true, recovery_point: 120, log_start_offset: 0 };
        let (log, _) =
            Log::open(storage(&tmp), Path::new("rec-0"), config.clone(), opts, 0).await.unwrap();
        let second_base = log.segment_bases()[1];
        let mut offset = second_base;
        let mut caught = false;
        while offset < log.segment_bases()[2] {
            match log.read_checked(offset, i64::MAX, 100).await {
                Ok(batches) => {
                    offset = BatchHeader::parse(batches.last().unwrap()).unwrap().last_offset() + 1
                }
                Err(LogError::Corrupt { .. }) => {
                    caught = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(caught, "a checked read never returns the corrupt batch as valid");
        drop(log);
        // Unclean open from recovery point 0: the damaged batch and everything after it are cut.
        let (log, report) =
            Log::open(storage(&tmp), Path::new("rec-0"), config.clone(), OpenOptions::default(), 0)
                .await
                .unwrap();
        assert_eq!(report.damage.len(), 1);
        assert!(report.segments_dropped >= 1);
        assert!(log.log_end_offset() > second_base && log.log_end_offset() < 120);
        let mut offset = 0;
        while offset < log.log_end_offset() {
            let batches = log.read_checked(offset, i64::MAX, 1 << 20).await.unwrap();
            offset = BatchHeader::parse(batches.last().unwrap()).unwrap().last_offset() + 1;
        }
    });
}

#[test]
fn bad_index_files_are_rebuilt_and_bad_appends_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 4_000,
        index_interval_bytes: 200,
        max_message_bytes: 2_000,
        ..LogConfig::default()
    };
    support::block_on(1, async {
        let (mut log, _) =
            Log::open(storage(&tmp), Path::new("idx-0"), config.clone(), OpenOptions::default(), 0)
                .await
                .unwrap();
        append_n(&mut log, 40, 3, 50, 0).await;
        // Bad input never reaches the log.
        let mut big = support::batch(1, 3_000, 0, 1);
        assert!(matches!(
            log.append_as_leader(&mut big, 0, 0).await,
            Err(LogError::RecordTooLarge { .. })
        ));
        let mut bad = support::batch(2, 10, 0, 1);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            log.append_as_leader(&mut bad, 0, 0).await,
            Err(LogError::InvalidBatch { .. })
        ));
        let mut torn = support::batch(2, 10, 0, 1);
        torn.truncate(30);
        assert!(matches!(
            log.append_as_leader(&mut torn, 0, 0).await,
            Err(LogError::InvalidBatch { .. })
        ));
        assert!(matches!(log.append_as_leader(&mut [], 0, 0).await, Err(LogError::EmptyAppend)));
        assert_eq!(log.log_end_offset(), 120);
        log.close(0).await.unwrap();
    });
    let dir = tmp.path().join("idx-0");
    let indexes = segment_files(&dir, "index");
    std::fs::write(&indexes[0], [0xabu8; 13]).unwrap();
    std::fs::remove_file(&indexes[1]).unwrap();
    support::block_on(1, async {
        let opts = OpenOptions { clean_shutdown: true, recovery_point: 120, log_start_offset: 0 };
        let (log, report) =
            Log::open(storage(&tmp), Path::new("idx-0"), config, opts, 0).await.unwrap();
        assert_eq!(
            report.indexes_rebuilt, 1,
            "garbage index rebuilt; a missing one is an empty valid index"
        );
        for offset in 0..120 {
            let b = log.read_checked(offset, i64::MAX, 1).await.unwrap();
            let h = BatchHeader::parse(&b[0]).unwrap();
            assert!(h.base_offset <= offset && offset <= h.last_offset());
        }
    });
}

#[test]
fn manager_marker_checkpoints_and_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("orders-v2", 3);
    let cfg = |_: &str| LogConfig::default();
    support::block_on(1, async {
        let st = storage(&tmp);
        let (mut m, _) = LogManager::open(st.clone(), Path::new(""), LogConfig::default(), &cfg, 0)
            .await
            .unwrap();
        assert!(!m.was_clean());
        let log = m.create(tp.clone(), LogConfig::default(), 0).await.unwrap();
        for epoch in [0, 0, 2, 5] {
            let mut b = support::batch(2, 10, 0, 1);
            log.append_as_leader(&mut b, epoch, 0).await.unwrap();
        }
        let entries: Vec<_> =
            log.epochs().entries().iter().map(|e| (e.epoch, e.start_offset)).collect();
        assert_eq!(entries, vec![(0, 0), (2, 4), (5, 6)]);
        assert_eq!(log.epochs().end_offset_for(2, log.log_end_offset()), Some((2, 6)));
        m.shutdown(0).await.unwrap();
        assert!(tmp.path().join(CLEAN_SHUTDOWN_FILE).exists());
        let (mut m, reports) =
            LogManager::open(st.clone(), Path::new(""), LogConfig::default(), &cfg, 0)
                .await
                .unwrap();
        assert!(m.was_clean());
        assert!(!tmp.path().join(CLEAN_SHUTDOWN_FILE).exists(), "marker removed at start");
        assert_eq!(reports[&tp].segments_recovered, 0);
        let log = m.get_mut(&tp).unwrap();
        assert_eq!(log.log_end_offset(), 8);
        assert_eq!(log.epochs().latest().map(|e| e.epoch), Some(5));
        log.truncate_to(6).await.unwrap();
        assert_eq!(
            log.epochs().latest().map(|e| e.epoch),
            Some(2),
            "truncation drops epochs past the end"
        );
        drop(m); // crash: no marker
        let (m, reports) =
            LogManager::open(st, Path::new(""), LogConfig::default(), &cfg, 0).await.unwrap();
        assert!(!m.was_clean());
        assert_eq!(reports[&tp].segments_recovered, 1);
        assert_eq!(m.get(&tp).unwrap().log_end_offset(), 6);
        assert!(
            tmp.path().join("leader-epoch-checkpoint").exists()
                || tmp.path().join("orders-v2-3/leader-epoch-checkpoint").exists()
        );
    });
}

#[test]
fn recovery_relearns_leader_epochs_from_batches() {
    let tmp = tempfile::tempdir().unwrap();
    support::block_on(1, async {
        let (mut log, _) = Log::open(
            storage(&tmp),
            Path::new("ep-0"),
            LogConfig::default(),
            OpenOptions::default(),
            0,
        )
        .await
        .unwrap();
        for epoch in [1, 1, 4, 7] {
            let mut b = support::batch(2, 10, 0, 1);
            log.append_as_leader(&mut b, epoch, 0).await.unwrap();
        }
        drop(log);
    });
    // The checkpoint is lost (say, its rename never reached the disk): the data still knows.
    std::fs::remove_file(tmp.path().join("ep-0/leader-epoch-checkpoint")).unwrap();
    support::block_on(1, async {
        let (log, _) = Log::open(
            storage(&tmp),
            Path::new("ep-0"),
            LogConfig::default(),
            OpenOptions::default(),
            0,
        )
        .await
        .unwrap();
        let entries: Vec<_> =
            log.epochs().entries().iter().map(|e| (e.epoch, e.start_offset)).collect();
        assert_eq!(entries, vec![(1, 0), (4, 4), (7, 6)]);
    });
}
