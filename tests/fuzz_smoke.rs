//! A short, deterministic run of every fuzz target's properties (`driftwatch::tools::fuzz`) over
//! the fixtures and mutations of them: truncations, byte flips, splices and repetitions. The
//! coverage-guided runs are `scripts/fuzz.sh SECONDS`; this keeps the properties true in CI.

use std::path::Path;

use driftwatch::tools::fuzz;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn fixtures() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "json" || x == "jsonl") {
                let data = std::fs::read(&p).unwrap();
                // The whole file, and its first lines one by one.
                for line in data.split(|&c| c == b'\n').take(40) {
                    if !line.is_empty() {
                        out.push(line.to_vec());
                    }
                }
                out.push(data);
            }
        }
    }
    out.push(
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.toml")).unwrap(),
    );
    out
}

fn mutations(seed: &[u8], rng: &mut ChaCha8Rng) -> Vec<Vec<u8>> {
    let mut out = vec![seed.to_vec()];
    if seed.is_empty() {
        return out;
    }
    for _ in 0..6 {
        let mut m = seed.to_vec();
        match rng.random_range(0..5) {
            0 => m.truncate(rng.random_range(0..seed.len())),
            1 => {
                for _ in 0..rng.random_range(1..8) {
                    let i = rng.random_range(0..m.len());
                    m[i] = rng.random();
                }
            }
            2 => {
                let i = rng.random_range(0..m.len());
                let special: &[&[u8]] = &[
                    b"\"",
                    b"{",
                    b"[",
                    b"\\u0000",
                    b"\xEF\xBB\xBF",
                    b"ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tV9wX1yZ3b5D",
                    b"password=",
                    b"1e309",
                    b"-----BEGIN PRIVATE KEY-----",
                    b"\n",
                ];
                let s = special[rng.random_range(0..special.len())];
                m.splice(i..i, s.iter().copied());
            }
            3 => {
                let i = rng.random_range(0..m.len());
                let j = rng.random_range(i..m.len());
                let part = m[i..j].to_vec();
                m.splice(j..j, part.into_iter().cycle().take((j - i) * 3));
            }
            _ => {
                // Deep nesting.
                let depth = rng.random_range(1..2000);
                let mut n = b"[".repeat(depth);
                n.extend_from_slice(&m);
                n.extend(b"]".repeat(depth));
                m = n;
            }
        }
        out.push(m);
    }
    out
}

#[test]
fn every_fuzz_property_holds_on_the_fixtures_and_their_mutations() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut n = 0;
    for seed in fixtures() {
        for input in mutations(&seed, &mut rng) {
            fuzz::decode(&input);
            fuzz::reader(&input);
            fuzz::model(&input);
            fuzz::inventory(&input);
            fuzz::scrub(&input);
            n += 1;
        }
    }
    assert!(n > 500, "only {n} inputs");
}
