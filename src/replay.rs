//! Offline replay: read and decode files as streams (one reader thread per input, in bounded
//! memory), merge them in event-time order within a bounded reorder window, run the engine,
//! write alerts and commands as JSONL. The same input and flags always give the same output.
//!
//! Each input is expected to be nearly in time order (CloudTrail delivery files cover minutes,
//! audit logs are written in order). Events are held back until every input still being read
//! has moved `--max-lateness-seconds` past them, then processed in (time, input, position)
//! order: for inputs in time order, exactly the order of a global sort. An input's progress is
//! the earliest of its last three event times, so a single event stamped far ahead does not
//! count as progress. An event that arrives
//! after events later than it were processed is *late*: it is processed at once, in arrival
//! order, and counted, never dropped.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::config::Rules;
use crate::decide::{Activity, Decision};
use crate::decode::{self, DecodeError, Decoded, FormatHint};
use crate::detect::Detector;
use crate::emit::{self, EmitError, dead_letter, sink::JsonlSink};
use crate::engine::Engine;
use crate::event::{AccessEvent, RawRef};
use crate::ingest::file::IngestError;
use crate::ingest::stream::{Record, RecordReader};
use crate::state::{
    self,
    file::{Loaded, Saved, StateError},
};

/// What to replay and where results go.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub inputs: Vec<String>,
    pub format: FormatHint,
    /// The Kubernetes cluster the inputs' audit records come from (those whose envelope names
    /// none), which qualifies their principal keys.
    pub cluster: Option<String>,
    /// Alerts JSONL; standard output when `None`.
    pub alerts: Option<PathBuf>,
    pub alert_format: crate::emit::AlertFormat,
    /// Commands JSONL; standard output when `None`.
    pub commands: Option<PathBuf>,
    /// Governance commands of the dormancy lifecycle, JSONL; counted only when `None`.
    pub governance: Option<PathBuf>,
    /// Rejected records with their reasons, JSONL; only counted and logged when `None`.
    pub dead_letter: Option<PathBuf>,
    /// Engine state to continue from (when the file exists) and to save at the end.
    pub state: Option<PathBuf>,
    pub progress: bool,
    /// How far (ms of event time) an event may arrive after later ones and still be put in order.
    pub max_lateness_ms: i64,
    /// Records longer than this are dead-lettered as `too_large`, not decoded.
    pub max_record_bytes: usize,
}

/// Default `--max-lateness-seconds`: 15 minutes.
pub const DEFAULT_MAX_LATENESS_SECONDS: u64 = 900;
/// Default `--max-record-bytes`: 8 MiB, room for a busy account's CloudTrail delivery file
/// (one record holding thousands of events) while bounding what one record may cost.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Emit(#[from] EmitError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Pairs as a JSON object, in their order.
fn as_map<S: serde::Serializer>(pairs: &[(Detector, u64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(d, n)| (d.as_str(), n)))
}

