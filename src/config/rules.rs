//! The model compiled for the hot path: globs built once, half-lives in the units used, and the
//! declared inventory beside it.

use std::path::Path;

use super::{ConfigError, Inventory, Model};

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
    /// Cloud providers' published address ranges (`--ip-ranges`); `None` when no file is given,
    /// so the per-event path takes no lock for them.
    pub cloud: Option<crate::enrich::Reloadable<crate::enrich::CloudRanges>>,
    /// Country and ASN databases (`None` unless `--geoip` files are given).
    pub geo: Option<crate::enrich::Reloadable<crate::enrich::GeoDbs>>,
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
            cloud: None,
            geo: None,
        }
    }

    /// Index of the first tier whose patterns match `action` (tiers are listed most severe first).
    pub fn tier_of(&self, action: &str) -> Option<u8> {
        self.tiers
            .iter()
            .position(|t| t.patterns.iter().any(|g| g.matches(action)))
            .map(|i| i as u8)
    }

    /// Loads a model file laid over the embedded default (the default alone when `None`) and an
    /// optional inventory file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and every problem in it.
    pub fn load(model: Option<&Path>, inventory: Option<&Path>) -> Result<Rules, ConfigError> {
        let model = match model {
            Some(p) => Model::load(p)?,
            None => Model::embedded(),
        };
        let rules = Rules::new(model);
        Ok(match inventory {
            Some(p) => rules.with_inventory(Inventory::load(p)?),
            None => rules,
        })
    }

    /// The same rules with cloud providers' published ranges.
    pub fn with_cloud_ranges(mut self, ranges: crate::enrich::CloudRanges) -> Rules {
        self.cloud = Some(crate::enrich::Reloadable::new(ranges));
        self
    }

    /// The same rules with country and ASN databases.
    pub fn with_geo(mut self, geo: crate::enrich::GeoDbs) -> Rules {
        self.geo = Some(crate::enrich::Reloadable::new(geo));
        self
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

/// A `*` wildcard pattern, case-sensitive, matched against the whole string.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    parts: Vec<String>,
    anchored_start: bool,
    anchored_end: bool,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_owned(),
            parts: pattern
                .split('*')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            anchored_start: !pattern.starts_with('*'),
            anchored_end: !pattern.ends_with('*'),
        }
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn matches(&self, s: &str) -> bool {
        let mut rest = s;
        let n = self.parts.len();
        if n == 0 {
            return !self.anchored_start || s.is_empty();
        }
        for (i, part) in self.parts.iter().enumerate() {
            if i == 0 && self.anchored_start {
                let Some(r) = rest.strip_prefix(part.as_str()) else {
                    return false;
                };
                rest = r;
            } else if i == n - 1 && self.anchored_end {
                return rest.len() >= part.len() && rest.ends_with(part.as_str());
            } else {
                let Some(pos) = rest.find(part.as_str()) else {
                    return false;
                };
                rest = &rest[pos + part.len()..];
            }
        }
        !self.anchored_end || rest.is_empty()
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

    #[test]
    fn globs_match_whole_strings() {
        assert!(
            Glob::new("iam.amazonaws.com:Attach*Policy")
                .matches("iam.amazonaws.com:AttachUserPolicy")
        );
        assert!(
            !Glob::new("iam.amazonaws.com:Attach*Policy")
                .matches("iam.amazonaws.com:AttachUserPolicyX")
        );
        assert!(
            Glob::new("*:SetIamPolicy").matches("cloudresourcemanager.googleapis.com:SetIamPolicy")
        );
        assert!(Glob::new("list:*").matches("list:pods"));
        assert!(!Glob::new("get:secrets").matches("get:secretsx"));
        assert!(Glob::new("a*b*c").matches("aXbYc"));
        assert!(!Glob::new("a*b*c").matches("aXcYb"));
    }
}
