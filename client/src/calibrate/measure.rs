//! The measurements of this machine other than the broker's (real world only). Each figure is
//! measured `runs` times and kept as a [`Measurement`] (median, min, max). Sizes are bounded so
//! the whole set takes well under a minute on a slow disk.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use net_model::profile::Measurement;
use records::compression::{compress, decompress};
use records::Compression;

use super::names;

/// Bytes of the CPU benchmarks' input (larger than the L2 cache, small enough to stay quick).
pub const CPU_INPUT_BYTES: usize = 4 << 20;
/// Size of the disk test file.
pub const DISK_FILE_BYTES: u64 = 128 << 20;
/// Bytes sent per loopback bandwidth run.
pub const LOOPBACK_BYTES: u64 = 256 << 20;
/// Round trips per loopback latency run.
pub const LOOPBACK_ROUND_TRIPS: u32 = 2_000;
/// Random 4 KiB reads per run and thread.
pub const RANDOM_READS: u32 = 1_000;
/// Bytes of one codec call: a batch at the default `batch.size` (and validate's).
pub const CODEC_BLOCK_BYTES: usize = 16_384;
/// Appends+fsyncs per fsync run.
pub const FSYNCS: u32 = 40;
/// Threads of the queue-depth-8 random-read run.
pub const QUEUE_DEPTH: u32 = 8;

pub type Figures = BTreeMap<String, Measurement>;

/// ~4 MiB of Kafka-like records: JSON-ish values with repeating keys and varying numbers (the
/// input the default `CpuProfile` in `net-model/src/cpu.rs` was measured on, so figures compare).
pub fn sample_records() -> Vec<u8> {
    let mut out = Vec::with_capacity(CPU_INPUT_BYTES);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut i = 0u64;
    while out.len() < CPU_INPUT_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let rec = format!(
            "{{\"id\":{i},\"user\":\"user-{}\",\"ts\":{},\"event\":\"{}\",\"value\":{}}}\n",
            x % 10_000,
            1_700_000_000_000u64 + i * 7,
            ["click", "view", "buy", "scroll"][(x % 4) as usize],
            x % 1_000_000
        );
        out.extend_from_slice(rec.as_bytes());
        i += 1;
    }
    out.truncate(CPU_INPUT_BYTES);
    out
}

/// This thread's CPU time, ns (`CLOCK_THREAD_CPUTIME_ID`): what the CPU benchmarks time, so a
/// machine shared with other work (a build, the broker) does not count its waits.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes into the timespec we own; the clock id is always valid on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// MB/s of `f` over `bytes` (of this thread's CPU time), once per run after a warm-up call.
fn rates(runs: u32, bytes: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    (0..runs)
        .map(|_| {
            let t = thread_cpu_ns();
            f();
            let ns = (thread_cpu_ns() - t).max(1) as f64;
            bytes as f64 / ns * 1e3
        })
        .collect()
}

/// CPU ns of one call of `f`, `calls` calls per run.
fn call_ns(runs: u32, calls: u32, mut f: impl FnMut()) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            let t = thread_cpu_ns();
            for _ in 0..calls {
                f();
            }
            (thread_cpu_ns() - t) as f64 / f64::from(calls)
        })
        .collect()
}

