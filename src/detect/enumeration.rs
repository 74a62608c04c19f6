//! Enumeration: many distinct endpoints new to the identity within a short window (a
//! reconnaissance sweep), on a Poisson tail of its own rate of new endpoints. During warm-up
//! everything is new, so only sensitive and reconnaissance endpoints that few identities call
//! count then. The window is this signal's own memory.

use serde_json::json;

use super::{Detector, Finding, MIN_WINDOW_BITS, Observation, escalation, round3};
use crate::baseline::Profile;
use crate::baseline::stats;

pub fn check(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let new = o.learned.endpoint.as_ref()?;
    let e = &o.rules.model.detectors.enumeration;
    let (mature, fleet_mature) = (o.learned.mature, o.learned.fleet_mature);
    if !e.enabled
        || (!mature
            && (!fleet_mature || new.tier.is_none() || new.users >= e.warmup_max_fleet_users))
    {
        return None;
    }
    let len = (e.window_minutes * 60_000.0) as i64;
    p.enum_window.roll(o.event.time_ms, len);
    p.enum_window.hits += 1;
    let w = p.enum_window;
    if w.hits < e.min_distinct {
        return None;
    }
    let lambda = if mature {
        (f64::from(p.new_endpoints) / f64::from(p.active_hours).max(1.0)) * e.window_minutes / 60.0
    } else {
        1.0
    }
    .max(0.05);
    let prob = stats::poisson_tail(u64::from(w.hits), lambda);
    let inc = escalation(
        &mut p.enum_window.fired_bits,
        prob,
        e.max_bits,
        MIN_WINDOW_BITS,
    )?;
    Some(o.finding(
        Detector::Enumeration,
        inc * e.weight,
        prob,
        format!(
            "{} endpoints new to it within {} min (expected {:.2})",
            w.hits, e.window_minutes, lambda
        ),
        json!({"expected_new_endpoints_per_window": round3(lambda)}),
        json!({"new_endpoints_in_window": w.hits, "window_minutes": e.window_minutes, "latest": o.event.action}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn a_sweep_of_new_endpoints_within_minutes_is_enumeration() {
        let mut id = established("role", "s3.amazonaws.com:GetObject", "");
        let t = at(10, 9);
        let sweep = [
            "iam.amazonaws.com:ListUsers",
            "iam.amazonaws.com:ListRoles",
            "ec2.amazonaws.com:DescribeInstances",
            "s3.amazonaws.com:ListBuckets",
            "lambda.amazonaws.com:ListFunctions",
            "kms.amazonaws.com:ListKeys",
        ];
        let found: Vec<Finding> = sweep
            .iter()
            .enumerate()
            .flat_map(|(i, a)| id.see(&event("role", t + i as i64 * 20_000, a, "")))
            .collect();
        let en = of(&found, Detector::Enumeration);
        assert!(!en.is_empty(), "{found:?}");
        assert!(en[0].summary.contains("endpoints new to it within 10 min"));
    }

    #[test]
    fn new_endpoints_spread_over_days_are_not_enumeration() {
        let mut id = established("role", "s3.amazonaws.com:GetObject", "");
        let found: Vec<Finding> = (0..6)
            .flat_map(|d| {
                let action = format!("s3.amazonaws.com:Op{d}");
                id.see(&event("role", at(10 + d, 9), &action, ""))
            })
            .collect();
        assert!(
            !detectors(&found).contains(&Detector::Enumeration),
            "{found:?}"
        );
    }
}
