//! The container image and the docker-compose stack, checked without Docker (our machines and
//! CI have no Docker engine): every service's arguments go through driftwatch's own parser,
//! topics, addresses and ports agree across services, every mounted file exists, and the
//! dashboard, alert rules and README use exactly the metrics driftwatch exports.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use clap::{CommandFactory, Parser};
use driftwatch::cli::{Cli, Command};
use driftwatch::config::RunConfig;
use driftwatch::telemetry::metrics::names;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Value {
    yaml("docker-compose.yml")
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["services"]
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list, got {v}"))
        .iter()
        .map(|s| match s {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn env<'a>(svc: &'a Value, key: &str) -> &'a str {
    svc["environment"][key]
        .as_str()
        .unwrap_or_else(|| panic!("environment {key} missing in {svc}"))
}

/// Parses a service's command as `driftwatch` would.
fn parse(args: &[String]) -> Cli {
    let argv = std::iter::once("driftwatch".to_owned()).chain(args.iter().cloned());
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("driftwatch rejects {args:?}:\n{e}"))
}

/// The driftwatch service's configuration: its command line, with its DRIFTWATCH_* environment
/// applied as the flags they stand for.
fn driftwatch_config(c: &Value) -> RunConfig {
    let svc = service(c, "driftwatch");
    let mut args = strings(&svc["command"]);
    let run = Cli::command();
    let run = run.find_subcommand("run").expect("a run subcommand");
    if let Some(vars) = svc["environment"].as_object() {
        for (k, v) in vars {
            if k == "RUST_LOG" {
                continue;
            }
            let arg = run
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == k.as_str()))
                .unwrap_or_else(|| panic!("driftwatch has no environment variable {k}"));
            args.push(format!(
                "--{}",
                arg.get_long().expect("env-backed flags are long")
            ));
            args.push(
                v.as_str()
                    .expect("environment values are strings")
                    .to_owned(),
            );
        }
    }
    match parse(&args).command {
        Command::Run(a) => a
            .resolve()
            .unwrap_or_else(|e| panic!("driftwatch run rejects its configuration: {e}")),
        _ => panic!("the driftwatch service does not run `driftwatch run`: {args:?}"),
    }
}

/// The broker address clients inside the stack use (Kafka's advertised PLAINTEXT listener).
fn kafka_address(c: &Value) -> String {
    let listeners = env(service(c, "kafka"), "KAFKA_ADVERTISED_LISTENERS");
    listeners
        .split(',')
        .find_map(|l| l.strip_prefix("PLAINTEXT://"))
        .expect("a PLAINTEXT listener")
        .to_owned()
}

/// `(source, target)` of each bind mount of a service.
fn mounts(svc: &Value) -> Vec<(String, String)> {
    svc.get("volumes").map_or_else(Vec::new, |v| {
        strings(v)
            .iter()
            .filter(|m| m.starts_with("./"))
            .map(|m| {
                let mut parts = m.split(':');
                (
                    parts.next().unwrap().to_owned(),
                    parts.next().expect("a mount target").to_owned(),
                )
            })
            .collect()
    })
}

#[test]
fn the_stack_has_kafka_topics_driftwatch_a_producer_prometheus_and_grafana() {
    let c = compose();
    let names: BTreeSet<&str> = c["services"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "kafka",
            "topics",
            "driftwatch",
            "producer",
            "prometheus",
            "grafana"
        ])
    );
}

