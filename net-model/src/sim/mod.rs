//! The simulated network: hosts with NICs joined by links, carrying TCP-like byte streams with
//! bounded buffers, behind the [`Network`] interface, deterministic in virtual time.
//!
//! One [`SimNet`] fabric is shared by every host; [`SimNet::host`] gives a host its view, a
//! [`SimNetwork`] (an `Arc<dyn Network>`), so `bind`/`connect` know which host they run on.
//! Addresses are `host:port`; `localhost`, `127.0.0.1` and `0.0.0.0` mean the caller's own host.
//!
//! # What the model promises
//!
//! - **Determinism.** Same [`SimNetConfig::seed`] + same calls at the same virtual times ⇒ the same
//!   bytes, times and [`NetEvent`] log. The only random draws (jitter, loss) come from one
//!   `ChaCha8Rng` seeded from the seed with the network's salt; a link without jitter and loss
//!   draws nothing. Only ordered maps are iterated; `select!` is `biased`.
//! - **Timing, microsecond-exact** (the precise sleep of [`disk_model::clock`], no 1 ms floor).
//!   A stream's pump takes at most `segment_bytes_max` bytes at a time from the send buffer and
//!   hands them to the sender's NIC: the segment starts when the NIC's egress is free
//!   (`egress_free = max(now, egress_free) + wire_bytes × 8 / egress_bps`), the pump waits until it
//!   has left, and streams of one host take turns segment by segment (round robin emerges from
//!   FIFO on the egress clock). Wire bytes include `packet_overhead_bytes` per `mss_bytes` packet.
//!   The segment reaches the peer after the link's `latency_ns` plus a uniform jitter draw in
//!   `0..=jitter_ns_max`, plus for each loss (probability `loss_ppm` per segment, at most
//!   `retransmits_max` times) `retransmit_delay_ns` doubling each time. The receiver's NIC takes it
//!   cut-through but no faster than `ingress_bps` and after the segments queued before it (incast
//!   queues there). A stream's bytes are readable in order: a segment's ready time is clamped to
//!   be no earlier than the previous segment's, so jitter and loss delay but never reorder.
//!   Loopback (a host to itself) skips the NIC: `loopback_latency_ns` and `loopback_bps`.
//!   A reader that was parked when a segment became ready (its last read found nothing) reads
//!   it its host's wake-up latency later ([`SimNet::set_wakeup`], 0 by default).
//! - **Buffers and backpressure.** A write returns once its bytes are in the send buffer
//!   (`send_buffer_bytes` of bytes not yet on the wire); it blocks while that is full. Bytes on the
//!   wire plus bytes received and unread are bounded by the receive window
//!   (`receive_buffer_bytes`); the window reopens when the reader reads, as seen by the sender one
//!   link latency later (the ACK). So a slow reader bounds its writer to about
//!   `send_buffer_bytes + receive_buffer_bytes` ahead of it.
//! - **Connects** take one round trip (SYN, SYN-ACK); the connection is in the listener's accept
//!   queue when the SYN arrives (at most `accept_backlog_max`; more SYNs are dropped and
//!   retried). No listener on the port, or a crashed host: `ConnectionRefused` after one round
//!   trip. A SYN that cannot get through (a partition in either direction) is retried after 1 s,
//!   2 s, 4 s ... (`syn_rto_initial_ns`, doubling) and the connect fails with `TimedOut` at
//!   `connect_timeout_ns` (127 s by default, Linux's `tcp_syn_retries = 6`; Kafka clients
//!   usually give up sooner on their own). Unknown host names fail at once with
//!   `HostUnreachable`.
//! - **Partitions** ([`SimNet::partition`], [`SimNet::partition_one_way`], [`SimNet::heal`]) stop
//!   segments that would depart in a blocked direction; nothing is dropped: bytes wait in the
//!   send buffer and flow again on heal. A one-way partition `a → b` stops `a`'s data to `b` and
//!   `a`'s ACKs to `b`: `b`'s stream to `a` still delivers up to one window, then stalls, as TCP
//!   does. A stream that has data it cannot send
//!   for `user_timeout_ns` (`TCP_USER_TIMEOUT`, default 924 s ≈ Linux's `tcp_retries2 = 15`) is
//!   reset: both ends' reads and writes fail with `TimedOut`. An idle connection never times out.
//! - **Crashes.** [`SimNet::crash`]: the host's listeners close (`accept` fails with
//!   `ConnectionAborted`), every connection of the host is reset (reads and writes on both ends
//!   fail with `ConnectionReset`, unread data is discarded) and connects to it are refused until
//!   [`SimNet::restart`]. The host's own connects and binds fail while it is down.
//! - **Close.** Dropping (or `shutdown`) a writer sends a FIN after its buffered bytes: the
//!   peer reads them, then EOF. Closing a socket (both halves dropped) with unread received bytes,
//!   or receiving data after closing, resets the connection (the peer sees `ConnectionReset`),
//!   as Linux does. Writes after `shutdown` fail with `BrokenPipe`.
//! - **Zero copy.** [`Chunk::File`] regions are read with `FileRegion::read_pieces` (through the
//!   page cache model when the storage is a `SimDisk`, whose full pages are lent, not copied;
//!   a segment keeps the pieces it spans); the transport charges no CPU for any chunk —
//!   CPU costs belong to the cost hook ([`crate::cpu`]), which the caller charges for the copy path.
//!
//! # What it does not model
//!
//! Congestion control (slow start, cwnd, fair queueing: the egress is FIFO among segments;
//! flows share a NIC by taking turns per segment), packet-level framing beyond a per-packet
//! header overhead, Nagle and delayed ACKs (every connection behaves as `TCP_NODELAY`),
//! retransmissions using bandwidth (a loss adds delay only), switches and shared links between
//! NICs (a link is latency only; bandwidth lives in the NICs), keepalive probes, half-open
//! connections after a power cut (a crash always resets), TIME_WAIT and port exhaustion for
//! outgoing connections, IP addresses and DNS (hosts are names), the RST's travel time (a reset
//! is seen by both ends at once), and a connection in flight across a partition: segments
//! already on the wire when a partition starts are delivered.
//!
//! # Fault budget
//!
//! | fault | how | limits |
//! |---|---|---|
//! | partition, symmetric | [`SimNet::partition`], [`SimNet::partition_groups`] | any pair of hosts, any time |
//! | partition, one way | [`SimNet::partition_one_way`] | |
//! | heal | [`SimNet::heal`] (all), [`SimNet::heal_between`], [`SimNet::heal_one_way`] | |
//! | host crash / restart | [`SimNet::crash`], [`SimNet::restart`] | resets, not half-open |
//! | NIC degradation | [`SimNet::set_nic`] | `NIC_BPS_MIN..=NIC_BPS_MAX`; applies to segments sent afterwards |
//! | latency, jitter, loss | [`SimNet::set_link`] | `LATENCY_NS_MAX`, `JITTER_NS_MAX`, `LOSS_PPM_MAX`, `RETRANSMITS_MAX` |
//!
//! At most `HOSTS_MAX` hosts; at most `EVENTS_MAX` undrained events (the rest are counted in
//! [`SimNet::events_dropped`]); buffers `BUFFER_BYTES_MIN..=BUFFER_BYTES_MAX`; segments at most
//! `SEGMENT_BYTES_MAX` and no larger than the receive window.
//!
//! # Tasks
//!
//! Each stream direction has a pump task (spawned by `connect` on the client's side, by `accept`
//! on the server's), so under madsim it belongs to the node that owns the sending end. It exits
//! when the stream is reset, its FIN is sent, or both its handles are dropped. A harness that
//! kills a host's tasks (a process kill) must also call [`SimNet::crash`]: the network does not
//! notice dead tasks, only dropped handles (which close gracefully, with a FIN).
//!
//! Times in the event log carry madsim's own scheduling noise (it advances the clock 50-100 ns
//! per task poll and 50 ns per timer firing): deterministic for a given madsim seed, and small
//! against any modeled latency.

