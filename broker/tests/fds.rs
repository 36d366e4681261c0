//! Bounded descriptors (issue 17): the broker-wide cache of open log files
//! (`broker::log::file_cache`) closes idle handles, reopens on use, never closes a handle in use,
//! and follows renames and removals; a real `broker serve` with thousands of partitions under a
//! low open-file limit takes writes to all of them, is killed, and restarts on its own data dir.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker::log::file_cache::CachedStorage;
use disk_model::{FileRef, OpenMode, Storage};

/// A backend of this world: real files in a temp dir, or the simulated disk.
fn backend() -> (Arc<dyn Storage>, Option<tempfile::TempDir>) {
    #[cfg(not(madsim))]
    {
        let dir = tempfile::tempdir().expect("a temp dir");
        let st: Arc<dyn Storage> = Arc::new(disk_model::OsStorage::new(dir.path()).expect("root"));
        (st, Some(dir))
    }
    #[cfg(madsim)]
    {
        use disk_model::{clock::Clock, DeviceProfile, SimDisk, SimDiskConfig};
        let disk = SimDisk::new(SimDiskConfig::new(DeviceProfile::nvme(), 5), Clock::runtime());
        (Arc::new(disk), None)
    }
}

/// xorshift64*: the test's own seeded draws (the same sequence in both worlds).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

const FILES: usize = 12;
const OPEN_MAX: usize = 4;

fn name(i: usize) -> PathBuf {
    PathBuf::from(format!("d/{i:02}.log"))
}

/// Random appends, reads, truncates, pins and reopenings of 12 files through a cache of 4
/// handles, checked against a model of their contents: every read agrees with the model, the
/// cache holds at most its bound plus the handles in use, and a pinned handle keeps working however
/// much the others churn (it is never closed while held).
#[test]
fn handle_cache_evicts_reopens_and_never_closes_a_handle_in_use() {
    for seed in 1..=6u64 {
        support::block_on(seed, async move {
            let (inner, _dir) = backend();
            inner.create_dir_all(Path::new("d")).await.unwrap();
            let cache = CachedStorage::new(inner.clone(), OPEN_MAX);
            let mut model: Vec<Vec<u8>> = vec![Vec::new(); FILES];
            let mut files: Vec<FileRef> = Vec::new();
            for i in 0..FILES {
                files.push(cache.open(&name(i), OpenMode::CreateNew).await.unwrap());
            }
            assert!(cache.stats().open <= OPEN_MAX, "{:?}", cache.stats());
            let mut pinned: Vec<(usize, FileRef)> = Vec::new();
            let (mut pins, mut declined) = (0, 0);
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            for step in 0..600 {
                let i = rng.below(FILES as u64) as usize;
                match rng.below(10) {
                    0..=3 => {
                        let n = 1 + rng.below(300) as usize;
                        let data: Vec<u8> = (0..n).map(|k| (step + k) as u8).collect();
                        let pos = files[i].append(&data).await.unwrap();
                        assert_eq!(pos, model[i].len() as u64, "append lands at the tail");
                        model[i].extend_from_slice(&data);
                    }
                    4..=5 => {
                        let got = files[i].read_at(0, 1 << 20).await.unwrap();
                        assert_eq!(&got[..], &model[i][..], "seed {seed} step {step} file {i}");
                    }
                    6 => {
                        let to = rng.below(model[i].len() as u64 + 1);
                        files[i].truncate(to).await.unwrap();
                        model[i].truncate(to as usize);
                    }
                    7 if pinned.len() < 2 => {
                        // Pinned only while the cache is within its bound (else the copy path).
                        match files[i].pin().await.unwrap() {
                            Some(h) => pinned.push((i, h)),
                            None => declined += 1,
                        }
                        pins += 1;
                    }
                    7 => drop(pinned.remove(0)),
                    _ => {
                        // Dropped and opened again by name: the same bytes.
                        files[i] = cache.open(&name(i), OpenMode::Existing).await.unwrap();
                        assert_eq!(files[i].len(), model[i].len() as u64);
                    }
                }
                for (p, h) in &pinned {
                    // A pinned handle is the live descriptor: it sees every append since.
                    let got = h.read_at(0, 1 << 20).await.expect("a pinned handle stays open");
                    assert_eq!(&got[..], &model[*p][..], "pinned file {p} at step {step}");
                }
                // At most the bound plus the handles in use when the last one was opened.
                let s = cache.stats();
                assert!(s.open <= OPEN_MAX + 2, "step {step}: {s:?}");
                assert_eq!(s.files, FILES);
            }
            let s = cache.stats();
            assert!(s.evictions > 50 && s.reopens > 50, "the cache churned: {s:?}");
            assert!(s.open_high_water <= OPEN_MAX + 2, "{s:?}");
            assert!(pins > 10 && declined < pins, "pins {pins}, declined {declined}");
            drop(pinned);
            drop(files);
            assert_eq!(cache.stats().open, 0, "dropping the files closes every handle");
            // What the cache wrote is what the backend holds.
            for (i, want) in model.iter().enumerate() {
                let f = inner.open(&name(i), OpenMode::Existing).await.unwrap();
                assert_eq!(&f.read_at(0, 1 << 20).await.unwrap()[..], &want[..], "file {i}");
            }
        });
    }
}

