//! Detection model configuration (`models/*.toml`): every threshold, half-life, window and
//! sensitivity list, validated at load with every problem reported at once.
//!
//! A model file is laid over the embedded default (`models/default.toml`), so it only needs the
//! keys it changes. Unknown keys and wrong types are found by walking the file against the
//! default, then ranges are checked by [`Model::validate`]; [`ConfigError`] lists every problem
//! with its file and key.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::layer::merge;
use super::{ConfigError, Problem};

/// The default model, compiled in so the binary runs without any file.
pub const DEFAULT_MODEL_TOML: &str = include_str!("../../models/default.toml");

/// The largest magnitude any model number may have (a million years in minutes, with room).
const MAX_SETTING: f64 = 1e12;

/// Calls `f` with the dotted key and value of every number in `t`, arrays included.
fn for_each_number(t: &toml::Table, prefix: &mut String, f: &mut impl FnMut(&str, f64)) {
    fn visit(v: &toml::Value, key: &mut String, f: &mut impl FnMut(&str, f64)) {
        match v {
            toml::Value::Float(x) => f(key, *x),
            toml::Value::Integer(i) => f(key, *i as f64),
            toml::Value::Table(t) => for_each_number(t, key, f),
            toml::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    let len = key.len();
                    key.push_str(&format!("[{i}]"));
                    visit(v, key, f);
                    key.truncate(len);
                }
            }
            _ => {}
        }
    }
    for (k, v) in t {
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(k);
        visit(v, prefix, f);
        prefix.truncate(len);
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub baseline: BaselineConfig,
    pub warmup: WarmupConfig,
    pub scoring: ScoringConfig,
    pub detectors: Detectors,
    pub sensitivity: Vec<SensitivityTier>,
    pub commands: CommandConfig,
    pub lifecycle: LifecycleConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {
    pub half_life_days: f64,
    pub max_endpoints: usize,
    pub max_values_per_origin_level: usize,
    /// Resource scopes remembered per identity (0: none, policies grant on `*`), and per action
    /// (past it the action is granted on `*`).
    pub max_resources: usize,
    pub max_resources_per_action: usize,
    pub ipv4_network_prefix: u8,
    pub ipv4_coarse_prefix: u8,
    pub ipv6_network_prefix: u8,
    pub ipv6_coarse_prefix: u8,
    pub fleet_max_values: usize,
    pub cold_after_days: f64,
    pub forget_after_days: f64,
    pub novelty_prior_novel: f64,
    pub novelty_prior_seen: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupConfig {
    pub min_active_hours: u32,
    pub min_days: f64,
    pub min_events_for_origin_checks: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringConfig {
    pub evidence_half_life_minutes: f64,
    pub evidence_scale_bits: f64,
    pub alert_min_score: u8,
    pub command_min_score: u8,
    pub suppression_window_hours: f64,
    pub min_event_bits: f64,
    pub high_min_score: u8,
    pub critical_min_score: u8,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Detectors {
    pub new_endpoint: NoveltyDetector,
    pub new_origin: OriginDetector,
    pub outside_workload: OutsideWorkload,
    pub volume: VolumeDetector,
    pub unusual_hour: UnusualHour,
    pub denied_burst: WindowDetector,
    pub enumeration: Enumeration,
    pub dormant: Dormant,
    pub inventory: InventoryDetector,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryDetector {
    pub enabled: bool,
    pub weight: f64,
    pub expired_bits: f64,
    pub outside_declared_bits: f64,
    /// An active identity the inventory declares without an owner.
    pub no_owner_bits: f64,
    /// Also an active identity the inventory does not declare at all (when one is in use).
    pub undeclared_is_unowned: bool,
    pub past_rotation_bits: f64,
    pub outside_maintenance_bits: f64,
    /// Findings about an identity declared in one of these environments weigh this much
    /// (a production identity's deviations matter more).
    #[serde(default)]
    pub environment_weights: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoveltyDetector {
    pub enabled: bool,
    pub weight: f64,
    pub max_bits: f64,
    pub fleet_discount_bits_per_doubling: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginDetector {
    pub enabled: bool,
    pub weight: f64,
    pub max_bits: f64,
    pub fleet_discount_bits_per_doubling: f64,
    pub client_fleet_discount_bits_per_doubling: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutsideWorkload {
    pub enabled: bool,
    pub weight: f64,
    pub bits: f64,
    /// A workload-bound session used from a network and a client it never used.
    pub pinned_bits: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeDetector {
    pub enabled: bool,
    pub weight: f64,
    pub max_bits: f64,
    pub min_bits: f64,
    pub min_requests: u32,
    pub min_bytes: u64,
    pub prior_dispersion: f64,
    pub shrink_hours: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnusualHour {
    pub enabled: bool,
    pub weight: f64,
    pub max_bits: f64,
    pub cold_share: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowDetector {
    pub enabled: bool,
    pub weight: f64,
    pub max_bits: f64,
    pub window_minutes: f64,
    pub min_denied: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Enumeration {
    pub enabled: bool,
    pub weight: f64,
    pub max_bits: f64,
    pub window_minutes: f64,
    pub min_distinct: u32,
    pub warmup_max_fleet_users: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dormant {
    pub enabled: bool,
    pub weight: f64,
    pub max_bits: f64,
    pub min_idle_days: f64,
    pub min_prior_events: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SensitivityTier {
    pub tier: String,
    pub bonus_bits: f64,
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandMode {
    DryRun,
    Enforce,
}

impl CommandMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandMode::DryRun => "dry_run",
            CommandMode::Enforce => "enforce",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    pub mode: CommandMode,
    pub ttl_minutes: f64,
    pub max_per_hour: u32,
    pub max_fleet_fraction: f64,
    pub protected: Vec<String>,
}

/// The dormancy lifecycle: identities silent this long (event time) are to be suspended, then
/// deleted, by governance commands under guardrails of their own.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    pub enabled: bool,
    pub suspend_after_days: f64,
    pub delete_after_days: f64,
    pub max_per_hour: u32,
    pub max_fleet_fraction: f64,
    pub ttl_hours: f64,
}

impl Model {
    /// The embedded default model.
    pub fn embedded() -> Model {
        Model::from_toml_str(DEFAULT_MODEL_TOML, "<embedded models/default.toml>")
            .expect("the embedded default model is validated by a unit test")
    }

    /// Loads a model file laid over the embedded default.
    ///
    /// # Errors
    /// [`ConfigError`] listing every unreadable, unknown, mistyped or out-of-range key.
    pub fn load(path: &Path) -> Result<Model, ConfigError> {
        let (file, text) = ConfigError::read(path)?;
        Model::from_toml_str(&text, &file)
    }

    /// Parses model text laid over the embedded default. `file` names it in errors.
    ///
    /// # Errors
    /// As [`Model::load`].
    pub fn from_toml_str(text: &str, file: &str) -> Result<Model, ConfigError> {
        let err = |problems| ConfigError {
            file: file.to_owned(),
            problems,
        };
        let user: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            err(vec![Problem {
                key: "(syntax)".into(),
                why: e.to_string().trim().replace('\n', " "),
            }])
        })?;
        let mut merged: toml::Table = DEFAULT_MODEL_TOML
            .parse()
            .expect("embedded default is valid TOML");
        let mut problems = Vec::new();
        merge(&mut merged, user, "", &mut problems);
        if !problems.is_empty() {
            return Err(err(problems));
        }
        let model: Model =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    err(vec![Problem {
                        key: "(model)".into(),
                        why: e.to_string(),
                    }])
                })?;
        let problems = model.validate();
        if problems.is_empty() {
            Ok(model)
        } else {
            Err(err(problems))
        }
    }

    /// Range and consistency checks; returns every problem found.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut check = |ok: bool, key: &str, why: String| {
            if !ok {
                p.push(Problem {
                    key: key.to_owned(),
                    why,
                });
            }
        };
        // Every number, found by key, is finite and of a size later arithmetic survives: `inf`
        // or `1e308` would pass the range checks below and turn expiry times and
        // probabilities into nonsense (a command expiring in 1970, a null probability).
        let table = toml::Table::try_from(self).expect("model settings serialize");
        for_each_number(&table, &mut String::new(), &mut |key, x| {
            check(
                x.is_finite() && x.abs() <= MAX_SETTING,
                key,
                format!("must be a finite number of magnitude at most {MAX_SETTING:e}, got {x:e}"),
            );
        });
        let b = &self.baseline;
        check(
            b.half_life_days > 0.0,
            "baseline.half_life_days",
            format!("must be > 0, got {}", b.half_life_days),
        );
        check(
            (1..=4096).contains(&b.max_endpoints),
            "baseline.max_endpoints",
            format!("must be 1..=4096, got {}", b.max_endpoints),
        );
        check(
            b.max_resources == 0
                || (b.max_endpoints..=16 * b.max_endpoints).contains(&b.max_resources),
            "baseline.max_resources",
            format!(
                "must be 0 (off) or between baseline.max_endpoints ({}) and 16 times it, got {}",
                b.max_endpoints, b.max_resources
            ),
        );
        check(
            (1..=256).contains(&b.max_resources_per_action),
            "baseline.max_resources_per_action",
            format!("must be 1..=256, got {}", b.max_resources_per_action),
        );
        check(
            (1..=1024).contains(&b.max_values_per_origin_level),
            "baseline.max_values_per_origin_level",
            format!("must be 1..=1024, got {}", b.max_values_per_origin_level),
        );
        check(
            b.ipv4_network_prefix <= 32,
            "baseline.ipv4_network_prefix",
            format!("must be 0..=32, got {}", b.ipv4_network_prefix),
        );
        check(
            b.ipv4_coarse_prefix <= b.ipv4_network_prefix,
            "baseline.ipv4_coarse_prefix",
            format!(
                "must be <= ipv4_network_prefix ({}), got {}",
                b.ipv4_network_prefix, b.ipv4_coarse_prefix
            ),
        );
        check(
            b.ipv6_network_prefix <= 128,
            "baseline.ipv6_network_prefix",
            format!("must be 0..=128, got {}", b.ipv6_network_prefix),
        );
        check(
            b.ipv6_coarse_prefix <= b.ipv6_network_prefix,
            "baseline.ipv6_coarse_prefix",
            format!(
                "must be <= ipv6_network_prefix ({}), got {}",
                b.ipv6_network_prefix, b.ipv6_coarse_prefix
            ),
        );
        let s = &self.scoring;
        let inert_hours = s
            .suppression_window_hours
            .max(4.0 * s.evidence_half_life_minutes / 60.0);
        check(
            b.cold_after_days * 24.0 > inert_hours,
            "baseline.cold_after_days",
            format!(
                "must be longer than the scoring windows ({inert_hours} hours: suppression_window_hours and four evidence half-lives), so no open alert or live evidence is dropped with the hot state, got {}",
                b.cold_after_days
            ),
        );
        check(
            b.cold_after_days <= b.forget_after_days,
            "baseline.cold_after_days",
            format!(
                "must not exceed baseline.forget_after_days ({}), got {}",
                b.forget_after_days, b.cold_after_days
            ),
        );
        check(
            b.forget_after_days > self.detectors.dormant.min_idle_days,
            "baseline.forget_after_days",
            format!(
                "must exceed detectors.dormant.min_idle_days ({}), or dormant identities are forgotten before they wake, got {}",
                self.detectors.dormant.min_idle_days, b.forget_after_days
            ),
        );
        check(
            b.fleet_max_values >= 1000,
            "baseline.fleet_max_values",
            format!("must be >= 1000, got {}", b.fleet_max_values),
        );
        check(
            b.novelty_prior_novel > 0.0,
            "baseline.novelty_prior_novel",
            "must be > 0".into(),
        );
        check(
            b.novelty_prior_seen > 0.0,
            "baseline.novelty_prior_seen",
            "must be > 0".into(),
        );
        check(
            self.warmup.min_days >= 0.0,
            "warmup.min_days",
            "must be >= 0".into(),
        );

        let s = &self.scoring;
        check(
            s.evidence_half_life_minutes > 0.0,
            "scoring.evidence_half_life_minutes",
            "must be > 0".into(),
        );
        check(
            s.evidence_scale_bits > 0.0,
            "scoring.evidence_scale_bits",
            "must be > 0".into(),
        );
        check(
            (1..=100).contains(&s.alert_min_score),
            "scoring.alert_min_score",
            format!("must be 1..=100, got {}", s.alert_min_score),
        );
        check(
            s.command_min_score >= s.alert_min_score && s.command_min_score <= 100,
            "scoring.command_min_score",
            format!(
                "must be between alert_min_score ({}) and 100, got {}",
                s.alert_min_score, s.command_min_score
            ),
        );
        check(
            s.alert_min_score <= s.high_min_score
                && s.high_min_score <= s.critical_min_score
                && s.critical_min_score <= 100,
            "scoring.high_min_score",
            "must satisfy alert_min_score <= high_min_score <= critical_min_score <= 100".into(),
        );
        check(
            s.suppression_window_hours >= 0.0,
            "scoring.suppression_window_hours",
            "must be >= 0".into(),
        );

        let d = &self.detectors;
        // Every detector section's weight and max_bits, found by key: a new section is checked
        // without being listed here.
        let sections =
            toml::Table::try_from(d).expect("detector settings are plain numbers and flags");
        for (name, section) in &sections {
            if let Some(w) = section.get("weight").and_then(toml::Value::as_float) {
                check(
                    w.is_finite() && w >= 0.0,
                    &format!("detectors.{name}.weight"),
                    format!("must be a finite number >= 0, got {w}"),
                );
            }
            if let Some(m) = section.get("max_bits").and_then(toml::Value::as_float) {
                check(
                    m > 0.0 && m <= 64.0,
                    &format!("detectors.{name}.max_bits"),
                    format!("must be in (0, 64], got {m}"),
                );
            }
            // Fixed surprises (`bits`, `pinned_bits`, `expired_bits`...).
            for (key, v) in section.as_table().into_iter().flatten() {
                if let Some(b) = v.as_float()
                    && key.ends_with("bits")
                    && key != "max_bits"
                {
                    check(
                        (0.0..=64.0).contains(&b),
                        &format!("detectors.{name}.{key}"),
                        format!("must be in [0, 64], got {b}"),
                    );
                }
            }
        }
        for (env, w) in &d.inventory.environment_weights {
            check(
                *w > 0.0 && *w <= 10.0,
                &format!("detectors.inventory.environment_weights.{env}"),
                format!("must be in (0, 10], got {w}"),
            );
        }
        check(
            d.volume.prior_dispersion >= 1.0,
            "detectors.volume.prior_dispersion",
            "must be >= 1 (variance/mean)".into(),
        );
        check(
            d.volume.min_bits > 0.0,
            "detectors.volume.min_bits",
            "must be > 0".into(),
        );
        check(
            d.volume.shrink_hours >= 0.0,
            "detectors.volume.shrink_hours",
            "must be >= 0".into(),
        );
        check(
            d.unusual_hour.cold_share > 0.0 && d.unusual_hour.cold_share < 1.0,
            "detectors.unusual_hour.cold_share",
            "must be in (0, 1)".into(),
        );
        check(
            d.denied_burst.window_minutes > 0.0,
            "detectors.denied_burst.window_minutes",
            "must be > 0".into(),
        );
        check(
            d.enumeration.window_minutes > 0.0,
            "detectors.enumeration.window_minutes",
            "must be > 0".into(),
        );
        check(
            d.enumeration.min_distinct >= 2,
            "detectors.enumeration.min_distinct",
            "must be >= 2".into(),
        );
        check(
            d.dormant.min_idle_days > 0.0,
            "detectors.dormant.min_idle_days",
            "must be > 0".into(),
        );

        for (i, t) in self.sensitivity.iter().enumerate() {
            check(
                !t.tier.is_empty(),
                &format!("sensitivity[{i}].tier"),
                "must not be empty".into(),
            );
            check(
                t.bonus_bits >= 0.0,
                &format!("sensitivity[{i}].bonus_bits"),
                "must be >= 0".into(),
            );
            for (j, pat) in t.patterns.iter().enumerate() {
                check(
                    pat.contains(':') && !pat.starts_with(':'),
                    &format!("sensitivity[{i}].patterns[{j}]"),
                    format!("`{pat}` is not `service:operation` (wildcards `*` allowed)"),
                );
            }
        }
        let c = &self.commands;
        check(
            c.ttl_minutes > 0.0,
            "commands.ttl_minutes",
            "must be > 0".into(),
        );
        check(
            c.max_fleet_fraction > 0.0 && c.max_fleet_fraction <= 0.5,
            "commands.max_fleet_fraction",
            format!(
                "must be in (0, 0.5]: a guardrail that allows revoking most of the fleet is no guardrail, got {}",
                c.max_fleet_fraction
            ),
        );
        let l = &self.lifecycle;
        check(
            l.ttl_hours > 0.0,
            "lifecycle.ttl_hours",
            format!("must be > 0, got {}", l.ttl_hours),
        );
        check(
            l.suspend_after_days >= 1.0,
            "lifecycle.suspend_after_days",
            format!("must be at least 1 day, got {}", l.suspend_after_days),
        );
        check(
            l.delete_after_days > l.suspend_after_days,
            "lifecycle.delete_after_days",
            format!(
                "must exceed lifecycle.suspend_after_days ({}): an identity is suspended before it is deleted, got {}",
                l.suspend_after_days, l.delete_after_days
            ),
        );
        check(
            l.delete_after_days < b.forget_after_days,
            "lifecycle.delete_after_days",
            format!(
                "must be less than baseline.forget_after_days ({}), or idle identities are forgotten before their deletion falls due, got {}",
                b.forget_after_days, l.delete_after_days
            ),
        );
        check(
            l.max_per_hour >= 1,
            "lifecycle.max_per_hour",
            "must be at least 1 (turn the lifecycle off with lifecycle.enabled = false)".into(),
        );
        check(
            l.max_fleet_fraction > 0.0 && l.max_fleet_fraction <= 0.5,
            "lifecycle.max_fleet_fraction",
            format!(
                "must be in (0, 0.5]: a guardrail that allows suspending most of the fleet in a day is no guardrail, got {}",
                l.max_fleet_fraction
            ),
        );
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_model_is_valid() {
        let m = Model::from_toml_str(DEFAULT_MODEL_TOML, "default.toml").unwrap();
        assert!(m.validate().is_empty());
        assert_eq!(
            m.commands.mode,
            CommandMode::DryRun,
            "commands must be dry-run by default"
        );
    }

    #[test]
    fn infinite_and_huge_numbers_are_refused_with_their_key() {
        let e = Model::from_toml_str(
            "[commands]\nttl_minutes = inf\n[baseline]\nnovelty_prior_novel = 1e308\n[detectors.volume]\nmin_bits = nan",
            "x.toml",
        )
        .unwrap_err();
        let keys: Vec<String> = e.problems.into_iter().map(|p| p.key).collect();
        for k in [
            "commands.ttl_minutes",
            "baseline.novelty_prior_novel",
            "detectors.volume.min_bits",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} not refused: {keys:?}");
        }
    }

    #[test]
    fn partial_file_overrides_only_its_keys() {
        let m = Model::from_toml_str(
            "[scoring]\nalert_min_score = 70\n[detectors.dormant]\nmin_idle_days = 45",
            "x.toml",
        )
        .unwrap();
        assert_eq!(m.scoring.alert_min_score, 70);
        assert_eq!(m.detectors.dormant.min_idle_days, 45.0);
        assert_eq!(m.scoring.command_min_score, 85);
    }

    #[test]
    fn every_problem_is_reported_with_file_and_key() {
        let text = r#"
[scoring]
alert_min_score = 90
command_min_score = 50
colour = "blue"
[baseline]
half_life_days = "two weeks"
[commands]
max_fleet_fraction = 0.9
[[sensitivity]]
tier = "x"
bonus_bits = 1.0
patterns = ["noservice"]
"#;
        let err = Model::from_toml_str(text, "bad.toml").unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"scoring.colour"), "{err}");
        assert!(keys.contains(&"baseline.half_life_days"), "{err}");
        // Type errors stop before range checks; fix them and the range problems all show.
        let text = text
            .replace("colour = \"blue\"\n", "")
            .replace("\"two weeks\"", "14");
        let err = Model::from_toml_str(&text, "bad.toml").unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"scoring.command_min_score"), "{err}");
        assert!(keys.contains(&"commands.max_fleet_fraction"), "{err}");
        assert!(keys.contains(&"sensitivity[0].patterns[0]"), "{err}");
        assert!(err.to_string().starts_with("bad.toml: "), "{err}");
    }

    #[test]
    fn a_lifecycle_that_deletes_before_it_suspends_or_after_forgetting_is_refused() {
        let err = Model::from_toml_str(
            "[lifecycle]\nsuspend_after_days = 40\ndelete_after_days = 30\nmax_fleet_fraction = 0.9",
            "m.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("lifecycle.delete_after_days"), "{err}");
        assert!(
            err.contains("must exceed lifecycle.suspend_after_days"),
            "{err}"
        );
        assert!(err.contains("lifecycle.max_fleet_fraction"), "{err}");
        let err = Model::from_toml_str(
            "[baseline]\nforget_after_days = 50\n[lifecycle]\nsuspend_after_days = 30\ndelete_after_days = 60",
            "m.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("must be less than baseline.forget_after_days (50)"),
            "{err}"
        );
    }

    #[test]
    fn a_cold_horizon_inside_the_scoring_windows_or_past_the_forget_horizon_is_refused() {
        let err = Model::from_toml_str("[baseline]\ncold_after_days = 0.1", "m.toml").unwrap_err();
        assert!(
            err.to_string().contains("baseline.cold_after_days")
                && err.to_string().contains("scoring windows"),
            "{err}"
        );
        let err = Model::from_toml_str(
            "[baseline]\ncold_after_days = 90\nforget_after_days = 60",
            "m.toml",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("must not exceed baseline.forget_after_days"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let err = Model::from_toml_str("[scoring\n", "broken.toml").unwrap_err();
        assert_eq!(err.problems[0].key, "(syntax)");
        assert!(err.to_string().contains("broken.toml"));
    }

    #[test]
    fn every_detector_sections_weight_and_max_bits_are_range_checked() {
        let err = Model::from_toml_str(
            "[detectors.dormant]\nweight = -1.0\nmax_bits = 65.0\n[detectors.inventory]\nweight = -2.0\n[detectors.outside_workload]\nweight = -3.0",
            "w.toml",
        )
        .unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "detectors.dormant.weight",
            "detectors.dormant.max_bits",
            "detectors.inventory.weight",
            "detectors.outside_workload.weight",
        ] {
            assert!(keys.contains(&k), "{k} not checked: {err}");
        }
    }
}
