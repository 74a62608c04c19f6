//! Revocation commands (`schemas/revocation-command.v1.json`).

use serde_json::{Map, Value, json};

use super::put;

use crate::baseline::DAY_MS;
use crate::baseline::lifecycle::Stage;
use crate::decide::Command;
use crate::decode::time::format_rfc3339_ms;
use crate::event::unqualified_principal;

/// The `schema` field's value: names the message kind and its major version.
pub const SCHEMA: &str = "driftwatch.revocation-command.v1";

/// The JSON Schema's `$id`, an absolute URI (the CloudEvents `dataschema`).
pub const SCHEMA_URI: &str = "https://driftwatch.dev/schemas/revocation-command.v1.json";

/// How to undo an action, for the playbook (and the person) that took it.
fn rollback(provider: &str, action: &str) -> Value {
    let (undo, how) = match (provider, action) {
        (_, "attach_deny_all_policy") => (
            "remove_deny_policy",
            "delete the inline policy that denies every action",
        ),
        (_, "delete_access_key" | "delete_service_account_key" | "delete_credential") => (
            "not_possible",
            "a deleted key cannot be restored: issue a new one and give it to the workload",
        ),
        (_, "delete_user" | "delete_role") => (
            "recreate",
            "cannot be undone: recreate it, with its policies and trust, from its definition (infrastructure as code)",
        ),
        ("gcp", "delete_service_account") => (
            "undelete_service_account",
            "undelete it within 30 days (iam.serviceAccounts.undelete), then re-enable it",
        ),
        (_, "delete_service_account") => (
            "recreate",
            "re-apply the ServiceAccount manifest; its old tokens stay invalid and its pods need restarting",
        ),
        _ => rollback_revocation(action),
    };
    json!({"action": undo, "description": how})
}

/// How to undo a revocation.
fn rollback_revocation(action: &str) -> (&'static str, &'static str) {
    match action {
        "disable_access_key" => (
            "enable_access_key",
            "set the access key's status back to Active (iam:UpdateAccessKey)",
        ),
        "revoke_role_sessions" => (
            "remove_deny_policy",
            "delete the inline policy that denies sessions issued before token_issued_before (aws:TokenIssueTime)",
        ),
        "revoke_user_sessions" => (
            "remove_deny_policy",
            "delete the user's inline policy that denies sessions issued before token_issued_before",
        ),
        "revoke_service_account_tokens" => (
            "none_needed",
            "tokens are re-issued to pods started afterwards; a deleted bound pod is recreated by its controller",
        ),
        "disable_service_account_key" => (
            "enable_service_account_key",
            "re-enable the key (iam.serviceAccountKeys.enable)",
        ),
        "disable_service_account" => (
            "enable_service_account",
            "re-enable the service account (iam.serviceAccounts.enable)",
        ),
        "disable_credential" => ("enable_credential", "re-enable the credential"),
        _ => ("none_needed", "nothing was changed"),
    }
}

