//! A simulated fleet of machine identities with legitimate churn and injected, labelled attacks.
//!
//! The fleet mixes Kubernetes service accounts (pods restart onto new IPs, deployments roll out
//! new pod names and occasionally a new endpoint), AWS workload roles (sessions rotate hourly,
//! calls leave through shared NAT gateways, SDKs get patch upgrades, some run on EC2 with
//! instance-bound credentials, some as lambdas from ever-changing addresses), CI keys (jobs on
//! weekdays from a new runner address each time), nightly batch jobs, partner keys (a few fixed
//! addresses, business hours in the partner's time zone), AI agents (bursty, and they pick up
//! new tools), strictly scheduled nightly jobs (the same start minute every night, a new session
//! each run) and keys last used more than half a year before the window. Some identities are
//! created mid-run (among them instances booted after the warm-up) and some stop. Daily and
//! weekly seasonality apply throughout.
//!
//! Attacks of every kind the engine is meant to catch are injected after the warm-up and
//! written to `labels.json` (`schemas/labels.v1.json`), so [`super::evaluate`] can score a replay.
//! Output is deterministic for a seed.
//!
//! The identity kinds and their ordinary traffic are in [`fleet`], the attacks in [`attacks`],
//! the rendering of calls as CloudTrail records and Kubernetes audit events in [`render`]; the
//! types they share and the random helpers are here.

mod attacks;
mod fleet;
mod render;

use render::{render_cloudtrail, render_k8s};

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use attacks::AttackKind;

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
    /// A nightly job that starts at the same minute every night and runs for the same length,
    /// with a new session each night.
    ScheduledJob,
    /// A key last used more than half a year before the window.
    LongDormant,
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
            Kind::ScheduledJob => "scheduled_job",
            Kind::LongDormant => "long_dormant_key",
        }
    }
    fn is_k8s(self) -> bool {
        self == Kind::K8sService
    }
    fn is_user(self) -> bool {
        matches!(
            self,
            Kind::CiKey | Kind::PartnerKey | Kind::Dormant | Kind::LongDormant
        )
    }
    fn is_dormant(self) -> bool {
        matches!(self, Kind::Dormant | Kind::LongDormant)
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

struct Sim {
    rng: ChaCha8Rng,
    cfg: SimConfig,
    start: i64,
    end: i64,
    nat: Vec<Vec<String>>,
    /// Every partner key's addresses: the networks a slow partner replay comes from.
    partner_ips: Vec<String>,
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
        partner_ips: Vec::new(),
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
        Kind::ScheduledJob,
        Kind::LongDormant,
    ];
    let per_kind = (cfg.identities / 60).max(2);
    for (j, k) in needed.iter().enumerate() {
        let have = ids.iter().filter(|i| i.kind == *k).count();
        for extra in have..per_kind * 2 {
            let idx = ids.len() + j * 1000 + extra;
            let mut id = sim.ident_of(*k, idx);
            if !k.is_dormant() {
                (id.first, id.last) = (sim.start, sim.end);
            }
            ids.push(id);
        }
    }
    // Instances booted after the warm-up, whose credentials are stolen minutes after their
    // first call: the identity has no history at all then.
    let attacks_from = sim.start + i64::from(cfg.warmup_days) * DAY_MS;
    for extra in 0..per_kind {
        let mut id = sim.ident_of(Kind::Ec2Role, ids.len() + 10_000 + extra);
        let room = (sim.end - 2 * DAY_MS - attacks_from).max(1);
        id.first = attacks_from + sim.rng.random_range(0..room);
        id.last = sim.end;
        ids.push(id);
    }
    for id in &mut ids {
        sim.benign(id);
    }
    sim.partner_ips = ids
        .iter()
        .filter(|i| i.kind == Kind::PartnerKey)
        .flat_map(|i| i.nat.iter().cloned())
        .collect();
    // Attacks: per kind, distinct victims of a fitting kind that live long enough.
    let mut attacks = Vec::new();
    let mut used = vec![false; ids.len()];
    for kind in AttackKind::ALL {
        let mut victims: Vec<usize> = (0..ids.len())
            .filter(|&i| !used[i] && kind.can_strike(&ids[i], sim.start, attacks_from, sim.end))
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
                k8s.push((c.t, render_k8s(&mut sim.rng, id, c).to_string()));
            } else {
                ct.push((c.t, render_cloudtrail(&mut sim.rng, id, c).to_string()));
            }
        }
    }
    // Written in event-time order, as real trails and audit logs are (stable: same-time
    // records keep identity order).
    ct.sort_by_key(|(t, _)| *t);
    k8s.sort_by_key(|(t, _)| *t);
    let ct: Vec<String> = ct.into_iter().map(|(_, l)| l).collect();
    let k8s: Vec<String> = k8s.into_iter().map(|(_, l)| l).collect();
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
