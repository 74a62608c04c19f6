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
        decode::decode_record(bytes, FormatHint::Auto, &raw, &mut |_, _, r| match r {
            Ok(Decoded::Event(e)) => out.events.push(*e),
            Ok(Decoded::Skipped(_)) => out.skipped += 1,
            Err(e) => out.rejected.push(e),
        })
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
