//! What a host profile's `measurements` hold: one figure measured several times, as its median
//! with the spread (written by `cargo simulate calibrate`, read by the simulator's profile
//! parser). The profile's other sections are the models' own types ([`crate::CpuProfile`],
//! `disk_model::sim::DeviceProfile`) and `cluster.host`'s keys.

use serde::{Deserialize, Serialize};

/// Most runs one figure keeps.
pub const RUNS_MAX: usize = 1_000;

/// One figure: the median of `runs` measurements, their minimum and maximum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: u32,
    /// `MB/s`, `ns`, `IOPS`, `ns/request`, ...
    pub unit: String,
    /// How it was measured (sizes, repetitions, what was subtracted).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub how: String,
}

impl Measurement {
    /// The median and spread of `samples` (at least one, at most [`RUNS_MAX`], all finite).
    pub fn of(samples: &[f64], unit: &str, how: &str) -> Measurement {
        assert!(!samples.is_empty() && samples.len() <= RUNS_MAX, "{} samples", samples.len());
        assert!(samples.iter().all(|x| x.is_finite()), "non-finite sample in {samples:?}");
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        Measurement {
            median,
            min: s[0],
            max: s[n - 1],
            runs: n as u32,
            unit: unit.into(),
            how: how.into(),
        }
    }

    /// Spread relative to the median: (max − min) / median (0 when the median is 0).
    pub fn spread(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let m = Measurement::of(&[5.0, 1.0, 3.0, 100.0, 4.0], "ns", "");
        assert_eq!((m.median, m.min, m.max, m.runs), (4.0, 1.0, 100.0, 5));
        let even = Measurement::of(&[1.0, 2.0, 3.0, 4.0], "ns", "");
        assert_eq!(even.median, 2.5);
        let back: Measurement = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<Measurement>(
            r#"{"median":1,"min":1,"max":1,"runs":1,"unit":"x","typo":1}"#
        )
        .is_err());
    }
}
