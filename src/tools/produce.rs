//! Loading log records into a Kafka topic the way upstream pipelines should: each record keyed by
//! its identity's principal key (so one partition owns an identity), in event-time order, bytes
//! unchanged. Used by `driftwatch produce`, the demo, the tests and the benchmark.
//!
//! Undecodable records are produced too (unkeyed, in input position), so the service's
//! dead-letter path sees them exactly as a real stream would deliver them.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::simulate::{self, Labels, SimConfig};
use crate::cli::ProduceArgs;
use crate::config::settings::KafkaProperty;
use crate::decode::{self, Decoded, FormatHint};
use crate::event::RawRef;
use crate::ingest::file;
use crate::kafka::{KafkaContext, Role, client_config};

/// A producer loading records (see [`Role::Loader`]), with pass-through properties.
///
/// # Errors
/// librdkafka's refusal of the configuration.
pub fn loader<'p>(
    brokers: &str,
    properties: impl IntoIterator<Item = (&'p str, &'p str)>,
) -> Result<FutureProducer<KafkaContext>, KafkaError> {
    client_config(brokers, Role::Loader, properties)
        .create_with_context(KafkaContext::new("loader"))
}

/// `driftwatch produce`: loads the input files (or a simulated fleet) into the topic, keyed and
/// ordered as [`keyed_records`] says, at most `--rate` records a second; returns how many the
/// brokers acknowledged.
///
/// # Errors
/// Malformed `--kafka-property` arguments (a [`ConfigError`]), an unreadable input, or a
/// producer the brokers refuse.
pub async fn run(args: &ProduceArgs) -> anyhow::Result<u64> {
    let props = KafkaProperty::pairs("produce", &args.kafka_property)?;
    let records = if args.simulate {
        let cfg = SimConfig {
            identities: args.identities,
            days: args.days,
            seed: args.seed,
            ..SimConfig::default()
        };
        simulated_fleet(&cfg).0
    } else {
        let mut data = Vec::new();
        for input in &args.inputs {
            let bytes = file::read_input(input)?;
            file::split_records(&bytes, input, |rec, _| data.push(rec.to_vec()));
        }
        keyed_records(
            data.iter().map(Vec::as_slice),
            args.format,
            args.cluster.as_deref(),
        )
    };
    let producer = loader(
        &args.brokers,
        props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
    .context("creating the Kafka producer")?;
    let rate = (args.rate > 0).then_some(args.rate);
    send_paced(&producer, &args.topic, &records, rate)
        .await
        .with_context(|| format!("producing to `{}` at {}", args.topic, args.brokers))
}

/// A simulated fleet (`simulate::generate`) as keyed records in event-time order, with its labels.
pub fn simulated_fleet(cfg: &SimConfig) -> (Vec<KeyedRecord>, Labels) {
    let (ct, k8s, labels) = simulate::generate(cfg);
    let lines: Vec<&[u8]> = ct.iter().chain(&k8s).map(|l| l.as_bytes()).collect();
    (keyed_records(lines, FormatHint::Auto, None), labels)
}

/// Events (not skipped entries) a record decodes to.
pub fn events_in(bytes: &[u8]) -> u64 {
    let raw = crate::event::RawRef::default();
    let mut n = 0;
    crate::decode::decode_record(bytes, FormatHint::Auto, None, &raw, &mut |_, _, d| {
        n += u64::from(matches!(d, Ok(crate::decode::Decoded::Event(_))));
    });
    n
}

/// Records as they reach Kafka from S3 and CloudWatch Logs, for `:unkeyed` inputs: CloudTrail
/// records in delivery documents (`{"Records": [...]}`, pretty-printed as S3 holds them) of
/// `per_document` consecutive records, so of many identities; any other record alone; none
/// keyed. Each identity's records keep their order.
pub fn unkeyed_deliveries(records: &[KeyedRecord], per_document: usize) -> Vec<KeyedRecord> {
    let mut out = Vec::new();
    let mut doc: Vec<&KeyedRecord> = Vec::new();
    let flush = |doc: &mut Vec<&KeyedRecord>, out: &mut Vec<KeyedRecord>| {
        let Some(first) = doc.first() else {
            return;
        };
        let mut bytes = b"{\n  \"Records\": [\n    ".to_vec();
        for (i, r) in doc.iter().enumerate() {
            if i > 0 {
                bytes.extend_from_slice(b",\n    ");
            }
            bytes.extend_from_slice(&r.bytes);
        }
        bytes.extend_from_slice(b"\n  ]\n}");
        out.push(KeyedRecord {
            key: None,
            time_ms: first.time_ms,
            bytes,
        });
        doc.clear();
    };
    for r in records {
        if crate::decode::detect_format(&r.bytes) == Ok(crate::event::SourceFormat::Cloudtrail) {
            doc.push(r);
            if doc.len() >= per_document {
                flush(&mut doc, &mut out);
            }
        } else {
            out.push(KeyedRecord {
                key: None,
                ..r.clone()
            });
        }
    }
    flush(&mut doc, &mut out);
    out
}

/// Creates topics (name, partitions) with replication factor 1, for tests and benchmarks.
///
/// # Errors
/// When the brokers cannot be reached or refuse a topic.
pub async fn create_topics(brokers: &str, topics: &[(&str, i32)]) -> Result<(), KafkaError> {
    let admin: AdminClient<KafkaContext> =
        client_config(brokers, Role::Admin, []).create_with_context(KafkaContext::new("admin"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.create_topics(&new, &opts).await? {
        r.map_err(|(_, code)| KafkaError::AdminOp(code))?;
    }
    Ok(())
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRecord {
    /// The principal key of the record's (first) event; `None` when it does not decode.
    pub key: Option<String>,
    pub time_ms: i64,
    pub bytes: Vec<u8>,
}

/// Keys records by principal and orders them by event time (stable; an undecodable record keeps
/// the time of the record before it, so it stays in place).
pub fn keyed_records<'a>(
    records: impl IntoIterator<Item = &'a [u8]>,
    format: FormatHint,
    cluster: Option<&str>,
) -> Vec<KeyedRecord> {
    let mut out = Vec::new();
    let mut last_time = i64::MIN;
    let raw = RawRef::default();
    for bytes in records {
        let mut first: Option<(String, i64)> = None;
        decode::decode_record(bytes, format, cluster, &raw, &mut |_, _, r| {
            if let (None, Ok(Decoded::Event(e))) = (&first, r) {
                first = Some((e.principal.clone(), e.time_ms));
            }
        });
        let (key, time_ms) = match first {
            Some((k, t)) => (Some(k), t),
            None => (None, last_time),
        };
        last_time = time_ms;
        out.push(KeyedRecord {
            key,
            time_ms,
            bytes: bytes.to_vec(),
        });
    }
    out.sort_by_key(|r| r.time_ms);
    out
}

/// Produces records to `topic` with at most `window` awaiting acknowledgement; returns how many
/// were acknowledged.
///
/// # Errors
/// The first delivery error.
pub async fn send_all<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    records: &[KeyedRecord],
    window: usize,
) -> Result<u64, KafkaError> {
    let mut pending: std::collections::VecDeque<DeliveryFuture> = std::collections::VecDeque::new();
    let mut acked = 0u64;
    for r in records {
        loop {
            let rec: FutureRecord<'_, str, [u8]> = FutureRecord {
                topic,
                partition: None,
                payload: Some(&r.bytes),
                key: r.key.as_deref(),
                timestamp: None,
                headers: None,
            };
            match producer.send_result(rec) {
                Ok(f) => {
                    pending.push_back(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match pending.pop_front() {
                        Some(f) => acked += wait(f).await?,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
        if pending.len() >= window
            && let Some(f) = pending.pop_front()
        {
            acked += wait(f).await?;
        }
    }
    for f in pending {
        acked += wait(f).await?;
    }
    Ok(acked)
}

/// As [`send_all`], at most `per_second` records a second (in tenth-of-a-second slices), so a
/// file or a simulated fleet becomes a stream that lasts; `None` sends as fast as possible.
///
/// # Errors
/// The first delivery error.
pub async fn send_paced<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    records: &[KeyedRecord],
    per_second: Option<u32>,
) -> Result<u64, KafkaError> {
    let Some(rate) = per_second.filter(|r| *r > 0) else {
        return send_all(producer, topic, records, 100_000).await;
    };
    let slice = (rate as usize / 10).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut acked = 0;
    for chunk in records.chunks(slice) {
        tick.tick().await;
        acked += send_all(producer, topic, chunk, slice).await?;
    }
    Ok(acked)
}

async fn wait(f: DeliveryFuture) -> Result<u64, KafkaError> {
    match f.await {
        Ok(Ok(_)) => Ok(1),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_keyed_by_principal_and_ordered_by_event_time_with_bad_ones_kept_in_place() {
        let late = br#"{"time":"2026-01-05T10:00:00Z","principal":{"key":"svc-b"},"action":"s3:GetObject"}"#;
        let early = br#"{"time":"2026-01-05T09:00:00Z","principal":{"key":"svc-a"},"action":"s3:GetObject"}"#;
        let bad = b"not json";
        let got = keyed_records([&late[..], &bad[..], &early[..]], FormatHint::Auto, None);
        let keys: Vec<_> = got.iter().map(|r| r.key.as_deref()).collect();
        assert_eq!(keys, [Some("svc-a"), Some("svc-b"), None]);
        assert_eq!(got[2].bytes, bad, "bytes are unchanged");
    }
}
