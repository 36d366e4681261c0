//! A disk that really fills up (issue 17): `broker serve` on a small tmpfs, mounted in a mount
//! namespace of its own (`unshare -m`, so nothing outside the test sees it). Producing to topic A
//! until the filesystem is full takes A offline: producers and consumers of A get
//! KAFKA_STORAGE_ERROR, not a silent retry loop; topic B serves what it has until its own write
//! fails; SIGTERM still stops the broker with status 0 (no clean-shutdown marker, as a log is
//! offline) and its log names the error. Restarted on a copy of the data with space, every
//! acknowledged record is there and A takes writes again. Real world only (root, a tmpfs, the
//! binary); where `unshare -m` or the mount is refused the test fails saying so.
#![cfg(not(madsim))]
#![allow(clippy::field_reassign_with_default)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_types::error_code::{KAFKA_STORAGE_ERROR, NONE};
use support::client::Client;
use support::kafka::{
    create_topics_req, created, fetch_req, produce_req, produced, records_of, values_batch,
};
use support::process::{self, Stdout};

/// Small enough to fill in a few hundred produces, large enough for the broker's own files.
const TMPFS_SIZE: &str = "2m";
/// Small segments, so that filling the disk also rolls (creates files) on the way.
const SEGMENT_BYTES: u32 = 64 << 10;
const VALUE_BYTES: usize = 1_000;
const BATCH_RECORDS: usize = 8;
/// Far more batches than fit: the disk is full long before.
const PRODUCES_MAX: usize = 2_000;
const GENEROUS: Duration = Duration::from_secs(30);

/// Runs inside `unshare -m`: mounts the tmpfs over `$1`, runs the broker on it, and when the
/// broker has exited copies what it wrote to `$2` (the namespace and its tmpfs go with the shell)
/// and exits with the broker's status.
const IN_NAMESPACE: &str = r#"
data=$1 copy=$2 size=$3
shift 3
mount -t tmpfs -o size="$size" tmpfs "$data" || { echo "mounting a tmpfs failed" >&2; exit 97; }
"$@" --data-dir "$data" &
pid=$!
echo "broker-pid $pid"
wait "$pid"
status=$?
cp -a "$data/." "$copy/" || exit 98
exit "$status"
"#;

/// The broker in its namespace; killed (both processes) if the test fails half way.
struct Contained {
    shell: Child,
    broker_pid: u32,
}

impl Drop for Contained {
    fn drop(&mut self) {
        if let Ok(None) = self.shell.try_wait() {
            if let Ok(pid) = libc::pid_t::try_from(self.broker_pid) {
                // SAFETY: kill(2) on the broker this test started; no memory is shared.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = self.shell.kill();
            let _ = self.shell.wait();
        }
    }
}

/// Starts the broker on a fresh tmpfs of [`TMPFS_SIZE`] over `data`; its address.
fn start_contained(data: &Path, copy: &Path, stderr: &Path) -> (Contained, String) {
    let mut shell = Command::new("unshare")
        .args(["-m", "sh", "-c", IN_NAMESPACE, "sh"])
        .arg(data)
        .arg(copy)
        .arg(TMPFS_SIZE)
        .arg(process::BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--override", &format!("log.segment.bytes={SEGMENT_BYTES}")])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).expect("a stderr file"))
        .spawn()
        .expect("runs unshare (util-linux)");
    let mut lines: Stdout =
        std::io::BufRead::lines(std::io::BufReader::new(shell.stdout.take().expect("stdout")));
    let Some(pid) = next_word_after(&mut lines, "broker-pid ") else {
        let status = shell.wait().expect("the shell's status");
        let why = std::fs::read_to_string(stderr).unwrap_or_default();
        panic!(
            "cannot run the broker on a tmpfs of its own: `unshare -m` + `mount -t tmpfs` need \
             root (CAP_SYS_ADMIN); {status}: {why}"
        );
    };
    let broker_pid = pid.parse().expect("a pid");
    let contained = Contained { shell, broker_pid };
    let addr = next_word_after(&mut lines, "listening on ").unwrap_or_else(|| {
        let why = std::fs::read_to_string(stderr).unwrap_or_default();
        panic!("the broker stopped before listening: {why}")
    });
    process::drain(lines);
    (contained, addr)
}

/// The first word after `marker` on the next line holding it; `None` if the output ends first.
fn next_word_after(lines: &mut Stdout, marker: &str) -> Option<String> {
    for line in lines.by_ref() {
        let line = line.ok()?;
        if let Some(rest) = line.split(marker).nth(1) {
            return rest.split_whitespace().next().map(str::to_string);
        }
    }
    None
}

/// A batch of [`BATCH_RECORDS`] values, each [`VALUE_BYTES`] long and naming its batch.
fn values(tag: &str, batch: usize, n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let mut v = format!("{tag}-{batch}-{i}-").into_bytes();
            v.resize(VALUE_BYTES, b'x');
            Bytes::from(v)
        })
        .collect()
}

/// Produces `vals` to partition 0 of `topic` (acks=all): the error code; acknowledged records go
/// into `acked` by offset.
async fn produce(
    c: &mut Client,
    topic: &str,
    vals: &[Bytes],
    acked: &mut BTreeMap<i64, Bytes>,
) -> i16 {
    let refs: Vec<&[u8]> = vals.iter().map(|v| &v[..]).collect();
    let req = produce_req(topic, 0, values_batch(1_700_000_000_000, &refs), -1);
    let (err, base) = produced(&c.call(ApiKey::Produce, 9, &req).await);
    if err == NONE {
        for (i, v) in vals.iter().enumerate() {
            acked.insert(base + i as i64, v.clone());
        }
    }
    err
}

