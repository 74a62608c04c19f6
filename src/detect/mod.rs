//! detect: synchronous, per-identity detectors. [`observe`] has the identity's profile learn the
//! event ([`Profile::learn`]), then asks each signal in [`SIGNALS`] what was unusual about it.
//! A signal judges one thing, reads the [`Observation`] (the event, what the profile learned
//! from it, the fleet, the rules, the declared metadata) and the profile, and returns at most one
//! [`Finding`] with its evidence (baseline vs observed) and its surprise in bits. The only state a
//! signal changes is its own memory of what it already reported (so a finding fires once, or
//! again when it grows).
//!
//! Adding a signal means adding its file and a line in the `signals!` list that declares
//! [`SIGNALS`]; if it reports under a new
//! name, also a line in the `detectors!` list below, from which the [`Detector`] names, masks,
//! counters and metric labels are all derived.

mod after_expiry;
mod declared_network;
mod denied_burst;
mod dormant;
mod enumeration;
mod maintenance_window;
mod new_endpoint;
mod new_origin;
mod no_owner;
mod outside_workload;
mod past_rotation;
mod unusual_hour;
mod volume;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::baseline::{Fleet, Learned, Profile};
use crate::config::Rules;
use crate::config::inventory::IdentityMeta;
use crate::event::AccessEvent;

/// Declares [`Detector`] from one list of variants and the names alerts, metrics and summaries
/// use for them.
macro_rules! detectors {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// Every detector, by the name used in alerts (`finding_info.types`), metrics and
        /// summaries. The declaration order is the order alerts list them in.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Detector {
            $($(#[$doc])* $variant,)+
        }

        impl Detector {
            pub const ALL: &'static [Detector] = &[$(Detector::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Detector::$variant => $name,)+
                }
            }

            /// The detector named `name` ([`Detector::as_str`]).
            pub fn parse(name: &str) -> Option<Detector> {
                match name {
                    $($name => Some(Detector::$variant),)+
                    _ => None,
                }
            }
        }
        impl serde::Serialize for Detector {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

detectors! {
    /// A first call to an endpoint, weighed by the identity's own novelty rate and sensitivity.
    NewEndpoint => "new_endpoint",
    /// A first use of a network, ASN, country, client or workload.
    NewOrigin => "new_origin",
    /// A workload-bound credential used away from its workload or declared networks.
    OutsideWorkload => "credential_outside_workload",
    VolumeSpike => "volume_spike",
    BytesSpike => "bytes_spike",
    UnusualHour => "unusual_hour",
    DeniedBurst => "denied_burst",
    Enumeration => "enumeration",
    Dormant => "dormant_reactivation",
    AfterExpiry => "credential_after_expiry",
    /// Active with no owner declared in the inventory.
    NoOwner => "identity_without_owner",
    /// A credential older than its declared rotation period.
    PastRotation => "credential_past_rotation",
    /// Used outside its declared maintenance windows.
    OutsideMaintenance => "outside_maintenance_window",
}

// Alerts keep the detectors that contributed in a `u16` mask.
const _: () = assert!(Detector::COUNT <= 16, "Detector::bit needs a wider mask");

impl Detector {
    pub const COUNT: usize = Detector::ALL.len();

    /// This detector's bit in a set of detectors.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// One signal: judges one aspect of an observed event.
pub type Signal = fn(&mut Profile, &Observation<'_>) -> Option<Finding>;

/// Declares [`SIGNALS`] and [`run_signals`] from one list: the list as data (for tests and
/// documentation), and the calls written out, so the compiler can inline each check into the
/// per-event path instead of calling through pointers.
macro_rules! signals {
    ($($check:path,)+) => {
        /// Every signal, in the order their findings are reported (an alert's evidence lists
        /// them so).
        pub const SIGNALS: &[Signal] = &[$($check,)+];

        /// Runs every signal in [`SIGNALS`] order, collecting their findings.
        fn run_signals(p: &mut Profile, o: &Observation<'_>) -> Vec<Finding> {
            let mut out = Vec::new();
            $(
                if let Some(f) = $check(p, o) {
                    out.push(f);
                }
            )+
            out
        }
    };
}

signals! {
    dormant::check,
    after_expiry::check,
    no_owner::check,
    past_rotation::check,
    maintenance_window::check,
    unusual_hour::check,
    volume::requests,
    volume::bytes,
    new_endpoint::check,
    enumeration::check,
    outside_workload::check,
    declared_network::check,
    new_origin::check,
    denied_burst::check,
}

/// One deviation, explained.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub detector: Detector,
    /// Weighted surprise this finding adds to the identity's evidence.
    pub bits: f64,
    /// Probability of the observation under the identity's baseline.
    pub probability: f64,
    pub summary: String,
    pub baseline: Evidence,
    pub observed: Evidence,
    pub time_ms: i64,
    pub event_id: Option<String>,
}

/// One side of a finding's evidence (what the baseline expected, what was observed), kept as
/// compact JSON text: one allocation however many fields it has, so findings held in an
/// identity's risk state cost a few hundred bytes, not a tree of maps. Serialises as the JSON
/// it holds.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Evidence(Box<RawValue>);

impl Evidence {
    pub fn new(v: &Value) -> Evidence {
        Evidence(serde_json::value::to_raw_value(v).expect("a JSON value always serialises"))
    }

    /// Evidence read back from its text (a snapshot).
    ///
    /// # Errors
    /// The text is not JSON.
    pub fn parse(text: String) -> Result<Evidence, serde_json::Error> {
        RawValue::from_string(text).map(Evidence)
    }

    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// The evidence as a JSON value.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.0.get()).expect("evidence holds valid JSON")
    }

    /// Bytes allocated for the text.
    pub fn heap_bytes(&self) -> usize {
        crate::baseline::alloc_bytes(self.0.get().len())
    }
}

impl PartialEq for Evidence {
    fn eq(&self, other: &Evidence) -> bool {
        self.text() == other.text()
    }
}

/// What a signal judges: one event, what the identity's profile learned from it, and the
/// context the profile does not hold.
pub struct Observation<'a> {
    pub event: &'a AccessEvent,
    pub learned: &'a Learned,
    pub fleet: &'a Fleet,
    pub rules: &'a Rules,
    /// What the inventory declares about the identity.
    pub meta: Option<&'a IdentityMeta>,
}

