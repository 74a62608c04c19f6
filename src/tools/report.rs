//! `driftwatch report least-privilege`: per identity, the actions it used in a window of event
//! time (decayed use, first and last use, the resources it touched), read from the same state
//! `inspect` reads, and a policy scoped to them: an IAM policy document for AWS users and roles
//! (on the ARNs used), Kubernetes Roles in the namespaces used and a ClusterRole for
//! cluster-wide resources and non-resource URLs (restricted to the objects used where RBAC
//! allows) for service accounts. Pure functions of the engine; loading is `inspect`'s.
//!
//! With an inventory that declares `granted` permissions, each grant is judged against that use
//! ([`Grant`]): in use, unused (with a confidence that accounts for periodic jobs: each action's
//! period is learned from the distinct days it was used on), or undetermined; and identities with
//! enough unused grants get an OCSF finding ([`excess_finding`]).
//!
//! What the state cannot say is said, not guessed: an action whose calls named no resource a
//! policy can name, or more than the state keeps per action
//! ([`crate::baseline::resources`]), is granted on every resource (`Resource: "*"`, no
//! `resourceNames`); an identity whose endpoint set or permission memory is full
//! (`baseline.max_endpoints`, `baseline.max_resources`) or that is a cold summary may have
//! dropped its least used actions, and its report says `complete: false`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::baseline::fleet::Table;
use crate::baseline::resources::ANY;
use crate::baseline::{DAY_MS, Entry, HOUR_MS};
use crate::config::Inventory;
use crate::config::rules::Glob;
use crate::decide::stable_uuid;
use crate::engine::Engine;
use crate::event::PrincipalType;
use crate::tools::gcp_roles::{self, Catalogue, GcpRoles};
use crate::tools::inspect::{hour_ms, value_name};

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// One block per identity: its actions with their use.
    Table,
    /// The reports as a JSON array, policies included.
    Json,
    /// The IAM policy documents of AWS identities, one JSON document per identity.
    AwsIam,
    /// The RBAC objects of Kubernetes service accounts, as a JSON `List`.
    K8sRbac,
    /// The IAM policy bindings of GCP identities to the roles covering their use, one JSON
    /// document per identity (needs --gcp-roles).
    GcpIam,
    /// OCSF 1.1.0 Detection Findings (JSON Lines) for identities whose granted permissions
    /// exceed their use by the margin (needs an inventory that declares `granted`).
    Ocsf,
}

/// One action an identity used.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UsedAction {
    /// As driftwatch names it: `SERVICE:Operation` (AWS, GCP), `verb:resource` or `verb:/path`
    /// (Kubernetes).
    pub action: String,
    /// Decayed number of uses (`baseline.half_life_days`), not a lifetime count.
    pub weight: f64,
    pub first_used: String,
    pub last_used: String,
    /// Distinct UTC days it was used on (0: unknown, in state saved before this was kept).
    pub days_used: u16,
    /// Typical days between those days of use, when it was used on two or more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_days: Option<f64>,
    /// The resources it used in the window, as policies name them: ARNs (AWS), `namespace/name`
    /// or `namespace/*` (Kubernetes), resource names (GCP); `*` for calls that named none a
    /// policy can name, or when more were used than the state keeps per action. Empty when the
    /// state keeps none for it (saved before resources were kept, or `baseline.max_resources`
    /// is 0).
    pub resources: Vec<String>,
    /// The IAM permissions its calls were checked for (GCP `authorizationInfo`), when known.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
}

/// What one identity used, and the policy that grants exactly that.
#[derive(Debug, Clone, Serialize)]
pub struct LeastPrivilege {
    pub identity: String,
    pub provider: &'static str,
    pub identity_type: &'static str,
    pub window_days: f64,
    /// The identity's first event: how long it has been watched.
    pub observed_since: String,
    /// False when less used actions may have been dropped: the identity's endpoint set is at
    /// `baseline.max_endpoints`, or only a cold summary of it is kept.
    pub complete: bool,
    pub used: Vec<UsedAction>,
    /// An IAM policy document (AWS), or a list of RBAC objects (Kubernetes service accounts);
    /// absent where no mapping exists (GCP methods, other principals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
    /// The grants the inventory declares, each judged against use; absent when it declares
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted: Option<Vec<Grant>>,
    /// Actions used in the window that no grant covers (the inventory is out of date, or the
    /// calls were denied); only with declared grants.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ungranted: Vec<String>,
    /// The inventory's owner of the identity, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// GCP identities, with a role catalogue: the permissions used and the roles covering them
    /// ([`with_gcp_roles`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpRoles>,
}

impl LeastPrivilege {
    /// The grants judged unused.
    pub fn unused(&self) -> impl Iterator<Item = &Grant> {
        self.granted
            .iter()
            .flatten()
            .filter(|g| g.status == GrantStatus::Unused)
    }
}

/// What a declared grant's use says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Used, and not silent for long against its period.
    InUse,
    /// Silent long enough that it is no longer used, with at least the asked confidence.
    Unused,
    /// Never used in what the state remembers, but not watched long enough (or the identity's
    /// endpoint memory is incomplete) to say it is unused.
    Undetermined,
}

