//! Page-cache bookkeeping: which pages are cached, which are dirty and since when, LRU order.
//!
//! The bytes live in the files' `logical` contents (see `file.rs`); this module only tracks page
//! state, so it is small and its invariants are checkable. Policy (when to write back, whom to
//! throttle) lives in `state.rs`, which calls these primitives.
//!
//! One cache serves every device of a disk (JBOD: one page cache, several block devices): one
//! capacity, one LRU, one dirty count. The age index of dirty pages is kept per device, so each
//! device's flusher finds its own oldest dirty page at the front of its queue. The cache knows
//! each inode's device from [`PageCache::set_inode_device`] (inodes not registered are on
//! device 0).
//!
//! Layout (issue 13): each inode's pages are a dense array indexed by page number, and the clean
//! LRU and the age indexes are queues in stamp and time order whose entries go stale instead of
//! being removed (an entry is live while its page still has that stamp, or is still dirty since
//! that time). Stamps only grow and pages are dirtied at the current time, so both queues take
//! their entries at the back (an older time is inserted in order); a queue is swept when it
//! holds more than twice its live entries (and a slack of 64), so stale entries cost at most
//! about what live ones do. A newly dirtied page was three B-tree inserts (2 % of a bench run's
//! instructions, and cache misses beyond that: the bench's CPU time fell 9 % with this layout);
//! now it is an array slot and a queue push. `reference.rs` (tests only) keeps the ordered-map
//! version, which a property test holds this one to, answer for answer.
//!
//! Limits: an inode's array spans page 0 to its highest cached page, 16 bytes a page (a file's
//! content already costs 8 bytes a page of its length, `file.rs`), and is dropped with its last
//! cached page.

use std::collections::{BTreeMap, VecDeque};

#[cfg(test)]
mod reference;
use serde::Serialize;

use super::device::PAGE_SIZE;

/// Linux's knobs, same names and units (`/proc/sys/vm/*`, `/sys/block/*/queue/read_ahead_kb`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageCacheConfig {
    /// Memory available to the page cache.
    pub capacity_bytes: u64,
    /// The flusher starts writing back when dirty pages exceed this share of capacity.
    pub dirty_background_ratio: u32,
    /// Writers are throttled while dirty + under-writeback pages exceed this share of capacity.
    pub dirty_ratio: u32,
    /// Dirty data older than this is written back by the periodic flusher.
    pub dirty_expire_centisecs: u32,
    /// Period of the flusher's wake-ups.
    pub dirty_writeback_centisecs: u32,
    /// The first readahead window on a read miss.
    pub read_ahead_kb: u32,
    /// Sequential readers' window doubles up to this.
    pub read_ahead_max_kb: u32,
    /// The most the flusher writes in one go (Linux: MAX_WRITEBACK_PAGES, 4 MiB).
    pub writeback_chunk_kb: u32,
}

impl Default for PageCacheConfig {
    fn default() -> Self {
        PageCacheConfig {
            capacity_bytes: 1 << 30,
            dirty_background_ratio: 10,
            dirty_ratio: 20,
            dirty_expire_centisecs: 3000,
            dirty_writeback_centisecs: 500,
            read_ahead_kb: 128,
            read_ahead_max_kb: 1024,
            writeback_chunk_kb: 4096,
        }
    }
}

impl PageCacheConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.capacity_bytes < 64 * PAGE_SIZE {
            return Err(format!("page cache of {} bytes is below 64 pages", self.capacity_bytes));
        }
        if !(self.dirty_background_ratio >= 1
            && self.dirty_background_ratio < self.dirty_ratio
            && self.dirty_ratio <= 100)
        {
            return Err(format!(
                "need 1 <= dirty_background_ratio ({}) < dirty_ratio ({}) <= 100",
                self.dirty_background_ratio, self.dirty_ratio
            ));
        }
        if self.dirty_writeback_centisecs == 0 {
            return Err("dirty_writeback_centisecs must be positive (periodic writeback off is not modeled)".into());
        }
        if self.read_ahead_kb < 4
            || self.read_ahead_max_kb < self.read_ahead_kb
            || self.read_ahead_max_kb > 1 << 20
        {
            return Err("need 4 <= read_ahead_kb <= read_ahead_max_kb <= 1 GiB".into());
        }
        if self.writeback_chunk_kb < 4 || self.writeback_chunk_kb > 1 << 20 {
            return Err("writeback_chunk_kb must be in 4..=1 GiB".into());
        }
        Ok(())
    }

    pub fn capacity_pages(&self) -> u64 {
        self.capacity_bytes / PAGE_SIZE
    }
    pub fn background_limit_pages(&self) -> u64 {
        self.capacity_pages() * u64::from(self.dirty_background_ratio) / 100
    }
    pub fn dirty_limit_pages(&self) -> u64 {
        self.capacity_pages() * u64::from(self.dirty_ratio) / 100
    }
    pub fn expire_ns(&self) -> u64 {
        u64::from(self.dirty_expire_centisecs) * 10_000_000
    }
    pub fn writeback_interval_ns(&self) -> u64 {
        u64::from(self.dirty_writeback_centisecs) * 10_000_000
    }
    pub fn read_ahead_pages(&self) -> u64 {
        (u64::from(self.read_ahead_kb) * 1024).div_ceil(PAGE_SIZE)
    }
    pub fn read_ahead_max_pages(&self) -> u64 {
        (u64::from(self.read_ahead_max_kb) * 1024).div_ceil(PAGE_SIZE)
    }
    pub fn writeback_chunk_pages(&self) -> u64 {
        (u64::from(self.writeback_chunk_kb) * 1024).div_ceil(PAGE_SIZE)
    }
}

