//! decode: pure functions from one record's bytes to [`AccessEvent`]s.
//!
//! A record is what one line of a file or one Kafka message holds. It may be a single event or
//! a container of events (CloudTrail S3 delivery `{"Records":[...]}`, a Kubernetes `EventList`,
//! a JSON array); [`decode_record`] expands containers and reports every element separately, so
//! one bad element costs that element only. Nothing here performs I/O or reads the clock.

mod cloudtrail;
pub mod envelope;
mod gcp_audit;
mod k8s_audit;
mod native;
pub use native::credential_kind;
pub mod time;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use memchr::memmem;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{AccessEvent, RawRef, SourceFormat};

/// Which decoder to use: detected per record, or forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatHint {
    #[default]
    Auto,
    Forced(SourceFormat),
}

impl FormatHint {
    /// The name `--format` and `--input topic=NAME` take, also used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FormatHint::Auto => "auto",
            FormatHint::Forced(s) => s.as_str(),
        }
    }
}

impl FromStr for FormatHint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => FormatHint::Auto,
            "cloudtrail" => FormatHint::Forced(SourceFormat::Cloudtrail),
            "k8s-audit" => FormatHint::Forced(SourceFormat::K8sAudit),
            "gcp-audit" => FormatHint::Forced(SourceFormat::GcpAudit),
            "native" => FormatHint::Forced(SourceFormat::Native),
            other => {
                return Err(format!(
                    "unknown format `{other}`: expected one of auto, cloudtrail, k8s-audit, gcp-audit, native"
                ));
            }
        })
    }
}

/// Why a record could not become an event. Every variant names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record is not valid JSON: {reason}")]
    InvalidJson { reason: String },
    #[error(
        "record matches no supported format (CloudTrail, Kubernetes audit, GCP audit, native); use --format to force one"
    )]
    UnknownFormat,
    #[error("field `{field}` missing in {format} record")]
    MissingField {
        format: &'static str,
        field: &'static str,
    },
    #[error("field `{field}` in {format} record is invalid: {reason}")]
    InvalidField {
        format: &'static str,
        field: &'static str,
        reason: String,
    },
    #[error("field `{field}` in {format} record has the wrong type: {reason}")]
    WrongType {
        format: &'static str,
        /// The path to the field (`userIdentity.accessKeyId`), scrubbed and capped.
        field: String,
        reason: String,
    },
    #[error(
        "record of {len} bytes is over the {limit}-byte cap (--max-record-bytes); it was not decoded and only its first bytes are kept here"
    )]
    TooLarge { len: u64, limit: u64 },
    #[error(
        "record expands to more than {limit} bytes when decompressed (gzip or base64 of gzip, all its layers together); it was not decoded"
    )]
    ExpandsTooLarge { limit: u64 },
}

impl DecodeError {
    /// A short, bounded code for metrics labels, summaries and dead-letter headers.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::InvalidJson { .. } => "invalid_json",
            DecodeError::UnknownFormat => "unknown_format",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::InvalidField { .. } | DecodeError::WrongType { .. } => "invalid_field",
            DecodeError::TooLarge { .. } | DecodeError::ExpandsTooLarge { .. } => "too_large",
        }
    }

    fn json(e: serde_json::Error) -> DecodeError {
        DecodeError::InvalidJson {
            reason: json_reason(&e),
        }
    }
}

/// serde_json's message without the values it quotes (`invalid type: string "ghp_…"`): a
/// malformed field may hold anything, a token included, and errors reach logs and dead letters.
fn json_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or("");
    let (head, expected) = match msg.split_once(", expected ") {
        Some((h, x)) => (h, Some(x)),
        None => (msg, None),
    };
    let head = if e.is_data() {
        // `invalid type: string "x"`, `unknown variant `x``, `invalid value: integer `5``.
        head.split(['"', '`']).next().unwrap_or("").trim_end()
    } else {
        // Syntax and end-of-input messages are fixed phrases.
        head
    };
    let mut out = head.to_owned();
    if let Some(x) = expected {
        out.push_str(", expected ");
        // Our own types' descriptions; cut, in case one is long.
        out.push_str(&x.chars().take(120).collect::<String>());
    }
    if e.line() > 0 {
        out.push_str(&format!(" at line {} column {}", e.line(), e.column()));
    }
    out
}

