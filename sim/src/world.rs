//! The simulated world of one run, built once from the scenario: the network fabric, every
//! broker host (its own disk — its own power-loss domain —, NIC, CPU model and seed), in one
//! loop, and the client machines; then the cluster made ready for the workload (brokers
//! registered, topics created, every partition led).
//!
//! Promises: hosts are built in index order with the seeds and in the order of madsim node
//! creation that earlier versions used (trace hashes of network runs are unchanged by this
//! module); `log.dirs` is provisioned durably on every disk before its broker first starts;
//! a set-up that cannot complete says so in the returned failures (a liveness problem), never
//! by panicking.

use std::sync::Arc;
use std::time::Duration;

use disk_model::clock::Clock;
use disk_model::sim::{SimDisk, SimDiskConfig};

use crate::api::BrokerApi;
use crate::clientload::ClientSide;
use crate::host::{Host, NetSide};
use crate::netclient::NetClient;
use crate::scenario::Scenario;
use crate::trace::Tracer;

/// Salt of the per-broker seeds (disks, election timeouts, incarnations) in cluster runs.
pub const HOST_SALT: u64 = 0x686f_7374_7361_6c74; // "hostsalt"

pub struct World {
    pub net: net_model::SimNet,
    /// `broker-0..N-1`, started.
    pub hosts: Vec<Arc<Host>>,
    /// `client`, `client-1`, ...: the workload's machines (host 0 also carries the admin, the
    /// settle loop's and the oracle's connections).
    pub client_names: Vec<String>,
    pub client_nets: Vec<Arc<dyn net_model::Network>>,
    pub clustered: bool,
    /// `cluster.host.clients_share_host`: the one core pool of every broker and client host.
    pub shared_cpu: Option<net_model::SimCpu>,
    /// With `shared_cpu`: each client machine's workload process on it (`cpu.threads.client`).
    shared_clients: Vec<net_model::PartyCpu>,
}

impl World {
    /// Builds the fabric, the brokers (started) and the client machines.
    pub async fn build(sc: &Scenario, seed: u64, tracer: &Tracer) -> World {
        let net = net_model::SimNet::new(net_model::sim::SimNetConfig {
            seed,
            nic: net_model::sim::NicConfig::symmetric(sc.host.nic_bps),
            link: net_model::sim::LinkConfig {
                latency_ns: sc.host.link_latency_ns,
                ..Default::default()
            },
            ..Default::default()
        });
        let clustered = sc.brokers > 1;
        let shared_cpu = if sc.host.clients_share_host { host_cpu(sc) } else { None };
        let mut parts = Vec::new();
        for i in 0..sc.brokers {
            let disk = disk_for(sc, seed, i, tracer).await;
            let cpu = shared_cpu.clone().or_else(|| host_cpu(sc));
            parts.push((disk, side_for(sc, seed, i, &net, clustered, cpu)));
        }
        let client_names: Vec<String> =
            (0..sc.client_hosts).map(crate::host::client_host_name).collect();
        let nic = net_model::sim::NicConfig::symmetric(loopback_or(sc, sc.client_nic_bps));
        let client_nets = client_names.iter().map(|name| net.add_host(name, nic)).collect();
        let threads = sc.host.cpu.threads.client;
        let shared_clients: Vec<_> = match &shared_cpu {
            Some(cpu) => client_names.iter().map(|_| cpu.party(threads)).collect(),
            None => Vec::new(),
        };
        if shared_cpu.is_some() {
            // One machine: bytes between its processes are kernel copies on its cores, made by
            // the sending and the receiving process's threads; waking a process's parked reader
            // is the OS's work on them too (`cpu.wakeup_cpu`; nothing is charged or spawned
            // while a profile leaves it at 0).
            let wake = !sc.host.cpu.wakeup_cpu.is_zero();
            let mut hooks: Vec<(String, Arc<dyn net_model::CostHook>)> = Vec::new();
            for (i, (_, side)) in parts.iter().enumerate() {
                let hook = side.process_cpu.clone().expect("shared pool");
                hooks.push((format!("broker-{i}"), Arc::new(hook)));
            }
            for (name, party) in client_names.iter().zip(&shared_clients) {
                hooks.push((name.clone(), Arc::new(party.clone())));
            }
            for (name, hook) in hooks {
                if wake {
                    net.set_wake_cpu(&name, hook.clone());
                }
                net.set_loopback_cpu(&name, hook);
            }
        }
        if sc.host.cores.is_some() {
            // The OS waking a parked reader's thread (`cpu.wakeup_ns`; 0 unless a profile
            // measured it), on every host of the model, before any connection is made.
            let brokers = (0..sc.brokers).map(|i| format!("broker-{i}"));
            for name in brokers.chain(client_names.iter().cloned()) {
                net.set_wakeup(&name, sc.host.cpu.wakeup_ns);
            }
        }
        let mut hosts = Vec::new();
        for (i, (disk, side)) in parts.into_iter().enumerate() {
            let h = Host::new(i as u32, disk, tracer.clone(), side);
            h.start();
            hosts.push(h);
        }
        World { net, hosts, client_names, client_nets, clustered, shared_cpu, shared_clients }
    }

