//! Outside the declared networks: a call from outside the networks the inventory declares for
//! the identity. Declared, not learned, so it counts from the first event; reported once per
//! network (/24) new to the identity.

use serde_json::json;

use super::{Detector, Finding, Observation};
use crate::baseline::Profile;
use crate::baseline::origin::Level;

pub fn check(_p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let inv = &o.rules.model.detectors.inventory;
    let (Some(m), Some(ip)) = (o.meta, o.event.origin.ip) else {
        return None;
    };
    if !inv.enabled
        || !m.outside_networks(ip)
        || !o.learned.origins.iter().any(|n| n.level == Level::Network)
    {
        return None;
    }
    let declared: Vec<String> = m.networks.iter().map(|c| c.to_string()).collect();
    Some(o.finding(
        Detector::OutsideWorkload,
        inv.outside_declared_bits * inv.weight,
        0.0,
        format!(
            "called from {ip}, outside the networks declared for it ({})",
            declared.join(", ")
        ),
        json!({"declared_networks": declared, "owner": m.owner}),
        json!({"ip": ip, "user_agent": o.event.origin.user_agent}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::config::{Inventory, Model, Rules};

    #[test]
    fn the_first_call_from_outside_the_declared_networks_is_reported_once_per_network() {
        let inv = Inventory::parse(
            r#"{"key":"etl","owner":"data","networks":["10.0.0.0/8"]}"#,
            "inv.jsonl",
        )
        .unwrap();
        let mut id = Identity::new(Rules::new(Model::embedded()).with_inventory(inv));
        let inside = id.see(&event(
            "etl",
            T0,
            "s3:GetObject",
            r#""origin":{"ip":"10.1.1.1"}"#,
        ));
        assert!(inside.is_empty(), "{inside:?}");
        let outside = r#""origin":{"ip":"198.51.100.7"}"#;
        let f = id.see(&event("etl", T0 + 60_000, "s3:GetObject", outside));
        assert_eq!(detectors(&f), [Detector::OutsideWorkload]);
        assert!(
            f[0].summary
                .contains("outside the networks declared for it (10.0.0.0/8)")
        );
        let again = id.see(&event("etl", T0 + 120_000, "s3:GetObject", outside));
        assert!(again.is_empty(), "the same network again: {again:?}");
    }
}
