//! The service's Kafka output. Decisions become CloudEvents in binary mode (the JSON body is the
//! alert or command; `ce_*` headers let consumers route without parsing), dead letters are built
//! in [`super::dead_letter`]; building an [`Outgoing`] is pure.
//!
//! The idempotent producer sends them ([`enqueue`]), and the *acknowledger* ([`acknowledge`])
//! awaits each input record's deliveries in input order, re-sending a failed one a few times,
//! and only then stores the record's offset: an input offset is never committed before
//! everything it caused is acknowledged. The channel that feeds the acknowledger is bounded
//! (`max_in_flight`), which is the backpressure: when the brokers are slow or down, consumption
//! waits instead of buffering without limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::{AlertFormat, EmitError, command, render_as};
use crate::config::RunConfig;
use crate::config::service::ClientKind;
use crate::decide::Decision;
use crate::decode::time::format_rfc3339_ms;
use crate::kafka::{Hooks, KafkaContext, Role, client_config};
use crate::telemetry::Metrics;

/// CloudEvents `type` of alerts.
pub const ALERT_TYPE: &str = "dev.driftwatch.detection_finding.v1";
/// `ce_type` of alerts written as ECS documents (`--alert-format ecs`).
pub const ECS_ALERT_TYPE: &str = "dev.driftwatch.alert.ecs.v1";
/// `ce_dataschema` of ECS alerts.
pub const ECS_SCHEMA_URI: &str = "https://driftwatch.dev/schemas/alert-ecs.v1.json";
/// `ce_dataschema` of OCSF alerts.
pub const OCSF_SCHEMA_URI: &str = "https://schema.ocsf.io/1.1.0/classes/detection_finding";
/// CloudEvents `type` of revocation commands.
pub const COMMAND_TYPE: &str = "dev.driftwatch.revocation_command.v1";

/// Which output topic a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Alerts,
    Commands,
    /// Governance commands of the dormancy lifecycle.
    Governance,
    DeadLetter,
    /// An unkeyed input's event re-keyed by principal key (`ingest::repartition`).
    Repartition,
}

impl Route {
    /// The output's name in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Alerts => "alerts",
            Route::Commands => "commands",
            Route::Governance => "governance",
            Route::DeadLetter => "dead_letter",
            Route::Repartition => "repartition",
        }
    }
}

/// A message ready to be produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub route: Route,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// An alert or a command as a CloudEvent keyed by the identity's principal key.
///
/// `ce_id` is stable across replays (the finding uid and its count, or the command id), so a
/// consumer deduplicating on `ce_source` + `ce_id` drops the duplicates at-least-once delivery
/// can cause. `now_ms` stamps a command's issue and expiry ([`render_as`]); alerts are written
/// in `format`.
pub fn decision(d: &Decision, source: &str, now_ms: i64, format: AlertFormat) -> Outgoing {
    let body = render_as(d, now_ms, format);
    let (route, ty, id, key, time_ms, schema) = match d {
        Decision::Alert(a) => (
            Route::Alerts,
            match format {
                AlertFormat::Ocsf => ALERT_TYPE,
                AlertFormat::Ecs => ECS_ALERT_TYPE,
            },
            super::ocsf::message_uid(a),
            a.event.principal.as_str(),
            a.time_ms,
            match format {
                AlertFormat::Ocsf => OCSF_SCHEMA_URI,
                AlertFormat::Ecs => ECS_SCHEMA_URI,
            },
        ),
        Decision::Command(c) => (
            if d.is_governance() {
                Route::Governance
            } else {
                Route::Commands
            },
            COMMAND_TYPE,
            c.command_id.clone(),
            c.identity_key.as_str(),
            c.event_time_ms,
            command::SCHEMA_URI,
        ),
    };
    cloud_event(
        route,
        &body,
        key,
        source,
        [id, ty.to_owned(), schema.to_owned()],
        time_ms,
    )
}

/// An OCSF Detection Finding raised about an identity rather than an event (the hourly
/// `excess_privilege` finding), as the CloudEvent alerts are sent as: `ce_id` is the finding's
/// stable uid, so a consumer deduplicating on it keeps one per excess.
pub fn finding(v: &serde_json::Value, key: &str, source: &str) -> Outgoing {
    let time_ms = v["time"].as_i64().unwrap_or_default();
    let uid = v["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let (ty, schema) = (ALERT_TYPE.to_owned(), OCSF_SCHEMA_URI.to_owned());
    cloud_event(Route::Alerts, v, key, source, [uid, ty, schema], time_ms)
}

/// `body` as a binary-mode CloudEvent keyed by principal key `key`: `[id, type, dataschema]`
/// in its `ce_*` headers with `source`, the event time and the subject.
fn cloud_event(
    route: Route,
    body: &serde_json::Value,
    key: &str,
    source: &str,
    [id, ty, schema]: [String; 3],
    time_ms: i64,
) -> Outgoing {
    Outgoing {
        route,
        key: Some(key.as_bytes().to_vec()),
        payload: serde_json::to_vec(body).expect("a serde_json::Value always serialises"),
        headers: vec![
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", id),
            ("ce_source", source.to_owned()),
            ("ce_type", ty),
            ("ce_time", format_rfc3339_ms(time_ms)),
            ("ce_subject", key.to_owned()),
            ("ce_dataschema", schema),
            ("content-type", "application/json".to_owned()),
        ],
    }
}

/// Where a rejected record came from.
#[derive(Debug, Clone, Copy)]
pub struct SourcePosition<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
}

