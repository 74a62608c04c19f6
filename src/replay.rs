//! Offline replay: decode files, order every event by event time, run the engine, write alerts
//! and commands as JSONL. The same input always gives the same output.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::config::Rules;
use crate::decide::Decision;
use crate::decode::{self, Decoded, FormatHint};
use crate::detect::Detector;
use crate::emit::{self, EmitError, dead_letter, sink::JsonlSink};
use crate::engine::Engine;
use crate::event::AccessEvent;
use crate::ingest::file::{self, IngestError};
use crate::state::{
    self,
    file::{Loaded, Saved, StateError},
};

/// What to replay and where results go.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub inputs: Vec<String>,
    pub format: FormatHint,
    /// Alerts JSONL; standard output when `None`.
    pub alerts: Option<PathBuf>,
    /// Commands JSONL; standard output when `None`.
    pub commands: Option<PathBuf>,
    /// Rejected records with their reasons, JSONL; only counted and logged when `None`.
    pub dead_letter: Option<PathBuf>,
    /// Engine state to continue from (when the file exists) and to save at the end.
    pub state: Option<PathBuf>,
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Emit(#[from] EmitError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Totals of one replay, printed to stderr by the CLI.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub records: u64,
    pub events: u64,
    pub identities: usize,
    pub warming_up: usize,
    pub forgotten: u64,
    pub skipped: BTreeMap<String, u64>,
    pub rejected: BTreeMap<&'static str, u64>,
    pub alerts_created: u64,
    pub alerts_updated: u64,
    pub alerts_by_cause: BTreeMap<&'static str, u64>,
    pub alerts_by_severity: BTreeMap<&'static str, u64>,
    pub findings_by_detector: Vec<(Detector, u64)>,
    pub commands: u64,
    pub merged: u64,
    pub withheld: u64,
    pub mean_state_bytes: f64,
    /// What `--state` restored (`None`: no state file given, or none yet).
    pub restored: Option<Loaded>,
    /// What `--state` saved.
    pub saved: Option<Saved>,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "driftwatch replay: {} records, {} events in {:.2}s ({:.0} events/s)",
            self.records,
            self.events,
            secs,
            self.events as f64 / secs
        )?;
        writeln!(
            f,
            "  identities: {} ({} still warming up, {} forgotten after long silence), mean baseline state {:.0} bytes/identity",
            self.identities, self.warming_up, self.forgotten, self.mean_state_bytes
        )?;
        writeln!(
            f,
            "  alerts: {} raised, {} escalating updates, {} repeats merged into open alerts",
            self.alerts_created, self.alerts_updated, self.merged
        )?;
        let join = |m: &BTreeMap<&'static str, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        if !self.alerts_by_cause.is_empty() {
            writeln!(f, "    by cause: {}", join(&self.alerts_by_cause))?;
            writeln!(f, "    by severity: {}", join(&self.alerts_by_severity))?;
        }
        let findings: Vec<String> = self
            .findings_by_detector
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(d, n)| format!("{}={n}", d.as_str()))
            .collect();
        writeln!(
            f,
            "  findings by detector: {}",
            if findings.is_empty() {
                "none".into()
            } else {
                findings.join(" ")
            }
        )?;
        writeln!(
            f,
            "  revocation commands: {} issued, {} withheld by guardrails",
            self.commands, self.withheld
        )?;
        let skipped: Vec<String> = self
            .skipped
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !skipped.is_empty() {
            writeln!(f, "  skipped (not errors): {}", skipped.join(" "))?;
        }
        if let Some(r) = &self.restored {
            write!(
                f,
                "  state: restored {} identities ({:.1} MB)",
                r.identities,
                r.bytes as f64 / 1e6
            )?;
            if r.dropped > 0 {
                write!(
                    f,
                    ", dropped {} written under another model or format",
                    r.dropped
                )?;
            }
            writeln!(f)?;
        }
        if let Some(s) = &self.saved {
            writeln!(
                f,
                "  state: saved {} identities, {:.1} MB ({:.0} bytes/identity)",
                s.identities,
                s.bytes as f64 / 1e6,
                s.bytes as f64 / s.identities.max(1) as f64
            )?;
        }
        let rejected = self.rejected.values().sum::<u64>();
        write!(f, "  rejected records: {rejected}")?;
        if rejected > 0 {
            write!(f, " ({})", join(&self.rejected))?;
        }
        Ok(())
    }
}