impl Observation<'_> {
    /// A finding about this observation's event.
    fn finding(
        &self,
        detector: Detector,
        bits: f64,
        probability: f64,
        summary: String,
        baseline: Value,
        observed: Value,
    ) -> Finding {
        Finding {
            detector,
            bits,
            probability,
            summary,
            baseline: Evidence::new(&baseline),
            observed: Evidence::new(&observed),
            time_ms: self.event.time_ms,
            event_id: self.event.event_id.clone(),
        }
    }
}

/// Updates `p` with `ev` and returns what was unusual about it, in [`SIGNALS`] order.
///
/// `is_new` is true for the identity's first event. Time only moves forward: an event older than
/// the profile's current hour is counted in that hour.
pub fn observe(
    p: &mut Profile,
    fleet: &Fleet,
    rules: &Rules,
    ev: &AccessEvent,
    is_new: bool,
) -> Vec<Finding> {
    let learned = p.learn(ev, fleet, rules, is_new);
    judge(p, &learned, fleet, rules, ev)
}

/// What was unusual about `ev`, given what `p` just learned from it ([`Profile::learn`]), in
/// [`SIGNALS`] order.
pub fn judge(
    p: &mut Profile,
    learned: &Learned,
    fleet: &Fleet,
    rules: &Rules,
    ev: &AccessEvent,
) -> Vec<Finding> {
    let meta = rules.inventory.get(&ev.principal);
    let o = Observation {
        event: ev,
        learned,
        fleet,
        rules,
        meta: meta.as_deref(),
    };
    let mut findings = run_signals(p, &o);
    // A production identity's deviations weigh more (the model's environment_weights).
    let weight = (meta.as_deref())
        .and_then(|m| m.environment.as_deref())
        .and_then(|e| rules.model.detectors.inventory.environment_weights.get(e));
    if let Some(w) = weight {
        for f in &mut findings {
            f.bits *= w;
        }
    }
    findings
}

/// Below this surprise a burst finding (denied calls, enumeration) is not worth reporting: one
/// in sixteen windows would show it.
const MIN_WINDOW_BITS: f64 = 4.0;

/// A finding that grows within its window (hour, burst) is reported when its surprise (of
/// `prob`, capped at `max_bits`) first reaches `min_bits` and again each time it doubles;
/// returns the surprise not yet reported.
fn escalation(reported: &mut f32, prob: f64, max_bits: f64, min_bits: f64) -> Option<f64> {
    let bits = crate::baseline::stats::bits(prob, max_bits);
    let before = f64::from(*reported);
    if bits >= min_bits && bits >= 2.0 * before && bits > before {
        *reported = bits as f32;
        Some(bits - before)
    } else {
        None
    }
}

