//! `cargo simulate grid SCENARIO --vary KEY=v1,v2,... [--vary ...] --jobs N --out DIR`: every
//! point of the product of the varied keys' values, each its own `sim` run of its own scenario
//! file (`DIR/points/<i>/scenario.json`, replayable with `cargo simulate` alone), then
//! `DIR/grid.json` and `DIR/grid.csv` (per point: the values, achieved throughput, latency
//! percentiles, the utilization of every resource of every host, the bottleneck, and what the
//! point's process cost: CPU seconds and peak RSS), SVG plots of throughput, p99 latency, CPU
//! seconds and peak RSS against each varied key, and `DIR/index.html`.
//!
//! Keys and values: [`keys`]. The bottleneck rule: [`table`]. Every point's scenario is parsed
//! before anything runs, so an unknown key or a bad value stops the grid with the scenario
//! parser's message and the point it came from.

pub mod keys;
pub mod plots;
pub mod table;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser;
use serde_json::{json, Value};

use crate::exit;
use crate::scenario::Scenario;
use keys::Vary;

#[derive(Debug, Parser)]
#[command(
    name = "cargo simulate grid",
    about = "Run every point of a parameter grid; name each point's bottleneck",
    after_help = "KEY is a scenario path (cluster.host.cores, workload.producers[0][\"batch.size\"], topics[*].partitions) or a Kafka name (batch.size, linger.ms, compression.type, acks, record.bytes, partitions, replication.factor, brokers, and every producer and consumer setting), which sets it on every producer (consumer, topic) entry. Values: numbers, booleans, else strings (lz4, all, 4GiB)."
)]
pub struct GridArgs {
    /// Scenario file (JSON).
    pub scenario: String,
    /// KEY=v1,v2,...: a key and its values (1 to 4 keys; at most 256 points in all).
    #[arg(long = "vary", required = true)]
    pub vary: Vec<String>,
    /// Runs at once, 1..=64 (each point is its own process).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Every point's seed (default: the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Default: out/grid/<scenario name>.
    #[arg(long)]
    pub out: Option<String>,
}

fn usage(msg: String) -> i32 {
    eprintln!("error: {msg}");
    exit::USAGE
}

/// A point: its value index per key, its directory, its scenario document.
pub struct Point {
    pub index: Vec<usize>,
    pub dir: PathBuf,
    pub doc: Value,
}

/// `values` of a point by key as written.
fn values_of(vary: &[Vary], index: &[usize]) -> Value {
    Value::Object(
        vary.iter().zip(index).map(|(v, &i)| (v.key.clone(), v.values[i].clone())).collect(),
    )
}

/// Every point's scenario, each parsed (an error names the point and the scenario's path).
pub fn points(base: &Value, file: &Path, vary: &[Vary], out: &Path) -> Result<Vec<Point>, String> {
    let mut base = base.clone();
    crate::shrink::absolute_profile(&mut base, file);
    let dir_of_file = file.parent().unwrap_or(Path::new("."));
    let mut pts = Vec::new();
    for (i, index) in keys::product(vary).into_iter().enumerate() {
        let mut doc = base.clone();
        let what = || values_of(vary, &index).to_string();
        for (v, &k) in vary.iter().zip(&index) {
            keys::set(&mut doc, &v.path, &v.values[k])
                .map_err(|e| format!("point {i} {}: --vary {}: {e}", what(), v.key))?;
        }
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        Scenario::parse_in(&text, Some(dir_of_file))
            .map_err(|e| format!("point {i} {}: {e}", what()))?;
        pts.push(Point { index, dir: out.join("points").join(i.to_string()), doc });
    }
    Ok(pts)
}

fn io_err(p: &Path) -> impl Fn(std::io::Error) -> i32 + '_ {
    move |e| {
        eprintln!("error: writing {}: {e}", p.display());
        exit::CRASH
    }
}

fn write(p: &Path, text: &str) -> Result<(), i32> {
    std::fs::write(p, text).map_err(io_err(p))
}

