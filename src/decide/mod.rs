//! decide: turns findings into nothing, an alert, or an alert and a revocation command.
//!
//! Findings add their bits to the identity's evidence, which decays on event time; the risk score
//! is `100 * (1 - exp(-evidence / scale))`. At or above `alert_min_score` an alert is raised, or
//! the open alert with the same cause is updated (an update is emitted only when it escalates:
//! higher severity, a new detector, or a command becoming due). At or above `command_min_score`
//! a revocation command is issued once per alert, subject to fleet-wide guardrails.

mod guard;
pub mod lifecycle;

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

pub use guard::{Budget, Guardrails};

use crate::config::Rules;
use crate::config::model::CommandMode;
use crate::detect::{Detector, Finding};
use crate::event::{AccessEvent, PrincipalType, Workload};

/// How urgent an alert is, from its risk score; the values are OCSF `severity_id`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Medium = 3,
    High = 4,
    Critical = 5,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Medium, Severity::High, Severity::Critical];

    /// The OCSF `severity_id`.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The OCSF severity name, also used in metric labels and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// The severity of an OCSF `severity_id`, if it is one of these.
    pub fn from_id(id: u8) -> Option<Severity> {
        Severity::ALL.iter().copied().find(|s| s.id() == id)
    }

    /// Position in [`Severity::ALL`], for per-severity counters.
    pub fn index(self) -> usize {
        self as usize - Severity::Medium as usize
    }

    /// The severity band a risk score falls in.
    pub fn of_score(score: u8, r: &Rules) -> Severity {
        let s = &r.model.scoring;
        if score >= s.critical_min_score {
            Severity::Critical
        } else if score >= s.high_min_score {
            Severity::High
        } else {
            Severity::Medium
        }
    }
}

/// Risk state of one identity, kept beside its profile.
#[derive(Debug, Clone, Default)]
pub struct RiskState {
    pub evidence: f64,
    pub at_ms: i64,
    /// Findings still contributing to the evidence, oldest first (bounded).
    pub recent: Vec<Finding>,
    pub open: Vec<OpenAlert>,
}

const MAX_RECENT: usize = 12;

impl RiskState {
    /// Bytes this state holds on the heap: the findings still in evidence (with their
    /// explanations) and the open alerts.
    pub fn heap_bytes(&self) -> usize {
        use crate::baseline::alloc_bytes;
        let s = |s: &String| alloc_bytes(s.capacity());
        let findings: usize = self
            .recent
            .iter()
            .map(|f| {
                s(&f.summary)
                    + f.baseline.heap_bytes()
                    + f.observed.heap_bytes()
                    + f.event_id.as_ref().map_or(0, s)
            })
            .sum();
        let open: usize = self
            .open
            .iter()
            .map(|o| {
                s(&o.uid)
                    + o.command_id.as_ref().map_or(0, s)
                    + o.command_withheld.as_ref().map_or(0, s)
            })
            .sum();
        alloc_bytes(self.recent.capacity() * std::mem::size_of::<Finding>())
            + alloc_bytes(self.open.capacity() * std::mem::size_of::<OpenAlert>())
            + findings
            + open
    }
}

/// An alert that later findings with the same cause update instead of duplicating.
#[derive(Debug, Clone)]
pub struct OpenAlert {
    pub uid: String,
    pub cause: Detector,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub count: u32,
    pub score: u8,
    pub severity: Severity,
    pub types: u16,
    pub command_id: Option<String>,
    /// Why the guardrails withheld this alert's command; it is not asked for again.
    pub command_withheld: Option<String>,
}

/// Whether an alert message opens a finding, updates it, or closes it (OCSF activity_id 1, 2,
/// 3): a finding closes when its identity has gone `suppression_window_hours` of event time
/// without another finding for it, noticed at the identity's next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Create,
    Update,
    Close,
}

impl Activity {
    /// Lower-case name, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Create => "create",
            Activity::Update => "update",
            Activity::Close => "close",
        }
    }
}

