//! `cargo simulate calibrate`: measures this machine with the real code and writes a host
//! profile (`profiles/*.json`, read by the simulator as `cluster.host.profile`).
//!
//! - [`measure`] and [`broker_fit`] (real world only) run the measurements: CRC32C, memcpy, the
//!   codecs both ways (the `records` crate's, as the broker and client use them), syscall and
//!   wake-up costs, sendfile vs read+write, disk sequential write/read, fsync, random reads at
//!   queue depth 1 and 8 (a temp file in the current directory), loopback TCP bandwidth and
//!   latency, and the real broker's CPU per request and per byte under the `perf` client.
//! - This module turns the figures ([`Calibration`]: each a [`Measurement`], median of several
//!   runs with min and max) into the profile's model parameters with the arithmetic written
//!   down in `sources`, so every number in the file says where it came from.
//! - [`validate`]: the workloads of `cargo simulate validate` (each defined once, the real and
//!   simulated sides derived from it); `validate_real` (real world only) runs them on the real
//!   broker under `perf produce`.

use std::collections::BTreeMap;

use net_model::cpu::{CodecCost, Cost, CpuProfile};
use net_model::profile::Measurement;
use serde_json::{json, Map, Value};

#[cfg(not(madsim))]
pub mod broker_fit;
#[cfg(not(madsim))]
pub mod measure;
pub mod validate;
#[cfg(not(madsim))]
pub mod validate_real;

/// A 4 KiB page: the unit of random reads and of the model's IOs.
pub const PAGE_BYTES: f64 = 4096.0;

/// Everything measured, by name (see [`names`]), with where and when.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    /// `/proc/cpuinfo`'s model name and the core count.
    pub machine: String,
    /// UTC date of the run (YYYY-MM-DD).
    pub date: String,
    /// `/proc/loadavg` before and after.
    pub load_before: String,
    pub load_after: String,
    pub cores: u32,
    /// The writeback knobs read from `/proc/sys/vm` (name → value), and `MemTotal` in bytes.
    pub vm: BTreeMap<String, u64>,
    pub measurements: BTreeMap<String, Measurement>,
}

/// The names of the figures the profile is built from.
pub mod names {
    pub const MEMCPY: &str = "memcpy_mb_s";
    pub const CRC32C: &str = "crc32c_mb_s";
    pub const DISK_WRITE: &str = "disk_seq_write_mb_s";
    pub const DISK_READ: &str = "disk_seq_read_mb_s";
    pub const FSYNC: &str = "disk_fsync_4k_ns";
    pub const RANDOM_QD1: &str = "disk_random_read_4k_qd1_ns";
    pub const IOPS_QD1: &str = "disk_random_read_4k_qd1_iops";
    pub const IOPS_QD8: &str = "disk_random_read_4k_qd8_iops";
    pub const LOOPBACK_MB_S: &str = "loopback_mb_s";
    pub const LOOPBACK_RTT: &str = "loopback_rtt_ns";
    pub const LOOPBACK_SEND_PS: &str = "loopback_send_cpu_ps";
    pub const LOOPBACK_RECV_PS: &str = "loopback_recv_cpu_ps";
    pub const RECORD_NS: &str = "broker_record_ns";
    pub const CLIENT_REQUEST_NS: &str = "client_request_ns";
    pub const CLIENT_BYTE_PS: &str = "client_produce_byte_ps";
    pub const CLIENT_RECORD_NS: &str = "client_record_ns";
    /// The same fit of the CPU of perf's appending thread (the caller of `send`): recorded,
    /// not charged apart (README, "Validating the model": the twin charging it in the
    /// appending task came out too parallel).
    pub const APPEND_REQUEST_NS: &str = "client_append_request_ns";
    pub const APPEND_BYTE_PS: &str = "client_append_byte_ps";
    pub const APPEND_RECORD_NS: &str = "client_append_record_ns";
    pub const REQUEST_NS: &str = "broker_request_ns";
    pub const BYTE_PS: &str = "broker_produce_byte_ps";
    pub const WAKEUP_NS: &str = "wakeup_ns";
    pub const WAKEUP_CPU_NS: &str = "wakeup_cpu_ns";

