//! The synchronous core of the simulated network: every decision takes the current time in
//! nanoseconds explicitly and returns the times the async layer must sleep until. Wakers and
//! `Notify`s are stored here so state changes wake exactly the tasks concerned.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::task::Waker;

use bytes::{Buf, Bytes};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Notify;

use super::config::{serialization_ns, LinkConfig, NicConfig, SimNetConfig};
use super::events::{ConnectOutcome, NetEvent, NicStats, ResetCause, EVENTS_MAX};

/// Salt of the network's random stream (jitter and loss draws).
const RNG_SALT: u64 = 0x6e65_742d_6d6f_6465; // "net-mode"
/// Ephemeral ports (Linux `ip_local_port_range`).
const EPHEMERAL_PORT_FIRST: u16 = 32768;
const EPHEMERAL_PORT_LAST: u16 = 60999;

/// The wake-ups of one stream direction.
#[derive(Debug, Default)]
pub(crate) struct StreamWake {
    /// The stream's pump (the sender-side TCP machinery).
    pub pump: Notify,
    /// The writer waiting for send-buffer space.
    pub writer: Notify,
    /// A NIC change re-timed the segment the pump is pacing (see `Fabric::set_nic`). Only this
    /// interrupts the pump's pacing sleep, so runs without NIC changes schedule as before.
    pub retime: Notify,
}

struct Segment {
    data: Payload,
    ready_ns: u64,
}

/// A segment's bytes: one buffer, or the pieces of several writes (a sendfile region arrives as
/// its file's pages) joined without copying. The reader's copy out of it is the only one.
enum Payload {
    One(Bytes),
    Many(VecDeque<Bytes>),
}

impl Payload {
    fn len(&self) -> usize {
        match self {
            Payload::One(b) => b.len(),
            Payload::Many(pieces) => pieces.iter().map(Bytes::len).sum(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Payload::One(b) => b.is_empty(),
            Payload::Many(pieces) => pieces.iter().all(Bytes::is_empty),
        }
    }

    /// Moves up to `want` bytes from the front into `buf`; returns how many.
    fn read_into(&mut self, buf: &mut tokio::io::ReadBuf<'_>, want: usize) -> usize {
        let mut copy = |b: &mut Bytes, want: usize| {
            let take = want.min(b.len());
            buf.put_slice(&b[..take]);
            // Moves the view only: a split would make a second view and drop it (two atomic
            // reference-count changes a read, and an owner's drop when the page was shared).
            b.advance(take);
            take
        };
        match self {
            Payload::One(b) => copy(b, want),
            Payload::Many(pieces) => {
                let mut done = 0;
                while done < want {
                    let Some(front) = pieces.front_mut() else { break };
                    done += copy(front, want - done);
                    if front.is_empty() {
                        pieces.pop_front();
                    }
                }
                done
            }
        }
    }
}

pub(crate) struct Stream {
    conn: u64,
    reverse: u64,
    /// The hosts it goes from and to, shared (every segment that leaves names them).
    from: Arc<str>,
    to: Arc<str>,
    /// The connection's (client host, server host, server port), for port-level blocks.
    service: (String, String, u16),
    pub wake: Arc<StreamWake>,
    reader_waker: Option<Waker>,
    /// Written, not yet on the wire (bounded by `send_buffer_bytes`).
    unsent: VecDeque<Bytes>,
    unsent_bytes: u64,
    /// The writer shut down or was dropped: FIN after `unsent` drains.
    fin_pending: bool,
    fin_ready_ns: Option<u64>,
    /// On the wire or received and unread, in stream order (ready times non-decreasing).
    in_flight: VecDeque<Segment>,
    /// Bytes of the receive window in use as the sender knows it.
    window_used: u64,
    /// Window openings (time the ACK reaches the sender, bytes), applied while the reverse path is open.
    window_returns: VecDeque<(u64, u64)>,
    last_ready_ns: u64,
    reset: Option<ErrorKind>,
    reader_alive: bool,
    writer_alive: bool,
    /// The reader was dropped with received bytes unread.
    closed_unread: bool,
    /// Since when data has been waiting for a blocked path.
    stalled_since_ns: Option<u64>,
    /// The reader's last read found nothing to read: it is parked (its thread asleep), so
    /// the next data reaches it `wakeup_ns` after it arrives.
    reader_parked: bool,
    /// The receiving host's wake-up latency when the stream was made ([`Fabric::set_wakeup`]).
    wakeup_ns: u64,
}

impl Stream {
    fn wake_all(&mut self) {
        if let Some(w) = self.reader_waker.take() {
            w.wake();
        }
        self.wake.writer.notify_one();
        self.wake.pump.notify_one();
    }
}

struct Host {
    nic: NicConfig,
    up: bool,
    egress_free_ns: u64,
    ingress_free_ns: u64,
    next_port: u16,
    stats: NicStats,
    /// Wake-up latency of this host's parked readers ([`Fabric::set_wakeup`]).
    wakeup_ns: u64,
}

pub(crate) struct PendingConn {
    pub conn: u64,
    pub peer: String,
    pub local: String,
}

pub(crate) struct ListenerState {
    id: u64,
    queue: VecDeque<PendingConn>,
    pub notify: Arc<Notify>,
}

/// What a stream's pump does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PumpAction {
    Exit,
    /// Sleep until the segment just sent (of the given bytes) has left the NIC.
    SleepUntil(u64, u64),
    /// Wait for a notification, or until the time given.
    Wait(Option<u64>),
}

pub(crate) enum ReadOutcome {
    Data,
    /// Data, for a reader that had parked (its last read found nothing): the OS woke it.
    Woken,
    Eof,
    Err(ErrorKind),
    Pending(Option<u64>),
}

