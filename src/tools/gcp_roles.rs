//! The GCP roles that cover what an identity used, for `report least-privilege --gcp-roles`.
//!
//! Google's role catalogue changes weekly, so it is not built in: the user gives it as Google
//! publishes it (the IAM API's `roles.list` with `view=FULL`, a JSON array of roles, or one role
//! per line as `gcloud iam roles describe --format=json` prints them; custom roles too). Deprecated,
//! disabled and deleted roles are skipped.
//!
//! The permissions an identity used are those its calls were checked for, as the audit records'
//! `authorizationInfo` names them (kept in the state per action). An action the state knows no
//! permission of (records without `authorizationInfo`, state saved before they were kept) is
//! mapped from its method name only when that names exactly one permission of the catalogue
//! ([`Catalogue::derive`]); otherwise it is listed as unmapped, not guessed.
//!
//! The roles are chosen by the greedy weighted set cover (each role weighs the permissions it
//! grants), which grants within a logarithmic factor of the fewest permissions that cover the
//! use; roles another chosen role makes redundant are dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Problem};
use crate::redact::shape;

/// One role of the catalogue.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub title: String,
    pub permissions: BTreeSet<String>,
}

/// Google's roles, indexed by permission.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    roles: Vec<Role>,
    by_permission: HashMap<String, Vec<usize>>,
    /// The services permissions are named after (`storage`, `resourcemanager`), longest first.
    services: Vec<String>,
}

/// A role as Google's IAM API and `gcloud` print it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleV1 {
    name: Option<String>,
    #[serde(default)]
    title: String,
    included_permissions: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    deleted: bool,
}

/// One role chosen to cover the use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chosen {
    pub role: String,
    pub title: String,
    /// The used permissions it grants.
    pub covers: Vec<String>,
    /// How many permissions it grants in all (what it costs in privilege).
    pub grants: usize,
}

/// The roles covering a set of permissions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cover {
    pub roles: Vec<Chosen>,
    /// Used permissions no role of the catalogue grants.
    pub uncovered: Vec<String>,
}

impl Catalogue {
    /// Loads a catalogue file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and every bad role by position and field.
    pub fn load(path: &Path) -> Result<Catalogue, ConfigError> {
        let (file, text) = ConfigError::read(path)?;
        Catalogue::parse(&text, &file)
    }