/// The last `/`-separated segment of an ARN or path.
fn last_segment(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// The identity's own name: an ARN's last path segment (role or user name), a Kubernetes
/// user's last `:` segment (the service account or node name), a GCP principal as it is.
fn identity_name(c: &Command) -> &str {
    match c.provider {
        "kubernetes" => {
            let username = unqualified_principal(&c.identity_key, c.workload.cluster.as_deref());
            username.rsplit(':').next().unwrap_or(username)
        }
        _ => last_segment(&c.identity_key),
    }
}

/// What the playbook needs to find the thing to revoke, by provider: the role or user and the
/// session for AWS, namespace, service account and bound pod for Kubernetes, project and
/// service account for GCP.
fn target(c: &Command, issued_at: &str) -> Value {
    let mut t = Map::new();
    t.insert("provider".into(), json!(c.provider));
    put(&mut t, "tenant", c.tenant.as_ref());
    t.insert(
        "identity".into(),
        json!({"key": c.identity_key, "type": c.identity_type.as_str(), "name": identity_name(c)}),
    );
    put(
        &mut t,
        "credential",
        c.credential_id.as_ref().map(|id| {
            let mut cred = Map::new();
            cred.insert("id".into(), json!(id));
            put(&mut cred, "type", c.credential_type);
            Value::Object(cred)
        }),
    );
    // Under the provider's own name: what a playbook for that provider acts on.
    let w = &c.workload;
    let mut own = Map::new();
    match c.provider {
        "aws" => {
            if let Some(s) = &c.session {
                let mut session = Map::new();
                session.insert("arn".into(), json!(s));
                session.insert("name".into(), json!(last_segment(s)));
                put(&mut session, "user_id", c.session_user_id.as_ref());
                put(
                    &mut session,
                    "issued_at",
                    c.session_issued_ms.map(format_rfc3339_ms),
                );
                own.insert("session".into(), Value::Object(session));
            }
            put(&mut own, "instance_id", w.instance.as_ref());
            if matches!(c.action, "revoke_role_sessions" | "revoke_user_sessions") {
                own.insert("token_issued_before".into(), json!(issued_at));
            }
        }
        "kubernetes" => {
            put(&mut own, "cluster", w.cluster.as_ref());
            // system:serviceaccount:NAMESPACE:NAME, after the cluster's qualifier
            let username = unqualified_principal(&c.identity_key, w.cluster.as_deref());
            let mut parts = username
                .strip_prefix("system:serviceaccount:")
                .map(|sa| sa.splitn(2, ':'))
                .into_iter()
                .flatten();
            if let (Some(ns), Some(name)) = (parts.next(), parts.next()) {
                own.insert("namespace".into(), json!(ns));
                own.insert("service_account".into(), json!(name));
            }
            put(
                &mut own,
                "pod",
                w.pod.as_ref().map(|p| {
                    let mut pod = Map::new();
                    pod.insert("name".into(), json!(p));
                    put(&mut pod, "uid", w.pod_uid.as_ref());
                    Value::Object(pod)
                }),
            );
            put(&mut own, "node", w.node.as_ref());
        }
        "gcp" => {
            put(&mut own, "project", c.tenant.as_ref());
            if c.identity_key.ends_with(".gserviceaccount.com") {
                own.insert("service_account_email".into(), json!(c.identity_key));
            }
        }
        _ => {}
    }
    if !own.is_empty() {
        t.insert(c.provider.into(), Value::Object(own));
    }
    Value::Object(t)
}

/// The command as its consumers read it, stamped as emitted at `now_ms` (wall clock in the
/// service and replay): `issued_at` and `expires_at` say when a playbook may act on it, while
/// `event_time` is the time of the record that triggered it.
pub fn revocation_command(c: &Command, now_ms: i64) -> Value {
    let issued_at = format_rfc3339_ms(now_ms);
    let mut governance = Map::new();
    put(&mut governance, "owner", c.owner.as_ref());
    governance.insert("severity".into(), json!(c.severity.name()));
    governance.insert("severity_id".into(), json!(c.severity.id()));
    governance.insert(
        "approval".into(),
        json!(if c.auto_approved {
            "not_required"
        } else {
            "required"
        }),
    );
    governance.insert("rollback".into(), rollback(c.provider, c.action));
    let mut v = json!({
        "schema": SCHEMA,
        "command_id": c.command_id,
        "idempotency_key": c.idempotency_key,
        "issued_at": issued_at,
        "expires_at": format_rfc3339_ms(now_ms + c.ttl_ms),
        "event_time": format_rfc3339_ms(c.event_time_ms),
        "mode": c.mode.as_str(),
        "action": c.action,
        "target": target(c, &issued_at),
        "governance": governance,
        "reason": {
            "finding_uid": c.finding_uid,
            "risk_score": c.risk_score,
            "summary": c.summary,
        },
        "evidence": c.evidence.iter().map(|e| {
            let mut ev = Map::new();
            put(&mut ev, "event_uid", e.event_id.as_ref());
            ev.insert("event_time".into(), json!(format_rfc3339_ms(e.time_ms)));
            ev.insert("detector".into(), json!(e.detector.as_str()));
            Value::Object(ev)
        }).collect::<Vec<_>>(),
    });
    if let Some(step) = &c.lifecycle {
        v["lifecycle"] = json!({
            "stage": match step.stage {
                Stage::Deleted => "delete",
                Stage::Suspended | Stage::Active => "suspend",
            },
            "idle_since": format_rfc3339_ms(step.idle_since_ms),
            "idle_days": ((c.event_time_ms - step.idle_since_ms) as f64 / DAY_MS as f64).round() as i64,
        });
        if step.never_used {
            v["lifecycle"]["never_used"] = json!(true);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::CommandMode;
    use crate::decide::{Command, Severity, revocation_action};
    use crate::decode::{self, Decoded, FormatHint};
    use crate::event::{PrincipalType, RawRef, Workload};

    fn command(provider: &'static str, key: &str, action: &'static str) -> Command {
        Command {
            command_id: "c".into(),
            idempotency_key: "k".into(),
            event_time_ms: 1_000_000,
            ttl_ms: 3_600_000,
            mode: CommandMode::DryRun,
            severity: Severity::High,
            owner: None,
            auto_approved: false,
            session: None,
            session_user_id: None,
            session_issued_ms: None,
            workload: Workload::default(),
            action,
            provider,
            tenant: None,
            identity_key: key.into(),
            identity_type: PrincipalType::K8sServiceAccount,
            credential_id: None,
            credential_type: None,
            finding_uid: "f".into(),
            risk_score: 90,
            summary: "s".into(),
            evidence: Vec::new(),
            lifecycle: None,
        }
    }

    #[test]
    fn a_command_is_valid_from_when_it_is_emitted_and_keeps_its_records_event_time() {
        let now = 50_000_000;
        let v = revocation_command(
            &command("kubernetes", "system:serviceaccount:ns:sa", "x"),
            now,
        );
        assert_eq!(v["issued_at"], format_rfc3339_ms(now));
        assert_eq!(v["expires_at"], format_rfc3339_ms(now + 3_600_000));
        assert_eq!(v["event_time"], format_rfc3339_ms(1_000_000));
        assert_eq!(v["governance"]["approval"], "required");
        assert!(v["target"].get("tenant").is_none(), "no nulls: {v}");
    }

    #[test]
    fn kubernetes_targets_name_namespace_service_account_and_bound_pod() {
        // A service account in a known cluster is keyed `CLUSTER/USERNAME`.
        let mut c = command(
            "kubernetes",
            "prod-eu/system:serviceaccount:payments:api",
            "revoke_service_account_tokens",
        );
        c.workload = Workload {
            cluster: Some("prod-eu".into()),
            pod: Some("api-7d9f-abcde".into()),
            pod_uid: Some("3b9c1b4e-0000-4000-8000-0000000000a1".into()),
            ..Workload::default()
        };
        let v = revocation_command(&c, 0);
        assert_eq!(v["target"]["identity"]["name"], "api");
        let t = &v["target"]["kubernetes"];
        assert_eq!(t["cluster"], "prod-eu");
        assert_eq!(t["namespace"], "payments");
        assert_eq!(t["service_account"], "api");
        assert_eq!(t["pod"]["name"], "api-7d9f-abcde");
        assert_eq!(t["pod"]["uid"], "3b9c1b4e-0000-4000-8000-0000000000a1");
    }

    #[test]
    fn role_session_revocations_name_the_session_and_the_issue_time_cutoff_and_how_to_undo() {
        let mut c = command(
            "aws",
            "arn:aws:iam::111122223333:role/app",
            "revoke_role_sessions",
        );
        c.session = Some("arn:aws:sts::111122223333:assumed-role/app/i-0abc".into());
        c.session_user_id = Some("AROAY34FZKBOKMUTVV7A1:i-0abc".into());
        c.session_issued_ms = Some(6_000_000);
        let v = revocation_command(&c, 7_000_000);
        let aws = &v["target"]["aws"];
        assert_eq!(aws["session"]["name"], "i-0abc");
        // Enough for a deny that stops this session alone: aws:userid and aws:TokenIssueTime.
        assert_eq!(aws["session"]["user_id"], "AROAY34FZKBOKMUTVV7A1:i-0abc");
        assert_eq!(aws["session"]["issued_at"], "1970-01-01T01:40:00.000Z");
        assert_eq!(aws["token_issued_before"], v["issued_at"]);
        assert_eq!(v["target"]["identity"]["name"], "app");
        assert_eq!(v["governance"]["rollback"]["action"], "remove_deny_policy");
    }

    /// Each kind of principal gets an action that exists for it, or notify_owner.
    #[test]
    fn principals_without_a_revocation_get_notify_owner() {
        let action = |line: &str| -> &'static str {
            let mut ev = None;
            decode::decode_record(
                line.as_bytes(),
                FormatHint::Auto,
                None,
                &RawRef::new("test".into(), 1),
                &mut |_, _, r| {
                    if let Ok(Decoded::Event(e)) = r {
                        ev = Some(e);
                    }
                },
            );
            revocation_action(&ev.expect("an event"))
        };
        let ct = |identity: &str| {
            format!(
                r#"{{"eventVersion":"1.09","userIdentity":{identity},"eventTime":"2026-01-05T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15","eventID":"e1"}}"#
            )
        };
        assert_eq!(
            action(&ct(
                r#"{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/u","accountId":"111122223333","accessKeyId":"AKIAIOSFODNN7EXAMPLE"}"#
            )),
            "disable_access_key"
        );
        assert_eq!(
            action(&ct(
                r#"{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/u","accountId":"111122223333"}"#
            )),
            "notify_owner"
        );
        assert_eq!(
            action(&ct(
                r#"{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"AKIAIOSFODNN7EXAMPLE"}"#
            )),
            "notify_owner"
        );
        let k8s = |user: &str| {
            format!(
                r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"3b9c1b4e-0000-4000-8000-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{{"username":"{user}"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-01-05T10:00:00Z","stageTimestamp":"2026-01-05T10:00:00Z"}}"#
            )
        };
        assert_eq!(
            action(&k8s("system:serviceaccount:ns:sa")),
            "revoke_service_account_tokens"
        );
        assert_eq!(action(&k8s("system:node:ip-10-0-0-1")), "notify_owner");
        assert_eq!(action(&k8s("alice@example.com")), "notify_owner");
    }
}
