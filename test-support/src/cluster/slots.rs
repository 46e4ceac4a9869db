//! Which master serves each of a cluster's hash slots: the map the tests of failover and
//! resharding compare before and after, nodes named by their index in the
//! [`RedisCluster`](super::RedisCluster).

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: usize = 16384;

/// A contiguous range of slots and the nodes serving it, nodes named by their index in
/// the [`RedisCluster`](super::RedisCluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    /// The first slot.
    pub start: u16,
    /// The last slot, included.
    pub end: u16,
    pub master: usize,
    /// Its replicas the cluster does not count as failed.
    pub replicas: Vec<usize>,
}

/// Which master serves each slot, as ranges sorted by their first slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    pub ranges: Vec<SlotRange>,
}

impl SlotMap {
    /// The master that serves `slot`; panics if none does.
    #[must_use]
    pub fn master_of_slot(&self, slot: u16) -> usize {
        self.ranges
            .iter()
            .find(|range| (range.start..=range.end).contains(&slot))
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {self:?}"))
            .master
    }

    /// The slots `master` serves, in order.
    #[must_use]
    pub fn slots_of(&self, master: usize) -> Vec<u16> {
        self.ranges
            .iter()
            .filter(|range| range.master == master)
            .flat_map(|range| range.start..=range.end)
            .collect()
    }

    /// The masters that serve at least one slot, in order.
    #[must_use]
    pub fn masters(&self) -> Vec<usize> {
        let mut masters: Vec<usize> = self.ranges.iter().map(|range| range.master).collect();
        masters.sort_unstable();
        masters.dedup();
        masters
    }

    /// The replicas of `master`, in order.
    #[must_use]
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        self.ranges
            .iter()
            .find(|range| range.master == master)
            .map(|range| range.replicas.clone())
            .unwrap_or_default()
    }

    /// How many slots some master serves.
    #[must_use]
    pub fn covered(&self) -> usize {
        self.ranges
            .iter()
            .map(|range| usize::from(range.end - range.start) + 1)
            .sum()
    }
}
