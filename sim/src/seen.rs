//! Records as a consumer or the oracle saw them: (offset, value) pairs in the order they came.
//!
//! Compact by design (a bench run keeps 6M polled and 6M finally read records): the offsets are
//! kept as their first while they run contiguously (every poll and final log of an uncompacted
//! run), each one once they do not (compaction, a broker that answers out of order); the values
//! as runs that rise by one (a producer's ids are consecutive, so a batch of one producer's
//! records is one run): 16 bytes a run, not 8 a record.

/// A run of values: pair `at` holds `value`, each later pair of the run one more.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Run {
    at: usize,
    value: u64,
}

/// (offset, value) pairs in arrival order. `first` is the first offset while `offsets` is `None`
/// (then pair `i` is `(first + i, value(i))`); once an offset breaks the run, `offsets` holds
/// every offset. `runs` start at pair 0 and rise in `at`; `len` counts the pairs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SeenRecords {
    first: i64,
    runs: Vec<Run>,
    len: usize,
    offsets: Option<Vec<i64>>,
}

impl SeenRecords {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pair: in the common case (the next offset, the last run's next value) a
    /// count, else [`Self::push_other`].
    #[inline]
    pub fn push(&mut self, offset: i64, value: u64) {
        let common = self.offsets.is_none()
            && self.len > 0
            && self.next_offset() == Some(offset)
            && self.continues_run(value);
        if common {
            self.len += 1;
            return;
        }
        self.push_other(offset, value);
    }

    /// The offset that keeps the offsets contiguous (while they are), if it fits an `i64`.
    #[inline]
    fn next_offset(&self) -> Option<i64> {
        i64::try_from(self.len).ok().and_then(|n| self.first.checked_add(n))
    }

    /// Whether `value` is the last run's next one (so the pair joins it).
    #[inline]
    fn continues_run(&self, value: u64) -> bool {
        self.runs.last().is_some_and(|r| {
            let step = (self.len - r.at) as u64; // ≥ 1: the run holds pair `r.at`
            r.value.checked_add(step) == Some(value)
        })
    }

    /// [`Self::push`] of any pair (out of line: the common case inlined stays small).
    #[inline(never)]
    fn push_other(&mut self, offset: i64, value: u64) {
        match &mut self.offsets {
            Some(offsets) => offsets.push(offset),
            None if self.len == 0 => self.first = offset,
            None => {
                if self.next_offset() != Some(offset) {
                    let mut offsets: Vec<i64> = (0..self.len).map(|i| self.offset(i)).collect();
                    offsets.push(offset);
                    self.offsets = Some(offsets);
                }
            }
        }
        if !self.continues_run(value) {
            self.runs.push(Run { at: self.len, value });
        }
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the offsets run contiguously (each one above the previous).
    pub fn contiguous(&self) -> bool {
        self.offsets.is_none()
    }

    /// Runs of values kept (each 16 bytes): what the pairs cost.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Offset of record `i`, without looking its value up.
    pub fn offset_at(&self, i: usize) -> Option<i64> {
        (i < self.len).then(|| self.offset(i))
    }

    /// Offset of record `i` (`i < len`).
    fn offset(&self, i: usize) -> i64 {
        match &self.offsets {
            Some(offsets) => offsets[i],
            None => self.first + i as i64, // < first + len, checked in `push`
        }
    }

    /// Value of record `i` (`i < len`): a binary search over the runs.
    fn value(&self, i: usize) -> u64 {
        self.value_in(i, self.runs.partition_point(|r| r.at <= i) - 1)
    }

    /// Value of record `i`, which run `k` holds.
    fn value_in(&self, i: usize, k: usize) -> u64 {
        let r = self.runs[k];
        r.value + (i - r.at) as u64 // within the run: `push` checked the sum
    }

    /// Record `i`, looked up from run `*hint` (the run the previous lookup ended in): O(1) for
    /// lookups that walk forward, as a partition's acknowledged offsets do.
    pub fn get_near(&self, i: usize, hint: &mut usize) -> Option<(i64, u64)> {
        if i >= self.len {
            return None;
        }
        let holds = |k: usize| {
            self.runs.get(k).is_some_and(|r| r.at <= i)
                && self.runs.get(k + 1).is_none_or(|n| i < n.at)
        };
        if !holds(*hint) {
            *hint = if holds(*hint + 1) {
                *hint + 1
            } else {
                self.runs.partition_point(|r| r.at <= i) - 1
            };
        }
        Some((self.offset(i), self.value_in(i, *hint)))
    }

    /// Whether the records hold `n` pairs that both rise by one from `(offset, value)`,
    /// contiguously: a walk over the runs that span them, from run `*hint` (left where the walk
    /// ended, as [`SeenRecords::get_near`] leaves it). `false` once the offsets do not run
    /// contiguously, whatever the records: the caller then looks pair by pair.
    pub fn holds_span(&self, offset: i64, value: u64, n: u64, hint: &mut usize) -> bool {
        if self.offsets.is_some() {
            return false;
        }
        if n == 0 {
            return true;
        }
        let i = i128::from(offset) - i128::from(self.first);
        if i < 0 || i + i128::from(n) > self.len as i128 {
            return false;
        }
        let (start, end) = (i as usize, (i + i128::from(n)) as usize);
        if self.get_near(start, hint).map(|p| p.1) != Some(value) {
            return false;
        }
        // Pair `start` holds `value`; each run after its run, up to `end`, must go on where the
        // one before stopped.
        let mut k = *hint;
        loop {
            let run_end = self.runs.get(k + 1).map_or(self.len, |r| r.at);
            if run_end >= end {
                *hint = k;
                return true;
            }
            k += 1;
            if self.runs[k].value != value.wrapping_add((run_end - start) as u64) {
                *hint = k;
                return false;
            }
        }
    }

    pub fn get(&self, i: usize) -> Option<(i64, u64)> {
        (i < self.len).then(|| (self.offset(i), self.value(i)))
    }

    pub fn first(&self) -> Option<(i64, u64)> {
        self.get(0)
    }

    pub fn last(&self) -> Option<(i64, u64)> {
        self.get(self.len.checked_sub(1)?)
    }

    /// The values, in arrival order.
    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs.iter().enumerate().flat_map(move |(k, r)| {
            let end = self.runs.get(k + 1).map_or(self.len, |n| n.at);
            (0..(end - r.at) as u64).map(move |d| r.value + d)
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, u64)> + '_ {
        self.values().enumerate().map(|(i, v)| (self.offset(i), v))
    }

    /// The pairs as spans `(offset, value, n)`: `n` pairs whose offsets and values both rise by
    /// one from `(offset, value)`. While the offsets run contiguously a span is a run of values;
    /// once they do not, every pair is a span of one.
    pub fn spans(&self) -> impl Iterator<Item = (i64, u64, usize)> + '_ {
        let by_run = self.offsets.is_none().then(|| {
            self.runs.iter().enumerate().map(move |(k, r)| {
                let end = self.runs.get(k + 1).map_or(self.len, |n| n.at);
                (self.offset(r.at), r.value, end - r.at)
            })
        });
        let by_pair = self.offsets.is_some().then(|| self.iter().map(|(o, v)| (o, v, 1)));
        by_run.into_iter().flatten().chain(by_pair.into_iter().flatten())
    }

    /// The lowest and highest offset held, `None` if none is: O(1) while the offsets run
    /// contiguously.
    pub fn offset_bounds(&self) -> Option<(i64, i64)> {
        let last = self.len.checked_sub(1)?;
        match &self.offsets {
            None => Some((self.first, self.offset(last))),
            Some(offsets) => Some((*offsets.iter().min()?, *offsets.iter().max()?)),
        }
    }

    /// The first record at or after position `i` whose offset is ≥ `offset`, for offsets that
    /// rise: a binary search (O(1) when contiguous).
    pub fn partition_point(&self, offset: i64) -> usize {
        match &self.offsets {
            Some(offsets) => offsets.partition_point(|&o| o < offset),
            None => {
                (i128::from(offset) - i128::from(self.first)).clamp(0, self.len as i128) as usize
            }
        }
    }

    /// Drops the growth slack (a run keeps every poll).
    pub fn shrink_to_fit(&mut self) {
        self.runs.shrink_to_fit();
        if let Some(o) = &mut self.offsets {
            o.shrink_to_fit();
        }
    }
}

impl FromIterator<(i64, u64)> for SeenRecords {
    fn from_iter<I: IntoIterator<Item = (i64, u64)>>(iter: I) -> Self {
        let mut s = SeenRecords::new();
        for (o, v) in iter {
            s.push(o, v);
        }
        s
    }
}

impl From<Vec<(i64, u64)>> for SeenRecords {
    fn from(pairs: Vec<(i64, u64)>) -> Self {
        let mut s = SeenRecords::new();
        for (o, v) in pairs {
            s.push(o, v);
        }
        s
    }
}

impl std::fmt::Debug for SeenRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the offsets and values, the pairs read back are the pairs pushed (by `iter`,
        /// `values` and `get`), the offsets are kept as their first exactly while they run
        /// contiguously, and the values as one run per break in a rise by one.
        #[test]
        fn reads_back_what_was_pushed(
            start in prop_oneof![Just(i64::MAX - 3), Just(-2i64), 0i64..1_000],
            steps in proptest::collection::vec(prop_oneof![4 => Just(1i64), 1 => -3i64..5], 0..40),
            v0 in prop_oneof![Just(u64::MAX - 2), 0u64..100],
            jumps in proptest::collection::vec(prop_oneof![4 => Just(1u64), 1 => 0u64..9], 40),
        ) {
            let mut pairs = Vec::new();
            let (mut o, mut v) = (start, v0);
            for (s, j) in steps.iter().zip(&jumps) {
                pairs.push((o, v));
                o = o.saturating_add(*s);
                v = v.wrapping_add(*j);
            }
            let seen = SeenRecords::from(pairs.clone());
            prop_assert_eq!(seen.iter().collect::<Vec<_>>(), pairs.clone());
            prop_assert_eq!(seen.values().collect::<Vec<_>>(), pairs.iter().map(|p| p.1).collect::<Vec<_>>());
            let mut hint = 0;
            for (i, p) in pairs.iter().enumerate() {
                prop_assert_eq!(seen.get(i), Some(*p));
                prop_assert_eq!(seen.get_near(i, &mut hint), Some(*p));
            }
            // Every span that starts at a pair (its value, or one off), against the pairs.
            let mut held = 0;
            for (i, &(o, v)) in pairs.iter().enumerate() {
                for (dv, n) in [(0, 1), (0, 2), (0, 5), (0, 40), (1, 1), (0, (pairs.len() - i) as u64)] {
                    let v = v.wrapping_add(dv);
                    let want = seen.contiguous() && (0..n).all(|k| {
                        pairs.get(i + k as usize) == Some(&(o.wrapping_add(k as i64), v.wrapping_add(k)))
                    });
                    let mut hint = i % 3;
                    prop_assert_eq!(seen.holds_span(o, v, n, &mut hint), want, "{} {} {}", o, v, n);
                    held += usize::from(want);
                }
            }
            prop_assert!(pairs.is_empty() || !seen.contiguous() || held > 0);
            for (k, i) in [pairs.len() / 2, 0, pairs.len().saturating_sub(1), 1].into_iter().enumerate() {
                let mut hint = k * 3;
                prop_assert_eq!(seen.get_near(i, &mut hint), pairs.get(i).copied());
            }
            prop_assert_eq!(seen.get(pairs.len()), None);
            let spans: Vec<_> = seen.spans().collect();
            prop_assert!(spans.iter().all(|s| s.2 >= 1));
            let expanded: Vec<(i64, u64)> = spans
                .iter()
                .flat_map(|&(o, v, n)| (0..n).map(move |d| (o + d as i64, v + d as u64)))
                .collect();
            prop_assert_eq!(expanded, pairs.clone());
            if seen.contiguous() {
                prop_assert_eq!(spans.len(), seen.runs(), "a span per run of values");
            }
            let bounds = pairs.iter().map(|p| p.0).min().zip(pairs.iter().map(|p| p.0).max());
            prop_assert_eq!(seen.offset_bounds(), bounds);
            prop_assert_eq!(seen.len(), pairs.len());
            prop_assert_eq!(seen.first(), pairs.first().copied());
            prop_assert_eq!(seen.last(), pairs.last().copied());
            let run = pairs.windows(2).all(|w| w[0].0.checked_add(1) == Some(w[1].0));
            prop_assert_eq!(seen.contiguous(), run);
            let breaks = pairs.windows(2).filter(|w| w[0].1.checked_add(1) != Some(w[1].1)).count();
            prop_assert_eq!(seen.runs(), if pairs.is_empty() { 0 } else { breaks + 1 });
            if pairs.windows(2).all(|w| w[0].0 < w[1].0) {
                for probe in [start.saturating_sub(1), start, start.saturating_add(2), o, o.saturating_add(1)] {
                    let want = pairs.partition_point(|p| p.0 < probe);
                    prop_assert_eq!(seen.partition_point(probe), want);
                }
            }
        }
    }

    /// A batch of one producer's records costs one run, however long: what makes a poll or a
    /// final log of millions of records small.
    #[test]
    fn consecutive_values_cost_one_run() {
        let mut seen = SeenRecords::new();
        for i in 0..100_000u64 {
            seen.push(500 + i as i64, (3 << 40) | (7 + i));
        }
        seen.push(100_500, 1 << 40);
        assert_eq!((seen.len(), seen.runs()), (100_001, 2));
        assert_eq!(seen.get(99_999), Some((100_499, (3 << 40) | 100_006)));
        assert_eq!(seen.last(), Some((100_500, 1 << 40)));
    }
}
