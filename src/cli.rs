//! The command line: every subcommand and flag, in the library so tests can parse the same
//! arguments a deployment passes (see `tests/deploy.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::decode::FormatHint;
use crate::model::{ConfigError, Problem};
use crate::service::config::{DEFAULT_METRICS_ADDR, RunConfig, Settings, parse_metrics_addr};
use crate::telemetry::logging::LogFormat;

/// Streaming behavioural anomaly detection for non-human identities.
#[derive(Parser)]
#[command(name = "driftwatch", version, about, long_about = None)]
pub struct Cli {
    /// Log lines as human-readable text or one JSON object per line; the level comes from
    /// RUST_LOG (default: info for `run`, warn otherwise).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "DRIFTWATCH_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the engine over log files in event-time order; alerts and commands as JSONL.
    Replay {
        /// Record format; `auto` detects it per record.
        #[arg(long, default_value = "auto", value_parser = parse_format, env = "DRIFTWATCH_FORMAT")]
        format: FormatHint,
        /// Detection model laid over the embedded default (models/default.toml).
        #[arg(long, env = "DRIFTWATCH_MODEL")]
        model: Option<PathBuf>,
        /// Write alerts (OCSF Detection Findings) here instead of stdout.
        #[arg(long)]
        alerts: Option<PathBuf>,
        /// Write revocation commands here instead of stdout.
        #[arg(long)]
        commands: Option<PathBuf>,
        /// Write rejected records with their reasons here (JSONL).
        #[arg(long)]
        dead_letter: Option<PathBuf>,
        /// Identity inventory: owner, expiry, declared networks, protected (schemas/identity.v1.json).
        #[arg(long, env = "DRIFTWATCH_IDENTITIES")]
        identities: Option<PathBuf>,
        /// Input files: JSONL, JSON arrays or documents, optionally gzip; `-` for stdin.
        #[arg(required = true)]
        inputs: Vec<String>,
    },
    /// Generate a labelled fleet (CloudTrail + Kubernetes audit JSONL and labels.json).
    Simulate {
        /// Directory to write cloudtrail.jsonl, k8s-audit.jsonl and labels.json into.
        #[arg(long)]
        out: PathBuf,
        /// Number of machine identities (a few more are added so every attack kind has victims).
        #[arg(long, default_value_t = 200)]
        identities: usize,
        /// Days of traffic; attacks are injected after the first 7.
        #[arg(long, default_value_t = 21)]
        days: u32,
        /// Random seed: the same seed gives the same fleet.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Score alerts against a labels file: attacks caught, false alert-hours.
    Evaluate {
        /// labels.json (schemas/labels.v1.json).
        #[arg(long)]
        labels: PathBuf,
        /// Alerts JSONL written by `replay`.
        #[arg(long)]
        alerts: PathBuf,
        /// Minutes after an attack's last event during which an alert still counts as catching it.
        #[arg(long, default_value_t = 60)]
        grace_minutes: i64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the streaming service: consume access logs from Kafka, emit alerts, commands and
    /// dead letters to Kafka, at-least-once. Stops cleanly on SIGTERM or Ctrl-C.
    Run(Box<RunArgs>),
    /// Produce log files (or, with --simulate, a simulated fleet) into a Kafka topic, each record
    /// keyed by its identity's principal key, in event-time order (undecodable records are
    /// produced unkeyed, for the dead-letter path).
    Produce {
        /// Bootstrap brokers (host:port,...).
        #[arg(long, env = "DRIFTWATCH_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Topic to produce into.
        #[arg(
            long,
            env = "DRIFTWATCH_PRODUCE_TOPIC",
            default_value = "driftwatch.access-logs"
        )]
        topic: String,
        /// Record format used to find each record's principal key.
        #[arg(long, default_value = "auto", value_parser = parse_format)]
        format: FormatHint,
        /// librdkafka producer property, name=value (repeatable), e.g. security.protocol=SASL_SSL.
        #[arg(long = "kafka-property", value_name = "NAME=VALUE")]
        kafka_property: Vec<String>,
        /// At most this many records per second (0: as fast as the broker takes them).
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// Produce a simulated fleet with injected attacks (as `driftwatch simulate` writes)
        /// instead of files.
        #[arg(long, conflicts_with = "inputs")]
        simulate: bool,
        /// With --simulate: number of machine identities.
        #[arg(long, default_value_t = 200, requires = "simulate")]
        identities: usize,
        /// With --simulate: days of traffic; attacks come after the first 7.
        #[arg(long, default_value_t = 21, requires = "simulate")]
        days: u32,
        /// With --simulate: random seed of the fleet.
        #[arg(long, default_value_t = 7, requires = "simulate")]
        seed: u64,
        /// Input files: JSONL, JSON arrays or documents, optionally gzip; `-` for stdin.
        #[arg(required_unless_present = "simulate")]
        inputs: Vec<String>,
    },
    /// The whole service with nothing installed: an in-process Kafka cluster, a simulated fleet
    /// with attacks, the service, and its alerts and commands printed as they arrive.
    Demo {
        /// Number of simulated machine identities.
        #[arg(long, default_value_t = 80)]
        identities: usize,
        /// Days of simulated traffic; attacks come after the first 7.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Random seed of the fleet.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Partitions of the input topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Detection model laid over the embedded default.
        #[arg(long, env = "DRIFTWATCH_MODEL")]
        model: Option<PathBuf>,
        /// Address for /metrics, /healthz and /readyz while the demo runs, or `off` (a free port
        /// is used if this one is taken).
        #[arg(long, default_value = DEFAULT_METRICS_ADDR)]
        metrics_addr: String,
    },
    /// Throughput through a real broker: produces N records, then measures a do-nothing
    /// consumer and the full service on the same topic and prints both rates and their ratio.
    BenchKafka {
        /// Bootstrap brokers (host:port,...).
        #[arg(long, env = "DRIFTWATCH_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Records to produce and consume.
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        /// Partitions of the benchmark's input topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
    /// Check a running instance's endpoint, for container health checks: exits 0 if
    /// http://ADDR/PATH answers 200, 1 otherwise (printing the answer or the error).
    Probe {
        /// Address of the metrics endpoint (--metrics-addr of `run`).
        #[arg(long, default_value = DEFAULT_METRICS_ADDR)]
        addr: SocketAddr,
        /// /healthz (alive), /readyz (partitions assigned and baselines rebuilt) or /metrics.
        #[arg(long, default_value = "/readyz")]
        path: String,
    },
    /// Detection model files.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

/// Flags of `driftwatch run`. Each falls back to its `DRIFTWATCH_*` environment variable, then to
/// the `--config` file, then to the default shown.
#[derive(clap::Args)]
pub struct RunArgs {
    /// TOML file with any of the settings below (keys in snake_case, `kafka` as a table).
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Bootstrap brokers, host:port,... [default: 127.0.0.1:9092]
    #[arg(long, env = "DRIFTWATCH_BROKERS")]
    pub brokers: Option<String>,
    /// Consumer group; instances with the same group share the partitions. [default: driftwatch]
    #[arg(long, env = "DRIFTWATCH_GROUP")]
    pub group: Option<String>,
    /// Input topic, optionally with its format: TOPIC or TOPIC=FORMAT (auto, cloudtrail,
    /// k8s-audit, gcp-audit, native); repeatable or comma-separated. [default: driftwatch.access-logs]
    #[arg(long = "input", env = "DRIFTWATCH_INPUTS", value_delimiter = ',')]
    pub inputs: Option<Vec<String>>,
    /// Topic for alerts (OCSF Detection Findings). [default: driftwatch.alerts]
    #[arg(long, env = "DRIFTWATCH_ALERTS_TOPIC")]
    pub alerts_topic: Option<String>,
    /// Topic for revocation commands. [default: driftwatch.commands]
    #[arg(long, env = "DRIFTWATCH_COMMANDS_TOPIC")]
    pub commands_topic: Option<String>,
    /// Topic for undecodable records, with the reason in headers. [default: driftwatch.dead-letter]
    #[arg(long, env = "DRIFTWATCH_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// librdkafka property NAME=VALUE for both clients, or consumer.NAME / producer.NAME for one
    /// (repeatable), e.g. security.protocol=SASL_SSL.
    #[arg(
        long = "kafka-property",
        value_name = "NAME=VALUE",
        env = "DRIFTWATCH_KAFKA_PROPERTIES",
        value_delimiter = ';'
    )]
    pub kafka_property: Vec<String>,
    /// Seconds shutdown may take to drain, flush and commit. [default: 30]
    #[arg(long, env = "DRIFTWATCH_SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: Option<f64>,
    /// Days of a newly assigned partition's history to rebuild baselines from; 0 for none,
    /// negative for the whole log. [default: 30]
    #[arg(long, env = "DRIFTWATCH_REBUILD_DAYS", allow_negative_numbers = true)]
    pub rebuild_days: Option<f64>,
    /// Input records whose outputs may await acknowledgement at once. [default: 10000]
    #[arg(long, env = "DRIFTWATCH_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Address for /metrics, /healthz and /readyz, or `off`. [default: 127.0.0.1:9464]
    #[arg(long, env = "DRIFTWATCH_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Detection model laid over the embedded default (models/default.toml).
    #[arg(long, env = "DRIFTWATCH_MODEL")]
    pub model: Option<PathBuf>,
    /// Identity inventory (schemas/identity.v1.json).
    #[arg(long, env = "DRIFTWATCH_IDENTITIES")]
    pub identities: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Check a model file; prints every problem with its key.
    Check { file: PathBuf },
}