/// memcpy, CRC32C and every codec both ways (MB/s of uncompressed bytes, and the cost of one
/// 1 KiB call beyond its bytes).
pub fn cpu(runs: u32, out: &mut Figures) -> io::Result<()> {
    let data = sample_records();
    let n = data.len();
    let mut dst = vec![0u8; n];
    let how = format!("{n} bytes of JSON-like records per run, release build, thread CPU time");
    let memcpy = rates(runs, n, || {
        dst.copy_from_slice(std::hint::black_box(&data));
        std::hint::black_box(&dst);
    });
    out.insert(names::MEMCPY.into(), Measurement::of(&memcpy, "MB/s", &how));
    let crc = rates(runs, n, || {
        std::hint::black_box(crc32c(std::hint::black_box(&data)));
    });
    out.insert(names::CRC32C.into(), Measurement::of(&crc, "MB/s", &how));
    // The codecs on the data the simulated producers compress (the simulator's record filler,
    // which `perf --distinct-values` sends too), a batch (`CODEC_BLOCK_BYTES`) per call as the
    // producer compresses and the broker decompresses.
    let filler = crate::perf::filler(n);
    let blocks: Vec<&[u8]> = filler.chunks(CODEC_BLOCK_BYTES).collect();
    let record_sets = CODEC_RECORD_SIZES.map(|size| record_batches(&filler, size));
    let small = &filler[..1024];
    for (name, codec) in [
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let (c, d, packed_bytes) = codec_rates(runs, codec, &blocks)?;
        let mut small_packed = Vec::new();
        compress(codec, small, &mut small_packed).map_err(io::Error::other)?;
        let how_c = format!(
            "{n} bytes of the simulator's record filler (64 symbols) in {CODEC_BLOCK_BYTES}-byte calls per run, release build, thread CPU time, {name}: ratio {:.2}",
            n as f64 / packed_bytes as f64
        );
        let mb = |dir: &str| names::codec(name, dir, "mb_s");
        out.insert(mb("compress"), Measurement::of(&c, "MB/s", &how_c));
        out.insert(mb("decompress"), Measurement::of(&d, "MB/s", &how_c));
        // The fixed part of a call: a 1 KiB call's time minus its bytes at the median rate.
        let per_call = |samples: Vec<f64>, rate: &[f64]| {
            let mb_s = Measurement::of(rate, "", "").median;
            let bytes_ns = 1024.0 / mb_s * 1e3;
            samples.iter().map(|t| (t - bytes_ns).max(0.0)).collect::<Vec<_>>()
        };
        let cs = call_ns(runs, 200, || {
            let mut o = Vec::new();
            let _ = compress(codec, small, &mut o);
            std::hint::black_box(o);
        });
        let ds = call_ns(runs, 200, || {
            std::hint::black_box(decompress(codec, &small_packed, 4096).ok());
        });
        let call_how = "one 1 KiB call's time minus 1 KiB at the median rate";
        let call = |dir: &str| names::codec(name, dir, "call_ns");
        out.insert(call("compress"), Measurement::of(&per_call(cs, &c), "ns", call_how));
        out.insert(call("decompress"), Measurement::of(&per_call(ds, &d), "ns", call_how));
        codec_per_record(runs, name, codec, &record_sets, n, out)?;
    }
    syscalls(runs, out);
    Ok(())
}

/// `codec`'s MB/s compressing and decompressing `blocks` (a call each; MB of uncompressed
/// bytes), `runs` times each, and the blocks' compressed bytes.
fn codec_rates(
    runs: u32,
    codec: Compression,
    blocks: &[&[u8]],
) -> io::Result<(Vec<f64>, Vec<f64>, usize)> {
    let bytes: usize = blocks.iter().map(|b| b.len()).sum();
    let mut packed = Vec::new();
    for b in blocks {
        let mut o = Vec::new();
        compress(codec, b, &mut o).map_err(io::Error::other)?;
        packed.push(o);
    }
    let c = rates(runs, bytes, || {
        for b in blocks {
            let mut o = Vec::new();
            let _ = compress(codec, b, &mut o);
            std::hint::black_box(o);
        }
    });
    let d = rates(runs, bytes, || {
        for p in &packed {
            std::hint::black_box(decompress(codec, p, CODEC_BLOCK_BYTES * 2).ok());
        }
    });
    Ok((c, d, packed.iter().map(Vec::len).sum()))
}

/// Record sizes of the batches the per-record codec costs are fitted over (validate's).
pub const CODEC_RECORD_SIZES: [usize; 2] = [100, 1024];

/// The records sections of batches as the producer builds them: `record_bytes`-byte values cut
/// from `filler`, `CODEC_BLOCK_BYTES` (the batch size) a batch, `filler.len()` bytes in all.
/// Returns the sections and their bytes per record (value and framing).
fn record_batches(filler: &[u8], record_bytes: usize) -> (Vec<Vec<u8>>, f64) {
    let (mut batches, mut records) = (Vec::new(), 0usize);
    let mut values = filler.chunks_exact(record_bytes).peekable();
    while values.peek().is_some() {
        let mut b = records::BatchBuilder::new(
            bytes::BytesMut::new(),
            Compression::None,
            CODEC_BLOCK_BYTES,
        );
        let ts = 1_700_000_000_000;
        // A value under 2 GiB and at most 2^31 records: `try_append` cannot refuse it, only
        // find the batch full (the first record always fits, so each pass takes one).
        while let Some(v) = values.peek() {
            if let Ok(None) = b.try_append(ts, None, Some(v), &[]) {
                break;
            }
            values.next();
            records += 1;
        }
        if let Ok(built) = b.finish() {
            batches.push(built[records::BATCH_HEADER_LEN..].to_vec());
        }
    }
    let bytes: usize = batches.iter().map(Vec::len).sum();
    (batches, bytes as f64 / records.max(1) as f64)
}

