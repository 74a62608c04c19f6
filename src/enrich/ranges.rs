//! Cloud providers' published address ranges (`--ip-ranges FILE`): AWS `ip-ranges.json`, GCP
//! `cloud.json` and Azure Service Tags, told apart by their keys. An address is looked up by
//! longest prefix, so it is known as the provider's, with the service and region of the most
//! specific range (AWS lists `EC2` ranges inside broader `AMAZON` ones).
//!
//! What it is for: a credential bound to an EC2 instance or ECS task used from an address outside
//! AWS's published ranges cannot be the workload (GuardDuty's `InstanceCredentialExfiltration.
//! OutsideAWS`); with the ranges loaded that is reported on the first such call.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{ConfigError, Problem};

/// Which provider, service and region an address belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudNet {
    /// `aws`, `gcp` or `azure` (the names revocation commands use for providers).
    pub provider: &'static str,
    pub service: Arc<str>,
    pub region: Arc<str>,
}

impl CloudNet {
    /// `aws/EC2/eu-west-1`, as evidence shows it.
    pub fn label(&self) -> String {
        let mut s = format!("{}/{}", self.provider, self.service);
        if !self.region.is_empty() {
            s.push('/');
            s.push_str(&self.region);
        }
        s
    }
}

/// Prefixes by length, most specific first, each a map from the masked address to its range.
#[derive(Debug, Default)]
struct Table<K> {
    by_len: Vec<(u8, HashMap<K, u32>)>,
}

impl<K: std::hash::Hash + Eq + Copy> Table<K> {
    fn insert(&mut self, len: u8, key: K, idx: u32, nets: &[CloudNet]) {
        let pos = match self.by_len.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(p) => p,
            Err(p) => {
                self.by_len.insert(p, (len, HashMap::new()));
                p
            }
        };
        let map = &mut self.by_len[pos].1;
        // The same prefix under several services: the specific one wins over the catch-all.
        match map.get(&key) {
            Some(&old) if &*nets[old as usize].service != "AMAZON" => {}
            _ => {
                map.insert(key, idx);
            }
        }
    }
}

/// The loaded ranges of one or more files.
#[derive(Debug, Default)]
pub struct CloudRanges {
    v4: Table<u32>,
    v6: Table<u128>,
    nets: Vec<CloudNet>,
    /// Providers some file gave ranges for: an address outside them is outside that provider.
    providers: Vec<&'static str>,
}

impl CloudRanges {
    /// True when no file was loaded.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// True when ranges of `provider` (`aws`, `gcp`, `azure`) were loaded.
    pub fn covers(&self, provider: &str) -> bool {
        self.providers.contains(&provider)
    }