/// Totals of one replay, printed to stderr by the CLI (as text, or as JSON with
/// `--log-format json`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub records: u64,
    pub events: u64,
    pub identities: usize,
    pub warming_up: usize,
    pub forgotten: u64,
    /// Events that arrived beyond the reorder window (processed in arrival order).
    pub late_events: u64,
    /// Rejected elements of containers past the per-record dead-letter limit (counted only).
    pub rejected_not_written: u64,
    /// Inputs that could not be read to their end: the error (the records before it counted).
    pub input_errors: Vec<String>,
    pub skipped: BTreeMap<String, u64>,
    pub rejected: BTreeMap<&'static str, u64>,
    pub alerts_created: u64,
    pub alerts_updated: u64,
    pub alerts_closed: u64,
    pub alerts_by_cause: BTreeMap<&'static str, u64>,
    pub alerts_by_severity: BTreeMap<&'static str, u64>,
    #[serde(serialize_with = "as_map")]
    pub findings_by_detector: Vec<(Detector, u64)>,
    pub commands: u64,
    pub merged: u64,
    pub withheld: u64,
    /// Governance commands of the dormancy lifecycle, and steps its guardrails deferred.
    pub suspensions: u64,
    pub deletions: u64,
    pub lifecycle_deferred: u64,
    pub mean_state_bytes: f64,
    /// Peak resident memory of the process (Linux; `None` elsewhere).
    pub peak_rss_bytes: Option<u64>,
    /// What `--state` restored (`None`: no state file given, or none yet).
    pub restored: Option<Loaded>,
    /// What `--state` saved.
    pub saved: Option<Saved>,
    #[serde(
        rename = "elapsed_seconds",
        serialize_with = "crate::telemetry::serialize_seconds"
    )]
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
            "  alerts: {} raised, {} escalating updates, {} repeats merged into open alerts, {} closed",
            self.alerts_created, self.alerts_updated, self.merged, self.alerts_closed
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
        if self.suspensions + self.deletions + self.lifecycle_deferred > 0 {
            writeln!(
                f,
                "  lifecycle (governance) commands: {} suspensions, {} deletions of idle identities, {} deferred by the lifecycle's guardrails",
                self.suspensions, self.deletions, self.lifecycle_deferred
            )?;
        }
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
        if self.late_events > 0 {
            writeln!(
                f,
                "  late events: {} (beyond --max-lateness-seconds, processed in arrival order)",
                self.late_events
            )?;
        }
        for e in &self.input_errors {
            writeln!(f, "  input error: {e}")?;
        }
        if let Some(b) = self.peak_rss_bytes {
            writeln!(f, "  peak memory: {:.0} MiB", b as f64 / (1 << 20) as f64)?;
        }
        let rejected = self.rejected.values().sum::<u64>();
        write!(f, "  rejected records: {rejected}")?;
        if rejected > 0 {
            write!(f, " ({})", join(&self.rejected))?;
        }
        if self.rejected_not_written > 0 {
            write!(
                f,
                "; {} bad elements of large containers counted but not dead-lettered (at most {MAX_DEAD_LETTERS_PER_RECORD} per record)",
                self.rejected_not_written
            )?;
        }
        Ok(())
    }
}

/// A record rejected by a reader, for the dead-letter output.
struct Rejected {
    raw: RawRef,
    /// The record's bytes (an oversized one's first bytes only).
    bytes: Vec<u8>,
    error: DecodeError,
}

/// What an input's reader thread sends: events decoded in input order, and what else it met.
#[derive(Default)]
struct Batch {
    /// Boxed as decoded: the reorder heap then moves pointers, not events.
    #[allow(clippy::vec_box)]
    events: Vec<Box<AccessEvent>>,
    records: u64,
    skipped: Vec<String>,
    rejected: Vec<Rejected>,
    /// Rejected elements counted but not dead-lettered, by reason.
    uncopied: BTreeMap<&'static str, u64>,
    /// The input could not be read on (this is its last batch).
    error: Option<IngestError>,
    /// The input's last batch.
    last: bool,
    /// The decode worker that built the events (their memory goes back to it, see [`Spent`]).
    worker: usize,
}

/// Records per batch handed from a reader to the decode workers, and bytes at most.
const BATCH_RECORDS: usize = 1024;
const BATCH_BYTES: usize = 1 << 20;
/// Inputs read at the same time; the others wait their turn, in the order given.
const MAX_OPEN_INPUTS: usize = 32;
/// Batches of one input read but not yet merged: bounds memory per input.
const IN_FLIGHT_PER_INPUT: usize = 4;

/// Records read from one input, to be decoded by a worker.
#[derive(Default)]
struct RawBatch {
    buffers: Buffers,
    rejected: Vec<Rejected>,
    error: Option<IngestError>,
    /// The input's last batch: the merge learns the input ended from it (the result channels
    /// stay open while the workers live).
    last: bool,
}

/// A batch's record buffers: the records' bytes back to back, and each one's place and source.
/// Emptied and reused from batch to batch (see [`BufferPool`]).
#[derive(Default)]
struct Buffers {
    data: Vec<u8>,
    records: Vec<(std::ops::Range<usize>, RawRef)>,
}

