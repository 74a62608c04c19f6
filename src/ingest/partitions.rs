//! The bookkeeping of the input partitions assigned to this instance, and the rebuild protocol,
//! as pure code: it takes offsets, not a consumer, so it is unit-tested without a broker
//! (`ingest::kafka` feeds it what the consumer and the brokers report).
//!
//! On assignment, a partition with a committed offset `k` is read from a rebuild start before `k`
//! ([`RebuildPolicy`]): records before `k` only rebuild the baselines of its identities (their
//! outputs were emitted before), records from `k` on are live. A partition with nothing
//! committed is live from its first record. Each partition carries an *owner* tag that its
//! identities are recorded under, so its state can be dropped when the partition is revoked;
//! a partition assigned again keeps its tag.
//!
//! [`EventClocks`] keeps each partition's event time, for the dormancy lifecycle's watermark.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Each stateful input partition's newest event time, and when (wall clock) it last delivered
/// an event. The dormancy lifecycle's watermark is the slowest *active* partition's event time:
/// a partition read ahead of the others (a backlog being caught up elsewhere, events re-keyed
/// from input partitions read at different paces) must not make identities of the others look
/// idle, and a partition with nothing to deliver for longer than the idle grace must not hold
/// every identity's lifecycle back (the idle tick takes over when all are quiet).
#[derive(Debug, Default)]
pub struct EventClocks {
    clocks: HashMap<(Arc<str>, i32), (i64, Instant)>,
}

impl EventClocks {
    /// A record of `topic`/`partition` delivered events up to `event_ms`, received `at`.
    pub fn observe(&mut self, topic: &Arc<str>, partition: i32, event_ms: i64, at: Instant) {
        let e = self
            .clocks
            .entry((topic.clone(), partition))
            .or_insert((event_ms, at));
        e.0 = e.0.max(event_ms);
        e.1 = e.1.max(at);
    }

    /// Keeps only the partitions `assigned` says are still this instance's.
    pub fn retain(&mut self, assigned: impl Fn(&str, i32) -> bool) {
        self.clocks.retain(|(t, p), _| assigned(t, *p));
    }

    /// The least newest-event time over the partitions that delivered an event within `grace`
    /// before `now`; `None` when none did.
    pub fn watermark(&self, now: Instant, grace: Duration) -> Option<i64> {
        self.clocks
            .values()
            .filter(|(_, at)| now.saturating_duration_since(*at) <= grace)
            .map(|(ms, _)| *ms)
            .min()
    }
}

/// Where consumption of a newly assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Where the consumer starts by itself: the committed offset, or `auto.offset.reset`.
    Committed,
    Beginning,
    Offset(i64),
}

/// What to ask the brokers to find where a partition's rebuild starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The start of the partition's log.
    Beginning,
    /// The first offset at or after this time (ms since the epoch).
    Time(i64),
}

/// What the brokers answered to a [`Lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Offset(i64),
    Beginning,
    /// Nothing at or after the time: the partition has no history within the horizon.
    Nothing,
}

/// How much history a newly assigned partition rebuilds baselines from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildPolicy {
    /// `None`: the whole log; `Some(0)`: none; otherwise this much wall-clock time before now.
    pub horizon: Option<Duration>,
}

impl RebuildPolicy {
    /// What to look up for a partition committed at `committed` (`None` or `Some(0)` when
    /// nothing is committed), at wall time `now_ms`; `None` when it needs no rebuild.
    pub fn lookup(&self, committed: Option<i64>, now_ms: i64) -> Option<Lookup> {
        committed.filter(|k| *k > 0)?;
        match self.horizon {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(Lookup::Time(
                now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            )),
            None => Some(Lookup::Beginning),
        }
    }
}

/// Where a partition committed at `committed` starts, given what its rebuild lookup found: never
/// after the committed offset, so no record is skipped.
pub fn rebuild_start(committed: i64, found: Found) -> Start {
    match found {
        Found::Offset(s) if s < committed => Start::Offset(s),
        Found::Beginning => Start::Beginning,
        _ => Start::Offset(committed),
    }
}

/// What is known about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Owner tag of the partition's identities in the engine.
    pub owner: u32,
    /// Records before this offset only rebuild baselines; from it on, outputs are emitted.
    pub live_from: i64,
    pub assigned: bool,
    /// Still reading history before `live_from`.
    pub rebuilding: bool,
    /// The table's generation when it was last assigned: a record received before it (still in
    /// the decode pool) belongs to an earlier assignment.
    pub assigned_at: u64,
}

