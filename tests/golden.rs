//! Golden files: real attack records (Stratus Red Team detonations, tests/fixtures/stratus) played
//! on top of two weeks of ordinary use of the same identity, and the alerts and commands they must
//! produce (tests/golden/*.expected.json).
//!
//! The ordinary history is generated here, deterministically: the victim user calls S3 from its
//! office address on weekdays, business hours; a few workload roles run around the clock so the
//! fleet has a history. Then the real records arrive, from the attacker's address, untouched.
//!
//! After an intended change of behaviour, regenerate with `UPDATE_GOLDEN=1 cargo test --test
//! integration golden::` and review the diff of the expected files like code.

use std::path::{Path, PathBuf};

use crate::common::{assert_valid, decode_all, run, schema};
use driftwatch::decode::time::{format_rfc3339_ms, parse_timestamp_ms};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn cloudtrail(identity: &Value, t: i64, action: &str, ip: &str, ua: &str, n: usize) -> String {
    let (source, name) = action.split_once(':').unwrap();
    json!({
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": format_rfc3339_ms(t),
        "eventSource": source,
        "eventName": name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": ip,
        "userAgent": ua,
        "eventID": format!("history-{n}"),
        "recipientAccountId": identity["accountId"],
    })
    .to_string()
}

/// Two weeks of the victim's ordinary use and of a few peers, ending an hour before `until`.
fn history(victim: &Value, until: i64) -> Vec<String> {
    let mut lines = Vec::new();
    let from = (until - 14 * DAY).div_euclid(DAY) * DAY;
    let office_ua = "Boto3/1.34.2 md/Botocore#1.34.2 ua/2.0 os/linux#5.10 lang/python#3.11.6";
    let mut t = from;
    while t < until - HOUR {
        let hour = t.div_euclid(HOUR);
        let weekday = (hour.div_euclid(24) + 3).rem_euclid(7) < 5; // 1970-01-01 was a Thursday
        let hod = hour.rem_euclid(24);
        if weekday && (8..18).contains(&hod) {
            for k in 0..4 {
                let action = ["s3.amazonaws.com:ListObjects", "s3.amazonaws.com:GetObject"][k % 2];
                let n = lines.len();
                lines.push(cloudtrail(
                    victim,
                    t + k as i64 * 900_000 + 7_000,
                    action,
                    "198.51.100.10",
                    office_ua,
                    n,
                ));
            }
        }
        for p in 0..4 {
            let peer = json!({"type": "AssumedRole", "arn": format!("arn:aws:sts::{}:assumed-role/app-{p}/s", victim["accountId"].as_str().unwrap()),
                "accountId": victim["accountId"], "accessKeyId": "ASIAPEER",
                "sessionContext": {"sessionIssuer": {"arn": format!("arn:aws:iam::{}:role/app-{p}", victim["accountId"].as_str().unwrap())}}});
            let n = lines.len();
            lines.push(cloudtrail(
                &peer,
                t + p * 60_000,
                "sqs.amazonaws.com:ReceiveMessage",
                &format!("52.10.20.{}", 30 + p),
                "aws-sdk-go/1.50.1",
                n,
            ));
        }
        t += HOUR;
    }
    lines
}

/// What is compared with the golden file: the decisions, not every word of their evidence.
fn summary(alerts: &[Value], commands: &[Value]) -> Value {
    json!({
        "alerts": alerts.iter().map(|a| json!({
            "activity": a["activity_name"],
            "identity": a["resources"][0]["uid"],
            "time": format_rfc3339_ms(a["time"].as_i64().unwrap()),
            "first_seen_time": format_rfc3339_ms(a["finding_info"]["first_seen_time"].as_i64().unwrap()),
            "types": a["finding_info"]["types"],
            "risk_score": a["risk_score"],
            "severity_id": a["severity_id"],
            "mature": a["unmapped"]["identity_mature"],
        })).collect::<Vec<_>>(),
        "commands": commands.iter().map(|c| json!({
            "action": c["action"],
            "mode": c["mode"],
            "identity": c["target"]["identity"]["key"],
            "credential": c["target"]["credential"]["id"],
            "issued_at": c["issued_at"],
        })).collect::<Vec<_>>(),
    })
}

fn golden(technique: &str) -> Value {
    let fixture = root().join(format!("tests/fixtures/stratus/{technique}.json"));
    let records: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    let start = records
        .iter()
        .filter_map(|r| parse_timestamp_ms(r["eventTime"].as_str()?))
        .min()
        .unwrap();
    let victim = records
        .iter()
        .find(|r| r["userIdentity"]["type"] == "IAMUser")
        .expect("an IAM user detonated it")["userIdentity"]
        .clone();
    let mut lines = history(&victim, start);
    lines.extend(records.iter().map(Value::to_string));
    let events = decode_all(lines.iter().map(String::as_str));
    let (_, out) = run(&events, None);

    let victim_key = victim["arn"].as_str().unwrap();
    let alert_schema = schema("alert.v1.json");
    for a in &out.alerts {
        assert_valid(&alert_schema, a, "alert");
        assert!(
            a["time"].as_i64().unwrap() >= start,
            "{technique}: alert before the attack: {a}"
        );
    }
    assert!(
        out.alerts
            .iter()
            .any(|a| a["resources"][0]["uid"] == victim_key),
        "{technique}: the victim was not alerted"
    );

    let got = summary(&out.alerts, &out.commands);
    let path = root().join(format!("tests/golden/{technique}.expected.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} missing: run UPDATE_GOLDEN=1 cargo test --test golden",
                path.display()
            )
        }))
        .unwrap();
    assert_eq!(
        got,
        expected,
        "{technique}: output differs from {}",
        path.display()
    );
    got
}

#[test]
fn user_creating_an_admin_user_from_a_new_address_is_alerted_and_its_key_disabled() {
    let got = golden("aws.persistence.iam-create-admin-user");
    let types = got["alerts"][0]["types"].to_string();
    assert!(
        types.contains("new_endpoint") && types.contains("new_origin"),
        "{types}"
    );
    assert_eq!(got["commands"][0]["action"], "disable_access_key");
    assert_eq!(got["commands"][0]["mode"], "dry_run");
}

#[test]
fn user_retrieving_secrets_in_bulk_from_a_new_address_is_alerted() {
    let got = golden("aws.credential-access.secretsmanager-retrieve-secrets");
    assert!(
        got["alerts"][0]["types"]
            .to_string()
            .contains("new_endpoint")
    );
}

#[test]
fn user_sending_ssm_commands_to_steal_instance_credentials_is_alerted() {
    let got = golden("aws.credential-access.ec2-steal-instance-credentials");
    assert!(
        got["alerts"][0]["types"]
            .to_string()
            .contains("new_endpoint")
    );
}
