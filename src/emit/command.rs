//! Revocation commands (`schemas/revocation-command.v1.json`).

use serde_json::{Value, json};

use crate::decide::Command;
use crate::decode::time::format_rfc3339_ms;

pub const SCHEMA: &str = "driftwatch.revocation-command.v1";

pub fn revocation_command(c: &Command) -> Value {
    json!({
        "schema": SCHEMA,
        "command_id": c.command_id,
        "idempotency_key": c.idempotency_key,
        "issued_at": format_rfc3339_ms(c.issued_at_ms),
        "expires_at": format_rfc3339_ms(c.expires_at_ms),
        "mode": c.mode.as_str(),
        "action": c.action,
        "target": {
            "provider": c.provider,
            "tenant": c.tenant,
            "identity": {"key": c.identity_key, "type": c.identity_type.as_str()},
            "credential": c.credential_id.as_ref().map(|id| json!({"id": id, "type": c.credential_type})),
        },
        "reason": {
            "finding_uid": c.finding_uid,
            "risk_score": c.risk_score,
            "summary": c.summary,
        },
        "evidence": c.evidence.iter().map(|e| json!({
            "event_uid": e.event_id,
            "event_time": format_rfc3339_ms(e.time_ms),
            "detector": e.detector.as_str(),
        })).collect::<Vec<_>>(),
    })
}
