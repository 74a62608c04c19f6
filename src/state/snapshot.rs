//! The versioned binary snapshot of one identity (`schemas/identity-snapshot.v1.md`), and of the
//! engine-wide state beside the identities. Pure: bytes in, state out.
//!
//! Encoding: postcard (varint integers, IEEE floats as their 4 or 8 bytes, length-prefixed
//! strings and lists; a specified wire format that does not depend on this code), behind a
//! header of magic bytes, the format version and a compatibility fingerprint of the model
//! settings that give stored values their meaning (the network prefixes origins are hashed at).
//! A snapshot of another format or fingerprint is refused with [`SnapshotError::Incompatible`]:
//! the caller drops it with a warning and the identity relearns, instead of misreading it.
//! Smaller caps in a changed model are a migration, not an incompatibility: value sets are
//! trimmed to the new caps, heaviest values kept.
//!
//! The wire types are separate from the engine's own so the format changes only on purpose:
//! every field is listed here once, and the schema document lists the same fields.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::baseline::cold::{COLD_ENDPOINTS, COLD_VALUES_PER_LEVEL, SETS};
use crate::baseline::fleet::{Contribution, Table};
use crate::baseline::lifecycle::{LastUse, Lifecycle, Stage};
use crate::baseline::pin::{Pin, Pins};
use crate::baseline::resources::{PermissionUse, Permissions, ResourceUse, Resources};
use crate::baseline::{
    ColdProfile, Entry, HourFired, MatureHours, Profile, Seasonality, ValueSet, Window,
};
use crate::config::Rules;
use crate::decide::{OpenAlert, RiskState, Severity};
use crate::decode::credential_kind;
use crate::detect::{Detector, Evidence, Finding};
use crate::engine::{ColdIdentity, IdentityState, Tracked};
use crate::event::PrincipalType;
use crate::state::group::PartitionReport;

/// The snapshot format version this code writes for identities. Format 2 added workload pins
/// after a hot identity's body; format 3 the dormancy lifecycle after the body of hot and cold
/// identities alike; format 4 the declared-policy findings already reported, one byte after the
/// lifecycle; format 5 the resources and permissions the actions of hot and cold identities
/// used, after the days of use. Formats 1 to 4 are still read (their identities have no pins,
/// or are active in the lifecycle with nothing known of their last use, or have reported no
/// declared-policy finding, until their next event; or know no resources, which
/// least-privilege policies grant on `*`).
pub const FORMAT: u16 = 5;

/// The oldest format this code reads.
const OLDEST_READ: u16 = 1;

/// First bytes of every identity snapshot, and of the engine-wide state.
const MAGIC: [u8; 3] = *b"DWI";
const COLD_MAGIC: [u8; 3] = *b"DWC";
const ENGINE_MAGIC: [u8; 3] = *b"DWE";
const FLEET_MAGIC: [u8; 3] = *b"DWF";
const REPORT_MAGIC: [u8; 3] = *b"DWG";
const LIFECYCLE_MAGIC: [u8; 3] = *b"DWL";

/// Changelog key of the dormancy lifecycle's engine-wide state, written by the instance that
/// issues the declared-and-never-used identities' steps (principal keys never start with `\u{1}`).
pub const LIFECYCLE_KEY: &str = "\u{1}lifecycle";

/// Changelog keys of fleet contributions start with this (principal keys never do).
const FLEET_KEY: &str = "\u{1}fleet/";

/// The changelog key of what the identities of input topic `topic` (in the key's partition)
/// contributed to one fleet value. Two input topics share a changelog partition number, so the
/// topic is part of the key.
pub fn contribution_key(table: Table, hash: u64, topic: &str) -> String {
    let t = match table {
        Table::Endpoints => "endpoint",
        Table::Origins => "origin",
    };
    format!("{FLEET_KEY}{t}/{hash:016x}/{topic}")
}

/// The table, value and input topic of a contribution key (keys written before the topic was
/// part of them have none); `None` for an identity's key.
pub fn parse_contribution_key(key: &str) -> Option<(Table, u64, Option<&str>)> {
    let rest = key.strip_prefix(FLEET_KEY)?;
    let (t, rest) = rest.split_once('/')?;
    let (h, topic) = match rest.split_once('/') {
        Some((h, topic)) => (h, Some(topic)),
        None => (rest, None),
    };
    let table = match t {
        "endpoint" => Table::Endpoints,
        "origin" => Table::Origins,
        _ => return None,
    };
    Some((table, u64::from_str_radix(h, 16).ok()?, topic))
}

#[derive(Serialize, Deserialize)]
struct ContributionV1 {
    users: u32,
    last_hour: u32,
    label: String,
}

/// Why a snapshot could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a driftwatch snapshot (bad magic bytes)")]
    NotASnapshot,
    #[error(
        "snapshot written by format {format} with model fingerprint {fingerprint:016x}; this driftwatch reads formats {OLDEST_READ} to {FORMAT} with fingerprint {expected:016x} (the network prefixes changed, or driftwatch did): the identity relearns"
    )]
    Incompatible {
        format: u16,
        fingerprint: u64,
        expected: u64,
    },
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
}

impl From<postcard::Error> for SnapshotError {
    fn from(e: postcard::Error) -> Self {
        SnapshotError::Corrupt(e.to_string())
    }
}

/// The fingerprint of the model settings stored values depend on: origin values are hashes of
/// addresses masked at these prefixes, so a snapshot taken under other prefixes means nothing.
pub fn fingerprint(rules: &Rules) -> u64 {
    let b = &rules.model.baseline;
    let canonical = format!(
        // Format 1's text: what the stored hashes mean has not changed since.
        "format=1;hash=fxhash2;ipv4={}/{};ipv6={}/{}",
        b.ipv4_network_prefix, b.ipv4_coarse_prefix, b.ipv6_network_prefix, b.ipv6_coarse_prefix
    );
    let d = Sha256::digest(canonical.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("a SHA-256 digest has 8 bytes"))
}

#[derive(Serialize, Deserialize)]
struct Header {
    magic: [u8; 3],
    format: u16,
    fingerprint: u64,
}

/// A 64-bit hash, written as its 8 bytes (a varint of a random number would take 10).
#[derive(Debug, Serialize, Deserialize, Clone, Copy)]
struct Hash64([u8; 8]);

/// The last input offset applied to an identity from one source partition: records at or below
/// it are not learned again after a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Serialize, Deserialize)]
struct EntryV1 {
    hash: Hash64,
    weight: f32,
    /// Hours before the profile's current hour (small varints, not absolute hour indices).
    first_ago: u32,
    last_ago: u32,
}

#[derive(Serialize, Deserialize)]
struct ValueSetV1 {
    entries: Vec<EntryV1>,
    active_hours: f32,
    novel_hours: f32,
    seen_this_hour: bool,
    novel_this_hour: bool,
    new_this_hour: u16,
}

#[derive(Serialize, Deserialize)]
struct WindowV1 {
    start_ms: i64,
    events: u32,
    hits: u32,
    fired_bits: f32,
}

#[derive(Serialize, Deserialize)]
struct ProfileV1 {
    first_seen_ms: i64,
    last_seen_ms: i64,
    events: u64,
    active_hours_total: u32,
    active_hours: f32,
    cold_hours: f32,
    mean_gap_hours: f32,
    /// `i64::MIN` before the first active hour closed.
    last_active_hour: i64,
    hour: i64,
    hour_requests: u32,
    hour_bytes_out: u64,
    fired_volume_bits: f32,
    fired_bytes_bits: f32,
    volume_next_check: u32,
    bytes_next_check: u64,
    fired_unusual_hour: bool,
    endpoints: ValueSetV1,
    /// One per origin level, most specific first.
    origins: Vec<ValueSetV1>,
    /// 168 active-hour counts, Monday 00:00 UTC first.
    hour_of_week: Vec<u8>,
    /// 48 slots: weekday hours of day, then weekend hours of day.
    season_mean: Vec<f32>,
    season_updates: Vec<u16>,
    season_overall: f32,
    season_dispersion: f32,
    season_sq_dev: f32,
    season_mean_mass: f32,
    season_pooled: u32,
    log_bytes_mean: f32,
    log_bytes_var: f32,
    byte_hours: u16,
    calls: f32,
    denied: f32,
    new_endpoints: f32,
    denied_window: WindowV1,
    enum_window: WindowV1,
    expiry_reported: bool,
}

