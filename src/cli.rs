//! The command line: every subcommand and flag, in the library so tests can parse the same
//! arguments a deployment passes (see `tests/deploy.rs`). `run`'s flags come from
//! [`Settings`], which also defines its file keys and defaults; [`command`] adds those defaults to
//! `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::service::parse_metrics_addr;
use crate::config::settings::{DEFAULT_METRICS_ADDR, KafkaProperty};
use crate::config::{ConfigError, Problem, RunConfig, Settings};
use crate::decode::FormatHint;
use crate::telemetry::logging::LogFormat;

/// Streaming behavioural anomaly detection for non-human identities.
#[derive(Parser)]
#[command(name = "driftwatch", version, about, long_about = None)]
pub struct Cli {
    /// Log lines as human-readable text or one JSON object per line; the level comes from
    /// RUST_LOG (default: info for `run` and `forward`, warn otherwise).
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
    Replay(ReplayArgs),
    /// Generate a labelled fleet (CloudTrail + Kubernetes audit JSONL and labels.json).
    Simulate(SimulateArgs),
    /// Score alerts against a labels file: attacks caught, false alert-hours.
    Evaluate(EvaluateArgs),
    /// Run the streaming service: consume access logs from Kafka, emit alerts, commands and
    /// dead letters to Kafka, at-least-once. Stops cleanly on SIGTERM or Ctrl-C.
    Run(Box<RunArgs>),
    /// Produce log files (or, with --simulate, a simulated fleet) into a Kafka topic, each record
    /// keyed by its identity's principal key, in event-time order (undecodable records are
    /// produced unkeyed, for the dead-letter path).
    Produce(ProduceArgs),
    /// The whole service with nothing installed: an in-process Kafka cluster, a simulated fleet
    /// with attacks (its CloudTrail in unkeyed S3 delivery documents, re-keyed through the
    /// repartition topic), the service (restarted halfway, restoring from its state topic), and
    /// its alerts and commands printed as they arrive.
    Demo(DemoArgs),
    /// Throughput through a real broker (or the in-process mock cluster): produces N records,
    /// then measures a do-nothing consumer and the full service on the same topic and prints
    /// both rates, their ratio and the CPU time per record of each.
    BenchKafka(BenchKafkaArgs),
    /// What driftwatch has learned, from a replay state file or a service's state topic: every
    /// identity (riskiest first), or one in detail (endpoints, origins, active hours, volume,
    /// open alerts).
    Inspect(InspectArgs),
    /// Reports drawn from what driftwatch learned (a replay state file or a service's state
    /// topic).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Deliver a topic (alerts, commands, or a dead-letter topic to replay) to a SOAR webhook:
    /// each message POSTed as it is, signed (HMAC-SHA256) with an Idempotency-Key, retried with
    /// backoff, dead-lettered after --max-attempts or a permanent refusal, at-least-once.
    /// Stops cleanly on SIGTERM or Ctrl-C.
    Forward(Box<ForwardArgs>),
    /// Check a running instance's endpoint, for container health checks: exits 0 if
    /// http://ADDR/PATH answers 200, 1 otherwise (printing the answer or the error).
    Probe(ProbeArgs),
    /// Detection model files.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Record format; `auto` detects it per record.
    #[arg(long, default_value = "auto", value_parser = parse_format, env = "DRIFTWATCH_FORMAT")]
    pub format: FormatHint,
    /// The Kubernetes cluster the inputs' audit records come from: it qualifies their
    /// principal keys (`CLUSTER/system:serviceaccount:NS:NAME`) and is named in alerts and
    /// commands. Records from an EKS log group keep the group's cluster.
    #[arg(long, value_parser = parse_cluster, env = "DRIFTWATCH_CLUSTER")]
    pub cluster: Option<String>,
    /// Detection model laid over the embedded default (models/default.toml).
    #[arg(long, env = "DRIFTWATCH_MODEL")]
    pub model: Option<PathBuf>,
    /// How alerts are written: `ocsf` (OCSF 1.1.0 Detection Findings, canonical) or `ecs`
    /// (Elastic Common Schema 8.x `event.kind: alert` documents).
    #[arg(long, default_value = "ocsf", env = "DRIFTWATCH_ALERT_FORMAT")]
    pub alert_format: crate::emit::AlertFormat,
    /// Write alerts (OCSF Detection Findings) here instead of stdout.
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// Write revocation commands here instead of stdout.
    #[arg(long)]
    pub commands: Option<PathBuf>,
    /// Write the governance commands of the dormancy lifecycle here (JSONL): suspend identities
    /// idle for `lifecycle.suspend_after_days` of event time, delete those idle for
    /// `delete_after_days`. Without it they are only counted in the summary.
    #[arg(long)]
    pub governance: Option<PathBuf>,
    /// Write rejected records with their reasons here (JSONL).
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// Identity inventory: owner, expiry, rotation, workload binding, maintenance windows,
    /// response (schemas/identity.v1.json).
    #[arg(long, env = "DRIFTWATCH_IDENTITIES")]
    pub identities: Option<PathBuf>,
    /// Cloud providers' published address ranges (AWS ip-ranges.json, GCP cloud.json, Azure
    /// Service Tags); repeatable. With AWS's loaded, an instance or task credential used from
    /// outside AWS is reported on its first such call.
    #[arg(
        long = "ip-ranges",
        value_name = "FILE",
        env = "DRIFTWATCH_IP_RANGES",
        value_delimiter = ','
    )]
    pub ip_ranges: Vec<PathBuf>,
    /// Country and ASN databases in MaxMind DB format (GeoLite2 Country/ASN, DB-IP Lite, IPinfo
    /// Lite, ip-location-db); repeatable. Records carry neither, so without one the ASN and
    /// country origin levels stay empty.
    #[arg(
        long = "geoip",
        value_name = "FILE",
        env = "DRIFTWATCH_GEOIP",
        value_delimiter = ','
    )]
    pub geoip: Vec<PathBuf>,
    /// Engine state to continue from, if the file exists, and to save back at the end
    /// (atomically), so batch replays of consecutive periods continue one baseline.
    #[arg(long, env = "DRIFTWATCH_STATE")]
    pub state: Option<PathBuf>,
    /// How late (event time) an event may arrive after later ones and still be put in order;
    /// later ones are processed in arrival order and counted as late.
    #[arg(long, default_value_t = crate::replay::DEFAULT_MAX_LATENESS_SECONDS, env = "DRIFTWATCH_MAX_LATENESS_SECONDS")]
    pub max_lateness_seconds: u64,
    /// Records longer than this are dead-lettered as `too_large`, not decoded.
    #[arg(long, default_value_t = crate::replay::DEFAULT_MAX_RECORD_BYTES, env = "DRIFTWATCH_MAX_RECORD_BYTES")]
    pub max_record_bytes: usize,
    /// Input files: JSONL, JSON arrays or documents, optionally gzip; `-` for stdin. Read as
    /// streams, one thread each, merged in event-time order.
    #[arg(required = true)]
    pub inputs: Vec<String>,
}

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Directory to write cloudtrail.jsonl, k8s-audit.jsonl and labels.json into.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of machine identities (a few more are added so every attack kind has victims).
    #[arg(long, default_value_t = 200)]
    pub identities: usize,
    /// Days of traffic; attacks are injected after the first 7.
    #[arg(long, default_value_t = 21)]
    pub days: u32,
    /// Random seed: the same seed gives the same fleet.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