#[test]
fn kafka_runs_in_kraft_mode_with_a_healthcheck_and_every_client_uses_its_address() {
    let c = compose();
    let kafka = service(&c, "kafka");
    let roles = env(kafka, "KAFKA_PROCESS_ROLES");
    assert!(
        roles.contains("broker") && roles.contains("controller"),
        "{roles}"
    );
    assert!(!env(kafka, "KAFKA_CONTROLLER_QUORUM_VOTERS").is_empty());
    assert!(
        !kafka["environment"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.contains("ZOOKEEPER")),
        "KRaft, no ZooKeeper"
    );
    assert!(!strings(&kafka["healthcheck"]["test"]).is_empty());

    let addr = kafka_address(&c);
    let topics = service(&c, "topics");
    assert_eq!(env(topics, "BOOTSTRAP"), addr);
    assert_eq!(
        topics["depends_on"]["kafka"]["condition"], "service_healthy",
        "topics are created once the broker answers"
    );
    assert_eq!(driftwatch_config(&c).brokers, addr);
    match parse(&strings(&service(&c, "producer")["command"])).command {
        Command::Produce(p) => assert_eq!(p.brokers, addr),
        _ => panic!("the producer does not run `driftwatch produce`"),
    }
}

#[test]
fn the_topics_job_creates_exactly_the_topics_driftwatch_reads_and_writes() {
    let c = compose();
    let cfg = driftwatch_config(&c);
    let names = |var: &str| -> BTreeSet<String> {
        env(service(&c, "topics"), var)
            .split_whitespace()
            .map(|spec| {
                let (name, partitions) = spec.split_once(':').expect("name:partitions");
                assert!(partitions.parse::<u32>().is_ok_and(|p| p > 0), "{spec}");
                name.to_owned()
            })
            .collect()
    };
    let mut created = names("TOPICS");
    // The identity inventory is a table keyed by principal key: compacted, its latest record
    // per identity kept for every restart to read.
    let compacted = names("COMPACTED_TOPICS");
    let identities = cfg
        .identities_topic
        .clone()
        .expect("the stack follows an inventory");
    assert_eq!(compacted, BTreeSet::from([identities.clone()]));
    assert!(
        strings(&service(&c, "topics")["command"])
            .concat()
            .contains("cleanup.policy=compact")
    );
    created.extend(compacted);
    let mut used: BTreeSet<String> = cfg.inputs.iter().map(|i| i.topic.clone()).collect();
    used.extend([
        cfg.alerts_topic.clone(),
        cfg.commands_topic.clone(),
        cfg.governance_topic.clone(),
        cfg.dead_letter_topic.clone(),
        identities,
    ]);
    assert_eq!(created, used);
    let driftwatch = service(&c, "driftwatch");
    assert_eq!(
        driftwatch["depends_on"]["topics"]["condition"],
        "service_completed_successfully"
    );
}

#[test]
fn the_simulated_producer_streams_into_driftwatchs_input_with_the_same_image() {
    let c = compose();
    let cfg = driftwatch_config(&c);
    let producer = service(&c, "producer");
    match parse(&strings(&producer["command"])).command {
        Command::Produce(p) => {
            assert!(cfg.inputs.iter().any(|i| i.topic == p.topic), "{}", p.topic);
            assert!(p.simulate, "driftwatch's own simulator");
            assert!(p.rate > 0, "a stream that lasts, not one burst");
        }
        _ => panic!("the producer does not run `driftwatch produce`"),
    }
    assert_eq!(producer["image"], service(&c, "driftwatch")["image"]);
}

#[test]
fn metrics_are_served_where_prometheus_scrapes_and_the_healthcheck_probes() {
    let c = compose();
    let cfg = driftwatch_config(&c);
    let addr: SocketAddr = cfg.metrics_addr.expect("metrics are on");
    assert!(
        addr.ip().is_unspecified(),
        "{addr}: loopback is unreachable from other containers"
    );
    let port = addr.port();
    let driftwatch = service(&c, "driftwatch");
    assert!(
        strings(&driftwatch["ports"]).contains(&format!("{port}:{port}")),
        "published for the host"
    );
    let test = strings(&driftwatch["healthcheck"]["test"]);
    assert_eq!(test[0], "CMD");
    assert_eq!(
        test[1], "/usr/local/bin/driftwatch",
        "the binary the image installs"
    );
    match parse(&test[2..]).command {
        Command::Probe(p) => assert_eq!(p.path, "/readyz"),
        _ => panic!("the healthcheck does not run `driftwatch probe`"),
    }
    // The probe takes its address from DRIFTWATCH_METRICS_ADDR, as `run` does, so moving the
    // endpoint cannot leave the healthcheck probing the old one.
    assert!(
        !test.iter().any(|a| a == "--addr"),
        "the healthcheck names an address of its own: {test:?}"
    );
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let targets = strings(&prometheus["scrape_configs"][0]["static_configs"][0]["targets"]);
    assert_eq!(targets, [format!("driftwatch:{port}")]);
}

