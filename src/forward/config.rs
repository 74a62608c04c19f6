//! The configuration of `driftwatch forward`, checked at start with every problem named
//! ([`ForwardConfig::resolve`]), and the webhook's address ([`Target`]), which never shows its
//! path, query or credentials: webhook URLs often carry a token there (Tines, Shuffle).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hyper::Uri;
use hyper::header::{HeaderName, HeaderValue};

use super::request::{self, Secret};
use super::retry::{INITIAL_BACKOFF, RetryPolicy};
use crate::cli::ForwardArgs;
use crate::config::service::{ClientKind, kafka_properties, parse_metrics_addr};
use crate::config::{ConfigError, Problem};

/// The environment variable holding the shared secret itself (the alternative to
/// `--secret-file`).
pub const SECRET_ENV: &str = "DRIFTWATCH_FORWARD_SECRET";

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Where requests go. `Display` shows `scheme://host:port` only: what may be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    /// Host name or IP address, without IPv6 brackets: what TLS verifies and TCP connects to.
    pub host: String,
    pub port: u16,
    /// The `Host` header: the URL's authority without credentials.
    pub authority: String,
    /// Path and query, the request target (secret: never logged).
    pub path_and_query: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

impl Target {
    /// Parses a webhook URL. `http://` is accepted only to a loopback host, or with
    /// `allow_insecure_http`.
    ///
    /// # Errors
    /// Why the URL cannot be used, for a [`Problem`]; the text never repeats the URL, which may
    /// hold a secret.
    pub fn parse(url: &str, allow_insecure_http: bool) -> Result<Target, String> {
        let uri: Uri = url.trim().parse().map_err(|_| {
            "is not a URL (expected https://HOST[:PORT]/PATH; the value is not shown, it may hold a secret)"
                .to_owned()
        })?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            _ => return Err("must start with https:// (or http:// to a loopback address)".into()),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| "has no host (expected https://HOST[:PORT]/PATH)".to_owned())?;
        if authority.as_str().contains('@') {
            return Err(
                "carries credentials before the host (user:password@); give them as a header instead, e.g. --header Authorization=...".into(),
            );
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err("has no host (expected https://HOST[:PORT]/PATH)".into());
        }
        let port = authority.port_u16().unwrap_or(match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        if scheme == Scheme::Http && !allow_insecure_http && !is_loopback(&host) {
            return Err(format!(
                "is plain http:// to {host}, which is not a loopback address: the signature, headers and alerts would cross the network unencrypted; use https://, or pass --allow-insecure-http to accept that"
            ));
        }
        // The request target in origin form: always from `/` (`https://h?x=1` asks for `/?x=1`).
        let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
            Some(p) if p.starts_with('/') => p.to_owned(),
            Some(p) => format!("/{p}"),
            None => "/".to_owned(),
        };
        if path_and_query.parse::<Uri>().is_err() {
            return Err("has a path or query that is not a valid request target".into());
        }
        Ok(Target {
            scheme,
            host,
            port,
            authority: authority.as_str().to_owned(),
            path_and_query,
        })
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The checked configuration of `driftwatch forward`.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub brokers: String,
    pub from: String,
    pub group: String,
    pub dead_letter_topic: String,
    pub target: Target,
    /// `None` only with `--unsigned`.
    pub secret: Option<Secret>,
    /// Static headers (`--header`), sent on every request, never logged.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub retry: RetryPolicy,
    /// One attempt's limit: connecting, TLS, request and response.
    pub timeout: Duration,
    /// Trust only the CA certificates in this PEM file instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Pass-through librdkafka properties (`consumer.`/`producer.` scoped or both).
    pub kafka: Vec<(ClientKind, String, String)>,
    pub metrics_addr: Option<SocketAddr>,
}

