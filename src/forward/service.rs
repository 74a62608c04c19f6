//! The forwarding loop: consume the topic in a consumer group, POST each message to the webhook
//! until it is taken ([`super::retry`] says when to try again), or write it to the dead-letter
//! topic, and only then store its offset. One message at a time, so messages arrive in the order
//! of their partition (and of their arrival across partitions); librdkafka commits the stored
//! offsets every second and the loop once more when it stops.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::Registry;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::{debug, info, warn};

use super::client::{Client, ClientError};
use super::config::ForwardConfig;
use super::request::{self, Message};
use super::retry::{Failure, Step, next_step};
use crate::config::service::ClientKind;
use crate::emit::dead_letter::header as dlq;
use crate::kafka::{KafkaContext, Role, client_config};
use crate::telemetry::metrics::ForwardMetrics;
use crate::telemetry::{RateLimit, now_ms};

/// Header of a forward dead letter: how many attempts were made.
pub const ATTEMPTS_HEADER: &str = "dw_attempts";
/// Header of a forward dead letter: the webhook as `scheme://host:port` (never its path).
pub const TARGET_HEADER: &str = "dw_target";

/// Why `driftwatch forward` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot create the Kafka {client}: {source}")]
    Client {
        client: &'static str,
        source: KafkaError,
    },
    #[error("cannot subscribe to `{topic}`: {source}")]
    Subscribe { topic: String, source: KafkaError },
    #[error(transparent)]
    Http(#[from] ClientError),
    #[error(
        "the message at {position} could not be written to the dead-letter topic `{dead_letter_topic}`: {source}; its offset was not committed, so it will be forwarded again after a restart"
    )]
    DeadLetter {
        /// `topic [partition] offset N`.
        position: String,
        dead_letter_topic: String,
        source: Box<KafkaError>,
    },
}

/// Totals printed when `forward` stops.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ForwardSummary {
    /// Messages taken from the topic and finished (delivered or dead-lettered).
    pub forwarded: u64,
    pub delivered: u64,
    pub dead_lettered: u64,
    /// Attempts that failed and were tried again.
    pub retries: u64,
    #[serde(
        rename = "elapsed_seconds",
        serialize_with = "crate::telemetry::serialize_seconds"
    )]
    pub elapsed: Duration,
}

impl std::fmt::Display for ForwardSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "driftwatch forward: {} messages, {} delivered, {} dead-lettered, {} retries, in {:.1}s",
            self.forwarded,
            self.delivered,
            self.dead_lettered,
            self.retries,
            self.elapsed.as_secs_f64()
        )
    }
}

/// How one message ended.
enum Done {
    Delivered,
    DeadLettered,
}

/// `driftwatch forward`: its clients, its metrics and the loop.
pub struct Forwarder {
    cfg: ForwardConfig,
    consumer: Arc<StreamConsumer<KafkaContext>>,
    producer: FutureProducer<KafkaContext>,
    client: Client,
    metrics: Arc<ForwardMetrics>,
    summary: ForwardSummary,
    failure_log: RateLimit,
    /// Backoff jitter.
    rng: ChaCha8Rng,
}

impl Forwarder {
    /// Creates the consumer, the dead-letter producer and the webhook client, and registers
    /// the metrics on `registry`.
    ///
    /// # Errors
    /// [`ForwardError`]: librdkafka refuses a client's configuration, or TLS cannot be set up.
    pub fn new(cfg: ForwardConfig, registry: &Registry) -> Result<Forwarder, ForwardError> {
        let metrics = ForwardMetrics::register(registry)
            .expect("a fresh registry holds no metric of these names");
        let consumer: StreamConsumer<KafkaContext> = client_config(
            &cfg.brokers,
            Role::Forwarder { group: &cfg.group },
            cfg.kafka_properties_for(ClientKind::Consumer),
        )
        .create_with_context(KafkaContext::new("consumer"))
        .map_err(|source| ForwardError::Client {
            client: "consumer",
            source,
        })?;
        let producer: FutureProducer<KafkaContext> = client_config(
            &cfg.brokers,
            Role::ServiceProducer,
            cfg.kafka_properties_for(ClientKind::Producer),
        )
        .create_with_context(KafkaContext::new("producer"))
        .map_err(|source| ForwardError::Client {
            client: "producer",
            source,
        })?;
        let client = Client::new(cfg.target.clone(), cfg.ca_file.as_deref(), cfg.timeout)?;
        Ok(Forwarder {
            cfg,
            consumer: Arc::new(consumer),
            producer,
            client,
            metrics,
            summary: ForwardSummary::default(),
            failure_log: RateLimit::new(10_000),
            rng: ChaCha8Rng::seed_from_u64(now_ms() as u64 ^ u64::from(std::process::id())),
        })
    }

