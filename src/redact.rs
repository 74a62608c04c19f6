//! Keeps secrets out of everything driftwatch writes.
//!
//! Every string an event carries passes [`crate::event::AccessEvent::sanitize`] once, at the
//! decoder's boundary: a field with a known shape (an access key id, an account id, a UUID) is
//! kept when it has that shape, and everything else goes through [`scrub`], which replaces each
//! secret it finds *inside* the string with `[redacted fp:…]`, a stable fingerprint of that
//! secret alone. The rest of the string stays readable (a user agent keeps its client), and
//! the same token seen twice has the same fingerprint, so an analyst can still tell "the same
//! token again" without anyone learning it.
//!
//! What counts as a secret follows the gitleaks default rule set
//! (<https://github.com/gitleaks/gitleaks/blob/master/config/gitleaks.toml>) and
//! secrets-patterns-db (<https://github.com/mazen160/secrets-patterns-db>):
//! - tokens with a vendor prefix ([`PREFIXES`]: GitHub `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_`/
//!   `github_pat_`, GitLab `glpat-`, Slack `xox?-`/`xapp-`, Stripe `sk_live_`/`rk_live_`, Google
//!   API keys `AIza`, npm `npm_`, OpenAI/Anthropic `sk-`, Hugging Face `hf_`, ...);
//! - values of secret-naming keys in `key=value`, `Key: value` and `"key": "value"` forms
//!   (`password=`, `X-Amz-Signature=`, Azure SAS `sig=`, `X-Api-Key:`, `Authorization:`), of any
//!   length;
//! - `Bearer`/`Basic` credentials, credentials in URLs (`scheme://user:pass@host`), JSON Web
//!   Tokens, PEM private keys (also flattened onto one line);
//! - 40-digit hex tokens, and high-entropy strings: a 32-character window of a base64 run
//!   whose characters are spread like random ones (Shannon entropy ≥ 4 bits per character,
//!   upper, lower and digits mixed, at least 14 class switches). Measured on every string of
//!   the fixtures and 3,000 simulated records, this flags no ordinary ARN, path, user agent or
//!   SSO role name, and catches ~94% of random 32-character and ~98% of 40-character base64
//!   secrets (AWS secret keys); vendor-prefixed tokens are caught whatever their entropy.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
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

/// What a redacted span is replaced by.
fn marker(secret: &str) -> String {
    format!("[redacted {}]", fingerprint(secret))
}

/// Vendor token prefixes (case-sensitive) and the least number of token characters that must
/// follow for the match to be a token rather than a word that happens to start the same way.
pub const PREFIXES: &[(&str, usize)] = &[
    ("ghp_", 20),
    ("gho_", 20),
    ("ghu_", 20),
    ("ghs_", 20),
    ("ghr_", 20),
    ("github_pat_", 20),
    ("glpat-", 16),
    ("xoxb-", 10),
    ("xoxa-", 10),
    ("xoxp-", 10),
    ("xoxr-", 10),
    ("xoxs-", 10),
    ("xoxe-", 10),
    ("xapp-", 10),
    ("sk_live_", 10),
    ("rk_live_", 10),
    ("sk_test_", 10),
    ("rk_test_", 10),
    ("AIza", 30),
    ("npm_", 30),
    ("sk-ant-", 20),
    ("sk-proj-", 20),
    ("hf_", 30),
    ("shpat_", 20),
    ("shpss_", 20),
    ("dop_v1_", 40),
    ("pypi-AgEIcHlwaS5vcmc", 20),
    ("AGE-SECRET-KEY-1", 20),
];

/// Keys whose value is a secret, matched case-insensitively as the end of the key
/// (`client_secret`, `X-Amz-Security-Token`, `db_password`, `X-Api-Key`).
const KEYS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "apikey",
    "api_key",
    "api-key",
    "authorization",
    "credential",
    "credentials",
    "private_key",
    "privatekey",
    "access_key",
    "accesskey",
];
/// Short keys that count only as the whole key (`sig=` of an Azure SAS, `pwd=`).
const EXACT_KEYS: &[&str] = &["sig", "pwd", "pass", "auth", "key"];