#[derive(clap::Args)]
pub struct EvaluateArgs {
    /// labels.json (schemas/labels.v1.json).
    #[arg(long)]
    pub labels: PathBuf,
    /// Alerts JSONL written by `replay` (revocation commands in it are scored as commands).
    #[arg(long)]
    pub alerts: PathBuf,
    /// Revocation commands JSONL written by `replay`, when not in the alerts file: each one
    /// outside every attack window is reported.
    #[arg(long)]
    pub commands: Option<PathBuf>,
    /// Minutes after an attack's last event during which an alert still counts as catching it.
    #[arg(long, default_value_t = 60)]
    pub grace_minutes: i64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct ProduceArgs {
    /// Bootstrap brokers (host:port,...).
    #[arg(long, env = "DRIFTWATCH_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic to produce into.
    #[arg(
        long,
        env = "DRIFTWATCH_PRODUCE_TOPIC",
        default_value = "driftwatch.access-logs"
    )]
    pub topic: String,
    /// Record format used to find each record's principal key.
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    pub format: FormatHint,
    /// The Kubernetes cluster of the records, as the consuming service's `--input
    /// TOPIC=FORMAT@CLUSTER` declares it, so keys match the principal keys it computes.
    #[arg(long, value_parser = parse_cluster)]
    pub cluster: Option<String>,
    /// librdkafka producer property, name=value (repeatable), e.g. security.protocol=SASL_SSL.
    #[arg(long = "kafka-property", value_name = "NAME=VALUE", value_parser = KafkaProperty::parse)]
    pub kafka_property: Vec<KafkaProperty>,
    /// At most this many records per second (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Produce a simulated fleet with injected attacks (as `driftwatch simulate` writes)
    /// instead of files.
    #[arg(long, conflicts_with = "inputs")]
    pub simulate: bool,
    /// With --simulate: number of machine identities.
    #[arg(long, default_value_t = 200, requires = "simulate")]
    pub identities: usize,
    /// With --simulate: days of traffic; attacks come after the first 7.
    #[arg(long, default_value_t = 21, requires = "simulate")]
    pub days: u32,
    /// With --simulate: random seed of the fleet.
    #[arg(long, default_value_t = 7, requires = "simulate")]
    pub seed: u64,
    /// Input files: JSONL, JSON arrays or documents, optionally gzip; `-` for stdin.
    #[arg(required_unless_present = "simulate")]
    pub inputs: Vec<String>,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Number of simulated machine identities.
    #[arg(long, default_value_t = 80)]
    pub identities: usize,
    /// Days of simulated traffic; attacks come after the first 7.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Random seed of the fleet.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Detection model laid over the embedded default.
    #[arg(long, env = "DRIFTWATCH_MODEL")]
    pub model: Option<PathBuf>,
    /// Address for /metrics, /healthz and /readyz while the demo runs, or `off` (a free port
    /// is used if this one is taken).
    #[arg(long, default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: String,
}