#[derive(Serialize, Deserialize)]
struct FindingV1 {
    detector: String,
    bits: f64,
    probability: f64,
    summary: String,
    /// JSON text.
    baseline: String,
    observed: String,
    time_ms: i64,
    event_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct OpenAlertV1 {
    uid: String,
    cause: String,
    first_seen_ms: i64,
    last_seen_ms: i64,
    count: u32,
    score: u8,
    severity_id: u8,
    /// Detector names.
    types: Vec<String>,
    command_id: Option<String>,
    command_withheld: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct RiskV1 {
    evidence: f64,
    at_ms: i64,
    recent: Vec<FindingV1>,
    open: Vec<OpenAlertV1>,
}

#[derive(Serialize, Deserialize)]
struct IdentityV1 {
    applied: Vec<AppliedOffset>,
    profile: ProfileV1,
    risk: RiskV1,
}

#[derive(Serialize, Deserialize)]
struct ColdValuesV1 {
    entries: Vec<EntryV1>,
    active_hours: f32,
    novel_hours: f32,
    seen_this_hour: bool,
    novel_this_hour: bool,
}

/// The cold summary of an identity silent for `baseline.cold_after_days`.
#[derive(Serialize, Deserialize)]
struct ColdV1 {
    applied: Vec<AppliedOffset>,
    first_seen_ms: i64,
    last_seen_ms: i64,
    events: u64,
    active_hours_total: u32,
    mean_gap_hours: f32,
    last_active_hour: i64,
    hour: i64,
    hour_requests: u32,
    hour_bytes_out: u64,
    active_hours: f32,
    cold_hours: f32,
    new_endpoints: f32,
    /// 24 active-hour counts by hour of day (UTC), summed over the week.
    hour_of_day: Vec<u16>,
    log_bytes_mean: f32,
    log_bytes_var: f32,
    byte_hours: u16,
    calls: f32,
    denied: f32,
    endpoints: ColdValuesV1,
    origins: Vec<ColdValuesV1>,
    expiry_reported: bool,
}

fn entries_out(entries: &[Entry], hour: u32) -> Vec<EntryV1> {
    entries
        .iter()
        .map(|e| EntryV1 {
            hash: Hash64(e.hash.to_le_bytes()),
            weight: e.weight,
            first_ago: hour.wrapping_sub(e.first_hour()),
            last_ago: hour.wrapping_sub(e.last_hour),
        })
        .collect()
}

fn entries_in(entries: Vec<EntryV1>, hour: u32) -> Vec<Entry> {
    entries
        .into_iter()
        .map(|e| {
            // Days of use are unknown before format 4; the format 4 trailer sets them.
            Entry::new(
                u64::from_le_bytes(e.hash.0),
                e.weight,
                hour.wrapping_sub(e.first_ago),
                hour.wrapping_sub(e.last_ago),
                0,
            )
        })
        .collect()
}

fn cold_values_out(c: &ColdProfile, i: usize, hour: u32) -> ColdValuesV1 {
    ColdValuesV1 {
        entries: entries_out(c.set(i), hour),
        active_hours: c.novelty[i].0,
        novel_hours: c.novelty[i].1,
        seen_this_hour: c.hour_flags[i] & 1 != 0,
        novel_this_hour: c.hour_flags[i] & 2 != 0,
    }
}

fn cold_out(c: &ColdProfile, applied: &[AppliedOffset]) -> ColdV1 {
    let hour = c.hour as u32;
    ColdV1 {
        applied: applied.to_vec(),
        first_seen_ms: c.first_seen_ms,
        last_seen_ms: c.last_seen_ms,
        events: c.events,
        active_hours_total: c.active_hours_total,
        mean_gap_hours: c.mean_gap_hours,
        last_active_hour: c.last_active_hour,
        hour: c.hour,
        hour_requests: c.hour_requests,
        hour_bytes_out: c.hour_bytes_out,
        active_hours: c.active_hours,
        cold_hours: c.cold_hours,
        new_endpoints: c.new_endpoints,
        hour_of_day: c.hour_of_day.to_vec(),
        log_bytes_mean: c.log_bytes_mean,
        log_bytes_var: c.log_bytes_var,
        byte_hours: c.byte_hours,
        calls: c.calls,
        denied: c.denied,
        endpoints: cold_values_out(c, 0, hour),
        origins: (1..SETS).map(|i| cold_values_out(c, i, hour)).collect(),
        expiry_reported: c.expiry_reported,
    }
}

fn cold_in(c: ColdV1, rules: &Rules) -> Result<ColdProfile, SnapshotError> {
    let b = &rules.model.baseline;
    let hour = c.hour as u32;
    if c.origins.len() != SETS - 1 {
        return Err(SnapshotError::Corrupt(format!(
            "origins has {} levels, expected {}",
            c.origins.len(),
            SETS - 1
        )));
    }
    let hour_of_day: [u16; 24] = fixed(c.hour_of_day, "hour_of_day")?;
    if let Some(n) = hour_of_day.iter().find(|n| **n > 7 * 255) {
        return Err(SnapshotError::Corrupt(format!(
            "hour_of_day count {n} exceeds a week of saturated hours"
        )));
    }
    let mut novelty = [(0.0, 0.0); SETS];
    let mut hour_flags = [0u8; SETS];
    let mut counts = [0u8; SETS];
    let mut values = Vec::new();
    let sets = std::iter::once((c.endpoints, b.max_endpoints.min(COLD_ENDPOINTS))).chain(
        c.origins
            .into_iter()
            .map(|o| (o, b.max_values_per_origin_level.min(COLD_VALUES_PER_LEVEL))),
    );
    for (i, (v, cap)) in sets.enumerate() {
        let set = ValueSet {
            entries: entries_in(v.entries, hour),
            ..ValueSet::default()
        };
        // A smaller cap in a changed model keeps the heaviest, as for hot profiles.
        let top = set.top(cap);
        novelty[i] = (v.active_hours, v.novel_hours);
        hour_flags[i] = u8::from(v.seen_this_hour) | (u8::from(v.novel_this_hour) << 1);
        counts[i] = top.len() as u8;
        values.extend(top);
    }
    Ok(ColdProfile {
        lifecycle: Lifecycle::default(),
        resources: Resources::default(),
        permissions: Permissions::default(),
        first_seen_ms: c.first_seen_ms,
        last_seen_ms: c.last_seen_ms,
        events: c.events,
        active_hours_total: c.active_hours_total,
        mean_gap_hours: c.mean_gap_hours,
        last_active_hour: c.last_active_hour,
        hour: c.hour,
        hour_requests: c.hour_requests,
        hour_bytes_out: c.hour_bytes_out,
        hour_flags,
        active_hours: c.active_hours,
        cold_hours: c.cold_hours,
        new_endpoints: c.new_endpoints,
        hour_of_day,
        log_bytes_mean: c.log_bytes_mean,
        log_bytes_var: c.log_bytes_var,
        byte_hours: c.byte_hours,
        calls: c.calls,
        denied: c.denied,
        novelty,
        counts,
        values: values.into_boxed_slice(),
        expiry_reported: c.expiry_reported,
    })
}

fn window_out(w: &Window) -> WindowV1 {
    WindowV1 {
        start_ms: w.start_ms,
        events: w.events,
        hits: w.hits,
        fired_bits: w.fired_bits,
    }
}

fn window_in(w: WindowV1) -> Window {
    Window {
        start_ms: w.start_ms,
        events: w.events,
        hits: w.hits,
        fired_bits: w.fired_bits,
    }
}

fn values_out(s: &ValueSet, hour: u32) -> ValueSetV1 {
    ValueSetV1 {
        entries: entries_out(&s.entries, hour),
        active_hours: s.active_hours,
        novel_hours: s.novel_hours,
        seen_this_hour: s.seen_this_hour,
        novel_this_hour: s.novel_this_hour,
        new_this_hour: s.new_this_hour,
    }
}

fn values_in(s: ValueSetV1, hour: u32, cap: usize) -> ValueSet {
    let mut set = ValueSet {
        entries: entries_in(s.entries, hour),
        active_hours: s.active_hours,
        novel_hours: s.novel_hours,
        seen_this_hour: s.seen_this_hour,
        novel_this_hour: s.novel_this_hour,
        new_this_hour: s.new_this_hour,
    };
    set.trim_to(cap);
    set
}

fn fixed<T, const N: usize>(v: Vec<T>, what: &str) -> Result<[T; N], SnapshotError> {
    <[T; N]>::try_from(v)
        .map_err(|v| SnapshotError::Corrupt(format!("{what} has {} values, expected {N}", v.len())))
}

fn detector(name: &str) -> Result<Detector, SnapshotError> {
    Detector::parse(name)
        .ok_or_else(|| SnapshotError::Corrupt(format!("unknown detector `{name}`")))
}

fn profile_out(p: &Profile) -> ProfileV1 {
    let hour = p.hour as u32;
    ProfileV1 {
        first_seen_ms: p.first_seen_ms,
        last_seen_ms: p.last_seen_ms,
        events: p.events,
        active_hours_total: p.active_hours_total,
        active_hours: p.active_hours,
        cold_hours: p.cold_hours,
        mean_gap_hours: p.mean_gap_hours,
        last_active_hour: p.last_active_hour,
        hour: p.hour,
        hour_requests: p.hour_requests,
        hour_bytes_out: p.hour_bytes_out,
        fired_volume_bits: p.hour_fired.volume_bits,
        fired_bytes_bits: p.hour_fired.bytes_bits,
        volume_next_check: p.hour_fired.volume_next_check,
        bytes_next_check: p.hour_fired.bytes_next_check,
        fired_unusual_hour: p.hour_fired.unusual_hour,
        endpoints: values_out(&p.endpoints, hour),
        origins: p.origins.iter().map(|o| values_out(o, hour)).collect(),
        hour_of_week: p.hour_of_week.to_vec(),
        season_mean: p.requests.mean.to_vec(),
        season_updates: p.requests.updates.to_vec(),
        season_overall: p.requests.overall,
        season_dispersion: p.requests.dispersion,
        season_sq_dev: p.requests.sq_dev,
        season_mean_mass: p.requests.mean_mass,
        season_pooled: p.requests.pooled,
        log_bytes_mean: p.log_bytes_mean,
        log_bytes_var: p.log_bytes_var,
        byte_hours: p.byte_hours,
        calls: p.calls,
        denied: p.denied,
        new_endpoints: p.new_endpoints,
        denied_window: window_out(&p.denied_window),
        enum_window: window_out(&p.enum_window),
        expiry_reported: p.expiry_reported,
    }
}

fn profile_in(p: ProfileV1, rules: &Rules) -> Result<Profile, SnapshotError> {
    let b = &rules.model.baseline;
    let hour = p.hour as u32;
    let origins: Vec<ValueSet> = p
        .origins
        .into_iter()
        .map(|o| values_in(o, hour, b.max_values_per_origin_level))
        .collect();
    Ok(Profile {
        lifecycle: Lifecycle::default(),
        first_seen_ms: p.first_seen_ms,
        last_seen_ms: p.last_seen_ms,
        events: p.events,
        active_hours_total: p.active_hours_total,
        active_hours: p.active_hours,
        cold_hours: p.cold_hours,
        mean_gap_hours: p.mean_gap_hours,
        last_active_hour: p.last_active_hour,
        hour: p.hour,
        hour_requests: p.hour_requests,
        hour_bytes_out: p.hour_bytes_out,
        hour_fired: HourFired {
            volume_bits: p.fired_volume_bits,
            bytes_bits: p.fired_bytes_bits,
            volume_next_check: p.volume_next_check,
            bytes_next_check: p.bytes_next_check,
            unusual_hour: p.fired_unusual_hour,
        },
        endpoints: values_in(p.endpoints, hour, b.max_endpoints),
        origins: fixed(origins, "origins")?,
        hour_of_week: fixed(p.hour_of_week, "hour_of_week")?,
        requests: Seasonality {
            mean: fixed(p.season_mean, "season_mean")?,
            updates: fixed(p.season_updates, "season_updates")?,
            overall: p.season_overall,
            dispersion: p.season_dispersion,
            sq_dev: p.season_sq_dev,
            mean_mass: p.season_mean_mass,
            pooled: p.season_pooled,
        },
        log_bytes_mean: p.log_bytes_mean,
        log_bytes_var: p.log_bytes_var,
        byte_hours: p.byte_hours,
        calls: p.calls,
        denied: p.denied,
        new_endpoints: p.new_endpoints,
        denied_window: window_in(p.denied_window),
        enum_window: window_in(p.enum_window),
        expiry_reported: p.expiry_reported,
        pins: Pins::default(),
        resources: Resources::default(),
        permissions: Permissions::default(),
        mature_hours: MatureHours::default(),
    })
}

/// What format 2 writes after a hot identity's body.
#[derive(Serialize, Deserialize, Default)]
struct HotExtV2 {
    pins: Vec<PinV1>,
    mature_active_hours: u32,
    mature_cold_hours: u32,
}

/// Where an identity's silence stands in the dormancy lifecycle and what its last event showed of
/// it: written by format 3 after the body of hot and cold identities alike.
#[derive(Serialize, Deserialize)]
struct LifecycleV1 {
    stage: u8,
    provider: String,
    identity_type: String,
    tenant: Option<String>,
    credential_id: Option<String>,
    credential_type: Option<String>,
    cluster: Option<String>,
}

fn lifecycle_out(l: &Lifecycle) -> LifecycleV1 {
    let last = &l.last;
    LifecycleV1 {
        stage: l.stage.id(),
        provider: last.provider.to_owned(),
        identity_type: last.identity_type.as_str().to_owned(),
        tenant: last.tenant.clone(),
        credential_id: last.credential_id.clone(),
        credential_type: last.credential_type.map(str::to_owned),
        cluster: last.cluster.clone(),
    }
}

fn lifecycle_in(v: LifecycleV1) -> Result<Lifecycle, SnapshotError> {
    let stage = Stage::from_id(v.stage).ok_or(SnapshotError::Corrupt(format!(
        "lifecycle stage {}",
        v.stage
    )))?;
    let provider = match v.provider.as_str() {
        "aws" => "aws",
        "kubernetes" => "kubernetes",
        "gcp" => "gcp",
        _ => "generic",
    };
    Ok(Lifecycle {
        notices: 0,
        stage,
        last: LastUse {
            provider,
            identity_type: PrincipalType::parse(&v.identity_type),
            tenant: v.tenant,
            credential_id: v.credential_id,
            credential_type: v
                .credential_type
                .as_deref()
                .map(|k| credential_kind(Some(k))),
            cluster: v.cluster,
        },
    })
}

/// Appends the lifecycle trailer, and (from format 4) the declared-policy findings reported and
/// the distinct days of use of every value, in the order the body lists them.
fn put_lifecycle(out: &mut Vec<u8>, l: &Lifecycle, days: impl Iterator<Item = u16>) {
    postcard::to_io(&lifecycle_out(l), &mut *out).expect("writing to a Vec cannot fail");
    out.push(l.notices);
    let days: Vec<u16> = days.collect();
    postcard::to_io(&days, &mut *out).expect("writing to a Vec cannot fail");
}

/// A lifecycle trailer, the values' days of use, and the bytes after them.
type Trailer<'b> = (Lifecycle, Vec<u16>, &'b [u8]);

/// The lifecycle trailer in `rest` of a snapshot of `format` (from 3 on), with the values' days
/// of use (from 4 on), and what follows it.
fn take_lifecycle(format: u16, rest: &[u8]) -> Result<Trailer<'_>, SnapshotError> {
    if format < 3 {
        return Ok((Lifecycle::default(), Vec::new(), &[]));
    }
    let (v, rest): (LifecycleV1, &[u8]) = postcard::take_from_bytes(rest)?;
    let mut l = lifecycle_in(v)?;
    if format < 4 {
        return Ok((l, Vec::new(), &[]));
    }
    let (notices, rest) = rest
        .split_first()
        .ok_or_else(|| SnapshotError::Corrupt("no declared-findings byte".into()))?;
    l.notices = *notices;
    let (days, rest): (Vec<u16>, &[u8]) = postcard::take_from_bytes(rest)?;
    Ok((l, days, rest))
}

