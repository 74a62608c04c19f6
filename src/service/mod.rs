//! The streaming service (`driftwatch run`): Kafka in, the engine, Kafka out, at-least-once.
//!
//! One task consumes the input topics in a consumer group and runs each record through decode and
//! the engine (both synchronous and cheap), then hands the record's outgoing messages (alerts,
//! commands, dead letters) to the idempotent producer and the record's position to the
//! *acknowledger* over a bounded channel. The acknowledger awaits each record's deliveries in
//! input order and only then stores its offset, which librdkafka commits periodically and at
//! shutdown: an input offset is never committed before everything it caused is acknowledged.
//! The channel bound (`max_in_flight`) is the backpressure: when the producer is slow or the
//! brokers are down, consumption waits instead of buffering without limit.
//!
//! Per-identity state follows the partition that owns the identity (input messages are keyed by
//! identity). On assignment, a partition's baselines are rebuilt from its own history: the
//! consumer starts `rebuild` before the committed offset and feeds those records to the engine
//! without emitting anything (they were emitted before), then goes live at the committed offset.
//! On revocation, the partition's identities are dropped. So partitions move between instances,
//! and an instance restarts, without losing detections and without shared storage; what remains
//! is persisting state snapshots so a restart does not re-read history (see the README).

pub mod config;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{IntCounter, Registry};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

pub use config::{Input, RunConfig};

use crate::decide::{Activity, Decision};
use crate::decode::{self, Decoded, FormatHint};
use crate::detect::Rules;
use crate::emit::kafka::{self as out, Outgoing, Route, SourcePosition};
use crate::emit::ocsf::severity_name;
use crate::engine::Engine;
use crate::event::RawRef;
use crate::model::{ConfigError, Problem};
use crate::telemetry::{EngineCollector, Metrics, RateLimit};

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot subscribe to {topics}: {source}")]
    Subscribe { topics: String, source: KafkaError },
    #[error(
        "a message for topic `{topic}` could not be delivered after {attempts} attempts: {source}; \
         its input offset was not committed, so it will be processed again after a restart"
    )]
    Delivery {
        topic: String,
        attempts: u32,
        source: KafkaError,
    },
    #[error(
        "shutdown did not finish within the {grace:?} grace period ({pending} records still awaiting \
         acknowledgement); their offsets were not committed and they will be processed again"
    )]
    ShutdownTimeout { grace: Duration, pending: u64 },
}

/// Totals printed when the service stops.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub consumed: u64,
    pub rebuilt: u64,
    pub events: u64,
    pub rejected: u64,
    pub alerts: u64,
    pub commands: u64,
    pub dead_lettered: u64,
    pub identities: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "driftwatch run: {} records consumed ({} replayed to rebuild baselines), {} events, {} alerts, {} commands, {} dead letters, {} identities tracked, in {:.1}s",
            self.consumed,
            self.rebuilt,
            self.events,
            self.alerts,
            self.commands,
            self.dead_lettered,
            self.identities,
            self.elapsed.as_secs_f64()
        )
    }
}

/// What the consumer loop knows about one assigned partition.
#[derive(Debug, Clone, Copy)]
struct PartitionInfo {
    /// Owner tag of the partition's identities in the engine.
    owner: u32,
    /// Records before this offset only rebuild baselines; from it on, outputs are emitted.
    live_from: i64,
    assigned: bool,
    /// Still reading history before `live_from`.
    rebuilding: bool,
}

#[derive(Debug, Default)]
struct Partitions {
    map: HashMap<(String, i32), PartitionInfo>,
    next_owner: u32,
}

/// State shared by the consumer loop and the rebalance callbacks.
struct Shared {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    partitions: Mutex<Partitions>,
    /// Bumped on every change of `partitions` so the loop refreshes its copy.
    generation: AtomicU64,
    rebuild: Option<Duration>,
    /// Kafka client errors: broker outages produce a stream of them.
    client_errors: RateLimit,
    /// Undecodable records: a broken producer can send nothing else.
    bad_records: RateLimit,
}

