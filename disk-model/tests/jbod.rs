//! JBOD: several block devices behind one `SimDisk` (`SimDiskConfig::mounts`), sharing one page
//! cache. Each mount's subtree is on its own device, with its own channels, journal and flusher;
//! the cache's capacity, LRU and dirty limits are shared. On a manual clock, as `sim_disk.rs`.
//!
//! Two tasks calling at the same instant are played by putting the manual clock back: the first
//! call's completion moves the clock forward, the second call is made at the first one's start.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use disk_model::clock::Clock;
use disk_model::sim::{DiskEvent, IoCause, DEVICES_MAX};
use disk_model::{
    DeviceProfile, FaultKind, FaultRule, FileRef, OpenMode, PageCacheConfig, SimDisk,
    SimDiskConfig, Storage,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
const MOUNTS: [&str; 2] = ["m1", "m2"];

fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a manual-clock operation waited"),
    }
}

/// One channel, 1 ms per random IO, 100 MB/s: round numbers for exact timing arithmetic.
fn round_disk() -> DeviceProfile {
    DeviceProfile {
        name: "round".into(),
        channels: 1,
        sequential_access_ns: 100_000,
        random_access_ns: 1_000_000,
        read_bytes_per_sec: 100_000_000,
        write_bytes_per_sec: 100_000_000,
        flush_ns: 0,
    }
}

/// Random access plus the transfer of `bytes` on `round_disk` (writes).
fn random_write_ns(bytes: u64) -> u64 {
    let p = round_disk();
    p.random_access_ns + (bytes * 1_000_000_000).div_ceil(p.write_bytes_per_sec)
}

fn config(device: DeviceProfile, cache_bytes: u64, mounts: &[&str]) -> SimDiskConfig {
    let mut config = SimDiskConfig::new(device, 5);
    config.page_cache =
        PageCacheConfig { capacity_bytes: cache_bytes, ..PageCacheConfig::default() };
    config.mounts = mounts.iter().map(Into::into).collect();
    config
}

fn jbod(cache_bytes: u64) -> SimDisk {
    SimDisk::new(config(round_disk(), cache_bytes, &MOUNTS), Clock::manual())
}

fn now(d: &SimDisk) -> u64 {
    d.clock().now_ns()
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn open(d: &SimDisk, path: &str) -> FileRef {
    run(d.open(p(path), OpenMode::OpenOrCreate)).unwrap_or_else(|e| panic!("open {path}: {e}"))
}

/// Makes `dir` and a file in it, both durable (root and directory synced).
fn create_durable(d: &SimDisk, path: &str) -> FileRef {
    let dir = Path::new(path).parent().expect("a file in a directory");
    run(d.create_dir_all(dir)).expect("mkdir");
    run(d.sync_dir(p(""))).expect("sync root");
    let f = open(d, path);
    run(d.sync_dir(dir)).expect("sync dir");
    f
}

fn pattern(len: u64, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) | 1).collect()
}

fn read_all(f: &FileRef) -> Vec<u8> {
    run(f.read_at(0, f.len() as usize)).expect("read").to_vec()
}

/// An IO event's fields that the tests look at.
#[derive(Debug, Clone, Copy)]
struct Io {
    device: u32,
    cause: IoCause,
    inode: u64,
    submit_ns: u64,
    start_ns: u64,
    done_ns: u64,
}

fn ios(events: &[DiskEvent]) -> Vec<Io> {
    events
        .iter()
        .filter_map(|e| match *e {
            DiskEvent::Io { device, cause, inode, submit_ns, start_ns, done_ns, .. } => {
                Some(Io { device, cause, inode, submit_ns, start_ns, done_ns })
            }
            _ => None,
        })
        .collect()
}