    /// Parses catalogue text; `file` names it in errors.
    ///
    /// # Errors
    /// As [`Catalogue::load`].
    pub fn parse(text: &str, file: &str) -> Result<Catalogue, ConfigError> {
        let fail = |key: &str, why: String| ConfigError {
            file: file.to_owned(),
            problems: vec![Problem {
                key: key.to_owned(),
                why,
            }],
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text).trim();
        // Google's `{"roles": [...]}` or one role alone; else a list of roles or one per line.
        let items: Vec<(String, serde_json::Result<serde_json::Value>)> = match serde_json::from_str(
            text,
        ) {
            Ok(serde_json::Value::Object(mut m)) if m.contains_key("roles") => {
                match m.remove("roles") {
                    Some(serde_json::Value::Array(a)) => a
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (format!("roles[{i}]"), Ok(v)))
                        .collect(),
                    _ => return Err(fail("roles", "must be a list of roles".into())),
                }
            }
            Ok(v @ serde_json::Value::Object(_)) => vec![("(document)".into(), Ok(v))],
            Ok(serde_json::Value::Array(_)) | Err(_) => crate::config::json_items(text),
            Ok(_) => {
                return Err(fail(
                        "(document)",
                        "not a GCP role catalogue: expected {\"roles\": [...]} (roles.list with view=FULL), a list of roles, or one role per line".into(),
                    ));
            }
        };
        let mut problems = Vec::new();
        let mut roles = Vec::new();
        for (at, v) in items {
            let v = match v {
                Ok(v) => v,
                Err(e) => {
                    problems.push(Problem {
                        key: at,
                        why: format!("not JSON ({e}): expected Google's role catalogue, {{\"roles\": [...]}}, a list of roles, or one role per line"),
                    });
                    continue;
                }
            };
            let r: RoleV1 = match serde_json::from_value(v) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(Problem {
                        key: at,
                        why: e.to_string(),
                    });
                    continue;
                }
            };
            let Some(name) = r.name.filter(|n| is_role_name(n)) else {
                problems.push(Problem {
                    key: format!("{at}.name"),
                    why: "must name a role: roles/NAME, projects/P/roles/NAME or organizations/O/roles/NAME".into(),
                });
                continue;
            };
            if r.deleted || matches!(r.stage.as_deref(), Some("DEPRECATED" | "DISABLED")) {
                continue;
            }
            let Some(included) = r.included_permissions else {
                problems.push(Problem {
                    key: format!("{at}.includedPermissions"),
                    why: format!("{name} lists no permissions: list the roles with view=FULL (gcloud iam roles describe)"),
                });
                continue;
            };
            let mut permissions = BTreeSet::new();
            for (j, p) in included.into_iter().enumerate() {
                match p.as_str().filter(|p| shape::gcp_permission(p)) {
                    Some(p) => {
                        permissions.insert(p.to_owned());
                    }
                    None => problems.push(Problem {
                        key: format!("{at}.includedPermissions[{j}]"),
                        why: format!("{name}: not a permission (service.resource.verb)"),
                    }),
                }
            }
            roles.push(Role {
                name,
                title: r.title,
                permissions,
            });
        }
        if roles.is_empty() && problems.is_empty() {
            problems.push(Problem {
                key: "(document)".into(),
                why: "no active roles".into(),
            });
        }
        if !problems.is_empty() {
            return Err(ConfigError {
                file: file.to_owned(),
                problems,
            });
        }
        Ok(Catalogue::new(roles))
    }

    pub fn new(mut roles: Vec<Role>) -> Catalogue {
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        roles.dedup_by(|a, b| a.name == b.name);
        let mut by_permission: HashMap<String, Vec<usize>> = HashMap::new();
        let mut services = BTreeSet::new();
        for (i, r) in roles.iter().enumerate() {
            for p in &r.permissions {
                by_permission.entry(p.clone()).or_default().push(i);
                if let Some(s) = p.split('.').next() {
                    services.insert(s.to_owned());
                }
            }
        }
        let mut services: Vec<String> = services.into_iter().collect();
        services.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        Catalogue {
            roles,
            by_permission,
            services,
        }
    }

    pub fn roles(&self) -> usize {
        self.roles.len()
    }

    /// True when some role grants `permission`.
    pub fn knows(&self, permission: &str) -> bool {
        self.by_permission.contains_key(permission)
    }

    /// The one permission of the catalogue an action (`SERVICE:METHOD`, as the GCP decoder names
    /// it) needs, from its method name and the resources it touched; `None` unless exactly one
    /// reading of the name is a permission some role grants.
    ///
    /// Method names come in three shapes: a permission itself (`storage.objects.get`); a
    /// versioned REST method (`v1.compute.instances.insert`: the `insert` verb is `create`); an
    /// RPC (`google.iam.admin.v1.CreateServiceAccountKey`: verb `create`, resource
    /// `serviceAccountKeys`, of the service whose name the API's host contains). IAM-policy
    /// methods (`SetIamPolicy`) take their resource from the resource name's last collection.
    pub fn derive(&self, action: &str, resources: &[String]) -> Option<String> {
        let (api, method) = action.split_once(':')?;
        let rest = match method.split_once('.') {
            Some((first, rest)) if is_version(first) => rest,
            _ => method,
        };
        if self.knows(rest) {
            return Some(rest.to_owned());
        }
        if let Some((head, verb)) = rest.rsplit_once('.')
            && head.contains('.')
        {
            let verb = rest_verb(verb);
            let p = format!("{head}.{verb}");
            if self.knows(&p) {
                return Some(p);
            }
        }
        let last = method.rsplit('.').next()?;
        let (verb, noun) = split_verb(last)?;
        let mut nouns: Vec<String> = Vec::new();
        if !noun.is_empty() {
            let n = lower_first(noun);
            nouns.push(plural(&n));
            nouns.push(n);
        }
        for r in resources {
            let segments: Vec<&str> = r.split('/').collect();
            for c in segments.iter().step_by(2).rev() {
                if !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    nouns.push((*c).to_owned());
                }
            }
        }
        let host = api.split('.').next().unwrap_or(api);
        let mut found = BTreeSet::new();
        for noun in &nouns {
            for s in self.services.iter().filter(|s| host.contains(s.as_str())) {
                let p = format!("{s}.{noun}.{verb}");
                if self.knows(&p) {
                    found.insert(p);
                }
            }
            if !found.is_empty() {
                break;
            }
        }
        (found.len() == 1).then(|| found.into_iter().next().expect("one"))
    }

    /// The roles that grant every permission of `used` the catalogue knows, granting as few
    /// others as the greedy weighted set cover finds.
    pub fn cover(&self, used: &BTreeSet<String>) -> Cover {
        let uncovered: Vec<String> = used.iter().filter(|p| !self.knows(p)).cloned().collect();
        let mut left: BTreeSet<&str> = used
            .iter()
            .filter(|p| self.knows(p))
            .map(String::as_str)
            .collect();
        let mut chosen: Vec<usize> = Vec::new();
        while !left.is_empty() {
            let candidates: BTreeSet<usize> = left
                .iter()
                .flat_map(|p| self.by_permission[*p].iter().copied())
                .collect();
            let best = candidates
                .into_iter()
                .map(|i| {
                    let r = &self.roles[i];
                    let new = left.iter().filter(|p| r.permissions.contains(**p)).count();
                    (i, new, r.permissions.len())
                })
                .min_by(|a, b| {
                    // Permissions granted per permission covered; then more covered, fewer
                    // granted, the name.
                    let (ca, cb) = (a.2 as f64 / a.1 as f64, b.2 as f64 / b.1 as f64);
                    ca.total_cmp(&cb)
                        .then(b.1.cmp(&a.1))
                        .then(a.2.cmp(&b.2))
                        .then(self.roles[a.0].name.cmp(&self.roles[b.0].name))
                })
                .expect("a known permission has a role");
            let r = &self.roles[best.0];
            left.retain(|p| !r.permissions.contains(*p));
            chosen.push(best.0);
        }
        // A role whose covered permissions the others grant too is redundant (heaviest first).
        let mut by_weight = chosen.clone();
        by_weight.sort_by_key(|i| std::cmp::Reverse(self.roles[*i].permissions.len()));
        for i in by_weight {
            let others: Vec<usize> = chosen.iter().copied().filter(|j| *j != i).collect();
            let redundant = used
                .iter()
                .filter(|p| self.roles[i].permissions.contains(*p))
                .all(|p| {
                    others
                        .iter()
                        .any(|j| self.roles[*j].permissions.contains(p))
                });
            if redundant {
                chosen.retain(|j| *j != i);
            }
        }
        let mut roles: Vec<Chosen> = chosen
            .into_iter()
            .map(|i| {
                let r = &self.roles[i];
                Chosen {
                    role: r.name.clone(),
                    title: r.title.clone(),
                    covers: used
                        .iter()
                        .filter(|p| r.permissions.contains(*p))
                        .cloned()
                        .collect(),
                    grants: r.permissions.len(),
                }
            })
            .collect();
        roles.sort_by(|a, b| a.role.cmp(&b.role));
        Cover { roles, uncovered }
    }
}

