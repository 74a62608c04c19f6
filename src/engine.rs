//! The engine: baseline/detect and decide for one event at a time, for any number of identities.
//!
//! [`Engine::process`] is synchronous and takes `&self`: identities live in a `DashMap` sharded by
//! principal key, so several partitions can be processed concurrently as long as each identity is
//! owned by one partition (Kafka messages are keyed by identity). Replay calls it in event-time
//! order from one thread, which makes its output deterministic.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use rustc_hash::FxBuildHasher;

use crate::baseline::fleet::{Contribution, Table};
use crate::baseline::lifecycle::{LastUse, Lifecycle, Stage};
use crate::baseline::{ColdProfile, DAY_MS, Fleet, HOUR_MS, Profile, alloc_bytes};
use crate::config::Rules;
use crate::decide::lifecycle::{self as governance, LifecycleStep};
use crate::decide::{
    self, Budget, DecideStats, Decision, Guardrails, IdentityContext, RiskState, Severity,
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
    /// The last input offset applied to this identity, per owner ([`Engine::process_at`]): a
    /// record re-read after a restore is not learned twice.
    pub applied: Vec<(u32, i64)>,
    /// Changed since its snapshot was last taken ([`Engine::drain_changed`]).
    pub changed: bool,
}

impl IdentityState {
    fn record_applied(&mut self, owner: u32, offset: i64) {
        match self.applied.iter_mut().find(|(o, _)| *o == owner) {
            Some(e) => e.1 = e.1.max(offset),
            None => self.applied.push((owner, offset)),
        }
    }
}

/// An identity silent for `baseline.cold_after_days`: its cold summary, woken by its next event.
#[derive(Debug, Clone)]
pub struct ColdIdentity {
    pub profile: ColdProfile,
    pub owner: u32,
    pub applied: Vec<(u32, i64)>,
    pub changed: bool,
}

/// What the engine keeps of one identity: its whole state while active, a cold summary after
/// long silence. Boxed, so the map's buckets (half of them empty after it grows) stay small.
#[derive(Debug, Clone)]
pub enum Tracked {
    Hot(Box<IdentityState>),
    Cold(Box<ColdIdentity>),
}

impl Tracked {
    pub fn owner(&self) -> u32 {
        match self {
            Tracked::Hot(s) => s.owner,
            Tracked::Cold(c) => c.owner,
        }
    }

    pub fn applied(&self) -> &[(u32, i64)] {
        match self {
            Tracked::Hot(s) => &s.applied,
            Tracked::Cold(c) => &c.applied,
        }
    }

    /// The offset last applied from `owner`'s partition.
    pub fn applied_from(&self, owner: u32) -> Option<i64> {
        self.applied()
            .iter()
            .find(|(o, _)| *o == owner)
            .map(|(_, off)| *off)
    }

    pub fn changed(&self) -> bool {
        match self {
            Tracked::Hot(s) => s.changed,
            Tracked::Cold(c) => c.changed,
        }
    }

    fn set_changed(&mut self, changed: bool) {
        match self {
            Tracked::Hot(s) => s.changed = changed,
            Tracked::Cold(c) => c.changed = changed,
        }
    }

    /// Sets the owner and the applied offsets (restoring a snapshot).
    pub fn set_origin(&mut self, owner: u32, applied: Vec<(u32, i64)>) {
        match self {
            Tracked::Hot(s) => {
                s.owner = owner;
                s.applied = applied;
            }
            Tracked::Cold(c) => {
                c.owner = owner;
                c.applied = applied;
            }
        }
    }

    pub fn first_seen_ms(&self) -> i64 {
        match self {
            Tracked::Hot(s) => s.profile.first_seen_ms,
            Tracked::Cold(c) => c.profile.first_seen_ms,
        }
    }

    pub fn last_seen_ms(&self) -> i64 {
        match self {
            Tracked::Hot(s) => s.profile.last_seen_ms,
            Tracked::Cold(c) => c.profile.last_seen_ms,
        }
    }

    pub fn is_cold(&self) -> bool {
        matches!(self, Tracked::Cold(_))
    }

    /// The hot state; `None` for a cold identity.
    pub fn hot(&self) -> Option<&IdentityState> {
        match self {
            Tracked::Hot(s) => Some(s),
            Tracked::Cold(_) => None,
        }
    }

    /// True when the identity has enough history for novelty findings.
    pub fn is_mature(&self, min_active_hours: u32, min_days: f64) -> bool {
        match self {
            Tracked::Hot(s) => s.profile.is_mature(min_active_hours, min_days),
            Tracked::Cold(c) => crate::baseline::is_mature(
                c.profile.active_hours_total,
                c.profile.first_seen_ms,
                c.profile.last_seen_ms,
                min_active_hours,
                min_days,
            ),
        }
    }

