//! The page cache's bookkeeping as it was first written: every page in one ordered map, the clean
//! LRU, the dirty set and the per-device age indexes in ordered maps and sets. Plainly right
//! and O(log n) per page, but each newly dirtied page paid three B-tree inserts (2 % of a bench
//! run). Kept as the model the dense implementation in `mod.rs` is property-tested against: the
//! same operations must give the same answers, evictions in the same order included.

use std::collections::{BTreeMap, BTreeSet};

use super::{PageCacheConfig, PageKey};

/// One cached page: dirty since a time (top bit set) or clean at an LRU stamp.
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

/// The reference bookkeeping (see the module's docs).
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
