//! Log append and sequential-read throughput on the OS backend, side by side with a raw
//! sequential write/read of the same disk in the same run (and `dd` when present).
//!
//! `cargo bench -p broker --bench log_throughput` — env `LOGLAB_BENCH_MIB` (default 512) sets
//! the volume per run, `LOGLAB_BENCH_ROUNDS` (default 5) the alternating raw/log write rounds
//! (medians are compared: the virtual disk here bursts, then throttles), `LOGLAB_BENCH_DIR` the directory (default: a temp dir under target/).
//!
//! Workload as the issue states it: 1 KiB records in 16 KiB batches (16 records a batch).
//! Both writers end with an fsync, so the figures include getting the data to the device.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use broker::log::{Log, LogConfig, OpenOptions};
use disk_model::{OsStorage, Storage};
use records::{BatchHeader, BATCH_HEADER_LEN, LENGTH_FIELD_END, MAGIC_V2};

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;

/// A 16-record batch of 1 KiB values, encoded by hand in the v2 record format.
fn batch() -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    let mut body = Vec::new();
    for i in 0..RECORDS_PER_BATCH {
        let mut rec = vec![0u8]; // attributes
        varint(&mut rec, 0); // timestamp delta
        varint(&mut rec, i as i64); // offset delta
        varint(&mut rec, -1); // null key
        varint(&mut rec, RECORD_BYTES as i64);
        rec.extend(std::iter::repeat_n(b'x', RECORD_BYTES));
        varint(&mut rec, 0); // headers
        varint(&mut body, rec.len() as i64);
        body.extend(rec);
    }
    let mut b = vec![0u8; BATCH_HEADER_LEN];
    b.extend(body);
    let h = BatchHeader {
        base_offset: 0,
        batch_length: (b.len() - LENGTH_FIELD_END) as i32,
        partition_leader_epoch: 0,
        magic: MAGIC_V2,
        crc: 0,
        attributes: 0,
        last_offset_delta: RECORDS_PER_BATCH as i32 - 1,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_000,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count: RECORDS_PER_BATCH as i32,
    };
    h.write_to(&mut b);
    BatchHeader::update_crc(&mut b);
    b
}

/// Writes back every dirty page on the machine so the next phase does not pay for this one's.
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::thread::sleep(std::time::Duration::from_millis(500));
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn raw_write(path: &Path, chunk: &[u8], total: u64) -> f64 {
    let t = Instant::now();
    let mut f = std::fs::File::create(path).expect("create raw file");
    let mut written = 0;
    while written < total {
        f.write_all(chunk).expect("raw write");
        written += chunk.len() as u64;
    }
    f.sync_data().expect("fsync");
    mb_per_s(written, t.elapsed().as_secs_f64())
}

fn raw_read(path: &Path) -> (u64, f64) {
    let t = Instant::now();
    let mut f = std::fs::File::open(path).expect("open raw file");
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf).expect("raw read");
        if r == 0 {
            break;
        }
        n += r as u64;
    }
    (n, mb_per_s(n, t.elapsed().as_secs_f64()))
}

fn dd_write(path: &Path, mib: u64) -> Option<String> {
    let out = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", path.display()),
            "bs=16k",
            &format!("count={}", mib * 64),
            "conv=fdatasync",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stderr).lines().last().map(str::to_string)
}

fn main() {
    let mib: u64 =
        std::env::var("LOGLAB_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let base = std::env::var("LOGLAB_BENCH_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-log").into());
    std::fs::create_dir_all(&base).expect("bench dir");
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");
    let total = mib << 20;
    let template = batch();
    println!(
        "volume {mib} MiB, batch {} bytes ({RECORDS_PER_BATCH} x {RECORD_BYTES} B records), dir {}",
        template.len(),
        tmp.path().display()
    );

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new(tmp.path()).expect("storage"));

    // 1. writes, alternating raw and log twice: this machine's virtual disk bursts then throttles
    //    (a token bucket), so whichever phase runs first would otherwise look faster.
    let log_append = |round: usize| {
        rt.block_on(async {
            let dir = format!("bench-{round}");
            let (mut log, _) = Log::open(
                storage.clone(),
                Path::new(&dir),
                LogConfig::default(),
                OpenOptions::default(),
                0,
            )
            .await
            .expect("open");
            let mut buf = template.clone();
            let t = Instant::now();
            let mut written = 0u64;
            while written < total {
                buf.copy_from_slice(&template);
                log.append_as_leader(&mut buf, 0, 0).await.expect("append");
                written += buf.len() as u64;
            }
            log.flush(0).await.expect("flush");
            mb_per_s(written, t.elapsed().as_secs_f64())
        })
    };
    let mut raw_runs = Vec::new();
    let mut log_runs = Vec::new();
    let rounds: usize =
        std::env::var("LOGLAB_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    for round in 0..rounds {
        settle();
        raw_runs.push(raw_write(&tmp.path().join(format!("raw-{round}")), &template, total));
        settle();
        log_runs.push(log_append(round));
    }
    settle();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let raw_w = median(&raw_runs);
    let log_w = median(&log_runs);
    let log_bytes = total;

    // 2. sequential reads (the data was just written, so this is mostly the page cache — the
    //    case Kafka consumers that keep up live in).
    let (_, raw_r) = raw_read(&tmp.path().join("raw-1"));
    let log_r = rt.block_on(async {
        let opts =
            OpenOptions { clean_shutdown: true, recovery_point: i64::MAX, log_start_offset: 0 };
        let (log, _) =
            Log::open(storage.clone(), Path::new("bench-1"), LogConfig::default(), opts, 0)
                .await
                .expect("reopen");
        let t = Instant::now();
        let (mut offset, mut n) = (0i64, 0u64);
        while offset < log.log_end_offset() {
            let info = log.read(offset, i64::MAX, 1 << 20, true).await.expect("read");
            let region = info.region.expect("data");
            let bytes = region.read().await.expect("region");
            let mut last = None;
            for (_, h) in records::BatchIter::new(&bytes) {
                last = Some(h.last_offset());
            }
            offset = last.expect("a whole batch per read") + 1;
            n += bytes.len() as u64;
        }
        mb_per_s(n, t.elapsed().as_secs_f64())
    });
    settle();
    let dd = dd_write(&tmp.path().join("dd"), mib);

    println!("raw sequential write (16 KiB writes + fdatasync): {raw_w:.0} MB/s  median of runs in order {raw_runs:.0?}");
    println!("log append (16 KiB batches + flush):              {log_w:.0} MB/s  median of runs in order {log_runs:.0?}, {log_bytes} bytes each");
    println!("  ratio log/raw write: {:.2}", log_w / raw_w);
    println!("raw sequential read (1 MiB reads):                {raw_r:.0} MB/s");
    println!("log sequential read (1 MiB fetches):              {log_r:.0} MB/s");
    println!("  ratio log/raw read: {:.2}", log_r / raw_r);
    if let Some(dd) = dd {
        println!("dd bs=16k conv=fdatasync: {dd}");
    }
}
