//! Cold summaries: what an identity silent for `baseline.cold_after_days` keeps, in a fraction of
//! a profile's memory, until its next event wakes it ([`ColdProfile::thaw`]) or
//! `baseline.forget_after_days` of silence forgets it.
//!
//! A summary keeps what judging a waking identity needs: its history (first and last use, events,
//! active hours and the usual gap between them, for the dormancy detector), the hour-of-week
//! profile (is it waking at its usual hour), the bytes-out model (is its first act a bulk
//! download), the novelty rates and the heaviest endpoints and origin values per level (is it
//! calling what it used to call, from where it used to). Everything it drops has faded anyway
//! after weeks of silence at the baseline half-life, or is relearnt within days: the hourly
//! volume seasonality (the volume detector waits for three observed hours per slot again), the
//! light tail of values, the open windows.
//!
//! Freezing happens at the profile's own current hour (its last event), so the next event
//! advances a thawed profile with the same decay as it would have advanced the hot one.

use super::lifecycle::Lifecycle;
use super::resources::{Permissions, Resources};
use super::{Entry, Profile, Seasonality, ValueSet};

/// Endpoints a summary keeps, heaviest first.
pub const COLD_ENDPOINTS: usize = 8;
/// Values kept per origin level, heaviest first.
pub const COLD_VALUES_PER_LEVEL: usize = 4;

/// The summary of a long-silent identity's profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdProfile {
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub events: u64,
    pub active_hours_total: u32,
    pub mean_gap_hours: f32,
    pub last_active_hour: i64,
    /// The profile's current hour (its last event's) and the requests counted in it, not yet
    /// closed into the totals: the next event closes it as the hot profile would have.
    pub hour: i64,
    pub hour_requests: u32,
    pub hour_bytes_out: u64,
    /// Per set (endpoints, then origin levels): bit 0, a value was seen in the current hour;
    /// bit 1, a new one was met. Closing the hour counts them in the novelty rates.
    pub hour_flags: [u8; SETS],
    /// Decayed active hours, those at a cold hour of day, and endpoints new to it.
    pub active_hours: f32,
    pub cold_hours: f32,
    pub new_endpoints: f32,
    /// Active hours by hour of day (UTC), summed over the days of the week: the daily rhythm
    /// the unusual-hour judgement reads (the weekday split is not kept).
    pub hour_of_day: [u16; 24],
    pub log_bytes_mean: f32,
    pub log_bytes_var: f32,
    pub byte_hours: u16,
    pub calls: f32,
    pub denied: f32,
    /// Novelty rate (decayed active hours, and those that met a new value) of the endpoints,
    /// then of each origin level.
    pub novelty: [(f32, f32); SETS],
    /// How many of `values` belong to each set, in the same order.
    pub counts: [u8; SETS],
    /// The heaviest values of each set, heaviest first within a set, sets in order.
    pub values: Box<[Entry]>,
    pub expiry_reported: bool,
    pub lifecycle: Lifecycle,
    /// The resources of the endpoints it keeps (a policy generated after it wakes must still
    /// grant them).
    pub resources: Resources,
    pub permissions: Permissions,
}

/// The endpoints and the six origin levels.
pub const SETS: usize = 7;

fn sets(p: &Profile) -> impl Iterator<Item = (&ValueSet, usize)> {
    std::iter::once((&p.endpoints, COLD_ENDPOINTS))
        .chain(p.origins.iter().map(|o| (o, COLD_VALUES_PER_LEVEL)))
}