/// The first step of a connect.
pub(crate) enum ConnectStep {
    UnknownHost,
    LocalDown,
    /// An RST comes back at this time.
    Refused(u64),
    /// The SYN (or its answer) cannot get through now.
    Blocked,
    /// The SYN reaches the target at `arrive_ns`; its answer takes `back_ns` more.
    Syn {
        arrive_ns: u64,
        back_ns: u64,
    },
}

pub(crate) struct Fabric {
    pub cfg: SimNetConfig,
    hosts: BTreeMap<String, Host>,
    /// Explicit links, keyed by the (smaller, larger) host name.
    links: HostPairs<LinkConfig>,
    /// Directions that drop everything: (from, to).
    blocked: HostPairs<()>,
    /// Connections from a client host to a server host's port that carry nothing, either way
    /// (a firewall rule on one listener): (client, server, port).
    blocked_ports: BTreeSet<(String, String, u16)>,
    listeners: BTreeMap<(String, u16), ListenerState>,
    streams: BTreeMap<u64, Stream>,
    next_conn: u64,
    next_listener: u64,
    rng: ChaCha8Rng,
    events: Vec<NetEvent>,
    pub events_dropped: u64,
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}

impl Fabric {
    pub fn new(cfg: SimNetConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ RNG_SALT);
        Fabric {
            cfg,
            hosts: BTreeMap::new(),
            links: HostPairs::default(),
            blocked: HostPairs::default(),
            blocked_ports: BTreeSet::new(),
            listeners: BTreeMap::new(),
            streams: BTreeMap::new(),
            next_conn: 1,
            next_listener: 1,
            rng,
            events: Vec::new(),
            events_dropped: 0,
        }
    }

    fn event(&mut self, e: NetEvent) {
        if self.events.len() < EVENTS_MAX {
            self.events.push(e);
        } else {
            self.events_dropped += 1;
        }
    }

    pub fn drain_events(&mut self) -> Vec<NetEvent> {
        std::mem::take(&mut self.events)
    }

    // ---- hosts, links, faults ----

    /// Host `name`'s readers see data that arrives while they are parked `wakeup_ns` late
    /// (the OS waking the reading thread); for streams made from now on. Unknown hosts: no-op.
    pub fn set_wakeup(&mut self, name: &str, wakeup_ns: u64) {
        if let Some(h) = self.hosts.get_mut(name) {
            h.wakeup_ns = wakeup_ns;
        }
    }

    pub fn add_host(&mut self, name: &str, nic: Option<NicConfig>) -> io::Result<()> {
        if let Some(h) = self.hosts.get_mut(name) {
            if let Some(nic) = nic {
                h.nic = nic;
            }
            return Ok(());
        }
        if self.hosts.len() >= super::config::HOSTS_MAX {
            return Err(err(
                ErrorKind::Other,
                format!("more than {} hosts", super::config::HOSTS_MAX),
            ));
        }
        if name.is_empty() || name.contains(':') || is_local_name(name) {
            return Err(err(ErrorKind::InvalidInput, format!("bad host name {name:?}")));
        }
        self.hosts.insert(
            name.to_string(),
            Host {
                nic: nic.unwrap_or(self.cfg.nic),
                up: true,
                egress_free_ns: 0,
                ingress_free_ns: 0,
                next_port: EPHEMERAL_PORT_FIRST,
                stats: NicStats::default(),
                wakeup_ns: 0,
            },
        );
        Ok(())
    }

    pub fn host_up(&self, name: &str) -> bool {
        self.hosts.get(name).is_some_and(|h| h.up)
    }

    /// Changes a host's NIC. The backlog it took on at the old rates is re-timed: a NIC slowed
    /// to a crawl may have queued seconds of segments, and once repaired those bits leave (and
    /// arrive) at the new rate, not the old one. Each segment's time beyond the link latency is
    /// scaled by old rate / new rate, for the streams it sends (egress) and receives (ingress);
    /// the map is monotone, so a stream's ready times stay in order. Readers and pumps are woken
    /// to re-arm their timers.
    pub fn set_nic(&mut self, now: u64, host: &str, nic: NicConfig) {
        let Some(h) = self.hosts.get_mut(host) else {
            return;
        };
        let old = h.nic;
        h.nic = nic;
        h.egress_free_ns = retime(now, 0, h.egress_free_ns, old.egress_bps, nic.egress_bps);
        h.ingress_free_ns = retime(now, 0, h.ingress_free_ns, old.ingress_bps, nic.ingress_bps);
        if old != nic {
            let ids: Vec<u64> = self
                .streams
                .iter()
                .filter(|(_, s)| s.from != s.to && (&*s.from == host || &*s.to == host))
                .map(|(&id, _)| id)
                .collect();
            for id in ids {
                let (from, to) = {
                    let s = &self.streams[&id];
                    (s.from.clone(), s.to.clone())
                };
                let latency = self.link(&from, &to).latency_ns;
                let (old_bps, new_bps) = if &*from == host {
                    (old.egress_bps, nic.egress_bps)
                } else {
                    (old.ingress_bps, nic.ingress_bps)
                };
                let s = self.streams.get_mut(&id).expect("listed above");
                for seg in s.in_flight.iter_mut() {
                    seg.ready_ns = retime(now, latency, seg.ready_ns, old_bps, new_bps);
                }
                s.last_ready_ns = retime(now, latency, s.last_ready_ns, old_bps, new_bps);
                if let Some(f) = s.fin_ready_ns {
                    s.fin_ready_ns = Some(retime(now, latency, f, old_bps, new_bps));
                }
                s.wake_all();
                s.wake.retime.notify_one();
            }
            // Cut-through reception: a peer's ingress was booked until this host's slow bits
            // would have arrived. It is free once what is now in flight to it has arrived.
            let peers: BTreeSet<String> = self
                .streams
                .values()
                .filter(|s| &*s.from == host && &*s.to != host)
                .map(|s| s.to.to_string())
                .collect();
            for peer in peers {
                let arriving = self
                    .streams
                    .values()
                    .filter(|s| *s.to == *peer && *s.from != *peer)
                    .filter_map(|s| s.in_flight.back().map(|seg| seg.ready_ns))
                    .max()
                    .unwrap_or(now)
                    .max(now);
                if let Some(p) = self.hosts.get_mut(&peer) {
                    p.ingress_free_ns = p.ingress_free_ns.min(arriving);
                }
            }
        }
        self.event(NetEvent::SetNic { host: host.to_string(), at_ns: now, nic });
    }

    pub fn set_link(&mut self, now: u64, a: &str, b: &str, link: LinkConfig) {
        let (x, y) = ordered(a, b);
        self.links.insert(x, y, link);
        self.event(NetEvent::SetLink { a: a.to_string(), b: b.to_string(), at_ns: now, link });
    }

    pub fn link(&self, a: &str, b: &str) -> LinkConfig {
        let (x, y) = ordered(a, b);
        self.links.get(x, y).copied().unwrap_or(self.cfg.link)
    }

    pub fn stats(&self, host: &str) -> Option<NicStats> {
        self.hosts.get(host).map(|h| h.stats.clone())
    }

    pub fn all_stats(&self) -> BTreeMap<String, NicStats> {
        self.hosts.iter().map(|(n, h)| (n.clone(), h.stats.clone())).collect()
    }

    /// True if segments can go from `from` to `to` now.
    pub fn path_open(&self, from: &str, to: &str) -> bool {
        from == to || self.blocked.get(from, to).is_none()
    }

    /// True if connections from `client` to `server:port` are cut by a port-level block.
    pub fn port_blocked(&self, client: &str, server: &str, port: u16) -> bool {
        !self.blocked_ports.is_empty()
            && self.blocked_ports.contains(&(client.to_string(), server.to_string(), port))
    }

    /// Cuts connections from `client` to `server:port` (both directions of such connections;
    /// other traffic between the two hosts flows).
    pub fn block_port(&mut self, now: u64, client: &str, server: &str, port: u16) {
        if client != server
            && self.blocked_ports.insert((client.to_string(), server.to_string(), port))
        {
            self.event(NetEvent::Partition {
                from: client.to_string(),
                to: format!("{server}:{port}"),
                at_ns: now,
            });
        }
    }

    pub fn unblock_port(&mut self, now: u64, client: &str, server: &str, port: u16) {
        if self.blocked_ports.remove(&(client.to_string(), server.to_string(), port)) {
            self.event(NetEvent::Heal {
                from: client.to_string(),
                to: format!("{server}:{port}"),
                at_ns: now,
            });
            self.wake_pumps();
        }
    }

    pub fn partition_one_way(&mut self, now: u64, from: &str, to: &str) {
        if from != to && self.blocked.insert(from, to, ()).is_none() {
            self.event(NetEvent::Partition {
                from: from.to_string(),
                to: to.to_string(),
                at_ns: now,
            });
        }
    }

    /// Heals the direction `from` → `to`.
    pub fn heal_one_way(&mut self, now: u64, from: &str, to: &str) {
        if self.blocked.remove(from, to).is_some() {
            self.event(NetEvent::Heal { from: from.to_string(), to: to.to_string(), at_ns: now });
            self.wake_pumps();
        }
    }

    pub fn heal_all(&mut self, now: u64) {
        for (from, to, ()) in self.blocked.take_all() {
            self.event(NetEvent::Heal { from, to, at_ns: now });
        }
        self.wake_pumps();
    }

    fn wake_pumps(&mut self) {
        for s in self.streams.values() {
            s.wake.pump.notify_one();
        }
    }

    pub fn crash(&mut self, now: u64, host: &str) {
        let Some(h) = self.hosts.get_mut(host) else {
            return;
        };
        h.up = false;
        self.event(NetEvent::Crash { host: host.to_string(), at_ns: now });
        let keys: Vec<_> = self.listeners.keys().filter(|(h, _)| h == host).cloned().collect();
        for key in keys {
            self.close_listener_key(now, &key, None);
        }
        let conns: BTreeSet<u64> = self
            .streams
            .values()
            .filter(|s| &*s.from == host || &*s.to == host)
            .map(|s| s.conn)
            .collect();
        for conn in conns {
            self.reset_conn(now, conn, ErrorKind::ConnectionReset, ResetCause::Crash);
        }
    }

    pub fn restart(&mut self, now: u64, host: &str) {
        if let Some(h) = self.hosts.get_mut(host) {
            if !h.up {
                h.up = true;
                self.event(NetEvent::Restart { host: host.to_string(), at_ns: now });
            }
        }
    }

    // ---- listeners ----

    pub fn bind(&mut self, now: u64, host: &str, port: u16) -> io::Result<(u16, u64, Arc<Notify>)> {
        let h = self.hosts.get_mut(host).ok_or_else(|| err(ErrorKind::AddrNotAvailable, host))?;
        if !h.up {
            return Err(err(ErrorKind::Other, format!("host {host} is down")));
        }
        let port = if port == 0 {
            let mut found = None;
            for _ in 0..=(EPHEMERAL_PORT_LAST - EPHEMERAL_PORT_FIRST) {
                let p = h.next_port;
                h.next_port = if p >= EPHEMERAL_PORT_LAST { EPHEMERAL_PORT_FIRST } else { p + 1 };
                if !self.listeners.contains_key(&(host.to_string(), p)) {
                    found = Some(p);
                    break;
                }
            }
            found.ok_or_else(|| err(ErrorKind::AddrInUse, "no free ephemeral port"))?
        } else {
            port
        };
        let key = (host.to_string(), port);
        if self.listeners.contains_key(&key) {
            return Err(err(ErrorKind::AddrInUse, format!("{host}:{port} is in use")));
        }
        let id = self.next_listener;
        self.next_listener += 1;
        let notify = Arc::new(Notify::new());
        self.listeners
            .insert(key, ListenerState { id, queue: VecDeque::new(), notify: notify.clone() });
        self.event(NetEvent::Bind { host: host.to_string(), port, at_ns: now });
        Ok((port, id, notify))
    }

    /// Takes the next pending connection of listener `id` (`Ok(None)`: none yet).
    pub fn accept(
        &mut self,
        now: u64,
        host: &str,
        port: u16,
        id: u64,
    ) -> io::Result<Option<PendingConn>> {
        let key = (host.to_string(), port);
        match self.listeners.get_mut(&key) {
            Some(l) if l.id == id => {
                let p = l.queue.pop_front();
                if p.is_some() {
                    if let Some(h) = self.hosts.get_mut(host) {
                        h.stats.accepts += 1;
                    }
                }
                let _ = now;
                Ok(p)
            }
            _ => {
                Err(err(ErrorKind::ConnectionAborted, format!("listener {host}:{port} is closed")))
            }
        }
    }

    pub fn close_listener(&mut self, now: u64, host: &str, port: u16, id: u64) {
        self.close_listener_key(now, &(host.to_string(), port), Some(id));
    }

    fn close_listener_key(&mut self, now: u64, key: &(String, u16), id: Option<u64>) {
        let Some(l) = self.listeners.get(key) else {
            return;
        };
        if id.is_some_and(|id| id != l.id) {
            return;
        }
        let l = self.listeners.remove(key).expect("present");
        l.notify.notify_waiters();
        l.notify.notify_one();
        for p in l.queue {
            self.reset_conn(now, p.conn, ErrorKind::ConnectionReset, ResetCause::ListenerClosed);
            // Nobody will ever hold the server's handles.
            self.drop_reader(now, 2 * p.conn);
            self.drop_writer(now, 2 * p.conn + 1);
        }
    }

    // ---- connect ----

    pub fn connect_step(&mut self, now: u64, local: &str, target: &str, port: u16) -> ConnectStep {
        if !self.hosts.contains_key(target) {
            return ConnectStep::UnknownHost;
        }
        if !self.host_up(local) {
            return ConnectStep::LocalDown;
        }
        if !self.path_open(local, target)
            || !self.path_open(target, local)
            || self.port_blocked(local, target, port)
        {
            return ConnectStep::Blocked;
        }
        let (fwd, back) = self.handshake_latencies(local, target);
        let listening =
            self.host_up(target) && self.listeners.contains_key(&(target.to_string(), port));
        if !listening {
            return ConnectStep::Refused(now + fwd + back);
        }
        ConnectStep::Syn { arrive_ns: now + fwd, back_ns: back }
    }

    fn handshake_latencies(&self, a: &str, b: &str) -> (u64, u64) {
        if a == b {
            let l = self.cfg.tcp.loopback_latency_ns;
            (l, l)
        } else {
            let l = self.link(a, b).latency_ns;
            (l, l)
        }
    }

    /// The SYN arrives: queue a connection on the listener. `Err(step)` if it no longer can.
    pub fn syn_arrives(
        &mut self,
        now: u64,
        local: &str,
        local_port: u16,
        target: &str,
        port: u16,
    ) -> Result<(u64, Arc<StreamWake>, Arc<StreamWake>), ConnectStep> {
        if !self.host_up(local) {
            return Err(ConnectStep::LocalDown);
        }
        if !self.path_open(local, target) || self.port_blocked(local, target, port) {
            return Err(ConnectStep::Blocked);
        }
        let (_, back) = self.handshake_latencies(local, target);
        let backlog_max = self.cfg.tcp.accept_backlog_max as usize;
        let key = (target.to_string(), port);
        match (self.host_up(target), self.listeners.get(&key)) {
            (true, Some(l)) if l.queue.len() < backlog_max => {}
            (true, Some(_)) => return Err(ConnectStep::Blocked), // SYN dropped: backlog full
            _ => return Err(ConnectStep::Refused(now + back)),
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        let service = (local.to_string(), target.to_string(), port);
        let c2s = self.new_stream(conn, 2 * conn + 1, local, target, service.clone());
        let s2c = self.new_stream(conn, 2 * conn, target, local, service);
        let wake_c2s = c2s.wake.clone();
        let wake_s2c = s2c.wake.clone();
        self.streams.insert(2 * conn, c2s);
        self.streams.insert(2 * conn + 1, s2c);
        let l = self.listeners.get_mut(&key).expect("checked");
        l.queue.push_back(PendingConn {
            conn,
            peer: format!("{local}:{local_port}"),
            local: format!("{target}:{port}"),
        });
        l.notify.notify_one();
        Ok((conn, wake_c2s, wake_s2c))
    }

    fn new_stream(
        &self,
        conn: u64,
        reverse: u64,
        from: &str,
        to: &str,
        service: (String, String, u16),
    ) -> Stream {
        Stream {
            conn,
            reverse,
            from: Arc::from(from),
            to: Arc::from(to),
            service,
            wake: Arc::new(StreamWake::default()),
            reader_waker: None,
            unsent: VecDeque::new(),
            unsent_bytes: 0,
            fin_pending: false,
            fin_ready_ns: None,
            in_flight: VecDeque::new(),
            window_used: 0,
            window_returns: VecDeque::new(),
            last_ready_ns: 0,
            reset: None,
            // A connection in the accept queue stands for the server's handles.
            reader_alive: true,
            writer_alive: true,
            closed_unread: false,
            stalled_since_ns: None,
            reader_parked: false,
            wakeup_ns: self.hosts.get(to).map_or(0, |h| h.wakeup_ns),
        }
    }

    pub fn ephemeral_port(&mut self, host: &str) -> u16 {
        let Some(h) = self.hosts.get_mut(host) else {
            return 0;
        };
        let p = h.next_port;
        h.next_port = if p >= EPHEMERAL_PORT_LAST { EPHEMERAL_PORT_FIRST } else { p + 1 };
        p
    }

    /// Records a finished connect (a [`NetEvent::Connect`]) and counts it for its host.
    pub fn record_connect(&mut self, event: NetEvent) {
        if let NetEvent::Connect { from, outcome, .. } = &event {
            if let Some(h) = self.hosts.get_mut(from) {
                match outcome {
                    ConnectOutcome::Established => h.stats.connects += 1,
                    ConnectOutcome::Refused => h.stats.connects_refused += 1,
                    ConnectOutcome::TimedOut => h.stats.connects_timed_out += 1,
                    ConnectOutcome::UnknownHost => {}
                }
            }
        }
        self.event(event);
    }

    /// The host that reads stream `id`.
    pub fn stream_receiver(&self, id: u64) -> Option<String> {
        self.streams.get(&id).map(|s| s.to.to_string())
    }

    pub fn stream_wake(&self, id: u64) -> Option<Arc<StreamWake>> {
        self.streams.get(&id).map(|s| s.wake.clone())
    }

    /// The error a connect in progress sees when the connection was reset before it returned.
    pub fn stream_reset(&self, id: u64) -> Option<ErrorKind> {
        self.streams.get(&id).and_then(|s| s.reset)
    }

    // ---- resets and handle drops ----

    pub fn reset_conn(&mut self, now: u64, conn: u64, kind: ErrorKind, cause: ResetCause) {
        let mut any = false;
        let mut hosts = Vec::new();
        for id in [2 * conn, 2 * conn + 1] {
            if let Some(s) = self.streams.get_mut(&id) {
                if s.reset.is_none() {
                    any = true;
                    s.reset = Some(kind);
                    s.unsent.clear();
                    s.unsent_bytes = 0;
                    s.in_flight.clear();
                    s.window_returns.clear();
                    s.wake_all();
                    hosts.push(s.from.clone());
                }
            }
        }
        if any {
            for h in hosts {
                if let Some(h) = self.hosts.get_mut(&*h) {
                    h.stats.resets += 1;
                }
            }
            self.event(NetEvent::Reset { conn, at_ns: now, cause });
        }
    }

    /// Whether the process at the receiving end of stream `id` has closed its socket.
    fn receiver_closed(&self, id: u64) -> bool {
        let Some(s) = self.streams.get(&id) else {
            return true;
        };
        !s.reader_alive && self.streams.get(&s.reverse).is_none_or(|r| !r.writer_alive)
    }

    fn maybe_remove(&mut self, id: u64) {
        if let Some(s) = self.streams.get(&id) {
            if !s.reader_alive && !s.writer_alive {
                let s = self.streams.remove(&id).expect("present");
                s.wake.pump.notify_one();
            }
        }
    }

    pub fn drop_reader(&mut self, now: u64, id: u64) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.reader_alive = false;
        s.reader_waker = None;
        let unread: u64 = s
            .in_flight
            .iter()
            .filter(|seg| seg.ready_ns <= now)
            .map(|seg| seg.data.len() as u64)
            .sum();
        let discarded: u64 = s.in_flight.iter().map(|seg| seg.data.len() as u64).sum();
        s.in_flight.clear();
        s.closed_unread = unread > 0;
        if discarded > 0 {
            s.window_returns.push_back((now, discarded));
            s.wake.pump.notify_one();
        }
        let conn = s.conn;
        let reverse = s.reverse;
        if self.receiver_closed(id) && unread > 0 {
            // close(2) with unread data sends an RST.
            self.reset_conn(now, conn, ErrorKind::ConnectionReset, ResetCause::ClosedWithData);
        }
        self.maybe_remove(id);
        self.maybe_remove(reverse);
    }

    pub fn drop_writer(&mut self, now: u64, id: u64) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.writer_alive = false;
        s.fin_pending = true;
        s.wake.pump.notify_one();
        let reverse = s.reverse;
        let conn = s.conn;
        // Closing the socket with unread incoming data resets the connection.
        if self.receiver_closed(reverse) {
            let unread =
                self.streams.get(&reverse).is_some_and(|r| r.reset.is_none() && r.closed_unread);
            if unread {
                self.reset_conn(now, conn, ErrorKind::ConnectionReset, ResetCause::ClosedWithData);
            }
        }
        self.maybe_remove(id);
        self.maybe_remove(reverse);
    }

    pub fn shutdown_writer(&mut self, id: u64) -> io::Result<()> {
        let Some(s) = self.streams.get_mut(&id) else {
            return Err(err(ErrorKind::NotConnected, "closed"));
        };
        if let Some(kind) = s.reset {
            return Err(err(kind, "connection reset"));
        }
        s.fin_pending = true;
        s.wake.pump.notify_one();
        Ok(())
    }

    // ---- data path ----

    /// Puts as much of `data` into the send buffer as fits; returns the bytes taken.
    pub fn write(&mut self, id: u64, data: &mut Bytes) -> io::Result<usize> {
        let Some(s) = self.streams.get_mut(&id) else {
            return Err(err(ErrorKind::NotConnected, "closed"));
        };
        if let Some(kind) = s.reset {
            return Err(err(kind, reset_msg(kind)));
        }
        if s.fin_pending {
            return Err(err(ErrorKind::BrokenPipe, "write after shutdown"));
        }
        let space = self.cfg.tcp.send_buffer_bytes.saturating_sub(s.unsent_bytes);
        let take = (space.min(data.len() as u64)) as usize;
        if take > 0 {
            let chunk = split_front(data, take);
            s.unsent_bytes += take as u64;
            s.unsent.push_back(chunk);
            s.wake.pump.notify_one();
        }
        Ok(take)
    }

    /// Reads ready bytes into `buf`; registers `waker` when nothing is ready.
    pub fn read(
        &mut self,
        now: u64,
        id: u64,
        buf: &mut tokio::io::ReadBuf<'_>,
        waker: &Waker,
    ) -> ReadOutcome {
        let back_latency = {
            let Some(s) = self.streams.get(&id) else {
                return ReadOutcome::Err(ErrorKind::NotConnected);
            };
            if s.from == s.to {
                self.cfg.tcp.loopback_latency_ns
            } else {
                self.link(&s.from, &s.to).latency_ns
            }
        };
        let s = self.streams.get_mut(&id).expect("checked");
        if let Some(kind) = s.reset {
            return ReadOutcome::Err(kind);
        }
        if buf.remaining() == 0 {
            return ReadOutcome::Data;
        }
        // A parked reader sees the first segment once its thread is awake: `wakeup_ns` after
        // the segment arrived (it arrived after the reader parked: nothing was there then).
        let wakeup_ns = s.wakeup_ns;
        let woken_ns = |ready_ns: u64| ready_ns.saturating_add(wakeup_ns);
        let visible_ns = match s.in_flight.front() {
            Some(seg) if s.reader_parked => woken_ns(seg.ready_ns),
            Some(seg) => seg.ready_ns,
            None => u64::MAX,
        };
        let mut n = 0u64;
        while buf.remaining() > 0 && visible_ns <= now {
            let Some(seg) = s.in_flight.front_mut() else {
                break;
            };
            if seg.ready_ns > now {
                break;
            }
            let want = buf.remaining();
            n += seg.data.read_into(buf, want) as u64;
            if seg.data.is_empty() {
                s.in_flight.pop_front();
            }
        }
        if n > 0 {
            let woken = std::mem::replace(&mut s.reader_parked, false);
            s.window_returns.push_back((now + back_latency, n));
            s.wake.pump.notify_one();
            return if woken { ReadOutcome::Woken } else { ReadOutcome::Data };
        }
        s.reader_waker = Some(waker.clone());
        // Nothing visible: the reader parks (unless a woken read is already due).
        s.reader_parked = true;
        match (s.in_flight.front(), s.fin_ready_ns) {
            (Some(seg), _) => ReadOutcome::Pending(Some(woken_ns(seg.ready_ns))),
            (None, Some(f)) if f <= now => ReadOutcome::Eof,
            (None, Some(f)) => ReadOutcome::Pending(Some(f)),
            (None, None) => ReadOutcome::Pending(None),
        }
    }

    /// One step of stream `id`'s sender: put the next segment on the wire, or say what to wait for.
    pub fn pump_step(&mut self, now: u64, id: u64) -> PumpAction {
        let user_timeout_ns = self.cfg.tcp.user_timeout_ns;
        let receive_buffer_bytes = self.cfg.tcp.receive_buffer_bytes;
        let segment_bytes_max = self.cfg.tcp.segment_bytes_max;
        let Some(s) = self.streams.get(&id) else {
            return PumpAction::Exit;
        };
        if s.reset.is_some() || s.fin_ready_ns.is_some() {
            return PumpAction::Exit;
        }
        let conn = s.conn;
        let cut = self.port_blocked(&s.service.0, &s.service.1, s.service.2);
        let fwd_open = !cut && self.path_open(&s.from, &s.to);
        let back_open = !cut && self.path_open(&s.to, &s.from);
        let receiver_closed = self.receiver_closed(id);
        let s = self.streams.get_mut(&id).expect("checked");
        if back_open {
            while let Some(&(at, n)) = s.window_returns.front() {
                if at > now {
                    break;
                }
                s.window_returns.pop_front();
                s.window_used = s.window_used.saturating_sub(n);
            }
        }
        let stall = |s: &mut Stream| -> Option<u64> {
            let since = *s.stalled_since_ns.get_or_insert(now);
            let deadline = since.saturating_add(user_timeout_ns);
            (deadline > now).then_some(deadline)
        };
        if s.unsent_bytes == 0 {
            if !s.fin_pending {
                s.stalled_since_ns = None;
                return PumpAction::Wait(None);
            }
            if !fwd_open {
                return match stall(s) {
                    Some(deadline) => PumpAction::Wait(Some(deadline)),
                    None => {
                        self.reset_conn(now, conn, ErrorKind::TimedOut, ResetCause::UserTimeout);
                        PumpAction::Exit
                    }
                };
            }
            let (from, to) = (s.from.clone(), s.to.clone());
            let latency = self.one_way_latency(&from, &to);
            let s = self.streams.get_mut(&id).expect("checked");
            let ready = s.last_ready_ns.max(now + latency);
            s.fin_ready_ns = Some(ready);
            if let Some(w) = s.reader_waker.take() {
                w.wake();
            }
            self.event(NetEvent::Fin { stream: id, at_ns: now, ready_ns: ready });
            return PumpAction::Exit;
        }
        if receiver_closed {
            // Data for a closed socket: the peer answers with an RST.
            self.reset_conn(now, conn, ErrorKind::ConnectionReset, ResetCause::ClosedWithData);
            return PumpAction::Exit;
        }
        let window_avail = receive_buffer_bytes.saturating_sub(s.window_used);
        if !fwd_open || (window_avail == 0 && !back_open) {
            return match stall(s) {
                Some(deadline) => PumpAction::Wait(Some(deadline)),
                None => {
                    self.reset_conn(now, conn, ErrorKind::TimedOut, ResetCause::UserTimeout);
                    PumpAction::Exit
                }
            };
        }
        s.stalled_since_ns = None;
        if window_avail == 0 {
            return PumpAction::Wait(s.window_returns.front().map(|&(at, _)| at));
        }
        let n = s.unsent_bytes.min(window_avail).min(segment_bytes_max);
        let data = take_bytes(&mut s.unsent, n);
        s.unsent_bytes -= n;
        s.wake.writer.notify_one();
        let reader_alive = s.reader_alive;
        // Named only here, once a segment leaves (most steps wait and need no names).
        let (from, to) = (s.from.clone(), s.to.clone());
        let (depart_ns, nic_done_ns, arrive_ns, retransmits) = self.transmit(now, &from, &to, n);
        let s = self.streams.get_mut(&id).expect("checked");
        let ready_ns = arrive_ns.max(s.last_ready_ns);
        s.last_ready_ns = ready_ns;
        if reader_alive {
            s.window_used += n;
            s.in_flight.push_back(Segment { data, ready_ns });
            if let Some(w) = s.reader_waker.take() {
                w.wake();
            }
        }
        self.event(NetEvent::Segment { stream: id, bytes: n, depart_ns, ready_ns, retransmits });
        PumpAction::SleepUntil(nic_done_ns, n)
    }

    fn one_way_latency(&self, from: &str, to: &str) -> u64 {
        if from == to {
            self.cfg.tcp.loopback_latency_ns
        } else {
            self.link(from, to).latency_ns
        }
    }

    /// Puts `n` payload bytes from `from` to `to` on the wire at `now`: returns (first bit leaves,
    /// last bit leaves the sender's NIC, readable at the receiver, retransmissions).
    fn transmit(&mut self, now: u64, from: &str, to: &str, n: u64) -> (u64, u64, u64, u32) {
        let tcp = self.cfg.tcp;
        let wire = tcp.wire_bytes(n);
        if from == to {
            let ser = serialization_ns(wire, tcp.loopback_bps);
            if let Some(h) = self.hosts.get_mut(from) {
                h.stats.bytes_sent += n;
                h.stats.bytes_received += n;
            }
            return (now, now + ser, now + ser + tcp.loopback_latency_ns, 0);
        }
        let link = self.link(from, to);
        let mut latency = link.latency_ns;
        if link.jitter_ns_max > 0 {
            latency += self.rng.next_u64() % (link.jitter_ns_max + 1);
        }
        let mut retransmits = 0u32;
        if link.loss_ppm > 0 {
            while retransmits < tcp.retransmits_max
                && (self.rng.next_u64() % 1_000_000) < u64::from(link.loss_ppm)
            {
                latency = latency.saturating_add(tcp.retransmit_delay_ns << retransmits);
                retransmits += 1;
            }
        }
        let sender = self.hosts.get_mut(from).expect("stream endpoints are hosts");
        let start = now.max(sender.egress_free_ns);
        let ser_out = serialization_ns(wire, sender.nic.egress_bps);
        let done = start + ser_out;
        sender.egress_free_ns = done;
        sender.stats.egress_busy_ns += ser_out;
        sender.stats.bytes_sent += n;
        sender.stats.wire_bytes_sent += wire;
        sender.stats.segments_sent += 1;
        sender.stats.retransmits += u64::from(retransmits);
        let receiver = self.hosts.get_mut(to).expect("stream endpoints are hosts");
        // Cut-through: the receiver's NIC takes bits as they arrive, but no faster than its rate,
        // and after the segments queued before this one.
        let ser_in = serialization_ns(wire, receiver.nic.ingress_bps);
        let in_start = (start + latency).max(receiver.ingress_free_ns);
        let in_done = (in_start + ser_in).max(done + latency);
        receiver.ingress_free_ns = in_done;
        receiver.stats.ingress_busy_ns += ser_in;
        receiver.stats.bytes_received += n;
        receiver.stats.wire_bytes_received += wire;
        (start, done, in_done, retransmits)
    }
}