/// An alert as decided; `emit` renders it as an OCSF Detection Finding.
#[derive(Debug, Clone)]
pub struct Alert {
    pub uid: String,
    pub activity: Activity,
    pub time_ms: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub count: u32,
    pub risk_score: u8,
    pub severity: Severity,
    pub cause: Detector,
    pub types: Vec<Detector>,
    pub findings: Vec<Finding>,
    pub maturity: f64,
    pub mature: bool,
    pub identity_events: u64,
    pub identity_first_seen_ms: i64,
    /// Declared owner (identity inventory), if any.
    pub owner: Option<String>,
    pub event: AccessEvent,
    pub command_id: Option<String>,
    pub command_withheld: Option<String>,
}

/// A revocation command for a SOAR consumer. Its issue and expiry times are stamped when it is
/// emitted (wall clock, [`crate::emit::render`]): a command is valid for `ttl_ms` from when a
/// consumer can first see it, however late the records behind it arrived.
#[derive(Debug, Clone)]
pub struct Command {
    pub command_id: String,
    pub idempotency_key: String,
    /// Event time of the record that triggered it.
    pub event_time_ms: i64,
    pub ttl_ms: i64,
    pub mode: CommandMode,
    pub severity: Severity,
    /// Declared owner (identity inventory), if any.
    pub owner: Option<String>,
    /// Whether a playbook may act without a person's approval: only in `enforce` mode, for an
    /// identity the inventory marks `auto_approve`.
    pub auto_approved: bool,
    /// The session the triggering record used (AWS role session ARN), if any.
    pub session: Option<String>,
    /// That session's caller id (`aws:userid`, `AROA…:SESSION`) and issue time, when the
    /// record carried them.
    pub session_user_id: Option<String>,
    pub session_issued_ms: Option<i64>,
    /// The workload the credential is bound to (cluster, namespace, node, pod, instance).
    pub workload: Workload,
    pub action: &'static str,
    pub provider: &'static str,
    pub tenant: Option<String>,
    pub identity_key: String,
    pub identity_type: PrincipalType,
    pub credential_id: Option<String>,
    pub credential_type: Option<&'static str>,
    pub finding_uid: String,
    pub risk_score: u8,
    pub summary: String,
    pub evidence: Vec<EvidenceRef>,
    /// The lifecycle step of a governance command ([`lifecycle`]); `None` for a revocation.
    pub lifecycle: Option<lifecycle::LifecycleStep>,
}

/// Where the records behind a command can be found.
#[derive(Debug, Clone)]
pub struct EvidenceRef {
    pub event_id: Option<String>,
    pub time_ms: i64,
    pub detector: Detector,
}

/// What one event led to.
#[derive(Debug, Clone)]
pub enum Decision {
    Alert(Box<Alert>),
    Command(Box<Command>),
}

impl Decision {
    /// A governance command of the dormancy lifecycle (not about the event at hand).
    pub fn is_governance(&self) -> bool {
        matches!(self, Decision::Command(c) if c.lifecycle.is_some())
    }
}

/// Context about the identity that decisions report.
pub struct IdentityContext {
    pub maturity: f64,
    pub mature: bool,
    pub events: u64,
    pub first_seen_ms: i64,
    /// Identities in the whole group (this instance's and what the others report).
    pub fleet_size: usize,
    /// The input partition that owns the identity (for the guardrails' per-partition reports).
    pub owner: u32,
}

/// Counters the caller may report (merged updates that were not emitted, withheld commands).
#[derive(Debug, Clone, Copy, Default)]
pub struct DecideStats {
    pub merged: u64,
    pub withheld: u64,
}

pub fn risk_score(evidence: f64, scale: f64) -> u8 {
    (100.0 * (1.0 - (-evidence / scale).exp()))
        .round()
        .clamp(0.0, 100.0) as u8
}

/// Hex of the first `n` bytes of SHA-256 over `parts` joined by NUL.
pub fn stable_id(parts: &[&str], n: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    d[..n].iter().map(|b| format!("{b:02x}")).collect()
}

