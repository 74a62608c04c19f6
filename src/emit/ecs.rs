//! Alerts as Elastic Common Schema 8.x documents (`--alert-format ecs`): `event.kind: alert`,
//! the fields Elastic Security's alert views and detection rules read (`rule`, `threat`,
//! `user`, `source`, `cloud`, `orchestrator`, `related`), and driftwatch's own evidence under
//! `driftwatch.*` (ECS leaves custom top-level names to the producer). The same facts as the
//! OCSF finding ([`super::ocsf`]), which stays the canonical format; `schemas/alert-ecs.v1.json`.

use serde_json::{Map, Value, json};

use super::ocsf::{self, ATTACK_VERSION};
use super::put;
use crate::decide::{Activity, Alert};
use crate::decode::time::format_rfc3339_ms;
use crate::event::SourceFormat;

/// The ECS release the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// ECS `cloud.provider` values.
fn cloud_provider(format: SourceFormat) -> Option<&'static str> {
    match format {
        SourceFormat::Cloudtrail => Some("aws"),
        SourceFormat::GcpAudit => Some("gcp"),
        SourceFormat::K8sAudit | SourceFormat::Native => None,
    }
}

/// The ECS document of an alert emitted at `now_ms` (wall clock: `event.created`; every other
/// time is event time). A Close is `event.type: end` with no record's fields.
pub fn alert_document(a: &Alert, now_ms: i64) -> Value {
    let closing = a.activity == Activity::Close;
    let ev = &a.event;
    let (confidence_id, confidence) = ocsf::confidence(a);
    let desc = ocsf::description(a);
    let top = a.findings.iter().max_by(|x, y| x.bits.total_cmp(&y.bits));

    let mut event = Map::new();
    event.insert("kind".into(), json!("alert"));
    event.insert("category".into(), json!(["iam"]));
    event.insert(
        "type".into(),
        json!([match a.activity {
            Activity::Create => "start",
            Activity::Update => "info",
            Activity::Close => "end",
        }]),
    );
    event.insert("id".into(), json!(ocsf::message_uid(a)));
    event.insert("module".into(), json!("driftwatch"));
    event.insert("dataset".into(), json!("driftwatch.alert"));
    event.insert("provider".into(), json!(ev.format.as_str()));
    event.insert("severity".into(), json!(a.severity.id()));
    event.insert("risk_score".into(), json!(a.risk_score));
    event.insert("created".into(), json!(format_rfc3339_ms(now_ms)));
    event.insert("start".into(), json!(format_rfc3339_ms(a.first_seen_ms)));
    event.insert("end".into(), json!(format_rfc3339_ms(a.last_seen_ms)));
    event.insert("reason".into(), json!(desc));
    if !closing {
        event.insert("action".into(), json!(ev.action));
        event.insert("outcome".into(), json!(ocsf::outcome(ev)));
    }

    let techniques = ocsf::techniques(a);
    let threat = json!({
        "framework": "MITRE ATT&CK",
        "framework_version": ATTACK_VERSION,
        "technique": techniques.iter().map(|(id, name, _, _)| json!({
            "id": id, "name": name, "reference": ocsf::technique_url(id)
        })).collect::<Vec<_>>(),
        "tactic": techniques.iter().map(|(_, _, id, name)| json!({
            "id": id, "name": name,
            "reference": format!("https://attack.mitre.org/tactics/{id}/"),
        })).collect::<Vec<_>>(),
    });

    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(format_rfc3339_ms(a.time_ms)));
    doc.insert("ecs".into(), json!({"version": ECS_VERSION}));
    doc.insert(
        "message".into(),
        json!(top.map_or(desc.as_str(), |f| f.summary.as_str())),
    );
    doc.insert("event".into(), Value::Object(event));
    doc.insert(
        "rule".into(),
        json!({
            "id": a.cause.as_str(),
            "name": ocsf::title(a),
            "category": "Behavioral",
            "ruleset": "driftwatch per-identity behavioural baseline",
            "description": desc,
            "version": env!("CARGO_PKG_VERSION"),
        }),
    );
    doc.insert("threat".into(), threat);
    doc.insert(
        "user".into(),
        json!({"id": ev.principal, "name": ev.principal}),
    );
    let mut related = Map::new();
    related.insert("user".into(), json!([ev.principal]));
    if !closing {
        if let Some(ip) = ev.origin.ip {
            doc.insert("source".into(), json!({"ip": ip.to_string()}));
            related.insert("ip".into(), json!([ip.to_string()]));
        }
        put(
            &mut doc,
            "user_agent",
            ev.origin
                .user_agent
                .as_ref()
                .map(|ua| json!({"original": ua})),
        );
    }
    doc.insert("related".into(), Value::Object(related));
    if let Some(provider) = cloud_provider(ev.format) {
        doc.insert("cloud".into(), ocsf::cloud(provider, a, "id"));
    }
    let w = &ev.origin.workload;
    if ev.format == SourceFormat::K8sAudit {
        let mut orchestrator = Map::new();
        orchestrator.insert("type".into(), json!("kubernetes"));
        put(
            &mut orchestrator,
            "cluster",
            w.cluster.as_ref().map(|c| json!({"name": c})),
        );
        put(&mut orchestrator, "namespace", w.namespace.as_ref());
        doc.insert("orchestrator".into(), Value::Object(orchestrator));
    }

    let mut dw = Map::new();
    dw.insert("finding_uid".into(), json!(a.uid));
    dw.insert("activity".into(), json!(a.activity.as_str()));
    dw.insert("count".into(), json!(a.count));
    dw.insert("severity".into(), json!(a.severity.name()));
    dw.insert(
        "confidence".into(),
        json!({"id": confidence_id, "name": confidence}),
    );
    dw.insert(
        "detectors".into(),
        json!(a.types.iter().map(|d| d.as_str()).collect::<Vec<_>>()),
    );
    dw.insert(
        "identity".into(),
        json!({
            "key": ev.principal,
            "type": ev.principal_type.as_str(),
            "provider": ev.provider(),
            "maturity": (a.maturity * 100.0).round() / 100.0,
            "mature": a.mature,
            "events": a.identity_events,
            "first_seen": format_rfc3339_ms(a.identity_first_seen_ms),
        }),
    );
    put(&mut dw, "owner", a.owner.as_ref());
    put(&mut dw, "command_id", a.command_id.as_ref());
    put(&mut dw, "command_withheld", a.command_withheld.as_ref());
    if !closing {
        dw.insert(
            "findings".into(),
            json!(
                a.findings
                    .iter()
                    .map(|f| json!({
                        "detector": f.detector.as_str(),
                        "summary": f.summary,
                        "baseline": f.baseline,
                        "observed": f.observed,
                        "probability": f.probability,
                        "surprise_bits": (f.bits * 100.0).round() / 100.0,
                        "event_time": format_rfc3339_ms(f.time_ms),
                    }))
                    .collect::<Vec<_>>()
            ),
        );
        let mut record = Map::new();
        put(&mut record, "event_id", ev.event_id.as_ref());
        put(&mut record, "resource", ev.resource.as_ref());
        put(&mut record, "error_code", ev.outcome.error_code.as_ref());
        put(&mut record, "session", ev.session_id.as_ref());
        put(
            &mut record,
            "credential",
            ev.credential
                .as_ref()
                .map(|c| json!({"id": c.id, "type": c.kind})),
        );
        record.insert("source".into(), json!(ev.raw.source_label()));
        record.insert("position".into(), json!(ev.raw.position));
        dw.insert("record".into(), Value::Object(record));
    }
    doc.insert("driftwatch".into(), Value::Object(dw));
    Value::Object(doc)
}