    /// What this identity adds to the fleet's mature active hours and those at cold hours of
    /// day ([`crate::baseline::Fleet::active_hours`]): its own, when hot.
    fn mature_hours(&self) -> (i64, i64) {
        match self {
            Tracked::Hot(s) => (
                i64::from(s.profile.mature_hours.active),
                i64::from(s.profile.mature_hours.cold),
            ),
            Tracked::Cold(_) => (0, 0),
        }
    }

    /// Shrinks a hot identity to its cold summary (its risk state is inert by then: the model
    /// requires `cold_after_days` to outlast every scoring window).
    fn freeze(&mut self) {
        if let Tracked::Hot(s) = self {
            let s = &mut **s;
            *self = Tracked::Cold(Box::new(ColdIdentity {
                profile: ColdProfile::freeze(&s.profile),
                owner: s.owner,
                applied: std::mem::take(&mut s.applied),
                changed: true,
            }));
        }
    }

    /// The hot state, woken from the cold summary first if need be.
    fn thaw(&mut self, prior_dispersion: f32) -> &mut IdentityState {
        if let Tracked::Cold(c) = self {
            let c = &mut **c;
            *self = Tracked::Hot(Box::new(IdentityState {
                profile: c.profile.thaw(prior_dispersion),
                risk: RiskState::default(),
                owner: c.owner,
                applied: std::mem::take(&mut c.applied),
                changed: true,
            }));
        }
        match self {
            Tracked::Hot(s) => s,
            Tracked::Cold(_) => unreachable!("thawed above"),
        }
    }

    /// The identity's lifecycle state and when it was last seen.
    fn lifecycle_mut(&mut self) -> (&mut Lifecycle, i64) {
        match self {
            Tracked::Hot(s) => (&mut s.profile.lifecycle, s.profile.last_seen_ms),
            Tracked::Cold(c) => (&mut c.profile.lifecycle, c.profile.last_seen_ms),
        }
    }

    fn mark_changed(&mut self) {
        match self {
            Tracked::Hot(s) => s.changed = true,
            Tracked::Cold(c) => c.changed = true,
        }
    }

    /// The hot state as it is, or as the cold summary would wake into.
    pub fn view(&self, prior_dispersion: f32) -> Cow<'_, IdentityState> {
        match self {
            Tracked::Hot(s) => Cow::Borrowed(s),
            Tracked::Cold(c) => Cow::Owned(IdentityState {
                profile: c.profile.thaw(prior_dispersion),
                risk: RiskState::default(),
                owner: c.owner,
                applied: c.applied.clone(),
                changed: c.changed,
            }),
        }
    }

    /// Bytes allocated for this identity's state (not its key or map slot).
    pub fn heap_bytes(&self) -> usize {
        let applied = |v: &Vec<(u32, i64)>| alloc_bytes(v.capacity() * 16);
        match self {
            Tracked::Hot(s) => {
                alloc_bytes(std::mem::size_of::<IdentityState>()) + s.profile.heap_bytes()
                    - std::mem::size_of::<Profile>()
                    + s.risk.heap_bytes()
                    + applied(&s.applied)
            }
            Tracked::Cold(c) => {
                alloc_bytes(std::mem::size_of::<ColdIdentity>())
                    + c.profile.heap_bytes()
                    + applied(&c.applied)
            }
        }
    }
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
    pub alerts_closed: AtomicU64,
    /// By severity, in [`Severity::ALL`] order.
    pub alerts_by_severity: [AtomicU64; Severity::ALL.len()],
    pub commands: AtomicU64,
    pub merged: AtomicU64,
    pub withheld: AtomicU64,
    /// Identities shrunk to cold summaries after `baseline.cold_after_days` of silence.
    pub frozen: AtomicU64,
    /// Cold identities woken by a new event.
    pub woken: AtomicU64,
    /// Identities forgotten after `baseline.forget_after_days` of silence.
    pub forgotten: AtomicU64,
    /// Identities dropped because their partition was handed to another instance.
    pub evicted: AtomicU64,
    /// Events not learned because their identity's restored state already included them.
    pub already_applied: AtomicU64,
    /// Governance commands of the dormancy lifecycle issued: suspensions, deletions.
    pub lifecycle_suspended: AtomicU64,
    pub lifecycle_deleted: AtomicU64,
    /// Lifecycle steps due but held back by the lifecycle's guardrails (retried every hour).
    pub lifecycle_deferred: AtomicU64,
}

