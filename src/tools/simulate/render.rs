//! Simulated calls rendered as the records real pipelines deliver: CloudTrail records and
//! Kubernetes audit events.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::{Call, Ident, Kind, format_rfc3339_ms, hex, uuid};

pub(super) fn render_cloudtrail(rng: &mut ChaCha8Rng, id: &Ident, c: &Call) -> Value {
    let (source, name) = c
        .action
        .split_once(':')
        .unwrap_or(("unknown.amazonaws.com", "Unknown"));
    let user_identity = if id.kind.is_user() {
        json!({"type": "IAMUser", "principalId": format!("AIDA{}", &id.access_key[4..]), "arn": id.key, "accountId": id.account,
               "accessKeyId": id.access_key, "userName": id.key.rsplit('/').next()})
    } else {
        let role = id.key.rsplit('/').next().unwrap_or_default();
        let session = c.session.clone().unwrap_or_else(|| "session".into());
        let mut ctx = json!({"sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLE", "arn": id.key, "accountId": id.account, "userName": role},
                             "attributes": {"creationDate": format_rfc3339_ms(c.t - 600_000), "mfaAuthenticated": "false"}});
        if id.kind == Kind::Ec2Role {
            ctx["ec2RoleDelivery"] = json!("2.0");
        }
        json!({"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:{session}"),
               "arn": format!("arn:aws:sts::{}:assumed-role/{}/{}", id.account, role, session), "accountId": id.account,
               "accessKeyId": format!("ASIA{}", hex(rng, 16).to_uppercase()), "sessionContext": ctx})
    };
    let mut r = json!({
        "eventVersion": "1.09",
        "userIdentity": user_identity,
        "eventTime": chrono::DateTime::from_timestamp_millis(c.t).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        "eventSource": source,
        "eventName": name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": c.ip,
        "userAgent": c.ua,
        "requestParameters": null,
        "responseElements": null,
        "requestID": uuid(rng),
        "eventID": uuid(rng),
        "readOnly": name.starts_with("Get") || name.starts_with("List") || name.starts_with("Describe"),
        "eventType": "AwsApiCall",
        "managementEvent": !source.starts_with("s3."),
        "recipientAccountId": id.account,
        "eventCategory": if source.starts_with("s3.") { "Data" } else { "Management" },
    });
    if let Some(e) = c.error {
        r["errorCode"] = json!(e);
        r["errorMessage"] = json!(format!("User is not authorized to perform: {}", c.action));
    }
    if source.starts_with("s3.") {
        r["requestParameters"] = json!({"bucketName": format!("{}-data", id.name), "key": format!("part-{}.parquet", rng.random_range(0..5000))});
    }
    if let Some(b) = c.bytes_out {
        r["additionalEventData"] = json!({"bytesTransferredIn": 0, "bytesTransferredOut": b});
    }
    if let Some(v) = &c.vpce {
        r["vpcEndpointId"] = json!(v);
    }
    r
}

pub(super) fn render_k8s(rng: &mut ChaCha8Rng, id: &Ident, c: &Call) -> Value {
    let (verb, res) = c.action.split_once(':').unwrap_or(("get", "pods"));
    let (resource, sub) = match res.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (res, None),
    };
    let code = match c.error {
        Some(e) => e.parse::<u16>().unwrap_or(403),
        None if verb == "create" => 201,
        None => 200,
    };
    let ts = format_rfc3339_ms(c.t);
    let mut obj = json!({"resource": resource, "namespace": id.namespace, "apiVersion": "v1"});
    if let Some(s) = sub {
        obj["subresource"] = json!(s);
    }
    if verb == "get" || verb == "update" || verb == "patch" {
        obj["name"] = json!(format!(
            "{}-{}",
            resource.trim_end_matches('s'),
            rng.random_range(0..5)
        ));
    }
    json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": uuid(rng),
        "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/{}/{}", id.namespace, resource),
        "verb": verb,
        "user": {
            "username": id.key,
            "uid": "3b9c1b4e-0000-4000-8000-000000000000",
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", id.namespace), "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/pod-name": [c.session.clone().unwrap_or_default()],
                "authentication.kubernetes.io/node-name": [c.node.clone().unwrap_or_else(|| "node-1".into())],
                "authentication.kubernetes.io/credential-id": [format!("JTI={}", uuid(rng))],
            }
        },
        "sourceIPs": [c.ip],
        "userAgent": c.ua,
        "objectRef": obj,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": ts,
        "stageTimestamp": ts,
        "annotations": {"authorization.k8s.io/decision": if code == 403 { "forbid" } else { "allow" }, "authorization.k8s.io/reason": ""},
    })
}