pub mod config;
pub mod events;
mod fabric;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

pub use self::config::{
    ConfigError, LinkConfig, NicConfig, SimNetConfig, TcpConfig, BUFFER_BYTES_MAX,
    BUFFER_BYTES_MIN, HOSTS_MAX, JITTER_NS_MAX, LATENCY_NS_MAX, LOSS_PPM_MAX, NIC_BPS_MAX,
    NIC_BPS_MIN, RETRANSMITS_MAX, SEGMENT_BYTES_MAX,
};
pub use self::events::{ConnectOutcome, NetEvent, NicStats, ResetCause, EVENTS_MAX};
use self::fabric::{
    is_local_name, reset_msg, ConnectStep, Fabric, PumpAction, ReadOutcome, StreamWake,
};
use crate::{Chunk, ChunkWriter, Connection, CostHook, Listener, Network, Work};

struct Shared {
    fabric: Mutex<Fabric>,
    epoch: disk_model::clock::Epoch,
    /// Hosts whose loopback copies are CPU work ([`SimNet::set_loopback_cpu`]).
    loopback_cpus: Mutex<BTreeMap<String, Arc<dyn CostHook>>>,
    /// Hosts whose woken readers cost CPU ([`SimNet::set_wake_cpu`]).
    wake_cpus: Mutex<BTreeMap<String, Arc<dyn CostHook>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Fabric> {
        // A panic while holding the lock is an assertion in the model: keep its state inspectable.
        self.fabric.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ns(&self) -> u64 {
        self.epoch.now_ns()
    }

    fn instant(&self, ns: u64) -> Instant {
        self.epoch.at() + Duration::from_nanos(ns)
    }

    async fn sleep_until_ns(&self, ns: u64) {
        self.epoch.sleep_until_ns(ns).await
    }

    fn loopback_cpu(&self, host: &str) -> Option<Arc<dyn CostHook>> {
        self.loopback_cpus.lock().unwrap_or_else(|p| p.into_inner()).get(host).cloned()
    }

    fn wake_cpu(&self, host: &str) -> Option<Arc<dyn CostHook>> {
        self.wake_cpus.lock().unwrap_or_else(|p| p.into_inner()).get(host).cloned()
    }
}

/// The fabric: hosts, links, faults. Clones share it.
#[derive(Clone)]
pub struct SimNet {
    shared: Arc<Shared>,
}

impl fmt::Debug for SimNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimNet").finish_non_exhaustive()
    }
}

