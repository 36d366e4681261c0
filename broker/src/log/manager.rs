//! The logs of a broker's data directories, each laid out as Kafka lays out a `log.dirs` entry:
//!
//! ```text
//! <data-dir>/
//!   .kafka_cleanshutdown               present only after a clean shutdown
//!   recovery-point-offset-checkpoint   topic partition offset: below it, data is durable
//!   log-start-offset-checkpoint        topic partition offset: first offset still readable
//!   cleaner-offset-checkpoint          topic partition offset: the cleaner's first dirty offset
//!   <topic>-<partition>/               one partition log (see `partition_log`)
//! ```
//!
//! On start the marker decides whether logs are trusted or recovered; it is deleted at once so a
//! crash after start is never mistaken for a clean stop.
//!
//! Several data directories (JBOD, `log.dirs=/d0,/d1,…`) are paths inside one storage (the
//! simulator mounts a device at each; `broker serve` routes each to its directory on the host:
//! `crate::log::mounts`). Each has its own checkpoints and marker and recovers on its own; a new
//! partition goes to the one holding the fewest logs ([`place`]); a partition found in two is
//! refused at open. The first directory also holds the topic registry, the controller's metadata
//! log and the replication-offset checkpoint (Kafka keeps one of those per directory).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use disk_model::{OpenMode, Storage};

use super::config::LogConfig;
use super::epoch::write_atomically;
use super::partition_log::{Log, LogError, OpenOptions, RecoveryReport};

pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub const LOG_START_FILE: &str = "log-start-offset-checkpoint";
/// The log cleaner's first dirty offset per compacted partition (Kafka's name and format).
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// Partitions a checkpoint file may list (bounds what a corrupt count makes us believe).
const CHECKPOINT_ENTRIES_MAX: usize = 1_000_000;

/// One definition, in `kafka-types` (`topic` is a shared `Topic`, comparing and ordering as the
/// `String` it was; `dir_name`/`parse_dir_name` moved there with it).
pub use kafka_types::TopicPartition;

/// Kafka's offset checkpoint format: `0`, count, then `topic partition offset` lines.
pub fn encode_offsets(offsets: &BTreeMap<TopicPartition, i64>) -> String {
    let mut s = format!("0\n{}\n", offsets.len());
    for (tp, off) in offsets {
        s.push_str(&format!("{} {} {}\n", tp.topic, tp.partition, off));
    }
    s
}

pub fn decode_offsets(text: &str) -> Result<BTreeMap<TopicPartition, i64>, String> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("0") {
        return Err("unknown checkpoint version".into());
    }
    let count: usize = lines.next().and_then(|l| l.trim().parse().ok()).ok_or("bad count line")?;
    if count > CHECKPOINT_ENTRIES_MAX {
        return Err(format!("{count} entries exceeds {CHECKPOINT_ENTRIES_MAX}"));
    }
    let mut out = BTreeMap::new();
    for _ in 0..count {
        let line = lines.next().ok_or("fewer entries than the count")?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [topic, partition, offset] = parts[..] else {
            return Err(format!("bad line {line:?}"));
        };
        let partition = partition.parse().map_err(|_| format!("bad partition in {line:?}"))?;
        let offset = offset.parse().map_err(|_| format!("bad offset in {line:?}"))?;
        out.insert(TopicPartition::new(topic, partition), offset);
    }
    Ok(out)
}

async fn load_offsets(
    storage: &dyn Storage,
    path: &Path,
) -> io::Result<BTreeMap<TopicPartition, i64>> {
    if !storage.exists(path).await? {
        return Ok(BTreeMap::new());
    }
    let file = storage.open(path, OpenMode::Existing).await?;
    let len = usize::try_from(file.len()).unwrap_or(usize::MAX).min(CHECKPOINT_ENTRIES_MAX * 64);
    let bytes = file.read_at(0, len).await?;
    match std::str::from_utf8(&bytes).map_err(|e| e.to_string()).and_then(decode_offsets) {
        Ok(map) => Ok(map),
        Err(why) => {
            // Losing a checkpoint costs a longer recovery, never data: recovery then starts at 0.
            tracing::warn!(?path, %why, "ignoring malformed offset checkpoint");
            Ok(BTreeMap::new())
        }
    }
}

