//! The streaming service (`driftwatch run`): the wiring of Kafka in ([`crate::ingest::kafka`]),
//! decode and the engine, and Kafka out ([`crate::emit::kafka`]), at-least-once, and the loop
//! that drives them.
//!
//! One task consumes the input topics in a consumer group and gathers the records already waiting
//! into a batch ([`crate::ingest::batch`]). A partial batch (the task keeps up) is decoded there
//! and then; a full one (a backlog) goes to a pool of decode workers, and batches come back in
//! the order received. The task runs the engine on each decoded batch (where the rebalance
//! callbacks also run), then hands each record's outgoing messages (alerts, commands, dead
//! letters) to the idempotent producer and its position to the acknowledger over a bounded
//! channel; the acknowledger stores the offset once everything the record caused is
//! acknowledged.
//!
//! Every `commit_interval`, and at shutdown, the loop reaches a *commit point*: it waits until
//! every record handed on is acknowledged, writes the snapshots of the identities those records
//! changed to the state topic ([`crate::state::changelog`]) and awaits them, then commits the
//! input offsets. An identity's baseline lives with the partition that delivers its events: a
//! newly assigned partition restores its identities from the state topic (or, with none saved,
//! rebuilds them from input history, [`crate::ingest::partitions`]); a revoked one saves them
//! first. So partitions move between instances, and instances restart, without losing
//! detections, double-counting, or re-reading history.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use prometheus::Registry;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::service::Keying;
use crate::config::{ConfigError, Problem, Rules, RunConfig};
use crate::decide::Decision;
use crate::decode::Decoded;
use crate::emit::kafka::{
    self as out, Ack, Outgoing, OutputProducer, Pending, SourcePosition, Topics,
};
use crate::emit::{AlertFormat, EmitError, dead_letter};
use crate::engine::Engine;
use crate::event::RawRef;
use crate::ingest::batch::{Batch, DecodePool, DecodedRecord, RecordSource};
use crate::ingest::kafka::{
    self as input, Assigned, AssignedView, InputConsumer, PartitionState, Partitions,
};
use crate::ingest::partitions::{EventClocks, RebuildPolicy};
use crate::state::changelog::{Changelog, ChangelogError, InMemory};
use crate::telemetry::{EngineCollector, Metrics, RateLimit, now_ms};

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot subscribe to {topics}: {source}")]
    Subscribe { topics: String, source: KafkaError },
    #[error(transparent)]
    Emit(#[from] EmitError),
    #[error(transparent)]
    StateTopic(#[from] ChangelogError),
    #[error(transparent)]
    Identities(#[from] crate::ingest::identities::FeedError),
    #[error(transparent)]
    Repartition(#[from] crate::ingest::repartition::RepartitionError),
    #[error(
        "shutdown did not finish within the {grace:?} grace period ({pending} records still awaiting \
         acknowledgement); their offsets were not committed and they will be processed again"
    )]
    ShutdownTimeout { grace: Duration, pending: u64 },
}

/// Totals printed when the service stops (as text, or as JSON with `--log-format json`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    pub consumed: u64,
    pub rebuilt: u64,
    /// Events of `:unkeyed` inputs re-keyed through the repartition topic (and counted again in
    /// `consumed` and `events` when read back from it).
    pub repartitioned: u64,
    pub events: u64,
    pub rejected: u64,
    pub alerts: u64,
    pub commands: u64,
    /// Governance commands of the dormancy lifecycle.
    pub governance: u64,
    pub dead_lettered: u64,
    pub identities: usize,
    #[serde(
        rename = "elapsed_seconds",
        serialize_with = "crate::telemetry::serialize_seconds"
    )]
    pub elapsed: Duration,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "driftwatch run: {} records consumed ({} replayed to rebuild baselines), {} events re-keyed through the repartition topic, {} events, {} alerts, {} commands, {} governance commands, {} dead letters, {} identities tracked, in {:.1}s",
            self.consumed,
            self.rebuilt,
            self.repartitioned,
            self.events,
            self.alerts,
            self.commands,
            self.governance,
            self.dead_lettered,
            self.identities,
            self.elapsed.as_secs_f64()
        )
    }
}

/// The consumer, the producer, and the state topic's handler (`None` with `--state-topic off`).
type Clients = (Arc<InputConsumer>, OutputProducer, Option<Arc<Changelog>>);

