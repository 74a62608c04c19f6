//! The normalised access event every decoder produces and every later stage consumes.
//!
//! An [`AccessEvent`] is what one log record says about one call made by one identity: who
//! (principal and credential), what (action and resource), how it went (outcome), from where
//! (origin) and how much (volume), at which event time. Strings are owned so an event can cross
//! threads and outlive the buffer it was decoded from; nothing secret is ever stored here (see
//! [`crate::redact`]).

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

/// Which decoder produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    Cloudtrail,
    K8sAudit,
    GcpAudit,
    Native,
}

impl SourceFormat {
    /// Stable lower-case name used in metrics, summaries and the native schema.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Cloudtrail => "cloudtrail",
            SourceFormat::K8sAudit => "k8s-audit",
            SourceFormat::GcpAudit => "gcp-audit",
            SourceFormat::Native => "native",
        }
    }

    /// The provider a revocation command must be sent to.
    pub fn provider(self) -> &'static str {
        match self {
            SourceFormat::Cloudtrail => "aws",
            SourceFormat::K8sAudit => "kubernetes",
            SourceFormat::GcpAudit => "gcp",
            SourceFormat::Native => "generic",
        }
    }
}

/// What kind of identity a principal key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalType {
    /// An AWS IAM role, keyed by the role ARN whatever session used it.
    AwsRole,
    /// An AWS IAM user (long-lived access keys).
    AwsUser,
    /// The AWS account root user.
    AwsRoot,
    /// An AWS service acting on the account's behalf (`invokedBy`).
    AwsService,
    /// A federated or otherwise unclassified AWS identity.
    AwsOther,
    /// A Kubernetes service account (`system:serviceaccount:NS:NAME`).
    K8sServiceAccount,
    /// A Kubernetes node (`system:node:NAME`).
    K8sNode,
    /// Any other Kubernetes user (system components, humans, anonymous).
    K8sUser,
    /// A GCP service account (`...gserviceaccount.com`).
    GcpServiceAccount,
    /// Any other GCP principal.
    GcpUser,
    /// Declared by a native record.
    Other,
}

impl PrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::AwsRole => "aws_role",
            PrincipalType::AwsUser => "aws_user",
            PrincipalType::AwsRoot => "aws_root",
            PrincipalType::AwsService => "aws_service",
            PrincipalType::AwsOther => "aws_other",
            PrincipalType::K8sServiceAccount => "k8s_service_account",
            PrincipalType::K8sNode => "k8s_node",
            PrincipalType::K8sUser => "k8s_user",
            PrincipalType::GcpServiceAccount => "gcp_service_account",
            PrincipalType::GcpUser => "gcp_user",
            PrincipalType::Other => "other",
        }
    }

    /// A Kubernetes identity (of the cluster whose audit log names it): a service account, a
    /// node or another Kubernetes user.
    pub fn is_kubernetes(self) -> bool {
        matches!(
            self,
            PrincipalType::K8sServiceAccount | PrincipalType::K8sNode | PrincipalType::K8sUser
        )
    }

    /// Parses the names written by [`PrincipalType::as_str`]; unknown names map to `Other`.
    pub fn parse(s: &str) -> PrincipalType {
        match s {
            "aws_role" => PrincipalType::AwsRole,
            "aws_user" => PrincipalType::AwsUser,
            "aws_root" => PrincipalType::AwsRoot,
            "aws_service" => PrincipalType::AwsService,
            "aws_other" => PrincipalType::AwsOther,
            "k8s_service_account" => PrincipalType::K8sServiceAccount,
            "k8s_node" => PrincipalType::K8sNode,
            "k8s_user" => PrincipalType::K8sUser,
            "gcp_service_account" => PrincipalType::GcpServiceAccount,
            "gcp_user" => PrincipalType::GcpUser,
            _ => PrincipalType::Other,
        }
    }
}

/// What a revocation would target: the credential used, never its secret value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credential {
    pub id: String,
    /// e.g. `aws_access_key`, `aws_session_key`, `k8s_token`, `gcp_service_account_key`.
    pub kind: &'static str,
    /// When a temporary credential was issued: an AWS session's
    /// `sessionContext.attributes.creationDate` (what `aws:TokenIssueTime` compares).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_ms: Option<i64>,
    /// The caller id a policy scoped to this one session names (`aws:userid`): an assumed-role
    /// session's `principalId`, `AROA…:SESSION`; kept only with that shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_user_id: Option<String>,
}

