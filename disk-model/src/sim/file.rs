//! File contents, page by page.
//!
//! Each file keeps two [`Content`]s: `logical` (what reads return) and `durable` (what is on the
//! device). Pages are `Arc`s shared between the two when equal (after writeback or a cache fill),
//! so a settled file costs its size once, not twice; a write copies a shared page first.
//!
//! Invariants (asserted in `check`): bytes at or past `len` are zero in every page (so growing a
//! file never resurrects old bytes), and `pages.len()` covers exactly `len` rounded up to pages.

use std::sync::Arc;

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
        while done < data.len() {
            let at = pos + done as u64;
            let index = (at / PAGE_SIZE) as usize;
            let offset = (at % PAGE_SIZE) as usize;
            let n = (PAGE - offset).min(data.len() - done);
            let slot = &mut self.pages[index];
            let page = slot.get_or_insert_with(|| Arc::new([0u8; PAGE]));
            Arc::make_mut(page)[offset..offset + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// The bytes in `pos..end` (`end` at most `len`).
    pub fn read(&self, pos: u64, end: u64) -> Vec<u8> {
        assert!(pos <= end && end <= self.len);
        let mut out = Vec::with_capacity((end - pos) as usize);
        let mut at = pos;
        while at < end {
            let index = (at / PAGE_SIZE) as usize;
            let offset = (at % PAGE_SIZE) as usize;
            let n = ((PAGE - offset) as u64).min(end - at) as usize;
            match &self.pages[index] {
                Some(page) => out.extend_from_slice(&page[offset..offset + n]),
                None => out.resize(out.len() + n, 0),
            }
            at += n as u64;
        }
        out
    }

    /// XORs `mask` into the bytes in `pos..end` (corruption fault).
    pub fn flip(&mut self, pos: u64, end: u64, mask: u8) {
        assert!(pos <= end && end <= self.len);
        let mut at = pos;
        while at < end {
            let index = (at / PAGE_SIZE) as usize;
            let offset = (at % PAGE_SIZE) as usize;
            let n = ((PAGE - offset) as u64).min(end - at) as usize;
            let page = self.pages[index].get_or_insert_with(|| Arc::new([0u8; PAGE]));
            for b in &mut Arc::make_mut(page)[offset..offset + n] {
                *b ^= mask;
            }
            at += n as u64;
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
}
