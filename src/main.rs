//! The `driftwatch` command line: parse arguments, set up logging, run, map errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use driftwatch::decode::FormatHint;
use driftwatch::detect::Rules;
use driftwatch::evaluate;
use driftwatch::ingest::file;
use driftwatch::inventory::Inventory;
use driftwatch::model::{ConfigError, Model};
use driftwatch::replay::{self, ReplayOptions};
use driftwatch::service::Service;
use driftwatch::service::config::{RunConfig, Settings};
use driftwatch::simulate::{self, SimConfig};
use driftwatch::{bench_kafka, demo, produce};
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;

/// Streaming behavioural anomaly detection for non-human identities.
#[derive(Parser)]
#[command(name = "driftwatch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Produce log files into a Kafka topic, each record keyed by its identity's principal key,
    /// in event-time order (undecodable records are produced unkeyed, for the dead-letter path).
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
        /// Input files: JSONL, JSON arrays or documents, optionally gzip; `-` for stdin.
        #[arg(required = true)]
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
    /// Detection model files.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

/// Flags of `driftwatch run`. Each falls back to its `DRIFTWATCH_*` environment variable, then to
/// the `--config` file, then to the default shown.
#[derive(clap::Args)]
struct RunArgs {
    /// TOML file with any of the settings below (keys in snake_case, `kafka` as a table).
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Bootstrap brokers, host:port,... [default: 127.0.0.1:9092]
    #[arg(long, env = "DRIFTWATCH_BROKERS")]
    brokers: Option<String>,
    /// Consumer group; instances with the same group share the partitions. [default: driftwatch]
    #[arg(long, env = "DRIFTWATCH_GROUP")]
    group: Option<String>,
    /// Input topic, optionally with its format: TOPIC or TOPIC=FORMAT (auto, cloudtrail,
    /// k8s-audit, gcp-audit, native); repeatable or comma-separated. [default: driftwatch.access-logs]
    #[arg(long = "input", env = "DRIFTWATCH_INPUTS", value_delimiter = ',')]
    inputs: Option<Vec<String>>,
    /// Topic for alerts (OCSF Detection Findings). [default: driftwatch.alerts]
    #[arg(long, env = "DRIFTWATCH_ALERTS_TOPIC")]
    alerts_topic: Option<String>,
    /// Topic for revocation commands. [default: driftwatch.commands]
    #[arg(long, env = "DRIFTWATCH_COMMANDS_TOPIC")]
    commands_topic: Option<String>,
    /// Topic for undecodable records, with the reason in headers. [default: driftwatch.dead-letter]
    #[arg(long, env = "DRIFTWATCH_DEAD_LETTER_TOPIC")]
    dead_letter_topic: Option<String>,
    /// librdkafka property NAME=VALUE for both clients, or consumer.NAME / producer.NAME for one
    /// (repeatable), e.g. security.protocol=SASL_SSL.
    #[arg(
        long = "kafka-property",
        value_name = "NAME=VALUE",
        env = "DRIFTWATCH_KAFKA_PROPERTIES",
        value_delimiter = ';'
    )]
    kafka_property: Vec<String>,
    /// Seconds shutdown may take to drain, flush and commit. [default: 30]
    #[arg(long, env = "DRIFTWATCH_SHUTDOWN_GRACE_SECONDS")]
    shutdown_grace_seconds: Option<f64>,
    /// Days of a newly assigned partition's history to rebuild baselines from; 0 for none,
    /// negative for the whole log. [default: 30]
    #[arg(long, env = "DRIFTWATCH_REBUILD_DAYS", allow_negative_numbers = true)]
    rebuild_days: Option<f64>,
    /// Input records whose outputs may await acknowledgement at once. [default: 10000]
    #[arg(long, env = "DRIFTWATCH_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Detection model laid over the embedded default (models/default.toml).
    #[arg(long, env = "DRIFTWATCH_MODEL")]
    model: Option<PathBuf>,
    /// Identity inventory (schemas/identity.v1.json).
    #[arg(long, env = "DRIFTWATCH_IDENTITIES")]
    identities: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Check a model file; prints every problem with its key.
    Check { file: PathBuf },
}

fn parse_format(s: &str) -> Result<FormatHint, String> {
    s.parse()
}

fn load_model(path: Option<&PathBuf>) -> Result<Model, ConfigError> {
    match path {
        Some(p) => Model::load(p),
        None => Ok(Model::embedded()),
    }
}

