//! Measures this machine's per-byte costs for the default `CpuProfile` (real world only):
//! `cargo test -p net-model --release --test cpu_calibrate -- --ignored --nocapture`.
#![cfg(not(madsim))]

use std::time::Instant;

use records::compression::{compress, decompress};
use records::Compression;

/// ~4 MiB of Kafka-like records: JSON-ish values with repeating keys and varying numbers.
fn sample() -> Vec<u8> {
    let mut out = Vec::with_capacity(4 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut i = 0u64;
    while out.len() < (4 << 20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let rec = format!(
            "{{\"id\":{i},\"user\":\"user-{}\",\"ts\":{},\"event\":\"{}\",\"value\":{}}}\n",
            x % 10_000,
            1_700_000_000_000u64 + i * 7,
            ["click", "view", "buy", "scroll"][(x % 4) as usize],
            x % 1_000_000
        );
        out.extend_from_slice(rec.as_bytes());
        i += 1;
    }
    out
}

fn rate(bytes: usize, reps: u32, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    (bytes as f64 * f64::from(reps)) / t.elapsed().as_secs_f64() / 1e6
}

#[test]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
fn calibrate() {
    let data = sample();
    let n = data.len();
    let mut dst = vec![0u8; n];
    let memcpy = rate(n, 50, || {
        dst.copy_from_slice(std::hint::black_box(&data));
        std::hint::black_box(&dst);
    });
    let crc = rate(n, 50, || {
        std::hint::black_box(crc32c::crc32c(std::hint::black_box(&data)));
    });
    println!("memcpy {memcpy:.0} MB/s, crc32c {crc:.0} MB/s ({n} bytes, cache-resident)");
    let big: Vec<u8> = data.iter().cycle().take(256 << 20).copied().collect();
    let mut big_dst = vec![0u8; big.len()];
    let memcpy_big = rate(big.len(), 5, || {
        big_dst.copy_from_slice(std::hint::black_box(&big));
        std::hint::black_box(&big_dst);
    });
    let crc_big = rate(big.len(), 5, || {
        std::hint::black_box(crc32c::crc32c(std::hint::black_box(&big)));
    });
    println!(
        "memcpy {memcpy_big:.0} MB/s, crc32c {crc_big:.0} MB/s ({} bytes, from memory)",
        big.len()
    );
    for codec in [Compression::Lz4, Compression::Snappy, Compression::Zstd, Compression::Gzip] {
        let mut c = Vec::new();
        compress(codec, &data, &mut c).unwrap();
        let ratio = n as f64 / c.len() as f64;
        let reps = if codec == Compression::Gzip { 3 } else { 10 };
        let comp = rate(n, reps, || {
            let mut out = Vec::new();
            compress(codec, &data, &mut out).unwrap();
            std::hint::black_box(out);
        });
        let decomp = rate(n, reps, || {
            std::hint::black_box(decompress(codec, &c, n * 2).unwrap());
        });
        println!("{codec:?}: compress {comp:.0} MB/s, decompress {decomp:.0} MB/s (of uncompressed bytes), ratio {ratio:.2}");
    }
}
