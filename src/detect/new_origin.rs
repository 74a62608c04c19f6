//! New origin: a first use of a network (/24, /16, ASN, country), a client (user-agent family and
//! major version) or a workload, weighed by the identity's own rate of meeting new values at that
//! level, minus a discount for each doubling of the identities already using the value. Network
//! levels are nested, so the most surprising speaks for them all; client and workload are separate
//! dimensions, each capped on its own, and add up.

use serde_json::{Value, json};

use super::{Detector, Finding, Observation, fleet_discount, round3};
use crate::baseline::Profile;
use crate::baseline::learn::NewOrigin;
use crate::baseline::origin::Level;
use crate::baseline::stats::bits;

pub fn check(_p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let l = o.learned;
    let d = &o.rules.model.detectors.new_origin;
    if l.origins.is_empty() || !l.mature || !d.enabled {
        return None;
    }
    // The surprise of each new value: only the first new value of the hour at a level counts.
    let level_bits = |n: &NewOrigin| {
        let per_doubling = if n.level == Level::Client {
            d.client_fleet_discount_bits_per_doubling
        } else {
            d.fleet_discount_bits_per_doubling
        };
        if n.first_new_this_hour {
            (bits(n.p_new, d.max_bits) - fleet_discount(n.users, per_doubling)).max(0.0)
        } else {
            0.0
        }
    };
    let cap = d.max_bits;
    let net = l
        .origins
        .iter()
        .filter(|n| n.level.is_network())
        .map(level_bits)
        .fold(0.0, f64::max)
        .min(cap);
    let other: f64 = l
        .origins
        .iter()
        .filter(|n| !n.level.is_network())
        .map(|n| level_bits(n).min(cap))
        .sum();
    let total = net + other;
    if total <= 0.0 {
        return None;
    }
    let top = l
        .origins
        .iter()
        .max_by(|a, b| level_bits(a).total_cmp(&level_bits(b)))
        .expect("non-empty");
    let levels: Vec<Value> = l
        .origins
        .iter()
        .map(|n| {
            json!({"level": n.level.as_str(), "value": n.label, "known": n.known, "p_new_per_active_hour": round3(n.p_new),
                   "fleet_identities_using_it": n.users, "bits": round3(level_bits(n))})
        })
        .collect();
    let ev = o.event;
    Some(o.finding(
        Detector::NewOrigin,
        total * d.weight,
        top.p_new,
        format!(
            "new {} {} (it meets a new one in {:.1}% of its active hours; {} other identities use it)",
            top.level.as_str().replace('_', " "),
            top.label,
            top.p_new * 100.0,
            top.users
        ),
        json!({"levels": levels.iter().map(|l| json!({"level": l["level"], "known": l["known"], "p_new_per_active_hour": l["p_new_per_active_hour"]})).collect::<Vec<_>>()}),
        json!({"ip": ev.origin.ip, "user_agent": ev.origin.user_agent, "new_values": levels}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    const HOME: &str = r#""origin":{"ip":"52.1.2.3","user_agent":"aws-sdk-go/1.44"}"#;
    const AWAY: &str = r#""origin":{"ip":"198.51.100.7","user_agent":"python-requests/2.31"}"#;

    #[test]
    fn a_stable_key_from_a_new_network_and_client_is_reported_with_what_it_knew() {
        let mut id = established("partner", "s3:GetObject", HOME);
        let f = id.see(&event("partner", at(10, 10), "s3:GetObject", AWAY));
        assert_eq!(detectors(&f), [Detector::NewOrigin]);
        let observed = f[0].observed.json();
        let levels: Vec<&str> = observed["new_values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["level"].as_str().unwrap())
            .collect();
        assert_eq!(levels, ["network", "coarse_network", "client"]);
        assert_eq!(f[0].baseline.json()["levels"][0]["known"][0], "52.1.2.0/24");
    }

    #[test]
    fn an_identity_still_warming_up_is_not_judged_on_new_origins() {
        let mut id = Identity::default_rules();
        id.routine("young", "s3:GetObject", HOME, (0, 24), 9..17, 2);
        let f = id.see(&event("young", at(0, 20), "s3:GetObject", AWAY));
        assert!(!detectors(&f).contains(&Detector::NewOrigin), "{f:?}");
    }
}
