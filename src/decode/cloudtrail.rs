//! AWS CloudTrail records (one event object; containers are expanded by the caller).

use serde::Deserialize;

use super::{DecodeError, Decoded, Skip, Str, first_timestamp, lenient, required};
use crate::event::{
    AccessEvent, Credential, Origin, Outcome, PrincipalType, RawRef, SourceFormat, Volume, Workload,
};

const F: &str = "CloudTrail";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    #[serde(borrow)]
    event_time: Option<Str<'a>>,
    /// Logstash and Filebeat replace or shadow `eventTime` with their own `@timestamp`.
    #[serde(
        borrow,
        rename = "@timestamp",
        default,
        deserialize_with = "lenient::str"
    )]
    pipeline_time: Option<Str<'a>>,
    #[serde(borrow)]
    event_source: Option<Str<'a>>,
    #[serde(borrow)]
    event_name: Option<Str<'a>>,
    #[serde(borrow, rename = "eventID")]
    event_id: Option<Str<'a>>,
    #[serde(borrow, rename = "sourceIPAddress")]
    source_ip_address: Option<Str<'a>>,
    #[serde(borrow)]
    user_agent: Option<Str<'a>>,
    #[serde(borrow)]
    error_code: Option<Str<'a>>,
    #[serde(borrow)]
    recipient_account_id: Option<Str<'a>>,
    #[serde(borrow)]
    aws_region: Option<Str<'a>>,
    #[serde(borrow)]
    vpc_endpoint_id: Option<Str<'a>>,
    #[serde(borrow)]
    user_identity: Option<UserIdentity<'a>>,
    #[serde(borrow)]
    request_parameters: Option<RequestParameters<'a>>,
    additional_event_data: Option<AdditionalEventData>,
    #[serde(borrow)]
    resources: Option<Vec<Resource<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserIdentity<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    arn: Option<Str<'a>>,
    #[serde(borrow)]
    account_id: Option<Str<'a>>,
    #[serde(borrow)]
    access_key_id: Option<Str<'a>>,
    #[serde(borrow)]
    principal_id: Option<Str<'a>>,
    #[serde(borrow)]
    invoked_by: Option<Str<'a>>,
    #[serde(borrow)]
    session_context: Option<SessionContext<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionContext<'a> {
    #[serde(borrow)]
    session_issuer: Option<SessionIssuer<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    ec2_role_delivery: Option<Str<'a>>,
    /// Any value: a malformed one counts as absent.
    #[serde(borrow, default)]
    attributes: Option<SessionAttributes<'a>>,
}

/// A session's attributes: only `creationDate` is read, and anything else than an object
/// counts as empty. Read in one pass (serde's `untagged` would copy the object first).
#[derive(Default)]
struct SessionAttributes<'a> {
    creation_date: Option<Str<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for SessionAttributes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
        struct Lenient;
        impl<'de> DeserializeSeed<'de> for Lenient {
            type Value = Option<Str<'de>>;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                lenient::str(d)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SessionAttributes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = SessionAttributes::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    if &*key == "creationDate" {
                        out.creation_date = map.next_value_seed(Lenient)?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
            lenient::absent_for_other_values!(SessionAttributes::default(), V);
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(SessionAttributes::default())
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct SessionIssuer<'a> {
    #[serde(borrow)]
    arn: Option<Str<'a>>,
}

/// The request parameters that name the resource a call touched; all others are skipped unread.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestParameters<'a> {
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    secret_id: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    bucket_name: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    key: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    role_name: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    user_name: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    policy_arn: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    function_name: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    table_name: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    queue_url: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::str")]
    name: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdditionalEventData {
    bytes_transferred_out: Option<f64>,
    bytes_transferred_in: Option<f64>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(borrow, rename = "ARN")]
    arn: Option<Str<'a>>,
}

