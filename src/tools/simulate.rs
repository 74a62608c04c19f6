//! A simulated fleet of machine identities with legitimate churn and injected, labelled attacks.
//!
//! The fleet mixes Kubernetes service accounts (pods restart onto new IPs, deployments roll out
//! new pod names and occasionally a new endpoint), AWS workload roles (sessions rotate hourly,
//! calls leave through shared NAT gateways, SDKs get patch upgrades, some run on EC2 with
//! instance-bound credentials, some as lambdas from ever-changing addresses), CI keys (jobs on
//! weekdays from a new runner address each time), nightly batch jobs, partner keys (a few fixed
//! addresses, business hours in the partner's time zone) and AI agents (bursty, and they pick up
//! new tools). Some identities are created mid-run and some stop. Daily and weekly seasonality
//! apply throughout.
//!
//! Attacks of every kind the engine is meant to catch are injected after the warm-up and
//! written to `labels.json` (`schemas/labels.v1.json`), so [`super::evaluate`] can score a replay.
//! Output is deterministic for a seed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::baseline::{DAY_MS, HOUR_MS, hour_of_week};
use crate::decode::time::format_rfc3339_ms;

/// 2026-01-05T00:00:00Z, a Monday.
pub const DEFAULT_START_MS: i64 = 1_767_571_200_000;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub identities: usize,
    pub days: u32,
    pub seed: u64,
    pub start_ms: i64,
    /// Days at the start during which no attack is injected.
    pub warmup_days: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            identities: 200,
            days: 21,
            seed: 7,
            start_ms: DEFAULT_START_MS,
            warmup_days: 7,
        }
    }
}

/// Ground truth for one simulated fleet (`schemas/labels.v1.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Labels {
    pub schema: String,
    pub start: i64,
    pub end: i64,
    pub warmup_days: f64,
    pub seed: Option<u64>,
    pub identities: Vec<LabelIdentity>,
    pub attacks: Vec<LabelAttack>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelIdentity {
    pub key: String,
    pub kind: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelAttack {
    pub id: String,
    pub kind: String,
    pub identity: String,
    pub start: i64,
    pub end: i64,
    pub description: String,
}

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
    fn fits(self, k: Kind) -> bool {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    K8sService,
    WorkloadRole,
    Ec2Role,
    LambdaRole,
    CiKey,
    BatchJob,
    PartnerKey,
    Agent,
    Dormant,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::K8sService => "k8s_service_account",
            Kind::WorkloadRole => "workload_role",
            Kind::Ec2Role => "ec2_instance_role",
            Kind::LambdaRole => "lambda_role",
            Kind::CiKey => "ci_key",
            Kind::BatchJob => "batch_job",
            Kind::PartnerKey => "partner_key",
            Kind::Agent => "ai_agent",
            Kind::Dormant => "dormant_key",
        }
    }
    fn is_k8s(self) -> bool {
        self == Kind::K8sService
    }
    fn is_user(self) -> bool {
        matches!(self, Kind::CiKey | Kind::PartnerKey | Kind::Dormant)
    }
}

/// One simulated call, rendered later as CloudTrail or Kubernetes audit.
#[derive(Debug, Clone)]
struct Call {
    t: i64,
    action: String,
    ip: String,
    ua: String,
    error: Option<&'static str>,
    bytes_out: Option<u64>,
    /// AWS session name, or Kubernetes pod name.
    session: Option<String>,
    node: Option<String>,
    vpce: Option<String>,
}

struct Ident {
    kind: Kind,
    key: String,
    account: String,
    name: String,
    namespace: String,
    endpoints: Vec<(String, f64)>,
    first: i64,
    last: i64,
    rate: f64,
    tz: i64,
    nat: Vec<String>,
    access_key: String,
    calls: Vec<Call>,
}

const K8S_ENDPOINTS: [&str; 14] = [
    "get:configmaps",
    "list:pods",
    "watch:pods",
    "get:leases",
    "update:leases",
    "create:events",
    "patch:pods/status",
    "get:services",
    "list:endpointslices",
    "watch:endpointslices",
    "get:deployments",
    "list:nodes",
    "get:pods",
    "update:configmaps",
];

