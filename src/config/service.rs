//! The configuration of `driftwatch run`: [`RunConfig::resolve`] lays the command line over the
//! `--config` file over the defaults (each a [`Settings`]) and checks everything at once,
//! reporting every problem with the flag or file key it came from, so a bad deployment fails at
//! start with one complete message.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::settings::{self, KafkaProperty, Settings};
use super::{ConfigError, Problem};
use crate::cli::CLUSTER_NAME_RULE;
use crate::decode::FormatHint;
use crate::emit::AlertFormat;
use crate::redact::shape;

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
        "driftwatch commits offsets itself, after the state they led to is saved (--commit-interval-seconds)",
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

/// One input topic, the format of its records and, for Kubernetes audit logs, the cluster
/// they come from (`TOPIC=FORMAT@CLUSTER`), and how its records are keyed (`:unkeyed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub topic: String,
    pub format: FormatHint,
    pub cluster: Option<Arc<str>>,
    pub keying: Keying,
}

/// How an input's records are keyed, which decides the stage that reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keying {
    /// Keyed by principal key upstream: read by the stateful stage directly.
    Keyed,
    /// Not keyed by principal key (`:unkeyed`): the stateless stage decodes each record and
    /// re-produces its events, keyed by principal key, to the repartition topic.
    Unkeyed,
    /// The repartition topic itself (internal): keyed by principal key by driftwatch, each
    /// record one event in its source's format, named in its headers.
    Repartitioned,
}

