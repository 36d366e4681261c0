//! Several data directories (`log.dirs=/d0,/d1,…`: JBOD). In both worlds, on the simulated disk:
//! a new partition goes to the directory holding the fewest logs (the earliest among equals);
//! each directory keeps its own checkpoints and clean-shutdown marker and recovers on its own; a
//! partition found in two directories is refused; DescribeLogDirs lists each directory with its
//! own partitions; the mount storage `broker serve` uses routes paths and refuses renames across
//! directories. In the real world, `broker serve` with two `log.dirs` spreads a topic over both.
#![allow(clippy::field_reassign_with_default)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker::log::manager::{LOG_START_FILE, RECOVERY_POINT_FILE};
use broker::log::mounts::{MountStorage, EXDEV};
use broker::log::{LogConfig, LogManager, TopicPartition};
use broker::{Broker, BrokerConfig, Outcome};
use bytes::{BufMut, Bytes, BytesMut};
use disk_model::clock::Clock;
use disk_model::sim::{DeviceProfile, PageCacheConfig, SimDisk, SimDiskConfig};
use disk_model::{OpenMode, Storage};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use net_model::Chunk;

fn disk(seed: u64) -> SimDisk {
    let mut c = SimDiskConfig::new(DeviceProfile::nvme(), seed);
    c.page_cache = PageCacheConfig { capacity_bytes: 4 << 20, ..PageCacheConfig::default() };
    SimDisk::new(c, Clock::manual())
}

fn roots(names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(PathBuf::from).collect()
}

