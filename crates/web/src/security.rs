//! `--web.config.file`: TLS and basic auth in the format of Prometheus's
//! exporter-toolkit (`tls_server_config`, `http_server_config`,
//! `basic_auth_users` with bcrypt hashes).
//!
//! * TLS is rustls with the ring provider. Each handshake runs in its
//!   connection's own task, so one slow client cannot stall accepts.
//! * Basic auth checks bcrypt hashes off the async threads
//!   (`spawn_blocking`: a check costs tens of milliseconds by design) and
//!   remembers a SHA-256 of each successful (user, hash, password) so a
//!   scraper polling every few seconds pays the cost once. Unknown users are
//!   checked against a dummy hash so timing does not reveal valid names.
//! * Relative file paths are resolved against the config file's directory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("reading web config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing web config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("missing cert_file")]
    MissingCert,
    #[error("missing key_file")]
    MissingKey,
    #[error("reading {what} {path}: {source}")]
    ReadPem {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {what} {path}: {message}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("unsupported TLS version {0:?} (rustls supports TLS12 and TLS13)")]
    TlsVersion(String),
    #[error("invalid client_auth_type {0:?}")]
    ClientAuthType(String),
    #[error("client_ca_file is required for client_auth_type {0}")]
    MissingClientCa(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("invalid bcrypt hash for user {0:?}")]
    BadHash(String),
    #[error("HTTP header {0:?} can not be configured")]
    Header(String),
}

/// Everything `--web.config.file` asks of the server. The default is plain
/// HTTP with no authentication.
#[derive(Clone, Default)]
pub struct WebSecurity {
    tls: Option<Arc<rustls::ServerConfig>>,
    auth: Option<Arc<BasicAuth>>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for WebSecurity {
    // Never prints hashes or keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSecurity")
            .field("tls", &self.tls.is_some())
            .field(
                "basic_auth_users",
                &self.auth.as_ref().map_or(0, |a| a.users.len()),
            )
            .field("headers", &self.headers.len())
            .finish()
    }
}

impl WebSecurity {
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    pub fn basic_auth_enabled(&self) -> bool {
        self.auth.is_some()
    }