/// One resource scope an action used: written by format 5 after the trailer of hot and cold
/// identities alike.
#[derive(Serialize, Deserialize)]
struct ResourceV1 {
    action: Hash64,
    last_hour: u32,
    uses: u32,
    scope: String,
}

/// One permission an action was checked for: written by format 5 after the resources.
#[derive(Serialize, Deserialize)]
struct PermissionV1 {
    action: Hash64,
    last_hour: u32,
    permission: String,
}

/// What format 5 writes after the lifecycle trailer of hot and cold identities alike.
#[derive(Serialize, Deserialize, Default)]
struct UsesV1 {
    resources: Vec<ResourceV1>,
    permissions: Vec<PermissionV1>,
}

fn uses_out(r: &Resources, p: &Permissions) -> UsesV1 {
    UsesV1 {
        resources: r
            .0
            .iter()
            .map(|u| ResourceV1 {
                action: Hash64(u.action.to_le_bytes()),
                last_hour: u.last_hour,
                uses: u.uses,
                scope: u.scope.to_string(),
            })
            .collect(),
        permissions: p
            .0
            .iter()
            .map(|u| PermissionV1 {
                action: Hash64(u.action.to_le_bytes()),
                last_hour: u.last_hour,
                permission: u.permission.to_string(),
            })
            .collect(),
    }
}