/// Names follow the namespace: a renamed file reopens under its new name; a file replaced by a
/// rename or removed keeps its open handle (as an unlinked POSIX file), and one that was closed
/// then fails with NotFound rather than reading another file's bytes.
#[test]
fn handle_cache_follows_renames_and_removals() {
    support::block_on(7, async {
        let (inner, _dir) = backend();
        inner.create_dir_all(Path::new("d")).await.unwrap();
        let cache = CachedStorage::new(inner.clone(), 1);
        let a = cache.open(Path::new("d/a"), OpenMode::CreateNew).await.unwrap();
        a.append(b"aaaa").await.unwrap();
        let old = cache.open(Path::new("d/old"), OpenMode::CreateNew).await.unwrap();
        old.append(b"old").await.unwrap();
        assert_eq!(cache.stats().open, 1, "a was closed to open old");
        // a (closed) is renamed over old (open): old keeps its bytes, a reopens by its new name.
        cache.rename(Path::new("d/a"), Path::new("d/old")).await.unwrap();
        assert_eq!(&old.read_at(0, 100).await.unwrap()[..], b"old");
        assert_eq!(&a.read_at(0, 100).await.unwrap()[..], b"aaaa");
        assert_eq!(a.len(), 4);
        // Closed, then removed: NotFound, never someone else's bytes.
        let b = cache.open(Path::new("d/b"), OpenMode::CreateNew).await.unwrap();
        b.append(b"bb").await.unwrap();
        assert!(cache.stats().evictions >= 2);
        cache.remove_file(Path::new("d/old")).await.unwrap(); // a's new name
        let _other = inner.open(Path::new("d/old"), OpenMode::CreateNew).await.unwrap();
        let e = a.read_at(0, 100).await.expect_err("a was closed and removed");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        // A removed directory takes its files' names.
        cache.remove_dir_all(Path::new("d")).await.unwrap();
        assert_eq!(&b.read_at(0, 10).await.unwrap()[..], b"bb", "open, so still readable");
        assert!(cache.open(Path::new("d/b"), OpenMode::Existing).await.is_err());
    });
}

/// Every batch of `log` from its start, read as a consumer would (regions, sent or copied):
/// (base offset, record count) each.
async fn read_all(log: &broker::log::Log) -> Vec<(i64, usize)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let info = log.read(offset, i64::MAX, 1 << 20, true).await.expect("a read");
        let region = info.region.expect("data below the log end");
        let bytes = region.read().await.expect("the region's bytes");
        for (base, count, _) in support::decode_all(&bytes) {
            out.push((base, count));
            offset = base + count as i64;
        }
    }
    out
}

