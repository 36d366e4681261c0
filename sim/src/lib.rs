//! Loglab's simulator harness.
//!
//! Two modes (`cluster.mode`):
//! - **network runs**: the unmodified broker (`Broker::open` + `broker::tasks::run` +
//!   `broker::server::run`) on a madsim node, on modeled hardware (`SimDisk`, optionally a
//!   `SimCpu`), behind the simulated network (`net_model::SimNet`); workloads are the `client`
//!   crate's `Producer` and `Consumer` ([`clientload`]); the oracle reads back through
//!   `client::conn::Conn` ([`netclient`]).
//! - **storage-level runs**: the broker's log layer (`broker::log::LogManager`, unmodified) on
//!   the same disk model, called in-process through [`api::BrokerApi`] over channels.
//!
//! Both implement the same seam ([`api::BrokerApi`]), so scenario parsing, workloads, the trace,
//! the checkers and the reports are shared.
//!
//! Layout:
//! - pure, runtime-free (built and tested in both worlds): [`scenario`] (files → settings, every
//!   default), [`trace`] (FNV-1a 64 over canonical event lines), [`history`] + [`checkers`]
//!   (Jepsen-style checks as pure functions), [`metrics`] (time series from a history).
//! - simulated only (`--cfg madsim`): [`api`] (the seam), [`host`] (a broker host: a simulated
//!   disk and one madsim node running the log manager or the whole broker), [`netclient`] (the
//!   seam over Kafka requests), [`workload`] (producers and consumers), [`run`] (one run:
//!   faults timeline, settle, final oracle, summary), [`cli`] (`cargo simulate`).

pub mod checkers;
#[cfg(madsim)]
pub mod cluster;
pub mod history;
pub mod metrics;
pub mod nemesis;
pub mod omb;
pub mod scenario;
pub mod trace;

#[cfg(madsim)]
pub mod api;
#[cfg(madsim)]
pub mod cli;
#[cfg(madsim)]
pub mod clientload;
#[cfg(madsim)]
pub mod host;
#[cfg(madsim)]
pub mod member;
#[cfg(madsim)]
pub mod netclient;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod workload;

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
}

/// What each mode is, written into every summary next to `mode`.
pub fn mode_description(mode: scenario::Mode) -> &'static str {
    match mode {
        scenario::Mode::Storage => "storage-level run: the broker's log layer (LogManager, unmodified) on modeled hardware (disk + page cache); workloads call it in-process.",
        scenario::Mode::Network => "network run: the unmodified broker (Broker::open + tasks::run + server::run, as `broker serve` wires them) on modeled hardware (disk + page cache) behind the simulated network (net_model::SimNet: NICs, links, TCP-like streams); workloads are the client crate's Producer and Consumer on a client host (its own CPU model when cluster.host.cores is set).",
    }
}
