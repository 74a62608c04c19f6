//! Origin generalisation: an address is known at several levels (its /24, its /16, its ASN and
//! country when the record has them), a client by family and major version, a workload by its
//! stable name. Each level is hashed without allocating; labels are built only for evidence.

use std::hash::Hasher;
use std::net::IpAddr;

use rustc_hash::FxHasher;

use crate::config::model::BaselineConfig;
use crate::event::Origin;

/// The levels at which an origin is tracked, from most to least specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Level {
    /// IPv4 /24 or IPv6 /48 (or a non-address source such as `AWS Internal`).
    Network = 0,
    /// IPv4 /16 or IPv6 /32: roughly one provider allocation.
    Coarse = 1,
    Asn = 2,
    Country = 3,
    /// User-agent family and major version: `aws-cli/2`, `Boto3/1`, `kubectl/1`.
    Client = 4,
    /// Stable workload name: VPC endpoint, Kubernetes deployment of the bound pod, cluster.
    Workload = 5,
}

pub const LEVELS: [Level; 6] = [
    Level::Network,
    Level::Coarse,
    Level::Asn,
    Level::Country,
    Level::Client,
    Level::Workload,
];

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Network => "network",
            Level::Coarse => "coarse_network",
            Level::Asn => "asn",
            Level::Country => "country",
            Level::Client => "client",
            Level::Workload => "workload",
        }
    }

    /// Levels that describe where on the network a call came from (nested, not independent).
    pub fn is_network(self) -> bool {
        matches!(
            self,
            Level::Network | Level::Coarse | Level::Asn | Level::Country
        )
    }
}

/// The coarse-level value standing for all private, loopback, link-local and CGNAT space.
pub const INTERNAL: &str = "internal";

/// One generalised origin value: its hash (for baselines) and how to label it (for evidence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginValue {
    pub level: Level,
    pub hash: u64,
}

fn hasher(level: Level) -> FxHasher {
    let mut h = FxHasher::default();
    h.write_u8(level as u8);
    h
}

fn masked(ip: IpAddr, v4: u8, v6: u8) -> (IpAddr, u8) {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if v4 == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(v4))
            };
            (IpAddr::V4((bits & mask).into()), v4)
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if v6 == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(v6))
            };
            (IpAddr::V6((bits & mask).into()), v6)
        }
    }
}

/// Calls `f` for each origin level the event has a value at.
pub fn for_each_value(origin: &Origin, cfg: &BaselineConfig, mut f: impl FnMut(OriginValue)) {
    let mut emit = |level: Level, write: &dyn Fn(&mut FxHasher)| {
        let mut h = hasher(level);
        write(&mut h);
        f(OriginValue {
            level,
            hash: h.finish(),
        });
    };
    if let Some(ip) = origin.ip {
        let (net, _) = masked(ip, cfg.ipv4_network_prefix, cfg.ipv6_network_prefix);
        emit(Level::Network, &|h| hash_ip(h, net));
        if is_public(ip) {
            let (coarse, _) = masked(ip, cfg.ipv4_coarse_prefix, cfg.ipv6_coarse_prefix);
            emit(Level::Coarse, &|h| hash_ip(h, coarse));
        } else {
            // All internal address space is one coarse network: moving between private subnets
            // (pods rescheduled, new VPC subnets) is the organisation's own churn, while a
            // stolen credential used from outside arrives from public space.
            emit(Level::Coarse, &|h| h.write(INTERNAL.as_bytes()));
        }
    } else if let Some(svc) = origin.service.as_deref() {
        emit(Level::Network, &|h| h.write(svc.as_bytes()));
        emit(Level::Coarse, &|h| h.write(svc.as_bytes()));
    }
    if let Some(asn) = origin.asn {
        emit(Level::Asn, &|h| h.write_u32(asn));
    }
    if let Some(c) = origin.country.as_deref() {
        emit(Level::Country, &|h| h.write(c.as_bytes()));
    }
    if let Some(ua) = origin.user_agent.as_deref() {
        let (family, major) = client_family(ua);
        emit(Level::Client, &|h| {
            h.write(family.as_bytes());
            h.write_u8(0xff);
            h.write(major.as_bytes());
        });
    }
    if let Some((ns, name)) = workload_parts(origin) {
        emit(Level::Workload, &|h| {
            if let Some(ns) = ns {
                h.write(ns.as_bytes());
                h.write_u8(b'/');
            }
            h.write(name.as_bytes());
        });
    }
}

fn hash_ip(h: &mut FxHasher, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => h.write_u32(u32::from(a)),
        IpAddr::V6(a) => h.write_u128(u128::from(a)),
    }
}

/// Human-readable label of the value the event has at `level` (for evidence and fleet tables).
pub fn label(origin: &Origin, level: Level, cfg: &BaselineConfig) -> String {
    match level {
        Level::Coarse if origin.ip.is_some_and(|ip| !is_public(ip)) => INTERNAL.to_owned(),
        Level::Network | Level::Coarse => match origin.ip {
            Some(ip) => {
                let (v4, v6) = if level == Level::Network {
                    (cfg.ipv4_network_prefix, cfg.ipv6_network_prefix)
                } else {
                    (cfg.ipv4_coarse_prefix, cfg.ipv6_coarse_prefix)
                };
                let (net, len) = masked(ip, v4, v6);
                let len = if ip.is_ipv4() { len } else { v6.max(len) };
                format!("{net}/{len}")
            }
            None => origin.service.clone().unwrap_or_default(),
        },
        Level::Asn => origin.asn.map(|a| format!("AS{a}")).unwrap_or_default(),
        Level::Country => origin.country.clone().unwrap_or_default(),
        Level::Client => origin
            .user_agent
            .as_deref()
            .map(|ua| {
                let (f, m) = client_family(ua);
                if m.is_empty() {
                    f.to_owned()
                } else {
                    format!("{f}/{m}")
                }
            })
            .unwrap_or_default(),
        Level::Workload => workload_name(origin).unwrap_or_default(),
    }
}

