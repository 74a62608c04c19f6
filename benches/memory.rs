//! Resident memory per identity at fleet scale: what a service holding a million identities
//! actually costs, measured as process RSS (not the engine's own estimate, which is printed
//! beside it so the two can be compared).
//!
//! Each phase runs in a fresh child process (RSS never shrinks reliably after frees):
//!
//! - `hot`: N identities (default 1,000,000; `DRIFTWATCH_BENCH_IDENTITIES`) with one event each,
//!   every one with an address, a client and an endpoint of its own.
//! - `cold`: as many cold summaries (identities silent past `baseline.cold_after_days`),
//!   restored from their snapshots into a fresh engine as a restarted service restores them
//!   (the restore rate is printed too).
//!
//! Target (issue 10): hot RSS <= 2 KiB per identity at 1M identities.
//!
//! `cargo bench --bench memory`

/// The binary's allocator (see `src/main.rs`): RSS per identity depends on it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use driftwatch::config::{Model, Rules};
use driftwatch::decode::{self, Decoded, FormatHint};
use driftwatch::engine::Engine;
use driftwatch::event::{AccessEvent, RawRef};
use driftwatch::state::snapshot::Codec;

const DAY_MS: i64 = 86_400_000;
const T0: i64 = 1_767_225_600_000; // 2026-01-01

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm resident field");
    pages * 4096
}

fn event(i: usize, time_ms: i64) -> AccessEvent {
    let rec = format!(
        r#"{{"time":{time_ms},"principal":{{"key":"arn:aws:iam::123456789012:role/service-{i:07}","type":"aws_role"}},"action":"s3.amazonaws.com:GetObject","origin":{{"ip":"10.{}.{}.{}","user_agent":"aws-sdk-go/1.{} (go1.22; linux; amd64)"}}}}"#,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff,
        i % 50,
    );
    match decode::decode_one(rec.as_bytes(), FormatHint::Auto, RawRef::default()) {
        Ok(Decoded::Event(e)) => *e,
        other => panic!("bench record did not decode: {other:?}"),
    }
}

fn report(name: &str, engine: &Engine, n: usize, before: usize, elapsed: f64, what: &str) {
    let after = rss_bytes();
    let census = engine.census();
    println!(
        "{name}: {} identities ({} cold) {what} in {elapsed:.1} s ({:.0}k/s); RSS +{:.0} MiB = \
         {:.0} bytes per identity; engine reports {:.0} bytes per identity",
        census.identities,
        census.cold,
        n as f64 / elapsed / 1e3,
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / n as f64,
        census.state_bytes as f64 / census.identities.max(1) as f64,
    );
}

/// N identities with one event each.
fn hot(n: usize) {
    let engine = Engine::new(Rules::new(Model::embedded()));
    let before = rss_bytes();
    let started = Instant::now();
    for i in 0..n {
        black_box(engine.process(&event(i, T0 + i as i64)));
    }
    let elapsed = started.elapsed().as_secs_f64();
    report("hot", &engine, n, before, elapsed, "learned");
}

/// N cold summaries, restored from their snapshots as a restarted service restores them.
fn cold(n: usize) {
    let rules = Rules::new(Model::embedded());
    let codec = Codec::new(&rules);
    let mut snapshots = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let engine = Engine::new(rules.clone());
        for &i in chunk {
            engine.process(&event(i, T0 + i as i64));
        }
        // Another identity's event 40 days later: the sweep shrinks the silent ones.
        engine.process(&event(usize::MAX, T0 + 40 * DAY_MS));
        engine.for_each_identity(|k, s| {
            if s.is_cold() {
                snapshots.push((k.to_owned(), codec.encode_identity(s, &[])));
            }
        });
    }
    assert_eq!(snapshots.len(), n, "every identity went cold");
    let bytes: usize = snapshots.iter().map(|(_, b)| b.len()).sum();
    println!(
        "cold snapshot: {:.0} bytes per identity on the wire",
        bytes as f64 / n as f64
    );
    let engine = Engine::new(rules.clone());
    let before = rss_bytes();
    let started = Instant::now();
    for (k, b) in &snapshots {
        let (s, _) = codec.decode_identity(b).expect("a snapshot just written");
        engine.restore_identity(k.clone(), s);
    }
    let elapsed = started.elapsed().as_secs_f64();
    report("cold", &engine, n, before, elapsed, "restored");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = std::env::var("DRIFTWATCH_BENCH_IDENTITIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    if let Some(i) = args.iter().position(|a| a == "--phase") {
        match args[i + 1].as_str() {
            "hot" => hot(n),
            "cold" => cold(n),
            other => panic!("unknown phase {other}"),
        }
        return;
    }
    // `cargo bench` passes `--bench`; a filter argument may follow. Run each phase alone.
    let exe = std::env::current_exe().expect("bench executable");
    for name in ["hot", "cold"] {
        let status = Command::new(&exe)
            .args(["--phase", name])
            .status()
            .expect("run bench phase");
        assert!(status.success(), "phase {name} failed");
    }
}
