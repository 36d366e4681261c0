//! The simulated disk through the `Storage` interface, on a manual clock (no runtime timers: each
//! operation completes in one poll, and the clock jumps to its completion time).

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use disk_model::clock::Clock;
use disk_model::sim::{DiskEvent, IoCause};
use disk_model::{
    DeviceProfile, FaultKind, FaultRule, FileRef, OpenMode, PageCacheConfig, SimDisk,
    SimDiskConfig, Storage,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Runs a future that must not wait on anything (true of every operation on a manual clock).
fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a manual-clock operation waited"),
    }
}

fn disk_with(device: DeviceProfile, cache_bytes: u64, seed: u64) -> SimDisk {
    let page_cache = PageCacheConfig { capacity_bytes: cache_bytes, ..PageCacheConfig::default() };
    SimDisk::new(SimDiskConfig { device, page_cache, seed, mounts: Vec::new() }, Clock::manual())
}

fn now(d: &SimDisk) -> u64 {
    d.clock().now_ns()
}

fn open(d: &SimDisk, path: &str) -> FileRef {
    run(d.open(Path::new(path), OpenMode::OpenOrCreate)).expect("open")
}

/// Creates `dir/name`, making the directory and the file's entry durable.
fn create_durable(d: &SimDisk, dir: &str, name: &str) -> FileRef {
    run(d.create_dir_all(Path::new(dir))).expect("mkdir");
    run(d.sync_dir(Path::new(""))).expect("sync root");
    let f = open(d, &format!("{dir}/{name}"));
    run(d.sync_dir(Path::new(dir))).expect("sync dir");
    f
}

fn pattern(len: u64, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) | 1).collect()
}

fn read_all(f: &FileRef) -> Vec<u8> {
    run(f.read_at(0, f.len() as usize)).expect("read").to_vec()
}

/// Time an operation takes, in ns of virtual time.
fn timed<T>(d: &SimDisk, f: impl Future<Output = T>) -> (T, u64) {
    let start = now(d);
    let out = run(f);
    (out, now(d) - start)
}

#[test]
fn writes_are_absorbed_then_throttled_to_device_speed() {
    let d = disk_with(DeviceProfile::hdd_7200(), 64 * MIB, 1);
    let f = create_durable(&d, "t-0", "00.log");
    let chunk = pattern(64 * KIB, 7);
    let t0 = now(&d);
    let mut first_throttled_at = None;
    for i in 0..512u64 {
        let (pos, elapsed) = timed(&d, f.append(&chunk));
        assert_eq!(pos.expect("append"), i * 64 * KIB);
        let written = (i + 1) * 64 * KIB;
        if written <= 64 * MIB / 5 {
            assert_eq!(elapsed, 0, "append {i} below dirty_ratio must not wait");
        } else if elapsed > 0 && first_throttled_at.is_none() {
            first_throttled_at = Some(written);
        }
    }
    let total_ns = now(&d) - t0;
    let stats = d.stats();
    assert!(first_throttled_at.is_some(), "writes past dirty_ratio were throttled");
    assert!(stats.throttled_writes > 0 && stats.throttle_ns > 0);
    // 32 MiB written, 12.8 MiB may stay dirty: at least ~19 MiB had to reach a 180 MB/s disk.
    let must_write = 32 * MIB - 64 * MIB / 5;
    let min_ns = must_write * 1_000_000_000 / 180_000_000;
    assert!(total_ns >= min_ns * 95 / 100, "took {total_ns} ns, device needs {min_ns}");
    assert!(total_ns <= 32 * MIB * 1_000_000_000 / 180_000_000 * 2, "took {total_ns} ns: too slow");
    assert!(stats.dirty_bytes <= 64 * MIB / 5, "dirty {} above the limit", stats.dirty_bytes);
    assert!(stats.written_back_bytes >= must_write);
    d.check_invariants();
}

#[test]
fn rereading_recent_writes_hits_the_cache() {
    let d = disk_with(DeviceProfile::hdd_7200(), 64 * MIB, 1);
    let f = create_durable(&d, "t-0", "00.log");
    let data = pattern(MIB, 3);
    run(f.append(&data)).expect("append");
    let (read, elapsed) = timed(&d, f.read_at(0, MIB as usize));
    assert_eq!(read.expect("read"), data);
    assert_eq!(elapsed, 0);
    let s = d.stats();
    assert_eq!(s.cache_miss_pages, 0);
    assert_eq!(s.cache_hit_pages, MIB / 4096);
    assert_eq!(s.device_reads, 0);
}

