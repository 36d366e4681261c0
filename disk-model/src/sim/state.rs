//! The pure, synchronous core of the simulated disk: namespace, file contents, page cache policy,
//! flusher, device, faults, crashes. Every operation takes the current time explicitly and
//! returns when it completes; the async wrapper (`mod.rs`) sleeps until then.
//!
//! Time only moves forward (asserted). Work the kernel would do in the background (the flusher)
//! is computed lazily: each operation first catches up on every flusher action due up to "now",
//! issuing those IOs at the times the flusher would have issued them.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::device::{Device, IoDir, PAGE_SIZE, SECTOR_SIZE};
use super::events::{CrashKind, DiskEvent, DiskStats, IoCause, OpKind};
use super::faults::{FaultKind, Faults, TEAR_RNG_SALT};
use super::file::{pages_for, torn_page, Content, Page};
use super::page_cache::{PageCache, PageCacheConfig, PageKey};
use super::SimDiskConfig;
use crate::storage::{check_relative, DirEntry, OpenMode};

/// The root directory's inode. Inode 0 is the journal (in IO events only).
pub const ROOT_INODE: u64 = 1;
const JOURNAL_INODE: u64 = 0;
/// Device address space per file: files are laid out contiguously, one region per inode, so an
/// append-only file is sequential on the device and switching files is a seek.
const FILE_ADDR_BITS: u32 = 40;
/// The largest file (1 TiB): appends beyond fail with EFBIG.
pub const FILE_BYTES_MAX: u64 = 1 << FILE_ADDR_BITS;
/// The journal is a ring of this many pages at device address 0.
const JOURNAL_PAGES: u64 = 32 * 1024;
/// Undrained events kept; beyond, events are counted as dropped (limits on everything).
pub const EVENTS_MAX: usize = 1 << 20;
/// Bound on flusher/throttle iterations in one call: more means a bug, not a big workload.
const LOOP_ITERATIONS_MAX: u64 = 1 << 26;
/// The most devices one disk has (device 0 and one per mount): a scenario with more is a bug.
pub const DEVICES_MAX: u32 = 64;

#[derive(Debug, Clone, Copy, Default)]
struct Readahead {
    /// The page after the previous read: a miss here is sequential.
    next_page: u64,
    window_pages: u64,
    /// End (exclusive) of the last readahead window.
    end_page: u64,
    /// Reading this page (a hit) starts the next window asynchronously.
    marker_page: Option<u64>,
}

#[derive(Debug)]
struct FileNode {
    logical: Content,
    durable: Content,
    ra: Readahead,
}

#[derive(Debug, Default)]
struct DirNode {
    entries: BTreeMap<String, u64>,
    durable_entries: BTreeMap<String, u64>,
    /// Names whose live entry may differ from the durable one (changed since the last
    /// `sync_dir`): every other name has the same entry in both maps. `sync_dir` and power loss
    /// reconcile only these.
    unsynced: BTreeSet<String>,
}

#[derive(Debug)]
enum Node {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Debug)]
struct Inode {
    node: Node,
    /// The device holding it, fixed at creation by the path it was created at (its first
    /// component's mount, else device 0); renames never cross devices.
    device: u32,
    open_handles: u64,
    /// The directories naming this inode, each with how many of its entries do (live and
    /// durable together): the reverse edges the collector walks up to the root.
    parents: BTreeMap<u64, u32>,
}

/// A write to the device that has been issued but may not have completed: its effect on durable
/// contents is applied at issue, and undone (in part: torn) by a power loss before `done_ns`.
#[derive(Debug)]
struct InFlight {
    inode: u64,
    first_page: u64,
    old_pages: Vec<Option<Arc<Page>>>,
    new_pages: Vec<Option<Arc<Page>>>,
    old_len: u64,
    new_len: u64,
    transfer_start_ns: u64,
    done_ns: u64,
}

pub type OpResult<T> = (u64, io::Result<T>);

fn os_error(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn addr(inode: u64, page: u64) -> u64 {
    assert!(page < FILE_BYTES_MAX / PAGE_SIZE);
    (inode << FILE_ADDR_BITS) + page * PAGE_SIZE
}

/// Splits sorted page numbers into runs of adjacent pages, each at most `max` long.
fn runs(pages: &[u64], max: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in pages {
        match out.last_mut() {
            Some((first, n)) if *first + *n == p && *n < max => *n += 1,
            _ => out.push((p, 1)),
        }
    }
    out
}

fn names(path: &Path) -> io::Result<Vec<String>> {
    check_relative(path)?
        .components()
        .map(|c| {
            c.as_os_str().to_str().map(str::to_owned).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("path {path:?} is not UTF-8"))
            })
        })
        .collect()
}

/// One block device behind the disk, with what Linux keeps per device: its filesystem's journal
/// and its writeback worker (one per bdi).
#[derive(Debug)]
struct Bdi {
    device: Device,
    /// The flusher issues its next chunk no earlier than this (it waits for its previous chunk).
    flusher_free_ns: u64,
    journal_page: u64,
}

impl Bdi {
    fn new(device: Device) -> Self {
        Bdi { device, flusher_free_ns: 0, journal_page: 0 }
    }
}

#[derive(Debug)]
pub struct Core {
    cache_config: PageCacheConfig,
    /// Device 0 (the root and every top-level name not a mount), then one per mount.
    bdis: Vec<Bdi>,
    /// The configured mounts, in order: mount `i` is device `i + 1`.
    mounts: Vec<PathBuf>,
    /// Each mount's top-level name and its device.
    mount_device: BTreeMap<String, u32>,
    cache: PageCache,
    faults: Faults,
    tear_rng: ChaCha8Rng,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// In issue order, every device's.
    inflight: Vec<InFlight>,
    /// The process incarnation: handles from an older one are stale.
    pub epoch: u64,
    events: Vec<DiskEvent>,
    stats: DiskStats,
    now_ns: u64,
    /// Inodes that lost a directory entry (live or durable) since the last collection: the only
    /// places reachability can have been lost.
    gc_candidates: BTreeSet<u64>,
    /// Unreachable inodes kept alive by open handles (files only): collected when their last
    /// handle goes (or at a crash).
    orphans: BTreeSet<u64>,
}

impl Core {
    pub fn new(config: &SimDiskConfig) -> Self {
        assert!(config.page_cache.validate().is_ok(), "{:?}", config.page_cache.validate());
        let mounts = super::validate_mounts(&config.mounts);
        assert!(mounts.is_ok(), "{mounts:?}");
        let mount_device: BTreeMap<String, u32> =
            mounts.expect("checked").into_iter().zip(1..).collect();
        let devices = config.mounts.len() as u32 + 1;
        let mut inodes = BTreeMap::new();
        inodes.insert(
            ROOT_INODE,
            Inode {
                node: Node::Dir(DirNode::default()),
                device: 0,
                open_handles: 0,
                parents: BTreeMap::new(),
            },
        );
        Core {
            cache_config: config.page_cache.clone(),
            bdis: (0..devices).map(|_| Bdi::new(Device::new(config.device.clone()))).collect(),
            mounts: config.mounts.clone(),
            mount_device,
            cache: PageCache::with_devices(&config.page_cache, devices),
            faults: Faults::new(config.seed),
            tear_rng: ChaCha8Rng::seed_from_u64(config.seed ^ TEAR_RNG_SALT),
            inodes,
            next_inode: ROOT_INODE + 1,
            inflight: Vec::new(),
            epoch: 0,
            events: Vec::new(),
            stats: DiskStats::default(),
            now_ns: 0,
            gc_candidates: BTreeSet::new(),
            orphans: BTreeSet::new(),
        }
    }

