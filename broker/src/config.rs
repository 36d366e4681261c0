//! Broker settings by Kafka's own names (`server.properties` format), with Kafka's defaults.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::log::config::ConfigError as LogConfigError;
use crate::log::LogConfig;

mod listeners;
mod serve;
pub use listeners::{parse_listeners, Endpoints, Listener, NetSettings, LISTENERS_MAX};
#[cfg(not(madsim))]
pub use serve::host_name;
pub use serve::{Serve, ServeFlags, DATA_DIR_DEFAULT, LISTEN_DEFAULT};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown config key `{key}`")]
    UnknownKey { key: String },
    #[error("config `{key}`: `{value}` is not valid: {why}")]
    BadValue { key: String, value: String, why: String },
    #[error("line {line}: expected key=value, got `{text}`")]
    BadLine { line: usize, text: String },
    #[error("--override expects key=value, got `{0}`")]
    BadOverride(String),
    /// A valid value this broker cannot honour, or keys that contradict each other.
    #[error("config `{key}`: {why}")]
    Rejected { key: String, why: String },
}

impl From<LogConfigError> for ConfigError {
    fn from(e: LogConfigError) -> Self {
        match e {
            LogConfigError::UnknownKey { key } => ConfigError::UnknownKey { key },
            LogConfigError::BadValue { key, value, why } => {
                ConfigError::BadValue { key, value, why: why.to_string() }
            }
        }
    }
}

/// Everything `broker serve` can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// `node.id` (also accepted: `broker.id`).
    pub node_id: i32,
    /// `advertised.listeners` as (host, port); `None` = the bound address.
    pub advertised: Option<(String, i32)>,
    /// `num.partitions`: partitions of an auto-created topic.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `default.replication.factor` (accepted; a single broker can only honour 1).
    pub default_replication_factor: i16,
    /// `socket.request.max.bytes`: frames above this are refused before allocating.
    pub socket_request_max_bytes: i32,
    /// Broker-wide log defaults (`log.*`, `message.max.bytes`).
    pub log: LogConfig,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: i64,
    /// `log.flush.scheduler.interval.ms`: how often `flush.ms` is checked.
    pub flush_scheduler_interval_ms: i64,
    /// `log.flush.offset.checkpoint.interval.ms`.
    pub checkpoint_interval_ms: i64,
    /// `log.segment.delete.delay.ms`: how long a retired (`-delete`) partition directory stays
    /// before it is removed.
    pub file_delete_delay_ms: i64,
    /// `loglab.fetch.zero.copy`: send fetched data with sendfile (true) or read + write (false).
    pub fetch_zero_copy: bool,
    /// `loglab.admin.token`: when set, every admin API request must carry
    /// `Authorization: Bearer TOKEN` (`broker serve --admin-listen`).
    pub admin_token: Option<String>,
    /// `cluster.id` reported in Metadata.
    pub cluster_id: String,
    /// `group.*` and `offset.metadata.max.bytes`: the group coordinator's bounds.
    pub group: crate::group::GroupConfig,
    /// `offsets.topic.num.partitions` (used when `__consumer_offsets` is created).
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (combined mode; a single node has one replica). As in
    /// Kafka, the topic is not created while fewer brokers are alive.
    pub offsets_topic_replication_factor: i16,
    /// `log.cleaner.enable`: run the log cleaner for `cleanup.policy=compact` topics.
    pub cleaner_enable: bool,
    /// `log.cleaner.backoff.ms`: pause between cleaner passes.
    pub cleaner_backoff_ms: i64,
    /// `log.cleaner.dedupe.buffer.size`: memory bound of the cleaner's key → offset map.
    pub cleaner_dedupe_buffer_size: i64,
    /// The controller quorum (combined mode); `None` = a single node, as before.
    pub quorum: QuorumSettings,
    /// Replication between brokers (combined mode only).
    pub replication: ReplicationSettings,
    /// `unclean.leader.election.enable`: the controller may elect a replica outside the ISR when
    /// no ISR member is alive (availability over durability: acknowledged writes can be lost).
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`: the active controller moves leaderships back to their
    /// preferred replicas (combined mode).
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`: how often it checks.
    pub leader_imbalance_check_interval_seconds: u64,
    /// `leader.imbalance.per.broker.percentage`: a broker's share of preferred partitions it
    /// does not lead above which they are moved back.
    pub leader_imbalance_per_broker_percentage: u32,
    /// `loglab.unsafe.*`: the bug museum's switches (all safeguards on by default); see
    /// [`crate::safeguards`]. Mirrored into [`GroupConfig`](crate::group::GroupConfig) and
    /// [`ReplicationSettings`] where their subsystems read them.
    pub safeguards: crate::safeguards::Safeguards,
    /// The network and storage keys as written (`listeners`, `log.dirs`, …; see `resolve`).
    pub net: NetSettings,
    /// `process.roles` was given (it then needs a quorum).
    pub quorum_roles_set: bool,
    /// Stock keys accepted without effect, with why (logged at start): (key=value, reason).
    pub ignored: Vec<(String, &'static str)>,
    /// Which spelling set `retention_ms` / `segment_ms` (Kafka: ms over minutes over hours,
    /// whatever their order).
    precedence: Precedence,
    /// Connection and partition bounds (issue 17): `connections.max.idle.ms`, `max.connections`,
    /// `loglab.frame.read.timeout.ms`, `loglab.partitions.per.{request,broker}.max`.
    pub limits: LimitSettings,
}

