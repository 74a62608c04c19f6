//! Identity metadata: what the organisation declares about an identity (owner, expiry, the
//! networks its workload runs in, whether it may be revoked automatically). Declared facts beat
//! learned ones: a call from outside the declared networks, or after expiry, counts from the
//! identity's very first event, warm-up or not.
//!
//! The inventory is a JSONL file or JSON array of `schemas/identity.v1.json` records, loaded at
//! start; every bad record is reported with its line and field. The service can also follow a
//! compacted topic of the same records keyed by principal key ([`Inventory::apply`]), so an
//! owner added or an expiry extended counts from the next event, without a restart.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use super::rules::Glob;
use super::{ConfigError, Problem};
use crate::decode::time::parse_timestamp_ms;
use crate::event::AccessEvent;

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

/// How an identity's revocation commands may be acted on (`response` in the inventory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Response {
    /// In `enforce` mode a playbook may act without a person (`approval: not_required`).
    Auto,
    /// A person approves each command (the default).
    #[default]
    Approval,
    /// Never revoked automatically: no command is issued (alerts still flow).
    Never,
}

impl Response {
    fn parse(s: &str) -> Option<Response> {
        match s {
            "auto" => Some(Response::Auto),
            "approval" => Some(Response::Approval),
            "never" => Some(Response::Never),
            _ => None,
        }
    }
}

/// Where the identity's workload is declared to run, beyond its networks: each list that is
/// not empty binds the identity on that dimension (`*` wildcards), and a call whose record shows
/// a value outside it is outside the binding. A dimension the record does not show is not
/// judged, except VPC endpoints: an identity bound to endpoints that calls without one (over
/// the internet) is outside its binding.
#[derive(Debug, Clone, Default)]
pub struct Binding {
    pub clusters: Vec<Glob>,
    pub namespaces: Vec<Glob>,
    pub pods: Vec<Glob>,
    pub instances: Vec<Glob>,
    pub vpc_endpoints: Vec<Glob>,
}

impl Binding {
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
            && self.namespaces.is_empty()
            && self.pods.is_empty()
            && self.instances.is_empty()
            && self.vpc_endpoints.is_empty()
    }

    /// The first dimension `ev` is outside of, with the declared patterns and the value seen
    /// (`None` for a missing VPC endpoint).
    pub fn outside<'a>(
        &'a self,
        ev: &'a AccessEvent,
    ) -> Option<(&'static str, &'a [Glob], Option<&'a str>)> {
        let w = &ev.origin.workload;
        let dims: [(&'static str, &[Glob], Option<&str>); 4] = [
            ("cluster", &self.clusters, w.cluster.as_deref()),
            ("namespace", &self.namespaces, w.namespace.as_deref()),
            ("pod", &self.pods, w.pod.as_deref()),
            ("instance", &self.instances, w.instance.as_deref()),
        ];
        for (dim, globs, seen) in dims {
            if let Some(v) = seen
                && !globs.is_empty()
                && !globs.iter().any(|g| g.matches(v))
            {
                return Some((dim, globs, Some(v)));
            }
        }
        if self.vpc_endpoints.is_empty() || ev.origin.service.is_some() {
            return None;
        }
        match ev.origin.vpc_endpoint.as_deref() {
            Some(v) if self.vpc_endpoints.iter().any(|g| g.matches(v)) => None,
            seen => Some(("vpc_endpoint", &self.vpc_endpoints, seen)),
        }
    }
}

/// A time of the week the identity may be used in (UTC): from `start` to `end` minutes after
/// midnight on each of `days` (bit 0 Monday; all days when none are named). An `end` before
/// `start` runs past midnight into the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceWindow {
    pub days: u8,
    pub start_min: u16,
    pub end_min: u16,
}