    /// `/readyz` of the forwarder: partitions assigned, and the current message not failing
    /// for more than 10 s.
    pub fn readiness(&self) -> crate::telemetry::http::Readiness {
        let consumer = self.consumer.clone();
        let metrics = self.metrics.clone();
        Arc::new(move || {
            let assigned = consumer.assignment().map_or(0, |a| a.count());
            metrics.readiness(assigned)
        })
    }

    /// Forwards until `shutdown` resolves. A request in flight then is abandoned (its message
    /// was not acknowledged, so it is forwarded again by the next run, with the same
    /// `Idempotency-Key`); the offsets of finished messages are committed.
    ///
    /// # Errors
    /// [`ForwardError`]: the subscription failed, or a dead letter could not be written (its
    /// offset and later ones are then not committed).
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ForwardSummary, ForwardError> {
        let started = Instant::now();
        self.consumer
            .subscribe(&[&self.cfg.from])
            .map_err(|source| ForwardError::Subscribe {
                topic: self.cfg.from.clone(),
                source,
            })?;
        info!(
            from = %self.cfg.from,
            to = %self.cfg.target,
            group = %self.cfg.group,
            dead_letter_topic = %self.cfg.dead_letter_topic,
            signed = self.cfg.secret.is_some(),
            headers = self.cfg.headers.len(),
            max_attempts = self.cfg.retry.max_attempts,
            timeout_seconds = self.cfg.timeout.as_secs_f64(),
            "driftwatch forward started."
        );
        tokio::pin!(shutdown);
        let consumer = self.consumer.clone();
        let result = loop {
            let m = tokio::select! {
                () = &mut shutdown => break Ok(()),
                m = consumer.recv() => m,
            };
            let m = match m {
                Ok(m) => m.detach(),
                Err(error) => {
                    debug!(%error, "Kafka consumer error; librdkafka keeps reconnecting.");
                    continue;
                }
            };
            let done = tokio::select! {
                () = &mut shutdown => {
                    info!(topic = m.topic(), partition = m.partition(), offset = m.offset(), "Stopping: the message in hand is left to the next run.");
                    break Ok(());
                }
                done = self.forward(&m) => done,
            };
            match done {
                Ok(done) => {
                    self.summary.forwarded += 1;
                    match done {
                        Done::Delivered => self.summary.delivered += 1,
                        Done::DeadLettered => self.summary.dead_lettered += 1,
                    }
                    if let Err(error) = consumer.store_offset(m.topic(), m.partition(), m.offset())
                    {
                        // Only for a partition revoked meanwhile: its next owner forwards it again.
                        debug!(%error, topic = m.topic(), partition = m.partition(), offset = m.offset(), "Offset not stored.");
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.metrics.failing.end();
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                warn!(%error, "Final offset commit failed; messages since the last commit will be forwarded again.")
            }
        }
        consumer.unsubscribe();
        let mut summary = self.summary.clone();
        summary.elapsed = started.elapsed();
        result.map(|()| summary)
    }

    /// Delivers one message, retrying as the policy says, or dead-letters it.
    async fn forward(&mut self, m: &OwnedMessage) -> Result<Done, ForwardError> {
        let headers: Vec<(String, Vec<u8>)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .filter_map(|h| Some((h.key.to_owned(), h.value?.to_vec())))
                    .collect()
            })
            .unwrap_or_default();
        let body = Bytes::copy_from_slice(m.payload().unwrap_or_default());
        let msg = Message {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            headers: &headers,
            body: &body,
        };
        let request_headers = request::headers(&msg, self.cfg.secret.as_ref(), &self.cfg.headers);
        let key = request::idempotency_key(&msg);
        let mut attempt = 1;
        let failure = loop {
            let began = Instant::now();
            let result = self
                .client
                .post(request_headers.clone(), body.clone())
                .await;
            self.metrics
                .request_seconds
                .observe(began.elapsed().as_secs_f64());
            if let Err(f) = &result {
                self.metrics.failing.begin();
                self.metrics.failures.with_label_values(&[f.kind()]).inc();
            }
            let jitter = self.rng.random::<f64>();
            match next_step(&self.cfg.retry, attempt, result.clone(), jitter) {
                Step::Delivered => {
                    self.metrics.failing.end();
                    self.metrics
                        .attempts
                        .with_label_values(&["delivered"])
                        .inc();
                    if let Some(ms) = m.timestamp().to_millis() {
                        self.metrics
                            .lag_seconds
                            .observe((now_ms() - ms).max(0) as f64 / 1000.0);
                    }
                    debug!(
                        topic = msg.topic,
                        partition = msg.partition,
                        offset = msg.offset,
                        attempt,
                        "Delivered to the webhook."
                    );
                    return Ok(Done::Delivered);
                }
                Step::RetryAfter(wait) => {
                    self.metrics.attempts.with_label_values(&["retried"]).inc();
                    self.summary.retries += 1;
                    let error = result.err().map(|f| f.to_string()).unwrap_or_default();
                    if let Some(suppressed) = self.failure_log.check(now_ms()) {
                        warn!(topic = msg.topic, partition = msg.partition, offset = msg.offset, idempotency_key = %key, attempt, %error, retry_in = ?wait, suppressed, "Webhook delivery failed; trying again.");
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Step::DeadLetter(f) => {
                    let result = if f.retryable() {
                        "gave_up"
                    } else {
                        "permanent_failure"
                    };
                    self.metrics.attempts.with_label_values(&[result]).inc();
                    break f;
                }
            }
        };
        warn!(topic = msg.topic, partition = msg.partition, offset = msg.offset, idempotency_key = %key, attempts = attempt, reason = %failure.code(), error = %failure, dead_letter_topic = %self.cfg.dead_letter_topic, "The webhook did not take the message; it goes to the dead-letter topic.");
        self.dead_letter(m, &msg, &failure, attempt).await?;
        self.metrics.failing.end();
        self.metrics.dead_letters.inc();
        Ok(Done::DeadLettered)
    }

    /// Writes the message, its key, body and headers unchanged, to the dead-letter topic with
    /// why and where from, and awaits the brokers' acknowledgement.
    async fn dead_letter(
        &self,
        m: &OwnedMessage,
        msg: &Message<'_>,
        failure: &Failure,
        attempts: u32,
    ) -> Result<(), ForwardError> {
        let added = dead_letter_headers(msg, failure, attempts, &self.cfg.target.to_string());
        let mut headers = OwnedHeaders::new_with_capacity(msg.headers.len() + added.len());
        for (k, v) in msg.headers {
            if added.iter().all(|(a, _)| a != k) {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
        }
        for (k, v) in &added {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord {
            topic: &self.cfg.dead_letter_topic,
            partition: None,
            payload: m.payload(),
            key: m.key(),
            timestamp: None,
            headers: Some(headers),
        };
        let error = |source| ForwardError::DeadLetter {
            position: format!("{} [{}] offset {}", msg.topic, msg.partition, msg.offset),
            dead_letter_topic: self.cfg.dead_letter_topic.clone(),
            source: Box::new(source),
        };
        self.producer
            .send(record, rdkafka::util::Timeout::Never)
            .await
            .map(|_| ())
            .map_err(|(e, _)| error(e))
    }
}

/// What a forward dead letter adds to the original headers: `dw_reason` (the failure's code,
/// e.g. `http_400`, `timeout`), `dw_error` (a sentence of driftwatch's own, never the
/// receiver's response body), `dw_attempts`, `dw_target` (`scheme://host:port`), and the
/// original `dw_source_topic`, `dw_source_partition`, `dw_source_offset`.
pub fn dead_letter_headers(
    m: &Message<'_>,
    failure: &Failure,
    attempts: u32,
    target: &str,
) -> Vec<(&'static str, String)> {
    vec![
        (dlq::REASON, failure.code()),
        (dlq::ERROR, failure.to_string()),
        (ATTEMPTS_HEADER, attempts.to_string()),
        (TARGET_HEADER, target.to_owned()),
        (dlq::SOURCE_TOPIC, m.topic.to_owned()),
        (dlq::SOURCE_PARTITION, m.partition.to_string()),
        (dlq::SOURCE_OFFSET, m.offset.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_names_the_reason_attempts_target_and_source_position() {
        let headers = [("ce_id".to_owned(), b"c-1".to_vec())];
        let m = Message {
            topic: "driftwatch.commands",
            partition: 3,
            offset: 17,
            headers: &headers,
            body: b"{}",
        };
        let f = crate::forward::retry::classify(400, None).unwrap_err();
        let h = dead_letter_headers(&m, &f, 1, "https://soar.example:443");
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("dw_reason"), Some("http_400"));
        assert_eq!(get("dw_error"), Some("HTTP 400 Bad Request"));
        assert_eq!(get("dw_attempts"), Some("1"));
        assert_eq!(get("dw_target"), Some("https://soar.example:443"));
        assert_eq!(get("dw_source_topic"), Some("driftwatch.commands"));
        assert_eq!(get("dw_source_partition"), Some("3"));
        assert_eq!(get("dw_source_offset"), Some("17"));
    }
}
