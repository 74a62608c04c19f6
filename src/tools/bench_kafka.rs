//! `driftwatch bench-kafka`: throughput through a real broker (or, with `--mock`, librdkafka's
//! in-process cluster, which feeds records faster than a broker process can, so the service's
//! own ceiling shows), with a reference measured in the same run. Produces N records (a simulated fleet, repeated as needed) into a fresh topic, then
//! reads the topic twice: once with a do-nothing rdkafka consumer (the raw consume rate), once
//! with the full service (decode, engine, outputs, acknowledgements, offsets). Prints both rates,
//! their ratio, and the record-in to alert-acknowledged latency.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use prometheus::Registry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::oneshot;

use super::produce::{self, KeyedRecord};
use super::simulate::SimConfig;
use crate::config::{Rules, RunConfig, Settings};
use crate::kafka::{KafkaContext, Role, client_config};
use crate::service::Service;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{buckets, quantile, quantile_between};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Bootstrap brokers; `None` runs librdkafka's in-process mock cluster instead, which feeds
    /// records faster than a real broker on this machine, so the service's own ceiling shows.
    pub brokers: Option<String>,
    pub records: usize,
    pub partitions: i32,
    /// Also measure the repartition path: the same records as unkeyed delivery documents on an
    /// `:unkeyed` input.
    pub repartition: bool,
}

/// The repartition path's figures: events judged through it a second, against the keyed
/// service's events a second in the same run.
#[derive(Debug, Clone)]
pub struct RepartitionFigures {
    pub documents: u64,
    pub events: u64,
    pub events_per_s: f64,
    pub keyed_events_per_s: f64,
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub records: u64,
    pub raw_per_s: f64,
    pub service_per_s: f64,
    /// CPU time of the whole process per record (every thread: the clients', the pool's, and
    /// the mock cluster's when it runs in-process), while each reader ran; `None` off Linux.
    pub raw_cpu_us: Option<f64>,
    pub service_cpu_us: Option<f64>,
    pub alerts: u64,
    pub latency_p50: Option<Duration>,
    pub latency_p99: Option<Duration>,
    pub repartition: Option<RepartitionFigures>,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Option<Duration>| {
            d.map_or("n/a".to_owned(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1e3)
            })
        };
        writeln!(f, "driftwatch bench-kafka: {} records", self.records)?;
        writeln!(
            f,
            "  raw consume (do-nothing consumer): {:>10.0} records/s",
            self.raw_per_s
        )?;
        writeln!(
            f,
            "  driftwatch run (full service):     {:>10.0} records/s",
            self.service_per_s
        )?;
        writeln!(
            f,
            "  ratio: {:.2} (target >= 0.70)",
            self.service_per_s / self.raw_per_s.max(1e-9)
        )?;
        if let (Some(raw), Some(service)) = (self.raw_cpu_us, self.service_cpu_us) {
            writeln!(
                f,
                "  CPU per record (all threads): raw {raw:.2} us, service {service:.2} us ({} cores here)",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            )?;
        }
        write!(
            f,
            "  record received -> outputs acknowledged ({} alerts): p50 {}, p99 {} (interpolated in histogram buckets)",
            self.alerts,
            ms(self.latency_p50),
            ms(self.latency_p99)
        )?;
        if let Some(r) = &self.repartition {
            write!(
                f,
                "\n  unkeyed input, repartitioned ({} records: CloudTrail in 25-record delivery documents; {} events): {:.0} events/s, {:.2}x the keyed input's {:.0} events/s",
                r.documents,
                r.events,
                r.events_per_s,
                r.events_per_s / r.keyed_events_per_s.max(1e-9),
                r.keyed_events_per_s
            )?;
        }
        Ok(())
    }
}

/// CPU time (user and system) of this process so far.
fn cpu_seconds() -> Option<f64> {
    crate::telemetry::cpu_seconds().map(|c| c.own)
}

/// CPU microseconds per record between two readings.
fn cpu_per_record(start: Option<f64>, end: Option<f64>, records: u64) -> Option<f64> {
    Some((end? - start?) * 1e6 / records.max(1) as f64)
}