/// (inode, page index).
pub type PageKey = (u64, u64);

/// One cached page: 16 bytes (a long run caches millions of pages). A page is dirty or clean,
/// never both, so one word holds either when it became dirty (top bit set; re-dirtying keeps the
/// first time, like Linux) or its position in the clean LRU (a stamp, never 0). A word of 0 is a
/// page not cached: a hole in its inode's array.
#[derive(Debug, Clone, Copy)]
struct PageMeta {
    state: u64,
    /// The page's content is in memory from this time on (a read or readahead still in flight
    /// makes a "hit" wait for it).
    ready_ns: u64,
}

const DIRTY: u64 = 1 << 63;
const _: () = assert!(std::mem::size_of::<PageMeta>() == 16);
const ABSENT: PageMeta = PageMeta { state: 0, ready_ns: 0 };

impl PageMeta {
    fn clean(lru_stamp: u64, ready_ns: u64) -> Self {
        let mut m = PageMeta { state: 0, ready_ns };
        m.set_clean(lru_stamp);
        m
    }

    fn dirty(since_ns: u64, ready_ns: u64) -> Self {
        let mut m = PageMeta { state: 0, ready_ns };
        m.set_dirty(since_ns);
        m
    }

    fn is_cached(&self) -> bool {
        self.state != 0
    }

    /// `Some` while dirty: when it became dirty.
    fn dirty_since_ns(&self) -> Option<u64> {
        (self.state & DIRTY != 0).then_some(self.state & !DIRTY)
    }

    /// Position in the clean LRU: `Some` while cached and clean.
    fn lru_stamp(&self) -> Option<u64> {
        (self.state != 0 && self.state & DIRTY == 0).then_some(self.state)
    }

    fn set_clean(&mut self, lru_stamp: u64) {
        assert!(lru_stamp != 0 && lru_stamp < DIRTY, "LRU stamp {lru_stamp} out of range");
        self.state = lru_stamp;
    }

    fn set_dirty(&mut self, since_ns: u64) {
        assert!(since_ns < DIRTY, "dirty since {since_ns} ns overflows");
        self.state = since_ns | DIRTY;
    }
}

/// One inode's cached pages, by page number (holes are [`ABSENT`]); never ends in a hole.
#[derive(Debug)]
struct InodePages {
    metas: Vec<PageMeta>,
    cached: u64,
    dirty: u64,
    /// No page below this one is dirty: where a search for its first dirty pages starts.
    dirty_from: usize,
}

impl InodePages {
    fn new() -> Self {
        InodePages { metas: Vec::new(), cached: 0, dirty: 0, dirty_from: usize::MAX }
    }

    fn get(&self, page: u64) -> Option<&PageMeta> {
        usize::try_from(page).ok().and_then(|p| self.metas.get(p)).filter(|m| m.is_cached())
    }

    fn get_mut(&mut self, page: u64) -> Option<&mut PageMeta> {
        usize::try_from(page).ok().and_then(|p| self.metas.get_mut(p)).filter(|m| m.is_cached())
    }

    /// Page `page`'s slot, growing the array to reach it.
    fn slot(&mut self, page: u64) -> &mut PageMeta {
        let index = usize::try_from(page).expect("a page index fits in memory");
        if index >= self.metas.len() {
            self.metas.resize(index + 1, ABSENT);
        }
        &mut self.metas[index]
    }

    /// Pages `first..=last` as indexes into the array, clipped to it.
    fn span(&self, first: u64, last: u64) -> std::ops::Range<usize> {
        let end = usize::try_from(last).map_or(self.metas.len(), |l| l.saturating_add(1));
        let end = end.min(self.metas.len());
        usize::try_from(first).map_or(end, |f| f.min(end))..end
    }

    /// Cached pages `first..=last` (clipped to the array): (page, meta).
    fn range(&self, first: u64, last: u64) -> impl Iterator<Item = (u64, &PageMeta)> {
        let span = self.span(first, last);
        let start = span.start;
        self.metas[span]
            .iter()
            .enumerate()
            .filter(|(_, m)| m.is_cached())
            .map(move |(i, m)| ((start + i) as u64, m))
    }

    /// Moves `dirty_from` past clean pages and holes (it is a lower bound, so this is optional).
    fn advance_dirty_from(&mut self) {
        if self.dirty == 0 {
            self.dirty_from = usize::MAX;
            return;
        }
        while self.metas.get(self.dirty_from).is_some_and(|m| m.dirty_since_ns().is_none()) {
            self.dirty_from += 1;
        }
    }

