//! Configuration of `driftwatch run`: command-line flags (with `DRIFTWATCH_*` environment
//! fallbacks, handled by clap) laid over an optional TOML file, laid over the defaults below.
//! [`RunConfig::resolve`] checks everything at once and reports every problem with where it came
//! from, so a bad deployment fails at start with one complete message.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::decode::FormatHint;
use crate::model::{ConfigError, Problem};

pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
pub const DEFAULT_GROUP: &str = "driftwatch";
pub const DEFAULT_INPUT: &str = "driftwatch.access-logs";
pub const DEFAULT_ALERTS: &str = "driftwatch.alerts";
pub const DEFAULT_COMMANDS: &str = "driftwatch.commands";
pub const DEFAULT_DEAD_LETTER: &str = "driftwatch.dead-letter";
pub const DEFAULT_GRACE_SECONDS: f64 = 30.0;
pub const DEFAULT_REBUILD_DAYS: f64 = 30.0;
pub const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;
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
    /// On partition assignment, rebuild baselines from this many days of the partition's history
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

/// Settings as given by one source (the command line, the environment, or a file); all optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub brokers: Option<String>,
    pub group: Option<String>,
    /// `topic` or `topic=format`.
    pub inputs: Option<Vec<String>>,
    pub alerts_topic: Option<String>,
    pub commands_topic: Option<String>,
    pub dead_letter_topic: Option<String>,
    /// librdkafka properties; a `consumer.` or `producer.` prefix targets one client.
    pub kafka: Option<BTreeMap<String, String>>,
    pub shutdown_grace_seconds: Option<f64>,
    /// Days of history to rebuild baselines from on assignment; 0 for none, negative for the
    /// whole log.
    pub rebuild_days: Option<f64>,
    pub max_in_flight: Option<usize>,
    /// `host:port` for the metrics and health endpoints, or `off`.
    pub metrics_addr: Option<String>,
    pub model: Option<PathBuf>,
    pub identities: Option<PathBuf>,
}

impl Settings {
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

    /// Parses `key=value` pass-through properties given on the command line; every entry
    /// without `=` comes back as a problem.
    pub fn kafka_from_args(args: &[String]) -> (BTreeMap<String, String>, Vec<Problem>) {
        let mut map = BTreeMap::new();
        let mut problems = Vec::new();
        for a in args {
            match a.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    map.insert(k.trim().to_owned(), v.to_owned());
                }
                _ => problems.push(Problem {
                    key: "--kafka-property".into(),
                    why: format!("`{a}` is not of the form name=value"),
                }),
            }
        }
        (map, problems)
    }
}

fn toml_error_key(text: &str, e: &toml::de::Error) -> String {
    e.span()
        .and_then(|s| text.get(s))
        .map(|k| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && k.len() < 80)
        .unwrap_or_else(|| "(file)".into())
}

/// Where a setting came from, to name it in problems.
fn key(from_file: bool, name: &str) -> String {
    if from_file {
        name.replace('-', "_")
    } else {
        format!("--{name}")
    }
}

