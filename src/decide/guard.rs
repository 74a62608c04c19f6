//! Fleet-wide guardrails on revocation commands: a bug, a bad model or a fleet-wide change must
//! never turn into revoking a large part of the fleet. Windows run on event time.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::baseline::{DAY_MS, HOUR_MS};
use crate::config::Rules;

#[derive(Debug, Default)]
pub struct Guardrails {
    issued: Mutex<VecDeque<(i64, String)>>,
}

impl Guardrails {
    pub fn new() -> Guardrails {
        Guardrails::default()
    }

    /// The commands issued in the last day, oldest first: (event time, principal).
    pub fn issued(&self) -> VecDeque<(i64, String)> {
        self.issued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the issued commands with restored ones.
    pub fn restore(&self, issued: VecDeque<(i64, String)>) {
        *self.issued.lock().unwrap_or_else(|e| e.into_inner()) = issued;
    }

    /// Admits one command for `principal` at event time `t`, or says why it is withheld.
    ///
    /// # Errors
    /// A sentence naming the guardrail that withheld the command.
    pub fn admit(
        &self,
        principal: &str,
        t: i64,
        fleet_size: usize,
        r: &Rules,
    ) -> Result<(), String> {
        let c = &r.model.commands;
        if r.is_protected(principal) {
            return Err("identity matches commands.protected; revoke by hand if needed".to_owned());
        }
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        while issued.front().is_some_and(|(at, _)| *at < t - DAY_MS) {
            issued.pop_front();
        }
        let last_hour = issued.iter().filter(|(at, _)| *at >= t - HOUR_MS).count();
        if last_hour >= c.max_per_hour as usize {
            return Err(format!(
                "commands.max_per_hour ({}) reached in the last hour",
                c.max_per_hour
            ));
        }
        let cap = ((fleet_size as f64 * c.max_fleet_fraction).floor() as usize).max(1);
        let mut distinct: Vec<&str> = issued.iter().map(|(_, p)| p.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if !distinct.contains(&principal) && distinct.len() >= cap {
            return Err(format!(
                "commands.max_fleet_fraction ({}) of {} identities allows {} revoked identities per day; {} already are",
                c.max_fleet_fraction,
                fleet_size,
                cap,
                distinct.len()
            ));
        }
        issued.push_back((t, principal.to_owned()));
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
                g.admit(&format!("id-{i}"), i64::from(*i) * 60_000, 300, &r)
                    .is_ok()
            })
            .count();
        assert_eq!(admitted, 3);
        // A day later the window has moved on.
        assert!(g.admit("id-99", 2 * DAY_MS, 300, &r).is_ok());
    }

    #[test]
    fn protected_identities_are_never_revoked() {
        let r = Rules::new(Model::embedded());
        let err = Guardrails::new()
            .admit("arn:aws:iam::1:role/break-glass", 0, 1000, &r)
            .unwrap_err();
        assert!(err.contains("commands.protected"));
    }
}
