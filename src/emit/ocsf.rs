//! Alerts as OCSF 1.1 Detection Findings (class_uid 2004).

use serde_json::{Map, Value, json};

use super::put;

use crate::decide::{Activity, Alert, Severity};
use crate::detect::Detector;
use crate::event::{AccessEvent, SourceFormat};

pub const OCSF_VERSION: &str = "1.1.0";

/// OCSF risk_level_id matching a severity: Medium 2, High 3, Critical 4.
fn risk_level(severity: Severity) -> (u8, &'static str) {
    match severity {
        Severity::Critical => (4, "Critical"),
        Severity::High => (3, "High"),
        Severity::Medium => (2, "Medium"),
    }
}

/// A MITRE ATT&CK technique: (technique id, technique name, tactic id, tactic name).
pub(crate) type Technique = (&'static str, &'static str, &'static str, &'static str);

const VALID_CLOUD_ACCOUNTS: Technique = (
    "T1078.004",
    "Valid Accounts: Cloud Accounts",
    "TA0001",
    "Initial Access",
);

/// The ATT&CK technique a detector's finding is evidence of, for the event's kind of source.
pub(crate) fn technique(d: Detector, format: SourceFormat) -> Technique {
    match d {
        Detector::OutsideWorkload if format == SourceFormat::K8sAudit => (
            "T1550.001",
            "Use Alternate Authentication Material: Application Access Token",
            "TA0008",
            "Lateral Movement",
        ),
        Detector::OutsideWorkload => (
            "T1552.005",
            "Unsecured Credentials: Cloud Instance Metadata API",
            "TA0006",
            "Credential Access",
        ),
        Detector::Enumeration => (
            "T1087.004",
            "Account Discovery: Cloud Account",
            "TA0007",
            "Discovery",
        ),
        Detector::DeniedBurst => (
            "T1580",
            "Cloud Infrastructure Discovery",
            "TA0007",
            "Discovery",
        ),
        Detector::VolumeSpike | Detector::BytesSpike => {
            ("T1530", "Data from Cloud Storage", "TA0009", "Collection")
        }
        Detector::NewEndpoint
        | Detector::NewOrigin
        | Detector::UnusualHour
        | Detector::Dormant
        | Detector::AfterExpiry
        | Detector::NoOwner
        | Detector::PastRotation
        | Detector::OutsideMaintenance => VALID_CLOUD_ACCOUNTS,
    }
}

/// The ATT&CK techniques of an alert's detectors, each once, in the order of `types`.
pub(crate) fn techniques(a: &Alert) -> Vec<Technique> {
    let mut out: Vec<Technique> = Vec::new();
    for d in &a.types {
        let t = technique(*d, a.event.format);
        if !out.iter().any(|o| o.0 == t.0) {
            out.push(t);
        }
    }
    out
}

/// A technique's page on attack.mitre.org.
pub(crate) fn technique_url(uid: &str) -> String {
    format!(
        "https://attack.mitre.org/techniques/{}/",
        uid.replace('.', "/")
    )
}

fn attacks(a: &Alert) -> Vec<Value> {
    techniques(a)
        .into_iter()
        .map(|(uid, name, tactic_uid, tactic)| {
            json!({
                "technique": {"uid": uid, "name": name, "src_url": technique_url(uid)},
                "tactic": {"uid": tactic_uid, "name": tactic},
                "version": ATTACK_VERSION,
            })
        })
        .collect()
}

/// The ATT&CK release the technique names are taken from.
pub(crate) const ATTACK_VERSION: &str = "v16";

/// The `cloud` object of an alert (OCSF and ECS alike but for the account id's name): the
/// provider, the account, and the region of the record (none for a Close, which is about no
/// record).
pub(crate) fn cloud(provider: &str, a: &Alert, account_id: &str) -> Value {
    let ev = &a.event;
    let mut cloud = Map::new();
    cloud.insert("provider".into(), json!(provider));
    put(
        &mut cloud,
        "account",
        ev.tenant.as_ref().map(|t| json!({ account_id: t })),
    );
    put(
        &mut cloud,
        "region",
        ev.region.as_ref().filter(|_| a.activity != Activity::Close),
    );
    Value::Object(cloud)
}

/// How the triggering call went, as alerts name it: `success` or `failure`.
pub(crate) fn outcome(ev: &AccessEvent) -> &'static str {
    if ev.outcome.success {
        "success"
    } else {
        "failure"
    }
}

/// OCSF `cloud.provider` for a source whose records name a cloud account.
fn cloud_provider(format: SourceFormat) -> Option<&'static str> {
    match format {
        SourceFormat::Cloudtrail => Some("AWS"),
        SourceFormat::GcpAudit => Some("GCP"),
        SourceFormat::K8sAudit | SourceFormat::Native => None,
    }
}

