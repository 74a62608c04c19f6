//! The HTTP/1.1 client of `driftwatch forward`: one kept-alive connection to the webhook, over
//! TLS (OpenSSL, the same library the Kafka client is built with) unless the target is
//! `http://`. Every attempt, connecting included, is bounded by the timeout; a connection that
//! failed or timed out is dropped and the next attempt opens a new one.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use openssl::x509::X509VerifyResult;
use openssl::x509::store::X509StoreBuilder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use tracing::debug;

use super::config::{Scheme, Target};
use super::retry::{self, Failure};

/// A response body is read (to keep the connection usable) up to this size, then dropped
/// unread: its content is never used.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why the client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] openssl::error::ErrorStack),
    #[error("cannot read the CA file {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
}

/// The webhook client.
pub struct Client {
    target: Target,
    tls: Option<SslConnector>,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client of `target`, verifying its certificate against the system's CA certificates, or
    /// only those in `ca_file`.
    ///
    /// # Errors
    /// [`ClientError`]: the CA file cannot be read or OpenSSL refuses the setup.
    pub fn new(
        target: Target,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let tls = match target.scheme {
            Scheme::Http => None,
            Scheme::Https => Some(connector(ca_file)?),
        };
        Ok(Client {
            target,
            tls,
            timeout,
            conn: None,
        })
    }

    /// POSTs `body` with `headers` (and `Host`) to the target: `Ok` for a 2xx response, the
    /// [`Failure`] otherwise, within the timeout.
    ///
    /// # Errors
    /// The failure: a status other than 2xx, a timeout, or a connection, TLS or HTTP error.
    pub async fn post(&mut self, headers: HeaderMap, body: Bytes) -> Result<(), Failure> {
        let timeout = self.timeout;
        let result = match tokio::time::timeout(timeout, self.exchange(headers, body)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout(timeout)),
        };
        if result.is_err() {
            // Its state is unknown (a response may still be on its way): never reuse it.
            self.conn = None;
        }
        result
    }

    async fn exchange(&mut self, headers: HeaderMap, body: Bytes) -> Result<(), Failure> {
        let mut sender = match self.conn.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        if sender.ready().await.is_err() {
            sender = self.connect().await?;
            sender
                .ready()
                .await
                .map_err(|e| Failure::Protocol(e.to_string()))?;
        }
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self
            .target
            .path_and_query
            .parse()
            .expect("taken from a parsed URL");
        *req.headers_mut() = headers;
        req.headers_mut().insert(
            HOST,
            HeaderValue::from_str(&self.target.authority).expect("taken from a parsed URL"),
        );
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| Failure::Protocol(e.to_string()))?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Read the body so the connection can carry the next request; it is not used.
        let complete = Limited::new(res.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .is_ok();
        if complete {
            self.conn = Some(sender);
        }
        retry::classify(status, retry_after.as_deref())
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let t = &self.target;
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp).await,
            Some(connector) => {
                let ssl = connector
                    .configure()
                    .and_then(|c| c.into_ssl(&t.host))
                    .map_err(|e| Failure::Tls(e.to_string()))?;
                let mut stream =
                    SslStream::new(ssl, tcp).map_err(|e| Failure::Tls(e.to_string()))?;
                if let Err(e) = Pin::new(&mut stream).connect().await {
                    let verify = stream.ssl().verify_result();
                    return Err(Failure::Tls(if verify == X509VerifyResult::OK {
                        e.to_string()
                    } else {
                        format!("certificate not trusted: {}", verify.error_string())
                    }));
                }
                handshake(stream).await
            }
        }
    }
}

/// An HTTP/1.1 connection over `io`, its driver spawned.
async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, Failure>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Failure::Protocol(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            debug!(%error, "Webhook connection ended with an error.");
        }
    });
    Ok(sender)
}

/// TLS 1.2 or later, HTTP/1.1 by ALPN, certificates verified (chain and host name) against the
/// system's CA certificates (found where OpenSSL distributions put them, or `SSL_CERT_FILE` /
/// `SSL_CERT_DIR`), or only against `ca_file`.
fn connector(ca_file: Option<&Path>) -> Result<SslConnector, ClientError> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_alpn_protos(b"\x08http/1.1")?;
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
                path: path.display().to_string(),
                source,
            })?;
            // A store of these certificates alone replaces the default one.
            let mut store = X509StoreBuilder::new()?;
            for cert in openssl::x509::X509::stack_from_pem(&pem)? {
                store.add_cert(cert)?;
            }
            b.set_cert_store(store.build());
        }
        None => {
            // OpenSSL compiled into the binary looks in its own build prefix by default.
            let found = openssl_probe::probe();
            if let Some(file) = &found.cert_file {
                b.set_ca_file(file)?;
            }
            for dir in &found.cert_dir {
                b.load_verify_locations(None, Some(dir))?;
            }
        }
    }
    Ok(b.build())
}