/// Where a call came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Origin {
    /// The caller's IP address when the record has one.
    pub ip: Option<IpAddr>,
    /// False when the address was asserted by the client (e.g. `X-Forwarded-For`) or absent.
    pub ip_trusted: bool,
    /// A non-address source such as `AWS Internal` or `lambda.amazonaws.com`.
    pub service: Option<String>,
    pub asn: Option<u32>,
    pub country: Option<String>,
    pub user_agent: Option<String>,
    pub vpc_endpoint: Option<String>,
    /// Workload the credential is bound to or was issued for: pod, node, instance, cluster.
    pub workload: Workload,
}

/// Attributes of the workload a credential belongs to, when the record carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub node: Option<String>,
    pub pod: Option<String>,
    /// The bound pod's uid (Kubernetes `authentication.kubernetes.io/pod-uid`), kept only with
    /// a UUID's shape.
    pub pod_uid: Option<String>,
    /// AWS instance id or other workload instance identifier.
    pub instance: Option<String>,
}

impl Workload {
    /// True when the credential is bound to a specific running workload, so that use from a
    /// network the workload never used is a strong sign of theft.
    pub fn is_bound(&self) -> bool {
        self.pod.is_some() || self.instance.is_some()
    }
}

/// How the call went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub success: bool,
    /// Provider error code or HTTP status, when the call failed.
    pub error_code: Option<String>,
    /// Authorisation refused (AccessDenied, 401/403, PERMISSION_DENIED).
    pub denied: bool,
}

/// How much the call moved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Volume {
    pub requests: u32,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
}

impl Default for Volume {
    fn default() -> Self {
        Volume {
            requests: 1,
            bytes_in: None,
            bytes_out: None,
        }
    }
}

/// Where the raw record can be found again: a source (file or topic/partition), a position, and
/// for an element of a container record (a CloudTrail `Records` document, a Kubernetes
/// `EventList`, a JSON array) its index within the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RawRef {
    /// Shared by every event of a file or partition: cloning it is a reference count, not a copy.
    pub source: Arc<str>,
    /// Line number (0 for a whole-document file) or Kafka offset within `source`.
    pub position: u64,
    /// Index of the element within its container record, if it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub element: Option<u32>,
}

impl RawRef {
    /// A record at `position` of `source` (not an element of a container).
    pub fn new(source: Arc<str>, position: u64) -> RawRef {
        RawRef {
            source,
            position,
            element: None,
        }
    }

    /// The same record's element `index`.
    pub fn element(&self, index: u32) -> RawRef {
        RawRef {
            source: self.source.clone(),
            position: self.position,
            element: Some(index),
        }
    }

    /// The source as alerts and dead-letter files name it: `file.json#3` for an element.
    pub fn source_label(&self) -> String {
        match self.element {
            Some(i) => format!("{}#{i}", self.source),
            None => self.source.to_string(),
        }
    }
}

/// One call by one identity, normalised from any supported log format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessEvent {
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    pub format: SourceFormat,
    /// The record's own id (CloudTrail `eventID`, Kubernetes `auditID`, GCP `insertId`).
    pub event_id: Option<String>,
    /// Account, project or cluster, when known.
    pub tenant: Option<String>,
    /// The cloud region (or zone) the call was made in: CloudTrail's `awsRegion`, a GCP
    /// resource's location. Kept only with a region's shape.
    pub region: Option<String>,
    /// The identity whose baseline this event updates (see `schemas/README.md`).
    pub principal: String,
    pub principal_type: PrincipalType,
    pub credential: Option<Credential>,
    pub session_id: Option<String>,
    /// `service:operation`, e.g. `iam.amazonaws.com:CreateAccessKey`, `create:clusterrolebindings`.
    pub action: String,
    pub resource: Option<String>,
    /// The IAM permissions the provider checked for the call (GCP `authorizationInfo`), kept
    /// only with a permission's shape, at most [`MAX_PERMISSIONS`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    pub outcome: Outcome,
    pub origin: Origin,
    pub volume: Volume,
    pub raw: RawRef,
}

