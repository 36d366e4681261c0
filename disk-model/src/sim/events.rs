//! What the disk reports: an event log (hashed into the simulator's trace) and counters.

use serde::Serialize;

use super::device::IoDir;
use super::faults::FaultKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OpKind {
    Open,
    CreateDirAll,
    ListDir,
    Exists,
    Rename,
    RemoveFile,
    RemoveDirAll,
    SyncDir,
    Append,
    Read,
    Sync,
    Truncate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IoCause {
    /// A read that missed the cache (the pages the caller asked for).
    ReadMiss,
    /// Pages read ahead of a sequential reader.
    Readahead,
    /// Read of a partial page before an append into it (read-modify-write).
    PartialPageRead,
    /// The flusher: dirty data above `dirty_background_ratio`.
    BackgroundWriteback,
    /// The flusher: dirty data older than `dirty_expire_centisecs`.
    PeriodicWriteback,
    /// `sync` writing the file's dirty pages.
    Fsync,
    /// A metadata journal commit (`sync` that changed the durable length, `sync_dir`).
    Journal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CrashKind {
    Process,
    PowerLoss,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DiskEvent {
    /// A storage call: when it was made, when it completes, what it returned.
    Op {
        op: OpKind,
        path: String,
        pos: u64,
        len: u64,
        at_ns: u64,
        done_ns: u64,
        /// `None` on success, else the error kind.
        error: Option<String>,
    },
    /// A device IO covering `pages` pages of `inode` from `first_page` (`inode` 0: the journal of
    /// `device`).
    Io {
        /// The device it went to (0 on a one-device disk, and then not serialized).
        #[serde(skip_serializing_if = "is_device_0")]
        device: u32,
        dir: IoDir,
        cause: IoCause,
        inode: u64,
        first_page: u64,
        pages: u64,
        sequential: bool,
        submit_ns: u64,
        start_ns: u64,
        done_ns: u64,
    },
    /// Clean pages dropped from the cache (a run of adjacent pages of one file).
    Evict {
        inode: u64,
        first_page: u64,
        pages: u64,
        at_ns: u64,
    },
    /// A writer held until dirty pages fell below `dirty_ratio`.
    Throttle {
        inode: u64,
        at_ns: u64,
        until_ns: u64,
    },
    /// A fault fired (or was injected, for corruption).
    Fault {
        kind: String,
        path: String,
        at_ns: u64,
        detail: String,
    },
    /// An fsync failure dropped these dirty pages on the floor (fsyncgate).
    FsyncgateDropped {
        inode: u64,
        pages: u64,
        at_ns: u64,
    },
    Crash {
        kind: CrashKind,
        at_ns: u64,
        lost_dirty_pages: u64,
        reverted_ios: u64,
        torn_pages: u64,
    },
    /// A file's storage was freed: unlinked, not in any durable directory, no open handle.
    Freed {
        inode: u64,
        at_ns: u64,
    },
    /// `drop_caches`.
    DropCaches {
        at_ns: u64,
        pages: u64,
    },
    SlowFactor {
        factor: u32,
        at_ns: u64,
        /// The one device slowed; `None`: every device (and then not serialized).
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<u32>,
    },
}

fn is_device_0(device: &u32) -> bool {
    *device == 0
}

impl DiskEvent {
    pub fn fault(kind: FaultKind, path: &str, at_ns: u64, detail: impl Into<String>) -> Self {
        DiskEvent::Fault {
            kind: format!("{kind:?}"),
            path: path.to_string(),
            at_ns,
            detail: detail.into(),
        }
    }
}

/// Counters and gauges of one disk (page cache + device + faults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskStats {
    /// Pages a read found in the cache, and their bytes (whole pages).
    pub cache_hit_pages: u64,
    pub cache_hit_bytes: u64,
    /// Pages a read had to fetch from the device, and their bytes (whole pages).
    pub cache_miss_pages: u64,
    pub cache_miss_bytes: u64,
    /// Pages read ahead of the caller (beyond what it asked).
    pub readahead_pages: u64,
    pub evicted_pages: u64,
    /// Gauge: bytes in the cache.
    pub cached_bytes: u64,
    /// Gauge: dirty bytes, including pages under writeback (what `dirty_ratio` limits).
    pub dirty_bytes: u64,
    /// Gauge: bytes under writeback (issued to the device, not yet complete).
    pub writeback_bytes: u64,
    /// Bytes the flusher and fsync wrote from the cache to the device.
    pub written_back_bytes: u64,
    pub throttled_writes: u64,
    pub throttle_ns: u64,
    pub device_reads: u64,
    pub device_read_bytes: u64,
    pub device_writes: u64,
    pub device_write_bytes: u64,
    pub fsyncs: u64,
    pub faults_fired: u64,
    pub fsyncgate_dropped_pages: u64,
    pub process_crashes: u64,
    pub power_losses: u64,
    pub power_loss_lost_pages: u64,
    pub torn_pages: u64,
    /// Gauge: total length of the files held (what the space limit counts).
    pub used_bytes: u64,
    /// Events not recorded because the undrained log was full.
    pub events_dropped: u64,
}
