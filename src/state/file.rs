//! The whole engine in one file, for `driftwatch replay --state FILE`: daily batch replays
//! continue one baseline instead of starting from nothing.
//!
//! Layout: a sequence of chunks, each a little-endian `u32` length and that many bytes. The first
//! chunk is the engine-wide state ([`Codec::encode_engine`]); then two chunks per identity, its
//! principal key (UTF-8) and its snapshot ([`Codec::encode_identity`]), in key order, so the
//! same state always writes the same file. Saving writes `FILE.tmp` beside the file, flushes and
//! syncs it, then renames it over the file: a crash mid-write leaves the old state whole.
//! Loading streams the file chunk by chunk, so memory holds one identity at a time beyond the
//! engine itself.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::snapshot::{Codec, EngineLifecycleV1, EngineV1, FleetValueV1, SnapshotError};
use crate::baseline::fleet::{FleetValue, Table};
use crate::engine::{Engine, NO_OWNER};

/// Why a state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} state file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("state file {path} is corrupt: {why}; move it away to start from an empty state")]
    Corrupt { path: PathBuf, why: String },
}

/// What a load restored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Loaded {
    pub identities: usize,
    /// Identities whose snapshots were written under another format or model fingerprint, and
    /// relearn from scratch.
    pub dropped: usize,
    pub bytes: u64,
}

/// What a save wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Saved {
    pub identities: usize,
    pub bytes: u64,
}

fn write_chunk(w: &mut impl Write, bytes: &[u8]) -> io::Result<u64> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "chunk over 4 GiB"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(bytes)?;
    Ok(4 + u64::from(len))
}

/// The next chunk, or `None` at a clean end of file.
fn read_chunk(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    buf.resize(u32::from_le_bytes(len) as usize, 0);
    r.read_exact(buf)?;
    Ok(Some(()))
}

/// The engine-wide state of `engine`, as snapshots store it.
pub fn engine_state(engine: &Engine) -> EngineV1 {
    let fleet = engine.fleet();
    let values = |t: Table| {
        fleet
            .values(t)
            .into_iter()
            .map(|(h, v)| FleetValueV1::new(h, v.users, v.last_hour, v.label.into_string()))
            .collect()
    };
    EngineV1 {
        swept_day: engine.swept_day(),
        fleet_first_ms: fleet.first_ms(),
        endpoints: values(Table::Endpoints),
        origins: values(Table::Origins),
        issued: engine.guardrails().issued(),
    }
}

/// The dormancy lifecycle's engine-wide state of `engine`.
pub fn engine_lifecycle(engine: &Engine) -> EngineLifecycleV1 {
    let (lifecycle_hour, lifecycle_issued, declared) = engine.lifecycle_state();
    EngineLifecycleV1 {
        lifecycle_hour,
        lifecycle_issued,
        declared_stages: declared.into_iter().map(|(k, s)| (k, s.id())).collect(),
    }
}

/// Restores the dormancy lifecycle's engine-wide state into `engine`.
pub fn restore_lifecycle(engine: &Engine, lifecycle: EngineLifecycleV1) {
    engine.restore_lifecycle_state(
        lifecycle.lifecycle_hour,
        lifecycle.lifecycle_issued,
        lifecycle
            .declared_stages
            .into_iter()
            .filter_map(|(k, s)| Some((k, crate::baseline::lifecycle::Stage::from_id(s)?)))
            .collect(),
    );
}

/// Restores engine-wide state into `engine`; endpoint sensitivity tiers are recomputed under its
/// rules.
pub fn restore_engine_state(engine: &Engine, (e, lifecycle): (EngineV1, EngineLifecycleV1)) {
    restore_lifecycle(engine, lifecycle);
    let rules = engine.rules();
    let fleet = engine.fleet();
    let to_value = |v: FleetValueV1, tier: Option<u8>| FleetValue {
        users: v.users,
        last_hour: v.last_hour,
        label: v.label.into_boxed_str(),
        tier,
    };
    fleet.restore(
        Table::Endpoints,
        e.endpoints.into_iter().map(|v| {
            let tier = rules.tier_of(&v.label);
            (v.hash(), to_value(v, tier))
        }),
        e.fleet_first_ms,
    );
    fleet.restore(
        Table::Origins,
        e.origins.into_iter().map(|v| (v.hash(), to_value(v, None))),
        e.fleet_first_ms,
    );
    engine.guardrails().restore(e.issued);
    engine.restore_swept_day(e.swept_day);
}

