//! What one event teaches an identity's profile and the fleet tables: [`Profile::learn`] is the
//! one place the baseline advances. It returns a [`Learned`] report of the facts the detectors
//! judge: what was new (with its novelty rate and fleet popularity *before* it was learned),
//! and the few figures that learning changes but detectors must read as they were before the
//! event (the identity's last-seen time for dormancy, its denied rate for denied bursts).
//! Learning never depends on what the detectors decide, so the order of detectors is free.

use std::hash::Hasher;

use rustc_hash::FxHasher;

use super::fleet::Table;
use super::origin::{self, Level};
use super::{DAY_MS, Fleet, Profile, resources};
use crate::config::Rules;
use crate::config::model::BaselineConfig;
use crate::event::AccessEvent;

/// Hash of an endpoint (action) string, shared by profiles and the fleet table.
pub fn endpoint_hash(action: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(action.as_bytes());
    h.finish()
}

/// The profile as it was before the event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Before {
    pub last_seen_ms: i64,
    pub events: u64,
    /// Average gap between active hours, before this event closed an hour.
    pub mean_gap_hours: f32,
}

/// An endpoint the identity called for the first time (as far as its bounded memory goes).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEndpoint {
    pub hash: u64,
    /// The identity's probability of meeting a new endpoint in an active hour, before this one.
    pub p_new: f64,
    /// No other endpoint was new to it earlier in this clock hour.
    pub first_new_this_hour: bool,
    /// Identities that already called it.
    pub users: u32,
    /// Its sensitivity tier (index into the model's tiers), if it has one.
    pub tier: Option<u8>,
    /// Endpoints the identity knew before.
    pub known: usize,
}

/// An origin value new to the identity at one level.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrigin {
    pub level: Level,
    pub hash: u64,
    /// The identity's probability of meeting a new value at this level in an active hour.
    pub p_new: f64,
    pub first_new_this_hour: bool,
    /// Identities that already used it.
    pub users: u32,
    pub label: String,
    /// Labels of the identity's most used values at this level.
    pub known: Vec<String>,
    /// Distinct values the identity knew at this level before this one.
    pub known_count: usize,
}

/// What one event taught the profile, for the detectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    /// The identity's first event.
    pub is_new: bool,
    pub before: Before,
    /// The identity has enough history for novelty findings (after this event's hour began).
    pub mature: bool,
    /// The fleet has been observed long enough for rarity across it to mean something.
    pub fleet_mature: bool,
    /// The share of observed days the identity was active around this hour of day, when this is
    /// its first event in the clock hour.
    pub hour_share: Option<f64>,
    pub endpoint: Option<NewEndpoint>,
    /// Origin values new at their level, most specific level first.
    pub origins: Vec<NewOrigin>,
    /// The event's coarse network is one no identity has used before.
    pub coarse_unknown_to_fleet: bool,
    /// Decayed counts of calls and denied calls before this one.
    pub calls_before: f32,
    pub denied_before: f32,
    /// A workload-bound session used from a network and client it never used ([`super::pin`]).
    pub pin_breach: Option<super::pin::PinBreach>,
}

impl Learned {
    /// The values this event made the identity start using, by fleet table: each counted one
    /// more user in the fleet.
    pub fn adopted(&self) -> impl Iterator<Item = (Table, u64)> + '_ {
        self.endpoint
            .iter()
            .map(|e| (Table::Endpoints, e.hash))
            .chain(self.origins.iter().map(|o| (Table::Origins, o.hash)))
    }
}

/// Where a CloudTrail call came from when its address is outside AWS's published ranges (with
/// AWS ranges loaded): another provider's range, or none. Asked only for calls of pinned
/// sessions: an instance or task calls from AWS addresses, through a VPC endpoint, or via an
/// AWS service.
fn outside_cloud(ev: &AccessEvent, r: &Rules) -> Option<String> {
    if ev.format != crate::event::SourceFormat::Cloudtrail {
        return None;
    }
    let ranges = r.cloud.as_ref()?.get();
    if !ranges.covers("aws") {
        return None;
    }
    let ip = ev.origin.ip.filter(|ip| origin::is_public(*ip))?;
    match ranges.lookup(ip) {
        Some(n) if n.provider == "aws" => None,
        Some(n) => Some(format!("outside AWS, in {}", n.label())),
        None => Some("outside AWS's published ranges".to_owned()),
    }
}

