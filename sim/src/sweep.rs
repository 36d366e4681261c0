//! `cargo simulate sweep` and `cargo simulate sweep-merge`: many seeds of one scenario, one
//! process per seed, sharded over machines and resumable.
//!
//! - **Shards**: `--shard i/n` (0 ≤ i < n) runs the seeds whose 0-based position in the
//!   `--seeds` range is ≡ i (mod n): `--seeds 1..11 --shard 1/3` runs 2, 5, 8. The shards of one
//!   range are disjoint and cover it, whatever machine runs them.
//! - **Resume**: after a seed's process ends, the sweep writes `DIR/seed-N/result.json`
//!   atomically (a temporary file renamed over it). A sweep into a directory that already holds
//!   a complete result for a seed (it parses, names the seed and the same scenario text by hash)
//!   skips that seed and says how many it skipped; a missing, partial or unparsable result is
//!   run again. A seed whose process was killed by a signal gets no result (it is redone).
//! - **Merge**: `sweep-merge --out DIR SHARD_DIR...` reads each shard's `sweep.json` and writes
//!   one `sweep.json` with the schema of a single sweep's, refusing shards of different
//!   scenarios (name or text), of different partitionings, or with a seed in common.
//! - **Coverage**: `sweep.json`'s `coverage` sums the runs' tables ([`crate::coverage`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser;
use serde_json::{json, Value};

use crate::coverage;
use crate::exit;

/// Seeds per sweep at most, and shards at most.
pub const SEEDS_MAX: usize = 100_000;
pub const SHARDS_MAX: u32 = 100_000;
/// A seed's result file in its directory.
pub const RESULT_FILE: &str = "result.json";

#[derive(Debug, Parser)]
#[command(
    name = "cargo simulate sweep",
    about = "Run many seeds of a scenario (one process each); resumable and shardable",
    after_help = "Shards: --shard i/n runs the seeds whose 0-based position in the --seeds range is i mod n (i from 0 to n-1), so n machines given the same range and the indexes 0..n-1 run every seed once. A sweep into a DIR that already holds DIR/seed-N/result.json (complete, same scenario text) skips seed N. Merge shard directories with `cargo simulate sweep-merge --out DIR SHARD_DIR...`."
)]
pub struct SweepArgs {
    pub scenario: String,
    /// Seed range, `A..B` (B exclusive) or `A..=B`, or one seed.
    #[arg(long)]
    pub seeds: String,
    /// Run only shard i of n (0 <= i < n): the seeds at positions i, i+n, i+2n, ... of the range.
    #[arg(long)]
    pub shard: Option<String>,
    /// Runs at once, 1..=64 (each seed is its own process).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Default: out/sweep/<scenario name>.
    #[arg(long)]
    pub out: Option<String>,
}

#[derive(Debug, Parser)]
#[command(
    name = "cargo simulate sweep-merge",
    about = "Merge the directories of a sharded sweep into one sweep.json"
)]
pub struct MergeArgs {
    /// Where the merged sweep.json goes.
    #[arg(long)]
    pub out: String,
    /// The shards' --out directories (each with its sweep.json).
    #[arg(required = true)]
    pub shards: Vec<String>,
}

pub fn parse_seeds(s: &str) -> Option<Vec<u64>> {
    if let Some((a, b)) = s.split_once("..=") {
        let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        return (a <= b && b - a < SEEDS_MAX as u64).then(|| (a..=b).collect());
    }
    if let Some((a, b)) = s.split_once("..") {
        let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        return (a < b && b - a <= SEEDS_MAX as u64).then(|| (a..b).collect());
    }
    s.trim().parse().ok().map(|x| vec![x])
}

/// `i/n` with 0 <= i < n <= [`SHARDS_MAX`].
pub fn parse_shard(s: &str) -> Option<(u32, u32)> {
    let (i, n) = s.split_once('/')?;
    let (i, n): (u32, u32) = (i.trim().parse().ok()?, n.trim().parse().ok()?);
    (n > 0 && n <= SHARDS_MAX && i < n).then_some((i, n))
}

/// The seeds of shard `i` of `n`: those at positions ≡ i (mod n) of the range.
pub fn shard_seeds(seeds: &[u64], i: u32, n: u32) -> Vec<u64> {
    seeds
        .iter()
        .enumerate()
        .filter(|(k, _)| *k % n as usize == i as usize)
        .map(|(_, s)| *s)
        .collect()
}

