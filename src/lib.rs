//! driftwatch: streaming behavioural anomaly detection for non-human identities.
//!
//! Records flow through these stages, each a module:
//!
//! - [`ingest`] reads records: from files (JSONL, JSON arrays, gzip, stdin), or from Kafka for
//!   the service (the consumer, its rebalance protocol, and the pure bookkeeping of assigned
//!   partitions in [`ingest::partitions`]). Only `ingest`, `emit`, `state` and `forward` perform I/O.
//! - [`decode`] turns one record's bytes into normalised [`event::AccessEvent`]s: a pure function
//!   per format (CloudTrail, Kubernetes audit, GCP audit, native), with typed errors that name the
//!   field at fault. [`redact`] keeps secrets out of everything copied from a record. [`enrich`]
//!   looks up what records lack in tables loaded at start (cloud providers' published ranges).
//! - [`baseline`] keeps each identity's compact, bounded profile (endpoints, origins by level,
//!   volume seasonality, active hours, error rate, lifecycle) and the fleet-wide tables of shared
//!   values, all advanced on event time; `Profile::learn` is where one event advances them.
//! - [`detect`] asks each signal (one file each) what was unusual about the event given what the
//!   profile learned, and returns findings with their evidence and surprise in bits
//!   (probabilities from `statrs` distributions).
//! - [`decide`] accumulates findings into a risk score and decides: nothing, an alert (or an update
//!   of the open one), or an alert and a revocation command within fleet-wide guardrails; and,
//!   for identities whose silence crossed a lifecycle horizon, a governance command (suspend,
//!   then delete) within guardrails of its own.
//! - [`emit`] renders alerts (OCSF Detection Findings, or ECS documents), revocation commands
//!   and dead letters, and writes them: JSONL files, or Kafka (the producer and the acknowledger
//!   that gates offset commits).
//!
//! - [`forward`] delivers what `emit` wrote to Kafka (alerts, commands) to SOAR webhooks
//!   (`driftwatch forward`): signed, retried with backoff, dead-lettered, at-least-once; the
//!   request, signature and retry policy are pure, the HTTP client and the loop at the edge.
//!
//! [`engine`] ties baseline, detect and decide together per event over a `DashMap` of
//! identities. Two drivers run it: [`replay`] over files in event-time order, and [`service`]
//! (`driftwatch run`), which wires Kafka in to Kafka out, at-least-once, with partition-owned
//! state. [`kafka`] holds what every Kafka client shares (its configuration by role, and the one
//! client context). [`state`] keeps what the engine learned beyond a process: versioned binary
//! snapshots of identities and fleet tables, and the state file of `replay --state`.
//!
//! Beside the stages: [`config`] (the detection model, the compiled rules, the inventory of
//! declared identity metadata, and `run`'s settings, every problem reported at start),
//! [`telemetry`] (every metric named in one place, the `/metrics`, `/healthz` and `/readyz`
//! endpoint, log setup), and [`cli`] (the command line, so tests parse the same arguments a
//! deployment passes). [`tools`] serve the pipeline without being part of it: the fleet
//! simulator, the evaluator, the Kafka loader, the demo and the Kafka benchmark.

// The stages, in the order records flow through them.
pub mod ingest;
// bytes -> events
pub mod decode;
pub mod enrich;
pub mod event;
pub mod redact;
// events -> findings
pub mod baseline;
pub mod detect;
// findings -> alerts and commands
pub mod decide;
// alerts, commands, dead letters -> files and topics
pub mod emit;
// topics -> SOAR webhooks
pub mod forward;

// What runs the stages.
pub mod engine;
pub mod kafka;
pub mod replay;
pub mod service;
pub mod state;

// Beside the pipeline.
pub mod cli;
pub mod config;
pub mod telemetry;
pub mod tools;