#[derive(Clone, Copy)]
enum Needle {
    Prefix(usize),
    Key,
    ExactKey,
    Scheme,
    Url,
    Pem,
    Jwt,
}

struct Scanner {
    ac: AhoCorasick,
    needles: Vec<Needle>,
}

static SCANNER: LazyLock<Scanner> = LazyLock::new(|| {
    let mut pats: Vec<String> = Vec::new();
    let mut needles = Vec::new();
    for (i, (p, _)) in PREFIXES.iter().enumerate() {
        pats.push((*p).to_owned());
        needles.push(Needle::Prefix(i));
    }
    for k in KEYS {
        pats.push((*k).to_owned());
        needles.push(Needle::Key);
    }
    for k in EXACT_KEYS {
        pats.push((*k).to_owned());
        needles.push(Needle::ExactKey);
    }
    for s in ["bearer ", "basic "] {
        pats.push(s.to_owned());
        needles.push(Needle::Scheme);
    }
    pats.push("://".to_owned());
    needles.push(Needle::Url);
    pats.push("-----begin".to_owned());
    needles.push(Needle::Pem);
    pats.push("eyj".to_owned());
    needles.push(Needle::Jwt);
    let ac = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(&pats)
        .expect("the secret patterns compile");
    Scanner { ac, needles }
});

fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn is_key_char(c: u8) -> bool {
    is_token(c) || c == b'.'
}

/// End of the run of bytes satisfying `f` from `i`.
fn run_end(b: &[u8], mut i: usize, f: impl Fn(u8) -> bool) -> usize {
    while i < b.len() && f(b[i]) {
        i += 1;
    }
    i
}

/// Where a value stops: whitespace, a separator of pairs, or a quote or bracket.
fn value_end(b: &[u8], i: usize) -> usize {
    run_end(b, i, |c| {
        !(c.is_ascii_whitespace()
            || matches!(
                c,
                b'&' | b';' | b',' | b'"' | b'\'' | b'<' | b'>' | b')' | b'}' | b']'
            ))
    })
}

/// The byte ranges of `s` that hold secrets, sorted and merged.
pub fn secret_spans(s: &str) -> Vec<Range<usize>> {
    spans(s, true)
}