/// Rank of the key that last set a value spelled in several units (0: none yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Precedence {
    retention: u8,
    roll: u8,
}

/// Keys Kafka's stock files set that do not apply here: accepted, logged as ignored.
const IGNORED: &[(&str, &str)] = &[
    ("num.network.threads", "one async runtime serves every connection"),
    ("num.io.threads", "one async runtime handles every request"),
    ("socket.send.buffer.bytes", "the OS socket buffer sizes are used"),
    ("socket.receive.buffer.bytes", "the OS socket buffer sizes are used"),
    ("num.recovery.threads.per.data.dir", "logs are recovered on the async runtime"),
    ("num.replica.fetchers", "one fetcher task per source broker"),
    ("metadata.log.dir", "the metadata log lives in the data directory"),
    ("transaction.state.log.replication.factor", "transactions are not supported"),
    ("transaction.state.log.min.isr", "transactions are not supported"),
    ("transaction.state.log.num.partitions", "transactions are not supported"),
    ("share.coordinator.state.topic.replication.factor", "share groups are not supported"),
    ("share.coordinator.state.topic.min.isr", "share groups are not supported"),
    ("log.cleaner.threads", "one in-process cleaner"),
    ("log.cleaner.io.buffer.size", "one in-process cleaner"),
    ("log.cleaner.io.buffer.load.factor", "one in-process cleaner"),
    ("log.cleaner.io.max.bytes.per.second", "one in-process cleaner"),
];

/// Kafka's precedence among spellings of one value in several units: a key of lower rank than
/// the one already applied is ignored.
fn unit_rank(key: &str) -> Option<(bool, u8)> {
    match key {
        "log.retention.hours" => Some((true, 1)),
        "log.retention.minutes" => Some((true, 2)),
        "log.retention.ms" => Some((true, 3)),
        "log.roll.hours" => Some((false, 1)),
        "log.roll.ms" => Some((false, 2)),
        _ => None,
    }
}

/// Bounds on what clients can make the broker hold (issue 17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// `connections.max.idle.ms`: a connection with no request for this long is closed (Kafka's
    /// default, 10 minutes). Idle is between requests: a long-polling fetch is not idle.
    pub connections_max_idle_ms: u64,
    /// `loglab.frame.read.timeout.ms`: once a request's first byte arrived, the whole frame must
    /// arrive within this (a slow-drip peer is closed). Kafka has no such setting.
    pub frame_read_timeout_ms: u64,
    /// `max.connections`: live client connections; one over it is closed at once. Kafka's default
    /// is unbounded (2147483647); ours is 10,000.
    pub max_connections: usize,
    /// `loglab.partitions.per.request.max`: partitions one CreateTopics request may create.
    pub partitions_per_request_max: i32,
    /// `loglab.partitions.per.broker.max`: partition logs this broker may hold.
    pub partitions_per_broker_max: i32,
    /// `loglab.open.files.max`: segment and other log files held open at once, broker-wide
    /// (`crate::log::file_cache`); idle ones are closed, least recently used first. `None`: half
    /// the open-file limit under `broker serve`, `OPEN_FILES_MAX_DEFAULT` elsewhere.
    pub open_files_max: Option<usize>,
}

