//! The disk seen by the broker.
//!
//! - [`storage`]: the interface (`Storage`, `StorageFile`, `FileRegion`) — the only way broker code
//!   touches files, in either world.
//! - [`os`]: the real backend: std files, `pread`/`pwrite`, `fdatasync`, the OS page cache.
//! - [`clock`]: virtual-time helpers: a precise sleep that bypasses madsim's 1 ms floor, and a
//!   manual clock for single-task tests of the model.
//! - [`sim`] (the model): device profiles, a Linux-like page cache and faults, implementing the same
//!   interface in virtual time.

pub mod clock;
pub mod os;
pub mod sim;
pub mod storage;

pub use os::{raise_fd_limit, OsStorage};
pub use sim::{
    DeviceProfile, DiskEvent, DiskStats, FaultId, FaultKind, FaultRule, PageCacheConfig, SimDisk,
    SimDiskConfig, SimFile,
};
pub use storage::{DirEntry, FileRef, FileRegion, OpenMode, Storage, StorageFile};
