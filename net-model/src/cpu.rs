//! The CPU seam: broker and client charge their work through a [`CostHook`].
//!
//! - [`RealCpu`] (real world): charges nothing — the CPU really does the work.
//! - [`SimCpu`] (simulated world): a pool of `cores` per host. A unit of work costs
//!   `per_op_ns + bytes × per_byte_ps / 1000` ns ([`CpuProfile`]); it runs on the earliest-free
//!   core (lowest index on ties) and the caller sleeps (precise, no 1 ms floor) until it is done.
//!   So N cores run N jobs in parallel and job N+1 waits for the first core to free up.
//!
//! What is charged is the caller's choice: the copy path charges `Memcpy` per byte (twice: file
//! to user space, user space to socket), `sendfile` charges nothing for the file region; CRC32C,
//! compression and decompression charge per byte (and per record of the batch:
//! `CompressRecords`, `DecompressRecords`); each request charges `Request` once (a
//! client's `ClientRequest`), which is what batching amortizes; the broker's validation charges
//! `Records` per record (and `Decompress` for compressed batches), the producer `ClientRecords`
//! per record; a follower charges `Request`, `Crc32c` and `Memcpy` per fetch response; hosts that
//! share one machine (`SimNet::set_loopback_cpu`) charge `Loopback` per byte on both sides of
//! each connection; the broker charges `FetchPass` per pass of a Fetch long poll, and
//! `Wakeup` where another task wakes a parked one (a long poll woken by an append, an
//! `acks=all` produce by the high watermark): latency only, [`CpuProfile::wakeup_ns`], no core
//! (the network charges the same latency to a parked socket reader). Work that costs 0 ns in
//! the profile is counted and takes no core.
//!
//! A process may be limited to its threads ([`SimCpu::party`], [`Threads`]): its work then
//! also waits for one of its own threads, so a one-thread process runs two jobs one after the
//! other even on two free cores, while another process uses the core it leaves. The model promises FIFO-on-earliest-free-core scheduling in call
//! order, determinism (no randomness at all), and exact accounting of busy time; it does not
//! model preemption, hyper-threads, frequency scaling, caches, or contention with work that is
//! not charged. [`SimCpu::stall`] freezes every core (a stop-the-world pause, like a long GC).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most cores of one simulated host.
pub const CORES_MAX: u32 = 1024;
/// Largest fixed cost of one operation (1 s).
pub const PER_OP_NS_MAX: u64 = 1_000_000_000;
/// Slowest per-byte cost (1 µs per byte = 1 MB/s).
pub const PER_BYTE_PS_MAX: u64 = 1_000_000;
/// Most threads one process's work may occupy ([`Threads`]).
pub const THREADS_MAX: u32 = 1024;
/// Most processes ([`SimCpu::party`]) one pool serves.
pub const PARTIES_MAX: usize = 4096;
/// Longest wake-up latency ([`CpuProfile::wakeup_ns`], 10 ms).
pub const WAKEUP_NS_MAX: u64 = 10_000_000;

/// Compression codecs (Kafka's; `none` costs nothing and is not a codec here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// A kind of work charged to the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Work {
    /// Fixed per-request overhead (parse, dispatch, syscalls), charged with `bytes = 0` or the frame size.
    Request,
    /// A user-space copy of `bytes`.
    Memcpy,
    /// CRC32C over `bytes`.
    Crc32c,
    /// Compressing `bytes` of input.
    Compress(Codec),
    /// Decompressing into `bytes` of output.
    Decompress(Codec),
    /// The per-record part of compressing a batch, charged beside [`Work::Compress`]: `bytes`
    /// is the batch's record count. A codec's speed depends on the records' size, not only on
    /// the bytes: each record's framing (length, deltas, value length) is a short repeat the
    /// match finder stops at, so 100-byte records compress several times slower per byte than
    /// 1 KiB ones ([`CodecCost::compress_record`]).
    CompressRecords(Codec),
    /// The per-record part of decompressing a batch ([`CodecCost::decompress_record`]):
    /// `bytes` is the record count.
    DecompressRecords(Codec),
    /// The broker's per-record work (validating and appending a batch's records): `bytes` is
    /// the number of records, not bytes.
    Records,
    /// A client's fixed per-request work (encode, syscalls), charged with the frame size.
    ClientRequest,
    /// A client's per-record work in its sender (draining, completing and calling back each
    /// record of a batch): `bytes` is the number of records.
    ClientRecords,
    /// The per-record part of a producer's appending thread (the application's `send`:
    /// partitioning, encoding the record into its batch): `bytes` is the number of records
    /// ([`CpuProfile::client_append`]'s `per_op_ns` each). Charged by the appending task, apart
    /// from the sender's [`Work::ClientRecords`]: the two run on different threads.
    ClientAppendRecords,
    /// The per-byte part of the appending thread's work over the records' key and value bytes
    /// ([`CpuProfile::client_append`]'s `per_byte_ps`).
    ClientAppendBytes,
    /// The kernel copying `bytes` between two processes of one machine over loopback, one side
    /// of it (the sender's copy into the socket, or the receiver's copy out of it). Charged by
    /// the simulated network on hosts that share one machine (`clients_share_host`), where
    /// loopback is CPU work on the shared cores, not a NIC.
    Loopback,
    /// One pass of the broker's Fetch long poll over the request's partitions (the partition
    /// walk, the log's index lookup, and the task wake-up that precedes every pass after the
    /// first), charged with `bytes = 0` per pass on top of the request's [`Work::Request`]. A
    /// follower's fetch makes several: one on arrival and one each time an append or a
    /// high-watermark move wakes it.
    FetchPass,
    /// A parked task woken by another task of its process (a Fetch long poll woken by an
    /// append, an `acks=all` produce woken by the high watermark): the OS waking its thread.
    /// Latency only ([`CpuProfile::wakeup_ns`]), no core time; `bytes` is 0.
    Wakeup,
    /// The CPU the OS spends waking a parked thread (futex, scheduler, epoll) when data reaches
    /// a socket reader that had found none ([`CpuProfile::wakeup_cpu`], charged by the
    /// simulated network on the reader's host: `SimNet::set_wake_cpu`); `bytes` is 0.
    Woken,
}

