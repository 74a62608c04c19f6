//! The service's Kafka input: the consumer, the rebalance callbacks that run the rebuild protocol
//! of [`super::partitions`] against the brokers, and the consumer loop's view of the assigned
//! partitions ([`AssignedView`]).
//!
//! Per-identity state follows the partition that owns the identity (input messages are keyed by
//! identity). On assignment, the partition's state is restored first ([`PartitionState`], the
//! changelog in `state::changelog`); a partition with no saved state starts early enough to
//! rebuild its identities' baselines from history before the committed offset. On revocation,
//! the partition's state is saved, what was acknowledged is committed, and its identities are
//! dropped from memory for their next owner.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::IntCounter;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::partitions::{
    Found, Lookup, PartitionInfo, PartitionTable, RebuildPolicy, Start, rebuild_start,
};
use crate::config::RunConfig;
use crate::config::service::{ClientKind, Input, Keying};
use crate::decode::FormatHint;
use crate::kafka::{Hooks, KafkaContext, Role, client_config};
use crate::telemetry::{Metrics, now_ms};

/// The service's consumer.
pub type InputConsumer = StreamConsumer<KafkaContext<Partitions>>;

/// An input partition and the owner tag its identities are recorded under in the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub topic: String,
    pub partition: i32,
    pub owner: u32,
}

/// What the rebalance callbacks ask of the state that follows partitions. The calls block the
/// consumer's poll (and so the consumer loop) until done, as a rebalance must.
pub trait PartitionState: Send + Sync + 'static {
    /// Restores the saved state of newly assigned partitions; returns those that had none,
    /// which rebuild from input history instead.
    fn restore(&self, assigned: &[Owned]) -> Vec<(String, i32)>;
    /// Saves what the identities of the `revoked` owners learned, before their partitions'
    /// offsets are committed. `known` maps every owner tag to its partition.
    fn save(&self, revoked: &[u32], known: &[Owned]);
    /// Drops an owner's identities from memory; returns how many.
    fn evict(&self, owner: u32) -> usize;
}

impl<T: PartitionState> PartitionState for Arc<T> {
    fn restore(&self, assigned: &[Owned]) -> Vec<(String, i32)> {
        (**self).restore(assigned)
    }

    fn save(&self, revoked: &[u32], known: &[Owned]) {
        (**self).save(revoked, known)
    }

    fn evict(&self, owner: u32) -> usize {
        (**self).evict(owner)
    }
}

/// The assigned partitions, shared by the rebalance callbacks and the consumer loop: the
/// consumer context's hooks.
pub struct Partitions {
    table: Mutex<PartitionTable>,
    /// The table's generation, readable without the lock.
    generation: AtomicU64,
    /// The group's rebalance protocol as first asked (0: not yet, 1: eager, 2: cooperative).
    /// librdkafka answers such questions on its group thread and waits without a timeout, so in
    /// the revocation that closing the consumer raises, once that thread stops serving them,
    /// asking hangs the close forever (librdkafka issue 4041): the callbacks ask once, at the
    /// first rebalance, and remember.
    protocol: AtomicU8,
    policy: RebuildPolicy,
    metrics: Arc<Metrics>,
    state: Box<dyn PartitionState>,
    /// Topics whose partitions hold no identities (`:unkeyed` inputs, which the stateless
    /// repartition stage reads): nothing to restore, rebuild or save.
    stateless: HashSet<String>,
}

impl Partitions {
    pub fn new(
        policy: RebuildPolicy,
        metrics: Arc<Metrics>,
        state: Box<dyn PartitionState>,
        stateless: HashSet<String>,
    ) -> Partitions {
        Partitions {
            table: Mutex::new(PartitionTable::default()),
            generation: AtomicU64::new(0),
            protocol: AtomicU8::new(0),
            policy,
            metrics,
            state,
            stateless,
        }
    }

