//! Country and autonomous system of an address (`--geoip FILE`), from MaxMind DB files: GeoLite2
//! or GeoIP2 Country/City/ASN, DB-IP Lite, IPinfo Lite, ip-location-db. CloudTrail, Kubernetes
//! and GCP audit records carry neither, so without a file the ASN and country origin levels stay
//! empty. Several files may be given (a country database and an ASN database); for each
//! address the first file that knows a field gives it.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::config::{ConfigError, Problem};

/// The databases loaded, in the order given.
#[derive(Default)]
pub struct GeoDbs {
    readers: Vec<maxminddb::Reader<Vec<u8>>>,
}

impl std::fmt::Debug for GeoDbs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDbs")
            .field("databases", &self.readers.len())
            .finish()
    }
}

/// What one database says about an address: the shapes of the databases above, all optional.
#[derive(Deserialize, Default)]
struct Record<'a> {
    /// MaxMind and DB-IP: `country.iso_code`.
    #[serde(borrow)]
    country: Option<Country<'a>>,
    /// ip-location-db and IPinfo Lite: `country_code`.
    #[serde(borrow)]
    country_code: Option<&'a str>,
    /// MaxMind and DB-IP ASN databases.
    autonomous_system_number: Option<u32>,
    /// IPinfo Lite: `"AS15169"`.
    #[serde(borrow)]
    asn: Option<&'a str>,
}

#[derive(Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}

/// Country and ASN of an address, when a database knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Geo {
    pub asn: Option<u32>,
    pub country: Option<String>,
}

impl GeoDbs {
    /// Opens every file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming each file that cannot be read or is not a MaxMind DB.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<GeoDbs, ConfigError> {
        let mut readers = Vec::new();
        let mut problems = Vec::new();
        for p in paths {
            let p = p.as_ref();
            match maxminddb::Reader::open_readfile(p) {
                Ok(r) => readers.push(r),
                Err(e) => problems.push(Problem {
                    key: p.display().to_string(),
                    why: format!("not a readable MaxMind DB file: {e}"),
                }),
            }
        }
        if problems.is_empty() {
            Ok(GeoDbs { readers })
        } else {
            Err(ConfigError {
                file: "--geoip".to_owned(),
                problems,
            })
        }
    }

    pub fn is_empty(&self) -> bool {
        self.readers.is_empty()
    }

    /// The country (ISO code, upper case) and ASN of `ip`, from the first database that knows
    /// each. A malformed record counts as unknown.
    pub fn lookup(&self, ip: IpAddr) -> Geo {
        let mut geo = Geo::default();
        for r in &self.readers {
            let Ok(Some(rec)) = r.lookup::<Record>(ip) else {
                continue;
            };
            if geo.country.is_none() {
                geo.country = rec
                    .country
                    .and_then(|c| c.iso_code)
                    .or(rec.country_code)
                    .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
                    .map(str::to_ascii_uppercase);
            }
            if geo.asn.is_none() {
                geo.asn = rec.autonomous_system_number.or_else(|| {
                    rec.asn
                        .and_then(|a| a.strip_prefix("AS").unwrap_or(a).parse().ok())
                });
            }
            if geo.asn.is_some() && geo.country.is_some() {
                break;
            }
        }
        geo
    }
}
