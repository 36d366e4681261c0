//! `cargo simulate calibrate --out FILE`: measures this machine with the real code and writes a
//! host profile that scenarios load as `cluster.host.profile`.
//!
//! The simulator binary is built with `--cfg madsim`, whose runtime replaces time, sockets and
//! threads; the measuring is real IO, so it lives in the real-world binary `calibrate` of the
//! client crate (`client::calibrate`). This command builds it with the release broker and
//! `perf` (`cargo build --release -p broker -p client`, without the simulator's flags) and runs
//! it in the current directory, whose filesystem the disk figures are of.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;

use crate::exit;

#[derive(Debug, Parser)]
#[command(name = "cargo simulate calibrate")]
pub struct CalibrateArgs {
    /// The profile to write (JSON).
    #[arg(long)]
    out: PathBuf,
    /// The profile's name (default: the file's stem).
    #[arg(long)]
    name: Option<String>,
    /// Runs per figure, 5..=50 (each figure is their median, with min and max).
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Use the binaries in target/release as they are (do not run cargo build).
    #[arg(long)]
    no_build: bool,
}

/// The workspace root (the simulator is always run from its own checkout).
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `cargo` without the simulated build's settings (a `RUSTFLAGS` would override ours).
pub(crate) fn cargo(root: &Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root);
    for v in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
    ] {
        c.env_remove(v);
    }
    c
}

/// `cargo simulate calibrate ...`; `args[0]` is `calibrate`.
pub fn run(args: &[String]) -> Result<i32, i32> {
    let a: CalibrateArgs = crate::exit::parse_args(args)?;
    if !(5..=50).contains(&a.runs) {
        eprintln!("error: --runs {} is not in 5..=50", a.runs);
        return Err(exit::USAGE);
    }
    let root = workspace();
    if !a.no_build {
        eprintln!("calibrate: cargo build --release -p broker -p client (in {})", root.display());
        let built =
            cargo(&root).args(["build", "--release", "-p", "broker", "-p", "client"]).status();
        match built {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("error: cargo build failed ({s})");
                return Ok(exit::CRASH);
            }
            Err(e) => {
                eprintln!("error: cannot run cargo: {e}");
                return Ok(exit::CRASH);
            }
        }
    }
    let release = root.join("target/release");
    let mut cmd = Command::new(release.join("calibrate"));
    cmd.arg("--out").arg(&a.out).arg("--runs").arg(a.runs.to_string());
    cmd.arg("--broker").arg(release.join("broker")).arg("--perf").arg(release.join("perf"));
    if let Some(n) = &a.name {
        cmd.arg("--name").arg(n);
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(exit::PASS),
        Ok(s) => {
            eprintln!("error: calibrate failed ({s})");
            Ok(exit::CRASH)
        }
        Err(e) => {
            eprintln!("error: {}: {e}", release.join("calibrate").display());
            Ok(exit::CRASH)
        }
    }
}
