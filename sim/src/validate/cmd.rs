//! The command itself: build, measure for real (or reuse a `measured.json`), simulate each
//! workload's twin in its own process, write `validate.json`, print the table.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser;
use client::calibrate::validate::Workload;
use serde_json::Value;

use super::{default_profile, document, row, scenario, table};
use crate::calibrate::{cargo, workspace};
use crate::exit;

#[derive(Debug, Parser)]
#[command(name = "cargo simulate validate")]
pub struct ValidateArgs {
    /// Output directory: measured.json, sim/<workload>/, validate.json.
    #[arg(long)]
    out: PathBuf,
    /// The host profile the simulator uses (a file, or a shipped name); default
    /// profiles/this-machine.json of this checkout.
    #[arg(long)]
    profile: Option<String>,
    /// Measured runs per real workload, 1..=20 (median, min and max are reported).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Only the workloads with these names (repeat the flag); default every workload.
    #[arg(long)]
    only: Vec<String>,
    /// Reuse the real measurements of an earlier run (its DIR/measured.json): simulate only.
    #[arg(long)]
    measured: Option<PathBuf>,
    /// Use the binaries in target/release as they are (do not run cargo build).
    #[arg(long)]
    no_build: bool,
    /// The simulated runs' seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn usage(msg: String) -> i32 {
    eprintln!("error: {msg}");
    exit::USAGE
}

fn read_json(p: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// The profile as scenarios name it (a shipped name, or an absolute path so the generated
/// scenarios find it from their own directories) and its JSON.
fn profile(a: &ValidateArgs, root: &Path) -> Result<(String, Value), i32> {
    let spec = match &a.profile {
        Some(p) if crate::scenario::profile::shipped(p).is_some() => p.clone(),
        Some(p) => std::fs::canonicalize(p)
            .map_err(|e| usage(format!("--profile {p}: {e}")))?
            .display()
            .to_string(),
        None => default_profile(root).display().to_string(),
    };
    let (_, obj) = crate::scenario::profile::load(&spec, None)
        .map_err(|e| usage(format!("--profile {spec}: {e}")))?;
    Ok((spec, Value::Object(obj)))
}

/// Builds the release binaries and runs the real side; returns its `measured.json`.
fn measure(a: &ValidateArgs, root: &Path) -> Result<PathBuf, i32> {
    if !a.no_build {
        eprintln!("validate: cargo build --release -p broker -p client (in {})", root.display());
        let built =
            cargo(root).args(["build", "--release", "-p", "broker", "-p", "client"]).status();
        if !built.is_ok_and(|s| s.success()) {
            eprintln!("error: cargo build failed");
            return Err(exit::CRASH);
        }
    }
    let release = root.join("target/release");
    let out = a.out.join("measured.json");
    let mut cmd = Command::new(release.join("validate"));
    cmd.arg("--out").arg(&out).args(["--runs", &a.runs.to_string()]);
    cmd.arg("--broker").arg(release.join("broker")).arg("--perf").arg(release.join("perf"));
    for o in &a.only {
        cmd.args(["--only", o]);
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(out),
        other => {
            eprintln!("error: {}: {other:?}", release.join("validate").display());
            Err(exit::CRASH)
        }
    }
}

/// Writes and runs the simulated twin of `w`; returns its directory and summary (`Null` if
/// the run crashed or wrote none).
fn simulate(a: &ValidateArgs, w: &Workload, profile: &str) -> Result<(PathBuf, Value), i32> {
    let dir = a.out.join("sim").join(&w.name);
    let path = dir.join("scenario.json");
    let text = serde_json::to_string_pretty(&scenario(w, profile)).unwrap_or_default() + "\n";
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&path, text))
        .map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let exe = std::env::current_exe().map_err(|_| exit::CRASH)?;
    eprintln!("validate: simulated {} ...", w.name);
    let status = Command::new(&exe)
        .arg(&path)
        .args(["--seed", &a.seed.to_string(), "--out"])
        .arg(&dir)
        .arg("--quiet")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| usage(format!("{}: {e}", exe.display())))?;
    if status.code() == Some(exit::CRASH) || status.code().is_none() {
        eprintln!("validate: the simulation of {} crashed ({status})", w.name);
        return Ok((dir, Value::Null));
    }
    Ok((dir.clone(), read_json(&dir.join("summary.json")).unwrap_or(Value::Null)))
}

/// `cargo simulate validate ...`; `args[0]` is `validate`.
pub fn run(args: &[String]) -> Result<i32, i32> {
    let a: ValidateArgs = crate::exit::parse_args(args)?;
    if !(1..=20).contains(&a.runs) {
        return Err(usage(format!("--runs {} is not in 1..=20", a.runs)));
    }
    let root = workspace();
    let (spec, profile_json) = profile(&a, &root)?;
    std::fs::create_dir_all(&a.out).map_err(|e| usage(format!("{}: {e}", a.out.display())))?;
    let measured_path = match &a.measured {
        Some(p) => p.clone(),
        None => measure(&a, &root)?,
    };
    let measured = read_json(&measured_path).map_err(usage)?;
    let mut rows = Vec::new();
    for m in measured["rows"].as_array().map_or(&[][..], Vec::as_slice) {
        let w: Workload = serde_json::from_value(m["workload"].clone())
            .map_err(|e| usage(format!("{}: a workload: {e}", measured_path.display())))?;
        if !a.only.is_empty() && !a.only.contains(&w.name) {
            continue;
        }
        let (dir, summary) = simulate(&a, &w, &spec)?;
        rows.push(row(m, &summary, &dir));
    }
    let failed = rows.iter().any(|r| r["predicted_mb_s"].is_null());
    let doc = document(&spec, &profile_json, &measured, rows);
    let path = a.out.join("validate.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n")
        .map_err(|e| usage(format!("{}: {e}", path.display())))?;
    print!("{}", table(&doc));
    println!("profile: {spec}");
    println!("written: {}", path.display());
    Ok(if failed { exit::CRASH } else { exit::PASS })
}
