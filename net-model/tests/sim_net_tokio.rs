//! The simulated network also runs on plain tokio (real time, so only behaviour is checked).
#![cfg(not(madsim))]

use std::io::ErrorKind;

use bytes::Bytes;
use net_model::sim::{LinkConfig, SimNet, SimNetConfig};
use net_model::{Chunk, CostHook, CpuProfile, SimCpu, Work};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn round_trip_transfer_and_crash_on_real_time() {
    let cfg = SimNetConfig {
        link: LinkConfig { latency_ns: 100_000, ..LinkConfig::default() },
        ..SimNetConfig::default()
    };
    let net = SimNet::new(cfg);
    let a = net.host("a");
    let b = net.host("b");
    let l = b.bind("b:9092").await.unwrap();
    let server = tokio::spawn(async move {
        let mut c = l.accept().await.unwrap();
        let mut buf = vec![0u8; 100_000];
        c.reader.read_exact(&mut buf).await.unwrap();
        c.writer.write_chunks(&[Chunk::Bytes(Bytes::from(buf))]).await.unwrap();
        (c, l)
    });
    let mut c = a.connect("b:9092").await.unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    c.writer.write_chunks(&[Chunk::Bytes(Bytes::from(data.clone()))]).await.unwrap();
    let mut back = vec![0u8; 100_000];
    c.reader.read_exact(&mut back).await.unwrap();
    assert_eq!(back, data);
    let (_s, _l) = server.await.unwrap();
    net.crash("b");
    let mut one = [0u8; 1];
    assert_eq!(c.reader.read(&mut one).await.unwrap_err().kind(), ErrorKind::ConnectionReset);
    assert_eq!(a.connect("b:9092").await.unwrap_err().kind(), ErrorKind::ConnectionRefused);
    assert!(!net.drain_events().is_empty());
}

#[tokio::test]
async fn sim_cpu_on_real_time() {
    let cpu = SimCpu::new(CpuProfile::with_cores(1));
    let t0 = tokio::time::Instant::now();
    cpu.spend(Work::Memcpy, 10_000_000).await; // 1.1 ms at ~9 GB/s
    assert!(t0.elapsed() >= std::time::Duration::from_millis(1));
}

/// Hosts of one machine (`SimNet::set_loopback_cpu`): each byte between them is charged twice
/// to the machine's cores (the sender's copy in, the receiver's copy out), both ways; hosts
/// without it are charged nothing by the network.
#[tokio::test]
async fn loopback_bytes_are_charged_once_per_side() {
    let net = SimNet::new(SimNetConfig::default());
    let (a, b) = (net.host("a"), net.host("b"));
    let profile =
        CpuProfile { loopback: net_model::cpu::Cost::new(0, 1_000), ..CpuProfile::with_cores(2) };
    let cpu = SimCpu::new(profile);
    let hook: std::sync::Arc<dyn CostHook> = std::sync::Arc::new(cpu.clone());
    net.set_loopback_cpu("a", hook.clone());
    net.set_loopback_cpu("b", hook);
    let l = b.bind("b:9092").await.unwrap();
    let server = tokio::spawn(async move {
        let mut c = l.accept().await.unwrap();
        let mut buf = vec![0u8; 100_000];
        c.reader.read_exact(&mut buf).await.unwrap();
        c.writer.write_chunks(&[Chunk::Bytes(Bytes::from(buf[..30_000].to_vec()))]).await.unwrap();
        (c, l)
    });
    let mut c = a.connect("b:9092").await.unwrap();
    c.writer.write_chunks(&[Chunk::Bytes(Bytes::from(vec![7u8; 100_000]))]).await.unwrap();
    let mut back = vec![0u8; 30_000];
    c.reader.read_exact(&mut back).await.unwrap();
    let _kept = server.await.unwrap();
    let loopback = cpu.stats().per_work.get(&Work::Loopback).copied().unwrap_or_default();
    assert_eq!(loopback.bytes, 2 * (100_000 + 30_000), "{loopback:?}");
    assert_eq!(loopback.busy_ns, 2 * 130_000, "1 ns a byte, each side");

    // The same exchange between hosts that do not share a machine: no loopback work.
    let other = SimNet::new(SimNetConfig::default());
    let (x, y) = (other.host("x"), other.host("y"));
    let plain = SimCpu::new(CpuProfile::with_cores(2));
    let l = y.bind("y:9092").await.unwrap();
    let accept = tokio::spawn(async move { (l.accept().await.unwrap(), l) });
    let mut c = x.connect("y:9092").await.unwrap();
    c.writer.write_chunks(&[Chunk::Bytes(Bytes::from(vec![7u8; 1_000]))]).await.unwrap();
    let (mut s, _l) = accept.await.unwrap();
    let mut buf = vec![0u8; 1_000];
    s.reader.read_exact(&mut buf).await.unwrap();
    assert!(plain.stats().per_work.is_empty());
}
