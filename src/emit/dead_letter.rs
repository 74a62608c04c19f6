//! Dead letters: a record that did not decode (or the one bad element of a container record),
//! unchanged, with the reason and where it came from. Replay writes them as JSONL lines
//! (`schemas/dead-letter.v1.json`); the service produces them to the dead-letter topic, keyed
//! like the original, with the reason and position in headers.

use serde_json::{Value, json};

use super::kafka::{Outgoing, Route, SourcePosition};
use crate::decode::DecodeError;
use crate::event::RawRef;

/// Header names of dead letters on Kafka.
pub mod header {
    pub const REASON: &str = "dw_reason";
    pub const ERROR: &str = "dw_error";
    pub const SOURCE_TOPIC: &str = "dw_source_topic";
    pub const SOURCE_PARTITION: &str = "dw_source_partition";
    pub const SOURCE_OFFSET: &str = "dw_source_offset";
    /// Present when the rejected bytes are one element of a container record (a CloudTrail
    /// `Records` document, a Kubernetes `EventList`, a JSON array): `#index` within it.
    pub const ELEMENT: &str = "dw_element";
}

/// A dead letter as a JSONL line (`schemas/dead-letter.v1.json`).
pub fn line(raw: &RawRef, bytes: &[u8], err: &DecodeError) -> Value {
    json!({
        "source": raw.source_label(), "position": raw.position, "reason": err.code(), "error": err.to_string(),
        "record": String::from_utf8_lossy(bytes),
    })
}

/// A dead letter as a Kafka message: the rejected bytes unchanged, keyed like the original,
/// reason and source position in headers. `element` is the bytes' index within a container
/// record, if they are one element of it.
pub fn message(
    bytes: &[u8],
    err: &DecodeError,
    at: SourcePosition<'_>,
    element: Option<u32>,
) -> Outgoing {
    rejected(bytes, err.code(), err.to_string(), at, element)
}

/// A dead letter for bytes refused for `reason` (a short code) with the explanation `error`,
/// which must name what is wrong without repeating values from the bytes.
pub fn rejected(
    bytes: &[u8],
    reason: &str,
    error: String,
    at: SourcePosition<'_>,
    element: Option<u32>,
) -> Outgoing {
    let mut headers = vec![
        (header::REASON, reason.to_owned()),
        (header::ERROR, error),
        (header::SOURCE_TOPIC, at.topic.to_owned()),
        (header::SOURCE_PARTITION, at.partition.to_string()),
        (header::SOURCE_OFFSET, at.offset.to_string()),
    ];
    if let Some(i) = element {
        headers.push((header::ELEMENT, format!("#{i}")));
    }
    Outgoing {
        route: Route::DeadLetter,
        key: at.key.map(<[u8]>::to_vec),
        payload: bytes.to_vec(),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_element_is_named_by_its_index_in_both_forms() {
        let err = DecodeError::UnknownFormat;
        let raw = RawRef::new("f.json".into(), 0).element(3);
        assert_eq!(line(&raw, b"{}", &err)["source"], "f.json#3");
        let at = SourcePosition {
            topic: "in",
            partition: 2,
            offset: 9,
            key: Some(b"k"),
        };
        let m = message(b"{}", &err, at, Some(3));
        assert!(m.headers.contains(&(header::ELEMENT, "#3".to_owned())));
        assert_eq!(m.key.as_deref(), Some(&b"k"[..]));
        let whole = message(b"{}", &err, at, None);
        assert!(whole.headers.iter().all(|(k, _)| *k != header::ELEMENT));
    }
}
