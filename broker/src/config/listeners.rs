//! The network and storage keys of `server.properties`: `listeners`, `advertised.listeners`,
//! `controller.listener.names`, `inter.broker.listener.name`, `listener.security.protocol.map`,
//! `security.inter.broker.protocol`, `controller.quorum.bootstrap.servers`, `log.dirs` / `log.dir`.
//!
//! They are kept as written while the sources are applied (file, `--override`s, flags) and checked
//! together once at the end ([`BrokerConfig::resolve`]), as Kafka does: `listeners` comes before
//! `controller.listener.names` in Kafka's own file, so no key can be judged alone.

use std::path::PathBuf;

use super::{BrokerConfig, ConfigError};

/// Entries of `listeners` / `advertised.listeners` at most.
pub const LISTENERS_MAX: usize = 16;
/// Entries of `listener.security.protocol.map` at most.
const PROTOCOL_MAP_MAX: usize = 64;
/// The security protocols Kafka knows; only the first is spoken here.
const PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// One `NAME://host:port` entry. `host` is kept without IPv6 brackets; empty = every interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Listener {
    /// `host:port` to bind: an empty host is every interface (Kafka's `PLAINTEXT://:9092`).
    pub fn bind_addr(&self) -> String {
        match self.host.as_str() {
            "" => format!("0.0.0.0:{}", self.port),
            h if h.contains(':') => format!("[{h}]:{}", self.port),
            h => format!("{h}:{}", self.port),
        }
    }
}

/// The network keys as written (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSettings {
    pub listeners: Option<Vec<Listener>>,
    pub advertised: Option<Vec<Listener>>,
    /// `controller.listener.names`, every name (the first is `QuorumSettings::listener_name`).
    pub controller_names: Vec<String>,
    pub inter_broker_name: Option<String>,
    /// `listener.security.protocol.map` as (listener name, protocol).
    pub protocol_map: Option<Vec<(String, String)>>,
    /// `controller.quorum.bootstrap.servers` (`host:port`, …).
    pub bootstrap_servers: Option<Vec<String>>,
    pub log_dirs: Option<String>,
    pub log_dir: Option<String>,
}

/// Where the broker listens and keeps its data according to the configuration (flags may still
/// override each; see `serve`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoints {
    /// The client listener of `listeners` (the one entry not named by `controller.listener.names`).
    pub listener: Option<Listener>,
    /// `log.dirs` (in order; several: JBOD), else `log.dir`.
    pub data_dirs: Option<Vec<PathBuf>>,
}

fn bad(key: &str, value: &str, why: &str) -> ConfigError {
    ConfigError::BadValue { key: key.into(), value: value.into(), why: why.into() }
}

fn rejected(key: &str, why: String) -> ConfigError {
    ConfigError::Rejected { key: key.into(), why }
}

