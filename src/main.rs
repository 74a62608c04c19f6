//! The `driftwatch` command line: parse arguments, set up logging, run one subcommand, map errors
//! to exit codes (2 for configuration problems, 1 for anything else).

/// jemalloc, not glibc's allocator: decoding allocates about a dozen small strings per event on
/// worker threads while other threads run the engine, and glibc's arenas spent a fifth of replay's
/// CPU in allocating, freeing and consolidating them; with jemalloc's thread caches the 2.3 GB
/// replay takes 11-14% less CPU, with the same peak memory and the same alerts.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use driftwatch::cli::{
    self, BenchKafkaArgs, Cli, Command, DemoArgs, EvaluateArgs, ForwardArgs, InspectArgs,
    LeastPrivilegeArgs, ModelsCommand, ProbeArgs, ProduceArgs, ReplayArgs, ReportCommand, RunArgs,
    SimulateArgs, StateSource,
};
use driftwatch::config::settings::KafkaProperty;
use driftwatch::config::{ConfigError, Model, Rules};
use driftwatch::forward::{self, ForwardConfig, Forwarder};
use driftwatch::replay::{self, ReplayOptions};
use driftwatch::service::{Service, ServiceError};
use driftwatch::telemetry::logging::LogFormat;
use driftwatch::telemetry::{http, logging, metrics};
use driftwatch::tools::report::{self, ReportFormat};
use driftwatch::tools::simulate::{self, SimConfig};
use driftwatch::tools::{bench_kafka, demo, evaluate, inspect, produce};
use prometheus::Registry;
use tracing::info;

fn main() -> ExitCode {
    let cli = cli::parse();
    // A service logs its lifecycle; the one-shot commands print their results and only warn.
    let level = if matches!(cli.command, Command::Run(_) | Command::Forward(_)) {
        "info"
    } else {
        "warn"
    };
    let format = cli.log_format;
    logging::init(format, level);
    match run(cli) {
        Ok(code) => code,
        Err(e) => fail(format, &e),
    }
}

/// The configuration problem behind `e`, if that is what it is (bad files, flags or a property
/// librdkafka rejects when the service creates its clients).
fn config_error(e: &anyhow::Error) -> Option<&ConfigError> {
    e.downcast_ref::<ConfigError>()
        .or_else(|| match e.downcast_ref::<ServiceError>() {
            Some(ServiceError::Config(c)) => Some(c),
            _ => None,
        })
}

/// Reports a fatal error once, as text or (with `--log-format json`) as one JSON log line, and
/// returns the exit code: 2 for a configuration problem, 1 for anything else.
fn fail(format: LogFormat, e: &anyhow::Error) -> ExitCode {
    let config = config_error(e);
    let code: u8 = if config.is_some() { 2 } else { 1 };
    match format {
        LogFormat::Text => match config {
            Some(c) => eprintln!("error: {c}"),
            None => eprintln!("error: {e:#}"),
        },
        LogFormat::Json => {
            let mut line = match config {
                Some(c) => json_log_line(
                    "ERROR",
                    format!(
                        "{} configuration problem(s) in {}",
                        c.problems.len(),
                        c.file
                    ),
                ),
                None => json_log_line("ERROR", format!("{e:#}")),
            };
            line["exit_code"] = serde_json::json!(code);
            if let Some(c) = config {
                line["problems"] = c
                    .problems
                    .iter()
                    .map(|p| serde_json::json!({"file": c.file, "key": p.key, "why": p.why}))
                    .collect();
            }
            eprintln!("{line}");
        }
    }
    ExitCode::from(code)
}

/// Prints a command's closing summary: its text, or one JSON log line carrying it as an object.
fn report(format: LogFormat, what: &str, summary: &(impl std::fmt::Display + serde::Serialize)) {
    match format {
        LogFormat::Text => eprintln!("{summary}"),
        LogFormat::Json => {
            let mut line = json_log_line("INFO", format!("{what} finished"));
            line["summary"] = serde_json::json!(summary);
            eprintln!("{line}");
        }
    }
}

