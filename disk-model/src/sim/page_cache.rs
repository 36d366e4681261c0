//! Page-cache bookkeeping: which pages are cached, which are dirty and since when, LRU order.
//!
//! The bytes live in the files' `logical` contents (see `file.rs`); this module only tracks page
//! state, so it is small and its invariants are checkable. Policy (when to write back, whom to
//! throttle) lives in `state.rs`, which calls these primitives.
//!
//! One cache serves every device of a disk (JBOD: one page cache, several block devices): one
//! capacity, one LRU, one dirty count. The age index of dirty pages is kept per device, so each
//! device's flusher finds its own oldest dirty page in O(log n). The cache knows each inode's
//! device from [`PageCache::set_inode_device`] (inodes not registered are on device 0).

use std::collections::{BTreeMap, BTreeSet};

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
/// first time, like Linux) or its position in the clean LRU.
#[derive(Debug, Clone, Copy)]
struct PageMeta {
    state: u64,
    /// The page's content is in memory from this time on (a read or readahead still in flight
    /// makes a "hit" wait for it).
    ready_ns: u64,
}

const DIRTY: u64 = 1 << 63;
const _: () = assert!(std::mem::size_of::<PageMeta>() == 16);

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

    /// `Some` while dirty: when it became dirty.
    fn dirty_since_ns(&self) -> Option<u64> {
        (self.state & DIRTY != 0).then_some(self.state & !DIRTY)
    }

    /// Position in the clean LRU: `Some` while clean.
    fn lru_stamp(&self) -> Option<u64> {
        (self.state & DIRTY == 0).then_some(self.state)
    }

    fn set_clean(&mut self, lru_stamp: u64) {
        assert!(lru_stamp < DIRTY, "LRU stamp {lru_stamp} overflows");
        self.state = lru_stamp;
    }

    fn set_dirty(&mut self, since_ns: u64) {
        assert!(since_ns < DIRTY, "dirty since {since_ns} ns overflows");
        self.state = since_ns | DIRTY;
    }
}