impl LimitSettings {
    /// The bound in force on open log files.
    pub fn open_files_max(&self) -> usize {
        self.open_files_max.unwrap_or(crate::log::file_cache::OPEN_FILES_MAX_DEFAULT)
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            connections_max_idle_ms: 600_000,
            frame_read_timeout_ms: 30_000,
            max_connections: 10_000,
            partitions_per_request_max: 2_000,
            partitions_per_broker_max: 4_000,
            open_files_max: None,
        }
    }
}

/// Replication settings by Kafka's names (combined mode only; a single node has no followers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationSettings {
    /// `min.insync.replicas`: `acks=all` needs an ISR at least this large.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: a follower not caught up for longer leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms`: a follower's long poll at the leader.
    pub replica_fetch_wait_max_ms: u64,
    /// `replica.fetch.max.bytes`: bytes per partition per follower fetch.
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: bytes per follower fetch response.
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.fetch.backoff.ms`: pause after a failed follower fetch.
    pub replica_fetch_backoff_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`.
    pub hw_checkpoint_interval_ms: u64,
    /// `replica.socket.timeout.ms`: one follower request, answer included.
    pub replica_socket_timeout_ms: u64,
    /// `loglab.unsafe.truncate.to.hw` (a museum switch, [`crate::safeguards`]): a follower
    /// truncates to its own high watermark instead of by leader epoch.
    pub unsafe_truncate_to_hw: bool,
    /// `loglab.unsafe.follower.fetch.ignore.epoch` (a museum switch, [`crate::safeguards`]): a
    /// follower sends no leader epoch (before KIP-320) and truncates to the end offset the leader
    /// answers whatever epoch it names (before KIP-279).
    pub unsafe_fetch_ignore_epoch: bool,
    /// `loglab.unsafe.zombie.fencing.disable` (a museum switch, [`crate::safeguards`]): a leader
    /// acts on a follower's fetch whatever leader epoch it carries, and its high watermark follows
    /// the ISR's reported log ends down (`cluster::isr::IsrConfig::unsafe_hw_may_fall`).
    pub unsafe_zombie_fencing_disabled: bool,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        Self {
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_response_max_bytes: 10_485_760,
            replica_fetch_backoff_ms: 1_000,
            hw_checkpoint_interval_ms: 5_000,
            replica_socket_timeout_ms: 30_000,
            unsafe_truncate_to_hw: false,
            unsafe_fetch_ignore_epoch: false,
            unsafe_zombie_fencing_disabled: false,
        }
    }
}

/// KRaft settings by Kafka's names. Only used when `controller.quorum.voters` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumSettings {
    /// `controller.quorum.voters` (`id@host:port,…`), validated when set.
    pub voters: Option<String>,
    /// `process.roles`: `broker`, `controller` or both (default both when voters are set).
    pub roles: Vec<String>,
    /// `controller.listener.names` (first name is used).
    pub listener_name: String,
    /// The `listeners` entry named by `controller.listener.names` (`host:port`).
    pub controller_listen: Option<String>,
    pub broker_heartbeat_interval_ms: u64,
    pub broker_session_timeout_ms: u64,
    pub election_timeout_ms: u64,
    pub fetch_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub retry_backoff_ms: u64,
    /// `loglab.metadata.poll.ms`: a broker's committed-metadata pull interval.
    pub metadata_poll_ms: u64,
}

impl Default for QuorumSettings {
    fn default() -> Self {
        Self {
            voters: None,
            roles: vec!["broker".into(), "controller".into()],
            listener_name: "CONTROLLER".into(),
            controller_listen: None,
            broker_heartbeat_interval_ms: 2_000,
            broker_session_timeout_ms: 9_000,
            election_timeout_ms: 1_000,
            fetch_timeout_ms: 2_000,
            request_timeout_ms: 2_000,
            retry_backoff_ms: 20,
            metadata_poll_ms: 250,
        }
    }
}

