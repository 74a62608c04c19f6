//! Fleet-wide guardrails on revocation commands: a bug, a bad model or a fleet-wide change must
//! never turn into revoking a large part of the fleet. Windows run on event time.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::baseline::{DAY_MS, HOUR_MS};
use crate::config::Rules;

/// The limits one set of guardrails enforces: the revocations' (`commands.*`) or the dormancy
/// lifecycle's (`lifecycle.*`).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The model section the limits come from, named when a command is withheld.
    pub section: &'static str,
    pub max_per_hour: u32,
    pub max_fleet_fraction: f64,
}

impl Budget {
    pub fn revocations(r: &Rules) -> Budget {
        let c = &r.model.commands;
        Budget {
            section: "commands",
            max_per_hour: c.max_per_hour,
            max_fleet_fraction: c.max_fleet_fraction,
        }
    }

    pub fn lifecycle(r: &Rules) -> Budget {
        let l = &r.model.lifecycle;
        Budget {
            section: "lifecycle",
            max_per_hour: l.max_per_hour,
            max_fleet_fraction: l.max_fleet_fraction,
        }
    }
}

#[derive(Debug, Default)]
pub struct Guardrails {
    /// Commands issued here in the last day: event time, principal, owner (input partition).
    issued: Mutex<VecDeque<(i64, String, u32)>>,
    /// Commands the rest of the group issued ([`crate::state::group::GroupView`]).
    remote: Mutex<Vec<(i64, String)>>,
}

impl Guardrails {
    pub fn new() -> Guardrails {
        Guardrails::default()
    }

    fn local(&self) -> std::sync::MutexGuard<'_, VecDeque<(i64, String, u32)>> {
        self.issued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The commands issued here in the last day, oldest first: (event time, principal).
    pub fn issued(&self) -> VecDeque<(i64, String)> {
        self.local()
            .iter()
            .map(|(t, p, _)| (*t, p.clone()))
            .collect()
    }

    /// The commands issued here for identities of `owner`.
    pub fn issued_by(&self, owner: u32) -> Vec<(i64, String)> {
        self.local()
            .iter()
            .filter(|(_, _, o)| *o == owner)
            .map(|(t, p, _)| (*t, p.clone()))
            .collect()
    }

    /// Replaces the issued commands with restored ones.
    pub fn restore(&self, issued: VecDeque<(i64, String)>) {
        *self.local() = issued
            .into_iter()
            .map(|(t, p)| (t, p, crate::engine::NO_OWNER))
            .collect();
    }

    /// Takes over the commands the previous owner of a partition issued (now `owner` here).
    pub fn import(&self, owner: u32, issued: &[(i64, String)]) {
        let mut local = self.local();
        for (t, p) in issued {
            if !local.iter().any(|(lt, lp, _)| lt == t && lp == p) {
                local.push_back((*t, p.clone(), owner));
            }
        }
        local.make_contiguous().sort_by_key(|(t, _, _)| *t);
    }

    /// Forgets the commands issued for `owner`'s identities (its partition moved: the new owner
    /// reports them).
    pub fn drop_owner(&self, owner: u32) {
        self.local().retain(|(_, _, o)| *o != owner);
    }

    /// Replaces what the rest of the group reports having issued.
    pub fn set_remote(&self, issued: Vec<(i64, String)>) {
        *self.remote.lock().unwrap_or_else(|e| e.into_inner()) = issued;
    }

    /// Admits one command for `principal` (an identity of `owner`) at event time `t`, or says
    /// why it is withheld. The budgets count the commands of the whole group.
    ///
    /// # Errors
    /// A sentence naming the guardrail that withheld the command.
    pub fn admit(
        &self,
        principal: &str,
        owner: u32,
        t: i64,
        fleet_size: usize,
        r: &Rules,
    ) -> Result<(), String> {
        self.admit_within(principal, owner, t, fleet_size, r, Budget::revocations(r))
    }