#[derive(Debug)]
pub struct PageCache {
    capacity_pages: u64,
    pages: BTreeMap<PageKey, PageMeta>,
    /// Clean pages, least recently used first. Dirty pages cannot be evicted and are not here.
    clean_lru: BTreeMap<u64, PageKey>,
    dirty: BTreeSet<PageKey>,
    /// Per device: its dirty pages by the time they became dirty (oldest first).
    dirty_by_age: Vec<BTreeSet<(u64, PageKey)>>,
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
            pages: BTreeMap::new(),
            clean_lru: BTreeMap::new(),
            dirty: BTreeSet::new(),
            dirty_by_age: vec![BTreeSet::new(); devices as usize],
            inode_device: BTreeMap::new(),
            next_stamp: 0,
        }
    }

    /// Forgets every page (power loss), keeping the devices and the inodes' devices.
    pub fn clear(&mut self) {
        self.pages.clear();
        self.clean_lru.clear();
        self.dirty.clear();
        self.dirty_by_age.iter_mut().for_each(BTreeSet::clear);
        self.next_stamp = 0;
    }

    pub fn devices(&self) -> u32 {
        self.dirty_by_age.len() as u32
    }

    /// Places `inode` on `device` (before any of its pages is cached).
    pub fn set_inode_device(&mut self, inode: u64, device: u32) {
        assert!(device < self.devices(), "device {device} of {}", self.devices());
        assert!(
            self.pages.range((inode, 0)..=(inode, u64::MAX)).next().is_none(),
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

    fn age_index(&mut self, inode: u64) -> &mut BTreeSet<(u64, PageKey)> {
        let device = self.device_of(inode);
        &mut self.dirty_by_age[device as usize]
    }

    pub fn cached_pages(&self) -> u64 {
        self.pages.len() as u64
    }
    pub fn dirty_pages(&self) -> u64 {
        self.dirty.len() as u64
    }
    pub fn contains(&self, key: PageKey) -> bool {
        self.pages.contains_key(&key)
    }
    pub fn is_dirty(&self, key: PageKey) -> bool {
        self.dirty.contains(&key)
    }
    pub fn ready_ns(&self, key: PageKey) -> Option<u64> {
        self.pages.get(&key).map(|m| m.ready_ns)
    }

    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// Marks a cached page as just used.
    pub fn touch(&mut self, key: PageKey) {
        let stamp = self.stamp();
        let Some(meta) = self.pages.get_mut(&key) else {
            return;
        };
        if let Some(old) = meta.lru_stamp() {
            let removed = self.clean_lru.remove(&old);
            assert_eq!(removed, Some(key));
            meta.set_clean(stamp);
            self.clean_lru.insert(stamp, key);
        }
    }

    /// Pages `first..=last` of `inode` that are not cached: the first of them and how many.
    pub fn misses(&self, inode: u64, first: u64, last: u64) -> (Option<u64>, u64) {
        let mut cached = self.pages.range((inode, first)..=(inode, last)).map(|(&(_, p), _)| p);
        let mut next_cached = cached.next();
        let (mut first_miss, mut count) = (None, 0);
        for page in first..=last {
            if next_cached == Some(page) {
                next_cached = cached.next();
            } else {
                first_miss = first_miss.or(Some(page));
                count += 1;
            }
        }
        (first_miss, count)
    }

    /// Touches every cached page of `inode` in `first..=last`, in page order (as [`Self::touch`]
    /// one by one), and returns the latest time one of them is ready (0 if none is cached).
    pub fn touch_range(&mut self, inode: u64, first: u64, last: u64) -> u64 {
        let mut ready_ns_max = 0;
        for (&key, meta) in self.pages.range_mut((inode, first)..=(inode, last)) {
            ready_ns_max = ready_ns_max.max(meta.ready_ns);
            self.next_stamp += 1;
            if let Some(old) = meta.lru_stamp() {
                let removed = self.clean_lru.remove(&old);
                assert_eq!(removed, Some(key));
                meta.set_clean(self.next_stamp);
                self.clean_lru.insert(self.next_stamp, key);
            }
        }
        ready_ns_max
    }

    /// Adds a clean page (filled from the device); returns the pages evicted to make room.
    pub fn insert_clean(&mut self, key: PageKey, ready_ns: u64) -> Vec<PageKey> {
        assert!(!self.pages.contains_key(&key), "page {key:?} already cached");
        let stamp = self.stamp();
        self.pages.insert(key, PageMeta::clean(stamp, ready_ns));
        self.clean_lru.insert(stamp, key);
        self.evict_to_capacity(Some(key))
    }

    /// Dirties a page (caching it if absent); returns the pages evicted to make room.
    pub fn mark_dirty(&mut self, key: PageKey, now_ns: u64) -> Vec<PageKey> {
        let mut added = false;
        match self.pages.get_mut(&key) {
            Some(meta) => {
                if let Some(old) = meta.lru_stamp() {
                    let removed = self.clean_lru.remove(&old);
                    assert_eq!(removed, Some(key));
                    meta.set_dirty(now_ns);
                    meta.ready_ns = meta.ready_ns.min(now_ns);
                    self.dirty.insert(key);
                    self.age_index(key.0).insert((now_ns, key));
                }
            }
            None => {
                self.pages.insert(key, PageMeta::dirty(now_ns, now_ns));
                self.dirty.insert(key);
                self.age_index(key.0).insert((now_ns, key));
                added = true;
            }
        }
        if added {
            self.evict_to_capacity(None)
        } else {
            Vec::new()
        }
    }

    /// A dirty page became clean (written back, or its writeback error was swallowed).
    pub fn mark_clean(&mut self, key: PageKey) {
        let stamp = self.stamp();
        let meta = self.pages.get_mut(&key).expect("mark_clean of an uncached page");
        let since = meta.dirty_since_ns().expect("mark_clean of a clean page");
        meta.set_clean(stamp);
        self.clean_lru.insert(stamp, key);
        assert!(self.dirty.remove(&key));
        assert!(self.age_index(key.0).remove(&(since, key)));
    }

    /// Drops a page whatever its state (truncate, delete, power loss). True if it was dirty.
    pub fn remove(&mut self, key: PageKey) -> bool {
        let Some(meta) = self.pages.remove(&key) else {
            return false;
        };
        if let Some(since) = meta.dirty_since_ns() {
            assert!(self.dirty.remove(&key));
            assert!(self.age_index(key.0).remove(&(since, key)));
            return true;
        }
        let stamp = meta.lru_stamp().expect("a clean page has an LRU stamp");
        assert_eq!(self.clean_lru.remove(&stamp), Some(key));
        false
    }

    /// The cached pages of `inode` from page `first` on, in page order.
    pub fn pages_of(&self, inode: u64, first: u64) -> Vec<u64> {
        self.pages.range((inode, first)..=(inode, u64::MAX)).map(|(&(_, p), _)| p).collect()
    }

    /// The dirty pages of `inode`, in page order.
    pub fn dirty_pages_of(&self, inode: u64) -> Vec<u64> {
        self.first_dirty_pages_of(inode, usize::MAX)
    }

    /// The first `count_max` dirty pages of `inode`, in page order: one writeback chunk without
    /// listing the rest (a segment can hold hundreds of thousands of dirty pages, and the
    /// flusher takes a chunk at a time).
    pub fn first_dirty_pages_of(&self, inode: u64, count_max: usize) -> Vec<u64> {
        self.dirty.range((inode, 0)..=(inode, u64::MAX)).map(|&(_, p)| p).take(count_max).collect()
    }

    /// The oldest dirty page (of any device) and when it was dirtied; ties go to the lowest
    /// device.
    pub fn oldest_dirty(&self) -> Option<(u64, PageKey)> {
        self.dirty_by_age.iter().filter_map(|by_age| by_age.first().copied()).min_by_key(|o| o.0)
    }

    /// The oldest dirty page of `device` and when it was dirtied.
    pub fn oldest_dirty_of(&self, device: u32) -> Option<(u64, PageKey)> {
        self.dirty_by_age[device as usize].first().copied()
    }

    /// How many dirty pages `device` has.
    pub fn dirty_pages_on(&self, device: u32) -> u64 {
        self.dirty_by_age[device as usize].len() as u64
    }

    /// Evicts the least recently used clean page, if any.
    pub fn evict_one(&mut self) -> Option<PageKey> {
        let (_, key) = self.clean_lru.pop_first()?;
        let meta = self.pages.remove(&key).expect("LRU page is cached");
        assert!(meta.dirty_since_ns().is_none());
        Some(key)
    }

    /// Evicts every clean page (`echo 1 > /proc/sys/vm/drop_caches`).
    pub fn drop_clean(&mut self) -> Vec<PageKey> {
        let mut out = Vec::with_capacity(self.clean_lru.len());
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
        while self.pages.len() as u64 > self.capacity_pages {
            let Some((_, &key)) = self.clean_lru.first_key_value() else {
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

    /// Asserts the bookkeeping agrees: every dirty page is in its device's age index at the time
    /// its metadata says, every clean page in the LRU at its stamp.
    pub fn check(&self) {
        let by_age: usize = self.dirty_by_age.iter().map(BTreeSet::len).sum();
        assert_eq!(self.dirty.len(), by_age);
        assert_eq!(self.pages.len(), self.dirty.len() + self.clean_lru.len());
        for (&inode, &device) in &self.inode_device {
            assert!(device != 0 && device < self.devices(), "inode {inode}: device {device}");
        }
        for (device, by_age) in self.dirty_by_age.iter().enumerate() {
            for &(since, key) in by_age {
                assert_eq!(self.device_of(key.0) as usize, device, "page {key:?}: wrong device");
                let meta = self.pages.get(&key).expect("an aged page is cached");
                assert_eq!(meta.dirty_since_ns(), Some(since), "page {key:?}: age index");
                assert!(self.dirty.contains(&key), "page {key:?}: aged but not dirty");
            }
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
}