/// A time `at` that a NIC committed to at `old_bps`, seen from `now` after it changed to
/// `new_bps`: the part beyond `now + latency_ns` (serialization still to come) is scaled by
/// old/new; earlier times (already past the NIC) stay. Monotone in `at`.
fn retime(now: u64, latency_ns: u64, at: u64, old_bps: u64, new_bps: u64) -> u64 {
    let fixed = now.saturating_add(latency_ns);
    if at <= fixed || old_bps == new_bps || new_bps == 0 {
        return at;
    }
    let scaled = u128::from(at - fixed) * u128::from(old_bps) / u128::from(new_bps);
    fixed.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
}

fn take_bytes(q: &mut VecDeque<Bytes>, n: u64) -> Payload {
    let n = n as usize;
    if let Some(front) = q.front_mut() {
        if front.len() >= n {
            let out = split_front(front, n);
            if front.is_empty() {
                q.pop_front();
            }
            return Payload::One(out);
        }
    }
    // Sized first: the pieces are the queue's first `count` buffers.
    let mut count = 0;
    let mut covered = 0;
    for b in q.iter() {
        if covered >= n {
            break;
        }
        covered += b.len();
        count += 1;
    }
    let (mut pieces, mut taken) = (VecDeque::with_capacity(count), 0);
    while taken < n {
        let front = q.front_mut().expect("n <= unsent bytes");
        let take = (n - taken).min(front.len());
        pieces.push_back(split_front(front, take));
        taken += take;
        if front.is_empty() {
            q.pop_front();
        }
    }
    Payload::Many(pieces)
}

