//! enrich: what records lack, looked up from files the operator provides: cloud providers'
//! published ranges, and country and ASN databases. Pure lookups over tables loaded (and
//! validated) at start; nothing here performs I/O after loading. The engine adds country and ASN
//! to an event before its identity learns it ([`with_geo`]).

pub mod geo;
pub mod ranges;

pub use geo::{Geo, GeoDbs};
pub use ranges::{CloudNet, CloudRanges};

use std::sync::{Arc, RwLock};

use crate::event::AccessEvent;

/// A table loaded at start that the service may replace while it runs (SIGHUP): every clone
/// shares it, and readers take the current version.
#[derive(Debug)]
pub struct Reloadable<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Reloadable<T> {
    fn clone(&self) -> Self {
        Reloadable(self.0.clone())
    }
}

impl<T> Reloadable<T> {
    pub fn new(t: T) -> Reloadable<T> {
        Reloadable(Arc::new(RwLock::new(Arc::new(t))))
    }

    /// The current version.
    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the table for every holder; readers that took the old one finish with it.
    pub fn replace(&self, t: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
    }
}

/// `ev` with the country and ASN its address has in `geo`, when it lacks them; `None` when there
/// is nothing to add (no databases, no public address, or both already known).
pub fn with_geo(ev: &AccessEvent, geo: &Reloadable<GeoDbs>) -> Option<AccessEvent> {
    let o = &ev.origin;
    if o.asn.is_some() && o.country.is_some() {
        return None;
    }
    let ip = o.ip.filter(|ip| crate::baseline::origin::is_public(*ip))?;
    let geo = geo.get();
    if geo.is_empty() {
        return None;
    }
    let found = geo.lookup(ip);
    if found.asn.is_none() && found.country.is_none() {
        return None;
    }
    let mut ev = ev.clone();
    ev.origin.asn = ev.origin.asn.or(found.asn);
    ev.origin.country = ev.origin.country.take().or(found.country);
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reloaded_table_is_seen_by_every_holder_and_an_old_reader_keeps_its_version() {
        let a = Reloadable::new(1);
        let b = a.clone();
        let old = b.get();
        a.replace(2);
        assert_eq!((*a.get(), *b.get(), *old), (2, 2, 1));
    }
}
