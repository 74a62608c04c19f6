//! `driftwatch forward` against a real broker (DRIFTWATCH_TEST_BROKERS, as for tests/kafka.rs)
//! and a webhook in the test, scripted per message and attempt to fail, hang or succeed. Every
//! test uses its own topics and consumer groups; every wait is bounded, and a spawned forwarder
//! is killed when its test ends, however it ends.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::{brokers, unique};
use bytes::Bytes;
use driftwatch::kafka::{KafkaContext, Role, client_config};
use driftwatch::tools::produce;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use openssl::ssl::{Ssl, SslAcceptor, SslMethod};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio_openssl::SslStream;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

// ---------------------------------------------------------------------------------------------
// The scripted webhook.

/// What the webhook answers an attempt with.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// No answer for longer than any test's --timeout-seconds.
    Hang,
}

/// One request the webhook received.
#[derive(Clone, Debug)]
struct Hit {
    key: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    /// `None` when it hung.
    status: Option<u16>,
}

/// Decides the reply to the `attempt`-th request (1-based) with this Idempotency-Key.
type Script = Arc<dyn Fn(&str, usize) -> Reply + Send + Sync>;

struct Webhook {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Webhook {
    /// Listens on a loopback port, over TLS with `tls`, on a runtime of its own (the test's
    /// thread blocks on the forwarder meanwhile).
    fn start(script: Script, tls: Option<SslAcceptor>) -> Webhook {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = tls.map(Arc::new);
        let h = hits.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (script, hits, tls) = (script.clone(), h.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (script, hits) = (script.clone(), hits.clone());
                        async move { Ok::<_, Infallible>(answer(req, &script, &hits).await) }
                    });
                    match tls {
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(tcp), svc)
                                .await;
                        }
                        Some(acceptor) => {
                            let ssl = Ssl::new(acceptor.context()).unwrap();
                            let mut stream = SslStream::new(ssl, tcp).unwrap();
                            if Pin::new(&mut stream).accept().await.is_ok() {
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Webhook {
            addr,
            hits,
            _runtime: runtime,
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Idempotency keys answered 2xx, in the order they were.
    fn delivered(&self) -> Vec<String> {
        self.hits()
            .into_iter()
            .filter(|h| h.status.is_some_and(|s| (200..300).contains(&s)))
            .map(|h| h.key)
            .collect()
    }

    fn attempts(&self, key: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.key == key).collect()
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    script: &Script,
    hits: &Mutex<Vec<Hit>>,
) -> Response<Full<Bytes>> {
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
    let key = headers.get("idempotency-key").cloned().unwrap_or_default();
    let reply = {
        let mut hits = hits.lock().unwrap();
        let attempt = hits.iter().filter(|h| h.key == key).count() + 1;
        let reply = script(&key, attempt);
        hits.push(Hit {
            key,
            headers,
            body,
            status: match reply {
                Reply::Status(s) => Some(s),
                Reply::Hang => None,
            },
        });
        reply
    };
    let status = match reply {
        Reply::Status(s) => s,
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            200
        }
    };
    let mut r = Response::new(Full::new(Bytes::from_static(
        b"receiver text that must not reach logs",
    )));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

// ---------------------------------------------------------------------------------------------
// Kafka.

/// A message as produced: its CloudEvents id, partition, key and body.
#[derive(Clone, Debug)]
struct Sent {
    id: String,
    partition: i32,
    key: String,
    body: Vec<u8>,
}

/// `n` CloudEvents-style messages (as `run` writes them) spread over `partitions`, produced in
/// order; ids are `<prefix>-<i>`.
fn produce_messages(
    topic: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
    partitions: i32,
) -> Vec<Sent> {
    block_on(async {
        let producer = produce::loader(&brokers(), []).unwrap();
        let mut sent = Vec::new();
        for i in range {
            let partition = (i as i32) % partitions;
            let m = Sent {
                id: format!("{prefix}-{i}"),
                partition,
                key: format!("arn:aws:iam::123456789012:role/job-{partition}"),
                body: format!(
                    "{{\"n\":{i},\"note\":\"caf\u{e9} \u{2713}\",\"metadata\":{{\"uid\":\"{prefix}-{i}\"}}}}"
                )
                .into_bytes(),
            };
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "ce_specversion",
                    value: Some("1.0"),
                })
                .insert(Header {
                    key: "ce_id",
                    value: Some(m.id.as_str()),
                })
                .insert(Header {
                    key: "ce_source",
                    value: Some("urn:driftwatch:test"),
                })
                .insert(Header {
                    key: "ce_type",
                    value: Some("dev.driftwatch.revocation_command.v1"),
                })
                .insert(Header {
                    key: "ce_subject",
                    value: Some("role/job caf\u{e9}"),
                })
                .insert(Header {
                    key: "content-type",
                    value: Some("application/json"),
                });
            let record = FutureRecord::to(topic)
                .partition(partition)
                .key(m.key.as_bytes())
                .payload(&m.body)
                .headers(headers);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .expect("produce");
            sent.push(m);
        }
        sent
    })
}

/// Committed offsets of `group` on `topic`, summed over its partitions (0 if the broker cannot
/// say).
fn committed(group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer<KafkaContext> =
        client_config(&brokers(), Role::Reader { group }, [])
            .create_with_context(KafkaContext::new("reader"))
            .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let Ok(c) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else {
        return 0;
    };
    (0..partitions)
        .map(|p| match c.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        })
        .sum()
}