pub fn parse_format(s: &str) -> Result<FormatHint, String> {
    s.parse()
}

impl RunArgs {
    /// The service configuration these flags (and their environment fallbacks and `--config`
    /// file) describe.
    ///
    /// # Errors
    /// A [`ConfigError`] naming every problem, with the flag or file key at fault.
    pub fn resolve(&self) -> Result<RunConfig, ConfigError> {
        let (kafka, problems) = Settings::kafka_from_args(&self.kafka_property);
        let cli = Settings {
            brokers: self.brokers.clone(),
            group: self.group.clone(),
            inputs: self.inputs.clone(),
            alerts_topic: self.alerts_topic.clone(),
            commands_topic: self.commands_topic.clone(),
            dead_letter_topic: self.dead_letter_topic.clone(),
            kafka: Some(kafka),
            shutdown_grace_seconds: self.shutdown_grace_seconds,
            rebuild_days: self.rebuild_days,
            max_in_flight: self.max_in_flight,
            metrics_addr: self.metrics_addr.clone(),
            model: self.model.clone(),
            identities: self.identities.clone(),
        };
        let file = match &self.config {
            Some(p) => Some((p.display().to_string(), Settings::load(p)?)),
            None => None,
        };
        RunConfig::resolve(cli, problems, file)
    }
}

/// Parses `--metrics-addr` of the commands other than `run` (which checks it with the rest of
/// its configuration).
///
/// # Errors
/// A [`ConfigError`] naming the flag.
pub fn metrics_addr(command: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    parse_metrics_addr(value).map_err(|why| ConfigError {
        file: format!("driftwatch {command}"),
        problems: vec![Problem {
            key: "--metrics-addr".into(),
            why,
        }],
    })
}
