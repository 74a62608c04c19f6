//! `driftwatch inspect`: what driftwatch has learned about an identity, read from a replay state
//! file or from a service's changelog topic: maturity, endpoints and origins with their use,
//! the hour-of-week activity, volume expectations, risk and open alerts. The analyst's first
//! question when an alert arrives ("what does this identity normally do?").
//!
//! Loading is I/O ([`load_file`], [`load_topic`]); the views are pure functions of the engine
//! ([`identity`], [`overview`]), rendered as text for a terminal or serialised as JSON.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::Path;

use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use serde::Serialize;
use tracing::warn;

use crate::baseline::fleet::Table;
use crate::baseline::origin::LEVELS;
use crate::baseline::{HOUR_MS, Profile, ValueSet};
use crate::config::Rules;
use crate::decide::risk_score;
use crate::decode::time::format_rfc3339_ms;
use crate::engine::Engine;
use crate::state::changelog::{read_to_end, reader};
use crate::state::file::{self, StateError};
use crate::state::snapshot::{Codec, SnapshotError, parse_contribution_key};

/// Why nothing could be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}: no state file there (replay --state writes one)")]
    NoFile(String),
    #[error(
        "{what}: {dropped} snapshot(s) were written under another detection model or format; \
         pass the --model the writer used"
    )]
    OtherModel { what: String, dropped: usize },
    #[error("reading the state topic {topic}: {source}")]
    Kafka { topic: String, source: KafkaError },
    #[error(
        "the state topic {0} does not exist (the service's is <group>.state unless --state-topic says otherwise)"
    )]
    NoTopic(String),
}

/// The engine state saved at `path` by `replay --state`.
///
/// # Errors
/// [`InspectError`]: no file, unreadable, or written under another model.
pub fn load_file(path: &Path, rules: Rules) -> Result<Engine, InspectError> {
    let engine = Engine::new(rules);
    let loaded = file::load(path, &engine)?
        .ok_or_else(|| InspectError::NoFile(path.display().to_string()))?;
    if loaded.dropped > 0 {
        return Err(InspectError::OtherModel {
            what: path.display().to_string(),
            dropped: loaded.dropped,
        });
    }
    Ok(engine)
}

/// Every identity in the changelog topic `topic` (all partitions, the last snapshot of each
/// key as compaction keeps it), with the fleet tables summed over every partition's
/// contributions: the whole group's view.
///
/// # Errors
/// [`InspectError`]: brokers unreachable, no such topic, or snapshots of another model.
pub fn load_topic(
    brokers: &str,
    topic: &str,
    properties: &[(String, String)],
    rules: Rules,
) -> Result<Engine, InspectError> {
    let err = |source| InspectError::Kafka {
        topic: topic.to_owned(),
        source,
    };
    let group = format!("{topic}.inspect");
    let consumer = reader(
        brokers,
        &group,
        properties.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .map_err(err)?;
    let meta = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .map_err(err)?;
    let partitions = meta
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .ok_or_else(|| InspectError::NoTopic(topic.to_owned()))?;
    let engine = Engine::new(rules);
    let codec = Codec::new(engine.rules());
    let (mut dropped, mut corrupt) = (0usize, 0usize);
    let mut owners: HashMap<(i32, Option<String>), u32> = HashMap::new();
    for partition in 0..partitions as i32 {
        // The last value of each key wins, as compaction will keep it.
        let mut latest: HashMap<String, Option<Vec<u8>>> = HashMap::new();
        read_to_end(&consumer, topic, partition, |m| {
            if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                latest.insert(key.to_owned(), m.payload().map(<[u8]>::to_vec));
            }
        })
        .map_err(err)?;
        let mut keys: Vec<_> = latest.into_iter().collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, value) in keys {
            let Some(bytes) = value else { continue };
            if key == crate::state::snapshot::LIFECYCLE_KEY {
                // The service's lifecycle bookkeeping, no identity.
                continue;
            }
            if let Some((_, _, topic)) = parse_contribution_key(&key) {
                // One owner per input topic and partition, so their contributions add up.
                let next = owners.len() as u32;
                let owner = *owners
                    .entry((partition, topic.map(str::to_owned)))
                    .or_insert(next);
                if let Ok(c) = codec.decode_contribution(&key, &bytes, owner) {
                    engine.restore_contribution(c);
                }
                continue;
            }
            match codec.decode_identity(&bytes) {
                Ok((mut s, _)) => {
                    engine.fleet().observe_time(s.first_seen_ms());
                    s.set_origin(partition as u32, Vec::new());
                    engine.restore_identity(key, s);
                }
                Err(SnapshotError::Incompatible { .. }) => dropped += 1,
                // A corrupt snapshot: that identity is shown as unknown, and the count said.
                Err(_) => corrupt += 1,
            }
        }
    }
    if corrupt > 0 {
        warn!(
            topic,
            corrupt, "Snapshots that cannot be read were skipped; those identities are not shown."
        );
    }
    if dropped > 0 && engine.identities() == 0 {
        return Err(InspectError::OtherModel {
            what: format!("state topic {topic}"),
            dropped,
        });
    }
    Ok(engine)
}

