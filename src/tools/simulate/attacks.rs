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
    WorkloadCredentialAtBoot,
    ScheduledJobOffSchedule,
    SlowPartnerReplay,
    LongDormancyReactivated,
}

impl AttackKind {
    /// Every kind, in the order victims are chosen (which the fleet's randomness depends on).
    pub const ALL: [AttackKind; 14] = [
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
        AttackKind::WorkloadCredentialAtBoot,
        AttackKind::ScheduledJobOffSchedule,
        AttackKind::SlowPartnerReplay,
        AttackKind::LongDormancyReactivated,
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
            AttackKind::WorkloadCredentialAtBoot => "workload_credential_replayed_at_boot",
            AttackKind::ScheduledJobOffSchedule => "scheduled_job_off_schedule",
            AttackKind::SlowPartnerReplay => "slow_partner_replay",
            AttackKind::LongDormancyReactivated => "long_dormancy_reactivated",
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
            AttackKind::WorkloadCredentialAtBoot => k == Kind::Ec2Role,
            AttackKind::ScheduledJobOffSchedule => k == Kind::ScheduledJob,
            AttackKind::SlowPartnerReplay => k == Kind::PartnerKey,
            AttackKind::LongDormancyReactivated => k == Kind::LongDormant,
        }
    }

    /// Whether `id` can be this attack's victim in a window of `[start, end)` whose attacks
    /// start at `attacks_from`: most attacks need an identity that lives from the start and long
    /// enough to have a baseline; an attack at boot needs one that starts after the warm-up.
    pub(super) fn can_strike(self, id: &Ident, start: i64, attacks_from: i64, end: i64) -> bool {
        if !self.fits(id.kind) || id.calls.is_empty() {
            return false;
        }
        match self {
            AttackKind::DormantKeyReactivated | AttackKind::LongDormancyReactivated => true,
            AttackKind::WorkloadCredentialAtBoot => {
                id.first >= attacks_from && id.first <= end - DAY_MS
            }
            _ => {
                id.first <= start + DAY_MS
                    && id.last - id.first >= attacks_from - start + 3 * DAY_MS
            }
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
        if id.last < lo && self.end - DAY_MS > lo {
            // A key long silent: woken any day after the warm-up.
            lo + self.rng.random_range(0..(self.end - DAY_MS - lo))
        } else if hi <= lo {
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
            AttackKind::WorkloadCredentialAtBoot => {
                description = "an instance's role credentials used from another network with another client minutes after the instance's first call".to_owned();
                // The instance's first call, and the session it names.
                let first = id
                    .calls
                    .iter()
                    .min_by_key(|c| c.t)
                    .expect("victims have calls");
                let session = first.session.clone();
                t = first.t + self.rng.random_range(20_000..600_000);
                for (k, a) in [
                    "sts.amazonaws.com:GetCallerIdentity",
                    "s3.amazonaws.com:ListBuckets",
                    "iam.amazonaws.com:ListAttachedRolePolicies",
                    "secretsmanager.amazonaws.com:ListSecrets",
                ]
                .iter()
                .enumerate()
                {
                    push(
                        t + k as i64 * 15_000,
                        a,
                        &attacker_ip,
                        &attacker_ua,
                        None,
                        None,
                    );
                }
                for c in &mut calls {
                    c.session.clone_from(&session);
                }
            }
            AttackKind::ScheduledJobOffSchedule => {
                description = "a strictly scheduled nightly job's credentials used in the afternoon, with the job's usual calls, volume, network and client".to_owned();
                // One run as the job makes it: its usual number of calls over its usual length.
                let mut per_run: std::collections::BTreeMap<&str, (usize, i64, i64)> =
                    std::collections::BTreeMap::new();
                for c in &id.calls {
                    let e = per_run
                        .entry(c.session.as_deref().unwrap_or(""))
                        .or_insert((0, i64::MAX, i64::MIN));
                    *e = (e.0 + 1, e.1.min(c.t), e.2.max(c.t));
                }
                let runs = per_run.len().max(1);
                let n = per_run.values().map(|r| r.0).sum::<usize>() / runs;
                let length = per_run.values().map(|r| r.2 - r.1).sum::<i64>() / runs as i64;
                let local_hour = self.rng.random_range(11..16i64);
                t = t.div_euclid(DAY_MS) * DAY_MS + (local_hour - id.tz) * HOUR_MS;
                let session = format!("{}-{}", id.name, t.div_euclid(DAY_MS));
                for _ in 0..n.max(3) {
                    let a = id.endpoints[self.rng.random_range(0..id.endpoints.len())]
                        .0
                        .clone();
                    let at = t + self.rng.random_range(0..length.max(60_000));
                    let b = a.ends_with(":GetObject").then_some(100_000);
                    push(at, &a, &usual_ip, &usual_ua, None, b);
                }
                for c in &mut calls {
                    c.session = Some(session.clone());
                }
            }
            AttackKind::SlowPartnerReplay => {
                description = "a partner key replayed slowly: a handful of its usual calls an hour apart, from a new address in a network other partners use".to_owned();
                // A network another partner calls from, and a new address in it.
                let others: Vec<&String> = self
                    .partner_ips
                    .iter()
                    .filter(|ip| !id.nat.contains(ip))
                    .collect();
                let ip = match others.is_empty() {
                    true => attacker_ip.clone(),
                    false => {
                        let near = pick(&mut self.rng, &others);
                        let net = near.rsplit_once('.').map_or(near.as_str(), |(n, _)| n);
                        format!("{net}.{}", self.rng.random_range(1..255))
                    }
                };
                let n = self.rng.random_range(3..7);
                for k in 0..n {
                    let a = id.endpoints[k as usize % id.endpoints.len()].0.clone();
                    let at = t + k * HOUR_MS + self.rng.random_range(0..600_000);
                    push(at, &a, &ip, &attacker_ua, None, None);
                }
            }
            AttackKind::LongDormancyReactivated => {
                description = "a key silent for over half a year used again with its usual call, from its usual address and client".to_owned();
                let a = id.endpoints[0].0.clone();
                let ip = pick(&mut self.rng, &id.nat).clone();
                push(t, &a, &ip, &usual_ua, None, None);
                push(t + 90_000, &a, &ip, &usual_ua, None, None);
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
