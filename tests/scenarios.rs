//! Golden scenarios: short stories of one identity's life, told as native events, and what
//! driftwatch must (and must not) say about them. Every emitted alert and command is checked
//! against its schema.

use crate::common::{Outputs, assert_valid, continue_with, decode_all, run_with, schema};
use driftwatch::config::Inventory;
use driftwatch::config::Model;
use driftwatch::config::Rules;
use serde_json::json;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const MINUTE: i64 = 60_000;
/// 2026-03-02T00:00:00Z, a Monday.
const T0: i64 = 1_772_409_600_000;

struct Who {
    key: &'static str,
    kind: &'static str,
    credential: &'static str,
    pod: Option<&'static str>,
}

/// Peer role `NAME-n` of the story's account, calling from 52.10.20.(`first_host` + n).
fn peer(name: &str, n: i64, first_host: i64) -> (Who, &'static str) {
    let key: &'static str =
        Box::leak(format!("arn:aws:iam::111122223333:role/{name}-{n}").into_boxed_str());
    let who = Who {
        key,
        kind: "aws_role",
        credential: "ASIAPEER",
        pod: None,
    };
    let ip: &'static str = Box::leak(format!("52.10.20.{}", first_host + n).into_boxed_str());
    (who, ip)
}

/// Builds a stream of native records.
#[derive(Default)]
struct Story {
    lines: Vec<String>,
}

impl Story {
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        who: &Who,
        t: i64,
        action: &str,
        ip: &str,
        ua: &str,
        denied: bool,
        bytes_out: Option<u64>,
    ) {
        let mut origin = json!({"ip": ip, "user_agent": ua});
        if let Some(pod) = who.pod {
            origin["workload"] = json!({"namespace": "payments", "pod": pod, "node": "node-3"});
        }
        let mut rec = json!({
            "schema": "driftwatch.access-event.v1",
            "time": t,
            "event_id": format!("e{}", self.lines.len()),
            "tenant": "111122223333",
            "principal": {"key": who.key, "type": who.kind},
            "credential": {"id": who.credential, "type": if who.kind == "k8s_service_account" { "k8s_token" } else { "aws_access_key" }},
            "action": action,
            "origin": origin,
        });
        if denied {
            rec["outcome"] =
                json!({"success": false, "error_code": "AccessDenied", "denied": true});
        }
        if let Some(b) = bytes_out {
            rec["volume"] = json!({"bytes_out": b});
        }
        self.lines.push(rec.to_string());
    }

    /// `per_hour` calls in each of `hours` (UTC) on days `days`, cycling through `actions`.
    #[allow(clippy::too_many_arguments)]
    fn routine(
        &mut self,
        who: &Who,
        days: std::ops::Range<i64>,
        hours: std::ops::Range<i64>,
        per_hour: i64,
        actions: &[&str],
        ip: &str,
        ua: &str,
    ) {
        for d in days {
            for h in hours.clone() {
                for i in 0..per_hour {
                    let t = T0
                        + d * DAY
                        + h * HOUR
                        + i * (HOUR / per_hour)
                        + (d * 7 + i * 13) % 50 * 1000;
                    self.call(
                        who,
                        t,
                        actions[(i + d + h) as usize % actions.len()],
                        ip,
                        ua,
                        false,
                        None,
                    );
                }
            }
        }
    }

    /// A quiet fleet around the protagonist, so fleet-wide rarity means something.
    fn with_peers(mut self, days: i64) -> Story {
        for n in 0..6 {
            let (peer, ip) = peer("peer", n, 30);
            self.routine(
                &peer,
                0..days,
                0..24,
                3,
                &[
                    "s3.amazonaws.com:GetObject",
                    "sqs.amazonaws.com:ReceiveMessage",
                ],
                ip,
                "aws-sdk-go/1.50.1 (go1.21.6; linux; amd64)",
            );
        }
        self
    }

    fn play(&self) -> Outputs {
        self.play_with(Rules::new(Model::embedded()))
    }

    fn play_with(&self, rules: Rules) -> Outputs {
        let events = decode_all(self.lines.iter().map(String::as_str));
        let (_, out) = run_with(&events, rules);
        let alert_schema = schema("alert.v1.json");
        let command_schema = schema("revocation-command.v1.json");
        for a in &out.alerts {
            assert_valid(&alert_schema, a, "alert");
        }
        for c in out.commands.iter().chain(&out.governance) {
            assert_valid(&command_schema, c, "command");
        }
        out
    }

    /// Event time of `who`'s last record.
    fn last_seen(&self, who: &Who) -> i64 {
        self.lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["principal"]["key"] == who.key)
            .map(|v| v["time"].as_i64().unwrap())
            .max()
            .expect("the story has records of it")
    }
}

const ROLE: Who = Who {
    key: "arn:aws:iam::111122223333:role/payments",
    kind: "aws_role",
    credential: "ASIAPAYMENTS00000001",
    pod: None,
};
const SDK: &str = "aws-sdk-go/1.50.1 (go1.21.6; linux; amd64)";
const WORK: [&str; 3] = [
    "s3.amazonaws.com:GetObject",
    "dynamodb.amazonaws.com:PutItem",
    "sqs.amazonaws.com:SendMessage",
];