async fn read(storage: &dyn Storage, path: &Path) -> String {
    let f = storage.open(path, OpenMode::Existing).await.expect("the file exists");
    let bytes = f.read_at(0, f.len() as usize).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The partitions a checkpoint file lists.
async fn listed(storage: &dyn Storage, path: &Path) -> Vec<String> {
    let text = read(storage, path).await;
    let partition = |l: &str| l.split_whitespace().take(2).collect::<Vec<_>>().join("-");
    text.lines().skip(2).map(partition).collect()
}

/// Which data directory each partition's log is in (by its directory's parent).
fn placement(m: &LogManager) -> BTreeMap<String, String> {
    let dir_of = |tp: &TopicPartition| {
        let dir = m.get(tp).unwrap().dir().parent().unwrap().display().to_string();
        (tp.to_string(), dir)
    };
    m.partitions().map(dir_of).collect()
}

async fn placement_scenario(seed: u64) {
    let d = disk(seed);
    let storage: Arc<dyn Storage> = Arc::new(d.clone());
    let dirs = roots(&["d0", "d1", "d2"]);
    let cfg = |_: &str| LogConfig::default();
    let open = || LogManager::open_dirs(storage.clone(), &dirs, LogConfig::default(), &cfg, 0);
    let (mut m, _) = open().await.unwrap();
    for p in 0..7 {
        m.create(TopicPartition::new("t", p), LogConfig::default(), 0).await.unwrap();
    }
    let expected: BTreeMap<String, String> =
        (0..7).map(|p| (format!("t-{p}"), format!("d{}", p % 3))).collect();
    assert_eq!(placement(&m), expected, "round robin over equally full directories");
    // d1 now holds one log fewer than d2: the next new partition goes there.
    assert!(m.delete(&TopicPartition::new("t", 4)).await.unwrap());
    m.create(TopicPartition::new("u", 0), LogConfig::default(), 0).await.unwrap();
    assert_eq!(placement(&m)["u-0"], "d1", "the emptiest directory");
    m.checkpoint().await.unwrap();
    for (dir, want) in
        [("d0", ["t-0", "t-3", "t-6"]), ("d1", ["t-1", "u-0", ""]), ("d2", ["t-2", "t-5", ""])]
    {
        let want: Vec<&str> = want.into_iter().filter(|w| !w.is_empty()).collect();
        for file in [RECOVERY_POINT_FILE, LOG_START_FILE] {
            let got = listed(storage.as_ref(), &Path::new(dir).join(file)).await;
            assert_eq!(got, want, "{dir}/{file} lists its own partitions only");
        }
    }
    m.shutdown(0).await.unwrap();
    for dir in &dirs {
        assert!(storage.exists(&dir.join(".kafka_cleanshutdown")).await.unwrap(), "{dir:?}");
    }
    let (m, _) = open().await.unwrap();
    assert!(m.was_clean());
    let mut after = expected.clone();
    after.remove("t-4");
    after.insert("u-0".into(), "d1".into());
    assert_eq!(placement(&m), after, "every log reopened in its own directory");
    // A crash in one directory only (its marker gone): the broker is not clean as a whole.
    drop(m);
    let (m, _) = open().await.unwrap();
    assert!(!m.was_clean(), "open removed the markers: a second open without shutdown is a crash");
    drop(m);
    // The same partition in two directories is refused, naming both.
    storage.create_dir_all(Path::new("d2/t-0")).await.unwrap();
    let err = open().await.unwrap_err().to_string();
    assert!(err.contains("t-0") && err.contains("d0") && err.contains("d2"), "{err}");
    d.check_invariants();
}

#[test]
fn new_partitions_go_to_the_emptiest_directory_and_each_directory_checkpoints_its_own() {
    support::block_on(4, placement_scenario(4));
}

/// One request through `Broker::handle`; the decoded response.
async fn call<Q: Encodable, R: Decodable>(b: &Broker, key: ApiKey, v: i16, body: &Q) -> R {
    let frame = support::kafka::frame(key, v, 7, "jbod-test", body).freeze().slice(4..);
    let Outcome::Respond(chunks) = b.handle(frame).await else { panic!("{key:?}: no response") };
    let mut out = BytesMut::new();
    for c in chunks {
        let Chunk::Bytes(bytes) = c else { panic!("{key:?}: a file chunk") };
        out.put_slice(&bytes);
    }
    support::kafka::decode_response(out.freeze().slice(4..), key, v, 7)
}

/// DescribeLogDirs of every partition (topics null).
fn every_dir() -> DescribeLogDirsRequest {
    let mut r = DescribeLogDirsRequest::default();
    r.topics = None;
    r
}

/// DescribeLogDirs' answer as (dir, [partitions]).
async fn log_dirs(b: &Broker) -> Vec<(String, Vec<String>)> {
    let r: DescribeLogDirsResponse = call(b, ApiKey::DescribeLogDirs, 4, &every_dir()).await;
    let parts = |d: &describe_log_dirs_response::DescribeLogDirsResult| {
        let each = |t: &describe_log_dirs_response::DescribeLogDirsTopic| {
            t.partitions
                .iter()
                .map(|p| format!("{}-{}", t.name.0, p.partition_index))
                .collect::<Vec<_>>()
        };
        d.topics.iter().flat_map(each).collect()
    };
    r.results.iter().map(|d| (d.log_dir.to_string(), parts(d))).collect()
}

async fn produce(b: &Broker, partition: i32) -> i16 {
    let records = Bytes::from(support::batch(3, 100, 1_000, partition as u64));
    let req = support::kafka::produce_req("t", partition, records, -1);
    let r: ProduceResponse = call(b, ApiKey::Produce, 9, &req).await;
    support::kafka::produced(&r).0
}

async fn broker_scenario(seed: u64) {
    let storage: Arc<dyn Storage> = Arc::new(disk(seed));
    let dirs = roots(&["a", "b"]);
    let open = || Broker::open_dirs(BrokerConfig::default(), storage.clone(), &dirs);
    let b = open().await.unwrap();
    let req = support::kafka::create_topics_req(&[("t", 4)]);
    let r: CreateTopicsResponse = call(&b, ApiKey::CreateTopics, 5, &req).await;
    assert_eq!(support::kafka::created(&r)[0].0, 0);
    let want = vec![
        ("a".to_string(), vec!["t-0".to_string(), "t-2".into()]),
        ("b".to_string(), vec!["t-1".to_string(), "t-3".into()]),
    ];
    assert_eq!(log_dirs(&b).await, want, "DescribeLogDirs: each directory, its partitions");
    for p in 0..4 {
        assert_eq!(produce(&b, p).await, 0);
    }
    assert!(storage.exists(Path::new("a/t-2/00000000000000000000.log")).await.unwrap());
    assert!(storage.exists(Path::new("b/t-3/00000000000000000000.log")).await.unwrap());
    assert!(storage.exists(Path::new("a/loglab-topics.json")).await.unwrap());
    assert!(!storage.exists(Path::new("b/loglab-topics.json")).await.unwrap(), "one registry");
    b.shutdown().await.unwrap();
    drop(b);
    let b = open().await.unwrap();
    assert!(b.opened_clean(), "both directories were shut down cleanly");
    assert_eq!(log_dirs(&b).await, want, "the same placement after a restart");
    let (partitions, bytes) = b.log_stats().await;
    assert_eq!(partitions, 4);
    assert!(bytes > 0, "the records survived in both directories");
    b.shutdown().await.unwrap();
}

#[test]
fn a_broker_spreads_a_topic_over_its_data_directories() {
    support::block_on(5, broker_scenario(5));
}

async fn mounts_scenario(seed: u64) {
    let (a, b) = (disk(seed), disk(seed + 1));
    let m = MountStorage::new(vec![
        ("d0".into(), Arc::new(a.clone()) as Arc<dyn Storage>),
        ("d1".into(), Arc::new(b.clone()) as Arc<dyn Storage>),
    ]);
    m.create_dir_all(Path::new("d1/t-0")).await.unwrap();
    let f = m.open(Path::new("d1/t-0/x.log"), OpenMode::CreateNew).await.unwrap();
    f.append(b"hello").await.unwrap();
    assert!(b.exists(Path::new("t-0/x.log")).await.unwrap(), "d1's paths are on its storage");
    assert!(!a.exists(Path::new("t-0/x.log")).await.unwrap());
    assert!(m.exists(Path::new("d1/t-0/x.log")).await.unwrap());
    assert!(!m.exists(Path::new("d0/t-0/x.log")).await.unwrap());
    assert!(!m.exists(Path::new("elsewhere/x")).await.unwrap());
    let names: Vec<String> =
        m.list_dir(Path::new("")).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["d0", "d1"], "the root lists the mounts");
    let e = m.rename(Path::new("d1/t-0/x.log"), Path::new("d0/x.log")).await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EXDEV), "{e}");
    assert!(b.exists(Path::new("t-0/x.log")).await.unwrap(), "a refused rename moves nothing");
    m.rename(Path::new("d1/t-0/x.log"), Path::new("d1/t-0/y.log")).await.unwrap();
    assert!(b.exists(Path::new("t-0/y.log")).await.unwrap(), "a rename inside one mount works");
    assert!(m.open(Path::new("d9/x"), OpenMode::OpenOrCreate).await.is_err());
    assert!(m.remove_dir_all(Path::new("d0")).await.is_err(), "a mount is not removable");
}

