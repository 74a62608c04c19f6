//! What one delivery attempt's result means, pure: delivered, worth another attempt (and after
//! how long), or refused for good. The I/O loop in [`super::service`] asks [`next_step`] after
//! every attempt and does what it says.

use std::fmt;
use std::time::Duration;

/// Why one attempt did not deliver the message. Every text here is driftwatch's own or the
/// operating system's: never the receiver's response body, never the URL's path or query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The receiver answered with a status other than 2xx. `retry_after` is its `Retry-After`
    /// header in seconds, when it sent one in that form.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No complete response within `--timeout-seconds` (connecting and TLS included).
    Timeout(Duration),
    /// The TCP connection could not be opened (refused, unreachable, name not resolved).
    Connect(String),
    /// The TLS handshake failed (certificate not trusted, name mismatch, protocol).
    Tls(String),
    /// The HTTP exchange broke (connection closed mid-response, malformed response).
    Protocol(String),
}

impl Failure {
    /// Whether another attempt may succeed: connection errors, timeouts, TLS and protocol
    /// failures, and the statuses that say "later" (408, 425, 429, 5xx). Any other status (4xx,
    /// and 3xx: redirects are not followed, so the signature never goes to another host) is the
    /// receiver refusing this message; it goes to the dead-letter topic at once.
    pub fn retryable(&self) -> bool {
        match self {
            Failure::Status { code, .. } => retryable_status(*code),
            Failure::Timeout(_) | Failure::Connect(_) | Failure::Tls(_) | Failure::Protocol(_) => {
                true
            }
        }
    }

    /// The short code in dead letters' `dw_reason` header: `http_<status>`, `timeout`,
    /// `connect`, `tls` or `protocol`.
    pub fn code(&self) -> String {
        match self {
            Failure::Status { code, .. } => format!("http_{code}"),
            Failure::Timeout(_) => "timeout".into(),
            Failure::Connect(_) => "connect".into(),
            Failure::Tls(_) => "tls".into(),
            Failure::Protocol(_) => "protocol".into(),
        }
    }

    /// The failure's kind as a metric label (bounded: status classes, not codes).
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Status { code, .. } => match code {
                300..=399 => "http_3xx",
                400..=499 => "http_4xx",
                500..=599 => "http_5xx",
                _ => "http_other",
            },
            Failure::Timeout(_) => "timeout",
            Failure::Connect(_) => "connect",
            Failure::Tls(_) => "tls",
            Failure::Protocol(_) => "protocol",
        }
    }

    /// The `Retry-After` the receiver asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status { code, .. } => {
                let reason = hyper::StatusCode::from_u16(*code)
                    .ok()
                    .and_then(|s| s.canonical_reason());
                match reason {
                    Some(r) => write!(f, "HTTP {code} {r}"),
                    None => write!(f, "HTTP {code}"),
                }
            }
            Failure::Timeout(t) => write!(f, "no response within {}s", t.as_secs_f64()),
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Failure::Protocol(e) => write!(f, "HTTP exchange failed: {e}"),
        }
    }
}

/// Statuses that ask the sender to try again later: 408 Request Timeout, 425 Too Early, 429 Too
/// Many Requests and every 5xx.
pub fn retryable_status(code: u16) -> bool {
    matches!(code, 408 | 425 | 429 | 500..=599)
}

/// The result of an attempt that got a response: `Ok` for 2xx, the [`Failure`] otherwise, with
/// the `Retry-After` header's value (`retry_after`) read as delay-seconds. The HTTP-date form is
/// not read: the usual backoff applies then.
///
/// # Errors
/// The failure, for any status outside 2xx.
pub fn classify(code: u16, retry_after: Option<&str>) -> Result<(), Failure> {
    if (200..300).contains(&code) {
        return Ok(());
    }
    Err(Failure::Status {
        code,
        retry_after: retry_after.and_then(parse_retry_after),
    })
}

/// `Retry-After` as delay-seconds (`120`); `None` for anything else.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than a u64 holds is a very long time; the policy's cap applies anyway.
    Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)))
}

/// How attempts are repeated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per message, the first included (`--max-attempts`).
    pub max_attempts: u32,
    /// The wait after the first failed attempt, doubling after each further one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts, `Retry-After` included (`--max-backoff-seconds`).
    pub max_backoff: Duration,
}

