//! Faults on the simulated world: [`Fault::apply`] and [`Fault::undo`] on the host a fault hits
//! (a broker or a group member), and the [`Driver`] that walks a run's fault timeline in
//! virtual time, resolves dynamic targets (`leader:T/P`, `follower:T/P`, `controller`) when a
//! fault starts, remembers what is still in force, and at the end of the run heals it all.
//!
//! Promises: after [`Driver::heal`] no fault is in force — every undo ran, disk faults and slow
//! factors are cleared, (cluster runs) the fabric is whole, every broker and member runs again —
//! and `last_heal_ns` is when the last fault ended (the run's end if the heal had work to do).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use disk_model::sim::{FaultId, FaultRule};

use super::{Fault, FaultAction, Peers, Target};
use crate::host::Host;
use crate::member::MemberHost;
use crate::trace::Tracer;
use crate::world::World;

/// Where a fault lands: a broker's host (with the hosts a partition cuts it off from) or a
/// group member's host (with the brokers a partition cuts it off from).
pub enum On<'a> {
    Broker { host: &'a Host, peers: Vec<String> },
    Member { member: &'a MemberHost, brokers: &'a [String] },
}

impl Fault {
    /// Starts the fault on `on`. `rules` keeps the disk-model rule a `disk_error` injected
    /// (by fault index `i`) so [`Fault::undo`] can clear it.
    pub fn apply(&self, i: usize, on: &On, rules: &mut BTreeMap<usize, FaultId>, tracer: &Tracer) {
        let label = &self.label;
        tracer.event("fault", label);
        let ignored = |why: &str| tracer.event("fault-ignored", &format!("{label}: {why}"));
        match (on, &self.action) {
            (On::Member { member, .. }, FaultAction::Kill) => member.kill(),
            (On::Member { member, .. }, FaultAction::Restart) => member.restart(),
            (On::Member { member, .. }, FaultAction::Pause) => member.pause(),
            (On::Member { member, .. }, FaultAction::Leave) => member.leave(),
            (On::Member { member, .. }, FaultAction::StallPoll) => member.stall_poll(true),
            (On::Member { member, brokers }, FaultAction::Partition) => {
                member.partition_from(brokers)
            }
            (On::Member { .. }, other) => {
                ignored(&format!("{other:?} does not apply to a group member"))
            }
            (On::Broker { host, .. }, FaultAction::Kill) => host.kill(),
            // Parsing allows `leave` for group members only.
            (On::Broker { .. }, FaultAction::Leave) => ignored("a broker cannot leave a group"),
            (On::Broker { .. }, FaultAction::StallPoll) => ignored("a broker has no poll loop"),
            (On::Broker { host, .. }, FaultAction::Restart) => host.restart(),
            (On::Broker { host, .. }, FaultAction::PowerLoss) => host.power_loss(),
            (On::Broker { host, .. }, FaultAction::Pause) => host.pause(),
            (On::Broker { host, .. }, FaultAction::SlowDisk { factor, disk: None }) => {
                host.disk.set_slow_factor(*factor)
            }
            (On::Broker { host, .. }, FaultAction::SlowDisk { factor, disk: Some(d) }) => {
                host.disk.set_slow_factor_of(*d, *factor)
            }
            (
                On::Broker { host, .. },
                FaultAction::DiskError { kind, probability, times, path, disk },
            ) => {
                let mut rule = FaultRule::always(kind.model())
                    .with_probability(*probability)
                    .under(Host::data_path_on(disk.unwrap_or(0), path.as_deref()));
                if let Some(t) = times {
                    rule = rule.times(*t);
                }
                rules.insert(i, host.disk.inject_fault(rule));
            }
            (On::Broker { host, .. }, FaultAction::DropCaches) => host.disk.drop_caches(),
            (On::Broker { host, peers }, FaultAction::Partition) => host.partition(peers),
            (On::Broker { host, .. }, FaultAction::SlowNic { bps }) => host.set_nic(Some(*bps)),
            (On::Broker { host, peers }, FaultAction::Cut { direction, port, .. }) => {
                host.cut(peers, *direction, *port, true)
            }
            (On::Broker { host, .. }, FaultAction::CorruptSector { path, disk }) => {
                let under = Host::data_path_on(disk.unwrap_or(0), path.as_deref());
                let hit = host.disk.corrupt_random_sector(under);
                tracer.event("corrupted", &format!("{hit:?}"));
            }
            (On::Broker { host, .. }, FaultAction::Request { .. }) => {
                host.install_request_rule(i, self)
            }
        }
    }

