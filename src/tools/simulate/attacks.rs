//! The attacks a simulated fleet is injected with, each labelled with its kind, victim and time
//! span for scoring.

use rand::Rng;

use super::{Call, DAY_MS, HOUR_MS, Ident, Kind, LabelAttack, Sim, pick, public_ip};

/// Every attack kind the simulator injects, by the name its labels carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttackKind {
    TokenReplayExternal,
    InstanceCredentialExfiltration,
    PrivilegeEscalation,
    RbacEscalation,
    OffHoursActivity,
    DormantKeyReactivated,
    BulkDownload,
    Enumeration,
    DeniedBurst,
    NewClientReplay,
}

impl AttackKind {
    /// Every kind, in the order victims are chosen (which the fleet's randomness depends on).
    pub const ALL: [AttackKind; 10] = [
        AttackKind::TokenReplayExternal,
        AttackKind::InstanceCredentialExfiltration,
        AttackKind::PrivilegeEscalation,
        AttackKind::RbacEscalation,
        AttackKind::OffHoursActivity,
        AttackKind::DormantKeyReactivated,
        AttackKind::BulkDownload,
        AttackKind::Enumeration,
        AttackKind::DeniedBurst,
        AttackKind::NewClientReplay,
    ];

    /// The name in `labels.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttackKind::TokenReplayExternal => "token_replay_external",
            AttackKind::InstanceCredentialExfiltration => "instance_credential_exfiltration",
            AttackKind::PrivilegeEscalation => "privilege_escalation",
            AttackKind::RbacEscalation => "rbac_escalation",
            AttackKind::OffHoursActivity => "off_hours_activity",
            AttackKind::DormantKeyReactivated => "dormant_key_reactivated",
            AttackKind::BulkDownload => "bulk_download",
            AttackKind::Enumeration => "enumeration",
            AttackKind::DeniedBurst => "denied_burst",
            AttackKind::NewClientReplay => "new_client_replay",
        }
    }

    /// Which identity kinds the attack applies to.
    pub(super) fn fits(self, k: Kind) -> bool {
        match self {
            AttackKind::TokenReplayExternal | AttackKind::RbacEscalation => k == Kind::K8sService,
            AttackKind::InstanceCredentialExfiltration => k == Kind::Ec2Role,
            AttackKind::PrivilegeEscalation => {
                matches!(k, Kind::WorkloadRole | Kind::LambdaRole | Kind::Agent)
            }
            AttackKind::OffHoursActivity => k == Kind::BatchJob,
            AttackKind::DormantKeyReactivated => k == Kind::Dormant,
            AttackKind::BulkDownload => matches!(
                k,
                Kind::WorkloadRole | Kind::PartnerKey | Kind::Agent | Kind::Ec2Role
            ),
            AttackKind::Enumeration => matches!(
                k,
                Kind::CiKey | Kind::WorkloadRole | Kind::PartnerKey | Kind::LambdaRole
            ),
            AttackKind::DeniedBurst => matches!(
                k,
                Kind::WorkloadRole | Kind::Ec2Role | Kind::Agent | Kind::BatchJob
            ),
            AttackKind::NewClientReplay => matches!(
                k,
                Kind::PartnerKey | Kind::WorkloadRole | Kind::Ec2Role | Kind::Agent
            ),
        }
    }
}

const RECON: [&str; 22] = [
    "sts.amazonaws.com:GetCallerIdentity",
    "iam.amazonaws.com:ListUsers",
    "iam.amazonaws.com:ListRoles",
    "iam.amazonaws.com:ListAttachedRolePolicies",
    "iam.amazonaws.com:GetAccountAuthorizationDetails",
    "iam.amazonaws.com:ListAccessKeys",
    "s3.amazonaws.com:ListBuckets",
    "ec2.amazonaws.com:DescribeInstances",
    "ec2.amazonaws.com:DescribeSecurityGroups",
    "ec2.amazonaws.com:DescribeVpcs",
    "lambda.amazonaws.com:ListFunctions20150331",
    "secretsmanager.amazonaws.com:ListSecrets",
    "rds.amazonaws.com:DescribeDBInstances",
    "dynamodb.amazonaws.com:ListTables",
    "sns.amazonaws.com:ListTopics",
    "sqs.amazonaws.com:ListQueues",
    "organizations.amazonaws.com:ListAccounts",
    "cloudtrail.amazonaws.com:DescribeTrails",
    "guardduty.amazonaws.com:ListDetectors",
    "kms.amazonaws.com:ListKeys",
    "ecr.amazonaws.com:DescribeRepositories",
    "eks.amazonaws.com:ListClusters",
];

