//! The operations endpoint: `/metrics` (Prometheus text format), `/healthz` (the process is
//! alive and serving) and `/readyz` (partitions assigned and their baselines rebuilt; 503 with
//! the reason before). [`get`] is the matching client, for `driftwatch probe` (container
//! health checks in images without curl) and tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::Metrics;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr} for /metrics, /healthz and /readyz: {source}; choose another --metrics-addr"
)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// What `/readyz` asks: `Ok` when ready, else the reason.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the endpoint serves.
struct Endpoint {
    registry: Registry,
    ready: Readiness,
}

impl Endpoint {
    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        }
        match req.uri().path() {
            "/metrics" => {
                let encoder = TextEncoder::new();
                let mut body = Vec::with_capacity(16 * 1024);
                if let Err(e) = encoder.encode(&self.registry.gather(), &mut body) {
                    return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
                }
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(prometheus::TEXT_FORMAT),
                );
                r
            }
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match (self.ready)() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /healthz or /readyz\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Binds `addr` and serves the endpoint on the current tokio runtime until the returned task is
/// aborted. Returns the bound address (useful with port 0).
///
/// # Errors
/// [`BindError`] when the address cannot be bound (in use, not local, no permission).
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    metrics: Arc<Metrics>,
) -> Result<(SocketAddr, JoinHandle<()>), BindError> {
    serve_with(addr, registry, Arc::new(move || metrics.readiness())).await
}

/// As [`serve`], with `/readyz` answered by `ready` (`driftwatch forward`'s own readiness).
///
/// # Errors
/// [`BindError`] when the address cannot be bound.
pub async fn serve_with(
    addr: SocketAddr,
    registry: Registry,
    ready: Readiness,
) -> Result<(SocketAddr, JoinHandle<()>), BindError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| BindError { addr, source })?;
    let endpoint = Arc::new(Endpoint { registry, ready });
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    warn!(%error, "Accepting a connection on the metrics endpoint failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let r = endpoint.respond(&req);
                    async move { Ok::<_, Infallible>(r) }
                });
                if let Err(error) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    debug!(%error, "Metrics endpoint connection ended with an error.");
                }
            });
        }
    });
    Ok((bound, task))
}

/// Why a GET against the endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP exchange with {addr} failed: {source}")]
    Http {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("no answer from {addr} within {0:?}", TIMEOUT)]
    Timeout { addr: SocketAddr },
    #[error("`{path}` is not a path such as /readyz")]
    Path { path: String },
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `path` from `addr` over HTTP/1.1: the status code and the body, within 5 seconds.
///
/// # Errors
/// [`GetError`]: a malformed path, nothing listening, a broken exchange, or no answer in time.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), GetError> {
    let uri: hyper::Uri = match path.parse() {
        Ok(u) if path.starts_with('/') => u,
        _ => {
            return Err(GetError::Path {
                path: path.to_owned(),
            });
        }
    };
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| GetError::Connect { addr, source })?;
        let http = |source| GetError::Http { addr, source };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(conn);
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = uri;
        if let Ok(host) = HeaderValue::from_str(&addr.to_string()) {
            req.headers_mut().insert(HOST, host);
        }
        let res = sender.send_request(req).await.map_err(http)?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.map_err(http)?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| GetError::Timeout { addr })?
}