/// A message read back from a topic.
#[derive(Debug)]
struct Read {
    key: Option<Vec<u8>>,
    headers: BTreeMap<String, String>,
    payload: Vec<u8>,
}

/// The first `n` messages of a one-partition topic, within 30 s.
fn read_topic(topic: &str, n: usize) -> Vec<Read> {
    let group = unique("reader");
    let consumer: BaseConsumer<KafkaContext> =
        client_config(&brokers(), Role::Reader { group: &group }, [])
            .create_with_context(KafkaContext::new("reader"))
            .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "read {} of {n} messages from {topic} in 30 s: {out:?}",
            out.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                key: m.key().map(<[u8]>::to_vec),
                headers,
                payload: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The forwarder process.

/// A running `driftwatch forward`, killed on drop; its output drained as it runs.
struct Forwarding {
    child: Option<Child>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

/// What a forwarder printed, and how it exited.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Finished {
    /// The `summary` object of its closing JSON log line.
    fn summary(&self) -> Value {
        self.stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == "driftwatch forward finished")
            .map(|l| l["summary"].clone())
            .unwrap_or_else(|| panic!("no closing summary in the log:\n{}", self.stderr))
    }
}

impl Forwarding {
    fn start(cmd: &mut Command) -> Forwarding {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start driftwatch forward");
        let drain = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = r.read_to_end(&mut bytes);
                bytes
            })
        };
        Forwarding {
            stdout: Some(drain(Box::new(child.stdout.take().unwrap()))),
            stderr: Some(drain(Box::new(child.stderr.take().unwrap()))),
            child: Some(child),
        }
    }

    /// Polls `done` every 50 ms for up to `limit`; panics with `what` and `context()` when the
    /// time is up, or with the forwarder's log if it exits meanwhile.
    fn wait_until(
        &mut self,
        what: &str,
        limit: Duration,
        context: impl Fn() -> String,
        done: impl Fn() -> bool,
    ) {
        let deadline = Instant::now() + limit;
        while !done() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let stderr = self.stderr.take().unwrap().join().unwrap();
                panic!(
                    "driftwatch forward exited ({status}) while waiting for {what}:\n{}",
                    String::from_utf8_lossy(&stderr)
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}\n{}",
                context()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then its exit within 20 s (killed after that).
    fn stop(mut self) -> Finished {
        let mut child = self.child.take().unwrap();
        crate::common::sigterm(&child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = |h: Option<JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&h.unwrap().join().unwrap()).into_owned()
        };
        let done = Finished {
            code: status.and_then(|s| s.code()),
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
        };
        assert!(
            status.is_some(),
            "driftwatch forward did not stop within 20 s of SIGTERM:\n{}",
            done.stderr
        );
        done
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Test topics and the forwarder's settings.
struct Setup {
    from: String,
    dead_letter: String,
    partitions: i32,
    secret: String,
    secret_file: tempfile::NamedTempFile,
}

fn setup(name: &str, partitions: i32) -> Setup {
    let from = unique(&format!("{name}-commands"));
    let dead_letter = unique(&format!("{name}-dlq"));
    block_on(produce::create_topics(
        &brokers(),
        &[(&from, partitions), (&dead_letter, 1)],
    ))
    .expect("create topics");
    let secret = unique("shared-secret");
    let mut secret_file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut secret_file, format!("{secret}\n").as_bytes()).unwrap();
    Setup {
        from,
        dead_letter,
        partitions,
        secret,
        secret_file,
    }
}

