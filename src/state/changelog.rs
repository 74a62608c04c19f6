//! The service's state in Kafka, the way Kafka Streams keeps it: a compacted changelog topic of
//! identity snapshots, keyed by principal key and co-partitioned with the input (an identity's
//! snapshot goes to the changelog partition with the number of the input partition that owns
//! it).
//!
//! - **Save.** At every commit point, once every record handed to the producer has had its
//!   outputs acknowledged, the snapshots of the identities changed since the last commit point
//!   (and tombstones for identities forgotten after long silence) are written, and only then are
//!   the input offsets committed. Each snapshot carries the last input offset applied to the
//!   identity per partition. On revocation the same happens for the revoked partitions before
//!   their offsets are committed.
//! - **Restore.** When a partition is assigned, its changelog partition is read to its end first
//!   and the latest snapshot of every identity is restored (the instance is not ready meanwhile);
//!   consumption then starts at the committed offset, and a record at or below an identity's
//!   applied offset is not learned again. A crash between the snapshots and the commit therefore
//!   neither loses nor double-counts: the records after the commit are re-read, those the
//!   snapshots include are skipped (their outputs were acknowledged before the snapshots were
//!   written), the others are processed and their outputs sent again (same ids).
//! - **Fallback.** A partition whose changelog partition is empty (first start, or the topic was
//!   deleted) rebuilds its baselines from `--rebuild-days` of input history instead.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rdkafka::Message;
use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{DeliveryFuture, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::group::{self, GroupRecord, GroupView, ParsedKey};
use super::snapshot::{
    AppliedOffset, Codec, LIFECYCLE_KEY, SnapshotError, contribution_key, parse_contribution_key,
};
use crate::config::RunConfig;
use crate::config::service::ClientKind;
use crate::emit::EmitError;
use crate::emit::kafka::OutputProducer;
use crate::engine::Engine;
use crate::ingest::kafka::{Owned, PartitionState};
use crate::kafka::{KafkaContext, Role, admin_and_partitions, client_config};
use crate::telemetry::Metrics;

/// How long a restore may take before the partition falls back to rebuilding from history.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long a restore waits for more after reaching the end of a partition.
const END_QUIET: Duration = Duration::from_millis(150);
/// How long saving on revocation may block the rebalance.
const SAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the changelog topic cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    #[error("cannot reach the brokers to check the state topic `{topic}`: {source}")]
    Kafka { topic: String, source: KafkaError },
    #[error(
        "state topic `{topic}` has {has} partitions but input topic `{input}` has {needs}: \
         snapshots must be co-partitioned with the input; delete the state topic (baselines then \
         rebuild from history once) or name another with --state-topic"
    )]
    TooFewPartitions {
        topic: String,
        has: i32,
        input: String,
        needs: i32,
    },
    #[error(
        "state topic `{topic}` has cleanup.policy={policy}: retention would delete the snapshots \
         of quiet identities; set cleanup.policy=compact on it"
    )]
    NotCompacted { topic: String, policy: String },
    #[error("input topic `{0}` does not exist")]
    NoInput(String),
}

/// A message for the changelog (or, with `fleet`, for the fleet topic's one partition): a
/// snapshot, or a tombstone (`None`).
struct Snapshot {
    partition: i32,
    key: String,
    value: Option<Vec<u8>>,
    fleet: bool,
}

/// The changelog of one consumer group's state, and the engine it restores into.
pub struct Changelog {
    topic: String,
    /// The group's fleet topic ([`crate::state::group`]).
    fleet_topic: String,
    group_view: Arc<GroupView>,
    /// Offset of the next fleet-topic record the watcher will apply.
    fleet_next: AtomicI64,
    watching: AtomicBool,
    stop_watch: AtomicBool,
    brokers: String,
    group: String,
    properties: Vec<(String, String)>,
    engine: Arc<Engine>,
    producer: OutputProducer,
    metrics: Arc<Metrics>,
    /// The first input topic: the owner of its partition 0 issues the declared-and-never-used
    /// identities' lifecycle steps, and keeps the lifecycle's state in changelog partition 0.
    lifecycle_topic: String,
    /// The lifecycle state last written or restored, so an unchanged one is not written again.
    lifecycle_saved: std::sync::Mutex<Vec<u8>>,
}