    /// An empty disk of the same device and cache in place of this one; handles of this one go
    /// stale (the epoch moves on).
    pub fn wipe(&mut self) {
        let config = SimDiskConfig {
            device: self.bdis[0].device.profile().clone(),
            page_cache: self.cache_config.clone(),
            seed: 0,
            mounts: self.mounts.clone(),
        };
        let epoch = self.epoch + 1;
        *self = Core::new(&config);
        self.epoch = epoch;
    }

    // ---------------------------------------------------------------- bookkeeping

    fn event(&mut self, event: DiskEvent) {
        if self.events.len() < EVENTS_MAX {
            self.events.push(event);
        } else {
            self.stats.events_dropped += 1;
        }
    }

    pub fn drain_events(&mut self) -> Vec<DiskEvent> {
        std::mem::take(&mut self.events)
    }

    fn op_event<T>(
        &mut self,
        op: OpKind,
        path: &Path,
        pos: u64,
        len: u64,
        at_ns: u64,
        result: &OpResult<T>,
    ) {
        let error = result.1.as_ref().err().map(|e| format!("{e}"));
        self.event(DiskEvent::Op {
            op,
            path: path.display().to_string(),
            pos,
            len,
            at_ns,
            done_ns: result.0,
            error,
        });
    }

    pub fn stats(&self) -> DiskStats {
        let mut s = self.stats.clone();
        let writeback = self.writeback_pages_after(self.now_ns);
        s.cached_bytes = self.cache.cached_pages() * PAGE_SIZE;
        s.writeback_bytes = writeback * PAGE_SIZE;
        s.dirty_bytes = (self.cache.dirty_pages() + writeback) * PAGE_SIZE;
        s
    }

    /// Device 0.
    pub fn device(&mut self) -> &mut Device {
        &mut self.bdis[0].device
    }

    /// How many devices the disk has (1 + the mounts).
    pub fn devices(&self) -> u32 {
        self.bdis.len() as u32
    }

    /// The device of a path given by its names: its first name's mount, else device 0.
    fn device_of_names(&self, names: &[String]) -> u32 {
        if self.mount_device.is_empty() {
            return 0;
        }
        names.first().and_then(|name| self.mount_device.get(name)).copied().unwrap_or(0)
    }

    /// The device a path is on (device 0 for a path that is not a valid relative path).
    pub fn device_of_path(&self, path: &Path) -> u32 {
        names(path).map(|n| self.device_of_names(&n)).unwrap_or(0)
    }

    fn device_of_inode(&self, inode: u64) -> u32 {
        self.inodes.get(&inode).map_or(0, |i| i.device)
    }

    fn bdi_of(&mut self, inode: u64) -> &mut Bdi {
        let device = self.device_of_inode(inode);
        &mut self.bdis[device as usize]
    }

    pub fn faults(&mut self) -> &mut Faults {
        &mut self.faults
    }

    fn file(&self, inode: u64) -> &FileNode {
        match self.inodes.get(&inode).map(|i| &i.node) {
            Some(Node::File(f)) => f,
            other => panic!("inode {inode} is not a file: {other:?}"),
        }
    }

    fn file_mut(&mut self, inode: u64) -> &mut FileNode {
        match self.inodes.get_mut(&inode).map(|i| &mut i.node) {
            Some(Node::File(f)) => f,
            other => panic!("inode {inode} is not a file: {other:?}"),
        }
    }

