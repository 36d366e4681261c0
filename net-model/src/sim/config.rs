//! Configuration of the simulated network: NICs, links, TCP knobs, with limits on everything.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Fastest NIC accepted (bits per second).
pub const NIC_BPS_MAX: u64 = 400_000_000_000;
/// Slowest NIC accepted (bits per second): 1 kb/s.
pub const NIC_BPS_MIN: u64 = 1_000;
/// Largest one-way link latency accepted.
pub const LATENCY_NS_MAX: u64 = 10_000_000_000;
/// Largest jitter accepted.
pub const JITTER_NS_MAX: u64 = 1_000_000_000;
/// Highest per-segment loss probability accepted, in parts per million (50 %).
pub const LOSS_PPM_MAX: u32 = 500_000;
/// Socket buffers: 1 KiB ..= 1 GiB.
pub const BUFFER_BYTES_MIN: u64 = 1024;
pub const BUFFER_BYTES_MAX: u64 = 1 << 30;
/// Largest segment handed to the NIC at once (a GSO super-segment).
pub const SEGMENT_BYTES_MAX: u64 = 1 << 20;
/// Most hosts on one fabric.
pub const HOSTS_MAX: usize = 4096;
/// Most retransmissions drawn for one segment.
pub const RETRANSMITS_MAX: u32 = 15;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{field} = {value} is out of range {min}..={max}")]
    OutOfRange { field: &'static str, value: u64, min: u64, max: u64 },
    #[error("segment_bytes_max ({segment}) must not exceed receive_buffer_bytes ({receive})")]
    SegmentLargerThanWindow { segment: u64, receive: u64 },
}

fn check(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::OutOfRange { field, value, min, max });
    }
    Ok(())
}

/// One host's network interface. Egress and ingress are independent (full duplex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NicConfig {
    pub egress_bps: u64,
    pub ingress_bps: u64,
}

impl NicConfig {
    /// A symmetric NIC of `bps` bits per second each way.
    pub fn symmetric(bps: u64) -> Self {
        NicConfig { egress_bps: bps, ingress_bps: bps }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check("nic.egress_bps", self.egress_bps, NIC_BPS_MIN, NIC_BPS_MAX)?;
        check("nic.ingress_bps", self.ingress_bps, NIC_BPS_MIN, NIC_BPS_MAX)
    }
}

impl Default for NicConfig {
    /// 10 Gb/s each way.
    fn default() -> Self {
        NicConfig::symmetric(10_000_000_000)
    }
}

/// The path between two hosts (both directions alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// One-way propagation + switching latency.
    pub latency_ns: u64,
    /// Each segment adds a uniform draw in `0..=jitter_ns_max` (clamped so one stream stays in order).
    pub jitter_ns_max: u64,
    /// Probability that a segment is lost (and retransmitted), in parts per million.
    pub loss_ppm: u32,
}

impl LinkConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check("link.latency_ns", self.latency_ns, 0, LATENCY_NS_MAX)?;
        check("link.jitter_ns_max", self.jitter_ns_max, 0, JITTER_NS_MAX)?;
        check("link.loss_ppm", u64::from(self.loss_ppm), 0, u64::from(LOSS_PPM_MAX))
    }
}

impl Default for LinkConfig {
    /// Same rack: 50 µs one way, no jitter, no loss.
    fn default() -> Self {
        LinkConfig { latency_ns: 50_000, jitter_ns_max: 0, loss_ppm: 0 }
    }
}

/// Per-connection TCP behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// Bytes a writer may have written that have not yet been put on the wire (`SO_SNDBUF`).
    pub send_buffer_bytes: u64,
    /// The receive window: bytes on the wire plus bytes received and not yet read (`SO_RCVBUF`).
    pub receive_buffer_bytes: u64,
    /// Largest segment handed to the NIC at once (TSO/GSO super-segment). Larger segments mean
    /// fewer simulated events; a small message never waits behind more than one such segment of
    /// each other stream on the same NIC.
    pub segment_bytes_max: u64,
    /// Maximum segment size on the wire, for header overhead accounting.
    pub mss_bytes: u64,
    /// Header bytes per MSS-sized packet (Ethernet 14 + preamble/IFG 20 + FCS 4 + IP 20 + TCP 32
    /// with timestamps = 90 on the wire; 1500 MTU ⇒ 1448-byte payloads ⇒ ~94 % goodput).
    pub packet_overhead_bytes: u64,
    /// Delay a lost segment adds (RTO, Linux's minimum is 200 ms); doubles on each further loss.
    pub retransmit_delay_ns: u64,
    /// Most losses drawn for one segment; after that it gets through.
    pub retransmits_max: u32,
    /// A connect whose SYN cannot get through retries after 1 s, 2 s, 4 s ... and fails with
    /// `TimedOut` once this much time has passed (Linux `tcp_syn_retries = 6` ≈ 127 s).
    pub connect_timeout_ns: u64,
    /// First SYN retransmission delay.
    pub syn_rto_initial_ns: u64,
    /// A stream that has data to send but cannot (partitioned) for this long is reset with
    /// `TimedOut` on both ends (`TCP_USER_TIMEOUT`; Linux's `tcp_retries2 = 15` ≈ 924 s).
    pub user_timeout_ns: u64,
    /// Connections waiting in a listener's accept queue (`somaxconn`); more SYNs are dropped.
    pub accept_backlog_max: u32,
    /// One-way latency of loopback connections (a host to itself); no NIC is involved.
    pub loopback_latency_ns: u64,
    /// Loopback copy bandwidth (bits per second), not queued.
    pub loopback_bps: u64,
}