/// The first wait: half a second, then 1, 2, 4, ... up to the policy's cap.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` after attempt `attempt` (1-based) failed: the
    /// receiver's `Retry-After` if it gave one, else exponential backoff with "equal jitter"
    /// (half the step fixed, half random: `jitter` in 0..1), so restarted forwarders do not
    /// hit a recovering receiver in lockstep. Both capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_backoff);
        }
        let doublings = attempt.saturating_sub(1).min(30);
        let step = self
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        let half = step / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The receiver took it: store the offset.
    Delivered,
    /// Wait this long, then attempt again.
    RetryAfter(Duration),
    /// Dead-letter it: the receiver refused it for good, or it failed `max_attempts` times.
    DeadLetter(Failure),
}

/// The step after attempt number `attempt` (1-based) ended with `result`.
pub fn next_step(
    policy: &RetryPolicy,
    attempt: u32,
    result: Result<(), Failure>,
    jitter: f64,
) -> Step {
    match result {
        Ok(()) => Step::Delivered,
        Err(f) if f.retryable() && attempt < policy.max_attempts => {
            Step::RetryAfter(policy.backoff(attempt, f.retry_after(), jitter))
        }
        Err(f) => Step::DeadLetter(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        initial_backoff: INITIAL_BACKOFF,
        max_backoff: Duration::from_secs(3),
    };

    #[test]
    fn only_statuses_that_mean_later_and_transport_failures_are_retried() {
        for code in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert!(classify(code, None).unwrap_err().retryable(), "{code}");
        }
        for code in [301, 302, 400, 401, 403, 404, 409, 410, 413, 422] {
            assert!(!classify(code, None).unwrap_err().retryable(), "{code}");
        }
        for code in [200, 201, 202, 204] {
            assert_eq!(classify(code, None), Ok(()));
        }
        assert!(Failure::Timeout(Duration::from_secs(1)).retryable());
        assert!(Failure::Connect("refused".into()).retryable());
        assert!(Failure::Tls("untrusted".into()).retryable());
    }

    #[test]
    fn a_permanent_refusal_is_dead_lettered_at_the_first_attempt() {
        let step = next_step(&POLICY, 1, classify(400, None), 0.5);
        assert_eq!(
            step,
            Step::DeadLetter(Failure::Status {
                code: 400,
                retry_after: None
            })
        );
    }

    #[test]
    fn a_retryable_failure_is_retried_until_the_last_attempt_then_dead_lettered() {
        for attempt in 1..4 {
            assert!(matches!(
                next_step(&POLICY, attempt, classify(503, None), 0.0),
                Step::RetryAfter(_)
            ));
        }
        match next_step(&POLICY, 4, classify(503, None), 0.0) {
            Step::DeadLetter(f) => assert_eq!(f.code(), "http_503"),
            other => panic!("{other:?}"),
        }
        assert_eq!(next_step(&POLICY, 4, Ok(()), 0.0), Step::Delivered);
    }

    #[test]
    fn backoff_doubles_with_jitter_in_its_upper_half_and_is_capped() {
        let b = |attempt, jitter| POLICY.backoff(attempt, None, jitter);
        assert_eq!(b(1, 0.0), Duration::from_millis(250));
        assert_eq!(b(1, 1.0), Duration::from_millis(500));
        assert_eq!(b(2, 0.0), Duration::from_millis(500));
        assert_eq!(b(3, 1.0), Duration::from_secs(2));
        assert_eq!(b(4, 1.0), Duration::from_secs(3), "capped");
        assert_eq!(b(60, 1.0), Duration::from_secs(3), "no overflow");
        let mid = b(2, 0.5);
        assert!(mid > b(2, 0.0) && mid < b(2, 1.0));
    }

    #[test]
    fn retry_after_seconds_are_honoured_up_to_the_cap_and_dates_are_not_read() {
        let f = classify(429, Some("2")).unwrap_err();
        assert_eq!(f.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(
            next_step(&POLICY, 1, Err(f), 0.0),
            Step::RetryAfter(Duration::from_secs(2))
        );
        let long = classify(503, Some(" 3600 ")).unwrap_err();
        assert_eq!(
            next_step(&POLICY, 1, Err(long), 0.0),
            Step::RetryAfter(Duration::from_secs(3))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn failures_read_as_codes_kinds_and_sentences_without_the_receivers_words() {
        let f = classify(503, None).unwrap_err();
        assert_eq!((f.code().as_str(), f.kind()), ("http_503", "http_5xx"));
        assert_eq!(f.to_string(), "HTTP 503 Service Unavailable");
        assert_eq!(classify(499, None).unwrap_err().to_string(), "HTTP 499");
        let t = Failure::Timeout(Duration::from_millis(1500));
        assert_eq!(
            (t.code().as_str(), t.to_string().as_str()),
            ("timeout", "no response within 1.5s")
        );
    }
}
