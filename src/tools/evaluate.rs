//! Scores alerts against ground-truth labels: which attacks were caught, and how many false
//! alert-hours benign traffic raised after warm-up.
//!
//! Definitions (also in the README):
//! - an attack is detected when an alert on its identity has an event time within
//!   `[attack.start, attack.end + grace]`;
//! - a false alert-hour is an (identity, clock hour) with at least one alert while that identity
//!   is not under attack (outside every attack window plus grace), counted only after the
//!   identity's warm-up (`warmup_days` after the later of its first event and the window start);
//! - identity-days are counted over the same post-warm-up spans, within `[start, end]`;
//! - a revocation command is outside the attacks when no attack on its target identity has a
//!   window (plus grace) holding the command's `event_time` (the triggering record's); warm-up
//!   does not excuse a command.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use super::simulate::Labels;
use crate::baseline::{DAY_MS, HOUR_MS};

/// One alert reduced to what scoring needs.
#[derive(Debug, Clone)]
pub struct AlertPoint {
    pub identity: String,
    pub time_ms: i64,
    pub detectors: Vec<String>,
}

/// Extracts target identity and event time from a revocation command.
pub fn command_point(v: &Value) -> Option<AlertPoint> {
    let identity = v["target"]["identity"]["key"].as_str()?.to_owned();
    let time_ms = crate::decode::time::parse_timestamp_ms(v["event_time"].as_str()?)?;
    Some(AlertPoint {
        identity,
        time_ms,
        detectors: Vec::new(),
    })
}

/// Whether an OCSF alert message closes a finding (activity 3): it raises nothing.
pub fn is_close(v: &Value) -> bool {
    v["activity_id"] == 3
}

/// Extracts identity, event time and detector names from an OCSF alert; `None` for a Close
/// ([`is_close`]) and for a message without an identity or a time.
pub fn alert_point(v: &Value) -> Option<AlertPoint> {
    if is_close(v) {
        return None;
    }
    let identity = v["resources"][0]["uid"].as_str()?.to_owned();
    let time_ms = v["time"].as_i64()?;
    let detectors = v["finding_info"]["types"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some(AlertPoint {
        identity,
        time_ms,
        detectors,
    })
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KindScore {
    pub total: usize,
    pub detected: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub attacks: usize,
    pub detected: usize,
    pub detection_rate: f64,
    pub by_kind: BTreeMap<String, KindScore>,
    pub missed: Vec<String>,
    /// Ids of the attacks caught, in label order.
    pub detected_ids: Vec<String>,
    pub median_time_to_detect_seconds: Option<f64>,
    pub alerts: usize,
    pub false_alert_hours: usize,
    pub identity_days_after_warmup: f64,
    pub false_alert_hours_per_1000_identity_days: f64,
    /// False alert-hours by the detectors named in those alerts.
    pub false_by_detector: BTreeMap<String, usize>,
    /// Revocation commands read.
    pub commands: usize,
    /// Commands outside every attack window on their identity: identity and event time.
    pub commands_outside_attacks: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "attacks detected: {}/{} ({:.1}%)",
            self.detected,
            self.attacks,
            self.detection_rate * 100.0
        )?;
        for (k, s) in &self.by_kind {
            writeln!(f, "  {k:<34} {}/{}", s.detected, s.total)?;
        }
        if let Some(t) = self.median_time_to_detect_seconds {
            writeln!(
                f,
                "median time from attack start to first alert (event time): {t:.0} s"
            )?;
        }
        if !self.missed.is_empty() {
            writeln!(f, "missed: {}", self.missed.join(", "))?;
        }
        writeln!(
            f,
            "false alert-hours: {} over {:.0} identity-days after warm-up = {:.2} per 1,000 identity-days ({} alert messages in all)",
            self.false_alert_hours,
            self.identity_days_after_warmup,
            self.false_alert_hours_per_1000_identity_days,
            self.alerts
        )?;
        writeln!(
            f,
            "revocation commands: {}, outside every attack window: {}{}",
            self.commands,
            self.commands_outside_attacks.len(),
            if self.commands_outside_attacks.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.commands_outside_attacks.join(", "))
            }
        )?;
        if !self.false_by_detector.is_empty() {
            let parts: Vec<String> = self
                .false_by_detector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, "false alert-hours by detector: {}", parts.join(" "))?;
        }
        Ok(())
    }
}