fn suffix() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn records(n: usize) -> Vec<KeyedRecord> {
    let (mut all, _) = produce::simulated_fleet(&SimConfig {
        identities: 200,
        days: 21,
        seed: 7,
        ..SimConfig::default()
    });
    all.truncate(n);
    while all.len() < n {
        let more = all[..(n - all.len()).min(all.len())].to_vec();
        all.extend(more);
    }
    all
}

/// A run's topics, named `<prefix>-<role>-<unique suffix>`: the input, then the outputs
/// (alerts, commands, dead letters, governance commands), and the service's group.
struct Names {
    input: String,
    outs: [String; 4],
    group: String,
}

impl Names {
    fn new(prefix: &str) -> Names {
        let id = suffix();
        Names {
            input: format!("{prefix}-in-{id}"),
            outs: [
                format!("{prefix}-alerts-{id}"),
                format!("{prefix}-commands-{id}"),
                format!("{prefix}-dlq-{id}"),
                format!("{prefix}-governance-{id}"),
            ],
            group: format!("{prefix}-service-{id}"),
        }
    }

    /// The topics to create: the input with `partitions`, the outputs with one.
    fn topics(&self, partitions: i32) -> Vec<(&str, i32)> {
        let mut topics = vec![(self.input.as_str(), partitions)];
        topics.extend(self.outs.iter().map(|t| (t.as_str(), 1)));
        topics
    }
}

/// Creates a run's `topics`: on the brokers, or on the mock cluster with the state topics of
/// the service's `group` too (`state_partitions` of them), since the mock cannot create topics
/// with settings (the state topics are compacted).
async fn create_topics(
    mock: Option<&rdkafka::mocking::MockCluster<'_, rdkafka::producer::DefaultProducerContext>>,
    brokers: &str,
    group: &str,
    topics: &[(&str, i32)],
    state_partitions: i32,
) -> anyhow::Result<()> {
    let Some(m) = mock else {
        return produce::create_topics(brokers, topics)
            .await
            .context("creating the benchmark topics");
    };
    let state = format!("{group}.state");
    m.create_topic(&state, state_partitions, 1)?;
    m.create_topic(&format!("{state}.fleet"), 1, 1)?;
    for (t, p) in topics {
        m.create_topic(t, *p, 1)?;
    }
    Ok(())
}

/// The service's task, running until `stop` is sent.
type Running =
    tokio::task::JoinHandle<Result<crate::service::RunSummary, crate::service::ServiceError>>;

/// Starts the service in this process on `input`, writing to `outs` (alerts, commands, dead
/// letters, governance commands).
fn start_service(
    brokers: &str,
    group: &str,
    input: &str,
    outs: &[String; 4],
    rules: Rules,
    kafka: &[&str],
) -> anyhow::Result<(std::sync::Arc<Metrics>, oneshot::Sender<()>, Running)> {
    let cfg = RunConfig::resolve(
        Settings {
            brokers: Some(brokers.to_owned()),
            group: Some(group.to_owned()),
            inputs: Some(vec![input.to_owned()]),
            alerts_topic: Some(outs[0].clone()),
            commands_topic: Some(outs[1].clone()),
            dead_letter_topic: Some(outs[2].clone()),
            governance_topic: Some(outs[3].clone()),
            kafka: kafka
                .iter()
                .map(|p| crate::config::settings::KafkaProperty::parse(p).expect("infallible"))
                .collect(),
            ..Settings::default()
        },
        None,
    )?;
    let service = Service::new(cfg, rules, &Registry::new())?;
    let metrics = service.metrics();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(service.run(async {
        let _ = stopped.await;
    }));
    Ok((metrics, stop, handle))
}

