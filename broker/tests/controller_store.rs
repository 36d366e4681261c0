//! The controller's metadata log on the disk model (both worlds): what `persist` returned for
//! survives a power loss, a suffix replaced by a new leader stays replaced, a torn tail is cut on
//! open, and the framing reads cleanly to the end of a stream.

mod support;

use std::path::Path;
use std::sync::Arc;

use broker::controller::frame;
use broker::controller::raft_log::{RaftStore, StoreError, StoreLimits, LOG_FILE, METADATA_DIR};
use cluster::raft::{Entry, HardState};
use disk_model::clock::Clock;
use disk_model::{DeviceProfile, OpenMode, SimDisk, SimDiskConfig, Storage};

fn entry(term: u64, index: u64) -> Entry {
    Entry { term, index, data: format!("e{term}.{index}").into_bytes() }
}

fn disk() -> SimDisk {
    SimDisk::new(SimDiskConfig::new(DeviceProfile::nvme(), 3), Clock::manual())
}

#[test]
fn persisted_state_survives_power_loss_and_torn_tails_are_cut() {
    support::block_on(3, async {
        let d = disk();
        let storage: Arc<dyn Storage> = Arc::new(d.clone());
        let (mut s, rec) =
            RaftStore::open(storage.clone(), Path::new(""), StoreLimits::default()).await.unwrap();
        assert_eq!((rec.hard_state, rec.entries.len()), (HardState::default(), 0));
        s.persist(
            Some(HardState { term: 1, vote: Some(0), commit: 0 }),
            &(1..=5).map(|i| entry(1, i)).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        // A new leader replaces 4..=5 with its own 4..=6.
        s.persist(None, &(4..=6).map(|i| entry(2, i)).collect::<Vec<_>>()).await.unwrap();
        let hs = HardState { term: 2, vote: None, commit: 3 };
        s.persist(Some(hs), &[]).await.unwrap();
        drop(s);
        d.power_loss();

        let want: Vec<Entry> =
            (1..=3).map(|i| entry(1, i)).chain((4..=6).map(|i| entry(2, i))).collect();
        let (s, rec) =
            RaftStore::open(storage.clone(), Path::new(""), StoreLimits::default()).await.unwrap();
        assert_eq!(rec.hard_state, hs);
        assert_eq!(rec.entries, want);
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(s.last_index(), 6);

        // A crash mid-append leaves part of a record: cut on the next open, the rest intact.
        let f = storage
            .open(&Path::new(METADATA_DIR).join(LOG_FILE), OpenMode::Existing)
            .await
            .unwrap();
        let whole = broker::controller::raft_log::encode_entry(&entry(2, 7));
        f.append(&whole[..whole.len() - 3]).await.unwrap();
        f.sync().await.unwrap();
        drop(f);
        drop(s);
        let (mut s, rec) =
            RaftStore::open(storage.clone(), Path::new(""), StoreLimits::default()).await.unwrap();
        assert_eq!(rec.entries, want);
        assert_eq!(rec.truncated_bytes, whole.len() as u64 - 3);
        // Appending continues exactly after the cut.
        s.persist(None, &[entry(2, 7)]).await.unwrap();
        drop(s);
        let (_, rec) =
            RaftStore::open(storage.clone(), Path::new(""), StoreLimits::default()).await.unwrap();
        assert_eq!(rec.entries.len(), 7);
        assert_eq!(rec.truncated_bytes, 0);

        // The size bound refuses growth instead of silently dropping entries.
        let (mut s, _) =
            RaftStore::open(storage, Path::new(""), StoreLimits { log_bytes_max: 1_000 })
                .await
                .unwrap();
        let big = Entry { term: 2, index: 8, data: vec![7; 2_000] };
        assert!(matches!(s.persist(None, &[big]).await, Err(StoreError::LogFull { .. })));
    });
}

#[test]
fn frames_read_to_a_clean_end_and_report_torn_ones() {
    support::block_on(4, async {
        let m = entry(3, 1);
        let f = frame::encode(&m, frame::FRAME_BYTES_MAX).unwrap();
        let mut r: &[u8] = &f;
        assert_eq!(frame::read::<Entry, _>(&mut r, frame::FRAME_BYTES_MAX).await.unwrap(), Some(m));
        assert!(frame::read::<Entry, _>(&mut r, frame::FRAME_BYTES_MAX).await.unwrap().is_none());
        let mut torn: &[u8] = &f[..f.len() - 1];
        assert!(matches!(
            frame::read::<Entry, _>(&mut torn, frame::FRAME_BYTES_MAX).await,
            Err(frame::FrameError::Io(_))
        ));
        let mut big: &[u8] = &f;
        assert!(matches!(
            frame::read::<Entry, _>(&mut big, 4).await,
            Err(frame::FrameError::TooLarge { .. })
        ));
    });
}