/// Logs over a cache far smaller than their segment files: rolling, retention, reads of old
/// segments, a restart (unclean: no close) and recovery all work through reopened handles, and
/// every log reads back exactly what was written.
#[test]
fn logs_over_a_small_cache_roll_retain_recover_and_read_back() {
    use broker::log::{Log, LogConfig, OpenOptions};
    const LOGS: usize = 16;
    support::block_on(11, async {
        let (inner, _dir) = backend();
        let config = LogConfig {
            segment_bytes: 4_096,
            index_interval_bytes: 512,
            retention_bytes: 12_000,
            ..LogConfig::default()
        };
        let cache = CachedStorage::new(inner.clone(), 8);
        let storage: Arc<dyn Storage> = Arc::new(cache.clone());
        let mut logs = Vec::new();
        for l in 0..LOGS {
            let dir = PathBuf::from(format!("t-{l}"));
            let options = OpenOptions::default();
            let (log, _) =
                Log::open(storage.clone(), &dir, config.clone(), options, 0).await.unwrap();
            logs.push(log);
        }
        for round in 0..40u64 {
            for (l, log) in logs.iter_mut().enumerate() {
                let mut b = support::batch(3, 100, 1_700_000_000_000, round * 100 + l as u64);
                log.append_as_leader(&mut b, 0, 1_700_000_000_000).await.unwrap();
            }
        }
        let mut before = Vec::new();
        for log in &mut logs {
            assert!(log.segment_count() > 3, "rolled");
            log.apply_retention(1_700_000_000_000).await.unwrap();
            assert!(log.log_start_offset() > 0, "retention deleted old segments");
            let read = read_all(log).await;
            assert_eq!(read.last().map(|(b, c)| b + *c as i64), Some(120));
            before.push(read);
        }
        let s = cache.stats();
        assert!(s.open <= 8 + 1 && s.evictions > 100, "{s:?}");
        drop(logs); // a crash: no flush, no marker
        let cache = CachedStorage::new(inner, 8);
        let storage: Arc<dyn Storage> = Arc::new(cache.clone());
        for (l, want) in before.iter().enumerate() {
            let dir = PathBuf::from(format!("t-{l}"));
            let options = OpenOptions { log_start_offset: want[0].0, ..OpenOptions::default() };
            let (log, _) =
                Log::open(storage.clone(), &dir, config.clone(), options, 0).await.unwrap();
            assert_eq!(&read_all(&log).await, want, "log {l} after recovery");
        }
        assert!(cache.stats().open <= 8 + 1, "{:?}", cache.stats());
    });
}

#[cfg(not(madsim))]
mod real {
    //! `broker serve` under `ulimit -n 1024` with 3,000 partitions.
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::Duration;

    use broker::replica::wire::KafkaConn;
    use bytes::Bytes;
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
    use kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
    use kafka_protocol::messages::fetch_response::FetchResponse;
    use kafka_protocol::messages::produce_request::{
        PartitionProduceData, ProduceRequest, TopicProduceData,
    };
    use kafka_protocol::messages::produce_response::ProduceResponse;
    use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
    use net_model::Network;

    use crate::support::kafka::sb;
    use crate::support::process;

    const GENEROUS: Duration = Duration::from_secs(120);
    const FD_LIMIT: u64 = 1024;
    const TOPICS: [&str; 2] = ["wide-a", "wide-b"];
    const PER_TOPIC: i32 = 1_500;
    /// The cache's bound (half the limit, `broker serve`'s default) plus sockets, the lock file,
    /// the metadata log, stdio and the runtime's own descriptors.
    const FDS_MAX: usize = FD_LIMIT as usize / 2 + 64;

