//! `driftwatch demo`: the whole service with nothing installed. An in-process Kafka cluster
//! (librdkafka's mock cluster), a simulated fleet with injected attacks produced as real
//! pipelines deliver it (Kubernetes audit events keyed by identity; CloudTrail records in
//! unkeyed S3 delivery documents of many identities, which the service re-keys through its
//! repartition topic), the service consuming it, and a reader of the alerts and commands
//! topics printing each message as it arrives. Halfway through the stream the service is stopped
//! and a new instance started in its place, which restores its identities from the state topic.
//! Ends by itself with a summary scored against the fleet's labels, or on Ctrl-C.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus::Registry;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::simulate::SimConfig;
use super::{evaluate, produce};
use crate::config::settings::KafkaProperty;
use crate::config::{Rules, RunConfig, Settings};
use crate::kafka::{KafkaContext, Role, client_config};
use crate::service::Service;
use crate::telemetry::metrics::{quantile, register_process_metrics};
use crate::telemetry::{Metrics, http};

/// What the demo simulates.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub identities: usize,
    pub days: u32,
    pub seed: u64,
    pub partitions: i32,
    /// Where to serve /metrics, /healthz and /readyz while the demo runs; `None` for nowhere.
    pub metrics_addr: Option<SocketAddr>,
}

/// Serves the endpoint on `addr`, or on a free port if that one is taken (the demo should not
/// fail because a real driftwatch already listens there).
async fn serve_metrics(
    addr: SocketAddr,
    registry: Registry,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let served = match http::serve(addr, registry.clone(), metrics.clone()).await {
        Ok(s) => s,
        Err(e) => {
            let any = SocketAddr::new(addr.ip(), 0);
            let s = http::serve(any, registry, metrics).await?;
            println!("({e}; serving on {} instead)", s.0);
            s
        }
    };
    println!(
        "metrics: http://{0}/metrics  health: http://{0}/healthz  readiness: http://{0}/readyz",
        served.0
    );
    Ok(served)
}

/// One readable line (or a few) for an alert or command message.
pub fn describe(v: &Value) -> String {
    if v.get("class_uid").is_some() {
        let who = v["resources"][0]["uid"].as_str().unwrap_or("?");
        let kind = if v["activity_id"] == 1 {
            "ALERT "
        } else {
            "UPDATE"
        };
        let mut s = format!(
            "{kind} {:<8} risk {:>3}  {who}",
            v["severity"].as_str().unwrap_or("?"),
            v["risk_score"]
        );
        if let Some(evs) = v["evidences"].as_array() {
            for e in evs.iter().skip(1) {
                let d = &e["data"];
                s.push_str(&format!(
                    "\n         {}: {}\n           baseline: {}\n           observed: {}",
                    d["detector"].as_str().unwrap_or("?"),
                    d["summary"].as_str().unwrap_or(""),
                    compact(&d["baseline"]),
                    compact(&d["observed"])
                ));
            }
        }
        s
    } else {
        format!(
            "COMMAND {} {} -> {} (risk {}, idempotency key {})",
            v["mode"].as_str().unwrap_or("?"),
            v["action"].as_str().unwrap_or("?"),
            v["target"]["identity"]["key"].as_str().unwrap_or("?"),
            v["reason"]["risk_score"],
            v["idempotency_key"].as_str().unwrap_or("?")
        )
    }
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 110 {
        format!("{}…", s.chars().take(110).collect::<String>())
    } else {
        s
    }
}

/// The demo's input of CloudTrail S3 delivery documents, declared `:unkeyed`.
const CLOUDTRAIL_S3: &str = "driftwatch.cloudtrail-s3";

/// How long the demo waits without any record acknowledged, consumed or output read before it
/// fails, naming what stopped.
const STALL_LIMIT: Duration = Duration::from_secs(120);