const AWS_WORKLOAD_ENDPOINTS: [&str; 16] = [
    "s3.amazonaws.com:GetObject",
    "s3.amazonaws.com:PutObject",
    "s3.amazonaws.com:ListObjects",
    "dynamodb.amazonaws.com:GetItem",
    "dynamodb.amazonaws.com:PutItem",
    "dynamodb.amazonaws.com:Query",
    "sqs.amazonaws.com:SendMessage",
    "sqs.amazonaws.com:ReceiveMessage",
    "sqs.amazonaws.com:DeleteMessage",
    "sns.amazonaws.com:Publish",
    "kms.amazonaws.com:GenerateDataKey",
    "events.amazonaws.com:PutEvents",
    "logs.amazonaws.com:PutLogEvents",
    "cloudwatch.amazonaws.com:PutMetricData",
    "kinesis.amazonaws.com:PutRecords",
    "ssm.amazonaws.com:GetParameter",
];

const CI_ENDPOINTS: [&str; 9] = [
    "sts.amazonaws.com:GetCallerIdentity",
    "ecr.amazonaws.com:GetAuthorizationToken",
    "ecr.amazonaws.com:BatchCheckLayerAvailability",
    "ecr.amazonaws.com:PutImage",
    "ecr.amazonaws.com:InitiateLayerUpload",
    "s3.amazonaws.com:PutObject",
    "cloudformation.amazonaws.com:DescribeStacks",
    "lambda.amazonaws.com:UpdateFunctionCode20150331v2",
    "ecs.amazonaws.com:UpdateService",
];

const AGENT_ENDPOINTS: [&str; 12] = [
    "bedrock.amazonaws.com:InvokeModel",
    "bedrock.amazonaws.com:InvokeModelWithResponseStream",
    "s3.amazonaws.com:GetObject",
    "dynamodb.amazonaws.com:Query",
    "lambda.amazonaws.com:Invoke",
    "athena.amazonaws.com:StartQueryExecution",
    "athena.amazonaws.com:GetQueryResults",
    "kendra.amazonaws.com:Query",
    "s3.amazonaws.com:ListObjects",
    "dynamodb.amazonaws.com:GetItem",
    "sqs.amazonaws.com:SendMessage",
    "textract.amazonaws.com:AnalyzeDocument",
];

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

fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda > 30.0 {
        // Normal approximation, good enough for traffic volumes.
        let u1: f64 = rng.random::<f64>().max(1e-12);
        let u2: f64 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        return (lambda + z * lambda.sqrt()).round().max(0.0) as u32;
    }
    let l = (-lambda).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.random::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn weighted(rng: &mut ChaCha8Rng, xs: &[(String, f64)]) -> String {
    let total: f64 = xs.iter().map(|x| x.1).sum();
    let mut r = rng.random::<f64>() * total;
    for (s, w) in xs {
        if r < *w {
            return s.clone();
        }
        r -= w;
    }
    xs.last().map(|x| x.0.clone()).unwrap_or_default()
}

fn hex(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

fn alnum(rng: &mut ChaCha8Rng, n: usize) -> String {
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n)
        .map(|_| A[rng.random_range(0..A.len())] as char)
        .collect()
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    format!(
        "{}-{}-4{}-a{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 3),
        hex(rng, 3),
        hex(rng, 12)
    )
}

fn public_ip(rng: &mut ChaCha8Rng, first_octets: &[u8]) -> String {
    format!(
        "{}.{}.{}.{}",
        pick(rng, first_octets),
        rng.random_range(0..256),
        rng.random_range(0..256),
        rng.random_range(1..255)
    )
}

/// Activity multiplier for an hour of the week given a time-zone offset (business-hours shape).
fn diurnal(hour: i64, tz: i64, amplitude: f64) -> f64 {
    let local = hour + tz;
    let hod = local.rem_euclid(24) as f64;
    let weekend = hour_of_week(local) >= 120;
    let day = 1.0
        + amplitude
            * ((hod - 9.0) / 24.0 * 2.0 * std::f64::consts::PI)
                .cos()
                .max(-1.0);
    if weekend {
        day * (1.0 - amplitude * 0.6)
    } else {
        day
    }
}