    /// `<codec>_compress_mb_s`, `<codec>_decompress_mb_s`, `<codec>_{compress,decompress}_call_ns`.
    pub fn codec(codec: &str, dir: &str, what: &str) -> String {
        format!("{codec}_{dir}_{what}")
    }
}

/// Picoseconds per byte of a rate in MB/s (10^6 bytes per second).
pub fn ps_per_byte(mb_s: f64) -> u64 {
    if mb_s <= 0.0 {
        return net_model::cpu::PER_BYTE_PS_MAX;
    }
    ((1e6 / mb_s).round() as u64).clamp(1, net_model::cpu::PER_BYTE_PS_MAX)
}

impl Calibration {
    fn median(&self, name: &str) -> Option<f64> {
        self.measurements.get(name).map(|m| m.median)
    }

    /// The CPU section: per-byte costs from the measured rates, per-call costs from small
    /// inputs, the request cost from the broker fit.
    pub fn cpu(&self) -> CpuProfile {
        let d = CpuProfile::default();
        let rate = |name: &str, default: Cost| {
            self.median(name).map_or(default, |mb_s| Cost::new(0, ps_per_byte(mb_s)))
        };
        // A codec: per call, per byte and per record. With the fit over batches of records
        // measured, its per-byte term (`records_byte_ps`) replaces the raw filler's rate, which
        // no record framing slows down.
        let codec = |c: &str, default: CodecCost| {
            let one = |dir: &str, default: Cost| {
                let Some(mb_s) = self.median(&names::codec(c, dir, "mb_s")) else {
                    return default;
                };
                let call = self.median(&names::codec(c, dir, "call_ns")).unwrap_or(0.0);
                let per_byte_ps = self
                    .median(&names::codec(c, dir, "records_byte_ps"))
                    .map_or(ps_per_byte(mb_s), |ps| {
                        (ps.round() as u64).clamp(1, net_model::cpu::PER_BYTE_PS_MAX)
                    });
                Cost::new(call.round().max(0.0) as u64, per_byte_ps)
            };
            let record = |dir: &str, default: Cost| {
                self.median(&names::codec(c, dir, "record_ns"))
                    .map_or(default, |ns| Cost::new(0, (ns * 1e3).round().max(0.0) as u64))
            };
            CodecCost {
                compress: one("compress", default.compress),
                decompress: one("decompress", default.decompress),
                compress_record: record("compress", default.compress_record),
                decompress_record: record("decompress", default.decompress_record),
            }
        };
        let memcpy = rate(names::MEMCPY, d.memcpy);
        let crc32c = rate(names::CRC32C, d.crc32c);
        let loopback = self.loopback_cost().unwrap_or(d.loopback);
        let ns = |name: &str| self.median(name).map(|v| v.round().max(0.0) as u64);
        // The processes' CPU time includes the kernel's loopback copies (stime): the fitted
        // per-byte costs minus what the model charges separately. The broker charges Request
        // + Memcpy + Crc32c per produced frame byte and receives it (one loopback side); the
        // client charges ClientRequest + Crc32c per byte and sends it (the other side).
        let per_byte = |fitted: &str, charged: &[Cost]| {
            let rest = charged.iter().fold(self.median(fitted)?, |r, c| r - c.per_byte_ps as f64);
            Some(rest.round().max(0.0) as u64)
        };
        let request =
            match (ns(names::REQUEST_NS), per_byte(names::BYTE_PS, &[memcpy, crc32c, loopback])) {
                (Some(ns), Some(ps)) => Cost::new(ns, ps),
                _ => d.request,
            };
        // perf's appending thread (the one that calls `send`), fitted apart: its per-record and
        // per-byte terms are charged by the twin's appending task (`client_append`) and taken
        // out of the whole process's, which the sender charges. Its per-batch term stays in
        // the sender's per-request cost (one batch a request in the fits' workloads).
        let client_append = match (ns(names::APPEND_RECORD_NS), ns(names::APPEND_BYTE_PS)) {
            (Some(ns), Some(ps)) => Cost::new(ns, ps),
            _ => d.client_append,
        };
        let client_request = match (
            ns(names::CLIENT_REQUEST_NS),
            per_byte(
                names::CLIENT_BYTE_PS,
                &[crc32c, loopback, Cost::new(0, client_append.per_byte_ps)],
            ),
        ) {
            (Some(ns), Some(ps)) => Cost::new(ns, ps),
            _ => d.client_request,
        };
        // Per-record costs: `per_byte_ps` counts picoseconds per record.
        let per_record = |name: &str, default: Cost| {
            self.median(name).map_or(default, |v| Cost::new(0, (v * 1e3).round().max(0.0) as u64))
        };
        let mut client_record = per_record(names::CLIENT_RECORD_NS, d.client_record);
        client_record.per_byte_ps =
            client_record.per_byte_ps.saturating_sub(client_append.per_op_ns * 1_000);
        CpuProfile {
            cores: self.cores.max(1),
            request,
            memcpy,
            crc32c,
            gzip: codec("gzip", d.gzip),
            snappy: codec("snappy", d.snappy),
            lz4: codec("lz4", d.lz4),
            zstd: codec("zstd", d.zstd),
            record: per_record(names::RECORD_NS, d.record),
            client_request,
            client_record,
            client_append,
            loopback,
            // A pass after the first is a parked long poll woken by an append or a high
            // watermark move: its CPU is the wake-up's (the pass's own work is a few map
            // lookups). On a VM a wake-up costs tens of µs of guest CPU (IPIs, halt exits).
            fetch_pass: ns(names::WAKEUP_CPU_NS).map_or(d.fetch_pass, |w| Cost::new(w, 0)),
            // The processes measured: the broker on tokio's default runtime (a worker per
            // core), perf on its fixed worker count.
            threads: net_model::Threads {
                broker: self.cores.max(1),
                client: crate::perf::WORKER_THREADS as u32,
            },
            wakeup_ns: ns(names::WAKEUP_NS)
                .map_or(d.wakeup_ns, |w| w.min(net_model::cpu::WAKEUP_NS_MAX)),
            // The same measured wake-up, as the CPU of waking a parked socket reader.
            wakeup_cpu: ns(names::WAKEUP_CPU_NS).map_or(d.wakeup_cpu, |w| Cost::new(w, 0)),
        }
    }