/// A path and query like a Tines or Shuffle webhook's, with a token that must never be printed.
fn secret_path(token: &str) -> String {
    format!("/webhook/{token}/hooks?api_key=q-{token}")
}

fn forward_command(s: &Setup, group: &str, url: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_driftwatch"));
    cmd.args([
        "forward",
        "--brokers",
        &brokers(),
        "--from",
        &s.from,
        "--to",
        url,
        "--group",
        group,
        "--dead-letter-topic",
        &s.dead_letter,
        "--secret-file",
        s.secret_file.path().to_str().unwrap(),
        "--header",
        "Authorization=Bearer header-token-not-logged",
        "--log-format",
        "json",
    ])
    .args(extra)
    .env("RUST_LOG", "debug")
    .env("DRIFTWATCH_FORWARD_METRICS_ADDR", "off")
    .env_remove("DRIFTWATCH_FORWARD_SECRET")
    .env_remove("DRIFTWATCH_FORWARD_URL");
    cmd
}

fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::sign::Signer;
    let key = PKey::hmac(secret).unwrap();
    let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
    signer.update(body).unwrap();
    signer
        .sign_to_vec()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Neither the shared secret, the header value, nor the URL's path or query is in `text`.
fn assert_nothing_secret(text: &str, s: &Setup, token: &str) {
    for secret in [
        s.secret.as_str(),
        token,
        "header-token-not-logged",
        "/webhook/",
        "api_key",
    ] {
        assert!(!text.contains(secret), "`{secret}` was printed:\n{text}");
    }
    assert!(
        !text.contains("receiver text"),
        "the response body was printed:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------

#[test]
fn a_webhook_that_fails_then_hangs_gets_every_message_once_in_order_signed_under_one_idempotency_key()
 {
    let s = setup("fwd-retry", 2);
    let sent = produce_messages(&s.from, "cmd", 0..6, s.partitions);
    let flaky = sent[0].id.clone();
    let script: Script = {
        let flaky = flaky.clone();
        Arc::new(move |key, attempt| match (key == flaky, attempt) {
            (true, 1 | 2) => Reply::Status(500),
            (true, 3) => Reply::Hang,
            _ => Reply::Status(200),
        })
    };
    let hook = Webhook::start(script, None);
    let token = unique("tok");
    let url = format!("http://{}{}", hook.addr, secret_path(&token));
    let group = unique("fwd-retry");
    let args = [
        "--max-attempts",
        "5",
        "--timeout-seconds",
        "1",
        "--max-backoff-seconds",
        "0.3",
    ];
    let mut run = Forwarding::start(&mut forward_command(&s, &group, &url, &args));
    run.wait_until(
        "all 6 messages delivered",
        Duration::from_secs(40),
        || format!("{:#?}", hook.hits()),
        || hook.delivered().len() >= 6,
    );
    run.wait_until(
        "the 6 offsets committed",
        Duration::from_secs(15),
        String::new,
        || committed(&group, &s.from, s.partitions) >= 6,
    );
    let first = run.stop();
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(first.summary()["delivered"], 6, "{}", first.stderr);
    assert_eq!(first.summary()["retries"], 3, "{}", first.stderr);

    // Each message delivered once, the flaky one after two 500s and a timeout, every attempt
    // under the same Idempotency-Key and signature.
    let mut delivered = hook.delivered();
    let attempts = hook.attempts(&flaky);
    let statuses: Vec<Option<u16>> = attempts.iter().map(|h| h.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), None, Some(200)]);
    assert!(
        attempts
            .iter()
            .all(|h| h.headers["idempotency-key"] == flaky)
    );
    let signatures: Vec<&String> = attempts
        .iter()
        .map(|h| &h.headers["x-driftwatch-signature-256"])
        .collect();
    assert!(
        signatures.windows(2).all(|w| w[0] == w[1]),
        "{signatures:?}"
    );
    // In order within each partition: the partition of the flaky message waited for it.
    for p in 0..s.partitions {
        let expected: Vec<&String> = sent
            .iter()
            .filter(|m| m.partition == p)
            .map(|m| &m.id)
            .collect();
        let got: Vec<&String> = delivered.iter().filter(|k| expected.contains(k)).collect();
        assert_eq!(got, expected, "partition {p}");
    }
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 6, "each message delivered exactly once");
    // The body is the message's value byte for byte, signed with the shared secret; the
    // CloudEvents attributes are headers.
    for h in hook.hits() {
        let m = sent
            .iter()
            .find(|m| m.id == h.key)
            .expect("a produced message");
        assert_eq!(h.body, m.body);
        assert_eq!(
            h.headers["x-driftwatch-signature-256"],
            format!("sha256={}", hmac_sha256_hex(s.secret.as_bytes(), &m.body))
        );
        assert_eq!(h.headers["content-type"], "application/json");
        assert_eq!(h.headers["ce-id"], m.id);
        assert_eq!(h.headers["ce-specversion"], "1.0");
        assert_eq!(h.headers["ce-source"], "urn:driftwatch:test");
        assert_eq!(h.headers["ce-type"], "dev.driftwatch.revocation_command.v1");
        assert_eq!(h.headers["ce-subject"], "role/job%20caf%C3%A9");
        assert_eq!(h.headers["authorization"], "Bearer header-token-not-logged");
    }
    assert!(first.stdout.is_empty(), "{}", first.stdout);
    assert_nothing_secret(&first.stderr, &s, &token);

    // A second run in the same group forwards only what is new.
    let later = produce_messages(&s.from, "cmd", 6..7, s.partitions);
    let mut run = Forwarding::start(&mut forward_command(&s, &group, &url, &args));
    run.wait_until(
        "the new message delivered",
        Duration::from_secs(30),
        || format!("{:#?}", hook.hits()),
        || hook.delivered().contains(&later[0].id),
    );
    // Time for anything else it would (wrongly) send.
    std::thread::sleep(Duration::from_secs(2));
    let second = run.stop();
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(hook.delivered().len(), 7, "{:#?}", hook.hits());
    assert_eq!(second.summary()["forwarded"], 1, "{}", second.stderr);
    assert_nothing_secret(&second.stderr, &s, &token);
}