const ACCOUNTS: [&str; 4] = [
    "111122223333",
    "444455556666",
    "777788889999",
    "123456789012",
];
const RUNNER_PREFIXES: [u8; 6] = [20, 40, 52, 13, 4, 172];
const ATTACKER_PREFIXES: [u8; 6] = [185, 45, 91, 193, 103, 194];
const LAMBDA_PREFIXES: [u8; 3] = [3, 18, 54];

struct Sim {
    rng: ChaCha8Rng,
    cfg: SimConfig,
    start: i64,
    end: i64,
    nat: Vec<Vec<String>>,
}

impl Sim {
    fn new_ident(&mut self, i: usize) -> Ident {
        let r: f64 = self.rng.random();
        let kind = match r {
            x if x < 0.30 => Kind::K8sService,
            x if x < 0.44 => Kind::WorkloadRole,
            x if x < 0.52 => Kind::Ec2Role,
            x if x < 0.58 => Kind::LambdaRole,
            x if x < 0.70 => Kind::CiKey,
            x if x < 0.80 => Kind::BatchJob,
            x if x < 0.88 => Kind::PartnerKey,
            x if x < 0.96 => Kind::Agent,
            _ => Kind::Dormant,
        };
        self.ident_of(kind, i)
    }

    fn ident_of(&mut self, kind: Kind, i: usize) -> Ident {
        let rng = &mut self.rng;
        let acct_idx = rng.random_range(0..ACCOUNTS.len());
        let account = ACCOUNTS[acct_idx].to_owned();
        let apps = [
            "payments",
            "orders",
            "search",
            "billing",
            "ledger",
            "inventory",
            "notify",
            "auth",
            "reports",
            "catalog",
            "ingest",
            "pricing",
        ];
        let name = format!("{}-{}{}", pick(rng, &apps), alnum(rng, 3), i);
        let namespace = pick(rng, &apps).to_string();
        let pool: Vec<&str> = match kind {
            Kind::K8sService => K8S_ENDPOINTS.to_vec(),
            Kind::CiKey => CI_ENDPOINTS.to_vec(),
            Kind::Agent => AGENT_ENDPOINTS.to_vec(),
            Kind::BatchJob => vec![
                "s3.amazonaws.com:GetObject",
                "s3.amazonaws.com:PutObject",
                "s3.amazonaws.com:ListObjects",
                "glue.amazonaws.com:GetTable",
                "athena.amazonaws.com:StartQueryExecution",
            ],
            Kind::PartnerKey | Kind::Dormant => vec![
                "s3.amazonaws.com:GetObject",
                "s3.amazonaws.com:ListObjects",
                "s3.amazonaws.com:PutObject",
                "sqs.amazonaws.com:ReceiveMessage",
            ],
            _ => AWS_WORKLOAD_ENDPOINTS.to_vec(),
        };
        let n = match kind {
            Kind::CiKey => rng.random_range(4..=7),
            Kind::Agent => rng.random_range(4..=8),
            Kind::BatchJob => rng.random_range(3..=5),
            Kind::PartnerKey | Kind::Dormant => rng.random_range(1..=3),
            _ => rng.random_range(3..=8),
        }
        .min(pool.len());
        let mut endpoints: Vec<(String, f64)> = Vec::new();
        while endpoints.len() < n {
            let e = pick(rng, &pool).to_string();
            if !endpoints.iter().any(|x| x.0 == e) {
                let w = rng.random::<f64>().powi(2) * 10.0 + 0.2;
                endpoints.push((e, w));
            }
        }
        if kind == Kind::CiKey {
            endpoints[0] = ("sts.amazonaws.com:GetCallerIdentity".into(), 1.0);
        }
        let key = match kind {
            Kind::K8sService => format!("system:serviceaccount:{namespace}:{name}"),
            Kind::CiKey => format!("arn:aws:iam::{account}:user/ci-{name}"),
            Kind::PartnerKey => format!("arn:aws:iam::{account}:user/partner-{name}"),
            Kind::Dormant => format!("arn:aws:iam::{account}:user/legacy-{name}"),
            Kind::BatchJob => format!("arn:aws:iam::{account}:role/batch-{name}"),
            Kind::Agent => format!("arn:aws:iam::{account}:role/agent-{name}"),
            _ => format!("arn:aws:iam::{account}:role/{name}"),
        };
        let rate = match kind {
            Kind::K8sService => rng.random_range(2.0..16.0),
            Kind::WorkloadRole | Kind::Ec2Role => rng.random_range(1.0..14.0),
            Kind::LambdaRole => rng.random_range(0.5..6.0),
            Kind::BatchJob => rng.random_range(80.0..300.0),
            Kind::PartnerKey | Kind::Dormant => rng.random_range(0.5..3.0),
            Kind::Agent => rng.random_range(1.0..8.0),
            Kind::CiKey => rng.random_range(2.0..8.0),
        };
        // About one identity in ten is created during the run, one in twenty retired.
        let span = self.end - self.start;
        let first = if kind == Kind::Dormant {
            self.start - rng.random_range(45..60) * DAY_MS
        } else if rng.random_bool(0.1) {
            self.start + rng.random_range(0..span.max(1))
        } else {
            self.start
        };
        let last = if kind == Kind::Dormant {
            first + rng.random_range(5..10) * DAY_MS
        } else if rng.random_bool(0.05) {
            first + (self.end - first) / 2
        } else {
            self.end
        };
        let tz = if kind == Kind::PartnerKey {
            *pick(rng, &[-8i64, -5, 1, 5, 8])
        } else {
            *pick(rng, &[-5i64, 0, 1])
        };
        let ak = format!("AKIA{}", hex(rng, 16).to_uppercase());
        let nat = self.nat[acct_idx].clone();
        let partner_ips: Vec<String> = (0..rng.random_range(1..=3))
            .map(|_| public_ip(rng, &[62, 81, 145, 198]))
            .collect();
        Ident {
            kind,
            key,
            account,
            name,
            namespace,
            endpoints,
            first,
            last,
            rate,
            tz,
            nat: if kind == Kind::PartnerKey || kind == Kind::Dormant {
                partner_ips
            } else {
                nat
            },
            access_key: ak,
            calls: Vec::new(),
        }
    }

