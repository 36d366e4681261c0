//! The block device: K channels that each pay an access latency, sharing one transfer bus.
//!
//! Pure and synchronous: `submit` takes the submission time and returns when the IO starts, when
//! its transfer starts and when it completes. The device keeps its own busy times, so an IO
//! submitted while others are queued waits for them (this is what makes a flood of writeback
//! delay a read miss, as on a real disk).
//!
//! Why this shape: an HDD is one head (K = 1) that pays seek + half a rotation unless the IO
//! continues exactly where the previous one ended; an SSD has internal parallelism (K channels)
//! but one host link (SATA 6 Gb/s, PCIe lanes) that every byte crosses. One model covers both.

use serde::{Deserialize, Serialize};

/// The page size of the page cache and the unit of every device IO.
pub const PAGE_SIZE: u64 = 4096;
/// Torn writes tear at sector granularity.
pub const SECTOR_SIZE: u64 = 512;

const NS_PER_SEC: u128 = 1_000_000_000;

/// A device's parameters; also the `disk` object of a host profile (`profiles/*.json`), where
/// every field is required except `flush_ns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    pub name: String,
    /// IOs served concurrently (the queue depth the device actually exploits). HDD: 1.
    pub channels: u32,
    /// Access latency of an IO that starts where the previous IO on the device ended.
    pub sequential_access_ns: u64,
    /// Access latency of any other IO (HDD: average seek + half a rotation).
    pub random_access_ns: u64,
    /// Bandwidth of the shared transfer bus, per direction of the IO.
    pub read_bytes_per_sec: u64,
    pub write_bytes_per_sec: u64,
    /// Extra latency of the cache flush an fsync ends with (a FLUSH/FUA command to the device),
    /// after the data and the journal commit are written. 0 for the built-in profiles, whose
    /// fsync cost is the writes alone; `cargo simulate calibrate` measures it.
    #[serde(default)]
    pub flush_ns: u64,
}

impl DeviceProfile {
    /// 7200 rpm disk: 8.5 ms average seek + 4.17 ms (half a revolution) per random IO, so about
    /// 80 random IOPS; 180 MB/s sequential. Sources: Seagate Exos 7E8 datasheet (average
    /// latency 4.16 ms, seek read/write 8.5/9.5 ms, sustained transfer 215 MB/s outer tracks);
    /// 180 MB/s is a whole-disk average between outer and inner tracks.
    pub fn hdd_7200() -> Self {
        let half_rotation_ns = 60_000_000_000 / 7200 / 2; // 4_166_666 ns
        DeviceProfile {
            name: "hdd-7200".into(),
            channels: 1,
            sequential_access_ns: 0,
            random_access_ns: 8_500_000 + half_rotation_ns,
            read_bytes_per_sec: 180_000_000,
            write_bytes_per_sec: 180_000_000,
            flush_ns: 0,
        }
    }

    /// SATA SSD: ~80 µs per IO, 8 IOs in parallel, 6 Gb/s link (~530 MB/s read, ~500 MB/s write).
    /// Sources: Samsung 870 EVO datasheet (560/530 MB/s sequential, 98K random read IOPS at
    /// QD32); 80 µs is the order of a SATA SSD's QD1 4 KiB read latency.
    pub fn sata_ssd() -> Self {
        DeviceProfile {
            name: "sata-ssd".into(),
            channels: 8,
            sequential_access_ns: 80_000,
            random_access_ns: 80_000,
            read_bytes_per_sec: 530_000_000,
            write_bytes_per_sec: 500_000_000,
            flush_ns: 0,
        }
    }

    /// NVMe SSD: ~20 µs per IO, 32 IOs in parallel, ~3 GB/s read, ~2.5 GB/s write. Sources:
    /// sequential rates of the order of the Samsung 970 EVO Plus datasheet (3,500 MB/s read,
    /// 3,300 MB/s write); 20 µs per IO is a fast drive's QD1 read (the 970 EVO Plus states 19K
    /// QD1 random-read IOPS, ≈ 52 µs: a profile for that drive sets `random_access_ns`).
    pub fn nvme() -> Self {
        DeviceProfile {
            name: "nvme".into(),
            channels: 32,
            sequential_access_ns: 20_000,
            random_access_ns: 20_000,
            read_bytes_per_sec: 3_000_000_000,
            write_bytes_per_sec: 2_500_000_000,
            flush_ns: 0,
        }
    }

    /// `hdd-7200`, `sata-ssd` or `nvme`.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "hdd-7200" | "hdd" => Some(Self::hdd_7200()),
            "sata-ssd" | "ssd" => Some(Self::sata_ssd()),
            "nvme" => Some(Self::nvme()),
            _ => None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.channels == 0 || self.channels > 1024 {
            return Err(format!(
                "device {}: channels {} not in 1..=1024",
                self.name, self.channels
            ));
        }
        if self.read_bytes_per_sec == 0 || self.write_bytes_per_sec == 0 {
            return Err(format!("device {}: bandwidth must be positive", self.name));
        }
        // An access latency beyond a minute is a typo, not a disk.
        if self.random_access_ns > 60_000_000_000
            || self.sequential_access_ns > 60_000_000_000
            || self.flush_ns > 60_000_000_000
        {
            return Err(format!("device {}: access latency above 60 s", self.name));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum IoDir {
    Read,
    Write,
}

/// When one IO happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IoTiming {
    pub submit_ns: u64,
    /// A channel picked it up.
    pub start_ns: u64,
    /// Access latency paid; the bytes start crossing the bus.
    pub transfer_start_ns: u64,
    pub done_ns: u64,
    pub sequential: bool,
}

#[derive(Debug, Clone)]
pub struct Device {
    profile: DeviceProfile,
    channel_free_ns: Vec<u64>,
    bus_free_ns: u64,
    /// Where the previous IO ended: the next IO starting here is sequential.
    last_end_addr: Option<u64>,
    /// Service time multiplier (slow-disk fault); 1 = healthy.
    slow_factor: u32,
}

impl Device {
    pub fn new(profile: DeviceProfile) -> Self {
        assert!(profile.validate().is_ok(), "{:?}", profile.validate());
        let channels = profile.channels as usize;
        Device {
            profile,
            channel_free_ns: vec![0; channels],
            bus_free_ns: 0,
            last_end_addr: None,
            slow_factor: 1,
        }
    }

