//! The command line as users run it: exit codes, files written, messages printed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{assert_valid, output_within, schema};
use serde_json::{Value, json};

fn driftwatch(args: &[&str]) -> Output {
    driftwatch_with_env(args, &[])
}

fn driftwatch_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(args)
            .envs(env.iter().copied()),
    )
}

/// Runs driftwatch and fails the test, showing its stderr, unless it exits 0.
fn driftwatch_ok(args: &[&str]) -> Output {
    let out = driftwatch(args);
    assert!(
        out.status.success(),
        "driftwatch {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A path as a command-line argument.
fn p(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// `driftwatch report least-privilege --state STATE ARGS...`, run by `run` (`driftwatch`, or
/// `driftwatch_ok` where it must succeed).
fn least_privilege(state: &Path, args: &[&str], run: fn(&[&str]) -> Output) -> Output {
    let state = p(state);
    run(&[
        &["report", "least-privilege", "--state", state.as_str()][..],
        args,
    ]
    .concat())
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const GOOD: &str = r#"{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/sync","accountId":"111122223333","accessKeyId":"AKIAIOSFODNN7EXAMPLE"},"eventTime":"2026-01-05T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","sourceIPAddress":"198.51.100.7","userAgent":"Boto3/1.34.2","eventID":"e1"}"#;

#[test]
fn models_check_accepts_the_shipped_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.toml");
    let out = driftwatch_ok(&["models", "check", path.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn models_check_reports_every_problem_with_file_and_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[scoring]\nalert_min_score = 0\n[commands]\nmax_fleet_fraction = 0.9\n[detectors.dormant]\nmin_idle_days = -1.0\n").unwrap();
    let out = driftwatch(&["models", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "scoring.alert_min_score",
        "commands.max_fleet_fraction",
        "detectors.dormant.min_idle_days",
    ] {
        assert!(
            err.contains(&format!("bad.toml: {key}:")),
            "{key} missing from:\n{err}"
        );
    }
    assert!(err.contains("3 configuration problems"), "{err}");
}

#[test]
fn replay_refuses_a_bad_model_before_reading_any_input() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("m.toml");
    std::fs::write(&bad, "[scoring]\ncolour = 1\n").unwrap();
    let out = driftwatch(&[
        "replay",
        "--model",
        bad.to_str().unwrap(),
        "/nonexistent/input.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("m.toml: scoring.colour: unknown key"), "{err}");
}

#[test]
fn replay_and_run_refuse_a_bad_ip_ranges_file_naming_it_and_load_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ranges.json");
    std::fs::write(&bad, r#"{"prefixes":[{"ip_prefix":"3.5.140.0/99"}]}"#).unwrap();
    let good = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ip-ranges/aws-ip-ranges.json"
    );
    let out = driftwatch(&[
        "replay",
        "--ip-ranges",
        good,
        "--ip-ranges",
        bad.to_str().unwrap(),
        "/nonexistent/input.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ranges.json: prefixes:") && err.contains("3.5.140.0/99"),
        "{err}"
    );
    let out = driftwatch_with_env(
        &["run", "--brokers", "127.0.0.1:1", "--metrics-addr", "off"],
        &[("DRIFTWATCH_IP_RANGES", bad.to_str().unwrap())],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Good files load, and replay runs.
    let input = dir.path().join("trail.jsonl");
    std::fs::write(&input, format!("{GOOD}\n")).unwrap();
    let gcp = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ip-ranges/gcp-cloud.json"
    );
    driftwatch_ok(&[
        "replay",
        "--ip-ranges",
        &format!("{good},{gcp}"),
        input.to_str().unwrap(),
    ]);
}

#[test]
fn replay_sends_malformed_records_to_the_dead_letter_file_and_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("trail.jsonl");
    let missing = GOOD.replace(r#""eventTime":"2026-01-05T10:00:00Z","#, "");
    let later = GOOD
        .replace("10:00:00", "10:05:00")
        .replace("\"e1\"", "\"e2\"");
    std::fs::write(
        &input,
        format!("{GOOD}\nthis is not json\n{missing}\n{later}\n"),
    )
    .unwrap();
    let dead = dir.path().join("dead.jsonl");
    let alerts = dir.path().join("alerts.jsonl");
    let commands = dir.path().join("commands.jsonl");
    let out = driftwatch_ok(&[
        "replay",
        "--alerts",
        alerts.to_str().unwrap(),
        "--commands",
        commands.to_str().unwrap(),
        "--dead-letter",
        dead.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("4 records, 2 events"), "{summary}");
    assert!(
        summary.contains("rejected records: 2 (invalid_json=1 missing_field=1)"),
        "{summary}"
    );
    let dl = lines(&dead);
    assert_eq!(dl.len(), 2);
    let validator = schema("dead-letter.v1.json");
    for d in &dl {
        assert_valid(&validator, d, "dead-letter record");
    }
    assert_eq!(dl[0]["position"], 2);
    assert_eq!(dl[0]["record"], "this is not json");
    assert_eq!(dl[1]["position"], 3);
    assert_eq!(
        dl[1]["error"],
        "field `eventTime` missing in CloudTrail record"
    );
    assert_eq!(
        dl[1]["record"],
        missing.as_str(),
        "the original record is kept unchanged"
    );
}

#[test]
fn simulate_then_replay_is_deterministic_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = simulate(dir.path(), 40, 12, 3);
    let inputs = [
        fleet.join("cloudtrail.jsonl"),
        fleet.join("k8s-audit.jsonl"),
    ];
    let mut runs = Vec::new();
    for n in 0..2 {
        let alerts = dir.path().join(format!("alerts{n}.jsonl"));
        let commands = dir.path().join(format!("commands{n}.jsonl"));
        let governance = dir.path().join(format!("governance{n}.jsonl"));
        driftwatch_ok(&[
            "replay",
            "--alerts",
            alerts.to_str().unwrap(),
            "--commands",
            commands.to_str().unwrap(),
            "--governance",
            governance.to_str().unwrap(),
            inputs[0].to_str().unwrap(),
            inputs[1].to_str().unwrap(),
        ]);
        // Everything but when each message was emitted (wall clock).
        runs.push((
            comparable(&alerts),
            comparable(&commands),
            comparable(&governance),
        ));
    }
    assert!(!runs[0].0.is_empty(), "the injected attacks raise alerts");
    assert!(!runs[0].1.is_empty(), "the injected attacks raise commands");
    assert!(runs[0] == runs[1], "same input, same output");
    // The fleet's legacy keys, idle for months, get governance commands in their own file.
    let command_schema = schema("revocation-command.v1.json");
    assert!(!runs[0].2.is_empty(), "idle legacy keys are suspended");
    for g in lines(&dir.path().join("governance0.jsonl")) {
        assert_valid(&command_schema, &g, "governance command");
        assert!(g["lifecycle"]["idle_days"].as_i64().unwrap() >= 30, "{g}");
    }
    for c in lines(&dir.path().join("commands0.jsonl")) {
        assert!(c.get("lifecycle").is_none(), "{c}");
    }

    let out = driftwatch_ok(&[
        "evaluate",
        "--labels",
        fleet.join("labels.json").to_str().unwrap(),
        "--alerts",
        dir.path().join("alerts0.jsonl").to_str().unwrap(),
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["attacks"].as_u64().unwrap() >= 10);
    assert!(report["detected"].as_u64().unwrap() > 0);
    let labels: Value =
        serde_json::from_str(&std::fs::read_to_string(fleet.join("labels.json")).unwrap()).unwrap();
    assert_valid(&schema("labels.v1.json"), &labels, "labels.json");
}

#[test]
fn a_declared_cluster_qualifies_kubernetes_keys_and_changes_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = simulate(dir.path(), 40, 12, 3);
    let k8s = fleet.join("k8s-audit.jsonl");
    let (bare, _) = replay_files(dir.path(), "bare", &[], &[&k8s]);
    let (east, _) = replay_files(dir.path(), "east", &["--cluster", "prod-east"], &[&k8s]);
    assert!(!bare.is_empty(), "the fleet's Kubernetes attacks alert");
    // The same detections, each on the cluster-qualified identity.
    let what = |alerts: &[Value], prefix: &str| -> Vec<String> {
        alerts
            .iter()
            .filter(|a| a["class_uid"] == 2004)
            .map(|a| {
                let key = a["resources"][0]["uid"].as_str().unwrap();
                let bare_key = key.strip_prefix(prefix).unwrap_or_else(|| panic!("{key}"));
                format!("{bare_key} {} {}", a["time"], a["finding_info"]["types"])
            })
            .collect()
    };
    assert_eq!(what(&east, "prod-east/"), what(&bare, ""));
    let alert = east.iter().find(|a| a["class_uid"] == 2004).unwrap();
    assert_eq!(alert["metadata"]["tenant_uid"], "prod-east");
    assert!(
        alert["resources"][0]["labels"]
            .as_array()
            .unwrap()
            .contains(&Value::from("cluster:prod-east")),
        "{alert}"
    );
    let commands: Vec<&Value> = east
        .iter()
        .filter(|m| m.get("command_id").is_some())
        .collect();
    assert!(!commands.is_empty());
    for c in &commands {
        assert_eq!(c["target"]["kubernetes"]["cluster"], "prod-east", "{c}");
        let key = c["target"]["identity"]["key"].as_str().unwrap();
        let sa = key.rsplit(':').next().unwrap();
        assert_eq!(c["target"]["identity"]["name"], sa);
        if key.contains(":serviceaccount:") {
            assert_eq!(c["target"]["kubernetes"]["service_account"], sa);
        }
    }
    let bare_keys: Vec<&Value> = bare
        .iter()
        .filter_map(|m| m.get("idempotency_key"))
        .collect();
    assert!(
        commands
            .iter()
            .all(|c| !bare_keys.contains(&&c["idempotency_key"])),
        "idempotency keys name the cluster"
    );

    let out = driftwatch(&["replay", "--cluster", "a/b", k8s.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cluster") && err.contains("a cluster name is"),
        "{err}"
    );
}

#[test]
fn alerts_as_ecs_documents_say_what_the_ocsf_findings_say_and_match_their_schema() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = simulate(dir.path(), 40, 12, 3);
    let inputs = [
        fleet.join("cloudtrail.jsonl"),
        fleet.join("k8s-audit.jsonl"),
    ];
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let (ocsf, _) = replay_files(dir.path(), "ocsf", &[], &inputs);
    let (ecs, _) = replay_files(dir.path(), "ecs", &["--alert-format", "ecs"], &inputs);
    let ecs_schema = schema("alert-ecs.v1.json");
    let ocsf_alerts: Vec<&Value> = ocsf
        .iter()
        .filter(|m| m.get("class_uid").is_some())
        .collect();
    let ecs_alerts: Vec<&Value> = ecs.iter().filter(|m| m.get("ecs").is_some()).collect();
    assert!(!ecs_alerts.is_empty());
    assert_eq!(
        ecs_alerts.len(),
        ocsf_alerts.len(),
        "one document per finding message"
    );
    let activity = ["", "start", "info", "end"];
    for (e, o) in ecs_alerts.iter().zip(&ocsf_alerts) {
        assert_valid(&ecs_schema, e, "ECS alert");
        assert_eq!(e["event"]["kind"], "alert");
        assert_eq!(e["event"]["id"], o["metadata"]["uid"]);
        assert_eq!(e["user"]["id"], o["resources"][0]["uid"]);
        assert_eq!(
            e["event"]["type"][0],
            activity[o["activity_id"].as_u64().unwrap() as usize]
        );
        assert_eq!(e["event"]["severity"], o["severity_id"]);
        assert_eq!(e["event"]["risk_score"], o["risk_score"]);
        assert_eq!(e["rule"]["name"], o["finding_info"]["title"]);
        assert_eq!(
            e["threat"]["technique"][0]["id"],
            o["finding_info"]["attacks"][0]["technique"]["uid"]
        );
        assert_eq!(
            driftwatch::decode::time::parse_timestamp_ms(e["@timestamp"].as_str().unwrap()),
            o["time"].as_i64()
        );
    }
    // Commands are the same whichever alert format.
    let commands = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .filter(|m| m.get("command_id").is_some())
            .cloned()
            .collect()
    };
    assert_eq!(commands(&ecs), commands(&ocsf));

    let out = driftwatch(&[
        "replay",
        "--alert-format",
        "xml",
        inputs[0].to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--alert-format") && err.contains("ocsf, ecs"),
        "{err}"
    );
}

#[test]
fn secrets_in_records_never_reach_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2E6eCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
    let record = GOOD
        .replace("s3.amazonaws.com", "iam.amazonaws.com")
        .replace("GetObject", "CreateAccessKey")
        .replace(
            "Boto3/1.34.2",
            &format!("curl/8.5.0 Authorization: Bearer {jwt}"),
        );
    let input = dir.path().join("trail.jsonl");
    std::fs::write(&input, format!("{record}\n")).unwrap();
    // Alert on anything, from the first event: this test is about what an alert may contain.
    let model = dir.path().join("eager.toml");
    std::fs::write(&model, "[warmup]\nmin_days = 0.0\nmin_active_hours = 0\n[scoring]\nalert_min_score = 5\nmin_event_bits = 0.0\n").unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    driftwatch_ok(&[
        "replay",
        "--model",
        model.to_str().unwrap(),
        "--alerts",
        alerts.to_str().unwrap(),
        "--commands",
        dir.path().join("c.jsonl").to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&alerts).unwrap();
    assert!(
        !text.is_empty(),
        "expected an alert for a first CreateAccessKey"
    );
    assert!(!text.contains(jwt), "the bearer token leaked into an alert");
    assert!(
        text.contains("[redacted fp:"),
        "the user agent is replaced by a fingerprint: {text}"
    );
}

#[test]
fn a_bad_element_of_a_json_array_is_dead_lettered_alone_and_its_siblings_processed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("delivery.json");
    let broken = GOOD.replace(
        r#""eventTime":"2026-01-05T10:00:00Z","#,
        r#""eventTime":"yesterday","#,
    );
    let later = GOOD.replace("10:00:00", "10:05:00");
    std::fs::write(&input, format!("[\n{GOOD},\n{broken},\n{later}\n]\n")).unwrap();
    let dead = dir.path().join("dead.jsonl");
    let out = driftwatch_ok(&[
        "replay",
        "--alerts",
        dir.path().join("a.jsonl").to_str().unwrap(),
        "--commands",
        dir.path().join("c.jsonl").to_str().unwrap(),
        "--dead-letter",
        dead.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("1 records, 2 events"), "{summary}");
    let dl = lines(&dead);
    assert_eq!(dl.len(), 1);
    assert!(
        dl[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("delivery.json#1"),
        "{}",
        dl[0]
    );
    assert_eq!(
        dl[0]["record"],
        broken.as_str(),
        "only the bad element, unchanged"
    );
    assert_eq!(dl[0]["reason"], "invalid_field");
}

#[test]
fn run_refuses_bad_service_configuration_at_start_naming_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.toml");
    std::fs::write(&cfg, "group = \"g\"\nmax_in_flight = 0\n").unwrap();
    let out = driftwatch_with_env(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            "logs=yaml,alerts",
            "--alerts-topic",
            "alerts",
            "--kafka-property",
            "enable.idempotence=false",
            "--kafka-property",
            "no-equals-sign",
            "--metrics-addr",
            "localhost",
        ],
        // No broker is contacted: the configuration is refused before any client exists.
        &[("DRIFTWATCH_BROKERS", "127.0.0.1:1")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "run.toml",
        "--input: `logs=yaml`: unknown format `yaml`",
        "--alerts-topic: `alerts` is also an input topic",
        "--kafka-property enable.idempotence: cannot be overridden",
        "--kafka-property: `no-equals-sign` is not of the form name=value",
        "max_in_flight: 0 is not in 1..=1000000",
        "--metrics-addr: `localhost` is not an IP address and port",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn probe_fails_with_a_clear_message_when_nothing_answers() {
    // Bind and release a port so nothing listens on it.
    let port = crate::common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = driftwatch(&["probe", "--addr", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );
    let out = driftwatch(&["probe", "--addr", &addr, "--path", "readyz"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`readyz` is not a path such as /readyz")
    );
}

#[test]
fn json_log_format_writes_one_json_object_per_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    std::fs::write(&input, "not json\n").unwrap();
    let out = driftwatch_with_env(
        &["replay", "--log-format", "json", input.to_str().unwrap()],
        &[("RUST_LOG", "info")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Every line of stderr is a JSON object: the logs and the closing summary alike.
    let logs: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["level"] == "WARN" && l["message"].is_string()),
        "the bad record is logged as JSON:\n{err}"
    );
    let summary = &logs.last().unwrap()["summary"];
    assert_eq!(summary["records"], 1, "{err}");
    assert_eq!(summary["rejected"]["invalid_json"], 1, "{err}");
    assert!(summary["findings_by_detector"]["new_origin"].is_u64());

    // A fatal error is one JSON line too, naming every problem, with the exit code.
    let out = driftwatch(&[
        "run",
        "--log-format",
        "json",
        "--brokers",
        "127.0.0.1:1",
        "--metrics-addr",
        "off",
        "--kafka-property",
        "compression.type=bogus",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a property librdkafka rejects is a configuration problem"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let line: Value =
        serde_json::from_str(err.lines().last().unwrap()).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["exit_code"], 2);
    assert_eq!(line["problems"][0]["key"], "--kafka-property");
    assert!(
        line["problems"][0]["why"]
            .as_str()
            .unwrap()
            .contains("compression"),
        "{line}"
    );
}

/// Alerts or commands of a file without what differs between two replays of the same events:
/// an alert's `unmapped.raw_source` and `raw_position` (the input file and line, which differ
/// between a split replay and a whole one) and its wall-clock `finding_info.created_time` and
/// `modified_time`, and a command's wall-clock `issued_at`, `expires_at` and
/// `target.aws.token_issued_before`.
fn comparable(path: &Path) -> Vec<Value> {
    lines(path)
        .into_iter()
        .map(|mut v| {
            if let Some(u) = v.get_mut("unmapped").and_then(Value::as_object_mut) {
                u.remove("raw_source");
                u.remove("raw_position");
            }
            if let Some(f) = v.get_mut("finding_info").and_then(Value::as_object_mut) {
                f.remove("created_time");
                f.remove("modified_time");
            }
            if v["schema"] == driftwatch::emit::command::SCHEMA {
                let c = v.as_object_mut().unwrap();
                c.remove("issued_at");
                c.remove("expires_at");
                if let Some(aws) = c
                    .get_mut("target")
                    .and_then(|t| t.get_mut("aws"))
                    .and_then(Value::as_object_mut)
                {
                    aws.remove("token_issued_before");
                }
            }
            v
        })
        .collect()
}

/// Writes a simulated fleet into `dir`/fleet and returns that directory.
fn simulate(dir: &Path, identities: u32, days: u32, seed: u64) -> std::path::PathBuf {
    let fleet = dir.join("fleet");
    driftwatch_ok(&[
        "simulate",
        "--out",
        fleet.to_str().unwrap(),
        "--identities",
        &identities.to_string(),
        "--days",
        &days.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    fleet
}

#[test]
fn replaying_a_fleet_in_two_periods_with_one_state_file_gives_the_alerts_of_one_replay() {
    use driftwatch::decode::time::parse_timestamp_ms;
    let dir = tempfile::tempdir().unwrap();
    let fleet = simulate(dir.path(), 50, 16, 11);
    // Days 1-10 and days 11-16 (the simulation starts on a midnight), each log split in two.
    let boundary = driftwatch::tools::simulate::DEFAULT_START_MS + 10 * 86_400_000;
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for name in ["cloudtrail.jsonl", "k8s-audit.jsonl"] {
        let (mut a, mut b) = (String::new(), String::new());
        for line in std::fs::read_to_string(fleet.join(name)).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let at = v["eventTime"]
                .as_str()
                .or(v["stageTimestamp"].as_str())
                .unwrap();
            let t = parse_timestamp_ms(at).unwrap();
            let half = if t < boundary { &mut a } else { &mut b };
            half.push_str(line);
            half.push('\n');
        }
        let (fa, fb) = (
            dir.path().join(format!("first-{name}")),
            dir.path().join(format!("second-{name}")),
        );
        std::fs::write(&fa, a).unwrap();
        std::fs::write(&fb, b).unwrap();
        first.push(fa);
        second.push(fb);
    }
    let first: Vec<&Path> = first.iter().map(PathBuf::as_path).collect();
    let second: Vec<&Path> = second.iter().map(PathBuf::as_path).collect();

    let governance = |tag: &str| -> BTreeSet<String> {
        lines(&dir.path().join(format!("{tag}-governance.jsonl")))
            .iter()
            .map(|g| g["idempotency_key"].as_str().unwrap().to_owned())
            .collect()
    };
    let run = |tag: &str, state: Option<&Path>, inputs: &[&Path]| -> (Vec<Value>, Vec<Value>) {
        let alerts = dir.path().join(format!("{tag}-alerts.jsonl"));
        let commands = dir.path().join(format!("{tag}-commands.jsonl"));
        let mut args = vec![
            "replay".to_owned(),
            "--alerts".into(),
            p(&alerts),
            "--commands".into(),
            p(&commands),
            "--governance".into(),
            p(&dir.path().join(format!("{tag}-governance.jsonl"))),
        ];
        if let Some(s) = state {
            args.extend(["--state".to_owned(), p(s)]);
        }
        args.extend(inputs.iter().map(|i| p(i)));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        driftwatch_ok(&args);
        (comparable(&alerts), comparable(&commands))
    };
    let whole = run(
        "whole",
        None,
        &[
            &fleet.join("cloudtrail.jsonl"),
            &fleet.join("k8s-audit.jsonl"),
        ],
    );
    let state = dir.path().join("engine.state");
    let (mut alerts, mut commands) = run("first", Some(&state), &first);
    assert!(state.exists(), "the first period saves the state");
    let second_half = run("second", Some(&state), &second);
    assert!(
        !second_half.0.is_empty(),
        "attacks in the second period raise alerts"
    );
    alerts.extend(second_half.0.clone());
    commands.extend(second_half.1);
    assert_eq!(
        alerts, whole.0,
        "alerts of the two periods equal those of one replay"
    );
    assert_eq!(commands, whole.1);
    // Lifecycle steps carry over too: none issued again after the restore, none lost.
    let (before, after) = (governance("first"), governance("second"));
    assert!(!before.is_empty());
    assert!(before.is_disjoint(&after), "{before:?} {after:?}");
    let split: BTreeSet<String> = before.union(&after).cloned().collect();
    assert!(split.is_superset(&governance("whole")));
    let fresh = run("fresh", None, &second);
    assert_ne!(
        fresh.0, second_half.0,
        "without the state, the second period starts cold"
    );
}

/// A 30-identity, 10-day fleet simulated in `dir` and replayed with `--state`: the fleet's
/// directory and the state file.
fn replayed_with_state(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let fleet = simulate(dir, 30, 10, 4);
    let state = dir.join("engine.state");
    driftwatch_ok(&[
        "replay",
        "--alerts",
        &p(&dir.join("a.jsonl")),
        "--commands",
        &p(&dir.join("c.jsonl")),
        "--state",
        &p(&state),
        &p(&fleet.join("cloudtrail.jsonl")),
        &p(&fleet.join("k8s-audit.jsonl")),
    ]);
    (fleet, state)
}

#[test]
fn inspect_shows_what_a_replay_learned_about_an_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (fleet, state) = replayed_with_state(dir.path());
    let ct = fleet.join("cloudtrail.jsonl");
    let k8s = fleet.join("k8s-audit.jsonl");

    // The overview: every identity, riskiest first.
    let out = driftwatch_ok(&["inspect", "--state", &p(&state), "--json"]);
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows.len() >= 30, "{}", rows.len());
    let risks: Vec<u64> = rows
        .iter()
        .map(|r| r["risk_score"].as_u64().unwrap())
        .collect();
    assert!(risks.windows(2).all(|w| w[0] >= w[1]), "{risks:?}");

    // One identity in detail: its endpoints are the calls it made, by name, busiest first.
    let busiest = rows
        .iter()
        .max_by_key(|r| r["events"].as_u64().unwrap())
        .unwrap();
    let key = busiest["identity"].as_str().unwrap();
    let out = driftwatch_ok(&["inspect", "--state", &p(&state), "--json", key]);
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["identity"], key);
    assert_eq!(view["mature"], true);
    let endpoints = view["endpoints"].as_array().unwrap();
    assert!(!endpoints.is_empty());
    let input = std::fs::read_to_string(&ct).unwrap() + &std::fs::read_to_string(&k8s).unwrap();
    let weights: Vec<f64> = endpoints
        .iter()
        .map(|e| e["weight"].as_f64().unwrap())
        .collect();
    assert!(weights.windows(2).all(|w| w[0] >= w[1]), "{weights:?}");
    for e in endpoints {
        let name = e["value"].as_str().unwrap();
        let call = name.rsplit([':', ' ']).next().unwrap();
        assert!(input.contains(call), "{name} is not a call in the input");
    }
    let active: u64 = view["hour_of_week"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_u64().unwrap())
        .sum();
    assert!(active > 0);
    assert!(view["origins"][0]["level"] == "network");

    // As text: the same identity with a heatmap of its active hours.
    let out = driftwatch_ok(&["inspect", "--state", &p(&state), key]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(key) && text.contains("active hours of the week"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("Mon ")), "{text}");

    // What it cannot show, it says.
    let out = driftwatch(&["inspect", "--state", &p(&state), "no-such-identity"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not tracked"));
    let out = driftwatch(&["inspect", "--state", &p(&dir.path().join("missing"))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no state file"));
    let model = dir.path().join("model.toml");
    std::fs::write(&model, "[baseline]\nipv4_network_prefix = 20\n").unwrap();
    let out = driftwatch(&["inspect", "--state", &p(&state), "--model", &p(&model)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another detection model"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The quickstart's first command: the whole service on an in-process broker, restarted
/// halfway as a deploy would, the new instance restoring from the state topic.
#[test]
fn demo_restarts_halfway_restoring_from_the_state_topic_and_catches_the_attacks() {
    // The service's own log lines, so that a failure shows where the stream stopped.
    let args = [
        "demo",
        "--identities",
        "40",
        "--days",
        "10",
        "--metrics-addr",
        "off",
    ];
    let out = driftwatch_with_env(&args, &[("RUST_LOG", "info")]);
    assert!(
        out.status.success(),
        "driftwatch {args:?} failed.\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let restored = regex::Regex::new(
        r"the new instance restored (\d+) identities from the state topic in [0-9.]+s and re-read (\d+) records of history",
    )
    .unwrap()
    .captures(&text)
    .unwrap_or_else(|| panic!("no restart in the demo's output:\n{text}"));
    assert!(
        restored[1].parse::<u32>().unwrap() >= 30,
        "{}",
        &restored[0]
    );
    assert_eq!(&restored[2], "0", "history re-read after the restart");
    let scored = regex::Regex::new(r"(\d+)/(\d+) attacks caught, ([0-9.]+) false alert-hours")
        .unwrap()
        .captures(&text)
        .unwrap_or_else(|| panic!("no score in the demo's output:\n{text}"));
    let (caught, total): (u32, u32) = (scored[1].parse().unwrap(), scored[2].parse().unwrap());
    assert!(
        total > 0 && caught * 10 >= total * 8,
        "{caught}/{total} attacks caught"
    );
    assert!(
        scored[3].parse::<f64>().unwrap() < 5.0,
        "the restart caused false alerts: {}",
        &scored[0]
    );
}

/// Runs `replay` over `inputs` with `extra` flags; returns alerts and commands (without raw
/// references, which name positions) and the summary printed on stderr.
fn replay_files(dir: &Path, tag: &str, extra: &[&str], inputs: &[&Path]) -> (Vec<Value>, String) {
    let alerts = dir.join(format!("{tag}-alerts.jsonl"));
    let mut args: Vec<String> = vec![
        "replay".into(),
        "--alerts".into(),
        alerts.to_str().unwrap().into(),
        "--commands".into(),
        alerts.to_str().unwrap().into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.extend(inputs.iter().map(|p| p.to_str().unwrap().to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = driftwatch_ok(&args);
    (
        comparable(&alerts),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inputs_out_of_order_within_the_window_replay_as_sorted_and_beyond_it_count_as_late() {
    use driftwatch::decode::time::parse_timestamp_ms;
    let dir = tempfile::tempdir().unwrap();
    let fleet = simulate(dir.path(), 40, 12, 5);
    let sorted = fleet.join("cloudtrail.jsonl");
    // Reverse runs of records spanning at most 10 minutes: disorder a delivery pipeline makes
    // (runs with two records at the same millisecond are left alone: their order is a tie that
    // only arrival decides).
    let lines: Vec<String> = std::fs::read_to_string(&sorted)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let time = |l: &str| {
        let v: Value = serde_json::from_str(l).unwrap();
        parse_timestamp_ms(v["eventTime"].as_str().unwrap()).unwrap()
    };
    let mut shuffled = Vec::with_capacity(lines.len());
    let mut reversed = 0;
    for run in lines.chunks(6) {
        let times: Vec<i64> = run.iter().map(|l| time(l)).collect();
        if times[times.len() - 1] - times[0] <= 10 * 60_000 && times.windows(2).all(|w| w[0] < w[1])
        {
            shuffled.extend(run.iter().rev().cloned());
            reversed += 1;
        } else {
            shuffled.extend(run.iter().cloned());
        }
    }
    assert!(reversed > 100, "{reversed} runs reversed");
    let disordered = dir.path().join("disordered.jsonl");
    std::fs::write(&disordered, shuffled.join("\n")).unwrap();

    let (expected, _) = replay_files(dir.path(), "sorted", &[], &[&sorted]);
    assert!(!expected.is_empty());
    let (got, summary) = replay_files(dir.path(), "window", &[], &[&disordered]);
    assert!(!summary.contains("late events"), "{summary}");
    assert_eq!(got, expected, "disorder within the window is put right");

    let (_, summary) = replay_files(
        dir.path(),
        "late",
        &["--max-lateness-seconds", "0"],
        &[&disordered],
    );
    let late: u64 = regex::Regex::new(r"late events: (\d+)")
        .unwrap()
        .captures(&summary)
        .unwrap_or_else(|| panic!("no late events counted:\n{summary}"))[1]
        .parse()
        .unwrap();
    assert!(late > 0);
    assert!(
        summary.contains(&format!("{} records, {} events", lines.len(), lines.len())),
        "late events are processed, not dropped:\n{summary}"
    );
}

#[test]
fn a_record_over_the_size_cap_is_dead_lettered_as_too_large_with_its_first_bytes_only() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("trail.jsonl");
    let huge = GOOD.replace("\"e1\"", &format!("\"{}\"", "x".repeat(50_000)));
    let later = GOOD
        .replace("10:00:00", "10:05:00")
        .replace("\"e1\"", "\"e2\"");
    std::fs::write(&input, format!("{GOOD}\n{huge}\n{later}\n")).unwrap();
    let dead = dir.path().join("dead.jsonl");
    let (_, summary) = replay_files(
        dir.path(),
        "cap",
        &[
            "--max-record-bytes",
            "4096",
            "--dead-letter",
            dead.to_str().unwrap(),
        ],
        &[&input],
    );
    assert!(summary.contains("3 records, 2 events"), "{summary}");
    assert!(summary.contains("too_large=1"), "{summary}");
    let dl = lines(&dead);
    assert_eq!(dl.len(), 1);
    assert_valid(&schema("dead-letter.v1.json"), &dl[0], "dead letter");
    assert_eq!(dl[0]["reason"], "too_large");
    assert_eq!(dl[0]["position"], 2);
    let line = serde_json::to_string(&dl[0]).unwrap();
    assert!(
        line.len() < 1024,
        "a dead letter carries the record's first bytes, not the record ({} bytes)",
        line.len()
    );
}

#[test]
fn a_truncated_gzip_input_fails_alone_and_the_other_inputs_replay() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    for i in 0..3000 {
        let rec = GOOD.replace("\"e1\"", &format!("\"g{i}\""));
        writeln!(enc, "{rec}").unwrap();
    }
    let gz = enc.finish().unwrap();
    let cut = dir.path().join("cut.json.gz");
    std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, format!("{GOOD}\n")).unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let out = driftwatch(&[
        "replay",
        "--alerts",
        alerts.to_str().unwrap(),
        "--commands",
        alerts.to_str().unwrap(),
        cut.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unreadable input is a failure"
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("input error: cannot read input")
            && summary.contains("cut.json.gz (gzip)"),
        "{summary}"
    );
    let events: u64 = regex::Regex::new(r"records, (\d+) events")
        .unwrap()
        .captures(&summary)
        .unwrap()[1]
        .parse()
        .unwrap();
    assert!(
        events > 1 && events < 3001,
        "the cut file's records before the cut and the other input's: {events}\n{summary}"
    );
}

#[test]
fn a_container_of_many_bad_elements_is_counted_but_dead_lettered_only_up_to_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("numbers.json");
    let numbers: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
    std::fs::write(&input, format!("[{}]\n", numbers.join(","))).unwrap();
    let dead = dir.path().join("dead.jsonl");
    let (_, summary) = replay_files(
        dir.path(),
        "numbers",
        &["--dead-letter", dead.to_str().unwrap()],
        &[&input],
    );
    assert!(summary.contains("rejected records: 20000"), "{summary}");
    assert!(
        summary.contains("19900 bad elements of large containers counted but not dead-lettered"),
        "{summary}"
    );
    assert_eq!(lines(&dead).len(), 100);
    let (dead_size, input_size) = (
        std::fs::metadata(&dead).unwrap().len(),
        std::fs::metadata(&input).unwrap().len(),
    );
    assert!(
        dead_size < 4 * input_size,
        "dead letters {dead_size} bytes for a {input_size}-byte record"
    );
}

#[test]
fn more_inputs_than_are_read_at_once_replay_as_one_file_would() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = simulate(dir.path(), 20, 8, 9);
    let all = fleet.join("cloudtrail.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&all)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // 50 consecutive slices, as a trail's delivery files are, named in time order.
    let per = lines.len().div_ceil(50);
    let mut parts = Vec::new();
    for (n, chunk) in lines.chunks(per).enumerate() {
        let p = dir.path().join(format!("part-{n:03}.jsonl"));
        std::fs::write(&p, chunk.join("\n")).unwrap();
        parts.push(p);
    }
    assert!(parts.len() > 32);
    let parts: Vec<&Path> = parts.iter().map(PathBuf::as_path).collect();
    let (expected, _) = replay_files(dir.path(), "one", &[], &[&all]);
    let (got, summary) = replay_files(dir.path(), "many", &[], &parts);
    assert!(
        summary.contains(&format!("{} records, {} events", lines.len(), lines.len())),
        "{summary}"
    );
    assert!(!summary.contains("late events"), "{summary}");
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

#[test]
fn an_input_that_ends_early_does_not_stall_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.jsonl");
    std::fs::write(&short, format!("{GOOD}\n")).unwrap();
    let long = dir.path().join("long.jsonl");
    let mut text = String::new();
    for i in 0..6000 {
        let (m, sec) = (i / 60, i % 60);
        let rec = GOOD
            .replace("10:00:00", &format!("11:{:02}:{sec:02}", m % 60))
            .replace("\"e1\"", &format!("\"l{i}\""));
        text.push_str(&rec);
        text.push('\n');
    }
    std::fs::write(&long, text).unwrap();
    let (_, summary) = replay_files(dir.path(), "early", &[], &[&short, &long]);
    assert!(summary.contains("6001 records, 6001 events"), "{summary}");
}

#[test]
fn one_event_stamped_far_in_the_future_does_not_make_the_rest_of_its_input_late() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = simulate(dir.path(), 30, 6, 11);
    let lines: Vec<String> = std::fs::read_to_string(fleet.join("cloudtrail.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // Two inputs, each in time order, interleaved in time.
    let (a, b): (Vec<_>, Vec<_>) = lines.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let a: Vec<&str> = a.into_iter().map(|(_, l)| l.as_str()).collect();
    let b: Vec<&str> = b.into_iter().map(|(_, l)| l.as_str()).collect();
    let far = {
        let mut v: Value = serde_json::from_str(a[0]).unwrap();
        v["eventTime"] = "2035-01-01T00:00:00Z".into();
        v["eventID"] = "7d6c5b4a-0000-4000-8000-00000000f00d".into();
        v.to_string()
    };
    let write = |name: &str, ls: Vec<&str>| {
        let p = dir.path().join(name);
        std::fs::write(&p, ls.join("\n")).unwrap();
        p
    };
    let mut early: Vec<&str> = a.clone();
    early.insert(5, &far);
    let mut last: Vec<&str> = a.clone();
    last.push(&far);
    let early = write("a-far-early.jsonl", early);
    let last = write("a-far-last.jsonl", last);
    let b = write("b.jsonl", b);

    let (expected, summary) = replay_files(dir.path(), "last", &[], &[&last, &b]);
    assert!(!summary.contains("late events"), "{summary}");
    let (got, summary) = replay_files(dir.path(), "early", &[], &[&early, &b]);
    assert!(
        !summary.contains("late events"),
        "the input with the far-future event is still merged in time order:\n{summary}"
    );
    assert_eq!(got, expected);
}

#[test]
fn a_gcp_identity_gets_the_roles_that_cover_the_permissions_its_calls_were_checked_for() {
    let dir = tempfile::tempdir().unwrap();
    let sa = "etl@shop-prod.iam.gserviceaccount.com";
    // Two weeks of a nightly ETL job: it reads objects and runs BigQuery jobs (the records name
    // the permissions checked), updates a log sink (a record without authorizationInfo: mapped
    // from the method's name) and calls a method no catalogue role maps to.
    let call = |t: i64, service: &str, method: &str, resource: &str, perms: &[&str]| {
        let info: Vec<Value> = perms
            .iter()
            .map(|p| json!({"permission": p, "granted": true, "resource": resource}))
            .collect();
        let mut payload = json!({
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": sa},
            "requestMetadata": {"callerIp": "10.8.0.4", "callerSuppliedUserAgent": "google-api-go-client/0.5"},
            "serviceName": service, "methodName": method, "resourceName": resource,
        });
        if !info.is_empty() {
            payload["authorizationInfo"] = json!(info);
        }
        json!({
            "insertId": format!("{t}-{method}"),
            "logName": "projects/shop-prod/logs/cloudaudit.googleapis.com%2Fdata_access",
            "timestamp": chrono::DateTime::from_timestamp_millis(t).unwrap().to_rfc3339(),
            "resource": {"type": "gcs_bucket", "labels": {"project_id": "shop-prod", "location": "europe-west1"}},
            "protoPayload": payload,
        })
        .to_string()
    };
    let start = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let mut lines = Vec::new();
    for day in 0..14 {
        let t = start + day * 86_400_000 + 2 * 3_600_000;
        for i in 0..5 {
            let object = format!("projects/_/buckets/shop-exports/objects/orders-{day}-{i}.csv");
            lines.push(call(
                t + i * 1000,
                "storage.googleapis.com",
                "storage.objects.get",
                &object,
                &["storage.objects.get"],
            ));
        }
        lines.push(call(
            t + 9000,
            "storage.googleapis.com",
            "storage.objects.list",
            "projects/_/buckets/shop-exports",
            &["storage.objects.list"],
        ));
        lines.push(call(
            t + 10_000,
            "bigquery.googleapis.com",
            "google.cloud.bigquery.v2.JobService.InsertJob",
            "projects/shop-prod/jobs/load",
            &["bigquery.jobs.create"],
        ));
        if day % 7 == 0 {
            lines.push(call(
                t + 11_000,
                "logging.googleapis.com",
                "google.logging.v2.ConfigServiceV2.UpdateSink",
                "projects/shop-prod/sinks/exports",
                &[],
            ));
            lines.push(call(
                t + 12_000,
                "example.googleapis.com",
                "google.example.v1.Frobnicator.Frob",
                "projects/shop-prod",
                &[],
            ));
        }
    }
    let input = dir.path().join("gcp-audit.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let state = dir.path().join("engine.state");
    driftwatch_ok(&[
        "replay",
        "--alerts",
        &p(&dir.path().join("a.jsonl")),
        "--commands",
        &p(&dir.path().join("c.jsonl")),
        "--state",
        &p(&state),
        &p(&input),
    ]);
    let roles = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gcp/roles.json");
    let report = |format: &str| {
        least_privilege(
            &state,
            &["--gcp-roles", &p(&roles), "--format", format],
            driftwatch_ok,
        )
    };
    let reports: Vec<Value> = serde_json::from_slice(&report("json").stdout).unwrap();
    let r = reports.iter().find(|r| r["identity"] == sa).unwrap();
    assert_eq!(r["provider"], "gcp");
    let g = &r["gcp"];
    // The permissions used: the recorded ones and the sink's, mapped from its method name.
    assert_eq!(
        g["permissions"],
        json!([
            "bigquery.jobs.create",
            "logging.sinks.update",
            "storage.objects.get",
            "storage.objects.list"
        ])
    );
    assert_eq!(
        g["derived"],
        json!({"logging.googleapis.com:google.logging.v2.ConfigServiceV2.UpdateSink": "logging.sinks.update"})
    );
    assert_eq!(
        g["unmapped"],
        json!(["example.googleapis.com:google.example.v1.Frobnicator.Frob"])
    );
    // The narrowest roles: the object viewer (not the admins), the job user (not the user); the
    // deprecated legacy role is never offered.
    let chosen: Vec<&str> = g["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        chosen,
        [
            "roles/bigquery.jobUser",
            "roles/logging.configWriter",
            "roles/storage.objectViewer"
        ]
    );
    assert_eq!(g["uncovered"], json!([]));
    let member = format!("serviceAccount:{sa}");
    assert_eq!(
        r["policy"]["bindings"][0],
        json!({"role": "roles/bigquery.jobUser", "members": [member]})
    );
    // The objects read, as their resource names.
    let get = r["used"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["action"] == "storage.googleapis.com:storage.objects.get")
        .unwrap();
    assert_eq!(get["permissions"], json!(["storage.objects.get"]));
    assert_eq!(
        get["resources"],
        json!(["projects/_/buckets/shop-exports/objects/*"])
    );

    // gcp-iam: one document per GCP identity; the table names the roles.
    let docs = String::from_utf8(report("gcp-iam").stdout).unwrap();
    let doc: Value = serde_json::from_str(docs.lines().next().unwrap()).unwrap();
    assert_eq!(doc["identity"], sa);
    assert_eq!(doc["policy"]["bindings"].as_array().unwrap().len(), 3);
    let table = String::from_utf8(report("table").stdout).unwrap();
    assert!(table.contains("role roles/storage.objectViewer (8 permissions) covers storage.objects.get, storage.objects.list"), "{table}");
    assert!(table.contains("no permission known (not granted): example.googleapis.com:google.example.v1.Frobnicator.Frob"), "{table}");

    // Without a catalogue gcp-iam is refused; a bad catalogue is named with every problem.
    let out = least_privilege(&state, &["--format", "gcp-iam"], driftwatch);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --gcp-roles"));
    let bad = dir.path().join("bad-roles.json");
    std::fs::write(
        &bad,
        r#"{"roles":[{"name":"roles/x"},{"name":"oops","includedPermissions":[]}]}"#,
    )
    .unwrap();
    let out = least_privilege(&state, &["--gcp-roles", &p(&bad)], driftwatch);
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad-roles.json: roles[0].includedPermissions")
            && err.contains("bad-roles.json: roles[1].name"),
        "{err}"
    );
}

#[test]
fn the_least_privilege_report_lists_exactly_the_actions_each_identity_used_with_valid_policies() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let (fleet, state) = replayed_with_state(dir.path());
    let ct = fleet.join("cloudtrail.jsonl");
    let k8s = fleet.join("k8s-audit.jsonl");
    // What each identity called, from the input itself.
    let text = std::fs::read_to_string(&ct).unwrap() + &std::fs::read_to_string(&k8s).unwrap();
    // What each identity called in the window (90 days before the newest event, to the hour:
    // the fleet's legacy keys have histories long before it), from the input itself.
    let events = crate::common::decode_all(text.lines());
    let hour = 3_600_000i64;
    let newest = events.iter().map(|e| e.time_ms).max().unwrap();
    let since = (newest - 90 * 86_400_000).div_euclid(hour);
    let mut last_call: BTreeMap<(String, String), i64> = BTreeMap::new();
    for e in &events {
        let t = last_call
            .entry((e.principal.clone(), e.action.clone()))
            .or_default();
        *t = (*t).max(e.time_ms);
    }
    // The S3 buckets each identity's calls named, and the objects each service account's
    // calls named (`namespace/name`).
    let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &events {
        if let Some(r) = &e.resource {
            let r = match r.strip_prefix("arn:aws:s3:::") {
                Some(path) => path.split('/').next().unwrap().to_owned(),
                None => r.clone(),
            };
            named.entry(e.principal.clone()).or_default().insert(r);
        }
    }
    let mut called: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ((principal, action), t) in last_call {
        let in_window = t.div_euclid(hour) >= since;
        let actions = called.entry(principal).or_default();
        if in_window {
            actions.insert(action);
        }
    }

    let out = least_privilege(&state, &["--format", "json"], driftwatch_ok);
    let reports: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(reports.len() >= 30);
    let (mut aws, mut k8s_sa, mut exact, mut scoped) = (0, 0, 0, 0);
    let iam_action = |a: &str| {
        let (service, name) = a.split_once(':').unwrap();
        !service.is_empty()
            && service
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric())
    };
    for r in &reports {
        let key = r["identity"].as_str().unwrap();
        let used: BTreeSet<String> = r["used"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["action"].as_str().unwrap().to_owned())
            .collect();
        // A 10-day fleet is inside the 90-day window: a complete report lists exactly the
        // calls made, not one more or less.
        if r["complete"] == true {
            assert_eq!(&used, &called[key], "{key}");
            exact += 1;
        } else {
            assert!(used.is_subset(&called[key]), "{key}");
        }
        if used.is_empty() {
            // Idle through the window (a legacy key): nothing to grant.
            assert!(r.get("policy").is_none(), "{r}");
            continue;
        }
        match r["identity_type"].as_str().unwrap() {
            "aws_role" | "aws_user" => {
                // An IAM policy document: the version, Allow statements with unique ids, actions
                // of the IAM form service:Action, each on the resources its calls named: S3
                // object actions on the identity's bucket's objects, bucket actions on the
                // bucket, the others (which named none) on `*`.
                let policy = &r["policy"];
                assert_eq!(policy["Version"], "2012-10-17", "{key}");
                let statements = policy["Statement"].as_array().unwrap();
                let sids: BTreeSet<&str> = statements
                    .iter()
                    .map(|s| s["Sid"].as_str().unwrap())
                    .collect();
                assert_eq!(sids.len(), statements.len(), "{policy}");
                let buckets = named.get(key).cloned().unwrap_or_default();
                for statement in statements {
                    assert_eq!(statement["Effect"], "Allow");
                    let actions = statement["Action"].as_array().unwrap();
                    assert!(!actions.is_empty());
                    for a in actions {
                        let a = a.as_str().unwrap();
                        assert!(iam_action(a), "{a}");
                        let want: Value = match a.strip_prefix("s3:") {
                            Some(name) if buckets.len() == 1 => {
                                let b = buckets.first().unwrap();
                                if name.contains("Object") {
                                    json!(format!("arn:aws:s3:::{b}/*"))
                                } else {
                                    json!(format!("arn:aws:s3:::{b}"))
                                }
                            }
                            Some(_) => continue,
                            None => json!("*"),
                        };
                        assert_eq!(statement["Resource"], want, "{key} {a}");
                        if want != "*" {
                            scoped += 1;
                        }
                    }
                }
                aws += 1;
            }
            "k8s_service_account" => {
                // RBAC objects: roles whose rules name verbs and resources or URLs, each bound
                // to the service account.
                let items = r["policy"]["items"].as_array().unwrap();
                let name = key.rsplit(':').next().unwrap();
                for item in items {
                    assert_eq!(item["apiVersion"], "rbac.authorization.k8s.io/v1");
                    match item["kind"].as_str().unwrap() {
                        "Role" | "ClusterRole" => {
                            for rule in item["rules"].as_array().unwrap() {
                                assert!(!rule["verbs"].as_array().unwrap().is_empty());
                                // Restricted to objects it named, in the Role's namespace.
                                for n in rule["resourceNames"].as_array().into_iter().flatten() {
                                    let ns = item["metadata"]["namespace"].as_str().unwrap();
                                    let object = format!("{ns}/{}", n.as_str().unwrap());
                                    assert!(named[key].contains(&object), "{key} {object}");
                                    scoped += 1;
                                }
                                assert!(
                                    rule["resources"].is_array()
                                        || rule["nonResourceURLs"].is_array(),
                                    "{rule}"
                                );
                            }
                        }
                        "RoleBinding" | "ClusterRoleBinding" => {
                            assert_eq!(item["subjects"][0]["kind"], "ServiceAccount");
                            assert_eq!(item["subjects"][0]["name"], name);
                        }
                        other => panic!("unexpected {other}"),
                    }
                }
                k8s_sa += 1;
            }
            _ => {}
        }
    }
    assert!(
        exact >= 20 && aws > 0 && k8s_sa > 0 && scoped >= 10,
        "{exact} {aws} {k8s_sa} {scoped}"
    );

    // The policy formats and one identity alone.
    let key = reports
        .iter()
        .find(|r| r["identity_type"] == "aws_role")
        .unwrap()["identity"]
        .as_str()
        .unwrap();
    let out = least_privilege(
        &state,
        &["--identity", key, "--format", "aws-iam"],
        driftwatch_ok,
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["identity"], key);
    let out = least_privilege(&state, &["--format", "k8s-rbac"], driftwatch_ok);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert!(!list["items"].as_array().unwrap().is_empty());
    let out = least_privilege(&state, &["--identity", "no-such-identity"], driftwatch);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not tracked"));

    // Granted versus used: an inventory grants the role what it used and one action it never
    // used; only that one is unused, and it alone makes the OCSF finding.
    // A role watched at least three times its longest period of use (a grant never used is
    // then unused with confidence 1 - e^-3 > 0.95).
    let newest_ms = newest as f64;
    let role = reports
        .iter()
        .filter(|r| r["identity_type"] == "aws_role" && r["complete"] == true)
        .find(|r| {
            let since =
                driftwatch::decode::time::parse_timestamp_ms(r["observed_since"].as_str().unwrap())
                    .unwrap() as f64;
            let longest = r["used"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|u| u["period_days"].as_f64())
                .fold(1.0, f64::max);
            (newest_ms - since) / 86_400_000.0 > 3.1 * longest
        })
        .expect("a role watched long enough");
    let key = role["identity"].as_str().unwrap();
    let mut granted: Vec<String> = role["used"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["action"].as_str().unwrap().to_owned())
        .collect();
    granted.push("iam:CreateUser".into());
    let inv = dir.path().join("inventory.jsonl");
    std::fs::write(
        &inv,
        serde_json::json!({"key": key, "owner": "team-x", "granted": granted}).to_string(),
    )
    .unwrap();
    let report = |format: &str| {
        least_privilege(
            &state,
            &[
                "--identities",
                &p(&inv),
                "--prior-period-days",
                "1",
                "--format",
                format,
            ],
            driftwatch_ok,
        )
    };
    let reports: Vec<Value> = serde_json::from_slice(&report("json").stdout).unwrap();
    let r = reports.iter().find(|r| r["identity"] == key).unwrap();
    let grants = r["granted"].as_array().unwrap();
    assert_eq!(grants.len(), granted.len());
    for (g, pattern) in grants.iter().zip(&granted) {
        assert_eq!(g["pattern"], pattern.as_str());
        if pattern == "iam:CreateUser" {
            assert_eq!(g["status"], "unused", "{g}");
            assert_eq!(g["used_by"], serde_json::json!([]));
        } else {
            assert_eq!(g["used_by"], serde_json::json!([pattern]), "{g}");
            assert_ne!(g["status"], "undetermined", "{g}");
        }
    }
    assert!(
        r.get("ungranted").is_none(),
        "every used action is granted: {r}"
    );
    assert!(
        reports
            .iter()
            .filter(|r| r["identity"] != key)
            .all(|r| r.get("granted").is_none()),
        "only the declared identity is judged"
    );
    let findings: Vec<Value> = String::from_utf8(report("ocsf").stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let official = crate::common::load_schema("ocsf-1.1.0/detection_finding.schema.json");
    let unused_of = |f: &Value| f["unmapped"]["unused"].clone();
    let mine: Vec<&Value> = findings
        .iter()
        .filter(|f| f["resources"][0]["uid"] == key)
        .collect();
    assert_eq!(mine.len(), 1, "{findings:?}");
    assert!(
        unused_of(mine[0])
            .as_array()
            .unwrap()
            .contains(&"iam:CreateUser".into())
    );
    assert_eq!(mine[0]["resources"][0]["owner"]["name"], "team-x");
    for f in &findings {
        assert!(official.is_valid(f), "{f}");
        assert_eq!(
            f["finding_info"]["types"],
            serde_json::json!(["excess_privilege"])
        );
    }
    let table = String::from_utf8(report("table").stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.contains("granted iam:CreateUser") && l.contains("UNUSED")),
        "{table}"
    );
    let out = least_privilege(&state, &["--format", "ocsf"], driftwatch);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --identities"));

    // A reader that stops early (`| head`) ends the report quietly, not with a panic.
    for args in [
        &["report", "least-privilege", "--format", "json", "--state"][..],
        &["inspect", "--json", "--state"][..],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(args)
            .arg(&state)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