/// One learned value (an endpoint, a network, a client...).
#[derive(Debug, Clone, Serialize)]
pub struct ValueView {
    /// The value as alerts show it; `#` and a hash when the fleet table no longer holds it.
    pub value: String,
    /// Decayed number of calls that used it (half-life `baseline.half_life_days`).
    pub weight: f64,
    pub first_seen: String,
    pub last_seen: String,
    /// Identities in the fleet that use it (0 when unknown).
    pub fleet_users: u32,
}

/// The learned values of one origin level.
#[derive(Debug, Clone, Serialize)]
pub struct OriginLevelView {
    pub level: &'static str,
    pub values: Vec<ValueView>,
}

/// Expected calls per hour by hour of day (UTC).
#[derive(Debug, Clone, Serialize)]
pub struct VolumeView {
    pub weekday: Vec<f64>,
    pub weekend: Vec<f64>,
    /// Variance over mean of hourly counts (1 = Poisson; larger = burstier).
    pub dispersion: f64,
    /// Hourly bytes out, log-normal: median and the hours that moved bytes.
    pub bytes_median: Option<f64>,
    pub byte_hours: u32,
}

/// An alert still open for the identity (later findings of the same cause update it).
#[derive(Debug, Clone, Serialize)]
pub struct OpenAlertView {
    pub uid: String,
    pub cause: &'static str,
    pub severity: &'static str,
    pub score: u8,
    pub count: u32,
    pub first_seen: String,
    pub last_seen: String,
    pub command_id: Option<String>,
}

/// Everything learned about one identity.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityView {
    pub identity: String,
    pub first_seen: String,
    pub last_seen: String,
    pub events: u64,
    /// Lifetime active clock hours, and whether the baseline is mature (out of warm-up).
    pub active_hours: u32,
    pub mature: bool,
    /// 0..=1: how much history backs the baseline (as alerts report it).
    pub maturity: f64,
    /// Silent for `baseline.cold_after_days`: kept as a cold summary (history, hour-of-week
    /// profile, bytes model, heaviest values) until its next event; volume by hour is relearnt.
    pub cold: bool,
    pub endpoints: Vec<ValueView>,
    /// Per origin level: network, coarse_network, asn, country, client, workload.
    pub origins: Vec<OriginLevelView>,
    /// Active hours per hour of the week, Monday 00:00 UTC first (168 values, decayed).
    pub hour_of_week: Vec<u8>,
    pub volume: VolumeView,
    /// Share of calls denied (decayed).
    pub denied_share: f64,
    /// Risk score 0-100 as of the identity's last event, and the evidence behind it in bits.
    pub risk_score: u8,
    pub evidence_bits: f64,
    pub open_alerts: Vec<OpenAlertView>,
}

/// One line of the overview of every identity.
#[derive(Debug, Clone, Serialize)]
pub struct OverviewRow {
    pub identity: String,
    pub events: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub mature: bool,
    pub cold: bool,
    pub risk_score: u8,
    pub open_alerts: usize,
}

/// An hour index as the RFC 3339 time it starts at.
pub(crate) fn hour_ms(hour: u32) -> String {
    format_rfc3339_ms(i64::from(hour) * HOUR_MS)
}

/// A value by its fleet label, or its hash when the fleet tables do not name it.
pub(crate) fn value_name(engine: &Engine, table: Table, hash: u64) -> String {
    engine
        .fleet()
        .label(table, hash)
        .unwrap_or_else(|| format!("#{hash:016x}"))
}