    pub fn profile(&self) -> &DeviceProfile {
        &self.profile
    }

    pub fn slow_factor(&self) -> u32 {
        self.slow_factor
    }

    /// Multiplies the service time (access and transfer) of every IO submitted from now on.
    pub fn set_slow_factor(&mut self, factor: u32) {
        assert!((1..=1_000_000).contains(&factor), "slow factor {factor} out of 1..=1e6");
        self.slow_factor = factor;
    }

    /// The time the device has no IO queued or in service.
    pub fn idle_at_ns(&self) -> u64 {
        self.channel_free_ns.iter().copied().max().unwrap_or(0).max(self.bus_free_ns)
    }

    /// Forgets every queued IO (power loss: the device restarts empty at `now_ns`).
    pub fn reset(&mut self, now_ns: u64) {
        for c in &mut self.channel_free_ns {
            *c = now_ns;
        }
        self.bus_free_ns = now_ns;
        self.last_end_addr = None;
    }

    /// Queues an IO of `len` bytes at device address `addr`, submitted at `now_ns`.
    pub fn submit(&mut self, now_ns: u64, dir: IoDir, addr: u64, len: u64) -> IoTiming {
        assert!(len > 0, "empty IO");
        assert!(len <= 1 << 32, "IO of {len} bytes: callers split IO into chunks");
        let sequential = self.last_end_addr == Some(addr);
        self.last_end_addr = Some(addr + len);

        // The channel that frees first; ties go to the lowest index (deterministic).
        let (channel, free_ns) = self
            .channel_free_ns
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(i, free)| (free, i))
            .expect("at least one channel");
        let slow = u64::from(self.slow_factor);
        let access_ns = if sequential {
            self.profile.sequential_access_ns
        } else {
            self.profile.random_access_ns
        };
        let bytes_per_sec = match dir {
            IoDir::Read => self.profile.read_bytes_per_sec,
            IoDir::Write => self.profile.write_bytes_per_sec,
        };
        let transfer_ns =
            u64::try_from((u128::from(len) * NS_PER_SEC).div_ceil(u128::from(bytes_per_sec)))
                .expect("transfer time fits u64");

        let start_ns = now_ns.max(free_ns);
        let transfer_start_ns = (start_ns + access_ns * slow).max(self.bus_free_ns);
        let done_ns = transfer_start_ns + transfer_ns * slow;
        self.bus_free_ns = done_ns;
        self.channel_free_ns[channel] = done_ns;
        assert!(now_ns <= start_ns && start_ns <= transfer_start_ns && transfer_start_ns < done_ns);
        IoTiming { submit_ns: now_ns, start_ns, transfer_start_ns, done_ns, sequential }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hdd_sequential_vs_random() {
        let mut d = Device::new(DeviceProfile::hdd_7200());
        let first = d.submit(0, IoDir::Read, 0, PAGE_SIZE);
        assert!(!first.sequential);
        let seq = d.submit(first.done_ns, IoDir::Read, PAGE_SIZE, PAGE_SIZE);
        assert!(seq.sequential);
        let seq_ns = seq.done_ns - seq.submit_ns;
        let rnd = d.submit(seq.done_ns, IoDir::Read, 1 << 30, PAGE_SIZE);
        let rnd_ns = rnd.done_ns - rnd.submit_ns;
        assert!(seq_ns < 50_000, "sequential 4 KiB at 180 MB/s is ~23 µs, got {seq_ns}");
        assert!(rnd_ns > 12_000_000, "random pays seek + rotation, got {rnd_ns}");
    }

    #[test]
    fn queued_io_waits() {
        let mut d = Device::new(DeviceProfile::hdd_7200());
        let a = d.submit(0, IoDir::Write, 0, 1 << 20);
        let b = d.submit(0, IoDir::Write, 1 << 40, PAGE_SIZE);
        assert!(b.start_ns >= a.done_ns);
    }

    #[test]
    fn nvme_parallel_channels_share_bus() {
        let mut d = Device::new(DeviceProfile::nvme());
        let a = d.submit(0, IoDir::Read, 0, PAGE_SIZE);
        let b = d.submit(0, IoDir::Read, 1 << 40, PAGE_SIZE);
        assert_eq!(a.start_ns, 0);
        assert_eq!(b.start_ns, 0, "second channel starts at once");
        assert!(b.done_ns >= a.done_ns);
        assert!(a.done_ns < 25_000, "4 KiB NVMe read ~21 µs, got {}", a.done_ns);
    }

    #[test]
    fn slow_factor_multiplies() {
        let mut d = Device::new(DeviceProfile::nvme());
        let a = d.submit(0, IoDir::Read, 0, PAGE_SIZE);
        d.set_slow_factor(10);
        let t = a.done_ns;
        let b = d.submit(t, IoDir::Read, 1 << 40, PAGE_SIZE);
        assert_eq!(b.done_ns - t, 10 * a.done_ns);
    }
}
