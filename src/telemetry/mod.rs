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

/// CPU time (user and system, seconds) from `/proc/self/stat`: this process's own, and that of
/// its children waited for (as a bench spawning the binary needs); `None` off Linux.
pub fn cpu_seconds() -> Option<CpuSeconds> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: utime, stime,
    // cutime and cstime are the 14th to 17th.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut ticks = rest
        .split_ascii_whitespace()
        .skip(11)
        .map(str::parse::<f64>);
    let mut next = || ticks.next()?.ok();
    // Clock ticks: 100 a second on every Linux architecture that Rust's std supports.
    let own = (next()? + next()?) / 100.0;
    let children = (next()? + next()?) / 100.0;
    Some(CpuSeconds { own, children })
}

/// A reading of [`cpu_seconds`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSeconds {
    pub own: f64,
    pub children: f64,
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
    fn cpu_time_counts_this_process_work_and_its_waited_for_children_apart() {
        let before = cpu_seconds().expect("Linux");
        let mut x = 0u64;
        let spun = std::time::Instant::now();
        while cpu_seconds().expect("Linux").own < before.own + 0.05 {
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            assert!(spun.elapsed().as_secs() < 60, "own CPU time never grew");
        }
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .status()
            .expect("sh runs");
        assert!(status.success());
        let after = cpu_seconds().expect("Linux");
        assert!(after.children > before.children, "{before:?} {after:?}");
        assert!(after.own >= before.own + 0.05, "{before:?} {after:?}");
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