    fn dir(&self, inode: u64) -> Option<&DirNode> {
        match self.inodes.get(&inode).map(|i| &i.node) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn dir_mut(&mut self, inode: u64) -> &mut DirNode {
        match self.inodes.get_mut(&inode).map(|i| &mut i.node) {
            Some(Node::Dir(d)) => d,
            other => panic!("inode {inode} is not a directory: {other:?}"),
        }
    }

    fn is_dir(&self, inode: u64) -> bool {
        self.dir(inode).is_some()
    }

    pub fn file_len(&self, inode: u64) -> u64 {
        match self.inodes.get(&inode).map(|i| &i.node) {
            Some(Node::File(f)) => f.logical.len(),
            _ => 0,
        }
    }

    /// Moves time to `now_ns`: the flusher catches up, completed IOs retire.
    fn advance(&mut self, now_ns: u64) {
        assert!(now_ns >= self.now_ns, "time went backwards: {now_ns} < {}", self.now_ns);
        self.now_ns = now_ns;
        self.run_flusher(now_ns);
        // Anything still due is after now, so the flushers are idle until at least now.
        for bdi in &mut self.bdis {
            bdi.flusher_free_ns = bdi.flusher_free_ns.max(now_ns);
        }
        self.inflight.retain(|r| r.done_ns > now_ns);
    }

    fn writeback_pages_after(&self, t_ns: u64) -> u64 {
        self.inflight.iter().filter(|r| r.done_ns > t_ns).map(|r| r.old_pages.len() as u64).sum()
    }

    /// Clean pages left the cache: what reads see falls back to the device's contents (which
    /// differ from the cached bytes only after fsyncgate — that is how fsyncgate loses data).
    fn evicted(&mut self, keys: Vec<PageKey>, at_ns: u64) {
        let mut run: Option<(u64, u64, u64)> = None;
        for (inode, page) in keys {
            let file = self.file_mut(inode);
            let durable = file.durable.page(page);
            if page < pages_for(file.logical.len()) {
                file.logical.set_page(page, durable);
                file.logical.zero_tail();
            }
            self.stats.evicted_pages += 1;
            run = match run {
                Some((i, first, n)) if i == inode && first + n == page => Some((i, first, n + 1)),
                Some((i, first, n)) => {
                    self.event(DiskEvent::Evict { inode: i, first_page: first, pages: n, at_ns });
                    Some((inode, page, 1))
                }
                None => Some((inode, page, 1)),
            };
        }
        if let Some((inode, first_page, pages)) = run {
            self.event(DiskEvent::Evict { inode, first_page, pages, at_ns });
        }
    }

    // ---------------------------------------------------------------- device IO

    /// Reads pages `from..to` of `inode` that are not cached into the cache; returns when the
    /// last read completes (or `at_ns` if nothing to read) and the number of pages read.
    fn fill(
        &mut self,
        inode: u64,
        from: u64,
        to: u64,
        at_ns: u64,
        cause: impl Fn(u64) -> IoCause,
    ) -> (u64, u64) {
        let missing: Vec<u64> = (from..to).filter(|&p| !self.cache.contains((inode, p))).collect();
        let mut done_ns = at_ns;
        let device = self.device_of_inode(inode);
        for (first, n) in runs(&missing, self.cache_config.writeback_chunk_pages()) {
            let timing = self.bdis[device as usize].device.submit(
                at_ns,
                IoDir::Read,
                addr(inode, first),
                n * PAGE_SIZE,
            );
            self.stats.device_reads += 1;
            self.stats.device_read_bytes += n * PAGE_SIZE;
            self.event(DiskEvent::Io {
                device,
                dir: IoDir::Read,
                cause: cause(first),
                inode,
                first_page: first,
                pages: n,
                sequential: timing.sequential,
                submit_ns: timing.submit_ns,
                start_ns: timing.start_ns,
                done_ns: timing.done_ns,
            });
            for page in first..first + n {
                let file = self.file_mut(inode);
                // What comes off the device is the durable page (corruption included).
                let durable = file.durable.page(page);
                file.logical.set_page(page, durable);
                file.logical.zero_tail();
                let evicted = self.cache.insert_clean((inode, page), timing.done_ns);
                self.evicted(evicted, at_ns);
            }
            done_ns = done_ns.max(timing.done_ns);
        }
        (done_ns, missing.len() as u64)
    }

    /// Writes dirty `pages` (sorted) of `inode` to the device at `at_ns`; they become clean now
    /// and durable when their IO completes. Returns the last completion.
    fn write_pages(&mut self, inode: u64, pages: &[u64], at_ns: u64, cause: IoCause) -> u64 {
        let mut done_ns = at_ns;
        let device = self.device_of_inode(inode);
        for (first, n) in runs(pages, self.cache_config.writeback_chunk_pages()) {
            let timing = self.bdis[device as usize].device.submit(
                at_ns,
                IoDir::Write,
                addr(inode, first),
                n * PAGE_SIZE,
            );
            let file = self.file_mut(inode);
            let old_len = file.durable.len();
            let new_len = old_len.max(file.logical.len().min((first + n) * PAGE_SIZE));
            assert!(new_len > first * PAGE_SIZE, "writeback of pages past the end of the file");
            file.durable.set_len(new_len);
            let mut old_pages = Vec::with_capacity(n as usize);
            let mut new_pages = Vec::with_capacity(n as usize);
            for page in first..first + n {
                let new = file.logical.page(page);
                old_pages.push(file.durable.page(page));
                file.durable.set_page(page, new.clone());
                new_pages.push(new);
            }
            for page in first..first + n {
                self.cache.mark_clean((inode, page));
            }
            self.inflight.push(InFlight {
                inode,
                first_page: first,
                old_pages,
                new_pages,
                old_len,
                new_len,
                transfer_start_ns: timing.transfer_start_ns,
                done_ns: timing.done_ns,
            });
            self.stats.device_writes += 1;
            self.stats.device_write_bytes += n * PAGE_SIZE;
            self.stats.written_back_bytes += n * PAGE_SIZE;
            self.event(DiskEvent::Io {
                device,
                dir: IoDir::Write,
                cause,
                inode,
                first_page: first,
                pages: n,
                sequential: timing.sequential,
                submit_ns: timing.submit_ns,
                start_ns: timing.start_ns,
                done_ns: timing.done_ns,
            });
            done_ns = done_ns.max(timing.done_ns);
        }
        done_ns
    }

    /// One metadata journal commit on `device` (4 KiB, sequential in its journal ring).
    fn journal_commit(&mut self, device: u32, at_ns: u64) -> u64 {
        let bdi = &mut self.bdis[device as usize];
        let page = bdi.journal_page;
        bdi.journal_page = (bdi.journal_page + 1) % JOURNAL_PAGES;
        let timing = bdi.device.submit(at_ns, IoDir::Write, addr(JOURNAL_INODE, page), PAGE_SIZE);
        self.stats.device_writes += 1;
        self.stats.device_write_bytes += PAGE_SIZE;
        self.event(DiskEvent::Io {
            device,
            dir: IoDir::Write,
            cause: IoCause::Journal,
            inode: JOURNAL_INODE,
            first_page: page,
            pages: 1,
            sequential: timing.sequential,
            submit_ns: timing.submit_ns,
            start_ns: timing.start_ns,
            done_ns: timing.done_ns,
        });
        timing.done_ns
    }

    fn inflight_done_of(&self, inode: u64) -> Option<u64> {
        self.inflight.iter().filter(|r| r.inode == inode).map(|r| r.done_ns).max()
    }

    // ---------------------------------------------------------------- flusher and throttling

    /// Runs the flushers (one per device, one chunk at a time, like the kernel's writeback
    /// workers) up to `until_ns`. The flushers run in parallel: each step takes the device whose
    /// next chunk is due first (ties: the lowest device), so chunks are issued in time order and
    /// each sees the global dirty count as every earlier chunk left it.
    fn run_flusher(&mut self, until_ns: u64) {
        for iteration in 0.. {
            assert!(iteration < LOOP_ITERATIONS_MAX, "flusher does not converge");
            let mut next: Option<(u64, IoCause, u32, u64)> = None;
            for device in 0..self.devices() {
                if let Some((at_ns, cause, inode)) = self.flusher_next(device) {
                    if next.is_none_or(|(first_ns, ..)| at_ns < first_ns) {
                        next = Some((at_ns, cause, device, inode));
                    }
                }
            }
            let Some((at_ns, cause, device, inode)) = next else {
                break;
            };
            if at_ns > until_ns {
                break;
            }
            // Like Linux, write back the whole inode of the oldest dirty page, page order, one chunk.
            let chunk_pages = self.cache_config.writeback_chunk_pages() as usize;
            let pages = self.cache.first_dirty_pages_of(inode, chunk_pages);
            let done_ns = self.write_pages(inode, &pages, at_ns, cause);
            let bdi = &mut self.bdis[device as usize];
            bdi.flusher_free_ns = bdi.flusher_free_ns.max(done_ns);
        }
    }

    /// When `device`'s flusher issues its next chunk if nothing changes before, why, and of which
    /// inode (the one of the device's oldest dirty page); `None` if the device has no dirty page.
    /// Background writeback runs while the global dirty count is over the background limit.
    fn flusher_next(&self, device: u32) -> Option<(u64, IoCause, u64)> {
        let (since_ns, (inode, _)) = self.cache.oldest_dirty_of(device)?;
        let flusher_free_ns = self.bdis[device as usize].flusher_free_ns;
        if self.cache.dirty_pages() > self.cache_config.background_limit_pages() {
            return Some((flusher_free_ns, IoCause::BackgroundWriteback, inode));
        }
        // The first periodic wake-up at which the oldest page has expired.
        let interval_ns = self.cache_config.writeback_interval_ns();
        let wake_ns =
            (since_ns + self.cache_config.expire_ns()).div_ceil(interval_ns) * interval_ns;
        Some((flusher_free_ns.max(wake_ns), IoCause::PeriodicWriteback, inode))
    }

    /// When a writer at `now_ns` may return: once dirty + writeback pages are within
    /// `dirty_ratio` (balance_dirty_pages, without its proportional ramp).
    fn throttle(&mut self, now_ns: u64) -> u64 {
        let limit = self.cache_config.dirty_limit_pages();
        let mut t_ns = now_ns;
        for iteration in 0.. {
            assert!(iteration < LOOP_ITERATIONS_MAX, "throttle does not converge");
            self.run_flusher(t_ns);
            if self.cache.dirty_pages() + self.writeback_pages_after(t_ns) <= limit {
                break;
            }
            // Wait for the next writeback (of any device) to complete, or for a flusher to be
            // free again (its chunk may have been cut short by a truncate); dirty > dirty_ratio >
            // dirty_background_ratio, so every flusher with dirty pages is busy or issued a chunk
            // just now.
            let next_ns = self
                .inflight
                .iter()
                .map(|r| r.done_ns)
                .chain(self.bdis.iter().map(|b| b.flusher_free_ns))
                .filter(|&d| d > t_ns)
                .min();
            t_ns = next_ns.expect(
                "dirty pages over the limit, yet no writeback in flight and the flusher idle",
            );
        }
        t_ns
    }

    // ---------------------------------------------------------------- namespace

    fn lookup(&self, names: &[String]) -> io::Result<u64> {
        let mut inode = ROOT_INODE;
        for name in names {
            let Some(dir) = self.dir(inode) else {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{name:?}: parent is a file"),
                ));
            };
            inode = *dir.entries.get(name).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{name:?} not found"))
            })?;
        }
        Ok(inode)
    }

    fn lookup_parent<'n>(&self, names: &'n [String]) -> io::Result<(u64, &'n str)> {
        let Some((name, parent)) = names.split_last() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the root has no parent"));
        };
        let parent = self.lookup(parent)?;
        if !self.is_dir(parent) {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "parent is a file"));
        }
        Ok((parent, name))
    }

    /// A new inode on `device`.
    fn new_inode(&mut self, node: Node, device: u32) -> u64 {
        let inode = self.next_inode;
        self.next_inode += 1;
        if device != 0 && matches!(node, Node::File(_)) {
            self.cache.set_inode_device(inode, device);
        }
        self.inodes
            .insert(inode, Inode { node, device, open_handles: 0, parents: BTreeMap::new() });
        inode
    }

    // ---------------------------------------------------------------- collection
    //
    // An inode is reachable if a path of directory entries, live or durable, leads to it from the
    // root. Reachability is lost only when an entry goes (rename, remove, `sync_dir` replacing
    // a durable entry, power loss reverting a live one), and once lost it never comes back (new
    // entries are made only in reachable directories, to new or reachable inodes). So the
    // collector starts from the inodes that lost an entry since it last ran (`gc_candidates`),
    // walks up the reverse edges (`Inode::parents`) looking for the root, and from each one
    // found unreachable walks down to its children. Its cost is proportional to what changed
    // (and the depth of the tree), not to the size of the file system; the result — the inodes
    // freed, in inode order, at the same moments — is what a sweep of the whole tree gives
    // (`check` compares the two).

    /// A new entry (live or durable) of directory `parent` names `child`.
    fn link(&mut self, parent: u64, child: u64) {
        let node = self.inodes.get_mut(&child).expect("a linked inode exists");
        *node.parents.entry(parent).or_insert(0) += 1;
    }

    /// An entry (live or durable) of directory `parent` naming `child` went: `child` may have
    /// become unreachable.
    fn unlink(&mut self, parent: u64, child: u64) {
        let node = self.inodes.get_mut(&child).expect("an unlinked inode exists");
        let count = node.parents.get_mut(&parent).expect("the reverse index knows every entry");
        *count -= 1;
        if *count == 0 {
            node.parents.remove(&parent);
        }
        self.gc_candidates.insert(child);
    }

    /// Sets the live entry `name` of directory `dir` (`None`: removes it), keeping the reverse
    /// index and the unsynced names; returns the inode it named before.
    fn set_entry(&mut self, dir: u64, name: &str, child: Option<u64>) -> Option<u64> {
        let d = self.dir_mut(dir);
        let old = match child {
            Some(c) => d.entries.insert(name.to_owned(), c),
            None => d.entries.remove(name),
        };
        if old != child {
            d.unsynced.insert(name.to_owned());
            if let Some(c) = child {
                self.link(dir, c);
            }
            if let Some(c) = old {
                self.unlink(dir, c);
            }
        }
        old
    }

    /// Whether a path of entries leads from the root to `start`, walking up the reverse edges;
    /// nodes in `reachable` are known to be reachable, those in `unreachable` known not to be.
    /// If not, returns every node visited: all of them are unreachable too (each one's parents
    /// were visited or are known unreachable, and none is the root).
    fn reaches_root(
        &self,
        start: u64,
        reachable: &BTreeSet<u64>,
        unreachable: &BTreeSet<u64>,
    ) -> Result<(), Vec<u64>> {
        let mut seen = BTreeSet::from([start]);
        let mut stack = vec![start];
        while let Some(inode) = stack.pop() {
            if inode == ROOT_INODE || reachable.contains(&inode) {
                return Ok(());
            }
            for &parent in self.inodes[&inode].parents.keys() {
                if !unreachable.contains(&parent) && seen.insert(parent) {
                    stack.push(parent);
                }
            }
        }
        Err(seen.into_iter().collect())
    }

    /// Frees inodes reachable neither through live nor durable directory entries and not open.
    fn gc(&mut self, at_ns: u64) {
        let mut dead = BTreeSet::new();
        // Orphans whose last handle went (a crash closes them all).
        let inodes = &self.inodes;
        self.orphans.retain(|inode| {
            let open = inodes[inode].open_handles > 0;
            if !open {
                dead.insert(*inode);
            }
            open
        });
        // Inodes that lost an entry, and below those found unreachable, their children.
        let mut reachable = BTreeSet::new();
        let mut unreachable = BTreeSet::new();
        let mut stack: Vec<u64> = std::mem::take(&mut self.gc_candidates).into_iter().collect();
        while let Some(inode) = stack.pop() {
            if !self.inodes.contains_key(&inode)
                || reachable.contains(&inode)
                || unreachable.contains(&inode)
            {
                continue;
            }
            match self.reaches_root(inode, &reachable, &unreachable) {
                Ok(()) => {
                    reachable.insert(inode);
                }
                Err(lost) => {
                    for lost in lost {
                        if let Some(dir) = self.dir(lost) {
                            stack.extend(dir.entries.values().copied());
                            stack.extend(dir.durable_entries.values().copied());
                        }
                        unreachable.insert(lost);
                    }
                }
            }
        }
        for inode in unreachable {
            if self.inodes[&inode].open_handles > 0 {
                self.orphans.insert(inode);
            } else {
                dead.insert(inode);
            }
        }
        for inode in dead {
            self.free(inode, at_ns);
        }
    }

    /// Frees an unreachable, unopened inode: its pages, its writeback in flight, its bytes.
    fn free(&mut self, inode: u64, at_ns: u64) {
        for page in self.cache.pages_of(inode, 0) {
            self.cache.remove((inode, page));
        }
        self.inflight.retain(|r| r.inode != inode);
        self.cache.forget_inode(inode);
        let freed = self.inodes.remove(&inode).expect("a freed inode exists");
        match freed.node {
            Node::File(f) => self.stats.used_bytes -= f.logical.len(),
            Node::Dir(d) => {
                // Its children lose it as a parent (the unreachable ones are freed with it).
                for child in d.entries.values().chain(d.durable_entries.values()) {
                    if let Some(node) = self.inodes.get_mut(child) {
                        node.parents.remove(&inode);
                    }
                }
            }
        }
        self.event(DiskEvent::Freed { inode, at_ns });
    }

    /// A handle of `inode` from incarnation `epoch` was dropped.
    pub fn close(&mut self, inode: u64, epoch: u64) {
        if epoch != self.epoch {
            return; // its count was reset by the crash
        }
        if let Some(node) = self.inodes.get_mut(&inode) {
            assert!(node.open_handles > 0);
            node.open_handles -= 1;
            if node.open_handles == 0 && !self.orphans.is_empty() {
                let now_ns = self.now_ns;
                self.gc(now_ns);
            }
        }
    }

    pub fn open(&mut self, now_ns: u64, path: &Path, mode: OpenMode) -> OpResult<u64> {
        self.advance(now_ns);
        let result = self.open_inner(path, mode);
        let result = (now_ns, result);
        self.op_event(OpKind::Open, path, 0, 0, now_ns, &result);
        result
    }

    fn open_inner(&mut self, path: &Path, mode: OpenMode) -> io::Result<u64> {
        let names = names(path)?;
        let (parent, name) = self.lookup_parent(&names)?;
        let existing = self.dir(parent).and_then(|d| d.entries.get(name).copied());
        let inode = match existing {
            Some(_) if mode == OpenMode::CreateNew => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{path:?} exists"),
                ))
            }
            Some(inode) if self.is_dir(inode) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{path:?} is a directory"),
                ))
            }
            Some(inode) => inode,
            None if mode == OpenMode::Existing => {
                return Err(io::Error::new(io::ErrorKind::NotFound, format!("{path:?} not found")))
            }
            None => {
                let file = Node::File(FileNode {
                    logical: Content::default(),
                    durable: Content::default(),
                    ra: Readahead::default(),
                });
                let inode = self.new_inode(file, self.device_of_names(&names));
                self.set_entry(parent, name, Some(inode));
                inode
            }
        };
        self.inodes.get_mut(&inode).expect("looked up").open_handles += 1;
        Ok(inode)
    }

    pub fn create_dir_all(&mut self, now_ns: u64, path: &Path) -> OpResult<()> {
        self.advance(now_ns);
        let result = (now_ns, self.create_dir_all_inner(path));
        self.op_event(OpKind::CreateDirAll, path, 0, 0, now_ns, &result);
        result
    }

    fn create_dir_all_inner(&mut self, path: &Path) -> io::Result<()> {
        let mut inode = ROOT_INODE;
        let names = names(path)?;
        let device = self.device_of_names(&names);
        for name in names {
            let Some(dir) = self.dir(inode) else {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{path:?}: a component is a file"),
                ));
            };
            inode = match dir.entries.get(&name) {
                Some(&child) => child,
                None => {
                    let child = self.new_inode(Node::Dir(DirNode::default()), device);
                    self.set_entry(inode, &name, Some(child));
                    child
                }
            };
        }
        if !self.is_dir(inode) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{path:?} is a file"),
            ));
        }
        Ok(())
    }

    pub fn list_dir(&mut self, now_ns: u64, path: &Path) -> OpResult<Vec<DirEntry>> {
        self.advance(now_ns);
        let result =
            names(path).and_then(|n| self.lookup(&n)).and_then(|inode| match self.dir(inode) {
                Some(dir) => Ok(dir
                    .entries
                    .iter()
                    .map(|(name, &child)| DirEntry {
                        name: name.clone(),
                        is_dir: self.is_dir(child),
                    })
                    .collect()),
                None => {
                    Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{path:?} is a file")))
                }
            });
        let result = (now_ns, result);
        self.op_event(OpKind::ListDir, path, 0, 0, now_ns, &result);
        result
    }

    pub fn exists(&mut self, now_ns: u64, path: &Path) -> OpResult<bool> {
        self.advance(now_ns);
        let result = match names(path) {
            Err(e) => Err(e),
            Ok(n) => match self.lookup(&n) {
                Ok(_) => Ok(true),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    Ok(false)
                }
                Err(e) => Err(e),
            },
        };
        let result = (now_ns, result);
        self.op_event(OpKind::Exists, path, 0, 0, now_ns, &result);
        result
    }

    pub fn rename(&mut self, now_ns: u64, from: &Path, to: &Path) -> OpResult<()> {
        self.advance(now_ns);
        let result = (now_ns, self.rename_inner(from, to));
        let label = PathBuf::from(format!("{} -> {}", from.display(), to.display()));
        self.op_event(OpKind::Rename, &label, 0, 0, now_ns, &result);
        self.gc(now_ns);
        result
    }

    fn rename_inner(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let from_names = names(from)?;
        let to_names = names(to)?;
        let (from_parent, from_name) = self.lookup_parent(&from_names)?;
        let source =
            *self.dir(from_parent).and_then(|d| d.entries.get(from_name)).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{from:?} not found"))
            })?;
        let (to_parent, to_name) = self.lookup_parent(&to_names)?;
        if self.device_of_names(&from_names) != self.device_of_names(&to_names) {
            // Like Linux: a rename never moves data between file systems.
            return Err(os_error(libc::EXDEV));
        }
        let source_is_dir = self.is_dir(source);
        if source_is_dir && to_names.len() > from_names.len() && to_names.starts_with(&from_names) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("rename {from:?} into itself"),
            ));
        }
        if let Some(&target) = self.dir(to_parent).and_then(|d| d.entries.get(to_name)) {
            if target == source {
                return Ok(());
            }
            match (source_is_dir, self.dir(target)) {
                (false, Some(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::IsADirectory,
                        format!("{to:?} is a directory"),
                    ))
                }
                (true, None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{to:?} is a file"),
                    ))
                }
                (true, Some(d)) if !d.entries.is_empty() => {
                    return Err(io::Error::new(
                        io::ErrorKind::DirectoryNotEmpty,
                        format!("{to:?} not empty"),
                    ))
                }
                _ => {}
            }
        }
        self.set_entry(from_parent, from_name, None);
        self.set_entry(to_parent, to_name, Some(source));
        Ok(())
    }

    pub fn remove(&mut self, now_ns: u64, path: &Path, dir: bool) -> OpResult<()> {
        self.advance(now_ns);
        let result = (now_ns, self.remove_inner(path, dir));
        let op = if dir { OpKind::RemoveDirAll } else { OpKind::RemoveFile };
        self.op_event(op, path, 0, 0, now_ns, &result);
        self.gc(now_ns);
        result
    }

    fn remove_inner(&mut self, path: &Path, dir: bool) -> io::Result<()> {
        let names = names(path)?;
        let (parent, name) = self.lookup_parent(&names)?;
        let inode = *self.dir(parent).and_then(|d| d.entries.get(name)).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{path:?} not found"))
        })?;
        match (dir, self.is_dir(inode)) {
            (false, true) => {
                Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{path:?} is a directory")))
            }
            (true, false) => {
                Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{path:?} is a file")))
            }
            _ => {
                self.set_entry(parent, name, None);
                Ok(())
            }
        }
    }

    pub fn sync_dir(&mut self, now_ns: u64, path: &Path) -> OpResult<()> {
        self.advance(now_ns);
        let result = self.sync_dir_inner(now_ns, path);
        self.op_event(OpKind::SyncDir, path, 0, 0, now_ns, &result);
        self.gc(now_ns);
        result
    }

    fn sync_dir_inner(&mut self, now_ns: u64, path: &Path) -> OpResult<()> {
        let inode = match names(path).and_then(|n| self.lookup(&n)) {
            Ok(inode) => inode,
            Err(e) => return (now_ns, Err(e)),
        };
        if !self.is_dir(inode) {
            return (
                now_ns,
                Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{path:?} is a file"))),
            );
        }
        if self.fault_fires(FaultKind::SyncError, path, now_ns, || "sync_dir".into()) {
            return (now_ns, Err(os_error(libc::EIO)));
        }
        // The durable entries become the live ones: only the unsynced names can differ.
        let dir = self.dir_mut(inode);
        let mut relinks = Vec::new();
        for name in std::mem::take(&mut dir.unsynced) {
            let live = dir.entries.get(&name).copied();
            let durable = match live {
                Some(child) => dir.durable_entries.insert(name, child),
                None => dir.durable_entries.remove(&name),
            };
            if durable != live {
                relinks.push((durable, live));
            }
        }
        for (durable, live) in relinks {
            if let Some(child) = live {
                self.link(inode, child);
            }
            if let Some(child) = durable {
                self.unlink(inode, child);
            }
        }
        let done_ns = self.journal_commit(self.device_of_inode(inode), now_ns);
        (done_ns, Ok(()))
    }

    // ---------------------------------------------------------------- file IO

    pub fn append(&mut self, now_ns: u64, inode: u64, path: &Path, data: &[u8]) -> OpResult<u64> {
        self.advance(now_ns);
        let result = self.append_inner(now_ns, inode, path, data);
        let pos = result.1.as_ref().copied().unwrap_or_else(|_| self.file_len(inode));
        self.op_event(OpKind::Append, path, pos, data.len() as u64, now_ns, &result);
        result
    }

    /// Whether an injected fault of `kind` fires for `path` now. A firing fault is counted and
    /// traced; `detail` is only built when it fires (appends are the hot path).
    fn fault_fires(
        &mut self,
        kind: FaultKind,
        path: &Path,
        now_ns: u64,
        detail: impl FnOnce() -> String,
    ) -> bool {
        if self.faults.check(kind, path).is_none() {
            return false;
        }
        self.stats.faults_fired += 1;
        self.event(DiskEvent::fault(kind, &path.display().to_string(), now_ns, detail()));
        true
    }

    fn append_inner(&mut self, now_ns: u64, inode: u64, path: &Path, data: &[u8]) -> OpResult<u64> {
        let pos = self.file(inode).logical.len();
        if data.is_empty() {
            return (now_ns, Ok(pos));
        }
        let len = data.len() as u64;
        if pos + len > FILE_BYTES_MAX {
            return (now_ns, Err(os_error(libc::EFBIG)));
        }
        if self
            .fault_fires(FaultKind::WriteError, path, now_ns, || format!("append {len} at {pos}"))
        {
            return (now_ns, Err(os_error(libc::EIO)));
        }
        if self.fault_fires(FaultKind::NoSpace, path, now_ns, || format!("append {len} at {pos}")) {
            return (now_ns, Err(os_error(libc::ENOSPC)));
        }
        if let Some(limit) = self.faults.space_limit_bytes {
            if self.stats.used_bytes + len > limit {
                self.stats.faults_fired += 1;
                self.event(DiskEvent::Fault {
                    kind: "SpaceLimit".into(),
                    path: path.display().to_string(),
                    at_ns: now_ns,
                    detail: format!("used {} + {len} > {limit}", self.stats.used_bytes),
                });
                return (now_ns, Err(os_error(libc::ENOSPC)));
            }
        }

        let mut done_ns = now_ns;
        let first_page = pos / PAGE_SIZE;
        let last_page = (pos + len - 1) / PAGE_SIZE;
        if !pos.is_multiple_of(PAGE_SIZE) && !self.cache.contains((inode, first_page)) {
            // Writing into the middle of a page that is not cached reads it first.
            let (read_done_ns, _) =
                self.fill(inode, first_page, first_page + 1, now_ns, |_| IoCause::PartialPageRead);
            done_ns = read_done_ns;
        }
        // Dirty first (dirty pages are never evicted), then write the bytes.
        for page in first_page..=last_page {
            let evicted = self.cache.mark_dirty((inode, page), now_ns);
            self.evicted(evicted, now_ns);
        }
        self.file_mut(inode).logical.write(pos, data);
        self.stats.used_bytes += len;

        // Kick the flusher if this write crossed the background threshold, then throttle.
        self.run_flusher(now_ns);
        let released_ns = self.throttle(now_ns);
        if released_ns > now_ns {
            self.stats.throttled_writes += 1;
            self.stats.throttle_ns += released_ns - now_ns;
            self.event(DiskEvent::Throttle { inode, at_ns: now_ns, until_ns: released_ns });
        }
        (done_ns.max(released_ns), Ok(pos))
    }

    /// Reads up to `len` bytes at `pos` through the page cache; `take` takes the bytes from the
    /// file ([`Content::read`] copies them, [`Content::read_pieces`] lends full pages): the same
    /// operation, charged and traced the same either way.
    pub fn read<T>(
        &mut self,
        now_ns: u64,
        inode: u64,
        path: &Path,
        (pos, len): (u64, u64),
        take: fn(&Content, u64, u64) -> T,
    ) -> OpResult<T> {
        self.advance(now_ns);
        let (done_ns, range) = self.read_inner(now_ns, inode, path, pos, len);
        let result = (done_ns, range.map(|(p, e)| take(&self.file(inode).logical, p, e)));
        self.op_event(OpKind::Read, path, pos, len, now_ns, &result);
        result
    }

    fn read_inner(
        &mut self,
        now_ns: u64,
        inode: u64,
        path: &Path,
        pos: u64,
        len: u64,
    ) -> OpResult<(u64, u64)> {
        let file_len = self.file(inode).logical.len();
        let end = file_len.min(pos.saturating_add(len));
        if pos >= end {
            return (now_ns, Ok((pos.min(end), end)));
        }
        let first = pos / PAGE_SIZE;
        let last = (end - 1) / PAGE_SIZE;
        let file_pages = pages_for(file_len);
        let mut done_ns = now_ns;
        let mut ra = self.file(inode).ra;
        let mut requested_misses = 0;

        // One pass over the cache for the first miss and the number of misses.
        let (first_miss, misses) = self.cache.misses(inode, first, last);
        if let Some(miss) = first_miss {
            if self.fault_fires(FaultKind::ReadError, path, now_ns, || format!("page {miss}")) {
                // The device tried and failed.
                let device = &mut self.bdi_of(inode).device;
                let timing = device.submit(now_ns, IoDir::Read, addr(inode, miss), PAGE_SIZE);
                return (timing.done_ns, Err(os_error(libc::EIO)));
            }
            requested_misses = misses;
            let sequential = miss == ra.next_page && ra.window_pages > 0;
            let window = if sequential {
                (ra.window_pages * 2).min(self.cache_config.read_ahead_max_pages())
            } else {
                self.cache_config.read_ahead_pages()
            };
            let ra_end = file_pages.min((last + 1).max(miss + window));
            let (fill_done_ns, filled) = self.fill(inode, miss, ra_end, now_ns, |p| {
                if p <= last {
                    IoCause::ReadMiss
                } else {
                    IoCause::Readahead
                }
            });
            done_ns = done_ns.max(fill_done_ns);
            self.stats.cache_miss_pages += requested_misses;
            self.stats.cache_miss_bytes += requested_misses * PAGE_SIZE;
            self.stats.readahead_pages += filled - requested_misses;
            ra.window_pages = window;
            ra.end_page = ra_end;
            ra.marker_page = (last + 1 < ra_end).then_some(last + 1);
        } else if ra.marker_page.is_some_and(|m| (first..=last).contains(&m)) {
            // A hit on the readahead marker: fetch the next window in the background.
            let window = (ra.window_pages * 2).min(self.cache_config.read_ahead_max_pages());
            let start = ra.end_page.max(last + 1);
            let end = file_pages.min(start + window);
            if start < end {
                let (_, filled) = self.fill(inode, start, end, now_ns, |_| IoCause::Readahead);
                self.stats.readahead_pages += filled;
                ra.window_pages = window;
                ra.end_page = end;
                ra.marker_page = Some(start);
            } else {
                ra.marker_page = None;
            }
        }
        // A page still being read (ours or an earlier readahead) is waited for.
        done_ns = done_ns.max(self.cache.touch_range(inode, first, last));
        let hits = last + 1 - first - requested_misses;
        self.stats.cache_hit_pages += hits;
        self.stats.cache_hit_bytes += hits * PAGE_SIZE;
        ra.next_page = last + 1;
        self.file_mut(inode).ra = ra;
        (done_ns, Ok((pos, end)))
    }

    pub fn sync(&mut self, now_ns: u64, inode: u64, path: &Path) -> OpResult<()> {
        self.advance(now_ns);
        let result = self.sync_inner(now_ns, inode, path);
        self.op_event(OpKind::Sync, path, 0, 0, now_ns, &result);
        result
    }

    fn sync_inner(&mut self, now_ns: u64, inode: u64, path: &Path) -> OpResult<()> {
        self.stats.fsyncs += 1;
        let dirty = self.cache.dirty_pages_of(inode);
        if self.fault_fires(FaultKind::SyncError, path, now_ns, || "fsync".into()) {
            // fsyncgate: the error is reported once and the pages are marked clean anyway; the
            // device never got them, so they are gone once evicted or at power loss.
            self.stats.fsyncgate_dropped_pages += dirty.len() as u64;
            self.event(DiskEvent::FsyncgateDropped {
                inode,
                pages: dirty.len() as u64,
                at_ns: now_ns,
            });
            for &page in &dirty {
                self.cache.mark_clean((inode, page));
            }
            return (now_ns, Err(os_error(libc::EIO)));
        }
        let mut done_ns = now_ns;
        let mut metadata = !dirty.is_empty();
        if !dirty.is_empty() {
            done_ns = self.write_pages(inode, &dirty, now_ns, IoCause::Fsync);
        }
        // Writeback the flusher already started must finish too.
        if let Some(inflight_ns) = self.inflight_done_of(inode) {
            done_ns = done_ns.max(inflight_ns);
        }
        let file = self.file_mut(inode);
        let (old_len, new_len) = (file.durable.len(), file.logical.len());
        assert!(old_len <= new_len, "durable length {old_len} beyond logical {new_len}");
        if old_len != new_len {
            // Only after fsyncgate: the length becomes durable, the lost pages read as zeros.
            file.durable.set_len(new_len);
            metadata = true;
        }
        if metadata {
            // Ordered mode: the journal (of the file's device) commits the new size after the
            // data is on the device.
            let device = self.device_of_inode(inode);
            done_ns = self.journal_commit(device, done_ns);
            // The device's cache flush (0 unless a host profile sets `flush_ns`).
            done_ns += self.bdis[device as usize].device.profile().flush_ns;
            if old_len != new_len {
                self.inflight.push(InFlight {
                    inode,
                    first_page: 0,
                    old_pages: Vec::new(),
                    new_pages: Vec::new(),
                    old_len,
                    new_len,
                    transfer_start_ns: done_ns,
                    done_ns,
                });
            }
        }
        (done_ns, Ok(()))
    }

    pub fn truncate(&mut self, now_ns: u64, inode: u64, path: &Path, len: u64) -> OpResult<()> {
        self.advance(now_ns);
        let result = self.truncate_inner(now_ns, inode, path, len);
        self.op_event(OpKind::Truncate, path, len, 0, now_ns, &result);
        result
    }

    fn truncate_inner(&mut self, now_ns: u64, inode: u64, path: &Path, len: u64) -> OpResult<()> {
        let old_len = self.file(inode).logical.len();
        if len > old_len {
            let msg = format!("truncate {path:?} to {len} beyond its length {old_len}");
            return (now_ns, Err(io::Error::new(io::ErrorKind::InvalidInput, msg)));
        }
        // Like truncate_inode_pages: wait for the file's writeback in flight; it has landed then.
        let done_ns = self.inflight_done_of(inode).unwrap_or(now_ns).max(now_ns);
        self.inflight.retain(|r| r.inode != inode);
        let file = self.file_mut(inode);
        file.logical.set_len(len);
        let durable_len = file.durable.len().min(len);
        file.durable.set_len(durable_len);
        file.ra = Readahead::default();
        for page in self.cache.pages_of(inode, pages_for(len)) {
            self.cache.remove((inode, page));
        }
        self.stats.used_bytes -= old_len - len;
        (done_ns, Ok(()))
    }

    // ---------------------------------------------------------------- faults and crashes

    /// Sets the slow factor of every device (`device: None`) or of one.
    pub fn set_slow_factor(&mut self, now_ns: u64, device: Option<u32>, factor: u32) {
        if let Some(d) = device {
            assert!(d < self.devices(), "device {d} of a disk with {} devices", self.devices());
        }
        self.advance(now_ns);
        for (d, bdi) in (0..).zip(&mut self.bdis) {
            if device.is_none_or(|one| one == d) {
                bdi.device.set_slow_factor(factor);
            }
        }
        self.event(DiskEvent::SlowFactor { factor, at_ns: now_ns, device });
    }

    /// Evicts every clean page.
    pub fn drop_caches(&mut self, now_ns: u64) {
        self.advance(now_ns);
        let evicted = self.cache.drop_clean();
        let pages = evicted.len() as u64;
        self.evicted(evicted, now_ns);
        self.event(DiskEvent::DropCaches { at_ns: now_ns, pages });
    }

    /// Flips the durable bytes in `pos..pos + len` of `path` (clipped to the durable length).
    pub fn corrupt(&mut self, now_ns: u64, path: &Path, pos: u64, len: u64) -> io::Result<u64> {
        self.advance(now_ns);
        let inode = names(path).and_then(|n| self.lookup(&n))?;
        if self.is_dir(inode) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{path:?} is a directory"),
            ));
        }
        let file = self.file_mut(inode);
        let end = file.durable.len().min(pos.saturating_add(len));
        if pos >= end {
            return Ok(0);
        }
        file.durable.flip(pos, end, 0xFF);
        self.stats.faults_fired += 1;
        self.event(DiskEvent::Fault {
            kind: "Corruption".into(),
            path: path.display().to_string(),
            at_ns: now_ns,
            detail: format!("durable bytes {pos}..{end} flipped"),
        });
        Ok(end - pos)
    }

    /// Corrupts one random durable sector of a random file under `prefix` (the seeded rng).
    pub fn corrupt_random_sector(&mut self, now_ns: u64, prefix: &Path) -> Option<(PathBuf, u64)> {
        let mut candidates = Vec::new();
        self.collect_files(ROOT_INODE, PathBuf::new(), &mut candidates);
        candidates.retain(|(path, inode)| {
            path.starts_with(prefix) && !self.file(*inode).durable.is_empty()
        });
        if candidates.is_empty() {
            return None;
        }
        let (path, inode) =
            candidates.swap_remove(self.faults.rng().gen_range(0..candidates.len()));
        let sectors = self.file(inode).durable.len().div_ceil(SECTOR_SIZE);
        let pos = self.faults.rng().gen_range(0..sectors) * SECTOR_SIZE;
        self.corrupt(now_ns, &path, pos, SECTOR_SIZE).ok()?;
        Some((path, pos))
    }

    fn collect_files(&self, inode: u64, path: PathBuf, out: &mut Vec<(PathBuf, u64)>) {
        let Some(dir) = self.dir(inode) else {
            out.push((path, inode));
            return;
        };
        for (name, &child) in &dir.entries {
            self.collect_files(child, path.join(name), out);
        }
    }

    /// The process dies; the kernel (page cache, flusher, device) lives on.
    pub fn crash_process(&mut self, now_ns: u64) {
        self.advance(now_ns);
        self.epoch += 1;
        for node in self.inodes.values_mut() {
            node.open_handles = 0;
        }
        self.stats.process_crashes += 1;
        self.event(DiskEvent::Crash {
            kind: CrashKind::Process,
            at_ns: now_ns,
            lost_dirty_pages: 0,
            reverted_ios: 0,
            torn_pages: 0,
        });
        self.gc(now_ns);
    }

    /// The machine loses power: memory is gone, the device keeps what completed; an IO in flight
    /// keeps the pages it had transferred and (with torn writes) a sector prefix of the next.
    pub fn power_loss(&mut self, now_ns: u64) {
        self.advance(now_ns);
        let mut torn_pages = 0;
        let reverted_ios = self.inflight.len() as u64;
        let inflight = std::mem::take(&mut self.inflight);
        for io in inflight.into_iter().rev() {
            assert!(io.done_ns > now_ns);
            let n = io.old_pages.len() as u64;
            let landed = if now_ns <= io.transfer_start_ns || n == 0 {
                0
            } else {
                let num = u128::from(now_ns - io.transfer_start_ns) * u128::from(n);
                u64::try_from(num / u128::from(io.done_ns - io.transfer_start_ns)).expect("fits")
            };
            assert!(landed <= n);
            let mut landed_end = (io.first_page + landed) * PAGE_SIZE;
            let tear = self.faults.torn_writes && landed < n && now_ns > io.transfer_start_ns;
            let torn_sectors =
                if tear { self.tear_rng.gen_range(0..PAGE_SIZE / SECTOR_SIZE) } else { 0 };
            let file = self.file_mut(io.inode);
            for k in landed..n {
                let page = io.first_page + k;
                let old = &io.old_pages[k as usize];
                let restored = if k == landed && torn_sectors > 0 {
                    landed_end += torn_sectors * SECTOR_SIZE;
                    torn_page(old.as_ref(), io.new_pages[k as usize].as_ref(), torn_sectors)
                } else {
                    old.clone()
                };
                if page < pages_for(file.durable.len()) {
                    file.durable.set_page(page, restored);
                }
            }
            let len = if n == 0 { io.old_len } else { io.old_len.max(io.new_len.min(landed_end)) };
            file.durable.set_len(len);
            file.durable.zero_tail();
            if torn_sectors > 0 {
                torn_pages += 1;
            }
        }
        let lost_dirty_pages = self.cache.dirty_pages();
        self.cache.clear();
        let mut used_bytes = 0;
        let mut relinks = Vec::new();
        for (&inode, node) in &mut self.inodes {
            node.open_handles = 0;
            match &mut node.node {
                Node::File(f) => {
                    f.logical = f.durable.clone();
                    f.ra = Readahead::default();
                    used_bytes += f.logical.len();
                }
                // The live entries revert to the durable ones: only the unsynced names differ.
                Node::Dir(d) => {
                    for name in std::mem::take(&mut d.unsynced) {
                        let durable = d.durable_entries.get(&name).copied();
                        let live = match durable {
                            Some(child) => d.entries.insert(name, child),
                            None => d.entries.remove(&name),
                        };
                        if live != durable {
                            relinks.push((inode, live, durable));
                        }
                    }
                }
            }
        }
        for (dir, live, durable) in relinks {
            if let Some(child) = durable {
                self.link(dir, child);
            }
            if let Some(child) = live {
                self.unlink(dir, child);
            }
        }
        self.stats.used_bytes = used_bytes;
        for bdi in &mut self.bdis {
            bdi.device.reset(now_ns);
            bdi.flusher_free_ns = now_ns;
        }
        self.epoch += 1;
        self.stats.power_losses += 1;
        self.stats.power_loss_lost_pages += lost_dirty_pages;
        self.stats.torn_pages += torn_pages;
        self.event(DiskEvent::Crash {
            kind: CrashKind::PowerLoss,
            at_ns: now_ns,
            lost_dirty_pages,
            reverted_ios,
            torn_pages,
        });
        self.gc(now_ns);
    }

    /// Asserts the cross-structure invariants (tests call this after every step).
    pub fn check(&self) {
        self.cache.check();
        assert_eq!(self.bdis.len(), self.mounts.len() + 1, "one device per mount, and device 0");
        assert_eq!(self.cache.devices(), self.devices(), "the cache's devices");
        for bdi in &self.bdis {
            assert!(bdi.journal_page < JOURNAL_PAGES);
        }
        let mut used = 0;
        for (&inode, node) in &self.inodes {
            assert!(node.device < self.devices(), "inode {inode}: device {}", node.device);
            if let Node::File(f) = &node.node {
                assert_eq!(
                    self.cache.device_of(inode),
                    node.device,
                    "inode {inode}: the cache has its pages on another device"
                );
                f.logical.check();
                f.durable.check();
                assert!(
                    f.durable.len() <= f.logical.len(),
                    "inode {inode}: durable longer than logical"
                );
                used += f.logical.len();
                for page in self.cache.pages_of(inode, 0) {
                    assert!(
                        page < pages_for(f.logical.len()),
                        "inode {inode}: cached page {page} past end"
                    );
                }
            }
        }
        assert_eq!(used, self.stats.used_bytes);
        self.check_namespace();
    }

    /// The collector's state against a sweep of the whole tree: every inode is reachable or an
    /// orphan (unreachable, open), nothing freed is still named or cached, the reverse index
    /// and the unsynced names are exact.
    fn check_namespace(&self) {
        assert!(self.gc_candidates.is_empty(), "uncollected candidates");
        let mut reachable = BTreeSet::new();
        let mut stack = vec![ROOT_INODE];
        while let Some(inode) = stack.pop() {
            if !reachable.insert(inode) {
                continue;
            }
            if let Some(dir) = self.dir(inode) {
                stack.extend(dir.entries.values().copied());
                stack.extend(dir.durable_entries.values().copied());
            }
        }
        let mut parents: BTreeMap<u64, BTreeMap<u64, u32>> = BTreeMap::new();
        let mut cached = 0;
        for (&inode, node) in &self.inodes {
            if reachable.contains(&inode) {
                assert!(!self.orphans.contains(&inode), "inode {inode}: reachable orphan");
            } else {
                assert!(
                    self.orphans.contains(&inode) && node.open_handles > 0,
                    "inode {inode}: unreachable and not collected"
                );
                assert!(matches!(node.node, Node::File(_)), "inode {inode}: orphan directory");
            }
            cached += self.cache.pages_of(inode, 0).len() as u64;
            if let Node::Dir(d) = &node.node {
                for (name, &child) in d.entries.iter().chain(&d.durable_entries) {
                    assert!(
                        self.inodes.contains_key(&child),
                        "inode {inode}: entry {name:?} names freed inode {child}"
                    );
                    // Every path naming an inode is on the inode's device: a top-level name's
                    // mount (else device 0), below it the directory's device.
                    let device = if inode == ROOT_INODE {
                        self.device_of_names(std::slice::from_ref(name))
                    } else {
                        node.device
                    };
                    assert_eq!(
                        self.inodes[&child].device, device,
                        "inode {inode}: entry {name:?} names inode {child} of another device"
                    );
                    *parents.entry(child).or_default().entry(inode).or_insert(0) += 1;
                }
                for name in d.entries.keys().chain(d.durable_entries.keys()) {
                    assert!(
                        d.entries.get(name) == d.durable_entries.get(name)
                            || d.unsynced.contains(name),
                        "inode {inode}: entry {name:?} changed but not unsynced"
                    );
                }
            }
        }
        for (&inode, node) in &self.inodes {
            let expected = parents.remove(&inode).unwrap_or_default();
            assert_eq!(node.parents, expected, "inode {inode}: reverse index");
        }
        for orphan in &self.orphans {
            assert!(self.inodes.contains_key(orphan), "freed orphan {orphan}");
        }
        assert_eq!(cached, self.cache.cached_pages(), "pages of freed inodes cached");
        for r in &self.inflight {
            assert!(
                r.inode == JOURNAL_INODE || self.inodes.contains_key(&r.inode),
                "writeback in flight of freed inode {}",
                r.inode
            );
        }
    }
}
