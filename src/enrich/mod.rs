//! enrich: what records lack, looked up from files the operator provides: cloud providers'
//! published ranges, and country and ASN databases. Pure lookups over tables loaded (and
//! validated) at start; nothing here performs I/O after loading. The engine adds country and ASN
//! to an event before its identity learns it ([`with_geo`]).

pub mod geo;
pub mod ranges;

pub use geo::{Geo, GeoDbs};
pub use ranges::{CloudNet, CloudRanges};

use crate::event::AccessEvent;

/// `ev` with the country and ASN its address has in `geo`, when it lacks them; `None` when there
/// is nothing to add (no databases, no public address, or both already known).
pub fn with_geo(ev: &AccessEvent, geo: &GeoDbs) -> Option<AccessEvent> {
    let o = &ev.origin;
    if geo.is_empty() || (o.asn.is_some() && o.country.is_some()) {
        return None;
    }
    let ip = o.ip.filter(|ip| crate::baseline::origin::is_public(*ip))?;
    let found = geo.lookup(ip);
    if found.asn.is_none() && found.country.is_none() {
        return None;
    }
    let mut ev = ev.clone();
    ev.origin.asn = ev.origin.asn.or(found.asn);
    ev.origin.country = ev.origin.country.take().or(found.country);
    Some(ev)
}