/// Record buffers decoded and emptied, for the readers to fill again. Reusing them saves a
/// megabyte's allocation, page faults and growth copies per batch; a fresh buffer grows by
/// doubling, and with glibc each free of a large block also consolidates the allocator's
/// small free blocks.
#[derive(Default)]
struct BufferPool(std::sync::Mutex<Vec<Buffers>>);

/// Spare buffers kept: enough for every batch in flight to find one.
const POOL_BUFFERS: usize = 16;

impl BufferPool {
    fn take(&self) -> Buffers {
        let spare = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
        spare.unwrap_or_else(|| Buffers {
            data: Vec::with_capacity(BATCH_BYTES + BATCH_BYTES / 4),
            records: Vec::with_capacity(BATCH_RECORDS),
        })
    }

    fn give(&self, mut b: Buffers) {
        // An oversized record leaves an oversized buffer: let it go rather than keep it.
        if b.data.capacity() > 2 * BATCH_BYTES {
            return;
        }
        b.data.clear();
        b.records.clear();
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_BUFFERS {
            pool.push(b);
        }
    }
}

/// A batch to decode: the input it came from and its place in that input.
struct Job {
    input: usize,
    seq: u64,
    raw: RawBatch,
}

/// Reads one input into batches of records for the decode workers, until it ends or the
/// replay stops. `tokens` bounds the batches in flight.
fn read_input(
    input: usize,
    path: &str,
    max_record_bytes: usize,
    jobs: &SyncSender<Job>,
    tokens: &SyncSender<()>,
    pool: &BufferPool,
) {
    let mut seq = 0u64;
    let mut send = |raw: RawBatch| -> bool {
        if tokens.send(()).is_err() {
            return false;
        }
        seq += 1;
        jobs.send(Job { input, seq, raw }).is_ok()
    };
    let mut reader = match RecordReader::open(path, max_record_bytes) {
        Ok(r) => r,
        Err(e) => {
            send(RawBatch {
                error: Some(e),
                last: true,
                ..RawBatch::default()
            });
            return;
        }
    };
    let fresh = || RawBatch {
        buffers: pool.take(),
        ..RawBatch::default()
    };
    let mut batch = fresh();
    loop {
        match reader.next_record() {
            Ok(Some(Record::Ok(bytes, raw))) => {
                let b = &mut batch.buffers;
                let start = b.data.len();
                b.data.extend_from_slice(bytes);
                b.records.push((start..b.data.len(), raw));
            }
            Ok(Some(Record::TooLarge { prefix, len, raw })) => {
                batch.rejected.push(Rejected {
                    raw,
                    bytes: prefix.to_vec(),
                    error: DecodeError::TooLarge {
                        len,
                        limit: max_record_bytes as u64,
                    },
                });
            }
            Ok(None) => break,
            Err(e) => {
                batch.error = Some(e);
                break;
            }
        }
        let full =
            batch.buffers.records.len() >= BATCH_RECORDS || batch.buffers.data.len() >= BATCH_BYTES;
        if full && !send(std::mem::replace(&mut batch, fresh())) {
            return;
        }
    }
    batch.last = true;
    send(batch);
}

/// Decodes a batch of records; hands back its emptied buffers.
fn decode_batch(raw: RawBatch, format: FormatHint, cluster: Option<&str>) -> (Batch, Buffers) {
    let mut buffers = raw.buffers;
    let mut batch = Batch {
        records: (buffers.records.len() + raw.rejected.len()) as u64,
        rejected: raw.rejected,
        error: raw.error,
        last: raw.last,
        ..Batch::default()
    };
    for (range, at) in buffers.records.drain(..) {
        let mut rejected_here = 0usize;
        decode::decode_record(
            &buffers.data[range],
            format,
            cluster,
            &at,
            &mut |element, at, r| match r {
                Ok(Decoded::Event(e)) => batch.events.push(e),
                Ok(Decoded::Skipped(why)) => batch.skipped.push(why.to_string()),
                // A container of a million bad elements is counted, but dead-lettered only up to
                // a point: one record's dead letters must not outgrow the record many times over.
                Err(error) if rejected_here >= MAX_DEAD_LETTERS_PER_RECORD => {
                    *batch.uncopied.entry(error.code()).or_default() += 1;
                }
                Err(error) => {
                    rejected_here += 1;
                    batch.rejected.push(Rejected {
                        raw: at.clone(),
                        bytes: element.to_vec(),
                        error,
                    });
                }
            },
        );
    }
    (batch, buffers)
}

