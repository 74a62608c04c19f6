//! Telemetry beside the pipeline: Prometheus metrics ([`metrics`]), the `/metrics`, `/healthz`
//! and `/readyz` endpoints ([`http`]), and log setup ([`logging`]).

pub mod http;
pub mod logging;
pub mod metrics;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use metrics::{EngineCollector, Metrics};

/// A memory figure of this process from `/proc/self/status` (`VmRSS` now, `VmHWM` its peak), in
/// bytes; `None` off Linux.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Wall-clock milliseconds since the epoch: for log rate limits and event-time lag, never for
/// detection (which runs on event time).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Lets one log line through per interval and counts the ones held back, so a stream of bad
/// records or a broker outage cannot flood the logs. Time is passed in, so tests need no sleeps.
#[derive(Debug)]
pub struct RateLimit {
    interval_ms: i64,
    last_ms: AtomicI64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub const fn new(interval_ms: i64) -> RateLimit {
        RateLimit {
            interval_ms,
            last_ms: AtomicI64::new(i64::MIN),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be logged at `now_ms`, `n` being how many were held back since
    /// the last one; `None` (and one more held back) otherwise.
    pub fn check(&self, now_ms: i64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        if (last != i64::MIN && now_ms.saturating_sub(last) < self.interval_ms)
            || self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// Serialises a duration as seconds (for summaries printed as JSON).
pub fn serialize_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reports_its_resident_and_peak_memory_and_an_unknown_field_is_none() {
        let rss = proc_status_bytes("VmRSS").expect("Linux");
        let peak = proc_status_bytes("VmHWM").expect("Linux");
        assert!(rss > 1 << 20 && peak >= rss, "{rss} {peak}");
        // A prefix of another field's name is not that field.
        assert_eq!(proc_status_bytes("VmRS"), None);
    }

    #[test]
    fn rate_limit_lets_one_line_through_per_interval_and_counts_the_rest() {
        let r = RateLimit::new(10_000);
        assert_eq!(r.check(1_000), Some(0));
        assert_eq!(r.check(2_000), None);
        assert_eq!(r.check(10_999), None);
        assert_eq!(r.check(11_000), Some(2), "two lines were held back");
        assert_eq!(r.check(11_001), None);
        assert_eq!(r.check(30_000), Some(1));
    }
}
