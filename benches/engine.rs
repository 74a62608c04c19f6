//! Engine throughput, measured against references taken in the same run.
//!
//! - `engine/pre_decoded`: baseline/detect/decide on already decoded events (target >= 1M/s/core).
//! - `json/serde_value`: the reference, a generic parse of each raw record into `serde_json::Value`.
//! - `json/decode_only`: our typed, borrowed decoders on the same records.
//! - `json/full_engine`: decode + engine, the whole per-record path (target: at least as fast as
//!   the generic parse).
//!
//! Bytes of baseline state per identity are printed before the measurements.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use driftwatch::config::Model;
use driftwatch::config::Rules;
use driftwatch::decode::{self, Decoded, FormatHint};
use driftwatch::engine::Engine;
use driftwatch::event::{AccessEvent, RawRef};
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
    {
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
    }

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
