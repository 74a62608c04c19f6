//! Nothing secret leaves: credentials planted in every string field of every input format never
//! reach an alert, a command, a summary, a log line (text or JSON, at debug level) or a
//! dead-letter error. The dead-letter `record` keeps the raw bytes by design (it goes where the
//! input already was) and is the one place they may appear.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

/// One of each format the scrubber must know (see `src/redact.rs` for the rule set).
const SECRETS: &[&str] = &[
    "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tV9wX1yZ3b5D",
    "gho_16C7e42F292c6912E7710c838347Ae178B4a",
    "ghs_R2d2C3poQ7bb8Y9xW1vU2tS3rQ4pO5nM6lK7",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV",
    "xoxb-2048-1024-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_51HqLyjWDarjtT1zdp7dcXyzQ",
    "rk_live_51HqLyjWDarjtT1zdp7dcXyzQ",
    "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "npm_aB3dE5fG7hJ9kL1mN3pQ5rS7tV9wX1yZ3b5D",
    "h3Kq9Zr/T7vW2mXb8Lp4Ns+Yc1Df6Gj0Ru5Ea9Qx",
    "7c4a8d09ca3762af61e59520943dc26494f8941b",
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2E6YXBpIn0.dGhpc2lzYXNpZ25hdHVyZQ",
];

/// Secrets that are only secrets in context: the part after the key is what must not leak.
const PAIRS: &[(&str, &str)] = &[
    ("password=", "Tr0ub4dor&3"),
    ("secret=", "s3cr3t-value-77"),
    ("token=", "tok-5a7b9c"),
    ("X-Api-Key: ", "k3y-1a2b3c4d"),
    ("https://deploy:", "Pa55w0rdUrl"),
    (
        "https://blob.core.windows.net/c?sv=2022&sig=",
        "AbC2Fd3sigvalue",
    ),
    (
        "-----BEGIN RSA PRIVATE KEY-----",
        "MIIEpAIBAAKCAQEAsecretkeymaterial",
    ),
];

/// What is planted, and the substring whose presence anywhere means it leaked.
fn plants() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = SECRETS
        .iter()
        .map(|s| ((*s).to_owned(), (*s).to_owned()))
        .collect();
    for (k, s) in PAIRS {
        let tail = if k.starts_with("https://deploy:") {
            "@git.example.com/r.git"
        } else if k.starts_with("-----BEGIN") {
            "-----END RSA PRIVATE KEY-----"
        } else {
            ""
        };
        v.push((format!("{k}{s}{tail}"), (*s).to_owned()));
    }
    v
}

fn templates() -> Vec<Value> {
    vec![
        json!({"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:i-0abc","arn":"arn:aws:sts::111122223333:assumed-role/app/i-0abc1234def567890","accountId":"111122223333","accessKeyId":"ASIAQGYBLPWY3VEXAMPL","sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::111122223333:role/app","accountId":"111122223333","userName":"app"}}},"eventTime":"T","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-sdk-go/1.44.0","requestParameters":{"bucketName":"reports","key":"daily/part-0001.parquet"},"errorCode":null,"eventID":"2e6389af-b8bc-4c26-92d2-714fbe9cb4fa","recipientAccountId":"111122223333","vpcEndpointId":"vpce-0a1b2c3d"}),
        json!({"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"7c3a4b2e-1d2f-4e5a-9b8c-0d1e2f3a4b5c","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/configmaps/settings","verb":"get","user":{"username":"system:serviceaccount:payments:api","groups":["system:serviceaccounts"],"extra":{"authentication.kubernetes.io/pod-name":["api-7d9f8b6c5-x2k4p"],"authentication.kubernetes.io/credential-id":["JTI=2e6389af-b8bc-4c26-92d2-714fbe9cb4fa"]}},"sourceIPs":["10.0.4.17"],"userAgent":"payments-api/1.4.2","objectRef":{"resource":"configmaps","namespace":"payments","name":"settings","apiVersion":"v1"},"responseStatus":{"code":200},"requestReceivedTimestamp":"T","stageTimestamp":"T"}),
        json!({"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","status":{},"authenticationInfo":{"principalEmail":"etl@my-project.iam.gserviceaccount.com","serviceAccountKeyName":"//iam.googleapis.com/projects/my-project/serviceAccounts/etl@my-project.iam.gserviceaccount.com/keys/0123456789abcdef0123456789abcdef01234567"},"requestMetadata":{"callerIp":"203.0.113.9","callerSuppliedUserAgent":"google-cloud-sdk/450.0.0"},"serviceName":"storage.googleapis.com","methodName":"storage.objects.get","resourceName":"projects/_/buckets/exports/objects/a.csv"},"insertId":"abc123def","resource":{"type":"gcs_bucket","labels":{"project_id":"my-project"}},"timestamp":"T","logName":"projects/my-project/logs/cloudaudit.googleapis.com%2Fdata_access"}),
        json!({"schema":"driftwatch.access-event.v1","time":"T","event_id":"n-1","tenant":"acme","principal":{"key":"svc:billing-exporter","type":"service"},"credential":{"id":"key-0001","type":"api_key"},"session_id":"s-1","action":"billing:ExportInvoices","resource":"invoices/2026","outcome":{"success":true},"origin":{"ip":"192.0.2.10","user_agent":"exporter/2.1","vpc_endpoint":"vpce-1","workload":{"cluster":"prod","namespace":"billing","pod":"exporter-5f6d7c8b9-abcde"}}}),
    ]
}

