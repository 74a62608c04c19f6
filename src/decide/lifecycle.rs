//! Governance commands of the dormancy lifecycle: suspend an identity silent for
//! `lifecycle.suspend_after_days`, delete one silent for `lifecycle.delete_after_days`. Pure: the
//! engine says which identity is due and when, this says what to ask of a playbook.
//!
//! They are not incident revocations: no alert asks for them, they go to the governance output,
//! and they spend a guardrail budget of their own (`lifecycle.max_per_hour` and
//! `max_fleet_fraction`), so a wave of idle identities never blocks the revocation of a stolen one.

use crate::baseline::DAY_MS;
use crate::baseline::lifecycle::{LastUse, Stage};
use crate::config::Rules;
use crate::config::model::CommandMode;
use crate::decode::time::format_rfc3339_ms;
use crate::event::{PrincipalType, Workload};

use super::{Command, Severity, stable_id, stable_uuid};

/// Which lifecycle step a governance command carries out, and the silence behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleStep {
    pub stage: Stage,
    /// The identity's last event, or for one never used, its declared creation.
    pub idle_since_ms: i64,
    /// Declared in the inventory and never seen in the stream: idle since its creation.
    pub never_used: bool,
}

/// The action that suspends (reversibly) or deletes an identity of this kind, given the
/// credential it last used; `notify_owner` where the provider has none (Kubernetes has no
/// disabled service account; root, people, nodes and AWS services are not ours to remove).
pub fn action(stage: Stage, last: &LastUse) -> &'static str {
    use PrincipalType as P;
    let cred = last.credential_type;
    match (stage, last.identity_type, cred) {
        (Stage::Suspended, P::AwsUser, Some("aws_access_key")) => "disable_access_key",
        // An inline policy denying every action: the role (or key-less user) stays, unusable.
        (Stage::Suspended, P::AwsRole | P::AwsUser, _) => "attach_deny_all_policy",
        (Stage::Suspended, P::GcpServiceAccount, Some("gcp_service_account_key")) => {
            "disable_service_account_key"
        }
        (Stage::Suspended, P::GcpServiceAccount, _) => "disable_service_account",
        (Stage::Suspended, P::Other, Some(_)) => "disable_credential",
        (Stage::Deleted, P::AwsUser, Some("aws_access_key")) => "delete_access_key",
        (Stage::Deleted, P::AwsUser, _) => "delete_user",
        (Stage::Deleted, P::AwsRole, _) => "delete_role",
        (Stage::Deleted, P::K8sServiceAccount, _) => "delete_service_account",
        (Stage::Deleted, P::GcpServiceAccount, Some("gcp_service_account_key")) => {
            "delete_service_account_key"
        }
        (Stage::Deleted, P::GcpServiceAccount, _) => "delete_service_account",
        (Stage::Deleted, P::Other, Some(_)) => "delete_credential",
        _ => "notify_owner",
    }
}