impl QuorumSettings {
    pub fn is_controller(&self) -> bool {
        self.roles.iter().any(|r| r == "controller")
    }
    pub fn is_broker(&self) -> bool {
        self.roles.iter().any(|r| r == "broker")
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 0,
            advertised: None,
            num_partitions: 1,
            auto_create_topics: true,
            default_replication_factor: 1,
            socket_request_max_bytes: 104_857_600,
            log: LogConfig::default(),
            retention_check_interval_ms: 300_000,
            flush_scheduler_interval_ms: 1000,
            checkpoint_interval_ms: 60_000,
            file_delete_delay_ms: 60_000,
            fetch_zero_copy: true,
            admin_token: None,
            cluster_id: "loglab-cluster-0000000".to_string(),
            group: crate::group::GroupConfig::default(),
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            cleaner_enable: true,
            cleaner_backoff_ms: 15_000,
            cleaner_dedupe_buffer_size: 128 * 1024 * 1024,
            quorum: QuorumSettings::default(),
            replication: ReplicationSettings::default(),
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            leader_imbalance_per_broker_percentage: 10,
            safeguards: crate::safeguards::Safeguards::default(),
            net: NetSettings::default(),
            quorum_roles_set: false,
            ignored: Vec::new(),
            precedence: Precedence::default(),
            limits: LimitSettings::default(),
        }
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::BadValue {
            key: key.into(),
            value: value.into(),
            why: "expected true or false".into(),
        }),
    }
}

fn parse_int<T: std::str::FromStr>(key: &str, value: &str, lo: i64) -> Result<T, ConfigError> {
    let bad =
        |why: &str| ConfigError::BadValue { key: key.into(), value: value.into(), why: why.into() };
    let v: i64 = value.trim().parse().map_err(|_| bad("not an integer"))?;
    if v < lo {
        return Err(bad("out of range"));
    }
    value.trim().parse::<T>().map_err(|_| bad("out of range"))
}

