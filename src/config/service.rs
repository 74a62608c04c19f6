//! Settings of `driftwatch run`, each written once. [`Settings`] derives the command-line flags
//! (with their `DRIFTWATCH_*` environment fallbacks, handled by clap), the keys of the `--config`
//! TOML file (the field names), and, through [`Settings::defaults`], the defaults that `--help`
//! shows. [`RunConfig::resolve`] lays the command line over the file over the defaults and checks
//! everything at once, reporting every problem with the flag or file key it came from, so a bad
//! deployment fails at start with one complete message.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::{ConfigError, Problem};
use crate::decode::FormatHint;

/// Loopback by default: metrics are not for the world. In a container, use 0.0.0.0:9464.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// librdkafka properties driftwatch sets itself: overriding them would break at-least-once.
const RESERVED: [(&str, &str); 6] = [
    ("bootstrap.servers", "use --brokers"),
    ("group.id", "use --group"),
    (
        "enable.auto.offset.store",
        "driftwatch stores an offset only after the record's outputs are acknowledged",
    ),
    (
        "enable.auto.commit",
        "driftwatch commits stored offsets periodically and at shutdown",
    ),
    (
        "enable.idempotence",
        "the producer must be idempotent so retries never duplicate or reorder outputs",
    ),
    (
        "enable.partition.eof",
        "driftwatch does not handle end-of-partition events",
    ),
];

/// One input topic and the format of its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub topic: String,
    pub format: FormatHint,
}

/// Which client a pass-through librdkafka property is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientKind {
    Both,
    Consumer,
    Producer,
}

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
    /// Input topic, optionally with its format: TOPIC or TOPIC=FORMAT (auto, cloudtrail,
    /// k8s-audit, gcp-audit, native); repeatable or comma-separated.
    #[arg(long = "input", env = "DRIFTWATCH_INPUTS", value_delimiter = ',')]
    pub inputs: Option<Vec<String>>,
    /// Topic for alerts (OCSF Detection Findings).
    #[arg(long, env = "DRIFTWATCH_ALERTS_TOPIC")]
    pub alerts_topic: Option<String>,
    /// Topic for revocation commands.
    #[arg(long, env = "DRIFTWATCH_COMMANDS_TOPIC")]
    pub commands_topic: Option<String>,
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
    /// Address for /metrics, /healthz and /readyz, or `off`.
    #[arg(long, env = "DRIFTWATCH_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Detection model laid over the embedded default (models/default.toml).
    #[arg(long, env = "DRIFTWATCH_MODEL")]
    pub model: Option<PathBuf>,
    /// Identity inventory (schemas/identity.v1.json).
    #[arg(long, env = "DRIFTWATCH_IDENTITIES")]
    pub identities: Option<PathBuf>,
}

