//! Settings of `driftwatch run` as one source gives them, each written once. [`Settings`]
//! derives the command-line flags (with their `DRIFTWATCH_*` environment fallbacks, handled by
//! clap) and the keys of the `--config` TOML file (the field names); [`Settings::defaults`] holds
//! the defaults, which `--help` shows (see `cli::command`). `config::service` lays the sources
//! over each other and checks the result.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::{Deserialize, Deserializer, Serialize};

use super::{ConfigError, Problem};

/// Loopback by default: metrics are not for the world. In a container, use 0.0.0.0:9464.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// A pass-through librdkafka property (`consumer.` or `producer.` prefixed to target one
/// client), or the argument that failed to be one. Malformed arguments are kept, not refused by
/// the parser, so they are reported together with every other problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaProperty {
    Set { name: String, value: String },
    Malformed(String),
}

impl KafkaProperty {
    /// Parses `NAME=VALUE`; never fails (see [`KafkaProperty::Malformed`]).
    ///
    /// # Errors
    /// None: the error type is [`Infallible`], as clap's value parsers need one.
    pub fn parse(arg: &str) -> Result<KafkaProperty, Infallible> {
        Ok(match arg.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => KafkaProperty::Set {
                name: k.trim().to_owned(),
                value: v.to_owned(),
            },
            _ => KafkaProperty::Malformed(arg.to_owned()),
        })
    }

    /// The name=value pairs of `props`, for the commands other than `run` (which checks them
    /// with the rest of its configuration).
    ///
    /// # Errors
    /// A [`ConfigError`] of `driftwatch <command>` naming every malformed argument.
    pub fn pairs(
        command: &str,
        props: &[KafkaProperty],
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let mut pairs = Vec::new();
        let mut problems = Vec::new();
        for p in props {
            match p {
                KafkaProperty::Set { name, value } => pairs.push((name.clone(), value.clone())),
                KafkaProperty::Malformed(arg) => problems.push(KafkaProperty::malformed(arg)),
            }
        }
        if problems.is_empty() {
            Ok(pairs)
        } else {
            Err(ConfigError {
                file: format!("driftwatch {command}"),
                problems,
            })
        }
    }

    /// The problem a malformed `--kafka-property` argument is.
    pub fn malformed(arg: &str) -> Problem {
        Problem {
            key: "--kafka-property".into(),
            why: format!("`{arg}` is not of the form name=value"),
        }
    }
}

/// The `[kafka]` table of a configuration file.
fn kafka_table<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KafkaProperty>, D::Error> {
    let table = BTreeMap::<String, String>::deserialize(d)?;
    Ok(table
        .into_iter()
        .map(|(name, value)| KafkaProperty::Set { name, value })
        .collect())
}