/// Appends 1 MiB to each of two new files, then syncs both "at once" (two tasks, one instant);
/// returns each sync's duration.
fn sync_two_at_once(a: &str, b: &str) -> (u64, u64, Vec<Io>) {
    let ns = Arc::new(AtomicU64::new(0));
    let d = SimDisk::new(config(round_disk(), 64 * MIB, &MOUNTS), Clock::Manual(ns.clone()));
    let fa = create_durable(&d, a);
    let fb = create_durable(&d, b);
    run(fa.append(&pattern(MIB, 1))).expect("append");
    run(fb.append(&pattern(MIB, 2))).expect("append");
    d.drain_events();
    let t0 = now(&d);
    run(fa.sync()).expect("sync a");
    let a_ns = now(&d) - t0;
    ns.store(t0, Ordering::Release); // the second task calls at the same instant
    run(fb.sync()).expect("sync b");
    let b_ns = now(&d) - t0;
    d.check_invariants();
    (a_ns, b_ns, ios(&d.drain_events()))
}

/// Two files on two devices sync in the time one takes; on one device, in twice that.
#[test]
fn syncs_on_two_devices_run_in_parallel() {
    // The data (1 MiB, a random access: the device last wrote its journal), then the journal
    // commit (4 KiB, random: the device last wrote the data).
    let one_sync = random_write_ns(MIB) + random_write_ns(4 * KIB);
    assert_eq!(one_sync, 12_526_720);

    let (a, b, io) = sync_two_at_once("m1/a.log", "m2/b.log");
    assert_eq!((a, b), (one_sync, one_sync), "each device serves its own file");
    let devices: Vec<(u32, IoCause)> = io.iter().map(|i| (i.device, i.cause)).collect();
    assert_eq!(
        devices,
        [(1, IoCause::Fsync), (1, IoCause::Journal), (2, IoCause::Fsync), (2, IoCause::Journal)]
    );

    let (a, b, io) = sync_two_at_once("m1/a.log", "m1/b.log");
    assert_eq!((a, b), (one_sync, 2 * one_sync), "one device serves both, one after the other");
    assert!(io.iter().all(|i| i.device == 1), "{io:?}");

    // Device 0 (a top-level name that is not a mount) behaves like any other device.
    let (a, b, _) = sync_two_at_once("base/a.log", "m2/b.log");
    assert_eq!((a, b), (one_sync, one_sync));
}

/// One page cache: filling it through a device-1 file evicts device 0's clean pages, and the
/// next read of the device-0 file misses and goes to device 0.
#[test]
fn devices_share_one_page_cache() {
    let d = jbod(MIB); // 256 pages
    let x = create_durable(&d, "base/x.log");
    run(x.append(&pattern(64 * KIB, 1))).expect("append");
    run(x.sync()).expect("sync");
    let x_inode = ios(&d.drain_events()).iter().find(|i| i.cause == IoCause::Fsync).unwrap().inode;

    let misses = d.stats().cache_miss_pages;
    assert_eq!(read_all(&x), pattern(64 * KIB, 1));
    assert_eq!(d.stats().cache_miss_pages, misses, "x is cached: a hit");

    let y = create_durable(&d, "m1/y.log");
    for i in 0..32 {
        run(y.append(&pattern(64 * KIB, i))).expect("append");
    }
    run(y.sync()).expect("sync");
    let events = d.drain_events();
    let writes: Vec<Io> = ios(&events).into_iter().filter(|i| i.inode != 0).collect();
    assert!(writes.len() > 1 && writes.iter().all(|i| i.device == 1), "y's IO: {writes:?}");
    let evicted_x: u64 = events
        .iter()
        .filter_map(|e| match *e {
            DiskEvent::Evict { inode, pages, .. } if inode == x_inode => Some(pages),
            _ => None,
        })
        .sum();
    assert_eq!(evicted_x, 16, "device 1's pages pushed all of x out");

    assert_eq!(read_all(&x), pattern(64 * KIB, 1));
    assert_eq!(d.stats().cache_miss_pages, misses + 16, "x misses");
    let reads = ios(&d.drain_events());
    assert!(!reads.is_empty());
    for io in &reads {
        assert_eq!((io.device, io.inode), (0, x_inode), "x is read from device 0: {io:?}");
        assert!(matches!(io.cause, IoCause::ReadMiss | IoCause::Readahead));
    }
    assert!(d.stats().cached_bytes <= MIB);
    d.check_invariants();
}