/// An IAM policy (the `setIamPolicy` body's `policy`) binding `member` to `roles`.
pub fn bindings(member: &str, cover: &Cover) -> Option<serde_json::Value> {
    let bindings: Vec<serde_json::Value> = cover
        .roles
        .iter()
        .map(|c| serde_json::json!({"role": c.role, "members": [member]}))
        .collect();
    (!bindings.is_empty()).then(|| serde_json::json!({"version": 1, "bindings": bindings}))
}

/// The IAM member an identity's principal key names: a service account or a user.
pub fn member(principal: &str) -> String {
    if principal.ends_with(".gserviceaccount.com") {
        format!("serviceAccount:{principal}")
    } else {
        format!("user:{principal}")
    }
}

fn is_role_name(n: &str) -> bool {
    let id = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    match n.split('/').collect::<Vec<_>>().as_slice() {
        ["roles", r] => id(r),
        ["projects" | "organizations", o, "roles", r] => id(o) && id(r),
        _ => false,
    }
}

/// `v1`, `v2beta1`, `beta`, `alpha`: a REST method's version prefix.
fn is_version(s: &str) -> bool {
    s == "beta"
        || s == "alpha"
        || s.strip_prefix('v')
            .is_some_and(|r| r.bytes().next().is_some_and(|b| b.is_ascii_digit()))
}