impl SimNet {
    /// A fabric whose time 0 is now. Panics if the configuration is invalid (a scenario bug,
    /// reported before anything runs); see [`SimNet::try_new`].
    pub fn new(config: SimNetConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|e| panic!("invalid network configuration: {e}"))
    }

    pub fn try_new(config: SimNetConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(SimNet {
            shared: Arc::new(Shared {
                fabric: Mutex::new(Fabric::new(config)),
                epoch: disk_model::clock::Epoch::now(),
                loopback_cpus: Mutex::new(BTreeMap::new()),
                wake_cpus: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// Nanoseconds since the fabric was made (the time base of events).
    pub fn now_ns(&self) -> u64 {
        self.shared.now_ns()
    }

    pub fn config(&self) -> SimNetConfig {
        self.shared.lock().cfg.clone()
    }

    /// Host `name`'s view of the network, adding the host with the default NIC if new.
    /// Panics on a bad name (empty, with a `:`, or a loopback name) or past `HOSTS_MAX` hosts.
    pub fn host(&self, name: &str) -> Arc<dyn Network> {
        Arc::new(self.host_view(name, None))
    }

    /// Adds (or reconfigures) host `name` with `nic` and returns its view.
    pub fn add_host(&self, name: &str, nic: NicConfig) -> Arc<dyn Network> {
        if let Err(e) = nic.validate() {
            panic!("host {name}: {e}");
        }
        Arc::new(self.host_view(name, Some(nic)))
    }

    /// Makes host `name` one process of a machine shared with other hosts (brokers and clients
    /// on one machine, talking over loopback): every byte it writes costs [`Work::Loopback`]
    /// on `cpu` (the sender's copy into the socket; not for [`Chunk::File`] regions, which
    /// `sendfile(2)` hands over without one), and every byte it receives costs it once more
    /// (the receiver's copy out of the socket, charged by the sending stream's pump before its
    /// next segment). Such hosts' NICs should be made fast enough not to matter: loopback has
    /// none. Set it before the host's connections are made.
    pub fn set_loopback_cpu(&self, name: &str, cpu: Arc<dyn CostHook>) {
        self.shared
            .loopback_cpus
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), cpu);
    }

    /// Host `name`'s readers see data that arrives while they are parked (their last read
    /// found nothing) `wakeup_ns` late: the OS waking the reading thread
    /// ([`crate::CpuProfile::wakeup_ns`]). A reader that reads while data is already there
    /// (a busy thread coming back for more) waits for nothing. Applies to connections made
    /// afterwards, on either end; set it before the host's connections are made.
    pub fn set_wakeup(&self, name: &str, wakeup_ns: u64) {
        self.shared.lock().set_wakeup(name, wakeup_ns);
    }

    /// Host `name`'s parked readers cost CPU to wake: a read that finds data after its last
    /// read found none charges [`Work::Woken`] on `cpu` (the OS's futex, scheduler and epoll
    /// work on the woken side), beside the latency of [`SimNet::set_wakeup`]. The charge
    /// occupies a core without delaying the reader further (its wake-up latency covers it), and
    /// a [`crate::SimCpu`] makes it only while the reader's process is idle (a busy process has
    /// a thread awake). A reader that finds data already there charges nothing. So the cost is
    /// per request at low load and vanishes at saturation. Unset: not charged (and nothing is
    /// spawned, so runs without it keep their schedules). Set it before the host's connections
    /// are made.
    pub fn set_wake_cpu(&self, name: &str, cpu: Arc<dyn CostHook>) {
        self.shared.wake_cpus.lock().unwrap_or_else(|p| p.into_inner()).insert(name.into(), cpu);
    }

    /// The concrete view (for callers that want the type).
    pub fn host_view(&self, name: &str, nic: Option<NicConfig>) -> SimNetwork {
        if let Err(e) = self.shared.lock().add_host(name, nic) {
            panic!("{e}");
        }
        SimNetwork { shared: self.shared.clone(), host: name.to_string() }
    }

    /// Changes a host's NIC (degradation and repair). What it had queued at the old rate is
    /// re-timed to the new one (see `Fabric::set_nic`).
    pub fn set_nic(&self, host: &str, nic: NicConfig) {
        if let Err(e) = nic.validate() {
            panic!("host {host}: {e}");
        }
        let now = self.now_ns();
        self.shared.lock().set_nic(now, host, nic);
    }

    /// Sets the link between `a` and `b` (both directions), for segments sent from now on.
    pub fn set_link(&self, a: &str, b: &str, link: LinkConfig) {
        if let Err(e) = link.validate() {
            panic!("link {a}-{b}: {e}");
        }
        let now = self.now_ns();
        self.shared.lock().set_link(now, a, b, link);
    }

    pub fn link(&self, a: &str, b: &str) -> LinkConfig {
        self.shared.lock().link(a, b)
    }

    /// Cuts both directions between `a` and `b`.
    pub fn partition(&self, a: &str, b: &str) {
        let now = self.now_ns();
        let mut f = self.shared.lock();
        f.partition_one_way(now, a, b);
        f.partition_one_way(now, b, a);
    }

    /// Cuts every pair of hosts in different groups, both ways.
    pub fn partition_groups(&self, groups: &[&[&str]]) {
        for (i, g) in groups.iter().enumerate() {
            for h in groups.iter().skip(i + 1) {
                for a in g.iter() {
                    for b in h.iter() {
                        self.partition(a, b);
                    }
                }
            }
        }
    }

    /// Cuts `from` → `to` only.
    pub fn partition_one_way(&self, from: &str, to: &str) {
        let now = self.now_ns();
        self.shared.lock().partition_one_way(now, from, to);
    }

    /// Cuts connections from `client` to `server:port` (a firewall rule on one listener): both
    /// directions of such connections stall, new connects time out; other traffic between the
    /// two hosts (another port, or connections the other way) flows.
    pub fn block_port(&self, client: &str, server: &str, port: u16) {
        let now = self.now_ns();
        self.shared.lock().block_port(now, client, server, port);
    }

    pub fn unblock_port(&self, client: &str, server: &str, port: u16) {
        let now = self.now_ns();
        self.shared.lock().unblock_port(now, client, server, port);
    }

    /// Heals every partition.
    pub fn heal(&self) {
        let now = self.now_ns();
        self.shared.lock().heal_all(now);
    }

    /// Heals both directions between `a` and `b`.
    pub fn heal_between(&self, a: &str, b: &str) {
        let now = self.now_ns();
        let mut f = self.shared.lock();
        f.heal_one_way(now, a, b);
        f.heal_one_way(now, b, a);
    }

    pub fn heal_one_way(&self, from: &str, to: &str) {
        let now = self.now_ns();
        self.shared.lock().heal_one_way(now, from, to);
    }

    /// Whether segments can go `from` → `to` now.
    pub fn path_open(&self, from: &str, to: &str) -> bool {
        self.shared.lock().path_open(from, to)
    }

    /// The host's process dies: its listeners close, its connections reset, connects to it are
    /// refused until [`SimNet::restart`].
    pub fn crash(&self, host: &str) {
        let now = self.now_ns();
        self.shared.lock().crash(now, host);
    }

    pub fn restart(&self, host: &str) {
        let now = self.now_ns();
        self.shared.lock().restart(now, host);
    }

    pub fn host_up(&self, host: &str) -> bool {
        self.shared.lock().host_up(host)
    }

    pub fn stats(&self, host: &str) -> Option<NicStats> {
        self.shared.lock().stats(host)
    }

    pub fn all_stats(&self) -> std::collections::BTreeMap<String, NicStats> {
        self.shared.lock().all_stats()
    }

    /// Takes the events recorded since the last drain.
    pub fn drain_events(&self) -> Vec<NetEvent> {
        self.shared.lock().drain_events()
    }

    pub fn events_dropped(&self) -> u64 {
        self.shared.lock().events_dropped
    }
}

/// One host's view of a [`SimNet`].
#[derive(Clone)]
pub struct SimNetwork {
    shared: Arc<Shared>,
    host: String,
}

impl fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimNetwork({})", self.host)
    }
}