/// Dead letters written for the bad elements of one container record; the rest are counted.
const MAX_DEAD_LETTERS_PER_RECORD: usize = 100;

/// An event held in the reorder window, ordered by time, then input, then arrival.
struct Held {
    time_ms: i64,
    input: usize,
    seq: u64,
    /// The decode worker that built the event.
    worker: usize,
    event: Box<AccessEvent>,
}

/// Events merged, on their way back to the decode worker that built them, to be freed there.
/// With glibc's allocator (the library's default; the binary uses jemalloc), a block freed on
/// another thread goes back to its owner's arena under that arena's lock and refills only the
/// freeing thread's cache: freeing the workers' events on the merge thread left every
/// allocation of the decoders on the allocator's slow path. Under jemalloc the binary measured
/// the same with or without this (2026-12-04, within noise).
#[derive(Default)]
#[allow(clippy::vec_box)]
struct Spent {
    pending: Vec<Vec<Box<AccessEvent>>>,
    to: Vec<Sender<Vec<Box<AccessEvent>>>>,
}

impl Spent {
    fn put(&mut self, worker: usize, event: Box<AccessEvent>) {
        let pending = &mut self.pending[worker];
        pending.push(event);
        if pending.len() >= BATCH_RECORDS {
            let events = std::mem::replace(pending, Vec::with_capacity(BATCH_RECORDS));
            // When the worker is gone (the replay is ending) they are freed here.
            let _ = self.to[worker].send(events);
        }
    }
}

impl PartialEq for Held {
    fn eq(&self, o: &Held) -> bool {
        (self.time_ms, self.input, self.seq) == (o.time_ms, o.input, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Held) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Held) -> std::cmp::Ordering {
        (self.time_ms, self.input, self.seq).cmp(&(o.time_ms, o.input, o.seq))
    }
}

/// One input being read.
struct Source {
    /// Its decoded batches, in the order the workers finish them.
    rx: Receiver<(u64, Batch)>,
    /// Batches that arrived before the one due next.
    early: BTreeMap<u64, Batch>,
    next_seq: u64,
    /// Frees one of the input's in-flight places.
    tokens: Receiver<()>,
    /// How far in event time the input has got: the highest of the minima of every three
    /// consecutive event times (`i64::MIN` before its first event). One event stamped far in
    /// the future (a broken clock, a hostile record) does not move it, so the input is not
    /// taken as ahead of the others and left unread while their events pass its own.
    high: i64,
    /// The input's last event times, newest first.
    recent: [i64; PROGRESS_EVENTS],
    /// Its reader has been started (inputs are opened a bounded number at a time).
    started: bool,
    done: bool,
}

/// Events that must agree before an input's progress moves to their time.
const PROGRESS_EVENTS: usize = 3;

impl Source {
    /// Notes an event's time: moves the input's progress to the earliest of its latest events.
    fn observe(&mut self, time_ms: i64) {
        self.recent.rotate_right(1);
        self.recent[0] = time_ms;
        // Slots not yet filled hold i64::MIN: an input has no progress before its third event
        // (it is read first meanwhile, being furthest behind).
        let floor = self.recent.iter().copied().min().unwrap_or(time_ms);
        self.high = self.high.max(floor);
    }

