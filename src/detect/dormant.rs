//! Dormancy: an identity idle for weeks becomes active again. The idle time is judged against the
//! identity's own usual gap between active hours, taken as exponential. An identity the dormancy
//! lifecycle already asked to suspend or delete is reported at full weight, whatever its gaps:
//! governance declared it unused.

use serde_json::json;

use super::{Detector, Finding, Observation, round3};
use crate::baseline::lifecycle::Stage;
use crate::baseline::stats::bits;
use crate::baseline::{DAY_MS, HOUR_MS, Profile};

pub fn check(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let d = &o.rules.model.detectors.dormant;
    let before = &o.learned.before;
    // The stage of the silence this event ends (the engine resets it after judging).
    let stage = p.lifecycle.stage;
    let retired = stage != Stage::Active;
    if (o.learned.is_new && !retired) || !d.enabled {
        return None;
    }
    // A first event can only be retired when the inventory declared the identity and the
    // lifecycle retired it unused: its silence counts from its declared creation.
    let since = match (o.learned.is_new, o.meta.and_then(|m| m.created_at_ms)) {
        (true, Some(created)) => created,
        _ => before.last_seen_ms,
    };
    let idle_ms = o.event.time_ms - since;
    if !retired
        && ((idle_ms as f64) < d.min_idle_days * DAY_MS as f64
            || before.events < d.min_prior_events)
    {
        return None;
    }
    let idle_h = idle_ms as f64 / HOUR_MS as f64;
    let gap = f64::from(before.mean_gap_hours).max(1.0);
    // Gaps between active hours taken as exponential with the identity's own mean.
    let (prob, b) = if retired {
        (2f64.powf(-d.max_bits), d.max_bits)
    } else {
        let prob = (-idle_h / gap).exp();
        (prob, bits(prob, d.max_bits))
    };
    let summary = if retired && o.learned.is_new {
        format!(
            "first used {:.0} days after it was declared, although the dormancy lifecycle asked for it to be {}",
            idle_h / 24.0,
            stage.as_str()
        )
    } else if retired {
        format!(
            "in use again after {:.0} days idle, although the dormancy lifecycle asked for it to be {}",
            idle_h / 24.0,
            stage.as_str()
        )
    } else {
        format!(
            "dormant for {:.0} days, then active again (its usual gap between active hours is {gap:.1} h)",
            idle_h / 24.0
        )
    };
    Some(o.finding(
        Detector::Dormant,
        b * d.weight,
        prob,
        summary,
        json!({"last_seen_time": before.last_seen_ms, "mean_gap_hours": round3(gap), "prior_events": before.events, "lifecycle_stage": stage.as_str()}),
        json!({"idle_days": round3(idle_h / 24.0), "action": o.event.action}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn a_key_silent_for_weeks_is_reported_on_its_first_call_back_only() {
        let mut id = established("key", "s3:GetObject", "");
        let back = at(50, 10);
        let f = id.see(&event("key", back, "s3:GetObject", ""));
        let dormant = of(&f, Detector::Dormant);
        assert_eq!(dormant.len(), 1, "{f:?}");
        assert!(
            dormant[0].summary.starts_with("dormant for 41 days"),
            "{}",
            dormant[0].summary
        );
        assert!(
            dormant[0].bits >= 10.0,
            "a 40-day gap for an hourly caller is rare"
        );
        let next = id.see(&event("key", back + 60_000, "s3:GetObject", ""));
        assert!(!detectors(&next).contains(&Detector::Dormant));
    }

    #[test]
    fn a_short_pause_is_not_dormancy() {
        let mut id = established("key", "s3:GetObject", "");
        let f = id.see(&event("key", at(20, 10), "s3:GetObject", ""));
        assert!(!detectors(&f).contains(&Detector::Dormant));
    }
}