impl Default for TcpConfig {
    /// Linux-like: buffers at their autotuning maxima (`tcp_wmem` 4 MiB, `tcp_rmem` 6 MiB).
    fn default() -> Self {
        TcpConfig {
            send_buffer_bytes: 4 << 20,
            receive_buffer_bytes: 6 << 20,
            segment_bytes_max: 45 * 1448, // 65160: 45 full packets, as GSO builds them
            mss_bytes: 1448,
            packet_overhead_bytes: 90,
            retransmit_delay_ns: 200_000_000,
            retransmits_max: 6,
            connect_timeout_ns: 127_000_000_000,
            syn_rto_initial_ns: 1_000_000_000,
            user_timeout_ns: 924_000_000_000,
            accept_backlog_max: 4096,
            loopback_latency_ns: 10_000,
            loopback_bps: 100_000_000_000,
        }
    }
}

impl TcpConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check("tcp.send_buffer_bytes", self.send_buffer_bytes, BUFFER_BYTES_MIN, BUFFER_BYTES_MAX)?;
        check(
            "tcp.receive_buffer_bytes",
            self.receive_buffer_bytes,
            BUFFER_BYTES_MIN,
            BUFFER_BYTES_MAX,
        )?;
        check("tcp.segment_bytes_max", self.segment_bytes_max, 1, SEGMENT_BYTES_MAX)?;
        check("tcp.mss_bytes", self.mss_bytes, 88, 65_535)?;
        check("tcp.packet_overhead_bytes", self.packet_overhead_bytes, 0, 1024)?;
        check("tcp.retransmit_delay_ns", self.retransmit_delay_ns, 1, 60_000_000_000)?;
        check(
            "tcp.retransmits_max",
            u64::from(self.retransmits_max),
            0,
            u64::from(RETRANSMITS_MAX),
        )?;
        check("tcp.connect_timeout_ns", self.connect_timeout_ns, 1, 3_600_000_000_000)?;
        check("tcp.syn_rto_initial_ns", self.syn_rto_initial_ns, 1, 60_000_000_000)?;
        check("tcp.user_timeout_ns", self.user_timeout_ns, 1, 3_600_000_000_000)?;
        check("tcp.accept_backlog_max", u64::from(self.accept_backlog_max), 1, 65_535)?;
        check("tcp.loopback_latency_ns", self.loopback_latency_ns, 0, LATENCY_NS_MAX)?;
        check("tcp.loopback_bps", self.loopback_bps, NIC_BPS_MIN, NIC_BPS_MAX)?;
        if self.segment_bytes_max > self.receive_buffer_bytes {
            return Err(ConfigError::SegmentLargerThanWindow {
                segment: self.segment_bytes_max,
                receive: self.receive_buffer_bytes,
            });
        }
        Ok(())
    }

    /// Bytes on the wire for `payload_bytes` of stream data (headers of each MSS packet added).
    pub fn wire_bytes(&self, payload_bytes: u64) -> u64 {
        let packets = payload_bytes.div_ceil(self.mss_bytes).max(1);
        payload_bytes + packets * self.packet_overhead_bytes
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimNetConfig {
    /// The run's seed; the network salts it for its own random stream (jitter, loss).
    pub seed: u64,
    /// NIC of hosts added without one.
    pub nic: NicConfig,
    /// Link between any two hosts without an explicit one.
    pub link: LinkConfig,
    pub tcp: TcpConfig,
}

impl SimNetConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.nic.validate()?;
        self.link.validate()?;
        self.tcp.validate()
    }
}

/// Serialization time of `bytes` at `bps`, rounded up to the nanosecond.
pub fn serialization_ns(bytes: u64, bps: u64) -> u64 {
    let ns = (u128::from(bytes) * 8 * 1_000_000_000).div_ceil(u128::from(bps.max(1)));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_wire_math() {
        SimNetConfig::default().validate().unwrap();
        assert_eq!(serialization_ns(1_000_000, 100_000_000), 80_000_000);
        let tcp = TcpConfig::default();
        assert_eq!(tcp.wire_bytes(1448), 1448 + 90);
        assert_eq!(tcp.wire_bytes(1), 91);
        assert_eq!(tcp.wire_bytes(1449), 1449 + 180);
        let bad = NicConfig { egress_bps: 0, ingress_bps: 1_000_000 };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::OutOfRange { field: "nic.egress_bps", .. })
        ));
    }

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_keys() {
        let c: SimNetConfig =
            serde_json::from_str(r#"{"seed": 3, "link": {"latency_ns": 100000}}"#).unwrap();
        assert_eq!(c.seed, 3);
        assert_eq!(c.link.latency_ns, 100_000);
        assert_eq!(c.tcp, TcpConfig::default());
        assert!(serde_json::from_str::<SimNetConfig>(r#"{"sed": 3}"#).is_err());
    }
}