fn put_uses(out: &mut Vec<u8>, r: &Resources, p: &Permissions) {
    postcard::to_io(&uses_out(r, p), &mut *out).expect("writing to a Vec cannot fail");
}

/// The resources and permissions in `rest` of a snapshot of `format` (none before 5), each
/// within `cap` (a smaller cap in the model forgets them: policies grant on `*`, and GCP
/// actions are mapped from their names, until relearnt).
fn take_uses(
    format: u16,
    rest: &[u8],
    cap: usize,
) -> Result<(Resources, Permissions), SnapshotError> {
    if format < 5 {
        return Ok(Default::default());
    }
    let v: UsesV1 = postcard::from_bytes(rest)?;
    let mut resources: thin_vec::ThinVec<ResourceUse> = v
        .resources
        .into_iter()
        .map(|r| ResourceUse {
            action: u64::from_le_bytes(r.action.0),
            last_hour: r.last_hour,
            uses: r.uses,
            scope: r.scope.into(),
        })
        .collect();
    let mut permissions: thin_vec::ThinVec<PermissionUse> = v
        .permissions
        .into_iter()
        .map(|p| PermissionUse {
            action: u64::from_le_bytes(p.action.0),
            last_hour: p.last_hour,
            permission: p.permission.into(),
        })
        .collect();
    if resources.len() > cap {
        resources.clear();
    }
    if permissions.len() > cap {
        permissions.clear();
    }
    Ok((Resources(resources), Permissions(permissions)))
}

/// A value's days of use as written: the count, and from format 5 the top bit set when the
/// endpoint must be granted on every resource ([`Entry::any_resource`]).
fn days_word(e: &Entry) -> u16 {
    e.days()
        | if e.any_resource() {
            ANY_RESOURCE_BIT
        } else {
            0
        }
}

const ANY_RESOURCE_BIT: u16 = 1 << 15;

/// Gives `entries` their days of use (and resource flag), in order; left unknown (0) when the
/// counts differ (a smaller cap in the model trimmed the values on restore).
fn set_days<'e>(entries: impl ExactSizeIterator<Item = &'e mut Entry>, days: &[u16]) {
    if entries.len() == days.len() {
        for (e, d) in entries.zip(days) {
            e.set_days(d & !ANY_RESOURCE_BIT);
            if d & ANY_RESOURCE_BIT != 0 {
                e.set_any_resource();
            }
        }
    }
}

/// Every value of a hot profile, in the order the snapshot body lists them.
fn hot_entries(p: &Profile) -> impl Iterator<Item = &Entry> {
    std::iter::once(&p.endpoints)
        .chain(p.origins.iter())
        .flat_map(|s| s.entries.iter())
}

/// A workload pin.
#[derive(Serialize, Deserialize)]
struct PinV1 {
    key: Hash64,
    since_ms: i64,
    last_ms: i64,
    networks: Vec<Hash64>,
    clients: Vec<Hash64>,
    reported: Vec<Hash64>,
    network_label: String,
    client_label: String,
}

fn pin_out(p: &Pin) -> PinV1 {
    let h = |v: &[u64]| v.iter().map(|x| Hash64(x.to_le_bytes())).collect();
    PinV1 {
        key: Hash64(p.key.to_le_bytes()),
        since_ms: p.since_ms,
        last_ms: p.last_ms,
        networks: h(p.networks.values()),
        clients: h(p.clients.values()),
        reported: h(p.reported.values()),
        network_label: p.network_label.to_string(),
        client_label: p.client_label.to_string(),
    }
}

fn pin_in(p: PinV1) -> Result<Pin, SnapshotError> {
    let h = |x: &Hash64| u64::from_le_bytes(x.0);
    let (Some(first_network), Some(first_client)) = (p.networks.first(), p.clients.first()) else {
        return Err(SnapshotError::Corrupt(
            "a pin without networks or clients".into(),
        ));
    };
    let mut pin = Pin::new(
        h(&p.key),
        p.since_ms,
        (h(first_network), &p.network_label),
        (h(first_client), &p.client_label),
    );
    pin.last_ms = p.last_ms;
    for n in &p.networks[1..] {
        pin.networks.add(h(n));
    }
    for c in &p.clients[1..] {
        pin.clients.add(h(c));
    }
    for r in &p.reported {
        pin.reported.add(h(r));
    }
    Ok(pin)
}

fn finding_out(f: &Finding) -> FindingV1 {
    FindingV1 {
        detector: f.detector.as_str().to_owned(),
        bits: f.bits,
        probability: f.probability,
        summary: f.summary.clone(),
        baseline: f.baseline.text().to_owned(),
        observed: f.observed.text().to_owned(),
        time_ms: f.time_ms,
        event_id: f.event_id.clone(),
    }
}

fn evidence(text: String) -> Result<Evidence, SnapshotError> {
    Evidence::parse(text).map_err(|e| SnapshotError::Corrupt(format!("evidence: {e}")))
}

fn finding_in(f: FindingV1) -> Result<Finding, SnapshotError> {
    Ok(Finding {
        detector: detector(&f.detector)?,
        bits: f.bits,
        probability: f.probability,
        summary: f.summary,
        baseline: evidence(f.baseline)?,
        observed: evidence(f.observed)?,
        time_ms: f.time_ms,
        event_id: f.event_id,
    })
}

fn open_out(o: &OpenAlert) -> OpenAlertV1 {
    OpenAlertV1 {
        uid: o.uid.clone(),
        cause: o.cause.as_str().to_owned(),
        first_seen_ms: o.first_seen_ms,
        last_seen_ms: o.last_seen_ms,
        count: o.count,
        score: o.score,
        severity_id: o.severity.id(),
        types: Detector::ALL
            .iter()
            .filter(|d| o.types & d.bit() != 0)
            .map(|d| d.as_str().to_owned())
            .collect(),
        command_id: o.command_id.clone(),
        command_withheld: o.command_withheld.clone(),
    }
}