impl ForwardConfig {
    /// The configuration `args` describe, with `env_secret` the value of
    /// [`SECRET_ENV`] if set. Reads the secret file and the CA file.
    ///
    /// # Errors
    /// A [`ConfigError`] of `driftwatch forward` naming every problem with its flag; no problem
    /// repeats the URL, a header value or the secret.
    pub fn resolve(
        args: &ForwardArgs,
        env_secret: Option<String>,
    ) -> Result<ForwardConfig, ConfigError> {
        let mut problems = Vec::new();
        let mut late = Vec::new();
        let mut problem = |key: &str, why: String| {
            problems.push(Problem {
                key: key.to_owned(),
                why,
            })
        };
        let from = args.from.trim().to_owned();
        if from.is_empty() {
            problem("--from", "is empty: name the topic to deliver".into());
        }
        let dead_letter_topic = args
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{from}.forward-dlq"));
        if dead_letter_topic == from {
            problem(
                "--dead-letter-topic",
                "is the topic being forwarded: dead letters would be forwarded again".into(),
            );
        }
        let group = args
            .group
            .clone()
            .unwrap_or_else(|| format!("driftwatch-forward-{from}"));
        let target = match Target::parse(&args.to, args.allow_insecure_http) {
            Ok(t) => Some(t),
            Err(why) => {
                problem("--to", why);
                None
            }
        };
        let secret = match (&args.secret_file, env_secret, args.unsigned) {
            (Some(_), Some(_), _) => {
                problem(
                    "--secret-file",
                    format!("and {SECRET_ENV} are both set: give the secret one way"),
                );
                None
            }
            (Some(_), _, true) | (_, Some(_), true) => {
                problem(
                    "--unsigned",
                    format!("contradicts the secret given (--secret-file or {SECRET_ENV})"),
                );
                None
            }
            (None, None, true) => None,
            (None, None, false) => {
                problem(
                    "--secret-file",
                    format!(
                        "no shared secret to sign requests with: give --secret-file FILE or set {SECRET_ENV}, or pass --unsigned to send requests the receiver cannot authenticate"
                    ),
                );
                None
            }
            (Some(path), None, false) => match std::fs::read(path) {
                Ok(mut bytes) => {
                    // A file written by `echo` ends with a newline that is not part of the secret.
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    if bytes.is_empty() {
                        problem("--secret-file", format!("{} is empty", path.display()));
                        None
                    } else {
                        Some(Secret::new(bytes))
                    }
                }
                Err(e) => {
                    problem(
                        "--secret-file",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            },
            (None, Some(s), false) => {
                if s.is_empty() {
                    problem(SECRET_ENV, "is set but empty".into());
                    None
                } else {
                    Some(Secret::new(s.into_bytes()))
                }
            }
        };
        let mut headers = Vec::new();
        for h in &args.headers {
            match parse_header(h) {
                Ok(pair) => headers.push(pair),
                Err(why) => problem("--header", why),
            }
        }
        if args.max_attempts == 0 {
            problem(
                "--max-attempts",
                "must be at least 1 (the first attempt counts)".into(),
            );
        }
        let timeout = seconds("--timeout-seconds", args.timeout_seconds, true)
            .map_err(|p| late.push(p))
            .ok();
        let max_backoff = seconds("--max-backoff-seconds", args.max_backoff_seconds, false)
            .map_err(|p| late.push(p))
            .ok();
        if let Some(ca) = &args.ca_file {
            match std::fs::read(ca) {
                Ok(pem) => match openssl::x509::X509::stack_from_pem(&pem) {
                    Ok(certs) if !certs.is_empty() => {}
                    _ => problem(
                        "--ca-file",
                        format!("{} holds no PEM certificate", ca.display()),
                    ),
                },
                Err(e) => problem("--ca-file", format!("cannot read {}: {e}", ca.display())),
            }
        }
        let before = problems.len();
        let kafka = kafka_properties(&args.kafka_property, false, &mut problems);
        for p in &mut problems[before..] {
            // `run`'s reason names its commit points; forward commits per message.
            if p.key.ends_with(" enable.auto.commit")
                || p.key.ends_with(" enable.auto.offset.store")
            {
                p.why = "cannot be overridden: forward stores a message's offset only once it is delivered or dead-lettered, and commits the stored offsets itself".into();
            }
        }
        let metrics_addr = match parse_metrics_addr(&args.metrics_addr) {
            Ok(a) => a,
            Err(why) => {
                problems.push(Problem {
                    key: "--metrics-addr".into(),
                    why,
                });
                None
            }
        };
        problems.extend(late);
        match (target, timeout, max_backoff) {
            (Some(target), Some(timeout), Some(max_backoff)) if problems.is_empty() => {
                Ok(ForwardConfig {
                    brokers: args.brokers.clone(),
                    from,
                    group,
                    dead_letter_topic,
                    target,
                    secret,
                    headers,
                    retry: RetryPolicy {
                        max_attempts: args.max_attempts,
                        initial_backoff: INITIAL_BACKOFF.min(max_backoff),
                        max_backoff,
                    },
                    timeout,
                    ca_file: args.ca_file.clone(),
                    kafka,
                    metrics_addr,
                })
            }
            _ => Err(ConfigError {
                file: "driftwatch forward".into(),
                problems,
            }),
        }
    }

    /// The pass-through properties for one client (those for both, then its own).
    pub fn kafka_properties_for(&self, client: ClientKind) -> impl Iterator<Item = (&str, &str)> {
        self.kafka
            .iter()
            .filter(move |(scope, _, _)| *scope == ClientKind::Both || *scope == client)
            .map(|(_, k, v)| (k.as_str(), v.as_str()))
    }
}

/// A number of seconds given to `key`: over 0 when `positive`, else 0 or more.
fn seconds(key: &str, v: f64, positive: bool) -> Result<Duration, Problem> {
    match Duration::try_from_secs_f64(v) {
        Ok(d) if !(positive && d.is_zero()) => Ok(d),
        _ => Err(Problem {
            key: key.to_owned(),
            why: format!(
                "`{v}` is not a number of seconds {}",
                if positive { "over 0" } else { "of 0 or more" }
            ),
        }),
    }
}

/// Parses `NAME=VALUE` for `--header`. The value never appears in the error.
fn parse_header(arg: &str) -> Result<(HeaderName, HeaderValue), String> {
    let Some((name, value)) = arg.split_once('=') else {
        return Err("an argument is not of the form NAME=VALUE (its text is not shown: it may hold a secret)".into());
    };
    let name = name.trim();
    let parsed = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not an HTTP header name"))?;
    if request::reserved(&parsed) {
        return Err(format!(
            "`{name}` is set by driftwatch itself and cannot be given"
        ));
    }
    let mut value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of `{name}` is not a valid HTTP header value"))?;
    value.set_sensitive(true);
    Ok((parsed, value))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> ForwardArgs {
        let argv = ["driftwatch", "forward", "--from", "driftwatch.commands"]
            .iter()
            .chain(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Forward(a) => *a,
            _ => unreachable!("the forward subcommand"),
        }
    }

    const URL: &str = "https://hooks.example.com/webhook/path-token?key=query-token";

    #[test]
    fn a_target_shows_scheme_host_and_port_only() {
        let t = Target::parse(URL, false).unwrap();
        assert_eq!(t.to_string(), "https://hooks.example.com:443");
        assert_eq!(format!("{t:?}"), "Target(https://hooks.example.com:443)");
        assert_eq!(t.path_and_query, "/webhook/path-token?key=query-token");
        assert_eq!(t.authority, "hooks.example.com");
        let v6 = Target::parse("http://[::1]:8080", false).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8080));
        assert_eq!(v6.to_string(), "http://[::1]:8080");
        assert_eq!(v6.path_and_query, "/");
        let query_only = Target::parse("https://h.example?token=t", false).unwrap();
        assert_eq!(query_only.path_and_query, "/?token=t");
        assert!(query_only.path_and_query.parse::<Uri>().is_ok());
    }