    fn sdk_ua(&mut self, kind: Kind, patch: u32) -> String {
        match kind {
            Kind::K8sService => format!(
                "app/v1.{}.{} (linux/amd64) kubernetes/{}",
                4 + patch / 5,
                patch % 5,
                "a1b2c3d"
            ),
            Kind::CiKey => format!(
                "aws-cli/2.{}.{} Python/3.11.6 Linux/5.15.0-1053-azure exe/x86_64.ubuntu.22",
                13 + patch / 4,
                patch % 4
            ),
            Kind::LambdaRole => format!(
                "aws-sdk-nodejs/2.{}.0 linux/v18.19.0 exec-env/AWS_Lambda_nodejs18.x",
                1500 + patch
            ),
            Kind::Agent => format!(
                "Boto3/1.34.{} md/Botocore#1.34.{} ua/2.0 os/linux#5.10 md/arch#x86_64 lang/python#3.12.1 langchain-aws/0.1",
                20 + patch,
                20 + patch
            ),
            Kind::PartnerKey | Kind::Dormant => format!(
                "Boto3/1.28.{} Python/3.9.18 Linux/5.4.0 Botocore/1.31.{}",
                patch, patch
            ),
            _ => format!("aws-sdk-go/1.50.{} (go1.21.6; linux; amd64)", patch),
        }
    }