#[derive(clap::Args)]
pub struct BenchKafkaArgs {
    /// Bootstrap brokers (host:port,...).
    #[arg(long, env = "DRIFTWATCH_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Use librdkafka's in-process mock cluster instead of --brokers: it feeds records faster
    /// than a broker process here, so the service's own ceiling is what is measured.
    #[arg(long)]
    pub mock: bool,
    /// Records to produce and consume.
    #[arg(long, default_value_t = 200_000)]
    pub records: usize,
    /// Partitions of the benchmark's input topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Also measure the repartition path: the same records as unkeyed CloudTrail delivery
    /// documents (25 records each) on an `:unkeyed` input, events a second against the keyed
    /// input's in the same run.
    #[arg(long, conflicts_with = "soak")]
    pub repartition: bool,
    /// Soak instead: run the service for MINUTES against --brokers under a steady --rate,
    /// printing RSS, lag and processing latency every --every seconds, then how RSS moved
    /// after warm-up.
    #[arg(long, value_name = "MINUTES", conflicts_with = "mock")]
    pub soak: Option<f64>,
    /// With --soak: records produced a second.
    #[arg(long, default_value_t = 2_000, requires = "soak")]
    pub rate: u32,
    /// With --soak: seconds between samples.
    #[arg(long, default_value_t = 10.0, requires = "soak")]
    pub every: f64,
}

/// Where `inspect` and `report` read what the engine learned.
#[derive(clap::Args)]
pub struct StateSource {
    /// State file written by `replay --state`.
    #[arg(long, required_unless_present = "brokers", conflicts_with = "brokers")]
    pub state: Option<PathBuf>,
    /// Read a running service's state topic from these brokers (host:port,...) instead.
    #[arg(long)]
    pub brokers: Option<String>,
    /// With --brokers: the service's consumer group; its state topic is `<group>.state`.
    #[arg(long, default_value = "driftwatch", requires = "brokers")]
    pub group: String,
    /// With --brokers: the state topic, when the service was given --state-topic.
    #[arg(long, requires = "brokers")]
    pub state_topic: Option<String>,
    /// With --brokers: librdkafka consumer property, name=value (repeatable), e.g.
    /// security.protocol=SASL_SSL.
    #[arg(long = "kafka-property", value_name = "NAME=VALUE", value_parser = KafkaProperty::parse, requires = "brokers")]
    pub kafka_property: Vec<KafkaProperty>,
    /// The detection model the state was written under (snapshots of another model are not
    /// read).
    #[arg(long, env = "DRIFTWATCH_MODEL")]
    pub model: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub source: StateSource,
    /// How many endpoints and origins of each kind to show, most used first.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The identity's principal key (as alerts show it in resources[0].uid); all identities
    /// when absent.
    pub identity: Option<String>,
}

/// Reports drawn from what the engine learned.
#[derive(clap::Subcommand)]
pub enum ReportCommand {
    /// Per identity, the actions it used in the window (decayed use, first and last use, the
    /// resources it touched) and a policy granting exactly those: an IAM policy document for
    /// AWS users and roles, on the ARNs the calls named (`*` only for actions that named none);
    /// Kubernetes Roles in the namespaces used and a ClusterRole for the rest, restricted to
    /// the objects read where RBAC allows, with their bindings, for service accounts; with
    /// --gcp-roles, the GCP roles covering the permissions a GCP identity's calls were checked
    /// for, bound to it. With
    /// --identities, each declared `granted` pattern is judged in use, unused or undetermined
    /// against each action's period of use, learned from its days of use.
    LeastPrivilege(LeastPrivilegeArgs),
}

