//! Workload pins. A workload-bound credential (an EC2 instance-profile session, an ECS task's
//! role session, a pod-bound service-account token) belongs to one running workload, so its
//! first uses show that workload's network and client. [`Pins::observe`] remembers them per
//! session from the session's very first event, without waiting for the identity to warm up,
//! and reports a later use of the same session from a network *and* a client the session never
//! showed: the shape of credentials taken from an instance or pod and replayed elsewhere
//! (GuardDuty's InstanceCredentialExfiltration).
//!
//! A pod-bound token is pinned only from a cluster-internal address: a thief's first use from
//! outside must not become the pin the pod itself then seems to breach.
//!
//! What stays quiet, by construction:
//! - calls without a source address (an AWS service acting for the workload, `AWS Internal`);
//! - calls through a VPC endpoint from a private address: they come from inside the VPC;
//! - a new network with a known client (the same host's IPv6 address, a NAT change), or a new
//!   client from a known network (another agent on the same host): either is learnt.
//!
//! A session is pinned by its first workload-bound event (instance-delivered or instance-named,
//! a pod-bound token, an ECS task whose client says so); later events of the same session are
//! judged against the pin even when they do not say they are bound (a thief's client does not
//! announce the ECS runtime). A pin holds a few networks and clients as hashes, with the first of
//! each as a label for evidence, and learns the clients the workload uses through VPC endpoints.
//! A session idle for [`PIN_IDLE_MS`] is forgotten; an identity pins at most [`MAX_PINS`] live
//! sessions at once, and sessions beyond them are not pinned (never evicting a live pin, which
//! would let a busy role's sessions forget each other in turn).

use std::hash::Hasher;

use rustc_hash::FxHasher;

use super::origin::{self, Level};
use crate::config::model::BaselineConfig;
use crate::event::AccessEvent;

/// Live sessions an identity keeps pins for (an autoscaling group's role has one per instance).
pub const MAX_PINS: usize = 64;
/// Networks and clients one pin remembers.
pub const PIN_VALUES: usize = 4;
/// A session unused this long is forgotten. A live instance or pod calls all day (the SSM
/// agent every few minutes) and keeps its pin; instance and task credentials expire within
/// hours, so a session silent for a day has ended.
pub const PIN_IDLE_MS: i64 = super::DAY_MS;

/// The networks and clients one workload-bound session has been used from (about 180 bytes
/// with its labels).
#[derive(Debug, Clone, PartialEq)]
pub struct Pin {
    /// Hash of the session (AWS session ARN, Kubernetes namespace/pod).
    pub key: u64,
    pub since_ms: i64,
    pub last_ms: i64,
    pub networks: Recent,
    pub clients: Recent,
    /// Networks a breach was reported for: one replay is one finding, however the thief
    /// alternates between a few networks.
    pub reported: Recent,
    /// The first network and client, for evidence.
    pub network_label: Box<str>,
    pub client_label: Box<str>,
}

impl Pin {
    /// A pin of `key` first used at `t` from `network` with `client`.
    pub fn new(key: u64, t: i64, network: (u64, &str), client: (u64, &str)) -> Pin {
        Pin {
            key,
            since_ms: t,
            last_ms: t,
            networks: Recent::of(network.0),
            clients: Recent::of(client.0),
            reported: Recent::default(),
            network_label: network.1.into(),
            client_label: client.1.into(),
        }
    }

    /// Reports a breach from `network`, once.
    fn breach(
        &mut self,
        workload: &str,
        network: u64,
        ev: &AccessEvent,
        cfg: &BaselineConfig,
        client: String,
        outside: Option<&str>,
    ) -> PinBreach {
        self.reported.add(network);
        PinBreach {
            workload: workload.to_owned(),
            since_ms: self.since_ms,
            pinned_network: self.network_label.to_string(),
            pinned_client: self.client_label.to_string(),
            network: network_label(ev, cfg),
            client,
            outside_provider: outside.map(str::to_owned),
        }
    }
}

/// The last [`PIN_VALUES`] distinct values seen, oldest replaced first.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Recent {
    values: [u64; PIN_VALUES],
    len: u8,
}

impl Recent {
    fn of(v: u64) -> Recent {
        let mut r = Recent::default();
        r.add(v);
        r
    }

    pub fn values(&self) -> &[u64] {
        &self.values[..usize::from(self.len)]
    }