    /// Benign traffic of one identity over its lifetime within the window.
    fn benign(&mut self, id: &mut Ident) {
        let from = id.first.max(self.start - 60 * DAY_MS);
        let to = id.last.min(self.end);
        let mut patch = self.rng.random_range(0..10u32);
        let mut pod = format!(
            "{}-{}-{}",
            id.name,
            hex(&mut self.rng, 9).replace(|c: char| c.is_ascii_digit() && c < '2', "a"),
            alnum(&mut self.rng, 5)
        );
        let mut node = self.rng.random_range(0..24u32);
        let mut pod_ip = format!("10.244.{}.{}", node, self.rng.random_range(2..250));
        let mut instance = format!("i-0{}", hex(&mut self.rng, 16));
        let mut ua = self.sdk_ua(id.kind, patch);
        let batch_hour = self.rng.random_range(0..5i64);
        let batch_len = self.rng.random_range(1..=2i64);
        let mut hour = from.div_euclid(HOUR_MS);
        let last_hour = to.div_euclid(HOUR_MS);
        while hour < last_hour {
            let t0 = hour * HOUR_MS;
            // Daily churn at midnight: restarts, rollouts, SDK upgrades, new endpoints.
            if hour.rem_euclid(24) == 0 {
                let rng = &mut self.rng;
                if rng.random_bool(0.3) {
                    node = rng.random_range(0..24);
                    pod_ip = format!("10.244.{}.{}", node, rng.random_range(2..250));
                    instance = format!("i-0{}", hex(rng, 16));
                    pod = format!("{}-{}-{}", id.name, hex(rng, 9), alnum(rng, 5));
                }
                if rng.random_bool(0.06) {
                    patch += 1;
                    ua = self.sdk_ua(id.kind, patch);
                }
                let rng = &mut self.rng;
                let p_new_endpoint = if id.kind == Kind::Agent { 0.08 } else { 0.02 };
                if rng.random_bool(p_new_endpoint) {
                    let pool: &[&str] = match id.kind {
                        Kind::K8sService => &K8S_ENDPOINTS,
                        Kind::Agent => &AGENT_ENDPOINTS,
                        Kind::CiKey => &CI_ENDPOINTS,
                        _ => &AWS_WORKLOAD_ENDPOINTS,
                    };
                    let e = pick(rng, pool).to_string();
                    if !id.endpoints.iter().any(|x| x.0 == e) {
                        id.endpoints.push((e, rng.random_range(0.5..4.0)));
                    }
                }
            }
            let n = match id.kind {
                Kind::CiKey => 0,
                Kind::BatchJob => {
                    let local = (hour + id.tz).rem_euclid(24);
                    if local >= batch_hour && local < batch_hour + batch_len {
                        poisson(&mut self.rng, id.rate)
                    } else {
                        0
                    }
                }
                Kind::PartnerKey | Kind::Dormant => {
                    let local = hour + id.tz;
                    let hod = local.rem_euclid(24);
                    if hour_of_week(local) < 120 && (8..18).contains(&hod) {
                        poisson(&mut self.rng, id.rate)
                    } else {
                        0
                    }
                }
                Kind::Agent => {
                    let local = (hour + id.tz).rem_euclid(24);
                    if (6..23).contains(&local) && self.rng.random_bool(0.35) {
                        poisson(&mut self.rng, id.rate * 4.0)
                    } else {
                        0
                    }
                }
                _ => poisson(&mut self.rng, id.rate * diurnal(hour, id.tz, 0.5)),
            };
            for _ in 0..n {
                let t = t0 + self.rng.random_range(0..HOUR_MS);
                let action = weighted(&mut self.rng, &id.endpoints);
                let rng = &mut self.rng;
                let (ip, vpce) = match id.kind {
                    Kind::K8sService => (pod_ip.clone(), None),
                    Kind::LambdaRole => (public_ip(rng, &LAMBDA_PREFIXES), None),
                    Kind::WorkloadRole | Kind::Ec2Role | Kind::BatchJob | Kind::Agent
                        if action.starts_with("s3.") && rng.random_bool(0.5) =>
                    {
                        (
                            format!(
                                "10.{}.{}.{}",
                                20 + node % 4,
                                rng.random_range(0..4),
                                rng.random_range(2..250)
                            ),
                            Some("vpce-0a1b2c3d4e5f60789".to_owned()),
                        )
                    }
                    _ => (pick(rng, &id.nat).clone(), None),
                };
                let bytes_out = (action.ends_with(":GetObject"))
                    .then(|| (rng.random::<f64>() * 2e5 + 1e3) as u64);
                let error = rng.random_bool(0.01).then_some(if id.kind.is_k8s() {
                    "404"
                } else {
                    "ResourceNotFoundException"
                });
                id.calls.push(Call {
                    t,
                    action,
                    ip,
                    ua: ua.clone(),
                    error,
                    bytes_out,
                    session: Some(if id.kind.is_k8s() {
                        pod.clone()
                    } else if id.kind == Kind::Ec2Role {
                        instance.clone()
                    } else {
                        format!("{}-{hour}", id.name)
                    }),
                    node: Some(format!("node-{node}")),
                    vpce,
                });
            }
            hour += 1;
        }
        if id.kind == Kind::CiKey {
            self.ci_jobs(id, from, to, &ua);
        }
    }