    /// The input's next batch in input order; `None` when it has no more.
    fn next_batch(&mut self) -> Option<Batch> {
        let batch = loop {
            if let Some(b) = self.early.remove(&self.next_seq) {
                break b;
            }
            let (seq, b) = self.rx.recv().ok()?;
            self.early.insert(seq, b);
        };
        self.next_seq += 1;
        let _ = self.tokens.try_recv();
        Some(batch)
    }
}

/// Reads every input on its own thread and calls `process` with their events merged in event
/// time order (within `max_lateness_ms`; later ones in arrival order, counted in the summary),
/// and `reject` with each rejected record, both on the calling thread.
///
/// # Errors
/// What `process` or `reject` returns.
pub fn merge_inputs<E>(
    opts: &ReplayOptions,
    summary: &mut Summary,
    mut process: impl FnMut(&AccessEvent) -> Result<(), E>,
    mut reject: impl FnMut(&RawRef, &[u8], &DecodeError) -> Result<(), E>,
) -> Result<(), E> {
    let pool = &BufferPool::default();
    std::thread::scope(|scope| {
        // Decoding is the costly step: a pool of workers decodes the batches every input's
        // reader thread reads, and each input's batches are put back in order before the merge.
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (job_tx, job_rx) = sync_channel::<Job>(2 * workers);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let mut results = Vec::new();
        let mut sources: Vec<Source> = Vec::new();
        // Inputs are read at most MAX_OPEN_INPUTS at a time, in the order given: a month of
        // CloudTrail delivery files must not be thousands of threads and open files.
        let mut unopened = std::collections::VecDeque::new();
        for i in 0..opts.inputs.len() {
            let (tx, rx) = channel::<(u64, Batch)>();
            let (tok_tx, tok_rx) = sync_channel::<()>(IN_FLIGHT_PER_INPUT);
            results.push(tx);
            unopened.push_back((i, tok_tx));
            sources.push(Source {
                rx,
                early: BTreeMap::new(),
                next_seq: 1,
                tokens: tok_rx,
                high: i64::MIN,
                recent: [i64::MIN; PROGRESS_EVENTS],
                started: false,
                done: false,
            });
        }
        let mut job_tx = Some(job_tx);
        let mut open_next = |sources: &mut Vec<Source>| {
            if let (Some((i, tok_tx)), Some(jobs)) = (unopened.pop_front(), job_tx.as_ref()) {
                let jobs = jobs.clone();
                let (input, max) = (&opts.inputs[i], opts.max_record_bytes);
                scope.spawn(move || read_input(i, input, max, &jobs, &tok_tx, pool));
                sources[i].started = true;
            }
            if unopened.is_empty() {
                // The workers stop once every reader is done and this last sender is gone.
                job_tx = None;
            }
        };
        for _ in 0..MAX_OPEN_INPUTS.min(opts.inputs.len()).max(1) {
            open_next(&mut sources);
        }
        let mut spent = Spent::default();
        for worker in 0..workers {
            let job_rx = job_rx.clone();
            let results = results.clone();
            let format = opts.format;
            let cluster = opts.cluster.as_deref();
            let (spent_tx, spent_rx) = channel::<Vec<Box<AccessEvent>>>();
            spent.pending.push(Vec::with_capacity(BATCH_RECORDS));
            spent.to.push(spent_tx);
            scope.spawn(move || {
                loop {
                    // Free the events merged since, before allocating the next batch's.
                    while let Ok(events) = spent_rx.try_recv() {
                        drop(events);
                    }
                    let job = match job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    };
                    let (mut batch, buffers) = decode_batch(job.raw, format, cluster);
                    pool.give(buffers);
                    batch.worker = worker;
                    let _ = results[job.input].send((job.seq, batch));
                }
            });
        }
        drop(results);
        let mut held: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
        let mut processed_upto = i64::MIN;
        let mut seq = 0u64;
        // Pull from the input furthest behind in event time, so none runs far ahead.
        while let Some(i) = sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.started && !s.done)
            .min_by_key(|(i, s)| (s.high, *i))
            .map(|(i, _)| i)
        {
            let Some(batch) = sources[i].next_batch() else {
                // The workers are gone: only when the replay is being torn down.
                sources[i].done = true;
                continue;
            };
            if batch.last {
                sources[i].done = true;
                open_next(&mut sources);
            }
            summary.records += batch.records;
            for why in batch.skipped {
                *summary.skipped.entry(why).or_default() += 1;
            }
            for r in &batch.rejected {
                *summary.rejected.entry(r.error.code()).or_default() += 1;
                reject(&r.raw, &r.bytes, &r.error)?;
            }
            for (code, n) in batch.uncopied {
                *summary.rejected.entry(code).or_default() += n;
                summary.rejected_not_written += n;
            }
            if let Some(e) = batch.error {
                // Reported once, in the summary; here only for whoever debugs a long replay.
                debug!(error = %e, "An input could not be read to its end; the others replay on.");
                summary.input_errors.push(e.to_string());
            }
            for event in batch.events {
                summary.events += 1;
                if event.time_ms < processed_upto {
                    summary.late_events += 1;
                    process(&event)?;
                    spent.put(batch.worker, event);
                    continue;
                }
                sources[i].observe(event.time_ms);
                seq += 1;
                held.push(Reverse(Held {
                    time_ms: event.time_ms,
                    input: i,
                    seq,
                    worker: batch.worker,
                    event,
                }));
            }
            let watermark = sources
                .iter()
                .filter(|s| s.started && !s.done)
                .map(|s| s.high)
                .min()
                .map_or(i64::MAX, |h| h.saturating_sub(opts.max_lateness_ms));
            while held.peek().is_some_and(|h| h.0.time_ms <= watermark) {
                let Reverse(h) = held.pop().expect("peeked");
                processed_upto = processed_upto.max(h.time_ms);
                process(&h.event)?;
                spent.put(h.worker, h.event);
            }
        }
        while let Some(Reverse(h)) = held.pop() {
            process(&h.event)?;
        }
        Ok(())
    })
}

