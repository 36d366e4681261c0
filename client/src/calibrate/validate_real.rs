//! The real side of `cargo simulate validate` (real world only): each [`Workload`] of the plan
//! on the release broker (`broker serve`: one node, or a combined-mode loopback cluster as
//! `broker/tests/cluster_real.rs` starts it) under the release `perf produce`, `runs` times.
//!
//! Per workload: fresh brokers in a fresh data directory; once every broker has registered,
//! the topic is created with CreateTopics (as the simulator creates a scenario's topics) and
//! waited for until every partition has a leader and a full ISR; a short warm-up run; then the
//! measured runs. Each run records perf's own figures (`--summary-json`), `/proc/loadavg`, and
//! the CPU seconds the brokers (`/proc/PID/stat`) and perf (`getrusage(RUSAGE_CHILDREN)`) spent.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::broker_fit::{cpu_s, free_port};
use super::validate::{Measured, RealRun, Workload, TOPIC, WARMUP_MS};
use crate::admin::{Admin, AdminConfig};
use crate::perf::ProduceSummary;

/// How long brokers get to start, register and lead the topic.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `/proc/loadavg`'s first three fields.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU seconds of this process's waited-for children.
fn children_cpu_s() -> f64 {
    super::measure::rusage_cpu_s(libc::RUSAGE_CHILDREN)
}

/// The broker processes of one workload, stopped (SIGTERM, then kill) on drop.
pub struct Nodes {
    children: Vec<Child>,
    pub addrs: Vec<String>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &self.children {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.children {
            while Instant::now() < deadline && !matches!(c.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Nodes {
    fn cpu_s(&self) -> f64 {
        self.children.iter().map(|c| cpu_s(c.id()).unwrap_or(0.0)).sum()
    }
}

/// `broker serve` arguments of node `i` of `n` (`ports`: n client ports, then n controller ports).
fn node_args(w: &Workload, i: usize, ports: &[u16], data: &Path) -> Vec<String> {
    let n = w.brokers as usize;
    let mut a = vec!["serve".into(), "--listen".into(), format!("127.0.0.1:{}", ports[i])];
    a.extend(["--data-dir".into(), data.join(format!("n{i}")).display().to_string()]);
    if n > 1 {
        let quorum: Vec<String> =
            (0..n).map(|j| format!("{j}@127.0.0.1:{}", ports[n + j])).collect();
        a.extend(["--node-id".into(), i.to_string()]);
        a.extend(["--controller-listen".into(), format!("127.0.0.1:{}", ports[n + i])]);
        a.extend(["--controller-quorum".into(), quorum.join(",")]);
    }
    for o in w.broker_overrides() {
        a.extend(["--override".into(), o]);
    }
    a
}

/// Starts the workload's brokers and waits until each says it listens.
pub fn start(bin: &Path, data: &Path, w: &Workload) -> io::Result<Nodes> {
    let n = w.brokers as usize;
    let ports = (0..2 * n).map(|_| free_port()).collect::<io::Result<Vec<u16>>>()?;
    let mut nodes = Nodes { children: Vec::new(), addrs: Vec::new() };
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let mut child = Command::new(bin)
            .args(node_args(w, i, &ports, data))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::other(format!("{}: {e}", bin.display())))?;
        let out = child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?;
        nodes.children.push(child);
        nodes.addrs.push(format!("127.0.0.1:{}", ports[i]));
        let tx = tx.clone();
        // Reads stdout to its end, so the broker never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("broker listening") {
                    let _ = tx.send(i);
                }
            }
        });
    }
    for _ in 0..n {
        rx.recv_timeout(START_TIMEOUT)
            .map_err(|_| io::Error::other("a broker did not say it was listening"))?;
    }
    Ok(nodes)
}

