//! The HTTP request one Kafka message becomes, pure: the body is the message's value byte for
//! byte; the headers are built here ([`headers`]): content type, `Idempotency-Key`, the
//! CloudEvents attributes in the HTTP binary binding (`ce-*`), the HMAC-SHA256 signature, and
//! the operator's static headers.

use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// `sha256=<hex HMAC-SHA256(secret, body)>`, GitHub's webhook signature format.
pub const SIGNATURE: &str = "x-driftwatch-signature-256";
/// The message's CloudEvents id (or its topic/partition/offset): the same on every attempt and
/// every replay, so the receiver can drop duplicates.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Headers driftwatch sets itself; `--header` may not give them.
pub fn reserved(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("ce-")
        || [
            "host",
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
            "user-agent",
            IDEMPOTENCY_KEY,
            SIGNATURE,
        ]
        .contains(&n)
}

/// A shared secret. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`: exactly the bytes
/// POSTed are signed, nothing else.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    let key = PKey::hmac(&secret.0).expect("OpenSSL accepts HMAC keys of any length");
    let mut signer =
        Signer::new(MessageDigest::sha256(), &key).expect("SHA-256 is built into OpenSSL");
    signer.update(body).expect("HMAC update cannot fail");
    let mac = signer.sign_to_vec().expect("HMAC finalisation cannot fail");
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in mac {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A Kafka message as the request builder needs it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Its headers, in order (a header without a value is absent here).
    pub headers: &'a [(String, Vec<u8>)],
    pub body: &'a [u8],
}

impl Message<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .filter(|v| !v.is_empty())
    }
}

/// The message's `ce_id` (percent-encoded where it is not a plain header value), or
/// `<topic>/<partition>/<offset>` when it has none: stable across attempts and replays either way.
pub fn idempotency_key(m: &Message<'_>) -> String {
    match m.header("ce_id") {
        Some(id) => percent_encode(id),
        None => format!("{}/{}/{}", m.topic, m.partition, m.offset),
    }
}

/// Encodes a header value as the CloudEvents HTTP binding asks: printable ASCII stays, except
/// `"` and `%`; every other byte (spaces, controls, UTF-8 beyond ASCII) becomes `%XX`.
pub fn percent_encode(v: &[u8]) -> String {
    let mut out = String::with_capacity(v.len());
    for &b in v {
        if (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The CloudEvents attribute a Kafka header carries (`ce_type` -> `type`), if it is one: the
/// binding's names are lowercase letters and digits.
fn cloudevents_attribute(name: &str) -> Option<&str> {
    let attr = name.strip_prefix("ce_")?;
    (!attr.is_empty()
        && attr
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    .then_some(attr)
}

/// Every header of the POST for `m` but `Host` and `Content-Length` (the client's):
/// `Content-Type` (the message's `content-type` header, else `application/json`),
/// `User-Agent`, `Idempotency-Key`, each `ce_<attr>` Kafka header as `ce-<attr>`, the signature
/// when there is a secret, then `extra` (the operator's `--header`s, values marked sensitive).
pub fn headers(
    m: &Message<'_>,
    secret: Option<&Secret>,
    extra: &[(HeaderName, HeaderValue)],
) -> HeaderMap {
    let mut h = HeaderMap::new();
    let content_type = m
        .header("content-type")
        .and_then(|v| HeaderValue::from_bytes(v).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    h.insert(CONTENT_TYPE, content_type);
    h.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("driftwatch/", env!("CARGO_PKG_VERSION"))),
    );
    h.insert(
        IDEMPOTENCY_KEY,
        HeaderValue::from_str(&idempotency_key(m)).expect("percent-encoded: visible ASCII"),
    );
    for (name, value) in m.headers {
        let Some(attr) = cloudevents_attribute(name) else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(format!("ce-{attr}").as_bytes()),
            HeaderValue::from_str(&percent_encode(value)),
        ) else {
            continue;
        };
        h.insert(name, value);
    }
    if let Some(s) = secret {
        h.insert(
            SIGNATURE,
            HeaderValue::from_str(&signature(s, m.body)).expect("sha256= and hex digits"),
        );
    }
    for (name, value) in extra {
        let mut v = value.clone();
        v.set_sensitive(true);
        h.append(name.clone(), v);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<'a>(headers: &'a [(String, Vec<u8>)], body: &'a [u8]) -> Message<'a> {
        Message {
            topic: "driftwatch.commands",
            partition: 2,
            offset: 41,
            headers,
            body,
        }
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    /// RFC 4231, test cases 1 and 2.
    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_githubs_format() {
        let key = Secret::new(vec![0x0b; 20]);
        assert_eq!(
            signature(&key, b"Hi There"),
            "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            signature(
                &Secret::new(b"Jefe".to_vec()),
                b"what do ya want for nothing?"
            ),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_idempotency_key_is_the_cloudevents_id_else_the_messages_position() {
        let with_id = hdrs(&[("ce_id", "cmd-7f3a")]);
        assert_eq!(idempotency_key(&message(&with_id, b"{}")), "cmd-7f3a");
        assert_eq!(
            idempotency_key(&message(&[], b"{}")),
            "driftwatch.commands/2/41"
        );
        let odd = hdrs(&[("ce_id", "a b\"%é")]);
        assert_eq!(idempotency_key(&message(&odd, b"{}")), "a%20b%22%25%C3%A9");
    }

    #[test]
    fn cloudevents_kafka_headers_become_http_binary_binding_headers() {
        let h = hdrs(&[
            ("ce_specversion", "1.0"),
            ("ce_id", "f-1:2"),
            ("ce_source", "urn:driftwatch:prod"),
            ("ce_type", "dev.driftwatch.revocation_command.v1"),
            ("ce_subject", "arn:aws:iam::1:role/ci bot"),
            ("content-type", "application/json"),
            ("dw_reason", "ignored"),
            ("ce_Bad", "ignored"),
        ]);
        let secret = Secret::new(b"s".to_vec());
        let extra = [(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer t"),
        )];
        let out = headers(&message(&h, b"{\"a\":1}"), Some(&secret), &extra);
        assert_eq!(out["ce-specversion"], "1.0");
        assert_eq!(out["ce-source"], "urn:driftwatch:prod");
        assert_eq!(out["ce-subject"], "arn:aws:iam::1:role/ci%20bot");
        assert_eq!(out["idempotency-key"], "f-1:2");
        assert_eq!(out["content-type"], "application/json");
        assert_eq!(out[SIGNATURE], signature(&secret, b"{\"a\":1}"));
        assert!(out["authorization"].is_sensitive());
        assert!(!out.contains_key("dw_reason") && !out.contains_key("ce-bad"));
        let unsigned = headers(&message(&[], b"x"), None, &[]);
        assert!(!unsigned.contains_key(SIGNATURE));
        assert_eq!(unsigned["content-type"], "application/json");
    }

    #[test]
    fn the_headers_driftwatch_sets_are_reserved() {
        for n in [
            "host",
            "idempotency-key",
            "x-driftwatch-signature-256",
            "ce-id",
            "content-type",
        ] {
            assert!(reserved(&HeaderName::from_static(n)), "{n}");
        }
        assert!(!reserved(&HeaderName::from_static("authorization")));
        assert!(!reserved(&HeaderName::from_static("ph-auth-token")));
    }

    #[test]
    fn the_secret_does_not_show_in_debug_output() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(<7 bytes>)");
    }
}