/// The scenario file's text, hashed (FNV-1a 64): results of another text are not reused.
pub fn scenario_hash(text: &str) -> String {
    let mut h = crate::trace::Fnv1a64::new();
    h.update(text.as_bytes());
    crate::trace::hex(h.finish())
}

/// Writes `text` to `path` through a temporary file renamed over it: a reader sees the old
/// file, the whole new one, or none.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

/// What a directory holds for a seed.
enum Done {
    Complete(Value),
    /// A complete result of another scenario text (its hash).
    Foreign(String),
    Missing,
}

fn seed_dir(base: &str, seed: u64) -> PathBuf {
    Path::new(base).join(format!("seed-{seed}"))
}

fn done(base: &str, seed: u64, hash: &str) -> Done {
    let Some(r) = read_json(&seed_dir(base, seed).join(RESULT_FILE)) else { return Done::Missing };
    if r["seed"].as_u64() != Some(seed) || !r["verdict"].is_string() {
        return Done::Missing;
    }
    match r["scenario_hash"].as_str() {
        Some(h) if h == hash => Done::Complete(r),
        Some(h) => Done::Foreign(h.to_string()),
        None => Done::Missing,
    }
}

/// What the sweep knows of its scenario, written into every result and `sweep.json`.
struct Meta {
    name: String,
    file: String,
    hash: String,
    base: String,
}

/// A finished seed's result (`result.json`) from its exit code and summary.
fn result_of(m: &Meta, seed: u64, code: i32, s: &Value) -> Value {
    let verdict = match code {
        exit::PASS => "pass",
        exit::CRASH => "crash",
        _ => "fail",
    };
    let failed_checks: Vec<&String> = s["checks"]
        .as_object()
        .map(|c| c.iter().filter(|(_, v)| v["outcome"] != v["expected"]).map(|(k, _)| k).collect())
        .unwrap_or_default();
    json!({
        "seed": seed,
        "scenario": m.name,
        "scenario_hash": m.hash,
        "verdict": verdict,
        "exit_code": code,
        "trace_hash": s["trace_hash"].clone(),
        "failed_checks": failed_checks,
        "replay": format!("cargo simulate {} --seed {seed} --out {}", m.file, seed_dir(&m.base, seed).display()),
        "cpu_s": s["speed"]["process"]["cpu_s"].clone(),
        "coverage": s["coverage"]["kinds"].clone(),
    })
}