    pub fn contains(&self, v: u64) -> bool {
        self.values().contains(&v)
    }

    /// Adds `v` unless it is already there, replacing the oldest value when full.
    pub fn add(&mut self, v: u64) {
        if self.contains(v) {
            return;
        }
        if usize::from(self.len) == PIN_VALUES {
            self.values.rotate_left(1);
            self.values[PIN_VALUES - 1] = v;
        } else {
            self.values[usize::from(self.len)] = v;
            self.len += 1;
        }
    }
}

/// A workload-bound session used from a network and a client it never used.
#[derive(Debug, Clone, PartialEq)]
pub struct PinBreach {
    /// The workload the session is bound to (instance id, pod).
    pub workload: String,
    pub since_ms: i64,
    pub pinned_network: String,
    pub pinned_client: String,
    pub network: String,
    pub client: String,
    /// Set when the call came from outside the published ranges of the workload's cloud: where
    /// from (`outside aws`, or another provider's range).
    pub outside_provider: Option<String>,
}

/// An identity's pinned sessions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pins(pub Vec<Pin>);

impl Pins {
    /// Learns a workload-bound event and reports a breach of its session's pin; events that are
    /// not workload-bound, or carry no address, are ignored.
    ///
    /// `outside` names where the call came from when its address is outside the published ranges
    /// of the cloud the workload runs in (an instance credential used outside AWS): reported on
    /// the session's first such call from that network, whatever the pin knows.
    pub fn observe(
        &mut self,
        ev: &AccessEvent,
        cfg: &BaselineConfig,
        outside: impl FnOnce() -> Option<String>,
    ) -> Option<PinBreach> {
        let ip = ev.origin.ip?;
        let w = &ev.origin.workload;
        let bound = w.pod.as_deref().or(w.instance.as_deref());
        let key = session_key(ev)?;
        let t = ev.time_ms;
        self.0.retain(|p| t - p.last_ms < PIN_IDLE_MS);
        let existing = self.0.iter().position(|p| p.key == key);
        let client = client_hash(ev);
        if ev.origin.vpc_endpoint.is_some() && !origin::is_public(ip) {
            // From inside the VPC: no judgement, but the workload's client is learnt.
            if let Some(i) = existing {
                let pin = &mut self.0[i];
                pin.last_ms = pin.last_ms.max(t);
                pin.clients.add(client);
            }
            return None;
        }
        let network = network_hash(ev, cfg);
        let Some(i) = existing else {
            // Only a workload-bound event pins a session, and only while there is room. A pod
            // calls its API server from inside the cluster: a pod-bound token first seen from a
            // public address is not its workload's use (the unknown-network judgement is for
            // that), so it pins nothing the workload would later seem to breach.
            bound?;
            if w.pod.is_some() && origin::is_public(ip) {
                return None;
            }
            if self.0.len() >= MAX_PINS {
                return None;
            }
            if self.0.len() == self.0.capacity() {
                // Grown by doubling from one: most bound identities hold a session or two, and
                // `Vec`'s own first step (four pins) would cost them half a kilobyte.
                let want = (self.0.len() * 2).clamp(1, MAX_PINS);
                self.0.reserve_exact(want - self.0.len());
            }
            self.0.push(Pin::new(
                key,
                t,
                (network, &network_label(ev, cfg)),
                (client, &client_label(ev)),
            ));
            let pin = self.0.last_mut().expect("just pushed");
            let workload = workload_name(ev, bound);
            return outside()
                .map(|o| pin.breach(&workload, network, ev, cfg, client_label(ev), Some(&o)));
        };
        let pin = &mut self.0[i];
        pin.last_ms = pin.last_ms.max(t);
        if pin.reported.contains(network) {
            return None;
        }
        if let Some(o) = outside() {
            let workload = workload_name(ev, bound);
            return Some(pin.breach(&workload, network, ev, cfg, client_label(ev), Some(&o)));
        }
        match (pin.networks.contains(network), pin.clients.contains(client)) {
            (true, true) => None,
            (false, true) => {
                pin.networks.add(network);
                None
            }
            (true, false) => {
                pin.clients.add(client);
                None
            }
            (false, false) => {
                let workload = workload_name(ev, bound);
                Some(pin.breach(&workload, network, ev, cfg, client_label(ev), None))
            }
        }
    }