#[test]
fn the_image_is_multi_stage_non_root_and_serves_metrics_beyond_loopback() {
    let c = compose();
    let build = &service(&c, "driftwatch")["build"];
    let dockerfile = read(build["dockerfile"].as_str().unwrap());
    assert_eq!(build["context"], ".");
    let froms = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(froms >= 2, "a build stage and a small runtime stage");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    assert!(dockerfile.contains("ENV DRIFTWATCH_METRICS_ADDR=0.0.0.0:9464"));
    assert!(dockerfile.contains("EXPOSE 9464"));
    // The image's HEALTHCHECK probes wherever DRIFTWATCH_METRICS_ADDR puts the endpoint.
    let health = dockerfile
        .split("HEALTHCHECK")
        .nth(1)
        .and_then(|rest| rest.lines().take(3).find(|l| l.contains("CMD")))
        .expect("a HEALTHCHECK with a command");
    assert!(
        health.contains("\"probe\"") && !health.contains("--addr"),
        "{health}"
    );
    for l in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = l.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(root().join(src).exists(), "{l}: {src} does not exist");
        }
    }
}

#[test]
fn every_mounted_file_exists_and_grafana_finds_prometheus_and_the_dashboard() {
    let c = compose();
    for name in ["prometheus", "grafana"] {
        for (src, _) in mounts(service(&c, name)) {
            assert!(root().join(&src).exists(), "{name} mounts missing {src}");
        }
    }
    let prom_mounts = mounts(service(&c, "prometheus"));
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    for rule_file in strings(&prometheus["rule_files"]) {
        assert!(
            prom_mounts.iter().any(|(_, target)| *target == rule_file),
            "{rule_file} is not mounted"
        );
    }

    let datasources = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let ds = &datasources["datasources"][0];
    let published = strings(&service(&c, "prometheus")["ports"]);
    let port = published[0].split(':').next_back().unwrap();
    assert_eq!(ds["url"], format!("http://prometheus:{port}"));

    let providers = yaml("deploy/grafana/provisioning/dashboards/driftwatch.yml");
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let grafana = service(&c, "grafana");
    let (src, _) = mounts(grafana)
        .into_iter()
        .find(|(_, target)| target == path)
        .expect("the dashboards folder is mounted where the provider looks");
    let home = env(grafana, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH");
    let file = home
        .strip_prefix(path)
        .expect("home dashboard in the folder");
    let dashboard: Value = serde_json::from_str(&read(&format!("{src}{file}"))).unwrap();
    for p in dashboard["panels"].as_array().unwrap() {
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], ds["uid"], "{}", p["title"]);
        }
    }
}

/// driftwatch metric names in a PromQL text, histogram series mapped to their histogram.
fn metrics_in(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b(driftwatch_[a-z_]+)").unwrap();
    re.captures_iter(text)
        .map(|c| {
            let n = &c[1];
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s).filter(|h| h.ends_with("_seconds")))
                .unwrap_or(n)
                .to_owned()
        })
        .collect()
}