/// The consumer's context: logs through `tracing`, and runs the rebuild/evict protocol on
/// rebalances.
pub struct ServiceContext {
    shared: Arc<Shared>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn log_kafka(level: RDKafkaLogLevel, fac: &str, msg: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => error!(target: "librdkafka", facility = fac, "{msg}"),
        RDKafkaLogLevel::Warning => warn!(target: "librdkafka", facility = fac, "{msg}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            info!(target: "librdkafka", facility = fac, "{msg}")
        }
        RDKafkaLogLevel::Debug => debug!(target: "librdkafka", facility = fac, "{msg}"),
    }
}

impl ClientContext for ServiceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        log_kafka(level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.shared.client_error("consumer", error, reason);
    }

    /// Consumer lag per assigned partition, every `statistics.interval.ms`.
    fn stats(&self, s: Statistics) {
        let parts = self
            .shared
            .partitions
            .lock()
            .expect("partition table poisoned");
        for (topic, t) in &s.topics {
            for (p, part) in &t.partitions {
                let assigned = parts
                    .map
                    .get(&(topic.clone(), *p))
                    .is_some_and(|i| i.assigned);
                // Behind the stored offset (acknowledged records); before anything was stored
                // since the assignment, behind the committed offset. -1 means unknown.
                let lag = if part.consumer_lag_stored >= 0 {
                    part.consumer_lag_stored
                } else {
                    part.consumer_lag
                };
                if *p >= 0 && assigned && lag >= 0 {
                    self.shared
                        .metrics
                        .consumer_lag
                        .with_label_values(&[topic.as_str(), &p.to_string()])
                        .set(lag);
                }
            }
        }
    }
}

/// The producer's context: logs through `tracing`, errors rate-limited like the consumer's.
pub struct ProducerContext {
    shared: Arc<Shared>,
}

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        log_kafka(level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.shared.client_error("producer", error, reason);
    }

    fn stats(&self, s: Statistics) {
        self.shared
            .metrics
            .producer_queue_messages
            .set(i64::try_from(s.msg_cnt).unwrap_or(i64::MAX));
    }
}

/// The producer of alerts, commands and dead letters.
type OutputProducer = FutureProducer<ProducerContext>;

impl ConsumerContext for ServiceContext {
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(base.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let kind = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => "assign",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => "revoke",
            _ => "error",
        };
        self.shared
            .metrics
            .rebalances
            .with_label_values(&[kind])
            .inc();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.shared.prepare_assignment(base, tpl);
                if cooperative {
                    base.incremental_assign(tpl)
                } else {
                    base.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Commit what has been acknowledged so the next owner starts right there.
                if !base.assignment_lost() {
                    match base.commit_consumer_state(CommitMode::Sync) {
                        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                        Err(e) => {
                            warn!(error = %e, "Commit on partition revocation failed; the next owner re-processes from the last commit.")
                        }
                    }
                }
                self.shared.revoke(tpl);
                if cooperative {
                    base.incremental_unassign(tpl)
                } else {
                    base.unassign()
                }
            }
            other => {
                error!(error = ?other, "Rebalance failed; dropping the assignment.");
                self.shared.revoke_all();
                base.unassign()
            }
        };
        if let Err(e) = result {
            error!(error = %e, "Applying the new partition assignment failed.");
        }
        let assigned = base.assignment().map_or(0, |a| a.count());
        info!(event = kind, changed = tpl.count(), assigned, "Rebalance.");
        self.shared
            .metrics
            .assigned_partitions
            .set(i64::try_from(assigned).unwrap_or(i64::MAX));
    }
}