    fn ci_jobs(&mut self, id: &mut Ident, from: i64, to: i64, ua: &str) {
        let mut day = from.div_euclid(DAY_MS);
        while day * DAY_MS < to {
            let jobs = poisson(&mut self.rng, id.rate);
            for _ in 0..jobs {
                let rng = &mut self.rng;
                let local_hour = rng.random_range(8..19i64);
                let t0 =
                    day * DAY_MS + (local_hour - id.tz) * HOUR_MS + rng.random_range(0..HOUR_MS);
                if hour_of_week(t0.div_euclid(HOUR_MS) + id.tz) >= 120 && rng.random_bool(0.9) {
                    continue;
                }
                if t0 < from || t0 >= to {
                    continue;
                }
                let ip = public_ip(rng, &RUNNER_PREFIXES[..4]);
                let ncalls = rng.random_range(4..30);
                for k in 0..ncalls {
                    let rng = &mut self.rng;
                    let action = if k == 0 {
                        "sts.amazonaws.com:GetCallerIdentity".to_owned()
                    } else {
                        weighted(rng, &id.endpoints)
                    };
                    let t = t0 + k * rng.random_range(2_000..20_000);
                    id.calls.push(Call {
                        t,
                        action,
                        ip: ip.clone(),
                        ua: ua.to_owned(),
                        error: None,
                        bytes_out: None,
                        session: None,
                        node: None,
                        vpce: None,
                    });
                }
            }
            day += 1;
        }
    }

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
    fn inject(&mut self, kind: AttackKind, id: &mut Ident, n: usize) -> LabelAttack {
        let mut t = self.attack_time(id);
        let attacker_ip = public_ip(&mut self.rng, &ATTACKER_PREFIXES);
        let attacker_ua = pick(&mut self.rng, &ATTACKER_UAS).to_string();
        let usual_ip = id
            .nat
            .first()
            .cloned()
            .unwrap_or_else(|| "10.244.1.10".into());
        let usual_ua = id.calls.last().map(|c| c.ua.clone()).unwrap_or_default();
        let last_session = id.calls.last().and_then(|c| c.session.clone());
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

/// Files written by [`write_fleet`].
pub struct SimOutput {
    pub cloudtrail_events: usize,
    pub k8s_events: usize,
    pub labels: Labels,
}

/// Generates a fleet and renders it: CloudTrail records, Kubernetes audit events and labels.
pub fn generate(cfg: &SimConfig) -> (Vec<String>, Vec<String>, Labels) {
    let mut sim = Sim {
        rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        cfg: cfg.clone(),
        start: cfg.start_ms,
        end: cfg.start_ms + i64::from(cfg.days) * DAY_MS,
        nat: Vec::new(),
    };
    for _ in ACCOUNTS {
        let ips = (0..2)
            .map(|_| public_ip(&mut sim.rng, &[52, 34, 35]))
            .collect();
        sim.nat.push(ips);
    }
    let mut ids: Vec<Ident> = (0..cfg.identities).map(|i| sim.new_ident(i)).collect();
    // Every attack kind needs a victim of a fitting kind: make sure the fleet has a few of each.
    let needed = [
        Kind::K8sService,
        Kind::Ec2Role,
        Kind::WorkloadRole,
        Kind::BatchJob,
        Kind::Dormant,
        Kind::PartnerKey,
        Kind::CiKey,
    ];
    let per_kind = (cfg.identities / 60).max(2);
    for (j, k) in needed.iter().enumerate() {
        let have = ids.iter().filter(|i| i.kind == *k).count();
        for extra in have..per_kind * 2 {
            let idx = ids.len() + j * 1000 + extra;
            let mut id = sim.ident_of(*k, idx);
            id.first = if *k == Kind::Dormant {
                id.first
            } else {
                sim.start
            };
            id.last = if *k == Kind::Dormant {
                id.last
            } else {
                sim.end
            };
            ids.push(id);
        }
    }
    for id in &mut ids {
        sim.benign(id);
    }
    // Attacks: per kind, distinct victims of a fitting kind that live long enough.
    let mut attacks = Vec::new();
    let mut used = vec![false; ids.len()];
    let min_life = i64::from(cfg.warmup_days + 3) * DAY_MS;
    for kind in AttackKind::ALL {
        let mut victims: Vec<usize> = (0..ids.len())
            .filter(|&i| {
                !used[i]
                    && kind.fits(ids[i].kind)
                    && (ids[i].kind == Kind::Dormant
                        || (ids[i].first <= sim.start + DAY_MS
                            && ids[i].last - ids[i].first >= min_life))
            })
            .collect();
        for k in (1..victims.len()).rev() {
            let j = sim.rng.random_range(0..=k);
            victims.swap(k, j);
        }
        for &v in victims.iter().take(per_kind) {
            used[v] = true;
            let n = attacks.len() + 1;
            let label = sim.inject(kind, &mut ids[v], n);
            attacks.push(label);
        }
    }
    let mut ct = Vec::new();
    let mut k8s = Vec::new();
    let mut identities = Vec::new();
    for id in &ids {
        let (first, last) = id
            .calls
            .iter()
            .fold((i64::MAX, i64::MIN), |(a, b), c| (a.min(c.t), b.max(c.t)));
        if id.calls.is_empty() {
            continue;
        }
        identities.push(LabelIdentity {
            key: id.key.clone(),
            kind: id.kind.name().into(),
            first_seen: first,
            last_seen: last,
        });
        let mut calls = id.calls.clone();
        calls.sort_by_key(|c| c.t);
        for c in &calls {
            if id.kind.is_k8s() {
                k8s.push(render_k8s(&mut sim.rng, id, c).to_string());
            } else {
                ct.push(render_cloudtrail(&mut sim.rng, id, c).to_string());
            }
        }
    }
    let labels = Labels {
        schema: "driftwatch.labels.v1".into(),
        start: sim.start,
        end: sim.end,
        warmup_days: f64::from(cfg.warmup_days),
        seed: Some(cfg.seed),
        identities,
        attacks,
    };
    (ct, k8s, labels)
}

/// Generates a fleet into `dir`: `cloudtrail.jsonl`, `k8s-audit.jsonl`, `labels.json`.
///
/// # Errors
/// I/O errors creating or writing the files.
pub fn write_fleet(cfg: &SimConfig, dir: &Path) -> std::io::Result<SimOutput> {
    std::fs::create_dir_all(dir)?;
    let (ct, k8s, labels) = generate(cfg);
    let write = |name: &str, lines: &[String]| -> std::io::Result<()> {
        let mut w = BufWriter::new(File::create(dir.join(name))?);
        for l in lines {
            w.write_all(l.as_bytes())?;
            w.write_all(b"\n")?;
        }
        w.flush()
    };
    write("cloudtrail.jsonl", &ct)?;
    write("k8s-audit.jsonl", &k8s)?;
    std::fs::write(
        dir.join("labels.json"),
        serde_json::to_string_pretty(&labels).map_err(std::io::Error::other)?,
    )?;
    Ok(SimOutput {
        cloudtrail_events: ct.len(),
        k8s_events: k8s.len(),
        labels,
    })
}

fn render_cloudtrail(rng: &mut ChaCha8Rng, id: &Ident, c: &Call) -> Value {
    let (source, name) = c
        .action
        .split_once(':')
        .unwrap_or(("unknown.amazonaws.com", "Unknown"));
    let user_identity = if id.kind.is_user() {
        json!({"type": "IAMUser", "principalId": format!("AIDA{}", &id.access_key[4..]), "arn": id.key, "accountId": id.account,
               "accessKeyId": id.access_key, "userName": id.key.rsplit('/').next()})
    } else {
        let role = id.key.rsplit('/').next().unwrap_or_default();
        let session = c.session.clone().unwrap_or_else(|| "session".into());
        let mut ctx = json!({"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE", "arn": id.key, "accountId": id.account, "userName": role},
                             "attributes": {"creationDate": format_rfc3339_ms(c.t - 600_000), "mfaAuthenticated": "false"}});
        if id.kind == Kind::Ec2Role {
            ctx["ec2RoleDelivery"] = json!("2.0");
        }
        json!({"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:{session}"),
               "arn": format!("arn:aws:sts::{}:assumed-role/{}/{}", id.account, role, session), "accountId": id.account,
               "accessKeyId": format!("ASIA{}", hex(rng, 16).to_uppercase()), "sessionContext": ctx})
    };
    let mut r = json!({
        "eventVersion": "1.09",
        "userIdentity": user_identity,
        "eventTime": chrono::DateTime::from_timestamp_millis(c.t).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        "eventSource": source,
        "eventName": name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": c.ip,
        "userAgent": c.ua,
        "requestParameters": null,
        "responseElements": null,
        "requestID": uuid(rng),
        "eventID": uuid(rng),
        "readOnly": name.starts_with("Get") || name.starts_with("List") || name.starts_with("Describe"),
        "eventType": "AwsApiCall",
        "managementEvent": !source.starts_with("s3."),
        "recipientAccountId": id.account,
        "eventCategory": if source.starts_with("s3.") { "Data" } else { "Management" },
    });
    if let Some(e) = c.error {
        r["errorCode"] = json!(e);
        r["errorMessage"] = json!(format!("User is not authorized to perform: {}", c.action));
    }
    if source.starts_with("s3.") {
        r["requestParameters"] = json!({"bucketName": format!("{}-data", id.name), "key": format!("part-{}.parquet", rng.random_range(0..5000))});
    }
    if let Some(b) = c.bytes_out {
        r["additionalEventData"] = json!({"bytesTransferredIn": 0, "bytesTransferredOut": b});
    }
    if let Some(v) = &c.vpce {
        r["vpcEndpointId"] = json!(v);
    }
    r
}

