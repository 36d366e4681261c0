//! Freeing unreachable files: a renamed-over or removed file's storage (pages, writeback in
//! flight, used bytes) goes away as soon as no live or durable directory entry and no handle
//! refers to it — however many other files exist — and nothing reachable is ever freed.
//!
//! `check_invariants` recomputes reachability from scratch and compares it with what the model
//! kept, so every step of these tests also checks the collector against a full sweep.
//!
//! `bench_atomic_checkpoint_writes` (ignored) measures the CPU time of the broker's atomic
//! checkpoint pattern at 100, 1,000 and 10,000 partitions:
//! `cargo test --release -p disk-model --test sim_gc -- --ignored --nocapture`.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use disk_model::clock::Clock;
use disk_model::sim::DiskEvent;
use disk_model::{
    DeviceProfile, FileRef, OpenMode, PageCacheConfig, SimDisk, SimDiskConfig, Storage,
};
use proptest::prelude::*;

const PAGE: u64 = 4096;
const MIB: u64 = 1024 * 1024;

fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a manual-clock operation waited"),
    }
}

fn disk(cache_bytes: u64, seed: u64) -> SimDisk {
    SimDisk::new(
        SimDiskConfig {
            device: DeviceProfile::nvme(),
            page_cache: PageCacheConfig {
                capacity_bytes: cache_bytes,
                ..PageCacheConfig::default()
            },
            seed,
            mounts: Vec::new(),
        },
        Clock::manual(),
    )
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn open(d: &SimDisk, path: &str, mode: OpenMode) -> FileRef {
    run(d.open(p(path), mode)).unwrap_or_else(|e| panic!("open {path}: {e}"))
}

fn freed(events: &[DiskEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            DiskEvent::Freed { inode, .. } => Some(*inode),
            _ => None,
        })
        .collect()
}

/// The broker's atomic write: a temporary file, synced, renamed over the target, directory synced.
fn atomic_write(d: &SimDisk, dir: &str, name: &str, data: &[u8]) {
    let tmp = format!("{dir}/{name}.tmp");
    let f = open(d, &tmp, OpenMode::CreateNew);
    run(f.append(data)).expect("append");
    run(f.sync()).expect("sync");
    drop(f);
    run(d.rename(p(&tmp), p(&format!("{dir}/{name}")))).expect("rename");
    run(d.sync_dir(p(dir))).expect("sync_dir");
}

