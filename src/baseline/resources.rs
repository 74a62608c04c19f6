//! What each action of an identity touched: a bounded memory of resource scopes per endpoint,
//! read by least-privilege reports to scope the policies they generate.
//!
//! A scope is the resource as a policy would name it ([`scope_of`]): an AWS ARN (an S3 object's
//! generalised to its bucket's `/*`, a secret's given the random suffix Secrets Manager adds),
//! a Kubernetes `namespace/name`, a GCP resource name. A call that named no resource, or none a
//! policy can name, flags its endpoint ([`crate::baseline::Entry::any_resource`]): that action
//! can only be granted on every resource ([`ANY`]).
//!
//! The memory is capped (`baseline.max_resources_per_action`, `baseline.max_resources`). It
//! never forgets a resource an action still uses: past the per-action cap an action's names are
//! generalised to their parents (`ns/name` to `ns/*`, `arn:...:role/a` to `arn:...:role/*`),
//! and when that is not enough, or the identity's memory is full, the action is flagged instead,
//! so a generated policy can only be broader than the use, never narrower. Only resources of
//! actions the identity no longer tracks are dropped to make room.

use std::fmt;

use thin_vec::ThinVec;

use crate::baseline::alloc_bytes;
use crate::event::{AccessEvent, SourceFormat};

/// The scope of a call that can only be granted on every resource.
pub const ANY: &str = "*";

/// Longest scope kept (bytes); a longer one is remembered as [`ANY`].
pub const MAX_SCOPE_BYTES: usize = 256;

/// A scope as a call names it, without copying: `head` then `tail` (the generalisation, e.g.
/// `/*`). Compared in place on every call; a string is made only when a new one is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    head: &'a str,
    tail: &'static str,
}

impl<'a> Scope<'a> {
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `s` is this scope. Names of one action mostly differ at their end (`db-0`,
    /// `db-1`), so the head's last byte is compared before the rest.
    pub fn is(&self, s: &str) -> bool {
        let (b, h, t) = (s.as_bytes(), self.head.as_bytes(), self.tail.as_bytes());
        b.len() == h.len() + t.len()
            && b[..h.len()].last() == h.last()
            && b[h.len()..] == *t
            && b[..h.len()] == *h
    }
}

impl<'a> From<&'a str> for Scope<'a> {
    fn from(head: &'a str) -> Scope<'a> {
        Scope { head, tail: "" }
    }
}

impl fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.head, self.tail)
    }
}

/// One resource scope one action used.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceUse {
    /// The endpoint's hash ([`crate::baseline::endpoint_hash`]).
    pub action: u64,
    /// Hour index when last used with it.
    pub last_hour: u32,
    /// Calls that used it (saturating; not decayed).
    pub uses: u32,
    pub scope: Box<str>,
}

/// The resources an identity's actions used, by name. An action that must be granted on every
/// resource is flagged on its endpoint entry instead
/// ([`crate::baseline::Entry::any_resource`]), so the common call that names none costs no
/// memory here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources(pub ThinVec<ResourceUse>);

/// The caps of one identity's resource memory.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub per_action: usize,
    pub total: usize,
}

impl Resources {
    /// Remembers that `action` used `scope` (`None`: a resource no policy can name) in `hour`;
    /// `tracked` says which actions the identity still tracks. Returns the action that must
    /// from now on be granted on every resource, if one must: this one (it named none, or more
    /// than `caps.per_action` even generalised), or another whose names were dropped to make
    /// room. Its entries here are gone; the caller flags its endpoint.
    pub fn record(
        &mut self,
        action: u64,
        scope: Option<Scope<'_>>,
        hour: u32,
        caps: Caps,
        tracked: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        let Some(scope) = scope.filter(|s| s.len() <= MAX_SCOPE_BYTES && !s.is_empty()) else {
            self.0.retain(|u| u.action != action);
            return Some(action);
        };
        if let Some(u) = self
            .0
            .iter_mut()
            .find(|u| u.action == action && scope.is(&u.scope))
        {
            u.uses = u.uses.saturating_add(1);
            u.last_hour = u.last_hour.max(hour);
            return None;
        }
        let mut widened = None;
        if self.count(action) >= caps.per_action.max(1) && !self.generalise(action, caps.per_action)
        {
            self.0.retain(|u| u.action != action);
            return Some(action);
        }
        if self.0.len() >= caps.total {
            self.0.retain(|u| tracked(u.action));
        }
        if self.0.len() >= caps.total {
            // Full of tracked actions' names: the action with most (the first of them in hash
            // order, for determinism) is granted on every resource instead.
            let (widest, _) = self
                .0
                .iter()
                .map(|u| (u.action, self.count(u.action)))
                .max_by_key(|&(a, n)| (n, std::cmp::Reverse(a)))?;
            self.0.retain(|u| u.action != widest);
            if widest == action {
                return Some(action);
            }
            widened = Some(widest);
        }
        if self.0.len() == self.0.capacity() {
            // Room for one more and no more: most identities name a resource or two, and a
            // million of them must not each hold room for four.
            self.0.reserve_exact(1);
        }
        self.0.push(ResourceUse {
            action,
            last_hour: hour,
            uses: 1,
            scope: scope.to_string().into(),
        });
        widened
    }

