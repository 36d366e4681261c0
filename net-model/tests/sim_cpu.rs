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

/// Starts `n` `Request` jobs on `cpu` at once; when each ended, from the start, in order.
async fn finish_times(cpu: &Arc<dyn CostHook>, n: usize) -> Vec<Duration> {
    let t0 = Instant::now();
    let jobs: Vec<_> = (0..n)
        .map(|_| {
            let cpu = cpu.clone();
            tokio::spawn(async move {
                cpu.spend(Work::Request, 0).await;
                Instant::now()
            })
        })
        .collect();
    let mut done = Vec::new();
    for j in jobs {
        done.push(j.await.unwrap().duration_since(t0));
    }
    done.sort();
    done
}

#[test]
fn n_cores_run_n_jobs_in_parallel_and_the_next_waits() {
    run(1, async {
        let profile =
            CpuProfile { cores: 2, request: Cost::new(100_000, 0), ..CpuProfile::default() };
        let cpu: Arc<dyn CostHook> = Arc::new(SimCpu::new(profile));
        let done = finish_times(&cpu, 3).await;
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

/// A term the profile leaves at 0 (no per-record cost measured) is counted but takes neither
/// time nor a core: a zero-cost job does not wait behind a busy pool.
#[test]
fn zero_cost_work_takes_no_core_and_no_time() {
    run(5, async {
        let profile =
            CpuProfile { cores: 1, request: Cost::new(100_000, 0), ..CpuProfile::default() };
        let sim = SimCpu::new(profile);
        let busy = sim.clone();
        let first = tokio::spawn(async move { busy.spend(Work::Request, 0).await });
        tokio::task::yield_now().await;
        let t0 = Instant::now();
        sim.spend(Work::Records, 1_000).await; // `record` is 0 by default
        assert_eq!(t0.elapsed(), Duration::ZERO, "did not wait for the busy core");
        first.await.unwrap();
        let st = sim.stats();
        assert_eq!(st.per_work[&Work::Records].ops, 1);
        assert_eq!(st.per_work[&Work::Records].bytes, 1_000);
        assert_eq!(st.per_work[&Work::Records].busy_ns, 0);
        assert_eq!(st.busy_ns, 100_000, "only the request's time");
    });
}

/// A wake-up (`Work::Wakeup`) delays its caller by exactly `wakeup_ns` and takes no core:
/// charged while the only core is busy, it ends `wakeup_ns` later, not after the busy job,
/// and the pool's busy time is the busy job's alone. Default profiles charge nothing. Goes
/// red if the latency is dropped (0 µs), scheduled as core work (it would end at 130 µs) or
/// counted as busy time.
#[test]
fn a_wakeup_is_latency_without_a_core() {
    run(7, async {
        let profile = CpuProfile {
            cores: 1,
            request: Cost::new(100_000, 0),
            wakeup_ns: 30_000,
            ..CpuProfile::default()
        };
        let sim = SimCpu::new(profile);
        let busy = sim.clone();
        let first = tokio::spawn(async move { busy.spend(Work::Request, 0).await });
        tokio::task::yield_now().await;
        let t0 = Instant::now();
        sim.spend(Work::Wakeup, 0).await;
        assert!(near(t0.elapsed(), 30), "took {:?}", t0.elapsed());
        first.await.unwrap();
        let st = sim.stats();
        assert_eq!(st.per_work[&Work::Wakeup].ops, 1);
        assert_eq!(st.per_work[&Work::Wakeup].busy_ns, 0);
        assert_eq!(st.busy_ns, 100_000, "only the request's time");
        let default = SimCpu::new(CpuProfile::with_cores(1));
        let t1 = Instant::now();
        default.spend(Work::Wakeup, 0).await;
        assert_eq!(t1.elapsed(), Duration::ZERO, "default profiles: no wake-up latency");
    });
}

/// Each new term is charged at its own rate, once: records per record, the client's request
/// at the client's cost (not the broker's), loopback per byte.
#[test]
fn per_record_client_and_loopback_terms() {
    run(6, async {
        let profile = CpuProfile {
            cores: 1,
            request: Cost::new(50_000, 0),
            record: Cost::new(0, 300_000), // 300 ns a record
            client_request: Cost::new(10_000, 0),
            client_record: Cost::new(100, 500_000), // 100 ns a call + 500 ns a record
            loopback: Cost::new(0, 1_000),          // 1 ns a byte
            ..CpuProfile::default()
        };
        let sim = SimCpu::new(profile);
        let t0 = Instant::now();
        sim.spend(Work::Records, 100).await;
        assert!(near(t0.elapsed(), 30), "{:?}", t0.elapsed());
        let t1 = Instant::now();
        sim.spend(Work::ClientRequest, 0).await;
        assert!(near(t1.elapsed(), 10), "the client's cost, not the broker's 50 µs");
        let t2 = Instant::now();
        sim.spend(Work::ClientRecords, 10).await;
        let e = t2.elapsed(); // madsim adds ~50 ns per timer
        assert!(e >= Duration::from_nanos(5_100) && e < Duration::from_nanos(5_600), "{e:?}");
        let t3 = Instant::now();
        sim.spend(Work::Loopback, 20_000).await;
        assert!(near(t3.elapsed(), 20), "{:?}", t3.elapsed());
        assert_eq!(sim.stats().busy_ns, 30_000 + 10_000 + 5_100 + 20_000);
    });
}

/// A process limited to one thread runs two jobs one after the other on two free cores (2× the
/// time), while another process's job takes the core it leaves. Goes red if the limit is
/// ignored (both of the first process's jobs would end at 100 µs) or if it bound the whole
/// host (the other process would wait until 200 µs).
#[test]
fn a_one_thread_process_takes_twice_as_long_and_leaves_a_core() {
    run(7, async {
        let profile =
            CpuProfile { cores: 2, request: Cost::new(100_000, 0), ..CpuProfile::default() };
        let sim = SimCpu::new(profile);
        let single: Arc<dyn CostHook> = Arc::new(sim.party(1));
        let done = finish_times(&single, 2).await;
        assert!(near(done[0], 100) && near(done[1], 200), "one thread: {done:?}");

        // Now two processes at once: one job each of the limited one, and the other's.
        let t1 = Instant::now();
        let other: Arc<dyn CostHook> = Arc::new(sim.party(1));
        let a = tokio::spawn({
            let cpu = single.clone();
            async move {
                cpu.spend(Work::Request, 0).await;
                cpu.spend(Work::Request, 0).await;
                Instant::now()
            }
        });
        let b = tokio::spawn(async move {
            other.spend(Work::Request, 0).await;
            Instant::now()
        });
        let (a, b) = (a.await.unwrap().duration_since(t1), b.await.unwrap().duration_since(t1));
        assert!(near(a, 200), "{a:?}");
        assert!(near(b, 100), "the other process uses the free core: {b:?}");
        // The first run's second job waited ~100 µs for the thread (less the simulator's
        // scheduling jitter between the two spawned tasks); nothing waited in the second run.
        let queued = sim.stats().queued_ns;
        assert!((99_000..=100_000).contains(&queued), "queued {queued} ns");
    });
}

/// A woken reader's wake-up costs CPU only when its process has gone idle (every thread free,
/// as a runtime's workers park only with nothing to run): while the process has work on a core
/// a thread of it is awake and picks the data up, so the wake-up is counted at no cost.
#[test]
fn a_wakeup_costs_cpu_only_when_the_process_is_idle() {
    run(8, async {
        let profile = CpuProfile {
            cores: 2,
            request: Cost::new(100_000_000, 0), // 100 ms
            wakeup_cpu: Cost::new(10_000, 0),
            ..CpuProfile::default()
        };
        let sim = SimCpu::new(profile);
        let (busy, idle) = (sim.party(1), sim.party(1));
        let b = busy.clone();
        let request = tokio::spawn(async move { b.spend(Work::Request, 0).await });
        tokio::time::sleep(Duration::from_millis(1)).await; // the request is on a core now
        assert!(!request.is_finished());
        busy.spend(Work::Woken, 0).await; // its thread is at work: free
        idle.spend(Work::Woken, 0).await; // nothing running: a thread is woken
        request.await.unwrap();
        busy.spend(Work::Woken, 0).await; // idle again: charged
        let st = sim.stats();
        assert_eq!(st.per_work[&Work::Woken].ops, 3);
        assert_eq!(st.per_work[&Work::Woken].busy_ns, 20_000, "two of three wake-ups cost");
        assert_eq!(st.busy_ns, 100_020_000);
    });
}