impl Shared {
    /// Logs a client error; broker outages produce a stream of these, so one line per 10 s.
    fn client_error(&self, client: &'static str, error: KafkaError, reason: &str) {
        self.metrics.kafka_errors.with_label_values(&[client]).inc();
        if let Some(suppressed) = self.client_errors.check(now_ms()) {
            warn!(client, %error, reason, suppressed, "Kafka client error; librdkafka keeps reconnecting and driftwatch resumes where it left off.");
        }
    }

    /// Recounts the partitions still rebuilding (after any change of the table).
    fn update_rebuilding(&self, parts: &Partitions) {
        let n = parts
            .map
            .values()
            .filter(|i| i.assigned && i.rebuilding)
            .count();
        self.metrics
            .rebuilding_partitions
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The consumer loop reached a partition's live offset: its baselines are rebuilt.
    fn rebuilt(&self, topic: &str, partition: i32) {
        let mut parts = self.partitions.lock().expect("partition table poisoned");
        if let Some(info) = parts.map.get_mut(&(topic.to_owned(), partition)) {
            info.rebuilding = false;
            info!(
                topic,
                partition,
                live_from = info.live_from,
                "Partition's baselines rebuilt; emitting from here on."
            );
        }
        self.update_rebuilding(&parts);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Decides where each newly assigned partition starts: `rebuild` before its committed offset
    /// (records up to the committed offset only rebuild baselines), or at the committed offset.
    fn prepare_assignment(
        &self,
        base: &BaseConsumer<ServiceContext>,
        tpl: &mut TopicPartitionList,
    ) {
        let mut committed = None;
        for attempt in 1..=3 {
            match base.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(c) => {
                    committed = Some(c);
                    break;
                }
                Err(e) => warn!(error = %e, attempt, "Reading committed offsets failed."),
            }
        }
        let Some(committed) = committed else {
            error!(
                "Committed offsets unavailable: starting the new partitions without rebuilding their baselines."
            );
            self.register(tpl, |_, _| 0);
            return;
        };
        let mut live_from: HashMap<(String, i32), i64> = HashMap::new();
        let mut rebuild_tpl = TopicPartitionList::new();
        for e in committed.elements() {
            if let Offset::Offset(k) = e.offset()
                && k > 0
            {
                live_from.insert((e.topic().to_owned(), e.partition()), k);
                let start = match self.rebuild {
                    // No rebuild: the partition starts at its committed offset as assigned.
                    Some(d) if d.is_zero() => continue,
                    Some(d) => Offset::Offset(now_ms() - d.as_millis() as i64),
                    None => Offset::Beginning,
                };
                let _ = rebuild_tpl.add_partition_offset(e.topic(), e.partition(), start);
            }
        }
        // Timestamps to offsets (a partition with nothing newer than the horizon needs no rebuild).
        let by_time = self.rebuild.is_some() && rebuild_tpl.count() > 0;
        let starts = if by_time {
            match base.offsets_for_times(rebuild_tpl.clone(), Duration::from_secs(10)) {
                Ok(t) => t,
                Err(e) => {
                    warn!(error = %e, "Looking up rebuild offsets by time failed; rebuilding from the start of each partition.");
                    let mut all = TopicPartitionList::new();
                    for e in rebuild_tpl.elements() {
                        let _ =
                            all.add_partition_offset(e.topic(), e.partition(), Offset::Beginning);
                    }
                    all
                }
            }
        } else {
            rebuild_tpl
        };
        for e in starts.elements() {
            let k = live_from[&(e.topic().to_owned(), e.partition())];
            let start = match e.offset() {
                Offset::Offset(s) if s < k => Offset::Offset(s),
                Offset::Beginning => Offset::Beginning,
                _ => Offset::Offset(k),
            };
            let _ = tpl.set_partition_offset(e.topic(), e.partition(), start);
            info!(topic = e.topic(), partition = e.partition(), committed = k, start = ?start, "Assigned partition; rebuilding its baselines up to the committed offset.");
        }
        self.register(tpl, |t, p| {
            live_from.get(&(t.to_owned(), p)).copied().unwrap_or(0)
        });
    }

    fn register(&self, tpl: &TopicPartitionList, live_from: impl Fn(&str, i32) -> i64) {
        let mut parts = self.partitions.lock().expect("partition table poisoned");
        for e in tpl.elements() {
            let key = (e.topic().to_owned(), e.partition());
            let live_from = live_from(e.topic(), e.partition());
            let rebuilding = match e.offset() {
                Offset::Offset(start) => start < live_from,
                Offset::Beginning => live_from > 0,
                _ => false,
            };
            let owner = match parts.map.get(&key) {
                Some(i) => i.owner,
                None => {
                    parts.next_owner += 1;
                    parts.next_owner
                }
            };
            parts.map.insert(
                key,
                PartitionInfo {
                    owner,
                    live_from,
                    assigned: true,
                    rebuilding,
                },
            );
        }
        self.update_rebuilding(&parts);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Drops the state of revoked partitions: their next owner rebuilds it from the log.
    fn revoke(&self, tpl: &TopicPartitionList) {
        let mut parts = self.partitions.lock().expect("partition table poisoned");
        let mut evicted = 0;
        for e in tpl.elements() {
            if let Some(info) = parts.map.get_mut(&(e.topic().to_owned(), e.partition())) {
                info.assigned = false;
                evicted += self.engine.evict_owner(info.owner);
            }
            let _ = self
                .metrics
                .consumer_lag
                .remove_label_values(&[e.topic(), &e.partition().to_string()]);
        }
        self.update_rebuilding(&parts);
        info!(
            partitions = tpl.count(),
            identities = evicted,
            "Partitions revoked; their identities' state is dropped."
        );
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Revokes every assigned partition (after a failed rebalance), as [`Shared::revoke`] does.
    fn revoke_all(&self) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), info) in &self
            .partitions
            .lock()
            .expect("partition table poisoned")
            .map
        {
            if info.assigned {
                tpl.add_partition(topic, *partition);
            }
        }
        self.revoke(&tpl);
    }
}

