//! What the rest of the consumer group knows: fleet tables and guardrail budgets that reflect the
//! whole group, not one instance's share of the partitions.
//!
//! Every instance publishes, for each input partition it owns, to one small compacted topic (the
//! *fleet topic*, `<state topic>.fleet`, one partition):
//!
//! - `c/<topic>/<partition>/<e|o>/<hash>`: how many of the partition's identities use an
//!   endpoint or an origin value (written with the changelog's fleet contributions);
//! - `p/<topic>/<partition>`: how many identities the partition holds and the revocation
//!   commands issued for them in the last day of event time.
//!
//! Every instance reads the whole topic continuously ([`GroupView::apply`]) and adds what the
//! partitions it does *not* own report to its fleet tables ([`crate::baseline::Fleet::users`]),
//! its fleet size and its guardrails' budget. Its own partitions count from its own live state.
//! When a partition moves here, what its previous owner reported is taken over (its commands
//! count against this instance's budget from then on) and stops counting as remote; when it
//! moves away, the last report of it counts as remote until its new owner reports again.
//!
//! Staleness: an instance publishes at its commit points, so the rest of the group sees its
//! counts `--commit-interval-seconds` (5 s) plus the read lag late; two instances can each
//! admit commands in that window, so the group may exceed `commands.max_per_hour` by at most
//! the commands one instance issues in one commit interval.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::baseline::fleet::Table;
use crate::engine::Engine;

/// The input partition a report is about.
pub type PartitionKey = (String, i32);

/// What one input partition's owner reports beside its contributions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReport {
    pub identities: u32,
    /// Commands issued for the partition's identities: event time, principal.
    pub issued: Vec<(i64, String)>,
}

/// A record of the fleet topic, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupRecord {
    Contribution {
        partition: PartitionKey,
        table: Table,
        hash: u64,
        users: u32,
    },
    Report {
        partition: PartitionKey,
        report: PartitionReport,
    },
}

/// The fleet-topic key of a contribution.
pub fn contribution_key(topic: &str, partition: i32, table: Table, hash: u64) -> String {
    let t = match table {
        Table::Endpoints => 'e',
        Table::Origins => 'o',
    };
    format!("c/{topic}/{partition}/{t}/{hash:016x}")
}

/// The fleet-topic key of a partition's report.
pub fn report_key(topic: &str, partition: i32) -> String {
    format!("p/{topic}/{partition}")
}

/// What a fleet-topic key is about: `None` for keys this version does not know.
pub enum ParsedKey {
    Contribution(PartitionKey, Table, u64),
    Report(PartitionKey),
}

pub fn parse_key(key: &str) -> Option<ParsedKey> {
    let mut parts = key.split('/');
    let kind = parts.next()?;
    let topic = parts.next()?.to_owned();
    let partition: i32 = parts.next()?.parse().ok()?;
    match kind {
        "p" => parts
            .next()
            .is_none()
            .then_some(ParsedKey::Report((topic, partition))),
        "c" => {
            let table = match parts.next()? {
                "e" => Table::Endpoints,
                "o" => Table::Origins,
                _ => return None,
            };
            let hash = u64::from_str_radix(parts.next()?, 16).ok()?;
            parts.next().is_none().then_some(ParsedKey::Contribution(
                (topic, partition),
                table,
                hash,
            ))
        }
        _ => None,
    }
}

#[derive(Default)]
struct Inner {
    contributions: HashMap<PartitionKey, HashMap<(Table, u64), u32>>,
    reports: HashMap<PartitionKey, PartitionReport>,
    /// Input partitions this instance owns, with their owner tags.
    local: HashMap<PartitionKey, u32>,
    /// What this instance last published per partition, to publish only changes.
    published: HashMap<PartitionKey, PartitionReport>,
}

/// The group's reports as read from the fleet topic, applied to the engine.
pub struct GroupView {
    engine: Arc<Engine>,
    inner: Mutex<Inner>,
}

