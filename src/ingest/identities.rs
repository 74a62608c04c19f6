//! The identity inventory as a live input (`run --identities-topic T`): a compacted topic of
//! `schemas/identity.v1.json` records keyed by principal key, read from its start when the
//! service starts and then followed for as long as it runs. Each record replaces what was
//! declared about its identity and a tombstone removes it ([`Inventory::apply`]); the engine
//! reads the same shared table, so an owner added or an expiry extended counts from the
//! identity's next event, without a restart.
//!
//! Every instance of the group reads the whole topic (an inventory is small, and any instance may
//! own any identity), with a reader outside the consumer group that commits nothing. A record
//! that fails validation changes nothing and goes to the dead-letter topic with reason
//! `invalid_identity` and every bad field named (never a value). Since the topic is re-read at
//! every start, a bad record still in it is dead-lettered again by each start.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::Offset;
use tracing::{info, warn};

use crate::config::inventory::Applied;
use crate::config::service::ClientKind;
use crate::config::{Inventory, RunConfig};
use crate::emit::dead_letter;
use crate::emit::kafka::{self as out, OutputProducer, SourcePosition, Topics};
use crate::state::changelog::reader;
use crate::telemetry::{Metrics, RateLimit};

/// How long the start waits for the topic to be read to its end before going on with what it
/// has read (and saying so).
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the identities topic cannot be followed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(
        "the identities topic `{0}` does not exist: create it (compacted, keyed by principal key) or leave out --identities-topic"
    )]
    NoTopic(String),
    #[error("cannot read the identities topic `{topic}`: {source}")]
    Kafka { topic: String, source: KafkaError },
}

/// Follows the identities topic until dropped.
pub struct IdentityFeed {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for IdentityFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one identities-topic message did, for metrics and logs.
fn result_label(r: &Result<Applied, Vec<crate::config::Problem>>) -> &'static str {
    match r {
        Ok(Applied::Declared) => "declared",
        Ok(Applied::Updated) => "updated",
        Ok(Applied::Removed) => "removed",
        Err(_) => "rejected",
    }
}

/// Reads `topic` into `inventory` to its end (waiting at most [`CATCH_UP_TIMEOUT`]), then
/// follows it on a thread of its own until the returned guard is dropped. Rejected records are
/// produced to the dead-letter topic on `runtime`.
///
/// # Errors
/// [`FeedError`]: the topic does not exist, or librdkafka refused the reader or its assignment.
pub fn follow(
    cfg: &RunConfig,
    topic: &str,
    inventory: Inventory,
    producer: OutputProducer,
    metrics: &Arc<Metrics>,
    runtime: tokio::runtime::Handle,
) -> Result<IdentityFeed, FeedError> {
    let err = |source| FeedError::Kafka {
        topic: topic.to_owned(),
        source,
    };
    let consumer = reader(
        &cfg.brokers,
        &format!("{}.identities", cfg.group_id),
        cfg.kafka_properties_for(ClientKind::Consumer),
    )
    .map_err(err)?;
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(err)?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .filter(|n| *n > 0)
        .ok_or_else(|| FeedError::NoTopic(topic.to_owned()))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(err)?;
    }
    consumer.assign(&tpl).map_err(err)?;
    inventory.set_live();
    let stop = Arc::new(AtomicBool::new(false));
    let (caught_up_tx, caught_up) = std::sync::mpsc::channel::<()>();
    let topics = Arc::new(Topics::new(cfg));
    let thread = {
        let stop = stop.clone();
        let topic = topic.to_owned();
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name("identities".into())
            .spawn(move || {
                let mut at_end: HashSet<i32> = HashSet::new();
                let mut caught_up_tx = Some(caught_up_tx);
                let log = RateLimit::new(10_000);
                while !stop.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(200)) {
                        None => {}
                        Some(Err(KafkaError::PartitionEOF(p))) => {
                            at_end.insert(p);
                            if at_end.len() as i32 >= partitions
                                && let Some(tx) = caught_up_tx.take()
                            {
                                let _ = tx.send(());
                            }
                        }
                        // The client's context reports errors (and counts them); retry.
                        Some(Err(_)) => std::thread::sleep(Duration::from_millis(500)),
                        Some(Ok(m)) => {
                            // No key, or one not UTF-8, is refused like an empty one.
                            let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
                            let applied = inventory.apply(key.unwrap_or(""), m.payload());
                            metrics
                                .identity_records
                                .with_label_values(&[result_label(&applied)])
                                .inc();
                            metrics.identities_declared.set(inventory.len() as i64);
                            let Err(problems) = applied else { continue };
                            let why: Vec<String> = problems
                                .iter()
                                .map(|p| format!("{}: {}", p.key, p.why))
                                .collect();
                            let why = why.join("; ");
                            if let Some(held_back) = log.check(crate::telemetry::now_ms()) {
                                warn!(topic = %topic, partition = m.partition(), offset = m.offset(), problems = %why, held_back, "Refused an identity record; it goes to the dead-letter topic and the identity's metadata stands as it was.");
                            }
                            let at = SourcePosition {
                                topic: &topic,
                                partition: m.partition(),
                                offset: m.offset(),
                                key: m.key(),
                            };
                            let letter = dead_letter::rejected(
                                m.payload().unwrap_or_default(),
                                "invalid_identity",
                                why,
                                at,
                                None,
                            );
                            let (producer, topics, metrics) =
                                (producer.clone(), topics.clone(), metrics.clone());
                            runtime.spawn(async move {
                                let dl = topics.of(letter.route).to_owned();
                                let sent = match out::enqueue(&producer, &dl, &letter).await {
                                    Ok(f) => out::deliver(f, letter, &producer, &topics, &metrics)
                                        .await
                                        .map_err(|e| e.to_string()),
                                    Err(e) => Err(e.to_string()),
                                };
                                if let Err(error) = sent {
                                    warn!(topic = %dl, %error, "A refused identity record could not be dead-lettered; it is dead-lettered again at the next start.");
                                }
                            });
                        }
                    }
                }
            })
            .expect("spawning a thread")
    };
    match caught_up.recv_timeout(CATCH_UP_TIMEOUT) {
        Ok(()) => info!(
            topic,
            declared = metrics.identities_declared.get(),
            "Read the identities topic to its end; following it."
        ),
        Err(_) => warn!(
            topic,
            timeout = ?CATCH_UP_TIMEOUT,
            "The identities topic was not read to its end in time; starting with what was read and following it."
        ),
    }
    Ok(IdentityFeed {
        stop,
        thread: Some(thread),
    })
}
