//! The model compiled for the hot path: globs built once, half-lives in the units used.

use crate::inventory::Inventory;
use crate::model::{Glob, Model};

/// One sensitivity tier with its compiled patterns.
#[derive(Debug, Clone)]
pub struct Tier {
    pub name: String,
    pub bonus_bits: f64,
    pub patterns: Vec<Glob>,
}

/// A validated model, ready for per-event use.
#[derive(Debug, Clone)]
pub struct Rules {
    pub model: Model,
    pub tiers: Vec<Tier>,
    pub protected: Vec<Glob>,
    pub half_life_hours: f64,
    /// Declared identity metadata (empty unless an inventory is given).
    pub inventory: Inventory,
}

impl Rules {
    pub fn new(model: Model) -> Rules {
        let tiers = model
            .sensitivity
            .iter()
            .map(|t| Tier {
                name: t.tier.clone(),
                bonus_bits: t.bonus_bits,
                patterns: t.patterns.iter().map(|p| Glob::new(p)).collect(),
            })
            .collect();
        let protected = model
            .commands
            .protected
            .iter()
            .map(|p| Glob::new(p))
            .collect();
        let half_life_hours = model.baseline.half_life_days * 24.0;
        Rules {
            model,
            tiers,
            protected,
            half_life_hours,
            inventory: Inventory::default(),
        }
    }

    /// Index of the first tier whose patterns match `action` (tiers are listed most severe first).
    pub fn tier_of(&self, action: &str) -> Option<u8> {
        self.tiers
            .iter()
            .position(|t| t.patterns.iter().any(|g| g.matches(action)))
            .map(|i| i as u8)
    }

    /// The same rules with declared identity metadata.
    pub fn with_inventory(mut self, inventory: Inventory) -> Rules {
        self.inventory = inventory;
        self
    }

    /// True when commands must never target this identity (model patterns or inventory).
    pub fn is_protected(&self, principal: &str) -> bool {
        self.protected.iter().any(|g| g.matches(principal))
            || self.inventory.get(principal).is_some_and(|m| m.protected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_endpoints_resolve_to_their_tier() {
        let r = Rules::new(Model::embedded());
        let name = |a: &str| r.tier_of(a).map(|t| r.tiers[t as usize].name.clone());
        assert_eq!(
            name("iam.amazonaws.com:CreateAccessKey").as_deref(),
            Some("critical")
        );
        assert_eq!(
            name("secretsmanager.amazonaws.com:GetSecretValue").as_deref(),
            Some("high")
        );
        assert_eq!(
            name("create:clusterrolebindings").as_deref(),
            Some("critical")
        );
        assert_eq!(name("list:clusterrolebindings").as_deref(), Some("recon"));
        assert_eq!(name("list:pods"), None, "controllers list pods all day");
        assert_eq!(name("s3.amazonaws.com:GetObject"), None);
        assert!(r.is_protected("arn:aws:iam::123456789012:role/break-glass-admin"));
        assert!(!r.is_protected("arn:aws:iam::123456789012:role/app"));
    }
}
