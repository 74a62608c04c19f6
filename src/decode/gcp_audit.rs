//! GCP Cloud Audit Logs entries (`protoPayload` of type `google.cloud.audit.AuditLog`).

use serde::Deserialize;

use super::{DecodeError, Decoded, Str, first_timestamp, lenient, required};
use crate::event::{
    AccessEvent, Credential, Origin, Outcome, PrincipalType, RawRef, SourceFormat, Volume, Workload,
};
use crate::redact::shape;

const F: &str = "GCP audit";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    #[serde(borrow)]
    insert_id: Option<Str<'a>>,
    #[serde(borrow)]
    log_name: Option<Str<'a>>,
    #[serde(borrow)]
    timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    receive_timestamp: Option<Str<'a>>,
    /// Logstash and Filebeat's own time, when a pipeline dropped the entry's timestamps.
    #[serde(
        borrow,
        rename = "@timestamp",
        default,
        deserialize_with = "lenient::str"
    )]
    pipeline_time: Option<Str<'a>>,
    #[serde(borrow)]
    resource: Option<MonitoredResource<'a>>,
    #[serde(borrow)]
    proto_payload: Option<AuditLog<'a>>,
}

#[derive(Deserialize)]
struct MonitoredResource<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    labels: Option<Labels<'a>>,
}

#[derive(Deserialize)]
struct Labels<'a> {
    #[serde(borrow)]
    project_id: Option<Str<'a>>,
    #[serde(borrow)]
    location: Option<Str<'a>>,
    #[serde(borrow)]
    region: Option<Str<'a>>,
    #[serde(borrow)]
    zone: Option<Str<'a>>,
    #[serde(borrow)]
    cluster_name: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditLog<'a> {
    status: Option<Status>,
    #[serde(borrow)]
    authentication_info: Option<AuthenticationInfo<'a>>,
    /// Not needed to attribute the call: a malformed one is treated as absent.
    #[serde(borrow, default, deserialize_with = "lenient::object")]
    request_metadata: Option<RequestMetadata<'a>>,
    #[serde(borrow)]
    service_name: Option<Str<'a>>,
    #[serde(borrow)]
    method_name: Option<Str<'a>>,
    #[serde(borrow)]
    resource_name: Option<Str<'a>>,
    /// Not needed to attribute the call: a malformed list is treated as absent.
    #[serde(borrow, default, deserialize_with = "lenient::object")]
    authorization_info: Option<Vec<AuthorizationInfo<'a>>>,
}

#[derive(Deserialize)]
struct AuthorizationInfo<'a> {
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    permission: Option<Str<'a>>,
}

/// The distinct permissions the call was checked for, in the record's order (granted or not:
/// a least-privilege policy needs what was asked for). Their shape is checked when the event
/// is sanitised.
fn permissions_of(info: Option<&[AuthorizationInfo]>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in info
        .into_iter()
        .flatten()
        .filter_map(|a| a.permission.as_deref())
    {
        if !out.iter().any(|o| o == p) && out.len() < crate::event::MAX_PERMISSIONS {
            out.push(p.to_owned());
        }
    }
    out
}

#[derive(Deserialize)]
struct Status {
    code: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthenticationInfo<'a> {
    #[serde(borrow)]
    principal_email: Option<Str<'a>>,
    #[serde(borrow)]
    principal_subject: Option<Str<'a>>,
    #[serde(borrow)]
    service_account_key_name: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestMetadata<'a> {
    #[serde(borrow)]
    caller_ip: Option<Str<'a>>,
    #[serde(borrow)]
    caller_supplied_user_agent: Option<Str<'a>>,
}

/// google.rpc.Code values that mean the caller was not allowed.
const PERMISSION_DENIED: i64 = 7;
const UNAUTHENTICATED: i64 = 16;