/// As [`secret_spans`]; `entropy` false leaves out the high-entropy rule (the named formats,
/// pairs, URLs, keys and hex tokens still count).
fn spans(s: &str, entropy: bool) -> Vec<Range<usize>> {
    let b = s.as_bytes();
    let mut spans = Vec::new();
    if b.len() < 6 {
        return spans;
    }
    let sc = &*SCANNER;
    for m in sc.ac.find_iter(b) {
        let (i, j) = (m.start(), m.end());
        let boundary_before = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        match sc.needles[m.pattern().as_usize()] {
            Needle::Prefix(p) => {
                let (prefix, min) = PREFIXES[p];
                if boundary_before && &b[i..j] == prefix.as_bytes() {
                    let end = run_end(b, j, is_token);
                    if end - j >= min {
                        spans.push(i..end);
                    }
                }
            }
            Needle::Key | Needle::ExactKey => {
                if let Some(v) = key_value(
                    b,
                    i,
                    j,
                    matches!(sc.needles[m.pattern().as_usize()], Needle::ExactKey),
                ) {
                    spans.push(v);
                }
            }
            Needle::Scheme => {
                if boundary_before {
                    let end = run_end(b, j, |c| {
                        c.is_ascii_alphanumeric()
                            || matches!(c, b'+' | b'/' | b'=' | b'_' | b'-' | b'.' | b'~')
                    });
                    if end - j >= 8 {
                        spans.push(j..end);
                    }
                }
            }
            Needle::Url => {
                // scheme://user:password@host: the password (or a lone long user, a token).
                let end = run_end(b, j, |c| {
                    !(c.is_ascii_whitespace() || matches!(c, b'/' | b'?' | b'#' | b'@' | b'"'))
                });
                if end < b.len() && b[end] == b'@' {
                    match memchr::memchr(b':', &b[j..end]) {
                        Some(k) if j + k + 1 < end => spans.push(j + k + 1..end),
                        None if end - j >= 16 => spans.push(j..end),
                        _ => {}
                    }
                }
            }
            Needle::Pem => {
                let head_end = memchr::memmem::find(&b[j..], b"-----").map_or(b.len(), |k| j + k);
                if contains_ci(&b[j..head_end], b"private key") {
                    let end = memchr::memmem::find(&b[head_end.min(b.len())..], b"-----END")
                        .map(|k| head_end + k)
                        .and_then(|e| {
                            memchr::memmem::find(&b[e + 8..], b"-----").map(|k| e + 8 + k + 5)
                        })
                        .unwrap_or(b.len());
                    spans.push(i..end);
                }
            }
            Needle::Jwt => {
                if boundary_before && &b[i..j] == b"eyJ" {
                    let end = run_end(b, i, |c| is_token(c) || c == b'.' || c == b'=');
                    if end - i >= 30 && b[i..end].iter().filter(|&&c| c == b'.').count() >= 2 {
                        spans.push(i..end);
                    }
                }
            }
        }
    }
    if b.len() >= 32 {
        random_runs(b, entropy, &mut spans);
    }
    spans.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for r in spans {
        if r.is_empty() {
            continue;
        }
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The value of a secret-naming key whose name ends at `j` (the keyword is `b[i..j]`).
fn key_value(b: &[u8], i: usize, j: usize, exact: bool) -> Option<Range<usize>> {
    // The keyword must end the key...
    if j < b.len() && is_key_char(b[j]) {
        return None;
    }
    let start = b[..i]
        .iter()
        .rposition(|&c| !is_key_char(c))
        .map_or(0, |p| p + 1);
    // ...and, for the short ones, be the whole key.
    if exact && start != i {
        return None;
    }
    // `key=v`, `key: v`, `"key": "v"`, `key":"v`.
    let mut k = j;
    if k < b.len() && matches!(b[k], b'"' | b'\'') {
        k += 1;
    }
    while k < b.len() && b[k] == b' ' {
        k += 1;
    }
    let sep = *b.get(k)?;
    if sep == b':' {
        // ARNs are full of `:secret:` parts: inside an `a:b:c` chain a colon counts only as a
        // header's (`svc:X-Api-Key: v`), followed by a space.
        if start > 0 && b[start - 1] == b':' && b.get(k + 1) != Some(&b' ') {
            return None;
        }
    } else if sep != b'=' {
        return None;
    }
    k += 1;
    while k < b.len() && matches!(b[k], b' ' | b'"' | b'\'') {
        k += 1;
    }
    let mut end = value_end(b, k);
    // `Authorization: Bearer x`: the scheme and the credential.
    let v = &b[k..end];
    if (v.eq_ignore_ascii_case(b"bearer")
        || v.eq_ignore_ascii_case(b"basic")
        || v.eq_ignore_ascii_case(b"token"))
        && end < b.len()
        && b[end] == b' '
    {
        end = value_end(b, end + 1);
    }
    if end == k || is_marker(&b[k..]) {
        return None;
    }
    Some(k..end)
}

/// True when `b` opens with exactly what [`scrub`] writes (`[redacted fp:` + 12 hex + `]`):
/// a value already redacted. Anything merely starting with `[redacted` is still a value.
fn is_marker(b: &[u8]) -> bool {
    const HEAD: &[u8] = b"[redacted fp:";
    b.len() >= HEAD.len() + 13
        && b.starts_with(HEAD)
        && b[HEAD.len()..HEAD.len() + 12]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        && b[HEAD.len() + 12] == b']'
}

/// 40-digit hex tokens and random-looking base64 runs (see the module documentation).
fn random_runs(b: &[u8], entropy: bool, spans: &mut Vec<Range<usize>>) {
    // `=` only pads the end of base64: inside a string it separates a key from its value.
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'_' | b'-');
    let mut i = 0;
    while i < b.len() {
        if !is_b64(b[i]) {
            i += 1;
            continue;
        }
        let end = run_end(b, run_end(b, i, is_b64), |c| c == b'=');
        let run = &b[i..end];
        if entropy && run.len() >= 32 && looks_random(run) {
            spans.push(i..end);
        } else if run.len() >= 40 {
            // A 40-hex token, alone or inside a longer run (`token-<40 hex>`).
            hex40(b, i, end, spans);
        }
        i = end;
    }
}

fn hex40(b: &[u8], start: usize, end: usize, spans: &mut Vec<Range<usize>>) {
    let mut i = start;
    while i < end {
        if !b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let e = run_end(&b[..end], i, |c| c.is_ascii_alphanumeric());
        let t = &b[i..e];
        if t.len() == 40
            && t.iter().all(u8::is_ascii_hexdigit)
            && t.iter().any(u8::is_ascii_digit)
            && t.iter().any(u8::is_ascii_alphabetic)
        {
            spans.push(i..e);
        }
        i = e;
    }
}

const WINDOW: usize = 32;

/// True when some 32-character window of `run` is spread like random base64.
fn looks_random(run: &[u8]) -> bool {
    // n·H = n·log2(n) - Σ c·log2(c), kept incrementally with a table of c·log2(c).
    static CLOG: LazyLock<[f64; WINDOW + 1]> = LazyLock::new(|| {
        let mut t = [0.0; WINDOW + 1];
        for (c, v) in t.iter_mut().enumerate().skip(1) {
            *v = c as f64 * (c as f64).log2();
        }
        t
    });
    let clog = &*CLOG;
    let mut counts = [0u8; 128];
    let (mut upper, mut lower, mut digit) = (0u32, 0u32, 0u32);
    let mut sum = 0.0;
    let class = |c: u8| -> u8 {
        if c.is_ascii_uppercase() {
            0
        } else if c.is_ascii_lowercase() {
            1
        } else if c.is_ascii_digit() {
            2
        } else {
            3
        }
    };
    let full = WINDOW as f64 * (WINDOW as f64).log2();
    for (k, &c) in run.iter().enumerate() {
        if k >= WINDOW {
            let old = run[k - WINDOW];
            let n = &mut counts[old as usize & 127];
            sum -= clog[*n as usize] - clog[*n as usize - 1];
            *n -= 1;
            match class(old) {
                0 => upper -= 1,
                1 => lower -= 1,
                2 => digit -= 1,
                _ => {}
            }
        }
        let n = &mut counts[c as usize & 127];
        sum += clog[*n as usize + 1] - clog[*n as usize];
        *n += 1;
        match class(c) {
            0 => upper += 1,
            1 => lower += 1,
            2 => digit += 1,
            _ => {}
        }
        if k + 1 >= WINDOW
            && upper >= 2
            && lower >= 2
            && digit >= 2
            && (full - sum) / WINDOW as f64 >= 4.0
        {
            let w = &run[k + 1 - WINDOW..=k];
            let classes = w.iter().map(|&c| class(c)).filter(|&c| c != 3);
            let mut prev = None;
            let mut switches = 0;
            for c in classes {
                if prev.is_some_and(|p| p != c) {
                    switches += 1;
                }
                prev = Some(c);
            }
            if switches >= 14 {
                return true;
            }
        }
    }
    false
}

/// True when `s` holds anything [`scrub`] would redact.
pub fn looks_secret(s: &str) -> bool {
    !secret_spans(s).is_empty()
}

/// `s` with every secret in it replaced by its fingerprint; borrowed when there is none.
pub fn scrub(s: &str) -> Cow<'_, str> {
    replace(s, secret_spans(s))
}