    /// Distinct prefixes loaded.
    pub fn len(&self) -> usize {
        self.v4.by_len.iter().map(|(_, m)| m.len()).sum::<usize>()
            + self.v6.by_len.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    /// The most specific published range holding `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&CloudNet> {
        let idx = match ip {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                self.v4.by_len.iter().find_map(|(len, m)| {
                    let mask = if *len == 0 {
                        0
                    } else {
                        u32::MAX << (32 - u32::from(*len))
                    };
                    m.get(&(bits & mask)).copied()
                })
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                self.v6.by_len.iter().find_map(|(len, m)| {
                    let mask = if *len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - u32::from(*len))
                    };
                    m.get(&(bits & mask)).copied()
                })
            }
        }?;
        self.nets.get(idx as usize)
    }

    /// Loads every file, each in any of the three formats.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and what is wrong with it.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<CloudRanges, ConfigError> {
        let mut all = CloudRanges::default();
        for p in paths {
            let (file, text) = ConfigError::read(p.as_ref())?;
            all.add(&text, &file)?;
        }
        Ok(all)
    }

    /// Adds the ranges of one file's text; `file` names it in errors.
    ///
    /// # Errors
    /// As [`CloudRanges::load`].
    pub fn add(&mut self, text: &str, file: &str) -> Result<(), ConfigError> {
        let problem = |key: &str, why: String| ConfigError {
            file: file.to_owned(),
            problems: vec![Problem {
                key: key.to_owned(),
                why,
            }],
        };
        let doc: Doc = serde_json::from_str(text).map_err(|e| {
            problem(
                "(document)",
                format!("not a published ranges file (AWS ip-ranges.json, GCP cloud.json or Azure Service Tags): {e}"),
            )
        })?;
        let mut bad = Vec::new();
        let before = self.nets.len();
        let provider = if let Some(v) = &doc.values {
            for (i, tag) in v.iter().enumerate() {
                let props = tag.properties.as_ref();
                let service = props
                    .and_then(|p| p.system_service.as_deref())
                    .filter(|s| !s.is_empty())
                    .unwrap_or(tag.name.as_deref().unwrap_or(""));
                let region = props.and_then(|p| p.region.as_deref()).unwrap_or("");
                for pfx in props
                    .map(|p| p.address_prefixes.as_slice())
                    .unwrap_or_default()
                {
                    self.push(pfx, "azure", service, region, &mut bad, i);
                }
            }
            "azure"
        } else if doc.prefixes.is_some() || doc.ipv6_prefixes.is_some() {
            let all: Vec<&Prefix> = doc
                .prefixes
                .iter()
                .flatten()
                .chain(doc.ipv6_prefixes.iter().flatten())
                .collect();
            // AWS writes `ip_prefix`/`ipv6_prefix`, GCP `ipv4Prefix`/`ipv6Prefix`.
            let aws = all
                .iter()
                .any(|x| x.ip_prefix.is_some() || x.ipv6_prefix.is_some());
            let provider = if aws { "aws" } else { "gcp" };
            for (i, x) in all.iter().enumerate() {
                let prefix = x
                    .ip_prefix
                    .as_deref()
                    .or(x.ipv6_prefix.as_deref())
                    .or(x.ipv4_prefix.as_deref())
                    .or(x.ipv6_prefix_gcp.as_deref());
                let region = x.region.as_deref().or(x.scope.as_deref()).unwrap_or("");
                let service = x.service.as_deref().unwrap_or("");
                match prefix {
                    Some(pfx) => self.push(pfx, provider, service, region, &mut bad, i),
                    None => bad.push(format!(
                        "[{i}]: no ip_prefix, ipv6_prefix, ipv4Prefix or ipv6Prefix"
                    )),
                }
            }
            provider
        } else {
            return Err(problem(
                "(document)",
                "no `prefixes` (AWS, GCP) or `values` (Azure Service Tags) list".to_owned(),
            ));
        };
        if !bad.is_empty() {
            let n = bad.len();
            bad.truncate(10);
            return Err(ConfigError {
                file: file.to_owned(),
                problems: bad
                    .into_iter()
                    .map(|why| Problem {
                        key: "prefixes".to_owned(),
                        why,
                    })
                    .chain((n > 10).then(|| Problem {
                        key: "prefixes".to_owned(),
                        why: format!("... and {} more", n - 10),
                    }))
                    .collect(),
            });
        }
        if self.nets.len() == before {
            return Err(problem("prefixes", "the file lists no ranges".to_owned()));
        }
        if !self.providers.contains(&provider) {
            self.providers.push(provider);
        }
        Ok(())
    }

    fn push(
        &mut self,
        prefix: &str,
        provider: &'static str,
        service: &str,
        region: &str,
        bad: &mut Vec<String>,
        i: usize,
    ) {
        let Some((addr, len)) = prefix.split_once('/') else {
            bad.push(format!("[{i}]: `{prefix}` is not ADDRESS/LENGTH"));
            return;
        };
        let (Ok(addr), Ok(len)) = (addr.parse::<IpAddr>(), len.parse::<u8>()) else {
            bad.push(format!("[{i}]: `{prefix}` is not ADDRESS/LENGTH"));
            return;
        };
        let idx = self.nets.len() as u32;
        // Labels repeat across thousands of ranges: share them.
        let shared = |s: &str, pick: fn(&CloudNet) -> &Arc<str>| -> Arc<str> {
            self.nets
                .last()
                .map(pick)
                .filter(|x| &***x == s)
                .cloned()
                .unwrap_or_else(|| Arc::from(s))
        };
        let net = CloudNet {
            provider,
            service: shared(service, |n| &n.service),
            region: shared(region, |n| &n.region),
        };
        match addr {
            IpAddr::V4(a) if len <= 32 => {
                let mask = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(len))
                };
                self.nets.push(net);
                self.v4.insert(len, u32::from(a) & mask, idx, &self.nets);
            }
            IpAddr::V6(a) if len <= 128 => {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(len))
                };
                self.nets.push(net);
                self.v6.insert(len, u128::from(a) & mask, idx, &self.nets);
            }
            _ => bad.push(format!(
                "[{i}]: `{prefix}` has a prefix length out of range"
            )),
        }
    }
}