fn open_in(o: OpenAlertV1) -> Result<OpenAlert, SnapshotError> {
    let mut types = 0u16;
    for t in &o.types {
        types |= detector(t)?.bit();
    }
    Ok(OpenAlert {
        uid: o.uid,
        cause: detector(&o.cause)?,
        first_seen_ms: o.first_seen_ms,
        last_seen_ms: o.last_seen_ms,
        count: o.count,
        score: o.score,
        severity: Severity::from_id(o.severity_id).ok_or_else(|| {
            SnapshotError::Corrupt(format!("unknown severity_id {}", o.severity_id))
        })?,
        types,
        command_id: o.command_id,
        command_withheld: o.command_withheld,
    })
}

/// Encodes and decodes snapshots under one model: its fingerprint is computed once.
#[derive(Debug, Clone, Copy)]
pub struct Codec<'r> {
    rules: &'r Rules,
    fingerprint: u64,
}

impl<'r> Codec<'r> {
    pub fn new(rules: &'r Rules) -> Codec<'r> {
        Codec {
            rules,
            fingerprint: fingerprint(rules),
        }
    }

    fn header(&self, magic: [u8; 3]) -> Vec<u8> {
        postcard::to_stdvec(&Header {
            magic,
            // Only identities changed in formats 2 and 3: every other record is still written
            // as format 1, so instances of earlier releases keep reading them in a rolling
            // upgrade (and after a rollback). An identity they cannot read relearns.
            format: if magic == MAGIC || magic == COLD_MAGIC {
                FORMAT
            } else {
                1
            },
            fingerprint: self.fingerprint,
        })
        .expect("a header always encodes")
    }

    /// The body after a valid header with `magic`.
    fn body<'b>(&self, bytes: &'b [u8], magic: [u8; 3]) -> Result<&'b [u8], SnapshotError> {
        self.versioned_body(bytes, magic).map(|(_, b)| b)
    }

    /// The format and body after a valid header with `magic`.
    fn versioned_body<'b>(
        &self,
        bytes: &'b [u8],
        magic: [u8; 3],
    ) -> Result<(u16, &'b [u8]), SnapshotError> {
        let (h, rest): (Header, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|_| SnapshotError::NotASnapshot)?;
        if h.magic != magic {
            return Err(SnapshotError::NotASnapshot);
        }
        if !(OLDEST_READ..=FORMAT).contains(&h.format) || h.fingerprint != self.fingerprint {
            return Err(SnapshotError::Incompatible {
                format: h.format,
                fingerprint: h.fingerprint,
                expected: self.fingerprint,
            });
        }
        Ok((h.format, rest))
    }

    /// Encodes one identity's state (hot, or its cold summary), with the input offsets applied
    /// to it.
    pub fn encode_identity(&self, s: &Tracked, applied: &[AppliedOffset]) -> Vec<u8> {
        match s {
            Tracked::Hot(s) => {
                let mut out = self.encode(MAGIC, &identity_out(s, applied));
                let ext = HotExtV2 {
                    pins: s.profile.pins.0.iter().map(pin_out).collect(),
                    mature_active_hours: s.profile.mature_hours.active,
                    mature_cold_hours: s.profile.mature_hours.cold,
                };
                postcard::to_io(&ext, &mut out).expect("writing to a Vec cannot fail");
                let days = hot_entries(&s.profile).map(days_word);
                put_lifecycle(&mut out, &s.profile.lifecycle, days);
                put_uses(&mut out, &s.profile.resources, &s.profile.permissions);
                out
            }
            Tracked::Cold(c) => {
                let mut out = self.encode(COLD_MAGIC, &cold_out(&c.profile, applied));
                let days = c.profile.values.iter().map(days_word);
                put_lifecycle(&mut out, &c.profile.lifecycle, days);
                put_uses(&mut out, &c.profile.resources, &c.profile.permissions);
                out
            }
        }
    }

    /// Decodes one identity's state, hot or cold (its owner tag is left 0 for the caller to
    /// set), and the input offsets applied to it.
    ///
    /// # Errors
    /// [`SnapshotError`]: not a snapshot, written under another format or model fingerprint, or
    /// corrupt.
    pub fn decode_identity(
        &self,
        bytes: &[u8],
    ) -> Result<(Tracked, Vec<AppliedOffset>), SnapshotError> {
        if bytes.starts_with(&COLD_MAGIC) {
            let (format, body) = self.versioned_body(bytes, COLD_MAGIC)?;
            let (body, rest): (ColdV1, &[u8]) = postcard::take_from_bytes(body)?;
            let applied = body.applied.clone();
            let mut profile = cold_in(body, self.rules)?;
            let (lifecycle, days, rest) = take_lifecycle(format, rest)?;
            profile.lifecycle = lifecycle;
            (profile.resources, profile.permissions) =
                take_uses(format, rest, self.rules.model.baseline.max_resources)?;
            set_days(profile.values.iter_mut(), &days);
            let cold = ColdIdentity {
                profile,
                owner: 0,
                applied: Vec::new(),
                changed: false,
            };
            return Ok((Tracked::Cold(Box::new(cold)), applied));
        }
        let (format, rest) = self.versioned_body(bytes, MAGIC)?;
        let (body, rest): (IdentityV1, &[u8]) = postcard::take_from_bytes(rest)?;
        let (ext, rest): (HotExtV2, &[u8]) = if format >= 2 {
            postcard::take_from_bytes(rest)?
        } else {
            (HotExtV2::default(), &[])
        };
        let (lifecycle, days, rest) = take_lifecycle(format, rest)?;
        let (resources, permissions) =
            take_uses(format, rest, self.rules.model.baseline.max_resources)?;
        let pins = Pins(ext.pins.into_iter().map(pin_in).collect::<Result<_, _>>()?);
        let recent = body
            .risk
            .recent
            .into_iter()
            .map(finding_in)
            .collect::<Result<Vec<_>, _>>()?;
        let open = body
            .risk
            .open
            .into_iter()
            .map(open_in)
            .collect::<Result<Vec<_>, _>>()?;
        let mut profile = profile_in(body.profile, self.rules)?;
        profile.pins = pins;
        profile.lifecycle = lifecycle;
        profile.resources = resources;
        profile.permissions = permissions;
        let entries: Vec<&mut Entry> = std::iter::once(&mut profile.endpoints)
            .chain(profile.origins.iter_mut())
            .flat_map(|s| s.entries.iter_mut())
            .collect();
        set_days(entries.into_iter(), &days);
        profile.mature_hours = MatureHours {
            active: ext.mature_active_hours,
            cold: ext.mature_cold_hours.min(ext.mature_active_hours),
        };
        let state = IdentityState {
            profile,
            risk: RiskState {
                evidence: body.risk.evidence,
                at_ms: body.risk.at_ms,
                recent,
                open,
            },
            owner: 0,
            applied: Vec::new(),
            changed: false,
        };
        Ok((Tracked::Hot(Box::new(state)), body.applied))
    }

    /// Encodes what one partition contributed to a fleet value (its key is
    /// [`contribution_key`]).
    pub fn encode_contribution(&self, c: &Contribution) -> Vec<u8> {
        self.encode(
            FLEET_MAGIC,
            &ContributionV1 {
                users: c.users,
                last_hour: c.last_hour,
                label: c.label.clone(),
            },
        )
    }

    /// Decodes a contribution saved under `key`, for `owner`.
    ///
    /// # Errors
    /// As [`Codec::decode_identity`]; a key that is not a contribution key is corrupt.
    pub fn decode_contribution(
        &self,
        key: &str,
        bytes: &[u8],
        owner: u32,
    ) -> Result<Contribution, SnapshotError> {
        let (table, hash, _) = parse_contribution_key(key)
            .ok_or_else(|| SnapshotError::Corrupt(format!("`{key}` is not a fleet key")))?;
        let c: ContributionV1 = self.decode(bytes, FLEET_MAGIC)?;
        Ok(Contribution {
            table,
            hash,
            owner,
            users: c.users,
            last_hour: c.last_hour,
            label: c.label,
        })
    }

    /// Decodes the number of users in a contribution (as the fleet topic carries it).
    ///
    /// # Errors
    /// As [`Codec::decode_identity`].
    pub fn decode_contribution_users(&self, bytes: &[u8]) -> Result<u32, SnapshotError> {
        let c: ContributionV1 = self.decode(bytes, FLEET_MAGIC)?;
        Ok(c.users)
    }

    /// `value` behind the header with `magic`.
    pub(crate) fn encode<T: Serialize>(&self, magic: [u8; 3], value: &T) -> Vec<u8> {
        let mut out = self.header(magic);
        postcard::to_io(value, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// The value behind a valid header with `magic`.
    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
        magic: [u8; 3],
    ) -> Result<T, SnapshotError> {
        Ok(postcard::from_bytes(self.body(bytes, magic)?)?)
    }

    /// Encodes an input partition's report to the group (its key is
    /// [`crate::state::group::report_key`]).
    pub fn encode_report(&self, r: &PartitionReport) -> Vec<u8> {
        self.encode(REPORT_MAGIC, r)
    }

    /// Decodes an input partition's report.
    ///
    /// # Errors
    /// As [`Codec::decode_identity`].
    pub fn decode_report(&self, bytes: &[u8]) -> Result<PartitionReport, SnapshotError> {
        self.decode(bytes, REPORT_MAGIC)
    }

    /// Encodes the engine-wide state, behind the same header as identities, with the dormancy
    /// lifecycle's part after it (readers that predate it stop before it).
    pub fn encode_engine(&self, e: &EngineV1, lifecycle: &EngineLifecycleV1) -> Vec<u8> {
        let mut out = self.encode(ENGINE_MAGIC, e);
        postcard::to_io(lifecycle, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Encodes the dormancy lifecycle's engine-wide state alone, for the changelog
    /// ([`LIFECYCLE_KEY`]).
    pub fn encode_lifecycle(&self, l: &EngineLifecycleV1) -> Vec<u8> {
        self.encode(LIFECYCLE_MAGIC, l)
    }

    /// Decodes what [`Codec::encode_lifecycle`] wrote.
    ///
    /// # Errors
    /// As [`Codec::decode_identity`].
    pub fn decode_lifecycle(&self, bytes: &[u8]) -> Result<EngineLifecycleV1, SnapshotError> {
        self.decode(bytes, LIFECYCLE_MAGIC)
    }

    /// Decodes the engine-wide state, and its lifecycle part (empty when written without one).
    ///
    /// # Errors
    /// As [`Codec::decode_identity`].
    pub fn decode_engine(
        &self,
        bytes: &[u8],
    ) -> Result<(EngineV1, EngineLifecycleV1), SnapshotError> {
        let (e, rest): (EngineV1, &[u8]) =
            postcard::take_from_bytes(self.body(bytes, ENGINE_MAGIC)?)?;
        let lifecycle = if rest.is_empty() {
            EngineLifecycleV1::default()
        } else {
            postcard::from_bytes(rest)?
        };
        Ok((e, lifecycle))
    }
}

fn identity_out(s: &IdentityState, applied: &[AppliedOffset]) -> IdentityV1 {
    IdentityV1 {
        applied: applied.to_vec(),
        profile: profile_out(&s.profile),
        risk: RiskV1 {
            evidence: s.risk.evidence,
            at_ms: s.risk.at_ms,
            recent: s.risk.recent.iter().map(finding_out).collect(),
            open: s.risk.open.iter().map(open_out).collect(),
        },
    }
}

/// The same content as [`Codec::encode_identity`] as JSON: the reference the binary encoding is
/// measured against (`cargo bench`), and a readable dump for debugging.
pub fn encode_identity_json(s: &Tracked, applied: &[AppliedOffset]) -> Vec<u8> {
    let (mut v, lifecycle, resources, permissions) = match s {
        Tracked::Hot(s) => (
            serde_json::to_value(identity_out(s, applied)),
            &s.profile.lifecycle,
            &s.profile.resources,
            &s.profile.permissions,
        ),
        Tracked::Cold(c) => (
            serde_json::to_value(cold_out(&c.profile, applied)),
            &c.profile.lifecycle,
            &c.profile.resources,
            &c.profile.permissions,
        ),
    };
    if let Ok(serde_json::Value::Object(m)) = &mut v {
        m.insert(
            "lifecycle".into(),
            serde_json::to_value(lifecycle_out(lifecycle)).expect("plain fields serialise"),
        );
        let uses = serde_json::to_value(uses_out(resources, permissions));
        if let Ok(serde_json::Value::Object(uses)) = uses {
            m.extend(uses);
        }
    }
    serde_json::to_vec(&v.expect("snapshot types always serialise"))
        .expect("a Value always serialises")
}

/// One value of a fleet table. The sensitivity tier of an endpoint is not stored: it is
/// recomputed from the label (the endpoint itself) under the current model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetValueV1 {
    hash: Hash64,
    pub users: u32,
    pub last_hour: u32,
    pub label: String,
}

impl FleetValueV1 {
    pub fn new(hash: u64, users: u32, last_hour: u32, label: String) -> FleetValueV1 {
        FleetValueV1 {
            hash: Hash64(hash.to_le_bytes()),
            users,
            last_hour,
            label,
        }
    }

    pub fn hash(&self) -> u64 {
        u64::from_le_bytes(self.hash.0)
    }
}

/// The engine-wide state beside the identities: the fleet tables, the guardrails' window of
/// issued commands, and the event-time day of the last sweep for silent identities.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineV1 {
    pub swept_day: i64,
    pub fleet_first_ms: i64,
    pub endpoints: Vec<FleetValueV1>,
    pub origins: Vec<FleetValueV1>,
    pub issued: VecDeque<(i64, String)>,
}

