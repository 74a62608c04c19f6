//! Helpers shared by the integration tests: run the engine in-process, validate messages.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use driftwatch::config::Model;
use driftwatch::config::Rules;
use driftwatch::decide::Decision;
use driftwatch::decode::{self, Decoded, FormatHint};
use driftwatch::emit;
use driftwatch::engine::Engine;
use driftwatch::event::{AccessEvent, RawRef};
use serde_json::Value;

/// The broker the Kafka tests use (scripts/test.sh starts one).
pub fn brokers() -> String {
    std::env::var("DRIFTWATCH_TEST_BROKERS").expect(
        "DRIFTWATCH_TEST_BROKERS is not set: run the suite with scripts/test.sh, which starts a \
         tansu broker on loopback, or point it at any Kafka broker (host:port)",
    )
}

/// A topic or group name no other test run uses.
pub fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("dwtest-{name}-{}-{nanos}", std::process::id())
}

/// Sends SIGTERM to a spawned driftwatch.
pub fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
}

/// A loopback port nothing listens on now (bound and released), for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The longest one command may run in a test: a command that hangs fails its test with what it
/// printed, instead of holding the suite until CI gives up on it.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(600);

/// As [`Command::output`] (stdin empty, stdout and stderr captured), but a command still running
/// after [`COMMAND_DEADLINE`] is killed and the test fails showing what it printed.
pub fn output_within(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > COMMAND_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} ran for over {} s and was killed.\nstdout:\n{}\nstderr:\n{}",
                COMMAND_DEADLINE.as_secs(),
                String::from_utf8_lossy(&stdout.join().unwrap()),
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The schemas a message must match: its own, and for an alert the official OCSF 1.1.0
/// Detection Finding class that `alert.v1.json` profiles (generated from the OCSF schema's text
/// by `scripts/ocsf_schema.py`).
pub struct Schemas(Vec<(String, jsonschema::Validator)>);

pub fn load_schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()))
}

pub fn schema(name: &str) -> Schemas {
    let mut all = vec![(name.to_owned(), load_schema(name))];
    if name == "alert.v1.json" {
        let official = "ocsf-1.1.0/detection_finding.schema.json";
        all.push((official.to_owned(), load_schema(official)));
    }
    Schemas(all)
}

/// Panics with every schema error when `v` does not validate against each of `schemas`.
pub fn assert_valid(schemas: &Schemas, v: &Value, what: &str) {
    let errors: Vec<String> = schemas
        .0
        .iter()
        .flat_map(|(name, validator)| {
            validator
                .iter_errors(v)
                .map(move |e| format!("{name}: {} at {}", e, e.instance_path()))
        })
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema:\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(v).unwrap()
    );
}

/// Decodes raw records (any supported format), panicking on any rejection.
pub fn decode_all<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<AccessEvent> {
    let mut out = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        let raw = RawRef::new("test".into(), i as u64 + 1);
        decode::decode_record(
            line.as_bytes(),
            FormatHint::Auto,
            None,
            &raw,
            &mut |_, _, r| match r {
                Ok(Decoded::Event(e)) => out.push(*e),
                Ok(Decoded::Skipped(_)) => {}
                Err(e) => panic!("record {} rejected: {e}\n{line}", i + 1),
            },
        );
    }
    out.sort_by_key(|e| e.time_ms);
    out
}

/// Rendered alerts and commands, in emission order.
#[derive(Default)]
pub struct Outputs {
    pub alerts: Vec<Value>,
    pub commands: Vec<Value>,
    /// Governance commands of the dormancy lifecycle.
    pub governance: Vec<Value>,
}

impl Outputs {
    /// Alerts about one identity.
    pub fn alerts_for(&self, principal: &str) -> Vec<&Value> {
        self.alerts
            .iter()
            .filter(|a| a["resources"][0]["uid"] == principal)
            .collect()
    }

    /// Union of `finding_info.types` over an identity's alerts.
    pub fn types_for(&self, principal: &str) -> Vec<String> {
        let mut t: Vec<String> = self
            .alerts_for(principal)
            .iter()
            .flat_map(|a| {
                a["finding_info"]["types"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        t.sort();
        t.dedup();
        t
    }
}

/// Runs events through a fresh engine with `model` (the embedded default when `None`).
pub fn run(events: &[AccessEvent], model: Option<Model>) -> (Engine, Outputs) {
    run_with(events, Rules::new(model.unwrap_or_else(Model::embedded)))
}

/// Runs events through a fresh engine with compiled `rules`.
pub fn run_with(events: &[AccessEvent], rules: Rules) -> (Engine, Outputs) {
    let engine = Engine::new(rules);
    let mut out = Outputs::default();
    continue_with(&engine, events, &mut out);
    (engine, out)
}

/// Runs events through `engine`, adding what it emits to `out`.
pub fn continue_with(engine: &Engine, events: &[AccessEvent], out: &mut Outputs) {
    for e in events {
        for d in engine.process(e) {
            // Emitted as its record happens: commands are stamped with event time here, so that
            // two runs over the same events compare equal.
            let v = emit::render(&d, e.time_ms);
            match d {
                Decision::Alert(_) => out.alerts.push(v),
                Decision::Command(c) if c.lifecycle.is_some() => out.governance.push(v),
                Decision::Command(_) => out.commands.push(v),
            }
        }
    }
}