impl Changelog {
    pub fn new(
        cfg: &RunConfig,
        topic: String,
        engine: Arc<Engine>,
        producer: OutputProducer,
        metrics: Arc<Metrics>,
    ) -> Changelog {
        engine.track_forgotten(true);
        engine.fleet().track_contributions(true);
        Changelog {
            fleet_topic: format!("{topic}.fleet"),
            group_view: Arc::new(GroupView::new(engine.clone())),
            fleet_next: AtomicI64::new(0),
            watching: AtomicBool::new(false),
            stop_watch: AtomicBool::new(false),
            topic,
            brokers: cfg.brokers.clone(),
            group: cfg.group_id.clone(),
            properties: cfg
                .kafka_properties_for(ClientKind::Consumer)
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            engine,
            producer,
            metrics,
            lifecycle_topic: cfg.inputs[0].topic.clone(),
            lifecycle_saved: std::sync::Mutex::default(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn fleet_topic(&self) -> &str {
        &self.fleet_topic
    }

    /// Creates the changelog topic if it is missing (compacted, as many partitions as the
    /// largest input topic), and checks it if present.
    ///
    /// # Errors
    /// [`ChangelogError`]: brokers unreachable, an input topic missing, or a state topic with too
    /// few partitions or a deleting cleanup policy.
    pub async fn ensure_topic(&self, inputs: &[&str]) -> Result<(), ChangelogError> {
        let err = |source| ChangelogError::Kafka {
            topic: self.topic.clone(),
            source,
        };
        let (admin, counts) = admin_and_partitions(&self.brokers).map_err(err)?;
        let count = |name: &str| counts.get(name).copied();
        let mut needs = (String::new(), 0);
        for input in inputs {
            let n = count(input).ok_or_else(|| ChangelogError::NoInput((*input).to_owned()))?;
            if n > needs.1 {
                needs = ((*input).to_owned(), n);
            }
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        match count(&self.topic) {
            Some(has) if has < needs.1 => {
                return Err(ChangelogError::TooFewPartitions {
                    topic: self.topic.clone(),
                    has,
                    input: needs.0,
                    needs: needs.1,
                });
            }
            Some(_) => {
                // A broker that does not answer (librdkafka's mock cluster) costs seconds, not
                // the default minute: the check only warns then.
                let quick = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
                let described = admin
                    .describe_configs([&ResourceSpecifier::Topic(&self.topic)], &quick)
                    .await;
                let policy = described.ok().and_then(|r| {
                    r.into_iter()
                        .next()?
                        .ok()?
                        .get("cleanup.policy")?
                        .value
                        .clone()
                });
                match policy {
                    Some(p) if !p.contains("compact") => {
                        return Err(ChangelogError::NotCompacted {
                            topic: self.topic.clone(),
                            policy: p,
                        });
                    }
                    Some(_) => {}
                    None => {
                        warn!(topic = %self.topic, "Could not read the state topic's cleanup.policy; it should be compact.")
                    }
                }
            }
            None => {
                let new = NewTopic::new(&self.topic, needs.1.max(1), TopicReplication::Fixed(-1))
                    .set("cleanup.policy", "compact");
                for r in admin.create_topics([&new], &opts).await.map_err(err)? {
                    match r {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((_, code)) => return Err(err(KafkaError::AdminOp(code))),
                    }
                }
                info!(topic = %self.topic, partitions = needs.1, "Created the compacted state topic.");
            }
        }
        if count(&self.fleet_topic).is_none() {
            let new = NewTopic::new(&self.fleet_topic, 1, TopicReplication::Fixed(-1))
                .set("cleanup.policy", "compact");
            for r in admin.create_topics([&new], &opts).await.map_err(err)? {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => return Err(err(KafkaError::AdminOp(code))),
                }
            }
            info!(topic = %self.fleet_topic, "Created the compacted fleet topic.");
        }
        Ok(())
    }

    /// Snapshots of the changed identities of `owners` (all when `None`) and tombstones for the
    /// forgotten ones, for the changelog partitions of their owners in `known`.
    fn changed(&self, owners: Option<&[u32]>, known: &[Owned]) -> Vec<Snapshot> {
        let codec = Codec::new(self.engine.rules());
        let partition_of = |owner: u32| known.iter().find(|o| o.owner == owner);
        let mut out = Vec::new();
        for (owner, key) in self.engine.take_forgotten_of(owners) {
            if let Some(o) = partition_of(owner) {
                out.push(Snapshot {
                    partition: o.partition,
                    key,
                    value: None,
                    fleet: false,
                });
            }
        }
        for c in self.engine.fleet().drain_contributions(owners) {
            if let Some(o) = partition_of(c.owner) {
                let value = codec.encode_contribution(&c);
                out.push(Snapshot {
                    partition: 0,
                    key: group::contribution_key(&o.topic, o.partition, c.table, c.hash),
                    value: Some(value.clone()),
                    fleet: true,
                });
                out.push(Snapshot {
                    partition: o.partition,
                    key: contribution_key(c.table, c.hash, &o.topic),
                    value: Some(value),
                    fleet: false,
                });
            }
        }
        for ((topic, partition), report) in self.group_view.changed_reports() {
            out.push(Snapshot {
                partition: 0,
                key: group::report_key(&topic, partition),
                value: Some(codec.encode_report(&report)),
                fleet: true,
            });
        }
        // The lifecycle's engine-wide state (its guardrail window, the hour of its last pass,
        // the never-used identities' steps), from the instance that issues those steps, in the
        // changelog partition of that input partition 0, when it changed.
        if self.engine.issues_declared_lifecycle()
            && known
                .iter()
                .any(|o| o.topic == self.lifecycle_topic && o.partition == 0)
        {
            let value = codec.encode_lifecycle(&super::file::engine_lifecycle(&self.engine));
            let mut saved = self
                .lifecycle_saved
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if *saved != value {
                saved.clone_from(&value);
                out.push(Snapshot {
                    partition: 0,
                    key: LIFECYCLE_KEY.to_owned(),
                    value: Some(value),
                    fleet: false,
                });
            }
        }
        self.engine.drain_changed(owners, |key, s| {
            let Some(o) = partition_of(s.owner()) else {
                return;
            };
            let applied: Vec<AppliedOffset> = s
                .applied()
                .iter()
                .filter_map(|(owner, offset)| {
                    partition_of(*owner).map(|p| AppliedOffset {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        offset: *offset,
                    })
                })
                .collect();
            out.push(Snapshot {
                partition: o.partition,
                key: key.to_owned(),
                value: Some(codec.encode_identity(s, &applied)),
                fleet: false,
            });
        });
        out
    }

    /// The changelog record of a snapshot (a tombstone when it has no value).
    fn record<'a>(&'a self, s: &'a Snapshot) -> FutureRecord<'a, str, [u8]> {
        FutureRecord {
            topic: if s.fleet {
                &self.fleet_topic
            } else {
                &self.topic
            },
            partition: Some(s.partition),
            payload: s.value.as_deref(),
            key: Some(s.key.as_str()),
            timestamp: None,
            headers: None,
        }
    }

    /// Hands snapshots to the producer, waiting while its queue is full.
    async fn enqueue(&self, snapshots: Vec<Snapshot>) -> Result<Vec<DeliveryFuture>, EmitError> {
        let mut futures = Vec::with_capacity(snapshots.len());
        for s in snapshots {
            loop {
                match self.producer.send_result(self.record(&s)) {
                    Ok(f) => {
                        self.count(s.value.as_deref());
                        futures.push(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((source, _)) => {
                        return Err(EmitError::Delivery {
                            topic: self.topic.clone(),
                            attempts: 1,
                            source,
                        });
                    }
                }
            }
        }
        Ok(futures)
    }

    fn count(&self, value: Option<&[u8]>) {
        if let Some(v) = value {
            self.metrics.state_snapshots_written.inc();
            self.metrics.state_snapshot_bytes.inc_by(v.len() as u64);
        }
    }

    /// Writes the snapshots of every identity changed since the last call and awaits their
    /// acknowledgement: the step before a commit. `known` maps owner tags to partitions.
    ///
    /// # Errors
    /// [`EmitError::Delivery`] when a snapshot cannot be delivered; the offsets must then not be
    /// committed.
    pub async fn save_changed(&self, known: &[Owned]) -> Result<usize, EmitError> {
        let snapshots = self.changed(None, known);
        let n = snapshots.len();
        for f in self.enqueue(snapshots).await? {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => {
                    return Err(EmitError::Delivery {
                        topic: self.topic.clone(),
                        attempts: 1,
                        source,
                    });
                }
                Err(_) => {
                    return Err(EmitError::Delivery {
                        topic: self.topic.clone(),
                        attempts: 1,
                        source: KafkaError::Canceled,
                    });
                }
            }
        }
        Ok(n)
    }

    /// Restores the lifecycle state the previous owner of the first input's partition 0 saved:
    /// its never-used identities' steps (not issued again) and its pass's hour; its guardrail
    /// window joins this instance's, so the budget of the last day counts both.
    fn restore_lifecycle(&self, codec: &Codec, bytes: &[u8]) {
        let saved = match codec.decode_lifecycle(bytes) {
            Ok(l) => l,
            Err(e) => {
                warn!(topic = %self.topic, error = %e, "Skipping the lifecycle state that cannot be read; never-used identities' steps may be issued again (the same commands).");
                return;
            }
        };
        let mut merged = super::file::engine_lifecycle(&self.engine);
        merged.lifecycle_hour = merged.lifecycle_hour.max(saved.lifecycle_hour);
        merged
            .lifecycle_issued
            .extend(saved.lifecycle_issued.iter().cloned());
        let mut issued: Vec<(i64, String)> = merged.lifecycle_issued.into_iter().collect();
        issued.sort();
        issued.dedup();
        merged.lifecycle_issued = issued.into();
        for (key, stage) in saved.declared_stages {
            match merged.declared_stages.iter_mut().find(|(k, _)| *k == key) {
                Some((_, s)) => *s = (*s).max(stage),
                None => merged.declared_stages.push((key, stage)),
            }
        }
        merged.declared_stages.sort();
        *self
            .lifecycle_saved
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = codec.encode_lifecycle(&merged);
        super::file::restore_lifecycle(&self.engine, merged);
        info!(topic = %self.topic, "Restored the dormancy lifecycle's state from the state topic.");
    }

    /// Reads changelog partition `partition` to its end and restores the identities in it,
    /// tagged with the owners of `owned` (the newly assigned input partitions of that number).
    /// Identities already in memory are newer and kept. Returns how many were restored, or
    /// `None` when the partition holds nothing.
    fn restore_partition(
        &self,
        partition: i32,
        owned: &[&Owned],
    ) -> Result<Option<usize>, KafkaError> {
        let consumer = reader(
            &self.brokers,
            &format!("{}.restore", self.group),
            self.properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        let codec = Codec::new(self.engine.rules());
        let owner_of = |applied: &[AppliedOffset]| {
            applied
                .iter()
                .find_map(|a| {
                    owned
                        .iter()
                        .find(|o| o.topic == a.topic && o.partition == a.partition)
                })
                .unwrap_or(&owned[0])
                .owner
        };
        let mut restored_here: HashSet<String> = HashSet::new();
        let mut dropped = 0usize;
        let any = read_to_end(&consumer, &self.topic, partition, |m| {
            let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                return;
            };
            if key == LIFECYCLE_KEY {
                if partition == 0
                    && owned.iter().any(|o| o.topic == self.lifecycle_topic)
                    && let Some(bytes) = m.payload()
                {
                    self.restore_lifecycle(&codec, bytes);
                }
                return;
            }
            if let Some((_, _, topic)) = parse_contribution_key(key) {
                let Some(bytes) = m.payload() else {
                    return;
                };
                // The input topic's partition of this number (older keys name none: the first).
                let owner = topic
                    .and_then(|t| owned.iter().find(|o| o.topic == t))
                    .unwrap_or(&owned[0])
                    .owner;
                match codec.decode_contribution(key, bytes, owner) {
                    Ok(c) => self.engine.restore_contribution(c),
                    Err(e) => {
                        warn!(topic = %self.topic, partition, error = %e, "Skipping a fleet contribution that cannot be read.");
                    }
                }
                return;
            }
            if self.engine.has_identity(key) && !restored_here.contains(key) {
                // Processed here already (another topic's partition of the same number).
                return;
            }
            let Some(bytes) = m.payload() else {
                self.engine.remove_identity(key);
                restored_here.remove(key);
                return;
            };
            match codec.decode_identity(bytes) {
                Ok((mut s, applied)) => {
                    // The fleet has been observed at least as long as its identities have.
                    self.engine.fleet().observe_time(s.first_seen_ms());
                    let mine = applied
                        .iter()
                        .filter_map(|a| {
                            owned
                                .iter()
                                .find(|o| o.topic == a.topic && o.partition == a.partition)
                                .map(|o| (o.owner, a.offset))
                        })
                        .collect();
                    s.set_origin(owner_of(&applied), mine);
                    self.engine.restore_identity(key.to_owned(), s);
                    restored_here.insert(key.to_owned());
                }
                Err(e @ SnapshotError::Incompatible { .. }) => {
                    if dropped == 0 {
                        warn!(topic = %self.topic, partition, error = %e, "Dropping snapshots from another model or format; those identities relearn.");
                    }
                    dropped += 1;
                }
                Err(e) => {
                    warn!(topic = %self.topic, partition, offset = m.offset(), error = %e, "Skipping a corrupt snapshot; that identity relearns.");
                }
            }
        })?;
        if !any {
            return Ok(None);
        }
        let n = restored_here.len();
        self.metrics.state_restored_identities.inc_by(n as u64);
        Ok(Some(n))
    }
}

/// Follows the fleet topic until dropped ([`Changelog::watch_group`]).
pub struct GroupWatch {
    changelog: Arc<Changelog>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for GroupWatch {
    fn drop(&mut self) {
        self.changelog.stop_watch.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Changelog {
    /// Reads the fleet topic from its start and then follows it, applying what the rest of the
    /// group reports to the engine ([`crate::state::group`]), until the guard is dropped.
    ///
    /// # Errors
    /// librdkafka refused the reader's configuration or the assignment.
    pub fn watch_group(self: &Arc<Self>) -> Result<GroupWatch, ChangelogError> {
        let err = |source| ChangelogError::Kafka {
            topic: self.fleet_topic.clone(),
            source,
        };
        let consumer = reader(
            &self.brokers,
            &format!("{}.fleet-view", self.group),
            self.properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(err)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.fleet_topic, 0, Offset::Beginning)
            .map_err(err)?;
        consumer.assign(&tpl).map_err(err)?;
        self.watching.store(true, Ordering::Relaxed);
        let me = self.clone();
        let thread = std::thread::Builder::new()
            .name("fleet-view".into())
            .spawn(move || {
                let codec = Codec::new(me.engine.rules());
                while !me.stop_watch.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(200)) {
                        None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                        // The client's context reports errors (and counts them); retry.
                        Some(Err(_)) => std::thread::sleep(Duration::from_millis(500)),
                        Some(Ok(m)) => {
                            if let Some(r) = group_record(&codec, &m) {
                                me.group_view.apply(r);
                            }
                            me.fleet_next.store(m.offset() + 1, Ordering::Relaxed);
                        }
                    }
                }
            })
            .expect("spawning a thread");
        Ok(GroupWatch {
            changelog: self.clone(),
            thread: Some(thread),
        })
    }

    /// Waits (at most 30 s) until the fleet-topic watcher has applied every record the topic
    /// held when called, so a newly assigned partition takes over its previous owner's last
    /// report.
    fn catch_up_with_group(&self) {
        if !self.watching.load(Ordering::Relaxed) {
            return;
        }
        let high = reader(
            &self.brokers,
            &format!("{}.fleet-view", self.group),
            self.properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .and_then(|c| c.fetch_watermarks(&self.fleet_topic, 0, Duration::from_secs(10)));
        let high = match high {
            Ok((_, high)) => high,
            Err(e) => {
                warn!(topic = %self.fleet_topic, error = %e, "Could not read the fleet topic's end; the group's counts may lag.");
                return;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.fleet_next.load(Ordering::Relaxed) < high {
            if Instant::now() > deadline {
                warn!(topic = %self.fleet_topic, "The fleet topic was not read to its end in 30 s; the group's counts lag.");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A fleet-topic record, decoded; `None` (with a warning) for one that cannot be read.
fn group_record(codec: &Codec<'_>, m: &BorrowedMessage<'_>) -> Option<GroupRecord> {
    let key = m.key().and_then(|k| std::str::from_utf8(k).ok())?;
    let bytes = m.payload()?;
    let decoded = match group::parse_key(key)? {
        ParsedKey::Contribution(partition, table, hash) => codec
            .decode_contribution_users(bytes)
            .map(|users| GroupRecord::Contribution {
                partition,
                table,
                hash,
                users,
            }),
        ParsedKey::Report(partition) => codec
            .decode_report(bytes)
            .map(|report| GroupRecord::Report { partition, report }),
    };
    decoded
        .map_err(|e| warn!(offset = m.offset(), error = %e, "Skipping a fleet-topic record that cannot be read."))
        .ok()
}

/// A consumer for [`read_to_end`] in consumer group `group` (which it never joins: it assigns
/// partitions itself and commits nothing).
///
/// # Errors
/// librdkafka refused the configuration.
pub fn reader<'p>(
    brokers: &str,
    group: &str,
    properties: impl IntoIterator<Item = (&'p str, &'p str)>,
) -> Result<BaseConsumer<KafkaContext>, KafkaError> {
    client_config(
        brokers,
        Role::Reader { group },
        properties
            .into_iter()
            .chain([("enable.partition.eof", "true")]),
    )
    .create_with_context(KafkaContext::new("restore"))
}

/// Reads partition `partition` of `topic` from its start to its end with `consumer` (from
/// [`reader`]), calling `f` with each message; `Ok(false)` when the partition holds nothing.
/// The end is the high watermark read at the start, and then nothing more for a moment (some
/// brokers report a high watermark that lags what they serve).
///
/// # Errors
/// The broker's, or [`KafkaError::Canceled`] after [`RESTORE_TIMEOUT`].
pub fn read_to_end(
    consumer: &BaseConsumer<KafkaContext>,
    topic: &str,
    partition: i32,
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> Result<bool, KafkaError> {
    let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
    if high <= low {
        return Ok(false);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    let mut next = low;
    let mut quiet_polls = 0;
    loop {
        if Instant::now() > deadline {
            return Err(KafkaError::Canceled);
        }
        let wait = if next >= high {
            END_QUIET
        } else {
            Duration::from_millis(500)
        };
        match consumer.poll(wait) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {
                if next >= high {
                    quiet_polls += 1;
                    if quiet_polls >= 2 {
                        return Ok(true);
                    }
                }
            }
            Some(m) => {
                let m = m?;
                quiet_polls = 0;
                next = next.max(m.offset() + 1);
                f(&m);
            }
        }
    }
}

impl PartitionState for Changelog {
    fn restore(&self, assigned: &[Owned]) -> Vec<(String, i32)> {
        let started = Instant::now();
        self.catch_up_with_group();
        let mut by_number: HashMap<i32, Vec<&Owned>> = HashMap::new();
        for o in assigned {
            by_number.entry(o.partition).or_default().push(o);
        }
        let mut unrestored = Vec::new();
        let mut numbers: Vec<i32> = by_number.keys().copied().collect();
        numbers.sort_unstable();
        for n in numbers {
            let owned = &by_number[&n];
            match self.restore_partition(n, owned) {
                Ok(Some(identities)) => {
                    info!(topic = %self.topic, partition = n, identities, "Restored identities from the state topic.");
                }
                Ok(None) => {
                    unrestored.extend(owned.iter().map(|o| (o.topic.clone(), o.partition)));
                }
                Err(e) => {
                    error!(topic = %self.topic, partition = n, error = %e, "Restoring from the state topic failed; rebuilding from input history instead.");
                    unrestored.extend(owned.iter().map(|o| (o.topic.clone(), o.partition)));
                }
            }
        }
        let local: Vec<_> = assigned
            .iter()
            .map(|o| ((o.topic.clone(), o.partition), o.owner))
            .collect();
        self.group_view.assign(&local);
        self.metrics
            .state_restore_seconds
            .observe(started.elapsed().as_secs_f64());
        unrestored
    }

    fn save(&self, revoked: &[u32], known: &[Owned]) {
        // Outputs first: a snapshot must not claim a record whose alerts are not delivered.
        if let Err(e) = self.producer.flush(SAVE_TIMEOUT) {
            warn!(error = %e, "Outputs not delivered before revocation; the next owner re-processes from the last commit.");
            return;
        }
        let snapshots = self.changed(Some(revoked), known);
        let mut futures = Vec::with_capacity(snapshots.len());
        for s in snapshots {
            match self.producer.send_result(self.record(&s)) {
                Ok(f) => {
                    self.count(s.value.as_deref());
                    futures.push(f);
                }
                Err((e, _)) => {
                    warn!(error = %e, "A snapshot could not be sent on revocation; that identity's next owner relearns it from history.");
                }
            }
        }
        if let Err(e) = self.producer.flush(SAVE_TIMEOUT) {
            warn!(error = %e, "Snapshots not all delivered on revocation.");
        }
        let failed = futures
            .into_iter()
            .map(FutureExt::now_or_never)
            .filter(|r| !matches!(r, Some(Ok(Ok(_)))))
            .count();
        if failed > 0 {
            warn!(
                failed,
                "Snapshots not delivered on revocation; their identities relearn from the last commit."
            );
        }
    }

    fn evict(&self, owner: u32) -> usize {
        let n = self.engine.evict_owner(owner);
        self.group_view.revoke_owner(owner);
        n
    }
}

/// State kept in memory only (`--state-topic off`): nothing restored or saved; assigned
/// partitions rebuild from input history.
pub struct InMemory {
    pub engine: Arc<Engine>,
}

impl PartitionState for InMemory {
    fn restore(&self, assigned: &[Owned]) -> Vec<(String, i32)> {
        assigned
            .iter()
            .map(|o| (o.topic.clone(), o.partition))
            .collect()
    }

    fn save(&self, _revoked: &[u32], _known: &[Owned]) {}

    fn evict(&self, owner: u32) -> usize {
        self.engine.evict_owner(owner)
    }
}
