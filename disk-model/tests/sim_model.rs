//! Random operation sequences against a simple model of each file's contents.
//!
//! The model keeps, per file, the logical contents (what every read must return) and the length
//! known durable (the last successful `sync`, cut by truncates). After a process crash the files
//! must equal the model; after a power loss each file must keep its durable prefix unchanged, be
//! no longer than its logical contents, and hold beyond the prefix only bytes that were written
//! there or zeros.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use disk_model::clock::Clock;
use disk_model::{
    DeviceProfile, FileRef, OpenMode, PageCacheConfig, SimDisk, SimDiskConfig, Storage,
};
use proptest::prelude::*;

fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a manual-clock operation waited"),
    }
}

const FILES: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Append {
        file: usize,
        len: usize,
        salt: u8,
    },
    Read {
        file: usize,
        pos_permille: u64,
        len: usize,
    },
    Sync {
        file: usize,
    },
    Truncate {
        file: usize,
        len_permille: u64,
    },
    Advance {
        ms: u64,
    },
    /// Lands a crash in the middle of an IO.
    AdvanceMicros {
        us: u64,
    },
    DropCaches,
    ProcessCrash,
    /// After `after_us` µs: small delays land the crash inside a writeback's transfer.
    PowerLoss {
        after_us: u64,
    },
    /// A big append, then power loss while the flusher's chunk is likely in flight (tears).
    AppendPowerLoss {
        file: usize,
        len: usize,
        after_us: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..FILES, prop_oneof![3 => 1..20_000usize, 1 => 20_000..300_000usize], any::<u8>())
            .prop_map(|(file, len, salt)| Op::Append { file, len, salt }),
        3 => (0..FILES, 0..1000u64, 1..30_000usize).prop_map(|(file, pos_permille, len)| Op::Read { file, pos_permille, len }),
        2 => (0..FILES).prop_map(|file| Op::Sync { file }),
        1 => (0..FILES, 0..1000u64).prop_map(|(file, len_permille)| Op::Truncate { file, len_permille }),
        2 => (0..40_000u64).prop_map(|ms| Op::Advance { ms }),
        3 => (0..2_000u64).prop_map(|us| Op::AdvanceMicros { us }),
        1 => Just(Op::DropCaches),
        1 => Just(Op::ProcessCrash),
        2 => prop_oneof![0..300u64, 12_000..13_500u64].prop_map(|after_us| Op::PowerLoss { after_us }),
        1 => (0..FILES, 100_000..500_000usize, 0..300u64)
            .prop_map(|(file, len, after_us)| Op::AppendPowerLoss { file, len, after_us }),
    ]
}

struct Model {
    content: Vec<u8>,
    durable_len: usize,
}

fn path(i: usize) -> String {
    format!("p-0/{i:020}.log")
}

fn open_all(d: &SimDisk) -> Vec<FileRef> {
    (0..FILES)
        .map(|i| run(d.open(Path::new(&path(i)), OpenMode::Existing)).expect("durable file exists"))
        .collect()
}

fn check_file(f: &FileRef, m: &Model) {
    let got = run(f.read_at(0, f.len() as usize + 10)).expect("read");
    assert_eq!(got.len(), m.content.len());
    assert!(got[..] == m.content[..], "contents differ from the model");
}

