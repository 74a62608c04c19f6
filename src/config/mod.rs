//! config: everything driftwatch is told before the first record, checked at start with every
//! problem reported at once ([`ConfigError`] names the file, the key and why).
//!
//! - [`model`]: the detection model (`models/*.toml`), laid over the embedded default;
//! - [`rules`]: the model compiled for the hot path ([`Rules`]), with the inventory;
//! - [`inventory`]: what the organisation declares per identity (owner, expiry, networks);
//! - [`settings`]: the settings of `driftwatch run`, written once for flags, environment, file
//!   and defaults; [`service`]: their resolution into the service's checked [`RunConfig`].

pub mod inventory;
mod layer;
pub mod model;
pub mod rules;
pub mod service;
pub mod settings;

use std::fmt;
use std::path::Path;

pub use inventory::Inventory;
pub use model::Model;
pub use rules::Rules;
pub use service::RunConfig;
pub use settings::Settings;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub why: String,
}

/// A configuration that cannot be used, with every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

/// The items of a JSON list (`[...]`) or of JSON Lines, each labelled by where it stands
/// (`[3]`, `line 4`), so every bad one can be named at once; a list that is not JSON is one item,
/// `(document)`, in error. Blank lines are skipped.
pub fn json_items<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Vec<(String, serde_json::Result<T>)> {
    if text.trim_start().starts_with('[') {
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
    }
}

impl ConfigError {
    /// Reads a configuration file, returning its display name and text.
    ///
    /// # Errors
    /// A `ConfigError` naming the file when it cannot be read.
    pub fn read(path: &Path) -> Result<(String, String), ConfigError> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((file, text)),
            Err(e) => Err(ConfigError {
                file,
                problems: vec![Problem {
                    key: "(file)".into(),
                    why: format!("cannot read: {e}"),
                }],
            }),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {} configuration problem{}",
            self.file,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}: {}: {}", self.file, p.key, p.why)?;
        }
        Ok(())
    }
}