/// The dormancy lifecycle's engine-wide state, written after [`EngineV1`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineLifecycleV1 {
    /// Event-time hour of the last lifecycle pass.
    pub lifecycle_hour: i64,
    /// Lifecycle steps issued in the last day (event time, principal), for its guardrails.
    pub lifecycle_issued: VecDeque<(i64, String)>,
    /// Identities the inventory declares but no event had shown: the step issued for each
    /// (stage number as in the identity's lifecycle; 2 also for one seen since).
    pub declared_stages: Vec<(String, u8)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Model;
    use crate::decode::{Decoded, FormatHint, decode_one};
    use crate::engine::Engine;
    use crate::event::{AccessEvent, RawRef};
    use crate::tools::simulate::{SimConfig, generate};
    use serde_json::Value;

    fn events(identities: usize, days: u32) -> Vec<AccessEvent> {
        let (ct, k8s, _) = generate(&SimConfig {
            identities,
            days,
            seed: 3,
            ..SimConfig::default()
        });
        let mut out: Vec<AccessEvent> = ct
            .iter()
            .chain(&k8s)
            .filter_map(
                |l| match decode_one(l.as_bytes(), FormatHint::Auto, RawRef::default()) {
                    Ok(Decoded::Event(e)) => Some(*e),
                    _ => None,
                },
            )
            .collect();
        out.sort_by_key(|e| e.time_ms);
        out
    }

    fn rules() -> Rules {
        Rules::new(Model::embedded())
    }

    /// An engine that has seen the first `split` events, and the rest.
    fn engine_after(split: f64) -> (Engine, Vec<AccessEvent>) {
        let all = events(30, 12);
        let n = (all.len() as f64 * split) as usize;
        let engine = Engine::new(rules());
        for e in &all[..n] {
            engine.process(e);
        }
        (engine, all[n..].to_vec())
    }

    #[test]
    fn every_identity_survives_a_round_trip_bit_for_bit() {
        let (engine, _) = engine_after(0.7);
        let r = rules();
        let (mut with_findings, mut cold, mut pinned) = (0, 0, 0);
        engine.for_each_identity(|_, s| {
            let applied = [AppliedOffset {
                topic: "in".into(),
                partition: 3,
                offset: 42,
            }];
            let bytes = Codec::new(&r).encode_identity(s, &applied);
            let (back, got) = Codec::new(&r).decode_identity(&bytes).unwrap();
            assert_eq!(got, applied);
            assert_eq!(Codec::new(&r).encode_identity(&back, &applied), bytes);
            match s.hot() {
                Some(s) => {
                    with_findings +=
                        usize::from(!s.risk.recent.is_empty() || !s.risk.open.is_empty());
                    pinned += usize::from(!s.profile.pins.0.is_empty());
                    let back = back.hot().expect("hot stays hot");
                    assert_eq!(back.profile.pins, s.profile.pins);
                    assert_eq!(back.profile.lifecycle, s.profile.lifecycle);
                }
                None => cold += 1,
            }
        });
        assert!(
            pinned > 0,
            "the fleet's instance roles have pinned sessions"
        );
        assert!(
            with_findings > 0,
            "the fleet has identities with open alerts to carry"
        );
        assert!(
            cold > 0,
            "the fleet's dormant keys (history long before) are cold summaries"
        );
    }

    #[test]
    fn snapshots_of_every_older_format_are_still_read_without_the_later_additions() {
        let (engine, _) = engine_after(0.7);
        let r = rules();
        let codec = Codec::new(&r);
        let mut read = 0;
        let (mut cold, mut with_lifecycle, mut with_resources, mut with_flags) = (0, 0, 0, 0);
        engine.for_each_identity(|_, s| {
            if let Tracked::Cold(c) = s {
                // Format 1 wrote cold summaries without the lifecycle.
                let mut v1 = codec.encode(COLD_MAGIC, &cold_out(&c.profile, &[]));
                v1[3] = 1;
                let (back, _) = codec.decode_identity(&v1).unwrap();
                let Tracked::Cold(back) = back else {
                    panic!("cold stays cold")
                };
                assert_eq!(back.profile.lifecycle, Lifecycle::default());
                cold += 1;
            }
            let Some(hot) = s.hot() else { return };
            with_lifecycle += usize::from(hot.profile.lifecycle != Lifecycle::default());
            // Format 3: the lifecycle without the declared findings and days of use after it.
            let mut noticed = hot.clone();
            noticed.profile.lifecycle.notices = 5;
            let v4 = codec.encode_identity(&Tracked::Hot(Box::new(noticed.clone())), &[]);
            let (back4, _) = codec.decode_identity(&v4).unwrap();
            let back4 = back4.hot().unwrap().clone();
            assert_eq!(back4.profile.lifecycle.notices, 5);
            let days = |p: &Profile| hot_entries(p).map(Entry::days).collect::<Vec<_>>();
            assert_eq!(days(&back4.profile), days(&noticed.profile));
            assert!(days(&back4.profile).iter().all(|d| *d >= 1));
            assert_eq!(back4.profile.resources, noticed.profile.resources);
            with_resources += usize::from(!noticed.profile.resources.0.is_empty());
            let flags = |p: &Profile| {
                p.endpoints
                    .entries
                    .iter()
                    .map(Entry::any_resource)
                    .collect::<Vec<_>>()
            };
            assert_eq!(flags(&back4.profile), flags(&noticed.profile));
            with_flags += usize::from(flags(&noticed.profile).contains(&true));
            // Format 4: the same without the resources after the days of use.
            let uses = uses_out(&noticed.profile.resources, &noticed.profile.permissions);
            let tail = postcard::to_stdvec(&uses).unwrap().len();
            let mut v4 = v4[..v4.len() - tail].to_vec();
            v4[3] = 4;
            let (back4, _) = codec.decode_identity(&v4).unwrap();
            let back4 = back4.hot().unwrap().clone();
            assert_eq!(back4.profile.resources, Resources::default());
            assert_eq!(days(&back4.profile), days(&noticed.profile));
            // The header (of `format`), the body and format 2's pins, nothing after.
            let with_pins = |format: u8| {
                let mut v = codec.encode(MAGIC, &identity_out(hot, &[]));
                v[3] = format;
                let ext = HotExtV2 {
                    pins: hot.profile.pins.0.iter().map(pin_out).collect(),
                    mature_active_hours: hot.profile.mature_hours.active,
                    mature_cold_hours: hot.profile.mature_hours.cold,
                };
                postcard::to_io(&ext, &mut v).unwrap();
                v
            };
            let mut v3 = with_pins(3);
            postcard::to_io(&lifecycle_out(&hot.profile.lifecycle), &mut v3).unwrap();
            let (back3, _) = codec.decode_identity(&v3).unwrap();
            let back3 = back3.hot().unwrap().clone();
            let mut expect = hot.profile.lifecycle.clone();
            expect.notices = 0;
            assert_eq!(back3.profile.lifecycle, expect);
            assert!(
                days(&back3.profile).iter().all(|d| *d == 0),
                "unknown before 4"
            );
            // Format 2: the pins, without the lifecycle after them.
            let v2 = with_pins(2);
            let (back, _) = codec.decode_identity(&v2).unwrap();
            let back = back.hot().expect("hot stays hot").clone();
            assert_eq!(back.profile.pins, hot.profile.pins);
            assert_eq!(back.profile.lifecycle, Lifecycle::default());
            // What format 1 wrote: the header and the body, nothing after.
            let mut v1 = codec.encode(MAGIC, &identity_out(hot, &[]));
            assert_eq!(v1[3], FORMAT as u8);
            v1[3] = 1;
            let (back, _) = codec.decode_identity(&v1).unwrap();
            let back = back.hot().expect("hot stays hot").clone();
            assert_eq!(back.profile.pins, Pins::default());
            assert_eq!(back.profile.mature_hours, MatureHours::default());
            let mut without = hot.clone();
            without.profile.pins = Pins::default();
            without.profile.mature_hours = MatureHours::default();
            without.profile.lifecycle = Lifecycle::default();
            without.profile.resources = Resources::default();
            without.profile.permissions = Permissions::default();
            for set in std::iter::once(&mut without.profile.endpoints)
                .chain(without.profile.origins.iter_mut())
            {
                for e in &mut set.entries {
                    // Days of use and the resource flag are unknown before formats 4 and 5.
                    let (hash, weight, last) = (e.hash, e.weight, e.last_hour);
                    *e = Entry::new(hash, weight, e.first_hour(), last, 0);
                }
            }
            assert_eq!(
                codec.encode_identity(&Tracked::Hot(Box::new(back)), &[]),
                codec.encode_identity(&Tracked::Hot(Box::new(without)), &[])
            );
            read += 1;
        });
        assert!(read > 0 && cold > 0);
        assert!(with_lifecycle > 0, "hot identities know their last use");
        assert!(with_flags > 0, "some actions name no resource");
        assert!(
            with_resources > 0,
            "hot identities know the resources they used"
        );
    }

    #[test]
    fn the_fleets_off_schedule_counts_are_the_sums_over_the_identities_it_holds() {
        let (engine, _) = engine_after(0.9);
        let (mut active, mut cold, mut frozen) = (0u64, 0u64, 0);
        engine.for_each_identity(|_, s| match s.hot() {
            Some(h) => {
                active += u64::from(h.profile.mature_hours.active);
                cold += u64::from(h.profile.mature_hours.cold);
            }
            None => frozen += 1,
        });
        assert!(
            frozen > 0 && active > 0 && cold > 0,
            "{frozen} {active} {cold}"
        );
        assert_eq!(engine.fleet().active_hours(), (active, cold));
        // An identity dropped takes its share with it.
        let mut key = None;
        engine.for_each_identity(|k, s| {
            if key.is_none() && s.hot().is_some_and(|h| h.profile.mature_hours.active > 0) {
                key = Some((k.to_owned(), s.hot().unwrap().profile.mature_hours));
            }
        });
        let (key, m) = key.unwrap();
        engine.remove_identity(&key);
        assert_eq!(
            engine.fleet().active_hours(),
            (active - u64::from(m.active), cold - u64::from(m.cold))
        );
    }

    #[test]
    fn the_lifecycle_record_round_trips_and_is_never_read_as_an_identity() {
        let r = rules();
        let l = EngineLifecycleV1 {
            lifecycle_hour: 493_000,
            lifecycle_issued: [(1_700_000_000_000, "a".to_owned())].into(),
            declared_stages: vec![("arn:aws:iam::1:role/x".to_owned(), 1)],
        };
        let c = Codec::new(&r);
        let bytes = c.encode_lifecycle(&l);
        assert_eq!(c.decode_lifecycle(&bytes).unwrap(), l);
        assert!(c.decode_identity(&bytes).is_err());
        assert!(parse_contribution_key(LIFECYCLE_KEY).is_none());
    }

    #[test]
    fn a_restored_engine_decides_exactly_as_the_one_it_was_taken_from() {
        let (original, rest) = engine_after(0.6);
        let restored = Engine::new(rules());
        let r = rules();
        crate::state::file::restore_engine_state(
            &restored,
            Codec::new(&r)
                .decode_engine(&Codec::new(&r).encode_engine(
                    &crate::state::file::engine_state(&original),
                    &crate::state::file::engine_lifecycle(&original),
                ))
                .unwrap(),
        );
        original.for_each_identity(|k, s| {
            let (back, _) = Codec::new(&r)
                .decode_identity(&Codec::new(&r).encode_identity(s, &[]))
                .unwrap();
            restored.restore_identity(k.to_owned(), back);
        });
        let render = |e: &Engine| -> Vec<String> {
            rest.iter()
                .flat_map(|ev| e.process(ev))
                .map(|d| crate::emit::render(&d, 0).to_string())
                .collect()
        };
        let (a, b) = (render(&original), render(&restored));
        assert!(!a.is_empty(), "the rest of the fleet raises alerts");
        assert_eq!(a, b);
    }

    #[test]
    fn identities_and_fleet_contributions_restored_as_the_changelog_does_decide_exactly_as_before()
    {
        let all = events(30, 12);
        let n = all.len() * 6 / 10;
        let r = rules();
        let codec = Codec::new(&r);
        let original = Engine::new(r.clone());
        original.fleet().track_contributions(true);
        for e in &all[..n] {
            original.process_owned(e, 1);
        }
        // What the changelog carries: identities and per-partition contributions, and the
        // commands issued for the partition's identities (the group records, `state::group`),
        // which the guardrails count. Nothing else.
        let restored = Engine::new(r.clone());
        restored.fleet().track_contributions(true);
        restored
            .guardrails()
            .import(1, &original.guardrails().issued_by(1));
        for c in original.fleet().drain_contributions(None) {
            let key = contribution_key(c.table, c.hash, "in");
            let back = codec
                .decode_contribution(&key, &codec.encode_contribution(&c), 1)
                .unwrap();
            let tier = match back.table {
                Table::Endpoints => r.tier_of(&back.label),
                Table::Origins => None,
            };
            restored.fleet().restore_contribution(back, tier);
        }
        original.for_each_identity(|k, s| {
            let (mut back, _) = codec
                .decode_identity(&codec.encode_identity(s, &[]))
                .unwrap();
            back.set_origin(1, Vec::new());
            restored.fleet().observe_time(back.first_seen_ms());
            restored.restore_identity(k.to_owned(), back);
        });
        let render = |e: &Engine| -> Vec<String> {
            all[n..]
                .iter()
                .flat_map(|ev| e.process_owned(ev, 1))
                .map(|d| crate::emit::render(&d, 0).to_string())
                .collect()
        };
        let (a, b) = (render(&original), render(&restored));
        assert!(!a.is_empty());
        assert_eq!(a, b);
    }

    #[test]
    fn a_snapshot_under_other_network_prefixes_is_refused_not_misread() {
        let (engine, _) = engine_after(0.3);
        let r = rules();
        let mut other = Model::embedded();
        other.baseline.ipv4_network_prefix = 20;
        let other = Rules::new(other);
        engine.for_each_identity(|_, s| {
            let bytes = Codec::new(&r).encode_identity(s, &[]);
            assert!(matches!(
                Codec::new(&other).decode_identity(&bytes),
                Err(SnapshotError::Incompatible { .. })
            ));
        });
    }

    #[test]
    fn smaller_caps_in_a_changed_model_trim_restored_value_sets_keeping_the_heaviest() {
        let (engine, _) = engine_after(0.5);
        let r = rules();
        let mut small = Model::embedded();
        small.baseline.max_endpoints = 2;
        let small = Rules::new(small);
        let mut checked = 0;
        engine.for_each_identity(|_, t| {
            let Some(s) = t.hot() else { return };
            if s.profile.endpoints.entries.len() < 3 {
                return;
            }
            let (back, _) = Codec::new(&small)
                .decode_identity(&Codec::new(&r).encode_identity(t, &[]))
                .unwrap();
            let kept: Vec<u64> = back
                .hot()
                .unwrap()
                .profile
                .endpoints
                .entries
                .iter()
                .map(|e| e.hash)
                .collect();
            let heaviest: Vec<u64> = s.profile.endpoints.top(2).iter().map(|e| e.hash).collect();
            assert_eq!(kept.len(), 2);
            assert!(
                heaviest.iter().all(|h| kept.contains(h)),
                "{kept:?} {heaviest:?}"
            );
            checked += 1;
        });
        assert!(checked > 0);
    }

    #[test]
    fn a_fleet_contribution_round_trips_under_a_key_no_principal_can_have() {
        let r = rules();
        let codec = Codec::new(&r);
        let c = Contribution {
            table: Table::Endpoints,
            hash: 0xdead_beef_0123_4567,
            owner: 9,
            users: 42,
            last_hour: 493_000,
            label: "iam.amazonaws.com:CreateUser".into(),
        };
        let key = contribution_key(c.table, c.hash, "cloudtrail");
        assert!(key.starts_with('\u{1}'));
        assert_eq!(
            parse_contribution_key(&key),
            Some((c.table, c.hash, Some("cloudtrail")))
        );
        assert_eq!(
            parse_contribution_key("\u{1}fleet/endpoint/00000000deadbeef"),
            Some((Table::Endpoints, 0xdead_beef, None)),
            "keys written before the topic was in them still read"
        );
        assert_eq!(parse_contribution_key("arn:aws:iam::1:role/x"), None);
        let back = codec
            .decode_contribution(&key, &codec.encode_contribution(&c), 9)
            .unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn truncated_or_garbled_snapshots_are_errors_never_panics() {
        let (engine, _) = engine_after(0.4);
        let r = rules();
        let mut one = None;
        engine.for_each_identity(|_, s| {
            one.get_or_insert_with(|| Codec::new(&r).encode_identity(s, &[]));
        });
        let bytes = one.unwrap();
        for n in 0..bytes.len() {
            assert!(Codec::new(&r).decode_identity(&bytes[..n]).is_err());
        }
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            let _ = Codec::new(&r).decode_identity(&b);
        }
        assert_eq!(
            Codec::new(&r).decode_identity(b"{\"json\":1}").unwrap_err(),
            SnapshotError::NotASnapshot
        );
    }

    #[test]
    fn the_schema_document_lists_every_field_written() {
        fn keys(v: &Value, out: &mut std::collections::BTreeSet<String>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        out.insert(k.clone());
                        keys(x, out);
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
                _ => {}
            }
        }
        let doc = include_str!("../../schemas/identity-snapshot.v1.md");
        let (engine, _) = engine_after(0.7);
        let mut names = std::collections::BTreeSet::new();
        let applied = [AppliedOffset {
            topic: "in".into(),
            partition: 0,
            offset: 1,
        }];
        engine.for_each_identity(|_, s| {
            let v: Value = serde_json::from_slice(&encode_identity_json(s, &applied)).unwrap();
            keys(&v, &mut names);
        });
        keys(
            &serde_json::to_value(crate::state::file::engine_state(&engine)).unwrap(),
            &mut names,
        );
        keys(
            &serde_json::to_value(crate::state::file::engine_lifecycle(&engine)).unwrap(),
            &mut names,
        );
        assert!(names.contains("command_withheld") && names.contains("label"));
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !doc.contains(&format!("`{n}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "not in schemas/identity-snapshot.v1.md: {missing:?}"
        );
    }
}