/// `aws-cli/2.13.5 Python/3.11.4 ...` -> (`aws-cli`, `2`); `kubectl/v1.25.4 (...)` -> (`kubectl`, `1`).
/// A patch or minor upgrade keeps the same client; a new major version or family does not.
/// A secret the scrubber replaced (`[redacted fp:…]`) is skipped: the client is what follows.
pub fn client_family(ua: &str) -> (&str, &str) {
    let first = ua
        .split_whitespace()
        .find(|t| !(t.starts_with("[redacted") || (t.starts_with("fp:") && t.ends_with(']'))))
        .unwrap_or("");
    let first = &first[..first.len().min(64)];
    match first.split_once('/') {
        Some((family, version)) => {
            let v = version.trim_start_matches(['v', 'V']);
            let end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
            (family, &v[..end])
        }
        None => (first, ""),
    }
}

/// A workload's stable name: the bound pod's controller (`api-7d9f8b6c5-x2k4p` -> `ns/api`),
/// else the VPC endpoint, else the cluster. Instance ids are deliberately not used: instances
/// come and go in autoscaling groups and are no sign of anything by themselves.
pub fn workload_name(origin: &Origin) -> Option<String> {
    workload_parts(origin).map(|(ns, name)| match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    })
}

/// The parts of [`workload_name`], borrowed, so the hot path can hash them without allocating.
fn workload_parts(origin: &Origin) -> Option<(Option<&str>, &str)> {
    let w = &origin.workload;
    if let Some(pod) = w.pod.as_deref() {
        return Some((w.namespace.as_deref(), pod_controller(pod)));
    }
    if let Some(vpce) = origin.vpc_endpoint.as_deref() {
        return Some((None, vpce));
    }
    w.cluster.as_deref().map(|c| (None, c))
}

/// Strips the ReplicaSet hash and pod suffix that change on every rollout and restart.
pub fn pod_controller(pod: &str) -> &str {
    let mut name = pod;
    for _ in 0..2 {
        if let Some((head, tail)) = name.rsplit_once('-') {
            let random = (4..=10).contains(&tail.len())
                && tail
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            let has_digit_or_short = tail.bytes().any(|c| c.is_ascii_digit()) || tail.len() == 5;
            if random && has_digit_or_short && !head.is_empty() {
                name = head;
                continue;
            }
        }
        break;
    }
    name
}

/// True for addresses routed on the public internet (not private, loopback, link-local, CGNAT,
/// unique-local or documentation ranges).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Model;
    use crate::event::Workload;

    #[test]
    fn sdk_patch_upgrade_is_the_same_client_but_a_new_major_is_not() {
        assert_eq!(
            client_family("aws-sdk-go/1.44.1 (go1.20; linux; amd64)"),
            ("aws-sdk-go", "1")
        );
        assert_eq!(
            client_family("aws-sdk-go/1.55.7 (go1.22; linux; amd64)"),
            ("aws-sdk-go", "1")
        );
        assert_eq!(client_family("aws-sdk-go-v2/2.1.0"), ("aws-sdk-go-v2", "2"));
        assert_eq!(
            client_family("kubectl/v1.25.4 (linux/amd64) kubernetes/872a965"),
            ("kubectl", "1")
        );
        assert_eq!(client_family("curl"), ("curl", ""));
    }

    #[test]
    fn pod_restarts_keep_the_workload_name() {
        assert_eq!(pod_controller("api-7d9f8b6c5-x2k4p"), "api");
        assert_eq!(
            pod_controller("payments-api-5f6d7c8b9d-q8w7e"),
            "payments-api"
        );
        assert_eq!(pod_controller("etcd-0"), "etcd-0");
        assert_eq!(pod_controller("cert-manager"), "cert-manager");
    }

    #[test]
    fn addresses_in_one_network_share_the_network_level_only() {
        let cfg = Model::embedded().baseline;
        let values = |ip: &str| {
            let o = Origin {
                ip: Some(ip.parse().unwrap()),
                ..Origin::default()
            };
            let mut v = Vec::new();
            for_each_value(&o, &cfg, |x| v.push(x));
            v
        };
        let a = values("203.0.113.5");
        let b = values("203.0.113.200");
        let c = values("203.0.7.1");
        assert_eq!(a, b);
        assert_ne!(a[0], c[0], "different /24");
        assert_eq!(a[1], c[1], "same /16");
        let o = Origin {
            ip: Some("203.0.7.1".parse().unwrap()),
            ..Origin::default()
        };
        assert_eq!(label(&o, Level::Network, &cfg), "203.0.7.0/24");
        assert_eq!(label(&o, Level::Coarse, &cfg), "203.0.0.0/16");
        let p = values("10.244.1.7");
        let q = values("10.13.9.1");
        assert_ne!(p[0], q[0]);
        assert_eq!(p[1], q[1], "internal space is one coarse network");
    }

    #[test]
    fn private_and_cgnat_addresses_are_not_public() {
        for ip in [
            "10.244.1.2",
            "192.168.0.1",
            "100.64.3.4",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.9", "8.8.8.8", "2001:4860::8888"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn workload_of_a_bound_pod_token_is_namespace_and_controller() {
        let o = Origin {
            workload: Workload {
                namespace: Some("pay".into()),
                pod: Some("api-7d9f8b6c5-x2k4p".into()),
                ..Workload::default()
            },
            ..Origin::default()
        };
        assert_eq!(workload_name(&o).as_deref(), Some("pay/api"));
    }
}
