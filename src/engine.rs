//! The engine: baseline/detect and decide for one event at a time, for any number of identities.
//!
//! [`Engine::process`] is synchronous and takes `&self`: identities live in a `DashMap` sharded by
//! principal key, so several partitions can be processed concurrently as long as each identity is
//! owned by one partition (Kafka messages are keyed by identity). Replay calls it in event-time
//! order from one thread, which makes its output deterministic.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;

use crate::baseline::{DAY_MS, Fleet, Profile};
use crate::config::Rules;
use crate::decide::{
    self, DecideStats, Decision, Guardrails, IdentityContext, RiskState, Severity,
};
use crate::detect::{self, Detector};
use crate::event::AccessEvent;

/// Everything kept per identity.
#[derive(Debug, Clone)]
pub struct IdentityState {
    pub profile: Profile,
    pub risk: RiskState,
    /// The input partition that last delivered this identity's events ([`Engine::process_owned`]),
    /// so its state can be dropped when the partition is handed to another instance.
    pub owner: u32,
}

/// Owner of identities processed without a partition (replay).
pub const NO_OWNER: u32 = u32::MAX;

/// Running counters, readable at any time.
#[derive(Debug, Default)]
pub struct EngineCounters {
    pub events: AtomicU64,
    /// By detector, in [`Detector::ALL`] order.
    pub findings: [AtomicU64; Detector::COUNT],
    pub alerts_created: AtomicU64,
    pub alerts_updated: AtomicU64,
    /// By severity, in [`Severity::ALL`] order.
    pub alerts_by_severity: [AtomicU64; Severity::ALL.len()],
    pub commands: AtomicU64,
    pub merged: AtomicU64,
    pub withheld: AtomicU64,
    /// Identities forgotten after `baseline.forget_after_days` of silence.
    pub forgotten: AtomicU64,
    /// Identities dropped because their partition was handed to another instance.
    pub evicted: AtomicU64,
}

/// A count of the identities tracked ([`Engine::census`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub identities: usize,
    pub warming_up: usize,
    /// Approximate bytes of per-identity state (profiles and open alerts).
    pub state_bytes: usize,
}

pub struct Engine {
    rules: Rules,
    identities: DashMap<String, IdentityState, FxBuildHasher>,
    identity_count: AtomicUsize,
    fleet: Fleet,
    guard: Guardrails,
    /// Event-time day of the last sweep for long-silent identities.
    swept_day: AtomicI64,
    pub counters: EngineCounters,
}

