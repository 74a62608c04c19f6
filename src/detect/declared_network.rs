//! Outside the declared workload: a call from outside the networks the inventory declares for
//! the identity, or from a cluster, namespace, pod, instance or VPC endpoint outside its declared
//! binding. Declared, not learned, so it counts from the first event; reported once per network
//! (/24) new to the identity, and once per stretch of calls outside the binding (a call inside
//! it ends the stretch).

use serde_json::json;

use super::{Detector, Finding, Observation};
use crate::baseline::Profile;
use crate::baseline::lifecycle::notice;
use crate::baseline::origin::Level;

pub fn check(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let inv = &o.rules.model.detectors.inventory;
    let m = o.meta?;
    if !inv.enabled {
        return None;
    }
    if let Some(f) = outside_networks(o) {
        return Some(f);
    }
    if m.binding.is_empty() {
        return None;
    }
    let outside = m.binding.outside(o.event);
    if !p
        .lifecycle
        .notice(notice::OUTSIDE_BINDING, outside.is_some())
    {
        return None;
    }
    let (dim, declared, seen) = outside?;
    let declared: Vec<&str> = declared.iter().map(|g| g.pattern()).collect();
    let summary = match seen {
        Some(v) => format!(
            "called from {dim} {v}, outside the {dim}s declared for it ({})",
            declared.join(", ")
        ),
        None => format!(
            "called without a VPC endpoint, although it is bound to {}",
            declared.join(", ")
        ),
    };
    Some(o.finding(
        Detector::OutsideWorkload,
        inv.outside_declared_bits * inv.weight,
        0.0,
        summary,
        json!({"binding": dim, "declared": declared, "owner": m.owner}),
        json!({dim: seen, "ip": o.event.origin.ip}),
    ))
}

fn outside_networks(o: &Observation<'_>) -> Option<Finding> {
    let inv = &o.rules.model.detectors.inventory;
    let (Some(m), Some(ip)) = (o.meta, o.event.origin.ip) else {
        return None;
    };
    if !m.outside_networks(ip) || !o.learned.origins.iter().any(|n| n.level == Level::Network) {
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

    #[test]
    fn a_call_outside_the_declared_binding_is_reported_once_per_stretch_outside() {
        let inv = Inventory::parse(
            r#"{"key":"sa","owner":"o","workload":{"clusters":["prod-*"],"namespaces":["payments"]}}"#,
            "inv.jsonl",
        )
        .unwrap();
        let mut id = Identity::new(Rules::new(Model::embedded()).with_inventory(inv));
        let wl = |cluster: &str, ns: &str| {
            format!(r#""origin":{{"workload":{{"cluster":"{cluster}","namespace":"{ns}"}}}}"#)
        };
        assert!(
            id.see(&event("sa", T0, "get:secrets", &wl("prod-eu", "payments")))
                .is_empty()
        );
        let f = id.see(&event(
            "sa",
            T0 + 1,
            "get:secrets",
            &wl("prod-eu", "default"),
        ));
        assert_eq!(detectors(&f), [Detector::OutsideWorkload]);
        assert!(
            f[0].summary
                .contains("namespace default, outside the namespaces declared for it (payments)"),
            "{}",
            f[0].summary
        );
        assert!(
            id.see(&event("sa", T0 + 2, "get:secrets", &wl("dev", "payments")))
                .is_empty()
        );
        assert!(
            id.see(&event(
                "sa",
                T0 + 3,
                "get:secrets",
                &wl("prod-us", "payments")
            ))
            .is_empty()
        );
        let g = id.see(&event("sa", T0 + 4, "get:secrets", &wl("dev", "payments")));
        assert_eq!(detectors(&g), [Detector::OutsideWorkload]);
        assert_eq!(g[0].observed.json()["cluster"], "dev");
    }

    #[test]
    fn an_identity_bound_to_vpc_endpoints_calling_over_the_internet_is_outside_its_binding() {
        let inv = Inventory::parse(
            r#"{"key":"etl","owner":"o","workload":{"vpc_endpoints":["vpce-0abc*"]}}"#,
            "inv.jsonl",
        )
        .unwrap();
        let mut id = Identity::new(Rules::new(Model::embedded()).with_inventory(inv));
        let via = r#""origin":{"ip":"10.0.0.5","vpc_endpoint":"vpce-0abc1234"}"#;
        assert!(id.see(&event("etl", T0, "s3:GetObject", via)).is_empty());
        let f = id.see(&event(
            "etl",
            T0 + 1,
            "s3:GetObject",
            r#""origin":{"ip":"198.51.100.7"}"#,
        ));
        assert_eq!(detectors(&f), [Detector::OutsideWorkload]);
        assert!(
            f[0].summary.contains("without a VPC endpoint"),
            "{}",
            f[0].summary
        );
    }
}