fn values(set: &ValueSet, engine: &Engine, table: Table, top: usize) -> Vec<ValueView> {
    set.top(top)
        .into_iter()
        .map(|e| ValueView {
            value: value_name(engine, table, e.hash),
            weight: (f64::from(e.weight) * 100.0).round() / 100.0,
            first_seen: hour_ms(e.first_hour()),
            last_seen: hour_ms(e.last_hour),
            fleet_users: engine.fleet().users(table, e.hash),
        })
        .collect()
}

fn volume(p: &Profile) -> VolumeView {
    let round = |x: f32| (f64::from(x) * 100.0).round() / 100.0;
    VolumeView {
        weekday: p.requests.mean[..24].iter().map(|m| round(*m)).collect(),
        weekend: p.requests.mean[24..].iter().map(|m| round(*m)).collect(),
        dispersion: round(p.requests.dispersion),
        bytes_median: (p.byte_hours > 0).then(|| f64::from(p.log_bytes_mean).exp().round()),
        byte_hours: u32::from(p.byte_hours),
    }
}

/// What the engine knows about `key`, the `top` most used values of each kind; `None` when it
/// does not track that identity.
pub fn identity(engine: &Engine, key: &str, top: usize) -> Option<IdentityView> {
    let m = &engine.rules().model;
    let tracked = engine.tracked(key)?;
    let s = tracked.view(m.detectors.volume.prior_dispersion as f32);
    let p = &s.profile;
    let w = &m.warmup;
    Some(IdentityView {
        identity: key.to_owned(),
        first_seen: format_rfc3339_ms(p.first_seen_ms),
        last_seen: format_rfc3339_ms(p.last_seen_ms),
        events: p.events,
        active_hours: p.active_hours_total,
        mature: p.is_mature(w.min_active_hours, w.min_days),
        maturity: (p.maturity(w.min_active_hours, w.min_days) * 100.0).round() / 100.0,
        cold: tracked.is_cold(),
        endpoints: values(&p.endpoints, engine, Table::Endpoints, top),
        origins: LEVELS
            .iter()
            .zip(&p.origins)
            .map(|(l, set)| OriginLevelView {
                level: l.as_str(),
                values: values(set, engine, Table::Origins, top),
            })
            .collect(),
        hour_of_week: p.hour_of_week.to_vec(),
        volume: volume(p),
        denied_share: if p.calls > 0.0 {
            (f64::from(p.denied / p.calls) * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        risk_score: risk_score(s.risk.evidence, m.scoring.evidence_scale_bits),
        evidence_bits: (s.risk.evidence * 10.0).round() / 10.0,
        open_alerts: s
            .risk
            .open
            .iter()
            .map(|a| OpenAlertView {
                uid: a.uid.clone(),
                cause: a.cause.as_str(),
                severity: a.severity.name(),
                score: a.score,
                count: a.count,
                first_seen: format_rfc3339_ms(a.first_seen_ms),
                last_seen: format_rfc3339_ms(a.last_seen_ms),
                command_id: a.command_id.clone(),
            })
            .collect(),
    })
}

/// One row per tracked identity, riskiest first, then by key.
pub fn overview(engine: &Engine) -> Vec<OverviewRow> {
    let m = &engine.rules().model;
    let mut rows = Vec::with_capacity(engine.identities());
    let prior = m.detectors.volume.prior_dispersion as f32;
    engine.for_each_identity(|key, t| {
        let s = t.view(prior);
        let p = &s.profile;
        rows.push(OverviewRow {
            identity: key.to_owned(),
            events: p.events,
            first_seen: format_rfc3339_ms(p.first_seen_ms),
            last_seen: format_rfc3339_ms(p.last_seen_ms),
            mature: p.is_mature(m.warmup.min_active_hours, m.warmup.min_days),
            cold: t.is_cold(),
            risk_score: risk_score(s.risk.evidence, m.scoring.evidence_scale_bits),
            open_alerts: s.risk.open.len(),
        });
    });
    rows.sort_by(|a, b| {
        b.risk_score
            .cmp(&a.risk_score)
            .then_with(|| a.identity.cmp(&b.identity))
    });
    rows
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const SHADES: [char; 5] = [' ', '░', '▒', '▓', '█'];

/// The hour-of-week activity as seven rows of 24 cells, darker where the identity is more
/// often active (scaled to its busiest hour).
pub fn heatmap(hour_of_week: &[u8]) -> String {
    let max = hour_of_week.iter().copied().max().unwrap_or(0);
    let mut out = String::from("      0     6     12    18   (UTC)\n");
    for (d, day) in DAYS.iter().enumerate() {
        out.push_str(day);
        out.push_str("   ");
        for h in 0..24 {
            let v = hour_of_week[d * 24 + h];
            let shade = if v == 0 || max == 0 {
                0
            } else {
                1 + (usize::from(v) * 4 - 1) / usize::from(max)
            };
            out.push(SHADES[shade.min(4)]);
        }
        out.push('\n');
    }
    out
}

impl fmt::Display for IdentityView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "identity   {}", self.identity)?;
        writeln!(
            f,
            "seen       {} .. {}  ({} events, {} active hours)",
            self.first_seen, self.last_seen, self.events, self.active_hours
        )?;
        writeln!(
            f,
            "baseline   {} (maturity {:.2}){}",
            if self.mature { "mature" } else { "warming up" },
            self.maturity,
            if self.cold {
                ", cold: long silent, kept as a summary until its next event"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "risk       {} / 100 ({} bits of evidence), {} open alert(s), denied {:.1}%",
            self.risk_score,
            self.evidence_bits,
            self.open_alerts.len(),
            self.denied_share * 100.0
        )?;
        for a in &self.open_alerts {
            writeln!(
                f,
                "  alert    {} {} score {} x{} {} .. {}{}",
                a.severity,
                a.cause,
                a.score,
                a.count,
                a.first_seen,
                a.last_seen,
                a.command_id
                    .as_deref()
                    .map(|c| format!(" command {c}"))
                    .unwrap_or_default()
            )?;
        }
        let table = |f: &mut fmt::Formatter<'_>, title: &str, vs: &[ValueView]| {
            writeln!(f, "\n{title} (calls, decayed; fleet users; last use)")?;
            if vs.is_empty() {
                writeln!(f, "  (none)")?;
            }
            for v in vs {
                writeln!(
                    f,
                    "  {:>9.1}  {:>5}  {}  {}",
                    v.weight, v.fleet_users, v.last_seen, v.value
                )?;
            }
            // Named: with the openssl crate linked, `?` could also convert into other errors.
            Ok::<(), fmt::Error>(())
        };
        table(f, "endpoints", &self.endpoints)?;
        for o in &self.origins {
            if !o.values.is_empty() {
                table(f, o.level, &o.values)?;
            }
        }
        writeln!(f, "\nactive hours of the week")?;
        f.write_str(&heatmap(&self.hour_of_week))?;
        let mut hours = String::new();
        for (h, (wd, we)) in self
            .volume
            .weekday
            .iter()
            .zip(&self.volume.weekend)
            .enumerate()
        {
            if *wd >= 0.05 || *we >= 0.05 {
                let _ = write!(hours, " {h:02}h {wd:.1}/{we:.1}");
            }
        }
        writeln!(
            f,
            "\nexpected calls per hour, weekday/weekend (dispersion {:.1}):{}",
            self.volume.dispersion,
            if hours.is_empty() {
                " none yet"
            } else {
                &hours
            }
        )?;
        if let Some(b) = self.volume.bytes_median {
            writeln!(
                f,
                "bytes out per active hour: median {b} over {} hours",
                self.volume.byte_hours
            )?;
        }
        Ok(())
    }
}