#[test]
fn a_refused_message_is_dead_lettered_at_once_one_that_keeps_failing_after_its_attempts_and_the_rest_arrive()
 {
    let s = setup("fwd-dlq", 1);
    let sent = produce_messages(&s.from, "alert", 0..5, 1);
    let (refused, failing) = (sent[1].id.clone(), sent[3].id.clone());
    let script: Script = {
        let (refused, failing) = (refused.clone(), failing.clone());
        Arc::new(move |key, _| {
            if key == refused {
                Reply::Status(400)
            } else if key == failing {
                Reply::Status(503)
            } else {
                Reply::Status(202)
            }
        })
    };
    let hook = Webhook::start(script, None);
    let token = unique("tok");
    let url = format!("http://{}{}", hook.addr, secret_path(&token));
    let group = unique("fwd-dlq");
    let metrics: SocketAddr = format!("127.0.0.1:{}", crate::common::free_port())
        .parse()
        .unwrap();
    let metrics_addr = metrics.to_string();
    let args = [
        "--max-attempts",
        "3",
        "--max-backoff-seconds",
        "0.2",
        "--metrics-addr",
        &metrics_addr,
    ];
    let mut run = Forwarding::start(&mut forward_command(&s, &group, &url, &args));
    run.wait_until(
        "the last message delivered",
        Duration::from_secs(40),
        || format!("{:#?}", hook.hits()),
        || hook.delivered().contains(&sent[4].id),
    );
    let dead = read_topic(&s.dead_letter, 2);
    run.wait_until(
        "the 5 offsets committed",
        Duration::from_secs(15),
        String::new,
        || committed(&group, &s.from, 1) >= 5,
    );
    // The metrics count each attempt by how it ended, and never name the webhook.
    let (status, text) = block_on(driftwatch::telemetry::http::get(metrics, "/metrics")).unwrap();
    assert_eq!(status, 200);
    for series in [
        "driftwatch_forward_attempts_total{result=\"delivered\"} 3",
        "driftwatch_forward_attempts_total{result=\"permanent_failure\"} 1",
        "driftwatch_forward_attempts_total{result=\"retried\"} 2",
        "driftwatch_forward_attempts_total{result=\"gave_up\"} 1",
        "driftwatch_forward_failures_total{kind=\"http_4xx\"} 1",
        "driftwatch_forward_failures_total{kind=\"http_5xx\"} 3",
        "driftwatch_forward_dead_letters_total 2",
        "driftwatch_forward_request_seconds_count 7",
    ] {
        assert!(text.contains(series), "no `{series}` in\n{text}");
    }
    assert!(
        !text.contains(&token) && !text.contains("127.0.0.1"),
        "{text}"
    );
    assert_eq!(
        block_on(driftwatch::telemetry::http::get(metrics, "/readyz"))
            .unwrap()
            .0,
        200
    );
    let done = run.stop();
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(done.summary()["delivered"], 3, "{}", done.stderr);
    assert_eq!(done.summary()["dead_lettered"], 2, "{}", done.stderr);

    assert_eq!(hook.attempts(&refused).len(), 1, "a 400 is not retried");
    assert_eq!(
        hook.attempts(&failing).len(),
        3,
        "a 503 is retried up to --max-attempts"
    );
    assert_eq!(
        hook.delivered(),
        [sent[0].id.clone(), sent[2].id.clone(), sent[4].id.clone()],
        "the others arrive, in order"
    );
    let target = format!("http://{}", hook.addr);
    for (d, (m, reason, attempts, error)) in dead.iter().zip([
        (&sent[1], "http_400", "1", "HTTP 400 Bad Request"),
        (&sent[3], "http_503", "3", "HTTP 503 Service Unavailable"),
    ]) {
        assert_eq!(d.payload, m.body, "the original body");
        assert_eq!(d.key.as_deref(), Some(m.key.as_bytes()), "the original key");
        assert_eq!(d.headers["ce_id"], m.id, "the original headers");
        assert_eq!(d.headers["ce_type"], "dev.driftwatch.revocation_command.v1");
        assert_eq!(d.headers["dw_reason"], reason);
        assert_eq!(d.headers["dw_error"], error);
        assert_eq!(d.headers["dw_attempts"], attempts);
        assert_eq!(d.headers["dw_target"], target, "scheme, host and port only");
        assert_eq!(d.headers["dw_source_topic"], s.from);
        assert_eq!(d.headers["dw_source_partition"], "0");
        let offset: usize = d.headers["dw_source_offset"].parse().unwrap();
        assert_eq!(sent[offset].id, m.id);
    }
    assert_nothing_secret(&done.stderr, &s, &token);
}