/// One assigned partition as the consumer loop sees it, with its metric handles resolved once.
struct LocalPartition {
    topic: Arc<str>,
    partition: i32,
    info: PartitionInfo,
    format: FormatHint,
    consumed: IntCounter,
    replayed: IntCounter,
    decoded: IntCounter,
    skipped: IntCounter,
}

/// The consumer loop's copy of the partition table and input formats.
struct LocalPartitions {
    generation: u64,
    /// A few dozen entries, searched linearly.
    entries: Vec<LocalPartition>,
}

impl LocalPartitions {
    fn refresh(&mut self, shared: &Shared, inputs: &[Input]) {
        let generation = shared.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        let m = &shared.metrics;
        let parts = shared.partitions.lock().expect("partition table poisoned");
        self.entries = parts
            .map
            .iter()
            .filter(|(_, i)| i.assigned)
            .map(|((t, p), i)| {
                let format = inputs
                    .iter()
                    .find(|inp| inp.topic == *t)
                    .map_or(FormatHint::Auto, |inp| inp.format);
                let labels = [t.as_str(), config::format_name(format)];
                LocalPartition {
                    topic: Arc::from(t.as_str()),
                    partition: *p,
                    info: *i,
                    format,
                    consumed: m.records_consumed.with_label_values(&labels),
                    replayed: m.records_replayed.with_label_values(&[t.as_str()]),
                    decoded: m.events_decoded.with_label_values(&labels),
                    skipped: m.events_skipped.with_label_values(&labels),
                }
            })
            .collect();
        self.generation = generation;
    }

    fn get(&self, topic: &str, partition: i32) -> Option<&LocalPartition> {
        self.entries
            .iter()
            .find(|e| e.partition == partition && &*e.topic == topic)
    }
}

/// Output topic names by route.
struct Topics {
    alerts: String,
    commands: String,
    dead_letter: String,
}