impl SimNetwork {
    pub fn host_name(&self) -> &str {
        &self.host
    }

    fn resolve<'a>(&'a self, host: &'a str) -> &'a str {
        if is_local_name(host) {
            &self.host
        } else {
            host
        }
    }

    /// The handles of one end: writes go to stream `out`, reads come from stream `inp`.
    fn conn_handles(
        &self,
        out: u64,
        inp: u64,
        out_wake: Arc<StreamWake>,
        peer: String,
        local: String,
    ) -> Connection {
        spawn_pump(self.shared.clone(), out, out_wake.clone());
        Connection {
            reader: Box::new(SimReader {
                shared: self.shared.clone(),
                id: inp,
                sleep: None,
                wake_cpu: self.shared.wake_cpu(&self.host),
            }),
            writer: Box::new(SimWriter {
                shared: self.shared.clone(),
                id: out,
                wake: out_wake,
                cpu: self.shared.loopback_cpu(&self.host),
            }),
            peer,
            local,
        }
    }
}

fn parse_addr(addr: &str) -> io::Result<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("address {addr:?} is not host:port"))
    })?;
    let port: u16 = port.parse().map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("bad port in address {addr:?}"))
    })?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

fn spawn_pump(shared: Arc<Shared>, id: u64, wake: Arc<StreamWake>) {
    tokio::spawn(async move {
        let receiver = shared.lock().stream_receiver(id);
        let cpu = receiver.and_then(|h| shared.loopback_cpu(&h));
        loop {
            let now = shared.now_ns();
            let action = shared.lock().pump_step(now, id);
            match action {
                PumpAction::Exit => return,
                PumpAction::SleepUntil(t, bytes) => {
                    if let Some(cpu) = &cpu {
                        cpu.spend(Work::Loopback, bytes).await;
                    }
                    tokio::select! {
                        biased;
                        _ = wake.retime.notified() => {}
                        _ = shared.sleep_until_ns(t) => {}
                    }
                }
                PumpAction::Wait(None) => wake.pump.notified().await,
                PumpAction::Wait(Some(t)) => {
                    tokio::select! {
                        biased;
                        _ = wake.pump.notified() => {}
                        _ = shared.sleep_until_ns(t) => {}
                    }
                }
            }
        }
    });
}

