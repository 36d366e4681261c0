//! `broker serve`'s configuration from its sources, in Kafka's order of precedence: the
//! `server.properties` file, then the command line (`--override key=value`, then the flags
//! `--listen`, `--data-dir`, `--node-id`, `--controller-quorum`, `--controller-listen`).

use std::path::PathBuf;

use super::{BrokerConfig, ConfigError};

/// Where the data goes when neither `--data-dir` nor `log.dirs` / `log.dir` says.
pub const DATA_DIR_DEFAULT: &str = "./data";
/// Where the broker listens when neither `--listen` nor `listeners` says.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:9092";

/// What the command line of `broker serve` says about the configuration.
#[derive(Debug, Clone, Default)]
pub struct ServeFlags {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub overrides: Vec<String>,
    pub no_zero_copy: bool,
    pub node_id: Option<i32>,
    pub controller_listen: Option<String>,
    pub controller_quorum: Option<String>,
}

/// A configuration ready to start a node with.
#[derive(Debug, Clone)]
pub struct Serve {
    pub config: BrokerConfig,
    /// `host:port` to bind the client listener to.
    pub listen: String,
    /// The first data directory (`log.dirs`' first entry, or `--data-dir`): the topic registry
    /// and metadata log live here.
    pub data_dir: PathBuf,
    /// The other entries of `log.dirs` (JBOD), in order.
    pub more_data_dirs: Vec<PathBuf>,
    /// What Metadata advertises when `advertised.listeners` does not say: a host with port 0
    /// (the bound port), for a wildcard listener; `None`: the bound address.
    pub advertised: Option<(String, i32)>,
    /// What the start-up log says about where each value came from.
    pub notes: Vec<String>,
}

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

fn is_wildcard(host: &str) -> bool {
    matches!(host, "" | "0.0.0.0" | "::" | "[::]")
}

impl BrokerConfig {
    /// Logs every effective setting, every stock key accepted without effect, and `notes`.
    pub fn log_start(&self, notes: &[String]) {
        for (k, v) in self.effective() {
            tracing::info!("config {k}={v}");
        }
        for (kv, why) in &self.ignored {
            tracing::info!("config {kv} ignored: {why}");
        }
        for n in notes {
            tracing::info!("config: {n}");
        }
    }

    /// The configuration of `broker serve`: `file` (a `server.properties` text) first, then the
    /// flags. `host_name` names this machine for a wildcard listener without
    /// `advertised.listeners` (Kafka advertises the canonical host name); `None` keeps 127.0.0.1.
    pub fn for_serve(
        file: Option<&str>,
        flags: &ServeFlags,
        host_name: impl FnOnce() -> Option<String>,
    ) -> Result<Serve, ConfigError> {
        let mut cfg = BrokerConfig::default();
        if let Some(text) = file {
            cfg.apply_properties(text)?;
        }
        for o in &flags.overrides {
            cfg.apply_override(o)?;
        }
        if flags.no_zero_copy {
            cfg.fetch_zero_copy = false;
        }
        if let Some(id) = flags.node_id {
            cfg.set("node.id", &id.to_string())?;
        }
        if let Some(q) = &flags.controller_quorum {
            cfg.set("controller.quorum.voters", q)?;
        }
        if let Some(l) = &flags.controller_listen {
            // The flag replaces the controller entry of `listeners`.
            let controller = cfg.controller_names();
            if let Some(ls) = &mut cfg.net.listeners {
                ls.retain(|x| !controller.contains(&x.name));
            }
            cfg.quorum.controller_listen = Some(l.clone());
        }
        let mut notes = Vec::new();
        let from_config = cfg.resolve()?;
        let listener = from_config.listener;
        let mut follow = None;
        let listen = match (&flags.listen, &listener) {
            (Some(l), Some(file)) => {
                notes.push(format!("--listen {l} overrides listeners ({})", file.bind_addr()));
                if let Some(moved) = cfg.follow_listen(file.port, port_of(l), &mut notes) {
                    follow = Some(moved);
                }
                l.clone()
            }
            (Some(l), None) => l.clone(),
            (None, Some(file)) => file.bind_addr(),
            // A controller-only node serves no clients: any free port, not a broker's 9092.
            (None, None) if !cfg.quorum.is_broker() => "127.0.0.1:0".to_string(),
            (None, None) => LISTEN_DEFAULT.to_string(),
        };
        let (data_dir, more_data_dirs) = match (&flags.data_dir, from_config.data_dirs) {
            (Some(d), Some(file)) => {
                let file: Vec<String> = file.iter().map(|f| f.display().to_string()).collect();
                notes.push(format!(
                    "--data-dir {} overrides log.dirs ({})",
                    d.display(),
                    file.join(",")
                ));
                (d.clone(), Vec::new())
            }
            (Some(d), None) => (d.clone(), Vec::new()),
            (None, Some(mut file)) => {
                let first = file.remove(0);
                (first, file)
            }
            (None, None) => (PathBuf::from(DATA_DIR_DEFAULT), Vec::new()),
        };
        let host = listen.rsplit_once(':').map_or("", |(h, _)| h);
        let advertised = if follow.is_some() || cfg.advertised.is_some() || !is_wildcard(host) {
            follow
        } else if let Some(name) = host_name() {
            notes.push(format!("advertising {name} for the wildcard listener {listen}"));
            Some((name, 0))
        } else {
            None
        };
        Ok(Serve { config: cfg, listen, data_dir, more_data_dirs, advertised, notes })
    }

    /// `--listen` moved the file's client listener from `file_port` to `port`: an advertised
    /// address naming the old port would send clients to a dead one, so it follows. To port 0
    /// (any free port) it can only follow once bound: it is then returned, host and port 0.
    fn follow_listen(
        &mut self,
        file_port: u16,
        port: Option<u16>,
        notes: &mut Vec<String>,
    ) -> Option<(String, i32)> {
        let port = port.filter(|p| *p != file_port)?;
        let (host, p) = self.advertised.clone()?;
        if p != i32::from(file_port) {
            return None;
        }
        notes.push(format!("advertised.listeners {host}:{p} follows --listen to port {port}"));
        if port == 0 {
            self.advertised = None;
            return Some((host, 0));
        }
        self.advertised = Some((host, i32::from(port)));
        None
    }
}

/// This machine's name, when it resolves (what a wildcard listener advertises, as Kafka
/// advertises the canonical host name); real world only.
#[cfg(not(madsim))]
pub fn host_name() -> Option<String> {
    use std::net::ToSocketAddrs;
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    if name.is_empty() || (name, 9092u16).to_socket_addrs().ok()?.next().is_none() {
        return None;
    }
    Some(name.to_string())
}