impl PartitionInfo {
    /// True when the record at `offset` is live (its outputs are emitted).
    pub fn is_live(&self, offset: i64) -> bool {
        offset >= self.live_from
    }

    /// True when the record at `offset` is the last one of the rebuild.
    pub fn rebuild_ends_at(&self, offset: i64) -> bool {
        self.rebuilding && offset >= self.live_from - 1
    }
}

/// Every partition this instance has been assigned, by topic and partition.
#[derive(Debug, Default)]
pub struct PartitionTable {
    map: HashMap<(String, i32), PartitionInfo>,
    next_owner: u32,
    /// Bumped on every change, so readers can keep a copy and refresh it only when it moved.
    generation: u64,
}

impl PartitionTable {
    /// The owner tag of a partition: the one it had, or a new one (the partition stays
    /// unassigned until [`PartitionTable::assign`]). Restored state is tagged before assignment.
    pub fn owner(&mut self, topic: &str, partition: i32) -> u32 {
        let next = &mut self.next_owner;
        self.map
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| {
                *next += 1;
                PartitionInfo {
                    owner: *next,
                    live_from: 0,
                    assigned: false,
                    rebuilding: false,
                    assigned_at: 0,
                }
            })
            .owner
    }

    /// Records an assignment starting at `start`, live from `live_from`; a partition assigned
    /// before keeps its owner tag.
    pub fn assign(&mut self, topic: &str, partition: i32, start: Start, live_from: i64) {
        let rebuilding = match start {
            Start::Offset(s) => s < live_from,
            Start::Beginning => live_from > 0,
            Start::Committed => false,
        };
        let owner = self.owner(topic, partition);
        self.generation += 1;
        self.map.insert(
            (topic.to_owned(), partition),
            PartitionInfo {
                owner,
                live_from,
                assigned: true,
                rebuilding,
                assigned_at: self.generation,
            },
        );
    }

    /// Every partition with an owner tag (assigned now or before): topic, partition, tag.
    pub fn known(&self) -> impl Iterator<Item = (&str, i32, u32)> {
        self.map.iter().map(|((t, p), i)| (t.as_str(), *p, i.owner))
    }

    /// The topic and partition an owner tag stands for.
    pub fn partition_of(&self, owner: u32) -> Option<(&str, i32)> {
        self.map
            .iter()
            .find(|(_, i)| i.owner == owner)
            .map(|((t, p), _)| (t.as_str(), *p))
    }

    /// Marks a partition's rebuild done; returns its info when it was rebuilding.
    pub fn rebuilt(&mut self, topic: &str, partition: i32) -> Option<PartitionInfo> {
        let info = self.map.get_mut(&(topic.to_owned(), partition))?;
        let was = info.rebuilding.then_some(*info);
        info.rebuilding = false;
        self.generation += 1;
        was
    }

    /// Marks a partition revoked; returns the owner tag of its identities (whose state must go)
    /// when the partition is known. Revoking twice returns the tag again: dropping state twice is
    /// harmless, keeping what a late record added is not.
    pub fn revoke(&mut self, topic: &str, partition: i32) -> Option<u32> {
        let info = self.map.get_mut(&(topic.to_owned(), partition))?;
        info.assigned = false;
        self.generation += 1;
        Some(info.owner)
    }

    /// The assigned partitions.
    pub fn assigned(&self) -> impl Iterator<Item = (&str, i32, PartitionInfo)> {
        self.map
            .iter()
            .filter(|(_, i)| i.assigned)
            .map(|((t, p), i)| (t.as_str(), *p, *i))
    }

    pub fn is_assigned(&self, topic: &str, partition: i32) -> bool {
        self.map
            .get(&(topic.to_owned(), partition))
            .is_some_and(|i| i.assigned)
    }

    /// Assigned partitions still rebuilding.
    pub fn rebuilding(&self) -> usize {
        self.assigned().filter(|(_, _, i)| i.rebuilding).count()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_watermark_is_the_slowest_active_partitions_event_time() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("in"), Arc::from("g.repartition"));
        let t0 = Instant::now();
        let grace = Duration::from_secs(900);
        let mut c = EventClocks::default();
        assert_eq!(c.watermark(t0, grace), None);
        c.observe(&a, 0, 5_000, t0);
        c.observe(&a, 1, 9_000, t0);
        c.observe(&b, 0, 7_000, t0);
        // A late record does not move a partition's clock back.
        c.observe(&a, 0, 1_000, t0);
        assert_eq!(c.watermark(t0, grace), Some(5_000));
        // Partition 0 goes quiet past the grace: it no longer holds the others back.
        let later = t0 + Duration::from_secs(1_000);
        c.observe(&a, 1, 12_000, later);
        c.observe(&b, 0, 11_000, later);
        assert_eq!(c.watermark(later, grace), Some(11_000));
        // A revoked partition is forgotten.
        c.retain(|t, _| t == "in");
        assert_eq!(c.watermark(later, grace), Some(12_000));
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_partition_with_nothing_committed_needs_no_rebuild_whatever_the_horizon() {
        for horizon in [None, Some(DAY), Some(Duration::ZERO)] {
            let p = RebuildPolicy { horizon };
            assert_eq!(p.lookup(None, 1_000_000_000), None);
            assert_eq!(p.lookup(Some(0), 1_000_000_000), None);
        }
    }

    #[test]
    fn the_horizon_decides_what_is_looked_up() {
        let now = 10 * 86_400_000;
        let days = RebuildPolicy { horizon: Some(DAY) };
        assert_eq!(
            days.lookup(Some(5), now),
            Some(Lookup::Time(now - 86_400_000))
        );
        let whole = RebuildPolicy { horizon: None };
        assert_eq!(whole.lookup(Some(5), now), Some(Lookup::Beginning));
        let none = RebuildPolicy {
            horizon: Some(Duration::ZERO),
        };
        assert_eq!(none.lookup(Some(5), now), None);
    }

    #[test]
    fn the_rebuild_never_starts_after_the_committed_offset() {
        assert_eq!(rebuild_start(100, Found::Offset(40)), Start::Offset(40));
        assert_eq!(rebuild_start(100, Found::Beginning), Start::Beginning);
        // Nothing newer than the horizon, or an answer past the commit: start at the commit.
        assert_eq!(rebuild_start(100, Found::Nothing), Start::Offset(100));
        assert_eq!(rebuild_start(100, Found::Offset(150)), Start::Offset(100));
    }

    #[test]
    fn records_before_the_committed_offset_rebuild_and_the_last_one_ends_the_rebuild() {
        let mut t = PartitionTable::default();
        t.assign("in", 0, Start::Offset(40), 100);
        t.assign("in", 1, Start::Committed, 0);
        t.assign("in", 2, Start::Offset(100), 100);
        assert_eq!(t.rebuilding(), 1, "only partition 0 has history to read");
        let info = t.assigned().find(|(_, p, _)| *p == 0).unwrap().2;
        assert!(!info.is_live(99) && info.is_live(100));
        assert!(!info.rebuild_ends_at(98) && info.rebuild_ends_at(99));
        assert!(t.rebuilt("in", 0).is_some());
        assert!(t.rebuilt("in", 0).is_none(), "reported once");
        assert_eq!(t.rebuilding(), 0);
    }

    #[test]
    fn a_reassigned_partition_keeps_its_owner_tag_and_only_known_partitions_are_revoked() {
        let mut t = PartitionTable::default();
        t.assign("in", 0, Start::Committed, 0);
        t.assign("in", 1, Start::Committed, 0);
        let owner0 = t.assigned().find(|(_, p, _)| *p == 0).unwrap().2.owner;
        let g = t.generation();
        assert_eq!(t.revoke("in", 0), Some(owner0));
        assert!(t.generation() > g, "readers see the change");
        assert_eq!(t.revoke("other", 0), None, "never assigned here");
        assert!(!t.is_assigned("in", 0) && t.is_assigned("in", 1));
        t.assign("in", 0, Start::Committed, 7);
        let again = t.assigned().find(|(_, p, _)| *p == 0).unwrap().2;
        assert_eq!(again.owner, owner0);
        assert_eq!(again.live_from, 7);
    }

    #[test]
    fn an_owner_tag_reserved_before_assignment_is_the_one_the_assignment_gets() {
        let mut t = PartitionTable::default();
        let reserved = t.owner("in", 4);
        assert!(!t.is_assigned("in", 4), "reserving does not assign");
        assert_eq!(
            t.owner("in", 4),
            reserved,
            "the same partition, the same tag"
        );
        assert_ne!(t.owner("other", 4), reserved);
        t.assign("in", 4, Start::Committed, 0);
        assert_eq!(t.assigned().next().unwrap().2.owner, reserved);
        assert_eq!(t.partition_of(reserved), Some(("in", 4)));
    }
}
