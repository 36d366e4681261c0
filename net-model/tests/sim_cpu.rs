//! The CPU model in simulated time (`cargo sim-test -p net-model`): a pool of N cores runs N jobs
//! in parallel, the N+1th waits; per-byte costs scale; a stall freezes the pool.
#![cfg(madsim)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use net_model::cpu::{Codec, Cost, CostHook, CpuProfile, RealCpu, SimCpu, Work};
use tokio::time::Instant;

fn run<F: Future>(seed: u64, f: F) -> F::Output {
    madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default()).block_on(f)
}

fn near(got: Duration, want_us: u64) -> bool {
    let want = Duration::from_micros(want_us);
    got >= want && got < want + Duration::from_micros(1)
}

#[test]
fn n_cores_run_n_jobs_in_parallel_and_the_next_waits() {
    run(1, async {
        let profile =
            CpuProfile { cores: 2, request: Cost::new(100_000, 0), ..CpuProfile::default() };
        let cpu: Arc<dyn CostHook> = Arc::new(SimCpu::new(profile));
        let t0 = Instant::now();
        let mut jobs = Vec::new();
        for _ in 0..3 {
            let cpu = cpu.clone();
            jobs.push(tokio::spawn(async move {
                cpu.spend(Work::Request, 0).await;
                Instant::now()
            }));
        }
        let mut done: Vec<Duration> = Vec::new();
        for j in jobs {
            done.push(j.await.unwrap().duration_since(t0));
        }
        done.sort();
        assert!(near(done[0], 100) && near(done[1], 100), "{done:?}");
        assert!(near(done[2], 200), "the third job waits for a core: {done:?}");
    });
}

#[test]
fn per_byte_costs_scale_and_stats_add_up() {
    run(2, async {
        let mut profile = CpuProfile::with_cores(1);
        profile.memcpy = Cost::new(0, 100);
        profile.lz4.compress = Cost::new(200, 2_000);
        let sim = SimCpu::new(profile);
        let t0 = Instant::now();
        sim.spend(Work::Memcpy, 1_000_000).await; // 10 GB/s: 100 µs
        assert!(near(t0.elapsed(), 100), "{:?}", t0.elapsed());
        let t1 = Instant::now();
        sim.spend(Work::Memcpy, 2_000_000).await;
        assert!(near(t1.elapsed(), 200), "{:?}", t1.elapsed());
        let t2 = Instant::now();
        sim.spend(Work::Compress(Codec::Lz4), 1_000_000).await; // 500 MB/s + 200 ns
        assert!(near(t2.elapsed(), 2_000), "{:?}", t2.elapsed());
        let st = sim.stats();
        assert_eq!(st.per_work[&Work::Memcpy].ops, 2);
        assert_eq!(st.per_work[&Work::Memcpy].bytes, 3_000_000);
        assert_eq!(st.busy_ns, 300_000 + 2_000_200);
        let u = st.utilization(sim.now_ns());
        assert!(u > 0.99 && u <= 1.0, "{u}");
        // Copy path vs sendfile: the copy charges two memcpys per byte, sendfile none.
        let copy_ns = 2 * sim.profile().cost_ns(Work::Memcpy, 1 << 20);
        assert!(copy_ns > 0);
    });
}

#[test]
fn stall_freezes_every_core() {
    run(3, async {
        let sim = SimCpu::new(CpuProfile {
            cores: 2,
            request: Cost::new(10_000, 0),
            ..CpuProfile::default()
        });
        let t0 = Instant::now();
        sim.stall(5_000_000);
        sim.spend(Work::Request, 0).await;
        assert!(near(t0.elapsed(), 5_010), "{:?}", t0.elapsed());
        let st = sim.stats();
        assert_eq!(st.stalled_ns, 10_000_000);
        assert_eq!(st.queued_ns, 5_000_000);
    });
}

#[test]
fn real_cpu_charges_nothing() {
    run(4, async {
        let t0 = Instant::now();
        RealCpu.spend(Work::Compress(Codec::Gzip), 1 << 30).await;
        assert_eq!(t0.elapsed(), Duration::ZERO);
    });
}