/// Writes `engine`'s whole state to `path`, atomically.
///
/// # Errors
/// [`StateError::Io`] when the file cannot be written (the old one, if any, is left as it was).
pub fn save(engine: &Engine, path: &Path) -> Result<Saved, StateError> {
    let codec = Codec::new(engine.rules());
    let tmp = path.with_extension("tmp");
    let io = |action, source| StateError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let file = File::create(&tmp).map_err(|e| io("create", e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut saved = Saved::default();
    saved.bytes += write_chunk(
        &mut w,
        &codec.encode_engine(&engine_state(engine), &engine_lifecycle(engine)),
    )
    .map_err(|e| io("write", e))?;
    let mut identities: Vec<(String, Vec<u8>)> = Vec::with_capacity(engine.identities());
    engine.for_each_identity(|key, s| {
        identities.push((key.to_owned(), codec.encode_identity(s, &[])));
    });
    identities.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (key, bytes) in &identities {
        saved.bytes += write_chunk(&mut w, key.as_bytes()).map_err(|e| io("write", e))?;
        saved.bytes += write_chunk(&mut w, bytes).map_err(|e| io("write", e))?;
    }
    saved.identities = identities.len();
    let file = w.into_inner().map_err(|e| io("write", e.into_error()))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io("replace", e))?;
    Ok(saved)
}

/// Restores the state saved at `path` into a fresh `engine`; `Ok(None)` when there is no file
/// yet (the first run). A file written under another format or model fingerprint is not
/// misread: its state is dropped with a warning and everything relearns.
///
/// # Errors
/// [`StateError`] when the file cannot be read or is truncated or corrupt.
pub fn load(path: &Path, engine: &Engine) -> Result<Option<Loaded>, StateError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                action: "open",
                path: path.to_owned(),
                source,
            });
        }
    };
    let corrupt = |why: String| StateError::Corrupt {
        path: path.to_owned(),
        why,
    };
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut loaded = Loaded::default();
    let codec = Codec::new(engine.rules());
    let read = |r: &mut BufReader<File>, buf: &mut Vec<u8>| {
        read_chunk(r, buf).map_err(|source| StateError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })
    };
    if read(&mut r, &mut buf)?.is_none() {
        return Err(corrupt("empty file".into()));
    }
    loaded.bytes += 4 + buf.len() as u64;
    match codec.decode_engine(&buf) {
        Ok(e) => restore_engine_state(engine, e),
        Err(e @ SnapshotError::Incompatible { .. }) => {
            warn!(path = %path.display(), error = %e, "State file from another model or format: starting from an empty state.");
            loaded.dropped = 1;
            return Ok(Some(loaded));
        }
        Err(e) => return Err(corrupt(e.to_string())),
    }
    let mut key = Vec::new();
    while read(&mut r, &mut key)?.is_some() {
        if read(&mut r, &mut buf)?.is_none() {
            return Err(corrupt("truncated after an identity's key".into()));
        }
        loaded.bytes += 8 + key.len() as u64 + buf.len() as u64;
        let key = String::from_utf8(std::mem::take(&mut key))
            .map_err(|_| corrupt("an identity key is not UTF-8".into()))?;
        match codec.decode_identity(&buf) {
            Ok((mut state, _)) => {
                state.set_origin(NO_OWNER, Vec::new());
                engine.restore_identity(key, state);
                loaded.identities += 1;
            }
            Err(e @ SnapshotError::Incompatible { .. }) => {
                if loaded.dropped == 0 {
                    warn!(path = %path.display(), error = %e, "Dropping identity snapshots from another model or format; those identities relearn.");
                }
                loaded.dropped += 1;
            }
            Err(e) => return Err(corrupt(format!("identity `{key}`: {e}"))),
        }
    }
    Ok(Some(loaded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Model, Rules};
    use crate::decode::{Decoded, FormatHint, decode_one};
    use crate::event::RawRef;
    use crate::tools::simulate::{SimConfig, generate};

    fn engine_with_fleet() -> Engine {
        let engine = Engine::new(Rules::new(Model::embedded()));
        let (ct, _, _) = generate(&SimConfig {
            identities: 20,
            days: 9,
            seed: 5,
            ..SimConfig::default()
        });
        for l in &ct {
            if let Ok(Decoded::Event(e)) =
                decode_one(l.as_bytes(), FormatHint::Auto, RawRef::default())
            {
                engine.process(&e);
            }
        }
        engine
    }

    #[test]
    fn a_saved_engine_loads_whole_and_saves_to_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        let engine = engine_with_fleet();
        let saved = save(&engine, &path).unwrap();
        assert_eq!(saved.identities, engine.identities());
        let back = Engine::new(Rules::new(Model::embedded()));
        let loaded = load(&path, &back).unwrap().unwrap();
        assert_eq!(loaded.identities, engine.identities());
        assert_eq!(loaded.dropped, 0);
        assert_eq!(back.fleet().sizes(), engine.fleet().sizes());
        assert_eq!(back.swept_day(), engine.swept_day());
        let again = dir.path().join("again.bin");
        save(&back, &again).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap()
        );
    }

    #[test]
    fn the_lifecycles_budget_and_never_used_steps_survive_a_save_and_an_old_file_still_loads() {
        use crate::baseline::lifecycle::Stage;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        let engine = engine_with_fleet();
        let issued: std::collections::VecDeque<(i64, String)> =
            [(1_000, "a".to_owned()), (2_000, "b".to_owned())].into();
        let declared = vec![("never".to_owned(), Stage::Suspended)];
        engine.restore_lifecycle_state(7, issued.clone(), declared.clone());
        save(&engine, &path).unwrap();
        let back = Engine::new(Rules::new(Model::embedded()));
        load(&path, &back).unwrap().unwrap();
        assert_eq!(back.lifecycle_state(), (7, issued, declared));
        // A file written before the lifecycle's part (the engine-wide record alone) loads, with
        // an empty lifecycle state.
        let codec = Codec::new(engine.rules());
        let old = codec.encode(*b"DWE", &engine_state(&engine));
        let (e, lifecycle) = codec.decode_engine(&old).unwrap();
        assert_eq!(e.swept_day, engine.swept_day());
        assert_eq!(lifecycle, EngineLifecycleV1::default());
    }

    #[test]
    fn no_file_is_a_first_run_and_a_truncated_one_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        let engine = Engine::new(Rules::new(Model::embedded()));
        assert_eq!(load(&path, &engine).unwrap(), None);
        save(&engine_with_fleet(), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let err = load(&path, &Engine::new(Rules::new(Model::embedded()))).unwrap_err();
        assert!(err.to_string().contains("state.bin"), "{err}");
    }

    #[test]
    fn a_save_interrupted_before_its_rename_leaves_the_old_state_loadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        let engine = engine_with_fleet();
        save(&engine, &path).unwrap();
        // What a crash mid-write leaves: a partial temporary file beside the state.
        std::fs::write(path.with_extension("tmp"), b"partial").unwrap();
        let back = Engine::new(Rules::new(Model::embedded()));
        let loaded = load(&path, &back).unwrap().unwrap();
        assert_eq!(loaded.identities, engine.identities());
        save(&back, &path).unwrap();
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn a_state_file_from_other_network_prefixes_starts_empty_with_a_count_of_what_was_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        save(&engine_with_fleet(), &path).unwrap();
        let mut other = Model::embedded();
        other.baseline.ipv6_coarse_prefix = 24;
        let engine = Engine::new(Rules::new(other));
        let loaded = load(&path, &engine).unwrap().unwrap();
        assert_eq!((loaded.identities, loaded.dropped), (0, 1));
        assert_eq!(engine.identities(), 0);
    }
}