/// `driftwatch evaluate`: reads a labels file, an alerts JSONL file and optionally a commands
/// JSONL file (commands may also sit among the alerts) and scores them, allowing
/// `grace_minutes` after an attack's last event.
///
/// # Errors
/// A file that cannot be read, a labels file that does not match `schemas/labels.v1.json`, or a
/// line that is not JSON or lacks its identity or time, each named by file and line.
pub fn score_files(
    labels: &Path,
    alerts: &Path,
    commands: Option<&Path>,
    grace_minutes: i64,
) -> anyhow::Result<Report> {
    let labels_text =
        std::fs::read_to_string(labels).with_context(|| format!("reading {}", labels.display()))?;
    let labels: Labels = serde_json::from_str(&labels_text)
        .with_context(|| "labels file does not match schemas/labels.v1.json")?;
    let (mut points, mut issued) = (Vec::new(), Vec::new());
    for path in std::iter::once(alerts).chain(commands) {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = || format!("{}:{}", path.display(), i + 1);
            let v: Value =
                serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
            if is_close(&v) {
                continue;
            } else if v.get("class_uid").is_some() {
                points.push(alert_point(&v).with_context(|| {
                    format!("{}: alert without resources[0].uid or time", at())
                })?);
            } else if v["schema"] == crate::emit::command::SCHEMA {
                issued.push(command_point(&v).with_context(|| {
                    format!(
                        "{}: command without target.identity.key or event_time",
                        at()
                    )
                })?);
            }
        }
    }
    let grace_ms = grace_minutes * 60_000;
    let mut report = score(&labels, &points, grace_ms);
    report.commands = issued.len();
    report.commands_outside_attacks = issued
        .iter()
        .filter(|c| !under_attack(&labels, c, grace_ms))
        .map(|c| {
            format!(
                "{} at {}",
                c.identity,
                crate::decode::time::format_rfc3339_ms(c.time_ms)
            )
        })
        .collect();
    Ok(report)
}

/// Whether `p` falls in an attack window (plus grace) on its identity.
pub fn under_attack(labels: &Labels, p: &AlertPoint, grace_ms: i64) -> bool {
    labels.attacks.iter().any(|atk| {
        atk.identity == p.identity && p.time_ms >= atk.start && p.time_ms <= atk.end + grace_ms
    })
}

