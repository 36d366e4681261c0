//! A bound on open descriptors: a [`Storage`] wrapper whose files open their backend handle on
//! use and close it again when the broker-wide cache of open handles is full (least recently used
//! first), so open descriptors do not grow with partitions or segments.
//!
//! Kafka keeps every segment's files open (and mmaps the indexes); with thousands of partitions
//! that is thousands of descriptors. Here a file returned by [`CachedStorage::open`] is a
//! [`LazyFile`]: it holds its path and, while cached, one open backend handle. The cache holds at
//! most `open_files_max` handles; opening one more closes the least recently used handle that
//! nobody is using. A handle in use (an operation in progress, or a [`FileRegion`] being sent,
//! which pins it through [`StorageFile::pin`]) is never closed: the cache skips it, and may then
//! hold more than its bound until the use ends (the excess is bounded by concurrent operations;
//! a region is pinned only while the cache is within its bound, so a fetch of thousands of
//! partitions reads the rest through the copy path instead of holding their descriptors).
//!
//! Invariants: a file has at most one backend handle at a time (a handle is cloned and evicted
//! only under the cache lock, and only evicted when the cache holds its last reference), so the
//! backend handle's length is always the file's length. Names follow the namespace: a rename
//! through this storage moves the files under the old name to the new one, and a file removed or
//! renamed over keeps its open handle until dropped (as an unlinked POSIX file stays readable);
//! one that had no handle then fails with `NotFound`. Iteration is over ordered maps and no time
//! or randomness is used, so the simulated world stays deterministic; with fewer files than the
//! bound nothing is ever closed or reopened, and the backend sees the same operations as without
//! the cache.
//!
//! [`FileRegion`]: disk_model::FileRegion

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use disk_model::{DirEntry, FileRef, OpenMode, Storage, StorageFile};

/// The bound when nothing else is said (the simulated world; `broker serve` derives its default
/// from the process's descriptor limit).
pub const OPEN_FILES_MAX_DEFAULT: usize = 10_000;
/// Eviction skips at most this many handles in use per open (each moves to the back of the LRU
/// order), so one open never walks the whole cache.
const EVICT_SCAN_MAX: usize = 64;

/// Counters of the cache, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Backend handles the cache holds now (in use or idle).
    pub open: usize,
    /// Files alive (open or closed).
    pub files: usize,
    /// Backend opens to reopen a closed file.
    pub reopens: u64,
    /// Handles closed to stay within the bound.
    pub evictions: u64,
    /// The most handles held at once.
    pub open_high_water: usize,
}

#[derive(Debug, Clone)]
pub struct CachedStorage {
    inner: Arc<dyn Storage>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    open_files_max: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Use clock: a handle's last use, for LRU order.
    tick: u64,
    files: BTreeMap<u64, FileState>,
    /// Live names → file id (a file removed or renamed over has no name).
    by_path: BTreeMap<PathBuf, u64>,
    /// Last use → file id, for every file holding a handle that may be evicted.
    lru: BTreeMap<u64, u64>,
    stats: CacheStats,
}

#[derive(Debug)]
struct FileState {
    path: PathBuf,
    file: Weak<LazyFile>,
    handle: Option<FileRef>,
    last_use: u64,
    /// The length while no handle is open.
    len: u64,
    /// Removed or renamed over: cannot be reopened; its handle (if any) is kept until dropped.
    unlinked: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn touch(&mut self, id: u64) {
        self.tick += 1;
        let tick = self.tick;
        let f = self.files.get_mut(&id).expect("live file");
        if f.handle.is_some() && !f.unlinked {
            self.lru.remove(&f.last_use);
            self.lru.insert(tick, id);
        }
        f.last_use = tick;
    }

