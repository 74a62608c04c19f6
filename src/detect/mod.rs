//! detect: synchronous, per-identity detectors. [`observe`] updates one identity's profile with
//! one event and returns the findings it raised, each with its evidence (baseline vs observed)
//! and its surprise in bits.

mod rules;

use std::hash::Hasher;

use rustc_hash::FxHasher;
use serde_json::{Value, json};

pub use rules::Rules;

use crate::baseline::fleet::Table;
use crate::baseline::origin::{self, Level};
use crate::baseline::stats::{self, bits};
use crate::baseline::{DAY_MS, Fleet, HOUR_MS, Profile};
use crate::decode::time::format_rfc3339_ms;
use crate::event::AccessEvent;
use crate::inventory::IdentityMeta;

/// Every detector, by the name used in alerts (`finding_info.types`), metrics and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    NewEndpoint,
    NewOrigin,
    OutsideWorkload,
    VolumeSpike,
    BytesSpike,
    UnusualHour,
    DeniedBurst,
    Enumeration,
    Dormant,
    AfterExpiry,
}

impl Detector {
    pub const ALL: [Detector; 10] = [
        Detector::NewEndpoint,
        Detector::NewOrigin,
        Detector::OutsideWorkload,
        Detector::VolumeSpike,
        Detector::BytesSpike,
        Detector::UnusualHour,
        Detector::DeniedBurst,
        Detector::Enumeration,
        Detector::Dormant,
        Detector::AfterExpiry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Detector::NewEndpoint => "new_endpoint",
            Detector::NewOrigin => "new_origin",
            Detector::OutsideWorkload => "credential_outside_workload",
            Detector::VolumeSpike => "volume_spike",
            Detector::BytesSpike => "bytes_spike",
            Detector::UnusualHour => "unusual_hour",
            Detector::DeniedBurst => "denied_burst",
            Detector::Enumeration => "enumeration",
            Detector::Dormant => "dormant_reactivation",
            Detector::AfterExpiry => "credential_after_expiry",
        }
    }

    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// One deviation, explained.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub detector: Detector,
    /// Weighted surprise this finding adds to the identity's evidence.
    pub bits: f64,
    /// Probability of the observation under the identity's baseline.
    pub probability: f64,
    pub summary: String,
    pub baseline: Value,
    pub observed: Value,
    pub time_ms: i64,
    pub event_id: Option<String>,
}

/// Hash of an endpoint (action) string, shared by profiles and the fleet table.
pub fn endpoint_hash(action: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(action.as_bytes());
    h.finish()
}

fn finding(
    detector: Detector,
    bits: f64,
    probability: f64,
    summary: String,
    baseline: Value,
    observed: Value,
    ev: &AccessEvent,
) -> Finding {
    Finding {
        detector,
        bits,
        probability,
        summary,
        baseline,
        observed,
        time_ms: ev.time_ms,
        event_id: ev.event_id.clone(),
    }
}

/// Below this surprise a burst finding (denied calls, enumeration) is not worth reporting: one
/// in sixteen windows would show it.
const MIN_WINDOW_BITS: f64 = 4.0;

