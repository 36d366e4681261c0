//! Log compaction throughput on the OS backend: MB/s of input log cleaned.
//!
//! `cargo bench -p broker --bench compaction` — env `LOGLAB_BENCH_MIB` (default 256) sets the
//! log size, `LOGLAB_BENCH_UNIQUE_PCT` (default 10) the share of distinct keys,
//! `LOGLAB_BENCH_CODEC` (none, lz4, zstd, gzip, snappy; default none) the batches' codec,
//! `LOGLAB_BENCH_DIR` the directory (default: a temp dir under target/).
//!
//! Workload: 1 KiB values, 16 records a batch, keys drawn uniformly from the distinct-key set,
//! 64 MiB segments, everything rolled so the whole log is dirty and cleanable. The clean includes
//! building the offset map, rewriting, fsyncing the cleaned segments and swapping them in; the
//! data was just written, so reads mostly hit the page cache (as a cleaner trailing producers does).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use broker::log::cleaner::clean_log;
use broker::log::{CleanupPolicy, Log, LogConfig, OpenOptions};
use disk_model::{OsStorage, Storage};
use records::{BatchBuilder, Compression};

const VALUE_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let mib: u64 = env_or("LOGLAB_BENCH_MIB", 256);
    let unique_pct: u64 = env_or("LOGLAB_BENCH_UNIQUE_PCT", 10);
    let codec = Compression::from_name(&env_or("LOGLAB_BENCH_CODEC", "none".to_string()))
        .expect("codec name");
    let base = std::env::var("LOGLAB_BENCH_DIR").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-compaction").into()
    });
    std::fs::create_dir_all(&base).expect("bench dir");
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new(tmp.path()).expect("storage"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let config = LogConfig {
            segment_bytes: 64 << 20,
            cleanup_policy: CleanupPolicy::Compact,
            min_cleanable_dirty_ratio: 0.0,
            ..LogConfig::default()
        };
        let (mut log, _) = Log::open(storage.clone(), Path::new("kv-0"), config, OpenOptions::default(), 0).await.expect("open");
        let records = (mib << 20) / VALUE_BYTES as u64;
        let keys = (records * unique_pct / 100).max(1);
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let value: Vec<u8> = (0..VALUE_BYTES).map(|i| (i * 7 % 251) as u8).collect();
        let t = Instant::now();
        let mut written = 0u64;
        while written < records {
            let mut b = BatchBuilder::new(Vec::new(), codec, usize::MAX);
            for _ in 0..RECORDS_PER_BATCH {
                let key = format!("key-{:08}", next() % keys);
                b.append(1_700_000_000_000, Some(key.as_bytes()), Some(&value), &[]).expect("append");
            }
            let mut batch = b.finish().expect("batch");
            log.append_as_leader(&mut batch, 0, 0).await.expect("append");
            written += RECORDS_PER_BATCH as u64;
        }
        log.roll(0).await.expect("roll");
        log.flush(0).await.expect("flush");
        let input = log.size_bytes();
        println!(
            "log: {:.1} MiB in {} segments, {records} records of {VALUE_BYTES} B, {keys} distinct keys, codec {}, written in {:.2} s",
            input as f64 / (1 << 20) as f64,
            log.segment_count(),
            codec.name(),
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let stats = clean_log(&mut log, 128 << 20, 1, true).await.expect("clean").expect("a clean ran");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "clean: {:.1} MiB read -> {:.2} MiB written ({} segments -> {}), {} of {} records kept, map {} keys / {:.1} MiB, {:.2} s",
            stats.bytes_read as f64 / (1 << 20) as f64,
            stats.bytes_written as f64 / (1 << 20) as f64,
            stats.segments_before,
            stats.segments_after,
            stats.records.records_kept,
            stats.records.records_read,
            stats.map_keys,
            stats.map_bytes as f64 / (1 << 20) as f64,
            secs
        );
        println!("compaction throughput: {:.0} MB/s of input log ({:.0} MiB/s)", input as f64 / 1e6 / secs, input as f64 / (1 << 20) as f64 / secs);
    });
}
