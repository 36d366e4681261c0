//! File contents, page by page.
//!
//! Each file keeps two [`Content`]s: `logical` (what reads return) and `durable` (what is on the
//! device). Pages are `Arc`s shared between the two when equal (after writeback or a cache fill),
//! so a settled file costs its size once, not twice; a write copies a shared page first.
//!
//! Full pages are interned ([`intern`]): a page that an append fills to its end is never
//! written again (the interface is append-only; a truncate or a corruption copies it first), so
//! it is looked up by content in a process-wide store and shared with every equal page. The
//! replicas of a partition hold byte-identical segments at identical positions (followers append
//! the leader's batches verbatim), so a cluster of RF 3 keeps each full page of log once, not
//! three times. Sharing changes no byte any read returns: pages are immutable once shared
//! (`Arc::make_mut` copies a shared page before a write).
//!
//! Invariants (asserted in `check`): bytes at or past `len` are zero in every page (so growing a
//! file never resurrects old bytes), and `pages.len()` covers exactly `len` rounded up to pages.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use super::device::PAGE_SIZE;

const PAGE: usize = PAGE_SIZE as usize;
pub type Page = [u8; PAGE];

#[derive(Debug, Clone, Default)]
pub struct Content {
    /// `None` is a page of zeros (a hole, or never written).
    pages: Vec<Option<Arc<Page>>>,
    len: u64,
}

pub fn pages_for(len: u64) -> u64 {
    len.div_ceil(PAGE_SIZE)
}

impl Content {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn page(&self, index: u64) -> Option<Arc<Page>> {
        self.pages.get(index as usize).cloned().flatten()
    }

    /// Replaces page `index` (which must lie inside `len`).
    pub fn set_page(&mut self, index: u64, page: Option<Arc<Page>>) {
        assert!(index < pages_for(self.len), "page {index} past length {}", self.len);
        self.pages[index as usize] = page;
    }

    /// Sets the length, zero-filling on growth and zeroing the cut tail on shrink.
    pub fn set_len(&mut self, len: u64) {
        if len < self.len {
            self.pages.truncate(pages_for(len) as usize);
            self.len = len;
            self.zero_tail();
        }
        self.len = len;
        self.pages.resize(pages_for(len) as usize, None);
    }

    /// Zeroes the bytes of the last page past `len` (keeps the tail invariant after a page was
    /// replaced by one written when the file was longer, e.g. a torn or restored page).
    pub fn zero_tail(&mut self) {
        let keep = (self.len % PAGE_SIZE) as usize;
        if keep == 0 {
            return;
        }
        let last = (pages_for(self.len) - 1) as usize;
        if let Some(Some(page)) = self.pages.get_mut(last) {
            if page[keep..].iter().any(|&b| b != 0) {
                Arc::make_mut(page)[keep..].fill(0);
            }
        }
    }

    /// Writes `data` at `pos` (at most `len`: files only grow at the end), growing the file.
    pub fn write(&mut self, pos: u64, data: &[u8]) {
        assert!(pos <= self.len, "write at {pos} past end {}", self.len);
        let end = pos + data.len() as u64;
        if end > self.len {
            self.set_len(end);
        }
        let mut done = 0usize;
        for (index, bytes) in spans(pos, end) {
            let (n, fills_page) = (bytes.len(), bytes.end == PAGE);
            let part = &data[done..done + n];
            let page = match &mut self.pages[index] {
                Some(page) => {
                    Arc::make_mut(page)[bytes].copy_from_slice(part);
                    page
                }
                slot @ None if bytes.start == 0 => slot.insert(page_of(part)),
                slot @ None => {
                    let page = slot.insert(zeroed_page());
                    Arc::make_mut(page)[bytes].copy_from_slice(part);
                    page
                }
            };
            if fills_page {
                intern(page);
            }
            done += n;
        }
    }

    /// The bytes in `pos..end` (`end` at most `len`).
    pub fn read(&self, pos: u64, end: u64) -> Vec<u8> {
        assert!(pos <= end && end <= self.len);
        let mut out = Vec::with_capacity((end - pos) as usize);
        for (index, bytes) in spans(pos, end) {
            match &self.pages[index] {
                Some(page) => out.extend_from_slice(&page[bytes]),
                None => out.resize(out.len() + bytes.len(), 0),
            }
        }
        out
    }