fn run_ops(profile: DeviceProfile, cache_bytes: u64, seed: u64, ops: &[Op]) {
    let page_cache = PageCacheConfig { capacity_bytes: cache_bytes, ..PageCacheConfig::default() };
    let d = SimDisk::new(
        SimDiskConfig { device: profile, page_cache, seed, mounts: Vec::new() },
        Clock::manual(),
    );
    d.set_torn_writes(true);
    run(d.create_dir_all(Path::new("p-0"))).expect("mkdir");
    run(d.sync_dir(Path::new(""))).expect("sync root");
    for i in 0..FILES {
        run(d.open(Path::new(&path(i)), OpenMode::CreateNew)).expect("create");
    }
    run(d.sync_dir(Path::new("p-0"))).expect("sync dir");
    let mut files = open_all(&d);
    let mut model: Vec<Model> =
        (0..FILES).map(|_| Model { content: Vec::new(), durable_len: 0 }).collect();

    let mut expanded = Vec::with_capacity(ops.len());
    for op in ops {
        match *op {
            Op::AppendPowerLoss { file, len, after_us } => {
                expanded.push(Op::Append { file, len, salt: len as u8 });
                expanded.push(Op::PowerLoss { after_us });
            }
            ref other => expanded.push(other.clone()),
        }
    }
    for op in &expanded {
        match *op {
            Op::AppendPowerLoss { .. } => unreachable!("expanded above"),
            Op::Append { file, len, salt } => {
                let data: Vec<u8> =
                    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(salt) | 1).collect();
                let pos = run(files[file].append(&data)).expect("append");
                assert_eq!(pos as usize, model[file].content.len());
                model[file].content.extend_from_slice(&data);
            }
            Op::Read { file, pos_permille, len } => {
                let m = &model[file];
                let pos = m.content.len() as u64 * pos_permille / 1000;
                let got = run(files[file].read_at(pos, len)).expect("read");
                let end = m.content.len().min(pos as usize + len);
                assert!(got[..] == m.content[pos as usize..end], "read {pos}+{len} differs");
            }
            Op::Sync { file } => {
                run(files[file].sync()).expect("sync");
                model[file].durable_len = model[file].content.len();
            }
            Op::Truncate { file, len_permille } => {
                let m = &mut model[file];
                let len = m.content.len() * len_permille as usize / 1000;
                run(files[file].truncate(len as u64)).expect("truncate");
                m.content.truncate(len);
                m.durable_len = m.durable_len.min(len);
            }
            Op::Advance { ms } => d.clock().advance_ns(ms * 1_000_000),
            Op::AdvanceMicros { us } => d.clock().advance_ns(us * 1_000),
            Op::DropCaches => d.drop_caches(),
            Op::ProcessCrash => {
                d.crash_process();
                assert!(run(files[0].read_at(0, 1)).is_err(), "old handles are stale");
                files = open_all(&d);
                for (f, m) in files.iter().zip(&model) {
                    check_file(f, m);
                }
            }
            Op::PowerLoss { after_us } => {
                d.clock().advance_ns(after_us * 1_000);
                d.power_loss();
                files = open_all(&d);
                for (f, m) in files.iter().zip(model.iter_mut()) {
                    let got = run(f.read_at(0, f.len() as usize)).expect("read").to_vec();
                    assert!(
                        got.len() >= m.durable_len,
                        "lost synced data: {} < {}",
                        got.len(),
                        m.durable_len
                    );
                    assert!(got.len() <= m.content.len(), "longer than ever written");
                    assert!(
                        got[..m.durable_len] == m.content[..m.durable_len],
                        "synced data changed"
                    );
                    for (i, (&g, &w)) in got.iter().zip(&m.content).enumerate().skip(m.durable_len)
                    {
                        assert!(g == w || g == 0, "byte {i} was never written");
                    }
                    // What survived is now the file, and it is all durable.
                    m.content = got;
                    m.durable_len = m.content.len();
                }
            }
        }
        d.check_invariants();
    }
    for (f, m) in files.iter().zip(&model) {
        check_file(f, m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn hdd_small_cache_matches_model(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..80)) {
        // 256 KiB of cache: constant eviction, throttling and background writeback.
        run_ops(DeviceProfile::hdd_7200(), 256 * 1024, seed, &ops);
    }

    #[test]
    fn nvme_matches_model(seed in any::<u64>(), ops in prop::collection::vec(op(), 1..80)) {
        run_ops(DeviceProfile::nvme(), 4 * 1024 * 1024, seed, &ops);
    }
}