    /// Drops trailing holes.
    fn trim(&mut self) {
        while self.metas.last().is_some_and(|m| !m.is_cached()) {
            self.metas.pop();
        }
    }
}

/// A queue of (order, page) entries kept in order, at most about twice as long as the number
/// of its live entries (whose page still has that stamp, or is still dirty since that time).
type StaleQueue = VecDeque<(u64, PageKey)>;

/// A queue is swept once it holds more than twice its live entries and this many more (unit
/// tests sweep at the least excess, so the property test below sees sweeps).
#[cfg(not(test))]
const QUEUE_SLACK: usize = 64;
#[cfg(test)]
const QUEUE_SLACK: usize = 1;

/// Per device: its dirty pages by the time they became dirty, oldest first.
#[derive(Debug, Clone, Default)]
struct AgeIndex {
    queue: StaleQueue,
    /// The device's dirty pages (the queue's live entries, less duplicates).
    dirty: u64,
}

fn meta_of(inodes: &BTreeMap<u64, InodePages>, (inode, page): PageKey) -> Option<&PageMeta> {
    inodes.get(&inode)?.get(page)
}

fn lru_live(inodes: &BTreeMap<u64, InodePages>, &(stamp, key): &(u64, PageKey)) -> bool {
    meta_of(inodes, key).and_then(PageMeta::lru_stamp) == Some(stamp)
}

fn age_live(inodes: &BTreeMap<u64, InodePages>, &(since, key): &(u64, PageKey)) -> bool {
    meta_of(inodes, key).and_then(PageMeta::dirty_since_ns) == Some(since)
}

#[derive(Debug)]
pub struct PageCache {
    capacity_pages: u64,
    /// Each inode with a cached page: its pages.
    inodes: BTreeMap<u64, InodePages>,
    cached: u64,
    dirty: u64,
    /// Clean pages, least recently used first (stamps only grow: a use pushes at the back).
    /// Dirty pages cannot be evicted and have no live entry here.
    clean_lru: StaleQueue,
    dirty_by_age: Vec<AgeIndex>,
    /// The device of each inode not on device 0 (empty on a one-device disk).
    inode_device: BTreeMap<u64, u32>,
    next_stamp: u64,
}

impl PageCache {
    /// The cache of a one-device disk.
    pub fn new(config: &PageCacheConfig) -> Self {
        Self::with_devices(config, 1)
    }

    /// The cache shared by `devices` devices.
    pub fn with_devices(config: &PageCacheConfig, devices: u32) -> Self {
        assert!(devices >= 1, "a disk has at least one device");
        PageCache {
            capacity_pages: config.capacity_pages(),
            inodes: BTreeMap::new(),
            cached: 0,
            dirty: 0,
            clean_lru: VecDeque::new(),
            dirty_by_age: vec![AgeIndex::default(); devices as usize],
            inode_device: BTreeMap::new(),
            next_stamp: 0,
        }
    }

    /// Forgets every page (power loss), keeping the devices and the inodes' devices.
    pub fn clear(&mut self) {
        self.inodes.clear();
        self.cached = 0;
        self.dirty = 0;
        self.clean_lru.clear();
        for age in &mut self.dirty_by_age {
            age.queue.clear();
            age.dirty = 0;
        }
        self.next_stamp = 0;
    }

    pub fn devices(&self) -> u32 {
        self.dirty_by_age.len() as u32
    }

    /// Places `inode` on `device` (before any of its pages is cached).
    pub fn set_inode_device(&mut self, inode: u64, device: u32) {
        assert!(device < self.devices(), "device {device} of {}", self.devices());
        assert!(
            !self.inodes.contains_key(&inode),
            "inode {inode} moved to device {device} with pages cached"
        );
        if device == 0 {
            self.inode_device.remove(&inode);
        } else {
            self.inode_device.insert(inode, device);
        }
    }

    /// Forgets a freed inode's device (it has no page cached).
    pub fn forget_inode(&mut self, inode: u64) {
        self.inode_device.remove(&inode);
    }

    /// The device of `inode`'s pages.
    pub fn device_of(&self, inode: u64) -> u32 {
        if self.inode_device.is_empty() {
            return 0;
        }
        self.inode_device.get(&inode).copied().unwrap_or(0)
    }

    pub fn cached_pages(&self) -> u64 {
        self.cached
    }
    pub fn dirty_pages(&self) -> u64 {
        self.dirty
    }
    pub fn contains(&self, key: PageKey) -> bool {
        meta_of(&self.inodes, key).is_some()
    }
    pub fn is_dirty(&self, key: PageKey) -> bool {
        meta_of(&self.inodes, key).is_some_and(|m| m.dirty_since_ns().is_some())
    }
    pub fn ready_ns(&self, key: PageKey) -> Option<u64> {
        meta_of(&self.inodes, key).map(|m| m.ready_ns)
    }

    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// Puts a clean page at the LRU's young end; sweeps stale entries when they dominate.
    fn lru_push(&mut self, stamp: u64, key: PageKey) {
        debug_assert!(self.clean_lru.back().is_none_or(|&(s, _)| s < stamp), "stamps grow");
        self.clean_lru.push_back((stamp, key));
        self.sweep_lru();
    }

