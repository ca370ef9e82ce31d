//! Shared HTTP client factory (scrape, remote write, HTTP SD).
//!
//! [`build_client`] turns a Prometheus `<http_config>` into a reqwest client
//! (TLS, proxy, redirects, HTTP/2) plus an [`AuthStep`] that is applied to
//! every request: credentials given as `*_file` are re-read on each request,
//! as Prometheus does, so rotated secrets take effect without a reload.
//! `oauth2` (client credentials) is handled by [`oauth2`]; AWS SigV4
//! (remote write's `sigv4:`) by [`sigv4`], which signs the finished request
//! including its body, so it runs last in the auth step.
//! `round_robin_dns` is a resolver that rotates the resolved addresses
//! ([`RoundRobinResolver`]).

mod auth;
mod build;
pub mod oauth2;
mod plain;
mod resolve;
pub mod sigv4;

pub use auth::{AuthStep, HeaderSource, SecretSource};
pub use build::build_client;
pub use plain::{find_head_end, parse_chunk_size, PlainHttpUrl};
pub use resolve::RoundRobinResolver;

use std::path::PathBuf;
use std::time::Duration;

/// Why a client could not be built or a request not prepared.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("reading secret file {path:?}: {source}")]
    ReadSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading TLS file {path:?}: {source}")]
    ReadTlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid value for header {0:?}")]
    InvalidHeaderValue(String),
    #[error("invalid header name {0:?}")]
    InvalidHeaderName(String),
    #[error("invalid proxy configuration: {0}")]
    Proxy(String),
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    #[error("oauth2: {0}")]
    OAuth2(String),
    #[error("sigv4: {0}")]
    SigV4(String),
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
    #[error("building HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// Settings that come from the caller rather than the `<http_config>`.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Whole-request timeout (connect + send + receive). `None` = no limit;
    /// callers with a per-request deadline set it on the request instead.
    pub timeout: Option<Duration>,
    /// Sent as `User-Agent` on every request.
    pub user_agent: String,
    /// How long idle pooled connections are kept.
    pub idle_pool_timeout: Option<Duration>,
    /// remote_write `round_robin_dns`: each new connection starts at the
    /// next resolved address ([`RoundRobinResolver`]).
    pub round_robin_dns: bool,
    /// Names resolved to fixed addresses instead of DNS (like
    /// `/etc/hosts`); with `round_robin_dns` they rotate too.
    pub static_hosts: Vec<(String, Vec<std::net::IpAddr>)>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: None,
            user_agent: "Prometheus/3.0.0".to_owned(),
            idle_pool_timeout: Some(Duration::from_secs(90)),
            round_robin_dns: false,
            static_hosts: Vec::new(),
        }
    }
}

/// A reqwest client plus the auth step to apply to each request.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    auth: AuthStep,
    /// No proxy, credentials or configured headers: a plain `http://`
    /// request needs nothing but a TCP connection.
    plain: bool,
}

impl HttpClient {
    /// Assembles a client from parts (tests, or callers with special needs).
    pub fn from_parts(client: reqwest::Client, auth: AuthStep) -> Self {
        Self {
            client,
            auth,
            plain: false,
        }
    }

    pub(crate) fn with_plain(mut self, plain: bool) -> Self {
        self.plain = plain;
        self
    }

    /// Whether requests to `http://` URLs need nothing this client adds
    /// (proxy, credentials, headers), so a caller may send them over its
    /// own connection.
    pub fn is_plain(&self) -> bool {
        self.plain
    }

    /// The underlying reqwest client (connection pool, TLS, proxy).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Adds configured headers and credentials to a request. Fails when a
    /// credentials file cannot be read.
    pub fn apply_auth(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, HttpClientError> {
        self.auth.apply(rb)
    }

    /// Like [`HttpClient::apply_auth`], but waits for an OAuth2 token
    /// (client-credentials grant) when none is cached.
    pub async fn apply_auth_async(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, HttpClientError> {
        self.auth.apply_async(rb).await
    }
}