impl RunConfig {
    /// Lays `cli` over `file` over the defaults and checks the result.
    ///
    /// `cli_problems` are problems already found in the command line (malformed properties).
    ///
    /// # Errors
    /// A [`ConfigError`] listing every problem, each with its flag or file key.
    pub fn resolve(
        cli: Settings,
        cli_problems: Vec<Problem>,
        file: Option<(String, Settings)>,
    ) -> Result<RunConfig, ConfigError> {
        let mut problems = cli_problems;
        let (file_name, f) = match file {
            Some((n, s)) => (Some(n), s),
            None => (None, Settings::default()),
        };
        macro_rules! pick {
            ($field:ident, $name:literal) => {
                match (cli.$field, f.$field) {
                    (Some(v), _) => Some((v, key(false, $name))),
                    (None, Some(v)) => Some((v, key(true, $name))),
                    (None, None) => None,
                }
            };
        }
        let non_empty =
            |v: Option<(String, String)>, default: &str, problems: &mut Vec<Problem>| match v {
                Some((v, k)) if v.trim().is_empty() => {
                    problems.push(Problem {
                        key: k,
                        why: "must not be empty".into(),
                    });
                    default.to_owned()
                }
                Some((v, _)) => v.trim().to_owned(),
                None => default.to_owned(),
            };
        let brokers = non_empty(pick!(brokers, "brokers"), DEFAULT_BROKERS, &mut problems);
        let group_id = non_empty(pick!(group, "group"), DEFAULT_GROUP, &mut problems);
        let alerts_topic = non_empty(
            pick!(alerts_topic, "alerts-topic"),
            DEFAULT_ALERTS,
            &mut problems,
        );
        let commands_topic = non_empty(
            pick!(commands_topic, "commands-topic"),
            DEFAULT_COMMANDS,
            &mut problems,
        );
        let dead_letter_topic = non_empty(
            pick!(dead_letter_topic, "dead-letter-topic"),
            DEFAULT_DEAD_LETTER,
            &mut problems,
        );

        let (input_specs, input_key) = match pick!(inputs, "input") {
            Some((v, k)) => (v, k),
            None => (vec![DEFAULT_INPUT.to_owned()], "--input".to_owned()),
        };
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
        for (name, topic) in [
            ("alerts-topic", &alerts_topic),
            ("commands-topic", &commands_topic),
            ("dead-letter-topic", &dead_letter_topic),
        ] {
            if inputs.iter().any(|i| &i.topic == topic) {
                problems.push(Problem {
                    key: format!("--{name}"),
                    why: format!(
                        "`{topic}` is also an input topic: driftwatch would read its own output"
                    ),
                });
            }
        }
        if dead_letter_topic == alerts_topic || dead_letter_topic == commands_topic {
            problems.push(Problem {
                key: "--dead-letter-topic".into(),
                why: "must differ from the alerts and commands topics, whose consumers expect only valid messages".into(),
            });
        }

        let mut kafka = Vec::new();
        let file_kafka = f.kafka.unwrap_or_default();
        let cli_kafka = cli.kafka.unwrap_or_default();
        let mut merged: BTreeMap<String, (String, bool)> = file_kafka
            .into_iter()
            .map(|(k, v)| (k, (v, true)))
            .collect();
        for (k, v) in cli_kafka {
            merged.insert(k, (v, false));
        }
        for (name, (value, from_file)) in merged {
            let (kind, prop) = if let Some(p) = name.strip_prefix("consumer.") {
                (ClientKind::Consumer, p)
            } else if let Some(p) = name.strip_prefix("producer.") {
                (ClientKind::Producer, p)
            } else {
                (ClientKind::Both, name.as_str())
            };
            let k = if from_file {
                format!("kafka.\"{name}\"")
            } else {
                format!("--kafka-property {name}")
            };
            if let Some((_, why)) = RESERVED.iter().find(|(r, _)| *r == prop) {
                problems.push(Problem {
                    key: k,
                    why: format!("cannot be overridden: {why}"),
                });
                continue;
            }
            kafka.push((kind, prop.to_owned(), value));
        }

        let shutdown_grace = match pick!(shutdown_grace_seconds, "shutdown-grace-seconds") {
            Some((v, k)) if !(v.is_finite() && v > 0.0 && v <= 3600.0) => {
                problems.push(Problem {
                    key: k,
                    why: format!("{v} is not a number of seconds in (0, 3600]"),
                });
                Duration::from_secs_f64(DEFAULT_GRACE_SECONDS)
            }
            Some((v, _)) => Duration::from_secs_f64(v),
            None => Duration::from_secs_f64(DEFAULT_GRACE_SECONDS),
        };
        let rebuild = match pick!(rebuild_days, "rebuild-days") {
            Some((v, k)) if !v.is_finite() || v > 3650.0 => {
                problems.push(Problem {
                    key: k,
                    why: format!("{v} is not a number of days up to 3650 (negative: whole log)"),
                });
                None
            }
            Some((v, _)) if v < 0.0 => None,
            Some((v, _)) => Some(Duration::from_secs_f64(v * 86_400.0)),
            None => Some(Duration::from_secs_f64(DEFAULT_REBUILD_DAYS * 86_400.0)),
        };
        let max_in_flight = match pick!(max_in_flight, "max-in-flight") {
            Some((v, k)) if !(1..=1_000_000).contains(&v) => {
                problems.push(Problem {
                    key: k,
                    why: format!("{v} is not in 1..=1000000"),
                });
                DEFAULT_MAX_IN_FLIGHT
            }
            Some((v, _)) => v,
            None => DEFAULT_MAX_IN_FLIGHT,
        };
        let metrics_addr = match pick!(metrics_addr, "metrics-addr") {
            Some((v, k)) => parse_metrics_addr(&v).unwrap_or_else(|why| {
                problems.push(Problem { key: k, why });
                None
            }),
            None => parse_metrics_addr(DEFAULT_METRICS_ADDR)
                .expect("the default metrics address is valid"),
        };
        let model = pick!(model, "model").map(|(v, _)| v);
        let identities = pick!(identities, "identities").map(|(v, _)| v);

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
            .map(|i| format!("{}={}", i.topic, format_name(i.format)))
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

/// The name `--input topic=NAME` takes for a format.
pub fn format_name(f: FormatHint) -> &'static str {
    match f {
        FormatHint::Auto => "auto",
        FormatHint::Forced(s) => s.as_str(),
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

    #[test]
    fn defaults_give_one_auto_input_and_the_standard_topics() {
        let c = RunConfig::resolve(Settings::default(), vec![], None).unwrap();
        assert_eq!(c.inputs.len(), 1);
        assert_eq!(c.inputs[0].topic, DEFAULT_INPUT);
        assert_eq!(c.inputs[0].format, FormatHint::Auto);
        assert_eq!(c.alerts_topic, DEFAULT_ALERTS);
        assert_eq!(c.rebuild, Some(Duration::from_secs(30 * 86_400)));
    }

    #[test]
    fn input_formats_are_parsed_per_topic() {
        let c = RunConfig::resolve(
            cli(&["ct=cloudtrail", "k8s=k8s-audit", "any"]),
            vec![],
            None,
        )
        .unwrap();
        let got: Vec<_> = c
            .inputs
            .iter()
            .map(|i| (i.topic.as_str(), format_name(i.format)))
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
        s.kafka = Some(BTreeMap::from([(
            "enable.auto.commit".to_owned(),
            "false".to_owned(),
        )]));
        let e = RunConfig::resolve(s, vec![], None).unwrap_err();
        let text = e.to_string();
        for needle in [
            "--input: `a=yaml`: unknown format `yaml`",
            "--input: `=native` names no topic",
            "--alerts-topic: `b` is also an input topic",
            "--shutdown-grace-seconds: 0 is not",
            "--kafka-property enable.auto.commit: cannot be overridden",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(e.problems.len(), 5, "{text}");
    }

    #[test]
    fn command_line_wins_over_the_file_and_file_problems_name_file_keys() {
        let file = Settings {
            brokers: Some("file:9092".into()),
            group: Some("from-file".into()),
            max_in_flight: Some(0),
            ..Settings::default()
        };
        let cli = Settings {
            brokers: Some("cli:9092".into()),
            ..Settings::default()
        };
        let e = RunConfig::resolve(cli.clone(), vec![], Some(("dw.toml".into(), file.clone())))
            .unwrap_err();
        assert!(e.to_string().contains("dw.toml"), "{e}");
        assert!(
            e.problems
                .iter()
                .any(|p| p.key == "max_in_flight" && p.why.contains("not in")),
            "{e}"
        );
        let file = Settings {
            max_in_flight: None,
            ..file
        };
        let c = RunConfig::resolve(cli, vec![], Some(("dw.toml".into(), file))).unwrap();
        assert_eq!(c.brokers, "cli:9092");
        assert_eq!(c.group_id, "from-file");
    }

    #[test]
    fn scoped_properties_go_to_one_client_and_secrets_are_redacted_in_the_log_line() {
        let s = Settings {
            kafka: Some(BTreeMap::from([
                ("consumer.fetch.min.bytes".to_owned(), "1".to_owned()),
                ("sasl.password".to_owned(), "hunter2".to_owned()),
                ("ssl.key.location".to_owned(), "/etc/k.pem".to_owned()),
            ])),
            ..Settings::default()
        };
        let c = RunConfig::resolve(s, vec![], None).unwrap();
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
    }
}