    /// One side of a loopback copy: the mean of the sender's and the receiver's CPU per byte.
    fn loopback_cost(&self) -> Option<Cost> {
        let send = self.median(names::LOOPBACK_SEND_PS)?;
        let recv = self.median(names::LOOPBACK_RECV_PS)?;
        Some(Cost::new(0, ((send + recv) / 2.0).round().max(1.0) as u64))
    }

    /// The `device` section (`disk_model::sim::DeviceProfile`'s fields) from the disk figures.
    pub fn device(&self) -> Value {
        let write_mb_s = self.median(names::DISK_WRITE).unwrap_or(1.0).max(1.0);
        let read_mb_s = self.median(names::DISK_READ).unwrap_or(1.0).max(1.0);
        let read_page_ns = PAGE_BYTES / read_mb_s * 1e3;
        let write_page_ns = PAGE_BYTES / write_mb_s * 1e3;
        let qd1_ns = self.median(names::RANDOM_QD1).unwrap_or(0.0);
        let random_access_ns = (qd1_ns - read_page_ns).max(0.0);
        // The model's fsync of one dirty page: the page's write and the journal commit, each a
        // random 4 KiB write; what the measured fsync takes beyond that is the cache flush.
        let fsync_ns = self.median(names::FSYNC).unwrap_or(0.0);
        let flush_ns = (fsync_ns - 2.0 * (random_access_ns + write_page_ns)).max(0.0);
        let channels = match (self.median(names::IOPS_QD1), self.median(names::IOPS_QD8)) {
            (Some(q1), Some(q8)) if q1 > 0.0 => (q8 / q1).round().clamp(1.0, 8.0) as u32,
            _ => 1,
        };
        json!({
            "name": "measured",
            "channels": channels,
            "sequential_access_ns": 0,
            "random_access_ns": random_access_ns.round() as u64,
            "read_bytes_per_sec": (read_mb_s * 1e6).round() as u64,
            "write_bytes_per_sec": (write_mb_s * 1e6).round() as u64,
            "flush_ns": flush_ns.round() as u64,
        })
    }