    /// The bytes in `pos..end` as pieces, without copying what can be shared: a piece of a full
    /// page is a view of the page itself (pages are copied before a write while shared, so the
    /// view never changes), a piece of the partial last page is copied (the next append writes
    /// there), and holes are zeros. What a sendfile region sends.
    pub fn read_pieces(&self, pos: u64, end: u64) -> Vec<bytes::Bytes> {
        assert!(pos <= end && end <= self.len);
        let partial_last = (!self.len.is_multiple_of(PAGE_SIZE)).then_some(self.len / PAGE_SIZE);
        let piece = |(index, bytes): (usize, std::ops::Range<usize>)| match &self.pages[index] {
            Some(page) if Some(index as u64) != partial_last => {
                bytes::Bytes::from_owner(SharedPage(page.clone())).slice(bytes)
            }
            Some(page) => bytes::Bytes::copy_from_slice(&page[bytes]),
            None => bytes::Bytes::from_static(&ZERO_PAGE[..bytes.len()]),
        };
        // Sized first: `spans` has no size hint, and a 1 MiB read grew the vector eight times.
        let mut pieces = Vec::with_capacity(pages_for(end) as usize - (pos / PAGE_SIZE) as usize);
        pieces.extend(spans(pos, end).map(piece));
        pieces
    }

    /// XORs `mask` into the bytes in `pos..end` (corruption fault).
    pub fn flip(&mut self, pos: u64, end: u64, mask: u8) {
        assert!(pos <= end && end <= self.len);
        for (index, bytes) in spans(pos, end) {
            let page = self.pages[index].get_or_insert_with(zeroed_page);
            for b in &mut Arc::make_mut(page)[bytes] {
                *b ^= mask;
            }
        }
    }

    pub fn check(&self) {
        assert_eq!(self.pages.len() as u64, pages_for(self.len));
        let keep = (self.len % PAGE_SIZE) as usize;
        if keep != 0 {
            if let Some(Some(page)) = self.pages.last() {
                assert!(page[keep..].iter().all(|&b| b == 0), "bytes past the end of a file");
            }
        }
    }
}

/// The pages `pos..end` touches: (page index, the byte range within that page), in order.
fn spans(pos: u64, end: u64) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> {
    let mut at = pos;
    std::iter::from_fn(move || {
        (at < end).then(|| {
            let (index, offset) = ((at / PAGE_SIZE) as usize, (at % PAGE_SIZE) as usize);
            let n = ((PAGE - offset) as u64).min(end - at) as usize;
            at += n as u64;
            (index, offset..offset + n)
        })
    })
}

/// A new page of zeros.
fn zeroed_page() -> Arc<Page> {
    Arc::new([0u8; PAGE])
}

/// A new page that starts with `prefix` and is zeros after it: written once, where a zeroed
/// page that the prefix then overwrites writes those bytes twice (an append's new pages are
/// mostly written whole from their first byte).
fn page_of(prefix: &[u8]) -> Arc<Page> {
    assert!(prefix.len() <= PAGE, "a page's prefix is at most a page");
    let mut page = Arc::<Page>::new_uninit();
    let at = Arc::get_mut(&mut page).expect("a new Arc is unique").as_mut_ptr().cast::<u8>();
    // SAFETY: `at` points to PAGE writable bytes; the copy fills the first `prefix.len()` of
    // them (from a slice that cannot overlap a fresh allocation), `write_bytes` the rest, so
    // every byte is initialized before `assume_init` (any bytes are a valid `[u8; PAGE]`).
    unsafe {
        std::ptr::copy_nonoverlapping(prefix.as_ptr(), at, prefix.len());
        std::ptr::write_bytes(at.add(prefix.len()), 0, PAGE - prefix.len());
        page.assume_init()
    }
}

static ZERO_PAGE: Page = [0u8; PAGE];

/// A page lent to a [`bytes::Bytes`] (a view that keeps the page alive).
struct SharedPage(Arc<Page>);

