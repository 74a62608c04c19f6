//! driftwatch: streaming behavioural anomaly detection for non-human identities.
//!
//! Records flow through these stages, each a module:
//!
//! - [`ingest`] reads records from files (JSONL, JSON arrays, gzip, stdin); [`service`] reads
//!   them from Kafka. Only these and `emit` perform I/O.
//! - [`decode`] turns one record's bytes into normalised [`event::AccessEvent`]s: a pure function
//!   per format (CloudTrail, Kubernetes audit, GCP audit, native), with typed errors that name the
//!   field at fault. [`redact`] keeps secrets out of everything copied from a record.
//! - [`baseline`] keeps each identity's compact, bounded profile (endpoints, origins by level,
//!   volume seasonality, active hours, error rate, lifecycle) and the fleet-wide tables of shared
//!   values, all advanced on event time.
//! - [`detect`] compares an event with its identity's profile and returns findings with their
//!   evidence and surprise in bits (probabilities from `statrs` distributions).
//! - [`decide`] accumulates findings into a risk score and decides: nothing, an alert (or an update
//!   of the open one), or an alert and a revocation command within fleet-wide guardrails.
//! - [`emit`] renders OCSF Detection Findings and revocation commands and writes them.
//!
//! [`service`] runs the stages as a Kafka service (`driftwatch run`): consumer group in,
//! at-least-once outputs, partition-owned state. [`telemetry`] sits beside the stages: every
//! metric named in one place, the `/metrics`, `/healthz` and `/readyz` endpoint, and log setup.
//! [`cli`] holds the command line, so tests parse the same arguments a deployment passes.
//!
//! [`inventory`] holds what the organisation declares about identities (owner, expiry, networks).
//! [`engine`] ties baseline, detect and decide together per event; [`replay`] runs it over files
//! in event-time order; [`simulate`] generates a labelled fleet and [`evaluate`] scores alerts
//! against its labels. Detection settings come from [`model`] (`models/default.toml`).

pub mod baseline;
pub mod bench_kafka;
pub mod cli;
pub mod decide;
pub mod decode;
pub mod demo;
pub mod detect;
pub mod emit;
pub mod engine;
pub mod evaluate;
pub mod event;
pub mod ingest;
pub mod inventory;
pub mod model;
pub mod produce;
pub mod redact;
pub mod replay;
pub mod service;
pub mod simulate;
pub mod telemetry;
