//! emit: renders decisions as the messages SIEM and SOAR consumers read
//! (`schemas/alert.v1.json`, `schemas/revocation-command.v1.json`), and rejected records as dead
//! letters, and writes them out: JSONL files or standard output ([`sink`]) for replay, Kafka
//! ([`kafka`]: CloudEvents messages, the producer, acknowledgements) for the service.

pub mod command;
pub mod dead_letter;
pub mod ecs;
pub mod kafka;
pub mod ocsf;
pub mod sink;

use std::io;
use std::path::PathBuf;

use rdkafka::error::KafkaError;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::decide::Decision;

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("cannot create output file {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write to {target}: {source}")]
    Write { target: String, source: io::Error },
    #[error(
        "a message for topic `{topic}` could not be delivered after {attempts} attempts: {source}; \
         its input offset was not committed, so it will be processed again after a restart"
    )]
    Delivery {
        topic: String,
        attempts: u32,
        source: KafkaError,
    },
}

/// Inserts `value` under `key` when there is one: optional attributes of our messages are left
/// out, never null.
pub(crate) fn put<T: Serialize>(obj: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        obj.insert(key.to_owned(), serde_json::json!(v));
    }
}

/// How alerts are written: OCSF 1.1.0 Detection Findings (the default and canonical format,
/// `schemas/alert.v1.json`) or Elastic Common Schema documents (`schemas/alert-ecs.v1.json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AlertFormat {
    #[default]
    Ocsf,
    Ecs,
}

impl AlertFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertFormat::Ocsf => "ocsf",
            AlertFormat::Ecs => "ecs",
        }
    }
}

impl std::str::FromStr for AlertFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ocsf" => Ok(AlertFormat::Ocsf),
            "ecs" => Ok(AlertFormat::Ecs),
            other => Err(format!("unknown alert format `{other}` (ocsf, ecs)")),
        }
    }
}

/// The JSON message for a decision, emitted at `now_ms` (the wall clock, in the service and
/// replay): an alert's `finding_info.created_time`/`modified_time`, a command's validity. All
/// else is event time, so the same events give the same messages but for these.
pub fn render(d: &Decision, now_ms: i64) -> Value {
    render_as(d, now_ms, AlertFormat::Ocsf)
}

/// [`render`], with alerts in `format`.
pub fn render_as(d: &Decision, now_ms: i64, format: AlertFormat) -> Value {
    match (d, format) {
        (Decision::Alert(a), AlertFormat::Ocsf) => ocsf::detection_finding(a, now_ms),
        (Decision::Alert(a), AlertFormat::Ecs) => ecs::alert_document(a, now_ms),
        (Decision::Command(c), _) => command::revocation_command(c, now_ms),
    }
}