/// The keys of the three formats (only what is read).
#[derive(Deserialize)]
struct Doc {
    prefixes: Option<Vec<Prefix>>,
    ipv6_prefixes: Option<Vec<Prefix>>,
    values: Option<Vec<Tag>>,
}

#[derive(Deserialize)]
struct Prefix {
    ip_prefix: Option<String>,
    ipv6_prefix: Option<String>,
    #[serde(rename = "ipv4Prefix")]
    ipv4_prefix: Option<String>,
    #[serde(rename = "ipv6Prefix")]
    ipv6_prefix_gcp: Option<String>,
    region: Option<String>,
    scope: Option<String>,
    service: Option<String>,
}

#[derive(Deserialize)]
struct Tag {
    name: Option<String>,
    properties: Option<TagProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagProperties {
    region: Option<String>,
    system_service: Option<String>,
    #[serde(default)]
    address_prefixes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/ip-ranges")
                .join(name),
        )
        .unwrap()
    }

    fn all() -> CloudRanges {
        let mut r = CloudRanges::default();
        for f in [
            "aws-ip-ranges.json",
            "gcp-cloud.json",
            "azure-service-tags.json",
        ] {
            r.add(&fixture(f), f).unwrap();
        }
        r
    }

    fn at(r: &CloudRanges, ip: &str) -> Option<String> {
        r.lookup(ip.parse().unwrap()).map(CloudNet::label)
    }

    #[test]
    fn each_providers_published_format_is_read_and_the_most_specific_range_wins() {
        let r = all();
        assert!(r.covers("aws") && r.covers("gcp") && r.covers("azure"));
        // The same prefix as AMAZON and as EC2: the service is EC2.
        assert_eq!(at(&r, "54.201.7.12").as_deref(), Some("aws/EC2/us-west-2"));
        assert_eq!(at(&r, "52.94.1.1").as_deref(), Some("aws/AMAZON/us-east-1"));
        assert_eq!(
            at(&r, "2a05:d018:a2b::17").as_deref(),
            Some("aws/EC2/eu-west-1")
        );
        assert_eq!(
            at(&r, "34.81.0.9").as_deref(),
            Some("gcp/Google Cloud/asia-east1")
        );
        assert_eq!(
            at(&r, "2600:1900:4001::1").as_deref(),
            Some("gcp/Google Cloud/us-central1")
        );
        assert_eq!(
            at(&r, "20.60.0.77").as_deref(),
            Some("azure/AzureStorage/westeurope")
        );
        assert_eq!(
            at(&r, "13.69.1.1").as_deref(),
            Some("azure/AzureCloud.westeurope/westeurope")
        );
        assert_eq!(at(&r, "198.51.100.23"), None);
        assert_eq!(r.len(), 13, "distinct prefixes");
    }

    #[test]
    fn a_file_that_is_not_a_ranges_file_is_refused_naming_it_and_the_bad_prefixes() {
        let mut r = CloudRanges::default();
        let e = r.add("{\"hello\": 1}", "x.json").unwrap_err();
        assert_eq!(e.file, "x.json");
        assert!(e.problems[0].why.contains("no `prefixes`"), "{e:?}");
        let e = r
            .add(
                r#"{"prefixes":[{"ip_prefix":"10.0.0.0/33"},{"ip_prefix":"nope"}]}"#,
                "y.json",
            )
            .unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e:?}");
        assert!(e.problems[1].why.contains("`nope`"));
        assert!(r.add("not json", "z.json").is_err());
        assert!(r.is_empty());
    }
}