/// Formats 16 bytes of a stable hash as a UUID (version 8, "custom"), deterministic per input.
pub fn stable_uuid(parts: &[&str]) -> String {
    let h = stable_id(parts, 16);
    let mut b: Vec<char> = h.chars().collect();
    b[12] = '8';
    b[16] = ['8', '9', 'a', 'b'][usize::from(b[16].to_digit(16).unwrap_or(0) as u8 & 3)];
    let s: String = b.into_iter().collect();
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

/// The revocation action for an identity and the credential it used: one that exists for that
/// kind of principal, or `notify_owner` when none does (root, humans, nodes, AWS services,
/// federated users, a principal whose credential the record does not show).
pub fn revocation_action(ev: &AccessEvent) -> &'static str {
    let credential = ev.credential.as_ref().map(|c| c.kind);
    match (ev.principal_type, credential) {
        // Every session of the role issued before the command: a deny policy on
        // aws:TokenIssueTime, as the console's "Revoke active sessions" does.
        (PrincipalType::AwsRole, _) => "revoke_role_sessions",
        (PrincipalType::AwsUser, Some("aws_access_key")) => "disable_access_key",
        // Temporary credentials of a user (GetSessionToken): a deny policy on the user.
        (PrincipalType::AwsUser, Some("aws_session_key")) => "revoke_user_sessions",
        (PrincipalType::K8sServiceAccount, _) => "revoke_service_account_tokens",
        (PrincipalType::GcpServiceAccount, Some("gcp_service_account_key")) => {
            "disable_service_account_key"
        }
        (PrincipalType::GcpServiceAccount, _) => "disable_service_account",
        (PrincipalType::Other, Some(_)) => "disable_credential",
        (
            PrincipalType::AwsUser
            | PrincipalType::AwsRoot
            | PrincipalType::AwsService
            | PrincipalType::AwsOther
            | PrincipalType::K8sNode
            | PrincipalType::K8sUser
            | PrincipalType::GcpUser
            | PrincipalType::Other,
            _,
        ) => "notify_owner",
    }
}

fn detectors_of(mask: u16) -> Vec<Detector> {
    Detector::ALL
        .iter()
        .copied()
        .filter(|d| mask & d.bit() != 0)
        .collect()
}

/// The message about open alert `o`, sent as `activity` at `time_ms` with `cause` and the
/// findings in evidence; `ev` is the identity's event that led to it.
#[allow(clippy::too_many_arguments)]
fn alert_of(
    o: &OpenAlert,
    activity: Activity,
    time_ms: i64,
    cause: Detector,
    findings: Vec<Finding>,
    ev: &AccessEvent,
    ctx: &IdentityContext,
    r: &Rules,
) -> Alert {
    Alert {
        uid: o.uid.clone(),
        activity,
        time_ms,
        first_seen_ms: o.first_seen_ms,
        last_seen_ms: o.last_seen_ms,
        count: o.count,
        risk_score: o.score,
        severity: o.severity,
        cause,
        types: detectors_of(o.types),
        findings,
        maturity: ctx.maturity,
        mature: ctx.mature,
        identity_events: ctx.events,
        identity_first_seen_ms: ctx.first_seen_ms,
        owner: r.inventory.get(&ev.principal).and_then(|m| m.owner.clone()),
        event: ev.clone(),
        command_id: o.command_id.clone(),
        command_withheld: o.command_withheld.clone(),
    }
}

/// The message closing open alert `o`, which expired `window_ms` after it was last seen; `ev`
/// (the identity's event that found it expired) lends only what belongs to the identity.
fn closed(
    o: &OpenAlert,
    window_ms: i64,
    ev: &AccessEvent,
    ctx: &IdentityContext,
    r: &Rules,
) -> Alert {
    let expired_at = o.last_seen_ms.saturating_add(window_ms);
    alert_of(
        o,
        Activity::Close,
        expired_at,
        o.cause,
        Vec::new(),
        ev,
        ctx,
        r,
    )
}