    /// Closes least recently used idle handles until at most `max` are open (or none idle is
    /// found within the scan bound). Returns them, to be dropped outside the lock.
    fn evict(&mut self, max: usize) -> Vec<FileRef> {
        let mut closed = Vec::new();
        let mut skipped = 0;
        let mut cursor = 0u64;
        while self.stats.open > max && skipped < EVICT_SCAN_MAX {
            let Some((&tick, &id)) = self.lru.range(cursor..).next() else { break };
            cursor = tick + 1;
            let f = self.files.get_mut(&id).expect("lru names a live file");
            let in_use = f.handle.as_ref().is_some_and(|h| Arc::strong_count(h) > 1);
            if in_use {
                // In use is recently used: to the back, so the next scan finds idle ones first.
                skipped += 1;
                self.touch(id);
                continue;
            }
            let handle = f.handle.take().expect("lru files hold a handle");
            f.len = handle.len();
            self.lru.remove(&tick);
            self.stats.open -= 1;
            self.stats.evictions += 1;
            closed.push(handle);
        }
        closed
    }

    /// The file named `path` loses its name (removed, or replaced by a rename).
    fn unlink(&mut self, path: &Path) {
        let under: Vec<PathBuf> = self
            .by_path
            .range(path.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(path))
            .map(|(p, _)| p.clone())
            .collect();
        for p in under {
            let id = self.by_path.remove(&p).expect("listed");
            let f = self.files.get_mut(&id).expect("named files are live");
            f.unlinked = true;
            if f.handle.is_some() {
                self.lru.remove(&f.last_use); // kept open until dropped: never evicted
            }
        }
    }

    fn rename(&mut self, from: &Path, to: &Path) {
        self.unlink(to);
        let moved: Vec<PathBuf> = self
            .by_path
            .range(from.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(from))
            .map(|(p, _)| p.clone())
            .collect();
        for p in moved {
            let id = self.by_path.remove(&p).expect("listed");
            let rest = p.strip_prefix(from).expect("under from");
            let new = if rest.as_os_str().is_empty() { to.to_path_buf() } else { to.join(rest) };
            self.files.get_mut(&id).expect("named files are live").path = new.clone();
            self.by_path.insert(new, id);
        }
    }
}

impl CachedStorage {
    /// Wraps `inner`, holding at most `open_files_max` (≥ 1) idle handles open at once.
    pub fn new(inner: Arc<dyn Storage>, open_files_max: usize) -> Self {
        assert!(open_files_max >= 1, "open_files_max must be at least 1");
        let shared = Arc::new(Shared { open_files_max, state: Mutex::new(State::default()) });
        Self { inner, shared }
    }

    pub fn stats(&self) -> CacheStats {
        self.shared.lock().stats
    }

    pub fn open_files_max(&self) -> usize {
        self.shared.open_files_max
    }
}

#[async_trait]
impl Storage for CachedStorage {
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let path = disk_model::storage::check_relative(path)?;
        let handle = self.inner.open(&path, mode).await?;
        let (file, closed) = {
            let mut st = self.shared.lock();
            if let Some(existing) =
                st.by_path.get(&path).and_then(|id| st.files.get(id)).and_then(|f| f.file.upgrade())
            {
                // One file per name: the mode was checked by the open above; its handle is spare.
                drop(st);
                drop(handle);
                return Ok(existing);
            }
            st.next_id += 1;
            let id = st.next_id;
            let file =
                Arc::new(LazyFile { id, storage: self.inner.clone(), shared: self.shared.clone() });
            let len = handle.len();
            st.files.insert(
                id,
                FileState {
                    path: path.clone(),
                    file: Arc::downgrade(&file),
                    handle: Some(handle),
                    last_use: 0,
                    len,
                    unlinked: false,
                },
            );
            st.by_path.insert(path, id);
            st.stats.files += 1;
            st.stats.open += 1;
            st.stats.open_high_water = st.stats.open_high_water.max(st.stats.open);
            st.touch(id);
            let closed = st.evict(self.shared.open_files_max);
            (file, closed)
        };
        drop(closed);
        Ok(file)
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path).await
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.inner.list_dir(path).await
    }

    async fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to).await?;
        let (from, to) =
            (disk_model::storage::check_relative(from)?, disk_model::storage::check_relative(to)?);
        self.shared.lock().rename(&from, &to);
        Ok(())
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path).await?;
        self.shared.lock().unlink(&disk_model::storage::check_relative(path)?);
        Ok(())
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path).await?;
        self.shared.lock().unlink(&disk_model::storage::check_relative(path)?);
        Ok(())
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path).await
    }
}

