//! state: the engine's learned state outliving a process. [`snapshot`] is the versioned binary
//! encoding of one identity and of the engine-wide tables (pure); [`file`] keeps a whole engine in
//! one file for `driftwatch replay --state`; [`changelog`] keeps the service's state in a compacted
//! Kafka topic, co-partitioned with the input. With `ingest` and `emit`, this is the only stage
//! that does I/O.

pub mod changelog;
pub mod file;
pub mod group;
pub mod snapshot;

pub use snapshot::{AppliedOffset, SnapshotError};