    pub(crate) fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        self.tls.clone().map(TlsAcceptor::from)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    tls_server_config: Option<TlsFileConfig>,
    http_server_config: Option<HttpFileConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsFileConfig {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    cert: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    client_auth_type: String,
    #[serde(default)]
    client_ca_file: String,
    #[serde(default)]
    client_allowed_sans: Vec<String>,
    #[serde(default)]
    min_version: String,
    #[serde(default)]
    max_version: String,
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    curve_preferences: Vec<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpFileConfig {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Response headers exporter-toolkit lets a web config set.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// Reads and checks a `--web.config.file`. An empty file means plain HTTP
/// without authentication, as in Prometheus.
pub fn load_web_config(path: &Path) -> Result<WebSecurity, WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_web_config(&text, base).map_err(|e| match e {
        WebConfigError::Parse { message, .. } => WebConfigError::Parse {
            path: path.to_path_buf(),
            message,
        },
        other => other,
    })
}

fn parse_web_config(text: &str, base: &Path) -> Result<WebSecurity, WebConfigError> {
    let parsed: FileConfig = if text.trim().is_empty() {
        FileConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| WebConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?
    };
    let tls = match parsed.tls_server_config {
        Some(t) => build_tls(&t, base)?.map(Arc::new),
        None => None,
    };
    let auth = if parsed.basic_auth_users.is_empty() {
        None
    } else {
        Some(Arc::new(BasicAuth::new(parsed.basic_auth_users)?))
    };
    let headers = match parsed.http_server_config {
        Some(h) => response_headers(&h)?,
        None => Vec::new(),
    };
    Ok(WebSecurity { tls, auth, headers })
}

fn response_headers(h: &HttpFileConfig) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    if h.http2 == Some(false) {
        tracing::debug!(
            "http_server_config.http2: false has no effect, the server speaks HTTP/1.1"
        );
    }
    let mut out = Vec::new();
    for (name, value) in &h.headers {
        let allowed = ALLOWED_HEADERS.iter().any(|a| a.eq_ignore_ascii_case(name));
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .ok()
            .zip(HeaderValue::from_str(value).ok());
        match parsed {
            Some(pair) if allowed => out.push(pair),
            _ => return Err(WebConfigError::Header(name.clone())),
        }
    }
    Ok(out)
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Reads PEM from a file, or uses inline PEM when `inline` is set.
fn pem_bytes(
    base: &Path,
    file: &str,
    inline: &str,
    what: &'static str,
) -> Result<(Vec<u8>, PathBuf), WebConfigError> {
    if !inline.is_empty() {
        return Ok((
            inline.as_bytes().to_vec(),
            PathBuf::from(format!("<inline {what}>")),
        ));
    }
    let path = resolve(base, file);
    let bytes = std::fs::read(&path).map_err(|source| WebConfigError::ReadPem {
        what,
        path: path.clone(),
        source,
    })?;
    Ok((bytes, path))
}

fn certificates(
    pem: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let certs = certs.map_err(|e| WebConfigError::Pem {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(WebConfigError::Pem {
            what,
            path: path.to_path_buf(),
            message: "no certificate found".into(),
        });
    }
    Ok(certs)
}

fn tls_versions(
    t: &TlsFileConfig,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, WebConfigError> {
    let rank = |v: &str, default: u8| -> Result<u8, WebConfigError> {
        match v {
            "" => Ok(default),
            "TLS12" => Ok(12),
            "TLS13" => Ok(13),
            other => Err(WebConfigError::TlsVersion(other.to_string())),
        }
    };
    let (min, max) = (rank(&t.min_version, 12)?, rank(&t.max_version, 13)?);
    let mut out = Vec::new();
    if min <= 12 && max >= 12 {
        out.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        out.push(&rustls::version::TLS13);
    }
    if out.is_empty() {
        return Err(WebConfigError::TlsVersion(format!(
            "{} > {}",
            t.min_version, t.max_version
        )));
    }
    Ok(out)
}

/// `None` when the section names no certificate at all (exporter-toolkit
/// then serves plain HTTP).
fn build_tls(
    t: &TlsFileConfig,
    base: &Path,
) -> Result<Option<rustls::ServerConfig>, WebConfigError> {
    let has_cert = !t.cert_file.is_empty() || !t.cert.is_empty();
    let has_key = !t.key_file.is_empty() || !t.key.is_empty();
    match (has_cert, has_key) {
        (false, false) if t.client_ca_file.is_empty() => return Ok(None),
        (false, _) => return Err(WebConfigError::MissingCert),
        (_, false) => return Err(WebConfigError::MissingKey),
        _ => {}
    }
    if !t.cipher_suites.is_empty()
        || !t.curve_preferences.is_empty()
        || t.prefer_server_cipher_suites.is_some()
    {
        tracing::warn!("web config: cipher_suites, curve_preferences and prefer_server_cipher_suites are ignored; rustls's safe defaults apply");
    }
    let (cert_pem, cert_path) = pem_bytes(base, &t.cert_file, &t.cert, "cert_file")?;
    let (key_pem, key_path) = pem_bytes(base, &t.key_file, &t.key, "key_file")?;
    let chain = certificates(&cert_pem, &cert_path, "cert_file")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| WebConfigError::Pem {
        what: "key_file",
        path: key_path,
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&tls_versions(t)?)
        .map_err(|e| WebConfigError::Tls(e.to_string()))?;
    let builder = match client_verifier(t, base, provider)? {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| WebConfigError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(cfg))
}

fn client_verifier(
    t: &TlsFileConfig,
    base: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, WebConfigError> {
    let optional = match t.client_auth_type.as_str() {
        "" | "NoClientCert" => return Ok(None),
        "RequireAndVerifyClientCert" => false,
        "VerifyClientCertIfGiven" => true,
        // RequestClientCert / RequireAnyClientCert accept unverified
        // certificates; rustls offers no such mode and neither should we.
        other => return Err(WebConfigError::ClientAuthType(other.to_string())),
    };
    if t.client_ca_file.is_empty() {
        return Err(WebConfigError::MissingClientCa(t.client_auth_type.clone()));
    }
    if !t.client_allowed_sans.is_empty() {
        tracing::warn!("web config: client_allowed_sans is not enforced");
    }
    let (pem, path) = pem_bytes(base, &t.client_ca_file, "", "client_ca_file")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in certificates(&pem, &path, "client_ca_file")? {
        roots.add(c).map_err(|e| WebConfigError::Pem {
            what: "client_ca_file",
            path: path.clone(),
            message: e.to_string(),
        })?;
    }
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map(Some)
        .map_err(|e| WebConfigError::Tls(e.to_string()))
}

/// Users and their bcrypt hashes, plus the cache of passed checks.
struct BasicAuth {
    users: HashMap<String, String>,
    dummy_hash: String,
    passed: Mutex<HashSet<[u8; 32]>>,
}

/// Bounds the cache of passed checks; it is cleared when full.
const AUTH_CACHE_MAX: usize = 1024;

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, WebConfigError> {
        for (user, hash) in &users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(WebConfigError::BadHash(user.clone()));
            }
        }
        let dummy_hash =
            bcrypt::hash("tributary-dummy", 10).map_err(|e| WebConfigError::Tls(e.to_string()))?;
        Ok(BasicAuth {
            users: users.into_iter().collect(),
            dummy_hash,
            passed: Mutex::new(HashSet::new()),
        })
    }

    fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [user, hash, password] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part.as_bytes());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    async fn check(self: Arc<Self>, user: String, password: String) -> bool {
        let known = self.users.get(&user).cloned();
        let hash = known.clone().unwrap_or_else(|| self.dummy_hash.clone());
        let key = Self::cache_key(&user, &hash, &password);
        if known.is_some() && self.passed.lock().contains(&key) {
            return true;
        }
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let ok = verified && known.is_some();
        if ok {
            let mut passed = self.passed.lock();
            if passed.len() >= AUTH_CACHE_MAX {
                passed.clear();
            }
            passed.insert(key);
        }
        ok
    }
}

fn basic_credentials(req: &Request) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn unauthorized() -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    r
}

