//! The simulated disk: one or more block devices, a Linux-like page cache and injectable faults
//! behind the [`Storage`] interface, deterministic in virtual time.
//!
//! # What the model promises
//!
//! - **Determinism.** Same [`SimDiskConfig::seed`] + same operations at the same times ⇒ the same
//!   results, completion times and [`DiskEvent`] log. Randomness comes only from `ChaCha8Rng`s
//!   seeded from the seed with a salt per stream (faults, tears); only ordered maps are iterated.
//! - **Timing.** Each operation's completion time is computed synchronously in the core
//!   (`state.rs`, explicit `now_ns`), then the caller sleeps until it with the precise clock (no
//!   1 ms floor). The device (`device.rs`) is K channels paying an access latency each, sharing
//!   one transfer bus; an IO starting where the previous one ended is sequential (an HDD pays no
//!   seek or rotation for it). Queued IO waits for the device. Cache hits and namespace
//!   operations cost no time (CPU costs belong to the CPU model).
//! - **Page cache (Linux semantics).** 4 KiB pages, fixed capacity, LRU eviction of clean pages
//!   only. Appends dirty pages and return at once — unless dirty + under-writeback pages exceed
//!   `dirty_ratio`, in which case the writer returns when writeback has brought them back under
//!   (a hard threshold: the proportional ramp of `balance_dirty_pages` is not modeled). Above
//!   `dirty_background_ratio` the flusher writes back, one chunk (`writeback_chunk_kb`) at a time,
//!   the whole inode of the oldest dirty page in page order; every `dirty_writeback_centisecs` it
//!   also writes back inodes holding pages older than `dirty_expire_centisecs`. The flusher is
//!   computed lazily at each operation, at the times it would have run. An append into the middle
//!   of an uncached page reads the page first. Read misses fetch a readahead window
//!   (`read_ahead_kb`, doubling up to `read_ahead_max_kb` while sequential); a hit on the window's
//!   marker page starts the next window asynchronously; a hit on a page still being read waits.
//! - **Several devices (JBOD).** [`SimDiskConfig::mounts`] puts each mount's subtree (a top-level
//!   directory name; `log.dirs=/d0,/d1` on two disks) on its own device, `i + 1` for mount `i`;
//!   the root and every other top-level name are on device 0. All devices have the same profile.
//!   An inode's device is fixed when it is created, by the path it is created at; a rename
//!   between devices fails with EXDEV and changes nothing, as on Linux. Each device has its own
//!   channels and bus, its own journal (a file's `sync` commits its device's journal and pays
//!   its device's `flush_ns`; `sync_dir` commits the directory's device's) and its own flusher
//!   (one writeback worker per bdi). The page cache stays one: one capacity, one LRU (any file's
//!   pages evict any other's), one dirty count, so `dirty_ratio` throttles every writer on the
//!   global dirty + writeback count, and while the global dirty count is over
//!   `dirty_background_ratio`, *every* device with dirty pages writes back, in parallel, the
//!   inode of its own oldest dirty page; the periodic wake-ups write back each device's own
//!   expired inodes. Simplified: Linux also gives each device a share of the thresholds in
//!   proportion to its recent writeout (`wb_calc_thresh`), which lets a device flush below the
//!   global background limit and paces writers per device; not modeled: every device with dirty
//!   pages flushes while the global count is over, and only the global count throttles. With no
//!   mounts there is one device and everything above holds unchanged (same results, times,
//!   events and stats).
//! - **Contents.** Each file has *logical* contents (what reads return) and *durable* contents
//!   (the device). A page entering the cache from the device, or a clean page leaving it, takes
//!   the durable bytes: that is how corruption and fsyncgate become visible. Writeback applies a
//!   page to the durable contents when issued, remembering the old page until the IO completes,
//!   so a power loss can undo it. The durable length grows with writeback of the tail and with
//!   `sync`; `truncate` shortens both lengths at once (a journaled metadata op; it waits for the
//!   file's writeback in flight, like `truncate_inode_pages`).
//! - **sync** writes the file's dirty pages, waits for its writeback in flight, then commits a
//!   4 KiB journal write (ordered mode), and returns when all are on the device.
//! - **Directories.** Creates, renames and deletes change the live namespace at once and become
//!   durable only at `sync_dir` of the parent directory (which costs one journal write). A power
//!   loss restores every directory to its last synced entries: a file created (or a directory
//!   made) since its parent's last `sync_dir` vanishes, a deleted one comes back, a rename is
//!   undone. File *contents* are independent of names: a renamed file keeps its durable data.
//! - **Crashes** act on the whole machine, every device at once. [`SimDisk::crash_process`]: the
//!   process dies, the kernel does not — page cache, dirty pages, flushers and namespace survive;
//!   every handle opened before fails with `ErrorKind::Other` "stale handle after crash" (an
//!   operation in progress when it crashed fails too). [`SimDisk::power_loss`]: additionally
//!   every dirty page is lost; logical contents and lengths revert to durable ones; a write in
//!   flight (on any device) keeps the pages it had transferred and, with torn writes on, a
//!   seeded-random prefix of the 512-byte sectors of the next page. Reads never return bytes
//!   that were never written, except zeros (holes, pages lost by fsyncgate) and deliberately
//!   corrupted bytes.
//! - Unlinked files stay readable through open handles; their storage is freed when no live or
//!   durable directory entry and no handle refers to them.
//!
//! # What it does not model
//!
//! Overwrites (the interface is append-only), O_DIRECT, mmap, sparse-file allocation, block
//! allocation and fragmentation (each file is contiguous on the device, files far apart: any
//! switch between files is a full random access; seek time does not scale with distance), the
//! device's volatile write cache (IO is durable at completion; flushes cost nothing), per-device
//! IO scheduling (FIFO per channel: a read issued while a throttled writer has the flusher's chunks
//! queued waits behind them, where Linux would let reads jump ahead), the active/inactive LRU split, memory pressure from
//! anything but this disk, per-device dirty thresholds (see JBOD above), devices of different
//! profiles, nested mounts, per-cgroup dirty limits, and the CPU cost of copies (hits are free
//! here; the CPU model charges them).
//!
//! # Fault budget
//!
//! | fault | how | limits |
//! |---|---|---|
//! | EIO on read | [`FaultRule`] `ReadError` | only reads that need the device (hits succeed) |
//! | EIO on append | `WriteError` | nothing is written |
//! | fsync failure | `SyncError` | fsyncgate: the file's dirty pages become clean, unwritten; also fails `sync_dir` (entries stay unsynced) |
//! | ENOSPC | `NoSpace` rule, or [`SimDisk::set_space_limit_bytes`] (total file length) | appends only |
//! | latent corruption | [`SimDisk::corrupt`], [`SimDisk::corrupt_random_sector`] | durable bytes flipped (XOR 0xFF); visible on the next read that misses the cache; rewriting the page (writeback) heals it |
//! | slow device | [`SimDisk::set_slow_factor`] (every device), [`SimDisk::set_slow_factor_of`] (one) | service time (access + transfer) × N, 1..=10^6, for IO issued afterwards |
//! | torn writes | [`SimDisk::set_torn_writes`] | at power loss only; at most one torn page per IO in flight |
//! | crashes | [`SimDisk::crash_process`], [`SimDisk::power_loss`] | any time |
//!
//! Rules are scoped to the whole disk or a path prefix (the path a handle was opened with; a
//! mount's name scopes a rule to that device's files), fire with a probability (seeded rng;
//! rules with probability 1 draw nothing) and at most `fires_max` times; at most
//! `FAULT_RULES_MAX` rules at once. Files are at most 1 TiB; a disk has at most `DEVICES_MAX`
//! devices; at most `EVENTS_MAX` undrained events are kept (the rest are counted in
//! `DiskStats::events_dropped`). Stats are the whole disk's (all devices together); IO events
//! name their device (`DiskEvent::Io::device`, omitted from the JSON when 0).