/// `cargo simulate grid`.
pub fn main(args: &[String]) -> Result<i32, i32> {
    let a: GridArgs = crate::exit::parse_args(args)?;
    let file = Path::new(&a.scenario);
    let text = std::fs::read_to_string(file).map_err(|e| usage(format!("{}: {e}", a.scenario)))?;
    let sc = Scenario::load(file).map_err(|e| usage(format!("{}: {e}", a.scenario)))?;
    let base: Value =
        serde_json::from_str(&text).map_err(|e| usage(format!("{}: {e}", a.scenario)))?;
    let vary: Vec<Vary> =
        a.vary.iter().map(|s| keys::parse_vary(s)).collect::<Result<_, _>>().map_err(usage)?;
    let n = keys::check_product(&vary).map_err(usage)?;
    if a.jobs == 0 || a.jobs > 64 {
        return Err(usage(format!("--jobs {}: expected 1..=64 runs at once", a.jobs)));
    }
    let out = PathBuf::from(a.out.clone().unwrap_or_else(|| format!("out/grid/{}", sc.name)));
    let pts = points(&base, file, &vary, &out).map_err(usage)?;
    for p in &pts {
        std::fs::create_dir_all(&p.dir).map_err(io_err(&p.dir))?;
        let text = serde_json::to_string_pretty(&p.doc).unwrap_or_default() + "\n";
        write(&p.dir.join("scenario.json"), &text)?;
    }
    eprintln!("grid: {n} points of {} into {}", a.scenario, out.display());
    let codes = run_points(&pts, a.jobs, a.seed)?;
    let rows: Vec<Value> = pts
        .iter()
        .zip(&codes)
        .enumerate()
        .map(|(i, (p, code))| {
            let s = std::fs::read_to_string(p.dir.join("summary.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            table::row(
                i,
                &values_of(&vary, &p.index),
                &p.dir.display().to_string(),
                *code,
                s.as_ref(),
            )
        })
        .collect();
    let command = std::iter::once("cargo simulate".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    write_outputs(&out, &command, &a.scenario, &vary, &pts, &rows)?;
    print_table(&vary, &rows);
    println!("grid: {}/index.html", out.display());
    let crashed = rows.iter().filter(|r| r["bottleneck"] == table::NO_RUN).count();
    Ok(if crashed > 0 { exit::CRASH } else { exit::PASS })
}

/// Runs every point (at most `jobs` at once) with a progress bar on stderr (hidden when stderr
/// is not a terminal); returns each point's exit code (`None`: ended by a signal).
fn run_points(pts: &[Point], jobs: usize, seed: Option<u64>) -> Result<Vec<Option<i32>>, i32> {
    use std::io::IsTerminal as _;
    let exe = std::env::current_exe().map_err(|_| exit::CRASH)?;
    let target = match std::io::stderr().is_terminal() {
        true => indicatif::ProgressDrawTarget::stderr(),
        false => indicatif::ProgressDrawTarget::hidden(),
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(pts.len() as u64), target);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:30} {pos}/{len} points {msg}",
    ) {
        bar.set_style(style);
    }
    let order: Vec<usize> = (0..pts.len()).collect();
    let mut codes = vec![None; pts.len()];
    let mut failed = 0;
    let spawn = |&i: &usize| {
        let p = &pts[i];
        let mut c = Command::new(&exe);
        c.arg(p.dir.join("scenario.json")).arg("--out").arg(&p.dir).arg("--quiet");
        if let Some(s) = seed {
            c.args(["--seed", &s.to_string()]);
        }
        c.stdout(Stdio::null()).stderr(Stdio::null()).spawn()
    };
    crate::sweep::run_children(&order, jobs, spawn, |&i, code| {
        codes[i] = code;
        failed += usize::from(code != Some(exit::PASS));
        bar.set_message(if failed > 0 { format!("({failed} not pass)") } else { String::new() });
        bar.inc(1);
    })?;
    bar.finish();
    Ok(codes)
}

fn write_outputs(
    out: &Path,
    command: &str,
    file: &str,
    vary: &[Vary],
    pts: &[Point],
    rows: &[Value],
) -> Result<(), i32> {
    let doc = json!({
        "command": command,
        "scenario_file": file,
        "varied": vary.iter().map(|v| json!({"key": v.key, "path": v.path, "values": v.values})).collect::<Vec<_>>(),
        "points": rows.len(),
        "bottleneck_rule": format!("the resource with the highest utilization inside the throughput window if >= {}; else \"{}\" when achieved >= {} x offered; else \"{}\" (sim/README.md, Grids)", table::SATURATED, table::OFFERED_LOAD, table::OFFERED_MET, table::FLOW_CONTROL),
        "rows": rows,
    });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    crate::sweep::write_atomic(&out.join("grid.json"), &text)
        .map_err(io_err(&out.join("grid.json")))?;
    let keys: Vec<String> = vary.iter().map(|v| v.key.clone()).collect();
    write(&out.join("grid.csv"), &table::csv(&keys, rows))?;
    let index: Vec<Vec<usize>> = pts.iter().map(|p| p.index.clone()).collect();
    let charts = plots::charts(vary, &index, rows);
    for (c, opts) in &charts {
        match reports::render_svg_with(c, &[], 0.0, opts) {
            Ok(svg) => write(&out.join(&c.file), &svg)?,
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    write(&out.join("index.html"), &plots::index_html(command, vary, rows, &charts))
}

fn print_table(vary: &[Vary], rows: &[Value]) {
    let mut head = format!("{:>5}", "point");
    for v in vary {
        head += &format!("  {:>16}", v.key);
    }
    println!(
        "{head}  {:>10}  {:>12}  {:>9}  {:>7}  bottleneck",
        "MB/s", "records/s", "p99 ms", "CPU s"
    );
    // MB/s and records/s: produced, or consumed when the grid's runs produce nothing.
    for r in rows {
        let mut line = format!("{:>5}", r["point"]);
        for v in vary {
            line += &format!("  {:>16}", plots::show(&r["values"][&v.key]));
        }
        let f = |x: &Value, s: f64| x.as_f64().map_or("-".into(), |x| format!("{:.1}", x * s));
        println!(
            "{line}  {:>10}  {:>12}  {:>9}  {:>7}  {}",
            f(&r["bytes_per_s"], 1e-6),
            f(&r["records_per_s"], 1.0),
            f(&r["produce_latency_ms"]["p99"], 1.0),
            f(&r["cost"]["cpu_s"], 1.0),
            r["bottleneck"].as_str().unwrap_or("")
        );
    }
}