impl MaintenanceWindow {
    /// True when `time_ms` falls inside the window.
    pub fn contains(&self, time_ms: i64) -> bool {
        let day_ms = 86_400_000;
        let days = time_ms.div_euclid(day_ms);
        let minute = (time_ms.rem_euclid(day_ms) / 60_000) as u16;
        // 1970-01-01 was a Thursday (index 3, Monday first).
        let weekday = |d: i64| (d + 3).rem_euclid(7) as u8;
        let on = |d: i64| self.days & (1 << weekday(d)) != 0;
        if self.start_min <= self.end_min {
            on(days) && (self.start_min..self.end_min).contains(&minute)
        } else {
            (on(days) && minute >= self.start_min) || (on(days - 1) && minute < self.end_min)
        }
    }
}

impl std::fmt::Display for MaintenanceWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = DAYS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.days & (1 << i) != 0)
            .map(|(_, d)| *d)
            .collect();
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        let days = if names.len() == 7 {
            "daily".to_owned()
        } else {
            names.join(",")
        };
        write!(f, "{days} {}-{} UTC", hm(self.start_min), hm(self.end_min))
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// What is declared about one identity.
#[derive(Debug, Clone, Default)]
pub struct IdentityMeta {
    pub owner: Option<String>,
    pub team: Option<String>,
    pub purpose: Option<String>,
    /// `prod`, `staging`, ...: findings about it weigh by the model's `environment_weights`.
    pub environment: Option<String>,
    pub created_at_ms: Option<i64>,
    /// When its credential was last rotated (its age counts from here, or from creation).
    pub rotated_at_ms: Option<i64>,
    pub rotation_period_days: Option<f64>,
    pub expires_at_ms: Option<i64>,
    /// Networks the identity's workload runs in; empty when not declared.
    pub networks: Vec<Cidr>,
    /// Clusters, namespaces, pods, instances and VPC endpoints it is bound to.
    pub binding: Binding,
    /// Actions it is granted (`service:operation` patterns), for least-privilege reports.
    pub granted: Vec<String>,
    /// When it may be used; empty when any time will do.
    pub maintenance: Vec<MaintenanceWindow>,
    pub response: Response,
    /// Never revoked automatically (`response: never`).
    pub protected: bool,
    /// Its revocation commands may be acted on without a person's approval (in `enforce` mode;
    /// `response: auto`).
    pub auto_approve: bool,
}

impl IdentityMeta {
    /// True when networks are declared and `ip` is in none of them.
    pub fn outside_networks(&self, ip: IpAddr) -> bool {
        !self.networks.is_empty() && !self.networks.iter().any(|c| c.contains(ip))
    }

    /// True when maintenance windows are declared and `time_ms` is in none of them.
    pub fn outside_maintenance(&self, time_ms: i64) -> bool {
        !self.maintenance.is_empty() && !self.maintenance.iter().any(|w| w.contains(time_ms))
    }

    /// Days the credential has gone unrotated past its declared period at `time_ms`, with the
    /// time its age counts from; `None` when it is within the period or none is declared.
    pub fn past_rotation(&self, time_ms: i64) -> Option<(f64, i64)> {
        let period = self.rotation_period_days?;
        let since = self.rotated_at_ms.or(self.created_at_ms)?;
        let age_days = (time_ms - since) as f64 / 86_400_000.0;
        (age_days > period).then_some((age_days, since))
    }
}

