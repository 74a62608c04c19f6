//! driftwatch's own event format (`schemas/access-event.v1.json`), for any source mapped upstream.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Deserialize;

use super::{DecodeError, Decoded, Str, time::parse_timestamp_ms};
use crate::event::{
    AccessEvent, Credential, Origin, Outcome, PrincipalType, RawRef, SourceFormat, Volume, Workload,
};

const F: &str = "native";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Native<'a> {
    #[serde(default, borrow)]
    schema: Option<Str<'a>>,
    time: Time<'a>,
    #[serde(default, borrow)]
    event_id: Option<Str<'a>>,
    #[serde(default, borrow)]
    tenant: Option<Str<'a>>,
    #[serde(default, borrow)]
    region: Option<Str<'a>>,
    #[serde(borrow, deserialize_with = "super::object::required")]
    principal: Principal<'a>,
    #[serde(default, borrow, deserialize_with = "super::object::optional")]
    credential: Option<Cred<'a>>,
    #[serde(default, borrow)]
    session_id: Option<Str<'a>>,
    #[serde(borrow)]
    action: Str<'a>,
    #[serde(default, borrow)]
    resource: Option<Str<'a>>,
    #[serde(default, borrow, deserialize_with = "super::object::optional")]
    outcome: Option<NativeOutcome<'a>>,
    #[serde(default, borrow, deserialize_with = "super::object::optional")]
    origin: Option<NativeOrigin<'a>>,
    #[serde(default, deserialize_with = "super::object::optional")]
    volume: Option<NativeVolume>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Time<'a> {
    EpochMs(i64),
    Text(#[serde(borrow)] Cow<'a, str>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Principal<'a> {
    #[serde(borrow)]
    key: Str<'a>,
    #[serde(default, borrow, rename = "type")]
    kind: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cred<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(default, borrow, rename = "type")]
    kind: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeOutcome<'a> {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default, borrow)]
    error_code: Option<Str<'a>>,
    #[serde(default)]
    denied: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeOrigin<'a> {
    #[serde(default, borrow)]
    ip: Option<Str<'a>>,
    #[serde(default)]
    ip_trusted: Option<bool>,
    #[serde(default)]
    asn: Option<u32>,
    #[serde(default, borrow)]
    country: Option<Str<'a>>,
    #[serde(default, borrow)]
    user_agent: Option<Str<'a>>,
    #[serde(default, borrow)]
    vpc_endpoint: Option<Str<'a>>,
    #[serde(default, borrow, deserialize_with = "super::object::optional")]
    workload: Option<NativeWorkload<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeWorkload<'a> {
    #[serde(default, borrow)]
    cluster: Option<Str<'a>>,
    #[serde(default, borrow)]
    namespace: Option<Str<'a>>,
    #[serde(default, borrow)]
    node: Option<Str<'a>>,
    #[serde(default, borrow)]
    pod: Option<Str<'a>>,
    #[serde(default, borrow)]
    instance: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeVolume {
    #[serde(default)]
    requests: Option<u32>,
    #[serde(default)]
    bytes_in: Option<u64>,
    #[serde(default)]
    bytes_out: Option<u64>,
}

/// Credential types a native record may declare; others become `credential`.
pub fn credential_kind(s: Option<&str>) -> &'static str {
    match s {
        Some("aws_access_key") => "aws_access_key",
        Some("aws_session_key") => "aws_session_key",
        Some("k8s_token") => "k8s_token",
        Some("gcp_service_account_key") => "gcp_service_account_key",
        Some("api_key") => "api_key",
        Some("oauth_client") => "oauth_client",
        _ => "credential",
    }
}

