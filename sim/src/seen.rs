//! Records as a consumer or the oracle saw them: (offset, value) pairs in the order they came,
//! stored as the values alone while the offsets run contiguously — every poll and final log of an
//! uncompacted run, 8 bytes a record instead of 16 (a bench run keeps 6M of each) — and as both
//! once they do not (compaction, a broker that answers out of order).

/// (offset, value) pairs in arrival order. `first` is the first offset while `offsets` is `None`
/// (then pair `i` is `(first + i, values[i])`); once an offset breaks the run, `offsets` holds
/// every offset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SeenRecords {
    first: i64,
    values: Vec<u64>,
    offsets: Option<Vec<i64>>,
}

impl SeenRecords {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `n` records (assumed contiguous: the common case).
    pub fn with_capacity(n: usize) -> Self {
        SeenRecords { first: 0, values: Vec::with_capacity(n), offsets: None }
    }

    pub fn push(&mut self, offset: i64, value: u64) {
        match &mut self.offsets {
            Some(offsets) => offsets.push(offset),
            None if self.values.is_empty() => self.first = offset,
            None => {
                let next =
                    i64::try_from(self.values.len()).ok().and_then(|n| self.first.checked_add(n));
                if next != Some(offset) {
                    let mut offsets: Vec<i64> =
                        (0..self.values.len()).map(|i| self.offset(i)).collect();
                    offsets.push(offset);
                    self.offsets = Some(offsets);
                }
            }
        }
        self.values.push(value);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether the offsets run contiguously (each one above the previous).
    pub fn contiguous(&self) -> bool {
        self.offsets.is_none()
    }

    /// Offset of record `i` (`i < len`).
    fn offset(&self, i: usize) -> i64 {
        match &self.offsets {
            Some(offsets) => offsets[i],
            None => self.first + i as i64, // < first + len, checked in `push`
        }
    }

    pub fn get(&self, i: usize) -> Option<(i64, u64)> {
        let value = *self.values.get(i)?;
        Some((self.offset(i), value))
    }

    pub fn first(&self) -> Option<(i64, u64)> {
        self.get(0)
    }

    pub fn last(&self) -> Option<(i64, u64)> {
        self.get(self.len().checked_sub(1)?)
    }

    /// The values, in arrival order.
    pub fn values(&self) -> &[u64] {
        &self.values
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (i64, u64)> + ExactSizeIterator + '_ {
        (0..self.len()).map(|i| (self.offset(i), self.values[i]))
    }

    /// The first record at or after position `i` whose offset is ≥ `offset`, for offsets that
    /// rise: a binary search (O(1) when contiguous).
    pub fn partition_point(&self, offset: i64) -> usize {
        match &self.offsets {
            Some(offsets) => offsets.partition_point(|&o| o < offset),
            None => {
                (i128::from(offset) - i128::from(self.first)).clamp(0, self.len() as i128) as usize
            }
        }
    }

    /// Drops the growth slack (a run keeps every poll).
    pub fn shrink_to_fit(&mut self) {
        self.values.shrink_to_fit();
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
        let mut s = SeenRecords::with_capacity(pairs.len());
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
        /// Whatever the offsets, the pairs read back are the pairs pushed, and the compact form is
        /// kept exactly while they run contiguously.
        #[test]
        fn reads_back_what_was_pushed(
            start in prop_oneof![Just(i64::MAX - 3), Just(-2i64), 0i64..1_000],
            steps in proptest::collection::vec(prop_oneof![4 => Just(1i64), 1 => -3i64..5], 0..40),
        ) {
            let mut pairs = Vec::new();
            let mut o = start;
            for (i, s) in steps.iter().enumerate() {
                pairs.push((o, i as u64 * 7));
                o = o.saturating_add(*s);
            }
            let seen = SeenRecords::from(pairs.clone());
            prop_assert_eq!(seen.iter().collect::<Vec<_>>(), pairs.clone());
            prop_assert_eq!(seen.len(), pairs.len());
            prop_assert_eq!(seen.first(), pairs.first().copied());
            prop_assert_eq!(seen.last(), pairs.last().copied());
            let run = pairs.windows(2).all(|w| w[0].0.checked_add(1) == Some(w[1].0));
            prop_assert_eq!(seen.contiguous(), run);
            if pairs.windows(2).all(|w| w[0].0 < w[1].0) {
                for probe in [start.saturating_sub(1), start, start.saturating_add(2), o, o.saturating_add(1)] {
                    let want = pairs.partition_point(|p| p.0 < probe);
                    prop_assert_eq!(seen.partition_point(probe), want);
                }
            }
        }
    }
}