impl Profile {
    /// Advances the profile (and the fleet tables) with `ev`, and reports what was new.
    /// `is_new` is true for the identity's first event. Time only moves forward: an event older
    /// than the profile's current hour is counted in that hour.
    pub fn learn(&mut self, ev: &AccessEvent, fleet: &Fleet, r: &Rules, is_new: bool) -> Learned {
        let m = &r.model;
        let t = ev.time_ms;
        let before = Before {
            last_seen_ms: self.last_seen_ms,
            events: self.events,
            mean_gap_hours: self.mean_gap_hours,
        };

        // When it is active.
        let was_mature = self.is_mature(m.warmup.min_active_hours, m.warmup.min_days);
        let fleet_mature = fleet.observe_time(t) as f64 >= m.warmup.min_days * DAY_MS as f64;
        self.advance_to(t, r.half_life_hours, was_mature);
        let first_in_hour = self.hour_requests == 0;
        let mature = self.is_mature(m.warmup.min_active_hours, m.warmup.min_days);
        self.events += 1;
        self.last_seen_ms = self.last_seen_ms.max(t);
        let hour = self.hour as u32;
        let hour_share = first_in_hour.then(|| self.hour_of_day_share(self.hour));
        if let Some(share) = hour_share
            && mature
        {
            let cold = share < m.detectors.unusual_hour.cold_share;
            if cold {
                self.cold_hours += 1.0;
            }
            self.mature_hours.active = self.mature_hours.active.saturating_add(1);
            self.mature_hours.cold = self.mature_hours.cold.saturating_add(u32::from(cold));
            fleet.adjust_active_hours(1, i64::from(cold));
        }

        // How much.
        self.hour_requests = self.hour_requests.saturating_add(ev.volume.requests);
        if let Some(bytes) = ev.volume.bytes_out {
            self.hour_bytes_out = self.hour_bytes_out.saturating_add(bytes);
        }

        // What it calls, and from where.
        let action = endpoint_hash(&ev.action);
        let (endpoint, at) = self.learn_endpoint(ev, action, fleet, r, hour);
        self.learn_resource(ev, action, at, &m.baseline, hour);
        let (origins, coarse_unknown_to_fleet) = self.learn_origins(ev, fleet, &m.baseline, hour);
        let pin_breach = self.pins.observe(ev, &m.baseline, || outside_cloud(ev, r));

        // Refusals.
        let len = (m.detectors.denied_burst.window_minutes * 60_000.0) as i64;
        self.denied_window.roll(t, len);
        self.denied_window.events += 1;
        if ev.outcome.denied {
            self.denied_window.hits += 1;
        }
        let (calls_before, denied_before) = (self.calls, self.denied);
        self.calls += 1.0;
        if ev.outcome.denied {
            self.denied += 1.0;
        }

        Learned {
            is_new,
            before,
            mature,
            fleet_mature,
            hour_share,
            endpoint,
            origins,
            coarse_unknown_to_fleet,
            calls_before,
            denied_before,
            pin_breach,
        }
    }

    fn learn_endpoint(
        &mut self,
        ev: &AccessEvent,
        hash: u64,
        fleet: &Fleet,
        r: &Rules,
        hour: u32,
    ) -> (Option<NewEndpoint>, usize) {
        if let Some(at) = self.endpoints.touch_at(hash, hour, 1.0) {
            return (None, at);
        }
        let b = &r.model.baseline;
        let first_new_this_hour = !self.endpoints.novel_this_hour();
        let p_new = self
            .endpoints
            .p_new(b.novelty_prior_novel, b.novelty_prior_seen);
        let users = fleet.users(Table::Endpoints, hash);
        let tier = fleet.adopt(
            Table::Endpoints,
            hash,
            hour,
            || ev.action.clone(),
            || r.tier_of(&ev.action),
        );
        let known = self.endpoints.entries.len();
        let at = self.endpoints.insert(hash, hour, 1.0, b.max_endpoints);
        self.new_endpoints += 1.0;
        let new = NewEndpoint {
            hash,
            p_new,
            first_new_this_hour,
            users,
            tier,
            known,
        };
        (Some(new), at)
    }

    /// Remembers the resource the call named, and the permissions it was checked for, under
    /// its action (the endpoint entry at index `at`).
    fn learn_resource(
        &mut self,
        ev: &AccessEvent,
        action: u64,
        at: usize,
        b: &BaselineConfig,
        hour: u32,
    ) {
        if b.max_resources == 0 {
            return;
        }
        let caps = resources::Caps {
            per_action: b.max_resources_per_action,
            total: b.max_resources,
        };
        let endpoints = &self.endpoints;
        let tracked = |a| endpoints.get(a).is_some();
        if !ev.permissions.is_empty() {
            self.permissions
                .record(action, &ev.permissions, hour, b.max_resources, tracked);
        }
        if endpoints.entries[at].any_resource() {
            return;
        }
        let scope = resources::scope_of(ev);
        let any = self.resources.record(action, scope, hour, caps, tracked);
        let entries = &mut self.endpoints.entries;
        match any {
            Some(a) if a == action => entries[at].set_any_resource(),
            Some(a) => {
                if let Some(e) = entries.iter_mut().find(|e| e.hash == a) {
                    e.set_any_resource();
                }
            }
            None => {}
        }
    }