#[test]
fn cold_sequential_read_uses_readahead() {
    let d = disk_with(DeviceProfile::sata_ssd(), 64 * MIB, 1);
    let f = create_durable(&d, "t-0", "00.log");
    let data = pattern(8 * MIB, 5);
    run(f.append(&data)).expect("append");
    run(f.sync()).expect("sync");
    d.drop_caches();
    let before = d.stats();
    let mut out = Vec::new();
    let (mut stalled, mut reads) = (0, 0);
    while (out.len() as u64) < 8 * MIB {
        let (chunk, elapsed) = timed(&d, f.read_at(out.len() as u64, 16 * KIB as usize));
        out.extend_from_slice(&chunk.expect("read"));
        reads += 1;
        if elapsed > 0 {
            stalled += 1;
        }
    }
    assert_eq!(out, data);
    let s = d.stats();
    let pages = 8 * MIB / 4096;
    assert!(s.readahead_pages > pages / 2, "readahead {} of {pages} pages", s.readahead_pages);
    assert!(
        s.cache_miss_pages - before.cache_miss_pages < pages / 10,
        "misses {}",
        s.cache_miss_pages
    );
    assert!(
        s.device_reads - before.device_reads < reads / 4,
        "{} device reads for {reads} reads",
        s.device_reads
    );
    assert!(stalled < reads / 10, "{stalled} of {reads} reads waited for the device");
    let readahead_ios = d
        .drain_events()
        .iter()
        .filter(|e| matches!(e, DiskEvent::Io { cause: IoCause::Readahead, .. }))
        .count();
    assert!(readahead_ios > 0, "async readahead issued its own IOs");
}

#[test]
fn periodic_writeback_expires_old_dirty_data() {
    let d = disk_with(DeviceProfile::nvme(), 64 * MIB, 1);
    let f = create_durable(&d, "t-0", "00.log");
    d.drain_events();
    let t0 = now(&d);
    run(f.append(&pattern(MIB, 1))).expect("append");
    assert_eq!(now(&d), t0, "absorbed by the cache");
    d.clock().advance_ns(20_000_000_000);
    run(d.exists(Path::new("t-0"))).expect("exists");
    assert_eq!(d.stats().written_back_bytes, 0, "not expired after 20 s");
    assert_eq!(d.stats().dirty_bytes, MIB);
    d.clock().advance_ns(16_000_000_000);
    run(d.exists(Path::new("t-0"))).expect("exists");
    assert_eq!(d.stats().written_back_bytes, MIB);
    assert_eq!(d.stats().dirty_bytes, 0);
    let submits: Vec<u64> = d
        .drain_events()
        .iter()
        .filter_map(|e| match e {
            DiskEvent::Io { cause: IoCause::PeriodicWriteback, submit_ns, .. } => Some(*submit_ns),
            _ => None,
        })
        .collect();
    // Dirtied at t0 + ε, expired 30 s later, picked up at the next 5 s wake-up.
    let expected = (t0 + 30_000_000_000).div_ceil(5_000_000_000) * 5_000_000_000;
    assert_eq!(submits, vec![expected]);
    // And the data survives a power loss now, without any fsync.
    d.power_loss();
    let f = open(&d, "t-0/00.log");
    assert_eq!(read_all(&f), pattern(MIB, 1));
}

#[test]
fn power_loss_keeps_synced_data_and_loses_only_unsynced() {
    let d = disk_with(DeviceProfile::hdd_7200(), 64 * MIB, 9);
    d.set_torn_writes(true);
    let f = create_durable(&d, "t-0", "00.log");
    let a = pattern(100_000, 1);
    let b = pattern(50_000, 2);
    run(f.append(&a)).expect("append");
    run(f.sync()).expect("sync");
    run(f.append(&b)).expect("append");
    d.power_loss();
    assert_eq!(
        run(f.read_at(0, 10)).map_err(|e| e.kind()),
        Err(io::ErrorKind::Other),
        "stale handle"
    );
    let f = open(&d, "t-0/00.log");
    let got = read_all(&f);
    assert_eq!(got.len(), a.len(), "unsynced, never written back: the tail is gone");
    assert_eq!(got, a);
    let s = d.stats();
    assert_eq!(s.power_losses, 1);
    assert!(s.power_loss_lost_pages > 0);
    d.check_invariants();
}

