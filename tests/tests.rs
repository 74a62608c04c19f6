//! The integration tests: one binary with a module per suite, because every test binary links
//! librdkafka again and builds are the slow part on a 2-core machine. `cargo test --test
//! integration kafka::` runs one suite.

mod common;

mod cli;
mod decoders;
mod deploy;
mod enrich;
mod forward;
mod fuzz_smoke;
mod golden;
mod kafka;
mod quality;
mod scenarios;
mod secrets;
