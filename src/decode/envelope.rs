//! Envelopes: the wrappers log pipelines put around the records the decoders read.
//!
//! CloudTrail and audit logs rarely reach Kafka bare. This module recognises the shapes they
//! really arrive in and hands back the records inside:
//!
//! - **EventBridge**: `{"detail-type": "AWS API Call via CloudTrail", "detail": {...}}`;
//! - **CloudWatch Logs subscriptions** (how EKS audit logs and CloudTrail-to-CloudWatch leave
//!   AWS): `{"messageType": "DATA_MESSAGE", "logGroup": ..., "logEvents": [{"message": "<json>"}]}`,
//!   usually gzip, or base64 of gzip when a Lambda or Firehose forwards it as text;
//!   `CONTROL_MESSAGE` envelopes carry no events;
//! - **Logstash and Filebeat passthrough**: `{"@timestamp": ..., "message": "<original json>"}`
//!   (a record that kept its own fields and only gained `@timestamp` needs no unwrapping: the
//!   decoders read `@timestamp` when the format's own time field is missing);
//! - **GCP Pub/Sub push**: `{"message": {"data": "<base64 LogEntry>"}, "subscription": ...}`.
//!
//! Envelopes are looked for only when a record did not decode as itself, so bare records pay
//! nothing. Pure: bytes in, records out.

use std::borrow::Cow;
use std::io::Read;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{DecodeError, Str};
use crate::redact::shape;

/// Most bytes one record may expand to, all its compressed layers and elements together: a
/// CloudWatch Logs subscription batch is at most 1 MiB compressed and tens of MiB expanded; a
/// decompression bomb stops here.
pub const MAX_EXPANDED_BYTES: u64 = 64 << 20;

/// How many envelopes may nest (base64 in gzip in an EventBridge event...); deeper is refused.
pub const MAX_DEPTH: u8 = 4;

/// What an envelope held.
#[derive(Debug)]
pub enum Inner<'a> {
    /// One record (EventBridge `detail`, a Filebeat `message`, a Pub/Sub message's data).
    One(Cow<'a, [u8]>),
    /// CloudWatch Logs: one record per log event, and the log group, which names the EKS
    /// cluster (`/aws/eks/NAME/cluster`).
    LogEvents {
        messages: Vec<String>,
        log_group: Option<String>,
    },
    /// An envelope that carries no events (a CloudWatch Logs `CONTROL_MESSAGE`).
    Empty,
}

/// True when `bytes` are gzip (`1f 8b`) or base64 of gzip (`H4sI`).
pub fn is_compressed(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b]) || bytes.starts_with(b"H4sI")
}

/// Expands a gzip or base64-of-gzip record, taking what it produces from `budget` (the bytes
/// the whole record may still expand to).
///
/// # Errors
/// The bytes are not valid base64 or gzip, or expand beyond the budget.
pub fn expand(bytes: &[u8], budget: &mut u64) -> Result<Vec<u8>, DecodeError> {
    let decoded;
    let gz: &[u8] = if bytes.starts_with(b"H4sI") {
        decoded = base64_decode(bytes.trim_ascii_end(), "record")?;
        &decoded
    } else {
        bytes
    };
    let out = gunzip(gz, *budget)?;
    *budget -= out.len() as u64;
    Ok(out)
}

fn gunzip(gz: &[u8], budget: u64) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(gz.len().saturating_mul(4).min(budget as usize));
    flate2::read::MultiGzDecoder::new(gz)
        .take(budget + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::InvalidJson {
            reason: format!("record looks gzip-compressed but does not decompress: {e}"),
        })?;
    if out.len() as u64 > budget {
        return Err(DecodeError::ExpandsTooLarge {
            limit: MAX_EXPANDED_BYTES,
        });
    }
    Ok(out)
}

fn base64_decode(text: &[u8], what: &'static str) -> Result<Vec<u8>, DecodeError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| DecodeError::InvalidField {
            format: "envelope",
            field: what,
            reason: "not valid base64".to_owned(),
        })
}

/// The keys any envelope we know is recognised by (only the top level is read).
#[derive(Deserialize)]
struct Envelope<'a> {
    // EventBridge.
    #[serde(
        borrow,
        rename = "detail-type",
        default,
        deserialize_with = "super::lenient::str"
    )]
    detail_type: Option<Str<'a>>,
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
    // CloudWatch Logs.
    #[serde(
        borrow,
        rename = "messageType",
        default,
        deserialize_with = "super::lenient::str"
    )]
    message_type: Option<Str<'a>>,
    #[serde(rename = "logEvents", default)]
    log_events: Option<Vec<LogEvent>>,
    #[serde(
        borrow,
        rename = "logGroup",
        default,
        deserialize_with = "super::lenient::str"
    )]
    log_group: Option<Str<'a>>,
    // Filebeat / Logstash (a string) or Pub/Sub push (an object).
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct LogEvent {
    message: Option<String>,
}

