//! Kubernetes audit events (`audit.k8s.io/v1` `Event`; `EventList`s are expanded by the caller).

use serde::Deserialize;

use super::{DecodeError, Decoded, Skip, Str, first_timestamp, required};
use crate::event::{
    AccessEvent, Credential, Origin, Outcome, PrincipalType, RawRef, SourceFormat, Volume, Workload,
};

const F: &str = "Kubernetes audit";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(borrow, rename = "auditID")]
    audit_id: Option<Str<'a>>,
    #[serde(borrow)]
    stage: Option<Str<'a>>,
    #[serde(borrow, rename = "requestURI")]
    request_uri: Option<Str<'a>>,
    #[serde(borrow)]
    verb: Option<Str<'a>>,
    #[serde(borrow)]
    user: Option<UserInfo<'a>>,
    #[serde(borrow, rename = "sourceIPs")]
    source_ips: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    user_agent: Option<Str<'a>>,
    #[serde(borrow)]
    object_ref: Option<ObjectRef<'a>>,
    response_status: Option<Status>,
    #[serde(borrow)]
    request_received_timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    stage_timestamp: Option<Str<'a>>,
    /// Logstash and Filebeat's own time, when a pipeline dropped the audit timestamps.
    #[serde(
        borrow,
        rename = "@timestamp",
        default,
        deserialize_with = "super::lenient::str"
    )]
    pipeline_time: Option<Str<'a>>,
    #[serde(borrow)]
    annotations: Option<Annotations<'a>>,
}

#[derive(Deserialize)]
struct UserInfo<'a> {
    #[serde(borrow)]
    username: Option<Str<'a>>,
    #[serde(borrow)]
    extra: Option<Extra<'a>>,
}

/// The annotations we read; the rest are skipped unparsed.
#[derive(Deserialize)]
struct Annotations<'a> {
    #[serde(borrow, rename = "authorization.k8s.io/decision")]
    decision: Option<Str<'a>>,
}

/// Bound service-account token claims carried in `user.extra`.
#[derive(Deserialize)]
struct Extra<'a> {
    #[serde(borrow, rename = "authentication.kubernetes.io/pod-name", default)]
    pod_name: Vec<Str<'a>>,
    #[serde(borrow, rename = "authentication.kubernetes.io/pod-uid", default)]
    pod_uid: Vec<Str<'a>>,
    #[serde(borrow, rename = "authentication.kubernetes.io/node-name", default)]
    node_name: Vec<Str<'a>>,
    #[serde(borrow, rename = "authentication.kubernetes.io/credential-id", default)]
    credential_id: Vec<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef<'a> {
    #[serde(borrow)]
    resource: Option<Str<'a>>,
    #[serde(borrow)]
    namespace: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    subresource: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Status {
    code: Option<u16>,
}