    /// The first client machine's view of the fabric (admin, settle loop, oracle).
    pub fn client_net(&self) -> Arc<dyn net_model::Network> {
        self.client_nets[0].clone()
    }

    /// A connection to broker `b` from the first client machine.
    pub fn conn(&self, b: usize, who: &str, tracer: &Tracer) -> NetClient {
        NetClient::new(self.client_net(), self.hosts[b].addr(), who.into(), tracer.clone(), -1, 1)
    }

    /// How the settle loop and the oracle read the cluster: each partition from its current
    /// leader (cluster runs) or from broker-0.
    pub fn reader(&self, tracer: &Tracer) -> Arc<dyn BrokerApi> {
        if !self.clustered {
            return Arc::new(self.conn(0, "oracle", tracer));
        }
        Arc::new(crate::cluster::Router {
            hosts: self.hosts.clone(),
            clients: (0..self.hosts.len()).map(|b| self.conn(b, "oracle", tracer)).collect(),
        })
    }

    /// The client machines' sides (their CPU models: one core pool each, the brokers' profile,
    /// when `cluster.host.cores` is set; the brokers' pool when clients share the host; each
    /// machine's workload one process of `cpu.threads.client` threads) and the CPUs themselves
    /// (`None` for a shared pool, which [`World::cpus`] lists once).
    pub fn client_sides(&self, sc: &Scenario) -> (Vec<ClientSide>, Vec<Option<net_model::SimCpu>>) {
        let cpus: Vec<Option<net_model::SimCpu>> = self
            .client_nets
            .iter()
            .map(|_| if self.shared_cpu.is_some() { None } else { host_cpu(sc) })
            .collect();
        let threads = sc.host.cpu.threads.client;
        let sides = self
            .client_nets
            .iter()
            .zip(&cpus)
            .enumerate()
            .map(|(i, (cn, cpu))| ClientSide {
                net: cn.clone(),
                cpu: cpu
                    .as_ref()
                    .map(|c| c.party(threads))
                    .or_else(|| self.shared_clients.get(i).cloned())
                    .map(|c| Arc::new(c) as Arc<dyn net_model::CostHook>)
                    .unwrap_or_else(|| Arc::new(net_model::RealCpu)),
                bootstrap: self.hosts.iter().map(|h| h.addr()).collect(),
            })
            .collect();
        (sides, cpus)
    }

    /// Makes the cluster ready for the workload, as an operator would: (cluster runs) wait
    /// until every broker registered, create the scenario's topics, (cluster runs) wait until
    /// every partition has a leader. Returns what could not be done.
    pub async fn prepare(&self, sc: &Scenario, tracer: &Tracer) -> Vec<String> {
        let mut failures = Vec::new();
        if self.clustered {
            // Topics are created once every broker has registered, so the controller spreads
            // replicas and leaders round-robin over all of them.
            failures.extend(self.await_registration(sc, tracer).await);
        }
        failures.extend(self.create_topics(sc, tracer).await);
        if self.clustered {
            failures.extend(self.await_leaders(sc, tracer).await);
        }
        failures
    }

    async fn await_registration(&self, sc: &Scenario, tracer: &Tracer) -> Option<String> {
        let give_up = tracer.now_ns() + 20_000_000_000;
        let mut failure = None;
        while crate::cluster::registered_brokers(&self.hosts) < sc.brokers as usize {
            if tracer.now_ns() > give_up {
                failure = Some(format!(
                    "only {} of {} brokers registered within 20 s",
                    crate::cluster::registered_brokers(&self.hosts),
                    sc.brokers
                ));
                break;
            }
            tracer.sleep_until_ns(tracer.now_ns() + 10_000_000).await;
        }
        let registered = crate::cluster::registered_brokers(&self.hosts);
        tracer.event("brokers-registered", &format!("{registered}"));
        failure
    }

    /// Like an operator's `kafka-topics --create` before the workload starts.
    async fn create_topics(&self, sc: &Scenario, tracer: &Tracer) -> Option<String> {
        let admin = self.conn(0, "admin", tracer);
        let give_up = 10_000_000_000;
        loop {
            match admin.create_topics(&sc.topics, Duration::from_secs(5)).await {
                Ok(()) => return None,
                Err(e) if tracer.now_ns() < give_up => {
                    tracer.event("create-topics-retry", e.code());
                    tracer.sleep_until_ns(tracer.now_ns() + 10_000_000).await;
                }
                Err(e) => {
                    tracer.event("create-topics-failed", &e.to_string());
                    return Some(format!("the scenario's topics could not be created: {e}"));
                }
            }
        }
    }

