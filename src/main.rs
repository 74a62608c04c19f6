//! The `driftwatch` command line: parse arguments, set up logging, run, map errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use driftwatch::decode::FormatHint;
use driftwatch::detect::Rules;
use driftwatch::evaluate;
use driftwatch::inventory::Inventory;
use driftwatch::model::{ConfigError, Model};
use driftwatch::replay::{self, ReplayOptions};
use driftwatch::simulate::{self, SimConfig};

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
    /// Detection model files.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
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
