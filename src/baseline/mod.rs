//! baseline: the compact, bounded, event-time profile of one identity, and the fleet-wide
//! tables of which endpoints and networks many identities share. [`Profile::learn`]
//! ([`learn`]) is where one event advances them, reporting what was new for the detectors.
//!
//! Everything here advances on event time only. Frequencies decay with
//! `baseline.half_life_days`; every collection is capped, so an identity's memory stays bounded
//! whatever it does ([`Profile::heap_bytes`] reports it).

pub mod cold;
pub mod fleet;
pub mod learn;
pub mod lifecycle;
pub mod origin;
pub mod pin;
pub mod resources;
pub mod stats;

use origin::LEVELS;

pub use cold::ColdProfile;
pub use fleet::Fleet;
pub use learn::{Learned, endpoint_hash};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Bytes the allocator takes for a request of `n` bytes: glibc's malloc rounds each chunk up to
/// 16 bytes with an 8-byte header, 32 at least. Used so the state size the engine reports is
/// what the process really holds, not the sum of the types' sizes.
pub fn alloc_bytes(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).next_multiple_of(16).max(32)
    }
}

/// The share of `days` an identity was active around hour of day `h`: its active hours at `h`
/// and (half weight) the hours either side, `count_at` giving the active hours by hour of day. Saturation halving
/// keeps counts comparable to at most ~255 days per slot.
fn smoothed_share(count_at: impl Fn(usize) -> f64, h: usize, days: f64) -> f64 {
    let at = |k: usize| count_at((h + k) % 24);
    let smoothed = (at(23) + 2.0 * at(0) + at(1)) / 4.0;
    (smoothed / days.min(255.0 * 7.0)).min(1.0)
}

/// Hour index since the epoch (event time).
pub fn hour_index(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS)
}

/// Hour of the week, 0 = Monday 00:00 UTC.
pub fn hour_of_week(hour: i64) -> usize {
    // 1970-01-01 was a Thursday: hour 0 is Thursday 00:00, three days after Monday.
    (hour + 72).rem_euclid(168) as usize
}

/// True on Saturday and Sunday (UTC).
pub fn is_weekend(hour: i64) -> bool {
    hour_of_week(hour) >= 120
}

/// True when a history of `active_hours_total` active hours between `first_seen_ms` and
/// `last_seen_ms` is enough for novelty findings.
pub fn is_mature(
    active_hours_total: u32,
    first_seen_ms: i64,
    last_seen_ms: i64,
    min_active_hours: u32,
    min_days: f64,
) -> bool {
    active_hours_total >= min_active_hours
        && (last_seen_ms - first_seen_ms) as f64 >= min_days * DAY_MS as f64
}

/// One tracked value (an endpoint or an origin at one level). Packed to 4-byte alignment: 20
/// bytes instead of 24, for the up to 112 of them an identity holds (read fields by copy).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, packed(4))]
pub struct Entry {
    pub hash: u64,
    /// Decayed number of events that used it.
    pub weight: f32,
    /// The hour index when first seen (low [`Entry::HOUR_BITS`] bits: hours to 2089, later
    /// ones saturate), the distinct UTC days it was used on (the next 11 bits, saturating at
    /// 2047), which with the first and last use give the value's period whatever its calls per
    /// use (least-privilege reports), and (the top bit, endpoints only) whether a call of it
    /// named no resource a policy can name ([`crate::baseline::resources`]). One word for all
    /// keeps the entry at 20 bytes.
    first: u32,
    /// Hour index when last seen.
    pub last_hour: u32,
}

impl Entry {
    pub const HOUR_BITS: u32 = 20;
    const HOUR_MASK: u32 = (1 << Entry::HOUR_BITS) - 1;
    pub const MAX_DAYS: u16 = (1 << 11) - 1;
    const ANY_RESOURCE: u32 = 1 << 31;

