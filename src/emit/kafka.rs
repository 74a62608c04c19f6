//! Messages for Kafka: decisions as CloudEvents in binary mode (the JSON body is the alert or
//! command; `ce_*` headers let consumers route without parsing), and dead letters carrying the
//! original bytes with the reason and source position in headers.
//!
//! Building an [`Outgoing`] is pure; sending it is the service's job.

use crate::decide::Decision;
use crate::decode::DecodeError;
use crate::decode::time::format_rfc3339_ms;

use super::{command, render};

/// CloudEvents `type` of alerts.
pub const ALERT_TYPE: &str = "dev.driftwatch.detection_finding.v1";
/// CloudEvents `type` of revocation commands.
pub const COMMAND_TYPE: &str = "dev.driftwatch.revocation_command.v1";

/// Dead-letter header names.
pub mod dead_letter {
    pub const REASON: &str = "dw_reason";
    pub const ERROR: &str = "dw_error";
    pub const SOURCE_TOPIC: &str = "dw_source_topic";
    pub const SOURCE_PARTITION: &str = "dw_source_partition";
    pub const SOURCE_OFFSET: &str = "dw_source_offset";
    /// Present when the rejected bytes are one element of a container record (a CloudTrail
    /// `Records` document, a Kubernetes `EventList`, a JSON array): `#index` within it.
    pub const ELEMENT: &str = "dw_element";
}

/// Which output topic a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Alerts,
    Commands,
    DeadLetter,
}

impl Route {
    /// The output's name in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Alerts => "alerts",
            Route::Commands => "commands",
            Route::DeadLetter => "dead_letter",
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
/// can cause.
pub fn decision(d: &Decision, source: &str) -> Outgoing {
    let body = render(d);
    let (route, ty, id, key, time_ms, schema) = match d {
        Decision::Alert(a) => (
            Route::Alerts,
            ALERT_TYPE,
            format!("{}/{}", a.uid, a.count),
            a.event.principal.as_str(),
            a.time_ms,
            "https://schema.ocsf.io/1.1.0/classes/detection_finding",
        ),
        Decision::Command(c) => (
            Route::Commands,
            COMMAND_TYPE,
            c.command_id.clone(),
            c.identity_key.as_str(),
            c.issued_at_ms,
            command::SCHEMA,
        ),
    };
    Outgoing {
        route,
        key: Some(key.as_bytes().to_vec()),
        payload: serde_json::to_vec(&body).expect("a serde_json::Value always serialises"),
        headers: vec![
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", id),
            ("ce_source", source.to_owned()),
            ("ce_type", ty.to_owned()),
            ("ce_time", format_rfc3339_ms(time_ms)),
            ("ce_subject", key.to_owned()),
            ("ce_dataschema", schema.to_owned()),
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

/// A dead letter: the rejected bytes unchanged, keyed like the original, reason in headers.
/// `element` is the bytes' index within a container record (`source#3`), if they are one.
pub fn rejected(
    bytes: &[u8],
    err: &DecodeError,
    at: SourcePosition<'_>,
    element: Option<&str>,
) -> Outgoing {
    let mut headers = vec![
        (dead_letter::REASON, err.code().to_owned()),
        (dead_letter::ERROR, err.to_string()),
        (dead_letter::SOURCE_TOPIC, at.topic.to_owned()),
        (dead_letter::SOURCE_PARTITION, at.partition.to_string()),
        (dead_letter::SOURCE_OFFSET, at.offset.to_string()),
    ];
    if let Some(e) = element {
        headers.push((dead_letter::ELEMENT, e.to_owned()));
    }
    Outgoing {
        route: Route::DeadLetter,
        key: at.key.map(<[u8]>::to_vec),
        payload: bytes.to_vec(),
        headers,
    }
}
