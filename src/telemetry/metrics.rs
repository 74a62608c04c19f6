//! Every metric driftwatch exports, named in this one place.
//!
//! [`Metrics`] holds the counters, gauges and histograms the service updates as it works; they
//! are registered on a [`Registry`] created in `main` and passed down. [`EngineCollector`] reads
//! the engine's own counters and a census of its identities at scrape time, so the engine (a pure,
//! synchronous core) knows nothing of Prometheus. [`ForwardMetrics`] are `driftwatch forward`'s.
//! No label takes unbounded values: labels are input topics and partitions (fixed by
//! configuration), formats, detectors, severities, actions, modes, results and error kinds (never
//! a webhook's URL). Identities, IPs and endpoints go to logs and alerts, never to labels.
//!
//! The README's "Operating" section documents each series; a test checks it lists every name.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::engine::Engine;

/// Buckets for processing and delivery latency: 100 µs to 10 s in 1-2-5 steps.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
    10.0,
];

/// Buckets for event-time lag (wall clock minus event time): 100 ms to a week. Log pipelines
/// (CloudTrail delivers in about 5 minutes) make minutes normal; days mean a backlog or a replay.
const EVENT_LAG_BUCKETS: [f64; 14] = [
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 86400.0, 259200.0,
    604800.0,
];

/// Buckets for restoring state: 10 ms to an hour.
const RESTORE_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// The service's metrics. Cloning is cheap (each metric is a handle on shared atomics).
#[derive(Clone)]
pub struct Metrics {
    /// Since when the acknowledger has been waiting for the brokers to acknowledge an output;
    /// not a metric of its own (readiness reports it, `driftwatch_records_in_flight` counts it).
    pub output_wait: Arc<OutputWait>,
    /// Input records received, by input topic and its configured format.
    pub records_consumed: IntCounterVec,
    /// Records read only to rebuild baselines after a partition was assigned, by topic.
    pub records_replayed: IntCounterVec,
    /// Input records whose Kafka key is not the principal key of an event they hold
    /// (`key_mismatch`) or that have no key (`unkeyed`), by topic and reason.
    pub records_misrouted: IntCounterVec,
    /// The share of recent records that were misrouted, for readiness (not a metric of its own).
    pub misrouting: Arc<MisrouteWindow>,
    /// Access events decoded from input records (replayed ones included), by topic and format.
    pub events_decoded: IntCounterVec,
    /// Well-formed elements that deliberately yield no event (e.g. intermediate audit stages).
    pub events_skipped: IntCounterVec,
    /// Events of `:unkeyed` inputs re-produced to the repartition topic, by input topic.
    pub events_repartitioned: IntCounterVec,
    /// Records (or elements of a container record) that could not be decoded, by reason.
    pub records_rejected: IntCounterVec,
    /// Wall clock minus event time of live events, in seconds.
    pub event_lag_seconds: Histogram,
    /// Record received to its outputs handed to the producer, in seconds.
    pub processing_seconds: Histogram,
    /// Record received to all its outputs acknowledged by the brokers, in seconds (records
    /// with at least one alert, command or dead letter).
    pub delivery_seconds: Histogram,
    /// Alerts emitted, by the detector that caused them, severity and activity (create/update/close).
    pub alerts: IntCounterVec,
    /// Revocation commands emitted, by action and mode (dry_run/enforce).
    pub commands: IntCounterVec,
    /// Governance commands of the dormancy lifecycle emitted, by action and mode.
    pub governance_commands: IntCounterVec,
    /// Identity inventory records read from the identities topic, by result (declared,
    /// updated, removed, rejected).
    pub identity_records: IntCounterVec,
    /// Identities the inventory declares (file and topic).
    pub identities_declared: IntGauge,
    /// Dead letters acknowledged by the brokers.
    pub dead_letters: IntCounter,
    /// Failed deliveries (each is retried), by output.
    pub delivery_errors: IntCounterVec,
    /// Records whose outputs were acknowledged and whose offsets were stored for commit.
    pub records_acknowledged: IntCounter,
    /// Records handed to the acknowledger and not yet acknowledged.
    pub records_in_flight: IntGauge,
    /// Consumer lag per assigned partition (high watermark minus stored offset), from
    /// librdkafka statistics.
    pub consumer_lag: IntGaugeVec,
    /// Consumer group rebalances, by kind (assign, revoke, error).
    pub rebalances: IntCounterVec,
    pub assigned_partitions: IntGauge,
    /// Assigned partitions still replaying history to rebuild their baselines.
    pub rebuilding_partitions: IntGauge,
    /// Errors reported by the Kafka clients (broker down, authentication, ...), by client.
    pub kafka_errors: IntCounterVec,
    /// Messages in the producer's queue awaiting delivery, from librdkafka statistics.
    pub producer_queue_messages: IntGauge,
    /// Newly assigned partitions whose saved state is being restored.
    pub restoring_partitions: IntGauge,
    /// Identities restored from the state topic.
    pub state_restored_identities: IntCounter,
    /// Time to restore the state of a batch of newly assigned partitions, in seconds.
    pub state_restore_seconds: Histogram,
    /// Identity snapshots written to the state topic.
    pub state_snapshots_written: IntCounter,
    /// Bytes of identity snapshots written to the state topic.
    pub state_snapshot_bytes: IntCounter,
    /// Commit points reached: outputs acknowledged, snapshots written, offsets committed.
    pub commits: IntCounter,
}