/// Adds `findings` to the identity's risk and decides what to emit: messages closing the
/// identity's expired alerts first, then an alert (and a command) if the findings call for one.
pub fn decide(
    risk: &mut RiskState,
    findings: Vec<Finding>,
    ev: &AccessEvent,
    ctx: &IdentityContext,
    r: &Rules,
    guard: &Guardrails,
    stats: &mut DecideStats,
) -> Vec<Decision> {
    let s = &r.model.scoring;
    let half_life_ms = s.evidence_half_life_minutes * 60_000.0;
    let elapsed = (ev.time_ms - risk.at_ms).max(0) as f64;
    risk.evidence *= crate::baseline::stats::decay(elapsed, half_life_ms);
    risk.at_ms = risk.at_ms.max(ev.time_ms);
    // Findings older than four half-lives contribute under 7% and leave the explanation.
    let horizon = ev.time_ms - (4.0 * half_life_ms) as i64;
    risk.recent.retain(|f| f.time_ms >= horizon);
    let window_ms = s.suppression_window_hours * 3_600_000.0;
    let mut out = Vec::new();
    risk.open.retain(|o| {
        let open = (ev.time_ms - o.last_seen_ms) as f64 <= window_ms;
        if !open {
            out.push(Decision::Alert(Box::new(closed(
                o,
                window_ms as i64,
                ev,
                ctx,
                r,
            ))));
        }
        open
    });
    // Quiet again: give the room back (a findings list holds ~2 KB at its cap, and most
    // identities are quiet most of the time).
    if risk.recent.is_empty() && risk.recent.capacity() > 0 {
        risk.recent = Vec::new();
    }
    if risk.open.is_empty() && risk.open.capacity() > 0 {
        risk.open = Vec::new();
    }
    if findings.is_empty() {
        return out;
    }
    // A trace of surprise (a CI runner's new address, say) must not re-raise an alert on the
    // strength of evidence that earlier findings left behind.
    let event_bits: f64 = findings.iter().map(|f| f.bits).sum();
    for f in findings {
        risk.evidence += f.bits;
        if risk.recent.len() == MAX_RECENT {
            // Keep the strongest evidence, not merely the latest.
            let weakest = risk
                .recent
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.bits.total_cmp(&b.1.bits))
                .map(|(i, _)| i)
                .unwrap_or(0);
            risk.recent.remove(weakest);
        }
        if risk.recent.len() == risk.recent.capacity() {
            // Doubling, but never past the cap.
            let want = (risk.recent.len() * 2).clamp(1, MAX_RECENT);
            risk.recent.reserve_exact(want - risk.recent.len());
        }
        risk.recent.push(f);
    }
    let score = risk_score(risk.evidence, s.evidence_scale_bits);
    if score < s.alert_min_score || event_bits < s.min_event_bits {
        return out;
    }
    let cause = risk
        .recent
        .iter()
        .max_by(|a, b| a.bits.total_cmp(&b.bits))
        .map(|f| f.detector)
        .expect("findings were just added");
    let types_mask = risk.recent.iter().fold(0u16, |m, f| m | f.detector.bit());
    let sev = Severity::of_score(score, r);
    let want_command = score >= s.command_min_score;

    // The same cause: an open alert raised for it, one it already contributed to, or one still
    // hot (seen within the evidence horizon): findings minutes apart are one incident.
    let open = risk
        .open
        .iter()
        .position(|o| o.cause == cause)
        .or_else(|| risk.open.iter().position(|o| o.types & cause.bit() != 0))
        .or_else(|| risk.open.iter().position(|o| o.last_seen_ms >= horizon));
    let (idx, activity) = match open {
        Some(i) => {
            let o = &mut risk.open[i];
            o.count += 1;
            o.last_seen_ms = o.last_seen_ms.max(ev.time_ms);
            let escalates = sev > o.severity
                || (types_mask & !o.types) != 0
                || (want_command && o.command_id.is_none() && o.command_withheld.is_none());
            o.score = o.score.max(score);
            o.severity = o.severity.max(sev);
            o.types |= types_mask;
            if !escalates {
                stats.merged += 1;
                return out;
            }
            (i, Activity::Update)
        }
        None => {
            let uid = stable_uuid(&[
                &ev.principal,
                cause.as_str(),
                &ev.time_ms.to_string(),
                ev.event_id.as_deref().unwrap_or(""),
            ]);
            risk.open.push(OpenAlert {
                uid,
                cause,
                first_seen_ms: risk
                    .recent
                    .iter()
                    .map(|f| f.time_ms)
                    .min()
                    .unwrap_or(ev.time_ms),
                last_seen_ms: ev.time_ms,
                count: 1,
                score,
                severity: sev,
                types: types_mask,
                command_id: None,
                command_withheld: None,
            });
            (risk.open.len() - 1, Activity::Create)
        }
    };

    let mut command = None;
    if want_command
        && risk.open[idx].command_id.is_none()
        && risk.open[idx].command_withheld.is_none()
    {
        match guard.admit(&ev.principal, ctx.owner, ev.time_ms, ctx.fleet_size, r) {
            Ok(()) => {
                let c = build_command(&risk.open[idx], &risk.recent, ev, r, score);
                risk.open[idx].command_id = Some(c.command_id.clone());
                command = Some(c);
            }
            Err(why) => {
                stats.withheld += 1;
                risk.open[idx].command_withheld = Some(why);
            }
        }
    }
    let alert = alert_of(
        &risk.open[idx],
        activity,
        ev.time_ms,
        cause,
        risk.recent.clone(),
        ev,
        ctx,
        r,
    );
    out.push(Decision::Alert(Box::new(alert)));
    if let Some(c) = command {
        out.push(Decision::Command(Box::new(c)));
    }
    out
}