/// Settings as given by one source (the command line with its environment, or a file); all
/// optional. The field names are the file's keys; the flags are derived from the same fields.
#[derive(Debug, Clone, Default, clap::Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Bootstrap brokers, host:port,...
    #[arg(long, env = "DRIFTWATCH_BROKERS")]
    pub brokers: Option<String>,
    /// Consumer group; instances with the same group share the partitions.
    #[arg(long, env = "DRIFTWATCH_GROUP")]
    pub group: Option<String>,
    /// Input topic, optionally with its format and cluster: TOPIC, TOPIC=FORMAT (auto,
    /// cloudtrail, k8s-audit, gcp-audit, native) or TOPIC=FORMAT@CLUSTER (Kubernetes audit
    /// records from that cluster: it qualifies their principal keys); a `:unkeyed` suffix
    /// declares records not keyed by principal key (S3 delivery documents, CloudWatch Logs
    /// batches), which go through the repartition topic; repeatable or comma-separated.
    #[arg(long = "input", env = "DRIFTWATCH_INPUTS", value_delimiter = ',')]
    pub inputs: Option<Vec<String>>,
    /// Topic for alerts (OCSF Detection Findings).
    #[arg(long, env = "DRIFTWATCH_ALERTS_TOPIC")]
    pub alerts_topic: Option<String>,
    /// How alerts are written: `ocsf` (OCSF 1.1.0 Detection Findings, canonical) or `ecs`
    /// (Elastic Common Schema 8.x `event.kind: alert` documents).
    #[arg(long, env = "DRIFTWATCH_ALERT_FORMAT")]
    pub alert_format: Option<String>,
    /// Topic for revocation commands.
    #[arg(long, env = "DRIFTWATCH_COMMANDS_TOPIC")]
    pub commands_topic: Option<String>,
    /// Topic for governance commands of the dormancy lifecycle (suspend, then delete, identities
    /// idle for the model's `lifecycle.*_after_days`).
    #[arg(long, env = "DRIFTWATCH_GOVERNANCE_TOPIC")]
    pub governance_topic: Option<String>,
    /// Topic for undecodable records, with the reason in headers.
    #[arg(long, env = "DRIFTWATCH_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// librdkafka property NAME=VALUE for both clients, or consumer.NAME / producer.NAME for one
    /// (repeatable), e.g. security.protocol=SASL_SSL. In the file: a `[kafka]` table.
    #[arg(
        long = "kafka-property",
        value_name = "NAME=VALUE",
        env = "DRIFTWATCH_KAFKA_PROPERTIES",
        value_delimiter = ';',
        value_parser = KafkaProperty::parse
    )]
    #[serde(default, deserialize_with = "kafka_table", skip_serializing)]
    pub kafka: Vec<KafkaProperty>,
    /// Seconds shutdown may take to drain, flush and commit.
    #[arg(long, env = "DRIFTWATCH_SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: Option<f64>,
    /// Days of a newly assigned partition's history to rebuild baselines from; 0 for none,
    /// negative for the whole log.
    #[arg(long, env = "DRIFTWATCH_REBUILD_DAYS", allow_negative_numbers = true)]
    pub rebuild_days: Option<f64>,
    /// Input records whose outputs may await acknowledgement at once.
    #[arg(long, env = "DRIFTWATCH_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Compacted topic of identity snapshots that state is saved to and restored from, or `off`
    /// to keep state in memory only (partitions then rebuild from history) [default: GROUP.state].
    #[arg(long, env = "DRIFTWATCH_STATE_TOPIC")]
    pub state_topic: Option<String>,
    /// Internal topic the events of `:unkeyed` inputs are re-keyed onto by principal key
    /// [default: GROUP.repartition]; created when missing.
    #[arg(long, env = "DRIFTWATCH_REPARTITION_TOPIC")]
    pub repartition_topic: Option<String>,
    /// Partitions of the repartition topic when it is created [default: the most partitions of
    /// an `:unkeyed` input].
    #[arg(long, env = "DRIFTWATCH_REPARTITION_PARTITIONS")]
    pub repartition_partitions: Option<i32>,
    /// Seconds the input may be idle before the dormancy lifecycle takes event time to move on
    /// with the wall clock from the newest event (time for late deliveries), so identities
    /// still fall due when nothing arrives.
    #[arg(long, env = "DRIFTWATCH_IDLE_GRACE_SECONDS")]
    pub idle_grace_seconds: Option<f64>,
    /// Once an hour of event time, raise a Low OCSF finding (`excess_privilege`) on the alerts
    /// topic for each identity whose inventory `granted` patterns include at least this many
    /// that its observed use says are unused (as `report least-privilege` judges them); raised
    /// again only when the set of unused grants changes. 0 turns it off.
    #[arg(long, env = "DRIFTWATCH_LEAST_PRIVILEGE_MIN_UNUSED")]
    pub least_privilege_min_unused: Option<usize>,
    /// Days assumed between uses of an action whose period is not learned (a grant never used),
    /// for those findings: a grant is unused once its silence makes use within this period
    /// unlikely at 0.95.
    #[arg(long, env = "DRIFTWATCH_LEAST_PRIVILEGE_PRIOR_PERIOD_DAYS")]
    pub least_privilege_prior_period_days: Option<f64>,
    /// Seconds between commit points: outputs acknowledged, changed identities' snapshots
    /// written, input offsets committed.
    #[arg(long, env = "DRIFTWATCH_COMMIT_INTERVAL_SECONDS")]
    pub commit_interval_seconds: Option<f64>,
    /// Address for /metrics, /healthz and /readyz, or `off`.
    #[arg(long, env = "DRIFTWATCH_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Detection model laid over the embedded default (models/default.toml).
    #[arg(long, env = "DRIFTWATCH_MODEL")]
    pub model: Option<PathBuf>,
    /// Identity inventory (schemas/identity.v1.json).
    #[arg(long, env = "DRIFTWATCH_IDENTITIES")]
    pub identities: Option<PathBuf>,
    /// Compacted topic of identity inventory records keyed by principal key
    /// (schemas/identity.v1.json), read from its start and then followed: a record declares or
    /// replaces an identity's metadata, a tombstone removes it, from the next event on. Laid
    /// over `--identities` when both are given.
    #[arg(long, env = "DRIFTWATCH_IDENTITIES_TOPIC")]
    pub identities_topic: Option<String>,
    /// Cloud providers' published address ranges (AWS ip-ranges.json, GCP cloud.json, Azure
    /// Service Tags); repeatable.
    #[arg(
        long = "ip-ranges",
        value_name = "FILE",
        env = "DRIFTWATCH_IP_RANGES",
        value_delimiter = ','
    )]
    pub ip_ranges: Option<Vec<PathBuf>>,
    /// Country and ASN databases in MaxMind DB format; repeatable.
    #[arg(
        long = "geoip",
        value_name = "FILE",
        env = "DRIFTWATCH_GEOIP",
        value_delimiter = ','
    )]
    pub geoip: Option<Vec<PathBuf>>,
}