/// Many partitions, each with a log (dirty and clean pages) and a checkpoint; the checkpoints
/// are rewritten atomically, then some partitions are deleted: every replaced or deleted file's
/// pages leave the cache, and the live files' pages all stay.
#[test]
fn renamed_over_and_removed_files_are_freed_among_many() {
    const PARTITIONS: usize = 300;
    let d = disk(256 * MIB, 3);
    run(d.create_dir_all(p("data"))).expect("mkdir");
    let mut logs = Vec::new();
    for i in 0..PARTITIONS {
        let dir = format!("data/t-{i}");
        run(d.create_dir_all(p(&dir))).expect("mkdir");
        let log = open(&d, &format!("{dir}/00.log"), OpenMode::CreateNew);
        // Three pages synced (clean), then one more dirty.
        run(log.append(&[i as u8; 3 * PAGE as usize])).expect("append");
        run(log.sync()).expect("sync");
        run(log.append(&[1u8; 100])).expect("append");
        logs.push(log);
    }
    run(d.sync_dir(p("data"))).expect("sync_dir");
    for i in 0..PARTITIONS {
        let dir = format!("data/t-{i}");
        run(d.sync_dir(p(&dir))).expect("sync_dir");
        atomic_write(&d, &dir, "cp", &[2u8; 2 * PAGE as usize]);
    }
    d.check_invariants();
    d.drain_events();
    // Live: per partition 4 log pages (1 dirty) + 2 checkpoint pages.
    let s = d.stats();
    assert_eq!(s.cached_bytes, PARTITIONS as u64 * 6 * PAGE);
    assert_eq!(s.dirty_bytes, PARTITIONS as u64 * PAGE);

    // Rewrite every checkpoint with one page: the old two-page inodes are still durable entries
    // after the rename; each goes at its directory's sync.
    for i in 0..PARTITIONS {
        let dir = format!("data/t-{i}");
        atomic_write(&d, &dir, "cp", &[3u8; PAGE as usize]);
        if i % 37 == 0 {
            d.check_invariants();
        }
    }
    d.check_invariants();
    let events = d.drain_events();
    assert_eq!(freed(&events).len(), PARTITIONS, "one old checkpoint per partition");
    let s = d.stats();
    assert_eq!(s.cached_bytes, PARTITIONS as u64 * 5 * PAGE);
    assert_eq!(s.dirty_bytes, PARTITIONS as u64 * PAGE);

    // An unsynced checkpoint rewrite, renamed over before anyone synced the directory: the
    // intermediate inode (live entry only) goes at once, at the next rename.
    let dir = "data/t-7";
    let f = open(&d, &format!("{dir}/cp.tmp"), OpenMode::CreateNew);
    run(f.append(&[4u8; 10])).expect("append");
    drop(f);
    run(d.rename(p(&format!("{dir}/cp.tmp")), p(&format!("{dir}/cp")))).expect("rename");
    assert!(freed(&d.drain_events()).is_empty(), "the old one is still durable");
    let f = open(&d, &format!("{dir}/cp.tmp"), OpenMode::CreateNew);
    run(f.append(&[5u8; 10])).expect("append");
    run(f.sync()).expect("sync");
    drop(f);
    run(d.rename(p(&format!("{dir}/cp.tmp")), p(&format!("{dir}/cp")))).expect("rename");
    assert_eq!(freed(&d.drain_events()).len(), 1, "the unsynced intermediate one");
    run(d.sync_dir(p(dir))).expect("sync_dir");
    assert_eq!(freed(&d.drain_events()).len(), 1, "the durable one");
    d.check_invariants();

    // Delete half the partitions, their logs still open: nothing is freed until the handles go.
    let dirty_before = d.stats().dirty_bytes;
    for i in (0..PARTITIONS).step_by(2) {
        run(d.remove_dir_all(p(&format!("data/t-{i}")))).expect("rmdir");
    }
    run(d.sync_dir(p("data"))).expect("sync_dir");
    let events = d.drain_events();
    // The directory and its checkpoint; the log is open.
    assert_eq!(freed(&events).len(), PARTITIONS);
    d.check_invariants();
    // Still readable through the handle.
    assert_eq!(run(logs[0].read_at(0, 4)).expect("read").as_ref(), &[0u8; 4]);
    let mut kept = Vec::new();
    for (i, log) in logs.into_iter().enumerate() {
        if i % 2 == 0 {
            drop(log);
            assert_eq!(freed(&d.drain_events()).len(), 1, "log {i} freed when closed");
        } else {
            kept.push(log);
        }
    }
    d.check_invariants();
    let s = d.stats();
    let live = PARTITIONS as u64 / 2;
    assert_eq!(s.cached_bytes, live * 5 * PAGE);
    assert_eq!(s.dirty_bytes, live * PAGE);
    assert!(s.dirty_bytes < dirty_before);
    // The live files read back intact.
    for (k, log) in kept.iter().enumerate() {
        let i = 2 * k + 1;
        let data = run(log.read_at(0, 3 * PAGE as usize)).expect("read");
        assert!(data.iter().all(|&b| b == i as u8));
    }
}

/// A process crash closes every handle: unlinked-but-open files go then; a power loss brings
/// back durable entries and frees what only unsynced entries held.
#[test]
fn crash_and_power_loss_free_exactly_the_unreachable() {
    let d = disk(64 * MIB, 5);
    run(d.create_dir_all(p("a/b"))).expect("mkdir");
    run(d.sync_dir(p(""))).expect("sync");
    run(d.sync_dir(p("a"))).expect("sync");
    let kept = open(&d, "a/b/kept", OpenMode::CreateNew);
    run(kept.append(&[1u8; 5000])).expect("append");
    run(kept.sync()).expect("sync");
    run(d.sync_dir(p("a/b"))).expect("sync");
    let gone = open(&d, "a/b/gone", OpenMode::CreateNew);
    run(gone.append(&[2u8; 5000])).expect("append");
    run(d.remove_file(p("a/b/gone"))).expect("rm");
    assert!(freed(&d.drain_events()).is_empty(), "open");
    d.check_invariants();
    d.crash_process();
    assert_eq!(freed(&d.drain_events()).len(), 1, "the unlinked open file");
    d.check_invariants();
    drop((kept, gone)); // stale: nothing happens

    // An unsynced file in an unsynced directory, and a synced file removed unsynced.
    run(d.create_dir_all(p("a/new"))).expect("mkdir");
    let f = open(&d, "a/new/f", OpenMode::CreateNew);
    run(f.append(&[3u8; 100])).expect("append");
    run(f.sync()).expect("sync");
    run(d.sync_dir(p("a/new"))).expect("sync");
    drop(f);
    run(d.remove_file(p("a/b/kept"))).expect("rm");
    assert!(freed(&d.drain_events()).is_empty());
    d.power_loss();
    // a/new was never in a's durable entries: it and its file go; kept comes back.
    assert_eq!(freed(&d.drain_events()).len(), 2);
    d.check_invariants();
    let kept = open(&d, "a/b/kept", OpenMode::Existing);
    assert_eq!(kept.len(), 5000);
    assert_eq!(d.stats().cached_bytes, 0);
}