/// Metric names, in one place. Prefix, base units and suffixes follow Prometheus conventions.
pub mod names {
    pub const RECORDS_CONSUMED: &str = "driftwatch_records_consumed_total";
    pub const RECORDS_REPLAYED: &str = "driftwatch_records_replayed_total";
    pub const RECORDS_MISROUTED: &str = "driftwatch_records_misrouted_total";
    pub const EVENTS_DECODED: &str = "driftwatch_events_decoded_total";
    pub const EVENTS_SKIPPED: &str = "driftwatch_events_skipped_total";
    pub const EVENTS_REPARTITIONED: &str = "driftwatch_events_repartitioned_total";
    pub const RECORDS_REJECTED: &str = "driftwatch_records_rejected_total";
    pub const EVENT_LAG: &str = "driftwatch_event_lag_seconds";
    pub const PROCESSING: &str = "driftwatch_processing_seconds";
    pub const DELIVERY: &str = "driftwatch_delivery_seconds";
    pub const ALERTS: &str = "driftwatch_alerts_total";
    pub const COMMANDS: &str = "driftwatch_commands_total";
    pub const GOVERNANCE_COMMANDS: &str = "driftwatch_governance_commands_total";
    pub const IDENTITY_RECORDS: &str = "driftwatch_identity_records_total";
    pub const IDENTITIES_DECLARED: &str = "driftwatch_identities_declared";
    pub const DEAD_LETTERS: &str = "driftwatch_dead_letters_total";
    pub const DELIVERY_ERRORS: &str = "driftwatch_delivery_errors_total";
    pub const RECORDS_ACKNOWLEDGED: &str = "driftwatch_records_acknowledged_total";
    pub const RECORDS_IN_FLIGHT: &str = "driftwatch_records_in_flight";
    pub const CONSUMER_LAG: &str = "driftwatch_consumer_lag_records";
    pub const REBALANCES: &str = "driftwatch_rebalances_total";
    pub const ASSIGNED_PARTITIONS: &str = "driftwatch_assigned_partitions";
    pub const REBUILDING_PARTITIONS: &str = "driftwatch_rebuilding_partitions";
    pub const KAFKA_ERRORS: &str = "driftwatch_kafka_errors_total";
    pub const PRODUCER_QUEUE: &str = "driftwatch_producer_queue_messages";
    pub const RESTORING_PARTITIONS: &str = "driftwatch_restoring_partitions";
    pub const STATE_RESTORED: &str = "driftwatch_state_restored_identities_total";
    pub const STATE_RESTORE: &str = "driftwatch_state_restore_seconds";
    pub const STATE_SNAPSHOTS: &str = "driftwatch_state_snapshots_written_total";
    pub const STATE_SNAPSHOT_BYTES: &str = "driftwatch_state_snapshot_bytes_total";
    pub const COMMITS: &str = "driftwatch_commits_total";
    pub const BUILD_INFO: &str = "driftwatch_build_info";
    // Read from the engine at scrape time (EngineCollector).
    pub const ENGINE_EVENTS: &str = "driftwatch_engine_events_total";
    pub const FINDINGS: &str = "driftwatch_findings_total";
    pub const FINDINGS_MERGED: &str = "driftwatch_findings_merged_total";
    pub const COMMANDS_WITHHELD: &str = "driftwatch_commands_withheld_total";
    pub const LIFECYCLE_DEFERRED: &str = "driftwatch_lifecycle_deferred_total";
    pub const IDENTITIES: &str = "driftwatch_identities";
    pub const IDENTITIES_WARMING_UP: &str = "driftwatch_identities_warming_up";
    pub const STATE_BYTES: &str = "driftwatch_state_bytes";
    pub const GROUP_IDENTITIES: &str = "driftwatch_group_identities";
    pub const IDENTITIES_COLD: &str = "driftwatch_identities_cold";
    pub const IDENTITIES_FROZEN: &str = "driftwatch_identities_frozen_total";
    pub const IDENTITIES_WOKEN: &str = "driftwatch_identities_woken_total";
    pub const IDENTITIES_FORGOTTEN: &str = "driftwatch_identities_forgotten_total";
    pub const IDENTITIES_EVICTED: &str = "driftwatch_identities_evicted_total";
    // `driftwatch forward` (ForwardMetrics).
    pub const FORWARD_ATTEMPTS: &str = "driftwatch_forward_attempts_total";
    pub const FORWARD_FAILURES: &str = "driftwatch_forward_failures_total";
    pub const FORWARD_DEAD_LETTERS: &str = "driftwatch_forward_dead_letters_total";
    pub const FORWARD_REQUEST: &str = "driftwatch_forward_request_seconds";
    pub const FORWARD_LAG: &str = "driftwatch_forward_lag_seconds";