impl Topics {
    fn of(&self, r: Route) -> &str {
        match r {
            Route::Alerts => &self.alerts,
            Route::Commands => &self.commands,
            Route::DeadLetter => &self.dead_letter,
        }
    }
}

/// One input record's outputs, awaiting acknowledgement before its offset is stored.
struct Pending {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    received: Instant,
    deliveries: Vec<(DeliveryFuture, Outgoing)>,
}

/// The streaming service.
pub struct Service {
    cfg: RunConfig,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
}

impl Service {
    /// Creates the service and registers its metrics (and its engine's) on `registry`.
    ///
    /// # Errors
    /// The registry already holds driftwatch's metrics.
    pub fn new(cfg: RunConfig, rules: Rules, registry: &Registry) -> prometheus::Result<Service> {
        let engine = Arc::new(Engine::new(rules));
        let metrics = Metrics::register(registry)?;
        registry.register(Box::new(EngineCollector::new(engine.clone())))?;
        Ok(Service {
            cfg,
            engine,
            metrics,
        })
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    fn client_config(&self, kind: config::ClientKind) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.cfg.brokers)
            .set("client.id", "driftwatch")
            .set_log_level(RDKafkaLogLevel::Warning);
        match kind {
            config::ClientKind::Consumer => {
                c.set("group.id", &self.cfg.group_id)
                    .set("enable.auto.commit", "true")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("partition.assignment.strategy", "cooperative-sticky")
                    .set("statistics.interval.ms", "5000");
            }
            config::ClientKind::Producer => {
                c.set("enable.idempotence", "true")
                    // Infinite: librdkafka retries through broker outages; backpressure bounds memory.
                    .set("message.timeout.ms", "0")
                    .set("linger.ms", "1")
                    .set("statistics.interval.ms", "5000");
            }
            config::ClientKind::Both => unreachable!("clients are consumers or producers"),
        }
        for (scope, k, v) in &self.cfg.kafka {
            if *scope == config::ClientKind::Both || *scope == kind {
                c.set(k, v);
            }
        }
        c
    }

    /// Creates the clients, reporting librdkafka's rejection of a pass-through property as a
    /// configuration problem.
    fn clients(
        &self,
        shared: Arc<Shared>,
    ) -> Result<(Arc<StreamConsumer<ServiceContext>>, OutputProducer), ConfigError> {
        let problem = |what: &str, e: KafkaError| ConfigError {
            file: "driftwatch run".into(),
            problems: vec![Problem {
                key: "--kafka-property".into(),
                why: format!("librdkafka rejected the {what} configuration: {e}"),
            }],
        };
        let consumer: StreamConsumer<ServiceContext> = self
            .client_config(config::ClientKind::Consumer)
            .create_with_context(ServiceContext {
                shared: shared.clone(),
            })
            .map_err(|e| problem("consumer", e))?;
        let producer: OutputProducer = self
            .client_config(config::ClientKind::Producer)
            .create_with_context(ProducerContext { shared })
            .map_err(|e| problem("producer", e))?;
        Ok((Arc::new(consumer), producer))
    }

    /// Runs until `shutdown` resolves, then drains, flushes and commits within the grace period.
    ///
    /// # Errors
    /// [`ServiceError`]: bad client configuration, a failed subscription, an undeliverable
    /// output, or a shutdown that overran its grace period. In every case, no input offset is
    /// committed past a record whose outputs were not acknowledged.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<RunSummary, ServiceError> {
        let started = Instant::now();
        let shared = Arc::new(Shared {
            engine: self.engine.clone(),
            metrics: self.metrics.clone(),
            partitions: Mutex::new(Partitions::default()),
            generation: AtomicU64::new(0),
            rebuild: self.cfg.rebuild,
            client_errors: RateLimit::new(10_000),
            bad_records: RateLimit::new(10_000),
        });
        let (consumer, producer) = self.clients(shared.clone())?;
        let topics: Vec<&str> = self.cfg.inputs.iter().map(|i| i.topic.as_str()).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| ServiceError::Subscribe {
                topics: topics.join(", "),
                source,
            })?;
        info!(config = %self.cfg.redacted(), "driftwatch run started.");
        let out_topics = Arc::new(Topics {
            alerts: self.cfg.alerts_topic.clone(),
            commands: self.cfg.commands_topic.clone(),
            dead_letter: self.cfg.dead_letter_topic.clone(),
        });
        let (tx, rx) = mpsc::channel::<Pending>(self.cfg.max_in_flight);
        let acker = tokio::spawn(acknowledge(
            rx,
            consumer.clone(),
            producer.clone(),
            out_topics.clone(),
            self.metrics.clone(),
        ));

        let stopped = self
            .consume(&shared, &consumer, &producer, &out_topics, tx, shutdown)
            .await;

        // Drain: the acknowledger finishes every record handed to it, then offsets are committed.
        let grace = self.cfg.shutdown_grace;
        let deadline = Instant::now() + grace;
        let acked = tokio::time::timeout(grace, acker).await;
        let result = match acked {
            Err(_) => Err(ServiceError::ShutdownTimeout {
                grace,
                pending: self.metrics.records_in_flight.get().max(0) as u64,
            }),
            Ok(Err(join)) => panic!("the acknowledger task panicked: {join}"),
            Ok(Ok(r)) => r,
        };
        let result = stopped.and(result);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = producer.flush(remaining.max(Duration::from_millis(100))) {
            warn!(error = %e, "Flushing the producer at shutdown failed.");
        }
        if result.is_ok() {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => {
                    warn!(error = %e, "Final offset commit failed; records since the last commit will be processed again.")
                }
            }
        }
        consumer.unsubscribe();
        let m = &self.metrics;
        let summary = RunSummary {
            consumed: Metrics::total(&m.records_consumed),
            rebuilt: Metrics::total(&m.records_replayed),
            events: Metrics::total(&m.events_decoded),
            rejected: Metrics::total(&m.records_rejected),
            alerts: Metrics::total(&m.alerts),
            commands: Metrics::total(&m.commands),
            dead_lettered: m.dead_letters.get(),
            identities: self.engine.identities(),
            elapsed: started.elapsed(),
        };
        result.map(|()| summary)
    }

    /// The consumer loop: receive, decode, detect, hand outputs to the producer and the record to
    /// the acknowledger. Returns when `shutdown` resolves or the acknowledger has failed.
    async fn consume(
        &self,
        shared: &Shared,
        consumer: &StreamConsumer<ServiceContext>,
        producer: &OutputProducer,
        topics: &Topics,
        tx: mpsc::Sender<Pending>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServiceError> {
        tokio::pin!(shutdown);
        let mut local = LocalPartitions {
            generation: u64::MAX,
            entries: Vec::new(),
        };
        let mut backoff = Duration::from_millis(100);
        let metrics = &self.metrics;
        let mut outgoing: Vec<Outgoing> = Vec::new();
        loop {
            let msg = tokio::select! {
                biased;
                () = &mut shutdown => {
                    info!("Shutdown requested: draining in-flight records.");
                    return Ok(());
                }
                m = consumer.recv() => m,
            };
            let msg = match msg {
                Ok(m) => {
                    backoff = Duration::from_millis(100);
                    m
                }
                Err(e) => {
                    metrics.kafka_errors.with_label_values(&["consumer"]).inc();
                    warn!(error = %e, retry_in = ?backoff, "Consuming failed; retrying.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let received = Instant::now();
            local.refresh(shared, &self.cfg.inputs);
            let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
            let Some(part) = local.get(topic, partition) else {
                // Fetched just before its partition was revoked: the new owner processes it.
                debug!(
                    topic,
                    partition, offset, "Skipping a record of a partition no longer assigned."
                );
                continue;
            };
            part.consumed.inc();
            let live = offset >= part.info.live_from;
            if !live {
                part.replayed.inc();
            }
            let at = SourcePosition {
                topic,
                partition,
                offset,
                key: msg.key(),
            };
            self.process_record(
                msg.payload().unwrap_or(&[]),
                part,
                live,
                at,
                shared,
                &mut outgoing,
            );
            if part.info.rebuilding && offset >= part.info.live_from - 1 {
                shared.rebuilt(topic, partition);
            }
            if !live {
                continue;
            }
            let mut deliveries = Vec::with_capacity(outgoing.len());
            for o in outgoing.drain(..) {
                let f = enqueue(producer, topics.of(o.route), &o)
                    .await
                    .map_err(|source| ServiceError::Delivery {
                        topic: topics.of(o.route).to_owned(),
                        attempts: 1,
                        source,
                    })?;
                deliveries.push((f, o));
            }
            metrics
                .processing_seconds
                .observe(received.elapsed().as_secs_f64());
            let pending = Pending {
                topic: part.topic.clone(),
                partition,
                offset,
                received,
                deliveries,
            };
            // Waits while `max_in_flight` records await acknowledgement (brokers slow or down),
            // but not past a shutdown request: this record's offset is then simply not stored.
            metrics.records_in_flight.inc();
            let sent = tokio::select! {
                biased;
                () = &mut shutdown => {
                    metrics.records_in_flight.dec();
                    info!("Shutdown requested while waiting for acknowledgements: draining in-flight records.");
                    return Ok(());
                }
                r = tx.send(pending) => r,
            };
            if sent.is_err() {
                // The acknowledger stopped on an error, which `run` reports.
                metrics.records_in_flight.dec();
                return Ok(());
            }
        }
    }

    /// Decode and detect for one record (pure apart from engine state): fills `outgoing` with the
    /// alerts, commands and dead letters it leads to when `live`.
    fn process_record(
        &self,
        payload: &[u8],
        part: &LocalPartition,
        live: bool,
        at: SourcePosition<'_>,
        shared: &Shared,
        outgoing: &mut Vec<Outgoing>,
    ) {
        let m = &self.metrics;
        let raw = RawRef {
            source: part.topic.clone(),
            position: at.offset.max(0) as u64,
        };
        let now = now_ms();
        decode::decode_record(
            payload,
            part.format,
            &raw,
            &mut |element, r, result| match result {
                Ok(Decoded::Event(ev)) => {
                    part.decoded.inc();
                    let decisions = self.engine.process_owned(&ev, part.info.owner);
                    if !live {
                        return;
                    }
                    m.event_lag_seconds
                        .observe(now.saturating_sub(ev.time_ms).max(0) as f64 / 1000.0);
                    for d in decisions {
                        match &d {
                            Decision::Alert(a) => {
                                let activity = match a.activity {
                                    Activity::Create => "create",
                                    Activity::Update => "update",
                                };
                                m.alerts
                                    .with_label_values(&[
                                        a.cause.as_str(),
                                        severity_name(a.severity_id),
                                        activity,
                                    ])
                                    .inc();
                            }
                            Decision::Command(c) => {
                                m.commands
                                    .with_label_values(&[c.action, c.mode.as_str()])
                                    .inc();
                            }
                        }
                        outgoing.push(out::decision(&d, &self.cfg.source));
                    }
                }
                Ok(Decoded::Skipped(_)) => part.skipped.inc(),
                Err(e) => {
                    if !live {
                        // Dead-lettered when it was first processed.
                        return;
                    }
                    m.records_rejected
                        .with_label_values(&[
                            &part.topic,
                            config::format_name(part.format),
                            e.code(),
                        ])
                        .inc();
                    if let Some(suppressed) = shared.bad_records.check(now) {
                        warn!(
                            topic = at.topic,
                            partition = at.partition,
                            offset = at.offset,
                            reason = e.code(),
                            error = %e,
                            suppressed,
                            "Undecodable record sent to the dead-letter topic."
                        );
                    }
                    // An element of a container is dead-lettered alone; a whole record unchanged.
                    let index = r.source.strip_prefix(at.topic).filter(|s| !s.is_empty());
                    let bytes = if index.is_some() { element } else { payload };
                    outgoing.push(out::rejected(bytes, &e, at, index));
                }
            },
        );
    }
}

/// Hands a message to the producer, waiting while its queue is full.
async fn enqueue(
    producer: &OutputProducer,
    topic: &str,
    o: &Outgoing,
) -> Result<DeliveryFuture, KafkaError> {
    loop {
        let mut headers = OwnedHeaders::new_with_capacity(o.headers.len());
        for (k, v) in &o.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord {
            topic,
            partition: None,
            payload: Some(&o.payload),
            key: o.key.as_deref(),
            timestamp: None,
            headers: Some(headers),
        };
        match producer.send_result(record) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

const DELIVERY_ATTEMPTS: u32 = 5;

/// Awaits one message's acknowledgement, re-sending it a few times on failure.
async fn deliver(
    mut fut: DeliveryFuture,
    o: Outgoing,
    producer: &OutputProducer,
    topics: &Topics,
    metrics: &Metrics,
) -> Result<(), ServiceError> {
    let topic = topics.of(o.route);
    let mut attempt = 1;
    loop {
        let error = match fut.await {
            Ok(Ok(_)) => {
                if o.route == Route::DeadLetter {
                    metrics.dead_letters.inc();
                }
                return Ok(());
            }
            Ok(Err((e, _))) => e,
            Err(_) => KafkaError::Canceled,
        };
        metrics
            .delivery_errors
            .with_label_values(&[o.route.as_str()])
            .inc();
        if attempt >= DELIVERY_ATTEMPTS {
            return Err(ServiceError::Delivery {
                topic: topic.to_owned(),
                attempts: attempt,
                source: error,
            });
        }
        let wait = Duration::from_millis(500 << attempt);
        warn!(topic, %error, attempt, retry_in = ?wait, "Delivery failed; sending again.");
        tokio::time::sleep(wait).await;
        attempt += 1;
        fut = enqueue(producer, topic, &o)
            .await
            .map_err(|source| ServiceError::Delivery {
                topic: topic.to_owned(),
                attempts: attempt,
                source,
            })?;
    }
}

/// The acknowledger: awaits each record's deliveries in input order, then stores its offset.
async fn acknowledge(
    mut rx: mpsc::Receiver<Pending>,
    consumer: Arc<StreamConsumer<ServiceContext>>,
    producer: OutputProducer,
    topics: Arc<Topics>,
    metrics: Arc<Metrics>,
) -> Result<(), ServiceError> {
    let mut batch = Vec::with_capacity(512);
    let mut last: Vec<(Arc<str>, i32, i64)> = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        let n = batch.len() as i64;
        for p in batch.drain(..) {
            let had_outputs = !p.deliveries.is_empty();
            for (fut, o) in p.deliveries {
                deliver(fut, o, &producer, &topics, &metrics).await?;
            }
            if had_outputs {
                metrics
                    .delivery_seconds
                    .observe(p.received.elapsed().as_secs_f64());
            }
            match last
                .iter_mut()
                .find(|(t, part, _)| *part == p.partition && *t == p.topic)
            {
                Some(e) => e.2 = p.offset,
                None => last.push((p.topic, p.partition, p.offset)),
            }
        }
        for (t, part, offset) in last.drain(..) {
            // Fails only for a partition revoked meanwhile: its next owner re-processes it.
            if let Err(e) = consumer.store_offset(&t, part, offset) {
                debug!(topic = &*t, partition = part, offset, error = %e, "Offset not stored.");
            }
        }
        metrics.records_acknowledged.inc_by(n as u64);
        metrics.records_in_flight.sub(n);
    }
    Ok(())
}