    /// Ends the fault on `on` (actions that hold no state have nothing to undo).
    pub fn undo(&self, i: usize, on: &On, rules: &mut BTreeMap<usize, FaultId>, tracer: &Tracer) {
        tracer.event("fault-end", &self.label);
        match (on, &self.action) {
            (On::Member { member, .. }, FaultAction::Pause) => member.resume(),
            (On::Member { member, .. }, FaultAction::StallPoll) => member.stall_poll(false),
            (On::Member { member, brokers }, FaultAction::Partition) => member.heal_from(brokers),
            (On::Member { .. }, _) => {}
            (On::Broker { host, .. }, FaultAction::Pause) => host.resume(),
            (On::Broker { host, peers }, FaultAction::Partition) => host.heal_partition(peers),
            (On::Broker { host, .. }, FaultAction::SlowNic { .. }) => host.set_nic(None),
            (On::Broker { host, peers }, FaultAction::Cut { direction, port, .. }) => {
                host.cut(peers, *direction, *port, false)
            }
            (On::Broker { host, .. }, FaultAction::SlowDisk { disk: None, .. }) => {
                host.disk.set_slow_factor(1)
            }
            (On::Broker { host, .. }, FaultAction::SlowDisk { disk: Some(d), .. }) => {
                host.disk.set_slow_factor_of(*d, 1)
            }
            (On::Broker { host, .. }, FaultAction::DiskError { .. }) => {
                if let Some(id) = rules.remove(&i) {
                    host.disk.clear_fault(id);
                }
            }
            (On::Broker { host, .. }, FaultAction::Request { .. }) => host.end_request_rule(i),
            (On::Broker { .. }, _) => {}
        }
    }
}

/// Walks a run's fault timeline and heals what is left at the end.
pub struct Driver<'a> {
    faults: &'a [Fault],
    hosts: &'a [Arc<Host>],
    members: &'a BTreeMap<u32, Arc<MemberHost>>,
    tracer: Tracer,
    clustered: bool,
    broker_names: Vec<String>,
    /// Client hosts and group members' hosts: who a partitioned broker no longer reaches.
    clients: Vec<String>,
    rules: BTreeMap<usize, FaultId>,
    /// Broker faults in force, and group-member faults in force (by fault index).
    active: BTreeSet<usize>,
    member_active: BTreeSet<usize>,
    /// Which broker each fault hit, and the broker a dynamic target last resolved to (a
    /// `restart` of it restarts that one).
    pub resolved: BTreeMap<usize, u32>,
    last_of: BTreeMap<Target, u32>,
    /// Cluster runs: (time, label, broker) of every broker fault but restarts.
    pub fault_log: Vec<(u64, String, u32)>,
    /// When the last fault ended (a restart, or a fault's `for` elapsing).
    pub last_heal_ns: u64,
}

impl<'a> Driver<'a> {
    pub fn new(
        faults: &'a [Fault],
        world: &'a World,
        members: &'a BTreeMap<u32, Arc<MemberHost>>,
        tracer: &Tracer,
    ) -> Self {
        let clients = world.client_names.iter().cloned().chain(members.values().map(|m| m.name()));
        Driver {
            faults,
            hosts: &world.hosts,
            members,
            tracer: tracer.clone(),
            clustered: world.clustered,
            broker_names: world.hosts.iter().map(|h| h.name()).collect(),
            clients: clients.collect(),
            rules: BTreeMap::new(),
            active: BTreeSet::new(),
            member_active: BTreeSet::new(),
            resolved: BTreeMap::new(),
            last_of: BTreeMap::new(),
            fault_log: Vec::new(),
            last_heal_ns: 0,
        }
    }

    /// (time, start or end, fault index) in time order, file order on ties; ends at or after
    /// `until_ns` are left to the heal.
    fn timeline(&self, until_ns: u64) -> Vec<(u64, bool, usize)> {
        let mut timeline = Vec::new();
        for (i, f) in self.faults.iter().enumerate() {
            timeline.push((f.at_ns, true, i));
            if let Some(d) = f.for_ns {
                if f.at_ns + d < until_ns {
                    timeline.push((f.at_ns + d, false, i));
                }
            }
        }
        timeline.sort_by_key(|&(t, start, i)| (t, !start, i));
        timeline
    }

    /// Applies and undoes the faults at their times, until the timeline before `until_ns` ran.
    pub async fn run(&mut self, until_ns: u64) {
        for (t, start, i) in self.timeline(until_ns) {
            self.tracer.sleep_until_ns(t).await;
            match (self.faults[i].target, start) {
                (Target::Consumer(n), _) => self.member_event(t, i, n, start),
                (_, true) => self.start(t, i),
                (_, false) => self.end(t, i),
            }
        }
    }

    /// A broker's partition peers: every client host, member host and other broker; a `Cut`
    /// narrows that to brokers or clients.
    fn peers_of(&self, b: u32, action: &FaultAction) -> Vec<String> {
        let others = self
            .broker_names
            .iter()
            .enumerate()
            .filter(|(j, _)| *j as u32 != b)
            .map(|(_, n)| n.clone());
        match action {
            FaultAction::Cut { peers: Peers::Brokers, .. } => others.collect(),
            FaultAction::Cut { peers: Peers::Clients, .. } => self.clients.clone(),
            _ => self.clients.iter().cloned().chain(others).collect(),
        }
    }