    /// The whole profile, as `profiles/*.json` holds it.
    pub fn profile(&self, name: &str) -> Value {
        let mut p = Map::new();
        p.insert("name".into(), json!(name));
        p.insert(
            "description".into(),
            json!(format!(
                "Measured on {} by `cargo simulate calibrate` on {}: brokers and clients on one machine over loopback.",
                self.machine, self.date
            )),
        );
        p.insert("device".into(), self.device());
        p.insert("disks".into(), json!(1));
        for (k, v) in self.page_cache() {
            p.insert(k, v);
        }
        p.insert("cores".into(), json!(self.cores.max(1)));
        p.insert("cpu".into(), serde_json::to_value(self.cpu()).unwrap_or(Value::Null));
        // Clients share the host: loopback is CPU work (`cpu.loopback`), and the simulator
        // takes the NIC out of the path; `nic` stays the one stream's wall-clock rate for
        // scenarios that turn `clients_share_host` off.
        let mb_s = self.median(names::LOOPBACK_MB_S).unwrap_or(1.0).max(1.0);
        let bps = (mb_s * 8e6).min(net_model::sim::NIC_BPS_MAX as f64).round() as u64;
        p.insert("nic".into(), json!(bps));
        let rtt = self.median(names::LOOPBACK_RTT).unwrap_or(0.0);
        let one_way_ns = (rtt / 2.0).round().min(net_model::sim::LATENCY_NS_MAX as f64) as u64;
        p.insert("link_latency".into(), json!(format!("{one_way_ns}ns")));
        p.insert("clients_share_host".into(), json!(true));
        p.insert("sources".into(), Value::Object(self.sources()));
        p.insert(
            "measurements".into(),
            serde_json::to_value(&self.measurements).unwrap_or_default(),
        );
        p.insert(
            "calibration".into(),
            json!({"machine": self.machine, "date": self.date, "cores": self.cores,
                   "load_before": self.load_before, "load_after": self.load_after,
                   "command": "cargo simulate calibrate --out FILE"}),
        );
        Value::Object(p)
    }

    fn page_cache(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        // The page cache a broker gets: half the machine's memory (the other half for the
        // processes, the kernel and the clients), at most 64 GiB.
        let mem = self.vm.get("mem_total_bytes").copied().unwrap_or(2 << 30);
        out.push(("page_cache".into(), json!((mem / 2).clamp(256 << 20, 64 << 30))));
        for k in [
            "dirty_ratio",
            "dirty_background_ratio",
            "dirty_expire_centisecs",
            "dirty_writeback_centisecs",
            "read_ahead_max_kb",
        ] {
            if let Some(v) = self.vm.get(k) {
                out.push((k.into(), json!(v)));
            }
        }
        out
    }