    /// Every driftwatch metric (process_* metrics aside), for documentation and deployment checks.
    pub const ALL: [&str; 51] = [
        RECORDS_CONSUMED,
        RECORDS_REPLAYED,
        RECORDS_MISROUTED,
        EVENTS_DECODED,
        EVENTS_SKIPPED,
        EVENTS_REPARTITIONED,
        RECORDS_REJECTED,
        EVENT_LAG,
        PROCESSING,
        DELIVERY,
        ALERTS,
        COMMANDS,
        GOVERNANCE_COMMANDS,
        IDENTITY_RECORDS,
        IDENTITIES_DECLARED,
        DEAD_LETTERS,
        DELIVERY_ERRORS,
        RECORDS_ACKNOWLEDGED,
        RECORDS_IN_FLIGHT,
        CONSUMER_LAG,
        REBALANCES,
        ASSIGNED_PARTITIONS,
        REBUILDING_PARTITIONS,
        KAFKA_ERRORS,
        PRODUCER_QUEUE,
        RESTORING_PARTITIONS,
        STATE_RESTORED,
        STATE_RESTORE,
        STATE_SNAPSHOTS,
        STATE_SNAPSHOT_BYTES,
        COMMITS,
        BUILD_INFO,
        ENGINE_EVENTS,
        FINDINGS,
        FINDINGS_MERGED,
        COMMANDS_WITHHELD,
        LIFECYCLE_DEFERRED,
        IDENTITIES,
        IDENTITIES_WARMING_UP,
        STATE_BYTES,
        GROUP_IDENTITIES,
        IDENTITIES_COLD,
        IDENTITIES_FROZEN,
        IDENTITIES_WOKEN,
        IDENTITIES_FORGOTTEN,
        IDENTITIES_EVICTED,
        FORWARD_ATTEMPTS,
        FORWARD_FAILURES,
        FORWARD_DEAD_LETTERS,
        FORWARD_REQUEST,
        FORWARD_LAG,
    ];
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> prometheus::Result<Histogram> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

/// Registers `driftwatch_build_info`.
fn build_info(r: &Registry) -> prometheus::Result<()> {
    let build = IntGaugeVec::new(
        Opts::new(
            names::BUILD_INFO,
            "Always 1; the version label says which driftwatch runs.",
        ),
        &["version"],
    )?;
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    r.register(Box::new(build))
}

/// The metrics of `driftwatch forward` (its own process, its own registry). No label names a
/// webhook, a URL or an identity.
#[derive(Clone)]
pub struct ForwardMetrics {
    /// Since when the message in hand has been failing; not a metric (readiness reports it).
    pub failing: Arc<OutputWait>,
    /// HTTP attempts by how they ended: `delivered` (2xx), `retried` (failed, another attempt
    /// follows), `permanent_failure` (refused for good, dead-lettered at once), `gave_up` (failed
    /// on the last allowed attempt, dead-lettered).
    pub attempts: IntCounterVec,
    /// Failed attempts by kind: `http_3xx`, `http_4xx`, `http_5xx`, `timeout`, `connect`, `tls`,
    /// `protocol`.
    pub failures: IntCounterVec,
    /// Messages written to the dead-letter topic and acknowledged by the brokers.
    pub dead_letters: IntCounter,
    /// One attempt, connecting included, to its response (or failure), in seconds.
    pub request_seconds: Histogram,
    /// Kafka timestamp of a message to its delivery to the webhook, in seconds.
    pub lag_seconds: Histogram,
}

impl ForwardMetrics {
    /// Creates and registers the forwarder's metrics, with `driftwatch_build_info`.
    ///
    /// # Errors
    /// Registering twice on the same registry.
    pub fn register(r: &Registry) -> prometheus::Result<Arc<ForwardMetrics>> {
        use names::*;
        build_info(r)?;
        Ok(Arc::new(ForwardMetrics {
            failing: Arc::default(),
            attempts: counter_vec(
                r,
                FORWARD_ATTEMPTS,
                "Webhook delivery attempts by result: delivered, retried, permanent_failure, gave_up.",
                &["result"],
            )?,
            failures: counter_vec(
                r,
                FORWARD_FAILURES,
                "Failed webhook delivery attempts by kind (status class, timeout, connect, tls, protocol).",
                &["kind"],
            )?,
            dead_letters: counter(
                r,
                FORWARD_DEAD_LETTERS,
                "Messages the webhook did not take, written to the dead-letter topic.",
            )?,
            request_seconds: histogram(
                r,
                FORWARD_REQUEST,
                "One webhook delivery attempt, connecting included.",
                &LATENCY_BUCKETS,
            )?,
            lag_seconds: histogram(
                r,
                FORWARD_LAG,
                "Kafka timestamp of a message to its delivery to the webhook.",
                &EVENT_LAG_BUCKETS,
            )?,
        }))
    }