/// A count of the identities tracked ([`Engine::census`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub identities: usize,
    pub warming_up: usize,
    /// Identities kept as cold summaries.
    pub cold: usize,
    /// Bytes of per-identity state as allocated: keys, the map's slots (empty ones included),
    /// profiles or cold summaries, open alerts.
    pub state_bytes: usize,
}

/// The dormancy lifecycle's engine-wide state ([`Engine::lifecycle_state`]): the hour of its
/// last pass, its steps issued in the last day, the never-used identities' steps by key.
pub type LifecycleState = (
    i64,
    std::collections::VecDeque<(i64, String)>,
    Vec<(String, Stage)>,
);

pub struct Engine {
    rules: Rules,
    identities: DashMap<String, Tracked, FxBuildHasher>,
    identity_count: AtomicUsize,
    /// Of those, how many are cold summaries (not part of the active fleet).
    cold_count: AtomicUsize,
    /// Identities the rest of the group reports ([`Engine::set_remote_identities`]).
    remote_identities: AtomicUsize,
    fleet: Fleet,
    guard: Guardrails,
    /// Event-time day of the last sweep for long-silent identities.
    swept_day: AtomicI64,
    /// Event-time hour of the last dormancy lifecycle pass, and its own guardrails.
    lifecycle_hour: AtomicI64,
    lifecycle_guard: Guardrails,
    /// Identities the inventory declares but no event has shown: the lifecycle step issued
    /// for each (counted from its declared creation); `Deleted` also for one seen since, so it
    /// is never counted as unused since its creation again. Not saved: after a restart a step
    /// is issued again, the same command (same ids), as at-least-once delivery may repeat it.
    declared_stages: Mutex<HashMap<String, Stage>>,
    /// This engine issues the declared-and-never-used identities' steps (in a group, only the
    /// instance that owns partition 0 of the first input does; [`Engine::set_declared_lifecycle`]).
    declared_lifecycle: AtomicBool,
    /// The event time the dormancy lifecycle may run to at most ([`Engine::set_lifecycle_watermark`]):
    /// in the service, the slowest active input partition's; `i64::MAX` (no limit) elsewhere.
    lifecycle_watermark: AtomicI64,
    /// Identities the sweep forgot, with their owners, kept for [`Engine::take_forgotten`] when
    /// tracking is on (the service writes tombstones for them).
    forgotten: Mutex<Vec<(u32, String)>>,
    track_forgotten: AtomicBool,
    pub counters: EngineCounters,
}

impl Engine {
    pub fn new(rules: Rules) -> Engine {
        let fleet = Fleet::new(rules.model.baseline.fleet_max_values);
        Engine {
            rules,
            identities: DashMap::with_hasher(FxBuildHasher),
            identity_count: AtomicUsize::new(0),
            cold_count: AtomicUsize::new(0),
            remote_identities: AtomicUsize::new(0),
            fleet,
            guard: Guardrails::new(),
            swept_day: AtomicI64::new(i64::MIN),
            lifecycle_hour: AtomicI64::new(i64::MIN),
            lifecycle_guard: Guardrails::new(),
            declared_stages: Mutex::new(HashMap::new()),
            declared_lifecycle: AtomicBool::new(true),
            lifecycle_watermark: AtomicI64::new(i64::MAX),
            forgotten: Mutex::new(Vec::new()),
            track_forgotten: AtomicBool::new(false),
            counters: EngineCounters::default(),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The dormancy lifecycle's engine-wide state: the hour of its last pass, the steps issued
    /// in the last day (for its guardrails), and the never-used identities' steps, by key.
    pub fn lifecycle_state(&self) -> LifecycleState {
        let mut declared: Vec<(String, Stage)> = self
            .declared_stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, s)| (k.clone(), *s))
            .collect();
        declared.sort();
        (
            self.lifecycle_hour.load(Ordering::Relaxed),
            self.lifecycle_guard.issued(),
            declared,
        )
    }

    /// Restores what [`Engine::lifecycle_state`] returned.
    pub fn restore_lifecycle_state(
        &self,
        hour: i64,
        issued: std::collections::VecDeque<(i64, String)>,
        declared: Vec<(String, Stage)>,
    ) {
        self.lifecycle_hour.store(hour, Ordering::Relaxed);
        self.lifecycle_guard.restore(issued);
        *self
            .declared_stages
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = declared.into_iter().collect();
    }

    /// Whether this engine issues the lifecycle steps of identities the inventory declares but
    /// no event has shown (true by default; in a group, the owner of one partition does).
    pub fn set_declared_lifecycle(&self, on: bool) {
        self.declared_lifecycle.store(on, Ordering::Relaxed);
    }

