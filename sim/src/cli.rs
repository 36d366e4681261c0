//! `cargo simulate`: run a scenario, check determinism, sweep seeds.
//!
//! ```text
//! cargo simulate SCENARIO [--seed N] [--out DIR] [--trace]
//! cargo simulate check-determinism SCENARIO [--seed N]
//! cargo simulate sweep SCENARIO --seeds A..B [--shard i/n] [--jobs J] [--out DIR]
//! cargo simulate sweep-merge --out DIR SHARD_DIR...
//! cargo simulate grid SCENARIO --vary KEY=v1,v2,... [--vary ...] [--jobs N] [--out DIR]
//! cargo simulate shrink SCENARIO --seed N --out DIR [--check NAME] [--runs-max R]
//! cargo simulate omb WORKLOAD.yaml --driver DRIVER.yaml [--brokers N] [--profile HOST.json] --out DIR
//! cargo simulate calibrate --out FILE [--runs N] [--name NAME]
//! cargo simulate validate --out DIR [--profile FILE] [--runs N] [--only NAME] [--measured FILE]
//! ```
//! Exit codes: see [`crate::exit`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser;
use serde_json::{json, Value};

use crate::exit;
use crate::run::{self, RunOptions};
use crate::scenario::Scenario;
use crate::sweep::{MergeArgs, SweepArgs};
use crate::trace::first_divergence;

#[derive(Debug, Parser)]
#[command(
    name = "cargo simulate",
    about = "Run a Loglab scenario under the deterministic simulator"
)]
struct RunArgs {
    /// Scenario file (JSON).
    scenario: String,
    /// Run seed (default: the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory (default: out/<scenario name>).
    #[arg(long)]
    out: Option<String>,
    /// Also write the trace's lines to OUT/trace.txt (the exact input of trace_hash).
    #[arg(long)]
    trace: bool,
    /// One line only (used by sweep).
    #[arg(long)]
    quiet: bool,
    /// Write the SVG plots and index.html only if the run does not pass (used by sweep: a
    /// passing seed keeps summary.json, and its replay command draws the plots).
    #[arg(long)]
    plots_if_failed: bool,
}

#[derive(Debug, Parser)]
#[command(name = "cargo simulate check-determinism")]
struct CheckArgs {
    scenario: String,
    #[arg(long)]
    seed: Option<u64>,
    /// Where the two runs write (default: out/determinism/<scenario name>).
    #[arg(long)]
    out: Option<String>,
}

#[derive(Debug, Parser)]
#[command(name = "cargo simulate omb")]
struct OmbArgs {
    /// OMB workload YAML.
    workload: String,
    /// OMB Kafka driver YAML.
    #[arg(long)]
    driver: String,
    /// Brokers in the simulated cluster.
    #[arg(long, default_value_t = 3)]
    brokers: u32,
    /// OMB workers: client machines the producers are spread over.
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// A host profile (a shipped name such as nvme-generic, or a file: `cluster.host`'s keys),
    /// the scenario's `cluster.host.profile`; default NVMe, 4 GiB page cache, 10 Gb/s, 50 µs,
    /// 8 cores.
    #[arg(long)]
    profile: Option<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Overrides warmupDurationMinutes.
    #[arg(long = "warmup-minutes")]
    warmup_minutes: Option<f64>,
    /// Overrides testDurationMinutes.
    #[arg(long = "test-minutes")]
    test_minutes: Option<f64>,
    /// A backlog (consumerBacklogSizeGB) per topic at most, GiB: the simulated disks hold real bytes.
    #[arg(long = "backlog-max-gb", default_value_t = 1.0)]
    backlog_max_gb: f64,
    /// Stats window, seconds (OMB: 10).
    #[arg(long = "window-s", default_value_t = client::omb::result::WINDOW_S_DEFAULT)]
    window_s: f64,
    /// Output directory: scenario.json (the generated scenario), omb-result.json, summary.json,
    /// plots, index.html.
    #[arg(long, default_value = "out/omb")]
    out: String,
}