#[test]
fn the_dashboard_and_alert_rules_are_valid_promql_over_exported_metrics_covering_the_essentials() {
    let all: BTreeSet<String> = names::ALL.iter().map(|s| (*s).to_owned()).collect();
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/driftwatch.json")).unwrap();
    let mut exprs = String::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    for e in exprs.lines() {
        // Grafana substitutes $__rate_interval before Prometheus sees the query.
        let query = e.replace("$__rate_interval", "1m");
        if let Err(why) = promql_parser::parser::parse(&query) {
            panic!("dashboard query is not valid PromQL: {e}\n{why}");
        }
    }
    let on_dashboard = metrics_in(&exprs);
    let unknown: Vec<_> = on_dashboard.difference(&all).collect();
    assert!(
        unknown.is_empty(),
        "dashboard uses unknown metrics {unknown:?}"
    );
    for essential in [
        names::RECORDS_CONSUMED,
        names::CONSUMER_LAG,
        names::ALERTS,
        names::PROCESSING,
        names::DELIVERY,
        names::IDENTITIES,
        names::STATE_BYTES,
        names::DEAD_LETTERS,
    ] {
        assert!(
            on_dashboard.contains(essential),
            "no panel shows {essential}"
        );
    }
    assert!(exprs.contains("sum by (detector) (rate(driftwatch_alerts_total"));
    assert!(exprs.contains("sum by (severity) (rate(driftwatch_alerts_total"));

    let rules = yaml("deploy/prometheus/alerts.yml");
    let mut rule_exprs = String::new();
    for r in rules["groups"][0]["rules"].as_array().unwrap() {
        assert!(r["alert"].is_string() && r["annotations"]["summary"].is_string());
        let expr = r["expr"].as_str().unwrap();
        if let Err(why) = promql_parser::parser::parse(expr) {
            panic!("rule {} is not valid PromQL: {expr}\n{why}", r["alert"]);
        }
        rule_exprs.push_str(expr);
    }
    let in_rules = metrics_in(&rule_exprs);
    let unknown: Vec<_> = in_rules.difference(&all).collect();
    assert!(
        unknown.is_empty(),
        "alert rules use unknown metrics {unknown:?}"
    );
}

#[test]
fn the_readme_documents_every_metric_and_every_alert_rule() {
    let readme = read("README.md");
    let operating = readme
        .split_once("## Operating")
        .expect("an Operating section")
        .1;
    for name in names::ALL {
        assert!(
            operating.contains(&format!("`{name}`")),
            "README does not document {name}"
        );
    }
    let rules = yaml("deploy/prometheus/alerts.yml");
    for r in rules["groups"][0]["rules"].as_array().unwrap() {
        let alert = r["alert"].as_str().unwrap();
        assert!(operating.contains(alert), "README does not explain {alert}");
    }
}

#[test]
fn the_enrichment_override_fetches_the_files_driftwatch_is_told_to_read() {
    let o = yaml("docker-compose.enrich.yml");
    let dw = &o["services"]["driftwatch"];
    // Its variables are driftwatch's own, and the stack's configuration with them still resolves.
    let mut c = compose();
    let vars = dw["environment"].as_object().expect("environment");
    for (k, v) in vars {
        c["services"]["driftwatch"]["environment"][k] = v.clone();
    }
    let cfg = driftwatch_config(&c);
    assert_eq!(cfg.ip_ranges, [Path::new("/enrich/aws-ip-ranges.json")]);
    assert_eq!(cfg.geoip, [Path::new("/enrich/country.mmdb")]);
    // The fetching job writes exactly those files into the volume driftwatch mounts, and
    // driftwatch waits for it.
    let job = strings(&o["services"]["enrich"]["command"]).join("\n");
    for f in cfg.ip_ranges.iter().chain(&cfg.geoip) {
        assert!(job.contains(&format!("-o {}", f.display())), "{job}");
    }
    assert_eq!(strings(&dw["volumes"]), ["enrich:/enrich:ro"]);
    assert_eq!(
        strings(&o["services"]["enrich"]["volumes"]),
        ["enrich:/enrich"]
    );
    assert_eq!(
        dw["depends_on"]["enrich"]["condition"],
        "service_completed_successfully"
    );
}
