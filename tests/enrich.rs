//! Enrichment with real files: a country database in MaxMind DB format (fetched by
//! scripts/test.sh from the npm registry and cached; see the README's "Enrichment"), and the
//! providers' published ranges (tests/fixtures/ip-ranges/).

use std::path::PathBuf;

use crate::common::{decode_all, run_with};
use driftwatch::config::{Model, Rules};
use driftwatch::enrich::GeoDbs;
use serde_json::json;

fn mmdb() -> PathBuf {
    std::env::var("DRIFTWATCH_TEST_MMDB").map(PathBuf::from).unwrap_or_else(|e| {
        panic!(
            "DRIFTWATCH_TEST_MMDB is not set: run the suite with scripts/test.sh, which fetches a real country database (npm @ip-location-db/geo-whois-asn-country-mmdb), or point it at any MaxMind DB file: {e}"
        )
    })
}

#[test]
fn a_real_country_database_gives_public_addresses_their_country() {
    let geo = GeoDbs::load(&[mmdb()]).unwrap();
    let country = |ip: &str| geo.lookup(ip.parse().unwrap()).country;
    assert_eq!(country("8.8.8.8").as_deref(), Some("US"));
    assert_eq!(country("2001:4860:4860::8888").as_deref(), Some("US"));
    assert_eq!(country("193.99.144.80").as_deref(), Some("DE"));
    assert_eq!(country("10.1.2.3"), None);
}

#[test]
fn a_file_that_is_not_a_maxmind_database_is_refused_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("country.mmdb");
    std::fs::write(&bad, b"not a database").unwrap();
    let e = GeoDbs::load(&[bad]).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert!(e.problems[0].key.ends_with("country.mmdb"), "{e:?}");
    assert!(e.problems[0].why.contains("MaxMind DB"), "{e:?}");
}

/// Ten days of a key's calls from one US network, then one from Germany.
fn key_moves_to_germany() -> Vec<String> {
    const T0: i64 = 1_772_409_600_000;
    let call = |t: i64, ip: &str| {
        json!({
            "eventTime": driftwatch::decode::time::format_rfc3339_ms(t),
            "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
            "sourceIPAddress": ip, "userAgent": "Boto3/1.34.14 md/Botocore#1.34.14",
            "recipientAccountId": "111122223333",
            "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/report",
                             "accountId": "111122223333", "accessKeyId": "AKIAREPORTEXAMPLE001"}
        })
        .to_string()
    };
    let mut lines = Vec::new();
    for h in 0..240 {
        if (8..18).contains(&(h % 24)) {
            lines.push(call(T0 + h * 3_600_000 + 60_000, "8.8.8.20"));
        }
    }
    lines.push(call(T0 + 10 * 86_400_000 + 11 * 3_600_000, "193.99.144.80"));
    lines
}

#[test]
fn with_a_country_database_a_first_call_from_another_country_is_part_of_the_evidence() {
    let events = decode_all(key_moves_to_germany().iter().map(String::as_str));
    assert!(
        events.iter().all(|e| e.origin.country.is_none()),
        "records carry no country"
    );
    // Every finding shown: a new network of a stable key is about 8 bits, short of an alert alone.
    let mut model = Model::embedded();
    model.scoring.alert_min_score = 1;
    let rules = Rules::new(model.clone()).with_geo(GeoDbs::load(&[mmdb()]).unwrap());
    let (_, out) = run_with(&events, rules);
    let alert = out
        .alerts_for("arn:aws:iam::111122223333:user/report")
        .into_iter()
        .find(|a| a.to_string().contains("new_origin"))
        .expect("the first call from a new network is a finding");
    let text = alert.to_string();
    assert!(
        text.contains(r#""level":"country""#) && text.contains(r#""value":"DE""#),
        "the new country is in the evidence: {text}"
    );
    assert!(text.contains(r#""known":["US"]"#), "{text}");
    // Without the database there is no country level at all.
    let (_, plain) = run_with(&events, Rules::new(model));
    assert!(
        !plain
            .alerts
            .iter()
            .any(|a| a.to_string().contains(r#""level":"country""#))
    );
}