/// The producer of alerts, commands and dead letters.
pub type OutputProducer = FutureProducer<KafkaContext<ProducerStats>>;

/// The producer's statistics hook: its queue length.
pub struct ProducerStats {
    queue: IntGauge,
}

impl Hooks for ProducerStats {
    fn stats(&self, s: Statistics) {
        self.queue.set(i64::try_from(s.msg_cnt).unwrap_or(i64::MAX));
    }
}

/// Creates the service's producer.
///
/// # Errors
/// librdkafka's refusal of the configuration.
pub fn producer(cfg: &RunConfig, metrics: &Metrics) -> Result<OutputProducer, KafkaError> {
    client_config(
        &cfg.brokers,
        Role::ServiceProducer,
        cfg.kafka_properties_for(ClientKind::Producer),
    )
    .create_with_context(KafkaContext::with_hooks(
        "producer",
        Some(metrics),
        ProducerStats {
            queue: metrics.producer_queue_messages.clone(),
        },
    ))
}

/// Output topic names by route.
#[derive(Debug, Clone)]
pub struct Topics {
    pub alerts: String,
    pub commands: String,
    pub governance: String,
    pub dead_letter: String,
    pub repartition: String,
}

impl Topics {
    pub fn new(cfg: &RunConfig) -> Topics {
        Topics {
            alerts: cfg.alerts_topic.clone(),
            commands: cfg.commands_topic.clone(),
            governance: cfg.governance_topic.clone(),
            dead_letter: cfg.dead_letter_topic.clone(),
            repartition: cfg.repartition_topic.clone(),
        }
    }

    pub fn of(&self, r: Route) -> &str {
        match r {
            Route::Alerts => &self.alerts,
            Route::Commands => &self.commands,
            Route::Governance => &self.governance,
            Route::DeadLetter => &self.dead_letter,
            Route::Repartition => &self.repartition,
        }
    }
}

/// Hands a message to the producer, waiting while its queue is full.
///
/// # Errors
/// The producer refused the message outright (too large, unknown topic, ...).
pub async fn enqueue(
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

/// How often one message is sent before the service gives up on it.
pub const DELIVERY_ATTEMPTS: u32 = 5;

/// Awaits one message's acknowledgement, re-sending it a few times on failure.
pub(crate) async fn deliver(
    mut fut: DeliveryFuture,
    o: Outgoing,
    producer: &OutputProducer,
    topics: &Topics,
    metrics: &Metrics,
) -> Result<(), EmitError> {
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
            return Err(EmitError::Delivery {
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
            .map_err(|source| EmitError::Delivery {
                topic: topic.to_owned(),
                attempts: attempt,
                source,
            })?;
    }
}

/// What the acknowledger is handed, in input order.
pub enum Ack {
    /// An input record and its outputs.
    Record(Pending),
    /// Outputs of no input record (the lifecycle's pass while the input is idle): awaited like
    /// a record's, before the next commit point, with no offset to store.
    Outputs(Vec<(DeliveryFuture, Outgoing)>),
    /// A commit point: answered once every record handed before it is acknowledged and its
    /// offset stored.
    Barrier(oneshot::Sender<()>),
}

/// One input record's outputs, awaiting acknowledgement before its offset is stored.
pub struct Pending {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub received: Instant,
    pub deliveries: Vec<(DeliveryFuture, Outgoing)>,
}

/// The acknowledger: awaits each record's deliveries in input order, then stores its offset with
/// `store_offset(topic, partition, offset)` (the last one per partition of each batch). Returns
/// when the channel closes, or with the first message that could not be delivered.
///
/// # Errors
/// [`EmitError::Delivery`]: a message failed [`DELIVERY_ATTEMPTS`] times; its record's offset
/// and every later one are not stored.
pub async fn acknowledge(
    mut rx: mpsc::Receiver<Ack>,
    producer: OutputProducer,
    topics: Arc<Topics>,
    metrics: Arc<Metrics>,
    mut store_offset: impl FnMut(&str, i32, i64),
) -> Result<(), EmitError> {
    let mut batch = Vec::with_capacity(512);
    let mut last: Vec<(Arc<str>, i32, i64)> = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        let mut n = 0i64;
        for item in batch.drain(..) {
            let p = match item {
                Ack::Record(p) => p,
                Ack::Outputs(deliveries) => {
                    for (fut, o) in deliveries {
                        deliver(fut, o, &producer, &topics, &metrics).await?;
                    }
                    continue;
                }
                Ack::Barrier(done) => {
                    for (t, part, offset) in last.drain(..) {
                        store_offset(&t, part, offset);
                    }
                    metrics.records_acknowledged.inc_by(n as u64);
                    metrics.records_in_flight.sub(n);
                    n = 0;
                    let _ = done.send(());
                    continue;
                }
            };
            n += 1;
            let had_outputs = !p.deliveries.is_empty();
            for (fut, o) in p.deliveries {
                metrics.output_wait.begin();
                deliver(fut, o, &producer, &topics, &metrics).await?;
                metrics.output_wait.end();
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
            store_offset(&t, part, offset);
        }
        metrics.records_acknowledged.inc_by(n as u64);
        metrics.records_in_flight.sub(n);
    }
    Ok(())
}
