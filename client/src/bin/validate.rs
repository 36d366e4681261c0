//! `validate --out FILE`: the real side of `cargo simulate validate` — every workload of the
//! plan (`client::calibrate::validate::plan`) on the release broker under `perf produce`,
//! `--runs` times each; writes their figures as JSON. Run it through `cargo simulate validate
//! --out DIR`, which builds the release broker, `perf` and this binary first, then runs the same
//! workloads in the simulator and compares.

#[cfg(not(madsim))]
mod real {
    use std::path::PathBuf;
    use std::process::ExitCode;

    use clap::Parser;
    use client::calibrate::validate::plan;
    use client::calibrate::validate::Measured;
    use client::calibrate::validate_real::{self as real, loadavg};
    use serde_json::json;

    #[derive(Debug, Parser)]
    #[command(name = "validate", about = "The real side of `cargo simulate validate`")]
    struct Args {
        /// Where the measurements go (JSON).
        #[arg(long)]
        out: PathBuf,
        /// Measured runs per workload (their median, min and max are reported).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
        runs: u32,
        /// Only the workloads with these names (default: every workload of the plan).
        #[arg(long)]
        only: Vec<String>,
        /// The release broker.
        #[arg(long, default_value = "target/release/broker")]
        broker: PathBuf,
        /// The `perf` client.
        #[arg(long, default_value = "target/release/perf")]
        perf: PathBuf,
    }

    pub fn main() -> ExitCode {
        let a = Args::parse();
        let workloads: Vec<_> =
            plan().into_iter().filter(|w| a.only.is_empty() || a.only.contains(&w.name)).collect();
        if workloads.is_empty() {
            eprintln!("validate: no workload named {}", a.only.join(", "));
            return ExitCode::FAILURE;
        }
        let root = match client::calibrate::measure::TempDir::new("validate") {
            Ok(d) => d,
            Err(e) => {
                eprintln!("validate: a temp directory: {e}");
                return ExitCode::FAILURE;
            }
        };
        let before = loadavg();
        let mut rows: Vec<Measured> = Vec::new();
        for w in &workloads {
            eprintln!("validate: real {} ({} runs of {} ms) ...", w.name, a.runs, w.duration_ms);
            let data = real::data_dir(&root.0, w);
            match real::measure(&a.broker, &a.perf, &data, w, a.runs) {
                Ok(m) => {
                    for r in &m.runs {
                        eprintln!(
                            "  {:.1} MB/s, p99 {:.2} ms, broker {:.2} CPU s, perf {:.2} CPU s in {:.2} s (load {})",
                            r.mb_s, r.p99_ms, r.broker_cpu_s, r.client_cpu_s, r.elapsed_s, r.loadavg
                        );
                    }
                    rows.push(m);
                }
                Err(e) => {
                    eprintln!("validate: {}: {e}", w.name);
                    return ExitCode::FAILURE;
                }
            }
            let _ = std::fs::remove_dir_all(&data);
        }
        let doc = json!({"loadavg_before": before, "loadavg_after": loadavg(), "rows": rows});
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
        if let Err(e) = std::fs::write(&a.out, text) {
            eprintln!("validate: writing {}: {e}", a.out.display());
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    }
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    real::main()
}

#[cfg(madsim)]
fn main() {
    eprintln!("validate runs on real IO only; build without --cfg madsim");
}