/// A codec's cost per record of a batch: its speed over batches of 100-byte and of 1 KiB
/// records (`CODEC_RECORD_SIZES`) fitted, run by run, as `ps/B = a + b / bytes per record`;
/// `a` is `<codec>_<dir>_records_byte_ps`, `b` (in ns) `<codec>_<dir>_record_ns`. Each
/// record's framing is a short repeat the match finders stop at: lz4 compresses 100-byte
/// records about five times slower per byte than 1 KiB ones.
/// `record_sets`: [`record_batches`] of each of `CODEC_RECORD_SIZES`, `filler_bytes` in all.
fn codec_per_record(
    runs: u32,
    name: &str,
    codec: Compression,
    record_sets: &[(Vec<Vec<u8>>, f64); 2],
    filler_bytes: usize,
    out: &mut Figures,
) -> io::Result<()> {
    let mut speeds = Vec::new(); // per size: (bytes per record, compress ps/B, decompress ps/B)
    for (batches, per_record) in record_sets {
        let per_record = *per_record;
        let blocks: Vec<&[u8]> = batches.iter().map(Vec::as_slice).collect();
        let (c, d, _) = codec_rates(runs, codec, &blocks)?;
        let ps = |mb_s: Vec<f64>| mb_s.iter().map(|r| 1e6 / r).collect::<Vec<_>>();
        speeds.push((per_record, ps(c), ps(d)));
    }
    let [(small_b, small_c, small_d), (large_b, large_c, large_d)] = [&speeds[0], &speeds[1]];
    let how = format!(
        "ps/B = a + b / bytes per record, fitted run by run over {} bytes of batches ({CODEC_BLOCK_BYTES} bytes each, built by records::BatchBuilder) of {}-byte records ({small_b:.0} bytes each with framing) and of {}-byte records ({large_b:.0}), values cut from the simulator's record filler, release build, thread CPU time",
        filler_bytes,
        CODEC_RECORD_SIZES[0],
        CODEC_RECORD_SIZES[1],
    );
    for (dir, small, large) in [("compress", small_c, large_c), ("decompress", small_d, large_d)] {
        let (a, b): (Vec<f64>, Vec<f64>) = small
            .iter()
            .zip(large)
            .map(|(s, l)| per_record_fit((*small_b, *s), (*large_b, *l)))
            .unzip();
        let fig = |what: &str| names::codec(name, dir, what);
        out.insert(fig("records_byte_ps"), Measurement::of(&a, "ps/B", &how));
        out.insert(fig("record_ns"), Measurement::of(&b, "ns", &how));
    }
    Ok(())
}

/// Solves `ps/B = a + b / bytes per record` through two points (bytes per record, ps/B):
/// `(a` in ps/B, `b` in ns a record`)`. A per-record cost below zero (noise: the small records
/// measured faster) is taken as none; the per-byte cost is at least 1 ps/B.
fn per_record_fit((small_b, s): (f64, f64), (large_b, l): (f64, f64)) -> (f64, f64) {
    assert!(small_b > 0.0 && large_b > small_b, "two record sizes, the smaller first");
    let per_record_ps = ((s - l) / (1.0 / small_b - 1.0 / large_b)).max(0.0);
    ((l - per_record_ps / large_b).max(1.0), per_record_ps / 1e3)
}

/// The crate `records` validates batches with (the broker's and the client's CRC32C).
fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// A syscall (getppid) and a thread wake-up (a channel round trip between two threads, / 2).
fn syscalls(runs: u32, out: &mut Figures) {
    let sys = call_ns(runs, 100_000, || {
        // SAFETY: getppid has no arguments and cannot fail.
        std::hint::black_box(unsafe { libc::getppid() });
    });
    out.insert("syscall_ns".into(), Measurement::of(&sys, "ns", "getppid(2), 100,000 calls per run (recorded; the CPU model does not charge syscalls separately yet)"));
    let (wake, wake_cpu): (Vec<f64>, Vec<f64>) = (0..runs).map(|_| wakeups(5_000)).unzip();
    out.insert(super::names::WAKEUP_NS.into(), Measurement::of(&wake, "ns", "half a round trip between two threads over rendezvous channels, 5,000 per run (the profile's cpu.wakeup_ns: a parked reader's latency)"));
    out.insert(super::names::WAKEUP_CPU_NS.into(), Measurement::of(&wake_cpu, "ns", "the process's CPU time (getrusage RUSAGE_SELF: both threads, user + system) per wake-up of the same ping-pong (the profile's cpu.fetch_pass: what a woken Fetch long-poll pass costs)"));
}