/// A file of a [`CachedStorage`]: opens its backend handle when used, if the cache closed it.
pub struct LazyFile {
    id: u64,
    storage: Arc<dyn Storage>,
    shared: Arc<Shared>,
}

impl LazyFile {
    /// The open backend handle, reopening the file if the cache closed it. The caller holds it
    /// for one operation (or a send): while held it is never closed.
    async fn handle(&self) -> io::Result<FileRef> {
        let path = {
            let mut st = self.shared.lock();
            st.touch(self.id);
            let f = st.files.get(&self.id).expect("a live file has state");
            if let Some(h) = &f.handle {
                return Ok(h.clone());
            }
            if f.unlinked {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{:?} was removed while closed", f.path),
                ));
            }
            f.path.clone()
        };
        let handle = self.storage.open(&path, OpenMode::Existing).await?;
        let (h, closed) = {
            let mut st = self.shared.lock();
            let f = st.files.get_mut(&self.id).expect("a live file has state");
            if let Some(h) = &f.handle {
                (h.clone(), vec![handle]) // reopened concurrently: keep one handle
            } else {
                if handle.len() != f.len {
                    tracing::warn!(
                        ?path,
                        was = f.len,
                        now = handle.len(),
                        "file changed length while closed"
                    );
                }
                f.handle = Some(handle.clone());
                st.stats.open += 1;
                st.stats.reopens += 1;
                st.stats.open_high_water = st.stats.open_high_water.max(st.stats.open);
                if !st.files[&self.id].unlinked {
                    st.touch(self.id);
                }
                let closed = st.evict(self.shared.open_files_max);
                (handle, closed)
            }
        };
        drop(closed);
        Ok(h)
    }

    fn state_len(&self) -> u64 {
        let st = self.shared.lock();
        let f = st.files.get(&self.id).expect("a live file has state");
        match &f.handle {
            Some(h) => h.len(),
            None => f.len,
        }
    }

    fn path(&self) -> PathBuf {
        self.shared.lock().files.get(&self.id).map(|f| f.path.clone()).unwrap_or_default()
    }
}

impl Drop for LazyFile {
    fn drop(&mut self) {
        let handle = {
            let mut st = self.shared.lock();
            let Some(f) = st.files.remove(&self.id) else { return };
            if !f.unlinked && st.by_path.get(&f.path) == Some(&self.id) {
                st.by_path.remove(&f.path);
            }
            if f.handle.is_some() {
                st.stats.open -= 1;
                if !f.unlinked {
                    st.lru.remove(&f.last_use);
                }
            }
            st.stats.files -= 1;
            f.handle
        };
        drop(handle);
    }
}

impl fmt::Debug for LazyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LazyFile({:?})", self.path())
    }
}

#[async_trait]
impl StorageFile for LazyFile {
    fn len(&self) -> u64 {
        self.state_len()
    }

    async fn append(&self, data: &[u8]) -> io::Result<u64> {
        self.handle().await?.append(data).await
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.handle().await?.read_at(pos, len).await
    }

    async fn read_pieces_at(&self, pos: u64, len: usize) -> io::Result<Vec<Bytes>> {
        self.handle().await?.read_pieces_at(pos, len).await
    }

    async fn sync(&self) -> io::Result<()> {
        self.handle().await?.sync().await
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.handle().await?.truncate(len).await
    }

    /// The open handle, if the cache is within its bound with it held; otherwise `None`: the
    /// region then holds this file and is read through it when sent (the copy path), so a fetch
    /// of thousands of partitions never holds thousands of descriptors.
    async fn pin(&self) -> io::Result<Option<FileRef>> {
        let handle = self.handle().await?;
        let within = self.shared.lock().stats.open <= self.shared.open_files_max;
        Ok(within.then_some(handle))
    }
}