/// A self-signed certificate for `localhost` and 127.0.0.1, and a TLS acceptor serving it.
fn self_signed() -> (Vec<u8>, SslAcceptor) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509, X509NameBuilder};
    let key = PKey::from_ec_key(
        EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
    )
    .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_private_key(&key).unwrap();
    acceptor.set_certificate(&cert).unwrap();
    (cert.to_pem().unwrap(), acceptor.build())
}

#[test]
fn over_https_the_certificate_is_verified_an_untrusted_one_is_dead_lettered_and_ca_file_trusts_a_private_ca()
 {
    let s = setup("fwd-tls", 1);
    let sent = produce_messages(&s.from, "tls", 0..1, 1);
    let (pem, acceptor) = self_signed();
    let mut ca = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut ca, &pem).unwrap();
    let hook = Webhook::start(Arc::new(|_, _| Reply::Status(200)), Some(acceptor));
    let token = unique("tok");
    let url = format!(
        "https://localhost:{}{}",
        hook.addr.port(),
        secret_path(&token)
    );

    // Without the CA, the certificate is not trusted: one attempt, then the dead-letter topic.
    let untrusting = Forwarding::start(&mut forward_command(
        &s,
        &unique("fwd-tls-a"),
        &url,
        &["--max-attempts", "1"],
    ));
    let dead = read_topic(&s.dead_letter, 1);
    let done = untrusting.stop();
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(dead[0].headers["dw_reason"], "tls", "{:?}", dead[0].headers);
    assert!(
        dead[0].headers["dw_error"].contains("certificate"),
        "{:?}",
        dead[0].headers
    );
    assert!(
        hook.hits().is_empty(),
        "nothing was sent over the untrusted connection"
    );
    assert_nothing_secret(&done.stderr, &s, &token);

    // With it, the same message arrives, verified against `localhost`.
    let ca_file = ca.path().to_str().unwrap().to_owned();
    let mut trusting = Forwarding::start(&mut forward_command(
        &s,
        &unique("fwd-tls-b"),
        &url,
        &["--ca-file", &ca_file],
    ));
    trusting.wait_until(
        "delivery over TLS",
        Duration::from_secs(30),
        || format!("{:#?}", hook.hits()),
        || hook.delivered() == [sent[0].id.clone()],
    );
    let done = trusting.stop();
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(hook.hits()[0].body, sent[0].body);
    assert_nothing_secret(&done.stderr, &s, &token);
}