/// One inventory record as written (`schemas/identity.v1.json`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// Required in a file; on the identities topic the message key names the identity.
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    rotated_at: Option<String>,
    #[serde(default)]
    rotation_period_days: Option<f64>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    networks: Vec<String>,
    #[serde(default)]
    workload: WorkloadRecord,
    #[serde(default)]
    granted: Vec<String>,
    #[serde(default)]
    maintenance_windows: Vec<WindowRecord>,
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    protected: bool,
    #[serde(default)]
    auto_approve: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WorkloadRecord {
    #[serde(default)]
    networks: Vec<String>,
    #[serde(default)]
    clusters: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    pods: Vec<String>,
    #[serde(default)]
    instances: Vec<String>,
    #[serde(default)]
    vpc_endpoints: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowRecord {
    #[serde(default)]
    days: Vec<String>,
    start: String,
    end: String,
}

/// `HH:MM` as minutes after midnight (`24:00` is the end of the day).
fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// Turns a record into metadata, adding a problem (under `at`) for each bad field. Messages name
/// the field and what it must be, never the value (a record from a topic is not trusted).
fn validate(r: Record, at: &str, problems: &mut Vec<Problem>) -> IdentityMeta {
    let mut bad = |field: String, why: &str| {
        problems.push(Problem {
            key: format!("{at}.{field}"),
            why: why.to_owned(),
        })
    };
    let mut time = |field: &str, v: Option<&str>| {
        let t = v?;
        let ms = parse_timestamp_ms(t);
        if ms.is_none() {
            bad(field.to_owned(), "is not an RFC 3339 time");
        }
        ms
    };
    let mut meta = IdentityMeta {
        created_at_ms: time("created_at", r.created_at.as_deref()),
        rotated_at_ms: time("rotated_at", r.rotated_at.as_deref()),
        expires_at_ms: time("expires_at", r.expires_at.as_deref()),
        ..IdentityMeta::default()
    };
    let mut text = |field: &str, v: Option<String>| match v {
        Some(s) if s.trim().is_empty() => {
            bad(
                field.to_owned(),
                "must not be empty (leave the field out instead)",
            );
            None
        }
        other => other,
    };
    meta.owner = text("owner", r.owner);
    meta.team = text("team", r.team);
    meta.purpose = text("purpose", r.purpose);
    meta.environment = text("environment", r.environment).map(|e| e.to_ascii_lowercase());
    if let Some(d) = r.rotation_period_days {
        if d.is_finite() && d > 0.0 {
            meta.rotation_period_days = Some(d);
        } else {
            bad(
                "rotation_period_days".into(),
                "must be a positive number of days",
            );
        }
    }
    let wl = &r.workload;
    for (field, list) in [
        ("networks", &r.networks),
        ("workload.networks", &wl.networks),
    ] {
        for (j, n) in list.iter().enumerate() {
            match Cidr::parse(n) {
                Ok(c) => meta.networks.push(c),
                Err(_) => bad(
                    format!("{field}[{j}]"),
                    "is not an address block (ADDR/PREFIX, e.g. 10.0.0.0/8)",
                ),
            }
        }
    }
    let mut globs = |field: &str, v: &[String]| -> Vec<Glob> {
        v.iter()
            .enumerate()
            .filter_map(|(j, p)| {
                if p.trim().is_empty() {
                    bad(format!("workload.{field}[{j}]"), "must not be empty");
                    None
                } else {
                    Some(Glob::new(p))
                }
            })
            .collect()
    };
    meta.binding = Binding {
        clusters: globs("clusters", &wl.clusters),
        namespaces: globs("namespaces", &wl.namespaces),
        pods: globs("pods", &wl.pods),
        instances: globs("instances", &wl.instances),
        vpc_endpoints: globs("vpc_endpoints", &wl.vpc_endpoints),
    };
    for (j, g) in r.granted.iter().enumerate() {
        if g.trim().is_empty() || (g != "*" && !g.contains(':')) {
            bad(
                format!("granted[{j}]"),
                "must be an action pattern `service:operation` (`*` wildcards allowed)",
            );
        } else {
            meta.granted.push(g.clone());
        }
    }
    for (j, w) in r.maintenance_windows.iter().enumerate() {
        let mut days = 0u8;
        for (k, d) in w.days.iter().enumerate() {
            let d = d.to_ascii_lowercase();
            match DAYS.iter().position(|x| d.starts_with(x) && d.len() >= 3) {
                Some(i) => days |= 1 << i,
                None => bad(
                    format!("maintenance_windows[{j}].days[{k}]"),
                    "must be a day of the week (mon, tue, wed, thu, fri, sat, sun)",
                ),
            }
        }
        if w.days.is_empty() {
            days = 0x7f;
        }
        let start = minutes(&w.start);
        let end = minutes(&w.end);
        for (field, v) in [("start", start), ("end", end)] {
            if v.is_none() {
                bad(
                    format!("maintenance_windows[{j}].{field}"),
                    "must be a UTC time of day HH:MM",
                );
            }
        }
        if let (Some(s), Some(e)) = (start, end) {
            if s == e {
                bad(
                    format!("maintenance_windows[{j}]"),
                    "starts and ends at the same minute: it would never be open",
                );
            } else {
                meta.maintenance.push(MaintenanceWindow {
                    days,
                    start_min: s,
                    end_min: e,
                });
            }
        }
    }
    let legacy = match (r.protected, r.auto_approve) {
        (true, true) => {
            bad(
                "auto_approve".into(),
                "conflicts with protected: a protected identity is never revoked",
            );
            None
        }
        (true, false) => Some(Response::Never),
        (false, true) => Some(Response::Auto),
        (false, false) => None,
    };
    meta.response = match r.response.as_deref().map(|s| (s, Response::parse(s))) {
        None => legacy.unwrap_or_default(),
        Some((_, None)) => {
            bad("response".into(), "must be one of auto, approval, never");
            Response::default()
        }
        Some((_, Some(resp))) => {
            if legacy.is_some_and(|l| l != resp) {
                bad(
                    "response".into(),
                    "contradicts protected / auto_approve (response replaces them: keep one)",
                );
            }
            resp
        }
    };
    meta.protected = meta.response == Response::Never;
    meta.auto_approve = meta.response == Response::Auto;
    meta
}

/// Declared metadata by principal key. Shared: every clone sees the same table, so a change
/// from the identities topic ([`Inventory::apply`]) reaches the next decision of every holder.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    by_key: RwLock<HashMap<String, Arc<IdentityMeta>>>,
    /// Entries in `by_key`, readable without the lock (the per-event path skips an empty table).
    len: AtomicUsize,
    /// Fed by a topic as well as (or instead of) a file: declared even while empty.
    live: AtomicBool,
}

