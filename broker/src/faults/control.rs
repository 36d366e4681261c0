//! The broker's installed fault rules. Empty — and free: one relaxed atomic load per request —
//! until a rule is installed (`broker serve --fault-plan FILE`, or a test through
//! [`FaultControl::install`]). Probabilities draw from this broker's own seeded rng, so a
//! simulated run replays its faults exactly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use kafka_types::ErrorCode;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::rules::{self, Action, FaultTable, RequestFacts, Rule, RuleError, RuleSpec};
use super::throttle;
use crate::protocol;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Mixed into the node's seed so the fault draws are a stream of their own.
const FAULT_SALT: u64 = 0x5eed_fa17_fa17_5eed;

#[derive(Debug)]
pub struct FaultControl {
    active: AtomicBool,
    table: Mutex<FaultTable>,
    rng: Mutex<ChaCha8Rng>,
}

fn error_code(name: &str) -> Option<i16> {
    ErrorCode::from_name(name).map(|c| c.code())
}

fn known_api(name: &str) -> bool {
    protocol::SUPPORTED.iter().any(|(k, _, _)| protocol::api_name(*k) == name)
}

/// A rule's action, once its spec is checked; a throttle rule gets the versions whose responses
/// carry the field.
fn checked(mut spec: RuleSpec) -> Result<(RuleSpec, Action), RuleError> {
    let action = rules::validate(&spec, &error_code, &known_api)?;
    if matches!(action, Action::Throttle { .. }) {
        spec.versions = Some(throttle::narrow(&spec.api, spec.versions)?);
    }
    Ok((spec, action))
}

impl FaultControl {
    pub fn new(seed: u64) -> Self {
        Self {
            active: AtomicBool::new(false),
            table: Mutex::new(FaultTable::default()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// Restarts the probability draws from `seed` (the node's seed: the run's seed per host and
    /// incarnation in the simulator, the OS's in real mode).
    pub fn reseed(&self, seed: u64) {
        *lock(&self.rng) = ChaCha8Rng::seed_from_u64(seed ^ FAULT_SALT);
    }

    /// Whether any rule is installed (the request path's only cost otherwise).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Checks and installs one rule; returns its id.
    pub fn install(&self, spec: RuleSpec, now_ms: u64) -> Result<u64, RuleError> {
        let (spec, action) = checked(spec)?;
        let id = lock(&self.table).push(spec, action, now_ms)?;
        self.active.store(true, Ordering::Relaxed);
        Ok(id)
    }

    /// Checks every rule, then installs them all, or none when any is bad (the error gives its
    /// index) or they would not fit.
    pub fn install_all(
        &self,
        specs: Vec<RuleSpec>,
        now_ms: u64,
    ) -> Result<Vec<u64>, (usize, RuleError)> {
        let mut ok = Vec::with_capacity(specs.len());
        for (i, s) in specs.into_iter().enumerate() {
            ok.push(checked(s).map_err(|e| (i, e))?);
        }
        let mut table = lock(&self.table);
        if table.rules().len() + ok.len() > rules::RULES_MAX {
            return Err((ok.len().saturating_sub(1), RuleError::TooMany));
        }
        let ids = ok
            .into_iter()
            .enumerate()
            .map(|(i, (s, a))| table.push(s, a, now_ms).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        self.active.store(!table.is_empty(), Ordering::Relaxed);
        Ok(ids)
    }

    /// Installs a plan: a JSON list of rules. Nothing is installed when any rule is bad; the
    /// error names the rule's index and field.
    pub fn install_plan(&self, json: &str, now_ms: u64) -> Result<Vec<u64>, String> {
        let specs: Vec<RuleSpec> =
            serde_json::from_str(json).map_err(|e| format!("fault plan: {e}"))?;
        self.install_all(specs, now_ms).map_err(|(i, e)| format!("rule {i}: {e}"))
    }

    /// Removes one rule by id; whether it was there.
    pub fn remove(&self, id: u64) -> bool {
        let mut table = lock(&self.table);
        let removed = table.remove(id);
        self.active.store(!table.is_empty(), Ordering::Relaxed);
        removed
    }

    /// Removes every rule; returns how many there were.
    pub fn clear(&self) -> usize {
        let n = lock(&self.table).clear();
        self.active.store(false, Ordering::Relaxed);
        n
    }

    /// The installed rules with their counters.
    pub fn rules(&self) -> Vec<Rule> {
        lock(&self.table).rules().to_vec()
    }

    /// What to do with a request, if a rule fires on it.
    pub fn decide(&self, facts: &RequestFacts, now_ms: u64) -> Option<Action> {
        let mut rng = lock(&self.rng);
        let mut draw = || rng.gen::<f64>();
        lock(&self.table).decide(facts, now_ms, &mut draw)
    }
}
