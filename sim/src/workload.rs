//! The workload of a run: [`start`] launches the scenario's prefill, producers, consumers and
//! consumer-group members (the `client` crate's producer and consumer: [`crate::clientload`],
//! [`crate::member`]); and what they share: the record value format (a unique id, then filler),
//! the run-wide [`Control`] between the supervisor and the workload tasks, and the history.
//!
//! Promises: every producer is counted in `producers_running` before it starts; workload tasks
//! run on madsim node `client` (which survives broker faults), group members on their own hosts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};

use broker::log::TopicPartition;

pub use self::launch::{start, Workload};
use crate::history::History;

pub const PRODUCER_RNG_SALT: u64 = 0x7072_6f64_7563_6572; // "producer"

pub type SharedHistory = Arc<Mutex<History>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A record's value: its unique id (8 bytes, big-endian) then filler up to `record.bytes`.
pub fn encode_value(id: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len.max(8)];
    encode_value_into(id, &mut v);
    v
}

/// [`encode_value`] into `out` (at least 8 bytes; its length is the value's): the id, then
/// filler byte `i` = `'0' + (x_{i+1} & 0x3f)` where `x_0 = id · 0x9E3779B97F4A7C15` and
/// `x_{k+1}` is one xorshift64 (13, 7, 17) step of `x_k`.
///
/// The same bytes as stepping the generator byte by byte, about six times faster: the
/// generator is linear over GF(2), so the low 6 bits of the next [`BLOCK`] states are the XOR
/// of what each of the state's 16 nibbles contributes ([`NIBBLES`]: 16 XORs of 64-byte rows
/// instead of a 64-step dependency chain, which was 7 % of a bench run's CPU), and [`jump`]
/// moves the state a block ahead with eight lookups.
pub fn encode_value_into(id: u64, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { encode_value_into_avx2(id, out) };
    }
    encode_value_body(id, out)
}

/// [`encode_value_into`] compiled with AVX2: the same code, its row XORs in 256-bit lanes (1.6 %
/// fewer instructions on a bench cut; the release build targets baseline x86-64).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn encode_value_into_avx2(id: u64, out: &mut [u8]) {
    encode_value_body(id, out)
}

/// The filler's code, inlined into each build of [`encode_value_into`].
#[inline(always)]
fn encode_value_body(id: u64, out: &mut [u8]) {
    assert!(out.len() >= 8, "a value holds its 8-byte id");
    let (head, filler) = out.split_at_mut(8);
    head.copy_from_slice(&id.to_be_bytes());
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut chunks = filler.chunks_mut(BLOCK).peekable();
    while let Some(chunk) = chunks.next() {
        let mut acc = [0u64; BLOCK / 8];
        for (n, rows) in NIBBLES.iter().enumerate() {
            let row = &rows[((x >> (4 * n)) & 0xf) as usize];
            for (a, r) in acc.iter_mut().zip(row) {
                *a ^= r;
            }
        }
        let mut bytes = [0u8; BLOCK];
        for (b, a) in bytes.chunks_exact_mut(8).zip(acc) {
            // Each byte is below 0x40: adding '0' to every byte at once carries nowhere.
            b.copy_from_slice(&(a + 0x3030_3030_3030_3030).to_le_bytes());
        }
        chunk.copy_from_slice(&bytes[..chunk.len()]);
        if chunks.peek().is_some() {
            x = jump(x);
        }
    }
}

/// Filler bytes per block of [`encode_value_into`] (the distance [`jump`] moves the generator).
const BLOCK: usize = 64;

/// One step of the filler's generator (xorshift64, shifts 13, 7, 17).
const fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// `NIBBLES[n][v]`: the low 6 bits of the [`BLOCK`] states after the state `v << 4n`, one byte
/// each, packed little-endian (16 KiB).
static NIBBLES: [[[u64; BLOCK / 8]; 16]; 16] = nibble_table();

const fn nibble_table() -> [[[u64; BLOCK / 8]; 16]; 16] {
    let mut t = [[[0u64; BLOCK / 8]; 16]; 16];
    let mut n = 0;
    while n < 16 {
        let mut v = 0;
        while v < 16 {
            let mut x = (v as u64) << (4 * n);
            let mut i = 0;
            while i < BLOCK {
                x = xorshift(x);
                t[n][v][i / 8] |= (x & 0x3f) << (8 * (i % 8));
                i += 1;
            }
            v += 1;
        }
        n += 1;
    }
    t
}

/// `JUMP[j][b]`: [`BLOCK`] generator steps from the state `b << 8j` (16 KiB).
static JUMP: [[u64; 256]; 8] = jump_table();