    /// Bytes allocated beyond the identity's profile.
    pub fn heap_bytes(&self) -> usize {
        super::alloc_bytes(self.0.capacity() * std::mem::size_of::<Pin>())
            + self
                .0
                .iter()
                .map(|p| {
                    super::alloc_bytes(p.network_label.len())
                        + super::alloc_bytes(p.client_label.len())
                })
                .sum::<usize>()
    }
}

fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

/// The session a credential belongs to: the AWS session (role and session name, the session
/// name being the instance or task), else the pod a token is bound to, in its namespace.
fn session_key(ev: &AccessEvent) -> Option<u64> {
    let mut h = FxHasher::default();
    match (ev.session_id.as_deref(), ev.origin.workload.pod.as_deref()) {
        (Some(s), _) => h.write(s.as_bytes()),
        (None, Some(pod)) => {
            h.write(
                ev.origin
                    .workload
                    .namespace
                    .as_deref()
                    .unwrap_or("")
                    .as_bytes(),
            );
            h.write_u8(b'/');
            h.write(pod.as_bytes());
        }
        (None, None) => return None,
    }
    Some(h.finish())
}

/// The workload a session is bound to, as evidence names it: the instance, task or pod, else
/// the session name.
fn workload_name(ev: &AccessEvent, bound: Option<&str>) -> String {
    bound
        .or_else(|| ev.session_id.as_deref().and_then(|s| s.rsplit('/').next()))
        .unwrap_or_default()
        .to_owned()
}

/// The network a call came from: its VPC endpoint when it has one, else its address's network.
fn network_hash(ev: &AccessEvent, cfg: &BaselineConfig) -> u64 {
    match ev.origin.vpc_endpoint.as_deref() {
        Some(vpce) => hash_str(vpce),
        None => {
            let mut out = 0;
            origin::for_each_value(&ev.origin, cfg, |v| {
                if v.level == Level::Network {
                    out = v.hash;
                }
            });
            out
        }
    }
}

fn network_label(ev: &AccessEvent, cfg: &BaselineConfig) -> String {
    match ev.origin.vpc_endpoint.as_deref() {
        Some(vpce) => vpce.to_owned(),
        None => origin::label(&ev.origin, Level::Network, cfg),
    }
}

/// The client: the user agent's family and major version (`aws-sdk-go/1`, `aws-cli/2`,
/// `kubectl/1`), as the baseline's client level has it. A patch upgrade of the workload's own
/// SDK or agent (the SSM agent updates itself) is the same client; another tool is not.
fn client_label(ev: &AccessEvent) -> String {
    let (family, major) = origin::client_family(ev.origin.user_agent.as_deref().unwrap_or(""));
    if major.is_empty() {
        family.to_owned()
    } else {
        format!("{family}/{major}")
    }
}

