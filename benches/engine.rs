//! Engine throughput, measured against references taken in the same run.
//!
//! - `engine/pre_decoded`: baseline/detect/decide on already decoded events (target >= 1M/s/core).
//! - `json/serde_value`: the reference, a generic parse of each raw record into `serde_json::Value`.
//! - `json/decode_only`: our typed, borrowed decoders on the same records.
//! - `json/full_engine`: decode + engine, the whole per-record path (target: at least as fast as
//!   the generic parse).
//!
//! - `state/encode` and `state/decode`: one identity's snapshot (postcard), per identity, against
//!   `state/encode_json`, the same content as JSON, in the same run; `state/restore`: decoding
//!   snapshots into a fresh engine (target >= 200k identities/s on one core).
//!
//! Bytes of baseline state per identity, and of its snapshot as postcard and as JSON, are
//! printed before the measurements.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use driftwatch::config::Model;
use driftwatch::config::Rules;
use driftwatch::decode::{self, Decoded, FormatHint};
use driftwatch::engine::{Engine, Tracked};
use driftwatch::event::{AccessEvent, RawRef};
use driftwatch::state::snapshot;
use driftwatch::tools::simulate::{SimConfig, generate};

fn fleet() -> (Vec<String>, Vec<AccessEvent>) {
    let cfg = SimConfig {
        identities: 120,
        days: 14,
        seed: 3,
        ..SimConfig::default()
    };
    let (ct, k8s, _) = generate(&cfg);
    let mut raw: Vec<String> = ct.into_iter().chain(k8s).collect();
    let mut events = Vec::with_capacity(raw.len());
    for line in &raw {
        if let Ok(Decoded::Event(e)) =
            decode::decode_one(line.as_bytes(), FormatHint::Auto, RawRef::default())
        {
            events.push(*e);
        }
    }
    // Replay order: by event time, raw records in the same order as their events.
    let mut idx: Vec<usize> = (0..events.len()).collect();
    idx.sort_by_key(|&i| events[i].time_ms);
    events = idx.iter().map(|&i| events[i].clone()).collect();
    raw = idx.iter().map(|&i| raw[i].clone()).collect();
    (raw, events)
}

fn benches(c: &mut Criterion) {
    let (raw, events) = fleet();
    let rules = Rules::new(Model::embedded());
    let states: Vec<(String, Tracked)> = {
        let engine = Engine::new(rules.clone());
        for e in &events {
            black_box(engine.process(e));
        }
        let (total, mean) = engine.state_bytes();
        eprintln!(
            "fleet: {} events, {} identities; baseline state {} bytes in all, {:.0} bytes per identity",
            events.len(),
            engine.identities(),
            total,
            mean
        );
        let mut v = Vec::new();
        engine.for_each_identity(|k, s| v.push((k.to_owned(), s.clone())));
        v
    };
    let codec = snapshot::Codec::new(&rules);
    let snapshots: Vec<Vec<u8>> = states
        .iter()
        .map(|(_, s)| codec.encode_identity(s, &[]))
        .collect();
    let json_bytes: usize = states
        .iter()
        .map(|(_, s)| snapshot::encode_identity_json(s, &[]).len())
        .sum();
    let bin_bytes: usize = snapshots.iter().map(Vec::len).sum();
    let mut sizes: Vec<usize> = snapshots.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    eprintln!(
        "snapshots: {:.0} bytes per identity as postcard (median {}, p90 {}, max {}), {:.0} as JSON",
        bin_bytes as f64 / states.len() as f64,
        sizes[sizes.len() / 2],
        sizes[sizes.len() * 9 / 10],
        sizes[sizes.len() - 1],
        json_bytes as f64 / states.len() as f64
    );

    let mut g = c.benchmark_group("state");
    g.throughput(Throughput::Elements(states.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| {
            for (_, s) in &states {
                black_box(codec.encode_identity(s, &[]));
            }
        })
    });
    g.bench_function("encode_json", |b| {
        b.iter(|| {
            for (_, s) in &states {
                black_box(snapshot::encode_identity_json(s, &[]));
            }
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            for bytes in &snapshots {
                black_box(codec.decode_identity(bytes).ok());
            }
        })
    });
    g.bench_function("restore", |b| {
        b.iter(|| {
            let engine = Engine::new(rules.clone());
            for ((key, _), bytes) in states.iter().zip(&snapshots) {
                if let Ok((s, _)) = codec.decode_identity(bytes) {
                    engine.restore_identity(key.clone(), s);
                }
            }
            black_box(engine.identities())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("pre_decoded", |b| {
        b.iter(|| {
            let engine = Engine::new(rules.clone());
            for e in &events {
                black_box(engine.process(e));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("json");
    g.sample_size(10);
    g.throughput(Throughput::Elements(raw.len() as u64));
    g.bench_function("serde_value", |b| {
        b.iter(|| {
            for r in &raw {
                black_box(serde_json::from_str::<serde_json::Value>(r).ok());
            }
        })
    });
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            for r in &raw {
                black_box(
                    decode::decode_one(r.as_bytes(), FormatHint::Auto, RawRef::default()).ok(),
                );
            }
        })
    });
    g.bench_function("full_engine", |b| {
        b.iter(|| {
            let engine = Engine::new(rules.clone());
            for r in &raw {
                if let Ok(Decoded::Event(e)) =
                    decode::decode_one(r.as_bytes(), FormatHint::Auto, RawRef::default())
                {
                    black_box(engine.process(&e));
                }
            }
        })
    });
    g.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