pub(super) fn decode(text: &str, raw: RawRef) -> Result<Decoded, DecodeError> {
    let e: Event = super::parse(text, F)?;
    if let Some(stage) = e.stage.as_deref()
        && stage != "ResponseComplete"
        && stage != "Panic"
    {
        return Ok(Decoded::Skipped(Skip::IntermediateStage));
    }
    let time_ms = first_timestamp(
        F,
        &[
            (
                "requestReceivedTimestamp",
                e.request_received_timestamp.as_deref(),
            ),
            ("stageTimestamp", e.stage_timestamp.as_deref()),
            ("@timestamp", e.pipeline_time.as_deref()),
        ],
    )?;
    let user = required(e.user.as_ref(), F, "user")?;
    let username = required(user.username.as_deref(), F, "user.username")?;
    let verb = required(e.verb.as_deref(), F, "verb")?;

    let first = |v: &[Str<'_>]| -> Option<String> { v.first().map(|s| s.to_string()) };
    let (pod, pod_uid, node, credential_id) = match &user.extra {
        Some(x) => (
            first(&x.pod_name),
            first(&x.pod_uid),
            first(&x.node_name),
            first(&x.credential_id),
        ),
        None => (None, None, None, None),
    };
    let (principal_type, sa_namespace) = match username.strip_prefix("system:serviceaccount:") {
        Some(rest) => (PrincipalType::K8sServiceAccount, rest.split(':').next()),
        None if username.starts_with("system:node:") => (PrincipalType::K8sNode, None),
        None => (PrincipalType::K8sUser, None),
    };

    let action = match &e.object_ref {
        Some(o) if o.resource.is_some() => {
            let resource = o.resource.as_deref().unwrap_or_default();
            match o.subresource.as_deref() {
                Some(sub) => super::concat(&[verb, ":", resource, "/", sub]),
                None => super::concat(&[verb, ":", resource]),
            }
        }
        _ => {
            let uri = required(e.request_uri.as_deref(), F, "requestURI")?;
            let path = uri.split('?').next().unwrap_or(uri);
            super::concat(&[verb, ":", path])
        }
    };
    let resource =
        e.object_ref
            .as_ref()
            .and_then(|o| match (o.namespace.as_deref(), o.name.as_deref()) {
                (Some(ns), Some(n)) => Some(super::concat(&[ns, "/", n])),
                (None, Some(n)) => Some(n.to_owned()),
                (Some(ns), None) => Some(super::concat(&[ns, "/*"])),
                (None, None) => None,
            });

    let code = e.response_status.as_ref().and_then(|s| s.code);
    let forbidden = e
        .annotations
        .as_ref()
        .and_then(|a| a.decision.as_ref())
        .is_some_and(|d| &**d == "forbid");
    let failed = code.is_some_and(|c| c >= 400) || forbidden;
    let ips = e.source_ips.as_deref().unwrap_or_default();
    // All but the last entry come from X-Forwarded-For / X-Real-Ip and are client-asserted.
    let ip = ips.first().and_then(|s| super::parse_ip(s));
    let event = AccessEvent {
        time_ms,
        format: SourceFormat::K8sAudit,
        event_id: e.audit_id.as_deref().map(str::to_owned),
        tenant: None,
        region: None,
        principal: username.to_owned(),
        principal_type,
        credential: credential_id.as_deref().map(|id| Credential {
            id: id.to_owned(),
            kind: "k8s_token",
            issued_ms: None,
            session_user_id: None,
        }),
        session_id: None,
        action,
        resource,
        permissions: Vec::new(),
        outcome: Outcome {
            success: !failed,
            error_code: failed.then(|| code.map_or_else(|| "forbid".to_owned(), |c| c.to_string())),
            denied: forbidden || matches!(code, Some(401 | 403)),
        },
        origin: Origin {
            ip,
            ip_trusted: ip.is_some() && ips.len() == 1,
            service: None,
            asn: None,
            country: None,
            user_agent: e.user_agent.as_deref().map(str::to_owned),
            vpc_endpoint: None,
            workload: Workload {
                cluster: None,
                namespace: sa_namespace.map(str::to_owned),
                node,
                pod,
                pod_uid,
                instance: None,
            },
        },
        volume: Volume::default(),
        raw,
    };
    Ok(Decoded::Event(Box::new(event)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_service_account_token_carries_its_pod_and_node() {
        let r = decode(r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete","auditID":"a1",
            "requestURI":"/api/v1/namespaces/payments/secrets/db","verb":"get",
            "user":{"username":"system:serviceaccount:payments:api","extra":{
              "authentication.kubernetes.io/pod-name":["api-7d9f8b6c5-x2k4p"],
              "authentication.kubernetes.io/pod-uid":["5e3c1a2b-7d4f-4a8e-9b1c-2f6d8e0a4c11"],
              "authentication.kubernetes.io/node-name":["node-3"],
              "authentication.kubernetes.io/credential-id":["JTI=0b0a5a4e-1f5c-4f7e-9d3a-3c2c8a6f2d11"]}},
            "sourceIPs":["10.244.3.17"],"userAgent":"api/v1.4.2 (linux/amd64) kubernetes/$Format",
            "objectRef":{"resource":"secrets","namespace":"payments","name":"db","apiVersion":"v1"},
            "responseStatus":{"code":403},"requestReceivedTimestamp":"2024-05-01T10:00:00.000000Z"}"#,
            RawRef::default(),
        )
        .unwrap();
        let Decoded::Event(e) = r else {
            panic!("expected event")
        };
        assert_eq!(e.principal, "system:serviceaccount:payments:api");
        assert_eq!(e.principal_type, PrincipalType::K8sServiceAccount);
        assert_eq!(e.action, "get:secrets");
        assert_eq!(e.resource.as_deref(), Some("payments/db"));
        assert_eq!(
            e.origin.workload.pod.as_deref(),
            Some("api-7d9f8b6c5-x2k4p")
        );
        assert_eq!(e.origin.workload.namespace.as_deref(), Some("payments"));
        assert_eq!(
            e.origin.workload.pod_uid.as_deref(),
            Some("5e3c1a2b-7d4f-4a8e-9b1c-2f6d8e0a4c11")
        );
        assert!(e.origin.workload.is_bound());
        // At the sanitising boundary a pod uid without a UUID's shape is dropped.
        let mut odd = (*e).clone();
        odd.origin.workload.pod_uid = Some("AKIAIOSFODNN7EXAMPLE".into());
        odd.sanitize(crate::event::MAX_FIELD_BYTES);
        assert_eq!(odd.origin.workload.pod_uid, None);
        assert!(e.outcome.denied);
        assert!(e.origin.ip_trusted);
        assert_eq!(
            e.credential.unwrap().id,
            "JTI=0b0a5a4e-1f5c-4f7e-9d3a-3c2c8a6f2d11"
        );
    }

    #[test]
    fn intermediate_stages_are_skipped_not_double_counted() {
        let r = decode(r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"RequestReceived","verb":"get","user":{"username":"u"},
            "requestReceivedTimestamp":"2024-05-01T10:00:00Z"}"#,
            RawRef::default(),
        )
        .unwrap();
        assert_eq!(r, Decoded::Skipped(Skip::IntermediateStage));
    }

    #[test]
    fn forwarded_addresses_are_not_trusted() {
        let r = decode(r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"get","user":{"username":"u"},"requestURI":"/healthz?x=1",
            "sourceIPs":["203.0.113.9","10.0.0.1"],"requestReceivedTimestamp":"2024-05-01T10:00:00Z"}"#,
            RawRef::default(),
        )
        .unwrap();
        let Decoded::Event(e) = r else {
            panic!("expected event")
        };
        assert_eq!(e.action, "get:/healthz");
        assert!(!e.origin.ip_trusted);
    }
}