/// One declared grant (an inventory `granted` pattern) against observed use.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Grant {
    pub pattern: String,
    pub status: GrantStatus,
    /// The used actions it covers, as driftwatch names them (any time the state remembers).
    pub used_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
    /// Days without a use: since the last use, or since the identity was first seen.
    pub silent_days: f64,
    /// The period the silence is measured against: learned from the covered actions' days of
    /// use, or the prior (`--prior-period-days`, or the identity's longest learned period if
    /// longer) where none is known.
    pub period_days: f64,
    pub period_learned: bool,
    /// The probability that the grant is no longer used: for each covered action,
    /// `1 - exp(-silence / period)` (a use expected about once a period, none seen since), all
    /// of them together; for a grant never used, the same over the identity's whole history.
    pub unused_confidence: f64,
}

/// How grants are judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrantRule {
    /// `unused_confidence` at or above which a grant is unused.
    pub confidence: f64,
    /// The period assumed where none is learned.
    pub prior_period_days: f64,
}

impl Default for GrantRule {
    fn default() -> GrantRule {
        GrantRule {
            confidence: 0.95,
            prior_period_days: 30.0,
        }
    }
}

/// The typical days between an endpoint's days of use, when it was used on two or more.
pub fn period_days(e: &Entry) -> Option<f64> {
    let days = e.days();
    (days >= 2).then(|| {
        let last = e.last_hour;
        let span = f64::from(last / 24) - f64::from(e.first_hour() / 24);
        (span / f64::from(days - 1)).max(1.0)
    })
}

/// The names a grant pattern may use for `action`: driftwatch's own, and for CloudTrail
/// actions the IAM action (`s3.amazonaws.com:ListObjects` is `s3:ListBucket`). Lower case:
/// IAM action names are case-insensitive.
fn grant_names(action: &str) -> Vec<String> {
    let mut names = vec![action.to_ascii_lowercase()];
    if let Some((source, name)) = action.split_once(':')
        && let Some(prefix) = iam_prefix(source)
    {
        names.push(iam_action(prefix, name).to_ascii_lowercase());
    }
    names
}