pub(super) fn decode(text: &str, raw: RawRef) -> Result<Decoded, DecodeError> {
    let r: Record = super::parse(text, F)?;
    let time_ms = first_timestamp(
        F,
        &[
            ("eventTime", r.event_time.as_deref()),
            ("@timestamp", r.pipeline_time.as_deref()),
        ],
    )?;
    let source = required(r.event_source.as_deref(), F, "eventSource")?;
    let name = required(r.event_name.as_deref(), F, "eventName")?;
    let Some(ui) = r.user_identity else {
        return Ok(Decoded::Skipped(Skip::NoCaller));
    };
    let kind = ui.kind.as_deref().unwrap_or("");
    let (principal, principal_type) = principal_of(kind, &ui)?;

    let access_key = ui.access_key_id.as_deref().filter(|k| !k.is_empty());
    let session_arn = if kind == "AssumedRole" {
        ui.arn.as_deref()
    } else {
        None
    };
    let session = ui.session_context.as_ref();
    // A malformed creation date costs the cutoff, not the event.
    let issued_ms = session
        .and_then(|c| c.attributes.as_ref())
        .and_then(|a| a.creation_date.as_deref())
        .and_then(super::time::parse_timestamp_ms);
    let credential = access_key.map(|k| {
        let temporary = k.starts_with("ASIA");
        Credential {
            id: k.to_owned(),
            kind: if temporary {
                "aws_session_key"
            } else {
                "aws_access_key"
            },
            issued_ms: issued_ms.filter(|_| temporary),
            // Checked for its shape when the event is sanitised.
            session_user_id: session_arn
                .and(ui.principal_id.as_deref())
                .map(str::to_owned),
        }
    });
    let session_name = session_arn.and_then(|a| a.rsplit('/').next());
    let delivered_to_instance = session.is_some_and(|c| c.ec2_role_delivery.is_some());
    // An ECS task-role session is named after the task; a 32-hex name alone could be any
    // caller's, so the client must also say it runs in ECS (the SDKs add `exec-env/AWS_ECS_*`).
    let in_ecs = r
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.contains("exec-env/AWS_ECS"));
    let instance = session_name
        .filter(|s| delivered_to_instance || is_instance_id(s) || (in_ecs && is_ecs_task_id(s)))
        .map(str::to_owned);

    let (ip, service) = match r.source_ip_address.as_deref() {
        Some(s) => match super::parse_ip(s) {
            Some(ip) => (Some(ip), None),
            None => (None, Some(s.to_owned())),
        },
        None => (None, None),
    };
    let error_code = r.error_code.as_deref().filter(|c| !c.is_empty());
    let denied = error_code.is_some_and(is_denied);
    let ad = r.additional_event_data.as_ref();
    let event = AccessEvent {
        time_ms,
        format: SourceFormat::Cloudtrail,
        event_id: r.event_id.as_deref().map(str::to_owned),
        tenant: r
            .recipient_account_id
            .as_deref()
            .or(ui.account_id.as_deref())
            .map(str::to_owned),
        region: r.aws_region.as_deref().map(str::to_owned),
        principal,
        principal_type,
        credential,
        session_id: session_arn.map(str::to_owned),
        action: super::concat(&[source, ":", name]),
        resource: resource_of(
            r.request_parameters.as_ref(),
            r.resources.as_deref(),
            r.recipient_account_id
                .as_deref()
                .or(ui.account_id.as_deref())
                .filter(|a| a.len() == 12 && a.bytes().all(|c| c.is_ascii_digit())),
            r.aws_region
                .as_deref()
                .filter(|r| crate::redact::shape::cloud_region(r)),
        ),
        permissions: Vec::new(),
        outcome: Outcome {
            success: error_code.is_none(),
            error_code: error_code.map(str::to_owned),
            denied,
        },
        origin: Origin {
            ip,
            ip_trusted: ip.is_some(),
            service,
            asn: None,
            country: None,
            user_agent: r.user_agent.as_deref().map(str::to_owned),
            vpc_endpoint: r.vpc_endpoint_id.as_deref().map(str::to_owned),
            workload: Workload {
                instance,
                ..Workload::default()
            },
        },
        volume: Volume {
            requests: 1,
            bytes_in: ad
                .and_then(|a| a.bytes_transferred_in)
                .map(|b| b.max(0.0) as u64),
            bytes_out: ad
                .and_then(|a| a.bytes_transferred_out)
                .map(|b| b.max(0.0) as u64),
        },
        raw,
    };
    Ok(Decoded::Event(Box::new(event)))
}

