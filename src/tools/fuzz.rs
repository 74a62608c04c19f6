//! What the fuzz targets (`fuzz/fuzz_targets/`) assert about any input, kept here so the test
//! suite's smoke run (`tests/fuzz_smoke.rs`) checks the same properties over the fixtures and
//! their mutations without cargo-fuzz. Every function panics when a property is broken, which is
//! what a fuzzer reports.

use crate::decode::{self, Decoded, FormatHint};
use crate::event::{AccessEvent, MAX_FIELD_BYTES, RawRef, SourceFormat};
use crate::ingest::stream::{Record, RecordReader};
use crate::redact;

/// Every decoder, detecting the format and forced to each: no panic; every event keeps bounded
/// strings in which the scrubber finds nothing left to redact; every error has a code.
pub fn decode(data: &[u8]) {
    let hints = [
        FormatHint::Auto,
        FormatHint::Forced(SourceFormat::Cloudtrail),
        FormatHint::Forced(SourceFormat::K8sAudit),
        FormatHint::Forced(SourceFormat::GcpAudit),
        FormatHint::Forced(SourceFormat::Native),
    ];
    for hint in hints {
        decode::decode_record(
            data,
            hint,
            None,
            &RawRef::default(),
            &mut |_, _, r| match r {
                Ok(Decoded::Event(e)) => event_is_clean(&e),
                Ok(Decoded::Skipped(_)) => {}
                Err(e) => {
                    assert!(!e.code().is_empty());
                    let msg = e.to_string();
                    assert!(msg.len() < 4096, "an error message of {} bytes", msg.len());
                }
            },
        );
    }
}

fn event_is_clean(e: &AccessEvent) {
    // The cap leaves room for the cut's mark and fingerprint.
    let limit = MAX_FIELD_BYTES + 32;
    let o = &e.origin;
    let w = &o.workload;
    let fields = [
        Some(&e.action),
        e.event_id.as_ref(),
        e.tenant.as_ref(),
        e.session_id.as_ref(),
        e.resource.as_ref(),
        e.outcome.error_code.as_ref(),
        o.service.as_ref(),
        o.country.as_ref(),
        o.user_agent.as_ref(),
        o.vpc_endpoint.as_ref(),
        w.cluster.as_ref(),
        w.namespace.as_ref(),
        w.node.as_ref(),
        w.pod.as_ref(),
        w.instance.as_ref(),
        e.credential.as_ref().map(|c| &c.id),
    ];
    assert!(e.principal.len() <= limit);
    assert!(e.permissions.len() <= crate::event::MAX_PERMISSIONS);
    for p in &e.permissions {
        assert!(
            redact::shape::gcp_permission(p) && !redact::looks_secret(p),
            "a permission kept without a permission's shape, or with a secret: {p:?}"
        );
    }
    for f in fields.into_iter().flatten() {
        assert!(f.len() <= limit, "a field of {} bytes", f.len());
        // Shaped values (UUIDs, account and key ids) are kept as they are; the rest was scrubbed.
        let shaped = redact::shape::uuid(f)
            || redact::shape::aws_account_id(f)
            || redact::shape::aws_access_key_id(f)
            || redact::shape::gcp_key_id(f)
            || redact::shape::gcp_project_id(f)
            || redact::shape::k8s_credential_id(f);
        assert!(
            shaped || !redact::looks_secret(f),
            "a secret survived sanitizing: {f:?}"
        );
    }
}

/// The record reader over any bytes, with a small cap: no panic, no record over the cap, and
/// too-large records keep at most their first bytes. Read again through a small buffer (its
/// size taken from the first byte), which sends most lines down the copying path instead of
/// being returned in place: the records, positions and oversized reports are the same.
pub fn reader(data: &[u8]) {
    const MAX: usize = 4096;
    let read = |source: Box<dyn std::io::BufRead + Send>| {
        let mut r = RecordReader::new(source, "fuzz", MAX, false);
        let mut out = Vec::new();
        while let Ok(Some(rec)) = r.next_record() {
            match rec {
                Record::Ok(bytes, raw) => {
                    assert!(bytes.len() <= MAX, "{} bytes", bytes.len());
                    out.push((bytes.to_vec(), raw.position, None));
                }
                Record::TooLarge { prefix, len, raw } => {
                    assert!(prefix.len() <= 256 && len as usize > MAX);
                    out.push((prefix.to_vec(), raw.position, Some(len)));
                }
            }
            assert!(out.len() <= data.len() + 1, "more records than bytes");
        }
        out
    };
    let whole = read(Box::new(std::io::Cursor::new(data.to_vec())));
    let capacity = 1 + usize::from(data.first().copied().unwrap_or(0) % 64);
    let small = std::io::BufReader::with_capacity(capacity, std::io::Cursor::new(data.to_vec()));
    assert_eq!(read(Box::new(small)), whole, "buffer of {capacity} bytes");
}

/// The model loader: no panic; a model it accepts passes its own validation.
pub fn model(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = crate::config::Model::from_toml_str(text, "fuzz.toml") {
        assert!(m.validate().is_empty());
    }
}

/// The inventory loader and the identities topic's records: no panic; a refused record
/// changes nothing.
pub fn inventory(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Inventory::parse(text, "fuzz.jsonl");
    }
    let live = crate::config::Inventory::default();
    if live.apply("k", Some(data)).is_err() {
        assert!(live.get("k").is_none() && live.is_empty());
    }
}

/// The scrubber: no panic; its output holds nothing it would redact again, and scrubbing is
/// idempotent.
pub fn scrub(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let once = redact::scrub(text).into_owned();
    assert!(!redact::looks_secret(&once), "{text:?} -> {once:?}");
    assert_eq!(redact::scrub(&once), once.as_str());
}
