//! `sim`: Loglab's simulator. Build and run it with `cargo simulate` (see `.cargo/config.toml`),
//! which compiles it with `--cfg madsim` into `target/sim`.

#[cfg(madsim)]
fn main() {
    let code = sim::cli::main_with_args(std::env::args().collect());
    std::process::exit(code);
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("sim runs only in the simulated build: build with cargo simulate (e.g. `cargo simulate scenarios/quickstart.json --seed 1`)");
    std::process::exit(sim::exit::USAGE);
}