/// OCSF `api`: the operation, and the service where the source names one. An action key is
/// `service:operation` (CloudTrail's event source and name, GCP's service and method, the native
/// format's), except for Kubernetes, whose keys are `verb:resource`: the verb is the operation.
fn api(ev: &AccessEvent) -> Value {
    match (ev.format, ev.action.split_once(':')) {
        (SourceFormat::K8sAudit, Some((verb, _))) => json!({"operation": verb}),
        (_, Some((service, operation))) if !service.is_empty() && !operation.is_empty() => {
            json!({"operation": operation, "service": {"name": service}})
        }
        _ => json!({"operation": ev.action}),
    }
}

/// How sure the finding is: an identity still learning its baseline judges on little (Low);
/// a mature one at High or Critical severity is sure (High); otherwise Medium.
pub(crate) fn confidence(a: &Alert) -> (u8, &'static str) {
    match (a.mature, a.severity) {
        (false, _) => (1, "Low"),
        (true, Severity::High | Severity::Critical) => (3, "High"),
        (true, Severity::Medium) => (2, "Medium"),
    }
}

/// An alert's one-line title: whose behaviour drifted, and how.
pub(crate) fn title(a: &Alert) -> String {
    format!(
        "Behaviour drift of {}: {}",
        a.event.principal,
        a.cause.as_str().replace('_', " ")
    )
}