#[test]
fn power_loss_mid_writeback_keeps_a_prefix_and_tears_one_page() {
    let mut torn_total = 0;
    for seed in 0..8 {
        let d = disk_with(DeviceProfile::nvme(), 64 * MIB, seed);
        d.set_torn_writes(true);
        let f = create_durable(&d, "t-0", "00.log");
        let data = pattern(8 * MIB, 3);
        // Past dirty_background_ratio (6.4 MiB): the flusher starts a 4 MiB chunk (~1.7 ms).
        run(f.append(&data)).expect("append");
        d.clock().advance_ns(1_000_000);
        d.power_loss();
        let s = d.stats();
        torn_total += s.torn_pages;
        assert!(s.torn_pages <= 1);
        let got = read_all(&open(&d, "t-0/00.log"));
        assert!(
            got.len() > MIB as usize && got.len() < 4 * MIB as usize,
            "{} bytes landed",
            got.len()
        );
        assert_eq!(got.len() % 512, 0, "landed whole sectors");
        assert!(got[..] == data[..got.len()], "a prefix of what was written");
        d.check_invariants();
    }
    assert!(torn_total > 0, "some seeds tear a page");
}

#[test]
fn power_loss_undoes_unsynced_directory_operations() {
    let d = disk_with(DeviceProfile::nvme(), 64 * MIB, 1);
    let kept = create_durable(&d, "t-0", "00.log");
    run(kept.append(b"kept")).expect("append");
    run(kept.sync()).expect("sync");
    let lost = open(&d, "t-0/01.log");
    run(lost.append(b"lost")).expect("append");
    run(lost.sync()).expect("data synced, but the entry is not");
    run(d.rename(Path::new("t-0/00.log"), Path::new("t-0/renamed.log"))).expect("rename");
    d.power_loss();
    let names: Vec<String> =
        run(d.list_dir(Path::new("t-0"))).expect("list").into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec!["00.log".to_string()], "create and rename undone");
    assert_eq!(read_all(&open(&d, "t-0/00.log")), b"kept");

    // Made durable with sync_dir, they survive.
    run(d.rename(Path::new("t-0/00.log"), Path::new("t-0/renamed.log"))).expect("rename");
    run(d.sync_dir(Path::new("t-0"))).expect("sync_dir");
    d.power_loss();
    let names: Vec<String> =
        run(d.list_dir(Path::new("t-0"))).expect("list").into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec!["renamed.log".to_string()]);
    assert_eq!(read_all(&open(&d, "t-0/renamed.log")), b"kept");
    d.check_invariants();
}

#[test]
fn process_crash_keeps_everything_appended() {
    let d = disk_with(DeviceProfile::hdd_7200(), 64 * MIB, 1);
    run(d.create_dir_all(Path::new("t-0"))).expect("mkdir");
    let f = open(&d, "t-0/00.log");
    let data = pattern(300_000, 4);
    run(f.append(&data)).expect("append");
    d.crash_process();
    assert_eq!(run(f.append(b"x")).map_err(|e| e.kind()), Err(io::ErrorKind::Other));
    assert_eq!(
        run(f.sync()).map_err(|e| e.to_string()),
        Err("stale handle after crash".to_string())
    );
    let f = open(&d, "t-0/00.log");
    assert_eq!(read_all(&f), data, "never synced, never written back, still there");
    assert!(d.stats().dirty_bytes > 0, "the page cache survived the crash");
}

#[test]
fn fsyncgate_failed_pages_are_lost_after_eviction() {
    let d = disk_with(DeviceProfile::nvme(), 64 * MIB, 1);
    let f = create_durable(&d, "t-0", "00.log");
    run(f.append(b"AAAA")).expect("append");
    run(f.sync()).expect("sync");
    run(f.append(b"BBBB")).expect("append");
    let rule = d.inject_fault(FaultRule::always(FaultKind::SyncError).under("t-0").times(1));
    let err = run(f.sync()).expect_err("sync fails");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(d.clear_fault(rule));
    // The retry "succeeds": the pages are clean, nothing left to write (fsyncgate).
    run(f.sync()).expect("second sync reports success");
    assert_eq!(read_all(&f), b"AAAABBBB", "still cached");
    d.drop_caches();
    assert_eq!(read_all(&f), b"AAAA\0\0\0\0", "evicted: the device never got BBBB");
    assert_eq!(d.stats().fsyncgate_dropped_pages, 1);

    // The same through a power loss, with no successful sync after the failure.
    let g = create_durable(&d, "t-1", "00.log");
    run(g.append(b"CCCC")).expect("append");
    run(g.sync()).expect("sync");
    run(g.append(b"DDDD")).expect("append");
    d.inject_fault(FaultRule::always(FaultKind::SyncError).under("t-1").times(1));
    run(g.sync()).expect_err("sync fails");
    d.power_loss();
    assert_eq!(read_all(&open(&d, "t-1/00.log")), b"CCCC");
}

