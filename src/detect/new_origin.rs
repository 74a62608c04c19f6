//! New origin: a first use of a network (/24, /16, ASN, country), a client (user-agent family and
//! major version) or a workload, weighed by the identity's own rate of meeting new values at that
//! level, minus a discount for each doubling of the identities already using the value. The
//! discount is scaled by how much the identity has shown it adopts values at all (`k / (k + 2)`
//! for `k` values known before): one that has only ever used one or two addresses has not shown
//! it draws from the networks its peers use, so their use of a network excuses little (a stolen
//! partner key replayed from a cloud region other partners call from). Network levels are
//! nested, so the most surprising speaks for them all; client and workload are separate
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
            let k = n.known_count as f64;
            let shown = k / (k + 2.0);
            (bits(n.p_new, d.max_bits) - shown * fleet_discount(n.users, per_doubling)).max(0.0)
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

    /// The new-network surprise of a key that used one network (or, `many`, eight) for ten days,
    /// moving to a network that `peers` other identities use.
    fn network_bits_after(many: bool, peers: u32) -> f64 {
        use crate::baseline::fleet::Table;
        use crate::baseline::origin;
        let mut id = Identity::default_rules();
        for n in 0..if many { 8 } else { 1 } {
            let home = format!(r#""origin":{{"ip":"52.{n}.1.3","user_agent":"aws-sdk-go/1.44"}}"#);
            id.routine("partner", "s3:GetObject", &home, (n * 30, 240), 8..18, 3);
        }
        let away = event(
            "partner",
            at(10, 10),
            "s3:GetObject",
            r#""origin":{"ip":"198.51.100.7","user_agent":"aws-sdk-go/1.44"}"#,
        );
        let b = &id.rules.model.baseline;
        origin::for_each_value(&away.origin, b, |v| {
            if v.level.is_network() {
                for _ in 0..peers {
                    id.fleet
                        .adopt(Table::Origins, v.hash, 0, || "x".into(), || None);
                }
            }
        });
        let f = id.see(&away);
        of(&f, Detector::NewOrigin).first().map_or(0.0, |f| f.bits)
    }

    #[test]
    fn peers_on_a_network_excuse_little_for_a_key_that_only_ever_used_one() {
        // Fifteen peers on the new network: four bits of discount for an identity that has shown
        // it moves between networks, a third of that for one that never did.
        let lone = network_bits_after(false, 15);
        let lone_unshared = network_bits_after(false, 0);
        assert!(
            lone_unshared - lone <= 4.0 / 3.0 + 1e-9 && lone_unshared - lone > 1.0,
            "{lone_unshared} -> {lone}"
        );
        let roaming = network_bits_after(true, 15);
        let roaming_unshared = network_bits_after(true, 0);
        assert!(
            roaming_unshared - roaming > 2.5,
            "{roaming_unshared} -> {roaming}"
        );
    }

    #[test]
    fn an_identity_still_warming_up_is_not_judged_on_new_origins() {
        let mut id = Identity::default_rules();
        id.routine("young", "s3:GetObject", HOME, (0, 24), 9..17, 2);
        let f = id.see(&event("young", at(0, 20), "s3:GetObject", AWAY));
        assert!(!detectors(&f).contains(&Detector::NewOrigin), "{f:?}");
    }
}