/// The governance command for identity `key`, silent since `idle_since_ms`, whose `stage` fell
/// due at `due_ms`. Its idempotency key names the silence, so a replay or a restart repeats the
/// same operation, while the same identity idle again after a later use is a new one.
pub fn command(
    key: &str,
    last: &LastUse,
    step: LifecycleStep,
    due_ms: i64,
    owner: Option<String>,
    auto_approve: bool,
    r: &Rules,
) -> Command {
    let c = &r.model.commands;
    let action = action(step.stage, last);
    let since = step.idle_since_ms.to_string();
    let idempotency_key = stable_id(
        &[
            last.provider,
            last.tenant.as_deref().unwrap_or(""),
            key,
            last.credential_id.as_deref().unwrap_or(""),
            action,
            "lifecycle",
            &since,
        ],
        16,
    );
    let finding_uid = stable_uuid(&[key, "lifecycle", step.stage.as_str(), &since]);
    let days = (due_ms - step.idle_since_ms) as f64 / DAY_MS as f64;
    let verb = match step.stage {
        Stage::Deleted => "delete",
        Stage::Suspended | Stage::Active => "suspend",
    };
    Command {
        command_id: stable_uuid(&[&idempotency_key, &finding_uid]),
        idempotency_key,
        event_time_ms: due_ms,
        ttl_ms: (r.model.lifecycle.ttl_hours * 3_600_000.0) as i64,
        mode: c.mode,
        severity: Severity::Medium,
        owner,
        // A deletion is never acted on without a person's approval.
        auto_approved: c.mode == CommandMode::Enforce
            && auto_approve
            && step.stage != Stage::Deleted,
        session: None,
        session_user_id: None,
        session_issued_ms: None,
        workload: Workload {
            cluster: last.cluster.clone(),
            ..Workload::default()
        },
        action,
        provider: last.provider,
        tenant: last.tenant.clone(),
        identity_key: key.to_owned(),
        identity_type: last.identity_type,
        credential_id: last.credential_id.clone(),
        credential_type: last.credential_type,
        finding_uid,
        risk_score: 0,
        summary: if step.never_used {
            format!(
                "declared {}, never used in {days:.0} days: {verb} ({action})",
                format_rfc3339_ms(step.idle_since_ms)
            )
        } else {
            format!(
                "idle for {days:.0} days since {}: {verb} ({action})",
                format_rfc3339_ms(step.idle_since_ms)
            )
        },
        evidence: Vec::new(),
        lifecycle: Some(step),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Model;

    fn last(t: PrincipalType, cred: Option<&'static str>) -> LastUse {
        LastUse {
            provider: "aws",
            identity_type: t,
            tenant: Some("111122223333".into()),
            credential_id: cred.map(|_| "AKIAIOSFODNN7EXAMPLE".into()),
            credential_type: cred,
            cluster: None,
        }
    }

    #[test]
    fn each_kind_of_identity_is_suspended_reversibly_and_deleted_by_what_its_provider_offers() {
        use PrincipalType as P;
        let s = Stage::Suspended;
        let d = Stage::Deleted;
        let key = Some("aws_access_key");
        let gkey = Some("gcp_service_account_key");
        assert_eq!(action(s, &last(P::AwsUser, key)), "disable_access_key");
        assert_eq!(action(d, &last(P::AwsUser, key)), "delete_access_key");
        assert_eq!(action(s, &last(P::AwsRole, None)), "attach_deny_all_policy");
        assert_eq!(action(d, &last(P::AwsRole, None)), "delete_role");
        assert_eq!(action(s, &last(P::AwsUser, None)), "attach_deny_all_policy");
        assert_eq!(action(d, &last(P::AwsUser, None)), "delete_user");
        assert_eq!(
            action(s, &last(P::GcpServiceAccount, gkey)),
            "disable_service_account_key"
        );
        assert_eq!(
            action(d, &last(P::GcpServiceAccount, None)),
            "delete_service_account"
        );
        assert_eq!(action(s, &last(P::K8sServiceAccount, None)), "notify_owner");
        assert_eq!(
            action(d, &last(P::K8sServiceAccount, None)),
            "delete_service_account"
        );
        assert_eq!(action(s, &last(P::AwsRoot, key)), "notify_owner");
        assert_eq!(action(d, &last(P::K8sNode, None)), "notify_owner");
    }

    #[test]
    fn the_same_silence_gives_the_same_operation_and_a_new_silence_a_new_one() {
        let r = Rules::new(Model::embedded());
        let l = last(PrincipalType::AwsUser, Some("aws_access_key"));
        let key = "arn:aws:iam::111122223333:user/batch";
        let step = |since| LifecycleStep {
            stage: Stage::Suspended,
            idle_since_ms: since,
            never_used: false,
        };
        let a = command(key, &l, step(0), 30 * DAY_MS, None, true, &r);
        let b = command(key, &l, step(0), 30 * DAY_MS, None, true, &r);
        assert_eq!(a.idempotency_key, b.idempotency_key);
        assert_eq!(a.command_id, b.command_id);
        let later = command(key, &l, step(DAY_MS), 31 * DAY_MS, None, true, &r);
        assert_ne!(a.idempotency_key, later.idempotency_key);
        assert_eq!(a.mode, CommandMode::DryRun);
        assert!(!a.auto_approved, "dry-run commands always need approval");
        assert!(
            a.summary.starts_with("idle for 30 days since 1970-01-01"),
            "{}",
            a.summary
        );
        let delete = command(
            key,
            &l,
            LifecycleStep {
                stage: Stage::Deleted,
                idle_since_ms: 0,
                never_used: false,
            },
            60 * DAY_MS,
            None,
            true,
            &r,
        );
        assert_eq!(delete.action, "delete_access_key");
        assert_ne!(delete.idempotency_key, a.idempotency_key);
    }
}