/// Runs the benchmark.
///
/// # Errors
/// When the broker cannot be reached or a stage does not finish within its time limit.
pub async fn run(opts: &BenchOptions, rules: Rules) -> anyhow::Result<BenchReport> {
    let names = Names::new("dwbench");
    let Names {
        input,
        outs,
        group: service_group,
    } = &names;
    let topics = names.topics(opts.partitions);
    let mock = match &opts.brokers {
        Some(_) => None,
        None => {
            Some(rdkafka::mocking::MockCluster::new(1).context("starting the in-process cluster")?)
        }
    };
    let brokers = match (&opts.brokers, &mock) {
        (Some(b), _) => b.clone(),
        (None, Some(m)) => m.bootstrap_servers(),
        (None, None) => unreachable!("a mock cluster when no brokers are given"),
    };
    let brokers = &brokers;
    create_topics(
        mock.as_ref(),
        brokers,
        service_group,
        &topics,
        opts.partitions,
    )
    .await?;

    let rp = opts.repartition.then(|| Names::new("dwbench-rp"));
    if let Some(rp) = &rp {
        let mut topics = rp.topics(opts.partitions);
        let repartition = format!("{}.repartition", rp.group);
        let widened = if mock.is_some() { 8 } else { 1 } * opts.partitions;
        topics.push((&repartition, widened));
        create_topics(mock.as_ref(), brokers, &rp.group, &topics, widened).await?;
    }

    let data = records(opts.records);
    // On the mock, compressed batches: it keeps a few megabytes per partition as produced, so
    // lz4 (built into librdkafka) fits several times more records, and both consumers pay for
    // decompression alike. Against brokers, records are sent as they are.
    let compression = if mock.is_some() { "lz4" } else { "none" };
    let producer = produce::loader(
        brokers,
        [
            ("compression.type", compression),
            ("linger.ms", "50"),
            ("batch.num.messages", "10000"),
        ],
    )?;
    let n = produce::send_all(&producer, input, &data, 100_000).await?;
    let unkeyed = match &rp {
        Some(rp) => {
            let events = data.iter().map(|r| produce::events_in(&r.bytes)).sum();
            let documents = produce::unkeyed_deliveries(&data, 25);
            let sent = produce::send_all(&producer, &rp.input, &documents, 100_000).await?;
            Some((sent, events))
        }
        None => None,
    };
    drop(data);
    if mock.is_some() {
        // The oldest records of an overfull mock partition are gone before they are read.
        let admin: StreamConsumer<KafkaContext> = client_config(
            brokers,
            Role::Reader {
                group: "dwbench-check",
            },
            [],
        )
        .create_with_context(KafkaContext::new("reader"))?;
        for p in 0..opts.partitions {
            let (low, _) = admin.fetch_watermarks(input, p, Duration::from_secs(10))?;
            if low > 0 {
                bail!(
                    "the mock cluster dropped the oldest {low} records of partition {p}: it keeps a few megabytes per partition; raise --partitions or lower --records"
                );
            }
        }
    }

    // Reference: a consumer that only counts, timed from its first record to its last.
    let group = format!("{service_group}-raw");
    // With the service consumer's fetch backoff: at librdkafka's default (1 s), a reference that
    // once fills its prefetch queue idles for most of a second, and the ratio measures that.
    let raw: StreamConsumer<KafkaContext> = client_config(
        brokers,
        Role::Reader { group: &group },
        [("fetch.queue.backoff.ms", "20")],
    )
    .create_with_context(KafkaContext::new("reader"))?;
    raw.subscribe(&[input])?;
    let mut seen = 0u64;
    let mut first = None;
    let mut raw_cpu = None;
    let limit = Instant::now() + Duration::from_secs(600);
    while seen < n {
        let m = tokio::time::timeout(Duration::from_secs(60), raw.recv())
            .await
            .context("raw consumer stalled")??;
        std::hint::black_box(&m);
        first.get_or_insert_with(|| {
            raw_cpu = cpu_seconds();
            Instant::now()
        });
        seen += 1;
        if Instant::now() > limit {
            bail!("raw consumer too slow");
        }
    }
    let raw_secs = first.map_or(1e-9, |f| f.elapsed().as_secs_f64());
    let raw_cpu_us = cpu_per_record(raw_cpu, cpu_seconds(), n);
    drop(raw);

    // The service on the same topic, timed from its first record to the last acknowledgement.
    let rules_again = rules.clone();
    let (metrics, stop, handle) = start_service(brokers, service_group, input, outs, rules, &[])?;
    let mut first = None;
    let mut service_cpu = None;
    let limit = Instant::now() + Duration::from_secs(600);
    while metrics.records_acknowledged.get() < n {
        if first.is_none() && Metrics::total(&metrics.records_consumed) > 0 {
            first = Some(Instant::now());
            service_cpu = cpu_seconds();
        }
        if Instant::now() > limit || handle.is_finished() {
            bail!("the service did not process the topic");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let service_secs = first.map_or(1e-9, |f| f.elapsed().as_secs_f64());
    let service_cpu_us = cpu_per_record(service_cpu, cpu_seconds(), n);
    let keyed_events = Metrics::total(&metrics.events_decoded);
    let _ = stop.send(());
    handle.await??;

    // The same events as unkeyed delivery documents, through the repartition stage: timed from
    // the first document received to the last event judged and its outputs acknowledged.
    let repartition = match (&rp, unkeyed) {
        (Some(rp), Some((documents, events))) => {
            let spec = format!("{}:unkeyed", rp.input);
            // The mock cluster keeps a few megabytes per partition: the re-keyed events go
            // compressed, over more partitions (created above).
            let mock_props: &[&str] = if mock.is_some() {
                &["producer.compression.type=lz4"]
            } else {
                &[]
            };
            let (m, stop, handle) =
                start_service(brokers, &rp.group, &spec, &rp.outs, rules_again, mock_props)?;
            let judged = m
                .events_decoded
                .with_label_values(&[&format!("{}.repartition", rp.group), "auto"]);
            let mut first = None;
            let limit = Instant::now() + Duration::from_secs(900);
            let (mut last, mut moved) = (0, Instant::now());
            while judged.get() < events || m.records_in_flight.get() > 0 {
                if first.is_none() && Metrics::total(&m.records_consumed) > 0 {
                    first = Some(Instant::now());
                }
                if Instant::now() > limit || handle.is_finished() {
                    bail!("the service did not finish the repartition path");
                }
                if judged.get() != last {
                    (last, moved) = (judged.get(), Instant::now());
                } else if moved.elapsed() > Duration::from_secs(60) {
                    bail!(
                        "the repartition path stalled at {last} of {events} events (on the mock cluster, its oldest records are dropped past a few megabytes a partition: lower --records)"
                    );
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let secs = first.map_or(1e-9, |f| f.elapsed().as_secs_f64());
            let _ = stop.send(());
            handle.await??;
            Some(RepartitionFigures {
                documents,
                events,
                events_per_s: events as f64 / secs,
                keyed_events_per_s: keyed_events as f64 / service_secs,
            })
        }
        _ => None,
    };
    Ok(BenchReport {
        repartition,
        records: n,
        raw_per_s: n as f64 / raw_secs,
        service_per_s: n as f64 / service_secs,
        raw_cpu_us,
        service_cpu_us,
        alerts: Metrics::total(&metrics.alerts),
        latency_p50: quantile(&metrics.delivery_seconds, 0.5).map(Duration::from_secs_f64),
        latency_p99: quantile(&metrics.delivery_seconds, 0.99).map(Duration::from_secs_f64),
    })
}

/// `bench-kafka --soak MINUTES`: the service under a sustained load.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub brokers: String,
    pub minutes: f64,
    /// Records produced a second.
    pub rate: u32,
    pub partitions: i32,
    /// Seconds between samples.
    pub every: f64,
}

/// One sample of a soak run.
#[derive(Debug, Clone)]
pub struct SoakSample {
    pub at_s: f64,
    pub produced: u64,
    pub acknowledged: u64,
    pub rss_bytes: Option<u64>,
    /// Record received -> handed on, over the sample's interval.
    pub processing_p50: Option<f64>,
    pub processing_p99: Option<f64>,
}

impl std::fmt::Display for SoakSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{:.2} ms", v * 1e3));
        write!(
            f,
            "{:>7.0}s  produced {:>9}  acknowledged {:>9}  lag {:>6}  rss {:>7}  processing p50 {:>9} p99 {:>9}",
            self.at_s,
            self.produced,
            self.acknowledged,
            self.produced.saturating_sub(self.acknowledged),
            self.rss_bytes.map_or("n/a".to_owned(), |b| format!(
                "{:.1} MiB",
                b as f64 / 1048576.0
            )),
            ms(self.processing_p50),
            ms(self.processing_p99),
        )
    }
}

/// The whole soak run: its samples and what they add up to.
#[derive(Debug, Clone)]
pub struct SoakReport {
    pub samples: Vec<SoakSample>,
}

impl SoakReport {
    /// Samples after warm-up: the first fifth of the run (at least one sample) is left out.
    pub fn settled(&self) -> &[SoakSample] {
        let skip = (self.samples.len() / 5).max(1).min(self.samples.len());
        &self.samples[skip..]
    }
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settled = self.settled();
        let rss: Vec<u64> = settled.iter().filter_map(|s| s.rss_bytes).collect();
        let mib = |b: u64| b as f64 / 1048576.0;
        writeln!(
            f,
            "driftwatch bench-kafka --soak: {} samples",
            self.samples.len()
        )?;
        if let (Some(first), Some(last), Some(lo), Some(hi)) =
            (rss.first(), rss.last(), rss.iter().min(), rss.iter().max())
        {
            writeln!(
                f,
                "  RSS after warm-up: first {:.1} MiB, last {:.1} MiB ({:+.1}%), range {:.1}-{:.1} MiB",
                mib(*first),
                mib(*last),
                (*last as f64 / *first as f64 - 1.0) * 100.0,
                mib(*lo),
                mib(*hi)
            )?;
        }
        let lag = settled
            .iter()
            .map(|s| s.produced.saturating_sub(s.acknowledged))
            .max()
            .unwrap_or(0);
        let p99 = settled
            .iter()
            .filter_map(|s| s.processing_p99)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        write!(
            f,
            "  after warm-up: largest lag {lag} records, worst processing p99 {}",
            p99.map_or("n/a".to_owned(), |v| format!("{:.2} ms", v * 1e3))
        )
    }
}

