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