/// The streaming service.
pub struct Service {
    cfg: RunConfig,
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    /// Undecodable records: a broken producer can send nothing else.
    bad_records: RateLimit,
    /// Logs of records not keyed by principal key.
    misroute_log: RateLimit,
    /// Each stateful partition's event time: the dormancy lifecycle's watermark.
    clocks: std::sync::Mutex<EventClocks>,
    /// The event-time hour least privilege was last judged at, and the uid of each identity's
    /// last `excess_privilege` finding (raised again only when it changes).
    excess: std::sync::Mutex<(i64, std::collections::HashMap<String, String>)>,
}

impl Service {
    /// Creates the service and registers its metrics (and its engine's) on `registry`.
    ///
    /// # Errors
    /// The registry already holds driftwatch's metrics.
    pub fn new(cfg: RunConfig, rules: Rules, registry: &Registry) -> prometheus::Result<Service> {
        let engine = Arc::new(Engine::new(rules));
        let metrics = Metrics::register(registry)?;
        metrics
            .identities_declared
            .set(engine.rules().inventory.len() as i64);
        registry.register(Box::new(EngineCollector::new(engine.clone())))?;
        Ok(Service {
            cfg,
            engine,
            metrics,
            bad_records: RateLimit::new(10_000),
            misroute_log: RateLimit::new(60_000),
            clocks: std::sync::Mutex::default(),
            excess: std::sync::Mutex::new((i64::MIN, std::collections::HashMap::new())),
        })
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The engine (for inspection while the service runs).
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Creates the clients and the state topic's handler, reporting librdkafka's rejection of
    /// a pass-through property as a configuration problem.
    fn clients(&self) -> Result<Clients, ConfigError> {
        let problem = |what: &str, e: KafkaError| ConfigError {
            file: "driftwatch run".into(),
            problems: vec![Problem {
                key: "--kafka-property".into(),
                why: format!("librdkafka rejected the {what} configuration: {e}"),
            }],
        };
        let producer =
            out::producer(&self.cfg, &self.metrics).map_err(|e| problem("producer", e))?;
        let changelog = self.cfg.state_topic.clone().map(|topic| {
            Arc::new(Changelog::new(
                &self.cfg,
                topic,
                self.engine.clone(),
                producer.clone(),
                self.metrics.clone(),
            ))
        });
        let state: Box<dyn PartitionState> = match &changelog {
            Some(c) => Box::new(c.clone()),
            None => Box::new(InMemory {
                engine: self.engine.clone(),
            }),
        };
        let stateless = (self.cfg.inputs.iter())
            .filter(|i| !i.keying.is_stateful())
            .map(|i| i.topic.clone())
            .collect();
        let partitions = Partitions::new(
            RebuildPolicy {
                horizon: self.cfg.rebuild,
            },
            self.metrics.clone(),
            state,
            stateless,
        );
        let consumer = input::consumer(&self.cfg, partitions, &self.metrics)
            .map_err(|e| problem("consumer", e))?;
        Ok((Arc::new(consumer), producer, changelog))
    }

    /// Runs until `shutdown` resolves, then drains, flushes and commits within the grace period.
    ///
    /// # Errors
    /// [`ServiceError`]: bad client configuration, a failed subscription, an undeliverable
    /// output, or a shutdown that overran its grace period. In every case, no input offset is
    /// committed past a record whose outputs were not acknowledged.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<RunSummary, ServiceError> {
        let started = Instant::now();
        let (consumer, producer, changelog) = self.clients()?;
        let topics: Vec<&str> = self.cfg.inputs.iter().map(|i| i.topic.as_str()).collect();
        // The inventory first: the first events are judged with what it declares.
        let _identities = match self.cfg.identities_topic.clone() {
            Some(topic) => {
                let (cfg, inventory) = (self.cfg.clone(), self.engine.rules().inventory.clone());
                let (producer, metrics) = (producer.clone(), self.metrics.clone());
                let runtime = tokio::runtime::Handle::current();
                let feed = tokio::task::spawn_blocking(move || {
                    crate::ingest::identities::follow(
                        &cfg, &topic, inventory, producer, &metrics, runtime,
                    )
                })
                .await
                .expect("the identities reader's start does not panic")?;
                Some(feed)
            }
            None => None,
        };
        // Unkeyed inputs' events are re-keyed onto the repartition topic, which the state topic
        // must then cover too.
        if self.cfg.inputs.iter().any(|i| i.keying == Keying::Unkeyed) {
            crate::ingest::repartition::ensure_topic(&self.cfg).await?;
        }
        let _group_watch = match &changelog {
            Some(c) => {
                c.ensure_topic(&topics).await?;
                Some(c.watch_group()?)
            }
            None => None,
        };
        consumer
            .subscribe(&topics)
            .map_err(|source| ServiceError::Subscribe {
                topics: topics.join(", "),
                source,
            })?;
        info!(config = %self.cfg.redacted(), "driftwatch run started.");
        let out_topics = Arc::new(Topics::new(&self.cfg));
        let (tx, rx) = mpsc::channel::<Ack>(self.cfg.max_in_flight);
        let acker = {
            let consumer = consumer.clone();
            tokio::spawn(out::acknowledge(
                rx,
                producer.clone(),
                out_topics.clone(),
                self.metrics.clone(),
                move |topic, partition, offset| {
                    // Fails only for a partition revoked meanwhile: its next owner re-processes it.
                    if let Err(e) = consumer.store_offset(topic, partition, offset) {
                        debug!(topic, partition, offset, error = %e, "Offset not stored.");
                    }
                },
            ))
        };

        let stopped = self
            .consume(
                &consumer,
                &producer,
                &out_topics,
                changelog.as_deref(),
                tx,
                shutdown,
            )
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
            Ok(Ok(r)) => r.map_err(ServiceError::from),
        };
        let result = stopped.and(result);
        // The last commit point: everything is acknowledged, so save the state, then commit.
        let result = match (result, &changelog) {
            (Ok(()), Some(c)) => {
                let known = consumer.context().hooks.known();
                match tokio::time::timeout_at(deadline.into(), c.save_changed(&known)).await {
                    Ok(saved) => saved.map(|_| ()).map_err(ServiceError::from),
                    Err(_) => Err(ServiceError::ShutdownTimeout { grace, pending: 0 }),
                }
            }
            (r, _) => r,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = producer.flush(remaining.max(Duration::from_millis(100))) {
            warn!(error = %e, "Flushing the producer at shutdown failed.");
        }
        if result.is_ok() {
            input::commit(
                &*consumer,
                "Final offset commit failed; records since the last commit will be processed again.",
            );
            self.metrics.commits.inc();
        }
        consumer.unsubscribe();
        let m = &self.metrics;
        let summary = RunSummary {
            consumed: Metrics::total(&m.records_consumed),
            rebuilt: Metrics::total(&m.records_replayed),
            repartitioned: Metrics::total(&m.events_repartitioned),
            events: Metrics::total(&m.events_decoded),
            rejected: Metrics::total(&m.records_rejected),
            alerts: Metrics::total(&m.alerts),
            commands: Metrics::total(&m.commands),
            governance: Metrics::total(&m.governance_commands),
            dead_lettered: m.dead_letters.get(),
            identities: self.engine.identities(),
            elapsed: started.elapsed(),
        };
        result.map(|()| summary)
    }

