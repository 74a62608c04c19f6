//! An identity's place in the dormancy lifecycle: active, suspended after
//! `lifecycle.suspend_after_days` of silence, deleted after `lifecycle.delete_after_days`
//! (event time), and what its last event said about it, so a command can name its target
//! although no event of it is at hand. Pure state; [`crate::decide::lifecycle`] decides.

use crate::config::model::LifecycleConfig;
use crate::event::{AccessEvent, PrincipalType};

use super::DAY_MS;

/// How far along the lifecycle an identity's current silence has gone: the command for a stage
/// has been issued (or withheld for good, for a protected identity) once the identity is at it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    #[default]
    Active,
    Suspended,
    Deleted,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Active => "active",
            Stage::Suspended => "suspended",
            Stage::Deleted => "deleted",
        }
    }

    /// The stage's number in snapshots.
    pub fn id(self) -> u8 {
        self as u8
    }

    pub fn from_id(id: u8) -> Option<Stage> {
        [Stage::Active, Stage::Suspended, Stage::Deleted]
            .get(usize::from(id))
            .copied()
    }
}

/// What the identity's last event showed of it: enough for a command's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastUse {
    pub provider: &'static str,
    pub identity_type: PrincipalType,
    pub tenant: Option<String>,
    pub credential_id: Option<String>,
    pub credential_type: Option<&'static str>,
    pub cluster: Option<String>,
}

impl Default for LastUse {
    fn default() -> LastUse {
        LastUse {
            provider: "generic",
            identity_type: PrincipalType::Other,
            tenant: None,
            credential_id: None,
            credential_type: None,
            cluster: None,
        }
    }
}

impl LastUse {
    /// What an identity's principal key alone says of it, for one the inventory declares but no
    /// event has shown: an IAM role or user ARN (with its account), a Kubernetes service account
    /// (with its cluster prefix), a GCP service account (with its project); otherwise nothing.
    pub fn declared(key: &str) -> LastUse {
        let mut last = LastUse::default();
        if let Some(rest) = key.strip_prefix("arn:aws:iam::")
            && let Some((account, resource)) = rest.split_once(':')
        {
            let kind = match resource.split('/').next() {
                Some("role") => Some(PrincipalType::AwsRole),
                Some("user") => Some(PrincipalType::AwsUser),
                _ => None,
            };
            if let Some(kind) = kind {
                last.provider = "aws";
                last.identity_type = kind;
                last.tenant = (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| account.to_owned());
            }
        } else if let Some(at) = key.find("system:serviceaccount:") {
            last.provider = "kubernetes";
            last.identity_type = PrincipalType::K8sServiceAccount;
            last.cluster = key[..at].strip_suffix('/').map(str::to_owned);
        } else if let Some((_, domain)) = key.split_once('@')
            && let Some(project) = domain.strip_suffix(".iam.gserviceaccount.com")
        {
            last.provider = "gcp";
            last.identity_type = PrincipalType::GcpServiceAccount;
            last.tenant = Some(project.to_owned());
        }
        last
    }
}

/// Replaces `slot` with `new` only when they differ: no allocation for the common event.
fn set(slot: &mut Option<String>, new: Option<&str>) {
    if slot.as_deref() != new {
        *slot = new.map(str::to_owned);
    }
}

/// The lifecycle state of one identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    pub stage: Stage,
    pub last: LastUse,
    /// Declared-policy findings already reported ([`notice`] bits), so each is raised once
    /// while its condition lasts.
    pub notices: u8,
}

/// Bits of [`Lifecycle::notices`].
pub mod notice {
    /// Active with no owner declared.
    pub const NO_OWNER: u8 = 1;
    /// Its credential is older than the declared rotation period.
    pub const PAST_ROTATION: u8 = 2;
    /// Used outside its declared maintenance windows.
    pub const OUTSIDE_MAINTENANCE: u8 = 4;
    /// Used outside its declared workload binding (clusters, namespaces, pods, instances, VPC
    /// endpoints).
    pub const OUTSIDE_BINDING: u8 = 8;
}

impl Lifecycle {
    /// Records that the condition `bit` holds (`on`) or not; true when it has just begun, so a
    /// finding is due.
    pub fn notice(&mut self, bit: u8, on: bool) -> bool {
        let was = self.notices & bit != 0;
        if on {
            self.notices |= bit;
        } else {
            self.notices &= !bit;
        }
        on && !was
    }

