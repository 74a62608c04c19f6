//! Fleet-wide knowledge: which endpoints and origins other identities use.
//!
//! A value many identities share (a NAT gateway, an endpoint every SDK calls) is less surprising
//! when one more identity starts using it than a value nobody has ever used. The tables are keyed
//! by the same hashes as the profiles and hold the label only for evidence. They are bounded by
//! `baseline.fleet_max_values`: when full, the least recently used tenth is forgotten, in an
//! order that depends only on the data, so replays stay deterministic.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;

/// What the fleet knows about one value.
#[derive(Debug, Clone)]
pub struct FleetValue {
    /// Number of identities that have started using the value.
    pub users: u32,
    pub last_hour: u32,
    pub label: Box<str>,
    /// Index of the sensitivity tier (endpoints only), resolved once per distinct endpoint.
    pub tier: Option<u8>,
}

#[derive(Debug)]
pub struct Fleet {
    endpoints: DashMap<u64, FleetValue, FxBuildHasher>,
    origins: DashMap<u64, FleetValue, FxBuildHasher>,
    max_values: usize,
    pub evicted: AtomicUsize,
    /// Event time of the earliest event the fleet has seen.
    first_ms: AtomicI64,
    /// When tracked (the service): the users each owner (input partition) contributed to each
    /// value, saved and restored with the partition's identities so a value's users survive
    /// restarts and partition moves, and those changed since they were last saved.
    contributions: DashMap<(Table, u64, u32), u32, FxBuildHasher>,
    changed: Mutex<HashSet<(Table, u64, u32)>>,
    track: AtomicBool,
    /// Users of each value among the partitions other instances of the group own, as their
    /// published contributions say ([`crate::state::group::GroupView`]).
    remote: DashMap<(Table, u64), u32, FxBuildHasher>,
    /// The sums of the hot identities' [`super::MatureHours`]: the fleet's rate of activity at
    /// cold hours of day, the prior of each identity's own (the unusual-hour judgement). The
    /// engine keeps them equal to the sums over the identities it holds, so restored state
    /// restores them too.
    rhythm_active: AtomicI64,
    rhythm_cold: AtomicI64,
}

/// What one owner contributed to one value, as saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub table: Table,
    pub hash: u64,
    pub owner: u32,
    pub users: u32,
    pub last_hour: u32,
    pub label: String,
}

/// Which table a value lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Endpoints,
    Origins,
}

impl Fleet {
    pub fn new(max_values: usize) -> Fleet {
        Fleet {
            endpoints: DashMap::with_hasher(FxBuildHasher),
            origins: DashMap::with_hasher(FxBuildHasher),
            max_values,
            evicted: AtomicUsize::new(0),
            first_ms: AtomicI64::new(i64::MAX),
            contributions: DashMap::with_hasher(FxBuildHasher),
            changed: Mutex::new(HashSet::new()),
            track: AtomicBool::new(false),
            remote: DashMap::with_hasher(FxBuildHasher),
            rhythm_active: AtomicI64::new(0),
            rhythm_cold: AtomicI64::new(0),
        }
    }

    /// Adds to the fleet's mature active hours and those at cold hours of day (negative when
    /// identities leave).
    pub fn adjust_active_hours(&self, active: i64, cold: i64) {
        self.rhythm_active.fetch_add(active, Ordering::Relaxed);
        self.rhythm_cold.fetch_add(cold, Ordering::Relaxed);
    }

    /// The hot identities' mature active hours, and those at cold hours of day.
    pub fn active_hours(&self) -> (u64, u64) {
        let active = self.rhythm_active.load(Ordering::Relaxed).max(0) as u64;
        let cold = self.rhythm_cold.load(Ordering::Relaxed).max(0) as u64;
        (active, cold.min(active))
    }