/// The overview as a table.
pub fn overview_table(rows: &[OverviewRow]) -> String {
    let mut out = format!(
        "{:<5} {:<6} {:>9}  {:<24} {:<24} {}\n",
        "risk", "alerts", "events", "first seen", "last seen", "identity"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<5} {:<6} {:>9}  {:<24} {:<24} {}{}",
            r.risk_score,
            r.open_alerts,
            r.events,
            r.first_seen,
            r.last_seen,
            r.identity,
            match (r.mature, r.cold) {
                (_, true) => "  (cold)",
                (false, false) => "  (warming up)",
                (true, false) => "",
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heatmap_is_darkest_at_the_busiest_hour_and_blank_where_idle() {
        let mut how = [0u8; 168];
        how[2] = 40; // Monday 02:00
        how[24 + 3] = 10; // Tuesday 03:00
        let map = heatmap(&how);
        let rows: Vec<&str> = map.lines().collect();
        assert_eq!(rows.len(), 8);
        let monday: Vec<char> = rows[1].chars().skip(6).collect();
        assert_eq!(monday[2], '█');
        assert_eq!(monday[0], ' ');
        let tuesday: Vec<char> = rows[2].chars().skip(6).collect();
        assert_eq!(tuesday[3], '░');
        assert!(rows[7].starts_with("Sun"));
    }
}