    /// Notes `ev` as the identity's latest use and makes it active again; returns the stage it
    /// was at (past [`Stage::Active`]: a suspended or deleted identity is in use again).
    pub fn observe(&mut self, ev: &AccessEvent) -> Stage {
        let l = &mut self.last;
        l.provider = ev.provider();
        l.identity_type = ev.principal_type;
        set(&mut l.tenant, ev.tenant.as_deref());
        let cred = ev.credential.as_ref();
        set(&mut l.credential_id, cred.map(|c| c.id.as_str()));
        l.credential_type = cred.map(|c| c.kind);
        set(&mut l.cluster, ev.origin.workload.cluster.as_deref());
        std::mem::take(&mut self.stage)
    }

    /// The next stage an identity last seen at `last_seen_ms` has reached by `now_ms`, with the
    /// time it fell due (when the silence crossed its horizon); `None` when nothing is due. A
    /// deletion is due only after the suspension was issued: one stage at a time.
    pub fn due(&self, last_seen_ms: i64, now_ms: i64, c: &LifecycleConfig) -> Option<(Stage, i64)> {
        let after = |days: f64| last_seen_ms.saturating_add((days * DAY_MS as f64) as i64);
        let (next, at) = match self.stage {
            Stage::Active => (Stage::Suspended, after(c.suspend_after_days)),
            Stage::Suspended => (Stage::Deleted, after(c.delete_after_days)),
            Stage::Deleted => return None,
        };
        (c.enabled && now_ms >= at).then_some((next, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Model;

    #[test]
    fn a_declared_key_names_its_provider_kind_and_tenant_where_it_can() {
        let role = LastUse::declared("arn:aws:iam::111122223333:role/etl/nightly");
        assert_eq!(
            (role.provider, role.identity_type, role.tenant.as_deref()),
            ("aws", PrincipalType::AwsRole, Some("111122223333"))
        );
        let user = LastUse::declared("arn:aws:iam::111122223333:user/ci");
        assert_eq!(user.identity_type, PrincipalType::AwsUser);
        let sa = LastUse::declared("prod-eu/system:serviceaccount:payments:api");
        assert_eq!(
            (sa.provider, sa.cluster.as_deref()),
            ("kubernetes", Some("prod-eu"))
        );
        let gcp = LastUse::declared("etl@acme-data.iam.gserviceaccount.com");
        assert_eq!(
            (gcp.provider, gcp.tenant.as_deref()),
            ("gcp", Some("acme-data"))
        );
        assert_eq!(LastUse::declared("api-key-7"), LastUse::default());
        assert_eq!(
            LastUse::declared("arn:aws:iam::111122223333:root").provider,
            "generic"
        );
    }

    #[test]
    fn suspension_falls_due_at_the_horizon_and_deletion_only_after_it() {
        let m = Model::embedded();
        let mut c = m.lifecycle.clone();
        c.enabled = true;
        let l = Lifecycle::default();
        let seen = 1_000;
        let suspend_at = seen + 30 * DAY_MS;
        assert_eq!(l.due(seen, suspend_at - 1, &c), None);
        assert_eq!(
            l.due(seen, suspend_at, &c),
            Some((Stage::Suspended, suspend_at))
        );
        // Long past both horizons, still the suspension first.
        assert_eq!(
            l.due(seen, seen + 400 * DAY_MS, &c),
            Some((Stage::Suspended, suspend_at))
        );
        let suspended = Lifecycle {
            stage: Stage::Suspended,
            ..Lifecycle::default()
        };
        assert_eq!(suspended.due(seen, seen + 59 * DAY_MS, &c), None);
        assert_eq!(
            suspended.due(seen, seen + 60 * DAY_MS, &c),
            Some((Stage::Deleted, seen + 60 * DAY_MS))
        );
        let deleted = Lifecycle {
            stage: Stage::Deleted,
            ..Lifecycle::default()
        };
        assert_eq!(deleted.due(seen, seen + 999 * DAY_MS, &c), None);
        c.enabled = false;
        assert_eq!(l.due(seen, seen + 400 * DAY_MS, &c), None);
    }

    #[test]
    fn stage_ids_round_trip() {
        for s in [Stage::Active, Stage::Suspended, Stage::Deleted] {
            assert_eq!(Stage::from_id(s.id()), Some(s));
        }
        assert_eq!(Stage::from_id(3), None);
    }
}