/// Judges each of `patterns` against the identity's remembered endpoints (`(name, entry)`),
/// at `now_ms`; `first_seen_ms` starts the silence of a grant never used. `complete` is false
/// when the endpoint memory may have dropped actions (a grant with no covered action is then
/// undetermined, never unused).
pub fn judge_grants(
    patterns: &[String],
    endpoints: &[(String, Entry)],
    now_ms: i64,
    first_seen_ms: i64,
    complete: bool,
    rule: GrantRule,
) -> Vec<Grant> {
    let days = |ms: i64| (ms.max(0) as f64) / DAY_MS as f64;
    let longest = endpoints
        .iter()
        .filter_map(|(_, e)| period_days(e))
        .fold(0.0f64, f64::max);
    let prior = rule.prior_period_days.max(longest);
    let names: Vec<Vec<String>> = endpoints.iter().map(|(a, _)| grant_names(a)).collect();
    patterns
        .iter()
        .map(|pattern| {
            let glob = Glob::new(&pattern.to_ascii_lowercase());
            let covered: Vec<&(String, Entry)> = endpoints
                .iter()
                .zip(&names)
                .filter(|(_, n)| n.iter().any(|n| glob.matches(n)))
                .map(|(e, _)| e)
                .collect();
            let (silent, period, learned, confidence) = if covered.is_empty() {
                let silent = days(now_ms - first_seen_ms);
                (silent, prior, false, 1.0 - (-silent / prior).exp())
            } else {
                // Each covered action may still be in use; the grant is unused only if none is.
                let mut all_unused = 1.0;
                let (mut silent, mut period, mut learned) = (f64::MAX, prior, false);
                for (_, e) in &covered {
                    let s = days(now_ms - i64::from(e.last_hour) * HOUR_MS);
                    let p = period_days(e);
                    all_unused *= 1.0 - (-s / p.unwrap_or(prior)).exp();
                    if s < silent {
                        (silent, period, learned) = (s, p.unwrap_or(prior), p.is_some());
                    }
                }
                (silent, period, learned, all_unused)
            };
            let status = if covered.is_empty() && !complete {
                GrantStatus::Undetermined
            } else if confidence >= rule.confidence {
                GrantStatus::Unused
            } else if covered.is_empty() {
                GrantStatus::Undetermined
            } else {
                GrantStatus::InUse
            };
            let last = covered.iter().map(|(_, e)| e.last_hour).max();
            let mut used_by: Vec<String> = covered.iter().map(|(a, _)| a.clone()).collect();
            used_by.sort();
            Grant {
                pattern: pattern.clone(),
                status,
                used_by,
                last_used: last.map(hour_ms),
                silent_days: round2(silent),
                period_days: round2(period),
                period_learned: learned,
                unused_confidence: (confidence * 1000.0).round() / 1000.0,
            }
        })
        .collect()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// CloudTrail's event source to the IAM service prefix, where they differ.
fn iam_prefix(source: &str) -> Option<&str> {
    let service = source.strip_suffix(".amazonaws.com")?;
    Some(match service {
        "monitoring" => "cloudwatch",
        "email" => "ses",
        "elasticloadbalancing" => "elasticloadbalancing",
        "es" => "es",
        other => other.split('.').next_back().unwrap_or(other),
    })
}

/// The IAM action a CloudTrail event needs, where its name is not the action's.
fn iam_action(prefix: &str, name: &str) -> String {
    let name = match (prefix, name) {
        ("s3", "ListObjects" | "ListObjectsV2" | "HeadBucket") => "ListBucket",
        ("s3", "HeadObject") => "GetObject",
        ("s3", "ListObjectVersions") => "ListBucketVersions",
        (
            "s3",
            "CreateMultipartUpload" | "UploadPart" | "UploadPartCopy" | "CompleteMultipartUpload",
        ) => "PutObject",
        ("s3", "ListMultipartUploads") => "ListBucketMultipartUploads",
        ("s3", "ListParts") => "ListMultipartUploadParts",
        _ => name,
    };
    format!("{prefix}:{name}")
}

/// The resource an S3 `action` is authorised on, from the scope of a call that named `r`:
/// object actions on the bucket's objects (`arn:aws:s3:::BUCKET/*`), bucket actions
/// (`ListBucket`, `GetBucketLocation`, ...) on the bucket itself.
fn s3_resource(action: &str, r: &str) -> String {
    let Some(rest) = r.strip_prefix("arn:").and_then(|r| r.split_once(":s3:::")) else {
        return r.to_owned();
    };
    let (partition, path) = rest;
    let bucket = path.split('/').next().unwrap_or(path);
    let name = action.split_once(':').map_or(action, |(_, n)| n);
    if name.contains("Object")
        || matches!(name, "AbortMultipartUpload" | "ListMultipartUploadParts")
    {
        format!("arn:{partition}:s3:::{bucket}/*")
    } else {
        format!("arn:{partition}:s3:::{bucket}")
    }
}

/// An IAM policy document allowing exactly the AWS actions among `used`, each on the resources
/// it used: one statement per distinct set of resources, `*` only for actions that named none
/// (or more than the state keeps).
pub fn iam_policy(used: &[UsedAction]) -> Option<Value> {
    let mut on: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for u in used {
        let Some((source, name)) = u.action.split_once(':') else {
            continue;
        };
        let Some(prefix) = iam_prefix(source) else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let action = iam_action(prefix, name);
        let resources = on.entry(action.clone()).or_default();
        if u.resources.is_empty() {
            resources.insert(ANY.into());
        }
        resources.extend(u.resources.iter().map(|r| s3_resource(&action, r)));
    }
    if on.is_empty() {
        return None;
    }
    let mut statements: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (action, resources) in on {
        let resources = if resources.contains(ANY) {
            vec![ANY.to_owned()]
        } else {
            resources.into_iter().collect()
        };
        statements.entry(resources).or_default().push(action);
    }
    let statements: Vec<Value> = statements
        .into_iter()
        .enumerate()
        .map(|(i, (resources, actions))| {
            let resource = match resources.as_slice() {
                [one] => json!(one),
                many => json!(many),
            };
            json!({
                "Sid": format!("ObservedUse{}", i + 1),
                "Effect": "Allow",
                "Action": actions,
                "Resource": resource,
            })
        })
        .collect();
    Some(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// The API group of a Kubernetes resource, for the common ones; `*` when unknown.
fn api_group(resource: &str) -> &'static str {
    match resource {
        "pods"
        | "services"
        | "secrets"
        | "configmaps"
        | "namespaces"
        | "nodes"
        | "serviceaccounts"
        | "events"
        | "endpoints"
        | "persistentvolumeclaims"
        | "persistentvolumes"
        | "replicationcontrollers"
        | "resourcequotas"
        | "limitranges" => "",
        "deployments" | "replicasets" | "statefulsets" | "daemonsets" | "controllerrevisions" => {
            "apps"
        }
        "jobs" | "cronjobs" => "batch",
        "roles" | "rolebindings" | "clusterroles" | "clusterrolebindings" => {
            "rbac.authorization.k8s.io"
        }
        "ingresses" | "networkpolicies" | "ingressclasses" => "networking.k8s.io",
        "leases" => "coordination.k8s.io",
        "horizontalpodautoscalers" => "autoscaling",
        "poddisruptionbudgets" => "policy",
        "customresourcedefinitions" => "apiextensions.k8s.io",
        "tokenreviews" => "authentication.k8s.io",
        "subjectaccessreviews" | "selfsubjectaccessreviews" => "authorization.k8s.io",
        "certificatesigningrequests" => "certificates.k8s.io",
        "storageclasses" => "storage.k8s.io",
        _ => "*",
    }
}

/// Kubernetes resources that belong to no namespace (a Role cannot grant them).
fn cluster_scoped(resource: &str) -> bool {
    matches!(
        resource,
        "nodes"
            | "namespaces"
            | "persistentvolumes"
            | "clusterroles"
            | "clusterrolebindings"
            | "customresourcedefinitions"
            | "storageclasses"
            | "certificatesigningrequests"
            | "ingressclasses"
            | "tokenreviews"
            | "subjectaccessreviews"
            | "selfsubjectaccessreviews"
    )
}

/// Verbs RBAC can restrict to named objects (`resourceNames`).
fn nameable(verb: &str) -> bool {
    matches!(verb, "get" | "update" | "patch" | "delete")
}

/// One RBAC rule's target: API group, resource, and the object names it is restricted to
/// (none: every object).
type RuleKey = (&'static str, String, Option<BTreeSet<String>>);

/// Rules for one Role (a namespace) or the ClusterRole, as target to verbs.
type Rules = BTreeMap<RuleKey, BTreeSet<String>>;

/// RBAC rules from `verb:resource[/sub]` and `verb:/path` actions and the objects they touched:
/// per namespace (`namespace/name`, `namespace/*`), and cluster-wide (cluster-scoped
/// resources, calls across all namespaces, non-resource URLs). Named objects restrict the rule
/// to them (`resourceNames`) where RBAC allows it. An action the state knows no objects of is
/// placed in `home`, the service account's own namespace.
fn rbac_rules(used: &[UsedAction], home: &str) -> (BTreeMap<String, Vec<Value>>, Vec<Value>) {
    let mut namespaces: BTreeMap<String, Rules> = BTreeMap::new();
    let mut cluster = Rules::new();
    let mut urls: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for u in used {
        let Some((verb, what)) = u.action.split_once(':') else {
            continue;
        };
        if what.starts_with('/') {
            urls.entry(what).or_default().insert(verb);
            continue;
        }
        let base = what.split('/').next().unwrap_or(what);
        let group = api_group(base);
        // Where it was used: namespace (None: cluster-wide) to the objects named there (None:
        // every object, or none named).
        let mut places: BTreeMap<Option<String>, Option<BTreeSet<String>>> = BTreeMap::new();
        let mut place = |ns: Option<&str>, name: Option<&str>| {
            let names = places
                .entry(ns.map(str::to_owned))
                .or_insert_with(|| Some(BTreeSet::new()));
            match (name, names.as_mut()) {
                (Some(n), Some(set)) if nameable(verb) => {
                    set.insert(n.to_owned());
                }
                _ => *names = None,
            }
        };
        let scoped = cluster_scoped(base);
        if u.resources.is_empty() {
            place((!scoped).then_some(home), None);
        }
        for r in &u.resources {
            match (scoped, r.split_once('/')) {
                (_, _) if r == ANY => place(None, None),
                (true, _) => place(None, Some(r.as_str())),
                (false, Some((ns, "*"))) => place(Some(ns), None),
                (false, Some((ns, name))) => place(Some(ns), Some(name)),
                (false, None) => place(None, None),
            }
        }
        for (ns, names) in places {
            let rules = match ns {
                Some(ns) => namespaces.entry(ns).or_default(),
                None => &mut cluster,
            };
            rules
                .entry((group, what.to_owned(), names))
                .or_default()
                .insert(verb.to_owned());
        }
    }
    let rules = |m: Rules| -> Vec<Value> {
        m.into_iter()
            .map(|((group, resource, names), verbs)| {
                let mut rule =
                    json!({"apiGroups": [group], "resources": [resource], "verbs": verbs});
                if let Some(names) = names {
                    rule["resourceNames"] = json!(names);
                }
                rule
            })
            .collect()
    };
    let mut cluster_rules = rules(cluster);
    cluster_rules.extend(
        urls.into_iter()
            .map(|(url, verbs)| json!({"nonResourceURLs": [url], "verbs": verbs})),
    );
    let namespaced = namespaces
        .into_iter()
        .map(|(ns, m)| (ns, rules(m)))
        .collect();
    (namespaced, cluster_rules)
}

/// RBAC objects granting a service account exactly what it used: a Role in each namespace it
/// used namespaced resources in, a ClusterRole for the rest; each with its binding.
pub fn rbac_policy(username: &str, used: &[UsedAction]) -> Option<Value> {
    let sa = username.rsplit('/').next().unwrap_or(username);
    let mut parts = sa.strip_prefix("system:serviceaccount:")?.splitn(2, ':');
    let (namespace, name) = (parts.next()?, parts.next()?);
    let (namespaced, cluster) = rbac_rules(used, namespace);
    let object_name = format!("{name}-observed");
    let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": namespace}]);
    let rbac = "rbac.authorization.k8s.io/v1";
    let mut items = Vec::new();
    for (ns, rules) in namespaced {
        items.push(json!({
            "apiVersion": rbac, "kind": "Role",
            "metadata": {"name": object_name, "namespace": ns},
            "rules": rules,
        }));
        items.push(json!({
            "apiVersion": rbac, "kind": "RoleBinding",
            "metadata": {"name": object_name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": object_name},
            "subjects": subject,
        }));
    }
    if !cluster.is_empty() {
        let cluster_name = format!("{namespace}-{object_name}");
        items.push(json!({
            "apiVersion": rbac, "kind": "ClusterRole",
            "metadata": {"name": cluster_name},
            "rules": cluster,
        }));
        items.push(json!({
            "apiVersion": rbac, "kind": "ClusterRoleBinding",
            "metadata": {"name": cluster_name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_name},
            "subjects": subject,
        }));
    }
    (!items.is_empty()).then(|| json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// The report for `key`, over the `window_days` before the newest event the state has seen,
/// with its declared grants judged by `rule` when `inventory` declares some; `None` when the
/// engine does not track it.
pub fn least_privilege(
    engine: &Engine,
    key: &str,
    window_days: f64,
    inventory: &Inventory,
    rule: GrantRule,
) -> Option<LeastPrivilege> {
    least_privilege_at(engine, key, window_days, inventory, rule, None)
}

/// As [`least_privilege`], judged at event time `now` (the newest event the state has seen
/// when `None`): the service judges at its partitions' watermark, so an identity whose
/// partition is read behind the others does not look silent.
pub fn least_privilege_at(
    engine: &Engine,
    key: &str,
    window_days: f64,
    inventory: &Inventory,
    rule: GrantRule,
    now: Option<i64>,
) -> Option<LeastPrivilege> {
    let m = &engine.rules().model;
    let tracked = engine.tracked(key)?;
    let s = tracked.view(m.detectors.volume.prior_dispersion as f32);
    let p = &s.profile;
    let now = now
        .or_else(|| engine.newest_event_ms())
        .unwrap_or(p.last_seen_ms);
    let since_hour = (now - (window_days * DAY_MS as f64) as i64).div_euclid(HOUR_MS);
    let endpoints: Vec<(String, Entry)> = p
        .endpoints
        .entries
        .iter()
        .map(|e| (value_name(engine, Table::Endpoints, e.hash), *e))
        .collect();
    let mut used: Vec<UsedAction> = endpoints
        .iter()
        .filter(|(_, e)| i64::from(e.last_hour) >= since_hour)
        .map(|(action, e)| UsedAction {
            action: action.clone(),
            weight: (f64::from(e.weight) * 100.0).round() / 100.0,
            first_used: hour_ms(e.first_hour()),
            last_used: hour_ms(e.last_hour),
            days_used: e.days(),
            period_days: period_days(e).map(round2),
            resources: if e.any_resource() {
                vec![ANY.to_owned()]
            } else {
                p.resources
                    .of(e.hash, since_hour)
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            },
            permissions: p
                .permissions
                .of(e.hash, since_hour)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        })
        .collect();
    used.sort_by(|a, b| a.action.cmp(&b.action));
    let last = &p.lifecycle.last;
    let identity_type = last.identity_type;
    let policy = match identity_type {
        PrincipalType::AwsRole | PrincipalType::AwsUser => iam_policy(&used),
        PrincipalType::K8sServiceAccount => rbac_policy(key, &used),
        _ => None,
    };
    let complete = !tracked.is_cold()
        && p.endpoints.entries.len() < m.baseline.max_endpoints
        && !p.permissions.is_full(m.baseline.max_resources);
    let meta = inventory.get(key);
    let granted = meta
        .as_deref()
        .filter(|m| !m.granted.is_empty())
        .map(|m| judge_grants(&m.granted, &endpoints, now, p.first_seen_ms, complete, rule));
    let ungranted = match &granted {
        Some(grants) => used
            .iter()
            .filter(|u| !grants.iter().any(|g| g.used_by.contains(&u.action)))
            .map(|u| u.action.clone())
            .collect(),
        None => Vec::new(),
    };
    Some(LeastPrivilege {
        identity: key.to_owned(),
        provider: last.provider,
        identity_type: identity_type.as_str(),
        window_days,
        observed_since: crate::decode::time::format_rfc3339_ms(p.first_seen_ms),
        complete,
        used,
        policy,
        granted,
        ungranted,
        owner: meta.and_then(|m| m.owner.clone()),
        gcp: None,
    })
}

/// Gives a GCP identity's report the permissions it used (recorded, or mapped from method names
/// by `catalogue`), the catalogue's roles covering them and, as its policy, the bindings of
/// those roles to it. Other identities are left as they are.
pub fn with_gcp_roles(r: &mut LeastPrivilege, catalogue: &Catalogue) {
    if r.provider != "gcp" {
        return;
    }
    let mut permissions = BTreeSet::new();
    let mut derived = BTreeMap::new();
    let mut unmapped = Vec::new();
    for u in &r.used {
        if !u.permissions.is_empty() {
            permissions.extend(u.permissions.iter().cloned());
        } else if let Some(p) = catalogue.derive(&u.action, &u.resources) {
            derived.insert(u.action.clone(), p.clone());
            permissions.insert(p);
        } else {
            unmapped.push(u.action.clone());
        }
    }
    let cover = catalogue.cover(&permissions);
    r.policy = gcp_roles::bindings(&gcp_roles::member(&r.identity), &cover);
    r.gcp = Some(GcpRoles {
        permissions: permissions.into_iter().collect(),
        derived,
        unmapped,
        cover,
    });
}

/// Reports for every identity (by key), or only `only`.
pub fn least_privilege_all(
    engine: &Engine,
    only: Option<&str>,
    window_days: f64,
    inventory: &Inventory,
    rule: GrantRule,
) -> Vec<LeastPrivilege> {
    let mut keys = Vec::new();
    engine.for_each_identity(|k, _| {
        if only.is_none_or(|o| o == k) {
            keys.push(k.to_owned());
        }
    });
    keys.sort();
    keys.iter()
        .filter_map(|k| least_privilege(engine, k, window_days, inventory, rule))
        .collect()
}

/// An OCSF 1.1.0 Detection Finding (Low) for an identity with at least `min_unused` unused
/// grants, at `now_ms` of event time; `None` below the margin. Its uid names the identity and
/// the unused grants, so the same excess reported by each periodic run is one finding.
pub fn excess_finding(r: &LeastPrivilege, now_ms: i64, min_unused: usize) -> Option<Value> {
    let unused: Vec<&Grant> = r.unused().collect();
    if unused.is_empty() || unused.len() < min_unused {
        return None;
    }
    let granted = r.granted.as_ref().map_or(0, Vec::len);
    let patterns: Vec<&str> = unused.iter().map(|g| g.pattern.as_str()).collect();
    let mut parts = vec!["least-privilege", r.identity.as_str()];
    parts.extend(&patterns);
    let uid = stable_uuid(&parts);
    let title = format!(
        "Granted permissions exceed use: {} of {granted} grants of {} unused",
        unused.len(),
        r.identity
    );
    let desc = format!(
        "{} is granted {} that it has not used (confidence at least {:.2} each, periods learned from its use where known); {} actions used in the last {} days.",
        r.identity,
        patterns.join(", "),
        unused
            .iter()
            .map(|g| g.unused_confidence)
            .fold(1.0, f64::min),
        r.used.len(),
        r.window_days
    );
    let mut resource = json!({"uid": r.identity, "type": r.identity_type});
    if let Some(o) = &r.owner {
        resource["owner"] = json!({"name": o});
    }
    let evidences: Vec<Value> = unused
        .iter()
        .map(|g| json!({"data": {"detector": "least_privilege", "grant": g}}))
        .collect();
    Some(json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "time": now_ms,
        "severity_id": 2,
        "severity": "Low",
        "message": title,
        "metadata": {
            "version": crate::emit::ocsf::OCSF_VERSION,
            "uid": uid,
            "product": {"name": "driftwatch", "vendor_name": "driftwatch", "version": env!("CARGO_PKG_VERSION")},
            "log_name": "least_privilege",
        },
        "finding_info": {
            "uid": uid,
            "title": title,
            "desc": desc,
            "types": ["excess_privilege"],
            "analytic": {"name": "driftwatch least privilege from observed use", "type_id": 2, "type": "Behavioral"},
        },
        "resources": [resource],
        "evidences": evidences,
        "unmapped": {
            "provider": r.provider,
            "granted": granted,
            "unused": patterns,
            "ungranted": r.ungranted,
            "window_days": r.window_days,
            "complete": r.complete,
        },
    }))
}

/// The reports as text: one block per identity.
pub fn table(reports: &[LeastPrivilege]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for r in reports {
        let _ = writeln!(
            out,
            "{} ({} {}): {} action(s) used in the last {} days{}",
            r.identity,
            r.provider,
            r.identity_type,
            r.used.len(),
            r.window_days,
            if r.complete {
                ""
            } else {
                " (incomplete: less used actions may have been dropped)"
            }
        );
        for u in &r.used {
            let period = u
                .period_days
                .map_or_else(String::new, |p| format!("  every ~{p} days"));
            let _ = writeln!(
                out,
                "  {:<50} weight {:>8.2}  first {}  last {}  on {} day(s){period}",
                u.action, u.weight, u.first_used, u.last_used, u.days_used
            );
            if !u.resources.is_empty() {
                let _ = writeln!(out, "    on {}", u.resources.join(", "));
            }
            if !u.permissions.is_empty() {
                let _ = writeln!(out, "    checked for {}", u.permissions.join(", "));
            }
        }
        if let Some(g) = &r.gcp {
            for c in &g.cover.roles {
                let _ = writeln!(
                    out,
                    "  role {} ({} permissions) covers {}",
                    c.role,
                    c.grants,
                    c.covers.join(", ")
                );
            }
            for (action, p) in &g.derived {
                let _ = writeln!(out, "  mapped from its name: {action} -> {p}");
            }
            for a in &g.unmapped {
                let _ = writeln!(out, "  no permission known (not granted): {a}");
            }
            for p in &g.cover.uncovered {
                let _ = writeln!(out, "  no role of the catalogue grants: {p}");
            }
        }
        for g in r.granted.iter().flatten() {
            let status = match g.status {
                GrantStatus::InUse => "in use",
                GrantStatus::Unused => "UNUSED",
                GrantStatus::Undetermined => "undetermined",
            };
            let _ = writeln!(
                out,
                "  granted {:<42} {status:<12} silent {} days against a {}{}-day period (unused: {:.3})",
                g.pattern,
                g.silent_days,
                if g.period_learned { "learned " } else { "" },
                g.period_days,
                g.unused_confidence
            );
        }
        for a in &r.ungranted {
            let _ = writeln!(out, "  used but not granted: {a}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(actions: &[&str]) -> Vec<UsedAction> {
        actions
            .iter()
            .map(|a| UsedAction {
                action: (*a).to_owned(),
                weight: 1.0,
                first_used: String::new(),
                last_used: String::new(),
                days_used: 1,
                period_days: None,
                resources: Vec::new(),
                permissions: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn cloudtrail_events_become_the_iam_actions_they_need() {
        let p = iam_policy(&used(&[
            "s3.amazonaws.com:GetObject",
            "s3.amazonaws.com:ListObjects",
            "monitoring.amazonaws.com:PutMetricData",
            "sts.amazonaws.com:GetCallerIdentity",
            "iam.amazonaws.com:ListRoles",
        ]))
        .unwrap();
        assert_eq!(
            p["Statement"][0]["Action"],
            json!([
                "cloudwatch:PutMetricData",
                "iam:ListRoles",
                "s3:GetObject",
                "s3:ListBucket",
                "sts:GetCallerIdentity"
            ])
        );
        assert_eq!(p["Version"], "2012-10-17");
        assert!(iam_policy(&used(&["get:pods"])).is_none());
    }

    fn on(action: &str, resources: &[&str]) -> UsedAction {
        let mut u = used(&[action]).remove(0);
        u.resources = resources.iter().map(|r| (*r).to_owned()).collect();
        u
    }

    #[test]
    fn iam_statements_name_the_arns_used_and_a_wildcard_only_where_none_was_named() {
        let bucket = "arn:aws:s3:::reports/*";
        let p = iam_policy(&[
            on("s3.amazonaws.com:GetObject", &[bucket]),
            on("s3.amazonaws.com:PutObject", &[bucket]),
            // Bucket-level: on the bucket, not its objects.
            on("s3.amazonaws.com:ListObjects", &[bucket]),
            on(
                "secretsmanager.amazonaws.com:GetSecretValue",
                &["arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db-??????"],
            ),
            on("sts.amazonaws.com:GetCallerIdentity", &[ANY]),
            // Known by its action only (state saved before resources were kept).
            on("ec2.amazonaws.com:DescribeInstances", &[]),
            // Some calls named a table, one did not: every table.
            on(
                "dynamodb.amazonaws.com:Query",
                &["arn:aws:dynamodb:eu-west-1:111122223333:table/orders", ANY],
            ),
        ])
        .unwrap();
        assert_eq!(
            p["Statement"],
            json!([
                {"Sid": "ObservedUse1", "Effect": "Allow",
                 "Action": ["dynamodb:Query", "ec2:DescribeInstances", "sts:GetCallerIdentity"], "Resource": "*"},
                {"Sid": "ObservedUse2", "Effect": "Allow",
                 "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::reports"},
                {"Sid": "ObservedUse3", "Effect": "Allow",
                 "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::reports/*"},
                {"Sid": "ObservedUse4", "Effect": "Allow",
                 "Action": ["secretsmanager:GetSecretValue"],
                 "Resource": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db-??????"},
            ])
        );
        // Two calls named by different CloudTrail events needing one IAM action share its
        // resources.
        let p = iam_policy(&[
            on("s3.amazonaws.com:ListObjects", &["arn:aws:s3:::a/*"]),
            on("s3.amazonaws.com:ListObjectsV2", &["arn:aws:s3:::b"]),
        ])
        .unwrap();
        assert_eq!(
            p["Statement"][0]["Resource"],
            json!(["arn:aws:s3:::a", "arn:aws:s3:::b"])
        );
    }

    #[test]
    fn a_service_account_gets_roles_in_the_namespaces_it_used_restricted_to_the_objects_it_read() {
        let l = rbac_policy(
            "system:serviceaccount:payments:api",
            &[
                on("get:secrets", &["payments/db", "payments/tls"]),
                on("list:secrets", &["payments/*"]),
                on("get:configmaps", &["shared/flags"]),
                // Across all namespaces (no namespace named): cluster-wide.
                on("list:pods", &[ANY]),
                on("get:nodes", &["node-1"]),
            ],
        )
        .unwrap();
        let items = l["items"].as_array().unwrap();
        let kinds: Vec<(&str, &str)> = items
            .iter()
            .map(|i| {
                (
                    i["kind"].as_str().unwrap(),
                    i["metadata"]["namespace"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("Role", "payments"),
                ("RoleBinding", "payments"),
                ("Role", "shared"),
                ("RoleBinding", "shared"),
                ("ClusterRole", "-"),
                ("ClusterRoleBinding", "-")
            ]
        );
        assert_eq!(
            items[0]["rules"],
            json!([
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["db", "tls"]},
            ])
        );
        assert_eq!(
            items[2]["rules"],
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["flags"]}])
        );
        // The binding in another namespace still names the account in its own.
        assert_eq!(items[3]["subjects"][0]["namespace"], "payments");
        assert_eq!(
            items[4]["rules"],
            json!([
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"], "resourceNames": ["node-1"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            ])
        );
    }

    #[test]
    fn a_service_account_gets_a_role_in_its_namespace_and_a_cluster_role_for_the_rest() {
        let l = rbac_policy(
            "prod/system:serviceaccount:payments:api",
            &used(&[
                "get:pods",
                "list:pods",
                "get:pods/log",
                "watch:deployments",
                "get:nodes",
                "get:/healthz",
            ]),
        )
        .unwrap();
        let items = l["items"].as_array().unwrap();
        let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]
        );
        assert_eq!(items[0]["metadata"]["namespace"], "payments");
        assert_eq!(
            items[0]["rules"],
            json!([
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["watch"]},
            ])
        );
        assert_eq!(
            items[2]["rules"],
            json!([
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
                {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
            ])
        );
        assert_eq!(items[1]["subjects"][0]["name"], "api");
        assert!(rbac_policy("system:node:n1", &used(&["get:pods"])).is_none());
    }

    /// An endpoint first used `first_day` and last used `last_day` days before `NOW`, on `days`
    /// distinct days.
    fn ep(name: &str, first_day: i64, last_day: i64, days: u16) -> (String, Entry) {
        let hour = |d: i64| ((NOW - d * DAY_MS) / HOUR_MS) as u32;
        (
            name.to_owned(),
            Entry::new(0, 1.0, hour(first_day), hour(last_day), days),
        )
    }

    /// 2026-04-01T00:00:00Z.
    const NOW: i64 = 1_775_001_600_000;

    fn judge(patterns: &[&str], endpoints: &[(String, Entry)], watched_days: i64) -> Vec<Grant> {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        judge_grants(
            &patterns,
            endpoints,
            NOW,
            NOW - watched_days * DAY_MS,
            true,
            GrantRule::default(),
        )
    }

    #[test]
    fn an_endpoints_days_of_use_are_counted_once_per_utc_day() {
        let mut set = crate::baseline::ValueSet::default();
        set.insert(7, 0, 1.0, 8);
        for hour in [5, 23, 24, 30, 49, 49] {
            assert!(set.touch(7, hour, 1.0));
        }
        let mut e = set.entries[0];
        assert_eq!(e.days(), 3);
        assert_eq!(e.first_hour(), 0);
        assert_eq!(period_days(&e), Some(1.0));
        e.set_days(1);
        assert_eq!(period_days(&e), None);
        e.set_any_resource();
        e.set_days(u16::MAX);
        assert_eq!(
            (e.days(), e.first_hour(), e.any_resource()),
            (2047, 0, true),
            "saturates, hour and resource flag intact"
        );
        assert_eq!(std::mem::size_of::<Entry>(), 20);
    }

    #[test]
    fn a_monthly_action_silent_twenty_days_is_in_use_and_a_daily_one_silent_five_is_not() {
        let g = judge(
            &[
                "s3.amazonaws.com:GetObject",
                "ssm.amazonaws.com:SendCommand",
            ],
            &[
                // Used on 4 days over 90: every 30 days; last 20 days ago.
                ep("ssm.amazonaws.com:SendCommand", 110, 20, 4),
                // Used daily for 60 days, silent for 5.
                ep("s3.amazonaws.com:GetObject", 65, 5, 61),
            ],
            120,
        );
        assert_eq!(g[0].status, GrantStatus::Unused, "{:?}", g[0]);
        assert!(g[0].period_learned && g[0].period_days == 1.0);
        assert!(g[0].unused_confidence > 0.99);
        assert_eq!(g[1].status, GrantStatus::InUse, "{:?}", g[1]);
        assert_eq!(g[1].period_days, 30.0);
        assert!((g[1].unused_confidence - (1.0 - (-20.0f64 / 30.0).exp())).abs() < 1e-3);
    }

    #[test]
    fn a_grant_never_used_is_unused_only_after_about_three_periods_of_watching() {
        let daily = ep("sts.amazonaws.com:GetCallerIdentity", 200, 0, 200);
        let g = judge(&["iam:*"], std::slice::from_ref(&daily), 100);
        assert_eq!(g[0].status, GrantStatus::Unused);
        assert!(g[0].used_by.is_empty() && !g[0].period_learned);
        assert_eq!(g[0].period_days, 30.0);
        let g = judge(&["iam:*"], std::slice::from_ref(&daily), 20);
        assert_eq!(g[0].status, GrantStatus::Undetermined);
        // An identity with a 45-day job: a never-used grant waits for its longer rhythm.
        let slow = ep("ec2.amazonaws.com:CreateSnapshot", 90, 0, 3);
        let g = judge(&["iam:*"], &[daily.clone(), slow], 100);
        assert_eq!(
            (g[0].period_days, g[0].status),
            (45.0, GrantStatus::Undetermined)
        );
        // Incomplete memory: a dropped action may have been the one granted.
        let g = judge_grants(
            &["iam:*".to_owned()],
            &[daily],
            NOW,
            NOW - 400 * DAY_MS,
            false,
            GrantRule::default(),
        );
        assert_eq!(g[0].status, GrantStatus::Undetermined);
    }

    #[test]
    fn grants_match_iam_action_names_case_insensitively_and_any_covered_action_keeps_them() {
        let g = judge(
            &["S3:listbucket", "s3:*"],
            &[
                ep("s3.amazonaws.com:ListObjects", 60, 40, 20),
                ep("s3.amazonaws.com:GetObject", 60, 0, 60),
            ],
            60,
        );
        assert_eq!(g[0].used_by, ["s3.amazonaws.com:ListObjects"]);
        assert_eq!(g[0].status, GrantStatus::Unused);
        assert_eq!(g[1].used_by.len(), 2);
        assert_eq!(g[1].status, GrantStatus::InUse, "GetObject was used today");
        assert_eq!(g[1].silent_days, 0.0);
    }
}
