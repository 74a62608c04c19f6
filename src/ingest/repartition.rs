//! The repartition stage, the Kafka Streams way: records of inputs declared `:unkeyed` (S3
//! delivery documents of many identities, CloudWatch Logs batches, Pub/Sub sink messages) are
//! decoded, split into their events, and each event is re-produced to an internal topic keyed by
//! its principal key, partitioned as a Java client would (murmur2), so one partition, and so one
//! instance, owns each identity. The stateful stage reads that topic like a keyed input.
//!
//! A repartitioned record is the event's own bytes in its source's format (a CloudTrail record,
//! a Kubernetes audit event), with insignificant whitespace removed, so the stateful stage
//! decodes exactly what the stateless one did: driftwatch's own event format would lose what
//! detectors read from the source (a session's issue time, a pod's uid, the source format). Its
//! headers name the format, the declared cluster, and where the event was first read (topic,
//! partition, offset, element), which the event's alerts cite.
//!
//! At-least-once end to end: an input record's offset is stored only after its repartitioned
//! events are acknowledged (the service's acknowledger, as for any output), so a crash repeats
//! events, which the stateful stage's snapshots and the outputs' idempotency keys absorb.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedHeaders, Headers};
use tracing::{info, warn};

use super::batch::{FirstRead, RecordSource};
use crate::config::RunConfig;
use crate::config::service::Keying;
use crate::decode::FormatHint;
use crate::emit::dead_letter::header;
use crate::emit::kafka::{Outgoing, Route, SourcePosition};
use crate::event::AccessEvent;
use crate::kafka::admin_and_partitions;
use crate::redact::shape;

/// Header of a repartitioned record naming its source format (`--input TOPIC=FORMAT` names).
pub const FORMAT: &str = "dw_format";
/// Header naming the Kubernetes cluster its input declared.
pub const CLUSTER: &str = "dw_cluster";

/// Why the repartition topic could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum RepartitionError {
    #[error("cannot reach the brokers to check the repartition topic `{topic}`: {source}")]
    Kafka { topic: String, source: KafkaError },
    #[error(
        "input topic `{0}` (declared `:unkeyed`) does not exist: create it, or fix the --input name"
    )]
    NoInput(String),
}

/// The message that re-keys one event of an unkeyed record: `bytes` (the event's own, compacted)
/// keyed by its principal key, its format and first position in headers.
pub fn message(
    ev: &AccessEvent,
    bytes: &[u8],
    cluster: Option<&str>,
    at: SourcePosition<'_>,
) -> Outgoing {
    let mut payload = Vec::with_capacity(bytes.len());
    compact_json(bytes, &mut payload);
    let mut headers = vec![
        (FORMAT, ev.format.as_str().to_owned()),
        (header::SOURCE_TOPIC, at.topic.to_owned()),
        (header::SOURCE_PARTITION, at.partition.to_string()),
        (header::SOURCE_OFFSET, at.offset.to_string()),
    ];
    if let Some(i) = ev.raw.element {
        headers.push((header::ELEMENT, format!("#{i}")));
    }
    if let Some(c) = cluster {
        headers.push((CLUSTER, c.to_owned()));
    }
    Outgoing {
        route: Route::Repartition,
        key: Some(ev.principal.as_bytes().to_vec()),
        payload,
        headers,
    }
}

/// How a record of the repartition topic `topic` is read, from its headers. Headers are checked
/// (anyone allowed to write the topic may have written them): one that is missing or malformed
/// leaves the record to format detection and its position on the repartition topic.
pub fn source_of(topic: &Arc<str>, headers: Option<&BorrowedHeaders>) -> RecordSource {
    let mut src = RecordSource::input(topic.clone(), FormatHint::Auto, None);
    let Some(headers) = headers else {
        return src;
    };
    let (mut first_topic, mut offset, mut element) = (None, None, None);
    for h in headers.iter() {
        let Some(v) = h.value.and_then(|v| std::str::from_utf8(v).ok()) else {
            continue;
        };
        match h.key {
            FORMAT => src.format = v.parse().unwrap_or(FormatHint::Auto),
            CLUSTER if shape::cluster_name(v) => src.cluster = Some(Arc::from(v)),
            header::SOURCE_TOPIC if topic_name(v) => first_topic = Some(v),
            header::SOURCE_OFFSET => offset = v.parse::<u64>().ok(),
            header::ELEMENT => element = v.strip_prefix('#').and_then(|i| i.parse::<u32>().ok()),
            _ => {}
        }
    }
    if let (Some(t), Some(offset)) = (first_topic, offset) {
        src.first_read = Some(FirstRead {
            topic: Arc::from(t),
            offset,
            element,
        });
    }
    src
}