    fn sweep_lru(&mut self) {
        let live = (self.cached - self.dirty) as usize;
        if self.clean_lru.len() > 2 * live + QUEUE_SLACK {
            let inodes = &self.inodes;
            self.clean_lru.retain(|e| lru_live(inodes, e));
        }
    }

    /// Enters a page dirtied at `since_ns` in its device's age index, in (time, page) order: at
    /// the back, unless an older time or a lower page at the same time is there already (the
    /// pages of one write come in page order at one time). A page cleaned and dirtied again
    /// within one nanosecond has two live-looking entries, side by side: they give the same
    /// answer and go stale together, and the count is kept apart.
    fn age_push(&mut self, since_ns: u64, key: PageKey) {
        let device = self.device_of(key.0) as usize;
        let age = &mut self.dirty_by_age[device];
        let entry = (since_ns, key);
        age.dirty += 1;
        match age.queue.back() {
            Some(&last) if last > entry => {
                let at = age.queue.partition_point(|&e| e <= entry);
                age.queue.insert(at, entry);
            }
            _ => age.queue.push_back(entry),
        }
        if age.queue.len() > 2 * age.dirty as usize + QUEUE_SLACK {
            let inodes = &self.inodes;
            age.queue.retain(|e| age_live(inodes, e));
        }
    }

    /// A dirty page of `inode` is no longer dirty: counts, and the age queue's stale front.
    fn age_pop(&mut self, inode: u64) {
        let device = self.device_of(inode) as usize;
        let (inodes, age) = (&self.inodes, &mut self.dirty_by_age[device]);
        age.dirty -= 1;
        while age.queue.front().is_some_and(|e| !age_live(inodes, e)) {
            age.queue.pop_front();
        }
    }

    /// Marks a cached page as just used.
    pub fn touch(&mut self, key: PageKey) {
        let stamp = self.stamp();
        let Some(meta) = self.inodes.get_mut(&key.0).and_then(|p| p.get_mut(key.1)) else {
            return;
        };
        if meta.lru_stamp().is_some() {
            meta.set_clean(stamp);
            self.lru_push(stamp, key);
        }
    }

    /// Pages `first..=last` of `inode` that are not cached: the first of them and how many.
    pub fn misses(&self, inode: u64, first: u64, last: u64) -> (Option<u64>, u64) {
        let pages = self.inodes.get(&inode);
        let (mut first_miss, mut count) = (None, 0);
        for page in first..=last {
            if pages.and_then(|p| p.get(page)).is_none() {
                first_miss = first_miss.or(Some(page));
                count += 1;
            }
        }
        (first_miss, count)
    }

    /// Touches every cached page of `inode` in `first..=last`, in page order (as [`Self::touch`]
    /// one by one), and returns the latest time one of them is ready (0 if none is cached).
    pub fn touch_range(&mut self, inode: u64, first: u64, last: u64) -> u64 {
        let Some(pages) = self.inodes.get_mut(&inode) else {
            return 0;
        };
        let span = pages.span(first, last);
        let start = span.start;
        let mut ready_ns_max = 0;
        for (i, meta) in pages.metas[span].iter_mut().enumerate() {
            if !meta.is_cached() {
                continue;
            }
            ready_ns_max = ready_ns_max.max(meta.ready_ns);
            self.next_stamp += 1;
            if meta.lru_stamp().is_some() {
                meta.set_clean(self.next_stamp);
                self.clean_lru.push_back((self.next_stamp, (inode, (start + i) as u64)));
            }
        }
        self.sweep_lru();
        ready_ns_max
    }

    /// Adds a clean page (filled from the device); returns the pages evicted to make room.
    pub fn insert_clean(&mut self, key: PageKey, ready_ns: u64) -> Vec<PageKey> {
        assert!(!self.contains(key), "page {key:?} already cached");
        let stamp = self.stamp();
        let pages = self.inodes.entry(key.0).or_insert_with(InodePages::new);
        *pages.slot(key.1) = PageMeta::clean(stamp, ready_ns);
        pages.cached += 1;
        self.cached += 1;
        self.lru_push(stamp, key);
        self.evict_to_capacity(Some(key))
    }

    /// Dirties a page (caching it if absent); returns the pages evicted to make room.
    pub fn mark_dirty(&mut self, key: PageKey, now_ns: u64) -> Vec<PageKey> {
        let pages = self.inodes.entry(key.0).or_insert_with(InodePages::new);
        let meta = pages.slot(key.1);
        let added = !meta.is_cached();
        if added {
            *meta = PageMeta::dirty(now_ns, now_ns);
            pages.cached += 1;
            self.cached += 1;
        } else if meta.lru_stamp().is_some() {
            // Its LRU entry goes stale.
            meta.set_dirty(now_ns);
            meta.ready_ns = meta.ready_ns.min(now_ns);
        } else {
            return Vec::new(); // already dirty: it keeps its first time
        }
        pages.dirty += 1;
        pages.dirty_from = pages.dirty_from.min(key.1 as usize);
        self.dirty += 1;
        self.age_push(now_ns, key);
        if added {
            self.evict_to_capacity(None)
        } else {
            Vec::new()
        }
    }