    fn count(&self, action: u64) -> usize {
        self.0.iter().filter(|u| u.action == action).count()
    }

    /// Replaces `action`'s names by their parents (`ns/name` to `ns/*`, `arn:...:role/a` to
    /// `arn:...:role/*`) when that leaves fewer than `cap`, with room for one more; false (and
    /// nothing changed) otherwise.
    fn generalise(&mut self, action: u64, cap: usize) -> bool {
        let mut parents: ThinVec<ResourceUse> = ThinVec::new();
        for u in self.0.iter().filter(|u| u.action == action) {
            let Some(cut) = u.scope.rfind('/') else {
                return false;
            };
            let parent = format!("{}/*", &u.scope[..cut]);
            match parents.iter_mut().find(|p| *p.scope == *parent) {
                Some(p) => {
                    p.uses = p.uses.saturating_add(u.uses);
                    p.last_hour = p.last_hour.max(u.last_hour);
                }
                None => parents.push(ResourceUse {
                    scope: parent.into(),
                    ..u.clone()
                }),
            }
        }
        if parents.len() >= cap.max(1) {
            return false;
        }
        self.0.retain(|u| u.action != action);
        self.0.extend(parents);
        true
    }

    /// The scopes `action` used at or after hour `since`, in scope order.
    pub fn of(&self, action: u64, since: i64) -> Vec<&str> {
        names_of(&self.0, action, since)
    }

    pub fn heap_bytes(&self) -> usize {
        list_bytes(&self.0)
    }
}

/// One IAM permission the provider checked for one action's calls (GCP `authorizationInfo`).
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionUse {
    /// The endpoint's hash.
    pub action: u64,
    /// Hour index when last checked.
    pub last_hour: u32,
    pub permission: Box<str>,
}

/// The permissions an identity's actions were checked for, at most `baseline.max_resources`.
/// When full of the permissions of actions it still tracks, new ones are not kept and the
/// identity's least-privilege report says it is incomplete.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Permissions(pub ThinVec<PermissionUse>);

impl Permissions {
    /// Remembers that `action` was checked for `permissions` in `hour`; `tracked` says which
    /// actions the identity still tracks.
    pub fn record(
        &mut self,
        action: u64,
        permissions: &[String],
        hour: u32,
        cap: usize,
        tracked: impl Fn(u64) -> bool,
    ) {
        for p in permissions {
            if let Some(u) = self
                .0
                .iter_mut()
                .find(|u| u.action == action && *u.permission == **p)
            {
                u.last_hour = u.last_hour.max(hour);
                continue;
            }
            if self.0.len() >= cap {
                self.0.retain(|u| tracked(u.action));
            }
            if self.0.len() >= cap {
                return;
            }
            if self.0.len() == self.0.capacity() {
                self.0.reserve_exact(1);
            }
            self.0.push(PermissionUse {
                action,
                last_hour: hour,
                permission: p.as_str().into(),
            });
        }
    }

    /// True when new permissions can no longer be kept.
    pub fn is_full(&self, cap: usize) -> bool {
        cap > 0 && self.0.len() >= cap
    }

    /// The permissions `action` was checked for at or after hour `since`, sorted.
    pub fn of(&self, action: u64, since: i64) -> Vec<&str> {
        names_of(&self.0, action, since)
    }

    pub fn heap_bytes(&self) -> usize {
        list_bytes(&self.0)
    }
}

/// What both memories keep of one use: the action, the hour of its last use, and a name.
trait Named {
    fn action(&self) -> u64;
    fn last_hour(&self) -> u32;
    fn name(&self) -> &str;
}

impl Named for ResourceUse {
    fn action(&self) -> u64 {
        self.action
    }
    fn last_hour(&self) -> u32 {
        self.last_hour
    }
    fn name(&self) -> &str {
        &self.scope
    }
}

impl Named for PermissionUse {
    fn action(&self) -> u64 {
        self.action
    }
    fn last_hour(&self) -> u32 {
        self.last_hour
    }
    fn name(&self) -> &str {
        &self.permission
    }
}