impl GroupView {
    pub fn new(engine: Arc<Engine>) -> GroupView {
        GroupView {
            engine,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one record read from the fleet topic.
    pub fn apply(&self, record: GroupRecord) {
        let mut inner = self.lock();
        match record {
            GroupRecord::Contribution {
                partition,
                table,
                hash,
                users,
            } => {
                let remote = !inner.local.contains_key(&partition);
                let before = inner
                    .contributions
                    .entry(partition)
                    .or_default()
                    .insert((table, hash), users)
                    .unwrap_or(0);
                if remote {
                    self.engine.fleet().add_remote(
                        table,
                        hash,
                        i64::from(users) - i64::from(before),
                    );
                }
            }
            GroupRecord::Report { partition, report } => {
                // A partition owned here: what its previous owner reported after this instance
                // took over (its catch-up timed out) still counts here.
                if let Some(owner) = inner.local.get(&partition) {
                    self.engine.guardrails().import(*owner, &report.issued);
                }
                let remote = !inner.local.contains_key(&partition);
                inner.reports.insert(partition, report);
                if remote {
                    self.push_remote_reports(&inner);
                }
            }
        }
    }

    /// Sums the reports of the partitions other instances own into the engine.
    fn push_remote_reports(&self, inner: &Inner) {
        let mut identities = 0usize;
        let mut issued = Vec::new();
        for (p, r) in &inner.reports {
            if !inner.local.contains_key(p) {
                identities += r.identities as usize;
                issued.extend(r.issued.iter().cloned());
            }
        }
        issued.sort_unstable();
        self.engine.set_remote_identities(identities);
        self.engine.guardrails().set_remote(issued);
    }

    /// Partitions assigned here (with their owner tags): their reports stop counting as remote,
    /// and the commands their previous owner issued count against this instance's budget.
    pub fn assign(&self, assigned: &[(PartitionKey, u32)]) {
        let mut inner = self.lock();
        for (p, owner) in assigned {
            if inner.local.insert(p.clone(), *owner).is_some() {
                continue;
            }
            for ((table, hash), users) in inner.contributions.get(p).into_iter().flatten() {
                self.engine
                    .fleet()
                    .add_remote(*table, *hash, -i64::from(*users));
            }
            if let Some(r) = inner.reports.get(p).cloned() {
                self.engine.guardrails().import(*owner, &r.issued);
                inner.published.insert(p.clone(), r);
            }
        }
        self.push_remote_reports(&inner);
    }

    /// Partitions handed to other instances: their last reports count as remote again, and
    /// their commands leave this instance's own budget.
    pub fn revoke(&self, revoked: &[PartitionKey]) {
        let mut inner = self.lock();
        for p in revoked {
            let Some(owner) = inner.local.remove(p) else {
                continue;
            };
            self.engine.guardrails().drop_owner(owner);
            inner.published.remove(p);
            for ((table, hash), users) in inner.contributions.get(p).into_iter().flatten() {
                self.engine
                    .fleet()
                    .add_remote(*table, *hash, i64::from(*users));
            }
        }
        self.push_remote_reports(&inner);
    }

    /// The reports of this instance's partitions that changed since they were last published
    /// (and are taken as published).
    pub fn changed_reports(&self) -> Vec<(PartitionKey, PartitionReport)> {
        let counts = self.engine.identities_by_owner();
        let mut inner = self.lock();
        let local: Vec<(PartitionKey, u32)> =
            inner.local.iter().map(|(p, o)| (p.clone(), *o)).collect();
        let mut out = Vec::new();
        for (p, owner) in local {
            let report = PartitionReport {
                identities: counts.get(&owner).copied().unwrap_or(0),
                issued: self.engine.guardrails().issued_by(owner),
            };
            if inner.published.get(&p) != Some(&report) {
                inner.published.insert(p.clone(), report.clone());
                out.push((p, report));
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Revokes the partition with owner tag `owner`, if this instance owns it.
    pub fn revoke_owner(&self, owner: u32) {
        let p = self
            .lock()
            .local
            .iter()
            .find(|(_, o)| **o == owner)
            .map(|(p, _)| p.clone());
        if let Some(p) = p {
            self.revoke(&[p]);
        }
    }

    /// Input partitions this instance owns.
    pub fn local(&self) -> HashSet<PartitionKey> {
        self.lock().local.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Model, Rules};

    fn view() -> (Arc<Engine>, GroupView) {
        let engine = Arc::new(Engine::new(Rules::new(Model::embedded())));
        engine.fleet().track_contributions(true);
        (engine.clone(), GroupView::new(engine))
    }

    fn p(n: i32) -> PartitionKey {
        ("in".to_owned(), n)
    }

    fn contribution(n: i32, users: u32) -> GroupRecord {
        GroupRecord::Contribution {
            partition: p(n),
            table: Table::Origins,
            hash: 42,
            users,
        }
    }

    #[test]
    fn keys_round_trip_and_unknown_ones_are_ignored() {
        let k = contribution_key("cloudtrail", 3, Table::Endpoints, 0xabc);
        assert!(matches!(
            parse_key(&k),
            Some(ParsedKey::Contribution(p, Table::Endpoints, 0xabc)) if p == ("cloudtrail".to_owned(), 3)
        ));
        assert!(matches!(
            parse_key(&report_key("k8s", 0)),
            Some(ParsedKey::Report(p)) if p == ("k8s".to_owned(), 0)
        ));
        assert!(parse_key("x/in/0").is_none());
        assert!(parse_key("c/in/0/e/zz").is_none());
        assert!(parse_key("p/in/0/extra").is_none());
    }

    #[test]
    fn other_instances_partitions_add_to_fleet_users_and_size_and_own_ones_do_not() {
        let (engine, view) = view();
        view.assign(&[(p(0), 7)]);
        view.apply(contribution(0, 5)); // an echo of this instance's own report
        view.apply(contribution(1, 3));
        view.apply(contribution(1, 4)); // a later report replaces the earlier one
        view.apply(contribution(2, 2));
        assert_eq!(engine.fleet().users(Table::Origins, 42), 6);
        view.apply(GroupRecord::Report {
            partition: p(1),
            report: PartitionReport {
                identities: 100,
                issued: vec![(1, "x".into())],
            },
        });
        view.apply(GroupRecord::Report {
            partition: p(0),
            report: PartitionReport {
                identities: 50,
                issued: Vec::new(),
            },
        });
        assert_eq!(engine.group_identities(), 100);
    }

    #[test]
    fn a_partition_moving_in_or_out_is_counted_once_on_either_side() {
        let (engine, view) = view();
        view.apply(contribution(1, 4));
        view.apply(GroupRecord::Report {
            partition: p(1),
            report: PartitionReport {
                identities: 10,
                issued: vec![(5, "revoked-before".into())],
            },
        });
        assert_eq!(engine.fleet().users(Table::Origins, 42), 4);
        view.assign(&[(p(1), 9)]);
        assert_eq!(
            engine.fleet().users(Table::Origins, 42),
            0,
            "the partition's own identities count once restored, not as remote"
        );
        assert_eq!(engine.group_identities(), 0);
        assert_eq!(engine.guardrails().issued_by(9).len(), 1, "taken over");
        // The previous owner's last report arrives late: its commands still count here.
        view.apply(GroupRecord::Report {
            partition: p(1),
            report: PartitionReport {
                identities: 10,
                issued: vec![(5, "revoked-before".into()), (6, "revoked-late".into())],
            },
        });
        assert_eq!(
            engine.guardrails().issued_by(9).len(),
            2,
            "late report imported"
        );
        let reports = view.changed_reports();
        assert_eq!(reports.len(), 1);
        assert_eq!(
            reports[0].1,
            PartitionReport {
                identities: 0,
                issued: vec![(5, "revoked-before".into()), (6, "revoked-late".into())],
            },
            "this instance now reports the partition: its identities here, the commands it took over"
        );
        assert!(view.changed_reports().is_empty(), "nothing new to publish");
        view.revoke(&[p(1)]);
        assert_eq!(engine.fleet().users(Table::Origins, 42), 4);
        assert_eq!(engine.group_identities(), 10);
        assert!(engine.guardrails().issued_by(9).is_empty());
    }
}