#[test]
fn workload_role_that_suddenly_calls_iam_is_alerted_and_revoked_in_dry_run() {
    let mut s = Story::default().with_peers(16);
    s.routine(&ROLE, 0..16, 0..24, 6, &WORK, "52.10.20.30", SDK);
    let attack = T0 + 14 * DAY + 10 * HOUR + 7 * MINUTE;
    for (i, a) in [
        "iam.amazonaws.com:CreateUser",
        "iam.amazonaws.com:CreateAccessKey",
        "iam.amazonaws.com:AttachUserPolicy",
    ]
    .iter()
    .enumerate()
    {
        s.call(
            &ROLE,
            attack + i as i64 * 20_000,
            a,
            "52.10.20.30",
            SDK,
            false,
            None,
        );
    }
    let out = s.play();

    let alerts = out.alerts_for(ROLE.key);
    assert!(
        !alerts.is_empty(),
        "no alert for a workload role creating IAM users"
    );
    assert!(
        alerts.iter().all(|a| a["time"].as_i64() >= Some(attack)),
        "alerted before the attack: {alerts:?}"
    );
    assert_eq!(
        alerts[0]["finding_info"]["first_seen_time"], attack,
        "first_seen_time is the event time of the first IAM call"
    );
    assert!(out.types_for(ROLE.key).contains(&"new_endpoint".to_owned()));
    let cmd = out
        .commands
        .iter()
        .find(|c| c["target"]["identity"]["key"] == ROLE.key)
        .expect("a revocation command");
    assert_eq!(cmd["mode"], "dry_run");
    assert_eq!(cmd["action"], "revoke_role_sessions");
    assert_eq!(cmd["target"]["credential"]["id"], "ASIAPAYMENTS00000001");
    assert_eq!(
        cmd["reason"]["finding_uid"],
        alerts[0]["finding_info"]["uid"]
    );
    assert!(
        out.alerts
            .iter()
            .all(|a| a["resources"][0]["uid"] == ROLE.key),
        "peers raised alerts: {:?}",
        out.alerts
    );
}

#[test]
fn pod_token_replayed_from_the_internet_is_caught_on_its_first_call() {
    let sa = Who {
        key: "system:serviceaccount:payments:api",
        kind: "k8s_service_account",
        credential: "JTI=7c0d",
        pod: Some("api-7d9f8b6c5-x2k4p"),
    };
    let mut s = Story::default().with_peers(16);
    s.routine(
        &sa,
        0..16,
        0..24,
        8,
        &["get:configmaps", "list:pods", "update:leases"],
        "10.244.3.17",
        "api/v1.4.2 (linux/amd64) kubernetes/$Format",
    );
    let attack = T0 + 15 * DAY + 3 * HOUR + 33 * MINUTE;
    s.call(
        &sa,
        attack,
        "list:pods",
        "203.0.113.50",
        "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
        false,
        None,
    );
    s.call(
        &sa,
        attack + 20_000,
        "get:secrets",
        "203.0.113.50",
        "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
        false,
        None,
    );
    let out = s.play();

    let alerts = out.alerts_for(sa.key);
    assert!(
        !alerts.is_empty(),
        "stolen pod token used from the internet was not alerted"
    );
    assert_eq!(
        alerts[0]["time"], attack,
        "alert must come with the first replayed call"
    );
    let types = out.types_for(sa.key);
    assert!(
        types.contains(&"credential_outside_workload".to_owned()),
        "{types:?}"
    );
    assert!(types.contains(&"new_origin".to_owned()), "{types:?}");
    let evidence = alerts[0]["evidences"].to_string();
    assert!(
        evidence.contains("203.0.113.0/24") && evidence.contains("internal"),
        "evidence shows observed vs baseline networks: {evidence}"
    );
}

#[test]
fn ci_key_with_a_new_runner_address_for_every_job_stays_quiet() {
    let ci = Who {
        key: "arn:aws:iam::111122223333:user/ci-deploy",
        kind: "aws_user",
        credential: "AKIACIDEPLOY00000001",
        pod: None,
    };
    let mut s = Story::default().with_peers(21);
    for d in 0..21 {
        if d % 7 >= 5 {
            continue;
        }
        for job in 0..6i64 {
            let t = T0 + d * DAY + (9 + job) * HOUR + (d * 11 + job * 7) % 50 * MINUTE;
            let ip = format!(
                "{}.{}.{}.{}",
                [20, 40, 52, 13][(job % 4) as usize],
                (d * 37 + job * 91) % 250,
                (d * 13 + job * 29) % 250,
                10 + job
            );
            for (k, a) in [
                "sts.amazonaws.com:GetCallerIdentity",
                "ecr.amazonaws.com:GetAuthorizationToken",
                "ecr.amazonaws.com:PutImage",
                "s3.amazonaws.com:PutObject",
            ]
            .iter()
            .enumerate()
            {
                s.call(
                    &ci,
                    t + k as i64 * 15_000,
                    a,
                    &ip,
                    "aws-cli/2.15.30 Python/3.11.8 Linux/5.15.0-1053-azure",
                    false,
                    None,
                );
            }
        }
    }
    let out = s.play();
    assert!(
        out.alerts.is_empty(),
        "legitimate CI runner churn raised alerts: {:#?}",
        out.alerts
            .iter()
            .map(|a| &a["finding_info"]["desc"])
            .collect::<Vec<_>>()
    );
}

