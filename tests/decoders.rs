//! Decoders on real public samples (see tests/fixtures/README.md for their origin and licence).

use std::path::{Path, PathBuf};

use driftwatch::decode::{self, DecodeError, Decoded, FormatHint};
use driftwatch::event::{AccessEvent, PrincipalType, RawRef, SourceFormat};
use driftwatch::ingest::file::{read_input, split_records};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

struct Decoded_ {
    events: Vec<AccessEvent>,
    skipped: usize,
    rejected: Vec<DecodeError>,
}

fn decode_file(path: &Path) -> Decoded_ {
    let data = read_input(path.to_str().unwrap()).unwrap();
    let mut out = Decoded_ {
        events: Vec::new(),
        skipped: 0,
        rejected: Vec::new(),
    };
    split_records(&data, "fixture", |bytes, raw| {
        decode::decode_record(
            bytes,
            FormatHint::Auto,
            None,
            &raw,
            &mut |_, _, r| match r {
                Ok(Decoded::Event(e)) => out.events.push(*e),
                Ok(Decoded::Skipped(_)) => out.skipped += 1,
                Err(e) => out.rejected.push(e),
            },
        )
    });
    out
}

#[test]
fn every_stratus_red_team_cloudtrail_record_decodes() {
    let mut total = 0;
    for entry in std::fs::read_dir(fixture("stratus")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let d = decode_file(&path);
        assert!(
            d.rejected.is_empty(),
            "{}: {:?}",
            path.display(),
            d.rejected
        );
        for e in &d.events {
            assert_eq!(e.format, SourceFormat::Cloudtrail);
            assert!(e.action.contains(".amazonaws.com:"), "{}", e.action);
            let console = e.action == "signin.amazonaws.com:ConsoleLogin";
            assert!(
                console || e.credential.is_some(),
                "{}: every API call carries its access key id",
                path.display()
            );
        }
        total += d.events.len();
    }
    assert_eq!(total, 310, "the 35 detonation files hold 310 records");
}

#[test]
fn stratus_assumed_role_sessions_are_keyed_by_their_role() {
    let d = decode_file(&fixture(
        "stratus/aws.credential-access.ec2-get-password-data.json",
    ));
    let roles: Vec<&AccessEvent> = d
        .events
        .iter()
        .filter(|e| e.principal_type == PrincipalType::AwsRole)
        .collect();
    assert!(!roles.is_empty());
    for e in roles {
        assert!(
            e.principal.contains(":role/"),
            "role sessions must be keyed by the role ARN, got {}",
            e.principal
        );
        assert!(!e.principal.contains("assumed-role"), "{}", e.principal);
        assert_eq!(e.credential.as_ref().unwrap().kind, "aws_session_key");
    }
}

#[test]
fn stratus_user_agents_and_errors_are_carried() {
    let d = decode_file(&fixture(
        "stratus/aws.credential-access.secretsmanager-retrieve-secrets.json",
    ));
    assert!(d.events.iter().all(
        |e| e.action == "secretsmanager.amazonaws.com:GetSecretValue"
            || e.action.starts_with("secretsmanager.amazonaws.com:")
    ));
    assert!(d.events.iter().all(|e| {
        e.origin
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("stratus-red-team"))
    }));
    assert!(
        d.events
            .iter()
            .all(|e| e.origin.ip.is_some() && e.origin.ip_trusted)
    );
}

/// Panther's rule tests are hand-written and often partial. Each record must either decode or be
/// rejected with an error naming what is wrong; the decoded share must not regress.
#[test]
fn panther_rule_test_records_decode_or_are_rejected_with_a_named_reason() {
    for (file, format, min_decoded) in [
        ("panther/cloudtrail.jsonl", SourceFormat::Cloudtrail, 400),
        ("panther/eks-audit.jsonl", SourceFormat::K8sAudit, 10),
        ("panther/gcp-audit.jsonl", SourceFormat::GcpAudit, 100),
    ] {
        let d = decode_file(&fixture(file));
        let decoded = d.events.iter().filter(|e| e.format == format).count();
        assert!(
            decoded >= min_decoded,
            "{file}: only {decoded} records of format {format:?} decoded"
        );
        for e in &d.rejected {
            let msg = e.to_string();
            assert!(
                msg.contains('`')
                    || matches!(
                        e,
                        DecodeError::UnknownFormat | DecodeError::InvalidJson { .. }
                    ),
                "{file}: vague error {msg}"
            );
        }
        eprintln!(
            "{file}: {decoded} decoded, {} skipped, {} rejected",
            d.skipped,
            d.rejected.len()
        );
    }
}