/// Most permissions an event keeps (a Compute `instances.insert` checks about six).
pub const MAX_PERMISSIONS: usize = 16;

/// Longest string an event keeps from its record (bytes). Real principal keys (ARNs at most
/// 2,048 characters, Kubernetes names 253), actions, user agents and resource names fit; a
/// hostile record's megabyte string does not reach alerts, commands or baselines.
pub const MAX_FIELD_BYTES: usize = 2048;

/// `s` cut to at most `max` bytes on a character boundary, marked `…` when cut.
pub(crate) fn cut_to(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// As [`cut`], for a string that identifies something (a principal, an endpoint): the cut
/// keeps a fingerprint of the whole value, so two long values that share a prefix stay apart.
fn cut_keyed(s: &mut String, max: usize) {
    if s.len() > max {
        use std::hash::Hasher;
        let mut h = rustc_hash::FxHasher::default();
        h.write(s.as_bytes());
        let tag = format!("…#{:016x}", h.finish());
        let mut end = max.saturating_sub(tag.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(&tag);
    }
}

/// A Kubernetes principal key without its cluster: `prod-eu/system:serviceaccount:ns:sa` in
/// `prod-eu` is `system:serviceaccount:ns:sa` (see [`AccessEvent::place_in_cluster`]).
pub fn unqualified_principal<'k>(key: &'k str, cluster: Option<&str>) -> &'k str {
    cluster
        .and_then(|c| key.strip_prefix(c))
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(key)
}

impl AccessEvent {
    /// Places a Kubernetes event in `cluster` when its record named none (audit records never
    /// do; an EKS log group or the input's declaration does): the cluster becomes its
    /// workload's cluster and its tenant, and qualifies its principal key as `CLUSTER/USERNAME`,
    /// so two clusters' service accounts of the same name keep apart baselines, alerts, commands
    /// and idempotency keys. `cluster` has a cluster name's shape (checked where it is read).
    pub fn place_in_cluster(&mut self, cluster: &str) {
        if !self.principal_type.is_kubernetes() || self.origin.workload.cluster.is_some() {
            return;
        }
        debug_assert!(crate::redact::shape::cluster_name(cluster));
        self.origin.workload.cluster = Some(cluster.to_owned());
        if self.tenant.is_none() {
            self.tenant = Some(cluster.to_owned());
        }
        self.principal.insert(0, '/');
        self.principal.insert_str(0, cluster);
        cut_keyed(&mut self.principal, MAX_FIELD_BYTES);
    }