/// A log line of our own in the shape `--log-format json` gives tracing's (timestamp, level,
/// message, target), for what is printed after or outside the subscriber.
fn json_log_line(level: &str, message: String) -> serde_json::Value {
    serde_json::json!({
        "timestamp": driftwatch::decode::time::format_rfc3339_ms(driftwatch::telemetry::now_ms()),
        "level": level,
        "message": message,
        "target": "driftwatch",
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay(a) => replay(&a, cli.log_format),
        Command::Simulate(a) => simulate(&a),
        Command::Evaluate(a) => evaluate(&a),
        Command::Run(a) => run_service(&a, cli.log_format),
        Command::Produce(a) => produce(&a),
        Command::Demo(a) => demo(&a),
        Command::BenchKafka(a) => bench_kafka(&a),
        Command::Inspect(a) => inspect(&a),
        Command::Report {
            command: ReportCommand::LeastPrivilege(a),
        } => least_privilege(&a),
        Command::Forward(a) => forward(&a, cli.log_format),
        Command::Probe(a) => probe(&a),
        Command::Models {
            command: ModelsCommand::Check { file },
        } => check_model(&file),
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

fn replay(a: &ReplayArgs, format: LogFormat) -> anyhow::Result<ExitCode> {
    let rules = with_ranges(
        Rules::load(a.model.as_deref(), a.identities.as_deref())?,
        &a.ip_ranges,
        &a.geoip,
    )?;
    let opts = ReplayOptions {
        inputs: a.inputs.clone(),
        format: a.format,
        cluster: a.cluster.clone(),
        alerts: a.alerts.clone(),
        alert_format: a.alert_format,
        commands: a.commands.clone(),
        governance: a.governance.clone(),
        dead_letter: a.dead_letter.clone(),
        state: a.state.clone(),
        progress: replay::stderr_is_terminal(),
        max_lateness_ms: (a.max_lateness_seconds as i64).saturating_mul(1000),
        max_record_bytes: a.max_record_bytes,
    };
    let summary = replay::run(&opts, rules)?;
    report(format, "driftwatch replay", &summary);
    // Every readable input was replayed; one that could not be is still a failure.
    Ok(if summary.input_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn simulate(a: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let cfg = SimConfig {
        identities: a.identities,
        days: a.days,
        seed: a.seed,
        ..SimConfig::default()
    };
    let o = simulate::write_fleet(&cfg, &a.out)
        .with_context(|| format!("writing the simulated fleet to {}", a.out.display()))?;
    eprintln!(
        "driftwatch simulate: {} identities, {} days, seed {}: {} CloudTrail records, {} Kubernetes audit events, {} attacks -> {}",
        o.labels.identities.len(),
        a.days,
        a.seed,
        o.cloudtrail_events,
        o.k8s_events,
        o.labels.attacks.len(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn evaluate(a: &EvaluateArgs) -> anyhow::Result<ExitCode> {
    let report =
        evaluate::score_files(&a.labels, &a.alerts, a.commands.as_deref(), a.grace_minutes)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `rules` with the cloud ranges and country/ASN databases of these files loaded, if any (every
/// problem named, with its file).
fn with_ranges(
    mut rules: Rules,
    ranges: &[std::path::PathBuf],
    geoip: &[std::path::PathBuf],
) -> Result<Rules, driftwatch::config::ConfigError> {
    if !ranges.is_empty() {
        let loaded = driftwatch::enrich::CloudRanges::load(ranges)?;
        tracing::info!(
            files = ranges.len(),
            ranges = loaded.len(),
            "loaded cloud providers' published ranges"
        );
        rules = rules.with_cloud_ranges(loaded);
    }
    if !geoip.is_empty() {
        rules = rules.with_geo(driftwatch::enrich::GeoDbs::load(geoip)?);
        tracing::info!(files = geoip.len(), "loaded country and ASN databases");
    }
    Ok(rules)
}

/// The enrichment tables the service reloads on SIGHUP, and the files they come from.
struct Reload {
    cloud: Option<driftwatch::enrich::Reloadable<driftwatch::enrich::CloudRanges>>,
    geo: Option<driftwatch::enrich::Reloadable<driftwatch::enrich::GeoDbs>>,
    ranges: Vec<std::path::PathBuf>,
    geoip: Vec<std::path::PathBuf>,
}

impl Reload {
    /// Reloads every file on each SIGHUP: all tables are replaced, or (any file bad) none, with
    /// a warning naming the problems; the loaded tables stay in use. No task without files.
    fn spawn(self) -> Option<tokio::task::JoinHandle<()>> {
        #[cfg(unix)]
        {
            if self.cloud.is_none() && self.geo.is_none() {
                return None;
            }
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()?;
            let this = std::sync::Arc::new(self);
            Some(tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let r = this.clone();
                    let loaded = tokio::task::spawn_blocking(move || {
                        let cloud = (r.cloud.as_ref())
                            .map(|t| Ok((t, driftwatch::enrich::CloudRanges::load(&r.ranges)?)))
                            .transpose()?;
                        let geo = (r.geo.as_ref())
                            .map(|t| Ok((t, driftwatch::enrich::GeoDbs::load(&r.geoip)?)))
                            .transpose()?;
                        if let Some((table, c)) = cloud {
                            table.replace(c);
                        }
                        if let Some((table, g)) = geo {
                            table.replace(g);
                        }
                        Ok::<_, driftwatch::config::ConfigError>(())
                    })
                    .await;
                    match loaded {
                        Ok(Ok(())) => info!(
                            ranges = this.ranges.len(),
                            geoip = this.geoip.len(),
                            "SIGHUP: reloaded the cloud ranges and country/ASN databases"
                        ),
                        Ok(Err(e)) => tracing::warn!(
                            error = %e,
                            "SIGHUP: reloading the enrichment files failed; the tables loaded before stay in use"
                        ),
                        Err(e) => tracing::warn!(error = %e, "SIGHUP: the reload task failed"),
                    }
                }
            }))
        }
        #[cfg(not(unix))]
        {
            let _ = self;
            None
        }
    }
}

fn run_service(a: &RunArgs, format: LogFormat) -> anyhow::Result<ExitCode> {
    let cfg = a.resolve()?;
    let rules = with_ranges(
        Rules::load(cfg.model.as_deref(), cfg.identities.as_deref())?,
        &cfg.ip_ranges,
        &cfg.geoip,
    )?;
    let registry = Registry::new();
    metrics::register_process_metrics(&registry).context("registering process metrics")?;
    let metrics_addr = cfg.metrics_addr;
    let reload = Reload {
        cloud: rules.cloud.clone(),
        geo: rules.geo.clone(),
        ranges: cfg.ip_ranges.clone(),
        geoip: cfg.geoip.clone(),
    };
    let service = Service::new(cfg, rules, &registry).context("registering metrics")?;
    let metrics = service.metrics();
    let summary = runtime()?.block_on(async {
        let reloader = reload.spawn();
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
        if let Some(t) = reloader {
            t.abort();
        }
        anyhow::Ok(summary?)
    })?;
    report(format, "driftwatch run", &summary);
    Ok(ExitCode::SUCCESS)
}

fn forward(a: &ForwardArgs, format: LogFormat) -> anyhow::Result<ExitCode> {
    let env_secret = std::env::var(forward::config::SECRET_ENV).ok();
    let cfg = ForwardConfig::resolve(a, env_secret)?;
    let registry = Registry::new();
    metrics::register_process_metrics(&registry).context("registering process metrics")?;
    let metrics_addr = cfg.metrics_addr;
    let summary = runtime()?.block_on(async {
        let forwarder = Forwarder::new(cfg, &registry)?;
        let endpoint = match metrics_addr {
            Some(addr) => {
                let (bound, task) = http::serve_with(addr, registry, forwarder.readiness()).await?;
                info!(%bound, "Serving /metrics, /healthz and /readyz.");
                Some(task)
            }
            None => None,
        };
        let summary = forwarder.run(shutdown_signal()).await;
        if let Some(t) = endpoint {
            t.abort();
        }
        anyhow::Ok(summary?)
    })?;
    report(format, "driftwatch forward", &summary);
    Ok(ExitCode::SUCCESS)
}

fn produce(a: &ProduceArgs) -> anyhow::Result<ExitCode> {
    let n = runtime()?.block_on(produce::run(a))?;
    eprintln!("driftwatch produce: {n} records -> {}", a.topic);
    Ok(ExitCode::SUCCESS)
}

fn demo(a: &DemoArgs) -> anyhow::Result<ExitCode> {
    let rules = Rules::load(a.model.as_deref(), None)?;
    let opts = demo::DemoOptions {
        identities: a.identities,
        days: a.days,
        seed: a.seed,
        partitions: a.partitions,
        metrics_addr: cli::metrics_addr("demo", &a.metrics_addr)?,
    };
    runtime()?.block_on(demo::run(&opts, rules, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

fn bench_kafka(a: &BenchKafkaArgs) -> anyhow::Result<ExitCode> {
    if let Some(minutes) = a.soak {
        let opts = bench_kafka::SoakOptions {
            brokers: a.brokers.clone(),
            minutes,
            rate: a.rate,
            partitions: a.partitions,
            every: a.every,
        };
        let report =
            runtime()?.block_on(bench_kafka::soak(&opts, Rules::new(Model::embedded())))?;
        println!("{report}");
        return Ok(ExitCode::SUCCESS);
    }
    let opts = bench_kafka::BenchOptions {
        brokers: (!a.mock).then(|| a.brokers.clone()),
        records: a.records,
        partitions: a.partitions,
        repartition: a.repartition,
    };
    let report = runtime()?.block_on(bench_kafka::run(&opts, Rules::new(Model::embedded())))?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// The engine state `inspect` and `report` read: a state file or a service's state topic.
fn load_state(s: &StateSource, command: &str) -> anyhow::Result<driftwatch::engine::Engine> {
    let rules = Rules::load(s.model.as_deref(), None)?;
    Ok(match (&s.state, &s.brokers) {
        (Some(path), _) => inspect::load_file(path, rules)?,
        (None, Some(brokers)) => {
            let topic = s
                .state_topic
                .clone()
                .unwrap_or_else(|| format!("{}.state", s.group));
            let props = KafkaProperty::pairs(command, &s.kafka_property)?;
            inspect::load_topic(brokers, &topic, &props, rules)?
        }
        (None, None) => unreachable!("clap requires --state or --brokers"),
    })
}

fn least_privilege(a: &LeastPrivilegeArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        a.window_days > 0.0 && a.window_days.is_finite(),
        "--window-days must be a positive number of days, got {}",
        a.window_days
    );
    anyhow::ensure!(
        a.confidence > 0.0 && a.confidence < 1.0,
        "--confidence must be a probability strictly between 0 and 1, got {}",
        a.confidence
    );
    anyhow::ensure!(
        a.prior_period_days > 0.0 && a.prior_period_days.is_finite(),
        "--prior-period-days must be a positive number of days, got {}",
        a.prior_period_days
    );
    let inventory = match &a.identities {
        Some(path) => driftwatch::config::Inventory::load(path)?,
        None => driftwatch::config::Inventory::default(),
    };
    anyhow::ensure!(
        a.format != ReportFormat::Ocsf
            || inventory
                .entries()
                .iter()
                .any(|(_, m)| !m.granted.is_empty()),
        "--format ocsf reports granted permissions beyond use: give --identities with an inventory that declares `granted`"
    );
    let rule = report::GrantRule {
        confidence: a.confidence,
        prior_period_days: a.prior_period_days,
    };
    let catalogue = match &a.gcp_roles {
        Some(path) => Some(driftwatch::tools::gcp_roles::Catalogue::load(path)?),
        None => None,
    };
    anyhow::ensure!(
        a.format != ReportFormat::GcpIam || catalogue.is_some(),
        "--format gcp-iam binds GCP identities to the roles that cover their use: give --gcp-roles with Google's role catalogue"
    );
    let engine = load_state(&a.source, "report")?;
    let mut reports = report::least_privilege_all(
        &engine,
        a.identity.as_deref(),
        a.window_days,
        &inventory,
        rule,
    );
    if let Some(c) = &catalogue {
        for r in &mut reports {
            report::with_gcp_roles(r, c);
        }
    }
    if let Some(key) = &a.identity
        && reports.is_empty()
    {
        eprintln!(
            "error: {key} is not tracked ({} identities are; run without --identity to report them all)",
            engine.identities()
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut out = String::new();
    match a.format {
        ReportFormat::Table => out.push_str(&report::table(&reports)),
        ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&reports)?)?,
        ReportFormat::Ocsf => {
            let now = engine.newest_event_ms().unwrap_or(0);
            for f in reports
                .iter()
                .filter_map(|r| report::excess_finding(r, now, a.min_unused))
            {
                writeln!(out, "{f}")?;
            }
        }
        ReportFormat::AwsIam | ReportFormat::GcpIam => {
            let provider = if a.format == ReportFormat::AwsIam {
                "aws"
            } else {
                "gcp"
            };
            for r in reports.iter().filter(|r| r.provider == provider) {
                if let Some(p) = &r.policy {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({"identity": r.identity, "policy": p})
                    )?;
                }
            }
        }
        ReportFormat::K8sRbac => {
            let items: Vec<&serde_json::Value> = reports
                .iter()
                .filter(|r| r.provider == "kubernetes")
                .filter_map(|r| r.policy.as_ref())
                .flat_map(|p| p["items"].as_array().into_iter().flatten())
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
                )?
            )?;
        }
    }
    print_all(&out)
}

fn inspect(a: &InspectArgs) -> anyhow::Result<ExitCode> {
    let engine = load_state(&a.source, "inspect")?;
    let mut out = String::new();
    match &a.identity {
        Some(key) => {
            let Some(view) = inspect::identity(&engine, key, a.top) else {
                eprintln!(
                    "error: {key} is not tracked ({} identities are; run without an identity to list them)",
                    engine.identities()
                );
                return Ok(ExitCode::FAILURE);
            };
            if a.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
            } else {
                write!(out, "{view}")?;
            }
        }
        None => {
            let rows = inspect::overview(&engine);
            if a.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                out.push_str(&inspect::overview_table(&rows));
            }
        }
    }
    print_all(&out)
}

/// Writes a report to standard output; a reader that stopped early (`| head`) is not an error.
fn print_all(text: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn probe(a: &ProbeArgs) -> anyhow::Result<ExitCode> {
    // A service listening on every address (0.0.0.0:9464 in the image) answers on loopback.
    let mut addr = a.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(match runtime()?.block_on(http::get(addr, &a.path)) {
        Ok((200, body)) => {
            println!("{}", body.trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("http://{}{}: {status} {}", addr, a.path, body.trim_end());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    })
}

fn check_model(file: &Path) -> anyhow::Result<ExitCode> {
    let m = Model::load(file)?;
    println!(
        "{}: ok ({} sensitivity tiers, alert at {}, command at {}, commands {})",
        file.display(),
        m.sensitivity.len(),
        m.scoring.alert_min_score,
        m.scoring.command_min_score,
        m.commands.mode.as_str()
    );
    Ok(ExitCode::SUCCESS)
}
