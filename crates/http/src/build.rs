//! Turning a `<http_config>` into a reqwest client and an auth step.

use std::path::PathBuf;

use reqwest::header::HeaderName;
use reqwest::redirect::Policy;
use tributary_config::{HttpClientConfig, TlsConfig, TlsVersion};

use crate::auth::{AuthStep, HeaderSource, SecretSource};
use crate::{ClientOptions, HttpClient, HttpClientError};

/// Go's http client follows at most 10 redirects.
const MAX_REDIRECTS: usize = 10;

/// Builds a client for one scrape pool / remote-write queue / SD config.
///
/// `cfg.sigv4` resolves its region and credentials here and fails the
/// build when either is missing, as Prometheus does.
///
/// Settings this crate cannot honour yet (`tls_config.server_name`,
/// `proxy_connect_header`) are refused with [`HttpClientError::Unsupported`]
/// rather than silently ignored.
pub fn build_client(
    cfg: &HttpClientConfig,
    opts: ClientOptions,
) -> Result<HttpClient, HttpClientError> {
    if !cfg.proxy_connect_header.is_empty() {
        return Err(HttpClientError::Unsupported("proxy_connect_header"));
    }
    let mut b = reqwest::Client::builder()
        .user_agent(opts.user_agent.clone())
        .pool_idle_timeout(opts.idle_pool_timeout)
        .redirect(if cfg.follow_redirects {
            Policy::limited(MAX_REDIRECTS)
        } else {
            Policy::none()
        });
    if let Some(t) = opts.timeout {
        b = b.timeout(t);
    }
    if !cfg.enable_http2 {
        b = b.http1_only();
    }
    b = apply_tls(b, &cfg.tls_config)?;
    b = apply_proxy(b, cfg)?;
    b = apply_resolver(b, &opts);
    let mut auth = auth_step(cfg)?;
    if let Some(o) = &cfg.oauth2 {
        auth.oauth2 = Some(oauth2_source(o, &opts)?);
    }
    if let Some(s) = &cfg.sigv4 {
        auth.sigv4 = Some(std::sync::Arc::new(crate::sigv4::Signer::from_config(s)?));
    }
    let plain = auth.is_empty()
        && opts.static_hosts.is_empty()
        && !opts.round_robin_dns
        && cfg.proxy_url.as_deref().is_none_or(str::is_empty)
        && !cfg.proxy_from_environment;
    Ok(HttpClient::from_parts(b.build()?, auth).with_plain(plain))
}

/// `round_robin_dns` and `static_hosts`. Without round robin the fixed
/// hosts go through reqwest's own overrides (system DNS otherwise).
fn apply_resolver(b: reqwest::ClientBuilder, opts: &ClientOptions) -> reqwest::ClientBuilder {
    if opts.round_robin_dns {
        let resolver = crate::RoundRobinResolver::with_hosts(opts.static_hosts.clone());
        return b.dns_resolver(std::sync::Arc::new(resolver));
    }
    opts.static_hosts.iter().fold(b, |b, (name, ips)| {
        let addrs: Vec<std::net::SocketAddr> = ips
            .iter()
            .map(|ip| std::net::SocketAddr::new(*ip, 0))
            .collect();
        b.resolve_to_addrs(name, &addrs)
    })
}

/// The token source of an `oauth2` block: its own TLS and proxy settings.
fn oauth2_source(
    o: &tributary_config::OAuth2,
    opts: &ClientOptions,
) -> Result<crate::oauth2::OAuth2Source, HttpClientError> {
    if !o.proxy_connect_header.is_empty() {
        return Err(HttpClientError::Unsupported("oauth2.proxy_connect_header"));
    }
    let mut b = reqwest::Client::builder()
        .user_agent(opts.user_agent.clone())
        .timeout(std::time::Duration::from_secs(30));
    b = apply_tls(b, &o.tls_config)?;
    let proxy_cfg = HttpClientConfig {
        proxy_url: o.proxy_url.clone(),
        no_proxy: o.no_proxy.clone(),
        proxy_from_environment: o.proxy_from_environment,
        ..HttpClientConfig::default_for_remote_write()
    };
    b = apply_proxy(b, &proxy_cfg)?;
    let secret = match (&o.client_secret_file, &o.client_secret) {
        (Some(f), _) if !f.is_empty() => Some(SecretSource::File(f.into())),
        (_, Some(s)) => Some(SecretSource::Inline(s.expose().to_owned())),
        _ => None,
    };
    crate::oauth2::OAuth2Source::new(
        o.client_id.clone(),
        secret,
        o.scopes.clone(),
        &o.token_url,
        o.endpoint_params.clone(),
        b.build()?,
    )
}

