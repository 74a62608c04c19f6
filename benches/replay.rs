//! Replay end to end, as users run it (`driftwatch replay FILES`, the release binary), against a
//! reference measured in the same run: a generic `serde_json::Value` parse of every line of the
//! same files on one core. Prints both rates, their ratio and the replay's peak memory.
//!
//! Inputs: the files in `DRIFTWATCH_BENCH_INPUTS` (comma-separated), or a simulated fleet of
//! `DRIFTWATCH_BENCH_IDENTITIES` (default 150) identities over 28 days written to a temporary
//! directory. With `DRIFTWATCH_BENCH_SCALE=1,4` the fleet's files are also concatenated 4 times
//! (shifted in time is not needed: later copies are simply late and counted) to compare peak
//! memory between 1x and 4x the input.
//!
//! Targets (issue 11): replay >= 2.0x the generic parse; peak memory flat between 1x and 4x.
//! Also printed: the CPU time per event of each, steadier than wall-clock rates on a shared host
//! (2.0x on two cores needs at most one generic parse of CPU per event).
//!
//! `cargo bench --bench replay`

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// CPU seconds (user and system) of this process, or of its children waited for.
fn cpu(children: bool) -> f64 {
    driftwatch::telemetry::cpu_seconds()
        .map_or(f64::NAN, |c| if children { c.children } else { c.own })
}

/// Records parsed, wall-clock seconds and CPU seconds.
fn reference(files: &[PathBuf]) -> (u64, f64, f64) {
    let started = Instant::now();
    let cpu_before = cpu(false);
    let mut n = 0u64;
    let mut line = Vec::new();
    for f in files {
        let mut r = BufReader::with_capacity(256 * 1024, std::fs::File::open(f).expect("input"));
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).expect("read") == 0 {
                break;
            }
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                std::hint::black_box(v);
                n += 1;
            }
        }
    }
    (n, started.elapsed().as_secs_f64(), cpu(false) - cpu_before)
}

struct Replayed {
    events: u64,
    secs: f64,
    /// CPU seconds of the replay process, every thread.
    cpu_secs: f64,
    peak_mib: f64,
}

fn replay(files: &[PathBuf], out: &Path) -> Replayed {
    let alerts = out.join("alerts.jsonl");
    let started = Instant::now();
    let cpu_before = cpu(true);
    let o = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .arg("replay")
        .arg("--alerts")
        .arg(&alerts)
        .arg("--commands")
        .arg(&alerts)
        .args(files)
        .output()
        .expect("driftwatch replay runs");
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = cpu(true) - cpu_before;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "replay failed:\n{err}");
    let number_after = |marker: &str| -> f64 {
        let at = err
            .find(marker)
            .unwrap_or_else(|| panic!("no `{marker}` in:\n{err}"));
        err[..at]
            .split_whitespace()
            .last()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no number before `{marker}` in:\n{err}"))
    };
    Replayed {
        events: number_after(" events in") as u64,
        secs,
        cpu_secs,
        peak_mib: number_after(" MiB"),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temporary directory");
    let files: Vec<PathBuf> = match std::env::var("DRIFTWATCH_BENCH_INPUTS") {
        Ok(list) => list.split(',').map(PathBuf::from).collect(),
        Err(_) => {
            let identities = std::env::var("DRIFTWATCH_BENCH_IDENTITIES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(150usize);
            let cfg = driftwatch::tools::simulate::SimConfig {
                identities,
                days: 28,
                seed: 11,
                ..Default::default()
            };
            let dir = tmp.path().join("fleet");
            driftwatch::tools::simulate::write_fleet(&cfg, &dir).expect("simulated fleet");
            vec![dir.join("cloudtrail.jsonl"), dir.join("k8s-audit.jsonl")]
        }
    };
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "inputs: {} files, {:.0} MB",
        files.len(),
        bytes as f64 / 1e6
    );
    let (n, ref_secs, ref_cpu) = reference(&files);
    let ref_rate = n as f64 / ref_secs;
    println!(
        "reference: serde_json::Value parse, one core: {n} records in {ref_secs:.2} s = {:.0} K/s",
        ref_rate / 1e3
    );
    let r = replay(&files, tmp.path());
    let rate = r.events as f64 / r.secs;
    println!(
        "replay end to end (process start to exit): {} events in {:.2} s = {:.0} K/s, {:.2}x the reference; peak memory {:.0} MiB",
        r.events,
        r.secs,
        rate / 1e3,
        rate / ref_rate,
        r.peak_mib
    );
    // CPU time moves far less than wall-clock time with what else this shared host runs: the
    // issue's 2.0x on two cores needs replay's CPU per event at or below the reference's per
    // record, with both cores busy all the time.
    let (ref_us, replay_us) = (ref_cpu * 1e6 / n as f64, r.cpu_secs * 1e6 / r.events as f64);
    println!(
        "CPU: reference {ref_us:.2} us per record, replay {replay_us:.2} us per event (all threads) = {:.2} generic parses per event ({:.2} cores busy)",
        replay_us / ref_us,
        r.cpu_secs / r.secs
    );
    let scales: Vec<usize> = std::env::var("DRIFTWATCH_BENCH_SCALE")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    for k in scales.into_iter().filter(|k| *k > 1) {
        let big = tmp.path().join(format!("x{k}.jsonl"));
        {
            use std::io::Write;
            let mut w = std::io::BufWriter::new(std::fs::File::create(&big).expect("create"));
            for _ in 0..k {
                for f in &files {
                    let mut r = std::fs::File::open(f).expect("input");
                    std::io::copy(&mut r, &mut w).expect("copy");
                }
            }
            w.flush().expect("flush");
        }
        let r = replay(std::slice::from_ref(&big), tmp.path());
        println!(
            "replay of {k}x the input in one file: {} events, peak memory {:.0} MiB",
            r.events, r.peak_mib
        );
        let _ = std::fs::remove_file(&big);
    }
}