#[test]
fn enospc_from_space_limit_and_rule() {
    let d = disk_with(DeviceProfile::nvme(), 64 * MIB, 1);
    let f = create_durable(&d, "t-0", "00.log");
    d.set_space_limit_bytes(Some(10_000));
    run(f.append(&[1; 8000])).expect("fits");
    let err = run(f.append(&[2; 4000])).expect_err("full");
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(f.len(), 8000, "nothing written");
    run(f.truncate(1000)).expect("truncate frees space");
    run(f.append(&[2; 4000])).expect("fits again");
    d.set_space_limit_bytes(None);

    let g = create_durable(&d, "t-1", "00.log");
    d.inject_fault(FaultRule::always(FaultKind::NoSpace).under("t-1"));
    assert_eq!(run(g.append(b"x")).map_err(|e| e.kind()), Err(io::ErrorKind::StorageFull));
    run(f.append(b"x")).expect("other prefix unaffected");
}

#[test]
fn eio_on_read_miss_and_on_write() {
    let d = disk_with(DeviceProfile::nvme(), 64 * MIB, 1);
    let f = create_durable(&d, "t-0", "00.log");
    run(f.append(&pattern(10_000, 1))).expect("append");
    run(f.sync()).expect("sync");
    let rule = d.inject_fault(FaultRule::always(FaultKind::ReadError));
    assert_eq!(run(f.read_at(0, 100)).expect("cache hit is fine").len(), 100);
    d.drop_caches();
    let err = run(f.read_at(0, 100)).expect_err("miss fails");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    d.clear_fault(rule);
    assert_eq!(run(f.read_at(0, 100)).expect("healthy again").len(), 100);

    d.inject_fault(FaultRule::always(FaultKind::WriteError).times(1));
    assert_eq!(run(f.append(b"lost")).map_err(|e| e.raw_os_error()), Err(Some(libc::EIO)));
    assert_eq!(f.len(), 10_000);
    assert_eq!(run(f.append(b"ok")).expect("second append"), 10_000);
    assert_eq!(d.stats().faults_fired, 2);
}

#[test]
fn latent_corruption_shows_on_a_cache_miss() {
    let d = disk_with(DeviceProfile::nvme(), 64 * MIB, 1);
    let f = create_durable(&d, "t-0", "00.log");
    let data = pattern(10_000, 1);
    run(f.append(&data)).expect("append");
    run(f.sync()).expect("sync");
    assert_eq!(d.corrupt("t-0/00.log", 5000, 16).expect("corrupt"), 16);
    assert_eq!(read_all(&f), data, "the cached copy is still good");
    d.drop_caches();
    let got = read_all(&f);
    assert_eq!(got.len(), data.len());
    for (i, (&g, &w)) in got.iter().zip(&data).enumerate() {
        if (5000..5016).contains(&i) {
            assert_eq!(g, w ^ 0xFF);
        } else {
            assert_eq!(g, w);
        }
    }
    let (path, pos) = d.corrupt_random_sector("t-0").expect("a sector");
    assert_eq!(path, Path::new("t-0/00.log"));
    assert!(pos < 10_000 && pos % 512 == 0);
}

#[test]
fn slow_device_multiplies_latency() {
    let d = disk_with(DeviceProfile::nvme(), 64 * MIB, 1);
    let f = create_durable(&d, "t-0", "00.log");
    run(f.append(&pattern(4096, 1))).expect("append");
    run(f.sync()).expect("sync");
    d.drop_caches();
    let (_, healthy_ns) = timed(&d, f.read_at(0, 4096));
    d.set_slow_factor(10);
    d.drop_caches();
    let (_, slow_ns) = timed(&d, f.read_at(0, 4096));
    assert_eq!(slow_ns, healthy_ns * 10);
}