/// A REST verb as permissions name it.
fn rest_verb(v: &str) -> &str {
    match v {
        "insert" => "create",
        "patch" => "update",
        other => other,
    }
}

/// `CreateServiceAccountKey` to (`create`, `ServiceAccountKey`); `SetIamPolicy` and the like
/// to (`setIamPolicy`, ``): their resource is the resource name's.
fn split_verb(last: &str) -> Option<(String, &str)> {
    if !last.bytes().all(|b| b.is_ascii_alphanumeric()) || last.is_empty() {
        return None;
    }
    if last.ends_with("IamPolicy") || last.ends_with("IamPermissions") {
        return Some((lower_first(last), ""));
    }
    let cut = last
        .char_indices()
        .skip(1)
        .find(|(_, c)| c.is_ascii_uppercase())
        .map_or(last.len(), |(i, _)| i);
    let (verb, noun) = last.split_at(cut);
    let verb = lower_first(verb);
    Some((rest_verb(&verb).to_owned(), noun))
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// The plural a permission names a resource by (`serviceAccountKey` to `serviceAccountKeys`,
/// `policy` to `policies`).
fn plural(s: &str) -> String {
    match s.strip_suffix('y') {
        _ if s.ends_with('s') => s.to_owned(),
        Some(stem) if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => format!("{stem}ies"),
        _ => format!("{s}s"),
    }
}

/// Report fields for a GCP identity: the permissions it used and the roles that cover them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GcpRoles {
    /// Permissions used: from `authorizationInfo`, or mapped from method names.
    pub permissions: Vec<String>,
    /// Actions mapped from their method name (no permission recorded for them).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub derived: BTreeMap<String, String>,
    /// Actions with no recorded permission whose name maps to none: not granted by `roles`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmapped: Vec<String>,
    #[serde(flatten)]
    pub cover: Cover,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Catalogue {
        let role = |name: &str, perms: &[&str]| Role {
            name: name.into(),
            title: name.into(),
            permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
        };
        Catalogue::new(vec![
            role(
                "roles/storage.objectViewer",
                &[
                    "resourcemanager.projects.get",
                    "storage.objects.get",
                    "storage.objects.list",
                ],
            ),
            role(
                "roles/storage.objectAdmin",
                &[
                    "resourcemanager.projects.get",
                    "storage.objects.create",
                    "storage.objects.delete",
                    "storage.objects.get",
                    "storage.objects.list",
                    "storage.objects.update",
                ],
            ),
            role(
                "roles/iam.serviceAccountKeyAdmin",
                &[
                    "iam.serviceAccountKeys.create",
                    "iam.serviceAccountKeys.delete",
                    "iam.serviceAccountKeys.get",
                    "iam.serviceAccountKeys.list",
                ],
            ),
            role(
                "roles/resourcemanager.projectIamAdmin",
                &[
                    "resourcemanager.projects.getIamPolicy",
                    "resourcemanager.projects.setIamPolicy",
                ],
            ),
            role(
                "roles/compute.instanceAdmin",
                &[
                    "compute.instances.create",
                    "compute.instances.setMetadata",
                    "compute.disks.create",
                ],
            ),
            role(
                "roles/logging.configWriter",
                &["logging.sinks.update", "logging.sinks.get"],
            ),
        ])
    }

    #[test]
    fn method_names_map_to_a_permission_only_when_one_reading_names_one() {
        let c = catalogue();
        let d = |a: &str, r: &[&str]| {
            c.derive(a, &r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(
            d("storage.googleapis.com:storage.objects.get", &[]).as_deref(),
            Some("storage.objects.get")
        );
        assert_eq!(
            d("compute.googleapis.com:v1.compute.instances.insert", &[]).as_deref(),
            Some("compute.instances.create")
        );
        assert_eq!(
            d(
                "iam.googleapis.com:google.iam.admin.v1.CreateServiceAccountKey",
                &[]
            )
            .as_deref(),
            Some("iam.serviceAccountKeys.create")
        );
        assert_eq!(
            d(
                "logging.googleapis.com:google.logging.v2.ConfigServiceV2.UpdateSink",
                &[]
            )
            .as_deref(),
            Some("logging.sinks.update")
        );
        assert_eq!(
            d(
                "cloudresourcemanager.googleapis.com:SetIamPolicy",
                &["projects/shop-prod"]
            )
            .as_deref(),
            Some("resourcemanager.projects.setIamPolicy")
        );
        // Nothing of the catalogue, or no resource to say whose IAM policy: not guessed.
        assert_eq!(
            d(
                "bigquery.googleapis.com:google.cloud.bigquery.v2.JobService.InsertJob",
                &[]
            ),
            None
        );
        assert_eq!(
            d("cloudresourcemanager.googleapis.com:SetIamPolicy", &[]),
            None
        );
    }

    #[test]
    fn the_cover_grants_the_fewest_permissions_and_drops_redundant_roles() {
        let c = catalogue();
        let used = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        // Reading objects: the viewer (3 permissions), not the admin (6).
        let cov = c.cover(&used(&["storage.objects.get", "storage.objects.list"]));
        let names: Vec<&str> = cov.roles.iter().map(|r| r.role.as_str()).collect();
        assert_eq!(names, ["roles/storage.objectViewer"]);
        assert_eq!(cov.roles[0].grants, 3);
        // Also writing: the admin alone (the viewer would be redundant beside it).
        let cov = c.cover(&used(&[
            "storage.objects.get",
            "storage.objects.create",
            "iam.serviceAccountKeys.create",
            "x.y.z",
        ]));
        let names: Vec<&str> = cov.roles.iter().map(|r| r.role.as_str()).collect();
        assert_eq!(
            names,
            [
                "roles/iam.serviceAccountKeyAdmin",
                "roles/storage.objectAdmin"
            ]
        );
        assert_eq!(cov.uncovered, ["x.y.z"]);
        assert_eq!(
            cov.roles[1].covers,
            ["storage.objects.create", "storage.objects.get"]
        );
        let policy = bindings(&member("etl@p.iam.gserviceaccount.com"), &cov).unwrap();
        assert_eq!(
            policy["bindings"][0]["members"][0],
            "serviceAccount:etl@p.iam.gserviceaccount.com"
        );
    }

    #[test]
    fn a_catalogue_in_each_of_googles_shapes_loads_and_a_bad_one_names_every_problem() {
        let role = r#"{"name":"roles/storage.objectViewer","title":"Storage Object Viewer","includedPermissions":["storage.objects.get"],"stage":"GA"}"#;
        let gone = r#"{"name":"roles/old","includedPermissions":["a.b.c"],"stage":"DEPRECATED"}"#;
        for text in [
            format!(r#"{{"roles":[{role},{gone}]}}"#),
            format!("[{role},{gone}]"),
            format!("{role}\n{gone}\n"),
        ] {
            let c = Catalogue::parse(&text, "roles.json").unwrap();
            assert_eq!(c.roles(), 1, "{text}");
            assert!(c.knows("storage.objects.get") && !c.knows("a.b.c"));
        }
        let err = Catalogue::parse(
            r#"{"roles":[{"name":"storage.objectViewer","includedPermissions":[]},
            {"name":"roles/x"},
            {"name":"roles/y","includedPermissions":["storage.objects.get","AKIA EXAMPLE"]}]}"#,
            "roles.json",
        )
        .unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "roles[0].name",
                "roles[1].includedPermissions",
                "roles[2].includedPermissions[1]"
            ]
        );
        assert!(
            err.to_string()
                .starts_with("roles.json: 3 configuration problems")
        );
        assert!(!err.to_string().contains("AKIA"), "{err}");
        assert!(Catalogue::parse("{\"roles\":[]}", "r.json").is_err());
        assert!(Catalogue::parse("not json", "r.json").unwrap_err().problems[0].key == "line 1");
        // Every bad line is named, not only the first.
        let err =
            Catalogue::parse(&format!("{role}\nnot json\n{role}\n{{oops\n"), "r.json").unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["line 2", "line 4"]);
    }
}