/// Runs the service against `opts.brokers` while a producer feeds it `opts.rate` records a
/// second (a simulated fleet, over and over) for `opts.minutes`, printing a sample every
/// `opts.every` seconds; then lets it catch up and stops it.
///
/// # Errors
/// When the brokers cannot be reached, a delivery fails, or the service stops or does not
/// catch up within a minute of the end.
pub async fn soak(opts: &SoakOptions, rules: Rules) -> anyhow::Result<SoakReport> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let names = Names::new("dwsoak");
    let brokers = &opts.brokers;
    produce::create_topics(brokers, &names.topics(opts.partitions))
        .await
        .context("creating the soak topics")?;
    let (metrics, stop, handle) =
        start_service(brokers, &names.group, &names.input, &names.outs, rules, &[])?;

    // The producer: one second's worth of records at a time, round the fleet again and again.
    // Held in this process, so part of its RSS throughout: a small fleet (a few days of 200
    // identities), so the service's own memory is most of what is sampled.
    let (data, _) = produce::simulated_fleet(&SimConfig {
        identities: 200,
        days: 2,
        seed: 7,
        ..SimConfig::default()
    });
    let produced = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (produced, input) = (produced.clone(), names.input.clone());
        let producer = produce::loader(brokers, [])?;
        let (rate, end) = (
            opts.rate.max(1),
            Instant::now() + Duration::from_secs_f64(opts.minutes * 60.0),
        );
        tokio::spawn(async move {
            let mut chunks = data.chunks(rate as usize).cycle();
            while Instant::now() < end {
                let chunk = chunks.next().expect("a cycle of a non-empty fleet");
                let n = produce::send_paced(&producer, &input, chunk, Some(rate)).await?;
                produced.fetch_add(n, Ordering::Relaxed);
            }
            anyhow::Ok(())
        })
    };

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut since = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(opts.every.max(1.0)));
    tick.tick().await;
    loop {
        tick.tick().await;
        if handle.is_finished() {
            bail!("the service stopped during the soak");
        }
        let now = buckets(&metrics.processing_seconds);
        let sample = SoakSample {
            at_s: started.elapsed().as_secs_f64(),
            produced: produced.load(Ordering::Relaxed),
            acknowledged: metrics.records_acknowledged.get(),
            rss_bytes: crate::telemetry::proc_status_bytes("VmRSS"),
            processing_p50: quantile_between(&since, &now, 0.5),
            processing_p99: quantile_between(&since, &now, 0.99),
        };
        since = now;
        println!("{sample}");
        samples.push(sample);
        // The load's end, or a delivery failure (reported below).
        if feeder.is_finished() {
            break;
        }
    }
    feeder.await??;
    let total = produced.load(Ordering::Relaxed);
    let limit = Instant::now() + Duration::from_secs(60);
    while metrics.records_acknowledged.get() < total {
        if Instant::now() > limit || handle.is_finished() {
            bail!(
                "the service did not catch up: {} of {total} records acknowledged a minute after the load stopped",
                metrics.records_acknowledged.get()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    handle.await??;
    Ok(SoakReport { samples })
}
