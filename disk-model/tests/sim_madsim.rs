//! The simulated disk on madsim's virtual clock: microsecond IO takes microseconds (no 1 ms floor).
#![cfg(madsim)]

use std::path::Path;
use std::time::Duration;

use disk_model::clock::Clock;
use disk_model::{DeviceProfile, OpenMode, SimDisk, SimDiskConfig, Storage};

#[tokio::test]
async fn nvme_read_completes_in_microseconds_of_virtual_time() {
    let d = SimDisk::new(SimDiskConfig::new(DeviceProfile::nvme(), 7), Clock::runtime());
    d.create_dir_all(Path::new("t-0")).await.expect("mkdir");
    let f = d.open(Path::new("t-0/00.log"), OpenMode::CreateNew).await.expect("create");
    f.append(&[7u8; 4096]).await.expect("append");
    f.sync().await.expect("sync");
    d.drop_caches();

    let start = tokio::time::Instant::now();
    let data = f.read_at(0, 4096).await.expect("read");
    let elapsed = start.elapsed();
    assert_eq!(&data[..], &[7u8; 4096][..]);
    // 20 µs access + 4 KiB at 3 GB/s ≈ 21.4 µs.
    assert!(elapsed >= Duration::from_micros(20), "{elapsed:?}");
    assert!(elapsed < Duration::from_micros(100), "{elapsed:?}: madsim's 1 ms floor leaked in");

    // A hit costs no time at all.
    let start = tokio::time::Instant::now();
    f.read_at(0, 4096).await.expect("read");
    assert_eq!(start.elapsed(), Duration::ZERO);
}
