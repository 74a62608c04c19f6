//! The streaming service against a real broker (tansu, started by scripts/test.sh, address in
//! DRIFTWATCH_TEST_BROKERS). Every test uses its own topics and consumer groups.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use driftwatch::detect::Rules;
use driftwatch::evaluate::{self, AlertPoint};
use driftwatch::model::Model;
use driftwatch::produce::{self, KeyedRecord};
use driftwatch::service::config::{RunConfig, Settings};
use driftwatch::service::{Service, ServiceStats};
use driftwatch::simulate::{Labels, SimConfig};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::oneshot;

fn brokers() -> String {
    std::env::var("DRIFTWATCH_TEST_BROKERS").expect(
        "DRIFTWATCH_TEST_BROKERS is not set: run the suite with scripts/test.sh, which starts a \
         tansu broker on loopback, or point it at any Kafka broker (host:port)",
    )
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("dwtest-{name}-{}-{nanos}", std::process::id())
}

/// Topics of one test: input (with `partitions`), alerts, commands, dead letters.
struct Topics {
    input: String,
    alerts: String,
    commands: String,
    dead_letter: String,
}

async fn create_topics(name: &str, partitions: i32) -> Topics {
    let t = Topics {
        input: unique(&format!("{name}-in")),
        alerts: unique(&format!("{name}-alerts")),
        commands: unique(&format!("{name}-commands")),
        dead_letter: unique(&format!("{name}-dlq")),
    };
    produce::create_topics(
        &brokers(),
        &[
            (&t.input, partitions),
            (&t.alerts, 1),
            (&t.commands, 1),
            (&t.dead_letter, 1),
        ],
    )
    .await
    .expect("create topics");
    t
}

fn run_config(t: &Topics, group: &str) -> RunConfig {
    RunConfig::resolve(
        Settings {
            brokers: Some(brokers()),
            group: Some(group.to_owned()),
            inputs: Some(vec![t.input.clone()]),
            alerts_topic: Some(t.alerts.clone()),
            commands_topic: Some(t.commands.clone()),
            dead_letter_topic: Some(t.dead_letter.clone()),
            ..Settings::default()
        },
        vec![],
        None,
    )
    .unwrap()
}

async fn produce(topic: &str, records: &[KeyedRecord]) -> u64 {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "20")
        .create()
        .unwrap();
    produce::send_all(&producer, topic, records, 20_000)
        .await
        .unwrap()
}

/// A small simulated fleet with attacks, as keyed records in event-time order.
fn fleet(seed: u64) -> (Vec<KeyedRecord>, Labels) {
    let cfg = SimConfig {
        identities: 12,
        days: 10,
        seed,
        ..SimConfig::default()
    };
    produce::simulated_fleet(&cfg)
}

/// What one engine, fed every record in order, alerts on: the reference for the service.
fn reference(records: &[KeyedRecord], labels: &Labels) -> BTreeSet<String> {
    let events = common::decode_all(
        records
            .iter()
            .map(|r| std::str::from_utf8(&r.bytes).expect("simulated records are UTF-8")),
    );
    let (_, out) = common::run(&events, None);
    let points: Vec<AlertPoint> = out
        .alerts
        .iter()
        .filter_map(evaluate::alert_point)
        .collect();
    detected(labels, &points)
}

fn detected(labels: &Labels, points: &[AlertPoint]) -> BTreeSet<String> {
    let report = evaluate::score(labels, points, 3_600_000);
    labels
        .attacks
        .iter()
        .map(|a| a.id.clone())
        .filter(|id| {
            !report
                .missed
                .iter()
                .any(|m| m.split(' ').next() == Some(id))
        })
        .collect()
}

/// A message read back from an output topic.
#[derive(Debug, Clone)]
struct Read {
    key: Option<String>,
    headers: BTreeMap<String, String>,
    payload: Vec<u8>,
}

impl Read {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).expect("output is JSON")
    }
}