/// The CPU seam. Object-safe: hosts hold an `Arc<dyn CostHook>`.
#[async_trait]
pub trait CostHook: Send + Sync + fmt::Debug {
    /// Charges `work` over `bytes`; returns when the (simulated) CPU has done it.
    async fn spend(&self, work: Work, bytes: u64);
}

/// The real world: the work is done by the real CPU, nothing to charge.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealCpu;

#[async_trait]
impl CostHook for RealCpu {
    async fn spend(&self, _work: Work, _bytes: u64) {}
}

/// The cost of one kind of work: `per_op_ns + bytes × per_byte_ps / 1000` nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    pub per_op_ns: u64,
    /// Picoseconds per byte: 100 = 10 GB/s, 1000 = 1 GB/s.
    pub per_byte_ps: u64,
}

impl Cost {
    pub const fn new(per_op_ns: u64, per_byte_ps: u64) -> Self {
        Cost { per_op_ns, per_byte_ps }
    }

    /// From a throughput in bytes per second.
    pub const fn from_rate(per_op_ns: u64, bytes_per_sec: u64) -> Self {
        Cost { per_op_ns, per_byte_ps: 1_000_000_000_000 / bytes_per_sec }
    }

    /// Nothing.
    pub const fn zero() -> Self {
        Cost { per_op_ns: 0, per_byte_ps: 0 }
    }

    /// Whether it costs nothing.
    pub fn is_zero(&self) -> bool {
        self.per_op_ns == 0 && self.per_byte_ps == 0
    }

    pub fn ns(&self, bytes: u64) -> u64 {
        let per_byte = (u128::from(bytes) * u128::from(self.per_byte_ps)).div_ceil(1000);
        self.per_op_ns.saturating_add(u64::try_from(per_byte).unwrap_or(u64::MAX))
    }

    fn validate(&self, field: &'static str) -> Result<(), CpuConfigError> {
        if self.per_op_ns > PER_OP_NS_MAX || self.per_byte_ps > PER_BYTE_PS_MAX {
            return Err(CpuConfigError::CostOutOfRange {
                field,
                per_op_ns: self.per_op_ns,
                per_byte_ps: self.per_byte_ps,
            });
        }
        Ok(())
    }
}

/// Compress / decompress costs of one codec: per call and per byte, and per record of the
/// batch (`per_byte_ps` of `compress_record` and `decompress_record` is picoseconds per record;
/// 0 by default: not measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodecCost {
    pub compress: Cost,
    pub decompress: Cost,
    #[serde(default = "Cost::zero", skip_serializing_if = "Cost::is_zero")]
    pub compress_record: Cost,
    #[serde(default = "Cost::zero", skip_serializing_if = "Cost::is_zero")]
    pub decompress_record: Cost,
}