/// Runs `seeds` (at most `jobs` at once), writing each seed's result; returns them by seed.
fn run_seeds(
    m: &Meta,
    exe: &Path,
    seeds: &[u64],
    jobs: usize,
) -> Result<BTreeMap<u64, Value>, i32> {
    let mut results = BTreeMap::new();
    let started = std::time::Instant::now();
    let spawn = |seed: &u64| {
        let out = seed_dir(&m.base, *seed).display().to_string();
        Command::new(exe)
            .args([m.file.as_str(), "--seed", &seed.to_string(), "--out", &out, "--quiet"])
            .arg("--plots-if-failed")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    run_children(seeds, jobs, spawn, |seed, code| {
        results.insert(*seed, finish_seed(m, *seed, code));
        progress(&results, seeds.len(), started);
    })?;
    Ok(results)
}

/// Runs one child process per item, at most `jobs` at once (`spawn` starts an item's), and calls
/// `done` with the item and its exit code (`None`: a signal ended it) as each ends, in the order
/// they end. A child that cannot be started ends the whole run (those running are waited for).
pub fn run_children<T>(
    items: &[T],
    jobs: usize,
    mut spawn: impl FnMut(&T) -> std::io::Result<std::process::Child>,
    mut done: impl FnMut(&T, Option<i32>),
) -> Result<(), i32> {
    let mut pending = items.iter();
    let mut running: Vec<(&T, std::process::Child)> = Vec::new();
    let mut failed = false;
    loop {
        while running.len() < jobs.max(1) && !failed {
            let Some(item) = pending.next() else { break };
            match spawn(item) {
                Ok(child) => running.push((item, child)),
                Err(e) => {
                    eprintln!("\nerror: cannot start a simulator process: {e}");
                    failed = true;
                }
            }
        }
        if running.is_empty() {
            return if failed { Err(exit::CRASH) } else { Ok(()) };
        }
        let mut i = 0;
        while i < running.len() {
            let Ok(Some(status)) = running[i].1.try_wait() else {
                i += 1;
                continue;
            };
            let (item, _) = running.remove(i);
            done(item, status.code());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A seed's process ended: its result, persisted unless a signal ended it (then it is redone).
fn finish_seed(m: &Meta, seed: u64, code: Option<i32>) -> Value {
    let dir = seed_dir(&m.base, seed);
    let summary = read_json(&dir.join("summary.json")).unwrap_or(Value::Null);
    let r = result_of(m, seed, code.unwrap_or(exit::CRASH), &summary);
    if code.is_some() {
        let text = serde_json::to_string_pretty(&r).unwrap_or_default() + "\n";
        if let Err(e) =
            std::fs::create_dir_all(&dir).and_then(|_| write_atomic(&dir.join(RESULT_FILE), &text))
        {
            eprintln!("\nerror: writing {}: {e}", dir.join(RESULT_FILE).display());
        }
    }
    r
}

fn progress(results: &BTreeMap<u64, Value>, total: usize, started: std::time::Instant) {
    let failed = results.values().filter(|r| r["verdict"] != "pass").count();
    let done = results.len();
    let width = 30;
    let filled = done * width / total.max(1);
    eprint!(
        "\r[{}{}] {done}/{total} seeds, {failed} failed, {:.0}s",
        "#".repeat(filled),
        " ".repeat(width - filled),
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::stderr().flush();
}

/// A `runs` row of `sweep.json` from a result.
fn row(r: &Value) -> Value {
    json!({"seed": r["seed"], "verdict": r["verdict"], "exit_code": r["exit_code"],
        "trace_hash": r["trace_hash"], "failed_checks": r["failed_checks"], "replay": r["replay"]})
}

/// `sweep.json`: `rows` by seed, the coverage summed, `extra` fields over the defaults.
fn document(m: &Meta, rows: &BTreeMap<u64, Value>, cov: &coverage::Table, extra: Value) -> Value {
    let failed: Vec<u64> =
        rows.iter().filter(|(_, r)| r["verdict"] != "pass").map(|(s, _)| *s).collect();
    let mut doc = json!({
        "scenario": m.name,
        "scenario_file": m.file,
        "scenario_hash": m.hash,
        "seeds": rows.len(),
        "failed": failed,
        "runs": rows.values().collect::<Vec<_>>(),
        "coverage": coverage::to_json(cov, rows.len() as u64),
    });
    if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
        d.extend(e);
    }
    doc
}

/// Prints the table of runs and the failures; returns the sweep's exit code.
fn report(doc: &Value) -> i32 {
    println!("{:>8}  {:<8}  {:>4}  {:<16}", "seed", "verdict", "exit", "trace_hash");
    let runs = doc["runs"].as_array().cloned().unwrap_or_default();
    for r in &runs {
        println!(
            "{:>8}  {:<8}  {:>4}  {:<16}",
            r["seed"].as_u64().unwrap_or(0),
            r["verdict"].as_str().unwrap_or("?"),
            r["exit_code"].as_i64().unwrap_or(-1),
            r["trace_hash"].as_str().unwrap_or("-")
        );
    }
    let failed: Vec<&Value> = runs.iter().filter(|r| r["verdict"] != "pass").collect();
    for r in &failed {
        println!("FAILED seed {}: {}", r["seed"], r["replay"].as_str().unwrap_or(""));
    }
    println!("{} seeds, {} passed, {} failed", runs.len(), runs.len() - failed.len(), failed.len());
    if failed.is_empty() {
        exit::PASS
    } else {
        exit::CHECK_VIOLATED
    }
}

fn write_doc(dir: &Path, doc: &Value) -> Result<(), i32> {
    let text = serde_json::to_string_pretty(doc).unwrap_or_default() + "\n";
    std::fs::create_dir_all(dir).and_then(|_| write_atomic(&dir.join("sweep.json"), &text)).map_err(
        |e| {
            eprintln!("error: writing {}: {e}", dir.join("sweep.json").display());
            exit::CRASH
        },
    )
}

fn usage(msg: String) -> i32 {
    eprintln!("error: {msg}");
    exit::USAGE
}

/// `cargo simulate sweep`.
pub fn sweep(a: &SweepArgs, name: &str) -> Result<i32, i32> {
    let text =
        std::fs::read_to_string(&a.scenario).map_err(|e| usage(format!("{}: {e}", a.scenario)))?;
    let seeds = parse_seeds(&a.seeds).ok_or_else(|| usage(format!("--seeds {}: expected a non-empty range A..B (B excluded, B > A) or A..=B (B >= A) of at most {SEEDS_MAX} seeds, or one seed", a.seeds)))?;
    if a.jobs == 0 || a.jobs > 64 {
        return Err(usage(format!("--jobs {}: expected 1..=64 runs at once", a.jobs)));
    }
    let shard = match &a.shard {
        None => None,
        Some(s) => Some(parse_shard(s).ok_or_else(|| {
            usage(format!("--shard {s}: expected i/n with 0 <= i < n <= {SHARDS_MAX}"))
        })?),
    };
    let mine = shard.map_or_else(|| seeds.clone(), |(i, n)| shard_seeds(&seeds, i, n));
    let base = a.out.clone().unwrap_or_else(|| format!("out/sweep/{name}"));
    let m =
        Meta { name: name.to_string(), file: a.scenario.clone(), hash: scenario_hash(&text), base };
    let (mut rows, mut cov, todo) = resume(&m, &mine)?;
    let skipped = mine.len() - todo.len();
    if skipped > 0 {
        eprintln!(
            "{}: {skipped} of {} seeds already done (their {RESULT_FILE}), skipped",
            m.base,
            mine.len()
        );
    }
    let exe = std::env::current_exe().map_err(|_| exit::CRASH)?;
    let fresh = run_seeds(&m, &exe, &todo, a.jobs)?;
    eprintln!();
    for r in fresh.values() {
        add_result(&mut rows, &mut cov, r);
    }
    let extra = json!({"seed_range": a.seeds, "shard": a.shard, "skipped": skipped});
    let doc = document(&m, &rows, &cov, extra);
    let code = report(&doc);
    if skipped > 0 {
        println!("({skipped} of them done by an earlier sweep into {}: skipped)", m.base);
    }
    write_doc(Path::new(&m.base), &doc)?;
    Ok(code)
}

fn add_result(rows: &mut BTreeMap<u64, Value>, cov: &mut coverage::Table, r: &Value) {
    if let Some(t) = coverage::from_json(&r["coverage"]) {
        coverage::add(cov, &t);
    }
    rows.insert(r["seed"].as_u64().unwrap_or(0), row(r));
}

/// The results already in the directory, and the seeds still to run; a result of another
/// scenario text refuses the sweep.
type Resumed = (BTreeMap<u64, Value>, coverage::Table, Vec<u64>);

fn resume(m: &Meta, seeds: &[u64]) -> Result<Resumed, i32> {
    let (mut rows, mut cov, mut todo) = (BTreeMap::new(), coverage::Table::new(), Vec::new());
    for &seed in seeds {
        match done(&m.base, seed, &m.hash) {
            Done::Complete(r) => add_result(&mut rows, &mut cov, &r),
            Done::Missing => todo.push(seed),
            Done::Foreign(h) => {
                return Err(usage(format!("{}: holds a result of another version of the scenario (hash {h}, {} now {}): sweep into a fresh --out, or delete it", seed_dir(&m.base, seed).join(RESULT_FILE).display(), m.file, m.hash)));
            }
        }
    }
    Ok((rows, cov, todo))
}

/// `cargo simulate sweep-merge`.
pub fn merge(a: &MergeArgs) -> Result<i32, i32> {
    let mut docs = Vec::new();
    for d in &a.shards {
        let p = Path::new(d).join("sweep.json");
        let doc = read_json(&p).ok_or_else(|| {
            usage(format!(
                "{}: missing or unreadable: did that shard finish? (run it again: it resumes)",
                p.display()
            ))
        })?;
        docs.push((d.clone(), doc));
    }
    let first = &docs[0].1;
    let m = Meta {
        name: first["scenario"].as_str().unwrap_or("").to_string(),
        file: first["scenario_file"].as_str().unwrap_or("").to_string(),
        hash: first["scenario_hash"].as_str().unwrap_or("").to_string(),
        base: a.out.clone(),
    };
    let (rows, cov, missing) = merge_docs(&m, &docs)?;
    if !missing.is_empty() {
        eprintln!(
            "warning: shards {missing:?} of the partitioning are not among the merged directories"
        );
    }
    let extra = json!({"seed_range": first["seed_range"], "shard": null, "skipped": 0,
        "merged_from": docs.iter().map(|(d, _)| d).collect::<Vec<_>>(), "missing_shards": missing});
    let doc = document(&m, &rows, &cov, extra);
    let code = report(&doc);
    write_doc(Path::new(&a.out), &doc)?;
    println!("merged {} shard directories into {}/sweep.json", docs.len(), a.out);
    Ok(code)
}

/// The merged rows and coverage, and the shard indexes of the partitioning not present.
type Merged = (BTreeMap<u64, Value>, coverage::Table, Vec<u32>);

fn merge_docs(m: &Meta, docs: &[(String, Value)]) -> Result<Merged, i32> {
    let (mut rows, mut cov) = (BTreeMap::<u64, Value>::new(), coverage::Table::new());
    let mut seen_shards = BTreeSet::new();
    let mut parts = None;
    for (dir, doc) in docs {
        if doc["scenario"] != m.name.as_str() || doc["scenario_hash"] != m.hash.as_str() {
            return Err(usage(format!("{dir}: a sweep of {} (scenario hash {}), not of {} (hash {}) like {}: refusing to mix scenarios", doc["scenario"], doc["scenario_hash"], m.name, m.hash, docs[0].0)));
        }
        if let Some((i, n)) = doc["shard"].as_str().and_then(parse_shard) {
            if parts.is_some_and(|p| p != n) {
                return Err(usage(format!(
                    "{dir}: shard {i}/{n} of another partitioning than the others ({} shards)",
                    parts.unwrap_or(0)
                )));
            }
            parts = Some(n);
            seen_shards.insert(i);
        }
        for r in doc["runs"].as_array().map_or(&[][..], Vec::as_slice) {
            let seed = r["seed"].as_u64().unwrap_or(0);
            if let Some(prev) = rows.get(&seed) {
                return Err(usage(format!("seed {seed} is in {dir} and in an earlier directory ({}): refusing overlapping shards", prev["replay"].as_str().unwrap_or("?"))));
            }
            rows.insert(seed, r.clone());
        }
        if let Some(t) = coverage::from_json(&doc["coverage"]["kinds"]) {
            coverage::add(&mut cov, &t);
        }
    }
    let missing =
        parts.map_or_else(Vec::new, |n| (0..n).filter(|i| !seen_shards.contains(i)).collect());
    Ok((rows, cov, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_range_and_results_are_written_whole() {
        let seeds = parse_seeds("1..11").unwrap();
        assert_eq!(shard_seeds(&seeds, 1, 3), vec![2, 5, 8]);
        let mut all: Vec<u64> = (0..3).flat_map(|i| shard_seeds(&seeds, i, 3)).collect();
        all.sort();
        assert_eq!(all, seeds);
        assert_eq!(parse_shard("2/3"), Some((2, 3)));
        assert_eq!(parse_shard("3/3"), None);
        assert_eq!(parse_shard("0/0"), None);
        assert_eq!(parse_seeds("1..=3"), Some(vec![1, 2, 3]));
        assert_eq!(parse_seeds("3..3"), None);
        assert_eq!(parse_seeds("0..200000"), None);
        assert_ne!(scenario_hash("a"), scenario_hash("b"));
        let dir = std::env::temp_dir().join(format!("sweep-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("seed-7")).unwrap();
        let base = dir.display().to_string();
        assert!(matches!(done(&base, 7, "h"), Done::Missing));
        let p = dir.join("seed-7").join(RESULT_FILE);
        std::fs::write(&p, r#"{"seed": 7, "verdict": "pa"#).unwrap();
        assert!(matches!(done(&base, 7, "h"), Done::Missing), "a partial result is redone");
        write_atomic(&p, r#"{"seed": 7, "verdict": "pass", "scenario_hash": "h"}"#).unwrap();
        assert!(matches!(done(&base, 7, "h"), Done::Complete(_)));
        assert!(matches!(done(&base, 7, "other"), Done::Foreign(_)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