    pub fn new(hash: u64, weight: f32, first_hour: u32, last_hour: u32, days: u16) -> Entry {
        let mut e = Entry {
            hash,
            weight,
            first: first_hour.min(Entry::HOUR_MASK),
            last_hour,
        };
        e.set_days(days);
        e
    }

    /// Hour index when first seen.
    pub fn first_hour(&self) -> u32 {
        self.first & Entry::HOUR_MASK
    }

    /// Distinct UTC days it was used on (0: unknown, restored from a snapshot older than
    /// format 4).
    pub fn days(&self) -> u16 {
        ((self.first >> Entry::HOUR_BITS) & u32::from(Entry::MAX_DAYS)) as u16
    }

    pub fn set_days(&mut self, days: u16) {
        let days = u32::from(days.min(Entry::MAX_DAYS));
        self.first =
            (self.first & (Entry::HOUR_MASK | Entry::ANY_RESOURCE)) | (days << Entry::HOUR_BITS);
    }

    /// True when the endpoint must be granted on every resource: a call named none a policy
    /// can name, or more than the state keeps.
    pub fn any_resource(&self) -> bool {
        self.first & Entry::ANY_RESOURCE != 0
    }

    pub fn set_any_resource(&mut self) {
        self.first |= Entry::ANY_RESOURCE;
    }
}

/// A bounded set of values with the identity's own rate of meeting new ones.
///
/// The novelty rate is counted per active hour, not per event: a busy identity is not more
/// surprised by a new value than a quiet one just because it makes more calls.
#[derive(Debug, Clone, Default)]
pub struct ValueSet {
    pub entries: Vec<Entry>,
    /// Decayed number of active hours in which a value at this level was seen at all.
    pub active_hours: f32,
    /// Decayed number of those hours in which at least one value was new.
    pub novel_hours: f32,
    pub(crate) seen_this_hour: bool,
    pub(crate) novel_this_hour: bool,
    /// New values met in the current hour (the first carries the surprise; more are enumeration).
    pub new_this_hour: u16,
}

impl ValueSet {
    /// Looks up `hash`; on a hit bumps it and returns `true`.
    pub fn touch(&mut self, hash: u64, hour: u32, weight: f32) -> bool {
        self.touch_at(hash, hour, weight).is_some()
    }

    /// As [`ValueSet::touch`], returning the entry's index on a hit.
    pub fn touch_at(&mut self, hash: u64, hour: u32, weight: f32) -> Option<usize> {
        self.seen_this_hour = true;
        let i = self.entries.iter().position(|e| e.hash == hash)?;
        let e = &mut self.entries[i];
        e.weight += weight;
        if hour / 24 != e.last_hour / 24 {
            e.set_days(e.days().saturating_add(1));
        }
        e.last_hour = hour;
        Some(i)
    }

    /// Probability, under this identity's history, that an active hour brings a new value.
    pub fn p_new(&self, prior_novel: f64, prior_seen: f64) -> f64 {
        stats::beta_predictive(
            f64::from(self.novel_hours),
            f64::from(self.active_hours),
            prior_novel,
            prior_seen,
        )
    }

    /// True when a new value has already been met in the current hour.
    pub fn novel_this_hour(&self) -> bool {
        self.novel_this_hour
    }

    /// Adds a new value, forgetting the least used one when `cap` is reached; returns its index.
    pub fn insert(&mut self, hash: u64, hour: u32, weight: f32, cap: usize) -> usize {
        self.seen_this_hour = true;
        self.novel_this_hour = true;
        self.new_this_hour = self.new_this_hour.saturating_add(1);
        let entry = Entry::new(hash, weight, hour, hour, 1);
        if self.entries.len() < cap {
            // Grown by doubling up to the cap and no further: most identities use a value or
            // two per level, and a million of them must not each hold room for four.
            if self.entries.len() == self.entries.capacity() {
                let want = (self.entries.len() * 2).clamp(1, cap);
                self.entries.reserve_exact(want - self.entries.len());
            }
            self.entries.push(entry);
            self.entries.len() - 1
        } else {
            let victim = self.least_used().unwrap_or(0);
            self.entries[victim] = entry;
            victim
        }
    }