    #[test]
    fn plain_http_is_refused_off_loopback_unless_allowed_and_credentials_in_the_url_always() {
        for ok in [
            "http://127.0.0.1:9/h",
            "http://localhost/h",
            "http://[::1]/h",
        ] {
            assert!(Target::parse(ok, false).is_ok(), "{ok}");
        }
        let why = Target::parse("http://soar.example.com/hook/tok", false).unwrap_err();
        assert!(why.contains("--allow-insecure-http"), "{why}");
        assert!(!why.contains("tok"), "{why}");
        assert!(Target::parse("http://soar.example.com/hook/tok", true).is_ok());
        let why = Target::parse("https://user:pw-secret@soar.example.com/", false).unwrap_err();
        assert!(
            why.contains("--header") && !why.contains("pw-secret"),
            "{why}"
        );
        for bad in [
            "ftp://x/y",
            "soar.example.com/hook",
            "https:///x",
            "not a url",
        ] {
            let why = Target::parse(bad, true).unwrap_err();
            assert!(!why.contains(bad), "{why}");
        }
    }

    #[test]
    fn defaults_derive_the_group_and_dead_letter_topic_from_the_topic() {
        let c = ForwardConfig::resolve(&args(&["--to", URL]), Some("s3cret".into())).unwrap();
        assert_eq!(c.group, "driftwatch-forward-driftwatch.commands");
        assert_eq!(c.dead_letter_topic, "driftwatch.commands.forward-dlq");
        assert_eq!(c.secret, Some(Secret::new(b"s3cret".to_vec())));
        assert_eq!(c.retry.max_attempts, 8);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9465".parse().unwrap()));
    }