#[derive(Deserialize)]
struct PubSubMessage<'a> {
    #[serde(borrow, default, deserialize_with = "super::lenient::str")]
    data: Option<Str<'a>>,
}

/// The records inside `obj` when it is an envelope we know, `None` when it is not one.
///
/// # Errors
/// An envelope whose content is malformed (a `detail` that is not an object, base64 that does
/// not decode, log events without messages), named so the sender can be fixed.
pub fn open(obj: &[u8]) -> Option<Result<Inner<'_>, DecodeError>> {
    let env: Envelope = serde_json::from_slice(obj).ok()?;
    if env.detail_type.is_some() {
        let detail = env.detail?;
        return Some(if detail.get().starts_with('{') {
            Ok(Inner::One(Cow::Borrowed(detail.get().as_bytes())))
        } else {
            Err(wrong("EventBridge", "detail", "an object"))
        });
    }
    if let Some(kind) = env.message_type.as_deref() {
        if kind == "CONTROL_MESSAGE" {
            return Some(Ok(Inner::Empty));
        }
        let events = env.log_events?;
        let mut messages = Vec::with_capacity(events.len());
        for e in events {
            match e.message {
                Some(m) => messages.push(m),
                None => {
                    return Some(Err(wrong(
                        "CloudWatch Logs",
                        "logEvents[].message",
                        "a string",
                    )));
                }
            }
        }
        return Some(Ok(Inner::LogEvents {
            messages,
            log_group: env.log_group.map(|g| g.0.into_owned()),
        }));
    }
    let message = env.message?.get();
    if message.starts_with('"') {
        // Filebeat or Logstash: the original record as a JSON string.
        let text: String = serde_json::from_str(message).ok()?;
        let start = text.trim_start();
        return (start.starts_with('{') || start.starts_with('['))
            .then(|| Ok(Inner::One(Cow::Owned(text.into_bytes()))));
    }
    if message.starts_with('{') {
        // Pub/Sub push: base64 of the published bytes.
        let m: PubSubMessage = serde_json::from_str(message).ok()?;
        let data = m.data?;
        return Some(
            base64_decode(data.as_bytes(), "message.data").map(|b| Inner::One(Cow::Owned(b))),
        );
    }
    None
}

fn wrong(envelope: &'static str, field: &'static str, expected: &str) -> DecodeError {
    DecodeError::InvalidField {
        format: envelope,
        field,
        reason: format!("expected {expected}"),
    }
}

/// The EKS cluster a CloudWatch Logs group belongs to (`/aws/eks/NAME/cluster`), when NAME has
/// a cluster name's shape ([`shape::cluster_name`]): the group is record text, and it reaches
/// principal keys, alerts and commands.
pub fn eks_cluster(log_group: &str) -> Option<&str> {
    let name = log_group
        .strip_prefix("/aws/eks/")?
        .strip_suffix("/cluster")?;
    shape::cluster_name(name).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_top_level_keys_make_an_envelope() {
        // A CloudTrail record whose parameters mention EventBridge keys is not an envelope.
        let rec = br#"{"eventSource":"events.amazonaws.com","requestParameters":{"detail-type":"x","detail":{}}}"#;
        assert!(open(rec).is_none());
        // A `message` that holds prose is a log line, not a wrapped record.
        assert!(open(br#"{"@timestamp":"2026-01-01T00:00:00Z","message":"hello"}"#).is_none());
    }

    #[test]
    fn a_compressed_record_that_expands_past_the_cap_is_refused_not_expanded() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..(MAX_EXPANDED_BYTES >> 20) + 1 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        let mut budget = MAX_EXPANDED_BYTES;
        assert_eq!(expand(&bomb, &mut budget).unwrap_err().code(), "too_large");
        // The budget is the record's: two layers or elements of half the cap each exhaust it.
        let mut half = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        half.write_all(&vec![b' '; (MAX_EXPANDED_BYTES / 2 + 1) as usize])
            .unwrap();
        let half = half.finish().unwrap();
        let mut budget = MAX_EXPANDED_BYTES;
        assert!(expand(&half, &mut budget).is_ok());
        let e = expand(&half, &mut budget).unwrap_err();
        assert!(e.to_string().contains("all its layers together"), "{e}");
    }

    #[test]
    fn eks_log_groups_name_their_cluster() {
        assert_eq!(eks_cluster("/aws/eks/prod-eu/cluster"), Some("prod-eu"));
        assert_eq!(eks_cluster("/aws/lambda/f"), None);
        assert_eq!(eks_cluster("/aws/eks//cluster"), None);
        assert_eq!(eks_cluster("/aws/eks/a b\nc/cluster"), None);
        assert_eq!(
            eks_cluster(&format!("/aws/eks/{}/cluster", "x".repeat(101))),
            None
        );
        assert_eq!(eks_cluster("/aws/eks/-x/cluster"), None);
    }
}