/// A change one identities-topic record makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Declared,
    Updated,
    Removed,
}

impl Inventory {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<IdentityMeta>>> {
        self.inner.by_key.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<IdentityMeta>>> {
        self.inner.by_key.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Arc<IdentityMeta>> {
        if self.is_empty() {
            return None;
        }
        self.read().get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when an inventory is in use (a file, or a topic even while it is empty): an
    /// identity it does not declare is then undeclared, not merely unknown.
    pub fn in_use(&self) -> bool {
        !self.is_empty() || self.inner.live.load(Ordering::Relaxed)
    }

    /// Marks the inventory as fed by a topic.
    pub fn set_live(&self) {
        self.inner.live.store(true, Ordering::Relaxed);
    }

    /// Every declared key with its metadata, sorted by key.
    pub fn entries(&self) -> Vec<(String, Arc<IdentityMeta>)> {
        let mut all: Vec<_> = self
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Applies one identities-topic record: `payload` `None` (a tombstone) removes the
    /// identity `key` names; otherwise the record replaces what was declared. The record's own
    /// `key`, if it has one, must be the message key.
    ///
    /// # Errors
    /// The problems found, each naming its field (`record.FIELD`) and never its value; the
    /// inventory is then unchanged.
    pub fn apply(&self, key: &str, payload: Option<&[u8]>) -> Result<Applied, Vec<Problem>> {
        let problem = |key: &str, why: &str| {
            vec![Problem {
                key: key.to_owned(),
                why: why.to_owned(),
            }]
        };
        if key.trim().is_empty() {
            return Err(problem(
                "(message key)",
                "must be the identity's principal key, as UTF-8 text",
            ));
        }
        let Some(payload) = payload else {
            let removed = self.write().remove(key).is_some();
            if removed {
                self.inner.len.fetch_sub(1, Ordering::Relaxed);
            }
            return Ok(Applied::Removed);
        };
        let text =
            std::str::from_utf8(payload).map_err(|_| problem("record", "is not UTF-8 text"))?;
        let r: Record = crate::decode::parse(text, "identity").map_err(|e| {
            let (field, why) = match &e {
                // The unknown name is the sender's, not validated: name its parent only.
                crate::decode::DecodeError::WrongType { field, reason, .. }
                    if reason.starts_with("unknown field") =>
                {
                    let parent = field.rsplit_once('.').map_or("", |(p, _)| p);
                    let at = if parent.is_empty() {
                        "record".to_owned()
                    } else {
                        format!("record.{parent}")
                    };
                    (
                        at,
                        "has a field schemas/identity.v1.json does not define".to_owned(),
                    )
                }
                crate::decode::DecodeError::WrongType { field, reason, .. } => {
                    (format!("record.{field}"), reason.clone())
                }
                other => ("record".to_owned(), other.to_string()),
            };
            problem(&field, &why)
        })?;
        if r.key.as_deref().is_some_and(|k| k != key) {
            return Err(problem(
                "record.key",
                "differs from the message key: a record is keyed by the identity it declares",
            ));
        }
        let mut problems = Vec::new();
        let meta = validate(r, "record", &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        let old = self.write().insert(key.to_owned(), Arc::new(meta));
        Ok(match old {
            Some(_) => Applied::Updated,
            None => {
                self.inner.len.fetch_add(1, Ordering::Relaxed);
                Applied::Declared
            }
        })
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
        let items: Vec<(String, serde_json::Result<Record>)> = super::json_items(text);
        let mut by_key = HashMap::new();
        for (at, item) in items {
            let mut r = match item {
                Ok(r) => r,
                Err(e) => {
                    problems.push(Problem {
                        key: at,
                        why: e.to_string(),
                    });
                    continue;
                }
            };
            let key = match r.key.take() {
                Some(k) if !k.trim().is_empty() => k,
                _ => {
                    problems.push(Problem {
                        key: format!("{at}.key"),
                        why:
                            "must not be empty: it is the principal key the identity's events carry"
                                .to_owned(),
                    });
                    continue;
                }
            };
            let meta = validate(r, &at, &mut problems);
            if by_key.insert(key.clone(), Arc::new(meta)).is_some() {
                problems.push(Problem {
                    key: format!("{at}.key"),
                    why: format!("`{key}` is declared twice"),
                });
            }
        }
        if problems.is_empty() {
            let len = AtomicUsize::new(by_key.len());
            Ok(Inventory {
                inner: Arc::new(Shared {
                    by_key: RwLock::new(by_key),
                    len,
                    live: AtomicBool::new(false),
                }),
            })
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

    #[test]
    fn the_extended_fields_are_validated_field_by_field() {
        let text = r#"{"key":"a","owner":"o","team":"t","environment":"Prod","created_at":"2026-01-01T00:00:00Z","rotation_period_days":90,"workload":{"networks":["10.0.0.0/8"],"clusters":["prod-*"],"vpc_endpoints":["vpce-1"]},"granted":["s3:Get*","*"],"maintenance_windows":[{"days":["sat","Sunday"],"start":"22:00","end":"02:00"}],"response":"never"}
{"key":"b","owner":"","rotation_period_days":-1,"granted":["GetObject"],"maintenance_windows":[{"days":["someday"],"start":"25:00","end":"01:00"}],"response":"sometimes","workload":{"networks":["x"]}}
{"key":"c","protected":true,"auto_approve":true}
{"key":"d","protected":true,"response":"auto"}
"#;
        let err = Inventory::parse(text, "ids.jsonl").unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "line 2.owner",
                "line 2.rotation_period_days",
                "line 2.workload.networks[0]",
                "line 2.granted[0]",
                "line 2.maintenance_windows[0].days[0]",
                "line 2.maintenance_windows[0].start",
                "line 2.response",
                "line 3.auto_approve",
                "line 4.response",
            ],
            "{err}"
        );
        let ok = Inventory::parse(text.lines().next().unwrap(), "ids.jsonl").unwrap();
        let a = ok.get("a").unwrap();
        assert_eq!(a.environment.as_deref(), Some("prod"));
        assert!(a.protected && !a.auto_approve);
        assert_eq!(a.granted, ["s3:Get*", "*"]);
        assert!(!a.outside_networks("10.9.9.9".parse().unwrap()));
        assert_eq!(a.maintenance[0].to_string(), "sat,sun 22:00-02:00 UTC");
        // 2026-01-03 is a Saturday: 23:00 is in, so is Sunday 01:00 (the window runs past
        // midnight), Sunday 03:00 and Monday 01:00 are out.
        let t = |s: &str| parse_timestamp_ms(s).unwrap();
        assert!(!a.outside_maintenance(t("2026-01-03T23:00:00Z")));
        assert!(!a.outside_maintenance(t("2026-01-04T01:00:00Z")));
        assert!(a.outside_maintenance(t("2026-01-04T03:00:00Z")));
        assert!(!a.outside_maintenance(t("2026-01-04T23:30:00Z")));
        assert!(!a.outside_maintenance(t("2026-01-05T01:00:00Z")));
        assert!(a.outside_maintenance(t("2026-01-06T01:00:00Z")));
        assert_eq!(a.past_rotation(t("2026-03-01T00:00:00Z")), None);
        assert!(a.past_rotation(t("2026-04-02T00:00:00Z")).is_some());
    }

    #[test]
    fn topic_records_declare_update_and_remove_and_bad_ones_change_nothing() {
        let inv = Inventory::default();
        assert!(!inv.in_use());
        inv.set_live();
        assert!(inv.in_use() && inv.is_empty());
        assert_eq!(
            inv.apply("k", Some(br#"{"owner":"a"}"#)),
            Ok(Applied::Declared)
        );
        let held = inv.get("k").unwrap();
        assert_eq!(
            inv.apply("k", Some(br#"{"key":"k","owner":"b"}"#)),
            Ok(Applied::Updated)
        );
        assert_eq!(inv.get("k").unwrap().owner.as_deref(), Some("b"));
        assert_eq!(
            held.owner.as_deref(),
            Some("a"),
            "a reader keeps its version"
        );
        // Refused, naming the field and never the value; the declared record stands.
        let secret = "AKIAIOSFODNN7EXAMPLE";
        for (payload, field) in [
            (
                format!(r#"{{"owner":"x","expires_at":"{secret}"}}"#),
                "record.expires_at",
            ),
            (format!(r#"{{"owner":{{"{secret}":1}}}}"#), "record.owner"),
            (format!(r#"{{"key":"{secret}"}}"#), "record.key"),
            (format!(r#"{{"{secret}":1}}"#), "record"),
        ] {
            let e = inv.apply("k", Some(payload.as_bytes())).unwrap_err();
            assert!(e[0].key.starts_with(field), "{e:?}");
            let all = format!("{e:?}");
            assert!(!all.contains(secret), "{all}");
        }
        assert_eq!(inv.get("k").unwrap().owner.as_deref(), Some("b"));
        assert!(inv.apply("", Some(b"{}")).is_err());
        assert_eq!(inv.apply("k", None), Ok(Applied::Removed));
        assert!(inv.get("k").is_none() && inv.is_empty() && inv.in_use());
        // A clone shares the table (the engine's rules and the topic follower hold one each).
        let clone = inv.clone();
        clone.apply("j", Some(b"{}")).unwrap();
        assert!(inv.get("j").is_some());
    }
}