/// Everything in a topic: at least `at_least` messages, then until nothing more arrives for 2 s
/// (tansu's high watermark can lag behind what it serves, so it is only a lower bound).
fn read_all(topic: &str, at_least: usize) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in md.topics()[0].partitions() {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap();
        remaining += hi - lo;

        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let remaining = remaining.max(at_least as i64);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Instant::now();
    while (out.len() as i64) < remaining || last.elapsed() < Duration::from_secs(2) {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            last = Instant::now();
            let m = m.unwrap();
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for h in h.iter() {
                    headers.insert(
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(Read {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                headers,
                payload: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    out
}

/// Committed offsets of `group` on `topic`, summed over partitions (records fully processed).
fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map(|c| {
            c.elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a service in-process until `stop` is sent.
fn spawn_service(
    cfg: RunConfig,
) -> (
    Arc<ServiceStats>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<
        Result<driftwatch::service::RunSummary, driftwatch::service::ServiceError>,
    >,
) {
    let service = Service::new(cfg, Rules::new(Model::embedded()));
    let stats = service.stats();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(service.run(async {
        let _ = rx.await;
    }));
    (stats, tx, handle)
}

fn alert_points(alerts: &[Read]) -> Vec<AlertPoint> {
    alerts
        .iter()
        .filter_map(|r| evaluate::alert_point(&r.json()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_produced_in_come_out_as_keyed_alerts_and_commands_with_cloudevents_headers() {
    let t = create_topics("e2e", 3).await;
    let (records, labels) = fleet(11);
    let expected = reference(&records, &labels);
    assert!(
        expected.len() >= labels.attacks.len() * 8 / 10,
        "reference catches {expected:?}"
    );
    let n = produce(&t.input, &records).await;
    let (stats, stop, handle) = spawn_service(run_config(&t, &unique("e2e")));
    wait_for(
        "every record acknowledged",
        Duration::from_secs(240),
        || stats.acknowledged.load(Ordering::Relaxed) >= n,
    )
    .await;
    stop.send(()).unwrap();
    let summary = handle.await.unwrap().expect("clean shutdown");
    assert_eq!(summary.consumed, n);
    assert_eq!(summary.rejected, 0);

    let alerts = read_all(&t.alerts, summary.alerts as usize);
    let commands = read_all(&t.commands, summary.commands as usize);
    assert_eq!(alerts.len() as u64, summary.alerts);
    assert_eq!(commands.len() as u64, summary.commands);
    assert!(!commands.is_empty(), "the fleet's attacks lead to commands");
    let caught = detected(&labels, &alert_points(&alerts));
    assert_eq!(
        caught, expected,
        "the service catches what the engine catches"
    );

    let alert_schema = common::schema("alert.v1.json");
    let command_schema = common::schema("revocation-command.v1.json");
    let mut ids = BTreeSet::new();
    for a in &alerts {
        let v = a.json();
        common::assert_valid(&alert_schema, &v, "alert");
        assert_eq!(
            a.key.as_deref(),
            v["resources"][0]["uid"].as_str(),
            "keyed by identity"
        );
        assert_eq!(a.headers["ce_specversion"], "1.0");
        assert_eq!(a.headers["ce_type"], "dev.driftwatch.detection_finding.v1");
        assert_eq!(a.headers["content-type"], "application/json");
        assert!(a.headers["ce_source"].starts_with("urn:driftwatch:"));
        assert!(a.headers["ce_time"].ends_with('Z'));
        assert!(
            ids.insert(a.headers["ce_id"].clone()),
            "ce_id is unique per alert"
        );
    }
    for c in &commands {
        let v = c.json();
        common::assert_valid(&command_schema, &v, "command");
        assert_eq!(c.key.as_deref(), v["target"]["identity"]["key"].as_str());
        assert_eq!(c.headers["ce_type"], "dev.driftwatch.revocation_command.v1");
        assert_eq!(c.headers["ce_id"], v["command_id"].as_str().unwrap());
        assert_eq!(v["mode"], "dry_run", "commands are dry-run by default");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_with_its_reason_and_the_records_after_it_are_processed() {
    let t = create_topics("poison", 1).await;
    let good = |i: u32| {
        format!(
            r#"{{"time":"2026-01-05T10:00:{i:02}Z","principal":{{"key":"svc-poison"}},"action":"s3:GetObject"}}"#
        )
    };
    let poison =
        br#"{"time":"2026-01-05T10:00:04Z","principal":{"key":"svc-poison"},"action":"#.to_vec();
    let mut records: Vec<KeyedRecord> = (0..3)
        .map(|i| KeyedRecord {
            key: Some("svc-poison".into()),
            time_ms: 0,
            bytes: good(i).into_bytes(),
        })
        .collect();
    records.push(KeyedRecord {
        key: Some("svc-poison".into()),
        time_ms: 0,
        bytes: poison.clone(),
    });
    records.extend((5..8).map(|i| KeyedRecord {
        key: Some("svc-poison".into()),
        time_ms: 0,
        bytes: good(i).into_bytes(),
    }));
    let n = produce(&t.input, &records).await;
    let (stats, stop, handle) = spawn_service(run_config(&t, &unique("poison")));
    wait_for("every record acknowledged", Duration::from_secs(60), || {
        stats.acknowledged.load(Ordering::Relaxed) >= n
    })
    .await;
    stop.send(()).unwrap();
    let summary = handle.await.unwrap().expect("clean shutdown");
    assert_eq!(
        summary.events, 6,
        "the three records after the poison one are processed"
    );
    assert_eq!(summary.rejected, 1);

    let dead = read_all(&t.dead_letter, 1);
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.payload, poison, "original bytes, unchanged");
    assert_eq!(d.key.as_deref(), Some("svc-poison"));
    assert_eq!(d.headers["dw_reason"], "invalid_json");
    assert!(
        d.headers["dw_error"].contains("not valid JSON"),
        "{:?}",
        d.headers
    );
    assert_eq!(d.headers["dw_source_topic"], t.input);
    assert_eq!(d.headers["dw_source_partition"], "0");
    assert_eq!(d.headers["dw_source_offset"], "3");
}

fn driftwatch_run(t: &Topics, group: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args([
            "run",
            "--brokers",
            &brokers(),
            "--group",
            group,
            "--input",
            &t.input,
            "--alerts-topic",
            &t.alerts,
            "--commands-topic",
            &t.commands,
            "--dead-letter-topic",
            &t.dead_letter,
            "--shutdown-grace-seconds",
            "20",
            // Commit often so the tests can stop it mid-stream at a known committed position.
            "--kafka-property",
            "consumer.auto.commit.interval.ms=100",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start driftwatch run")
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
}

fn topic_len(topic: &str) -> usize {
    read_all(topic, 0).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_and_restarted_it_loses_no_record_and_repeated_commands_share_their_idempotency_key()
 {
    let partitions = 2;
    let t = create_topics("kill", partitions).await;
    let (records, labels) = fleet(12);
    let expected = reference(&records, &labels);
    let n = produce(&t.input, &records).await as i64;
    let group = unique("kill");

    // First run: killed without warning once it has committed part of the stream.
    let mut first = driftwatch_run(&t, &group);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let c = committed_total(&group, &t.input, partitions);
        if c > 0 {
            assert!(
                c < n,
                "the kill must land mid-stream ({c} of {n} committed)"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();

    // Second run: picks up from the committed offsets, rebuilding baselines first.
    let second = driftwatch_run(&t, &group);
    let deadline = Instant::now() + Duration::from_secs(240);
    while committed_total(&group, &t.input, partitions) < n {
        assert!(
            Instant::now() < deadline,
            "the restarted service did not finish the stream"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sigterm(&second);
    let out = second.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("replayed to rebuild baselines"), "{log}");

    let alerts = read_all(&t.alerts, 0);
    let caught = detected(&labels, &alert_points(&alerts));
    assert!(
        caught.is_superset(&expected),
        "every attack is still alerted: {caught:?} vs {expected:?}"
    );
    let mut keys: HashMap<String, BTreeSet<String>> = HashMap::new();
    for c in read_all(&t.commands, 0) {
        let v = c.json();
        keys.entry(v["command_id"].as_str().unwrap().to_owned())
            .or_default()
            .insert(v["idempotency_key"].as_str().unwrap().to_owned());
    }
    assert!(!keys.is_empty());
    for (id, k) in keys {
        assert_eq!(
            k.len(),
            1,
            "command {id} repeated with different idempotency keys {k:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_commits_and_exits_zero_and_a_successor_finishes_without_loss() {
    let partitions = 2;
    let t = create_topics("term", partitions).await;
    let (records, labels) = fleet(13);
    let expected = reference(&records, &labels);
    let n = produce(&t.input, &records).await as i64;
    let group = unique("term");
    let first = driftwatch_run(&t, &group);
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed_total(&group, &t.input, partitions) == 0 {
        assert!(Instant::now() < deadline, "no progress before SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&first);
    let started = Instant::now();
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit status {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "within the grace period"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.starts_with("driftwatch run:"))
        .expect("summary line");
    let consumed: i64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    // Drained: what it consumed before stopping is committed, nothing more and nothing less.
    assert_eq!(
        committed_total(&group, &t.input, partitions),
        consumed,
        "{line}"
    );

    let (stats, stop, handle) = spawn_service(run_config(&t, &group));
    wait_for("the successor to finish", Duration::from_secs(240), || {
        stats.consumed.load(Ordering::Relaxed) as i64 >= n
            && stats.in_flight.load(Ordering::Relaxed) == 0
    })
    .await;
    stop.send(()).unwrap();
    let summary = handle.await.unwrap().unwrap();
    assert_eq!(
        summary.rebuilt as i64, consumed,
        "the successor rebuilds exactly what was committed"
    );
    let caught = detected(&labels, &alert_points(&read_all(&t.alerts, 0)));
    assert!(caught.is_superset(&expected), "{caught:?} vs {expected:?}");
    assert!(topic_len(&t.commands) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_split_the_partitions_and_together_process_every_record() {
    let partitions = 4;
    let t = create_topics("group", partitions).await;
    let group = unique("group");
    let (a, stop_a, handle_a) = spawn_service(run_config(&t, &group));
    let (b, stop_b, handle_b) = spawn_service(run_config(&t, &group));
    wait_for(
        "both instances to own partitions",
        Duration::from_secs(90),
        || {
            let (x, y) = (
                a.assigned_partitions.load(Ordering::Relaxed),
                b.assigned_partitions.load(Ordering::Relaxed),
            );
            x > 0 && y > 0 && x + y == partitions as usize
        },
    )
    .await;
    let (records, _) = fleet(14);
    let n = produce(&t.input, &records).await;
    wait_for("every record processed", Duration::from_secs(240), || {
        a.acknowledged.load(Ordering::Relaxed) + b.acknowledged.load(Ordering::Relaxed) >= n
    })
    .await;
    let (ca, cb) = (
        a.consumed.load(Ordering::Relaxed),
        b.consumed.load(Ordering::Relaxed),
    );
    assert!(ca > 0 && cb > 0, "both instances consumed ({ca}, {cb})");
    assert_eq!(ca + cb, n, "each record consumed by exactly one instance");
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    handle_a.await.unwrap().unwrap();
    handle_b.await.unwrap().unwrap();
}