const fn jump_table() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut j = 0;
    while j < 8 {
        let mut b = 0;
        while b < 256 {
            let mut x = (b as u64) << (8 * j);
            let mut k = 0;
            while k < BLOCK {
                x = xorshift(x);
                k += 1;
            }
            t[j][b] = x;
            b += 1;
        }
        j += 1;
    }
    t
}

/// [`BLOCK`] generator steps from `x` at once: each step is linear over GF(2), so the steps of
/// `x` are the XOR of the steps of its eight bytes.
fn jump(x: u64) -> u64 {
    let mut y = 0;
    for (j, table) in JUMP.iter().enumerate() {
        y ^= table[((x >> (8 * j)) & 0xff) as usize];
    }
    y
}

pub fn decode_value(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

/// Run-wide control shared by the supervisor and the workload tasks.
#[derive(Debug, Default)]
pub struct Control {
    pub stop_consumers: AtomicBool,
    pub producers_running: AtomicU32,
    /// Consumer positions, (consumer, tp) → next offset.
    pub positions: Mutex<BTreeMap<(u32, TopicPartition), i64>>,
    /// Consumer groups: (group, tp) → the furthest committed offset of any member.
    pub group_positions: Mutex<BTreeMap<(String, TopicPartition), i64>>,
}

mod launch {
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    use broker::log::TopicPartition;

    use super::{Control, SharedHistory};
    use crate::clientload::{ClientConsumer, ClientProducer, ClientSide};
    use crate::history::History;
    use crate::member::MemberHost;
    use crate::scenario::{ConsumerSpec, Scenario};
    use crate::trace::Tracer;
    use crate::world::World;

    /// A started workload.
    pub struct Workload {
        pub history: SharedHistory,
        pub control: Arc<Control>,
        /// Consumer-group members by consumer index.
        pub members: BTreeMap<u32, Arc<MemberHost>>,
        /// The client machines' CPU models (`None` without `cluster.host.cores`).
        pub client_cpus: Vec<Option<net_model::SimCpu>>,
        /// What went wrong before the workload's clock started (a failed prefill).
        pub failures: Vec<String>,
    }

    struct Launch<'a> {
        sc: &'a Scenario,
        seed: u64,
        tracer: &'a Tracer,
        sides: Vec<ClientSide>,
        client: madsim::runtime::NodeHandle,
        history: SharedHistory,
        control: Arc<Control>,
    }

    /// Starts the scenario's workload on `world` (prefill first, awaited).
    pub async fn start(sc: &Scenario, seed: u64, world: &World, tracer: &Tracer) -> Workload {
        let client = madsim::runtime::Handle::current().create_node().name("client").build();
        let (sides, client_cpus) = world.client_sides(sc);
        let l = Launch {
            sc,
            seed,
            tracer,
            sides,
            client,
            history: Arc::new(Mutex::new(History::default())),
            control: Arc::new(Control::default()),
        };
        let failures = l.prefill().await;
        l.producers();
        let members = l.consumers(world);
        Workload { history: l.history, control: l.control, members, client_cpus, failures }
    }

    impl Launch<'_> {
        /// Client machine for the `i`-th producer or consumer: its `host`, or round-robin.
        fn side_of(&self, host: Option<u32>, i: u32) -> Option<ClientSide> {
            self.sides.get(host.unwrap_or(i % self.sc.client_hosts.max(1)) as usize).cloned()
        }

        /// A backlog written before the workload's clock starts.
        async fn prefill(&self) -> Vec<String> {
            let mut failures = Vec::new();
            let mut prefilled = 0u64;
            if let Some(side) = self.sides.first() {
                for (k, spec) in self.sc.prefill.iter().enumerate() {
                    let (ok, failed) =
                        crate::clientload::prefill(spec, k as u32, side, self.tracer, self.seed)
                            .await;
                    prefilled += ok;
                    if failed > 0 {
                        failures.push(format!(
                            "prefill of {}: {failed} of {} records failed",
                            spec.topic, spec.records
                        ));
                    }
                }
            }
            if !self.sc.prefill.is_empty() {
                self.tracer.event("prefill-done", &format!("records={prefilled}"));
            }
            failures
        }

        fn producers(&self) {
            let mut index = 0u32;
            for spec in &self.sc.producers {
                for _ in 0..spec.count {
                    self.control.producers_running.fetch_add(1, Ordering::SeqCst);
                    let Some(side) = self.side_of(spec.host, index) else { continue };
                    let p = ClientProducer {
                        index,
                        spec: spec.clone(),
                        side,
                        history: self.history.clone(),
                        tracer: self.tracer.clone(),
                        control: self.control.clone(),
                        stop_at_ns: self.sc.producers_stop_ns(),
                        seed: self.seed,
                    };
                    self.client.spawn(p.run());
                    index += 1;
                }
            }
        }

        fn partitions_of(&self, topic: &str) -> Vec<TopicPartition> {
            let topics = self.sc.topics.iter().filter(|t| t.name == topic);
            topics
                .flat_map(|t| (0..t.partitions).map(|p| TopicPartition::new(t.name.clone(), p)))
                .collect()
        }

        /// Plain consumers (static assignment) on the client node; group members on hosts of
        /// their own.
        fn consumers(&self, world: &World) -> BTreeMap<u32, Arc<MemberHost>> {
            let mut cindex = 0u32;
            let mut members = BTreeMap::new();
            for spec in &self.sc.consumers {
                let parts = self.partitions_of(&spec.topic);
                for k in 0..spec.count {
                    // Static assignment: partitions dealt round-robin among this entry's consumers.
                    let mine: Vec<_> = parts
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i as u32 % spec.count == k)
                        .map(|(_, tp)| tp.clone())
                        .collect();
                    if mine.is_empty() && spec.group.is_none() {
                        continue;
                    }
                    if spec.group.is_some() && !self.sides.is_empty() {
                        members.insert(cindex, self.member(spec, k, cindex, &parts, world));
                        cindex += 1;
                        continue;
                    }
                    if let Some(side) = self.side_of(spec.host, cindex) {
                        let c = ClientConsumer {
                            index: cindex,
                            spec: spec.clone(),
                            partitions: mine,
                            side,
                            history: self.history.clone(),
                            tracer: self.tracer.clone(),
                            control: self.control.clone(),
                        };
                        self.client.spawn(c.run());
                        cindex += 1;
                    }
                }
            }
            members
        }

        /// A group member: its own host, subscribing (the group assigns partitions).
        fn member(
            &self,
            spec: &ConsumerSpec,
            k: u32,
            cindex: u32,
            parts: &[TopicPartition],
            world: &World,
        ) -> Arc<MemberHost> {
            let side = &self.sides[0];
            let nic = net_model::sim::NicConfig::symmetric(self.sc.host.nic_bps);
            let group = spec.group.clone().unwrap_or_else(|| unreachable!("checked by caller"));
            let m = MemberHost::new(
                cindex,
                spec.clone(),
                group,
                k,
                world.net.clone(),
                nic,
                side.cpu.clone(),
                side.bootstrap.clone(),
                self.history.clone(),
                self.tracer.clone(),
                self.control.clone(),
            );
            {
                let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
                let g = spec.group_id.clone().unwrap_or_default();
                h.group_members.insert(cindex, g.clone());
                h.group_partitions.insert(g, parts.to_vec());
            }
            m.start();
            m
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = encode_value(42, 100);
        assert_eq!(v.len(), 100);
        assert_eq!(decode_value(&v), Some(42));
        assert_eq!(decode_value(&v[..7]), None);
    }

    #[test]
    fn value_bytes_are_pinned() {
        // The filler is part of every log byte a run writes: a change here moves trace hashes.
        let v = encode_value(7, 20);
        assert_eq!(&v[..8], &7u64.to_be_bytes());
        assert_eq!(&v[8..], b"JoGWPOBUHVO\\");
        assert_eq!(encode_value(3, 4), 3u64.to_be_bytes().to_vec());
    }

    /// The filler as it was first written: one generator step per byte.
    fn encode_value_serial(id: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len.max(8)];
        v[..8].copy_from_slice(&id.to_be_bytes());
        let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for b in &mut v[8..] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x & 0x3f) as u8 + b'0';
        }
        v
    }

    /// The tables and jumps write exactly the serial generator's bytes, at every length around
    /// the block edges and beyond, for ids from 0 up.
    /// Both builds (the AVX2 one where the CPU has it, which `encode_value` takes, and the
    /// baseline one) are checked.
    #[test]
    fn blocks_write_the_serial_filler() {
        let ids = [0, 1, 7, 42, 1 << 40, (3 << 40) | 123_456, u64::MAX];
        for len in (0..300).chain([1000, 4096, 4097]) {
            for &id in &ids {
                let serial = encode_value_serial(id, len);
                assert_eq!(encode_value(id, len), serial, "id {id} len {len}");
                let mut baseline = vec![0u8; len.max(8)];
                encode_value_body(id, &mut baseline);
                assert_eq!(baseline, serial, "baseline build: id {id} len {len}");
            }
        }
    }

    #[test]
    fn jump_is_block_steps() {
        for x in [1u64, 0x8000_0000_0000_0000, 0x0123_4567_89ab_cdef, u64::MAX] {
            let stepped = (0..BLOCK).fold(x, |x, _| xorshift(x));
            assert_eq!(jump(x), stepped);
        }
    }
}
