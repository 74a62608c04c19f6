//! Log setup: `tracing` to stderr, human-readable or JSON, level from `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log shippers.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` (e.g. `info`, `driftwatch=debug,librdkafka=warn`)
/// overrides `default_level`; an unparsable `RUST_LOG` falls back to it with a warning.
pub fn init(format: LogFormat, default_level: &str) {
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(default_level), Some((v, e))),
        },
        _ => (EnvFilter::new(default_level), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in files or log collectors.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    if let Some((value, error)) = bad {
        tracing::warn!(value, %error, default_level, "RUST_LOG is not a valid filter; using the default level.");
    }
}