#[test]
fn nightly_job_active_at_noon_is_a_volume_spike() {
    let job = Who {
        key: "arn:aws:iam::111122223333:role/nightly-export",
        kind: "aws_role",
        credential: "ASIANIGHTLY",
        pod: None,
    };
    let mut s = Story::default().with_peers(16);
    s.routine(
        &job,
        0..15,
        1..3,
        300,
        &["s3.amazonaws.com:GetObject", "s3.amazonaws.com:PutObject"],
        "52.10.20.40",
        SDK,
    );
    let noon = T0 + 15 * DAY + 12 * HOUR;
    for i in 0..120 {
        s.call(
            &job,
            noon + i * 10_000,
            "s3.amazonaws.com:GetObject",
            "52.10.20.40",
            SDK,
            false,
            None,
        );
    }
    let out = s.play();
    let alerts = out.alerts_for(job.key);
    assert!(!alerts.is_empty(), "nightly job at noon not alerted");
    assert!(alerts.iter().all(|a| a["time"].as_i64() >= Some(noon)));
    assert!(
        out.types_for(job.key).contains(&"volume_spike".to_owned()),
        "{:?}",
        out.types_for(job.key)
    );
}

#[test]
fn dormant_key_waking_up_is_alerted() {
    let key = Who {
        key: "arn:aws:iam::111122223333:user/legacy-sync",
        kind: "aws_user",
        credential: "AKIALEGACY0000000001",
        pod: None,
    };
    let mut s = Story::default().with_peers(50);
    s.routine(
        &key,
        0..6,
        9..17,
        4,
        &["s3.amazonaws.com:ListObjects", "s3.amazonaws.com:GetObject"],
        "198.51.100.20",
        "Boto3/1.28.3 Python/3.9.18",
    );
    let wake = T0 + 47 * DAY + 4 * HOUR;
    s.call(
        &key,
        wake,
        "s3.amazonaws.com:ListObjects",
        "198.51.100.20",
        "Boto3/1.28.3 Python/3.9.18",
        false,
        None,
    );
    let out = s.play();
    let alerts = out.alerts_for(key.key);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["time"], wake);
    assert!(
        out.types_for(key.key)
            .contains(&"dormant_reactivation".to_owned())
    );
    assert_eq!(
        alerts[0]["unmapped"]["identity_mature"], true,
        "alerts state the identity's maturity"
    );
}

#[test]
fn pod_restarts_and_sdk_patch_upgrades_are_not_alerts() {
    let mut s = Story::default().with_peers(21);
    for d in 0..21i64 {
        let pod: &'static str = Box::leak(
            format!(
                "api-{:09x}-{:05}",
                0x7d9f8b6c5u64 + (d / 3) as u64,
                10000 + d / 2
            )
            .into_boxed_str(),
        );
        let sa = Who {
            key: "system:serviceaccount:payments:api",
            kind: "k8s_service_account",
            credential: "JTI=1",
            pod: Some(pod),
        };
        let ip = format!("10.244.{}.{}", (d / 2) % 24, 10 + d);
        let ua = format!("api/v1.4.{} (linux/amd64) kubernetes/$Format", d / 10);
        s.routine(
            &sa,
            d..d + 1,
            0..24,
            8,
            &["get:configmaps", "list:pods", "update:leases"],
            &ip,
            &ua,
        );
    }
    let out = s.play();
    assert!(
        out.alerts.is_empty(),
        "{:#?}",
        out.alerts
            .iter()
            .map(|a| &a["finding_info"]["desc"])
            .collect::<Vec<_>>()
    );
}

#[test]
fn burst_of_denied_calls_from_a_mature_identity_is_alerted() {
    let mut s = Story::default().with_peers(16);
    s.routine(&ROLE, 0..16, 0..24, 6, &WORK, "52.10.20.30", SDK);
    let t = T0 + 15 * DAY + 2 * HOUR + 5 * MINUTE;
    for i in 0..30 {
        s.call(
            &ROLE,
            t + i * 5_000,
            WORK[i as usize % 3],
            "52.10.20.30",
            SDK,
            true,
            None,
        );
    }
    let out = s.play();
    assert!(
        out.types_for(ROLE.key).contains(&"denied_burst".to_owned()),
        "{:?}",
        out.types_for(ROLE.key)
    );
}

#[test]
fn same_input_gives_the_same_alerts_and_commands() {
    let mut s = Story::default().with_peers(16);
    s.routine(&ROLE, 0..16, 0..24, 6, &WORK, "52.10.20.30", SDK);
    s.call(
        &ROLE,
        T0 + 15 * DAY,
        "iam.amazonaws.com:CreateAccessKey",
        "198.51.100.99",
        "curl/8.5.0",
        false,
        None,
    );
    let a = s.play();
    let b = s.play();
    assert!(!a.alerts.is_empty());
    assert_eq!(a.alerts, b.alerts);
    assert_eq!(a.commands, b.commands);
}