impl AsRef<[u8]> for SharedPage {
    fn as_ref(&self) -> &[u8] {
        &self.0[..]
    }
}

/// The process-wide store of full pages by content: a hash of the page's bytes → the page.
/// Entries only the store still holds are swept when the store has grown by an eighth since its
/// last sweep, so at most about an eighth of the pages it holds are dead (pages of deleted
/// segments: with retention a run deletes as fast as it writes, and a sweep at each doubling
/// kept up to one dead page per live one — 206 MB of pages for 117 MB of log). A sweep visits
/// every entry (a reference count each), so sweeps cost O(1) per interned page amortized.
struct PageStore {
    pages: StoreMap,
    /// Entries left after the last sweep.
    swept_len: usize,
}

/// Sweeps start at this many entries (small stores are not worth sweeping).
const STORE_SWEEP_MIN: usize = 4096;

static STORE: Mutex<Option<PageStore>> = Mutex::new(None);

/// A fast 64-bit hash of a page's sample: the first word of each 64-byte line (one eighth of
/// the bytes), in four independent multiply-rotate lanes (the lanes pipeline where one serial
/// chain would wait on each multiply), folded at the end. Pages that differ only outside the
/// sample collide; equal hashes are checked byte for byte before a page is shared, so a
/// collision only costs the sharing. A log's pages differ in every line (records are a hundred
/// bytes or so and each carries its own offset delta and value), so sampling loses no sharing
/// there; hashing every word took 1.8 % of a bench run's CPU (`bench-100k-cluster`: each full
/// page is hashed once per replica).
fn page_hash(page: &Page) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    const LINE: usize = 64;
    let mut lanes: [u64; 4] = [
        0x243F_6A88_85A3_08D3,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    ];
    for lines in page.chunks_exact(4 * LINE) {
        for (lane, line) in lanes.iter_mut().zip(lines.chunks_exact(LINE)) {
            let w = u64::from_le_bytes(line[..8].try_into().expect("8 bytes"));
            *lane = (lane.rotate_left(5) ^ w).wrapping_mul(K);
        }
    }
    let h = lanes.iter().fold(0u64, |h, &lane| (h.rotate_left(23) ^ lane).wrapping_mul(K));
    h ^ (h >> 29)
}

/// The store's keys are already hashes: use them as they are (no SipHash over a hash).
#[derive(Default)]
struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the key is a `u64`); fold anything else in all the same.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type StoreMap = HashMap<u64, Arc<Page>, BuildHasherDefault<KeyIsHash>>;

/// Replaces `page` by the stored page with the same bytes, or stores it. Only full pages that
/// will not be written again are interned (a later write copies them: they are shared).
pub fn intern(page: &mut Arc<Page>) {
    let hash = page_hash(page);
    let mut store = STORE.lock().unwrap_or_else(|p| p.into_inner());
    let store = store.get_or_insert_with(|| PageStore { pages: StoreMap::default(), swept_len: 0 });
    match store.pages.get(&hash) {
        Some(stored) if Arc::ptr_eq(stored, page) => {}
        Some(stored) if **stored == **page => *page = stored.clone(),
        Some(stored) if Arc::strong_count(stored) == 1 => {
            store.pages.insert(hash, page.clone());
        }
        Some(_) => {} // a collision with a live page: this one stays unshared
        None => {
            if store.pages.len() >= (store.swept_len + store.swept_len / 8).max(STORE_SWEEP_MIN) {
                store.pages.retain(|_, p| Arc::strong_count(p) > 1);
                store.swept_len = store.pages.len();
            }
            store.pages.insert(hash, page.clone());
        }
    }
}

/// Drops every stored page no file holds any more, returning how many the store kept. Call it
/// when a run's disks are gone (the runtime dropped): the store holds each page it knows
/// strongly, so without this a finished run's log bytes stay in memory until the next run's
/// writes sweep them (the checks and reports after a run then pay for them in peak RSS).
pub fn release_unused_pages() -> usize {
    let mut store = STORE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(store) = store.as_mut() else { return 0 };
    store.pages.retain(|_, p| Arc::strong_count(p) > 1);
    store.pages.shrink_to_fit();
    store.swept_len = store.pages.len();
    store.pages.len()
}