impl Settings {
    /// The defaults: what a setting given nowhere else is. `--help` shows them from here.
    pub fn defaults() -> Settings {
        Settings {
            brokers: Some("127.0.0.1:9092".into()),
            group: Some("driftwatch".into()),
            inputs: Some(vec!["driftwatch.access-logs".into()]),
            alerts_topic: Some("driftwatch.alerts".into()),
            alert_format: Some("ocsf".into()),
            commands_topic: Some("driftwatch.commands".into()),
            governance_topic: Some("driftwatch.governance".into()),
            dead_letter_topic: Some("driftwatch.dead-letter".into()),
            kafka: Vec::new(),
            shutdown_grace_seconds: Some(30.0),
            rebuild_days: Some(30.0),
            max_in_flight: Some(10_000),
            state_topic: None,
            repartition_topic: None,
            repartition_partitions: None,
            least_privilege_min_unused: Some(1),
            least_privilege_prior_period_days: Some(30.0),
            idle_grace_seconds: Some(900.0),
            commit_interval_seconds: Some(5.0),
            metrics_addr: Some(DEFAULT_METRICS_ADDR.into()),
            model: None,
            identities: None,
            identities_topic: None,
            ip_ranges: None,
            geoip: None,
        }
    }

    /// Each setting that has a default, by its flag's id (the field name), with the default as
    /// `--help` shows it.
    pub fn default_help() -> Vec<(String, String)> {
        let table = toml::Table::try_from(Settings::defaults())
            .expect("the defaults are strings, numbers and lists");
        table
            .into_iter()
            .map(|(id, v)| {
                let shown = match v {
                    toml::Value::String(s) => s,
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(","),
                    toml::Value::Float(f) => f.to_string(),
                    other => other.to_string(),
                };
                (id, shown)
            })
            .collect()
    }

    /// Reads a TOML configuration file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and every unknown or mistyped key.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let (file, text) = ConfigError::read(path)?;
        toml::from_str(&text).map_err(|e| ConfigError {
            file,
            problems: vec![Problem {
                key: toml_error_key(&text, &e),
                why: e.message().to_owned(),
            }],
        })
    }
}

fn toml_error_key(text: &str, e: &toml::de::Error) -> String {
    e.span()
        .and_then(|s| text.get(s))
        .map(|k| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && k.len() < 80)
        .unwrap_or_else(|| "(file)".into())
}

/// The long flag of each setting, by field name, as clap derives it.
static FLAGS: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| {
    use clap::Args;
    Settings::augment_args(clap::Command::new("run"))
        .get_arguments()
        .filter_map(|a| Some((a.get_id().to_string(), a.get_long()?.to_owned())))
        .collect()
});

/// The long flag (without `--`) clap derives for a setting's field.
pub fn flag(field: &str) -> Option<&'static str> {
    FLAGS.get(field).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(name: &str, value: &str) -> KafkaProperty {
        KafkaProperty::Set {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn every_defaulted_setting_has_a_flag_and_its_default_shown_once() {
        let help = Settings::default_help();
        let ids: Vec<&str> = help.iter().map(|(id, _)| id.as_str()).collect();
        for (id, _) in &help {
            assert!(FLAGS.contains_key(id), "no flag for `{id}`");
        }
        assert!(ids.contains(&"rebuild_days") && ids.contains(&"inputs"));
        let shown: BTreeMap<&str, &str> =
            help.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(shown["rebuild_days"], "30");
        assert_eq!(shown["inputs"], "driftwatch.access-logs");
        assert_eq!(shown["metrics_addr"], DEFAULT_METRICS_ADDR);
    }

    #[test]
    fn a_config_file_with_an_unknown_key_is_rejected_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.toml");
        std::fs::write(&p, "brokers = \"x:1\"\nbrokerz = \"y\"\n").unwrap();
        let e = Settings::load(&p).unwrap_err();
        assert_eq!(e.problems[0].key, "brokerz", "{e}");
        assert!(e.to_string().contains("run.toml"), "{e}");
        std::fs::write(
            &p,
            "inputs = [\"a=native\"]\n[kafka]\n\"linger.ms\" = \"5\"\n",
        )
        .unwrap();
        let s = Settings::load(&p).unwrap();
        assert_eq!(s.kafka, vec![prop("linger.ms", "5")]);
    }
}