/// Scores `alerts` against `labels`, allowing `grace_ms` after an attack's last event.
pub fn score(labels: &Labels, alerts: &[AlertPoint], grace_ms: i64) -> Report {
    let warmup_ms = (labels.warmup_days * DAY_MS as f64) as i64;
    let mut by_identity: BTreeMap<&str, Vec<&AlertPoint>> = BTreeMap::new();
    for a in alerts {
        by_identity.entry(a.identity.as_str()).or_default().push(a);
    }
    let mut r = Report {
        attacks: labels.attacks.len(),
        alerts: alerts.len(),
        ..Report::default()
    };
    let mut ttd = Vec::new();
    for atk in &labels.attacks {
        let entry = r.by_kind.entry(atk.kind.clone()).or_default();
        entry.total += 1;
        let hit = by_identity.get(atk.identity.as_str()).and_then(|v| {
            v.iter()
                .filter(|a| a.time_ms >= atk.start && a.time_ms <= atk.end + grace_ms)
                .map(|a| a.time_ms)
                .min()
        });
        match hit {
            Some(t) => {
                entry.detected += 1;
                r.detected += 1;
                r.detected_ids.push(atk.id.clone());
                ttd.push((t - atk.start) as f64 / 1000.0);
            }
            None => r
                .missed
                .push(format!("{} ({} on {})", atk.id, atk.kind, atk.identity)),
        }
    }
    r.detection_rate = if r.attacks == 0 {
        1.0
    } else {
        r.detected as f64 / r.attacks as f64
    };
    ttd.sort_by(f64::total_cmp);
    r.median_time_to_detect_seconds = ttd.get(ttd.len() / 2).copied();

    let first_seen: BTreeMap<&str, i64> = labels
        .identities
        .iter()
        .map(|i| (i.key.as_str(), i.first_seen))
        .collect();
    let warm_from = |key: &str| {
        first_seen
            .get(key)
            .copied()
            .unwrap_or(labels.start)
            .max(labels.start)
            + warmup_ms
    };
    let mut false_hours: BTreeSet<(&str, i64)> = BTreeSet::new();
    for a in alerts {
        if a.time_ms < warm_from(&a.identity) {
            continue;
        }
        if !under_attack(labels, a, grace_ms)
            && false_hours.insert((a.identity.as_str(), a.time_ms.div_euclid(HOUR_MS)))
        {
            for d in &a.detectors {
                *r.false_by_detector.entry(d.clone()).or_default() += 1;
            }
        }
    }
    r.false_alert_hours = false_hours.len();
    r.identity_days_after_warmup = labels
        .identities
        .iter()
        .map(|i| {
            let from = i.first_seen.max(labels.start) + warmup_ms;
            let to = i.last_seen.min(labels.end);
            ((to - from) as f64 / DAY_MS as f64).max(0.0)
        })
        .sum();
    r.false_alert_hours_per_1000_identity_days = if r.identity_days_after_warmup > 0.0 {
        r.false_alert_hours as f64 * 1000.0 / r.identity_days_after_warmup
    } else {
        0.0
    };
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::simulate::{LabelAttack, LabelIdentity};

    fn labels() -> Labels {
        Labels {
            schema: "driftwatch.labels.v1".into(),
            start: 0,
            end: 20 * DAY_MS,
            warmup_days: 5.0,
            seed: None,
            identities: vec![
                LabelIdentity {
                    key: "a".into(),
                    kind: "x".into(),
                    first_seen: 0,
                    last_seen: 20 * DAY_MS,
                },
                LabelIdentity {
                    key: "b".into(),
                    kind: "x".into(),
                    first_seen: 0,
                    last_seen: 20 * DAY_MS,
                },
            ],
            attacks: vec![LabelAttack {
                id: "atk-1".into(),
                kind: "k".into(),
                identity: "a".into(),
                start: 10 * DAY_MS,
                end: 10 * DAY_MS + 1000,
                description: String::new(),
            }],
        }
    }

    fn at(id: &str, t: i64) -> AlertPoint {
        AlertPoint {
            identity: id.into(),
            time_ms: t,
            detectors: vec!["new_origin".into()],
        }
    }

    #[test]
    fn an_alert_inside_the_attack_window_detects_it_and_is_not_false() {
        let r = score(&labels(), &[at("a", 10 * DAY_MS + 500)], HOUR_MS);
        assert_eq!(r.detected, 1);
        assert_eq!(r.detected_ids.len(), 1);
        assert!(r.missed.is_empty());
        assert_eq!(r.false_alert_hours, 0);
    }

    #[test]
    fn benign_alerts_count_once_per_identity_hour_and_only_after_warmup() {
        let alerts = [
            at("b", 6 * DAY_MS),
            at("b", 6 * DAY_MS + 60_000),
            at("b", 7 * DAY_MS),
            at("b", DAY_MS),
            at("a", 12 * DAY_MS),
        ];
        let r = score(&labels(), &alerts, HOUR_MS);
        assert_eq!(r.detected, 0);
        assert!(r.detected_ids.is_empty());
        assert_eq!(r.false_alert_hours, 3);
        assert!((r.identity_days_after_warmup - 30.0).abs() < 1e-9);
        assert!((r.false_alert_hours_per_1000_identity_days - 100.0).abs() < 1e-9);
    }

    #[test]
    fn commands_are_read_from_either_file_and_only_those_outside_attack_windows_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let command = |id: &str, t: i64| {
            serde_json::json!({
                "schema": crate::emit::command::SCHEMA,
                "target": {"identity": {"key": id}},
                "event_time": crate::decode::time::format_rfc3339_ms(t),
            })
            .to_string()
        };
        let labels_path = dir.path().join("labels.json");
        std::fs::write(&labels_path, serde_json::to_string(&labels()).unwrap()).unwrap();
        // In the alerts file: one command inside the attack (within grace), one on the same
        // identity a day later; in the commands file, one during warm-up on another identity.
        let alerts = dir.path().join("alerts.jsonl");
        std::fs::write(
            &alerts,
            [
                command("a", 10 * DAY_MS + 1000 + HOUR_MS / 2),
                command("a", 11 * DAY_MS),
            ]
            .join("\n"),
        )
        .unwrap();
        let commands = dir.path().join("commands.jsonl");
        std::fs::write(&commands, command("b", DAY_MS)).unwrap();
        let r = score_files(&labels_path, &alerts, Some(&commands), 60).unwrap();
        assert_eq!(r.commands, 3);
        assert_eq!(
            r.commands_outside_attacks,
            [
                "a at 1970-01-12T00:00:00.000Z",
                "b at 1970-01-02T00:00:00.000Z"
            ]
        );
        assert_eq!(r.alerts, 0);
    }
}