/// Two threads waking each other `rounds` times over rendezvous channels: (wall ns, CPU ns of
/// this process) per wake-up (half a round trip). The caller runs no other thread meanwhile.
fn wakeups(rounds: u32) -> (f64, f64) {
    let (to_tx, to_rx) = std::sync::mpsc::sync_channel::<u32>(0);
    let (back_tx, back_rx) = std::sync::mpsc::sync_channel::<u32>(0);
    let t = std::thread::spawn(move || {
        while let Ok(v) = to_rx.recv() {
            if back_tx.send(v).is_err() {
                break;
            }
        }
    });
    let cpu_before_s = rusage_cpu_s(libc::RUSAGE_SELF);
    let start = Instant::now();
    for i in 0..rounds {
        let _ = to_tx.send(i);
        let _ = back_rx.recv();
    }
    let wakeups = f64::from(rounds) * 2.0;
    let ns = start.elapsed().as_nanos() as f64 / wakeups;
    let cpu_ns = (rusage_cpu_s(libc::RUSAGE_SELF) - cpu_before_s).max(0.0) * 1e9 / wakeups;
    drop(to_tx);
    let _ = t.join();
    (ns, cpu_ns)
}

/// CPU seconds (user + system) of `who`: `libc::RUSAGE_SELF` (this process, all threads),
/// `libc::RUSAGE_CHILDREN` (its waited-for children) or `libc::RUSAGE_THREAD` (the calling
/// thread); 0 if the call fails.
pub fn rusage_cpu_s(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// A temp directory in the current directory's filesystem, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> io::Result<TempDir> {
        let p = std::env::current_dir()?.join(format!(".calibrate-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn drop_cache(f: &File) -> io::Result<()> {
    // SAFETY: a valid open fd; offset 0 / len 0 = the whole file.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Sequential write (to fdatasync) and read (page cache dropped), fsync of 4 KiB appends,
/// random 4 KiB reads at queue depth 1 and [`QUEUE_DEPTH`].
pub fn disk(dir: &Path, runs: u32, out: &mut Figures) -> io::Result<()> {
    let path = dir.join("disk-test");
    let chunk = vec![0x5au8; 1 << 20];
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_file(&path);
        let mut f =
            OpenOptions::new().create(true).truncate(true).write(true).read(true).open(&path)?;
        let t = Instant::now();
        for _ in 0..DISK_FILE_BYTES >> 20 {
            f.write_all(&chunk)?;
        }
        f.sync_data()?;
        writes.push(DISK_FILE_BYTES as f64 / t.elapsed().as_secs_f64() / 1e6);
        drop_cache(&f)?;
        let mut r = File::open(&path)?;
        let mut buf = vec![0u8; 1 << 20];
        let t = Instant::now();
        let mut total = 0u64;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        reads.push(total as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
    let how = format!("{} MiB in 1 MiB IOs per run", DISK_FILE_BYTES >> 20);
    out.insert(
        names::DISK_WRITE.into(),
        Measurement::of(&writes, "MB/s", &format!("{how}, timed to fdatasync")),
    );
    out.insert(
        names::DISK_READ.into(),
        Measurement::of(
            &reads,
            "MB/s",
            &format!("{how}, page cache dropped (posix_fadvise DONTNEED) first"),
        ),
    );
    random_reads(&path, runs, out)?;
    fsyncs(dir, runs, out)?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Mean ns of `RANDOM_READS` random 4 KiB preads by each of `threads` threads, and the IOPS.
fn random_run(path: &Path, threads: u32, seed: u64) -> io::Result<(f64, f64)> {
    let f = File::open(path)?;
    drop_cache(&f)?;
    // SAFETY: a valid fd; RANDOM turns readahead off so every read is one 4 KiB IO.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    let pages = DISK_FILE_BYTES / 4096;
    let start = Instant::now();
    let per_thread: Vec<io::Result<f64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                s.spawn(move || -> io::Result<f64> {
                    let mut x = seed ^ (u64::from(t) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    let mut buf = [0u8; 4096];
                    let t0 = Instant::now();
                    for _ in 0..RANDOM_READS {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        f.read_exact_at(&mut buf, (x % pages) * 4096)?;
                    }
                    Ok(t0.elapsed().as_nanos() as f64 / f64::from(RANDOM_READS))
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("panic"))))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat = 0.0;
    for r in per_thread {
        lat += r?;
    }
    Ok((lat / f64::from(threads), f64::from(threads * RANDOM_READS) / elapsed))
}

fn random_reads(path: &Path, runs: u32, out: &mut Figures) -> io::Result<()> {
    let (mut lat, mut iops1, mut iops8) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let (l, i) = random_run(path, 1, u64::from(run) + 1)?;
        lat.push(l);
        iops1.push(i);
        iops8.push(random_run(path, QUEUE_DEPTH, u64::from(run) + 100)?.1);
    }
    let how = format!("{RANDOM_READS} random 4 KiB preads per thread over a {} MiB file, page cache dropped, readahead off", DISK_FILE_BYTES >> 20);
    out.insert(names::RANDOM_QD1.into(), Measurement::of(&lat, "ns", &how));
    out.insert(names::IOPS_QD1.into(), Measurement::of(&iops1, "IOPS", &how));
    out.insert(
        names::IOPS_QD8.into(),
        Measurement::of(&iops8, "IOPS", &format!("{how}, {QUEUE_DEPTH} threads")),
    );
    Ok(())
}

fn fsyncs(dir: &Path, runs: u32, out: &mut Figures) -> io::Result<()> {
    let path = dir.join("fsync-test");
    let page = [0xa5u8; 4096];
    let mut medians = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_file(&path);
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        f.sync_all()?;
        let mut each = Vec::new();
        for _ in 0..FSYNCS {
            f.write_all(&page)?;
            let t = Instant::now();
            f.sync_all()?;
            each.push(t.elapsed().as_nanos() as f64);
        }
        medians.push(Measurement::of(&each, "ns", "").median);
    }
    let _ = std::fs::remove_file(&path);
    let how = format!("fsync after a 4 KiB append, median of {FSYNCS} per run");
    out.insert(names::FSYNC.into(), Measurement::of(&medians, "ns", &how));
    Ok(())
}

/// Loopback TCP: one stream's bandwidth (1 MiB writes), the CPU each side spends per byte
/// (the sender's and the receiver's thread CPU time: the kernel's copies into and out of the
/// socket), and the round trip of 1-byte messages.
pub fn loopback(runs: u32, out: &mut Figures) -> io::Result<()> {
    let (mut bw, mut send, mut recv, mut rtt) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (mb_s, send_ps, recv_ps) = loopback_bandwidth()?;
        bw.push(mb_s);
        send.push(send_ps);
        recv.push(recv_ps);
        rtt.push(loopback_rtt()?);
    }
    let how = format!("127.0.0.1, one stream, {} MiB in 1 MiB writes", LOOPBACK_BYTES >> 20);
    out.insert(names::LOOPBACK_MB_S.into(), Measurement::of(&bw, "MB/s", &how));
    let cpu_how = |side: &str| {
        format!("{how}: the {side} thread's CPU time (CLOCK_THREAD_CPUTIME_ID) / bytes")
    };
    out.insert(names::LOOPBACK_SEND_PS.into(), Measurement::of(&send, "ps/B", &cpu_how("sending")));
    out.insert(
        names::LOOPBACK_RECV_PS.into(),
        Measurement::of(&recv, "ps/B", &cpu_how("receiving")),
    );
    let how = format!("127.0.0.1, TCP_NODELAY, mean of {LOOPBACK_ROUND_TRIPS} 1-byte round trips");
    out.insert(names::LOOPBACK_RTT.into(), Measurement::of(&rtt, "ns", &how));
    Ok(())
}

fn pair() -> io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let a = TcpStream::connect(l.local_addr()?)?;
    let (b, _) = l.accept()?;
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((a, b))
}

/// (MB/s, sender CPU ps/B, receiver CPU ps/B) of one stream.
fn loopback_bandwidth() -> io::Result<(f64, f64, f64)> {
    let (mut a, mut b) = pair()?;
    let reader = std::thread::spawn(move || -> io::Result<(u64, u64)> {
        let c0 = thread_cpu_ns();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        while total < LOOPBACK_BYTES {
            let n = b.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        Ok((total, thread_cpu_ns() - c0))
    });
    let chunk = vec![7u8; 1 << 20];
    let t = Instant::now();
    let c0 = thread_cpu_ns();
    for _ in 0..LOOPBACK_BYTES >> 20 {
        a.write_all(&chunk)?;
    }
    let send_ns = thread_cpu_ns() - c0;
    let (total, recv_ns) = reader.join().map_err(|_| io::Error::other("reader panicked"))??;
    let bytes = total.max(1) as f64;
    let mb_s = total as f64 / t.elapsed().as_secs_f64() / 1e6;
    Ok((mb_s, send_ns as f64 * 1e3 / bytes, recv_ns as f64 * 1e3 / bytes))
}

fn loopback_rtt() -> io::Result<f64> {
    let (mut a, mut b) = pair()?;
    let echo = std::thread::spawn(move || -> io::Result<()> {
        let mut byte = [0u8; 1];
        for _ in 0..LOOPBACK_ROUND_TRIPS {
            b.read_exact(&mut byte)?;
            b.write_all(&byte)?;
        }
        Ok(())
    });
    let mut byte = [1u8; 1];
    let t = Instant::now();
    for _ in 0..LOOPBACK_ROUND_TRIPS {
        a.write_all(&byte)?;
        a.read_exact(&mut byte)?;
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(LOOPBACK_ROUND_TRIPS);
    echo.join().map_err(|_| io::Error::other("echo panicked"))??;
    Ok(ns)
}

/// Linux's writeback knobs (`/proc/sys/vm`), `MemTotal` and the temp dir's disk's
/// `read_ahead_kb`; what cannot be read is left out.
pub fn vm_settings(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    for k in [
        "dirty_ratio",
        "dirty_background_ratio",
        "dirty_expire_centisecs",
        "dirty_writeback_centisecs",
    ] {
        if let Some(v) = read(&format!("/proc/sys/vm/{k}")) {
            out.insert(k.to_string(), v);
        }
    }
    if let Ok(m) = std::fs::read_to_string("/proc/meminfo") {
        let kb = m
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        if let Some(kb) = kb {
            out.insert("mem_total_bytes".into(), kb * 1024);
        }
    }
    if let Some(v) = read_ahead_kb(dir) {
        // Linux's read_ahead_kb is the largest window: the model's read_ahead_max_kb.
        out.insert("read_ahead_max_kb".into(), v);
    }
    out
}

/// `/sys/dev/block/MAJ:MIN/queue/read_ahead_kb` of the device holding `dir` (its parent's
/// queue for a partition).
fn read_ahead_kb(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let base = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    [base.join("queue/read_ahead_kb"), base.join("../queue/read_ahead_kb")]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    #[test]
    fn small_records_are_batched_as_the_producer_frames_them() {
        let filler = crate::perf::filler(1 << 20);
        let (batches, per_record) = record_batches(&filler, 100);
        assert!(batches.iter().all(|b| b.len() <= CODEC_BLOCK_BYTES), "a batch at most batch.size");
        assert!(
            batches.len() >= (1 << 20) / CODEC_BLOCK_BYTES,
            "all the filler: {}",
            batches.len()
        );
        assert!((100.0..=112.0).contains(&per_record), "a value and its framing: {per_record}");
        let (_, per_record_1k) = record_batches(&filler, 1024);
        assert!((1024.0..=1040.0).contains(&per_record_1k), "{per_record_1k}");
    }

    /// The fit itself, on figures of the shape calibrate measured for lz4 (an earlier version
    /// timed lz4 here: on a loaded CI machine a debug build's timings say nothing).
    #[test]
    fn the_per_record_fit_separates_a_records_cost_from_its_bytes() {
        // a = 200 ps/B, b = 70 ns a record: 100-byte records 900 ps/B, 1,000-byte ones 270.
        let (a, b) = per_record_fit((100.0, 900.0), (1000.0, 270.0));
        assert!((a - 200.0).abs() < 1e-6 && (b - 70.0).abs() < 1e-9, "{a} ps/B, {b} ns");
        // No per-record cost: the same speed at both sizes.
        assert_eq!(per_record_fit((100.0, 180.0), (1000.0, 180.0)), (180.0, 0.0));
        // Noise the other way round is no cost, not a negative one.
        assert_eq!(per_record_fit((100.0, 170.0), (1000.0, 180.0)), (180.0, 0.0));
    }
}
