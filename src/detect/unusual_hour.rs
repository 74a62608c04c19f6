//! Unusual hour: the first call of a clock hour at an hour of day the identity is rarely active
//! (a nightly job at noon), reported once per hour. The probability of an active hour at this
//! hour of day, relative to an identity active at every hour alike, is a mixture: the identity's
//! habits (a kernel density of its active hours on record, one-hour kernel), and strays that
//! may land at any hour, at its own rate of active hours at cold hours of day (a Beta posterior
//! around the fleet's rate: empirical Bayes). An identity whose activity is concentrated in a
//! window, and has kept to it, in a fleet whose identities keep to theirs, is strongly
//! surprised far from the window and hardly an hour from it; one active around the clock has
//! few cold hours, and one that often strays has a high rate.

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
    let r = p.off_rhythm(p.hour, d.cold_share)?;
    // The identity's own rate of active hours at cold hours of day, under a prior whose mean is
    // the fleet's rate (empirical Bayes) and whose weight is the model's usual 1.25 hours: a
    // fleet whose identities keep to their hours makes a first stray from a strict schedule
    // surprising; one whose identities often stray does not. A young fleet's rate is the
    // model's prior mean.
    let b = &o.rules.model.baseline;
    let (a, b_) = (b.novelty_prior_novel, b.novelty_prior_seen);
    let (fleet_active, fleet_cold) = o.fleet.active_hours();
    let fleet_rate = stats::beta_predictive(fleet_cold as f64, fleet_active as f64, a, b_);
    let off_rate = stats::beta_predictive(
        r.cold_hours,
        r.all_hours,
        (a + b_) * fleet_rate,
        (a + b_) * (1.0 - fleet_rate),
    );
    // The chance of an active hour at this hour of day, relative to an identity active at
    // every hour alike (1): its own habits (the kernel density) where they reach, else a stray
    // (`off_rate`) that could have landed at any of the 24.
    let prob = (24.0 * (1.0 - off_rate) * r.density + off_rate).min(1.0);
    let bts = bits(prob, d.max_bits);
    let hod = p.hour.rem_euclid(24);
    p.hour_fired.unusual_hour = true;
    Some(o.finding(
        Detector::UnusualHour,
        bts * d.weight,
        prob,
        format!(
            "active at {hod:02}:00 UTC, an hour of day it is active on {:.0}% of days, {} h from the hours it is usually active",
            share * 100.0,
            r.hours_away
        ),
        json!({"share_of_days_active_at_hour": round3(share), "active_hours_on_record": round3(r.all_hours),
               "of_which_at_cold_hours": round3(r.cold_hours), "share_of_active_hours_near_this_hour": round3(r.density),
               "stray_rate": round3(off_rate),
               "fleet_cold_hour_rate": round3(fleet_rate)}),
        json!({"hour_of_day_utc": hod, "hours_from_usual": r.hours_away}),
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