    /// The index of the value to forget first: the lightest, then the least recently used.
    fn least_used(&self) -> Option<usize> {
        self.entries
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| {
                a.weight
                    .total_cmp(&b.weight)
                    .then(a.last_hour.cmp(&b.last_hour))
            })
            .map(|(i, _)| i)
    }

    /// Closes an hour: counts it in the novelty rate (when `count`), then decays by `factor`.
    fn close_hour(&mut self, factor: f32, count: bool) {
        if self.seen_this_hour && count {
            self.active_hours += 1.0;
            if self.novel_this_hour {
                self.novel_hours += 1.0;
            }
        }
        self.seen_this_hour = false;
        self.novel_this_hour = false;
        self.new_this_hour = 0;
        if factor < 1.0 {
            self.active_hours *= factor;
            self.novel_hours *= factor;
            for e in &mut self.entries {
                e.weight *= factor;
            }
        }
    }

    /// Forgets values, least used first (as [`ValueSet::insert`] chooses them), until at most
    /// `cap` remain: a smaller cap in a changed model applies to restored state too.
    pub fn trim_to(&mut self, cap: usize) {
        while self.entries.len() > cap.max(1) {
            let victim = self.least_used().expect("more entries than the cap");
            self.entries.remove(victim);
        }
    }

    pub fn get(&self, hash: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.hash == hash)
    }

    /// The most used values, heaviest first.
    pub fn top(&self, n: usize) -> Vec<Entry> {
        let mut v = self.entries.clone();
        v.sort_by(|a, b| {
            let (aw, bw, ah, bh) = (a.weight, b.weight, a.hash, b.hash);
            bw.total_cmp(&aw).then(ah.cmp(&bh))
        });
        v.truncate(n);
        v
    }
}

/// Expected hourly volume by hour of day, separately for weekdays and weekends.
#[derive(Debug, Clone)]
pub struct Seasonality {
    pub mean: [f32; 48],
    pub updates: [u16; 48],
    /// Mean over all hours, the figure a thinly observed slot is shrunk towards.
    pub overall: f32,
    /// Variance / mean of hourly counts around their seasonal mean, pooled as a ratio of sums
    /// (squared deviations over means), so idle hours, where both are near zero, do not dilute
    /// the burstiness of the hours that matter.
    pub dispersion: f32,
    pub(crate) sq_dev: f32,
    pub(crate) mean_mass: f32,
    pub(crate) pooled: u32,
}

impl Seasonality {
    fn new(prior_dispersion: f32) -> Seasonality {
        Seasonality {
            mean: [0.0; 48],
            updates: [0; 48],
            overall: 0.0,
            dispersion: prior_dispersion,
            sq_dev: prior_dispersion,
            mean_mass: 1.0,
            pooled: 0,
        }
    }

    pub fn slot(hour: i64) -> usize {
        let hod = hour.rem_euclid(24) as usize;
        if is_weekend(hour) { 24 + hod } else { hod }
    }

    /// Expected count for `hour` and how many observations back it. A weekend slot with little
    /// history borrows the weekday figure rather than guessing zero. The slot mean is raised
    /// towards the identity's overall hourly mean by `shrink_hours` pseudo-observations, so a
    /// bursty identity whose slots are thinly observed is not judged against a mean of zero.
    pub fn expected(&self, hour: i64, shrink_hours: f64) -> (f64, u16) {
        let mut s = Self::slot(hour);
        let mut m = f64::from(self.mean[s]);
        if s >= 24 && self.updates[s] < 3 {
            s -= 24;
            m = m.max(f64::from(self.mean[s]));
        }
        let n = self.updates[s];
        let shrunk = (f64::from(n.min(60)) * m + shrink_hours * f64::from(self.overall))
            / (f64::from(n.min(60)) + shrink_hours);
        (shrunk.max(m), n)
    }

