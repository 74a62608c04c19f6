//! Tools that serve the pipeline without being part of it: a labelled fleet simulator
//! ([`simulate`]) and the scorer of alerts against its labels ([`evaluate`]), the loader of
//! records into Kafka ([`produce`]), the self-contained demo ([`demo`]) and the throughput
//! benchmark through a real broker ([`bench_kafka`]), what the engine learned ([`inspect`]) and
//! the least-privilege report drawn from it ([`report`]), and the properties the fuzz targets
//! and their smoke test assert ([`fuzz`]).

pub mod bench_kafka;
pub mod demo;
pub mod evaluate;
pub mod fuzz;
pub mod gcp_roles;
pub mod inspect;
pub mod produce;
pub mod report;
pub mod simulate;
