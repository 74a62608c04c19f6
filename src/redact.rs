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

const KEY_MARKERS: [&str; 9] = [
    "bearer ",
    "authorization",
    "password",
    "passwd",
    "secret",
    "token=",
    "signature=",
    "x-amz-security-token",
    "api_key",
];

/// True when `s` looks like it carries a secret value.
pub fn looks_secret(s: &str) -> bool {
    if s.len() < 16 {
        return false;
    }
    let lower_has = |needle: &str| {
        s.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    if KEY_MARKERS.iter().any(|m| lower_has(m)) {
        return true;
    }
    s.split(|c: char| c.is_whitespace() || c == '&' || c == '?' || c == ',')
        .any(token_is_secret)
}

fn token_is_secret(tok: &str) -> bool {
    // JSON Web Tokens: three base64url segments, the first starting with `eyJ` ({"...).
    if tok.starts_with("eyJ") && tok.matches('.').count() == 2 && tok.len() > 30 {
        return true;
    }
    // Long high-entropy strings (AWS secret keys are 40 chars of base64): mixed classes, no
    // separators that identifiers and versions usually have.
    if tok.len() >= 32
        && tok
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=')
    {
        let upper = tok.bytes().any(|c| c.is_ascii_uppercase());
        let lower = tok.bytes().any(|c| c.is_ascii_lowercase());
        let digit = tok.bytes().any(|c| c.is_ascii_digit());
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
            "kubectl/v1.25.4 (linux/amd64) kubernetes/872a965",
        ] {
            assert_eq!(scrub(ok), ok);
        }
    }
}
