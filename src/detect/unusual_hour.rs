//! Unusual hour: the first call of a clock hour at an hour of day the identity is rarely active
//! (a nightly job at noon). The probability is the identity's own rate of active hours at cold
//! hours of day, a Beta posterior; reported once per hour.

use serde_json::json;

use super::{Detector, Finding, Observation, round3};
use crate::baseline::Profile;
use crate::baseline::stats::{self, bits};

pub fn check(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let d = &o.rules.model.detectors.unusual_hour;
    let l = o.learned;
    let share = l.hour_share?;
    if share >= d.cold_share || !l.mature || !d.enabled || p.hour_fired.unusual_hour {
        return None;
    }
    let b = &o.rules.model.baseline;
    let prob = stats::beta_predictive(
        f64::from(l.cold_hours_before),
        f64::from(p.active_hours),
        b.novelty_prior_novel,
        b.novelty_prior_seen,
    );
    let bts = bits(prob, d.max_bits);
    let hod = p.hour.rem_euclid(24);
    p.hour_fired.unusual_hour = true;
    Some(o.finding(
        Detector::UnusualHour,
        bts * d.weight,
        prob,
        format!(
            "active at {hod:02}:00 UTC, an hour of day it is active on {:.0}% of days",
            share * 100.0
        ),
        json!({"share_of_days_active_at_hour": round3(share), "cold_active_hours": round3(f64::from(l.cold_hours_before)), "active_hours": round3(f64::from(p.active_hours))}),
        json!({"hour_of_day_utc": hod}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn a_day_job_active_at_night_is_reported_once_per_hour() {
        let mut id = established("job", "s3:GetObject", "");
        let night = at(10, 2);
        let f = id.see(&event("job", night, "s3:GetObject", ""));
        assert_eq!(detectors(&f), [Detector::UnusualHour]);
        assert!(f[0].summary.starts_with("active at 02:00 UTC"));
        let same_hour = id.see(&event("job", night + 60_000, "s3:GetObject", ""));
        assert!(same_hour.is_empty());
    }

    #[test]
    fn a_day_job_at_its_usual_hours_is_not_reported() {
        let mut id = established("job", "s3:GetObject", "");
        let f = id.see(&event("job", at(10, 9), "s3:GetObject", ""));
        assert!(f.is_empty(), "{f:?}");
    }
}