    fn update(&mut self, hour: i64, count: f32, min_alpha: f32) {
        let s = Self::slot(hour);
        let n = self.updates[s];
        let alpha = (1.0 / (f32::from(n) + 1.0)).max(min_alpha);
        let m = self.mean[s];
        if n >= 2 {
            // A running mean at first (the prior counts as one hour), then an EWMA with the
            // baseline half-life: bursty identities must not wait weeks to be known as bursty.
            self.pooled = self.pooled.saturating_add(1);
            let a = (1.0 / (self.pooled as f32 + 1.0)).max(min_alpha / 24.0);
            // Winsorised at five standard deviations of the current model, so one skipped
            // run of a big job does not make every later spike look ordinary.
            let dev = ((count - m) * (count - m)).min(25.0 * m.max(1.0) * self.dispersion);
            self.sq_dev += a * (dev - self.sq_dev);
            self.mean_mass += a * (m.max(0.05) - self.mean_mass);
            self.dispersion = (self.sq_dev / self.mean_mass.max(0.05)).clamp(1.0, 1e6);
        }
        self.mean[s] = m + alpha * (count - m);
        self.updates[s] = n.saturating_add(1);
        self.overall += (alpha / 24.0).max(min_alpha / 24.0) * (count - self.overall);
    }
}

/// A tumbling window of recent calls (denied bursts, enumeration).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub start_ms: i64,
    pub events: u32,
    pub hits: u32,
    /// Surprise already reported for this window, so a finding repeats only when it grows.
    pub fired_bits: f32,
}

impl Window {
    /// Moves to a new window if `now` is past this one.
    pub fn roll(&mut self, now: i64, len_ms: i64) {
        if now >= self.start_ms + len_ms || now < self.start_ms {
            *self = Window {
                start_ms: now,
                ..Window::default()
            };
        }
    }
}

/// Everything driftwatch knows about one identity.
#[derive(Debug, Clone)]
pub struct Profile {
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub events: u64,
    /// Lifetime number of clock hours with activity (not decayed): the maturity measure.
    pub active_hours_total: u32,
    /// Decayed count of active hours, and of those that fell in a cold hour of day.
    pub active_hours: f32,
    pub cold_hours: f32,
    /// Average gap between consecutive active hours, in hours (EWMA).
    pub mean_gap_hours: f32,
    pub(crate) last_active_hour: i64,
    /// Current clock hour and what it has seen so far.
    pub hour: i64,
    pub hour_requests: u32,
    pub hour_bytes_out: u64,
    pub hour_fired: HourFired,
    pub endpoints: ValueSet,
    pub origins: [ValueSet; 6],
    /// Active hours per hour of week (decayed by halving at saturation).
    pub hour_of_week: [u8; 168],
    pub requests: Seasonality,
    /// Log-normal model of hourly bytes out, over hours that moved bytes.
    pub log_bytes_mean: f32,
    pub log_bytes_var: f32,
    pub byte_hours: u16,
    /// Decayed counts of calls and denied calls.
    pub calls: f32,
    pub denied: f32,
    /// Decayed count of endpoints new to this identity (the enumeration baseline).
    pub new_endpoints: f32,
    pub denied_window: Window,
    pub enum_window: Window,
    /// Use after the declared expiry has been reported (once per identity).
    pub expiry_reported: bool,
    /// Where its current silence stands in the dormancy lifecycle, and what its last event
    /// showed of it ([`lifecycle`]).
    pub lifecycle: lifecycle::Lifecycle,
    /// The networks and clients of its workload-bound sessions ([`pin`]).
    pub pins: pin::Pins,
    /// The resources its actions used, for least-privilege policies ([`resources`]). Not kept
    /// in cold summaries.
    pub resources: resources::Resources,
    /// The permissions its actions were checked for (GCP), likewise.
    pub permissions: resources::Permissions,
    /// Lifetime active hours since maturity, and those at a cold hour of day: what this identity
    /// adds to the fleet's rate of off-schedule hours ([`Fleet::active_hours`]). Not kept in
    /// cold summaries: an identity that wakes counts afresh.
    pub mature_hours: MatureHours,
}