#[test]
fn an_unusable_configuration_is_refused_at_start_naming_each_problem_but_never_the_url() {
    let out = crate::common::output_within(
        Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args([
                "forward",
                "--from",
                "driftwatch.commands",
                "--to",
                "http://soar.example.com/webhook/tok-9f8e7d?api_key=k-1a2b",
                "--header",
                "Host=sneaky-value-1",
                "--max-attempts",
                "0",
            ])
            .env_remove("DRIFTWATCH_FORWARD_SECRET")
            .env_remove("DRIFTWATCH_FORWARD_SECRET_FILE"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for named in [
        "--to",
        "--allow-insecure-http",
        "not a loopback address",
        "--secret-file",
        "DRIFTWATCH_FORWARD_SECRET",
        "--unsigned",
        "--header",
        "`Host` is set by driftwatch",
        "--max-attempts",
    ] {
        assert!(err.contains(named), "`{named}` not named:\n{err}");
    }
    for secret in ["tok-9f8e7d", "api_key", "k-1a2b", "sneaky-value-1"] {
        assert!(!err.contains(secret), "`{secret}` printed:\n{err}");
    }
}

#[test]
fn sigterm_during_a_hanging_request_exits_zero_at_once_and_the_next_run_delivers_it_under_the_same_key()
 {
    let s = setup("fwd-stop", 1);
    let sent = produce_messages(&s.from, "stop", 0..2, 1);
    let first_id = sent[0].id.clone();
    let script: Script = {
        let first_id = first_id.clone();
        Arc::new(move |key, attempt| {
            if key == first_id && attempt == 1 {
                Reply::Hang
            } else {
                Reply::Status(200)
            }
        })
    };
    let hook = Webhook::start(script, None);
    let token = unique("tok");
    let url = format!("http://{}{}", hook.addr, secret_path(&token));
    let group = unique("fwd-stop");
    let args = ["--timeout-seconds", "25"];
    let mut run = Forwarding::start(&mut forward_command(&s, &group, &url, &args));
    run.wait_until(
        "the first request",
        Duration::from_secs(30),
        || format!("{:#?}", hook.hits()),
        || !hook.hits().is_empty(),
    );
    let asked = Instant::now();
    let stopped = run.stop();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the hanging request held up the shutdown for {:?}",
        asked.elapsed()
    );
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    assert_eq!(stopped.summary()["forwarded"], 0, "{}", stopped.stderr);
    assert_eq!(
        committed(&group, &s.from, 1),
        0,
        "nothing was done, nothing committed"
    );

    let mut run = Forwarding::start(&mut forward_command(&s, &group, &url, &args));
    run.wait_until(
        "both messages delivered by the next run",
        Duration::from_secs(30),
        || format!("{:#?}", hook.hits()),
        || hook.delivered().len() >= 2,
    );
    let done = run.stop();
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(hook.delivered(), [first_id.clone(), sent[1].id.clone()]);
    let attempts = hook.attempts(&first_id);
    assert_eq!(attempts.len(), 2, "abandoned, then delivered again");
    assert_eq!(
        attempts[0].headers["x-driftwatch-signature-256"],
        attempts[1].headers["x-driftwatch-signature-256"]
    );
    assert_nothing_secret(&done.stderr, &s, &token);
}