#[async_trait]
impl Network for SimNetwork {
    async fn bind(&self, addr: &str) -> io::Result<Box<dyn Listener>> {
        let (host, port) = parse_addr(addr)?;
        if !is_local_name(host) && host != self.host {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{host} is not an address of host {}", self.host),
            ));
        }
        let now = self.shared.now_ns();
        let (port, id, notify) = self.shared.lock().bind(now, &self.host, port)?;
        Ok(Box::new(SimListener { net: self.clone(), port, id, notify }))
    }

    async fn connect(&self, addr: &str) -> io::Result<Connection> {
        let (host, port) = parse_addr(addr)?;
        let target = self.resolve(host).to_string();
        let t0 = self.shared.now_ns();
        let (timeout_ns, mut rto_ns) = {
            let f = self.shared.lock();
            (f.cfg.tcp.connect_timeout_ns, f.cfg.tcp.syn_rto_initial_ns)
        };
        let deadline = t0.saturating_add(timeout_ns);
        let record = |conn: u64, outcome: ConnectOutcome| {
            let done = self.shared.now_ns();
            self.shared.lock().record_connect(NetEvent::Connect {
                conn,
                from: self.host.clone(),
                to: target.clone(),
                port,
                at_ns: t0,
                done_ns: done,
                outcome,
            });
        };
        loop {
            let now = self.shared.now_ns();
            let step = self.shared.lock().connect_step(now, &self.host, &target, port);
            let step = match step {
                ConnectStep::Syn { arrive_ns, back_ns } => {
                    self.shared.sleep_until_ns(arrive_ns).await;
                    let now = self.shared.now_ns();
                    let (local_port, arrived) = {
                        let mut f = self.shared.lock();
                        let local_port = f.ephemeral_port(&self.host);
                        (local_port, f.syn_arrives(now, &self.host, local_port, &target, port))
                    };
                    match arrived {
                        Ok((conn, c2s_wake, _)) => {
                            let c = self.conn_handles(
                                2 * conn,
                                2 * conn + 1,
                                c2s_wake,
                                format!("{target}:{port}"),
                                format!("{}:{local_port}", self.host),
                            );
                            self.shared.sleep_until_ns(now + back_ns).await;
                            // Bound first: an `if let` scrutinee's guard would live through the
                            // block, and `record` locks the fabric again (a self-deadlock).
                            let reset = self.shared.lock().stream_reset(2 * conn);
                            if let Some(kind) = reset {
                                record(conn, ConnectOutcome::Refused);
                                return Err(io::Error::new(kind, reset_msg(kind)));
                            }
                            record(conn, ConnectOutcome::Established);
                            return Ok(c);
                        }
                        Err(step) => step,
                    }
                }
                other => other,
            };
            match step {
                ConnectStep::UnknownHost => {
                    record(0, ConnectOutcome::UnknownHost);
                    return Err(io::Error::new(
                        io::ErrorKind::HostUnreachable,
                        format!("unknown host {target}"),
                    ));
                }
                ConnectStep::LocalDown => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        format!("host {} is down", self.host),
                    ));
                }
                ConnectStep::Refused(at) => {
                    self.shared.sleep_until_ns(at).await;
                    record(0, ConnectOutcome::Refused);
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("connection refused by {target}:{port}"),
                    ));
                }
                ConnectStep::Blocked => {
                    let now = self.shared.now_ns();
                    let next = now.saturating_add(rto_ns);
                    if next >= deadline {
                        self.shared.sleep_until_ns(deadline).await;
                        record(0, ConnectOutcome::TimedOut);
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("connect to {target}:{port} timed out"),
                        ));
                    }
                    self.shared.sleep_until_ns(next).await;
                    rto_ns = rto_ns.saturating_mul(2);
                }
                ConnectStep::Syn { .. } => unreachable!("handled above"),
            }
        }
    }
}