    #[test]
    fn a_secret_file_loses_its_trailing_newline_and_unsigned_must_be_explicit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from-file\n").unwrap();
        let a = args(&["--to", URL, "--secret-file", f.to_str().unwrap()]);
        let c = ForwardConfig::resolve(&a, None).unwrap();
        assert_eq!(c.secret, Some(Secret::new(b"from-file".to_vec())));
        let e = ForwardConfig::resolve(&a, Some("env".into())).unwrap_err();
        assert_eq!(e.problems[0].key, "--secret-file", "{e}");
        let none = ForwardConfig::resolve(&args(&["--to", URL]), None).unwrap_err();
        let text = none.to_string();
        for named in ["--secret-file", SECRET_ENV, "--unsigned"] {
            assert!(text.contains(named), "{text}");
        }
        let unsigned = ForwardConfig::resolve(&args(&["--to", URL, "--unsigned"]), None).unwrap();
        assert_eq!(unsigned.secret, None);
    }

    #[test]
    fn every_problem_is_named_with_its_flag_and_no_value_is_repeated() {
        let a = args(&[
            "--to",
            "http://soar.example.com/hook/url-token",
            "--dead-letter-topic",
            "driftwatch.commands",
            "--header",
            "Idempotency-Key=value-token-1",
            "--header",
            "no-equals-value-token-2",
            "--header",
            "Bad Name=x",
            "--max-attempts",
            "0",
            "--timeout-seconds",
            "0",
            "--max-backoff-seconds=-1",
            "--kafka-property",
            "enable.auto.commit=true",
            "--metrics-addr",
            "nowhere",
        ]);
        let e = ForwardConfig::resolve(&a, Some("s".into())).unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "--to",
            "--dead-letter-topic",
            "--header",
            "--max-attempts",
            "--timeout-seconds",
            "--max-backoff-seconds",
            "--kafka-property enable.auto.commit",
            "--metrics-addr",
        ] {
            assert!(keys.contains(&key), "{key} not in {keys:?}");
        }
        assert_eq!(keys.iter().filter(|k| **k == "--header").count(), 3);
        let commit = e
            .problems
            .iter()
            .find(|p| p.key == "--kafka-property enable.auto.commit")
            .unwrap();
        assert!(
            commit.why.contains("delivered or dead-lettered"),
            "{commit:?}"
        );
        let text = e.to_string();
        for secret in ["url-token", "value-token-1", "value-token-2"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate").unwrap();
        let a = args(&["--to", URL, "--ca-file", f.to_str().unwrap()]);
        let e = ForwardConfig::resolve(&a, Some("s".into())).unwrap_err();
        assert_eq!(e.problems[0].key, "--ca-file", "{e}");
    }
}