impl BrokerConfig {
    /// Sets one key; unknown keys are errors naming the key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let value = value.trim();
        match key {
            "node.id" | "broker.id" => self.node_id = parse_int(key, value, 0)?,
            "num.partitions" => self.num_partitions = parse_int(key, value, 1)?,
            "auto.create.topics.enable" => self.auto_create_topics = parse_bool(key, value)?,
            "default.replication.factor" => {
                self.default_replication_factor = parse_int(key, value, 1)?
            }
            "socket.request.max.bytes" => self.socket_request_max_bytes = parse_int(key, value, 1)?,
            "log.retention.check.interval.ms" => {
                self.retention_check_interval_ms = parse_int(key, value, 1)?
            }
            "log.flush.scheduler.interval.ms" => {
                self.flush_scheduler_interval_ms = parse_int(key, value, 1)?
            }
            "log.flush.offset.checkpoint.interval.ms" => {
                self.checkpoint_interval_ms = parse_int(key, value, 1)?
            }
            "log.segment.delete.delay.ms" => self.file_delete_delay_ms = parse_int(key, value, 0)?,
            "loglab.fetch.zero.copy" => self.fetch_zero_copy = parse_bool(key, value)?,
            "loglab.admin.token" => {
                self.admin_token = Some(value.to_string()).filter(|t| !t.is_empty())
            }
            "cluster.id" => self.cluster_id = value.to_string(),
            "group.min.session.timeout.ms" => {
                self.group.session_timeout_ms_min = parse_int(key, value, 1)?
            }
            "group.max.session.timeout.ms" => {
                self.group.session_timeout_ms_max = parse_int(key, value, 1)?
            }
            "group.max.size" => self.group.members_max = parse_int(key, value, 1)?,
            "group.initial.rebalance.delay.ms" => {
                self.group.initial_rebalance_delay_ms = parse_int(key, value, 0)?
            }
            "offset.metadata.max.bytes" => {
                self.group.offset_metadata_bytes_max = parse_int(key, value, 0)?
            }
            "offsets.topic.num.partitions" => {
                self.offsets_topic_num_partitions = parse_int(key, value, 1)?
            }
            "offsets.retention.minutes" => {
                self.group.offsets_retention_ms =
                    parse_int::<i64>(key, value, 1)?.saturating_mul(60_000)
            }
            "offsets.retention.check.interval.ms" => {
                self.group.offsets_retention_check_interval_ms = parse_int(key, value, 1)?
            }
            "offsets.topic.segment.bytes" => {
                self.group.offsets_topic_segment_bytes = parse_int(key, value, 14)?
            }
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = parse_int(key, value, 1)?
            }
            "log.cleaner.enable" => self.cleaner_enable = parse_bool(key, value)?,
            "min.insync.replicas" => {
                self.replication.min_insync_replicas = parse_int(key, value, 1)?;
                self.log.set(key, value)?; // the topics' default (one value, two readers)
            }
            "replica.lag.time.max.ms" => {
                self.replication.replica_lag_time_max_ms = parse_int(key, value, 1)?
            }
            "replica.fetch.wait.max.ms" => {
                self.replication.replica_fetch_wait_max_ms = parse_int(key, value, 0)?
            }
            "replica.fetch.max.bytes" => {
                self.replication.replica_fetch_max_bytes = parse_int(key, value, 1)?
            }
            "replica.fetch.response.max.bytes" => {
                self.replication.replica_fetch_response_max_bytes = parse_int(key, value, 1)?
            }
            "replica.fetch.backoff.ms" => {
                self.replication.replica_fetch_backoff_ms = parse_int(key, value, 0)?
            }
            "replica.high.watermark.checkpoint.interval.ms" => {
                self.replication.hw_checkpoint_interval_ms = parse_int(key, value, 1)?
            }
            "replica.socket.timeout.ms" => {
                self.replication.replica_socket_timeout_ms = parse_int(key, value, 1)?
            }
            "unclean.leader.election.enable" => {
                self.unclean_leader_election_enable = parse_bool(key, value)?;
                self.log.set(key, value)?;
            }
            "log.cleaner.backoff.ms" => self.cleaner_backoff_ms = parse_int(key, value, 1)?,
            "auto.leader.rebalance.enable" => {
                self.auto_leader_rebalance_enable = parse_bool(key, value)?
            }
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_seconds = parse_int(key, value, 1)?
            }
            "leader.imbalance.per.broker.percentage" => {
                let pct: u32 = parse_int(key, value, 0)?;
                if pct > 100 {
                    return Err(ConfigError::BadValue {
                        key: key.into(),
                        value: value.into(),
                        why: "a percentage: 0 to 100".into(),
                    });
                }
                self.leader_imbalance_per_broker_percentage = pct;
            }
            // Issue 17's bounds (see `LimitSettings`).
            "connections.max.idle.ms" => {
                self.limits.connections_max_idle_ms = parse_int(key, value, 1)?
            }
            "loglab.frame.read.timeout.ms" => {
                self.limits.frame_read_timeout_ms = parse_int(key, value, 1)?
            }
            "max.connections" => self.limits.max_connections = parse_int(key, value, 1)?,
            "loglab.partitions.per.request.max" => {
                self.limits.partitions_per_request_max = parse_int(key, value, 1)?
            }
            "loglab.partitions.per.broker.max" => {
                self.limits.partitions_per_broker_max = parse_int(key, value, 1)?
            }
            "loglab.open.files.max" => {
                self.limits.open_files_max = Some(parse_int(key, value, 16)?)
            }
            "log.cleaner.dedupe.buffer.size" => {
                self.cleaner_dedupe_buffer_size = parse_int(key, value, 1024)?
            }
            "controller.quorum.voters" => {
                crate::controller::rpc::parse_voters(value).map_err(|why| {
                    ConfigError::BadValue { key: key.into(), value: value.into(), why }
                })?;
                self.quorum.voters = Some(value.to_string());
            }
            "process.roles" => {
                let roles: Vec<String> = value
                    .split(',')
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty())
                    .collect();
                if roles.is_empty() || roles.iter().any(|r| r != "broker" && r != "controller") {
                    return Err(ConfigError::BadValue {
                        key: key.into(),
                        value: value.into(),
                        why: "expected broker, controller or both".into(),
                    });
                }
                self.quorum.roles = roles;
                self.quorum_roles_set = true;
            }
            "broker.heartbeat.interval.ms" => {
                self.quorum.broker_heartbeat_interval_ms = parse_int(key, value, 1)?
            }
            "broker.session.timeout.ms" => {
                self.quorum.broker_session_timeout_ms = parse_int(key, value, 1)?
            }
            "controller.quorum.election.timeout.ms" => {
                self.quorum.election_timeout_ms = parse_int(key, value, 1)?
            }
            "controller.quorum.fetch.timeout.ms" => {
                self.quorum.fetch_timeout_ms = parse_int(key, value, 1)?
            }
            "controller.quorum.request.timeout.ms" => {
                self.quorum.request_timeout_ms = parse_int(key, value, 1)?
            }
            "controller.quorum.retry.backoff.ms" => {
                self.quorum.retry_backoff_ms = parse_int(key, value, 1)?
            }
            "loglab.metadata.poll.ms" => self.quorum.metadata_poll_ms = parse_int(key, value, 1)?,
            k if k.starts_with("loglab.unsafe.") => {
                if !self.safeguards.set(k, parse_bool(key, value)?) {
                    return Err(ConfigError::UnknownKey { key: key.to_string() });
                }
                self.group.unsafe_commit_any_generation = self.safeguards.commit_any_generation;
                self.replication.unsafe_truncate_to_hw = self.safeguards.truncate_to_hw;
                self.replication.unsafe_fetch_ignore_epoch = self.safeguards.fetch_ignore_epoch;
                self.replication.unsafe_zombie_fencing_disabled =
                    self.safeguards.zombie_fencing_disabled;
            }
            _ if self.set_net(key, value)? => {}
            _ if IGNORED.iter().any(|(k, _)| *k == key) => {
                let why = IGNORED.iter().find(|(k, _)| *k == key).map_or("", |(_, w)| *w);
                self.ignored.push((format!("{key}={value}"), why));
            }
            _ => {
                if let Some((retention, rank)) = unit_rank(key) {
                    let current =
                        if retention { self.precedence.retention } else { self.precedence.roll };
                    if rank < current {
                        self.ignored.push((format!("{key}={value}"), "a finer unit is set"));
                        return Ok(());
                    }
                }
                if !self.log.set(key, value)? {
                    return Err(ConfigError::UnknownKey { key: key.to_string() });
                }
                // Topic-level spellings are not broker keys (Kafka rejects e.g. `segment.bytes` here).
                if !(key.starts_with("log.")
                    || key == "message.max.bytes"
                    || key == "compression.type")
                {
                    return Err(ConfigError::UnknownKey { key: key.to_string() });
                }
                match unit_rank(key) {
                    Some((true, rank)) => self.precedence.retention = rank,
                    Some((false, rank)) => self.precedence.roll = rank,
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// Applies a `server.properties` text: `key=value` lines, `#`/`!` comments, blank lines.
    pub fn apply_properties(&mut self, text: &str) -> Result<(), ConfigError> {
        for (key, value) in parse_properties(text)? {
            self.set(&key, &value)?;
        }
        Ok(())
    }

    /// Applies one `--override key=value`.
    pub fn apply_override(&mut self, kv: &str) -> Result<(), ConfigError> {
        let (k, v) = kv.split_once('=').ok_or_else(|| ConfigError::BadOverride(kv.to_string()))?;
        self.set(k.trim(), v)
    }

    /// Every effective setting by name (printed at start).
    pub fn effective(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        m.insert("node.id", self.node_id.to_string());
        m.insert("num.partitions", self.num_partitions.to_string());
        m.insert("auto.create.topics.enable", self.auto_create_topics.to_string());
        m.insert("socket.request.max.bytes", self.socket_request_max_bytes.to_string());
        m.insert("message.max.bytes", self.log.max_message_bytes.to_string());
        m.insert("log.segment.bytes", self.log.segment_bytes.to_string());
        m.insert("log.retention.ms", self.log.retention_ms.to_string());
        m.insert("log.retention.bytes", self.log.retention_bytes.to_string());
        m.insert("log.cleanup.policy", self.log.cleanup_policy.as_str().to_string());
        m.insert("log.cleaner.enable", self.cleaner_enable.to_string());
        m.insert("log.cleaner.backoff.ms", self.cleaner_backoff_ms.to_string());
        m.insert("loglab.fetch.zero.copy", self.fetch_zero_copy.to_string());
        // The token itself is a secret: only whether one is set is printed.
        let token = if self.admin_token.is_some() { "(set)" } else { "(none)" };
        m.insert("loglab.admin.token", token.to_string());
        m.insert("min.insync.replicas", self.replication.min_insync_replicas.to_string());
        m.insert("replica.lag.time.max.ms", self.replication.replica_lag_time_max_ms.to_string());
        m.insert("unclean.leader.election.enable", self.unclean_leader_election_enable.to_string());
        m.insert("auto.leader.rebalance.enable", self.auto_leader_rebalance_enable.to_string());
        m.insert(
            "leader.imbalance.check.interval.seconds",
            self.leader_imbalance_check_interval_seconds.to_string(),
        );
        m.insert(
            "leader.imbalance.per.broker.percentage",
            self.leader_imbalance_per_broker_percentage.to_string(),
        );
        m.insert("log.segment.delete.delay.ms", self.file_delete_delay_ms.to_string());
        for sw in self.safeguards.off() {
            m.insert(sw.key, "true".to_string());
        }
        let l = &self.limits;
        m.insert("connections.max.idle.ms", l.connections_max_idle_ms.to_string());
        m.insert("loglab.frame.read.timeout.ms", l.frame_read_timeout_ms.to_string());
        m.insert("max.connections", l.max_connections.to_string());
        m.insert("loglab.partitions.per.request.max", l.partitions_per_request_max.to_string());
        m.insert("loglab.partitions.per.broker.max", l.partitions_per_broker_max.to_string());
        m.insert("loglab.open.files.max", l.open_files_max().to_string());
        m
    }
}

/// Parses Java-properties text into (key, value) pairs in order (the one parser, in kafka-types).
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    kafka_types::parse_properties(text)
        .map_err(|e| ConfigError::BadLine { line: e.line, text: e.text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_and_unknown_keys() {
        let mut c = BrokerConfig::default();
        c.apply_properties("# comment\nnum.partitions=3\n\nlog.segment.bytes = 1048576\nauto.create.topics.enable=false\n").unwrap();
        assert_eq!(
            (c.num_partitions, c.log.segment_bytes, c.auto_create_topics),
            (3, 1 << 20, false)
        );
        c.apply_override("message.max.bytes=2000").unwrap();
        assert_eq!(c.log.max_message_bytes, 2000);
        assert_eq!(
            c.apply_override("no.such.key=1"),
            Err(ConfigError::UnknownKey { key: "no.such.key".into() })
        );
        assert!(matches!(c.apply_override("num.partitions=x"), Err(ConfigError::BadValue { .. })));
        c.apply_override("advertised.listeners=PLAINTEXT://localhost:9093").unwrap();
        assert_eq!(c.advertised, Some(("localhost".into(), 9093)));
    }

    #[test]
    fn quorum_keys() {
        let mut c = BrokerConfig::default();
        assert_eq!(c.quorum.voters, None);
        c.apply_properties("process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=0@h:9093,1@h:9095\nlisteners=PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9095\nbroker.session.timeout.ms=3000\n").unwrap();
        assert_eq!(c.quorum.voters.as_deref(), Some("0@h:9093,1@h:9095"));
        assert_eq!(c.quorum.controller_listen.as_deref(), Some("127.0.0.1:9095"));
        assert!(c.quorum.is_broker() && c.quorum.is_controller());
        assert_eq!(c.quorum.broker_session_timeout_ms, 3000);
        assert!(matches!(
            c.apply_override("controller.quorum.voters=0@h"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(matches!(
            c.apply_override("process.roles=zookeeper"),
            Err(ConfigError::BadValue { .. })
        ));
        c.apply_override("process.roles=broker").unwrap();
        assert!(c.quorum.is_broker() && !c.quorum.is_controller());
    }
}