/// A finding that grows within its window (hour, burst) is reported when it first reaches
/// `min_bits` and again each time its surprise doubles; returns the surprise not yet reported.
fn escalation(reported: &mut f32, bits: f64, min_bits: f64) -> Option<f64> {
    let before = f64::from(*reported);
    if bits >= min_bits && bits >= 2.0 * before && bits > before {
        *reported = bits as f32;
        Some(bits - before)
    } else {
        None
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Updates `p` with `ev` and returns what was unusual about it.
///
/// `is_new` is true for the identity's first event. Time only moves forward: an event older than
/// the profile's current hour is counted in that hour.
pub fn observe(
    p: &mut Profile,
    fleet: &Fleet,
    r: &Rules,
    ev: &AccessEvent,
    is_new: bool,
) -> Vec<Finding> {
    let m = &r.model;
    let d = &m.detectors;
    let mut out = Vec::new();
    let t = ev.time_ms;

    if !is_new && d.dormant.enabled {
        let idle_ms = t - p.last_seen_ms;
        if idle_ms as f64 >= d.dormant.min_idle_days * DAY_MS as f64
            && p.events >= d.dormant.min_prior_events
        {
            let idle_h = idle_ms as f64 / HOUR_MS as f64;
            let gap = f64::from(p.mean_gap_hours).max(1.0);
            // Gaps between active hours taken as exponential with the identity's own mean.
            let prob = (-idle_h / gap).exp();
            let b = bits(prob, d.dormant.max_bits);
            out.push(finding(
                Detector::Dormant,
                b * d.dormant.weight,
                prob,
                format!("dormant for {:.0} days, then active again (its usual gap between active hours is {gap:.1} h)", idle_h / 24.0),
                json!({"last_seen_time": p.last_seen_ms, "mean_gap_hours": round3(gap), "prior_events": p.events}),
                json!({"idle_days": round3(idle_h / 24.0), "action": ev.action}),
                ev,
            ));
        }
    }

    let meta = if r.inventory.is_empty() {
        None
    } else {
        r.inventory.get(&ev.principal)
    };
    let inv = &d.inventory;
    if inv.enabled
        && !p.expiry_reported
        && let Some(exp) = meta.and_then(|m| m.expires_at_ms)
        && t > exp
    {
        p.expiry_reported = true;
        out.push(finding(
            Detector::AfterExpiry,
            inv.expired_bits * inv.weight,
            0.0,
            format!(
                "used {:.1} days after its declared expiry ({})",
                (t - exp) as f64 / DAY_MS as f64,
                format_rfc3339_ms(exp)
            ),
            json!({"expires_at": format_rfc3339_ms(exp), "owner": meta.and_then(|m| m.owner.clone())}),
            json!({"action": ev.action, "ip": ev.origin.ip}),
            ev,
        ));
    }

    let was_mature = p.is_mature(m.warmup.min_active_hours, m.warmup.min_days);
    let fleet_mature = fleet.observe_time(t) as f64 >= m.warmup.min_days * DAY_MS as f64;
    p.advance_to(t, r.half_life_hours, was_mature);
    let first_in_hour = p.hour_requests == 0;
    let mature = p.is_mature(m.warmup.min_active_hours, m.warmup.min_days);
    p.events += 1;
    p.last_seen_ms = p.last_seen_ms.max(t);
    let hour = p.hour as u32;
    let (a, b_prior) = (
        m.baseline.novelty_prior_novel,
        m.baseline.novelty_prior_seen,
    );

    // When it is active.
    if first_in_hour {
        let share = p.hour_of_day_share(p.hour);
        let cold = share < d.unusual_hour.cold_share;
        if cold && mature && d.unusual_hour.enabled && !p.hour_fired.unusual_hour {
            let prob = stats::beta_predictive(
                f64::from(p.cold_hours),
                f64::from(p.active_hours),
                a,
                b_prior,
            );
            let bts = bits(prob, d.unusual_hour.max_bits);
            let hod = p.hour.rem_euclid(24);
            out.push(finding(
                Detector::UnusualHour,
                bts * d.unusual_hour.weight,
                prob,
                format!("active at {hod:02}:00 UTC, an hour of day it is active on {:.0}% of days", share * 100.0),
                json!({"share_of_days_active_at_hour": round3(share), "cold_active_hours": round3(f64::from(p.cold_hours)), "active_hours": round3(f64::from(p.active_hours))}),
                json!({"hour_of_day_utc": hod}),
                ev,
            ));
            p.hour_fired.unusual_hour = true;
        }
        if cold && mature {
            p.cold_hours += 1.0;
        }
    }

    // How much.
    p.hour_requests = p.hour_requests.saturating_add(ev.volume.requests);
    if let Some(bytes) = ev.volume.bytes_out {
        p.hour_bytes_out = p.hour_bytes_out.saturating_add(bytes);
    }
    if mature && d.volume.enabled {
        volume_spike(p, r, ev, &mut out);
        bytes_spike(p, r, ev, &mut out);
    }

    // What it calls.
    let ep = endpoint_hash(&ev.action);
    if !p.endpoints.touch(ep, hour, 1.0) {
        new_endpoint(p, fleet, r, ev, ep, mature, fleet_mature, &mut out);
    }

    // From where.
    new_origin(p, fleet, r, ev, meta, mature, fleet_mature, &mut out);

    // Refusals.
    let len = (d.denied_burst.window_minutes * 60_000.0) as i64;
    p.denied_window.roll(t, len);
    p.denied_window.events += 1;
    if ev.outcome.denied {
        p.denied_window.hits += 1;
    }
    let w = p.denied_window;
    if mature && d.denied_burst.enabled && ev.outcome.denied && w.hits >= d.denied_burst.min_denied
    {
        let p_err = (f64::from(p.denied) + 0.5) / (f64::from(p.calls) + 10.0);
        let prob = stats::binomial_tail(u64::from(w.hits), u64::from(w.events), p_err);
        let bts = bits(prob, d.denied_burst.max_bits);
        if let Some(inc) = escalation(&mut p.denied_window.fired_bits, bts, MIN_WINDOW_BITS) {
            out.push(finding(
                Detector::DeniedBurst,
                inc * d.denied_burst.weight,
                prob,
                format!("{} of {} calls denied within {} min; its usual denied rate is {:.1}%", w.hits, w.events, d.denied_burst.window_minutes, p_err * 100.0),
                json!({"denied_rate": round3(p_err)}),
                json!({"denied": w.hits, "calls": w.events, "window_minutes": d.denied_burst.window_minutes, "last_error": ev.outcome.error_code}),
                ev,
            ));
        }
    }
    p.calls += 1.0;
    if ev.outcome.denied {
        p.denied += 1.0;
    }
    out
}

fn volume_spike(p: &mut Profile, r: &Rules, ev: &AccessEvent, out: &mut Vec<Finding>) {
    let v = &r.model.detectors.volume;
    let x = p.hour_requests;
    if x < v.min_requests || x < p.hour_fired.volume_next_check {
        return;
    }
    let (mu, n) = p.requests.expected(p.hour, v.shrink_hours);
    if n < 3 {
        return;
    }
    let disp = f64::from(p.requests.dispersion).max(1.0);
    // Cheap screen before the exact tail: well inside the usual range is never a spike.
    if f64::from(x) <= mu + 3.0 * (mu * disp).sqrt() + 2.0 {
        return;
    }
    p.hour_fired.volume_next_check = x + (x / 4).max(1);
    let prob = stats::count_tail(u64::from(x), mu, disp);
    let bts = bits(prob, v.max_bits);
    if let Some(inc) = escalation(&mut p.hour_fired.volume_bits, bts, v.min_bits) {
        out.push(finding(
            Detector::VolumeSpike,
            inc * v.weight,
            prob,
            format!("{x} requests so far this hour; it usually makes {mu:.1} at this hour"),
            json!({"expected_requests_this_hour": round3(mu), "dispersion": round3(disp), "hours_observed_at_this_slot": n}),
            json!({"requests_this_hour": x}),
            ev,
        ));
    }
}

fn bytes_spike(p: &mut Profile, r: &Rules, ev: &AccessEvent, out: &mut Vec<Finding>) {
    let v = &r.model.detectors.volume;
    let b = p.hour_bytes_out;
    if b < v.min_bytes || b < p.hour_fired.bytes_next_check || ev.volume.bytes_out.is_none() {
        return;
    }
    p.hour_fired.bytes_next_check = b + b / 2;
    let mean = f64::from(p.log_bytes_mean);
    let sd = f64::from(p.log_bytes_var).sqrt().max(0.75);
    let z = ((b as f64).ln_1p() - mean) / sd;
    let prob = stats::normal_tail(z);
    let bts = bits(prob, v.max_bits);
    if let Some(inc) = escalation(&mut p.hour_fired.bytes_bits, bts, v.min_bits) {
        out.push(finding(
            Detector::BytesSpike,
            inc * v.weight,
            prob,
            format!(
                "{:.1} MB sent out so far this hour; its typical hour moves {:.1} MB",
                b as f64 / 1e6,
                (mean.exp() - 1.0).max(0.0) / 1e6
            ),
            json!({"typical_bytes_out_per_hour": (mean.exp() - 1.0).max(0.0).round(), "log_sd": round3(sd), "hours_with_bytes": p.byte_hours}),
            json!({"bytes_out_this_hour": b}),
            ev,
        ));
    }
}

fn fleet_discount(users: u32, per_doubling: f64) -> f64 {
    (1.0 + f64::from(users)).log2() * per_doubling
}

#[allow(clippy::too_many_arguments)]
fn new_endpoint(
    p: &mut Profile,
    fleet: &Fleet,
    r: &Rules,
    ev: &AccessEvent,
    ep: u64,
    mature: bool,
    fleet_mature: bool,
    out: &mut Vec<Finding>,
) {
    let m = &r.model;
    let d = &m.detectors;
    let hour = p.hour as u32;
    let first_new_this_hour = !p.endpoints.novel_this_hour();
    let p_new = p.endpoints.p_new(
        m.baseline.novelty_prior_novel,
        m.baseline.novelty_prior_seen,
    );
    let users = fleet.users(Table::Endpoints, ep);
    let tier = fleet.adopt(
        Table::Endpoints,
        ep,
        hour,
        || ev.action.clone(),
        || r.tier_of(&ev.action),
    );
    let known = p.endpoints.entries.len();
    p.endpoints.insert(ep, hour, 1.0, m.baseline.max_endpoints);
    p.new_endpoints += 1.0;

    if d.new_endpoint.enabled {
        let novelty = if mature && first_new_this_hour {
            bits(p_new, d.new_endpoint.max_bits)
        } else {
            0.0
        };
        // Sensitivity counts for a young identity only once the fleet has history to judge
        // rarity by; a mature identity's first sensitive call always counts.
        let bonus = if mature || fleet_mature {
            tier.map_or(0.0, |t| r.tiers[t as usize].bonus_bits)
        } else {
            0.0
        };
        // An endpoint many identities call is less surprising, sensitive or not: a new
        // controller listing secrets like its peers is not an attacker doing so for the first
        // time anywhere in the fleet.
        let discount = fleet_discount(users, d.new_endpoint.fleet_discount_bits_per_doubling);
        let total = (novelty + bonus - discount).clamp(0.0, d.new_endpoint.max_bits);
        if total > 0.0 {
            let top: Vec<String> = p
                .endpoints
                .top(6)
                .iter()
                .filter(|e| e.hash != ep)
                .take(5)
                .filter_map(|e| fleet.label(Table::Endpoints, e.hash))
                .collect();
            let tier_name = tier.map(|t| r.tiers[t as usize].name.as_str());
            out.push(finding(
                Detector::NewEndpoint,
                total * d.new_endpoint.weight,
                p_new,
                format!(
                    "first call to {}{} ({} other identities use it; it meets a new endpoint in {:.1}% of its active hours)",
                    ev.action,
                    tier_name.map(|t| format!(", a {t}-sensitivity endpoint")).unwrap_or_default(),
                    users,
                    p_new * 100.0
                ),
                json!({"known_endpoints": known, "top_endpoints": top, "p_new_endpoint_per_active_hour": round3(p_new), "mature": mature}),
                json!({"action": ev.action, "resource": ev.resource, "sensitivity": tier_name, "fleet_identities_using_it": users}),
                ev,
            ));
        }
    }

    // Enumeration: many distinct new endpoints within a short window. During warm-up everything
    // is new, so only sensitive and reconnaissance endpoints that few identities call count then.
    let e = &d.enumeration;
    if !e.enabled
        || (!mature && (!fleet_mature || tier.is_none() || users >= e.warmup_max_fleet_users))
    {
        return;
    }
    let len = (e.window_minutes * 60_000.0) as i64;
    p.enum_window.roll(ev.time_ms, len);
    p.enum_window.hits += 1;
    let w = p.enum_window;
    if w.hits < e.min_distinct {
        return;
    }
    let lambda = if mature {
        (f64::from(p.new_endpoints) / f64::from(p.active_hours).max(1.0)) * e.window_minutes / 60.0
    } else {
        1.0
    }
    .max(0.05);
    let prob = stats::poisson_tail(u64::from(w.hits), lambda);
    let bts = bits(prob, e.max_bits);
    if let Some(inc) = escalation(&mut p.enum_window.fired_bits, bts, MIN_WINDOW_BITS) {
        out.push(finding(
            Detector::Enumeration,
            inc * e.weight,
            prob,
            format!("{} endpoints new to it within {} min (expected {:.2})", w.hits, e.window_minutes, lambda),
            json!({"expected_new_endpoints_per_window": round3(lambda)}),
            json!({"new_endpoints_in_window": w.hits, "window_minutes": e.window_minutes, "latest": ev.action}),
            ev,
        ));
    }
}

struct NewLevel {
    level: Level,
    bits: f64,
    p_new: f64,
    users: u32,
    label: String,
    known: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn new_origin(
    p: &mut Profile,
    fleet: &Fleet,
    r: &Rules,
    ev: &AccessEvent,
    meta: Option<&IdentityMeta>,
    mature: bool,
    fleet_mature: bool,
    out: &mut Vec<Finding>,
) {
    let m = &r.model;
    let d = &m.detectors;
    let cfg = &m.baseline;
    let hour = p.hour as u32;
    let mut new_levels: Vec<NewLevel> = Vec::new();
    let mut coarse_unknown_to_fleet = false;
    origin::for_each_value(&ev.origin, cfg, |v| {
        let set = &mut p.origins[v.level as usize];
        if set.touch(v.hash, hour, 1.0) {
            return;
        }
        let first_new = !set.novel_this_hour();
        let p_new = set.p_new(cfg.novelty_prior_novel, cfg.novelty_prior_seen);
        let users = fleet.users(Table::Origins, v.hash);
        let label = origin::label(&ev.origin, v.level, cfg);
        let known: Vec<String> = set
            .top(3)
            .iter()
            .filter_map(|e| fleet.label(Table::Origins, e.hash))
            .collect();
        fleet.adopt(Table::Origins, v.hash, hour, || label.clone(), || None);
        set.insert(v.hash, hour, 1.0, cfg.max_values_per_origin_level);
        if v.level == Level::Coarse && users == 0 {
            coarse_unknown_to_fleet = true;
        }
        let per_doubling = if v.level == Level::Client {
            d.new_origin.client_fleet_discount_bits_per_doubling
        } else {
            d.new_origin.fleet_discount_bits_per_doubling
        };
        let b = if first_new {
            (bits(p_new, d.new_origin.max_bits) - fleet_discount(users, per_doubling)).max(0.0)
        } else {
            0.0
        };
        new_levels.push(NewLevel {
            level: v.level,
            bits: b,
            p_new,
            users,
            label,
            known,
        });
    });
    if new_levels.is_empty() {
        return;
    }

    // A workload-bound credential used from a public network that neither it nor the fleet knows.
    let ow = &d.outside_workload;
    if ow.enabled
        && fleet_mature
        && coarse_unknown_to_fleet
        && ev.origin.workload.is_bound()
        && ev.origin.ip.is_some_and(origin::is_public)
        && p.events > m.warmup.min_events_for_origin_checks
    {
        let w = &ev.origin.workload;
        let bound_to = w
            .pod
            .as_deref()
            .or(w.instance.as_deref())
            .unwrap_or_default();
        let network = new_levels
            .iter()
            .find(|l| l.level == Level::Coarse)
            .map(|l| l.label.clone())
            .unwrap_or_default();
        let known = new_levels
            .iter()
            .find(|l| l.level == Level::Coarse)
            .map(|l| l.known.clone())
            .unwrap_or_default();
        out.push(finding(
            Detector::OutsideWorkload,
            ow.bits * ow.weight,
            0.0,
            format!("credential bound to workload {bound_to} used from public network {network}, which neither this identity nor any other has used"),
            json!({"known_networks": known}),
            json!({"ip": ev.origin.ip, "network": network, "bound_workload": bound_to, "user_agent": ev.origin.user_agent}),
            ev,
        ));
    }

    // Outside the networks the organisation declared for this identity: known from the first
    // event, so warm-up does not apply. Reported once per new network.
    let inv = &d.inventory;
    if inv.enabled
        && let (Some(m), Some(ip)) = (meta, ev.origin.ip)
        && m.outside_networks(ip)
        && new_levels.iter().any(|l| l.level == Level::Network)
    {
        let declared: Vec<String> = m.networks.iter().map(|c| c.to_string()).collect();
        out.push(finding(
            Detector::OutsideWorkload,
            inv.outside_declared_bits * inv.weight,
            0.0,
            format!(
                "called from {ip}, outside the networks declared for it ({})",
                declared.join(", ")
            ),
            json!({"declared_networks": declared, "owner": m.owner}),
            json!({"ip": ip, "user_agent": ev.origin.user_agent}),
            ev,
        ));
    }

    if !mature || !d.new_origin.enabled {
        return;
    }
    // Network levels are nested: the most surprising one speaks for them all. Client and
    // workload are separate dimensions: each is capped on its own and they add up.
    let cap = d.new_origin.max_bits;
    let net = new_levels
        .iter()
        .filter(|l| l.level.is_network())
        .map(|l| l.bits)
        .fold(0.0, f64::max)
        .min(cap);
    let other: f64 = new_levels
        .iter()
        .filter(|l| !l.level.is_network())
        .map(|l| l.bits.min(cap))
        .sum();
    let total = net + other;
    if total <= 0.0 {
        return;
    }
    let top = new_levels
        .iter()
        .max_by(|a, b| a.bits.total_cmp(&b.bits))
        .expect("non-empty");
    let levels: Vec<Value> = new_levels
        .iter()
        .map(|l| {
            json!({"level": l.level.as_str(), "value": l.label, "known": l.known, "p_new_per_active_hour": round3(l.p_new),
                   "fleet_identities_using_it": l.users, "bits": round3(l.bits)})
        })
        .collect();
    out.push(finding(
        Detector::NewOrigin,
        total * d.new_origin.weight,
        top.p_new,
        format!(
            "new {} {} (it meets a new one in {:.1}% of its active hours; {} other identities use it)",
            top.level.as_str().replace('_', " "),
            top.label,
            top.p_new * 100.0,
            top.users
        ),
        json!({"levels": levels.iter().map(|l| json!({"level": l["level"], "known": l["known"], "p_new_per_active_hour": l["p_new_per_active_hour"]})).collect::<Vec<_>>()}),
        json!({"ip": ev.origin.ip, "user_agent": ev.origin.user_agent, "new_values": levels}),
        ev,
    ));
}