/// Resolves when SIGTERM or SIGINT (Ctrl-C) arrives.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run_service(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (kafka, problems) = Settings::kafka_from_args(&args.kafka_property);
    let cli = Settings {
        brokers: args.brokers,
        group: args.group,
        inputs: args.inputs,
        alerts_topic: args.alerts_topic,
        commands_topic: args.commands_topic,
        dead_letter_topic: args.dead_letter_topic,
        kafka: Some(kafka),
        shutdown_grace_seconds: args.shutdown_grace_seconds,
        rebuild_days: args.rebuild_days,
        max_in_flight: args.max_in_flight,
        model: args.model,
        identities: args.identities,
    };
    let file = match &args.config {
        Some(p) => Some((p.display().to_string(), Settings::load(p)?)),
        None => None,
    };
    let cfg = RunConfig::resolve(cli, problems, file)?;
    let mut rules = Rules::new(load_model(cfg.model.as_ref())?);
    if let Some(path) = &cfg.identities {
        rules = rules.with_inventory(Inventory::load(path)?);
    }
    let service = Service::new(cfg, rules);
    let summary = runtime()?.block_on(service.run(shutdown_signal()))?;
    eprintln!("{summary}");
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(c) = e.downcast_ref::<ConfigError>() {
                eprintln!("error: {c}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay {
            format,
            model,
            alerts,
            commands,
            dead_letter,
            identities,
            inputs,
        } => {
            let mut rules = Rules::new(load_model(model.as_ref())?);
            if let Some(path) = identities {
                rules = rules.with_inventory(Inventory::load(&path)?);
            }
            let opts = ReplayOptions {
                inputs,
                format,
                alerts,
                commands,
                dead_letter,
                progress: replay::stderr_is_terminal(),
            };
            let summary = replay::run(&opts, rules)?;
            eprintln!("{summary}");
        }
        Command::Simulate {
            out,
            identities,
            days,
            seed,
        } => {
            let cfg = SimConfig {
                identities,
                days,
                seed,
                ..SimConfig::default()
            };
            let o = simulate::write_fleet(&cfg, &out)
                .with_context(|| format!("writing the simulated fleet to {}", out.display()))?;
            eprintln!(
                "driftwatch simulate: {} identities, {} days, seed {}: {} CloudTrail records, {} Kubernetes audit events, {} attacks -> {}",
                o.labels.identities.len(),
                days,
                seed,
                o.cloudtrail_events,
                o.k8s_events,
                o.labels.attacks.len(),
                out.display()
            );
        }
        Command::Evaluate {
            labels,
            alerts,
            grace_minutes,
            json,
        } => {
            let labels_text = std::fs::read_to_string(&labels)
                .with_context(|| format!("reading {}", labels.display()))?;
            let labels: simulate::Labels = serde_json::from_str(&labels_text)
                .with_context(|| "labels file does not match schemas/labels.v1.json")?;
            let text = std::fs::read_to_string(&alerts)
                .with_context(|| format!("reading {}", alerts.display()))?;
            let mut points = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let v: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("{}:{}: not JSON", alerts.display(), i + 1))?;
                if v.get("class_uid").is_some() {
                    points.push(evaluate::alert_point(&v).with_context(|| {
                        format!(
                            "{}:{}: alert without resources[0].uid or time",
                            alerts.display(),
                            i + 1
                        )
                    })?);
                }
            }
            let report = evaluate::score(&labels, &points, grace_minutes * 60_000);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Run(args) => return run_service(*args),
        Command::Produce {
            brokers,
            topic,
            format,
            kafka_property,
            inputs,
        } => {
            let (props, problems) = Settings::kafka_from_args(&kafka_property);
            if !problems.is_empty() {
                return Err(ConfigError {
                    file: "driftwatch produce".into(),
                    problems,
                }
                .into());
            }
            let mut data = Vec::new();
            for input in &inputs {
                let bytes = file::read_input(input)?;
                file::split_records(&bytes, input, |rec, _| data.push(rec.to_vec()));
            }
            let records = produce::keyed_records(data.iter().map(Vec::as_slice), format);
            let mut cfg = ClientConfig::new();
            cfg.set("bootstrap.servers", &brokers)
                .set("enable.idempotence", "true")
                .set("linger.ms", "20");
            for (k, v) in props {
                cfg.set(k, v);
            }
            let producer: FutureProducer = cfg.create().context("creating the Kafka producer")?;
            let n = runtime()?
                .block_on(produce::send_all(&producer, &topic, &records, 100_000))
                .with_context(|| format!("producing to `{topic}` at {brokers}"))?;
            eprintln!("driftwatch produce: {n} records -> {topic}");
        }
        Command::Demo {
            identities,
            days,
            seed,
            partitions,
            model,
        } => {
            let rules = Rules::new(load_model(model.as_ref())?);
            let opts = demo::DemoOptions {
                identities,
                days,
                seed,
                partitions,
            };
            runtime()?.block_on(demo::run(&opts, rules, shutdown_signal()))?;
        }
        Command::BenchKafka {
            brokers,
            records,
            partitions,
        } => {
            let opts = bench_kafka::BenchOptions {
                brokers,
                records,
                partitions,
            };
            let report =
                runtime()?.block_on(bench_kafka::run(&opts, Rules::new(Model::embedded())))?;
            println!("{report}");
        }
        Command::Models {
            command: ModelsCommand::Check { file },
        } => {
            let m = Model::load(&file)?;
            println!(
                "{}: ok ({} sensitivity tiers, alert at {}, command at {}, commands {})",
                file.display(),
                m.sensitivity.len(),
                m.scoring.alert_min_score,
                m.scoring.command_min_score,
                m.commands.mode.as_str()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