    /// Why the forwarder is not ready (`/readyz`): the message in hand has failed for longer
    /// than [`OUTPUT_STALL`] (the webhook is down or refusing), or no partition is assigned.
    ///
    /// # Errors
    /// The reason, for the 503 response body.
    pub fn readiness(&self, assigned_partitions: usize) -> Result<(), String> {
        if let Some(waited) = self
            .failing
            .longer_than(OUTPUT_STALL, std::time::Instant::now())
        {
            Err(format!(
                "the webhook has not taken the current message for {}s; it is being retried",
                waited.as_secs()
            ))
        } else if assigned_partitions == 0 {
            Err("no partitions assigned yet".into())
        } else {
            Ok(())
        }
    }
}

impl Metrics {
    /// Creates the service's metrics and registers them, with `driftwatch_build_info`.
    ///
    /// # Errors
    /// Registering twice on the same registry (a programming error) fails.
    pub fn register(r: &Registry) -> prometheus::Result<Arc<Metrics>> {
        use names::*;
        build_info(r)?;
        let topic_format = ["topic", "format"];
        Ok(Arc::new(Metrics {
            output_wait: Arc::default(),
            records_consumed: counter_vec(
                r,
                RECORDS_CONSUMED,
                "Input records received.",
                &topic_format,
            )?,
            records_replayed: counter_vec(
                r,
                RECORDS_REPLAYED,
                "Input records read only to rebuild baselines after a partition assignment.",
                &["topic"],
            )?,
            records_misrouted: counter_vec(
                r,
                RECORDS_MISROUTED,
                "Input records not keyed by the principal key of the events they hold (key_mismatch) or not keyed at all (unkeyed).",
                &["topic", "reason"],
            )?,
            misrouting: Arc::default(),
            events_decoded: counter_vec(
                r,
                EVENTS_DECODED,
                "Access events decoded from input records (including those replayed to rebuild baselines).",
                &topic_format,
            )?,
            events_skipped: counter_vec(
                r,
                EVENTS_SKIPPED,
                "Well-formed log entries that deliberately yield no event (intermediate audit stages, service events).",
                &topic_format,
            )?,
            events_repartitioned: counter_vec(
                r,
                EVENTS_REPARTITIONED,
                "Events of inputs declared `:unkeyed` re-produced, keyed by principal key, to the repartition topic.",
                &["topic"],
            )?,
            records_rejected: counter_vec(
                r,
                RECORDS_REJECTED,
                "Input records or elements that could not be decoded and went to the dead-letter topic.",
                &["topic", "format", "reason"],
            )?,
            event_lag_seconds: histogram(
                r,
                EVENT_LAG,
                "Wall clock minus event time of live events.",
                &EVENT_LAG_BUCKETS,
            )?,
            processing_seconds: histogram(
                r,
                PROCESSING,
                "Input record received to its alerts, commands and dead letters handed to the producer.",
                &LATENCY_BUCKETS,
            )?,
            delivery_seconds: histogram(
                r,
                DELIVERY,
                "Input record received to all its outputs acknowledged by the brokers.",
                &LATENCY_BUCKETS,
            )?,
            alerts: counter_vec(
                r,
                ALERTS,
                "Alerts (OCSF Detection Findings) emitted, by causing detector, severity and activity.",
                &["detector", "severity", "activity"],
            )?,
            commands: counter_vec(
                r,
                COMMANDS,
                "Revocation commands emitted.",
                &["action", "mode"],
            )?,
            governance_commands: counter_vec(
                r,
                GOVERNANCE_COMMANDS,
                "Governance commands of the dormancy lifecycle emitted (suspend or delete idle identities).",
                &["action", "mode"],
            )?,
            identity_records: counter_vec(
                r,
                IDENTITY_RECORDS,
                "Identity inventory records read from the identities topic, by result (declared, updated, removed, rejected).",
                &["result"],
            )?,
            identities_declared: gauge(
                r,
                IDENTITIES_DECLARED,
                "Identities the inventory declares (file and identities topic).",
            )?,
            dead_letters: counter(r, DEAD_LETTERS, "Dead letters acknowledged by the brokers.")?,
            delivery_errors: counter_vec(
                r,
                DELIVERY_ERRORS,
                "Failed deliveries of outputs (each is retried; the service stops after 5 failures of one message).",
                &["output"],
            )?,
            records_acknowledged: counter(
                r,
                RECORDS_ACKNOWLEDGED,
                "Input records whose outputs were acknowledged and whose offsets were stored for commit.",
            )?,
            records_in_flight: gauge(
                r,
                RECORDS_IN_FLIGHT,
                "Input records awaiting acknowledgement of their outputs.",
            )?,
            consumer_lag: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        CONSUMER_LAG,
                        "Records behind the high watermark per assigned partition (from librdkafka statistics).",
                    ),
                    &["topic", "partition"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            rebalances: counter_vec(
                r,
                REBALANCES,
                "Consumer group rebalances seen by this instance.",
                &["kind"],
            )?,
            assigned_partitions: gauge(
                r,
                ASSIGNED_PARTITIONS,
                "Input partitions assigned to this instance.",
            )?,
            rebuilding_partitions: gauge(
                r,
                REBUILDING_PARTITIONS,
                "Assigned partitions still replaying history to rebuild baselines.",
            )?,
            kafka_errors: counter_vec(
                r,
                KAFKA_ERRORS,
                "Errors reported by the Kafka clients.",
                &["client"],
            )?,
            producer_queue_messages: gauge(
                r,
                PRODUCER_QUEUE,
                "Messages in the producer's queue awaiting delivery (from librdkafka statistics).",
            )?,
            restoring_partitions: gauge(
                r,
                RESTORING_PARTITIONS,
                "Newly assigned partitions whose saved state is being restored from the state topic.",
            )?,
            state_restored_identities: counter(
                r,
                STATE_RESTORED,
                "Identities restored from the state topic on partition assignment.",
            )?,
            state_restore_seconds: histogram(
                r,
                STATE_RESTORE,
                "Time to restore the saved state of newly assigned partitions.",
                &RESTORE_BUCKETS,
            )?,
            state_snapshots_written: counter(
                r,
                STATE_SNAPSHOTS,
                "Identity snapshots written to the state topic.",
            )?,
            state_snapshot_bytes: counter(
                r,
                STATE_SNAPSHOT_BYTES,
                "Bytes of identity snapshots written to the state topic.",
            )?,
            commits: counter(
                r,
                COMMITS,
                "Commit points: outputs acknowledged, changed identities' snapshots written, input offsets committed.",
            )?,
        }))
    }