/// Where a replay's decisions go: alerts, revocation commands (with the alerts when both name
/// the same target), governance commands (counted only, without a target).
struct Outputs {
    alerts: JsonlSink,
    commands: Option<JsonlSink>,
    governance: Option<JsonlSink>,
    format: crate::emit::AlertFormat,
    by_cause: BTreeMap<&'static str, u64>,
}

impl Outputs {
    fn open(opts: &ReplayOptions) -> Result<Outputs, ReplayError> {
        let alerts = JsonlSink::open(opts.alerts.as_deref())?;
        let commands = if opts.alerts == opts.commands {
            None
        } else {
            Some(JsonlSink::open(opts.commands.as_deref())?)
        };
        let governance = opts
            .governance
            .as_deref()
            .map(|p| JsonlSink::open(Some(p)))
            .transpose()?;
        Ok(Outputs {
            alerts,
            commands,
            governance,
            format: opts.alert_format,
            by_cause: BTreeMap::new(),
        })
    }

    fn write(&mut self, d: &Decision) -> Result<(), ReplayError> {
        if d.is_governance() {
            if let Some(g) = self.governance.as_mut() {
                g.write(&emit::render_as(d, crate::telemetry::now_ms(), self.format))?;
            }
            return Ok(());
        }
        let msg = emit::render_as(d, crate::telemetry::now_ms(), self.format);
        match (d, self.commands.as_mut()) {
            (Decision::Command(_), Some(c)) => c.write(&msg)?,
            (Decision::Alert(a), _) => {
                if a.activity != Activity::Close {
                    *self.by_cause.entry(a.cause.as_str()).or_default() += 1;
                }
                self.alerts.write(&msg)?;
            }
            (Decision::Command(_), None) => self.alerts.write(&msg)?,
        }
        Ok(())
    }

