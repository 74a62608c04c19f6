//! Past rotation: an identity used while its credential is older than the rotation period its
//! inventory record declares (age counted from `rotated_at`, or `created_at`). Declared, not
//! learned; raised once per rotation period overrun, and again after a declared rotation if the
//! new one overruns too.

use serde_json::json;

use super::{Detector, Finding, Observation};
use crate::baseline::Profile;
use crate::baseline::lifecycle::notice;
use crate::decode::time::format_rfc3339_ms;

pub fn check(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let inv = &o.rules.model.detectors.inventory;
    let m = o.meta?;
    let past = m.past_rotation(o.event.time_ms).filter(|_| inv.enabled);
    if !p.lifecycle.notice(notice::PAST_ROTATION, past.is_some()) {
        return None;
    }
    let (age_days, since) = past?;
    let period = m.rotation_period_days?;
    Some(o.finding(
        Detector::PastRotation,
        inv.past_rotation_bits * inv.weight,
        0.0,
        format!(
            "in use with a credential {age_days:.0} days old, past its {period:.0}-day rotation period"
        ),
        json!({
            "rotation_period_days": period,
            "age_counted_from": format_rfc3339_ms(since),
            "owner": m.owner,
        }),
        json!({"age_days": super::round3(age_days), "action": o.event.action}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::baseline::DAY_MS;
    use crate::config::{Inventory, Model, Rules};

    #[test]
    fn a_credential_older_than_its_rotation_period_is_reported_once_per_overrun() {
        // T0 is 2026-01-05; created 2025-10-07, so 90 days old on T0.
        let inv = Inventory::parse(
            r#"{"key":"k","owner":"o","created_at":"2025-10-07T00:00:00Z","rotation_period_days":90}"#,
            "inv.jsonl",
        )
        .unwrap();
        let mut id = Identity::new(Rules::new(Model::embedded()).with_inventory(inv.clone()));
        assert!(
            id.see(&event("k", T0 - DAY_MS, "s3:GetObject", ""))
                .is_empty()
        );
        let f = id.see(&event("k", T0 + 3_600_000, "s3:GetObject", ""));
        assert_eq!(detectors(&f), [Detector::PastRotation]);
        assert!(
            f[0].summary.contains("past its 90-day rotation period"),
            "{}",
            f[0].summary
        );
        assert!(
            id.see(&event("k", T0 + DAY_MS, "s3:GetObject", ""))
                .is_empty()
        );
        // Rotated (declared on the topic): quiet, until the new key overruns as well.
        inv.apply(
            "k",
            Some(br#"{"owner":"o","rotated_at":"2026-01-06T00:00:00Z","rotation_period_days":90}"#),
        )
        .unwrap();
        assert!(
            id.see(&event("k", T0 + 2 * DAY_MS, "s3:GetObject", ""))
                .is_empty()
        );
        let later = id.see(&event("k", T0 + 92 * DAY_MS, "s3:GetObject", ""));
        assert_eq!(detectors(&later), [Detector::PastRotation]);
    }
}