    /// As [`Guardrails::admit`], within `c`'s limits.
    ///
    /// # Errors
    /// A sentence naming the guardrail that withheld the command.
    pub fn admit_within(
        &self,
        principal: &str,
        owner: u32,
        t: i64,
        fleet_size: usize,
        r: &Rules,
        c: Budget,
    ) -> Result<(), String> {
        if r.is_protected(principal) {
            return Err("identity matches commands.protected; revoke by hand if needed".to_owned());
        }
        let mut issued = self.local();
        while issued.front().is_some_and(|(at, _, _)| *at < t - DAY_MS) {
            issued.pop_front();
        }
        let remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        let remote_day = remote.iter().filter(|(at, _)| *at >= t - DAY_MS);
        let last_hour = issued
            .iter()
            .map(|(at, _, _)| *at)
            .chain(remote_day.clone().map(|(at, _)| *at))
            .filter(|at| *at >= t - HOUR_MS)
            .count();
        if last_hour >= c.max_per_hour as usize {
            return Err(format!(
                "{}.max_per_hour ({}) reached in the last hour",
                c.section, c.max_per_hour
            ));
        }
        let cap = ((fleet_size as f64 * c.max_fleet_fraction).floor() as usize).max(1);
        let mut distinct: Vec<&str> = issued
            .iter()
            .map(|(_, p, _)| p.as_str())
            .chain(remote_day.map(|(_, p)| p.as_str()))
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        if !distinct.contains(&principal) && distinct.len() >= cap {
            return Err(format!(
                "{}.max_fleet_fraction ({}) of {} identities allows {} identities per day; {} already have commands",
                c.section,
                c.max_fleet_fraction,
                fleet_size,
                cap,
                distinct.len()
            ));
        }
        drop(remote);
        issued.push_back((t, principal.to_owned(), owner));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Model;

    #[test]
    fn guardrails_never_let_commands_sweep_the_fleet() {
        let r = Rules::new(Model::embedded());
        let g = Guardrails::new();
        // 1% of 300 identities: 3 distinct identities per day.
        let admitted = (0..50)
            .filter(|i| {
                g.admit(&format!("id-{i}"), 1, i64::from(*i) * 60_000, 300, &r)
                    .is_ok()
            })
            .count();
        assert_eq!(admitted, 3);
        // A day later the window has moved on.
        assert!(g.admit("id-99", 1, 2 * DAY_MS, 300, &r).is_ok());
    }

    #[test]
    fn the_budget_counts_what_the_rest_of_the_group_issued() {
        let r = Rules::new(Model::embedded());
        let g = Guardrails::new();
        // Another instance already revoked 3 distinct identities of a 300-identity fleet today.
        g.set_remote(vec![
            (0, "a".into()),
            (60_000, "b".into()),
            (120_000, "c".into()),
        ]);
        let err = g.admit("mine", 1, 180_000, 300, &r).unwrap_err();
        assert!(err.contains("max_fleet_fraction"), "{err}");
        // Its partition moves here: its commands are taken over, not counted twice.
        g.set_remote(Vec::new());
        g.import(2, &[(0, "a".into()), (60_000, "b".into())]);
        g.import(2, &[(0, "a".into())]);
        assert_eq!(g.issued_by(2).len(), 2);
        assert!(g.admit("mine", 1, 180_000, 300, &r).is_ok());
        // And handed on again: forgotten here.
        g.drop_owner(2);
        assert!(g.issued_by(2).is_empty());
        assert_eq!(g.issued().len(), 1);
    }

    #[test]
    fn the_lifecycle_spends_a_budget_of_its_own_and_names_it() {
        let r = Rules::new(Model::embedded());
        let lifecycle = Guardrails::new();
        let revocations = Guardrails::new();
        // 5 per hour for the lifecycle (a fleet large enough for the daily share).
        let admitted = (0..8)
            .filter(|i| {
                lifecycle
                    .admit_within(
                        &format!("idle-{i}"),
                        1,
                        0,
                        10_000,
                        &r,
                        Budget::lifecycle(&r),
                    )
                    .is_ok()
            })
            .count();
        assert_eq!(admitted, 5);
        let err = lifecycle
            .admit_within("idle-9", 1, 0, 10_000, &r, Budget::lifecycle(&r))
            .unwrap_err();
        assert!(err.starts_with("lifecycle.max_per_hour (5)"), "{err}");
        // The revocations' budget is untouched.
        assert!(revocations.admit("stolen", 1, 0, 10_000, &r).is_ok());
    }

    #[test]
    fn protected_identities_are_never_revoked() {
        let r = Rules::new(Model::embedded());
        let err = Guardrails::new()
            .admit("arn:aws:iam::1:role/break-glass", 1, 0, 1000, &r)
            .unwrap_err();
        assert!(err.contains("commands.protected"));
    }
}