/// The names `action` used at or after hour `since`, sorted.
fn names_of<T: Named>(v: &[T], action: u64, since: i64) -> Vec<&str> {
    let mut names: Vec<&str> = v
        .iter()
        .filter(|u| u.action() == action && i64::from(u.last_hour()) >= since)
        .map(Named::name)
        .collect();
    names.sort_unstable();
    names
}

/// Bytes a list and its names take (none while empty; its length and capacity live in its
/// buffer).
fn list_bytes<T: Named>(v: &ThinVec<T>) -> usize {
    let buffer = if v.capacity() == 0 {
        0
    } else {
        alloc_bytes(2 * std::mem::size_of::<usize>() + v.capacity() * std::mem::size_of::<T>())
    };
    buffer + v.iter().map(|u| alloc_bytes(u.name().len())).sum::<usize>()
}

/// The resource of `ev` as a policy names it; `None` when it named none a policy can name.
pub fn scope_of(ev: &AccessEvent) -> Option<Scope<'_>> {
    let r = ev.resource.as_deref()?;
    match ev.format {
        SourceFormat::Cloudtrail => aws_scope(r),
        SourceFormat::GcpAudit => Some(gcp_scope(r)),
        _ => Some(r.into()),
    }
}

/// A GCP resource name, a Cloud Storage object's generalised to its bucket's objects
/// (`projects/_/buckets/B/objects/*`), as roles are granted on buckets.
pub fn gcp_scope(r: &str) -> Scope<'_> {
    match r.split_once("/objects/") {
        Some((bucket, _)) if bucket.contains("/buckets/") => Scope {
            head: bucket,
            tail: "/objects/*",
        },
        _ => r.into(),
    }
}

/// An AWS resource as a policy's `Resource` names it: ARNs only, S3 objects as their bucket's
/// `/*` and secrets named without their random suffix as `NAME-??????`.
pub fn aws_scope(r: &str) -> Option<Scope<'_>> {
    let mut parts = r.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some(service), Some(_region), Some(_account), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if rest.is_empty() || r.contains(['*', '?']) {
        return None;
    }
    Some(match service {
        "s3" => match rest.split_once('/') {
            Some((bucket, _key)) => Scope {
                head: &r[..r.len() - rest.len() + bucket.len()],
                tail: "/*",
            },
            None => r.into(),
        },
        "secretsmanager" => match rest.strip_prefix("secret:") {
            // A full secret ARN ends in `-` and six random characters; a name does not.
            Some(name) if !has_secret_suffix(name) => Scope {
                head: r,
                tail: "-??????",
            },
            _ => r.into(),
        },
        _ => r.into(),
    })
}