    fn sources(&self) -> Map<String, Value> {
        let at = format!(
            "measured on {} with `cargo simulate calibrate` on {} (load {} before, {} after)",
            self.machine, self.date, self.load_before, self.load_after
        );
        let m = |what: &str| json!(format!("{at}: {what}"));
        let mut s = Map::new();
        s.insert("cores".into(), m("available_parallelism()"));
        s.insert("cpu".into(), m("per-byte costs = 10^6 / median MB/s of `measurements`; codec per-call costs = median time of one 1 KiB call minus its bytes; a codec's per-byte and per-record costs (compress_record, decompress_record: per_byte_ps = picoseconds per record) = the fit `<codec>_<dir>_records_byte_ps` + `<codec>_<dir>_record_ns` / bytes per record over batches of 100-byte and 1 KiB records"));
        s.insert("cpu.cores".into(), m("available_parallelism()"));
        s.insert("cpu.request".into(), m("least-squares fit of the real release broker's CPU seconds (/proc/PID/stat) = requests × per_op_ns + produced bytes × per_byte + records × per_record, `perf produce` at four record/batch sizes; per_byte_ps = the fitted per-byte cost minus memcpy, crc32c and one loopback side (charged separately by the model)"));
        s.insert(
            "cpu.record".into(),
            m("the same fit's per-record term (per_byte_ps = picoseconds per record)"),
        );
        s.insert("cpu.client_request".into(), m("the same fit of perf's CPU seconds (getrusage RUSAGE_CHILDREN); per_byte_ps = the fitted per-byte cost minus crc32c, one loopback side and cpu.client_append's per byte (the appending thread's, charged apart)"));
        s.insert(
            "cpu.client_record".into(),
            m("the perf fit's per-record term minus cpu.client_append's (per_byte_ps = picoseconds per record): the sender's share"),
        );
        s.insert("cpu.client_append".into(), m("the same fit of the CPU time of perf's thread that calls send (its summary's app_thread_cpu_s, getrusage RUSAGE_THREAD): per_op_ns = its per-record term, per_byte_ps = its per-byte term (also taken out of cpu.client_request's per_byte_ps); its per-batch term stays in cpu.client_request"));
        s.insert("cpu.loopback".into(), m("mean of the sending and the receiving thread's CPU time per byte of one loopback stream (256 MiB in 1 MiB writes): one side's kernel copy, charged once by the sender and once for the receiver"));
        s.insert("cpu.wakeup_ns".into(), m("measurements.wakeup_ns (median half round trip between two threads over rendezvous channels), charged as latency by the simulated network to every read that finds its reader parked"));
        s.insert("cpu.fetch_pass".into(), m("per_op_ns = measurements.wakeup_cpu_ns (median CPU time of the process per wake-up of two threads over rendezvous channels): a Fetch long-poll pass is woken by an append or a high-watermark move, and its cost is the wake-up's; the hand fit of profiles/this-machine.json from validate's 3-node rows (19.6 µs) agreed within its spread"));
        s.insert("cpu.wakeup_cpu".into(), m("per_op_ns = measurements.wakeup_cpu_ns (as cpu.fetch_pass): the CPU of waking a parked socket reader, charged by the simulated network on hosts sharing one machine per read that finds data after its last found none"));
        s.insert("cpu.threads".into(), json!("the code of the processes measured: broker = cores (broker/src/main.rs runs tokio's multi-thread runtime with its default worker count, one per core), client = perf's worker threads (client::perf::WORKER_THREADS, client/src/bin/perf.rs)"));
        s.insert("device".into(), m("read/write_bytes_per_sec = median sequential MB/s (1 MiB IOs, page cache dropped with posix_fadvise, write timed to fdatasync); random_access_ns = median QD1 4 KiB random read minus its transfer; channels = QD8 IOPS / QD1 IOPS (1..=8); flush_ns = median 4 KiB append+fsync minus two random 4 KiB writes (the model's page write and journal commit); sequential_access_ns 0 (the sequential rates include the per-IO cost)"));
        s.insert("device.name".into(), json!("a label"));
        s.insert("disks".into(), json!("one disk per broker here; a scenario's cluster.host.disks sets JBOD (one log.dirs entry per disk, one shared page cache)"));
        s.insert("page_cache".into(), m("half of MemTotal (/proc/meminfo), clamped to 256 MiB..64 GiB: the rest is the processes' and the clients'"));
        for k in [
            "dirty_ratio",
            "dirty_background_ratio",
            "dirty_expire_centisecs",
            "dirty_writeback_centisecs",
        ] {
            s.insert(k.into(), m(&format!("read from /proc/sys/vm/{k}")));
        }
        s.insert("read_ahead_max_kb".into(), m("Linux's read_ahead_kb (the largest readahead window) read from /sys/dev/block/<the temp file's disk>/queue/read_ahead_kb; the first window (read_ahead_kb) stays the model's default"));
        s.insert("nic".into(), m("median loopback TCP bandwidth (one stream, 1 MiB writes) × 8"));
        s.insert("link_latency".into(), m("median loopback round trip of 1-byte messages / 2"));
        s.insert(
            "clients_share_host".into(),
            json!("calibrated with broker and clients on this one machine"),
        );
        s
    }
}