/// The first `n` bytes of `b`, leaving the rest in `b`: all of it moved out when `n` is its
/// length (no second view made and the first dropped, which costs two atomic reference-count
/// changes).
fn split_front(b: &mut Bytes, n: usize) -> Bytes {
    if n == b.len() {
        std::mem::take(b)
    } else {
        b.split_to(n)
    }
}

/// `a` and `b`, the smaller name first (a link's key).
fn ordered<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Values keyed by a pair of host names, found from two `&str`s without building a key: the
/// fabric asks for a link and a path on every read and segment. Iterates in (first, second)
/// order, as a map keyed by the pair would.
#[derive(Debug)]
struct HostPairs<V>(BTreeMap<String, BTreeMap<String, V>>);

impl<V> Default for HostPairs<V> {
    fn default() -> Self {
        HostPairs(BTreeMap::new())
    }
}

impl<V> HostPairs<V> {
    fn get(&self, a: &str, b: &str) -> Option<&V> {
        self.0.get(a)?.get(b)
    }

    /// The value `(a, b)` held before, if any.
    fn insert(&mut self, a: &str, b: &str, value: V) -> Option<V> {
        self.0.entry(a.to_string()).or_default().insert(b.to_string(), value)
    }

    fn remove(&mut self, a: &str, b: &str) -> Option<V> {
        let inner = self.0.get_mut(a)?;
        let value = inner.remove(b);
        if inner.is_empty() {
            self.0.remove(a);
        }
        value
    }