    /// Every partition this instance has owned, with its owner tag.
    pub fn known(&self) -> Vec<Owned> {
        let t = self.lock();
        t.known()
            .map(|(topic, partition, owner)| Owned {
                topic: topic.to_owned(),
                partition,
                owner,
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, PartitionTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a change of the table: its generation and the partition gauges.
    fn changed(&self, table: &PartitionTable) {
        self.metrics
            .rebuilding_partitions
            .set(i64::try_from(table.rebuilding()).unwrap_or(i64::MAX));
        self.generation.store(table.generation(), Ordering::Release);
    }

    /// The consumer loop reached the last record before a partition's live offset: its
    /// baselines are rebuilt.
    pub fn rebuilt(&self, topic: &str, partition: i32) {
        let mut t = self.lock();
        if let Some(info) = t.rebuilt(topic, partition) {
            info!(
                topic,
                partition,
                live_from = info.live_from,
                "Partition's baselines rebuilt; emitting from here on."
            );
        }
        self.changed(&t);
    }

    /// Decides where each newly assigned partition starts (see [`super::partitions`]) and sets
    /// it in `tpl`.
    fn prepare_assignment(
        &self,
        base: &BaseConsumer<KafkaContext<Partitions>>,
        tpl: &mut TopicPartitionList,
    ) {
        // Saved state first: a partition restored from it needs no rebuild from history. An
        // unkeyed input's partition has neither: it starts at its committed offset.
        let owned: Vec<Owned> = {
            let mut t = self.lock();
            tpl.elements()
                .iter()
                .filter(|e| !self.stateless.contains(e.topic()))
                .map(|e| Owned {
                    topic: e.topic().to_owned(),
                    partition: e.partition(),
                    owner: t.owner(e.topic(), e.partition()),
                })
                .collect()
        };
        self.metrics
            .restoring_partitions
            .set(i64::try_from(owned.len()).unwrap_or(i64::MAX));
        let unrestored: HashSet<(String, i32)> = self.state.restore(&owned).into_iter().collect();
        self.metrics.restoring_partitions.set(0);
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
            let mut t = self.lock();
            for e in tpl.elements() {
                t.assign(e.topic(), e.partition(), Start::Committed, 0);
            }
            self.changed(&t);
            return;
        };
        let now = now_ms();
        let mut live_from: HashMap<(String, i32), i64> = HashMap::new();
        let mut lookups = TopicPartitionList::new();
        let mut by_time = false;
        for e in committed.elements() {
            let k = match e.offset() {
                Offset::Offset(k) => Some(k),
                _ => None,
            };
            if let Some(k) = k.filter(|k| *k > 0) {
                live_from.insert((e.topic().to_owned(), e.partition()), k);
            }
            if !unrestored.contains(&(e.topic().to_owned(), e.partition())) {
                // Restored: it starts at its committed offset, records before it are in the state.
                continue;
            }
            let at = match self.policy.lookup(k, now) {
                None => continue,
                Some(Lookup::Beginning) => Offset::Beginning,
                Some(Lookup::Time(ms)) => {
                    by_time = true;
                    Offset::Offset(ms)
                }
            };
            let _ = lookups.add_partition_offset(e.topic(), e.partition(), at);
        }
        // Timestamps to offsets; the whole log needs no lookup.
        let answers: Vec<(String, i32, Found)> = if by_time {
            match base.offsets_for_times(lookups.clone(), Duration::from_secs(10)) {
                Ok(found) => found
                    .elements()
                    .iter()
                    .map(|e| {
                        let f = match e.offset() {
                            Offset::Offset(s) => Found::Offset(s),
                            Offset::Beginning => Found::Beginning,
                            _ => Found::Nothing,
                        };
                        (e.topic().to_owned(), e.partition(), f)
                    })
                    .collect(),
                Err(e) => {
                    warn!(error = %e, "Looking up rebuild offsets by time failed; rebuilding from the start of each partition.");
                    lookups
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition(), Found::Beginning))
                        .collect()
                }
            }
        } else {
            lookups
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition(), Found::Beginning))
                .collect()
        };
        let mut starts: HashMap<(String, i32), Start> = HashMap::new();
        for (topic, partition, found) in answers {
            let k = live_from[&(topic.clone(), partition)];
            let start = rebuild_start(k, found);
            let offset = match start {
                Start::Offset(s) => Offset::Offset(s),
                Start::Beginning => Offset::Beginning,
                Start::Committed => continue,
            };
            let _ = tpl.set_partition_offset(&topic, partition, offset);
            info!(topic, partition, committed = k, start = ?offset, "Assigned partition; rebuilding its baselines up to the committed offset.");
            starts.insert((topic, partition), start);
        }
        let mut t = self.lock();
        for e in tpl.elements() {
            let key = (e.topic().to_owned(), e.partition());
            let start = starts.get(&key).copied().unwrap_or(Start::Committed);
            let live = live_from.get(&key).copied().unwrap_or(0);
            t.assign(e.topic(), e.partition(), start, live);
        }
        self.changed(&t);
    }

    /// Saves the state of partitions being revoked (before their offsets are committed).
    fn save(&self, tpl: &TopicPartitionList) {
        let known = self.known();
        let revoked: Vec<u32> = tpl
            .elements()
            .iter()
            .filter_map(|e| {
                known
                    .iter()
                    .find(|o| o.topic == e.topic() && o.partition == e.partition())
                    .map(|o| o.owner)
            })
            .collect();
        self.state.save(&revoked, &known);
    }

    /// Drops the in-memory state of revoked partitions: their next owner restores it.
    fn revoke(&self, tpl: &TopicPartitionList) {
        let mut t = self.lock();
        let mut evicted = 0;
        for e in tpl.elements() {
            if let Some(owner) = t.revoke(e.topic(), e.partition()) {
                evicted += self.state.evict(owner);
            }
            let _ = self
                .metrics
                .consumer_lag
                .remove_label_values(&[e.topic(), &e.partition().to_string()]);
        }
        self.changed(&t);
        info!(
            partitions = tpl.count(),
            identities = evicted,
            "Partitions revoked; their identities' state is dropped."
        );
    }

    /// Whether the group rebalances cooperatively (incrementally), asked of librdkafka at the
    /// first rebalance only (see [`Partitions::protocol`]).
    fn cooperative<C: ConsumerContext>(&self, base: &BaseConsumer<C>) -> bool {
        match self.protocol.load(Ordering::Acquire) {
            1 => false,
            2 => true,
            _ => {
                let cooperative =
                    matches!(base.rebalance_protocol(), RebalanceProtocol::Cooperative);
                self.protocol
                    .store(if cooperative { 2 } else { 1 }, Ordering::Release);
                cooperative
            }
        }
    }

    /// Revokes every assigned partition (after a failed rebalance), as [`Partitions::revoke`] does.
    fn revoke_all(&self) {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, _) in self.lock().assigned() {
            tpl.add_partition(topic, partition);
        }
        self.revoke(&tpl);
    }
}