/// An hour of day against an identity's daily rhythm ([`Profile::off_rhythm`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffRhythm {
    /// Hours from the nearest hour of day the identity is usually active at.
    pub hours_away: u8,
    /// Active hours on record at its cold hours of day, and at all hours.
    pub cold_hours: f64,
    pub all_hours: f64,
    /// The share of its active hours on record at this hour of day, each spread over its
    /// neighbours by a one-hour kernel: near its usual hours, or where it strayed before, this is
    /// not small; far from them it is next to nothing.
    pub density: f64,
}

/// Active hours counted since an identity matured, and those at one of its cold hours of day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatureHours {
    pub active: u32,
    pub cold: u32,
}

/// Findings already reported in the current hour, so each fires once (or again when it grows).
#[derive(Debug, Clone, Copy, Default)]
pub struct HourFired {
    pub volume_bits: f32,
    pub bytes_bits: f32,
    /// The exact tail is recomputed only when the count has grown past this.
    pub volume_next_check: u32,
    pub bytes_next_check: u64,
    pub unusual_hour: bool,
}

impl Profile {
    pub fn new(time_ms: i64, prior_dispersion: f32) -> Profile {
        Profile {
            first_seen_ms: time_ms,
            last_seen_ms: time_ms,
            events: 0,
            active_hours_total: 0,
            active_hours: 0.0,
            cold_hours: 0.0,
            mean_gap_hours: 0.0,
            last_active_hour: i64::MIN,
            hour: hour_index(time_ms),
            hour_requests: 0,
            hour_bytes_out: 0,
            hour_fired: HourFired::default(),
            endpoints: ValueSet::default(),
            origins: Default::default(),
            hour_of_week: [0; 168],
            requests: Seasonality::new(prior_dispersion),
            log_bytes_mean: 0.0,
            log_bytes_var: 0.0,
            byte_hours: 0,
            calls: 0.0,
            denied: 0.0,
            new_endpoints: 0.0,
            denied_window: Window::default(),
            enum_window: Window::default(),
            expiry_reported: false,
            lifecycle: lifecycle::Lifecycle::default(),
            pins: pin::Pins::default(),
            resources: resources::Resources::default(),
            permissions: resources::Permissions::default(),
            mature_hours: MatureHours::default(),
        }
    }

    /// True when the identity has enough history for novelty findings.
    pub fn is_mature(&self, min_active_hours: u32, min_days: f64) -> bool {
        is_mature(
            self.active_hours_total,
            self.first_seen_ms,
            self.last_seen_ms,
            min_active_hours,
            min_days,
        )
    }

    /// How much history backs the baseline, 0..=1 (for alerts).
    pub fn maturity(&self, min_active_hours: u32, min_days: f64) -> f64 {
        let h = f64::from(self.active_hours_total) / f64::from(min_active_hours.max(1));
        let d =
            (self.last_seen_ms - self.first_seen_ms) as f64 / (min_days.max(1e-9) * DAY_MS as f64);
        h.min(d).clamp(0.0, 1.0)
    }