    /// `broker serve` on `data` with the open-file limit at [`FD_LIMIT`]; its listen address.
    fn spawn(data: &std::path::Path) -> (Child, String) {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" \"$@\""))
            .arg(process::BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(["--override", "loglab.partitions.per.request.max=3000"])
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(data.with_extension("stderr"))
                    .map_or_else(|_| Stdio::null(), Stdio::from),
            );
        let (child, lines, addr) = process::spawn_listening(&mut cmd, GENEROUS);
        // Keep draining stdout so the broker never blocks on a full pipe.
        process::drain(lines);
        (child, addr)
    }

    fn open_fds(pid: u32) -> usize {
        std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
    }

    async fn connect(addr: &str) -> KafkaConn {
        let net: Arc<dyn Network> = Arc::new(net_model::tcp::TcpNetwork::new(true));
        KafkaConn::connect(net.as_ref(), addr, "fds", GENEROUS).await.expect("connects")
    }

    async fn create_all(c: &mut KafkaConn) {
        let mut req = CreateTopicsRequest::default();
        req.timeout_ms = 600_000;
        for t in TOPICS {
            let mut ct = CreatableTopic::default();
            ct.name = TopicName(sb(t));
            ct.num_partitions = PER_TOPIC;
            ct.replication_factor = 1;
            req.topics.push(ct);
        }
        let r: CreateTopicsResponse =
            c.call(ApiKey::CreateTopics, 5, &req, 64 << 20, GENEROUS).await.expect("an answer");
        for t in &r.topics {
            assert_eq!(t.error_code, 0, "{:?}: {:?}", t.name, t.error_message);
        }
    }

    /// One batch to every partition; every partition's error code.
    async fn produce_all(c: &mut KafkaConn, seed: u64) -> Vec<i16> {
        let mut req = ProduceRequest::default();
        req.acks = 1;
        req.timeout_ms = 60_000;
        for t in TOPICS {
            let mut td = TopicProduceData::default();
            td.name = TopicName(sb(t));
            for p in 0..PER_TOPIC {
                let mut pd = PartitionProduceData::default();
                pd.index = p;
                let b = crate::support::batch(2, 32, 1_700_000_000_000, seed + p as u64);
                pd.records = Some(Bytes::from(b));
                td.partition_data.push(pd);
            }
            req.topic_data.push(td);
        }
        let r: ProduceResponse =
            c.call(ApiKey::Produce, 9, &req, 64 << 20, GENEROUS).await.expect("an answer");
        r.responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
            .collect()
    }

    /// Every partition read from offset 0: (error code, high watermark, bytes) each.
    async fn fetch_all(c: &mut KafkaConn) -> Vec<(i16, i64, usize)> {
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_bytes = 64 << 20;
        for t in TOPICS {
            let mut ft = FetchTopic::default();
            ft.topic = TopicName(sb(t));
            for p in 0..PER_TOPIC {
                let mut fp = FetchPartition::default();
                fp.partition = p;
                fp.partition_max_bytes = 1 << 16;
                fp.current_leader_epoch = -1;
                ft.partitions.push(fp);
            }
            req.topics.push(ft);
        }
        let r: FetchResponse =
            c.call(ApiKey::Fetch, 12, &req, 128 << 20, GENEROUS).await.expect("an answer");
        r.responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (p.error_code, p.high_watermark, p.records.as_ref().map_or(0, |b| b.len()))
                })
            })
            .collect()
    }

    fn kill9(child: &mut Child) {
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn three_thousand_partitions_under_a_1024_fd_limit_write_restart_and_serve() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let data = dir.path().join("data");
        let (mut child, addr) = spawn(&data);
        let pid = child.id();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::support::block_on(1, async {
                let mut c = connect(&addr).await;
                create_all(&mut c).await;
                let fds_created = open_fds(pid);
                let codes = produce_all(&mut c, 0).await;
                assert_eq!(codes.len(), 3_000);
                assert!(codes.iter().all(|e| *e == 0), "{codes:?}");
                let fds_written = open_fds(pid);
                println!("fds after creating 3,000 partitions: {fds_created}, after writes: {fds_written}");
                assert!(fds_created <= FDS_MAX && fds_written <= FDS_MAX, "{fds_written}");
            })
        }));
        kill9(&mut child);
        result.expect("first run");
        // Killed (no clean shutdown): it restarts on its own data dir and recovers every log.
        let (mut child, addr) = spawn(&data);
        let pid = child.id();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::support::block_on(2, async {
                let mut c = connect(&addr).await;
                let fds_started = open_fds(pid);
                let read = fetch_all(&mut c).await;
                assert_eq!(read.len(), 3_000);
                for (i, (err, hw, bytes)) in read.iter().enumerate() {
                    assert_eq!((*err, *hw), (0, 2), "partition {i}");
                    assert!(*bytes > 0, "partition {i} served its records");
                }
                let codes = produce_all(&mut c, 7).await;
                assert!(codes.iter().all(|e| *e == 0), "{codes:?}");
                let fds_served = open_fds(pid);
                println!(
                    "after restart: {fds_started} fds; after reads and writes to all: {fds_served}"
                );
                assert!(fds_started <= FDS_MAX && fds_served <= FDS_MAX, "{fds_served}");
            })
        }));
        kill9(&mut child);
        if result.is_err() {
            let log = std::fs::read_to_string(data.with_extension("stderr")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            println!("broker stderr (last lines, newest first):\n{}", tail.join("\n"));
        }
        result.expect("second run");
    }
}
