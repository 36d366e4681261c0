//! Target `recovery`: segment recovery after an unclean stop (what a broker does at start when a
//! power loss or crash left a torn or corrupt tail).
//!
//! Input: the bytes of a partition's first segment file (`00000000000000000000.log`). The log is
//! opened as after a crash (no clean-shutdown marker, recovery point 0).
//!
//! Oracle: opening never panics and either succeeds or reports an error; after a successful open
//! every offset from the log start to the log end reads back as CRC-valid batches with strictly
//! increasing offsets, and a read at the log end is empty (recovery truncated everything it could
//! not vouch for, and nothing it kept is unreadable).

use std::path::Path;
use std::sync::Arc;

use broker::log::partition_log::{Log, OpenOptions};
use broker::log::LogConfig;
use disk_model::{OsStorage, Storage};

/// Bytes per read while walking the recovered log.
const READ_BYTES_MAX: usize = 1 << 20;

pub struct Harness {
    rt: tokio_real::runtime::Runtime,
    dir: tempfile::TempDir,
    storage: Arc<dyn Storage>,
}

impl Harness {
    pub fn new() -> Self {
        let rt = tokio_real::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let dir = crate::request::scratch_dir();
        let storage: Arc<dyn Storage> = Arc::new(OsStorage::new(dir.path()).expect("storage"));
        Harness { rt, dir, storage }
    }

    pub fn check(&self, data: &[u8]) {
        let part = self.dir.path().join("t-0");
        let _ = std::fs::remove_dir_all(&part);
        std::fs::create_dir_all(&part).expect("a partition dir");
        std::fs::write(part.join("00000000000000000000.log"), data).expect("a segment file");
        self.rt.block_on(open_and_walk(self.storage.clone(), Path::new("t-0")));
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

async fn open_and_walk(storage: Arc<dyn Storage>, dir: &Path) {
    let options = OpenOptions { clean_shutdown: false, recovery_point: 0, log_start_offset: 0 };
    let Ok((log, _report)) =
        Log::open(storage, dir, LogConfig::default(), options, broker::now_ms()).await
    else {
        return;
    };
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(start <= end, "log start {start} above log end {end}");
    let mut next = start;
    while next < end {
        let batches = log
            .read_checked(next, end, READ_BYTES_MAX)
            .await
            .expect("a recovered log reads back CRC-valid");
        assert!(!batches.is_empty(), "nothing readable at {next} below the log end {end}");
        for b in &batches {
            let h = records::BatchHeader::parse(b).expect("a kept batch has a header");
            assert!(h.last_offset() >= next, "offsets go back at {next}");
            next = h.last_offset() + 1;
        }
    }
    let tail = log.read(end, end, READ_BYTES_MAX, true).await.expect("a read at the log end");
    assert!(tail.region.is_none(), "bytes past the log end");
}