/// Directories can form a cycle through live and durable entries (a renamed directory the old
/// parent still holds durably); once the cycle is cut off from the root, all of it is freed.
#[test]
fn a_cycle_through_durable_entries_is_freed_when_unreachable() {
    let d = disk(64 * MIB, 9);
    run(d.create_dir_all(p("a/b"))).expect("mkdir");
    run(d.sync_dir(p(""))).expect("sync");
    run(d.sync_dir(p("a"))).expect("sync");
    let f = open(&d, "a/b/f", OpenMode::CreateNew);
    run(f.append(&[1u8; 100])).expect("append");
    drop(f);
    // a durably holds b; b moves to the root, then a moves into b: a -> b (durable), b -> a.
    run(d.rename(p("a/b"), p("b"))).expect("rename");
    run(d.rename(p("a"), p("b/a"))).expect("rename");
    run(d.sync_dir(p(""))).expect("sync");
    d.check_invariants();
    assert!(freed(&d.drain_events()).is_empty());
    // Cut the cycle off: remove b (live), then sync the root (durable).
    run(d.remove_dir_all(p("b"))).expect("rmdir");
    assert!(freed(&d.drain_events()).is_empty(), "the root still holds b durably");
    run(d.sync_dir(p(""))).expect("sync");
    let mut got = freed(&d.drain_events());
    got.sort_unstable();
    assert_eq!(got.len(), 3, "a, b and f: {got:?}");
    d.check_invariants();
    assert_eq!(d.stats().cached_bytes, 0);
    assert_eq!(d.stats().used_bytes, 0);
}

/// A file named by two directories (durably by the one it was renamed out of), both of which a
/// power loss cuts off from the root in the same stroke: all three go.
#[test]
fn a_file_named_in_two_lost_directories_is_freed_at_power_loss() {
    let d = disk(64 * MIB, 13);
    run(d.create_dir_all(p("a"))).expect("mkdir");
    run(d.create_dir_all(p("b"))).expect("mkdir");
    let f = open(&d, "a/x", OpenMode::CreateNew);
    run(f.append(&[1u8; 100])).expect("append");
    run(f.sync()).expect("sync");
    drop(f);
    run(d.sync_dir(p("a"))).expect("sync");
    run(d.rename(p("a/x"), p("b/x"))).expect("rename");
    run(d.sync_dir(p("b"))).expect("sync");
    run(d.rename(p("b/x"), p("b/y"))).expect("rename");
    d.check_invariants();
    assert!(freed(&d.drain_events()).is_empty());
    // The root never synced a or b.
    d.power_loss();
    assert_eq!(freed(&d.drain_events()).len(), 3, "a, b and x");
    d.check_invariants();
    assert_eq!(d.stats().used_bytes, 0);
}

#[derive(Debug, Clone)]
enum NsOp {
    Mkdir(u8),
    Create(u8, u8, u16),
    Rename(u8, u8, u8, u8),
    RenameDir(u8, u8),
    Remove(u8, u8),
    RemoveDir(u8),
    SyncDir(u8),
    SyncFile(u8),
    Close(u8),
    Advance(u32),
    Crash,
    PowerLoss,
}

/// Directories that can be renamed into each other's places (and into cycles: `a/b` to `b`,
/// then `a` to `b/a`, while `a` still holds `b` durably).
const DIRS: [&str; 6] = ["", "a", "b", "a/b", "b/a", "a/b/a"];
const NAMES: [&str; 3] = ["x", "y", "z"];