/// Wraps the app with basic auth and configured headers, when set.
pub(crate) fn protect(app: Router, security: &WebSecurity) -> Router {
    let mut app = app;
    if let Some(auth) = security.auth.clone() {
        app = app.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let auth = auth.clone();
                async move {
                    let Some((user, password)) = basic_credentials(&req) else {
                        return unauthorized();
                    };
                    if auth.check(user, password).await {
                        next.run(req).await
                    } else {
                        unauthorized()
                    }
                }
            },
        ));
    }
    if !security.headers.is_empty() {
        let headers = Arc::new(security.headers.clone());
        app = app.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let headers = headers.clone();
                async move {
                    let mut r = next.run(req).await;
                    for (k, v) in headers.iter() {
                        r.headers_mut().insert(k.clone(), v.clone());
                    }
                    r
                }
            },
        ));
    }
    app
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_means_plain_http() {
        let s = parse_web_config("", Path::new("."));
        assert!(matches!(s, Ok(ref s) if !s.tls_enabled() && !s.basic_auth_enabled()));
    }

    #[test]
    fn config_errors_are_specific() {
        let err = |yaml: &str| {
            parse_web_config(yaml, Path::new("/nonexistent"))
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            err("tls_server_config:\n  key_file: k.pem\n").as_deref(),
            Some("missing cert_file")
        );
        assert_eq!(
            err("tls_server_config:\n  cert_file: c.pem\n").as_deref(),
            Some("missing key_file")
        );
        assert!(err("basic_auth_users:\n  alice: plaintext\n").is_some_and(|e| e.contains("alice")));
        assert!(err("bogus_key: 1\n").is_some_and(|e| e.contains("bogus_key")));
        assert!(err("http_server_config:\n  headers:\n    Set-Cookie: x\n")
            .is_some_and(|e| e.contains("Set-Cookie")));
        assert!(
            err("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n")
                .is_some_and(|e| e.contains("/nonexistent/c.pem"))
        );
        assert!(
            err("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS10\n")
                .is_some()
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let hash = bcrypt::hash("pw", 4).unwrap_or_default();
        let s = parse_web_config(
            &format!("basic_auth_users:\n  alice: '{hash}'\n"),
            Path::new("."),
        );
        let shown = format!("{s:?}");
        assert!(s.is_ok(), "{shown}");
        assert!(!shown.contains(&hash), "{shown}");
    }
}
