//! ingest: where records come from. Files ([`file`]: JSONL, JSON documents and arrays, gzip,
//! standard input, read whole; [`stream`]: the same read one record at a time in bounded
//! memory, as replay reads them) and, for the streaming service, Kafka ([`kafka`]: the consumer and its
//! rebalance callbacks, over the pure partition bookkeeping of [`partitions`]; [`identities`]:
//! the identity inventory followed from its topic; [`repartition`]: unkeyed inputs' events
//! re-keyed by principal key). Only this stage and `emit` do I/O.

pub mod batch;
pub mod file;
pub mod identities;
pub mod kafka;
pub mod partitions;
pub mod repartition;
pub mod stream;
