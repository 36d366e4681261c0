//! The real broker's CPU cost per produce request and per produced byte (real world only).
//!
//! Starts the release broker (`broker serve` with a metrics listener) on loopback, drives it
//! with `perf produce` at [`WORKLOADS`] (small records in small batches: many requests; large
//! records in large batches: many bytes), and reads before and after each run the broker's CPU
//! seconds (`/proc/PID/stat` utime + stime) and its Produce request and bytes-in counters
//! (its Prometheus metrics), and perf's own CPU seconds (`getrusage(RUSAGE_CHILDREN)` around
//! it). Each repetition fits CPU = requests × a + bytes × b + records × c by least squares
//! over the workloads, for the broker and for the client; a, b and c are reported as the
//! median of the repetitions with their spread, and the broker fit's worst relative residual
//! says whether that shape holds; `<broker|client>_fit_residual_<size>b_batch<batch.size>` say
//! where it misses, workload by workload (signed: fitted − measured over measured).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use net_model::profile::Measurement;

use super::measure::Figures;
use super::names;

/// (record bytes, records, batch.size, linger.ms) of each `perf produce` run.
/// Small records in small and in large batches separate the per-record cost from the
/// per-request one; large records in large batches give the per-byte one.
pub const WORKLOADS: &[(u64, u64, u64, u64)] = &[
    (100, 200_000, 1_024, 0),
    (100, 400_000, 16_384, 5),
    (1_000, 60_000, 16_384, 0),
    (10_000, 10_000, 1_048_576, 5),
];

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

/// CPU seconds of this process's waited-for children.
fn children_cpu_s() -> f64 {
    super::measure::rusage_cpu_s(libc::RUSAGE_CHILDREN)
}

/// One `perf produce` run: [CPU seconds, requests, bytes, records] it cost the broker, the same
/// row for perf itself, and for perf's appending thread (the one that calls `send`).
fn run(b: &Broker, perf: &Path, w: (u64, u64, u64, u64), topic: &str) -> io::Result<[Row; 3]> {
    let (size, n, batch, linger) = w;
    let (r0, b0) = counters(&b.metrics)?;
    let c0 = cpu_s(b.child.id())?;
    let p0 = children_cpu_s();
    let summary =
        std::env::temp_dir().join(format!("calibrate-{}-{topic}.json", std::process::id()));
    let status = Command::new(perf)
        .args(["produce", "--topic", topic, "--throughput", "-1"])
        .arg("--summary-json")
        .arg(&summary)
        .args(["--num-records", &n.to_string(), "--record-size", &size.to_string()])
        .args(["--bootstrap-server", &b.addr, "--producer-props", "acks=1"])
        .arg(format!("batch.size={batch}"))
        .arg(format!("linger.ms={linger}"))
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("perf produce failed: {status}")));
    }
    let p1 = children_cpu_s();
    let c1 = cpu_s(b.child.id())?;
    let (r1, b1) = counters(&b.metrics)?;
    let text = std::fs::read_to_string(&summary);
    let _ = std::fs::remove_file(&summary);
    let app_s = serde_json::from_str::<crate::perf::ProduceSummary>(&text?)
        .map_err(io::Error::other)?
        .app_thread_cpu_s
        .ok_or_else(|| io::Error::other("perf did not report its appending thread's CPU"))?;
    let (requests, bytes) = (r1 - r0, b1 - b0);
    let row = |cpu_s: f64| [cpu_s, requests, bytes, n as f64];
    Ok([row(c1 - c0), row(p1 - p0), row(app_s)])
}

/// [y, x1, x2, x3]: a run's CPU seconds, requests, bytes and records.
pub type Row = [f64; 4];

/// Least squares of y = a·x1 + b·x2 + c·x3 (no intercept) over `rows`: each column scaled to
/// unit norm (requests, bytes and records differ by orders of magnitude), the normal
/// equations solved by Gaussian elimination with partial pivoting; `None` when a column is
/// zero or the runs do not separate the three terms (a pivot below 1e-9).
pub fn fit(rows: &[Row]) -> Option<[f64; 3]> {
    let mut norm = [0.0f64; 3];
    for r in rows {
        for (j, n) in norm.iter_mut().enumerate() {
            *n += r[j + 1] * r[j + 1];
        }
    }
    if norm.iter().any(|n| !(n.is_finite() && *n > 0.0)) {
        return None;
    }
    let norm = norm.map(f64::sqrt);
    let mut m = [[0.0f64; 4]; 3];
    for r in rows {
        let x = [r[1] / norm[0], r[2] / norm[1], r[3] / norm[2]];
        for (row, xi) in m.iter_mut().zip(x) {
            for (cell, xj) in row.iter_mut().zip(x) {
                *cell += xi * xj;
            }
            row[3] += xi * r[0];
        }
    }
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        m.swap(col, pivot);
        let p = m[col];
        if p[col].abs() < 1e-9 {
            return None;
        }
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / p[col];
                for (cell, pk) in row.iter_mut().zip(p).skip(col) {
                    *cell -= f * pk;
                }
            }
        }
    }
    Some([0, 1, 2].map(|i| m[i][3] / m[i][i] / norm[i]))
}

/// (fitted − measured) / measured CPU of one run.
fn signed_residual(r: &Row, c: [f64; 3]) -> f64 {
    ((c[0] * r[1] + c[1] * r[2] + c[2] * r[3]) - r[0]) / r[0].max(1e-9)
}

