//! Credential outside its workload, judged two ways:
//! - **pinned session**: a workload-bound session (an instance-profile or ECS task session, a
//!   pod-bound token) used from a network and a client the session itself never used
//!   ([`crate::baseline::pin`]). Judged from the session's first event, with no warm-up: this
//!   is how credentials taken from an instance's metadata service show up, often within a
//!   minute of the workload's own calls.
//! - **unknown network**: a workload-bound credential used from a public network that neither
//!   the identity nor any other identity has used. Needs a fleet with some history and an
//!   identity with some events.

use serde_json::json;

use super::{Detector, Finding, Observation};
use crate::baseline::Profile;
use crate::baseline::origin::{self, Level};

pub fn check(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let m = &o.rules.model;
    let ow = &m.detectors.outside_workload;
    let (l, ev) = (o.learned, o.event);
    if !ow.enabled {
        return None;
    }
    if let Some(b) = &l.pin_breach {
        let since = crate::decode::time::format_rfc3339_ms(b.since_ms);
        let summary = match &b.outside_provider {
            Some(where_) => format!(
                "session bound to workload {} used from {} ({}, client {}); since {} it was used from {} with {}",
                b.workload, b.network, where_, b.client, since, b.pinned_network, b.pinned_client
            ),
            None => format!(
                "session bound to workload {} used from network {} with client {}, while since {} it was used only from {} with {}",
                b.workload, b.network, b.client, since, b.pinned_network, b.pinned_client
            ),
        };
        return Some(o.finding(
            Detector::OutsideWorkload,
            ow.pinned_bits * ow.weight,
            0.0,
            summary,
            json!({"bound_workload": b.workload, "session_since": since,
                   "networks": [b.pinned_network], "clients": [b.pinned_client]}),
            json!({"ip": ev.origin.ip, "network": b.network, "client": b.client, "user_agent": ev.origin.user_agent,
                   "session": ev.session_id, "outside_cloud": b.outside_provider}),
        ));
    }
    if !l.fleet_mature
        || !l.coarse_unknown_to_fleet
        || !ev.origin.workload.is_bound()
        || !ev.origin.ip.is_some_and(origin::is_public)
        || p.events <= m.warmup.min_events_for_origin_checks
    {
        return None;
    }
    let w = &ev.origin.workload;
    let bound_to = w
        .pod
        .as_deref()
        .or(w.instance.as_deref())
        .unwrap_or_default();
    let coarse = l.origins.iter().find(|n| n.level == Level::Coarse);
    let network = coarse.map(|n| n.label.clone()).unwrap_or_default();
    let known = coarse.map(|n| n.known.clone()).unwrap_or_default();
    Some(o.finding(
        Detector::OutsideWorkload,
        ow.bits * ow.weight,
        0.0,
        format!(
            "credential bound to workload {bound_to} used from public network {network}, which neither this identity nor any other has used"
        ),
        json!({"known_networks": known}),
        json!({"ip": ev.origin.ip, "network": network, "bound_workload": bound_to, "user_agent": ev.origin.user_agent}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    const POD: &str = r#""workload":{"pod":"api-7d9f-abcde","namespace":"shop"}"#;

    /// Two days of a service account's calls from inside its cluster, in a fleet five days old;
    /// then one call from `ip` (with the pod binding when `bound`).
    fn call_from(ip: &str, bound: bool) -> Vec<Finding> {
        let mut id = Identity::default_rules();
        id.see(&event(
            "other",
            T0,
            "get:pods",
            r#""origin":{"ip":"10.0.0.2"}"#,
        ));
        let with = |ip: &str| {
            let pod = if bound {
                format!(",{POD}")
            } else {
                String::new()
            };
            format!(r#""origin":{{"ip":"{ip}"{pod}}}"#)
        };
        id.routine(
            "sa",
            "get:pods",
            &with("10.0.3.4"),
            (24 * 5, 24 * 7),
            0..24,
            2,
        );
        id.see(&event("sa", at(7, 0), "get:pods", &with(ip)))
    }

    #[test]
    fn a_pod_token_used_from_an_unknown_public_network_is_reported_even_from_a_young_identity() {
        let f = call_from("203.0.113.50", true);
        let out = of(&f, Detector::OutsideWorkload);
        assert_eq!(out.len(), 1, "{f:?}");
        assert!(out[0].summary.contains("api-7d9f-abcde"));
        assert!(
            out[0].summary.contains("203.0.0.0/16"),
            "{}",
            out[0].summary
        );
    }

    #[test]
    fn an_unbound_credential_or_a_private_address_is_left_to_new_origin() {
        for f in [
            call_from("203.0.113.50", false),
            call_from("10.9.9.9", true),
        ] {
            assert!(!detectors(&f).contains(&Detector::OutsideWorkload), "{f:?}");
        }
    }
}
