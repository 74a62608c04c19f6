//! Outside the maintenance windows: an identity declared to be used only in certain windows of
//! the week (a break-glass account, a patching job) used outside all of them. Declared, not
//! learned, so it counts from the first event; raised once per stretch of use outside the
//! windows (a use inside one, or a day of silence, ends the stretch).

use serde_json::json;

use super::{Detector, Finding, Observation};
use crate::baseline::lifecycle::notice;
use crate::baseline::{DAY_MS, Profile};
use crate::decode::time::format_rfc3339_ms;

pub fn check(p: &mut Profile, o: &Observation<'_>) -> Option<Finding> {
    let inv = &o.rules.model.detectors.inventory;
    let m = o.meta?;
    let t = o.event.time_ms;
    if t - o.learned.before.last_seen_ms > DAY_MS {
        p.lifecycle.notice(notice::OUTSIDE_MAINTENANCE, false);
    }
    let outside = inv.enabled && m.outside_maintenance(t);
    if !p.lifecycle.notice(notice::OUTSIDE_MAINTENANCE, outside) {
        return None;
    }
    let windows: Vec<String> = m.maintenance.iter().map(|w| w.to_string()).collect();
    Some(o.finding(
        Detector::OutsideMaintenance,
        inv.outside_maintenance_bits * inv.weight,
        0.0,
        format!(
            "used at {}, outside its declared maintenance windows ({})",
            format_rfc3339_ms(t),
            windows.join("; ")
        ),
        json!({"maintenance_windows": windows, "owner": m.owner}),
        json!({"time": format_rfc3339_ms(t), "action": o.event.action, "ip": o.event.origin.ip}),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::config::{Inventory, Model, Rules};

    #[test]
    fn use_outside_the_declared_windows_is_reported_once_per_stretch() {
        // Saturdays 02:00-04:00 UTC; T0 is a Monday.
        let inv = Inventory::parse(
            r#"{"key":"patch","owner":"ops","maintenance_windows":[{"days":["sat"],"start":"02:00","end":"04:00"}]}"#,
            "inv.jsonl",
        )
        .unwrap();
        let mut id = Identity::new(Rules::new(Model::embedded()).with_inventory(inv));
        assert!(
            id.see(&event("patch", at(5, 2), "ssm:SendCommand", ""))
                .is_empty()
        );
        assert!(
            id.see(&event("patch", at(5, 3), "ssm:SendCommand", ""))
                .is_empty()
        );
        let f = id.see(&event("patch", at(5, 4), "ssm:SendCommand", ""));
        assert_eq!(detectors(&f), [Detector::OutsideMaintenance]);
        assert!(
            f[0].summary.contains("sat 02:00-04:00 UTC"),
            "{}",
            f[0].summary
        );
        assert!(
            id.see(&event("patch", at(5, 5), "ssm:SendCommand", ""))
                .is_empty()
        );
        // Inside again, then outside: a new stretch.
        assert!(
            id.see(&event("patch", at(12, 2), "ssm:SendCommand", ""))
                .is_empty()
        );
        let g = id.see(&event("patch", at(13, 12), "ssm:SendCommand", ""));
        assert_eq!(detectors(&g), [Detector::OutsideMaintenance]);
    }
}