/// Largest |fitted − measured| / measured over `rows`.
fn worst_residual(rows: &[Row], c: [f64; 3]) -> f64 {
    rows.iter().map(|r| signed_residual(r, c).abs()).fold(0.0, f64::max)
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
    let mut fits: [Vec<[f64; 3]>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let (mut residual, mut all) = (Vec::new(), Vec::new());
    // [broker, perf][workload]: (fitted − measured) / measured of each repetition.
    let mut per_workload = [vec![Vec::new(); WORKLOADS.len()], vec![Vec::new(); WORKLOADS.len()]];
    for rep in 0..runs {
        let mut rows: [Vec<Row>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for (i, w) in WORKLOADS.iter().enumerate() {
            let three = run(&b, perf, *w, &format!("calibrate-{rep}-{i}"))?;
            for (side, row) in three.into_iter().enumerate() {
                rows[side].push(row);
            }
        }
        for side in 0..3 {
            let c = fit(&rows[side]).ok_or_else(|| io::Error::other("degenerate fit"))?;
            fits[side].push(c);
        }
        residual.push(worst_residual(&rows[0], fits[0][rep as usize]));
        for side in 0..2 {
            for (i, row) in rows[side].iter().enumerate() {
                per_workload[side][i].push(signed_residual(row, fits[side][rep as usize]));
            }
        }
        all.extend(rows[0].iter().copied());
    }
    let shape: Vec<String> = WORKLOADS
        .iter()
        .map(|(s, n, bs, l)| format!("{n}×{s} B batch.size={bs} linger.ms={l}"))
        .collect();
    for (side, who, [req, byte, rec]) in [
        (0, "broker CPU s (/proc/PID/stat)", [names::REQUEST_NS, names::BYTE_PS, names::RECORD_NS]),
        (
            1,
            "perf's CPU s (getrusage RUSAGE_CHILDREN)",
            [names::CLIENT_REQUEST_NS, names::CLIENT_BYTE_PS, names::CLIENT_RECORD_NS],
        ),
        (
            2,
            "the CPU s of perf's thread that calls send (its summary's app_thread_cpu_s, getrusage RUSAGE_THREAD)",
            [names::APPEND_REQUEST_NS, names::APPEND_BYTE_PS, names::APPEND_RECORD_NS],
        ),
    ] {
        let how = format!(
            "{who} = requests × a + bytes × b + records × c, least squares per repetition over `perf produce` acks=1 runs: {}",
            shape.join("; ")
        );
        let col = |i: usize, scale: f64| -> Vec<f64> {
            fits[side].iter().map(|c| c[i] * scale).collect()
        };
        out.insert(req.into(), Measurement::of(&col(0, 1e9), "ns", &how));
        out.insert(byte.into(), Measurement::of(&col(1, 1e12), "ps/B", &how));
        out.insert(rec.into(), Measurement::of(&col(2, 1e9), "ns", &how));
    }
    out.insert(
        "broker_fit_worst_residual".into(),
        Measurement::of(
            &residual,
            "fraction",
            "largest |fitted − measured| / measured CPU of a run, per repetition",
        ),
    );
    for (side, who) in [(0, "broker"), (1, "client")] {
        for ((size, n, batch, linger), r) in WORKLOADS.iter().zip(&per_workload[side]) {
            out.insert(
                format!("{who}_fit_residual_{size}b_batch{batch}"),
                Measurement::of(
                    r,
                    "fraction",
                    &format!("(fitted − measured) / measured {who} CPU of the {n}×{size} B run (batch.size={batch}, linger.ms={linger}), per repetition: where the three-term shape misses"),
                ),
            );
        }
    }
    let per_run: Vec<f64> = all.iter().map(|r| r[0] / r[1].max(1.0) * 1e9).collect();
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
    use super::{fit, Row};

    /// Rows of the calibration's shape (requests, bytes, records per run) from known costs.
    fn rows(c: [f64; 3]) -> Vec<Row> {
        [(20_000.0, 2e7, 2e5), (2_500.0, 4e7, 4e5), (4_000.0, 6e7, 6e4), (100.0, 1e8, 1e4)]
            .iter()
            .map(|&(r, b, n)| [c[0] * r + c[1] * b + c[2] * n, r, b, n])
            .collect()
    }

    #[test]
    fn fit_recovers_known_per_record_cost() {
        let known = [20e-6, 1e-9, 300e-9];
        let got = fit(&rows(known)).unwrap();
        for (g, k) in got.iter().zip(known) {
            assert!((g - k).abs() / k < 1e-6, "{got:?} vs {known:?}");
        }
        // A run that cost 10 % more than the fitted shape says: its signed residual.
        let mut r = rows(known);
        let fitted = fit(&r).unwrap();
        assert!(r.iter().all(|row| super::signed_residual(row, fitted).abs() < 1e-9));
        r[3][0] *= 1.1;
        let off = super::signed_residual(&r[3], known);
        assert!((off - (1.0 / 1.1 - 1.0)).abs() < 1e-12, "fitted 9.1 % under: {off}");
        // No per-record cost: the fit finds none (not a share of the other two).
        let got = fit(&rows([20e-6, 1e-9, 0.0])).unwrap();
        assert!(got[2].abs() < 1e-12, "{got:?}");
    }

    #[test]
    fn fit_refuses_runs_that_cannot_separate_the_terms() {
        // Records proportional to bytes (one record size): per-record and per-byte collide.
        let same_size: Vec<Row> = [(1_000.0, 1e6), (100.0, 1e8), (5_000.0, 5e6)]
            .iter()
            .map(|&(r, b)| [1.0, r, b, b / 100.0])
            .collect();
        assert!(fit(&same_size).is_none(), "collinear");
        assert!(fit(&[[1.0, 1.0, 0.0, 1.0]]).is_none(), "a zero column");
    }
}
