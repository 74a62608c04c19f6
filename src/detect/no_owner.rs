//! No owner: an active identity the inventory declares without an owner (or, with
//! `undeclared_is_unowned`, does not declare at all). Every machine identity should have someone
//! answerable for it; one in use with nobody is a finding in itself. Declared, not learned, so it
//! counts from the first event; raised once while the owner is missing, and again if an owner
//! declared later is removed.

use serde_json::json;

use super::{Detector, Finding, Observation};
use crate::baseline::Profile;
use crate::baseline::lifecycle::notice;

pub fn check(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let inv = &o.rules.model.detectors.inventory;
    if !inv.enabled || !o.rules.inventory.in_use() {
        return None;
    }
    let unowned = match o.meta {
        Some(m) => m.owner.is_none(),
        None => inv.undeclared_is_unowned,
    };
    if !p.lifecycle.notice(notice::NO_OWNER, unowned) {
        return None;
    }
    let summary = match o.meta {
        Some(_) => "in use, and its inventory record names no owner".to_owned(),
        None => "in use, and the identity inventory does not declare it (no owner)".to_owned(),
    };
    Some(o.finding(
        Detector::NoOwner,
        inv.no_owner_bits * inv.weight,
        0.0,
        summary,
        json!({
            "declared": o.meta.is_some(),
            "owner": null,
            "team": o.meta.and_then(|m| m.team.clone()),
            "purpose": o.meta.and_then(|m| m.purpose.clone()),
        }),
        json!({"action": o.event.action, "ip": o.event.origin.ip}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::config::{Inventory, Model, Rules};

    #[test]
    fn an_identity_declared_without_an_owner_is_reported_once_until_an_owner_appears_and_goes() {
        let inv = Inventory::parse(
            "{\"key\":\"etl\",\"team\":\"data\"}\n{\"key\":\"ci\",\"owner\":\"platform\"}\n",
            "inv.jsonl",
        )
        .unwrap();
        let mut id = Identity::new(Rules::new(Model::embedded()).with_inventory(inv.clone()));
        let first = id.see(&event("etl", T0, "s3:GetObject", ""));
        assert_eq!(detectors(&first), [Detector::NoOwner]);
        assert_eq!(first[0].baseline.json()["team"], "data");
        assert!(id.see(&event("etl", T0 + 1, "s3:GetObject", "")).is_empty());
        // The owner is declared (on the topic): nothing; then removed again: reported again.
        inv.apply("etl", Some(br#"{"owner":"ana"}"#)).unwrap();
        assert!(id.see(&event("etl", T0 + 2, "s3:GetObject", "")).is_empty());
        inv.apply("etl", Some(br#"{"team":"data"}"#)).unwrap();
        let again = id.see(&event("etl", T0 + 3, "s3:GetObject", ""));
        assert_eq!(detectors(&again), [Detector::NoOwner]);
    }

    #[test]
    fn undeclared_identities_count_as_unowned_only_when_the_model_says_so() {
        let inv = Inventory::parse("{\"key\":\"ci\",\"owner\":\"platform\"}\n", "i").unwrap();
        let mut id = Identity::new(Rules::new(Model::embedded()).with_inventory(inv.clone()));
        assert!(id.see(&event("other", T0, "s3:GetObject", "")).is_empty());
        assert!(id.see(&event("ci", T0 + 1, "s3:GetObject", "")).is_empty());
        let mut m = Model::embedded();
        m.detectors.inventory.undeclared_is_unowned = true;
        let mut strict = Identity::new(Rules::new(m.clone()).with_inventory(inv));
        let f = strict.see(&event("other", T0, "s3:GetObject", ""));
        assert_eq!(detectors(&f), [Detector::NoOwner]);
        assert!(f[0].summary.contains("does not declare it"));
        // Without any inventory nothing is known of owners, and nothing is said.
        let mut none = Identity::new(Rules::new(m));
        assert!(none.see(&event("other", T0, "s3:GetObject", "")).is_empty());
    }
}