pub mod device;
pub mod events;
pub mod faults;
pub mod file;
pub mod page_cache;
mod state;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

pub use self::device::{Device, DeviceProfile, IoDir, IoTiming, PAGE_SIZE, SECTOR_SIZE};
pub use self::events::{CrashKind, DiskEvent, DiskStats, IoCause, OpKind};
pub use self::faults::{FaultId, FaultKind, FaultRule, FAULT_RULES_MAX};
pub use self::page_cache::PageCacheConfig;
use self::state::Core;
pub use self::state::{DEVICES_MAX, EVENTS_MAX, FILE_BYTES_MAX};
use crate::clock::Clock;
use crate::storage::{DirEntry, FileRef, OpenMode, Storage, StorageFile};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimDiskConfig {
    /// The profile of every device of the disk.
    pub device: DeviceProfile,
    pub page_cache: PageCacheConfig,
    /// The run's seed; the disk salts it per random stream.
    pub seed: u64,
    /// JBOD: mount `i`, a top-level directory name (one normal path component, all distinct),
    /// holds a subtree on device `i + 1`; everything else is on device 0. Empty: one device.
    /// At most `DEVICES_MAX - 1` mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<PathBuf>,
}

impl SimDiskConfig {
    /// `device` with Linux's default page-cache knobs and a 1 GiB cache, one device.
    pub fn new(device: DeviceProfile, seed: u64) -> Self {
        SimDiskConfig { device, page_cache: PageCacheConfig::default(), seed, mounts: Vec::new() }
    }