    /// Flushes every output; returns the alerts counted by cause.
    fn flush(mut self) -> Result<BTreeMap<&'static str, u64>, ReplayError> {
        self.alerts.flush()?;
        for s in [self.commands.as_mut(), self.governance.as_mut()]
            .into_iter()
            .flatten()
        {
            s.flush()?;
        }
        Ok(self.by_cause)
    }
}

/// Runs a replay.
///
/// # Errors
/// [`ReplayError`] when an output cannot be written or the state file cannot be read or saved.
/// Bad records are not errors: they are counted, logged and written to the dead-letter output;
/// an input that cannot be read is reported in the summary and the others replay on.
pub fn run(opts: &ReplayOptions, rules: Rules) -> Result<Summary, ReplayError> {
    let started = Instant::now();
    if opts.inputs.iter().filter(|i| *i == "-").count() > 1 {
        return Err(ReplayError::Ingest(IngestError::Read {
            path: "stdin".into(),
            source: std::io::Error::other(
                "`-` given more than once: standard input can be read only once",
            ),
        }));
    }
    let mut summary = Summary::default();
    let mut dead = opts
        .dead_letter
        .as_deref()
        .map(|p| JsonlSink::open(Some(p)))
        .transpose()?;
    let mut logged = 0u32;
    let mut out = Outputs::open(opts)?;
    let engine = Engine::new(rules);
    if let Some(path) = &opts.state {
        summary.restored = state::file::load(path, &engine)?;
    }
    let mut last_progress = Instant::now();
    let mut n = 0u64;
    let mut end_of_time = i64::MIN;
    merge_inputs(
        opts,
        &mut summary,
        |ev| -> Result<(), ReplayError> {
            end_of_time = end_of_time.max(ev.time_ms);
            for d in engine.process(ev) {
                out.write(&d)?;
            }
            n += 1;
            if opts.progress && last_progress.elapsed() >= Duration::from_millis(500) {
                eprint!("\rreplaying: {n} events");
                last_progress = Instant::now();
            }
            Ok(())
        },
        |raw, bytes, err| {
            if logged < 10 {
                warn!(source = %raw.source_label(), position = raw.position, error = %err, "Rejected undecodable record.");
                logged += 1;
                if logged == 10 {
                    warn!("Further rejected records are counted but not logged.");
                }
            }
            if let Some(d) = dead.as_mut() {
                d.write(&dead_letter::line(raw, bytes, err))?;
            }
            Ok(())
        },
    )?;
    if let Some(d) = dead.as_mut() {
        d.flush()?;
    }
    // The end of input time: silences that crossed a lifecycle horizon since the last hourly
    // pass are due too, as they would be at the service's next event.
    if end_of_time > i64::MIN {
        for d in engine.advance_lifecycle(end_of_time) {
            out.write(&d)?;
        }
    }
    if opts.progress && n > 0 {
        eprintln!("\rreplaying: {n} events (done)");
    }
    summary.alerts_by_cause = out.flush()?;
    let c = &engine.counters;
    use std::sync::atomic::Ordering::Relaxed;
    summary.identities = engine.identities();
    summary.warming_up = engine.warming_up();
    summary.forgotten = c.forgotten.load(Relaxed);
    summary.alerts_created = c.alerts_created.load(Relaxed);
    summary.alerts_updated = c.alerts_updated.load(Relaxed);
    summary.alerts_closed = c.alerts_closed.load(Relaxed);
    summary.commands = c.commands.load(Relaxed);
    summary.merged = c.merged.load(Relaxed);
    summary.withheld = c.withheld.load(Relaxed);
    summary.suspensions = c.lifecycle_suspended.load(Relaxed);
    summary.deletions = c.lifecycle_deleted.load(Relaxed);
    summary.lifecycle_deferred = c.lifecycle_deferred.load(Relaxed);
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
    summary.peak_rss_bytes = peak_rss_bytes();
    Ok(summary)
}

/// The process's peak resident set (VmHWM), where /proc tells it.
fn peak_rss_bytes() -> Option<u64> {
    crate::telemetry::proc_status_bytes("VmHWM")
}

/// True when progress lines make sense (stderr is a terminal).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