fn has_secret_suffix(name: &str) -> bool {
    name.len() > 7 && {
        let (head, tail) = name.split_at(name.len() - 7);
        !head.is_empty()
            && tail.starts_with('-')
            && tail[1..].bytes().all(|c| c.is_ascii_alphanumeric())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        per_action: 3,
        total: 6,
    };

    fn scopes(r: &Resources, action: u64) -> Vec<String> {
        r.of(action, 0).iter().map(|s| (*s).to_owned()).collect()
    }

    fn uses(r: &Resources, action: u64) -> u32 {
        r.0.iter()
            .filter(|u| u.action == action)
            .map(|u| u.uses)
            .sum()
    }

    #[test]
    fn aws_scopes_are_arns_with_objects_generalised_to_their_bucket() {
        let s = |r| aws_scope(r).map(|c| c.to_string());
        assert_eq!(
            s("arn:aws:s3:::reports/2026/12/a.csv").as_deref(),
            Some("arn:aws:s3:::reports/*")
        );
        assert_eq!(
            s("arn:aws:s3:::reports").as_deref(),
            Some("arn:aws:s3:::reports")
        );
        assert_eq!(
            s("arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db").as_deref(),
            Some("arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db-??????")
        );
        assert_eq!(
            s("arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db-a1B2c3").as_deref(),
            Some("arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db-a1B2c3")
        );
        assert_eq!(
            s("arn:aws:iam::111122223333:role/deployer").as_deref(),
            Some("arn:aws:iam::111122223333:role/deployer")
        );
        // Not an ARN, or one that would grant more than was used.
        assert_eq!(s("my-queue"), None);
        assert_eq!(s("arn:aws:s3"), None);
        assert_eq!(s("arn:aws:iam::111122223333:role/*"), None);
    }

    #[test]
    fn cloud_storage_objects_are_scoped_to_their_bucket() {
        let s = |r| gcp_scope(r).to_string();
        assert_eq!(
            s("projects/_/buckets/exports/objects/2026/a.csv"),
            "projects/_/buckets/exports/objects/*"
        );
        assert_eq!(s("projects/p/sinks/s"), "projects/p/sinks/s");
        let scope = gcp_scope("projects/_/buckets/exports/objects/b.csv");
        assert!(scope.is("projects/_/buckets/exports/objects/*"));
        assert!(!scope.is("projects/_/buckets/exports/objects/b.csv"));
    }

    #[test]
    fn an_action_past_its_cap_is_generalised_then_granted_on_any_resource_not_narrowed() {
        let mut r = Resources::default();
        let record = |r: &mut Resources, scope: &str, h: u32| {
            r.record(1, Some(Scope::from(scope)), h, CAPS, |_| true)
        };
        for (h, name) in ["a/x", "a/y", "b/z", "a/x"].into_iter().enumerate() {
            assert_eq!(record(&mut r, name, h as u32), None);
        }
        assert_eq!(scopes(&r, 1), ["a/x", "a/y", "b/z"]);
        assert_eq!(uses(&r, 1), 4);
        // A fourth name: generalised to the two namespaces (names in `a`, names in `b`).
        assert_eq!(record(&mut r, "a/w", 9), None);
        assert_eq!(scopes(&r, 1), ["a/*", "a/w", "b/*"]);
        assert_eq!(uses(&r, 1), 5);
        assert_eq!(r.of(1, 9), ["a/w"], "a/* last used at hour 1");
        // Names without a parent cannot be generalised: the action is granted on every one.
        let mut flat = Resources::default();
        for name in ["p", "q", "s"] {
            flat.record(2, Some(Scope::from(name)), 0, CAPS, |_| true);
        }
        assert_eq!(
            flat.record(2, Some(Scope::from("t")), 0, CAPS, |_| true),
            Some(2)
        );
        assert!(
            scopes(&flat, 2).is_empty(),
            "its names are dropped, the caller flags it"
        );
    }

    #[test]
    fn a_full_memory_drops_untracked_actions_first_then_widens_the_widest() {
        let mut r = Resources::default();
        for (a, s) in [(1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (3, "x")] {
            assert_eq!(r.record(a, Some(Scope::from(s)), 0, CAPS, |_| true), None);
        }
        // Action 3 is no longer tracked: its entry makes room.
        assert_eq!(
            r.record(4, Some(Scope::from("x")), 1, CAPS, |a| a != 3),
            None
        );
        assert!(scopes(&r, 3).is_empty());
        assert_eq!(scopes(&r, 4), ["x"]);
        // Everything tracked: action 1 (three names) is granted on every resource instead.
        assert_eq!(
            r.record(5, Some(Scope::from("x")), 2, CAPS, |_| true),
            Some(1)
        );
        assert!(scopes(&r, 1).is_empty());
        assert_eq!(scopes(&r, 5), ["x"]);
        assert!(r.0.len() <= CAPS.total);
    }

    #[test]
    fn a_scope_too_long_or_absent_grants_the_action_on_any_resource() {
        let mut r = Resources::default();
        r.record(1, Some(Scope::from("a")), 0, CAPS, |_| true);
        let long = "x".repeat(MAX_SCOPE_BYTES + 1);
        assert_eq!(
            r.record(1, Some(Scope::from(long.as_str())), 0, CAPS, |_| true),
            Some(1)
        );
        assert!(r.0.is_empty());
        assert_eq!(r.record(2, None, 0, CAPS, |_| true), Some(2));
    }

    #[test]
    fn permissions_are_kept_once_per_action_and_a_full_memory_makes_room_only_from_untracked_actions()
     {
        let mut p = Permissions::default();
        let perms = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        p.record(1, &perms(&["a.b.c", "a.b.d"]), 0, 3, |_| true);
        p.record(1, &perms(&["a.b.c"]), 5, 3, |_| true);
        assert_eq!(p.of(1, 0), ["a.b.c", "a.b.d"]);
        assert_eq!(p.of(1, 1), ["a.b.c"], "a.b.d last checked at hour 0");
        p.record(2, &perms(&["x.y.z", "x.y.w"]), 6, 3, |_| true);
        assert_eq!(p.of(2, 0), ["x.y.z"], "full: x.y.w not kept");
        assert!(p.is_full(3));
        p.record(2, &perms(&["x.y.w"]), 7, 3, |a| a != 1);
        assert!(p.of(1, 0).is_empty());
        assert_eq!(p.of(2, 0), ["x.y.w", "x.y.z"]);
        let mut off = Permissions::default();
        off.record(1, &perms(&["a.b.c"]), 0, 0, |_| true);
        assert!(off.0.is_empty() && !off.is_full(0));
    }
}
