//! Alerts as OCSF 1.1 Detection Findings (class_uid 2004).

use serde_json::{Value, json};

use crate::decide::{Activity, Alert, Severity};

pub const OCSF_VERSION: &str = "1.1.0";

/// OCSF risk_level_id matching a severity: Medium 2, High 3, Critical 4.
fn risk_level(severity: Severity) -> (u8, &'static str) {
    match severity {
        Severity::Critical => (4, "Critical"),
        Severity::High => (3, "High"),
        Severity::Medium => (2, "Medium"),
    }
}

pub fn detection_finding(a: &Alert) -> Value {
    let (activity_id, activity_name) = match a.activity {
        Activity::Create => (1, "Create"),
        Activity::Update => (2, "Update"),
    };
    let ev = &a.event;
    let top = a.findings.iter().max_by(|x, y| x.bits.total_cmp(&y.bits));
    let title = format!(
        "Behaviour drift of {}: {}",
        ev.principal,
        a.cause.as_str().replace('_', " ")
    );
    let desc = a
        .findings
        .iter()
        .map(|f| f.summary.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let (risk_level_id, risk_level_name) = risk_level(a.severity);
    let evidences: Vec<Value> = a
        .findings
        .iter()
        .map(|f| {
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
        })
        .collect();
    let mut latest = json!({
        "actor": {"user": {"uid": ev.principal, "type": ev.principal_type.as_str(), "credential_uid": ev.credential.as_ref().map(|c| c.id.clone())}},
        "api": {"operation": ev.action, "service": {"name": ev.service()}},
        "data": {"detector": "triggering_event", "event_time": ev.time_ms, "event_uid": ev.event_id, "resource": ev.resource,
                 "outcome": if ev.outcome.success { "success" } else { "failure" }, "error_code": ev.outcome.error_code},
    });
    if let Some(ip) = ev.origin.ip {
        latest["src_endpoint"] = json!({"ip": ip.to_string()});
    }
    if let Some(ua) = &ev.origin.user_agent {
        latest["http_request"] = json!({"user_agent": ua});
    }
    let mut all_evidence = vec![latest];
    all_evidence.extend(evidences);
    json!({
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
        "status_id": 1,
        "status": "New",
        "risk_score": a.risk_score,
        "risk_level_id": risk_level_id,
        "risk_level": risk_level_name,
        "count": a.count,
        "message": top.map(|f| f.summary.clone()).unwrap_or_default(),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "driftwatch", "vendor_name": "driftwatch", "version": env!("CARGO_PKG_VERSION")},
            "log_name": ev.format.as_str(),
        },
        "finding_info": {
            "uid": a.uid,
            "title": title,
            "desc": desc,
            "types": a.types.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
            "first_seen_time": a.first_seen_ms,
            "last_seen_time": a.last_seen_ms,
            "analytic": {"name": "driftwatch per-identity behavioural baseline", "type_id": 2, "type": "Behavioral"},
        },
        "resources": [{
            "uid": ev.principal,
            "type": ev.principal_type.as_str(),
            "cloud_partition": ev.format.provider(),
            "owner": {"name": a.owner, "account": {"uid": ev.tenant}},
        }],
        "evidences": all_evidence,
        "unmapped": {
            "identity": {
                "maturity": (a.maturity * 100.0).round() / 100.0,
                "mature": a.mature,
                "events": a.identity_events,
                "first_seen_time": a.identity_first_seen_ms,
                "owner": a.owner,
            },
            "provider": ev.format.provider(),
            "tenant": ev.tenant,
            "credential": ev.credential.as_ref().map(|c| json!({"uid": c.id, "type": c.kind})),
            "session_uid": ev.session_id,
            "command_id": a.command_id,
            "command_withheld": a.command_withheld,
            "raw_ref": {"source": ev.raw.source_label(), "position": ev.raw.position},
        },
    })
}