struct SimListener {
    net: SimNetwork,
    port: u16,
    id: u64,
    notify: Arc<Notify>,
}

#[async_trait]
impl Listener for SimListener {
    async fn accept(&self) -> io::Result<Connection> {
        loop {
            let now = self.net.shared.now_ns();
            let pending = self.net.shared.lock().accept(now, &self.net.host, self.port, self.id)?;
            if let Some(p) = pending {
                let conn = p.conn;
                let wake = {
                    let f = self.net.shared.lock();
                    f.stream_wake(2 * conn + 1)
                };
                let Some(wake) = wake else { continue };
                return Ok(self.net.conn_handles(2 * conn + 1, 2 * conn, wake, p.peer, p.local));
            }
            self.notify.notified().await;
        }
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(format!("{}:{}", self.net.host, self.port))
    }
}

impl Drop for SimListener {
    fn drop(&mut self) {
        let now = self.net.shared.now_ns();
        self.net.shared.lock().close_listener(now, &self.net.host, self.port, self.id);
    }
}

/// The read half of a simulated connection.
struct SimReader {
    shared: Arc<Shared>,
    id: u64,
    /// The precise timer armed for the next ready time, with its deadline.
    sleep: Option<(u64, Pin<Box<tokio::time::Sleep>>)>,
    /// The host's CPU when waking a parked reader costs some ([`SimNet::set_wake_cpu`]).
    wake_cpu: Option<Arc<dyn CostHook>>,
}