fn build_command(
    o: &OpenAlert,
    recent: &[Finding],
    ev: &AccessEvent,
    r: &Rules,
    score: u8,
) -> Command {
    let c = &r.model.commands;
    let action = revocation_action(ev);
    let provider = ev.provider();
    let tenant = ev.tenant.clone();
    let cred = ev.credential.as_ref();
    let cred_id = cred.map(|c| c.id.as_str()).unwrap_or("");
    // The effect, not the message: the same credential revoked the same way is one operation,
    // whichever alert asked for it and however often a replay repeats it.
    let idempotency_key = stable_id(
        &[
            provider,
            tenant.as_deref().unwrap_or(""),
            &ev.principal,
            cred_id,
            action,
        ],
        16,
    );
    let command_id = stable_uuid(&[&idempotency_key, &o.uid]);
    let mut detectors: BTreeSet<Detector> = BTreeSet::new();
    let evidence: Vec<EvidenceRef> = recent
        .iter()
        .map(|f| {
            detectors.insert(f.detector);
            EvidenceRef {
                event_id: f.event_id.clone(),
                time_ms: f.time_ms,
                detector: f.detector,
            }
        })
        .collect();
    let top = recent
        .iter()
        .max_by(|a, b| a.bits.total_cmp(&b.bits))
        .map(|f| f.summary.clone())
        .unwrap_or_default();
    let meta = r.inventory.get(&ev.principal);
    let meta = meta.as_deref();
    Command {
        command_id,
        idempotency_key,
        event_time_ms: ev.time_ms,
        ttl_ms: (c.ttl_minutes * 60_000.0) as i64,
        mode: c.mode,
        severity: Severity::of_score(score, r),
        owner: meta.and_then(|m| m.owner.clone()),
        auto_approved: c.mode == CommandMode::Enforce && meta.is_some_and(|m| m.auto_approve),
        session: ev.session_id.clone(),
        session_user_id: cred.and_then(|c| c.session_user_id.clone()),
        session_issued_ms: cred.and_then(|c| c.issued_ms),
        workload: ev.origin.workload.clone(),
        action,
        provider,
        tenant,
        identity_key: ev.principal.clone(),
        identity_type: ev.principal_type,
        credential_id: cred.map(|c| c.id.clone()),
        credential_type: cred.map(|c| c.kind),
        finding_uid: o.uid.clone(),
        risk_score: score,
        summary: format!(
            "risk {score}: {} ({})",
            top,
            detectors
                .iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        evidence,
        lifecycle: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_alert_closes_at_its_identitys_first_event_after_the_suppression_window() {
        use crate::detect::{Evidence, Finding};
        let r = Rules::new(crate::config::Model::embedded());
        let window_ms = (r.model.scoring.suppression_window_hours * 3_600_000.0) as i64;
        let guard = Guardrails::new();
        let ctx = IdentityContext {
            maturity: 1.0,
            mature: true,
            events: 1_000,
            first_seen_ms: 0,
            fleet_size: 100,
            owner: 0,
        };
        let mut ev = crate::decode::decode_one(
            br#"{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/u","accountId":"111122223333"},"eventTime":"2026-01-05T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","sourceIPAddress":"198.51.100.7","eventID":"e1"}"#,
            crate::decode::FormatHint::Auto,
            crate::event::RawRef::default(),
        )
        .map(|d| match d {
            crate::decode::Decoded::Event(e) => *e,
            other => panic!("{other:?}"),
        })
        .unwrap();
        let t0 = ev.time_ms;
        let finding = |t: i64| Finding {
            detector: Detector::NewEndpoint,
            bits: 40.0,
            probability: 1e-12,
            summary: "new endpoint".into(),
            baseline: Evidence::new(&serde_json::json!({})),
            observed: Evidence::new(&serde_json::json!({})),
            time_ms: t,
            event_id: None,
        };
        let mut risk = RiskState::default();
        let mut stats = DecideStats::default();
        let mut at = |risk: &mut RiskState, t: i64, findings: Vec<Finding>| {
            ev.time_ms = t;
            decide(risk, findings, &ev, &ctx, &r, &guard, &mut stats)
                .into_iter()
                .filter_map(|d| match d {
                    Decision::Alert(a) => Some((a.activity, a.time_ms, a.uid.clone())),
                    Decision::Command(_) => None,
                })
                .collect::<Vec<_>>()
        };
        let opened = at(&mut risk, t0, vec![finding(t0)]);
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].0, Activity::Create);
        // Quiet events inside the window close nothing.
        assert!(at(&mut risk, t0 + window_ms, Vec::new()).is_empty());
        // The first event past it closes the alert, timed when the window ran out.
        let closed = at(&mut risk, t0 + window_ms + 1, Vec::new());
        assert_eq!(
            closed,
            [(Activity::Close, t0 + window_ms, opened[0].2.clone())]
        );
        assert!(risk.open.is_empty());
        assert!(
            at(&mut risk, t0 + 2 * window_ms, Vec::new()).is_empty(),
            "closed once"
        );
    }

    #[test]
    fn risk_score_is_monotone_and_bounded() {
        assert_eq!(risk_score(0.0, 20.0), 0);
        assert!(risk_score(20.0, 20.0) > risk_score(10.0, 20.0));
        assert_eq!(risk_score(1e9, 20.0), 100);
    }

    #[test]
    fn severity_bands_follow_the_model_and_order_by_urgency() {
        let r = Rules::new(crate::config::Model::embedded());
        let s = &r.model.scoring;
        assert_eq!(Severity::of_score(s.alert_min_score, &r), Severity::Medium);
        assert_eq!(Severity::of_score(s.high_min_score, &r), Severity::High);
        assert_eq!(Severity::of_score(100, &r), Severity::Critical);
        assert!(Severity::Critical > Severity::High && Severity::High > Severity::Medium);
        for (i, s) in Severity::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        assert_eq!(Severity::High.id(), 4);
    }

    #[test]
    fn stable_ids_are_deterministic_and_distinct() {
        assert_eq!(stable_uuid(&["a", "b"]), stable_uuid(&["a", "b"]));
        assert_ne!(stable_uuid(&["a", "b"]), stable_uuid(&["ab", ""]));
        let u = stable_uuid(&["x"]);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "8");
    }
}
