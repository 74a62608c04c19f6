//! What every Kafka client driftwatch creates shares: one way to build a librdkafka
//! configuration ([`client_config`], by the client's [`Role`]) and one client context
//! ([`KafkaContext`]) that logs through `tracing`, counts client errors and logs them at a rate
//! limit (a broker outage produces a stream of them), and hands statistics to its owner's
//! [`Hooks`]. The service's consumer and producer add their own hooks in `ingest::kafka` and
//! `emit::kafka`; tools and tests use the context as it is.

use prometheus::IntCounter;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use tracing::{debug, error, info, warn};

use crate::telemetry::{Metrics, RateLimit, now_ms};

/// How often librdkafka reports statistics to the service's clients (lag, queue size).
const STATISTICS_INTERVAL_MS: &str = "5000";

/// What a client is for, which decides the settings driftwatch gives it.
#[derive(Debug, Clone, Copy)]
pub enum Role<'a> {
    /// `driftwatch run`'s consumer: an offset is stored only after the record's outputs are
    /// acknowledged, and committed by the service at its commit points, after the state the
    /// records led to is saved; cooperative-sticky assignment; statistics.
    ServiceConsumer { group: &'a str },
    /// `driftwatch run`'s producer: idempotent, retrying through outages without a deadline
    /// (backpressure bounds memory instead); statistics.
    ServiceProducer,
    /// `driftwatch forward`'s consumer: a message's offset is stored only once it is delivered
    /// to the webhook or dead-lettered, and librdkafka commits the stored offsets every second
    /// (and `forward` once more at shutdown).
    Forwarder { group: &'a str },
    /// A producer loading records into a topic (`produce`, the demo, benchmarks, tests):
    /// idempotent, batched.
    Loader,
    /// A reader of topics from their start that commits nothing (the demo, benchmarks, tests).
    Reader { group: &'a str },
    /// Topic administration.
    Admin,
}

/// The librdkafka configuration for a client of `role`, with pass-through `properties` laid
/// over it (checked by the caller: see `config::service` for the properties `run` refuses).
/// Kafka's murmur2 hash, as the Java client's `Utils.murmur2` computes it.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `partitions` a Java client's default partitioner (and driftwatch's
/// producers, `partitioner=murmur2_random`) gives a message keyed `key`.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// An admin client on `brokers` and the partition count of every topic they know (topics
/// whose metadata carries an error left out): what creating an internal topic checks first.
///
/// # Errors
/// The client cannot be created or the brokers do not answer within 10 s.
pub fn admin_and_partitions(
    brokers: &str,
) -> Result<
    (
        rdkafka::admin::AdminClient<KafkaContext>,
        std::collections::HashMap<String, i32>,
    ),
    KafkaError,
> {
    let admin: rdkafka::admin::AdminClient<KafkaContext> =
        client_config(brokers, Role::Admin, []).create_with_context(KafkaContext::new("admin"))?;
    let md = admin
        .inner()
        .fetch_metadata(None, std::time::Duration::from_secs(10))?;
    let counts = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect();
    Ok((admin, counts))
}

pub fn client_config<'p>(
    brokers: &str,
    role: Role<'_>,
    properties: impl IntoIterator<Item = (&'p str, &'p str)>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "driftwatch")
        .set_log_level(RDKafkaLogLevel::Warning);
    match role {
        Role::ServiceConsumer { group } => {
            c.set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("partition.assignment.strategy", "cooperative-sticky")
                // When the prefetch queue is full, librdkafka postpones the next fetch by this
                // much (default 1 s): a service slower than its fetches then drains the queue
                // and idles for most of a second, a stall on every partition at once.
                .set("fetch.queue.backoff.ms", "20")
                .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        }
        Role::Forwarder { group } => {
            c.set("group.id", group)
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "1000")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest");
        }
        Role::ServiceProducer => {
            c.set("enable.idempotence", "true")
                // Keyed messages land where Java clients (Kafka Connect, Streams) put them.
                .set("partitioner", "murmur2_random")
                // Infinite: librdkafka retries through broker outages; backpressure bounds memory.
                .set("message.timeout.ms", "0")
                .set("linger.ms", "1")
                .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        }
        Role::Loader => {
            c.set("enable.idempotence", "true")
                .set("linger.ms", "20")
                .set("partitioner", "murmur2_random");
        }
        Role::Reader { group } => {
            c.set("group.id", group)
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false");
        }
        Role::Admin => {}
    }
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// What a client's owner wants to hear from librdkafka beyond logs and errors.
pub trait Hooks: Send + Sync + 'static {
    /// Statistics, every `statistics.interval.ms` (only set for the service's clients).
    fn stats(&self, _stats: Statistics) {}
}

/// No hooks: tools and tests.
impl Hooks for () {}

/// The one client context: logs through `tracing`, counts errors in
/// `driftwatch_kafka_errors_total{client}` when given the metrics, and logs them at most once
/// per 10 s with the number held back.
pub struct KafkaContext<H = ()> {
    client: &'static str,
    errors: Option<IntCounter>,
    error_log: RateLimit,
    /// The owner's hooks (the consumer's rebalance handling lives here too).
    pub hooks: H,
}