impl Hooks for Partitions {
    /// Consumer lag per assigned partition, every `statistics.interval.ms`.
    fn stats(&self, s: Statistics) {
        let t = self.lock();
        for (topic, tp) in &s.topics {
            for (p, part) in &tp.partitions {
                // Behind the stored offset (acknowledged records); before anything was stored
                // since the assignment, behind the committed offset. -1 means unknown.
                let lag = if part.consumer_lag_stored >= 0 {
                    part.consumer_lag_stored
                } else {
                    part.consumer_lag
                };
                if *p >= 0 && lag >= 0 && t.is_assigned(topic, *p) {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic.as_str(), &p.to_string()])
                        .set(lag);
                }
            }
        }
    }
}

impl ConsumerContext for KafkaContext<Partitions> {
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let parts = &self.hooks;
        let cooperative = parts.cooperative(base);
        let kind = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => "assign",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => "revoke",
            _ => "error",
        };
        parts.metrics.rebalances.with_label_values(&[kind]).inc();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                parts.prepare_assignment(base, tpl);
                if cooperative {
                    base.incremental_assign(tpl)
                } else {
                    base.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Save the state, then commit what has been acknowledged, so the next owner
                // restores it and starts right there.
                if !base.assignment_lost() {
                    parts.save(tpl);
                    commit(
                        base,
                        "Commit on partition revocation failed; the next owner re-processes from the last commit.",
                    );
                }
                parts.revoke(tpl);
                if cooperative {
                    base.incremental_unassign(tpl)
                } else {
                    base.unassign()
                }
            }
            other => {
                error!(error = ?other, "Rebalance failed; dropping the assignment.");
                parts.revoke_all();
                base.unassign()
            }
        };
        if let Err(e) = result {
            error!(error = %e, "Applying the new partition assignment failed.");
        }
        // Counted in the table, not asked of librdkafka (see `Partitions::protocol`).
        let assigned = parts.lock().assigned().count();
        info!(event = kind, changed = tpl.count(), assigned, "Rebalance.");
        parts
            .metrics
            .assigned_partitions
            .set(i64::try_from(assigned).unwrap_or(i64::MAX));
    }
}