    /// Every pair and its value, in order, leaving none.
    fn take_all(&mut self) -> Vec<(String, String, V)> {
        std::mem::take(&mut self.0)
            .into_iter()
            .flat_map(|(a, inner)| inner.into_iter().map(move |(b, v)| (a.clone(), b, v)))
            .collect()
    }
}

pub(crate) fn is_local_name(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "0.0.0.0" | "::" | "[::]" | "::1" | "[::1]" | "")
}

pub(crate) fn reset_msg(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::TimedOut => "connection timed out (TCP user timeout)",
        _ => "connection reset by peer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Host pairs answer as a map keyed by the pair: by value, after inserts and removes, and
    /// taken all in pair order; a removed host's last pair leaves nothing behind.
    #[test]
    fn host_pairs_answer_as_a_map_keyed_by_the_pair() {
        let mut pairs = HostPairs::default();
        let mut model = BTreeMap::new();
        let ops = [("b", "a", 1), ("a", "c", 2), ("a", "b", 3), ("b", "a", 4), ("c", "a", 5)];
        for (a, b, v) in ops {
            let key = (a.to_string(), b.to_string());
            assert_eq!(pairs.insert(a, b, v), model.insert(key, v));
        }
        assert_eq!(pairs.remove("a", "c"), model.remove(&("a".into(), "c".into())));
        assert_eq!(pairs.remove("a", "x"), None);
        for (a, b) in [("a", "b"), ("b", "a"), ("a", "c"), ("c", "a"), ("c", "b")] {
            assert_eq!(pairs.get(a, b), model.get(&(a.to_string(), b.to_string())), "{a} {b}");
        }
        assert_eq!(pairs.remove("c", "a"), Some(5));
        assert!(!pairs.0.contains_key("c"), "an emptied host is dropped");
        model.remove(&("c".into(), "a".into()));
        let all: Vec<_> = model.into_iter().map(|((a, b), v)| (a, b, v)).collect();
        assert_eq!(pairs.take_all(), all);
        assert_eq!(pairs.get("a", "b"), None);
    }

    /// A segment cut across several writes keeps their pieces and reads back as their bytes,
    /// in order, in reads of any size; one cut inside a write is that write's bytes alone.
    #[test]
    fn a_segment_across_writes_reads_back_its_bytes() {
        let writes: Vec<Bytes> =
            [5usize, 4096, 1, 3000].iter().map(|&n| Bytes::from(vec![n as u8; n])).collect();
        let all: Vec<u8> = writes.iter().flat_map(|b| b.iter().copied()).collect();
        let mut q: VecDeque<Bytes> = writes.into_iter().collect();
        let mut first = take_bytes(&mut q, 6000);
        assert!(matches!(&first, Payload::Many(p) if p.len() == 4), "four writes in one segment");
        assert_eq!(first.len(), 6000);
        let mut rest = take_bytes(&mut q, 1102);
        assert!(matches!(rest, Payload::One(_)), "inside one write: no pieces");
        assert!(q.is_empty());
        let mut got = Vec::new();
        for (seg, step) in [(&mut first, 7usize), (&mut rest, 1000)] {
            while !seg.is_empty() {
                let mut space = vec![0u8; step];
                let mut buf = tokio::io::ReadBuf::new(&mut space);
                let n = seg.read_into(&mut buf, step);
                assert!(n > 0 && n <= step);
                got.extend_from_slice(buf.filled());
            }
        }
        assert_eq!(got, all);
    }
}