/// The days since 1970-01-01 as a civil date (Howard Hinnant's `civil_from_days`).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A calibration with made-up round figures, for tests of the writer and of the reader.
pub fn example() -> Calibration {
    let mut c = Calibration {
        machine: "test cpu".into(),
        date: civil_date(20_790),
        load_before: "0.5".into(),
        load_after: "0.6".into(),
        cores: 2,
        ..Calibration::default()
    };
    let mut put = |n: &str, v: f64, unit: &str| {
        c.measurements.insert(n.into(), Measurement::of(&[v * 0.9, v, v * 1.1], unit, ""));
    };
    put(names::MEMCPY, 10_000.0, "MB/s");
    put(names::CRC32C, 8_000.0, "MB/s");
    put(names::DISK_WRITE, 500.0, "MB/s");
    put(names::DISK_READ, 1000.0, "MB/s");
    put(names::RANDOM_QD1, 104_096.0, "ns");
    put(names::FSYNC, 1_000_000.0, "ns");
    put(names::IOPS_QD1, 9_000.0, "IOPS");
    put(names::IOPS_QD8, 36_000.0, "IOPS");
    put(names::LOOPBACK_MB_S, 2_000.0, "MB/s");
    put(names::LOOPBACK_RTT, 40_000.0, "ns");
    put(names::REQUEST_NS, 30_000.0, "ns");
    put(names::BYTE_PS, 1_000.0, "ps/B");
    put(names::RECORD_NS, 300.0, "ns");
    put(names::CLIENT_REQUEST_NS, 10_000.0, "ns");
    put(names::CLIENT_BYTE_PS, 700.0, "ps/B");
    put(names::CLIENT_RECORD_NS, 500.0, "ns");
    put(names::APPEND_RECORD_NS, 200.0, "ns");
    put(names::APPEND_BYTE_PS, 100.0, "ps/B");
    put(names::APPEND_REQUEST_NS, 4_000.0, "ns");
    put(names::LOOPBACK_SEND_PS, 200.0, "ps/B");
    put(names::LOOPBACK_RECV_PS, 300.0, "ps/B");
    put(&names::codec("lz4", "compress", "mb_s"), 500.0, "MB/s");
    put(&names::codec("lz4", "compress", "call_ns"), 300.0, "ns");
    put(&names::codec("zstd", "compress", "mb_s"), 100.0, "MB/s");
    put(&names::codec("zstd", "compress", "records_byte_ps"), 4_000.0, "ps/B");
    put(&names::codec("zstd", "compress", "record_ns"), 80.0, "ns");
    put(names::WAKEUP_NS, 9_000.4, "ns");
    put(names::WAKEUP_CPU_NS, 6_000.2, "ns");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_parameters() {
        let c = example();
        let cpu = c.cpu();
        assert_eq!(cpu.cores, 2);
        assert_eq!(cpu.memcpy.per_byte_ps, 100);
        assert_eq!(cpu.crc32c.per_byte_ps, 125);
        assert_eq!(cpu.loopback, Cost::new(0, 250));
        assert_eq!(cpu.request, Cost::new(30_000, 1_000 - 100 - 125 - 250));
        assert_eq!(cpu.record, Cost::new(0, 300_000), "300 ns a record");
        assert_eq!(
            cpu.client_request,
            Cost::new(10_000, 700 - 125 - 250 - 100),
            "the appending thread's per byte is charged apart; its per batch stays here"
        );
        assert_eq!(cpu.client_record, Cost::new(0, 300_000), "the sender's share of 500 ns");
        assert_eq!(cpu.client_append, Cost::new(200, 100), "the appending thread's fit");
        assert_eq!(cpu.threads, net_model::Threads { broker: 2, client: 2 }, "from the code");
        assert_eq!(cpu.fetch_pass, Cost::new(6_000, 0), "the measured wake-up's CPU");
        assert_eq!(cpu.wakeup_cpu, Cost::new(6_000, 0), "the same, for a woken reader");
        assert_eq!(cpu.wakeup_ns, 9_000, "the measured wake-up, charged");
        assert_eq!(cpu.lz4.compress, Cost::new(300, 2_000));
        assert_eq!(cpu.lz4.compress_record, Cost::new(0, 0), "no fit over batches: none");
        assert_eq!(cpu.zstd.compress, Cost::new(0, 4_000), "the fit's per-byte term, not 10 ns");
        assert_eq!(cpu.zstd.compress_record, Cost::new(0, 80_000), "80 ns a record");
        assert_eq!(
            cpu.lz4.decompress,
            CpuProfile::default().lz4.decompress,
            "not measured: default"
        );
        let d = c.device();
        assert_eq!(d["read_bytes_per_sec"], 1_000_000_000u64);
        assert_eq!(d["random_access_ns"], 100_000);
        assert_eq!(d["channels"], 4);
        // 1 ms fsync - 2 × (100 µs + 8.192 µs).
        assert_eq!(d["flush_ns"], 783_616);
        let p = c.profile("t");
        assert_eq!(p["nic"], 16_000_000_000u64);
        assert_eq!(p["link_latency"], "20000ns");
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_790), "2026-12-03");
    }
}
