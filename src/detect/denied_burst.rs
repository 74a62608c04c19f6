//! Denied burst: many refused calls within a short window (probing for permissions), on a
//! binomial tail of the identity's own denied rate. The window is learned by the profile; what
//! was already reported for it is this signal's memory.

use serde_json::json;

use super::{Detector, Finding, MIN_WINDOW_BITS, Observation, escalation, round3};
use crate::baseline::Profile;
use crate::baseline::stats;

pub fn check(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let d = &o.rules.model.detectors.denied_burst;
    let (l, ev) = (o.learned, o.event);
    let w = p.denied_window;
    if !l.mature || !d.enabled || !ev.outcome.denied || w.hits < d.min_denied {
        return None;
    }
    let p_err = (f64::from(l.denied_before) + 0.5) / (f64::from(l.calls_before) + 10.0);
    let prob = stats::binomial_tail(u64::from(w.hits), u64::from(w.events), p_err);
    let inc = escalation(
        &mut p.denied_window.fired_bits,
        prob,
        d.max_bits,
        MIN_WINDOW_BITS,
    )?;
    Some(o.finding(
        Detector::DeniedBurst,
        inc * d.weight,
        prob,
        format!(
            "{} of {} calls denied within {} min; its usual denied rate is {:.1}%",
            w.hits,
            w.events,
            d.window_minutes,
            p_err * 100.0
        ),
        json!({"denied_rate": round3(p_err)}),
        json!({"denied": w.hits, "calls": w.events, "window_minutes": d.window_minutes, "last_error": ev.outcome.error_code}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    const DENIED: &str = r#""outcome":{"success":false,"denied":true,"error_code":"AccessDenied"}"#;

    #[test]
    fn a_burst_of_refusals_from_an_identity_that_is_rarely_refused_is_reported() {
        let mut id = established("role", "s3:GetObject", "");
        let found: Vec<Finding> = (0..15)
            .flat_map(|k| {
                id.see(&event(
                    "role",
                    at(10, 9) + k * 10_000,
                    "s3:GetObject",
                    DENIED,
                ))
            })
            .collect();
        let burst = of(&found, Detector::DeniedBurst);
        assert!(!burst.is_empty(), "{found:?}");
        assert_eq!(burst[0].observed.json()["last_error"], "AccessDenied");
    }

    #[test]
    fn a_single_refusal_is_not_a_burst() {
        let mut id = established("role", "s3:GetObject", "");
        let f = id.see(&event("role", at(10, 9), "s3:GetObject", DENIED));
        assert!(!detectors(&f).contains(&Detector::DeniedBurst));
    }
}