/// Deserializes one record of `format` into `T`; a value of the wrong type is reported as
/// `invalid_field` with the path to the field, found by parsing again only on that error path.
pub(crate) fn parse<'a, T: Deserialize<'a>>(
    text: &'a str,
    format: &'static str,
) -> Result<T, DecodeError> {
    serde_json::from_str(text).map_err(|e| {
        if !e.is_data() {
            return DecodeError::json(e);
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let field = match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Err(pe) => {
                let mut p = pe.path().to_string();
                crate::event::cut_to(&mut p, 200);
                crate::redact::scrub(&p).into_owned()
            }
            Ok(_) => "?".to_owned(),
        };
        DecodeError::WrongType {
            format,
            field,
            reason: json_reason(&e),
        }
    })
}

/// A record that decoded correctly but deliberately yields no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Kubernetes audit stages other than `ResponseComplete`/`Panic` repeat the same request.
    IntermediateStage,
    /// A CloudTrail record about the service itself (e.g. `AwsServiceEvent` without a caller).
    NoCaller,
    /// A CloudWatch Logs `CONTROL_MESSAGE` (a connectivity check with no log events).
    ControlMessage,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skip::IntermediateStage => "intermediate_audit_stage",
            Skip::NoCaller => "no_caller",
            Skip::ControlMessage => "control_message",
        })
    }
}

/// What decoding one element gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Event(Box<AccessEvent>),
    Skipped(Skip),
}

/// What [`decode_record`] reports for each element: its bytes, where it is, and the result.
pub type ElementSink<'s> = dyn FnMut(&[u8], &RawRef, Result<Decoded, DecodeError>) + 's;

/// Decodes one record, calling `out` once per contained element, in order, with the element's
/// own bytes (so a bad element can be dead-lettered alone).
///
/// `raw` names where the record came from; an element of a container keeps the record's source
/// and position and has its index in [`RawRef::element`]. `cluster` is the Kubernetes cluster
/// the input's records come from, when it is declared (`--input TOPIC=FORMAT@CLUSTER`, `replay
/// --cluster`): Kubernetes events that name no cluster of their own are placed in it.
pub fn decode_record(
    bytes: &[u8],
    hint: FormatHint,
    cluster: Option<&str>,
    raw: &RawRef,
    out: &mut ElementSink<'_>,
) {
    let mut budget = envelope::MAX_EXPANDED_BYTES;
    match cluster {
        None => decode_at(bytes, hint, raw, out, 0, &mut budget),
        Some(c) => decode_at(
            bytes,
            hint,
            raw,
            &mut |b, r, res| out(b, r, res.map(|d| in_cluster(d, Some(c)))),
            0,
            &mut budget,
        ),
    }
}

/// [`decode_record`] of a record found `depth` envelopes deep, with `budget` bytes left that
/// decompression may still produce for the whole record.
fn decode_at(
    bytes: &[u8],
    hint: FormatHint,
    raw: &RawRef,
    out: &mut ElementSink<'_>,
    depth: u8,
    budget: &mut u64,
) {
    let trimmed = bytes.trim_ascii();
    if envelope::is_compressed(trimmed) {
        match envelope_depth(depth).and_then(|()| envelope::expand(trimmed, budget)) {
            Ok(expanded) => decode_at(&expanded, hint, raw, out, depth + 1, budget),
            Err(e) => out(trimmed, raw, Err(e)),
        }
        return;
    }
    match trimmed.first() {
        Some(b'[') => match serde_json::from_slice::<Vec<&RawValue>>(trimmed) {
            Ok(items) => each_element(&items, hint, raw, out, depth, budget),
            Err(e) => out(trimmed, raw, Err(DecodeError::json(e))),
        },
        Some(b'{') => {
            if let Some(items) = container_items(trimmed) {
                match items {
                    Ok(items) => each_element(&items, hint, raw, out, depth, budget),
                    Err(e) => out(trimmed, raw, Err(e)),
                }
            } else {
                decode_object(trimmed, hint, raw, out, depth, budget);
            }
        }
        Some(_) => out(
            trimmed,
            raw,
            Err(DecodeError::InvalidJson {
                reason: "expected a JSON object or array".to_owned(),
            }),
        ),
        None => out(
            trimmed,
            raw,
            Err(DecodeError::InvalidJson {
                reason: "empty record".to_owned(),
            }),
        ),
    }
}

fn envelope_depth(depth: u8) -> Result<(), DecodeError> {
    if depth < envelope::MAX_DEPTH {
        Ok(())
    } else {
        Err(DecodeError::InvalidField {
            format: "envelope",
            field: "record",
            reason: format!("envelopes nested more than {} deep", envelope::MAX_DEPTH),
        })
    }
}