/// A consumer's Fetch of partition 0 of `topic` at `offset` (v12, by name): (error code, high
/// watermark, records).
async fn fetch(c: &mut Client, topic: &str, offset: i64) -> (i16, i64, Vec<(i64, Bytes)>) {
    let req = fetch_req(12, topic, uuid::Uuid::nil(), offset, 0);
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &req).await;
    let p = &r.responses[0].partitions[0];
    (p.error_code, p.high_watermark, records_of(p))
}

/// Every record of partition 0 of `topic`, by offset.
async fn read_all(c: &mut Client, topic: &str) -> BTreeMap<i64, Bytes> {
    let mut out = BTreeMap::new();
    let mut offset = 0;
    for _ in 0..10_000 {
        let (err, hw, recs) = fetch(c, topic, offset).await;
        assert_eq!(err, NONE, "{topic} at {offset}");
        if offset >= hw {
            return out;
        }
        assert!(!recs.is_empty(), "{topic}: no records at {offset} below the high watermark {hw}");
        for (o, v) in recs {
            offset = o + 1;
            out.insert(o, v);
        }
    }
    panic!("{topic}: still reading after 10,000 fetches")
}

/// Each acknowledged record is in `read` with its value.
fn assert_kept(topic: &str, acked: &BTreeMap<i64, Bytes>, read: &BTreeMap<i64, Bytes>) {
    for (o, v) in acked {
        assert_eq!(read.get(o), Some(v), "{topic}: acknowledged record at offset {o} lost");
    }
}

#[tokio::test]
async fn a_full_disk_takes_partitions_offline_and_sigterm_still_stops_cleanly() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (data, copy, stderr) =
        (dir.path().join("data"), dir.path().join("copy"), dir.path().join("broker.stderr"));
    std::fs::create_dir(&data).expect("data");
    std::fs::create_dir(&copy).expect("copy");
    let (mut contained, addr) = start_contained(&data, &copy, &stderr);
    let mut c = Client::connect(&addr).await;
    let r: CreateTopicsResponse =
        c.call(ApiKey::CreateTopics, 5, &create_topics_req(&[("A", 1), ("B", 1)])).await;
    assert_eq!(created(&r), vec![(NONE, String::new()); 2]);
    let (mut acked_a, mut acked_b) = (BTreeMap::new(), BTreeMap::new());
    for b in 0..3 {
        assert_eq!(produce(&mut c, "B", &values("b", b, 2), &mut acked_b).await, NONE);
    }

    // Fill the disk through A: every produce is acknowledged until one meets ENOSPC.
    let mut full = false;
    for b in 0..PRODUCES_MAX {
        match produce(&mut c, "A", &values("a", b, BATCH_RECORDS), &mut acked_a).await {
            NONE => {}
            KAFKA_STORAGE_ERROR => {
                full = true;
                break;
            }
            other => panic!("produce {b} to A: error {other}"),
        }
    }
    assert!(full, "{PRODUCES_MAX} batches fit on a {TMPFS_SIZE} tmpfs");
    assert!(acked_a.len() > 100, "A took {} records first", acked_a.len());
    println!("A acknowledged {} records before the disk was full", acked_a.len());

    // A is offline: for producers and consumers alike, every time.
    let mut ignored = BTreeMap::new();
    assert_eq!(
        produce(&mut c, "A", &values("late", 0, 1), &mut ignored).await,
        KAFKA_STORAGE_ERROR
    );
    for _ in 0..3 {
        assert_eq!(fetch(&mut c, "A", 0).await.0, KAFKA_STORAGE_ERROR, "a consumer of A");
    }
    // B has not failed a write yet: it serves what it has. Its next write fails (the disk is
    // shared), and then B is offline too.
    let (err, hw, recs) = fetch(&mut c, "B", 0).await;
    assert_eq!((err, hw), (NONE, 6));
    assert_eq!(recs.into_iter().collect::<BTreeMap<_, _>>(), acked_b);
    let big = values("b-big", 9, 64); // 64 KB: more than any page a file has left
    assert_eq!(produce(&mut c, "B", &big, &mut acked_b).await, KAFKA_STORAGE_ERROR);
    assert_eq!(fetch(&mut c, "B", 0).await.0, KAFKA_STORAGE_ERROR);
    let mut all = MetadataRequest::default();
    all.topics = None;
    let md: MetadataResponse = c.call(ApiKey::Metadata, 12, &all).await;
    assert_eq!(md.topics.len(), 2, "the broker still answers");

    // SIGTERM: the broker stops with status 0 and says why the logs went offline.
    process::sigterm(contained.broker_pid);
    let status = process::wait_exit(&mut contained.shell, GENEROUS).expect("stops on SIGTERM");
    let log = std::fs::read_to_string(&stderr).expect("the broker's stderr");
    assert!(status.success(), "{status}: {}", tail(&log));
    assert!(log.contains("No space left on device"), "the log names ENOSPC: {}", tail(&log));
    assert!(!copy.join(".kafka_cleanshutdown").exists(), "offline logs must be recovered");

    // With space again (a copy on the test's own disk): nothing acknowledged is lost.
    let (mut child, out, addr) = process::spawn_listening(&mut process::serve(&copy), GENEROUS);
    process::drain(out);
    let mut c = Client::connect(&addr).await;
    assert_kept("A", &acked_a, &read_all(&mut c, "A").await);
    assert_kept("B", &acked_b, &read_all(&mut c, "B").await);
    let mut again = BTreeMap::new();
    assert_eq!(produce(&mut c, "A", &values("again", 0, 1), &mut again).await, NONE);
    assert_eq!(produce(&mut c, "B", &big, &mut again).await, NONE);
    assert!(process::stop(&mut child, GENEROUS).success());
    assert!(copy.join(".kafka_cleanshutdown").exists());
}

/// The last lines of a log, for a failure message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