    /// Whether this engine issues the declared-and-never-used identities' steps.
    pub fn issues_declared_lifecycle(&self) -> bool {
        self.declared_lifecycle.load(Ordering::Relaxed)
    }

    /// Caps the event time the dormancy lifecycle runs to: an event later than `ms` lets the
    /// hourly pass run only up to `ms`. The service sets it to the slowest active input
    /// partition's event time, so a partition read ahead of the others (a backlog elsewhere,
    /// or events re-keyed from input partitions read at different paces) cannot make the
    /// identities of the others look idle; `i64::MAX` lifts the cap, `i64::MIN` holds every
    /// pass back (until the partitions' event times are known).
    pub fn set_lifecycle_watermark(&self, ms: i64) {
        self.lifecycle_watermark.store(ms, Ordering::Relaxed);
    }

    /// The cap [`Engine::set_lifecycle_watermark`] set.
    pub fn lifecycle_watermark(&self) -> i64 {
        self.lifecycle_watermark.load(Ordering::Relaxed)
    }

    /// Updates the event's identity and returns the alerts and commands it leads to.
    pub fn process(&self, ev: &AccessEvent) -> Vec<Decision> {
        self.process_owned(ev, NO_OWNER)
    }

    /// As [`Engine::process`], recording `owner` (an input partition) as the identity's owner.
    pub fn process_owned(&self, ev: &AccessEvent, owner: u32) -> Vec<Decision> {
        self.process_at(ev, owner, None).unwrap_or_default()
    }