fn each_element(
    items: &[&RawValue],
    hint: FormatHint,
    raw: &RawRef,
    out: &mut ElementSink<'_>,
    depth: u8,
    budget: &mut u64,
) {
    for (i, item) in items.iter().enumerate() {
        let r = raw.element(u32::try_from(i).unwrap_or(u32::MAX));
        decode_object(item.get().as_bytes(), hint, &r, out, depth, budget);
    }
}

/// Decodes one object as an event; if it is not one (no format recognised, or a format's
/// required field missing or wrongly typed) but is an envelope ([`envelope`]), decodes what the
/// envelope holds.
fn decode_object(
    obj: &[u8],
    hint: FormatHint,
    raw: &RawRef,
    out: &mut ElementSink<'_>,
    depth: u8,
    budget: &mut u64,
) {
    let result = decode_one(obj, hint, raw.clone());
    // A wrongly typed field counts too: an envelope's own fields (EventBridge's `resources`, a
    // list of ARNs) may clash with those of the format its content made it look like.
    if !matches!(
        result,
        Err(DecodeError::UnknownFormat
            | DecodeError::MissingField { .. }
            | DecodeError::WrongType { .. })
    ) || !obj.starts_with(b"{")
    {
        return out(obj, raw, result);
    }
    let inner = match envelope::open(obj) {
        None => return out(obj, raw, result),
        Some(inner) => envelope_depth(depth).and(inner),
    };
    match inner {
        Ok(envelope::Inner::One(bytes)) => decode_at(&bytes, hint, raw, out, depth + 1, budget),
        Ok(envelope::Inner::LogEvents {
            messages,
            log_group,
        }) => {
            let cluster = log_group.as_deref().and_then(envelope::eks_cluster);
            for (i, m) in messages.iter().enumerate() {
                let r = raw.element(u32::try_from(i).unwrap_or(u32::MAX));
                decode_at(
                    m.as_bytes(),
                    hint,
                    &r,
                    &mut |b, rr, res| out(b, rr, res.map(|d| in_cluster(d, cluster))),
                    depth + 1,
                    budget,
                );
            }
        }
        Ok(envelope::Inner::Empty) => out(obj, raw, Ok(Decoded::Skipped(Skip::ControlMessage))),
        Err(e) => out(obj, raw, Err(e)),
    }
}

/// A Kubernetes event from an EKS cluster's log group, or from an input declared to hold one
/// cluster's records, placed in that cluster ([`AccessEvent::place_in_cluster`]); an event
/// already placed (by its log group) stays where it is.
fn in_cluster(mut d: Decoded, cluster: Option<&str>) -> Decoded {
    if let (Decoded::Event(e), Some(c)) = (&mut d, cluster) {
        e.place_in_cluster(c);
    }
    d
}

/// Recognises `{"Records":[...]}` and `{"kind":"EventList","items":[...]}` without parsing
/// ordinary events twice: only objects that open with one of those keys are checked.
fn container_items(obj: &[u8]) -> Option<Result<Vec<&RawValue>, DecodeError>> {
    use std::sync::LazyLock;
    // Built once: building a searcher per record cost more than the search.
    static RECORDS: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\"Records\""));
    static EVENT_LIST: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\"EventList\""));
    static ITEMS: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\"items\""));
    let head = &obj[..obj.len().min(256)];
    let is_records = RECORDS.find(head).is_some();
    // A list's `kind` may follow its items (keys in any order), so the whole object is searched.
    let is_list = EVENT_LIST.find(obj).is_some() && ITEMS.find(obj).is_some();
    if !is_records && !is_list {
        return None;
    }
    #[derive(Deserialize)]
    struct Container<'a> {
        #[serde(borrow, rename = "Records")]
        records: Option<Vec<&'a RawValue>>,
        #[serde(borrow)]
        items: Option<Vec<&'a RawValue>>,
        kind: Option<Cow<'a, str>>,
    }
    match serde_json::from_slice::<Container>(obj) {
        Ok(Container {
            records: Some(r), ..
        }) => Some(Ok(r)),
        Ok(Container {
            items: Some(i),
            kind: Some(k),
            ..
        }) if k == "EventList" => Some(Ok(i)),
        Ok(_) => None,
        Err(e) => Some(Err(DecodeError::json(e))),
    }
}

