//! forward: delivers a topic driftwatch writes (alerts, commands, or a dead-letter topic being
//! replayed) to a SOAR webhook, at-least-once (`driftwatch forward`).
//!
//! - [`config`]: the checked configuration and the webhook's address, which logs as
//!   `scheme://host:port` only;
//! - [`request`]: the request a message becomes (body unchanged, `Idempotency-Key`, `ce-*`
//!   headers, the HMAC-SHA256 signature), pure;
//! - [`retry`]: what an attempt's result means (delivered, try again after a backoff, or
//!   dead-letter), pure;
//! - [`client`]: the HTTP/1.1 client over TLS (OpenSSL), at the edge;
//! - [`service`]: the loop between the consumer, the client and the dead-letter topic.

pub mod client;
pub mod config;
pub mod request;
pub mod retry;
pub mod service;

pub use config::ForwardConfig;
pub use service::{ForwardError, ForwardSummary, Forwarder};