    /// Why the instance is not ready to serve (`/readyz`), or `Ok` when it is: no output has
    /// waited for the brokers' acknowledgement longer than [`OUTPUT_STALL`], partitions are
    /// assigned and none of them is still restoring or rebuilding baselines.
    ///
    /// # Errors
    /// The reason, for the 503 response body.
    pub fn readiness(&self) -> Result<(), String> {
        self.readiness_at(std::time::Instant::now())
    }

    /// [`Metrics::readiness`] as it is at `now`.
    fn readiness_at(&self, now: std::time::Instant) -> Result<(), String> {
        let assigned = self.assigned_partitions.get();
        let rebuilding = self.rebuilding_partitions.get();
        let restoring = self.restoring_partitions.get();
        if let Some(waited) = self.output_wait.longer_than(OUTPUT_STALL, now) {
            Err(format!(
                "the brokers have not acknowledged an alert, command or dead letter for {}s; records are held until they do",
                waited.as_secs()
            ))
        } else if restoring > 0 {
            Err(format!(
                "restoring the saved state of {restoring} newly assigned partitions"
            ))
        } else if assigned <= 0 {
            Err("no input partitions assigned yet".into())
        } else if rebuilding > 0 {
            Err(format!(
                "{rebuilding} of {assigned} assigned partitions still rebuilding baselines"
            ))
        } else if let Some(permille) = self.misrouting.alarming() {
            Err(format!(
                "{:.1}% of the last {MISROUTE_WINDOW} input records were not keyed by their identity's principal key, so with more than one instance an identity's events are split between instances (partial baselines, alerts on what another instance knows); key records by principal key upstream (driftwatch produce does), or declare the input `:unkeyed` (`--input TOPIC=FORMAT:unkeyed`) so driftwatch re-keys it",
                permille as f64 / 10.0
            ))
        } else {
            Ok(())
        }
    }

    /// The sum of a counter over all its label values.
    pub fn total(c: &IntCounterVec) -> u64 {
        c.collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }
}

/// Records per misrouting window: readiness judges the share of misrouted records over the
/// last complete window.
pub const MISROUTE_WINDOW: u64 = 1_000;
/// Misrouted records per thousand, in the last window, above which the instance is not ready.
pub const MISROUTE_ALARM_PERMILLE: u64 = 10;

/// The share of misrouted records, judged over consecutive windows of [`MISROUTE_WINDOW`]
/// records (the last complete one counts). It matters only while other instances share the
/// group: an instance alone holds every identity's whole history however records are keyed.
#[derive(Debug, Default)]
pub struct MisrouteWindow {
    /// Whether other instances of the group own partitions (their reports count identities).
    shared: std::sync::atomic::AtomicBool,
    seen: std::sync::atomic::AtomicU64,
    misrouted: std::sync::atomic::AtomicU64,
    /// Misrouted per thousand in the last complete window.
    last_permille: std::sync::atomic::AtomicU64,
}

impl MisrouteWindow {
    /// Counts one input record that held events (`misrouted` or not), received while the group
    /// is `shared` with other instances or not.
    pub fn record(&self, misrouted: bool, shared: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.shared.store(shared, Relaxed);
        if misrouted {
            self.misrouted.fetch_add(1, Relaxed);
        }
        if self.seen.fetch_add(1, Relaxed) + 1 >= MISROUTE_WINDOW {
            let bad = self.misrouted.swap(0, Relaxed);
            self.seen.store(0, Relaxed);
            self.last_permille
                .store(bad * 1000 / MISROUTE_WINDOW, Relaxed);
        }
    }