/// What the alert's findings say, or for a Close, why it closed.
pub(crate) fn description(a: &Alert) -> String {
    if a.activity == Activity::Close {
        format!(
            "No finding on this identity for {} hours after the last one: closed.",
            (a.time_ms - a.last_seen_ms) / 3_600_000
        )
    } else {
        a.findings
            .iter()
            .map(|f| f.summary.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The OCSF 1.1.0 Detection Finding of an alert, emitted at `now_ms` (wall clock:
/// `finding_info.modified_time`, and `created_time` when it opens the finding; every other time
/// is event time). Attributes the alert has no value for are left out (never null); a source
/// that names a cloud account declares the `cloud` profile and carries `cloud`. A Close says
/// which finding ended and when, with the identity but no record: no evidences, no record's
/// address, region or position. Valid against the official schema (`schemas/ocsf-1.1.0/`).
pub fn detection_finding(a: &Alert, now_ms: i64) -> Value {
    let (activity_id, activity_name) = match a.activity {
        Activity::Create => (1, "Create"),
        Activity::Update => (2, "Update"),
        Activity::Close => (3, "Close"),
    };
    let closing = a.activity == Activity::Close;
    let ev = &a.event;
    let top = a.findings.iter().max_by(|x, y| x.bits.total_cmp(&y.bits));
    let title = title(a);
    let desc = description(a);
    let (risk_level_id, risk_level_name) = risk_level(a.severity);
    let (confidence_id, confidence_name) = confidence(a);
    let evidences = a.findings.iter().map(|f| {
        json!({
            "data": {
                "detector": f.detector.as_str(),
                "summary": f.summary,
                "baseline": f.baseline,
                "observed": f.observed,
                "probability": f.probability,
                "surprise_bits": (f.bits * 100.0).round() / 100.0,
                "event_time": f.time_ms,
                "event_uid": f.event_id,
            }
        })
    });
    let mut user = Map::new();
    user.insert("uid".into(), json!(ev.principal));
    user.insert("type".into(), json!(ev.principal_type.as_str()));
    put(
        &mut user,
        "credential_uid",
        ev.credential.as_ref().map(|c| &c.id).filter(|_| !closing),
    );
    let mut data = Map::new();
    data.insert("detector".into(), json!("triggering_event"));
    data.insert("action".into(), json!(ev.action));
    data.insert("event_time".into(), json!(ev.time_ms));
    put(&mut data, "event_uid", ev.event_id.as_ref());
    put(&mut data, "resource", ev.resource.as_ref());
    data.insert("outcome".into(), json!(outcome(ev)));
    put(&mut data, "error_code", ev.outcome.error_code.as_ref());
    // OCSF 1.1.0's evidence has no HTTP request: the user agent is part of the event's data.
    put(&mut data, "user_agent", ev.origin.user_agent.as_ref());
    let mut latest = Map::new();
    latest.insert("actor".into(), json!({"user": user}));
    latest.insert("api".into(), api(ev));
    latest.insert("data".into(), Value::Object(data));
    put(
        &mut latest,
        "src_endpoint",
        ev.origin.ip.map(|ip| json!({"ip": ip.to_string()})),
    );
    let mut all_evidence = vec![Value::Object(latest)];
    all_evidence.extend(evidences);

    let mut resource = Map::new();
    resource.insert("uid".into(), json!(ev.principal));
    resource.insert("type".into(), json!(ev.principal_type.as_str()));
    put(
        &mut resource,
        "owner",
        a.owner.as_ref().map(|o| json!({"name": o})),
    );
    let w = &ev.origin.workload;
    let labels: Vec<String> = [("cluster", &w.cluster), ("namespace", &w.namespace)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}:{v}")))
        .collect();
    if !labels.is_empty() {
        resource.insert("labels".into(), json!(labels));
    }

    let mut observables = vec![
        json!({"name": "actor.user.uid", "type_id": 21, "type": "User", "value": ev.principal}),
    ];
    if let Some(ip) = ev.origin.ip.filter(|_| !closing) {
        observables.push(json!({"name": "evidences.src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": ip.to_string()}));
    }
    if let Some(r) = ev.resource.as_ref().filter(|_| !closing) {
        observables.push(json!({"name": "evidences.data.resource", "type_id": 10, "type": "Resource UID", "value": r}));
    }

    let mut metadata = Map::new();
    metadata.insert("version".into(), json!(OCSF_VERSION));
    metadata.insert("uid".into(), json!(message_uid(a)));
    metadata.insert(
        "product".into(),
        json!({"name": "driftwatch", "vendor_name": "driftwatch", "version": env!("CARGO_PKG_VERSION")}),
    );
    metadata.insert("log_name".into(), json!(ev.format.as_str()));
    put(&mut metadata, "tenant_uid", ev.tenant.as_ref());

    let mut unmapped = Map::new();
    unmapped.insert(
        "identity_maturity".into(),
        json!((a.maturity * 100.0).round() / 100.0),
    );
    unmapped.insert("identity_mature".into(), json!(a.mature));
    unmapped.insert("identity_events".into(), json!(a.identity_events));
    unmapped.insert(
        "identity_first_seen_time".into(),
        json!(a.identity_first_seen_ms),
    );
    unmapped.insert("provider".into(), json!(ev.provider()));
    put(
        &mut unmapped,
        "credential_type",
        ev.credential.as_ref().map(|c| c.kind).filter(|_| !closing),
    );
    put(
        &mut unmapped,
        "session_uid",
        ev.session_id.as_ref().filter(|_| !closing),
    );
    put(&mut unmapped, "command_id", a.command_id.as_ref());
    put(
        &mut unmapped,
        "command_withheld",
        a.command_withheld.as_ref(),
    );
    if !closing {
        unmapped.insert("raw_source".into(), json!(ev.raw.source_label()));
        unmapped.insert("raw_position".into(), json!(ev.raw.position));
    }

    let mut finding = json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": 200400 + activity_id,
        "type_name": format!("Detection Finding: {activity_name}"),
        "time": a.time_ms,
        "severity_id": a.severity.id(),
        "severity": a.severity.name(),
        "risk_score": a.risk_score,
        "risk_level_id": risk_level_id,
        "risk_level": risk_level_name,
        "confidence_id": confidence_id,
        "confidence": confidence_name,
        "count": a.count,
        "start_time": a.first_seen_ms,
        "end_time": a.last_seen_ms,
        "message": match top {
            Some(f) => f.summary.clone(),
            None => desc.clone(),
        },
        "metadata": metadata,
        "finding_info": {
            "uid": a.uid,
            "title": title,
            "desc": desc,
            "types": a.types.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
            "first_seen_time": a.first_seen_ms,
            "last_seen_time": a.last_seen_ms,
            "analytic": {"name": "driftwatch per-identity behavioural baseline", "type_id": 2, "type": "Behavioral"},
            "attacks": attacks(a),
        },
        "resources": [resource],
        "evidences": all_evidence,
        "observables": observables,
        "unmapped": unmapped,
    });
    finding["finding_info"]["modified_time"] = json!(now_ms);
    if closing {
        // The finding's records were in its earlier messages; this one ends it.
        if let Some(f) = finding.as_object_mut() {
            f.remove("evidences");
        }
    }
    // The finding's status belongs to whoever triages it: set once, when it is created.
    if a.activity == Activity::Create {
        finding["finding_info"]["created_time"] = json!(now_ms);
        finding["status_id"] = json!(1);
        finding["status"] = json!("New");
    }
    if let Some(provider) = cloud_provider(ev.format) {
        finding["cloud"] = cloud(provider, a, "uid");
        finding["metadata"]["profiles"] = json!(["cloud"]);
    }
    finding
}

/// The message's own uid: one per alert message (a finding and its count), the same as its
/// CloudEvents `ce_id`, so consumers of the JSON body deduplicate as header readers do.
pub fn message_uid(a: &Alert) -> String {
    match a.activity {
        Activity::Close => format!("{}/closed", a.uid),
        _ => format!("{}/{}", a.uid, a.count),
    }
}
