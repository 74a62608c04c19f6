//! Keeps secrets out of everything driftwatch writes.
//!
//! Decoders copy only a few free-text fields out of a record (user agent, resource names,
//! session names). Those fields occasionally carry a bearer token, a JWT, a signed URL or a
//! `password=` pair. [`scrub`] replaces any such value with a short fingerprint, so an analyst can
//! still correlate two alerts on the same value without anyone learning the value itself.

use sha2::{Digest, Sha256};

/// A stable, non-reversible fingerprint of a secret: `fp:` and 12 hex digits of its SHA-256.
pub fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(15);
    out.push_str("fp:");
    for b in &digest[..6] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Keys whose value is a secret in `key=value` and `Key: value` forms (matched as suffixes,
/// case-insensitively: `X-Amz-Security-Token=`, `client_secret=`, `Authorization:`).
const SECRET_KEYS: [&[u8]; 8] = [
    b"token",
    b"signature",
    b"password",
    b"passwd",
    b"secret",
    b"api_key",
    b"apikey",
    b"authorization",
];
/// After `:` only header-like keys count: ARNs are full of `:secret:` and `:token:` parts.
const HEADER_KEYS: [&[u8]; 4] = [b"authorization", b"password", b"api_key", b"apikey"];

/// True when `s` looks like it carries a secret value.
///
/// Runs on every copied field of every record, so it only looks where a secret can be: before
/// `=` and `:` for a secret-naming key, after `bearer `, and at tokens long enough to be keys.
pub fn looks_secret(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 16 {
        return false;
    }
    let key_before = |i: usize| {
        let start = b[..i]
            .iter()
            .rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-'))
            .map_or(0, |p| p + 1);
        let key = &b[start..i];
        let keys: &[&[u8]] = if b[i] == b'=' {
            &SECRET_KEYS
        } else {
            &HEADER_KEYS
        };
        keys.iter()
            .any(|k| key.len() >= k.len() && key[key.len() - k.len()..].eq_ignore_ascii_case(k))
    };
    if memchr::memchr2_iter(b'=', b':', b).any(key_before) {
        return true;
    }
    if memchr::memchr2_iter(b'b', b'B', b)
        .any(|i| b.len() - i >= 7 && b[i..i + 7].eq_ignore_ascii_case(b"bearer "))
    {
        return true;
    }
    b.len() >= 30
        && b.split(|&c| c.is_ascii_whitespace() || matches!(c, b'&' | b'?' | b',' | b';' | b'"'))
            .any(token_is_secret)
}

fn token_is_secret(tok: &[u8]) -> bool {
    if tok.len() < 30 {
        return false;
    }
    // JSON Web Tokens: three base64url segments, the first starting with `eyJ` ({"...).
    if tok.starts_with(b"eyJ") && tok.iter().filter(|&&c| c == b'.').count() == 2 {
        return true;
    }
    // Long high-entropy strings (AWS secret keys are 40 chars of base64): mixed classes, no
    // separators that identifiers and versions usually have.
    if tok.len() >= 32
        && tok
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=')
    {
        let upper = tok.iter().any(|c| c.is_ascii_uppercase());
        let lower = tok.iter().any(|c| c.is_ascii_lowercase());
        let digit = tok.iter().any(|c| c.is_ascii_digit());
        return upper && lower && digit;
    }
    false
}

/// Returns `s` unchanged when it looks harmless, else a fingerprint that stands for it.
pub fn scrub(s: &str) -> String {
    if looks_secret(s) {
        format!("[redacted {}]", fingerprint(s))
    } else {
        s.to_owned()
    }
}

/// [`scrub`] for a string already owned: no copy when it is harmless.
pub fn scrub_owned(s: String) -> String {
    if looks_secret(&s) {
        format!("[redacted {}]", fingerprint(&s))
    } else {
        s
    }
}

/// [`scrub`] for optional fields.
pub fn scrub_opt(s: Option<&str>) -> Option<String> {
    s.map(scrub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_jwts_and_secret_keys_are_replaced_by_fingerprints() {
        let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlc2lnbmF0dXJl";
        for secret in [
            "Authorization: Bearer abcdefghijklmnop",
            jwt,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "https://bucket.s3.amazonaws.com/x?X-Amz-Signature=abcdef0123456789",
            "db.connect?user=app&password=hunter2hunter2",
            "client_secret=0123456789abcdef",
        ] {
            let out = scrub(secret);
            assert!(out.starts_with("[redacted fp:"), "{secret} -> {out}");
            assert!(!out.contains(secret));
            assert_eq!(out, scrub(secret), "fingerprint must be stable");
        }
    }

    #[test]
    fn ordinary_identifiers_and_user_agents_pass_unchanged() {
        for ok in [
            "aws-cli/2.13.5 Python/3.11.4 Linux/5.10 exe/x86_64",
            "arn:aws:iam::123456789012:role/payments-api",
            "system:serviceaccount:payments:api",
            "i-0123456789abcdef0",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf",
            "s3://reports/2026/01/05/part-0001.parquet",
            "kubectl/v1.25.4 (linux/amd64) kubernetes/872a965",
        ] {
            assert_eq!(scrub(ok), ok);
        }
    }
}