pub(crate) fn load(path: &str) -> Result<Scenario, i32> {
    Scenario::load(Path::new(path)).map_err(|e| {
        eprintln!("error: {path}: {e}");
        exit::USAGE
    })
}

pub(crate) use crate::exit::parse_args;

/// `sim --help`, `sim help`, and `sim` without arguments.
pub const HELP: &str = "\
sim: Loglab's deterministic simulator (build and run it with `cargo simulate`)

USAGE:
  cargo simulate SCENARIO [--seed N] [--out DIR] [--trace]    run one scenario (also: `run SCENARIO ...`)
  cargo simulate check-determinism SCENARIO [--seed N]        run one seed twice in two processes, compare trace hashes
  cargo simulate sweep SCENARIO --seeds A..B [--shard i/n] [--jobs J] [--out DIR]
                                                              many seeds, one process each (A..B excludes B, A..=B
                                                              includes it); --shard i/n runs the seeds at 0-based
                                                              positions i, i+n, ... of the range; a sweep into a DIR
                                                              with finished seeds (DIR/seed-N/result.json) skips them;
                                                              DIR/sweep.json has every run and a coverage table (fault
                                                              kinds x roles hit); plots only for seeds that fail
  cargo simulate sweep-merge --out DIR SHARD_DIR...           merge shard directories into DIR/sweep.json (refuses mixed
                                                              scenarios and overlapping seeds); deploy/README.md runs
                                                              shards as a Kubernetes Indexed Job or a Slurm job array
  cargo simulate shrink SCENARIO --seed N --out DIR [--check NAME] [--runs-max R] [--jobs J]
                                                              the smallest scenario that still violates the same check:
                                                              the nemesis' faults written out, then faults removed (ddmin),
                                                              shortened, moved earlier, the run, rate, partitions and
                                                              brokers reduced; writes DIR/minimal.json and DIR/shrink.json
  cargo simulate grid SCENARIO --vary KEY=v1,v2,... [--vary ...] [--jobs N] [--out DIR]
                                                              every point of a parameter grid (keys by scenario path or
                                                              Kafka name), one process each; writes DIR/grid.json,
                                                              DIR/grid.csv (throughput, latency, utilization of every
                                                              resource, the bottleneck per point), plots, DIR/index.html;
                                                              options: `cargo simulate grid --help`
  cargo simulate omb WORKLOAD.yaml --driver DRIVER.yaml [--brokers N] [--workers N] [--profile HOST.json]
                  [--warmup-minutes M] [--test-minutes M] --out DIR
                                                              an OpenMessaging Benchmark workload: writes DIR/scenario.json
                                                              (the generated scenario) and DIR/omb-result.json (OMB's result)
  cargo simulate calibrate --out FILE [--runs N] [--name NAME]
                                                              measure this machine with the real broker and code; write a
                                                              host profile (load it as cluster.host.profile)
  cargo simulate validate --out DIR [--profile FILE] [--runs N] [--only WORKLOAD] [--measured FILE]
                                                              the throughput model against the real broker: perf produce on
                                                              the release broker and the same workloads simulated with the
                                                              profile; writes DIR/validate.json and prints the ratios
  cargo simulate help [SUBCOMMAND]                            this text, or a subcommand's options
  cargo simulate --version                                    the simulator's version

A run writes DIR/summary.json (verdict, checks with what each examined, throughput offered and
achieved, latency, counters), SVG plots and DIR/index.html (default DIR: out/<scenario name>).
Scenario format: sim/README.md. Shipped scenarios: scenarios/*.json.

EXIT CODES:
  0   pass: every check had its expected outcome
  1   a safety check did not (e.g. an acknowledged write was lost, or a check examined nothing)
  2   liveness: progress did not resume after the faults healed
  3   the simulator crashed (the seed and the replay command are printed)
  4   check-determinism found two runs of one seed that differ
  64  bad command line or scenario file

ENVIRONMENT:
  LOGLAB_SIM_LOG=error|warn|info|debug|trace   print the broker's and clients' log lines to stderr
                                               (plain text, no colour codes)
";

/// When the simulator's `main` started (for `speed.process`: set-up, run, checks and report
/// together), and the CPU seconds the process had used by then.
///
/// A process keeps its CPU time and its peak RSS across `exec`, and `cargo simulate` is cargo
/// until cargo replaces itself with the simulator (`cargo run` execs on Unix): before the
/// baseline, `speed.process` counted cargo's work as the simulator's (a quickstart run through
/// `cargo simulate`: 0.18 CPU s and 67 MiB for the process, of which the simulator 0.04 and 16;
/// right after a build 0.71 CPU s and 70 MiB).
static STARTED: std::sync::OnceLock<(std::time::Instant, f64)> = std::sync::OnceLock::new();

/// The process's CPU seconds (user + system) and `ru_maxrss` in bytes, from `getrusage`.
fn rusage_self() -> (f64, u64) {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_SELF is always valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime) + secs(ru.ru_stime), (ru.ru_maxrss as u64) * 1024)
}

/// The peak resident set of this program's own memory, in bytes: `VmHWM` of /proc/self/status
/// (the memory the last `exec` made; `ru_maxrss` keeps the peak of the program it replaced).
fn own_peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kb: u64 = kb.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kb * 1024)
}

/// The simulator's CPU seconds (user + system) since its `main` started, and its peak resident
/// set size in bytes (`ru_maxrss` where /proc has no `VmHWM`).
pub fn process_usage() -> (f64, u64) {
    let (cpu_s, maxrss) = rusage_self();
    let before_main_s = STARTED.get().map_or(0.0, |s| s.1);
    ((cpu_s - before_main_s).max(0.0), own_peak_rss_bytes().unwrap_or(maxrss))
}

/// Entry point; returns the process exit code.
pub fn main_with_args(argv: Vec<String>) -> i32 {
    STARTED.get_or_init(|| (std::time::Instant::now(), rusage_self().0));
    let r =
        match argv.get(1).map(String::as_str) {
            Some("--version" | "-V") => {
                println!("sim {}", env!("CARGO_PKG_VERSION"));
                Ok(exit::PASS)
            }
            None | Some("--help" | "-h") => {
                print!("{HELP}");
                Ok(if argv.len() < 2 { exit::USAGE } else { exit::PASS })
            }
            Some("help") => match argv.get(2).map(String::as_str) {
                Some("check-determinism") => {
                    parse_args::<CheckArgs>(&["check-determinism".into(), "--help".into()])
                        .map(|_: CheckArgs| exit::PASS)
                }
                Some("sweep") => parse_args::<SweepArgs>(&["sweep".into(), "--help".into()])
                    .map(|_: SweepArgs| exit::PASS),
                Some("sweep-merge") => {
                    parse_args::<MergeArgs>(&["sweep-merge".into(), "--help".into()])
                        .map(|_: MergeArgs| exit::PASS)
                }
                Some("shrink") => {
                    parse_args::<crate::shrink::ShrinkArgs>(&["shrink".into(), "--help".into()])
                        .map(|_| exit::PASS)
                }
                Some("run") => parse_args::<RunArgs>(&["run".into(), "--help".into()])
                    .map(|_: RunArgs| exit::PASS),
                Some("omb") => parse_args::<OmbArgs>(&["omb".into(), "--help".into()])
                    .map(|_: OmbArgs| exit::PASS),
                _ => {
                    print!("{HELP}");
                    Ok(exit::PASS)
                }
            },
            Some("check-determinism") => check_determinism(&argv[1..]),
            Some("sweep") => sweep(&argv[1..]),
            Some("sweep-merge") => sweep_merge(&argv[1..]),
            Some("shrink") => crate::shrink::main(&argv[1..]),
            Some("grid") => crate::grid::main(&argv[1..]),
            Some("run") => run_cmd(&argv[1..]),
            Some("omb") => omb_cmd(&argv[1..]),
            Some("calibrate") => crate::calibrate::run(&argv[1..]),
            Some("validate") => crate::validate::run(&argv[1..]),
            _ => run_cmd(&argv),
        };
    r.unwrap_or_else(|code| code)
}

fn install_panic_hook(replay: String, seed: u64) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        // A model assertion inside an invariant check is a failed check, not a crash.
        if !crate::invariants::checking() {
            eprintln!("simulator crashed (seed {seed}); replay: {replay}");
        }
    }));
}

fn run_cmd(args: &[String]) -> Result<i32, i32> {
    let a: RunArgs = parse_args(args)?;
    let sc = load(&a.scenario)?;
    let seed = a.seed.unwrap_or(sc.seed);
    let out = a.out.clone().unwrap_or_else(|| format!("out/{}", sc.name));
    let opts = RunOptions {
        keep_trace: a.trace,
        scenario_path: a.scenario.clone(),
        out_dir: out.clone(),
        omb: None,
    };
    let report = Report { quiet: a.quiet, plots_if_failed: a.plots_if_failed };
    run_and_report(&sc, seed, &opts, report).map(|(code, _)| code)
}

/// `cargo simulate omb`: maps the workload onto a scenario, writes it, runs it like any scenario
/// and writes OMB's result beside the summary.
fn omb_cmd(args: &[String]) -> Result<i32, i32> {
    let a: OmbArgs = parse_args(args)?;
    let usage = |e: String| {
        eprintln!("error: {e}");
        exit::USAGE
    };
    let (w, d, mut notes) =
        crate::omb::load(Path::new(&a.workload), Path::new(&a.driver)).map_err(usage)?;
    let host = match &a.profile {
        None => None,
        Some(p) => Some(crate::scenario::profile::host_naming(p).map_err(usage)?),
    };
    let o = crate::omb::OmbSim {
        brokers: a.brokers,
        workers: a.workers,
        host,
        warmup_minutes: a.warmup_minutes,
        test_minutes: a.test_minutes,
        seed: a.seed,
        backlog_max_gb: a.backlog_max_gb,
        window_s: a.window_s,
    };
    let mut mapped = crate::omb::map(&w, &d, &o);
    notes.append(&mut mapped.notes);
    mapped.notes = notes;
    let dir = PathBuf::from(&a.out);
    let scenario_path = dir.join("scenario.json");
    let text = serde_json::to_string_pretty(&mapped.scenario).unwrap_or_default() + "\n";
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&scenario_path, &text))
        .map_err(|e| usage(format!("{}: {e}", scenario_path.display())))?;
    let sc = Scenario::parse(&text).map_err(|e| usage(format!("the generated scenario: {e}")))?;
    for n in &mapped.notes {
        println!("note: {n}");
    }
    let opts = RunOptions {
        keep_trace: false,
        scenario_path: scenario_path.display().to_string(),
        out_dir: a.out.clone(),
        omb: Some(std::sync::Arc::new(mapped)),
    };
    let (code, omb) = run_and_report(&sc, a.seed, &opts, Report::default())?;
    if let Some(r) = omb {
        let path = dir.join("omb-result.json");
        let json = serde_json::to_string_pretty(&r).unwrap_or_default() + "\n";
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("error: writing {}: {e}", path.display());
            return Ok(exit::CRASH);
        }
        println!("{}", client::omb::result::summary_line(&r));
        println!("omb result: {}", path.display());
    }
    Ok(code)
}

/// What a run writes and prints beside its summary.json.
#[derive(Debug, Clone, Copy, Default)]
struct Report {
    /// One line on stdout, without the replay and report lines.
    quiet: bool,
    /// Plots and index.html only for a run that does not pass.
    plots_if_failed: bool,
}

/// Runs a loaded scenario, writes its report and prints its summary line: the exit code and,
/// for OMB runs, OMB's result.
fn run_and_report(
    sc: &Scenario,
    seed: u64,
    opts: &RunOptions,
    report: Report,
) -> Result<(i32, Option<client::omb::result::OmbResult>), i32> {
    let out = opts.out_dir.clone();
    let sc = sc.clone();
    let replay = run::replay_command(opts, seed);
    install_panic_hook(replay.clone(), seed);
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run::run(&sc, seed, opts)));
    let Ok(output) = result else {
        return Ok((exit::CRASH, None));
    };
    let dir = PathBuf::from(&out);
    let plots = !(report.plots_if_failed && output.exit_code == exit::PASS);
    let written = if plots {
        reports::write_run_with(
            &dir,
            &output.summary,
            &plot_options(&output),
            &output.markers,
            output.x_max,
        )
        .map_err(|e| e.to_string())
    } else {
        // summary.json is written below, with the process's figures.
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))
    };
    if let Err(e) = written {
        eprintln!("error: {e}");
        return Ok((exit::CRASH, None));
    }
    // The whole process — parse, set-up, run, checks, report — in CPU seconds and peak RSS
    // (wall time on a shared machine is mostly contention; CPU time is the figure to compare).
    let (cpu_s, rss) = process_usage();
    let mut summary = output.summary.clone();
    let sim_s = summary["speed"]["simulated_s"].as_f64().unwrap_or(0.0);
    let sends = summary["history"]["sends"].as_u64().unwrap_or(0) as f64;
    summary["speed"]["process"] = json!({
        "cpu_s": cpu_s,
        "peak_rss_bytes": rss,
        "wall_s": STARTED.get().map_or(0.0, |s| s.0.elapsed().as_secs_f64()),
        "simulated_s_per_cpu_s": if cpu_s > 0.0 { sim_s / cpu_s } else { 0.0 },
        "records_per_cpu_s": if cpu_s > 0.0 { sends / cpu_s } else { 0.0 },
        "covers": "the whole process from the simulator's start: scenario parse, set-up, simulation, checks and report (not what ran in the process before an exec made it the simulator, e.g. cargo's work under `cargo simulate`)",
    });
    if let Err(e) = std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n",
    ) {
        eprintln!("error: rewriting summary.json: {e}");
        return Ok((exit::CRASH, None));
    }
    if let Some(lines) = &output.trace_lines {
        let mut text = lines.join("\n");
        text.push('\n');
        if let Err(e) = std::fs::write(dir.join("trace.txt"), text) {
            eprintln!("error: writing trace.txt: {e}");
        }
    }
    let s = &summary;
    let failing: Vec<String> = s["checks"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, c)| c["outcome"] != c["expected"])
                .map(|(k, c)| {
                    format!(
                        "{k} {} (expected {})",
                        c["outcome"].as_str().unwrap_or(""),
                        c["expected"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let speed = &s["speed"];
    let rf = &s["request_faults"];
    let requests = match rf["rules"].as_array().map_or(0, Vec::len) {
        0 => String::new(),
        n => format!(
            " | request faults: {n} rules, {} installed, {} fired {} times",
            rf["installed"].as_u64().unwrap_or(0),
            rf["fired_rules"].as_u64().unwrap_or(0),
            rf["fired_total"].as_u64().unwrap_or(0)
        ),
    };
    let mut stdout = std::io::stdout();
    // A closed pipe (`| head -1`) is not a crash: the run's files are written already.
    let _ = writeln!(
        stdout,
        "{}: {} seed {} trace {} | {} checks as expected{}{requests} | {:.1} simulated s in {:.2} wall s ({:.1}x), {:.2} CPU s, {} MiB peak",
        output.verdict.to_uppercase(),
        sc.name,
        seed,
        s["trace_hash"].as_str().unwrap_or(""),
        s["checks"].as_object().map(|m| m.len() - failing.len()).unwrap_or(0),
        if failing.is_empty() { String::new() } else { format!("; FAILED: {}", failing.join(", ")) },
        speed["simulated_s"].as_f64().unwrap_or(0.0),
        speed["wall_s"].as_f64().unwrap_or(0.0),
        speed["simulated_s_per_wall_s"].as_f64().unwrap_or(0.0),
        cpu_s,
        rss >> 20,
    );
    if !report.quiet {
        let _ = writeln!(stdout, "replay: {replay}");
        if plots {
            let _ = writeln!(stdout, "report: {}/index.html", out);
        }
    }
    Ok((output.exit_code, output.omb))
}

/// Plots show the workload, not the set-up or the oracle's read-back after it: throughput and
/// latency over the measurement window, everything else from 0 until a second after producers
/// stopped; latency on a log scale (a 4 ms median and a 3 s outlier both readable).
fn plot_options(output: &run::RunOutput) -> Vec<(reports::Chart, reports::PlotOptions)> {
    let s = &output.summary;
    let stop_s = s["settings"]["producers_stop_s"].as_f64().unwrap_or(output.x_max);
    let window = s["throughput"]["window_s"]
        .as_array()
        .and_then(|w| Some((w.first()?.as_f64()?, w.get(1)?.as_f64()?)));
    let end = (stop_s + 1.0).min(output.x_max.max(stop_s));
    output
        .charts
        .iter()
        .cloned()
        .map(|c| {
            let o = match (c.file.as_str(), window) {
                ("produce_latency.svg", Some((a, b))) => {
                    reports::PlotOptions::log().with_x_range(a, b)
                }
                ("produce_latency.svg", None) => reports::PlotOptions::log().with_x_range(0.0, end),
                ("throughput.svg", Some((a, b))) => {
                    reports::PlotOptions::default().with_x_range(a, b)
                }
                _ => reports::PlotOptions::default().with_x_range(0.0, end),
            };
            (c, o)
        })
        .collect()
}

fn check_determinism(args: &[String]) -> Result<i32, i32> {
    let a: CheckArgs = parse_args(args)?;
    let sc = load(&a.scenario)?;
    let seed = a.seed.unwrap_or(sc.seed);
    let base = a.out.clone().unwrap_or_else(|| format!("out/determinism/{}", sc.name));
    let exe = std::env::current_exe().map_err(|e| {
        eprintln!("error: {e}");
        exit::CRASH
    })?;
    // Two separate processes: nothing in memory is shared between the runs.
    let mut hashes = Vec::new();
    for run_name in ["a", "b"] {
        let out = format!("{base}/{run_name}");
        let status = Command::new(&exe)
            .args([
                a.scenario.as_str(),
                "--seed",
                &seed.to_string(),
                "--out",
                &out,
                "--trace",
                "--quiet",
            ])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| {
                eprintln!("error: cannot run {exe:?}: {e}");
                exit::CRASH
            })?;
        if status.code() == Some(exit::CRASH) || status.code().is_none() {
            eprintln!("run {run_name} crashed");
            return Ok(exit::CRASH);
        }
        let summary = read_json(&Path::new(&out).join("summary.json")).ok_or(exit::CRASH)?;
        hashes.push(summary["trace_hash"].as_str().unwrap_or("").to_string());
    }
    if hashes[0] == hashes[1] {
        println!(
            "DETERMINISTIC: {} seed {seed}: both runs hashed {} (separate processes)",
            sc.name, hashes[0]
        );
        return Ok(exit::PASS);
    }
    let lines = |r: &str| {
        std::fs::read_to_string(format!("{base}/{r}/trace.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (la, lb) = (lines("a"), lines("b"));
    println!("NONDETERMINISTIC: {} seed {seed}: {} vs {}", sc.name, hashes[0], hashes[1]);
    if let Some((i, x, y)) = first_divergence(&la, &lb) {
        println!(
            "first diverging trace event #{i}:\n  run a: {}\n  run b: {}",
            x.unwrap_or("(end of trace)"),
            y.unwrap_or("(end of trace)")
        );
        println!("traces: {base}/a/trace.txt {base}/b/trace.txt");
    }
    Ok(exit::NONDETERMINISM)
}

fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

fn sweep(args: &[String]) -> Result<i32, i32> {
    let a: SweepArgs = parse_args(args)?;
    let sc = load(&a.scenario)?;
    crate::sweep::sweep(&a, &sc.name)
}

fn sweep_merge(args: &[String]) -> Result<i32, i32> {
    let a: MergeArgs = parse_args(args)?;
    crate::sweep::merge(&a)
}