    /// A dirty page became clean (written back, or its writeback error was swallowed).
    pub fn mark_clean(&mut self, key: PageKey) {
        let stamp = self.stamp();
        let pages = self.inodes.get_mut(&key.0).expect("mark_clean of an uncached page");
        let meta = pages.get_mut(key.1).expect("mark_clean of an uncached page");
        meta.dirty_since_ns().expect("mark_clean of a clean page");
        meta.set_clean(stamp);
        pages.dirty -= 1;
        pages.advance_dirty_from();
        self.dirty -= 1;
        self.age_pop(key.0);
        self.lru_push(stamp, key);
    }

    /// Drops a page whatever its state (truncate, delete, power loss). True if it was dirty.
    pub fn remove(&mut self, key: PageKey) -> bool {
        let Some(pages) = self.inodes.get_mut(&key.0) else {
            return false;
        };
        let Some(meta) = pages.get_mut(key.1) else {
            return false;
        };
        let was_dirty = std::mem::replace(meta, ABSENT).dirty_since_ns().is_some();
        pages.cached -= 1;
        self.cached -= 1;
        if was_dirty {
            pages.dirty -= 1;
            self.dirty -= 1;
        }
        pages.trim();
        if pages.cached == 0 {
            self.inodes.remove(&key.0);
        }
        if was_dirty {
            self.age_pop(key.0);
        }
        was_dirty
    }

    /// The cached pages of `inode` from page `first` on, in page order.
    pub fn pages_of(&self, inode: u64, first: u64) -> Vec<u64> {
        self.inodes
            .get(&inode)
            .map_or_else(Vec::new, |p| p.range(first, u64::MAX).map(|(page, _)| page).collect())
    }

    /// The dirty pages of `inode`, in page order.
    pub fn dirty_pages_of(&self, inode: u64) -> Vec<u64> {
        self.first_dirty_pages_of(inode, usize::MAX)
    }

    /// The first `count_max` dirty pages of `inode`, in page order: one writeback chunk without
    /// listing the rest (a segment can hold hundreds of thousands of dirty pages, and the
    /// flusher takes a chunk at a time).
    pub fn first_dirty_pages_of(&self, inode: u64, count_max: usize) -> Vec<u64> {
        let Some(pages) = self.inodes.get(&inode).filter(|p| p.dirty > 0) else {
            return Vec::new();
        };
        let count = count_max.min(pages.dirty as usize);
        let from = pages.dirty_from.min(pages.metas.len());
        let dirty =
            pages.metas[from..].iter().enumerate().filter(|(_, m)| m.dirty_since_ns().is_some());
        dirty.map(|(i, _)| (from + i) as u64).take(count).collect()
    }

    /// The oldest dirty page (of any device) and when it was dirtied; ties go to the lowest
    /// device.
    pub fn oldest_dirty(&self) -> Option<(u64, PageKey)> {
        (0..self.devices()).filter_map(|d| self.oldest_dirty_of(d)).min_by_key(|o| o.0)
    }

    /// The oldest dirty page of `device` and when it was dirtied (of pages dirtied at the same
    /// time, the lowest (inode, page)): its age queue's front, which is always live.
    pub fn oldest_dirty_of(&self, device: u32) -> Option<(u64, PageKey)> {
        self.dirty_by_age[device as usize].queue.front().copied()
    }

    /// How many dirty pages `device` has.
    pub fn dirty_pages_on(&self, device: u32) -> u64 {
        self.dirty_by_age[device as usize].dirty
    }

    /// The least recently used clean page, stale entries before it dropped.
    fn lru_first(&mut self) -> Option<PageKey> {
        let inodes = &self.inodes;
        while let Some(entry) = self.clean_lru.front() {
            if lru_live(inodes, entry) {
                return Some(entry.1);
            }
            self.clean_lru.pop_front();
        }
        None
    }

    /// Evicts the least recently used clean page, if any.
    pub fn evict_one(&mut self) -> Option<PageKey> {
        let key = self.lru_first()?;
        self.clean_lru.pop_front();
        let was_dirty = self.remove(key);
        assert!(!was_dirty, "LRU page {key:?} is dirty");
        Some(key)
    }

    /// Evicts every clean page (`echo 1 > /proc/sys/vm/drop_caches`).
    pub fn drop_clean(&mut self) -> Vec<PageKey> {
        let mut out = Vec::with_capacity((self.cached - self.dirty) as usize);
        while let Some(key) = self.evict_one() {
            out.push(key);
        }
        out
    }

    /// Evicts clean LRU pages until within capacity (never `keep`). With only dirty pages left
    /// the cache overflows for a moment, as Linux reclaim would stall; throttling bounds dirty
    /// pages to `dirty_ratio`, so this happens only when one write exceeds the whole cache.
    fn evict_to_capacity(&mut self, keep: Option<PageKey>) -> Vec<PageKey> {
        let mut out = Vec::new();
        while self.cached > self.capacity_pages {
            let Some(key) = self.lru_first() else {
                break;
            };
            if Some(key) == keep {
                // Only the page being inserted is clean: keep it, the cache overflows for now.
                break;
            }
            let evicted = self.evict_one();
            assert_eq!(evicted, Some(key));
            out.push(key);
        }
        out
    }

