//! `broker serve`: the standalone broker on real IO (tokio, real files, real TCP + sendfile).
//!
//! ```text
//! broker serve [--listen 127.0.0.1:9092] [--data-dir ./data] [--config server.properties]
//!              [--override key=value]... [--metrics-listen 127.0.0.1:9404] [--no-zero-copy]
//!              [--admin-listen 127.0.0.1:9405] [--fault-plan rules.json]
//! broker faults push|list|clear --admin http://127.0.0.1:9405 [--token T] [rule flags]
//! ```
//!
//! Precedence: the flags, then `--override`s, then the file (its `listeners` and `log.dirs`
//! included), then the defaults shown.

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    real::main()
}

/// The simulated world runs the broker through the `sim` harness, never this binary.
#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
mod real {
    use broker::config::{host_name, Serve, ServeFlags};
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
    #[command(name = "broker", version, about = "Loglab: a Kafka-compatible broker")]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Subcommand, Debug)]
    enum Cmd {
        /// Run a standalone broker.
        Serve {
            /// host:port to listen on [default: the client entry of `listeners`, else
            /// 127.0.0.1:9092].
            #[arg(long)]
            listen: Option<String>,
            /// Directory holding the logs and the topic registry [default: `log.dirs`, else
            /// ./data].
            #[arg(long)]
            data_dir: Option<PathBuf>,
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
            /// Serve the admin control API (fault rules, connection faults) on this host:port;
            /// a port alone binds loopback. Off by default.
            #[arg(long)]
            admin_listen: Option<String>,
        },
        /// Drive a broker's admin API: push, list or clear fault rules.
        Faults(broker::admin::cli::FaultsArgs),
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        net_model::process::keep_freed_heap();
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(if std::env::var("LOGLAB_DEBUG").is_ok() {
                tracing::Level::DEBUG
            } else {
                tracing::Level::INFO
            })
            .init();
        let cmd = match cli.cmd {
            Cmd::Faults(args) => return broker::admin::cli::run(args),
            serve => serve,
        };
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
            admin_listen,
        } = cmd
        else {
            unreachable!("faults returned above")
        };
        let fault_plan = match fault_plan.map(|p| std::fs::read_to_string(&p).map_err(|e| (p, e))) {
            None => None,
            Some(Ok(text)) => Some(text),
            Some(Err((p, e))) => {
                eprintln!("error: reading {}: {e}", p.display());
                return ExitCode::from(2);
            }
        };
        let text = match config.as_ref().map(|p| std::fs::read_to_string(p).map_err(|e| (p, e))) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err((p, e))) => {
                eprintln!("error: reading {}: {e}", p.display());
                return ExitCode::from(2);
            }
        };
        let flags = ServeFlags {
            listen,
            data_dir,
            overrides,
            no_zero_copy,
            node_id,
            controller_listen,
            controller_quorum,
        };
        let serve_cfg = match BrokerConfig::for_serve(text.as_deref(), &flags, host_name) {
            Ok(s) => s,
            Err(e @ broker::config::ConfigError::BadLine { .. }) => {
                let path = config.unwrap_or_default();
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: starting the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let opts = Extra { metrics_listen, fault_plan, admin_listen };
        match rt.block_on(serve(serve_cfg, opts)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// `serve`'s optional listeners and plan.
    struct Extra {
        metrics_listen: Option<String>,
        fault_plan: Option<String>,
        admin_listen: Option<String>,
    }

    /// The storage the broker keeps its data directories in, and their paths inside it: one
    /// directory is the storage's root; several (JBOD) are mounts `log-dir-0`, `log-dir-1`, …
    /// of one [`MountStorage`], each its own locked directory.
    fn data_storage(dirs: &[PathBuf]) -> Result<(Arc<dyn Storage>, Vec<PathBuf>), String> {
        let open = |d: &PathBuf| -> Result<Arc<dyn Storage>, String> {
            let s =
                OsStorage::new_locked(d).map_err(|e| format!("data dir {}: {e}", d.display()))?;
            Ok(Arc::new(s))
        };
        if let [one] = dirs {
            return Ok((open(one)?, vec![PathBuf::new()]));
        }
        let mut mounts = Vec::with_capacity(dirs.len());
        for (i, d) in dirs.iter().enumerate() {
            mounts.push((format!("log-dir-{i}"), open(d)?));
        }
        let roots = mounts.iter().map(|(n, _)| PathBuf::from(n)).collect();
        Ok((Arc::new(broker::log::mounts::MountStorage::new(mounts)), roots))
    }

    async fn serve(serve: Serve, extra: Extra) -> Result<(), String> {
        let signals = signals()?;
        let Extra { metrics_listen, fault_plan, admin_listen } = extra;
        let Serve { config: mut cfg, listen, data_dir, more_data_dirs, advertised, notes } = serve;
        match disk_model::raise_fd_limit() {
            // Log files get half the descriptors (unless set); the rest is for connections.
            Ok(fds) => {
                let half = usize::try_from(fds / 2).unwrap_or(usize::MAX).max(16);
                let max = *cfg.limits.open_files_max.get_or_insert(half);
                if max as u64 >= fds {
                    tracing::warn!(
                        fds,
                        max,
                        "loglab.open.files.max is not below the open-file limit"
                    )
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
        }
        cfg.log_start(&notes);
        let all_dirs: Vec<PathBuf> =
            std::iter::once(data_dir.clone()).chain(more_data_dirs.iter().cloned()).collect();
        let (storage, roots) = data_storage(&all_dirs)?;
        let net: Arc<dyn Network> = Arc::new(TcpNetwork::new(cfg.fetch_zero_copy));
        // Real mode: the OS seeds the election timeouts and incarnations.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        let node_id = cfg.node_id;
        let mut opts = NodeOptions::new(cfg, storage, net, &listen, seed);
        opts.data_dir = roots[0].clone();
        opts.more_data_dirs = roots[1..].to_vec();
        opts.metrics_listen = metrics_listen;
        opts.advertised = advertised;
        opts.serve_when_unfenced = true;
        let node = node::start(opts).await.map_err(|e| e.to_string())?;
        let labels = all_dirs
            .iter()
            .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()).display().to_string());
        node.broker.set_log_dir_labels(labels.collect());
        if let Some(plan) = &fault_plan {
            let ids = node.broker.faults.install_plan(plan, broker::now_ms().max(0) as u64)?;
            println!("loglab fault plan: {} rule(s) installed", ids.len());
        }
        if let Some(maddr) = &node.metrics_addr {
            println!("loglab metrics on http://{maddr}/metrics");
        }
        let admin = match admin_listen.map(|a| broker::admin::bind_address(&a)) {
            None => None,
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|e| format!("admin listener {addr}: {e}"))?;
                let bound = l.local_addr().map_err(|e| format!("admin listener {addr}: {e}"))?;
                println!("loglab admin on http://{bound}");
                Some(tokio::spawn(broker::admin::run(node.broker.clone(), l)))
            }
        };
        if let Some(h) = &node.controller {
            println!("loglab controller {node_id} listening on {}", h.local_addr);
        }
        let (ahost, aport) = &node.advertised;
        println!(
            "loglab broker listening on {} (node.id {node_id}, advertised {ahost}:{aport}, data dir {})",
            node.bound,
            all_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(",")
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();

        wait_for_signal(signals).await;
        tracing::info!("shutting down");
        if let Some(a) = admin {
            a.abort();
        }
        node.shutdown().await.map_err(|e| e.to_string())?;
        println!("loglab broker stopped cleanly");
        Ok(())
    }

    /// SIGTERM and SIGINT, registered before the broker says it is listening: a signal that
    /// arrives right after that line must stop it cleanly, not kill it by the default action.
    struct Signals {
        term: tokio::signal::unix::Signal,
        int: tokio::signal::unix::Signal,
    }

    fn signals() -> Result<Signals, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
        let int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
        Ok(Signals { term, int })
    }

    async fn wait_for_signal(mut s: Signals) {
        tokio::select! {
            biased;
            _ = s.term.recv() => {}
            _ = s.int.recv() => {}
        }
    }
}