/// Bits removed from a value's surprise for each doubling of the identities already using it.
fn fleet_discount(users: u32, per_doubling: f64) -> f64 {
    (1.0 + f64::from(users)).log2() * per_doubling
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Building blocks of the signals' unit tests: an identity's history of events and what the
/// signals say about the next one.
#[cfg(test)]
mod testkit {
    use super::*;
    use crate::baseline::HOUR_MS;
    use crate::config::Model;
    use crate::decode::{Decoded, FormatHint, decode_one};
    use crate::event::RawRef;

    /// 2026-01-05T00:00:00Z, a Monday.
    pub const T0: i64 = 1_767_571_200_000;

    /// A native event of identity `who` with the fields of `extra` (JSON members).
    pub fn event(who: &str, t: i64, action: &str, extra: &str) -> AccessEvent {
        let sep = if extra.is_empty() { "" } else { "," };
        let rec = format!(
            r#"{{"time":{t},"event_id":"e-{t}","principal":{{"key":"{who}"}},"action":"{action}"{sep}{extra}}}"#
        );
        match decode_one(rec.as_bytes(), FormatHint::Auto, RawRef::default()) {
            Ok(Decoded::Event(e)) => *e,
            other => panic!("{other:?}: {rec}"),
        }
    }

    /// One identity observed event after event, with the fleet it lives in.
    pub struct Identity {
        pub profile: Profile,
        pub fleet: Fleet,
        pub rules: Rules,
        started: bool,
    }

    impl Identity {
        pub fn new(rules: Rules) -> Identity {
            Identity {
                profile: Profile::new(T0, 2.0),
                fleet: Fleet::new(10_000),
                rules,
                started: false,
            }
        }

        pub fn default_rules() -> Identity {
            Identity::new(Rules::new(Model::embedded()))
        }

        /// Observes one event; returns its findings.
        pub fn see(&mut self, ev: &AccessEvent) -> Vec<Finding> {
            if !self.started {
                self.profile = Profile::new(ev.time_ms, 2.0);
            }
            let is_new = !self.started;
            self.started = true;
            observe(&mut self.profile, &self.fleet, &self.rules, ev, is_new)
        }

        /// A routine: `per_hour` calls of `action` from `extra`, every hour from `from_hour` to
        /// `to_hour` (relative to [`T0`]) whose hour of day is in `hours_of_day`.
        pub fn routine(
            &mut self,
            who: &str,
            action: &str,
            extra: &str,
            (from_hour, to_hour): (i64, i64),
            hours_of_day: std::ops::Range<i64>,
            per_hour: i64,
        ) -> Vec<Finding> {
            let mut all = Vec::new();
            for h in from_hour..to_hour {
                if !hours_of_day.contains(&h.rem_euclid(24)) {
                    continue;
                }
                for k in 0..per_hour {
                    let t = T0 + h * HOUR_MS + k * (HOUR_MS / per_hour.max(1)) / 2;
                    all.extend(self.see(&event(who, t, action, extra)));
                }
            }
            all
        }
    }

    /// `hour` o'clock UTC on day `day` after [`T0`].
    pub fn at(day: i64, hour: i64) -> i64 {
        T0 + (day * 24 + hour) * HOUR_MS
    }

    /// An identity with ten ordinary days behind it: three calls an hour of `action` (with the
    /// fields of `extra`), 08:00 to 18:00 UTC, which raised nothing.
    pub fn established(who: &str, action: &str, extra: &str) -> Identity {
        let mut id = Identity::default_rules();
        let quiet = id.routine(who, action, extra, (0, 24 * 10), 8..18, 3);
        assert!(quiet.is_empty(), "an ordinary routine raised {quiet:?}");
        id
    }

    /// The findings of one detector.
    pub fn of(findings: &[Finding], detector: Detector) -> Vec<&Finding> {
        findings.iter().filter(|f| f.detector == detector).collect()
    }

    /// The detectors among `findings`.
    pub fn detectors(findings: &[Finding]) -> Vec<Detector> {
        findings.iter().map(|f| f.detector).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    #[test]
    fn detector_names_are_unique_and_masks_distinct() {
        let mut names: Vec<&str> = Detector::ALL.iter().map(|d| d.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Detector::COUNT);
        let mask = Detector::ALL.iter().fold(0u16, |m, d| {
            assert_eq!(m & d.bit(), 0);
            m | d.bit()
        });
        assert_eq!(mask.count_ones() as usize, Detector::COUNT);
    }

    #[test]
    fn a_routine_raises_nothing_and_findings_come_in_signal_order() {
        let mut id = established(
            "svc",
            "s3.amazonaws.com:GetObject",
            r#""origin":{"ip":"10.1.2.3","user_agent":"Boto3/1.34"}"#,
        );
        // Day 10, 03:00: a new endpoint from a new public network at a cold hour.
        let f = id.see(&event(
            "svc",
            at(10, 3),
            "iam.amazonaws.com:CreateAccessKey",
            r#""origin":{"ip":"198.51.100.7","user_agent":"curl/8.0"}"#,
        ));
        assert_eq!(
            detectors(&f),
            [
                Detector::UnusualHour,
                Detector::NewEndpoint,
                Detector::NewOrigin
            ]
        );
    }
}