/// A Kafka topic name: 1 to 249 letters, digits, `.`, `_` and `-`.
fn topic_name(s: &str) -> bool {
    (1..=249).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Copies the JSON text `bytes` to `out` without the whitespace between tokens (strings are
/// copied as they are, escapes included). Bytes that are not JSON are copied the same way, which
/// keeps them as wrong as they were.
pub fn compact_json(bytes: &[u8], out: &mut Vec<u8>) {
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
}

/// Makes sure the repartition topic exists when an input is `:unkeyed`: created with
/// `--repartition-partitions`, or as many partitions as the largest unkeyed input, and a
/// retention that covers the rebuild horizon (a partition assigned without saved state rebuilds
/// its identities from this topic's history). An existing topic is used as it is.
///
/// # Errors
/// The brokers cannot be reached, or an unkeyed input topic does not exist.
pub async fn ensure_topic(cfg: &RunConfig) -> Result<(), RepartitionError> {
    let topic = &cfg.repartition_topic;
    let err = |source| RepartitionError::Kafka {
        topic: topic.clone(),
        source,
    };
    let (admin, counts) = admin_and_partitions(&cfg.brokers).map_err(err)?;
    let count = |name: &str| counts.get(name).copied();
    let mut widest = 0;
    for input in cfg.inputs.iter().filter(|i| i.keying == Keying::Unkeyed) {
        let n =
            count(&input.topic).ok_or_else(|| RepartitionError::NoInput(input.topic.clone()))?;
        widest = widest.max(n);
    }
    let wanted = cfg.repartition_partitions.unwrap_or(widest).max(1);
    if let Some(has) = count(topic) {
        if has < widest {
            warn!(
                topic = %topic,
                partitions = has,
                widest_unkeyed_input = widest,
                "The repartition topic has fewer partitions than an unkeyed input: fewer instances can share its identities."
            );
        }
        return Ok(());
    }
    // Long enough for the rebuild fallback, plus a day of margin; the whole log when rebuilds read it.
    let retention = match cfg.rebuild {
        None => "-1".to_owned(),
        Some(d) => (d + Duration::from_secs(86_400)).as_millis().to_string(),
    };
    let new = NewTopic::new(topic, wanted, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "delete")
        .set("retention.ms", &retention);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.create_topics([&new], &opts).await.map_err(err)? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(KafkaError::AdminOp(code))),
        }
    }
    info!(topic = %topic, partitions = wanted, retention_ms = %retention, "Created the repartition topic.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacting_removes_whitespace_between_tokens_and_keeps_strings_whole() {
        let pretty = b"{\n  \"a\" : [ 1, 2 ],\n\t\"b\": \"x y \\\" z\\\\\" ,\"c\":\"\\u0020\"\r\n}";
        let mut out = Vec::new();
        compact_json(pretty, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"a":[1,2],"b":"x y \" z\\","c":"\u0020"}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let w: serde_json::Value = serde_json::from_slice(pretty).unwrap();
        assert_eq!(v, w);
    }

    fn event(json: &str) -> AccessEvent {
        let raw = crate::event::RawRef::new(Arc::from("in"), 0).element(3);
        match crate::decode::decode_one(json.as_bytes(), FormatHint::Auto, raw).unwrap() {
            crate::decode::Decoded::Event(ev) => *ev,
            other => panic!("{other:?}"),
        }
    }

    const CT: &str = r#"{ "eventVersion": "1.08", "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/app/s1", "accountId": "111122223333", "principalId": "AROAEXAMPLEID:s1", "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/app", "accountId": "111122223333"}}}, "eventTime": "2026-01-01T00:00:00Z", "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "awsRegion": "us-east-1", "sourceIPAddress": "10.0.0.1", "userAgent": "aws-sdk", "eventID": "e1" }"#;

    #[test]
    fn a_repartitioned_event_is_keyed_by_principal_and_read_back_as_it_was_first_read() {
        let ev = event(CT);
        let at = SourcePosition {
            topic: "ct-docs",
            partition: 2,
            offset: 41,
            key: None,
        };
        let m = message(&ev, CT.as_bytes(), Some("prod-eu"), at);
        assert_eq!(m.route, Route::Repartition);
        assert_eq!(m.key.as_deref(), Some(ev.principal.as_bytes()));
        assert!(!m.payload.contains(&b'\n') && m.payload.len() < CT.len());
        let mut owned = rdkafka::message::OwnedHeaders::new();
        for (k, v) in &m.headers {
            owned = owned.insert(rdkafka::message::Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let topic: Arc<str> = Arc::from("g.repartition");
        let src = source_of(&topic, Some(owned.as_borrowed()));
        assert_eq!(src.format.as_str(), "cloudtrail");
        assert_eq!(src.cluster.as_deref(), Some("prod-eu"));
        assert_eq!(
            src.first_read,
            Some(FirstRead {
                topic: Arc::from("ct-docs"),
                offset: 41,
                element: Some(3),
            })
        );
        // Decoding the repartitioned bytes gives the same event.
        let again = event(std::str::from_utf8(&m.payload).unwrap());
        assert_eq!(again, ev);
    }

    #[test]
    fn forged_or_missing_headers_leave_a_record_to_detection_at_its_own_position() {
        let topic: Arc<str> = Arc::from("g.repartition");
        let forged = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header {
                key: FORMAT,
                value: Some("yaml"),
            })
            .insert(rdkafka::message::Header {
                key: CLUSTER,
                value: Some("a/b"),
            })
            .insert(rdkafka::message::Header {
                key: header::SOURCE_TOPIC,
                value: Some("../etc"),
            })
            .insert(rdkafka::message::Header {
                key: header::SOURCE_OFFSET,
                value: Some("7"),
            });
        let src = source_of(&topic, Some(forged.as_borrowed()));
        assert_eq!(src.format, FormatHint::Auto);
        assert_eq!(src.cluster, None);
        assert_eq!(src.first_read, None);
        let src = source_of(&topic, None);
        assert_eq!((src.format, src.first_read), (FormatHint::Auto, None));
    }

    #[test]
    fn topic_names_are_checked_before_an_event_cites_them() {
        assert!(topic_name("cloudtrail.s3-delivery_1"));
        assert!(!topic_name(""));
        assert!(!topic_name("a/b"));
        assert!(!topic_name(&"x".repeat(250)));
    }
}