    async fn await_leaders(&self, sc: &Scenario, tracer: &Tracer) -> Option<String> {
        let give_up = tracer.now_ns() + 20_000_000_000;
        loop {
            let ready = sc.topics.iter().all(|t| {
                (0..t.partitions).all(|p| {
                    crate::cluster::partition_state(&self.hosts, &t.name, p)
                        .is_some_and(|s| s.leader >= 0)
                })
            });
            if ready {
                let controller = crate::cluster::active_controller(&self.hosts);
                let line = format!(
                    "every partition has a leader; controller=broker-{}",
                    controller.map_or(-1, i64::from)
                );
                tracer.event("cluster-ready", &line);
                return None;
            }
            if tracer.now_ns() > give_up {
                return Some(
                    "the cluster's partitions had no leaders 20 s after the topics were created"
                        .into(),
                );
            }
            tracer.sleep_until_ns(tracer.now_ns() + 10_000_000).await;
        }
    }

    /// Every host's CPU model (brokers, then client machines), by host name.
    pub fn cpus(
        &self,
        client_cpus: &[Option<net_model::SimCpu>],
    ) -> Vec<(String, net_model::SimCpu)> {
        if let Some(c) = &self.shared_cpu {
            return vec![("shared-host".into(), c.clone())];
        }
        let brokers =
            self.hosts.iter().filter_map(|h| h.network.cpu.clone().map(|c| (h.name(), c)));
        let clients = self
            .client_names
            .iter()
            .zip(client_cpus)
            .filter_map(|(n, c)| c.clone().map(|c| (n.clone(), c)));
        brokers.chain(clients).collect()
    }
}

/// Broker `i`'s disk, with `log.dirs` provisioned as the operator does before the broker first
/// starts (mkdir + a durable parent entry: the broker's own `create_dir_all` of a missing data
/// dir does not fsync the parent, so without this a power loss would take the data dir along).
async fn disk_for(sc: &Scenario, seed: u64, i: u32, tracer: &Tracer) -> SimDisk {
    use disk_model::Storage;
    let disk_seed = if i == 0 { seed } else { seed ^ HOST_SALT ^ u64::from(i) };
    let mut cfg = SimDiskConfig::new(sc.host.device.clone(), disk_seed);
    cfg.page_cache = sc.host.page_cache.clone();
    let dirs = crate::host::data_dirs(sc.host.disks);
    // JBOD: every data directory but the first is a disk of its own.
    cfg.mounts = dirs[1..].to_vec();
    let disk = SimDisk::new(cfg, Clock::Runtime(tracer.epoch()));
    disk.set_torn_writes(sc.host.torn_writes);
    disk.set_space_limit_bytes(sc.host.disk_bytes);
    for dir in &dirs {
        let r = async {
            disk.create_dir_all(dir).await?;
            disk.sync_dir(std::path::Path::new("")).await
        }
        .await;
        let outcome = r.map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string());
        // broker-0's line carries no host name (as before clusters existed).
        let who = if i == 0 { String::new() } else { format!("broker-{i} ") };
        tracer.event("provisioned", &format!("{who}{} {outcome}", dir.display()));
    }
    disk
}

/// Broker `i`'s side of the fabric: its NIC, its configuration, its CPU model and its seed.
fn side_for(
    sc: &Scenario,
    seed: u64,
    i: u32,
    net: &net_model::SimNet,
    clustered: bool,
    cpu: Option<net_model::SimCpu>,
) -> NetSide {
    let nic = net_model::sim::NicConfig::symmetric(loopback_or(sc, sc.host.nic_bps));
    let process_cpu = cpu.as_ref().map(|c| c.party(sc.host.cpu.threads.broker));
    NetSide {
        net: net.clone(),
        view: net.add_host(&format!("broker-{i}"), nic),
        config: if clustered {
            crate::scenario::cluster_broker_config(&sc.broker, i, sc.controllers)
        } else {
            crate::scenario::broker_config(&sc.broker)
        },
        cpu,
        process_cpu,
        nominal_bps: loopback_or(sc, sc.host.nic_bps),
        seed: seed ^ HOST_SALT ^ u64::from(i).wrapping_mul(0x0100_0000_01b3),
    }
}

/// A host's NIC rate: `bps`, or when clients share the host (one machine, loopback) the
/// fastest NIC the model allows, so the shared cores' loopback copies (`cpu.loopback`) bound
/// the bytes, not a NIC the machine does not use for them.
fn loopback_or(sc: &Scenario, bps: u64) -> u64 {
    if sc.host.clients_share_host {
        net_model::sim::NIC_BPS_MAX
    } else {
        bps
    }
}

/// A host's CPU model (`cluster.host.cores` and `cpu`), `None` without one.
fn host_cpu(sc: &Scenario) -> Option<net_model::SimCpu> {
    sc.host.cores.map(|_| net_model::SimCpu::new(sc.host.cpu.clone()))
}
