//! Several storages as one (`broker serve` with `log.dirs=/d0,/d1,…`: JBOD on real disks).
//!
//! The broker keeps its data directories as paths inside one [`Storage`] (see `manager`), as the
//! simulator does with one disk model holding a device per directory. On real hardware each
//! `log.dirs` entry is a directory of its own (usually a file system of its own), so
//! [`MountStorage`] routes a path whose first component is a mount name to that mount's storage,
//! with the rest of the path. The root lists the mounts and nothing else; a rename between mounts
//! fails with EXDEV, as it does between file systems. Files are the mounted storage's own (a real
//! file keeps its descriptor, so sendfile is unchanged).

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use disk_model::storage::check_relative;
use disk_model::{DirEntry, FileRef, OpenMode, Storage};

/// EXDEV: a rename across file systems.
pub const EXDEV: i32 = 18;

#[derive(Debug)]
pub struct MountStorage {
    /// (name, storage), names distinct single path components; looked up in order.
    mounts: Vec<(String, std::sync::Arc<dyn Storage>)>,
}

impl MountStorage {
    /// Panics if a name is not one plain path component or is repeated (a caller's bug).
    pub fn new(mounts: Vec<(String, std::sync::Arc<dyn Storage>)>) -> Self {
        for (i, (name, _)) in mounts.iter().enumerate() {
            let p = Path::new(name);
            assert!(
                p.components().count() == 1 && check_relative(p).is_ok_and(|c| c == p),
                "mount name {name:?} is not one plain component"
            );
            assert!(mounts[..i].iter().all(|(n, _)| n != name), "mount {name:?} given twice");
        }
        Self { mounts }
    }

    /// The mount a path is in and the path inside it; `None` for the root itself.
    fn route<'a>(&'a self, path: &Path) -> io::Result<Option<(&'a dyn Storage, PathBuf)>> {
        let path = check_relative(path)?;
        let mut parts = path.components();
        let Some(first) = parts.next() else { return Ok(None) };
        let name = first.as_os_str();
        match self.mounts.iter().find(|(n, _)| name == n.as_str()) {
            Some((_, s)) => Ok(Some((s.as_ref(), parts.as_path().to_path_buf()))),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{path:?} is in no data directory"),
            )),
        }
    }

    fn root_is_read_only(op: &str) -> io::Error {
        io::Error::new(io::ErrorKind::PermissionDenied, format!("{op}: the mount root is fixed"))
    }
}

#[async_trait]
impl Storage for MountStorage {
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<FileRef> {
        match self.route(path)? {
            Some((s, p)) if !p.as_os_str().is_empty() => s.open(&p, mode).await,
            _ => Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{path:?} is a mount"))),
        }
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        match self.route(path)? {
            Some((s, p)) if !p.as_os_str().is_empty() => s.create_dir_all(&p).await,
            _ => Ok(()), // the root and the mounts exist
        }
    }

    async fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        match self.route(path)? {
            Some((s, p)) => s.list_dir(&p).await,
            None => {
                let mut out: Vec<DirEntry> = self
                    .mounts
                    .iter()
                    .map(|(n, _)| DirEntry { name: n.clone(), is_dir: true })
                    .collect();
                out.sort();
                Ok(out)
            }
        }
    }

    async fn exists(&self, path: &Path) -> io::Result<bool> {
        match self.route(path) {
            Ok(Some((s, p))) => s.exists(&p).await,
            Ok(None) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (Some((a, pa)), Some((b, pb))) = (self.route(from)?, self.route(to)?) else {
            return Err(Self::root_is_read_only("rename"));
        };
        if !std::ptr::addr_eq(a, b) {
            return Err(io::Error::from_raw_os_error(EXDEV));
        }
        a.rename(&pa, &pb).await
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self.route(path)? {
            Some((s, p)) => s.remove_file(&p).await,
            None => Err(Self::root_is_read_only("remove_file")),
        }
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match self.route(path)? {
            Some((s, p)) if !p.as_os_str().is_empty() => s.remove_dir_all(&p).await,
            _ => Err(Self::root_is_read_only("remove_dir_all")),
        }
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        match self.route(path)? {
            Some((s, p)) => s.sync_dir(&p).await,
            None => Ok(()), // the mounts are fixed: nothing of the root to make durable
        }
    }
}
