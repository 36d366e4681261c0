//! The storage interface: the file operations the broker needs and nothing more.
//!
//! Files are append-only from the broker's point of view (Kafka writes only at the tail of a
//! segment; indexes are appended too), may be truncated (recovery, replica truncation) and are
//! replaced whole by write-to-temp + rename (checkpoints). Errors are `io::Error`, with the kinds
//! and raw OS codes a real disk gives (EIO, ENOSPC, NotFound, AlreadyExists), so the broker handles
//! a simulated fault exactly as it would a real one.
//!
//! Paths are relative to the storage's root; backends refuse absolute paths and `..`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub type FileRef = Arc<dyn StorageFile>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create; fail with `AlreadyExists` if the file is there.
    CreateNew,
    /// Open, creating an empty file if missing.
    OpenOrCreate,
    /// Open; fail with `NotFound` if missing.
    Existing,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug {
    /// Opens a file for reading and appending.
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef>;
    async fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Entries of a directory, sorted by name (so iteration order never depends on the backend).
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    async fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Atomically replaces `to` with `from` (POSIX rename). Durable after `sync_dir` of the parent.
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    async fn remove_file(&self, path: &Path) -> io::Result<()>;
    async fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, deletes) durable.
    async fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

#[async_trait]
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// The current length as seen by this process (includes data not yet durable).
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends `data` at the end; returns the position it was written at.
    async fn append(&self, data: &[u8]) -> io::Result<u64>;
    /// Reads up to `len` bytes at `pos`; fewer only at end of file.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// [`StorageFile::read_at`] in pieces whose concatenation is its answer: a simulated file
    /// lends its pages instead of copying them (what a sendfile region sends).
    async fn read_pieces_at(&self, pos: u64, len: usize) -> io::Result<Vec<Bytes>> {
        Ok(vec![self.read_at(pos, len).await?])
    }
    /// `fdatasync`: returns when everything appended so far is durable, or with the error that
    /// says it is not (after which, as in Linux, the failed pages may be lost).
    async fn sync(&self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (`len` at most the current length).
    async fn truncate(&self, len: u64) -> io::Result<()>;
    /// The OS file descriptor for zero-copy sends (`sendfile(2)`); `None` for simulated files.
    fn raw_fd(&self) -> Option<i32> {
        None
    }
    /// The handle to hold while a [`FileRegion`] of this file is in flight. A file that opens
    /// its descriptor lazily (and may close it when idle) returns the open handle, which stays
    /// open while held; a file that is its own handle returns `None`.
    async fn pin(&self) -> io::Result<Option<FileRef>> {
        Ok(None)
    }
}

/// A byte range of a file handed to the network layer instead of the bytes themselves: the real
/// transport sends it with `sendfile(2)`, the simulated one reads it through the page-cache model
/// without charging a user-space copy.
#[derive(Clone)]
pub struct FileRegion {
    pub file: FileRef,
    pub pos: u64,
    pub len: u64,
}

impl FileRegion {
    /// Reads the region into memory (the copy path).
    pub async fn read(&self) -> io::Result<Bytes> {
        let bytes = self.file.read_at(self.pos, self.len_usize()?).await?;
        self.whole(bytes.len())?;
        Ok(bytes)
    }

    /// [`FileRegion::read`] in pieces (a simulated file's pages, shared rather than copied:
    /// simulated sends).
    pub async fn read_pieces(&self) -> io::Result<Vec<Bytes>> {
        let pieces = self.file.read_pieces_at(self.pos, self.len_usize()?).await?;
        self.whole(pieces.iter().map(Bytes::len).sum())?;
        Ok(pieces)
    }

    fn len_usize(&self) -> io::Result<usize> {
        usize::try_from(self.len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))
    }

    /// An error unless `got` bytes are the whole region (fewer: the file ended before it).
    fn whole(&self, got: usize) -> io::Result<()> {
        if got as u64 == self.len {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("region {}+{} past end of file", self.pos, self.len),
        ))
    }
}

impl fmt::Debug for FileRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileRegion({:?} @{}+{})", self.file, self.pos, self.len)
    }
}

/// Rejects absolute paths and `..` so a backend can never be walked out of its root.
pub fn check_relative(path: &Path) -> io::Result<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("path {path:?} must be relative and stay inside the storage root"),
                ))
            }
        }
    }
    Ok(out)
}