/// The files of a data directory that are not a partition's: the checkpoints and the
/// clean-shutdown marker, and the directory entries of partition logs (create, delete). Holds no
/// log: the broker keeps each log in its partition, and passes what a checkpoint needs.
#[derive(Debug)]
pub struct DataDir {
    storage: Arc<dyn Storage>,
    root: PathBuf,
    recovery_points: BTreeMap<TopicPartition, i64>,
    log_starts: BTreeMap<TopicPartition, i64>,
}

/// What a checkpoint records of one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPoints {
    pub recovery_point: i64,
    pub log_start_offset: i64,
    pub cleaner_checkpoint: Option<i64>,
}

impl LogPoints {
    pub fn of(log: &Log) -> Self {
        Self {
            recovery_point: log.recovery_point(),
            log_start_offset: log.log_start_offset(),
            cleaner_checkpoint: log.cleaner_checkpoint(),
        }
    }
}

/// Opens the log of a new partition in the data directory `root`.
pub async fn create_log(
    storage: &Arc<dyn Storage>,
    root: &Path,
    tp: &TopicPartition,
    config: LogConfig,
    now_ms: i64,
) -> Result<Log, LogError> {
    let dir = root.join(tp.dir_name());
    let (log, _) = Log::open(storage.clone(), &dir, config, OpenOptions::default(), now_ms).await?;
    storage.sync_dir(root).await?;
    Ok(log)
}

impl DataDir {
    /// The directory's path inside the storage.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Deletes a partition's log directory `dir` (its log closed: no more writes to it).
    pub async fn delete_log(&mut self, tp: &TopicPartition, dir: &Path) -> Result<(), LogError> {
        self.storage.remove_dir_all(dir).await?;
        self.storage.sync_dir(&self.root).await?;
        self.recovery_points.remove(tp);
        self.log_starts.remove(tp);
        Ok(())
    }

    /// Retires a partition's log directory `dir` (its log closed) as Kafka does: renamed to
    /// `<topic>-<partition>.<unique hex>-delete` (durably: a restart never opens it as a log),
    /// its checkpoint entries dropped. Returns the new path; the caller removes it later.
    pub async fn retire_log(
        &mut self,
        tp: &TopicPartition,
        dir: &Path,
        unique: &[u8; 16],
    ) -> Result<PathBuf, LogError> {
        let to = self.root.join(super::partition_metadata::delete_dir_name(tp, unique));
        if self.storage.exists(&to).await? {
            self.storage.remove_dir_all(&to).await?; // a leftover of an interrupted retirement
        }
        self.storage.rename(dir, &to).await?;
        self.storage.sync_dir(&self.root).await?;
        self.recovery_points.remove(tp);
        self.log_starts.remove(tp);
        Ok(to)
    }

    /// Retired partition directories (`…-delete`) in the data directory, e.g. left by a process
    /// that stopped before removing them.
    pub async fn retired_dirs(&self) -> Result<Vec<PathBuf>, LogError> {
        let mut out = Vec::new();
        for e in self.storage.list_dir(&self.root).await? {
            if e.is_dir && super::partition_metadata::is_delete_dir(&e.name) {
                out.push(self.root.join(&e.name));
            }
        }
        Ok(out)
    }

    /// Removes a retired directory and makes its removal durable.
    pub async fn remove_retired(&self, dir: &Path) -> Result<(), LogError> {
        self.storage.remove_dir_all(dir).await?;
        self.storage.sync_dir(&self.root).await?;
        Ok(())
    }

    /// Writes the recovery-point, log-start and cleaner checkpoints from `points` (Kafka does
    /// this periodically).
    pub async fn checkpoint(
        &mut self,
        points: &BTreeMap<TopicPartition, LogPoints>,
    ) -> Result<(), LogError> {
        for (tp, p) in points {
            self.recovery_points.insert(tp.clone(), p.recovery_point);
            self.log_starts.insert(tp.clone(), p.log_start_offset);
        }
        write_atomically(
            self.storage.as_ref(),
            &self.root,
            RECOVERY_POINT_FILE,
            encode_offsets(&self.recovery_points).as_bytes(),
        )
        .await?;
        write_atomically(
            self.storage.as_ref(),
            &self.root,
            LOG_START_FILE,
            encode_offsets(&self.log_starts).as_bytes(),
        )
        .await?;
        self.write_cleaner_checkpoint(points).await
    }