pub(super) fn decode(text: &str, raw: RawRef) -> Result<Decoded, DecodeError> {
    let e: Entry = super::parse(text, F)?;
    let time_ms = first_timestamp(
        F,
        &[
            ("timestamp", e.timestamp.as_deref()),
            ("receiveTimestamp", e.receive_timestamp.as_deref()),
            ("@timestamp", e.pipeline_time.as_deref()),
        ],
    )?;
    let p = required(e.proto_payload.as_ref(), F, "protoPayload")?;
    let auth = required(
        p.authentication_info.as_ref(),
        F,
        "protoPayload.authenticationInfo",
    )?;
    let principal = required(
        auth.principal_email
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(auth.principal_subject.as_deref()),
        F,
        "protoPayload.authenticationInfo.principalEmail",
    )?;
    let service = required(p.service_name.as_deref(), F, "protoPayload.serviceName")?;
    let method = required(p.method_name.as_deref(), F, "protoPayload.methodName")?;
    // A GKE cluster's audit log names the cluster; its own service accounts and nodes are
    // Kubernetes identities of that cluster, Google accounts stay Google's.
    let gke_cluster = e
        .resource
        .as_ref()
        .filter(|r| r.kind.as_deref() == Some("k8s_cluster"))
        .and_then(|r| r.labels.as_ref())
        .and_then(|l| l.cluster_name.as_deref())
        .filter(|c| shape::cluster_name(c));
    let principal_type = if principal.ends_with(".gserviceaccount.com") {
        PrincipalType::GcpServiceAccount
    } else if principal.starts_with("system:serviceaccount:") {
        PrincipalType::K8sServiceAccount
    } else if principal.starts_with("system:node:") {
        PrincipalType::K8sNode
    } else if principal.starts_with("system:") {
        PrincipalType::K8sUser
    } else {
        PrincipalType::GcpUser
    };
    let tenant = e
        .resource
        .as_ref()
        .and_then(|r| r.labels.as_ref())
        .and_then(|l| l.project_id.as_ref())
        .map(|s| s.to_string())
        .or_else(|| {
            let name = e.log_name.as_deref()?;
            let rest = name.strip_prefix("projects/")?;
            Some(rest.split('/').next()?.to_owned())
        });
    let region = e
        .resource
        .as_ref()
        .and_then(|r| r.labels.as_ref())
        .and_then(|l| {
            l.location
                .as_ref()
                .or(l.region.as_ref())
                .or(l.zone.as_ref())
        })
        .map(|s| s.to_string());
    let meta = p.request_metadata.as_ref();
    let caller = meta.and_then(|m| m.caller_ip.as_deref());
    let (ip, origin_service) = match caller {
        Some(s) => match super::parse_ip(s) {
            Some(ip) => (Some(ip), None),
            None => (None, Some(s.to_owned())),
        },
        None => (None, None),
    };
    let code = p.status.as_ref().and_then(|s| s.code).filter(|c| *c != 0);
    let mut event = AccessEvent {
        time_ms,
        format: SourceFormat::GcpAudit,
        event_id: e.insert_id.as_deref().map(str::to_owned),
        tenant,
        region,
        principal: principal.to_owned(),
        principal_type,
        credential: auth
            .service_account_key_name
            .as_deref()
            .map(|k| Credential {
                id: k.rsplit('/').next().unwrap_or(k).to_owned(),
                kind: "gcp_service_account_key",
                issued_ms: None,
                session_user_id: None,
            }),
        session_id: None,
        action: super::concat(&[service, ":", method]),
        resource: p.resource_name.as_deref().map(str::to_owned),
        permissions: permissions_of(p.authorization_info.as_deref()),
        outcome: Outcome {
            success: code.is_none(),
            error_code: code.map(|c| c.to_string()),
            denied: matches!(code, Some(PERMISSION_DENIED | UNAUTHENTICATED)),
        },
        origin: Origin {
            ip,
            ip_trusted: ip.is_some(),
            service: origin_service,
            asn: None,
            country: None,
            user_agent: meta
                .and_then(|m| m.caller_supplied_user_agent.as_deref())
                .map(str::to_owned),
            vpc_endpoint: None,
            workload: Workload::default(),
        },
        volume: Volume::default(),
        raw,
    };
    if let Some(cluster) = gke_cluster {
        event.origin.workload.namespace = principal
            .strip_prefix("system:serviceaccount:")
            .and_then(|sa| sa.split(':').next())
            .map(str::to_owned);
        event.place_in_cluster(cluster);
        event.origin.workload.cluster = Some(cluster.to_owned());
    }
    Ok(Decoded::Event(Box::new(event)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gke(principal: &str) -> AccessEvent {
        let rec = format!(
            r#"{{"insertId":"g1","logName":"projects/shop-prod/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp":"2024-03-08T18:52:52.114Z","protoPayload":{{"@type":"type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo":{{"principalEmail":"{principal}"}},"serviceName":"k8s.io",
            "methodName":"io.k8s.core.v1.secrets.list","resourceName":"core/v1/namespaces/payments/secrets",
            "requestMetadata":{{"callerIp":"10.4.0.7"}}}},
            "resource":{{"type":"k8s_cluster","labels":{{"project_id":"shop-prod","location":"europe-west1","cluster_name":"shop-eu"}}}}}}"#
        );
        match decode(&rec, RawRef::default()).unwrap() {
            Decoded::Event(e) => *e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_gke_clusters_own_identities_are_kubernetes_identities_of_that_cluster() {
        let sa = gke("system:serviceaccount:payments:api");
        assert_eq!(sa.principal, "shop-eu/system:serviceaccount:payments:api");
        assert_eq!(sa.principal_type, PrincipalType::K8sServiceAccount);
        assert_eq!(sa.provider(), "kubernetes", "revoked in the cluster");
        assert_eq!(sa.origin.workload.cluster.as_deref(), Some("shop-eu"));
        assert_eq!(sa.origin.workload.namespace.as_deref(), Some("payments"));
        assert_eq!(sa.tenant.as_deref(), Some("shop-prod"));
        // A Google account acting in the cluster stays a Google identity, unqualified.
        let user = gke("alice@example.com");
        assert_eq!(user.principal, "alice@example.com");
        assert_eq!(user.principal_type, PrincipalType::GcpUser);
        assert_eq!(user.provider(), "gcp");
        assert_eq!(user.origin.workload.cluster.as_deref(), Some("shop-eu"));
    }

    #[test]
    fn service_account_key_and_permission_denied_are_recognised() {
        let r = decode(r#"{"insertId":"x1","logName":"projects/acme-prod/logs/cloudaudit.googleapis.com%2Factivity",
            "timestamp":"2024-03-08T18:52:52.114Z","protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog",
            "status":{"code":7,"message":"PERMISSION_DENIED"},
            "authenticationInfo":{"principalEmail":"etl@acme-prod.iam.gserviceaccount.com",
              "serviceAccountKeyName":"//iam.googleapis.com/projects/acme-prod/serviceAccounts/etl@acme-prod.iam.gserviceaccount.com/keys/abc123"},
            "requestMetadata":{"callerIp":"198.51.100.7","callerSuppliedUserAgent":"google-cloud-sdk gcloud/460.0.0"},
            "serviceName":"iam.googleapis.com","methodName":"google.iam.admin.v1.CreateServiceAccountKey",
            "resourceName":"projects/-/serviceAccounts/123"}}"#,
            RawRef::default(),
        )
        .unwrap();
        let Decoded::Event(e) = r else {
            panic!("expected event")
        };
        assert_eq!(e.principal_type, PrincipalType::GcpServiceAccount);
        assert_eq!(e.tenant.as_deref(), Some("acme-prod"));
        assert_eq!(e.credential.unwrap().id, "abc123");
        assert_eq!(
            e.action,
            "iam.googleapis.com:google.iam.admin.v1.CreateServiceAccountKey"
        );
        assert!(e.outcome.denied);
    }

    #[test]
    fn the_permissions_a_call_was_checked_for_are_kept_when_they_have_a_permissions_shape() {
        let with = |info: &str| {
            let rec = format!(
                r#"{{"timestamp":"2024-03-08T18:52:52Z","protoPayload":{{
                "authenticationInfo":{{"principalEmail":"ci@acme-prod.iam.gserviceaccount.com"}},
                "serviceName":"compute.googleapis.com","methodName":"v1.compute.instances.insert",
                "authorizationInfo":{info}}}}}"#
            );
            let Decoded::Event(mut e) = decode(&rec, RawRef::default()).unwrap() else {
                panic!("expected event")
            };
            e.sanitize(crate::event::MAX_FIELD_BYTES);
            e.permissions
        };
        assert_eq!(
            with(
                r#"[{"permission":"compute.instances.create","granted":true},
                {"permission":"compute.disks.create","granted":true},
                {"permission":"compute.instances.create"},
                {"permission":"AKIAIOSFODNN7EXAMPLE"}, {"permission":"iam.Zx8Qw3Lk9Vb2Nm7Rt5Yp1Hs4Jd6Fg0Ck3Xe9Ua2Wq.get"},
                {"permission":7}, {"granted":true}]"#
            ),
            ["compute.instances.create", "compute.disks.create"]
        );
        // A permission's shape around a token is no permission.
        assert!(crate::redact::looks_secret(
            "iam.Zx8Qw3Lk9Vb2Nm7Rt5Yp1Hs4Jd6Fg0Ck3Xe9Ua2Wq.get"
        ));
        // A malformed list costs the permissions, not the event.
        assert!(with(r#""not a list""#).is_empty());
    }

    #[test]
    fn missing_principal_names_the_field() {
        let err = decode(r#"{"timestamp":"2024-03-08T18:52:52Z","protoPayload":{"authenticationInfo":{},"serviceName":"s","methodName":"m"}}"#,
            RawRef::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `protoPayload.authenticationInfo.principalEmail` missing in GCP audit record"
        );
    }
}