#[test]
fn real_kubernetes_audit_log_decodes_with_service_accounts_and_one_event_per_request() {
    let d = decode_file(&fixture("k8s-perfspec/audit-events.jsonl"));
    assert!(
        d.rejected.is_empty(),
        "{:?}",
        &d.rejected[..d.rejected.len().min(5)]
    );
    assert!(
        d.skipped > 0,
        "intermediate stages (ResponseStarted) are skipped"
    );
    let sas: std::collections::BTreeSet<&str> = d
        .events
        .iter()
        .filter(|e| e.principal_type == PrincipalType::K8sServiceAccount)
        .map(|e| e.principal.as_str())
        .collect();
    assert!(sas.len() >= 5, "{sas:?}");
    assert!(
        d.events
            .iter()
            .any(|e| e.principal_type == PrincipalType::K8sNode)
    );
    assert!(
        d.events.iter().any(|e| e.outcome.denied),
        "the log has 403s"
    );
    assert!(d.events.iter().all(|e| e.action.contains(':')));
}

#[test]
fn cloudtrail_delivery_file_gzip_and_records_container_are_expanded() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let records = std::fs::read_to_string(fixture(
        "stratus/aws.persistence.iam-create-admin-user.json",
    ))
    .unwrap();
    let delivery = format!("{{\"Records\": {records}}}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("111122223333_CloudTrail_eu-west-1_20240731T1235Z_abc.json.gz");
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(delivery.as_bytes()).unwrap();
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    let d = decode_file(&path);
    let plain = decode_file(&fixture(
        "stratus/aws.persistence.iam-create-admin-user.json",
    ));
    assert_eq!(d.events.len(), plain.events.len());
    assert!(!d.events.is_empty());
    // Elements of a container are referenced by index.
    let mut sources = Vec::new();
    decode::decode_record(
        delivery.as_bytes(),
        FormatHint::Auto,
        None,
        &RawRef::new("f".into(), 0),
        &mut |_, _, r| {
            if let Ok(Decoded::Event(e)) = r {
                sources.push(e.raw.clone());
            }
        },
    );
    assert_eq!(sources[0].element, Some(0));
    assert_eq!(sources[1].element, Some(1));
    assert_eq!(sources[1].source_label(), "f#1");
}

/// Every record of `data` (one per line) decoded, in order; events with their source position
/// cleared, so the same record reached through different envelopes compares equal.
fn decode_lines(data: &[u8]) -> Vec<Result<Decoded, DecodeError>> {
    let mut out = Vec::new();
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        decode_bytes(line, &mut out);
    }
    out
}

fn decode_bytes(bytes: &[u8], out: &mut Vec<Result<Decoded, DecodeError>>) {
    decode::decode_record(
        bytes,
        FormatHint::Auto,
        None,
        &RawRef::default(),
        &mut |_, _, r| {
            out.push(r.map(|d| match d {
                Decoded::Event(mut e) => {
                    e.raw = RawRef::default();
                    Decoded::Event(e)
                }
                other => other,
            }))
        },
    );
}

fn events_of(results: &[Result<Decoded, DecodeError>]) -> Vec<&AccessEvent> {
    results
        .iter()
        .filter_map(|r| match r {
            Ok(Decoded::Event(e)) => Some(&**e),
            _ => None,
        })
        .collect()
}

#[test]
fn cloudtrail_through_eventbridge_logstash_and_filebeat_decodes_as_the_bare_trail() {
    let bare = read_input(
        fixture("stratus/aws.credential-access.ec2-steal-instance-credentials.json")
            .to_str()
            .unwrap(),
    )
    .unwrap();
    let mut want = Vec::new();
    decode_bytes(&bare, &mut want);
    let want = events_of(&want);
    assert_eq!(want.len(), 45);
    for name in ["eventbridge", "logstash", "filebeat"] {
        let data = std::fs::read(fixture(&format!("envelopes/{name}.jsonl"))).unwrap();
        let got = decode_lines(&data);
        assert!(got.iter().all(Result::is_ok), "{name}: {got:?}");
        assert_eq!(events_of(&got), want, "{name}");
    }
}