fn names(value: &str) -> Vec<String> {
    value.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// `NAME://host:port[,…]`; an entry without `NAME://` is `PLAINTEXT` (as `advertised.listeners`
/// was accepted before). Names are upper-cased and unique, as Kafka requires.
pub fn parse_listeners(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
    let mut out: Vec<Listener> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if out.len() == LISTENERS_MAX {
            return Err(bad(key, value, "too many listeners"));
        }
        let (name, addr) = entry.split_once("://").unwrap_or(("PLAINTEXT", entry));
        let name = name.trim().to_ascii_uppercase();
        let ok_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.is_empty() || !name.chars().all(ok_name) {
            return Err(bad(key, value, "expected NAME://host:port"));
        }
        let (host, port) =
            addr.rsplit_once(':').ok_or_else(|| bad(key, value, "expected NAME://host:port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0 || key == "listeners")
            .ok_or_else(|| bad(key, value, "bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if out.iter().any(|l| l.name == name) {
            return Err(bad(key, value, "a listener name appears twice"));
        }
        out.push(Listener { name, host, port });
    }
    if out.is_empty() {
        return Err(bad(key, value, "expected NAME://host:port"));
    }
    Ok(out)
}

fn parse_protocol_map(key: &str, value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if out.len() == PROTOCOL_MAP_MAX {
            return Err(bad(key, value, "too many entries"));
        }
        let (name, proto) =
            entry.split_once(':').ok_or_else(|| bad(key, value, "expected NAME:PROTOCOL,…"))?;
        let proto = proto.trim().to_ascii_uppercase();
        if !PROTOCOLS.contains(&proto.as_str()) {
            return Err(bad(key, value, "protocols are PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"));
        }
        out.push((name.trim().to_ascii_uppercase(), proto));
    }
    Ok(out)
}

impl BrokerConfig {
    /// Sets one network or storage key; `Ok(false)` when `key` is not one of them.
    pub(super) fn set_net(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        match key {
            "listeners" => self.net.listeners = Some(parse_listeners(key, value)?),
            "advertised.listeners" => self.net.advertised = Some(parse_listeners(key, value)?),
            "controller.listener.names" => {
                let n: Vec<String> = names(value).iter().map(|n| n.to_ascii_uppercase()).collect();
                let first = n.first().ok_or_else(|| bad(key, value, "expected a name"))?;
                self.quorum.listener_name = first.clone();
                self.net.controller_names = n;
            }
            "inter.broker.listener.name" => {
                self.net.inter_broker_name = Some(value.trim().to_ascii_uppercase())
            }
            "listener.security.protocol.map" => {
                self.net.protocol_map = Some(parse_protocol_map(key, value)?)
            }
            "security.inter.broker.protocol" => {
                if !value.trim().eq_ignore_ascii_case("PLAINTEXT") {
                    return Err(rejected(key, plaintext_only(value.trim())));
                }
            }
            "controller.quorum.bootstrap.servers" => {
                let servers = names(value);
                let ok =
                    |s: &String| s.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok());
                if servers.is_empty() || !servers.iter().all(ok) {
                    return Err(bad(key, value, "expected host:port,…"));
                }
                self.net.bootstrap_servers = Some(servers);
            }
            "log.dirs" => self.net.log_dirs = Some(value.trim().to_string()),
            "log.dir" => self.net.log_dir = Some(value.trim().to_string()),
            _ => return Ok(false),
        }
        self.derive_net();
        Ok(true)
    }

    /// Keeps the derived fields (`quorum.controller_listen`, `advertised`) in step with the keys
    /// as written so far; [`BrokerConfig::resolve`] checks them.
    fn derive_net(&mut self) {
        let controller = self.controller_names();
        let listeners = self.net.listeners.as_deref().unwrap_or(&[]);
        if let Some(l) = listeners.iter().find(|l| controller.contains(&l.name)) {
            self.quorum.controller_listen = Some(l.bind_addr());
        }
        let client = listeners.iter().find(|l| !controller.contains(&l.name)).map(|l| &l.name);
        if let Some(adv) = &self.net.advertised {
            let pick = match client {
                Some(name) => adv.iter().find(|a| &a.name == name),
                None => adv.iter().find(|a| !controller.contains(&a.name)),
            };
            self.advertised = pick.map(|a| (a.host.clone(), i32::from(a.port)));
        }
    }

    pub(super) fn controller_names(&self) -> Vec<String> {
        if self.net.controller_names.is_empty() {
            vec![self.quorum.listener_name.clone()]
        } else {
            self.net.controller_names.clone()
        }
    }

    /// The security protocol of listener `name` and the key it comes from: the map when it names
    /// `name`, else the name itself when it is a protocol (Kafka's default map), else PLAINTEXT
    /// for a controller listener (KRaft's default); `None` when nothing defines it.
    fn protocol_of(&self, name: &str) -> Option<(String, &'static str)> {
        let mapped = self.net.protocol_map.as_ref().and_then(|m| m.iter().find(|(n, _)| n == name));
        if let Some((_, p)) = mapped {
            return Some((p.clone(), "listener.security.protocol.map"));
        }
        if PROTOCOLS.contains(&name) {
            return Some((name.to_string(), "listeners"));
        }
        self.controller_names().iter().any(|n| n == name).then(|| ("PLAINTEXT".into(), "listeners"))
    }

    /// Checks the network and storage keys together (after every source is applied), turns a
    /// one-server `controller.quorum.bootstrap.servers` into this node's one-voter quorum, and
    /// says where the configuration wants the broker to listen and keep its data.
    pub fn resolve(&mut self) -> Result<Endpoints, ConfigError> {
        self.derive_net();
        let controller = self.controller_names();
        let listeners = self.net.listeners.clone().unwrap_or_default();
        for l in &listeners {
            let (proto, key) = self.protocol_of(&l.name).ok_or_else(|| {
                rejected(
                    "listener.security.protocol.map",
                    format!("no protocol for listener {}", l.name),
                )
            })?;
            if proto != "PLAINTEXT" {
                return Err(rejected(
                    key,
                    format!("listener {} uses {proto}: {}", l.name, plaintext_only(&proto)),
                ));
            }
        }
        let clients: Vec<&Listener> =
            listeners.iter().filter(|l| !controller.contains(&l.name)).collect();
        if clients.len() > 1 {
            let n: Vec<&str> = clients.iter().map(|l| l.name.as_str()).collect();
            let why = format!("one client listener is served; found {}", n.join(", "));
            return Err(rejected("listeners", why));
        }
        self.check_inter_broker(&listeners, &controller)?;
        self.check_advertised(&listeners)?;
        self.resolve_quorum()?;
        Ok(Endpoints {
            listener: clients.first().map(|l| (*l).clone()),
            data_dirs: self.data_dirs()?,
        })
    }

    fn check_inter_broker(
        &self,
        listeners: &[Listener],
        controller: &[String],
    ) -> Result<(), ConfigError> {
        let Some(name) = &self.net.inter_broker_name else { return Ok(()) };
        let key = "inter.broker.listener.name";
        if controller.contains(name) {
            return Err(rejected(key, format!("{name} is a controller listener")));
        }
        if !listeners.is_empty() && !listeners.iter().any(|l| &l.name == name) {
            return Err(rejected(key, format!("{name} is not one of `listeners`")));
        }
        Ok(())
    }

    fn check_advertised(&self, listeners: &[Listener]) -> Result<(), ConfigError> {
        let key = "advertised.listeners";
        for a in self.net.advertised.as_deref().unwrap_or(&[]) {
            if a.host.is_empty() || a.host == "0.0.0.0" || a.host == "::" {
                return Err(rejected(
                    key,
                    format!("{}: clients cannot connect to `{}`; name a host", a.name, a.host),
                ));
            }
            if !listeners.is_empty() && !listeners.iter().any(|l| l.name == a.name) {
                return Err(rejected(key, format!("{} is not one of `listeners`", a.name)));
            }
        }
        Ok(())
    }

    /// `log.dirs` (else `log.dir`): one directory or several (JBOD), distinct, at most
    /// `LOG_DIRS_MAX`.
    fn data_dirs(&self) -> Result<Option<Vec<PathBuf>>, ConfigError> {
        let (key, value) = match (&self.net.log_dirs, &self.net.log_dir) {
            (Some(v), _) => ("log.dirs", v),
            (None, Some(v)) => ("log.dir", v),
            (None, None) => return Ok(None),
        };
        let dirs: Vec<PathBuf> = names(value).into_iter().map(PathBuf::from).collect();
        let max = crate::log::manager::LOG_DIRS_MAX;
        if dirs.is_empty() {
            return Err(bad(key, value, "expected a directory"));
        }
        if dirs.len() > max {
            return Err(rejected(key, format!("{} directories given; at most {max}", dirs.len())));
        }
        for (i, d) in dirs.iter().enumerate() {
            if dirs[..i].contains(d) {
                return Err(bad(key, value, &format!("{} is listed twice", d.display())));
            }
        }
        Ok(Some(dirs))
    }

    /// `process.roles` needs a quorum; `controller.quorum.bootstrap.servers` with one server
    /// (Kafka's standalone quorum, as in its stock file) is this node's one-voter quorum; a
    /// voter's own address must be its controller listener.
    fn resolve_quorum(&mut self) -> Result<(), ConfigError> {
        let mut voters_key = "controller.quorum.voters";
        if let (None, Some(servers)) = (&self.quorum.voters, &self.net.bootstrap_servers) {
            let key = "controller.quorum.bootstrap.servers";
            let [server] = servers.as_slice() else {
                let why = "several servers (a dynamic quorum) are not supported; list the voters in controller.quorum.voters=id@host:port,…";
                return Err(rejected(key, why.into()));
            };
            if !self.quorum.is_controller() {
                let why = "a broker-only node needs the controllers' ids: use controller.quorum.voters=id@host:port,…";
                return Err(rejected(key, why.into()));
            }
            self.quorum.voters = Some(format!("{}@{server}", self.node_id));
            voters_key = key;
        }
        let Some(voters) = &self.quorum.voters else {
            if self.quorum_roles_set {
                let why = "needs controller.quorum.voters or controller.quorum.bootstrap.servers";
                return Err(rejected("process.roles", why.into()));
            }
            return Ok(());
        };
        let voters = crate::controller::rpc::parse_voters(voters)
            .map_err(|why| bad(voters_key, voters, &why))?;
        let me = u64::try_from(self.node_id).ok().and_then(|id| voters.get(&id));
        let own_port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_string());
        if let (Some(addr), Some(listen)) = (me, &self.quorum.controller_listen) {
            if self.quorum.is_controller() && own_port(addr) != own_port(listen) {
                let why = format!(
                    "node {} is reached at {addr} but its {} listener is {listen}",
                    self.node_id, self.quorum.listener_name
                );
                return Err(rejected(voters_key, why));
            }
        }
        Ok(())
    }
}

fn plaintext_only(proto: &str) -> String {
    format!("{proto} is not supported: Loglab speaks PLAINTEXT only (no TLS, no SASL)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_entries() {
        let l = parse_listeners("listeners", "PLAINTEXT://:9092,CONTROLLER://[::1]:9093").unwrap();
        assert_eq!(l[0], Listener { name: "PLAINTEXT".into(), host: String::new(), port: 9092 });
        assert_eq!(
            (l[0].bind_addr(), l[1].bind_addr()),
            ("0.0.0.0:9092".into(), "[::1]:9093".into())
        );
        assert_eq!(parse_listeners("advertised.listeners", "h:1").unwrap()[0].name, "PLAINTEXT");
        for v in ["", "PLAINTEXT://h", "A://h:1,A://h:2", "P://h:99999", "a b://h:1"] {
            assert!(parse_listeners("listeners", v).is_err(), "{v}");
        }
    }
}