    fn on_broker(&self, b: u32, action: &FaultAction) -> Option<On<'a>> {
        let host = self.hosts.get(b as usize)?;
        Some(On::Broker { host, peers: self.peers_of(b, action) })
    }

    fn member_event(&mut self, t: u64, i: usize, n: u32, start: bool) {
        let Some(member) = self.members.get(&n) else { return };
        let f = &self.faults[i];
        let on = On::Member { member, brokers: &self.broker_names };
        if start {
            f.apply(i, &on, &mut self.rules, &self.tracer);
            if f.action == FaultAction::Restart {
                self.last_heal_ns = t;
            } else {
                self.member_active.insert(i);
            }
        } else {
            f.undo(i, &on, &mut self.rules, &self.tracer);
            self.member_active.remove(&i);
            self.last_heal_ns = t;
        }
    }

    /// The broker fault `i` hits now: fixed, or resolved from the cluster's state (a restart
    /// of a dynamic target restarts the broker its previous fault hit).
    fn resolve(&mut self, i: usize) -> Option<u32> {
        let f = &self.faults[i];
        if !f.target.is_dynamic() {
            return match f.target {
                Target::Broker(b) => Some(b),
                _ => None,
            };
        }
        let b = if f.action == FaultAction::Restart {
            self.last_of.get(&f.target).copied()
        } else {
            crate::cluster::resolve(f.target, self.hosts)
        };
        let Some(b) = b else {
            let why = format!("{}: {} resolves to no broker now", f.label, f.target.name());
            self.tracer.event("fault-skipped", &why);
            return None;
        };
        self.tracer.event("fault-target", &format!("{} -> broker-{b}", f.label));
        self.last_of.insert(f.target, b);
        Some(b)
    }

    fn start(&mut self, t: u64, i: usize) {
        let Some(b) = self.resolve(i) else { return };
        self.resolved.insert(i, b);
        let f = &self.faults[i];
        let Some(on) = self.on_broker(b, &f.action) else { return };
        if self.clustered && f.action != FaultAction::Restart {
            self.fault_log.push((t, f.label.clone(), b));
        }
        f.apply(i, &on, &mut self.rules, &self.tracer);
        if f.action == FaultAction::Restart {
            self.last_heal_ns = t;
        } else if !f.action.is_instant() {
            self.active.insert(i);
        }
    }

    fn end(&mut self, t: u64, i: usize) {
        let Some(&b) = self.resolved.get(&i) else { return };
        let f = &self.faults[i];
        if let Some(on) = self.on_broker(b, &f.action) {
            f.undo(i, &on, &mut self.rules, &self.tracer);
        }
        self.active.remove(&i);
        self.last_heal_ns = t;
    }

    /// Ends every fault still in force and brings every broker and member back; a heal with
    /// work to do moves `last_heal_ns` to `end_ns` (the end of the fault timeline).
    pub fn heal(&mut self, end_ns: u64, net: &net_model::SimNet) {
        self.heal_brokers(end_ns, net);
        self.heal_members(end_ns);
    }

    fn heal_brokers(&mut self, end_ns: u64, net: &net_model::SimNet) {
        // Kill / power loss stay in force until a restart; a restart ended them.
        let (faults, hosts, resolved) = (self.faults, self.hosts, &self.resolved);
        self.active.retain(|&i| {
            !(matches!(faults[i].action, FaultAction::Kill | FaultAction::PowerLoss)
                && resolved.get(&i).is_some_and(|&b| hosts[b as usize].is_up()))
        });
        if !self.active.is_empty() || self.hosts.iter().any(|h| !h.is_up()) {
            self.last_heal_ns = end_ns;
        }
        // Request-fault rules still in force end here ("run healed"), counted by their broker.
        for h in self.hosts {
            h.clear_request_rules();
        }
        for &i in self.active.iter().rev() {
            let f = &self.faults[i];
            let Some(&b) = self.resolved.get(&i) else { continue };
            if let Some(on) = self.on_broker(b, &f.action) {
                f.undo(i, &on, &mut self.rules, &self.tracer);
            }
        }
        for h in self.hosts {
            h.disk.clear_faults();
            h.disk.set_slow_factor(1);
        }
        if self.clustered {
            net.heal();
        }
        for h in self.hosts {
            if !h.is_up() {
                self.tracer.event("heal", &format!("restart {}", h.name()));
                h.restart();
            }
        }
    }

    fn heal_members(&mut self, end_ns: u64) {
        let (faults, members) = (self.faults, self.members);
        // A killed or departed member that runs again (restarted) has nothing left to undo.
        self.member_active.retain(|&i| {
            !(matches!(faults[i].action, FaultAction::Kill | FaultAction::Leave)
                && matches!(faults[i].target, Target::Consumer(n) if members.get(&n).is_some_and(|m| m.is_running())))
        });
        if !self.member_active.is_empty() || members.values().any(|m| !m.is_running()) {
            self.last_heal_ns = end_ns;
        }
        for &i in self.member_active.iter().rev() {
            let f = &self.faults[i];
            let Target::Consumer(n) = f.target else { continue };
            let Some(member) = members.get(&n) else { continue };
            let on = On::Member { member, brokers: &self.broker_names };
            f.undo(i, &on, &mut self.rules, &self.tracer);
        }
        for m in members.values() {
            if !m.is_running() {
                self.tracer.event("heal", &format!("restart {}", m.name()));
                m.restart();
            }
        }
    }
}