const ATTACKER_UAS: [&str; 5] = [
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.kali.2024",
    "python-requests/2.31.0",
    "curl/8.5.0",
    "Boto3/1.34.51 md/Botocore#1.34.51 ua/2.0 os/linux#6.1 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.51 pacu",
    "Go-http-client/1.1",
];

const ATTACKER_PREFIXES: [u8; 6] = [185, 45, 91, 193, 103, 194];

impl Sim {
    fn attack_time(&mut self, id: &Ident) -> i64 {
        let lo = (self.start + i64::from(self.cfg.warmup_days) * DAY_MS).max(id.first + 5 * DAY_MS);
        let hi = (self.end - DAY_MS).min(id.last - HOUR_MS);
        if hi <= lo {
            lo
        } else {
            lo + self.rng.random_range(0..(hi - lo))
        }
    }

    /// Injects one attack of `kind` into `id`; returns its label.
    pub(super) fn inject(&mut self, kind: AttackKind, id: &mut Ident, n: usize) -> LabelAttack {
        let mut t = self.attack_time(id);
        let attacker_ip = public_ip(&mut self.rng, &ATTACKER_PREFIXES);
        let attacker_ua = pick(&mut self.rng, &ATTACKER_UAS).to_string();
        let usual_ip = id
            .nat
            .first()
            .cloned()
            .unwrap_or_else(|| "10.244.1.10".into());
        // The identity as it was when the attack starts: its client and session then (a stolen
        // token names the pod it was taken from, not one that only exists later).
        let before = id
            .calls
            .iter()
            .rev()
            .find(|c| c.t <= t)
            .or(id.calls.first());
        let usual_ua = before.map(|c| c.ua.clone()).unwrap_or_default();
        let last_session = before.and_then(|c| c.session.clone());
        let mut calls: Vec<Call> = Vec::new();
        let mut push = |t: i64,
                        action: &str,
                        ip: &str,
                        ua: &str,
                        error: Option<&'static str>,
                        bytes: Option<u64>| {
            calls.push(Call {
                t,
                action: action.to_owned(),
                ip: ip.to_owned(),
                ua: ua.to_owned(),
                error,
                bytes_out: bytes,
                session: last_session.clone(),
                node: None,
                vpce: None,
            });
        };
        let description;
        match kind {
            AttackKind::TokenReplayExternal => {
                description =
                    "service-account token replayed from an external address with kubectl"
                        .to_owned();
                let ua = "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819";
                for (k, a) in [
                    "get:pods",
                    "list:pods",
                    "list:secrets",
                    "get:secrets",
                    "list:configmaps",
                    "get:secrets",
                    "list:namespaces",
                    "get:secrets",
                ]
                .iter()
                .enumerate()
                {
                    push(t + k as i64 * 20_000, a, &attacker_ip, ua, None, None);
                }
            }
            AttackKind::InstanceCredentialExfiltration => {
                description = "instance-role session credentials used from outside AWS".to_owned();
                for (k, a) in [
                    "sts.amazonaws.com:GetCallerIdentity",
                    "s3.amazonaws.com:ListBuckets",
                    "iam.amazonaws.com:ListRoles",
                    "ec2.amazonaws.com:DescribeInstances",
                    "s3.amazonaws.com:ListObjects",
                ]
                .iter()
                .enumerate()
                {
                    push(
                        t + k as i64 * 30_000,
                        a,
                        &attacker_ip,
                        &usual_ua,
                        None,
                        None,
                    );
                }
            }
            AttackKind::PrivilegeEscalation => {
                description = "workload role creates an IAM user, an access key and attaches admin policy, from its own network".to_owned();
                for (k, a) in [
                    "iam.amazonaws.com:CreateUser",
                    "iam.amazonaws.com:CreateAccessKey",
                    "iam.amazonaws.com:AttachUserPolicy",
                ]
                .iter()
                .enumerate()
                {
                    push(t + k as i64 * 40_000, a, &usual_ip, &usual_ua, None, None);
                }
            }
            AttackKind::RbacEscalation => {
                description = "service account binds cluster-admin and execs into a pod".to_owned();
                let ip = id
                    .calls
                    .last()
                    .map(|c| c.ip.clone())
                    .unwrap_or(usual_ip.clone());
                for (k, a) in [
                    "create:clusterrolebindings",
                    "list:pods",
                    "create:pods/exec",
                    "get:secrets",
                ]
                .iter()
                .enumerate()
                {
                    push(t + k as i64 * 15_000, a, &ip, &usual_ua, None, None);
                }
            }
            AttackKind::OffHoursActivity => {
                description =
                    "nightly job credentials used at midday with its usual calls".to_owned();
                let local_noon = (t.div_euclid(DAY_MS)) * DAY_MS + (12 - id.tz) * HOUR_MS;
                t = local_noon;
                let n = self.rng.random_range(60..200);
                for k in 0..n {
                    let a = id.endpoints[k as usize % id.endpoints.len()].0.clone();
                    let b = a.ends_with(":GetObject").then_some(100_000);
                    push(t + k * 10_000, &a, &usual_ip, &usual_ua, None, b);
                }
            }
            AttackKind::DormantKeyReactivated => {
                description = "access key idle for over 30 days used again".to_owned();
                for (k, a) in [
                    "sts.amazonaws.com:GetCallerIdentity",
                    "s3.amazonaws.com:ListBuckets",
                    "s3.amazonaws.com:ListObjects",
                ]
                .iter()
                .enumerate()
                {
                    push(
                        t + k as i64 * 60_000,
                        a,
                        &attacker_ip,
                        &attacker_ua,
                        None,
                        None,
                    );
                }
            }
            AttackKind::BulkDownload => {
                description =
                    "bulk download: thousands of objects, gigabytes out, within an hour".to_owned();
                let n = self.rng.random_range(800..2500);
                for k in 0..n {
                    push(
                        t + k * 1_400,
                        "s3.amazonaws.com:GetObject",
                        &usual_ip,
                        &usual_ua,
                        None,
                        Some(self.rng.random_range(1_000_000..8_000_000)),
                    );
                }
            }
            AttackKind::Enumeration => {
                description = "reconnaissance sweep across services, many calls denied".to_owned();
                let n = self.rng.random_range(12..22);
                for k in 0..n {
                    let a = RECON[k % RECON.len()];
                    let err = self.rng.random_bool(0.4).then_some("AccessDenied");
                    push(
                        t + k as i64 * 8_000,
                        a,
                        &attacker_ip,
                        &attacker_ua,
                        err,
                        None,
                    );
                }
            }
            AttackKind::DeniedBurst => {
                description = "burst of access-denied calls probing permissions from the identity's usual network".to_owned();
                let n = self.rng.random_range(25..60);
                for k in 0..n {
                    let a = &id.endpoints[k as usize % id.endpoints.len()].0;
                    push(
                        t + k * 6_000,
                        a,
                        &usual_ip,
                        &usual_ua,
                        Some("AccessDenied"),
                        None,
                    );
                }
            }
            AttackKind::NewClientReplay => {
                description =
                    "credential replayed with a new client from a new network, usual calls"
                        .to_owned();
                let n = self.rng.random_range(5..20);
                for k in 0..n {
                    let a = id.endpoints[k as usize % id.endpoints.len()].0.clone();
                    push(t + k * 45_000, &a, &attacker_ip, &attacker_ua, None, None);
                }
            }
        }
        // CloudTrail times have whole seconds: label what the records will say.
        for c in &mut calls {
            c.t -= c.t.rem_euclid(1000);
        }
        let start = calls.iter().map(|c| c.t).min().unwrap_or(t);
        let end = calls.iter().map(|c| c.t).max().unwrap_or(t);
        if id.kind.is_k8s() {
            for c in &mut calls {
                if c.session.is_none() {
                    c.session = Some(format!("{}-{}", id.name, "5c9d8f7b6d-abcde"));
                }
            }
        }
        id.calls.extend(calls);
        LabelAttack {
            id: format!("atk-{n:03}"),
            kind: kind.as_str().to_owned(),
            identity: id.key.clone(),
            start,
            end,
            description,
        }
    }
}