    /// What [`SimDisk::new`] would panic on.
    pub fn validate(&self) -> Result<(), String> {
        self.device.validate()?;
        self.page_cache.validate()?;
        validate_mounts(&self.mounts).map(drop)
    }
}

/// Checks the mounts of a [`SimDiskConfig`]; returns their names, in order.
fn validate_mounts(mounts: &[PathBuf]) -> Result<Vec<String>, String> {
    use std::path::Component;
    if mounts.len() >= DEVICES_MAX as usize {
        return Err(format!(
            "{} mounts: a disk has at most {DEVICES_MAX} devices (device 0 and one per mount)",
            mounts.len()
        ));
    }
    let mut names: Vec<String> = Vec::with_capacity(mounts.len());
    for mount in mounts {
        let mut components = mount.components();
        let name = match (components.next(), components.next()) {
            (Some(Component::Normal(name)), None) => name.to_str(),
            _ => None,
        };
        let Some(name) = name else {
            return Err(format!("mount {mount:?} is not one top-level UTF-8 directory name"));
        };
        if names.iter().any(|n| n == name) {
            return Err(format!("mount {mount:?} appears twice"));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// A handle on one simulated disk; clones share it.
#[derive(Clone)]
pub struct SimDisk {
    core: Arc<Mutex<Core>>,
    clock: Clock,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimDisk({})", self.lock().device().profile().name)
    }
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    // A panic while holding the lock is an assertion in the model: keep its state inspectable.
    core.lock().unwrap_or_else(|p| p.into_inner())
}

fn stale() -> io::Error {
    io::Error::other("stale handle after crash")
}

impl SimDisk {
    /// Panics if the configuration is invalid (a scenario bug, reported before anything runs).
    pub fn new(config: SimDiskConfig, clock: Clock) -> Self {
        SimDisk { core: Arc::new(Mutex::new(Core::new(&config))), clock }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn stats(&self) -> DiskStats {
        self.lock().stats()
    }

    /// Takes the events recorded since the last drain.
    pub fn drain_events(&self) -> Vec<DiskEvent> {
        self.lock().drain_events()
    }

    pub fn inject_fault(&self, rule: FaultRule) -> FaultId {
        self.lock().faults().inject(rule)
    }

    /// True if the rule was active.
    pub fn clear_fault(&self, id: FaultId) -> bool {
        self.lock().faults().clear(id)
    }

    /// Clears every rule (not the space limit, slow factor or torn writes).
    pub fn clear_faults(&self) {
        self.lock().faults().clear_all()
    }

    /// Appends fail with ENOSPC while the files' total length would exceed `limit` (`None`: no limit).
    pub fn set_space_limit_bytes(&self, limit: Option<u64>) {
        self.lock().faults().space_limit_bytes = limit;
    }

    /// Service time × `factor` for IO issued from now on (1 = healthy), on every device.
    pub fn set_slow_factor(&self, factor: u32) {
        let mut core = self.lock();
        let now = self.clock.now_ns();
        core.set_slow_factor(now, None, factor);
    }

    /// Service time × `factor` for IO issued from now on, on `device` only (panics if the disk
    /// has no such device).
    pub fn set_slow_factor_of(&self, device: u32, factor: u32) {
        let mut core = self.lock();
        let now = self.clock.now_ns();
        core.set_slow_factor(now, Some(device), factor);
    }

    /// How many block devices the disk has: 1 + the number of mounts.
    pub fn devices(&self) -> u32 {
        self.lock().devices()
    }

    /// The device `path` is (or would be) on: its first component's mount, else 0.
    pub fn device_of(&self, path: impl AsRef<Path>) -> u32 {
        self.lock().device_of_path(path.as_ref())
    }

    /// Whether a power loss tears the page an in-flight write is transferring.
    pub fn set_torn_writes(&self, on: bool) {
        self.lock().faults().torn_writes = on;
    }

    /// Flips durable bytes `pos..pos + len` of `path`; returns how many (clipped to the durable
    /// length). Cached copies stay good until evicted.
    pub fn corrupt(&self, path: impl AsRef<Path>, pos: u64, len: u64) -> io::Result<u64> {
        let mut core = self.lock();
        let now = self.clock.now_ns();
        core.corrupt(now, path.as_ref(), pos, len)
    }

    /// Corrupts one random durable 512-byte sector of a random non-empty file under `prefix`.
    pub fn corrupt_random_sector(&self, prefix: impl AsRef<Path>) -> Option<(PathBuf, u64)> {
        let mut core = self.lock();
        let now = self.clock.now_ns();
        core.corrupt_random_sector(now, prefix.as_ref())
    }

    /// Evicts every clean page (`echo 1 > /proc/sys/vm/drop_caches`).
    pub fn drop_caches(&self) {
        let mut core = self.lock();
        let now = self.clock.now_ns();
        core.drop_caches(now)
    }

    /// The process using the disk dies; the page cache survives. Old handles go stale.
    pub fn crash_process(&self) {
        let mut core = self.lock();
        let now = self.clock.now_ns();
        core.crash_process(now)
    }

    /// Power is cut: dirty pages are lost, in-flight writes land in part. Old handles go stale.
    pub fn power_loss(&self) {
        let mut core = self.lock();
        let now = self.clock.now_ns();
        core.power_loss(now)
    }

    /// Forgets everything the disk holds (files, their bytes, the page cache's bookkeeping),
    /// leaving an empty disk of the same devices (mounts) and cache; every open handle goes stale (its
    /// operations fail, its drop is a no-op), as after a crash. For the end of a simulation,
    /// once everything was read from the disk: a finished run's tasks may outlive its runtime,
    /// and with them the disk, so its log bytes would stay in memory through the checks.
    pub fn wipe(&self) {
        self.lock().wipe()
    }

    /// Asserts the model's internal invariants (for tests).
    pub fn check_invariants(&self) {
        self.lock().check()
    }

    /// Runs `f` on the core at the current time, then sleeps until the completion it returns.
    async fn run<T>(
        &self,
        f: impl FnOnce(&mut Core, u64) -> (u64, io::Result<T>),
    ) -> io::Result<T> {
        let (done_ns, result) = {
            let mut core = self.lock();
            let now = self.clock.now_ns();
            f(&mut core, now)
        };
        self.clock.sleep_until_ns(done_ns).await;
        result
    }
}

#[async_trait]
impl Storage for SimDisk {
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let (done_ns, file) = {
            let mut core = self.lock();
            let now = self.clock.now_ns();
            let (done_ns, result) = core.open(now, path, mode);
            let file = result.map(|inode| SimFile {
                core: self.core.clone(),
                clock: self.clock.clone(),
                inode,
                epoch: core.epoch,
                path: crate::storage::check_relative(path).unwrap_or_else(|_| path.to_path_buf()),
            });
            (done_ns, file)
        };
        // Built before the lock is released and dropped after: `SimFile::drop` takes the lock.
        let file = file?;
        self.clock.sleep_until_ns(done_ns).await;
        Ok(Arc::new(file))
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.run(|core, now| core.create_dir_all(now, path)).await
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.run(|core, now| core.list_dir(now, path)).await
    }

    async fn exists(&self, path: &Path) -> io::Result<bool> {
        self.run(|core, now| core.exists(now, path)).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.run(|core, now| core.rename(now, from, to)).await
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.run(|core, now| core.remove(now, path, false)).await
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.run(|core, now| core.remove(now, path, true)).await
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.run(|core, now| core.sync_dir(now, path)).await
    }
}

/// An open file of a [`SimDisk`]. Valid until the process crashes (see the module doc).
pub struct SimFile {
    core: Arc<Mutex<Core>>,
    clock: Clock,
    inode: u64,
    /// The process incarnation that opened it.
    epoch: u64,
    path: PathBuf,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimFile({:?}, inode {})", self.path, self.inode)
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        lock(&self.core).close(self.inode, self.epoch);
    }
}

impl SimFile {
    async fn run<T>(
        &self,
        f: impl FnOnce(&mut Core, u64) -> (u64, io::Result<T>),
    ) -> io::Result<T> {
        let (done_ns, result) = {
            let mut core = lock(&self.core);
            if core.epoch != self.epoch {
                return Err(stale());
            }
            let now = self.clock.now_ns();
            f(&mut core, now)
        };
        self.clock.sleep_until_ns(done_ns).await;
        if lock(&self.core).epoch != self.epoch {
            return Err(stale()); // the process crashed while this operation was in progress
        }
        result
    }

    /// A read of up to `len` bytes at `pos`, its bytes taken from the file by `take`.
    async fn read_with<T>(
        &self,
        pos: u64,
        len: usize,
        take: fn(&file::Content, u64, u64) -> T,
    ) -> io::Result<T> {
        self.run(|core, now| core.read(now, self.inode, &self.path, (pos, len as u64), take)).await
    }
}

#[async_trait]
impl StorageFile for SimFile {
    /// The current length; a stale handle still reports the file's length (it cannot fail).
    fn len(&self) -> u64 {
        lock(&self.core).file_len(self.inode)
    }

    async fn append(&self, data: &[u8]) -> io::Result<u64> {
        self.run(|core, now| core.append(now, self.inode, &self.path, data)).await
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        Ok(Bytes::from(self.read_with(pos, len, file::Content::read).await?))
    }

    async fn read_pieces_at(&self, pos: u64, len: usize) -> io::Result<Vec<Bytes>> {
        self.read_with(pos, len, file::Content::read_pieces).await
    }

    async fn sync(&self) -> io::Result<()> {
        self.run(|core, now| core.sync(now, self.inode, &self.path)).await
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.run(|core, now| core.truncate(now, self.inode, &self.path, len)).await
    }
}