    /// Writes `cleaner-offset-checkpoint` (after a clean, and with the other checkpoints).
    pub async fn write_cleaner_checkpoint(
        &self,
        points: &BTreeMap<TopicPartition, LogPoints>,
    ) -> Result<(), LogError> {
        let cleaner: BTreeMap<TopicPartition, i64> = points
            .iter()
            .filter_map(|(tp, p)| p.cleaner_checkpoint.map(|c| (tp.clone(), c)))
            .collect();
        if cleaner.is_empty()
            && !self.storage.exists(&self.root.join(CLEANER_CHECKPOINT_FILE)).await?
        {
            return Ok(());
        }
        write_atomically(
            self.storage.as_ref(),
            &self.root,
            CLEANER_CHECKPOINT_FILE,
            encode_offsets(&cleaner).as_bytes(),
        )
        .await?;
        Ok(())
    }

    /// The last step of a clean shutdown (every log flushed and checkpointed): the marker.
    pub async fn write_clean_shutdown_marker(&self) -> Result<(), LogError> {
        let marker =
            self.storage.open(&self.root.join(CLEAN_SHUTDOWN_FILE), OpenMode::OpenOrCreate).await?;
        marker.sync().await?;
        self.storage.sync_dir(&self.root).await?;
        Ok(())
    }
}

/// Data directories a broker may keep (Kafka has no limit; every one is listed, recovered and
/// checkpointed, and in the simulator each is a device of its own).
pub const LOG_DIRS_MAX: usize = 64;

/// All partition logs of a broker's data directories (Kafka's `log.dirs`: JBOD), each
/// partition in exactly one of them.
#[derive(Debug)]
pub struct LogManager {
    /// In `log.dirs` order; the first also holds the topic registry and the metadata log.
    dirs: Vec<DataDir>,
    default_config: LogConfig,
    logs: BTreeMap<TopicPartition, Log>,
    /// Logs in each directory (where the next new partition goes: [`place`]).
    counts: Vec<usize>,
    /// Whether the previous process stopped cleanly in every directory (decided once, at open).
    was_clean: bool,
}

/// Where a new partition's log goes: the directory holding the fewest logs, the earliest in
/// `log.dirs` among equals (Kafka's `LogManager.nextLogDirs`).
pub fn place(counts: &[usize]) -> usize {
    assert!(!counts.is_empty(), "a broker has at least one data directory");
    let fewest = counts.iter().min().expect("not empty");
    counts.iter().position(|c| c == fewest).expect("the minimum is an element")
}

/// The data directory (an index into `roots`) a partition directory `dir` is in.
pub fn dir_index<'a>(roots: impl IntoIterator<Item = &'a Path>, dir: &Path) -> Option<usize> {
    let parent = dir.parent().unwrap_or(Path::new(""));
    roots.into_iter().position(|r| r == parent)
}

/// `log.dirs` as paths inside one storage: at least one, at most [`LOG_DIRS_MAX`], distinct, and
/// (when several) none empty nor inside another, so a partition directory's parent names its
/// data directory.
pub fn check_roots(roots: &[PathBuf]) -> io::Result<()> {
    let bad = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    if roots.is_empty() || roots.len() > LOG_DIRS_MAX {
        return bad(format!("{} data directories; 1..={LOG_DIRS_MAX} allowed", roots.len()));
    }
    if roots.len() == 1 {
        return Ok(());
    }
    for (i, a) in roots.iter().enumerate() {
        if a.as_os_str().is_empty() {
            return bad("with several data directories, none may be the storage's root".into());
        }
        for b in &roots[i + 1..] {
            if a.starts_with(b) || b.starts_with(a) {
                return bad(format!("data directories {a:?} and {b:?} overlap"));
            }
        }
    }
    Ok(())
}

/// One data directory opened: its files, its logs and whether it was shut down cleanly.
type OpenedDir = (DataDir, BTreeMap<TopicPartition, (Log, RecoveryReport)>, bool);