impl AsyncRead for SimReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let now = this.shared.now_ns();
            let outcome = this.shared.lock().read(now, this.id, buf, cx.waker());
            match outcome {
                ReadOutcome::Data | ReadOutcome::Eof => {
                    this.sleep = None;
                    return Poll::Ready(Ok(()));
                }
                ReadOutcome::Woken => {
                    this.sleep = None;
                    if let Some(cpu) = this.wake_cpu.clone() {
                        // The waking is the OS's work on this host's cores, not the reader's.
                        tokio::spawn(async move { cpu.spend(Work::Woken, 0).await });
                    }
                    return Poll::Ready(Ok(()));
                }
                ReadOutcome::Err(kind) => {
                    this.sleep = None;
                    return Poll::Ready(Err(io::Error::new(kind, reset_msg(kind))));
                }
                ReadOutcome::Pending(None) => {
                    this.sleep = None;
                    return Poll::Pending;
                }
                ReadOutcome::Pending(Some(deadline)) => {
                    let armed = matches!(&this.sleep, Some((d, _)) if *d == deadline);
                    if !armed {
                        let at = this.shared.instant(deadline);
                        let mut sleep = Box::pin(tokio::time::sleep_until(at));
                        // `reset` to the exact deadline bypasses madsim's 1 ms floor.
                        sleep.as_mut().reset(at);
                        this.sleep = Some((deadline, sleep));
                    }
                    let (_, sleep) = this.sleep.as_mut().expect("armed");
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.sleep = None; // the deadline passed: read again
                }
            }
        }
    }
}

impl Drop for SimReader {
    fn drop(&mut self) {
        let now = self.shared.now_ns();
        self.shared.lock().drop_reader(now, self.id);
    }
}

/// The write half of a simulated connection.
struct SimWriter {
    shared: Arc<Shared>,
    id: u64,
    wake: Arc<StreamWake>,
    /// The host's CPU when its loopback copies cost ([`SimNet::set_loopback_cpu`]).
    cpu: Option<Arc<dyn CostHook>>,
}

impl SimWriter {
    async fn push(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            let taken = self.shared.lock().write(self.id, &mut data)?;
            if taken == 0 {
                self.wake.writer.notified().await;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ChunkWriter for SimWriter {
    async fn write_chunks(&mut self, chunks: &[Chunk]) -> io::Result<()> {
        if let Some(cpu) = &self.cpu {
            // The sender's copy into the socket; sendfile's regions are handed over uncopied.
            let copied: u64 = chunks
                .iter()
                .map(|c| if let Chunk::Bytes(b) = c { b.len() as u64 } else { 0 })
                .sum();
            if copied > 0 {
                cpu.spend(Work::Loopback, copied).await;
            }
        }
        for chunk in chunks {
            match chunk {
                Chunk::Bytes(b) => self.push(b.clone()).await?,
                Chunk::File(region) if region.len == 0 => continue,
                // The region's pages, lent rather than copied (the reader's copy is the only one).
                Chunk::File(region) => {
                    for piece in region.read_pieces().await? {
                        self.push(piece).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.shared.lock().shutdown_writer(self.id)
    }
}

impl Drop for SimWriter {
    fn drop(&mut self) {
        let now = self.shared.now_ns();
        self.shared.lock().drop_writer(now, self.id);
    }
}