    /// Advances the profile to the clock hour of `time_ms`, closing the hours in between.
    /// Late events (earlier hour) are counted in the current hour: baselines never go back.
    ///
    /// Novelty rates count only hours closed with `count_novelty` set: during warm-up every
    /// value is new by definition, and counting that would blind the identity for weeks.
    pub fn advance_to(&mut self, time_ms: i64, half_life_hours: f64, count_novelty: bool) -> bool {
        let h = hour_index(time_ms);
        if h <= self.hour {
            return false;
        }
        let min_alpha = (1.0 - stats::decay(24.0, half_life_hours)) as f32;
        // Close the current hour.
        if self.hour_requests > 0 {
            self.close_active_hour();
        }
        self.requests
            .update(self.hour, self.hour_requests as f32, min_alpha);
        if self.hour_bytes_out > 0 {
            self.update_bytes(self.hour_bytes_out, min_alpha);
        }
        // Quiet hours in between teach the seasonal model what "nothing" looks like (at most a
        // week of them: beyond that every slot has been told already).
        let gap = h - self.hour;
        for q in 1..gap.min(169) {
            self.requests.update(self.hour + q, 0.0, min_alpha);
        }
        let factor = stats::decay(gap as f64, half_life_hours) as f32;
        self.endpoints.close_hour(factor, count_novelty);
        for o in &mut self.origins {
            o.close_hour(factor, count_novelty);
        }
        self.active_hours *= factor;
        self.cold_hours *= factor;
        self.calls *= factor;
        self.denied *= factor;
        self.new_endpoints *= factor;
        self.hour = h;
        self.hour_requests = 0;
        self.hour_bytes_out = 0;
        self.hour_fired = HourFired::default();
        true
    }

    fn close_active_hour(&mut self) {
        self.active_hours_total = self.active_hours_total.saturating_add(1);
        self.active_hours += 1.0;
        if self.last_active_hour != i64::MIN {
            let gap = (self.hour - self.last_active_hour) as f32;
            self.mean_gap_hours = if self.active_hours_total <= 2 {
                gap
            } else {
                self.mean_gap_hours + 0.05 * (gap - self.mean_gap_hours)
            };
        }
        self.last_active_hour = self.hour;
        let slot = hour_of_week(self.hour);
        if self.hour_of_week[slot] == u8::MAX {
            for c in &mut self.hour_of_week {
                *c /= 2;
            }
        }
        self.hour_of_week[slot] += 1;
    }

    fn update_bytes(&mut self, bytes: u64, min_alpha: f32) {
        let x = (bytes as f32).ln_1p();
        let n = self.byte_hours;
        let alpha = (1.0 / (f32::from(n) + 1.0)).max(min_alpha);
        let d = x - self.log_bytes_mean;
        self.log_bytes_mean += alpha * d;
        self.log_bytes_var = (1.0 - alpha) * (self.log_bytes_var + alpha * d * d);
        self.byte_hours = n.saturating_add(1);
    }

    /// Share of observed days on which the identity was active around this hour of day
    /// (the hour itself and its neighbours, weighted 1-2-1), from the hour-of-week profile.
    pub fn hour_of_day_share(&self, hour: i64) -> f64 {
        let h = hour.rem_euclid(24) as usize;
        smoothed_share(|k| self.active_hours_at(k), h, self.days_seen())
    }

    /// Active hours on record at hour of day `h` (UTC), summed over the days of the week.
    fn active_hours_at(&self, h: usize) -> f64 {
        (0..7)
            .map(|d| f64::from(self.hour_of_week[d * 24 + h]))
            .sum()
    }

    /// Days between the first and the latest event, at least one.
    fn days_seen(&self) -> f64 {
        ((self.last_seen_ms - self.first_seen_ms) as f64 / DAY_MS as f64).max(1.0)
    }