/// Runs the demo, printing to stdout, until the fleet is processed or `interrupt` resolves.
///
/// # Errors
/// When the mock cluster or a client cannot be created, or the service fails.
pub async fn run(
    opts: &DemoOptions,
    rules: Rules,
    interrupt: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let cluster = MockCluster::new(1).context("starting the in-process Kafka cluster")?;
    let brokers = cluster.bootstrap_servers();
    let cfg = RunConfig::resolve(
        Settings {
            brokers: Some(brokers.clone()),
            group: Some("driftwatch-demo".into()),
            // The mock cluster's coordinator waits for a closed member's session to expire
            // before it rebalances (45 s by default): short sessions let the instance that
            // replaces the first one halfway take over within seconds.
            kafka: vec![
                KafkaProperty::Set {
                    name: "consumer.session.timeout.ms".into(),
                    value: "6000".into(),
                },
                KafkaProperty::Set {
                    name: "consumer.heartbeat.interval.ms".into(),
                    value: "1000".into(),
                },
            ],
            inputs: Some(vec![
                "driftwatch.access-logs".into(),
                format!("{CLOUDTRAIL_S3}=cloudtrail:unkeyed"),
            ]),
            ..Settings::default()
        },
        None,
    )?;
    // Both inputs and the repartition topic (last in `inputs`). A trail delivers its documents
    // to one bucket prefix in time order: their topic has one partition, so they are re-keyed in
    // that order (documents spread over partitions read at different paces would reach an
    // identity's baseline out of order by hours, which its hourly volume model takes for spikes).
    let mut input_partitions = 0i64;
    for input in &cfg.inputs {
        let partitions = if input.topic == CLOUDTRAIL_S3 {
            1
        } else {
            opts.partitions
        };
        cluster.create_topic(&input.topic, partitions, 1)?;
        input_partitions += i64::from(partitions);
    }
    if let Some(state) = &cfg.state_topic {
        // The mock cluster cannot create topics with settings: the state topic is made here.
        cluster.create_topic(state, opts.partitions, 1)?;
        cluster.create_topic(&format!("{state}.fleet"), 1, 1)?;
    }
    for t in [
        &cfg.alerts_topic,
        &cfg.commands_topic,
        &cfg.governance_topic,
        &cfg.dead_letter_topic,
    ] {
        cluster.create_topic(t, 1, 1)?;
    }

    let sim = SimConfig {
        identities: opts.identities,
        days: opts.days,
        seed: opts.seed,
        ..SimConfig::default()
    };
    let (mut records, labels) = produce::simulated_fleet(&sim);
    // Two broken records, to show the dead-letter topic at work.
    let broken: [&[u8]; 2] = [
        br#"{"eventVersion":"1.08","truncated"#,
        b"<html>502 Bad Gateway</html>",
    ];
    for (i, bytes) in broken.into_iter().enumerate() {
        let at = records.len() * (i + 1) / 3;
        let time_ms = records[at].time_ms;
        records.insert(
            at,
            produce::KeyedRecord {
                key: None,
                time_ms,
                bytes: bytes.to_vec(),
            },
        );
    }
    println!(
        "driftwatch demo: in-process Kafka at {brokers}; simulated {} identities over {} days with {} injected attacks",
        labels.identities.len(),
        opts.days,
        labels.attacks.len()
    );
    let reader: StreamConsumer<KafkaContext> = client_config(
        &brokers,
        Role::Reader {
            group: "driftwatch-demo-reader",
        },
        [],
    )
    .create_with_context(KafkaContext::new("reader"))?;
    reader.subscribe(&[&cfg.alerts_topic, &cfg.commands_topic])?;

    // The stream as it arrives, in event-time order: keyed records and delivery documents.
    let keyed_topic = cfg.inputs[0].topic.clone();
    let (mut keyed, mut trail): (Vec<_>, Vec<_>) = (Vec::new(), Vec::new());
    for r in records {
        let cloudtrail =
            crate::decode::detect_format(&r.bytes) == Ok(crate::event::SourceFormat::Cloudtrail);
        if cloudtrail { &mut trail } else { &mut keyed }.push(r);
    }
    let (trail_records, documents) = (trail.len(), produce::unkeyed_deliveries(&trail, 25));
    let document_count = documents.len();
    let mut stream: Vec<(bool, u64, produce::KeyedRecord)> = keyed
        .into_iter()
        .map(|r| (false, produce::events_in(&r.bytes), r))
        .chain(
            documents
                .into_iter()
                .map(|d| (true, produce::events_in(&d.bytes), d)),
        )
        .collect();
    stream.sort_by_key(|(_, _, r)| r.time_ms);
    let events_total: u64 = stream.iter().map(|(_, n, _)| n).sum();
    let registry = Registry::new();
    register_process_metrics(&registry)?;
    let service = Service::new(cfg.clone(), rules.clone(), &registry)?;
    let mut metrics = service.metrics();
    let mut endpoint = match opts.metrics_addr {
        Some(addr) => Some(serve_metrics(addr, registry, metrics.clone()).await?),
        None => None,
    };
    let producer = produce::loader(&brokers, [("linger.ms", "5")])?;
    // The stream arrives while the service runs. The mock cluster keeps only a few megabytes per
    // partition, so the producer stays at most MAX_AHEAD records ahead of the service. Halfway
    // it waits while the service is restarted.
    // Events, not records: a delivery document holds 25.
    const MAX_AHEAD: u64 = 4_000;
    const CHUNK: usize = 200;
    let half = stream.len() / 2;
    let first_half_items = (half.div_ceil(CHUNK) * CHUNK).min(stream.len());
    let first_half: u64 = stream[..first_half_items].iter().map(|(_, n, _)| n).sum();
    let (progress_tx, progress_rx) = watch::channel((metrics.clone(), 0u64));
    let (resume_tx, resume_rx) = oneshot::channel::<()>();
    let mut feeder = tokio::spawn(async move {
        let (mut sent, mut sent_events) = (0u64, 0u64);
        let mut resume = Some(resume_rx);
        for (i, chunk) in stream.chunks(CHUNK).enumerate() {
            if i * CHUNK >= half
                && let Some(r) = resume.take()
            {
                let _ = r.await;
            }
            loop {
                let (m, before) = progress_rx.borrow().clone();
                if sent_events <= before + Metrics::total(&m.events_decoded) + MAX_AHEAD {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for unkeyed in [false, true] {
                let part: Vec<produce::KeyedRecord> = (chunk.iter())
                    .filter(|(u, _, _)| *u == unkeyed)
                    .map(|(_, _, r)| r.clone())
                    .collect();
                let topic = if unkeyed { CLOUDTRAIL_S3 } else { &keyed_topic };
                sent += produce::send_all(&producer, topic, &part, 1_000).await?;
            }
            sent_events += chunk.iter().map(|(_, n, _)| n).sum::<u64>();
        }
        anyhow::Ok(sent)
    });
    println!(
        "producing the stream in event-time order: Kubernetes audit events keyed by identity ({} partitions), and {trail_records} CloudTrail records in {document_count} unkeyed S3 delivery documents (one partition, as a trail delivers them), which the service re-keys by identity through its repartition topic; {events_total} events, the service restarts after {first_half}\n",
        opts.partitions
    );
    let produced = events_total;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut svc = tokio::spawn(service.run(async {
        let _ = stop_rx.await;
    }));
    let mut stop_tx = Some(stop_tx);
    let mut resume_tx = Some(resume_tx);
    // What the first run acknowledged and emitted, once it has stopped.
    let (mut judged_before, mut outputs_before, mut dead_before) = (0u64, 0u64, 0u64);

    let mut points = Vec::new();
    let (mut alerts, mut commands) = (0u64, 0u64);
    let mut idle_since: Option<Instant> = None;
    // What the loop last saw move, and when: a stream that stops moving for STALL_LIMIT is a
    // failure named by what stopped, never a demo that waits forever.
    let mut progress = (0u64, 0u64, 0u64);
    let mut progressed = Instant::now();
    let mut fed: Option<u64> = None;
    tokio::pin!(interrupt);
    let mut interrupted = false;
    let stdout = std::io::stdout();
    loop {
        // Events judged (their outputs acknowledged once nothing is in flight).
        let acked = judged_before + Metrics::total(&metrics.events_decoded);
        let outputs =
            outputs_before + Metrics::total(&metrics.alerts) + Metrics::total(&metrics.commands);
        let now = (
            acked,
            alerts + commands,
            Metrics::total(&metrics.records_consumed),
        );
        if now != progress {
            (progress, progressed) = (now, Instant::now());
        } else if progressed.elapsed() > STALL_LIMIT {
            anyhow::bail!(
                "the demo made no progress for {} s: {acked} of {produced} events judged, {} of {outputs} alerts and commands read back, {} records produced so far; the service or the in-process cluster is stuck",
                STALL_LIMIT.as_secs(),
                alerts + commands,
                fed.map_or_else(|| "not all".to_owned(), |n| n.to_string()),
            );
        }
        let next = tokio::select! {
            () = &mut interrupt => { interrupted = true; break; }
            ended = &mut svc => anyhow::bail!(
                "the service stopped before the fleet was processed ({acked} of {produced} events judged): {}",
                match ended {
                    Ok(Ok(_)) => "it returned without an error".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => format!("its task failed: {e}"),
                }
            ),
            sent = &mut feeder, if fed.is_none() => {
                fed = Some(
                    sent.context("producer task")?
                        .context("producing the fleet into the input topic")?,
                );
                continue;
            }
            m = tokio::time::timeout(Duration::from_millis(200), reader.recv()) => m,
        };
        match next {
            Ok(Ok(m)) => {
                idle_since = None;
                let Some(v) = m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                else {
                    continue;
                };
                if v.get("class_uid").is_some() {
                    alerts += 1;
                    points.extend(evaluate::alert_point(&v));
                } else {
                    commands += 1;
                }
                let mut out = stdout.lock();
                let _ = writeln!(out, "{}", describe(&v));
            }
            Ok(Err(e)) => anyhow::bail!("reading the alerts topic: {e}"),
            Err(_) => {
                if let Some(resume) = resume_tx
                    .take_if(|_| acked >= first_half && metrics.records_in_flight.get() == 0)
                {
                    // Halfway: stop the service as a deploy would (SIGTERM: drain, save, commit)
                    // and start a new instance, which restores its identities from the state
                    // topic instead of re-reading the history.
                    if let Some(stop) = stop_tx.take() {
                        let _ = stop.send(());
                    }
                    let first = tokio::time::timeout(cfg.shutdown_grace + STALL_LIMIT, svc)
                        .await
                        .context("the first instance did not stop")?
                        .context("service task")??;
                    println!(
                        "\n--- restart: the first instance stopped after {} records, its baselines saved in the state topic ({} snapshots written); a new instance takes over ---",
                        first.consumed,
                        metrics.state_snapshots_written.get()
                    );
                    judged_before += Metrics::total(&metrics.events_decoded);
                    dead_before += metrics.dead_letters.get();
                    outputs_before +=
                        Metrics::total(&metrics.alerts) + Metrics::total(&metrics.commands);
                    let registry = Registry::new();
                    register_process_metrics(&registry)?;
                    let service = Service::new(cfg.clone(), rules.clone(), &registry)?;
                    metrics = service.metrics();
                    if let Some((addr, task)) = endpoint.take() {
                        task.abort();
                        // The old listener must have closed before the port is bound again.
                        let _ = task.await;
                        endpoint = Some(serve_metrics(addr, registry, metrics.clone()).await?);
                    }
                    let _ = progress_tx.send((metrics.clone(), judged_before));
                    let (tx, rx) = oneshot::channel::<()>();
                    stop_tx = Some(tx);
                    svc = tokio::spawn(service.run(async {
                        let _ = rx.await;
                    }));
                    let restart = Instant::now();
                    while metrics.assigned_partitions.get() < input_partitions
                        || metrics.restoring_partitions.get() > 0
                    {
                        if restart.elapsed() > Duration::from_secs(60) {
                            anyhow::bail!(
                                "the restarted instance was not assigned its partitions in 60 s"
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    println!(
                        "--- the new instance restored {} identities from the state topic in {:.1}s and re-read {} records of history ---\n",
                        metrics.state_restored_identities.get(),
                        restart.elapsed().as_secs_f64(),
                        Metrics::total(&metrics.records_replayed)
                    );
                    let _ = resume.send(());
                    progressed = Instant::now();
                    continue;
                }
                // Done when every event is judged, every record acknowledged and every output
                // read.
                let done = resume_tx.is_none()
                    && fed.is_some()
                    && acked >= produced
                    && metrics.records_in_flight.get() == 0
                    && alerts + commands >= outputs;
                if done {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= Duration::from_millis(600) {
                        break;
                    }
                }
            }
        }
    }
    if let Some(stop) = stop_tx.take() {
        let _ = stop.send(());
    }
    if interrupted {
        feeder.abort();
    }
    let summary = tokio::time::timeout(cfg.shutdown_grace + STALL_LIMIT, svc)
        .await
        .context("the service did not stop")?
        .context("service task")??;
    println!("\n(the instance that took over) {summary}");
    println!(
        "  dead letters: {} (the two broken records, with their reasons in headers)",
        dead_before + metrics.dead_letters.get()
    );
    if let Some(p50) = quantile(&metrics.delivery_seconds, 0.5) {
        println!(
            "  record received -> outputs acknowledged (after the restart): p50 {:.1} ms, p99 {:.1} ms",
            p50 * 1e3,
            quantile(&metrics.delivery_seconds, 0.99).unwrap_or(p50) * 1e3
        );
    }
    if let Some((addr, task)) = endpoint {
        println!("  (the metrics endpoint http://{addr}/metrics closes with the demo)");
        task.abort();
    }
    if interrupted {
        println!("  interrupted before the whole fleet was processed");
    } else {
        let report = evaluate::score(&labels, &points, 3_600_000);
        println!(
            "  scored against the simulation's labels: {}/{} attacks caught, {:.2} false alert-hours per 1,000 identity-days, in {:.1}s",
            report.detected,
            report.attacks,
            report.false_alert_hours_per_1000_identity_days,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