    /// The provider a revocation must be sent to: Kubernetes for a Kubernetes identity whatever
    /// log reported it (a GKE cluster's audit log comes as GCP audit records), else the log's.
    pub fn provider(&self) -> &'static str {
        if self.principal_type.is_kubernetes() {
            SourceFormat::K8sAudit.provider()
        } else {
            self.format.provider()
        }
    }

    /// Caps every string the event carries at `max` bytes (see [`MAX_FIELD_BYTES`]).
    pub fn cap_strings(&mut self, max: usize) {
        cut_keyed(&mut self.principal, max);
        cut_keyed(&mut self.action, max);
        for s in [&mut self.event_id, &mut self.tenant].into_iter().flatten() {
            cut_to(s, max);
        }
        for s in self.open_text() {
            cut_to(s, max);
        }
        if let Some(c) = &mut self.credential {
            cut_keyed(&mut c.id, max);
        }
    }

    /// Every optional string field without a shape of its own.
    fn open_text(&mut self) -> impl Iterator<Item = &mut String> {
        let o = &mut self.origin;
        let w = &mut o.workload;
        [
            &mut self.session_id,
            &mut self.resource,
            &mut self.outcome.error_code,
            &mut o.service,
            &mut o.country,
            &mut o.user_agent,
            &mut o.vpc_endpoint,
            &mut w.cluster,
            &mut w.namespace,
            &mut w.node,
            &mut w.pod,
            &mut w.instance,
        ]
        .into_iter()
        .flatten()
    }

    /// The decoder's boundary: caps every string (see [`cap_strings`](Self::cap_strings)), then
    /// keeps a field with a known shape only when it has that shape and passes every other
    /// string through [`crate::redact::scrub`], so no field, including one added later, can carry
    /// a secret into a baseline, alert, command or log line.
    ///
    /// - `event_id`: a UUID (CloudTrail `eventID`, Kubernetes `auditID`) is kept; anything else
    ///   is scrubbed.
    /// - `tenant`: a 12-digit AWS account or a GCP project id is kept; anything else scrubbed.
    /// - `credential`: an AWS access key id (`A[KS]IA` + 16), a GCP key id (40 hex) or a
    ///   Kubernetes `JTI=<uuid>`/`X509SHA256=<hex>` is kept; a value claiming one of those kinds
    ///   without its shape is not trusted as a credential and dropped; other kinds are scrubbed.
    /// - `principal`: scrubbed, without the high-entropy rule when a provider wrote it
    ///   ([`crate::redact::scrub_principal`]).
    /// - everything else (action, resource, origin and workload fields): scrubbed.
    pub fn sanitize(&mut self, max: usize) {
        use crate::redact::{scrub_principal, scrub_string, shape};
        self.cap_strings(max);
        scrub_principal(&mut self.principal);
        scrub_string(&mut self.action);
        if let Some(id) = &mut self.event_id
            && !shape::uuid(id)
        {
            scrub_string(id);
        }
        if let Some(t) = &mut self.tenant
            && !(shape::aws_account_id(t) || shape::gcp_project_id(t))
        {
            scrub_string(t);
        }
        if self
            .region
            .as_deref()
            .is_some_and(|r| !shape::cloud_region(r))
        {
            self.region = None;
        }
        let w = &mut self.origin.workload;
        if w.pod_uid.as_deref().is_some_and(|u| !shape::uuid(u)) {
            w.pod_uid = None;
        }
        for s in self.open_text() {
            scrub_string(s);
        }
        // A permission's shape can still hold a credential (`svc.AKIA....x`): those are dropped.
        self.permissions
            .retain(|p| shape::gcp_permission(p) && !crate::redact::looks_secret(p));
        self.permissions.truncate(MAX_PERMISSIONS);
        if let Some(c) = &mut self.credential {
            if c.session_user_id
                .as_deref()
                .is_some_and(|u| !shape::aws_session_user_id(u))
            {
                c.session_user_id = None;
            }
            let trusted = match c.kind {
                "aws_access_key" | "aws_session_key" => Some(shape::aws_access_key_id(&c.id)),
                "gcp_service_account_key" => Some(shape::gcp_key_id(&c.id)),
                "k8s_token" => Some(shape::k8s_credential_id(&c.id)),
                _ => None,
            };
            match trusted {
                Some(true) => {}
                Some(false) => self.credential = None,
                None => scrub_string(&mut c.id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_are_capped_and_long_keys_stay_distinct() {
        let mut a = AccessEvent {
            time_ms: 0,
            format: SourceFormat::Native,
            event_id: None,
            tenant: None,
            region: None,
            principal: format!("{}a", "p".repeat(1_000_000)),
            principal_type: PrincipalType::Other,
            credential: None,
            session_id: None,
            action: "s3:GetObject".into(),
            resource: Some("é".repeat(5000)),
            permissions: Vec::new(),
            outcome: Outcome::default(),
            origin: Origin::default(),
            volume: Volume::default(),
            raw: RawRef::default(),
        };
        let mut b = a.clone();
        b.principal = format!("{}b", "p".repeat(1_000_000));
        a.cap_strings(MAX_FIELD_BYTES);
        b.cap_strings(MAX_FIELD_BYTES);
        assert!(a.principal.len() <= MAX_FIELD_BYTES);
        assert_ne!(a.principal, b.principal, "distinct keys stay distinct");
        let r = a.resource.as_deref().unwrap();
        assert!(
            r.len() <= MAX_FIELD_BYTES && r.ends_with('…'),
            "{}",
            r.len()
        );
        assert_eq!(a.action, "s3:GetObject", "short strings are untouched");
    }
}