#[test]
fn declared_networks_expiry_and_owner_count_from_the_first_event() {
    let exporter = Who {
        key: "arn:aws:iam::111122223333:role/new-exporter",
        kind: "aws_role",
        credential: "ASIAEXPORT",
        pod: None,
    };
    let old_key = Who {
        key: "arn:aws:iam::111122223333:user/old-key",
        kind: "aws_user",
        credential: "AKIAOLD0000000000001",
        pod: None,
    };
    let inventory = Inventory::parse(
        r#"{"key":"arn:aws:iam::111122223333:role/new-exporter","owner":"team-data","networks":["10.0.0.0/8"],"protected":true}
{"key":"arn:aws:iam::111122223333:user/old-key","owner":"team-legacy","expires_at":"2026-03-10T00:00:00Z"}"#,
        "inventory.jsonl",
    )
    .unwrap();
    let mut s = Story::default().with_peers(14);
    // A brand-new identity: no learned baseline, but declared networks.
    s.routine(&exporter, 12..13, 9..11, 5, &WORK, "10.1.2.3", SDK);
    let outside = T0 + 12 * DAY + 11 * HOUR;
    s.call(
        &exporter,
        outside,
        "s3.amazonaws.com:GetObject",
        "203.0.113.77",
        SDK,
        false,
        None,
    );
    // A key past its declared expiry, from its usual place.
    s.routine(
        &old_key,
        6..8,
        9..12,
        2,
        &["s3.amazonaws.com:ListObjects"],
        "10.9.9.9",
        SDK,
    );
    let expired = T0 + 13 * DAY + 10 * HOUR;
    s.call(
        &old_key,
        expired,
        "s3.amazonaws.com:ListObjects",
        "10.9.9.9",
        SDK,
        false,
        None,
    );
    let rules = Rules::new(Model::embedded()).with_inventory(inventory);
    assert!(
        rules.is_protected(exporter.key),
        "inventory `protected` shields the identity from commands"
    );
    assert!(!rules.is_protected(old_key.key));
    let out = s.play_with(rules);

    let a = out.alerts_for(exporter.key);
    assert!(
        !a.is_empty(),
        "call from outside the declared networks not alerted"
    );
    assert_eq!(
        a[0]["time"], outside,
        "alerted on the first outside call, not before"
    );
    assert!(
        out.types_for(exporter.key)
            .contains(&"credential_outside_workload".to_owned())
    );
    assert_eq!(a[0]["resources"][0]["owner"]["name"], "team-data");
    assert_eq!(
        a[0]["unmapped"]["identity_mature"], false,
        "it is still warming up"
    );

    let b = out.alerts_for(old_key.key);
    assert!(!b.is_empty(), "use after expiry not alerted");
    assert_eq!(b[0]["time"], expired);
    assert!(
        out.types_for(old_key.key)
            .contains(&"credential_after_expiry".to_owned())
    );
    assert_eq!(b[0]["resources"][0]["owner"]["name"], "team-legacy");
}

/// Scales some numbers of a model table by up to 100x either way (and a few to extremes).
fn perturb(v: &mut toml::Value, rng: &mut rand_chacha::ChaCha8Rng) {
    use rand::Rng;
    match v {
        toml::Value::Float(x) if rng.random_bool(0.06) => {
            *x = match rng.random_range(0..10) {
                0 => 1e12,
                1 => 1e-9,
                2 => -*x,
                _ => *x * 10f64.powf(rng.random_range(-2.0..2.0)),
            };
        }
        toml::Value::Integer(i) if rng.random_bool(0.06) => {
            *i = ((*i as f64) * 10f64.powf(rng.random_range(-2.0..2.0))).round() as i64;
        }
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, x)| perturb(x, rng)),
        toml::Value::Array(a) => a.iter_mut().for_each(|x| perturb(x, rng)),
        _ => {}
    }
}

