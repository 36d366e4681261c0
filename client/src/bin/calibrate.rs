//! `calibrate --out FILE`: measures this machine and writes a host profile (see
//! `client::calibrate`). Run it through `cargo simulate calibrate --out FILE`, which builds the
//! release broker, `perf` and this binary first.

#[cfg(not(madsim))]
mod real {
    use std::path::PathBuf;
    use std::process::ExitCode;

    use clap::Parser;
    use client::calibrate::{broker_fit, measure, Calibration};

    #[derive(Debug, Parser)]
    #[command(name = "calibrate", about = "Measure this machine and write a Loglab host profile")]
    struct Args {
        /// The profile to write (JSON).
        #[arg(long)]
        out: PathBuf,
        /// The profile's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        /// Runs per figure (each figure is their median, with min and max).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(5..=50))]
        runs: u32,
        /// The release broker.
        #[arg(long, default_value = "target/release/broker")]
        broker: PathBuf,
        /// The `perf` client.
        #[arg(long, default_value = "target/release/perf")]
        perf: PathBuf,
    }

    fn load() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into())
    }

    fn machine() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into())
    }

    fn today() -> String {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        client::calibrate::civil_date((secs / 86_400) as i64)
    }

    fn measure_all(a: &Args, c: &mut Calibration) -> std::io::Result<()> {
        let dir = measure::TempDir::new("disk")?;
        c.vm = measure::vm_settings(&dir.0);
        eprintln!("calibrate: CPU (memcpy, crc32c, codecs, syscalls) ...");
        measure::cpu(a.runs, &mut c.measurements)?;
        eprintln!("calibrate: disk ({}) ...", dir.0.display());
        measure::disk(&dir.0, a.runs, &mut c.measurements)?;
        eprintln!("calibrate: loopback TCP ...");
        measure::loopback(a.runs, &mut c.measurements)?;
        eprintln!("calibrate: the broker under perf produce ...");
        let data = measure::TempDir::new("broker")?;
        broker_fit::broker(&a.broker, &a.perf, &data.0, a.runs, &mut c.measurements)
    }

    pub fn main() -> ExitCode {
        let a = Args::parse();
        // Measure the codecs and copies under the allocator settings the real broker and perf
        // run with: with glibc's default trimming every lz4 call's frame buffers were mapped
        // afresh, and a 1 KiB call measured 7.0-7.3 µs instead of 0.58 µs (12x; two alternated
        // pairs, 2026-12-05), which the twins then charged per batch.
        net_model::process::keep_freed_heap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let mut c = Calibration {
            machine: format!("{} ({cores} cores)", machine()),
            date: today(),
            load_before: load(),
            cores,
            ..Calibration::default()
        };
        if let Err(e) = measure_all(&a, &mut c) {
            eprintln!("calibrate: {e}");
            return ExitCode::FAILURE;
        }
        c.load_after = load();
        let name = a.name.clone().unwrap_or_else(|| {
            a.out.file_stem().map_or("measured".into(), |s| s.to_string_lossy().into_owned())
        });
        for (k, m) in &c.measurements {
            println!(
                "{k:<40} {:>14.1} {:<9} (min {:.1}, max {:.1}, {} runs)",
                m.median, m.unit, m.min, m.max, m.runs
            );
        }
        println!("load average: {} before, {} after", c.load_before, c.load_after);
        let text = serde_json::to_string_pretty(&c.profile(&name)).unwrap_or_default() + "\n";
        if let Err(e) = std::fs::write(&a.out, text) {
            eprintln!("calibrate: writing {}: {e}", a.out.display());
            return ExitCode::FAILURE;
        }
        println!("profile written: {}", a.out.display());
        ExitCode::SUCCESS
    }
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    real::main()
}

#[cfg(madsim)]
fn main() {
    eprintln!("calibrate runs on real IO only; build without --cfg madsim");
}
