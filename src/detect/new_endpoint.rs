//! New endpoint: a first call to an endpoint, weighed by the identity's own rate of meeting new
//! endpoints (a Beta posterior per active hour), plus bonus bits when the endpoint is sensitive
//! (IAM writes, secret reads, RBAC bindings), minus a discount for each doubling of the
//! identities that already call it.

use serde_json::json;

use super::{Detector, Finding, Observation, fleet_discount, round3};
use crate::baseline::Profile;
use crate::baseline::fleet::Table;
use crate::baseline::stats::bits;

pub fn check(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let e = o.learned.endpoint.as_ref()?;
    let r = o.rules;
    let d = &r.model.detectors.new_endpoint;
    if !d.enabled {
        return None;
    }
    let mature = o.learned.mature;
    let novelty = if mature && e.first_new_this_hour {
        bits(e.p_new, d.max_bits)
    } else {
        0.0
    };
    // Sensitivity counts for a young identity only once the fleet has history to judge rarity
    // by; a mature identity's first sensitive call always counts.
    let bonus = if mature || o.learned.fleet_mature {
        e.tier.map_or(0.0, |t| r.tiers[t as usize].bonus_bits)
    } else {
        0.0
    };
    // An endpoint many identities call is less surprising, sensitive or not: a new controller
    // listing secrets like its peers is not an attacker doing so for the first time anywhere in
    // the fleet.
    let discount = fleet_discount(e.users, d.fleet_discount_bits_per_doubling);
    let total = (novelty + bonus - discount).clamp(0.0, d.max_bits);
    if total <= 0.0 {
        return None;
    }
    let top: Vec<String> = p
        .endpoints
        .top(6)
        .iter()
        .filter(|x| x.hash != e.hash)
        .take(5)
        .filter_map(|x| o.fleet.label(Table::Endpoints, x.hash))
        .collect();
    let tier_name = e.tier.map(|t| r.tiers[t as usize].name.as_str());
    let ev = o.event;
    Some(o.finding(
        Detector::NewEndpoint,
        total * d.weight,
        e.p_new,
        format!(
            "first call to {}{} ({} other identities use it; it meets a new endpoint in {:.1}% of its active hours)",
            ev.action,
            tier_name
                .map(|t| format!(", a {t}-sensitivity endpoint"))
                .unwrap_or_default(),
            e.users,
            e.p_new * 100.0
        ),
        json!({"known_endpoints": e.known, "top_endpoints": top, "p_new_endpoint_per_active_hour": round3(e.p_new), "mature": mature}),
        json!({"action": ev.action, "resource": ev.resource, "sensitivity": tier_name, "fleet_identities_using_it": e.users}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn a_stable_identity_calling_iam_for_the_first_time_is_reported_with_its_usual_endpoints() {
        let mut id = established("role", "s3.amazonaws.com:GetObject", "");
        let f = id.see(&event(
            "role",
            at(10, 9),
            "iam.amazonaws.com:CreateAccessKey",
            "",
        ));
        let new = of(&f, Detector::NewEndpoint);
        assert_eq!(new.len(), 1, "{f:?}");
        assert!(
            new[0].summary.contains("critical-sensitivity"),
            "{}",
            new[0].summary
        );
        assert_eq!(
            new[0].baseline.json()["top_endpoints"][0],
            "s3.amazonaws.com:GetObject"
        );
        assert!(new[0].bits >= 12.0);
    }

    #[test]
    fn a_young_identity_meeting_ordinary_endpoints_is_not_reported() {
        let mut id = Identity::default_rules();
        let f: Vec<_> = ["s3:GetObject", "s3:PutObject", "sqs:SendMessage"]
            .iter()
            .enumerate()
            .flat_map(|(i, a)| id.see(&event("young", T0 + i as i64 * 60_000, a, "")))
            .collect();
        assert!(f.is_empty(), "{f:?}");
    }
}
