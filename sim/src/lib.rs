//! Loglab's simulator harness.
//!
//! Every run is a network run: the unmodified broker (`Broker::open` + `broker::tasks::run` +
//! `broker::server::run`) on a madsim node, on modeled hardware (`SimDisk`, optionally a
//! `SimCpu`), behind the simulated network (`net_model::SimNet`); workloads are the `client`
//! crate's `Producer` and `Consumer` ([`clientload`], [`member`]); the oracle reads back through
//! `client::conn::Conn` ([`netclient`]). `cluster.mode` only says what the network and the CPU
//! cost: `network` models them, `storage` makes them free (the fastest NIC the model takes, zero
//! latency, no core pool) so the disk, the page cache and the log tell the story alone.
//!
//! Layout:
//! - pure, runtime-free (built and tested in both worlds): [`scenario`] (files → settings, every
//!   default), [`trace`] (FNV-1a 64 over canonical event lines), [`history`] + [`checkers`]
//!   (Jepsen-style checks as pure functions), [`metrics`] (time series from a history).
//!   [`faults`] (one `Fault` type: what scenario files parse into and the [`nemesis`] draws).
//! - simulated only (`--cfg madsim`), in the order a run uses them: [`world`] (the fabric, every
//!   broker [`host`] built once in a loop, the client machines; the cluster made ready),
//!   [`workload`] (prefill, producers, consumers, group members: [`clientload`], [`member`]),
//!   [`sampler`] (gauges, event logs, the cluster observer), `faults::driver` (apply, undo,
//!   heal), [`settle`], [`oracle`] (the final read-back through [`api`] / [`netclient`]), [`run`]
//!   (the driver of one run, checks and summary), [`cli`] (`cargo simulate`).

pub mod checkers;
#[cfg(madsim)]
pub mod cluster;
pub mod coverage;
pub mod faults;
pub mod grid;
pub mod history;
pub mod metrics;
pub mod nemesis;
pub mod omb;
pub mod scenario;
pub mod seen;
pub mod sends;
pub mod shrink;
pub mod sweep;
pub mod trace;
pub mod validate;

#[cfg(madsim)]
pub mod api;
#[cfg(madsim)]
pub mod calibrate;
#[cfg(madsim)]
pub mod cli;
#[cfg(madsim)]
pub mod clientload;
#[cfg(madsim)]
pub mod host;
#[cfg(madsim)]
pub mod invariants;
#[cfg(madsim)]
pub mod member;
#[cfg(madsim)]
pub mod netclient;
#[cfg(madsim)]
pub mod oracle;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod sampler;
#[cfg(madsim)]
pub mod settle;
#[cfg(madsim)]
pub mod trace_json;
#[cfg(madsim)]
pub mod workload;
#[cfg(madsim)]
pub mod world;

/// Process exit codes of `cargo simulate` (scripts and sweeps rely on them).
pub mod exit {
    /// The verdict is pass: every check had its expected outcome.
    pub const PASS: i32 = 0;
    /// A safety check did not have its expected outcome (e.g. an acknowledged write was lost).
    pub const CHECK_VIOLATED: i32 = 1;
    /// Progress did not resume after the faults healed (liveness check).
    pub const LIVENESS: i32 = 2;
    /// The simulator itself crashed (a panic); the panic hook printed the seed and replay command.
    pub const CRASH: i32 = 3;
    /// check-determinism: two runs of one seed differed.
    pub const NONDETERMINISM: i32 = 4;
    /// Bad command line or scenario file.
    pub const USAGE: i32 = 64;

    /// A subcommand's arguments: `--help` and `--version` end the process with PASS, a bad
    /// command line with USAGE (clap printed why either way).
    pub fn parse_args<T: clap::Parser>(args: &[String]) -> Result<T, i32> {
        T::try_parse_from(args).map_err(|e| {
            let _ = e.print();
            if e.use_stderr() {
                USAGE
            } else {
                PASS
            }
        })
    }
}

/// What each mode is, written into every summary next to `mode`.
pub fn mode_description(mode: scenario::Mode) -> &'static str {
    match mode {
        scenario::Mode::Storage => "storage run: the unmodified broker (as `broker serve` wires it) on modeled hardware (disk + page cache), reached by the client crate's Producer and Consumer over a free link (the fastest NIC the model takes, zero latency) with free CPU (no core pool): only the disk, the page cache and the log shape the run.",
        scenario::Mode::Network => "network run: the unmodified broker (Broker::open + tasks::run + server::run, as `broker serve` wires them) on modeled hardware (disk + page cache) behind the simulated network (net_model::SimNet: NICs, links, TCP-like streams); workloads are the client crate's Producer and Consumer on a client host (its own CPU model when cluster.host.cores is set).",
    }
}