#[test]
fn any_model_that_models_check_accepts_gives_only_schema_valid_alerts_and_commands() {
    use rand::SeedableRng;
    let (records, _) =
        driftwatch::tools::produce::simulated_fleet(&driftwatch::tools::simulate::SimConfig {
            identities: 8,
            days: 9,
            seed: 5,
            ..Default::default()
        });
    let events = decode_all(
        records
            .iter()
            .map(|r| std::str::from_utf8(&r.bytes).unwrap()),
    );
    let (alert_schema, command_schema) = (
        schema("alert.v1.json"),
        schema("revocation-command.v1.json"),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (mut accepted, mut outputs) = (0, 0);
    for _ in 0..400 {
        let mut table = toml::Value::Table(toml::Table::try_from(Model::embedded()).unwrap());
        perturb(&mut table, &mut rng);
        let text = toml::to_string(&table).unwrap();
        let Ok(model) = Model::from_toml_str(&text, "perturbed.toml") else {
            continue;
        };
        accepted += 1;
        let (_, out) = run_with(&events, Rules::new(model));
        for a in &out.alerts {
            assert_valid(&alert_schema, a, "an alert under a perturbed model");
        }
        for c in &out.commands {
            assert_valid(&command_schema, c, "a command under a perturbed model");
        }
        outputs += out.alerts.len() + out.commands.len();
        if accepted == 8 {
            break;
        }
    }
    assert!(
        accepted >= 4,
        "only {accepted} perturbed models were accepted"
    );
    assert!(outputs > 0, "no perturbed model raised anything");
}

/// The first hour of an EC2 instance's life in CloudTrail, as its instance-profile session
/// `i-0abc…` of role `web` shows it: the SSM agent from the instance's public address, the
/// application through an S3 VPC endpoint from its private address, the CloudWatch agent, an AWS
/// service acting for it, the host's IPv6 address; a sibling instance of the same role. With a
/// `thief` client, the session's credentials are also used, twenty minutes in, from an address
/// outside AWS with that client (as after a read of the instance metadata service).
fn instance_trail(thief: Option<&str>) -> Vec<String> {
    const T: i64 = T0 + 8 * HOUR;
    const SSM: &str = "aws-sdk-go/1.44.260 (go1.20.5; linux; amd64) amazon-ssm-agent/3.2.1297.0";
    const CW: &str = "aws-sdk-go/1.48.6 (go1.21.4; linux; amd64) CWAgent/1.300032.2";
    const APP: &str = "Boto3/1.34.14 md/Botocore#1.34.14 ua/2.0 os/linux#6.1.0 lang/python#3.11.6";
    let call = |instance: &str, t: i64, action: &str, ip: &str, ua: &str, vpce: Option<&str>| {
        let (source, name) = action.split_once(':').unwrap();
        let mut rec = json!({
            "eventVersion": "1.09", "eventTime": driftwatch::decode::time::format_rfc3339_ms(t),
            "eventSource": source, "eventName": name, "awsRegion": "eu-west-1",
            "sourceIPAddress": ip, "userAgent": ua, "eventID": format!("{instance}-{t}-{name}"),
            "recipientAccountId": "111122223333",
            "userIdentity": {
                "type": "AssumedRole", "principalId": format!("AROAEXAMPLEWEB:{instance}"),
                "arn": format!("arn:aws:sts::111122223333:assumed-role/web/{instance}"),
                "accountId": "111122223333", "accessKeyId": "ASIAEXAMPLEWEB0001",
                "sessionContext": {
                    "sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/web"},
                    "attributes": {"creationDate": "2026-03-02T07:58:00Z", "mfaAuthenticated": "false"},
                    "ec2RoleDelivery": "2.0"
                }
            }
        });
        if let Some(v) = vpce {
            rec["vpcEndpointId"] = json!(v);
        }
        rec.to_string()
    };
    let a = "i-0abc1234def567890";
    let b = "i-0fed9876cba543210";
    let mut lines = Vec::new();
    for m in 0..50 {
        let t = T + m * MINUTE;
        lines.push(call(
            a,
            t,
            "ssm.amazonaws.com:UpdateInstanceInformation",
            "54.201.7.12",
            SSM,
            None,
        ));
        lines.push(call(
            a,
            t + 5_000,
            "ec2messages.amazonaws.com:GetMessages",
            "54.201.7.12",
            SSM,
            None,
        ));
        lines.push(call(
            a,
            t + 9_000,
            "s3.amazonaws.com:GetObject",
            "10.0.1.7",
            APP,
            Some("vpce-0a1b2c3d"),
        ));
        lines.push(call(
            b,
            t + 2_000,
            "ssm.amazonaws.com:UpdateInstanceInformation",
            "54.201.9.3",
            SSM,
            None,
        ));
        if m % 5 == 0 {
            lines.push(call(
                a,
                t + 12_000,
                "monitoring.amazonaws.com:PutMetricData",
                "54.201.7.12",
                CW,
                None,
            ));
            lines.push(call(
                a,
                t + 15_000,
                "kms.amazonaws.com:Decrypt",
                "ssm.amazonaws.com",
                "ssm.amazonaws.com",
                None,
            ));
        }
        if m % 7 == 0 {
            lines.push(call(
                a,
                t + 20_000,
                "ssm.amazonaws.com:UpdateInstanceInformation",
                "2a05:d018:a2b::17",
                SSM,
                None,
            ));
        }
    }
    if let Some(thief) = thief {
        let t = T + 20 * MINUTE + 30_000;
        for (i, action) in [
            "sts.amazonaws.com:GetCallerIdentity",
            "s3.amazonaws.com:ListBuckets",
            "iam.amazonaws.com:ListRoles",
        ]
        .iter()
        .enumerate()
        {
            lines.push(call(
                a,
                t + i as i64 * 4_000,
                action,
                "198.51.100.23",
                thief,
                None,
            ));
        }
    }
    lines.sort_by_key(|l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["eventTime"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    lines
}

#[test]
fn instance_credentials_used_elsewhere_minutes_after_boot_are_caught_on_the_first_stolen_call() {
    let web = "arn:aws:iam::111122223333:role/web";
    let events = decode_all(instance_trail(Some(CLI)).iter().map(String::as_str));
    let (_, out) = run_with(&events, Rules::new(Model::embedded()));
    let alerts = out.alerts_for(web);
    assert!(
        !alerts.is_empty(),
        "stolen instance credentials were not alerted"
    );
    let first_stolen = T0 + 8 * HOUR + 20 * MINUTE + 30_000;
    assert_eq!(alerts[0]["time"], first_stolen, "{:#}", alerts[0]);
    assert!(
        out.types_for(web)
            .contains(&"credential_outside_workload".to_owned())
    );
    let text = alerts[0].to_string();
    for shown in [
        "i-0abc1234def567890",
        "54.201.7.0/24",
        "aws-sdk-go/1",
        "198.51.100.0/24",
        "aws-cli/2",
    ] {
        assert!(
            text.contains(shown),
            "the alert explains itself: {shown} missing from {text}"
        );
    }
    assert!(
        alerts[0]["severity_id"].as_u64() >= Some(4),
        "High at least: {}",
        alerts[0]["severity_id"]
    );
    let alert_schema = schema("alert.v1.json");
    for a in &out.alerts {
        assert_valid(&alert_schema, a, "alert");
    }
}

#[test]
fn an_instances_own_agents_vpc_endpoint_ipv6_and_aws_services_do_not_breach_its_pin() {
    let events = decode_all(instance_trail(None).iter().map(String::as_str));
    let (_, out) = run_with(&events, Rules::new(Model::embedded()));
    assert!(out.alerts.is_empty(), "{:#?}", out.alerts);
    // Nor with AWS's published ranges loaded: every address it used is AWS's.
    let (_, out) = run_with(&events, with_aws_ranges());
    assert!(out.alerts.is_empty(), "{:#?}", out.alerts);
}

const CLI: &str = "aws-cli/2.15.30 Python/3.11.8 Darwin/23.3.0 exe/x86_64 prompt/off";

fn with_aws_ranges() -> Rules {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ip-ranges/aws-ip-ranges.json");
    Rules::new(Model::embedded())
        .with_cloud_ranges(driftwatch::enrich::CloudRanges::load(&[file]).unwrap())
}

#[test]
fn instance_credentials_used_outside_aws_with_the_instances_own_sdk_are_caught_once_ranges_are_loaded()
 {
    // The thief's client is the SSM agent's SDK family: the pin alone learns the new network.
    let thief = "aws-sdk-go/1.50.1 (go1.21.6; linux; amd64)";
    let web = "arn:aws:iam::111122223333:role/web";
    let events = decode_all(instance_trail(Some(thief)).iter().map(String::as_str));
    let (_, out) = run_with(&events, with_aws_ranges());
    let alerts = out.alerts_for(web);
    assert!(
        !alerts.is_empty(),
        "instance credentials used outside AWS were not alerted"
    );
    assert_eq!(alerts[0]["time"], T0 + 8 * HOUR + 20 * MINUTE + 30_000);
    let text = alerts[0].to_string();
    assert!(text.contains("outside AWS's published ranges"), "{text}");
}

/// A nightly job that has run in the same 45-minute window (02:10-02:55 UTC) every night for
/// four weeks, a new session each night, then used at midday for `hours` hours with a handful of
/// its usual calls an hour from its usual network: the hours alone must speak. Its peers keep
/// to their hours, or (`straying_peers`) work 08:00-18:00 and stray to a night hour one day in
/// three.
fn nightly_job_then_midday(hours: i64, straying_peers: bool) -> (Who, Outputs) {
    let job = Who {
        key: "arn:aws:iam::111122223333:role/nightly-report",
        kind: "aws_role",
        credential: "ASIANIGHTLYREPORT",
        pod: None,
    };
    let mut s = if straying_peers {
        let mut s = Story::default();
        for n in 0..6i64 {
            let (peer, ip) = peer("office", n, 60);
            s.routine(
                &peer,
                0..29,
                8..18,
                3,
                &["s3.amazonaws.com:GetObject"],
                ip,
                SDK,
            );
            for d in (n % 3..29).step_by(3) {
                let t = T0 + d * DAY + (20 + (d + n) % 8) % 24 * HOUR + 17 * MINUTE;
                s.call(&peer, t, "s3.amazonaws.com:GetObject", ip, SDK, false, None);
            }
        }
        s
    } else {
        Story::default().with_peers(29)
    };
    for d in 0..28 {
        for i in 0..15 {
            let t = T0 + d * DAY + 2 * HOUR + 10 * MINUTE + i * 3 * MINUTE;
            let action = [
                "s3.amazonaws.com:GetObject",
                "athena.amazonaws.com:StartQueryExecution",
            ][i as usize % 2];
            s.call(&job, t, action, "52.10.20.40", SDK, false, None);
        }
    }
    for h in 0..hours {
        for i in 0..5 {
            let t = T0 + 28 * DAY + (12 + h) * HOUR + 5 * MINUTE + i * 7 * MINUTE;
            s.call(
                &job,
                t,
                "s3.amazonaws.com:GetObject",
                "52.10.20.40",
                SDK,
                false,
                None,
            );
        }
    }
    let out = s.play();
    (job, out)
}

#[test]
fn a_strictly_nightly_job_used_for_one_midday_hour_is_alerted_in_a_fleet_that_keeps_its_hours() {
    let (job, out) = nightly_job_then_midday(1, false);
    let alerts = out.alerts_for(job.key);
    assert!(
        !alerts.is_empty(),
        "nightly job used at midday was not alerted"
    );
    assert!(
        alerts
            .iter()
            .all(|a| a["time"].as_i64() >= Some(T0 + 28 * DAY + 12 * HOUR))
    );
    assert_eq!(out.types_for(job.key), ["unusual_hour"]);
    let text = alerts[0].to_string();
    assert!(
        text.contains("h from the hours it is usually active")
            && text.contains("fleet_cold_hour_rate"),
        "{text}"
    );
}

#[test]
fn the_same_midday_hour_is_weaker_evidence_in_a_fleet_whose_identities_often_stray() {
    // The fleet's own rate of off-hours activity is the prior of the job's: where peers stray
    // one day in three, one midday hour of a young schedule is not alone an alert...
    let (job, out) = nightly_job_then_midday(1, true);
    assert!(
        out.alerts_for(job.key).is_empty(),
        "{:#?}",
        out.alerts_for(job.key)
    );
    // ...and the peers' own strays raise none either.
    assert!(out.alerts.is_empty(), "{:#?}", out.alerts);
}

#[test]
fn a_key_waking_after_half_a_year_or_more_is_alerted_however_long_it_slept() {
    for silent_days in [181, 400, 700] {
        let key = Who {
            key: "arn:aws:iam::111122223333:user/legacy-export",
            kind: "aws_user",
            credential: "AKIALEGACYEXPORT0001",
            pod: None,
        };
        let peer = Who {
            key: "arn:aws:iam::111122223333:role/always-on",
            kind: "aws_role",
            credential: "ASIAALWAYSON",
            pod: None,
        };
        let mut s = Story::default();
        let wake_day = 10 + silent_days;
        // A peer that never sleeps, so the engine's clock (and its sweeps) keep moving.
        for d in (0..wake_day + 1).step_by(1) {
            s.call(
                &peer,
                T0 + d * DAY + 12 * HOUR,
                "sqs.amazonaws.com:ReceiveMessage",
                "52.10.20.31",
                SDK,
                false,
                None,
            );
        }
        s.routine(
            &key,
            0..10,
            9..17,
            4,
            &["s3.amazonaws.com:ListObjects", "s3.amazonaws.com:GetObject"],
            "198.51.100.20",
            "Boto3/1.28.3 Python/3.9.18",
        );
        let wake = T0 + wake_day * DAY + 10 * HOUR;
        s.call(
            &key,
            wake,
            "s3.amazonaws.com:GetObject",
            "198.51.100.20",
            "Boto3/1.28.3 Python/3.9.18",
            false,
            None,
        );
        let mut lines = std::mem::take(&mut s.lines);
        lines.sort_by_key(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["time"].as_i64()
        });
        s.lines = lines;
        let out = s.play();
        let alerts = out.alerts_for(key.key);
        assert_eq!(alerts.len(), 1, "after {silent_days} days: {alerts:#?}");
        assert_eq!(alerts[0]["time"], wake);
        assert!(
            out.types_for(key.key)
                .contains(&"dormant_reactivation".to_owned()),
            "after {silent_days} days"
        );
    }
}

/// The governance commands about one identity: (stage, action, event time, idempotency key).
fn lifecycle_of(out: &Outputs, key: &str) -> Vec<(String, String, String, String)> {
    out.governance
        .iter()
        .filter(|c| c["target"]["identity"]["key"] == key)
        .map(|c| {
            (
                c["lifecycle"]["stage"].as_str().unwrap().to_owned(),
                c["action"].as_str().unwrap().to_owned(),
                c["event_time"].as_str().unwrap().to_owned(),
                c["idempotency_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn idle_identities_are_suspended_at_thirty_days_and_deleted_at_sixty_once_never_when_protected_and_their_return_is_alerted()
 {
    use driftwatch::decode::time::format_rfc3339_ms as at;
    let quiet = Who {
        key: "arn:aws:iam::111122223333:user/batch-export",
        kind: "aws_user",
        credential: "AKIABATCHEXPORT00001",
        pod: None,
    };
    // Protected by the default model's commands.protected (break-glass roles).
    let guarded = Who {
        key: "arn:aws:iam::111122223333:role/break-glass-admin",
        kind: "aws_role",
        credential: "ASIABREAKGLASS000001",
        pod: None,
    };
    let back = Who {
        key: "arn:aws:iam::111122223333:user/quarterly",
        kind: "aws_user",
        credential: "AKIAQUARTERLY0000001",
        pod: None,
    };
    // Peers active every day keep event time moving for 100 days.
    let mut s = Story::default().with_peers(100);
    s.routine(&quiet, 0..10, 9..17, 4, &WORK, "198.51.100.20", SDK);
    s.routine(&guarded, 0..10, 9..17, 4, &WORK, "198.51.100.21", SDK);
    s.routine(&back, 0..10, 9..17, 4, &WORK, "198.51.100.22", SDK);
    let first_silence = s.last_seen(&back);
    let wake = T0 + 50 * DAY + 10 * HOUR;
    s.call(
        &back,
        wake,
        "s3.amazonaws.com:GetObject",
        "198.51.100.22",
        SDK,
        false,
        None,
    );
    let out = s.play();

    // Suspended when the silence passed 30 days, deleted at 60: each once, timed exactly.
    let last = s.last_seen(&quiet);
    let q = lifecycle_of(&out, quiet.key);
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!(
        (q[0].0.as_str(), q[0].1.as_str(), q[0].2.clone()),
        ("suspend", "disable_access_key", at(last + 30 * DAY))
    );
    assert_eq!(
        (q[1].0.as_str(), q[1].1.as_str(), q[1].2.clone()),
        ("delete", "delete_access_key", at(last + 60 * DAY))
    );
    assert_ne!(q[0].3, q[1].3, "two operations, two idempotency keys");
    let suspend = out
        .governance
        .iter()
        .find(|c| c["target"]["identity"]["key"] == quiet.key)
        .unwrap();
    assert_eq!(suspend["mode"], "dry_run");
    assert_eq!(suspend["governance"]["approval"], "required");
    assert_eq!(suspend["target"]["credential"]["id"], quiet.credential);
    assert_eq!(suspend["lifecycle"]["idle_days"], 30);
    assert_eq!(suspend["lifecycle"]["idle_since"], at(last));

    // Never for a protected identity, nor for the active ones.
    assert!(lifecycle_of(&out, guarded.key).is_empty());
    assert!(out.governance.iter().all(|c| {
        let k = c["target"]["identity"]["key"].as_str().unwrap();
        k == quiet.key || k == back.key
    }));
    // Governance is not incident response: no revocation command, no alert for the silences.
    assert!(out.commands.is_empty(), "{:?}", out.commands);
    assert!(out.alerts_for(quiet.key).is_empty());

    // Suspended during its first silence; its return is an alert, not a deletion; idle again
    // afterwards, it is suspended again as a new operation.
    let b = lifecycle_of(&out, back.key);
    assert_eq!(
        b.iter()
            .map(|(stage, _, t, _)| (stage.as_str(), t.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("suspend", at(first_silence + 30 * DAY)),
            ("suspend", at(wake + 30 * DAY)),
        ],
    );
    assert_ne!(b[0].3, b[1].3);
    let alerts = out.alerts_for(back.key);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["time"], wake);
    assert!(
        out.types_for(back.key)
            .contains(&"dormant_reactivation".to_owned())
    );
    assert!(
        alerts[0].to_string().contains("dormancy lifecycle"),
        "the alert says the lifecycle had retired it: {}",
        alerts[0]
    );

    // The same input gives the same commands; so does a run stopped half way and restored from
    // its saved state (no step is issued twice, none lost).
    let again = s.play();
    assert_eq!(again.governance, out.governance);
    let events = decode_all(s.lines.iter().map(String::as_str));
    let cut = events.partition_point(|e| e.time_ms < T0 + 45 * DAY);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.bin");
    let mut halves = Outputs::default();
    let first = driftwatch::engine::Engine::new(Rules::new(Model::embedded()));
    continue_with(&first, &events[..cut], &mut halves);
    driftwatch::state::file::save(&first, &path).unwrap();
    let second = driftwatch::engine::Engine::new(Rules::new(Model::embedded()));
    driftwatch::state::file::load(&path, &second).unwrap();
    continue_with(&second, &events[cut..], &mut halves);
    let keys = |o: &Outputs| -> Vec<String> {
        o.governance
            .iter()
            .map(|c| c["idempotency_key"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(keys(&halves), keys(&out));
}

#[test]
fn identities_declared_but_never_used_are_retired_from_their_creation_and_their_first_use_is_alerted()
 {
    use driftwatch::decode::time::format_rfc3339_ms as at;
    let never = "arn:aws:iam::111122223333:role/never-used";
    let late = Who {
        key: "arn:aws:iam::111122223333:user/late-starter",
        kind: "aws_user",
        credential: "AKIALATESTARTER00001",
        pod: None,
    };
    // T0 is 2026-03-02: `never` was created ten days before the stream starts.
    let inventory = Inventory::parse(
        r#"{"key":"arn:aws:iam::111122223333:role/never-used","owner":"ops","created_at":"2026-02-20T00:00:00Z"}
{"key":"arn:aws:iam::111122223333:user/late-starter","owner":"ops","created_at":"2026-03-02T00:00:00Z"}
{"key":"arn:aws:iam::111122223333:role/kept-spare","owner":"ops","created_at":"2026-01-01T00:00:00Z","response":"never"}
{"key":"arn:aws:iam::111122223333:role/undated","owner":"ops"}"#,
        "inventory.jsonl",
    )
    .unwrap();
    let created = T0 - 10 * DAY;
    let mut s = Story::default().with_peers(80);
    let first_use = T0 + 40 * DAY + 10 * HOUR;
    s.call(
        &late,
        first_use,
        "s3.amazonaws.com:GetObject",
        "198.51.100.40",
        SDK,
        false,
        None,
    );
    let out = s.play_with(Rules::new(Model::embedded()).with_inventory(inventory));

    // Never used: suspended 30 days after its creation, deleted at 60, each once, on its own
    // guardrail budget, naming what the key says of it.
    let n = lifecycle_of(&out, never);
    assert_eq!(
        n.iter()
            .map(|(stage, action, t, _)| (stage.as_str(), action.as_str(), t.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("suspend", "attach_deny_all_policy", at(created + 30 * DAY)),
            ("delete", "delete_role", at(created + 60 * DAY)),
        ]
    );
    let c = out
        .governance
        .iter()
        .find(|c| c["target"]["identity"]["key"] == never)
        .unwrap();
    assert_eq!(c["lifecycle"]["never_used"], true);
    assert_eq!(c["lifecycle"]["idle_since"], at(created));
    assert_eq!(c["target"]["tenant"], "111122223333");
    assert_eq!(c["target"]["identity"]["type"], "aws_role");
    assert!(
        c["reason"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("declared 2026-02-20T00:00:00.000Z, never used in 30 days: suspend"),
        "{c}"
    );
    // Retired before its first use: that use is alerted, and it is never again counted as
    // unused since its creation (its steps count from its events from then on).
    let l = lifecycle_of(&out, late.key);
    assert_eq!(l[0].2, at(T0 + 30 * DAY));
    assert!(
        out.governance
            .iter()
            .filter(|c| c["target"]["identity"]["key"] == late.key)
            .skip(1)
            .all(|c| c["lifecycle"].get("never_used").is_none()
                && c["lifecycle"]["idle_since"] == at(first_use)),
        "{:?}",
        out.governance
    );
    let alerts = out.alerts_for(late.key);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["time"], first_use);
    assert!(
        alerts[0]
            .to_string()
            .contains("first used 40 days after it was declared"),
        "{}",
        alerts[0]
    );
    // None for a protected identity, nor for one declared without a creation time.
    assert!(lifecycle_of(&out, "arn:aws:iam::111122223333:role/kept-spare").is_empty());
    assert!(lifecycle_of(&out, "arn:aws:iam::111122223333:role/undated").is_empty());
}