#[test]
fn the_mount_storage_routes_paths_and_refuses_renames_across_directories() {
    support::block_on(6, mounts_scenario(6));
}

/// `broker serve` with two `log.dirs`: a topic's partitions land in both, DescribeLogDirs names
/// both by their paths, and a clean stop leaves a marker in each.
#[cfg(not(madsim))]
#[test]
fn broker_serve_spreads_partitions_over_two_log_dirs() {
    use std::time::Duration;
    use support::process;
    let tmp = tempfile::tempdir().unwrap();
    let (d0, d1) = (tmp.path().join("d0"), tmp.path().join("d1"));
    let mut cmd = std::process::Command::new(process::BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--override"])
        .arg(format!("log.dirs={},{}", d0.display(), d1.display()))
        .stderr(std::process::Stdio::null());
    let (mut child, lines, addr) = process::spawn_listening(&mut cmd, Duration::from_secs(30));
    process::drain(lines);
    let req = support::kafka::create_topics_req(&[("t", 4)]);
    let r: CreateTopicsResponse =
        support::client::call_blocking(&addr, ApiKey::CreateTopics, 5, &req).unwrap();
    assert_eq!(support::kafka::created(&r)[0].0, 0);
    let r: DescribeLogDirsResponse =
        support::client::call_blocking(&addr, ApiKey::DescribeLogDirs, 4, &every_dir()).unwrap();
    let names: Vec<String> = r.results.iter().map(|d| d.log_dir.to_string()).collect();
    let canon = |d: &Path| std::fs::canonicalize(d).unwrap().display().to_string();
    assert_eq!(names, [canon(&d0), canon(&d1)]);
    let counts: Vec<usize> =
        r.results.iter().map(|d| d.topics.iter().map(|t| t.partitions.len()).sum()).collect();
    assert_eq!(counts, [2, 2]);
    for (dir, parts) in [(&d0, ["t-0", "t-2"]), (&d1, ["t-1", "t-3"])] {
        for p in parts {
            assert!(dir.join(p).is_dir(), "{p} in {dir:?}");
        }
    }
    process::sigterm(child.id());
    assert!(process::wait_exit(&mut child, Duration::from_secs(30)).is_some_and(|s| s.success()));
    assert!(d0.join(".kafka_cleanshutdown").exists() && d1.join(".kafka_cleanshutdown").exists());
}