#[test]
fn hdd_sequential_and_random_differ_by_orders_of_magnitude_nvme_is_microseconds() {
    let d = disk_with(DeviceProfile::hdd_7200(), 256 * MIB, 1);
    let f = create_durable(&d, "t-0", "00.log");
    let size = 64 * MIB;
    let chunk = pattern(MIB, 1);
    for _ in 0..size / MIB {
        run(f.append(&chunk)).expect("append");
    }
    run(f.sync()).expect("sync");
    d.drop_caches();
    let (_, seq_ns) = timed(&d, async {
        let mut pos = 0;
        while pos < size {
            run(f.read_at(pos, 64 * KIB as usize)).expect("read");
            pos += 64 * KIB;
        }
    });
    let seq_bytes_per_sec = size * 1_000_000_000 / seq_ns;
    assert!(seq_bytes_per_sec > 150_000_000, "sequential {seq_bytes_per_sec} B/s");
    d.drop_caches();
    let reads = 50;
    let (_, rnd_ns) = timed(&d, async {
        for i in 0..reads {
            // 50 places 1.3 MiB apart (beyond any readahead window), visited out of order.
            let pos = (i * 17 % reads) * (size / reads / 4096 * 4096);
            run(f.read_at(pos, 4096)).expect("read");
        }
    });
    let per_read_ns = rnd_ns / reads;
    assert!(per_read_ns > 10_000_000, "random 4 KiB read on HDD takes {per_read_ns} ns");
    let rnd_bytes_per_sec = reads * 4096 * 1_000_000_000 / rnd_ns;
    assert!(
        seq_bytes_per_sec > 100 * rnd_bytes_per_sec,
        "{seq_bytes_per_sec} vs {rnd_bytes_per_sec}"
    );

    let n = disk_with(DeviceProfile::nvme(), 64 * MIB, 1);
    let g = create_durable(&n, "t-0", "00.log");
    run(g.append(&pattern(4096, 1))).expect("append");
    run(g.sync()).expect("sync");
    n.drop_caches();
    let (_, ns) = timed(&n, g.read_at(0, 4096));
    assert!((15_000..60_000).contains(&ns), "NVMe 4 KiB read took {ns} ns");
}

/// A fixed workload with probabilistic faults; returns its event log.
fn scripted(seed: u64) -> Vec<DiskEvent> {
    let d = disk_with(DeviceProfile::sata_ssd(), MIB, seed);
    d.set_torn_writes(true);
    d.inject_fault(FaultRule::always(FaultKind::WriteError).with_probability(0.2));
    d.inject_fault(FaultRule::always(FaultKind::SyncError).with_probability(0.2));
    let f = create_durable(&d, "t-0", "00.log");
    for i in 0..200u64 {
        let _ = run(f.append(&pattern(1000 + i * 37, i as u8)));
        if i % 10 == 0 {
            let _ = run(f.sync());
        }
        if i % 7 == 0 {
            let _ = run(f.read_at(i * 100, 5000));
        }
        d.clock().advance_ns(1_000_000);
    }
    d.corrupt_random_sector("");
    d.power_loss();
    d.check_invariants();
    d.drain_events()
}

#[test]
fn same_seed_same_events_different_seed_different_events() {
    let a = scripted(42);
    let b = scripted(42);
    assert!(a.len() > 100);
    assert_eq!(a, b);
    let c = scripted(43);
    assert_ne!(a, c);
}

#[test]
fn a_wiped_disk_is_empty_and_its_old_handles_are_stale() {
    let d = disk_with(DeviceProfile::nvme(), 64 * MIB, 1);
    let f = create_durable(&d, "logs", "a.log");
    run(f.append(&pattern(3 * 4096 + 10, 7))).expect("append");
    run(f.sync()).expect("sync");
    d.wipe();
    d.check_invariants();
    assert!(run(f.read_at(0, 10)).is_err(), "an old handle is stale");
    assert!(run(f.append(b"x")).is_err(), "an old handle cannot write");
    drop(f); // closing a stale handle changes nothing
    let gone = run(d.open(Path::new("logs/a.log"), OpenMode::Existing));
    assert_eq!(gone.err().map(|e| e.kind()), Some(io::ErrorKind::NotFound));
    // The same device, usable again.
    let g = create_durable(&d, "logs", "b.log");
    run(g.append(&pattern(100, 3))).expect("append after wipe");
    assert_eq!(read_all(&g), pattern(100, 3));
    d.check_invariants();
}