    /// Changes the users other instances report for a value by `delta`.
    pub fn add_remote(&self, t: Table, hash: u64, delta: i64) {
        let users = {
            let mut e = self.remote.entry((t, hash)).or_insert(0);
            *e = (i64::from(*e) + delta).clamp(0, i64::from(u32::MAX)) as u32;
            *e
        };
        if users == 0 {
            // Nobody elsewhere uses it any more: the entry goes (the table stays bounded).
            self.remote.remove_if(&(t, hash), |_, v| *v == 0);
        }
    }

    /// Forgets what `owner` (a partition handed to another instance) contributed: the new owner
    /// publishes it, and it comes back as remote users.
    pub fn remove_owner(&self, owner: u32) {
        let mut gone = Vec::new();
        self.contributions.retain(|&(t, h, o), users| {
            if o == owner {
                gone.push((t, h, *users));
            }
            o != owner
        });
        for (t, h, users) in gone {
            if let Some(mut v) = self.table(t).get_mut(&h) {
                v.users = v.users.saturating_sub(users);
            }
        }
        self.changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(_, _, o)| *o != owner);
    }

    /// Keeps per-owner contributions ([`Fleet::contribute`]) from now on.
    pub fn track_contributions(&self, on: bool) {
        self.track.store(on, Ordering::Relaxed);
    }

    /// Records that an identity of `owner` started using a value (after [`Fleet::adopt`]).
    pub fn contribute(&self, t: Table, hash: u64, owner: u32) {
        if !self.track.load(Ordering::Relaxed) {
            return;
        }
        *self.contributions.entry((t, hash, owner)).or_insert(0) += 1;
        self.changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((t, hash, owner));
    }

    /// The contributions of `owners` (all when `None`) changed since the last call, with the
    /// values' labels; the others stay for a later call.
    pub fn drain_contributions(&self, owners: Option<&[u32]>) -> Vec<Contribution> {
        let mut changed = self.changed.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        changed.retain(|&(t, hash, owner)| {
            if owners.is_some_and(|o| !o.contains(&owner)) {
                return true;
            }
            let users = self.contributions.get(&(t, hash, owner)).map_or(0, |c| *c);
            if let Some(v) = self.table(t).get(&hash) {
                out.push(Contribution {
                    table: t,
                    hash,
                    owner,
                    users,
                    last_hour: v.last_hour,
                    label: v.label.to_string(),
                });
            }
            false
        });
        out.sort_unstable_by_key(|c| (c.table, c.hash, c.owner));
        out
    }

    /// Restores one owner's contribution to a value: the value's users change by the
    /// difference with what that owner contributed before (nothing, on a first restore).
    pub fn restore_contribution(&self, c: Contribution, tier: Option<u8>) {
        let before = self
            .contributions
            .insert((c.table, c.hash, c.owner), c.users)
            .unwrap_or(0);
        let map = self.table(c.table);
        let mut v = map.entry(c.hash).or_insert_with(|| FleetValue {
            users: 0,
            last_hour: c.last_hour,
            label: c.label.into_boxed_str(),
            tier,
        });
        v.users = v.users.saturating_add(c.users).saturating_sub(before);
        v.last_hour = v.last_hour.max(c.last_hour);
    }

    /// Records an event time; returns how long (ms) the fleet has been observed by then.
    ///
    /// Fleet rarity means nothing while the fleet itself is new: on the first day of a
    /// deployment every endpoint is "called by nobody else".
    pub fn observe_time(&self, t: i64) -> i64 {
        let first = self.first_ms.fetch_min(t, Ordering::Relaxed).min(t);
        t - first
    }

    fn table(&self, t: Table) -> &DashMap<u64, FleetValue, FxBuildHasher> {
        match t {
            Table::Endpoints => &self.endpoints,
            Table::Origins => &self.origins,
        }
    }

    /// Number of identities already using `hash` (0 when unknown): those of this instance's
    /// partitions, and those the rest of the group reports.
    pub fn users(&self, t: Table, hash: u64) -> u32 {
        let local = self.table(t).get(&hash).map_or(0, |v| v.users);
        let remote = self.remote.get(&(t, hash)).map_or(0, |v| *v);
        local.saturating_add(remote)
    }

    /// Records that one more identity started using a value; returns its sensitivity tier.
    /// `label` and `tier` are computed only when the fleet has never seen the value.
    pub fn adopt(
        &self,
        t: Table,
        hash: u64,
        hour: u32,
        label: impl FnOnce() -> String,
        tier: impl FnOnce() -> Option<u8>,
    ) -> Option<u8> {
        let map = self.table(t);
        let result = {
            let mut v = map.entry(hash).or_insert_with(|| FleetValue {
                users: 0,
                last_hour: hour,
                label: label().into_boxed_str(),
                tier: tier(),
            });
            v.users = v.users.saturating_add(1);
            v.last_hour = v.last_hour.max(hour);
            v.tier
        };
        if map.len() > self.max_values {
            self.evict(map);
        }
        result
    }

    /// Label of a known value.
    pub fn label(&self, t: Table, hash: u64) -> Option<String> {
        self.table(t).get(&hash).map(|v| v.label.to_string())
    }

    /// Sensitivity tier of a known endpoint.
    pub fn tier(&self, hash: u64) -> Option<u8> {
        self.endpoints.get(&hash).and_then(|v| v.tier)
    }

    fn evict(&self, map: &DashMap<u64, FleetValue, FxBuildHasher>) {
        let mut all: Vec<(u32, u32, u64)> = map
            .iter()
            .map(|e| (e.last_hour, e.users, *e.key()))
            .collect();
        all.sort_unstable();
        let n = all.len() / 10 + 1;
        let gone: HashSet<u64> = all.into_iter().take(n).map(|(_, _, k)| k).collect();
        for k in &gone {
            map.remove(k);
        }
        if self.track.load(Ordering::Relaxed) {
            self.contributions.retain(|(_, h, _), _| !gone.contains(h));
        }
        self.evicted.fetch_add(n, Ordering::Relaxed);
    }

    /// Every value of a table, ordered by hash, so the same tables always snapshot the same.
    pub fn values(&self, t: Table) -> Vec<(u64, FleetValue)> {
        let mut v: Vec<(u64, FleetValue)> = self
            .table(t)
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        v.sort_unstable_by_key(|(h, _)| *h);
        v
    }

    /// Event time of the earliest event seen (`i64::MAX` before any).
    pub fn first_ms(&self) -> i64 {
        self.first_ms.load(Ordering::Relaxed)
    }

    /// Replaces a table's values and the earliest event time with restored ones.
    pub fn restore(
        &self,
        t: Table,
        values: impl IntoIterator<Item = (u64, FleetValue)>,
        first_ms: i64,
    ) {
        let map = self.table(t);
        map.clear();
        for (h, v) in values {
            map.insert(h, v);
        }
        self.first_ms.store(first_ms, Ordering::Relaxed);
    }

    /// Distinct values tracked (endpoints, origins).
    pub fn sizes(&self) -> (usize, usize) {
        (self.endpoints.len(), self.origins.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adoption_counts_identities_and_eviction_keeps_the_table_bounded() {
        let f = Fleet::new(1000);
        assert_eq!(f.users(Table::Origins, 7), 0);
        f.adopt(Table::Origins, 7, 10, || "nat".into(), || None);
        f.adopt(
            Table::Origins,
            7,
            11,
            || unreachable!("label computed once"),
            || None,
        );
        assert_eq!(f.users(Table::Origins, 7), 2);
        for i in 0..5000u64 {
            f.adopt(
                Table::Origins,
                100 + i,
                20 + i as u32,
                || format!("v{i}"),
                || None,
            );
        }
        assert!(f.sizes().1 <= 1000);
        assert!(f.evicted.load(Ordering::Relaxed) > 0);
        assert!(f.users(Table::Origins, 5099) > 0, "recent values survive");
    }
}