    /// As [`Engine::process_owned`], for the event of the input record at `offset` of `owner`'s
    /// partition: `None` (nothing learned or decided) when the identity's state already includes
    /// that record, as after a restore from a snapshot taken past it.
    pub fn process_at(
        &self,
        ev: &AccessEvent,
        owner: u32,
        offset: Option<i64>,
    ) -> Option<Vec<Decision>> {
        let enriched = (self.rules.geo.as_ref()).and_then(|g| crate::enrich::with_geo(ev, g));
        let ev = enriched.as_ref().unwrap_or(ev);
        let c = &self.counters;
        let m = &self.rules.model;
        self.sweep(ev.time_ms);
        // `i64::MIN`: the service does not know its partitions' event times yet.
        let mut out = match self.lifecycle_watermark() {
            i64::MIN => Vec::new(),
            watermark => self.lifecycle_tick(ev.time_ms.min(watermark)),
        };
        let found = self.identities.get_mut(ev.principal.as_str());
        if let (Some(s), Some(off)) = (&found, offset)
            && s.applied_from(owner).is_some_and(|a| off <= a)
        {
            c.already_applied.fetch_add(1, Ordering::Relaxed);
            return (!out.is_empty()).then_some(out);
        }
        c.events.fetch_add(1, Ordering::Relaxed);
        let prior_dispersion = m.detectors.volume.prior_dispersion as f32;
        let (mut entry, is_new) = match found {
            Some(s) => (s, false),
            None => {
                let entry = self
                    .identities
                    .entry(ev.principal.clone())
                    .or_insert_with(|| {
                        self.identity_count.fetch_add(1, Ordering::Relaxed);
                        Tracked::Hot(Box::new(IdentityState {
                            profile: Profile::new(ev.time_ms, prior_dispersion),
                            risk: RiskState::default(),
                            owner,
                            applied: Vec::new(),
                            changed: true,
                        }))
                    });
                (entry, true)
            }
        };
        if entry.is_cold() {
            c.woken.fetch_add(1, Ordering::Relaxed);
            self.cold_count.fetch_sub(1, Ordering::Relaxed);
        }
        let state = entry.thaw(prior_dispersion);
        state.owner = owner;
        state.changed = true;
        if is_new
            && self.declared_lifecycle.load(Ordering::Relaxed)
            && self.rules.inventory.get(&ev.principal).is_some()
        {
            // Declared, and retired before its first use: that use is a reactivation. Seen
            // now, it is never counted as unused since its creation again (should the sweep
            // forget it one day): its steps count from its events.
            let mut declared = self
                .declared_stages
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(stage) = declared.insert(ev.principal.clone(), Stage::Deleted) {
                state.profile.lifecycle.stage = stage;
            }
        }
        if let Some(off) = offset {
            state.record_applied(owner, off);
        }
        let learned = state.profile.learn(ev, &self.fleet, &self.rules, is_new);
        for (table, hash) in learned.adopted() {
            self.fleet.contribute(table, hash, owner);
        }
        let findings = detect::judge(&mut state.profile, &learned, &self.fleet, &self.rules, ev);
        // After judging: a suspended identity in use again is a finding of the dormancy detector.
        state.profile.lifecycle.observe(ev);
        for f in &findings {
            c.findings[f.detector as usize].fetch_add(1, Ordering::Relaxed);
        }
        let p = &state.profile;
        let ctx = IdentityContext {
            maturity: p.maturity(m.warmup.min_active_hours, m.warmup.min_days),
            mature: p.is_mature(m.warmup.min_active_hours, m.warmup.min_days),
            events: p.events,
            first_seen_ms: p.first_seen_ms,
            fleet_size: self.active_identities() + self.remote_identities.load(Ordering::Relaxed),
            owner,
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
                        decide::Activity::Close => {
                            c.alerts_closed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    c.alerts_by_severity[a.severity.index()].fetch_add(1, Ordering::Relaxed);
                }
                Decision::Command(_) => {
                    c.commands.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        out.extend(decisions);
        Some(out)
    }

    /// The dormancy lifecycle, once per event-time hour: see [`Engine::advance_lifecycle`].
    /// Runs before any identity guard is taken; the service also calls it while its input is
    /// idle, with event time extrapolated on the wall clock.
    pub fn lifecycle_tick(&self, now_ms: i64) -> Vec<Decision> {
        if !self.rules.model.lifecycle.enabled {
            return Vec::new();
        }
        let hour = now_ms.div_euclid(HOUR_MS);
        let last = self.lifecycle_hour.load(Ordering::Relaxed);
        if hour <= last
            || self
                .lifecycle_hour
                .compare_exchange(last, hour, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Vec::new();
        }
        self.advance_lifecycle(now_ms)
    }

    /// The governance commands of every identity whose silence crossed a lifecycle horizon by
    /// `now_ms` (event time): a suspension after `lifecycle.suspend_after_days`, a deletion after
    /// `delete_after_days` once the suspension was issued. Each is timed when its horizon was
    /// crossed, issued once per silence, never for a protected identity, and admitted by the
    /// lifecycle's own guardrails in order of that time (then key), so the output is
    /// deterministic; one held back is retried at the next pass. Replay calls this at the end
    /// of its input, as the service would at its next event.
    pub fn advance_lifecycle(&self, now_ms: i64) -> Vec<Decision> {
        let r = &self.rules;
        let l = &r.model.lifecycle;
        if !l.enabled {
            return Vec::new();
        }
        // (due time, key, stage, owner, declared and never used)
        let mut due: Vec<(i64, String, Stage, u32, bool)> = Vec::new();
        for mut entry in self.identities.iter_mut() {
            let owner = entry.owner();
            let (life, last_seen) = entry.lifecycle_mut();
            if let Some((stage, at)) = life.due(last_seen, now_ms, l)
                && !r.is_protected(entry.key())
            {
                due.push((at, entry.key().clone(), stage, owner, false));
            }
        }
        if self.declared_lifecycle.load(Ordering::Relaxed) && !r.inventory.is_empty() {
            // Never seen: no identity map lock is held while the stages are locked (events
            // take them the other way round).
            let unseen: Vec<(String, i64)> = r
                .inventory
                .entries()
                .into_iter()
                .filter_map(|(key, meta)| Some((key, meta.created_at_ms?)))
                .filter(|(key, _)| !self.identities.contains_key(key) && !r.is_protected(key))
                .collect();
            let stages = self
                .declared_stages
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for (key, created) in unseen {
                let life = Lifecycle {
                    stage: stages.get(&key).copied().unwrap_or_default(),
                    ..Lifecycle::default()
                };
                if let Some((stage, at)) = life.due(created, now_ms, l) {
                    due.push((at, key, stage, 0, true));
                }
            }
        }
        due.sort_unstable();
        let fleet_size = self.group_identities();
        let mut out = Vec::new();
        for (at, key, stage, owner, never_used) in due {
            if let Err(why) = self.lifecycle_guard.admit_within(
                &key,
                owner,
                now_ms,
                fleet_size,
                r,
                Budget::lifecycle(r),
            ) {
                self.counters
                    .lifecycle_deferred
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(reason = why, "Lifecycle step deferred by its guardrails.");
                continue;
            }
            let meta = r.inventory.get(&key);
            let meta = meta.as_deref();
            let (step, last) = if never_used {
                let created = meta.and_then(|m| m.created_at_ms).unwrap_or(at);
                (self.declared_stages.lock())
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), stage);
                let step = LifecycleStep {
                    stage,
                    idle_since_ms: created,
                    never_used: true,
                };
                (step, LastUse::declared(&key))
            } else {
                let Some(mut entry) = self.identities.get_mut(&key) else {
                    continue;
                };
                entry.mark_changed();
                let (life, last_seen) = entry.lifecycle_mut();
                life.stage = stage;
                let step = LifecycleStep {
                    stage,
                    idle_since_ms: last_seen,
                    never_used: false,
                };
                (step, life.last.clone())
            };
            let command = governance::command(
                &key,
                &last,
                step,
                at,
                meta.and_then(|m| m.owner.clone()),
                meta.is_some_and(|m| m.auto_approve),
                r,
            );
            let counter = match stage {
                Stage::Deleted => &self.counters.lifecycle_deleted,
                Stage::Suspended | Stage::Active => &self.counters.lifecycle_suspended,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            out.push(Decision::Command(Box::new(command)));
        }
        out
    }

    /// Once per event-time day, shrinks identities silent for `baseline.cold_after_days` to cold
    /// summaries and forgets those silent for `baseline.forget_after_days`. Both horizons count
    /// from the start of the day, so a restored engine (which knows the day of the last sweep)
    /// agrees with the one that saved it on which identities are cold. Runs before any identity
    /// guard is taken (DashMap guards must not be held across it).
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
        let b = &self.rules.model.baseline;
        let start = day * DAY_MS;
        let cold_horizon = start - (b.cold_after_days * DAY_MS as f64) as i64;
        let forget_horizon = start - (b.forget_after_days * DAY_MS as f64) as i64;
        let track = self.track_forgotten.load(Ordering::Relaxed);
        let mut gone = Vec::new();
        let (mut forgotten, mut forgotten_cold, mut frozen) = (0usize, 0usize, 0u64);
        let leaves = |s: &Tracked| {
            let (active, cold) = s.mature_hours();
            self.fleet.adjust_active_hours(-active, -cold);
        };
        self.identities.retain(|k, s| {
            let last_seen = s.last_seen_ms();
            if last_seen < forget_horizon {
                leaves(s);
                if track {
                    gone.push((s.owner(), k.clone()));
                }
                forgotten += 1;
                forgotten_cold += usize::from(s.is_cold());
                return false;
            }
            if last_seen < cold_horizon && !s.is_cold() {
                leaves(s);
                s.freeze();
                frozen += 1;
            }
            true
        });
        if !gone.is_empty() {
            self.forgotten
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(gone);
        }
        self.counters.frozen.fetch_add(frozen, Ordering::Relaxed);
        self.cold_count
            .fetch_add(frozen as usize, Ordering::Relaxed);
        self.cold_count.fetch_sub(forgotten_cold, Ordering::Relaxed);
        if forgotten > 0 {
            self.identity_count.fetch_sub(forgotten, Ordering::Relaxed);
            self.counters
                .forgotten
                .fetch_add(forgotten as u64, Ordering::Relaxed);
        }
    }

