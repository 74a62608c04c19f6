//! `driftwatch report least-privilege`: per identity, the actions it used in a window of event
//! time (decayed use, first and last use), read from the same state `inspect` reads, and a
//! policy scoped to them: an IAM policy document for AWS users and roles, a Kubernetes Role (or
//! ClusterRole, for cluster-wide resources and non-resource URLs) for service accounts. Pure
//! functions of the engine; loading is `inspect`'s.
//!
//! What the state cannot say is said, not guessed: the resources an action touched are not kept,
//! so policies name `Resource: "*"` (AWS) and no `resourceNames` (Kubernetes); an identity whose
//! endpoint set is full (`baseline.max_endpoints`) or that is a cold summary may have dropped its
//! least used actions, and its report says `complete: false`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::baseline::fleet::Table;
use crate::baseline::{DAY_MS, HOUR_MS};
use crate::engine::Engine;
use crate::event::PrincipalType;
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
}

/// What one identity used, and the policy that grants exactly that.
#[derive(Debug, Clone, Serialize)]
pub struct LeastPrivilege {
    pub identity: String,
    pub provider: &'static str,
    pub identity_type: &'static str,
    pub window_days: f64,
    /// False when less used actions may have been dropped: the identity's endpoint set is at
    /// `baseline.max_endpoints`, or only a cold summary of it is kept.
    pub complete: bool,
    pub used: Vec<UsedAction>,
    /// An IAM policy document (AWS), or a list of RBAC objects (Kubernetes service accounts);
    /// absent where no mapping exists (GCP methods, other principals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Value>,
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
        _ => name,
    };
    format!("{prefix}:{name}")
}

/// An IAM policy document allowing exactly the AWS actions among `used`.
pub fn iam_policy(used: &[UsedAction]) -> Option<Value> {
    let actions: BTreeSet<String> = used
        .iter()
        .filter_map(|u| {
            let (source, name) = u.action.split_once(':')?;
            let prefix = iam_prefix(source)?;
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric());
            valid.then(|| iam_action(prefix, name))
        })
        .collect();
    if actions.is_empty() {
        return None;
    }
    Some(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ObservedUse",
            "Effect": "Allow",
            "Action": actions,
            // The records' resources are not kept in the state: scope by hand.
            "Resource": "*",
        }],
    }))
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

/// RBAC rules from `verb:resource[/sub]` and `verb:/path` actions: namespaced ones, then
/// cluster-wide ones (cluster-scoped resources and non-resource URLs).
fn rbac_rules(used: &[UsedAction]) -> (Vec<Value>, Vec<Value>) {
    let mut namespaced: BTreeMap<(&str, String), BTreeSet<&str>> = BTreeMap::new();
    let mut cluster: BTreeMap<(&str, String), BTreeSet<&str>> = BTreeMap::new();
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
        let target = if cluster_scoped(base) {
            &mut cluster
        } else {
            &mut namespaced
        };
        target
            .entry((group, what.to_owned()))
            .or_default()
            .insert(verb);
    }
    let rules = |m: BTreeMap<(&str, String), BTreeSet<&str>>| -> Vec<Value> {
        m.into_iter()
            .map(|((group, resource), verbs)| {
                json!({"apiGroups": [group], "resources": [resource], "verbs": verbs})
            })
            .collect()
    };
    let mut cluster_rules = rules(cluster);
    cluster_rules.extend(
        urls.into_iter()
            .map(|(url, verbs)| json!({"nonResourceURLs": [url], "verbs": verbs})),
    );
    (rules(namespaced), cluster_rules)
}

/// RBAC objects granting a service account exactly what it used: a Role in its namespace for
/// namespaced resources, a ClusterRole for the rest; each with its binding.
pub fn rbac_policy(username: &str, used: &[UsedAction]) -> Option<Value> {
    let sa = username.rsplit('/').next().unwrap_or(username);
    let mut parts = sa.strip_prefix("system:serviceaccount:")?.splitn(2, ':');
    let (namespace, name) = (parts.next()?, parts.next()?);
    let (namespaced, cluster) = rbac_rules(used);
    let object_name = format!("{name}-observed");
    let subject = json!([{"kind": "ServiceAccount", "name": name, "namespace": namespace}]);
    let rbac = "rbac.authorization.k8s.io/v1";
    let mut items = Vec::new();
    if !namespaced.is_empty() {
        items.push(json!({
            "apiVersion": rbac, "kind": "Role",
            "metadata": {"name": object_name, "namespace": namespace},
            "rules": namespaced,
        }));
        items.push(json!({
            "apiVersion": rbac, "kind": "RoleBinding",
            "metadata": {"name": object_name, "namespace": namespace},
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

/// The report for `key`, over the `window_days` before the newest event the state has seen;
/// `None` when the engine does not track it.
pub fn least_privilege(engine: &Engine, key: &str, window_days: f64) -> Option<LeastPrivilege> {
    let m = &engine.rules().model;
    let tracked = engine.tracked(key)?;
    let s = tracked.view(m.detectors.volume.prior_dispersion as f32);
    let p = &s.profile;
    let now = engine.newest_event_ms().unwrap_or(p.last_seen_ms);
    let since_hour = (now - (window_days * DAY_MS as f64) as i64).div_euclid(HOUR_MS);
    let mut used: Vec<UsedAction> = p
        .endpoints
        .entries
        .iter()
        .filter(|e| i64::from(e.last_hour) >= since_hour)
        .map(|e| UsedAction {
            action: value_name(engine, Table::Endpoints, e.hash),
            weight: (f64::from(e.weight) * 100.0).round() / 100.0,
            first_used: hour_ms(e.first_hour),
            last_used: hour_ms(e.last_hour),
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
    Some(LeastPrivilege {
        identity: key.to_owned(),
        provider: last.provider,
        identity_type: identity_type.as_str(),
        window_days,
        complete: !tracked.is_cold() && p.endpoints.entries.len() < m.baseline.max_endpoints,
        used,
        policy,
    })
}

/// Reports for every identity (by key), or only `only`.
pub fn least_privilege_all(
    engine: &Engine,
    only: Option<&str>,
    window_days: f64,
) -> Vec<LeastPrivilege> {
    let mut keys = Vec::new();
    engine.for_each_identity(|k, _| {
        if only.is_none_or(|o| o == k) {
            keys.push(k.to_owned());
        }
    });
    keys.sort();
    keys.iter()
        .filter_map(|k| least_privilege(engine, k, window_days))
        .collect()
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
            let _ = writeln!(
                out,
                "  {:<50} weight {:>8.2}  first {}  last {}",
                u.action, u.weight, u.first_used, u.last_used
            );
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
}
