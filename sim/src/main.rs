//! `sim`: Loglab's simulator. Build and run it with `cargo simulate` (see `.cargo/config.toml`),
//! which compiles it with `--cfg madsim` into `target/sim`.

#[cfg(madsim)]
fn main() {
    // The broker's and clients' own log lines, for debugging a seed: LOGLAB_SIM_LOG=info|debug.
    // Off by default (the trace, not the log, is the run's record).
    if let Ok(level) = std::env::var("LOGLAB_SIM_LOG") {
        let level = match level.as_str() {
            "debug" => tracing::Level::DEBUG,
            "warn" => tracing::Level::WARN,
            "error" => tracing::Level::ERROR,
            "trace" => tracing::Level::TRACE,
            _ => tracing::Level::INFO,
        };
        // Plain text: no colour codes, whether stderr is a terminal, a file or a pipe (the
        // `ansi` feature of tracing-subscriber is not built).
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_max_level(level)
            .init();
    }
    let code = sim::cli::main_with_args(std::env::args().collect());
    std::process::exit(code);
}

#[cfg(not(madsim))]
fn main() {
    if matches!(std::env::args().nth(1).as_deref(), Some("--version" | "-V")) {
        println!("sim {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    eprintln!("sim runs only in the simulated build: build with cargo simulate (e.g. `cargo simulate scenarios/quickstart.json --seed 1`)");
    std::process::exit(sim::exit::USAGE);
}
