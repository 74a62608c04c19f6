//! The identity kinds of a simulated fleet and their ordinary traffic: daily and weekly
//! seasonality, pods rescheduled onto new addresses, sessions rotating, SDK upgrades, CI jobs from
//! new runners, new endpoints picked up now and then.

use rand::Rng;

use super::{
    ACCOUNTS, Call, DAY_MS, HOUR_MS, Ident, Kind, Sim, alnum, diurnal, hex, hour_of_week, pick,
    poisson, public_ip, weighted,
};

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

const RUNNER_PREFIXES: [u8; 6] = [20, 40, 52, 13, 4, 172];
const LAMBDA_PREFIXES: [u8; 3] = [3, 18, 54];

impl Sim {
    pub(super) fn new_ident(&mut self, i: usize) -> Ident {
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

    pub(super) fn ident_of(&mut self, kind: Kind, i: usize) -> Ident {
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
            Kind::BatchJob | Kind::ScheduledJob => vec![
                "s3.amazonaws.com:GetObject",
                "s3.amazonaws.com:PutObject",
                "s3.amazonaws.com:ListObjects",
                "glue.amazonaws.com:GetTable",
                "athena.amazonaws.com:StartQueryExecution",
            ],
            Kind::PartnerKey | Kind::Dormant | Kind::LongDormant => vec![
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
            Kind::BatchJob | Kind::ScheduledJob => rng.random_range(3..=5),
            Kind::PartnerKey | Kind::Dormant | Kind::LongDormant => rng.random_range(1..=3),
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
            Kind::Dormant | Kind::LongDormant => {
                format!("arn:aws:iam::{account}:user/legacy-{name}")
            }
            Kind::BatchJob => format!("arn:aws:iam::{account}:role/batch-{name}"),
            Kind::ScheduledJob => format!("arn:aws:iam::{account}:role/nightly-{name}"),
            Kind::Agent => format!("arn:aws:iam::{account}:role/agent-{name}"),
            _ => format!("arn:aws:iam::{account}:role/{name}"),
        };
        let rate = match kind {
            Kind::K8sService => rng.random_range(2.0..16.0),
            Kind::WorkloadRole | Kind::Ec2Role => rng.random_range(1.0..14.0),
            Kind::LambdaRole => rng.random_range(0.5..6.0),
            Kind::BatchJob => rng.random_range(80.0..300.0),
            Kind::PartnerKey | Kind::Dormant | Kind::LongDormant => rng.random_range(0.5..3.0),
            // Calls per run.
            Kind::ScheduledJob => rng.random_range(20.0..150.0),
            Kind::Agent => rng.random_range(1.0..8.0),
            Kind::CiKey => rng.random_range(2.0..8.0),
        };
        // About one identity in ten is created during the run, one in twenty retired.
        let span = self.end - self.start;
        let first = if kind == Kind::Dormant {
            self.start - rng.random_range(45..60) * DAY_MS
        } else if kind == Kind::LongDormant {
            self.start - rng.random_range(200..420) * DAY_MS
        } else if rng.random_bool(0.1) {
            self.start + rng.random_range(0..span.max(1))
        } else {
            self.start
        };
        let last = if kind.is_dormant() {
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
            nat: if kind == Kind::PartnerKey || kind.is_dormant() {
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
            Kind::PartnerKey | Kind::Dormant | Kind::LongDormant => format!(
                "Boto3/1.28.{} Python/3.9.18 Linux/5.4.0 Botocore/1.31.{}",
                patch, patch
            ),
            _ => format!("aws-sdk-go/1.50.{} (go1.21.6; linux; amd64)", patch),
        }
    }

    /// Benign traffic of one identity over its lifetime within the window.
    pub(super) fn benign(&mut self, id: &mut Ident) {
        let from = if id.kind.is_dormant() {
            id.first
        } else {
            id.first.max(self.start - 60 * DAY_MS)
        };
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
                Kind::CiKey | Kind::ScheduledJob => 0,
                Kind::BatchJob => {
                    let local = (hour + id.tz).rem_euclid(24);
                    if local >= batch_hour && local < batch_hour + batch_len {
                        poisson(&mut self.rng, id.rate)
                    } else {
                        0
                    }
                }
                Kind::PartnerKey | Kind::Dormant | Kind::LongDormant => {
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
        if id.kind == Kind::ScheduledJob {
            self.nightly_runs(id, from, to, &ua);
        }
    }

    /// A job started by a scheduler at the same minute every night (give or take the
    /// scheduler's few minutes), running about as long each time, under a new session each
    /// night, from the account's NAT.
    fn nightly_runs(&mut self, id: &mut Ident, from: i64, to: i64, ua: &str) {
        let rng = &mut self.rng;
        let start_minute = rng.random_range(0..5 * 60i64);
        let length = rng.random_range(15..45i64) * 60_000;
        let mut day = from.div_euclid(DAY_MS);
        while day * DAY_MS < to {
            let rng = &mut self.rng;
            let t0 = day * DAY_MS - id.tz * HOUR_MS
                + (start_minute + rng.random_range(-3..=3i64)) * 60_000;
            // One night in thirty the job does not run (a holiday, a skipped schedule).
            if t0 >= from && t0 < to && !rng.random_bool(1.0 / 30.0) {
                let run = (length as f64 * rng.random_range(0.85..1.15)) as i64;
                let n = poisson(rng, id.rate);
                let session = format!("{}-{day}", id.name);
                let ip = pick(rng, &id.nat).clone();
                for _ in 0..n {
                    let rng = &mut self.rng;
                    let action = weighted(rng, &id.endpoints);
                    let bytes_out = action
                        .ends_with(":GetObject")
                        .then(|| (rng.random::<f64>() * 2e5 + 1e3) as u64);
                    id.calls.push(Call {
                        t: t0 + rng.random_range(0..run),
                        action,
                        ip: ip.clone(),
                        ua: ua.to_owned(),
                        error: None,
                        bytes_out,
                        session: Some(session.clone()),
                        node: None,
                        vpce: None,
                    });
                }
            }
            day += 1;
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
}