impl CodecCost {
    /// Per call and per byte only.
    pub const fn new(compress: Cost, decompress: Cost) -> Self {
        CodecCost {
            compress,
            decompress,
            compress_record: Cost::zero(),
            decompress_record: Cost::zero(),
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CpuConfigError {
    #[error("cores = {0} is out of range 1..={CORES_MAX}")]
    Cores(u32),
    #[error("{field}: per_op_ns {per_op_ns} (max {PER_OP_NS_MAX}) or per_byte_ps {per_byte_ps} (max {PER_BYTE_PS_MAX}) out of range")]
    CostOutOfRange { field: &'static str, per_op_ns: u64, per_byte_ps: u64 },
    #[error("threads.{field} = {threads} is out of range 0..={THREADS_MAX}")]
    Threads { field: &'static str, threads: u32 },
    #[error("wakeup_ns = {0} is over {WAKEUP_NS_MAX}")]
    Wakeup(u64),
}

/// How many cores one process's charged work may occupy at once: its threads (0: no limit
/// beyond the host's cores). A process whose work comes from several tasks at once (a broker
/// serving connections, a client's sender and its response handlers) runs it on at most this
/// many cores even when more are free; other processes of the host still use the rest.
///
/// Sources for this repository's processes: the broker's runtime is tokio's multi-thread
/// runtime with its default worker count, one per core (`broker/src/main.rs`), so `broker` = the
/// host's cores; `perf` runs on 2 worker threads (`client/src/bin/perf.rs`), so `client` = 2.
/// A Kafka broker's request work runs on `num.network.threads` (3) + `num.io.threads` (8)
/// threads; a librdkafka producer's on one broker thread per connection plus its main thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Threads {
    /// One broker process.
    pub broker: u32,
    /// One client machine's workload process (the producers and consumers of one client host).
    pub client: u32,
}

impl Threads {
    fn validate(&self) -> Result<(), CpuConfigError> {
        for (field, threads) in [("broker", self.broker), ("client", self.client)] {
            if threads > THREADS_MAX {
                return Err(CpuConfigError::Threads { field, threads });
            }
        }
        Ok(())
    }
}

/// A host's CPU: core count and costs.
///
/// Defaults are one core of this machine (AMD EPYC VM, 2 vCPUs, SSE4.2), measured (before
/// `cargo simulate calibrate` existed, by an ignored test it replaced; the same input and method are
/// now `client/src/calibrate/measure.rs`, which writes a whole host profile): release builds of the `records` codecs at their default levels on 4 MiB of
/// JSON-like records (compression ratios lz4 3.3, snappy 3.1, zstd 5.7, gzip 6.0), best of two
/// runs on a machine shared with other builds (the second run was 20-40 % slower). Rates are of
/// uncompressed bytes, both ways.
///
/// | work | measured | default |
/// |---|---|---|
/// | memcpy | 8.9 GB/s from memory (256 MiB), 14-33 GB/s cache-resident | 110 ps/B |
/// | crc32c (`crc32c` crate, SSE4.2) | 10.6 GB/s from memory, 16-23 GB/s cache-resident | 95 ps/B |
/// | lz4 frame (`lz4_flex`) | 445 MB/s compress, 2.26 GB/s decompress | 2247 / 443 ps/B |
/// | snappy (`snap`, xerial framing) | 865 MB/s, 2.0 GB/s | 1156 / 501 ps/B |
/// | zstd level 3 (libzstd) | 226 MB/s, 983 MB/s | 4425 / 1017 ps/B |
/// | gzip level 6 (`flate2`, miniz_oxide) | 37 MB/s, 577 MB/s | 27027 / 1733 ps/B |
/// | a codec per record of a batch (`compress_record`, `decompress_record`) | lz4: 70-146 ns to compress, 13 ns to decompress a record (65-70 ns and 11-12 ns on 2026-12-05, measured as the real processes allocate, `keep_freed_heap`; calibrate's fit over batches of 100 B and 1 KiB records, 2026-12-04: 100-byte records compress at ~0.9 ns/B, 1 KiB ones at ~0.2, the record framing being a short repeat the match finder stops at; a `perf record` of the real 100 B lz4 run put 1.25 ns/B in `lz4_flex`'s `compress_internal`) | 0: not charged unless a profile measures it |
/// | request overhead | 19.7 µs per Produce request + 464 ps/B (fit of the real broker's CPU time over requests, bytes and records by `cargo simulate calibrate`, 2026-12-03; the first, two-term fit gave 21.9 µs + 756 ps/B; 20.2 µs on 2026-12-04, `profiles/this-machine.json`) | 20 µs |
/// | per record, broker (`record`) | 109 ns (calibrate's fit, 2026-12-03, this machine; 115 ns on 2026-12-04) | 0: not charged unless a profile measures it |
/// | client request (`client_request`) | 26 µs + 560 ps/B (calibrate's fit of perf's CPU, 2026-12-03; 34 µs on 2026-12-04) | 20 µs, the broker's default |
/// | per record, client (`client_record`) | 844 ns (the same fit; 694 ns on 2026-12-04; 492-845 ns in twelve calibrations on 2026-12-05, 512 in `profiles/this-machine.json`, of which 309 the appending thread's (`client_append`) and 203 the sender's: each calibration's five runs fall in a ~500 or a ~800 ns mode, the slow one after the host took back the VM's free memory) | 0, as for the broker |
/// | a producer's appending thread (`client_append`) | 303-311 ns a record + 289-497 ps/B (calibrate's fit of the CPU time of perf's thread that calls `send`, `getrusage(RUSAGE_THREAD)`, three calibrations on 2026-12-05; taken out of `client_record` and `client_request`'s per byte, which the sender charges; per thread in a real 100 B run: the `send` thread 67-89 % of a core, perf's two workers 31-33 % each) | 0: the per-record work is all the sender's |
/// | loopback, one side (`loopback`) | 122-126 ps/B (calibrate: one stream's sending and receiving thread CPU per byte, 2026-12-03) | 125 ps/B |
/// | a Fetch long-poll pass (`fetch_pass`) | 21.4 µs (calibrate's `wakeup_cpu_ns`, 2026-12-04: the CPU time two threads spend per wake-up of one another on this VM, 17.7-21.9; a hand fit from validate's 3-node rows gave 19.6 µs on 2026-12-03) | 0: in the request's cost unless a profile measures it |
/// | threads of a process (`threads`) | this repository's broker: one per core (tokio's default runtime); `perf`: 2 | 0: no limit |
/// | a parked socket reader's wake-up, CPU (`wakeup_cpu`) | 14-19 µs (calibrate's `wakeup_cpu_ns`, as `fetch_pass`; 2026-12-05: at 2,000 requests a second of 16 KiB the real broker and perf spent 116 µs of CPU a request against 62 µs saturated, about three wake-ups more); charged only when the reader's process is idle (every thread free) | 0: not charged |
/// | wake-up latency (`wakeup_ns`) | 9.7 µs (calibrate's `wakeup_ns`: half a round trip between two threads, 2026-12-03, this machine; 31 µs on 2026-12-04) | 0: not charged |
///
/// 8 cores per host by default (a broker-class machine), not this machine's 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuProfile {
    pub cores: u32,
    pub request: Cost,
    pub memcpy: Cost,
    pub crc32c: Cost,
    pub gzip: CodecCost,
    pub snappy: CodecCost,
    pub lz4: CodecCost,
    pub zstd: CodecCost,
    /// Broker per-record cost ([`Work::Records`]): `per_byte_ps` is picoseconds per record.
    pub record: Cost,
    /// Client per-request cost ([`Work::ClientRequest`]).
    pub client_request: Cost,
    /// Client per-record cost in the sender ([`Work::ClientRecords`]): `per_byte_ps` is
    /// picoseconds per record.
    pub client_record: Cost,
    /// A producer's appending thread: `per_op_ns` per record appended
    /// ([`Work::ClientAppendRecords`]) and `per_byte_ps` per byte of its key and value
    /// ([`Work::ClientAppendBytes`]). 0 (the default): the client's per-record work is all in
    /// `client_record`, charged by the sender.
    #[serde(default = "Cost::zero", skip_serializing_if = "Cost::is_zero")]
    pub client_append: Cost,
    /// One side of a loopback copy ([`Work::Loopback`]), per call and per byte.
    pub loopback: Cost,
    /// One pass of the broker's Fetch long poll ([`Work::FetchPass`]), per pass.
    pub fetch_pass: Cost,
    /// Threads of one process ([`Threads`]; 0 = no limit).
    pub threads: Threads,
    /// Wake-up latency: data that reaches a parked reader (a thread asleep in `read`, its
    /// task idle) is seen this long after it arrived — the OS waking the thread. Charged by
    /// the simulated network on every host of a scenario with a CPU model
    /// (`SimNet::set_wakeup`), and by [`Work::Wakeup`] where one task of a process wakes
    /// another; latency only, no core time: the wake-up's CPU is inside the
    /// fitted per-request costs (`request`, `client_request`, `fetch_pass`), which are fits of
    /// whole processes' CPU time at saturation, and in `wakeup_cpu`. 0 (the default): readers
    /// see data as it arrives.
    #[serde(skip_serializing_if = "is_zero")]
    pub wakeup_ns: u64,
    /// The CPU of waking a parked socket reader ([`Work::Woken`], per wake), charged on the
    /// reader's host by the simulated network where it knows the host's cores (hosts sharing one
    /// machine), and only when the reader's process is idle (every thread free: a busy process
    /// has a thread awake to pick the data up). Saturated, a process is rarely idle, and the
    /// fitted per-request costs hold the wake-ups it had; at low load every request finds its
    /// process idle, and the real processes spend ~50 µs more a request than saturated (see the
    /// table above). 0 (the default): free.
    #[serde(default = "Cost::zero", skip_serializing_if = "Cost::is_zero")]
    pub wakeup_cpu: Cost,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

impl Default for CpuProfile {
    fn default() -> Self {
        CpuProfile {
            cores: 8,
            request: Cost::new(20_000, 0),
            memcpy: Cost::new(0, 110),
            crc32c: Cost::new(0, 95),
            gzip: CodecCost::new(Cost::new(1_000, 27_027), Cost::new(1_000, 1_733)),
            snappy: CodecCost::new(Cost::new(200, 1_156), Cost::new(200, 501)),
            lz4: CodecCost::new(Cost::new(200, 2_247), Cost::new(200, 443)),
            zstd: CodecCost::new(Cost::new(2_000, 4_425), Cost::new(1_000, 1_017)),
            // Not measured for a broker-class machine: no per-record term (the per-request and
            // per-byte costs carry it), the client's request costs the broker's.
            record: Cost::new(0, 0),
            client_request: Cost::new(20_000, 0),
            client_record: Cost::new(0, 0),
            client_append: Cost::new(0, 0),
            // Charged only where clients share the host; see the table above.
            loopback: Cost::new(0, 125),
            // Not measured for a broker-class machine: a pass is in the request's cost.
            fetch_pass: Cost::new(0, 0),
            threads: Threads::default(),
            // Not measured for a broker-class machine (a process per machine, idle cores).
            wakeup_ns: 0,
            wakeup_cpu: Cost::new(0, 0),
        }
    }
}

impl CpuProfile {
    pub fn with_cores(cores: u32) -> Self {
        CpuProfile { cores, ..CpuProfile::default() }
    }

    pub fn validate(&self) -> Result<(), CpuConfigError> {
        if self.cores == 0 || self.cores > CORES_MAX {
            return Err(CpuConfigError::Cores(self.cores));
        }
        self.request.validate("request")?;
        self.memcpy.validate("memcpy")?;
        self.crc32c.validate("crc32c")?;
        self.record.validate("record")?;
        self.client_request.validate("client_request")?;
        self.client_record.validate("client_record")?;
        self.client_append.validate("client_append")?;
        self.loopback.validate("loopback")?;
        self.fetch_pass.validate("fetch_pass")?;
        self.wakeup_cpu.validate("wakeup_cpu")?;
        self.threads.validate()?;
        if self.wakeup_ns > WAKEUP_NS_MAX {
            return Err(CpuConfigError::Wakeup(self.wakeup_ns));
        }
        for (name, c) in [
            ("gzip", &self.gzip),
            ("snappy", &self.snappy),
            ("lz4", &self.lz4),
            ("zstd", &self.zstd),
        ] {
            c.compress.validate(name)?;
            c.decompress.validate(name)?;
            c.compress_record.validate(name)?;
            c.decompress_record.validate(name)?;
        }
        Ok(())
    }

    fn codec(&self, codec: Codec) -> &CodecCost {
        match codec {
            Codec::Gzip => &self.gzip,
            Codec::Snappy => &self.snappy,
            Codec::Lz4 => &self.lz4,
            Codec::Zstd => &self.zstd,
        }
    }

    /// Nanoseconds `work` over `bytes` takes on one core.
    pub fn cost_ns(&self, work: Work, bytes: u64) -> u64 {
        match work {
            Work::Request => self.request.ns(bytes),
            Work::Memcpy => self.memcpy.ns(bytes),
            Work::Crc32c => self.crc32c.ns(bytes),
            Work::Compress(c) => self.codec(c).compress.ns(bytes),
            Work::Decompress(c) => self.codec(c).decompress.ns(bytes),
            Work::CompressRecords(c) => self.codec(c).compress_record.ns(bytes),
            Work::DecompressRecords(c) => self.codec(c).decompress_record.ns(bytes),
            Work::Records => self.record.ns(bytes),
            Work::ClientRequest => self.client_request.ns(bytes),
            Work::ClientRecords => self.client_record.ns(bytes),
            Work::ClientAppendRecords => self.client_append.per_op_ns.saturating_mul(bytes),
            Work::ClientAppendBytes => Cost::new(0, self.client_append.per_byte_ps).ns(bytes),
            Work::Loopback => self.loopback.ns(bytes),
            Work::FetchPass => self.fetch_pass.ns(bytes),
            Work::Woken => self.wakeup_cpu.ns(bytes),
            // Not core time: see [`CpuProfile::latency_ns`].
            Work::Wakeup => 0,
        }
    }

    /// Nanoseconds `work` delays its caller without occupying a core: the wake-up latency
    /// for [`Work::Wakeup`], 0 for every other kind.
    pub fn latency_ns(&self, work: Work) -> u64 {
        match work {
            Work::Wakeup => self.wakeup_ns,
            _ => 0,
        }
    }
}

/// Counters of one kind of work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorkStats {
    pub ops: u64,
    pub bytes: u64,
    pub busy_ns: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    pub cores: u32,
    /// Core time spent on charged work (sum over cores).
    pub busy_ns: u64,
    /// Time work waited for a free core (sum over jobs).
    pub queued_ns: u64,
    /// Time frozen by [`SimCpu::stall`] (per core, summed).
    pub stalled_ns: u64,
    pub per_work: BTreeMap<Work, WorkStats>,
}

impl CpuStats {
    /// Busy fraction of the whole pool over `elapsed_ns` (0.0 ..= 1.0).
    pub fn utilization(&self, elapsed_ns: u64) -> f64 {
        if elapsed_ns == 0 || self.cores == 0 {
            return 0.0;
        }
        self.busy_ns as f64 / (elapsed_ns as f64 * f64::from(self.cores))
    }
}

struct CpuState {
    profile: CpuProfile,
    /// When each core becomes free (ns since the epoch).
    free_at_ns: Vec<u64>,
    /// Per process ([`SimCpu::party`]): when each of its threads becomes free.
    parties: Vec<Vec<u64>>,
    stats: CpuStats,
}

/// A simulated host CPU. Clones share the pool.
#[derive(Clone)]
pub struct SimCpu {
    state: Arc<Mutex<CpuState>>,
    epoch: disk_model::clock::Epoch,
}

impl fmt::Debug for SimCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimCpu({} cores)", self.lock().profile.cores)
    }
}

impl SimCpu {
    /// A pool whose time 0 is now. Panics on an invalid profile (see [`CpuProfile::validate`]).
    pub fn new(profile: CpuProfile) -> Self {
        if let Err(e) = profile.validate() {
            panic!("invalid CPU profile: {e}");
        }
        let cores = profile.cores;
        SimCpu {
            state: Arc::new(Mutex::new(CpuState {
                free_at_ns: vec![0; cores as usize],
                parties: Vec::new(),
                stats: CpuStats { cores, ..CpuStats::default() },
                profile,
            })),
            epoch: disk_model::clock::Epoch::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CpuState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.now_ns()
    }

    pub fn profile(&self) -> CpuProfile {
        self.lock().profile.clone()
    }

    pub fn stats(&self) -> CpuStats {
        self.lock().stats.clone()
    }

    /// Schedules `work` at `now_ns` on the earliest-free core; returns its completion time.
    /// The synchronous core of [`CostHook::spend`].
    pub fn schedule(&self, now_ns: u64, work: Work, bytes: u64) -> u64 {
        self.schedule_for(None, now_ns, work, bytes)
    }

    /// [`SimCpu::schedule`] for a process (`party`, from [`SimCpu::party`]): the work also needs
    /// one of the process's threads, so it starts when both its earliest-free thread and the
    /// earliest-free core are free.
    pub fn schedule_for(&self, party: Option<usize>, now_ns: u64, work: Work, bytes: u64) -> u64 {
        let mut st = self.lock();
        let cost = st.profile.cost_ns(work, bytes);
        let thread = party.map(|p| (p, earliest(&st.parties[p], now_ns)));
        let ready = thread.map_or(now_ns, |(_, (_, t))| t.max(now_ns));
        let (core, start) = core_for(&st.free_at_ns, now_ns, ready);
        let done = start.saturating_add(cost);
        st.free_at_ns[core] = done;
        if let Some((p, (i, _))) = thread {
            st.parties[p][i] = done;
        }
        st.stats.busy_ns += cost;
        st.stats.queued_ns += start - now_ns;
        let w = st.stats.per_work.entry(work).or_default();
        w.ops += 1;
        w.bytes += bytes;
        w.busy_ns += cost;
        done
    }

    /// A process on this pool whose work occupies at most `threads` cores at once (0: no limit,
    /// the pool itself). Each call is a new process with threads of its own.
    pub fn party(&self, threads: u32) -> PartyCpu {
        if threads == 0 {
            return PartyCpu { cpu: self.clone(), party: None };
        }
        assert!(threads <= THREADS_MAX, "threads = {threads} over {THREADS_MAX}");
        let mut st = self.lock();
        assert!(st.parties.len() < PARTIES_MAX, "more than {PARTIES_MAX} processes on one pool");
        st.parties.push(vec![0; threads as usize]);
        PartyCpu { cpu: self.clone(), party: Some(st.parties.len() - 1) }
    }

    async fn spend_as(&self, party: Option<usize>, work: Work, bytes: u64) {
        let now = self.now_ns();
        if let Some(latency_ns) = self.free(party, now, work, bytes) {
            if latency_ns > 0 {
                let until = now.saturating_add(latency_ns);
                self.epoch.sleep_until_ns(until).await;
            }
            return;
        }
        let done = self.schedule_for(party, now, work, bytes);
        self.epoch.sleep_until_ns(done).await;
    }

    /// Whether `work` over `bytes` costs nothing now: a term the profile leaves at 0 (or no
    /// bytes of a per-byte-only one), or a [`Work::Woken`] of a process (`party`; `None`: the
    /// pool) with work on a core at `now_ns` — a busy process has a thread awake to pick the
    /// data up; only one whose every thread is idle must have one woken (a runtime's worker
    /// parks only with nothing to run; saturated, a process is rarely idle, so the fitted
    /// per-request costs keep the wake-ups they saw). Free work is counted but takes no core —
    /// not even a wait for a free core — and `Some` says how long it delays its caller
    /// ([`CpuProfile::latency_ns`]). One lock for every charge, on the hot path.
    fn free(&self, party: Option<usize>, now_ns: u64, work: Work, bytes: u64) -> Option<u64> {
        let mut st = self.lock();
        let awake = |st: &CpuState| {
            let threads = party.map_or(&st.free_at_ns, |p| &st.parties[p]);
            threads.iter().any(|&t| t > now_ns)
        };
        if st.profile.cost_ns(work, bytes) != 0 && !(work == Work::Woken && awake(&st)) {
            return None;
        }
        let w = st.stats.per_work.entry(work).or_default();
        w.ops += 1;
        w.bytes += bytes;
        Some(st.profile.latency_ns(work))
    }

    /// Freezes every core for `duration_ns` from now (a stop-the-world pause): work already
    /// scheduled and work charged meanwhile completes that much later.
    pub fn stall(&self, duration_ns: u64) {
        let now = self.now_ns();
        let mut st = self.lock();
        let until = now.saturating_add(duration_ns);
        let mut stalled = 0;
        for t in st.free_at_ns.iter_mut() {
            // A core busy until `t` > now still owes `t - now` of work after the pause.
            *t = if *t > now { t.saturating_add(duration_ns) } else { until };
            stalled += duration_ns;
        }
        st.stats.stalled_ns += stalled;
    }
}

/// The earliest-free thread at `now_ns`, lowest index on ties, and when it frees.
fn earliest(free_at_ns: &[u64], now_ns: u64) -> (usize, u64) {
    free_at_ns
        .iter()
        .copied()
        .enumerate()
        .min_by_key(|&(i, t)| (t.max(now_ns), i))
        .expect("at least one thread")
}

/// The core for work whose process has a thread free at `ready` (≥ `now_ns`), and when the work
/// starts there: the earliest start; among cores free by `ready`, the one freed last (so a core
/// free earlier stays free for other processes), then the lowest index. Without a thread limit
/// (`ready == now_ns`) this is the earliest-free core, lowest index on ties.
fn core_for(free_at_ns: &[u64], now_ns: u64, ready: u64) -> (usize, u64) {
    let (core, free_at) = free_at_ns
        .iter()
        .copied()
        .enumerate()
        .min_by_key(|&(i, t)| (t.max(ready), std::cmp::Reverse(t.max(now_ns)), i))
        .expect("at least one core");
    (core, free_at.max(ready))
}

#[async_trait]
impl CostHook for SimCpu {
    async fn spend(&self, work: Work, bytes: u64) {
        self.spend_as(None, work, bytes).await;
    }
}

/// One process's view of a [`SimCpu`] ([`SimCpu::party`]): its work runs on the shared cores,
/// at most [`Threads`] of them at once. Clones are the same process.
#[derive(Clone, Debug)]
pub struct PartyCpu {
    cpu: SimCpu,
    /// Index into the pool's processes; `None` = no thread limit.
    party: Option<usize>,
}

impl PartyCpu {
    /// The shared pool (its stats count every process's work).
    pub fn pool(&self) -> &SimCpu {
        &self.cpu
    }
}

#[async_trait]
impl CostHook for PartyCpu {
    async fn spend(&self, work: Work, bytes: u64) {
        self.cpu.spend_as(self.party, work, bytes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_scale_with_bytes() {
        let p = CpuProfile::default();
        assert_eq!(p.cost_ns(Work::Request, 0), 20_000);
        assert_eq!(p.cost_ns(Work::Memcpy, 1_000_000), 110_000); // ~9 GB/s
        assert_eq!(p.cost_ns(Work::Compress(Codec::Lz4), 1_000_000), 200 + 2_247_000);
        assert_eq!(p.cost_ns(Work::Decompress(Codec::Lz4), 2_000_000), 200 + 886_000);
        assert_eq!(Cost::new(7, 3).ns(1), 8); // rounds up
        assert_eq!(Cost::from_rate(0, 500_000_000).per_byte_ps, 2000);
        p.validate().unwrap();
        assert!(CpuProfile::with_cores(0).validate().is_err());
        // Each new term has its own field: none falls back on another's.
        let q = CpuProfile {
            record: Cost::new(0, 250_000),
            client_request: Cost::new(7_000, 10),
            client_record: Cost::new(0, 400_000),
            loopback: Cost::new(0, 900),
            client_append: Cost::new(300, 250),
            ..CpuProfile::default()
        };
        assert_eq!(q.cost_ns(Work::Records, 4), 1_000);
        assert_eq!(q.cost_ns(Work::ClientAppendRecords, 4), 1_200, "300 ns a record, no call term");
        assert_eq!(q.cost_ns(Work::ClientAppendBytes, 4_000), 1_000, "250 ps a byte");
        assert_eq!(CpuProfile::default().cost_ns(Work::ClientAppendRecords, 9), 0, "unmeasured");
        assert_eq!(q.cost_ns(Work::ClientRequest, 100), 7_001);
        assert_eq!(q.cost_ns(Work::Request, 100), 20_000, "the broker's request is apart");
        assert_eq!(q.cost_ns(Work::ClientRecords, 4), 1_600);
        assert_eq!(q.cost_ns(Work::Loopback, 1_000), 900);
        assert_eq!(CpuProfile::default().cost_ns(Work::Records, 1_000), 0, "unmeasured: free");
        assert_eq!(CpuProfile::default().cost_ns(Work::Woken, 0), 0, "unmeasured: free");
        let w = CpuProfile { wakeup_cpu: Cost::new(14_000, 0), ..CpuProfile::default() };
        assert_eq!(w.cost_ns(Work::Woken, 0), 14_000);
        assert_eq!(w.cost_ns(Work::FetchPass, 0), 0, "its own field");
        let bad = CpuProfile { loopback: Cost::new(0, PER_BYTE_PS_MAX + 1), ..q };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn a_codec_charges_per_record_apart_from_its_bytes() {
        let d = CpuProfile::default();
        assert_eq!(d.cost_ns(Work::CompressRecords(Codec::Lz4), 1_000), 0, "unmeasured: free");
        let lz4 = CodecCost {
            compress_record: Cost::new(0, 80_000),
            decompress_record: Cost::new(0, 12_000),
            ..d.lz4
        };
        let p = CpuProfile { lz4, ..CpuProfile::default() };
        assert_eq!(p.cost_ns(Work::CompressRecords(Codec::Lz4), 148), 148 * 80);
        assert_eq!(p.cost_ns(Work::DecompressRecords(Codec::Lz4), 10), 120);
        assert_eq!(
            p.cost_ns(Work::Compress(Codec::Lz4), 1_000),
            d.cost_ns(Work::Compress(Codec::Lz4), 1_000)
        );
        assert_eq!(p.cost_ns(Work::CompressRecords(Codec::Zstd), 148), 0, "per codec");
        // Profiles written before the per-record terms still parse; the terms round-trip.
        let old: CodecCost = serde_json::from_str(
            r#"{"compress": {"per_op_ns": 1, "per_byte_ps": 2}, "decompress": {"per_op_ns": 3, "per_byte_ps": 4}}"#,
        )
        .unwrap();
        assert_eq!(old, CodecCost::new(Cost::new(1, 2), Cost::new(3, 4)));
        let back: CodecCost = serde_json::from_str(&serde_json::to_string(&lz4).unwrap()).unwrap();
        assert_eq!(back, lz4);
        let bad = CpuProfile {
            lz4: CodecCost { compress_record: Cost::new(0, PER_BYTE_PS_MAX + 1), ..lz4 },
            ..p
        };
        assert!(bad.validate().is_err());
    }

    /// The synchronous scheduler in the real world (the same in simulated time:
    /// `tests/sim_cpu.rs`). Goes red if a party's thread limit is ignored (its second job would
    /// end at 100 µs) or applied to the whole pool (the other party's job would end at 200 µs).
    #[cfg(not(madsim))]
    #[test]
    fn a_party_runs_on_at_most_its_threads() {
        let profile =
            CpuProfile { cores: 2, request: Cost::new(100_000, 0), ..CpuProfile::default() };
        let cpu = SimCpu::new(profile);
        let one = cpu.party(1).party;
        let other = cpu.party(1).party;
        assert_eq!(cpu.schedule_for(one, 0, Work::Request, 0), 100_000);
        assert_eq!(cpu.schedule_for(one, 0, Work::Request, 0), 200_000, "waits for its thread");
        assert_eq!(cpu.schedule_for(other, 0, Work::Request, 0), 100_000, "the free core");
        let unlimited = cpu.party(0).party;
        assert_eq!(unlimited, None);
        assert_eq!(cpu.schedule_for(unlimited, 0, Work::Request, 0), 200_000, "cores busy");
        let bad = CpuProfile {
            threads: Threads { broker: 0, client: THREADS_MAX + 1 },
            ..CpuProfile::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn profile_json_round_trip_rejects_unknown() {
        let p: CpuProfile = serde_json::from_str(
            r#"{"cores": 2, "request": {"per_op_ns": 5000, "per_byte_ps": 0}}"#,
        )
        .unwrap();
        assert_eq!(p.cores, 2);
        assert_eq!(p.request.per_op_ns, 5000);
        assert_eq!(p.lz4, CpuProfile::default().lz4);
        let t: CpuProfile = serde_json::from_str(
            r#"{"threads": {"client": 2}, "fetch_pass": {"per_op_ns": 7, "per_byte_ps": 0}}"#,
        )
        .unwrap();
        assert_eq!(t.threads, Threads { broker: 0, client: 2 });
        assert_eq!(t.cost_ns(Work::FetchPass, 0), 7);
        assert!(serde_json::from_str::<CpuProfile>(r#"{"threads": {"producer": 1}}"#).is_err());
        assert!(serde_json::from_str::<CpuProfile>(r#"{"corez": 2}"#).is_err());
        let s = serde_json::to_string(&Work::Compress(Codec::Zstd)).unwrap();
        assert_eq!(s, r#"{"Compress":"zstd"}"#);
    }
}
