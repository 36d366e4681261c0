//! What the network reports: an event log (hashed into the simulator's trace) and per-host counters.

use serde::Serialize;

use super::config::{LinkConfig, NicConfig};

/// How a connect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConnectOutcome {
    Established,
    /// No listener, or the target host is crashed (an RST came back).
    Refused,
    /// No SYN got through before `connect_timeout_ns` (partition).
    TimedOut,
    /// The name is not a host of the fabric.
    UnknownHost,
}

/// Why a connection was reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ResetCause {
    /// A host of the connection crashed.
    Crash,
    /// Data reached (or was pending at) a socket its process had closed.
    ClosedWithData,
    /// The listener closed before the connection was accepted.
    ListenerClosed,
    /// Data could not get through for `user_timeout_ns`.
    UserTimeout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum NetEvent {
    Bind {
        host: String,
        port: u16,
        at_ns: u64,
    },
    /// A connect from `from` to `to:port`: made at `at_ns`, returned at `done_ns`. Connection `conn`
    /// carries streams `2 * conn` (client to server) and `2 * conn + 1` (server to client).
    Connect {
        conn: u64,
        from: String,
        to: String,
        port: u16,
        at_ns: u64,
        done_ns: u64,
        outcome: ConnectOutcome,
    },
    /// `bytes` of stream data leave the sender's NIC at `depart_ns` (first bit) and are readable
    /// at the receiver from `ready_ns`, after `retransmits` losses.
    Segment {
        stream: u64,
        bytes: u64,
        depart_ns: u64,
        ready_ns: u64,
        retransmits: u32,
    },
    /// The writer's FIN: EOF readable from `ready_ns`.
    Fin {
        stream: u64,
        at_ns: u64,
        ready_ns: u64,
    },
    Reset {
        conn: u64,
        at_ns: u64,
        cause: ResetCause,
    },
    Partition {
        from: String,
        to: String,
        at_ns: u64,
    },
    Heal {
        from: String,
        to: String,
        at_ns: u64,
    },
    Crash {
        host: String,
        at_ns: u64,
    },
    Restart {
        host: String,
        at_ns: u64,
    },
    SetNic {
        host: String,
        at_ns: u64,
        nic: NicConfig,
    },
    SetLink {
        a: String,
        b: String,
        at_ns: u64,
        link: LinkConfig,
    },
}

/// Counters of one host. Utilization = busy time / elapsed time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NicStats {
    /// Stream payload bytes put on the wire / delivered to this host.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Wire bytes (payload + packet headers).
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
    pub segments_sent: u64,
    pub retransmits: u64,
    /// Time the egress / ingress side of the NIC spent serializing.
    pub egress_busy_ns: u64,
    pub ingress_busy_ns: u64,
    pub connects: u64,
    pub connects_refused: u64,
    pub connects_timed_out: u64,
    pub accepts: u64,
    /// Connections of this host that were reset.
    pub resets: u64,
}

/// Undrained events kept; more are counted in [`super::SimNet::events_dropped`].
pub const EVENTS_MAX: usize = 1 << 20;