/// Commits the stored offsets synchronously; a failure is logged with `failed` (nothing stored
/// since the last commit is not a failure).
pub fn commit<C: Consumer<KafkaContext<Partitions>>>(consumer: &C, failed: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => warn!(error = %e, "{failed}"),
    }
}

/// Creates the service's consumer (the caller subscribes it, to report that step's failure as
/// its own).
///
/// # Errors
/// librdkafka's refusal of the configuration.
pub fn consumer(
    cfg: &RunConfig,
    partitions: Partitions,
    metrics: &Metrics,
) -> Result<InputConsumer, KafkaError> {
    client_config(
        &cfg.brokers,
        Role::ServiceConsumer {
            group: &cfg.group_id,
        },
        cfg.kafka_properties_for(ClientKind::Consumer),
    )
    .create_with_context(KafkaContext::with_hooks(
        "consumer",
        Some(metrics),
        partitions,
    ))
}

/// One assigned partition as the consumer loop sees it, with its metric handles resolved once.
pub struct Assigned {
    pub topic: Arc<str>,
    pub partition: i32,
    pub info: PartitionInfo,
    pub format: FormatHint,
    /// The Kubernetes cluster the input declares (`TOPIC=FORMAT@CLUSTER`).
    pub cluster: Option<Arc<str>>,
    /// How the input is keyed: which stage reads its records.
    pub keying: Keying,
    pub consumed: IntCounter,
    pub replayed: IntCounter,
    pub decoded: IntCounter,
    pub skipped: IntCounter,
}

/// The consumer loop's copy of the assigned partitions, refreshed when the table changes.
pub struct AssignedView {
    generation: u64,
    /// A few dozen entries, searched linearly.
    entries: Vec<Assigned>,
}

impl Default for AssignedView {
    fn default() -> Self {
        AssignedView {
            generation: u64::MAX,
            entries: Vec::new(),
        }
    }
}

impl AssignedView {
    /// Brings the copy up to date with `partitions` when it changed.
    pub fn refresh(&mut self, partitions: &Partitions, inputs: &[Input]) {
        let generation = partitions.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        let m = &partitions.metrics;
        let t = partitions.lock();
        self.entries = t
            .assigned()
            .map(|(topic, partition, info)| {
                let input = inputs.iter().find(|inp| inp.topic == topic);
                let format = input.map_or(FormatHint::Auto, |inp| inp.format);
                let cluster = input.and_then(|inp| inp.cluster.clone());
                let keying = input.map_or(Keying::Keyed, |inp| inp.keying);
                let labels = [topic, format.as_str()];
                Assigned {
                    topic: Arc::from(topic),
                    partition,
                    info,
                    format,
                    cluster,
                    keying,
                    consumed: m.records_consumed.with_label_values(&labels),
                    replayed: m.records_replayed.with_label_values(&[topic]),
                    decoded: m.events_decoded.with_label_values(&labels),
                    skipped: m.events_skipped.with_label_values(&labels),
                }
            })
            .collect();
        self.generation = t.generation();
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<&Assigned> {
        self.entries
            .iter()
            .find(|e| e.partition == partition && &*e.topic == topic)
    }

    /// The table's generation this copy was taken at (it moves on every assignment, revocation
    /// and rebuild's end).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The partition of a record received when the copy was at generation `received_at`, if it
    /// is still assigned *in the same assignment*: one assigned again since then re-reads the
    /// record itself.
    pub fn owning(&self, topic: &str, partition: i32, received_at: u64) -> Option<&Assigned> {
        self.get(topic, partition)
            .filter(|p| p.info.assigned_at <= received_at)
    }
}