/// A rename between devices fails with EXDEV and changes nothing; within a device it works.
#[test]
fn rename_across_mounts_is_exdev() {
    let d = jbod(64 * MIB);
    let a = create_durable(&d, "m1/a.log");
    run(a.append(&pattern(10_000, 3))).expect("append");
    run(d.create_dir_all(p("m2/dir"))).expect("mkdir");
    run(d.create_dir_all(p("m1/sub"))).expect("mkdir");
    d.drain_events();
    for (from, to) in [
        ("m1/a.log", "m2/a.log"),
        ("m1/a.log", "m2/dir/a.log"),
        ("m1/a.log", "top.log"),
        ("m1/sub", "m2/sub"),
        ("m1", "base"),
        ("m2", "m1/m2"),
    ] {
        let err = run(d.rename(p(from), p(to))).expect_err("a rename across devices");
        assert_eq!(err.raw_os_error(), Some(18), "{from} -> {to}: {err}");
        assert!(run(d.exists(p(from))).expect("exists"), "{from} is still there");
        assert!(!run(d.exists(p(to))).expect("exists"), "{to} was not made");
    }
    assert_eq!(read_all(&open(&d, "m1/a.log")), pattern(10_000, 3));

    run(d.rename(p("m1/a.log"), p("m1/sub/b.log"))).expect("a rename within a device");
    assert!(!run(d.exists(p("m1/a.log"))).expect("exists"));
    assert_eq!(read_all(&open(&d, "m1/sub/b.log")), pattern(10_000, 3));
    run(d.rename(p("m2/dir"), p("m2/moved"))).expect("a directory within a device");
    assert!(run(d.exists(p("m2/moved"))).expect("exists"));
    d.check_invariants();
}

/// Over the background threshold, every device with dirty pages has its own flusher writing
/// back: device 0's and device 1's chunks overlap in time, while each flusher writes one chunk
/// at a time.
#[test]
fn background_writeback_runs_on_each_device_in_parallel() {
    let d = jbod(64 * MIB); // background limit 6.4 MiB, dirty limit 12.8 MiB
    let x = create_durable(&d, "base/x.log");
    let y = create_durable(&d, "m1/y.log");
    d.drain_events();
    for i in 0..32 {
        run(x.append(&pattern(256 * KIB, i))).expect("append");
        run(y.append(&pattern(256 * KIB, i))).expect("append");
    }
    let background: Vec<Io> = ios(&d.drain_events())
        .into_iter()
        .filter(|i| i.cause == IoCause::BackgroundWriteback)
        .collect();
    let on = |device: u32| -> Vec<Io> {
        background.iter().copied().filter(|i| i.device == device).collect()
    };
    let (d0, d1) = (on(0), on(1));
    assert!(!d0.is_empty() && !d1.is_empty(), "both flushers wrote back: {background:?}");
    assert!(background.iter().all(|i| i.device <= 1));
    let overlapping = d0
        .iter()
        .flat_map(|a| d1.iter().map(move |b| (a, b)))
        .filter(|(a, b)| a.start_ns < b.done_ns && b.start_ns < a.done_ns)
        .count();
    assert!(overlapping > 0, "no device-0 chunk overlaps a device-1 chunk: {background:?}");
    for chunks in [&d0, &d1] {
        for w in chunks.windows(2) {
            assert!(w[1].submit_ns >= w[0].done_ns, "one chunk at a time per flusher: {w:?}");
        }
    }
    d.check_invariants();
}