impl ColdProfile {
    /// The summary of `p`.
    pub fn freeze(p: &Profile) -> ColdProfile {
        let mut novelty = [(0.0, 0.0); SETS];
        let mut hour_flags = [0u8; SETS];
        let mut counts = [0u8; SETS];
        let mut values = Vec::new();
        for (i, (set, keep)) in sets(p).enumerate() {
            novelty[i] = (set.active_hours, set.novel_hours);
            hour_flags[i] = u8::from(set.seen_this_hour) | (u8::from(set.novel_this_hour) << 1);
            let top = set.top(keep);
            counts[i] = top.len() as u8;
            values.extend(top);
        }
        let kept = &values[..usize::from(counts[0])];
        let is_kept = |action: u64| kept.iter().any(|e| e.hash == action);
        let resources = Resources(
            p.resources
                .0
                .iter()
                .filter(|r| is_kept(r.action))
                .cloned()
                .collect(),
        );
        let permissions = Permissions(
            p.permissions
                .0
                .iter()
                .filter(|r| is_kept(r.action))
                .cloned()
                .collect(),
        );
        let mut hour_of_day = [0u16; 24];
        for (slot, n) in p.hour_of_week.iter().enumerate() {
            hour_of_day[slot % 24] += u16::from(*n);
        }
        ColdProfile {
            first_seen_ms: p.first_seen_ms,
            last_seen_ms: p.last_seen_ms,
            events: p.events,
            active_hours_total: p.active_hours_total,
            mean_gap_hours: p.mean_gap_hours,
            last_active_hour: p.last_active_hour,
            hour: p.hour,
            hour_requests: p.hour_requests,
            hour_bytes_out: p.hour_bytes_out,
            hour_flags,
            active_hours: p.active_hours,
            cold_hours: p.cold_hours,
            new_endpoints: p.new_endpoints,
            hour_of_day,
            log_bytes_mean: p.log_bytes_mean,
            log_bytes_var: p.log_bytes_var,
            byte_hours: p.byte_hours,
            calls: p.calls,
            denied: p.denied,
            novelty,
            counts,
            values: values.into_boxed_slice(),
            expiry_reported: p.expiry_reported,
            lifecycle: p.lifecycle.clone(),
            resources,
            permissions,
        }
    }

    /// The values kept of set `i` (0 the endpoints, 1 + level the origins).
    pub fn set(&self, i: usize) -> &[Entry] {
        let start: usize = self.counts[..i].iter().map(|c| usize::from(*c)).sum();
        &self.values[start..start + usize::from(self.counts[i])]
    }

    /// The profile this summary wakes into: what it kept, the daily rhythm spread evenly over
    /// the days of the week, a fresh volume seasonality (prior dispersion `prior_dispersion`)
    /// and empty windows.
    pub fn thaw(&self, prior_dispersion: f32) -> Profile {
        let mut p = Profile::new(self.first_seen_ms, prior_dispersion);
        p.last_seen_ms = self.last_seen_ms;
        p.events = self.events;
        p.active_hours_total = self.active_hours_total;
        p.mean_gap_hours = self.mean_gap_hours;
        p.last_active_hour = self.last_active_hour;
        p.hour = self.hour;
        p.hour_requests = self.hour_requests;
        p.hour_bytes_out = self.hour_bytes_out;
        p.active_hours = self.active_hours;
        p.cold_hours = self.cold_hours;
        p.new_endpoints = self.new_endpoints;
        for (h, n) in self.hour_of_day.iter().enumerate() {
            // At most 7 x 255 in all, so every day's share fits its u8.
            for d in 0..7 {
                let share = n / 7 + u16::from(d < n % 7);
                p.hour_of_week[usize::from(d) * 24 + h] = share as u8;
            }
        }
        p.log_bytes_mean = self.log_bytes_mean;
        p.log_bytes_var = self.log_bytes_var;
        p.byte_hours = self.byte_hours;
        p.calls = self.calls;
        p.denied = self.denied;
        let thawed = |i: usize| ValueSet {
            entries: self.set(i).to_vec(),
            active_hours: self.novelty[i].0,
            novel_hours: self.novelty[i].1,
            seen_this_hour: self.hour_flags[i] & 1 != 0,
            novel_this_hour: self.hour_flags[i] & 2 != 0,
            ..ValueSet::default()
        };
        p.endpoints = thawed(0);
        for (l, o) in p.origins.iter_mut().enumerate() {
            *o = thawed(1 + l);
        }
        p.requests = Seasonality::new(prior_dispersion);
        p.expiry_reported = self.expiry_reported;
        p.lifecycle = self.lifecycle.clone();
        p.resources = self.resources.clone();
        p.permissions = self.permissions.clone();
        p
    }