/// [`scrub`] for a principal key a provider wrote (an ARN, a Kubernetes service account, a GCP
/// service-account email): generated names there (CloudFormation's `Stack-RoleABCD1234-1XYZ8AB`,
/// SSO roles' hex suffixes) look random by design, so only the named formats count.
pub fn scrub_principal(s: &mut String) {
    let provider_written =
        s.starts_with("arn:") || s.starts_with("system:") || s.ends_with(".gserviceaccount.com");
    scrub_cached(s, !provider_written);
}

fn replace(s: &str, spans: Vec<Range<usize>>) -> Cow<'_, str> {
    if spans.is_empty() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for r in spans {
        out.push_str(&s[at..r.start]);
        out.push_str(&marker(&s[r.clone()]));
        at = r.end;
    }
    out.push_str(&s[at..]);
    Cow::Owned(out)
}

/// [`scrub`] in place: no copy when `s` holds no secret.
///
/// Principals, actions, user agents and resources repeat from event to event, so each thread
/// remembers the last few thousand short strings it found clean (the strings themselves, not
/// hashes: a collision must never let a secret through).
pub fn scrub_string(s: &mut String) {
    scrub_cached(s, true);
}

fn scrub_cached(s: &mut String, entropy: bool) {
    use std::cell::RefCell;
    use std::collections::HashSet;
    const REMEMBERED: usize = 4096;
    const LONGEST: usize = 256;
    // foldhash, seeded at random per process: several times faster than std's SipHash on short
    // strings (which cost 4% of replay), and input cannot be crafted to collide in it.
    type Set = HashSet<Box<str>, foldhash::fast::RandomState>;
    thread_local! {
        // Found clean with and without the high-entropy rule.
        static CLEAN: RefCell<[Set; 2]> = RefCell::new([Set::default(), Set::default()]);
    }
    let short = s.len() <= LONGEST;
    let set = usize::from(entropy);
    if short && CLEAN.with(|c| c.borrow()[set].contains(s.as_str())) {
        return;
    }
    match replace(s, spans(s, entropy)) {
        Cow::Owned(clean) => *s = clean,
        Cow::Borrowed(_) if short => CLEAN.with(|c| {
            let c = &mut c.borrow_mut()[set];
            if c.len() >= REMEMBERED {
                c.clear();
            }
            c.insert(s.as_str().into());
        }),
        Cow::Borrowed(_) => {}
    }
}