/// Each device's flusher wakes at the periodic intervals and writes back its own expired inodes.
#[test]
fn periodic_writeback_runs_on_each_device() {
    let d = jbod(64 * MIB);
    let x = create_durable(&d, "base/x.log");
    let y = create_durable(&d, "m2/y.log");
    d.drain_events();
    let t0 = now(&d);
    run(x.append(&pattern(8 * KIB, 1))).expect("append");
    run(y.append(&pattern(8 * KIB, 2))).expect("append");
    d.clock().advance_ns(36_000_000_000);
    run(d.exists(p("base"))).expect("exists");
    let periodic: Vec<(u32, u64)> = ios(&d.drain_events())
        .iter()
        .filter(|i| i.cause == IoCause::PeriodicWriteback)
        .map(|i| (i.device, i.submit_ns))
        .collect();
    let wake = (t0 + 30_000_000_000).div_ceil(5_000_000_000) * 5_000_000_000;
    assert_eq!(periodic, [(0, wake), (2, wake)]);
    assert_eq!(d.stats().dirty_bytes, 0);
}

/// `sync_dir` commits the journal of the directory's device; `sync` that of the file's.
#[test]
fn sync_dir_commits_the_journal_of_its_device() {
    let d = jbod(64 * MIB);
    run(d.create_dir_all(p("m2/sub/deeper"))).expect("mkdir");
    run(d.create_dir_all(p("base"))).expect("mkdir");
    run(d.create_dir_all(p("m1"))).expect("mkdir");
    let f = open(&d, "m1/f.log");
    run(f.append(b"hello")).expect("append");
    d.drain_events();
    for (dir, device) in [("m2/sub", 2), ("", 0), ("m1", 1), ("m2", 2), ("base", 0)] {
        run(d.sync_dir(p(dir))).expect("sync_dir");
        let io = ios(&d.drain_events());
        assert_eq!(io.len(), 1, "{dir:?}: {io:?}");
        assert_eq!((io[0].cause, io[0].device, io[0].inode), (IoCause::Journal, device, 0));
    }
    run(f.sync()).expect("sync");
    let io: Vec<(IoCause, u32)> =
        ios(&d.drain_events()).iter().map(|i| (i.cause, i.device)).collect();
    assert_eq!(io, [(IoCause::Fsync, 1), (IoCause::Journal, 1)]);
    assert_eq!(d.device_of("m1/f.log"), 1);
    assert_eq!(d.device_of("m1x/f.log"), 0);
    assert_eq!(d.device_of(""), 0);
}

/// A power loss takes the whole machine: unsynced data on every device is lost, synced data on
/// every device stays.
#[test]
fn power_loss_loses_unsynced_data_on_every_device() {
    let d = jbod(64 * MIB);
    let paths = ["base/x.log", "m1/y.log", "m2/z.log"];
    for (i, path) in (0u8..).zip(paths) {
        let f = create_durable(&d, path);
        run(f.append(&pattern(100_000, i))).expect("append");
        run(f.sync()).expect("sync");
        run(f.append(&pattern(30_000, 100 + i))).expect("append (unsynced)");
    }
    let dirty = d.stats().dirty_bytes;
    assert!(dirty >= 3 * 30_000, "unsynced data on each device: {dirty}");
    d.power_loss();
    let crash = d.drain_events().into_iter().find_map(|e| match e {
        DiskEvent::Crash { lost_dirty_pages, .. } => Some(lost_dirty_pages),
        _ => None,
    });
    assert_eq!(crash, Some(dirty / 4096));
    for (i, path) in (0u8..).zip(paths) {
        assert_eq!(read_all(&open(&d, path)), pattern(100_000, i), "{path}");
    }
    d.check_invariants();
}