#[derive(clap::Args)]
pub struct LeastPrivilegeArgs {
    #[command(flatten)]
    pub source: StateSource,
    /// Only this identity (its principal key); every identity when absent.
    #[arg(long)]
    pub identity: Option<String>,
    /// Actions last used within this many days before the newest event in the state.
    #[arg(long, default_value_t = 90.0)]
    pub window_days: f64,
    /// table: the actions per identity; json: the reports with their policies; aws-iam: one
    /// IAM policy document per AWS identity (JSON Lines); k8s-rbac: the RBAC objects as one
    /// Kubernetes List; gcp-iam: the role bindings per GCP identity (JSON Lines, needs
    /// --gcp-roles); ocsf: an OCSF Detection Finding per identity with at least
    /// --min-unused unused grants (JSON Lines).
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::tools::report::ReportFormat,
    /// Identity inventory (schemas/identity.v1.json) whose `granted` patterns are judged
    /// against use: in use, unused or undetermined.
    #[arg(long, env = "DRIFTWATCH_IDENTITIES")]
    pub identities: Option<PathBuf>,
    /// Probability of no longer being used at or above which a grant is unused.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Days between uses assumed for an action used on one day only or never (the identity's
    /// longest learned period if longer): a grant never used is unused once the identity has
    /// been watched about three such periods.
    #[arg(long, default_value_t = 30.0)]
    pub prior_period_days: f64,
    /// With --format ocsf, the unused grants an identity needs for a finding.
    #[arg(long, default_value_t = 1)]
    pub min_unused: usize,
    /// Google's role catalogue (the IAM API's roles.list with view=FULL, a JSON list of roles,
    /// or one role per line as `gcloud iam roles describe --format=json` prints them): GCP
    /// identities get the roles covering the permissions they used, and as policy the bindings
    /// of those roles.
    #[arg(long, env = "DRIFTWATCH_GCP_ROLES")]
    pub gcp_roles: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// Address of the metrics endpoint (--metrics-addr of `run`, so by default the same
    /// DRIFTWATCH_METRICS_ADDR; an unspecified address such as 0.0.0.0 is probed on loopback).
    #[arg(long, env = "DRIFTWATCH_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub addr: SocketAddr,
    /// /healthz (alive), /readyz (partitions assigned and baselines rebuilt) or /metrics.
    #[arg(long, default_value = "/readyz")]
    pub path: String,
}

/// Flags of `driftwatch forward`. The URL, headers and secret are never logged or printed.
#[derive(clap::Args)]
pub struct ForwardArgs {
    /// Bootstrap brokers (host:port,...).
    #[arg(long, env = "DRIFTWATCH_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic to deliver: driftwatch's alerts or commands topic, or a forward dead-letter topic
    /// to deliver again.
    #[arg(long, value_name = "TOPIC", env = "DRIFTWATCH_FORWARD_FROM")]
    pub from: String,
    /// Webhook URL: https://, or http:// to a loopback address. Only scheme, host and port are
    /// ever logged: its path and query often hold a token (prefer the variable to the flag,
    /// which other users can see in the process list).
    #[arg(
        long,
        value_name = "URL",
        env = "DRIFTWATCH_FORWARD_URL",
        hide_env_values = true
    )]
    pub to: String,
    /// Consumer group; instances with the same group share the partitions [default:
    /// driftwatch-forward-<from>].
    #[arg(long, env = "DRIFTWATCH_FORWARD_GROUP")]
    pub group: Option<String>,
    /// File holding the shared secret that signs each request (X-Driftwatch-Signature-256);
    /// or set DRIFTWATCH_FORWARD_SECRET to the secret itself. One of them is required unless
    /// --unsigned.
    #[arg(long, value_name = "FILE", env = "DRIFTWATCH_FORWARD_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Send requests without a signature: the receiver cannot tell them from forgeries.
    #[arg(long)]
    pub unsigned: bool,
    /// A header sent with every request, NAME=VALUE (repeatable), e.g. an API token:
    /// `Authorization=Bearer ...`, `ph-auth-token=...`. Values are never logged. In the
    /// variable, one header per line.
    #[arg(
        long = "header",
        value_name = "NAME=VALUE",
        env = "DRIFTWATCH_FORWARD_HEADERS",
        value_delimiter = '\n',
        hide_env_values = true
    )]
    pub headers: Vec<String>,
    /// Attempts per message, the first included; then it goes to the dead-letter topic.
    #[arg(long, default_value_t = 8, env = "DRIFTWATCH_FORWARD_MAX_ATTEMPTS")]
    pub max_attempts: u32,
    /// Limit of one attempt (connect, TLS, request, response), in seconds.
    #[arg(
        long,
        default_value_t = 10.0,
        env = "DRIFTWATCH_FORWARD_TIMEOUT_SECONDS"
    )]
    pub timeout_seconds: f64,
    /// Longest wait between attempts, in seconds (backoff doubles from 0.5 s; a Retry-After
    /// header is honoured up to this).
    #[arg(
        long,
        default_value_t = 60.0,
        env = "DRIFTWATCH_FORWARD_MAX_BACKOFF_SECONDS"
    )]
    pub max_backoff_seconds: f64,
    /// Topic for messages the webhook did not take, with the reason in headers [default:
    /// <from>.forward-dlq].
    #[arg(
        long,
        value_name = "TOPIC",
        env = "DRIFTWATCH_FORWARD_DEAD_LETTER_TOPIC"
    )]
    pub dead_letter_topic: Option<String>,
    /// PEM file of the CA certificates to trust instead of the system's (a private CA).
    #[arg(long, value_name = "FILE", env = "DRIFTWATCH_FORWARD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Accept an http:// URL to a host that is not loopback: alerts, commands and signatures
    /// then cross the network unencrypted.
    #[arg(long)]
    pub allow_insecure_http: bool,
    /// librdkafka property NAME=VALUE for both clients, or consumer.NAME / producer.NAME for one
    /// (repeatable), e.g. security.protocol=SASL_SSL.
    #[arg(
        long = "kafka-property",
        value_name = "NAME=VALUE",
        env = "DRIFTWATCH_KAFKA_PROPERTIES",
        value_delimiter = ';',
        value_parser = KafkaProperty::parse
    )]
    pub kafka_property: Vec<KafkaProperty>,
    /// Address for /metrics, /healthz and /readyz, or `off`.
    #[arg(
        long,
        env = "DRIFTWATCH_FORWARD_METRICS_ADDR",
        default_value = DEFAULT_FORWARD_METRICS_ADDR
    )]
    pub metrics_addr: String,
}