    /// The consumer loop: receive records into batches, decode them (here while keeping up, on
    /// the pool for a backlog), then, in the order received, detect and hand outputs to the
    /// producer and each record to the acknowledger. Returns when `shutdown` resolves or the
    /// acknowledger has failed; records still in the pool then are not processed, and their
    /// offsets not stored.
    async fn consume(
        &self,
        consumer: &InputConsumer,
        producer: &OutputProducer,
        topics: &Topics,
        changelog: Option<&Changelog>,
        tx: mpsc::Sender<Ack>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServiceError> {
        tokio::pin!(shutdown);
        let partitions = &consumer.context().hooks;
        let mut view = AssignedView::default();
        let mut backoff = Duration::from_millis(100);
        let metrics = &self.metrics;
        let pool = DecodePool::per_core();
        // Batches in the pool, oldest first: enough to keep every worker busy while the loop
        // runs the engine on the one before.
        let max_batches = 2 * pool.threads();
        let mut in_pool: VecDeque<oneshot::Receiver<Batch>> = VecDeque::new();
        // The last batch processed, emptied, for the next records received.
        let mut spare: Option<Batch> = None;
        let mut commit_tick = tokio::time::interval(self.cfg.commit_interval);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        commit_tick.reset();
        // When the input last delivered a record (the lifecycle's idle tick counts from here),
        // and the newest event time then, read once per idle stretch.
        let mut last_record = Instant::now();
        let mut idle_newest: Option<Option<i64>> = None;
        // No lifecycle pass before the partitions' event times are known (the first tick).
        self.engine.set_lifecycle_watermark(i64::MIN);
        loop {
            let step = tokio::select! {
                biased;
                () = &mut shutdown => {
                    info!("Shutdown requested: draining in-flight records.");
                    return Ok(());
                }
                _ = commit_tick.tick() => {
                    // The lifecycle's pass runs to the new watermark now, not at the next event:
                    // the end of a burst must not wait for the next one.
                    if let Some(watermark) = self.update_lifecycle_watermark(&view)
                        && let Some(outputs) = self
                            .lifecycle_outputs(self.engine.lifecycle_tick(watermark), producer, topics)
                            .await?
                        && tx.send(outputs).await.is_err()
                    {
                        return Ok(());
                    }
                    if let Some(outputs) = self.least_privilege(producer, topics).await?
                        && tx.send(outputs).await.is_err()
                    {
                        return Ok(());
                    }
                    let idle = last_record.elapsed();
                    if idle > self.cfg.idle_grace
                        && let Some(newest) = *idle_newest.get_or_insert_with(|| self.engine.newest_event_ms())
                        && let Some(outputs) = self.idle_lifecycle(newest, idle, producer, topics).await?
                        && tx.send(outputs).await.is_err()
                    {
                        return Ok(());
                    }
                    // A commit point: outputs acknowledged, then state saved, then offsets.
                    // Records still in the pool have no offsets stored: they are not covered.
                    let (done, acked) = oneshot::channel();
                    if tx.send(Ack::Barrier(done)).await.is_err() {
                        return Ok(());
                    }
                    tokio::select! {
                        biased;
                        () = &mut shutdown => {
                            info!("Shutdown requested at a commit point: draining in-flight records.");
                            return Ok(());
                        }
                        r = acked => if r.is_err() { return Ok(()); },
                    }
                    if let Some(c) = changelog {
                        c.save_changed(&partitions.known()).await?;
                    }
                    // Synchronous, so a later commit can never be overtaken by this one.
                    match consumer.commit_consumer_state(CommitMode::Sync) {
                        Ok(()) => metrics.commits.inc(),
                        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                        Err(e) => {
                            warn!(error = %e, "Committing offsets failed; they are committed at the next commit point.");
                        }
                    }
                    continue;
                }
                decoded = async { in_pool.front_mut().expect("guarded").await }, if !in_pool.is_empty() => {
                    in_pool.pop_front();
                    Step::Decoded(decoded.expect("a decode worker panicked"))
                }
                m = consumer.recv(), if in_pool.len() < max_batches => Step::Received(m),
            };
            let mut batch = match step {
                Step::Received(Err(e)) => {
                    metrics.kafka_errors.with_label_values(&["consumer"]).inc();
                    warn!(error = %e, retry_in = ?backoff, "Consuming failed; retrying.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                Step::Received(Ok(first)) => {
                    backoff = Duration::from_millis(100);
                    last_record = Instant::now();
                    idle_newest = None;
                    let mut batch = spare.take().unwrap_or_default();
                    let mut next = Some(first);
                    // The first record, then whatever else is already waiting, up to a batch.
                    while let Some(m) = next.take() {
                        view.refresh(partitions, &self.cfg.inputs);
                        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
                        match view.get(topic, partition) {
                            Some(part) => batch.push(
                                record_source(part, &m),
                                partition,
                                offset,
                                m.key(),
                                m.payload().unwrap_or(&[]),
                                view.generation(),
                            ),
                            None => skip_unassigned(topic, partition, offset),
                        }
                        if batch.is_full() {
                            break;
                        }
                        // An error is left for the next receive to report.
                        next = consumer.recv().now_or_never().and_then(Result::ok);
                    }
                    if batch.is_empty() {
                        continue;
                    }
                    if batch.is_full() || !in_pool.is_empty() {
                        // A backlog: the pool's workers decode it while the loop goes on.
                        in_pool.push_back(pool.submit(batch));
                        continue;
                    }
                    // Keeping up (every waiting record is in the batch): decoding here, now,
                    // costs less latency than a hand-over to another thread.
                    batch.decode();
                    batch
                }
                Step::Decoded(b) => b,
            };
            let decoded_by = batch.decoded_by();
            let mut spent = Vec::new();
            for mut record in batch.drain() {
                let processed = self
                    .process_record(&record, &mut view, partitions, producer, topics)
                    .await;
                if decoded_by.is_some() {
                    record.take_events(&mut spent);
                }
                let Some(pending) = processed? else {
                    continue;
                };
                // Waits while `max_in_flight` records await acknowledgement (brokers slow or
                // down), but not past a shutdown request: this record's offset is then simply
                // not stored.
                metrics.records_in_flight.inc();
                // Handed on at once when there is room, even with a shutdown pending: a record
                // processed is then drained and committed like the ones before it.
                let pending = match tx.try_send(pending) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        metrics.records_in_flight.dec();
                        return Ok(());
                    }
                    Err(mpsc::error::TrySendError::Full(p)) => p,
                };
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
            pool.free(decoded_by, spent);
            spare = batch.emptied();
        }
    }

    /// Detect for one decoded record, in the order received, and hand its outputs to the
    /// producer; returns what the acknowledger must wait for, or `None` when the record has
    /// nothing to acknowledge (its partition was revoked or assigned again since it was
    /// received, or it only rebuilds baselines).
    async fn process_record(
        &self,
        record: &DecodedRecord<'_>,
        view: &mut AssignedView,
        partitions: &Partitions,
        producer: &OutputProducer,
        topics: &Topics,
    ) -> Result<Option<Ack>, ServiceError> {
        let rec = &record.rec;
        let (topic, partition, offset) = (&*rec.source.topic, rec.partition, rec.offset);
        let generation = view.generation();
        view.refresh(partitions, &self.cfg.inputs);
        if view.generation() != generation {
            // Identities declared but never seen belong to no partition: the owner of the first
            // input's partition 0 issues their lifecycle steps, one instance for the group.
            let first = &self.cfg.inputs[0].topic;
            self.engine
                .set_declared_lifecycle(view.get(first, 0).is_some());
        }
        let Some(part) = view.owning(topic, partition, rec.generation) else {
            skip_unassigned(topic, partition, offset);
            return Ok(None);
        };
        part.consumed.inc();
        let live = part.info.is_live(offset);
        if !live {
            part.replayed.inc();
        }
        let at = SourcePosition {
            topic,
            partition,
            offset,
            key: record.key,
        };
        let mut outgoing = Vec::new();
        if part.keying == Keying::Unkeyed {
            self.repartition(record, part, at, &mut outgoing);
        } else {
            self.detect(record, part, live, at, &mut outgoing);
        }
        if part.info.rebuild_ends_at(offset) {
            partitions.rebuilt(topic, partition);
        }
        if !live {
            return Ok(None);
        }
        let deliveries = enqueue_all(producer, topics, outgoing).await?;
        self.metrics
            .processing_seconds
            .observe(rec.received.elapsed().as_secs_f64());
        Ok(Some(Ack::Record(Pending {
            topic: part.topic.clone(),
            partition,
            offset,
            received: rec.received,
            deliveries,
        })))
    }

    /// A decision as the message it is sent as, counted in the alerts', commands' or
    /// governance commands' metric.
    fn outgoing_of(&self, d: &Decision, now: i64) -> Outgoing {
        let m = &self.metrics;
        match d {
            Decision::Alert(a) => {
                m.alerts
                    .with_label_values(&[a.cause.as_str(), a.severity.name(), a.activity.as_str()])
                    .inc();
            }
            Decision::Command(c) => {
                let counter = if c.lifecycle.is_some() {
                    &m.governance_commands
                } else {
                    &m.commands
                };
                counter
                    .with_label_values(&[c.action, c.mode.as_str()])
                    .inc();
            }
        }
        out::decision(d, &self.cfg.source, now, self.cfg.alert_format)
    }

    /// Sets the engine's lifecycle watermark to the slowest active stateful partition's event
    /// time ([`EventClocks`]), or lifts it when none is active.
    /// Returns the watermark when some partition is active.
    fn update_lifecycle_watermark(&self, view: &AssignedView) -> Option<i64> {
        let mut clocks = self.clocks.lock().unwrap_or_else(|e| e.into_inner());
        clocks.retain(|t, p| view.get(t, p).is_some());
        let w = clocks.watermark(Instant::now(), self.cfg.idle_grace);
        self.engine.set_lifecycle_watermark(w.unwrap_or(i64::MAX));
        w
    }

    /// Governance commands of a lifecycle pass run outside any record, produced and handed to
    /// the acknowledger as outputs of no record; `None` when there are none.
    async fn lifecycle_outputs(
        &self,
        decisions: Vec<Decision>,
        producer: &OutputProducer,
        topics: &Topics,
    ) -> Result<Option<Ack>, ServiceError> {
        let now = now_ms();
        let outgoing = decisions.iter().map(|d| self.outgoing_of(d, now)).collect();
        outputs_of_no_record(producer, topics, outgoing).await
    }

    /// Once an hour of event time, at a commit point: an `excess_privilege` finding (OCSF, Low)
    /// for each of this instance's identities whose inventory grants include at least
    /// `--least-privilege-min-unused` that its observed use says are unused, judged as
    /// `report least-privilege` judges them (90 days, confidence 0.95, periods learned per
    /// action, `--least-privilege-prior-period-days` where none is) at the partitions'
    /// watermark; raised again only when the set of unused grants changes (after a restart,
    /// once more, with the same uid). Handed to the acknowledger as outputs of no record. Only with
    /// OCSF alerts: the finding has no ECS form.
    async fn least_privilege(
        &self,
        producer: &OutputProducer,
        topics: &Topics,
    ) -> Result<Option<Ack>, ServiceError> {
        use crate::tools::report;
        let min = self.cfg.least_privilege_min_unused;
        let inventory = &self.engine.rules().inventory;
        if min == 0 || inventory.is_empty() || self.cfg.alert_format != AlertFormat::Ocsf {
            return Ok(None);
        }
        // Judged at the partitions' watermark: an identity whose partition is read behind the
        // others must not look silent. None before the partitions' event times are known.
        let watermark = self.engine.lifecycle_watermark();
        let Some(now) = (self.engine.newest_event_ms())
            .filter(|_| watermark != i64::MIN)
            .map(|n| n.min(watermark))
        else {
            return Ok(None);
        };
        let outgoing = {
            let mut excess = self.excess.lock().unwrap_or_else(|e| e.into_inner());
            let hour = now.div_euclid(crate::baseline::HOUR_MS);
            if hour <= excess.0 {
                return Ok(None);
            }
            excess.0 = hour;
            // The declared identities with grants that live here: the inventory is the smaller
            // set to walk.
            let keys: Vec<String> = (inventory.entries().into_iter())
                .filter(|(k, m)| !m.granted.is_empty() && self.engine.has_identity(k))
                .map(|(k, _)| k)
                .collect();
            // Identities no longer here (their partition moved) are judged by their new owner.
            let here: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
            excess.1.retain(|k, _| here.contains(k.as_str()));
            let rule = report::GrantRule {
                prior_period_days: self.cfg.least_privilege_prior_period_days,
                ..report::GrantRule::default()
            };
            let mut outgoing = Vec::new();
            for key in keys {
                let finding = report::least_privilege_at(
                    &self.engine,
                    &key,
                    90.0,
                    inventory,
                    rule,
                    Some(now),
                )
                .and_then(|r| report::excess_finding(&r, now, min));
                let Some(v) = finding else {
                    excess.1.remove(&key);
                    continue;
                };
                let uid = v["metadata"]["uid"].as_str().unwrap_or_default();
                if excess.1.get(&key).map(String::as_str) == Some(uid) {
                    continue;
                }
                excess.1.insert(key.clone(), uid.to_owned());
                self.metrics
                    .alerts
                    .with_label_values(&["excess_privilege", "Low", "create"])
                    .inc();
                outgoing.push(out::finding(&v, &key, &self.cfg.source));
            }
            outgoing
        };
        if !outgoing.is_empty() {
            info!(
                findings = outgoing.len(),
                "Identities granted more than they use: excess_privilege findings raised."
            );
        }
        outputs_of_no_record(producer, topics, outgoing).await
    }

    /// The dormancy lifecycle's pass while the input has been idle for `idle` (wall clock), past
    /// `--idle-grace-seconds` (time for late deliveries: CloudTrail's are minutes behind):
    /// without events, event time would stand still and no identity's silence would ever cross
    /// its horizon, so it is taken to have moved on with the wall clock from the `newest` event
    /// by the idle time beyond the grace, and the engine's hourly pass runs on that. Its
    /// governance commands are produced and handed to the acknowledger as outputs of no record.
    async fn idle_lifecycle(
        &self,
        newest: i64,
        idle: Duration,
        producer: &OutputProducer,
        topics: &Topics,
    ) -> Result<Option<Ack>, ServiceError> {
        let beyond = idle.saturating_sub(self.cfg.idle_grace);
        let watermark = newest.saturating_add(beyond.as_millis() as i64);
        let outputs = self
            .lifecycle_outputs(self.engine.lifecycle_tick(watermark), producer, topics)
            .await?;
        if let Some(Ack::Outputs(d)) = &outputs {
            info!(
                commands = d.len(),
                idle_seconds = idle.as_secs(),
                "The input is idle: the dormancy lifecycle ran on event time extrapolated from the newest event."
            );
        }
        Ok(outputs)
    }

    /// Counts a record that holds events of an identity other than its key names, or has no
    /// key: upstream did not key it by principal key, so with more than one instance the
    /// identity's events may be split between instances. Logged at a rate limit, without the
    /// key (raw record bytes, never validated) or the principals.
    fn check_routing(&self, record: &DecodedRecord<'_>, part: &Assigned, at: SourcePosition<'_>) {
        let mut principals = record.elements.iter().filter_map(|(r, _, _)| match r {
            Ok(Decoded::Event(ev)) => Some(ev.principal.as_bytes()),
            _ => None,
        });
        // A record without events routes nothing.
        let Some(first) = principals.next() else {
            return;
        };
        let reason = match record.key {
            None => Some("unkeyed"),
            Some(key) if first != key || principals.any(|p| p != key) => Some("key_mismatch"),
            Some(_) => None,
        };
        self.metrics
            .misrouting
            .record(reason.is_some(), self.engine.remote_identities() > 0);
        if let Some(reason) = reason {
            self.metrics
                .records_misrouted
                .with_label_values(&[&part.topic, reason])
                .inc();
            if let Some(suppressed) = self.misroute_log.check(now_ms()) {
                warn!(
                    topic = at.topic,
                    partition = at.partition,
                    offset = at.offset,
                    reason,
                    suppressed,
                    "An input record is not keyed by its identity's principal key: with more than one instance, its identity's events may be split between instances. Key records by principal key upstream, or declare the input `:unkeyed` so driftwatch re-keys it."
                );
            }
        }
    }

    /// The stateless stage for one record of an `:unkeyed` input: each of its events re-keyed
    /// by principal key onto the repartition topic (the stateful stage reads it there), each
    /// undecodable element dead-lettered, as [`Service::detect`] would.
    fn repartition(
        &self,
        record: &DecodedRecord<'_>,
        part: &Assigned,
        at: SourcePosition<'_>,
        outgoing: &mut Vec<Outgoing>,
    ) {
        let m = &self.metrics;
        let cluster = part.cluster.as_deref();
        let mut events = 0;
        for (result, r, element) in &record.elements {
            match result {
                Ok(Decoded::Event(ev)) => {
                    events += 1;
                    outgoing.push(crate::ingest::repartition::message(
                        ev, element, cluster, at,
                    ));
                }
                Ok(Decoded::Skipped(_)) => part.skipped.inc(),
                Err(e) => outgoing.push(self.dead_letter(record, part, e, r, element, at)),
            }
        }
        m.events_repartitioned
            .with_label_values(&[&part.topic])
            .inc_by(events);
    }

    /// Sends an undecodable record, or the one bad element of a container, to the dead-letter
    /// topic, counted and logged at a rate limit.
    fn dead_letter(
        &self,
        record: &DecodedRecord<'_>,
        part: &Assigned,
        e: &crate::decode::DecodeError,
        r: &RawRef,
        element: &[u8],
        at: SourcePosition<'_>,
    ) -> Outgoing {
        self.metrics
            .records_rejected
            .with_label_values(&[&part.topic, part.format.as_str(), e.code()])
            .inc();
        if let Some(suppressed) = self.bad_records.check(now_ms()) {
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
        let bytes = if r.element.is_some() {
            element
        } else {
            record.payload
        };
        dead_letter::message(bytes, e, at, r.element)
    }

    /// Detect for one decoded record (pure apart from engine state): fills `outgoing` with the
    /// alerts, commands and dead letters it leads to when `live`.
    fn detect(
        &self,
        record: &DecodedRecord<'_>,
        part: &Assigned,
        live: bool,
        at: SourcePosition<'_>,
        outgoing: &mut Vec<Outgoing>,
    ) {
        let m = &self.metrics;
        let now = now_ms();
        self.check_routing(record, part, at);
        let mut newest = None;
        for (result, r, element) in &record.elements {
            match result {
                Ok(Decoded::Event(ev)) => {
                    part.decoded.inc();
                    newest = newest.max(Some(ev.time_ms));
                    // None: the identity's restored state already includes this record.
                    let Some(mut decisions) =
                        self.engine.process_at(ev, part.info.owner, Some(at.offset))
                    else {
                        continue;
                    };
                    if live {
                        m.event_lag_seconds
                            .observe(now.saturating_sub(ev.time_ms).max(0) as f64 / 1000.0);
                    } else {
                        // Replayed to rebuild baselines: its own outputs went out when it was
                        // first processed. A governance step the lifecycle's pass found due now
                        // may be about any identity here, and goes out (a repeat is the same
                        // operation, under the same idempotency key).
                        decisions.retain(Decision::is_governance);
                    }
                    outgoing.extend(decisions.iter().map(|d| self.outgoing_of(d, now)));
                }
                Ok(Decoded::Skipped(_)) => part.skipped.inc(),
                Err(e) => {
                    if !live {
                        // Dead-lettered when it was first processed.
                        continue;
                    }
                    outgoing.push(self.dead_letter(record, part, e, r, element, at));
                }
            }
        }
        if let Some(ms) = newest {
            let mut clocks = self.clocks.lock().unwrap_or_else(|e| e.into_inner());
            clocks.observe(&part.topic, at.partition, ms, record.rec.received);
        }
    }
}

/// Hands every message to the producer, in order, with its delivery to await.
async fn enqueue_all(
    producer: &OutputProducer,
    topics: &Topics,
    outgoing: Vec<Outgoing>,
) -> Result<Vec<(rdkafka::producer::DeliveryFuture, Outgoing)>, ServiceError> {
    let mut deliveries = Vec::with_capacity(outgoing.len());
    for o in outgoing {
        let topic = topics.of(o.route);
        let f = out::enqueue(producer, topic, &o)
            .await
            .map_err(|source| EmitError::Delivery {
                topic: topic.to_owned(),
                attempts: 1,
                source,
            })?;
        deliveries.push((f, o));
    }
    Ok(deliveries)
}

/// Hands messages caused by no input record (a lifecycle pass, least-privilege findings) to
/// the producer, for the acknowledger to await before the next commit point; `None` when there
/// are none.
async fn outputs_of_no_record(
    producer: &OutputProducer,
    topics: &Topics,
    outgoing: Vec<Outgoing>,
) -> Result<Option<Ack>, ServiceError> {
    if outgoing.is_empty() {
        return Ok(None);
    }
    Ok(Some(Ack::Outputs(
        enqueue_all(producer, topics, outgoing).await?,
    )))
}

/// How a received record of `part` is read: as its input declares, or for the repartition
/// topic, as the record's headers say.
fn record_source(part: &Assigned, m: &rdkafka::message::BorrowedMessage<'_>) -> RecordSource {
    match part.keying {
        Keying::Keyed => RecordSource::input(part.topic.clone(), part.format, part.cluster.clone()),
        Keying::Unkeyed => RecordSource {
            keep_elements: true,
            ..RecordSource::input(part.topic.clone(), part.format, part.cluster.clone())
        },
        Keying::Repartitioned => {
            use rdkafka::Message as _;
            crate::ingest::repartition::source_of(&part.topic, m.headers())
        }
    }
}

/// A record of a partition revoked (or assigned again) since it was fetched: its next owner, or
/// this instance's new assignment of it, processes it.
fn skip_unassigned(topic: &str, partition: i32, offset: i64) {
    debug!(
        topic,
        partition, offset, "Skipping a record of a partition no longer assigned."
    );
}

/// What the consumer loop does next.
enum Step<M> {
    Received(M),
    Decoded(Batch),
}