/// `hash_str(&client_label(ev))`, without building the label (this runs on every call of a
/// bound session; the label is needed only when a pin is made or breached).
fn client_hash(ev: &AccessEvent) -> u64 {
    let (family, major) = origin::client_family(ev.origin.user_agent.as_deref().unwrap_or(""));
    if major.is_empty() {
        return hash_str(family);
    }
    let mut buf = [0u8; 128];
    let len = family.len() + 1 + major.len();
    if len > buf.len() {
        return hash_str(&client_label(ev));
    }
    buf[..family.len()].copy_from_slice(family.as_bytes());
    buf[family.len()] = b'/';
    buf[family.len() + 1..len].copy_from_slice(major.as_bytes());
    let mut h = FxHasher::default();
    h.write(&buf[..len]);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Model;
    use crate::decode::{Decoded, FormatHint, decode_one};
    use crate::event::RawRef;

    const T0: i64 = 1_722_586_964_000;

    /// A CloudTrail call by the instance-profile session of instance `i-0abc` of role `app`.
    fn call(t: i64, ip: &str, ua: &str, vpce: Option<&str>) -> AccessEvent {
        let vpce = vpce.map_or(String::new(), |v| format!(r#","vpcEndpointId":"{v}""#));
        let rec = format!(
            r#"{{"eventTime":"{}","eventSource":"ssm.amazonaws.com","eventName":"UpdateInstanceInformation",
            "sourceIPAddress":"{ip}","userAgent":"{ua}"{vpce},
            "userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/app/i-0abc1234def567890",
            "accessKeyId":"ASIAEXAMPLE","sessionContext":{{"sessionIssuer":{{"arn":"arn:aws:iam::111122223333:role/app"}},"ec2RoleDelivery":"2.0"}}}}}}"#,
            crate::decode::time::format_rfc3339_ms(t)
        );
        match decode_one(rec.as_bytes(), FormatHint::Auto, RawRef::default()) {
            Ok(Decoded::Event(e)) => *e,
            other => panic!("{other:?}"),
        }
    }

    const SSM: &str = "aws-sdk-go/1.44.260 (go1.20.5; linux; amd64) amazon-ssm-agent/3.2.1297.0";
    const CLI: &str = "aws-cli/2.15.0 Python/3.11.6 Linux/6.5.0 exe/x86_64.ubuntu.22";

    fn cfg() -> BaselineConfig {
        Model::embedded().baseline
    }

    #[test]
    fn the_client_hash_is_the_hash_of_the_client_label_without_building_it() {
        let long = format!("{}/1.0", "x".repeat(300));
        for ua in [
            SSM,
            CLI,
            "curl",
            "",
            "kubectl/v1.29.0 (linux/amd64)",
            long.as_str(),
        ] {
            let ev = call(T0, "54.12.3.4", ua, None);
            assert_eq!(client_hash(&ev), hash_str(&client_label(&ev)), "{ua}");
        }
    }

    #[test]
    fn a_session_replayed_from_another_network_with_another_client_breaches_its_pin_once() {
        let mut pins = Pins::default();
        assert_eq!(
            pins.observe(&call(T0, "54.12.3.4", SSM, None), &cfg(), || None),
            None
        );
        let b = pins
            .observe(
                &call(T0 + 20_000, "198.51.100.7", CLI, None),
                &cfg(),
                || None,
            )
            .expect("the first use elsewhere is a breach");
        assert_eq!(b.workload, "i-0abc1234def567890");
        assert_eq!(b.pinned_network, "54.12.3.0/24");
        assert_eq!(b.pinned_client, "aws-sdk-go/1");
        assert_eq!(
            (b.network.as_str(), b.client.as_str()),
            ("198.51.100.0/24", "aws-cli/2")
        );
        assert_eq!(
            pins.observe(
                &call(T0 + 30_000, "198.51.100.7", CLI, None),
                &cfg(),
                || None
            ),
            None,
            "reported once per network"
        );
        assert!(
            pins.observe(&call(T0 + 40_000, "203.0.113.9", CLI, None), &cfg(), || {
                None
            })
            .is_some(),
            "the pin did not learn the thief's client"
        );
    }

    #[test]
    fn the_workloads_own_changes_are_learnt_not_reported() {
        let mut pins = Pins::default();
        let c = cfg();
        assert_eq!(
            pins.observe(&call(T0, "54.12.3.4", SSM, None), &c, || None),
            None
        );
        // Another agent on the same host, then the host's IPv6 address with a known client.
        assert_eq!(
            pins.observe(&call(T0 + 1, "54.12.3.4", CLI, None), &c, || None),
            None
        );
        assert_eq!(
            pins.observe(&call(T0 + 2, "2600:1f14::5", CLI, None), &c, || None),
            None
        );
        // Through a VPC endpoint from inside the VPC, with yet another client.
        let boto = "Boto3/1.34.14 md/Botocore#1.34.14";
        assert_eq!(
            pins.observe(
                &call(T0 + 3, "10.0.1.7", boto, Some("vpce-0a1b")),
                &c,
                || None
            ),
            None
        );
        // An AWS service acting for the instance carries no address.
        assert_eq!(
            pins.observe(&call(T0 + 4, "ssm.amazonaws.com", boto, None), &c, || None),
            None
        );
        // A day later the session name is a new workload's.
        assert_eq!(
            pins.observe(
                &call(T0 + PIN_IDLE_MS + 5, "198.51.100.7", boto, None),
                &c,
                || None
            ),
            None
        );
    }

    #[test]
    fn an_identity_pins_a_bounded_number_of_live_sessions_and_never_evicts_one_in_use() {
        let mut pins = Pins::default();
        let session = |i: i64| format!("arn:aws:sts::1:assumed-role/app/i-{i:017x}");
        for i in 0..(MAX_PINS as i64 * 3) {
            let mut ev = call(T0 + i, "54.12.3.4", SSM, None);
            ev.session_id = Some(session(i));
            pins.observe(&ev, &cfg(), || None);
        }
        assert_eq!(pins.0.len(), MAX_PINS);
        // The first session is still pinned, so its thief is still caught.
        let mut thief = call(T0 + 1_000_000, "198.51.100.7", CLI, None);
        thief.session_id = Some(session(0));
        assert!(pins.observe(&thief, &cfg(), || None).is_some());
    }

    #[test]
    fn a_pinned_sessions_later_calls_are_judged_even_when_they_do_not_say_they_are_bound() {
        let mut pins = Pins::default();
        assert_eq!(
            pins.observe(&call(T0, "54.12.3.4", SSM, None), &cfg(), || None),
            None
        );
        // A thief's call of the same session whose record carries no workload binding.
        let mut thief = call(T0 + 1_000, "198.51.100.7", CLI, None);
        thief.origin.workload = Default::default();
        let b = pins
            .observe(&thief, &cfg(), || None)
            .expect("judged against the pin");
        assert_eq!(b.workload, "i-0abc1234def567890");
        // An unbound session with no pin is not pinned by it.
        let mut other = thief.clone();
        other.session_id = Some("arn:aws:sts::1:assumed-role/app/laptop".into());
        assert_eq!(pins.observe(&other, &cfg(), || None), None);
        assert_eq!(pins.0.len(), 1);
    }

    #[test]
    fn a_pod_token_is_pinned_only_from_inside_the_cluster() {
        let pod_call = |ip: &str, ua: &str| {
            let mut ev = call(T0, ip, ua, None);
            ev.session_id = None;
            ev.origin.workload = crate::event::Workload {
                namespace: Some("shop".into()),
                pod: Some("api-7d9f8b6c5-x2k4p".into()),
                ..Default::default()
            };
            ev
        };
        let kubectl = "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819";
        let app = "api/v1.4.2 (linux/amd64) kubernetes/$Format";
        let mut pins = Pins::default();
        // A thief's first use from outside pins nothing...
        assert_eq!(
            pins.observe(&pod_call("198.51.100.7", kubectl), &cfg(), || None),
            None
        );
        assert!(pins.0.is_empty());
        // ...the pod's own use does, and the thief's next use breaches it.
        assert_eq!(
            pins.observe(&pod_call("10.244.3.17", app), &cfg(), || None),
            None
        );
        let mut thief = pod_call("198.51.100.7", kubectl);
        thief.time_ms += 1000;
        assert!(pins.observe(&thief, &cfg(), || None).is_some());
    }

    #[test]
    fn a_client_seen_through_the_vpc_endpoint_is_the_workloads_own() {
        let mut pins = Pins::default();
        let c = cfg();
        let boto = "Boto3/1.34.14 md/Botocore#1.34.14";
        assert_eq!(
            pins.observe(&call(T0, "54.12.3.4", SSM, None), &c, || None),
            None
        );
        assert_eq!(
            pins.observe(
                &call(T0 + 1, "10.0.1.7", boto, Some("vpce-0a1b")),
                &c,
                || None
            ),
            None
        );
        // The application's first call through a NAT: a new network, but a known client.
        assert_eq!(
            pins.observe(&call(T0 + 2, "52.18.4.4", boto, None), &c, || None),
            None
        );
    }

    #[test]
    fn outside_the_clouds_ranges_is_reported_once_per_network_whatever_the_pin_knows() {
        let mut pins = Pins::default();
        let c = cfg();
        let outside = || Some("outside AWS's published ranges".to_owned());
        // The session's first call is already outside: reported.
        let b = pins.observe(&call(T0, "198.51.100.7", SSM, None), &c, outside);
        assert!(b.is_some_and(|b| b.outside_provider.is_some()));
        assert_eq!(
            pins.observe(&call(T0 + 1, "198.51.100.7", SSM, None), &c, outside),
            None
        );
        assert!(
            pins.observe(&call(T0 + 2, "203.0.113.9", SSM, None), &c, outside)
                .is_some()
        );
        // Back and forth between the two: nothing new.
        assert_eq!(
            pins.observe(&call(T0 + 3, "198.51.100.7", SSM, None), &c, outside),
            None
        );
    }
}