    /// Asserts the bookkeeping agrees: each inode's counts and search start, the totals, every
    /// clean page live once in the LRU (in stamp order), every dirty page live in its device's
    /// age index (in time order) and no other live entry there. Counting is enough: a live
    /// entry names a page in that state by definition, and a page has one stamp and one time,
    /// so as many distinct live entries as pages in the state is one entry per page.
    pub fn check(&self) {
        let (mut cached, mut dirty) = (0, 0);
        let mut dirty_on = vec![0u64; self.dirty_by_age.len()];
        for (&inode, pages) in &self.inodes {
            let (mut c, mut d) = (0, 0);
            for (page, meta) in pages.range(0, u64::MAX) {
                c += 1;
                if meta.dirty_since_ns().is_some() {
                    d += 1;
                    assert!(page as usize >= pages.dirty_from, "inode {inode}: page {page} dirty");
                }
            }
            assert_eq!((pages.cached, pages.dirty), (c, d), "inode {inode}: counts");
            assert!(
                c > 0 && pages.metas.last().is_some_and(PageMeta::is_cached),
                "inode {inode}: trailing holes"
            );
            (cached, dirty) = (cached + c, dirty + d);
            dirty_on[self.device_of(inode) as usize] += d;
        }
        assert_eq!((self.cached, self.dirty), (cached, dirty));
        let live: Vec<_> = self.clean_lru.iter().filter(|e| lru_live(&self.inodes, e)).collect();
        assert!(live.windows(2).all(|w| w[0].0 < w[1].0), "LRU out of stamp order");
        assert_eq!(live.len() as u64, cached - dirty, "clean pages against live LRU entries");
        for (&inode, &device) in &self.inode_device {
            assert!(device != 0 && device < self.devices(), "inode {inode}: device {device}");
        }
        for (device, age) in self.dirty_by_age.iter().enumerate() {
            assert!(
                age.queue.iter().zip(age.queue.iter().skip(1)).all(|(a, b)| a <= b),
                "age index out of (time, page) order"
            );
            assert!(age.queue.front().is_none_or(|e| age_live(&self.inodes, e)), "stale front");
            let mut live: Vec<_> =
                age.queue.iter().filter(|e| age_live(&self.inodes, e)).copied().collect();
            assert!(live.iter().all(|e| self.device_of(e.1 .0) as usize == device));
            live.dedup(); // a page cleaned and dirtied again within a nanosecond (side by side)
            assert_eq!(live.len() as u64, dirty_on[device], "device {device}: age index");
            assert_eq!(age.dirty, dirty_on[device], "device {device}: dirty count");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> PageCache {
        PageCache::new(&PageCacheConfig { capacity_bytes: 64 * PAGE_SIZE, ..Default::default() })
    }

    #[test]
    fn lru_evicts_oldest_clean_only() {
        let mut c = small();
        for p in 0..64 {
            assert!(c.insert_clean((1, p), 0).is_empty());
        }
        c.mark_dirty((1, 0), 5);
        c.touch((1, 1));
        let evicted = c.mark_dirty((2, 0), 6);
        assert_eq!(evicted, vec![(1, 2)], "page 0 is dirty, page 1 was touched");
        c.check();
        assert_eq!(c.oldest_dirty(), Some((5, (1, 0))));
        c.mark_clean((1, 0));
        assert_eq!(c.dirty_pages(), 1);
        assert_eq!(c.dirty_pages_of(2), vec![0]);
        c.check();
    }

    /// A writeback chunk is the first dirty pages of the inode in page order, never another
    /// inode's, however many the inode has.
    #[test]
    fn a_chunk_is_the_first_dirty_pages_of_its_inode() {
        let mut c = small();
        for (inode, page, at_ns) in [(2, 9, 1), (1, 7, 2), (2, 3, 3), (2, 5, 4), (3, 0, 5)] {
            assert!(c.mark_dirty((inode, page), at_ns).is_empty());
        }
        assert_eq!(c.first_dirty_pages_of(2, 2), vec![3, 5]);
        assert_eq!(c.first_dirty_pages_of(2, 10), vec![3, 5, 9]);
        assert_eq!(c.first_dirty_pages_of(2, 10), c.dirty_pages_of(2));
        assert_eq!(c.first_dirty_pages_of(4, 10), Vec::<u64>::new());
        assert_eq!(c.first_dirty_pages_of(1, 0), Vec::<u64>::new());
    }

    /// Each device's age index holds its own dirty pages; the global oldest is the oldest of
    /// theirs; power loss (`clear`) keeps the inodes' devices.
    #[test]
    fn the_age_index_is_per_device() {
        let config = PageCacheConfig { capacity_bytes: 64 * PAGE_SIZE, ..Default::default() };
        let mut c = PageCache::with_devices(&config, 3);
        c.set_inode_device(7, 2);
        c.set_inode_device(8, 1);
        for (inode, page, at_ns) in [(7, 0, 3), (1, 4, 5), (8, 1, 2), (7, 1, 1), (1, 0, 9)] {
            assert!(c.mark_dirty((inode, page), at_ns).is_empty());
        }
        assert_eq!(c.oldest_dirty_of(0), Some((5, (1, 4))));
        assert_eq!(c.oldest_dirty_of(1), Some((2, (8, 1))));
        assert_eq!(c.oldest_dirty_of(2), Some((1, (7, 1))));
        assert_eq!(c.oldest_dirty(), Some((1, (7, 1))));
        assert_eq!([0, 1, 2].map(|d| c.dirty_pages_on(d)), [2, 1, 2]);
        c.mark_clean((7, 1));
        assert!(c.remove((8, 1)));
        assert_eq!(c.oldest_dirty_of(2), Some((3, (7, 0))));
        assert_eq!(c.oldest_dirty_of(1), None);
        assert_eq!(c.oldest_dirty(), Some((3, (7, 0))));
        c.check();
        c.clear();
        assert_eq!((c.cached_pages(), c.devices(), c.device_of(7)), (0, 3, 2));
        c.check();
    }

    /// The range walks give what the per-page primitives give: misses as `contains` page by page,
    /// and `touch_range` the same LRU order (so the same evictions) and readiness as `touch`.
    #[test]
    fn range_walks_match_page_by_page() {
        let build = || {
            let mut c = small();
            for p in [0, 1, 3, 4, 7] {
                assert!(c.insert_clean((1, p), 10 * p).is_empty());
            }
            assert!(c.insert_clean((2, 5), 999).is_empty());
            c.mark_dirty((1, 3), 5);
            c
        };
        let (mut one, mut range) = (build(), build());
        let first_miss = (0..=8).find(|&p| !one.contains((1, p)));
        let count = (0..=8).filter(|&p| !one.contains((1, p))).count() as u64;
        assert_eq!(range.misses(1, 0, 8), (first_miss, count));
        assert_eq!(range.misses(1, 0, 1), (None, 0));
        assert_eq!(range.misses(1, 5, 6), (Some(5), 2));
        let mut ready_max = 0;
        for p in 1..=7 {
            if let Some(ready) = one.ready_ns((1, p)) {
                ready_max = ready_max.max(ready);
                one.touch((1, p));
            }
        }
        assert_eq!(range.touch_range(1, 1, 7), ready_max);
        assert_eq!(ready_max, 70, "page 7 is the last to be ready");
        assert_eq!(one.drop_clean(), range.drop_clean(), "same LRU order");
        range.check();
    }

    /// A page used over and over, or dirtied and cleaned over and over, leaves stale queue
    /// entries; the sweeps keep each queue within twice its live entries (and the slack).
    #[test]
    fn the_queues_stay_within_twice_their_live_entries() {
        let mut c = small();
        for p in 0..10 {
            assert!(c.insert_clean((1, p), 0).is_empty());
        }
        // Page 9 stays dirty at the age queue's front: page 5's stale entries pile up behind it.
        c.mark_dirty((1, 9), 0);
        let (mut lru_max, mut age_max) = (0, 0);
        for round in 1..1000 {
            c.touch((1, round % 3));
            c.mark_dirty((1, 5), round);
            c.mark_clean((1, 5));
            lru_max = lru_max.max(c.clean_lru.len());
            age_max = age_max.max(c.dirty_by_age[0].queue.len());
        }
        c.check();
        assert_eq!((c.cached_pages(), c.dirty_pages()), (10, 1));
        assert_eq!(c.oldest_dirty(), Some((0, (1, 9))));
        assert!(lru_max <= 2 * 10 + QUEUE_SLACK + 1, "LRU queue reached {lru_max}");
        assert!(age_max <= 2 * 2 + QUEUE_SLACK + 1, "age queue reached {age_max}");
        assert_eq!(c.drop_clean().len(), 9);
        assert!(c.clean_lru.is_empty(), "the last eviction takes the stale entries too");
    }

    /// One operation of the property test below.
    #[derive(Debug, Clone, Copy)]
    enum Op {
        Touch(PageKey),
        TouchRange(u64, u64, u64),
        Misses(u64, u64, u64),
        InsertClean(PageKey, u64),
        MarkDirty(PageKey, u64),
        MarkClean(PageKey),
        Remove(PageKey),
        PagesOf(u64, u64),
        FirstDirty(u64, usize),
        EvictOne,
        DropClean,
        Clear,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let key = || (1u64..5, 0u64..16);
        // Times mostly grow with the step, sometimes repeat or go back (tests dirty pages
        // out of order).
        let time = || prop_oneof![6 => 0u64..4, 1 => Just(u64::MAX)];
        let (evict, drop, clear) = (Op::EvictOne, Op::DropClean, Op::Clear);
        prop_oneof![
            3 => key().prop_map(Op::Touch),
            3 => (1u64..5, 0u64..16, 0u64..12).prop_map(|(i, f, n)| Op::TouchRange(i, f, f + n)),
            2 => (1u64..5, 0u64..16, 0u64..12).prop_map(|(i, f, n)| Op::Misses(i, f, f + n)),
            4 => (key(), 0u64..1000).prop_map(|(k, r)| Op::InsertClean(k, r)),
            8 => (key(), time()).prop_map(|(k, t)| Op::MarkDirty(k, t)),
            5 => key().prop_map(Op::MarkClean),
            3 => key().prop_map(Op::Remove),
            1 => (1u64..5, 0u64..20).prop_map(|(i, f)| Op::PagesOf(i, f)),
            2 => (1u64..5, 0usize..6).prop_map(|(i, n)| Op::FirstDirty(i, n)),
            // Rarer: dropping every clean page, and power loss (which empties the cache).
            1 => Just(Op::EvictOne),
            1 => proptest::bool::weighted(0.2).prop_map(move |all| if all { drop } else { evict }),
            1 => proptest::bool::weighted(0.1).prop_map(move |all| if all { clear } else { evict }),
        ]
    }

    /// Applies `op` to both caches and gives both answers, as text.
    fn step(
        dense: &mut PageCache,
        model: &mut reference::PageCache,
        now_ns: &mut u64,
        op: Op,
    ) -> (String, String) {
        macro_rules! both {
            ($c:ident => $e:expr) => {{
                let a = {
                    let $c = &mut *dense;
                    format!("{:?}", $e)
                };
                let b = {
                    let $c = &mut *model;
                    format!("{:?}", $e)
                };
                (a, b)
            }};
        }
        match op {
            Op::Touch(k) => both!(c => c.touch(k)),
            Op::TouchRange(i, f, l) => both!(c => c.touch_range(i, f, l)),
            Op::Misses(i, f, l) => both!(c => c.misses(i, f, l)),
            Op::InsertClean(k, r) if !model.contains(k) => both!(c => c.insert_clean(k, r)),
            Op::MarkDirty(k, step) => {
                // u64::MAX: a time before the last (the reference takes any order).
                let at_ns = if step == u64::MAX { *now_ns / 2 } else { *now_ns + step };
                *now_ns = (*now_ns).max(at_ns);
                both!(c => c.mark_dirty(k, at_ns))
            }
            Op::MarkClean(k) if model.is_dirty(k) => both!(c => c.mark_clean(k)),
            Op::InsertClean(..) | Op::MarkClean(_) => (String::new(), String::new()),
            Op::Remove(k) => both!(c => c.remove(k)),
            Op::PagesOf(i, f) => both!(c => c.pages_of(i, f)),
            Op::FirstDirty(i, n) => both!(c => (c.first_dirty_pages_of(i, n), c.dirty_pages_of(i))),
            Op::EvictOne => both!(c => c.evict_one()),
            Op::DropClean => both!(c => c.drop_clean()),
            Op::Clear => both!(c => c.clear()),
        }
    }

    /// Everything the caches say about their state, as text: totals, the oldest dirty page
    /// of each device and overall, and each page's state (4 inodes × 28 pages, some never cached).
    fn state(dense: &PageCache, model: &reference::PageCache) -> (String, String) {
        macro_rules! of {
            ($c:expr) => {{
                let c = $c;
                let pages: Vec<_> = (1..5)
                    .flat_map(|i| (0..28).map(move |p| (i, p)))
                    .map(|k| (c.contains(k), c.is_dirty(k), c.ready_ns(k)))
                    .collect();
                let devices = [0, 1].map(|d| (c.oldest_dirty_of(d), c.dirty_pages_on(d)));
                format!(
                    "{} {} {:?} {devices:?} {pages:?}",
                    c.cached_pages(),
                    c.dirty_pages(),
                    c.oldest_dirty()
                )
            }};
        }
        (of!(dense), of!(model))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// The dense cache answers every operation as the ordered-map reference does: the same
        /// evictions in the same order, the same oldest dirty page of each device (ties on time
        /// by page), the same dirty chunks, misses and readiness; both pass their checks after
        /// every step. A 24-page cache over four inodes of 16 pages on two devices, so evictions,
        /// stale queue entries and sweeps all happen.
        #[test]
        fn the_dense_cache_answers_as_the_ordered_maps(
            ops in proptest::collection::vec(op(), 1..400),
        ) {
            let config = PageCacheConfig { capacity_bytes: 24 * PAGE_SIZE, ..Default::default() };
            let mut dense = PageCache::with_devices(&config, 2);
            let mut model = reference::PageCache::with_devices(&config, 2);
            for inode in [2, 4] {
                dense.set_inode_device(inode, 1);
                model.set_inode_device(inode, 1);
            }
            let mut now_ns = 0;
            for op in ops {
                let (a, b) = step(&mut dense, &mut model, &mut now_ns, op);
                proptest::prop_assert_eq!(a, b, "{:?}", op);
                let (a, b) = state(&dense, &model);
                proptest::prop_assert_eq!(a, b, "after {:?}", op);
                dense.check();
                model.check();
            }
        }
    }
}