    /// Where `hour`'s hour of day stands in the identity's daily rhythm, from its record of
    /// active hours by hour of day: `None` before it has an active hour of day (one with a
    /// share of days of at least `cold_share`).
    pub fn off_rhythm(&self, hour: i64, cold_share: f64) -> Option<OffRhythm> {
        let counts: [f64; 24] = std::array::from_fn(|h| self.active_hours_at(h));
        // Usual hours of day: a share of days of at least `cold_share`, counted over at least
        // `1 / cold_share` days, so that one stray of a young identity does not make its hour
        // usual (one night in five days is a 20% share, and no habit).
        let days = self.days_seen().max(1.0 / cold_share.max(1e-3));
        let active: [bool; 24] =
            std::array::from_fn(|h| smoothed_share(|k| counts[k], h, days) >= cold_share);
        let distance = |h: usize| -> Option<u8> {
            (0..24)
                .filter(|&a| active[a])
                .map(|a| {
                    let d = (h + 24 - a) % 24;
                    d.min(24 - d) as u8
                })
                .min()
        };
        let h = hour.rem_euclid(24) as usize;
        let hours_away = distance(h)?;
        // The share of its active hours that falls at hour of day `h`, each active hour on record
        // spread over its neighbours by a kernel of one hour (habits drift by an hour; a job
        // that ran at 02:10 for weeks may run at 03:05): a kernel density on the circle.
        let kernel: [f64; 24] = std::array::from_fn(|d| {
            let d = d.min(24 - d) as f64;
            (-d * d / 2.0).exp()
        });
        let kernel_sum: f64 = kernel.iter().sum();
        let all: f64 = counts.iter().sum();
        let density = if all > 0.0 {
            (0..24)
                .map(|k| counts[k] * kernel[(h + 24 - k) % 24])
                .sum::<f64>()
                / kernel_sum
                / all
        } else {
            0.0
        };
        let cold = (0..24).filter(|&k| !active[k]).map(|k| counts[k]).sum();
        Some(OffRhythm {
            hours_away,
            cold_hours: cold,
            all_hours: all,
            density,
        })
    }

    /// Bytes this profile's value sets hold on the heap (as allocated, see [`alloc_bytes`]),
    /// plus the profile itself.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Profile>()
            + std::iter::once(&self.endpoints)
                .chain(&self.origins)
                .map(|o| alloc_bytes(o.entries.capacity() * std::mem::size_of::<Entry>()))
                .sum::<usize>()
            + self.pins.heap_bytes()
            + self.resources.heap_bytes()
            + self.permissions.heap_bytes()
    }

    /// Number of origin levels.
    pub const LEVELS: usize = LEVELS.len();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_hour_zero_is_thursday_midnight() {
        assert_eq!(hour_of_week(0), 72);
        assert!(!is_weekend(0));
        assert!(is_weekend(48)); // Saturday 1970-01-03
    }

    #[test]
    fn value_set_stays_within_its_cap_and_keeps_the_heaviest() {
        let mut s = ValueSet::default();
        for i in 0..100u64 {
            if !s.touch(i % 7, 0, 1.0) {
                s.insert(i % 7, 0, 1.0, 4);
            }
        }
        for i in 1000..1100u64 {
            if !s.touch(i, 0, 1.0) {
                s.insert(i, 0, 1.0, 4);
            }
        }
        assert_eq!(s.entries.len(), 4);
    }

    #[test]
    fn novelty_rate_is_per_active_hour_and_decays() {
        let mut p = Profile::new(0, 2.0);
        for h in 0..100i64 {
            p.advance_to(h * HOUR_MS, 24.0 * 21.0, true);
            p.hour_requests += 50;
            if !p.endpoints.touch(1, h as u32, 1.0) {
                p.endpoints.insert(1, h as u32, 1.0, 8);
            }
        }
        p.advance_to(100 * HOUR_MS, 24.0 * 21.0, true);
        let p_new = p.endpoints.p_new(0.5, 0.5);
        assert!(p_new < 0.02, "one novel hour in 100: {p_new}");
    }

    #[test]
    fn seasonality_learns_a_nightly_job() {
        let mut p = Profile::new(0, 2.0);
        for day in 0..21i64 {
            for h in [1i64, 2] {
                let t = (day * 24 + h) * HOUR_MS;
                p.advance_to(t, 24.0 * 21.0, true);
                p.hour_requests += 100;
            }
        }
        p.advance_to(21 * 24 * HOUR_MS, 24.0 * 21.0, true);
        let (noon, _) = p.requests.expected(21 * 24 + 12 + 24 * 2, 0.0);
        let (night, _) = p.requests.expected(21 * 24 + 1 + 24 * 2, 0.0);
        assert!(noon < 1.0 && night > 50.0, "noon {noon} night {night}");
        assert!(p.hour_of_day_share(12) < 0.01);
        assert!(p.hour_of_day_share(1) > 0.5);
    }
}
