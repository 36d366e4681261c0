//! Target `request`: the broker's request path as a connection drives it — frame → guard →
//! decode → handler → response — on a real single-node broker (real files in a scratch dir).
//!
//! Input: a byte stream as a client would send it, read with the broker's own frame reader
//! (`connection::read_frame`, the length prefix and `socket.request.max.bytes` checks included),
//! each frame handled in turn by `Broker::handle`. The broker lives across inputs (requests build
//! on the topics earlier ones created) and is opened afresh every [`INPUTS_PER_BROKER`] inputs so
//! its data stays small. Time is paused, so a Fetch's `max_wait_ms` or an acks=all wait ends at
//! once instead of stalling the fuzzer.
//!
//! Oracle: no panic; every answer is a whole frame whose length prefix is its size and whose
//! header carries the request's correlation id; an answer to a request of a version we serve
//! that kafka-protocol (an independent implementation) can decode, decodes with no byte left.

use std::sync::Arc;

use broker::connection::read_frame;
use broker::{Broker, BrokerConfig, Outcome};
use bytes::{Buf, Bytes, BytesMut};
use disk_model::{OsStorage, Storage};
use kafka_protocol::messages::ApiKey;
use net_model::Chunk;

/// Inputs one broker serves before it is replaced by a fresh one on a fresh data dir.
pub const INPUTS_PER_BROKER: u32 = 20_000;
/// Requests handled per input at most (a stream of tiny frames cannot run long).
pub const FRAMES_PER_INPUT_MAX: usize = 64;

/// A scratch directory in RAM where there is one (`/dev/shm`), else the system temp dir.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    tempfile::Builder::new().prefix("loglab-fuzz-").tempdir_in(base).expect("a scratch dir")
}

pub struct Harness {
    rt: tokio_real::runtime::Runtime,
    broker: Option<(Arc<Broker>, tempfile::TempDir)>,
    inputs: u32,
}

/// The broker's configuration for fuzzing: small bounds, so created topics stay cheap.
pub fn config() -> BrokerConfig {
    let mut c = BrokerConfig::default();
    for kv in [
        "loglab.partitions.per.broker.max=64",
        "num.partitions=2",
        "socket.request.max.bytes=1048576",
        "log.segment.bytes=1048576",
        "group.initial.rebalance.delay.ms=0",
    ] {
        c.apply_override(kv).expect("a fuzzing override");
    }
    c
}

impl Harness {
    pub fn new() -> Self {
        let rt = tokio_real::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        Harness { rt, broker: None, inputs: 0 }
    }

    fn broker(&mut self) -> Arc<Broker> {
        if self.inputs % INPUTS_PER_BROKER == 0 {
            self.broker = None; // the old data dir goes with its TempDir
        }
        self.inputs = self.inputs.wrapping_add(1);
        if self.broker.is_none() {
            let dir = scratch_dir();
            let storage: Arc<dyn Storage> = Arc::new(OsStorage::new(dir.path()).expect("storage"));
            let broker = self
                .rt
                .block_on(Broker::open(config(), storage, std::path::Path::new("")))
                .expect("a fresh broker opens");
            self.broker = Some((Arc::new(broker), dir));
        }
        self.broker.as_ref().map(|(b, _)| b.clone()).expect("opened above")
    }

    pub fn check(&mut self, data: &[u8]) {
        let broker = self.broker();
        let max_bytes = config().socket_request_max_bytes;
        self.rt.block_on(async move {
            let mut reader: net_model::Reader = Box::new(std::io::Cursor::new(data.to_vec()));
            for _ in 0..FRAMES_PER_INPUT_MAX {
                let Ok(Some(frame)) = read_frame(&mut reader, max_bytes).await else { return };
                let request = frame.clone();
                match broker.handle(frame).await {
                    Outcome::Respond(chunks) => check_answer(&request, chunks).await,
                    Outcome::NoResponse => {}
                    Outcome::Close(_) => return,
                }
            }
        });
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

async fn check_answer(request: &Bytes, chunks: Vec<Chunk>) {
    let mut answer = BytesMut::new();
    for c in chunks {
        match c {
            Chunk::Bytes(b) => answer.extend_from_slice(&b),
            Chunk::File(r) => {
                answer.extend_from_slice(&r.read().await.expect("a fetched region reads"))
            }
        }
    }
    assert!(answer.len() >= 8, "an answer shorter than its header");
    if request.len() < 8 {
        return; // answered without a full header: nothing to compare against
    }
    let mut answer = answer.freeze();
    let len = answer.get_i32();
    assert_eq!(len as usize, answer.len(), "the length prefix is not the answer's size");
    let (key, version, corr) = (
        i16::from_be_bytes([request[0], request[1]]),
        i16::from_be_bytes([request[2], request[3]]),
        i32::from_be_bytes([request[4], request[5], request[6], request[7]]),
    );
    let Ok(api) = ApiKey::try_from(key) else { return };
    let Some((lo, hi)) = broker::protocol::supported_range(api) else { return };
    if version < lo || version > hi {
        return;
    }
    crate::seeds::decode_response(api, version, corr, answer);
}