/// Decodes every input into events, in input order. Rejections go to `reject`.
///
/// # Errors
/// [`ReplayError::Ingest`] when an input cannot be read at all.
pub fn decode_inputs(
    inputs: &[String],
    format: FormatHint,
    summary: &mut Summary,
    mut reject: impl FnMut(&crate::event::RawRef, &[u8], &decode::DecodeError),
) -> Result<Vec<AccessEvent>, ReplayError> {
    let mut events = Vec::new();
    for input in inputs {
        let data = file::read_input(input)?;
        let source = if input == "-" {
            "stdin"
        } else {
            input.as_str()
        };
        file::split_records(&data, source, |bytes, raw| {
            summary.records += 1;
            decode::decode_record(bytes, format, &raw, &mut |element, at, r| match r {
                Ok(Decoded::Event(e)) => events.push(*e),
                Ok(Decoded::Skipped(why)) => {
                    *summary.skipped.entry(why.to_string()).or_default() += 1
                }
                Err(e) => {
                    *summary.rejected.entry(e.code()).or_default() += 1;
                    reject(at, element, &e);
                }
            });
        });
    }
    // Stable: events with equal times keep input order, so the replay is deterministic.
    events.sort_by_key(|e| e.time_ms);
    Ok(events)
}

/// Runs a replay.
///
/// # Errors
/// [`ReplayError`] when an input cannot be read or an output cannot be written. Bad records are
/// not errors: they are counted, logged and written to the dead-letter output.
pub fn run(opts: &ReplayOptions, rules: Rules) -> Result<Summary, ReplayError> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut dead = opts
        .dead_letter
        .as_deref()
        .map(|p| JsonlSink::open(Some(p)))
        .transpose()?;
    let mut dead_err: Option<EmitError> = None;
    let mut logged = 0u32;
    let events = decode_inputs(
        &opts.inputs,
        opts.format,
        &mut summary,
        |raw, bytes, err| {
            if logged < 10 {
                warn!(source = %raw.source_label(), position = raw.position, error = %err, "Rejected undecodable record.");
                logged += 1;
                if logged == 10 {
                    warn!("Further rejected records are counted but not logged.");
                }
            }
            if let Some(d) = dead.as_mut()
                && let Err(e) = d.write(&dead_letter::line(raw, bytes, err))
            {
                dead_err.get_or_insert(e);
            }
        },
    )?;
    if let Some(e) = dead_err {
        return Err(e.into());
    }
    if let Some(d) = dead.as_mut() {
        d.flush()?;
    }

    let same_target = opts.alerts == opts.commands;
    let mut alerts = JsonlSink::open(opts.alerts.as_deref())?;
    let mut commands = if same_target {
        None
    } else {
        Some(JsonlSink::open(opts.commands.as_deref())?)
    };
    let engine = Engine::new(rules);
    if let Some(path) = &opts.state {
        summary.restored = state::file::load(path, &engine)?;
    }
    let total = events.len();
    let mut last_progress = Instant::now();
    for (i, ev) in events.iter().enumerate() {
        for d in engine.process(ev) {
            let msg = emit::render(&d);
            match (&d, commands.as_mut()) {
                (Decision::Command(_), Some(c)) => c.write(&msg)?,
                (Decision::Alert(a), _) => {
                    *summary.alerts_by_cause.entry(a.cause.as_str()).or_default() += 1;
                    alerts.write(&msg)?;
                }
                (Decision::Command(_), None) => alerts.write(&msg)?,
            }
        }
        if opts.progress && last_progress.elapsed() >= Duration::from_millis(500) {
            eprint!(
                "\rreplaying: {}/{} events ({:.0}%)",
                i + 1,
                total,
                (i + 1) as f64 * 100.0 / total as f64
            );
            last_progress = Instant::now();
        }
    }
    if opts.progress && total > 0 {
        eprintln!("\rreplaying: {total}/{total} events (100%)");
    }
    alerts.flush()?;
    if let Some(c) = commands.as_mut() {
        c.flush()?;
    }
    let c = &engine.counters;
    use std::sync::atomic::Ordering::Relaxed;
    summary.events = total as u64;
    summary.identities = engine.identities();
    summary.warming_up = engine.warming_up();
    summary.forgotten = c.forgotten.load(Relaxed);
    summary.alerts_created = c.alerts_created.load(Relaxed);
    summary.alerts_updated = c.alerts_updated.load(Relaxed);
    summary.commands = c.commands.load(Relaxed);
    summary.merged = c.merged.load(Relaxed);
    summary.withheld = c.withheld.load(Relaxed);
    summary.findings_by_detector = engine.findings_by_detector();
    for (severity, n) in engine.alerts_by_severity() {
        if n > 0 {
            summary.alerts_by_severity.insert(severity.name(), n);
        }
    }
    summary.mean_state_bytes = engine.state_bytes().1;
    if let Some(path) = &opts.state {
        summary.saved = Some(state::file::save(&engine, path)?);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// True when progress lines make sense (stderr is a terminal).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