    fn learn_origins(
        &mut self,
        ev: &AccessEvent,
        fleet: &Fleet,
        cfg: &BaselineConfig,
        hour: u32,
    ) -> (Vec<NewOrigin>, bool) {
        let mut new = Vec::new();
        let mut coarse_unknown_to_fleet = false;
        origin::for_each_value(&ev.origin, cfg, |v| {
            let set = &mut self.origins[v.level as usize];
            if set.touch(v.hash, hour, 1.0) {
                return;
            }
            let first_new_this_hour = !set.novel_this_hour();
            let p_new = set.p_new(cfg.novelty_prior_novel, cfg.novelty_prior_seen);
            let users = fleet.users(Table::Origins, v.hash);
            let label = origin::label(&ev.origin, v.level, cfg);
            let known: Vec<String> = set
                .top(3)
                .iter()
                .filter_map(|e| fleet.label(Table::Origins, e.hash))
                .collect();
            fleet.adopt(Table::Origins, v.hash, hour, || label.clone(), || None);
            let known_count = set.entries.len();
            set.insert(v.hash, hour, 1.0, cfg.max_values_per_origin_level);
            if v.level == Level::Coarse && users == 0 {
                coarse_unknown_to_fleet = true;
            }
            new.push(NewOrigin {
                level: v.level,
                hash: v.hash,
                p_new,
                first_new_this_hour,
                users,
                label,
                known,
                known_count,
            });
        });
        (new, coarse_unknown_to_fleet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::HOUR_MS;
    use crate::config::Model;
    use crate::decode::{Decoded, FormatHint, decode_one};
    use crate::event::RawRef;

    fn event(t: i64, action: &str, ip: &str, denied: bool) -> AccessEvent {
        let rec = format!(
            r#"{{"time":{t},"principal":{{"key":"svc"}},"action":"{action}","origin":{{"ip":"{ip}"}},"outcome":{{"success":{},"denied":{denied}}}}}"#,
            !denied
        );
        match decode_one(rec.as_bytes(), FormatHint::Auto, RawRef::default()) {
            Ok(Decoded::Event(e)) => *e,
            other => panic!("{other:?}"),
        }
    }

    /// Rules, an empty fleet, a start time and an identity's profile starting then.
    fn fresh() -> (Rules, Fleet, i64, Profile) {
        let t0 = 1_700_000_000_000;
        (
            Rules::new(Model::embedded()),
            Fleet::new(1000),
            t0,
            Profile::new(t0, 2.0),
        )
    }

    #[test]
    fn a_new_endpoint_is_reported_with_what_was_known_before_and_then_known() {
        let (r, fleet, t0, mut p) = fresh();
        let first = p.learn(
            &event(t0, "s3:GetObject", "10.0.0.1", false),
            &fleet,
            &r,
            true,
        );
        let e = first.endpoint.expect("first call is new");
        assert_eq!((e.known, e.users), (0, 0));
        assert!(first.is_new);
        let again = p.learn(
            &event(t0 + 1, "s3:GetObject", "10.0.0.1", false),
            &fleet,
            &r,
            false,
        );
        assert_eq!(again.endpoint, None);
        assert!(again.origins.is_empty(), "the same network is known now");
        assert_eq!(again.before.events, 1);
        let other = p.learn(
            &event(t0 + 2, "s3:PutObject", "10.0.0.1", false),
            &fleet,
            &r,
            false,
        );
        let e = other.endpoint.expect("another endpoint");
        assert_eq!(e.known, 1);
        assert!(
            !e.first_new_this_hour,
            "the first new endpoint of the hour was GetObject"
        );
    }

    #[test]
    fn a_public_network_nobody_used_is_unknown_to_the_fleet_and_denials_count_after_the_check() {
        let (r, fleet, t0, mut p) = fresh();
        p.learn(&event(t0, "a:B", "10.0.0.1", false), &fleet, &r, true);
        let l = p.learn(
            &event(t0 + HOUR_MS, "a:B", "203.0.113.9", true),
            &fleet,
            &r,
            false,
        );
        assert!(l.coarse_unknown_to_fleet);
        assert!(l.origins.iter().any(|o| o.level == Level::Coarse));
        assert_eq!(
            l.denied_before, 0.0,
            "the denied rate is judged without this call"
        );
        assert!(p.denied > 0.0 && p.denied_window.hits == 1);
        assert!(l.hour_share.is_some(), "first event of a new clock hour");
    }
}
