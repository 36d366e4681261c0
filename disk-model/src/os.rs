//! The real backend: std files under a root directory.
//!
//! Reads and appends are positional (`pread`/`pwrite`), so one handle serves concurrent readers
//! while the single writer appends. The calls block the calling task for as long as the OS takes;
//! with the page cache absorbing writes (Kafka's default flush policy is "never") that is
//! microseconds, and `sync` — the one call that waits for the device — is rare by design.
//! The OS page cache is the real cache here; the simulated world models it instead.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::storage::{check_relative, DirEntry, FileRef, OpenMode, Storage, StorageFile};

#[derive(Debug, Clone)]
pub struct OsStorage {
    root: PathBuf,
    /// The data dir's lock file (see [`OsStorage::new_locked`]), held while any clone lives.
    _lock: Option<Arc<File>>,
}

/// Kafka's name for a log dir's lock file.
pub const LOCK_FILE: &str = ".lock";

impl OsStorage {
    /// A storage rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root, _lock: None })
    }

    /// [`OsStorage::new`], holding an exclusive advisory lock (`flock(2)`) on `root/.lock` for
    /// as long as the storage or a clone lives, as Kafka locks each log dir: a second process on
    /// the same directory gets `WouldBlock` with a message naming the lock file. The OS drops the
    /// lock when the process exits, however it exits, so a crash never leaves a stale lock.
    pub fn new_locked(root: impl Into<PathBuf>) -> io::Result<Self> {
        let mut storage = Self::new(root)?;
        let path = storage.root.join(LOCK_FILE);
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            let held = e.raw_os_error() == Some(libc::EWOULDBLOCK);
            let why = if held {
                "is locked by another process (another broker uses this data dir)"
            } else {
                "could not be locked"
            };
            return Err(io::Error::new(
                if held { io::ErrorKind::WouldBlock } else { e.kind() },
                format!("lock file {} {why}: {e}", path.display()),
            ));
        }
        storage._lock = Some(Arc::new(file));
        Ok(storage)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &Path) -> io::Result<PathBuf> {
        Ok(self.root.join(check_relative(path)?))
    }
}

/// Raises this process's soft limit on open descriptors (`RLIMIT_NOFILE`) to its hard limit, as
/// the JVM does for Kafka: every segment holds three. Returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit write to and read from a struct this function owns.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(raised.rlim_cur);
        }
    }
    Ok(lim.rlim_cur)
}

#[async_trait]
impl Storage for OsStorage {
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        let full = self.full(path)?;
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        match mode {
            OpenMode::CreateNew => opts.create_new(true),
            OpenMode::OpenOrCreate => opts.create(true),
            OpenMode::Existing => &mut opts,
        };
        let file = opts.open(&full)?;
        let len = file.metadata()?.len();
        Ok(Arc::new(OsFile {
            path: full,
            file,
            len: AtomicU64::new(len),
            append_lock: Mutex::new(()),
        }))
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(self.full(path)?)
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.full(path)?)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not a name Loglab ever writes
            };
            out.push(DirEntry { name, is_dir: entry.file_type()?.is_dir() });
        }
        out.sort();
        Ok(out)
    }

    async fn exists(&self, path: &Path) -> io::Result<bool> {
        self.full(path)?.try_exists()
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(self.full(from)?, self.full(to)?)
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(self.full(path)?)
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(self.full(path)?)
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(self.full(path)?)?.sync_all()
    }
}

#[derive(Debug)]
struct OsFile {
    path: PathBuf,
    file: File,
    /// Our view of the length: appends reserve their range here before writing it.
    len: AtomicU64,
    /// One appender at a time (the log has one writer per partition; this makes misuse safe).
    append_lock: Mutex<()>,
}

#[async_trait]
impl StorageFile for OsFile {
    fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    async fn append(&self, data: &[u8]) -> io::Result<u64> {
        let _guard = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
        let pos = self.len.load(Ordering::Acquire);
        if let Err(e) = self.file.write_all_at(data, pos) {
            // A partial write may have landed; cut it so the file never holds half a record.
            let _ = self.file.set_len(pos);
            return Err(e);
        }
        self.len.store(pos + data.len() as u64, Ordering::Release);
        Ok(pos)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let end = self.len().min(pos.saturating_add(len as u64));
        let want = end.saturating_sub(pos) as usize;
        let mut buf = BytesMut::zeroed(want);
        let mut done = 0;
        while done < want {
            match self.file.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        Ok(buf.freeze())
    }

    async fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let _guard = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
        if len > self.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("truncate {:?} to {len} beyond its length {}", self.path, self.len()),
            ));
        }
        self.file.set_len(len)?;
        self.len.store(len, Ordering::Release);
        Ok(())
    }

    fn raw_fd(&self) -> Option<i32> {
        Some(self.file.as_raw_fd())
    }
}