impl Keying {
    /// Partitions of such an input carry identities' state (and so are restored or rebuilt
    /// when assigned).
    pub fn is_stateful(self) -> bool {
        self != Keying::Unkeyed
    }
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
    pub alert_format: AlertFormat,
    pub commands_topic: String,
    pub governance_topic: String,
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
    /// The compacted topic identity snapshots are saved to; `None` keeps state in memory only.
    pub state_topic: Option<String>,
    /// The internal topic events of `:unkeyed` inputs are re-keyed onto (an input of
    /// [`Keying::Repartitioned`] in `inputs` when one is unkeyed).
    pub repartition_topic: String,
    /// Its partitions when driftwatch creates it (default: the most of an unkeyed input's).
    pub repartition_partitions: Option<i32>,
    /// Unused grants that make an identity's `excess_privilege` finding (0: none).
    pub least_privilege_min_unused: usize,
    /// The period assumed for an action whose own is not learned, in days.
    pub least_privilege_prior_period_days: f64,
    /// Time between commit points.
    pub commit_interval: Duration,
    /// Idle input time after which the dormancy lifecycle extrapolates event time.
    pub idle_grace: Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` when turned off.
    pub metrics_addr: Option<SocketAddr>,
    /// CloudEvents `source` of everything written.
    pub source: String,
    pub model: Option<PathBuf>,
    pub identities: Option<PathBuf>,
    /// The compacted topic of identity inventory records followed while running.
    pub identities_topic: Option<String>,
    /// Cloud providers' published address ranges (`--ip-ranges`).
    pub ip_ranges: Vec<PathBuf>,
    /// Country and ASN databases (`--geoip`).
    pub geoip: Vec<PathBuf>,
}

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
            format!("--{}", settings::flag(field).unwrap_or(field))
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
                match (cli.$field, f.$field, d.$field.clone()) {
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
        // An empty name is a problem; the default stands in for it so later checks (an output
        // topic that is also an input) do not report the same mistake again.
        let mut non_empty = |(v, k): (String, String), default: Option<String>| {
            if v.trim().is_empty() {
                problems.push(Problem {
                    key: k,
                    why: "must not be empty".into(),
                });
                return default.expect("a name setting has a default");
            }
            v.trim().to_owned()
        };
        let brokers = non_empty(pick_defaulted!(brokers), d.brokers.clone());
        let group_id = non_empty(pick_defaulted!(group), d.group.clone());
        let alerts_topic = non_empty(pick_defaulted!(alerts_topic), d.alerts_topic.clone());
        let commands_topic = non_empty(pick_defaulted!(commands_topic), d.commands_topic.clone());
        let governance_topic = non_empty(
            pick_defaulted!(governance_topic),
            d.governance_topic.clone(),
        );
        let dead_letter_topic = non_empty(
            pick_defaulted!(dead_letter_topic),
            d.dead_letter_topic.clone(),
        );

        let (input_specs, input_key) = pick_defaulted!(inputs);
        let mut inputs: Vec<Input> = Vec::new();
        for spec in &input_specs {
            // Topic names cannot hold `@` or `:` (Kafka allows letters, digits, `.`, `_`, `-`).
            let (unsuffixed, keying) = match spec.trim().rsplit_once(':') {
                Some((s, "unkeyed")) => (s, Keying::Unkeyed),
                Some((s, "keyed")) => (s, Keying::Keyed),
                Some((_, other)) => {
                    problems.push(Problem {
                        key: input_key.clone(),
                        why: format!(
                            "`{spec}`: unknown suffix `:{other}`, expected `:unkeyed` (records not keyed by principal key) or `:keyed`"
                        ),
                    });
                    continue;
                }
                None => (spec.trim(), Keying::Keyed),
            };
            let (spec_no_cluster, cluster) = match unsuffixed.split_once('@') {
                Some((s, c)) => (s, Some(c.trim())),
                None => (unsuffixed, None),
            };
            if let Some(c) = cluster
                && !shape::cluster_name(c)
            {
                problems.push(Problem {
                    key: input_key.clone(),
                    why: format!("`{spec}`: {CLUSTER_NAME_RULE}"),
                });
                continue;
            }
            let (topic, format) = match spec_no_cluster.split_once('=') {
                Some((t, f)) => (t.trim(), f.trim()),
                None => (spec_no_cluster.trim(), "auto"),
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
                cluster: cluster.map(Arc::from),
                keying,
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
            ("governance_topic", &governance_topic),
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
        if [&alerts_topic, &commands_topic, &governance_topic].contains(&&dead_letter_topic) {
            problems.push(Problem {
                key: key(Source::Flag, "dead_letter_topic"),
                why: "must differ from the alerts, commands and governance topics, whose consumers expect only valid messages".into(),
            });
        }
        if governance_topic == commands_topic || governance_topic == alerts_topic {
            problems.push(Problem {
                key: key(Source::Flag, "governance_topic"),
                why: "must differ from the alerts and commands topics: incident playbooks must never receive lifecycle suspensions and deletions".into(),
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
        let (secs, k) = pick_defaulted!(commit_interval_seconds);
        let commit_interval = if secs.is_finite() && (0.01..=600.0).contains(&secs) {
            Duration::from_secs_f64(secs)
        } else {
            problems.push(Problem {
                key: k,
                why: format!("{secs} is not a number of seconds in [0.01, 600]"),
            });
            Duration::ZERO
        };
        let (secs, k) = pick_defaulted!(idle_grace_seconds);
        let idle_grace = if secs.is_finite() && (0.0..=604_800.0).contains(&secs) {
            Duration::from_secs_f64(secs)
        } else {
            problems.push(Problem {
                key: k,
                why: format!("{secs} is not a number of seconds in [0, 604800]"),
            });
            Duration::ZERO
        };
        let outputs = [
            alerts_topic.as_str(),
            commands_topic.as_str(),
            governance_topic.as_str(),
            dead_letter_topic.as_str(),
        ];
        let repartition_topic = match pick!(repartition_topic) {
            Some((t, k)) if t.trim().is_empty() => {
                problems.push(Problem {
                    key: k,
                    why: "must not be empty".into(),
                });
                String::new()
            }
            Some((t, k)) => {
                let t = t.trim().to_owned();
                if taken(&t, &inputs, &outputs) {
                    problems.push(Problem {
                        key: k,
                        why: format!(
                            "`{t}` is also an input or output topic: the repartition topic is driftwatch's own"
                        ),
                    });
                }
                t
            }
            None => format!("{group_id}.repartition"),
        };
        let repartition_partitions = match pick!(repartition_partitions) {
            Some((n, k)) if !(1..=10_000).contains(&n) => {
                problems.push(Problem {
                    key: k,
                    why: format!("{n} is not a number of partitions in 1..=10000"),
                });
                None
            }
            Some((n, _)) => Some(n),
            None => None,
        };
        if inputs.iter().any(|i| i.keying == Keying::Unkeyed)
            && !inputs.iter().any(|i| i.topic == repartition_topic)
        {
            inputs.push(Input {
                topic: repartition_topic.clone(),
                format: FormatHint::Auto,
                cluster: None,
                keying: Keying::Repartitioned,
            });
        }
        let (least_privilege_min_unused, _) = pick_defaulted!(least_privilege_min_unused);
        let (days, k) = pick_defaulted!(least_privilege_prior_period_days);
        let least_privilege_prior_period_days = if days.is_finite() && days > 0.0 && days <= 3650.0
        {
            days
        } else {
            problems.push(Problem {
                key: k,
                why: format!("{days} is not a number of days in (0, 3650]"),
            });
            30.0
        };
        let state_topic = match pick!(state_topic) {
            Some((t, _)) if t.trim() == "off" => None,
            Some((t, k)) if t.trim().is_empty() => {
                problems.push(Problem {
                    key: k,
                    why: "must not be empty (`off` keeps state in memory only)".into(),
                });
                None
            }
            Some((t, k)) => {
                let t = t.trim().to_owned();
                if taken(&t, &inputs, &outputs) {
                    problems.push(Problem {
                        key: k,
                        why: format!("`{t}` is also an input, output or repartition topic"),
                    });
                }
                Some(t)
            }
            None => Some(format!("{group_id}.state")),
        };
        let (format, k) = pick_defaulted!(alert_format);
        let alert_format = format.parse::<AlertFormat>().unwrap_or_else(|why| {
            problems.push(Problem { key: k, why });
            AlertFormat::default()
        });
        let (addr, k) = pick_defaulted!(metrics_addr);
        let metrics_addr = parse_metrics_addr(&addr).unwrap_or_else(|why| {
            problems.push(Problem { key: k, why });
            None
        });
        let model = pick!(model).map(|(v, _)| v);
        let identities = pick!(identities).map(|(v, _)| v);
        let identities_topic = match pick!(identities_topic) {
            Some((t, k)) if t.trim().is_empty() => {
                problems.push(Problem {
                    key: k,
                    why: "must not be empty (leave it out to follow no topic)".into(),
                });
                None
            }
            Some((t, k)) => {
                let t = t.trim().to_owned();
                if taken(&t, &inputs, &outputs) || state_topic.as_ref() == Some(&t) {
                    problems.push(Problem {
                        key: k,
                        why: format!(
                            "`{t}` is also an input, output or state topic: the inventory needs a topic of its own"
                        ),
                    });
                }
                Some(t)
            }
            None => None,
        };
        let ip_ranges = pick!(ip_ranges).map(|(v, _)| v).unwrap_or_default();
        let geoip = pick!(geoip).map(|(v, _)| v).unwrap_or_default();

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
            governance_topic,
            dead_letter_topic,
            kafka,
            shutdown_grace,
            rebuild,
            max_in_flight,
            state_topic,
            repartition_topic,
            repartition_partitions,
            least_privilege_min_unused,
            least_privilege_prior_period_days,
            commit_interval,
            idle_grace,
            metrics_addr,
            alert_format,
            model,
            identities,
            identities_topic,
            ip_ranges,
            geoip,
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
            .map(|i| {
                let keying = match i.keying {
                    Keying::Keyed => "",
                    Keying::Unkeyed => ":unkeyed",
                    Keying::Repartitioned => ":repartitioned",
                };
                match &i.cluster {
                    Some(c) => format!("{}={}@{c}{keying}", i.topic, i.format.as_str()),
                    None => format!("{}={}{keying}", i.topic, i.format.as_str()),
                }
            })
            .collect();
        format!(
            "brokers={} group={} inputs=[{}] alerts={} ({}) commands={} governance={} dead_letter={} state={} identities_topic={} commit_interval={}s idle_grace={}s rebuild={} grace={}s max_in_flight={} metrics_addr={} kafka=[{}]",
            self.brokers,
            self.group_id,
            inputs.join(","),
            self.alerts_topic,
            self.alert_format.as_str(),
            self.commands_topic,
            self.governance_topic,
            self.dead_letter_topic,
            self.state_topic.as_deref().unwrap_or("off"),
            self.identities_topic.as_deref().unwrap_or("none"),
            self.commit_interval.as_secs_f64(),
            self.idle_grace.as_secs_f64(),
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

/// True when topic `t` is already one of the `inputs` or `outputs`.
fn taken(t: &str, inputs: &[Input], outputs: &[&str]) -> bool {
    inputs.iter().any(|i| i.topic == t) || outputs.contains(&t)
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
        assert_eq!(c.governance_topic, "driftwatch.governance");
        assert_eq!(c.rebuild, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.max_in_flight, 10_000);
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn an_unkeyed_input_brings_the_repartition_topic_in_as_a_stateful_input() {
        let c = RunConfig::resolve(
            cli(&[
                "docs=cloudtrail:unkeyed",
                "eks=k8s-audit@prod-eu:unkeyed",
                "keyed=native:keyed",
            ]),
            None,
        )
        .unwrap();
        let by: Vec<(&str, Keying)> = c
            .inputs
            .iter()
            .map(|i| (i.topic.as_str(), i.keying))
            .collect();
        assert_eq!(
            by,
            [
                ("docs", Keying::Unkeyed),
                ("eks", Keying::Unkeyed),
                ("keyed", Keying::Keyed),
                ("driftwatch.repartition", Keying::Repartitioned),
            ]
        );
        assert_eq!(c.inputs[1].cluster.as_deref(), Some("prod-eu"));
        assert_eq!(c.repartition_partitions, None);
        assert!(c.redacted().contains("docs=cloudtrail:unkeyed"));
        // Keyed inputs only: no repartition topic is read.
        let c = RunConfig::resolve(cli(&["a", "b=cloudtrail"]), None).unwrap();
        assert!(c.inputs.iter().all(|i| i.keying == Keying::Keyed));
    }

    #[test]
    fn a_bad_keying_suffix_or_repartition_setting_is_named() {
        let e = RunConfig::resolve(
            Settings {
                repartition_topic: Some("docs".into()),
                repartition_partitions: Some(0),
                least_privilege_prior_period_days: Some(-1.0),
                ..cli(&["docs=cloudtrail:unkeyd", "x:unkeyed"])
            },
            None,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("unknown suffix `:unkeyd`"), "{text}");
        assert!(text.contains("--repartition-partitions"), "{text}");
        assert!(
            text.contains("--least-privilege-prior-period-days"),
            "{text}"
        );
        let e = RunConfig::resolve(
            Settings {
                repartition_topic: Some("x".into()),
                ..cli(&["x:unkeyed"])
            },
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--repartition-topic"), "{e}");
    }

    #[test]
    fn input_formats_are_parsed_per_topic() {
        let c = RunConfig::resolve(
            cli(&[
                "ct=cloudtrail",
                "k8s=k8s-audit@prod-eu",
                "any",
                "eks@dr.us-2",
            ]),
            None,
        )
        .unwrap();
        let got: Vec<_> = c
            .inputs
            .iter()
            .map(|i| (i.topic.as_str(), i.format.as_str(), i.cluster.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("ct", "cloudtrail", None),
                ("k8s", "k8s-audit", Some("prod-eu")),
                ("any", "auto", None),
                ("eks", "auto", Some("dr.us-2")),
            ]
        );
        assert!(c.redacted().contains("k8s=k8s-audit@prod-eu"));
    }

    #[test]
    fn every_problem_is_reported_with_its_flag() {
        let mut s = cli(&["a=yaml", "a", "b", "=native", "c=k8s-audit@x/y", "d@"]);
        s.alert_format = Some("xml".into());
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
            "--input: `c=k8s-audit@x/y`: a cluster name is 1 to 100 letters",
            "--input: `d@`: a cluster name",
            "--alert-format: unknown alert format `xml` (ocsf, ecs)",
            "--alerts-topic: `b` is also an input topic",
            "--shutdown-grace-seconds: 0 is not",
            "--kafka-property enable.auto.commit: cannot be overridden",
            "--kafka-property: `no-equals` is not of the form name=value",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(e.problems.len(), 9, "{text}");
    }

    #[test]
    fn governance_commands_never_share_a_topic_with_revocations_or_dead_letters() {
        let s = Settings {
            governance_topic: Some("driftwatch.commands".into()),
            ..Settings::default()
        };
        let e = RunConfig::resolve(s, None).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].key, "--governance-topic");
        assert!(
            e.to_string()
                .contains("incident playbooks must never receive"),
            "{e}"
        );
        let s = Settings {
            dead_letter_topic: Some("driftwatch.governance".into()),
            ..Settings::default()
        };
        let e = RunConfig::resolve(s, None).unwrap_err();
        assert_eq!(e.problems[0].key, "--dead-letter-topic", "{e}");
    }

    #[test]
    fn an_empty_topic_name_is_one_problem_not_three() {
        let s = Settings {
            alerts_topic: Some(" ".into()),
            dead_letter_topic: Some(String::new()),
            ..Settings::default()
        };
        let e = RunConfig::resolve(s, None).unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["--alerts-topic", "--dead-letter-topic"], "{e}");
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
}
