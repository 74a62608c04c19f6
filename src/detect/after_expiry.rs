//! Use after expiry: an identity used after the expiry its inventory record declares. Declared,
//! not learned, so it counts from the first event; reported once per identity.

use serde_json::json;

use super::{Detector, Finding, Observation};
use crate::baseline::{DAY_MS, Profile};
use crate::decode::time::format_rfc3339_ms;

pub fn check(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let inv = &o.rules.model.detectors.inventory;
    let exp = o.meta.and_then(|m| m.expires_at_ms)?;
    let t = o.event.time_ms;
    if !inv.enabled || p.expiry_reported || t <= exp {
        return None;
    }
    p.expiry_reported = true;
    Some(o.finding(
        Detector::AfterExpiry,
        inv.expired_bits * inv.weight,
        0.0,
        format!(
            "used {} after its declared expiry ({})",
            since(t - exp),
            format_rfc3339_ms(exp)
        ),
        json!({"expires_at": format_rfc3339_ms(exp), "owner": o.meta.and_then(|m| m.owner.clone())}),
        json!({"action": o.event.action, "ip": o.event.origin.ip}),
    ))
}

/// A span of `ms` in the unit a reader wants: minutes, hours, or days.
fn since(ms: i64) -> String {
    let hours = ms as f64 / 3_600_000.0;
    if hours < 1.0 {
        match (ms / 60_000).max(1) {
            1 => "1 minute".to_owned(),
            m => format!("{m} minutes"),
        }
    } else if ms < DAY_MS {
        format!("{hours:.1} hours")
    } else {
        format!("{:.1} days", ms as f64 / DAY_MS as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::config::{Inventory, Model, Rules};

    #[test]
    fn use_after_the_declared_expiry_is_reported_once_even_in_warm_up() {
        let inv = Inventory::parse(
            r#"{"key":"ci","owner":"platform","expires_at":"2026-01-06T00:00:00Z"}"#,
            "inv.jsonl",
        )
        .unwrap();
        let mut id = Identity::new(Rules::new(Model::embedded()).with_inventory(inv));
        let before = id.see(&event("ci", T0 + 3_600_000, "s3:GetObject", ""));
        assert!(before.is_empty(), "{before:?}");
        let after = id.see(&event("ci", T0 + 2 * DAY_MS, "s3:GetObject", ""));
        assert_eq!(detectors(&after), [Detector::AfterExpiry]);
        assert_eq!(after[0].baseline.json()["owner"], "platform");
        assert!(
            after[0].summary.starts_with("used 1.0 days after"),
            "{}",
            after[0].summary
        );
        let again = id.see(&event("ci", T0 + 2 * DAY_MS + 1, "s3:GetObject", ""));
        assert!(again.is_empty());
    }

    #[test]
    fn the_time_since_expiry_reads_in_minutes_hours_or_days() {
        assert_eq!(since(1), "1 minute");
        assert_eq!(since(5 * 60_000), "5 minutes");
        assert_eq!(since(3_600_000), "1.0 hours");
        assert_eq!(since(3 * DAY_MS), "3.0 days");
    }
}
