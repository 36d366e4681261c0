//! Fault rules: which operations fail, where, how often, how many times.
//!
//! A rule fires on an operation of its kind on a path under its prefix (all paths when `None`),
//! with its probability, at most `fires_max` times. Rules are checked in injection order and the
//! first that fires wins. Deterministic rules (probability 1) draw nothing from the rng, so adding
//! one never shifts the random stream of the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Salts so each of the disk's random streams is independent of the others' draws.
pub const FAULT_RNG_SALT: u64 = 0x6469_736b_6661_756c; // "diskfaul"
pub const TEAR_RNG_SALT: u64 = 0x6469_736b_7465_6172; // "disktear"

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum FaultKind {
    /// A read that needs the device fails with EIO (cache hits still succeed, as on Linux).
    ReadError,
    /// An append fails with EIO; nothing is written.
    WriteError,
    /// `sync` (and `sync_dir`) fails with EIO. fsyncgate: the file's dirty pages are marked clean
    /// without reaching the device, so they are lost once evicted or at power loss.
    SyncError,
    /// An append fails with ENOSPC; nothing is written.
    NoSpace,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultRule {
    pub kind: FaultKind,
    /// Only paths under this prefix (component-wise); `None` = the whole disk.
    pub path_prefix: Option<PathBuf>,
    /// Chance that a matching operation fails, in `0.0..=1.0`.
    pub probability: f64,
    /// Stops firing after this many failures; `None` = no limit.
    pub fires_max: Option<u64>,
}

impl FaultRule {
    /// Every matching operation on the whole disk fails.
    pub fn always(kind: FaultKind) -> Self {
        FaultRule { kind, path_prefix: None, probability: 1.0, fires_max: None }
    }
    pub fn under(mut self, prefix: impl Into<PathBuf>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }
    pub fn with_probability(mut self, probability: f64) -> Self {
        self.probability = probability;
        self
    }
    pub fn times(mut self, fires_max: u64) -> Self {
        self.fires_max = Some(fires_max);
        self
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(format!("fault probability {} not in 0..=1", self.probability));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FaultId(pub u64);

#[derive(Debug)]
pub struct Faults {
    rules: BTreeMap<FaultId, (FaultRule, u64)>,
    next_id: u64,
    rng: ChaCha8Rng,
    /// Appends fail with ENOSPC once the files' total length would exceed this.
    pub space_limit_bytes: Option<u64>,
    /// Power loss tears the page being transferred (a seeded prefix of its sectors lands).
    pub torn_writes: bool,
}

/// Rules alive at once: a scenario needing more is a bug in the scenario.
pub const FAULT_RULES_MAX: usize = 1024;

impl Faults {
    pub fn new(seed: u64) -> Self {
        Faults {
            rules: BTreeMap::new(),
            next_id: 1,
            rng: ChaCha8Rng::seed_from_u64(seed ^ FAULT_RNG_SALT),
            space_limit_bytes: None,
            torn_writes: false,
        }
    }

    pub fn inject(&mut self, rule: FaultRule) -> FaultId {
        assert!(rule.validate().is_ok(), "{:?}", rule.validate());
        assert!(self.rules.len() < FAULT_RULES_MAX, "more than {FAULT_RULES_MAX} fault rules");
        let id = FaultId(self.next_id);
        self.next_id += 1;
        self.rules.insert(id, (rule, 0));
        id
    }

    pub fn clear(&mut self, id: FaultId) -> bool {
        self.rules.remove(&id).is_some()
    }

    pub fn clear_all(&mut self) {
        self.rules.clear();
    }

    /// Whether an operation of `kind` on `path` fails now; the rule that fired.
    pub fn check(&mut self, kind: FaultKind, path: &Path) -> Option<FaultId> {
        for (&id, (rule, fired)) in self.rules.iter_mut() {
            if rule.kind != kind {
                continue;
            }
            if let Some(prefix) = &rule.path_prefix {
                if !path.starts_with(prefix) {
                    continue;
                }
            }
            if rule.fires_max.is_some_and(|max| *fired >= max) {
                continue;
            }
            let fires = rule.probability >= 1.0
                || (rule.probability > 0.0 && self.rng.gen_bool(rule.probability));
            if fires {
                *fired += 1;
                return Some(id);
            }
        }
        None
    }

    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
}
