//! Test support shared by the broker's tests: record batches built by an independent encoder
//! (`kafka-protocol`'s), a runtime shim so the same async test body runs in both worlds, Kafka
//! requests and a client (`kafka`, `client`), a node in this process (`server`), `broker serve`
//! as a child process (`process`), an HTTP request (`http`) and a three-broker simulated cluster
//! (`sim_cluster`). Each test file uses a part, so
//! unused items are allowed here.
#![allow(dead_code)]
#![allow(clippy::field_reassign_with_default)]

#[cfg(not(madsim))]
pub mod client;
#[cfg(not(madsim))]
pub mod http;
pub mod kafka;
#[cfg(not(madsim))]
pub mod process;
#[cfg(not(madsim))]
pub mod server;
#[cfg(madsim)]
pub mod sim_cluster;

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One uncompressed v2 batch of `count` records with values of `value_len` bytes whose content
/// depends on `seed`, timestamps from `base_ts_ms` in steps of 1 ms. Offsets start at 0 (the log
/// assigns them).
pub fn batch(count: usize, value_len: usize, base_ts_ms: i64, seed: u64) -> Vec<u8> {
    assert!(count >= 1);
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let fill = (seed as usize).wrapping_mul(31).wrapping_add(i) as u8;
            let mut headers = kafka_protocol::indexmap::IndexMap::new();
            headers.insert(StrBytes::from_static_str("h"), Some(Bytes::from(vec![fill; 3])));
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // kafka-protocol groups records whose offset - sequence agree into one batch;
                // this keeps the batch's base sequence at -1 (not idempotent).
                sequence: i as i32 - 1,
                timestamp: base_ts_ms + i as i64,
                key: if i % 2 == 0 { Some(Bytes::from(format!("k{seed}-{i}"))) } else { None },
                value: Some(Bytes::from(vec![fill; value_len])),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .expect("encode");
    let size = records::BatchHeader::peek_size(&buf).expect("a batch");
    assert_eq!(size, buf.len(), "the encoder made exactly one batch");
    buf.to_vec()
}

/// Decodes every batch in `bytes` with kafka-protocol's decoder: (base offset, record count) each.
#[allow(clippy::type_complexity)]
pub fn decode_all(bytes: &[u8]) -> Vec<(i64, usize, Vec<(i64, i64)>)> {
    let mut buf = Bytes::copy_from_slice(bytes);
    let sets = RecordBatchDecoder::decode_all(&mut buf).expect("kafka-protocol decodes the log");
    sets.into_iter()
        .map(|s| {
            let first = s.records.first().map_or(-1, |r| r.offset);
            let offsets = s.records.iter().map(|r| (r.offset, r.timestamp)).collect();
            (first, s.records.len(), offsets)
        })
        .collect()
}

/// Opens the log in `dir` of `storage` with the default options, at time 0.
pub async fn open_log(
    storage: std::sync::Arc<dyn disk_model::Storage>,
    dir: &str,
    config: broker::log::LogConfig,
) -> (broker::log::Log, broker::log::RecoveryReport) {
    let options = broker::log::OpenOptions::default();
    broker::log::Log::open(storage, std::path::Path::new(dir), config, options, 0)
        .await
        .expect("the log opens")
}

/// Proptest's configuration with `default_cases` cases, or `PROPTEST_CASES` when set (deep runs).
pub fn proptest_config(default_cases: u32) -> proptest::prelude::ProptestConfig {
    let cases =
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    proptest::prelude::ProptestConfig { cases, ..proptest::prelude::ProptestConfig::default() }
}

/// Runs an async test body on this world's runtime.
#[cfg(not(madsim))]
pub fn block_on<F: std::future::Future>(seed: u64, fut: F) -> F::Output {
    let _ = seed;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(fut)
}

#[cfg(madsim)]
pub fn block_on<F: std::future::Future>(seed: u64, fut: F) -> F::Output {
    madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default()).block_on(fut)
}
