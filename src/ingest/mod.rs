//! ingest: where records come from. Files today (JSONL, JSON documents and arrays, gzip,
//! standard input); Kafka in the streaming service. Only this stage and `emit` do I/O.

pub mod file;