fn ns_op() -> impl Strategy<Value = NsOp> {
    // Mostly the shallow directories, which exist most of the time.
    let dir = || prop_oneof![3 => Just(0u8), 3 => 1..3u8, 2 => 3..DIRS.len() as u8];
    let name = || 0..NAMES.len() as u8;
    prop_oneof![
        3 => dir().prop_map(NsOp::Mkdir),
        6 => (dir(), name(), 1..20_000u16).prop_map(|(d, n, len)| NsOp::Create(d, n, len)),
        5 => (dir(), name(), dir(), name()).prop_map(|(a, b, c, e)| NsOp::Rename(a, b, c, e)),
        3 => (dir(), dir()).prop_map(|(a, b)| NsOp::RenameDir(a, b)),
        3 => (dir(), name()).prop_map(|(d, n)| NsOp::Remove(d, n)),
        1 => dir().prop_map(NsOp::RemoveDir),
        5 => dir().prop_map(NsOp::SyncDir),
        2 => any::<u8>().prop_map(NsOp::SyncFile),
        3 => any::<u8>().prop_map(NsOp::Close),
        2 => (0..40_000u32).prop_map(NsOp::Advance),
        1 => Just(NsOp::Crash),
        1 => Just(NsOp::PowerLoss),
    ]
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Random namespace operations (errors are fine: they only must not break the collector); with
/// `check`, the full-sweep comparison after every step. Returns the events.
fn run_ns_ops(seed: u64, ops: &[NsOp], check: bool) -> Vec<DiskEvent> {
    let d = disk(64 * PAGE, seed); // small: evictions and background writeback too
    let clock = d.clock().clone();
    let mut handles: Vec<FileRef> = Vec::new();
    for op in ops {
        match *op {
            NsOp::Mkdir(dir) => {
                let _ = run(d.create_dir_all(p(DIRS[dir as usize])));
            }
            NsOp::Create(dir, n, len) => {
                let path = join(DIRS[dir as usize], NAMES[n as usize]);
                if let Ok(f) = run(d.open(p(&path), OpenMode::OpenOrCreate)) {
                    let _ = run(f.append(&vec![n; len as usize]));
                    handles.push(f);
                }
            }
            NsOp::Rename(a, b, c, e) => {
                let from = join(DIRS[a as usize], NAMES[b as usize]);
                let to = join(DIRS[c as usize], NAMES[e as usize]);
                let _ = run(d.rename(p(&from), p(&to)));
            }
            NsOp::RenameDir(a, b) => {
                let _ = run(d.rename(p(DIRS[a as usize]), p(DIRS[b as usize])));
            }
            NsOp::Remove(dir, n) => {
                let _ = run(d.remove_file(p(&join(DIRS[dir as usize], NAMES[n as usize]))));
            }
            NsOp::RemoveDir(dir) => {
                let _ = run(d.remove_dir_all(p(DIRS[dir as usize])));
            }
            NsOp::SyncDir(dir) => {
                let _ = run(d.sync_dir(p(DIRS[dir as usize])));
            }
            NsOp::SyncFile(k) => {
                if !handles.is_empty() {
                    let _ = run(handles[k as usize % handles.len()].sync());
                }
            }
            NsOp::Close(k) => {
                if !handles.is_empty() {
                    let i = k as usize % handles.len();
                    handles.swap_remove(i);
                }
            }
            NsOp::Advance(ms) => {
                let now = clock.now_ns();
                run(clock.sleep_until_ns(now + u64::from(ms) * 1_000_000));
            }
            NsOp::Crash => {
                d.crash_process();
                handles.clear();
            }
            NsOp::PowerLoss => {
                d.power_loss();
                handles.clear();
            }
        }
        if check {
            d.check_invariants();
        }
    }
    drop(handles);
    d.check_invariants();
    d.drain_events()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn collector_matches_a_full_sweep(seed in any::<u64>(), ops in prop::collection::vec(ns_op(), 1..250)) {
        run_ns_ops(seed, &ops, true);
    }
}

/// Same seed, same operations: the same events, the collector's included.
#[test]
fn freed_events_are_deterministic() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let ops = prop::collection::vec(ns_op(), 400).new_tree(&mut runner).expect("tree").current();
    let a = run_ns_ops(11, &ops, false);
    let b = run_ns_ops(11, &ops, false);
    assert_eq!(a, b);
    assert!(freed(&a).len() > 5, "the script frees things: {:?}", freed(&a));
}

fn cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of the atomic checkpoint pattern (create tmp, append, sync, close, rename over,
/// sync_dir) with N partition directories, each with a log and a checkpoint: the first round
/// creates the checkpoints, the second replaces them (freeing the old ones). Figures, not a
/// timed test.
#[test]
#[ignore]
fn bench_atomic_checkpoint_writes() {
    for n in [100usize, 1_000, 10_000] {
        let d = disk(1 << 30, 1);
        run(d.create_dir_all(p("data"))).expect("mkdir");
        let mut logs = Vec::with_capacity(n);
        for i in 0..n {
            let dir = format!("data/t-{i}");
            run(d.create_dir_all(p(&dir))).expect("mkdir");
            let log = open(&d, &format!("{dir}/00.log"), OpenMode::CreateNew);
            run(log.append(&[1u8; 1000])).expect("append");
            logs.push(log);
        }
        run(d.sync_dir(p("data"))).expect("sync_dir");
        d.drain_events();
        let mut per_round = Vec::new();
        for _round in 0..2 {
            let start = cpu_ns();
            for i in 0..n {
                atomic_write(&d, &format!("data/t-{i}"), "cp", &[2u8; 64]);
                d.drain_events();
            }
            per_round.push((cpu_ns() - start) as f64 / n as f64 / 1000.0);
        }
        d.check_invariants();
        println!(
            "N = {n:>6}: {:>9.2} µs CPU per atomic write (create), {:>9.2} µs (replace)",
            per_round[0], per_round[1]
        );
    }
}