async fn open_dir(
    storage: &Arc<dyn Storage>,
    root: &Path,
    config_for: &dyn Fn(&str) -> LogConfig,
    now_ms: i64,
) -> Result<OpenedDir, LogError> {
    if !storage.exists(root).await? {
        // Durable only once the parent knows it: a power loss must not take the data dir.
        storage.create_dir_all(root).await?;
        storage.sync_dir(root.parent().unwrap_or(Path::new(""))).await?;
    }
    let marker = root.join(CLEAN_SHUTDOWN_FILE);
    let was_clean = storage.exists(&marker).await?;
    let recovery_points = load_offsets(storage.as_ref(), &root.join(RECOVERY_POINT_FILE)).await?;
    let log_starts = load_offsets(storage.as_ref(), &root.join(LOG_START_FILE)).await?;
    // Losing it only makes the next clean start from the log start.
    let cleaner_points =
        load_offsets(storage.as_ref(), &root.join(CLEANER_CHECKPOINT_FILE)).await?;
    let mut logs = BTreeMap::new();
    for entry in storage.list_dir(root).await? {
        // The controller's metadata log (combined mode) shares the data dir, as in Kafka.
        if entry.name == crate::controller::raft_log::METADATA_DIR {
            continue;
        }
        let Some(tp) = entry.is_dir.then(|| TopicPartition::parse_dir_name(&entry.name)).flatten()
        else {
            continue;
        };
        let options = OpenOptions {
            clean_shutdown: was_clean,
            recovery_point: recovery_points.get(&tp).copied().unwrap_or(0),
            log_start_offset: log_starts.get(&tp).copied().unwrap_or(0),
        };
        let (mut log, report) = Log::open(
            storage.clone(),
            &root.join(&entry.name),
            config_for(&tp.topic),
            options,
            now_ms,
        )
        .await?;
        if let Some(c) = cleaner_points.get(&tp) {
            log.set_cleaner_checkpoint(*c);
        }
        if !report.damage.is_empty() {
            tracing::warn!(partition = %tp, ?report, "recovered damaged log");
        }
        logs.insert(tp, (log, report));
    }
    if was_clean {
        storage.remove_file(&marker).await?;
        storage.sync_dir(root).await?;
    }
    let dir =
        DataDir { storage: storage.clone(), root: root.to_path_buf(), recovery_points, log_starts };
    Ok((dir, logs, was_clean))
}

impl LogManager {
    /// Opens every partition directory under `root` (a path inside `storage`; "" for its root).
    /// `config_for` gives each topic's log config (topic overrides over the broker defaults).
    pub async fn open(
        storage: Arc<dyn Storage>,
        root: &Path,
        default_config: LogConfig,
        config_for: &dyn Fn(&str) -> LogConfig,
        now_ms: i64,
    ) -> Result<(Self, BTreeMap<TopicPartition, RecoveryReport>), LogError> {
        Self::open_dirs(storage, &[root.to_path_buf()], default_config, config_for, now_ms).await
    }