    /// Keeps the keys of identities the sweep forgets, for [`Engine::take_forgotten`].
    pub fn track_forgotten(&self, on: bool) {
        self.track_forgotten.store(on, Ordering::Relaxed);
    }

    /// The identities forgotten since the last call (with tracking on) whose owners are in
    /// `owners` (all when `None`), with their owners; the others stay for a later call.
    pub fn take_forgotten_of(&self, owners: Option<&[u32]>) -> Vec<(u32, String)> {
        let mut all = self.forgotten.lock().unwrap_or_else(|e| e.into_inner());
        let Some(owners) = owners else {
            return std::mem::take(&mut *all);
        };
        let (taken, kept) = std::mem::take(&mut *all)
            .into_iter()
            .partition(|(o, _)| owners.contains(o));
        *all = kept;
        taken
    }

    /// True when the identity is tracked.
    pub fn has_identity(&self, key: &str) -> bool {
        self.identities.contains_key(key)
    }

    /// Forgets one identity (a tombstone in the changelog).
    pub fn remove_identity(&self, key: &str) {
        if let Some((_, gone)) = self.identities.remove(key) {
            let (active, cold) = gone.mature_hours();
            self.fleet.adjust_active_hours(-active, -cold);
            self.identity_count.fetch_sub(1, Ordering::Relaxed);
            if gone.is_cold() {
                self.cold_count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Calls `f` with each identity changed since its last snapshot (of the given owners, or
    /// all), and marks it unchanged. Shards are write-locked one at a time; `f` must not call
    /// back into the engine.
    pub fn drain_changed(&self, owners: Option<&[u32]>, mut f: impl FnMut(&str, &Tracked)) {
        for mut e in self.identities.iter_mut() {
            if e.changed() && owners.is_none_or(|o| o.contains(&e.owner())) {
                f(e.key(), e.value());
                e.set_changed(false);
            }
        }
    }

    /// Drops every identity owned by `owner` (a partition handed to another instance); returns
    /// how many were dropped.
    pub fn evict_owner(&self, owner: u32) -> usize {
        // Its identities' share of the fleet tables goes with them (the next owner restores it).
        self.fleet.remove_owner(owner);
        let (mut evicted, mut evicted_cold) = (0usize, 0usize);
        self.identities.retain(|_, s| {
            let keep = s.owner() != owner;
            if !keep {
                let (active, cold) = s.mature_hours();
                self.fleet.adjust_active_hours(-active, -cold);
                evicted += 1;
                evicted_cold += usize::from(s.is_cold());
            }
            keep
        });
        self.identity_count.fetch_sub(evicted, Ordering::Relaxed);
        self.cold_count.fetch_sub(evicted_cold, Ordering::Relaxed);
        self.counters
            .evicted
            .fetch_add(evicted as u64, Ordering::Relaxed);
        evicted
    }

    /// Sets the number of identities the rest of the group tracks (for fleet fractions).
    pub fn set_remote_identities(&self, n: usize) {
        self.remote_identities.store(n, Ordering::Relaxed);
    }

    /// Identities other instances of the group report: none while this instance is alone.
    pub fn remote_identities(&self) -> usize {
        self.remote_identities.load(Ordering::Relaxed)
    }

    /// Active identities (not cold summaries) in the whole group, as far as this instance
    /// knows: the fleet that guardrail fractions apply to.
    pub fn group_identities(&self) -> usize {
        self.active_identities() + self.remote_identities.load(Ordering::Relaxed)
    }

    /// Identities tracked here that are not cold summaries.
    pub fn active_identities(&self) -> usize {
        self.identity_count
            .load(Ordering::Relaxed)
            .saturating_sub(self.cold_count.load(Ordering::Relaxed))
    }

    /// Active identities (not cold summaries) per owner (input partition), for the group's
    /// reports.
    pub fn identities_by_owner(&self) -> std::collections::HashMap<u32, u32> {
        let mut out = std::collections::HashMap::new();
        for e in self.identities.iter().filter(|e| !e.is_cold()) {
            *out.entry(e.owner()).or_insert(0) += 1;
        }
        out
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

    /// Identities, those warming up and cold, and their state size, in one pass over the map
    /// (each shard is read-locked briefly in turn, so processing continues meanwhile).
    pub fn census(&self) -> Census {
        let m = &self.rules.model;
        let mut c = Census {
            // Every slot of the map's tables, used or not, and its control byte.
            state_bytes: self.identities.capacity()
                * (std::mem::size_of::<(String, Tracked)>() + 1),
            ..Census::default()
        };
        for s in self.identities.iter() {
            c.identities += 1;
            if s.is_cold() {
                c.cold += 1;
            }
            if !s.is_mature(m.warmup.min_active_hours, m.warmup.min_days) {
                c.warming_up += 1;
            }
            c.state_bytes += alloc_bytes(s.key().capacity()) + s.heap_bytes();
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
    pub fn for_each_identity(&self, mut f: impl FnMut(&str, &Tracked)) {
        for e in self.identities.iter() {
            f(e.key(), e.value());
        }
    }

    /// Adds (or replaces) an identity's state, restored from a snapshot.
    pub fn restore_identity(&self, key: String, state: Tracked) {
        if state.is_cold() {
            self.cold_count.fetch_add(1, Ordering::Relaxed);
        }
        let (active, cold) = state.mature_hours();
        self.fleet.adjust_active_hours(active, cold);
        match self.identities.insert(key, state) {
            None => {
                self.identity_count.fetch_add(1, Ordering::Relaxed);
            }
            Some(old) => {
                let (active, cold) = old.mature_hours();
                self.fleet.adjust_active_hours(-active, -cold);
                if old.is_cold() {
                    self.cold_count.fetch_sub(1, Ordering::Relaxed);
                }
            }
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

    /// Adds one partition's restored contribution to a fleet value, with the value's
    /// sensitivity tier under this engine's rules.
    pub fn restore_contribution(&self, c: Contribution) {
        let tier = match c.table {
            Table::Endpoints => self.rules.tier_of(&c.label),
            Table::Origins => None,
        };
        self.fleet.restore_contribution(c, tier);
    }

    /// A copy of one identity's state (for tests and inspection); a cold identity's as it would
    /// wake.
    pub fn identity(&self, principal: &str) -> Option<IdentityState> {
        let prior = self.rules.model.detectors.volume.prior_dispersion as f32;
        self.identities
            .get(principal)
            .map(|s| s.view(prior).into_owned())
    }

    /// A copy of what the engine keeps of one identity, hot or cold.
    pub fn tracked(&self, principal: &str) -> Option<Tracked> {
        self.identities.get(principal).map(|s| s.clone())
    }

    /// Event time of the newest event of any identity tracked.
    pub fn newest_event_ms(&self) -> Option<i64> {
        self.identities.iter().map(|e| e.last_seen_ms()).max()
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

    fn event_at(principal: &str, day: i64, hour: i64) -> AccessEvent {
        let mut e = event(principal, day);
        e.time_ms += hour * 3_600_000;
        e
    }

    #[test]
    fn the_lifecycle_runs_no_further_than_the_slowest_partitions_event_time() {
        let engine = Engine::new(Rules::new(Model::embedded()));
        let governance = |d: &[Decision]| d.iter().filter(|d| d.is_governance()).count();
        engine.process(&event("quiet", 0));
        // Another partition lags at day 2: a busy identity read ahead to day 40 must not make
        // `quiet` (whose partition may hold its later events, unread) look idle for 30 days.
        engine.set_lifecycle_watermark(2 * DAY_MS + 1_700_000_000_000);
        let mut issued = 0;
        for day in 1..=40 {
            issued += governance(&engine.process(&event("busy", day)));
        }
        assert_eq!(issued, 0, "no suspension past the watermark");
        // Held back entirely until the partitions' event times are known.
        engine.set_lifecycle_watermark(i64::MIN);
        assert_eq!(governance(&engine.process(&event("busy", 41))), 0);
        // The lagging partition caught up (or went idle): the cap lifts and `quiet` is due.
        engine.set_lifecycle_watermark(i64::MAX);
        let d = engine.process(&event_at("busy", 41, 2));
        assert_eq!(governance(&d), 1, "{d:?}");
    }

    #[test]
    fn identities_silent_past_the_cold_horizon_shrink_and_past_the_forget_horizon_are_dropped() {
        let engine = Engine::new(Rules::new(Model::embedded()));
        engine.process(&event("old", 0));
        engine.process(&event("quiet", 300));
        engine.process(&event("recent", 700));
        assert_eq!(engine.identities(), 3);
        assert!(engine.tracked("old").unwrap().is_cold(), "silent 700 days");
        assert!(
            engine.tracked("quiet").unwrap().is_cold(),
            "silent 400 days"
        );
        assert!(!engine.tracked("recent").unwrap().is_cold());
        assert_eq!(engine.census().cold, 2);
        assert_eq!(
            engine.active_identities(),
            1,
            "cold summaries are not part of the fleet the guardrails' fraction applies to"
        );
        engine.process(&event("recent", 731));
        assert_eq!(engine.identities(), 2, "`old` was silent for 731 days");
        assert!(engine.identity("old").is_none());
        assert!(engine.identity("quiet").is_some());
        assert_eq!(engine.counters.forgotten.load(Ordering::Relaxed), 1);
        // `recent`, silent 31 days, was frozen by that sweep and woken by its own event.
        assert_eq!(engine.counters.frozen.load(Ordering::Relaxed), 3);
        assert_eq!(engine.counters.woken.load(Ordering::Relaxed), 1);
        assert!(!engine.tracked("recent").unwrap().is_cold());
    }

    #[test]
    fn a_key_silent_for_a_year_is_judged_dormant_when_it_wakes() {
        let engine = Engine::new(Rules::new(Model::embedded()));
        // A daily job for two months, then a year of silence.
        for day in 0..60 {
            for h in 0..3 {
                engine.process(&event_at("key", day, h));
            }
        }
        engine.process(&event("other", 425));
        assert!(engine.tracked("key").unwrap().is_cold());
        let woke = engine.process(&event_at("key", 425, 2));
        assert!(!engine.tracked("key").unwrap().is_cold());
        assert_eq!(engine.counters.woken.load(Ordering::Relaxed), 1);
        let alert = woke
            .iter()
            .find_map(|d| match d {
                Decision::Alert(a) => Some(a),
                Decision::Command(_) => None,
            })
            .expect("a key waking after a year raises an alert");
        assert!(
            alert
                .findings
                .iter()
                .any(|f| f.detector == Detector::Dormant),
            "{:?}",
            alert.findings
        );
    }

    #[test]
    fn the_reported_state_size_counts_the_maps_slots_and_every_allocation() {
        let engine = Engine::new(Rules::new(Model::embedded()));
        for i in 0..1000 {
            engine.process(&event(&format!("id-{i}"), 0));
        }
        let c = engine.census();
        let per = c.state_bytes / c.identities;
        let floor = std::mem::size_of::<IdentityState>() + std::mem::size_of::<(String, Tracked)>();
        assert!(per > floor, "{per} bytes per identity, types alone {floor}");
        assert!(per < 2048, "{per} bytes per identity");
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