/// Waits until every broker registered, creates the topic and waits for its leaders and ISR.
async fn prepare_topic(addrs: &[String], w: &Workload) -> io::Result<()> {
    let net: Arc<dyn net_model::Network> = Arc::new(net_model::tcp::TcpNetwork::default());
    let cfg = AdminConfig { bootstrap_servers: addrs.to_vec(), ..AdminConfig::default() };
    let admin = Admin::new(cfg, net);
    let deadline = Instant::now() + START_TIMEOUT;
    let topic = [TOPIC.to_string()];
    let mut step = 0;
    let mut last = String::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done = match step {
            0 => admin.cluster().refresh_metadata(Some(&[]), false).await.map_or_else(
                |e| {
                    last = e.to_string();
                    false
                },
                |m| m.brokers.len() == w.brokers as usize,
            ),
            1 => match admin.create_topic(w.new_topic()).await {
                Ok(()) => true,
                Err(e) if e.code() == Some(kafka_types::ErrorCode::TOPIC_ALREADY_EXISTS.0) => true,
                Err(e) => {
                    last = e.to_string();
                    false
                }
            },
            _ => match admin.describe_topics(&topic).await.map(|mut m| m.remove(TOPIC)) {
                Ok(Some(Ok(t))) => {
                    t.partitions.len() == w.partitions as usize
                        && t.partitions
                            .iter()
                            .all(|p| p.leader >= 0 && p.isr.len() == w.replication_factor as usize)
                }
                other => {
                    last = format!("{other:?}");
                    false
                }
            },
        };
        if done {
            step += 1;
            if step == 3 {
                admin.close().await;
                return Ok(());
            }
        }
    }
    admin.close().await;
    Err(io::Error::other(format!("topic {TOPIC} not ready (step {step}): {last}")))
}

/// One `perf produce` run of `w` (for `duration_ms`) against `nodes`.
fn perf_once(perf: &Path, nodes: &Nodes, w: &Workload, tmp: &Path) -> io::Result<RealRun> {
    let summary = tmp.join("perf-summary.json");
    let _ = std::fs::remove_file(&summary);
    let mut args = w.perf_args(&nodes.addrs[0]);
    args.splice(1..1, ["--summary-json".to_string(), summary.display().to_string()]);
    let loadavg = loadavg();
    let (b0, c0) = (nodes.cpu_s(), children_cpu_s());
    let out = Command::new(perf).args(&args).stdin(Stdio::null()).output()?;
    let (b1, c1) = (nodes.cpu_s(), children_cpu_s());
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "perf {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = std::fs::read_to_string(&summary)?;
    let s: ProduceSummary = serde_json::from_str(&text).map_err(io::Error::other)?;
    let elapsed_s = s.elapsed_s.max(1e-9);
    Ok(RealRun {
        mb_s: s.records as f64 * w.record_bytes as f64 / elapsed_s / 1e6,
        p99_ms: s.percentiles_ms.get(2).copied().unwrap_or(0.0),
        p50_ms: s.percentiles_ms.first().copied(),
        records: s.records,
        errors: s.errors,
        elapsed_s,
        loadavg,
        broker_cpu_s: b1 - b0,
        client_cpu_s: c1 - c0,
    })
}

/// Runs `w` `runs` times on fresh brokers under `data` (a fresh directory).
pub fn measure(
    broker: &Path,
    perf: &Path,
    data: &Path,
    w: &Workload,
    runs: u32,
) -> io::Result<Measured> {
    std::fs::create_dir_all(data)?;
    let nodes = start(broker, data, w)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(prepare_topic(&nodes.addrs, w))?;
    let warm = Workload { duration_ms: WARMUP_MS, ..w.clone() };
    perf_once(perf, &nodes, &warm, data)?;
    let runs = (0..runs).map(|_| perf_once(perf, &nodes, w, data)).collect::<io::Result<_>>()?;
    Ok(Measured { workload: w.clone(), runs })
}

/// A fresh directory for one workload's brokers, under `root`.
pub fn data_dir(root: &Path, w: &Workload) -> PathBuf {
    root.join(&w.name)
}