/// Fields whose shape is known: a value with the shape is what the field claims to be and is
/// kept as it is; anything else is not trusted as one (see `AccessEvent::sanitize`).
pub mod shape {
    fn all(s: &str, f: impl Fn(u8) -> bool) -> bool {
        s.bytes().all(f)
    }

    /// `AKIA` (long-term) or `ASIA` (session) and 16 upper-case letters or digits.
    pub fn aws_access_key_id(s: &str) -> bool {
        s.len() == 20
            && (s.starts_with("AKIA") || s.starts_with("ASIA"))
            && all(&s[4..], |c| c.is_ascii_uppercase() || c.is_ascii_digit())
    }

    /// Twelve digits.
    pub fn aws_account_id(s: &str) -> bool {
        s.len() == 12 && all(s, |c| c.is_ascii_digit())
    }

    /// `8-4-4-4-12` hex digits.
    pub fn uuid(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 36
            && b.iter().enumerate().all(|(i, &c)| match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    }

    /// A cloud name of `len` lower-case letters, digits and hyphens, starting with a letter and
    /// not ending with a hyphen.
    fn lowercase_name(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
        len.contains(&s.len())
            && s.as_bytes()[0].is_ascii_lowercase()
            && !s.ends_with('-')
            && all(s, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
            })
    }

    /// A GCP project id: 6 to 30 lower-case letters, digits and hyphens, starting with a letter.
    pub fn gcp_project_id(s: &str) -> bool {
        lowercase_name(s, 6..=30)
    }

