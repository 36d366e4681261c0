//! Starting a node in combined mode, the same way in both worlds: `broker serve` calls
//! [`start`] with the real network and disk, the simulator with its simulated ones.
//!
//! Starts this node's controller (when `process.roles` has `controller`) and its broker side
//! (when it has `broker`): the controller link (registration, heartbeats, metadata), the local
//! topic sync and the replica manager (followers fetching, leaders tracking the ISR).

use std::path::Path;
use std::sync::Arc;

use disk_model::Storage;
use net_model::Network;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::link::{LinkConfig, RpcLink};
use super::node::{self, ControllerHandle};
use super::rpc;
use crate::broker::Broker;
use crate::config::BrokerConfig;

/// What [`start`] started. Keep `controller` alive as long as the node runs.
pub struct Started {
    pub controller: Option<ControllerHandle>,
    pub link: Option<Arc<RpcLink>>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Combined mode (`controller.quorum.voters` set): starts what `cfg.quorum` asks for. `advertised`
/// is where clients reach this broker; `seed` seeds election timeouts and the incarnation (the OS
/// clock in real mode, the scenario seed in the simulator). Returns `Ok` with nothing started
/// when no quorum is configured.
pub async fn start(
    cfg: &BrokerConfig,
    net: Arc<dyn Network>,
    storage: Arc<dyn Storage>,
    broker: &Arc<Broker>,
    advertised: (&str, i32),
    seed: u64,
    shutdown: &watch::Receiver<bool>,
) -> Result<Started, String> {
    let mut out = Started { controller: None, link: None, tasks: Vec::new() };
    let Some(voters) = cfg.quorum.voters.as_deref() else { return Ok(out) };
    let voters = rpc::parse_voters(voters)?;
    let node_id = u64::try_from(cfg.node_id).map_err(|_| "node.id must be >= 0".to_string())?;
    let q = &cfg.quorum;
    if q.is_controller() {
        let listen =
            q.controller_listen.clone().or_else(|| voters.get(&node_id).cloned()).ok_or_else(
                || format!("node {node_id} is a controller but has no controller listener"),
            )?;
        let mut qc = rpc::QuorumConfig::new(node_id, voters.clone());
        qc.election_timeout_ms = q.election_timeout_ms;
        qc.fetch_timeout_ms = q.fetch_timeout_ms;
        qc.broker_session_timeout_ms = q.broker_session_timeout_ms;
        qc.request_timeout_ms = q.request_timeout_ms;
        qc.retry_backoff_ms = q.retry_backoff_ms;
        qc.unclean_leader_election_enable = cfg.unclean_leader_election_enable;
        qc.min_insync_replicas = cfg.replication.min_insync_replicas;
        qc.unsafe_elr_disabled = cfg.safeguards.elr_disabled;
        qc.unsafe_answer_uncommitted = cfg.safeguards.controller_fencing_disabled;
        qc.auto_leader_rebalance_enable = cfg.auto_leader_rebalance_enable;
        qc.leader_imbalance_check_interval_ms =
            cfg.leader_imbalance_check_interval_seconds.saturating_mul(1_000);
        qc.leader_imbalance_per_broker_percentage = cfg.leader_imbalance_per_broker_percentage;
        qc.seed = seed;
        let h =
            node::start(qc, net.clone(), storage.clone(), Path::new(""), &listen, shutdown.clone())
                .await
                .map_err(|e| e.to_string())?;
        tracing::info!(node = node_id, addr = %h.local_addr, "controller listening");
        let _ = broker.controller_status.set(h.status.clone());
        out.controller = Some(h);
    }
    if q.is_broker() {
        let (host, port) = advertised;
        let endpoint = cluster::metadata::Endpoint {
            host: host.to_string(),
            port: u16::try_from(port).map_err(|_| format!("bad port {port}"))?,
        };
        let mut lc = LinkConfig::new(cfg.node_id, endpoint, voters);
        lc.incarnation = seed;
        lc.heartbeat_interval_ms = q.broker_heartbeat_interval_ms;
        // Long enough to ride out one controller election.
        lc.request_timeout_ms =
            q.request_timeout_ms.max(q.fetch_timeout_ms + q.election_timeout_ms) * 2;
        lc.retry_backoff_ms = q.retry_backoff_ms;
        lc.metadata_poll_ms = q.metadata_poll_ms;
        lc.clean_shutdown = broker.opened_clean();
        let l = RpcLink::new(lc, net.clone());
        out.tasks.push(l.spawn(shutdown.clone()));
        broker.attach_controller(l.clone());
        out.tasks.push(tokio::spawn(crate::broker::replica_manager::run(
            broker.clone(),
            l.clone(),
            net,
            shutdown.clone(),
        )));
        out.link = Some(l);
    }
    Ok(out)
}
