//! Identity metadata: what the organisation declares about an identity (owner, expiry, the
//! networks its workload runs in, whether it may be revoked automatically). Declared facts beat
//! learned ones: a call from outside the declared networks, or after expiry, counts from the
//! identity's very first event, warm-up or not.
//!
//! The inventory is a JSONL file or JSON array of `schemas/identity.v1.json` records, loaded at
//! start; every bad record is reported with its line and field.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, Problem};
use crate::decode::time::parse_timestamp_ms;

/// An address block, `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` (a bare address is a /32 or /128).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an address block (ADDR/PREFIX)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix must be 0..={max}"))?,
            None => max,
        };
        // `::ffff:10.0.0.0/104` is the IPv4 block `10.0.0.0/8` written as IPv6.
        if let IpAddr::V6(v6) = net
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            return Ok(Cidr {
                net: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
        Ok(Cidr { net, prefix })
    }

    /// True when `ip` is in the block; an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// What is declared about one identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityMeta {
    pub owner: Option<String>,
    pub expires_at_ms: Option<i64>,
    /// Networks the identity's workload runs in; empty when not declared.
    pub networks: Vec<Cidr>,
    /// Never revoked automatically.
    pub protected: bool,
    /// Its revocation commands may be acted on without a person's approval (in `enforce` mode).
    pub auto_approve: bool,
}

impl IdentityMeta {
    /// True when networks are declared and `ip` is in none of them.
    pub fn outside_networks(&self, ip: IpAddr) -> bool {
        !self.networks.is_empty() && !self.networks.iter().any(|c| c.contains(ip))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    key: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    networks: Vec<String>,
    #[serde(default)]
    protected: bool,
    #[serde(default)]
    auto_approve: bool,
}

/// Declared metadata by principal key.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    by_key: HashMap<String, IdentityMeta>,
}

impl Inventory {
    pub fn get(&self, key: &str) -> Option<&IdentityMeta> {
        self.by_key.get(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Loads an inventory file.
    ///
    /// # Errors
    /// [`ConfigError`] listing every unreadable record and bad field, by line.
    pub fn load(path: &Path) -> Result<Inventory, ConfigError> {
        let (file, text) = ConfigError::read(path)?;
        Inventory::parse(&text, &file)
    }

    /// Parses inventory text (JSONL or a JSON array); `file` names it in errors.
    ///
    /// # Errors
    /// As [`Inventory::load`].
    pub fn parse(text: &str, file: &str) -> Result<Inventory, ConfigError> {
        let mut problems = Vec::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let items: Vec<(String, serde_json::Result<Record>)> = if text.trim_start().starts_with('[')
        {
            match serde_json::from_str::<Vec<serde_json::Value>>(text) {
                Ok(v) => v
                    .into_iter()
                    .enumerate()
                    .map(|(i, x)| (format!("[{i}]"), serde_json::from_value(x)))
                    .collect(),
                Err(e) => vec![("(document)".to_owned(), Err(e))],
            }
        } else {
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| (format!("line {}", i + 1), serde_json::from_str(l)))
                .collect()
        };
        let mut by_key = HashMap::new();
        for (at, item) in items {
            let r = match item {
                Ok(r) => r,
                Err(e) => {
                    problems.push(Problem {
                        key: at,
                        why: e.to_string(),
                    });
                    continue;
                }
            };
            if r.key.trim().is_empty() {
                problems.push(Problem {
                    key: format!("{at}.key"),
                    why: "must not be empty: it is the principal key the identity's events carry"
                        .to_owned(),
                });
                continue;
            }
            let mut meta = IdentityMeta {
                owner: r.owner,
                protected: r.protected,
                auto_approve: r.auto_approve,
                ..IdentityMeta::default()
            };
            if let Some(t) = r.expires_at.as_deref() {
                match parse_timestamp_ms(t) {
                    Some(ms) => meta.expires_at_ms = Some(ms),
                    None => problems.push(Problem {
                        key: format!("{at}.expires_at"),
                        why: format!("`{t}` is not an RFC 3339 time"),
                    }),
                }
            }
            for (j, n) in r.networks.iter().enumerate() {
                match Cidr::parse(n) {
                    Ok(c) => meta.networks.push(c),
                    Err(why) => problems.push(Problem {
                        key: format!("{at}.networks[{j}]"),
                        why,
                    }),
                }
            }
            if by_key.insert(r.key.clone(), meta).is_some() {
                problems.push(Problem {
                    key: format!("{at}.key"),
                    why: format!("`{}` is declared twice", r.key),
                });
            }
        }
        if problems.is_empty() {
            Ok(Inventory { by_key })
        } else {
            Err(ConfigError {
                file: file.to_owned(),
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks_contain_their_addresses_only() {
        let c = Cidr::parse("10.20.0.0/16").unwrap();
        assert!(c.contains("10.20.3.4".parse().unwrap()));
        assert!(!c.contains("10.21.0.1".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8:5::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("203.0.113.7")
                .unwrap()
                .contains("203.0.113.7".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn ipv4_mapped_blocks_and_addresses_match_their_ipv4_forms() {
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains("10.1.2.3".parse().unwrap()));
        assert!(mapped.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
        let v4 = Cidr::parse("192.0.2.0/24").unwrap();
        assert!(v4.contains("::ffff:192.0.2.9".parse().unwrap()));
    }

    #[test]
    fn a_byte_order_mark_is_ignored_and_empty_keys_and_impossible_offsets_are_refused() {
        let ok = Inventory::parse("\u{feff}{\"key\":\"a\"}\n", "i.jsonl").unwrap();
        assert!(ok.get("a").is_some());
        let e = Inventory::parse(
            "{\"key\":\"\"}\n{\"key\":\"b\",\"expires_at\":\"2026-01-01T00:00:00+99:99\"}\n",
            "i.jsonl",
        )
        .unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["line 1.key", "line 2.expires_at"], "{e}");
    }

    #[test]
    fn every_bad_record_is_reported_by_line_and_field() {
        let text = r#"{"key":"a","owner":"team-payments","networks":["10.0.0.0/8"],"expires_at":"2027-01-01T00:00:00Z"}
{"key":"b","networks":["not-a-net"],"expires_at":"soon"}
{"key":"c","colour":"red"}
{"key":"a"}
"#;
        let err = Inventory::parse(text, "ids.jsonl").unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "line 2.expires_at",
                "line 2.networks[0]",
                "line 3",
                "line 4.key"
            ],
            "{err}"
        );
        let ok = Inventory::parse(text.lines().next().unwrap(), "ids.jsonl").unwrap();
        let a = ok.get("a").unwrap();
        assert_eq!(a.owner.as_deref(), Some("team-payments"));
        assert!(a.outside_networks("203.0.113.9".parse().unwrap()));
        assert!(!a.outside_networks("10.1.2.3".parse().unwrap()));
    }
}