    /// A GCP IAM permission (`storage.objects.get`, `resourcemanager.projects.setIamPolicy`):
    /// at most 128 bytes, three or more dot-separated parts of ASCII letters and digits, the
    /// first a lower-case service name.
    pub fn gcp_permission(s: &str) -> bool {
        s.len() <= 128
            && s.split('.').count() >= 3
            && s.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric()))
            && s.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
    }

    /// A cloud region or zone name: 2 to 32 lower-case letters, digits and hyphens, starting
    /// with a letter (AWS `eu-west-1`, `us-gov-west-1`; GCP `europe-west1`, `us-central1-a`,
    /// `global`).
    pub fn cloud_region(s: &str) -> bool {
        lowercase_name(s, 2..=32)
    }

    /// A Kubernetes cluster name as EKS, GKE and AKS allow them and as `--input
    /// TOPIC=FORMAT@CLUSTER` declares them: 1 to 100 letters, digits, `-`, `_` and `.`, starting
    /// with a letter or digit. No `/` or `:`, so a cluster-qualified principal key
    /// (`CLUSTER/USERNAME`) splits in one way only.
    pub fn cluster_name(s: &str) -> bool {
        (1..=100).contains(&s.len())
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && all(s, |c| {
                c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
            })
    }

    /// An assumed-role session's caller id (`aws:userid`): the role's unique id (`AROA` and 16
    /// to 32 upper-case letters or digits), `:`, and a session name (2 to 64 of letters, digits
    /// and `_+=,.@-`, as STS allows).
    pub fn aws_session_user_id(s: &str) -> bool {
        let Some((role, session)) = s.split_once(':') else {
            return false;
        };
        role.strip_prefix("AROA").is_some_and(|id| {
            (16..=32).contains(&id.len())
                && all(id, |c| c.is_ascii_uppercase() || c.is_ascii_digit())
        }) && (2..=64).contains(&session.len())
            && all(session, |c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b'-')
            })
    }

    /// A GCP service-account key id: 40 hex digits.
    pub fn gcp_key_id(s: &str) -> bool {
        s.len() == 40 && all(s, |c| c.is_ascii_hexdigit())
    }

    /// A Kubernetes credential id: `JTI=<uuid>` of a bound token, `X509SHA256=<64 hex>` of a
    /// client certificate.
    pub fn k8s_credential_id(s: &str) -> bool {
        if let Some(u) = s.strip_prefix("JTI=") {
            return uuid(u);
        }
        s.strip_prefix("X509SHA256=")
            .is_some_and(|h| h.len() == 64 && all(h, |c| c.is_ascii_hexdigit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Planted in the tests: one of each format the scrubber must know.
    pub(crate) const PLANTED: &[&str] = &[
        "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tV9wX1yZ3b5D",
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",
        "ghs_R2d2C3poQ7bb8Y9xW1vU2tS3rQ4pO5nM6lK7",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        "xoxb-2048-1024-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxp-12345678901-12345678901-123456789012-abcdef",
        "sk_live_51HqLyjWDarjtT1zdp7dcXyz",
        "rk_live_51HqLyjWDarjtT1zdp7dcXyz",
        "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "npm_aB3dE5fG7hJ9kL1mN3pQ5rS7tV9wX1yZ3b5D",
        "h3Kq9Zr/T7vW2mXb8Lp4Ns+Yc1Df6Gj0Ru5Ea9Qx",
        "7c4a8d09ca3762af61e59520943dc26494f8941b",
    ];

    #[test]
    fn every_known_token_format_is_redacted_wherever_it_sits() {
        for secret in PLANTED {
            for text in [
                (*secret).to_owned(),
                format!("python-requests/2.31 {secret}"),
                format!("/v1/data/{secret}/items"),
                format!("arn:aws:iam::123456789012:role/{secret}"),
            ] {
                let out = scrub(&text);
                assert!(!out.contains(secret), "{text} -> {out}");
                assert!(out.contains("[redacted fp:"), "{text} -> {out}");
                assert_eq!(out, scrub(&text), "the fingerprint is stable");
            }
        }
    }

    #[test]
    fn secret_naming_pairs_headers_urls_and_keys_are_redacted_and_the_rest_kept() {
        let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlc2lnbmF0dXJl";
        for (text, secret, kept) in [
            (
                "Authorization: Bearer abcdefghijklmnop",
                "abcdefghijklmnop",
                "Authorization",
            ),
            ("X-Api-Key: 0123abcd", "0123abcd", "X-Api-Key"),
            (
                "db.connect?user=app&password=hunter2",
                "hunter2",
                "user=app",
            ),
            ("login pwd=x1", "x1", "login"),
            (
                "client_secret=0123456789abcdef",
                "0123456789abcdef",
                "client_secret",
            ),
            (
                "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig=AbC%2Fd3&se=2026",
                "AbC%2Fd3",
                "sv=2022-11-02",
            ),
            (
                "https://deploy:s3cr3tpass@git.example.com/repo.git",
                "s3cr3tpass",
                "git.example.com",
            ),
            ("{\"token\": \"abc\"}", "abc", "token"),
            (
                "curl/8.0 -----BEGIN RSA PRIVATE KEY-----MIIEpAIBAAKCAQEA-----END RSA PRIVATE KEY-----",
                "MIIEpAIBAAKCAQEA",
                "curl/8.0",
            ),
            (jwt, jwt, ""),
            (
                "X-Amz-Security-Token=IQoJb3JpZ2luX2VjE",
                "IQoJb3JpZ2luX2VjE",
                "X-Amz-Security-Token=",
            ),
        ] {
            let out = scrub(text);
            assert!(!out.contains(secret), "{text} -> {out}");
            assert!(out.contains(kept), "{text} -> {out}");
        }
    }

    #[test]
    fn ordinary_identifiers_paths_and_user_agents_pass_unchanged() {
        for ok in [
            "aws-cli/2.13.5 Python/3.11.4 Linux/5.10 exe/x86_64",
            "aws-sdk-java/1.12.470 Linux/5.10.192-183.736.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/25.372-b07 java/1.8.0_372 vendor/Amazon.com_Inc. cfg/retry-mode/standard",
            "arn:aws:iam::123456789012:role/payments-api",
            "arn:aws:iam::123123123123:role/aws-reserved/sso.amazonaws.com/us-west-2/AWSReservedSSO_DevAdmin_635426549a280cc6",
            "arn:aws:sts::123456789012:assumed-role/panther-log-analysis-AthenaApiFunctionRole-1KK31J1/panther-athena",
            "system:serviceaccount:payments:api",
            "i-0123456789abcdef0",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf",
            "s3://reports/2026/01/05/part-0001.parquet",
            "kubectl/v1.25.4 (linux/amd64) kubernetes/872a965",
            "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef",
            "/api/v1/persistentvolumes/pvc-e2e8f9a3-7064-4f65-8f6f-31ce185f189e",
            "sts.amazonaws.com:GetSessionToken",
            "iam.amazonaws.com:CreateAccessKey",
            "create:tokenreviews",
            "JTI=2e6389af-b8bc-4c26-92d2-714fbe9cb4fa",
            "get:secrets",
        ] {
            assert_eq!(scrub(ok), ok);
        }
    }

    #[test]
    fn known_shapes_are_recognised_and_lookalikes_are_not() {
        assert!(shape::aws_access_key_id("AKIAIOSFODNN7EXAMPLE"));
        assert!(shape::aws_access_key_id("ASIAQGYBLPWY3VEXAMPL"));
        assert!(!shape::aws_access_key_id("ghp_aB3dE5fG7hJ9kL1m"));
        assert!(shape::aws_account_id("123456789012"));
        assert!(!shape::aws_account_id("12345678901a"));
        assert!(shape::uuid("2e6389af-b8bc-4c26-92d2-714fbe9cb4fa"));
        assert!(!shape::uuid("npm_aB3dE5fG7hJ9kL1mN3pQ5rS7tV9wX1yZ3"));
        assert!(shape::gcp_project_id("my-project-123"));
        assert!(!shape::gcp_project_id("npm_token"));
        assert!(shape::k8s_credential_id(
            "JTI=2e6389af-b8bc-4c26-92d2-714fbe9cb4fa"
        ));
        assert!(!shape::k8s_credential_id("JTI=xoxb-2048-1024-AbCdEf"));
    }
}
