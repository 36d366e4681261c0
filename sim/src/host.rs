//! A broker host: a simulated disk and one madsim node running the whole broker as
//! `broker serve` runs it — `broker::node::start_inline` (recovery, background tasks, combined
//! mode) and the request server on a listener of the simulated network (`net_model::SimNet`);
//! clients reach it with Kafka requests ([`crate::netclient`], the `client` crate).
//!
//! Killing the node drops every task of the broker process mid-operation; the host's
//! connections are reset first (`SimNet::crash`, as the kernel does when a process dies); the
//! disk decides what survives (`crash_process` keeps the page cache, `power_loss` does not);
//! restarting it re-runs the broker's start: open the data directory, recover, serve.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use disk_model::sim::SimDisk;
use disk_model::Storage;
use madsim::task::NodeId;

use crate::faults::requests::{self, RequestRules, RuleRecord};
use crate::faults::Fault;
use crate::trace::Tracer;

/// The data directory inside the disk (Kafka's `log.dirs`).
pub const DATA_DIR: &str = "kafka-logs";

/// `log.dirs` on a host with `disks` disks (JBOD): [`DATA_DIR`] on the first, `kafka-logs-<i>`
/// mounted on disk `i` (each its own device behind the host's one page cache).
pub fn data_dirs(disks: u32) -> Vec<PathBuf> {
    (0..disks.max(1)).map(|i| Host::data_path_on(i, None)).collect()
}

/// The host the workloads (and the run's supervisor) connect from in network runs.
pub const CLIENT_HOST: &str = "client";

/// Client machine `i` of `workload.client_hosts`: `client`, `client-1`, `client-2`, ...
pub fn client_host_name(i: u32) -> String {
    if i == 0 {
        CLIENT_HOST.to_string()
    } else {
        format!("{CLIENT_HOST}-{i}")
    }
}

/// The port brokers listen on in network runs.
pub const BROKER_PORT: u16 = 9092;

/// A networked host's side of the simulated network and the broker's configuration.
pub struct NetSide {
    pub net: net_model::SimNet,
    /// This host's view of the fabric (binds happen on it).
    pub view: Arc<dyn net_model::Network>,
    pub config: broker::BrokerConfig,
    /// The host's CPU model (`cluster.host.cores`), for its stats.
    pub cpu: Option<net_model::SimCpu>,
    /// The broker process on `cpu` (at most `cpu.threads.broker` cores at once); the broker
    /// charges its work to it.
    pub process_cpu: Option<net_model::PartyCpu>,
    /// The NIC's bandwidth when not degraded (`cluster.host.nic`).
    pub nominal_bps: u64,
    /// Cluster runs: this host's seed (the scenario seed with a per-host salt); each start mixes
    /// in the incarnation, so election timeouts and broker incarnations replay exactly.
    pub seed: u64,
}

/// What outlives a broker process: its disk, its configuration, its address.
pub struct Host {
    pub id: u32,
    pub disk: SimDisk,
    pub network: NetSide,
    tracer: Tracer,
    incarnation: AtomicU64,
    up: AtomicBool,
    node: Mutex<Option<NodeId>>,
    /// The running broker process (for its metrics), `None` while down.
    process: Mutex<Option<Arc<broker::Broker>>>,
    /// Start failures (the broker could not open its logs): a liveness problem.
    pub failures: Mutex<Vec<String>>,
    /// Cluster runs: the running node's controller link (its metadata image) and its
    /// controller's Raft status; `None` while down.
    link: Mutex<Option<Arc<broker::controller::link::RpcLink>>>,
    controller: Mutex<Option<tokio::sync::watch::Receiver<broker::controller::node::NodeStatus>>>,
    /// Request-fault rules installed on the running broker process, and every record.
    requests: Mutex<RequestRules>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Host {
    /// A host whose broker serves Kafka requests on the simulated network.
    pub fn new(id: u32, disk: SimDisk, tracer: Tracer, network: NetSide) -> Arc<Self> {
        Arc::new(Host {
            id,
            disk,
            network,
            tracer,
            incarnation: AtomicU64::new(0),
            up: AtomicBool::new(false),
            node: Mutex::new(None),
            process: Mutex::new(None),
            failures: Mutex::new(Vec::new()),
            link: Mutex::new(None),
            controller: Mutex::new(None),
            requests: Mutex::new(RequestRules::default()),
        })
    }

    pub fn name(&self) -> String {
        format!("broker-{}", self.id)
    }

    /// Creates the host's node and starts the broker process on it.
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        let node = madsim::runtime::Handle::current()
            .create_node()
            .name(self.name())
            .init(move || {
                let me = me.clone();
                async move { me.serve().await }
            })
            .build();
        *lock(&self.node) = Some(node.id());
        self.up.store(true, Ordering::SeqCst);
    }