    /// [`LogManager::open`] of several data directories (`log.dirs`, in order; see
    /// [`check_roots`]). A partition found in two of them is refused, as Kafka refuses to start
    /// ("Duplicate log directories"): which copy is right is the operator's call.
    pub async fn open_dirs(
        storage: Arc<dyn Storage>,
        roots: &[PathBuf],
        default_config: LogConfig,
        config_for: &dyn Fn(&str) -> LogConfig,
        now_ms: i64,
    ) -> Result<(Self, BTreeMap<TopicPartition, RecoveryReport>), LogError> {
        check_roots(roots)?;
        let mut dirs = Vec::with_capacity(roots.len());
        let mut logs: BTreeMap<TopicPartition, Log> = BTreeMap::new();
        let mut reports = BTreeMap::new();
        let mut counts = Vec::with_capacity(roots.len());
        let mut was_clean = true;
        for root in roots {
            let (dir, found, clean) = open_dir(&storage, root, config_for, now_ms).await?;
            was_clean &= clean;
            counts.push(found.len());
            for (tp, (log, report)) in found {
                if let Some(other) = logs.get(&tp) {
                    let why = format!(
                        "partition {tp} is in two data directories ({:?} and {:?})",
                        other.dir(),
                        log.dir()
                    );
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why).into());
                }
                reports.insert(tp.clone(), report);
                logs.insert(tp, log);
            }
            dirs.push(dir);
        }
        Ok((Self { dirs, default_config, logs, counts, was_clean }, reports))
    }

    /// The data directories' own files, every log, and how many logs each directory holds,
    /// for a caller that keeps logs apart.
    pub fn into_parts(self) -> (Vec<DataDir>, BTreeMap<TopicPartition, Log>, Vec<usize>) {
        (self.dirs, self.logs, self.counts)
    }

    pub fn was_clean(&self) -> bool {
        self.was_clean
    }

    pub fn default_config(&self) -> &LogConfig {
        &self.default_config
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<&Log> {
        self.logs.get(tp)
    }

    pub fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut Log> {
        self.logs.get_mut(tp)
    }

    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.logs.keys()
    }

    pub fn logs_mut(&mut self) -> impl Iterator<Item = (&TopicPartition, &mut Log)> {
        self.logs.iter_mut()
    }

    /// Creates the log of a new partition (or returns the existing one).
    pub async fn create(
        &mut self,
        tp: TopicPartition,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<&mut Log, LogError> {
        if !self.logs.contains_key(&tp) {
            let i = place(&self.counts);
            let dir = &self.dirs[i];
            let log = create_log(&dir.storage, &dir.root, &tp, config, now_ms).await?;
            self.counts[i] += 1;
            self.logs.insert(tp.clone(), log);
        }
        Ok(self.logs.get_mut(&tp).expect("just inserted"))
    }

    /// Retired partition directories waiting for removal ([`DataDir::retired_dirs`]), of
    /// every data directory.
    pub async fn retired_dirs(&self) -> Result<Vec<PathBuf>, LogError> {
        let mut out = Vec::new();
        for d in &self.dirs {
            out.extend(d.retired_dirs().await?);
        }
        Ok(out)
    }

    /// The storage the logs live in.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.dirs[0].storage
    }

    /// The data directory holding `dir`, the directory of a log just taken out of `logs`
    /// (its count goes down by one).
    fn dir_losing(&mut self, dir: &Path) -> &mut DataDir {
        let i = self.dir_of(dir);
        self.counts[i] -= 1;
        &mut self.dirs[i]
    }

    /// The data directory (index into `dirs`) holding the partition directory `dir`.
    fn dir_of(&self, dir: &Path) -> usize {
        dir_index(self.dirs.iter().map(|d| d.root.as_path()), dir)
            .expect("a log lives in one of the data directories")
    }

    /// Closes a partition's log and retires its directory ([`DataDir::retire_log`]); the
    /// retired path, `None` if there was no such log.
    pub async fn retire(
        &mut self,
        tp: &TopicPartition,
        unique: &[u8; 16],
    ) -> Result<Option<PathBuf>, LogError> {
        let Some(log) = self.logs.remove(tp) else {
            return Ok(None);
        };
        let dir = log.dir().to_path_buf();
        drop(log);
        self.dir_losing(&dir).retire_log(tp, &dir, unique).await.map(Some)
    }

    /// Deletes a partition's log and its directory.
    pub async fn delete(&mut self, tp: &TopicPartition) -> Result<bool, LogError> {
        let Some(log) = self.logs.remove(tp) else {
            return Ok(false);
        };
        let dir = log.dir().to_path_buf();
        drop(log);
        self.dir_losing(&dir).delete_log(tp, &dir).await?;
        Ok(true)
    }

    /// What each data directory's checkpoints record of its logs, in `log.dirs` order.
    fn points(&self) -> Vec<BTreeMap<TopicPartition, LogPoints>> {
        let mut out = vec![BTreeMap::new(); self.dirs.len()];
        for (tp, log) in &self.logs {
            out[self.dir_of(log.dir())].insert(tp.clone(), LogPoints::of(log));
        }
        out
    }

    /// Writes the recovery-point and log-start checkpoints (Kafka does this periodically).
    pub async fn checkpoint(&mut self) -> Result<(), LogError> {
        let points = self.points();
        for (dir, p) in self.dirs.iter_mut().zip(&points) {
            dir.checkpoint(p).await?;
        }
        Ok(())
    }

    /// Writes `cleaner-offset-checkpoint` (after a clean, and with the other checkpoints).
    pub async fn write_cleaner_checkpoint(&mut self) -> Result<(), LogError> {
        let points = self.points();
        for (dir, p) in self.dirs.iter().zip(&points) {
            dir.write_cleaner_checkpoint(p).await?;
        }
        Ok(())
    }

    /// Clean shutdown: flush every log, checkpoint, then write each directory's marker.
    pub async fn shutdown(mut self, now_ms: i64) -> Result<(), LogError> {
        for log in self.logs.values_mut() {
            log.flush(now_ms).await?;
        }
        self.checkpoint().await?;
        for dir in &self.dirs {
            dir.write_clean_shutdown_marker().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_and_checkpoints() {
        assert_eq!(
            TopicPartition::parse_dir_name("my-topic-12"),
            Some(TopicPartition::new("my-topic", 12))
        );
        assert_eq!(TopicPartition::parse_dir_name("topic"), None);
        assert_eq!(TopicPartition::parse_dir_name("-3"), None);
        let mut m = BTreeMap::new();
        m.insert(TopicPartition::new("a", 0), 10);
        m.insert(TopicPartition::new("b-x", 3), 7);
        assert_eq!(decode_offsets(&encode_offsets(&m)).unwrap(), m);
        assert!(decode_offsets("0\n5\na 0 1\n").is_err());
    }
}