    /// Bytes allocated for this summary beyond its own size.
    pub fn heap_bytes(&self) -> usize {
        super::alloc_bytes(self.values.len() * std::mem::size_of::<Entry>())
            + self.resources.heap_bytes()
            + self.permissions.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::HOUR_MS;

    fn busy_profile() -> Profile {
        let mut p = Profile::new(0, 2.0);
        for h in 0..400i64 {
            p.advance_to(h * HOUR_MS, 24.0 * 21.0, true);
            p.hour_requests += 10;
            p.hour_bytes_out += 5_000;
            p.last_seen_ms = h * HOUR_MS;
            p.events += 10;
            for e in 0..20u64 {
                let hash = e + (h as u64 % 3) * 100;
                if !p.endpoints.touch(hash, h as u32, 1.0 + e as f32) {
                    p.endpoints.insert(hash, h as u32, 1.0 + e as f32, 40);
                }
            }
            if !p.origins[0].touch(7, h as u32, 1.0) {
                p.origins[0].insert(7, h as u32, 1.0, 12);
            }
        }
        p
    }

    #[test]
    fn a_summary_keeps_the_history_dormancy_and_waking_judgements_need() {
        let p = busy_profile();
        let c = ColdProfile::freeze(&p);
        let t = c.thaw(2.0);
        assert_eq!(t.first_seen_ms, p.first_seen_ms);
        assert_eq!(t.last_seen_ms, p.last_seen_ms);
        assert_eq!(t.events, p.events);
        assert_eq!(t.active_hours_total, p.active_hours_total);
        assert_eq!(t.mean_gap_hours, p.mean_gap_hours);
        assert_eq!(t.hour, p.hour);
        assert_eq!(t.hour_requests, p.hour_requests);
        let daily = |how: &[u8; 168]| -> Vec<u32> {
            (0..24)
                .map(|h| (0..7).map(|d| u32::from(how[d * 24 + h])).sum())
                .collect()
        };
        assert_eq!(daily(&t.hour_of_week), daily(&p.hour_of_week));
        for h in [0, 7, 13, 23] {
            assert_eq!(t.hour_of_day_share(h), p.hour_of_day_share(h));
        }
        assert_eq!(t.log_bytes_mean, p.log_bytes_mean);
        assert_eq!(t.endpoints.entries.len(), COLD_ENDPOINTS);
        assert_eq!(
            t.endpoints.entries,
            p.endpoints.top(COLD_ENDPOINTS),
            "the heaviest endpoints are the ones kept"
        );
        assert_eq!(t.origins[0].get(7).map(|e| e.hash), Some(7));
        assert_eq!(t.endpoints.active_hours, p.endpoints.active_hours);
        assert_eq!(
            ColdProfile::freeze(&t),
            c,
            "freezing what a summary thaws into gives the same summary"
        );
    }

    #[test]
    fn a_thawed_profile_advances_with_the_decay_of_the_whole_silence() {
        let mut hot = busy_profile();
        let later = (400 + 24 * 60) * HOUR_MS;
        // Its last hour still open, with a new value met in it.
        hot.endpoints.insert(999, 399, 1.0, 40);
        let mut thawed = ColdProfile::freeze(&hot).thaw(2.0);
        hot.advance_to(later, 24.0 * 21.0, true);
        thawed.advance_to(later, 24.0 * 21.0, true);
        assert_eq!(thawed.active_hours_total, hot.active_hours_total);
        assert_eq!(thawed.mean_gap_hours, hot.mean_gap_hours);
        assert_eq!(
            (thawed.log_bytes_mean, thawed.byte_hours),
            (hot.log_bytes_mean, hot.byte_hours),
            "the last hour's bytes reach the bytes model"
        );
        assert_eq!(
            (thawed.endpoints.active_hours, thawed.endpoints.novel_hours),
            (hot.endpoints.active_hours, hot.endpoints.novel_hours),
            "the last hour counts in the novelty rate"
        );
        assert_eq!(thawed.active_hours, hot.active_hours);
        let top = hot.endpoints.top(1)[0];
        assert_eq!(
            thawed.endpoints.get(top.hash).map(|e| e.weight),
            Some(top.weight)
        );
    }

    #[test]
    fn a_summary_is_a_fraction_of_the_profile_it_replaces() {
        let p = busy_profile();
        let c = ColdProfile::freeze(&p);
        let cold = std::mem::size_of::<ColdProfile>() + c.heap_bytes();
        assert!(
            cold * 2 < p.heap_bytes(),
            "cold {cold} bytes, hot {}",
            p.heap_bytes()
        );
    }
}