    fn node_id(&self) -> NodeId {
        lock(&self.node).expect("host started")
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// The process's tasks die. In network runs its connections are reset first (the kernel
    /// closes a dead process's sockets with RST), so no handle dropped by the kill sends a FIN.
    fn kill_process(&self) {
        self.with_requests(|r, on| r.stopped(on));
        lock(&self.process).take();
        lock(&self.link).take();
        lock(&self.controller).take();
        if self.up.swap(false, Ordering::SeqCst) {
            self.network.net.crash(&self.name());
            madsim::runtime::Handle::current().kill(self.node_id());
        }
    }

    /// Process crash: every task of the broker dies; the kernel (page cache) survives.
    pub fn kill(&self) {
        self.kill_process();
        self.disk.crash_process();
    }

    /// Power cut: the process dies and the page cache's dirty pages are lost.
    pub fn power_loss(&self) {
        self.kill_process();
        self.disk.power_loss();
    }

    /// Starts the broker again (a running one is killed first, as `kill -9` + start).
    pub fn restart(&self) {
        if self.is_up() {
            self.kill();
        }
        self.network.net.restart(&self.name());
        self.up.store(true, Ordering::SeqCst);
        madsim::runtime::Handle::current().restart(self.node_id());
    }

    /// Cuts this host off from `peers`, both ways.
    pub fn partition(&self, peers: &[String]) {
        for p in peers {
            self.network.net.partition(&self.name(), p);
        }
    }

    /// Cluster runs: a partition with a direction or on one port (`on` = cut, else heal).
    pub fn cut(
        &self,
        peers: &[String],
        direction: crate::scenario::Direction,
        port: Option<u16>,
        on: bool,
    ) {
        use crate::scenario::Direction;
        let n = &self.network;
        let me = self.name();
        for p in peers {
            match (port, direction) {
                (Some(port), _) => {
                    // Connections from the peer to my listener, and from me to the peer's.
                    for (client, server) in [(p.as_str(), me.as_str()), (me.as_str(), p.as_str())] {
                        if on {
                            n.net.block_port(client, server, port);
                        } else {
                            n.net.unblock_port(client, server, port);
                        }
                    }
                }
                (None, Direction::Both) if on => n.net.partition(&me, p),
                (None, Direction::Both) => n.net.heal_between(&me, p),
                (None, Direction::In) if on => n.net.partition_one_way(p, &me),
                (None, Direction::In) => n.net.heal_one_way(p, &me),
                (None, Direction::Out) if on => n.net.partition_one_way(&me, p),
                (None, Direction::Out) => n.net.heal_one_way(&me, p),
            }
        }
    }

    /// Heals this host's partitions from `peers`.
    pub fn heal_partition(&self, peers: &[String]) {
        for p in peers {
            self.network.net.heal_between(&self.name(), p);
        }
    }

    /// The running broker's request counters (`Metrics::snapshot`, the numbers behind
    /// `kafka_network_requestmetrics_{requests,errors}_total`) as
    /// `incarnation API=requests/errors ...` for the APIs that served any, by API name; `None`
    /// while down. The broker's own view of requests served, read without instrumenting it.
    pub fn served(&self) -> Option<String> {
        let b = lock(&self.process).clone()?;
        let by_api: std::collections::BTreeMap<&str, (u64, u64)> = b
            .metrics
            .snapshot()
            .requests
            .into_iter()
            .map(|r| (r.request, (r.requests, r.errors)))
            .collect();
        let parts: Vec<String> = by_api
            .iter()
            .filter(|(_, (r, _))| *r > 0)
            .map(|(api, (r, e))| format!("{api}={r}/{e}"))
            .collect();
        Some(format!("incarnation={} {}", self.incarnation.load(Ordering::SeqCst), parts.join(" ")))
    }

    /// Runs `f` on this host's request-fault rules with the running process (if any).
    fn with_requests(&self, f: impl FnOnce(&mut RequestRules, &requests::On)) {
        let process = self.process();
        let on = requests::On {
            broker: process.as_deref(),
            name: self.name(),
            incarnation: self.incarnation(),
            tracer: &self.tracer,
        };
        f(&mut lock(&self.requests), &on);
    }

    /// Installs fault `i`'s request-fault rule on the running broker.
    pub fn install_request_rule(&self, i: usize, fault: &Fault) {
        self.with_requests(|r, on| r.install(on, i, fault));
    }

    /// Ends fault `i`'s request-fault rule (its `for` elapsed), reading its counters.
    pub fn end_request_rule(&self, i: usize) {
        self.with_requests(|r, on| r.end(on, i, "for elapsed"));
    }

    /// The heal: every request-fault rule ends and the broker's rule table is emptied.
    pub fn clear_request_rules(&self) {
        self.with_requests(|r, on| r.clear(on));
    }

    /// Every request-fault rule installed on this host, with the broker's counters.
    pub fn request_records(&self) -> Vec<RuleRecord> {
        lock(&self.requests).records().to_vec()
    }

    /// Sets this host's NIC to `bps` each way (`None` = back to `nominal_bps`).
    pub fn set_nic(&self, bps: Option<u64>) {
        let n = &self.network;
        n.net.set_nic(
            &self.name(),
            net_model::sim::NicConfig::symmetric(bps.unwrap_or(n.nominal_bps)),
        );
    }

    /// The broker's address on the simulated network.
    pub fn addr(&self) -> String {
        format!("{}:{BROKER_PORT}", self.name())
    }

    /// The broker process, started as `broker serve` starts one (`broker::node`): open the data
    /// directory (recovery, registry, producer state), listen, run the periodic tasks and the
    /// combined-mode controller and replica manager, serve until killed. The request server runs
    /// inline in this task ([`broker::node::start_inline`]), so a process runs exactly the tasks
    /// it always ran and the pinned traces hold.
    async fn serve(self: Arc<Self>) {
        let n = &self.network;
        let inc = self.incarnation.fetch_add(1, Ordering::SeqCst) + 1;
        let name = self.name();
        self.tracer.event("broker-start", &format!("{name} incarnation={inc}"));
        let storage: Arc<dyn Storage> = Arc::new(self.disk.clone());
        // Request-fault probabilities, election timeouts and the broker incarnation draw from
        // the run's seed, per host and incarnation.
        let seed = n.seed ^ inc.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut opts = broker::node::NodeOptions::new(
            n.config.clone(),
            storage,
            n.view.clone(),
            &self.addr(),
            seed,
        );
        let mut dirs = data_dirs(self.disk.devices());
        opts.data_dir = dirs.remove(0);
        opts.more_data_dirs = dirs;
        opts.advertised = Some((name.clone(), i32::from(BROKER_PORT)));
        opts.cost = n.process_cpu.clone().map(|cpu| Arc::new(cpu) as Arc<dyn net_model::CostHook>);
        let me = self.clone();
        opts.after_open = Some(Box::new(move |b| Box::pin(async move { me.opened(b).await })));
        let (node, server) = match broker::node::start_inline(opts).await {
            Ok(started) => started,
            Err(e) => return self.failed(&self.start_error(e)),
        };
        if n.config.quorum.voters.is_some() {
            *lock(&self.link) = node.link.clone();
            *lock(&self.controller) = node.controller.as_ref().map(|c| c.status.clone());
            self.tracer.event(
                "combined-start",
                &format!(
                    "{name} node.id={} controller={} broker={}",
                    n.config.node_id,
                    node.controller.is_some(),
                    node.link.is_some()
                ),
            );
        }
        self.tracer.event("broker-ready", &format!("{name} listening on {}", self.addr()));
        server.await;
        drop(node);
    }

    /// The data directory is open: the process is up (for its metrics) and what it opened is
    /// traced.
    async fn opened(&self, b: Arc<broker::Broker>) {
        *lock(&self.process) = Some(b.clone());
        let (partitions, bytes) = b.log_stats().await;
        let name = self.name();
        self.tracer
            .event("broker-opened", &format!("{name} partitions={partitions} bytes={bytes}"));
    }

    /// Why the broker did not start, as the trace has always said it.
    fn start_error(&self, e: broker::node::NodeError) -> String {
        use broker::node::NodeError;
        let name = self.name();
        match e {
            NodeError::Open(e) => format!("{name} could not open its logs: {e}"),
            NodeError::Listen { addr, source } => {
                format!("{name} could not listen on {addr}: {source}")
            }
            NodeError::Combined(e) => format!("{name} could not start in combined mode: {e}"),
            NodeError::Shutdown(e) => format!("{name} could not start: {e}"),
        }
    }

    /// Cluster runs: the newest committed metadata this node holds (`None` while down).
    pub fn image(&self) -> Option<Arc<cluster::metadata::MetadataImage>> {
        let l = lock(&self.link).clone()?;
        use broker::controller::link::ControllerLink;
        let img = l.metadata().borrow().clone();
        Some(img)
    }

    /// Cluster runs: this node's controller's Raft status (`None` while down).
    pub fn controller_status(&self) -> Option<broker::controller::node::NodeStatus> {
        lock(&self.controller).as_ref().map(|r| r.borrow().clone())
    }

    /// The running broker process (`None` while down).
    pub fn process(&self) -> Option<Arc<broker::Broker>> {
        lock(&self.process).clone()
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::SeqCst)
    }

    pub fn pause(&self) {
        madsim::runtime::Handle::current().pause(self.node_id());
    }

    pub fn resume(&self) {
        madsim::runtime::Handle::current().resume(self.node_id());
    }

    fn failed(&self, why: &str) {
        self.tracer.event("broker-start-failed", why);
        lock(&self.failures).push(why.to_string());
    }

    /// A path inside the data directory (for scoping disk faults).
    pub fn data_path(sub: Option<&str>) -> PathBuf {
        Self::data_path_on(0, sub)
    }

    /// A path inside the data directory on disk `disk` (JBOD: `data_dirs`' entry `disk`).
    pub fn data_path_on(disk: u32, sub: Option<&str>) -> PathBuf {
        let dir = match disk {
            0 => PathBuf::from(DATA_DIR),
            d => PathBuf::from(format!("{DATA_DIR}-{d}")),
        };
        match sub {
            Some(s) => dir.join(s),
            None => dir,
        }
    }
}