#[test]
fn cloudwatch_logs_subscriptions_decode_alike_as_json_gzip_and_base64_gzip() {
    use base64::Engine as _;
    use std::io::Write;
    let data = std::fs::read(fixture("envelopes/cloudwatch-logs.jsonl")).unwrap();
    let plain = decode_lines(&data);
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(line).unwrap();
        let gz = gz.finish().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&gz);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        decode_bytes(line, &mut a);
        decode_bytes(&gz, &mut b);
        decode_bytes(b64.as_bytes(), &mut c);
        assert_eq!(a, b);
        assert_eq!(a, c);
    }
    // The first four payloads carry the first 200 lines of the real audit log, one event each.
    let perfspec = std::fs::read(fixture("k8s-perfspec/audit-events.jsonl")).unwrap();
    let head: Vec<u8> = perfspec
        .split_inclusive(|b| *b == b'\n')
        .take(200)
        .flatten()
        .copied()
        .collect();
    // The audit records do not name their cluster; the log group `/aws/eks/perfspec/cluster` does.
    let bare: Vec<_> = decode_lines(&head)
        .into_iter()
        .map(|r| {
            r.map(|d| match d {
                Decoded::Event(mut e) => {
                    assert_eq!(e.origin.workload.cluster, None);
                    let username = e.principal.clone();
                    e.place_in_cluster("perfspec");
                    assert_eq!(e.principal, format!("perfspec/{username}"));
                    assert_eq!(e.tenant.as_deref(), Some("perfspec"));
                    Decoded::Event(e)
                }
                other => other,
            })
        })
        .collect();
    assert!(
        plain[..200] == bare[..],
        "log events decode as the bare records, in their cluster"
    );
    let eks = events_of(&plain[200..]);
    let panther = std::fs::read(fixture("panther/eks-audit.jsonl")).unwrap();
    let head: Vec<u8> = panther
        .split_inclusive(|b| *b == b'\n')
        .take(40)
        .flatten()
        .copied()
        .collect();
    assert_eq!(eks.len(), events_of(&decode_lines(&head)).len());
    assert!(eks.len() >= 10, "{}", eks.len());
    for e in &eks {
        assert_eq!(e.origin.workload.cluster.as_deref(), Some("prod-eu"));
        assert_eq!(e.tenant.as_deref(), Some("prod-eu"));
    }
    // A control message holds no events and is not an error.
    assert!(matches!(
        plain.last(),
        Some(Ok(Decoded::Skipped(decode::Skip::ControlMessage)))
    ));
}

#[test]
fn gcp_log_entries_pushed_by_pub_sub_decode_as_the_entries_themselves() {
    let data = std::fs::read(fixture("envelopes/pubsub-push.jsonl")).unwrap();
    let got = decode_lines(&data);
    let panther = std::fs::read(fixture("panther/gcp-audit.jsonl")).unwrap();
    let head: Vec<u8> = panther
        .split_inclusive(|b| *b == b'\n')
        .take(60)
        .flatten()
        .copied()
        .collect();
    let want = decode_lines(&head);
    assert_eq!(got.len(), want.len());
    assert_eq!(events_of(&got), events_of(&want));
    assert!(events_of(&got).len() > 30);
}

#[test]
fn a_broken_envelope_is_rejected_naming_the_envelope_field_and_only_its_bad_element() {
    let codes = |rec: &[u8]| -> Vec<String> {
        let mut v = Vec::new();
        decode_bytes(rec, &mut v);
        v.iter()
            .map(|r| match r {
                Ok(Decoded::Event(_)) => "event".to_owned(),
                Ok(Decoded::Skipped(s)) => s.to_string(),
                Err(e) => format!("{}: {e}", e.code()),
            })
            .collect()
    };
    let eb = codes(br#"{"detail-type":"AWS API Call via CloudTrail","detail":"x"}"#);
    assert!(
        eb[0].starts_with("invalid_field") && eb[0].contains("`detail`"),
        "{eb:?}"
    );
    let push = codes(br#"{"message":{"data":"***"},"subscription":"s"}"#);
    assert!(
        push[0].contains("message.data") && push[0].contains("base64"),
        "{push:?}"
    );
    let gz = codes(&[0x1f, 0x8b, 0x08, 0, 1, 2, 3]);
    assert!(
        gz[0].starts_with("invalid_json") && gz[0].contains("gzip"),
        "{gz:?}"
    );
    // One log event that is not JSON costs that event only.
    let k8s = r#"{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"user\":{\"username\":\"system:serviceaccount:a:b\"},\"requestURI\":\"/api/v1/pods\",\"objectRef\":{\"resource\":\"pods\"},\"requestReceivedTimestamp\":\"2026-01-05T10:00:00Z\"}"#;
    let cw = format!(
        r#"{{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/x/cluster","logEvents":[{{"message":"{k8s}"}},{{"message":"not json"}},{{"message":"{k8s}"}}]}}"#
    );
    let got = codes(cw.as_bytes());
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], "event");
    assert!(got[1].starts_with("invalid_json"), "{got:?}");
    assert_eq!(got[2], "event");
}