/// A page made of the first `sectors` sectors of `new` and the rest of `old` (a torn write).
pub fn torn_page(
    old: Option<&Arc<Page>>,
    new: Option<&Arc<Page>>,
    sectors: u64,
) -> Option<Arc<Page>> {
    let cut = (sectors * super::device::SECTOR_SIZE) as usize;
    assert!(cut <= PAGE);
    let mut page = [0u8; PAGE];
    if let Some(new) = new {
        page[..cut].copy_from_slice(&new[..cut]);
    }
    if let Some(old) = old {
        page[cut..].copy_from_slice(&old[cut..]);
    }
    Some(Arc::new(page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_truncate_share() {
        let mut c = Content::default();
        c.write(0, &[1u8; 5000]);
        assert_eq!(c.len(), 5000);
        assert_eq!(c.read(4090, 4100), vec![1u8; 10]);
        let durable_page = c.page(1);
        c.set_len(4100);
        c.check();
        assert_eq!(c.read(4096, 4100), vec![1u8; 4]);
        // The shared page kept by "durable" was not touched by the truncate.
        assert!(durable_page.as_ref().is_some_and(|p| p[800] == 1));
        c.write(4100, &[2u8; 4]);
        assert_eq!(c.read(4096, 4104), vec![1, 1, 1, 1, 2, 2, 2, 2]);
        c.set_len(10_000);
        assert_eq!(c.read(4104, 10_000), vec![0u8; 10_000 - 4104]);
        c.check();
    }

    #[test]
    fn full_pages_are_shared_and_copied_before_a_change() {
        let data: Vec<u8> = (0..3 * PAGE + 100).map(|i| (i * 7 % 251) as u8).collect();
        let (mut a, mut b) = (Content::default(), Content::default());
        a.write(0, &data);
        // b gets the same bytes in other chunks (a follower appending fetched batches).
        for chunk in data.chunks(1000) {
            b.write(b.len(), chunk);
        }
        for index in 0..3 {
            let (pa, pb) = (a.page(index).expect("written"), b.page(index).expect("written"));
            assert!(Arc::ptr_eq(&pa, &pb), "full page {index} is shared");
        }
        let (ta, tb) = (a.page(3).expect("written"), b.page(3).expect("written"));
        assert!(!Arc::ptr_eq(&ta, &tb), "the partial tail page is each file's own");
        // Corrupting one copy leaves the other intact.
        b.flip(10, 20, 0xFF);
        assert_eq!(a.read(0, a.len()), data);
        assert_ne!(b.read(0, 30), data[..30].to_vec());
        // Truncating into a shared page and writing again leaves the other intact.
        a.set_len(PAGE as u64 + 5);
        a.write(PAGE as u64 + 5, &[9u8; 10]);
        assert_eq!(b.read(PAGE as u64, 2 * PAGE as u64), data[PAGE..2 * PAGE].to_vec());
        a.check();
        b.check();
    }

    /// Pieces read back as `read` does; full pages are lent (no copy), the partial last page
    /// is copied (an append may write it next), and a lent page never changes under a reader.
    #[test]
    fn read_pieces_lend_full_pages_and_copy_the_tail() {
        let data: Vec<u8> = (0..2 * PAGE + 700).map(|i| (i * 31 % 253) as u8 ^ 0xA5).collect();
        let mut c = Content::default();
        c.write(0, &data);
        c.set_len(4 * PAGE as u64 + 700); // page 3 a hole (zeros), page 4 partial
        c.write(4 * PAGE as u64 + 700, &[7u8; 10]);
        assert!(c.page(3).is_none(), "a hole");
        let len = c.len();
        let page = PAGE as u64;
        for (pos, end) in [(0, len), (10, 20), (page - 3, page + 3), (2 * page, len), (len, len)] {
            let pieces = c.read_pieces(pos, end);
            let joined: Vec<u8> = pieces.iter().flat_map(|b| b.iter().copied()).collect();
            assert_eq!(joined, c.read(pos, end), "{pos}..{end}");
        }
        let pieces = c.read_pieces(100, len);
        let page0 = c.page(0).expect("written");
        assert_eq!(pieces[0].as_ptr(), page0[100..].as_ptr(), "a full page is lent");
        let last = pieces.last().expect("pieces");
        let tail = c.page(4).expect("written");
        assert_ne!(last.as_ptr(), tail[..].as_ptr(), "the partial last page is copied");
        // A corruption of a lent page copies the page first: the reader keeps what it read.
        c.flip(100, 110, 0xFF);
        assert_eq!(pieces[0][..10], data[100..110]);
        assert_ne!(c.read(100, 110), data[100..110].to_vec());
    }

    /// Whether the store holds a page with `page`'s bytes.
    fn stored(page: &Page) -> bool {
        let store = STORE.lock().unwrap_or_else(|p| p.into_inner());
        store.as_ref().is_some_and(|s| s.pages.get(&page_hash(page)).is_some_and(|p| **p == *page))
    }

    #[test]
    fn the_store_sweeps_dead_pages_before_they_are_an_eighth_of_it() {
        // 8,192 live pages, then 8,192 pages whose file is dropped right after each write (a
        // segment deleted by retention); bytes no other test writes.
        let page_of = |salt: u64, i: u64| -> Vec<u8> {
            (0..PAGE as u64 / 8).flat_map(|w| (salt ^ (i << 20) ^ w).to_le_bytes()).collect()
        };
        let mut live = Content::default();
        for i in 0..8192u64 {
            live.write(i * PAGE_SIZE, &page_of(0x7E57_0001, i));
        }
        for i in 0..8192u64 {
            let mut gone = Content::default();
            gone.write(0, &page_of(0x7E57_0002, i));
        }
        let (dead, held) = {
            let store = STORE.lock().unwrap_or_else(|p| p.into_inner());
            let pages = &store.as_ref().expect("pages stored").pages;
            (pages.values().filter(|p| Arc::strong_count(p) == 1).count(), pages.len())
        };
        // Other tests share the store: allow them a few dozen pages.
        assert!(dead <= 8192 / 8 + 64, "{dead} dead pages of {held} held");
        drop(live);
    }

    /// Two pages that differ only outside [`page_hash`]'s sample hash alike: neither is shared
    /// with the other, each file reads back its own bytes, and a third file with the first
    /// page's bytes still shares it.
    #[test]
    fn pages_that_hash_alike_but_differ_are_not_shared() {
        // Bytes no other test writes (tests share the process-wide store).
        let a: Vec<u8> = (0..PAGE).map(|i| (i * 29 % 239) as u8 ^ 0x3C).collect();
        let mut b = a.clone();
        b[100] ^= 0xFF; // byte 36 of the second line: outside the sample
        let (pa, pb): (Page, Page) =
            (a.clone().try_into().expect("page"), b.clone().try_into().expect("page"));
        assert_eq!(page_hash(&pa), page_hash(&pb), "the changed byte is outside the sample");
        let (mut fa, mut fb, mut fc) = (Content::default(), Content::default(), Content::default());
        fa.write(0, &a);
        fb.write(0, &b);
        fc.write(0, &a);
        assert_eq!(fa.read(0, PAGE_SIZE), a);
        assert_eq!(fb.read(0, PAGE_SIZE), b);
        assert_eq!(fc.read(0, PAGE_SIZE), a);
        let page = |c: &Content| c.page(0).expect("written");
        assert!(!Arc::ptr_eq(&page(&fa), &page(&fb)), "different bytes are never shared");
        assert!(Arc::ptr_eq(&page(&fa), &page(&fc)), "equal bytes are");
    }

    #[test]
    fn released_pages_are_only_those_no_file_holds() {
        // Bytes no other test writes (tests share the process-wide store).
        let data: Vec<u8> = (0..PAGE).map(|i| (i * 13 % 241) as u8 ^ 0x5A).collect();
        let page: Page = data.clone().try_into().expect("one page");
        let mut c = Content::default();
        c.write(0, &data);
        release_unused_pages();
        assert!(stored(&page), "a page a file holds stays stored");
        drop(c);
        assert!(stored(&page), "the store alone keeps it until released");
        release_unused_pages();
        assert!(!stored(&page), "released once no file holds it");
    }
}
