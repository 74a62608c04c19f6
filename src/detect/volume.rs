//! Volume: how much an identity does in the current clock hour, against its own seasonal
//! baseline. Requests on a negative-binomial tail around the mean for this hour of day (weekday
//! or weekend) with the identity's learned overdispersion; bytes out on a log-normal model of
//! its hours. Each is reported when it first becomes surprising in an hour and again when its
//! surprise doubles.

use serde_json::json;

use super::{Detector, Finding, Observation, escalation, round3};
use crate::baseline::Profile;
use crate::baseline::stats;

/// Requests so far this hour.
pub fn requests(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let v = &o.rules.model.detectors.volume;
    if !o.learned.mature || !v.enabled {
        return None;
    }
    let x = p.hour_requests;
    if x < v.min_requests || x < p.hour_fired.volume_next_check {
        return None;
    }
    let (mu, n) = p.requests.expected(p.hour, v.shrink_hours);
    if n < 3 {
        return None;
    }
    let disp = f64::from(p.requests.dispersion).max(1.0);
    // Cheap screen before the exact tail: well inside the usual range is never a spike.
    if f64::from(x) <= mu + 3.0 * (mu * disp).sqrt() + 2.0 {
        return None;
    }
    p.hour_fired.volume_next_check = x + (x / 4).max(1);
    let prob = stats::count_tail(u64::from(x), mu, disp);
    let inc = escalation(&mut p.hour_fired.volume_bits, prob, v.max_bits, v.min_bits)?;
    Some(o.finding(
        Detector::VolumeSpike,
        inc * v.weight,
        prob,
        format!("{x} requests so far this hour; it usually makes {mu:.1} at this hour"),
        json!({"expected_requests_this_hour": round3(mu), "dispersion": round3(disp), "hours_observed_at_this_slot": n}),
        json!({"requests_this_hour": x}),
    ))
}

/// Bytes sent out so far this hour.
pub fn bytes(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let v = &o.rules.model.detectors.volume;
    if !o.learned.mature || !v.enabled {
        return None;
    }
    let b = p.hour_bytes_out;
    if b < v.min_bytes || b < p.hour_fired.bytes_next_check || o.event.volume.bytes_out.is_none() {
        return None;
    }
    p.hour_fired.bytes_next_check = b + b / 2;
    let mean = f64::from(p.log_bytes_mean);
    let sd = f64::from(p.log_bytes_var).sqrt().max(0.75);
    let z = ((b as f64).ln_1p() - mean) / sd;
    let prob = stats::normal_tail(z);
    let inc = escalation(&mut p.hour_fired.bytes_bits, prob, v.max_bits, v.min_bits)?;
    Some(o.finding(
        Detector::BytesSpike,
        inc * v.weight,
        prob,
        format!(
            "{:.1} MB sent out so far this hour; its typical hour moves {:.1} MB",
            b as f64 / 1e6,
            (mean.exp() - 1.0).max(0.0) / 1e6
        ),
        json!({"typical_bytes_out_per_hour": (mean.exp() - 1.0).max(0.0).round(), "log_sd": round3(sd), "hours_with_bytes": p.byte_hours}),
        json!({"bytes_out_this_hour": b}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn a_burst_of_requests_far_above_the_hours_usual_count_is_a_spike_reported_as_it_grows() {
        let mut id = established("svc", "s3:GetObject", "");
        let mut spikes = 0;
        for k in 0..400 {
            let f = id.see(&event("svc", at(10, 10) + k * 5_000, "s3:GetObject", ""));
            spikes += of(&f, Detector::VolumeSpike).len();
        }
        assert!(
            (1..=4).contains(&spikes),
            "reported as it doubles, not per call: {spikes}"
        );
    }

    #[test]
    fn the_usual_number_of_requests_is_no_spike() {
        let mut id = established("svc", "s3:GetObject", "");
        let f = id.routine("svc", "s3:GetObject", "", (24 * 10, 24 * 11), 8..18, 3);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn gigabytes_out_in_an_hour_that_usually_moves_kilobytes_is_a_bytes_spike() {
        let mut id = established("svc", "s3:GetObject", r#""volume":{"bytes_out":20000}"#);
        let big = r#""volume":{"bytes_out":5000000}"#;
        let found: Vec<Finding> = (0..30)
            .flat_map(|k| id.see(&event("svc", at(10, 11) + k * 10_000, "s3:GetObject", big)))
            .collect();
        assert!(
            detectors(&found).contains(&Detector::BytesSpike),
            "{found:?}"
        );
    }
}
