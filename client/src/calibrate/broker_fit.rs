//! The real broker's CPU cost per produce request and per produced byte (real world only).
//!
//! Starts the release broker (`broker serve` with a metrics listener) on loopback, drives it
//! with `perf produce` at [`WORKLOADS`] (small records in small batches: many requests; large
//! records in large batches: many bytes), and reads before and after each run the broker's CPU
//! seconds (`/proc/PID/stat` utime + stime) and its Produce request and bytes-in counters
//! (its Prometheus metrics). Each repetition fits CPU = requests × a + bytes × b by least
//! squares over the workloads; a and b are reported as the median of the repetitions with
//! their spread, and the fit's worst relative residual says whether that shape holds.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use net_model::profile::Measurement;

use super::measure::Figures;
use super::names;

/// (record bytes, records, batch.size, linger.ms) of each `perf produce` run.
pub const WORKLOADS: &[(u64, u64, u64, u64)] =
    &[(100, 200_000, 1_024, 0), (1_000, 60_000, 16_384, 0), (10_000, 10_000, 1_048_576, 5)];

/// The broker process, stopped (SIGTERM, then kill) on drop.
struct Broker {
    child: Child,
    addr: String,
    metrics: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start(broker_bin: &Path, data: &Path) -> io::Result<Broker> {
    let (port, mport) = (free_port()?, free_port()?);
    let mut child = Command::new(broker_bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| io::Error::other(format!("{}: {e}", broker_bin.display())))?;
    let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let broker =
        Broker { child, addr: format!("127.0.0.1:{port}"), metrics: format!("127.0.0.1:{mport}") };
    for _ in 0..20 {
        match lines.next() {
            Some(Ok(l)) if l.contains("broker listening") => {
                // Keep draining stdout so the broker never blocks on a full pipe.
                std::thread::spawn(move || lines.for_each(drop));
                return Ok(broker);
            }
            Some(Ok(_)) => continue,
            _ => break,
        }
    }
    Err(io::Error::other("the broker did not say it was listening"))
}

/// utime + stime of `pid`, seconds.
pub fn cpu_s(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    Ok((ticks(11) + ticks(12)) / hz)
}

/// (Produce requests, bytes in) from the broker's Prometheus text.
fn counters(metrics: &str) -> io::Result<(f64, f64)> {
    let mut s = TcpStream::connect(metrics)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {metrics}\r\n\r\n")?;
    let mut body = String::new();
    s.take(64 << 20).read_to_string(&mut body)?;
    let value = |prefix: &str| {
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let requests = value("kafka_network_requestmetrics_requests_total{request=\"Produce\"}");
    let bytes = value("kafka_server_brokertopicmetrics_bytesin_total ");
    match (requests, bytes) {
        (Some(r), Some(b)) => Ok((r, b)),
        _ => Err(io::Error::other("Produce requests or bytes in missing from /metrics")),
    }
}

/// One `perf produce` run: (CPU seconds, requests, bytes) it cost the broker.
fn run(b: &Broker, perf: &Path, w: (u64, u64, u64, u64), topic: &str) -> io::Result<[f64; 3]> {
    let (size, n, batch, linger) = w;
    let (r0, b0) = counters(&b.metrics)?;
    let c0 = cpu_s(b.child.id())?;
    let status = Command::new(perf)
        .args(["produce", "--topic", topic, "--throughput", "-1"])
        .args(["--num-records", &n.to_string(), "--record-size", &size.to_string()])
        .args(["--bootstrap-server", &b.addr, "--producer-props", "acks=1"])
        .arg(format!("batch.size={batch}"))
        .arg(format!("linger.ms={linger}"))
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("perf produce failed: {status}")));
    }
    let c1 = cpu_s(b.child.id())?;
    let (r1, b1) = counters(&b.metrics)?;
    Ok([c1 - c0, r1 - r0, b1 - b0])
}

/// Least squares of y = a·x1 + b·x2 (no intercept) over `rows` of [y, x1, x2].
pub fn fit(rows: &[[f64; 3]]) -> Option<(f64, f64)> {
    let (mut s11, mut s12, mut s22, mut s1y, mut s2y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for [y, x1, x2] in rows {
        s11 += x1 * x1;
        s12 += x1 * x2;
        s22 += x2 * x2;
        s1y += x1 * y;
        s2y += x2 * y;
    }
    let det = s11 * s22 - s12 * s12;
    if det.abs() < f64::EPSILON * s11 * s22 {
        return None;
    }
    Some(((s1y * s22 - s2y * s12) / det, (s2y * s11 - s1y * s12) / det))
}

/// Runs every workload `runs` times and writes the fitted costs into `out`.
pub fn broker(
    broker_bin: &Path,
    perf: &Path,
    data: &Path,
    runs: u32,
    out: &mut Figures,
) -> io::Result<()> {
    let b = start(broker_bin, data)?;
    // Warm-up: topic auto-creation, connection set-up, the first segment.
    run(&b, perf, (1_000, 20_000, 16_384, 0), "calibrate-warmup")?;
    let (mut per_request, mut per_byte, mut residual) = (Vec::new(), Vec::new(), Vec::new());
    let mut all = Vec::new();
    for rep in 0..runs {
        let mut rows = Vec::new();
        for (i, w) in WORKLOADS.iter().enumerate() {
            rows.push(run(&b, perf, *w, &format!("calibrate-{rep}-{i}"))?);
        }
        let (a, c) = fit(&rows).ok_or_else(|| io::Error::other("degenerate fit"))?;
        let worst = rows
            .iter()
            .map(|[y, x1, x2]| ((a * x1 + c * x2) - y).abs() / y.max(1e-9))
            .fold(0.0, f64::max);
        per_request.push(a * 1e9);
        per_byte.push(c * 1e12);
        residual.push(worst);
        all.extend(rows);
    }
    let shape: Vec<String> = WORKLOADS
        .iter()
        .map(|(s, n, bs, l)| format!("{n}×{s} B batch.size={bs} linger.ms={l}"))
        .collect();
    let how = format!(
        "broker CPU s = requests × a + bytes × b, least squares per repetition over `perf produce` acks=1 runs: {}",
        shape.join("; ")
    );
    out.insert(names::REQUEST_NS.into(), Measurement::of(&per_request, "ns", &how));
    out.insert(names::BYTE_PS.into(), Measurement::of(&per_byte, "ps/B", &how));
    out.insert(
        "broker_fit_worst_residual".into(),
        Measurement::of(
            &residual,
            "fraction",
            "largest |fitted − measured| / measured CPU of a run, per repetition",
        ),
    );
    let per_run: Vec<f64> = all.iter().map(|[y, r, _]| y / r.max(1.0) * 1e9).collect();
    out.insert(
        "broker_cpu_ns_per_request_raw".into(),
        Measurement::of(
            &per_run,
            "ns",
            "broker CPU / Produce requests of every run, bytes not separated",
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fit_recovers_known_costs() {
        let (a, b) = (20e-6, 1e-9);
        let rows: Vec<[f64; 3]> = [(1000.0, 1e6), (100.0, 1e8), (5000.0, 5e6)]
            .iter()
            .map(|&(r, by)| [a * r + b * by, r, by])
            .collect();
        let (fa, fb) = super::fit(&rows).unwrap();
        assert!((fa - a).abs() / a < 1e-9 && (fb - b).abs() / b < 1e-9, "{fa} {fb}");
        assert!(super::fit(&[[1.0, 1.0, 2.0], [2.0, 2.0, 4.0]]).is_none(), "collinear");
    }
}