fn tls_version(v: TlsVersion) -> reqwest::tls::Version {
    match v {
        TlsVersion::Tls10 => reqwest::tls::Version::TLS_1_0,
        TlsVersion::Tls11 => reqwest::tls::Version::TLS_1_1,
        TlsVersion::Tls12 => reqwest::tls::Version::TLS_1_2,
        TlsVersion::Tls13 => reqwest::tls::Version::TLS_1_3,
    }
}

fn inline_or_file(
    inline: Option<&str>,
    file: Option<&String>,
) -> Result<Option<Vec<u8>>, HttpClientError> {
    if let Some(s) = inline {
        return Ok(Some(s.as_bytes().to_vec()));
    }
    match file {
        Some(p) => std::fs::read(p)
            .map(Some)
            .map_err(|source| HttpClientError::ReadTlsFile {
                path: PathBuf::from(p),
                source,
            }),
        None => Ok(None),
    }
}

fn apply_tls(
    mut b: reqwest::ClientBuilder,
    tls: &TlsConfig,
) -> Result<reqwest::ClientBuilder, HttpClientError> {
    if tls.server_name.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(HttpClientError::Unsupported("tls_config.server_name"));
    }
    b = b.min_tls_version(tls_version(tls.min_version));
    if let Some(max) = tls.max_version {
        b = b.max_tls_version(tls_version(max));
    }
    if tls.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(ca) = inline_or_file(tls.ca.as_deref(), tls.ca_file.as_ref())? {
        for cert in reqwest::Certificate::from_pem_bundle(&ca)
            .map_err(|e| HttpClientError::Tls(format!("CA: {e}")))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    let cert = inline_or_file(tls.cert.as_deref(), tls.cert_file.as_ref())?;
    let key = inline_or_file(tls.key.as_ref().map(|k| k.expose()), tls.key_file.as_ref())?;
    match (cert, key) {
        (Some(mut cert), Some(key)) => {
            cert.push(b'\n');
            cert.extend_from_slice(&key);
            let id = reqwest::Identity::from_pem(&cert)
                .map_err(|e| HttpClientError::Tls(format!("client certificate: {e}")))?;
            b = b.identity(id);
        }
        (None, None) => {}
        _ => {
            return Err(HttpClientError::Tls(
                "client cert and key must be configured together".into(),
            ))
        }
    }
    Ok(b)
}

fn apply_proxy(
    b: reqwest::ClientBuilder,
    cfg: &HttpClientConfig,
) -> Result<reqwest::ClientBuilder, HttpClientError> {
    match cfg.proxy_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => {
            let mut p =
                reqwest::Proxy::all(url).map_err(|e| HttpClientError::Proxy(e.to_string()))?;
            if let Some(np) = cfg.no_proxy.as_deref() {
                p = p.no_proxy(reqwest::NoProxy::from_string(np));
            }
            Ok(b.proxy(p))
        }
        // reqwest reads HTTP(S)_PROXY/NO_PROXY itself unless told not to.
        None if cfg.proxy_from_environment => Ok(b),
        None => Ok(b.no_proxy()),
    }
}

fn auth_step(cfg: &HttpClientConfig) -> Result<AuthStep, HttpClientError> {
    let mut step = if let Some(ba) = &cfg.basic_auth {
        let username = match &ba.username_file {
            Some(f) if !f.is_empty() => SecretSource::File(f.into()),
            _ => SecretSource::Inline(ba.username.clone()),
        };
        let password = match (&ba.password, &ba.password_file) {
            (_, Some(f)) if !f.is_empty() => Some(SecretSource::File(f.into())),
            (Some(p), _) => Some(SecretSource::Inline(p.expose().to_owned())),
            _ => None,
        };
        AuthStep::basic(username, password)
    } else if let Some(a) = &cfg.authorization {
        let scheme = if a.type_.is_empty() {
            "Bearer"
        } else {
            a.type_.as_str()
        };
        let creds = match (&a.credentials, &a.credentials_file) {
            (_, Some(f)) if !f.is_empty() => SecretSource::File(f.into()),
            (Some(c), _) => SecretSource::Inline(c.expose().to_owned()),
            _ => SecretSource::Inline(String::new()),
        };
        AuthStep::credentials(scheme, creds)
    } else {
        AuthStep::default()
    };
    for (name, values) in &cfg.http_headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpClientError::InvalidHeaderName(name.clone()))?;
        let mut sources: Vec<SecretSource> = values
            .values
            .iter()
            .cloned()
            .map(SecretSource::Inline)
            .collect();
        sources.extend(
            values
                .secrets
                .iter()
                .map(|s| SecretSource::Inline(s.expose().to_owned())),
        );
        sources.extend(values.files.iter().map(|f| SecretSource::File(f.into())));
        step = step.with_header(HeaderSource {
            name,
            values: sources,
        });
    }
    Ok(step)
}