pub(super) fn decode(text: &str, raw: RawRef) -> Result<Decoded, DecodeError> {
    let n: Native = super::parse(text, F)?;
    if let Some(schema) = n.schema.as_deref()
        && schema != "driftwatch.access-event.v1"
    {
        return Err(DecodeError::InvalidField {
            format: F,
            field: "schema",
            reason: "unsupported schema, expected `driftwatch.access-event.v1`".to_owned(),
        });
    }
    let time_ms = match n.time {
        Time::EpochMs(ms) => ms,
        Time::Text(s) => parse_timestamp_ms(&s).ok_or_else(|| DecodeError::InvalidField {
            format: F,
            field: "time",
            reason: "expected RFC 3339 text or epoch milliseconds".to_owned(),
        })?,
    };
    if n.principal.key.is_empty() {
        return Err(DecodeError::InvalidField {
            format: F,
            field: "principal.key",
            reason: "empty".to_owned(),
        });
    }
    if !n.action.contains(':') {
        return Err(DecodeError::InvalidField {
            format: F,
            field: "action",
            reason: "not of the form `service:operation`".to_owned(),
        });
    }
    let o = n.origin.unwrap_or(NativeOrigin {
        ip: None,
        ip_trusted: None,
        asn: None,
        country: None,
        user_agent: None,
        vpc_endpoint: None,
        workload: None,
    });
    let ip = match o.ip.as_deref() {
        Some(s) => Some(s.parse::<IpAddr>().map_err(|_| DecodeError::InvalidField {
            format: F,
            field: "origin.ip",
            reason: "not an IPv4 or IPv6 address".to_owned(),
        })?),
        None => None,
    };
    let w = o.workload.as_ref();
    let outcome = n.outcome.as_ref();
    let error_code = outcome
        .and_then(|o| o.error_code.as_deref())
        .map(str::to_owned);
    let vol = n.volume.as_ref();
    if vol.and_then(|v| v.requests) == Some(0) {
        return Err(DecodeError::InvalidField {
            format: F,
            field: "volume.requests",
            reason:
                "must be at least 1 (the schema's minimum): a record stands for one or more calls"
                    .to_owned(),
        });
    }
    let event = AccessEvent {
        time_ms,
        format: SourceFormat::Native,
        event_id: n.event_id.as_deref().map(str::to_owned),
        tenant: n.tenant.as_deref().map(str::to_owned),
        region: n.region.as_deref().map(str::to_owned),
        principal: n.principal.key.0.into_owned(),
        principal_type: n
            .principal
            .kind
            .as_deref()
            .map_or(PrincipalType::Other, PrincipalType::parse),
        credential: n.credential.map(|c| Credential {
            id: c.id.to_string(),
            kind: credential_kind(c.kind.as_deref()),
            issued_ms: None,
            session_user_id: None,
        }),
        session_id: n.session_id.as_deref().map(str::to_owned),
        action: n.action.0.into_owned(),
        resource: n.resource.as_deref().map(str::to_owned),
        permissions: Vec::new(),
        outcome: Outcome {
            success: outcome
                .and_then(|o| o.success)
                .unwrap_or(error_code.is_none()),
            denied: outcome.and_then(|o| o.denied).unwrap_or(false),
            error_code,
        },
        origin: Origin {
            ip,
            ip_trusted: o.ip_trusted.unwrap_or(ip.is_some()),
            service: None,
            asn: o.asn,
            country: o.country.as_deref().map(str::to_owned),
            user_agent: o.user_agent.as_deref().map(str::to_owned),
            vpc_endpoint: o.vpc_endpoint.as_deref().map(str::to_owned),
            workload: Workload {
                cluster: w.and_then(|w| w.cluster.as_deref()).map(str::to_owned),
                namespace: w.and_then(|w| w.namespace.as_deref()).map(str::to_owned),
                node: w.and_then(|w| w.node.as_deref()).map(str::to_owned),
                pod: w.and_then(|w| w.pod.as_deref()).map(str::to_owned),
                pod_uid: None,
                instance: w.and_then(|w| w.instance.as_deref()).map(str::to_owned),
            },
        },
        volume: Volume {
            requests: vol.and_then(|v| v.requests).unwrap_or(1),
            bytes_in: vol.and_then(|v| v.bytes_in),
            bytes_out: vol.and_then(|v| v.bytes_out),
        },
        raw,
    };
    Ok(Decoded::Event(Box::new(event)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_enforced_objects_are_objects_and_a_record_counts_one_call_or_more() {
        let bad = [
            r#"{"time":1767225600000,"principal":["k","service"],"action":"s3:GetObject"}"#,
            r#"{"time":1767225600000,"principal":{"key":"k"},"action":"s3:GetObject","origin":["1.2.3.4"]}"#,
            r#"{"time":1767225600000,"principal":{"key":"k"},"action":"s3:GetObject","volume":{"requests":0}}"#,
        ];
        for rec in bad {
            let e = decode(rec, RawRef::default()).unwrap_err();
            assert_eq!(e.code(), "invalid_field", "{rec}: {e}");
        }
    }

    #[test]
    fn native_record_with_asn_country_and_volume_decodes() {
        let r = decode(r#"{"schema":"driftwatch.access-event.v1","time":"2024-05-01T10:00:00Z",
            "principal":{"key":"partner-acme","type":"other"},"credential":{"id":"key-17","type":"api_key"},
            "action":"api.example.com:GET /v1/invoices","origin":{"ip":"198.51.100.4","asn":64500,"country":"NL","user_agent":"acme-sync/2.1"},
            "volume":{"requests":3,"bytes_out":4096}}"#,
            RawRef::default(),
        )
        .unwrap();
        let Decoded::Event(e) = r else {
            panic!("expected event")
        };
        assert_eq!(e.origin.asn, Some(64500));
        assert_eq!(e.volume.requests, 3);
        assert_eq!(e.credential.unwrap().kind, "api_key");
    }

    #[test]
    fn unknown_fields_and_bad_actions_are_rejected_with_their_names() {
        let err = decode(
            r#"{"time":0,"principal":{"key":"k"},"action":"a:b","colour":"red"}"#,
            RawRef::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = decode(
            r#"{"time":0,"principal":{"key":"k"},"action":"nocolon"}"#,
            RawRef::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`action`"), "{err}");
    }
}