    /// The last complete window's misrouted records per thousand, when above the alarm and
    /// the group is shared.
    pub fn alarming(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let p = self.last_permille.load(Relaxed);
        (p > MISROUTE_ALARM_PERMILLE && self.shared.load(Relaxed)).then_some(p)
    }
}

/// How long outputs may wait for the brokers before the instance reports itself not ready.
pub const OUTPUT_STALL: std::time::Duration = std::time::Duration::from_secs(10);

/// When the current wait for an output's acknowledgement began (milliseconds since the
/// struct was made; 0 when nothing is waited for).
#[derive(Debug)]
pub struct OutputWait {
    epoch: std::time::Instant,
    since_ms: std::sync::atomic::AtomicU64,
}

impl Default for OutputWait {
    fn default() -> Self {
        OutputWait {
            epoch: std::time::Instant::now(),
            since_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl OutputWait {
    /// A wait begins (kept if one is already running).
    pub fn begin(&self) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let _ = self
            .since_ms
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The output was acknowledged.
    pub fn end(&self) {
        self.since_ms.store(0, Ordering::Relaxed);
    }

    /// How long the current wait has lasted at `now`, when longer than `limit`.
    pub fn longer_than(
        &self,
        limit: std::time::Duration,
        now: std::time::Instant,
    ) -> Option<std::time::Duration> {
        let since = self.since_ms.load(Ordering::Relaxed);
        if since == 0 {
            return None;
        }
        let at = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        let waited = std::time::Duration::from_millis(at.saturating_sub(since));
        (waited > limit).then_some(waited)
    }
}

/// Registers the standard `process_*` metrics (CPU, resident memory, open file descriptors,
/// start time) where the platform provides them (Linux).
///
/// # Errors
/// Registering twice on the same registry.
pub fn register_process_metrics(r: &Registry) -> prometheus::Result<()> {
    #[cfg(target_os = "linux")]
    r.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    #[cfg(not(target_os = "linux"))]
    let _ = r;
    Ok(())
}

/// An estimate of quantile `q` (0..=1) of a histogram, interpolated linearly within its bucket;
/// `None` before any observation. Good to the bucket's width (1-2-5 steps for latencies).
pub fn quantile(h: &Histogram, q: f64) -> Option<f64> {
    quantile_of(&buckets(h), q)
}

/// A histogram's buckets so far: upper bound and cumulative count.
pub fn buckets(h: &Histogram) -> Vec<(f64, u64)> {
    let families = h.collect();
    let Some(m) = families.first().and_then(|f| f.get_metric().first()) else {
        return Vec::new();
    };
    let h = m.get_histogram();
    let mut out: Vec<(f64, u64)> = h
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    // Observations above the last bound (the implicit +Inf bucket).
    out.push((f64::INFINITY, h.get_sample_count()));
    out
}

/// Quantile `q` of the observations between two readings of [`buckets`] (`since` empty: all).
pub fn quantile_between(since: &[(f64, u64)], now: &[(f64, u64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, u64)> = now
        .iter()
        .enumerate()
        .map(|(i, &(upper, cum))| (upper, cum - since.get(i).map_or(0, |b| b.1.min(cum))))
        .collect();
    quantile_of(&delta, q)
}

fn quantile_of(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let n = buckets.last()?.1;
    if n == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * n as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(upper, cum) in buckets {
        if cum as f64 >= rank {
            if upper.is_infinite() {
                // Above the last bound: the bound is all a histogram can say.
                return Some(lower);
            }
            let inside = (cum - below).max(1) as f64;
            return Some(
                lower + (upper - lower) * ((rank - below as f64) / inside).clamp(0.0, 1.0),
            );
        }
        lower = upper;
        below = cum;
    }
    Some(lower)
}

/// Exports the engine's counters and a census of its identities at scrape time.
pub struct EngineCollector {
    engine: Arc<Engine>,
    descs: Vec<Desc>,
}

impl EngineCollector {
    pub fn new(engine: Arc<Engine>) -> EngineCollector {
        let descs = Self::families(&engine)
            .iter()
            .filter_map(|f| {
                let labels = f.get_metric().first().map_or_else(Vec::new, |m| {
                    m.get_label().iter().map(|l| l.name().to_owned()).collect()
                });
                Desc::new(
                    f.name().to_owned(),
                    f.help().to_owned(),
                    labels,
                    Default::default(),
                )
                .ok()
            })
            .collect();
        EngineCollector { engine, descs }
    }

    fn families(engine: &Engine) -> Vec<MetricFamily> {
        use names::*;
        let c = &engine.counters;
        let counter = |name: &str, help: &str, v: u64| {
            let m = IntCounter::new(name, help).expect("metric names here are valid");
            m.inc_by(v);
            m.collect()
        };
        let gauge = |name: &str, help: &str, v: usize| {
            let m = IntGauge::new(name, help).expect("metric names here are valid");
            m.set(v as i64);
            m.collect()
        };
        let findings = IntCounterVec::new(
            Opts::new(
                FINDINGS,
                "Findings raised by each detector (including records replayed to rebuild baselines).",
            ),
            &["detector"],
        )
        .expect("metric names here are valid");
        for (d, n) in engine.findings_by_detector() {
            findings.with_label_values(&[d.as_str()]).inc_by(n);
        }
        let census = engine.census();
        let mut out = Vec::new();
        out.extend(counter(
            ENGINE_EVENTS,
            "Events the engine processed (including records replayed to rebuild baselines).",
            c.events.load(Ordering::Relaxed),
        ));
        out.extend(findings.collect());
        out.extend(counter(
            FINDINGS_MERGED,
            "Findings merged into an open alert without a new alert update (same incident, no escalation).",
            c.merged.load(Ordering::Relaxed),
        ));
        out.extend(counter(
            COMMANDS_WITHHELD,
            "Revocation commands withheld by the guardrails (protected identity, fleet rate or share limits).",
            c.withheld.load(Ordering::Relaxed),
        ));
        out.extend(counter(
            LIFECYCLE_DEFERRED,
            "Lifecycle steps held back by the lifecycle's guardrails (lifecycle.max_per_hour, max_fleet_fraction), counted at every hourly pass until issued.",
            c.lifecycle_deferred.load(Ordering::Relaxed),
        ));
        out.extend(gauge(
            IDENTITIES,
            "Identities tracked by this instance.",
            census.identities,
        ));
        out.extend(gauge(
            IDENTITIES_WARMING_UP,
            "Identities whose baseline is still too young to alert on most deviations.",
            census.warming_up,
        ));
        out.extend(gauge(
            STATE_BYTES,
            "Bytes of per-identity state as allocated (keys, map slots, profiles and cold summaries, open alerts).",
            census.state_bytes,
        ));
        out.extend(gauge(
            GROUP_IDENTITIES,
            "Active identities (not cold summaries) of the whole consumer group as this instance knows it (its own, plus what the others report on the fleet topic): the fleet size guardrail fractions apply to.",
            engine.group_identities(),
        ));
        out.extend(gauge(
            IDENTITIES_COLD,
            "Identities kept as cold summaries after baseline.cold_after_days of silence.",
            census.cold,
        ));
        out.extend(counter(
            IDENTITIES_FROZEN,
            "Identities shrunk to cold summaries after baseline.cold_after_days of silence.",
            c.frozen.load(Ordering::Relaxed),
        ));
        out.extend(counter(
            IDENTITIES_WOKEN,
            "Cold identities woken by a new event.",
            c.woken.load(Ordering::Relaxed),
        ));
        out.extend(counter(
            IDENTITIES_FORGOTTEN,
            "Identities forgotten after baseline.forget_after_days of silence.",
            c.forgotten.load(Ordering::Relaxed),
        ));
        out.extend(counter(
            IDENTITIES_EVICTED,
            "Identities dropped because their partition moved to another instance.",
            c.evicted.load(Ordering::Relaxed),
        ));
        out
    }
}

impl Collector for EngineCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        Self::families(&self.engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_waiting_longer_than_the_stall_limit_makes_the_instance_not_ready() {
        use std::time::{Duration, Instant};
        let m = Metrics::register(&Registry::new()).unwrap();
        m.assigned_partitions.set(1);
        let now = Instant::now();
        assert_eq!(m.readiness_at(now), Ok(()));
        m.output_wait.begin();
        assert_eq!(m.readiness_at(now), Ok(()), "a short wait is normal");
        let why = m
            .readiness_at(now + OUTPUT_STALL + Duration::from_secs(1))
            .unwrap_err();
        assert!(why.contains("have not acknowledged"), "{why}");
        m.output_wait.end();
        assert_eq!(
            m.readiness_at(now + OUTPUT_STALL + Duration::from_secs(1)),
            Ok(()),
            "ready again once acknowledged"
        );
    }

    #[test]
    fn a_window_with_more_than_one_percent_of_misrouted_records_makes_a_shared_instance_not_ready()
    {
        let m = Metrics::register(&Registry::new()).unwrap();
        m.assigned_partitions.set(1);
        // 1% is tolerated (a container keyed by its first identity, an odd record).
        for i in 0..MISROUTE_WINDOW {
            m.misrouting.record(i % 100 == 0, true);
        }
        assert_eq!(m.readiness(), Ok(()));
        // An instance alone holds every identity's whole history: counted, not alarming.
        for i in 0..MISROUTE_WINDOW {
            m.misrouting.record(i % 10 == 0, false);
        }
        assert_eq!(m.readiness(), Ok(()));
        m.misrouting.record(false, true);
        let why = m.readiness().unwrap_err();
        assert!(
            why.starts_with("10.0% of the last 1000 input records"),
            "{why}"
        );
        assert!(why.contains("key records by principal key"), "{why}");
        // A window of well-keyed records makes it ready again; a partial one changes nothing.
        for _ in 0..MISROUTE_WINDOW - 2 {
            m.misrouting.record(false, true);
        }
        assert!(m.readiness().is_err());
        m.misrouting.record(false, true);
        assert_eq!(m.readiness(), Ok(()));
    }

    #[test]
    fn a_quantile_between_two_readings_counts_only_what_was_observed_in_between() {
        let r = Registry::new();
        let h = histogram(&r, "w_seconds", "w", &[0.001, 0.002, 0.005]).unwrap();
        for _ in 0..1000 {
            h.observe(0.0045);
        }
        let before = buckets(&h);
        assert_eq!(quantile_between(&before, &before, 0.5), None, "nothing new");
        for _ in 0..10 {
            h.observe(0.0005);
        }
        let p99 = quantile_between(&before, &buckets(&h), 0.99).unwrap();
        assert!(
            p99 <= 0.001,
            "the slow earlier observations are not in the window: {p99}"
        );
        assert!(
            quantile(&h, 0.5).unwrap() > 0.002,
            "the cumulative view still has them"
        );
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_holding_the_rank() {
        let r = Registry::new();
        let h = histogram(&r, "t_seconds", "t", &[0.001, 0.002, 0.005]).unwrap();
        assert_eq!(quantile(&h, 0.5), None);
        for _ in 0..50 {
            h.observe(0.0005);
        }
        for _ in 0..50 {
            h.observe(0.0015);
        }
        let p50 = quantile(&h, 0.5).unwrap();
        assert!((p50 - 0.001).abs() < 1e-9, "{p50}");
        let p75 = quantile(&h, 0.75).unwrap();
        assert!((p75 - 0.0015).abs() < 1e-9, "{p75}");
        h.observe(100.0);
        assert_eq!(
            quantile(&h, 1.0),
            Some(0.005),
            "+Inf reports the last finite bound"
        );
    }

    #[test]
    fn names_all_lists_exactly_the_registered_metrics() {
        use crate::config::{Model, Rules};
        let r = Registry::new();
        let m = Metrics::register(&r).unwrap();
        r.register(Box::new(EngineCollector::new(Arc::new(Engine::new(
            Rules::new(Model::embedded()),
        )))))
        .unwrap();
        // Labelled series appear once a label value is used.
        m.records_consumed.with_label_values(&["t", "auto"]).inc();
        m.records_replayed.with_label_values(&["t"]).inc();
        m.records_misrouted
            .with_label_values(&["t", "unkeyed"])
            .inc();
        m.events_decoded.with_label_values(&["t", "auto"]).inc();
        m.events_skipped.with_label_values(&["t", "auto"]).inc();
        m.events_repartitioned.with_label_values(&["t"]).inc();
        m.records_rejected
            .with_label_values(&["t", "auto", "invalid_json"])
            .inc();
        m.alerts
            .with_label_values(&["new_origin", "High", "create"])
            .inc();
        m.commands
            .with_label_values(&["revoke_credential", "dry_run"])
            .inc();
        m.delivery_errors.with_label_values(&["alerts"]).inc();
        m.consumer_lag.with_label_values(&["t", "0"]).set(1);
        m.rebalances.with_label_values(&["assign"]).inc();
        m.governance_commands
            .with_label_values(&["delete_role", "dry_run"])
            .inc();
        m.kafka_errors.with_label_values(&["consumer"]).inc();
        m.identity_records.with_label_values(&["declared"]).inc();
        let f = Registry::new();
        let fm = ForwardMetrics::register(&f).unwrap();
        fm.attempts.with_label_values(&["delivered"]).inc();
        fm.failures.with_label_values(&["timeout"]).inc();
        let mut gathered: Vec<String> = (r.gather().iter().chain(&f.gather()))
            .map(|f| f.name().to_owned())
            .collect();
        gathered.sort();
        gathered.dedup();
        let mut all: Vec<String> = names::ALL.iter().map(|s| (*s).to_owned()).collect();
        all.sort();
        assert_eq!(gathered, all);
    }

    #[test]
    fn registering_twice_on_one_registry_is_refused() {
        let r = Registry::new();
        assert!(Metrics::register(&r).is_ok());
        assert!(Metrics::register(&r).is_err());
    }
}