impl KafkaContext<()> {
    /// A context for a tool or test client named `client` in logs.
    pub fn new(client: &'static str) -> KafkaContext<()> {
        KafkaContext::with_hooks(client, None, ())
    }
}

impl<H: Hooks> KafkaContext<H> {
    /// A context that counts errors in `metrics` (when given) under `client`.
    pub fn with_hooks(
        client: &'static str,
        metrics: Option<&Metrics>,
        hooks: H,
    ) -> KafkaContext<H> {
        KafkaContext {
            client,
            errors: metrics.map(|m| m.kafka_errors.with_label_values(&[client])),
            error_log: RateLimit::new(10_000),
            hooks,
        }
    }
}

impl<H: Hooks> ClientContext for KafkaContext<H> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => error!(target: "librdkafka", facility = fac, "{msg}"),
            RDKafkaLogLevel::Warning => warn!(target: "librdkafka", facility = fac, "{msg}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(target: "librdkafka", facility = fac, "{msg}")
            }
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", facility = fac, "{msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Reaching the end of a partition is news to a reader that asked for it, not an error
        // (librdkafka reports it here as well as to the poll).
        if matches!(
            error,
            KafkaError::Global(RDKafkaErrorCode::PartitionEOF) | KafkaError::PartitionEOF(_)
        ) {
            return;
        }
        if let Some(c) = &self.errors {
            c.inc();
        }
        if let Some(suppressed) = self.error_log.check(now_ms()) {
            warn!(client = self.client, %error, reason, suppressed, "Kafka client error; librdkafka keeps reconnecting and driftwatch resumes where it left off.");
        }
    }

    fn stats(&self, stats: Statistics) {
        self.hooks.stats(stats);
    }
}

/// Readers without hooks take librdkafka's rebalancing as it is.
impl ConsumerContext for KafkaContext<()> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &ClientConfig, k: &str) -> Option<String> {
        c.get(k).map(str::to_owned)
    }

    /// What managed Kafka services require (MSK, Confluent Cloud, Aiven, Redpanda Cloud): TLS,
    /// SASL SCRAM or PLAIN (OAUTHBEARER for some), and any compression codec. librdkafka
    /// refuses such a configuration when creating the client if the build lacks the support
    /// ("OpenSSL not available at build time"), so creating the clients is the test; nothing
    /// connects.
    #[test]
    fn tls_with_every_sasl_mechanism_and_every_compression_codec_is_built_in() {
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::producer::BaseProducer;
        for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER"] {
            let mut props = vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", mechanism),
            ];
            if mechanism != "OAUTHBEARER" {
                props.extend([
                    ("sasl.username", "driftwatch"),
                    ("sasl.password", "not-a-secret"),
                ]);
            }
            let consumer: Result<BaseConsumer, _> = client_config(
                "127.0.0.1:1",
                Role::ServiceConsumer { group: "g" },
                props.clone(),
            )
            .create();
            assert!(consumer.is_ok(), "{mechanism}: {:?}", consumer.err());
            for codec in ["zstd", "lz4", "snappy", "gzip"] {
                let with_codec = props.iter().copied().chain([("compression.type", codec)]);
                let producer: Result<BaseProducer, _> =
                    client_config("127.0.0.1:1", Role::ServiceProducer, with_codec).create();
                assert!(
                    producer.is_ok(),
                    "{mechanism} {codec}: {:?}",
                    producer.err()
                );
            }
        }
    }

    #[test]
    fn murmur2_agrees_with_the_java_clients_test_vectors() {
        // org.apache.kafka.common.utils.UtilsTest.testMurmur2
        for (key, hash) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            assert_eq!(murmur2(key.as_bytes()), hash, "{key}");
        }
        assert!((0..6).contains(&java_partition(b"foobar", 6)));
        let p = client_config("b:9092", Role::Loader, []);
        assert_eq!(get(&p, "partitioner").as_deref(), Some("murmur2_random"));
    }

    #[test]
    fn the_service_consumer_stores_offsets_itself_and_properties_are_laid_over_the_role() {
        let c = client_config(
            "b:9092",
            Role::ServiceConsumer { group: "g" },
            [("fetch.min.bytes", "1")],
        );
        assert_eq!(
            get(&c, "enable.auto.offset.store").as_deref(),
            Some("false")
        );
        assert_eq!(get(&c, "group.id").as_deref(), Some("g"));
        assert_eq!(get(&c, "fetch.min.bytes").as_deref(), Some("1"));
        let p = client_config("b:9092", Role::ServiceProducer, []);
        assert_eq!(get(&p, "enable.idempotence").as_deref(), Some("true"));
        assert_eq!(get(&p, "group.id"), None);
        let r = client_config("b:9092", Role::Reader { group: "r" }, []);
        assert_eq!(get(&r, "enable.auto.commit").as_deref(), Some("false"));
    }
}