/// A fault rule scoped to a mount's path hits only that device's files.
#[test]
fn a_fault_rule_under_a_mount_hits_only_that_device() {
    let d = jbod(64 * MIB);
    let files = ["base/x.log", "m1/y.log", "m2/z.log"].map(|path| {
        let f = create_durable(&d, path);
        run(f.append(&pattern(20_000, 1))).expect("append");
        run(f.sync()).expect("sync");
        f
    });
    let rule = d.inject_fault(FaultRule::always(FaultKind::WriteError).under("m1"));
    let results: Vec<bool> = files.iter().map(|f| run(f.append(b"more")).is_ok()).collect();
    assert_eq!(results, [true, false, true]);
    assert!(d.clear_fault(rule));

    d.inject_fault(FaultRule::always(FaultKind::ReadError).under("m2"));
    d.drop_caches();
    let results: Vec<Option<i32>> = files
        .iter()
        .map(|f| run(f.read_at(0, 100)).err().map(|e| e.raw_os_error().unwrap_or(0)))
        .collect();
    assert_eq!(results, [None, None, Some(5)], "EIO on m2 only");
    assert_eq!(d.stats().faults_fired, 2);
}

/// A one-device disk's IO events serialize as before (no `device` key); another device's say
/// which device.
#[test]
fn io_events_name_their_device_in_json_only_off_device_0() {
    let one = SimDisk::new(config(round_disk(), 64 * MIB, &[]), Clock::manual());
    assert_eq!(one.devices(), 1);
    let f = create_durable(&one, "m1/a.log");
    run(f.append(b"abc")).expect("append");
    run(f.sync()).expect("sync");
    one.set_slow_factor(2);
    let events = one.drain_events();
    let journal = events
        .iter()
        .find(|e| matches!(e, DiskEvent::Io { cause: IoCause::Journal, .. }))
        .expect("a journal commit");
    // The first journal commit (sync_dir of the root at 0), exactly as a one-device disk wrote it.
    let expected = format!(
        "{}{}",
        r#"{"Io":{"dir":"Write","cause":"Journal","inode":0,"first_page":0,"pages":1,"#,
        r#""sequential":false,"submit_ns":0,"start_ns":0,"done_ns":1040960}}"#
    );
    assert_eq!(random_write_ns(4096), 1_040_960);
    assert_eq!(serde_json::to_string(journal).expect("json"), expected);
    for e in &events {
        let json = serde_json::to_string(e).expect("json");
        assert!(!json.contains("device"), "{json}");
    }

    let d = jbod(64 * MIB);
    assert_eq!(d.devices(), 3);
    let f = create_durable(&d, "m1/a.log");
    run(f.append(b"abc")).expect("append");
    run(f.sync()).expect("sync");
    d.set_slow_factor_of(1, 3);
    let json: Vec<String> =
        d.drain_events().iter().map(|e| serde_json::to_string(e).expect("json")).collect();
    let io_1 = json.iter().filter(|j| j.starts_with(r#"{"Io":{"device":1,"#)).count();
    assert_eq!(io_1, 3, "sync_dir(m1), the data, its journal commit: {json:#?}");
    assert!(json.iter().any(|j| j.starts_with(r#"{"Io":{"dir""#)), "sync_dir of the root");
    assert!(json.last().expect("events").ends_with(r#""device":1}}"#), "{json:?}");
}

/// Slowing one device slows only it; `set_slow_factor` slows every device.
#[test]
fn slow_factor_per_device_or_all() {
    let ns = Arc::new(AtomicU64::new(0));
    let d = SimDisk::new(config(round_disk(), 64 * MIB, &MOUNTS), Clock::Manual(ns.clone()));
    let one_sync = random_write_ns(MIB) + random_write_ns(4 * KIB);
    let files = ["base/x.log", "m1/y.log", "m2/z.log"].map(|path| create_durable(&d, path));
    let sync_all = |files: &[FileRef; 3]| -> Vec<u64> {
        let t0 = now(&d);
        let times = files
            .iter()
            .map(|f| {
                run(f.append(&pattern(MIB, 1))).expect("append");
                ns.store(t0, Ordering::Release);
                run(f.sync()).expect("sync");
                let took = now(&d) - t0;
                ns.store(t0, Ordering::Release);
                took
            })
            .collect();
        d.clock().advance_ns(1_000_000_000);
        times
    };
    d.set_slow_factor_of(1, 10);
    assert_eq!(sync_all(&files), [one_sync, 10 * one_sync, one_sync]);
    d.set_slow_factor_of(1, 1);
    d.set_slow_factor(2);
    assert_eq!(sync_all(&files), [2 * one_sync, 2 * one_sync, 2 * one_sync]);
}

/// Mounts nothing is written under change nothing: the same events and stats as one device.
#[test]
fn unused_mounts_change_nothing() {
    let trace = |mounts: &[&str]| -> (Vec<String>, String) {
        let d = SimDisk::new(config(DeviceProfile::hdd_7200(), 4 * MIB, mounts), Clock::manual());
        let x = create_durable(&d, "base/x.log");
        let y = create_durable(&d, "other/y.log");
        for i in 0..64u8 {
            run(x.append(&pattern(150_000 + u64::from(i) * 97, i))).expect("append");
            run(y.append(&pattern(100_000, i))).expect("append");
            if i % 9 == 0 {
                run(y.sync()).expect("sync");
            }
            if i % 13 == 0 {
                d.clock().advance_ns(7_000_000_000);
                run(x.read_at(0, 300_000)).expect("read");
            }
        }
        d.drop_caches();
        run(y.read_at(100_000, 500_000)).expect("read");
        d.power_loss();
        d.check_invariants();
        let events =
            d.drain_events().iter().map(|e| serde_json::to_string(e).expect("json")).collect();
        (events, serde_json::to_string(&d.stats()).expect("json"))
    };
    let one = trace(&[]);
    assert!(one.0.iter().any(|e| e.contains("BackgroundWriteback")), "the flusher ran");
    assert!(one.0.iter().any(|e| e.contains("Throttle")), "writers were throttled");
    assert_eq!(trace(&["m1", "m2", "m3"]), one);
}

#[test]
fn config_validation_and_wipe_keep_the_mounts() {
    let bad: [&[&str]; 6] = [&["a/b"], &[".."], &["/abs"], &["m1", "m1"], &[""], &["./m1"]];
    for mounts in bad {
        let c = config(round_disk(), 64 * MIB, mounts);
        assert!(c.validate().is_err(), "{mounts:?}");
        let panicked =
            std::panic::catch_unwind(|| SimDisk::new(c.clone(), Clock::manual())).is_err();
        assert!(panicked, "{mounts:?} accepted");
    }
    let many: Vec<String> = (0..DEVICES_MAX).map(|i| format!("m{i}")).collect();
    let names: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(config(round_disk(), 64 * MIB, &names).validate().is_err(), "one device too many");
    let most = config(round_disk(), 64 * MIB, &names[..names.len() - 1]);
    assert_eq!(most.validate(), Ok(()));
    assert_eq!(SimDisk::new(most, Clock::manual()).devices(), DEVICES_MAX);
    assert_eq!(config(round_disk(), 64 * MIB, &["m1/"]).validate(), Ok(()), "a trailing slash");

    let d = jbod(64 * MIB);
    let f = create_durable(&d, "m2/a.log");
    run(f.append(b"x")).expect("append");
    d.wipe();
    assert_eq!(d.devices(), 3);
    let f = create_durable(&d, "m2/a.log");
    run(f.append(b"x")).expect("append");
    run(f.sync()).expect("sync");
    assert!(ios(&d.drain_events()).iter().any(|i| i.device == 2 && i.cause == IoCause::Fsync));
    let err: io::Result<()> = run(d.rename(p("m2/a.log"), p("a.log")));
    assert_eq!(err.expect_err("EXDEV").raw_os_error(), Some(18));
}