/// Decodes exactly one event object.
pub fn decode_one(bytes: &[u8], hint: FormatHint, raw: RawRef) -> Result<Decoded, DecodeError> {
    let format = match hint {
        FormatHint::Forced(f) => f,
        FormatHint::Auto => detect_format(bytes)?,
    };
    // One UTF-8 check of the whole record (fast on ASCII) instead of one per string field.
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidJson {
        reason: format!("not UTF-8: {e}"),
    })?;
    match format {
        SourceFormat::Cloudtrail => cloudtrail::decode(text, raw),
        SourceFormat::K8sAudit => k8s_audit::decode(text, raw),
        SourceFormat::GcpAudit => gcp_audit::decode(text, raw),
        SourceFormat::Native => native::decode(text, raw),
    }
    .map(|mut d| {
        // Whatever a record carries, an event keeps bounded strings free of secrets: they
        // reach baselines, alerts, commands and logs.
        if let Decoded::Event(e) = &mut d {
            e.sanitize(crate::event::MAX_FIELD_BYTES);
        }
        d
    })
}

/// Guesses a record's format from keys only its format has.
pub fn detect_format(bytes: &[u8]) -> Result<SourceFormat, DecodeError> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static FINDERS: LazyLock<[Finder<'static>; 8]> = LazyLock::new(|| {
        [
            Finder::new(b"\"eventSource\""),
            Finder::new(b"\"userIdentity\""),
            Finder::new(b"\"protoPayload\""),
            Finder::new(b"\"audit.k8s.io/"),
            Finder::new(b"\"verb\""),
            Finder::new(b"\"requestURI\""),
            Finder::new(b"\"objectRef\""),
            Finder::new(b"\"principal\""),
        ]
    });
    let f = &*FINDERS;
    let has = |i: usize| f[i].find(bytes).is_some();
    // CloudTrail first (the commonest), by keys no other format has. GCP before Kubernetes:
    // GKE audit entries are GCP entries that mention audit.k8s.io.
    if has(0) || has(1) {
        Ok(SourceFormat::Cloudtrail)
    } else if has(2) {
        Ok(SourceFormat::GcpAudit)
    } else if has(3) || (has(4) && (has(5) || has(6))) {
        Ok(SourceFormat::K8sAudit)
    } else if has(7) {
        Ok(SourceFormat::Native)
    } else {
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(DecodeError::json)?;
        Err(DecodeError::UnknownFormat)
    }
}