impl Engine {
    pub fn new(rules: Rules) -> Engine {
        let fleet = Fleet::new(rules.model.baseline.fleet_max_values);
        Engine {
            rules,
            identities: DashMap::with_hasher(FxBuildHasher),
            identity_count: AtomicUsize::new(0),
            fleet,
            guard: Guardrails::new(),
            swept_day: AtomicI64::new(i64::MIN),
            counters: EngineCounters::default(),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Updates the event's identity and returns the alerts and commands it leads to.
    pub fn process(&self, ev: &AccessEvent) -> Vec<Decision> {
        self.process_owned(ev, NO_OWNER)
    }

    /// As [`Engine::process`], recording `owner` (an input partition) as the identity's owner.
    pub fn process_owned(&self, ev: &AccessEvent, owner: u32) -> Vec<Decision> {
        let c = &self.counters;
        c.events.fetch_add(1, Ordering::Relaxed);
        let m = &self.rules.model;
        self.sweep(ev.time_ms);
        let (mut state, is_new) = match self.identities.get_mut(ev.principal.as_str()) {
            Some(s) => (s, false),
            None => {
                let entry = self
                    .identities
                    .entry(ev.principal.clone())
                    .or_insert_with(|| {
                        self.identity_count.fetch_add(1, Ordering::Relaxed);
                        IdentityState {
                            profile: Profile::new(
                                ev.time_ms,
                                m.detectors.volume.prior_dispersion as f32,
                            ),
                            risk: RiskState::default(),
                            owner,
                        }
                    });
                (entry, true)
            }
        };
        let state = &mut *state;
        state.owner = owner;
        let findings = detect::observe(&mut state.profile, &self.fleet, &self.rules, ev, is_new);
        for f in &findings {
            c.findings[f.detector as usize].fetch_add(1, Ordering::Relaxed);
        }
        let p = &state.profile;
        let ctx = IdentityContext {
            maturity: p.maturity(m.warmup.min_active_hours, m.warmup.min_days),
            mature: p.is_mature(m.warmup.min_active_hours, m.warmup.min_days),
            events: p.events,
            first_seen_ms: p.first_seen_ms,
            fleet_size: self.identity_count.load(Ordering::Relaxed),
        };
        let mut stats = DecideStats::default();
        let decisions = decide::decide(
            &mut state.risk,
            findings,
            ev,
            &ctx,
            &self.rules,
            &self.guard,
            &mut stats,
        );
        c.merged.fetch_add(stats.merged, Ordering::Relaxed);
        c.withheld.fetch_add(stats.withheld, Ordering::Relaxed);
        for d in &decisions {
            match d {
                Decision::Alert(a) => {
                    match a.activity {
                        decide::Activity::Create => {
                            c.alerts_created.fetch_add(1, Ordering::Relaxed)
                        }
                        decide::Activity::Update => {
                            c.alerts_updated.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    c.alerts_by_severity[a.severity.index()].fetch_add(1, Ordering::Relaxed);
                }
                Decision::Command(_) => {
                    c.commands.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        decisions
    }

    /// Once per event-time day, forgets identities silent for `baseline.forget_after_days`.
    /// Runs before any identity guard is taken (DashMap guards must not be held across it).
    fn sweep(&self, now_ms: i64) {
        let day = now_ms.div_euclid(DAY_MS);
        let last = self.swept_day.load(Ordering::Relaxed);
        if day <= last
            || self
                .swept_day
                .compare_exchange(last, day, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let horizon = now_ms - (self.rules.model.baseline.forget_after_days * DAY_MS as f64) as i64;
        let before = self.identities.len();
        self.identities
            .retain(|_, s| s.profile.last_seen_ms >= horizon);
        let forgotten = before.saturating_sub(self.identities.len());
        if forgotten > 0 {
            self.identity_count.fetch_sub(forgotten, Ordering::Relaxed);
            self.counters
                .forgotten
                .fetch_add(forgotten as u64, Ordering::Relaxed);
        }
    }

    /// Drops every identity owned by `owner` (a partition handed to another instance); returns
    /// how many were dropped.
    pub fn evict_owner(&self, owner: u32) -> usize {
        let before = self.identities.len();
        self.identities.retain(|_, s| s.owner != owner);
        let evicted = before.saturating_sub(self.identities.len());
        self.identity_count.fetch_sub(evicted, Ordering::Relaxed);
        self.counters
            .evicted
            .fetch_add(evicted as u64, Ordering::Relaxed);
        evicted
    }

    /// Number of identities tracked.
    pub fn identities(&self) -> usize {
        self.identity_count.load(Ordering::Relaxed)
    }

    /// Identities still warming up.
    pub fn warming_up(&self) -> usize {
        self.census().warming_up
    }

    /// Total and mean bytes of per-identity state (profiles and open alerts).
    pub fn state_bytes(&self) -> (usize, f64) {
        let c = self.census();
        (
            c.state_bytes,
            c.state_bytes as f64 / c.identities.max(1) as f64,
        )
    }

    /// Identities, those warming up and their state size, in one pass over the map (each shard
    /// is read-locked briefly in turn, so processing continues meanwhile).
    pub fn census(&self) -> Census {
        let m = &self.rules.model;
        let mut c = Census::default();
        for s in self.identities.iter() {
            c.identities += 1;
            if !s
                .profile
                .is_mature(m.warmup.min_active_hours, m.warmup.min_days)
            {
                c.warming_up += 1;
            }
            c.state_bytes += s.profile.heap_bytes();
        }
        c
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn guardrails(&self) -> &Guardrails {
        &self.guard
    }

    /// Event-time day of the last sweep for long-silent identities.
    pub fn swept_day(&self) -> i64 {
        self.swept_day.load(Ordering::Relaxed)
    }

    /// Sets the day of the last sweep (restoring a snapshot).
    pub fn restore_swept_day(&self, day: i64) {
        self.swept_day.store(day, Ordering::Relaxed);
    }

    /// Calls `f` with each identity's key and state. Shards are read-locked one at a time, so
    /// processing may continue meanwhile; `f` must not call back into the engine.
    pub fn for_each_identity(&self, mut f: impl FnMut(&str, &IdentityState)) {
        for e in self.identities.iter() {
            f(e.key(), e.value());
        }
    }

    /// Adds (or replaces) an identity's state, restored from a snapshot.
    pub fn restore_identity(&self, key: String, state: IdentityState) {
        if self.identities.insert(key, state).is_none() {
            self.identity_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Alerts per severity so far.
    pub fn alerts_by_severity(&self) -> Vec<(Severity, u64)> {
        Severity::ALL
            .iter()
            .map(|s| {
                (
                    *s,
                    self.counters.alerts_by_severity[s.index()].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Findings per detector so far.
    pub fn findings_by_detector(&self) -> Vec<(Detector, u64)> {
        Detector::ALL
            .iter()
            .map(|d| {
                (
                    *d,
                    self.counters.findings[*d as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// A copy of one identity's state (for tests and inspection).
    pub fn identity(&self, principal: &str) -> Option<IdentityState> {
        self.identities.get(principal).map(|s| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Model;
    use crate::decode::{Decoded, FormatHint, decode_one};
    use crate::event::RawRef;

    fn event(principal: &str, day: i64) -> AccessEvent {
        let rec = format!(
            r#"{{"time":{},"principal":{{"key":"{principal}"}},"action":"s3.amazonaws.com:GetObject"}}"#,
            1_700_000_000_000 + day * DAY_MS
        );
        match decode_one(rec.as_bytes(), FormatHint::Auto, RawRef::default()) {
            Ok(Decoded::Event(e)) => *e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn identities_silent_past_the_forget_horizon_are_dropped_and_others_kept() {
        let engine = Engine::new(Rules::new(Model::embedded()));
        engine.process(&event("old", 0));
        engine.process(&event("recent", 100));
        assert_eq!(engine.identities(), 2);
        engine.process(&event("recent", 181));
        assert_eq!(engine.identities(), 1, "`old` was silent for 181 days");
        assert!(engine.identity("old").is_none());
        assert!(engine.identity("recent").is_some());
        assert_eq!(engine.counters.forgotten.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn evicting_a_partition_drops_only_the_identities_it_last_delivered() {
        let engine = Engine::new(Rules::new(Model::embedded()));
        engine.process_owned(&event("a", 0), 1);
        engine.process_owned(&event("b", 0), 2);
        engine.process_owned(&event("moved", 0), 1);
        engine.process_owned(&event("moved", 1), 2);
        assert_eq!(engine.evict_owner(1), 1);
        assert!(engine.identity("a").is_none());
        assert!(engine.identity("b").is_some());
        assert!(
            engine.identity("moved").is_some(),
            "partition 2 delivered it last"
        );
        assert_eq!(engine.identities(), 2);
        assert_eq!(engine.counters.evicted.load(Ordering::Relaxed), 1);
    }
}