/// `forward`'s endpoint: next to `run`'s, so both fit on one host.
pub const DEFAULT_FORWARD_METRICS_ADDR: &str = "127.0.0.1:9465";

/// Flags of `driftwatch run`. Each falls back to its `DRIFTWATCH_*` environment variable, then to
/// the `--config` file, then to the default shown.
#[derive(clap::Args)]
pub struct RunArgs {
    /// TOML file with any of the settings below (keys in snake_case, `kafka` as a table).
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Check a model file; prints every problem with its key.
    Check { file: PathBuf },
}

pub fn parse_format(s: &str) -> Result<FormatHint, String> {
    s.parse()
}

pub fn parse_cluster(s: &str) -> Result<String, String> {
    if crate::redact::shape::cluster_name(s) {
        Ok(s.to_owned())
    } else {
        Err(CLUSTER_NAME_RULE.to_owned())
    }
}

/// Why a cluster name was refused, in every message that refuses one.
pub const CLUSTER_NAME_RULE: &str =
    "a cluster name is 1 to 100 letters, digits, `-`, `_` and `.`, starting with a letter or digit";

/// The command line as `driftwatch` parses it, with each `run` setting's default (from
/// [`Settings::defaults`]) appended to its help.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommand("run", |mut run| {
        for (id, default) in Settings::default_help() {
            run = run.mut_arg(id, |a| {
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                a.help(format!("{help} [default: {default}]"))
            });
        }
        run
    })
}

/// Parses the process's arguments with [`command`], exiting with clap's message on an error.
pub fn parse() -> Cli {
    let mut matches = command().get_matches();
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
}

impl RunArgs {
    /// The service configuration these flags (and their environment fallbacks and `--config`
    /// file) describe.
    ///
    /// # Errors
    /// A [`ConfigError`] naming every problem, with the flag or file key at fault.
    pub fn resolve(&self) -> Result<RunConfig, ConfigError> {
        let file = match &self.config {
            Some(p) => Some((p.display().to_string(), Settings::load(p)?)),
            None => None,
        };
        RunConfig::resolve(self.settings.clone(), file)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_help_shows_each_default_once() {
        let mut cmd = command();
        let run = cmd.find_subcommand_mut("run").expect("run");
        let help = run.render_long_help().to_string();
        assert!(help.contains("[default: 127.0.0.1:9092]"), "{help}");
        assert!(help.contains("[default: 30]"), "{help}");
        assert_eq!(help.matches("[default: driftwatch.alerts]").count(), 1);
    }

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }
}
