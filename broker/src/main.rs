//! `broker serve`: the standalone broker on real IO (tokio, real files, real TCP + sendfile).
//!
//! ```text
//! broker serve --listen 127.0.0.1:9092 --data-dir ./data [--config server.properties]
//!              [--override key=value]... [--metrics-listen 127.0.0.1:9404] [--no-zero-copy]
//! ```

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    real::main()
}

/// The simulated world runs the broker through the `sim` harness, never this binary.
#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
mod real {
    use broker::node::{self, NodeOptions};
    use broker::BrokerConfig;
    use clap::{Parser, Subcommand};
    use disk_model::{OsStorage, Storage};
    use net_model::tcp::TcpNetwork;
    use net_model::Network;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::sync::Arc;

    #[derive(Parser, Debug)]
    #[command(name = "broker", about = "Loglab: a Kafka-compatible broker")]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Subcommand, Debug)]
    enum Cmd {
        /// Run a standalone broker.
        Serve {
            /// host:port to listen on (127.0.0.1 unless told otherwise).
            #[arg(long, default_value = "127.0.0.1:9092")]
            listen: String,
            /// Directory holding the logs and the topic registry.
            #[arg(long, default_value = "./data")]
            data_dir: PathBuf,
            /// A server.properties file (Kafka's key=value format).
            #[arg(long)]
            config: Option<PathBuf>,
            /// key=value, applied after --config; may be repeated.
            #[arg(long = "override", value_name = "KEY=VALUE")]
            overrides: Vec<String>,
            /// Serve Prometheus metrics on this host:port.
            #[arg(long)]
            metrics_listen: Option<String>,
            /// Send fetched data with read + write instead of sendfile (= loglab.fetch.zero.copy=false).
            #[arg(long)]
            no_zero_copy: bool,
            /// This node's id (= node.id).
            #[arg(long)]
            node_id: Option<i32>,
            /// host:port of this node's controller listener (= listeners=CONTROLLER://host:port).
            #[arg(long)]
            controller_listen: Option<String>,
            /// The controller quorum, id@host:port,... (= controller.quorum.voters). Without it the
            /// broker runs alone, exactly as before.
            #[arg(long)]
            controller_quorum: Option<String>,
            /// Request-level fault rules to install at start: a JSON list of rules (see
            /// broker/src/faults/rules.rs), e.g. [{"api": "Produce", "error":
            /// "NOT_LEADER_OR_FOLLOWER", "times": 3}].
            #[arg(long)]
            fault_plan: Option<PathBuf>,
        },
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(if std::env::var("LOGLAB_DEBUG").is_ok() {
                tracing::Level::DEBUG
            } else {
                tracing::Level::INFO
            })
            .init();
        let Cmd::Serve {
            listen,
            data_dir,
            config,
            overrides,
            metrics_listen,
            no_zero_copy,
            node_id,
            controller_listen,
            controller_quorum,
            fault_plan,
        } = cli.cmd;
        let fault_plan = match fault_plan.map(|p| std::fs::read_to_string(&p).map_err(|e| (p, e))) {
            None => None,
            Some(Ok(text)) => Some(text),
            Some(Err((p, e))) => {
                eprintln!("error: reading {}: {e}", p.display());
                return ExitCode::from(2);
            }
        };
        let mut cfg = BrokerConfig::default();
        if let Some(path) = &config {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: reading {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = cfg.apply_properties(&text) {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
        for o in &overrides {
            if let Err(e) = cfg.apply_override(o) {
                eprintln!("error: --override {o}: {e}");
                return ExitCode::from(2);
            }
        }
        if no_zero_copy {
            cfg.fetch_zero_copy = false;
        }
        let mut flags = Vec::new();
        if let Some(id) = node_id {
            flags.push(format!("node.id={id}"));
        }
        if let Some(q) = controller_quorum {
            flags.push(format!("controller.quorum.voters={q}"));
        }
        for f in &flags {
            if let Err(e) = cfg.apply_override(f) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
        if let Some(l) = controller_listen {
            cfg.quorum.controller_listen = Some(l);
        }
        let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: starting the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match rt.block_on(serve(cfg, listen, data_dir, metrics_listen, fault_plan)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    async fn serve(
        cfg: BrokerConfig,
        listen: String,
        data_dir: PathBuf,
        metrics_listen: Option<String>,
        fault_plan: Option<String>,
    ) -> Result<(), String> {
        for (k, v) in cfg.effective() {
            tracing::info!("config {k}={v}");
        }
        let limits = &cfg.limits;
        match disk_model::raise_fd_limit() {
            // About three descriptors per partition (one segment each), plus connections.
            Ok(fds)
                if fds
                    < 3 * limits.partitions_per_broker_max as u64
                        + limits.max_connections as u64 =>
            {
                tracing::warn!(fds, "open-file limit is below 3 x loglab.partitions.per.broker.max + max.connections")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
        }
        let storage: Arc<dyn Storage> = Arc::new(
            OsStorage::new_locked(&data_dir)
                .map_err(|e| format!("data dir {}: {e}", data_dir.display()))?,
        );
        let net: Arc<dyn Network> = Arc::new(TcpNetwork::new(cfg.fetch_zero_copy));
        // Real mode: the OS seeds the election timeouts and incarnations.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        let node_id = cfg.node_id;
        let mut opts = NodeOptions::new(cfg, storage, net, &listen, seed);
        opts.metrics_listen = metrics_listen;
        let node = node::start(opts).await.map_err(|e| e.to_string())?;
        if let Some(plan) = &fault_plan {
            let ids = node.broker.faults.install_plan(plan, broker::now_ms().max(0) as u64)?;
            println!("loglab fault plan: {} rule(s) installed", ids.len());
        }
        if let Some(maddr) = &node.metrics_addr {
            println!("loglab metrics on http://{maddr}/metrics");
        }
        if let Some(h) = &node.controller {
            println!("loglab controller {node_id} listening on {}", h.local_addr);
        }
        println!(
            "loglab broker listening on {} (node.id {node_id}, data dir {})",
            node.bound,
            data_dir.display()
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();

        wait_for_signal().await;
        tracing::info!("shutting down");
        node.shutdown().await.map_err(|e| e.to_string())?;
        println!("loglab broker stopped cleanly");
        Ok(())
    }

    async fn wait_for_signal() {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            biased;
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
}