/// The resolved, checked configuration of the streaming service.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub brokers: String,
    pub group_id: String,
    pub inputs: Vec<Input>,
    pub alerts_topic: String,
    pub commands_topic: String,
    pub dead_letter_topic: String,
    /// Pass-through librdkafka properties (TLS, SASL, tuning).
    pub kafka: Vec<(ClientKind, String, String)>,
    /// How long shutdown may take to drain, flush and commit.
    pub shutdown_grace: Duration,
    /// On partition assignment, rebuild baselines from this much of the partition's history
    /// before the committed offset; `None` rebuilds from the start of the log, `Some(0)` not at all.
    pub rebuild: Option<Duration>,
    /// Input records whose outputs may await acknowledgement at once (backpressure bound).
    pub max_in_flight: usize,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` when turned off.
    pub metrics_addr: Option<SocketAddr>,
    /// CloudEvents `source` of everything written.
    pub source: String,
    pub model: Option<PathBuf>,
    pub identities: Option<PathBuf>,
}

impl Settings {
    /// The defaults: what a setting given nowhere else is. `--help` shows them from here.
    pub fn defaults() -> Settings {
        Settings {
            brokers: Some("127.0.0.1:9092".into()),
            group: Some("driftwatch".into()),
            inputs: Some(vec!["driftwatch.access-logs".into()]),
            alerts_topic: Some("driftwatch.alerts".into()),
            commands_topic: Some("driftwatch.commands".into()),
            dead_letter_topic: Some("driftwatch.dead-letter".into()),
            kafka: Vec::new(),
            shutdown_grace_seconds: Some(30.0),
            rebuild_days: Some(30.0),
            max_in_flight: Some(10_000),
            metrics_addr: Some(DEFAULT_METRICS_ADDR.into()),
            model: None,
            identities: None,
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

/// Where a setting came from, to name it in problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Flag,
    File,
    Default,
}

/// How a problem names a setting: its flag, or its key in the file.
fn key(source: Source, field: &str) -> String {
    match source {
        Source::File => field.to_owned(),
        Source::Flag | Source::Default => {
            format!("--{}", FLAGS.get(field).map_or(field, String::as_str))
        }
    }
}

/// Parses pass-through properties: malformed arguments and reserved properties are problems.
/// `from_file` names the problems by file key instead of flag.
pub fn kafka_properties(
    props: &[KafkaProperty],
    from_file: bool,
    problems: &mut Vec<Problem>,
) -> Vec<(ClientKind, String, String)> {
    let mut out = Vec::new();
    for p in props {
        let (name, value) = match p {
            KafkaProperty::Set { name, value } => (name, value),
            KafkaProperty::Malformed(arg) => {
                problems.push(KafkaProperty::malformed(arg));
                continue;
            }
        };
        let (kind, prop) = if let Some(p) = name.strip_prefix("consumer.") {
            (ClientKind::Consumer, p)
        } else if let Some(p) = name.strip_prefix("producer.") {
            (ClientKind::Producer, p)
        } else {
            (ClientKind::Both, name.as_str())
        };
        if let Some((_, why)) = RESERVED.iter().find(|(r, _)| *r == prop) {
            problems.push(Problem {
                key: if from_file {
                    format!("kafka.\"{name}\"")
                } else {
                    format!("--kafka-property {name}")
                },
                why: format!("cannot be overridden: {why}"),
            });
            continue;
        }
        out.push((kind, prop.to_owned(), value.clone()));
    }
    out
}

impl RunConfig {
    /// Lays `cli` over `file` over [`Settings::defaults`] and checks the result.
    ///
    /// # Errors
    /// A [`ConfigError`] listing every problem, each with its flag or file key.
    pub fn resolve(
        cli: Settings,
        file: Option<(String, Settings)>,
    ) -> Result<RunConfig, ConfigError> {
        let mut problems = Vec::new();
        let (file_name, f) = match file {
            Some((n, s)) => (Some(n), s),
            None => (None, Settings::default()),
        };
        let d = Settings::defaults();
        macro_rules! pick {
            ($field:ident) => {
                match (cli.$field, f.$field, d.$field) {
                    (Some(v), _, _) => Some((v, key(Source::Flag, stringify!($field)))),
                    (None, Some(v), _) => Some((v, key(Source::File, stringify!($field)))),
                    (None, None, Some(v)) => Some((v, key(Source::Default, stringify!($field)))),
                    (None, None, None) => None,
                }
            };
        }
        macro_rules! pick_defaulted {
            ($field:ident) => {
                pick!($field).expect(concat!(stringify!($field), " has a default"))
            };
        }
        let mut non_empty = |(v, k): (String, String)| {
            if v.trim().is_empty() {
                problems.push(Problem {
                    key: k,
                    why: "must not be empty".into(),
                });
            }
            v.trim().to_owned()
        };
        let brokers = non_empty(pick_defaulted!(brokers));
        let group_id = non_empty(pick_defaulted!(group));
        let alerts_topic = non_empty(pick_defaulted!(alerts_topic));
        let commands_topic = non_empty(pick_defaulted!(commands_topic));
        let dead_letter_topic = non_empty(pick_defaulted!(dead_letter_topic));

        let (input_specs, input_key) = pick_defaulted!(inputs);
        let mut inputs: Vec<Input> = Vec::new();
        for spec in &input_specs {
            let (topic, format) = match spec.split_once('=') {
                Some((t, f)) => (t.trim(), f.trim()),
                None => (spec.trim(), "auto"),
            };
            if topic.is_empty() {
                problems.push(Problem {
                    key: input_key.clone(),
                    why: format!("`{spec}` names no topic"),
                });
                continue;
            }
            let format = match format.parse::<FormatHint>() {
                Ok(f) => f,
                Err(why) => {
                    problems.push(Problem {
                        key: input_key.clone(),
                        why: format!("`{spec}`: {why}"),
                    });
                    continue;
                }
            };
            if inputs.iter().any(|i| i.topic == topic) {
                problems.push(Problem {
                    key: input_key.clone(),
                    why: format!("topic `{topic}` is given twice"),
                });
                continue;
            }
            inputs.push(Input {
                topic: topic.to_owned(),
                format,
            });
        }
        if input_specs.is_empty() {
            problems.push(Problem {
                key: input_key.clone(),
                why: "at least one input topic is needed".into(),
            });
        }
        for (field, topic) in [
            ("alerts_topic", &alerts_topic),
            ("commands_topic", &commands_topic),
            ("dead_letter_topic", &dead_letter_topic),
        ] {
            if inputs.iter().any(|i| &i.topic == topic) {
                problems.push(Problem {
                    key: key(Source::Flag, field),
                    why: format!(
                        "`{topic}` is also an input topic: driftwatch would read its own output"
                    ),
                });
            }
        }
        if dead_letter_topic == alerts_topic || dead_letter_topic == commands_topic {
            problems.push(Problem {
                key: key(Source::Flag, "dead_letter_topic"),
                why: "must differ from the alerts and commands topics, whose consumers expect only valid messages".into(),
            });
        }

        // Properties: the command line's win over the file's, name by name.
        let from_file = kafka_properties(&f.kafka, true, &mut problems);
        let from_cli = kafka_properties(&cli.kafka, false, &mut problems);
        let mut merged: BTreeMap<(ClientKind, String), String> = BTreeMap::new();
        for (kind, name, value) in from_file.into_iter().chain(from_cli) {
            merged.insert((kind, name), value);
        }
        let kafka = merged.into_iter().map(|((k, n), v)| (k, n, v)).collect();

        let (grace, k) = pick_defaulted!(shutdown_grace_seconds);
        let shutdown_grace = if grace.is_finite() && grace > 0.0 && grace <= 3600.0 {
            Duration::from_secs_f64(grace)
        } else {
            problems.push(Problem {
                key: k,
                why: format!("{grace} is not a number of seconds in (0, 3600]"),
            });
            Duration::ZERO
        };
        let (days, k) = pick_defaulted!(rebuild_days);
        let rebuild = if !days.is_finite() || days > 3650.0 {
            problems.push(Problem {
                key: k,
                why: format!("{days} is not a number of days up to 3650 (negative: whole log)"),
            });
            None
        } else if days < 0.0 {
            None
        } else {
            Some(Duration::from_secs_f64(days * 86_400.0))
        };
        let (max_in_flight, k) = pick_defaulted!(max_in_flight);
        if !(1..=1_000_000).contains(&max_in_flight) {
            problems.push(Problem {
                key: k,
                why: format!("{max_in_flight} is not in 1..=1000000"),
            });
        }
        let (addr, k) = pick_defaulted!(metrics_addr);
        let metrics_addr = parse_metrics_addr(&addr).unwrap_or_else(|why| {
            problems.push(Problem { key: k, why });
            None
        });
        let model = pick!(model).map(|(v, _)| v);
        let identities = pick!(identities).map(|(v, _)| v);

        if !problems.is_empty() {
            return Err(ConfigError {
                file: file_name.map_or_else(
                    || "driftwatch run".to_owned(),
                    |n| format!("driftwatch run (command line and {n})"),
                ),
                problems,
            });
        }
        Ok(RunConfig {
            source: format!("urn:driftwatch:{group_id}"),
            brokers,
            group_id,
            inputs,
            alerts_topic,
            commands_topic,
            dead_letter_topic,
            kafka,
            shutdown_grace,
            rebuild,
            max_in_flight,
            metrics_addr,
            model,
            identities,
        })
    }

    /// The pass-through properties for one client (those for both, then its own).
    pub fn kafka_properties_for(&self, client: ClientKind) -> impl Iterator<Item = (&str, &str)> {
        self.kafka
            .iter()
            .filter(move |(scope, _, _)| *scope == ClientKind::Both || *scope == client)
            .map(|(_, k, v)| (k.as_str(), v.as_str()))
    }

    /// The effective configuration for the startup log, with secret-looking property values
    /// (passwords, keys, tokens, secrets) replaced.
    pub fn redacted(&self) -> String {
        let props: Vec<String> = self
            .kafka
            .iter()
            .map(|(kind, k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = ["password", "secret", "key", "token", "jaas", "credential"]
                    .iter()
                    .any(|s| lower.contains(s))
                    && !lower.ends_with(".location");
                let scope = match kind {
                    ClientKind::Both => "",
                    ClientKind::Consumer => "consumer.",
                    ClientKind::Producer => "producer.",
                };
                format!(
                    "{scope}{k}={}",
                    if secret { "<redacted>" } else { v.as_str() }
                )
            })
            .collect();
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|i| format!("{}={}", i.topic, i.format.as_str()))
            .collect();
        format!(
            "brokers={} group={} inputs=[{}] alerts={} commands={} dead_letter={} rebuild={} grace={}s max_in_flight={} metrics_addr={} kafka=[{}]",
            self.brokers,
            self.group_id,
            inputs.join(","),
            self.alerts_topic,
            self.commands_topic,
            self.dead_letter_topic,
            match self.rebuild {
                None => "whole-log".to_owned(),
                Some(d) => format!("{:.1}d", d.as_secs_f64() / 86_400.0),
            },
            self.shutdown_grace.as_secs_f64(),
            self.max_in_flight,
            self.metrics_addr
                .map_or_else(|| "off".to_owned(), |a| a.to_string()),
            props.join(",")
        )
    }
}

/// Parses a metrics address: an IP address and port, or `off` (`None`).
///
/// # Errors
/// Why the value is neither, for a [`Problem`].
pub fn parse_metrics_addr(v: &str) -> Result<Option<SocketAddr>, String> {
    match v.trim() {
        "off" => Ok(None),
        a => a.parse().map(Some).map_err(|_| {
            format!("`{v}` is not an IP address and port (e.g. 0.0.0.0:9464) or `off`")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(inputs: &[&str]) -> Settings {
        Settings {
            inputs: Some(inputs.iter().map(|s| s.to_string()).collect()),
            ..Settings::default()
        }
    }

    fn prop(name: &str, value: &str) -> KafkaProperty {
        KafkaProperty::Set {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn defaults_give_one_auto_input_and_the_standard_topics() {
        let c = RunConfig::resolve(Settings::default(), None).unwrap();
        assert_eq!(c.inputs.len(), 1);
        assert_eq!(c.inputs[0].topic, "driftwatch.access-logs");
        assert_eq!(c.inputs[0].format, FormatHint::Auto);
        assert_eq!(c.alerts_topic, "driftwatch.alerts");
        assert_eq!(c.rebuild, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.max_in_flight, 10_000);
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
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
    fn input_formats_are_parsed_per_topic() {
        let c = RunConfig::resolve(cli(&["ct=cloudtrail", "k8s=k8s-audit", "any"]), None).unwrap();
        let got: Vec<_> = c
            .inputs
            .iter()
            .map(|i| (i.topic.as_str(), i.format.as_str()))
            .collect();
        assert_eq!(
            got,
            [("ct", "cloudtrail"), ("k8s", "k8s-audit"), ("any", "auto")]
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_flag() {
        let mut s = cli(&["a=yaml", "a", "b", "=native"]);
        s.alerts_topic = Some("b".into());
        s.shutdown_grace_seconds = Some(0.0);
        s.kafka = vec![
            prop("enable.auto.commit", "false"),
            KafkaProperty::parse("no-equals").unwrap(),
        ];
        let e = RunConfig::resolve(s, None).unwrap_err();
        let text = e.to_string();
        for needle in [
            "--input: `a=yaml`: unknown format `yaml`",
            "--input: `=native` names no topic",
            "--alerts-topic: `b` is also an input topic",
            "--shutdown-grace-seconds: 0 is not",
            "--kafka-property enable.auto.commit: cannot be overridden",
            "--kafka-property: `no-equals` is not of the form name=value",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(e.problems.len(), 6, "{text}");
    }

    #[test]
    fn command_line_wins_over_the_file_and_file_problems_name_file_keys() {
        let file = Settings {
            brokers: Some("file:9092".into()),
            group: Some("from-file".into()),
            inputs: Some(vec!["x=yaml".into()]),
            max_in_flight: Some(0),
            kafka: vec![prop("enable.idempotence", "false")],
            ..Settings::default()
        };
        let cli = Settings {
            brokers: Some("cli:9092".into()),
            ..Settings::default()
        };
        let e =
            RunConfig::resolve(cli.clone(), Some(("dw.toml".into(), file.clone()))).unwrap_err();
        assert!(e.to_string().contains("dw.toml"), "{e}");
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["inputs", "kafka.\"enable.idempotence\"", "max_in_flight"],
            "{e}"
        );
        let file = Settings {
            max_in_flight: None,
            inputs: None,
            kafka: vec![prop("linger.ms", "5"), prop("producer.acks", "all")],
            ..file
        };
        let cli = Settings {
            kafka: vec![prop("linger.ms", "9")],
            ..cli
        };
        let c = RunConfig::resolve(cli, Some(("dw.toml".into(), file))).unwrap();
        assert_eq!(c.brokers, "cli:9092");
        assert_eq!(c.group_id, "from-file");
        let producer: Vec<_> = c.kafka_properties_for(ClientKind::Producer).collect();
        assert_eq!(producer, [("linger.ms", "9"), ("acks", "all")]);
        let consumer: Vec<_> = c.kafka_properties_for(ClientKind::Consumer).collect();
        assert_eq!(consumer, [("linger.ms", "9")]);
    }

    #[test]
    fn scoped_properties_go_to_one_client_and_secrets_are_redacted_in_the_log_line() {
        let s = Settings {
            kafka: vec![
                prop("consumer.fetch.min.bytes", "1"),
                prop("sasl.password", "hunter2"),
                prop("ssl.key.location", "/etc/k.pem"),
            ],
            ..Settings::default()
        };
        let c = RunConfig::resolve(s, None).unwrap();
        assert!(c.kafka.contains(&(
            ClientKind::Consumer,
            "fetch.min.bytes".to_owned(),
            "1".to_owned()
        )));
        let line = c.redacted();
        assert!(!line.contains("hunter2"), "{line}");
        assert!(line.contains("sasl.password=<redacted>"), "{line}");
        assert!(line.contains("ssl.key.location=/etc/k.pem"), "{line}");
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
