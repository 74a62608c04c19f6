//! The `driftwatch` command line: parse arguments, set up logging, run, map errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use driftwatch::cli::{self, Cli, Command, ModelsCommand, RunArgs};
use driftwatch::detect::Rules;
use driftwatch::evaluate;
use driftwatch::ingest::file;
use driftwatch::inventory::Inventory;
use driftwatch::model::{ConfigError, Model};
use driftwatch::replay::{self, ReplayOptions};
use driftwatch::service::Service;
use driftwatch::service::config::Settings;
use driftwatch::simulate::{self, SimConfig};
use driftwatch::telemetry::{http, logging, metrics};
use driftwatch::{bench_kafka, demo, produce};
use prometheus::Registry;
use rdkafka::config::ClientConfig;
use rdkafka::producer::FutureProducer;
use tracing::info;

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

fn run_service(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.resolve()?;
    let mut rules = Rules::new(load_model(cfg.model.as_ref())?);
    if let Some(path) = &cfg.identities {
        rules = rules.with_inventory(Inventory::load(path)?);
    }
    let registry = Registry::new();
    metrics::register_process_metrics(&registry).context("registering process metrics")?;
    let metrics_addr = cfg.metrics_addr;
    let service = Service::new(cfg, rules, &registry).context("registering metrics")?;
    let metrics = service.metrics();
    let rt = runtime()?;
    let summary = rt.block_on(async {
        let endpoint = match metrics_addr {
            Some(addr) => {
                let (bound, task) = http::serve(addr, registry, metrics).await?;
                info!(%bound, "Serving /metrics, /healthz and /readyz.");
                Some(task)
            }
            None => None,
        };
        let summary = service.run(shutdown_signal()).await;
        if let Some(t) = endpoint {
            t.abort();
        }
        anyhow::Ok(summary?)
    })?;
    eprintln!("{summary}");
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A service logs its lifecycle; the one-shot commands print their results and only warn.
    let level = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    logging::init(cli.log_format, level);
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
        Command::Run(args) => return run_service(&args),
        Command::Produce {
            brokers,
            topic,
            format,
            kafka_property,
            rate,
            simulate,
            identities,
            days,
            seed,
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
            let records = if simulate {
                let cfg = SimConfig {
                    identities,
                    days,
                    seed,
                    ..SimConfig::default()
                };
                produce::simulated_fleet(&cfg).0
            } else {
                let mut data = Vec::new();
                for input in &inputs {
                    let bytes = file::read_input(input)?;
                    file::split_records(&bytes, input, |rec, _| data.push(rec.to_vec()));
                }
                produce::keyed_records(data.iter().map(Vec::as_slice), format)
            };
            let mut cfg = ClientConfig::new();
            cfg.set("bootstrap.servers", &brokers)
                .set("enable.idempotence", "true")
                .set("linger.ms", "20");
            for (k, v) in props {
                cfg.set(k, v);
            }
            let producer: FutureProducer = cfg.create().context("creating the Kafka producer")?;
            let n = runtime()?
                .block_on(produce::send_paced(&producer, &topic, &records, Some(rate)))
                .with_context(|| format!("producing to `{topic}` at {brokers}"))?;
            eprintln!("driftwatch produce: {n} records -> {topic}");
        }
        Command::Demo {
            identities,
            days,
            seed,
            partitions,
            model,
            metrics_addr,
        } => {
            let rules = Rules::new(load_model(model.as_ref())?);
            let opts = demo::DemoOptions {
                identities,
                days,
                seed,
                partitions,
                metrics_addr: cli::metrics_addr("demo", &metrics_addr)?,
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
        Command::Probe { addr, path } => {
            return match runtime()?.block_on(http::get(addr, &path)) {
                Ok((200, body)) => {
                    println!("{}", body.trim_end());
                    Ok(ExitCode::SUCCESS)
                }
                Ok((status, body)) => {
                    eprintln!("http://{addr}{path}: {status} {}", body.trim_end());
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            };
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