fn set_time(v: &mut Value, t: &str) {
    match v {
        Value::String(s) if s == "T" => *s = t.to_owned(),
        Value::Object(m) => m.values_mut().for_each(|x| set_time(x, t)),
        Value::Array(a) => a.iter_mut().for_each(|x| set_time(x, t)),
        _ => {}
    }
}

/// Paths (as index lists into objects/arrays) of every string in `v`.
fn string_paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::String(_) => out.push(at.clone()),
        Value::Object(m) => {
            for (k, x) in m {
                at.push(k.clone());
                string_paths(x, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(i.to_string());
                string_paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        other => &mut other[k.as_str()],
    })
}

/// Two weeks of hourly, ordinary use per template (so the identities are mature and a planted
/// record is novel enough to alert), then every string field of every template planted with
/// every secret, alone and inside ordinary text.
fn input(dir: &Path) -> std::path::PathBuf {
    let mut lines = Vec::new();
    let start = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let hour = 3_600_000i64;
    for t in templates() {
        for h in 0..14 * 24 {
            let mut v = t.clone();
            let ts = driftwatch::decode::time::format_rfc3339_ms(start + h * hour);
            set_time(&mut v, &ts);
            lines.push(v.to_string());
        }
    }
    let mut n = 0i64;
    for t in templates() {
        let mut paths = Vec::new();
        string_paths(&t, &mut Vec::new(), &mut paths);
        for path in &paths {
            for (planted, _) in plants() {
                for text in [planted.clone(), format!("ordinary-prefix {planted} tail")] {
                    let mut v = t.clone();
                    let ts = driftwatch::decode::time::format_rfc3339_ms(
                        start + 14 * 24 * hour + n * 600_000,
                    );
                    n += 1;
                    set_time(&mut v, &ts);
                    *at_path(&mut v, path) = Value::String(text);
                    lines.push(v.to_string());
                }
            }
        }
    }
    let p = dir.join("planted.jsonl");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

#[test]
fn credentials_planted_in_every_field_of_every_format_never_leave_in_any_output_or_log() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let mut alerts_seen = 0;
    let mut dead_seen = 0;
    for format in ["json", "text"] {
        let (alerts, commands, dead) = (
            dir.path().join(format!("alerts-{format}.jsonl")),
            dir.path().join(format!("commands-{format}.jsonl")),
            dir.path().join(format!("dead-{format}.jsonl")),
        );
        let out = crate::common::output_within(
            Command::new(env!("CARGO_BIN_EXE_driftwatch"))
                .args(["replay", input.to_str().unwrap(), "--alerts"])
                .arg(&alerts)
                .arg("--commands")
                .arg(&commands)
                .arg("--dead-letter")
                .arg(&dead)
                .args(["--log-format", format])
                .env("RUST_LOG", "debug"),
        );
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut places: Vec<(String, String)> = vec![
            ("stdout".into(), String::from_utf8_lossy(&out.stdout).into()),
            ("stderr".into(), String::from_utf8_lossy(&out.stderr).into()),
            ("alerts".into(), std::fs::read_to_string(&alerts).unwrap()),
            (
                "commands".into(),
                std::fs::read_to_string(&commands).unwrap(),
            ),
        ];
        alerts_seen += places[2].1.lines().count();
        // Dead letters: everything but the raw record itself.
        for line in std::fs::read_to_string(&dead).unwrap().lines() {
            let mut v: Value = serde_json::from_str(line).unwrap();
            v.as_object_mut().unwrap().remove("record");
            places.push(("dead letter".into(), v.to_string()));
            dead_seen += 1;
        }
        for (planted, tell) in plants() {
            for (place, text) in &places {
                assert!(
                    !text.contains(&tell),
                    "`{planted}` leaked into {place} ({format} logs): …{}…",
                    {
                        let i = text.find(&tell).unwrap();
                        let from = text[..i]
                            .char_indices()
                            .rev()
                            .nth(120)
                            .map_or(0, |(j, _)| j);
                        &text[from..(i + tell.len() + 40).min(text.len())]
                    }
                );
            }
        }
    }
    // The test proves something only if alerts and dead letters were written.
    assert!(alerts_seen > 0, "no alert was raised");
    assert!(dead_seen > 0, "no record was dead-lettered");
}