fn render_k8s(rng: &mut ChaCha8Rng, id: &Ident, c: &Call) -> Value {
    let (verb, res) = c.action.split_once(':').unwrap_or(("get", "pods"));
    let (resource, sub) = match res.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (res, None),
    };
    let code = match c.error {
        Some(e) => e.parse::<u16>().unwrap_or(403),
        None if verb == "create" => 201,
        None => 200,
    };
    let ts = format_rfc3339_ms(c.t);
    let mut obj = json!({"resource": resource, "namespace": id.namespace, "apiVersion": "v1"});
    if let Some(s) = sub {
        obj["subresource"] = json!(s);
    }
    if verb == "get" || verb == "update" || verb == "patch" {
        obj["name"] = json!(format!(
            "{}-{}",
            resource.trim_end_matches('s'),
            rng.random_range(0..5)
        ));
    }
    json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": uuid(rng),
        "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/{}/{}", id.namespace, resource),
        "verb": verb,
        "user": {
            "username": id.key,
            "uid": "3b9c1b4e-0000-4000-8000-000000000000",
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", id.namespace), "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/pod-name": [c.session.clone().unwrap_or_default()],
                "authentication.kubernetes.io/node-name": [c.node.clone().unwrap_or_else(|| "node-1".into())],
                "authentication.kubernetes.io/credential-id": [format!("JTI={}", uuid(rng))],
            }
        },
        "sourceIPs": [c.ip],
        "userAgent": c.ua,
        "objectRef": obj,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": ts,
        "stageTimestamp": ts,
        "annotations": {"authorization.k8s.io/decision": if code == 403 { "forbid" } else { "allow" }, "authorization.k8s.io/reason": ""},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_fleet() {
        let cfg = SimConfig {
            identities: 20,
            days: 10,
            ..SimConfig::default()
        };
        let a = generate(&cfg);
        let b = generate(&cfg);
        assert_eq!(a.0, b.0);
        assert_eq!(a.1, b.1);
        assert!(!a.2.attacks.is_empty());
    }

    #[test]
    fn every_attack_kind_is_injected() {
        let (_, _, labels) = generate(&SimConfig {
            identities: 60,
            days: 14,
            ..SimConfig::default()
        });
        for kind in AttackKind::ALL {
            assert!(
                labels.attacks.iter().any(|a| a.kind == kind.as_str()),
                "{} missing",
                kind.as_str()
            );
        }
    }
}