/// Principal key rules (schemas/README.md): roles are the identity, not their sessions.
fn principal_of(kind: &str, ui: &UserIdentity) -> Result<(String, PrincipalType), DecodeError> {
    match kind {
        "AssumedRole" => {
            let issuer = ui
                .session_context
                .as_ref()
                .and_then(|c| c.session_issuer.as_ref())
                .and_then(|i| i.arn.as_deref());
            if let Some(arn) = issuer {
                return Ok((arn.to_owned(), PrincipalType::AwsRole));
            }
            // Older or trimmed records lack the session issuer; the role is recoverable from the
            // session ARN `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` (without its path).
            let session = required(
                ui.arn.as_deref(),
                F,
                "userIdentity.sessionContext.sessionIssuer.arn",
            )?;
            role_from_session_arn(session)
                .map(|r| (r, PrincipalType::AwsRole))
                .ok_or(DecodeError::InvalidField {
                    format: F,
                    field: "userIdentity.arn",
                    reason: "assumed-role ARN without a role name and no sessionContext.sessionIssuer.arn".to_owned(),
                })
        }
        "IAMUser" => Ok((
            required(ui.arn.as_deref(), F, "userIdentity.arn")?.to_owned(),
            PrincipalType::AwsUser,
        )),
        "Root" => Ok((
            required(ui.arn.as_deref(), F, "userIdentity.arn")?.to_owned(),
            PrincipalType::AwsRoot,
        )),
        "AWSService" => Ok((
            required(ui.invoked_by.as_deref(), F, "userIdentity.invokedBy")?.to_owned(),
            PrincipalType::AwsService,
        )),
        _ => {
            let key = ui
                .arn
                .as_deref()
                .or(ui.principal_id.as_deref())
                .or(ui.invoked_by.as_deref());
            Ok((
                required(key, F, "userIdentity.arn")?.to_owned(),
                PrincipalType::AwsOther,
            ))
        }
    }
}

fn role_from_session_arn(arn: &str) -> Option<String> {
    let (prefix, rest) = arn.split_once(":assumed-role/")?;
    let role = rest.split('/').next().filter(|r| !r.is_empty())?;
    let account = prefix.rsplit(':').next()?;
    let partition = prefix.split(':').nth(1).unwrap_or("aws");
    Some(format!("arn:{partition}:iam::{account}:role/{role}"))
}

fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-")
        .is_some_and(|h| (8..=17).contains(&h.len()) && h.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// ECS task-role sessions are named after the task: its id, 32 lower-case hex digits.
fn is_ecs_task_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

fn is_denied(code: &str) -> bool {
    code.contains("AccessDenied")
        || code.contains("Unauthorized")
        || code.contains("NotAuthorized")
        || code == "Forbidden"
}

/// The resource a call touched, as an ARN where the record names it or says enough to build it
/// (the call's account and region); a bare name otherwise.
fn resource_of(
    p: Option<&RequestParameters>,
    resources: Option<&[Resource]>,
    account: Option<&str>,
    region: Option<&str>,
) -> Option<String> {
    let partition = match region {
        Some(r) if r.starts_with("cn-") => "aws-cn",
        Some(r) if r.starts_with("us-gov-") => "aws-us-gov",
        _ => "aws",
    };
    let arn = |v: &str, build: &dyn Fn(&str) -> Option<String>| {
        if v.starts_with("arn:") {
            Some(v.to_owned())
        } else {
            build(v).or_else(|| Some(v.to_owned()))
        }
    };
    let regional = |service: &str, kind: &str, v: &str| {
        Some(format!(
            "arn:{partition}:{service}:{}:{}:{kind}{v}",
            region?, account?
        ))
    };
    if let Some(p) = p {
        if let Some(bucket) = p.bucket_name.as_deref() {
            return Some(match p.key.as_deref() {
                Some(k) => format!("arn:{partition}:s3:::{bucket}/{k}"),
                None => format!("arn:{partition}:s3:::{bucket}"),
            });
        }
        let global =
            |kind: &str, v: &str| Some(format!("arn:{partition}:iam::{}:{kind}/{v}", account?));
        if let Some(v) = p.secret_id.as_deref() {
            return arn(v, &|v| regional("secretsmanager", "secret:", v));
        }
        if let Some(v) = p.role_name.as_deref() {
            return arn(v, &|v| global("role", v));
        }
        if let Some(v) = p.user_name.as_deref() {
            return arn(v, &|v| global("user", v));
        }
        if let Some(v) = p.policy_arn.as_deref() {
            return Some(v.to_owned());
        }
        if let Some(v) = p.function_name.as_deref() {
            return arn(v, &|v| regional("lambda", "function:", v));
        }
        if let Some(v) = p.table_name.as_deref() {
            return arn(v, &|v| regional("dynamodb", "table/", v));
        }
        if let Some(v) = p.queue_url.as_deref() {
            return arn(v, &|v| {
                // https://sqs.REGION.amazonaws.com/ACCOUNT/NAME
                let path = v.split_once("amazonaws.com/")?.1;
                let (acct, name) = path.split_once('/')?;
                let region = region?;
                let ok = acct.len() == 12 && acct.bytes().all(|c| c.is_ascii_digit());
                (ok && !name.is_empty() && !name.contains('/'))
                    .then(|| format!("arn:{partition}:sqs:{region}:{acct}:{name}"))
            });
        }
        if let Some(v) = p.name.as_deref() {
            return Some(v.to_owned());
        }
    }
    resources?
        .iter()
        .find_map(|r| r.arn.as_deref())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_str(s: &str) -> AccessEvent {
        match decode(s, RawRef::default()).expect("decodes") {
            Decoded::Event(e) => *e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn assumed_role_is_keyed_by_issuing_role_not_session() {
        let e = decode_str(
            r#"{"eventTime":"2024-07-31T12:36:52Z","eventSource":"s3.amazonaws.com","eventName":"GetObject",
            "sourceIPAddress":"10.1.2.3","userAgent":"Boto3/1.34.2",
            "userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/app/i-0abc12345def67890",
              "accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::111122223333:role/app"},"ec2RoleDelivery":"2.0"}},
            "requestParameters":{"bucketName":"data","key":"a.csv"},"additionalEventData":{"bytesTransferredOut":1024.0},
            "recipientAccountId":"111122223333"}"#,
        );
        assert_eq!(e.principal, "arn:aws:iam::111122223333:role/app");
        assert_eq!(e.principal_type, PrincipalType::AwsRole);
        assert_eq!(e.credential.as_ref().unwrap().kind, "aws_session_key");
        assert_eq!(
            e.origin.workload.instance.as_deref(),
            Some("i-0abc12345def67890")
        );
        assert_eq!(e.volume.bytes_out, Some(1024));
        assert_eq!(e.resource.as_deref(), Some("arn:aws:s3:::data/a.csv"));
        assert_eq!(e.tenant.as_deref(), Some("111122223333"));
    }

    #[test]
    fn a_role_sessions_caller_id_and_issue_time_are_kept_for_a_session_scoped_revocation() {
        let with = |principal_id: &str, created: &str| {
            let mut e = decode_str(&format!(
                r#"{{"eventTime":"2024-07-31T12:36:52Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets",
                "userIdentity":{{"type":"AssumedRole","principalId":"{principal_id}",
                  "arn":"arn:aws:sts::111122223333:assumed-role/app/deploy-42","accessKeyId":"ASIAY34FZKBOKMUTVV7A",
                  "sessionContext":{{"sessionIssuer":{{"arn":"arn:aws:iam::111122223333:role/app"}},
                    "attributes":{{"creationDate":"{created}","mfaAuthenticated":"false"}}}}}}}}"#
            ));
            e.sanitize(crate::event::MAX_FIELD_BYTES);
            e.credential.unwrap()
        };
        let c = with("AROAY34FZKBOKMUTVV7A1:deploy-42", "2024-07-31T12:01:00Z");
        assert_eq!(
            c.session_user_id.as_deref(),
            Some("AROAY34FZKBOKMUTVV7A1:deploy-42")
        );
        assert_eq!(c.issued_ms, Some(1_722_427_260_000));
        // Record text without the shape is not carried; a bad date costs the cutoff only.
        let c = with("ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tV9wX1yZ3b5D", "yesterday");
        assert_eq!(c.session_user_id, None);
        assert_eq!(c.issued_ms, None);
    }

    #[test]
    fn session_attributes_and_lenient_fields_of_any_json_type_cost_only_themselves() {
        let with = |attributes: &str, timestamp: &str| {
            decode_str(&format!(
                r#"{{"eventTime":"2024-07-31T12:36:52Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets",
                "@timestamp":{timestamp},"userIdentity":{{"type":"AssumedRole",
                  "arn":"arn:aws:sts::111122223333:assumed-role/app/deploy-42","accessKeyId":"ASIAY34FZKBOKMUTVV7A",
                  "sessionContext":{{"sessionIssuer":{{"arn":"arn:aws:iam::111122223333:role/app"}},
                    "attributes":{attributes}}}}}}}"#
            ))
        };
        for odd in [
            "null",
            "true",
            "-1.5e3",
            "18446744073709551615",
            r#""2024-07-31T12:01:00Z""#,
            r#"["2024-07-31T12:01:00Z",{"a":[1,{"b":null}]}]"#,
            r#"{"mfaAuthenticated":{"x":[1,2]},"creationDate":7}"#,
            r#"{"creationDate":["2024-07-31T12:01:00Z"]}"#,
        ] {
            let e = with(odd, odd);
            assert_eq!(e.credential.unwrap().issued_ms, None, "{odd}");
            assert_eq!(e.time_ms, 1_722_429_412_000, "{odd}");
        }
        let e = with(
            r#"{"a":{"creationDate":"1999-01-01T00:00:00Z"},"creationDate":"2024-07-31T12:01:00\u005A"}"#,
            r#""2024-07-31T12:36:52Z""#,
        );
        assert_eq!(
            e.credential.unwrap().issued_ms,
            Some(1_722_427_260_000),
            "an escaped string is read too, and only the attributes' own key counts"
        );
    }

    #[test]
    fn resources_are_named_by_arn_built_from_the_calls_account_and_region() {
        let with = |params: &str, account: &str| {
            decode_str(&format!(
                r#"{{"eventTime":"2024-07-31T12:36:52Z","eventSource":"iam.amazonaws.com","eventName":"X",
                "awsRegion":"eu-west-1","recipientAccountId":"{account}","requestParameters":{params},
                "userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/u"}}}}"#
            ))
            .resource
        };
        let a = "111122223333";
        let cases = [
            (
                r#"{"roleName":"deployer","policyArn":"arn:aws:iam::aws:policy/X"}"#,
                "arn:aws:iam::111122223333:role/deployer",
            ),
            (r#"{"userName":"ci"}"#, "arn:aws:iam::111122223333:user/ci"),
            (
                r#"{"secretId":"prod/db"}"#,
                "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db",
            ),
            (
                r#"{"functionName":"resize"}"#,
                "arn:aws:lambda:eu-west-1:111122223333:function:resize",
            ),
            (
                r#"{"tableName":"orders"}"#,
                "arn:aws:dynamodb:eu-west-1:111122223333:table/orders",
            ),
            (
                r#"{"queueUrl":"https://sqs.eu-west-1.amazonaws.com/444455556666/jobs"}"#,
                "arn:aws:sqs:eu-west-1:444455556666:jobs",
            ),
            (
                r#"{"functionName":"arn:aws:lambda:us-east-1:444455556666:function:f"}"#,
                "arn:aws:lambda:us-east-1:444455556666:function:f",
            ),
            (r#"{"bucketName":"data"}"#, "arn:aws:s3:::data"),
        ];
        for (params, want) in cases {
            assert_eq!(with(params, a).as_deref(), Some(want), "{params}");
        }
        // Without a valid account, a name stays a name: no ARN is guessed.
        assert_eq!(
            with(r#"{"roleName":"deployer"}"#, "not-an-account").as_deref(),
            Some("deployer")
        );
    }

    #[test]
    fn the_region_is_kept_only_when_it_has_a_regions_shape() {
        // As every decoder's events are: through the sanitising boundary.
        let with = |region: &str| {
            let mut e = decode_str(&format!(
                r#"{{"eventTime":"2024-07-31T12:36:52Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity",
                "awsRegion":"{region}","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/u"}}}}"#
            ));
            e.sanitize(crate::event::MAX_FIELD_BYTES);
            e.region
        };
        assert_eq!(with("eu-west-1").as_deref(), Some("eu-west-1"));
        assert_eq!(with("us-gov-west-1").as_deref(), Some("us-gov-west-1"));
        assert_eq!(with("AKIAIOSFODNN7EXAMPLE"), None);
        assert_eq!(with("eu west 1; drop"), None);
    }

    #[test]
    fn assumed_role_without_session_issuer_falls_back_to_role_from_session_arn() {
        let e = decode_str(
            r#"{"eventTime":"2024-07-31T12:36:52Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity",
            "userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/ci-deploy/gh-run-42"}}"#,
        );
        assert_eq!(e.principal, "arn:aws:iam::111122223333:role/ci-deploy");
    }

    #[test]
    fn aws_service_is_keyed_by_invoked_by_and_non_ip_sources_are_services() {
        let e = decode_str(
            r#"{"eventTime":"2024-07-31T12:36:52Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt",
            "sourceIPAddress":"AWS Internal","userIdentity":{"type":"AWSService","invokedBy":"lambda.amazonaws.com"},
            "errorCode":"AccessDenied"}"#,
        );
        assert_eq!(e.principal, "lambda.amazonaws.com");
        assert_eq!(e.origin.ip, None);
        assert_eq!(e.origin.service.as_deref(), Some("AWS Internal"));
        assert!(e.outcome.denied && !e.outcome.success);
    }

    #[test]
    fn missing_event_time_names_the_field() {
        let err = decode(r#"{"eventSource":"s3.amazonaws.com","eventName":"X","userIdentity":{"type":"IAMUser","arn":"a"}}"#, RawRef::default())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `eventTime` missing in CloudTrail record"
        );
    }

    #[test]
    fn iam_user_without_arn_names_the_field() {
        let err = decode(r#"{"eventTime":"2024-07-31T12:36:52Z","eventSource":"s3.amazonaws.com","eventName":"X","userIdentity":{"type":"IAMUser"}}"#,
            RawRef::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            DecodeError::MissingField {
                format: F,
                field: "userIdentity.arn"
            }
        );
    }
}