/// Parses an address, also accepting IPv4 octets written with leading zeros (`075.050.255.67`,
/// as some anonymised samples do), which the standard parser rejects.
///
/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.7`, as dual-stack servers log IPv4 clients) is
/// the IPv4 address it maps, so baselines and declared networks see one address, not two.
/// The parts joined into one string allocated once (decoders build an action or resource per
/// event: `format!` cost several times more).
pub(crate) fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

pub(crate) fn parse_ip(s: &str) -> Option<std::net::IpAddr> {
    use std::net::IpAddr;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        });
    }
    let mut octets = [0u8; 4];
    let mut n = 0;
    for part in s.split('.') {
        if n == 4 || part.is_empty() || part.len() > 3 || !part.bytes().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        octets[n] = part.parse().ok()?;
        n += 1;
    }
    (n == 4).then(|| std::net::IpAddr::from(octets))
}

/// Turns a required field into an error naming it.
pub(crate) fn required<T>(
    v: Option<T>,
    format: &'static str,
    field: &'static str,
) -> Result<T, DecodeError> {
    v.ok_or(DecodeError::MissingField { format, field })
}

/// Parses the first of `fields` (name, value) the record has: a format's own time field, then its
/// fallbacks (`@timestamp` from Logstash and Filebeat). Missing all, the first is named.
pub(crate) fn first_timestamp(
    format: &'static str,
    fields: &[(&'static str, Option<&str>)],
) -> Result<i64, DecodeError> {
    let (field, value) = fields
        .iter()
        .find(|(_, v)| v.is_some())
        .or(fields.first())
        .copied()
        .unwrap_or(("time", None));
    timestamp(value, format, field)
}

/// Parses a required timestamp field.
pub(crate) fn timestamp(
    v: Option<&str>,
    format: &'static str,
    field: &'static str,
) -> Result<i64, DecodeError> {
    let s = required(v, format, field)?;
    time::parse_timestamp_ms(s).ok_or_else(|| DecodeError::InvalidField {
        format,
        field,
        // The value is not quoted: a malformed field may hold anything, a token included.
        reason: format!(
            "a string of {} bytes that is not an RFC 3339 timestamp",
            s.len()
        ),
    })
}

/// A JSON string borrowed from the input when it has no escapes, owned otherwise.
///
/// serde's own `Cow<str>` always allocates when nested in `Option` or `Vec`; this one borrows,
/// which is most of what makes the typed decoders cheaper than a generic parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A field that must be a JSON object: serde would otherwise also read a struct from an array
/// of its fields in order (`"principal": ["k", "t"]`), which no schema of ours allows.
pub(crate) mod object {
    use std::marker::PhantomData;

    use serde::de::{MapAccess, Visitor, value::MapAccessDeserializer};
    use serde::{Deserialize, Deserializer};

    pub fn required<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(PhantomData))
    }

    struct Only<T>(T);
    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Only<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            required(d).map(Only)
        }
    }

    pub fn optional<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Ok(Option::<Only<T>>::deserialize(d)?.map(|o| o.0))
    }
}

/// Reads an optional string field that may be any JSON type in the wild: non-strings count as absent.
pub(crate) mod lenient {
    use serde::{Deserialize, Deserializer};

    /// An optional object that may be malformed in the wild: anything else counts as absent.
    pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum V<T> {
            Ok(T),
            Other(serde::de::IgnoredAny),
        }
        Ok(match Option::<V<T>>::deserialize(d)? {
            Some(V::Ok(t)) => Some(t),
            _ => None,
        })
    }

    /// A string, or `None` for any other JSON value. Read in one pass: serde's `untagged`
    /// would first copy the value into a buffer of its own, on every record.
    pub fn str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<super::Str<'de>>, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};
        use std::borrow::Cow;
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<super::Str<'de>>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Some(super::Str(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(super::Str(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(super::Str(Cow::Owned(v))))
            }
            crate::decode::lenient::absent_for_other_values!(None, V);
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(None)
            }
        }
        d.deserialize_any(V)
    }

    /// The arms of a `deserialize_any` visitor that read a value as absent (`$absent`): every
    /// JSON value but strings and objects, skipped without being kept. `$visitor` is the
    /// visitor itself, to read what an `Option` holds.
    macro_rules! absent_for_other_values {
        ($absent:expr, $visitor:expr) => {
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok($absent)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok($absent)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok($absent)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Self::Value, E> {
                Ok($absent)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Self::Value, E> {
                Ok($absent)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok($absent)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok($absent)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok($absent)
            }
            fn visit_some<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                d.deserialize_any($visitor)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok($absent)
            }
        };
    }
    pub(crate) use absent_for_other_values;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_megabyte_principal_name_is_capped_when_decoded() {
        let rec = format!(
            r#"{{"time":1700000000000,"principal":{{"key":"{}"}},"action":"s3:GetObject","origin":{{"user_agent":"{}"}}}}"#,
            "k".repeat(1 << 20),
            "a".repeat(100_000)
        );
        match decode_one(rec.as_bytes(), FormatHint::Auto, RawRef::default()) {
            Ok(Decoded::Event(e)) => {
                assert!(e.principal.len() <= crate::event::MAX_FIELD_BYTES);
                assert!(e.origin.user_agent.unwrap().len() <= crate::event::MAX_FIELD_BYTES);
            }
            other => panic!("{other:?}"),
        }
    }

    fn collect(bytes: &[u8]) -> Vec<Result<Decoded, DecodeError>> {
        let mut v = Vec::new();
        decode_record(
            bytes,
            FormatHint::Auto,
            None,
            &RawRef::default(),
            &mut |_, _, r| v.push(r),
        );
        v
    }

    fn events_in(bytes: &[u8], cluster: Option<&str>) -> Vec<AccessEvent> {
        let mut v = Vec::new();
        decode_record(
            bytes,
            FormatHint::Auto,
            cluster,
            &RawRef::default(),
            &mut |_, _, r| {
                if let Ok(Decoded::Event(e)) = r {
                    v.push(*e);
                }
            },
        );
        v
    }

    const AUDIT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete","verb":"get","user":{"username":"system:serviceaccount:payments:api"},"requestURI":"/api/v1/pods","objectRef":{"resource":"pods"},"requestReceivedTimestamp":"2026-01-05T10:00:00Z"}"#;

    #[test]
    fn a_declared_cluster_qualifies_kubernetes_principals_and_only_theirs() {
        let bare = events_in(AUDIT.as_bytes(), None);
        assert_eq!(bare[0].principal, "system:serviceaccount:payments:api");
        let east = events_in(AUDIT.as_bytes(), Some("prod-east"));
        let west = events_in(AUDIT.as_bytes(), Some("prod-west"));
        assert_eq!(
            east[0].principal,
            "prod-east/system:serviceaccount:payments:api"
        );
        assert_eq!(east[0].tenant.as_deref(), Some("prod-east"));
        assert_eq!(
            east[0].origin.workload.cluster.as_deref(),
            Some("prod-east")
        );
        assert_ne!(east[0].principal, west[0].principal);
        assert_eq!(
            crate::event::unqualified_principal(&east[0].principal, Some("prod-east")),
            bare[0].principal
        );
        // A CloudTrail record on the same input is not a Kubernetes identity.
        let ct = r#"{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventTime":"2026-01-05T10:00:00Z","awsRegion":"eu-west-1","sourceIPAddress":"203.0.113.7","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/ci","accountId":"123456789012"}}"#;
        let e = &events_in(ct.as_bytes(), Some("prod-east"))[0];
        assert_eq!(e.principal, "arn:aws:iam::123456789012:user/ci");
        assert_eq!(e.origin.workload.cluster, None);
    }

    #[test]
    fn an_eks_log_group_names_the_cluster_over_the_inputs_declaration() {
        let escaped = AUDIT.replace('"', "\\\"");
        let cw = format!(
            r#"{{"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/payments-eu/cluster","logEvents":[{{"message":"{escaped}"}}]}}"#
        );
        for declared in [None, Some("prod-east")] {
            let e = &events_in(cw.as_bytes(), declared)[0];
            assert_eq!(
                e.principal,
                "payments-eu/system:serviceaccount:payments:api"
            );
            assert_eq!(e.tenant.as_deref(), Some("payments-eu"));
        }
    }

    #[test]
    fn garbage_is_rejected_with_a_reason_not_a_panic() {
        let r = collect(b"not json at all");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].as_ref().unwrap_err().code(), "invalid_json");
        let r = collect(b"{\"hello\": 1}");
        assert_eq!(r[0].as_ref().unwrap_err(), &DecodeError::UnknownFormat);
        let r = collect(b"{\"eventSource\": \"x\", \"userIdentity\": ");
        assert_eq!(r[0].as_ref().unwrap_err().code(), "invalid_json");
    }

    #[test]
    fn a_wrongly_typed_field_is_named_and_its_value_never_quoted() {
        let token = "npm_aB3dE5fG7hJ9kL1mN3pQ5rS7tV9wX1yZ3b5D";
        let rec = format!(
            r#"{{"eventSource":"s3.amazonaws.com","eventName":{{"x":1}},"eventTime":"2026-01-05T10:00:00Z","userIdentity":{{"type":"IAMUser","arn":"{token}"}}}}"#
        );
        let e = collect(rec.as_bytes()).remove(0).unwrap_err();
        assert_eq!(e.code(), "invalid_field");
        let msg = e.to_string();
        assert!(msg.contains("`eventName`"), "{msg}");
        assert!(!msg.contains(token), "{msg}");
        let rec = format!(
            r#"{{"eventSource":"s3.amazonaws.com","eventName":"GetObject","eventTime":"{token}","userIdentity":{{"type":"IAMUser","arn":"a"}}}}"#
        );
        let msg = collect(rec.as_bytes()).remove(0).unwrap_err().to_string();
        assert!(msg.contains("eventTime") && !msg.contains("npm_"), "{msg}");
        let rec = format!(r#"{{"principal":{{"key":"k"}},"action":{{"{token}":1}}}}"#);
        let msg = collect(rec.as_bytes()).remove(0).unwrap_err().to_string();
        assert!(!msg.contains(token), "{msg}");
    }

    #[test]
    fn addresses_with_leading_zero_octets_are_still_addresses() {
        assert_eq!(
            parse_ip("075.050.255.67"),
            Some("75.50.255.67".parse().unwrap())
        );
        assert_eq!(
            parse_ip("2001:db8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_ip("::ffff:192.0.2.7"),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(parse_ip("AWS Internal"), None);
        assert_eq!(parse_ip("1.2.3.4.5"), None);
        assert_eq!(parse_ip("1.2.3.256"), None);
    }

    #[test]
    fn format_names_parse_and_unknown_names_are_explained() {
        assert_eq!(
            "k8s-audit".parse::<FormatHint>().unwrap(),
            FormatHint::Forced(SourceFormat::K8sAudit)
        );
        assert!(
            "syslog"
                .parse::<FormatHint>()
                .unwrap_err()
                .contains("expected one of")
        );
    }
}
